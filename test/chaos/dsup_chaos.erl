%%% @doc The chaos harness's driver (run by scripts/chaos.sh as a hidden node
%%% in its own network namespace). For each seed it starts a cluster of
%%% dsup-nodes and Elixir nodes, one per namespace, each beside its own epmd;
%%% draws a fault schedule from the seed (printed, so a run can be replayed
%%% with --seeds S); runs each round (workload on, faults, heal, workload
%%% paused) and then checks the invariants until they hold or the settle time
%%% runs out. Prints a summary table; on a violation, the seed, the schedule
%%% and the history of the names involved. Exit status 0 only without
%%% violations.
-module(dsup_chaos).

-export([main/1]).

-define(SUP, 'Elixir.Chaos.Sup').
-define(SCOPE, 'Elixir.Chaos.Sup.Scope').
-define(TICK_S, 3).
-define(CALL_T, 5000).

%% ================================================================== entry

main(Opts) ->
    Code = try run(Opts)
           catch C:E:St ->
                   io:format("chaos: driver crashed: ~p:~p~n~p~n", [C, E, St]),
                   2
           end,
    erlang:halt(Code).

run(#{seeds := Seeds} = Opts) ->
    Env = (env())#{quorum => maps:get(quorum, Opts, false)},
    start_collector(),
    io:format("chaos: ~b dsup-nodes, ~b Elixir nodes, seeds ~w, ~b rounds each~n",
              [length(by_kind(dsup, Env)), length(by_kind(elixir, Env)), Seeds,
               maps:get(rounds, Opts)]),
    case maps:get(scale, Opts) of
        true -> scale(Env, Opts);
        false ->
            Results = [run_seed(S, Env, Opts) || S <- Seeds],
            summary(Results)
    end.

env() ->
    {ok, Bin} = file:read_file(os:getenv("DSUP_CHAOS_NODES")),
    Stage = os:getenv("DSUP_CHAOS_STAGE"),
    Nodes = [begin
                 [Kind, Id, Ns, Ip] = string:lexemes(L, " "),
                 #{kind => list_to_atom(Kind), id => Id, ns => Ns, ip => Ip,
                   node => list_to_atom(Id ++ "@" ++ Ip)}
             end || L <- string:lexemes(binary_to_list(Bin), "\n")],
    #{nodes => Nodes, stage => Stage,
      exe => os:getenv("DSUP_NODE", filename:join(os:getenv("DSUP_CHAOS_ROOT"), "build/dsup-node")),
      shim_ebin => os:getenv("DSUP_CHAOS_SHIM_EBIN"),
      chaos_ebin => filename:join(Stage, "ebin"),
      cookie => atom_to_list(erlang:get_cookie())}.

by_kind(K, #{nodes := Ns}) -> [N || #{kind := K2} = N <- Ns, K2 =:= K].

%% ================================================================== the schedule

%% A round: how long the faults hold (the workload runs meanwhile) and the
%% faults, applied at its start; stops end after their own time; everything
%% is healed at the end of the hold.
gen_schedule(Seed, Rounds, Env) ->
    rand:seed(exsss, {Seed, Seed * 7 + 1, Seed * 13 + 5}),
    [gen_round(Env) || _ <- lists:seq(1, Rounds)].

%% Rounds that once broke an invariant (test/chaos/README.md), run first in
%% the fixed-seed run of make test.
regression_rounds(Env) ->
    [D1, D2 | _] = Dsup = [Id || #{id := Id} <- by_kind(dsup, Env)],
    Ds = tl(Dsup),
    Es = [Id || #{id := Id} <- by_kind(elixir, Env)],
    [%% the Elixir nodes lose the hosts of one side long enough to see their
     %% children restarted on d1; after the heal the original copies (on
     %% their ring owners) survive: the shim once ignored them as "down"
     #{hold => 6000, faults => [{partition, lists:sort([D1 | Es]), Ds, two_way}], label => "regression: returning host's children"},
     %% epmd killed and restarted: the dsup-node once never registered again
     #{hold => 5000, faults => [{epmd, D1}], label => "regression: re-register with a restarted epmd"},
     %% a host stopped past the tick time resumes alone and restarts every
     %% child; duplicate resolution by each node's own (differing) ring once
     %% stopped both copies of some names
     #{hold => 5500, faults => [{stop, D1, 5000}], label => "regression: resolution with differing rings"},
     %% children terminated on a paused host after it resumes, while the
     %% others reconnect to it: a child_down lost with the old connection
     %% once left a stale entry in another host's table
     #{hold => 7000, faults => [{stop, D2, 5000}], label => "regression: stale entry after a lost child_down"},
     %% two hosts killed at once: an orphan's owner on a survivor's ring
     %% could be the other dying host, and nobody restarted it
     #{hold => 4000, faults => [{kill, D1}, {kill, D2}], label => "regression: several hosts killed at once"}].

gen_round(Env) ->
    Primary = weighted([{partition, 35}, {kill, 25}, {stop, 15}, {epmd, 10}, {scope, 15}]),
    Kinds = case rand:uniform(100) =< 30 of
                true -> lists:usort([Primary, weighted([{partition, 40}, {kill, 30}, {stop, 15}, {scope, 15}])]);
                false -> [Primary]
            end,
    Faults = [gen_fault(K, Env) || K <- Kinds],
    Hold = lists:max([4000 + rand:uniform(5000) | [Ms + 500 || {stop, _, Ms} <- Faults]]),
    #{hold => Hold, faults => Faults}.

gen_fault(partition, Env) ->
    Ids = shuffle([Id || #{id := Id} <- maps:get(nodes, Env)]),
    {A, B} = lists:split(rand:uniform(length(Ids) - 1), Ids),
    Mode = case rand:uniform(10) =< 7 of true -> two_way; false -> one_way end,
    {partition, lists:sort(A), lists:sort(B), Mode};
gen_fault(kill, Env) ->
    {kill, pick_node(Env, 70)};
gen_fault(stop, Env) ->
    {stop, pick_node(Env, 70), ?TICK_S * 1000 + 1000 + rand:uniform(2000)};
gen_fault(epmd, Env) ->
    %% the node also gets cut off from everyone for the hold, so that its
    %% peers need epmd to find it again after the heal
    {epmd, pick_node(Env, 60)};
gen_fault(scope, Env) ->
    {scope, pick(by_kind(elixir, Env))}.

pick_node(Env, DsupPercent) ->
    case rand:uniform(100) =< DsupPercent of
        true -> pick(by_kind(dsup, Env));
        false -> pick(by_kind(elixir, Env))
    end.

pick(L) -> maps:get(id, lists:nth(rand:uniform(length(L)), L)).

weighted(Ws) ->
    R = rand:uniform(lists:sum([W || {_, W} <- Ws])),
    weighted(R, Ws).
weighted(R, [{K, W} | _]) when R =< W -> K;
weighted(R, [{_, W} | T]) -> weighted(R - W, T).

shuffle(L) -> [X || {_, X} <- lists:sort([{rand:uniform(), X} || X <- L])].

%% ================================================================== one seed

run_seed(Seed, Env, Opts) ->
    Rounds = maps:get(rounds, Opts),
    Settle = maps:get(settle_s, Opts) * 1000,
    Schedule = case maps:get(regressions, Opts, false) andalso Seed =:= hd(maps:get(seeds, Opts)) of
                   true -> regression_rounds(Env) ++ gen_schedule(Seed, Rounds, Env);
                   false -> gen_schedule(Seed, Rounds, Env)
               end,
    reset_collector(),
    io:format("~n== seed ~b: ~b rounds~n", [Seed, Rounds]),
    St0 = start_cluster(Seed, Env),
    St = St0#{seed => Seed, schedule => Schedule, settle => Settle, conv => [],
              faults => #{}, violations => [], rounds_done => 0},
    Final = rounds(1, Schedule, St),
    stop_cluster(Final),
    Ops = collector_stats(),
    Final#{ops => Ops}.

rounds(_, [], St) -> St;
rounds(R, [Round | Rest], St) ->
    St1 = do_round(R, Round, St),
    case maps:get(violations, St1) of
        [] -> rounds(R + 1, Rest, St1);
        _ -> St1   % the cluster is in an unknown state: stop this seed
    end.

do_round(R, #{hold := Hold, faults := Faults} = Round, #{seed := Seed} = St) ->
    io:format("round ~b: hold ~b ms, ~s~s~n", [R, Hold, fmt_faults(Faults),
                                              case Round of #{label := L} -> " (" ++ L ++ ")"; _ -> "" end]),
    [catch erpc:call(node_of(St, E), dsup_chaos_client, run_all, [R, Seed], ?CALL_T)
     || E <- live_ids(St, elixir)],
    T0 = now_ms(),
    St1 = lists:foldl(fun(F, A) -> apply_fault(F, A) end, St, Faults),
    St2 = timeline(T0, Hold, St1),
    Fenced = minority_check(Faults, Hold, St2),
    St3 = heal(St2),
    pause_clients(St3),
    THeal = now_ms(),
    St4 = count_faults(Faults, St3),
    case Fenced of
        [] -> ok;
        _ -> io:format("  quorum: minority hosts still running children before the heal: ~p~n", [Fenced])
    end,
    case check_until(St4, THeal + maps:get(settle, St4)) of
        {ok, _, _} when Fenced =/= [] ->
            report_violation(R, Round, Fenced, St4),
            St4#{violations => Fenced, rounds_done => R};
        {ok, Ms, Info} ->
            io:format("  converged in ~b ms (~s)~n", [Ms, Info]),
            St4#{conv => [Ms | maps:get(conv, St4)], rounds_done => R};
        {violations, Vs} ->
            report_violation(R, Round, Vs, St4),
            St4#{violations => Vs, rounds_done => R}
    end.

%% Quorum mode, a lone two-way partition held long enough to be noticed:
%% before the heal, no dsup-node on the side without a majority runs a child.
minority_check([{partition, A, B, two_way}], Hold, #{quorum := true, env := Env} = St) when Hold >= 6000 ->
    Dsup = [Id || #{id := Id} <- by_kind(dsup, Env)],
    Need = length(Dsup) div 2 + 1,
    Minority = [Id || Side <- [A, B], Ids <- [[I || I <- Side, lists:member(I, Dsup)]],
                      length(Ids) < Need, Id <- Ids],
    [{minority_runs_children, Id, L}
     || Id <- Minority, L <- [call_sup(node_of(St, Id), local_children)], L =/= []];
minority_check(_, _, _) -> [].

fmt_faults(Fs) -> string:join([fmt_fault(F) || F <- Fs], "; ").
fmt_fault({partition, A, B, Mode}) -> io_lib:format("partition ~s ~s | ~s", [Mode, string:join(A, ","), string:join(B, ",")]);
fmt_fault({kill, Id}) -> "kill -9 " ++ Id ++ " (restarted at heal)";
fmt_fault({stop, Id, Ms}) -> io_lib:format("SIGSTOP ~s for ~b ms", [Id, Ms]);
fmt_fault({epmd, Id}) -> "kill epmd of " ++ Id ++ " and isolate it (epmd restarted at heal)";
fmt_fault({scope, Id}) -> "kill the pg scope process on " ++ Id.

count_faults(Faults, #{faults := C} = St) ->
    Kinds = lists:flatmap(fun({partition, _, _, two_way}) -> [partition];
                             ({partition, _, _, one_way}) -> [partition_one_way];
                             ({kill, _}) -> [kill_9, restart];
                             ({stop, _, _}) -> [sigstop];
                             ({epmd, _}) -> [epmd_kill, partition];
                             ({scope, _}) -> [pg_scope_kill]
                          end, Faults),
    St#{faults => lists:foldl(fun(K, A) -> maps:update_with(K, fun(V) -> V + 1 end, 1, A) end, C, Kinds)}.

%% ================================================================== processes

%% Start an OS process inside a namespace; its pid is the exec'd program's
%% (ip netns exec and sh both exec). Output goes to Log.
spawn_in(Ns, Exe, Args, Log) ->
    Cmd = lists:flatten(
            ["ip netns exec ", q(Ns), " sh -c 'exec \"$0\" \"$@\" >>", q_inner(Log), " 2>&1 </dev/null' ",
             string:join([q(A) || A <- [Exe | Args]], " "),
             " >/dev/null 2>&1 </dev/null & echo $!"]),
    list_to_integer(string:trim(os:cmd(Cmd))).

q(S) -> "'" ++ lists:flatten(string:replace(S, "'", "'\\''", all)) ++ "'".
q_inner(S) -> "\"" ++ S ++ "\"".   % log paths have no quotes

sig(Pid, Sig) -> os:cmd("kill -" ++ Sig ++ " " ++ integer_to_list(Pid) ++ " 2>/dev/null").

log_file(#{stage := Stage}, Id) -> filename:join([Stage, "logs", Id ++ ".log"]).

start_epmd(#{ns := Ns, id := Id}, Env) ->
    P = spawn_in(Ns, "epmd", [], log_file(Env, Id ++ ".epmd")),
    wait_epmd(Ns, 100),
    P.

wait_epmd(_Ns, 0) -> error(epmd_did_not_start);
wait_epmd(Ns, N) ->
    case os:cmd("ip netns exec " ++ Ns ++ " epmd -names 2>&1") of
        "epmd: up" ++ _ -> ok;
        _ -> timer:sleep(50), wait_epmd(Ns, N - 1)
    end.

launch(#{kind := dsup, ns := Ns, id := Id, node := Node}, Env) ->
    Others = [atom_to_list(N) || #{node := N} <- maps:get(nodes, Env), N =/= Node],
    Sup = case maps:get(quorum, Env) of true -> []; false -> ["--supervisor", "Chaos.Sup"] end,
    Args = ["--name", atom_to_list(Node), "--cookie", maps:get(cookie, Env),
            "--net-ticktime", integer_to_list(?TICK_S) | Sup]
        ++ lists:append([["--connect", O] || O <- Others]),
    spawn_in(Ns, maps:get(exe, Env), Args, log_file(Env, Id));
launch(#{kind := elixir, ns := Ns, id := Id, node := Node}, Env) ->
    Args = ["--name", atom_to_list(Node), "--cookie", maps:get(cookie, Env),
            %% erl's -pa (elixir's own -pa is applied only after boot)
            "--erl", "-kernel net_ticktime " ++ integer_to_list(?TICK_S) ++
                " -pa " ++ maps:get(shim_ebin, Env) ++ " -pa " ++ maps:get(chaos_ebin, Env),
            "-e", "Process.sleep(:infinity)"],
    spawn_in(Ns, "elixir", Args, log_file(Env, Id)).

%% Launch and wait until it answers; Elixir nodes are booted (instance,
%% reconnector, workers) with a tag naming this incarnation.
bring_up(#{kind := Kind, node := Node, id := Id} = N, Inc, St) ->
    #{env := Env, seed := Seed} = St,
    Pid = launch(N, Env),
    ok = wait_until(fun() -> net_adm:ping(Node) =:= pong andalso ready(Kind, Node) end, 30000),
    case Kind of
        elixir ->
            All = [Nd || #{node := Nd} <- maps:get(nodes, Env)],
            Tag = io_lib:format("~s.s~b.i~b", [Id, Seed, Inc]),
            ok = erpc:call(Node, dsup_chaos_client, boot, [whereis(chaos_collector), All, sup_opts(St), Tag], 30000);
        dsup when map_get(quorum, St) ->
            %% the instance with its options (the CLI's --supervisor has no quorum key)
            case gen_server:call({dsup_node, Node}, {start_supervisor, ?SUP, sup_opts(St)}, 10000) of
                {ok, _} -> ok;
                {error, {already_started, _}} -> ok
            end;
        dsup -> ok
    end,
    Pid.

%% quorum mode: N = every dsup-node of the run
sup_opts(#{quorum := true, env := Env}) -> [{name, ?SUP}, {quorum, length(by_kind(dsup, Env))}];
sup_opts(_) -> [{name, ?SUP}].

ready(dsup, Node) -> is_list(catch gen_server:call({dsup_node, Node}, which_workers, 1000));
ready(elixir, Node) -> is_pid(erpc:call(Node, erlang, whereis, [elixir_config], 1000)).

start_cluster(Seed, Env) ->
    St0 = #{env => Env, seed => Seed, procs => #{}, epmds => #{}, inc => #{}, quorum => maps:get(quorum, Env),
            stopped => [], killed => [], epmd_down => []},
    Epmds = maps:from_list([{Id, start_epmd(N, Env)} || #{id := Id} = N <- maps:get(nodes, Env)]),
    St1 = St0#{epmds => Epmds},
    %% dsup-nodes first (Elixir instances ask connected hosts to run the instance)
    Order = by_kind(dsup, Env) ++ by_kind(elixir, Env),
    St2 = lists:foldl(fun(#{id := Id} = N, A) ->
                              P = bring_up(N, 1, A),
                              A#{procs => (maps:get(procs, A))#{Id => P}, inc => (maps:get(inc, A))#{Id => 1}}
                      end, St1, Order),
    case check_until(St2, now_ms() + 60000) of
        {ok, Ms, _} -> io:format("cluster up, converged ~b ms after the last start~n", [Ms]);
        {violations, Vs} -> error({cluster_did_not_converge, lists:sublist(Vs, 10)})
    end,
    St2.

stop_cluster(#{procs := Ps, epmds := Es}) ->
    [sig(P, "CONT") || P <- maps:values(Ps)],
    [sig(P, "KILL") || P <- maps:values(Ps) ++ maps:values(Es)],
    %% let the driver's connections notice (next seed reuses the names)
    wait_until(fun() -> [N || N <- nodes(connected), N =/= node()] =:= [] end, 20000),
    ok.

node_of(#{env := Env}, Id) -> hd([N || #{id := I, node := N} <- maps:get(nodes, Env), I =:= Id]).
ns_of(#{env := Env}, Id) -> hd([Ns || #{id := I, ns := Ns} <- maps:get(nodes, Env), I =:= Id]).
ip_of(#{env := Env}, Id) -> hd([Ip || #{id := I, ip := Ip} <- maps:get(nodes, Env), I =:= Id]).
info_of(#{env := Env}, Id) -> hd([N || #{id := I} = N <- maps:get(nodes, Env), I =:= Id]).

live_ids(#{env := Env, killed := K}, Kind) -> [Id || #{id := Id} <- by_kind(Kind, Env), not lists:member(Id, K)].

%% ================================================================== faults

apply_fault({partition, A, B, Mode}, St) ->
    %% a blackhole route in X's namespace for Y's address drops X's packets to Y
    Cmds = [route_cmd(St, X, Y) || X <- B, Y <- A] ++
           case Mode of two_way -> [route_cmd(St, X, Y) || X <- A, Y <- B]; one_way -> [] end,
    os:cmd(string:join(Cmds, "; ")),
    St;
apply_fault({kill, Id}, #{procs := Ps, killed := K} = St) ->
    sig(maps:get(Id, Ps), "KILL"),
    note_kill(node_of(St, Id)),
    St#{killed => lists:usort([Id | K])};
apply_fault({stop, Id, Ms}, #{procs := Ps, stopped := S} = St) ->
    sig(maps:get(Id, Ps), "STOP"),
    St#{stopped => [{Id, now_ms() + Ms} | S]};
apply_fault({epmd, Id}, #{epmds := Es, epmd_down := D} = St) ->
    sig(maps:get(Id, Es), "KILL"),
    Others = [I || #{id := I} <- maps:get(nodes, maps:get(env, St)), I =/= Id],
    apply_fault({partition, [Id], Others, two_way}, St#{epmd_down => lists:usort([Id | D])});
apply_fault({scope, Id}, St) ->
    catch erpc:call(node_of(St, Id), dsup_chaos_client, scope_kill, [?SUP], ?CALL_T),
    St.

route_cmd(St, X, Y) ->
    "ip -n " ++ ns_of(St, X) ++ " route replace blackhole " ++ ip_of(St, Y) ++ "/32".

%% Wait out the hold, resuming stopped nodes when their time comes.
timeline(T0, Hold, #{stopped := S} = St) ->
    Now = now_ms(),
    Due = [X || {_, T} = X <- S, T =< Now],
    St1 = lists:foldl(fun({Id, _}, A) -> resume(Id, A) end, St, Due),
    End = T0 + Hold,
    case Now >= End of
        true -> St1;
        false ->
            Next = lists:min([End | [T || {_, T} <- maps:get(stopped, St1)]]),
            timer:sleep(max(1, Next - Now)),
            timeline(T0, Hold, St1)
    end.

resume(Id, #{procs := Ps, stopped := S} = St) ->
    sig(maps:get(Id, Ps), "CONT"),
    St#{stopped => lists:keydelete(Id, 1, S)}.

heal(St) ->
    #{env := Env} = St,
    os:cmd(string:join(["ip -n " ++ Ns ++ " route flush type blackhole" || #{ns := Ns} <- maps:get(nodes, Env)], "; ")),
    St1 = lists:foldl(fun({Id, _}, A) -> resume(Id, A) end, St, maps:get(stopped, St)),
    St2 = lists:foldl(fun(Id, A) ->
                              P = start_epmd(info_of(A, Id), Env),
                              A#{epmds => (maps:get(epmds, A))#{Id => P}}
                      end, St1#{epmd_down => []}, maps:get(epmd_down, St1)),
    lists:foldl(fun(Id, A) ->
                        Inc = maps:get(Id, maps:get(inc, A)) + 1,
                        P = bring_up(info_of(A, Id), Inc, A),
                        A#{procs => (maps:get(procs, A))#{Id => P}, inc => (maps:get(inc, A))#{Id => Inc}}
                end, St2#{killed => []}, maps:get(killed, St2)).

pause_clients(St) ->
    Es = [node_of(St, Id) || Id <- live_ids(St, elixir)],
    [catch erpc:call(E, dsup_chaos_client, pause_all, [self()], ?CALL_T) || E <- Es],
    %% each worker answers once its operation in flight is done
    wait_paused(length(Es) * 2, now_ms() + 20000).

wait_paused(0, _) -> ok;
wait_paused(N, Deadline) ->
    receive {paused, _, _} -> wait_paused(N - 1, Deadline)
    after max(0, Deadline - now_ms()) -> io:format("  (~b workers did not pause in time)~n", [N])
    end.

%% ================================================================== collector

%% Keeps the history (every invoke/done record, in arrival order) and, per
%% child name, what the checker needs: restart type, start outcome, whether
%% a terminate was issued, the start's host and time. Kills are noted too.
start_collector() ->
    Self = self(),
    P = spawn(fun() ->
                      ets:new(chaos_hist, [named_table, public, ordered_set]),
                      ets:new(chaos_names, [named_table, public, set]),
                      ets:new(chaos_kills, [named_table, public, bag]),
                      Self ! collector_ready,
                      collector_loop()
              end),
    register(chaos_collector, P),
    receive collector_ready -> ok end.

reset_collector() ->
    [ets:delete_all_objects(T) || T <- [chaos_hist, chaos_names, chaos_kills]],
    ok.

note_kill(Node) -> ets:insert(chaos_kills, {Node, now_ms()}).

collector_loop() ->
    receive
        {invoke, From, Ref, Rec} ->
            record(invoke, Rec),
            From ! {Ref, ok};
        {done, Rec} ->
            record(done, Rec)
    end,
    collector_loop().

record(Type, #{name := Name, kind := Kind} = Rec0) ->
    Rec = Rec0#{t => now_ms()},   % the driver's clock: kills are stamped with it
    ets:insert(chaos_hist, {erlang:unique_integer([monotonic]), Type, Rec}),
    case {Type, Kind} of
        {invoke, start} ->
            ets:insert(chaos_names, {Name, #{restart => maps:get(arg, Rec), state => 'maybe',
                                             t => maps:get(t, Rec), terminated => false}});
        {done, start} ->
            update_name(Name, fun(M) ->
                                      case maps:get(result, Rec) of
                                          {ok, Pid, _} -> M#{state => started, pid => Pid,
                                                             took => maps:get(t, Rec) - maps:get(t, M)};
                                          %% any error may hide a start that
                                          %% happened: the request reached the
                                          %% owner, its answer did not (and the
                                          %% shim then tried again elsewhere)
                                          _ -> M
                                      end
                              end);
        {invoke, terminate} ->
            update_name(Name, fun(M) -> M#{terminated => true} end);
        _ -> ok
    end.

update_name(Name, F) ->
    case ets:lookup(chaos_names, Name) of
        [{_, M}] -> ets:insert(chaos_names, {Name, F(M)});
        [] -> ok
    end.

collector_stats() ->
    ets:foldl(fun({_, done, #{kind := K, result := R}}, A) ->
                      Key = {K, outcome(K, R)},
                      maps:update_with(Key, fun(V) -> V + 1 end, 1, A);
                 (_, A) -> A
              end, #{}, chaos_hist).

outcome(start, {ok, _, _}) -> ok;
outcome(terminate, ok) -> ok;
outcome(call, N) when is_integer(N) -> ok;
outcome(lookup, P) when is_pid(P) -> ok;
outcome(lookup, undefined) -> undefined;
outcome(_, _) -> failed.

%% What each known name must look like once healed:
%%   must     permanent/transient, started, never terminated: exactly one copy
%%   gone     temporary, started on a host that was killed later: no copy
%%   any      everything else (ambiguous starts, terminated children, other
%%            temporaries): zero or one copy
expectations() ->
    ets:foldl(fun({Name, M}, A) -> A#{Name => expect(M)} end, #{}, chaos_names).

expect(#{state := started, terminated := false, restart := R}) when R =/= temporary -> must;
%% (a start that took long may have been retried by the shim after a
%% nodedown: the first attempt can have left a copy on another host, which
%% that host's death does not remove; and a terminated one may survive as such)
expect(#{state := started, restart := temporary, terminated := false, pid := Pid, t := T, took := Took})
  when Took < 1000 ->
    case [K || {_, K} <- ets:lookup(chaos_kills, node(Pid)), K > T] of
        [] -> any;
        _ -> gone
    end;
expect(#{state := not_started}) -> none;
expect(_) -> any.

%% ================================================================== the checker

check_until(St, Deadline) ->
    T0 = now_ms(),
    check_until(St, T0, Deadline).

check_until(St, T0, Deadline) ->
    {Vs, Info} = check(St),
    case Vs of
        [] -> {ok, now_ms() - T0, Info};
        _ ->
            case now_ms() >= Deadline of
                true -> {violations, Vs};
                false -> timer:sleep(250), check_until(St, T0, Deadline)
            end
    end.

call_sup(Node, Msg) -> catch gen_server:call({?SUP, Node}, Msg, ?CALL_T).

check(St) ->
    Dsup = [node_of(St, Id) || Id <- live_ids(St, dsup)],
    Elixir = [node_of(St, Id) || Id <- live_ids(St, elixir)],
    Expect = expectations(),
    Names = maps:keys(Expect),
    %% the hosts' own answers
    HostData = [{D, call_sup(D, nodes), call_sup(D, children), call_sup(D, local_children),
                 catch gen_server:call({dsup_node, D}, {pg_which_groups, ?SCOPE}, ?CALL_T)}
                || D <- Dsup],
    Views = [{E, catch erpc:call(E, dsup_chaos_client, view, [?SUP, Names], 2 * ?CALL_T)} || E <- Elixir],
    Unresp = [{unresponsive, D, What} || {D, R, C, L, G} <- HostData,
                                         {What, V} <- [{nodes, R}, {children, C}, {local_children, L}, {pg, G}],
                                         is_bad(V)]
          ++ [{unresponsive, E, V} || {E, V} <- Views, not is_map(V)],
    case Unresp of
        [] -> check_views(St, Dsup, Expect, HostData, Views);
        _ -> {Unresp, ""}
    end.

is_bad({'EXIT', _}) -> true;
is_bad(undefined) -> true;
is_bad(_) -> false.

check_views(St, Dsup, Expect, HostData, Views) ->
    Want = lists:sort(Dsup),
    %% live copies: each host's local children, named by its own table
    Copies = lists:foldl(
               fun({D, _, Children, Local, _}, A) ->
                       ByPid = maps:from_list([{P, N} || {N, {P, _}} <- maps:to_list(Children), node(P) =:= D]),
                       lists:foldl(fun(P, A2) ->
                                           N = maps:get(P, ByPid, {unnamed, P}),
                                           maps:update_with(N, fun(L) -> [P | L] end, [P], A2)
                                   end, A, Local)
               end, #{}, HostData),
    Ring = [{ring_differs, D, R} || {D, R, _, _, _} <- HostData, lists:sort(R) =/= Want]
        ++ [{ring_differs, E, R} || {E, #{ring := R}} <- Views, R =/= Want],
    Count = fun(N) -> length(maps:get(N, Copies, [])) end,
    One = [{exactly_one, N, maps:get(N, Copies, [])} || {N, must} <- maps:to_list(Expect), Count(N) =/= 1],
    Dup = [{duplicate, N, Ps} || {N, Ps} <- maps:to_list(Copies), length(Ps) > 1],
    Temp = [{temporary_resurrected, N, maps:get(N, Copies)} || {N, gone} <- maps:to_list(Expect), Count(N) > 0],
    NotStarted = [{phantom, N, maps:get(N, Copies)} || {N, none} <- maps:to_list(Expect), Count(N) > 0],
    Phantom = [{phantom, N, Ps} || {N, Ps} <- maps:to_list(Copies), not maps:is_key(N, Expect)],
    Single = fun(N) -> case maps:get(N, Copies, []) of [P] -> P; _ -> undefined end end,
    %% whereis, as every node answers it
    Where = [{whereis_differs, N, {D, pid_of(maps:get(N, C, undefined)), Single(N)}}
             || {D, _, C, _, _} <- HostData, N <- maps:keys(Expect),
                pid_of(maps:get(N, C, undefined)) =/= Single(N)]
        ++ [{whereis_differs, N, {E, P, Single(N)}}
            || {E, #{whereis := W}} <- Views, {N, P} <- W, P =/= Single(N)],
    %% pg views: every node sees each live copy, and nothing else, in the name's group
    PgE = [{pg_differs, N, {E, Ms, maps:get(N, Copies, [])}}
           || {E, #{pg := Pg}} <- Views,
              {N, Ms} <- pg_diff(maps:from_list([G || {K, _} = G <- Pg, not is_sys(K)]), Copies)],
    PgD = [{pg_differs, N, {D, in_groups, Count(N)}}
           || {D, _, _, _, Gs} <- HostData,
              N <- sym_diff(lists:usort([G || G <- Gs, not is_sys(G)]),
                            lists:usort([K || K <- maps:keys(Copies)]))],
    PgM = sample_pg_members(Dsup, Copies),
    Epmd = epmd_check(St),
    Vs = Ring ++ One ++ Dup ++ Temp ++ NotStarted ++ Phantom ++ Where ++ PgE ++ PgD ++ PgM ++ Epmd,
    {Vs, io_lib:format("~b live children, ~b names known", [maps:size(Copies), maps:size(Expect)])}.

pid_of({P, _}) -> P;
pid_of(undefined) -> undefined.

%% The instances' own groups ('$dsup_hosts', capabilities {'$dsup_type', T}, ...),
%% not child names.
is_sys({'$dsup_type', _}) -> true;
is_sys(G) -> is_atom(G) andalso hd(atom_to_list(G)) =:= $$.

pg_diff(View, Copies) ->
    Keys = lists:usort(maps:keys(View) ++ maps:keys(Copies)),
    [{K, maps:get(K, View, [])} || K <- Keys,
                                   lists:sort(maps:get(K, View, [])) =/= lists:sort(maps:get(K, Copies, []))].

sym_diff(A, B) -> (A -- B) ++ (B -- A).

%% The members of up to 50 groups, as each dsup-node's pg scope answers.
sample_pg_members(Dsup, Copies) ->
    Names = maps:keys(Copies),
    Sample = lists:sublist([N || {_, N} <- lists:sort([{rand:uniform(), N} || N <- Names])], 50),
    [{pg_differs, N, {D, Ms, maps:get(N, Copies)}}
     || D <- Dsup, N <- Sample,
        Ms <- [catch gen_server:call({dsup_node, D}, {pg_members, ?SCOPE, N}, ?CALL_T)],
        not is_list(Ms) orelse lists:sort(Ms) =/= lists:sort(maps:get(N, Copies))].

%% Every node is registered with the epmd of its namespace (peers find it).
epmd_check(#{env := Env} = St) ->
    Killed = maps:get(killed, St, []),
    [{epmd_unregistered, Node, Names}
     || #{id := Id, ip := Ip, node := Node} <- maps:get(nodes, Env), not lists:member(Id, Killed),
        Names <- [epmd_names(Ip)],
        not lists:keymember(Id, 1, Names)].

epmd_names(Ip) ->
    {ok, Addr} = inet:parse_address(Ip),
    case erl_epmd:names(Addr) of
        {ok, L} -> L;
        E -> [{error, E}]
    end.

%% ================================================================== reports

report_violation(R, _Round, Vs, #{seed := Seed, schedule := Sch}) ->
    io:format("~nVIOLATION in seed ~b, round ~b (replay: scripts/chaos.sh --seeds ~b --rounds ~b)~n",
              [Seed, R, Seed, R]),
    ByInv = count_by(fun(V) -> element(1, V) end, Vs),
    io:format("  by invariant: ~p~n", [ByInv]),
    [io:format("  ~p~n", [annotate(V)]) || V <- lists:sublist(Vs, 20)],
    io:format("  schedule of seed ~b up to round ~b:~n", [Seed, R]),
    [io:format("    round ~b: hold ~b ms, ~s~n", [I, H, fmt_faults(F)])
     || {I, #{hold := H, faults := F}} <- lists:zip(lists:seq(1, R), lists:sublist(Sch, R))],
    Names = lists:usort([N || V <- lists:sublist(Vs, 20), N <- [element(2, V)], not is_atom(N)]),
    io:format("  history of the names involved:~n"),
    [io:format("    ~s ~p~n", [T, annotate(Rec)])
     || {_, T, #{name := N} = Rec} <- ets:tab2list(chaos_hist), lists:member(N, lists:sublist(Names, 5))],
    [io:format("    kill ~s at ~b~n", [Nd, T]) || {Nd, T} <- ets:tab2list(chaos_kills)],
    ok.

%% pids shown with their node
annotate(P) when is_pid(P) -> {node(P), P};
annotate(T) when is_tuple(T) -> list_to_tuple(annotate(tuple_to_list(T)));
annotate(L) when is_list(L) -> [annotate(X) || X <- L];
annotate(X) -> X.

count_by(F, L) ->
    lists:foldl(fun(X, A) -> maps:update_with(F(X), fun(V) -> V + 1 end, 1, A) end, #{}, L).

summary(Results) ->
    io:format("~n== chaos summary~n"),
    io:format("~-6s ~-7s ~-10s ~-12s ~-40s ~s~n", ["seed", "rounds", "violations", "max conv ms", "faults", "ops"]),
    [io:format("~-6b ~-7b ~-10b ~-12s ~-40s ~s~n",
               [S, Rd, length(Vs), max_conv(C), fmt_counts(F), fmt_counts(O)])
     || #{seed := S, rounds_done := Rd, violations := Vs, conv := C, faults := F, ops := O} <- Results],
    AllF = merge_counts([F || #{faults := F} <- Results]),
    AllO = merge_counts([O || #{ops := O} <- Results]),
    AllV = merge_counts([count_by(fun(V) -> element(1, V) end, Vs) || #{violations := Vs} <- Results]),
    Conv = lists:append([C || #{conv := C} <- Results]),
    io:format("~ntotal: ~b rounds; faults ~s~n", [lists:sum([Rd || #{rounds_done := Rd} <- Results]), fmt_counts(AllF)]),
    io:format("operations: ~s~n", [fmt_counts(AllO)]),
    io:format("violations by invariant: ~s~n", [case maps:size(AllV) of 0 -> "none"; _ -> fmt_counts(AllV) end]),
    io:format("convergence after heal: longest ~s ms, median ~s ms~n", [max_conv(Conv), median(Conv)]),
    case maps:size(AllV) of 0 -> 0; _ -> 1 end.

max_conv([]) -> "-";
max_conv(L) -> integer_to_list(lists:max(L)).

median([]) -> "-";
median(L) -> integer_to_list(lists:nth((length(L) + 1) div 2, lists:sort(L))).

merge_counts(Ms) ->
    lists:foldl(fun(M, A) -> maps:fold(fun(K, V, A2) -> maps:update_with(K, fun(X) -> X + V end, V, A2) end, A, M) end, #{}, Ms).

fmt_counts(M) ->
    string:join([io_lib:format("~s=~b", [fmt_key(K), V]) || {K, V} <- lists:sort(maps:to_list(M))], " ").

fmt_key({A, B}) -> io_lib:format("~s/~s", [A, B]);
fmt_key(A) -> io_lib:format("~s", [A]).

%% ================================================================== scale

%% Issue 18 item 4, parameterised: preload `children` permanent children,
%% kill `kill` dsup-nodes at once, measure until every orphan runs again.
scale(Env, Opts) ->
    N = maps:get(children, Opts),
    NKill = maps:get(kill, Opts),
    St0 = start_cluster(0, Env),
    St = St0#{seed => 0, settle => maps:get(settle_s, Opts) * 1000},
    Dsup = [node_of(St, Id) || Id <- live_ids(St, dsup)],
    T0 = now_ms(),
    preload(N, Dsup),
    TLoad = now_ms() - T0,
    {ok, LoadConv, _} = check_until(St, now_ms() + 300000),
    io:format("preloaded ~b children in ~b ms (checked in ~b ms)~n", [N, TLoad, LoadConv]),
    Rss0 = rss_all(St),
    Net0 = traffic(St),
    Victims = lists:sublist(shuffle(live_ids(St, dsup)), NKill),
    Orphans = lists:sum([length(call_sup(node_of(St, V), local_children)) || V <- Victims]),
    io:format("killing ~s at once (~b orphans)~n", [string:join(Victims, ","), Orphans]),
    TK = now_ms(),
    St1 = lists:foldl(fun(V, A) -> apply_fault({kill, V}, A) end, St, Victims),
    Survivors = [node_of(St1, Id) || Id <- live_ids(St1, dsup)],
    {Back, RssPeak} = wait_all_running(Survivors, N, TK, Rss0, St1),
    Net1 = traffic(St1),
    Conv = check_until(St1, now_ms() + maps:get(settle, St1)),
    {VsN, ConvMs} = case Conv of {ok, Ms, _} -> {0, Ms}; {violations, Vs} ->
                         report_violation(1, #{}, Vs, St1#{schedule => [#{hold => 0, faults => [{kill, V} || V <- Victims]}]}),
                         {length(Vs), -1}
                 end,
    Bytes = lists:sum([B || {_, B} <- Net1]) - lists:sum([B || {_, B} <- Net0]),
    io:format("~n== scale summary~n"),
    io:format("dsup-nodes ~b, Elixir nodes ~b, children ~b, killed at once ~b (orphans ~b)~n",
              [length(Dsup), length(by_kind(elixir, Env)), N, NKill, Orphans]),
    io:format("every orphan running again after ~b ms; whole check passed ~b ms later~n", [Back, ConvMs]),
    io:format("violations (duplicates, losses, ...): ~b~n", [VsN]),
    io:format("peak RSS per node during failover (MB): ~s~n",
              [string:join([io_lib:format("~s=~.1f", [Id, R / 1024]) || {Id, R} <- lists:sort(maps:to_list(RssPeak))], " ")]),
    io:format("traffic on all links from the kill to convergence: ~.1f MB (~b bytes per orphan)~n",
              [Bytes / 1048576, Bytes div max(1, Orphans)]),
    stop_cluster(St1),
    case VsN of 0 -> 0; _ -> 1 end.

preload(N, Dsup) ->
    Workers = 16,
    Parent = self(),
    Names = [{N2, list_to_tuple(Dsup)} || N2 <- lists:seq(1, N)],
    Chunks = [[X || {I, X} <- lists:zip(lists:seq(1, N), Names), I rem Workers =:= W] || W <- lists:seq(0, Workers - 1)],
    Ps = [spawn_link(fun() -> Parent ! {loaded, self(), [load_one(I, Ds) || {I, Ds} <- C]} end) || C <- Chunks],
    [receive {loaded, P, Res} -> [record_loaded(R) || R <- Res] end || P <- Ps],
    ok.

load_one(I, Ds) ->
    Name = <<"k", (integer_to_binary(I))/binary>>,
    D = element(1 + I rem tuple_size(Ds), Ds),
    ets:insert(chaos_names, {Name, #{restart => permanent, state => 'maybe', t => now_ms(), terminated => false}}),
    {Name, gen_server:call({?SUP, D}, {start_child, {counter, [{name, Name}]}, undefined}, 60000)}.

record_loaded({Name, {ok, Pid, _}}) ->
    ets:insert(chaos_names, {Name, #{restart => permanent, state => started, pid => Pid, t => now_ms(), terminated => false}});
record_loaded({Name, Other}) ->
    io:format("preload: ~p: ~p~n", [Name, Other]).

%% Until the survivors run all N children again; RSS sampled meanwhile.
wait_all_running(Survivors, N, TK, Peak, St) ->
    Active = lists:sum([proplists:get_value(active, C, 0)
                        || S <- Survivors, C <- [call_sup(S, count_children)], is_list(C)]),
    Peak1 = maps:merge_with(fun(_, A, B) -> max(A, B) end, Peak, rss_all(St)),
    case Active >= N of
        true -> {now_ms() - TK, Peak1};
        false ->
            case now_ms() - TK > 600000 of
                true -> {-1, Peak1};
                false -> timer:sleep(50), wait_all_running(Survivors, N, TK, Peak1, St)
            end
    end.

rss_all(#{procs := Ps} = St) ->
    maps:from_list([{Id, rss_kb(maps:get(Id, Ps))} || Id <- live_ids(St, dsup) ++ live_ids(St, elixir)]).

rss_kb(Pid) ->
    case file:read_file("/proc/" ++ integer_to_list(Pid) ++ "/status") of
        {ok, B} ->
            case re:run(B, "VmRSS:\\s+(\\d+)", [{capture, all_but_first, list}]) of
                {match, [K]} -> list_to_integer(K);
                _ -> 0
            end;
        _ -> 0
    end.

%% bytes received on each namespace's eth0 (every byte between nodes is
%% received once)
traffic(#{env := Env}) ->
    [{Id, rx_bytes(os:cmd("ip netns exec " ++ Ns ++ " cat /proc/net/dev"))}
     || #{id := Id, ns := Ns} <- maps:get(nodes, Env)].

rx_bytes(Dev) ->
    case [L || L <- string:lexemes(Dev, "\n"), string:find(L, "eth0:") =/= nomatch] of
        [L | _] ->
            [_, Rest] = string:split(L, ":"),
            list_to_integer(hd(string:lexemes(Rest, " ")));
        [] -> 0
    end.

%% ================================================================== utilities

now_ms() -> erlang:monotonic_time(millisecond).

wait_until(F, Timeout) -> wait_until(F, now_ms() + Timeout, Timeout).
wait_until(F, Deadline, Timeout) ->
    case catch F() of
        true -> ok;
        _ ->
            case now_ms() >= Deadline of
                true -> {timeout, Timeout};
                false -> timer:sleep(100), wait_until(F, Deadline, Timeout)
            end
    end.
