defmodule DistributedSupervisor.ElixirHostsTest do
  # Elixir-only clusters: three :peer nodes run the instance, no dsup-node
  # takes part (the peers know of none). The shim behaves as the upstream
  # library: children are GenServer modules, local to the node that runs them.
  use ExUnit.Case, async: false

  alias DistributedSupervisor, as: DS
  alias DistributedSupervisor.{TestNode, TestSupport}
  alias DistributedSupervisor.TestSupport.{Libring, Peers, Remote, Worker}

  @moduletag timeout: 120_000

  setup do
    peers = for i <- 1..3, do: Peers.start("shim_ex#{i}")
    nodes = Enum.map(peers, &elem(&1, 1))
    on_exit(fn -> Enum.each(peers, fn {p, _} -> Peers.stop(p) end) end)
    name = TestSupport.unique_name("ex")
    # `nodes:` connects the peers to each other (they start unconnected)
    for n <- nodes, do: :erpc.call(n, Remote, :start_instance, [[name: name, nodes: nodes]])

    TestNode.wait_until(fn ->
      Enum.all?(nodes, &(Enum.sort(:erpc.call(&1, DS, :nodes, [name])) == Enum.sort(nodes)))
    end)

    %{peers: peers, nodes: nodes, name: name}
  end

  defp via(name, id), do: {:via, DistributedSupervisor.Registry, {name, id}}

  test "the documented API end to end, children placed by libring over the Elixir hosts",
       %{nodes: nodes, name: name} do
    ids =
      for i <- 1..30 do
        from = Enum.at(nodes, rem(i, 3))
        id = if rem(i, 2) == 0, do: {:w, i}, else: :"w#{i}"

        {:ok, pid, ^id} = :erpc.call(from, DS, :start_child, [name, {Worker, name: id, value: i}])

        # placed by libring over the hosts, computed independently
        assert node(pid) == Libring.owner(Enum.sort(nodes), id)
        # local and alive on its node, as with the upstream library
        assert :erpc.call(node(pid), Remote, :alive_here?, [pid])
        assert pid in :erpc.call(node(pid), DS, :local_children, [name])
        assert :erpc.call(node(pid), DS, :mine?, [name, id])
        id
      end

    assert ids
           |> Enum.map(&:erpc.call(hd(nodes), DS, :node_for, [name, &1]))
           |> Enum.uniq()
           |> length() == 3

    TestNode.wait_until(fn ->
      maps = Enum.map(nodes, &:erpc.call(&1, Remote, :children_pids, [name]))
      map_size(hd(maps)) == 30 and Enum.all?(maps, &(&1 == hd(maps)))
    end)

    [a, b, c] = nodes
    children = :erpc.call(b, DS, :children, [name])

    # the spec as upstream shapes it: the module's child_spec, via name injected
    {pid7, spec7} = children[:w7]

    assert spec7 == %{
             id: Worker,
             start: {Worker, :start_link, [[name: via(name, :w7), value: 7]]}
           }

    assert :erpc.call(c, DS, :whereis, [name, :w7]) == pid7
    assert :erpc.call(c, DS, :whois, [name, pid7]) == :w7
    assert :erpc.call(a, DS, :call, [name, :w7, {:add, 1}]) == 8
    assert :erpc.call(a, DS, :cast, [name, :w7, :inc]) == :ok
    assert :erpc.call(b, GenServer, :call, [via(name, :w7), :get]) == 9
    assert :erpc.call(a, DS, :send, [name, :w7, {:get, self()}]) == {:get, self()}
    assert_receive {:value, 9}, 5_000
    assert :erpc.call(a, DS, :send, [name, :nope, :x]) == :undefined

    assert :erpc.call(c, DS, :count_children, [name]) ==
             %{specs: 30, active: 30, supervisors: 0, workers: 30}

    assert {:undefined, pid7, :worker, [Worker]} in :erpc.call(a, DS, :which_children, [name])

    # duplicates are refused cluster-wide, whatever the caller
    assert {:error, {:already_started, ^pid7}} =
             :erpc.call(c, DS, :start_child, [name, {Worker, name: :w7}])

    # spec forms: a module alone (a reference for a name), a map spec
    {:ok, pr, ref} = :erpc.call(a, DS, :start_child, [name, Worker])
    assert is_reference(ref) and node(pr) == Libring.owner(Enum.sort(nodes), ref)

    {:ok, pm, :mapped} =
      :erpc.call(b, DS, :start_child, [
        name,
        %{id: :m, start: {Worker, :start_link, [[name: :mapped, value: 3]]}, restart: :transient}
      ])

    assert :erpc.call(c, DS, :call, [name, :mapped, :get]) == 3

    # on an explicit node
    {:ok, pe, :explicit} = :erpc.call(a, DS, :start_child, [name, {Worker, name: :explicit}, c])
    assert node(pe) == c

    # a crash: restarted in place, same name
    catch_exit(:erpc.call(a, DS, :call, [name, :explicit, :crash]))

    new =
      TestNode.wait_until(fn ->
        p = :erpc.call(b, DS, :whereis, [name, :explicit])
        is_pid(p) and p != pe and p
      end)

    assert node(new) == c

    # terminate: gone everywhere, not restarted
    assert :erpc.call(a, DS, :terminate_child, [name, pm]) == :ok
    assert :erpc.call(a, DS, :terminate_child, [name, pm]) == {:error, :not_found}

    TestNode.wait_until(fn ->
      Enum.all?(nodes, &(:erpc.call(&1, DS, :whereis, [name, :mapped]) == :undefined))
    end)

    # a module nobody can load
    assert :erpc.call(a, DS, :start_child, [name, {NoSuchModule, name: :x}]) ==
             {:error, {:unknown_worker, NoSuchModule}}
  end

  test "a stopped peer's children are restarted by their own name, each once",
       %{peers: peers, nodes: nodes, name: name} do
    ids = for i <- 1..24, do: {:f, i}

    for id <- ids,
        do:
          {:ok, _, ^id} =
            :erpc.call(hd(nodes), DS, :start_child, [
              name,
              {Worker, name: id, value: 100, sink: self(), tag: id}
            ])

    for _ <- ids, do: assert_receive({:worker_started, _, _, _}, 5_000)

    TestNode.wait_until(fn ->
      Enum.all?(nodes, &(map_size(:erpc.call(&1, Remote, :children_pids, [name])) == 24))
    end)

    {:ok, temp, :temp} =
      :erpc.call(hd(nodes), DS, :start_child, [
        name,
        %{id: :t, start: {Worker, :start_link, [[name: :temp]]}, restart: :temporary},
        List.last(nodes)
      ])

    assert node(temp) == List.last(nodes)
    {victim_peer, victim} = List.last(peers)
    survivors = nodes -- [victim]
    before = :erpc.call(hd(nodes), Remote, :children_pids, [name])
    on_victim = for {id, pid} <- before, node(pid) == victim, is_tuple(id), do: id
    assert on_victim != []

    Peers.stop(victim_peer)

    TestNode.wait_until(fn ->
      Enum.all?(survivors, fn n ->
        pids = :erpc.call(n, Remote, :whereis_many, [name, ids])
        Enum.all?(pids, &(is_pid(&1) and node(&1) != victim))
      end)
    end)

    for id <- on_victim do
      # restarted once, on the new owner of its own name, with its args
      assert_receive {:worker_started, ^id, node, pid}, 5_000
      assert node == Libring.owner(Enum.sort(survivors), id)
      assert :erpc.call(hd(survivors), DS, :whereis, [name, id]) == pid
      assert :erpc.call(node, DS, :call, [name, id, :get]) == 100
    end

    refute_received {:worker_started, _, _, _}
    assert :erpc.call(hd(survivors), DS, :whereis, [name, :temp]) == :undefined
    assert :erpc.call(hd(survivors), DS, :nodes, [name]) |> Enum.sort() == Enum.sort(survivors)
    assert map_size(:erpc.call(hd(survivors), DS, :children, [name])) == 24
  end

  test "a bad option raises NimbleOptions.ValidationError when the app has NimbleOptions",
       %{nodes: [a, b | _]} do
    # `a` gets a stand-in for the real module (no hex here); `b` has none
    :erpc.call(a, Code, :compile_string, [
      "defmodule NimbleOptions.ValidationError do\n" <>
        "  defexception [:message, :key, :value, keys_path: [], redact: false]\n" <>
        "end"
    ])

    msg = "required :name option not found, received options: []"

    assert :erpc.call(a, Remote, :start_link_raises, [[]]) ==
             {NimbleOptions.ValidationError, msg, :name}

    assert :erpc.call(b, Remote, :start_link_raises, [[]]) ==
             {DistributedSupervisor.ValidationError, msg, :name}
  end
end
