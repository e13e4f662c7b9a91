%% phash2_ref — reference data for test/unit/test_phash2.c, made by the real
%% erlang:phash2/1,2 of the `erl` running it.
%%
%% gen(Path, Seed, N) writes N random terms (every type a key can be), each
%% in up to three encodings: term_to_binary/1, term_to_binary/2 with
%% {minor_version, 2}, and a randomised but valid alternative encoding made
%% here (other atom/integer/float/list/ref/port/pid tags, LIST_EXT/STRING_EXT
%% splits, shuffled map pairs, dirty unused bits in bitstrings). Every
%% alternative is decoded again with binary_to_term/1 and kept only if it
%% gives back the same term. Then local funs (unhashable) and mutated
%% encodings with binary_to_term's verdict.
%%
%% File format, big-endian records until EOF:
%%   Kind:8, Len:32, Bytes:Len/binary, then
%%   Kind 0 (hashable):   Used:32, NR:8, NR x {Range:32 (0 = 2^32), Hash:32}
%%   Kind 1 (local fun):  nothing
%%   Kind 2 (mutated):    Accepted:8, and if 1: Used:32, Hash32:32
%%                        (Used = bytes binary_to_term consumed)
%%   Kind 3 (mutated):    nothing: binary_to_term accepted it only through
%%                        the VM-internal tags ATOM_INTERNAL_REF2/3 ('I'/'K',
%%                        an index into this VM's atom table), which mean
%%                        nothing outside that VM and which C rejects
%% Prints "ok Hashable Unhashable Fuzz AltFallbacks" and returns ok.
-module(phash2_ref).
-export([gen/3, map_keys/3]).

-define(RANGES, [1, 2, 7, 256, 1000003, 4294967295]).

gen(Path, Seed, N) ->
    rand:seed(exsss, Seed),
    {ok, F} = file:open(Path, [write, raw, binary, {delayed_write, 1 bsl 20, 2000}]),
    put(fallbacks, 0),
    Encs = lists:append([encodings(T) || T <- fixed_terms() ++ [term(4) || _ <- lists:seq(1, N)]]),
    [ok = file:write(F, hashable(E)) || E <- Encs],
    Funs = local_funs(),
    [ok = file:write(F, [<<1, (byte_size(B)):32>>, B]) || B <- Funs],
    EncT = list_to_tuple(Encs),
    Fuzz = quirks() ++ [mutate(element(rand:uniform(tuple_size(EncT)), EncT)) || _ <- lists:seq(1, N div 2)],
    [ok = file:write(F, fuzz(B)) || B <- Fuzz],
    ok = file:close(F),
    io:format("ok ~b ~b ~b ~b~n", [length(Encs), length(Funs), length(Fuzz), get(fallbacks)]),
    ok.

%% map_keys(Path, Seed, N): N maps of 2..6 random keys, each key and value
%% in a random (valid) encoding; about half of them repeat one key, encoded
%% anew, and some are nested as a key or a value of an outer map. Records
%% Len:32, Bytes (with the version byte), Verdict:8 (1: binary_to_term
%% decodes it). Left out, because OTP 25 and 27 disagree there (both are
%% unit-tested by hand): keys holding a float zero (0.0 versus -0.0), and
%% FLOAT_EXT text in a key (OTP 25 reads some texts one unit off in the last
%% place, so it may see two keys where OTP 27 sees one). Keys holding this
%% VM's own pids, ports or refs are left out too (see has_local_id/1).
%% Prints "ok N Bad".
map_keys(Path, Seed, N) ->
    rand:seed(exsss, Seed),
    {ok, F} = file:open(Path, [write, raw, binary, {delayed_write, 1 bsl 20, 2000}]),
    Bad = lists:foldl(fun(_, Acc) ->
                              B = <<131, (map_enc(3))/binary>>,
                              V = case catch binary_to_term(B) of {'EXIT', _} -> 0; _ -> 1 end,
                              ok = file:write(F, [<<(byte_size(B)):32>>, B, <<V>>]),
                              Acc + 1 - V
                      end, 0, lists:seq(1, N)),
    ok = file:close(F),
    io:format("ok ~b ~b~n", [N, Bad]),
    ok.

map_enc(D) ->
    K = 2 + rand:uniform(5) - 1,
    Keys0 = [key(D) || _ <- lists:seq(1, K)],
    Keys = case rand:uniform(2) of
               1 -> Keys0;
               2 -> I = rand:uniform(K), J = rand:uniform(K),
                    set_nth(J, lists:nth(I, Keys0), Keys0)
           end,
    Pairs = [[no_float_ext(Key), enc(rand:uniform(3))] || Key <- Keys],
    Inner = iolist_to_binary([<<116, K:32>> | Pairs]),
    case rand:uniform(4) of
        1 when D > 1 -> iolist_to_binary([<<116, 2:32>>, Inner, enc(1), enc(b), enc(2)]);
        2 when D > 1 -> iolist_to_binary([<<116, 2:32>>, enc(a), Inner, enc(b), enc(2)]);
        _ -> Inner
    end.

key(D) ->
    T = case rand:uniform(3) of
            1 -> leaf();
            _ -> term(D)
        end,
    case has_float_zero(T) orelse has_local_id(T) of
        true -> key(D);
        false -> T
    end.

%% Pids, ports and refs of this very VM decode here as local ones, which
%% compare by other rules than the remote ones a peer receives: left out.
has_local_id(X) when is_pid(X); is_port(X); is_reference(X) -> node(X) =:= node();
has_local_id(T) when is_tuple(T) -> has_local_id(tuple_to_list(T));
has_local_id([H | T]) -> has_local_id(H) orelse has_local_id(T);
has_local_id(M) when is_map(M) -> has_local_id(maps:to_list(M));
has_local_id(_) -> false.

has_float_zero(F) when is_float(F) -> F == 0;
has_float_zero(T) when is_tuple(T) -> has_float_zero(tuple_to_list(T));
has_float_zero([H | T]) -> has_float_zero(H) orelse has_float_zero(T);
has_float_zero(M) when is_map(M) -> has_float_zero(maps:to_list(M));
has_float_zero(_) -> false.

%% An encoding of T without FLOAT_EXT (tag 99) anywhere; after a few tries
%% (a key full of floats), its canonical encoding (no FLOAT_EXT either).
no_float_ext(T) -> no_float_ext(T, 4).

no_float_ext(T, 0) ->
    <<131, E/binary>> = term_to_binary(T, [{minor_version, 2}]),
    E;
no_float_ext(T, Tries) ->
    E = enc(T),
    put(throw_float_ext, true),
    try skip(E) of
        _ -> erase(throw_float_ext), E
    catch
        throw:float_ext -> erase(throw_float_ext), no_float_ext(T, Tries - 1);
        _:_ -> erase(throw_float_ext), E
    end.

set_nth(1, X, [_ | T]) -> [X | T];
set_nth(N, X, [H | T]) -> [H | set_nth(N - 1, X, T)].

hashable(B) ->
    T = binary_to_term(B),
    R = rand:uniform(16#FFFFFFFF),
    Pairs = [{1 bsl 27, erlang:phash2(T)}, {1 bsl 32, erlang:phash2(T, 1 bsl 32)}, {R, erlang:phash2(T, R)}]
        ++ [{Rg, erlang:phash2(T, Rg)} || Rg <- ?RANGES],
    [<<0, (byte_size(B)):32>>, B, <<(byte_size(B)):32, (length(Pairs)):8>>,
     [<<(Rg band 16#FFFFFFFF):32, H:32>> || {Rg, H} <- Pairs]].

%% An EXPORT_EXT arity above 255 is not decoded here at all: OTP 27.3
%% crashes the VM when such a fun is printed or hashed (OTP 25 hashes it by a
%% wrong arity). dsup refuses it; it is recorded as refused.
fuzz(B) ->
    case big_export_arity(B) of
        true -> [<<2, (byte_size(B)):32>>, B, <<0>>];
        false -> fuzz_decoded(B)
    end.

big_export_arity(<<131, B/binary>>) ->
    try skip(B) of _ -> false catch throw:big_arity -> true; _:_ -> false end;
big_export_arity(_) ->
    false.

fuzz_decoded(B) ->
    case catch binary_to_term(B, [used]) of
        {T, Used} when is_integer(Used) ->
            case {has_local_fun(T), uses_internal_atoms(B)} of
                {true, _} -> [<<1, (byte_size(B)):32>>, B];
                {false, true} -> [<<3, (byte_size(B)):32>>, B];
                {false, false} -> [<<2, (byte_size(B)):32>>, B, <<1, Used:32, (erlang:phash2(T, 1 bsl 32)):32>>]
            end;
        _ ->
            [<<2, (byte_size(B)):32>>, B, <<0>>]
    end.

%% Does the (accepted) encoding use the VM-internal atom index tags 73 'I'
%% (2-byte index) or 75 'K' (3-byte index)? Walks the encoding.
uses_internal_atoms(<<131, B/binary>>) ->
    try skip(B) of _ -> false catch throw:internal -> true; _:_ -> false end.

skip(<<T, _/binary>>) when T =:= 73; T =:= 75 -> throw(internal);
skip(<<97, _, R/binary>>) -> R;
skip(<<98, _:32, R/binary>>) -> R;
skip(<<110, N, _, _:N/binary, R/binary>>) -> R;
skip(<<111, N:32, _, _:N/binary, R/binary>>) -> R;
skip(<<70, _:64, R/binary>>) -> R;
skip(<<99, _:31/binary, R/binary>>) ->
    get(throw_float_ext) =:= true andalso throw(float_ext),
    R;
skip(<<T, N:16, _:N/binary, R/binary>>) when T =:= 100; T =:= 118 -> R;
skip(<<T, N, _:N/binary, R/binary>>) when T =:= 115; T =:= 119 -> R;
skip(<<106, R/binary>>) -> R;
skip(<<107, N:16, _:N/binary, R/binary>>) -> R;
skip(<<108, N:32, R/binary>>) -> skip_n(N + 1, R);
skip(<<104, N, R/binary>>) -> skip_n(N, R);
skip(<<105, N:32, R/binary>>) -> skip_n(N, R);
skip(<<116, N:32, R/binary>>) -> skip_n(2 * N, R);
skip(<<109, N:32, _:N/binary, R/binary>>) -> R;
skip(<<77, N:32, _, _:N/binary, R/binary>>) -> R;
skip(<<T, R/binary>>) when T =:= 88; T =:= 103; T =:= 89; T =:= 102; T =:= 120; T =:= 101 ->
    Sz = maps:get(T, #{88 => 12, 103 => 9, 89 => 8, 102 => 5, 120 => 12, 101 => 5}),
    <<_:Sz/binary, R1/binary>> = skip(R),
    R1;
skip(<<90, L:16, R/binary>>) -> <<_:4/binary, _:(4 * L)/binary, R1/binary>> = skip(R), R1;
skip(<<114, L:16, R/binary>>) -> <<_:1/binary, _:(4 * L)/binary, R1/binary>> = skip(R), R1;
skip(<<113, R/binary>>) ->
    case skip_n(2, R) of
        <<97, _/binary>> = R1 -> skip(R1);
        <<98, A:32/signed, _/binary>> = R1 when A >= 0, A =< 255 -> skip(R1);
        _ -> throw(big_arity)
    end.

skip_n(0, R) -> R;
skip_n(N, R) -> skip_n(N - 1, skip(R)).

has_local_fun(T) when is_function(T) -> erlang:fun_info(T, type) =:= {type, local};
has_local_fun(T) when is_tuple(T) -> has_local_fun(tuple_to_list(T));
has_local_fun([H | T]) -> has_local_fun(H) orelse has_local_fun(T);
has_local_fun(M) when is_map(M) -> has_local_fun(maps:to_list(M));
has_local_fun(_) -> false.

encodings(T) ->
    B1 = term_to_binary(T),
    B2 = term_to_binary(T, [{minor_version, 2}]),
    Alt = alt(T),
    lists:usort([B1, B2, Alt]).

local_funs() ->
    X = rand:uniform(100),
    [term_to_binary(F) || F <- [fun() -> ok end, fun(Y) -> X + Y end,
                                {a, fun lists:reverse/1, fun() -> X end},
                                [1, 2, #{k => fun() -> X end}]]].

%% Flip, truncate, extend or splice the bytes of a valid encoding.
mutate(B) ->
    Sz = byte_size(B),
    case rand:uniform(5) of
        1 -> binary:part(B, 0, rand:uniform(Sz) - 1);
        2 -> <<B/binary, (rand:bytes(rand:uniform(3)))/binary>>;
        3 -> set_byte(B, rand:uniform(Sz) - 1, rand:uniform(256) - 1);
        4 -> lists:foldl(fun(_, Acc) -> set_byte(Acc, rand:uniform(Sz) - 1, rand:uniform(256) - 1) end,
                         B, lists:seq(1, 3));
        5 -> P = rand:uniform(Sz) - 1,
             <<H:P/binary, Rest/binary>> = B,
             <<H/binary, (rand:uniform(256) - 1):8, Rest/binary>>
    end.

%% Odd encodings binary_to_term accepts (found by the mutation runs).
quirks() ->
    A = <<100, 0, 7, "x@other">>,
    [<<131, 90, 0:16, A/binary, 0:32, 5:32>>,              % zero-length ref ID: one word still read
     <<131, 114, 0:16, A/binary, 0, 7:32>>,
     <<131, 90, 0:16, A/binary, 0:32>>,                     % ... and missing: OTP 25 reads past the end
     <<131, 110, 2, 16#87, 1, 2>>,                          % any non-zero sign byte is negative
     <<131, 111, 2:32, 16#41, 0, 0>>,
     <<131, 108, 1:32, 110, 1, 16#C6, 0, 106>>,             % -0 as a big: a byte in a list
     <<131, 113, 100, 1:16, "m", 100, 1:16, "f", 98, 16#01000001:32>>, % export arities
     <<131, 113, 100, 1:16, "m", 100, 1:16, "f", 110, 5, 0, 1, 0, 0, 0, 1>>,
     <<131, 113, 100, 1:16, "m", 100, 1:16, "f", 98, -1:32>>,
     <<131, 108, 0:32, 100, 1:16, "a">>,                    % empty LIST_EXT: just the tail
     <<131, 108, 1:32, 97, 1, 107, 2:16, 2, 3>>,            % a STRING_EXT tail continues the list
     <<131, 108, 1:32, 97, 1, 108, 1:32, 97, 2, 106>>,
     <<131, 77, 0:32, 0>>, <<131, 77, 0:32, 8>>, <<131, 77, 1:32, 3, 255>>,
     <<131, 97, 1, 0>>,                                     % trailing bytes
     float_ext("1,50000000000000000000e+00"),               % FLOAT_EXT: comma radix,
     float_ext("1.5e+00x"), float_ext(" 1.5"), float_ext("1.5"), float_ext("1e5"), % strict grammar
     float_ext(".5"), float_ext("1."), float_ext("-0.0e0"), float_ext("1.0e400"), float_ext("1.0e-400"),
     float_ext("inf"), float_ext("1.5e+007")].

float_ext(S) -> <<131, 99, (list_to_binary(S))/binary, 0:((31 - length(S)) * 8)>>.

set_byte(B, P, V) ->
    <<H:P/binary, _:8, Rest/binary>> = B,
    <<H/binary, V:8, Rest/binary>>.

%% ---- random terms ------------------------------------------------------

fixed_terms() ->
    NegZero = neg_zero(),
    [a, '', [], {}, #{}, <<>>, 0, -1, 255, 256, 1 bsl 27, -(1 bsl 27), (1 bsl 27) - 1,
     -(1 bsl 27) - 1, 1 bsl 31, -(1 bsl 31), 1 bsl 59, -(1 bsl 59), (1 bsl 59) - 1,
     1 bsl 60, 1 bsl 63, (1 bsl 64) - 1, 1 bsl 64, -(1 bsl 64), 1 bsl 2100, -(1 bsl 2100),
     0.0, NegZero, {NegZero}, [NegZero | NegZero], #{NegZero => NegZero}, 1.0e308, 5.0e-324,
     <<1:1>>, <<0:7>>, <<255:8, 1:3>>, "abc", "abcd", "abcde", [1, 2 | 3], [a | b],
     lists:seq(0, 255), lists:duplicate(70000, 7), [X rem 256 || X <- lists:seq(1, 70001)],
     'héllo', 'hé€llo', 'Elixir.Foo', list_to_atom(lists:duplicate(255, $a)),
     list_to_atom(lists:duplicate(255, 16#1F600)), list_to_atom(lists:duplicate(255, 255)),
     self(), hd(erlang:ports()), make_ref(), fun erlang:abs/1, fun lists:map/2,
     erlang:make_fun('', '', 0), erlang:make_fun('é', '€', 255),
     maps:from_list([{I, I} || I <- lists:seq(1, 33)]),
     maps:from_list([{integer_to_list(I), #{I => [I]}} || I <- lists:seq(1, 200)]),
     list_to_tuple(lists:seq(1, 256)), {[], [[]], [[] | []]}, binary:copy(<<"x">>, 1024)].

neg_zero() -> <<F/float>> = <<1:1, 0:63>>, F.

term(D) when D =< 0 -> leaf();
term(D) ->
    case rand:uniform(12) of
        N when N =< 5 -> leaf();
        6 -> list(D);
        7 -> tuple(D);
        8 -> map(D);
        9 -> string();
        10 -> improper(D);
        11 -> mixed_list(D);
        12 -> leaf()
    end.

leaf() ->
    case rand:uniform(14) of
        1 -> atom(); 2 -> atom();
        3 -> int(); 4 -> int(); 5 -> int();
        6 -> float();
        7 -> binary(); 8 -> bitstring();
        9 -> pid();
        10 -> port();
        11 -> ref();
        12 -> export_fun();
        13 -> [];
        14 -> {}
    end.

atom() ->
    case rand:uniform(7) of
        1 -> list_to_atom(ascii(rand:uniform(12)));
        2 -> list_to_atom(latin1(rand:uniform(10)));
        3 -> list_to_atom(unicode(rand:uniform(8)));
        4 -> pick([a, ok, '', true, false, nil, undefined, 'Elixir.Foo.Bar', 'ÿ', 'Â€']);
        5 -> list_to_atom(ascii(200 + rand:uniform(55)));
        6 -> list_to_atom(unicode(200 + rand:uniform(55)));
        7 -> list_to_atom(ascii(rand:uniform(3)) ++ latin1(rand:uniform(3)) ++ unicode(rand:uniform(3)))
    end.

ascii(N) -> [pick("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@.") || _ <- lists:seq(1, N)].
latin1(N) -> [rand:uniform(256) - 1 || _ <- lists:seq(1, N)].
unicode(N) -> [uchar() || _ <- lists:seq(1, N)].
uchar() ->
    case rand:uniform(5) of
        1 -> 16#80 + rand:uniform(16#780) - 1;
        2 -> 16#800 + rand:uniform(16#D800 - 16#800) - 1;
        3 -> 16#E000 + rand:uniform(16#2000) - 1;
        4 -> 16#10000 + rand:uniform(16#100000) - 1;
        5 -> rand:uniform(256) - 1
    end.

int() ->
    S = pick([1, -1]),
    case rand:uniform(8) of
        1 -> rand:uniform(256) - 1;
        2 -> S * (rand:uniform(1 bsl 27) - 1);
        3 -> S * pick([1 bsl 27, (1 bsl 27) - 1, (1 bsl 27) + 1, 1 bsl 31, 1 bsl 32, (1 bsl 32) - 1,
                       1 bsl 59, (1 bsl 59) - 1, (1 bsl 59) + 1, 1 bsl 60, 1 bsl 63, (1 bsl 64) - 1,
                       1 bsl 64, (1 bsl 64) + 1, 1 bsl 128]);
        4 -> S * rand:uniform(1 bsl 40);
        5 -> S * rand:uniform(1 bsl 64);
        6 -> S * rand:uniform(1 bsl (64 + rand:uniform(400)));
        7 -> S * rand:uniform(1 bsl (2040 + rand:uniform(200)));
        8 -> S * (rand:uniform(1 bsl 27) - 1 + (1 bsl 27))
    end.

float() ->
    case rand:uniform(6) of
        1 -> pick([0.0, neg_zero(), 1.0, -1.0, 1.0e308, -1.0e308, 5.0e-324, 2.2250738585072014e-308]);
        2 -> rand:uniform_real();
        3 -> (rand:uniform_real() - 0.5) * math:pow(10, rand:uniform(600) - 300);
        4 -> float(rand:uniform(1 bsl 52));
        5 -> <<F/float>> = <<(rand:uniform(16#7FE) - 1):12, (rand:uniform(1 bsl 52) - 1):52>>, F;
        6 -> -rand:uniform_real()
    end.

binary() ->
    case rand:uniform(40) of
        40 -> rand:bytes(1000 + rand:uniform(2000));
        _ -> rand:bytes(rand:uniform(41) - 1)
    end.

bitstring() ->
    B = rand:bytes(rand:uniform(20) - 1),
    K = rand:uniform(7),
    Bits = <<B/binary, (rand:uniform(1 bsl K) - 1):K>>,
    case rand:uniform(2) of
        1 -> Bits;
        2 -> Off = rand:uniform(7),    % an unaligned sub-binary
             <<_:Off, Rest/bitstring>> = <<(rand:uniform(255)):Off, Bits/bitstring>>,
             Rest
    end.

node_atom() ->
    pick(['x@other', 'n1@host', 'nœud@hôte', 'узел@хост', 'a@b', nonode@nohost]).

atom_ext(A) ->
    <<131, Enc/binary>> = term_to_binary(A, [{minor_version, 2}]),
    Enc.

pid() ->
    case rand:uniform(4) of
        1 -> self();
        2 -> spawn(fun() -> ok end);
        3 -> list_to_pid("<0." ++ integer_to_list(rand:uniform(32768) - 1) ++ "." ++
                         integer_to_list(rand:uniform(8192) - 1) ++ ">");
        4 -> external(fun(N) -> <<88, N/binary, (id32()):32, (id32()):32, (id32()):32>> end, fun pid/0)
    end.

port() ->
    case rand:uniform(3) of
        1 -> hd(erlang:ports());
        2 -> external(fun(N) -> <<89, N/binary, (id32()):32, (id32()):32>> end, fun port/0);
        3 -> external(fun(N) -> <<120, N/binary, (rand:uniform(1 bsl 64) - 1):64, (id32()):32>> end, fun port/0)
    end.

ref() ->
    case rand:uniform(3) of
        1 -> make_ref();
        2 -> L = rand:uniform(5),   % (a zero-length ID crashes OTP 25 term_to_binary)
             external(fun(N) -> <<90, L:16, N/binary, (id32()):32, (rand:bytes(4 * L))/binary>> end,
                      fun ref/0);
        3 -> external(fun(N) -> <<101, N/binary, (rand:uniform(1 bsl 18) - 1):32, (rand:uniform(4) - 1):8>> end,
                      fun ref/0)
    end.

id32() ->
    case rand:uniform(3) of
        1 -> rand:uniform(1 bsl 15) - 1;
        2 -> rand:uniform(1 bsl 32) - 1;
        3 -> rand:uniform(256) - 1
    end.

%% A pid/port/ref of another node, built from its encoding; if the BEAM
%% refuses the made-up fields, take another one.
external(Make, Again) ->
    N = node_atom(),
    case N of
        nonode@nohost -> Again();
        _ -> case catch binary_to_term(<<131, (Make(atom_ext(N)))/binary>>) of
                 {'EXIT', _} -> Again();
                 T -> T
             end
    end.

export_fun() ->
    case rand:uniform(3) of
        1 -> pick([fun erlang:abs/1, fun lists:map/2, fun erlang:self/0]);
        _ -> erlang:make_fun(atom(), atom(), rand:uniform(256) - 1)
    end.

list(D) -> [term(D - 1) || _ <- lists:seq(1, rand:uniform(7) - 1)].

mixed_list(D) ->
    [case rand:uniform(3) of 1 -> term(D - 1); _ -> rand:uniform(300) - 1 end
     || _ <- lists:seq(1, rand:uniform(12))].

string() ->
    case rand:uniform(50) of
        50 -> [rand:uniform(256) - 1 || _ <- lists:seq(1, 300 + rand:uniform(700))];
        _ -> [rand:uniform(256) - 1 || _ <- lists:seq(1, rand:uniform(31) - 1)]
    end.

improper(D) ->
    Tail = case rand:uniform(3) of
               1 -> leaf();
               2 -> rand:uniform(256) - 1;
               3 -> term(D - 1)
           end,
    case is_list(Tail) of
        true -> [term(D - 1) | atom()];
        false -> lists:foldl(fun(_, Acc) -> [term(D - 1) | Acc] end, Tail, lists:seq(1, rand:uniform(4)))
    end.

tuple(D) ->
    case rand:uniform(40) of
        40 when D =< 2 -> list_to_tuple([leaf() || _ <- lists:seq(1, 250 + rand:uniform(20))]);
        _ -> list_to_tuple(list(D))
    end.

map(D) ->
    Size = case rand:uniform(15) of
               15 when D =< 2 -> 33 + rand:uniform(60);
               _ -> rand:uniform(7) - 1
           end,
    maps:from_list([{term(D - 1), term(D - 1)} || _ <- lists:seq(1, Size)]).

pick(L) -> lists:nth(rand:uniform(length(L)), L).

%% ---- the alternative encoder ------------------------------------------

alt(T) ->
    %% Kept if the BEAM decodes it at all: the reference hash is taken from
    %% the decoded term. Pids/ports/refs in the old encodings may decode to a
    %% term that is not =:= T (other creation); that is fine for hashing.
    B = <<131, (enc(T))/binary>>,
    case catch binary_to_term(B) of
        {'EXIT', _} ->
            put(fallbacks, get(fallbacks) + 1),
            case get(debug) of true -> io:format("fallback ~P~n", [T, 12]); _ -> ok end,
            term_to_binary(T);
        _ -> B
    end.

enc(A) when is_atom(A) -> enc_atom(A);
enc(I) when is_integer(I) -> enc_int(I);
enc(F) when is_float(F) ->
    case rand:uniform(2) of
        1 -> <<70, F/float>>;
        2 -> S = list_to_binary(float_to_list(F, [{scientific, 20}])),
             <<99, S/binary, 0:((31 - byte_size(S)) * 8)>>
    end;
enc(B) when is_binary(B) ->
    case {byte_size(B), rand:uniform(2)} of
        {N, 2} when N > 0 -> <<77, N:32, 8, B/binary>>;
        {N, _} -> <<109, N:32, B/binary>>
    end;
enc(B) when is_bitstring(B) ->
    Bits = bit_size(B) rem 8,
    Pad = 8 - Bits,
    <<77, (byte_size(B)):32, Bits, B/bitstring, (rand:uniform(1 bsl Pad) - 1):Pad>>;
enc(L) when is_list(L) -> enc_list(L);
enc(T) when is_tuple(T) ->
    N = tuple_size(T),
    Hd = case N =< 255 andalso rand:uniform(2) =:= 1 of
             true -> <<104, N>>;
             false -> <<105, N:32>>
         end,
    iolist_to_binary([Hd | [enc(E) || E <- tuple_to_list(T)]]);
enc(M) when is_map(M) ->
    Pairs = [{rand:uniform(), K, V} || {K, V} <- maps:to_list(M)],
    iolist_to_binary([<<116, (map_size(M)):32>> | [[enc(K), enc(V)] || {_, K, V} <- lists:sort(Pairs)]]);
enc(X) ->
    <<131, Canon/binary>> = term_to_binary(X),
    enc_other(Canon).

enc_atom(A) ->
    U = atom_to_binary(A, utf8),
    Chars = atom_to_list(A),
    Latin1 = lists:all(fun(C) -> C =< 255 end, Chars),
    Opts = [<<118, (byte_size(U)):16, U/binary>>]
        ++ [<<119, (byte_size(U)), U/binary>> || byte_size(U) =< 255]
        ++ [<<100, (length(Chars)):16, (list_to_binary(Chars))/binary>> || Latin1]
        ++ [<<115, (length(Chars)), (list_to_binary(Chars))/binary>> || Latin1],
    pick(Opts).

enc_int(I) ->
    Mag = binary:encode_unsigned(abs(I), little),
    Sign = if I < 0 -> 1; true -> 0 end,
    Pad = binary:copy(<<0>>, rand:uniform(3) - 1),
    M2 = <<Mag/binary, Pad/binary>>,
    Opts = [<<97, I>> || I >= 0, I =< 255]
        ++ [<<98, I:32/signed>> || I >= -(1 bsl 31), I < (1 bsl 31)]
        ++ [<<110, (byte_size(M2)), Sign, M2/binary>> || byte_size(M2) =< 255]
        ++ [<<111, (byte_size(M2)):32, Sign, M2/binary>>],
    pick(Opts).

enc_list(L) ->
    {Elems, Tail} = split_improper(L, []),
    Segs = segments(Elems),
    enc_segs(Segs, Tail).

split_improper([H | T], Acc) -> split_improper(T, [H | Acc]);
split_improper(Tail, Acc) -> {lists:reverse(Acc), Tail}.

segments([]) -> [];
segments(L) ->
    N = rand:uniform(length(L)),
    {S, Rest} = lists:split(N, L),
    [S | segments(Rest)].

enc_segs([], []) ->
    case rand:uniform(3) of
        1 -> <<106>>;
        2 -> <<107, 0:16>>;
        3 -> <<108, 0:32, 106>>
    end;
enc_segs([], Tail) -> enc(Tail);
enc_segs([Seg], []) ->
    case lists:all(fun(X) -> is_integer(X) andalso X >= 0 andalso X =< 255 end, Seg)
        andalso length(Seg) =< 65535 andalso rand:uniform(2) =:= 1 of
        true -> <<107, (length(Seg)):16, (list_to_binary(Seg))/binary>>;
        false -> enc_seg(Seg, enc_segs([], []))
    end;
enc_segs([Seg | Rest], Tail) ->
    enc_seg(Seg, enc_segs(Rest, Tail)).

enc_seg(Seg, TailBin) ->
    iolist_to_binary([<<108, (length(Seg)):32>>, [enc(E) || E <- Seg], TailBin]).

%% pids, ports, refs, export funs: rewrite the canonical encoding.
enc_other(<<88, R0/binary>>) ->
    {N, <<Id:32, Ser:32, Cre:32>>} = split_atom(R0),
    case Cre =< 3 andalso Id < (1 bsl 15) andalso Ser < (1 bsl 13) andalso rand:uniform(2) =:= 1 of
        true -> <<103, (enc_atom(N))/binary, Id:32, Ser:32, Cre:8>>;
        false -> <<88, (enc_atom(N))/binary, Id:32, Ser:32, Cre:32>>
    end;
enc_other(<<89, R0/binary>>) ->
    {N, <<Id:32, Cre:32>>} = split_atom(R0),
    pick([<<89, (enc_atom(N))/binary, Id:32, Cre:32>>,
          <<120, (enc_atom(N))/binary, Id:64, Cre:32>>]
         ++ [<<102, (enc_atom(N))/binary, Id:32, Cre:8>> || Cre =< 3, Id < (1 bsl 28)]);
enc_other(<<120, R0/binary>>) ->
    {N, <<Id:64, Cre:32>>} = split_atom(R0),
    pick([<<120, (enc_atom(N))/binary, Id:64, Cre:32>>]
         ++ [<<89, (enc_atom(N))/binary, Id:32, Cre:32>> || Id < (1 bsl 32)]);
enc_other(<<90, Len:16, R0/binary>>) ->
    {N, <<Cre:32, Ids/binary>>} = split_atom(R0),
    pick([<<90, Len:16, (enc_atom(N))/binary, Cre:32, Ids/binary>>]
         ++ [<<114, Len:16, (enc_atom(N))/binary, Cre:8, Ids/binary>>
             || Cre =< 255, binary:decode_unsigned(binary:part(Ids, 0, 4)) < (1 bsl 18)]
         ++ [<<101, (enc_atom(N))/binary, Ids/binary, Cre:8>>
             || Len =:= 1, Cre =< 3, binary:decode_unsigned(Ids) < (1 bsl 18)]);
enc_other(<<113, R0/binary>>) ->
    {M, R1} = split_atom(R0),
    {F, <<97, A>>} = split_atom(R1),
    <<113, (enc_atom(M))/binary, (enc_atom(F))/binary, (pick([<<97, A>>, <<98, A:32>>]))/binary>>;
enc_other(Other) ->
    Other.

split_atom(<<T, Rest/binary>>) when T =:= 100; T =:= 118 ->
    <<L:16, Name:L/binary, R/binary>> = Rest,
    {atom_from(T, Name), R};
split_atom(<<T, L, Name:L/binary, R/binary>>) when T =:= 115; T =:= 119 ->
    {atom_from(T, Name), R}.

atom_from(T, Name) when T =:= 100; T =:= 115 -> binary_to_atom(Name, latin1);
atom_from(_, Name) -> binary_to_atom(Name, utf8).
