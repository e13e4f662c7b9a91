%%% pg scope peer in C, against the real kernel `pg' on real nodes.
%%%
%%% Every case runs in a cluster of four scope members of one fresh scope:
%%%   {beam, node()}  the CT node            {c, C1}  a hidden dsup-node
%%%   {beam, Peer}    a `peer' BEAM node     {c, C2}  a visible dsup-node
%%% (the peer lives for the whole suite; the scope and both dsup-nodes are new
%%% for each case). Membership is compared as sorted lists (duplicates kept:
%%% pg allows joining twice) on all four nodes; the C side is read through
%%% gen_server:call({dsup_node, N}, {pg_members, Scope, Group}).
%%%
%%% The BEAM scope processes must never restart: each case records the scope
%%% pid on both BEAM nodes at its start and checks it at its end
%%% (beam_scope_restart_recovered restarts them on purpose and checks the new
%%% pids instead).
%%%
%%% randomized_convergence uses the seed in $DSUP_PG_SEED when set (an
%%% integer), else a fresh one; the seed is printed (ct:pal and the case's
%%% comment) so that a failure can be replayed.
-module(dsup_pg_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 5000).            % ordinary convergence deadline, ms
-define(RECOVER_T, 2000).    % the 2 s promised for scope restarts / late scopes
-define(PROBE, '$probe').
-define(STEPS, 300).         % randomized_convergence steps

suite() ->
    [{timetrap, {seconds, 120}}].

all() ->
    [join_leave_converge_on_all_nodes,
     c_node_queries_and_return_values,
     killed_c_worker_leaves_everywhere,
     c_workers_in_many_scopes_leave_all,
     beam_member_exit_leaves_c_views,
     beam_leave_of_integer_group_reaches_c_nodes,
     kill9_hidden_dsup_node_removes_its_members,
     kill9_visible_dsup_node_removes_its_members,
     beam_scope_restart_recovered,
     beam_scope_killed_drops_only_its_node_members,
     beam_peer_resync_after_reconnect,
     raw_peer_resync_replaces_its_share,
     late_beam_scope_sees_c_members,
     monitor_scope_sees_c_worker_events,
     no_updates_to_a_scope_before_our_sync,
     randomized_convergence].

%% ------------------------------------------------------------------ setup

init_per_suite(Config) ->
    dsup_test:require_exe(),
    P = dsup_cluster:start_peer(pg_peer),
    [{peer, P} | Config].

end_per_suite(Config) ->
    dsup_cluster:stop_peer(?config(peer, Config)),
    ok.

init_per_testcase(TC, Config) ->
    #{node := Peer} = ?config(peer, Config),
    Scope = dsup_test:unique_name(pg_scope),
    ScopeArgs = ["--scope", atom_to_list(Scope)],
    Beam = [node(), Peer],
    Scopes0 = [{N, dsup_cluster:start_beam_scope(N, Scope)} || N <- Beam],
    C1 = dsup_cluster:start_c(#{name => pg_hidden, connect => [Peer],
                                extra_args => ScopeArgs}),
    C2 = dsup_cluster:start_c(#{name => pg_visible, visible => true,
                                connect => [Peer, maps:get(node, C1)],
                                extra_args => ScopeArgs}),
    Nurseries = [{N, dsup_cluster:nursery(N)} || N <- Beam],
    Nodes = [{beam, node()}, {beam, Peer}, {c, maps:get(node, C1)}, {c, maps:get(node, C2)}],
    Cfg = [{scope, Scope}, {nodes, Nodes}, {c_handles, [C1, C2]}, {c1, C1}, {c2, C2},
           {nurseries, Nurseries}, {scope_pids, Scopes0} | Config],
    %% Barrier: every member sees a probe pid of every other member (the
    %% scopes have discovered each other, the dsup-nodes are meshed).
    try
        Probes = [join(Cfg, Nd, ?PROBE, pid_on(Cfg, Nd)) || Nd <- Nodes],
        wait_converged(Cfg, #{?PROBE => Probes}, ?T),
        ct:log("~p: scope ~p, nodes ~p", [TC, Scope, Nodes]),
        [{probes, Probes} | Cfg]
    catch C:R:St ->
            end_per_testcase(TC, Cfg),           % not called when init fails
            erlang:raise(C, R, St)
    end.

end_per_testcase(_TC, Config) ->
    dsup_cluster:stop_all_c(?config(c_handles, Config)),
    Scope = ?config(scope, Config),
    [dsup_cluster:nursery_stop(P) || {_, P} <- ?config(nurseries, Config)],
    [dsup_cluster:stop_beam_scope(N, Scope) || {N, _} <- ?config(scope_pids, Config)],
    ok.

%% ------------------------------------------------------------------ helpers

scope(Cfg) -> ?config(scope, Cfg).
nodes_(Cfg) -> ?config(nodes, Cfg).
c_node(Cfg, K) -> maps:get(node, ?config(K, Cfg)).

%% A fresh process local to a member node.
pid_on(Cfg, {beam, N}) -> dsup_cluster:nursery_spawn(proplists:get_value(N, ?config(nurseries, Cfg)));
pid_on(_Cfg, {c, N}) -> {ok, P} = dsup_cluster:call(N, {spawn, echo, []}), P.

%% Join / leave Pid(s) on their own node, through that node's API.
join(Cfg, Nd, G, P) -> ok = pg_op(Cfg, Nd, join, G, P), P.
leave(Cfg, Nd, G, P) -> pg_op(Cfg, Nd, leave, G, P).

pg_op(Cfg, {beam, N}, Op, G, P) when N =:= node() -> pg:Op(scope(Cfg), G, P);
pg_op(Cfg, {beam, N}, Op, G, P) -> erpc:call(N, pg, Op, [scope(Cfg), G, P]);
pg_op(Cfg, {c, N}, join, G, P) -> dsup_cluster:call(N, {pg_join, scope(Cfg), G, P});
pg_op(Cfg, {c, N}, leave, G, P) -> dsup_cluster:call(N, {pg_leave, scope(Cfg), G, P}).

node_of_pid(Cfg, P) ->
    hd([Nd || {_, N} = Nd <- nodes_(Cfg), node(P) =:= N]).

%% Wait until every member node reports exactly Expected (Group => [Pid])
%% for every group named in Expected (and, when Strict, no other group).
wait_converged(Cfg, Expected, T) -> wait_converged(Cfg, Expected, T, false).

wait_converged(Cfg, Expected, T, Strict) ->
    Exp = maps:map(fun(_, L) -> lists:sort(L) end, Expected),
    Want = lists:sort([G || {G, L} <- maps:to_list(Exp), L =/= []]),
    try
        dsup_test:wait_until(
          fun() ->
                  Diffs = [{Nd, G, Got, E}
                           || Nd <- nodes_(Cfg), {G, E} <- maps:to_list(Exp),
                              Got <- [dsup_cluster:members(Nd, scope(Cfg), G)], Got =/= E]
                      ++ [{Nd, which_groups, Got, Want}
                          || Strict, Nd <- nodes_(Cfg),
                             Got <- [dsup_cluster:which_groups(Nd, scope(Cfg))], Got =/= Want],
                  Diffs =:= [] orelse {diffs, lists:sublist(Diffs, 10)}
          end, T, 20)
    catch error:{wait_until_timeout, _, Last} ->
            ct:fail({not_converged_within_ms, T, Last})
    end.

%% The BEAM scope processes are the ones recorded at the start of the case.
assert_scopes_unchanged(Cfg) ->
    Now = [{N, dsup_cluster:scope_pid(N, scope(Cfg))} || {N, _} <- ?config(scope_pids, Cfg)],
    ?assertEqual(?config(scope_pids, Cfg), Now, beam_scope_restarted),
    ok.

%% The node log tail, for a failing case.
c_log(Cfg, K, N) -> dsup_test:log_tail(?config(K, Cfg), N).

%% ------------------------------------------------------------------ cases

%% A join or leave made on any of the four nodes is seen by all four.
join_leave_converge_on_all_nodes(Cfg) ->
    Nodes = nodes_(Cfg),
    Probe = #{?PROBE => ?config(probes, Cfg)},
    %% one member per node in g, two per node in {grp, 2} (a tuple group)
    G1 = [join(Cfg, Nd, g, pid_on(Cfg, Nd)) || Nd <- Nodes],
    G2 = lists:append([begin P1 = pid_on(Cfg, Nd), P2 = pid_on(Cfg, Nd),
                             join(Cfg, Nd, {grp, 2}, [P1, P2]), [P1, P2]
                       end || Nd <- Nodes]),
    wait_converged(Cfg, Probe#{g => G1, {grp, 2} => G2}, ?T, true),
    %% the same pid joined twice is a member twice, everywhere
    [Dup | _] = G1,
    join(Cfg, node_of_pid(Cfg, Dup), g, Dup),
    wait_converged(Cfg, Probe#{g => [Dup | G1], {grp, 2} => G2}, ?T, true),
    %% leave one by one, from each node
    G1b = lists:foldl(fun(P, Acc) ->
                              ok = leave(Cfg, node_of_pid(Cfg, P), g, P),
                              Left = Acc -- [P],
                              wait_converged(Cfg, Probe#{g => Left}, ?T),
                              Left
                      end, [Dup | G1], G1),
    ?assertEqual([Dup], G1b),
    ok = leave(Cfg, node_of_pid(Cfg, Dup), g, Dup),
    %% the tuple group: each node leaves its two with one call
    [ok = leave(Cfg, Nd, {grp, 2}, [P || P <- G2, node(P) =:= N]) || {_, N} = Nd <- Nodes],
    wait_converged(Cfg, Probe#{g => [], {grp, 2} => []}, ?T, true),
    assert_scopes_unchanged(Cfg).

%% The dsup_node pg calls answer what the README promises.
c_node_queries_and_return_values(Cfg) ->
    S = scope(Cfg),
    C1 = c_node(Cfg, c1),
    C2 = c_node(Cfg, c2),
    A = pid_on(Cfg, {c, C1}),
    B = pid_on(Cfg, {c, C1}),
    R = pid_on(Cfg, {c, C2}),
    ?assertEqual(ok, dsup_cluster:call(C1, {pg_join, S, q, [A, B]})),
    ?assertEqual(ok, dsup_cluster:call(C2, {pg_join, S, q, R})),
    ?assertEqual(ok, dsup_cluster:call(C1, {pg_join, S, <<"bin group">>, A})),
    Probe = #{?PROBE => ?config(probes, Cfg)},
    wait_converged(Cfg, Probe#{q => [A, B, R], <<"bin group">> => [A]}, ?T, true),
    ?assertEqual(lists:sort([A, B]),
                 lists:sort(dsup_cluster:call(C1, {pg_local_members, S, q}))),
    ?assertEqual([R], dsup_cluster:call(C2, {pg_local_members, S, q})),
    ?assertEqual([], dsup_cluster:call(C1, {pg_local_members, S, nosuch_group})),
    ?assertEqual([], dsup_cluster:call(C1, {pg_members, S, nosuch_group})),
    ?assertEqual(lists:sort([?PROBE, q, <<"bin group">>]),
                 lists:sort(dsup_cluster:call(C1, {pg_which_groups, S}))),
    %% unknown scope: empty answers
    NoScope = dsup_test:unique_name(no_scope),
    ?assertEqual([], dsup_cluster:call(C1, {pg_members, NoScope, q})),
    ?assertEqual([], dsup_cluster:call(C1, {pg_which_groups, NoScope})),
    %% leave of a non-member, of an unknown group: not_joined
    ?assertEqual(not_joined, dsup_cluster:call(C1, {pg_leave, S, q, R})),
    ?assertEqual(not_joined, dsup_cluster:call(C1, {pg_leave, S, never_joined, A})),
    %% a pid that is not local (a remote one, a BEAM one), a non-pid: errors
    ?assertMatch({error, _}, dsup_cluster:call(C1, {pg_join, S, q, R})),
    ?assertMatch({error, _}, dsup_cluster:call(C1, {pg_join, S, q, self()})),
    ?assertMatch({error, _}, dsup_cluster:call(C1, {pg_join, S, q, not_a_pid})),
    %% a dead local worker may not join
    Dead = pid_on(Cfg, {c, C1}),
    Ref = erlang:monitor(process, Dead),
    exit(Dead, kill),
    receive {'DOWN', Ref, _, _, _} -> ok after ?T -> ct:fail(worker_not_dead) end,
    ?assertMatch({error, _}, dsup_cluster:call(C1, {pg_join, S, q, Dead})),
    %% pg_start_scope: a new scope, joinable at once, idempotent
    S2 = dsup_test:unique_name(pg_scope2),
    ?assertEqual(ok, dsup_cluster:call(C2, {pg_start_scope, S2})),
    ?assertEqual(ok, dsup_cluster:call(C2, {pg_start_scope, S2})),
    ?assertEqual(ok, dsup_cluster:call(C2, {pg_join, S2, x, R})),
    ?assertEqual([R], dsup_cluster:call(C2, {pg_members, S2, x})),
    ?assertEqual([x], dsup_cluster:call(C2, {pg_which_groups, S2})),
    %% nothing above disturbed the real scope
    wait_converged(Cfg, Probe#{q => [A, B, R], <<"bin group">> => [A]}, ?T, true),
    %% leave a list; partial lists leave what is joined
    ?assertEqual(ok, dsup_cluster:call(C1, {pg_leave, S, q, [A, B]})),
    ?assertEqual(ok, dsup_cluster:call(C2, {pg_leave, S, q, [R]})),
    wait_converged(Cfg, Probe#{q => [], <<"bin group">> => [A]}, ?T, true),
    assert_scopes_unchanged(Cfg).

%% exit(Pid, kill) of a C worker removes it from all its groups, everywhere.
killed_c_worker_leaves_everywhere(Cfg) ->
    Probe = #{?PROBE => ?config(probes, Cfg)},
    [C1, C2] = [{c, c_node(Cfg, K)} || K <- [c1, c2]],
    W1 = pid_on(Cfg, C1),
    W2 = pid_on(Cfg, C2),
    Keep = pid_on(Cfg, C1),
    [join(Cfg, C1, G, W1) || G <- [k1, k2, k2]],          % k2 twice
    [join(Cfg, C2, G, W2) || G <- [k1, k3]],
    join(Cfg, C1, k1, Keep),
    wait_converged(Cfg, Probe#{k1 => [W1, W2, Keep], k2 => [W1, W1], k3 => [W2]}, ?T, true),
    exit(W1, kill),
    wait_converged(Cfg, Probe#{k1 => [W2, Keep], k2 => [], k3 => [W2]}, ?T, true),
    exit(W2, kill),
    wait_converged(Cfg, Probe#{k1 => [Keep], k2 => [], k3 => []}, ?T, true),
    assert_scopes_unchanged(Cfg).

%% Six scopes on each dsup-node: more than the four whose members' only
%% membership names its scope in a tag (the later ones take a membership
%% node). A worker in every scope (twice in one group), workers alone in one
%% scope each (one leaves and joins again through the API), a remote member
%% beside them: killed, the locals leave everything, on every node, and only
%% they do.
c_workers_in_many_scopes_leave_all(Cfg) ->
    [C1, C2] = [{c, c_node(Cfg, K)} || K <- [c1, c2]],
    Extra = [dsup_test:unique_name(pg_many) || _ <- lists:seq(1, 5)],
    Beam = [N || {beam, N} <- nodes_(Cfg)],
    [dsup_cluster:start_beam_scope(N, S) || S <- Extra, N <- Beam],
    try
        [ok = dsup_cluster:call(N, {pg_start_scope, S}) || S <- Extra, {c, N} <- [C1, C2]],
        Scopes = [scope(Cfg) | Extra],
        In = fun(S) -> lists:keystore(scope, 1, Cfg, {scope, S}) end,
        W = pid_on(Cfg, C1),
        Keep = pid_on(Cfg, C1),
        Remote = pid_on(Cfg, C2),
        Solos = [{S, pid_on(Cfg, C1)} || S <- Scopes],
        [join(In(S), Nd, all, P) || S <- Scopes, {Nd, P} <- [{C1, W}, {C1, Keep}, {C2, Remote}]],
        [join(In(S), C1, twice, W) || S <- [hd(Scopes), lists:last(Scopes)], _ <- [1, 2]],
        [join(In(S), C1, solo, P) || {S, P} <- Solos],
        Before = fun(S) -> #{all => [W, Keep, Remote], solo => [proplists:get_value(S, Solos)],
                             twice => [W || lists:member(S, [hd(Scopes), lists:last(Scopes)]), _ <- [1, 2]]}
                 end,
        [wait_converged(In(S), Before(S), ?T) || S <- Scopes],
        [ok = leave(In(S), C1, solo, P) || {S, P} <- Solos],
        [wait_converged(In(S), #{solo => []}, ?T) || S <- Scopes],
        [join(In(S), C1, solo, P) || {S, P} <- Solos],
        [wait_converged(In(S), Before(S), ?T) || S <- Scopes],
        [exit(P, kill) || P <- [W | [P || {_, P} <- Solos]]],
        [wait_converged(In(S), #{all => [Keep, Remote], solo => [], twice => []}, ?T, true)
         || S <- Extra],
        wait_converged(Cfg, #{?PROBE => ?config(probes, Cfg), all => [Keep, Remote], solo => [], twice => []},
                       ?T, true),
        assert_scopes_unchanged(Cfg)
    after
        [dsup_cluster:stop_beam_scope(N, S) || S <- Extra, N <- Beam]
    end.

%% A BEAM member's exit (on the CT node and on the peer) reaches the C views.
beam_member_exit_leaves_c_views(Cfg) ->
    Probe = #{?PROBE => ?config(probes, Cfg)},
    [B1, B2 | _] = nodes_(Cfg),
    P1 = join(Cfg, B1, e, pid_on(Cfg, B1)),
    P2 = join(Cfg, B2, e, pid_on(Cfg, B2)),
    W = join(Cfg, lists:last(nodes_(Cfg)), e, pid_on(Cfg, lists:last(nodes_(Cfg)))),
    wait_converged(Cfg, Probe#{e => [P1, P2, W]}, ?T, true),
    exit(P1, kill),
    exit(P2, kill),
    wait_converged(Cfg, Probe#{e => [W]}, ?T, true),
    assert_scopes_unchanged(Cfg).

%% pg groups are any term. A BEAM leave names its groups in a list, and the
%% external term format writes a list of integers 0..255 as STRING_EXT:
%% {leave, Peer, Pid, [42]} carries "*" on the wire. The C views must apply
%% it like any other leave (explicit leave, and the leave a BEAM scope sends
%% when a member in such groups dies).
beam_leave_of_integer_group_reaches_c_nodes(Cfg) ->
    Probe = #{?PROBE => ?config(probes, Cfg)},
    [B1, B2, C1 | _] = nodes_(Cfg),
    P1 = join(Cfg, B1, 42, pid_on(Cfg, B1)),
    P2 = join(Cfg, B2, 42, pid_on(Cfg, B2)),
    join(Cfg, B2, 7, P2),
    W = join(Cfg, C1, 42, pid_on(Cfg, C1)),
    wait_converged(Cfg, Probe#{42 => [P1, P2, W], 7 => [P2]}, ?T, true),
    ok = leave(Cfg, B1, 42, P1),                   % {leave, _, P1, [42]} = "*"
    wait_converged(Cfg, Probe#{42 => [P2, W], 7 => [P2]}, ?T, true),
    exit(P2, kill),                                % {leave, _, P2, [7, 42]}
    wait_converged(Cfg, Probe#{42 => [W], 7 => []}, ?T, true),
    assert_scopes_unchanged(Cfg).

kill9_hidden_dsup_node_removes_its_members(Cfg) ->
    kill9_case(Cfg, c1, c2).

kill9_visible_dsup_node_removes_its_members(Cfg) ->
    kill9_case(Cfg, c2, c1).

%% SIGKILL a dsup-node: all of its members (several groups) disappear from
%% the three others; everything else stays.
kill9_case(Cfg, Victim, Survivor) ->
    [B1, B2 | _] = nodes_(Cfg),
    V = {c, c_node(Cfg, Victim)},
    Sv = {c, c_node(Cfg, Survivor)},
    VP = [pid_on(Cfg, V) || _ <- lists:seq(1, 5)],
    [join(Cfg, V, G, P) || P <- VP, G <- [m1, m2]],
    join(Cfg, V, m3, VP),
    Others = [join(Cfg, Nd, m1, pid_on(Cfg, Nd)) || Nd <- [B1, B2, Sv]],
    Probes = ?config(probes, Cfg),
    wait_converged(Cfg, #{?PROBE => Probes, m1 => VP ++ Others, m2 => VP, m3 => VP}, ?T, true),
    {exited, _} = dsup_cluster:kill_c(?config(Victim, Cfg)),
    Alive = [Nd || Nd <- nodes_(Cfg), Nd =/= V],
    VProbe = [P || P <- Probes, node(P) =:= element(2, V)],
    wait_converged([{nodes, Alive} | Cfg],
                   #{?PROBE => Probes -- VProbe, m1 => Others, m2 => [], m3 => []}, ?T, true),
    assert_scopes_unchanged(Cfg).

%% exit(whereis(Scope), kill) and a new scope on a BEAM node: within 2 s the
%% new scope sees the C members again (hidden and visible dsup-node), and
%% the other nodes drop the killed scope's members. Done on both BEAM nodes.
beam_scope_restart_recovered(Cfg) ->
    [B1, B2, C1, C2] = nodes_(Cfg),
    W1 = join(Cfg, C1, r, pid_on(Cfg, C1)),
    W2 = join(Cfg, C2, r, pid_on(Cfg, C2)),
    P1 = join(Cfg, B1, r, pid_on(Cfg, B1)),
    P2 = join(Cfg, B2, r, pid_on(Cfg, B2)),
    [Pr1, Pr2, PrC1, PrC2] = ?config(probes, Cfg),
    wait_converged(Cfg, #{?PROBE => [Pr1, Pr2, PrC1, PrC2], r => [W1, W2, P1, P2]}, ?T, true),
    Cfg1 = restart_scope(Cfg, B1),
    %% B1's local members went with its scope; the C members come back to it
    T0 = erlang:monotonic_time(),
    wait_converged(Cfg1, #{?PROBE => [Pr2, PrC1, PrC2], r => [W1, W2, P2]}, ?RECOVER_T, true),
    ct:pal("CT node scope recovered in ~b ms", [dsup_test:elapsed_ms(T0)]),
    Cfg2 = restart_scope(Cfg1, B2),
    T1 = erlang:monotonic_time(),
    wait_converged(Cfg2, #{?PROBE => [PrC1, PrC2], r => [W1, W2]}, ?RECOVER_T, true),
    ct:pal("peer scope recovered in ~b ms", [dsup_test:elapsed_ms(T1)]),
    %% the new scopes work both ways
    P3 = join(Cfg2, B2, r, pid_on(Cfg2, B2)),
    W3 = join(Cfg2, C1, r, pid_on(Cfg2, C1)),
    wait_converged(Cfg2, #{?PROBE => [PrC1, PrC2], r => [W1, W2, W3, P3]}, ?T, true),
    %% and were not restarted again meanwhile
    assert_scopes_unchanged(Cfg2).

restart_scope(Cfg, {beam, N}) ->
    S = scope(Cfg),
    Old = dsup_cluster:scope_pid(N, S),
    Ref = erlang:monitor(process, Old),
    exit(Old, kill),
    receive {'DOWN', Ref, _, _, _} -> ok after ?T -> ct:fail(scope_not_dead) end,
    %% (the registered name is free once DOWN has arrived)
    New = dsup_cluster:start_beam_scope(N, S),
    ?assertNotEqual(Old, New),
    Pids = lists:keyreplace(N, 1, ?config(scope_pids, Cfg), {N, New}),
    lists:keystore(scope_pids, 1, Cfg, {scope_pids, Pids}).

%% exit(whereis(Scope), kill) on the peer, no new scope yet: every member
%% on the peer's node leaves the other views (in several groups, one of them
%% its own only), while the CT node's and a dsup-node's members of the same
%% groups stay. A new scope there that rejoins an old member (alive all
%% along) and adds one is then seen exactly so.
beam_scope_killed_drops_only_its_node_members(Cfg) ->
    [B1, {beam, N2} = B2, C1, C2] = nodes_(Cfg),
    [Pr1, _Pr2, PrC1, PrC2] = Probes = ?config(probes, Cfg),
    PA = pid_on(Cfg, B2),
    PB = pid_on(Cfg, B2),
    join(Cfg, B2, s1, [PA, PB]),
    join(Cfg, B2, s2, PA),
    join(Cfg, B2, s3, PB),
    Q = join(Cfg, B1, s1, pid_on(Cfg, B1)),
    join(Cfg, B1, s2, Q),
    W = join(Cfg, C2, s2, pid_on(Cfg, C2)),
    wait_converged(Cfg, #{?PROBE => Probes, s1 => [PA, PB, Q], s2 => [PA, Q, W], s3 => [PB]}, ?T, true),
    Old = dsup_cluster:scope_pid(N2, scope(Cfg)),
    Ref = erlang:monitor(process, Old),
    exit(Old, kill),
    receive {'DOWN', Ref, _, _, _} -> ok after ?T -> ct:fail(scope_not_dead) end,
    wait_converged([{nodes, [B1, C1, C2]} | Cfg],
                   #{?PROBE => [Pr1, PrC1, PrC2], s1 => [Q], s2 => [Q, W], s3 => []}, ?T, true),
    New = dsup_cluster:start_beam_scope(N2, scope(Cfg)),
    Cfg1 = lists:keystore(scope_pids, 1, Cfg,
                          {scope_pids, lists:keyreplace(N2, 1, ?config(scope_pids, Cfg), {N2, New})}),
    join(Cfg1, B2, s1, PA),
    PC = join(Cfg1, B2, s3, pid_on(Cfg1, B2)),
    wait_converged(Cfg1, #{?PROBE => [Pr1, PrC1, PrC2], s1 => [PA, Q], s2 => [Q, W], s3 => [PC]}, ?T, true),
    assert_scopes_unchanged(Cfg1).

%% The hidden dsup-node loses its connection to the peer (the peer's cookie
%% for it made wrong, then disconnect_node: no reconnect can succeed) while
%% the peer's members change. During the cut its view has none of the
%% peer's members (the others' in the same groups stay); once the cookie is
%% restored it reconnects, and the peer scope's sync gives it exactly the
%% new picture (a leave, an exit, joins to an old and to a new group).
beam_peer_resync_after_reconnect(Cfg) ->
    [B1, {beam, N2} = B2, {c, C1N} = C1, C2] = nodes_(Cfg),
    [Pr1, _Pr2, PrC1, PrC2] = Probes = ?config(probes, Cfg),
    [PA, PB, PC] = [pid_on(Cfg, B2) || _ <- [1, 2, 3]],
    join(Cfg, B2, t1, [PA, PB]),
    join(Cfg, B2, t2, PA),
    join(Cfg, B2, t3, PB),
    Q = join(Cfg, B1, t1, pid_on(Cfg, B1)),
    W = join(Cfg, C2, t2, pid_on(Cfg, C2)),
    wait_converged(Cfg, #{?PROBE => Probes, t1 => [PA, PB, Q], t2 => [PA, W], t3 => [PB]}, ?T, true),
    Final = #{?PROBE => Probes, t1 => [Q, PC], t2 => [PA, W], t3 => [], t4 => [PC]},
    Cookie = erlang:get_cookie(),
    true = erpc:call(N2, erlang, set_cookie, [C1N, wrong_cookie_for_the_cut]),
    try
        true = erpc:call(N2, erlang, disconnect_node, [C1N]),
        wait_converged([{nodes, [C1]} | Cfg],
                       #{?PROBE => [Pr1, PrC1, PrC2], t1 => [Q], t2 => [W], t3 => []}, ?T, true),
        ok = leave(Cfg, B2, t1, PA),
        exit(PB, kill),
        join(Cfg, B2, t1, PC),
        join(Cfg, B2, t4, PC),
        wait_converged([{nodes, [B1, C2]} | Cfg], Final, ?T, true),
        wait_converged([{nodes, [B2]} | Cfg], Final#{?PROBE := Probes -- [PrC1]}, ?T, true),
        ?assertNot(lists:member(C1N, erpc:call(N2, erlang, nodes, [connected])), still_cut)
    after
        true = erpc:call(N2, erlang, set_cookie, [C1N, Cookie])
    end,
    %% (the node's reconnect backoff is at most 5 s)
    wait_converged(Cfg, Final, 3 * ?T, true),
    assert_scopes_unchanged(Cfg).

%% A scope peer that syncs again (a raw distribution client acting as a pg
%% scope: a BEAM scope re-syncs only on a new discover): its share is
%% replaced exactly (a group it no longer lists loses its members, a listed
%% one gets exactly the listed pids), another node's member of the same
%% group stays, and a pid of another node in its sync is not taken. A
%% restarted scope there that syncs before the old one's DOWN arrives keeps
%% its share through that DOWN; the end of the connection removes it.
raw_peer_resync_replaces_its_share(Cfg) ->
    Scope = scope(Cfg),
    C1 = c_node(Cfg, c1),
    View = [{nodes, [{c, C1}]} | Cfg],
    Q = join(Cfg, {beam, node()}, u1, pid_on(Cfg, {beam, node()})),
    {ok, Raw} = dist_raw:connect(C1, erlang:get_cookie()),
    try
        Me = dist_raw:self_pid(Raw),
        #{name := RawNode, creation := Cr} = Raw,
        [P1, P2, P3, P4, P5] = [dist_raw:make_pid(RawNode, I, Cr) || I <- lists:seq(2, 6)],
        {DsupScope, _} = raw_until(Raw, fun({{6, _From, _, S}, {discover, P}}) when S =:= Scope -> {true, P};
                                           (_) -> false end),
        Sync = fun(Gs) -> ok = dist_raw:send_ctrl(Raw, {2, '', DsupScope}, {'$gen_cast', {sync, Me, Gs}}) end,
        Sync([{u1, [P1, P2]}, {u2, [P3]}]),
        wait_converged(View, #{u1 => [P1, P2, Q], u2 => [P3]}, ?T),
        %% syncs that are not lists of {Group, Pids} change nothing (they
        %% would read as "no members"); a join sent after them shows they
        %% were handled
        Sync(not_a_list),
        Sync([{u1, [P1]}, broken]),
        ok = dist_raw:send_ctrl(Raw, {2, '', DsupScope}, {join, Me, u9, P5}),
        wait_converged(View, #{u1 => [P1, P2, Q], u2 => [P3], u9 => [P5]}, ?T),
        {{MonFrom, MonRef}, _} = raw_until(Raw, fun({{19, F, To, R}}) when To =:= Me -> {true, {F, R}};
                                                    (_) -> false end),
        Sync([{u1, [P4, P2]}, {u3, [P5, Q]}]),
        wait_converged(View, #{u1 => [P2, P4, Q], u2 => [], u3 => [P5], u9 => []}, ?T),
        %% the scope restarts on that node: the new one syncs before the
        %% old one's DOWN arrives; that DOWN leaves the new one's share be
        Me2 = dist_raw:make_pid(RawNode, 7, Cr),
        [P6, P7] = [dist_raw:make_pid(RawNode, I, Cr) || I <- [8, 9]],
        Sync2 = fun(Gs) -> ok = dist_raw:send_ctrl(Raw, {2, '', DsupScope}, {'$gen_cast', {sync, Me2, Gs}}) end,
        Sync2([{u1, [P2, P6]}]),
        wait_converged(View, #{u1 => [P2, P6, Q], u2 => [], u3 => []}, ?T),
        ok = dist_raw:send_ctrl(Raw, {21, Me, MonFrom, MonRef, killed}),
        ok = dist_raw:send_ctrl(Raw, {2, '', DsupScope}, {join, Me2, u4, P7}), % (after the DOWN)
        wait_converged(View, #{u4 => [P7]}, ?T),
        ?assertEqual(lists:sort([P2, P6, Q]), dsup_cluster:members({c, C1}, Scope, u1))
    after
        dist_raw:close(Raw)
    end,
    wait_converged(View, #{u1 => [Q], u2 => [], u3 => [], u4 => []}, ?T),
    wait_converged(Cfg, #{?PROBE => ?config(probes, Cfg), u1 => [Q]}, ?T, true),
    assert_scopes_unchanged(Cfg).

%% A BEAM scope started after the dsup-nodes connected (and joined members)
%% sees the C members within 2 s, on the CT node and on the peer.
late_beam_scope_sees_c_members(Cfg) ->
    [{beam, B1} = Nb1, {beam, B2} = Nb2, {c, C1} = Nc1, {c, C2} = Nc2] = nodes_(Cfg),
    Late = dsup_test:unique_name(pg_late),
    ok = dsup_cluster:call(C1, {pg_start_scope, Late}),
    ok = dsup_cluster:call(C2, {pg_start_scope, Late}),
    W1 = pid_on(Cfg, Nc1),
    W2 = pid_on(Cfg, Nc2),
    ok = dsup_cluster:call(C1, {pg_join, Late, l, W1}),
    ok = dsup_cluster:call(C2, {pg_join, Late, l, W2}),
    LCfg = lists:keystore(scope, 1, Cfg, {scope, Late}),
    %% the two C scopes find each other (no BEAM scope yet)
    wait_converged([{nodes, [Nc1, Nc2]} | LCfg], #{l => [W1, W2]}, ?T, true),
    try
        T0 = erlang:monotonic_time(),
        _ = dsup_cluster:start_beam_scope(B1, Late),
        wait_converged([{nodes, [Nb1]} | LCfg], #{l => [W1, W2]}, ?RECOVER_T, true),
        ct:pal("late CT-node scope saw the C members after ~b ms", [dsup_test:elapsed_ms(T0)]),
        T1 = erlang:monotonic_time(),
        _ = dsup_cluster:start_beam_scope(B2, Late),
        wait_converged([{nodes, [Nb2]} | LCfg], #{l => [W1, W2]}, ?RECOVER_T, true),
        ct:pal("late peer scope saw the C members after ~b ms", [dsup_test:elapsed_ms(T1)]),
        %% and joins flow from the late scopes to the C side
        P = dsup_cluster:nursery_spawn(proplists:get_value(B2, ?config(nurseries, Cfg))),
        ok = erpc:call(B2, pg, join, [Late, l, P]),
        wait_converged(LCfg, #{l => [W1, W2, P]}, ?T, true)
    after
        [dsup_cluster:stop_beam_scope(N, Late) || N <- [B1, B2]]
    end,
    assert_scopes_unchanged(Cfg).

%% pg:monitor_scope/1 on the CT node gets join and leave events for C
%% workers: joins (one pid, a list), leaves, a worker's death, and a
%% dsup-node's death.
monitor_scope_sees_c_worker_events(Cfg) ->
    [_, _, {c, C1} = Nc1, {c, C2} = Nc2] = nodes_(Cfg),
    S = scope(Cfg),
    {Ref, Groups0} = pg:monitor_scope(S),
    ?assertEqual(#{?PROBE => lists:sort(?config(probes, Cfg))},
                 maps:map(fun(_, L) -> lists:sort(L) end, Groups0)),
    A = pid_on(Cfg, Nc1),
    B = pid_on(Cfg, Nc1),
    W = pid_on(Cfg, Nc2),
    ok = dsup_cluster:call(C1, {pg_join, S, mon, A}),
    expect_event(Ref, join, mon, [A]),
    ok = dsup_cluster:call(C2, {pg_join, S, mon, W}),
    expect_event(Ref, join, mon, [W]),
    ok = dsup_cluster:call(C1, {pg_join, S, {mon, 2}, [A, B]}),
    expect_event(Ref, join, {mon, 2}, [A, B]),
    ok = dsup_cluster:call(C1, {pg_leave, S, mon, A}),
    expect_event(Ref, leave, mon, [A]),
    exit(W, kill),
    expect_event(Ref, leave, mon, [W]),
    %% the dsup-node dies: its members leave
    {exited, _} = dsup_cluster:kill_c(?config(c1, Cfg)),
    Evs = [expect_any(Ref) || _ <- [1, 2]],
    ?assertEqual(lists:sort([{leave, {mon, 2}, [A, B]},
                             {leave, ?PROBE, [P || P <- ?config(probes, Cfg), node(P) =:= C1]}]),
                 lists:sort(Evs)),
    pg:demonitor(S, Ref),
    assert_scopes_unchanged(Cfg).

expect_event(Ref, Kind, Group, Pids) ->
    ?assertEqual({Kind, Group, lists:sort(Pids)}, expect_any(Ref)).

expect_any(Ref) ->
    receive
        {Ref, Kind, Group, Pids} -> {Kind, Group, lists:sort(Pids)}
    after ?T -> ct:fail({no_pg_event, process_info(self(), messages)})
    end.

%% A few hundred random joins, leaves and crashes on all four nodes; every
%% node ends with the model's membership (checked at checkpoints too).
randomized_convergence(Cfg) ->
    Seed = case os:getenv("DSUP_PG_SEED") of
               false -> erlang:phash2({os:getpid(), erlang:unique_integer(), os:timestamp()});
               V -> list_to_integer(V)
           end,
    ct:pal("randomized_convergence seed ~b (replay: DSUP_PG_SEED=~b)", [Seed, Seed]),
    rand:seed(exsss, Seed),
    Nodes = nodes_(Cfg),
    Groups = [a, b, {t, 1}, <<"bin">>, "str", 42],
    Pools = maps:from_list([{Nd, [pid_on(Cfg, Nd) || _ <- lists:seq(1, 4)]} || Nd <- Nodes]),
    Model0 = #{?PROBE => ?config(probes, Cfg)},
    Stats0 = #{join => 0, join_list => 0, leave => 0, leave_list => 0, crash => 0,
               dup_join => 0},
    put(pg_ops, []),
    {Model, _, Stats} =
        lists:foldl(
          fun(I, {M, Pl, St}) ->
                  R = step(Cfg, Nodes, Groups, M, Pl, St),
                  case I rem 100 of
                      0 -> converged_or_dump(Cfg, element(1, R)),
                           ct:log("checkpoint ~b: ~p", [I, element(3, R)]);
                      _ -> ok
                  end,
                  R
          end, {Model0, Pools, Stats0}, lists:seq(1, ?STEPS)),
    converged_or_dump(Cfg, Model),
    ct:pal("~b steps: ~p; final groups ~p", [?STEPS, Stats, maps:keys(Model)]),
    assert_scopes_unchanged(Cfg),
    {comment, dsup_cluster:fmt("seed ~b, ~p", [Seed, Stats])}.

step(Cfg, Nodes, Groups, M, Pools, St) ->
    Nd = pick(Nodes),
    Pool = maps:get(Nd, Pools),
    G = pick(Groups),
    X = rand:uniform(100),
    Joined = [{Gr, P} || {Gr, Ps} <- maps:to_list(M), Gr =/= ?PROBE, P <- Ps, lists:member(P, Pool)],
    if
        X =< 40 ->
            P = pick(Pool),
            join(Cfg, Nd, G, P),
            op({join, Nd, G, P}),
            Kind = case lists:member(P, maps:get(G, M, [])) of true -> dup_join; false -> join end,
            {add(M, G, [P]), Pools, bump(Kind, St)};
        X =< 50 ->
            Ps = [pick(Pool) || _ <- [1, 2, 3]],             % duplicates allowed
            join(Cfg, Nd, G, Ps),
            op({join, Nd, G, Ps}),
            {add(M, G, Ps), Pools, bump(join_list, St)};
        X =< 60, Joined =/= [] ->
            %% two pids (when this node has two in the group) in one leave
            {Gr, P} = pick(Joined),
            %% (Q may be P again when P is in the group twice)
            case [Q || {G2, Q} <- Joined -- [{Gr, P}], G2 =:= Gr] of
                [] ->
                    ok = leave(Cfg, Nd, Gr, [P]),
                    op({leave, Nd, Gr, [P]}),
                    {del(M, Gr, P), Pools, bump(leave_list, St)};
                Qs ->
                    Q = pick(Qs),
                    ok = leave(Cfg, Nd, Gr, [P, Q]),
                    op({leave, Nd, Gr, [P, Q]}),
                    {del(del(M, Gr, P), Gr, Q), Pools, bump(leave_list, St)}
            end;
        X =< 88, Joined =/= [] ->
            {Gr, P} = pick(Joined),
            ok = leave(Cfg, Nd, Gr, P),
            op({leave, Nd, Gr, P}),
            {del(M, Gr, P), Pools, bump(leave, St)};
        X =< 88 ->
            ?assertEqual(not_joined, leave(Cfg, Nd, G, pick(Pool))),
            {M, Pools, St};
        true ->
            P = pick(Pool),
            Ref = erlang:monitor(process, P),
            exit(P, kill),
            receive {'DOWN', Ref, _, _, _} -> ok after ?T -> ct:fail({not_dead, P}) end,
            op({crash, Nd, P, [Gr || {Gr, Ps} <- maps:to_list(M), Q <- Ps, Q =:= P]}),
            New = pid_on(Cfg, Nd),
            M1 = maps:map(fun(_, Ps) -> [Q || Q <- Ps, Q =/= P] end, M),
            {M1, Pools#{Nd := [New | Pool -- [P]]}, bump(crash, St)}
    end.

%% On failure, the operations so far (replayable with the printed seed).
converged_or_dump(Cfg, Model) ->
    try wait_converged(Cfg, Model, ?T, true)
    catch C:R:St ->
            ct:log("operations (oldest first):~n~p", [lists:reverse(get(pg_ops))]),
            erlang:raise(C, R, St)
    end.

op(Op) -> put(pg_ops, [Op | get(pg_ops)]).

pick(L) -> lists:nth(rand:uniform(length(L)), L).
bump(K, St) -> maps:update_with(K, fun(V) -> V + 1 end, 1, St).
add(M, G, Ps) -> maps:update_with(G, fun(L) -> Ps ++ L end, Ps, M).
del(M, G, P) -> M#{G := maps:get(G, M) -- [P]}.

%% A scope that sent the node its sync but has not had the node's sync yet
%% (its discover is still on the way) hears no join or leave before that
%% sync: a BEAM scope crashes on a leave naming a group it never heard of
%% (seen when a BEAM node joined a busy scope).
no_updates_to_a_scope_before_our_sync(Cfg) ->
    C1 = c_node(Cfg, c1),
    Scope = scope(Cfg),
    {ok, Raw} = dist_raw:connect(C1, erlang:get_cookie()),
    try
        Me = dist_raw:self_pid(Raw),
        %% the node discovers the new connection's scope...
        {DsupScope, _} = raw_until(Raw, fun({{6, _From, _, S}, {discover, P}}) when S =:= Scope -> {true, P};
                                           (_) -> false end),
        %% ...we answer with our (empty) sync but hold our discover back
        ok = dist_raw:send_ctrl(Raw, {2, '', DsupScope}, {'$gen_cast', {sync, Me, []}}),
        W = pid_on(Cfg, {c, C1}),
        G = {untold, erlang:unique_integer([positive])},
        ok = dsup_cluster:call(C1, {pg_join, Scope, G, W}),
        ok = dsup_cluster:call(C1, {pg_leave, Scope, G, W}),
        ok = dist_raw:send_ctrl(Raw, {2, '', DsupScope}, {discover, Me}),
        %% nothing about G (or any group) comes before the node's sync
        {_, Before} = raw_until(Raw, fun({{2, _, To}, {'$gen_cast', {sync, P, _}}}) when To =:= Me,
                                                                                        P =:= DsupScope -> {true, P};
                                        (_) -> false end),
        Updates = [M || {{2, _, _}, M} <- Before, is_tuple(M),
                        element(1, M) =:= join orelse element(1, M) =:= leave],
        ?assertEqual([], Updates)
    after
        dist_raw:close(Raw)
    end.

%% Frames from the raw connection until Pred({Ctrl, Msg} | {Ctrl}) gives
%% {true, V}: {V, [{Ctrl, Msg} | {Ctrl} seen before]}.
raw_until(Raw, Pred) ->
    raw_until(Raw, Pred, erlang:monotonic_time(millisecond) + ?T, []).
raw_until(Raw, Pred, Deadline, Seen) ->
    Left = Deadline - erlang:monotonic_time(millisecond),
    Left > 0 orelse ct:fail({raw_until_timeout, lists:reverse(Seen)}),
    case dist_raw:recv(Raw, Left) of
        {ok, {Ctrl, Msg}} ->
            case Pred({Ctrl, Msg}) of
                {true, V} -> {V, lists:reverse(Seen)};
                false -> raw_until(Raw, Pred, Deadline, [{Ctrl, Msg} | Seen])
            end;
        {ok, {Ctrl}} ->                         % a signal without a message
            case Pred({Ctrl}) of
                {true, V} -> {V, lists:reverse(Seen)};
                false -> raw_until(Raw, Pred, Deadline, [{Ctrl} | Seen])
            end;
        {ok, _} -> raw_until(Raw, Pred, Deadline, Seen);
        {error, E} -> ct:fail({raw_recv, E, lists:reverse(Seen)})
    end.
