%%% The dsup-node command line, its logs and the Makefile's set-up rules,
%%% against the real binary (and real BEAM peers where a connection matters).
%%%
%%% usage_errors: every bad command line exits 64 before anything starts,
%%% with exactly one line on stderr that names the option (nothing on
%%% stdout: no usage dump); --help still prints the usage.
%%% The log cases read the node's own stderr (the log file dsup_test keeps)
%%% and check JSON lines with python3's json module (or jq), a real parser.
-module(dsup_cli_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 10000).
%% The makes run here are fresh top-level makes, also when this suite runs
%% under one (make sanitize passes BUILD/SAN through MAKEFLAGS), and
%% DSUP_NO_APT is what the case sets itself.
-define(CLEAN_ENV, "env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES -u DSUP_NO_APT ").

suite() ->
    [{timetrap, {seconds, 120}}].

all() ->
    [usage_errors, supervisor_key_errors, no_usage_dump_help_still_prints,
     version_matches_version_file, supervisor_specs_parsed_before_start,
     listen_address_ipv4, listen_address_ipv6, listen_default_every_interface,
     text_log_lines, json_log_lines_parse, make_installs_nothing].

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_Config) -> ok.

%% ------------------------------------------------------------------ helpers

%% Run the binary to completion: {ExitStatus, Stdout, Stderr}.
run(Args, Config) ->
    Dir = ?config(priv_dir, Config),
    Out = filename:join(Dir, "stdout"),
    Err = filename:join(Dir, "stderr"),
    Port = open_port({spawn_executable, "/bin/sh"},
                     [exit_status, binary,
                      {args, ["-c", "exec \"$0\" \"$@\" >\"$DSUP_OUT\" 2>\"$DSUP_ERR\"",
                              dsup_test:exe() | Args]},
                      {env, [{"DSUP_OUT", Out}, {"DSUP_ERR", Err}]}]),
    Status = receive {Port, {exit_status, S}} -> S
             after ?T -> ct:fail({timeout, Args})
             end,
    {ok, O} = file:read_file(Out),
    {ok, E} = file:read_file(Err),
    {Status, O, E}.

%% Exit 64, nothing on stdout, exactly one line on stderr containing every
%% string in Expect. The stderr line.
usage_error(Args, Expect, Config) ->
    {Status, Out, Err} = run(Args, Config),
    ct:log("~p -> ~p~nstdout: ~p~nstderr: ~s", [Args, Status, Out, Err]),
    ?assertEqual({Args, 64}, {Args, Status}),
    ?assertEqual({Args, <<>>}, {Args, Out}),
    ?assertMatch({_, [_], <<>>}, {Args, binary:split(Err, <<"\n">>, [global, trim]),
                                  binary:part(Err, byte_size(Err), 0)}),
    ?assertEqual({Args, $\n}, {Args, binary:last(Err)}),
    ?assertEqual({Args, 1}, {Args, length(binary:matches(Err, <<"\n">>))}),
    [?assertNotEqual({Args, X, nomatch}, {Args, X, binary:match(Err, iolist_to_binary(X))})
     || X <- Expect],
    Err.

node_arg() ->
    ["--name", atom_to_list(dsup_test:unique_node(cli)), "--cookie", "c"].

root_file(Name) ->
    {ok, B} = file:read_file(filename:join(dsup_test:root(), Name)),
    string:trim(B).

port_of(H) ->
    {port, P, _} = erl_epmd:port_please(maps:get(name, H), "127.0.0.1"),
    P.

tcp_connect(Addr, Port) ->
    case gen_tcp:connect(Addr, Port, [binary, {active, false}], 3000) of
        {ok, S} -> gen_tcp:close(S), ok;
        {error, E} -> {error, E}
    end.

%% Log lines the node wrote (the dsup_test owner adds "### ..." lines and
%% the node's "dsup-node ready" line comes from stdout).
log_lines(H) ->
    {ok, B} = file:read_file(maps:get(log, H)),
    [L || L <- binary:split(B, <<"\n">>, [global, trim]),
          L =/= <<>>, binary:first(L) =/= $#, not is_prefix(<<"dsup-node ready ">>, L)].

is_prefix(P, B) -> binary:longest_common_prefix([P, B]) =:= byte_size(P).

%% ================================================================== cases

usage_errors(Config) ->
    N = node_arg(),
    Cases =
        [{[], ["--sname", "--name"]},
         {["--name"], ["--name", "needs a value"]},
         {["--name", "bad name@127.0.0.1", "--cookie", "c"], ["--name", "bad name"]},
         {["--name", "x@", "--cookie", "c"], ["--name"]},
         {N ++ ["--bogus-option"], ["--bogus-option", "unknown option"]},
         {N ++ ["stray"], ["'stray'"]},
         {N ++ ["--cookie"], ["--cookie", "needs a value"]},
         {N ++ ["--log-level", "loud"], ["--log-level", "debug, info, warn or error", "loud"]},
         {N ++ ["--log-format", "xml"], ["--log-format", "text or json"]},
         {N ++ ["--net-ticktime", "soon"], ["--net-ticktime", "1..86400"]},
         {N ++ ["--net-ticktime", "0"], ["--net-ticktime"]},
         {N ++ ["--net-ticktime", "10x"], ["--net-ticktime"]},
         {N ++ ["--net-ticktime", "99999999999999999999999"], ["--net-ticktime"]},
         {N ++ ["--listen-port", "abc"], ["--listen-port", "0..65535", "'abc'"]},
         {N ++ ["--listen-port", ""], ["--listen-port"]},
         {N ++ ["--listen-port", "65536"], ["--listen-port"]},
         {N ++ ["--listen-port", "-1"], ["--listen-port"]},
         {N ++ ["--listen-port", " 80"], ["--listen-port"]},
         {N ++ ["--listen-port", "+80"], ["--listen-port"]},
         {N ++ ["--max-frame", "100"], ["--max-frame", "1024..4294967295"]},
         {N ++ ["--max-frame", "4294967296"], ["--max-frame"]},
         {N ++ ["--listen-address", "localhost"], ["--listen-address", "IPv4 or IPv6"]},
         {N ++ ["--listen-address", "127.0.0.256"], ["--listen-address"]},
         {N ++ ["--listen-address", "::g"], ["--listen-address"]},
         {N ++ ["--connect", "nohost"], ["--connect", "NAME@HOST"]},
         {N ++ ["--connect", "a@b@c"], ["--connect"]},
         {N ++ ["--ring-atoms", "otp24"], ["--ring-atoms", "otp25 or otp26"]},
         {N ++ ["--max-instance-restarts", "-1"], ["--max-instance-restarts", "0..10000"]},
         {N ++ ["--max-instance-restarts", "10001"], ["--max-instance-restarts"]},
         {N ++ ["--max-instance-seconds", "0"], ["--max-instance-seconds", "1..86400"]},
         {N ++ ["--max-instance-seconds"], ["--max-instance-seconds", "needs a value"]},
         {N ++ ["--scope", ""], ["--scope"]},
         {N ++ ["--supervisor", "Foo", "--supervisor", "Foo,max_restarts=1"],
          ["--supervisor", "given twice"]}],
    [usage_error(A, E, Config) || {A, E} <- Cases],
    ok.

%% Every key and value of --supervisor is checked before the node starts,
%% in one style; the nodes=/listeners= lists never become a malformed term.
supervisor_key_errors(Config) ->
    N = node_arg(),
    Keys = ["cache_children", "monitor_nodes", "nodes", "listeners", "max_restarts",
            "max_seconds"],
    Err = usage_error(N ++ ["--supervisor", "Foo,bogus=1"],
                      ["--supervisor", "unknown key 'bogus'"] ++ Keys, Config),
    ct:log("~s", [Err]),
    Bad = [{"X,nodes=a@h+", "nodes"},
           {"X,nodes=a@h++b@h", "nodes"},
           {"X,nodes=+a@h", "nodes"},
           {"X,nodes=+", "nodes"},
           {"X,nodes=ab", "nodes"},
           {"X,nodes=", "nodes="},
           {"X,listeners=a++b", "listeners"},
           {"X,listeners=a+", "listeners"},
           {"X,max_restarts=abc", "max_restarts"},
           {"X,max_restarts=-1", "max_restarts"},
           {"X,max_restarts=1000001", "max_restarts"},
           {"X,max_seconds=0", "max_seconds"},
           {"X,max_seconds=5s", "max_seconds"},
           {"X,cache_children=maybe", "cache_children"},
           {"X,monitor_nodes=yes", "monitor_nodes"},
           {"X,,max_seconds=1", "key=value"},
           {"X,max_seconds", "key=value"},
           {"max_seconds=1", "instance name"},
           {",max_seconds=1", "instance name"}],
    [usage_error(N ++ ["--supervisor", S], ["--supervisor", K, S], Config) || {S, K} <- Bad],
    ok.

no_usage_dump_help_still_prints(Config) ->
    {0, Help, <<>>} = run(["--help"], Config),
    [?assertNotEqual(nomatch, binary:match(Help, O))
     || O <- [<<"--listen-address">>, <<"--log-format">>, <<"--version">>, <<"usage:">>]],
    %% an error after a good option still prints only its line
    usage_error(["--help-me"], ["--help-me"], Config).

version_matches_version_file(Config) ->
    V = root_file("VERSION"),
    ?assertMatch({match, _}, re:run(V, "^[0-9]+\\.[0-9]+\\.[0-9]+")),
    {0, Out, <<>>} = run(["--version"], Config),
    ?assertEqual(<<"dsup-node ", V/binary, "\n">>, Out),
    %% the same source for dsup.pc (written by make install) and mix.exs
    Root = dsup_test:root(),
    Prefix = filename:join(?config(priv_dir, Config), "prefix"),
    %% (its own build dir: the suite may run against another build, e.g. build/san)
    Build = filename:join(?config(priv_dir, Config), "build"),
    Make = os:cmd(?CLEAN_ENV ++ "make -s -C " ++ Root ++ build_erl() ++ " install OPT=-O0 BUILD=" ++ Build ++ " PREFIX=" ++ Prefix
                  ++ " 2>&1; echo rc=$?"),
    ct:log("make install: ~s", [Make]),
    ?assertNotEqual(nomatch, string:find(Make, "rc=0")),
    {ok, Pc} = file:read_file(filename:join([Prefix, "lib", "pkgconfig", "dsup.pc"])),
    ?assertMatch({match, _}, re:run(Pc, <<"\nVersion: ", V/binary, "\n">>)),
    case os:find_executable("elixir") of
        false -> ok;
        _ ->
            Mix = os:cmd("cd " ++ Root ++ "/elixir_shim && elixir -e "
                         "'Mix.start(); Code.require_file(\"mix.exs\"); "
                         "IO.puts(\"version=\" <> Mix.Project.config()[:version])' 2>&1"),
            ct:log("mix.exs: ~s", [Mix]),
            ?assertNotEqual(nomatch, string:find(Mix, "version=" ++ binary_to_list(V)))
    end.

%% Well-formed specs (every key, '+' lists) reach the instances: the ring of
%% nodes=Self+ghost is [Self]; nodes=ghost1+ghost2 excludes this node.
supervisor_specs_parsed_before_start(Config) ->
    Node = dsup_test:unique_node(cli_sup),
    A = dsup_test:unique_name(cli_a),
    B = dsup_test:unique_name(cli_b),
    H = dsup_test:start_node(
          #{node => Node, priv_dir => ?config(priv_dir, Config),
            extra_args => ["--supervisor", atom_to_list(A) ++ ",nodes=" ++ atom_to_list(Node)
                           ++ "+ghost@127.0.0.1,listeners=l1+l2,max_restarts=5,max_seconds=7,"
                           "cache_children=false,monitor_nodes=cluster",
                           "--supervisor", atom_to_list(B)
                           ++ ",nodes=ghost1@127.0.0.1+ghost2@127.0.0.1,listeners=l1"]}),
    try
        dsup_test:wait_until(fun() -> gen_server:call({A, Node}, nodes, ?T) =:= [Node] end, ?T),
        ?assertEqual([], gen_server:call({B, Node}, nodes, ?T))
    after
        {ok, 0} = dsup_test:stop_node(H)
    end.

%% --listen-address 127.0.0.2 (a node named @127.0.0.2): 127.0.0.2 accepts,
%% 127.0.0.1 refuses on the same port, and a BEAM node still connects.
listen_address_ipv4(Config) ->
    Node = list_to_atom(atom_to_list(dsup_test:unique_name(cli_la)) ++ "@127.0.0.2"),
    H = dsup_test:start_node(#{node => Node, priv_dir => ?config(priv_dir, Config),
                               extra_args => ["--listen-address", "127.0.0.2"]}),
    try
        P = port_of(H),
        ?assertEqual(ok, tcp_connect({127, 0, 0, 2}, P)),
        ?assertEqual({error, econnrefused}, tcp_connect({127, 0, 0, 1}, P)),
        ?assertEqual({error, econnrefused}, tcp_connect({127, 0, 0, 3}, P)),
        {Peer, PNode} = dsup_test:start_peer(cli_la_peer, #{}),
        try
            ?assertEqual(pong, erpc:call(PNode, net_adm, ping, [Node])),
            ?assert(is_list(erpc:call(PNode, gen_server, call,
                                      [{dsup_node, Node}, which_workers, ?T])))
        after
            dsup_test:stop_peer(Peer)
        end
    after
        {ok, 0} = dsup_test:stop_node(H)
    end.

listen_address_ipv6(Config) ->
    case gen_tcp:listen(0, [inet6, {ip, {0, 0, 0, 0, 0, 0, 0, 1}}]) of
        {error, E} -> {skip, {no_ipv6_loopback, E}};
        {ok, L} ->
            gen_tcp:close(L),
            H = dsup_test:start_node(#{name => cli_la6, priv_dir => ?config(priv_dir, Config),
                                       wait => epmd, extra_args => ["--listen-address", "::1"]}),
            try
                P = port_of(H),
                ?assertEqual(ok, tcp_connect({0, 0, 0, 0, 0, 0, 0, 1}, P)),
                ?assertEqual({error, econnrefused}, tcp_connect({127, 0, 0, 1}, P))
            after
                {ok, 0} = dsup_test:stop_node(H)
            end
    end.

%% The default (documented in the README): every IPv4 interface.
listen_default_every_interface(Config) ->
    H = dsup_test:start_node(#{name => cli_ld, priv_dir => ?config(priv_dir, Config)}),
    try
        P = port_of(H),
        [?assertEqual(ok, tcp_connect(A, P)) || A <- [{127, 0, 0, 1}, {127, 0, 0, 2}]]
    after
        {ok, 0} = dsup_test:stop_node(H)
    end.

%% text: "2026-05-01T12:00:00.123Z node level message", UTC, now.
text_log_lines(Config) ->
    H = dsup_test:start_node(#{name => cli_text, priv_dir => ?config(priv_dir, Config),
                               log_level => debug}),
    Node = atom_to_binary(maps:get(node, H)),
    {ok, 0} = dsup_test:stop_node(H),
    Lines = log_lines(H),
    ct:log("~p", [Lines]),
    ?assert(length(Lines) >= 2),
    Now = os:system_time(millisecond),
    lists:foreach(fun(L) ->
        {match, [Ts, N, Lv]} =
            re:run(L, "^([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z) "
                      "(\\S+) (debug|info|warn|error) .", [{capture, all_but_first, binary}]),
        ?assertEqual({L, Node}, {L, N}),
        ?assert(lists:member(Lv, [<<"debug">>, <<"info">>, <<"warn">>, <<"error">>])),
        Ms = calendar:rfc3339_to_system_time(binary_to_list(Ts), [{unit, millisecond}]),
        ?assert(abs(Now - Ms) < 120000)
    end, Lines).

%% json: every line is one JSON object that a real parser reads, with time,
%% node, level, msg; a hostile peer name (quote, backslash, newline, control
%% character, non-ASCII) in a logged event is escaped, not breaking the line.
json_log_lines_parse(Config) ->
    H = dsup_test:start_node(#{name => cli_json, priv_dir => ?config(priv_dir, Config),
                               log_level => debug, extra_args => ["--log-format", "json"]}),
    Node = maps:get(node, H),
    %% A name with control characters is refused at send_name (the node never
    %% logs it); a printable hostile one (quote, backslash, non-ASCII) reaches
    %% the wrong-cookie line and must be escaped there.
    Ctl = list_to_atom("ctl\n\t\x01@127.0.0.1"),
    {error, _} = dist_raw:connect(Node, wrong_cookie, #{name => Ctl}),
    Evil = list_to_atom("ev\"il\\" ++ [233, 8364] ++ "@127.0.0.1"),
    {error, _} = dist_raw:connect(Node, wrong_cookie, #{name => Evil}),
    dsup_test:wait_until(fun() ->
        Ls = log_lines(H),
        lists:any(fun(L) -> binary:match(L, <<"wrong cookie">>) =/= nomatch end, Ls) andalso
            lists:any(fun(L) -> binary:match(L, <<"bad node name">>) =/= nomatch end, Ls)
    end, ?T),
    {ok, 0} = dsup_test:stop_node(H),
    Lines = log_lines(H),
    File = filename:join(?config(priv_dir, Config), "json_lines"),
    ok = file:write_file(File, [[L, $\n] || L <- Lines]),
    Parsed = parse_json_lines(File),
    ct:log("~p lines, parsed: ~p", [length(Lines), Parsed]),
    ?assertEqual(length(Lines), length(Parsed)),
    NodeBin = atom_to_binary(Node),
    [begin
         ?assertEqual(NodeBin, maps:get(<<"node">>, O)),
         ?assert(lists:member(maps:get(<<"level">>, O), [<<"debug">>, <<"info">>, <<"warn">>,
                                                         <<"error">>])),
         _ = calendar:rfc3339_to_system_time(binary_to_list(maps:get(<<"time">>, O))),
         ?assertMatch({match, _}, re:run(maps:get(<<"time">>, O),
                                         "^[0-9-]{10}T[0-9:]{8}\\.[0-9]{3}Z$")),
         ?assert(is_binary(maps:get(<<"msg">>, O)))
     end || O <- Parsed],
    EvilText = atom_to_binary(Evil, utf8),
    ?assert(lists:any(fun(O) -> binary:match(maps:get(<<"msg">>, O), EvilText) =/= nomatch end,
                      Parsed)).

%% Each line through python3's json module (or jq), re-emitted as Erlang
%% terms (strings as lists of code points): [#{Key => Binary}].
parse_json_lines(File) ->
    Py = "import json,sys\n"
         "for l in open(sys.argv[1], 'rb'):\n"
         "    o = json.loads(l)\n"
         "    assert type(o) is dict, o\n"
         "    print('#{' + ','.join('%s => %s' % ([ord(c) for c in k], [ord(c) for c in v])\n"
         "                          for k, v in o.items()) + '}.')\n",
    PyFile = File ++ ".py",
    ok = file:write_file(PyFile, Py),
    Out = case os:find_executable("python3") of
              false ->
                  os:find_executable("jq") =/= false orelse ct:fail(no_json_parser),
                  os:cmd("jq -r -c '\"#{\" + ([to_entries[] | (.key|explode|tostring) + \" => \""
                         " + (.value|explode|tostring)] | join(\",\")) + \"}.\"' "
                         ++ File ++ " 2>&1");
              Python -> os:cmd(Python ++ " " ++ PyFile ++ " " ++ File ++ " 2>&1")
          end,
    ct:log("parser output:~n~s", [Out]),
    {ok, Toks, _} = erl_scan:string(Out),
    [begin
         {ok, E} = erl_parse:parse_exprs(T),
         {value, M, _} = erl_eval:exprs(E, []),
         ?assertEqual(4, map_size(M)),
         maps:from_list([{unicode:characters_to_binary(K), unicode:characters_to_binary(V)}
                         || {K, V} <- maps:to_list(M)])
     end || T <- split_dots(Toks, [])].

split_dots([], []) -> [];
split_dots([{dot, _} = D | R], Acc) -> [lists:reverse([D | Acc]) | split_dots(R, [])];
split_dots([T | R], Acc) -> split_dots(R, [T | Acc]).

%% Plain `make` installs nothing; `make deps` does (unless DSUP_NO_APT=1,
%% which names the missing package instead); `make` without erl says to
%% run `make deps`. apt-get and sudo are stubs that record their calls, and
%% ct_run is hidden from PATH so that the set-up sees something missing.
make_installs_nothing(Config) ->
    Dir = ?config(priv_dir, Config),
    Root = dsup_test:root(),
    Stub = filename:join(Dir, "stub"),
    Bin = filename:join(Dir, "bin"),
    Calls = filename:join(Dir, "apt_calls"),
    ok = filelib:ensure_dir(filename:join(Stub, "x")),
    ok = filelib:ensure_dir(filename:join(Bin, "x")),
    [begin
         F = filename:join(Stub, S),
         ok = file:write_file(F, "#!/bin/sh\necho \"" ++ S ++ " $*\" >> " ++ Calls ++ "\n"
                              ++ case S of "sudo" -> "exec \"$@\"\n"; _ -> "exit 0\n" end),
         ok = file:change_mode(F, 8#755)
     end || S <- ["apt-get", "sudo"]],
    %% PATH: the stubs, then links to every tool in the real PATH but ct_run
    Real = string:split(os:getenv("PATH"), ":", all),
    [link_tools(D, Bin) || D <- Real, D =/= ""],   % the first of a name wins
    ok = file:delete(filename:join(Bin, "ct_run")),
    Env = ?CLEAN_ENV ++ "PATH=" ++ Stub ++ ":" ++ Bin ++ " ",
    Build = filename:join(Dir, "build"),
    Make = fun(Args) ->
                   R = os:cmd(Env ++ "make -s -C " ++ Root ++ build_erl() ++ " BUILD=" ++ Build ++ " OPT=-O0 "
                              ++ Args ++ " 2>&1; echo \"rc=$?\""),
                   ct:log("make ~s:~n~s", [Args, R]),
                   R
           end,
    Called = fun() -> case file:read_file(Calls) of {ok, B} -> B; _ -> <<>> end end,
    %% plain make, on a fresh build dir: builds, installs nothing
    ?assertNotEqual(nomatch, string:find(Make(""), "rc=0")),
    ?assert(filelib:is_regular(filename:join(Build, "dsup-node"))),
    ?assertEqual(<<>>, Called()),
    %% make deps with DSUP_NO_APT=1: no apt, fails naming the package
    R1 = Make("deps DSUP_NO_APT=1"),
    ?assertEqual(<<>>, Called()),
    ?assertNotEqual(nomatch, string:find(R1, "erlang-common-test")),
    ?assertEqual(nomatch, string:find(R1, "rc=0")),
    %% the control: without it, make deps installs the missing package
    ?assertNotEqual(nomatch, string:find(Make("deps"), "rc=0")),
    ?assertNotEqual(nomatch, binary:match(Called(), <<"apt-get install">>)),
    ?assertNotEqual(nomatch, binary:match(Called(), <<"erlang-common-test">>)),
    ok = file:delete(Calls),
    %% no erl: plain make fails with a clear message, still without apt
    R2 = Make("BUILD=" ++ Build ++ "2 ERL=dsup-no-such-erl"),
    ?assertEqual(<<>>, Called()),
    ?assertNotEqual(nomatch, string:find(R2, "make deps")),
    ?assertEqual(nomatch, string:find(R2, "rc=0")).

link_tools(Dir, Bin) ->
    case file:list_dir(Dir) of
        {ok, Fs} ->
            [file:make_symlink(filename:join(Dir, F), filename:join(Bin, F)) || F <- Fs,
             F =/= "apt-get", F =/= "sudo"];
        _ -> ok
    end.

%% The erl whose erl_interface builds the node: the one the lane's PATH finds
%% first may be another release's (lane OTP 27 runs Debian 13's erl, whose
%% libei needs Debian 13's libc to link); scripts/test-lanes.sh names it.
build_erl() ->
    case os:getenv("DSUP_BUILD_ERL") of
        E when is_list(E), E =/= "" -> " ERL=" ++ E;
        _ -> ""
    end.
