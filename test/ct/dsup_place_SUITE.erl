%%% Placement by capability between dsup-nodes whose worker types differ
%%% (issue 14): only some nodes load the example plugin (Examples.RateLimiter).
%%% A child goes to the libring owner of its name among the hosts able to run
%%% its type (the reference ring is computed here, from erlang:phash2, by
%%% dsup_cluster:ring_owner/2); children no surviving host can run are
%%% pending until a capable host joins, then start there once.
-module(dsup_place_SUITE).
-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2, end_per_testcase/2]).
-export([placed_among_capable_hosts/1, pending_until_a_capable_host_joins/1,
         placement_follows_capable_hosts/1]).

-define(T, 15000).
-define(RL, 'Elixir.Examples.RateLimiter').

all() -> [placed_among_capable_hosts, pending_until_a_capable_host_joins, placement_follows_capable_hosts].

init_per_suite(Config) ->
    Plugin = filename:join([filename:dirname(dsup_test:exe()), "examples", "dsup_examples.so"]),
    case filelib:is_regular(Plugin) of
        true -> [{plugin, Plugin} | Config];
        false -> {fail, {examples_not_built, Plugin, "run: make all examples"}}
    end.

end_per_suite(_Config) -> ok.

%% Three dsup-nodes: a and b load the plugin, c does not.
init_per_testcase(_TC, Config) ->
    Name = dsup_test:unique_name(dsup_place),
    Plugin = ?config(plugin, Config),
    A = dsup_cluster:start_c(#{name => pa, extra_args => ["--load", Plugin]}),
    An = maps:get(node, A),
    B = dsup_cluster:start_c(#{name => pb, connect => [An], extra_args => ["--load", Plugin]}),
    Bn = maps:get(node, B),
    C = dsup_cluster:start_c(#{name => pc, connect => [An, Bn]}),
    Cn = maps:get(node, C),
    Nodes = [An, Bn, Cn],
    %% this (test case) process hears c's listener events
    Listeners = fun(N) when N =:= Cn -> [{listeners, [self()]}];
                   (_) -> []
                end,
    [{ok, _} = dsup_cluster:call(N, {start_supervisor, Name, Listeners(N)}) || N <- Nodes],
    Cfg = [{name, Name}, {handles, [A, B, C]}, {nodes, Nodes} | Config],
    wait_ring(Cfg, Nodes, Nodes),
    Cfg.

end_per_testcase(_TC, Config) ->
    dsup_cluster:stop_all_c(?config(handles, Config) ++ proplists:get_value(extra, Config, [])),
    ok.

sup(Cfg, Node, Msg) -> dsup_cluster:sup(?config(name, Cfg), Node, Msg).

wait(Fun) ->
    try dsup_test:wait_until(Fun, ?T, 20)
    catch error:{wait_until_timeout, _, Last} -> ct:fail({timeout_ms, ?T, Last})
    end.

wait_ring(Cfg, On, Expected) ->
    wait(fun() ->
                 Rs = [lists:sort(sup(Cfg, N, nodes)) || N <- On],
                 lists:all(fun(R) -> R =:= lists:sort(Expected) end, Rs) orelse {rings, Rs}
         end).

start_all(Cfg) ->
    [_, _, Cn] = Nodes = ?config(nodes, Cfg),
    Counters = [{c, I} || I <- lists:seq(1, 24)],
    Limiters = [{r, I} || I <- lists:seq(1, 12)],
    Started =
        [begin
             Via = lists:nth(1 + I rem 3, Nodes),
             Spec = case K of
                        {c, _} -> {counter, [{name, K}, {value, I}]};
                        {r, _} -> {?RL, [{name, K}, {rate, 5}]}
                    end,
             {ok, Pid, K} = sup(Cfg, Via, {start_child, Spec, undefined}),
             {K, Pid}
         end || {K, I} <- lists:zip(Counters ++ Limiters, lists:seq(1, 36))],
    %% every instance knows all of them
    wait(fun() ->
                 lists:all(fun(N) -> map_size(sup(Cfg, N, children)) =:= 36 end, Nodes)
         end),
    _ = Cn,
    {Started, Counters, Limiters}.

%% ------------------------------------------------------------------ cases

placed_among_capable_hosts(Cfg) ->
    [An, Bn, Cn] = Nodes = ?config(nodes, Cfg),
    {Started, _, _} = start_all(Cfg),
    lists:foreach(
      fun({{c, _} = K, Pid}) ->
              %% every host runs counter: plain libring over all hosts
              ?assertEqual(dsup_cluster:ring_owner(lists:sort(Nodes), K), node(Pid)),
              ?assertEqual(node(Pid), sup(Cfg, Cn, {node_for, K})),
              ?assertEqual(node(Pid), sup(Cfg, Cn, {node_for, K, counter}));
         ({{r, _} = K, Pid}) ->
              %% only a and b run the rate limiter: libring over those two
              ?assertEqual(dsup_cluster:ring_owner(lists:sort([An, Bn]), K), node(Pid)),
              ?assertEqual(node(Pid), sup(Cfg, Cn, {node_for, K, ?RL}))
      end, Started),
    ?assert(lists:member(Cn, [node(P) || {{c, _}, P} <- Started])),
    %% c cannot run it, even when asked by name
    ?assertEqual({error, {unknown_worker, ?RL}},
                 sup(Cfg, An, {start_child, {?RL, [{name, x}]}, Cn})),
    %% a type no host runs (and no Elixir host): named in the error
    ?assertEqual({error, {unknown_worker, nope}},
                 sup(Cfg, Cn, {start_child, {nope, [{name, y}]}, undefined})),
    ?assertEqual(#{}, sup(Cfg, Bn, pending_children)).

pending_until_a_capable_host_joins(Cfg) ->
    [A, B, _] = ?config(handles, Cfg),
    [An, Bn, Cn] = ?config(nodes, Cfg),
    {Started, Counters, Limiters} = start_all(Cfg),
    {exited, _} = dsup_cluster:kill_c(A),
    {exited, _} = dsup_cluster:kill_c(B),
    wait_ring(Cfg, [Cn], [Cn]),
    %% every counter runs on c, once; the limiters are pending
    wait(fun() ->
                 lists:all(fun(K) ->
                                   case sup(Cfg, Cn, {whereis, K}) of
                                       P when is_pid(P) -> node(P) =:= Cn;
                                       _ -> false
                                   end
                           end, Counters)
         end),
    [?assertEqual(I, gen_server:call(sup(Cfg, Cn, {whereis, K}), get)) || {{c, I} = K, _} <- Started,
                                                                         lists:member(K, Counters)],
    %% each announced (a listener event) on the instance that keeps it
    Name = ?config(name, Cfg),
    [receive {distributed_supervisor, Name, {process_pending, K, ?RL}} -> ok
     after ?T -> ct:fail({no_process_pending_event, K})
     end || K <- Limiters],
    Pending = sup(Cfg, Cn, pending_children),
    ?assertEqual(lists:sort(Limiters), lists:sort(maps:keys(Pending))),
    #{start := {?RL, start_link, _}} = maps:get({r, 1}, Pending),
    ?assertEqual([{specs, 36}, {active, 24}, {supervisors, 0}, {workers, 24}],
                 sup(Cfg, Cn, count_children)),
    ?assertEqual(undefined, sup(Cfg, Cn, {whereis, {r, 1}})),
    %% a node with the plugin joins: they start there, once each
    D = dsup_cluster:start_c(#{name => pd, connect => [Cn],
                               extra_args => ["--load", ?config(plugin, Cfg)]}),
    Dn = maps:get(node, D),
    ct:log("new capable host ~p (a ~p, b ~p lost)", [Dn, An, Bn]),
    {ok, _} = dsup_cluster:call(Dn, {start_supervisor, ?config(name, Cfg), []}),
    wait(fun() ->
                 lists:all(fun(K) ->
                                   case sup(Cfg, Cn, {whereis, K}) of
                                       P when is_pid(P) -> node(P) =:= Dn;
                                       _ -> false
                                   end
                           end, Limiters)
         end),
    wait(fun() -> sup(Cfg, Cn, pending_children) =:= #{} andalso sup(Cfg, Dn, pending_children) =:= #{} end),
    Groups = dsup_cluster:call(Dn, {pg_which_groups, dsup_cluster:scope_of(?config(name, Cfg))}),
    [?assertEqual(1, length(dsup_cluster:call(Dn, {pg_members, dsup_cluster:scope_of(?config(name, Cfg)), K})))
     || K <- Limiters, lists:member(K, Groups)],
    {ok, _} = gen_server:call(sup(Cfg, Cn, {whereis, {r, 2}}), {take, 1}),
    dsup_cluster:stop_c(D),
    ok.

%% An instance keeps the capable hosts of a type between changes of the
%% hosts (sup_place.c): after a capable host leaves and another joins, c
%% places by the hosts there are now, as the reference ring of them says
%% (node_for with the type, and start_child itself).
placement_follows_capable_hosts(Cfg) ->
    [_, B, _] = ?config(handles, Cfg),
    [An, Bn, Cn] = ?config(nodes, Cfg),
    Keys = [{k, I} || I <- lists:seq(1, 40)],
    Expect = fun(Capable) -> [{K, dsup_cluster:ring_owner(lists:sort(Capable), K)} || K <- Keys] end,
    Asked = fun() -> [{K, sup(Cfg, Cn, {node_for, K, ?RL})} || K <- Keys] end,
    ?assertEqual(Expect([An, Bn]), Asked()),
    {exited, _} = dsup_cluster:kill_c(B),
    wait(fun() -> Asked() =:= Expect([An]) orelse {asked, Asked()} end),
    D = dsup_cluster:start_c(#{name => pd, connect => [An, Cn],
                               extra_args => ["--load", ?config(plugin, Cfg)]}),
    try
        Dn = maps:get(node, D),
        {ok, _} = dsup_cluster:call(Dn, {start_supervisor, ?config(name, Cfg), []}),
        wait(fun() -> Asked() =:= Expect([An, Dn]) orelse {asked, Asked()} end),
        Owners = [Owner || {_, Owner} <- Expect([An, Dn])],
        ?assert(lists:member(An, Owners) andalso lists:member(Dn, Owners)),
        [begin
             {ok, P, K} = sup(Cfg, Cn, {start_child, {?RL, [{name, K}, {rate, 5}]}, undefined}),
             ?assertEqual(Owner, node(P))
         end || {K, Owner} <- lists:sublist(Expect([An, Dn]), 12)]
    after
        dsup_cluster:stop_c(D)
    end.
