%%% The baseline: distributed_supervisor's mechanism (hex 0.5, upstream
%%% am-kantox/distributed_supervisor) in plain OTP, for bench/sup_bench.erl.
%%%
%%% Per node, instance Inst runs (like upstream's DistributedSupervisor.init/1):
%%%   * a pg scope 'Inst.Scope'; each child joins the group named by its key
%%%     (register_name/2 below is the via-callback, as upstream's Registry);
%%%   * bl_registry, registered 'Inst.Registry': the ring (libring algorithm,
%%%     bl_ring) answering {node_for, Key}, and the children cache
%%%     (cache_children?: Key => Pid from pg:monitor_scope); it also does the
%%%     failover (see bl_registry);
%%%   * Elixir's DynamicSupervisor 'Inst.DynamicSupervisor' (one_for_one,
%%%     max_restarts 100, max_seconds 1 as upstream) holding the children
%%%     (bl_counter gen_servers). Needs Elixir's ebin on the code path.
%%%
%%% start_child/2 runs upstream's start_child on the node it is called on:
%%% ask the local registry for the key's node, start there through
%%% DynamicSupervisor.start_child, remotely by RPC (erpc:call, where upstream
%%% uses :rpc.block_call). whereis/2 is upstream's: pg:get_members, then an
%%% RPC to the member's node checking is_process_alive.
%%%
%%% Differences from upstream, all in the baseline's favour or neutral: the
%%% ring holds only nodes running the instance (members of '$bl_hosts'),
%%% not every connected node; instance names are cached in persistent_term.
-module(bl_dsup).
-export([start/1, start/2, stop/1, start_child/2, start_child/3, start_local/2,
         child_spec/2, whereis/2, call/3, call/4, count/1,
         register_name/2, unregister_name/1, whereis_name/1, send/2,
         names/1, init/1]).

-define(ELIXIR_EBIN, "/usr/lib/elixir/lib/elixir/ebin").

names(Inst) ->
    case persistent_term:get({?MODULE, Inst}, undefined) of
        undefined ->
            S = atom_to_list(Inst),
            N = #{scope => list_to_atom(S ++ ".Scope"),
                  registry => list_to_atom(S ++ ".Registry"),
                  dynsup => list_to_atom(S ++ ".DynamicSupervisor")},
            persistent_term:put({?MODULE, Inst}, N),
            N;
        N -> N
    end.

%% Start instance Inst on this node, owned by a process of its own (so that
%% it survives the erpc call that starts it). Opts: #{failover => bool()}.
start(Inst) -> start(Inst, #{}).
start(Inst, Opts) ->
    _ = code:add_patha(?ELIXIR_EBIN),
    {module, _} = code:ensure_loaded('Elixir.DynamicSupervisor'),
    Parent = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  process_flag(trap_exit, true),
                  R = supervisor:start_link({local, Inst}, ?MODULE, {Inst, Opts}),
                  Parent ! {Ref, R},
                  receive {'EXIT', _, _} -> ok end
          end),
    receive {Ref, {ok, _}} -> ok; {Ref, Err} -> Err after 30000 -> {error, timeout} end.

stop(Inst) ->
    case whereis(Inst) of
        undefined -> ok;
        P -> exit(P, shutdown), ok
    end.

init({Inst, Opts}) ->
    #{scope := Scope, dynsup := DynSup} = names(Inst),
    Children =
        [#{id => pg, start => {pg, start_link, [Scope]}},
         #{id => registry, start => {bl_registry, start_link, [Inst, Opts]}},
         #{id => dynsup,
           start => {'Elixir.DynamicSupervisor', start_link,
                     [[{name, DynSup}, {strategy, one_for_one},
                       {max_restarts, 100}, {max_seconds, 1}]]},
           type => supervisor}],
    {ok, {#{strategy => one_for_one, intensity => 3, period => 5}, Children}}.

child_spec(Inst, Key) ->
    #{id => Key,
      start => {bl_counter, start_link, [[{name, {via, ?MODULE, {Inst, Key}}}]]},
      restart => permanent}.

%% Upstream's DistributedSupervisor.start_child/3, run on an instance node.
start_child(Inst, Key) ->
    #{registry := Reg} = names(Inst),
    start_child(Inst, Key, gen_server:call(Reg, {node_for, Key})).

start_child(Inst, Key, Node) when Node =:= node() -> start_local(Inst, Key);
start_child(Inst, Key, Node) -> erpc:call(Node, ?MODULE, start_local, [Inst, Key]).

start_local(Inst, Key) ->
    #{dynsup := DynSup} = names(Inst),
    case 'Elixir.DynamicSupervisor':start_child(DynSup, child_spec(Inst, Key)) of
        {ok, Pid} -> {ok, Pid, Key};
        Other -> Other
    end.

count(Inst) ->
    #{dynsup := DynSup} = names(Inst),
    maps:get(active, 'Elixir.DynamicSupervisor':count_children(DynSup)).

whereis(Inst, Key) -> whereis_name({Inst, Key}).

call(Inst, Key, Msg) -> call(Inst, Key, Msg, 5000).
call(Inst, Key, Msg, Timeout) -> gen_server:call({via, ?MODULE, {Inst, Key}}, Msg, Timeout).

%% ---- the via registry (upstream DistributedSupervisor.Registry) -------------

register_name({Inst, Key}, Pid) ->
    #{scope := Scope} = names(Inst),
    ok = pg:join(Scope, Key, Pid),
    yes.

unregister_name({Inst, Key}) ->
    #{scope := Scope} = names(Inst),
    case whereis_name({Inst, Key}) of
        Pid when is_pid(Pid) -> _ = pg:leave(Scope, Key, Pid), ok;
        _ -> ok
    end.

whereis_name({Inst, Key}) ->
    #{scope := Scope} = names(Inst),
    case pg:get_members(Scope, Key) of
        [] -> undefined;
        [Pid] ->
            case erpc:call(node(Pid), erlang, is_process_alive, [Pid]) of
                true -> Pid;
                false -> undefined          % upstream: :restarting
            end;
        [_ | _] -> undefined                % upstream: :unsupported
    end.

send({Inst, Key} = Name, Msg) ->
    case whereis_name({Inst, Key}) of
        Pid when is_pid(Pid) -> Pid ! Msg;
        _ -> erlang:error(badarg, [Name, Msg])
    end.
