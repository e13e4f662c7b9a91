%%% The baseline instance's registry process (upstream
%%% DistributedSupervisor.Registry with cache_children?: true), one per node:
%%%   * the ring: libring's algorithm over the nodes whose registry is a
%%%     member of pg group '$bl_hosts' in the instance's scope;
%%%   * {node_for, Key} -> Node;
%%%   * the children cache Key => Pid, kept from pg:monitor_scope events;
%%%   * failover (upstream leaves this to a listener's on_node_down; here the
%%%     same policy as dsup's, so both sides do the same work): when pg drops
%%%     a member because its node is gone, the node leaves the ring and the
%%%     key's new ring owner restarts the child locally, each orphan by its
%%%     own key. The restarted child is always a bl_counter (the cache holds
%%%     pids, not specs, as upstream's does).
-module(bl_registry).
-behaviour(gen_server).
-export([start_link/2, init/1, handle_call/3, handle_cast/2, handle_info/2]).

-define(HOSTS, '$bl_hosts').

start_link(Inst, Opts) ->
    #{registry := Reg} = bl_dsup:names(Inst),
    gen_server:start_link({local, Reg}, ?MODULE, {Inst, Opts}, []).

init({Inst, Opts}) ->
    #{scope := Scope} = bl_dsup:names(Inst),
    ok = pg:join(Scope, ?HOSTS, self()),
    {Ref, Groups} = pg:monitor_scope(Scope),
    Hosts = maps:get(?HOSTS, Groups, []),
    Cache = maps:fold(fun(?HOSTS, _, A) -> A;
                         (K, [P | _], A) -> A#{K => P};
                         (_, [], A) -> A
                      end, #{}, Groups),
    Ring = bl_ring:new(lists:usort([node(P) || P <- Hosts])),
    {ok, #{inst => Inst, scope => Scope, ref => Ref, ring => Ring, cache => Cache,
           failover => maps:get(failover, Opts, true), restarted => 0}}.

handle_call({node_for, Key}, _From, #{ring := Ring} = S) ->
    {reply, bl_ring:key_to_node(Ring, Key), S};
handle_call(nodes, _From, #{ring := Ring} = S) ->
    {reply, bl_ring:nodes(Ring), S};
handle_call(cache_size, _From, #{cache := C} = S) ->
    {reply, map_size(C), S};
handle_call(restarted, _From, #{restarted := R} = S) ->
    {reply, R, S}.

handle_cast(_, S) -> {noreply, S}.

handle_info({Ref, join, ?HOSTS, Pids}, #{ref := Ref, ring := Ring} = S) ->
    {noreply, S#{ring := lists:foldl(fun(P, R) -> bl_ring:add_node(node(P), R) end,
                                     Ring, Pids)}};
handle_info({Ref, leave, ?HOSTS, Pids}, #{ref := Ref, ring := Ring, scope := Scope} = S) ->
    Left = [node(P) || P <- pg:get_members(Scope, ?HOSTS)],
    {noreply, S#{ring := lists:foldl(fun(P, R) ->
                                             case lists:member(node(P), Left) of
                                                 true -> R;
                                                 false -> bl_ring:remove_node(node(P), R)
                                             end
                                     end, Ring, Pids)}};
handle_info({Ref, join, Key, Pids}, #{ref := Ref, cache := C} = S) ->
    {noreply, S#{cache := C#{Key => lists:last(Pids)}}};
handle_info({Ref, leave, Key, Pids}, #{ref := Ref, cache := C} = S) ->
    case maps:find(Key, C) of
        {ok, P} ->
            case lists:member(P, Pids) of
                true -> {noreply, maybe_restart(Key, P, S#{cache := maps:remove(Key, C)})};
                false -> {noreply, S}
            end;
        error -> {noreply, S}
    end;
handle_info(_, S) ->
    {noreply, S}.

%% A member left: if its node is gone, this key is an orphan.
maybe_restart(_Key, _P, #{failover := false} = S) -> S;
maybe_restart(Key, P, #{ring := Ring0, inst := Inst, scope := Scope} = S) ->
    Dead = node(P),
    case Dead =/= node() andalso not lists:member(Dead, nodes()) of
        false -> S;
        true ->
            Ring = case lists:member(Dead, bl_ring:nodes(Ring0)) of
                       true -> bl_ring:remove_node(Dead, Ring0);
                       false -> Ring0
                   end,
            S1 = S#{ring := Ring},
            case bl_ring:key_to_node(Ring, Key) =:= node() andalso
                 pg:get_members(Scope, Key) =:= [] of
                true ->
                    _ = bl_dsup:start_local(Inst, Key),
                    S1#{restarted := maps:get(restarted, S1) + 1};
                false -> S1
            end
    end.
