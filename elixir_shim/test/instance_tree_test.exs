defmodule DistributedSupervisor.InstanceTreeTest do
  # The process tree behind start_link/1 (DistributedSupervisor.InstanceSupervisor):
  # what it runs, that a crash of one part restarts them all (no child
  # outlives the instance that knew it), and that it stops as one.
  # `nodes: [node()]`: this node is the only host, its children are local.
  use ExUnit.Case, async: false

  alias DistributedSupervisor, as: DS
  alias DistributedSupervisor.{Dispatcher, Instance, TestNode, TestSupport}
  alias DistributedSupervisor.TestSupport.Listener

  setup do
    Listener.set_sink(self())
    %{name: TestSupport.unique_name("tree")}
  end

  defp child(sup, id) do
    Enum.find_value(Supervisor.which_children(sup), fn
      {^id, pid, _, _} -> pid
      _ -> nil
    end)
  end

  test "start_link/1 returns the supervisor of the scope, tasks, dispatcher, children and instance",
       %{name: name} do
    {:ok, sup} = DS.start_link(name: name, nodes: [node()], listeners: Listener)

    # started in this order (which_children lists the last started first):
    # the instance is stopped first, while its children still run
    assert sup |> Supervisor.which_children() |> Enum.map(&elem(&1, 0)) ==
             [Instance, :children, Dispatcher, :tasks, :scope]

    assert child(sup, Instance) == Process.whereis(name)
    assert child(sup, :scope) == Process.whereis(Instance.scope(name))
    assert child(sup, :children) == Process.whereis(Instance.children_sup(name))
    assert {:error, {:already_started, ^sup}} = DS.start_link(name: name)

    {:ok, a, id} = DS.start_child(name, {Agent, fn -> 1 end}, node())
    assert_receive {:dsup_listener, _, {:process_start, ^name, ^id, ^a}}, 5_000

    assert DynamicSupervisor.which_children(child(sup, :children)) == [
             {:undefined, a, :worker, [Agent]}
           ]

    # the listeners hear node_terminate before the dispatcher stops
    :ok = Supervisor.stop(sup)
    assert_receive {:dsup_listener, _, {:node_terminate, ^name, node, :shutdown, [_]}}, 5_000
    assert node == node()
    refute Process.alive?(a)
    refute Process.whereis(name)
    refute Process.whereis(Instance.scope(name))
  end

  test "a crashed part restarts the whole instance: no child outlives the table that knew it",
       %{name: name} do
    {:ok, sup} = DS.start_link(name: name, nodes: [node()])
    {:ok, a, _} = DS.start_child(name, {Agent, fn -> 1 end}, node())
    inst = Process.whereis(name)
    mon = Process.monitor(a)

    Process.exit(child(sup, :tasks), :kill)

    assert_receive {:DOWN, ^mon, :process, ^a, _}, 5_000
    TestNode.wait_until(fn -> (p = Process.whereis(name)) != nil and p != inst end)
    # (the call waits for the new instance's init)
    assert GenServer.call(name, :children) == %{}
    assert DynamicSupervisor.count_children(child(sup, :children)).active == 0
    assert Process.alive?(sup)

    {:ok, b, id} = DS.start_child(name, {Agent, fn -> 2 end}, node())
    assert DS.local_children(name) == [b]
    assert DS.whereis(name, id) == b
    Supervisor.stop(sup)
  end

  test "start/1 is unlinked; stopping the instance by its name stops the whole tree",
       %{name: name} do
    {:ok, sup} = DS.start(name: name, nodes: [node()])
    assert {:links, []} = Process.info(self(), :links)
    {:ok, a, _} = DS.start_child(name, {Agent, fn -> 1 end}, node())
    ms = Process.monitor(sup)
    ma = Process.monitor(a)

    :ok = GenServer.stop(name)

    assert_receive {:DOWN, ^ma, :process, ^a, :shutdown}, 5_000
    assert_receive {:DOWN, ^ms, :process, ^sup, :normal}, 5_000
    refute Process.whereis(Instance.scope(name))
  end

  test "GenServer.stop(name) does not kill the process that started the instance linked",
       %{name: name} do
    test = self()

    starter =
      spawn(fn ->
        {:ok, sup} = DS.start_link(name: name, nodes: [node()])
        send(test, {:started, sup})
        receive do: (:never -> :ok)
      end)

    assert_receive {:started, sup}, 5_000
    ms = Process.monitor(sup)
    :ok = GenServer.stop(name)
    # the tree stops with :normal: a linked starter is not sent a kill-worthy exit
    assert_receive {:DOWN, ^ms, :process, ^sup, :normal}, 5_000
    assert Process.alive?(starter)
    Process.exit(starter, :kill)
  end
end
