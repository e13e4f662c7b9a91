%%% @doc The chaos harness's code on each Elixir node (scripts/chaos.sh puts
%%% it on the code path): boots a DistributedSupervisor instance under an
%%% Elixir Supervisor (as an application would, so a killed pg scope takes the
%%% instance down and the supervisor restarts both), keeps the node connected
%%% to every configured node (as libcluster would), runs workload workers that
%%% start, terminate, call and look up children by name, and answers the
%%% checker's view requests from local data (ETS and pg, no RPC).
%%%
%%% Every operation is reported to the driver's collector: starts and
%%% terminates synchronously *before* they are issued ({invoke, ...}, so a
%%% child that exists is never unknown to the checker, even when this node is
%%% killed mid-call), and every result afterwards ({done, ...}).
-module(dsup_chaos_client).

-export([boot/4, view/2, scope_kill/1, pause_all/1, run_all/2]).

-define(DS, 'Elixir.DistributedSupervisor').
-define(WORKERS, 2).
-define(OP_T, 3000).

%% Start the instance, the reconnector and ?WORKERS idle workers. Called by
%% the driver over erpc; everything lives under an unlinked holder.
boot(Collector, AllNodes, SupOpts, Tag) ->
    Sup = proplists:get_value(name, SupOpts),
    Parent = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  %% log on this node, not on the driver's console
                  group_leader(whereis(user), self()),
                  process_flag(trap_exit, true),
                  %% the clients observe: the children are C workers on the
                  %% dsup-nodes (Elixir nodes host by default since mixed hosts)
                  {ok, SupPid} = 'Elixir.Supervisor':start_link(
                                   [{?DS, [{host, false} | SupOpts]}],
                                   [{strategy, one_for_one}, {max_restarts, 1000}, {max_seconds, 1}]),
                  spawn_link(fun() -> reconnect_loop(AllNodes -- [node()], #{}) end),
                  [register(worker_name(I),
                            spawn_link(fun() -> worker_init(Collector, Sup, Tag, I) end))
                   || I <- lists:seq(1, ?WORKERS)],
                  Parent ! {Ref, ok},
                  holder_loop(SupPid)
          end),
    receive {Ref, ok} -> ok after 20000 -> error(boot_timeout) end.

holder_loop(SupPid) ->
    receive
        {'EXIT', SupPid, R} -> exit({sup_down, R});
        _ -> holder_loop(SupPid)
    end.

worker_name(I) -> list_to_atom("dsup_chaos_w" ++ integer_to_list(I)).

%% Dial every configured node we are not connected to, one attempt in flight
%% per node (a connect to a partitioned node blocks for seconds).
reconnect_loop(Nodes, Inflight) ->
    Connected = nodes(connected),
    Inflight1 = lists:foldl(
                  fun(N, Acc) ->
                          case lists:member(N, Connected) orelse maps:is_key(N, Acc) of
                              true -> Acc;
                              false ->
                                  {P, _} = spawn_monitor(fun() -> net_kernel:connect_node(N) end),
                                  Acc#{N => P}
                          end
                  end, Inflight, Nodes),
    Inflight2 = flush_down(Inflight1),
    receive after 300 -> ok end,
    reconnect_loop(Nodes, Inflight2).

flush_down(Inflight) ->
    receive
        {'DOWN', _, process, P, _} ->
            flush_down(maps:filter(fun(_, V) -> V =/= P end, Inflight))
    after 0 -> Inflight
    end.

%% ------------------------------------------------------------------ workers

pause_all(From) ->
    [pause_one(worker_name(I), From) || I <- lists:seq(1, ?WORKERS)],
    ok.

pause_one(W, From) ->
    case whereis(W) of
        undefined -> From ! {paused, node(), W};
        P -> P ! {pause, From}
    end.

run_all(Round, Seed) ->
    [case whereis(worker_name(I)) of
         undefined -> ok;
         P -> P ! {run, Round, Seed}
     end || I <- lists:seq(1, ?WORKERS)],
    ok.

%% Tag names this node's incarnation (e1.s3.i2): child names never repeat,
%% also across restarts of the node under the same name.
worker_init(Collector, Sup, Tag, I) ->
    S = #{collector => Collector, sup => Sup, idx => I, seq => 0, mine => #{},
          round => 0, tag => iolist_to_binary([Tag, ".w", integer_to_list(I)])},
    idle(S).

idle(S) ->
    receive
        {run, Round, Seed} ->
            rand:seed(exsss, {Seed, Round, erlang:phash2(maps:get(tag, S))}),
            running(S#{round => Round});
        {pause, From} -> From ! {paused, node(), self()}, idle(S)
    end.

running(S) ->
    receive
        {pause, From} -> From ! {paused, node(), self()}, idle(S);
        {run, _, _} -> running(S)
    after rand:uniform(60) + 20 -> running(op(S))
    end.

op(#{mine := Mine} = S) ->
    R = rand:uniform(100),
    Known = maps:size(Mine),
    if
        R =< 45; Known == 0 -> start(S);
        R =< 60 -> terminate(pick(S), S);
        R =< 85 -> call(pick(S), S);
        true -> lookup(pick(S), S)
    end.

pick(#{mine := Mine}) ->
    Keys = maps:keys(Mine),
    lists:nth(rand:uniform(length(Keys)), Keys).

start(#{seq := Seq, tag := Tag, sup := Sup, mine := Mine} = S) ->
    Name = <<Tag/binary, "-", (integer_to_binary(Seq))/binary>>,
    Restart = case rand:uniform(10) of
                  N when N =< 6 -> permanent;
                  N when N =< 8 -> transient;
                  _ -> temporary
              end,
    invoke(S, start, Name, Restart),
    Res = try ?DS:start_child(Sup, {counter, [{name, Name}, {restart, Restart}]})
          catch C:E -> {caught, C, E} end,
    done(S, start, Name, Res),
    Mine1 = case Res of {ok, _, _} -> Mine#{Name => Restart}; _ -> Mine end,
    S#{seq => Seq + 1, mine => Mine1}.

terminate(Name, #{sup := Sup, mine := Mine} = S) ->
    case ?DS:whereis(Sup, Name) of
        Pid when is_pid(Pid) ->
            invoke(S, terminate, Name, Pid),
            Res = try ?DS:terminate_child(Sup, Pid) catch C:E -> {caught, C, E} end,
            done(S, terminate, Name, Res),
            S#{mine => maps:remove(Name, Mine)};
        Other ->
            done(S, lookup, Name, Other),
            S
    end.

call(Name, #{sup := Sup} = S) ->
    Res = try ?DS:call(Sup, Name, get, ?OP_T) catch C:E -> {caught, C, simplify(E)} end,
    done(S, call, Name, Res),
    S.

lookup(Name, #{sup := Sup} = S) ->
    done(S, lookup, Name, ?DS:whereis(Sup, Name)),
    S.

simplify({Reason, {_Mod, _F, _Args}}) -> Reason;
simplify(E) -> E.

now_ms() -> erlang:system_time(millisecond).

%% Synchronous: the collector has the record before the operation starts.
invoke(#{collector := C, round := R}, Kind, Name, Arg) ->
    Ref = make_ref(),
    C ! {invoke, self(), Ref, #{node => node(), round => R, kind => Kind, name => Name,
                                 arg => Arg, t => now_ms()}},
    receive {Ref, ok} -> ok after 30000 -> exit(collector_timeout) end.

done(#{collector := C, round := R}, Kind, Name, Res) ->
    C ! {done, #{node => node(), round => R, kind => Kind, name => Name, result => Res, t => now_ms()}},
    ok.

%% ------------------------------------------------------------------ checker views

%% This node's answers, from local data: the ring, whereis of each name,
%% and the whole pg view of the instance's scope.
view(Sup, Names) ->
    Scope = list_to_atom(atom_to_list(Sup) ++ ".Scope"),
    Groups = try pg:which_groups(Scope) catch _:_ -> [] end,
    #{ring => lists:sort(try ?DS:nodes(Sup) catch _:_ -> down end),
      whereis => [{N, try ?DS:whereis(Sup, N) catch _:_ -> down end} || N <- Names],
      pg => [{G, lists:sort(pg:get_members(Scope, G))} || G <- Groups]}.

%% Kill the pg scope process of the instance (the Supervisor restarts the
%% instance, which starts a new scope).
scope_kill(Sup) ->
    Scope = list_to_atom(atom_to_list(Sup) ++ ".Scope"),
    case whereis(Scope) of
        undefined -> no_scope;
        P -> exit(P, kill), killed
    end.
