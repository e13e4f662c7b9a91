%%% @doc Helpers for Common Test suites that run a real `dsup-node' (the dsup
%%% C-node) beside real BEAM nodes. Usable from your own suites: put this
%%% module on the code path (or copy it into your test directory).
%%%
%%% == Starting and stopping a node ==
%%% ```
%%% H = dsup_test:start_node(#{name => my_test, priv_dir => ?config(priv_dir, Config)}),
%%% #{node := Node, os_pid := OsPid, log := LogFile} = H,
%%% {ok, Pid} = gen_server:call({dsup_node, Node}, {spawn, echo, []}),
%%% {ok, 0} = dsup_test:stop_node(H).      % SIGTERM, then the exit status
%%% '''
%%% The binary is `$DSUP_NODE' if set, else `<root>/build/dsup-node', where
%%% `<root>' is `$DSUP_ROOT' if set, else found by walking up from this module's
%%% directory to the first directory holding `Makefile' and `c_src/'.
%%%
%%% The node runs under a dedicated, unlinked owner process (Common Test runs
%%% init_per_suite, each test case and end_per_testcase in different processes,
%%% so the node outlives the process that started it). The owner tees every
%%% output line of the node to `log' (a file under `priv_dir', `log_dir',
%%% `$DSUP_LOG_DIR' or `<root>/build/ct_logs') and keeps the exit status.
%%% If `$DSUP_PIDDIR' is set, each started node's OS pid is written there as a
%%% file so that a wrapper script (scripts/run-ct.sh) can kill leftovers.
%%%
%%% start_node/1 options (all optional):
%%% <ul>
%%% <li>`name' prefix (atom/string) of a unique long name `Prefix_OsPid_N@127.0.0.1';
%%%     `node' a full node name to use as is; `sname' true to use `--sname'.</li>
%%% <li>`cookie' (default erlang:get_cookie(); `none' passes no --cookie),
%%%     `visible' (false),
%%%     `connect' [Node], `listen_port', `net_ticktime', `log_level',
%%%     `extra_args' [string()] appended verbatim, `env' [{K, V}],
%%     `sigpipe' (`default', the default: the node starts with SIGPIPE's
%%     default action, as from a shell; `inherit': the BEAM's, ignored).</li>
%%% <li>`wait': `ready' (default: until net_adm:ping(Node) =:= pong and
%%%     `gen_server:call({dsup_node, Node}, which_workers)' answers), `ping'
%%%     (until ping answers pong), `epmd' (until the name is registered with
%%%     epmd) or `none'.</li>
%%% <li>`timeout' ms for the wait (default 20000).</li>
%%% </ul>
%%% Returns `#{node, os_pid, owner, log, name, cookie, args}'; raises
%%% `error({dsup_node_start_failed, Why, LogTail})' on failure.
%%%
%%% Other helpers: stop_node/1,2 (SIGTERM, wait for exit, SIGKILL after the
%%% deadline; returns `{ok, ExitStatus}' or `{error, {sigterm_timeout, _}}';
%%% calling it again on a stopped node returns the same status),
%%% kill_node/1 (SIGKILL), signal_node/2, wait_exit/2, exit_status/1,
%%% log_tail/2, wait_until/2,3, unique_name/1, unique_node/1, root/0, exe/0.
%%%
%%% Never use a bare sleep in a test: poll a condition with wait_until/2.
-module(dsup_test).

-export([start_node/1, stop_node/1, stop_node/2, kill_node/1, signal_node/2, forget/1,
         wait_exit/2, exit_status/1, is_os_alive/1, log_tail/2,
         wait_until/2, wait_until/3, unique_name/1, unique_node/1,
         root/0, exe/0, require_exe/0, watch_connection/3, elapsed_ms/1,
         start_peer/2, stop_peer/1]).

-define(TAIL_LINES, 400).

%% ---------------------------------------------------------------- names

%% A name unique to this OS process and call: Prefix_OsPid_N.
unique_name(Prefix) ->
    list_to_atom(lists:flatten(io_lib:format("~s_~s_~b",
        [to_list(Prefix), os:getpid(), erlang:unique_integer([positive])]))).

%% A unique long node name on 127.0.0.1.
unique_node(Prefix) ->
    list_to_atom(atom_to_list(unique_name(Prefix)) ++ "@127.0.0.1").

%% ---------------------------------------------------------------- wait

%% Poll Fun every Interval ms (default 50) until it returns true ({ok, _} is
%% returned as is, {true, V} as {ok, V}) or TimeoutMs elapse; then raise
%% error({wait_until_timeout, TimeoutMs, LastResult}). Exceptions from Fun
%% count as "not yet"; {abort, Why} raises error({wait_until_aborted, Why}) at
%% once.
wait_until(Fun, TimeoutMs) ->
    wait_until(Fun, TimeoutMs, 50).

wait_until(Fun, TimeoutMs, Interval) ->
    Deadline = erlang:monotonic_time(millisecond) + TimeoutMs,
    wait_loop(Fun, Deadline, Interval, TimeoutMs).

wait_loop(Fun, Deadline, Interval, TimeoutMs) ->
    Res = try Fun() catch C:R -> {exception, C, R} end,
    case Res of
        true -> ok;
        {true, V} -> {ok, V};
        {ok, _} = Ok -> Ok;
        {abort, Why} -> erlang:error({wait_until_aborted, Why});
        _ ->
            Now = erlang:monotonic_time(millisecond),
            case Now >= Deadline of
                true -> erlang:error({wait_until_timeout, TimeoutMs, Res});
                false ->
                    receive after min(Interval, max(1, Deadline - Now)) -> ok end,
                    wait_loop(Fun, Deadline, Interval, TimeoutMs)
            end
    end.

elapsed_ms(T0) ->
    erlang:convert_time_unit(erlang:monotonic_time() - T0, native, millisecond).

%% ---------------------------------------------------------------- paths

root() ->
    case os:getenv("DSUP_ROOT") of
        R when is_list(R), R =/= "" -> R;
        _ -> find_root(filename:dirname(filename:absname(code:which(?MODULE))))
    end.

find_root("/") -> erlang:error(dsup_root_not_found);
find_root(Dir) ->
    case filelib:is_regular(filename:join(Dir, "Makefile")) andalso
         filelib:is_dir(filename:join(Dir, "c_src")) of
        true -> Dir;
        false -> find_root(filename:dirname(Dir))
    end.

exe() ->
    case os:getenv("DSUP_NODE") of
        E when is_list(E), E =/= "" -> E;
        _ -> filename:join([root(), "build", "dsup-node"])
    end.

%% A suite's first check (init_per_suite): the dsup-node under test is built.
require_exe() ->
    Exe = exe(),
    filelib:is_regular(Exe) orelse ct:fail({dsup_node_not_built, Exe}),
    Exe.

%% ---------------------------------------------------------------- start

start_node(Opts) when is_map(Opts) ->
    Exe = maps:get(exe, Opts, exe()),
    filelib:is_regular(Exe) orelse erlang:error({dsup_node_missing, Exe}),
    Cookie = case maps:get(cookie, Opts, erlang:get_cookie()) of
                 none -> none;                  % no --cookie: the node's default
                 C0 -> to_list(C0)
             end,
    {NameArgs, Node, Name} =
        case Opts of
            #{node := N} ->
                {["--name", atom_to_list(N)], N, hd(string:split(atom_to_list(N), "@"))};
            #{sname := true} ->
                Nm = atom_to_list(unique_name(maps:get(name, Opts, dsup))),
                {ok, Host} = inet:gethostname(),
                {["--sname", Nm], list_to_atom(Nm ++ "@" ++ Host), Nm};
            _ ->
                N = unique_node(maps:get(name, Opts, dsup)),
                {["--name", atom_to_list(N)], N, hd(string:split(atom_to_list(N), "@"))}
        end,
    Args = NameArgs ++ [A || Cookie =/= none, A <- ["--cookie", Cookie]]
        ++ flag(visible, maps:get(visible, Opts, false))
        ++ lists:append([["--connect", to_list(C)] || C <- maps:get(connect, Opts, [])])
        ++ opt("--listen-port", maps:get(listen_port, Opts, undefined))
        ++ opt("--net-ticktime", maps:get(net_ticktime, Opts, undefined))
        ++ opt("--log-level", maps:get(log_level, Opts, default_log_level()))
        ++ maps:get(extra_args, Opts, []),
    LogDir = log_dir(Opts),
    ok = filelib:ensure_dir(filename:join(LogDir, "x")),
    Log = filename:join(LogDir, Name ++ ".log"),
    Env = maps:get(env, Opts, []),
    Caller = self(),
    Ref = make_ref(),
    {RunExe, RunArgs} = sigpipe_wrap(maps:get(sigpipe, Opts, default), Exe, Args),
    Owner = spawn(fun() -> owner_init(Caller, Ref, RunExe, RunArgs, Env, Log) end),
    OsPid = receive
                {Ref, {started, P}} -> P;
                {Ref, {start_error, Why}} -> erlang:error({dsup_node_start_failed, Why, []})
            after 10000 ->
                exit(Owner, kill),
                erlang:error({dsup_node_start_failed, owner_timeout, []})
            end,
    H = #{node => Node, os_pid => OsPid, owner => Owner, log => Log, name => Name,
          cookie => Cookie, args => Args},
    Timeout = maps:get(timeout, Opts, 20000),
    try
        case maps:get(wait, Opts, ready) of
            none -> ok;
            ready -> wait_until(fun() -> alive_or_abort(H, fun() -> is_ready(Node) end)
                                end, Timeout);
            epmd -> wait_until(fun() -> alive_or_abort(H, fun() -> epmd_registered(Name) end)
                               end, Timeout);
            ping -> wait_until(fun() -> alive_or_abort(H, fun() -> net_adm:ping(Node) =:= pong end)
                               end, Timeout)
        end,
        H
    catch
        error:{wait_until_aborted, {node_exited, St}} ->
            erlang:error({dsup_node_start_failed, {exited, St}, log_tail(H, 40)});
        error:{wait_until_timeout, _, Last} ->
            _ = kill_node(H),
            erlang:error({dsup_node_start_failed, {not_ready, Last}, log_tail(H, 40)})
    end.

%% The BEAM ignores SIGPIPE and a program it spawns inherits that; a node
%% started from a shell or an init system does not. Run the node with the
%% default disposition (through `env --default-signal=PIPE', same pid after
%% exec), so that a write to a reset socket is as fatal here as in production.
sigpipe_wrap(default, Exe, Args) ->
    case default_signal_env() of
        false -> {Exe, Args};
        Env -> {Env, ["--default-signal=PIPE", Exe | Args]}
    end;
sigpipe_wrap(inherit, Exe, Args) ->
    {Exe, Args}.

%% env(1) if it supports --default-signal (coreutils 8.31+), else false;
%% asked once per VM.
default_signal_env() ->
    case persistent_term:get({?MODULE, default_signal_env}, undefined) of
        undefined ->
            R = case os:find_executable("env") of
                    false -> false;
                    Env ->
                        case os:cmd(Env ++ " --default-signal=PIPE true && echo yes") of
                            "yes\n" -> Env;
                            _ -> false
                        end
                end,
            persistent_term:put({?MODULE, default_signal_env}, R),
            R;
        R -> R
    end.

%% ping answered, and the node's dsup_node server answers which_workers.
is_ready(Node) ->
    net_adm:ping(Node) =:= pong andalso
        is_list(catch gen_server:call({dsup_node, Node}, which_workers, 2000)).

alive_or_abort(H, Fun) ->
    case exit_status(H) of
        running -> Fun();
        St -> {abort, {node_exited, St}}
    end.

epmd_registered(Name) ->
    case erl_epmd:names("127.0.0.1") of
        {ok, Names} -> lists:keymember(Name, 1, Names);
        _ -> false
    end.

default_log_level() ->
    case os:getenv("DSUP_LOG_LEVEL") of
        L when is_list(L), L =/= "" -> L;
        _ -> undefined
    end.

log_dir(#{priv_dir := D}) -> D;
log_dir(#{log_dir := D}) -> D;
log_dir(_) ->
    case os:getenv("DSUP_LOG_DIR") of
        D when is_list(D), D =/= "" -> D;
        _ -> filename:join([root(), "build", "ct_logs", "dsup_nodes"])
    end.

flag(_, false) -> [];
flag(visible, true) -> ["--visible"].

opt(_, undefined) -> [];
opt(F, V) -> [F, to_list(V)].

%% ---------------------------------------------------------------- owner

owner_init(Caller, Ref, Exe, Args, Env, Log) ->
    {ok, Fd} = file:open(Log, [append, raw, binary]),
    _ = file:write(Fd, io_lib:format("### ~s ~s~n", [Exe, lists:join(" ", Args)])),
    PortOpts = [exit_status, stderr_to_stdout, {line, 4096}, {args, Args}, binary]
        ++ [{env, Env} || Env =/= []],
    try open_port({spawn_executable, Exe}, PortOpts) of
        Port ->
            {os_pid, OsPid} = erlang:port_info(Port, os_pid),
            write_pidfile(OsPid),
            Caller ! {Ref, {started, OsPid}},
            owner_loop(#{port => Port, fd => Fd, os_pid => OsPid, status => running,
                         waiters => [], tail => queue:new(), n => 0, partial => <<>>})
    catch
        C:R ->
            _ = file:write(Fd, io_lib:format("### open_port failed: ~p:~p~n", [C, R])),
            Caller ! {Ref, {start_error, {C, R}}}
    end.

owner_loop(#{port := Port, fd := Fd} = S) ->
    receive
        {Port, {data, {Eol, Bin}}} ->
            S1 = case Eol of
                     noeol -> S#{partial := <<(maps:get(partial, S))/binary, Bin/binary>>};
                     eol ->
                         Line = <<(maps:get(partial, S))/binary, Bin/binary>>,
                         _ = file:write(Fd, [Line, $\n]),
                         push_line(Line, S#{partial := <<>>})
                 end,
            owner_loop(S1);
        {Port, {exit_status, St}} ->
            S1 = case maps:get(partial, S) of
                     <<>> -> S;
                     P -> _ = file:write(Fd, [P, $\n]), push_line(P, S)
                 end,
            _ = file:write(Fd, io_lib:format("### exit_status ~p~n", [St])),
            _ = file:close(Fd),
            remove_pidfile(maps:get(os_pid, S)),
            [From ! {Tag, {exited, St}} || {From, Tag} <- maps:get(waiters, S)],
            owner_loop(S1#{status := {exited, St}, waiters := []});
        {wait_exit, From, Tag} ->
            case maps:get(status, S) of
                running -> owner_loop(S#{waiters := [{From, Tag} | maps:get(waiters, S)]});
                St -> From ! {Tag, St}, owner_loop(S)
            end;
        {status, From, Tag} ->
            From ! {Tag, maps:get(status, S)},
            owner_loop(S);
        {tail, From, Tag, N} ->
            L = queue:to_list(maps:get(tail, S)),
            From ! {Tag, lists:nthtail(max(0, length(L) - N), L)},
            owner_loop(S);
        {stop_owner, From, Tag} ->
            _ = file:close(Fd),
            From ! {Tag, ok}
        %% (the owner of an exited node keeps answering status/tail queries;
        %%  forget/1 ends it)
    end.

push_line(Line, #{tail := Q, n := N} = S) when N >= ?TAIL_LINES ->
    {_, Q1} = queue:out(Q),
    S#{tail := queue:in(Line, Q1)};
push_line(Line, #{tail := Q, n := N} = S) ->
    S#{tail := queue:in(Line, Q), n := N + 1}.

owner_req(#{owner := Owner}, Msg, Timeout) ->
    Tag = erlang:monitor(process, Owner),
    Owner ! erlang:insert_element(2, erlang:insert_element(2, Msg, Tag), self()),
    receive
        {Tag, R} -> erlang:demonitor(Tag, [flush]), R;
        {'DOWN', Tag, _, _, Why} -> {owner_down, Why}
    after Timeout ->
        erlang:demonitor(Tag, [flush]), timeout
    end.

write_pidfile(OsPid) ->
    case os:getenv("DSUP_PIDDIR") of
        D when is_list(D), D =/= "" ->
            file:write_file(filename:join(D, integer_to_list(OsPid)), <<>>);
        _ -> ok
    end.

remove_pidfile(OsPid) ->
    case os:getenv("DSUP_PIDDIR") of
        D when is_list(D), D =/= "" ->
            file:delete(filename:join(D, integer_to_list(OsPid)));
        _ -> ok
    end.

%% ---------------------------------------------------------------- stop

%% running | {exited, ExitStatus} (128+N for death by signal N).
exit_status(H) ->
    case owner_req(H, {status}, 5000) of
        {owner_down, _} -> {exited, unknown};
        R -> R
    end.

%% Wait up to TimeoutMs for the node to exit: {exited, Status} | timeout.
wait_exit(H, TimeoutMs) ->
    case owner_req(H, {wait_exit}, TimeoutMs) of
        {owner_down, _} -> {exited, unknown};
        R -> R
    end.

stop_node(H) -> stop_node(H, 15000).

%% SIGTERM; wait up to TimeoutMs for the exit status; SIGKILL if still alive.
%% {ok, ExitStatus} | {error, {sigterm_timeout, StatusAfterKill}}.
stop_node(H, TimeoutMs) ->
    _ = signal_node(H, "TERM"),
    Res = case wait_exit(H, TimeoutMs) of
              {exited, St} -> {ok, St};
              _ ->
                  _ = signal_node(H, "KILL"),
                  {error, {sigterm_timeout, wait_exit(H, 5000)}}
          end,
    Res.

%% End the owner process of a node that has exited (frees its state).
forget(H) ->
    case exit_status(H) of
        running -> {error, running};
        _ -> _ = owner_req(H, {stop_owner}, 2000), ok
    end.

%% SIGKILL; returns {exited, Status} once the OS process is gone.
kill_node(H) ->
    _ = signal_node(H, "KILL"),
    wait_exit(H, 10000).

%% Send a signal (e.g. "TERM", "INT", "KILL") to the node's OS process, if it
%% is still running.
signal_node(#{os_pid := OsPid} = H, Sig) ->
    case exit_status(H) of
        running -> os:cmd("kill -" ++ Sig ++ " " ++ integer_to_list(OsPid)), ok;
        _ -> not_running
    end.

is_os_alive(#{os_pid := OsPid}) ->
    filelib:is_dir("/proc/" ++ integer_to_list(OsPid)).

%% The last N output lines of the node (from memory while the owner lives,
%% else from the log file).
log_tail(H, N) ->
    case owner_req(H, {tail, N}, 2000) of
        L when is_list(L) -> L;
        _ ->
            case file:read_file(maps:get(log, H)) of
                {ok, B} ->
                    Ls = binary:split(B, <<"\n">>, [global, trim]),
                    lists:nthtail(max(0, length(Ls) - N), Ls);
                _ -> []
            end
    end.

%% ---------------------------------------------------------------- peers

%% Start a BEAM peer node Prefix_OsPid_N@127.0.0.1 (long names, our cookie,
%% this module's directory on its code path). Opts: args (extra erl args),
%% connection (standard_io | default: distribution). Returns {Peer, Node}.
start_peer(Prefix, Opts) ->
    Dir = filename:dirname(filename:absname(code:which(?MODULE))),
    Name = unique_name(Prefix),
    PeerOpts0 = #{name => Name, host => "127.0.0.1", longnames => true,
                  wait_boot => 30000,
                  args => ["-setcookie", atom_to_list(erlang:get_cookie()), "-pa", Dir
                           | maps:get(args, Opts, [])]},
    PeerOpts = case maps:find(connection, Opts) of
                   {ok, Conn} -> PeerOpts0#{connection => Conn};
                   error -> PeerOpts0
               end,
    {ok, Peer, Node} = peer:start_link(PeerOpts),
    {Peer, Node}.

stop_peer(Peer) ->
    catch peer:stop(Peer),
    ok.

%% Run on a BEAM node (e.g. a `peer'): connect to Node, then check for
%% DurationMs that Node stays in nodes(Kind) (Kind = visible | hidden) and that
%% no nodedown arrives. ok | {lost, AfterMs, Why}.
watch_connection(Node, Kind, DurationMs) ->
    ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
    case net_adm:ping(Node) of
        pong ->
            T0 = erlang:monotonic_time(),
            Deadline = erlang:monotonic_time(millisecond) + DurationMs,
            watch_loop(Node, Kind, Deadline, T0);
        pang -> {lost, 0, pang}
    end.

watch_loop(Node, Kind, Deadline, T0) ->
    receive
        {nodedown, Node, Info} -> {lost, elapsed_ms(T0), {nodedown, Info}}
    after 100 ->
        case lists:member(Node, nodes(Kind)) of
            false -> {lost, elapsed_ms(T0), {not_in_nodes, Kind, nodes(connected)}};
            true ->
                case erlang:monotonic_time(millisecond) >= Deadline of
                    true -> ok;
                    false -> watch_loop(Node, Kind, Deadline, T0)
                end
        end
    end.

to_list(A) when is_atom(A) -> atom_to_list(A);
to_list(I) when is_integer(I) -> integer_to_list(I);
to_list(B) when is_binary(B) -> binary_to_list(B);
to_list(L) when is_list(L) -> L.
