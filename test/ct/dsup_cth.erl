%%% Common Test hook: one line per test case (PASS / FAIL / SKIP / AUTO_SKIP)
%%% appended to the file named by $DSUP_CT_RESULTS, for scripts/run-ct.sh's
%%% summary (nothing when the variable is unset).
%%%
%%% Under `rebar3 ct' (no scripts/run-ct.sh around it) the hook also:
%%%  - fails every suite at once, saying why, when the CT node is not
%%%    distributed (rebar3 falls back to nonode@nohost when it cannot start
%%%    distribution; every case would then wait for dsup-nodes that cannot
%%%    reach it);
%%%  - records the OS pids of the dsup-nodes the run starts
%%%    ($DSUP_PIDDIR = build/rebar3/pids/<CT VM pid>) and kills those still
%%%    running at the end; directories left by a CT VM that died are swept
%%%    at the next run's start (only processes whose node name carries that
%%%    VM's pid, as dsup_test:unique_name/1 makes them).
-module(dsup_cth).

-export([id/1, init/2, pre_init_per_suite/3, post_end_per_testcase/5, on_tc_fail/4,
         on_tc_skip/4, terminate/1]).

id(_) -> ?MODULE.

init(_Id, _Opts) ->
    {ok, #{file => os:getenv("DSUP_CT_RESULTS"), failed => #{}, piddir => own_piddir()}}.

pre_init_per_suite(_Suite, Config, State) ->
    case node() of
        nonode@nohost ->
            {{fail, "the Common Test node is not distributed (its node name may be taken, "
                    "or epmd unreachable): the suites need a long name on 127.0.0.1"},
             State};
        _ -> {Config, State}
    end.

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

terminate(#{piddir := undefined}) -> ok;
terminate(#{piddir := Dir}) ->
    kill_recorded(Dir, os:getpid()),
    _ = file:del_dir(Dir),
    ok.

%% ---- dsup-nodes of rebar3 runs

own_piddir() ->
    case os:getenv("DSUP_PIDDIR") of
        D when is_list(D), D =/= "" -> undefined;   % scripts/run-ct.sh cleans up
        _ ->
            Base = filename:join([dsup_test:root(), "build", "rebar3", "pids"]),
            sweep_stale(Base),
            Dir = filename:join(Base, os:getpid()),
            ok = filelib:ensure_dir(filename:join(Dir, "x")),
            true = os:putenv("DSUP_PIDDIR", Dir),
            Dir
    end.

sweep_stale(Base) ->
    {ok, Vms} = case file:list_dir(Base) of
                    {error, enoent} -> {ok, []};
                    R -> R
                end,
    [begin
         Dir = filename:join(Base, Vm),
         kill_recorded(Dir, Vm),
         file:del_dir(Dir)
     end || Vm <- Vms, not filelib:is_dir("/proc/" ++ Vm)].

%% Kill the recorded processes that are still dsup-nodes of the CT VM Vm
%% (a reused pid is left alone), and forget them all.
kill_recorded(Dir, Vm) ->
    {ok, Pids} = case file:list_dir(Dir) of
                     {error, _} -> {ok, []};
                     R -> R
                 end,
    [begin
         case file:read_file("/proc/" ++ P ++ "/cmdline") of
             {ok, Cmd} ->
                 case binary:match(Cmd, list_to_binary("_" ++ Vm ++ "_")) of
                     nomatch -> ok;
                     _ ->
                         io:format(user, "dsup_cth: killing leftover dsup-node pid ~s~n", [P]),
                         os:cmd("kill -KILL " ++ P)
                 end;
             _ -> ok
         end,
         file:delete(filename:join(Dir, P))
     end || P <- Pids],
    ok.

line(#{file := false}, _, _, _, _) -> ok;
line(#{file := F}, Kind, Suite, TC, Reason) ->
    Txt = io_lib:format("~s ~p:~p ~0tP~n", [Kind, Suite, tc(TC), Reason, 40]),
    file:write_file(F, unicode:characters_to_binary(Txt), [append]).

tc({TC, _Group}) -> TC;
tc(TC) -> TC.
