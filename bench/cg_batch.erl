%%% cg_batch.erl — instructions a dsup-node executes per child of a batch
%%% start (bench/cg_batch.sh runs it; README, batch start).
%%%
%%% Three dsup-nodes A, B, C form a ring; A runs under callgrind (its
%%% wrapper is the first argument). After 3,000 warm-up children (and a
%%% pause past the replica pass that follows the ring's forming), two
%%% phases, each between a `callgrind_control --zero` and a `--dump`: `host`
%%% starts the keys that A owns on A, `obs` the keys B and C own on them, so
%%% that A only takes them in (children_up, pg joins). Batches of 1,000 per
%%% owner, specs as bench/sup_bench.erl's batch row writes them; a phase ends
%%% when A counts every child. Instructions per child = the dump's total /
%%% the children of the phase (the whole process: decoding, starting,
%%% announcing, replying, pg).
-module(cg_batch).
-export([main/1]).
-define(SUP, 'Elixir.CgSup').
-define(T, 120000).

main([Wrapper, LogDir]) ->
    Sups = ["--supervisor", "CgSup"],
    Opts = #{log_dir => LogDir, log_level => warn, extra_args => Sups},
    A = dsup_test:start_node(Opts#{name => cg_a, exe => Wrapper, timeout => 120000}),
    AN = maps:get(node, A),
    B = dsup_test:start_node(Opts#{name => cg_b, connect => [AN]}),
    C = dsup_test:start_node(Opts#{name => cg_c, connect => [AN]}),
    try phases(A, [AN, maps:get(node, B), maps:get(node, C)])
    after [dsup_test:stop_node(H, 60000) || H <- [B, C, A]]
    end,
    halt(0).

phases(A, [AN | _] = DN) ->
    ok = dsup_test:wait_until(
           fun() -> lists:all(fun(N) -> length(gen_server:call({?SUP, N}, nodes, ?T)) =:= 3 end, DN) end,
           60000),
    Ring = bl_ring:new(lists:sort(DN)),
    timer:sleep(4000),
    _ = run(Ring, [{w, I} || I <- lists:seq(1, 3000)], all, AN),
    Ctl = fun(Arg) -> os:cmd("callgrind_control " ++ Arg ++ " " ++ integer_to_list(maps:get(os_pid, A))) end,
    [begin
         Ctl("--zero"),
         N = run(Ring, [{Phase, I} || I <- lists:seq(1, 15000)], Phase, AN),
         Ctl("--dump=" ++ atom_to_list(Phase)),
         io:format("~p ~b~n", [Phase, N])
     end || Phase <- [host, obs]],
    ok.

%% Keys' subset (all / owned by A / owned by the others) started in batches
%% of 1,000 per owner; done when A counts them all.
run(Ring, Keys, Which, AN) ->
    Before = count(AN),
    Sel = [{K, O} || K <- Keys, O <- [bl_ring:key_to_node(Ring, K)],
                     Which =:= all orelse (Which =:= host) =:= (O =:= AN)],
    Groups = maps:groups_from_list(fun({_, O}) -> O end, fun({K, _}) -> K end, Sel),
    [[begin
          Items = [{K, #{id => K, start => {counter, start_link, [[]]}, args => [],
                         restart => permanent, shutdown => 5000}} || K <- Ch],
          Rs = gen_server:call({?SUP, O}, {start_children_here, Items}, ?T),
          [ok = element(1, R) || R <- Rs]
      end || Ch <- chunks(Ks, 1000)] || {O, Ks} <- maps:to_list(Groups)],
    ok = dsup_test:wait_until(fun() -> count(AN) >= Before + length(Sel) end, ?T),
    length(Sel).

count(N) -> proplists:get_value(specs, gen_server:call({?SUP, N}, count_children, ?T)).

chunks([], _) -> [];
chunks(L, B) when length(L) =< B -> [L];
chunks(L, B) -> {H, T} = lists:split(B, L), [H | chunks(T, B)].
