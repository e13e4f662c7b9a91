%% ring_ref — a reference for test/unit/test_ring.c: libring 1.7's HashRing
%% algorithm (bitwalker/libring lib/ring.ex) written out in Erlang on
%% gb_trees, driven through a scripted history of adds and removes, with the
%% real erlang:phash2 of the `erl` running it.
%%
%% libring, restated:
%%   add_node(Node, W): unless Node is a member, nodes := [Node | nodes] and
%%     for I in 1..W: gb_trees:insert(phash2({Node, I}, 2^32-1), Node),
%%     ignoring error:{key_exists, _} (the first owner keeps a point);
%%   remove_node(Node): drop Node's points (to_list |> filter |> from_orddict)
%%     and nodes -- [Node]; collided points are not given back;
%%   key_to_node(Key): H = phash2(Key, 2^32-1), with an atom Key replaced by
%%     term_to_binary(Key) first; the first point >= H, else the smallest.
%%   key_to_nodes(Key, N): the documented intent (min(N, #nodes) distinct
%%     nodes clockwise from the key's point, wrapping), hashing the key as
%%     key_to_node does.
%%
%% term_to_binary(Atom) is built by hand for both releases: ext = OTP <= 25
%% (ATOM_EXT when all characters are latin1), utf8 = OTP >= 26
%% (SMALL_ATOM_UTF8_EXT); the one matching this erl is checked against the
%% real term_to_binary/1.
%%
%% gen(Path, Seed, NKeys) writes, big-endian:
%%   "DSR1", NNames:16, NNames x {Len:16, Utf8}, NKeys:32, NKeys x {Len:32, Bin}
%%   then ops until EOF:
%%     1 add:    Name:16, Weight:32
%%     2 remove: Name:16, WasMember:8
%%     3 check:  NNodes:16, NNodes x Name:16          (HashRing.nodes/1 order)
%%               NPoints:32, NPoints x {Hash:32, Name:16}
%%               for Enc in [ext, utf8]: NKeys x Name:16 (16#FFFF: none)
%%               for the first 1000 keys: Got:8, Got x Name:16  (count 3)
%%               for the next 100 keys:   Got:8, Got x Name:16  (count 100)
%%     4 reset (a new, empty ring)
%% Prints "ok NKeys NChecks".
-module(ring_ref).
-export([gen/3, t2b/2]).

-define(RANGE, 4294967295).

%% ---- libring --------------------------------------------------------------

new() -> {gb_trees:empty(), []}.

add_node({R, Nodes} = Ring, Node, W) ->
    case lists:member(Node, Nodes) of
        true -> Ring;
        false ->
            R2 = lists:foldl(
                   fun(I, Acc) ->
                           N = erlang:phash2({Node, I}, ?RANGE),
                           try gb_trees:insert(N, Node, Acc)
                           catch error:{key_exists, _} -> Acc
                           end
                   end, R, lists:seq(1, W)),
            {R2, [Node | Nodes]}
    end.

remove_node({R, Nodes} = Ring, Node) ->
    case lists:member(Node, Nodes) of
        true ->
            R2 = gb_trees:from_orddict([KV || {_, N} = KV <- gb_trees:to_list(R), N =/= Node]),
            {R2, Nodes -- [Node]};
        false ->
            Ring
    end.

key_hash(Key, Enc) when is_atom(Key) -> erlang:phash2(t2b(Key, Enc), ?RANGE);
key_hash(Key, _) -> erlang:phash2(Key, ?RANGE).

node_at({_, []}, _) -> none;
node_at({R, _}, H) ->
    case gb_trees:next(gb_trees:iterator_from(H, R)) of
        {_, Node, _} -> Node;
        none -> {_, Node} = gb_trees:smallest(R), Node
    end.

nodes_at({_, []}, _, _) -> [];
nodes_at({R, Nodes}, H, Count0) ->
    Count = min(length(Nodes), Count0),
    walk(gb_trees:iterator_from(H, R), R, gb_trees:size(R), Count, []).

walk(_, _, _, 0, Acc) -> lists:reverse(Acc);
walk(_, _, 0, _, Acc) -> lists:reverse(Acc);
walk(It, R, Left, Count, Acc) ->
    case gb_trees:next(It) of
        none -> walk(gb_trees:iterator(R), R, Left, Count, Acc);
        {_, Node, It2} ->
            case lists:member(Node, Acc) of
                true -> walk(It2, R, Left - 1, Count, Acc);
                false -> walk(It2, R, Left - 1, Count - 1, [Node | Acc])
            end
    end.

%% term_to_binary(Atom) as OTP <= 25 (ext) or OTP >= 26 (utf8) writes it.
t2b(A, ext) ->
    Chars = atom_to_list(A),
    case lists:all(fun(C) -> C =< 255 end, Chars) of
        true -> <<131, 100, (length(Chars)):16, (list_to_binary(Chars))/binary>>;
        false -> t2b(A, utf8)
    end;
t2b(A, utf8) ->
    U = atom_to_binary(A, utf8),
    case byte_size(U) =< 255 of
        true -> <<131, 119, (byte_size(U)), U/binary>>;
        false -> <<131, 118, (byte_size(U)):16, U/binary>>
    end.

%% ---- the script -------------------------------------------------------------

gen(Path, Seed, NKeys) ->
    rand:seed(exsss, Seed),
    Native = case list_to_integer(erlang:system_info(otp_release)) of
                 R when R =< 25 -> ext;
                 _ -> utf8
             end,
    Keys = [key(I) || I <- lists:seq(1, NKeys)],
    [true = (t2b(K, Native) =:= term_to_binary(K)) || K <- Keys, is_atom(K)],
    Hashes = [{key_hash(K, ext), key_hash(K, utf8)} || K <- Keys],
    Ring20 = [node_name(I) || I <- lists:seq(1, 20)],
    {CA, CB} = find_collision(),
    Big = 'big@x',
    Names = Ring20 ++ [CA, CB, Big, 'nosuch@x'],
    Idx = maps:from_list(lists:zip(Names, lists:seq(0, length(Names) - 1))),
    Weight = fun(5) -> 64; (11) -> 200; (17) -> 1; (_) -> 128 end,
    N = fun(I) -> lists:nth(I, Ring20) end,
    Script =
        [{add, N(I), Weight(I)} || I <- lists:seq(1, 20)]
        ++ [{remove, N(3)}, {remove, N(7)}, {remove, N(1)}, {remove, N(20)},
            {remove, 'nosuch@x'}, {add, N(3), 128}, {add, N(5), 999}]
        ++ [reset, {add, CA, 128}, {add, CB, 128}, reset, {add, CB, 128}, {add, CA, 128},
            {remove, CB}, {add, CB, 128}, {remove, CA}, {add, CA, 128},
            reset, {add, Big, 300000}, {add, N(1), 128}],
    {ok, F} = file:open(Path, [write, raw, binary, {delayed_write, 1 bsl 20, 2000}]),
    ok = file:write(F, [<<"DSR1", (length(Names)):16>>,
                        [begin U = atom_to_binary(Nm, utf8), <<(byte_size(U)):16, U/binary>> end
                         || Nm <- Names],
                        <<NKeys:32>>,
                        [begin B = term_to_binary(K), <<(byte_size(B)):32, B/binary>> end || K <- Keys]]),
    {_, Checks} = lists:foldl(
                    fun(Op, {Ring, C}) ->
                            Ring2 = apply_op(F, Idx, Op, Ring),
                            check(F, Idx, Ring2, Hashes),
                            {Ring2, C + 1}
                    end, {new(), 0}, Script),
    ok = file:close(F),
    io:format("ok ~b ~b~n", [NKeys, Checks]),
    ok.

apply_op(F, _Idx, reset, _Ring) ->
    ok = file:write(F, <<4>>),
    new();
apply_op(F, Idx, {add, Node, W}, Ring) ->
    ok = file:write(F, <<1, (maps:get(Node, Idx)):16, W:32>>),
    add_node(Ring, Node, W);
apply_op(F, Idx, {remove, Node}, {_, Nodes} = Ring) ->
    Was = case lists:member(Node, Nodes) of true -> 1; false -> 0 end,
    ok = file:write(F, <<2, (maps:get(Node, Idx)):16, Was>>),
    remove_node(Ring, Node).

check(F, Idx, {R, Nodes} = Ring, Hashes) ->
    I = fun(none) -> 16#FFFF; (Nd) -> maps:get(Nd, Idx) end,
    Pts = gb_trees:to_list(R),
    ok = file:write(F, [<<3, (length(Nodes)):16>>, [<<(I(Nd)):16>> || Nd <- Nodes],
                        <<(length(Pts)):32>>, [<<H:32, (I(Nd)):16>> || {H, Nd} <- Pts]]),
    ok = file:write(F, [<<(I(node_at(Ring, He))):16>> || {He, _} <- Hashes]),
    ok = file:write(F, [<<(I(node_at(Ring, Hu))):16>> || {_, Hu} <- Hashes]),
    {First, Rest} = lists:split(1000, Hashes),
    Next = lists:sublist(Rest, 100),
    ok = file:write(F, [begin L = nodes_at(Ring, He, 3), [<<(length(L))>>, [<<(I(Nd)):16>> || Nd <- L]] end
                        || {He, _} <- First]),
    ok = file:write(F, [begin L = nodes_at(Ring, He, 100), [<<(length(L))>>, [<<(I(Nd)):16>> || Nd <- L]] end
                        || {He, _} <- Next]).

node_name(I) ->
    case I rem 5 of
        0 -> list_to_atom("nœud" ++ integer_to_list(I) ++ "@hôte");
        1 -> list_to_atom([16#443, 16#437, 16#435, 16#43B | integer_to_list(I)] ++ "@host");
        2 -> list_to_atom([16#8282, 16#70B9 | integer_to_list(I)] ++ "@" ++ [16#4E3B, 16#673A]);
        _ -> list_to_atom("dsup" ++ integer_to_list(I) ++ "@host-" ++ integer_to_list(I * 7))
    end.

%% Two node names with one equal point: the only way to see which node
%% libring lets keep a collided point. A birthday search over c<K>@x.
find_collision() -> find_collision(1, #{}).
find_collision(K, Seen) ->
    Node = list_to_atom("c" ++ integer_to_list(K) ++ "@x"),
    Pts = [erlang:phash2({Node, I}, ?RANGE) || I <- lists:seq(1, 128)],
    case [maps:get(P, Seen) || P <- Pts, maps:is_key(P, Seen)] of
        [Other | _] when Other =/= Node -> {Other, Node};
        _ -> find_collision(K + 1, lists:foldl(fun(P, S) -> S#{P => Node} end, Seen, Pts))
    end.

%% ---- keys -------------------------------------------------------------------

key(I) ->
    case rand:uniform(20) of
        N when N =< 4 -> atom_key(I);
        N when N =< 8 -> rand:bytes(rand:uniform(24) - 1);
        N when N =< 11 -> int_key();
        12 -> {user, I};
        13 -> {rand:bytes(4), I, [a, b]};
        14 -> "key-" ++ integer_to_list(I);
        15 -> make_ref();
        16 -> self();
        17 -> rand:uniform_real() * 1000;
        18 -> #{id => I, tag => atom_key(I)};
        19 -> [I, atom_key(I) | <<"t">>];
        20 -> {I}
    end.

atom_key(I) ->
    S = integer_to_list(I),
    case rand:uniform(7) of
        7 -> list_to_atom(lists:duplicate(70, 16#1F600) ++ S); % > 255 bytes either way
        1 -> list_to_atom("k" ++ S);
        2 -> list_to_atom("Elixir.Key" ++ S);
        3 -> list_to_atom("clé" ++ S ++ [rand:uniform(128) + 127]);
        4 -> list_to_atom("ключ" ++ S);
        5 -> list_to_atom([16#1F511 | S]);
        6 -> list_to_atom(lists:duplicate(130, 16#E9) ++ S) % latin1; > 255 bytes in UTF-8
    end.

int_key() ->
    case rand:uniform(4) of
        1 -> rand:uniform(1000);
        2 -> -rand:uniform(1 bsl 40);
        3 -> rand:uniform(1 bsl 100);
        4 -> rand:uniform(1 bsl 27)
    end.
