%%% Moving children with their state (issue 16, README "Moving children"),
%%% against real dsup-nodes and a real BEAM pg scope on the CT node, which
%%% reads the registry independently of the instances: pg:monitor_scope/1
%%% gives every join and leave of every name in the order this node applied
%%% them, so "never two registered copies" is checked at every event, not at
%%% sampled moments.
%%%
%%% * counter_survives_sigterm: a counter at 41 and a kv with two entries on
%%%   node A; SIGTERM A: both run on B with their state (41, the entries);
%%%   a counter type is `counter' (handoff_state), an `echo' (no callback)
%%%   moves by restart as before; the moved names' moving marks cover
%%%   their gaps (A leaves the ring only after the targets' moved_visible).
%%% * move_child_keeps_state: {move_child, Name, B} asked of either
%%%   instance: {ok, NewPid, Name} on B, state kept, the old pid gone, the
%%%   instances' caches agree; moving to the node it is on is a no-op;
%%%   unknown names and nodes are errors.
%%% * rebalance_moves_exactly_changed_owners: 1,000 counters on 2 hosts
%%%   with rebalance (3 moves in flight); a third host joins: the children
%%%   whose libring owner changed (computed here from erlang:phash2, the
%%%   ring of dsup_cluster:ring/1) and only they move, all to it, each with
%%%   its state; 4 clients on an Elixir node adding 1 to every child by
%%%   name through DistributedSupervisor.call/4 throughout get no exit (no
%%%   noproc: a call by name during a move reaches the new copy), see no
%%%   value go backwards and lose no acknowledged add; never two copies,
%%%   and every gap is covered by the name's moving mark (the order the
%%%   shim relies on: mark joins before the pid leaves, leaves after the
%%%   new pid joined, in the CT node's pg view).
%%% * move_child_concurrent_callers: 4 callers (DistributedSupervisor.call
%%%   on an Elixir node) on one counter while it moves 30 times between A
%%%   and B: no exit, values rise, final value = initial + acknowledged
%%%   adds, never two copies, the mark order holds.
%%% * checkpoint_restores_after_kill9: a counter checkpointed at 17 (then
%%%   at 22 without a checkpoint) is at 17 on the other host after its host
%%%   is killed -9; the checkpoint sat on exactly the ring successor; a
%%%   child terminated for good has its checkpoint dropped there; a counter
%%%   outside a supervisor cannot checkpoint.
%%% * rebalance_kv_1kib_rate: 1,000 kv children holding 1 KiB each, 2
%%%   hosts, a third joins (default throttle): every moved store keeps its
%%%   entry; logs moves per second (first leave to last join, CT node's
%%%   view) and the unregistered time per move (p50/p99/max).
%%% * instance_stop_hands_over: gen_server:stop of the instance on A (not
%%%   its node): the counter at 41 runs on B at 41.
%%% * rebalance_options_and_cli: bad rebalance/rebalance_moves values are
%%%   refused on the wire ({bad_option, Key}) and on the command line (exit
%%%   64 naming the key); hosts started with `--supervisor
%%%   Name,rebalance=true,rebalance_moves=2` move 40 counters' changed
%%%   owners to a joining third host, values kept.
%%% * handoff_init_sees_term_only_on_moves: a counter restarted after a
%%%   crash starts from its init args (no handoff), after a move from the
%%%   moved value.
-module(dsup_handoff_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 10000).

suite() -> [{timetrap, {seconds, 90}}].

all() ->
    [counter_survives_sigterm,
     move_child_keeps_state,
     move_child_concurrent_callers,
     rebalance_moves_exactly_changed_owners,
     rebalance_kv_1kib_rate,
     instance_stop_hands_over,
     rebalance_options_and_cli,
     handoff_init_sees_term_only_on_moves,
     checkpoint_restores_after_kill9].

init_per_suite(Config) ->
    dsup_test:require_exe(),
    %% Elixir's own ebin dirs and the shim compiled for this run: the calls
    %% by name during moves go through DistributedSupervisor.call on an
    %% Elixir node (as in dsup_heal_SUITE)
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
    Name = dsup_test:unique_name(dsup_ho),
    Scope = dsup_cluster:scope_of(Name),
    _ = dsup_cluster:start_beam_scope(node(), Scope),
    persistent_term:put({?MODULE, TC}, []),
    [{name, Name}, {scope, Scope}, {tc, TC} | Config].

end_per_testcase(TC, Config) ->
    [dsup_cluster:stop_peer(P) || P <- persistent_term:get({?MODULE, TC, peers}, [])],
    _ = persistent_term:erase({?MODULE, TC, peers}),
    dsup_cluster:stop_all_c(persistent_term:get({?MODULE, TC}, [])),
    _ = persistent_term:erase({?MODULE, TC}),
    dsup_cluster:stop_beam_scope(node(), ?config(scope, Config)),
    ok.

start_c(Cfg, Opts) ->
    H = dsup_cluster:start_c(Opts),
    K = {?MODULE, ?config(tc, Cfg)},
    persistent_term:put(K, [H | persistent_term:get(K, [])]),
    H.

%% An Elixir node (a BEAM peer with Elixir and the shim) connected to
%% Nodes, running an observer instance (host: false) of the case's name.
start_elixir(Cfg, Nodes) ->
    Caller = self(),
    Ref = make_ref(),
    Args = lists:append([["-pa", P] || P <- ?config(elixir_paths, Cfg)]),
    Holder = spawn(fun() ->
                           {Peer, Node} = dsup_test:start_peer(elixir, #{args => Args}),
                           Caller ! {Ref, Node},
                           receive {stop, From, Tag} -> dsup_test:stop_peer(Peer), From ! {Tag, ok} end
                   end),
    E = receive {Ref, N} -> N after 60000 -> ct:fail(elixir_peer_timeout) end,
    K = {?MODULE, ?config(tc, Cfg), peers},
    persistent_term:put(K, [#{node => E, holder => Holder} | persistent_term:get(K, [])]),
    {ok, _} = erpc:call(E, application, ensure_all_started, [elixir]),
    %% load this module there before clients run its funs: four spawns of
    %% one fun racing the module's first load gave one badfun (OTP 27)
    {module, ?MODULE} = erpc:call(E, code, ensure_loaded, [?MODULE]),
    [true = erpc:call(E, net_kernel, connect_node, [N]) || N <- Nodes],
    {ok, _} = erpc:call(E, 'Elixir.DistributedSupervisor', start, [[{name, name(Cfg)}, {host, false}]]),
    E.

%% ------------------------------------------------------------------ helpers

name(Cfg) -> ?config(name, Cfg).
sup(Cfg, Node, Msg) -> dsup_cluster:sup(name(Cfg), Node, Msg).

wait(Fun, T) ->
    try dsup_test:wait_until(Fun, T, 20)
    catch error:{wait_until_timeout, _, Last} -> ct:fail({timeout_ms, T, Last})
    end.

%% Two dsup-nodes A and B running the instance, both in each other's ring.
two_hosts(Cfg) -> two_hosts(Cfg, []).

two_hosts(Cfg, Opts) ->
    HA = start_c(Cfg, #{name => ho_a}),
    A = maps:get(node, HA),
    HB = start_c(Cfg, #{name => ho_b, connect => [A]}),
    B = maps:get(node, HB),
    [{ok, _} = dsup_cluster:call(N, {start_supervisor, name(Cfg), Opts}) || N <- [A, B]],
    Want = lists:sort([A, B]),
    wait(fun() -> [lists:sort(sup(Cfg, N, nodes)) || N <- [A, B]] =:= [Want, Want] end, ?T),
    {HA, A, HB, B}.

start_ok(Cfg, Via, Spec, Where) ->
    case sup(Cfg, Via, {start_child, Spec, Where}) of
        {ok, Pid, _} when is_pid(Pid) -> Pid;
        Other -> ct:fail({start_child, Spec, Where, Other})
    end.

%% The registry as the CT node's pg scope sees it, one event at a time: a
%% process that checks every join for a second live member of the group
%% and keeps the violations. watch_stop/1: {Violations, #{Group => Joins}}
%% (the join counts show the watcher saw the moves it vouches for).
watch_start(Cfg) ->
    Scope = ?config(scope, Cfg),
    Self = self(),
    W = spawn_link(fun() ->
                           {Ref, Groups} = pg:monitor_scope(Scope),
                           Self ! {watching, self()},
                           watch_loop(Ref, maps:map(fun(_, Ps) -> lists:usort(Ps) end, Groups), [], #{})
                   end),
    receive {watching, W} -> W after ?T -> ct:fail(watch_start) end.

watch_loop(Ref, G, Bad, Joins) -> watch_loop(Ref, G, Bad, Joins, #{}, [], []).

%% Left: group -> when its last member left (µs); Gaps: leave-to-join times;
%% Order: the moving-mark order the shim's call by name relies on, broken:
%% {Name, left_unmarked} (the last pid left while the name was not marked
%% moving) or {Name, mark_left_early} (the mark went while the name had no
%% pid). Only moves of types with handoff_state are marked.
watch_loop(Ref, G, Bad, Joins, Left, Gaps, Order) ->
    receive
        {Ref, join, Group, Pids} ->
            Now = lists:usort(maps:get(Group, G, []) ++ Pids),
            Bad1 = case is_reserved(Group) orelse length(Now) =< 1 of
                       true -> Bad;
                       false -> [{Group, Now} | Bad]
                   end,
            Gaps1 = case maps:take(Group, Left) of
                        {T, _} -> [erlang:monotonic_time(microsecond) - T | Gaps];
                        error -> Gaps
                    end,
            watch_loop(Ref, G#{Group => Now}, Bad1, Joins#{Group => maps:get(Group, Joins, 0) + length(Pids)},
                       maps:remove(Group, Left), Gaps1, Order);
        {Ref, leave, Group, Pids} ->
            Now = maps:get(Group, G, []) -- Pids,
            Left1 = case Now =:= [] andalso not is_reserved(Group) of
                        true -> Left#{Group => erlang:monotonic_time(microsecond)};
                        false -> Left
                    end,
            Order1 = case {Group, Now} of
                         {{'$dsup_moving', N}, []} ->
                             case maps:get(N, G, []) of
                                 [] -> [{N, mark_left_early} | Order];
                                 _ -> Order
                             end;
                         {_, []} ->
                             case is_reserved(Group) orelse maps:get({'$dsup_moving', Group}, G, []) =/= [] of
                                 true -> Order;
                                 false -> [{Group, left_unmarked} | Order]
                             end;
                         _ -> Order
                     end,
            watch_loop(Ref, G#{Group => Now}, Bad, Joins, Left1, Gaps, Order1);
        {stop, From} ->
            From ! {self(), {lists:reverse(Bad), Joins}, Gaps, lists:reverse(Order)}
    end.

%% The instances' own groups (hosts, observers, crash reports, capabilities:
%% one member per host; a name's moving mark), not child names.
is_reserved({'$dsup_type', _}) -> true;
is_reserved({'$dsup_moving', _}) -> true;
is_reserved(G) -> lists:member(G, ['$dsup_hosts', '$dsup_observers', '$dsup_crash_reports', '$dsup_beam']).

watch_stop(W) -> element(1, watch_stop_gaps(W)).

%% Also the times (µs) from a name's last member leaving to a new one
%% joining, as the CT node applied them.
watch_stop_gaps(W) ->
    {R, Gaps, _} = watch_stop_all(W),
    {R, Gaps}.

watch_stop_all(W) ->
    unlink(W),
    W ! {stop, self()},
    receive {W, R, Gaps, Order} -> {R, Gaps, Order} after ?T -> ct:fail(watch_stop) end.

pct(L, P) ->
    S = lists:sort(L),
    lists:nth(max(1, min(length(S), round(P / 100 * length(S)))), S).

%% The single pid registered for Name, once it is on Node.
pid_on(Cfg, Name, Node) ->
    {ok, P} = wait(fun() ->
                           case pg:get_members(?config(scope, Cfg), Name) of
                               [P] when node(P) =:= Node -> {true, P};
                               R -> {members, R}
                           end
                   end, ?T),
    P.

dead(P) ->
    Ref = erlang:monitor(process, P),
    receive {'DOWN', Ref, _, _, _} -> true after ?T -> false end.

%% ------------------------------------------------------------------ cases

counter_survives_sigterm(Cfg) ->
    {HA, A, _HB, B} = two_hosts(Cfg),
    W = watch_start(Cfg),
    C = start_ok(Cfg, A, {counter, [{name, cnt41}, {value, 0}]}, A),
    ?assertEqual(41, gen_server:call(C, {add, 41})),
    KV = start_ok(Cfg, A, {kv, [{name, store}]}, A),
    ok = gen_server:call(KV, {put, <<"k1">>, {some, [term, 1]}}),
    ok = gen_server:call(KV, {put, 2, <<"two">>}),
    E = start_ok(Cfg, A, {echo, [{name, plain}]}, A),
    ?assertEqual(A, node(C)),
    ?assertEqual({ok, 0}, dsup_test:stop_node(HA)),
    C2 = pid_on(Cfg, cnt41, B),
    ?assertEqual(41, gen_server:call(C2, get)),
    KV2 = pid_on(Cfg, store, B),
    ?assertEqual({ok, {some, [term, 1]}}, gen_server:call(KV2, {get, <<"k1">>})),
    ?assertEqual({ok, <<"two">>}, gen_server:call(KV2, {get, 2})),
    %% no handoff_state: restarted from its spec by the survivor's failover
    E2 = pid_on(Cfg, plain, B),
    ?assertNotEqual(E, E2),
    {{Bad, Joins}, _, Order} = watch_stop_all(W),
    ?assertEqual([], Bad),
    ?assertMatch(#{cnt41 := 2, store := 2, plain := 2}, Joins),
    %% the children moved with their state were marked moving from before
    %% their leave until after their new copy joined (A left the ring only
    %% then); the echo, moved by restart, is not marked
    ?assertEqual([{plain, left_unmarked}], Order),
    %% B's instance knows exactly these three, on B
    Kids = sup(Cfg, B, children),
    ?assertEqual([cnt41, plain, store], lists:sort(maps:keys(Kids))),
    ?assertEqual([B, B, B], [node(P) || {P, _} <- maps:values(Kids)]),
    ok.

move_child_keeps_state(Cfg) ->
    {_HA, A, _HB, B} = two_hosts(Cfg),
    W = watch_start(Cfg),
    C = start_ok(Cfg, A, {counter, [{name, mover}, {value, 5}]}, A),
    ?assertEqual(17, gen_server:call(C, {add, 12})),
    %% asked of the instance where it does NOT run: forwarded to A's (once
    %% B's instance knows the child: its child_up may still be on the way)
    wait(fun() -> sup(Cfg, B, {whereis, mover}) =:= C end, ?T),
    {ok, C2, mover} = sup(Cfg, B, {move_child, mover, B}),
    ?assertEqual(B, node(C2)),
    ?assertEqual(17, gen_server:call(C2, get)),
    ?assert(dead(C)),
    ?assertEqual([C2], pg:get_members(?config(scope, Cfg), mover)),
    %% and back, asked of the instance where it runs
    {ok, C3, mover} = sup(Cfg, B, {move_child, mover, A}),
    ?assertEqual(A, node(C3)),
    ?assertEqual(18, gen_server:call(C3, {add, 1})),
    %% to where it already is: the same pid
    ?assertEqual({ok, C3, mover}, sup(Cfg, A, {move_child, mover, A})),
    %% both caches end up with the new pid
    wait(fun() -> [element(1, maps:get(mover, sup(Cfg, N, children))) || N <- [A, B]] =:= [C3, C3] end, ?T),
    ?assertEqual({error, not_found}, sup(Cfg, A, {move_child, nosuch, B})),
    ?assertMatch({error, {no_host, 'nobody@nowhere'}}, sup(Cfg, A, {move_child, mover, 'nobody@nowhere'})),
    ?assertMatch({error, {no_host, "text"}}, sup(Cfg, A, {move_child, mover, "text"})),
    {Bad, Joins} = watch_stop(W),
    ?assertEqual([], Bad),
    ?assertMatch(#{mover := 3}, Joins),
    ok.

%% Callers hammering one counter by name (DistributedSupervisor.call on an
%% Elixir node) while it moves back and forth between A and B: no call
%% exits, every caller sees its values rise, and the final value is the
%% initial one plus every acknowledged add; never two registered pids and
%% the moving mark covers every gap.
move_child_concurrent_callers(Cfg) ->
    {_HA, A, _HB, B} = two_hosts(Cfg),
    E = start_elixir(Cfg, [A, B]),
    _ = start_ok(Cfg, A, {counter, [{name, hot}, {value, 100}]}, A),
    wait(fun() -> is_pid(erpc:call(E, 'Elixir.DistributedSupervisor', whereis, [name(Cfg), hot])) end, ?T),
    W = watch_start(Cfg),
    Clients = [client_start(E, name(Cfg), [hot]) || _ <- lists:seq(1, 4)],
    Moves = 30,
    %% each move once an add was acknowledged since the last one (the value
    %% rose): the calls run through every move, however loaded the box
    Value = fun() -> try gen_server:call(sup(Cfg, A, {whereis, hot}), get, ?T)
                     catch exit:_ -> 0 % A's table may name the old copy a moment longer
                     end
            end,
    lists:foldl(fun(I, Seen) ->
                        wait(fun() -> Value() > Seen end, ?T),
                        V = Value(),
                        To = case I rem 2 of 1 -> B; 0 -> A end,
                        {ok, P, hot} = sup(Cfg, A, {move_child, hot, To}),
                        ?assertEqual(To, node(P)),
                        V
                end, 100, lists:seq(1, Moves)),
    Results = [client_stop(C) || C <- Clients],
    Acked = lists:sum([Ack || {#{hot := {_, Ack}}, _, _, _} <- Results]),
    ct:log("~p moves; callers: ~p", [Moves, [{maps:get(hot, S, none), length(X), K} || {S, _, X, K} <- Results]]),
    ?assertEqual([], lists:append([Bad || {_, Bad, _, _} <- Results])),
    ?assertEqual([], lists:append([X || {_, _, X, _} <- Results])),
    ?assert(Acked > Moves),
    [P] = pg:get_members(?config(scope, Cfg), hot),
    ?assertEqual(100 + Acked, gen_server:call(P, get)),
    {{Dups, Joins}, _, Order} = watch_stop_all(W),
    ?assertEqual([], Dups),
    ?assertEqual([], Order),
    ?assertMatch(#{hot := Moves}, Joins),
    ok.

handoff_init_sees_term_only_on_moves(Cfg) ->
    {_HA, A, _HB, B} = two_hosts(Cfg),
    C = start_ok(Cfg, A, {counter, [{name, r}, {value, 3}]}, A),
    ?assertEqual(10, gen_server:call(C, {add, 7})),
    %% a crash restarts from the init args: 3, not 10
    ?assertMatch({'EXIT', _}, catch gen_server:call(C, {crash, boom}, 5000)),
    {ok, C2} = wait(fun() ->
                            case pg:get_members(?config(scope, Cfg), r) of
                                [P] when P =/= C -> {true, P};
                                R -> {members, R}
                            end
                    end, ?T),
    ?assertEqual(3, gen_server:call(C2, get)),
    ?assertEqual(4, gen_server:call(C2, {add, 1})),
    {ok, C3, r} = sup(Cfg, A, {move_child, r, B}),
    ?assertEqual(4, gen_server:call(C3, get)),
    ok.

%% A client on Elixir node E that, round after round until stopped, adds 1
%% to every child by name through DistributedSupervisor.call/4 (the shim's
%% call path, which waits for a moving name's new copy). It keeps, per
%% name, the last value seen and the adds acknowledged; a value lower than
%% the last one seen is a violation, and so is any exit (noproc or else).
%% Returns {Seen, Violations, Exits, Calls} on stop.
client_start(E, Name, Names) ->
    Self = self(),
    erlang:spawn(E, fun() -> client_loop(Self, Name, Names, {#{}, [], [], 0}) end).

client_loop(Owner, Name, Names, Acc0) ->
    Acc = client_round(Name, Names, Acc0),
    receive
        {stop, From} -> From ! {self(), client_round(Name, Names, Acc)} % one full round after the stop
    after 0 -> client_loop(Owner, Name, Names, Acc)
    end.

client_round(Name, Names, Acc) ->
    lists:foldl(
      fun(N, {S, B, X, K}) ->
              {Last, Acked} = maps:get(N, S, {undefined, 0}),
              try 'Elixir.DistributedSupervisor':call(Name, N, {add, 1}, 5000) of
                  V when Last =:= undefined; V > Last -> {S#{N => {V, Acked + 1}}, B, X, K + 1};
                  V -> {S#{N => {V, Acked + 1}}, [{N, Last, V} | B], X, K + 1}
              catch exit:R -> {S, B, [{N, R} | X], K + 1}
              end
      end, Acc, Names).

client_stop(C) ->
    C ! {stop, self()},
    receive {C, R} -> R after 30000 -> ct:fail(client_stop) end.

rebalance_moves_exactly_changed_owners(Cfg) ->
    Opts = [{rebalance, true}, {rebalance_moves, 3}],
    {_HA, A, _HB, B} = two_hosts(Cfg, Opts),
    Scope = ?config(scope, Cfg),
    Names = [{c, I} || I <- lists:seq(1, 1000)],
    [{ok, _, {c, I}} = sup(Cfg, A, {start_child, {counter, [{name, {c, I}}, {value, I * 10}]}, undefined})
     || {c, I} <- Names],
    Ring2 = dsup_cluster:ring([A, B]),
    Before = maps:from_list([{N, dsup_cluster:ring_owner(Ring2, N)} || N <- Names]),
    wait(fun() -> Got = maps:from_list([{N, [node(P) || P <- pg:get_members(Scope, N)]} || N <- Names]),
                  Got =:= maps:map(fun(_, Nd) -> [Nd] end, Before) orelse placement_differs
         end, ?T),
    E = start_elixir(Cfg, [A, B]),
    wait(fun() -> lists:all(fun(N) -> is_pid(erpc:call(E, 'Elixir.DistributedSupervisor', whereis, [name(Cfg), N]))
                            end, Names) orelse not_yet end, ?T),
    W = watch_start(Cfg),
    %% 4 clients, each over every name, from a different starting point: the
    %% names are called all the time the rebalance runs
    Clients = [client_start(E, name(Cfg), lists:nthtail(K, Names) ++ lists:sublist(Names, K))
               || K <- [0, 250, 500, 750]],
    HC = start_c(Cfg, #{name => ho_c, connect => [A, B]}),
    C = maps:get(node, HC),
    %% E reaches C before C hosts anything: C's barrier then covers E. (E's
    %% instance may ask C's dsup_node to run the instance first, as the shim
    %% does with every dsup-node it meets: already_started is fine.)
    true = erpc:call(E, net_kernel, connect_node, [C]),
    case dsup_cluster:call(C, {start_supervisor, name(Cfg), Opts}) of
        {ok, _} -> ok;
        {error, {already_started, _}} -> ok
    end,
    Ring3 = dsup_cluster:ring([A, B, C]),
    After = maps:from_list([{N, dsup_cluster:ring_owner(Ring3, N)} || N <- Names]),
    Changed = lists:sort([N || N <- Names, maps:get(N, Before) =/= maps:get(N, After)]),
    ct:log("~p of ~p children change owner", [length(Changed), length(Names)]),
    ?assert(length(Changed) > 100),
    ?assertEqual([C], lists:usort([maps:get(N, After) || N <- Changed])),
    wait(fun() -> Got = maps:from_list([{N, [node(P) || P <- pg:get_members(Scope, N)]} || N <- Names]),
                  Got =:= maps:map(fun(_, Nd) -> [Nd] end, After)
                      orelse {not_yet, length([N || N <- Changed, maps:get(N, Got) =/= [C]])}
         end, 30000),
    Results = [client_stop(Cl) || Cl <- Clients],
    Exits = lists:append([X || {_, _, X, _} <- Results]),
    ct:log("clients (DistributedSupervisor.call on ~p): ~p calls, ~p exits ~p",
           [E, lists:sum([K || {_, _, _, K} <- Results]), length(Exits), lists:sublist(Exits, 10)]),
    ?assertEqual([], lists:append([B1 || {_, B1, _, _} <- Results])),
    ?assertEqual([], Exits),
    %% per name: the adds acknowledged to all clients
    Seen = lists:foldl(fun({S, _, _, _}, Acc) ->
                               maps:fold(fun(N, {_, Ack}, A1) ->
                                                 maps:update_with(N, fun({x, Ack0}) -> {x, Ack0 + Ack} end,
                                                                  {x, Ack}, A1)
                                         end, Acc, S)
                       end, #{}, Results),
    %% every child: initial value + exactly the adds acknowledged, moved or not
    Wrong = [{N, V, I * 10 + Acked} || {c, I} = N <- Names,
                                        {_, Acked} <- [maps:get(N, Seen, {x, 0})],
                                        V <- [gen_server:call(hd(pg:get_members(Scope, N)), get)],
                                        V =/= I * 10 + Acked],
    ?assertEqual([], Wrong),
    ?assert(lists:all(fun(N) -> element(2, maps:get(N, Seen, {x, 0})) > 0 end, Names)),
    {{Dups, Joins}, Unreg, Order} = watch_stop_all(W),
    ct:log("unregistered time per move (CT node's view, leave to join, ~p moves): p50 ~p us, p99 ~p us, max ~p us",
           [length(Unreg), pct(Unreg, 50), pct(Unreg, 99), lists:max(Unreg)]),
    ?assertEqual([], Dups),
    ?assertEqual([], Order),
    %% exactly the changed children joined again (once each), nothing else
    ?assertEqual(Changed, lists:sort([N || {N, J} <- maps:to_list(Joins), not is_reserved(N), J > 0])),
    ?assert(lists:all(fun(N) -> maps:get(N, Joins) =:= 1 end, Changed)),
    ok.

checkpoint_restores_after_kill9(Cfg) ->
    {HA, A, _HB, B} = two_hosts(Cfg),
    C = start_ok(Cfg, A, {counter, [{name, ck}, {value, 2}]}, A),
    ?assertEqual(17, gen_server:call(C, {add, 15})),
    ?assertEqual(ok, gen_server:call(C, checkpoint)),
    %% the only other host is the successor: the copy lands there
    wait(fun() -> sup(Cfg, B, {checkpoint_of, ck}) =:= {ok, 17} end, ?T),
    ?assertEqual(none, sup(Cfg, A, {checkpoint_of, ck})),
    ?assertEqual(22, gen_server:call(C, {add, 5})),       % not checkpointed
    %% cost: a call that also checkpoints vs a plain call, same worker
    N = 3000,
    D0 = start_ok(Cfg, A, {counter, [{name, costly}]}, A),
    Time = fun(Req) -> {T, _} = timer:tc(fun() -> [gen_server:call(D0, Req) || _ <- lists:seq(1, N)] end), T / N end,
    Plain = Time(get),
    Ckpt = Time(checkpoint),
    ct:log("checkpoint cost: ~.1f us per call with a checkpoint vs ~.1f us without (~p calls, loopback; "
           "the successor receives at most 10 a second of them)", [Ckpt, Plain, N]),
    %% a child stopped for good: the successor forgets its checkpoint
    D = start_ok(Cfg, A, {counter, [{name, gone}, {value, 5}]}, A),
    ok = gen_server:call(D, checkpoint),
    wait(fun() -> sup(Cfg, B, {checkpoint_of, gone}) =:= {ok, 5} end, ?T),
    ok = sup(Cfg, A, {terminate_child, D}),
    wait(fun() -> sup(Cfg, B, {checkpoint_of, gone}) =:= none end, ?T),
    {ok, Loose} = dsup_cluster:call(A, {spawn, counter, [{value, 1}]}),
    ?assertEqual(not_supervised, gen_server:call(Loose, checkpoint)),
    {exited, _} = dsup_test:kill_node(HA),
    C2 = pid_on(Cfg, ck, B),
    ?assertEqual(17, gen_server:call(C2, get)),
    %% used once: a later crash of the new copy restarts from the init args
    ?assertEqual(none, sup(Cfg, B, {checkpoint_of, ck})),
    ok.

rebalance_kv_1kib_rate(Cfg) ->
    Opts = [{rebalance, true}],
    {_HA, A, _HB, B} = two_hosts(Cfg, Opts),
    Scope = ?config(scope, Cfg),
    Names = [{kv, I} || I <- lists:seq(1, 1000)],
    Val = fun(I) -> binary:copy(<<I:32>>, 256) end,          % 1 KiB
    [begin
         {ok, P, N} = sup(Cfg, A, {start_child, {kv, [{name, N}]}, undefined}),
         ok = gen_server:call(P, {put, v, Val(I)})
     end || {kv, I} = N <- Names],
    W = watch_start(Cfg),
    T0 = erlang:monotonic_time(microsecond),
    HC = start_c(Cfg, #{name => ho_c, connect => [A, B]}),
    C = maps:get(node, HC),
    {ok, _} = dsup_cluster:call(C, {start_supervisor, name(Cfg), Opts}),
    Ring3 = dsup_cluster:ring([A, B, C]),
    Moved = [N || N <- Names, dsup_cluster:ring_owner(Ring3, N) =:= C],
    wait(fun() -> lists:all(fun(N) -> [node(P) || P <- pg:get_members(Scope, N)] =:= [C] end, Moved)
                      orelse not_yet end, 30000),
    T1 = erlang:monotonic_time(microsecond),
    {{Dups, _}, Gaps} = watch_stop_gaps(W),
    ?assertEqual([], Dups),
    ?assertEqual(length(Moved), length(Gaps)),
    [?assertEqual({ok, Val(I)}, gen_server:call(hd(pg:get_members(Scope, N)), {get, v})) || {kv, I} = N <- Names],
    ct:log("~p moves of 1 KiB stores; join-to-done ~p ms (includes starting the node's instance); "
           "unregistered time per move: p50 ~p us, p99 ~p us, max ~p us",
           [length(Moved), (T1 - T0) div 1000, pct(Gaps, 50), pct(Gaps, 99), lists:max(Gaps)]),
    ok.

instance_stop_hands_over(Cfg) ->
    {_HA, A, _HB, B} = two_hosts(Cfg),
    C = start_ok(Cfg, A, {counter, [{name, inst41}, {value, 1}]}, A),
    ?assertEqual(41, gen_server:call(C, {add, 40})),
    ok = gen_server:stop({name(Cfg), A}),
    C2 = pid_on(Cfg, inst41, B),
    ?assertEqual(41, gen_server:call(C2, get)),
    ?assert(dead(C)),
    ok.

rebalance_options_and_cli(Cfg) ->
    %% the wire
    HA0 = start_c(Cfg, #{name => ho_opt}),
    A0 = maps:get(node, HA0),
    [?assertEqual({error, {bad_option, K}}, dsup_cluster:call(A0, {start_supervisor, name(Cfg), [{K, V}]}))
     || {K, V} <- [{rebalance, 'maybe'}, {rebalance, 1}, {rebalance_moves, 0}, {rebalance_moves, 10001},
                   {rebalance_moves, true}]],
    dsup_cluster:stop_all_c([HA0]),
    %% the command line: refused before anything starts
    [begin
         Out = os:cmd(dsup_test:exe() ++ " --name x" ++ integer_to_list(erlang:unique_integer([positive]))
                      ++ "@127.0.0.1 --supervisor 'X," ++ KV ++ "' 2>&1; echo rc=$?"),
         ct:log("~s -> ~s", [KV, Out]),
         ?assertNotEqual(nomatch, string:find(Out, "rc=64")),
         ?assertNotEqual(nomatch, string:find(Out, hd(string:split(KV, "="))))
     end || KV <- ["rebalance=yes", "rebalance_moves=0", "rebalance_moves=x"]],
    %% and accepted: hosts from the command line rebalance
    Sup = ["--supervisor", atom_to_list(name(Cfg)) ++ ",rebalance=true,rebalance_moves=2"],
    HA = start_c(Cfg, #{name => ho_ca, extra_args => Sup}),
    A = maps:get(node, HA),
    HB = start_c(Cfg, #{name => ho_cb, connect => [A], extra_args => Sup}),
    B = maps:get(node, HB),
    wait(fun() -> [lists:sort(catch sup(Cfg, N, nodes)) || N <- [A, B]] =:= [lists:sort([A, B]), lists:sort([A, B])] end, ?T),
    Scope = ?config(scope, Cfg),
    Names = [{cli, I} || I <- lists:seq(1, 40)],
    [{ok, _, N} = sup(Cfg, A, {start_child, {counter, [{name, N}, {value, I}]}, undefined}) || {cli, I} = N <- Names],
    HC = start_c(Cfg, #{name => ho_cc, connect => [A, B], extra_args => Sup}),
    C = maps:get(node, HC),
    Ring3 = dsup_cluster:ring([A, B, C]),
    Want = maps:from_list([{N, [dsup_cluster:ring_owner(Ring3, N)]} || N <- Names]),
    ?assert(lists:member([C], maps:values(Want))),
    wait(fun() -> maps:from_list([{N, [node(P) || P <- pg:get_members(Scope, N)]} || N <- Names]) =:= Want end, ?T),
    [?assertEqual(I, gen_server:call(hd(pg:get_members(Scope, N)), get)) || {cli, I} = N <- Names],
    ok.
