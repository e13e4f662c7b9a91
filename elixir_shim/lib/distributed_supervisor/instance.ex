defmodule DistributedSupervisor.Instance do
  @moduledoc false
  # The local process behind DistributedSupervisor.start_link/1 on an Elixir
  # node: an *observer* of the dsup-nodes that host the children.
  #
  #   * runs (or reuses) the :pg scope Name.Scope and joins '$dsup_observers';
  #   * follows '$dsup_hosts' with :pg.monitor/2: the nodes of its members
  #     (restricted to the :nodes option) form the ring;
  #   * keeps the cluster's child table from the C instances' messages
  #     {'$dsup', {child_up | child_down | snapshot | node_terminate, ...}}
  #     in a protected ETS table that the API functions read directly;
  #   * asks connected dsup-nodes to run the same-named instance;
  #   * feeds listener modules, one event at a time, in a separate process.
  #
  # ETS rows (table name: Module.concat(Name, DistributedSupervisor.Cache)):
  #   {{:c, ChildName}, Pid, SpecMap | :undefined}
  #   {{:p, Pid}, ChildName}
  #   {:ring, %Ring{}}
  #   {:hosts, [node()]}        nodes with a C instance (ring or not)
  #   {:scope, atom()}
  use GenServer

  require Logger

  alias DistributedSupervisor.Ring

  @hosts :"$dsup_hosts"
  @observers :"$dsup_observers"
  @ready_timeout 5_000
  @ask_timeout 3_000
  @await_timeout 2_000
  @recent_max 10_000

  # Every lookup (whereis, whois, ...) needs the table name: Module.concat
  # builds a string and looks up the atom each time (about half of whereis's
  # time), so the name is kept in a persistent_term per instance name (written
  # once, never replaced or erased: no global GC).
  @doc false
  def table(name) do
    key = {__MODULE__, :table, name}

    case :persistent_term.get(key, nil) do
      nil ->
        table = Module.concat(name, DistributedSupervisor.Cache)
        :persistent_term.put(key, table)
        table

      table ->
        table
    end
  end

  @doc false
  def scope(name), do: Module.concat(name, Scope)

  # ------------------------------------------------------------------ init

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    name = Keyword.fetch!(opts, :name)
    scope = scope(name)
    {scope_pid, owned?} = ensure_scope(scope)

    table = :ets.new(table(name), [:named_table, :protected, :set, read_concurrency: true])

    :ets.insert(table, [{:ring, Ring.new()}, {:hosts, []}, {:scope, scope}])

    :ok = :net_kernel.monitor_nodes(true, node_type: :all)
    {ref, host_pids} = :pg.monitor(scope, @hosts)
    :ok = :pg.join(scope, @observers, self())

    listeners = List.wrap(Keyword.get(opts, :listeners, []))

    state = %{
      name: name,
      scope: scope,
      scope_pid: scope_pid,
      scope_owned?: owned?,
      table: table,
      hosts_ref: ref,
      hosts: %{},
      ring: Ring.new(),
      allowed: Keyword.get(opts, :nodes, []),
      monitor_nodes: Keyword.get(opts, :monitor_nodes, false),
      c_opts: c_opts(opts),
      listeners: listeners,
      runner: if(listeners == [], do: nil, else: start_runner(name, listeners)),
      waiters: %{},
      shadows: %{},
      recent_down: {MapSet.new(), :queue.new()},
      quiet: true
    }

    state = hosts_joined(state, host_pids)
    # pg discovers visible nodes itself; hidden ones (dsup-nodes are hidden
    # by default) learn of a new scope only when told, or on their own
    # 1-second rediscovery: tell them now.
    Enum.each(Node.list(:hidden), &discover(state, &1))
    expected = ask_hosts(state, candidates(state, Node.list(:connected)))
    state = wait_hosts(state, expected, now() + @ready_timeout)
    {:ok, %{state | quiet: false}}
  end

  defp ensure_scope(scope) do
    case :pg.start_link(scope) do
      {:ok, pid} -> {pid, true}
      {:error, {:already_started, pid}} -> {pid, false}
    end
  end

  defp c_opts(opts) do
    Keyword.take(opts, [
      :name,
      :cache_children?,
      :nodes,
      :monitor_nodes,
      :max_restarts,
      :max_seconds,
      :quorum
    ])
  end

  defp candidates(%{allowed: []}, nodes), do: nodes
  defp candidates(%{allowed: allowed}, nodes), do: Enum.filter(nodes, &(&1 in allowed))

  defp discover(%{scope: scope, scope_pid: scope_pid}, node) do
    send({scope, node}, {:discover, scope_pid})
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

  # ------------------------------------------------------------------ calls

  @impl true
  def handle_call({:await_up, cname, pid}, from, state) do
    if present?(state, cname, pid) or recently_down?(state, pid),
      do: {:reply, :ok, state},
      else: {:noreply, add_waiter(state, {:up, cname, pid}, from)}
  end

  def handle_call({:await_down, pid}, from, state) do
    if :ets.member(state.table, {:p, pid}),
      do: {:noreply, add_waiter(state, {:down, pid}, from)},
      else: {:reply, :ok, state}
  end

  # The instance wire API (README "Wire API"), so that {Name, ElixirNode}
  # answers like a C instance does.
  def handle_call({:start_child, spec, node}, from, state) do
    name = state.name
    node = if node in [:undefined, nil], do: nil, else: node

    Task.start(fn ->
      GenServer.reply(from, DistributedSupervisor.start_child(name, spec, node))
    end)

    {:noreply, state}
  end

  def handle_call({:terminate_child, pid}, from, state) do
    name = state.name
    Task.start(fn -> GenServer.reply(from, DistributedSupervisor.terminate_child(name, pid)) end)
    {:noreply, state}
  end

  def handle_call(:children, _from, s), do: {:reply, DistributedSupervisor.children(s.name), s}

  def handle_call(:local_children, _from, s),
    do: {:reply, DistributedSupervisor.local_children(s.name), s}

  def handle_call({:whereis, c}, _from, s),
    do: {:reply, DistributedSupervisor.whereis(s.name, c), s}

  def handle_call({:whois, pid}, _from, s),
    do: {:reply, DistributedSupervisor.whois(s.name, pid), s}

  def handle_call(:count_children, _from, s),
    do: {:reply, s.name |> DistributedSupervisor.count_children() |> Map.to_list(), s}

  def handle_call(:which_children, _from, s),
    do: {:reply, DistributedSupervisor.which_children(s.name), s}

  def handle_call(:nodes, _from, s), do: {:reply, Ring.nodes(s.ring), s}

  def handle_call({:node_for, key}, _from, s),
    do: {:reply, Ring.node_for(s.ring, key) || :undefined, s}

  def handle_call(req, _from, s), do: {:reply, {:error, {:unknown_call, req}}, s}

  # ------------------------------------------------------------------ messages

  @impl true
  def handle_info({:"$dsup", event}, state), do: {:noreply, dsup_event(event, state)}

  def handle_info({ref, :join, @hosts, pids}, %{hosts_ref: ref} = state),
    do: {:noreply, hosts_joined(state, pids)}

  def handle_info({ref, :leave, @hosts, pids}, %{hosts_ref: ref} = state),
    do: {:noreply, hosts_left(state, pids)}

  def handle_info({:nodeup, node, info}, state) do
    if info[:node_type] == :hidden, do: discover(state, node)

    if candidates(state, [node]) != [] do
      %{name: name, c_opts: c_opts} = state
      Task.start(fn -> ask_host(node, name, c_opts) end)
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

  def handle_info({:EXIT, pid, reason}, %{runner: pid} = state) do
    Logger.error(
      "DistributedSupervisor #{inspect(state.name)}: listener runner exited: #{inspect(reason)}"
    )

    {:noreply, %{state | runner: start_runner(state.name, state.listeners)}}
  end

  def handle_info({:EXIT, pid, reason}, %{scope_pid: pid} = state),
    do: {:stop, {:scope_down, reason}, state}

  # (the parent's EXIT is handled by gen_server itself: we stop with its reason)
  def handle_info({:EXIT, _pid, _reason}, state), do: {:noreply, state}

  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, state) do
    if state.runner, do: Process.exit(state.runner, :shutdown)

    # stop the scope we started, and see it gone: a new instance of the same
    # name must not find it dying
    if state.scope_owned? do
      ref = Process.monitor(state.scope_pid)
      Process.unlink(state.scope_pid)
      Process.exit(state.scope_pid, :kill)

      receive do
        {:DOWN, ^ref, _, _, _} -> :ok
      after
        5_000 -> :ok
      end
    end

    :ok
  end

  # ------------------------------------------------------------------ the child table

  defp dsup_event({:child_up, cname, pid, spec}, state), do: child_up(state, cname, pid, spec)

  defp dsup_event({:child_down, cname, pid, _reason}, state) do
    state = note_down(state, pid)

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
        {cname, pid, spec}, st when is_pid(pid) -> child_up(st, cname, pid, spec)
        _, st -> st
      end)

    live = MapSet.new(children, fn t -> elem(t, 1) end)

    state.table
    |> :ets.match({{:p, :"$1"}, :"$2"})
    |> Enum.filter(fn [pid, _] -> node(pid) == node and not MapSet.member?(live, pid) end)
    |> Enum.reduce(state, fn [pid, cname], st -> drop(st, cname, pid) end)
  end

  defp dsup_event({:node_terminate, node, reason, statuses}, state) do
    emit(state, {:node_terminate, node, reason, statuses})
    state
  end

  defp dsup_event(_other, state), do: state

  # A child_up for a pid already seen going down is stale: ignore it.
  defp child_up(state, cname, pid, spec) do
    if recently_down?(state, pid), do: state, else: do_child_up(state, cname, pid, spec)
  end

  defp do_child_up(state, cname, pid, spec) do
    t = state.table

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
            :ets.delete(t, {:p, old_pid})
            :ets.insert(t, [{{:c, cname}, pid, spec}, {{:p, pid}, cname}])
            emit(state, {:process_stop, cname, [old_pid]})
            emit(state, {:process_start, cname, pid})
            # kept in case this child_up was the stale one (see drop/3)
            %{state | shadows: Map.put(state.shadows, cname, old_pid)}
            |> check_waiters(old_pid)
            |> check_waiters(pid)

          [] ->
            :ets.insert(t, [{{:c, cname}, pid, spec}, {{:p, pid}, cname}])
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
    :ets.delete(state.table, {:p, pid})
    emit(state, {:process_stop, cname, [pid]})

    if shadow && shadow != pid && live_copy?(state, cname, shadow) do
      [{_, _, spec}] = :ets.lookup(state.table, {:c, cname})
      :ets.insert(state.table, [{{:c, cname}, shadow, spec}, {{:p, shadow}, cname}])
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

  defp note_down(%{recent_down: {set, q}} = state, pid) do
    {set, q} = {MapSet.put(set, pid), :queue.in(pid, q)}

    {set, q} =
      if MapSet.size(set) > @recent_max do
        {{:value, old}, q} = :queue.out(q)
        {MapSet.delete(set, old), q}
      else
        {set, q}
      end

    %{state | recent_down: {set, q}}
  end

  defp recently_down?(%{recent_down: {set, _}}, pid), do: MapSet.member?(set, pid)

  # A host that left may have been cut off, not dead: when its node is back,
  # the children it still runs are announced again and are not stale (a dead
  # child's pid is never announced again).
  defp forget_down_of(%{recent_down: {set, q}} = state, node) do
    set = for pid <- set, node(pid) != node, into: MapSet.new(), do: pid
    %{state | recent_down: {set, :queue.filter(&(node(&1) != node), q)}}
  end

  # ------------------------------------------------------------------ waiters
  # start_child / terminate_child wait (briefly) until this table reflects
  # their result, so that whereis/children agree with what they returned.

  defp add_waiter(state, key, from) do
    Process.send_after(self(), {:waiter_timeout, key, from}, @await_timeout)
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

      {{:down, ^pid} = key, froms}, st ->
        if :ets.member(st.table, {:p, pid}), do: st, else: release(st, key, froms)

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
    Enum.reduce(pids, state, fn pid, st ->
      node = node(pid)
      st = if node in Map.values(st.hosts), do: st, else: forget_down_of(st, node)
      st = %{st | hosts: Map.put(st.hosts, pid, node)}

      if allowed?(st, node) and not Ring.member?(st.ring, node) do
        if st.monitor_nodes == true and not st.quiet, do: emit(st, {:node_up, node, []})
        put_ring(st, Ring.add_node(st.ring, node))
      else
        st
      end
    end)
    |> put_hosts()
  end

  defp hosts_left(state, pids) do
    state = %{state | hosts: Map.drop(state.hosts, pids)}
    remaining = state.hosts |> Map.values() |> MapSet.new()

    pids
    |> Enum.map(&node/1)
    |> Enum.uniq()
    |> Enum.reject(&MapSet.member?(remaining, &1))
    |> Enum.reduce(state, fn node, st ->
      st =
        if Ring.member?(st.ring, node) do
          if st.monitor_nodes == true, do: emit(st, {:node_down, node, []})
          put_ring(st, Ring.remove_node(st.ring, node))
        else
          st
        end

      # the node's children went with its instance; the surviving
      # instances restart them (child_up follows). They are not noted as
      # down: a host that was cut off, not dead, announces the same pids
      # again once it is back (its messages cannot arrive out of order).
      st.table
      |> :ets.match({{:p, :"$1"}, :"$2"})
      |> Enum.filter(fn [pid, _] -> node(pid) == node end)
      |> Enum.reduce(st, fn [pid, cname], acc -> drop(acc, cname, pid) end)
    end)
    |> put_hosts()
  end

  defp allowed?(%{allowed: []}, _node), do: true
  defp allowed?(%{allowed: allowed}, node), do: node in allowed

  defp put_ring(state, ring) do
    :ets.insert(state.table, {:ring, ring})
    %{state | ring: ring}
  end

  defp put_hosts(state) do
    :ets.insert(state.table, {:hosts, state.hosts |> Map.values() |> Enum.uniq()})
    state
  end

  # ------------------------------------------------------------------ listeners

  defp emit(%{runner: nil}, _event), do: :ok
  defp emit(%{runner: runner}, event), do: send(runner, {:event, event})

  defp start_runner(name, listeners) do
    {loaded, missing} = Enum.split_with(listeners, &Code.ensure_loaded?/1)

    for mod <- missing,
        do:
          Logger.warning(
            "DistributedSupervisor #{inspect(name)}: listener #{inspect(mod)} is not available"
          )

    spawn_link(fn -> runner_loop(name, loaded) end)
  end

  defp runner_loop(name, listeners) do
    receive do
      {:event, event} ->
        {fun, args} = callback(name, event)

        for mod <- listeners, function_exported?(mod, fun, length(args)) do
          try do
            apply(mod, fun, args)
          catch
            kind, reason ->
              Logger.error(
                "DistributedSupervisor #{inspect(name)}: listener #{inspect(mod)}.#{fun} failed: " <>
                  Exception.format(kind, reason, __STACKTRACE__)
              )
          end
        end

        runner_loop(name, listeners)
    end
  end

  defp callback(name, {:process_start, id, pid}), do: {:on_process_start, [name, id, pid]}
  defp callback(name, {:process_stop, id, pids}), do: {:on_process_stop, [name, id, pids]}
  defp callback(name, {:node_up, node, info}), do: {:on_node_up, [name, node, info]}
  defp callback(name, {:node_down, node, info}), do: {:on_node_down, [name, node, info]}

  defp callback(name, {:node_terminate, node, reason, statuses}),
    do: {:on_node_terminate, [name, node, reason, statuses]}
end
