%%% Release-dependent behaviour and deep terms, against real BEAM nodes.
%%%
%%% sys: a C worker answers every sys call exactly as a BEAM gen_server on the
%%% caller's release does: the CT node (the lane's release, OTP 25 or 27) is
%%% compared with a gen_server of its own, and a second node on the OTP
%%% release of the other lane ($DSUP_OTHER_ERL, set by `make test`) calls the
%%% same worker at the same time, so one dsup-node answers both forms.
%%%
%%% Deep terms: terms nested 100,000 levels deep (lists, tuples, maps, a mix)
%%% round-trip through an echo worker, travel as exit reasons and pg group
%%% names, and the connection (links, monitors) survives.
-module(dsup_terms_SUITE).

-behaviour(gen_server).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 10000).

suite() ->
    [{timetrap, {seconds, 120}}].

all() ->
    [{group, sys}, {group, deep}, {group, strict}].

groups() ->
    [{sys, [], [sys_like_beam_gen_server, sys_raw_replies_like_beam, sys_other_release,
                sys_both_releases_at_once]},
     {deep, [], [deep_echo_round_trip, deep_exit_reason, deep_pg_group, deep_key_hash]},
     {strict, [], [refused_terms_close_only_that_connection, real_maps_pass]}].

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_Config) -> ok.

init_per_group(_, Config) -> Config.
end_per_group(_, _Config) -> ok.

init_per_testcase(TC, Config) ->
    Extra = case TC of
                deep_pg_group -> ["--scope", "dsup_terms_scope"];
                _ -> []
            end,
    H = dsup_test:start_node(#{name => TC, priv_dir => ?config(priv_dir, Config),
                               extra_args => Extra}),
    ct:log("OTP ~s here; dsup-node ~p, log ~s",
           [erlang:system_info(otp_release), maps:get(node, H), maps:get(log, H)]),
    [{dsup, H} | Config].

end_per_testcase(_TC, Config) ->
    H = ?config(dsup, Config),
    Stop = dsup_test:stop_node(H),
    San = dsup_node_SUITE:sanitizer_lines(maps:get(log, H)),
    case Stop of
        _ when San =/= [] ->
            ct:pal("sanitizer report in ~s:~n~s", [maps:get(log, H), [[L, $\n] || L <- San]]),
            {fail, {sanitizer_report, San}};
        {ok, 0} -> ok;
        Other ->
            ct:pal("dsup-node log tail:~n~s", [[[L, $\n] || L <- dsup_test:log_tail(H, 60)]]),
            {fail, {node_unclean_exit, Other}}
    end.

dnode(Config) -> maps:get(node, ?config(dsup, Config)).

spawn_worker(Node, Type, Args) ->
    {ok, Pid} = gen_server:call({dsup_node, Node}, {spawn, Type, Args}, ?T),
    Pid.

%% ------------------------------------------------------------------ a BEAM gen_server to compare with

init(N) -> {ok, N}.
handle_call(get, _From, N) -> {reply, N, N}.
handle_cast(inc, N) -> {noreply, N + 1}.
handle_info(_, N) -> {noreply, N}.

%% ================================================================== sys

%% Every sys call on a C counter worker returns what it returns for a BEAM
%% gen_server holding the same integer, on this node's release.
sys_like_beam_gen_server(Config) ->
    W = spawn_worker(dnode(Config), counter, [{value, 7}]),
    {ok, G} = gen_server:start(?MODULE, 7, []),
    Both = fun(F) -> {F(G), F(W)} end,
    Same = fun(F) -> {B, C} = Both(F), ?assertEqual(B, C), C end,
    ?assertEqual(7, Same(fun(P) -> sys:get_state(P, ?T) end)),
    ?assertEqual(42, Same(fun(P) -> sys:replace_state(P, fun(S) -> S * 6 end, ?T) end)),
    ?assertEqual(42, Same(fun(P) -> gen_server:call(P, get, ?T) end)),
    ok = Same(fun(P) -> sys:suspend(P, ?T) end),
    %% suspended: a call waits; get_state still answers
    ?assertEqual(42, Same(fun(P) -> sys:get_state(P, ?T) end)),
    Reqs = [{P, gen_server:send_request(P, get)} || P <- [G, W]],
    [?assertEqual(timeout, gen_server:wait_response(R, 300)) || {_, R} <- Reqs],
    ok = Same(fun(P) -> sys:resume(P, ?T) end),
    [?assertEqual({reply, 42}, gen_server:receive_response(R, ?T)) || {_, R} <- Reqs],
    %% get_status: same shape, same status items, same labels, the state inside
    {{status, G, {module, gen_server}, [_, running, _, [], GMisc]},
     {status, W, {module, gen_server}, [_, running, _, [], WMisc]}} =
        Both(fun(P) -> sys:get_status(P, ?T) end),
    ct:log("gen_server status misc: ~p~nC worker status misc: ~p", [GMisc, WMisc]),
    ?assertEqual(misc_shape(GMisc), misc_shape(WMisc)),
    ?assertEqual(42, misc_state(WMisc)),
    %% a fun that fails: the same error for both
    ?assertMatch({{'EXIT', {{callback_failed, {gen_server, system_replace_state}, {error, badarith}}, _}},
                  {'EXIT', {{callback_failed, {gen_server, system_replace_state}, {error, badarith}}, _}}},
                 Both(fun(P) -> catch sys:replace_state(P, fun(S) -> S + a end, ?T) end)),
    ?assertEqual(42, Same(fun(P) -> sys:get_state(P, ?T) end)),
    gen_server:stop(G).

misc_shape(Misc) ->
    [case E of
         {header, H} when is_list(H) -> header;
         {data, L} -> {data, [K || {K, _} <- L]};
         Other -> Other
     end || E <- Misc].

misc_state(Misc) ->
    hd([V || {data, L} <- Misc, {"State", V} <- L]).

%% The raw system replies (what sys receives) are byte for byte the form a
%% BEAM gen_server on this release sends.
sys_raw_replies_like_beam(Config) ->
    W = spawn_worker(dnode(Config), counter, [{value, 5}]),
    {ok, G} = gen_server:start(?MODULE, 5, []),
    [?assertEqual(gen:call(G, system, Req, ?T), gen:call(W, system, Req, ?T))
     || Req <- [get_state, suspend, get_state, resume]],
    {ok, Raw} = gen:call(W, system, get_state, ?T),
    Wrapped = is_tuple(Raw),
    ct:log("OTP ~s: raw get_state reply ~p", [erlang:system_info(otp_release), Raw]),
    ?assertEqual(Wrapped, stdlib_at_least("5.1")),
    gen_server:stop(G).

stdlib_at_least(V) ->
    {ok, Mine} = application:get_key(stdlib, vsn),
    parse_vsn(Mine) >= parse_vsn(V).

parse_vsn(S) -> [list_to_integer(P) || P <- string:lexemes(S, ".")].

%% From a node on the other lane's release: sys works there too, in its form.
sys_other_release(Config) ->
    with_other_node(Config, fun(Other) ->
        W = spawn_worker(dnode(Config), counter, [{value, -6}]),
        check_from(Other, W)
    end).

%% Both releases call one worker, interleaved: each gets its own form.
sys_both_releases_at_once(Config) ->
    with_other_node(Config, fun(Other) ->
        W = spawn_worker(dnode(Config), counter, [{value, -6}]),
        {ok, Here} = gen:call(W, system, get_state, ?T),
        {ok, There} = erpc:call(Other, gen, call, [W, system, get_state, ?T]),
        ct:log("raw get_state here (~s): ~p, on ~p (~s): ~p",
               [erlang:system_info(otp_release), Here, Other,
                erpc:call(Other, erlang, system_info, [otp_release]), There]),
        ?assertEqual(is_tuple(Here), not is_tuple(There)),
        ?assertEqual(-6, sys:get_state(W, ?T)),
        ?assertEqual(-6, erpc:call(Other, sys, get_state, [W, ?T])),
        ?assertEqual(-6, sys:get_state(W, ?T))
    end).

%% On Other: get_state, replace_state (an external fun: nothing of this
%% suite's code runs there), suspend/resume, get_status; and the raw reply
%% has the form of that node's own gen_servers (its rex).
check_from(Other, W) ->
    Rel = erpc:call(Other, erlang, system_info, [otp_release]),
    ct:log("calling from ~p, OTP ~s", [Other, Rel]),
    ?assertEqual(-6, erpc:call(Other, sys, get_state, [W, ?T])),
    ?assertEqual(6, erpc:call(Other, sys, replace_state, [W, fun erlang:abs/1, ?T])),
    ?assertEqual(6, erpc:call(Other, gen_server, call, [W, get, ?T])),
    ok = erpc:call(Other, sys, suspend, [W, ?T]),
    ok = erpc:call(Other, sys, resume, [W, ?T]),
    ?assertMatch({status, W, {module, gen_server}, [_, running, _, [], _]},
                 erpc:call(Other, sys, get_status, [W, ?T])),
    {ok, RawW} = erpc:call(Other, gen, call, [W, system, get_state, ?T]),
    {ok, RawRex} = erpc:call(Other, gen, call, [rex, system, get_state, ?T]),
    ct:log("raw get_state on OTP ~s: C worker ~p, rex ~p", [Rel, RawW, RawRex]),
    %% rex's state is a map: wrapped is {ok, Map}
    ?assertEqual(is_tuple(RawRex), is_tuple(RawW)),
    ?assertEqual(6, erpc:call(Other, sys, get_state, [W, ?T])).

%% Start a node on the other lane's release ($DSUP_OTHER_ERL) for Fun(Node).
with_other_node(_Config, Fun) ->
    case os:getenv("DSUP_OTHER_ERL") of
        Erl when is_list(Erl), Erl =/= "" ->
            Name = dsup_test:unique_name(other),
            Node = list_to_atom(atom_to_list(Name) ++ "@127.0.0.1"),
            Port = open_port({spawn_executable, Erl},
                             [{args, ["-name", atom_to_list(Node), "-setcookie",
                                      atom_to_list(erlang:get_cookie()), "-noshell", "-noinput"]},
                              exit_status, stderr_to_stdout]),
            try
                dsup_test:wait_until(fun() -> net_adm:ping(Node) =:= pong end, 30000),
                Fun(Node)
            after
                catch erpc:call(Node, init, stop, []),
                receive {Port, {exit_status, _}} -> ok after 15000 -> catch port_close(Port) end
            end;
        _ ->
            {skip, "DSUP_OTHER_ERL not set (make test sets it to the other lane's erl)"}
    end.

%% ================================================================== deep terms

-define(DEPTH, 100000).

deep_list(N) -> lists:foldl(fun(_, A) -> [A] end, [], lists:seq(1, N)).
deep_tuple(N) -> lists:foldl(fun(I, A) -> {I, A} end, leaf, lists:seq(1, N)).
deep_map(N) -> lists:foldl(fun(_, A) -> #{k => A} end, #{}, lists:seq(1, N)).
deep_mix(N) ->
    lists:foldl(fun(I, A) ->
                        case I rem 4 of
                            0 -> [A, I];
                            1 -> {A};
                            2 -> #{I => A, x => <<I:32>>};
                            3 -> [I | A]
                        end
                end, "end", lists:seq(1, N)).

%% One gen_server:call with each deep term through an echo worker: the reply
%% is the same term, and a link, a monitor and the connection survive.
deep_echo_round_trip(Config) ->
    Node = dnode(Config),
    E = spawn_worker(Node, echo, []),
    Other = spawn_worker(Node, counter, []),
    process_flag(trap_exit, true),
    true = link(Other),
    MRef = erlang:monitor(process, Other),
    ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
    [begin
         T0 = erlang:monotonic_time(millisecond),
         ?assertEqual(Term, gen_server:call(E, Term, 60000)),
         ct:log("~p: ~b bytes echoed in ~b ms", [Kind, byte_size(term_to_binary(Term)),
                                                 erlang:monotonic_time(millisecond) - T0])
     end || {Kind, Term} <- [{list, deep_list(?DEPTH)}, {tuple, deep_tuple(?DEPTH)},
                             {map, deep_map(?DEPTH)}, {mix, deep_mix(?DEPTH)},
                             {list_1m, deep_list(1000000)}]],
    %% still connected, link and monitor intact
    ?assertEqual(0, gen_server:call(Other, get, ?T)),
    receive
        {nodedown, Node, _} = D -> ct:fail({lost_connection, D});
        {'DOWN', MRef, _, _, _} = D -> ct:fail({monitor_fired, D});
        {'EXIT', Other, _} = X -> ct:fail({link_broke, X})
    after 0 -> ok
    end,
    ?assert(lists:member(Node, nodes(hidden))),
    %% the link still works: the worker's exit reaches us
    ok = gen_server:call(Other, stop, ?T),
    receive {'EXIT', Other, normal} -> ok after ?T -> ct:fail(no_exit_after_deep_terms) end,
    ok.

%% A deep term as an exit reason: the worker dies with it and the monitor
%% delivers it intact.
deep_exit_reason(Config) ->
    W = spawn_worker(dnode(Config), counter, []),
    Ref = erlang:monitor(process, W),
    Reason = {shutdown, deep_mix(?DEPTH)},
    exit(W, Reason),
    receive {'DOWN', Ref, process, W, R} -> ?assertEqual(Reason, R)
    after ?T -> ct:fail(no_down)
    end.

%% pg: a BEAM process joins a group named by a deep term in a scope the
%% dsup-node takes part in; dsup sees the member under that name.
deep_pg_group(Config) ->
    Node = dnode(Config),
    Scope = dsup_terms_scope,
    {ok, ScopePid} = pg:start(Scope),
    Group = {deep, deep_tuple(?DEPTH)},
    Self = self(),
    ok = pg:join(Scope, Group, Self),
    dsup_test:wait_until(fun() ->
        gen_server:call({dsup_node, Node}, {pg_members, Scope, Group}, ?T) =:= [Self]
    end, ?T),
    ?assertEqual([Self], pg:get_members(Scope, Group)),
    ok = pg:leave(Scope, Group, Self),
    dsup_test:wait_until(fun() ->
        gen_server:call({dsup_node, Node}, {pg_members, Scope, Group}, ?T) =:= []
    end, ?T),
    gen_server:stop(ScopePid).

%% A deep child name goes through the ring's phash2 (iterative) and the
%% supervisor's cache; whereis finds it.
deep_key_hash(Config) ->
    Node = dnode(Config),
    Sup = dsup_terms_sup,
    {ok, _} = gen_server:call({dsup_node, Node}, {start_supervisor, Sup, []}, ?T),
    Name = {child, deep_list(?DEPTH)},
    {ok, Pid, Name} = gen_server:call({Sup, Node}, {start_child, {echo, [{name, Name}]}, undefined}, 30000),
    ?assertEqual(Pid, gen_server:call({Sup, Node}, {whereis, Name}, 30000)),
    ?assertEqual(Name, gen_server:call({Sup, Node}, {whois, Pid}, 30000)),
    ?assertEqual(ok, gen_server:call({Sup, Node}, {terminate_child, Pid}, ?T)).

%% ================================================================== what some release refuses

%% A message holding a term that a supported release refuses or mishandles
%% is malformed: the sender's connection is closed (as a BEAM does), the node
%% logs it and serves everyone else.
refused_terms_close_only_that_connection(Config) ->
    Node = dnode(Config),
    Bad = [{dup_keys_1_and_1, <<116, 2:32, 97, 1, 97, 1, 98, 1:32, 97, 2>>},
           {dup_keys_atom_latin1_utf8, <<116, 2:32, 100, 1:16, "a", 97, 1, 119, 1, "a", 97, 2>>},
           {zero_length_bit_binary, <<77, 0:32, 0>>},
           {export_arity_256, <<113, 119, 1, "m", 119, 1, "f", 98, 256:32>>},
           {nan, <<70, 16#7FF8:16, 0:48>>}],
    W = spawn_worker(Node, counter, []),
    MRef = erlang:monitor(process, W),
    [begin
         ct:log("sending ~p", [What]),
         dsup_node_SUITE:bad_frame_case(Config, fun(C) ->
             Ctrl = term_to_binary({6, dist_raw:self_pid(C), '', dsup_node}),
             dist_raw:send_raw(C, [$p, Ctrl, 131, Term])
         end)
     end || {What, Term} <- Bad],
    %% our own connection, its monitor and the worker are untouched
    ?assertEqual(0, gen_server:call(W, get, ?T)),
    receive {'DOWN', MRef, _, _, _} = D -> ct:fail({monitor_fired, D}) after 0 -> ok end,
    {ok, Log} = file:read_file(maps:get(log, ?config(dsup, Config))),
    ?assert(binary:match(Log, <<"malformed message term">>) =/= nomatch).

%% What the BEAM itself sends is never refused: maps of every size and key
%% kind, both 1 and 1.0, structs, nested maps as keys.
real_maps_pass(Config) ->
    E = spawn_worker(dnode(Config), echo, []),
    Terms = [#{1 => a, 1.0 => b, -1 => c, <<1>> => d, <<1:3>> => e, "ab" => f, [a | b] => g,
               {1} => h, #{x => 1, y => 2} => i, #{x => 2, y => 1} => j, 'é' => k,
               list_to_atom([8364]) => l,
               self() => m, make_ref() => n, fun erlang:abs/1 => o, [] => p, {} => q},
             #{'__struct__' => 'Elixir.Foo', a => 1, b => <<"x">>, c => [1, 2]},
             maps:from_list([{I, I} || I <- lists:seq(1, 5000)]),
             maps:from_list([{integer_to_binary(I), #{I => I, -I => I}} || I <- lists:seq(1, 500)]),
             maps:from_list([{float(I), I} || I <- lists:seq(1, 100)] ++ [{I, I} || I <- lists:seq(1, 100)]),
             #{[1, 2, 3] => a, "abc" => b, [$a, $b | $c] => c}],
    [?assertEqual(T, gen_server:call(E, T, ?T)) || T <- Terms].
