defmodule DistributedSupervisor.HandoffTest do
  # Elixir children that move with their state (DistributedSupervisor.Handoff):
  # three :peer nodes run the instance (no dsup-node takes part). Every test
  # watches every pg join and leave of the moved names that the surviving
  # nodes apply (after a crash: the new host's): never two pids; and a name
  # moved by a graceful stop, move_child or a rebalance never has no pid
  # without its moving mark (the order DistributedSupervisor.call/4 relies
  # on). Clients calling by name all through those moves see no exit.
  use ExUnit.Case, async: false

  alias DistributedSupervisor, as: DS
  alias DistributedSupervisor.{Instance, TestNode, TestSupport}

  alias DistributedSupervisor.TestSupport.{
    CallTimer,
    Counter,
    Hammer,
    HandoffApp,
    Libring,
    Peers,
    PgWatch,
    Remote,
    Worker
  }

  @moduletag timeout: 120_000

  setup do
    peers = for i <- 1..3, do: Peers.start("shim_ho#{i}")
    on_exit(fn -> Enum.each(peers, fn {p, _} -> Peers.stop(p) end) end)
    %{peers: peers, nodes: Enum.map(peers, &elem(&1, 1)), name: TestSupport.unique_name("ho")}
  end

  defp start_cluster(nodes, name, opts \\ []) do
    for n <- nodes,
        do: :erpc.call(n, Remote, :start_instance, [[name: name, nodes: nodes] ++ opts])

    await_ring(nodes, name, nodes)
  end

  defp await_ring(on, name, ring) do
    TestNode.wait_until(fn ->
      Enum.all?(on, &(Enum.sort(:erpc.call(&1, DS, :nodes, [name])) == Enum.sort(ring)))
    end)
  rescue
    e in RuntimeError ->
      flunk(
        "#{Exception.message(e)}: #{inspect(Enum.map(on, &{&1, :erpc.call(&1, DS, :nodes, [name])}))}"
      )
  end

  defp counter(name, id, node, opts) do
    spec = {Counter, [name: id, sink: self(), tag: id] ++ opts}
    {:ok, pid, ^id} = :erpc.call(node, DS, :start_child, [name, spec, node])
    assert_receive {:counter_init, ^id, ^node, ^pid, :none}, 5_000
    pid
  end

  # (`marked`: the ids whose moves must keep them marked while they have no pid)
  defp watch(nodes, name, ids, marked \\ []),
    do: for(n <- nodes, do: :erpc.call(n, PgWatch, :start, [Instance.scope(name), ids, marked]))

  # (`seen_marked`: ids whose moving mark every watcher must have seen)
  defp assert_one_copy(watchers, seen_marked \\ []) do
    for w <- watchers do
      {max, breaks} = :erpc.call(node(w), PgWatch, :report, [w])

      # (a name's mark may have two members: back-to-back moves from two hosts)
      for {id, m} <- max,
          not match?({:"$dsup_moving", _}, id),
          do: assert(m <= 1, "#{inspect(id)} had #{m} registered pids on #{node(w)}")

      assert breaks == [], "moving-mark order broken on #{node(w)}: #{inspect(breaks)}"

      for id <- seen_marked,
          do: assert(max[{:"$dsup_moving", id}] >= 1, "#{inspect(id)}: no mark on #{node(w)}")
    end
  end

  # no call by name exited; no value went backwards
  defp assert_no_exit(stats, ids) do
    assert stats.exits == [], "calls by name exited: #{inspect(stats.exits)}"

    for id <- ids do
      {acks, exits, _last, back?} = stats[id]
      assert exits == 0 and acks > 0 and not back?, "#{inspect(id)}: #{inspect(stats[id])}"
    end
  end

  defp whereis_on(node, name, id), do: :erpc.call(node, DS, :whereis, [name, id])

  defp await_moved(survivors, name, id, old) do
    TestNode.wait_until(fn ->
      Enum.all?(survivors, fn n ->
        p = whereis_on(n, name, id)
        is_pid(p) and p != old and node(p) in survivors
      end)
    end)

    whereis_on(hd(survivors), name, id)
  end

  test "a graceful stop of the Elixir host hands each counter over with its value",
       %{nodes: [a | _] = nodes, name: name} do
    start_cluster(nodes, name)
    survivors = nodes -- [a]
    ids = [:c41, :trap41, :plain, :temp, :hot]

    c = counter(name, :c41, a, value: 40)
    trap = counter(name, :trap41, a, value: 1, trap: true)
    assert :erpc.call(a, DS, :call, [name, :c41, {:add, 1}]) == 41
    assert :erpc.call(a, DS, :call, [name, :trap41, {:add, 40}]) == 41

    # no callback: moves by restart, back at its initial value
    {:ok, plain, :plain} =
      :erpc.call(a, DS, :start_child, [name, {Worker, name: :plain, value: 5}, a])

    assert :erpc.call(a, DS, :call, [name, :plain, {:add, 2}]) == 7

    {:ok, _, :temp} =
      :erpc.call(a, DS, :start_child, [
        name,
        %{id: :t, start: {Counter, :start_link, [[name: :temp]]}, restart: :temporary},
        a
      ])

    # a client on a survivor adds 1 by name all through the stop
    hot = counter(name, :hot, a, value: 100)
    hammer = :erpc.call(hd(survivors), Hammer, :start, [name, [:hot]])
    TestNode.wait_until(fn -> :erpc.call(a, DS, :call, [name, :hot, :get]) > 101 end)

    watchers = watch(survivors, name, ids, [:c41, :trap41, :hot])
    :ok = :erpc.call(a, Remote, :stop_instance, [name])

    for {id, old} <- [c41: c, trap41: trap] do
      new = await_moved(survivors, name, id, old)
      # the ring owner among the remaining hosts, computed independently
      assert node(new) == Libring.owner(Enum.sort(survivors), id)
      assert_receive {:counter_init, ^id, _, ^new, {:ok, {:counter, 41}}}, 5_000
      assert :erpc.call(node(new), DS, :call, [name, id, :get]) == 41
    end

    # the trapping copy's terminate/2 ran, with the state it handed over
    assert_receive {:terminated, :trap41, 41, :shutdown}, 5_000

    new_plain = await_moved(survivors, name, :plain, plain)
    assert :erpc.call(node(new_plain), DS, :call, [name, :plain, :get]) == 5

    # a temporary child does not come back from a graceful stop
    assert whereis_on(hd(survivors), name, :temp) == :undefined

    new_hot = await_moved(survivors, name, :hot, hot)
    stats = :erpc.call(hd(survivors), Hammer, :stop, [hammer])
    assert_no_exit(stats, [:hot])
    {acks, 0, last, false} = stats[:hot]
    assert :erpc.call(node(new_hot), DS, :call, [name, :hot, :get]) == 100 + acks
    assert last == 100 + acks
    assert_one_copy(watchers, [:c41, :trap41, :hot])
  end

  test "a node stopped with :init.stop() hands its counter over (the application's shutdown)",
       ctx do
    node_stops(ctx, fn a -> :erpc.cast(a, :init, :stop, []) end)
  end

  test "SIGTERM of an Elixir host's BEAM hands its counter over", ctx do
    node_stops(ctx, fn a ->
      os_pid = :erpc.call(a, :os, :getpid, [])
      {_, 0} = System.cmd("kill", ["-TERM", to_string(os_pid)])
    end)
  end

  defp node_stops(%{nodes: [a | _] = nodes, name: name}, stop) do
    survivors = nodes -- [a]
    for n <- survivors, do: :erpc.call(n, Remote, :start_instance, [[name: name, nodes: nodes]])
    :ok = :erpc.call(a, HandoffApp, :load_and_start, [[name: name, nodes: nodes]])
    await_ring(nodes, name, nodes)

    c = counter(name, :c41, a, value: 0)
    assert :erpc.call(a, DS, :call, [name, :c41, {:add, 41}]) == 41
    watchers = watch(survivors, name, [:c41], [:c41])

    stop.(a)
    new = await_moved(survivors, name, :c41, c)
    assert node(new) == Libring.owner(Enum.sort(survivors), :c41)
    assert :erpc.call(node(new), DS, :call, [name, :c41, :get]) == 41
    assert_one_copy(watchers, [:c41])
  end

  test "move_child moves a counter with its value, a plain worker by restart",
       %{nodes: [a, b, c] = nodes, name: name} do
    start_cluster(nodes, name)
    old = counter(name, :m41, a, value: 41)
    watchers = watch([b, c], name, [:m41, :mplain], [:m41, :mplain])

    # asked on a third node: forwarded to the host
    assert {:ok, new, :m41} = :erpc.call(c, DS, :move_child, [name, :m41, b])
    assert node(new) == b and new != old
    assert_receive {:counter_init, :m41, ^b, ^new, {:ok, {:counter, 41}}}, 5_000
    assert :erpc.call(a, DS, :call, [name, :m41, {:add, 1}]) == 42
    refute :erpc.call(a, Process, :alive?, [old])

    # under load: a client on c adds 1 by name all along while the counter
    # moves back and forth; no acknowledged add is lost or done twice
    hammer = :erpc.call(c, Hammer, :start, [name, [:m41]])
    TestNode.wait_until(fn -> :erpc.call(c, DS, :call, [name, :m41, :get]) > 42 end)

    new =
      for to <- [a, b, a, b], reduce: nil do
        _ ->
          assert {:ok, p, :m41} = :erpc.call(c, DS, :move_child, [name, :m41, to])
          assert node(p) == to
          p
      end

    %{m41: {acks, _, last, _}, gap_us: gap} = stats = :erpc.call(c, Hammer, :stop, [hammer])
    assert_no_exit(stats, [:m41])
    assert :erpc.call(c, DS, :call, [name, :m41, :get]) == 42 + acks
    assert last == 42 + acks

    IO.puts(
      "move_child x4 under load: #{acks} adds acknowledged, no call exited, " <>
        "longest time between two acknowledged adds #{div(gap, 1000)} ms"
    )

    TestNode.wait_until(fn -> Enum.all?(nodes, &(whereis_on(&1, name, :m41) == new)) end)

    # already there; unknown child; no such host
    assert :erpc.call(a, DS, :move_child, [name, :m41, b]) == {:ok, new, :m41}
    assert :erpc.call(a, DS, :move_child, [name, :nope, b]) == {:error, :not_found}

    assert :erpc.call(a, DS, :move_child, [name, :m41, :"x@127.0.0.1"]) ==
             {:error, {:no_host, :"x@127.0.0.1"}}

    {:ok, p, :mplain} =
      :erpc.call(a, DS, :start_child, [name, {Worker, name: :mplain, value: 3}, a])

    assert :erpc.call(a, DS, :call, [name, :mplain, {:add, 4}]) == 7
    assert {:ok, p2, :mplain} = :erpc.call(a, DS, :move_child, [name, :mplain, c])
    assert node(p2) == c and p2 != p
    assert :erpc.call(a, DS, :call, [name, :mplain, :get]) == 3
    assert_one_copy(watchers, [:m41, :mplain])
  end

  test "a counter checkpointed at 17 is at 17 after its host is killed",
       %{nodes: [a | _] = nodes, name: name} do
    start_cluster(nodes, name)
    survivors = nodes -- [a]
    succ = Libring.owner(Enum.sort(survivors), :k17)
    old = counter(name, :k17, a, value: 0, checkpoint: true)
    for _ <- 1..17, do: :erpc.call(a, DS, :call, [name, :k17, {:add, 1}])

    # the cost of a checkpoint per update: a call that checkpoints against
    # the same call on a counter that does not (on the host, 2,000 each)
    _ = counter(name, :plain_cost, a, value: 0)
    _ = counter(name, :ckpt_cost, a, value: 0, checkpoint: true)
    plain_us = :erpc.call(a, CallTimer, :mean_us, [name, :plain_cost, 2_000])
    ckpt_us = :erpc.call(a, CallTimer, :mean_us, [name, :ckpt_cost, 2_000])

    IO.puts(
      "checkpoint cost: a call that checkpoints #{Float.round(ckpt_us, 1)} us, " <>
        "without #{Float.round(plain_us, 1)} us (mean of 2,000 local calls by name)"
    )

    # the successor keeps the last one (sent within 100 ms)
    TestNode.wait_until(fn ->
      :erpc.call(succ, GenServer, :call, [name, {:checkpoint_of, :k17}]) == {:ok, {:counter, 17}}
    end)

    # the other survivor keeps none
    [other] = survivors -- [succ]
    assert :erpc.call(other, GenServer, :call, [name, {:checkpoint_of, :k17}]) == :none

    # bounds and callers: too big, not a child, another node's child
    big = :binary.copy("x", 70_000)
    assert :erpc.call(a, DS, :checkpoint, [name, :k17, big]) == {:error, :too_big}
    assert :erpc.call(a, DS, :checkpoint, [:x]) == {:error, :not_found}
    assert :erpc.call(succ, DS, :checkpoint, [name, :k17, :x]) == {:error, :not_found}
    # (outside a move, handoff_state answers :none)
    assert :erpc.call(a, DS, :handoff_state, []) == :none
    assert :erpc.call(a, DS, :handoff_state, [name, :k17]) == :none

    # (on the successor: a crash gives no leave to order, so a third node
    # may see the new copy before it notices the old node is gone)
    watchers = watch([succ], name, [:k17])
    :erpc.cast(a, :erlang, :halt, [137])

    new = await_moved(survivors, name, :k17, old)
    assert node(new) == succ
    assert_receive {:counter_init, :k17, ^succ, ^new, {:ok, {:counter, 17}}}, 5_000
    assert :erpc.call(succ, DS, :call, [name, :k17, :get]) == 17
    assert_one_copy(watchers)
  end

  test "rebalance: a joining host receives exactly the children it now owns, with their values",
       %{nodes: [a, b, c], name: name} do
    # c is on no ring until its instance starts (`nodes:` lists the nodes
    # allowed, and keeps the suite's own dsup-node out)
    opts = [name: name, nodes: [a, b, c], rebalance: true, rebalance_moves: 4]
    for n <- [a, b], do: :erpc.call(n, Remote, :start_instance, [opts])
    await_ring([a, b], name, [a, b])
    ids = for i <- 1..40, do: {:r, i}

    for {id, i} <- Enum.with_index(ids, 1) do
      # (these read their handoff with handoff_state/2)
      spec = {Counter, name: id, value: i, explicit: true}
      {:ok, _, ^id} = :erpc.call(a, DS, :start_child, [name, spec])
    end

    TestNode.wait_until(fn -> map_size(:erpc.call(b, Remote, :children_pids, [name])) == 40 end)
    before = :erpc.call(a, Remote, :children_pids, [name])
    assert Enum.all?(ids, &(node(before[&1]) == Libring.owner(Enum.sort([a, b]), &1)))
    moving = Enum.filter(ids, &(Libring.owner(Enum.sort([a, b, c]), &1) == c))
    assert moving != []
    watchers = watch([a, b], name, ids, ids)
    # a client on b adds 1 to every child by name all through the rebalance
    hammer = :erpc.call(b, Hammer, :start, [name, ids])
    t0 = System.monotonic_time(:millisecond)

    # the new host joins
    :erpc.call(c, Remote, :start_instance, [opts])

    TestNode.wait_until(fn ->
      now = :erpc.call(a, Remote, :children_pids, [name])
      Enum.all?(moving, &(node(now[&1]) == c))
    end)

    ms = System.monotonic_time(:millisecond) - t0
    stats = :erpc.call(b, Hammer, :stop, [hammer])
    now = :erpc.call(a, Remote, :children_pids, [name])

    for {id, i} <- Enum.with_index(ids, 1) do
      if id in moving,
        do: assert(node(now[id]) == c),
        else: assert(now[id] == before[id], "#{inspect(id)} moved")

      # every acknowledged add is there, once
      {acks, _exits, _last, _back?} = stats[id]
      assert :erpc.call(node(now[id]), DS, :call, [name, id, :get]) == i + acks
    end

    # no call by name exited (moving or not); no value went backwards
    assert_no_exit(stats, ids)
    gap = stats.gap_us

    IO.puts(
      "rebalance: #{length(moving)} of 40 moved to the new host in #{ms} ms " <>
        "(from its start), no call by name exited meanwhile, longest time between " <>
        "two acknowledged adds of a child #{div(gap, 1000)} ms (40 children in turn)"
    )

    assert_one_copy(watchers, moving)
  end
end
