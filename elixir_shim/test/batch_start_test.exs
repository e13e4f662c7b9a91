defmodule DistributedSupervisor.BatchStartTest do
  # DistributedSupervisor.start_children/2 against three dsup-nodes and one
  # Elixir host (a :peer node); this node runs the instance as an observer
  # (outside `nodes:`). Owners come from TestSupport.Libring (phash2 written
  # out), not from the shim's Ring.
  use ExUnit.Case, async: false

  alias DistributedSupervisor, as: DS
  alias DistributedSupervisor.{TestNode, TestSupport}
  alias DistributedSupervisor.TestSupport.{Libring, Peers, Remote, Worker}

  @moduletag timeout: 120_000

  setup do
    {peer, e1} = Peers.start("shim_batch")
    names = for i <- 1..3, do: TestNode.unique_node("shim_bc#{i}")

    cnodes =
      names
      |> Enum.map(fn n ->
        Task.async(fn -> TestNode.start(node: n, connect: [node(), e1 | names -- [n]]) end)
      end)
      |> Enum.map(&Task.await(&1, 30_000))

    on_exit(fn ->
      Enum.each(cnodes, &TestNode.stop/1)
      Peers.stop(peer)
    end)

    name = TestSupport.unique_name("batch")
    allowed = [e1 | names]
    # this node: an instance outside `nodes:` (an observer); e1: an Elixir host
    for n <- [node(), e1],
        do: :erpc.call(n, Remote, :start_instance, [[name: name, nodes: allowed]])

    on_exit(fn -> for n <- [node(), e1], do: :erpc.call(n, Remote, :stop_instance, [name]) end)
    want = Enum.sort(allowed)

    TestNode.wait_until(fn ->
      Enum.all?([node(), e1], &(Enum.sort(:erpc.call(&1, DS, :nodes, [name])) == want)) and
        Enum.all?(names, &(Enum.sort(GenServer.call({name, &1}, :nodes)) == want))
    end)

    %{name: name, e1: e1, cnodes: Enum.sort(names)}
  end

  test "1,000 children over 3 C hosts: results in order, each on its owner, seen and callable elsewhere",
       %{name: name, e1: e1, cnodes: cnodes} do
    ids = for i <- 1..1000, do: {:b, i}
    results = DS.start_children(name, Enum.map(ids, &{:counter, name: &1, value: elem(&1, 1)}))
    assert length(results) == 1000

    pids =
      for {id, r} <- Enum.zip(ids, results) do
        assert {:ok, pid, ^id} = r
        assert node(pid) == Libring.owner(cnodes, id)
        pid
      end

    assert pids |> Enum.map(&node/1) |> Enum.uniq() |> length() == 3
    # this node's table has them already (start_children waits for that)
    assert Enum.map(ids, &DS.whereis(name, &1)) == pids
    # another node: the Elixir host e1, and each C instance
    TestNode.wait_until(fn -> :erpc.call(e1, Remote, :whereis_many, [name, ids]) == pids end)

    for c <- cnodes,
        do: TestNode.wait_until(fn -> map_size(GenServer.call({name, c}, :children)) == 1000 end)

    for {{:b, i}, pid} <- Enum.zip(ids, pids), do: assert(GenServer.call(pid, :get) == i)
    assert DS.call(name, {:b, 500}, :get) == 500
  end

  test "duplicates (in the batch and of a running child), unknown types and bad specs, per child",
       %{name: name, e1: e1} do
    {:ok, old, :old} = DS.start_child(name, {:counter, name: :old, value: 1})

    specs = [
      {:counter, name: :x1, value: 10},
      {:counter, name: :x1, value: 11},
      {:counter, name: :old, value: 12},
      {:no_such_type, name: :x2},
      %{not: :a_spec},
      {:counter, name: :x3, restart: :sometimes},
      {:counter, name: :x4, value: 14}
    ]

    assert [r1, r2, r3, r4, r5, r6, r7] = DS.start_children(name, specs)
    assert {:ok, p1, :x1} = r1
    assert r2 == {:error, {:already_started, p1}}
    assert r3 == {:error, {:already_started, old}}
    assert r4 == {:error, {:unknown_worker, :no_such_type}}
    assert r5 == {:error, {:incorrect_spec, %{not: :a_spec}}}
    assert {:error, {:incorrect_spec, _}} = r6
    assert {:ok, p4, :x4} = r7
    assert GenServer.call(p1, :get) == 10
    assert GenServer.call(p4, :get) == 14
    assert DS.start_children(name, []) == []

    TestNode.wait_until(fn ->
      :erpc.call(e1, Remote, :whereis_many, [name, [:x1, :x2, :x3, :x4, :old]]) ==
        [p1, :undefined, :undefined, p4, old]
    end)
  end

  test "a mixed batch: BEAM modules to the Elixir host, C types to the C hosts",
       %{name: name, e1: e1, cnodes: cnodes} do
    ids = for i <- 1..40, do: if(rem(i, 2) == 0, do: {:w, i}, else: {:c, i})

    specs =
      Enum.map(ids, fn
        {:w, i} = id -> {Worker, name: id, value: i}
        {:c, i} = id -> {:counter, name: id, value: i}
      end)

    # a raw observer: hosts send it what they send the observers' group
    scope = DistributedSupervisor.Instance.scope(name)
    me = self()
    obs = spawn_link(fn -> relay(me) end)
    :ok = :pg.join(scope, :"$dsup_observers", obs)

    TestNode.wait_until(fn ->
      obs in :erpc.call(e1, :pg, :get_members, [scope, :"$dsup_observers"])
    end)

    # and a BEAM duplicate inside the batch
    results = DS.start_children(name, specs ++ [{Worker, name: {:w, 2}, value: 0}])
    {main, [dup]} = Enum.split(results, 40)

    pids =
      for {id, r} <- Enum.zip(ids, main) do
        assert {:ok, pid, ^id} = r

        case id do
          {:w, _} -> assert node(pid) == e1
          {:c, _} -> assert node(pid) == Libring.owner(cnodes, id)
        end

        pid
      end

    assert dup == {:error, {:already_started, Enum.at(pids, 1)}}

    for {{_, i}, pid} <- Enum.zip(ids, pids), do: assert(GenServer.call(pid, :get) == i)
    assert Enum.map(ids, &DS.whereis(name, &1)) == pids
    TestNode.wait_until(fn -> :erpc.call(e1, Remote, :whereis_many, [name, ids]) == pids end)

    for c <- cnodes,
        do: TestNode.wait_until(fn -> map_size(GenServer.call({name, c}, :children)) == 40 end)

    # the Elixir host announced its 20 in one children_up, no child_up each
    assert_receive {:relayed, {:"$dsup", {:children_up, ups}}} when node(elem(hd(ups), 1)) == e1,
                   5_000

    beam = for {{:w, _} = id, pid} <- Enum.zip(ids, pids), do: {id, pid}
    assert Enum.map(ups, fn {id, pid, _spec} -> {id, pid} end) == beam
    refute_received {:relayed, {:"$dsup", {:child_up, {:w, _}, _, _}}}
  end

  test "{:start_children, specs} to ONE C instance: it places BEAM modules on the Elixir host, C types on C hosts",
       %{name: name, e1: e1, cnodes: cnodes} do
    ids = for i <- 1..30, do: if(rem(i, 3) == 0, do: {:cw, i}, else: {:cc, i})

    specs =
      Enum.map(ids, fn
        {:cw, i} = id -> {Worker, [name: id, value: i]}
        {:cc, i} = id -> {:counter, [name: id, value: i]}
      end)

    # the raw call an Erlang caller makes to a dsup-node: no shim placement
    results = GenServer.call({name, hd(cnodes)}, {:start_children, specs}, 30_000)
    assert length(results) == 30

    pids =
      for {id, r} <- Enum.zip(ids, results) do
        assert {:ok, pid, ^id} = r

        case id do
          {:cw, _} -> assert node(pid) == e1
          {:cc, _} -> assert node(pid) == Libring.owner(cnodes, id)
        end

        pid
      end

    for {{_, i}, pid} <- Enum.zip(ids, pids), do: assert(GenServer.call(pid, :get) == i)
    TestNode.wait_until(fn -> :erpc.call(e1, Remote, :whereis_many, [name, ids]) == pids end)
  end

  defp relay(to) do
    receive do
      msg -> send(to, {:relayed, msg})
    end

    relay(to)
  end
end
