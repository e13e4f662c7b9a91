defmodule DistributedSupervisor.TestNodeTest do
  # The helpers users get for their own suites, and instances meeting
  # dsup-nodes that already run the supervisor.
  use ExUnit.Case, async: false

  alias DistributedSupervisor, as: DS
  alias DistributedSupervisor.{TestNode, TestSupport}

  test "start (with --supervisor), wait_in_ring, stop by SIGTERM" do
    name = TestSupport.unique_name("tn")
    h = TestNode.start(name: "shim_tn", supervisor: name)
    assert %TestNode{node: node, os_pid: os_pid} = h
    assert is_integer(os_pid) and File.exists?("/proc/#{os_pid}")
    assert Atom.to_string(node) =~ ~r/^shim_tn_\d+_\d+@127\.0\.0\.1$/
    assert TestNode.exit_status(h) == :running
    assert "--supervisor" in h.args and Atom.to_string(name) in h.args
    # the node runs the instance before any Elixir instance exists
    assert GenServer.call({name, node}, :nodes) == [node]

    {:ok, _} = DS.start_link(name: name, nodes: [node])
    :ok = TestNode.wait_in_ring(h, name)
    {:ok, pid, :x} = DS.start_child(name, {:echo, name: :x})
    assert node(pid) == node

    assert {:ok, 0} = TestNode.stop(h)
    assert TestNode.exit_status(h) == {:exited, 0}
    assert {:ok, 0} = TestNode.stop(h)
    refute File.exists?("/proc/#{os_pid}")
    :ok = TestNode.wait_out_of_ring(h, name)
    assert DS.whereis(name, :x) == :undefined
    assert Enum.any?(TestNode.log_tail(h, 50), &(&1 =~ "stopped"))
  end

  test "kill by SIGKILL" do
    h = TestNode.start(name: "shim_kill")
    assert {:exited, 137} = TestNode.kill(h)
    assert TestNode.signal(h, "TERM") == :not_running
    assert {:ok, 137} = TestNode.stop(h)
  end

  test "a node that cannot start raises with its output" do
    e =
      assert_raise RuntimeError, fn ->
        TestNode.start(name: "shim_bad", extra_args: ["--no-such-option"])
      end

    assert e.message =~ "exited with status"
  end

  test "wait_until returns the value, or raises after the deadline" do
    assert TestNode.wait_until(fn -> {:ok, 1} end) == {:ok, 1}

    assert_raise RuntimeError, ~r/not met within 50 ms/, fn ->
      TestNode.wait_until(fn -> false end, 50)
    end
  end

  test "a restarted Elixir instance gets the child table back from the dsup-nodes" do
    name = TestSupport.unique_name("restart")
    {:ok, pid} = DS.start_link(name: name)
    {:ok, a, :a} = DS.start_child(name, {:counter, name: :a, value: 3})
    {:ok, b, :b} = DS.start_child(name, {:kv, name: :b})
    GenServer.stop(pid)
    refute Process.whereis(name)

    {:ok, _} = DS.start_link(name: name)
    TestNode.wait_until(fn -> map_size(DS.children(name)) == 2 end)

    assert %{a: {^a, %{start: {:counter, :start_link, [[value: 3]]}}}, b: {^b, _}} =
             DS.children(name)

    assert DS.call(name, :a, :get) == 3
  end
end
