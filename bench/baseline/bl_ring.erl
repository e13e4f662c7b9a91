%%% libring 1.7's HashRing, as distributed_supervisor uses it, in plain Erlang:
%%% 128 points per node at erlang:phash2({Node, I}, 4294967295) for I in
%%% 1..128 in a gb_tree (on a collision the node added first keeps the
%%% point); a key goes to the first point >= phash2(Key, 4294967295),
%%% wrapping to the smallest. Atom keys hash as phash2(term_to_binary(Atom)).
-module(bl_ring).
-export([new/0, new/1, add_node/2, remove_node/2, nodes/1, key_to_node/2, hash_key/1]).

-define(RANGE, 4294967295).
-define(POINTS, 128).

new() -> {gb_trees:empty(), []}.

new(Nodes) -> lists:foldl(fun(N, R) -> add_node(N, R) end, new(), Nodes).

add_node(Node, {T, Ns} = R) ->
    case lists:member(Node, Ns) of
        true -> R;
        false ->
            T1 = lists:foldl(
                   fun(I, Acc) ->
                       H = erlang:phash2({Node, I}, ?RANGE),
                       case gb_trees:is_defined(H, Acc) of
                           true -> Acc;
                           false -> gb_trees:insert(H, Node, Acc)
                       end
                   end, T, lists:seq(1, ?POINTS)),
            {T1, [Node | Ns]}
    end.

remove_node(Node, {_T, Ns}) ->
    %% rebuilt in the original order so that collisions resolve as before
    new(lists:reverse(Ns -- [Node])).

nodes({_, Ns}) -> lists:reverse(Ns).

hash_key(K) when is_atom(K) -> erlang:phash2(term_to_binary(K), ?RANGE);
hash_key(K) -> erlang:phash2(K, ?RANGE).

key_to_node({T, _}, Key) ->
    case gb_trees:is_empty(T) of
        true -> undefined;
        false ->
            case gb_trees:next(gb_trees:iterator_from(hash_key(Key), T)) of
                {_, Node, _} -> Node;
                none -> element(2, gb_trees:smallest(T))
            end
    end.
