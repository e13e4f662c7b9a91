%%% The supervisor instance's `status' call (what DistributedSupervisor.status/1
%%% asks each host), on two real dsup-nodes: children per host against the
%%% `children' table, a restart counted on the host that made it, and a
%%% start forwarded to a frozen (SIGSTOP) owner counted as pending until the
%%% owner answers; an instance stopped while such a start is in flight:
%%% its caller sees the instance end, the node serves on (and, under the
%%% sanitizers, leaks nothing).
-module(dsup_status_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 10000).

suite() ->
    [{timetrap, {seconds, 90}}].

all() ->
    [status_children_restarts_pending, instance_ends_with_forward_in_flight].

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_Config) -> ok.

init_per_testcase(_TC, Config) ->
    Name = dsup_test:unique_name(dsup_status),
    Priv = ?config(priv_dir, Config),
    HA = dsup_cluster:start_c(#{name => status_a, priv_dir => Priv}),
    HB = dsup_cluster:start_c(#{name => status_b, priv_dir => Priv, connect => [maps:get(node, HA)]}),
    [{name, Name}, {handles, [HA, HB]} | Config].

end_per_testcase(_TC, Config) ->
    [dsup_test:signal_node(H, "CONT") || H <- ?config(handles, Config)],
    dsup_cluster:stop_all_c(?config(handles, Config)),
    case [L || H <- ?config(handles, Config), L <- dsup_node_SUITE:sanitizer_lines(maps:get(log, H))] of
        [] -> ok;
        San -> {fail, {sanitizer_report, San}}
    end.

%% Name's instance on each node, each seeing all of them as hosts.
start_instances(Name, Nodes) ->
    [{ok, _} = dsup_cluster:call(N, {start_supervisor, Name, []}) || N <- Nodes],
    dsup_test:wait_until(fun() ->
        lists:all(fun(N) -> lists:sort(dsup_cluster:sup(Name, N, nodes)) =:= lists:sort(Nodes) end, Nodes)
    end, ?T).

status(Name, Node) ->
    maps:from_list(dsup_cluster:sup(Name, Node, status)).

status_children_restarts_pending(Config) ->
    Name = ?config(name, Config),
    [HA, HB] = ?config(handles, Config),
    [A, B] = Nodes = [maps:get(node, H) || H <- [HA, HB]],
    start_instances(Name, Nodes),
    ?assertEqual(#{node => A, children => 0, pending => 0, restarts => 0}, status(Name, A)),
    %% 30 named children, placed by the ring on both nodes
    Ids = [list_to_atom("s" ++ integer_to_list(I)) || I <- lists:seq(1, 30)],
    [{ok, _, Id} = dsup_cluster:sup(Name, A, {start_child, {counter, [{name, Id}]}, undefined})
     || Id <- Ids],
    %% reference: the cluster table, as both instances agree on it
    PerNode = fun() ->
                  Ch = dsup_cluster:sup(Name, A, children),
                  maps:size(Ch) =:= 30 andalso
                      {true, [length([P || {P, _} <- maps:values(Ch), node(P) =:= N]) || N <- Nodes]}
              end,
    {ok, Counts} = dsup_test:wait_until(PerNode, ?T),
    ct:log("children per node ~p", [Counts]),
    ?assertEqual(Counts, [maps:get(children, status(Name, N)) || N <- Nodes]),
    ?assert(lists:all(fun(C) -> C > 0 end, Counts)),
    %% a child killed on B: B restarts it and counts it
    Victim = hd([Id || Id <- Ids, node(dsup_cluster:sup(Name, A, {whereis, Id})) =:= B]),
    Old = dsup_cluster:sup(Name, A, {whereis, Victim}),
    exit(Old, kill),
    dsup_test:wait_until(fun() ->
        P = dsup_cluster:sup(Name, B, {whereis, Victim}),
        is_pid(P) andalso P =/= Old
    end, ?T),
    ?assertMatch(#{restarts := 1, children := _}, status(Name, B)),
    ?assertMatch(#{restarts := 0}, status(Name, A)),
    %% a start for a name B owns, asked of A while B is frozen: pending on A
    Ring = dsup_cluster:ring(Nodes),
    Key = hd([K || I <- lists:seq(1, 1000), K <- [list_to_atom("p" ++ integer_to_list(I))],
                   dsup_cluster:ring_owner(Ring, K) =:= B]),
    ok = dsup_test:signal_node(HB, "STOP"),
    Self = self(),
    Caller = spawn(fun() ->
        Self ! {started, catch dsup_cluster:sup(Name, A, {start_child, {counter, [{name, Key}]}, undefined}, 30000)}
    end),
    dsup_test:wait_until(fun() -> maps:get(pending, status(Name, A)) =:= 1 end, ?T),
    ok = dsup_test:signal_node(HB, "CONT"),
    receive {started, R} -> ?assertMatch({ok, _, Key}, R)
    after 30000 -> ct:fail({start_child_not_answered, Caller})
    end,
    ?assertEqual(0, maps:get(pending, status(Name, A))),
    ?assertEqual(31, lists:sum([maps:get(children, status(Name, N)) || N <- Nodes])).

instance_ends_with_forward_in_flight(Config) ->
    Name = ?config(name, Config),
    [HA, HB] = ?config(handles, Config),
    [A, B] = Nodes = [maps:get(node, H) || H <- [HA, HB]],
    start_instances(Name, Nodes),
    Ring = dsup_cluster:ring(Nodes),
    Key = hd([K || I <- lists:seq(1, 1000), K <- [list_to_atom("f" ++ integer_to_list(I))],
                   dsup_cluster:ring_owner(Ring, K) =:= B]),
    ok = dsup_test:signal_node(HB, "STOP"),
    Self = self(),
    spawn(fun() ->
        Self ! {started, catch dsup_cluster:sup(Name, A, {start_child, {counter, [{name, Key}]}, undefined}, 30000)}
    end),
    dsup_test:wait_until(fun() -> maps:get(pending, status(Name, A)) =:= 1 end, ?T),
    ok = gen_server:stop({Name, A}, shutdown, ?T),
    receive {started, R} -> ?assertMatch({'EXIT', {shutdown, _}}, R)
    after 30000 -> ct:fail(start_child_not_ended)
    end,
    ok = dsup_test:signal_node(HB, "CONT"),
    %% A's node serves on: a new instance of that name starts and counts B
    dsup_test:wait_until(fun() ->
        case catch dsup_cluster:call(A, {start_supervisor, Name, []}) of
            {ok, _} -> true;
            {error, {already_started, _}} -> true;
            _ -> false
        end
    end, ?T),
    dsup_test:wait_until(fun() -> lists:sort(dsup_cluster:sup(Name, A, nodes)) =:= lists:sort(Nodes) end, ?T).
