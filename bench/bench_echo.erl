%%% The BEAM baseline for bench/call_bench.erl: an Erlang echo gen_server
%%% (call Msg -> Msg), the same contract as dsup's built-in `echo' C worker.
-module(bench_echo).
-behaviour(gen_server).
-export([start/0, init/1, handle_call/3, handle_cast/2, handle_info/2]).

%% Unlinked, so it outlives the rpc process that starts it.
start() -> gen_server:start(?MODULE, [], []).

init([]) -> {ok, nostate}.
handle_call(Msg, _From, S) -> {reply, Msg, S}.
handle_cast(_, S) -> {noreply, S}.
handle_info(_, S) -> {noreply, S}.
