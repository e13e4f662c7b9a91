%%% sys debug options on C workers (issue 17 item 3), against a real BEAM
%%% gen_server holding the same integer, on this lane's release (OTP 25 or
%%% 27) and, when $DSUP_OTHER_ERL is set (make test), from a node on the
%%% other lane's release too.
%%%
%%% Compared exactly: every raw reply (gen:call(P, system, ...)), the logged
%%% events (with each call's tag, which differs per call, blanked), messages
%%% in/out, the get_status layout. Checked for plausibility (they cannot be
%%% equal): start/current time (local date-times between the test's own
%%% erlang:localtime() readings) and reductions (OTP's count BEAM work; a C
%%% worker's grow with each message handled). trace, log print and
%%% log_to_file are refused with {error, {not_supported, What}}.
-module(dsup_sys_SUITE).

-behaviour(gen_server).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 10000).

suite() ->
    [{timetrap, {seconds, 60}}].

all() ->
    [statistics_like_beam, log_like_beam, status_with_debug_like_beam,
     trace_refused_clearly, debug_from_other_release].

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Config.

end_per_suite(_Config) -> ok.

init_per_testcase(TC, Config) ->
    H = dsup_test:start_node(#{name => TC, priv_dir => ?config(priv_dir, Config)}),
    ct:log("OTP ~s here; dsup-node ~p, log ~s",
           [erlang:system_info(otp_release), maps:get(node, H), maps:get(log, H)]),
    [{dsup, H} | Config].

end_per_testcase(TC, Config) ->
    dsup_terms_SUITE:end_per_testcase(TC, Config).

dnode(Config) -> maps:get(node, ?config(dsup, Config)).

%% A C counter worker and a BEAM gen_server, both holding N.
pair(Config, N) ->
    {ok, W} = gen_server:call({dsup_node, dnode(Config)}, {spawn, counter, [{value, N}]}, ?T),
    {ok, G} = gen_server:start(?MODULE, N, []),
    {G, W}.

%% ------------------------------------------------------------------ the BEAM gen_server

init(N) -> {ok, N}.
handle_call(get, _From, N) -> {reply, N, N}.
handle_cast(inc, N) -> {noreply, N + 1}.
handle_info(_, N) -> {noreply, N}.

%% The same traffic to one process: 2 calls, 2 casts, 1 info, and a final
%% call so that everything has been handled: in 6, out 3.
traffic(P) ->
    V = gen_server:call(P, get, ?T),
    gen_server:cast(P, inc),
    P ! hello,
    gen_server:cast(P, inc),
    V = gen_server:call(P, get, ?T) - 2,
    V2 = gen_server:call(P, get, ?T),
    V2 = V + 2,
    ok.

raw(P, Req) -> gen:call(P, system, Req, ?T).

%% Raw replies of both must be identical; returns the C worker's.
same_raw(G, W, Req) ->
    {ok, R} = raw(G, Req),
    ?assertEqual({Req, R}, {Req, element(2, raw(W, Req))}),
    R.

%% Events with the call tags (one per call) blanked.
norm(Events) -> [norm_ev(E) || E <- Events].
norm_ev({in, {'$gen_call', {From, _Tag}, Req}}) -> {in, {'$gen_call', {From, tag}, Req}};
norm_ev({out, Reply, {To, _Tag}, State}) -> {out, Reply, {To, tag}, State};
norm_ev(E) -> E.

stats_map({ok, L}) when is_list(L) -> maps:from_list(L).

%% ================================================================== cases

statistics_like_beam(Config) ->
    {G, W} = pair(Config, 3),
    {ok, no_statistics} = same_raw(G, W, {debug, {statistics, get}}),
    Before = erlang:localtime(),
    ok = same_raw(G, W, {debug, {statistics, true}}),
    [ok = traffic(P) || P <- [G, W]],
    %% on again: kept as it is (counts not reset)
    ok = same_raw(G, W, {debug, {statistics, true}}),
    GS = sys:statistics(G, get),
    WS = sys:statistics(W, get),
    After = erlang:localtime(),
    ct:log("gen_server: ~p~nC worker:   ~p", [GS, WS]),
    ?assertEqual([K || {K, _} <- element(2, GS)], [K || {K, _} <- element(2, WS)]),
    #{start_time := St, current_time := Ct, reductions := R,
      messages_in := In, messages_out := Out} = stats_map(WS),
    #{messages_in := In, messages_out := Out} = stats_map(GS),
    ?assertEqual({6, 3}, {In, Out}),
    ?assert(Before =< St andalso St =< Ct andalso Ct =< After),
    {{_, _, _}, {_, _, _}} = St,
    ?assert(is_integer(R) andalso R >= In),
    %% more work, more reductions; the count goes on
    ok = traffic(W),
    #{reductions := R2, messages_in := 12} = stats_map(sys:statistics(W, get)),
    ?assert(R2 > R),
    ok = same_raw(G, W, {debug, {statistics, false}}),
    {ok, no_statistics} = same_raw(G, W, {debug, {statistics, get}}),
    %% and from scratch when switched on again
    ok = sys:statistics(W, true),
    #{messages_in := 0, messages_out := 0} = stats_map(sys:statistics(W, get)),
    gen_server:stop(G).

log_like_beam(Config) ->
    {G, W} = pair(Config, 10),
    {ok, []} = same_raw(G, W, {debug, {log, get}}),
    ok = same_raw(G, W, {debug, {log, true}}),
    [ok = traffic(P) || P <- [G, W]],
    {ok, GL} = sys:log(G, get),
    {ok, WL} = sys:log(W, get),
    ct:log("gen_server log: ~p~nC worker log:   ~p", [GL, WL]),
    ?assertEqual(norm(GL), norm(WL)),
    %% 12 events: the first call's two have gone
    ?assertMatch([{in, {'$gen_cast', inc}}, {noreply, 11}, {in, hello}, {noreply, 11},
                  {in, {'$gen_cast', inc}}, {noreply, 12}, {in, {'$gen_call', _, get}} | _],
                 norm(WL)),
    %% the default keeps the last 10, oldest first
    ?assertEqual(10, length(WL)),
    %% {true, N} while on: kept as it is (OTP's install_debug)
    ok = same_raw(G, W, {debug, {log, {true, 2}}}),
    ok = same_raw(G, W, {debug, {log, false}}),
    {ok, []} = same_raw(G, W, {debug, {log, get}}),
    ok = same_raw(G, W, {debug, {log, {true, 3}}}),
    [ok = traffic(P) || P <- [G, W]],
    {ok, G3} = sys:log(G, get),
    {ok, W3} = sys:log(W, get),
    ?assertEqual(3, length(W3)),
    ?assertEqual(norm(G3), norm(W3)),
    %% bad arguments: what sys.erl answers
    unknown_debug = same_raw(G, W, {debug, {log, {true, 0}}}),
    unknown_debug = same_raw(G, W, {debug, {log, maybe_not}}),
    unknown_debug = same_raw(G, W, {debug, {frobnicate, 1}}),
    %% no_debug: everything off
    ok = same_raw(G, W, {debug, no_debug}),
    {ok, []} = same_raw(G, W, {debug, {log, get}}),
    {ok, no_statistics} = same_raw(G, W, {debug, {statistics, get}}),
    %% a 100 KB message is logged, then written over: its slot's memory
    %% goes back (dsup_node's `memory': heap bytes in use on the dsup-node;
    %% below malloc's mmap threshold, so that the heap counts it)
    Mem = fun() -> proplists:get_value(allocated, gen_server:call({dsup_node, node(W)}, memory, ?T)) end,
    ok = sys:log(W, {true, 2}),
    M0 = Mem(),
    Big = binary:copy(<<"x">>, 100000),
    W ! Big,
    {ok, [{in, Big}, {noreply, 14}]} = sys:log(W, get), % (sys requests are not logged)
    M1 = Mem(),
    [14 = gen_server:call(W, get, ?T) || _ <- [1, 2]],
    {ok, [{in, _}, {out, 14, _, 14}]} = sys:log(W, get),
    M2 = Mem(),
    ct:log("heap in use: ~p before, ~p with the big event logged, ~p after", [M0, M1, M2]),
    case dsup_hostile_net_SUITE:sanitized() of
        true -> ct:log("sanitizer build: its allocator is not malloc's, heap figures not checked");
        false -> ?assert(M1 - M0 > 100000 andalso M1 - M2 > 100000)
    end,
    ok = sys:no_debug(W),
    %% a log too long to allocate for is refused, the worker unharmed
    ?assertEqual({error, {log_too_long, 1000}}, element(2, raw(W, {debug, {log, {true, 1 bsl 40}}}))),
    14 = gen_server:call(W, get, ?T),
    gen_server:stop(G).

status_with_debug_like_beam(Config) ->
    {G, W} = pair(Config, 1),
    [begin ok = sys:statistics(P, true), ok = sys:log(P, {true, 4}), ok = traffic(P) end
     || P <- [G, W]],
    {status, G, {module, gen_server}, [_, running, G, GDbg, GMisc]} = sys:get_status(G, ?T),
    {status, W, {module, gen_server}, [_, running, W, WDbg, WMisc]} = sys:get_status(W, ?T),
    ct:log("gen_server dbg ~p~nmisc ~p~nC worker dbg ~p~nmisc ~p", [GDbg, GMisc, WDbg, WMisc]),
    ?assertEqual(dbg_shape(GDbg), dbg_shape(WDbg)),
    ?assertEqual(misc_norm(G, GMisc), misc_norm(W, WMisc)),
    ?assertMatch([_, _, _, _], logged(WMisc)),
    %% suspended: the status says so, events wait
    [ok = sys:suspend(P) || P <- [G, W]],
    {status, W, _, [_, suspended, W, _, WMisc2]} = sys:get_status(W, ?T),
    {status, G, _, [_, suspended, G, _, GMisc2]} = sys:get_status(G, ?T),
    ?assertEqual(misc_norm(G, GMisc2), misc_norm(W, WMisc2)),
    [ok = sys:resume(P) || P <- [G, W]],
    %% all off: Dbg is [] again, like a fresh gen_server's
    [ok = sys:no_debug(P) || P <- [G, W]],
    {status, W, _, [_, running, W, [], WMisc3]} = sys:get_status(W, ?T),
    ?assertEqual([], logged(WMisc3)),
    gen_server:stop(G).

%% OTP's Dbg: [{log, NLog}, {statistics, {StartTime, {reductions, R0}, In, Out}}],
%% NLog sys.erl's internal ring of {Event, Pid, FormatFun} (its layout
%% changes as it fills: compared by the events it holds).
dbg_shape(Dbg) ->
    [case E of
         {log, NLog} -> {log, lists:sort(norm([Ev || {Ev, _Pid, _Fmt} <- lists:flatten(NLog)]))};
         {statistics, {{{_, _, _}, {_, _, _}}, {reductions, R}, In, Out}} when is_integer(R) ->
             {statistics, In, Out}
     end || E <- Dbg].

%% Both are unsupervised: each its own parent.
misc_norm(Self, Misc) ->
    [case E of
         {header, H} when is_list(H) -> header;
         {data, L} -> {data, [case KV of
                                  {"Logged events", Evs} -> {"Logged events", norm(Evs)};
                                  {"Parent", Self} -> {"Parent", self};
                                  _ -> KV
                              end || KV <- L]}
     end || E <- Misc].

logged(Misc) -> hd([V || {data, L} <- Misc, {"Logged events", V} <- L]).

%% trace and log print write through the process's group leader in OTP; a C
%% worker has none: refused with a clear error, switching off is ok, the
%% worker goes on.
trace_refused_clearly(Config) ->
    {G, W} = pair(Config, 4),
    ?assertEqual({error, {not_supported, trace}}, sys:trace(W, true)),
    ok = sys:trace(W, false),
    ok = sys:log(W, true),
    ?assertEqual({error, {not_supported, print}}, sys:log(W, print)),
    ?assertEqual({error, {not_supported, log_to_file}},
                 sys:log_to_file(W, filename:join(?config(priv_dir, Config), "x.log"))),
    ok = sys:log_to_file(W, false),
    ?assertEqual({error, {not_supported, install}},
                 element(2, raw(W, {debug, {install, {fun(S, _, _) -> S end, x}}}))),
    ok = same_raw(G, W, {debug, {remove, fun(S, _, _) -> S end}}),
    4 = gen_server:call(W, get, ?T),
    {ok, [{in, _}, {out, 4, _, 4}]} = sys:log(W, get),
    gen_server:stop(G).

%% From the other lane's release: the same shapes.
debug_from_other_release(Config) ->
    case os:getenv("DSUP_OTHER_ERL") of
        E when E =:= false; E =:= "" -> {skip, "DSUP_OTHER_ERL not set (make test sets it)"};
        _ ->
            dsup_terms_SUITE:with_other_node(Config, fun(Other) ->
                {ok, W} = gen_server:call({dsup_node, dnode(Config)},
                                          {spawn, counter, [{value, 0}]}, ?T),
                C = fun(M, F, A) -> erpc:call(Other, M, F, A) end,
                ok = C(sys, statistics, [W, true]),
                ok = C(sys, log, [W, true]),
                1 = C(gen_server, call, [W, get, ?T]) + 1,
                {ok, L} = C(sys, statistics, [W, get]),
                #{messages_in := 1, messages_out := 1} = maps:from_list(L),
                {ok, [{in, {'$gen_call', _, get}}, {out, 0, _, 0}]} = C(sys, log, [W, get]),
                {status, W, _, [_, running, _, [_, _], _]} = C(sys, get_status, [W, ?T]),
                {error, {not_supported, trace}} = C(sys, trace, [W, true]),
                ok = C(sys, no_debug, [W])
            end)
    end.
