%%% The HTTP endpoints of a dsup-node (--http): /healthz, /metrics,
%%% /status and /status.json, checked with the real tools an operator uses.
%%%
%%% healthz_follows_instance: 200 while the node is registered and its
%%% instance runs; 503 (with the reason) once the instance stops (restart
%%% intensity 0 and a crash); 200 again when the node has restarted it.
%%%
%%% metrics_count_crashes_restarts_and_bad_handshakes: a child crashed with
%%% an error and one killed are counted by reason class, both restarts too,
%%% the crash shows in /status.json's reports; a handshake with the wrong
%%% cookie is counted as a `cookie' failure; peer traffic counters move.
%%%
%%% prometheus_scrapes_children_and_failover: a real Prometheus (Debian's
%%% `prometheus', started here on a free 127.0.0.1 port with a temp dir,
%%% stopped by pid) scrapes two dsup-nodes every 500 ms; its query API
%%% returns, per node, the number of children the ring (computed in Erlang,
%%% dsup_cluster:ring_owner/2) puts there, then after kill -9 of one node all
%%% of them on the survivor. `promtool check metrics' accepts both scrapes.
%%%
%%% status_page_in_chromium: a real headless Chromium loads /status of a node
%%% with 1,000 children: the page renders (screenshot kept as
%%% build/dsup_status_page.png), the children count it shows equals the
%%% instance's count_children, and its search box (pre-filled from #q=...)
%%% finds one child by name and nothing else.
-module(dsup_http_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 15000).
-define(PROM_T, 40000).    % Prometheus start + a few scrapes on a loaded machine

suite() -> [{timetrap, {seconds, 150}}].

all() ->
    [healthz_follows_instance,
     metrics_count_crashes_restarts_and_bad_handshakes,
     prometheus_scrapes_children_and_failover,
     status_page_in_chromium].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(inets),
    [case os:find_executable(E) of
         false -> ct:fail({missing_executable, E, "run scripts/install-deps.sh"});
         _ -> ok
     end || E <- ["prometheus", "promtool", "chromium"]],
    Config.

end_per_suite(_Config) -> ok.

init_per_testcase(_TC, Config) ->
    Name = dsup_test:unique_name('Elixir.DsupHttp'),
    Scope = dsup_cluster:scope_of(Name),
    _ = dsup_cluster:start_beam_scope(node(), Scope),
    [{name, Name}, {scope, Scope} | Config].

end_per_testcase(_TC, Config) ->
    [catch stop_os_pid(P) || P <- persistent_term:get({?MODULE, os_pids}, [])],
    _ = persistent_term:erase({?MODULE, os_pids}),
    dsup_cluster:stop_all_c(persistent_term:get({?MODULE, handles}, [])),
    _ = persistent_term:erase({?MODULE, handles}),
    dsup_cluster:stop_beam_scope(node(), ?config(scope, Config)),
    ok.

%% ------------------------------------------------------------------ cases

healthz_follows_instance(Cfg) ->
    %% room for the three instance restarts below (the node's own intensity)
    {H, Port} = start_c(Cfg, [], ["--max-instance-restarts", "10"]),
    Node = maps:get(node, H),
    Name = ?config(name, Cfg),
    %% registered, no instance yet: healthy
    wait(fun() -> get(Port, "/healthz") =:= {200, <<"ok\n">>} end),
    {ok, _} = dsup_cluster:call(Node, {start_supervisor, Name, [{max_restarts, 0}]}),
    wait(fun() -> get(Port, "/healthz") =:= {200, <<"ok\n">>} end),
    ?assertMatch({404, _}, get(Port, "/nope")),
    %% A crash with intensity 0 ends the instance; the node restarts it after
    %% a backoff that doubles (250, 500, 1000 ms). /healthz is 503, with the
    %% reason, while it is down, and 200 again once it is back.
    Why = <<(atom_to_binary(Name))/binary, " is not running">>,
    Seen = [down_then_up(Name, Node, Port, K, Why) || K <- [1, 2, 3]],
    ct:log("503 seen per instance restart: ~p", [Seen]),
    ?assertEqual(true, lists:last(Seen)),        % a 1 s window is never missed
    ok.

%% Crash a child of the instance (intensity 0 ends it), then poll /healthz
%% every 10 ms until it is 200 again; true if a 503 with the reason was seen.
down_then_up(Name, Node, Port, K, Why) ->
    CName = list_to_atom("hz" ++ integer_to_list(K)),
    {ok, Pid, _} = dsup_cluster:sup(Name, Node, {start_child, {counter, [{name, CName}]}, undefined}),
    catch gen_server:call(Pid, {crash, boom}, 5000),
    {ok, Down} = dsup_test:wait_until(
                   fun() ->
                           case get(Port, "/healthz") of
                               {503, Body} -> put(hz_down, binary:match(Body, Why) =/= nomatch), false;
                               {200, _} -> {true, get(hz_down) =:= true};
                               _ -> false
                           end
                   end, ?T, 10),
    erase(hz_down),
    %% and the instance answers again
    wait(fun() -> is_list(catch dsup_cluster:sup(Name, Node, nodes)) end),
    Down.

metrics_count_crashes_restarts_and_bad_handshakes(Cfg) ->
    {H, Port} = start_c(Cfg, []),
    Node = maps:get(node, H),
    Name = ?config(name, Cfg),
    Sup = atom_to_list(Name),
    {ok, _} = dsup_cluster:call(Node, {start_supervisor, Name, []}),
    {ok, P1, _} = dsup_cluster:sup(Name, Node, {start_child, {counter, [{name, m1}]}, undefined}),
    {ok, P2, _} = dsup_cluster:sup(Name, Node, {start_child, {counter, [{name, m2}]}, undefined}),
    Lbl = "supervisor=\"" ++ Sup ++ "\",type=\"counter\"",
    ?assertEqual(2, metric(Port, "dsup_children_running{" ++ Lbl ++ "}")),
    catch gen_server:call(P1, {crash, boom}, 5000),
    exit(P2, kill),
    wait(fun() -> metric(Port, "dsup_child_restarts_total{" ++ Lbl ++ "}") =:= 2 end),
    ?assertEqual(1, metric(Port, "dsup_child_crashes_total{" ++ Lbl ++ ",reason=\"error\"}")),
    ?assertEqual(1, metric(Port, "dsup_child_crashes_total{" ++ Lbl ++ ",reason=\"killed\"}")),
    ?assertEqual(2, metric(Port, "dsup_children_running{" ++ Lbl ++ "}")),
    {200, Json} = get(Port, "/status.json"),
    ?assertNotEqual(nomatch, binary:match(Json, <<"\"name\":\"m1\",\"pid\":">>)),
    ?assertNotEqual(nomatch, binary:match(Json, <<"boom">>)),
    %% this node's traffic is counted under its name
    Me = "peer=\"" ++ atom_to_list(node()) ++ "\"",
    ?assert(metric(Port, "dsup_peer_received_bytes_total{" ++ Me ++ "}") > 0),
    ?assert(metric(Port, "dsup_peer_sent_messages_total{" ++ Me ++ "}") > 0),
    ?assertEqual(1, metric(Port, "dsup_peer_connected{" ++ Me ++ ",state=\"up\",visible=\"true\"}")),
    %% the release this node runs, as it says itself
    Rel = list_to_integer(erlang:system_info(otp_release)),
    wait(fun() -> metric(Port, "dsup_peer_otp_release{" ++ Me ++ "}") =:= Rel end),
    %% a BEAM node with the wrong cookie: one `cookie' handshake failure,
    %% under peer "" (an inbound peer is named only once it proved the cookie)
    Bad = "dsup_handshake_failures_total{peer=\"\",reason=\"cookie\"}",
    Before = case metric(Port, Bad) of {no_sample, _} -> 0; V0 -> V0 end,
    {Peer, PNode} = dsup_test:start_peer(http_badcookie, #{}),
    try
        true = erpc:call(PNode, erlang, set_cookie, [Node, not_the_cookie]),
        pang = erpc:call(PNode, net_adm, ping, [Node]),
        wait(fun() -> metric(Port, Bad) =:= Before + 1 end)
    after
        dsup_test:stop_peer(Peer)
    end,
    promtool_check(Cfg, Port),
    ok.

prometheus_scrapes_children_and_failover(Cfg) ->
    Name = ?config(name, Cfg),
    {HA, PA} = start_c(Cfg, []),
    A = maps:get(node, HA),
    {HB, PB} = start_c(Cfg, [A]),
    B = maps:get(node, HB),
    [{ok, _} = dsup_cluster:call(N, {start_supervisor, Name, []}) || N <- [A, B]],
    wait(fun() -> [lists:sort(dsup_cluster:sup(Name, N, nodes)) || N <- [A, B]]
                      =:= [lists:sort([A, B]), lists:sort([A, B])] end),
    Names = [{w, I} || I <- lists:seq(1, 60)],
    [{ok, _, CN} = dsup_cluster:sup(Name, A, {start_child, {counter, [{name, CN}]}, undefined})
     || CN <- Names],
    %% reference placement from the Erlang ring, not from the code under test
    Ring = dsup_cluster:ring(lists:sort([A, B])),
    OnA = length([CN || CN <- Names, dsup_cluster:ring_owner(Ring, CN) =:= A]),
    Want = #{PA => OnA, PB => length(Names) - OnA},
    ct:log("expected children per target: ~p", [Want]),
    ?assert(OnA > 0 andalso OnA < length(Names)),
    [promtool_check(Cfg, P) || P <- [PA, PB]],
    PromPort = start_prometheus(Cfg, [PA, PB]),
    Q = "sum by (instance) (dsup_children_running{job=\"dsup\",supervisor=\"" ++ atom_to_list(Name) ++ "\"})",
    try wait(fun() -> expect(per_target(PromPort, Q), Want) end, ?PROM_T)
    catch C:R:St ->
            [ct:log("~s => ~p", [Qd, get(PromPort, "/api/v1/query?query=" ++ uri_string:quote(Qd))])
             || Qd <- ["up", "dsup_children_running", Q]],
            ct:log("targets: ~p", [get(PromPort, "/api/v1/targets")]),
            erlang:raise(C, R, St)
    end,
    %% kill -9 B: its children come back on A, and Prometheus sees them there
    dsup_cluster:kill_c(HB),
    Total = length(Names),
    wait(fun() -> expect(per_target(PromPort, Q), #{PA => Total}) end, ?PROM_T),
    {ok, Ups} = wait(fun() ->
                             case per_target(PromPort, "up{job=\"dsup\"}") of
                                 #{PA := 1, PB := 0} = U -> {true, U};
                                 U -> {up, U}
                             end
                     end, ?PROM_T),
    ct:log("up after the kill: ~p", [Ups]),
    promtool_check(Cfg, PA),
    ok.

status_page_in_chromium(Cfg) ->
    Name = ?config(name, Cfg),
    {H, Port} = start_c(Cfg, []),
    Node = maps:get(node, H),
    {ok, _} = dsup_cluster:call(Node, {start_supervisor, Name, []}),
    N = 1000,
    Self = self(),
    Starters = [spawn_link(fun() ->
                                   [{ok, _, _} = dsup_cluster:sup(Name, Node,
                                                                  {start_child, {counter, [{name, child_name(I)}]},
                                                                   undefined})
                                    || I <- lists:seq(K, N, 4)],
                                   Self ! {started, self()}
                           end) || K <- lists:seq(1, 4)],
    [receive {started, P} -> ok after 60000 -> ct:fail(start_timeout) end || P <- Starters],
    Api = proplists:get_value(active, dsup_cluster:sup(Name, Node, count_children)),
    ?assertEqual(N, Api),
    {200, Json} = get(Port, "/status.json"),
    ?assertEqual(N, length(binary:matches(Json, <<"\"pid\":">>))),
    %% the node filters and caps the list itself
    {200, Few} = get(Port, "/status.json?limit=10"),
    ?assertEqual(10, length(binary:matches(Few, <<"\"pid\":">>))),
    ?assertNotEqual(nomatch, binary:match(Few, <<"\"children_total\":1000,\"children_matched\":1000,">>)),
    {200, One} = get(Port, "/status.json?q=CHILD%5f777"),
    ?assertNotEqual(nomatch, binary:match(One, <<"\"children_total\":1000,\"children_matched\":1,">>)),
    ?assertNotEqual(nomatch, binary:match(One, <<"\"name\":\"child_777\"">>)),
    Shot = filename:join([dsup_test:root(), "build", "dsup_status_page.png"]),
    _ = file:delete(Shot),
    Url = "http://127.0.0.1:" ++ integer_to_list(Port) ++ "/status",
    _ = chromium(Cfg, ["--screenshot=" ++ Shot, "--window-size=1280,1400"], Url),
    Size = filelib:file_size(Shot),
    ct:log("screenshot ~s (~b bytes)", [Shot, Size]),
    ?assert(Size > 10000),
    %% the count on the page equals the API's
    Dom = chromium(Cfg, ["--dump-dom"], Url),
    ?assertEqual(integer_to_list(Api), dom_text(Dom, "id=\"children-count\">")),
    ?assertEqual(N, rows(Dom)),
    %% the search box finds one child by name (pre-filled from the fragment)
    Target = child_name(777),
    Found = chromium(Cfg, ["--dump-dom"], Url ++ "#q=" ++ atom_to_list(Target)),
    ?assertEqual(1, rows(Found)),
    ?assertEqual("1 match", dom_text(Found, "id=\"matches\" class=\"muted\">")),
    ?assertEqual(atom_to_list(Target), dom_text(Found, "<td class=\"child-name\">")),
    ok.

%% ------------------------------------------------------------------ helpers

child_name(I) -> list_to_atom("child_" ++ integer_to_list(I)).

wait(Fun) -> wait(Fun, ?T).
wait(Fun, T) ->
    try dsup_test:wait_until(Fun, T, 100)
    catch error:{wait_until_timeout, _, Last} -> ct:fail({timeout_ms, T, Last})
    end.

remember(Key, V) ->
    persistent_term:put({?MODULE, Key}, persistent_term:get({?MODULE, Key}, []) ++ [V]).

%% A dsup-node serving HTTP on a port it picks; the port is read from its
%% "dsup-node http ADDR:PORT" line.
start_c(Cfg, Connect) -> start_c(Cfg, Connect, []).
start_c(Cfg, Connect, Extra) ->
    H = dsup_cluster:start_c(#{name => http, connect => Connect, priv_dir => ?config(priv_dir, Cfg),
                               extra_args => ["--http", "127.0.0.1:0" | Extra]}),
    remember(handles, H),
    {ok, Port} = wait(fun() ->
                              Lines = [binary_to_list(L) || L <- dsup_test:log_tail(H, 400)],
                              case [P || "dsup-node http 127.0.0.1:" ++ P <- Lines] of
                                  [P | _] -> {true, list_to_integer(string:trim(P))};
                                  [] -> no_http_line
                              end
                      end),
    {H, Port}.

get(Port, Path) ->
    Url = "http://127.0.0.1:" ++ integer_to_list(Port) ++ Path,
    case httpc:request(get, {Url, []}, [{timeout, 5000}], [{body_format, binary}]) of
        {ok, {{_, Status, _}, _Hdrs, Body}} -> {Status, Body};
        {error, E} -> {error, E}
    end.

%% The value of one sample (its full name with labels, as exposed).
metric(Port, Sample) ->
    {200, Body} = get(Port, "/metrics"),
    Lines = string:split(binary_to_list(Body), "\n", all),
    case [V || L <- Lines, [S, V] <- [string:split(L, " ", trailing)], S =:= Sample] of
        [V] -> round(list_to_float_or_int(V));
        [] -> {no_sample, Sample}
    end.

free_port() ->
    {ok, S} = gen_tcp:listen(0, [{ip, {127, 0, 0, 1}}]),
    {ok, P} = inet:port(S),
    gen_tcp:close(S),
    P.

%% promtool reads the exposition on stdin; its verdict is its exit status.
promtool_check(Cfg, Port) ->
    {200, Body} = get(Port, "/metrics"),
    F = filename:join(?config(priv_dir, Cfg), "metrics_" ++ integer_to_list(Port) ++ ".txt"),
    ok = file:write_file(F, Body),
    Out = os:cmd("timeout 30 promtool check metrics < " ++ F ++ " 2>&1; echo \"exit=$?\""),
    ct:log("promtool check metrics (~b bytes): ~s", [byte_size(Body), Out]),
    ?assertMatch({match, _}, re:run(Out, "exit=0\\s*$")).

%% Prometheus on a free loopback port, its data in priv_dir; stopped by pid.
start_prometheus(Cfg, Targets) ->
    Dir = filename:join(?config(priv_dir, Cfg), "prometheus_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = filelib:ensure_dir(filename:join([Dir, "data", "x"])),
    Conf = filename:join(Dir, "prometheus.yml"),
    ok = file:write_file(Conf, io_lib:format(
                                 "global:~n  scrape_interval: 500ms~n  scrape_timeout: 400ms~n"
                                 "scrape_configs:~n  - job_name: dsup~n    static_configs:~n"
                                 "      - targets: [~s]~n",
                                 [lists:join(", ", ["'127.0.0.1:" ++ integer_to_list(T) ++ "'" || T <- Targets])])),
    Port = free_port(),
    Args = ["--config.file=" ++ Conf, "--storage.tsdb.path=" ++ filename:join(Dir, "data"),
            "--web.listen-address=127.0.0.1:" ++ integer_to_list(Port), "--log.level=warn"],
    OsPid = spawn_os(os:find_executable("prometheus"), Args, filename:join(Dir, "prometheus.log")),
    ct:log("prometheus os pid ~b on port ~b, dir ~s", [OsPid, Port, Dir]),
    wait(fun() -> element(1, get(Port, "/-/ready")) =:= 200 end, ?PROM_T),
    Port.

%% An OS process owned by a port in its own Erlang process; its pid is kept
%% so that end_per_testcase stops it whatever happens to the case.
spawn_os(Exe, Args, Log) ->
    Self = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  {ok, Fd} = file:open(Log, [write, raw, binary]),
                  Port = open_port({spawn_executable, Exe},
                                   [{args, Args}, exit_status, stderr_to_stdout, binary]),
                  {os_pid, OsPid} = erlang:port_info(Port, os_pid),
                  Self ! {Ref, OsPid},
                  drain(Port, Fd)
          end),
    receive {Ref, OsPid} -> remember(os_pids, OsPid), OsPid
    after 10000 -> ct:fail(spawn_timeout)
    end.

drain(Port, Fd) ->
    receive
        {Port, {data, D}} -> _ = file:write(Fd, D), drain(Port, Fd);
        {Port, {exit_status, _}} -> file:close(Fd)
    end.

stop_os_pid(OsPid) ->
    P = integer_to_list(OsPid),
    _ = os:cmd("kill " ++ P),
    _ = (catch dsup_test:wait_until(fun() -> os:cmd("kill -0 " ++ P ++ " 2>&1") =/= "" end, 5000, 50)),
    _ = os:cmd("kill -9 " ++ P ++ " 2>/dev/null"),
    ok.

expect(Want, Want) -> true;
expect(Got, _) -> {got, Got}.

%% The instant vector of a query, as #{TargetPort => Value}.
per_target(PromPort, Query) ->
    Path = "/api/v1/query?query=" ++ uri_string:quote(Query),
    case get(PromPort, Path) of
        {200, Body} ->
            RE = "\"instance\":\"127\\.0\\.0\\.1:([0-9]+)\"[^}]*\\},\"value\":\\[[0-9.e+]+,\"([0-9.e+-]+)\"\\]",
            case re:run(Body, RE, [global, {capture, all_but_first, list}]) of
                {match, Ms} -> maps:from_list([{list_to_integer(P), round(list_to_float_or_int(V))} || [P, V] <- Ms]);
                nomatch -> #{}
            end;
        Other ->
            Other
    end.

list_to_float_or_int(V) ->
    try list_to_integer(V) catch error:badarg -> list_to_float(V) end.

%% Headless Chromium, time-bounded, its profile in a temp dir; stdout returned.
chromium(Cfg, Args, Url) ->
    Profile = filename:join(?config(priv_dir, Cfg), "chromium_" ++ integer_to_list(erlang:unique_integer([positive]))),
    ok = filelib:ensure_dir(filename:join(Profile, "x")),
    Cmd = lists:join(" ", ["timeout", "90", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           "--no-first-run", "--disable-extensions", "--user-data-dir=" ++ Profile,
                           "--virtual-time-budget=6000"] ++ Args ++ ["'" ++ Url ++ "'", "2>/dev/null"]),
    Out = os:cmd(Cmd),
    ct:log("~s~n=> ~b bytes", [Cmd, length(Out)]),
    Out.

%% The text right after Marker, up to the next '<'.
dom_text(Dom, Marker) ->
    case string:find(Dom, Marker) of
        nomatch -> {no, Marker};
        Rest -> hd(string:split(string:prefix(Rest, Marker), "<"))
    end.

%% Rows of the children table as rendered (the page's script text has no
%% complete row tag, so it is not counted).
rows(Dom) ->
    case re:run(unicode:characters_to_binary(Dom), "<tr class=\"child( pending)?\"><td>", [global]) of
        {match, Ms} -> length(Ms);
        nomatch -> 0
    end.
