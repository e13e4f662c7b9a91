defmodule DistributedSupervisor.TestNode do
  @moduledoc """
  ExUnit helpers to run real `dsup-node` OS processes beside your own tests.

      # test/test_helper.exs (the node running the tests must be distributed)
      {:ok, _} = Node.start(:"my_tests_\#{System.pid()}@127.0.0.1", :longnames)
      ExUnit.after_suite(fn _ -> DistributedSupervisor.TestNode.stop_all() end)
      ExUnit.start()

      # in a test
      test "children live on a dsup-node" do
        {:ok, _} = DistributedSupervisor.start_link(name: MyApp.DistSup)
        dsup = DistributedSupervisor.TestNode.start(supervisor: MyApp.DistSup)
        :ok = DistributedSupervisor.TestNode.wait_in_ring(dsup, MyApp.DistSup)
        {:ok, _pid, :w} = DistributedSupervisor.start_child(MyApp.DistSup, {:counter, name: :w})
        assert DistributedSupervisor.call(MyApp.DistSup, :w, :get) == 0
        {:ok, 0} = DistributedSupervisor.TestNode.stop(dsup)
      end

  `start/1` runs `dsup-node --name <unique>@127.0.0.1 --cookie <this node's cookie>
  --connect <this node> [--supervisor Name ...]` and returns a handle once the node
  answers (`Node.ping/1` and a call to its `dsup_node` process). The node runs under
  a small owner process (not linked to the caller: it outlives the test process that
  started it), which keeps its OS pid and exit status and copies its output to a log
  file. `stop/2` sends SIGTERM and waits for the exit, then SIGKILL after the
  deadline; `kill/1` sends SIGKILL at once; both work by OS pid. `stop_all/0` stops
  every node this VM started (call it from `ExUnit.after_suite/1`). When
  `DSUP_PIDDIR` is set, each node's OS pid is also written there as a file so that a
  wrapper script can kill leftovers.

  The binary is the `:exe` option, else `$DSUP_NODE`, else `build/dsup-node` of the
  dsup checkout this shim lives in, else `dsup-node` on `$PATH`. Epmd:
  dsup-nodes honour `ERL_EPMD_PORT` like `erl` does (the VM's environment is passed on).

  Never sleep in a test: `wait_until/3` polls a condition with a deadline.
  """

  defstruct [:node, :os_pid, :owner, :log, :args]

  @typedoc "A running (or exited) dsup-node."
  @type t :: %__MODULE__{
          node: node(),
          os_pid: pos_integer(),
          owner: pid(),
          log: Path.t(),
          args: [String.t()]
        }

  @tracker __MODULE__.Tracker

  # ------------------------------------------------------------------ names, waits

  @doc "A node name unique to this OS process and call: `prefix_OsPid_N@127.0.0.1`."
  @spec unique_node(String.t() | atom()) :: node()
  def unique_node(prefix \\ "dsup") do
    :"#{prefix}_#{System.pid()}_#{System.unique_integer([:positive])}@127.0.0.1"
  end

  @doc """
  Polls `fun` every `interval` ms until it returns a truthy value (which is
  returned) or `timeout` ms pass (then raises, with the last value). Exceptions
  and exits inside `fun` count as "not yet".
  """
  @spec wait_until((() -> term()), timeout(), pos_integer()) :: term()
  def wait_until(fun, timeout \\ 10_000, interval \\ 20) do
    deadline = System.monotonic_time(:millisecond) + timeout
    wait_loop(fun, deadline, timeout, interval)
  end

  defp wait_loop(fun, deadline, timeout, interval) do
    result =
      try do
        fun.()
      catch
        kind, reason -> {:not_yet, kind, reason}
      end

    case result do
      r when r in [nil, false] or elem(r, 0) == :not_yet ->
        now = System.monotonic_time(:millisecond)

        if now >= deadline do
          raise "wait_until: condition not met within #{timeout} ms (last: #{inspect(result)})"
        end

        Process.sleep(min(interval, deadline - now))
        wait_loop(fun, deadline, timeout, interval)

      r ->
        r
    end
  end

  @doc """
  Waits until `node` (a handle or a node name) is on the ring of the local
  instance `instance` (`DistributedSupervisor.nodes/1`). Returns `:ok`; raises
  after `timeout` ms.
  """
  @spec wait_in_ring(t() | node(), DistributedSupervisor.name(), timeout()) :: :ok
  def wait_in_ring(node, instance, timeout \\ 10_000)

  def wait_in_ring(%__MODULE__{node: node}, instance, timeout),
    do: wait_in_ring(node, instance, timeout)

  def wait_in_ring(node, instance, timeout) when is_atom(node) do
    wait_until(fn -> node in DistributedSupervisor.nodes(instance) end, timeout)
    :ok
  end

  @doc "Waits until `node` is no longer on the ring of `instance`."
  @spec wait_out_of_ring(t() | node(), DistributedSupervisor.name(), timeout()) :: :ok
  def wait_out_of_ring(node, instance, timeout \\ 10_000)

  def wait_out_of_ring(%__MODULE__{node: n}, instance, timeout),
    do: wait_out_of_ring(n, instance, timeout)

  def wait_out_of_ring(node, instance, timeout) when is_atom(node) do
    wait_until(fn -> node not in DistributedSupervisor.nodes(instance) end, timeout)
    :ok
  end

  # ------------------------------------------------------------------ start

  @doc """
  Starts a dsup-node and waits until it answers. Options (all optional):

    * `:supervisor` — an instance name, or a list; `{Name, "k=v,k=v"}` adds
      `--supervisor` keys (`cache_children`, `monitor_nodes`, `nodes`, ...).
      Names that start upper-case are read as Elixir aliases by the node:
      pass Elixir modules (`MyApp.DistSup`) or lower-case atoms.
    * `:name` — prefix of the unique node name (default `"dsup"`); `:node` — a full name.
    * `:cookie` — default `Node.get_cookie/0`.
    * `:connect` — nodes to connect to and keep connected (default `[node()]`).
      dsup-nodes are hidden: the BEAM does not mesh them. The instances of one
      supervisor need connections to each other (to learn of each other's
      children, for failover) and to every Elixir node that runs the
      supervisor: list them all, e.g. `connect: [node(), other_dsup.node]`.
    * `:visible` — `true` for a visible node (default hidden).
    * `:log_level`, `:extra_args` (strings appended verbatim), `:env` (`[{"K", "V"}]`).
    * `:log_dir` — where `<node name>.log` goes (default `$DSUP_LOG_DIR`, else
      `System.tmp_dir!()/dsup_nodes`).
    * `:exe` — the binary.
    * `:wait` — `:ready` (default) or `:none`; `:timeout` ms (default 20_000).

  Returns the handle; raises (with the end of the node's output) when the node
  exits or does not answer in time.
  """
  @spec start(keyword()) :: t()
  def start(opts \\ []) do
    exe = Keyword.get_lazy(opts, :exe, &exe/0)
    unless exe && File.regular?(exe), do: raise("dsup-node binary not found: #{inspect(exe)}")

    node = Keyword.get_lazy(opts, :node, fn -> unique_node(Keyword.get(opts, :name, "dsup")) end)
    cookie = Keyword.get(opts, :cookie, Node.get_cookie())
    connect = Keyword.get(opts, :connect, if(Node.alive?(), do: [node()], else: []))

    args =
      ["--name", Atom.to_string(node)] ++
        if(cookie in [nil, :nocookie], do: [], else: ["--cookie", to_string(cookie)]) ++
        if(Keyword.get(opts, :visible, false), do: ["--visible"], else: []) ++
        Enum.flat_map(connect, &["--connect", to_string(&1)]) ++
        Enum.flat_map(List.wrap(Keyword.get(opts, :supervisor, [])), &supervisor_arg/1) ++
        log_level_args(Keyword.get(opts, :log_level, System.get_env("DSUP_LOG_LEVEL"))) ++
        Keyword.get(opts, :extra_args, [])

    log_dir =
      Keyword.get_lazy(opts, :log_dir, fn ->
        System.get_env("DSUP_LOG_DIR") || Path.join(System.tmp_dir!(), "dsup_nodes")
      end)

    File.mkdir_p!(log_dir)
    log = Path.join(log_dir, "#{node |> Atom.to_string() |> String.split("@") |> hd()}.log")
    env = Enum.map(Keyword.get(opts, :env, []), fn {k, v} -> {to_charlist(k), to_charlist(v)} end)

    caller = self()
    ref = make_ref()
    owner = spawn(fn -> owner_init(caller, ref, exe, args, env, log) end)

    os_pid =
      receive do
        {^ref, {:started, os_pid}} -> os_pid
        {^ref, {:error, why}} -> raise "dsup-node failed to start: #{inspect(why)}"
      after
        10_000 ->
          Process.exit(owner, :kill)
          raise "dsup-node failed to start: owner timeout"
      end

    handle = %__MODULE__{node: node, os_pid: os_pid, owner: owner, log: log, args: args}
    track(handle)

    if Keyword.get(opts, :wait, :ready) == :ready do
      wait_ready(handle, Keyword.get(opts, :timeout, 20_000))
    end

    handle
  end

  defp supervisor_arg({name, kv}) when is_binary(kv),
    do: ["--supervisor", sup_name(name) <> "," <> kv]

  defp supervisor_arg(name), do: ["--supervisor", sup_name(name)]

  defp sup_name(name) when is_atom(name), do: Atom.to_string(name)
  defp sup_name(name) when is_binary(name), do: name

  defp log_level_args(nil), do: []
  defp log_level_args(level), do: ["--log-level", to_string(level)]

  defp wait_ready(%__MODULE__{node: node} = h, timeout) do
    result =
      try do
        wait_until(
          fn ->
            case exit_status(h) do
              :running ->
                Node.ping(node) == :pong and
                  is_list(:gen_server.call({:dsup_node, node}, :which_workers, 2_000))

              {:exited, _} = exited ->
                exited
            end
          end,
          timeout,
          50
        )
      rescue
        e in RuntimeError -> {:timeout, Exception.message(e)}
      end

    case result do
      true ->
        :ok

      {:exited, status} ->
        raise "dsup-node #{node} exited with status #{inspect(status)} while starting:\n" <>
                Enum.join(log_tail(h, 40), "\n")

      {:timeout, msg} ->
        _ = kill(h)
        raise "dsup-node #{node} not ready: #{msg}\n" <> Enum.join(log_tail(h, 40), "\n")
    end
  end

  @doc """
  The dsup-node binary: `$DSUP_NODE`, else `build/dsup-node` of the dsup checkout
  that holds this shim, else `dsup-node` on `$PATH` (`nil` when none is found).
  """
  @spec exe() :: String.t() | nil
  def exe do
    checkout = Path.expand("../../../build/dsup-node", __DIR__)

    cond do
      (e = System.get_env("DSUP_NODE")) not in [nil, ""] -> e
      File.regular?(checkout) -> checkout
      true -> System.find_executable("dsup-node")
    end
  end

  # ------------------------------------------------------------------ stop

  @doc """
  Stops the node: SIGTERM, then SIGKILL when it has not exited after `timeout`
  ms. Returns `{:ok, exit_status}` (also when it had exited already) or
  `{:error, {:sigterm_timeout, status_after_kill}}`.
  """
  @spec stop(t(), timeout()) :: {:ok, integer()} | {:error, {:sigterm_timeout, term()}}
  def stop(%__MODULE__{} = h, timeout \\ 10_000) do
    _ = signal(h, "TERM")

    case wait_exit(h, timeout) do
      {:exited, status} ->
        untrack(h)
        {:ok, status}

      _ ->
        _ = signal(h, "KILL")
        result = wait_exit(h, 5_000)
        untrack(h)
        {:error, {:sigterm_timeout, result}}
    end
  end

  @doc "Kills the node with SIGKILL; returns `{:exited, status}` once it is gone."
  @spec kill(t()) :: {:exited, integer() | :unknown} | :timeout
  def kill(%__MODULE__{} = h) do
    _ = signal(h, "KILL")
    result = wait_exit(h, 10_000)
    untrack(h)
    result
  end

  @doc "Sends a signal (`\"TERM\"`, `\"INT\"`, `\"KILL\"`, ...) to the node's OS process if it runs."
  @spec signal(t(), String.t()) :: :ok | :not_running
  def signal(%__MODULE__{os_pid: os_pid} = h, sig) do
    case exit_status(h) do
      :running ->
        System.cmd("kill", ["-#{sig}", Integer.to_string(os_pid)], stderr_to_stdout: true)
        :ok

      _ ->
        :not_running
    end
  end

  @doc "`:running`, or `{:exited, status}` (128 + N after signal N)."
  @spec exit_status(t()) :: :running | {:exited, integer() | :unknown}
  def exit_status(h) do
    case owner_req(h, :status, 5_000) do
      {:owner_down, _} -> {:exited, :unknown}
      r -> r
    end
  end

  @doc "Waits up to `timeout` ms for the node to exit: `{:exited, status}` or `:timeout`."
  @spec wait_exit(t(), timeout()) :: {:exited, integer() | :unknown} | :timeout
  def wait_exit(h, timeout) do
    case owner_req(h, :wait_exit, timeout) do
      {:owner_down, _} -> {:exited, :unknown}
      r -> r
    end
  end

  @doc "The last `n` lines the node wrote."
  @spec log_tail(t(), pos_integer()) :: [String.t()]
  def log_tail(h, n \\ 40) do
    case owner_req(h, {:tail, n}, 2_000) do
      lines when is_list(lines) ->
        lines

      _ ->
        case File.read(h.log) do
          {:ok, data} -> data |> String.split("\n", trim: true) |> Enum.take(-n)
          _ -> []
        end
    end
  end

  @doc "Stops (SIGTERM, then SIGKILL) every node started by this VM that still runs."
  @spec stop_all(timeout()) :: :ok
  def stop_all(timeout \\ 5_000) do
    tracked()
    |> Enum.map(fn h -> Task.async(fn -> stop(h, timeout) end) end)
    |> Enum.each(&Task.await(&1, timeout + 10_000))
  end

  # ------------------------------------------------------------------ owner

  defp owner_init(caller, ref, exe, args, env, log) do
    {:ok, fd} = File.open(log, [:append, :binary])
    IO.binwrite(fd, "### #{exe} #{Enum.join(args, " ")}\n")

    port_opts =
      [:binary, :exit_status, :stderr_to_stdout, {:line, 4096}, {:args, args}] ++
        if(env == [], do: [], else: [{:env, env}])

    try do
      Port.open({:spawn_executable, exe}, port_opts)
    rescue
      e ->
        IO.binwrite(fd, "### open_port failed: #{Exception.message(e)}\n")
        send(caller, {ref, {:error, e}})
    else
      port ->
        {:os_pid, os_pid} = Port.info(port, :os_pid)
        pidfile(os_pid, :write)
        send(caller, {ref, {:started, os_pid}})

        owner_loop(%{
          port: port,
          fd: fd,
          os_pid: os_pid,
          status: :running,
          waiters: [],
          tail: :queue.new(),
          n: 0,
          partial: ""
        })
    end
  end

  defp owner_loop(%{port: port} = s) do
    receive do
      {^port, {:data, {:noeol, data}}} ->
        owner_loop(%{s | partial: s.partial <> data})

      {^port, {:data, {:eol, data}}} ->
        line = s.partial <> data
        IO.binwrite(s.fd, [line, "\n"])
        owner_loop(push_line(%{s | partial: ""}, line))

      {^port, {:exit_status, status}} ->
        s = if s.partial == "", do: s, else: push_line(s, s.partial)
        IO.binwrite(s.fd, "### exit_status #{status}\n")
        File.close(s.fd)
        pidfile(s.os_pid, :delete)
        Enum.each(s.waiters, fn {from, tag} -> send(from, {tag, {:exited, status}}) end)
        owner_loop(%{s | status: {:exited, status}, waiters: []})

      {:wait_exit, from, tag} ->
        case s.status do
          :running -> owner_loop(%{s | waiters: [{from, tag} | s.waiters]})
          st -> send(from, {tag, st}) && owner_loop(s)
        end

      {:status, from, tag} ->
        send(from, {tag, s.status})
        owner_loop(s)

      {{:tail, n}, from, tag} ->
        lines = :queue.to_list(s.tail)
        send(from, {tag, Enum.take(lines, -n)})
        owner_loop(s)
    end
  end

  defp push_line(%{n: n, tail: q} = s, line) when n >= 400,
    do: %{s | tail: :queue.in(line, :queue.drop(q))}

  defp push_line(%{n: n, tail: q} = s, line), do: %{s | tail: :queue.in(line, q), n: n + 1}

  defp owner_req(%__MODULE__{owner: owner}, req, timeout) do
    tag = Process.monitor(owner)
    send(owner, {req, self(), tag})

    receive do
      {^tag, r} ->
        Process.demonitor(tag, [:flush])
        r

      {:DOWN, ^tag, _, _, why} ->
        {:owner_down, why}
    after
      timeout ->
        Process.demonitor(tag, [:flush])
        :timeout
    end
  end

  defp pidfile(os_pid, op) do
    case System.get_env("DSUP_PIDDIR") do
      dir when dir in [nil, ""] -> :ok
      dir when op == :write -> File.write(Path.join(dir, Integer.to_string(os_pid)), "")
      dir -> File.rm(Path.join(dir, Integer.to_string(os_pid)))
    end
  end

  # ------------------------------------------------------------------ tracking

  defp tracker do
    case Process.whereis(@tracker) do
      nil ->
        pid = spawn(fn -> tracker_loop(%{}) end)

        try do
          Process.register(pid, @tracker)
          pid
        rescue
          ArgumentError ->
            Process.exit(pid, :kill)
            tracker()
        end

      pid ->
        pid
    end
  end

  defp tracker_loop(handles) do
    receive do
      {:track, h} -> tracker_loop(Map.put(handles, h.os_pid, h))
      {:untrack, h} -> tracker_loop(Map.delete(handles, h.os_pid))
      {:list, from, tag} -> send(from, {tag, Map.values(handles)}) && tracker_loop(handles)
    end
  end

  defp track(h), do: send(tracker(), {:track, h})
  defp untrack(h), do: send(tracker(), {:untrack, h})

  defp tracked do
    tag = make_ref()
    send(tracker(), {:list, self(), tag})

    receive do
      {^tag, handles} -> handles
    after
      5_000 -> []
    end
  end
end
