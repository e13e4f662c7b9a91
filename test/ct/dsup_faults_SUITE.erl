%%% Fault scenarios (issue 11) against 3 real dsup-nodes running one
%%% supervisor instance with 1,000 permanent children, each scenario
%%% repeated ?ROUNDS times (override: $DSUP_FAULT_ROUNDS):
%%%
%%%  sigstop_sigcont_host      SIGSTOP a node hosting children until the
%%%                            others drop it and fail its children over
%%%                            (even rounds: and at least 8 s, past
%%%                            net_setuptime), then SIGCONT it (its copies come back: the
%%%                            duplicate rule keeps one of each);
%%%  kill9_immediate_restart   kill -9 a hosting node and restart it under
%%%                            the same name at once;
%%%  beam_scope_node_kill      a BEAM node joins the instance's pg scope
%%%                            (it receives the sync of 1,000 groups and
%%%                            joins 100 groups of its own) and is killed
%%%                            with kill -9: mid-sync, after it, or after
%%%                            being frozen (SIGSTOP) while the dsup-nodes
%%%                            keep writing pg traffic to it.
%%%
%%% Calls and child churn run throughout (so nodes are writing to the peer
%%% that stops or dies). After every round: every dsup-node OS process is still running (a
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
-define(SETUP_MS, 8000).      % past net_setuptime (7 s): a half-open handshake is abandoned

suite() ->
    [{timetrap, {seconds, 300}}].

all() ->
    [sigstop_sigcont_host, kill9_immediate_restart, beam_scope_node_kill].

%% ------------------------------------------------------------------ setup

init_per_suite(Config) ->
    Exe = dsup_test:require_exe(),
    %% A port program inherits the BEAM's SIG_IGN for SIGPIPE: run the
    %% nodes with the default action, as from a shell, or a SIGPIPE
    %% could never kill them here.
    Wrapper = filename:join(?config(priv_dir, Config), "dsup-node-default-sigpipe"),
    ok = file:write_file(Wrapper, ["#!/bin/sh\nexec env --default-signal=PIPE '", Exe, "' \"$@\"\n"]),
    ok = file:change_mode(Wrapper, 8#755),
    true = sigpipe_ignored_in_port(""),                   % why the wrapper
    false = sigpipe_ignored_in_port("env --default-signal=PIPE "),
    Old = net_kernel:get_net_ticktime(),
    _ = net_kernel:set_net_ticktime(?TICK, 0),
    dsup_test:wait_until(fun() -> net_kernel:get_net_ticktime() =:= ?TICK end, 5000),
    [{old_ticktime, Old}, {exe, Wrapper} | Config].

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
    Hs = start_nodes(3, Config, [], []),
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

start_nodes(0, _, _, Acc) -> lists:reverse(Acc);
start_nodes(N, Cfg, Connect, Acc) ->
    H = start_c(Cfg, #{name => fault, connect => Connect}),
    start_nodes(N - 1, Cfg, [maps:get(node, H) | Connect], [H | Acc]).

%% A dsup-node with our tick time, started with SIGPIPE's default action.
start_c(Cfg, Opts) ->
    dsup_cluster:start_c(Opts#{net_ticktime => ?TICK, exe => ?config(exe, Cfg)}).

%% Whether a port program started as the wrapper starts dsup-node has
%% SIGPIPE (13) in its SigIgn mask.
sigpipe_ignored_in_port(Prefix) ->
    P = open_port({spawn, Prefix ++ "grep SigIgn: /proc/self/status"}, [exit_status, {line, 200}]),
    Mask = receive {P, {data, {eol, "SigIgn:\t" ++ Hex}}} -> list_to_integer(Hex, 16)
           after 5000 -> error(no_sigign)
           end,
    receive {P, {exit_status, _}} -> ok after 5000 -> ok end,
    Mask band (1 bsl 12) =/= 0.

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
    wait_alive(Cfg, fun() ->
                            Got = [{N, lists:sort(sup(Cfg, N, nodes))} || N <- On],
                            lists:all(fun({_, G}) -> G =:= Want end, Got) orelse {rings, Got}
                    end, ?CONVERGE_T).

%% wait/2, failing at once (with the logs) when a dsup-node has died.
wait_alive(Cfg, Fun, T) ->
    try
        dsup_test:wait_until(fun() ->
                                     case dead(Cfg) of
                                         [] -> Fun();
                                         Dead -> {abort, Dead}
                                     end
                             end, T, 50)
    catch
        error:{wait_until_timeout, _, Last} -> dump_logs(Cfg), ct:fail({timeout_ms, T, Last});
        error:{wait_until_aborted, Dead} -> dump_logs(Cfg), ct:fail({dsup_node_died, Dead})
    end.

%% [{Node, {exited, Status}}] of the case's current dsup-nodes (a SIGPIPE
%% death is {exited, 141}).
dead(Cfg) ->
    [{maps:get(node, H), St} || N <- nodes_(Cfg), H <- [current_handle(Cfg, N)],
                                St <- [dsup_test:exit_status(H)], St =/= running].

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
%% process per node; polled, since a call may meet a connection being
%% re-established on a loaded machine).
assert_whereis_all(Cfg, On) ->
    wait_alive(Cfg, fun() ->
                            Bad = whereis_bad(Cfg, On),
                            Bad =:= [] orelse {whereis, Bad}
                    end, ?T).

whereis_bad(Cfg, On) ->
    Self = self(),
    Ps = [spawn(fun() ->
                        Bad = try [{CN, W, M} || CN <- perm(), W <- [sup(Cfg, N, {whereis, CN})],
                                                 M <- [pg_members(Cfg, CN)], [W] =/= M]
                              catch C:R -> [{C, R}]
                              end,
                        Self ! {whereis_checked, self(), N, Bad}
                end) || N <- On],
    lists:append([receive {whereis_checked, P, N, B} -> [{N, length(B), lists:sublist(B, 3)} || B =/= []]
                   after 60000 -> [{P, whereis_check_timeout}]
                   end || P <- Ps]).

%% A node that hosts children (killing an empty one would test little).
pick_victim(Cfg, Round) ->
    Hosting = lists:usort([node(P) || CN <- perm(), P <- pg_members(Cfg, CN)]),
    lists:nth(1 + Round rem length(Hosting), Hosting).

%% Every dsup-node OS process runs (a SIGPIPE death is {exited, 141}).
assert_alive(Cfg) ->
    Dead = dead(Cfg),
    Dead =:= [] orelse dump_logs(Cfg),
    ?assertEqual([], Dead).

%% Each name: one pg copy; every instance's children and whereis say the
%% same; 50 random children answer a call.
check_converged(Cfg) ->
    Nodes = nodes_(Cfg),
    try
        wait_alive(Cfg, fun() ->
                     Bad = [{CN, Ms} || CN <- perm(), Ms <- [pg_members(Cfg, CN)], length(Ms) =/= 1],
                     case Bad of
                         [] ->
                             Want = maps:from_list([{CN, hd(pg_members(Cfg, CN))} || CN <- perm()]),
                             Diffs = [N || N <- Nodes,
                                           Got <- [maps:filtermap(fun({w, _}, {P, _}) -> {true, P};
                                                                     (_, _) -> false
                                                                  end, sup(Cfg, N, children))],
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

%% Rounds run with traffic in flight (what makes a node write to a peer
%% that has just gone): 3 clients call random children through random
%% instances, 2 churn clients start and terminate temporary children (pg
%% joins and leaves for every scope peer). Their outcomes are counted; a
%% wrong reply fails the case.
run_rounds(Cfg, What, Fun) ->
    Stats = ets:new(fault_stats, [public, set, named_table]),
    Clients = [spawn(fun() -> rand:seed(exsss, I), client_loop(Cfg, Stats) end) || I <- [1, 2, 3]]
        ++ [spawn(fun() -> rand:seed(exsss, 10 + I), churn_loop(Cfg, Stats, I, 1) end) || I <- [1, 2]],
    try run_rounds_(Cfg, What, Fun)
    after
        [exit(C, kill) || C <- Clients],
        Calls = lists:sort(ets:tab2list(Stats)),
        ct:pal("~s: traffic during the rounds: ~p", [What, Calls]),
        ?assertEqual([], [C || {{bad, _}, _} = C <- Calls])
    end.

client_loop(Cfg, Stats) ->
    Nodes = nodes_(Cfg),
    CN = {w, rand:uniform(?N_PERM)},
    Via = lists:nth(rand:uniform(length(Nodes)), Nodes),
    Outcome = try dsup_cluster:sup(?config(name, Cfg), Via, {whereis, CN}, 1000) of
                  Pid when is_pid(Pid) ->
                      try gen_server:call(Pid, get, 1000) of
                          N when is_integer(N) -> ok;
                          Other -> {bad, Other}
                      catch exit:{Why, _} -> {call, kind(Why)}
                      end;
                  undefined -> whereis_undefined;
                  Other -> {bad, {whereis, Other}}
              catch exit:{Why, _} -> {whereis, kind(Why)}
              end,
    ets:update_counter(Stats, Outcome, 1, {Outcome, 0}),
    client_loop(Cfg, Stats).

churn_loop(Cfg, Stats, I, N) ->
    Nodes = nodes_(Cfg),
    Via = lists:nth(rand:uniform(length(Nodes)), Nodes),
    Spec = {echo, [{name, {c, I, N}}, {restart, temporary}]},
    Outcome = try dsup_cluster:sup(?config(name, Cfg), Via, {start_child, Spec, undefined}, 2000) of
                  {ok, Pid, _} ->
                      try dsup_cluster:sup(?config(name, Cfg), Via, {terminate_child, Pid}, 2000) of
                          ok -> churn_ok;
                          {error, E} -> {terminate, kind(E)}
                      catch exit:{Why, _} -> {terminate, kind(Why)}
                      end;
                  {error, E} -> {start, kind(E)}
              catch exit:{Why, _} -> {start, kind(Why)}
              end,
    ets:update_counter(Stats, Outcome, 1, {Outcome, 0}),
    churn_loop(Cfg, Stats, I, N + 1).

kind(T) when is_tuple(T) -> element(1, T);
kind(A) -> A.

run_rounds_(Cfg, What, Fun) ->
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
                       T0 = erlang:monotonic_time(),
                       try
                           wait_ring(Cfg, Nodes -- [Victim], Nodes -- [Victim]),
                           %% even rounds: frozen past net_setuptime (7 s), so the
                           %% connection attempts the kernel accepted for it meanwhile
                           %% are abandoned by their callers before it reads them
                           Round rem 2 =:= 0 andalso
                               wait_alive(Cfg, fun() -> dsup_test:elapsed_ms(T0) >= ?SETUP_MS end, ?SETUP_MS + 1000)
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
                       H2 = start_c(Cfg, #{node => Victim, connect => Nodes -- [Victim]}),
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
                           case Round rem 3 of
                               1 -> ok;
                               2 ->
                                   %% frozen first: the dsup-nodes' writes to it
                                   %% pile up (300 churn steps' pg traffic)
                                   os:cmd("kill -STOP " ++ OsPid),
                                   Churn0 = churned(),
                                   wait_alive(Cfg, fun() -> churned() >= Churn0 + 300 end, ?CONVERGE_T);
                               0 ->
                                   wait_alive(Cfg, fun() ->
                                                length(erpc:call(Peer, pg, which_groups, [Scope])) >= ?N_PERM + 100
                                        end, ?CONVERGE_T),
                                   wait_alive(Cfg, fun() ->
                                                lists:all(fun(N) -> length(dsup_cluster:members({c, N}, Scope, {beam, 1})) =:= 1 end,
                                                          Nodes)
                                        end, ?T)
                           end,
                           os:cmd("kill -9 " ++ OsPid)
                       after
                           exit(Holder, kill)
                       end,
                       %% the dsup-nodes drop the dead node's members
                       wait_alive(Cfg, fun() ->
                                    lists:all(fun(N) -> dsup_cluster:members({c, N}, Scope, {beam, 1}) =:= [] end,
                                              Nodes)
                            end, ?CONVERGE_T)
               end).

churned() ->
    case ets:lookup(fault_stats, churn_ok) of
        [{_, N}] -> N;
        [] -> 0
    end.

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
