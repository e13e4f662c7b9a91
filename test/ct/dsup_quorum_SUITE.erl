%%% @doc The opt-in quorum mode of a supervisor instance (option `quorum`):
%%% real dsup-nodes, a real BEAM node (this one) in the scope. A side with
%%% fewer than N div 2 + 1 hosts stops its children and refuses starts; when
%%% enough hosts are back, the children no host runs are started again.
%%% (Partitions of every shape are exercised by `make chaos --quorum`.)
-module(dsup_quorum_SUITE).

-include_lib("common_test/include/ct.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_testcase/2, end_per_testcase/2]).
-export([lone_host_fences_then_restores/1, quorum_option_checked/1]).

suite() -> [{timetrap, {seconds, 120}}].

all() -> [quorum_option_checked, lone_host_fences_then_restores].

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_) -> ok.

init_per_testcase(_TC, Config) ->
    Name = dsup_test:unique_name(dsup_quorum),
    Scope = dsup_cluster:scope_of(Name),
    _ = dsup_cluster:start_beam_scope(node(), Scope),
    [{name, Name}, {scope, Scope}, {handles, ets:new(handles, [public, bag])} | Config].

end_per_testcase(_TC, Config) ->
    Hs = [H || {_, H} <- ets:tab2list(?config(handles, Config))],
    dsup_cluster:stop_all_c(Hs),
    dsup_cluster:stop_beam_scope(node(), ?config(scope, Config)),
    ok.

start_host(Config, Opts) ->
    Others = [N || {_, #{node := N}} <- ets:tab2list(?config(handles, Config))],
    H = dsup_cluster:start_c(#{name => q, connect => Others, net_ticktime => 60}),
    ets:insert(?config(handles, Config), {h, H}),
    #{node := N} = H,
    {ok, _} = dsup_cluster:call(N, {start_supervisor, ?config(name, Config), Opts}),
    H.

%% ---------------------------------------------------------------- cases

quorum_option_checked(Config) ->
    H = dsup_cluster:start_c(#{name => q}),
    ets:insert(?config(handles, Config), {h, H}),
    #{node := N} = H,
    Name = ?config(name, Config),
    {error, {bad_option, quorum}} = dsup_cluster:call(N, {start_supervisor, Name, [{quorum, 0}]}),
    {error, {bad_option, quorum}} = dsup_cluster:call(N, {start_supervisor, Name, [{quorum, 'maybe'}]}),
    %% `true' needs the configured hosts in `nodes'
    {error, {bad_option, quorum}} = dsup_cluster:call(N, {start_supervisor, Name, [{quorum, true}]}),
    {ok, _} = dsup_cluster:call(N, {start_supervisor, Name, [{quorum, false}]}),
    ok.

%% quorum 3 (2 hosts needed): one host alone refuses starts; a second host
%% brings the quorum; 30 children; kill one host: the other, alone, stops
%% its children; a new host joins: every child runs again, once.
lone_host_fences_then_restores(Config) ->
    Name = ?config(name, Config),
    Opts = [{quorum, 3}],
    #{node := A} = start_host(Config, Opts),
    {error, no_quorum} = dsup_cluster:sup(Name, A, {start_child, {counter, [{name, early}]}, undefined}),
    #{node := B} = HB = start_host(Config, Opts),
    ok = dsup_test:wait_until(fun() -> lists:sort(dsup_cluster:sup(Name, A, nodes)) =:= lists:sort([A, B]) end, 10000),
    ok = dsup_test:wait_until(fun() -> element(1, dsup_cluster:sup(Name, A, {start_child, {counter, [{name, probe}]}, undefined})) =:= ok end, 10000),
    Names = [list_to_binary("c" ++ integer_to_list(I)) || I <- lists:seq(1, 30)],
    [{ok, _, _} = dsup_cluster:sup(Name, A, {start_child, {counter, [{name, C}]}, undefined}) || C <- Names],
    All = [probe | Names],
    ok = dsup_test:wait_until(fun() -> running(Name, [A, B]) =:= length(All) end, 10000),
    %% B dies: A alone holds 1 of the 2 hosts needed
    dsup_cluster:kill_c(HB),
    ok = dsup_test:wait_until(fun() -> dsup_cluster:sup(Name, A, local_children) =:= [] end, 10000),
    {error, no_quorum} = dsup_cluster:sup(Name, A, {start_child, {counter, [{name, late}]}, undefined}),
    [] = dsup_cluster:members({beam, node()}, ?config(scope, Config), hd(Names)),
    %% a new host: the quorum is back, the children no host runs start again
    #{node := C3} = start_host(Config, Opts),
    ok = dsup_test:wait_until(fun() -> running(Name, [A, C3]) =:= length(All) end, 15000),
    %% exactly once each, registered, and started where the ring says
    Ring = dsup_cluster:ring([A, C3]),
    [begin
         [P] = dsup_cluster:members({beam, node()}, ?config(scope, Config), N),
         P = dsup_cluster:sup(Name, A, {whereis, N}),
         true = node(P) =:= dsup_cluster:ring_owner(Ring, N)
     end || N <- All],
    {ok, _, late} = dsup_cluster:sup(Name, A, {start_child, {counter, [{name, late}]}, undefined}),
    ok.

running(Name, Hosts) ->
    lists:sum([length(dsup_cluster:sup(Name, H, local_children)) || H <- Hosts]).
