%%% Issue 11, point 3: an authenticated peer floods a real dsup-node with names
%%% it never saw. The node must look names up without keeping them, charge
%%% what it keeps to the peer (a quota, logged), free it with its last user,
%%% stay small, and keep serving everyone else.
%%%
%%% Every frame of the flood is one a peer may send: the sender of its links,
%%% monitors and exits is always one of the peer's own pids (the node closes
%%% a connection that names another node's process as the sender, as erts
%%% does: a forged LINK is checked once here, fully in dsup_hostile_net_SUITE).
%%% The names come from what a sender may choose freely:
%%%  - REG_SEND and MONITOR_P to names nobody registered: looked up, never kept;
%%%  - calls to a worker whose caller ({Pid, Tag}, decoded by the node to
%%%    address the answer) is a pid of a node that does not exist: the name is
%%%    charged to the peer while the call is handled, the answer goes nowhere,
%%%    the name is freed at the end of the loop turn;
%%%  - MONITOR_P from the peer's own pid whose reference was made on a node
%%%    that does not exist: the monitor holds the reference, hence that node's
%%%    name, charged to the peer until a DEMONITOR_P or the worker's end.
%%% A probe is a MONITOR_P on a process that is gone: answered noproc when its
%%% reference's node name can be charged, dropped past the quota.
%%%
%%% The flood is written by dist_raw (an authenticated raw client) as batched
%%% frames built by hand: the names never become atoms in this node (1.1M would
%%% nearly fill its atom table).
-module(dsup_hostile_names_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 5000).
-define(QUOTA, 50000).
-define(N_REG_SEND, 500000).     % REG_SEND to distinct names
-define(N_MON_NAME, 300000).     % MONITOR_P to distinct names: each answered noproc
-define(N_CALL, 150000).         % calls from pids of distinct nodes (answers go nowhere)
-define(N_MON_REF, 150000).      % MONITOR_P with refs of distinct nodes (quota: 50,000 kept)
-define(BATCH, 20000).           % frames per socket write
%% First words of the references this suite makes: held monitors use 0..N-1.
-define(NAME_REF_ID, 16#40000000). % the monitors of names nobody registered
-define(PROBE, 16#50000000).       % probes: PROBE + K
-define(GHOST, 16#60000000).       % the ghost monitor of the churn case
-define(CHURN, 16#70000000).       % churned monitors: CHURN + I
%% The node's RSS may grow by at most this much over the whole flood (growth
%% measured 13 MB: 50,000 held names, the monitors holding them, the backlog
%% of answers in the write queue; 8-24 MB when links held them).
%% Before the fix the 1.1M names stayed for good: +70 MB.
-define(RSS_GROWTH_MAX_KB, 56 * 1024).

suite() ->
    [{timetrap, {seconds, 240}}].

all() ->
    [flood_of_names_locks_nobody_out, holders_survive_name_churn].

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_Config) -> ok.

init_per_testcase(TC, Config) ->
    H = dsup_test:start_node(#{name => TC, priv_dir => ?config(priv_dir, Config),
                               extra_args => ["--peer-name-quota", integer_to_list(?QUOTA)]}),
    ct:log("started ~p (os pid ~p), log ~s",
           [maps:get(node, H), maps:get(os_pid, H), maps:get(log, H)]),
    [{dsup, H} | Config].

end_per_testcase(TC, Config) ->
    H = ?config(dsup, Config),
    Stop = dsup_test:stop_node(H),
    San = dsup_node_SUITE:sanitizer_lines(maps:get(log, H)),
    case {San, Stop} of
        {[], {ok, 0}} -> ok;
        {[], Other} ->
            ct:pal("~p: node did not exit cleanly: ~p~n~s",
                   [TC, Other, [[L, $\n] || L <- dsup_test:log_tail(H, 60)]]),
            {fail, {node_unclean_exit, Other}};
        _ ->
            ct:pal("~p: sanitizer report:~n~s", [TC, [[L, $\n] || L <- San]]),
            {fail, {sanitizer_report, San}}
    end.

%% ------------------------------------------------------------------ cases

flood_of_names_locks_nobody_out(Config) ->
    H = ?config(dsup, Config),
    N = maps:get(node, H),
    OsPid = maps:get(os_pid, H),
    Echo = spawn_worker(N, echo),
    {ok, C} = dist_raw:connect(N, erlang:get_cookie()),
    Peer = atom_to_binary(maps:get(name, C)),
    Raw = raw_open(C, gone_worker(N)),
    Own = maps:get(own, Raw),
    EchoB = pid_bytes(Echo),
    RefB = ref_bytes(Peer, ?NAME_REF_ID),
    Rss0 = rss_kb(OsPid),
    Sampler = start_rss_sampler(OsPid),
    T0 = erlang:monotonic_time(millisecond),

    flood(Raw, ?N_REG_SEND, fun(I) ->
        frame(<<104, 4, 97, 6, Own/binary, 119, 0, (atom(<<"flood_a_", (int(I))/binary>>))/binary>>,
              <<106>>)
    end),
    flood(Raw, ?N_MON_NAME, fun(I) ->
        frame(<<104, 4, 97, 19, Own/binary, (atom(<<"flood_b_", (int(I))/binary>>))/binary,
                RefB/binary>>)
    end),
    %% SEND {'$gen_call', {FakePid, Tag}, ping} to the worker: the node decodes
    %% the caller to answer it (charged to us while the call is handled); the
    %% answer goes nowhere (a node name without host cannot be reached).
    flood(Raw, ?N_CALL, fun(I) ->
        frame(<<104, 3, 97, 2, 119, 0, EchoB/binary>>,
              <<104, 3, (atom(<<"$gen_call">>))/binary,
                104, 2, (fake_pid(<<"fake_c_", (int(I))/binary, "@">>))/binary, RefB/binary,
                (atom(<<"ping">>))/binary>>)
    end),
    %% Every monitor of an unknown name is answered noproc, without interning it.
    ok = dsup_test:wait_until(fun() -> raw_count(Raw, monitor_p_exit) >= ?N_MON_NAME end, 120000),
    ?assertEqual(?N_MON_NAME, raw_count(Raw, monitor_p_exit)),
    %% The callers' names (3 times the quota) went with their calls: a name
    %% never seen is still accepted, and the quota was never reached (a loop
    %% turn reads at most 2 MB, about 12,000 of these calls).
    ok = probe(Raw, <<"probe_0@">>, ?PROBE),
    ?assertEqual(false, log_has(H, [<<"reached its quota">>])),

    %% MONITOR_P {Own, Echo, Ref} with Ref made on a node that exists nowhere:
    %% the monitor holds that node's name until the worker ends.
    flood(Raw, ?N_MON_REF, fun(I) ->
        frame(<<104, 4, 97, 19, Own/binary, EchoB/binary,
                (ref_bytes(<<"fake_d_", (int(I))/binary, "@">>, I))/binary>>)
    end),
    %% Frames are handled in order: the answer to a probe sent after the
    %% flood means it was all read.
    ok = probe(Raw, Peer, ?PROBE + 1),
    Sent = ?N_REG_SEND + ?N_MON_NAME + ?N_CALL + ?N_MON_REF,
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    RssPeak = stop_rss_sampler(Sampler),
    Rss1 = rss_kb(OsPid),
    ct:pal("flood of ~b frames read in ~b ms; RSS ~b kB before, peak ~b kB, ~b kB after",
           [Sent, Elapsed, Rss0, RssPeak, Rss1]),

    %% Past the quota a new name from this peer is refused: the probe with a
    %% reference of a node never seen is dropped; the next one (a reference
    %% of our own node) is answered, and would have come second.
    probe_send(Raw, <<"probe_2@">>, ?PROBE + 2),
    ok = probe(Raw, Peer, ?PROBE + 3),
    ?assertEqual(none, raw_down(Raw, ?PROBE + 2)),
    ok = dsup_test:wait_until(fun() -> log_has(H, [<<"peer ">>, Peer, <<"reached its quota">>]) end, ?T),

    %% The node is alive and nobody else is locked out: a peer with a name it
    %% never saw connects and calls a worker.
    ?assertEqual(pong, net_adm:ping(N)),
    {ok, C2} = dist_raw:connect(N, erlang:get_cookie(), #{name => dsup_test:unique_node(never_seen)}),
    ?assertEqual({ok, {hello, 1}}, dist_raw:call(C2, Echo, {hello, 1}, ?T)),
    ?assertEqual(ok, gen_server:call(Echo, ok, ?T)),
    dist_raw:close(C2),

    %% The node kept exactly the first QUOTA monitors: when the worker ends,
    %% those and no others fire, and their names go with them.
    M0 = raw_count(Raw, monitor_p_exit),
    MRef = erlang:monitor(process, Echo),
    exit(Echo, kill),
    receive {'DOWN', MRef, process, Echo, killed} -> ok after ?T -> ct:fail(echo_not_killed) end,
    %% The quota is free again; this answer comes after the worker's DOWNs.
    ok = probe(Raw, <<"probe_4@">>, ?PROBE + 4),
    ?assertEqual(M0 + ?QUOTA + 1, raw_count(Raw, monitor_p_exit)),
    ?assertEqual(killed, raw_down(Raw, 0)),
    ?assertEqual(killed, raw_down(Raw, ?QUOTA - 1)),
    ?assertEqual(none, raw_down(Raw, ?QUOTA)),

    %% ASan keeps freed memory in quarantine: RSS means nothing there.
    case asan(OsPid) of
        true -> ct:pal("sanitizer build: RSS bound not checked");
        false ->
            ?assert(RssPeak - Rss0 =< ?RSS_GROWTH_MAX_KB),
            ?assert(Rss1 - Rss0 =< ?RSS_GROWTH_MAX_KB)
    end,
    %% A LINK naming a process of another node as its sender is forged: the
    %% connection is closed, and the node still serves.
    Echo2 = spawn_worker(N, echo),
    send_frames(Raw, [frame(<<104, 3, 97, 1, (fake_pid(<<"forger@">>))/binary,
                              (pid_bytes(Echo2))/binary>>)]),
    ok = dsup_test:wait_until(fun() -> raw_closed(Raw) end, ?T),
    %% (the log line may reach the file after the close reaches us)
    ok = dsup_test:wait_until(fun() -> log_has(H, [Peer, <<"names a process of forger@ as its sender">>]) end, ?T),
    ?assertEqual(still_here, gen_server:call(Echo2, still_here, ?T)),
    raw_close(Raw),
    dist_raw:close(C),
    assert_names_freed(H).

%% Stop the node and read how many names its table held at the end: the
%% flood's names went with their last user (the old table kept all 1.1M).
assert_names_freed(H) ->
    ?assertEqual({ok, 0}, dsup_test:stop_node(H)),
    {ok, Log} = file:read_file(maps:get(log, H)),
    {match, [Left]} = re:run(Log, "name table at exit: ([0-9]+) names", [{capture, all_but_first, binary}]),
    ct:pal("names left in the table at exit: ~s", [Left]),
    ?assert(binary_to_integer(Left) < 200).

%% Links and monitors that hold names of other nodes keep working while the
%% table churns: names come and go by the hundred thousand around them.
holders_survive_name_churn(Config) ->
    H = ?config(dsup, Config),
    N = maps:get(node, H),
    Echo = spawn_worker(N, echo),
    Self = self(),
    %% A BEAM process that links to the worker and traps exits, and a monitor.
    _Linked = spawn(fun() ->
                           process_flag(trap_exit, true),
                           link(Echo),
                           Self ! linked,
                           receive {'EXIT', Echo, R} -> Self ! {linked_got, R} end
                   end),
    receive linked -> ok after ?T -> ct:fail(no_link) end,
    MRef = erlang:monitor(process, Echo),
    {ok, C} = dist_raw:connect(N, erlang:get_cookie()),
    Peer = atom_to_binary(maps:get(name, C)),
    Raw = raw_open(C, gone_worker(N)),
    Own = maps:get(own, Raw),
    EchoB = pid_bytes(Echo),
    %% Our own pid links too (the EXIT must come back to it), and monitors
    %% with a reference of a node that is not connected: the monitor holds
    %% that node's name.
    send_frames(Raw, [frame(<<104, 3, 97, 1, Own/binary, EchoB/binary>>),
                      frame(<<104, 4, 97, 19, Own/binary, EchoB/binary,
                              (ref_bytes(<<"ghost@">>, ?GHOST))/binary>>)]),
    %% Churn: monitors with references of new nodes, each demonitored right
    %% away (held, then released: freed at the end of the loop turn).
    Churn = 200000,
    flood(Raw, Churn, fun(I) ->
        R = ref_bytes(<<"churn_", (int(I))/binary, "@">>, ?CHURN + I),
        [frame(<<104, 4, 97, 19, Own/binary, EchoB/binary, R/binary>>),
         frame(<<104, 4, 97, 20, Own/binary, EchoB/binary, R/binary>>)]
    end),
    %% Answered after the churn was read: a name never seen is accepted (the
    %% names churned through the table, the quota was never reached), and
    %% the worker still answers.
    ok = probe(Raw, <<"probe_0@">>, ?PROBE),
    ?assertEqual(false, log_has(H, [<<"reached its quota">>])),
    ?assertEqual(ping, gen_server:call(Echo, ping, ?T)),
    M0 = raw_count(Raw, monitor_p_exit),
    %% The worker ends: every holder hears of it, with the real reason.
    exit(Echo, {shutdown, churned}),
    receive {'DOWN', MRef, process, Echo, R1} -> ?assertEqual({shutdown, churned}, R1)
    after ?T -> ct:fail(no_down) end,
    receive {linked_got, R2} -> ?assertEqual({shutdown, churned}, R2)
    after ?T -> ct:fail(no_exit_to_linked) end,
    ok = dsup_test:wait_until(fun() -> raw_down(Raw, ?GHOST) =/= none end, ?T),
    ?assertEqual({shutdown, churned}, raw_down(Raw, ?GHOST)),
    ?assertEqual([{shutdown, churned}], raw_exits(Raw)),
    %% No churned monitor was left to fire: the ghost's DOWN and this probe's
    %% answer are the only ones since.
    ok = probe(Raw, Peer, ?PROBE + 1),
    ?assertEqual(M0 + 2, raw_count(Raw, monitor_p_exit)),
    raw_close(Raw),
    dist_raw:close(C),
    ?assertEqual(pong, net_adm:ping(N)),
    assert_names_freed(H).

%% ------------------------------------------------------------------ frames

atom(B) when byte_size(B) < 256 -> <<119, (byte_size(B)), B/binary>>.
int(I) -> integer_to_binary(I).

%% NEW_PID_EXT of a node that exists nowhere (a name without host: the node
%% cannot even try to connect to it).
fake_pid(Node) -> <<88, (atom(Node))/binary, 1:32, 0:32, 1:32>>.

%% NEWER_REFERENCE_EXT made on Node; I is its first word.
ref_bytes(Node, I) -> <<90, 3:16, (atom(Node))/binary, 1:32, I:32, 0:32, 0:32>>.

pid_bytes(Pid) -> <<131, B/binary>> = term_to_binary(Pid, [{minor_version, 2}]), B.

%% A pid of the node's that no process has any more.
gone_worker(Node) ->
    P = spawn_worker(Node, echo),
    MRef = erlang:monitor(process, P),
    exit(P, kill),
    receive {'DOWN', MRef, process, P, _} -> P after ?T -> ct:fail(worker_not_gone) end.

%% One distribution frame: Len:32, 'p', Ctrl (and Msg), each with version byte.
frame(Ctrl) -> frame1(<<112, 131, Ctrl/binary>>).
frame(Ctrl, Msg) -> frame1(<<112, 131, Ctrl/binary, 131, Msg/binary>>).
frame1(B) -> <<(byte_size(B)):32, B/binary>>.

flood(Raw, Count, Fun) -> flood(Raw, 0, Count, Fun).
flood(_Raw, I, Count, _Fun) when I >= Count -> ok;
flood(Raw, I, Count, Fun) ->
    Last = min(Count, I + ?BATCH),
    send_frames(Raw, [Fun(K) || K <- lists:seq(I, Last - 1)]),
    flood(Raw, Last, Count, Fun).

send_frames(#{sock := S}, IoList) -> ok = gen_tcp:send(S, IoList).

%% A probe is MONITOR_P {19, Own, Gone, Ref} with Ref made on Node: answered
%% MONITOR_P_EXIT noproc when Node's name decodes (known, or new and under
%% the quota), dropped past the quota. probe/3 waits for the answer; a probe
%% that must be refused is sent with probe_send/3 and followed by one that
%% must be answered (frames are handled in order: its answer would have come
%% first).
probe(Raw, Node, Id) ->
    probe_send(Raw, Node, Id),
    dsup_test:wait_until(fun() -> raw_down(Raw, Id) =:= noproc end, 60000).

probe_send(#{own := Own, gone := Gone} = Raw, Node, Id) ->
    send_frames(Raw, [frame(<<104, 4, 97, 19, Own/binary, Gone/binary, (ref_bytes(Node, Id))/binary>>)]).

%% ------------------------------------------------------------------ raw reader

%% Switch the connection to raw packets: a process reads and splits frames,
%% answers ticks, counts MONITOR_P_EXIT and EXIT frames and keeps the reason
%% of each MONITOR_P_EXIT by the first word of its reference, and the
%% reasons of EXITs (newest first). Names in frames are never made atoms here.
raw_open(#{sock := S} = C, Gone) ->
    ok = inet:setopts(S, [{packet, raw}]),
    St = #{monitor_p_exit => 0, exit => 0, downs => #{}, exits => [], closed => false},
    Reader = spawn_link(fun() -> reader(S, <<>>, St) end),
    C#{reader => Reader, own => pid_bytes(dist_raw:self_pid(C)), gone => pid_bytes(Gone)}.

raw_close(#{reader := R}) ->
    unlink(R),
    exit(R, kill).

raw_count(Raw, What) -> query(Raw, fun(St) -> maps:get(What, St) end).
raw_closed(Raw) -> query(Raw, fun(St) -> maps:get(closed, St) end).
raw_exits(Raw) -> [reason(B) || B <- query(Raw, fun(St) -> maps:get(exits, St) end)].
%% The reason of the MONITOR_P_EXIT whose reference's first word is Id, or none.
raw_down(Raw, Id) ->
    case query(Raw, fun(#{downs := D}) -> maps:find(Id, D) end) of
        {ok, B} -> reason(B);
        error -> none
    end.

%% Reasons here are made of atoms this node has: decoding cannot add any.
reason(B) -> binary_to_term(<<131, B/binary>>, [safe]).

%% Ask the reader (its state is large: it is read where it lives).
query(#{reader := R}, Fun) ->
    Ref = make_ref(),
    R ! {query, self(), Ref, Fun},
    receive {Ref, Res} -> Res after ?T -> ct:fail(reader_not_answering) end.

reader(S, Buf, St) ->
    receive
        {query, From, Ref, Fun} -> From ! {Ref, Fun(St)}, reader(S, Buf, St)
    after 0 ->
        case gen_tcp:recv(S, 0, 50) of
            {ok, Data} ->
                {Buf1, St1} = frames(S, <<Buf/binary, Data/binary>>, St),
                reader(S, Buf1, St1);
            {error, timeout} -> reader(S, Buf, St);
            {error, _} -> reader_closed(St#{closed := true})
        end
    end.

reader_closed(St) ->
    receive {query, From, Ref, Fun} -> From ! {Ref, Fun(St)}, reader_closed(St) end.

frames(S, <<0:32, Rest/binary>>, St) ->
    ok = gen_tcp:send(S, <<0:32>>),
    frames(S, Rest, St);
frames(S, <<Len:32, F:Len/binary, Rest/binary>>, St) ->
    frames(S, Rest, on_frame(F, St));
frames(_S, Buf, St) -> {Buf, St}.

%% MONITOR_P_EXIT {21, FromProc, ToPid, Ref, Reason}; EXIT {3, From, To, Reason}.
on_frame(<<112, 131, 104, 5, 97, 21, R0/binary>>, #{monitor_p_exit := M, downs := D} = St) ->
    {Id, Reason} = ref_word(skip_proc(skip_proc(R0))),
    St#{monitor_p_exit := M + 1, downs := D#{Id => Reason}};
on_frame(<<112, 131, 104, 4, 97, 3, R0/binary>>, #{exit := M, exits := E} = St) ->
    St#{exit := M + 1, exits := [skip_proc(skip_proc(R0)) | E]};
on_frame(_, St) -> St.

skip_atom(<<119, L, _:L/binary, R/binary>>) -> R;
skip_atom(<<118, L:16, _:L/binary, R/binary>>) -> R;
skip_atom(<<100, L:16, _:L/binary, R/binary>>) -> R;
skip_atom(<<115, L, _:L/binary, R/binary>>) -> R.

%% A pid (NEW_PID_EXT, PID_EXT) or a registered name.
skip_proc(<<88, R0/binary>>) -> <<_:12/binary, R/binary>> = skip_atom(R0), R;
skip_proc(<<103, R0/binary>>) -> <<_:9/binary, R/binary>> = skip_atom(R0), R;
skip_proc(B) -> skip_atom(B).

%% The first word of a NEWER_REFERENCE_EXT or NEW_REFERENCE_EXT, and what follows it.
ref_word(<<90, N:16, R0/binary>>) ->
    <<_Cr:32, Id:32, _:(4 * (N - 1))/binary, R/binary>> = skip_atom(R0),
    {Id, R};
ref_word(<<114, N:16, R0/binary>>) ->
    <<_Cr, Id:32, _:(4 * (N - 1))/binary, R/binary>> = skip_atom(R0),
    {Id, R}.

%% ------------------------------------------------------------------ helpers
spawn_worker(Node, Type) ->
    case gen_server:call({dsup_node, Node}, {spawn, Type, []}, ?T) of
        {ok, Pid} when is_pid(Pid) -> Pid;
        Other -> ct:fail({spawn_failed, Type, Other})
    end.

rss_kb(OsPid) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/status"),
    [_, Rest] = binary:split(B, <<"VmRSS:">>),
    [Num | _] = string:lexemes(Rest, " \t\nkB"),
    binary_to_integer(Num).

asan(OsPid) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/maps"),
    binary:match(B, <<"libasan">>) =/= nomatch.

start_rss_sampler(OsPid) ->
    spawn_link(fun() -> sample(OsPid, 0) end).

sample(OsPid, Peak) ->
    P = max(Peak, rss_kb(OsPid)),
    receive {stop, From} -> From ! {peak, P}
    after 100 -> sample(OsPid, P)
    end.

stop_rss_sampler(S) ->
    S ! {stop, self()},
    receive {peak, P} -> P after ?T -> ct:fail(sampler_lost) end.

log_has(H, Parts) ->
    {ok, B} = file:read_file(maps:get(log, H)),
    lists:any(fun(Line) -> lists:all(fun(P) -> binary:match(Line, P) =/= nomatch end, Parts) end,
              binary:split(B, <<"\n">>, [global])).
