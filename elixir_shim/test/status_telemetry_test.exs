defmodule DistributedSupervisor.StatusTelemetryTest do
  # DistributedSupervisor.status/1 and the :telemetry events, against the
  # real dsup-node that test_helper.exs starts.
  #
  # :telemetry is not installed here (the project has no dependencies), so the
  # event path is tested with a stand-in module named :telemetry, compiled by
  # the test itself (execute/3 forwards each event to the test process) and
  # unloaded afterwards; the first test runs without any :telemetry module.
  use ExUnit.Case, async: false

  alias DistributedSupervisor, as: DS
  alias DistributedSupervisor.{TestNode, TestSupport}

  @sink {__MODULE__, :sink}

  setup do
    main = Application.fetch_env!(:distributed_supervisor, :test_main_node)
    %{cnode: main.node, name: TestSupport.unique_name("status")}
  end

  defp install_stand_in do
    Code.compile_string("""
    defmodule :telemetry do
      def execute(event, measurements, metadata) do
        case :persistent_term.get(#{inspect(@sink)}, nil) do
          pid when is_pid(pid) -> send(pid, {:telemetry, event, measurements, metadata})
          nil -> :ok
        end
      end
    end
    """)

    :persistent_term.put(@sink, self())

    on_exit(fn ->
      :persistent_term.erase(@sink)
      :code.purge(:telemetry)
      :code.delete(:telemetry)
      :code.purge(:telemetry)
    end)
  end

  test "status/1: hosts, children, pending, restarts; nothing emitted nor broken without :telemetry",
       %{name: name, cnode: c} do
    refute Code.ensure_loaded?(:telemetry)
    # an observer: the dsup-node is the only host, as the figures below assume
    {:ok, _} = DS.start_link(name: name, host: false)

    for id <- [:a, :b, :c], do: {:ok, _, ^id} = DS.start_child(name, {:counter, name: id})

    st = DS.status(name)
    assert %{name: ^name, nodes: [^c], children: 3, pending: 0, restarts: 0, unanswered: []} = st
    assert st.hosts == %{c => %{children: 3, pending: 0, restarts: 0}}
    # the reference: the cluster table as the API reads it
    assert st.children == DS.count_children(name).active

    assert st.hosts[c].children ==
             DS.children(name) |> Enum.count(fn {_, {p, _}} -> node(p) == c end)

    # a permanent child killed: restarted by its host, counted there
    pid = DS.whereis(name, :b)
    Process.exit(pid, :kill)
    TestNode.wait_until(fn -> (p = DS.whereis(name, :b)) != pid and is_pid(p) end)

    assert %{children: 3, restarts: 1, hosts: %{^c => %{restarts: 1, children: 3}}} =
             DS.status(name)

    :ok = DS.terminate_child(name, DS.whereis(name, :a))
    assert %{children: 2, restarts: 1} = DS.status(name)
    refute_received {:telemetry, _, _, _}
  end

  test "status/1 of an instance not running here raises" do
    assert_raise ArgumentError, ~r/no DistributedSupervisor named/, fn ->
      DS.status(:no_such_instance_here)
    end
  end

  test "events go through :telemetry when it is present", %{name: name, cnode: c} do
    install_stand_in()
    {:ok, _} = DS.start_link(name: name, monitor_nodes: true, host: false)

    assert_receive {:telemetry, [:distributed_supervisor, :host, :join], %{hosts: 1} = m,
                    %{name: ^name, node: ^c, pid: host}},
                   5_000

    assert is_integer(m.system_time) and node(host) == c

    {:ok, pid, :t1} = DS.start_child(name, {:echo, name: :t1})

    assert_receive {:telemetry, [:distributed_supervisor, :child, :start], %{system_time: _},
                    %{name: ^name, id: :t1, pid: ^pid, node: ^c}},
                   5_000

    :ok = DS.terminate_child(name, pid)

    assert_receive {:telemetry, [:distributed_supervisor, :child, :stop], %{system_time: _},
                    %{name: ^name, id: :t1, pid: ^pid, node: ^c}},
                   5_000

    %{children: 0} = DS.status(name)

    assert_receive {:telemetry, [:distributed_supervisor, :status],
                    %{hosts: 1, children: 0, pending: 0, restarts: 0},
                    %{name: ^name, unanswered: []}}

    # the host's instance is killed: it leaves the group, its node leaves the
    # ring (monitor_nodes: true), and the dsup-node restarts the instance
    Process.exit(host, :kill)

    assert_receive {:telemetry, [:distributed_supervisor, :host, :leave], %{hosts: 0},
                    %{name: ^name, node: ^c, pid: ^host}},
                   5_000

    assert_receive {:telemetry, [:distributed_supervisor, :node, :down], %{system_time: _},
                    %{name: ^name, node: ^c}},
                   5_000

    assert_receive {:telemetry, [:distributed_supervisor, :host, :join], %{hosts: 1},
                    %{name: ^name, node: ^c, pid: new_host}},
                   10_000

    assert new_host != host
  end
end
