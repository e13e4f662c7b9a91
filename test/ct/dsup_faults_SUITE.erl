%%% Fault scenarios (issue 11) against 3 real dsup-nodes running one
%%% supervisor instance with 1,000 permanent children, each scenario
%%% repeated ?ROUNDS times (override: $DSUP_FAULT_ROUNDS):
%%%
%%%  sigstop_sigcont_host      SIGSTOP a node hosting children until the
%%%                            others drop it and fail its children over,
%%%                            then SIGCONT it (its copies come back: the
%%%                            duplicate rule keeps one of each);
%%%  kill9_immediate_restart   kill -9 a hosting node and restart it under
%%%                            the same name at once;
%%%  beam_scope_node_kill      a BEAM node joins the instance's pg scope
%%%                            (it receives the sync of 1,000 groups and
%%%                            joins 100 groups of its own) and is killed
%%%                            with kill -9, mid-sync or after it.
%%%
%%% After every round: every dsup-node OS process is still running (a
%%% SIGPIPE death is exit 141), every child name has exactly one registered
%%% copy (pg on the CT node, which runs the scope), every instance's whereis
%%% and children agree with it, and a sample of children answers calls.
%%% Every wait has a deadline. The nodes (and the CT node and BEAM peers)
%%% run with a net_ticktime of ?TICK s so that a stopped node is dropped
%%% within seconds.
-module(dsup_faults_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(TICK, 3).             % net_ticktime of every node, s
-define(ROUNDS, 10).
-define(N_PERM, 1000).
-define(T, 10000).            % ordinary convergence, ms
-define(CONVERGE_T, 40000).   % a round's convergence after the fault, ms

suite() ->
    [{timetrap, {seconds, 300}}].

all() ->
    [sigstop_sigcont_host, kill9_immediate_restart, beam_scope_node_kill].

%% ------------------------------------------------------------------ setup

init_per_suite(Config) ->
    Exe = dsup_test:exe(),
    case filelib:is_regular(Exe) of
        false -> {fail, {dsup_node_not_built, Exe}};
        true ->
            Old = net_kernel:get_net_ticktime(),
            _ = net_kernel:set_net_ticktime(?TICK, 0),
            dsup_test:wait_until(fun() -> net_kernel:get_net_ticktime() =:= ?TICK end, 5000),
            [{old_ticktime, Old} | Config]
    end.

end_per_suite(Config) ->
    case ?config(old_ticktime, Config) of
        T when is_integer(T) -> _ = net_kernel:set_net_ticktime(T, 0);
        _ -> ok
    end,
    ok.

init_per_testcase(TC, Config) ->
    Name = dsup_test:unique_name(dsup_fault),
    Scope = dsup_cluster:scope_of(Name),
    _ = dsup_cluster:start_beam_scope(node(), Scope),
    Hs = start_nodes(3, [], []),
    Nodes = [maps:get(node, H) || H <- Hs],
    Cfg = [{name, Name}, {scope, Scope}, {handles, Hs}, {nodes, Nodes} | Config],
    try
        [{ok, _} = dsup_cluster:call(N, {start_supervisor, Name, []}) || N <- Nodes],
        wait_ring(Cfg, Nodes, Nodes),
        T0 = erlang:monotonic_time(),
        populate(Cfg),
        ct:log("~p: ~b children on ~p in ~b ms", [TC, ?N_PERM, Nodes, dsup_test:elapsed_ms(T0)]),
        Cfg
    catch C:R:St ->
            end_per_testcase(TC, Cfg),
            erlang:raise(C, R, St)
    end.

end_per_testcase(_TC, Config) ->
    dsup_cluster:stop_all_c(handles(Config)),
    _ = persistent_term:erase({?MODULE, ?config(name, Config)}),
    dsup_cluster:stop_beam_scope(node(), ?config(scope, Config)),
    ok.

start_nodes(0, _, Acc) -> lists:reverse(Acc);
start_nodes(N, Connect, Acc) ->
    H = start_c(#{name => fault, connect => Connect}),
    start_nodes(N - 1, [maps:get(node, H) | Connect], [H | Acc]).

start_c(Opts) ->
    dsup_cluster:start_c(Opts#{net_ticktime => ?TICK}).

%% Handles of the case, with those of restarted nodes (kept in a
%% persistent_term: end_per_testcase runs in another process).
handles(Config) ->
    ?config(handles, Config) ++ persistent_term:get({?MODULE, ?config(name, Config)}, []).

remember_handle(Cfg, H) ->
    K = {?MODULE, ?config(name, Cfg)},
    persistent_term:put(K, persistent_term:get(K, []) ++ [H]).

current_handle(Cfg, Node) ->
    lists:last([H || H <- handles(Cfg), maps:get(node, H) =:= Node]).

%% ------------------------------------------------------------------ helpers

rounds() ->
    case os:getenv("DSUP_FAULT_ROUNDS") of
        false -> ?ROUNDS;
        R -> list_to_integer(R)
    end.

nodes_(Cfg) -> ?config(nodes, Cfg).
perm() -> [{w, I} || I <- lists:seq(1, ?N_PERM)].

sup(Cfg, Node, Msg) -> dsup_cluster:sup(?config(name, Cfg), Node, Msg).

pg_members(Cfg, CN) -> pg:get_members(?config(scope, Cfg), CN).

wait(Fun, T) ->
    try dsup_test:wait_until(Fun, T, 50)
    catch error:{wait_until_timeout, _, Last} -> ct:fail({timeout_ms, T, Last})
    end.

wait_ring(Cfg, On, Ring) ->
    Want = lists:sort(Ring),
    wait(fun() ->
                 Got = [{N, lists:sort(sup(Cfg, N, nodes))} || N <- On],
                 lists:all(fun({_, G}) -> G =:= Want end, Got) orelse {rings, Got}
         end, ?CONVERGE_T).

%% 1,000 permanent counters {w, I}, placed by the ring, started through
%% the instances from 8 parallel starters.
populate(Cfg) ->
    Nodes = nodes_(Cfg),
    Self = self(),
    Ps = [spawn_link(fun() ->
                             [{ok, _, CN} = sup(Cfg, lists:nth(1 + erlang:phash2(CN, 3), Nodes),
                                                {start_child, {counter, [{name, CN}]}, undefined})
                              || CN <- Chunk],
                             Self ! {populated, self()}
                     end) || Chunk <- chunk(perm(), 8)],
    [receive {populated, P} -> ok after 60000 -> ct:fail(populate_timeout) end || P <- Ps],
    wait(fun() -> [] =:= [CN || CN <- perm(), length(pg_members(Cfg, CN)) =/= 1] end, ?T).

chunk(L, N) ->
    Size = max(1, (length(L) + N - 1) div N),
    chunk_(L, Size).
chunk_([], _) -> [];
chunk_(L, Size) when length(L) =< Size -> [L];
chunk_(L, Size) -> {H, T} = lists:split(Size, L), [H | chunk_(T, Size)].

%% whereis of every name on every instance is its one pg member (a
%% process per node).
assert_whereis_all(Cfg, On) ->
    Self = self(),
    Ps = [spawn_link(fun() ->
                             Bad = [{CN, W, M} || CN <- perm(), W <- [sup(Cfg, N, {whereis, CN})],
                                                  M <- [pg_members(Cfg, CN)], [W] =/= M],
                             Self ! {whereis_checked, self(), N, Bad}
                     end) || N <- On],
    Bad = lists:append([receive {whereis_checked, P, N, B} -> [{N, length(B), lists:sublist(B, 3)} || B =/= []]
                        after 60000 -> ct:fail(whereis_check_timeout)
                        end || P <- Ps]),
    ?assertEqual([], Bad).

%% A node that hosts children (killing an empty one would test little).
pick_victim(Cfg, Round) ->
    Hosting = lists:usort([node(P) || CN <- perm(), P <- pg_members(Cfg, CN)]),
    lists:nth(1 + Round rem length(Hosting), Hosting).

%% Every dsup-node OS process runs (a SIGPIPE death is {exited, 141}).
assert_alive(Cfg) ->
    Dead = [{maps:get(node, H), St} || N <- nodes_(Cfg), H <- [current_handle(Cfg, N)],
                                       St <- [dsup_test:exit_status(H)], St =/= running],
    Dead =:= [] orelse dump_logs(Cfg),
    ?assertEqual([], Dead).

%% Each name: one pg copy; every instance's children and whereis say the
%% same; 50 random children answer a call.
check_converged(Cfg) ->
    Nodes = nodes_(Cfg),
    try
        wait(fun() ->
                     Bad = [{CN, Ms} || CN <- perm(), Ms <- [pg_members(Cfg, CN)], length(Ms) =/= 1],
                     case Bad of
                         [] ->
                             Want = maps:from_list([{CN, hd(pg_members(Cfg, CN))} || CN <- perm()]),
                             Diffs = [N || N <- Nodes,
                                           Got <- [maps:map(fun(_, {P, _}) -> P end, sup(Cfg, N, children))],
                                           Got =/= Want],
                             Diffs =:= [] orelse {children_differ, Diffs};
                         _ -> {bad, length(Bad), lists:sublist(Bad, 5)}
                     end
             end, ?CONVERGE_T),
        assert_whereis_all(Cfg, Nodes),
        Sample = [{w, rand:uniform(?N_PERM)} || _ <- lists:seq(1, 50)],
        ?assertEqual([], [{CN, R} || CN <- Sample, [P] <- [pg_members(Cfg, CN)],
                                     R <- [catch gen_server:call(P, get, 5000)], not is_integer(R)])
    catch C:R:St ->
            dump_logs(Cfg),
            erlang:raise(C, R, St)
    end.

dump_logs(Cfg) ->
    [ct:log("~s (~p) log tail:~n~s", [maps:get(node, H), dsup_test:exit_status(H),
                                      lists:join("\n", dsup_test:log_tail(H, 80))])
     || H <- [current_handle(Cfg, N) || N <- nodes_(Cfg)]],
    ok.

run_rounds(Cfg, What, Fun) ->
    T0 = erlang:monotonic_time(),
    Times = [begin
                 T1 = erlang:monotonic_time(),
                 Fun(Round),
                 assert_alive(Cfg),
                 check_converged(Cfg),
                 Ms = dsup_test:elapsed_ms(T1),
                 ct:log("~s round ~b: converged in ~b ms", [What, Round, Ms]),
                 Ms
             end || Round <- lists:seq(1, rounds())],
    ct:pal("~s: ~b rounds in ~b ms (per round ~p ms)", [What, rounds(), dsup_test:elapsed_ms(T0), Times]),
    {comment, dsup_cluster:fmt("~b rounds, max ~b ms", [rounds(), lists:max(Times)])}.

%% ------------------------------------------------------------------ cases

%% SIGSTOP a hosting node; once the others have dropped it (their rings
%% lose it, its children run again on them), SIGCONT it. The resumed node
%% finds its peers silent for longer than the tick time, reconnects, and
%% every name ends with one copy.
sigstop_sigcont_host(Cfg) ->
    Nodes = nodes_(Cfg),
    run_rounds(Cfg, "sigstop",
               fun(Round) ->
                       Victim = pick_victim(Cfg, Round),
                       H = current_handle(Cfg, Victim),
                       ok = dsup_test:signal_node(H, "STOP"),
                       try
                           wait_ring(Cfg, Nodes -- [Victim], Nodes -- [Victim])
                       after
                           dsup_test:signal_node(H, "CONT")
                       end,
                       wait_ring(Cfg, Nodes, Nodes)
               end).

%% kill -9 a hosting node and restart it under the same name at once (its
%% peers may not even have noticed it was gone).
kill9_immediate_restart(Cfg) ->
    Nodes = nodes_(Cfg),
    run_rounds(Cfg, "kill9_restart",
               fun(Round) ->
                       Victim = pick_victim(Cfg, Round),
                       H = current_handle(Cfg, Victim),
                       {exited, _} = dsup_cluster:kill_c(H),
                       catch dsup_test:forget(H),
                       H2 = start_c(#{node => Victim, connect => Nodes -- [Victim]}),
                       remember_handle(Cfg, H2),
                       {ok, _} = dsup_cluster:call(Victim, {start_supervisor, ?config(name, Cfg), []}),
                       wait_ring(Cfg, Nodes, Nodes)
               end).

%% A BEAM node runs the instance's pg scope (so it is sent the 1,000 child
%% groups by every dsup-node) and joins 100 groups of its own; it is killed
%% with kill -9 at once (odd rounds: mid-sync) or once it has the whole
%% registry (even rounds). The dsup-nodes survive, drop its members, and
%% lose no child.
beam_scope_node_kill(Cfg) ->
    Nodes = nodes_(Cfg),
    Scope = ?config(scope, Cfg),
    run_rounds(Cfg, "beam_kill",
               fun(Round) ->
                       {Holder, Peer} = start_peer(),
                       try
                           OsPid = erpc:call(Peer, os, getpid, []),
                           _ = erpc:call(Peer, pg, start, [Scope]),
                           [true = erpc:call(Peer, net_kernel, connect_node, [N]) || N <- Nodes],
                           ok = erpc:call(Peer, ?MODULE, join_groups, [Scope, 100]),
                           case Round rem 2 of
                               1 -> ok;
                               0 ->
                                   wait(fun() ->
                                                length(erpc:call(Peer, pg, which_groups, [Scope])) >= ?N_PERM + 100
                                        end, ?CONVERGE_T),
                                   wait(fun() ->
                                                lists:all(fun(N) -> length(dsup_cluster:members({c, N}, Scope, {beam, 1})) =:= 1 end,
                                                          Nodes)
                                        end, ?T)
                           end,
                           os:cmd("kill -9 " ++ OsPid)
                       after
                           exit(Holder, kill)
                       end,
                       %% the dsup-nodes drop the dead node's members
                       wait(fun() ->
                                    lists:all(fun(N) -> dsup_cluster:members({c, N}, Scope, {beam, 1}) =:= [] end,
                                              Nodes)
                            end, ?CONVERGE_T)
               end).

%% Run on the BEAM peer: a keeper process joins groups {beam, 1..N}.
join_groups(Scope, N) ->
    Self = self(),
    spawn(fun() ->
                  [ok = pg:join(Scope, {beam, I}, self()) || I <- lists:seq(1, N)],
                  Self ! joined,
                  receive after infinity -> ok end
          end),
    receive joined -> ok after 10000 -> error(join_timeout) end.

%% A BEAM peer (with our tick time) held by a process of its own, so that
%% killing its OS process does not take the test case with it.
start_peer() ->
    Caller = self(),
    Ref = make_ref(),
    Holder = spawn(fun() ->
                           process_flag(trap_exit, true),
                           {_Peer, Node} = dsup_test:start_peer(fault_beam, #{args => ["-kernel", "net_ticktime",
                                                                                         integer_to_list(?TICK)]}),
                           Caller ! {Ref, Node},
                           receive after infinity -> ok end
                   end),
    receive {Ref, Node} -> {Holder, Node}
    after 60000 -> exit(Holder, kill), ct:fail(peer_start_timeout)
    end.
