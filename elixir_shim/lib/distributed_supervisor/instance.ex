defmodule DistributedSupervisor.Instance do
  @moduledoc false
  # The local process behind DistributedSupervisor.start_link/1 on an Elixir
  # node: a *host* (the default) or, with `host: false`, an *observer*.
  #
  #   * runs (or reuses) the :pg scope Name.Scope; a host joins
  #     '$dsup_beam' (it runs BEAM modules) and then '$dsup_hosts', an
  #     observer joins '$dsup_observers';
  #   * follows '$dsup_hosts' with :pg.monitor/2: the nodes of its members
  #     (restricted to the :nodes option) form the ring;
  #   * a host runs its children under a local DynamicSupervisor (its
  #     sibling Name.Children, see InstanceSupervisor); each child
  #     registers itself through its via name (DistributedSupervisor.Registry,
  #     a pg group per child name) and the instance tells the others
  #     (child_up / child_down / snapshot / node_terminate), restarts orphans
  #     it owns when a host is lost, keeps the children nobody can run as
  #     pending, and resolves duplicates — exactly as a C instance does;
  #   * keeps the cluster's child table from the instances' messages
  #     {'$dsup', {child_up | child_down | snapshot | node_terminate, ...}}
  #     in a protected ETS table that the API functions read directly;
  #   * asks connected dsup-nodes to run the same-named instance, and learns
  #     the hosts its BEAM neighbours know (connecting to them);
  #   * hands listener events to its Dispatcher, and runs its helper tasks
  #     under its Task.Supervisor (siblings under InstanceSupervisor).
  #
  # ETS rows (table name: Module.concat(Name, DistributedSupervisor.Cache)):
  #   {{:c, ChildName}, Pid, WireSpec | :undefined}
  #   {{:p, Pid}, ChildName}
  #   {{:pending, ChildName}, WireSpec}
  #   {{:down, Pid}}            a pid of recent_down (seen going down): whereis/2
  #                             skips it in pg, which may still list it
  #   {:ring, %Ring{}}
  #   {:hosts, [node()]}        nodes with a host instance (ring or not)
  #   {:allowed, [node()]}      the :nodes option
  #   {:scope, atom()}
  #   {:host?, boolean()}
  # The node index (an ordered_set, Module.concat(Name, DistributedSupervisor.NodeIndex)):
  #   {{node(Pid), Pid}}   one per {:p, Pid} row (the key alone: ~100 B a child)
  # so that a host leave, a snapshot and the local children read only the
  # rows of one node (a range of the ordered_set), not the whole table.
  #
  # WireSpec: a C child's map (with `args`, the exact init arg), or for a
  # BEAM child %{beam: ChildSpecMap, restart: R, shutdown: S}.
  use GenServer

  require Logger

  alias DistributedSupervisor.{Dispatcher, Handoff, Moves, Place, Ring}

  @hosts :"$dsup_hosts"
  @observers :"$dsup_observers"
  @ready_timeout 5_000
  @ask_timeout 3_000
  @await_timeout 2_000
  @ring_timeout 1_000
  @recent_max 10_000
  # checkpoints (as the C instances: sup_checkpoint.c)
  @ckpt_flush_ms 100
  @ckpt_store_max 256 * 1024 * 1024
  @move_timeout 30_000
  # a graceful stop waits this long at most for its moves' moved_visible
  # (as the C node's shutdown, sup.c)
  @visible_wait 4_000

  @typedoc "A child's spec as the instances exchange it (see above)."
  @type wire() :: map() | :undefined
  @typep from() :: GenServer.from()
  @typep waiter_key() :: {:up, term(), pid()} | :ring

  @enforce_keys [:name, :scope, :table, :index, :tasks]
  defstruct [
    :name,
    :scope,
    :scope_pid,
    :table,
    :index,
    :tasks,
    :dispatcher,
    :dsup,
    :hosts_ref,
    :obs_ref,
    host?: true,
    hosts: %{},
    ring: nil,
    allowed: [],
    monitor_nodes: false,
    cache?: true,
    c_opts: [],
    waiters: %{},
    shadows: %{},
    recent_down: {MapSet.new(), :queue.new()},
    flags: %{},
    stopping_pids: %{},
    stopping?: false,
    pending?: false,
    quiet: true,
    rebalance: false,
    rebalance_moves: 8,
    rb_queue: [],
    rb_inflight: 0,
    moves: %Moves{},
    ckpt_pending: %{},
    ckpt_timer: false,
    ckpt_store: %{},
    ckpt_bytes: 0
  ]

  @typedoc """
  The instance's state. `flags`: local children between two states
  (name => :starting | :restarting); `stopping_pids`: local children being
  stopped (pid => {name, :terminate | :duplicate | :move}); `shadows`: the pid a
  child_up replaced, per name (see drop/3); `recent_down`: pids seen going
  down (bounded; mirrored as {:down, Pid} rows); `pending?`: some pending
  rows may exist (saves a table scan on each host join); `quiet`: no
  node_up events during init.
  `rebalance`/`rebalance_moves`: move children to a joining host, at most
  that many at a time (`rb_queue`: names waiting, `rb_inflight`: moves
  running); `moves`: start_handoff calls in flight, moving marks held and
  moved_visible notices owed (DistributedSupervisor.Moves). Checkpoints
  (DistributedSupervisor.Handoff): `ckpt_pending`, the
  local children's latest, not yet sent (name => {pid, term}), flushed by a
  timer every 100 ms; `ckpt_store`, those received for children elsewhere
  (name => {pid, term, bytes}), `ckpt_bytes` their total.
  """
  @type t() :: %__MODULE__{
          name: atom(),
          scope: atom(),
          scope_pid: pid() | nil,
          table: atom(),
          index: atom(),
          tasks: atom(),
          dispatcher: pid() | nil,
          dsup: pid() | nil,
          hosts_ref: reference() | nil,
          obs_ref: reference() | nil,
          host?: boolean(),
          hosts: %{optional(pid()) => node()},
          ring: Ring.t() | nil,
          allowed: [node()],
          monitor_nodes: boolean() | :cluster,
          cache?: boolean(),
          c_opts: keyword(),
          waiters: %{optional(waiter_key()) => [from()]},
          shadows: %{optional(term()) => pid()},
          recent_down: {MapSet.t(pid()), :queue.queue(pid())},
          flags: %{optional(term()) => :starting | :restarting},
          stopping_pids: %{optional(pid()) => {term(), :terminate | :duplicate | :move}},
          stopping?: boolean(),
          pending?: boolean(),
          quiet: boolean(),
          rebalance: boolean(),
          rebalance_moves: pos_integer(),
          rb_queue: [term()],
          rb_inflight: non_neg_integer(),
          moves: Moves.t(),
          ckpt_pending: %{optional(term()) => {pid(), term()}},
          ckpt_timer: boolean(),
          ckpt_store: %{optional(term()) => {pid(), term(), non_neg_integer()}},
          ckpt_bytes: non_neg_integer()
        }

  # Every lookup (whereis, whois, ...) needs the table name: Module.concat
  # builds a string and looks up the atom each time (about half of whereis's
  # time), so the name is kept in a persistent_term per instance name (written
  # once, never replaced or erased: no global GC).
  @doc false
  @spec table(atom()) :: atom()
  def table(name), do: derived(name, DistributedSupervisor.Cache)

  @doc false
  @spec index(atom()) :: atom()
  def index(name), do: derived(name, DistributedSupervisor.NodeIndex)

  @doc false
  @spec scope(atom()) :: atom()
  def scope(name), do: derived(name, Scope)

  # the names of the instance's siblings (DistributedSupervisor.InstanceSupervisor)
  @doc false
  @spec supervisor(atom()) :: atom()
  def supervisor(name), do: derived(name, Supervisor)

  @doc false
  @spec tasks(atom()) :: atom()
  def tasks(name), do: derived(name, Tasks)

  @doc false
  @spec dispatcher(atom()) :: atom()
  def dispatcher(name), do: derived(name, Dispatcher)

  @doc false
  @spec children_sup(atom()) :: atom()
  def children_sup(name), do: derived(name, Children)

  defp derived(name, suffix) do
    key = {__MODULE__, suffix, name}

    case :persistent_term.get(key, nil) do
      nil ->
        derived = Module.concat(name, suffix)
        :persistent_term.put(key, derived)
        derived

      derived ->
        derived
    end
  end

  # ------------------------------------------------------------------ init

  @impl true
  def init(opts) do
    # terminate/2 runs when the supervisor stops us
    Process.flag(:trap_exit, true)
    name = Keyword.fetch!(opts, :name)
    scope = scope(name)
    host? = Keyword.get(opts, :host, true)
    allowed = Keyword.get(opts, :nodes, [])

    table = :ets.new(table(name), [:named_table, :protected, :set, read_concurrency: true])

    :ets.insert(table, [
      {:ring, Ring.new()},
      {:hosts, []},
      {:scope, scope},
      {:allowed, allowed},
      {:host?, host?}
    ])

    index = :ets.new(index(name), [:named_table, :protected, :ordered_set])

    :ok = :net_kernel.monitor_nodes(true, node_type: :all)
    {ref, host_pids} = :pg.monitor(scope, @hosts)
    {obs_ref, _} = :pg.monitor(scope, @observers)

    if DistributedSupervisor.CrashReports.enabled?(opts),
      do: :ok = :pg.join(scope, DistributedSupervisor.CrashReports.group(), self())

    # the siblings started before us (DistributedSupervisor.InstanceSupervisor)
    state = %__MODULE__{
      name: name,
      scope: scope,
      scope_pid: Process.whereis(scope),
      table: table,
      index: index,
      tasks: tasks(name),
      dispatcher: Process.whereis(dispatcher(name)),
      host?: host?,
      dsup: if(host?, do: Process.whereis(children_sup(name))),
      hosts_ref: ref,
      obs_ref: obs_ref,
      ring: Ring.new(),
      allowed: allowed,
      monitor_nodes: Keyword.get(opts, :monitor_nodes, false),
      cache?: Keyword.get(opts, :cache_children?, true),
      c_opts: c_opts(opts),
      rebalance: Keyword.get(opts, :rebalance, false),
      rebalance_moves: Keyword.get(opts, :rebalance_moves, 8)
    }

    # a child finds its instance from its parent (handoff_state/0, checkpoint/1)
    if host?, do: :persistent_term.put({__MODULE__, :instance_of, children_sup(name)}, name)

    state = hosts_joined(state, host_pids)

    # capabilities first, then the host: no node ever sees a host without them
    state =
      if host? do
        :ok = :pg.join(scope, Place.beam_group(), self())
        :ok = :pg.join(scope, @hosts, self())
        # on the ring at once (pg's own notice follows, and changes nothing)
        hosts_joined(state, [self()])
      else
        :ok = :pg.join(scope, @observers, self())
        state
      end

    # pg discovers visible nodes itself; hidden ones (dsup-nodes are hidden
    # by default) learn of a new scope only when told, or on their own
    # 1-second rediscovery: tell them now.
    Enum.each(Node.list(:hidden), &discover(state, &1))
    # `nodes:` connects the listed nodes, as upstream does
    for n <- allowed, n != node(), do: Node.connect(n)
    learn_hosts(state, Node.list(:visible))
    expected = ask_hosts(state, candidates(state, Node.list(:connected)))
    state = wait_hosts(state, expected, now() + @ready_timeout)
    {:ok, %{state | quiet: false}}
  end

  defp c_opts(opts) do
    Keyword.take(opts, [
      :name,
      :cache_children?,
      :nodes,
      :monitor_nodes,
      :max_restarts,
      :max_seconds,
      :quorum,
      :rebalance,
      :rebalance_moves,
      :replicas
    ])
  end

  defp candidates(%{allowed: []}, nodes), do: nodes
  defp candidates(%{allowed: allowed}, nodes), do: Enum.filter(nodes, &(&1 in allowed))

  defp discover(%{scope: scope, scope_pid: scope_pid}, node) do
    send({scope, node}, {:discover, scope_pid})
  end

  # Fast discovery: a BEAM neighbour that runs the instance knows the hosts
  # (also the hidden dsup-nodes this node has no connection to yet): connect
  # to them; the nodeup that follows discovers their pg scope.
  defp learn_hosts(_state, []), do: :ok

  defp learn_hosts(%{name: name, allowed: allowed} = state, peers) do
    start_task(state, fn ->
      peers
      |> Task.async_stream(
        fn peer ->
          try do
            GenServer.call({name, peer}, :hosts, 2_000)
          catch
            :exit, _ -> []
          end
        end,
        timeout: 3_000,
        on_timeout: :kill_task
      )
      |> Enum.flat_map(fn
        {:ok, nodes} when is_list(nodes) -> nodes
        _ -> []
      end)
      |> Enum.uniq()
      |> Enum.reject(&(&1 == node() or &1 in Node.list(:connected)))
      |> Enum.filter(&(allowed == [] or &1 in allowed))
      |> Enum.each(&Node.connect/1)
    end)
  end

  # Ask each node's dsup_node to run this instance; answers the pids of the
  # instances that run there now. A BEAM node has no dsup_node: noproc.
  defp ask_hosts(_state, []), do: []

  defp ask_hosts(%{name: name, c_opts: c_opts}, nodes) do
    nodes
    |> Task.async_stream(&ask_host(&1, name, c_opts),
      timeout: @ask_timeout + 1_000,
      on_timeout: :kill_task,
      ordered: false
    )
    |> Enum.flat_map(fn
      {:ok, pid} when is_pid(pid) -> [pid]
      _ -> []
    end)
  end

  @doc false
  @spec ask_host(node(), atom(), keyword()) :: pid() | nil
  def ask_host(node, name, c_opts) do
    case :gen_server.call({:dsup_node, node}, {:start_supervisor, name, c_opts}, @ask_timeout) do
      {:ok, pid} ->
        pid

      {:error, {:already_started, pid}} ->
        pid

      {:error, reason} ->
        Logger.warning(
          "DistributedSupervisor #{inspect(name)}: #{node} refused to start the instance: " <>
            inspect(reason)
        )

        nil
    end
  catch
    :exit, _ -> nil
  end

  # Apply '$dsup_hosts' changes until every expected instance pid is a member
  # (or the deadline passes); other messages wait in the mailbox.
  defp wait_hosts(state, expected, deadline) do
    if Enum.all?(expected, &Map.has_key?(state.hosts, &1)) do
      state
    else
      ref = state.hosts_ref

      receive do
        {^ref, :join, @hosts, pids} -> wait_hosts(hosts_joined(state, pids), expected, deadline)
        {^ref, :leave, @hosts, pids} -> wait_hosts(hosts_left(state, pids), expected, deadline)
      after
        max(0, deadline - now()) -> state
      end
    end
  end

  defp now, do: System.monotonic_time(:millisecond)

  # A helper task under the instance's Task.Supervisor (stopped with it).
  defp start_task(state, fun) do
    {:ok, _} = Task.Supervisor.start_child(state.tasks, fun)
    :ok
  end

  # ------------------------------------------------------------------ starting BEAM children

  @doc false
  # The start function of every BEAM child, run by the local DynamicSupervisor
  # (also on its restarts): start it, make sure it is registered under its
  # name (a child that took its via name registered itself), and tell the
  # instance its pid.
  @spec start_registered(atom(), term(), {module(), atom(), [term()]}) ::
          DynamicSupervisor.on_start_child()
  def start_registered(name, cname, {m, f, a}) do
    # (a via name's whereis_name does not wait out the name's moving mark
    # for the copy that is starting: DistributedSupervisor.Registry)
    Process.put(:"$dsup_starting", {name, cname})

    started =
      try do
        apply(m, f, a)
      after
        Process.delete(:"$dsup_starting")
      end

    case started do
      {:ok, pid} = ok -> registered(name, cname, pid, ok)
      {:ok, pid, _info} = ok -> registered(name, cname, pid, ok)
      other -> other
    end
  end

  defp registered(name, cname, pid, ok) do
    scope = scope(name)

    if pid in :pg.get_local_members(scope, cname) do
      notify_started(name, cname, pid)
      ok
    else
      case DistributedSupervisor.Registry.live_other(name, cname, pid) do
        nil ->
          :ok = :pg.join(scope, cname, pid)
          notify_started(name, cname, pid)
          ok

        other ->
          Process.unlink(pid)
          Process.exit(pid, :kill)
          {:error, {:already_started, other}}
      end
    end
  end

  # (the instance may be gone while its DynamicSupervisor stops: no badarg)
  defp notify_started(name, cname, pid) do
    case Process.whereis(name) do
      nil -> :ok
      instance -> send(instance, {:"$dsup_started", cname, pid})
    end
  end

  # WireSpec of a BEAM child -> {:ok, spec for the DynamicSupervisor} | {:error, _}
  defp supervised_spec(state, cname, %{beam: %{start: {m, f, a}} = spec}) do
    if Code.ensure_loaded?(m) do
      {:ok,
       spec
       |> Map.put(:start, {__MODULE__, :start_registered, [state.name, cname, {m, f, a}]})
       |> Map.put_new(:modules, [m])}
    else
      {:error, {:unknown_worker, m}}
    end
  end

  # A C-shaped spec forwarded by a C instance for a type no C host runs:
  # a BEAM module, started as {Module, Args}.
  defp to_beam_wire(_state, cname, %{beam: _} = wire), do: {:ok, cname, wire}

  defp to_beam_wire(state, cname, %{start: {t, _, _}} = wire) do
    args = Map.get(wire, :args, [])
    mod_spec = {t, args}

    with {:ok, beam} <- DistributedSupervisor.beam_wire(state.name, cname, mod_spec) do
      beam =
        beam
        |> put_if(:restart, wire[:restart], :permanent)
        |> put_if(:shutdown, wire[:shutdown], 5000)

      {:ok, cname, beam}
    end
  end

  defp to_beam_wire(_state, _cname, wire), do: {:error, {:incorrect_spec, wire}}

  defp put_if(%{beam: spec} = w, key, v, default) when v != nil and v != default,
    do: %{w | beam: Map.put(spec, key, v)} |> Map.put(key, v)

  defp put_if(w, _key, _v, _default), do: w

  # Start a BEAM child here; `reply_to` is a GenServer from, or nil. The
  # instance starts it itself (as upstream's DynamicSupervisor does, a child's
  # init must not call its own supervisor), tells the others, then answers:
  # the caller's own instance has the child_up before the caller has the reply.
  # `handoff`: {:state, term} when the child arrives with a state (a move, or a
  # failover from a checkpoint); its init reads it with
  # DistributedSupervisor.handoff_state/0,2 while this start runs.
  defp start_local(state, cname, wire, reply_to, handoff \\ :none) do
    with true <- state.host? or {:error, {:nodedown, node()}},
         true <- not state.stopping? or {:error, :shutting_down},
         {:ok, cname, wire} <- to_beam_wire(state, cname, wire),
         {:ok, sup_spec} <- supervised_spec(state, cname, wire),
         :undefined <- running(state, cname) do
      state = %{state | flags: Map.put(state.flags, cname, :starting)}

      case start_supervised(state, cname, sup_spec, handoff) do
        {:ok, pid} ->
          started_reply(state, cname, pid, wire, reply_to)

        {:ok, pid, _} ->
          started_reply(state, cname, pid, wire, reply_to)

        other ->
          start_failed(%{state | flags: Map.delete(state.flags, cname)}, cname, other, reply_to)
      end
    else
      pid when is_pid(pid) ->
        start_failed(state, cname, {:error, {:already_started, pid}}, reply_to)

      {:error, _} = e ->
        start_failed(state, cname, e, reply_to)
    end
  end

  # The DynamicSupervisor starts one child at a time and we wait for it: the
  # rows name this start for as long as it runs (see handoff_state/2).
  defp start_supervised(state, _cname, sup_spec, :none),
    do: DynamicSupervisor.start_child(state.dsup, sup_spec)

  defp start_supervised(state, cname, sup_spec, {:state, term}) do
    :ets.insert(state.table, [{{:handoff, cname}, term}, {:handoff_now, cname}])

    try do
      DynamicSupervisor.start_child(state.dsup, sup_spec)
    after
      :ets.delete(state.table, {:handoff, cname})
      :ets.delete(state.table, :handoff_now)
    end
  end

  defp started_reply(state, cname, pid, wire, reply_to) do
    state = local_started(state, cname, pid, wire)
    if reply_to, do: GenServer.reply(reply_to, {:ok, pid, cname})
    state
  end

  defp start_failed(state, cname, result, reply_to) do
    result =
      case result do
        :ignore -> {:error, :ignore}
        {:error, _} = e -> e
        other -> {:error, other}
      end

    if reply_to,
      do: GenServer.reply(reply_to, result),
      else:
        Logger.warning(
          "DistributedSupervisor #{inspect(state.name)}: cannot start #{inspect(cname)} here: " <>
            inspect(result)
        )

    state
  end

  # The spec of a child, from this node's table.
  defp cached_wire(state, cname) do
    case :ets.lookup(state.table, {:c, cname}) do
      [{_, _, w}] -> w
      [] -> :undefined
    end
  end

  defp running(state, cname) do
    case :pg.get_members(state.scope, cname) do
      [pid | _] -> pid
      [] -> :undefined
    end
  end

  # ------------------------------------------------------------------ calls

  @impl true
  def handle_call({:await_up, cname, pid}, from, state) do
    if present?(state, cname, pid) or recently_down?(state, pid),
      do: {:reply, :ok, state},
      else: {:noreply, add_waiter(state, {:up, cname, pid}, from)}
  end

  # Answers once the ring differs from `ring` (or :timeout, see add_waiter/3).
  def handle_call({:await_ring_change, ring}, from, state) do
    if state.ring != ring,
      do: {:reply, :ok, state},
      else: {:noreply, add_waiter(state, :ring, from, @ring_timeout)}
  end

  # terminate_child/2 had :ok from the pid's host: the child has exited
  # (both kinds of host answer only then). Its child_down is on its way but
  # may come after a late child_up (the start's, when await_up timed out) or
  # a snapshot: taking it as down now keeps those from putting it back, and
  # the table agrees with terminate_child at once, without a wait that could
  # time out. The child_down, when it comes, finds nothing left to do.
  def handle_call({:terminated, pid}, _from, state) do
    state =
      case :ets.lookup(state.table, {:p, pid}) do
        [{_, cname}] -> dsup_event({:child_down, cname, pid, :shutdown}, state)
        [] -> note_down(state, pid)
      end

    {:reply, :ok, state}
  end

  # The instance wire API (README "Wire API"), so that {Name, ElixirNode}
  # answers like a C instance does.
  def handle_call({:start_child_here, cname, wire}, from, state),
    do: {:noreply, start_local(state, cname, wire, from)}

  # A batch: each element as start_child_here, the results in order (the
  # replies of start_local come back to this process under a fresh tag).
  def handle_call({:start_children_here, items}, _from, state) when is_list(items) do
    Process.put(:dsup_batch_ups, [])

    {results, state} =
      Enum.map_reduce(items, state, fn
        {cname, wire}, st ->
          tag = make_ref()
          st = start_local(st, cname, wire, {self(), tag})

          receive do
            {^tag, result} -> {result, st}
          after
            0 -> {{:error, :no_reply}, st}
          end

        other, st ->
          {{:error, {:incorrect_spec, other}}, st}
      end)

    case Process.delete(:dsup_batch_ups) do
      [] -> :ok
      ups -> broadcast_now(state, {:children_up, Enum.reverse(ups)})
    end

    {:reply, results, state}
  end

  def handle_call({:start_children, specs}, from, state) when is_list(specs) do
    name = state.name

    start_task(state, fn ->
      GenServer.reply(from, DistributedSupervisor.start_children(name, specs))
    end)

    {:noreply, state}
  end

  def handle_call({:start_child, spec, node}, from, state) do
    name = state.name
    node = if node in [:undefined, nil], do: nil, else: node

    start_task(state, fn ->
      GenServer.reply(from, DistributedSupervisor.start_child(name, spec, node))
    end)

    {:noreply, state}
  end

  def handle_call({:terminate_child, pid}, from, state) when node(pid) == node() do
    case :ets.lookup(state.table, {:p, pid}) do
      [{_, cname}] when state.host? and not is_map_key(state.stopping_pids, pid) ->
        dsup = state.dsup

        start_task(state, fn ->
          GenServer.reply(
            from,
            case DynamicSupervisor.terminate_child(dsup, pid) do
              :ok -> :ok
              {:error, :not_found} -> {:error, :not_found}
            end
          )
        end)

        {:noreply,
         %{state | stopping_pids: Map.put(state.stopping_pids, pid, {cname, :terminate})}}

      _ ->
        {:reply, {:error, :not_found}, state}
    end
  end

  def handle_call({:terminate_child, pid}, from, state) do
    name = state.name

    start_task(state, fn ->
      GenServer.reply(from, DistributedSupervisor.terminate_child(name, pid))
    end)

    {:noreply, state}
  end

  def handle_call(:children, _from, s), do: {:reply, DistributedSupervisor.children(s.name), s}

  def handle_call(:local_children, _from, s),
    do: {:reply, DistributedSupervisor.local_children(s.name), s}

  def handle_call(:pending_children, _from, s),
    do: {:reply, DistributedSupervisor.pending_children(s.name), s}

  def handle_call({:whereis, c}, _from, s),
    do: {:reply, DistributedSupervisor.whereis(s.name, c), s}

  def handle_call({:whois, pid}, _from, s),
    do: {:reply, DistributedSupervisor.whois(s.name, pid), s}

  def handle_call(:count_children, _from, s),
    do: {:reply, s.name |> DistributedSupervisor.count_children() |> Map.to_list(), s}

  def handle_call(:which_children, _from, s),
    do: {:reply, DistributedSupervisor.which_children(s.name), s}

  def handle_call(:nodes, _from, s), do: {:reply, Ring.nodes(s.ring), s}

  def handle_call(:hosts, _from, s), do: {:reply, s.hosts |> Map.values() |> Enum.uniq(), s}

  def handle_call({:node_for, key}, _from, s),
    do: {:reply, Ring.node_for(s.ring, key) || :undefined, s}

  def handle_call({:node_for, key, type}, _from, s),
    do: {:reply, DistributedSupervisor.node_for(s.name, key, type) || :undefined, s}

  # Moving children (DistributedSupervisor.Handoff, README "Moving children").
  # Answered at once; the mover hears moved_visible after a barrier of ours
  # (every peer has the new copy's join ahead of the mover's leave of the
  # name's moving mark).
  def handle_call({:start_handoff, cname, wire, st}, {mover, _} = from, state) do
    before = local_pid(state, cname)
    state = arrive(state, cname, wire, st, from)

    case local_pid(state, cname) do
      pid when is_pid(pid) and pid != before ->
        {:noreply, %{state | moves: Moves.notify(state.moves, mover, cname)}}

      _ ->
        {:noreply, state}
    end
  end

  def handle_call({:move_child, cname, target}, from, state),
    do: {:noreply, move_child(state, cname, target, from)}

  def handle_call({:checkpoint_of, cname}, _from, state) do
    case state.ckpt_store do
      %{^cname => {_pid, term, _}} -> {:reply, {:ok, term}, state}
      _ -> {:reply, :none, state}
    end
  end

  def handle_call(req, _from, s), do: {:reply, {:error, {:unknown_call, req}}, s}

  # ------------------------------------------------------------------ messages

  @impl true
  def handle_info({:"$dsup", event}, state), do: {:noreply, dsup_event(event, state)}

  def handle_info({:"$dsup_started", cname, pid}, state),
    do: {:noreply, local_started(state, cname, pid, nil)}

  def handle_info({:"$dsup_checkpoint", cname, pid, term}, state),
    do: {:noreply, put_checkpoint(state, cname, pid, term)}

  def handle_info(:ckpt_flush, state), do: {:noreply, flush_checkpoints(state)}

  # moves (DistributedSupervisor.Moves): start_handoff replies, the targets'
  # monitors, our moved_visible barrier, the marks' 5 s
  def handle_info({tag, reply}, state) when is_reference(tag) do
    case call_ended(state, tag, reply) do
      nil -> {:noreply, %{state | moves: elem(Moves.barrier_reply(state.moves, tag), 1)}}
      state -> {:noreply, state}
    end
  end

  def handle_info({:"$dsup_move_timeout", tag}, state),
    do: {:noreply, call_ended(state, tag, {:error, :timeout}) || state}

  def handle_info({:"$dsup_barrier_timeout", tag}, state),
    do: {:noreply, %{state | moves: Moves.barrier_timeout(state.moves, tag)}}

  def handle_info(:"$dsup_mark_sweep", state),
    do: {:noreply, %{state | moves: Moves.sweep(state.moves, state.scope)}}

  def handle_info({:DOWN, _ref, :process, pid, reason}, %{host?: true} = state)
      when node(pid) == node(),
      do: {:noreply, local_down(state, pid, reason)}

  # the instance a start_handoff went to is gone
  def handle_info({:DOWN, mref, :process, pid, _reason}, state) do
    case Moves.call_of_monitor(state.moves, mref) do
      nil -> {:noreply, state}
      tag -> {:noreply, call_ended(state, tag, {:error, {:nodedown, node(pid)}})}
    end
  end

  def handle_info({ref, :join, @hosts, pids}, %{hosts_ref: ref} = state),
    do: {:noreply, hosts_joined(state, pids)}

  def handle_info({ref, :leave, @hosts, pids}, %{hosts_ref: ref} = state),
    do: {:noreply, hosts_left(state, pids)}

  def handle_info({ref, :join, @observers, pids}, %{obs_ref: ref} = state) do
    if state.host?, do: for(p <- pids, p != self(), do: send_snapshot(state, p))
    {:noreply, state}
  end

  def handle_info({ref, :leave, @observers, _pids}, %{obs_ref: ref} = state),
    do: {:noreply, state}

  def handle_info({:nodeup, node, info}, state) do
    if info[:node_type] == :hidden,
      do: discover(state, node),
      else: learn_hosts(state, [node])

    if candidates(state, [node]) != [] do
      %{name: name, c_opts: c_opts} = state
      start_task(state, fn -> ask_host(node, name, c_opts) end)
    end

    if state.monitor_nodes == :cluster, do: emit(state, {:node_up, node, info})
    {:noreply, state}
  end

  def handle_info({:nodedown, node, info}, state) do
    if state.monitor_nodes == :cluster, do: emit(state, {:node_down, node, info})
    {:noreply, state}
  end

  def handle_info({:waiter_timeout, key, from}, state) do
    froms = Map.get(state.waiters, key, [])

    if from in froms do
      GenServer.reply(from, :timeout)
      {:noreply, put_waiters(state, key, List.delete(froms, from))}
    else
      {:noreply, state}
    end
  end

  # (the parent's EXIT is handled by gen_server itself: we stop with its
  # reason; the siblings' crashes are the supervisor's: :one_for_all)
  def handle_info({:EXIT, _pid, _reason}, state), do: {:noreply, state}

  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  def terminate(reason, state) do
    state = %{state | stopping?: true}

    # Tell the others, stop the children hosted here (before leaving the
    # hosts group: a failover elsewhere must not meet the old copies), then
    # leave. C children on dsup-nodes keep running.
    if state.host? do
      statuses = for {_cname, pid, wire} <- local_rows(state), do: status(pid, wire)

      broadcast(state, {:node_terminate, node(), exit_reason(reason), statuses})
      emit(state, {:node_terminate, node(), exit_reason(reason), statuses})

      # each child whose module has handoff_state/1 goes to its new owner
      # with its state; the others are stopped (their failover restarts them
      # once we left), all before the barrier (DistributedSupervisor.Handoff)
      if graceful?(reason), do: hand_over(state)

      # the DynamicSupervisor is a sibling, stopped after us: what remains of
      # its children is stopped here, each as its spec says, without restart
      stop_children(state.dsup)

      _ = :pg.leave(state.scope, @hosts, self())
    end

    # OTP 25's pg crashes on the DOWN of a process that both monitored and
    # joined groups (pg.erl handle_info/2): stop monitoring before we exit
    _ = :pg.demonitor(state.scope, state.hosts_ref)
    _ = :pg.demonitor(state.scope, state.obs_ref)

    # the Dispatcher (stopped after us) still delivers node_terminate; the
    # scope, if ours, is stopped by the supervisor
    stop_tree(reason, state.name)
    :ok
  end

  # GenServer.stop(Name) (reason :normal) stops the whole instance, as it
  # stopped the lone instance process of the hex library. The tree is asked
  # to stop with :normal too, from another process (a child cannot wait for
  # its supervisor), so that the process that started it linked is not
  # killed, as an auto_shutdown's :shutdown exit would kill it. Any other
  # reason is the supervisor's own doing (it stops or restarts the tree).
  defp stop_tree(:normal, name) do
    sup = supervisor(name)

    spawn(fn ->
      try do
        Supervisor.stop(sup, :normal)
      catch
        # gone already (stopped by someone else meanwhile)
        :exit, _ -> :ok
      end
    end)

    :ok
  end

  defp stop_tree(_reason, _name), do: :ok

  defp stop_children(nil), do: :ok

  defp stop_children(dsup) do
    for {_, pid, _, _} <- DynamicSupervisor.which_children(dsup),
        is_pid(pid),
        do: DynamicSupervisor.terminate_child(dsup, pid)

    :ok
  catch
    # it is down already (then so are its children)
    :exit, _ -> :ok
  end

  # (a crashed instance does not hand over: its children fail over from
  # their specs, or their checkpoints, as before)
  defp graceful?(reason), do: reason in [:normal, :shutdown] or match?({:shutdown, _}, reason)

  defp exit_reason(:normal), do: :shutdown
  defp exit_reason(r), do: r

  defp status(pid, wire) do
    st =
      try do
        :sys.get_state(pid, 200)
      catch
        _, _ -> :undefined
      end

    {:status, pid, {:module, Place.type(wire)}, [st]}
  end

  # ------------------------------------------------------------------ local children (hosts)

  # The table's rows of the children that run here: [{name, pid, wire}].
  defp local_rows(state) do
    for {pid, cname} <- node_rows(state, node()),
        [{_, ^pid, wire}] <- [:ets.lookup(state.table, {:c, cname})],
        do: {cname, pid, wire}
  end

  @doc false
  # The pids of the rows whose pid runs on `node`: a range of the
  # ordered_set index (its key's first element is bound), not a table scan.
  @spec node_pids(atom(), node()) :: [pid()]
  def node_pids(index, node), do: :ets.select(index, [{{{node, :"$1"}}, [], [:"$1"]}])

  # [{pid, child name}] of the children on `node`
  defp node_rows(state, node) do
    for pid <- node_pids(state.index, node),
        [{_, cname}] <- [:ets.lookup(state.table, {:p, pid})],
        do: {pid, cname}
  end

  # The {:p, pid} rows and their index rows change together.
  defp put_pid(state, pid, cname) do
    :ets.insert(state.index, {{node(pid), pid}})
    :ets.insert(state.table, {{:p, pid}, cname})
  end

  defp del_pid(state, pid) do
    :ets.delete(state.index, {node(pid), pid})
    :ets.delete(state.table, {:p, pid})
  end

  defp local_pid(state, cname) do
    case :ets.lookup(state.table, {:c, cname}) do
      [{_, pid, _}] when node(pid) == node() -> pid
      _ -> nil
    end
  end

  # A local child runs as `pid` (first start: `wire` given; a restart by the
  # DynamicSupervisor: the spec is in the table).
  defp local_started(state, cname, pid, wire) do
    cond do
      local_pid(state, cname) == pid ->
        state

      is_map_key(state.flags, cname) ->
        wire = wire || cached_wire(state, cname)
        Process.monitor(pid)
        state = %{state | flags: Map.delete(state.flags, cname)}
        broadcast(state, {:child_up, cname, pid, if(state.cache?, do: wire, else: :undefined)})
        state |> child_up(cname, pid, wire) |> forget_shadow(cname)

      true ->
        # not started through this instance: the DynamicSupervisor is ours, so
        # this cannot happen
        Logger.warning(
          "DistributedSupervisor #{inspect(state.name)}: unexpected child #{inspect(cname)}"
        )

        state
    end
  end

  defp local_down(state, pid, reason) do
    case Map.pop(state.stopping_pids, pid) do
      {{cname, _why}, rest} ->
        state = %{state | stopping_pids: rest}
        broadcast(state, {:child_down, cname, pid, reason})
        dsup_event({:child_down, cname, pid, reason}, state)

      {nil, _} ->
        case :ets.lookup(state.table, {:p, pid}) do
          [{_, cname}] ->
            if restarts?(Place.restart(cached_wire(state, cname)), reason) do
              # the DynamicSupervisor restarts it: $dsup_started follows
              state = note_down(state, pid)
              %{state | flags: Map.put(state.flags, cname, :restarting)}
            else
              broadcast(state, {:child_down, cname, pid, reason})
              dsup_event({:child_down, cname, pid, reason}, state)
            end

          [] ->
            state
        end
    end
  end

  defp restarts?(:permanent, _), do: true
  defp restarts?(:transient, r) when r in [:normal, :shutdown], do: false
  defp restarts?(:transient, {:shutdown, _}), do: false
  defp restarts?(:transient, _), do: true
  defp restarts?(_, _), do: false

  # During a batch start (handle_call start_children_here) the child_ups
  # collect in the process dictionary: one children_up for the batch.
  defp broadcast(state, {:child_up, cname, pid, wire} = msg) when is_pid(pid) do
    case Process.get(:dsup_batch_ups) do
      ups when is_list(ups) -> Process.put(:dsup_batch_ups, [{cname, pid, wire} | ups])
      _ -> broadcast_now(state, msg)
    end

    :ok
  end

  defp broadcast(state, msg), do: broadcast_now(state, msg)

  defp broadcast_now(state, msg) do
    me = self()

    for p <- :pg.get_members(state.scope, @hosts) ++ :pg.get_members(state.scope, @observers),
        p != me,
        do: send(p, {:"$dsup", msg})

    :ok
  end

  defp send_snapshot(state, to) do
    children =
      for {cname, pid, wire} <- local_rows(state),
          do: {cname, pid, if(state.cache?, do: wire, else: :undefined)}

    send(to, {:"$dsup", {:snapshot, node(), children}})
  end

  # Among live copies of a name, the copy that a ring of only the nodes
  # holding copies places the name on stays (the C instances' rule,
  # sup_cache.c keeper_node): it depends on the holders alone, not on each
  # node's ring (rings differ for a moment while a partition heals), so every
  # node keeps the same copy; when the name's ring owner holds one, it is that.
  defp resolve_duplicate(state, cname, remote_pid, lp) do
    copies = Enum.uniq([remote_pid, lp | :pg.get_members(state.scope, cname)])

    keeper =
      copies
      |> Enum.map(&node/1)
      |> Enum.uniq()
      |> Enum.sort()
      |> Ring.new()
      |> Ring.node_for(cname)

    keep = Enum.find(copies, &(node(&1) == keeper)) || Enum.min_by(copies, &node/1)

    if keep != lp do
      Logger.info(
        "DistributedSupervisor #{inspect(state.name)}: duplicate child #{inspect(cname)}, " <>
          "stopping the local copy (the one on #{node(keep)} stays)"
      )

      dsup = state.dsup
      start_task(state, fn -> DynamicSupervisor.terminate_child(dsup, lp) end)

      {:lose, keep,
       %{state | stopping_pids: Map.put(state.stopping_pids, lp, {cname, :duplicate})}}
    else
      {:win, state}
    end
  end

  # ------------------------------------------------------------------ the child table

  defp dsup_event({:child_up, cname, pid, spec}, state) do
    state = forget_checkpoint(state, cname, &(&1 != pid))
    lp = local_pid(state, cname)

    case lp do
      lp
      when is_pid(lp) and lp != pid and node(pid) != node() and
             not is_map_key(state.stopping_pids, lp) ->
        case resolve_duplicate(state, cname, pid, lp) do
          {:lose, _keep, st} -> child_up(st, cname, pid, spec)
          {:win, st} -> st
        end

      _ ->
        child_up(state, cname, pid, spec)
    end
  end

  # A batch start's announcement: a child_up each.
  defp dsup_event({:children_up, children}, state) when is_list(children) do
    Enum.reduce(children, state, fn
      {cname, pid, spec}, st when is_pid(pid) -> dsup_event({:child_up, cname, pid, spec}, st)
      _, st -> st
    end)
  end

  defp dsup_event({:child_down, cname, pid, _reason}, state) do
    state = state |> note_down(pid) |> forget_checkpoint(cname, &(&1 == pid))

    case :ets.lookup(state.table, {:c, cname}) do
      [{_, ^pid, _}] ->
        drop(state, cname, pid)

      _ ->
        state = if state.shadows[cname] == pid, do: forget_shadow(state, cname), else: state
        check_waiters(state, pid)
    end
  end

  defp dsup_event({:snapshot, node, children}, state) when is_list(children) do
    state =
      Enum.reduce(children, state, fn
        {cname, pid, spec}, st when is_pid(pid) -> dsup_event({:child_up, cname, pid, spec}, st)
        _, st -> st
      end)

    live = MapSet.new(children, fn t -> elem(t, 1) end)

    state
    |> node_rows(node)
    |> Enum.reject(fn {pid, _} -> MapSet.member?(live, pid) end)
    |> Enum.reduce(state, fn {pid, cname}, st -> drop(st, cname, pid) end)
  end

  defp dsup_event({:node_terminate, node, reason, statuses}, state) do
    emit(state, {:node_terminate, node, reason, statuses})
    state
  end

  defp dsup_event({:start_pending, cname, wire}, state) do
    if Place.kind(wire) == :c,
      do: state,
      else: start_local(state, cname, wire, nil)
  end

  defp dsup_event({:crash_report, report}, state) when is_map(report) do
    DistributedSupervisor.CrashReports.log(report)
    state
  end

  defp dsup_event({:crash_reports_suppressed, instance, node, count}, state) do
    DistributedSupervisor.CrashReports.log_suppressed(instance, node, count)
    state
  end

  defp dsup_event({:handoff, cname, wire, st}, state), do: arrive(state, cname, wire, st, nil)

  defp dsup_event({:moved_visible, cname}, state),
    do: %{state | moves: Moves.visible(state.moves, state.scope, cname)}

  defp dsup_event({:checkpoint, cname, pid, term}, state) when is_pid(pid),
    do: store_checkpoint(state, cname, pid, term)

  defp dsup_event(_other, state), do: state

  # A child_up for a pid already seen going down is stale: ignore it.
  defp child_up(state, cname, pid, spec) do
    if recently_down?(state, pid), do: state, else: do_child_up(state, cname, pid, spec)
  end

  defp do_child_up(state, cname, pid, spec) do
    t = state.table
    :ets.delete(t, {:pending, cname})

    case :ets.lookup(t, {:c, cname}) do
      [{_, ^pid, old_spec}] ->
        if spec != :undefined and spec != old_spec, do: :ets.insert(t, {{:c, cname}, pid, spec})
        state

      old ->
        spec =
          case {spec, old} do
            {:undefined, [{_, _, s}]} -> s
            _ -> spec
          end

        case old do
          [{_, old_pid, _}] ->
            del_pid(state, old_pid)
            :ets.insert(t, {{:c, cname}, pid, spec})
            put_pid(state, pid, cname)
            emit(state, {:process_stop, cname, [old_pid]})
            emit(state, {:process_start, cname, pid})
            # kept in case this child_up was the stale one (see drop/3)
            %{state | shadows: Map.put(state.shadows, cname, old_pid)}
            |> check_waiters(old_pid)
            |> check_waiters(pid)

          [] ->
            :ets.insert(t, {{:c, cname}, pid, spec})
            put_pid(state, pid, cname)
            emit(state, {:process_start, cname, pid})
            check_waiters(state, pid)
        end
    end
  end

  # The entry for `cname` (pid `pid`) is gone. Messages from different nodes
  # are not ordered: a dead node's last child_up can arrive after the child_up
  # of the copy restarted elsewhere, and replace it. So when the copy that the
  # current one replaced still runs (on a host, in the pg group of the name,
  # not seen going down), it becomes the entry again.
  defp drop(state, cname, pid) do
    {shadow, state} = take_shadow(state, cname)
    del_pid(state, pid)
    emit(state, {:process_stop, cname, [pid]})

    if shadow && shadow != pid && live_copy?(state, cname, shadow) do
      [{_, _, spec}] = :ets.lookup(state.table, {:c, cname})
      :ets.insert(state.table, {{:c, cname}, shadow, spec})
      put_pid(state, shadow, cname)
      emit(state, {:process_start, cname, shadow})
      state |> check_waiters(pid) |> check_waiters(shadow)
    else
      :ets.delete(state.table, {:c, cname})
      check_waiters(state, pid)
    end
  end

  defp take_shadow(state, cname) do
    {shadow, shadows} = Map.pop(state.shadows, cname)
    {shadow, %{state | shadows: shadows}}
  end

  defp forget_shadow(state, cname), do: %{state | shadows: Map.delete(state.shadows, cname)}

  defp live_copy?(state, cname, pid) do
    node(pid) in Map.values(state.hosts) and not recently_down?(state, pid) and
      pid in :pg.get_members(state.scope, cname)
  end

  defp present?(state, cname, pid),
    do: :ets.lookup(state.table, {:c, cname}) != [] or :ets.member(state.table, {:p, pid})

  # The set is mirrored in the table as {{:down, Pid}} rows: whereis/2 falls
  # back to pg, which can list a pid for a while after its child_down (pg
  # applies the leave in its own time), and skips the pids seen down.
  defp note_down(%{recent_down: {set, q}} = state, pid) do
    if MapSet.member?(set, pid) do
      state
    else
      :ets.insert(state.table, {{:down, pid}})
      {set, q} = {MapSet.put(set, pid), :queue.in(pid, q)}

      {set, q} =
        if MapSet.size(set) > @recent_max do
          {{:value, old}, q} = :queue.out(q)
          :ets.delete(state.table, {:down, old})
          {MapSet.delete(set, old), q}
        else
          {set, q}
        end

      %{state | recent_down: {set, q}}
    end
  end

  defp recently_down?(%{recent_down: {set, _}}, pid), do: MapSet.member?(set, pid)

  # A host that left may have been cut off, not dead: when its node is back,
  # the children it still runs are announced again and are not stale (a dead
  # child's pid is never announced again).
  defp forget_down_of(%{recent_down: {set, q}} = state, node) do
    {gone, set} = Enum.split_with(set, &(node(&1) == node))
    for pid <- gone, do: :ets.delete(state.table, {:down, pid})
    set = MapSet.new(set)
    %{state | recent_down: {set, :queue.filter(&(node(&1) != node), q)}}
  end

  # ------------------------------------------------------------------ waiters
  # start_child waits (briefly) until this table shows the child it started,
  # so that whereis/children agree with what it returned.

  defp add_waiter(state, key, from, timeout \\ @await_timeout) do
    Process.send_after(self(), {:waiter_timeout, key, from}, timeout)
    put_waiters(state, key, [from | Map.get(state.waiters, key, [])])
  end

  defp put_waiters(state, key, []), do: %{state | waiters: Map.delete(state.waiters, key)}
  defp put_waiters(state, key, list), do: %{state | waiters: Map.put(state.waiters, key, list)}

  defp check_waiters(%{waiters: w} = state, _pid) when map_size(w) == 0, do: state

  defp check_waiters(state, pid) do
    Enum.reduce(state.waiters, state, fn
      {{:up, cname, ^pid} = key, froms}, st ->
        if present?(st, cname, pid) or recently_down?(st, pid),
          do: release(st, key, froms),
          else: st

      _, st ->
        st
    end)
  end

  defp release(state, key, froms) do
    Enum.each(froms, &GenServer.reply(&1, :ok))
    put_waiters(state, key, [])
  end

  # ------------------------------------------------------------------ hosts and the ring

  defp hosts_joined(state, pids) do
    ring_before = Ring.nodes(state.ring)

    state =
      Enum.reduce(pids, state, fn pid, st ->
        node = node(pid)
        st = if node in Map.values(st.hosts), do: st, else: forget_down_of(st, node)
        st = %{st | hosts: Map.put(st.hosts, pid, node)}
        if st.host? and pid != self(), do: send_snapshot(st, pid)

        if allowed?(st, node) and not Ring.member?(st.ring, node) do
          # the ring first: a listener told of node_up reads a ring that has it
          st = put_ring(st, Ring.add_node(st.ring, node))

          if st.monitor_nodes == true and not st.quiet and node != node(),
            do: emit(st, {:node_up, node, []})

          st
        else
          st
        end
      end)
      |> put_hosts()
      |> tap(
        &DistributedSupervisor.Telemetry.hosts_event(&1.name, :join, pids, map_size(&1.hosts))
      )

    state = retry_pending(state)

    if state.rebalance and not state.quiet,
      do: Enum.reduce(Ring.nodes(state.ring) -- ring_before, state, &rebalance_to(&2, &1)),
      else: state
  end

  defp hosts_left(state, pids) do
    state = %{state | hosts: Map.drop(state.hosts, pids)}
    remaining = state.hosts |> Map.values() |> MapSet.new()

    lost =
      pids
      |> Enum.map(&node/1)
      |> Enum.uniq()
      |> Enum.reject(&MapSet.member?(remaining, &1))

    state = %{state | moves: Moves.hosts_left(state.moves, state.scope, lost)}

    state =
      Enum.reduce(lost, state, fn node, st ->
        if Ring.member?(st.ring, node) do
          st = put_ring(st, Ring.remove_node(st.ring, node))
          if st.monitor_nodes == true, do: emit(st, {:node_down, node, []})
          st
        else
          st
        end
      end)
      |> put_hosts()
      |> tap(
        &DistributedSupervisor.Telemetry.hosts_event(&1.name, :leave, pids, map_size(&1.hosts))
      )

    Enum.reduce(lost, state, &failover(&2, &1))
  end

  # The node's children went with its instance: drop them; restart each
  # that this node owns now (by its own name, among the hosts able to run
  # it); keep as pending those that no host can run.
  defp failover(state, node) do
    orphans =
      state
      |> node_rows(node)
      |> Enum.map(fn {pid, cname} ->
        [{_, _, spec}] = :ets.lookup(state.table, {:c, cname})
        {cname, pid, spec}
      end)

    # Not noted as down: a host that was cut off, not dead, announces the
    # same pids again once it is back (its messages cannot arrive out of order).
    state = Enum.reduce(orphans, state, fn {cname, pid, _}, acc -> drop(acc, cname, pid) end)

    Enum.reduce(orphans, state, fn {cname, pid, spec}, acc ->
      cond do
        :ets.member(acc.table, {:c, cname}) -> acc
        Place.restart(spec) == :temporary or Place.kind(spec) == nil -> acc
        true -> place_orphan(acc, cname, pid, spec)
      end
    end)
  end

  # (a BEAM child restarted here starts from the checkpoint its lost copy
  # sent us, if any)
  defp place_orphan(state, cname, lost_pid, spec) do
    case owner(state, spec, cname) do
      nil ->
        add_pending(state, cname, spec)

      me when me == node() ->
        {handoff, state} = take_checkpoint(state, cname, lost_pid)
        start_local(state, cname, spec, nil, handoff)

      _other ->
        state
    end
  end

  defp owner(state, spec, cname) do
    cands =
      Place.candidates(
        state.scope,
        Map.values(state.hosts),
        state.allowed,
        Place.type(spec),
        Place.kind(spec)
      )

    Place.owner(state.ring, cands, cname)
  end

  defp add_pending(state, cname, spec) do
    type = Place.type(spec)

    Logger.warning(
      "DistributedSupervisor #{inspect(state.name)}: no host can run #{inspect(type)} for child " <>
        "#{inspect(cname)}: pending until one joins"
    )

    :ets.insert(state.table, {{:pending, cname}, spec})
    emit(state, {:process_pending, cname, type})
    %{state | pending?: true}
  end

  defp retry_pending(%{pending?: false} = state), do: state

  defp retry_pending(state) do
    case :ets.match(state.table, {{:pending, :"$1"}, :"$2"}) do
      [] ->
        %{state | pending?: false}

      pending ->
        Enum.reduce(pending, state, fn [cname, spec], st ->
          case owner(st, spec, cname) do
            nil ->
              st

            me when me == node() ->
              start_local(st, cname, spec, nil)

            other ->
              case Enum.find(st.hosts, fn {_, n} -> n == other end) do
                {pid, _} -> send(pid, {:"$dsup", {:start_pending, cname, spec}})
                nil -> :ok
              end

              st
          end
        end)
    end
  end

  defp allowed?(%{allowed: []}, _node), do: true
  defp allowed?(%{allowed: allowed}, node), do: node in allowed

  defp put_ring(state, ring) do
    :ets.insert(state.table, {:ring, ring})
    state = %{state | ring: ring}

    case state.waiters do
      %{ring: froms} -> release(state, :ring, froms)
      _ -> state
    end
  end

  defp put_hosts(state) do
    :ets.insert(state.table, {:hosts, state.hosts |> Map.values() |> Enum.uniq()})
    state
  end

  # ------------------------------------------------------------------ moving children
  # (DistributedSupervisor.Handoff; the C instances' sup_handoff.c, sup_move.c,
  # sup_rebalance.c and sup_checkpoint.c)

  # Graceful stop: take the state of each local child that can move with it
  # (its moving mark joined first) and stop every child (each leaves its pg
  # group first), pass the barrier, then call start_handoff on each mover's
  # new owner, as move_child does. We leave '$dsup_hosts' only once every
  # move of ours (these, and move_child or rebalance moves still running)
  # is answered and visible (moved_visible), 4 s at most: every receiver
  # has started its child before its failover for our node runs, and a
  # caller by name never loses a moving mark before the new pid.
  defp hand_over(state) do
    rows =
      for {_, pid, _} = row <- local_rows(state),
          not is_map_key(state.stopping_pids, pid),
          do: row

    moves =
      Enum.flat_map(rows, fn {cname, pid, wire} ->
        mod = Place.type(wire)

        to =
          if Place.kind(wire) == :beam and Place.restart(wire) != :temporary and
               Handoff.has_callback?(mod),
             do: successor_host(state, cname, wire)

        if to, do: :ok = Moves.mark(state.scope, cname)
        st = Handoff.take(state.scope, state.dsup, cname, pid, mod, to != nil)
        if to, do: [{to, cname, {:start_handoff, cname, wire, st}}], else: []
      end)

    if rows != [], do: _ = Handoff.barrier()

    state =
      Enum.reduce(moves, state, fn {to, cname, req}, st ->
        tag = make_ref()
        send(to, {:"$gen_call", {self(), tag}, req})
        %{st | moves: Moves.call_started(st.moves, tag, to, cname, nil, true, @visible_wait)}
      end)

    if moves != [],
      do:
        Logger.info(
          "DistributedSupervisor #{inspect(state.name)}: handing #{length(moves)} " <>
            "children over with their state"
        )

    state = await_moves(state, now() + @visible_wait)
    %{state | moves: Moves.release_all(state.moves, state.scope)}
  end

  # (in terminate/2: the moves' replies, their targets' DOWNs, moved_visible,
  # hosts leaving; other messages stay in the mailbox)
  defp await_moves(state, deadline) do
    if Moves.idle?(state.moves) do
      state
    else
      ref = state.hosts_ref
      calls = state.moves.calls
      mrefs = Map.new(calls, fn {tag, c} -> {c.mref, tag} end)

      receive do
        {tag, reply} when is_reference(tag) and is_map_key(calls, tag) ->
          await_moves(call_ended(state, tag, reply), deadline)

        {:"$dsup_move_timeout", tag} when is_map_key(calls, tag) ->
          await_moves(call_ended(state, tag, {:error, :timeout}), deadline)

        {:DOWN, mref, :process, pid, _} when is_map_key(mrefs, mref) ->
          await_moves(call_ended(state, mrefs[mref], {:error, {:nodedown, node(pid)}}), deadline)

        {:"$dsup", {:moved_visible, cname}} ->
          await_moves(%{state | moves: Moves.visible(state.moves, state.scope, cname)}, deadline)

        {^ref, :leave, @hosts, pids} ->
          nodes = pids |> Enum.map(&node/1) |> Enum.reject(&(&1 == node()))

          await_moves(
            %{state | moves: Moves.hosts_left(state.moves, state.scope, nodes)},
            deadline
          )
      after
        max(0, deadline - now()) ->
          Logger.warning(
            "DistributedSupervisor #{inspect(state.name)}: #{map_size(state.moves.calls)} moves " <>
              "unanswered, #{length(state.moves.marks)} not visible after " <>
              "#{@visible_wait} ms; stopping anyway"
          )

          state
      end
    end
  end

  # The instance that takes `cname` over when this node leaves: the name's
  # owner among the other hosts able to run it (nil: none).
  defp successor_host(state, cname, wire) do
    others = state.hosts |> Map.values() |> Enum.reject(&(&1 == node()))

    cands =
      Place.candidates(state.scope, others, state.allowed, Place.type(wire), Place.kind(wire))

    case Place.owner(state.ring, cands, cname) do
      nil -> nil
      to -> host_pid(state, to)
    end
  end

  defp host_pid(state, node) do
    case Enum.find(state.hosts, fn {_pid, n} -> n == node end) do
      {pid, _} -> pid
      nil -> nil
    end
  end

  # A child handed to us: {handoff, ...} from a stopping instance, or a
  # start_handoff call. Its old copy left the name's pg group before the
  # message was sent, over the same connection: once our scope has applied
  # that leave (a call to it answers after it), the old row goes and the
  # new copy starts with the term.
  # A child we cannot run (a C type handed to us by a C instance) is refused
  # without touching its row: its capable owner's failover restarts it.
  defp arrive(state, cname, wire, st, reply_to) do
    with true <- match?({:state, _}, st) or st == :none or {:error, :bad_handoff},
         {:ok, _, beam} <- to_beam_wire(state, cname, wire),
         {:ok, _} <- supervised_spec(state, cname, beam) do
      state |> clear_moved(cname) |> start_local(cname, wire, reply_to, st)
    else
      {:error, _} = e -> start_failed(state, cname, e, reply_to)
    end
  end

  defp clear_moved(state, cname) do
    try do
      _ = :sys.statistics(state.scope, :get, 5_000)
    catch
      :exit, _ -> :ok
    end

    case :ets.lookup(state.table, {:c, cname}) do
      [{_, pid, _}] when node(pid) != node() ->
        if pid in :pg.get_members(state.scope, cname),
          do: state,
          else: state |> note_down(pid) |> drop(cname, pid)

      _ ->
        state
    end
  end

  # {move_child, Name, Node}: asked of any instance; the one where the child
  # runs moves it (the reply is the target's answer to start_handoff).
  defp move_child(state, cname, target, from) do
    row = :ets.lookup(state.table, {:c, cname})

    cond do
      target not in Map.values(state.hosts) or not can_run?(state, row, target) ->
        GenServer.reply(from, {:error, {:no_host, target}})
        state

      match?([{_, pid, _}] when node(pid) != node(), row) ->
        [{_, pid, _}] = row
        %{name: name} = state

        start_task(state, fn ->
          GenServer.reply(from, forward_move(name, node(pid), cname, target))
        end)

        state

      row == [] or is_map_key(state.stopping_pids, elem(hd(row), 1)) ->
        GenServer.reply(from, {:error, :not_found})
        state

      target == node() ->
        GenServer.reply(from, {:ok, elem(hd(row), 1), cname})
        state

      true ->
        [{_, pid, wire}] = row
        start_move(state, cname, pid, wire, target, from)
    end
  end

  # Can `target` run the child of `row` (when its spec is known here)? A
  # BEAM child moves only to Elixir hosts, a C child only to the dsup-nodes
  # that run its type (checked here too before a C instance is asked: the
  # target would refuse the child after the old copy stopped).
  defp can_run?(state, [{_, _pid, wire}], target) when is_map(wire) do
    target in Place.candidates(
      state.scope,
      Map.values(state.hosts),
      state.allowed,
      Place.type(wire),
      Place.kind(wire)
    )
  end

  defp can_run?(_state, _row, _target), do: true

  defp forward_move(name, node, cname, target) do
    GenServer.call({name, node}, {:move_child, cname, target}, @move_timeout)
  catch
    :exit, _ -> {:error, {:nodedown, node}}
  end

  # One move: the name's moving mark joins now (before the old copy leaves
  # the name's group); a task (a child may take a while to suspend) takes
  # its state and stops it, passes the barrier and sends start_handoff to
  # the target's instance as a call from us, so that the reply and the
  # target's moved_visible come here (Moves). move_done/3 ends it.
  defp start_move(state, cname, pid, wire, target, reply_to) do
    case host_pid(state, target) do
      nil ->
        call = %{cname: cname, node: target, from: reply_to, graceful: false}
        move_done(state, call, {:error, {:nodedown, target}})

      to ->
        %{scope: scope, dsup: dsup} = state
        me = self()
        tag = make_ref()
        :ok = Moves.mark(scope, cname)

        start_task(state, fn ->
          try do
            st = Handoff.take(scope, dsup, cname, pid, Place.type(wire), true)
            _ = Handoff.barrier()
            send(to, {:"$gen_call", {me, tag}, {:start_handoff, cname, wire, st}})
          catch
            kind, reason -> send(me, {tag, {:error, {kind, reason}}})
          end
        end)

        moves = Moves.call_started(state.moves, tag, to, cname, reply_to, false, @move_timeout)

        %{
          state
          | moves: moves,
            stopping_pids: Map.put(state.stopping_pids, pid, {cname, :move})
        }
    end
  end

  # The start_handoff call `tag` ended with `result` (the target's reply, or
  # an error of ours): nil when the tag is not a move's.
  defp call_ended(state, tag, result) do
    case Moves.call_ended(state.moves, tag) do
      {nil, _} -> nil
      {call, moves} -> move_done(%{state | moves: moves}, call, result)
    end
  end

  # A move ended: the caller of move_child gets the result (a rebalance
  # counts it); the mark stays until moved_visible when the new copy runs,
  # else it goes now (no new copy: callers give up).
  defp move_done(state, %{cname: cname, node: target} = call, result) do
    ok? = match?({:ok, _, _}, result)

    if not ok?,
      do:
        Logger.warning(
          "DistributedSupervisor #{inspect(state.name)}: #{inspect(cname)} did not start on " <>
            "#{target} after its move: #{inspect(result)}"
        )

    state =
      cond do
        call.from != nil ->
          GenServer.reply(call.from, result)
          state

        call.graceful ->
          state

        true ->
          pump_rebalance(%{state | rb_inflight: max(0, state.rb_inflight - 1)})
      end

    if ok? do
      %{state | moves: Moves.hold(state.moves, cname, target)}
    else
      _ = Moves.unmark(state.scope, cname)
      state
    end
  end

  # rebalance: true — `node` joined the ring: the local children whose owner
  # it now is move there, at most rebalance_moves at a time.
  defp rebalance_to(state, node) do
    if state.host? and not state.stopping? and node != node() do
      names =
        for {cname, pid, wire} <- local_rows(state),
            Place.kind(wire) == :beam,
            not is_map_key(state.stopping_pids, pid),
            owner(state, wire, cname) == node,
            do: cname

      if names != [],
        do:
          Logger.info(
            "DistributedSupervisor #{inspect(state.name)}: #{node} joined: moving it " <>
              "#{length(names)} children (#{state.rebalance_moves} at a time)"
          )

      pump_rebalance(%{state | rb_queue: state.rb_queue ++ names})
    else
      state
    end
  end

  # (the owner is looked up again when a move starts: it may have changed)
  defp pump_rebalance(
         %{rb_queue: [cname | rest], stopping?: false, rb_inflight: n, rebalance_moves: max} =
           state
       )
       when n < max do
    state = %{state | rb_queue: rest}

    with [{_, pid, wire}] when node(pid) == node() <- :ets.lookup(state.table, {:c, cname}),
         false <- is_map_key(state.stopping_pids, pid),
         to when to not in [nil, node()] <- owner(state, wire, cname) do
      %{state | rb_inflight: state.rb_inflight + 1}
      |> start_move(cname, pid, wire, to, nil)
      |> pump_rebalance()
    else
      _ -> pump_rebalance(state)
    end
  end

  defp pump_rebalance(state), do: state

  # checkpoints: the local child's latest term, sent every @ckpt_flush_ms at most
  defp put_checkpoint(state, cname, pid, term) do
    if local_pid(state, cname) == pid and not state.stopping? do
      state = %{state | ckpt_pending: Map.put(state.ckpt_pending, cname, {pid, term})}

      if state.ckpt_timer do
        state
      else
        Process.send_after(self(), :ckpt_flush, @ckpt_flush_ms)
        %{state | ckpt_timer: true}
      end
    else
      state
    end
  end

  defp flush_checkpoints(state) do
    for {cname, {pid, term}} <- state.ckpt_pending,
        local_pid(state, cname) == pid,
        to = successor_host(state, cname, cached_wire(state, cname)),
        to != nil,
        do: send(to, {:"$dsup", {:checkpoint, cname, pid, term}})

    %{state | ckpt_pending: %{}, ckpt_timer: false}
  end

  defp store_checkpoint(state, cname, pid, term) do
    size = :erlang.external_size(term)
    {old, store} = forget_size(state.ckpt_store, cname)

    cond do
      size > Handoff.checkpoint_max() ->
        state

      state.ckpt_bytes - old + size > @ckpt_store_max ->
        full_warning(state)
        state

      true ->
        %{
          state
          | ckpt_store: Map.put(store, cname, {pid, term, size}),
            ckpt_bytes: state.ckpt_bytes - old + size
        }
    end
  end

  defp forget_size(store, cname) do
    case Map.pop(store, cname) do
      {{_, _, size}, rest} -> {size, rest}
      {nil, rest} -> {0, rest}
    end
  end

  # (at most one line a minute)
  defp full_warning(state) do
    now = now()

    if now - Process.get(:dsup_ckpt_full_logged, -60_000) >= 60_000 do
      Process.put(:dsup_ckpt_full_logged, now)

      Logger.warning(
        "DistributedSupervisor #{inspect(state.name)}: checkpoint store full " <>
          "(#{div(@ckpt_store_max, 1024 * 1024)} MiB); refusing new checkpoints"
      )
    end
  end

  # The checkpoint of `cname` if the lost copy `pid` sent it: {{:state, term} | :none, state}
  defp take_checkpoint(state, cname, pid) do
    case state.ckpt_store do
      %{^cname => {^pid, term, _}} ->
        {{:state, term}, forget_checkpoint(state, cname, fn _ -> true end)}

      _ ->
        {:none, forget_checkpoint(state, cname, fn _ -> true end)}
    end
  end

  # Drops the checkpoint of `cname` when `drop?.(its pid)`.
  defp forget_checkpoint(%{ckpt_store: store} = state, _cname, _drop?) when map_size(store) == 0,
    do: state

  defp forget_checkpoint(state, cname, drop?) do
    case state.ckpt_store do
      %{^cname => {pid, _, size}} ->
        if drop?.(pid),
          do: %{
            state
            | ckpt_store: Map.delete(state.ckpt_store, cname),
              ckpt_bytes: state.ckpt_bytes - size
          },
          else: state

      _ ->
        state
    end
  end

  # ------------------------------------------------------------------ listeners

  defp emit(state, event) do
    DistributedSupervisor.Telemetry.listener_event(state.name, event)
    Dispatcher.dispatch(state.dispatcher, event)
  end
end
