%%% Foundation suite: a real dsup-node (C-node) against the real BEAM running
%%% Common Test, over real distribution on 127.0.0.1. One case per behaviour.
%%% Every case gets its own freshly started dsup-node (see node_opts/1), so one
%%% crash cannot cascade; end_per_testcase asserts the node then exits 0 on
%%% SIGTERM (a node that died during the case fails the case).
-module(dsup_node_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 5000).          % ordinary wait deadline, ms

suite() ->
    [{timetrap, {seconds, 90}}].

all() ->
    [{group, cli}, {group, handshake}, {group, registry}, {group, workers},
     {group, sys}, {group, signals}, {group, bad_input}, {group, ticks}].

groups() ->
    [{cli, [], [help_exits_zero, bad_cli_args_exit_nonzero, log_level_option,
                sigterm_exits_zero, sigint_exits_zero,
                registers_with_epmd, listen_port_option, sname_option,
                connect_option, default_cookie_from_home]},
     {handshake, [], [ping_hidden, ping_visible, visible_worker_call,
                      visible_global_sync_returns, wrong_cookie_refused,
                      raw_handshake_and_call]},
     {registry, [], [spawn_unknown_type, spawn_returns_remote_pid,
                      which_workers_counts, which_workers_drops_dead,
                      node_info_and_memory_calls]},
     {workers, [], [echo_call, echo_large_message, echo_concurrent_callers,
                    echo_ignores_cast_and_info, send_to_unknown_name_dropped,
                    counter_default_value, counter_initial_value, counter_inc_cast,
                    counter_add, counter_info_count, counter_stop_normal,
                    counter_crash_reason, kv_put_get_keys,
                    builtin_workers_as_documented]},
     {sys, [], [sys_get_state_counter, sys_get_state_kv, sys_get_status,
                sys_suspend_resume, sys_replace_state, sys_replace_state_refused]},
     {signals, [], [monitor_down_real_reason, call_dead_worker_noproc_fast,
                    monitor_dead_pid_noproc, monitor_registered_name,
                    monitor_unknown_name_noproc, demonitor_suppresses_down,
                    link_worker_crash_sends_exit, link_erlang_crash_kills_worker,
                    link_erlang_normal_exit_keeps_worker, unlink_stops_propagation,
                    exit_kill_gives_killed, exit_normal_ignored,
                    disconnect_kills_linked_worker, disconnect_keeps_unlinked_worker,
                    node_kill9_noconnection]},
     {bad_input, [], [garbage_frame_closes_connection,
                      truncated_term_closes_connection,
                      bad_control_tuple_closes_connection,
                      raw_wrong_cookie_refused, mutated_frames_survive]},
     {ticks, [parallel], [visible_ticks_keep_connection,
                          hidden_ticks_keep_connection]}].

%% ------------------------------------------------------------------ setup

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_Config) ->
    ok.

init_per_group(_, Config) -> Config.
end_per_group(_, _Config) -> ok.

%% Options of the dsup-node a case gets; none = the case starts its own.
node_opts(help_exits_zero) -> none;
node_opts(bad_cli_args_exit_nonzero) -> none;
node_opts(log_level_option) -> none;
node_opts(visible_worker_call) -> #{visible => true};
node_opts(visible_global_sync_returns) -> #{visible => true};
node_opts(listen_port_option) -> none;
node_opts(sname_option) -> none;
node_opts(connect_option) -> none;
node_opts(default_cookie_from_home) -> none;
node_opts(ping_visible) -> #{visible => true, wait => ping};
node_opts(ping_hidden) -> #{wait => ping};
node_opts(sigterm_exits_zero) -> #{wait => ping};
node_opts(sigint_exits_zero) -> #{wait => ping};
node_opts(registers_with_epmd) -> #{wait => epmd};
node_opts(wrong_cookie_refused) -> none;
node_opts(visible_ticks_keep_connection) ->
    #{visible => true, net_ticktime => 4, wait => epmd};
node_opts(hidden_ticks_keep_connection) ->
    #{net_ticktime => 4, wait => epmd};
node_opts(_) -> #{}.

%% How a case leaves its node: it is expected to still run (stopped with
%% SIGTERM here, exit 0 asserted) unless listed.
node_fate(node_kill9_noconnection) -> killed;
node_fate(monitor_registered_name) -> killed;
node_fate(sigterm_exits_zero) -> stopped;
node_fate(sigint_exits_zero) -> stopped;
node_fate(registers_with_epmd) -> stopped;
node_fate(_) -> running.

init_per_testcase(TC, Config) ->
    ct:log("dsup-node binary: ~s", [dsup_test:exe()]),
    case node_opts(TC) of
        none -> Config;
        Opts ->
            H = dsup_test:start_node(Opts#{name => TC, priv_dir => ?config(priv_dir, Config)}),
            ct:log("started ~p (os pid ~p), log ~s", [maps:get(node, H), maps:get(os_pid, H),
                                                     maps:get(log, H)]),
            [{dsup, H} | Config]
    end.

end_per_testcase(TC, Config) ->
    Status = ?config(tc_status, Config),
    case ?config(dsup, Config) of
        undefined -> ok;
        H ->
            Fate = node_fate(TC),
            Stop = dsup_test:stop_node(H),
            Failed = Status =/= ok,
            Tail = dsup_test:log_tail(H, 60),
            Failed andalso ct:pal("~p FAILED (~p); node ~p log tail (~s):~n~s",
                                 [TC, Status, maps:get(node, H), maps:get(log, H),
                                  [[L, $\n] || L <- Tail]]),
            San = sanitizer_lines(maps:get(log, H)),
            case {Fate, Stop} of
                _ when San =/= [] ->
                    ct:pal("~p: sanitizer report in ~s:~n~s", [TC, maps:get(log, H),
                                                            [[L, $\n] || L <- San]]),
                    {fail, {sanitizer_report, San}};
                {running, {ok, 0}} -> ok;
                {running, Other} when not Failed ->
                    ct:pal("~p: node did not exit cleanly on SIGTERM: ~p~n~s",
                           [TC, Other, [[L, $\n] || L <- Tail]]),
                    {fail, {node_unclean_exit, Other}};
                _ -> ok
            end
    end.

%% AddressSanitizer / UBSan / LeakSanitizer reports in a node's log.
sanitizer_lines(Log) ->
    case file:read_file(Log) of
        {ok, B} ->
            Ls = binary:split(B, <<"\n">>, [global]),
            Hits = [I || {I, L} <- lists:zip(lists:seq(1, length(Ls)), Ls),
                         binary:match(L, [<<"ERROR: AddressSanitizer">>, <<"runtime error:">>,
                                          <<"ERROR: LeakSanitizer">>]) =/= nomatch],
            case Hits of
                [] -> [];
                [First | _] -> lists:sublist(Ls, First, 40)
            end;
        _ -> []
    end.

dnode(Config) -> maps:get(node, ?config(dsup, Config)).

%% ------------------------------------------------------------------ helpers

spawn_worker(Node, Type) -> spawn_worker(Node, Type, []).
spawn_worker(Node, Type, Args) ->
    case gen_server:call({dsup_node, Node}, {spawn, Type, Args}, ?T) of
        {ok, Pid} when is_pid(Pid) -> Pid;
        Other -> ct:fail({spawn_failed, Type, Args, Other})
    end.

%% Receive a DOWN for Ref within Timeout or fail with what the mailbox holds.
expect_down(Ref, Timeout) ->
    receive
        {'DOWN', Ref, process, Obj, Reason} -> {Obj, Reason}
    after Timeout ->
        ct:fail({no_down_within, Timeout, process_info(self(), messages)})
    end.

%% Assert that no message matching Pred arrives within Ms (used only for
%% "must NOT happen" checks: there is no condition to poll for).
refute_message(Pred, Ms) ->
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    refute_loop(Pred, Deadline, []).

refute_loop(Pred, Deadline, Kept) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        M ->
            case Pred(M) of
                true -> ct:fail({unexpected_message, M});
                false -> refute_loop(Pred, Deadline, [M | Kept])
            end
    after Left ->
        [self() ! K || K <- lists:reverse(Kept)],
        ok
    end.

normalize_workers(L) ->
    lists:sort([{T, N} || {T, N} <- L, N =/= 0]).

count_of(Type, Node) ->
    L = gen_server:call({dsup_node, Node}, which_workers, ?T),
    proplists:get_value(Type, L, 0).

free_port() ->
    {ok, L} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, P} = inet:port(L),
    gen_tcp:close(L),
    P.

%% Run the dsup-node binary to completion: {ExitStatus, Output}.
run_cmd(Args, Timeout) ->
    Port = open_port({spawn_executable, dsup_test:exe()},
                     [exit_status, stderr_to_stdout, binary, {args, Args}]),
    collect(Port, [], erlang:monotonic_time(millisecond) + Timeout).

collect(Port, Acc, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive
        {Port, {data, D}} -> collect(Port, [D | Acc], Deadline);
        {Port, {exit_status, S}} -> {S, iolist_to_binary(lists:reverse(Acc))}
    after Left ->
        {os_pid, P} = erlang:port_info(Port, os_pid),
        os:cmd("kill -9 " ++ integer_to_list(P)),
        ct:fail({command_timeout, erlang:port_info(Port, name)})
    end.

with_node(Opts, Config, Fun) ->
    H = dsup_test:start_node(Opts#{priv_dir => ?config(priv_dir, Config)}),
    try Fun(H)
    after
        St = dsup_test:stop_node(H),
        ct:log("extra node ~p stopped: ~p", [maps:get(node, H), St])
    end.

%% ================================================================== cli

help_exits_zero(_Config) ->
    {Status, Out} = run_cmd(["--help"], 10000),
    ct:log("--help output:~n~s", [Out]),
    ?assertEqual(0, Status),
    ?assertNotEqual(nomatch, binary:match(Out, <<"--name">>)),
    ?assertNotEqual(nomatch, binary:match(Out, <<"--cookie">>)).

bad_cli_args_exit_nonzero(_Config) ->
    Cases = [[],                                           % no name
             ["--name", "x@127.0.0.1", "--bogus-option"],
             ["--name", "x@127.0.0.1", "--log-level", "loud"],
             ["--name", "x@127.0.0.1", "--net-ticktime", "soon"]],
    %% EX_USAGE and one line naming the problem (dsup_cli_SUITE has the rest)
    lists:foreach(fun(Args) ->
        {Status, Out} = run_cmd(Args, 10000),
        ct:log("~p -> exit ~p:~n~s", [Args, Status, Out]),
        ?assertEqual({Args, 64}, {Args, Status}),
        ?assertMatch({_, [<<"dsup-node: ", _/binary>>]},
                     {Args, binary:split(Out, <<"\n">>, [global, trim_all])}),
        ?assertEqual({Args, $\n}, {Args, binary:last(Out)})
    end, Cases).

log_level_option(Config) ->
    [with_node(#{name => log_level, log_level => L}, Config, fun(H) ->
         ?assertMatch(X when is_list(X),
                      gen_server:call({dsup_node, maps:get(node, H)}, which_workers, ?T))
     end) || L <- [debug, info, warn, error]].

sigterm_exits_zero(Config) ->
    H = ?config(dsup, Config),
    ?assertEqual({ok, 0}, dsup_test:stop_node(H, 10000)).

sigint_exits_zero(Config) ->
    H = ?config(dsup, Config),
    ok = dsup_test:signal_node(H, "INT"),
    ?assertEqual({exited, 0}, dsup_test:wait_exit(H, 10000)).

registers_with_epmd(Config) ->
    H = ?config(dsup, Config),
    Name = maps:get(name, H),
    {ok, Names} = erl_epmd:names("127.0.0.1"),
    ?assert(lists:keymember(Name, 1, Names)),
    {port, Port, _} = erl_epmd:port_please(Name, "127.0.0.1"),
    ?assert(is_integer(Port) andalso Port > 0),
    %% unregisters when it exits
    {ok, 0} = dsup_test:stop_node(H),
    dsup_test:wait_until(fun() ->
        {ok, N2} = erl_epmd:names("127.0.0.1"),
        not lists:keymember(Name, 1, N2)
    end, ?T).

listen_port_option(Config) ->
    P = free_port(),
    with_node(#{name => listen_port, listen_port => P}, Config, fun(H) ->
        ?assertMatch({port, P, _}, erl_epmd:port_please(maps:get(name, H), "127.0.0.1")),
        ?assertEqual(pong, net_adm:ping(maps:get(node, H)))
    end).

sname_option(Config) ->
    with_node(#{name => sname_opt, sname => true, wait => epmd}, Config, fun(H) ->
        {ok, Names} = erl_epmd:names("127.0.0.1"),
        ?assert(lists:keymember(maps:get(name, H), 1, Names))
    end).

connect_option(Config) ->
    %% --connect is repeatable: the CT node and a peer (that nobody else knows)
    {Peer, PNode} = dsup_test:start_peer(connect_peer, #{connection => standard_io}),
    try
        with_node(#{name => connect_opt, connect => [node(), PNode], wait => none}, Config,
          fun(H) ->
            N = maps:get(node, H),
            %% neither side pings it: the connections are dsup-node's own
            dsup_test:wait_until(fun() -> lists:member(N, nodes(hidden)) end, 15000),
            ?assertNot(lists:member(N, nodes())),
            dsup_test:wait_until(fun() ->
                lists:member(N, peer:call(Peer, erlang, nodes, [hidden]))
            end, 15000)
          end)
    after dsup_test:stop_peer(Peer)
    end.

default_cookie_from_home(Config) ->
    Home = filename:join(?config(priv_dir, Config), "home_" ++ integer_to_list(erlang:unique_integer([positive]))),
    CookieFile = filename:join(Home, ".erlang.cookie"),
    ok = filelib:ensure_dir(CookieFile),
    ok = file:write_file(CookieFile, atom_to_list(erlang:get_cookie())),
    ok = file:change_mode(CookieFile, 8#400),
    with_node(#{name => home_cookie, cookie => none, env => [{"HOME", Home}]}, Config,
      fun(H) -> ?assertEqual(pong, net_adm:ping(maps:get(node, H))) end).

%% ================================================================== handshake

ping_hidden(Config) ->
    N = dnode(Config),
    ?assertEqual(pong, net_adm:ping(N)),
    ?assert(lists:member(N, nodes(hidden))),
    ?assertNot(lists:member(N, nodes())).

ping_visible(Config) ->
    N = dnode(Config),
    ?assertEqual(pong, net_adm:ping(N)),
    ?assert(lists:member(N, nodes())),
    ?assertNot(lists:member(N, nodes(hidden))).

visible_worker_call(Config) ->
    N = dnode(Config),
    ?assert(lists:member(N, nodes())),
    W = spawn_worker(N, echo),
    ?assertEqual({over, visible}, gen_server:call(W, {over, visible}, ?T)).

%% DESIGN.md 2: a visible node must take part in global's connect protocol, or
%% global:sync() blocks while it is connected.
visible_global_sync_returns(Config) ->
    N = dnode(Config),
    ?assert(lists:member(N, nodes())),
    {P, Ref} = spawn_monitor(fun() -> exit({synced, global:sync()}) end),
    receive
        {'DOWN', Ref, process, P, {synced, R}} -> ?assertEqual(ok, R)
    after 10000 ->
        exit(P, kill),
        ct:fail(global_sync_blocked)
    end,
    ?assert(lists:member(N, nodes())).

wrong_cookie_refused(Config) ->
    Other = dsup_test:unique_name(other_cookie),
    with_node(#{name => wrong_cookie, cookie => Other, wait => epmd}, Config, fun(H) ->
        N = maps:get(node, H),
        ?assertEqual(pang, net_adm:ping(N)),
        ?assertEqual(running, dsup_test:exit_status(H)),
        %% a peer that uses the node's cookie still gets in
        true = erlang:set_cookie(N, Other),
        ?assertEqual(pong, net_adm:ping(N)),
        ?assertMatch(L when is_list(L), gen_server:call({dsup_node, N}, which_workers, ?T))
    end).

raw_handshake_and_call(Config) ->
    N = dnode(Config),
    {ok, C} = dist_raw:connect(N, erlang:get_cookie()),
    try
        ?assertMatch({ok, L} when is_list(L),
                     dist_raw:call(C, {dsup_node, N}, which_workers, ?T)),
        ?assertMatch({ok, {ok, P}} when is_pid(P),
                     dist_raw:call(C, {dsup_node, N}, {spawn, echo, []}, ?T))
    after dist_raw:close(C)
    end.

%% ================================================================== registry

spawn_unknown_type(Config) ->
    ?assertEqual({error, {unknown_worker, no_such_worker}},
                 gen_server:call({dsup_node, dnode(Config)}, {spawn, no_such_worker, []}, ?T)).

spawn_returns_remote_pid(Config) ->
    N = dnode(Config),
    P = spawn_worker(N, echo),
    ?assertEqual(N, erlang:node(P)),
    P2 = spawn_worker(N, echo),
    ?assertNotEqual(P, P2).

which_workers_counts(Config) ->
    N = dnode(Config),
    ?assertEqual([], normalize_workers(gen_server:call({dsup_node, N}, which_workers, ?T))),
    _ = [spawn_worker(N, echo) || _ <- [1, 2]],
    _ = spawn_worker(N, counter),
    _ = spawn_worker(N, kv),
    ?assertEqual([{counter, 1}, {echo, 2}, {kv, 1}],
                 normalize_workers(gen_server:call({dsup_node, N}, which_workers, ?T))).

%% README Wire API: node_info and memory.
node_info_and_memory_calls(Config) ->
    N = dnode(Config),
    Info = gen_server:call({dsup_node, N}, node_info, ?T),
    ?assertMatch([{name, N}, {visible, false}, {processes, P}] when is_integer(P) andalso P >= 1,
                 Info),
    [{allocated, A0}, {processes, P0}, {names, _}] = gen_server:call({dsup_node, N}, memory, ?T),
    %% ASan replaces malloc: glibc's mallinfo2 then reads 0
    Sanitized = string:find(os:cmd("ldd " ++ dsup_test:exe()), "libasan") =/= nomatch,
    ?assert(Sanitized orelse A0 > 0),
    Ws = [spawn_worker(N, kv) || _ <- lists:seq(1, 10)],
    [ok = gen_server:call(W, {put, I, binary:copy(<<"x">>, 10000)}, ?T)
     || {I, W} <- lists:zip(lists:seq(1, 10), Ws)],
    [{allocated, A1}, {processes, P1}, {names, _}] = gen_server:call({dsup_node, N}, memory, ?T),
    ?assertEqual(P0 + 10, P1),
    ?assert(Sanitized orelse A1 - A0 >= 100000),
    ?assertEqual({error, {unknown_call, bogus}}, gen_server:call({dsup_node, N}, bogus, ?T)).

which_workers_drops_dead(Config) ->
    N = dnode(Config),
    W = spawn_worker(N, counter),
    ?assertEqual(1, count_of(counter, N)),
    ok = gen_server:call(W, stop, ?T),
    dsup_test:wait_until(fun() -> count_of(counter, N) =:= 0 end, ?T).

%% ================================================================== workers

echo_call(Config) ->
    W = spawn_worker(dnode(Config), echo),
    Terms = [hello, 42, -7, 1 bsl 100, 3.25, <<"bin">>, binary:copy(<<"x">>, 200000),
             "string", [1, [2, [3]]], {a, {b, c}}, #{k => v, 1 => [2]}, self(), make_ref(),
             [], {}, <<1:3>>, 'Elixir.Some.Alias', 'ünïcode'],
    [?assertEqual(T, gen_server:call(W, T, ?T)) || T <- Terms].

echo_large_message(Config) ->
    W = spawn_worker(dnode(Config), echo),
    Big = {big, crypto:strong_rand_bytes(8 * 1024 * 1024), lists:seq(1, 100000)},
    ?assertEqual(Big, gen_server:call(W, Big, 30000)),
    ?assertEqual(small_after_big, gen_server:call(W, small_after_big, ?T)).

echo_concurrent_callers(Config) ->
    W = spawn_worker(dnode(Config), echo),
    Self = self(),
    Callers = [spawn_link(fun() ->
                   R = [gen_server:call(W, {I, J}, 20000) =:= {I, J} || J <- lists:seq(1, 200)],
                   Self ! {done, I, lists:all(fun(X) -> X end, R)}
               end) || I <- lists:seq(1, 20)],
    Results = [receive {done, I, Ok} -> {I, Ok} after 60000 -> {I, timeout} end
               || I <- lists:seq(1, length(Callers))],
    ?assertEqual([{I, true} || I <- lists:seq(1, 20)], lists:sort(Results)).

send_to_unknown_name_dropped(Config) ->
    N = dnode(Config),
    {no_such_registered_name, N} ! hello,
    W = spawn_worker(N, echo),
    ?assertEqual(still_serving, gen_server:call(W, still_serving, ?T)).

echo_ignores_cast_and_info(Config) ->
    W = spawn_worker(dnode(Config), echo),
    Ref = erlang:monitor(process, W),
    ok = gen_server:cast(W, some_cast),
    W ! some_info,
    W ! {'$gen_cast', also_cast},
    ?assertEqual(still_here, gen_server:call(W, still_here, ?T)),
    refute_message(fun({'DOWN', R, _, _, _}) -> R =:= Ref; (_) -> false end, 200).

counter_default_value(Config) ->
    W = spawn_worker(dnode(Config), counter),
    ?assertEqual(0, gen_server:call(W, get, ?T)).

counter_initial_value(Config) ->
    W = spawn_worker(dnode(Config), counter, [{value, 42}]),
    ?assertEqual(42, gen_server:call(W, get, ?T)).

counter_inc_cast(Config) ->
    W = spawn_worker(dnode(Config), counter),
    [ok = gen_server:cast(W, inc) || _ <- lists:seq(1, 5)],
    %% signals from one sender are ordered: the casts are handled first
    ?assertEqual(5, gen_server:call(W, get, ?T)).

counter_add(Config) ->
    W = spawn_worker(dnode(Config), counter, [{value, 1}]),
    ?assertEqual(11, gen_server:call(W, {add, 10}, ?T)),
    ?assertEqual(8, gen_server:call(W, {add, -3}, ?T)),
    ?assertEqual(8, gen_server:call(W, get, ?T)).

counter_info_count(Config) ->
    W = spawn_worker(dnode(Config), counter),
    ?assertEqual(0, gen_server:call(W, info_count, ?T)),
    W ! one, W ! {two, 2}, W ! "three",
    ?assertEqual(3, gen_server:call(W, info_count, ?T)),
    ok = gen_server:cast(W, inc),
    ?assertEqual(3, gen_server:call(W, info_count, ?T)).

counter_stop_normal(Config) ->
    W = spawn_worker(dnode(Config), counter),
    Ref = erlang:monitor(process, W),
    ?assertEqual(ok, gen_server:call(W, stop, ?T)),
    ?assertEqual({W, normal}, expect_down(Ref, ?T)).

counter_crash_reason(Config) ->
    W = spawn_worker(dnode(Config), counter),
    Reason = {my_crash, [1, 2, 3]},
    T0 = erlang:monotonic_time(),
    ?assertMatch({'EXIT', {Reason, {gen_server, call, _}}},
                 catch gen_server:call(W, {crash, Reason}, 30000)),
    ?assert(dsup_test:elapsed_ms(T0) < 2000).

kv_put_get_keys(Config) ->
    W = spawn_worker(dnode(Config), kv),
    ?assertEqual([], gen_server:call(W, keys, ?T)),
    ?assertEqual(ok, gen_server:call(W, {put, a, 1}, ?T)),
    ?assertEqual(ok, gen_server:call(W, {put, "b", #{x => y}}, ?T)),
    ?assertEqual(ok, gen_server:call(W, {put, {c}, <<"v">>}, ?T)),
    ?assertEqual(ok, gen_server:call(W, {put, a, 2}, ?T)),
    ?assertEqual({ok, 2}, gen_server:call(W, {get, a}, ?T)),
    ?assertEqual({ok, #{x => y}}, gen_server:call(W, {get, "b"}, ?T)),
    ?assertEqual(not_found, gen_server:call(W, {get, missing}, ?T)),
    ?assertEqual(lists:sort([a, "b", {c}]), lists:sort(gen_server:call(W, keys, ?T))).

%% The README's table of built-in workers, row by row, beyond the cases above.
builtin_workers_as_documented(Config) ->
    N = dnode(Config),
    E = spawn_worker(N, echo, anything),
    ?assertEqual(echo, sys:get_state(E, ?T)),
    C = spawn_worker(N, counter, [{value, 5}]),
    ?assertEqual({error, badarg}, gen_server:call(C, {add, x}, ?T)),
    ?assertEqual({error, unknown_call}, gen_server:call(C, what, ?T)),
    ok = gen_server:cast(C, other),
    ?assertEqual(5, gen_server:call(C, get, ?T)),
    ?assertMatch({error, _}, gen_server:call({dsup_node, N}, {spawn, counter, [{value, x}]}, ?T)),
    K = spawn_worker(N, kv, ignored),
    ok = gen_server:call(K, {put, k1, v1}, ?T),
    ok = gen_server:call(K, {put, <<"k2">>, [v2]}, ?T),
    ?assertEqual(#{k1 => v1, <<"k2">> => [v2]}, sys:get_state(K, ?T)),
    ?assertEqual(ok, gen_server:call(K, {delete, k1}, ?T)),
    ?assertEqual(ok, gen_server:call(K, {delete, k1}, ?T)),
    ?assertEqual(not_found, gen_server:call(K, {get, k1}, ?T)),
    ?assertEqual([<<"k2">>], gen_server:call(K, keys, ?T)),
    ?assertEqual({error, unknown_call}, gen_server:call(K, {get}, ?T)).

%% ================================================================== sys

sys_get_state_counter(Config) ->
    W = spawn_worker(dnode(Config), counter, [{value, 7}]),
    ?assertEqual(7, sys:get_state(W, ?T)),
    ok = gen_server:cast(W, inc),
    ?assertEqual(8, sys:get_state(W, ?T)).

%% The fun runs on the caller's node (through its rex) over the state's term;
%% the worker installs the result and answers it, as sys:replace_state/2 does.
sys_replace_state(Config) ->
    W = spawn_worker(dnode(Config), counter, [{value, 6}]),
    ?assertEqual(42, sys:replace_state(W, fun(S) -> S * 7 end, ?T)),
    ?assertEqual(42, gen_server:call(W, get, ?T)),
    %% calls made meanwhile are not lost
    ok = gen_server:cast(W, inc),
    ?assertEqual(43, sys:get_state(W, ?T)).

%% A worker type without replace_state refuses, and a fun that does not
%% return a state the worker accepts is an error too; the worker lives on.
sys_replace_state_refused(Config) ->
    K = spawn_worker(dnode(Config), kv),
    ?assertError(not_supported, sys:replace_state(K, fun(S) -> S end, ?T)),
    C = spawn_worker(dnode(Config), counter, [{value, 1}]),
    ?assertError({bad_state, not_a_number}, sys:replace_state(C, fun(_) -> not_a_number end, ?T)),
    ?assertEqual(1, gen_server:call(C, get, ?T)),
    ?assertEqual([], gen_server:call(K, keys, ?T)).

sys_get_state_kv(Config) ->
    W = spawn_worker(dnode(Config), kv),
    ok = gen_server:call(W, {put, k, v}, ?T),
    ok = gen_server:call(W, {put, 2, "two"}, ?T),
    S = sys:get_state(W, ?T),
    ct:log("kv state: ~p", [S]),
    Norm = if is_map(S) -> lists:sort(maps:to_list(S));
              is_list(S) -> lists:sort(S);
              true -> S
           end,
    ?assertEqual(lists:sort([{k, v}, {2, "two"}]), Norm).

sys_get_status(Config) ->
    W = spawn_worker(dnode(Config), counter, [{value, 3}]),
    St = sys:get_status(W, ?T),
    ct:log("sys:get_status: ~p", [St]),
    ?assertMatch({status, W, _, L} when is_list(L), St).

sys_suspend_resume(Config) ->
    W = spawn_worker(dnode(Config), counter),
    ok = sys:suspend(W, ?T),
    ok = gen_server:cast(W, inc),
    ReqId = gen_server:send_request(W, get),
    %% nothing may come back while suspended
    ?assertEqual(timeout, gen_server:wait_response(ReqId, 500)),
    ok = sys:resume(W, ?T),
    ?assertEqual({reply, 1}, gen_server:receive_response(ReqId, ?T)),
    ?assertEqual(1, gen_server:call(W, get, ?T)).

%% ================================================================== signals

monitor_down_real_reason(Config) ->
    W = spawn_worker(dnode(Config), counter),
    Ref = erlang:monitor(process, W),
    Reason = {shutdown, {custom, <<"why">>}},
    _ = gen_server:send_request(W, {crash, Reason}),
    ?assertEqual({W, Reason}, expect_down(Ref, ?T)).

call_dead_worker_noproc_fast(Config) ->
    W = spawn_worker(dnode(Config), counter),
    Ref = erlang:monitor(process, W),
    ok = gen_server:call(W, stop, ?T),
    {W, normal} = expect_down(Ref, ?T),
    T0 = erlang:monotonic_time(),
    ?assertMatch({'EXIT', {noproc, {gen_server, call, _}}},
                 catch gen_server:call(W, get, 30000)),
    Ms = dsup_test:elapsed_ms(T0),
    ct:log("call to dead worker returned after ~b ms", [Ms]),
    ?assert(Ms < 1000).

monitor_dead_pid_noproc(Config) ->
    W = spawn_worker(dnode(Config), counter),
    ok = gen_server:call(W, stop, ?T),
    dsup_test:wait_until(fun() -> count_of(counter, dnode(Config)) =:= 0 end, ?T),
    Ref = erlang:monitor(process, W),
    ?assertEqual({W, noproc}, expect_down(Ref, 1000)).

monitor_registered_name(Config) ->
    N = dnode(Config),
    Ref = erlang:monitor(process, {dsup_node, N}),
    refute_message(fun({'DOWN', R, _, _, _}) -> R =:= Ref; (_) -> false end, 300),
    ?assert(erlang:demonitor(Ref, [flush])),
    %% a live name monitor fires on the node's death
    Ref2 = erlang:monitor(process, {dsup_node, N}),
    _ = dsup_test:kill_node(?config(dsup, Config)),
    ?assertEqual({{dsup_node, N}, noconnection}, expect_down(Ref2, ?T)).

monitor_unknown_name_noproc(Config) ->
    N = dnode(Config),
    Ref = erlang:monitor(process, {no_such_name, N}),
    ?assertEqual({{no_such_name, N}, noproc}, expect_down(Ref, 1000)).

demonitor_suppresses_down(Config) ->
    W = spawn_worker(dnode(Config), counter),
    Ref = erlang:monitor(process, W),
    true = erlang:demonitor(Ref),
    Ref2 = erlang:monitor(process, W),
    _ = gen_server:send_request(W, {crash, bye}),
    {W, bye} = expect_down(Ref2, ?T),
    refute_message(fun({'DOWN', R, _, _, _}) -> R =:= Ref; (_) -> false end, 300).

link_worker_crash_sends_exit(Config) ->
    W = spawn_worker(dnode(Config), counter),
    process_flag(trap_exit, true),
    true = link(W),
    Reason = {worker_died, 1},
    ?assertMatch({'EXIT', {Reason, _}}, catch gen_server:call(W, {crash, Reason}, ?T)),
    receive {'EXIT', W, R} -> ?assertEqual(Reason, R)
    after ?T -> ct:fail({no_exit_signal, process_info(self(), messages)})
    end.

link_erlang_crash_kills_worker(Config) ->
    W = spawn_worker(dnode(Config), counter),
    Ref = erlang:monitor(process, W),
    {P, PRef} = spawn_monitor(fun() ->
        true = link(W),
        %% make sure the link is set up at the worker before dying
        0 = gen_server:call(W, get, ?T),
        exit(erlang_side_crash)
    end),
    {P, erlang_side_crash} = expect_down(PRef, ?T),
    ?assertEqual({W, erlang_side_crash}, expect_down(Ref, ?T)).

link_erlang_normal_exit_keeps_worker(Config) ->
    W = spawn_worker(dnode(Config), counter),
    Ref = erlang:monitor(process, W),
    {P, PRef} = spawn_monitor(fun() ->
        true = link(W),
        0 = gen_server:call(W, get, ?T)
    end),
    {P, normal} = expect_down(PRef, ?T),
    ?assertEqual(0, gen_server:call(W, get, ?T)),
    refute_message(fun({'DOWN', R, _, _, _}) -> R =:= Ref; (_) -> false end, 200).

unlink_stops_propagation(Config) ->
    W = spawn_worker(dnode(Config), counter),
    process_flag(trap_exit, true),
    true = link(W),
    0 = gen_server:call(W, get, ?T),
    true = unlink(W),
    Ref = erlang:monitor(process, W),
    _ = gen_server:send_request(W, {crash, after_unlink}),
    {W, after_unlink} = expect_down(Ref, ?T),
    refute_message(fun({'EXIT', X, _}) -> X =:= W; (_) -> false end, 300).

exit_kill_gives_killed(Config) ->
    W = spawn_worker(dnode(Config), counter),
    Ref = erlang:monitor(process, W),
    true = exit(W, kill),
    ?assertEqual({W, killed}, expect_down(Ref, ?T)).

exit_normal_ignored(Config) ->
    W = spawn_worker(dnode(Config), counter, [{value, 5}]),
    Ref = erlang:monitor(process, W),
    true = exit(W, normal),
    ?assertEqual(5, gen_server:call(W, get, ?T)),
    refute_message(fun({'DOWN', R, _, _, _}) -> R =:= Ref; (_) -> false end, 200),
    %% and a non-normal exit signal kills it with that reason
    true = exit(W, go_away),
    ?assertEqual({W, go_away}, expect_down(Ref, ?T)).

%% Losing the connection is an exit signal `noconnection' to linked
%% processes on both sides (BEAM semantics): the worker linked to a CT-side
%% process dies; an unlinked one survives. Checked after reconnecting.
disconnect_kills_linked_worker(Config) ->
    N = dnode(Config),
    W = spawn_worker(N, counter),
    Holder = spawn(fun() -> true = link(W), receive stop -> ok end end),
    %% once the link exists locally, its LINK signal is already in the
    %% connection, ahead of our next call: the call's reply proves it arrived
    dsup_test:wait_until(fun() -> {links, [W]} =:= process_info(Holder, links) end, ?T),
    0 = gen_server:call(W, get, ?T),
    true = erlang:disconnect_node(N),
    dsup_test:wait_until(fun() -> not lists:member(N, nodes(hidden)) end, ?T),
    pong = net_adm:ping(N),
    dsup_test:wait_until(fun() -> count_of(counter, N) =:= 0 end, ?T),
    ?assertMatch({'EXIT', {noproc, _}}, catch gen_server:call(W, get, ?T)),
    exit(Holder, kill).

disconnect_keeps_unlinked_worker(Config) ->
    N = dnode(Config),
    W = spawn_worker(N, counter, [{value, 9}]),
    true = erlang:disconnect_node(N),
    dsup_test:wait_until(fun() -> not lists:member(N, nodes(hidden)) end, ?T),
    pong = net_adm:ping(N),
    ?assertEqual(9, gen_server:call(W, get, ?T)).

node_kill9_noconnection(Config) ->
    N = dnode(Config),
    Ws = [spawn_worker(N, counter), spawn_worker(N, echo)],
    Refs = [{erlang:monitor(process, W), W} || W <- Ws],
    ?assertMatch({exited, _}, dsup_test:kill_node(?config(dsup, Config))),
    [?assertEqual({W, noconnection}, expect_down(R, ?T)) || {R, W} <- Refs].

%% ================================================================== bad input

%% Connect raw, prove the link is live, send Bad, expect the node to close the
%% connection, and prove the node still serves others.
bad_frame_case(Config, Send) ->
    N = dnode(Config),
    {ok, C} = dist_raw:connect(N, erlang:get_cookie()),
    try
        ?assertMatch({ok, L} when is_list(L),
                     dist_raw:call(C, {dsup_node, N}, which_workers, ?T)),
        ok = Send(C),
        ?assertEqual(ok, dist_raw:wait_closed(C, ?T))
    after dist_raw:close(C)
    end,
    still_serving(N).

still_serving(N) ->
    %% the CT node's own connection
    W = spawn_worker(N, echo),
    ?assertEqual(ping, gen_server:call(W, ping, ?T)),
    %% and a fresh raw peer
    {ok, C2} = dist_raw:connect(N, erlang:get_cookie()),
    try ?assertMatch({ok, L} when is_list(L),
                     dist_raw:call(C2, {dsup_node, N}, which_workers, ?T))
    after dist_raw:close(C2)
    end.

garbage_frame_closes_connection(Config) ->
    bad_frame_case(Config, fun(C) ->
        dist_raw:send_raw(C, <<"this is not a distribution frame", 0, 255, 1, 2>>)
    end).

truncated_term_closes_connection(Config) ->
    %% 'p' + a control tuple whose encoding stops half-way
    Full = term_to_binary({6, self(), '', dsup_node}),
    Cut = binary:part(Full, 0, byte_size(Full) - 7),
    bad_frame_case(Config, fun(C) -> dist_raw:send_raw(C, [$p, Cut]) end).

bad_control_tuple_closes_connection(Config) ->
    Bad = [not_a_tuple,
           {},
           {<<"op">>, x},
           {2, '', not_a_pid},            % SEND to a non-pid
           {6, not_a_pid, '', dsup_node}, % REG_SEND from a non-pid
           {999, x, y}],                   % unknown operation
    lists:foreach(fun(Ctrl) ->
        ct:log("bad control: ~p", [Ctrl]),
        try bad_frame_case(Config, fun(C) -> dist_raw:send_ctrl(C, Ctrl, payload) end)
        catch Cl:R:St -> erlang:raise(Cl, {bad_control, Ctrl, R}, St)
        end
    end, Bad).

raw_wrong_cookie_refused(Config) ->
    N = dnode(Config),
    ?assertMatch({error, _}, dist_raw:connect(N, dsup_test:unique_name(bad_cookie))),
    still_serving(N).

%% Mutations (byte flips, truncation, insertion) of valid frames, several per
%% connection over many connections: whatever each does to its own connection,
%% the node must survive and serve. Replay a failure with the logged seed.
mutated_frames_survive(Config) ->
    N = dnode(Config),
    W = spawn_worker(N, counter),
    Seed = {erlang:phash2(make_ref()), erlang:unique_integer([positive]), 17},
    ct:log("rand seed: ~p", [Seed]),
    rand:seed(exsss, Seed),
    {ok, C0} = dist_raw:connect(N, erlang:get_cookie()),
    From = dist_raw:self_pid(C0),
    dist_raw:close(C0),
    Enc = fun(T) -> term_to_binary(T, [{minor_version, 2}]) end,
    Valid = [<<$p, (Enc({6, From, '', dsup_node}))/binary,
               (Enc({'$gen_call', {From, make_ref()}, which_workers}))/binary>>,
             <<$p, (Enc({2, '', W}))/binary,
               (Enc({'$gen_call', {From, make_ref()}, {add, 1}}))/binary>>,
             <<$p, (Enc({19, From, W, make_ref()}))/binary>>,
             <<$p, (Enc({1, From, W}))/binary>>,
             <<$p, (Enc({6, From, '', dsup_node}))/binary,
               (Enc({'$gen_call', {From, make_ref()}, {spawn, kv, [{a, 1}]}}))/binary>>],
    lists:foreach(fun(_) ->
        {ok, C} = dist_raw:connect(N, erlang:get_cookie()),
        [dist_raw:send_raw(C, mutate(lists:nth(rand:uniform(length(Valid)), Valid)))
         || _ <- lists:seq(1, 5)],
        dist_raw:close(C)
    end, lists:seq(1, 150)),
    %% (W itself may be gone: a mutated LINK followed by the close is a
    %% legitimate noconnection exit for it)
    still_serving(N).

mutate(Bin) ->
    case rand:uniform(4) of
        1 -> %% flip 1..4 random bytes
            lists:foldl(fun(_, B) ->
                I = rand:uniform(byte_size(B)) - 1,
                <<Pre:I/binary, X, Post/binary>> = B,
                <<Pre/binary, (X bxor rand:uniform(255)), Post/binary>>
            end, Bin, lists:seq(1, rand:uniform(4)));
        2 -> %% truncate
            binary:part(Bin, 0, rand:uniform(byte_size(Bin)) - 1);
        3 -> %% insert random bytes
            I = rand:uniform(byte_size(Bin)) - 1,
            <<Pre:I/binary, Post/binary>> = Bin,
            <<Pre/binary, (crypto:strong_rand_bytes(rand:uniform(8)))/binary, Post/binary>>;
        4 -> %% set a random byte to an extreme value (lengths, tags)
            I = rand:uniform(byte_size(Bin)) - 1,
            <<Pre:I/binary, _, Post/binary>> = Bin,
            <<Pre/binary, (lists:nth(rand:uniform(4), [0, 255, 127, 128])), Post/binary>>
    end.

%% ================================================================== ticks

visible_ticks_keep_connection(Config) ->
    ticks_case(Config, visible).

hidden_ticks_keep_connection(Config) ->
    ticks_case(Config, hidden).

ticks_case(Config, Kind) ->
    N = dnode(Config),
    {Peer, PNode} = dsup_test:start_peer(ticks_peer, #{connection => standard_io,
                                                      args => ["-kernel", "net_ticktime", "4"]}),
    try
        ?assertEqual(4, peer:call(Peer, net_kernel, get_net_ticktime, [])),
        ct:log("peer ~p watching ~p (~p) for 13 s", [PNode, N, Kind]),
        ?assertEqual(ok, peer:call(Peer, dsup_test, watch_connection, [N, Kind, 13000], 40000))
    after
        dsup_test:stop_peer(Peer)
    end.
