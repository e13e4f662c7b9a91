%%% Worker exits and self-healing (README "Crash reports" and "Escalation"),
%%% against real dsup-nodes, a real BEAM pg scope on the CT node (to read the
%%% registry independently of the instances) and, for the Elixir side, a
%%% BEAM peer running Elixir's own runtime with the shim compiled from
%%% elixir_shim/lib by elixirc (init_per_suite).
%%%
%%% * crash_loop_instance_restarts_rejoins_ring: 2 dsup-nodes + an Elixir
%%%   observer; 4 quick crashes of one child exceed its instance's intensity
%%%   (3 in 5 s); the instance restarts (new pid, same name and scope), is in
%%%   every ring again, the Elixir side's nodes/1 included, and every child
%%%   (the crash-looping one too) runs exactly once.
%%% * single_host_restart_keeps_children: the only host; after the restart
%%%   start_child works (no no_nodes) and its permanent children run again,
%%%   the temporary one does not.
%%% * killed_instance_restarted: exit(Instance, kill) from a BEAM process:
%%%   the node restarts it too, with its children.
%%% * failed_restarts_count_toward_intensity: a worker whose init fails on
%%%   restart (test/plugins/flaky_plugin.c) is retried, each try reported and
%%%   counted; at the intensity the instance restarts and starts it again.
%%% * node_intensity_exceeded_exits_70: --max-instance-restarts 1: the second
%%%   instance restart within the window stops the node with status 70.
%%% * crash_report_lines_and_rate_limit: the error line names instance,
%%%   child, type, pid, reason and action; a normal stop is an info line; a
%%%   crash loop gives at most the bucket's lines and a summary line.
%%% * elixir_observer_gets_logger_report: crash_reports: true on an Elixir
%%%   node: a C worker's crash reaches that node's :logger with its metadata.
-module(dsup_heal_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 10000).
-define(BURST, 10).          % crash_report.h SUP_REPORT_BURST
-define(SUMMARY_MS, 5000).   % crash_report.h SUP_REPORT_SUMMARY_MS

suite() -> [{timetrap, {seconds, 120}}].

all() ->
    [crash_loop_instance_restarts_rejoins_ring,
     single_host_restart_keeps_children,
     killed_instance_restarted,
     failed_restarts_count_toward_intensity,
     node_intensity_exceeded_exits_70,
     crash_report_lines_and_rate_limit,
     crash_report_of_a_deep_reason,
     elixir_observer_gets_logger_report].

%% ------------------------------------------------------------------ setup

init_per_suite(Config) ->
    dsup_test:require_exe(),
    %% Elixir's own ebin dirs, and the shim compiled for this run
    ElixirLib = filename:dirname(string:trim(os:cmd("elixir -e 'IO.write(:code.lib_dir(:elixir))'"))),
    Ebins = filelib:wildcard(filename:join([ElixirLib, "*", "ebin"])),
    [_ | _] = [E || E <- Ebins, filelib:is_regular(filename:join(E, "elixir.app"))],
    Shim = filename:join(?config(priv_dir, Config), "shim_ebin"),
    ok = filelib:ensure_dir(filename:join(Shim, "x")),
    Src = filename:join([dsup_test:root(), "elixir_shim", "lib"]),
    Out = os:cmd("cd " ++ Src ++ " && elixirc --ignore-module-conflict -o " ++ Shim ++ " . 2>&1; echo rc=$?"),
    ct:log("elixirc: ~s", [Out]),
    ?assertNotEqual(nomatch, string:find(Out, "rc=0")),
    [{elixir_paths, [Shim | Ebins]} | Config].

end_per_suite(_Config) -> ok.

init_per_testcase(TC, Config) ->
    Name = dsup_test:unique_name(dsup_heal),
    Scope = dsup_cluster:scope_of(Name),
    _ = dsup_cluster:start_beam_scope(node(), Scope),
    persistent_term:put({?MODULE, TC}, []),
    [{name, Name}, {scope, Scope}, {tc, TC} | Config].

end_per_testcase(TC, Config) ->
    [case X of
         {c, H} -> dsup_cluster:stop_all_c([H]);
         {peer, P} -> dsup_cluster:stop_peer(P)
     end || X <- persistent_term:get({?MODULE, TC}, [])],
    _ = persistent_term:erase({?MODULE, TC}),
    dsup_cluster:stop_beam_scope(node(), ?config(scope, Config)),
    ok.

remember(Cfg, X) ->
    K = {?MODULE, ?config(tc, Cfg)},
    persistent_term:put(K, [X | persistent_term:get(K, [])]).

start_c(Cfg, Opts) ->
    H = dsup_cluster:start_c(Opts),
    remember(Cfg, {c, H}),
    H.

%% An Elixir node: a BEAM peer with Elixir, Logger and the shim loaded,
%% connected to Nodes.
start_elixir(Cfg, Nodes) ->
    Caller = self(),
    Ref = make_ref(),
    Args = lists:append([["-pa", P] || P <- ?config(elixir_paths, Cfg)]) ++
        ["-pa", filename:dirname(code:which(?MODULE))],
    Holder = spawn(fun() ->
                           {Peer, Node} = dsup_test:start_peer(elixir, #{args => Args}),
                           Caller ! {Ref, Node},
                           receive {stop, From, Tag} -> dsup_test:stop_peer(Peer), From ! {Tag, ok} end
                   end),
    E = receive {Ref, N} -> N after 60000 -> ct:fail(elixir_peer_timeout) end,
    remember(Cfg, {peer, #{node => E, holder => Holder}}),
    {ok, _} = erpc:call(E, application, ensure_all_started, [elixir]),
    {ok, _} = erpc:call(E, application, ensure_all_started, [logger]),
    [true = erpc:call(E, net_kernel, connect_node, [N]) || N <- Nodes],
    E.

%% ------------------------------------------------------------------ helpers

name(Cfg) -> ?config(name, Cfg).
sup(Cfg, Node, Msg) -> dsup_cluster:sup(name(Cfg), Node, Msg).

wait(Fun, T) ->
    try dsup_test:wait_until(Fun, T, 20)
    catch error:{wait_until_timeout, _, Last} -> ct:fail({timeout_ms, T, Last})
    end.

start_ok(Cfg, Via, Spec, Where) ->
    case sup(Cfg, Via, {start_child, Spec, Where}) of
        {ok, Pid, _} when is_pid(Pid) -> Pid;
        Other -> ct:fail({start_child, Spec, Where, Other})
    end.

crash(Pid, R) ->
    Ref = erlang:monitor(process, Pid),
    ?assertMatch({'EXIT', {R, _}}, catch gen_server:call(Pid, {crash, R}, 5000)),
    receive {'DOWN', Ref, _, _, Why} -> ?assertEqual(R, Why)
    after ?T -> ct:fail({not_down, Pid})
    end.

%% The live pid of ChildName in the CT node's pg view, once it is not Old.
new_pid(Cfg, ChildName, Old) ->
    {ok, P} = wait(fun() ->
                           case pg:get_members(?config(scope, Cfg), ChildName) of
                               [P] when P =/= Old -> {true, P};
                               R -> {members, R}
                           end
                   end, ?T),
    P.

%% The instance's pid on Node (its member of '$dsup_hosts').
instance_pid(Cfg, Node) ->
    case [P || P <- pg:get_members(?config(scope, Cfg), '$dsup_hosts'), node(P) =:= Node] of
        [P] -> P;
        _ -> none
    end.

%% A new instance pid on Node (not Old), and its ring is Ring.
wait_restarted(Cfg, Node, Old) ->
    {ok, P} = wait(fun() ->
                           case instance_pid(Cfg, Node) of
                               P when is_pid(P), P =/= Old -> {true, P};
                               R -> {instance, R}
                           end
                   end, ?T),
    P.

wait_ring(Cfg, On, Ring) ->
    Want = lists:sort(Ring),
    wait(fun() ->
                 Got = [{N, catch lists:sort(sup(Cfg, N, nodes))} || N <- On],
                 lists:all(fun({_, G}) -> G =:= Want end, Got) orelse {rings, Got}
         end, ?T).

%% Every name runs exactly once (CT node's pg view: one live member) and
%% every instance on Nodes lists exactly Names as its children.
wait_all_once(Cfg, Nodes, Names) ->
    Want = lists:sort(Names),
    wait(fun() ->
                 Bad = [{N, Ms} || N <- Names,
                                   Ms <- [pg:get_members(?config(scope, Cfg), N)],
                                   length(Ms) =/= 1 orelse not is_alive_pid(hd(Ms))],
                 Kids = [{Nd, lists:sort(maps:keys(sup(Cfg, Nd, children)))} || Nd <- Nodes],
                 (Bad =:= [] andalso lists:all(fun({_, K}) -> K =:= Want end, Kids))
                     orelse {not_once, Bad, Kids}
         end, ?T).

is_alive_pid(P) ->
    try erpc:call(node(P), erlang, is_process_alive, [P], 2000)
    catch _:_ -> rpc_alive(P)
    end.

%% dsup-nodes have no erpc: a monitor answers for them.
rpc_alive(P) ->
    Ref = erlang:monitor(process, P),
    receive {'DOWN', Ref, _, _, _} -> false
    after 200 -> erlang:demonitor(Ref, [flush]), true
    end.

log_lines(H) ->
    {ok, B} = file:read_file(maps:get(log, H)),
    binary:split(B, <<"\n">>, [global, trim_all]).

has_line(H, Parts) ->
    [L || L <- log_lines(H), lists:all(fun(P) -> binary:match(L, iolist_to_binary(P)) =/= nomatch end, Parts)].

wait_line(H, Parts) ->
    {ok, L} = wait(fun() -> case has_line(H, Parts) of
                                [L | _] -> {true, L};
                                [] -> {no_line, Parts}
                            end
                   end, ?T),
    L.

%% "<0.N.S>": how the dsup-node prints its own pid P.
local_text(P) ->
    [_, N, S] = string:lexemes(pid_to_list(P), "<.>"),
    "<0." ++ N ++ "." ++ S ++ ">".

ex(E, F, A) -> erpc:call(E, 'Elixir.DistributedSupervisor', F, A, ?T).

%% ------------------------------------------------------------------ cases

crash_loop_instance_restarts_rejoins_ring(Cfg) ->
    HA = start_c(Cfg, #{name => heal_a}),
    A = maps:get(node, HA),
    HB = start_c(Cfg, #{name => heal_b, connect => [A]}),
    B = maps:get(node, HB),
    Opts = [{max_restarts, 3}, {max_seconds, 5}],
    {ok, OldA} = dsup_cluster:call(A, {start_supervisor, name(Cfg), Opts}),
    {ok, _} = dsup_cluster:call(B, {start_supervisor, name(Cfg), Opts}),
    wait_ring(Cfg, [A, B], [A, B]),
    E = start_elixir(Cfg, [A, B]),
    %% an observer (host: false): the children are the dsup-nodes'
    {ok, _} = ex(E, start, [[{name, name(Cfg)}, {host, false} | Opts]]),
    wait(fun() -> lists:sort(ex(E, nodes, [name(Cfg)])) =:= lists:sort([A, B]) end, ?T),
    Names = [list_to_atom("c" ++ integer_to_list(I)) || I <- lists:seq(1, 12)],
    [start_ok(Cfg, A, {counter, [{name, N}]}, undefined) || N <- Names],
    P0 = start_ok(Cfg, A, {counter, [{name, looper}]}, A),
    All = [looper | Names],
    wait_all_once(Cfg, [A, B], All),
    OnA = [N || N <- Names, node(hd(pg:get_members(?config(scope, Cfg), N))) =:= A],
    ct:log("children on A besides looper: ~p", [OnA]),
    %% three crashes are restarted on A, the fourth exceeds 3 in 5 s
    P3 = lists:foldl(fun(I, P) ->
                             crash(P, {boom, I}),
                             Q = new_pid(Cfg, looper, P),
                             ?assertEqual(A, node(Q)),
                             Q
                     end, P0, [1, 2, 3]),
    crash(P3, {boom, 4}),
    wait_line(HA, ["reached maximum restart intensity (3 in 5 s)"]),
    wait_line(HA, ["crash report: supervisor=", atom_to_list(name(Cfg)), " child=looper type=counter",
                   "reason={boom, 4} action=give_up"]),
    wait_line(HA, ["instance ended (reached_max_restart_intensity); restarting it in 250 ms"]),
    NewA = wait_restarted(Cfg, A, OldA),
    ?assertNotEqual(OldA, NewA),
    %% same registered name (calls by name reach it) and scope; back in every ring
    wait_ring(Cfg, [A, B], [A, B]),
    ?assertEqual([NewA], [X || X <- dsup_cluster:call(B, {pg_members, ?config(scope, Cfg), '$dsup_hosts'}),
                               node(X) =:= A]),
    wait(fun() -> lists:sort(ex(E, nodes, [name(Cfg)])) =:= lists:sort([A, B]) end, ?T),
    %% no child lost, none twice; the Elixir side knows them all
    wait_all_once(Cfg, [A, B], All),
    wait(fun() -> lists:sort(maps:keys(ex(E, children, [name(Cfg)]))) =:= lists:sort(All) end, ?T),
    %% the healed instance places and starts children again
    _ = start_ok(Cfg, A, {counter, [{name, after_heal}]}, A),
    wait_all_once(Cfg, [A, B], [after_heal | All]).

single_host_restart_keeps_children(Cfg) ->
    H = start_c(Cfg, #{name => heal_one}),
    A = maps:get(node, H),
    {ok, Old} = dsup_cluster:call(A, {start_supervisor, name(Cfg), [{max_restarts, 1}, {max_seconds, 5}]}),
    _ = start_ok(Cfg, A, {counter, [{name, p1}, {value, 7}]}, undefined),
    _ = start_ok(Cfg, A, {kv, [{name, p2}]}, undefined),
    _ = start_ok(Cfg, A, {echo, [{name, t1}, {restart, temporary}]}, undefined),
    P0 = start_ok(Cfg, A, {counter, [{name, looper}]}, undefined),
    wait_all_once(Cfg, [A], [p1, p2, t1, looper]),
    crash(P0, boom),
    P1 = new_pid(Cfg, looper, P0),
    crash(P1, boom),
    New = wait_restarted(Cfg, A, Old),
    ?assertNotEqual(Old, New),
    ?assertEqual([A], sup(Cfg, A, nodes)),
    %% the permanent children are back (p1 with its init args); the temporary one is not
    wait_all_once(Cfg, [A], [p1, p2, looper]),
    ?assertEqual(7, gen_server:call(hd(pg:get_members(?config(scope, Cfg), p1)), get)),
    ?assertEqual([], pg:get_members(?config(scope, Cfg), t1)),
    wait_line(H, ["instance restarted; 3 of its former children started again here"]),
    %% and it answers start_child again (not {error, no_nodes})
    _ = start_ok(Cfg, A, {counter, [{name, more}]}, undefined),
    wait_all_once(Cfg, [A], [p1, p2, looper, more]),
    {ok, 0} = dsup_test:stop_node(H).

killed_instance_restarted(Cfg) ->
    H = start_c(Cfg, #{name => heal_kill}),
    A = maps:get(node, H),
    {ok, Old} = dsup_cluster:call(A, {start_supervisor, name(Cfg), []}),
    P0 = start_ok(Cfg, A, {counter, [{name, k1}]}, undefined),
    Ref = erlang:monitor(process, Old),
    exit(Old, kill),
    receive {'DOWN', Ref, _, _, killed} -> ok after ?T -> ct:fail(instance_not_killed) end,
    _ = wait_restarted(Cfg, A, Old),
    ?assertEqual([A], sup(Cfg, A, nodes)),
    _ = new_pid(Cfg, k1, P0),
    wait_all_once(Cfg, [A], [k1]),
    wait_line(H, ["instance ended (killed); restarting it in 250 ms"]),
    {ok, 0} = dsup_test:stop_node(H).

failed_restarts_count_toward_intensity(Cfg) ->
    Plugin = filename:join([filename:dirname(dsup_test:exe()), "examples", "flaky_plugin.so"]),
    H = start_c(Cfg, #{name => heal_flaky, extra_args => ["--load", Plugin]}),
    A = maps:get(node, H),
    N = atom_to_list(name(Cfg)),
    {ok, Old} = dsup_cluster:call(A, {start_supervisor, name(Cfg), [{max_restarts, 3}, {max_seconds, 5}]}),
    P0 = start_ok(Cfg, A, {flaky, [{name, fl}]}, undefined),
    _ = start_ok(Cfg, A, {counter, [{name, b1}]}, undefined),
    %% the next 3 inits fail: the restart and its 2 retries (3 in 5 s), then
    %% the instance gives up; the restarted instance starts fl (4th init)
    ok = gen_server:call(P0, {fail_next, 3}),
    crash(P0, boom),
    wait_line(H, ["crash report: supervisor=" ++ N ++ " child=fl type=flaky pid=" ++ local_text(P0) ++
                  " reason=boom action=restart"]),
    _ = wait_restarted(Cfg, A, Old),
    wait_all_once(Cfg, [A], [fl, b1]),
    Failed = has_line(H, ["crash report: supervisor=" ++ N ++ " child=fl type=flaky start failed: reason=init_refused action=retry"]),
    ?assertEqual(3, length(Failed)),
    [_] = has_line(H, ["child=fl type=flaky start failed: reason=reached_max_restart_intensity action=give_up"]),
    [_] = has_line(H, ["reached maximum restart intensity (3 in 5 s)"]),
    wait_line(H, ["instance restarted; 2 of its former children started again here"]),
    ?assertEqual(echo_me, gen_server:call(hd(pg:get_members(?config(scope, Cfg), fl)), echo_me)),
    {ok, 0} = dsup_test:stop_node(H).

node_intensity_exceeded_exits_70(Cfg) ->
    H = start_c(Cfg, #{name => heal_node,
                       extra_args => ["--supervisor", atom_to_list(name(Cfg)) ++ ",max_restarts=0",
                                      "--max-instance-restarts", "1", "--max-instance-seconds", "60"]}),
    A = maps:get(node, H),
    {ok, Old} = wait(fun() -> case instance_pid(Cfg, A) of
                                  P when is_pid(P) -> {true, P};
                                  R -> R
                              end end, ?T),
    P0 = start_ok(Cfg, A, {counter, [{name, looper}]}, undefined),
    crash(P0, boom),            % max_restarts=0: the instance gives up at once
    _ = wait_restarted(Cfg, A, Old),
    wait_line(H, ["node restart 1 of 1 allowed in 60 s"]),
    P1 = new_pid(Cfg, looper, P0),  % carried over into the new instance
    crash(P1, boom),            % the second instance end in 60 s: the node stops
    {exited, St} = dsup_test:wait_exit(H, ?T),
    ?assertEqual(70, St),
    [_] = has_line(H, [" error node reached maximum instance restart intensity (1 in 60 s)",
                       "exiting with status 70"]).

crash_report_lines_and_rate_limit(Cfg) ->
    H = start_c(Cfg, #{name => heal_log}),
    A = maps:get(node, H),
    N = atom_to_list(name(Cfg)),
    {ok, _} = dsup_cluster:call(A, {start_supervisor, name(Cfg), [{max_restarts, 1000}, {max_seconds, 5}]}),
    P = start_ok(Cfg, A, {counter, [{name, cr_child}]}, undefined),
    crash(P, {my_reason, 42}),
    L1 = wait_line(H, ["crash report: supervisor=" ++ N ++ " child=cr_child type=counter pid=" ++ local_text(P) ++
                       " reason={my_reason, 42} action=restart"]),
    ?assertMatch({match, _}, re:run(L1, " error crash report: ")),
    %% a normal stop of a transient child: info, not restarted
    T = start_ok(Cfg, A, {counter, [{name, tr}, {restart, transient}]}, undefined),
    ok = gen_server:call(T, stop),
    L2 = wait_line(H, ["child stopped: supervisor=" ++ N ++ " child=tr type=counter pid=" ++ local_text(T) ++
                       " reason=normal action=none"]),
    ?assertMatch({match, _}, re:run(L2, " info child stopped: ")),
    %% terminate_child is the supervisor's own doing: not reported at info
    T2 = start_ok(Cfg, A, {echo, [{name, term_me}]}, undefined),
    ok = sup(Cfg, A, {terminate_child, T2}),
    %% a crash loop: at most the bucket's lines (2 used above, 1 more a second), then a summary
    T0 = erlang:monotonic_time(),
    lists:foldl(fun(I, Q) -> crash(Q, {loop, I}), new_pid(Cfg, cr_child, Q) end,
                new_pid(Cfg, cr_child, P), lists:seq(1, 30)),
    Secs = dsup_test:elapsed_ms(T0) div 1000 + 1,
    wait_line(H, [" warn " ++ N ++ ": ", "worker exit reports suppressed in the last 5 s"]),
    Reports = has_line(H, ["supervisor=" ++ N ++ " "]),
    ct:log("~b report lines in ~b s:~n~s", [length(Reports), Secs, lists:join("\n", Reports)]),
    ?assertEqual([], has_line(H, ["child=term_me"])),
    ?assert(length(Reports) =< ?BURST + Secs),
    ?assert(length(Reports) >= ?BURST),
    {ok, 0} = dsup_test:stop_node(H).

%% An exit reason nested 100,000 deep (any peer can send one) is reported
%% as a summary, not printed: ei's printer recurses once per level and would
%% overflow the node's C stack. The child restarts, the node lives on.
crash_report_of_a_deep_reason(Cfg) ->
    H = start_c(Cfg, #{name => heal_deep}),
    A = maps:get(node, H),
    N = atom_to_list(name(Cfg)),
    {ok, _} = dsup_cluster:call(A, {start_supervisor, name(Cfg), []}),
    P = start_ok(Cfg, A, {counter, [{name, deep_child}]}, undefined),
    %% 30,000 nested 1-tuples fit in 60 KB: summarised for their depth...
    Deep = lists:foldl(fun(_, Acc) -> {Acc} end, deep, lists:seq(1, 30000)),
    crash(P, Deep),
    wait_line(H, ["crash report: supervisor=" ++ N ++ " child=deep_child type=counter pid=" ++ local_text(P) ++
                  " reason=<term of ", "nested more than 64 deep> action=restart"]),
    %% ...100,000 nested lists (600 KB) for their size
    Q = new_pid(Cfg, deep_child, P),
    crash(Q, lists:foldl(fun(_, Acc) -> [Acc] end, deep, lists:seq(1, 100000))),
    wait_line(H, ["crash report: supervisor=" ++ N ++ " child=deep_child type=counter pid=" ++ local_text(Q) ++
                  " reason=<term of 600006 bytes> action=restart"]),
    R = new_pid(Cfg, deep_child, Q),
    ?assertEqual(0, gen_server:call(R, get, ?T)),
    {ok, 0} = dsup_test:stop_node(H).

elixir_observer_gets_logger_report(Cfg) ->
    H = start_c(Cfg, #{name => heal_ex}),
    A = maps:get(node, H),
    {ok, _} = dsup_cluster:call(A, {start_supervisor, name(Cfg), []}),
    E = start_elixir(Cfg, [A]),
    ok = erpc:call(E, logger, add_handler, [ct_forward, ?MODULE, #{config => #{to => self()}}]),
    {ok, _} = ex(E, start, [[{name, name(Cfg)}, {host, false}, {crash_reports, true}]]),
    wait(fun() -> ex(E, nodes, [name(Cfg)]) =:= [A] end, ?T),
    %% the observer is in the opt-in group, as every node sees it
    wait(fun() -> [node(X) || X <- pg:get_members(?config(scope, Cfg), '$dsup_crash_reports')] =:= [E] end, ?T),
    P = start_ok(Cfg, A, {counter, [{name, ex_child}]}, undefined),
    crash(P, {ex_reason, 7}),
    {Msg, Meta} = receive_report(error, ?T),
    ct:log("Elixir log event: ~s~n~p", [Msg, Meta]),
    ?assertMatch(#{dsup_child := ex_child, dsup_type := counter, dsup_pid := P,
                   dsup_reason := {ex_reason, 7}, dsup_action := restart, dsup_node := A,
                   domain := [elixir, dsup, crash_report]}, Meta),
    ?assertEqual(name(Cfg), maps:get(dsup_instance, Meta)),
    [?assertNotEqual(nomatch, string:find(Msg, S))
     || S <- ["crash report: ", "child=:ex_child", "type=:counter", "reason={:ex_reason, 7}", "action=restart"]].

receive_report(Level, T) ->
    receive
        {ct_log_event, Level, Msg, #{dsup_child := _} = Meta} -> {Msg, Meta};
        {ct_log_event, _, _, _} -> receive_report(Level, T)
    after T -> ct:fail(no_logger_report)
    end.

%% :logger handler on the Elixir node: forwards every event to the CT case.
log(#{level := L, msg := M, meta := Meta}, #{config := #{to := To}}) ->
    Text = case M of
               {string, S} -> unicode:characters_to_list(S);
               {report, R} -> io_lib:format("~p", [R]);
               {F, A} -> io_lib:format(F, A)
           end,
    To ! {ct_log_event, L, lists:flatten(Text), Meta},
    ok.
