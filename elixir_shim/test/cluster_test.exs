defmodule DistributedSupervisor.ClusterTest do
  # Several Elixir nodes (this one and :peer nodes) and several dsup-nodes.
  use ExUnit.Case, async: false

  alias DistributedSupervisor, as: DS
  alias DistributedSupervisor.{TestNode, TestSupport}
  alias DistributedSupervisor.TestSupport.{Libring, Listener, Peers, Remote}

  @moduletag timeout: 120_000

  setup_all do
    peers = for i <- 1..2, do: Peers.start("shim_peer#{i}")
    elixir = [node() | Enum.map(peers, &elem(&1, 1))]
    cnodes = start_cnodes(3, "shim_c", elixir)

    on_exit(fn ->
      Enum.each(cnodes, &TestNode.stop/1)
      Enum.each(peers, fn {peer, _} -> Peers.stop(peer) end)
    end)

    %{elixir: elixir, cnodes: Enum.map(cnodes, & &1.node)}
  end

  # dsup-nodes connected to every Elixir node and to each other.
  defp start_cnodes(n, prefix, elixir) do
    names = for i <- 1..n, do: TestNode.unique_node("#{prefix}#{i}")

    names
    |> Enum.map(fn name ->
      Task.async(fn -> TestNode.start(node: name, connect: elixir ++ (names -- [name])) end)
    end)
    |> Enum.map(&Task.await(&1, 30_000))
  end

  # The same instance on every Elixir node; returns once every node's ring
  # and every C instance's ring hold `cnodes`.
  # (`nodes:` keeps out the dsup-node of test_helper.exs, which only this
  # node is connected to.)
  defp start_everywhere(elixir, cnodes, opts) do
    name = Keyword.fetch!(opts, :name)
    opts = Keyword.put_new(opts, :nodes, cnodes)
    for n <- elixir, do: :erpc.call(n, Remote, :start_instance, [opts])
    on_exit(fn -> for n <- elixir, do: :erpc.call(n, Remote, :stop_instance, [name]) end)
    wait_rings(elixir, cnodes, name, cnodes)
    name
  end

  defp wait_rings(elixir, cnodes, name, expected) do
    expected = Enum.sort(expected)

    TestNode.wait_until(fn ->
      Enum.all?(elixir, &(Enum.sort(:erpc.call(&1, Remote, :nodes, [name])) == expected)) and
        Enum.all?(cnodes, &(Enum.sort(GenServer.call({name, &1}, :nodes)) == expected))
    end)
  end

  defp wait_or_flunk(fun, diagnose, timeout \\ 10_000) do
    TestNode.wait_until(fun, timeout)
  rescue
    e in RuntimeError ->
      flunk(Exception.message(e) <> "\n" <> inspect(diagnose.(), pretty: true, limit: :infinity))
  end

  defp set_sinks(elixir), do: for(n <- elixir, do: :erpc.call(n, Listener, :set_sink, [self()]))

  test "calls and casts by name while a child moves between dsup-nodes reach the new copy",
       %{elixir: elixir, cnodes: cnodes} do
    name = start_everywhere(elixir, cnodes, name: TestSupport.unique_name("moves"))
    {:ok, first, :mv} = DS.start_child(name, {:counter, name: :mv, value: 100})

    acks = :counters.new(1, [])

    callers =
      for _ <- 1..3 do
        Task.async(fn -> call_loop(name, :mv, nil, 0, [], acks) end)
      end

    caster = Task.async(fn -> cast_loop(name, :mv, 0) end)

    # 20 moves, each to another dsup-node, asked of the instance where it
    # runs, each once a call was acknowledged since the last one (the calls
    # run through every move, however loaded the machine)
    Enum.reduce(1..20, {node(first), 0}, fn i, {from, seen} ->
      TestNode.wait_until(fn -> :counters.get(acks, 1) > seen end)
      seen = :counters.get(acks, 1)
      target = Enum.at(cnodes -- [from], rem(i, length(cnodes) - 1))
      assert {:ok, pid, :mv} = GenServer.call({name, from}, {:move_child, :mv, target})
      assert node(pid) == target
      {target, seen}
    end)

    results = for t <- callers, do: send(t.pid, :stop) && Task.await(t, 30_000)
    send(caster.pid, :stop)
    casts = Task.await(caster, 30_000)

    # no call exited (no noproc during the gaps), each caller saw its values rise
    assert Enum.flat_map(results, fn {_, exits, _} -> exits end) == []
    assert Enum.all?(results, fn {_, _, rising} -> rising end)
    acked = results |> Enum.map(fn {n, _, _} -> n end) |> Enum.sum()
    assert acked > 20
    # every acknowledged add is in the value; a cast may be lost only when
    # the old copy had it unhandled as it stopped (README "Moving children")
    value = DS.call(name, :mv, :get)
    assert value - 100 >= acked and value - 100 <= acked + casts
  end

  test "calls by name while the dsup-node hosting a counter stops (SIGTERM) reach its new copy",
       %{elixir: elixir} do
    own = start_cnodes(2, "shim_t", elixir)
    on_exit(fn -> Enum.each(own, &TestNode.stop/1) end)
    own_nodes = Enum.map(own, & &1.node)

    name =
      start_everywhere(elixir, own_nodes,
        name: TestSupport.unique_name("sigterm"),
        nodes: own_nodes
      )

    [victim, survivor] = own
    {:ok, _, :st} = DS.start_child(name, {:counter, name: :st, value: 41}, victim.node)
    callers = for _ <- 1..3, do: Task.async(fn -> call_loop(name, :st, nil, 0, []) end)
    # calls are flowing before the stop
    TestNode.wait_until(fn -> DS.call(name, :st, :get) > 60 end)
    {:ok, 0} = TestNode.stop(victim)
    TestNode.wait_until(fn -> node(DS.whereis(name, :st)) == survivor.node end)
    TestNode.wait_until(fn -> DS.call(name, :st, :get) > 200 end)
    results = for t <- callers, do: send(t.pid, :stop) && Task.await(t, 30_000)

    assert Enum.flat_map(results, fn {_, exits, _} -> exits end) == []
    assert Enum.all?(results, fn {_, _, rising} -> rising end)
    acked = results |> Enum.map(fn {n, _, _} -> n end) |> Enum.sum()
    assert DS.call(name, :st, :get) == 41 + acked
  end

  # `acks`, when given, counts the acknowledged calls as they come.
  defp call_loop(name, id, last, n, exits, acks \\ nil) do
    receive do
      :stop -> {n, exits, true}
    after
      0 ->
        try do
          DS.call(name, id, {:add, 1}, 5_000)
        catch
          :exit, reason -> call_loop(name, id, last, n, [reason | exits], acks)
        else
          v when last == nil or v > last ->
            acks && :counters.add(acks, 1, 1)
            call_loop(name, id, v, n + 1, exits, acks)

          v ->
            {n, exits, {:went_back, last, v}}
        end
    end
  end

  defp cast_loop(name, id, n) do
    receive do
      :stop -> n
    after
      1 ->
        :ok = DS.cast(name, id, :inc)
        cast_loop(name, id, n + 1)
    end
  end

  test "every Elixir node sees the same children, started from any of them",
       %{elixir: elixir, cnodes: cnodes} do
    name = start_everywhere(elixir, cnodes, name: TestSupport.unique_name("same"))

    ids =
      for i <- 1..30 do
        from = Enum.at(elixir, rem(i, length(elixir)))
        id = if rem(i, 2) == 0, do: {:w, i}, else: :"w#{i}"

        {:ok, pid, ^id} =
          :erpc.call(from, DS, :start_child, [name, {:counter, name: id, value: i}])

        # libring's owner over the hosts, computed here (not by the shim)
        assert node(pid) == Libring.owner(Enum.sort(cnodes), id)
        assert DS.node_for(name, id) == node(pid)
        id
      end

    TestNode.wait_until(fn ->
      maps = Enum.map(elixir, &:erpc.call(&1, Remote, :children_pids, [name]))
      map_size(hd(maps)) == 30 and Enum.all?(maps, &(&1 == hd(maps)))
    end)

    # several nodes got children
    assert ids |> Enum.map(&node(DS.whereis(name, &1))) |> Enum.uniq() |> length() > 1

    expected = Remote.children_pids(name)

    # the C instances' own tables agree (they too are kept by messages)
    TestNode.wait_until(fn ->
      Enum.all?(cnodes, fn c ->
        GenServer.call({name, c}, :children) |> Map.new(fn {k, {p, _}} -> {k, p} end) == expected
      end)
    end)

    # a name taken on one node is taken for all
    [_, peer | _] = elixir
    {:w, 2} = id = Enum.at(ids, 1)
    pid = expected[id]

    assert {:error, {:already_started, ^pid}} =
             :erpc.call(peer, DS, :start_child, [name, {:echo, name: id}])

    assert :erpc.call(peer, DS, :call, [name, id, :get]) == 2

    # terminate from a peer; gone everywhere
    :ok = :erpc.call(peer, DS, :terminate_child, [name, pid])

    TestNode.wait_until(fn ->
      Enum.all?(elixir, &(:erpc.call(&1, Remote, :whereis_many, [name, [id]]) == [:undefined]))
    end)
  end

  test "node_for agrees between Elixir and C for 10,000 keys of mixed types",
       %{elixir: elixir, cnodes: cnodes} do
    name = start_everywhere(elixir, cnodes, name: TestSupport.unique_name("ring"))
    keys = mixed_keys(10_000)
    assert length(Enum.uniq(keys)) > 9_500

    local = Enum.map(keys, &DS.node_for(name, &1))
    assert Enum.all?(local, &(&1 in cnodes))
    # every C node gets some keys
    assert local |> Enum.uniq() |> length() == length(cnodes)

    # the C instances, asked concurrently, each for a share of the keys
    c_answers =
      keys
      |> Enum.with_index()
      |> Task.async_stream(
        fn {k, i} ->
          GenServer.call({name, Enum.at(cnodes, rem(i, length(cnodes)))}, {:node_for, k})
        end,
        max_concurrency: 64,
        timeout: 30_000
      )
      |> Enum.map(fn {:ok, n} -> n end)

    mismatches =
      [keys, local, c_answers]
      |> Enum.zip()
      |> Enum.reject(fn {_, l, c} -> l == c end)

    assert mismatches == [],
           "#{length(mismatches)} mismatches, e.g. #{inspect(Enum.take(mismatches, 5))}"

    # the peers' rings agree too
    for n <- tl(elixir), do: assert(:erpc.call(n, Remote, :node_for_many, [name, keys]) == local)

    # and libring's owner, computed in the test from :erlang.phash2 (not the
    # shim's Ring), over the nodes in any order (no point collisions here)
    points = Libring.points(Enum.reverse(cnodes))
    assert Enum.map(keys, &Libring.owner_on(points, &1)) == local
  end

  defp mixed_keys(n) do
    pids = [self(), Process.whereis(:init), :erlang.list_to_pid(~c"<0.999.0>")]

    for i <- 1..n do
      case rem(i, 16) do
        0 -> i
        1 -> -i * 7919
        2 -> i * 18_446_744_073_709_551_629
        3 -> i / 7
        4 -> "key-#{i}"
        5 -> :"atom_#{i}"
        6 -> :"ключ_#{i}"
        7 -> {:user, i, "x"}
        8 -> [i, :a, "b", [i]]
        9 -> %{id: i, tag: :t}
        10 -> Map.new(1..(rem(i, 40) + 1), &{&1, i})
        11 -> <<i::size(rem(i, 13) + 3)>>
        12 -> {i, {i + 1, [i + 2 | i + 3]}}
        13 -> Integer.to_charlist(i)
        14 -> {Enum.at(pids, rem(i, 3)), i}
        15 -> {:"Elixir.MyApp.Worker#{i}", -i / 3}
      end
    end
  end

  test "listeners on every Elixir node hear each event once", %{elixir: elixir, cnodes: cnodes} do
    set_sinks(elixir)

    name =
      start_everywhere(elixir, cnodes,
        name: TestSupport.unique_name("listen"),
        listeners: [Listener]
      )

    [_, peer | _] = elixir
    {:ok, pid, :ev1} = :erpc.call(peer, DS, :start_child, [name, {:echo, name: :ev1}])

    for n <- elixir,
        do: assert_receive({:dsup_listener, ^n, {:process_start, ^name, :ev1, ^pid}}, 5_000)

    :ok = DS.terminate_child(name, pid)

    for n <- elixir,
        do: assert_receive({:dsup_listener, ^n, {:process_stop, ^name, :ev1, [^pid]}}, 5_000)

    # events reach each listener in order: after the marker, no more :ev1 can come
    {:ok, m, :marker} = DS.start_child(name, {:echo, name: :marker})

    for n <- elixir,
        do: assert_receive({:dsup_listener, ^n, {:process_start, ^name, :marker, ^m}}, 5_000)

    refute_received {:dsup_listener, _, {_, ^name, :ev1, _}}
  end

  test "children of a killed dsup-node come back; listeners see on_node_down and on_node_terminate",
       %{elixir: elixir} do
    set_sinks(elixir)
    own = start_cnodes(3, "shim_k", elixir)
    on_exit(fn -> Enum.each(own, &TestNode.stop/1) end)
    own_nodes = Enum.map(own, & &1.node)

    name =
      start_everywhere(elixir, own_nodes,
        name: TestSupport.unique_name("failover"),
        nodes: own_nodes,
        monitor_nodes: true,
        listeners: [Listener]
      )

    ids = for i <- 1..24, do: {:k, i}
    for id <- ids, do: {:ok, _, ^id} = DS.start_child(name, {:counter, name: id, value: 100})
    [victim | survivors] = own
    v = victim.node
    on_victim = Enum.filter(ids, &(node(DS.whereis(name, &1)) == v))
    assert on_victim != []
    {:ok, temp, :temp} = DS.start_child(name, {:echo, name: :temp, restart: :temporary}, v)

    # SIGKILL loses what the victim had not yet sent: let every instance
    # (C and Elixir) learn of all the children first
    expected = Remote.children_pids(name)
    assert map_size(expected) == 25

    TestNode.wait_until(fn ->
      Enum.all?(elixir, &(:erpc.call(&1, Remote, :children_pids, [name]) == expected)) and
        Enum.all?(own_nodes, fn c ->
          GenServer.call({name, c}, :children) |> Map.new(fn {k, {p, _}} -> {k, p} end) ==
            expected
        end)
    end)

    {:exited, _} = TestNode.kill(victim)

    for n <- elixir, do: assert_receive({:dsup_listener, ^n, {:node_down, ^name, ^v, _}}, 10_000)
    wait_rings(elixir, Enum.map(survivors, & &1.node), name, Enum.map(survivors, & &1.node))

    wait_or_flunk(
      fn ->
        Enum.all?(elixir, fn n ->
          pids = :erpc.call(n, Remote, :whereis_many, [name, ids])
          Enum.all?(pids, &(is_pid(&1) and node(&1) != v))
        end)
      end,
      fn ->
        for n <- elixir,
            do: {n, Enum.zip(ids, :erpc.call(n, Remote, :whereis_many, [name, ids]))},
            into: %{
              c_views:
                for(
                  c <- survivors,
                  do:
                    {c.node,
                     GenServer.call({name, c.node}, :children)
                     |> Map.new(fn {k, {p, _}} -> {k, p} end)}
                )
            }
      end
    )

    # each on its own key's new owner, with its init args
    for id <- on_victim do
      pid = DS.whereis(name, id)
      assert node(pid) == Libring.owner(Enum.sort(Enum.map(survivors, & &1.node)), id)
      assert DS.node_for(name, id) == node(pid)
      assert DS.call(name, id, :get) == 100
    end

    # the temporary child is not restarted
    assert DS.whereis(name, :temp) == :undefined

    for n <- elixir,
        do: assert_receive({:dsup_listener, ^n, {:process_stop, ^name, :temp, [^temp]}}, 5_000)

    assert map_size(DS.children(name)) == 24

    # a graceful stop: on_node_terminate with the children's statuses
    [s1, s2] = survivors
    {:ok, pid, :bye} = DS.start_child(name, {:counter, name: :bye, value: 7}, s1.node)
    {:ok, 0} = TestNode.stop(s1)
    n1 = s1.node

    for n <- elixir do
      assert_receive {:dsup_listener, ^n, {:node_terminate, ^name, ^n1, :shutdown, statuses}},
                     10_000

      assert {:status, pid, {:module, :counter}, [7]} in statuses
    end

    TestNode.wait_until(fn ->
      (p = DS.whereis(name, :bye)) != :undefined and node(p) == s2.node
    end)

    assert DS.call(name, :bye, :get) == 7
    assert DS.nodes(name) == [s2.node]

    # node_down came once per node: a marker event, then nothing more for v
    {:ok, m, :marker} = DS.start_child(name, {:echo, name: :marker})

    for n <- elixir,
        do: assert_receive({:dsup_listener, ^n, {:process_start, ^name, :marker, ^m}}, 5_000)

    for n <- elixir, do: refute_received({:dsup_listener, ^n, {:node_down, ^name, ^v, _}})
  end
end
