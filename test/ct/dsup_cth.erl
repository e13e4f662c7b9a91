%%% Common Test hook: one line per test case (PASS / FAIL / SKIP / AUTO_SKIP)
%%% appended to the file named by $DSUP_CT_RESULTS, for scripts/run-ct.sh's
%%% summary. Does nothing when the variable is unset.
-module(dsup_cth).

-export([id/1, init/2, post_end_per_testcase/5, on_tc_fail/4, on_tc_skip/4,
         terminate/1]).

id(_) -> ?MODULE.

init(_Id, _Opts) ->
    {ok, #{file => os:getenv("DSUP_CT_RESULTS"), failed => #{}}}.

post_end_per_testcase(Suite, TC, Config, Return, State) ->
    case {proplists:get_value(tc_status, Config), Return} of
        {_, {fail, _}} -> ok;         % reported by on_tc_fail/4
        {_, {error, _}} -> ok;
        {ok, _} -> line(State, "PASS", Suite, TC, ok);
        _ -> ok                       % failed/skipped: on_tc_fail/on_tc_skip
    end,
    {Return, State}.

on_tc_fail(Suite, TC, Reason, State) ->
    line(State, "FAIL", Suite, TC, Reason),
    State#{failed := maps:put({Suite, TC}, true, maps:get(failed, State))}.

on_tc_skip(Suite, TC, {tc_auto_skip, R}, State) ->
    line(State, "AUTO_SKIP", Suite, TC, R), State;
on_tc_skip(Suite, TC, {tc_user_skip, R}, State) ->
    line(State, "SKIP", Suite, TC, R), State;
on_tc_skip(Suite, TC, R, State) ->
    line(State, "SKIP", Suite, TC, R), State.

terminate(_State) -> ok.

line(#{file := false}, _, _, _, _) -> ok;
line(#{file := F}, Kind, Suite, TC, Reason) ->
    Txt = io_lib:format("~s ~p:~p ~0tP~n", [Kind, Suite, tc(TC), Reason, 40]),
    file:write_file(F, unicode:characters_to_binary(Txt), [append]).

tc({TC, _Group}) -> TC;
tc(TC) -> TC.
