%%% Batch starts: {start_children_here, [{Name, SpecMap}]} against 3 real
%%% dsup-nodes (README "Wire API"). The CT node plays the caller the shim
%%% is: it groups the specs by owner with its own libring reference
%%% (dsup_cluster:ring_owner/2, erlang:phash2 in this VM, not the C ring),
%%% sends one request per owner in parallel and checks that each answers once
%%% for its group, per child, in input order. It also runs the pg scope
%%% Name.Scope, so that it sees the registry as any observer does.
%%% {start_children, [Spec]} sent to ONE C instance, which places and groups
%%% the specs itself, is checked against the same reference.
-module(dsup_batch_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 15000).

suite() -> [{timetrap, {seconds, 120}}].

all() ->
    [batch_of_1000_over_3_hosts,
     batch_reports_duplicates_unknown_and_bad_specs_per_child,
     batch_to_a_non_owner_waits_for_the_arbiters,
     batch_announced_in_one_message_per_observer,
     start_children_of_1000_placed_by_one_instance,
     start_children_reports_errors_per_slot,
     start_children_answers_nodedown_for_an_owner_killed_mid_flight].

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_Config) -> ok.

init_per_testcase(_TC, Config) ->
    Name = dsup_test:unique_name(dsup_batch),
    Scope = dsup_cluster:scope_of(Name),
    _ = dsup_cluster:start_beam_scope(node(), Scope),
    Hs = start_nodes(3, [], []),
    Nodes = [maps:get(node, H) || H <- Hs],
    Cfg = [{name, Name}, {scope, Scope}, {handles, Hs}, {nodes, Nodes} | Config],
    [{ok, _} = dsup_cluster:call(N, {start_supervisor, Name, []}) || N <- Nodes],
    Want = lists:sort(Nodes),
    wait(fun() -> lists:all(fun(N) -> lists:sort(sup(Cfg, N, nodes)) =:= Want end, Nodes) end),
    Cfg.

start_nodes(0, _, Acc) -> lists:reverse(Acc);
start_nodes(N, Connect, Acc) ->
    H = dsup_cluster:start_c(#{name => batch, connect => Connect}),
    start_nodes(N - 1, [maps:get(node, H) | Connect], [H | Acc]).

end_per_testcase(_TC, Config) ->
    dsup_cluster:stop_all_c(?config(handles, Config)),
    dsup_cluster:stop_beam_scope(node(), ?config(scope, Config)),
    ok.

%% ------------------------------------------------------------------ helpers

sup(Cfg, Node, Msg) -> dsup_cluster:sup(?config(name, Cfg), Node, Msg, ?T).

wait(Fun) ->
    try dsup_test:wait_until(Fun, ?T, 20)
    catch error:{wait_until_timeout, _, Last} -> ct:fail({timeout_ms, ?T, Last})
    end.

%% The wire spec the shim sends for {counter, [{name, Name}, {value, V}]}.
wire(Name, Type, V) ->
    #{id => Name, start => {Type, start_link, [[{value, V}]]}, args => [{value, V}],
      restart => permanent, shutdown => 5000}.

%% Group {Name, Wire} by the reference owner, one call per owner in
%% parallel: the results in input order, each with the node asked.
batch(Cfg, Items) ->
    Ring = dsup_cluster:ring(?config(nodes, Cfg)),
    batch_via(Cfg, Items, fun({N, _}) -> dsup_cluster:ring_owner(Ring, N) end).

batch_via(Cfg, Items, OwnerOf) ->
    Indexed = lists:zip(lists:seq(1, length(Items)), Items),
    Groups = maps:groups_from_list(fun({_, It}) -> OwnerOf(It) end, Indexed),
    Self = self(),
    Refs = [begin
                Ref = make_ref(),
                spawn_link(fun() ->
                                   Rs = sup(Cfg, Owner, {start_children_here, [It || {_, It} <- G]}),
                                   Self ! {Ref, Owner, G, Rs}
                           end),
                Ref
            end || {Owner, G} <- maps:to_list(Groups)],
    Got = lists:append([receive
                            {Ref, Owner, G, Rs} ->
                                ?assertEqual(length(G), length(Rs)),
                                [{I, {Owner, R}} || {{I, _}, R} <- lists:zip(G, Rs)]
                        after ?T -> ct:fail(no_batch_reply)
                        end || Ref <- Refs]),
    [R || {_, R} <- lists:keysort(1, Got)].

pg_members(Cfg, Name) -> pg:get_members(?config(scope, Cfg), Name).

%% ------------------------------------------------------------------ cases

%% 1,000 counters over 3 hosts: 1,000 results in input order, each child on
%% its reference owner, in this node's pg (an observer), known to every
%% instance, and callable.
batch_of_1000_over_3_hosts(Cfg) ->
    Nodes = ?config(nodes, Cfg),
    Ring = dsup_cluster:ring(Nodes),
    Names = [{b, I} || I <- lists:seq(1, 1000)],
    Items = [{N, wire(N, counter, I)} || {b, I} = N <- Names],
    T0 = erlang:monotonic_time(microsecond),
    Rs = batch(Cfg, Items),
    ?assertEqual(1000, length(Rs)),
    Pids = [begin
                ?assertMatch({_, {ok, _, N}}, {N, R}),
                {ok, Pid, N} = R,
                ?assertEqual({N, dsup_cluster:ring_owner(Ring, N)}, {N, node(Pid)}),
                ?assertEqual(Owner, node(Pid)),
                Pid
            end || {N, {Owner, R}} <- lists:zip(Names, Rs)],
    wait(fun() -> lists:all(fun({N, P}) -> pg_members(Cfg, N) =:= [P] end, lists:zip(Names, Pids)) end),
    ct:log("1,000 children started and in an observer's pg in ~b us",
           [erlang:monotonic_time(microsecond) - T0]),
    [wait(fun() -> proplists:get_value(active, sup(Cfg, N, count_children)) =:= 1000 end) || N <- Nodes],
    %% whereis from each instance (two of them observers of any one child)
    [?assertEqual(P, sup(Cfg, lists:nth(1 + I rem 3, Nodes), {whereis, N}))
     || {I, N, P} <- lists:zip3(lists:seq(1, 1000), Names, Pids), I rem 10 =:= 0],
    [?assertEqual(I, gen_server:call(P, get, ?T)) || {{b, I}, P} <- lists:zip(Names, Pids)],
    %% the spread is the ring's: every host got some
    Spread = [{Nd, length([x || P <- Pids, node(P) =:= Nd])} || Nd <- Nodes],
    ct:log("spread ~p", [Spread]),
    [?assert(C > 0) || {_, C} <- Spread].

%% Per-child errors in their slots, the other children started: a name twice
%% in one batch, a name already running, an unknown type, bad specs.
batch_reports_duplicates_unknown_and_bad_specs_per_child(Cfg) ->
    [A | _] = Nodes = ?config(nodes, Cfg),
    Ring = dsup_cluster:ring(Nodes),
    %% names owned by A, so that the whole batch is one request to A
    [N1, N2, Old] = lists:sublist([{d, I} || I <- lists:seq(1, 200),
                                             dsup_cluster:ring_owner(Ring, {d, I}) =:= A], 3),
    {ok, OldPid, Old} = sup(Cfg, A, {start_child, {counter, [{name, Old}]}, undefined}),
    Items = [{N1, wire(N1, counter, 1)},
             {N1, wire(N1, counter, 2)},                    % twice in the batch
             {Old, wire(Old, counter, 3)},                  % already running
             {{d, nope}, wire({d, nope}, no_such_type, 4)}, % unknown type
             {{d, bad}, #{start => 42}},                    % bad spec
             not_a_pair,                                    % bad element
             {N2, wire(N2, counter, 5)}],
    Rs = sup(Cfg, A, {start_children_here, Items}),
    ct:log("~p", [Rs]),
    [R1, R2, R3, R4, R5, R6, R7] = Rs,
    ?assertMatch({ok, _, N1}, R1),
    {ok, P1, N1} = R1,
    ?assertEqual({error, {already_started, P1}}, R2),
    ?assertEqual({error, {already_started, OldPid}}, R3),
    ?assertEqual({error, {unknown_worker, no_such_type}}, R4),
    ?assertEqual({error, {incorrect_spec, #{start => 42}}}, R5),
    ?assertEqual({error, {incorrect_spec, not_a_pair}}, R6),
    ?assertMatch({ok, _, N2}, R7),
    {ok, P2, N2} = R7,
    ?assertEqual(1, gen_server:call(P1, get, ?T)),
    ?assertEqual(5, gen_server:call(P2, get, ?T)),
    wait(fun() -> pg_members(Cfg, N1) =:= [P1] andalso pg_members(Cfg, N2) =:= [P2] end),
    [wait(fun() -> sup(Cfg, N, {whereis, {d, nope}}) =:= undefined andalso
                       proplists:get_value(active, sup(Cfg, N, count_children)) =:= 3 end)
     || N <- Nodes],
    %% not a list at all
    ?assertEqual({error, {incorrect_spec, nope}}, sup(Cfg, A, {start_children_here, nope})),
    ?assertEqual([], sup(Cfg, A, {start_children_here, []})).

%% A batch asked of a host that owns none of its names: each start waits for
%% its arbiter (the owner) and runs here, as start_child_here does; the one
%% reply still comes once, in order, with a name already running on its
%% owner refused.
batch_to_a_non_owner_waits_for_the_arbiters(Cfg) ->
    [A, B, C] = Nodes = ?config(nodes, Cfg),
    Ring = dsup_cluster:ring(Nodes),
    NotA = [{w, I} || I <- lists:seq(1, 300), dsup_cluster:ring_owner(Ring, {w, I}) =/= A],
    [Taken | Free] = lists:sublist(NotA, 21),
    {ok, TakenPid, Taken} = sup(Cfg, B, {start_child, {counter, [{name, Taken}]}, undefined}),
    wait(fun() -> sup(Cfg, A, {whereis, Taken}) =:= TakenPid end),
    Mine = hd([{w, I} || I <- lists:seq(301, 600), dsup_cluster:ring_owner(Ring, {w, I}) =:= A]),
    Names = Free ++ [Taken, Mine],
    Rs = sup(Cfg, A, {start_children_here, [{N, wire(N, counter, 7)} || N <- Names]}),
    ?assertEqual(length(Names), length(Rs)),
    {RsFree, [RTaken, RMine]} = lists:split(length(Free), Rs),
    [begin
         ?assertMatch({ok, _, N}, R),
         ?assertEqual(A, node(element(2, R)))
     end || {N, R} <- lists:zip(Free, RsFree)],
    ?assertEqual({error, {already_started, TakenPid}}, RTaken),
    ?assertMatch({ok, _, Mine}, RMine),
    [wait(fun() -> sup(Cfg, N, {whereis, Nm}) =:= element(2, R) end)
     || N <- [B, C], {Nm, R} <- lists:zip(Free ++ [Mine], RsFree ++ [RMine])].

%% Observers learn of a batch's children in one children_up message per
%% host, not one child_up per child: a process of this node joins the
%% observers' group of the scope and counts what each host sends.
batch_announced_in_one_message_per_observer(Cfg) ->
    Nodes = ?config(nodes, Cfg),
    Scope = ?config(scope, Cfg),
    Self = self(),
    Obs = spawn_link(fun() -> observe(Self, []) end),
    ok = pg:join(Scope, '$dsup_observers', Obs),
    %% every host saw it join, and greeted it with a snapshot: let those pass
    wait(fun() -> Obs ! {count, self()},
                  receive {counted, L} -> lists:usort([N || {N, snapshot, _} <- L]) =:= lists:sort(Nodes) end
         end),
    Obs ! {reset, self()},
    receive reset -> ok end,
    Names = [{o, I} || I <- lists:seq(1, 300)],
    Rs = batch(Cfg, [{N, wire(N, counter, 0)} || N <- Names]),
    [?assertMatch({_, {ok, _, _}}, R) || R <- Rs],
    Owners = lists:usort([O || {O, _} <- Rs]),
    wait(fun() ->
                 Obs ! {count, self()},
                 receive {counted, L} ->
                         Ups = [{From, length(Cs)} || {From, children_up, Cs} <- L],
                         length(Ups) =:= length(Owners) orelse {got, L}
                 end
         end),
    Obs ! {count, self()},
    L = receive {counted, X} -> X end,
    ct:log("observer got ~p", [[{F, K, length(Cs)} || {F, K, Cs} <- L]]),
    ?assertEqual([], [E || {_, child_up, _} = E <- L]),
    ?assertEqual(300, lists:sum([length(Cs) || {_, children_up, Cs} <- L])),
    ?assertEqual(lists:sort(Owners), lists:sort([F || {F, children_up, _} <- L])),
    Got = lists:sort([{Nm, P} || {_, children_up, Cs} <- L, {Nm, P, _Spec} <- Cs]),
    ?assertEqual(lists:sort([{Nm, P} || {_, {ok, P, Nm}} <- Rs]), Got).

%% ------------------------------------------ start_children (placed by the instance)

%% 1,000 specs in ONE call to one instance of 3: 1,000 results in input
%% order, each child on its reference owner, callable, in an observer's pg;
%% the owners each started their group as one batch (one children_up per
%% owner reached an observer, no child_up).
start_children_of_1000_placed_by_one_instance(Cfg) ->
    [A | _] = Nodes = ?config(nodes, Cfg),
    Ring = dsup_cluster:ring(Nodes),
    Obs = observer(Cfg),
    Names = [{s, I} || I <- lists:seq(1, 1000)],
    Specs = [{counter, [{name, N}, {value, I}]} || {s, I} = N <- Names],
    T0 = erlang:monotonic_time(microsecond),
    Rs = sup(Cfg, A, {start_children, Specs}),
    ct:log("1,000 specs placed and started by one instance in ~b us",
           [erlang:monotonic_time(microsecond) - T0]),
    ?assertEqual(1000, length(Rs)),
    Pids = [begin
                ?assertMatch({_, {ok, _, N}}, {N, R}),
                {ok, Pid, N} = R,
                ?assertEqual({N, dsup_cluster:ring_owner(Ring, N)}, {N, node(Pid)}),
                Pid
            end || {N, R} <- lists:zip(Names, Rs)],
    wait(fun() -> lists:all(fun({N, P}) -> pg_members(Cfg, N) =:= [P] end, lists:zip(Names, Pids)) end),
    [?assertEqual(I, gen_server:call(P, get, ?T)) || {{s, I}, P} <- lists:zip(Names, Pids)],
    Spread = [{Nd, length([x || P <- Pids, node(P) =:= Nd])} || Nd <- Nodes],
    ct:log("spread ~p", [Spread]),
    [?assert(C > 0) || {_, C} <- Spread],
    [wait(fun() -> proplists:get_value(active, sup(Cfg, N, count_children)) =:= 1000 end) || N <- Nodes],
    wait(fun() -> length([x || {_, children_up, _} <- observed(Obs)]) =:= 3 end),
    L = observed(Obs),
    ?assertEqual([], [E || {_, child_up, _} = E <- L]),
    ?assertEqual(lists:sort(Nodes), lists:sort([F || {F, children_up, _} <- L])),
    ?assertEqual(lists:sort(lists:zip(Names, Pids)),
                 lists:sort([{Nm, P} || {_, children_up, Cs} <- L, {Nm, P, _} <- Cs])).

%% Per-slot errors beside started children, in one call to A, the specs
%% owned by all three hosts: a name twice in the batch (owned here and owned
%% elsewhere), a name already running, an unknown type, bad specs; a
%% map spec and a spec without a name are placed as start_child places them.
start_children_reports_errors_per_slot(Cfg) ->
    [A, B, C] = Nodes = ?config(nodes, Cfg),
    Ring = dsup_cluster:ring(Nodes),
    Owned = fun(Nd, Skip) ->
                    lists:nth(Skip, [{e, I} || I <- lists:seq(1, 300), dsup_cluster:ring_owner(Ring, {e, I}) =:= Nd])
            end,
    [NA, NB, NC, Old, NMap] = [Owned(A, 1), Owned(B, 1), Owned(C, 1), Owned(B, 2), Owned(C, 2)],
    {ok, OldPid, Old} = sup(Cfg, B, {start_child, {counter, [{name, Old}]}, undefined}),
    wait(fun() -> sup(Cfg, A, {whereis, Old}) =:= OldPid end),
    Specs = [{counter, [{name, NA}, {value, 1}]},
             {counter, [{name, NB}, {value, 2}]},
             {counter, [{name, NA}, {value, 3}]},          % twice, owned here
             {counter, [{name, NB}, {value, 4}]},          % twice, owned by B
             {counter, [{name, Old}]},                     % already running
             {no_such_type, [{name, {e, nope}}]},          % no host runs it
             42,                                           % bad spec
             #{start => 42},                               % bad spec
             {counter, [{name, NC}, {value, 5}]},
             #{id => x, start => {counter, start_link, [{name, NMap}, {value, 6}]}},
             {counter, [{value, 7}]}],                     % no name: a ref
    Rs = sup(Cfg, A, {start_children, Specs}),
    ct:log("~p", [Rs]),
    [R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, R11] = Rs,
    {ok, PA, NA} = R1,
    {ok, PB, NB} = R2,
    ?assertEqual({A, B}, {node(PA), node(PB)}),
    ?assertEqual({error, {already_started, PA}}, R3),
    ?assertEqual({error, {already_started, PB}}, R4),
    ?assertEqual({error, {already_started, OldPid}}, R5),
    ?assertEqual({error, {unknown_worker, no_such_type}}, R6),
    ?assertEqual({error, {incorrect_spec, 42}}, R7),
    ?assertEqual({error, {incorrect_spec, #{start => 42}}}, R8),
    {ok, PC, NC} = R9,
    ?assertEqual(C, node(PC)),
    {ok, PM, NMap} = R10,
    ?assertEqual(C, node(PM)),
    {ok, PR, Ref} = R11,
    ?assert(is_reference(Ref)),
    ?assertEqual(dsup_cluster:ring_owner(Ring, Ref), node(PR)),
    ?assertEqual([1, 2, 5, 6, 7], [gen_server:call(P, get, ?T) || P <- [PA, PB, PC, PM, PR]]),
    [wait(fun() -> sup(Cfg, N, {whereis, {e, nope}}) =:= undefined andalso
                       proplists:get_value(active, sup(Cfg, N, count_children)) =:= 6 end)
     || N <- Nodes],
    ?assertEqual({error, {incorrect_spec, nope}}, sup(Cfg, A, {start_children, nope})),
    ?assertEqual([], sup(Cfg, A, {start_children, []})).

%% The owner of a group is frozen (SIGSTOP) when the batch arrives, and
%% killed once A has forwarded to it: A answers the call (it never blocks on
%% the owner), that owner's slots {error, {nodedown, B}}, the rest started.
start_children_answers_nodedown_for_an_owner_killed_mid_flight(Cfg) ->
    [A, B, _C] = Nodes = ?config(nodes, Cfg),
    [_, HB, _] = ?config(handles, Cfg),
    Ring = dsup_cluster:ring(Nodes),
    Names = [{k, I} || I <- lists:seq(1, 60)],
    ok = dsup_test:signal_node(HB, "STOP"),
    Self = self(),
    Caller = spawn_link(fun() ->
                                Self ! {started, sup(Cfg, A, {start_children,
                                                              [{counter, [{name, N}]} || N <- Names]})}
                        end),
    %% B's group forwarded and not answered; C's answered
    wait(fun() -> maps:get(pending, maps:from_list(sup(Cfg, A, status))) =:= 1 end),
    {exited, _} = dsup_cluster:kill_c(HB),
    Rs = receive {started, X} -> X after ?T -> ct:fail({start_children_not_answered, Caller}) end,
    ?assertEqual(length(Names), length(Rs)),
    Owners = [dsup_cluster:ring_owner(Ring, N) || N <- Names],
    ?assert(lists:member(B, Owners)),
    [case Owner of
         B -> ?assertEqual({N, {error, {nodedown, B}}}, {N, R});
         _ -> ?assertMatch({N, {ok, P, N}} when node(P) =:= Owner, {N, R})
     end || {N, Owner, R} <- lists:zip3(Names, Owners, Rs)],
    ?assertEqual(0, maps:get(pending, maps:from_list(sup(Cfg, A, status)))).

%% A process of this node in the observers' group, past the hosts' snapshots.
observer(Cfg) ->
    Nodes = ?config(nodes, Cfg),
    Self = self(),
    Obs = spawn_link(fun() -> observe(Self, []) end),
    ok = pg:join(?config(scope, Cfg), '$dsup_observers', Obs),
    wait(fun() -> lists:usort([N || {N, snapshot, _} <- observed(Obs)]) =:= lists:sort(Nodes) end),
    Obs ! {reset, self()},
    receive reset -> ok end,
    Obs.

observed(Obs) ->
    Obs ! {count, self()},
    receive {counted, L} -> L end.

observe(Parent, Acc) ->
    receive
        {'$dsup', {children_up, Cs}} -> observe(Parent, [{node_of(Cs), children_up, Cs} | Acc]);
        {'$dsup', {child_up, N, P, S}} -> observe(Parent, [{node(P), child_up, [{N, P, S}]} | Acc]);
        {'$dsup', {snapshot, Node, Cs}} -> observe(Parent, [{Node, snapshot, Cs} | Acc]);
        {count, From} -> From ! {counted, lists:reverse(Acc)}, observe(Parent, Acc);
        {reset, From} -> From ! reset, observe(Parent, []);
        _ -> observe(Parent, Acc)
    end.

node_of([{_, P, _} | _]) -> node(P);
node_of([]) -> none.
