%%% The instructions and allocations a dsup-node spends per start, under
%%% callgrind (bench/start_cost.sh runs it): node A runs under callgrind,
%%% node B beside it. Each phase makes Warm starts, zeroes A's counters,
%%% makes N more and dumps them (callgrind_control), so a dump holds N
%%% starts in a warm node:
%%%   local    start_child of a keyword spec on A, which owns every name
%%%            (before B's instance joins)
%%%   here     start_child_here of a map spec as the shim sends it, on A
%%%   forward  start_child on A of names B owns: A forwards them
-module(start_cost).
-export([main/1]).

-define(SUP, 'Elixir.StartCost').
-define(T, 60000).

main([AS, BS, CgPid, WarmS, NS]) ->
    A = list_to_atom(AS), B = list_to_atom(BS),
    Warm = list_to_integer(WarmS), N = list_to_integer(NS),
    try run(A, B, CgPid, Warm, N) of
        ok -> halt(0)
    catch C:R:St ->
        io:format(standard_error, "start_cost failed: ~p:~p~n~p~n", [C, R, St]),
        halt(1)
    end.

run(A, B, CgPid, Warm, N) ->
    wait(fun() -> net_adm:ping(A) =:= pong andalso
                      catch gen_server:call({?SUP, A}, nodes, 2000) =:= [A] end),
    %% past the replica pass that follows the instance's start (3 s)
    timer:sleep(4000),
    Phase = fun(Tag, Start, Names) ->
                    {W, Rest} = lists:split(Warm, Names),
                    [Start(K) || K <- W],
                    ctl(CgPid, "-z"),
                    [Start(K) || K <- lists:sublist(Rest, N)],
                    ctl(CgPid, "-d " ++ Tag)
            end,
    Local = fun(K) -> {ok, P, K} = call(A, {start_child, {counter, [{name, K}]}, undefined}),
                      A = node(P) end,
    Phase("local", Local, [{l, I} || I <- lists:seq(1, Warm + N)]),
    Here = fun(K) -> {ok, _, K} = call(A, {start_child_here, K,
                                           #{id => K, start => {counter, start_link, [[]]},
                                             args => [], restart => permanent, shutdown => 5000}})
           end,
    Phase("here", Here, [{h, I} || I <- lists:seq(1, Warm + N)]),
    {ok, _} = gen_server:call({dsup_node, B}, {start_supervisor, ?SUP, []}, ?T),
    wait(fun() -> lists:sort(call(A, nodes)) =:= lists:sort([A, B]) end),
    timer:sleep(4000),
    Owned = [{f, I} || I <- lists:seq(1, 4 * (Warm + N)), call(A, {node_for, {f, I}}) =:= B],
    Fwd = fun(K) -> {ok, P, K} = call(A, {start_child, {counter, [{name, K}]}, undefined}),
                    B = node(P) end,
    Phase("forward", Fwd, lists:sublist(Owned, Warm + N)),
    ok.

call(Node, Msg) -> gen_server:call({?SUP, Node}, Msg, ?T).

ctl(Pid, Args) -> os:cmd("callgrind_control " ++ Args ++ " " ++ Pid).

wait(F) -> wait(F, 600).
wait(F, 0) -> error({timeout, catch F()});
wait(F, K) -> case catch F() of true -> ok; _ -> timer:sleep(100), wait(F, K - 1) end.
