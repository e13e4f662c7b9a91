%%% @doc Cluster helpers shared by dsup_pg_SUITE and dsup_sup_SUITE: BEAM
%%% peers owned by a long-lived holder (so they outlive the CT process that
%%% started them), dsup-node wire calls, pg views of every node kind, a
%%% reference libring ring for placement checks, and mailbox helpers.
%%% Built on dsup_test (start_node/stop_node/kill_node/wait_until/...).
-module(dsup_cluster).

-export([start_peer/1, stop_peer/1,
         start_c/1, stop_c/1, kill_c/1, stop_all_c/1,
         call/2, call/3, sup/3, sup/4,
         members/3, which_groups/2, local_pid/1,
         beam_spawn/1, nursery/1, nursery_spawn/1, nursery_stop/1, scope_pid/2, start_beam_scope/2, stop_beam_scope/2,
         scope_of/1, ring/1, ring_owner/2, recv_until/2, flush/0, fmt/2]).

-define(CALL_T, 10000).

%% ------------------------------------------------------------------ peers

%% A BEAM peer (dsup_test:start_peer/2) whose peer:start_link/1 link is held
%% by a dedicated process, so the peer lives until stop_peer/1.
%% Returns #{node, holder}.
start_peer(Prefix) ->
    Caller = self(),
    Ref = make_ref(),
    Holder = spawn(fun() ->
                           try dsup_test:start_peer(Prefix, #{}) of
                               {Peer, Node} ->
                                   Caller ! {Ref, {ok, Node}},
                                   receive {stop, From, Tag} ->
                                           dsup_test:stop_peer(Peer),
                                           From ! {Tag, ok}
                                   end
                           catch C:R -> Caller ! {Ref, {error, {C, R}}}
                           end
                   end),
    receive
        {Ref, {ok, Node}} -> #{node => Node, holder => Holder};
        {Ref, {error, E}} -> erlang:error({peer_start_failed, E})
    after 60000 -> exit(Holder, kill), erlang:error(peer_start_timeout)
    end.

stop_peer(#{holder := H}) ->
    Tag = erlang:monitor(process, H),
    H ! {stop, self(), Tag},
    receive
        {Tag, ok} -> erlang:demonitor(Tag, [flush]), ok;
        {'DOWN', Tag, _, _, _} -> ok
    after 20000 -> exit(H, kill), ok
    end;
stop_peer(_) -> ok.

%% ------------------------------------------------------------------ dsup-nodes

%% dsup_test:start_node/1 with the CT node in `connect' (ready = answers).
start_c(Opts) ->
    Connect = lists:usort([node() | maps:get(connect, Opts, [])]),
    dsup_test:start_node(Opts#{connect => Connect}).

stop_c(H) -> dsup_test:stop_node(H).

kill_c(H) -> dsup_test:kill_node(H).

%% Stop every handle (SIGTERM, SIGKILL after the deadline); never raises.
stop_all_c(Hs) ->
    [catch dsup_test:stop_node(H, 10000) || H <- Hs],
    [catch dsup_test:forget(H) || H <- Hs],
    ok.

call(Node, Msg) -> call(Node, Msg, ?CALL_T).
call(Node, Msg, T) -> gen_server:call({dsup_node, Node}, Msg, T).

sup(Name, Node, Msg) -> sup(Name, Node, Msg, ?CALL_T).
sup(Name, Node, Msg, T) -> gen_server:call({Name, Node}, Msg, T).

%% ------------------------------------------------------------------ pg views

%% Node kinds: {beam, Node} | {c, Node}. Members sorted (duplicates kept).
members({beam, N}, Scope, Group) when N =:= node() ->
    lists:sort(pg:get_members(Scope, Group));
members({beam, N}, Scope, Group) ->
    lists:sort(erpc:call(N, pg, get_members, [Scope, Group], ?CALL_T));
members({c, N}, Scope, Group) ->
    lists:sort(call(N, {pg_members, Scope, Group})).

which_groups({beam, N}, Scope) when N =:= node() ->
    lists:sort(pg:which_groups(Scope));
which_groups({beam, N}, Scope) ->
    lists:sort(erpc:call(N, pg, which_groups, [Scope], ?CALL_T));
which_groups({c, N}, Scope) ->
    lists:sort(call(N, {pg_which_groups, Scope})).

%% A fresh process local to the node: BEAM: sleeps forever; C: an echo worker.
local_pid({beam, N}) -> beam_spawn(N);
local_pid({c, N}) -> {ok, P} = call(N, {spawn, echo, []}), P.

beam_spawn(N) when N =:= node() -> spawn(timer, sleep, [infinity]);
beam_spawn(N) -> spawn(N, timer, sleep, [infinity]).

%% A nursery on node N: a process that traps exits and links every sleeper
%% it spawns there, so that nursery_stop/1 ends them all at once.
nursery(N) ->
    Self = self(),
    Ref = make_ref(),
    P = spawn(N, fun() -> process_flag(trap_exit, true), Self ! {Ref, ok}, nursery_loop() end),
    receive {Ref, ok} -> P after ?CALL_T -> erlang:error(nursery_timeout) end.

nursery_loop() ->
    receive
        {spawn, From, Tag} ->
            From ! {Tag, spawn_link(timer, sleep, [infinity])},
            nursery_loop();
        {'EXIT', _, _} -> nursery_loop();
        stop -> exit(kill)
    end.

nursery_spawn(Nursery) ->
    Tag = erlang:monitor(process, Nursery),
    Nursery ! {spawn, self(), Tag},
    receive
        {Tag, P} -> erlang:demonitor(Tag, [flush]), P;
        {'DOWN', Tag, _, _, Why} -> erlang:error({nursery_down, Why})
    after ?CALL_T -> erlang:error(nursery_timeout)
    end.

nursery_stop(Nursery) -> Nursery ! stop, ok.

scope_pid(N, Scope) when N =:= node() -> whereis(Scope);
scope_pid(N, Scope) -> erpc:call(N, erlang, whereis, [Scope], ?CALL_T).

%% pg:start/1 is unlinked: the scope outlives the calling process.
start_beam_scope(N, Scope) when N =:= node() -> {ok, _} = pg:start(Scope), whereis(Scope);
start_beam_scope(N, Scope) ->
    {ok, _} = erpc:call(N, pg, start, [Scope], ?CALL_T),
    scope_pid(N, Scope).

stop_beam_scope(N, Scope) ->
    catch erpc:call(N, gen_server, stop, [Scope], ?CALL_T),
    ok.

%% The pg scope of supervisor instance Name: Module.concat(Name, Scope),
%% i.e. 'Elixir.MyApp.Sup.Scope' for an alias and 'Elixir.name.Scope' for a
%% plain atom.
scope_of(Name) ->
    case atom_to_list(Name) of
        "Elixir." ++ _ = S -> list_to_atom(S ++ ".Scope");
        S -> list_to_atom("Elixir." ++ S ++ ".Scope")
    end.

%% ------------------------------------------------------------------ ring

%% libring's ring over Nodes (128 points per node; on a point collision
%% the node added first keeps it, Nodes taken in order) and the owner of Key
%% (first point >= hash, wrapping; atoms hashed as term_to_binary/1 of this
%% OTP release).
ring(Nodes) ->
    Pts = lists:foldl(
            fun(N, Acc) ->
                    lists:foldl(fun(I, A) ->
                                        H = erlang:phash2({N, I}, 4294967295),
                                        case gb_trees:is_defined(H, A) of
                                            true -> A;
                                            false -> gb_trees:insert(H, N, A)
                                        end
                                end, Acc, lists:seq(1, 128))
            end, gb_trees:empty(), Nodes),
    Pts.

ring_owner([], _Key) -> undefined;
ring_owner(Nodes, Key) when is_list(Nodes) -> ring_owner(ring(Nodes), Key);
ring_owner(Ring, Key) ->
    K = case is_atom(Key) of
            true -> erlang:phash2(term_to_binary(Key), 4294967295);
            false -> erlang:phash2(Key, 4294967295)
        end,
    It = gb_trees:iterator_from(K, Ring),
    case gb_trees:next(It) of
        {_, N, _} -> N;
        none -> element(2, gb_trees:smallest(Ring))
    end.

%% ------------------------------------------------------------------ mailbox

%% Receive (in mailbox order) every message up to and including the first
%% one for which Stop returns true; error on the deadline. Returns the list.
recv_until(Stop, TimeoutMs) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    recv_until(Stop, Deadline, []).

recv_until(Stop, Deadline, Acc) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    receive M ->
            case Stop(M) of
                true -> lists:reverse([M | Acc]);
                false -> recv_until(Stop, Deadline, [M | Acc])
            end
    after Left -> erlang:error({recv_until_timeout, lists:reverse(Acc)})
    end.

flush() ->
    receive _ -> flush() after 0 -> ok end.

fmt(F, A) -> lists:flatten(io_lib:format(F, A)).
