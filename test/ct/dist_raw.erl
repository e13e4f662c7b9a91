%%% @doc A raw Erlang distribution client, written against
%%% erts/doc/src/erl_dist_protocol.xml and kernel/src/dist_util.erl (OTP 25).
%%%
%%% It completes a real protocol-v6 handshake (DFLAG_HANDSHAKE_23, 'N' send_name,
%%% status, 'N' challenge, MD5 challenge reply, ack) with any node, BEAM or C,
%%% then lets a test write arbitrary frames on the connection: well-formed
%%% control messages to prove the link is live, and malformed ones to check that
%%% the remote end closes the connection without harming other peers.
%%%
%%% The client is a hidden node (no DFLAG_PUBLISHED); it does not register with
%%% epmd. No atom cache is used: every frame is `Len:32, $p, Ctrl, [Msg]'.
%%%
%%% ```
%%% {ok, C} = dist_raw:connect('x@127.0.0.1', Cookie),
%%% {ok, Reply} = dist_raw:call(C, {dsup_node, 'x@127.0.0.1'}, which_workers, 5000),
%%% ok = dist_raw:send_raw(C, <<"garbage">>),
%%% ok = dist_raw:wait_closed(C, 5000).
%%% '''
-module(dist_raw).

-export([connect/2, connect/3, self_pid/1, send_raw/2, send_ctrl/2, send_ctrl/3, make_pid/3,
         send_tick/1, recv/2, call/4, wait_closed/2, close/1, default_flags/0]).

-define(DFLAG_PUBLISHED,            16#01).
-define(DFLAG_EXTENDED_REFERENCES,  16#04).
-define(DFLAG_DIST_MONITOR,         16#08).
-define(DFLAG_FUN_TAGS,             16#10).
-define(DFLAG_DIST_MONITOR_NAME,    16#20).
-define(DFLAG_NEW_FUN_TAGS,         16#80).
-define(DFLAG_EXTENDED_PIDS_PORTS, 16#100).
-define(DFLAG_EXPORT_PTR_TAG,      16#200).
-define(DFLAG_BIT_BINARIES,        16#400).
-define(DFLAG_NEW_FLOATS,          16#800).
-define(DFLAG_UTF8_ATOMS,        16#10000).
-define(DFLAG_MAP_TAG,           16#20000).
-define(DFLAG_BIG_CREATION,      16#40000).
-define(DFLAG_HANDSHAKE_23,   16#01000000).
-define(DFLAG_UNLINK_ID,      16#02000000).

-define(SEND, 2).
-define(REG_SEND, 6).
-define(SEND_SENDER, 22).

default_flags() ->
    ?DFLAG_EXTENDED_REFERENCES bor ?DFLAG_DIST_MONITOR bor ?DFLAG_FUN_TAGS bor
        ?DFLAG_DIST_MONITOR_NAME bor ?DFLAG_NEW_FUN_TAGS bor
        ?DFLAG_EXTENDED_PIDS_PORTS bor ?DFLAG_EXPORT_PTR_TAG bor
        ?DFLAG_BIT_BINARIES bor ?DFLAG_NEW_FLOATS bor ?DFLAG_UTF8_ATOMS bor
        ?DFLAG_MAP_TAG bor ?DFLAG_BIG_CREATION bor ?DFLAG_HANDSHAKE_23 bor
        ?DFLAG_UNLINK_ID.

connect(Node, Cookie) ->
    connect(Node, Cookie, #{}).

%% Opts: name (our node name, default raw_<pid>_<n>@127.0.0.1),
%%       flags (default default_flags()), timeout (ms, default 10000),
%%       port (the peer's distribution port: no epmd lookup), epmd_port (ask
%%       the epmd on that port instead of the one erl_epmd knows).
-spec connect(node(), atom() | string(), map()) -> {ok, map()} | {error, term()}.
connect(Node, Cookie0, Opts) ->
    Cookie = to_list(Cookie0),
    Timeout = maps:get(timeout, Opts, 10000),
    MyName = maps:get(name, Opts, default_name()),
    Flags = maps:get(flags, Opts, default_flags()),
    [Alive, Host] = string:split(atom_to_list(Node), "@"),
    try
        Port = case Opts of
                   #{port := P0} -> P0;
                   #{epmd_port := EP} -> port_please(Alive, Host, EP, Timeout);
                   _ ->
                       case erl_epmd:port_please(Alive, Host, Timeout) of
                           {port, P, _Vsn} -> P;
                           Other -> throw({epmd, Other})
                       end
               end,
        {ok, Addr} = inet:parse_address(resolve(Host)),
        S = case gen_tcp:connect(Addr, Port, [binary, {packet, 2}, {active, false},
                                              {nodelay, true}], Timeout) of
                {ok, S0} -> S0;
                {error, E} -> throw({tcp_connect, E})
            end,
        try handshake(S, Node, MyName, Cookie, Flags, Timeout) of
            {ok, PeerFlags, PeerCreation} ->
                ok = inet:setopts(S, [{packet, 4}]),
                Creation = creation_of(MyName),
                {ok, #{sock => S, node => Node, name => MyName, flags => Flags,
                       peer_flags => PeerFlags, peer_creation => PeerCreation,
                       creation => Creation}}
        catch
            throw:Why -> gen_tcp:close(S), {error, Why}
        end
    catch
        throw:Why2 -> {error, Why2}
    end.

handshake(S, Node, MyName, Cookie, Flags, Timeout) ->
    NameBin = atom_to_binary(MyName, utf8),
    Creation = creation_of(MyName),
    %% send_name: 'N', Flags:64, Creation:32, NLen:16, Name
    send_hs(S, <<$N, Flags:64, Creation:32, (byte_size(NameBin)):16, NameBin/binary>>),
    case recv_hs(S, Timeout) of
        <<$s, "ok">> -> ok;
        <<$s, "ok_simultaneous">> -> ok;
        <<$s, Status/binary>> -> throw({status, binary_to_list(Status)});
        Other -> throw({bad_status_msg, Other})
    end,
    %% challenge: 'N', Flags:64, Challenge:32, Creation:32, NLen:16, Name
    {PeerFlags, ChallengeA, PeerCreation} =
        case recv_hs(S, Timeout) of
            <<$N, F:64, Ch:32, Cr:32, NL:16, PeerName:NL/binary, _/binary>> ->
                case PeerName =:= atom_to_binary(Node, utf8) of
                    true -> {F, Ch, Cr};
                    false -> throw({wrong_peer_name, PeerName})
                end;
            <<$n, _/binary>> = Old -> throw({old_challenge_format, Old});
            Other2 -> throw({bad_challenge_msg, Other2})
        end,
    ChallengeB = rand:uniform(16#ffffffff),
    %% challenge_reply: 'r', Challenge:32, Digest:16/binary
    send_hs(S, <<$r, ChallengeB:32, (digest(ChallengeA, Cookie))/binary>>),
    Expect = digest(ChallengeB, Cookie),
    case recv_hs(S, Timeout) of
        <<$a, Expect:16/binary>> -> {ok, PeerFlags, PeerCreation};
        <<$a, _:16/binary>> -> throw(bad_ack_digest);
        Other3 -> throw({bad_ack, Other3})
    end.

digest(Challenge, Cookie) ->
    erlang:md5([Cookie | integer_to_list(Challenge)]).

send_hs(S, Bin) ->
    case gen_tcp:send(S, Bin) of
        ok -> ok;
        {error, E} -> throw({send, E})
    end.

recv_hs(S, Timeout) ->
    case gen_tcp:recv(S, 0, Timeout) of
        {ok, B} -> B;
        {error, E} -> throw({handshake_recv, E})
    end.

%% A pid that belongs to our (raw) node: NEW_PID_EXT.
self_pid(#{name := Name, creation := Cr}) ->
    make_pid(Name, 1, Cr).

make_pid(Node, Id, Creation) ->
    NB = atom_to_binary(Node, utf8),
    binary_to_term(<<131, 88, 118, (byte_size(NB)):16, NB/binary,
                     Id:32, 0:32, Creation:32>>).

%% Write one frame verbatim (the 4-byte length is added by {packet,4}).
send_raw(#{sock := S}, Bin) ->
    gen_tcp:send(S, Bin).

send_tick(C) -> send_raw(C, <<>>).

send_ctrl(C, Ctrl) ->
    send_raw(C, [$p, enc(Ctrl)]).
send_ctrl(C, Ctrl, Msg) ->
    send_raw(C, [$p, enc(Ctrl), enc(Msg)]).

enc(T) -> term_to_binary(T, [{minor_version, 2}]).

%% Receive one frame: {ok, tick} | {ok, {Ctrl}} | {ok, {Ctrl, Msg}} |
%% {ok, {raw, Bin}} (undecodable) | {error, closed | timeout | ...}.
%% Ticks from the peer are answered.
recv(#{sock := S} = C, Timeout) ->
    case gen_tcp:recv(S, 0, Timeout) of
        {ok, <<>>} -> _ = send_tick(C), {ok, tick};
        {ok, <<$p, Rest/binary>> = Bin} ->
            try binary_to_term(Rest, [used]) of
                {Ctrl, Used} when Used =:= byte_size(Rest) -> {ok, {Ctrl}};
                {Ctrl, Used} ->
                    <<_:Used/binary, MsgBin/binary>> = Rest,
                    {ok, {Ctrl, binary_to_term(MsgBin)}}
            catch _:_ -> {ok, {raw, Bin}}
            end;
        {ok, Bin} -> {ok, {raw, Bin}};
        {error, _} = E -> E
    end.

%% A gen_server:call over the raw connection. Dest is a pid of the peer node or
%% {Name, Node}. Returns {ok, Reply} | {error, Reason}.
call(C, Dest, Request, Timeout) ->
    From = self_pid(C),
    Tag = make_ref(),
    Msg = {'$gen_call', {From, Tag}, Request},
    ok = case Dest of
             {Name, _Node} when is_atom(Name) -> send_ctrl(C, {?REG_SEND, From, '', Name}, Msg);
             Pid when is_pid(Pid) -> send_ctrl(C, {?SEND, '', Pid}, Msg)
         end,
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_reply(C, Tag, Deadline).

wait_reply(C, Tag, Deadline) ->
    Left = max(0, Deadline - erlang:monotonic_time(millisecond)),
    case recv(C, Left) of
        {ok, {{?SEND, _, _}, {Tag, Reply}}} -> {ok, Reply};
        {ok, {{?SEND_SENDER, _, _}, {Tag, Reply}}} -> {ok, Reply};
        {ok, _Other} -> wait_reply(C, Tag, Deadline);
        {error, _} = E -> E
    end.

%% Wait until the peer closes the connection (ticks and other frames are
%% read and dropped). ok | {error, still_open}.
wait_closed(C, Timeout) ->
    Deadline = erlang:monotonic_time(millisecond) + Timeout,
    wait_closed_loop(C, Deadline).

wait_closed_loop(C, Deadline) ->
    Left = Deadline - erlang:monotonic_time(millisecond),
    case Left =< 0 of
        true -> {error, still_open};
        false ->
            case recv(C, Left) of
                {error, timeout} -> {error, still_open};
                {error, _Closed} -> ok;
                {ok, _} -> wait_closed_loop(C, Deadline)
            end
    end.

close(#{sock := S}) -> gen_tcp:close(S).

%% --- helpers

%% PORT_PLEASE2 to the epmd on Host:EpmdPort (erl_dist_protocol.xml).
port_please(Alive, Host, EpmdPort, Timeout) ->
    {ok, Addr} = inet:parse_address(resolve(Host)),
    case gen_tcp:connect(Addr, EpmdPort, [binary, {packet, 0}, {active, false}], Timeout) of
        {ok, S} ->
            A = list_to_binary(Alive),
            ok = gen_tcp:send(S, <<(byte_size(A) + 1):16, 122, A/binary>>),
            R = gen_tcp:recv(S, 0, Timeout),
            gen_tcp:close(S),
            case R of
                {ok, <<119, 0, Port:16, _/binary>>} -> Port;
                Other -> throw({epmd, Other})
            end;
        {error, E} -> throw({epmd, E})
    end.

default_name() ->
    list_to_atom(lists:flatten(io_lib:format("raw_~s_~b@127.0.0.1",
                                             [os:getpid(), erlang:unique_integer([positive])]))).

creation_of(Name) ->
    %% any non-zero 32-bit value; stable per name so self_pid/1 agrees.
    (erlang:phash2(Name, 16#fffffff0)) + 4.

resolve(Host) ->
    case inet:parse_address(Host) of
        {ok, _} -> Host;
        _ ->
            {ok, A} = inet:getaddr(Host, inet),
            inet:ntoa(A)
    end.

to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(L) when is_list(L) -> L;
to_list(B) when is_binary(B) -> binary_to_list(B).
