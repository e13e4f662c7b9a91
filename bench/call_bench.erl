%%% GenServer call round trips: dsup's `echo' C worker (on a dsup-node) beside
%%% an Erlang echo gen_server (bench_echo, on a BEAM peer node), measured from
%%% the same caller node in the same run, both over TCP-loopback distribution.
%%%
%%% Run through bench/run.sh (own epmd, unique names, everything stopped by pid):
%%%   bench/run.sh            full run  -> bench/results/calls.{md,csv}
%%%   bench/run.sh --quick    smoke run -> build/bench/results/calls.{md,csv}
%%%
%%% Each scenario runs Reps times per target, alternating which target goes
%%% first; the table shows the median µs per call (wall time / calls).
-module(call_bench).

-export([main/1]).

%% erl -run call_bench main Mode OutDir LogDir   (Mode = quick | full)
main(Args) ->
    [Mode, OutDir, LogDir] = case Args of
                                 [M, O, L] -> [M, O, L];
                                 [M] -> [M, "bench/results", "build/bench/logs"];
                                 [] -> ["full", "bench/results", "build/bench/logs"]
                             end,
    Quick = Mode =:= "quick",
    _ = io:setopts([{encoding, unicode}]),
    try run(Quick, OutDir, LogDir) of
        ok -> halt(0)
    catch C:R:St ->
        io:format(standard_error, "call_bench failed: ~p:~p~n~p~n", [C, R, St]),
        halt(1)
    end.

config(true) -> #{n => 400, reps => 3, conc => 8, window => 32, warmup => 200};
config(false) -> #{n => 20000, reps => 7, conc => 8, window => 32, warmup => 3000}.

run(Quick, OutDir, LogDir) ->
    Cfg = config(Quick),
    Load0 = loadavg(),
    H = dsup_test:start_node(#{name => bench_dsup, log_dir => LogDir, log_level => warn}),
    {Peer, PNode} = dsup_test:start_peer(bench_beam, #{}),
    try
        Node = maps:get(node, H),
        {ok, CPid} = gen_server:call({dsup_node, Node}, {spawn, echo, []}, 10000),
        {ok, BPid} = erpc:call(PNode, bench_echo, start, []),
        io:format("dsup echo ~p on ~p (os pid ~p); BEAM echo ~p on ~p~n",
                  [CPid, Node, maps:get(os_pid, H), BPid, PNode]),
        Targets = [{dsup, CPid}, {beam, BPid}],
        [seq(P, maps:get(warmup, Cfg), ping) || {_, P} <- Targets],
        Bin1k = binary:copy(<<"x">>, 1024),
        #{n := N, conc := C, window := W} = Cfg,
        Scenarios =
            [{seq_small, "sequential gen_server:call, small term", N,
              fun(P) -> seq(P, N, ping) end},
             {seq_1k, "sequential gen_server:call, 1 KiB binary", N,
              fun(P) -> seq(P, N, Bin1k) end},
             {conc8_small, io_lib:format("~b concurrent callers, small term", [C]), N,
              fun(P) -> conc(P, N, C, ping) end},
             {async32_small, io_lib:format("send_request pipeline, ~b in flight, small term", [W]),
              N, fun(P) -> async(P, N, W, ping) end}],
        Rows = [measure(S, Targets, maps:get(reps, Cfg)) || S <- Scenarios],
        Meta = #{quick => Quick, cfg => Cfg, load_before => Load0, load_after => loadavg(),
                 exe => dsup_test:exe()},
        write(OutDir, Rows, Meta),
        ok
    after
        dsup_test:stop_peer(Peer),
        io:format("dsup-node stopped: ~p~n", [dsup_test:stop_node(H)])
    end.

%% ---------------------------------------------------------------- measuring

measure({Id, Desc, N, Fun}, Targets, Reps) ->
    Samples = lists:foldl(
        fun(Rep, Acc) ->
            Order = case Rep rem 2 of 0 -> Targets; 1 -> lists:reverse(Targets) end,
            lists:foldl(fun({T, P}, A) ->
                T0 = erlang:monotonic_time(nanosecond),
                ok = Fun(P),
                Us = (erlang:monotonic_time(nanosecond) - T0) / 1000 / N,
                maps:update_with(T, fun(L) -> [Us | L] end, [Us], A)
            end, Acc, Order)
        end, #{}, lists:seq(1, Reps)),
    D = maps:get(dsup, Samples),
    B = maps:get(beam, Samples),
    Row = #{id => Id, desc => lists:flatten(Desc), calls => N, reps => Reps,
            dsup => median(D), beam => median(B), dsup_min => lists:min(D),
            dsup_max => lists:max(D), beam_min => lists:min(B), beam_max => lists:max(B)},
    io:format("~-14s dsup ~8.2f us/call   beam ~8.2f us/call   ratio ~.2f~n",
              [Id, median(D), median(B), median(D) / median(B)]),
    Row.

median(L) ->
    S = lists:sort(L),
    Len = length(S),
    case Len rem 2 of
        1 -> lists:nth(Len div 2 + 1, S);
        0 -> (lists:nth(Len div 2, S) + lists:nth(Len div 2 + 1, S)) / 2
    end.

seq(_P, 0, _Msg) -> ok;
seq(P, N, Msg) ->
    Msg = gen_server:call(P, Msg, 10000),
    seq(P, N - 1, Msg).

conc(P, N, C, Msg) ->
    Per = N div C,
    Ms = [spawn_monitor(fun() -> ok = seq(P, Per, Msg) end) || _ <- lists:seq(1, C)],
    [receive {'DOWN', R, process, Pid, normal} -> ok;
             {'DOWN', R, process, Pid, Why} -> exit({caller_failed, Why})
     end || {Pid, R} <- Ms],
    ok.

async(P, N, W, Msg) ->
    First = min(W, N),
    Q = queue:from_list([gen_server:send_request(P, Msg) || _ <- lists:seq(1, First)]),
    async_loop(P, Msg, Q, N - First).

async_loop(P, Msg, Q, Left) ->
    case queue:out(Q) of
        {empty, _} -> ok;
        {{value, Req}, Q1} ->
            {reply, Msg} = gen_server:receive_response(Req, 10000),
            case Left > 0 of
                true -> async_loop(P, Msg, queue:in(gen_server:send_request(P, Msg), Q1), Left - 1);
                false -> async_loop(P, Msg, Q1, 0)
            end
    end.

%% ---------------------------------------------------------------- output

write(OutDir, Rows, Meta) ->
    ok = filelib:ensure_dir(filename:join(OutDir, "x")),
    Csv = ["scenario,description,calls,reps,dsup_median_us,beam_median_us,ratio_dsup_beam,"
           "dsup_min_us,dsup_max_us,beam_min_us,beam_max_us\n"
           | [io_lib:format("~s,\"~s\",~b,~b,~.3f,~.3f,~.3f,~.3f,~.3f,~.3f,~.3f~n",
                            [Id, Desc, N, R, D, B, D / B, Dmin, Dmax, Bmin, Bmax])
              || #{id := Id, desc := Desc, calls := N, reps := R, dsup := D, beam := B,
                   dsup_min := Dmin, dsup_max := Dmax, beam_min := Bmin, beam_max := Bmax}
                     <- Rows]],
    Table = ["| scenario | calls | dsup µs/call | BEAM µs/call | dsup/BEAM | dsup calls/s | BEAM calls/s |\n",
             "|---|---:|---:|---:|---:|---:|---:|\n"
             | [io_lib:format("| ~s (`~s`) | ~b | ~.2f | ~.2f | ~.2f | ~b | ~b |~n",
                              [Desc, Id, N, D, B, D / B, round(1.0e6 / D), round(1.0e6 / B)])
                || #{id := Id, desc := Desc, calls := N, dsup := D, beam := B} <- Rows]],
    #{cfg := Cfg, load_before := L0, load_after := L1, exe := Exe, quick := Quick} = Meta,
    Md = [io_lib:format("# GenServer call round trips: dsup C worker vs BEAM gen_server~s~n~n",
                        [case Quick of true -> " (--quick smoke run)"; false -> "" end]),
          "Generated by `bench/run.sh` (bench/call_bench.erl). One caller node calls an `echo`\n"
          "C worker on a dsup-node and, in the same run, an Erlang echo gen_server\n"
          "(bench/bench_echo.erl) on a BEAM peer node; all three are OS processes on\n"
          "this host talking Erlang distribution over TCP on 127.0.0.1. µs/call is wall\n"
          "time / calls (for the concurrent and pipelined rows this is the inverse of\n"
          "throughput, not latency); each value is the median of the repeats, targets\n"
          "alternating. dsup/BEAM < 1 means the C worker is faster.\n\n",
          Table, "\n",
          io_lib:format("- date: ~s~n- OTP ~s, erts ~s, ~b schedulers, ~b logical CPUs~n"
                        "- host: ~s~n- load average before/after: ~s / ~s~n"
                        "- dsup-node: ~s~n- repeats: ~b, warm-up calls per target: ~b~n",
                        [calendar:system_time_to_rfc3339(erlang:system_time(second)),
                         erlang:system_info(otp_release), erlang:system_info(version),
                         erlang:system_info(schedulers_online),
                         erlang:system_info(logical_processors_available),
                         string:trim(os:cmd("uname -srm")), L0, L1, Exe,
                         maps:get(reps, Cfg), maps:get(warmup, Cfg)]),
          "\nMin/max of every sample are in calls.csv.\n"],
    ok = file:write_file(filename:join(OutDir, "calls.csv"), Csv),
    ok = file:write_file(filename:join(OutDir, "calls.md"), unicode:characters_to_binary(Md)),
    io:format("~n~ts~nwritten: ~s/calls.md, ~s/calls.csv~n",
              [unicode:characters_to_binary(Table), OutDir, OutDir]).

loadavg() ->
    case file:read_file("/proc/loadavg") of
        {ok, B} -> lists:flatten(lists:join(" ", lists:sublist(string:lexemes(binary_to_list(B), " "), 3)));
        _ -> "?"
    end.
