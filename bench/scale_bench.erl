%%% Scale run (issue 19): N idle `counter' children (2M) over K dsup-nodes (8)
%%% on this machine, then kill -9 of one node and the failover of its
%%% orphans. Full `make bench' only (minutes, several GB of RAM), never in
%%% `make test'.
%%%
%%% Figures (printed, and written to OutDir/scale8.{md,csv}):
%%%   start        wall time of the N starts (16 callers; each start sent to
%%%                the child's owner, libring computed here with bl_ring; in
%%%                batches of SCALE8_BATCH per owner, or one start_child each
%%%                when it is 0),
%%%                and until every node's child table counts N
%%%   rss          VmRSS of each dsup-node before and after, and in total
%%%   failover     kill -9 of the last node: ms until every name it hosted
%%%                has a pg member on a survivor (this caller is a pg member
%%%                of the scope: it sees what a BEAM node sees), then lost
%%%                (names without a member) and duplicates (names with more
%%%                than one), counted over all N names once the survivors'
%%%                own counts (status: local children) add up to N or 60 s pass
%%%
%%% Environment: SCALE8_N (2000000), SCALE8_HOSTS (8), SCALE8_BATCH (1000; 0:
%%% one start_child per child).
-module(scale_bench).

-export([main/1]).

-define(SUP, 'Elixir.BenchScale8').
-define(SCOPE, 'Elixir.BenchScale8.Scope').
-define(T, 120000).
-define(C, 16).

%% erl -run scale_bench main Mode OutDir LogDir
main([_Mode, OutDir, LogDir]) ->
    _ = io:setopts([{encoding, unicode}]),
    try run(OutDir, LogDir) of
        ok -> halt(0)
    catch C:R:St ->
        io:format(standard_error, "scale_bench failed: ~p:~p~n~p~n", [C, R, St]),
        halt(1)
    end.

env_int(K, D) ->
    case os:getenv(K) of
        V when is_list(V), V =/= "" -> list_to_integer(V);
        _ -> D
    end.

now_ms() -> erlang:monotonic_time(millisecond).

run(OutDir, LogDir) ->
    N = env_int("SCALE8_N", 2000000),
    K = env_int("SCALE8_HOSTS", 8),
    B = env_int("SCALE8_BATCH", 1000),
    io:format("== scale: ~b children over ~b dsup-nodes (~s)~n",
              [N, K, case B of 0 -> "start_child"; _ -> io_lib:format("batches of ~b", [B]) end]),
    Start = fun(Connect) ->
                    dsup_test:start_node(#{name => scale8, log_dir => LogDir, log_level => warn,
                                           connect => Connect,
                                           extra_args => ["--supervisor", atom_to_list(?SUP)]})
            end,
    H1 = Start([]),
    Hs = [H1 | [Start([maps:get(node, H1)]) || _ <- lists:seq(2, K)]],
    try run(N, K, B, Hs, OutDir) after [catch dsup_test:stop_node(H, 10000) || H <- Hs] end.

run(N, K, B, Hs, OutDir) ->
    Nodes = [maps:get(node, H) || H <- Hs],
    ok = dsup_test:wait_until(
           fun() -> lists:all(fun(Nd) -> length(gen_server:call({?SUP, Nd}, nodes, ?T)) =:= K end,
                              Nodes) end, 60000),
    Rss0 = [vmrss_kb(H) || H <- Hs],
    Ring = bl_ring:new(lists:sort(Nodes)),
    T0 = now_ms(),
    start_all(N, B, Ring),
    T1 = now_ms(),
    ok = dsup_test:wait_until(fun() -> lists:all(fun(Nd) -> specs(Nd) >= N end, Nodes) end, 600000),
    T2 = now_ms(),
    Rss1 = [vmrss_kb(H) || H <- Hs],
    Local0 = [local(Nd) || Nd <- Nodes],
    io:format("  started in ~.1f s (~b/s), every table at N after ~.1f s; local ~w~n"
              "  RSS kB before ~w~n  RSS kB after  ~w (total ~.1f MB)~n",
              [(T1 - T0) / 1000, round(N * 1000 / max(1, T1 - T0)), (T2 - T0) / 1000, Local0,
               Rss0, Rss1, lists:sum(Rss1) / 1024]),
    %% this caller joins the scope: it sees every group as a BEAM node does
    {ok, _} = pg:start(?SCOPE),
    [erlang:send({?SCOPE, Nd}, {discover, whereis(?SCOPE)}) || Nd <- Nodes],
    ok = dsup_test:wait_until(fun() -> ets:info(?SCOPE, size) >= N end, 600000),
    Victim = lists:last(Nodes),
    VH = lists:last(Hs),
    Survivors = Nodes -- [Victim],
    Orphans = ets:new(orphans, [set]),
    [ets:insert(Orphans, {G}) || {G, _, _} <- pg_rows(), on_node(G, Victim)],
    NOrph = ets:info(Orphans, size),
    {Ref, _} = pg:monitor_scope(?SCOPE),
    io:format("  kill -9 ~s (~b children)~n", [Victim, NOrph]),
    K0 = now_ms(),
    _ = os:cmd("kill -9 " ++ integer_to_list(maps:get(os_pid, VH))),
    ok = follow(Ref, Orphans, Victim, K0 + 600000),
    K1 = now_ms(),
    pg:demonitor(?SCOPE, Ref),
    %% settle: the survivors' own counts add up to N (or 60 s), then count
    _ = (catch dsup_test:wait_until(fun() -> lists:sum([local(Nd) || Nd <- Survivors]) >= N end, 60000)),
    Local1 = [local(Nd) || Nd <- Survivors],
    {Lost, Dups} = audit(N, Victim),
    io:format("  failover: every orphan has a member on a survivor after ~b ms; lost ~b, "
              "duplicates ~b; survivors' local children ~w (sum ~b)~n",
              [K1 - K0, Lost, Dups, Local1, lists:sum(Local1)]),
    D1 = fun(X) -> round(X * 10) / 10 end,
    Fig = [{children, N}, {hosts, K}, {batch, B}, {start_s, D1((T1 - T0) / 1000)},
           {start_per_s, round(N * 1000 / max(1, T1 - T0))}, {all_tables_s, D1((T2 - T0) / 1000)},
           {rss_total_mb, D1(lists:sum(Rss1) / 1024)},
           {rss_per_node_mb, [D1(R / 1024) || R <- Rss1]},
           {rss_growth_per_child_b, round((lists:sum(Rss1) - lists:sum(Rss0)) * 1024 / N)},
           {orphans, NOrph}, {failover_ms, K1 - K0}, {lost, Lost}, {duplicates, Dups},
           {survivor_local_children, Local1}],
    write(OutDir, Fig),
    ok.

%% N children {s, I}, each started on its libring owner by ?C callers:
%% with B = 0 one start_child each; else the names in chunks of B, each
%% chunk split by owner into one {start_children_here, Items} per owner.
start_all(N, 0, Ring) ->
    par(?C, N, fun(I) ->
                       Name = {s, I},
                       Owner = bl_ring:key_to_node(Ring, Name),
                       {ok, _, _} = gen_server:call({?SUP, Owner}, {start_child, {counter, [{name, Name}]},
                                                                   Owner}, ?T)
               end);
start_all(N, B, Ring) ->
    NChunks = (N + B - 1) div B,
    par(?C, NChunks,
        fun(C) ->
                Names = [{s, I} || I <- lists:seq((C - 1) * B + 1, min(N, C * B))],
                Groups = maps:groups_from_list(fun(Nm) -> bl_ring:key_to_node(Ring, Nm) end, Names),
                maps:foreach(
                  fun(Owner, Ns) ->
                          Items = [{Nm, #{id => Nm, start => {counter, start_link, [[]]}, args => [],
                                          restart => permanent, shutdown => 5000}} || Nm <- Ns],
                          Rs = gen_server:call({?SUP, Owner}, {start_children_here, Items}, ?T),
                          length(Rs) =:= length(Ns) orelse error({batch_results, length(Rs), length(Ns)}),
                          [error({batch_start_failed, Nm, R}) || {Nm, R} <- lists:zip(Ns, Rs),
                                                                 element(1, R) =/= ok]
                  end, Groups)
        end).

%% pg events until no orphan is left without a member on a survivor.
follow(Ref, Orphans, Victim, Deadline) ->
    case ets:info(Orphans, size) of
        0 -> ok;
        _ ->
            receive
                {Ref, join, G, Pids} ->
                    [ets:delete(Orphans, G) || lists:any(fun(P) -> node(P) =/= Victim end, Pids)],
                    follow(Ref, Orphans, Victim, Deadline);
                {Ref, _, _, _} -> follow(Ref, Orphans, Victim, Deadline)
            after max(0, Deadline - now_ms()) ->
                error({orphans_left, ets:info(Orphans, size)})
            end
    end.

pg_rows() -> [R || {{s, _}, _, _} = R <- ets:tab2list(?SCOPE)].

on_node(G, Node) -> lists:any(fun(P) -> node(P) =:= Node end, pg:get_members(?SCOPE, G)).

%% Over all N names: without a live member (lost), with more than one (dups).
audit(N, Victim) ->
    lists:foldl(fun(I, {L, D}) ->
                        case [P || P <- pg:get_members(?SCOPE, {s, I}), node(P) =/= Victim] of
                            [] -> {L + 1, D};
                            [_] -> {L, D};
                            _ -> {L, D + 1}
                        end
                end, {0, 0}, lists:seq(1, N)).

specs(Nd) -> proplists:get_value(specs, gen_server:call({?SUP, Nd}, count_children, ?T)).
local(Nd) -> proplists:get_value(children, gen_server:call({?SUP, Nd}, status, ?T)).

vmrss_kb(H) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(maps:get(os_pid, H)) ++ "/status"),
    [_, Rest] = binary:split(B, <<"VmRSS:">>),
    [Num | _] = string:lexemes(binary_to_list(Rest), " \t\n"),
    list_to_integer(Num).

par(C, N, Fun) ->
    Ms = [spawn_monitor(fun() -> par_loop(W, N, C, Fun) end) || W <- lists:seq(1, C)],
    [receive {'DOWN', R, process, Pid, normal} -> ok;
             {'DOWN', R, process, Pid, Why} -> error({worker_failed, Why})
     end || {Pid, R} <- Ms],
    ok.

par_loop(I, N, _C, _Fun) when I > N -> ok;
par_loop(I, N, C, Fun) -> Fun(I), par_loop(I + C, N, C, Fun).

write(OutDir, Fig) ->
    ok = filelib:ensure_dir(filename:join(OutDir, "x")),
    Md = ["# scale run (bench/scale_bench.erl)\n\n| figure | value |\n|---|---|\n",
          [io_lib:format("| ~s | ~w |\n", [K, V]) || {K, V} <- Fig]],
    Csv = ["figure,value\n", [io_lib:format("~s,\"~w\"\n", [K, V]) || {K, V} <- Fig]],
    ok = file:write_file(filename:join(OutDir, "scale8.md"), Md),
    ok = file:write_file(filename:join(OutDir, "scale8.csv"), Csv),
    io:format("written: ~s~n", [filename:join(OutDir, "scale8.md")]).
