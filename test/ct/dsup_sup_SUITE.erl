%%% The distributed supervisor in C, driven over its wire API (README "Wire
%%% API" and "How instances cooperate") from the CT node against 2-3 real
%%% dsup-nodes.
%%%
%%% Each case gets fresh dsup-nodes (hidden, connected to the CT node) and a
%%% supervisor name unique to the run, started on every node with
%%% {start_supervisor, Name, Opts} (opts per case: sup_opts/1). The CT node
%%% also runs the pg scope Name.Scope (it joins no group) so that the test can
%%% read the registry (one pg group per child name) independently of the
%%% instances. Every wait polls with a deadline.
%%%
%%% chaos_kill9_rounds: 1,000 permanent + 100 temporary children on 3
%%% dsup-nodes, 20 rounds of kill -9 of a random node hosting children, then
%%% its restart under the same name (at once, or after the failover: random
%%% per round), with calls in flight (4 clients: whereis + call to random
%%% children; 2 churn clients: start_child + terminate_child of temporary
%%% throwaway children). After each failover and each restart: every
%%% permanent child runs exactly once (pg, whereis and children of every
%%% instance agree), no temporary orphan came back, the other temporaries
%%% were not touched; no call got a wrong reply or timed out (exits on dead
%%% nodes are counted, not failures). The full size fits: measured on 2
%%% cores, start of 1,100 children ~0.2 s, a round 1-2.5 s, the case ~35 s.
%%% The seed is $DSUP_CHAOS_SEED when set, else fresh; it is printed.
%%% $DSUP_CHAOS_ROUNDS overrides the number of rounds.
-module(dsup_sup_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 10000).           % ordinary convergence deadline, ms
-define(FAILOVER_T, 30000).  % failover of hundreds of children
-define(CHAOS_ROUNDS, 20).
-define(N_PERM, 1000).
-define(N_TEMP, 100).

suite() ->
    [{timetrap, {seconds, 120}}].

all() ->
    [{group, api}, {group, restarts}, {group, options}, {group, listeners},
     {group, failover}, {group, arbitration}].

groups() ->
    [{api, [], [start_child_atom_spec_gets_ref_name,
                start_child_keyword_spec,
                start_child_non_keyword_arg_spec,
                start_child_map_spec,
                start_child_placed_on_ring_owner,
                start_child_explicit_node_from_every_instance,
                start_child_here_starts_on_called_node,
                start_child_unknown_node_nodedown,
                start_child_unknown_worker,
                start_child_incorrect_spec,
                start_child_duplicate_name_already_started,
                start_child_reserved_and_bad_names,
                duplicate_copy_stopped_and_logged_once,
                record_without_member_is_no_pg_group,
                instance_on_a_scope_with_groups,
                terminate_child_local_remote_unknown,
                queries_agree_across_instances]},
     {restarts, [], [permanent_restarted_after_crash,
                     transient_restarted_only_on_abnormal_exit,
                     temporary_never_restarted,
                     children_sharing_a_spec_keep_their_own,
                     restart_intensity_exceeded_stops_instance]},
     {options, [], [bad_options_rejected_nothing_started,
                    start_supervisor_twice_already_started,
                    start_supervisor_reserved_names,
                    cli_supervisor_elixir_alias_and_options,
                    cli_supervisor_several_options,
                    cli_supervisor_bad_option_exits_nonzero]},
     {listeners, [], [pid_listener_gets_each_event_once,
                      named_listener_gets_events,
                      monitor_nodes_listener_gets_node_up_down]},
     {failover, [], [graceful_stop_hands_over_children,
                     target_host_leaves_while_a_stop_waits_for_it,
                     kill9_orphans_restarted_once,
                     chaos_kill9_rounds]},
     {arbitration, [], [explicit_node_race_one_winner,
                        arbiter_answers_lost_and_expired]}].

%% ------------------------------------------------------------------ setup

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_Config) -> ok.

init_per_group(_, Config) -> Config.
end_per_group(_, _Config) -> ok.

%% How many dsup-nodes a case gets (0: it starts its own).
n_nodes(cli_supervisor_elixir_alias_and_options) -> 0;
n_nodes(cli_supervisor_several_options) -> 0;
n_nodes(cli_supervisor_bad_option_exits_nonzero) -> 0;
n_nodes(bad_options_rejected_nothing_started) -> 1;
n_nodes(start_supervisor_twice_already_started) -> 1;
n_nodes(start_supervisor_reserved_names) -> 1;
n_nodes(duplicate_copy_stopped_and_logged_once) -> 1;
n_nodes(record_without_member_is_no_pg_group) -> 1;
n_nodes(instance_on_a_scope_with_groups) -> 1;
n_nodes(pid_listener_gets_each_event_once) -> 2;
n_nodes(named_listener_gets_events) -> 2;
n_nodes(monitor_nodes_listener_gets_node_up_down) -> 2;
n_nodes(restart_intensity_exceeded_stops_instance) -> 2;
n_nodes(explicit_node_race_one_winner) -> 2;
n_nodes(arbiter_answers_lost_and_expired) -> 2;
n_nodes(target_host_leaves_while_a_stop_waits_for_it) -> 2;
n_nodes(_) -> 3.

%% Options of {start_supervisor, Name, Opts} per case (none: not started
%% by init_per_testcase).
sup_opts(bad_options_rejected_nothing_started) -> none;
sup_opts(start_supervisor_twice_already_started) -> none;
sup_opts(start_supervisor_reserved_names) -> none;
sup_opts(instance_on_a_scope_with_groups) -> none;
sup_opts(pid_listener_gets_each_event_once) -> none;
sup_opts(named_listener_gets_events) -> none;
sup_opts(monitor_nodes_listener_gets_node_up_down) -> none;
sup_opts(graceful_stop_hands_over_children) -> none;
sup_opts(restart_intensity_exceeded_stops_instance) -> [{max_restarts, 2}, {max_seconds, 5}];
sup_opts(children_sharing_a_spec_keep_their_own) -> [{max_restarts, 20}, {max_seconds, 5}]; % 5 crashes
sup_opts(_) -> [].

init_per_testcase(chaos_kill9_rounds = TC, Config) ->
    ct:timetrap({seconds, 290}),
    setup(TC, Config);
init_per_testcase(explicit_node_race_one_winner = TC, Config) ->
    ct:timetrap({seconds, 180}),
    setup(TC, Config);
init_per_testcase(TC, Config) ->
    setup(TC, Config).

setup(TC, Config) ->
    Name = dsup_test:unique_name(dsup_sup),
    Scope = dsup_cluster:scope_of(Name),
    _ = dsup_cluster:start_beam_scope(node(), Scope),
    Hs = start_nodes(n_nodes(TC), [], []),
    Nodes = [maps:get(node, H) || H <- Hs],
    Cfg = [{name, Name}, {scope, Scope}, {handles, Hs}, {nodes, Nodes} | Config],
    try
        case sup_opts(TC) of
            none -> ok;
            Opts -> start_sup_everywhere(Cfg, Opts)
        end,
        ct:log("~p: supervisor ~p on ~p", [TC, Name, Nodes]),
        Cfg
    catch C:R:St ->
            end_per_testcase(TC, Cfg),           % not called when init fails
            erlang:raise(C, R, St)
    end.

start_nodes(0, _, Acc) -> lists:reverse(Acc);
start_nodes(N, Connect, Acc) ->
    H = dsup_cluster:start_c(#{name => sup, connect => Connect}),
    start_nodes(N - 1, [maps:get(node, H) | Connect], [H | Acc]).

end_per_testcase(_TC, Config) ->
    dsup_cluster:stop_all_c(handles(Config)),
    forget_handles(Config),
    dsup_cluster:stop_beam_scope(node(), ?config(scope, Config)),
    ok.

%% The handles of the case, with those of nodes the case started itself
%% (kept in a persistent_term: the case process is gone by
%% end_per_testcase).
handles(Config) ->
    ?config(handles, Config) ++ persistent_term:get({?MODULE, ?config(name, Config)}, []).

remember_handle(Cfg, H) ->
    K = {?MODULE, name(Cfg)},
    persistent_term:put(K, persistent_term:get(K, []) ++ [H]).

forget_handles(Config) ->
    _ = persistent_term:erase({?MODULE, ?config(name, Config)}),
    ok.

%% ------------------------------------------------------------------ helpers

name(Cfg) -> ?config(name, Cfg).
nodes_(Cfg) -> ?config(nodes, Cfg).
node_n(Cfg, I) -> lists:nth(I, nodes_(Cfg)).

sup(Cfg, Node, Msg) -> dsup_cluster:sup(name(Cfg), Node, Msg).

start_sup(Cfg, Node, Opts) ->
    dsup_cluster:call(Node, {start_supervisor, name(Cfg), Opts}).

%% Start the instance on every node and wait until all agree on the ring.
start_sup_everywhere(Cfg, Opts) ->
    [{ok, _} = start_sup(Cfg, N, Opts) || N <- nodes_(Cfg)],
    wait_ring(Cfg, nodes_(Cfg), nodes_(Cfg)).

%% Every instance on `On' reports the ring `Ring' (as a set).
wait_ring(Cfg, On, Ring) ->
    Want = lists:sort(Ring),
    wait(fun() ->
                 Got = [{N, lists:sort(sup(Cfg, N, nodes))} || N <- On],
                 lists:all(fun({_, G}) -> G =:= Want end, Got) orelse {rings, Got}
         end, ?T).

wait(Fun, T) ->
    try dsup_test:wait_until(Fun, T, 20)
    catch error:{wait_until_timeout, _, Last} -> ct:fail({timeout_ms, T, Last})
    end.

%% Poll until every instance (on Nodes) answers Msg the same (after Norm).
agree(Cfg, Msg) -> agree(Cfg, nodes_(Cfg), Msg, fun(X) -> X end).
agree(Cfg, Nodes, Msg, Norm) ->
    {ok, V} = wait(fun() ->
                           Rs = [Norm(sup(Cfg, N, Msg)) || N <- Nodes],
                           case lists:usort(Rs) of
                               [V] -> {true, V};
                               _ -> {disagree, Msg, lists:zip(Nodes, Rs)}
                           end
                   end, ?T),
    V.

%% whereis on every instance gives Pid (a pid, or undefined).
wait_whereis(Cfg, ChildName, Pid) -> wait_whereis(Cfg, nodes_(Cfg), ChildName, Pid).
wait_whereis(Cfg, Nodes, ChildName, Pid) ->
    ?assertEqual(Pid, agree(Cfg, Nodes, {whereis, ChildName}, fun(X) -> X end)).

%% The pid of ChildName once every instance agrees it is a new live one
%% (not Old).
wait_new_pid(Cfg, ChildName, Old) ->
    {ok, P} = wait(fun() ->
                           Rs = lists:usort([sup(Cfg, N, {whereis, ChildName}) || N <- nodes_(Cfg)]),
                           case Rs of
                               [P] when is_pid(P), P =/= Old -> {true, P};
                               _ -> {whereis, Rs}
                           end
                   end, ?T),
    P.

pg_members(Cfg, ChildName) -> pg:get_members(?config(scope, Cfg), ChildName).

%% gen_server:call to a counter with {crash, R}: it stops with R, no reply.
crash(Pid, R) ->
    Ref = erlang:monitor(process, Pid),
    ?assertMatch({'EXIT', {R, _}}, catch gen_server:call(Pid, {crash, R}, 5000)),
    receive {'DOWN', Ref, _, _, Why} -> ?assertEqual(R, Why)
    after ?T -> ct:fail({not_down, Pid})
    end.

is_down(Pid) ->
    Ref = erlang:monitor(process, Pid),
    receive {'DOWN', Ref, _, _, _} -> true after ?T -> false end.

start_ok(Cfg, Via, Spec, Where) ->
    case sup(Cfg, Via, {start_child, Spec, Where}) of
        {ok, Pid, CName} when is_pid(Pid) -> {Pid, CName};
        Other -> ct:fail({start_child, Spec, Where, Other})
    end.

spec_map(Name, Type, Arg, Restart, Shutdown) ->
    #{id => Name, start => {Type, start_link, [Arg]}, restart => Restart,
      shutdown => Shutdown, type => worker, modules => [Type]}.

%% ------------------------------------------------------------------ api

%% A bare worker type: permanent, [] as init args, a fresh ref as name,
%% placed on the name's ring owner.
start_child_atom_spec_gets_ref_name(Cfg) ->
    [A | _] = nodes_(Cfg),
    {Pid, CName} = start_ok(Cfg, A, counter, undefined),
    ?assert(is_reference(CName)),
    ?assertEqual(0, gen_server:call(Pid, get)),
    Ring = dsup_cluster:ring(nodes_(Cfg)),
    ?assertEqual(dsup_cluster:ring_owner(Ring, CName), node(Pid)),
    ?assertEqual(node(Pid), sup(Cfg, A, {node_for, CName})),
    Children = agree(Cfg, children),
    ?assertEqual(#{CName => {Pid, spec_map(CName, counter, [], permanent, 5000)}}, Children),
    %% `nil' is accepted for "no node" too (the Elixir shim sends nil)
    {P2, N2} = start_ok(Cfg, A, echo, nil),
    ?assert(is_reference(N2)),
    ?assertEqual(dsup_cluster:ring_owner(Ring, N2), node(P2)),
    ?assertEqual(node(P2), sup(Cfg, A, {node_for, N2})).

%% An instance started on a scope that already has groups (pg_start_scope,
%% then joins) makes room for its records in them: the groups and their
%% memberships, local and remote, carry on (a local member leaves, another
%% ends: each takes its group's membership along).
instance_on_a_scope_with_groups(Cfg) ->
    [A] = nodes_(Cfg),
    Scope = ?config(scope, Cfg),
    ?assertEqual(ok, dsup_cluster:call(A, {pg_start_scope, Scope})),
    {ok, W1} = dsup_cluster:call(A, {spawn, echo, []}),
    {ok, W2} = dsup_cluster:call(A, {spawn, echo, []}),
    ?assertEqual(ok, dsup_cluster:call(A, {pg_join, Scope, g1, W1})),
    ?assertEqual(ok, dsup_cluster:call(A, {pg_join, Scope, g2, [W2, W1]})),
    Remote = spawn(timer, sleep, [infinity]),
    ok = pg:join(Scope, g3, Remote),
    wait(fun() -> dsup_cluster:call(A, {pg_members, Scope, g3}) =:= [Remote] end, ?T),
    {ok, _} = start_sup(Cfg, A, []),
    {P, c1} = start_ok(Cfg, A, {counter, [{name, c1}]}, A),
    wait_whereis(Cfg, c1, P),
    ?assertEqual([W1], dsup_cluster:call(A, {pg_members, Scope, g1})),
    ?assertEqual(lists:sort([W2, W1]), lists:sort(dsup_cluster:call(A, {pg_members, Scope, g2}))),
    ?assertEqual([Remote], dsup_cluster:call(A, {pg_members, Scope, g3})),
    ?assertEqual(ok, dsup_cluster:call(A, {pg_leave, Scope, g1, W1})),
    ?assertEqual([], dsup_cluster:call(A, {pg_members, Scope, g1})),
    exit(W2, kill),
    wait(fun() -> dsup_cluster:call(A, {pg_members, Scope, g2}) =:= [W1] end, ?T),
    wait(fun() -> lists:sort(pg:which_groups(Scope)) =:= lists:sort(dsup_cluster:call(A, {pg_which_groups, Scope})) end, ?T),
    ?assert(lists:member(c1, pg:which_groups(Scope))),
    ?assertNot(lists:member(g1, pg:which_groups(Scope))),
    ok = pg:leave(Scope, g3, Remote),
    exit(Remote, kill),
    wait(fun() -> not lists:member(g3, dsup_cluster:call(A, {pg_which_groups, Scope})) end, ?T),
    ?assertEqual(P, sup(Cfg, A, {whereis, c1})).


%% A child's record lives in the pg group of its name (README, Memory per
%% child). A record kept while that group has no member (here: another
%% instance's child_up for a pid that is not, or no longer, in pg, as while a
%% child of a lost host waits for its failover) is no pg group: neither the
%% dsup-node's which_groups nor the BEAM scope lists it, nor does the scope's
%% group count. A member joining makes it a group like any other; the group
%% is freed once both the member and the record are gone, in either order.
record_without_member_is_no_pg_group(Cfg) ->
    [A] = nodes_(Cfg),
    Scope = ?config(scope, Cfg),
    Inst = {name(Cfg), A},
    Child = {rec_only, 1},
    Info = fun() -> dsup_cluster:call(A, {pg_info, Scope}) end,
    Groups = fun() -> dsup_cluster:call(A, {pg_which_groups, Scope}) end,
    Children = fun() -> sup(Cfg, A, children) end,
    Recorded = fun() -> case maps:get(Child, Children(), none) of {P, _} -> P; none -> none end end,
    #{groups := G0, entries := E0, held := 0} = Base = Info(),
    ?assertEqual(G0, length(Groups())),
    Pid = spawn(timer, sleep, [infinity]),
    %% the record alone
    Inst ! {'$dsup', {child_up, Child, Pid, undefined}},
    wait(fun() -> Recorded() =:= Pid end, ?T),
    ?assertEqual(#{groups => G0, entries => E0 + 1, held => 1}, Info()),
    ?assertNot(lists:member(Child, Groups())),
    ?assertEqual([], dsup_cluster:call(A, {pg_members, Scope, Child})),
    ?assertNot(lists:member(Child, pg:which_groups(Scope))),
    %% a member joins (the CT node's scope): a group everywhere, one entry
    ok = pg:join(Scope, Child, Pid),
    wait(fun() -> dsup_cluster:call(A, {pg_members, Scope, Child}) =:= [Pid] end, ?T),
    ?assert(lists:member(Child, Groups())),
    ?assertEqual(#{groups => G0 + 1, entries => E0 + 1, held => 1}, Info()),
    %% it leaves: the record stays (its pid's node is no host), unlisted again
    ok = pg:leave(Scope, Child, Pid),
    wait(fun() -> dsup_cluster:call(A, {pg_members, Scope, Child}) =:= [] end, ?T),
    ?assertEqual(Pid, Recorded()),
    ?assertNot(lists:member(Child, Groups())),
    ?assertEqual(#{groups => G0, entries => E0 + 1, held => 1}, Info()),
    %% the record goes: so does the group
    Inst ! {'$dsup', {child_down, Child, Pid, normal}},
    wait(fun() -> Info() =:= Base end, ?T),
    ?assertNot(maps:is_key(Child, Children())),
    %% the other order: member and record, the record goes (the group stays
    %% for its member), then the member leaves
    Inst ! {'$dsup', {child_up, Child, Pid, undefined}},
    ok = pg:join(Scope, Child, Pid),
    wait(fun() -> Info() =:= #{groups => G0 + 1, entries => E0 + 1, held => 1} end, ?T),
    Inst ! {'$dsup', {child_down, Child, Pid, normal}},
    wait(fun() -> Info() =:= #{groups => G0 + 1, entries => E0 + 1, held => 0} end, ?T),
    ?assertNot(maps:is_key(Child, Children())),
    ?assertEqual([Pid], dsup_cluster:call(A, {pg_members, Scope, Child})),
    ?assert(lists:member(Child, Groups())),
    ok = pg:leave(Scope, Child, Pid),
    wait(fun() -> Info() =:= Base end, ?T),
    ?assertNot(lists:member(Child, Groups())),
    exit(Pid, kill).


%% Two more copies of a child name appear in pg on a node that the holders'
%% ring (libring over the holding nodes, computed here) makes the keeper,
%% in two separate joins: the C instance stops its own copy, and says so in
%% one log line (not one per pg event about the name).
duplicate_copy_stopped_and_logged_once(Cfg) ->
    [D] = nodes_(Cfg),
    [H] = ?config(handles, Cfg),
    Ring = dsup_cluster:ring(lists:sort([D, node()])),
    CN = hd([N || I <- lists:seq(1, 1000), N <- [{dup, I}], dsup_cluster:ring_owner(Ring, N) =:= node()]),
    {Pid, CN} = start_ok(Cfg, D, {counter, [{name, CN}]}, D),
    Fakes = [spawn(fun() -> receive stop -> ok end end) || _ <- [1, 2]],
    [ok = pg:join(?config(scope, Cfg), CN, F) || F <- Fakes],
    ?assert(is_down(Pid)),
    wait(fun() -> lists:sort(pg_members(Cfg, CN)) =:= lists:sort(Fakes) end, ?T),
    Dup = <<"duplicate child, stopping the local copy">>,
    Lines = fun() -> [L || L <- dsup_test:log_tail(H, 2000), binary:match(L, Dup) =/= nomatch] end,
    wait(fun() -> Lines() =/= [] end, ?T),
    _ = sup(Cfg, D, nodes),            % a round trip: the instance is past the stop
    ?assertMatch([_], Lines()),
    [F ! stop || F <- Fakes].

%% {Type, Keyword}: name/restart/shutdown taken out, the rest is the init arg.
start_child_keyword_spec(Cfg) ->
    [A, B | _] = nodes_(Cfg),
    Spec = {counter, [{name, kw1}, {value, 5}, {restart, transient}, {shutdown, brutal_kill}]},
    {Pid, kw1} = start_ok(Cfg, A, Spec, undefined),
    ?assertEqual(5, gen_server:call(Pid, get)),
    ?assertEqual(#{kw1 => {Pid, spec_map(kw1, counter, [{value, 5}], transient, brutal_kill)}},
                 agree(Cfg, children)),
    %% shutdown as ms and infinity, a tuple name, through the other instance
    {P2, {kw, 2}} = start_ok(Cfg, B, {counter, [{name, {kw, 2}}, {shutdown, 100}]}, undefined),
    {P3, <<"kw3">>} = start_ok(Cfg, B, {echo, [{name, <<"kw3">>}, {shutdown, infinity},
                                               {restart, temporary}]}, undefined),
    C = agree(Cfg, children),
    ?assertEqual({P2, spec_map({kw, 2}, counter, [], permanent, 100)}, maps:get({kw, 2}, C)),
    ?assertEqual({P3, spec_map(<<"kw3">>, echo, [], temporary, infinity)}, maps:get(<<"kw3">>, C)).

%% {Type, Term} with a non-keyword term: the term is the init arg as is (no
%% name: a ref).
start_child_non_keyword_arg_spec(Cfg) ->
    [A | _] = nodes_(Cfg),
    {Pid, CName} = start_ok(Cfg, A, {echo, {some, "arg", 1}}, undefined),
    ?assert(is_reference(CName)),
    ?assertEqual(hello, gen_server:call(Pid, hello)),
    ?assertEqual(#{CName => {Pid, spec_map(CName, echo, {some, "arg", 1}, permanent, 5000)}},
                 agree(Cfg, children)).

%% A child-spec map: as upstream, the child's name is the `name' option in
%% the start args (the map's id is not the name: without `name' the child
%% gets a ref); start args [KW] are the init args.
start_child_map_spec(Cfg) ->
    [A, _, C] = nodes_(Cfg),
    Spec = #{id => ignored_id, start => {counter, start_link, [[{name, m1}, {value, 3}]]},
             restart => transient, shutdown => brutal_kill},
    {Pid, m1} = start_ok(Cfg, A, Spec, undefined),
    ?assertEqual(3, gen_server:call(Pid, get)),
    ?assertEqual({Pid, spec_map(m1, counter, [{value, 3}], transient, brutal_kill)},
                 maps:get(m1, agree(Cfg, children))),
    %% defaults: permanent, 5000; no name: a ref
    {P2, R2} = start_ok(Cfg, C, #{id => m2, start => {counter, start_link, [[]]}}, undefined),
    ?assert(is_reference(R2)),
    ?assertEqual({P2, spec_map(R2, counter, [], permanent, 5000)},
                 maps:get(R2, agree(Cfg, children))),
    %% a non-keyword single start arg is the init arg as is
    {P3, R3} = start_ok(Cfg, C, #{id => m3, start => {echo, start_link, [{1, 2}]}}, A),
    ?assertEqual(A, node(P3)),
    ?assertEqual({P3, spec_map(R3, echo, {1, 2}, permanent, 5000)},
                 maps:get(R3, agree(Cfg, children))).

%% Without a node, a named child goes to its name's ring owner: the node
%% node_for answers, the libring ring computed here, wherever asked.
start_child_placed_on_ring_owner(Cfg) ->
    Nodes = nodes_(Cfg),
    Ring = dsup_cluster:ring(Nodes),
    Names = [{r, I} || I <- lists:seq(1, 30)] ++ [list_to_atom("ra" ++ integer_to_list(I))
                                                 || I <- lists:seq(1, 15)]
        ++ [integer_to_binary(I) || I <- lists:seq(1, 15)],
    Placed = [begin
                  Via = lists:nth(1 + erlang:phash2(CName, 3), Nodes),
                  {Pid, CName} = start_ok(Cfg, Via, {counter, [{name, CName}]}, undefined),
                  Owner = dsup_cluster:ring_owner(Ring, CName),
                  ?assertEqual({CName, Owner}, {CName, node(Pid)}),
                  [?assertEqual({CName, Owner}, {CName, sup(Cfg, N, {node_for, CName})})
                   || N <- Nodes],
                  node(Pid)
              end || CName <- Names],
    Spread = [{N, length([x || P <- Placed, P =:= N])} || N <- Nodes],
    ct:log("placement of ~b names: ~p", [length(Names), Spread]),
    %% 60 names over 3 nodes: each node gets some
    [?assert(Cnt > 0) || {_, Cnt} <- Spread].

%% start_child with an explicit node, asked of every instance: the child is
%% on that node (forwarded when not the called one).
start_child_explicit_node_from_every_instance(Cfg) ->
    Nodes = nodes_(Cfg),
    Started = [begin
                   CName = {x, Via, On},
                   {Pid, CName} = start_ok(Cfg, Via, {counter, [{name, CName}]}, On),
                   ?assertEqual(On, node(Pid)),
                   {CName, Pid}
               end || Via <- Nodes, On <- Nodes],
    [wait_whereis(Cfg, CName, Pid) || {CName, Pid} <- Started],
    ok.

%% {start_child_here, Name, SpecMap}: started on the called node whatever
%% the ring says.
start_child_here_starts_on_called_node(Cfg) ->
    Nodes = nodes_(Cfg),
    [begin
         CName = {here, N},
         Map = spec_map(CName, counter, [{value, 9}], permanent, 5000),
         {ok, Pid, CName} = sup(Cfg, N, {start_child_here, CName, Map}),
         ?assertEqual(N, node(Pid)),
         ?assertEqual(9, gen_server:call(Pid, get)),
         wait_whereis(Cfg, CName, Pid)
     end || N <- Nodes],
    ok.

start_child_unknown_node_nodedown(Cfg) ->
    [A | _] = nodes_(Cfg),
    Nope = dsup_test:unique_node(nope),
    ?assertEqual({error, {nodedown, Nope}},
                 sup(Cfg, A, {start_child, {counter, [{name, nd}]}, Nope})),
    %% a node that is up but runs no instance (the CT node) is no host either
    ?assertEqual({error, {nodedown, node()}},
                 sup(Cfg, A, {start_child, {counter, [{name, nd}]}, node()})),
    ?assertEqual(undefined, sup(Cfg, A, {whereis, nd})),
    ?assertEqual(#{}, agree(Cfg, children)).

%% Unknown worker type: placed locally, remotely (forwarded), by ring.
start_child_unknown_worker(Cfg) ->
    [A, B | _] = nodes_(Cfg),
    ?assertEqual({error, {unknown_worker, no_such_worker}},
                 sup(Cfg, A, {start_child, no_such_worker, A})),
    ?assertEqual({error, {unknown_worker, no_such_worker}},
                 sup(Cfg, A, {start_child, {no_such_worker, [{name, u1}]}, B})),
    ?assertEqual({error, {unknown_worker, no_such_worker}},
                 sup(Cfg, B, {start_child, #{id => u2, start => {no_such_worker, start_link, [[]]}},
                              undefined})),
    ?assertEqual(#{}, agree(Cfg, children)),
    ?assertEqual(undefined, sup(Cfg, A, {whereis, u1})).

start_child_incorrect_spec(Cfg) ->
    [A, B | _] = nodes_(Cfg),
    Bad = [42, "counter", {counter}, {counter, [], extra}, {"counter", []},
           {counter, [{restart, sometimes}]}, {counter, [{shutdown, -1}]},
           {counter, [{shutdown, soon}]},
           #{id => b1}, #{id => b2, start => counter},
           #{id => b3, start => {counter, start_link, [[]]}, restart => never},
           #{id => b4, start => {counter, "start_link", [[]]}}],
    [?assertEqual({Spec, {error, {incorrect_spec, Spec}}},
                  {Spec, sup(Cfg, Via, {start_child, Spec, Where})})
     || Spec <- Bad, {Via, Where} <- [{A, undefined}, {A, B}]],
    ?assertEqual(#{}, agree(Cfg, children)).

%% A second start of a name, from any instance, with or without a node:
%% {error, {already_started, Pid}}.
start_child_duplicate_name_already_started(Cfg) ->
    Nodes = [A, B, C] = nodes_(Cfg),
    {Pid, dup} = start_ok(Cfg, A, {counter, [{name, dup}]}, undefined),
    wait_whereis(Cfg, dup, Pid),
    [?assertEqual({Via, Where, {error, {already_started, Pid}}},
                  {Via, Where, sup(Cfg, Via, {start_child, {echo, [{name, dup}]}, Where})})
     || Via <- Nodes, Where <- [undefined, A, B, C]],
    Map = spec_map(dup, counter, [], permanent, 5000),
    [?assertEqual({error, {already_started, Pid}}, sup(Cfg, N, {start_child_here, dup, Map}))
     || N <- Nodes],
    ?assertEqual([Pid], pg_members(Cfg, dup)),
    ?assertEqual(1, maps:size(agree(Cfg, children))).

%% Names no child may have, whatever the path (placed by the ring, an
%% explicit node, start_child_here): the scope's own groups are
%% {reserved_name, Name} (even '$dsup_hosts', which has live members); a fun
%% cannot be placed on the ring: {bad_child_name, Fun}. Nothing starts.
start_child_reserved_and_bad_names(Cfg) ->
    [A, B | _] = nodes_(Cfg),
    Fun = fun() -> ok end,
    Cases = [{'$dsup_hosts', reserved_name}, {'$dsup_observers', reserved_name},
             {Fun, bad_child_name}, {{wrapped, [Fun]}, bad_child_name}],
    [begin
         Want = {error, {Why, CName}},
         [?assertEqual({CName, Via, Where, Want},
                       {CName, Via, Where, sup(Cfg, Via, {start_child, {counter, [{name, CName}]}, Where})})
          || {Via, Where} <- [{A, undefined}, {A, A}, {A, B}]],
         ?assertEqual(Want, sup(Cfg, B, {start_child_here, CName, spec_map(CName, counter, [], permanent, 5000)}))
     end || {CName, Why} <- Cases],
    ?assertEqual(#{}, agree(Cfg, children)),
    ?assertEqual([], [N || N <- nodes_(Cfg), sup(Cfg, N, local_children) =/= []]).

%% terminate_child on the child's own instance and on another one: ok, the
%% child is gone everywhere and not restarted (even permanent); an unknown
%% or already terminated pid: {error, not_found}.
terminate_child_local_remote_unknown(Cfg) ->
    [A, B, C] = nodes_(Cfg),
    {P1, t1} = start_ok(Cfg, A, {counter, [{name, t1}]}, A),
    {P2, t2} = start_ok(Cfg, A, {counter, [{name, t2}]}, B),
    {P3, t3} = start_ok(Cfg, A, {counter, [{name, t3}, {shutdown, brutal_kill}]}, C),
    [wait_whereis(Cfg, N, P) || {N, P} <- [{t1, P1}, {t2, P2}, {t3, P3}]],
    ?assertEqual(ok, sup(Cfg, A, {terminate_child, P1})),       % local
    ?assertEqual(ok, sup(Cfg, A, {terminate_child, P2})),       % remote (forwarded)
    ?assertEqual(ok, sup(Cfg, B, {terminate_child, P3})),       % remote, brutal_kill
    [?assert(is_down(P)) || P <- [P1, P2, P3]],
    [wait_whereis(Cfg, N, undefined) || N <- [t1, t2, t3]],
    ?assertEqual(#{}, agree(Cfg, children)),
    [?assertEqual([], pg_members(Cfg, N)) || N <- [t1, t2, t3]],
    %% again, and unknown pids: not_found
    [?assertEqual({error, not_found}, sup(Cfg, Via, {terminate_child, P}))
     || Via <- [A, B, C], P <- [P1, P2, P3, self()]],
    {ok, Stray} = dsup_cluster:call(B, {spawn, echo, []}),       % a worker, not a child
    [?assertEqual({error, not_found}, sup(Cfg, Via, {terminate_child, Stray})) || Via <- [A, B, C]],
    ?assertEqual({error, not_found}, sup(Cfg, A, {terminate_child, not_a_pid})),
    ?assertEqual(still_here, gen_server:call(Stray, still_here)).     % echo: untouched

%% children / local_children / whereis / whois / count_children /
%% which_children / nodes / node_for agree across instances.
queries_agree_across_instances(Cfg) ->
    Nodes = nodes_(Cfg),
    Specs = [{counter, [{name, {q, I}}, {value, I}]} || I <- lists:seq(1, 12)]
        ++ [{echo, [{name, {qe, I}}, {restart, transient}]} || I <- lists:seq(1, 6)]
        ++ [counter, counter, echo],                              % ref names
    Started = [start_ok(Cfg, lists:nth(1 + (I rem 3), Nodes), S, undefined)
               || {I, S} <- lists:zip(lists:seq(1, length(Specs)), Specs)],
    N = length(Started),
    Children = agree(Cfg, children),
    ?assertEqual(lists:sort([{CN, P} || {P, CN} <- Started]),
                 lists:sort([{CN, P} || {CN, {P, _}} <- maps:to_list(Children)])),
    %% local_children: each instance its own, together all of them
    Locals = [{Nd, lists:sort(sup(Cfg, Nd, local_children))} || Nd <- Nodes],
    [?assertEqual(lists:sort([P || {P, _} <- Started, node(P) =:= Nd]), L) || {Nd, L} <- Locals],
    ?assertEqual(lists:sort([P || {P, _} <- Started]), lists:sort(lists:append([L || {_, L} <- Locals]))),
    %% whereis / whois on every instance
    [begin
         ?assertEqual(P, sup(Cfg, Nd, {whereis, CN})),
         ?assertEqual(CN, sup(Cfg, Nd, {whois, P}))
     end || {P, CN} <- Started, Nd <- Nodes],
    [?assertEqual(undefined, sup(Cfg, Nd, {whereis, no_such_child})) || Nd <- Nodes],
    [?assertEqual(nil, sup(Cfg, Nd, {whois, self()})) || Nd <- Nodes],
    %% count_children
    ?assertEqual([{specs, N}, {active, N}, {supervisors, 0}, {workers, N}],
                 agree(Cfg, count_children)),
    %% which_children
    Which = agree(Cfg, Nodes, which_children, fun lists:sort/1),
    Types = maps:from_list([{P, T} || {_, {P, #{modules := [T]}}} <- maps:to_list(Children)]),
    ?assertEqual(lists:sort([{undefined, P, worker, [maps:get(P, Types)]} || {P, _} <- Started]),
                 Which),
    %% nodes: the ring is the three hosts
    ?assertEqual(lists:sort(Nodes), agree(Cfg, Nodes, nodes, fun lists:sort/1)),
    %% node_for agrees, and is libring's owner
    Ring = dsup_cluster:ring(Nodes),
    [?assertEqual({K, dsup_cluster:ring_owner(Ring, K)}, {K, agree(Cfg, {node_for, K})})
     || K <- [a, 'Elixir.Foo', {q, 1}, <<"bin">>, "str", 12345, -7, 1.5, make_ref(), self(), [], {}]],
    %% a terminated child leaves every view
    {P1, CN1} = hd(Started),
    ok = sup(Cfg, hd(Nodes), {terminate_child, P1}),
    M = N - 1,
    ?assertEqual([{specs, M}, {active, M}, {supervisors, 0}, {workers, M}],
                 agree(Cfg, count_children)),
    [?assertEqual(nil, sup(Cfg, Nd, {whois, P1})) || Nd <- Nodes],
    ?assertNot(maps:is_key(CN1, agree(Cfg, children))).

%% ------------------------------------------------------------------ restarts

%% A permanent child that crashes is restarted on its node under the same
%% name: a new pid in whereis everywhere, the old one gone from pg.
permanent_restarted_after_crash(Cfg) ->
    [A, B, C] = nodes_(Cfg),
    {P1, p} = start_ok(Cfg, A, {counter, [{name, p}, {value, 7}]}, B),
    wait_whereis(Cfg, p, P1),
    crash(P1, boom),
    P2 = wait_new_pid(Cfg, p, P1),
    ?assertEqual(B, node(P2)),
    ?assertEqual(7, gen_server:call(P2, get)),                   % same spec, same init args
    [?assertEqual(p, sup(Cfg, N, {whois, P2})) || N <- [A, B, C]],
    [?assertEqual(nil, sup(Cfg, N, {whois, P1})) || N <- [A, B, C]],
    wait(fun() -> pg_members(Cfg, p) =:= [P2] end, ?T),
    %% killed from outside, and a {shutdown, _} exit: restarted too
    exit(P2, kill),
    P3 = wait_new_pid(Cfg, p, P2),
    crash(P3, {shutdown, whatever}),
    P4 = wait_new_pid(Cfg, p, P3),
    ?assertEqual(#{p => {P4, spec_map(p, counter, [{value, 7}], permanent, 5000)}},
                 agree(Cfg, children)).

%% transient: restarted after an abnormal exit, not after `stop' (normal).
transient_restarted_only_on_abnormal_exit(Cfg) ->
    [A, B, _] = nodes_(Cfg),
    {P1, tr} = start_ok(Cfg, A, {counter, [{name, tr}, {restart, transient}]}, B),
    wait_whereis(Cfg, tr, P1),
    crash(P1, boom),
    P2 = wait_new_pid(Cfg, tr, P1),
    Ref = erlang:monitor(process, P2),
    ?assertEqual(ok, gen_server:call(P2, stop)),
    receive {'DOWN', Ref, _, _, normal} -> ok after ?T -> ct:fail(not_stopped) end,
    wait_whereis(Cfg, tr, undefined),
    ?assertEqual(#{}, agree(Cfg, children)),
    %% {shutdown, _} and shutdown are normal for transient children as well
    {P3, tr2} = start_ok(Cfg, A, {counter, [{name, tr2}, {restart, transient}]}, A),
    crash(P3, {shutdown, bye}),
    {P4, tr3} = start_ok(Cfg, A, {counter, [{name, tr3}, {restart, transient}]}, B),
    crash(P4, shutdown),
    [wait_whereis(Cfg, N, undefined) || N <- [tr2, tr3]],
    ?assertEqual(#{}, agree(Cfg, children)).

temporary_never_restarted(Cfg) ->
    [A, B, C] = nodes_(Cfg),
    {P1, tm1} = start_ok(Cfg, A, {counter, [{name, tm1}, {restart, temporary}]}, C),
    {P2, tm2} = start_ok(Cfg, B, {counter, [{name, tm2}, {restart, temporary}]}, A),
    wait_whereis(Cfg, tm1, P1),
    wait_whereis(Cfg, tm2, P2),
    crash(P1, boom),
    Ref = erlang:monitor(process, P2),
    ok = gen_server:call(P2, stop),
    receive {'DOWN', Ref, _, _, normal} -> ok after ?T -> ct:fail(not_stopped) end,
    [wait_whereis(Cfg, N, undefined) || N <- [tm1, tm2]],
    ?assertEqual(#{}, agree(Cfg, children)),
    ?assertEqual([], pg_members(Cfg, tm1)).

%% Children of one host with the same type, args, restart and shutdown share
%% one spec there (the child's name is its record's key): each is still
%% restarted with its own spec, one terminated or gone leaves the others'
%% intact, and a spec whose last child went is made anew for the next.
children_sharing_a_spec_keep_their_own(Cfg) ->
    [A, B, _] = nodes_(Cfg),
    Same = [{value, 5}],
    Specs = [{sa, Same, permanent}, {sb, Same, permanent}, {sc, [{value, 9}], permanent},
             {sd, Same, transient}],
    Pids = [begin
                {P, N} = start_ok(Cfg, A, {counter, [{name, N}, {restart, R} | Arg]}, B),
                wait_whereis(Cfg, N, P),
                {N, P}
            end || {N, Arg, R} <- Specs],
    Expect = fun(Live) ->
                     maps:from_list([{N, {proplists:get_value(N, Live), spec_map(N, counter, Arg, R, 5000)}}
                                     || {N, Arg, R} <- Specs, lists:keymember(N, 1, Live)])
             end,
    ?assertEqual(Expect(Pids), agree(Cfg, children)),
    %% each restarted with its own args
    Restarted = [begin
                     crash(P, boom),
                     P2 = wait_new_pid(Cfg, N, P),
                     ?assertEqual(B, node(P2)),
                     ?assertEqual({N, V}, {N, gen_server:call(P2, get)}),
                     {N, P2}
                 end || {{N, P}, V} <- lists:zip(Pids, [5, 5, 9, 5])],
    ?assertEqual(Expect(Restarted), agree(Cfg, children)),
    %% sb goes: sa still restarts from the spec they shared
    ?assertEqual(ok, sup(Cfg, A, {terminate_child, proplists:get_value(sb, Restarted)})),
    wait_whereis(Cfg, sb, undefined),
    SA = proplists:get_value(sa, Restarted),
    crash(SA, boom),
    SA2 = wait_new_pid(Cfg, sa, SA),
    ?assertEqual(5, gen_server:call(SA2, get)),
    %% the last children of that spec go; a new child with it gets it anew
    [?assertEqual(ok, sup(Cfg, A, {terminate_child, P})) || P <- [SA2, proplists:get_value(sd, Restarted)]],
    [wait_whereis(Cfg, N, undefined) || N <- [sa, sd]],
    {PE, se} = start_ok(Cfg, A, {counter, [{name, se} | Same]}, B),
    wait_whereis(Cfg, se, PE),
    ?assertEqual(5, gen_server:call(PE, get)),
    SC = proplists:get_value(sc, Restarted),
    ?assertEqual(#{sc => {SC, spec_map(sc, counter, [{value, 9}], permanent, 5000)},
                   se => {PE, spec_map(se, counter, Same, permanent, 5000)}},
                 agree(Cfg, children)).

%% max_restarts 2 in 5 s: the third crash in a row stops the instance on
%% that node; the other instance takes the node off its ring and takes over
%% the stopped instance's children; then the node restarts the instance
%% (dsup_heal_SUITE has the details), which rejoins the ring.
restart_intensity_exceeded_stops_instance(Cfg) ->
    [A, B] = nodes_(Cfg),
    [Old] = [P || P <- pg_members(Cfg, '$dsup_hosts'), node(P) =:= A],
    OldRef = erlang:monitor(process, Old),
    {Other, bystander} = start_ok(Cfg, B, {counter, [{name, bystander}]}, A),
    {P1, ri} = start_ok(Cfg, B, {counter, [{name, ri}]}, A),
    wait_whereis(Cfg, ri, P1),
    crash(P1, boom1),
    P2 = wait_new_pid(Cfg, ri, P1),
    crash(P2, boom2),
    P3 = wait_new_pid(Cfg, ri, P2),
    ?assertEqual(A, node(P3)),
    crash(P3, boom3),
    receive {'DOWN', OldRef, _, _, reached_max_restart_intensity} -> ok
    after ?T -> ct:fail(instance_not_stopped)
    end,
    %% the dsup-node itself is fine
    ?assert(is_list(dsup_cluster:call(A, which_workers))),
    %% the bystander child of the stopped instance runs again, on B, and the
    %% crash-looping one too (no child is lost)
    {ok, NewOther} = wait(fun() ->
                                  case sup(Cfg, B, {whereis, bystander}) of
                                      P when is_pid(P), P =/= Other -> {true, P};
                                      R -> {whereis, R}
                                  end
                          end, ?T),
    ?assertEqual(B, node(NewOther)),
    ?assert(is_down(Other)),
    %% the crash-looping child runs again, once: on B by failover, or on A when
    %% A's restarted instance (250 ms backoff) brought it back first
    NewRi = wait_new_pid(Cfg, ri, P3),
    ?assert(lists:member(node(NewRi), [A, B])),
    wait(fun() -> pg_members(Cfg, ri) =:= [NewRi] end, ?T),
    %% the restarted instance: a new pid under the same name, in every ring
    wait(fun() -> lists:sort([node(P) || P <- pg_members(Cfg, '$dsup_hosts'), P =/= Old]) =:= lists:sort([A, B])
         end, ?T),
    wait_ring(Cfg, [A, B], [A, B]).

%% ------------------------------------------------------------------ options

%% An unknown or ill-typed option: {error, {bad_option, Key}}, nothing
%% started (no registered instance, no scope members), the name stays free.
bad_options_rejected_nothing_started(Cfg) ->
    [A] = nodes_(Cfg),
    Name = name(Cfg),
    Cases = [{[{bogus, 1}], bogus},
             {[{max_restarts, -1}], max_restarts},
             {[{max_restarts, many}], max_restarts},
             {[{max_seconds, 0}], max_seconds},
             {[{monitor_nodes, 'maybe'}], monitor_nodes},
             {[{'cache_children?', 1}], 'cache_children?'},
             {[{nodes, [not_a_node_name]}], nodes},
             {[{nodes, not_a_list}], nodes},
             {[{listeners, [123]}], listeners},
             {[{listeners, [{a, b, c}]}], listeners},
             {[{name, some_other_name}], name},
             {[{max_restarts, 1}, {bogus2, x}], bogus2}],
    [?assertEqual({Opts, {error, {bad_option, Key}}},
                  {Opts, dsup_cluster:call(A, {start_supervisor, Name, Opts})})
     || {Opts, Key} <- Cases],
    %% not a keyword list at all
    ?assertMatch({error, {bad_option, _}}, dsup_cluster:call(A, {start_supervisor, Name, not_a_list})),
    ?assertMatch({error, {bad_option, _}}, dsup_cluster:call(A, {start_supervisor, Name, [just_atom]})),
    ?assertMatch({'EXIT', {noproc, _}}, catch sup(Cfg, A, nodes)),
    ?assertEqual([], dsup_cluster:call(A, {pg_which_groups, ?config(scope, Cfg)})),
    ?assertEqual([], pg:which_groups(?config(scope, Cfg))),
    %% the name is free: valid options (all of them) start it
    Good = [{name, Name}, {'cache_children?', true}, {monitor_nodes, cluster}, {nodes, [A]},
            {listeners, [self()]}, {max_restarts, 5}, {max_seconds, 10}],
    {ok, Pid} = dsup_cluster:call(A, {start_supervisor, Name, Good}),
    ?assert(is_pid(Pid)),
    ?assertEqual([A], sup(Cfg, A, nodes)).

start_supervisor_twice_already_started(Cfg) ->
    [A] = nodes_(Cfg),
    {ok, Pid} = start_sup(Cfg, A, []),
    ?assertEqual({error, {already_started, Pid}}, start_sup(Cfg, A, [])),
    ?assertEqual({error, {already_started, Pid}}, start_sup(Cfg, A, [{max_restarts, 1}])),
    %% `Foo` and `Elixir.Foo` name one pg scope: the second is refused, the
    %% first keeps it
    Twin = case atom_to_list(name(Cfg)) of
               "Elixir." ++ Rest -> list_to_atom(Rest);
               Plain -> list_to_atom("Elixir." ++ Plain)
           end,
    ?assertEqual({error, {scope_in_use, ?config(scope, Cfg)}},
                 dsup_cluster:call(A, {start_supervisor, Twin, []})),
    ?assertEqual([A], sup(Cfg, A, nodes)),
    %% the pid is the registered instance
    ?assertEqual([Pid], dsup_cluster:call(A, {pg_members, ?config(scope, Cfg), '$dsup_hosts'})).

%% The node's built-in registered names cannot name an instance (its
%% messages would go to the built-in service): {reserved_name, Name}; the
%% services keep working, and nothing was registered.
start_supervisor_reserved_names(Cfg) ->
    [A] = nodes_(Cfg),
    [?assertEqual({error, {reserved_name, N}}, dsup_cluster:call(A, {start_supervisor, N, []}))
     || N <- [net_kernel, rex, global_name_server, dsup_node]],
    ?assertEqual(pong, net_adm:ping(A)),
    ?assert(is_list(dsup_cluster:call(A, which_workers))),
    ?assertEqual({error, {reserved_name, rex}},
                 dsup_cluster:call(A, {start_supervisor, rex, [{max_restarts, 1}]})),
    %% an ordinary name still starts
    {ok, Pid} = start_sup(Cfg, A, []),
    ?assert(is_pid(Pid)).

%% --supervisor with an upper-case name is an Elixir alias; a ,k=v option
%% applies (max_restarts=1: the second crash stops the instance).
cli_supervisor_elixir_alias_and_options(Cfg) ->
    cli_case(Cfg, ",max_restarts=1").

%% Several ,k=v options on one --supervisor (README: "keys cache_children,
%% monitor_nodes, nodes=..., listeners=..., max_restarts, max_seconds").
cli_supervisor_several_options(Cfg) ->
    cli_case(Cfg, ",max_restarts=1,max_seconds=60,monitor_nodes=false,cache_children=true").

cli_case(Cfg, KVs) ->
    U = integer_to_list(erlang:unique_integer([positive])) ++ os:getpid(),
    Alias = "DsupCt" ++ U ++ ".DistSup",
    Atom = list_to_atom("Elixir." ++ Alias),
    Plain = list_to_atom("ct_plain_sup_" ++ U),
    Scope = dsup_cluster:scope_of(Atom),
    H = dsup_cluster:start_c(#{name => cli_sup,
                               extra_args => ["--supervisor", Alias ++ KVs,
                                              "--supervisor", atom_to_list(Plain)]}),
    remember_handle(Cfg, H),
    N = maps:get(node, H),
    ?assertEqual([N], dsup_cluster:sup(Atom, N, nodes)),
    ?assertEqual([N], dsup_cluster:sup(Plain, N, nodes)),
    %% the host, and one capability group per worker type it runs
    ?assertEqual(lists:sort(['$dsup_hosts' | [{'$dsup_type', T} || T <- [counter, echo, kv]]]),
                 lists:sort(dsup_cluster:call(N, {pg_which_groups, Scope}))),
    {ok, P1, c} = dsup_cluster:sup(Atom, N, {start_child, {counter, [{name, c}]}, undefined}),
    crash(P1, boom),
    {ok, P2} = wait(fun() -> case dsup_cluster:sup(Atom, N, {whereis, c}) of
                                 P when is_pid(P), P =/= P1 -> {true, P};
                                 R -> R
                             end end, ?T),
    [Old] = dsup_cluster:call(N, {pg_members, Scope, '$dsup_hosts'}),
    crash(P2, boom),
    %% max_restarts=1 applied: the instance gave up, and the node restarted it
    wait(fun() -> [L || L <- dsup_test:log_tail(H, 100),
                        string:find(L, "reached maximum restart intensity (1 in") =/= nomatch] =/= []
         end, ?T),
    wait(fun() -> case dsup_cluster:call(N, {pg_members, Scope, '$dsup_hosts'}) of
                      [New] when New =/= Old -> true;
                      R -> {hosts, R}
                  end end, ?T),
    %% the other instance is untouched
    ?assertEqual([N], dsup_cluster:sup(Plain, N, nodes)),
    {ok, 0} = dsup_test:stop_node(H).

cli_supervisor_bad_option_exits_nonzero(Cfg) ->
    H = dsup_cluster:start_c(#{name => cli_bad, wait => none,
                               extra_args => ["--supervisor", "ct_bad_sup,bogus=1"]}),
    remember_handle(Cfg, H),
    {exited, St} = dsup_test:wait_exit(H, ?T),
    Lines = dsup_test:log_tail(H, 10),
    ct:log("exit status ~p; log:~n~s", [St, lists:join("\n", Lines)]),
    %% EX_USAGE, and one line naming the option and the bad key
    ?assertEqual(64, St),
    [Line] = Lines,
    ?assertMatch({match, _}, re:run(Line, "^dsup-node: --supervisor: .*bogus")).

%% ------------------------------------------------------------------ listeners

%% A pid listener of one instance gets {distributed_supervisor, Name, Ev}
%% once per event, for children of every node: start, restart (stop of the
%% old pid, start of the new), terminate.
pid_listener_gets_each_event_once(Cfg) ->
    [A, B] = nodes_(Cfg),
    Name = name(Cfg),
    {ok, _} = start_sup(Cfg, A, [{listeners, [self()]}]),
    {ok, _} = start_sup(Cfg, B, []),
    wait_ring(Cfg, [A, B], [A, B]),
    dsup_cluster:flush(),
    {P1, x1} = start_ok(Cfg, A, {counter, [{name, x1}]}, A),
    {P2, x2} = start_ok(Cfg, A, {counter, [{name, x2}]}, B),
    wait_whereis(Cfg, x2, P2),
    crash(P2, boom),
    P2b = wait_new_pid(Cfg, x2, P2),
    ok = sup(Cfg, B, {terminate_child, P1}),
    {P3, x3} = start_ok(Cfg, B, {echo, [{name, x3}, {restart, temporary}]}, B),
    wait_whereis(Cfg, x3, P3),
    exit(P3, kill),
    wait_whereis(Cfg, x3, undefined),
    {PM, marker} = start_ok(Cfg, B, {echo, [{name, marker}]}, B),
    Evs = dsup_cluster:recv_until(
            fun(M) -> M =:= {distributed_supervisor, Name, {process_start, marker, PM}} end, ?T),
    Rest = [M || M <- drain(), element(1, M) =:= distributed_supervisor],
    Got = [Ev || {distributed_supervisor, N, Ev} <- Evs ++ Rest, N =:= Name],
    ?assertEqual([{process_start, x1, P1},
                  {process_start, x2, P2},
                  {process_stop, x2, [P2]},
                  {process_start, x2, P2b},
                  {process_stop, x1, [P1]},
                  {process_start, x3, P3},
                  {process_stop, x3, [P3]},
                  {process_start, marker, PM}], Got).

drain() -> receive M -> [M | drain()] after 0 -> [] end.

%% {RegName, Node} listeners get the same events.
named_listener_gets_events(Cfg) ->
    [A, B] = nodes_(Cfg),
    Name = name(Cfg),
    Reg = dsup_test:unique_name(ct_listener),
    true = register(Reg, self()),
    try
        {ok, _} = start_sup(Cfg, A, [{listeners, {Reg, node()}}]),
        {ok, _} = start_sup(Cfg, B, []),
        wait_ring(Cfg, [A, B], [A, B]),
        {P, nl} = start_ok(Cfg, B, {counter, [{name, nl}]}, B),
        Evs = dsup_cluster:recv_until(
                fun(M) -> M =:= {distributed_supervisor, Name, {process_start, nl, P}} end, ?T),
        ct:log("received ~p", [Evs])
    after
        unregister(Reg)
    end.

%% monitor_nodes true: {node_up, Node, _} when an instance starts on another
%% node, {node_down, Node, _} when it goes.
monitor_nodes_listener_gets_node_up_down(Cfg) ->
    [A, B] = nodes_(Cfg),
    Name = name(Cfg),
    {ok, _} = start_sup(Cfg, A, [{listeners, [self()]}, {monitor_nodes, true}]),
    {ok, _} = start_sup(Cfg, B, []),
    wait_ring(Cfg, [A, B], [A, B]),
    Up = dsup_cluster:recv_until(fun({distributed_supervisor, N, {node_up, Nd, _}}) ->
                                         N =:= Name andalso Nd =:= B;
                                    (_) -> false end, ?T),
    ct:log("until node_up: ~p", [Up]),
    HB = lists:keyfind(B, 2, [{H, maps:get(node, H)} || H <- ?config(handles, Cfg)]),
    {ok, 0} = dsup_test:stop_node(element(1, HB)),
    Down = dsup_cluster:recv_until(fun({distributed_supervisor, N, {node_down, Nd, _}}) ->
                                           N =:= Name andalso Nd =:= B;
                                      (_) -> false end, ?T),
    ct:log("until node_down: ~p", [Down]),
    ?assertEqual([], [M || {distributed_supervisor, _, {node_up, _, _}} = M <- Down]),
    wait_ring(Cfg, [A], [A]).

%% ------------------------------------------------------------------ failover

%% SIGTERM a dsup-node: exit 0, a listener gets {node_terminate, Node,
%% Reason, Statuses} (one status per local child), its permanent and
%% transient children run again on the others, its temporary ones do not,
%% the others' children are untouched.
graceful_stop_hands_over_children(Cfg) ->
    [A, B, C] = nodes_(Cfg),
    Name = name(Cfg),
    {ok, _} = start_sup(Cfg, A, []),
    {ok, _} = start_sup(Cfg, B, [{listeners, [self()]}, {monitor_nodes, true}]),
    {ok, _} = start_sup(Cfg, C, []),
    wait_ring(Cfg, [A, B, C], [A, B, C]),
    OnA = [start_ok(Cfg, B, {counter, [{name, {g, R, I}}, {restart, R}]}, A)
           || R <- [permanent, transient, temporary], I <- lists:seq(1, 5)],
    Elsewhere = [start_ok(Cfg, A, {counter, [{name, {e, N, I}}]}, N) || N <- [B, C], I <- [1, 2]],
    [wait_whereis(Cfg, CN, P) || {P, CN} <- OnA ++ Elsewhere],
    dsup_cluster:flush(),
    HA = hd(?config(handles, Cfg)),
    ?assertEqual({ok, 0}, dsup_test:stop_node(HA)),
    Evs = dsup_cluster:recv_until(
            fun({distributed_supervisor, N, {node_terminate, Nd, _, _}}) -> N =:= Name andalso Nd =:= A;
               (_) -> false end, ?T),
    {distributed_supervisor, _, {node_terminate, A, Reason, Statuses}} = lists:last(Evs),
    ct:log("node_terminate reason ~p, ~b statuses, e.g. ~p", [Reason, length(Statuses),
                                                               lists:sublist(Statuses, 2)]),
    ?assert(is_list(Statuses)),
    ?assertEqual(lists:sort([P || {P, _} <- OnA]),
                 lists:sort([element(2, S) || S <- Statuses])),
    [?assertMatch({status, _, {module, counter}, [_]}, S) || S <- Statuses],
    Survivors = [B, C],
    wait_ring(Cfg, Survivors, Survivors),
    [begin
         case R of
             temporary -> wait_whereis(Cfg, Survivors, CN, undefined);
             _ ->
                 {ok, NP} = wait(fun() ->
                                         case lists:usort([sup(Cfg, N, {whereis, CN}) || N <- Survivors]) of
                                             [NP] when is_pid(NP), NP =/= P -> {true, NP};
                                             Rs -> {whereis, CN, Rs}
                                         end
                                 end, ?T),
                 ?assert(lists:member(node(NP), Survivors)),
                 wait(fun() -> pg_members(Cfg, CN) =:= [NP] end, ?T)
         end
     end || {P, {g, R, _} = CN} <- OnA],
    [?assertEqual(P, sup(Cfg, N, {whereis, CN})) || {P, CN} <- Elsewhere, N <- Survivors],
    _ = dsup_cluster:recv_until(fun({distributed_supervisor, _, {node_down, Nd, _}}) -> Nd =:= A;
                                   (_) -> false end, ?T),
    ok.

%% A stopping node hands a child over to a host and waits for its
%% moved_visible; the host leaves '$dsup_hosts' instead. That leave, which
%% the stopping node's scope is telling its instance about, lets the stop
%% finish: the instance leaves the hosts group, stops and unsubscribes from
%% the scope, all inside the scope's notification (use-after-free of the
%% subscription and of the group before pg.c kept both across a notify:
%% the node then exits non-zero under ASan). The test process is the host.
target_host_leaves_while_a_stop_waits_for_it(Cfg) ->
    [D1, D2] = nodes_(Cfg),
    Scope = ?config(scope, Cfg),
    Me = node(),
    ok = pg:join(Scope, {'$dsup_type', counter}, self()),
    ok = pg:join(Scope, '$dsup_hosts', self()),
    wait_ring(Cfg, [D1, D2], [D1, D2, Me]),
    %% a name on D1 now whose successor, once D1 is gone, is us
    Ring3 = dsup_cluster:ring(lists:sort([D1, D2, Me])),
    Ring2 = dsup_cluster:ring(lists:sort([D2, Me])),
    CN = hd([N || I <- lists:seq(1, 1000), N <- [{moved_to_us, I}],
                  dsup_cluster:ring_owner(Ring3, N) =:= D1, dsup_cluster:ring_owner(Ring2, N) =:= Me]),
    {P, CN} = start_ok(Cfg, D1, {counter, [{name, CN}]}, D1),
    ?assertEqual(D1, node(P)),
    Self = self(),
    H1 = hd(?config(handles, Cfg)),
    Stopper = spawn_link(fun() -> Self ! {stopped, dsup_test:stop_node(H1, 20000)} end),
    From = receive {'$gen_call', F, {start_handoff, CN, _Spec, _State}} -> F
           after ?T -> ct:fail(no_start_handoff)
           end,
    Q = spawn(fun() -> receive after infinity -> ok end end),
    gen_server:reply(From, {ok, Q}),
    ok = pg:leave(Scope, '$dsup_hosts', self()),
    Stopped = receive {stopped, St} -> St after 25000 -> ct:fail({no_stop, Stopper}) end,
    ?assertEqual({ok, 0}, Stopped),
    ?assertEqual([], [L || L <- dsup_test:log_tail(H1, 400), string:find(L, "AddressSanitizer") =/= nomatch]),
    exit(Q, kill),
    wait_ring(Cfg, [D2], [D2]),
    dsup_cluster:flush().

%% One kill -9 (the short version of the chaos case): every permanent
%% orphan once on a survivor, no temporary orphan, then the node comes back
%% and no name has two copies.
kill9_orphans_restarted_once(Cfg) ->
    Names = populate(Cfg, 150, 30),
    Victim = 1 + erlang:phash2(os:timestamp(), 3),
    ct:log("victim: node ~b", [Victim]),
    chaos_round(Cfg, Names, Victim, 1, wait_failover),
    ok.

%% ------------------------------------------------------------------ chaos

chaos_kill9_rounds(Cfg) ->
    Seed = case os:getenv("DSUP_CHAOS_SEED") of
               false -> erlang:phash2({os:getpid(), erlang:unique_integer(), os:timestamp()});
               V -> list_to_integer(V)
           end,
    Rounds = case os:getenv("DSUP_CHAOS_ROUNDS") of
                 false -> ?CHAOS_ROUNDS;
                 R -> list_to_integer(R)
             end,
    ct:pal("chaos seed ~b (replay: DSUP_CHAOS_SEED=~b), ~b rounds", [Seed, Seed, Rounds]),
    rand:seed(exsss, Seed),
    T0 = erlang:monotonic_time(),
    Names = populate(Cfg, ?N_PERM, ?N_TEMP),
    ct:pal("started ~b + ~b children in ~b ms", [?N_PERM, ?N_TEMP, dsup_test:elapsed_ms(T0)]),
    Stats = ets:new(chaos_stats, [public, set]),
    Clients = [start_client(Cfg, Stats, I) || I <- lists:seq(1, 4)]
        ++ [start_churn(Cfg, Stats, I) || I <- [1, 2]],
    try
        lists:foreach(fun(Round) ->
                              T1 = erlang:monotonic_time(),
                              Mode = case rand:uniform(2) of
                                         1 -> wait_failover;
                                         2 -> restart_at_once
                                     end,
                              chaos_round(Cfg, Names, pick_victim(Cfg, Names), Round, Mode),
                              ct:pal("round ~b done in ~b ms; calls so far ~p",
                                     [Round, dsup_test:elapsed_ms(T1), lists:sort(ets:tab2list(Stats))])
                      end, lists:seq(1, Rounds))
    after
        [exit(C, kill) || C <- Clients]
    end,
    Calls = lists:sort(ets:tab2list(Stats)),
    ct:pal("~b rounds in ~b ms; calls in flight: ~p",
           [Rounds, dsup_test:elapsed_ms(T0), Calls]),
    ?assert(proplists:get_value(ok, Calls, 0) > 0),
    ?assertEqual([], [C || {{bad, _}, _} = C <- Calls]),
    ?assertEqual([], [C || {{_, timeout}, _} = C <- Calls]),
    {comment, dsup_cluster:fmt("seed ~b, ~b rounds, calls ~p", [Seed, Rounds, Calls])}.

%% A random node among those that host permanent children (a restarted node
%% starts empty: killing it again would test nothing).
pick_victim(Cfg, #{perm := Perm}) ->
    Nodes = nodes_(Cfg),
    Hosting = lists:usort([node(P) || CN <- Perm, P <- pg_members(Cfg, CN)]),
    Candidates = [I || {I, N} <- lists:zip(lists:seq(1, length(Nodes)), Nodes),
                       lists:member(N, Hosting)],
    lists:nth(rand:uniform(length(Candidates)), Candidates).

%% Start NPerm permanent {w, I} and NTemp temporary {t, I} counters, placed
%% by the ring, through random instances, from a few parallel starters.
populate(Cfg, NPerm, NTemp) ->
    Nodes = nodes_(Cfg),
    Specs = [{{w, I}, permanent} || I <- lists:seq(1, NPerm)]
        ++ [{{t, I}, temporary} || I <- lists:seq(1, NTemp)],
    Chunks = chunk(Specs, 8),
    Self = self(),
    Pids = [spawn_link(fun() ->
                               [begin
                                    Via = lists:nth(1 + erlang:phash2(CN, length(Nodes)), Nodes),
                                    {ok, _, CN} = sup(Cfg, Via, {start_child,
                                                                 {counter, [{name, CN}, {restart, R}]},
                                                                 undefined})
                                end || {CN, R} <- Chunk],
                               Self ! {populated, self()}
                       end) || Chunk <- Chunks],
    [receive {populated, P} -> ok after 60000 -> ct:fail(populate_timeout) end || P <- Pids],
    Perm = [CN || {CN, permanent} <- Specs],
    Temp = [CN || {CN, temporary} <- Specs],
    wait(fun() -> [] =:= [CN || CN <- Perm ++ Temp, length(pg_members(Cfg, CN)) =/= 1] end, ?T),
    #{perm => Perm, temp => Temp}.

chunk(L, N) ->
    Size = max(1, (length(L) + N - 1) div N),
    chunk_(L, Size).
chunk_([], _) -> [];
chunk_(L, Size) when length(L) =< Size -> [L];
chunk_(L, Size) -> {H, T} = lists:split(Size, L), [H | chunk_(T, Size)].

%% Kill node number VictimIdx with SIGKILL, restart it under the same name
%% (Mode wait_failover: once the survivors have taken over its children;
%% restart_at_once: as soon as it is dead), and check: every permanent child
%% runs exactly once (pg and every instance's children agree), no temporary
%% orphan runs again, the other temporaries are untouched.
chaos_round(Cfg, #{perm := Perm, temp := Temp}, VictimIdx, Round, Mode) ->
    Nodes = nodes_(Cfg),
    Victim = lists:nth(VictimIdx, Nodes),
    Survivors = Nodes -- [Victim],
    Before = maps:from_list([{CN, pg_members(Cfg, CN)} || CN <- Perm ++ Temp]),
    OrphansP = [CN || CN <- Perm, [P] <- [maps:get(CN, Before)], node(P) =:= Victim],
    TempAlive = [CN || CN <- Temp, maps:get(CN, Before) =/= []],
    OrphansT = [CN || CN <- TempAlive, [P] <- [maps:get(CN, Before)], node(P) =:= Victim],
    H = current_handle(Cfg, Victim),
    T0 = erlang:monotonic_time(),
    {exited, _} = dsup_cluster:kill_c(H),
    catch dsup_test:forget(H),
    TFail = case Mode of
                wait_failover ->
                    check_converged(Cfg, Survivors, Perm, TempAlive -- OrphansT, OrphansT, Before, Victim),
                    T = dsup_test:elapsed_ms(T0),
                    assert_whereis_all(Cfg, Survivors, Perm),
                    T;
                restart_at_once -> 0
            end,
    H2 = dsup_cluster:start_c(#{node => Victim, connect => Survivors}),
    remember_handle(Cfg, H2),
    {ok, _} = start_sup(Cfg, Victim, []),
    wait_ring(Cfg, Nodes, Nodes),
    check_converged(Cfg, Nodes, Perm, TempAlive -- OrphansT, OrphansT, Before, none),
    assert_whereis_all(Cfg, Nodes, Perm),
    ct:log("round ~b (~p): killed ~s (~b permanent + ~b temporary orphans): failover ~b ms, "
           "all converged ~b ms", [Round, Mode, Victim, length(OrphansP), length(OrphansT), TFail,
                                    dsup_test:elapsed_ms(T0)]).

%% The latest handle of a node (it may have been restarted).
current_handle(Cfg, Node) ->
    lists:last([H || H <- handles(Cfg), maps:get(node, H) =:= Node]).

%% Wait until: each Perm name has exactly one pg member, not on Lost, and
%% the children table of every instance on On maps it to that pid; each
%% KeptTemp name still has its pid from Before; each GoneTemp has none.
check_converged(Cfg, On, Perm, KeptTemp, GoneTemp, Before, Lost) ->
    try
        wait(fun() ->
                     Bad = [{CN, Ms} || CN <- Perm, Ms <- [pg_members(Cfg, CN)],
                                        not (length(Ms) =:= 1 andalso node(hd(Ms)) =/= Lost)]
                         ++ [{kept_temp, CN} || CN <- KeptTemp, pg_members(Cfg, CN) =/= maps:get(CN, Before)]
                         ++ [{gone_temp, CN} || CN <- GoneTemp, pg_members(Cfg, CN) =/= []],
                     case Bad of
                         [] ->
                             Want = maps:from_list([{CN, hd(pg_members(Cfg, CN))} || CN <- Perm ++ KeptTemp]),
                             Diffs = [{N, maps:size(Want), maps:size(Got)}
                                      || N <- On,
                                         Got <- [maps:filtermap(fun({K, _}, {P, _}) when K =:= w; K =:= t -> {true, P};
                                                                   (_, _) -> false
                                                                end, sup(Cfg, N, children))],
                                         Got =/= Want],
                             Diffs =:= [] orelse {children_differ, Diffs};
                         _ -> {bad, length(Bad), lists:sublist(Bad, 5)}
                     end
             end, ?FAILOVER_T)
    catch C:R:St ->
            [ct:log("~s log tail:~n~s", [maps:get(node, H),
                                        lists:join("\n", dsup_test:log_tail(H, 60))])
             || H <- handles(Cfg), dsup_test:exit_status(H) =:= running],
            erlang:raise(C, R, St)
    end.

%% whereis of every permanent name on every instance in On: the one pg
%% member (one call per name and node, from a process per node).
assert_whereis_all(Cfg, On, Perm) ->
    Self = self(),
    Ps = [spawn_link(fun() ->
                             Bad = [{CN, W, M} || CN <- Perm,
                                                  W <- [sup(Cfg, N, {whereis, CN})],
                                                  M <- [pg_members(Cfg, CN)],
                                                  [W] =/= M],
                             Self ! {whereis_checked, self(), N, Bad}
                     end) || N <- On],
    Bad = lists:append([receive {whereis_checked, P, N, B} -> [{N, B} || B =/= []]
                        after 60000 -> ct:fail(whereis_check_timeout)
                        end || P <- Ps]),
    ?assertEqual([], Bad).

%% A client: whereis of a random permanent child through a random instance,
%% then a call to it; counts outcomes in Stats. Failover-time exits
%% (noproc, nodedown, shutdown, timeouts) are expected and counted; a wrong
%% reply is counted as {bad, _}.
start_client(Cfg, Stats, I) ->
    Nodes = nodes_(Cfg),
    spawn(fun() ->
                       rand:seed(exsss, I),
                       client_loop(Cfg, Nodes, Stats)
               end).

client_loop(Cfg, Nodes, Stats) ->
    CN = {w, rand:uniform(?N_PERM)},
    Via = lists:nth(rand:uniform(length(Nodes)), Nodes),
    Outcome = try sup(Cfg, Via, {whereis, CN}, 2000) of
                  undefined -> whereis_undefined;
                  Pid when is_pid(Pid) ->
                      try gen_server:call(Pid, get, 2000) of
                          0 -> ok;
                          Other -> {bad, Other}
                      catch exit:{Why, _} -> exit_kind(call, Why)
                      end;
                  Other -> {bad, {whereis, Other}}
              catch exit:{Why, _} -> exit_kind(whereis, Why)
              end,
    ets:update_counter(Stats, Outcome, 1, {Outcome, 0}),
    client_loop(Cfg, Nodes, Stats).

sup(Cfg, Node, Msg, T) -> dsup_cluster:sup(name(Cfg), Node, Msg, T).

%% A churn client: starts a temporary {c, I, N} child through a random
%% instance (placed by the ring, so often forwarded), then terminates it
%% through another random instance. A call to a dead or restarting
%% instance exits (nodedown/noproc); a start forwarded to a node that dies
%% answers {error, {nodedown, _}}; a terminate of a child whose node died
%% answers {error, not_found}, or {error, {nodedown, _}} when it was
%% forwarded to that node just before it died. All counted; anything else
%% is {bad, _}.
start_churn(Cfg, Stats, I) ->
    Nodes = nodes_(Cfg),
    spawn(fun() -> rand:seed(exsss, 1000 + I), churn_loop(Cfg, Nodes, Stats, I, 1) end).

churn_loop(Cfg, Nodes, Stats, I, N) ->
    Via1 = lists:nth(rand:uniform(length(Nodes)), Nodes),
    Via2 = lists:nth(rand:uniform(length(Nodes)), Nodes),
    Spec = {echo, [{name, {c, I, N}}, {restart, temporary}]},
    Outcome = try sup(Cfg, Via1, {start_child, Spec, undefined}, 5000) of
                  {ok, Pid, {c, I, N}} ->
                      try sup(Cfg, Via2, {terminate_child, Pid}, 5000) of
                          ok -> churn_ok;
                          {error, not_found} -> {terminate, not_found};
                          %% forwarded to the child's node, which died before
                          %% answering (README lists only ok | not_found)
                          {error, {nodedown, _}} -> {terminate, error_nodedown};
                          Other -> {bad, {terminate, Other}}
                      catch exit:{Why, _} -> exit_kind(terminate, Why)
                      end;
                  {error, {nodedown, _}} -> {start, error_nodedown};
                  {error, shutting_down} -> {start, shutting_down};
                  Other -> {bad, {start, Other}}
              catch exit:{Why, _} -> exit_kind(start, Why)
              end,
    ets:update_counter(Stats, Outcome, 1, {Outcome, 0}),
    churn_loop(Cfg, Nodes, Stats, I, N + 1).

exit_kind(Op, noproc) -> {Op, noproc};
exit_kind(Op, {nodedown, _}) -> {Op, nodedown};
exit_kind(Op, timeout) -> {Op, timeout};
exit_kind(Op, shutdown) -> {Op, shutdown};
exit_kind(Op, {shutdown, _}) -> {Op, shutdown};
exit_kind(Op, killed) -> {Op, killed};
exit_kind(Op, noconnection) -> {Op, noconnection};
exit_kind(Op, Other) -> {bad, {Op, Other}}.

%% ------------------------------------------------------------------ arbitration

%% Two BEAM caller nodes start the same 1,000 names at the same time, one
%% naming d1 as the target node and the other d2 (each caller: 8 processes
%% over the same chunks in the same order, so both race on every name; odd
%% rounds by start_child with the node, even rounds by start_child_here as
%% the Elixir shim does).
%% Every round, for every name: exactly one caller got {ok, Pid, Name}, the
%% other {error, {already_started, Pid}} with that same Pid; pg has exactly
%% that one copy (none was started and then killed as a duplicate), and
%% every instance's whereis agrees.
explicit_node_race_one_winner(Cfg) ->
    [D1, D2] = nodes_(Cfg),
    Callers = [dsup_cluster:start_peer(race1), dsup_cluster:start_peer(race2)],
    try
        [P1, P2] = [maps:get(node, C) || C <- Callers],
        Rounds = case os:getenv("DSUP_RACE_ROUNDS") of
                     false -> 20;
                     R -> list_to_integer(R)
                 end,
        T0 = erlang:monotonic_time(),
        Stats = [race_round(Cfg, P1, D1, P2, D2, Round) || Round <- lists:seq(1, Rounds)],
        OnD1 = lists:sum([A || {A, _} <- Stats]),
        Ms = dsup_test:elapsed_ms(T0),
        ct:pal("~b rounds x 1000 names in ~b ms; winners on ~s: ~b, on ~s: ~b",
               [Rounds, Ms, D1, OnD1, D2, Rounds * 1000 - OnD1]),
        %% both targets won some names (the race went both ways)
        ?assert(OnD1 > 0 andalso OnD1 < Rounds * 1000),
        {comment, dsup_cluster:fmt("~b rounds in ~b ms", [Rounds, Ms])}
    after
        [dsup_cluster:stop_peer(C) || C <- Callers]
    end.

race_round(Cfg, P1, D1, P2, D2, Round) ->
    Names = [{race, Round, I} || I <- lists:seq(1, 1000)],
    Chunks = chunk(Names, 8),
    Name = name(Cfg),
    Run = fun(Target) ->
                  fun() ->
                          Self = self(),
                          Ws = [spawn_link(fun() ->
                                                   Self ! {self(), [{CN, catch gen_server:call(
                                                                                   {Name, Target},
                                                                                   race_request(Round, CN, Target),
                                                                                   20000)}
                                                                    || CN <- Chunk]}
                                           end) || Chunk <- Chunks],
                          lists:append([receive {W, Rs} -> Rs end || W <- Ws])
                  end
          end,
    R1 = erpc:send_request(P1, Run(D1)),
    R2 = erpc:send_request(P2, Run(D2)),
    Res1 = maps:from_list(erpc:receive_response(R1, 60000)),
    Res2 = maps:from_list(erpc:receive_response(R2, 60000)),
    Verdicts = [{CN, race_verdict(CN, maps:get(CN, Res1), maps:get(CN, Res2))} || CN <- Names],
    Bad = [V || {_, {bad, _}} = V <- Verdicts],
    ?assertEqual({0, []}, {length(Bad), lists:sublist(Bad, 10)}),
    Winners = maps:from_list([{CN, P} || {CN, {won, P}} <- Verdicts]),
    %% exactly the winner's copy is registered, and stays (no duplicate kill)
    wait(fun() ->
                 Wrong = [{CN, P, Ms} || {CN, P} <- maps:to_list(Winners),
                                         Ms <- [pg_members(Cfg, CN)], Ms =/= [P]],
                 Wrong =:= [] orelse {registry, length(Wrong), lists:sublist(Wrong, 5)}
         end, ?T),
    assert_whereis_all(Cfg, [D1, D2], Names),
    OnD1 = length([P || P <- maps:values(Winners), node(P) =:= D1]),
    ct:log("round ~b: ~b names won on ~s, ~b on ~s", [Round, OnD1, D1, 1000 - OnD1, D2]),
    {OnD1, 1000 - OnD1}.

%% Odd rounds: start_child with an explicit node; even rounds: what the
%% Elixir shim sends for start_child(name, spec, node), start_child_here on
%% that node.
race_request(Round, CN, Target) when Round rem 2 =:= 1 ->
    {start_child, {counter, [{name, CN}]}, Target};
race_request(_, CN, _) ->
    {start_child_here, CN, spec_map(CN, counter, [], permanent, 5000)}.

race_verdict(CN, {ok, P, CN}, {error, {already_started, P}}) -> {won, P};
race_verdict(CN, {error, {already_started, P}}, {ok, P, CN}) -> {won, P};
race_verdict(_, A, B) -> {bad, {A, B}}.

%% The reservation protocol (README "How instances cooperate") against a
%% scripted arbiter and holder: the test process joins '$dsup_hosts' (so the
%% CT node is on the ring) and speaks the instance messages itself.
%%  - a start whose arbiter answers {already_started, P} returns it;
%%  - a reservation its holder never confirms expires (a queued start on the
%%    owner then wins, after the TTL);
%%  - the arbiter leaves mid-reservation: the start asks the new owner;
%%  - the holder leaves mid-reservation: the queued claimant is granted.
arbiter_answers_lost_and_expired(Cfg) ->
    [D1, D2] = nodes_(Cfg),
    Scope = ?config(scope, Cfg),
    Me = node(),
    %% a host that can run counter (placement asks only capable hosts)
    ok = pg:join(Scope, {'$dsup_type', counter}, self()),
    ok = pg:join(Scope, '$dsup_hosts', self()),
    wait_ring(Cfg, [D1, D2], [D1, D2, Me]),
    Ring = dsup_cluster:ring(lists:sort([D1, D2, Me])),
    Owned = fun(Owner, Tag) -> owned_name(Ring, Owner, Tag) end,
    %% 1. the arbiter says taken
    N1 = Owned(Me, taken),
    Fake = spawn(fun() -> receive after infinity -> ok end end),
    C1 = async_start(Cfg, D1, N1),
    {Tag1, Inst1} = recv_reserve(N1),
    ?assertEqual(D1, node(Inst1)),
    Inst1 ! {'$dsup', {reserve_reply, N1, Tag1, self(), {already_started, Fake}}},
    ?assertEqual({error, {already_started, Fake}}, async_result(C1)),
    %% 2. we hold a reservation at D1 and never confirm: D1's own start of
    %% the name waits for the TTL (5 s, swept each second), then wins
    N2 = Owned(D1, expire),
    D1Inst = instance_pid(Cfg, D1),
    D1Inst ! {'$dsup', {reserve, N2, 7, self()}},
    ?assertEqual(ok, recv_reserve_reply(N2, 7)),
    T0 = erlang:monotonic_time(),
    C2 = async_start(Cfg, D1, N2),
    {ok, P2, N2} = async_result(C2, 15000),
    Waited = dsup_test:elapsed_ms(T0),
    ct:log("expired reservation: the queued start won after ~b ms", [Waited]),
    ?assert(Waited >= 3000),
    ?assertEqual(D1, node(P2)),
    %% 3. arbiter lost: D2 asks us about N3 and we leave before answering;
    %% 4. holder lost: we hold N4 at D1, D2's start of it queues there; when we
    %% leave '$dsup_hosts', both starts go through on D2
    N3 = Owned(Me, lost_arbiter),
    N4 = Owned(D1, lost_holder),
    D1Inst ! {'$dsup', {reserve, N4, 8, self()}},
    ?assertEqual(ok, recv_reserve_reply(N4, 8)),
    C3 = async_start(Cfg, D2, N3),
    _ = recv_reserve(N3),
    C4 = async_start(Cfg, D2, N4),
    ?assertEqual(timeout, async_result(C4, 500)),   % queued behind our reservation
    ok = pg:leave(Scope, '$dsup_hosts', self()),
    {ok, P3, N3} = async_result(C3, 10000),
    {ok, P4, N4} = async_result(C4, 10000),
    ?assertEqual({D2, D2}, {node(P3), node(P4)}),
    [wait(fun() -> pg_members(Cfg, N) =:= [P] end, ?T) || {N, P} <- [{N2, P2}, {N3, P3}, {N4, P4}]],
    ?assertEqual([], pg_members(Cfg, N1)),
    exit(Fake, kill),
    dsup_cluster:flush().

%% A name {Tag, I} whose libring owner on Ring (computed here, not asked of
%% an instance) is Owner.
owned_name(Ring, Owner, Tag) ->
    hd([N || I <- lists:seq(1, 1000), N <- [{Tag, I}], dsup_cluster:ring_owner(Ring, N) =:= Owner]).

instance_pid(Cfg, D) ->
    hd([P || P <- pg:get_members(?config(scope, Cfg), '$dsup_hosts'), node(P) =:= D]).

async_start(Cfg, Via, CN) ->
    Self = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  R = (catch sup(Cfg, Via, {start_child, {counter, [{name, CN}]}, Via}, 20000)),
                  Self ! {Ref, R}
          end),
    Ref.

async_result(Ref) -> async_result(Ref, ?T).
async_result(Ref, T) ->
    receive {Ref, R} -> R after T -> timeout end.

recv_reserve(CN) ->
    receive {'$dsup', {reserve, CN, Tag, Inst}} -> {Tag, Inst}
    after ?T -> ct:fail({no_reserve, CN})
    end.

recv_reserve_reply(CN, Tag) ->
    receive {'$dsup', {reserve_reply, CN, Tag, _, R}} -> R
    after ?T -> ct:fail({no_reserve_reply, CN})
    end.
