%%% The baseline's child: a counter gen_server with the contract of dsup's
%%% built-in `counter' C worker (get, {add, K}, inc cast; other calls echo).
%%% Started with a {via, bl_dsup, {Inst, Key}} name, so gen registers it
%%% through bl_dsup:register_name/2, i.e. pg:join, as upstream does.
-module(bl_counter).
-behaviour(gen_server).
-export([start_link/1, init/1, handle_call/3, handle_cast/2, handle_info/2]).

start_link(Opts) ->
    case lists:keytake(name, 1, Opts) of
        {value, {name, Name}, Rest} -> gen_server:start_link(Name, ?MODULE, Rest, []);
        false -> gen_server:start_link(?MODULE, Opts, [])
    end.

init(Opts) -> {ok, proplists:get_value(value, Opts, 0)}.

handle_call(get, _From, N) -> {reply, N, N};
handle_call({add, K}, _From, N) -> {reply, N + K, N + K};
handle_call(Msg, _From, N) -> {reply, Msg, N}.

handle_cast(inc, N) -> {noreply, N + 1};
handle_cast(_, N) -> {noreply, N}.

handle_info(_, N) -> {noreply, N}.
