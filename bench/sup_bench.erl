%%% Supervisor benchmarks: dsup (DistributedSupervisor instances in dsup-node
%%% C-nodes, C `counter' workers) beside the baseline (bench/baseline/: the
%%% upstream distributed_supervisor mechanism in plain OTP on BEAM peers:
%%% Elixir DynamicSupervisor + pg registry + libring placement + erpc),
%%% both measured from this caller node in the same run.
%%%
%%% Run through bench/run.sh (own epmd, unique names, everything stopped by pid):
%%%   bench/run.sh            full run  -> bench/results/summary.{md,csv}, latency.png
%%%   bench/run.sh --quick    smoke run -> build/bench/results/... (small N, < 1 min)
%%%
%%% Rows (see write_summary/3 for the exact metric of each):
%%%   start_seq / start_conc  start_child into a 3-node ring, 1 / C callers
%%%   failover                kill -9 a node hosting K children -> all re-registered
%%%   mem_idle_child          RSS delta / N for N idle children on one host
%%%   mem_idle_child_scale    the same for 1M counters (100k quick), dsup alone
%%%   pg_sync                 a new node joins the scope and sees all N groups
%%%   scale_*                 1,000,000 children over 2 nodes: start, RSS, calls
%%%   cluster_mem_H           all H hosts' RSS growth / children, replicas = 2
%%%   shim_whereis/shim_call  DistributedSupervisor.whereis/call from an Elixir
%%%                           node (pending shim until elixir_shim/ is compiled)
%%%   pg_join_batch/_single   joins+leaves/s of members on a dsup-node / a BEAM
%%%                           peer until a BEAM observer in the scope sees them
%%%   ring_node_for, phash2_small, phash2_1k
%%%                           ns per lookup / hash: C (bench/bench_ring.c against
%%%                           build/libdsup.a) vs libring's algorithm / phash2 on the BEAM
%%% The summary also takes in the call rows of bench/call_bench.erl (calls.csv).
%%%
%%% Environment (for development): SUP_BENCH_ONLY=ring,start,failover,mem,mem1m,pg,scale,shim,cmem,move
%%% runs a subset (mem includes pg_sync); SUP_BENCH_SCALE_N overrides N of scale,
%%% SUP_BENCH_MEM1M_N the N of mem_idle_child_scale;
%%% SUP_BENCH_CMEM_HOSTS=8 (or 2,4) the host counts of the cluster_mem rows;
%%% SUP_BENCH_LOG_LEVEL sets the dsup-nodes' --log-level (default warn);
%%% SUP_BENCH_SHIM_EBIN is the compiled shim's ebin, SUP_BENCH_RING_BIN the
%%% built bench_ring (run.sh sets both).
-module(sup_bench).

-export([main/1]).
%% run on peers
-export([bl_start_many/4, gc_memory/0, pg_sync_probe/4, shim_probe/5, bl_probe/4,
         whereis_loop/4, pg_host_setup/3, pg_host_pids/0, pg_obs_setup/1, pg_probe/7]).

-define(SUP, 'Elixir.BenchSup').
-define(FO, 'Elixir.BenchFo').
-define(MEM, 'Elixir.BenchMem').
-define(SCALE, 'Elixir.BenchScale').
-define(CMEM, 'Elixir.BenchCMem').
-define(MV, 'Elixir.BenchMove').
-define(BL, bench_bl).
-define(BL_FO, bench_bl_fo).
-define(BL_MEM, bench_bl_mem).
-define(BL_SCALE, bench_bl_scale).
-define(ELIXIR_EBIN, "/usr/lib/elixir/lib/elixir/ebin").
-define(T, 60000).

%% ---------------------------------------------------------------- entry

%% erl -run sup_bench main Mode OutDir LogDir   (Mode = quick | full)
main(Args) ->
    [Mode, OutDir, LogDir] = case Args of
                                 [M, O, L] -> [M, O, L];
                                 [M] -> [M, "bench/results", "build/bench/logs"];
                                 [] -> ["full", "bench/results", "build/bench/logs"]
                             end,
    Quick = Mode =:= "quick",
    _ = io:setopts([{encoding, unicode}]),
    try run(Quick, OutDir, LogDir) of
        ok -> halt(0)
    catch C:R:St ->
        io:format(standard_error, "sup_bench failed: ~p:~p~n~p~n", [C, R, St]),
        cleanup(),
        halt(1)
    end.

config(true) ->
    #{start_seq => 100, start_conc => 400, start_reps => 1, conc => 8,
      fo_n => 200, fo_reps => 1, mem_n => 2000, sync_reps => 1, mem1m_n => 100000,
      scale_n => 10000, scale_conc => 16, scale_calls => 1000,
      cmem_n => 4000, cmem_hosts => [2, 4],
      shim_ops => 200, shim_reps => 1, shim_loop => 20000,
      pg_m => 1000, pg_batch => 50, pg_window => 32, pg_reps => 1,
      ring_reps => 1, ring_ops => 200000, move_n => 300, move_calls => 2000,
      batch_n => 3000, batch_size => 1000, batch_reps => 1};
config(false) ->
    #{start_seq => 2000, start_conc => 10000, start_reps => 5, conc => 8,
      fo_n => 1000, fo_reps => 5, mem_n => 100000, sync_reps => 5, mem1m_n => 1000000,
      scale_n => 1000000, scale_conc => 16, scale_calls => 20000,
      cmem_n => 100000, cmem_hosts => [2, 4, 8],
      shim_ops => 5000, shim_reps => 5, shim_loop => 100000,
      pg_m => 20000, pg_batch => 100, pg_window => 32, pg_reps => 5,
      ring_reps => 5, ring_ops => 2000000, move_n => 3000, move_calls => 20000,
      batch_n => 20000, batch_size => 1000, batch_reps => 5}.

run(Quick, OutDir, LogDir) ->
    Cfg0 = config(Quick),
    Cfg = lists:foldl(fun({Env, Key}, C) ->
                              case os:getenv(Env) of
                                  false -> C;
                                  "" -> C;
                                  V -> C#{Key => list_to_integer(V)}
                              end
                      end, Cfg0, [{"SUP_BENCH_SCALE_N", scale_n}, {"SUP_BENCH_MEM1M_N", mem1m_n}]),
    persistent_term:put({?MODULE, log_dir}, LogDir),
    ets:new(sup_bench_tracked, [named_table, public, bag]),
    Only = case os:getenv("SUP_BENCH_ONLY") of
               false -> all;
               "" -> all;
               O -> [list_to_atom(X) || X <- string:lexemes(O, ",")]
           end,
    Do = fun(Sec) -> Only =:= all orelse lists:member(Sec, Only) end,
    Load0 = loadavg(),
    T0 = erlang:monotonic_time(millisecond),
    ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
    R0 = case Do(ring) of true -> hash_rows(Cfg); false -> [] end,
    R1 = case Do(start) orelse Do(batch) orelse Do(failover) orelse Do(shim) of
             true -> ring_phase(Cfg, Do);
             false -> []
         end,
    R2 = case Do(mem) of true -> mem_phase(Cfg); false -> [] end
        ++ case Do(mem1m) of true -> mem1m_phase(Cfg); false -> [] end,
    R2b = case Do(pg) of true -> pg_phase(Cfg); false -> [] end,
    R3 = case Do(scale) of true -> scale_phase(Cfg); false -> [] end,
    R4 = case Do(cmem) of true -> cmem_phase(Cfg); false -> [] end,
    R5 = case Do(move) of true -> move_phase(Cfg); false -> [] end,
    Rows = R0 ++ R1 ++ R2 ++ R2b ++ R3 ++ R4 ++ R5,
    Secs = (erlang:monotonic_time(millisecond) - T0) / 1000,
    Meta = #{quick => Quick, cfg => Cfg, load_before => Load0, load_after => loadavg(),
             exe => dsup_test:exe(), secs => Secs, only => Only},
    write_summary(OutDir, Rows, Meta),
    ok.

%% ---------------------------------------------------------------- nodes

%% dsup-nodes: started through dsup_test (by OS pid, log per node).
start_dsup(Prefix, Sups, Connect) ->
    H = dsup_test:start_node(#{name => Prefix, log_dir => persistent_term:get({?MODULE, log_dir}),
                               log_level => case os:getenv("SUP_BENCH_LOG_LEVEL") of
                                                L when is_list(L), L =/= "" -> L;
                                                _ -> warn
                                            end,
                               connect => Connect,
                               extra_args => lists:append([["--supervisor", S] || S <- Sups])}),
    track(dsup_nodes, H, add),
    H.

stop_dsup(H) ->
    _ = dsup_test:stop_node(H, 20000),
    track(dsup_nodes, H, del),
    ok.

%% BEAM peers: dsup_test:start_peer/2 from a holder process of their own (not
%% linked to us; the peer node halts when its holder ends), so that peers can
%% start in parallel and a peer killed with -9 takes only its holder down.
start_peer(Prefix, ExtraArgs) ->
    Me = self(),
    Ref = make_ref(),
    Holder = spawn(fun() ->
                           {Peer, Node} = dsup_test:start_peer(
                                            Prefix, #{args => ["-pa", ?ELIXIR_EBIN, "-kernel",
                                                        "prevent_overlapping_partitions", "false"
                                                        | ExtraArgs]}),
                           Me ! {Ref, Node},
                           receive {stop, From, R} -> dsup_test:stop_peer(Peer), From ! {R, stopped}
                           end
                   end),
    MRef = monitor(process, Holder),
    receive
        {Ref, Node} ->
            demonitor(MRef, [flush]),
            OsPid = list_to_integer(erpc:call(Node, os, getpid, [])),
            pidfile(OsPid, write),
            P = #{node => Node, holder => Holder, os_pid => OsPid},
            track(peers, P, add),
            P;
        {'DOWN', MRef, _, _, Why} -> error({peer_start_failed, Prefix, Why})
    end.

stop_peer(#{holder := Holder} = P) ->
    Ref = make_ref(),
    MRef = monitor(process, Holder),
    Holder ! {stop, self(), Ref},
    receive {Ref, stopped} -> ok; {'DOWN', MRef, _, _, _} -> ok after 20000 -> ok end,
    demonitor(MRef, [flush]),
    pidfile(maps:get(os_pid, P), delete),
    track(peers, P, del),
    ok.

kill_peer(#{os_pid := OsPid} = P) ->
    os:cmd("kill -9 " ++ integer_to_list(OsPid)),
    pidfile(OsPid, delete),
    track(peers, P, del),
    ok.

%% BEAM peers' OS pids go to $DSUP_PIDDIR/beam_<pid> (run.sh kills leftovers).
pidfile(OsPid, Op) ->
    case os:getenv("DSUP_PIDDIR") of
        D when is_list(D), D =/= "" ->
            F = filename:join(D, "beam_" ++ integer_to_list(OsPid)),
            case Op of write -> file:write_file(F, <<>>); delete -> file:delete(F) end;
        _ -> ok
    end.

%% What is running, in a public table (nodes may be started by pmap workers).
%% (created by run/3, so owned by the main process)
track(Kind, X, Op) ->
    case Op of
        add -> ets:insert(sup_bench_tracked, {Kind, X});
        del -> ets:delete_object(sup_bench_tracked, {Kind, X})
    end.

tracked(Kind) ->
    case ets:whereis(sup_bench_tracked) of
        undefined -> [];
        _ -> [X || {_, X} <- ets:lookup(sup_bench_tracked, Kind)]
    end.

cleanup() ->
    [catch stop_peer(P) || P <- tracked(peers)],
    [catch dsup_test:stop_node(H, 10000) || H <- tracked(dsup_nodes)],
    ok.

get_list(K) -> case get(K) of undefined -> []; L -> L end.

pmap(F, L) ->
    Me = self(),
    Ps = [{spawn_monitor(fun() -> Me ! {self(), (catch {ok, F(X)})} end), X} || X <- L],
    [receive
         {Pid, {ok, V}} -> demonitor(M, [flush]), V;
         {Pid, Err} -> error({pmap_failed, X, Err});
         {'DOWN', M, _, _, Why} -> error({pmap_failed, X, Why})
     end || {{Pid, M}, X} <- Ps].

nodes_of(Sup, Node) -> gen_server:call({Sup, Node}, nodes, ?T).

wait_ring(Sup, Nodes, Want) ->
    dsup_test:wait_until(
      fun() -> lists:all(fun(N) -> length(nodes_of(Sup, N)) =:= Want end, Nodes) end, 30000).

wait_bl_ring(Inst, Nodes, Want) ->
    #{registry := Reg} = bl_dsup:names(Inst),
    dsup_test:wait_until(
      fun() -> lists:all(fun(N) -> length(gen_server:call({Reg, N}, nodes)) =:= Want end, Nodes)
      end, 30000).

vmrss_kb(OsPid) ->
    {ok, B} = file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/status"),
    [_, Rest] = binary:split(B, <<"VmRSS:">>),
    [Num | _] = string:lexemes(binary_to_list(Rest), " \t\n"),
    list_to_integer(Num).

%% Run on a BEAM peer: GC every process, then erlang:memory(total).
gc_memory() ->
    [garbage_collect(P) || P <- processes()],
    erlang:memory(total).

%% ---------------------------------------------------------------- timing

now_us() -> erlang:monotonic_time(microsecond).

%% N ops Fun(I), I = 1..N, by C concurrent processes; wall time in µs.
par(C, N, Fun) ->
    T0 = now_us(),
    Ms = [spawn_monitor(fun() -> par_loop(W, N, C, Fun) end) || W <- lists:seq(1, C)],
    [receive {'DOWN', R, process, Pid, normal} -> ok;
             {'DOWN', R, process, Pid, Why} -> error({worker_failed, Why})
     end || {Pid, R} <- Ms],
    now_us() - T0.

par_loop(I, N, _C, _Fun) when I > N -> ok;
par_loop(I, N, C, Fun) -> Fun(I), par_loop(I + C, N, C, Fun).

%% N ops sequentially; {WallUs, [PerOpUs]}.
seq_timed(N, Fun) ->
    T0 = now_us(),
    Lat = seq_loop(1, N, Fun, []),
    {now_us() - T0, Lat}.

seq_loop(I, N, _Fun, Acc) when I > N -> lists:reverse(Acc);
seq_loop(I, N, Fun, Acc) ->
    T = now_us(),
    Fun(I),
    seq_loop(I + 1, N, Fun, [now_us() - T | Acc]).

median([]) -> undefined;
median(L) ->
    S = lists:sort(L),
    Len = length(S),
    case Len rem 2 of
        1 -> lists:nth(Len div 2 + 1, S);
        0 -> (lists:nth(Len div 2, S) + lists:nth(Len div 2 + 1, S)) / 2
    end.

pct(L, P) ->
    S = list_to_tuple(lists:sort(L)),
    element(max(1, min(tuple_size(S), round(P / 100 * tuple_size(S)))), S).

pctf(L, P) -> float(pct(L, P)).

%% Reps repetitions of {dsup, F} and {base, G}, alternating which goes first.
alternate(Reps, DsupF, BaseF) ->
    lists:foldl(
      fun(Rep, {Ds, Bs}) ->
              case Rep rem 2 of
                  1 -> D = DsupF(Rep), B = BaseF(Rep);
                  0 -> B = BaseF(Rep), D = DsupF(Rep)
              end,
              {Ds ++ [D], Bs ++ [B]}
      end, {[], []}, lists:seq(1, Reps)).

%% ---------------------------------------------------------------- ring phase
%% 3 dsup-nodes (BenchSup, BenchFo) and 3 BEAM peers (bench_bl, bench_bl_fo):
%% start rate, then failover with an extra victim node per repetition.

ring_phase(Cfg, Do) ->
    io:format("== ring: starting 3 dsup-nodes and 3 BEAM peers~n"),
    Sups = [atom_to_list(?SUP), atom_to_list(?FO)],
    D1 = start_dsup(ring_c, Sups, []),
    [D2, D3] = pmap(fun(_) -> start_dsup(ring_c, Sups, [maps:get(node, D1)]) end, [2, 3]),
    DN = [maps:get(node, H) || H <- [D1, D2, D3]],
    Peers = pmap(fun(_) -> start_peer(ring_b, []) end, [1, 2, 3]),
    BN = [maps:get(node, P) || P <- Peers],
    [pong = erpc:call(A, net_adm, ping, [B]) || A <- BN, B <- BN, A < B],
    [ok = erpc:call(N, bl_dsup, start, [I]) || N <- BN, I <- [?BL, ?BL_FO]],
    wait_ring(?SUP, DN, 3),
    wait_ring(?FO, DN, 3),
    wait_bl_ring(?BL, BN, 3),
    wait_bl_ring(?BL_FO, BN, 3),
    io:format("dsup ring ~p~nBEAM ring ~p~n", [DN, BN]),
    Rows1 = case Do(start) of
                true -> start_rows(Cfg, DN, BN, [maps:get(os_pid, H) || H <- [D1, D2, D3]],
                                   [maps:get(os_pid, P) || P <- Peers]);
                false -> []
            end,
    RowsB = case Do(start) orelse Do(batch) of
                true -> [batch_row(Cfg, DN, BN, [maps:get(os_pid, H) || H <- [D1, D2, D3]],
                                   [maps:get(os_pid, P) || P <- Peers])];
                false -> []
            end,
    Rows2 = case Do(shim) of true -> shim_rows(Cfg, DN, BN); false -> shim_pending() end,
    Rows3 = case Do(failover) of true -> [failover_row(Cfg, DN, BN)]; false -> [] end,
    [stop_peer(P) || P <- Peers],
    [stop_dsup(H) || H <- [D1, D2, D3]],
    Rows1 ++ RowsB ++ Rows2 ++ Rows3.

start_rows(Cfg, DN, BN, DOs, BOs) ->
    #{start_seq := NS, start_conc := NC, start_reps := Reps, conc := C} = Cfg,
    DT = list_to_tuple(DN),
    BT = list_to_tuple(BN),
    DStart = fun(Key, I) ->
                     {ok, _, Key} = gen_server:call({?SUP, element(I rem 3 + 1, DT)},
                                                    {start_child, {counter, [{name, Key}]},
                                                     undefined}, ?T)
             end,
    BStart = fun(Key, I) ->
                     {ok, _, Key} = erpc:call(element(I rem 3 + 1, BT), bl_dsup, start_child,
                                              [?BL, Key], ?T)
             end,
    %% warm-up (connections, code loading, allocators)
    par(C, 200, fun(I) -> DStart({w, I}, I) end),
    par(C, 200, fun(I) -> BStart({w, I}, I) end),
    io:format("== start_child, sequential (~b per repetition, ~b repetitions)~n", [NS, Reps]),
    {SeqD, SeqB} = alternate(Reps,
                             fun(Rep) -> seq_timed(NS, fun(I) -> DStart({s, Rep, I}, I) end) end,
                             fun(Rep) -> seq_timed(NS, fun(I) -> BStart({s, Rep, I}, I) end) end),
    io:format("== start_child, ~b concurrent callers (~b per repetition)~n", [C, NC]),
    Me = list_to_integer(os:getpid()),
    %% {Wall µs, host CPU µs per start (3 host OS processes), caller CPU µs per start}
    WithCpu = fun(Hosts, Run) ->
                      H0 = cpu_us(Hosts), M0 = cpu_us([Me]),
                      W = Run(),
                      {W, (cpu_us(Hosts) - H0) / NC, (cpu_us([Me]) - M0) / NC}
              end,
    {ConD, ConB} = alternate(Reps,
                             fun(Rep) -> WithCpu(DOs, fun() -> par(C, NC, fun(I) -> DStart({c, Rep, I}, I) end) end) end,
                             fun(Rep) -> WithCpu(BOs, fun() -> par(C, NC, fun(I) -> BStart({c, Rep, I}, I) end) end) end),
    Rate = fun(N, Us) -> N / (Us / 1.0e6) end,
    SeqRD = [Rate(NS, W) || {W, _} <- SeqD],
    SeqRB = [Rate(NS, W) || {W, _} <- SeqB],
    ConRD = [Rate(NC, W) || {W, _, _} <- ConD],
    ConRB = [Rate(NC, W) || {W, _, _} <- ConB],
    LatD = lists:append([L || {_, L} <- SeqD]),
    LatB = lists:append([L || {_, L} <- SeqB]),
    put(latency, [{start_seq, "start_child (sequential)", LatD, LatB} | get_list(latency)]),
    [row(start_seq, "start_child into a 3-node ring, 1 caller (calls round-robin over the 3 nodes)",
         "starts/s", higher, SeqRD, SeqRB, {ratio_ge, 20}, Reps,
         io_lib:format("per call p50/p99: dsup ~b/~b µs, baseline ~b/~b µs",
                       [pct(LatD, 50), pct(LatD, 99), pct(LatB, 50), pct(LatB, 99)])),
     row(start_conc, io_lib:format("start_child into a 3-node ring, ~b concurrent callers", [C]),
         "starts/s", higher, ConRD, ConRB, {ratio_ge, 20}, Reps,
         io_lib:format("the caller node's own CPU per start: dsup ~b µs, baseline ~b µs "
                       "(one Erlang caller node; see start_cpu)",
                       [round(median([X || {_, _, X} <- ConD])),
                        round(median([X || {_, _, X} <- ConB]))])),
     row(start_cpu, io_lib:format("CPU time per start_child of the 3 host nodes together "
                                  "(user+sys, ~b concurrent callers)", [C]),
         "CPU µs/start", lower, [X || {_, X, _} <- ConD], [X || {_, X, _} <- ConB], none, Reps,
         "from /proc/<pid>/stat utime+stime of the 3 dsup-nodes / the 3 BEAM nodes over each "
         "repetition of start_conc, divided by the starts; the caller node is not counted")].

%% ---------------------------------------------------------------- batch start
%% N children in batches of B: the caller groups each batch by owner (libring
%% reference bl_ring over the 3 dsup-nodes) and sends one
%% {start_children_here, [{Name, SpecMap}]} per owner, all owners in
%% parallel, 4 batches in flight. Timed until every child is seen by every
%% observer: each C instance's table counts it and the caller's pg scope
%% (a BEAM observer) has a member for every name. The baseline has no batch
%% call: the same N through upstream's start_child with 8 callers, timed
%% until the caller's pg scope has every name.

batch_row(Cfg, DN, BN, DOs, BOs) ->
    #{batch_n := N, batch_size := B, batch_reps := Reps, conc := C} = Cfg,
    io:format("== batch start: ~b children in batches of ~b (~b repetitions)~n", [N, B, Reps]),
    DScope = scope(?SUP),
    BScope = maps:get(scope, bl_dsup:names(?BL)),
    {ok, _} = pg:start(DScope),
    {ok, _} = pg:start(BScope),
    wait_pg_peers(DScope, DN),
    wait_pg_peers(BScope, BN),
    Ring = bl_ring:new(lists:sort(DN)),
    BT = list_to_tuple(BN),
    Me = list_to_integer(os:getpid()),
    %% CPU µs per child (user+sys from /proc) of the 3 hosts and of this
    %% caller node over a repetition: where the time goes on a shared box
    Cpu = fun(Hosts) -> {cpu_us(Hosts), cpu_us([Me])} end,
    PerChild = fun({H0, M0}, {H1, M1}) -> {(H1 - H0) / N, (M1 - M0) / N} end,
    {Ds, Bs} = alternate(
                 Reps,
                 fun(Rep) ->
                         Keys = [{bt, Rep, I} || I <- lists:seq(1, N)],
                         Before = [count(?SUP, Nd) || Nd <- DN],
                         C0 = Cpu(DOs),
                         T0 = now_us(),
                         Chunks = list_to_tuple(chunks(Keys, B)),
                         par(4, tuple_size(Chunks), fun(I) -> batch_call(element(I, Chunks), Ring) end),
                         TReply = now_us() - T0,
                         ok = dsup_test:wait_until(
                                fun() -> lists:all(fun({Nd, Bf}) -> count(?SUP, Nd) >= Bf + N end,
                                                   lists:zip(DN, Before)) end, 60000, 2),
                         wait_pg_all(DScope, Keys),
                         T = now_us() - T0,
                         {HC, MC} = PerChild(C0, Cpu(DOs)),
                         io:format("  dsup rep ~b: ~b children/s (replies after ~.1f ms, all seen after ~.1f ms; "
                                   "CPU per child: hosts ~.1f µs, caller ~.1f µs)~n",
                                   [Rep, round(N / (T / 1.0e6)), TReply / 1000, T / 1000, HC, MC]),
                         {N / (T / 1.0e6), TReply, HC, MC}
                 end,
                 fun(Rep) ->
                         KT = list_to_tuple([{bt, Rep, I} || I <- lists:seq(1, N)]),
                         C0 = Cpu(BOs),
                         T0 = now_us(),
                         par(C, N, fun(I) ->
                                           Key = element(I, KT),
                                           {ok, _, Key} = erpc:call(element(I rem 3 + 1, BT), bl_dsup,
                                                                    start_child, [?BL, Key], ?T)
                                   end),
                         wait_pg_all(BScope, tuple_to_list(KT)),
                         T = now_us() - T0,
                         {HC, MC} = PerChild(C0, Cpu(BOs)),
                         io:format("  baseline rep ~b: ~b children/s (CPU per child: hosts ~.1f µs, caller ~.1f µs)~n",
                                   [Rep, round(N / (T / 1.0e6)), HC, MC]),
                         {N / (T / 1.0e6), HC, MC}
                 end),
    pg_stop(DScope),
    pg_stop(BScope),
    Med = fun(I, L) -> median([element(I, X) || X <- L]) end,
    row(start_batch, io_lib:format("batch start of ~b children into a 3-node ring (batches of ~b), "
                                   "until every observer sees them", [N, B]),
        "children/s", higher, [R || {R, _, _, _} <- Ds], [R || {R, _, _} <- Bs], {abs_ge, 100000}, Reps,
        io_lib:format("dsup: one {start_children_here, List} per owner host and batch, 4 batches in "
                      "flight, replies after ~.1f ms (median), then every C instance's table and the "
                      "caller's pg hold all; baseline: upstream start_child, ~b callers (it has no "
                      "batch call), until the caller's pg holds all. CPU per child (user+sys, median): "
                      "the 3 hosts ~.1f µs dsup / ~.1f µs baseline, the caller node ~.1f / ~.1f µs",
                      [Med(2, Ds) / 1000, C, Med(3, Ds), Med(2, Bs), Med(4, Ds), Med(3, Bs)])).

chunks([], _) -> [];
chunks(L, B) when length(L) =< B -> [L];
chunks(L, B) -> {H, T} = lists:split(B, L), [H | chunks(T, B)].

batch_call(Keys, Ring) ->
    Groups = maps:groups_from_list(fun(K) -> bl_ring:key_to_node(Ring, K) end, Keys),
    Self = self(),
    Refs = [begin
                Ref = make_ref(),
                Items = [{K, #{id => K, start => {counter, start_link, [[]]}, args => [],
                               restart => permanent, shutdown => 5000}} || K <- Ks],
                spawn_link(fun() ->
                                   Rs = gen_server:call({?SUP, Owner}, {start_children_here, Items}, ?T),
                                   Self ! {Ref, Ks, Rs}
                           end),
                Ref
            end || {Owner, Ks} <- maps:to_list(Groups)],
    [receive
         {Ref, Ks, Rs} ->
             length(Ks) =:= length(Rs) orelse error({batch_results, length(Ks), length(Rs)}),
             [ok = element(1, R) || R <- Rs]
     end || Ref <- Refs],
    ok.

%% Every key has a member in the caller's scope. Each poll (every 2 ms)
%% starts at the first key not seen yet: rescanning all N keys on every poll
%% competed for the CPU with the nodes being measured (both sides wait here
%% the same way); a last full pass then checks every key at once.
wait_pg_all(Scope, Keys) ->
    Seen = fun(K) -> pg:get_members(Scope, K) =/= [] end,
    Left = fun() ->
                   case lists:dropwhile(Seen, get(wait_pg_left)) of
                       [] -> true;
                       L -> put(wait_pg_left, L), false
                   end
           end,
    put(wait_pg_left, Keys),
    ok = dsup_test:wait_until(Left, 60000, 2),
    erase(wait_pg_left),
    true = lists:all(Seen, Keys),
    ok.

%% utime + stime of OS processes, µs
cpu_us(OsPids) ->
    Tck = case persistent_term:get({?MODULE, clk_tck}, undefined) of
              undefined ->
                  T = list_to_integer(string:trim(os:cmd("getconf CLK_TCK"))),
                  persistent_term:put({?MODULE, clk_tck}, T), T;
              T -> T
          end,
    lists:sum([begin
                   {ok, B} = file:read_file("/proc/" ++ integer_to_list(P) ++ "/stat"),
                   [_, R] = binary:split(B, <<") ">>),
                   F = string:lexemes(binary_to_list(R), " "),
                   list_to_integer(lists:nth(12, F)) + list_to_integer(lists:nth(13, F))
               end || P <- OsPids]) * 1000000 / Tck.

%% ---- failover

failover_row(Cfg, DN, BN) ->
    #{fo_n := K, fo_reps := Reps, conc := C} = Cfg,
    io:format("== failover: kill -9 a node hosting ~b children (~b repetitions)~n", [K, Reps]),
    FoScope = scope(?FO),
    BlScope = maps:get(scope, bl_dsup:names(?BL_FO)),
    {ok, _} = pg:start(FoScope),
    {ok, _} = pg:start(BlScope),
    %% the caller's scopes must know the survivors' scopes before a kill (dsup-
    %% nodes discover a scope started after connecting within 1 s)
    wait_pg_peers(FoScope, DN),
    wait_pg_peers(BlScope, BN),
    {Ds, Bs} = alternate(Reps,
                         fun(Rep) -> fo_dsup(Rep, K, C, DN, FoScope) end,
                         fun(Rep) -> fo_base(Rep, K, C, BN, BlScope) end),
    DMs = [Ms || #{ms := Ms} <- Ds],
    BMs = [Ms || #{ms := Ms} <- Bs],
    Spread = fun(L) -> lists:flatten(lists:join("; ", [fmt_spread(S) || #{spread := S} <- L])) end,
    Missing = fun(L) -> lists:sum([M || #{missing := M} <- L]) end,
    Note = io_lib:format("ms from `kill -9` until every orphan has a pg member on a survivor, "
                         "seen from the caller node; orphans per survivor: dsup ~s, "
                         "baseline ~s; not re-registered within 30 s: dsup ~b, baseline ~b; "
                         "detection (nodedown at the caller): dsup ~s ms, baseline ~s ms",
                         [Spread(Ds), Spread(Bs), Missing(Ds), Missing(Bs),
                          fmt_list([D || #{detect_ms := D} <- Ds]),
                          fmt_list([D || #{detect_ms := D} <- Bs])]),
    pg_stop(FoScope),
    pg_stop(BlScope),
    row(failover, io_lib:format("failover: kill -9 a node hosting ~b children, all re-registered", [K]),
        "ms", lower, DMs, BMs, {abs_lt, 100}, Reps, Note).

pg_stop(Scope) ->
    case whereis(Scope) of
        undefined -> ok;
        P -> gen_server:stop(P)
    end.

fmt_spread(M) ->
    lists:flatten(lists:join("/", [integer_to_list(V) || {_, V} <- lists:sort(maps:to_list(M))])).

fmt_list(L) -> lists:flatten(lists:join(",", [io_lib:format("~.1f", [float(X)]) || X <- L])).

fo_dsup(Rep, K, C, DN, Scope) ->
    Before = [count(?FO, N) || N <- DN],
    H = start_dsup(fo_victim_c, [atom_to_list(?FO)], DN),
    V = maps:get(node, H),
    wait_ring(?FO, [V | DN], 4),
    Keys = [{fo, Rep, I} || I <- lists:seq(1, K)],
    KT = list_to_tuple(Keys),
    par(C, K, fun(I) ->
                      Key = element(I, KT),
                      {ok, _, Key} = gen_server:call({?FO, V}, {start_child, {counter, [{name, Key}]}, V}, ?T)
              end),
    %% every survivor's cache and the caller's pg view hold all K
    dsup_test:wait_until(fun() -> lists:all(fun({N, B}) -> count(?FO, N) >= B + K end,
                                            lists:zip(DN, Before)) end, 30000),
    wait_visible(Scope, Keys, V),
    wait_pg_peers(Scope, [V | DN]),
    R = measure_failover(Scope, Keys, V, fun() -> dsup_test:signal_node(H, "KILL") end),
    _ = dsup_test:wait_exit(H, 10000),
    track(dsup_nodes, H, del),
    _ = dsup_test:forget(H),
    io:format("  dsup rep ~b: ~.1f ms (nodedown at caller after ~.1f ms), spread ~s~n",
              [Rep, float(maps:get(ms, R)), float(maps:get(detect_ms, R)), fmt_spread(maps:get(spread, R))]),
    R.

fo_base(Rep, K, C, BN, Scope) ->
    #{registry := Reg} = bl_dsup:names(?BL_FO),
    Before = [gen_server:call({Reg, N}, cache_size) || N <- BN],
    P = start_peer(fo_victim_b, []),
    V = maps:get(node, P),
    [pong = erpc:call(V, net_adm, ping, [N]) || N <- BN],
    ok = erpc:call(V, bl_dsup, start, [?BL_FO]),
    wait_bl_ring(?BL_FO, [V | BN], 4),
    Keys = [{fo, Rep, I} || I <- lists:seq(1, K)],
    KT = list_to_tuple(Keys),
    par(C, K, fun(I) ->
                      Key = element(I, KT),
                      {ok, _, Key} = erpc:call(V, bl_dsup, start_child, [?BL_FO, Key, V], ?T)
              end),
    dsup_test:wait_until(
      fun() -> lists:all(fun({N, B}) -> gen_server:call({Reg, N}, cache_size) >= B + K end,
                         lists:zip(BN, Before)) end,
      30000),
    wait_visible(Scope, Keys, V),
    wait_pg_peers(Scope, [V | BN]),
    R = measure_failover(Scope, Keys, V, fun() -> kill_peer(P) end),
    io:format("  base rep ~b: ~.1f ms (nodedown at caller after ~.1f ms), spread ~s~n",
              [Rep, float(maps:get(ms, R)), float(maps:get(detect_ms, R)), fmt_spread(maps:get(spread, R))]),
    R.

%% The nodes whose scope process the local pg scope Scope knows as peers.
pg_peer_nodes(Scope) ->
    [node(P) || P <- maps:keys(element(4, sys:get_state(Scope)))].    % #state.remote

wait_pg_peers(Scope, Nodes) ->
    dsup_test:wait_until(fun() -> Nodes -- pg_peer_nodes(Scope) =:= [] end, 30000).

count(Sup, Node) ->
    proplists:get_value(specs, gen_server:call({Sup, Node}, count_children, ?T)).

wait_visible(Scope, Keys, V) ->
    dsup_test:wait_until(
      fun() -> lists:all(fun(Key) -> [node(P) || P <- pg:get_members(Scope, Key)] =:= [V] end, Keys)
      end, 30000).

%% Kill, then follow the caller's pg scope events until every key has a
%% member off the victim node.
measure_failover(Scope, Keys, V, Kill) ->
    {Ref, _} = pg:monitor_scope(Scope),
    flush_nodedown(V),
    Want = maps:from_list([{Key, true} || Key <- Keys]),
    T0 = now_us(),
    Kill(),
    Res = fo_loop(Ref, V, Want, #{}, T0 + 30000000, undefined, T0),
    pg:demonitor(Scope, Ref),
    Res.

flush_nodedown(V) ->
    receive {nodedown, V, _} -> flush_nodedown(V) after 0 -> ok end.

fo_loop(_Ref, V, Want, Spread, _Deadline, Detect, T0) when map_size(Want) =:= 0 ->
    #{ms => (now_us() - T0) / 1000, spread => Spread, missing => 0,
      detect_ms => detect(Detect, T0, V)};
fo_loop(Ref, V, Want, Spread, Deadline, Detect, T0) ->
    Left = max(0, (Deadline - now_us()) div 1000),
    receive
        {Ref, join, Key, Pids} ->
            case [P || P <- Pids, node(P) =/= V] of
                [P | _] when is_map_key(Key, Want) ->
                    fo_loop(Ref, V, maps:remove(Key, Want),
                            maps:update_with(node(P), fun(X) -> X + 1 end, 1, Spread),
                            Deadline, Detect, T0);
                _ -> fo_loop(Ref, V, Want, Spread, Deadline, Detect, T0)
            end;
        {nodedown, V, _} when Detect =:= undefined ->
            fo_loop(Ref, V, Want, Spread, Deadline, now_us(), T0);
        {Ref, _, _, _} ->
            fo_loop(Ref, V, Want, Spread, Deadline, Detect, T0)
    after Left ->
        #{ms => (now_us() - T0) / 1000, spread => Spread, missing => map_size(Want),
          detect_ms => detect(Detect, T0, V)}
    end.

detect(undefined, T0, V) ->
    receive {nodedown, V, _} -> (now_us() - T0) / 1000 after 0 -> -1 end;
detect(T, T0, _) -> (T - T0) / 1000.

scope(Sup) -> list_to_atom(atom_to_list(Sup) ++ ".Scope").

%% ---------------------------------------------------------------- moves (issue 16)

%% Two dsup-nodes with `rebalance=true` hosting move_n kv children of 1 KiB
%% each; a third joins and the children it now owns move to it with their
%% state. Seen from this node's pg scope (pg:monitor_scope: every leave and
%% join in the order applied): moves per second (first leave to last join)
%% and, per moved name, the time it had no registered pid. Meanwhile this
%% node calls children that do NOT move, sequentially; their latency is
%% compared with the same calls idle. Then the checkpoint cost: a counter's
%% `checkpoint` call (publishes its value to the ring successor) vs `get`.
%% No pure-BEAM baseline (pg-based libraries do not move state): the
%% baseline column holds the idle calls / plain calls, as the rows say.
move_phase(Cfg) ->
    #{move_n := N, move_calls := K} = Cfg,
    io:format("== moves: ~b kv children of 1 KiB, a third host joins~n", [N]),
    Opt = "BenchMove,rebalance=true",
    D1 = start_dsup(mv_a, [Opt], []),
    D2 = start_dsup(mv_b, [Opt], [maps:get(node, D1)]),
    DN = [maps:get(node, H) || H <- [D1, D2]],
    wait_ring(?MV, DN, 2),
    Scope = scope(?MV),
    {ok, _} = pg:start(Scope),
    wait_pg_peers(Scope, DN),
    Val = fun(I) -> binary:copy(<<I:32>>, 256) end,
    Names = [{mv, I} || I <- lists:seq(1, N)],
    par(8, N, fun(I) ->
                      Nm = {mv, I},
                      {ok, P, Nm} = gen_server:call({?MV, lists:nth(I rem 2 + 1, DN)},
                                                    {start_child, {kv, [{name, Nm}]}, undefined}, ?T),
                      ok = gen_server:call(P, {put, v, Val(I)}, ?T)
              end),
    dsup_test:wait_until(fun() -> lists:all(fun(Nm) -> length(pg:get_members(Scope, Nm)) =:= 1 end, Names) end,
                         30000),
    %% the third node, its instance not started yet; the children that stay:
    %% owned by the same node with or without it
    D3 = start_dsup(mv_c, [], DN),
    C = maps:get(node, D3),
    Ring3 = dsup_cluster:ring([C | DN]),
    Stay = lists:sublist([Nm || Nm <- Names, dsup_cluster:ring_owner(Ring3, Nm) =/= C], 50),
    StayPids = [hd(pg:get_members(Scope, Nm)) || Nm <- Stay],
    CallLoop = fun Loop(Ps, 0, Acc) -> {Ps, Acc};
                   Loop([P | Ps], Left, Acc) ->
                       T0 = erlang:monotonic_time(microsecond),
                       {ok, _} = gen_server:call(P, {get, v}, ?T),
                       Loop(Ps ++ [P], Left - 1, [erlang:monotonic_time(microsecond) - T0 | Acc])
               end,
    {_, Idle} = CallLoop(StayPids, K, []),
    Self = self(),
    Watch = spawn_link(fun() ->
                               {Ref, _} = pg:monitor_scope(Scope),
                               Self ! {watching, self()},
                               move_watch(Ref, #{}, [], undefined, undefined)
                       end),
    receive {watching, Watch} -> ok end,
    Caller = spawn_link(fun() -> move_busy_calls(Self, StayPids, CallLoop, []) end),
    {ok, _} = gen_server:call({dsup_node, C}, {start_supervisor, ?MV, [{rebalance, true}]}, ?T),
    Moved = [Nm || Nm <- Names, dsup_cluster:ring_owner(Ring3, Nm) =:= C],
    dsup_test:wait_until(fun() -> lists:all(fun(Nm) -> [node(P) || P <- pg:get_members(Scope, Nm)] =:= [C] end,
                                            Moved) end, 60000),
    Caller ! {stop, self()},
    Busy = receive {Caller, L} -> L after ?T -> error(move_caller) end,
    Watch ! {stop, self()},
    {Timed, First, Last} = receive {Watch, G, F, La} -> {G, F, La} after ?T -> error(move_watch) end,
    Gaps = [G || {_, G} <- Timed],
    %% where the longest gaps sit in the rebalance (ms after its first leave)
    io:format("moves: longest gaps ({ms after the first leave, gap ms}): ~w~n",
              [[{round((T - First) / 1000), round(G / 100) / 10} || {T, G} <- lists:sublist(lists:reverse(lists:keysort(2, Timed)), 8)]]),
    [{ok, _} = gen_server:call(hd(pg:get_members(Scope, Nm)), {get, v}, ?T) || Nm <- Moved],
    Rate = length(Moved) / max(1, Last - First) * 1.0e6,
    GapMs = [G / 1000 || G <- Gaps],
    io:format("moves: ~b moved, ~.1f moves/s; gap p50 ~.2f ms p99 ~.2f ms max ~.2f ms~n",
              [length(Moved), Rate, pct(GapMs, 50), pct(GapMs, 99), lists:max(GapMs)]),
    %% checkpoint cost, on one counter (alternating repetitions)
    {ok, CP, _} = gen_server:call({?MV, C}, {start_child, {counter, [{name, mv_ckpt}]}, C}, ?T),
    Per = fun(Req) -> {T, _} = timer:tc(fun() -> [gen_server:call(CP, Req, ?T) || _ <- lists:seq(1, K)] end),
                      T / K end,
    {Ck, Plain} = alternate(3, fun(_) -> Per(checkpoint) end, fun(_) -> Per(get) end),
    pg_stop(Scope),
    [stop_dsup(H) || H <- [D1, D2, D3]],
    [row(move_rate, io_lib:format("moves per second during a rebalance: ~b kv children of 1 KiB on 2 hosts, "
                                  "a third joins (~b move, default throttle 8 in flight)", [N, length(Moved)]),
         "moves/s", higher, [Rate], [], completes, 1,
         "first leave to last join of the moved names, as this node's pg scope applied them"),
     row(move_gap, "longest time a name is unregistered during its move (1 KiB state), p99",
         "ms", lower, [pct(GapMs, 99)], [], {abs_lt, 10}, 1,
         io_lib:format("per moved name, its pid's leave to the new pid's join in this node's pg view; "
                       "p50 ~.2f ms, max ~.2f ms (~b moves)", [pct(GapMs, 50), lists:max(GapMs), length(GapMs)])),
     row(move_other_calls, "gen_server:call to children that do not move while a rebalance runs, p99 "
                           "(baseline column: the same calls idle)",
         "µs", lower, [pct(Busy, 99)], [pct(Idle, 99)], none, 1,
         io_lib:format("p50 during ~b µs vs idle ~b µs; p99 during ~b µs vs idle ~b µs (~b calls during, ~b idle)",
                       [pct(Busy, 50), pct(Idle, 50), pct(Busy, 99), pct(Idle, 99), length(Busy), length(Idle)])),
     row(checkpoint_cost, "checkpoint cost: a counter call that publishes a checkpoint "
                          "(baseline column: the same counter's plain get)",
         "µs/call", lower, Ck, Plain, none, 3,
         "sequential calls from one caller; a checkpoint is copied to the ring successor at most 10 times "
         "a second per child")].

%% Calls to the children that stay, from the moment the third host starts
%% until told to stop.
move_busy_calls(Owner, Pids, Loop, Acc) ->
    {Ps, L} = Loop(Pids, 200, []),
    receive {stop, Owner} -> Owner ! {self(), L ++ Acc}
    after 0 -> move_busy_calls(Owner, Ps, Loop, L ++ Acc)
    end.

%% Gaps (µs) between a child name's last member leaving and a member
%% joining; first leave and last join times.
move_watch(Ref, Left, Gaps, First, Last) ->
    receive
        {Ref, leave, {mv, _} = G, _} ->
            Now = erlang:monotonic_time(microsecond),
            move_watch(Ref, Left#{G => Now}, Gaps, case First of undefined -> Now; _ -> First end, Last);
        {Ref, join, {mv, _} = G, _} ->
            Now = erlang:monotonic_time(microsecond),
            case maps:take(G, Left) of
                {T, L1} -> move_watch(Ref, L1, [{T, Now - T} | Gaps], First, Now);
                error -> move_watch(Ref, Left, Gaps, First, Last)
            end;
        {Ref, _, _, _} -> move_watch(Ref, Left, Gaps, First, Last);
        {stop, From} -> From ! {self(), Gaps, First, Last}
    end.

%% ---------------------------------------------------------------- memory + pg sync

mem_phase(Cfg) ->
    #{mem_n := N, sync_reps := Reps} = Cfg,
    io:format("== memory: ~b idle children on one host~n", [N]),
    H = start_dsup(mem_c, [atom_to_list(?MEM)], []),
    M = maps:get(node, H),
    wait_ring(?MEM, [M], 1),
    P = start_peer(mem_b, ["+P", "2000000"]),
    BM = maps:get(node, P),
    ok = erpc:call(BM, bl_dsup, start, [?BL_MEM]),
    wait_bl_ring(?BL_MEM, [BM], 1),
    %% warm-up child (first-use allocations), not counted
    {ok, _, _} = gen_server:call({?MEM, M}, {start_child, {counter, [{name, warm}]}, M}, ?T),
    {ok, _, _} = erpc:call(BM, bl_dsup, start_local, [?BL_MEM, warm]),
    %% dsup: RSS of the dsup-node
    Rss0 = vmrss_kb(maps:get(os_pid, H)),
    Spec = fun(I) -> {counter, [{name, {c, I}}]} end,
    UsD = par(16, N, fun(I) -> {ok, _, _} = gen_server:call({?MEM, M}, {start_child, Spec(I), M}, ?T) end),
    N1 = count(?MEM, M) - 1,
    Rss1 = vmrss_kb(maps:get(os_pid, H)),
    %% baseline: RSS and erlang:memory(total) of the BEAM peer
    BRss0 = vmrss_kb(maps:get(os_pid, P)),
    BMem0 = erpc:call(BM, ?MODULE, gc_memory, [], ?T),
    UsB = erpc:call(BM, ?MODULE, bl_start_many, [?BL_MEM, c, N, 16], 600000),
    BMem1 = erpc:call(BM, ?MODULE, gc_memory, [], ?T),
    BRss1 = vmrss_kb(maps:get(os_pid, P)),
    BN1 = erpc:call(BM, bl_dsup, count, [?BL_MEM]) - 1,
    PerD = (Rss1 - Rss0) * 1024 / N1,
    PerB = (BRss1 - BRss0) * 1024 / BN1,
    PerBMem = (BMem1 - BMem0) / BN1,
    SpecBytes = erlang:external_size(Spec(N)),
    io:format("  dsup ~b B/child (~b children, RSS ~b -> ~b kB, started in ~.1f s)~n"
              "  base ~b B/child RSS, ~b B/child erlang:memory (~b children, in ~.1f s)~n",
              [round(PerD), N1, Rss0, Rss1, UsD / 1.0e6, round(PerB), round(PerBMem), BN1,
               UsB / 1.0e6]),
    MemRow = row(mem_idle_child,
                 io_lib:format("memory per idle child on its host, N = ~b", [N]),
                 "bytes/child", lower, [PerD], [PerB], {abs_le, 512 + SpecBytes, SpecBytes}, 1,
                 io_lib:format("RSS delta / N; dsup-node VmRSS ~b -> ~b kB; baseline BEAM VmRSS "
                               "~b -> ~b kB, erlang:memory(total) delta ~b B/child; "
                               "spec ~w is ~b bytes (external format)",
                               [Rss0, Rss1, BRss0, BRss1, round(PerBMem), Spec(N), SpecBytes])),
    %% pg sync: a fresh node joins each scope and waits for every group
    io:format("== pg sync: a new node joins the scope and sees ~b groups (~b repetitions)~n", [N, Reps]),
    WantD = length(gen_server:call({dsup_node, M}, {pg_which_groups, scope(?MEM)}, ?T)),
    BlScope = maps:get(scope, bl_dsup:names(?BL_MEM)),
    WantB = length(erpc:call(BM, pg, which_groups, [BlScope])),
    Runs = [begin
                Probe = start_peer(sync_probe, ["-connect_all", "false"]),
                PN = maps:get(node, Probe),
                false = lists:member(M, erpc:call(PN, erlang, nodes, [[visible, hidden]])),
                false = lists:member(BM, erpc:call(PN, erlang, nodes, [[visible, hidden]])),
                DF = fun() -> erpc:call(PN, ?MODULE, pg_sync_probe, [scope(?MEM), M, WantD, {c, N}], ?T) end,
                BF = fun() -> erpc:call(PN, ?MODULE, pg_sync_probe, [BlScope, BM, WantB, {c, N}], ?T) end,
                {D, B} = case Rep rem 2 of
                             1 -> D0 = DF(), {D0, BF()};
                             0 -> B0 = BF(), {DF(), B0}
                         end,
                stop_peer(Probe),
                io:format("  rep ~b: dsup ~.1f ms, base ~.1f ms~n",
                          [Rep, float(maps:get(ms, D)), float(maps:get(ms, B))]),
                {D, B}
            end || Rep <- lists:seq(1, Reps)],
    SyncRow = row(pg_sync, io_lib:format("pg sync: a new node joins the scope and sees all ~b groups", [N]),
                  "ms", lower, [maps:get(ms, D) || {D, _} <- Runs], [maps:get(ms, B) || {_, B} <- Runs],
                  {ratio_ge, 1}, Reps,
                  io_lib:format("from pg:start(Scope) on the new node, then connect_node(Host), until "
                                "ets:info(Scope, size) reaches the host's group count (dsup ~b, "
                                "baseline ~b) and the last child's group has its member; "
                                "connect part: dsup ~s ms, baseline ~s ms",
                                [WantD, WantB,
                                 fmt_list([maps:get(connect_ms, D) || {D, _} <- Runs]),
                                 fmt_list([maps:get(connect_ms, B) || {_, B} <- Runs])])),
    stop_peer(P),
    stop_dsup(H),
    [MemRow, SyncRow].

%% The memory target of issue 19 (dsup alone: the baseline's figure at 100k
%% is in mem_idle_child): N idle `counter' children on one dsup-node (1M in
%% the full run), RSS growth / N, against <= 256 B. Started as fast as the
%% wire allows today: 16 callers, one start_child each at a time.
mem1m_phase(Cfg) ->
    #{mem1m_n := N} = Cfg,
    io:format("== memory at scale: ~s idle counter children on one host~n", [kilo(N)]),
    H = start_dsup(mem1m_c, [atom_to_list(?MEM)], []),
    M = maps:get(node, H),
    wait_ring(?MEM, [M], 1),
    {ok, _, _} = gen_server:call({?MEM, M}, {start_child, {counter, [{name, warm}]}, M}, ?T),
    Rss0 = vmrss_kb(maps:get(os_pid, H)),
    Us = par(16, N, fun(I) ->
                            {ok, _, _} = gen_server:call({?MEM, M}, {start_child, {counter, [{name, {c, I}}]}, M}, ?T)
                    end),
    N1 = count(?MEM, M) - 1,
    N1 =:= N orelse error({children, N1, N}),
    Rss1 = vmrss_kb(maps:get(os_pid, H)),
    Per = (Rss1 - Rss0) * 1024 / N,
    io:format("  dsup ~b B/child (~b children, RSS ~b -> ~b kB, started in ~.1f s)~n",
              [round(Per), N, Rss0, Rss1, Us / 1.0e6]),
    stop_dsup(H),
    [row(mem_idle_child_scale,
         io_lib:format("memory per idle counter child on its host, N = ~s", [kilo(N)]),
         "bytes/child", lower, [Per], [], {abs_max, 256}, 1,
         io_lib:format("dsup-node VmRSS growth / N: ~b -> ~b kB; ~b starts/s (16 callers, "
                       "start_child one at a time); layout: README, Memory per child",
                       [Rss0, Rss1, round(N / (Us / 1.0e6))]))].

%% On a BEAM peer: start N children of instance Inst locally, C at a time.
bl_start_many(Inst, Tag, N, C) ->
    par(C, N, fun(I) -> {ok, _, _} = bl_dsup:start_local(Inst, {Tag, I}) end).

%% On the fresh probe node: time from pg:start until all Want groups are
%% visible (and the member of LastKey has arrived).
pg_sync_probe(Scope, Host, Want, LastKey) ->
    T0 = now_us(),
    {ok, _} = pg:start(Scope),
    true = net_kernel:connect_node(Host),
    T1 = now_us(),
    sync_wait(Scope, Want, LastKey, T0 + 60000000),
    T2 = now_us(),
    Seen = ets:info(Scope, size),
    pg_stop(Scope),
    erlang:disconnect_node(Host),
    #{ms => (T2 - T0) / 1000, connect_ms => (T1 - T0) / 1000, seen => Seen}.

sync_wait(Scope, Want, LastKey, Deadline) ->
    case ets:info(Scope, size) >= Want andalso pg:get_members(Scope, LastKey) =/= [] of
        true -> ok;
        false ->
            case now_us() > Deadline of
                true -> ok;
                false -> receive after 1 -> sync_wait(Scope, Want, LastKey, Deadline) end
            end
    end.

%% ---------------------------------------------------------------- ring + phash2
%% C: bench/bench_ring.c built by run.sh against build/libdsup.a with the
%% project's CFLAGS (SUP_BENCH_RING_BIN), one process run per repetition.
%% BEAM: the same loops on this caller node (no other node running yet).

hash_rows(Cfg) ->
    #{ring_reps := Reps, ring_ops := Ops} = Cfg,
    Bin = case os:getenv("SUP_BENCH_RING_BIN") of
              B when is_list(B), B =/= "" -> B;
              _ -> error(no_ring_bin)
          end,
    io:format("== ring node_for / phash2: C ~s vs the BEAM (~b repetitions)~n", [Bin, Reps]),
    {Cs, Bs} = alternate(Reps, fun(_) -> c_hash(Bin) end, fun(_) -> beam_hash(Ops) end),
    Get = fun(K, L) -> [maps:get(K, M) || M <- L] end,
    [row(ring_node_for, "ring node_for(Key) on a 20-node ring (128 points per node)", "ns/lookup",
         lower, Get(node_for, Cs), Get(node_for, Bs), none, Reps,
         io_lib:format("keys {user, N} (4096 of them, cycled); C: dsup_ring_node_for on the "
                       "encoded key (phash2 + binary search); baseline: libring's HashRing "
                       "(bench/baseline/bl_ring.erl: phash2 + gb_trees:iterator_from), ~b lookups; "
                       "the same ring as a binary search over a tuple on the BEAM: ~b ns; "
                       "the BEAM loop alone: ~.1f ns",
                       [Ops, round(median(Get(node_for_tuple, Bs))), median(Get(loop, Bs))])),
     row(phash2_small, "phash2 of a small term {user, N}", "ns/term", lower,
         Get(small, Cs), Get(small, Bs), none, Reps,
         io_lib:format("C: dsup_phash2 on the external format (15 bytes, range 2^32); "
                       "baseline: erlang:phash2({user, I}, 1 bsl 32) in a loop of ~b on the BEAM "
                       "(the loop building {user, I} alone: ~.1f ns, not subtracted)",
                       [Ops, median(Get(loop_small, Bs))])),
     row(phash2_1k, "phash2 of a 1 KiB binary", "ns/term", lower,
         Get(k1, Cs), Get(k1, Bs), none, Reps,
         io_lib:format("C: dsup_phash2 on <<131,109,...>> (1030 bytes); baseline: "
                       "erlang:phash2(Bin, 1 bsl 32) in a loop of ~b on the BEAM", [Ops div 10]))].

%% bench_ring prints "name X ns/op" lines.
c_hash(Bin) ->
    Out = os:cmd(Bin ++ " 2>&1"),
    Vals = maps:from_list(
             [{N, list_to_float(V)}
              || L <- string:lexemes(Out, "\n"),
                 {match, [N, V]} <- [re:run(L, "^(\\S+) ([0-9]+\\.[0-9]+) ns/op",
                                            [{capture, all_but_first, list}])]]),
    case Vals of
        #{"ring_node_for_20_nodes" := NF, "phash2_small_term" := S, "phash2_1k_term" := K} ->
            #{node_for => NF, small => S, k1 => K};
        _ -> error({bench_ring_output, Out})
    end.

-define(RANGE32, 4294967295).

beam_hash(Ops) ->
    Nodes = [list_to_atom("node" ++ integer_to_list(I) ++ "@host") || I <- lists:seq(1, 20)],
    Ring = bl_ring:new(Nodes),
    KT = list_to_tuple([{user, I * 7919} || I <- lists:seq(0, 4095)]),
    %% libring's points as a sorted tuple, first-wins on collisions as bl_ring
    Pts = list_to_tuple(lists:ukeysort(1, [{erlang:phash2({N, I}, ?RANGE32), N}
                                          || N <- Nodes, I <- lists:seq(1, 128)])),
    [true = bl_ring:key_to_node(Ring, K) =:= tuple_node_for(Pts, K) || K <- tuple_to_list(KT)],
    Big = list_to_binary([(I * 31 + 7) band 255 || I <- lists:seq(0, 1023)]),
    garbage_collect(),
    NF = ns(fun() -> nf_loop(Ops, Ring, KT) end, Ops),
    NFT = ns(fun() -> nft_loop(Ops, Pts, KT) end, Ops),
    Loop = ns(fun() -> empty_loop(Ops, KT) end, Ops),
    Small = ns(fun() -> ph_small(Ops, 0) end, Ops),
    LoopS = ns(fun() -> ph_small_empty(Ops, 0) end, Ops),
    K1 = ns(fun() -> ph_bin(Ops div 10, Big, 0) end, Ops div 10),
    #{node_for => NF, node_for_tuple => NFT, loop => Loop, small => Small, loop_small => LoopS,
      k1 => K1}.

ns(F, N) ->
    T0 = erlang:monotonic_time(nanosecond),
    _ = F(),
    (erlang:monotonic_time(nanosecond) - T0) / N.

nf_loop(0, _, _) -> ok;
nf_loop(I, R, KT) ->
    _ = bl_ring:key_to_node(R, element(I band 4095 + 1, KT)),
    nf_loop(I - 1, R, KT).

nft_loop(0, _, _) -> ok;
nft_loop(I, P, KT) ->
    _ = tuple_node_for(P, element(I band 4095 + 1, KT)),
    nft_loop(I - 1, P, KT).

empty_loop(0, _) -> ok;
empty_loop(I, KT) ->
    true = is_tuple(element(I band 4095 + 1, KT)),
    empty_loop(I - 1, KT).

ph_small(0, Acc) -> Acc;
ph_small(I, Acc) -> ph_small(I - 1, Acc bxor erlang:phash2({user, I}, 4294967296)).

ph_small_empty(0, Acc) -> Acc;
ph_small_empty(I, Acc) -> ph_small_empty(I - 1, Acc bxor tuple_size(id({user, I}))).

id(X) -> X.

ph_bin(0, _, Acc) -> Acc;
ph_bin(I, B, Acc) -> ph_bin(I - 1, B, Acc bxor erlang:phash2(B, 4294967296)).

%% First point >= hash(Key), wrapping to the first (binary search).
tuple_node_for(Pts, Key) ->
    H = bl_ring:hash_key(Key),
    N = tuple_size(Pts),
    I = bsearch(Pts, H, 1, N + 1),
    element(2, element(case I > N of true -> 1; false -> I end, Pts)).

bsearch(_, _, Lo, Hi) when Lo >= Hi -> Lo;
bsearch(P, H, Lo, Hi) ->
    Mid = (Lo + Hi) div 2,
    case element(1, element(Mid, P)) >= H of
        true -> bsearch(P, H, Lo, Mid);
        false -> bsearch(P, H, Mid + 1, Hi)
    end.

%% ---------------------------------------------------------------- pg join/leave
%% M members join G = M/B groups (B per group) and leave again, in batches
%% (one request per group with B pids) or one pid per request. Timed on a BEAM
%% observer node in the scope, from the first request until its scope has seen
%% every join (pg:monitor_scope events, checked with which_groups/get_members),
%% then until it has seen every leave.
%%   dsup: C echo workers on a dsup-node; the observer's driver sends
%%         gen_server:call({dsup_node, N}, {pg_join | pg_leave, Scope, G, Pids})
%%         with W requests in flight (the wire API is the only way in).
%%   baseline: plain processes on a BEAM peer; a process there does the
%%         pg:join/leave calls itself, started by one message from the driver.

pg_phase(Cfg) ->
    #{pg_m := M, pg_batch := B, pg_window := W, pg_reps := Reps} = Cfg,
    io:format("== pg join/leave: ~b members in ~b groups (~b repetitions)~n", [M, M div B, Reps]),
    DScope = bench_pg_c,
    BScope = bench_pg_b,
    H = start_dsup(pg_c, [], []),
    DN = maps:get(node, H),
    [Host, Obs] = pmap(fun(P) -> start_peer(P, []) end, [pg_host_b, pg_obs]),
    HN = maps:get(node, Host),
    ON = maps:get(node, Obs),
    ok = gen_server:call({dsup_node, DN}, {pg_start_scope, DScope}, ?T),
    DPids = window(lists:duplicate(M, x), 64,
                   fun(_) -> gen_server:send_request({dsup_node, DN}, {spawn, echo, []}) end,
                   fun(R) -> {reply, {ok, P}} = gen_server:wait_response(R, ?T), P end),
    ok = erpc:call(HN, ?MODULE, pg_host_setup, [BScope, M, B], ?T),
    ok = erpc:call(ON, ?MODULE, pg_obs_setup, [[{DScope, DN}, {BScope, HN}]], ?T),
    DRun = fun(Mode) -> erpc:call(ON, ?MODULE, pg_probe, [dsup, Mode, DScope, DN, DPids, B, W], 600000) end,
    BRun = fun(Mode) -> erpc:call(ON, ?MODULE, pg_probe, [base, Mode, BScope, HN, M, B, W], 600000) end,
    WRun = fun(Mode) -> erpc:call(ON, ?MODULE, pg_probe, [wire, Mode, BScope, HN, M, B, W], 600000) end,
    %% warm-up round, not counted
    _ = DRun(batch), _ = BRun(batch), _ = WRun(batch),
    Rows = [begin
                {Ds, Bs} = alternate(Reps, fun(_) -> DRun(Mode) end, fun(_) -> BRun(Mode) end),
                Ws = [WRun(Mode) || _ <- lists:seq(1, Reps)],
                io:format("  ~s: dsup ~s, baseline ~s, baseline by wire calls ~s (join/leave ms)~n",
                          [Mode, fmt_jl(Ds), fmt_jl(Bs), fmt_jl(Ws)]),
                Rate = fun(L) -> [2 * M / ((J + Lv) / 1000) || #{join_ms := J, leave_ms := Lv} <- L] end,
                Calls = case Mode of batch -> M div B; single -> M end,
                row(list_to_atom("pg_join_" ++ atom_to_list(Mode)),
                    io_lib:format("pg join+leave of ~b members in ~b groups, ~s, until a BEAM "
                                  "node in the scope sees them", [M, M div B, Desc]),
                    "ops/s", higher, Rate(Ds), Rate(Bs), none, Reps,
                    io_lib:format("(member joins + member leaves) / time, ~b requests each way; "
                                  "join/leave ms per repetition: dsup ~s; baseline ~s. dsup: "
                                  "gen_server:call({dsup_node, N}, {pg_join|pg_leave, ...}) from "
                                  "the observer node, ~b in flight; baseline: a process on the "
                                  "BEAM host calls pg:join/leave itself (one message starts it); "
                                  "both timed on the observer from the first request until its "
                                  "pg:monitor_scope has seen all M joins / all M leaves. "
                                  "Baseline driven like dsup (a process on the BEAM host answering "
                                  "the same calls from the observer, ~b in flight): ~b ops/s "
                                  "(join/leave ms ~s)",
                                  [Calls, fmt_jl(Ds), fmt_jl(Bs), W, W, round(median(Rate(Ws))),
                                   fmt_jl(Ws)]))
            end || {Mode, Desc} <- [{batch, io_lib:format("~b pids per request", [B])},
                                    {single, "1 pid per request"}]],
    [stop_peer(P) || P <- [Host, Obs]],
    stop_dsup(H),
    Rows.

fmt_jl(L) ->
    lists:flatten(lists:join(", ", [io_lib:format("~.1f/~.1f", [float(J), float(Lv)])
                                    || #{join_ms := J, leave_ms := Lv} <- L])).

%% Issue Send(X) for every X with at most W outstanding; Recv(Req) each reply
%% in order. Returns the Recv results in order.
window(Xs, W, Send, Recv) -> window(Xs, W, Send, Recv, queue:new(), 0, []).

window([], _, _, Recv, Q, _, Acc) ->
    lists:reverse(Acc, [Recv(R) || R <- queue:to_list(Q)]);
window(Xs, W, Send, Recv, Q, N, Acc) when N >= W ->
    {{value, R}, Q1} = queue:out(Q),
    window(Xs, W, Send, Recv, Q1, N - 1, [Recv(R) | Acc]);
window([X | Xs], W, Send, Recv, Q, N, Acc) ->
    window(Xs, W, Send, Recv, queue:in(Send(X), Q), N + 1, Acc).

%% [{Group, Pids | Pid}] for batch / single requests; the same membership.
pg_ops(Pids, B, Mode) ->
    Chunks = chunks(Pids, B, 1, []),
    case Mode of
        batch -> Chunks;
        single -> [{G, P} || {G, Ps} <- Chunks, P <- Ps]
    end.

chunks([], _, _, Acc) -> lists:reverse(Acc);
chunks(L, B, K, Acc) ->
    {C, Rest} = lists:split(min(B, length(L)), L),
    chunks(Rest, B, K + 1, [{{pg, K}, C} | Acc]).

%% On the BEAM host peer: the scope, M members and a driver process (pg_holder)
%% that runs the join/leave requests on a message.
pg_host_setup(Scope, M, B) ->
    {ok, _} = pg:start(Scope),
    Me = self(),
    spawn(fun() -> register(pg_wire, self()), pg_wire() end),
    spawn(fun() ->
                  register(pg_holder, self()),
                  Pids = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, M)],
                  Ops = maps:from_list([{Mode, pg_ops(Pids, B, Mode)} || Mode <- [batch, single]]),
                  Me ! pg_holder_ready,
                  pg_holder(Scope, Ops)
          end),
    receive pg_holder_ready -> ok after 30000 -> error(pg_holder_timeout) end.

pg_holder(Scope, Ops) ->
    receive
        {pids, From} ->
            From ! {pg_holder_pids, [P || {_, Ps} <- maps:get(batch, Ops), P <- Ps]},
            pg_holder(Scope, Ops);
        {run, Op, Mode, From} ->
            F = case Op of join -> fun pg:join/3; leave -> fun pg:leave/3 end,
            R = lists:usort([F(Scope, G, P) || {G, P} <- maps:get(Mode, Ops)]),
            From ! {pg_holder_done, Op, R},
            pg_holder(Scope, Ops)
    end.

%% On the BEAM host: its member pids, in order.
pg_host_pids() ->
    pg_holder ! {pids, self()},
    receive {pg_holder_pids, Ps} -> Ps after 30000 -> error(pg_holder_timeout) end.

%% The dsup_node pg calls, answered on the BEAM host (gen_server call protocol).
pg_wire() ->
    receive
        {'$gen_call', From, {Op, Scope, G, P}} ->
            R = case Op of pg_join -> pg:join(Scope, G, P); pg_leave -> pg:leave(Scope, G, P) end,
            gen:reply(From, R),
            pg_wire()
    end.

%% On the observer peer: each scope started here, connected to its host node,
%% and the host's scope known as a peer.
pg_obs_setup(ScopeNodes) ->
    [begin
         {ok, _} = pg:start(Scope),
         true = net_kernel:connect_node(Node),
         dsup_test:wait_until(fun() -> lists:member(Node, pg_peer_nodes(Scope)) end, 30000)
     end || {Scope, Node} <- ScopeNodes],
    ok.

%% On the observer: one repetition, #{join_ms, leave_ms}.
pg_probe(Side, Mode, Scope, Node, PidsOrM, B, W) ->
    M = case Side of dsup -> length(PidsOrM); _ -> PidsOrM end,
    Ops = case Side of
              dsup -> pg_ops(PidsOrM, B, Mode);
              wire -> pg_ops(erpc:call(Node, ?MODULE, pg_host_pids, []), B, Mode);
              base -> []
          end,
    Server = case Side of dsup -> {dsup_node, Node}; _ -> {pg_wire, Node} end,
    Me = self(),
    Counter = spawn_link(fun() -> pg_counter(Scope, M, Me) end),
    receive {Counter, ready} -> ok after 30000 -> error(pg_counter_timeout) end,
    Issue = fun(Op) ->
                    case Side of
                        _ when Side =:= dsup; Side =:= wire ->
                            Req = case Op of join -> pg_join; leave -> pg_leave end,
                            [ok] = lists:usort(
                                     window(Ops, W,
                                            fun({G, P}) -> gen_server:send_request(
                                                             Server, {Req, Scope, G, P}) end,
                                            fun(R) -> {reply, X} = gen_server:wait_response(R, ?T), X end));
                        base ->
                            {pg_holder, Node} ! {run, Op, Mode, self()},
                            receive {pg_holder_done, Op, [ok]} -> ok;
                                    {pg_holder_done, Op, Bad} -> error({pg_holder, Op, Bad})
                            after 120000 -> error({pg_holder_timeout, Op})
                            end
                    end
            end,
    T0 = now_us(),
    Issue(join),
    T1 = receive {Counter, joined, TJ} -> TJ after 120000 -> error({pg_join_timeout, Side, Mode}) end,
    M = lists:sum([length(pg:get_members(Scope, G)) || G <- pg:which_groups(Scope)]),
    T2 = now_us(),
    Issue(leave),
    T3 = receive {Counter, left, TL} -> TL after 120000 -> error({pg_leave_timeout, Side, Mode}) end,
    [] = pg:which_groups(Scope),
    unlink(Counter),
    #{join_ms => (T1 - T0) / 1000, leave_ms => (T3 - T2) / 1000}.

%% Counts the members the observer's scope reports; tells the driver when all
%% M have joined, then when all have left.
pg_counter(Scope, M, Driver) ->
    {Ref, Groups} = pg:monitor_scope(Scope),
    0 = lists:sum([length(Ps) || Ps <- maps:values(Groups)]),
    Driver ! {self(), ready},
    pg_count(Ref, 0, M, join, Driver),
    pg:demonitor(Scope, Ref).

pg_count(Ref, C, M, Phase, Driver) ->
    C1 = receive
             {Ref, join, _, Ps} -> C + length(Ps);
             {Ref, leave, _, Ps} -> C - length(Ps)
         end,
    case {Phase, C1} of
        {join, M} -> Driver ! {self(), joined, now_us()}, pg_count(Ref, C1, M, leave, Driver);
        {leave, 0} -> Driver ! {self(), left, now_us()}, ok;
        _ -> pg_count(Ref, C1, M, Phase, Driver)
    end.

%% ---------------------------------------------------------------- scale

scale_phase(Cfg) ->
    #{scale_n := N, scale_conc := C, scale_calls := NCalls} = Cfg,
    io:format("== scale: ~b children over 2 nodes~n", [N]),
    S1 = start_dsup(scale_c, [atom_to_list(?SCALE)], []),
    S2 = start_dsup(scale_c, [atom_to_list(?SCALE)], [maps:get(node, S1)]),
    DN = [maps:get(node, H) || H <- [S1, S2]],
    wait_ring(?SCALE, DN, 2),
    DRss0 = [vmrss_kb(maps:get(os_pid, H)) || H <- [S1, S2]],
    Every = max(1, N div NCalls),
    DT = list_to_tuple(DN),
    Tab = ets:new(scale_pids, [public, set, {write_concurrency, true}]),
    UsD = par(C, N, fun(I) ->
                            {ok, Pid, _} = gen_server:call({?SCALE, element(I rem 2 + 1, DT)},
                                                           {start_child, {counter, [{name, {x, I}}]},
                                                            undefined}, ?T),
                            I rem Every =:= 0 andalso ets:insert(Tab, {{d, I}, Pid})
                    end),
    CountD = [count(?SCALE, Nd) || Nd <- DN],
    LocalD = [length(gen_server:call({?SCALE, Nd}, local_children, ?T)) || Nd <- DN],
    DRss1 = [vmrss_kb(maps:get(os_pid, H)) || H <- [S1, S2]],
    io:format("  dsup: ~b started in ~.1f s, RSS ~w -> ~w kB, local ~w~n",
              [N, UsD / 1.0e6, DRss0, DRss1, LocalD]),
    DPids = [P || {{d, _}, P} <- ets:tab2list(Tab)],
    {_, LatD} = seq_timed(length(DPids), call_fun(DPids)),
    io:format("  dsup call p50 ~b µs~n", [pct(LatD, 50)]),
    [stop_dsup(H) || H <- [S1, S2]],
    %% baseline
    Peers = pmap(fun(_) -> start_peer(scale_b, ["+P", "4000000"]) end, [1, 2]),
    BN = [maps:get(node, P) || P <- Peers],
    [pong = erpc:call(A, net_adm, ping, [B]) || A <- BN, B <- BN, A < B],
    [ok = erpc:call(Nd, bl_dsup, start, [?BL_SCALE]) || Nd <- BN],
    wait_bl_ring(?BL_SCALE, BN, 2),
    BRss0 = [vmrss_kb(maps:get(os_pid, P)) || P <- Peers],
    BT = list_to_tuple(BN),
    UsB = par(C, N, fun(I) ->
                            {ok, Pid, _} = erpc:call(element(I rem 2 + 1, BT), bl_dsup, start_child,
                                                     [?BL_SCALE, {x, I}], ?T),
                            I rem Every =:= 0 andalso ets:insert(Tab, {{b, I}, Pid})
                    end),
    BRss1 = [vmrss_kb(maps:get(os_pid, P)) || P <- Peers],
    LocalB = [erpc:call(Nd, bl_dsup, count, [?BL_SCALE]) || Nd <- BN],
    io:format("  base: ~b started in ~.1f s, RSS ~w -> ~w kB, local ~w~n",
              [N, UsB / 1.0e6, BRss0, BRss1, LocalB]),
    BPids = [P || {{b, _}, P} <- ets:tab2list(Tab)],
    {_, LatB} = seq_timed(length(BPids), call_fun(BPids)),
    [stop_peer(P) || P <- Peers],
    ets:delete(Tab),
    put(latency, get_list(latency) ++
            [{scale_call, io_lib:format("gen_server:call(Pid, get) after ~s children", [kilo(N)]),
              LatD, LatB}]),
    SumMB = fun(L0, L1) -> (lists:sum(L1) - lists:sum(L0)) / 1024 end,
    Desc = io_lib:format("scale: ~s children over 2 nodes", [kilo(N)]),
    [row(scale_start, [Desc, ", start time (", integer_to_list(C), " callers)"], "s", lower,
         [UsD / 1.0e6], [UsB / 1.0e6], completes, 1,
         io_lib:format("~b vs ~b starts/s; children per node: dsup ~w (cached ~w), baseline ~w",
                       [round(N / (UsD / 1.0e6)), round(N / (UsB / 1.0e6)), LocalD, CountD, LocalB])),
     row(scale_rss, [Desc, ", RSS growth of both hosts"], "MB", lower,
         [SumMB(DRss0, DRss1)], [SumMB(BRss0, BRss1)], completes, 1,
         io_lib:format("VmRSS kB before -> after: dsup ~w -> ~w, baseline ~w -> ~w",
                       [DRss0, DRss1, BRss0, BRss1])),
     row(scale_call, [Desc, ", sequential gen_server:call(Pid, get) after, p50"], "µs", lower,
         [pct(LatD, 50)], [pct(LatB, 50)], completes, 1,
         io_lib:format("~b calls to children spread over the ring; p99: dsup ~b µs, baseline ~b µs",
                       [length(LatD), pct(LatD, 99), pct(LatB, 99)]))].

call_fun(Pids) ->
    PT = list_to_tuple(Pids),
    fun(I) -> V = gen_server:call(element(I, PT), get, ?T), true = is_integer(V) end.

kilo(N) when N >= 1000000, N rem 1000000 =:= 0 -> integer_to_list(N div 1000000) ++ "M";
kilo(N) when N >= 1000, N rem 1000 =:= 0 -> integer_to_list(N div 1000) ++ "k";
kilo(N) -> integer_to_list(N).

%% ---------------------------------------------------------------- shim

%% run.sh compiles elixir_shim/ into its own build directory and passes the ebin.
shim_ebin() ->
    case os:getenv("SUP_BENCH_SHIM_EBIN") of
        D when is_list(D), D =/= "" ->
            [D || filelib:is_regular(filename:join(D, "Elixir.DistributedSupervisor.beam"))];
        _ -> []
    end.

shim_pending() ->
    [row(shim_whereis, "DistributedSupervisor.whereis/2 from an Elixir node (pending shim)",
         "µs/op", lower, [], [], pending, 0, "pending shim: elixir_shim/ did not compile (or SUP_BENCH_SHIM_EBIN unset)"),
     row(shim_call, "DistributedSupervisor.call/3 by name from an Elixir node (pending shim)",
         "µs/op", lower, [], [], pending, 0, "pending shim: elixir_shim/ did not compile (or SUP_BENCH_SHIM_EBIN unset)"),
     row(shim_call_name_vs_pid, "DistributedSupervisor.call/3 by name vs GenServer.call by pid (pending shim)",
         "µs/op", lower, [], [], pending, 0, "pending shim: elixir_shim/ did not compile (or SUP_BENCH_SHIM_EBIN unset)")].

shim_rows(Cfg, DN, BN) ->
    case shim_ebin() of
        [] -> shim_pending();
        [Ebin | _] -> shim_rows(Cfg, DN, BN, Ebin)
    end.

shim_rows(Cfg, DN, BN, Ebin) ->
    #{shim_ops := Ops, shim_reps := Reps, shim_loop := LoopN} = Cfg,
    io:format("== shim: whereis/call from an Elixir node (~s)~n", [Ebin]),
    LoggerEbin = filename:join([filename:dirname(filename:dirname(?ELIXIR_EBIN)), "logger", "ebin"]),
    P = start_peer(shim_e, ["-pa", Ebin, "-pa", LoggerEbin]),
    PN = maps:get(node, P),
    %% children to look up: Ops named children on each side
    Keys = [{sh, I} || I <- lists:seq(1, Ops)],
    DT = list_to_tuple(DN),
    BT = list_to_tuple(BN),
    par(8, Ops, fun(I) ->
                        {ok, _, _} = gen_server:call({?SUP, element(I rem 3 + 1, DT)},
                                                     {start_child, {counter, [{name, {sh, I}}]},
                                                      undefined}, ?T),
                        {ok, _, _} = erpc:call(element(I rem 3 + 1, BT), bl_dsup, start_child,
                                               [?BL, {sh, I}], ?T)
                end),
    try
        ok = erpc:call(PN, ?MODULE, shim_probe, [setup, ?SUP, DN, Keys, 0], ?T),
        ok = erpc:call(PN, ?MODULE, bl_probe, [setup, ?BL, BN, Keys], ?T),
        Run = fun(What) ->
                      alternate(Reps,
                                fun(_) -> erpc:call(PN, ?MODULE, shim_probe, [What, ?SUP, DN, Keys, 0], 600000) end,
                                fun(_) -> erpc:call(PN, ?MODULE, bl_probe, [What, ?BL, BN, Keys], 600000) end)
              end,
        %% whereis: a tight loop on the Elixir node itself, one erpc per
        %% repetition returning {ns/op, ns/op of the same loop without the lookup};
        %% the baseline's lookup does an RPC, so it loops over the keys once
        {LD, LB} = alternate(Reps,
                             fun(_) -> erpc:call(PN, ?MODULE, whereis_loop,
                                                 [shim, ?SUP, Keys, LoopN], 600000) end,
                             fun(_) -> erpc:call(PN, ?MODULE, whereis_loop,
                                                 [base, ?BL, Keys, min(LoopN, Ops)], 600000) end),
        %% per-op timed (clock read around each op, µs resolution): latency plot
        {WD, WB} = Run(whereis),
        {CD, CB} = Run(call),
        %% by name vs by pid, interleaved in one loop on the Elixir node
        NP = [erpc:call(PN, ?MODULE, shim_probe, [call_vs_pid, ?SUP, DN, Keys, 0], 600000)
              || _ <- lists:seq(1, Reps)],
        ByName = lists:append([N || {N, _} <- NP]),
        ByPid = lists:append([Pd || {_, Pd} <- NP]),
        put(latency, get_list(latency) ++
                [{shim_whereis, "DistributedSupervisor.whereis/2 (Elixir node)",
                  lists:append(WD), lists:append(WB)},
                 {shim_call, "DistributedSupervisor.call/3 by name (Elixir node)",
                  lists:append(CD), lists:append(CB)}]),
        Med = fun(Ls) -> [median(L) || L <- Ls] end,
        NsOp = fun(L) -> [X / 1000 || {X, _} <- L] end,
        Empty = fun(L) -> median([E || {_, E} <- L]) end,
        [row(shim_whereis, "DistributedSupervisor.whereis/2 from an Elixir node", "µs/op", lower,
             NsOp(LD), NsOp(LB), {abs_max, 2}, Reps,
             io_lib:format("a loop of ~b lookups (baseline ~b) over ~b live children on the Elixir "
                           "node itself, timed there by one erpc call per repetition; the loop "
                           "without the lookup costs ~b ns/op (not subtracted); the per-op timed "
                           "median (two clock reads and µs rounding per op, the plot's data) is dsup "
                           "~s µs, baseline ~s µs; baseline: upstream whereis = pg:get_members + "
                           "RPC is_process_alive to the member's node",
                           [LoopN, min(LoopN, Ops), Ops, round(Empty(LD)), num(median(Med(WD))),
                            num(median(Med(WB)))])),
         row(shim_call, "DistributedSupervisor.call/3 by name from an Elixir node", "µs/op", lower,
             Med(CD), Med(CB), none, Reps,
             "median per-op µs; baseline: upstream call = GenServer.call({:via, Registry, ...}) "
             "(whereis above, then the call)"),
         row(shim_call_name_vs_pid,
             "DistributedSupervisor.call/3 by name vs GenServer.call by pid, same loop, p50",
             "µs/op", lower, [pctf(ByName, 50)], [pctf(ByPid, 50)], {slowdown_le, 10}, Reps,
             io_lib:format("issue 19: the name path must add nothing measurable. The baseline "
                           "column here is GenServer.call(Pid, :get) to the same dsup child, "
                           "alternating with the call by name op by op (order flipped every op) "
                           "on the Elixir node, each timed in ns; ~b ops each; p50 ratio ~.3f; "
                           "p99 by name ~.1f µs, by pid ~.1f µs (ratio ~.3f)",
                           [length(ByName), pctf(ByName, 50) / pctf(ByPid, 50),
                            pctf(ByName, 99), pctf(ByPid, 99),
                            pctf(ByName, 99) / pctf(ByPid, 99)]))]
    catch C:R:St ->
        io:format("shim rows failed: ~p:~p~n~p~n", [C, R, St]),
        [row(S, D ++ " (shim failed to run)", "µs/op", lower, [], [], pending, 0,
             io_lib:format("shim present but failed: ~0p", [R]))
         || {S, D} <- [{shim_whereis, "DistributedSupervisor.whereis/2 from an Elixir node"},
                       {shim_call, "DistributedSupervisor.call/3 by name from an Elixir node"},
                       {shim_call_name_vs_pid, "DistributedSupervisor.call/3 by name vs GenServer.call by pid"}]]
    after
        stop_peer(P)
    end.

%% On the Elixir peer: the shim instance observing the dsup ring.
shim_probe(setup, Sup, DN, Keys, _) ->
    [true = net_kernel:connect_node(N) || N <- DN],
    {ok, _} = application:ensure_all_started(elixir),
    _ = application:ensure_all_started(logger),
    Me = self(),
    spawn(fun() ->
                  R = 'Elixir.DistributedSupervisor':start_link([{name, Sup}]),
                  Me ! {shim_started, R},
                  receive never -> ok end
          end),
    receive {shim_started, {ok, _}} -> ok;
            {shim_started, Err} -> error({shim_start, Err})
    after 30000 -> error(shim_start_timeout)
    end,
    dsup_test:wait_until(
      fun() -> lists:all(fun(K) -> is_pid('Elixir.DistributedSupervisor':whereis(Sup, K)) end, Keys) end,
      30000),
    ok;
shim_probe(whereis, Sup, _DN, Keys, _) ->
    KT = list_to_tuple(Keys),
    {_, L} = seq_timed(length(Keys), fun(I) ->
        true = is_pid('Elixir.DistributedSupervisor':whereis(Sup, element(I, KT))) end),
    L;
shim_probe(call_vs_pid, Sup, _DN, Keys, _) ->
    %% The pids are resolved once, before the loop; each op is timed alone.
    KT = list_to_tuple(Keys),
    PT = list_to_tuple([begin P = 'Elixir.DistributedSupervisor':whereis(Sup, K), true = is_pid(P), P end
                        || K <- Keys]),
    ByName = fun(I) -> 0 = 'Elixir.DistributedSupervisor':call(Sup, element(I, KT), get) end,
    ByPid = fun(I) -> 0 = 'Elixir.GenServer':call(element(I, PT), get) end,
    Time = fun(F, I) ->
                   T0 = erlang:monotonic_time(nanosecond),
                   F(I),
                   (erlang:monotonic_time(nanosecond) - T0) / 1000
           end,
    Pairs = [case I rem 2 of
                 0 -> N = Time(ByName, I), {N, Time(ByPid, I)};
                 1 -> Pd = Time(ByPid, I), {Time(ByName, I), Pd}
             end || I <- lists:seq(1, tuple_size(KT))],
    {[N || {N, _} <- Pairs], [Pd || {_, Pd} <- Pairs]};
shim_probe(call, Sup, _DN, Keys, _) ->
    KT = list_to_tuple(Keys),
    {_, L} = seq_timed(length(Keys), fun(I) ->
        0 = 'Elixir.DistributedSupervisor':call(Sup, element(I, KT), get) end),
    L.

%% On the Elixir peer: N whereis lookups cycling over Keys in a tight loop
%% (no fun call, no clock read per op). {ns/op, ns/op of the bare loop}.
whereis_loop(Kind, Inst, Keys, N) ->
    KT = list_to_tuple(Keys),
    K = tuple_size(KT),
    garbage_collect(),
    T0 = erlang:monotonic_time(nanosecond),
    ok = wl_loop(Kind, N, KT, K, Inst),
    T1 = erlang:monotonic_time(nanosecond),
    ok = wl_loop(empty, N, KT, K, Inst),
    T2 = erlang:monotonic_time(nanosecond),
    {(T1 - T0) / N, (T2 - T1) / N}.

wl_loop(_, 0, _, _, _) -> ok;
wl_loop(shim, I, KT, K, Sup) ->
    true = is_pid('Elixir.DistributedSupervisor':whereis(Sup, element(I rem K + 1, KT))),
    wl_loop(shim, I - 1, KT, K, Sup);
wl_loop(base, I, KT, K, Inst) ->
    true = is_pid(bl_dsup:whereis(Inst, element(I rem K + 1, KT))),
    wl_loop(base, I - 1, KT, K, Inst);
wl_loop(empty, I, KT, K, Inst) ->
    true = is_tuple(element(I rem K + 1, KT)),
    wl_loop(empty, I - 1, KT, K, Inst).

%% On the same peer: the baseline's pg scope (not a host), upstream lookups.
bl_probe(setup, Inst, BN, Keys) ->
    [true = net_kernel:connect_node(N) || N <- BN],
    #{scope := Scope} = bl_dsup:names(Inst),
    {ok, _} = pg:start(Scope),
    dsup_test:wait_until(fun() -> lists:all(fun(K) -> is_pid(bl_dsup:whereis(Inst, K)) end, Keys) end,
                         30000),
    ok;
bl_probe(whereis, Inst, _BN, Keys) ->
    KT = list_to_tuple(Keys),
    {_, L} = seq_timed(length(Keys), fun(I) ->
        true = is_pid(bl_dsup:whereis(Inst, element(I, KT))) end),
    L;
bl_probe(call, Inst, _BN, Keys) ->
    KT = list_to_tuple(Keys),
    {_, L} = seq_timed(length(Keys), fun(I) ->
        0 = bl_dsup:call(Inst, element(I, KT), get) end),
    L.

%% ---------------------------------------------------------------- cluster memory

%% Cluster-wide memory per child with specs on k = 2 successors: H
%% dsup-nodes, N counters placed by the ring; once every instance's replica
%% pass is idle (each keeps its own children, the specs it is a replica of
%% and a stub of the rest), the sum of all hosts' VmRSS growth / N. No
%% baseline column: upstream keeps each child in every node's pg scope and
%% nothing else, which the note's per-host figures can be set against.
cmem_phase(#{cmem_n := N, cmem_hosts := Counts0}) ->
    Counts = case os:getenv("SUP_BENCH_CMEM_HOSTS") of
                 V when is_list(V), V =/= "" -> [list_to_integer(X) || X <- string:lexemes(V, ",")];
                 _ -> Counts0
             end,
    [cmem_row(N, H) || H <- Counts].

%% One measurement: H fresh dsup-nodes with `replicas=R`, N counters (with
%% a Pad-byte binary among their init args: a spec of some size).
cmem_run(N, NH, R, Pad) ->
    io:format("== cluster memory: ~b children on ~b hosts, replicas = ~b, ~b-byte arg~n", [N, NH, R, Pad]),
    Arg = binary:copy(<<"x">>, Pad),
    Sup = atom_to_list(?CMEM) -- "Elixir.",
    Hs = lists:foldl(fun(_, Acc) ->
                             Acc ++ [start_dsup(cmem_c, [Sup ++ ",replicas=" ++ integer_to_list(R)],
                                                [maps:get(node, X) || X <- Acc])]
                     end, [], lists:seq(1, NH)),
    Nodes = [maps:get(node, H) || H <- Hs],
    ok = wait_ring(?CMEM, Nodes, NH),
    Rss0 = [vmrss_kb(maps:get(os_pid, H)) || H <- Hs],
    T = list_to_tuple(Nodes),
    Us = par(16, N, fun(I) ->
                            {ok, _, _} = gen_server:call({?CMEM, element(I rem NH + 1, T)},
                                                         {start_child, {counter, [{name, {m, I}}, {config, Arg}]},
                                                          undefined}, ?T)
                    end),
    Info = fun() -> [gen_server:call({?CMEM, Nd}, replica_info, ?T) || Nd <- Nodes] end,
    ok = dsup_test:wait_until(
           fun() ->
                   Is = Info(),
                   lists:sum([L || #{local := L} <- Is]) =:= N andalso
                       lists:all(fun(#{local := L, specs := S, stubs := St, pass_active := P}) ->
                                         P =:= false andalso L + S + St =:= N
                                 end, Is)
           end, 120000, 200),
    Rss1 = [vmrss_kb(maps:get(os_pid, H)) || H <- Hs],
    Is = Info(),
    [stop_dsup(H) || H <- Hs],
    Per = (lists:sum(Rss1) - lists:sum(Rss0)) * 1024 / N,
    PerHost = [round((B - A) * 1024 / N) || {A, B} <- lists:zip(Rss0, Rss1)],
    SpecShare = lists:sum([L + S || #{local := L, specs := S} <- Is]) / N,
    io:format("  ~b B/child over ~b hosts (per host ~w B/child), specs kept ~.2f times, started in ~.1f s~n",
              [round(Per), NH, PerHost, SpecShare, Us / 1.0e6]),
    #{per => Per, per_host => PerHost, share => SpecShare, rss0 => Rss0, rss1 => Rss1}.

%% replicas = 2 with plain counters is the row; the note has the same with
%% replicas = 16 (every host keeps every spec, as before) and both with a
%% 256-byte init arg: what the stubs save grows with the spec.
cmem_row(N, NH) ->
    #{per := Per, per_host := PerHost, share := Share, rss0 := Rss0, rss1 := Rss1} = cmem_run(N, NH, 2, 0),
    #{per := PerAll, share := ShareAll} = cmem_run(N, NH, 16, 0),
    #{per := Big2} = cmem_run(N, NH, 2, 256),
    #{per := BigAll} = cmem_run(N, NH, 16, 256),
    row(list_to_atom("cluster_mem_" ++ integer_to_list(NH)),
        io_lib:format("cluster memory per child, ~b hosts, replicas = 2, N = ~b", [NH, N]),
        "bytes/child", lower, [Per], [], {abs_max, 500}, 1,
        io_lib:format("sum of the ~b dsup-nodes' VmRSS growth / N once the replica passes are idle; "
                      "per host ~w B/child; each spec kept ~.2f times (host + replicas; the others "
                      "keep a stub); every host keeping every spec (replicas = 16, ~.2f copies): ~b B/child; "
                      "with a 256-byte init arg: ~b B/child (replicas = 2) vs ~b (16); VmRSS kB ~w -> ~w",
                      [NH, PerHost, Share, ShareAll, round(PerAll), round(Big2), round(BigAll), Rss0, Rss1])).

%% ---------------------------------------------------------------- rows + output

%% Better: higher | lower (which direction is better for the metric).
%% Target: {ratio_ge, X} dsup at least X times better than the baseline;
%% {abs_lt, X} / {abs_le, X, _} dsup's value; completes; none; pending.
row(Id, Desc, Unit, Better, DS, BS, Target, Reps, Note) ->
    D = median(DS),
    B = median(BS),
    Adv = case {D, B} of
              {undefined, _} -> undefined;
              {_, undefined} -> undefined;
              _ when Better =:= higher, B > 0 -> D / B;
              _ when Better =:= lower, D > 0 -> B / D;
              _ -> undefined
          end,
    {TargetTxt, Met} =
        case Target of
            {ratio_ge, X} -> {io_lib:format("≥ ~p× baseline", [X]),
                              yesno(Adv =/= undefined andalso Adv >= X)};
            {abs_lt, X} -> {io_lib:format("< ~p ~s", [X, Unit]), yesno(D =/= undefined andalso D < X)};
            {abs_max, X} -> {io_lib:format("≤ ~p ~ts", [X, Unit]), yesno(D =/= undefined andalso D =< X)};
            {abs_ge, X} -> {io_lib:format("≥ ~p ~ts", [X, Unit]), yesno(D =/= undefined andalso D >= X)};
            {abs_le, X, S} -> {io_lib:format("≤ 512 + ~b (spec) = ~b B", [S, X]),
                               yesno(D =/= undefined andalso D =< X)};
            completes -> {"completes, figures reported", yesno(D =/= undefined)};
            {slowdown_le, P} -> {io_lib:format("≤ ~b % slower than baseline", [P]),
                                 yesno(D =/= undefined andalso B =/= undefined andalso D =< B * (1 + P / 100))};
            none -> {"—", "—"};
            pending -> {"—", "pending shim"}
        end,
    R = #{id => Id, desc => lists:flatten(io_lib:format("~ts", [Desc])), unit => Unit,
          better => Better, dsup => D, base => B, adv => Adv, target => lists:flatten(TargetTxt),
          met => Met, reps => Reps, dsup_samples => DS, base_samples => BS,
          note => lists:flatten(io_lib:format("~ts", [Note]))},
    io:format("~-16s dsup ~ts  baseline ~ts  (~ts)  advantage ~ts  target ~ts: ~ts~n",
              [Id, num(D), num(B), Unit, num(Adv), TargetTxt, Met]),
    R.

yesno(true) -> "yes";
yesno(false) -> "no".

num(undefined) -> "—";
num(X) when is_integer(X) -> integer_to_list(X);
num(X) when abs(X) >= 100 -> integer_to_list(round(X));
num(X) when abs(X) >= 10 -> io_lib:format("~.1f", [X]);
num(X) -> io_lib:format("~.2f", [X]).

%% call_bench's rows (calls.csv in the same OutDir), if present.
call_rows(OutDir) ->
    case file:read_file(filename:join(OutDir, "calls.csv")) of
        {ok, B} ->
            [_Hdr | Lines] = binary:split(B, <<"\n">>, [global, trim_all]),
            lists:filtermap(fun call_row/1, Lines);
        _ -> []
    end.

call_row(Line) ->
    %% scenario,"description",calls,reps,dsup_median_us,beam_median_us,...
    case re:run(Line, "^([^,]+),\"([^\"]*)\",([0-9]+),([0-9]+),([0-9.]+),([0-9.]+)",
                [{capture, all_but_first, list}, unicode]) of
        {match, [Id, Desc, _N, Reps, D, B]} ->
            {true, row(list_to_atom("call_" ++ Id), "GenServer call round trip: " ++ Desc,
                       "µs/call", lower, [list_to_float(D)], [list_to_float(B)], none,
                       list_to_integer(Reps), "median of repeats, from calls.csv (call_bench)")};
        _ -> false
    end.

%% http_bench's row (http.csv): calls while /metrics is scraped vs not.
http_rows(OutDir) ->
    case file:read_file(filename:join(OutDir, "http.csv")) of
        {ok, B} ->
            [_Hdr | Lines] = binary:split(B, <<"\n">>, [global, trim_all]),
            lists:filtermap(
              fun(Line) ->
                      case re:run(Line, "^([^,]+),\"([^\"]*)\",([0-9]+),\"([^\"]*)\",\"([^\"]*)\",\"([^\"]*)\"",
                                  [{capture, all_but_first, list}, unicode]) of
                          {match, [Id, Desc, Reps, W, O, Note]} ->
                              F = fun(S) -> [list_to_float(X) || X <- string:lexemes(S, " ")] end,
                              {true, row(list_to_atom(Id), Desc, "µs/call", lower, F(W), F(O),
                                         {slowdown_le, 5}, list_to_integer(Reps), Note)};
                          _ -> false
                      end
              end, Lines);
        _ -> []
    end.

write_summary(OutDir, Rows0, Meta) ->
    ok = filelib:ensure_dir(filename:join(OutDir, "x")),
    Rows = call_rows(OutDir) ++ http_rows(OutDir) ++ Rows0,
    Csv = ["scenario,description,unit,dsup_median,baseline_median,dsup_advantage,target,met,reps,"
           "dsup_samples,baseline_samples,notes\n"
           | [io_lib:format("~s,~ts,~ts,~s,~s,~s,~ts,~ts,~b,~s,~s,~ts~n",
                            [Id, csvq(Desc), csvq(U), csvn(D), csvn(B), csvn(A), csvq(T), csvq(M), R,
                             csvq(samples(DS)), csvq(samples(BS)), csvq(Note)])
              || #{id := Id, desc := Desc, unit := U, dsup := D, base := B, adv := A, target := T,
                   met := M, reps := R, dsup_samples := DS, base_samples := BS, note := Note} <- Rows]],
    Table = ["| scenario | unit | dsup | baseline | dsup advantage | target | met |\n",
             "|---|---|---:|---:|---:|---|---|\n"
             | [io_lib:format("| ~ts (`~s`) | ~ts | ~ts | ~ts | ~ts | ~ts | ~ts |~n",
                              [Desc, Id, U, num(D), num(B), advtxt(A), T, M])
                || #{id := Id, desc := Desc, unit := U, dsup := D, base := B, adv := A,
                     target := T, met := M} <- Rows]],
    Notes = [io_lib:format("- `~s`: ~ts~n", [Id, Note]) || #{id := Id, note := Note} <- Rows, Note =/= ""],
    Png = plot(OutDir),
    #{cfg := Cfg, load_before := L0, load_after := L1, exe := Exe, quick := Quick, secs := Secs} = Meta,
    Md = [io_lib:format("# dsup vs the pure-BEAM mechanism~s~n~n",
                        [case Quick of true -> " (--quick smoke run: small N, figures not meaningful)";
                                       false -> "" end]),
          "Generated by `bench/run.sh` (bench/call_bench.erl, bench/sup_bench.erl). Every row\n"
          "measures dsup (dsup-node C-nodes, C `counter`/`echo` workers) and the baseline\n"
          "(bench/baseline/: upstream distributed_supervisor's mechanism in plain OTP on BEAM\n"
          "peer nodes — Elixir DynamicSupervisor, pg registry, libring placement, erpc) in\n"
          "the same run, from the same caller node, all on this host over TCP loopback.\n"
          "Values are medians over the repetitions (`reps`). *dsup advantage* is how many\n"
          "times better dsup is (baseline/dsup for times and sizes, dsup/baseline for\n"
          "rates): > 1 means dsup is better. Times are measured, never asserted.\n\n",
          Table, "\n## Notes per row\n\n", Notes,
          case Png of
              undefined -> "";
              _ -> "\n![latency distributions](latency.png)\n\n"
                   "latency.png: per-operation latency CDFs (sequential operations), dsup vs baseline.\n"
          end,
          io_lib:format("~n## Run~n~n- date: ~s~n- OTP ~s, erts ~s, ~b schedulers, ~b logical CPUs~n"
                        "- host: ~s~n- load average before/after: ~s / ~s~n"
                        "- dsup-node: ~s~n- sup_bench wall time: ~b s~n- config: ~0p~n",
                        [calendar:system_time_to_rfc3339(erlang:system_time(second)),
                         erlang:system_info(otp_release), erlang:system_info(version),
                         erlang:system_info(schedulers_online),
                         erlang:system_info(logical_processors_available),
                         string:trim(os:cmd("uname -srm")), L0, L1, Exe, round(Secs), Cfg])],
    ok = file:write_file(filename:join(OutDir, "summary.csv"), unicode:characters_to_binary(Csv)),
    ok = file:write_file(filename:join(OutDir, "summary.md"), unicode:characters_to_binary(Md)),
    io:format("~n~ts~nwritten: ~s/summary.md, ~s/summary.csv~s~n",
              [unicode:characters_to_binary(Table), OutDir, OutDir,
               case Png of undefined -> " (no latency plot)"; _ -> ", " ++ Png end]).

advtxt(undefined) -> "—";
advtxt(A) -> [num(A), "×"].

samples(L) -> lists:flatten(lists:join(" ", [csvn(X) || X <- L])).

csvn(undefined) -> "";
csvn(X) when is_integer(X) -> integer_to_list(X);
csvn(X) -> io_lib:format("~.3f", [X]).

csvq(S) ->
    Flat = lists:flatten(io_lib:format("~ts", [S])),
    [$" | lists:flatten(string:replace(Flat, "\"", "\"\"", all))] ++ [$"].

%% Latency CDFs with gnuplot (if installed): one panel per recorded series.
plot(OutDir) ->
    Series = get_list(latency),
    case {os:find_executable("gnuplot"), Series} of
        {false, _} -> undefined;
        {_, []} -> undefined;
        {Gp, _} ->
            %% data and script go next to the run's logs; only the PNG to OutDir
            DataDir = filename:join(filename:dirname(persistent_term:get({?MODULE, log_dir})), "plot"),
            ok = filelib:ensure_dir(filename:join(DataDir, "x")),
            Files = [begin
                         F = fun(Sys, L) ->
                                     Path = filename:join(DataDir, io_lib:format("lat_~s_~s.dat", [Id, Sys])),
                                     S = lists:sort(L),
                                     Len = length(S),
                                     ok = file:write_file(Path,
                                             [io_lib:format("~b ~.5f~n", [max(1, X), I / Len])
                                              || {I, X} <- lists:zip(lists:seq(1, Len), S)]),
                                     Path
                             end,
                         {Title, F(dsup, LD), F(base, LB)}
                     end || {Id, Title, LD, LB} <- Series, LD =/= [], LB =/= []],
            Png = filename:join(OutDir, "latency.png"),
            _ = file:delete(Png),
            N = length(Files),
            Cols = min(N, 2),
            Rows = (N + 1) div 2,
            Script = [io_lib:format("set terminal pngcairo size ~b,~b font ',10'~n",
                                    [640 * Cols, 420 * Rows]),
                      io_lib:format("set output '~s'~n", [Png]),
                      io_lib:format("set multiplot layout ~b,~b~n", [Rows, Cols]),
                      "set termoption noenhanced\nset logscale x\nset grid\nset key bottom right\n"
                      "set xlabel 'latency (µs, log scale)'\nset ylabel 'fraction of operations'\n"
                      "set yrange [0:1]\n",
                      [io_lib:format("set title \"~ts\"~nplot '~s' using 1:2 with lines lw 2 title 'dsup', "
                                     "'~s' using 1:2 with lines lw 2 title 'baseline'~n",
                                     [T, D, B]) || {T, D, B} <- Files],
                      "unset multiplot\n"],
            GpFile = filename:join(DataDir, "latency.gp"),
            ok = file:write_file(GpFile, unicode:characters_to_binary(Script)),
            Out = os:cmd(Gp ++ " " ++ GpFile ++ " 2>&1"),
            case filelib:is_regular(Png) of
                true -> [io:format("gnuplot: ~s~n", [Out]) || Out =/= ""], Png;
                false -> io:format("gnuplot failed: ~s~n", [Out]), undefined
            end
    end.

loadavg() ->
    case file:read_file("/proc/loadavg") of
        {ok, B} -> lists:flatten(lists:join(" ", lists:sublist(string:lexemes(binary_to_list(B), " "), 3)));
        _ -> "?"
    end.
