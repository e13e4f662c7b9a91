%%% The examples (examples/, built by `make examples' into build/examples):
%%% the plugin's worker types (Examples.RateLimiter, Examples.Hasher) loaded
%%% into dsup-node with --load, the custom node program (dsup-custom, with
%%% Examples.Greeter), and the refusal of broken plugins.
%%%
%%% The examples are looked for in $DSUP_EXAMPLES_DIR, else in the `examples'
%%% directory beside the dsup-node binary (dsup_test:exe(), so that
%%% `make sanitize' tests build/san/examples).
-module(dsup_examples_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(T, 5000).
-define(RL, 'Elixir.Examples.RateLimiter').
-define(HASHER, 'Elixir.Examples.Hasher').
-define(GREETER, 'Elixir.Examples.Greeter').
%% nth_prime(?SLOW_N) takes about a second of CPU (trial division).
-define(SLOW_N, 500000).
-define(SLOW_P, 7368787).

suite() ->
    [{timetrap, {seconds, 120}}].

all() ->
    [{group, rate_limiter}, {group, hasher}, {group, custom_main}, {group, refusal},
     {group, abi}].

groups() ->
    [{rate_limiter, [], [rl_take_and_retry_after, rl_bad_args, rl_sys_state,
                         rl_acquire_waits_in_order]},
     {hasher, [], [hasher_results, hasher_loop_stays_responsive,
                   hasher_worker_killed_mid_job, hasher_sigterm_mid_job]},
     {custom_main, [], [custom_main_greeter, custom_main_loads_plugin]},
     {refusal, [], [bad_plugin_missing_symbol, bad_plugin_wrong_abi,
                    missing_plugin_file]},
     {abi, [], [abi1_plugin_still_loads]}].

%% ------------------------------------------------------------------ setup

examples_dir() ->
    case os:getenv("DSUP_EXAMPLES_DIR") of
        D when is_list(D), D =/= "" -> D;
        _ -> filename:join(filename:dirname(dsup_test:exe()), "examples")
    end.

ex(File) -> filename:join(examples_dir(), File).

plugin() -> ex("dsup_examples.so").

init_per_suite(Config) ->
    dsup_test:require_exe(),
    Missing = [F || F <- ["dsup_examples.so", "bad_nosym.so", "bad_abi.so", "dsup-custom",
                          "abi1_plugin.so"],
                    not filelib:is_regular(ex(F))],
    case Missing of
        [] -> Config;
        _ -> {fail, {examples_not_built, examples_dir(), Missing, "run: make examples"}}
    end.

end_per_suite(_Config) -> ok.

init_per_group(_, Config) -> Config.
end_per_group(_, _Config) -> ok.

%% The dsup-node a case gets (none: the case starts its own).
node_opts(custom_main_greeter) -> #{exe => ex("dsup-custom")};
node_opts(custom_main_loads_plugin) ->
    #{exe => ex("dsup-custom"), extra_args => ["--load", plugin()]};
node_opts(bad_plugin_missing_symbol) -> none;
node_opts(bad_plugin_wrong_abi) -> none;
node_opts(missing_plugin_file) -> none;
node_opts(abi1_plugin_still_loads) -> #{extra_args => ["--load", ex("abi1_plugin.so")]};
node_opts(_) -> #{extra_args => ["--load", plugin()]}.

init_per_testcase(TC, Config) ->
    case node_opts(TC) of
        none -> Config;
        Opts ->
            H = dsup_test:start_node(Opts#{name => TC, priv_dir => ?config(priv_dir, Config)}),
            ct:log("started ~p: ~s ~s~nlog ~s",
                   [maps:get(node, H), maps:get(exe, Opts, dsup_test:exe()),
                    lists:join(" ", maps:get(args, H)), maps:get(log, H)]),
            [{dsup, H} | Config]
    end.

%% Every node must still run at the end of its case and exit 0 on SIGTERM
%% (hasher_sigterm_mid_job checks its own stop).
end_per_testcase(TC, Config) ->
    case ?config(dsup, Config) of
        undefined -> ok;
        H ->
            Stop = dsup_test:stop_node(H),
            Tail = dsup_test:log_tail(H, 60),
            Failed = ?config(tc_status, Config) =/= ok,
            Failed andalso ct:pal("~p failed; node log tail (~s):~n~s",
                                  [TC, maps:get(log, H), [[L, $\n] || L <- Tail]]),
            San = [L || L <- Tail, binary:match(L, [<<"ERROR: AddressSanitizer">>,
                                                    <<"runtime error:">>,
                                                    <<"ERROR: LeakSanitizer">>]) =/= nomatch],
            case {TC, Stop} of
                _ when San =/= [] -> {fail, {sanitizer_report, San}};
                {hasher_sigterm_mid_job, _} -> ok;
                {_, {ok, 0}} -> ok;
                _ when Failed -> ok;
                _ -> {fail, {node_unclean_exit, Stop, Tail}}
            end
    end.

dnode(Config) -> maps:get(node, ?config(dsup, Config)).

spawn_worker(Node, Type, Args) ->
    case gen_server:call({dsup_node, Node}, {spawn, Type, Args}, ?T) of
        {ok, Pid} when is_pid(Pid) -> Pid;
        Other -> ct:fail({spawn_failed, Type, Args, Other})
    end.

%% Run gen_server:call(Pid, Req) in a new process; await/2 then gives
%% {Result | {'EXIT', Why}, MsTaken, MonotonicMsWhenDone}.
async_call(Pid, Req) ->
    Self = self(),
    Ref = make_ref(),
    spawn(fun() ->
                  T0 = erlang:monotonic_time(),
                  R = (catch gen_server:call(Pid, Req, 60000)),
                  Self ! {Ref, R, dsup_test:elapsed_ms(T0), erlang:monotonic_time(millisecond)}
          end),
    Ref.

await(Ref, Timeout) ->
    receive {Ref, R, Ms, At} -> {R, Ms, At}
    after Timeout -> ct:fail({no_reply_within, Timeout, process_info(self(), messages)})
    end.

%% ------------------------------------------------------------------ rate limiter

rl_take_and_retry_after(Config) ->
    P = spawn_worker(dnode(Config), ?RL, [{rate, 10}, {burst, 3}]),
    ?assertEqual({ok, 2}, gen_server:call(P, {take, 1})),
    ?assertEqual({ok, 0}, gen_server:call(P, {take, 2})),
    {error, {retry_after_ms, Ms}} = gen_server:call(P, {take, 1}),
    ct:log("retry_after_ms ~p", [Ms]),
    ?assert(Ms >= 1 andalso Ms =< 100),          % 10 tokens/s: at most 100 ms per token
    ?assertEqual({error, {exceeds_burst, 3}}, gen_server:call(P, {take, 4})),
    ?assertEqual({error, badarg}, gen_server:call(P, {take, 0})),
    ?assertEqual({error, badarg}, gen_server:call(P, {take, lots})),
    ?assertEqual({error, unknown_call}, gen_server:call(P, what)),
    %% The contract under test is "waiting retry_after_ms is enough": wait
    %% exactly that long (not a poll).
    receive after Ms -> ok end,
    ?assertEqual({ok, 0}, gen_server:call(P, {take, 1})).

rl_bad_args(Config) ->
    N = dnode(Config),
    Spawn = fun(Args) -> gen_server:call({dsup_node, N}, {spawn, ?RL, Args}, ?T) end,
    ?assertEqual({error, {bad_arg, rate}}, Spawn([{rate, -1}])),
    ?assertEqual({error, {bad_arg, rate}}, Spawn([{rate, fast}])),
    ?assertEqual({error, {bad_arg, burst}}, Spawn([{rate, 5}, {burst, 0}])),
    {ok, P} = Spawn([]),
    ?assertMatch(#{rate := 10, burst := 10, tokens := 10}, sys:get_state(P)).

rl_sys_state(Config) ->
    P = spawn_worker(dnode(Config), ?RL, [{rate, 1}, {burst, 5}]),
    ?assertEqual(#{rate => 1, burst => 5, tokens => 5, waiting => 0, granted => 0,
                   refused => 0}, sys:get_state(P)),
    {ok, 1} = gen_server:call(P, {take, 4}),
    {error, {retry_after_ms, _}} = gen_server:call(P, {take, 3}),
    ?assertMatch(#{tokens := 1, granted := 1, refused := 1}, sys:get_state(P)),
    {status, P, _, _} = sys:get_status(P).

%% acquire waits (a deferred reply driven by dsup_send_after); waiters are
%% served in order; a take does not jump the queue; waiters of a killed
%% worker get the exit.
rl_acquire_waits_in_order(Config) ->
    P = spawn_worker(dnode(Config), ?RL, [{rate, 2}, {burst, 1}]),   % 500 ms per token
    {ok, 0} = gen_server:call(P, {take, 1}),
    T0 = erlang:monotonic_time(millisecond),
    %% each acquire is queued (or, on a slow machine, already served) before
    %% the next: waiting + granted counts it either way
    Refs = [begin
                R = async_call(P, {acquire, 1}),
                dsup_test:wait_until(fun() ->
                                         #{waiting := W, granted := G} = sys:get_state(P),
                                         W + G - 1 >= I
                                     end, ?T),
                R
            end || I <- [1, 2, 3]],
    #{waiting := Waiting} = sys:get_state(P),
    {error, {retry_after_ms, Ms}} = gen_server:call(P, {take, 1}),
    ct:log("take behind ~b waiters: retry_after_ms ~p", [Waiting, Ms]),
    ?assert(Ms > 500 * Waiting - 250),                 % behind every queued waiter
    Results = [await(R, ?T) || R <- Refs],
    Times = [At - T0 || {_, _, At} <- Results],
    ct:log("acquire results: ~p; answered at ~p ms after the take", [Results, Times]),
    ?assertEqual([{ok, 0}, {ok, 0}, {ok, 0}], [R || {R, _, _} <- Results]),
    %% in order, the I-th one token (500 ms) later (minus the take's reply latency)
    ?assertEqual(Times, lists:sort(Times)),
    [?assert(T >= 500 * I - 100) || {I, T} <- lists:zip([1, 2, 3], Times)],
    #{waiting := 0, granted := 4} = sys:get_state(P),
    %% a waiter when the worker dies
    Ref = async_call(P, {acquire, 1}),
    dsup_test:wait_until(fun() -> maps:get(waiting, sys:get_state(P)) =:= 1 end, ?T),
    exit(P, kill),
    ?assertMatch({{'EXIT', {killed, _}}, _, _}, await(Ref, ?T)).

%% ------------------------------------------------------------------ hasher

fnv1a(Bin, Rounds) ->
    lists:foldl(fun(_, H0) ->
                        lists:foldl(fun(B, H) -> ((H bxor B) * 1099511628211) band (1 bsl 64 - 1) end,
                                    H0, binary_to_list(Bin))
                end, 14695981039346656037, lists:seq(1, Rounds)).

hasher_results(Config) ->
    P = spawn_worker(dnode(Config), ?HASHER, []),
    ?assertEqual(pong, gen_server:call(P, ping)),
    ?assertEqual({ok, 2}, gen_server:call(P, {nth_prime, 1})),
    ?assertEqual({ok, 7919}, gen_server:call(P, {nth_prime, 1000})),
    Bin = list_to_binary(lists:seq(0, 255)),
    ?assertEqual({ok, fnv1a(<<"hello">>, 1)}, gen_server:call(P, {fnv1a, <<"hello">>, 1})),
    ?assertEqual({ok, fnv1a(Bin, 7)}, gen_server:call(P, {fnv1a, Bin, 7})),
    ?assertEqual({ok, 14695981039346656037}, gen_server:call(P, {fnv1a, <<>>, 3})),
    ?assertEqual({error, badarg}, gen_server:call(P, {nth_prime, 0})),
    ?assertEqual({error, badarg}, gen_server:call(P, {fnv1a, "not a binary", 1})),
    ?assertEqual(#{in_flight => 0, completed => 5}, sys:get_state(P)).

%% While the slow call runs on the thread pool, the same worker, another
%% worker and the node answer at once.
hasher_loop_stays_responsive(Config) ->
    N = dnode(Config),
    P = spawn_worker(N, ?HASHER, []),
    E = spawn_worker(N, echo, []),
    Slow = async_call(P, {nth_prime, ?SLOW_N}),
    dsup_test:wait_until(fun() -> maps:get(in_flight, sys:get_state(P)) =:= 1 end, ?T),
    T0 = erlang:monotonic_time(),
    ?assertEqual(pong, gen_server:call(P, ping, 1000)),
    ?assertEqual({hi, there}, gen_server:call(E, {hi, there}, 1000)),
    ?assert(is_list(gen_server:call({dsup_node, N}, which_workers, 1000))),
    Fast = dsup_test:elapsed_ms(T0),
    %% ...and the slow call was still running meanwhile
    ?assertMatch(#{in_flight := 1}, sys:get_state(P)),
    receive {Slow, _, _, _} = Early -> ct:fail({slow_call_finished_too_soon, Early}) after 0 -> ok end,
    {Res, SlowMs, _} = await(Slow, 60000),
    ct:log("fast calls took ~p ms in all; nth_prime(~p) took ~p ms", [Fast, ?SLOW_N, SlowMs]),
    ?assertEqual({ok, ?SLOW_P}, Res),
    ?assert(Fast < SlowMs),
    ?assertEqual(#{in_flight => 0, completed => 1}, sys:get_state(P)).

%% The worker dies while its job runs: the caller gets the exit, the job's
%% completion finds no worker (done(NULL, ...)), and the node carries on.
hasher_worker_killed_mid_job(Config) ->
    N = dnode(Config),
    P = spawn_worker(N, ?HASHER, []),
    Slow = async_call(P, {nth_prime, ?SLOW_N}),
    dsup_test:wait_until(fun() -> maps:get(in_flight, sys:get_state(P)) =:= 1 end, ?T),
    exit(P, kill),
    ?assertMatch({{'EXIT', {killed, _}}, _, _}, await(Slow, ?T)),
    %% A new worker's job queued behind the orphan one completes normally.
    P2 = spawn_worker(N, ?HASHER, []),
    ?assertEqual({ok, ?SLOW_P}, gen_server:call(P2, {nth_prime, ?SLOW_N}, 60000)),
    ?assertEqual(pong, gen_server:call(P2, ping)).

%% SIGTERM while a job runs: the node still exits 0.
hasher_sigterm_mid_job(Config) ->
    H = ?config(dsup, Config),
    P = spawn_worker(dnode(Config), ?HASHER, []),
    _ = async_call(P, {nth_prime, ?SLOW_N}),
    dsup_test:wait_until(fun() -> maps:get(in_flight, sys:get_state(P)) =:= 1 end, ?T),
    ?assertEqual({ok, 0}, dsup_test:stop_node(H, 15000)).

%% ------------------------------------------------------------------ custom main

custom_main_greeter(Config) ->
    N = dnode(Config),
    G = spawn_worker(N, ?GREETER, []),
    ?assertEqual(<<"hello, world">>, gen_server:call(G, {hello, <<"world">>})),
    ?assertEqual(<<"hello, ann">>, gen_server:call(G, {hello, "ann"})),
    ?assertEqual(<<"hello, Elixir.Bob">>, gen_server:call(G, {hello, 'Elixir.Bob'})),
    ?assertEqual(<<"hello, a", 0, "b">>, gen_server:call(G, {hello, <<"a", 0, "b">>})),
    ?assertEqual({error, unknown_call}, gen_server:call(G, {hello, 42})),
    ?assertEqual(#{greeted => 4}, sys:get_state(G)),
    %% the built-in worker types are there too, the plugin's are not
    E = spawn_worker(N, echo, []),
    ?assertEqual(ping, gen_server:call(E, ping)),
    ?assertMatch({error, _}, gen_server:call({dsup_node, N}, {spawn, ?RL, []}, ?T)),
    ?assertEqual(1, proplists:get_value(?GREETER, gen_server:call({dsup_node, N}, which_workers))).

%% A custom node program loads plugins too (its dsup_* / ei_* are exported).
custom_main_loads_plugin(Config) ->
    N = dnode(Config),
    G = spawn_worker(N, ?GREETER, []),
    ?assertEqual(<<"hello, x">>, gen_server:call(G, {hello, <<"x">>})),
    H = spawn_worker(N, ?HASHER, []),
    ?assertEqual({ok, 7919}, gen_server:call(H, {nth_prime, 1000})),
    R = spawn_worker(N, ?RL, [{rate, 1}]),
    ?assertEqual({ok, 0}, gen_server:call(R, {take, 1})).

%% ------------------------------------------------------------------ refusal

%% The node must exit non-zero, say why, and never come up.
refused(Config, Name, Path, Expect) ->
    H = dsup_test:start_node(#{name => Name, wait => none, priv_dir => ?config(priv_dir, Config),
                               extra_args => ["--load", Path]}),
    Exit = dsup_test:wait_exit(H, 10000),
    Log = dsup_test:log_tail(H, 40),
    ct:log("~s: ~p~n~s", [Path, Exit, [[L, $\n] || L <- Log]]),
    ?assertMatch({exited, St} when is_integer(St) andalso St =/= 0, Exit),
    Text = iolist_to_binary(lists:join($\n, Log)),
    [?assertNotEqual({nomatch, E}, {binary:match(Text, E), E}) || E <- Expect],
    ?assertEqual(pang, net_adm:ping(maps:get(node, H))),
    {ok, Names} = erl_epmd:names("127.0.0.1"),
    ?assertNot(lists:keymember(maps:get(name, H), 1, Names)),
    dsup_test:forget(H).

bad_plugin_missing_symbol(Config) ->
    refused(Config, nosym, ex("bad_nosym.so"),
            [list_to_binary(ex("bad_nosym.so")), <<"does not export dsup_plugin_init">>]).

bad_plugin_wrong_abi(Config) ->
    refused(Config, badabi, ex("bad_abi.so"),
            [list_to_binary(ex("bad_abi.so")), <<"built for ABI version 999">>,
             <<"this node has ">>]).

missing_plugin_file(Config) ->
    Path = ex("no_such_plugin.so"),
    refused(Config, noplugin, Path, [<<"cannot load plugin">>, list_to_binary(Path)]).

%% ------------------------------------------------------------------ abi

%% A plugin built for ABI 1 (shorter worker type struct, registered without
%% its size, init returning 1) loads into this node and its type works; the
%% bytes after its struct are not read as fields (its calls are answered by
%% its own handle_call, and nothing else runs).
abi1_plugin_still_loads(Config) ->
    Node = dnode(Config),
    Types = gen_server:call({dsup_node, Node}, which_workers, ?T),
    {abi1_echo, 0} = lists:keyfind(abi1_echo, 1, Types),
    Pid = spawn_worker(Node, abi1_echo, []),
    {abi1, hello} = gen_server:call(Pid, hello, ?T),
    {abi1, {1, [2]}} = gen_server:call(Pid, {1, [2]}, ?T),
    %% no encode_state in ABI 1's struct here: the state shows as undefined
    undefined = sys:get_state(Pid, ?T).
