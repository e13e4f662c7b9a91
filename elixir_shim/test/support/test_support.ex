defmodule DistributedSupervisor.TestSupport do
  @moduledoc false
  # Helpers for the shim's own suite (compiled to ebin so that :peer nodes
  # load them too).

  alias DistributedSupervisor.TestNode

  @doc "Starts `epmd -port Port` unless one answers there; returns its OS pid or nil."
  def ensure_epmd(port) do
    if epmd_answers?() do
      nil
    else
      exe = System.find_executable("epmd") || raise "epmd not found"
      p = Port.open({:spawn_executable, exe}, [:binary, :exit_status, args: ["-port", "#{port}"]])
      {:os_pid, os_pid} = Port.info(p, :os_pid)
      TestNode.wait_until(&epmd_answers?/0, 10_000)
      os_pid
    end
  end

  defp epmd_answers? do
    match?({:ok, _}, :erl_epmd.names(~c"127.0.0.1"))
  end

  def stop_epmd(nil), do: :ok

  def stop_epmd(os_pid) do
    System.cmd("kill", ["-TERM", "#{os_pid}"], stderr_to_stdout: true)
    :ok
  end

  @doc "A unique instance name for a test."
  def unique_name(prefix) do
    Module.concat([ShimTest, "#{prefix}_#{System.unique_integer([:positive])}"])
  end

  @doc "Starts an instance not linked to the caller (for erpc on peers)."
  def start_instance(opts) do
    # unlinked: it outlives the (erpc) process that starts it
    {:ok, pid} = DistributedSupervisor.start_link(opts)
    Process.unlink(pid)
    pid
  end
end

defmodule DistributedSupervisor.TestSupport.Peers do
  @moduledoc false
  # BEAM peer nodes (OTP 25 :peer) with this project's code on their path.

  @doc "Starts a peer `prefix_OsPid_N@127.0.0.1` running the :distributed_supervisor app."
  def start(prefix) do
    name = :"#{prefix}_#{System.pid()}_#{System.unique_integer([:positive])}"
    otp = to_string(:code.root_dir())

    paths =
      :code.get_path()
      |> Enum.map(&to_string/1)
      |> Enum.reject(&String.starts_with?(&1, otp))
      |> Enum.flat_map(&["-pa", &1])

    # -connect_all false: peers need no mesh of their own (and global then
    # has no partitions to "prevent" when they stop)
    args =
      ["-setcookie", Atom.to_string(Node.get_cookie()), "-connect_all", "false" | paths]
      |> Enum.map(&to_charlist/1)

    {:ok, peer, node} =
      :peer.start(%{
        name: name,
        host: ~c"127.0.0.1",
        longnames: true,
        args: args,
        wait_boot: 30_000
      })

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:distributed_supervisor])
    {peer, node}
  end

  def stop(peer) do
    :peer.stop(peer)
  catch
    _, _ -> :ok
  end
end

defmodule DistributedSupervisor.TestSupport.Listener do
  @moduledoc false
  # Reports every callback as {:dsup_listener, node(), event} to the sink pid
  # set on its node.
  @behaviour DistributedSupervisor.Listener

  def set_sink(pid), do: :persistent_term.put({__MODULE__, :sink}, pid)

  @impl true
  def on_process_start(name, id, pid), do: notify({:process_start, name, id, pid})
  @impl true
  def on_process_stop(name, id, pids), do: notify({:process_stop, name, id, pids})
  @impl true
  def on_process_pending(name, id, type), do: notify({:process_pending, name, id, type})
  @impl true
  def on_node_up(name, node, info), do: notify({:node_up, name, node, info})
  @impl true
  def on_node_down(name, node, info), do: notify({:node_down, name, node, info})
  @impl true
  def on_node_terminate(name, node, reason, statuses),
    do: notify({:node_terminate, name, node, reason, statuses})

  defp notify(event) do
    case :persistent_term.get({__MODULE__, :sink}, nil) do
      nil -> :ok
      pid -> send(pid, {:dsup_listener, node(), event})
    end

    :ok
  end
end

defmodule DistributedSupervisor.TestSupport.RaisingListener do
  @moduledoc false
  @behaviour DistributedSupervisor.Listener

  @impl true
  def on_process_start(_name, _id, _pid), do: raise("listener failure (on purpose)")
end

defmodule DistributedSupervisor.TestSupport.Remote do
  @moduledoc false
  # Functions called with :erpc on peers.

  def start_instance(opts), do: DistributedSupervisor.TestSupport.start_instance(opts)

  # A graceful stop of the whole instance tree, waited for (the instance
  # sees :shutdown from its supervisor, as in an application's shutdown).
  def stop_instance(name) do
    case Process.whereis(DistributedSupervisor.Instance.supervisor(name)) do
      nil -> :ok
      sup -> Supervisor.stop(sup, :shutdown)
    end
  catch
    :exit, _ -> :ok
  end

  def node_for_many(name, keys), do: Enum.map(keys, &DistributedSupervisor.node_for(name, &1))
  def nodes(name), do: DistributedSupervisor.nodes(name)

  def children_pids(name),
    do: name |> DistributedSupervisor.children() |> Map.new(fn {k, {pid, _}} -> {k, pid} end)

  def whereis_many(name, ids), do: Enum.map(ids, &DistributedSupervisor.whereis(name, &1))

  def alive_here?(pid), do: node(pid) == node() and Process.alive?(pid)

  # the exception start_link/1 raises for `opts`: {module, message}
  def start_link_raises(opts) do
    DistributedSupervisor.start_link(opts)
    :no_raise
  rescue
    e -> {e.__struct__, Exception.message(e), Map.get(e, :key)}
  end

  def pg_members(name, id), do: :pg.get_members(DistributedSupervisor.Instance.scope(name), id)
end

defmodule DistributedSupervisor.TestSupport.Worker do
  @moduledoc false
  # A plain `use GenServer` child, as an app using the upstream library has:
  # `start_link(opts)` takes the (injected) `name:`; `value:` is its state;
  # `sink:` (a pid) hears {:worker_started, id, node(), self()} on each init.
  use GenServer

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: Keyword.get(opts, :name))

  @impl true
  def init(opts) do
    if sink = opts[:sink], do: send(sink, {:worker_started, opts[:tag], node(), self()})
    {:ok, Keyword.get(opts, :value, 0)}
  end

  @impl true
  def handle_call(:get, _from, v), do: {:reply, v, v}
  def handle_call({:add, n}, _from, v), do: {:reply, v + n, v + n}
  def handle_call(:crash, _from, _v), do: raise("crash on request")

  @impl true
  def handle_cast(:inc, v), do: {:noreply, v + 1}

  @impl true
  def handle_info({:get, from}, v) do
    send(from, {:value, v})
    {:noreply, v}
  end
end

defmodule DistributedSupervisor.TestSupport.Libring do
  @moduledoc false
  # libring 1.7's HashRing written out from its documented algorithm (not the
  # shim's Ring): 128 points phash2({node, i}, 2^32-1) per node, nodes added in
  # the given order (an existing point wins a collision); a key goes to the
  # first point >= its hash, wrapping; atom keys hash their term_to_binary.
  @range 4_294_967_295

  def owner([], _key), do: nil
  def owner(nodes, key), do: owner_on(points(nodes), key)

  # The ring's sorted points, to ask owner_on/2 for many keys.
  def points(nodes) do
    Enum.reduce(nodes, %{}, fn n, acc ->
      Enum.reduce(1..128, acc, fn i, a -> Map.put_new(a, :erlang.phash2({n, i}, @range), n) end)
    end)
    |> Enum.sort()
  end

  def owner_on([], _key), do: nil

  def owner_on(points, key) do
    h =
      if is_atom(key),
        do: :erlang.phash2(:erlang.term_to_binary(key), @range),
        else: :erlang.phash2(key, @range)

    case Enum.find(points, fn {p, _} -> p >= h end) do
      nil -> points |> hd() |> elem(1)
      {_, n} -> n
    end
  end
end
