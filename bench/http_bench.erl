%%% The cost of being watched: GenServer calls to C workers at a fixed rate
%%% (10,000 calls/s from 8 paced callers to 8 `echo' workers on one
%%% dsup-node), with a Prometheus-like scraper fetching /metrics every 10 ms
%%% from a separate BEAM node, against the same load with no scraper. The
%%% phases alternate (reps of each); the row is the median mean latency per
%%% call of each, and the target is "at most 5 % slower with the scraper".
%%%
%%% Run through bench/run.sh (own epmd, unique names, everything stopped by
%%% pid); writes http.csv, which sup_bench folds into the summary as the row
%%% `metrics_under_load' (its baseline column: the same node, not scraped).
-module(http_bench).

-export([main/1, scraper_start/2, scraper_stop/1]).

main(Args) ->
    [Mode, OutDir, LogDir] = case Args of
                                 [M, O, L] -> [M, O, L];
                                 [] -> ["full", "bench/results", "build/bench/logs"]
                             end,
    _ = io:setopts([{encoding, unicode}]),
    try run(Mode =:= "quick", OutDir, LogDir) of
        ok -> halt(0)
    catch C:R:St ->
            io:format(standard_error, "http_bench failed: ~p:~p~n~p~n", [C, R, St]),
            halt(1)
    end.

config(true) -> #{rate => 10000, secs => 1, reps => 3, callers => 8, workers => 8, scrape_ms => 10};
config(false) -> #{rate => 10000, secs => 5, reps => 5, callers => 8, workers => 8, scrape_ms => 10}.

run(Quick, OutDir, LogDir) ->
    Cfg = config(Quick),
    H = dsup_test:start_node(#{name => bench_http, log_dir => LogDir, log_level => warn,
                               extra_args => ["--http", "127.0.0.1:0"]}),
    {Peer, PNode} = dsup_test:start_peer(bench_scraper, #{}),
    try
        Node = maps:get(node, H),
        Url = "http://127.0.0.1:" ++ integer_to_list(http_port(H)) ++ "/metrics",
        {ok, _} = erpc:call(PNode, application, ensure_all_started, [inets]),
        Workers = [begin {ok, P} = gen_server:call({dsup_node, Node}, {spawn, echo, []}, 10000), P end
                   || _ <- lists:seq(1, maps:get(workers, Cfg))],
        _ = load(Cfg#{secs := 1}, Workers),                  % warm-up
        Phases = lists:append([case Rep rem 2 of
                                   0 -> [none, scrape];
                                   1 -> [scrape, none]
                               end || Rep <- lists:seq(1, maps:get(reps, Cfg))]),
        OsPid = maps:get(os_pid, H),
        Results = [phase(Ph, Cfg#{os_pid => OsPid}, Workers, PNode, Url) || Ph <- Phases],
        With = [R || {scrape, R} <- Results],
        Without = [R || {none, R} <- Results],
        write(OutDir, Cfg, With, Without),
        ok
    after
        dsup_test:stop_peer(Peer),
        io:format("dsup-node stopped: ~p~n", [dsup_test:stop_node(H)])
    end.

http_port(H) ->
    {ok, P} = dsup_test:wait_until(
                fun() ->
                        Lines = [binary_to_list(L) || L <- dsup_test:log_tail(H, 200)],
                        case [P || "dsup-node http 127.0.0.1:" ++ P <- Lines] of
                            [P | _] -> {true, list_to_integer(string:trim(P))};
                            [] -> false
                        end
                end, 10000),
    P.

phase(none, Cfg, Workers, _PNode, _Url) ->
    R = with_cpu(Cfg, fun() -> load(Cfg, Workers) end),
    report(none, R),
    {none, R};
phase(scrape, Cfg, Workers, PNode, Url) ->
    S = erpc:call(PNode, ?MODULE, scraper_start, [Url, maps:get(scrape_ms, Cfg)]),
    R0 = with_cpu(Cfg, fun() -> load(Cfg, Workers) end),
    {Scrapes, Errors} = erpc:call(PNode, ?MODULE, scraper_stop, [S]),
    R = R0#{scrapes_per_s => Scrapes / maps:get(wall_s, R0), scrape_errors => Errors},
    report(scrape, R),
    {scrape, R}.

%% The node's CPU use (user+sys, % of one core) while Fun runs.
with_cpu(#{os_pid := OsPid}, Fun) ->
    C0 = cpu_ticks(OsPid),
    T0 = erlang:monotonic_time(microsecond),
    R = Fun(),
    Secs = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
    R#{cpu_pct => 100 * (cpu_ticks(OsPid) - C0) / clk_tck() / Secs}.

cpu_ticks(OsPid) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat"),
    [_, AfterComm] = binary:split(B, <<") ">>),
    F = string:lexemes(binary_to_list(AfterComm), " "),
    list_to_integer(lists:nth(12, F)) + list_to_integer(lists:nth(13, F)).

clk_tck() ->
    case string:to_integer(os:cmd("getconf CLK_TCK")) of
        {N, _} when is_integer(N), N > 0 -> N;
        _ -> 100
    end.

report(Ph, #{mean_us := M, rate := Rate} = R) ->
    io:format("~-7s mean ~7.1f us/call  p99 ~7.1f us  ~7b calls/s  node CPU ~5.1f %~s~n",
              [Ph, M, float(maps:get(p99_us, R)), round(Rate), float(maps:get(cpu_pct, R)),
               case R of
                   #{scrapes_per_s := S, scrape_errors := E} -> io_lib:format("  ~b scrapes/s (~p errors)", [round(S), E]);
                   _ -> ""
               end]).

%% `callers' processes, each paced to rate/callers calls per second for
%% `secs' seconds (a call is due at T0 + i * interval; a late caller does not
%% sleep), each calling its own worker.
load(#{rate := Rate, secs := Secs, callers := C}, Workers) ->
    PerCaller = Rate div C,
    IntervalUs = 1000000 / PerCaller,
    N = PerCaller * Secs,
    Self = self(),
    T0 = erlang:monotonic_time(microsecond),
    Pids = [spawn_link(fun() ->
                               W = lists:nth(1 + (K rem length(Workers)), Workers),
                               Self ! {lat, self(), caller(W, N, IntervalUs, T0, 0, [])}
                       end) || K <- lists:seq(1, C)],
    Lats = lists:append([receive {lat, P, L} -> L end || P <- Pids]),
    Wall = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
    Sorted = lists:sort(Lats),
    #{mean_us => lists:sum(Lats) / length(Lats), rate => length(Lats) / Wall, wall_s => Wall,
      p99_us => lists:nth(max(1, round(0.99 * length(Sorted))), Sorted)}.

caller(_W, N, _Iv, _T0, N, Acc) -> Acc;
caller(W, N, Iv, T0, I, Acc) ->
    Due = T0 + round(I * Iv),
    Now = erlang:monotonic_time(microsecond),
    _ = if Due - Now >= 1000 -> receive after (Due - Now) div 1000 -> ok end;
           true -> ok
        end,
    T1 = erlang:monotonic_time(microsecond),
    ping = gen_server:call(W, ping, 10000),
    caller(W, N, Iv, T0, I + 1, [erlang:monotonic_time(microsecond) - T1 | Acc]).

%% ---------------------------------------------------------------- scraper (runs on the peer)

scraper_start(Url, EveryMs) ->
    spawn(fun() ->
                  {ok, {http, _, Host, Port, Path, _}} = http_uri_parse(Url),
                  {ok, S} = gen_tcp:connect(Host, Port, [binary, {active, false}, {nodelay, true}]),
                  scrape_loop(S, Path, EveryMs, 0, 0)
          end).

http_uri_parse(Url) ->
    #{host := H, port := P, path := Path} = uri_string:parse(Url),
    {ok, {http, [], binary_to_list(iolist_to_binary(H)), P, binary_to_list(iolist_to_binary(Path)), []}}.

scraper_stop(Pid) ->
    Ref = erlang:monitor(process, Pid),
    Pid ! {stop, self(), Ref},
    receive {Ref, Counts} -> erlang:demonitor(Ref, [flush]), Counts
    after 10000 -> {0, timeout}
    end.

%% A lean scraper (like Prometheus: one keep-alive connection, a GET per
%% period), so that the scraper's own CPU use on this 2-core host stays
%% small next to what the node spends answering it.
scrape_loop(S, Path, EveryMs, N, Err) ->
    T = erlang:monotonic_time(millisecond),
    ok = gen_tcp:send(S, ["GET ", Path, " HTTP/1.1\r\nHost: bench\r\n\r\n"]),
    {N1, E1} = case read_response(S, <<>>) of
                   ok -> {N + 1, Err};
                   _ -> {N, Err + 1}
               end,
    Wait = max(0, T + EveryMs - erlang:monotonic_time(millisecond)),
    receive {stop, From, Ref} -> gen_tcp:close(S), From ! {Ref, {N1, E1}}
    after Wait -> scrape_loop(S, Path, EveryMs, N1, E1)
    end.

%% h2o answers 200 with a chunked body: done at the last chunk.
read_response(S, Acc) ->
    case gen_tcp:recv(S, 0, 2000) of
        {ok, D} ->
            B = <<Acc/binary, D/binary>>,
            case binary:longest_common_suffix([B, <<"\r\n0\r\n\r\n">>]) =:= 7 of
                true when binary_part(B, 0, 12) =:= <<"HTTP/1.1 200">> -> ok;
                true -> {error, status};
                false -> read_response(S, B)
            end;
        Error -> Error
    end.

%% ---------------------------------------------------------------- output

median(L) ->
    S = lists:sort(L),
    Len = length(S),
    case Len rem 2 of
        1 -> lists:nth(Len div 2 + 1, S);
        0 -> (lists:nth(Len div 2, S) + lists:nth(Len div 2 + 1, S)) / 2
    end.

write(OutDir, Cfg, With, Without) ->
    ok = filelib:ensure_dir(filename:join(OutDir, "x")),
    Mw = [M || #{mean_us := M} <- With],
    Mo = [M || #{mean_us := M} <- Without],
    Rate = median([R || #{rate := R} <- With ++ Without]),
    Scrapes = median([S || #{scrapes_per_s := S} <- With]),
    Errors = lists:sum([E || #{scrape_errors := E} <- With, is_integer(E)]),
    #{rate := Target, callers := C, workers := W, scrape_ms := Every, reps := Reps} = Cfg,
    Desc = io_lib:format("calls to C workers at ~b/s (~b callers, ~b workers) while /metrics is "
                         "scraped every ~b ms; baseline column: the same, not scraped", [Target, C, W, Every]),
    Note = io_lib:format("mean µs per call, median of ~b phases each (alternating); achieved ~b calls/s, "
                         "~b scrapes/s, ~p scrape errors; p99 with/without ~b/~b µs; node CPU with/without "
                         "~.1f/~.1f % of a core",
                         [Reps, round(Rate), round(Scrapes), Errors, round(median([P || #{p99_us := P} <- With])),
                          round(median([P || #{p99_us := P} <- Without])),
                          float(median([P || #{cpu_pct := P} <- With])),
                          float(median([P || #{cpu_pct := P} <- Without]))]),
    Csv = ["scenario,description,reps,with_samples_us,without_samples_us,note\n",
           io_lib:format("metrics_under_load,\"~ts\",~b,\"~s\",\"~s\",\"~ts\"~n",
                         [Desc, Reps, nums(Mw), nums(Mo), Note])],
    ok = file:write_file(filename:join(OutDir, "http.csv"), unicode:characters_to_binary(Csv)),
    io:format("metrics_under_load: with scraper ~.1f us/call, without ~.1f us/call (~.1f %)~n",
              [median(Mw), median(Mo), 100 * (median(Mw) / median(Mo) - 1)]).

nums(L) -> lists:flatten(lists:join(" ", [io_lib:format("~.3f", [X]) || X <- L])).
