defmodule DistributedSupervisor.HandoffMixedTest do
  # Moves in a mixed cluster: two Elixir hosts (:peer nodes) and two
  # dsup-nodes. An Elixir child moves only between Elixir hosts (its
  # successor is the ring owner among the hosts able to run it, whatever the
  # dsup-nodes' points), a C child only between dsup-nodes; move_child asked
  # of an Elixir instance reaches the C instance that runs a C child.
  use ExUnit.Case, async: false

  alias DistributedSupervisor, as: DS
  alias DistributedSupervisor.{TestNode, TestSupport}
  alias DistributedSupervisor.TestSupport.{Counter, Libring, Peers, Remote}

  @moduletag timeout: 120_000

  setup do
    peers = for i <- 1..2, do: Peers.start("shim_hm#{i}")
    [e1, e2] = elixir = Enum.map(peers, &elem(&1, 1))
    :erpc.call(e1, Node, :connect, [e2])
    [c1n, c2n] = cnodes = for i <- 1..2, do: TestNode.unique_node("shim_hmc#{i}")

    cs =
      [{c1n, c2n}, {c2n, c1n}]
      |> Enum.map(fn {me, other} ->
        Task.async(fn -> TestNode.start(node: me, connect: elixir ++ [other]) end)
      end)
      |> Enum.map(&Task.await(&1, 30_000))

    on_exit(fn ->
      Enum.each(cs, &TestNode.stop/1)
      Enum.each(peers, fn {p, _} -> Peers.stop(p) end)
    end)

    name = TestSupport.unique_name("hmix")
    all = elixir ++ cnodes
    for n <- elixir, do: :erpc.call(n, Remote, :start_instance, [[name: name, nodes: all]])

    TestNode.wait_until(fn ->
      Enum.all?(elixir, &(Enum.sort(:erpc.call(&1, DS, :nodes, [name])) == Enum.sort(all))) and
        Enum.all?(cnodes, &(Enum.sort(GenServer.call({name, &1}, :nodes)) == Enum.sort(all)))
    end)

    %{e1: e1, e2: e2, c1: c1n, c2: c2n, hc1: hd(cs), name: name}
  end

  test "each kind of child moves only to hosts that can run it, with its state",
       %{e1: e1, e2: e2, c1: c1, c2: c2, name: name} do
    # a C counter, moved by an Elixir caller: refused towards an Elixir host,
    # forwarded to its C instance towards a dsup-node
    {:ok, cp, :cc} =
      :erpc.call(e1, DS, :start_child, [name, {:counter, name: :cc, value: 41}, c1])

    assert :erpc.call(e1, DS, :move_child, [name, :cc, e2]) == {:error, {:no_host, e2}}
    assert :erpc.call(e2, DS, :call, [name, :cc, :get]) == 41
    assert {:ok, cp2, :cc} = :erpc.call(e1, DS, :move_child, [name, :cc, c2])
    assert node(cp2) == c2 and cp2 != cp
    assert :erpc.call(e1, DS, :call, [name, :cc, :get]) == 41

    # an Elixir counter: refused towards a dsup-node
    spec = {Counter, name: :ec, value: 41, sink: self(), tag: :ec}
    {:ok, ep, :ec} = :erpc.call(e1, DS, :start_child, [name, spec, e1])
    # (asked of e2: its table knows the child once e1's child_up is there)
    TestNode.wait_until(fn -> :erpc.call(e2, DS, :whereis, [name, :ec]) == ep end)
    assert :erpc.call(e2, DS, :move_child, [name, :ec, c1]) == {:error, {:no_host, c1}}
    assert :erpc.call(e1, DS, :whereis, [name, :ec]) == ep

    # its host stops: it goes to the other Elixir host (the only one able to
    # run it), with its value; the C counter stays where it is
    :ok = :erpc.call(e1, Remote, :stop_instance, [name])
    assert_receive {:counter_init, :ec, ^e2, ep2, {:ok, {:counter, 41}}}, 5_000
    TestNode.wait_until(fn -> :erpc.call(e2, DS, :whereis, [name, :ec]) == ep2 end)
    assert :erpc.call(e2, DS, :call, [name, :ec, {:add, 1}]) == 42
    assert :erpc.call(e2, DS, :whereis, [name, :cc]) == cp2
  end

  test "a stopping dsup-node hands its C counter (and its checkpoint) to the other dsup-node",
       %{e1: e1, e2: e2, c1: c1, c2: c2, hc1: hc1, name: name} do
    # a name whose owner on the ring without c1 is an Elixir host, which
    # cannot run a C counter: the successor is the owner among the capable
    # hosts, c2 (computed here with libring's algorithm, not the code's)
    rest = Enum.sort([e1, e2, c2])
    id = Enum.find(Enum.map(1..1_000, &:"cs#{&1}"), &(Libring.owner(rest, &1) in [e1, e2]))
    {:ok, cp, ^id} = :erpc.call(e1, DS, :start_child, [name, {:counter, name: id, value: 0}, c1])
    assert node(cp) == c1
    assert :erpc.call(e1, DS, :call, [name, id, {:add, 41}]) == 41

    # its checkpoint goes to c2 too (the failover's choice after a crash)
    assert :erpc.call(e1, DS, :call, [name, id, :checkpoint]) == :ok
    TestNode.wait_until(fn -> GenServer.call({name, c2}, {:checkpoint_of, id}) == {:ok, 41} end)

    for e <- [e1, e2],
        do: assert(:erpc.call(e, GenServer, :call, [name, {:checkpoint_of, id}]) == :none)

    # SIGTERM: handed over with its value (a restart from its spec would be at 0)
    assert TestNode.stop(hc1) == {:ok, 0}

    TestNode.wait_until(fn ->
      p = :erpc.call(e1, DS, :whereis, [name, id])
      is_pid(p) and node(p) == c2
    end)

    assert :erpc.call(e2, DS, :call, [name, id, :get]) == 41
  end

  test "a checkpoint goes to the Elixir successor, and the child restarts from it there",
       %{e1: e1, e2: e2, name: name} do
    spec = {Counter, name: :k, value: 0, checkpoint: true, sink: self(), tag: :k}
    {:ok, old, :k} = :erpc.call(e1, DS, :start_child, [name, spec, e1])
    assert_receive {:counter_init, :k, ^e1, ^old, :none}, 5_000
    for _ <- 1..17, do: :erpc.call(e1, DS, :call, [name, :k, {:add, 1}])

    TestNode.wait_until(fn ->
      :erpc.call(e2, GenServer, :call, [name, {:checkpoint_of, :k}]) == {:ok, {:counter, 17}}
    end)

    :erpc.cast(e1, :erlang, :halt, [137])
    assert_receive {:counter_init, :k, ^e2, new, {:ok, {:counter, 17}}}, 10_000
    TestNode.wait_until(fn -> :erpc.call(e2, DS, :whereis, [name, :k]) == new end)
    assert :erpc.call(e2, DS, :call, [name, :k, :get]) == 17
  end
end
