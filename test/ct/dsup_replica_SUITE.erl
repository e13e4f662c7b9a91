%%% dsup_replica_SUITE: child specs kept on k ring successors (README
%%% "Partitions and failures", "How instances cooperate").
%%%
%%% Four C hosts; each child's spec must be on its host and on the next k
%%% distinct hosts clockwise from its name's point, nowhere else (the others
%%% keep a stub). The reference is libring's ring computed here from
%%% erlang:phash2, never by the code under test. Then hosts are killed with
%%% SIGKILL: each orphan must come back once, on its libring owner among the
%%% survivors, while at most k hosts die at once; with k = 1 and two adjacent
%%% hosts killed, the children nobody can restore must be logged by name.
-module(dsup_replica_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([specs_on_k_successors_failover_once/1, batch_start_keeps_replicas/1,
         joining_host_gets_its_replicas/1,
         k1_adjacent_losses_logged/1,
         cli_replicas_key/1]).

-define(T, 30000).
-define(N_CHILDREN, 2000).

suite() -> [{timetrap, {seconds, 240}}].

all() -> [specs_on_k_successors_failover_once, batch_start_keeps_replicas, joining_host_gets_its_replicas,
          k1_adjacent_losses_logged, cli_replicas_key].

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_Config) -> ok.

init_per_testcase(TC, Config) ->
    Name = dsup_test:unique_name(dsup_repl),
    Scope = dsup_cluster:scope_of(Name),
    _ = dsup_cluster:start_beam_scope(node(), Scope),
    Hs = start_nodes(case TC of cli_replicas_key -> 0; _ -> 4 end, [], []),
    [{name, Name}, {scope, Scope}, {handles, Hs} | Config].

end_per_testcase(_TC, Config) ->
    Hs = ?config(handles, Config),
    dsup_cluster:stop_all_c(Hs),
    San = [L || H <- Hs, L <- dsup_node_SUITE:sanitizer_lines(maps:get(log, H))],
    dsup_cluster:stop_beam_scope(node(), ?config(scope, Config)),
    case San of
        [] -> ok;
        _ -> {fail, {sanitizer_report, San}}
    end.

start_nodes(0, _, Acc) -> lists:reverse(Acc);
start_nodes(N, Connect, Acc) ->
    H = dsup_cluster:start_c(#{name => repl, connect => Connect}),
    start_nodes(N - 1, [maps:get(node, H) | Connect], [H | Acc]).

%% ------------------------------------------------------------------ cases

%% 4 hosts, k = 2, 2,000 children: each host keeps the specs of exactly the
%% children it is a replica of (about (k+1)/4 of them with its own). Kill -9
%% one host: every orphan once on its owner among the 3 survivors, the
%% others untouched, and the replicas move so that each survivor holds every
%% spec again (k+1 = 3 hosts). Then kill two hosts at once: the last one
%% runs all 2,000.
specs_on_k_successors_failover_once(Cfg) ->
    K = 2,
    Hs = ?config(handles, Cfg),
    Nodes = [maps:get(node, H) || H <- Hs],
    start_sup_everywhere(Cfg, Nodes, [{replicas, K}]),
    Names = [child_name(I) || I <- lists:seq(1, ?N_CHILDREN)],
    T0 = erlang:monotonic_time(),
    populate(Cfg, Nodes, Names),
    ct:log("started ~b children in ~b ms", [length(Names), dsup_test:elapsed_ms(T0)]),
    Ring = dsup_cluster:ring(Nodes),
    %% started on their owners: the host is the first node clockwise
    Pids0 = wait_placed(Cfg, Names, Ring),
    check_replicas(Cfg, Nodes, K, Ring, Names),

    %% one host killed
    [Victim | _] = Nodes,
    Survivors = Nodes -- [Victim],
    Orphans = [N || N <- Names, node(maps:get(N, Pids0)) =:= Victim],
    ct:log("killing ~s: ~b orphans", [Victim, length(Orphans)]),
    T1 = erlang:monotonic_time(),
    {exited, _} = dsup_cluster:kill_c(hd(Hs)),
    wait_ring(Cfg, Survivors),
    Ring1 = ring_without(Nodes, [Victim]),
    Pids1 = wait_placed(Cfg, Names, Ring1),
    ct:log("every orphan back in ~b ms", [dsup_test:elapsed_ms(T1)]),
    %% the others were not restarted; each orphan once (one pg member, a new pid)
    ?assertEqual([], [N || N <- Names -- Orphans, maps:get(N, Pids1) =/= maps:get(N, Pids0)]),
    ?assertEqual([], [N || N <- Orphans, maps:get(N, Pids1) =:= maps:get(N, Pids0)]),
    check_replicas(Cfg, Survivors, K, Ring1, Names),
    [?assertMatch(#{local := L, specs := S, stubs := 0} when L + S =:= ?N_CHILDREN,
                  info(Cfg, N)) || N <- Survivors],

    %% two hosts killed at once: none lost (k = 2)
    [V2, V3, Last] = Survivors,
    T2 = erlang:monotonic_time(),
    kill_at_once([H || H <- Hs, lists:member(maps:get(node, H), [V2, V3])]),
    wait_ring(Cfg, [Last]),
    _ = wait_placed(Cfg, Names, ring_without(Nodes, [Victim, V2, V3])),
    ct:log("two hosts killed at once: all ~b children on ~s in ~b ms",
           [length(Names), Last, dsup_test:elapsed_ms(T2)]),
    ?assertMatch(#{local := ?N_CHILDREN}, info(Cfg, Last)),
    {comment, dsup_cluster:fmt("~b orphans after one kill; 0 lost after two at once", [length(Orphans)])}.

%% The same placement when the children come in batch starts (one
%% children_up per batch and receiver, each child's spec in the form that
%% receiver gets): 4 hosts, k = 2, 2,000 children sent as one
%% start_children_here per owner; each host's counts equal the reference,
%% and a kill -9 of one host brings every orphan back once on its owner.
batch_start_keeps_replicas(Cfg) ->
    K = 2,
    Hs = ?config(handles, Cfg),
    Nodes = [maps:get(node, H) || H <- Hs],
    start_sup_everywhere(Cfg, Nodes, [{replicas, K}]),
    Names = [child_name(I) || I <- lists:seq(1, ?N_CHILDREN)],
    Ring = dsup_cluster:ring(Nodes),
    Groups = maps:groups_from_list(fun(N) -> dsup_cluster:ring_owner(Ring, N) end, Names),
    maps:foreach(fun(Owner, Ns) ->
                         Items = [{N, #{id => N, start => {counter, start_link, [[]]}, args => [],
                                        restart => permanent, shutdown => 5000}} || N <- Ns],
                         Rs = sup(Cfg, Owner, {start_children_here, Items}),
                         ?assertEqual(length(Ns), length([ok || {ok, _, _} <- Rs]))
                 end, Groups),
    Pids0 = wait_placed(Cfg, Names, Ring),
    check_replicas(Cfg, Nodes, K, Ring, Names),
    [Victim | _] = Nodes,
    Orphans = [N || N <- Names, node(maps:get(N, Pids0)) =:= Victim],
    {exited, _} = dsup_cluster:kill_c(hd(Hs)),
    wait_ring(Cfg, Nodes -- [Victim]),
    Pids1 = wait_placed(Cfg, Names, ring_without(Nodes, [Victim])),
    ?assertEqual([], [N || N <- Names -- Orphans, maps:get(N, Pids1) =/= maps:get(N, Pids0)]),
    ?assertEqual([], [N || N <- Orphans, maps:get(N, Pids1) =:= maps:get(N, Pids0)]),
    {comment, dsup_cluster:fmt("~b children in ~b batches; ~b orphans back once",
                               [length(Names), maps:size(Groups), length(Orphans)])}.

%% 3 hosts, k = 1, 600 children, then a fourth host joins (no rebalance:
%% the children stay where they run): it receives the specs it is now a
%% replica of, the hosts it displaced let theirs go, and each host's counts
%% equal the reference (replicas: the first k nodes clockwise on the 4-node
%% ring other than the child's host). Then the host of the most children
%% is killed: each orphan runs again on its owner among the survivors,
%% the new host included, none lost.
joining_host_gets_its_replicas(Cfg) ->
    K = 1,
    Hs = ?config(handles, Cfg),
    Nodes = [maps:get(node, H) || H <- Hs],
    [N1, N2, N3, New] = Nodes,
    start_sup_everywhere(Cfg, [N1, N2, N3], [{replicas, K}]),
    Names = [child_name(I) || I <- lists:seq(1, 600)],
    populate(Cfg, [N1, N2, N3], Names),
    Ring3 = dsup_cluster:ring([N1, N2, N3]),
    Pids0 = wait_placed(Cfg, Names, Ring3),
    check_replicas(Cfg, [N1, N2, N3], K, Ring3, Names),
    {ok, _} = dsup_cluster:call(New, {start_supervisor, ?config(name, Cfg), [{replicas, K}]}),
    wait_ring(Cfg, Nodes),
    Ring4 = dsup_cluster:ring(Nodes),
    Host = maps:from_list([{N, node(P)} || {N, P} <- maps:to_list(Pids0)]),
    Reps = [{N, lists:sublist([X || X <- successors(Ring4, N, 4), X =/= maps:get(N, Host)], K)} || N <- Names],
    Want = maps:from_list([{H, #{local => length([N || N <- Names, maps:get(N, Host) =:= H]),
                                 specs => length([N || {N, R} <- Reps, lists:member(H, R)])}}
                           || H <- Nodes]),
    Moved = length([N || {N, R} <- Reps, R =/= lists:sublist(tl(successors(Ring3, N, 2)), K)]),
    ct:log("~b children have a new replica; want ~p", [Moved, Want]),
    ?assert(Moved > 0),
    wait(fun() ->
                 Got = maps:from_list([{H, maps:with([local, specs], info(Cfg, H))} || H <- Nodes]),
                 Idle = lists:all(fun(H) -> maps:get(pass_active, info(Cfg, H)) =:= false end, Nodes),
                 (Idle andalso Got =:= Want) orelse {got, Got}
         end),
    %% the children did not move
    ?assertEqual(Pids0, maps:from_list([{N, hd(pg:get_members(?config(scope, Cfg), N))} || N <- Names])),
    %% kill the host of the most children: each orphan on its owner among the survivors
    {_, Victim} = lists:max([{maps:get(local, W), H} || {H, W} <- maps:to_list(Want)]),
    Orphans = [N || N <- Names, maps:get(N, Host) =:= Victim],
    Ring5 = ring_without(Nodes, [Victim]),
    ToNew = [N || N <- Orphans, dsup_cluster:ring_owner(Ring5, N) =:= New],
    ct:log("killing ~s: ~b orphans, ~b of them now owned by the new host", [Victim, length(Orphans), length(ToNew)]),
    {exited, _} = dsup_cluster:kill_c(hd([H || H <- Hs, maps:get(node, H) =:= Victim])),
    wait_ring(Cfg, Nodes -- [Victim]),
    %% the others stay where they run; the orphans go to their owners
    Scope = ?config(scope, Cfg),
    wait(fun() ->
                 Bad = [N || N <- Orphans, Ms <- [pg:get_members(Scope, N)],
                             not (length(Ms) =:= 1 andalso node(hd(Ms)) =:= dsup_cluster:ring_owner(Ring5, N))]
                     ++ [N || N <- Names -- Orphans, pg:get_members(Scope, N) =/= [maps:get(N, Pids0)]],
                 Bad =:= [] orelse {length(Bad), lists:sublist(Bad, 3)}
         end),
    {comment, dsup_cluster:fmt("~b replicas moved to the new host; ~b orphans, ~b on the new host",
                               [Moved, length(Orphans), length(ToNew)])}.

%% k = 1, two adjacent hosts killed at once: a child whose host and only
%% replica both died cannot come back; the survivor that owns its name now
%% logs it (warning, by name); every other orphan comes back once.
k1_adjacent_losses_logged(Cfg) ->
    K = 1,
    Hs = ?config(handles, Cfg),
    Nodes = [maps:get(node, H) || H <- Hs],
    start_sup_everywhere(Cfg, Nodes, [{replicas, K}]),
    Names = [child_name(I) || I <- lists:seq(1, 300)],
    populate(Cfg, Nodes, Names),
    Ring = dsup_cluster:ring(Nodes),
    _ = wait_placed(Cfg, Names, Ring),
    check_replicas(Cfg, Nodes, K, Ring, Names),
    %% the pair of hosts that are host and replica of the most children
    Pairs = [{A, B} || A <- Nodes, B <- Nodes, A < B],
    LostOf = fun({A, B}) -> [N || N <- Names, lists:sort(successors(Ring, N, K + 1)) =:= [A, B]] end,
    {_, {A, B} = Pair} = lists:max([{length(LostOf(P)), P} || P <- Pairs]),
    Lost = LostOf(Pair),
    ?assert(Lost =/= []),
    Survivors = Nodes -- [A, B],
    ct:log("killing ~s and ~s: ~b children have both copies there", [A, B, length(Lost)]),
    kill_at_once([H || H <- Hs, lists:member(maps:get(node, H), [A, B])]),
    wait_ring(Cfg, Survivors),
    Ring1 = ring_without(Nodes, [A, B]),
    _ = wait_placed(Cfg, Names -- Lost, Ring1),
    %% each lost child: logged once, by its owner among the survivors
    LogOf = fun(N) -> [H || H <- Hs, maps:get(node, H) =:= N] end,
    Want = lists:sort([{dsup_cluster:ring_owner(Ring1, N), N} || N <- Lost]),
    Got = fun() ->
                  lists:sort([{S, N} || S <- Survivors, [H] <- [LogOf(S)], Line <- lost_lines(H),
                                        N <- Lost, string:find(Line, name_text(N)) =/= nomatch])
          end,
    case catch dsup_test:wait_until(fun() -> Got() =:= Want end, ?T, 100) of
        ok -> ok;
        _ ->
            Missing = Want -- Got(),
            ct:log("not logged: ~p~nrunning: ~p", [Missing, [{N, pg:get_members(?config(scope, Cfg), N)} || {_, N} <- Missing]]),
            ?assertEqual(Want, Got())
    end,
    [?assertEqual([], pg:get_members(?config(scope, Cfg), N)) || N <- Lost],
    {comment, dsup_cluster:fmt("~b children lost and logged, the others back", [length(Lost)])}.

%% `--supervisor NAME,replicas=K' sets k (replica_info answers it; the
%% default is 2); a K out of 1..16 exits 64 naming the option.
cli_replicas_key(Cfg) ->
    Name = ?config(name, Cfg),
    H = dsup_cluster:start_c(#{name => repl_cli, extra_args => ["--supervisor", atom_to_list(Name) ++ ",replicas=3"]}),
    try
        N = maps:get(node, H),
        ?assertMatch(#{replicas := 3, local := 0, specs := 0, stubs := 0}, dsup_cluster:sup(Name, N, replica_info)),
        {ok, _} = dsup_cluster:call(N, {start_supervisor, other_default_sup, []}),
        ?assertMatch(#{replicas := 2}, dsup_cluster:sup(other_default_sup, N, replica_info)),
        ?assertMatch({error, {bad_option, replicas}},
                     dsup_cluster:call(N, {start_supervisor, other_bad_sup, [{replicas, 0}]}))
    after
        dsup_cluster:stop_all_c([H])
    end,
    Bad = dsup_cluster:start_c(#{name => repl_cli_bad, wait => none,
                                 extra_args => ["--supervisor", "repl_bad_sup,replicas=17"]}),
    try
        {exited, St} = dsup_test:wait_exit(Bad, ?T),
        ?assertEqual(64, St),
        [Line] = dsup_test:log_tail(Bad, 10),
        ?assertMatch({match, _}, re:run(Line, "^dsup-node: --supervisor: replicas: expected an integer in 1..16"))
    after
        dsup_cluster:stop_all_c([Bad])
    end.

%% ------------------------------------------------------------------ helpers

%% SIGSTOP every node first, then SIGKILL them: none of them can act on
%% another one's death (a replica that lived a moment longer would take the
%% orphans over and hand them on, and nothing would be lost).
kill_at_once(Hs) ->
    [ok = dsup_test:signal_node(H, "STOP") || H <- Hs],
    [{exited, _} = dsup_cluster:kill_c(H) || H <- Hs],
    ok.

child_name(I) -> list_to_binary("rc" ++ integer_to_list(I)).
%% how the node's log writes a binary (c_src/wire/term_text.c)
name_text(N) -> "child #Bin<" ++ lists:join(",", [integer_to_list(B) || B <- binary_to_list(N)]) ++ "> ".

sup(Cfg, Node, Msg) -> dsup_cluster:sup(?config(name, Cfg), Node, Msg).
info(Cfg, Node) -> sup(Cfg, Node, replica_info).

start_sup_everywhere(Cfg, Nodes, Opts) ->
    [{ok, _} = dsup_cluster:call(N, {start_supervisor, ?config(name, Cfg), Opts}) || N <- Nodes],
    wait_ring(Cfg, Nodes).

wait_ring(Cfg, Nodes) ->
    Want = lists:sort(Nodes),
    wait(fun() -> [lists:sort(sup(Cfg, N, nodes)) || N <- Nodes] =:= [Want || _ <- Nodes] end).

wait(Fun) ->
    try dsup_test:wait_until(Fun, ?T, 50)
    catch error:{wait_until_timeout, _, Last} -> ct:fail({timeout_ms, ?T, Last})
    end.

%% Start every name through a random instance, 8 callers at a time.
populate(Cfg, Nodes, Names) ->
    Chunks = chunk(Names, 8),
    Self = self(),
    Ps = [spawn_link(fun() ->
                             [{ok, _, N} = sup(Cfg, lists:nth(1 + erlang:phash2(N, length(Nodes)), Nodes),
                                               {start_child, {counter, [{name, N}]}, undefined})
                              || N <- Chunk],
                             Self ! {done, self()}
                     end) || Chunk <- Chunks],
    [receive {done, P} -> ok after 60000 -> ct:fail(populate_timeout) end || P <- Ps],
    ok.

chunk(L, N) -> chunk_(L, max(1, (length(L) + N - 1) div N)).
chunk_([], _) -> [];
chunk_(L, Size) when length(L) =< Size -> [L];
chunk_(L, Size) -> {H, T} = lists:split(Size, L), [H | chunk_(T, Size)].

%% Wait until each name has exactly one pg member, on its owner in Ring;
%% returns #{Name => Pid}.
wait_placed(Cfg, Names, Ring) ->
    Scope = ?config(scope, Cfg),
    wait(fun() ->
                 Bad = [{N, Ms} || N <- Names, Ms <- [pg:get_members(Scope, N)],
                                   not (length(Ms) =:= 1 andalso
                                        node(hd(Ms)) =:= dsup_cluster:ring_owner(Ring, N))],
                 Bad =:= [] orelse {length(Bad), lists:sublist(Bad, 3)}
         end),
    maps:from_list([{N, hd(pg:get_members(Scope, N))} || N <- Names]).

ring_without(Nodes, Gone) ->
    %% the instances' rings lost these nodes; a ring built without them
    %% differs only on point collisions between nodes (none with 4 nodes:
    %% checked by the owners agreeing with pg in wait_placed)
    dsup_cluster:ring([N || N <- Nodes, not lists:member(N, Gone)]).

%% The first Count distinct nodes clockwise from Key's point.
successors(Ring, Key, Count) ->
    H = erlang:phash2(Key, 4294967295),
    Walk = [N || {_, N} <- gb_trees:to_list(Ring)],
    After = [N || {P, N} <- gb_trees:to_list(Ring), P >= H],
    distinct(After ++ Walk, Count, []).

distinct(_, 0, Acc) -> lists:reverse(Acc);
distinct([], _, Acc) -> lists:reverse(Acc);
distinct([N | T], C, Acc) ->
    case lists:member(N, Acc) of
        true -> distinct(T, C, Acc);
        false -> distinct(T, C - 1, [N | Acc])
    end.

%% Once every instance's replica pass is idle: each host's count of specs
%% of other hosts' children equals the reference (children whose first
%% K+1 nodes clockwise include it, but not as their host), and it keeps a
%% stub of every other child.
check_replicas(Cfg, Nodes, K, Ring, Names) ->
    Total = length(Names),
    Succ = [{N, successors(Ring, N, K + 1)} || N <- Names],
    Want = maps:from_list([{H, length([N || {N, [Owner | Reps]} <- Succ, Owner =/= H, lists:member(H, Reps)])}
                           || H <- Nodes]),
    Local = maps:from_list([{H, length([N || {N, [Owner | _]} <- Succ, Owner =:= H])} || H <- Nodes]),
    wait(fun() ->
                 Got = maps:from_list([{H, info(Cfg, H)} || H <- Nodes]),
                 Ok = lists:all(fun(H) ->
                                        #{local := L, specs := S, stubs := St, pass_active := P} = maps:get(H, Got),
                                        P =:= false andalso L =:= maps:get(H, Local) andalso
                                            S =:= maps:get(H, Want) andalso L + S + St =:= Total
                                end, Nodes),
                 Ok orelse {want, Want, local, Local, got, Got}
         end),
    [begin
         #{local := L, specs := S} = info(Cfg, H),
         ct:log("~s: ~b local, ~b replica specs: ~.2f of the children (k+1)/hosts = ~.2f",
                [H, L, S, (L + S) / Total, (K + 1) / length(Nodes)])
     end || H <- Nodes],
    %% `children' answers the spec where it is kept, `undefined' elsewhere
    H1 = hd(Nodes),
    Children = sup(Cfg, H1, children),
    ?assertEqual(Total, maps:size(Children)),
    #{local := L1, specs := S1} = info(Cfg, H1),
    ?assertEqual(L1 + S1, maps:size(maps:filter(fun(_, {_, Spec}) -> is_map(Spec) end, Children))),
    ok.

%% The node's log lines saying a child cannot be restored.
lost_lines(H) ->
    {ok, Bin} = file:read_file(maps:get(log, H)),
    [L || L <- string:split(binary_to_list(Bin), "\n", all), string:find(L, "cannot be restored") =/= nomatch].
