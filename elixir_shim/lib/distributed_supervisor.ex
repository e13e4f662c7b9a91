defmodule DistributedSupervisor do
  @moduledoc """
  DistributedSupervisor is a specialized dynamic supervisor designed to work transparently
  in distributed Erlang/Elixir environments — here with the API of the hex library
  `distributed_supervisor` 0.5, in clusters that mix Elixir nodes, whose children are
  GenServer modules, and `dsup-node`s (Erlang C-nodes), whose children are **C workers**
  that every BEAM process sees as GenServers. Children of both kinds share one name
  space and one API.

  ## Architecture

    * Every node that runs the instance `Name` takes part in the pg scope
      `Module.concat(Name, Scope)`. A *host* can start children: its instance pid is a
      member of `:"$dsup_hosts"`; the nodes of those members form the consistent-hash
      ring (libring's `HashRing`, see `DistributedSupervisor.Ring`).
    * `start_link/1` on an Elixir node starts a host (`host: false` makes it an
      observer, which hosts nothing). An Elixir host runs its children under a local
      `DynamicSupervisor`; each child gets `name: {:via, DistributedSupervisor.Registry,
      {Name, id}}` in its start options and registers itself (a pg group per child
      name), as with the upstream library.
    * A dsup-node runs a C instance of the supervisor (started with `--supervisor Name`,
      or on request of an Elixir instance, which asks every connected dsup-node — only
      those in `:nodes` when it is given — at start and whenever one connects).
    * Placement by capability: a dsup-node advertises the C worker types it registered
      (built-ins and plugins), an Elixir host that it runs BEAM modules. A child goes to
      the ring owner of its name among the hosts able to run its type (a C type some
      dsup-node registered; else a BEAM module, for the Elixir hosts). In a cluster
      whose hosts all run the same types that is plain libring over all hosts.
    * Every instance keeps a copy of the cluster's child table, streamed between the
      instances; `whereis/2`, `whois/2`, `children/1`, `nodes/1`, `node_for/2` and
      `mine?/2` read it (an ETS table) without any message or RPC.
    * When a host is lost, each of its children is restarted by the child's new owner
      among the surviving hosts able to run it (unless it is `:temporary`); when none
      can, the child is *pending* (`pending_children/1`) until a capable host joins.
    * Stopping an instance hands the children it hosts on this node to the other
      hosts: with their state when their module implements
      `DistributedSupervisor.Handoff`, else by restart (the others fail them over).
      C children on dsup-nodes keep running. `move_child/3` moves one on request, and
      `rebalance: true` moves to a joining host the children it now owns.

  ## Child specifications

    * `Module` or `{Module, arg}` — for a BEAM module, `Module.child_spec(arg)` with the
      child's via name put into `arg` as `name:` (when `arg` is a keyword list; the
      child is `name:`'s value, else a fresh reference); for a C worker type, the
      keyword list's `name:`, `restart:` and `shutdown:` are taken out and the rest are
      the worker's init args (`{:counter, name: :c1, value: 5}`), any other term is the
      init arg as is;
    * a child-spec map `%{id: _, start: {Module, fun, args}, restart: _, shutdown: _}`,
      where `args` is `[keyword]` or, as in `start: {Module, :start_link, name: X}`, a
      keyword list read as the options.

  The built-in C worker types are `:echo`, `:counter` and `:kv`; plugins add more,
  possibly under Elixir aliases.

  ## Options

  `:name` (required atom), `:cache_children?` (`true`), `:nodes` (`[]`: every node that
  runs the supervisor; the listed nodes are connected), `:monitor_nodes` (`false` |
  `true` | `:cluster`), `:listeners` (a module or a list of modules implementing
  `DistributedSupervisor.Listener`). Extensions: `:host` (`true`: this node runs
  children; `false`: an observer), `:max_restarts` (3) and `:max_seconds` (5), the
  restart intensity of the local children's supervisor and of the C instances this
  instance starts; `:quorum` (`false`: both sides of a partition stay available; a
  positive integer N, the configured number of hosts, or `true`, N being the length of
  `:nodes`: a side holding fewer than N div 2 + 1 hosts stops its children and refuses
  starts with `{:error, :no_quorum}`; enforced by the C instances, README "Partitions
  and failures"); `:rebalance` (`false`: when a host joins, move to it the local
  children whose ring owner it now is, each with its state, see
  `DistributedSupervisor.Handoff`) and `:rebalance_moves` (8, moves in flight per
  instance); both are passed to the C instances this instance starts.

  ## Differences from upstream

  The README's "Deliberate differences" lists them all.
  """

  alias DistributedSupervisor.{Instance, InstanceSupervisor, Moving, Place, Ring, ValidationError}
  require Logger

  @typedoc """
  The id of the child process within the instance of the distributed supervisor.
  Might be whatever. If not passed explicitly to the `DistributedSupervisor.start_child/2`,
  the reference will be created automatically and returned as a third element
  of the `{:ok, pid, child_name}` success tuple.
  """
  @type id() :: term()

  @typedoc """
  The name of the instance of this distributed supervisor.
  Unlike `t:GenServer.name/0`, it must be an atom.
  """
  @type name() :: atom()

  @start_timeout 30_000
  @known [
    :name,
    :cache_children?,
    :nodes,
    :monitor_nodes,
    :listeners,
    :max_restarts,
    :max_seconds,
    :host,
    :crash_reports,
    :quorum,
    :rebalance,
    :rebalance_moves,
    :replicas
  ]

  # ------------------------------------------------------------------ start

  @doc """
  Returns a specification to start this module under a supervisor.
  See `Supervisor`. The options are validated here already (as by
  `start_link/1`): a bad one raises `DistributedSupervisor.ValidationError`
  when the spec is built, not when the parent supervisor starts it.

      iex> DistributedSupervisor.child_spec(name: MyApp.DistSup)
      %{id: DistributedSupervisor, start: {DistributedSupervisor, :start_link, [[name: MyApp.DistSup]]}, type: :supervisor}
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(init_arg) do
    _ = validate!(init_arg)
    %{id: __MODULE__, start: {__MODULE__, :start_link, [init_arg]}, type: :supervisor}
  end

  @doc """
  Starts the DistributedSupervisor.

  ## Options to `DistributedSupervisor.start_link/1`

    * `:name` (`t:atom/0`) - Required. The unique ID of this DistributedSupervisor, that will
      be used to address it, similar to `t:DynamicSupervisor.name/0`
    * `:cache_children?` (`t:boolean/0`) - If true, instances share the children's specs,
      which lets a child be restarted on another node when its node goes down.
      The default value is `true`.
    * `:replicas` (`1..16`) - How many hosts besides a child's own keep its spec on the
      C instances this instance starts (the next ones clockwise on the ring; they take
      the child over when its host dies). This instance itself, like every Elixir
      instance, keeps every spec. The default value is `2`.
    * `:nodes` (list of `t:atom/0`) - The hardcoded list of nodes to spread children across;
      if not passed, all nodes running the supervisor are used. The default value is `[]`.
    * `:monitor_nodes` (`false | true | :cluster`) - `true`: listeners hear of nodes joining
      and leaving the ring; `:cluster`: of every node connecting and disconnecting.
      The ring always follows the nodes that run the supervisor. The default value is `false`.
    * `:listeners` - The implementation(s) of `DistributedSupervisor.Listener` to receive
      notifications. The default value is `[]`.
    * `:crash_reports` (`t:boolean/0`) - Log the C workers' exits (crashes and their
      restarts) in this node's `Logger`, see `DistributedSupervisor.CrashReports`.
      The default value is the application env `:crash_reports`, else `false`.

  Returns `{:ok, pid}`, or `{:error, {:already_started, pid}}` when an instance of that
  name runs on this node. Raises `DistributedSupervisor.ValidationError` for a bad option.

  `pid` is the instance's supervisor (a `Supervisor`: stop the instance with
  `Supervisor.stop/1`); it runs the pg scope, a `Task.Supervisor`, the listeners'
  dispatcher, the local `DynamicSupervisor` of the hosted children and the instance
  process, which is registered as `name` (the address other nodes use).

  ## Examples

      # Start with minimal required configuration (just the name)
      iex> {:ok, pid} = DistributedSupervisor.start_link(name: ExampleSup1)
      iex> is_pid(pid)
      true

      # Start with additional options
      iex> {:ok, pid} = DistributedSupervisor.start_link(
      ...>   name: ExampleSup2,
      ...>   cache_children?: true,
      ...>   monitor_nodes: true,
      ...>   nodes: [node()]
      ...> )
      iex> is_pid(pid)
      true
  """
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts \\ []),
    do: opts |> validate!() |> InstanceSupervisor.start_link() |> started()

  @doc """
  Starts an instance like `start_link/1` but not linked to the caller (as
  `GenServer.start/3`): for starting one from a short-lived process, such as
  an `:erpc` call on another node. Not in the upstream library.
  """
  @spec start(keyword()) :: Supervisor.on_start()
  def start(opts), do: opts |> validate!() |> InstanceSupervisor.start() |> started()

  # `name` taken by some other process: say so as GenServer.start_link would
  defp started(
         {:error, {:shutdown, {:failed_to_start_child, Instance, {:already_started, pid}}}}
       ),
       do: {:error, {:already_started, pid}}

  defp started(other), do: other

  # NimbleOptions-like validation (same messages), with no dependency.
  defp validate!(opts) do
    unless Keyword.keyword?(opts) do
      invalid!(
        message: "expected a keyword list as options, got: #{inspect(opts)}",
        value: opts
      )
    end

    case Keyword.keys(opts) -- @known do
      [] ->
        :ok

      unknown ->
        invalid!(
          message:
            "unknown options #{inspect(Enum.uniq(unknown))}, valid options are: #{inspect(@known)}",
          key: hd(unknown),
          value: Keyword.get(opts, hd(unknown))
        )
    end

    unless Keyword.has_key?(opts, :name) do
      invalid!(
        message:
          "required :name option not found, received options: #{inspect(Keyword.keys(opts))}",
        key: :name
      )
    end

    Enum.each(opts, fn {k, v} -> check_option(k, v) end)

    [
      cache_children?: true,
      nodes: [],
      monitor_nodes: false,
      listeners: []
    ]
    |> Keyword.merge(opts)
    |> Keyword.update!(:listeners, &List.wrap/1)
  end

  defp check_option(:name, v) when is_atom(v) and v not in [nil, true, false], do: :ok
  defp check_option(:name, v), do: bad_value(:name, v, "expected atom")
  defp check_option(:cache_children?, v) when is_boolean(v), do: :ok
  defp check_option(:replicas, v) when is_integer(v) and v in 1..16, do: :ok
  defp check_option(:replicas, v), do: bad_value(:replicas, v, "expected an integer in 1..16")
  defp check_option(:cache_children?, v), do: bad_value(:cache_children?, v, "expected boolean")
  defp check_option(:monitor_nodes, v) when v in [false, true, :cluster], do: :ok

  defp check_option(:monitor_nodes, v),
    do: bad_value(:monitor_nodes, v, "expected one of [false, true, :cluster]")

  defp check_option(:nodes, v) when is_list(v) do
    v
    |> Enum.with_index()
    |> Enum.each(fn
      {n, _} when is_atom(n) and n not in [nil, true, false] ->
        :ok

      {n, i} ->
        invalid!(
          message:
            "invalid list in :nodes option: invalid value for list element at position #{i}: " <>
              "expected atom, got: #{inspect(n)}",
          key: :nodes,
          value: v
        )
    end)
  end

  defp check_option(:nodes, v), do: bad_value(:nodes, v, "expected list")

  defp check_option(:listeners, v) do
    case Enum.reject(List.wrap(v), &(is_atom(&1) and &1 not in [nil, true, false])) do
      [] -> :ok
      _ -> bad_value(:listeners, v, "expected a module or a list of modules")
    end
  end

  defp check_option(:host, v) when is_boolean(v), do: :ok
  defp check_option(:host, v), do: bad_value(:host, v, "expected boolean")
  defp check_option(:crash_reports, v) when is_boolean(v), do: :ok
  defp check_option(:crash_reports, v), do: bad_value(:crash_reports, v, "expected boolean")
  defp check_option(k, v) when k in [:max_restarts] and is_integer(v) and v >= 0, do: :ok
  defp check_option(k, v) when k in [:max_seconds] and is_integer(v) and v > 0, do: :ok

  defp check_option(:max_restarts, v),
    do: bad_value(:max_restarts, v, "expected non negative integer")

  defp check_option(:max_seconds, v), do: bad_value(:max_seconds, v, "expected positive integer")

  defp check_option(:quorum, v) when is_boolean(v) or (is_integer(v) and v > 0), do: :ok

  defp check_option(:quorum, v),
    do: bad_value(:quorum, v, "expected boolean or positive integer")

  defp check_option(:rebalance, v) when is_boolean(v), do: :ok
  defp check_option(:rebalance, v), do: bad_value(:rebalance, v, "expected boolean")
  defp check_option(:rebalance_moves, v) when is_integer(v) and v in 1..10_000, do: :ok

  defp check_option(:rebalance_moves, v),
    do: bad_value(:rebalance_moves, v, "expected integer in 1..10000")

  defp bad_value(key, v, expected) do
    invalid!(
      message: "invalid value for #{inspect(key)} option: #{expected}, got: #{inspect(v)}",
      key: key,
      value: v
    )
  end

  # Upstream validates with NimbleOptions: when the app has it, its very
  # exception is raised; else ours, with the same fields and messages.
  defp invalid!(fields) do
    # Named at run time: NimbleOptions is optional, and a literal alias of a
    # module that may be absent is a compile-time warning on Elixir 1.18.
    nimble = Module.concat(NimbleOptions, "ValidationError")
    mod = if Code.ensure_loaded?(nimble), do: nimble, else: ValidationError
    raise mod.exception(fields)
  end

  # ------------------------------------------------------------------ children

  @doc """
  Dynamically adds a child specification to supervisor and starts that child.

  `spec` is a child specification in one of the forms of "Child specifications" in the
  module doc. The core difference from `DynamicSupervisor` is that the process must be
  named: the name is taken from the `name:` option, or a fresh reference is made and
  returned in the third element of the tuple.

  This function accepts an optional third argument `node`. If it's passed, the process
  will be started on that node (which must run the supervisor); the node will be chosen
  according to the ring otherwise.

  Returns `{:ok, pid, child_name}`, `{:error, {:already_started, pid}}`,
  `{:error, {:unknown_worker, type}}`, `{:error, {:incorrect_spec, spec}}`,
  `{:error, {:nodedown, node}}` or `{:error, :no_nodes}` (no node runs the supervisor).

  ## Examples

      # Start a simple child process with module only (auto-generated name)
      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup3)
      iex> {:ok, pid, child_name} = DistributedSupervisor.start_child(ExampleSup3, :echo)
      iex> is_pid(pid) and is_reference(child_name)
      true

      # Start with tuple format and explicit name
      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup4)
      iex> {:ok, pid, NamedWorker} = DistributedSupervisor.start_child(
      ...>   ExampleSup4,
      ...>   {:counter, name: NamedWorker, value: 41}
      ...> )
      iex> is_pid(pid)
      true
      iex> DistributedSupervisor.call(ExampleSup4, NamedWorker, {:add, 1})
      42
      iex> {:error, {:already_started, ^pid}} =
      ...>   DistributedSupervisor.start_child(ExampleSup4, {:echo, name: NamedWorker})

      # Start with explicit child specification
      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup5)
      iex> child_spec = %{
      ...>   id: :test_child,
      ...>   start: {:echo, :start_link, name: SpecWorker}
      ...> }
      iex> {:ok, pid, SpecWorker} = DistributedSupervisor.start_child(ExampleSup5, child_spec)
      iex> is_pid(pid)
      true

  See: `DynamicSupervisor.start_child/2`
  """
  @spec start_child(name(), Supervisor.child_spec() | {module(), term()} | module(), node() | nil) ::
          {:ok, pid(), id()} | {:error, term()}
  def start_child(name, spec, node \\ nil) do
    with {:ok, type} <- spec_type(spec) do
      scope = Instance.scope(name)
      hosts = hosts(name)
      allowed = allowed(name)

      case Place.member_nodes(scope, Place.type_group(type), hosts, allowed) do
        [] ->
          start_beam_child(name, type, spec, node, hosts, allowed)

        _ ->
          cands = fn ->
            Place.member_nodes(scope, Place.type_group(type), hosts(name), allowed)
          end

          start_c_child(name, spec, node, cands)
      end
    end
  end

  @doc """
  Starts many children in one go: `[{:ok, pid, child_name} | {:error, reason}]`,
  one result per spec, in the order of `specs`.

  Each spec is placed as `start_child/2` places it (its name's owner among the
  hosts able to run its type); the specs are grouped by owner and each owner
  gets ONE request, `{:start_children_here, [{child_name, wire_spec}]}`, sent to
  all owners in parallel, and answers once for its whole group. A duplicate
  (of a running child, or of an earlier spec in the same batch) gives
  `{:error, {:already_started, pid}}`, a bad spec `{:error, {:incorrect_spec, spec}}`,
  a type no host runs `{:error, {:unknown_worker, type}}`, each in its own slot.
  The children of an owner that goes down meanwhile are placed again, under
  the same names, once the ring shows it (as `start_child/3` retries).
  Returns when this node's instance sees every started child.
  """
  @spec start_children(name(), [Supervisor.child_spec() | {module(), term()} | module()]) ::
          [{:ok, pid(), id()} | {:error, term()}]
  def start_children(name, specs) when is_list(specs) do
    ctx = %{
      name: name,
      scope: Instance.scope(name),
      hosts: hosts(name),
      allowed: allowed(name),
      ring: ring(name)
    }

    prepared = specs |> Enum.map(&batch_prepare(ctx, &1)) |> Enum.with_index()
    go = for {{:go, group, cname, wire}, i} <- prepared, do: {i, group, cname, wire}
    started = go |> run_batch(name, ctx.ring, 3) |> Map.new()

    results =
      Enum.map(prepared, fn
        {{:go, _, _, _}, i} -> Map.fetch!(started, i)
        {{:error, _} = e, _i} -> e
      end)

    for {:ok, pid, cname} <- results, do: await_up(name, cname, pid)
    results
  end

  # Place each {index, group, name, wire} on the ring `ring`, one request per
  # owner (all at once): [{index, result}]. The children of an owner that
  # went down meanwhile are placed again, under the same names, once the
  # ring shows it (as start_child does).
  defp run_batch([], _name, _ring, _tries), do: []

  defp run_batch(items, name, ring, tries) do
    {scope, hosts, allowed} = {Instance.scope(name), hosts(name), allowed(name)}

    {placed, unplaced} =
      Enum.reduce(items, {[], []}, fn {i, group, _cname, _wire} = it, {p, u} ->
        case Place.owner(ring, Place.member_nodes(scope, group, hosts, allowed), elem(it, 2)) do
          nil -> {p, [{i, {:error, :no_nodes}} | u]}
          owner -> {[{owner, it} | p], u}
        end
      end)

    results =
      placed
      |> Enum.reverse()
      |> Enum.group_by(fn {owner, _} -> owner end, fn {_, it} -> it end)
      |> Task.async_stream(fn {owner, its} -> start_batch_on(name, owner, its) end,
        timeout: :infinity,
        max_concurrency: 64
      )
      |> Enum.flat_map(fn {:ok, pairs} -> pairs end)

    {down, done} = Enum.split_with(results, &match?({_, {:error, {:nodedown, _}}}, &1))

    if down != [] and tries > 1 do
      await(name, {:await_ring_change, ring})
      again = Map.new(down)
      retry = for {i, _, _, _} = it <- items, is_map_key(again, i), do: it
      unplaced ++ done ++ run_batch(retry, name, ring(name), tries - 1)
    else
      unplaced ++ results
    end
  end

  # {:go, owner, child_name, wire} | {:error, reason}: start_child's placement
  defp batch_prepare(ctx, spec) do
    with {:ok, type} <- spec_type(spec) do
      case Place.member_nodes(ctx.scope, Place.type_group(type), ctx.hosts, ctx.allowed) do
        [] -> batch_prepare_beam(ctx, type, spec)
        _cands -> batch_prepare_c(ctx, spec)
      end
    end
  end

  defp batch_prepare_c(ctx, spec) do
    with {:ok, {type, cname, args, restart, shutdown}} <- parse_spec(spec) do
      cname = if cname == nil, do: make_ref(), else: cname

      wire = %{
        id: cname,
        start: {type, :start_link, [args]},
        args: args,
        restart: restart,
        shutdown: shutdown
      }

      batch_go(ctx, Place.type_group(type), cname, wire)
    end
  end

  defp batch_prepare_beam(ctx, type, spec) do
    with {:ok, cname, wire} <- beam_wire(ctx.name, spec) do
      if Place.member_nodes(ctx.scope, Place.beam_group(), ctx.hosts, ctx.allowed) == [] do
        cond do
          ctx.hosts == [] -> {:error, :no_nodes}
          Code.ensure_loaded?(type) -> {:error, {:no_capable_host, type}}
          true -> {:error, {:unknown_worker, type}}
        end
      else
        batch_go(ctx, Place.beam_group(), cname, wire)
      end
    end
  end

  defp batch_go(ctx, group, cname, wire) do
    case whereis_cached(ctx.name, cname) do
      pid when is_pid(pid) -> {:error, {:already_started, pid}}
      nil -> {:go, group, cname, wire}
    end
  end

  # One request to `owner` for its group: [{index, result}].
  defp start_batch_on(name, owner, items) do
    req =
      {:start_children_here, Enum.map(items, fn {_i, _group, cname, wire} -> {cname, wire} end)}

    results =
      try do
        case GenServer.call({name, owner}, req, @start_timeout) do
          list when is_list(list) and length(list) == length(items) -> list
          other -> List.duplicate(other, length(items))
        end
      catch
        :exit, _ -> List.duplicate({:error, {:nodedown, owner}}, length(items))
      end

    Enum.zip_with(items, results, fn {i, _, _, _}, r -> {i, r} end)
  end

  # A C worker type some host advertises.
  defp start_c_child(name, spec, node, cands) do
    with {:ok, {type, cname, args, restart, shutdown}} <- parse_spec(spec) do
      cname = if cname == nil, do: make_ref(), else: cname

      # `args:` carries the init arg exactly (dsup's wire extension), so no
      # reading of `start` can change it on the way.
      spec_map = %{
        id: cname,
        start: {type, :start_link, [args]},
        args: args,
        restart: restart,
        shutdown: shutdown
      }

      case whereis_cached(name, cname) do
        pid when is_pid(pid) -> {:error, {:already_started, pid}}
        nil -> place(name, cname, spec_map, node, cands, 3)
      end
    end
  end

  # A BEAM module: an Elixir host runs it.
  defp start_beam_child(name, type, spec, node, hosts, allowed) do
    with {:ok, cname, wire} <- beam_wire(name, spec) do
      scope = Instance.scope(name)
      cands = fn -> Place.member_nodes(scope, Place.beam_group(), hosts(name), allowed) end

      cond do
        is_pid(pid = whereis_cached(name, cname)) ->
          {:error, {:already_started, pid}}

        node == nil and cands.() == [] ->
          cond do
            hosts == [] -> {:error, :no_nodes}
            Code.ensure_loaded?(type) -> {:error, {:no_capable_host, type}}
            true -> {:error, {:unknown_worker, type}}
          end

        true ->
          place(name, cname, wire, node, cands, 3)
      end
    end
  end

  defp place(name, cname, wire, nil, cands, tries) do
    ring = ring(name)

    case Place.owner(ring, cands.(), cname) do
      nil ->
        {:error, :no_nodes}

      owner ->
        case start_on(name, owner, cname, wire) do
          {:error, {:nodedown, _}} when tries > 1 ->
            # the owner left meanwhile: place again once the ring shows it
            await(name, {:await_ring_change, ring})
            place(name, cname, wire, nil, cands, tries - 1)

          other ->
            other
        end
    end
  end

  defp place(name, cname, wire, node, _cands, _tries) when is_atom(node) do
    if node in hosts(name),
      do: start_on(name, node, cname, wire),
      else: {:error, {:nodedown, node}}
  end

  defp start_on(name, node, cname, wire) do
    case GenServer.call({name, node}, {:start_child_here, cname, wire}, @start_timeout) do
      {:ok, pid, ^cname} = ok ->
        await_up(name, cname, pid)
        ok

      other ->
        other
    end
  catch
    :exit, {reason, _} when reason in [:noproc, :nodedown] -> {:error, {:nodedown, node}}
    :exit, {{:nodedown, _}, _} -> {:error, {:nodedown, node}}
  end

  # Let the local instance's table catch up with what the host answered:
  # :ok, or :timeout. An instance that is gone (stopping) has no table to
  # catch up: :ok.
  defp await(name, req) do
    GenServer.call(name, req, 5_000)
  catch
    :exit, {:timeout, _} -> :timeout
    :exit, _ -> :ok
  end

  # The host started `pid` and sends its child_up; until this node's
  # instance has it, whereis/children here do not show the child. Nothing
  # later depends on it (a terminate_child of it is right either way), so a
  # child_up slower than the wait is only logged: the child runs, and the
  # table shows it when the child_up comes.
  defp await_up(name, cname, pid) do
    with :timeout <- await(name, {:await_up, cname, pid}) do
      Logger.warning(
        "DistributedSupervisor #{inspect(name)}: #{inspect(cname)} (#{inspect(pid)}) started, " <>
          "but this node's table does not show it yet (its child_up is late)"
      )
    end
  end

  defp spec_type(type) when is_atom(type) and type not in [nil, true, false], do: {:ok, type}
  defp spec_type({type, _}) when is_atom(type) and type not in [nil, true, false], do: {:ok, type}

  defp spec_type(%{start: {type, fun, _}}) when is_atom(type) and is_atom(fun),
    do: {:ok, type}

  defp spec_type(spec), do: {:error, {:incorrect_spec, spec}}

  @doc false
  # The wire spec of a BEAM child: its child spec, shaped as upstream shapes
  # it (the module's child_spec/1 when it has one), with the child's via name
  # injected as `name:` in its start options:
  # {:ok, child_name, %{beam: spec, restart: r, shutdown: s}} | {:error, _}
  @spec beam_wire(name(), term()) :: {:ok, id(), Instance.wire()} | {:error, term()}
  def beam_wire(name, spec), do: beam_wire(name, beam_name(spec), spec)

  @spec beam_wire(name(), id(), term()) :: {:ok, id(), Instance.wire()} | {:error, term()}

  def beam_wire(name, cname, spec) do
    via = via_name(name, cname)

    hex =
      case spec do
        mod when is_atom(mod) ->
          module_spec(mod, name: via)

        {mod, arg} when is_atom(mod) ->
          module_spec(mod, if(keyword?(arg), do: Keyword.put(arg, :name, via), else: arg))

        %{start: {m, f, args}} = map when is_atom(m) and is_atom(f) and is_list(args) ->
          Map.put(map, :start, {m, f, inject(args, via)})
      end

    with {:ok, r} <- restart(Map.get(hex, :restart, :permanent)),
         {:ok, s} <- shutdown(Map.get(hex, :shutdown, 5000)) do
      {:ok, cname, %{beam: hex, restart: r, shutdown: s}}
    else
      :error -> {:error, {:incorrect_spec, spec}}
    end
  rescue
    _ -> {:error, {:incorrect_spec, spec}}
  end

  defp beam_name({_mod, arg}), do: (keyword?(arg) && arg[:name]) || make_ref()

  defp beam_name(%{start: {_, _, args}}) do
    cond do
      args != [] and keyword?(args) -> args[:name] || make_ref()
      match?([kw] when is_list(kw), args) and keyword?(hd(args)) -> hd(args)[:name] || make_ref()
      true -> make_ref()
    end
  end

  defp beam_name(_), do: make_ref()

  defp keyword?(arg), do: is_list(arg) and Keyword.keyword?(arg)

  defp inject([], _via), do: []

  defp inject([kw], via) when is_list(kw) do
    if keyword?(kw), do: [Keyword.put(kw, :name, via)], else: [kw]
  end

  defp inject(args, via) do
    if keyword?(args), do: [Keyword.put(args, :name, via)], else: args
  end

  defp module_spec(mod, arg) do
    if Code.ensure_loaded?(mod) and function_exported?(mod, :child_spec, 1),
      do: Supervisor.child_spec({mod, arg}, []),
      else: %{id: mod, start: {mod, :start_link, [arg]}}
  end

  @doc false
  # {:ok, {type, name | nil, init_args, restart, shutdown}} | {:error, {:incorrect_spec, spec}}
  @spec parse_spec(term()) ::
          {:ok, {atom(), id() | nil, term(), atom(), timeout() | :brutal_kill}}
          | {:error, {:incorrect_spec, term()}}
  def parse_spec(spec) do
    case do_parse_spec(spec) do
      {:ok, _} = ok -> ok
      :error -> {:error, {:incorrect_spec, spec}}
    end
  end

  defp do_parse_spec(type) when is_atom(type), do: {:ok, {type, nil, [], :permanent, 5000}}
  defp do_parse_spec({type, arg}) when is_atom(type), do: from_arg(type, arg, :permanent, 5000)

  defp do_parse_spec(%{start: {type, fun, args}} = map) when is_atom(type) and is_atom(fun) do
    with {:ok, restart} <- restart(Map.get(map, :restart, :permanent)),
         {:ok, shutdown} <- shutdown(Map.get(map, :shutdown, 5000)) do
      args =
        case args do
          [one] -> if Keyword.keyword?(args), do: args, else: one
          _ -> args
        end

      from_arg(type, args, restart, shutdown)
    end
  end

  defp do_parse_spec(_), do: :error

  defp from_arg(type, arg, restart, shutdown) do
    if Keyword.keyword?(arg) do
      Enum.reduce_while(arg, {:ok, {type, nil, [], restart, shutdown}}, fn
        {:name, n}, {:ok, {t, _, a, r, s}} ->
          {:cont, {:ok, {t, n, a, r, s}}}

        {:restart, v}, {:ok, {t, n, a, _, s}} ->
          case restart(v) do
            {:ok, r} -> {:cont, {:ok, {t, n, a, r, s}}}
            :error -> {:halt, :error}
          end

        {:shutdown, v}, {:ok, {t, n, a, r, _}} ->
          case shutdown(v) do
            {:ok, s} -> {:cont, {:ok, {t, n, a, r, s}}}
            :error -> {:halt, :error}
          end

        kv, {:ok, {t, n, a, r, s}} ->
          {:cont, {:ok, {t, n, [kv | a], r, s}}}
      end)
      |> case do
        {:ok, {t, n, a, r, s}} -> {:ok, {t, n, Enum.reverse(a), r, s}}
        :error -> :error
      end
    else
      {:ok, {type, nil, arg, restart, shutdown}}
    end
  end

  defp restart(r) when r in [:permanent, :transient, :temporary], do: {:ok, r}
  defp restart(_), do: :error
  defp shutdown(s) when s in [:brutal_kill, :infinity], do: {:ok, s}
  defp shutdown(s) when is_integer(s) and s >= 0, do: {:ok, s}
  defp shutdown(_), do: :error

  @doc """
  Terminates the given child identified by pid.

  If successful, this function returns `:ok`.
  If there is no process with the given PID, this function returns `{:error, :not_found}`.
  The child is stopped the way its spec says (`shutdown:`) and is not restarted.

  ## Examples

      # Start and then terminate a child process
      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup6)
      iex> {:ok, pid, _} = DistributedSupervisor.start_child(ExampleSup6, :echo)
      iex> DistributedSupervisor.terminate_child(ExampleSup6, pid)
      :ok
      iex> DistributedSupervisor.terminate_child(ExampleSup6, pid)
      {:error, :not_found}

      # Try to terminate a non-existent PID
      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup7)
      iex> DistributedSupervisor.terminate_child(ExampleSup7, nil)
      {:error, :not_found}

  See: `DynamicSupervisor.terminate_child/2`
  """
  @spec terminate_child(name(), pid() | nil) :: :ok | {:error, :not_found | :shutting_down}
  def terminate_child(name, pid) when is_pid(pid) do
    node = node(pid)

    if node in hosts(name) do
      case GenServer.call({name, node}, {:terminate_child, pid}, @start_timeout) do
        :ok ->
          # the child has exited: this node's table says so before we return
          await(name, {:terminated, pid})
          :ok

        {:error, :not_found} ->
          {:error, :not_found}

        {:error, _} = error ->
          error
      end
    else
      {:error, :not_found}
    end
  catch
    :exit, {reason, _} when reason in [:noproc, :nodedown] -> {:error, :not_found}
    :exit, {{:nodedown, _}, _} -> {:error, :not_found}
  end

  def terminate_child(_name, nil), do: {:error, :not_found}

  @doc """
  Returns a map with registered names as keys and `{pid, child_spec}` as values for the
  instance of the registry with a name `name` (the whole cluster's children).

  `child_spec` is `%{id: name, start: {type, :start_link, [args]}, restart: _,
  shutdown: _, type: :worker, modules: [type]}`, or `:undefined` when the hosting
  instance does not share specs (`cache_children?: false`).

  ## Examples

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup8)
      iex> {:ok, _pid, :child1} = DistributedSupervisor.start_child(ExampleSup8, {:echo, name: :child1})
      iex> {:ok, _pid, :child2} = DistributedSupervisor.start_child(ExampleSup8, {:kv, name: :child2})
      iex> children = DistributedSupervisor.children(ExampleSup8)
      iex> is_map(children) and map_size(children) >= 2
      true
      iex> Map.has_key?(children, :child1) and Map.has_key?(children, :child2)
      true
      iex> {_pid, %{start: {:kv, :start_link, [[]]}, restart: :permanent}} = children[:child2]
  """
  @spec children(name()) :: %{optional(term()) => {pid(), Supervisor.child_spec() | :undefined}}
  def children(name) do
    name
    |> table!()
    |> :ets.match({{:c, :"$1"}, :"$2", :"$3"})
    |> Map.new(fn [cname, pid, spec] -> {cname, {pid, shape(spec)}} end)
  end

  # The spec as upstream shows it: a BEAM child's own child spec; a C
  # child's map without the wire-only `args`.
  defp shape(%{beam: spec}), do: spec
  defp shape(%{} = spec), do: Map.delete(spec, :args)
  defp shape(other), do: other

  @doc """
  Returns a list of pids of local children (the children this node hosts).

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup16)
      iex> {:ok, pid, _} = DistributedSupervisor.start_child(ExampleSup16, {Agent, fn -> 0 end}, node())
      iex> DistributedSupervisor.local_children(ExampleSup16) == [pid]
      true
  """
  @spec local_children(name()) :: [pid()]
  def local_children(name) do
    _ = table!(name)
    Instance.node_pids(Instance.index(name), node())
  end

  @doc """
  Returns the children that no host can run at the moment, as
  `%{child_name => child_spec}`: the permanent and transient children of a
  lost node whose type no surviving host can run (a C worker type loaded on no
  other dsup-node, or a BEAM module with no Elixir host left). Each starts as
  soon as a host able to run it joins. Not in the upstream library.

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup21)
      iex> DistributedSupervisor.pending_children(ExampleSup21)
      %{}
  """
  @spec pending_children(name()) :: %{optional(term()) => Supervisor.child_spec()}
  def pending_children(name) do
    name
    |> table!()
    |> :ets.match({{:pending, :"$1"}, :"$2"})
    |> Map.new(fn [cname, spec] -> {cname, shape(spec)} end)
  end

  @doc """
  Counts the cluster's children, like `DynamicSupervisor.count_children/1`
  (`specs` also counts the pending children, see `pending_children/1`).

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup17)
      iex> {:ok, _pid, _} = DistributedSupervisor.start_child(ExampleSup17, :echo)
      iex> DistributedSupervisor.count_children(ExampleSup17)
      %{active: 1, specs: 1, supervisors: 0, workers: 1}
  """
  @spec count_children(name()) :: %{
          specs: non_neg_integer(),
          active: non_neg_integer(),
          supervisors: 0,
          workers: non_neg_integer()
        }
  def count_children(name) do
    t = table!(name)
    n = :ets.select_count(t, [{{{:c, :_}, :_, :_}, [], [true]}])
    p = :ets.select_count(t, [{{{:pending, :_}, :_}, [], [true]}])
    %{specs: n + p, active: n, supervisors: 0, workers: n}
  end

  @doc """
  Lists the cluster's children, like `DynamicSupervisor.which_children/1`:
  `{:undefined, pid, :worker, modules}` each.

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup18)
      iex> {:ok, pid, _} = DistributedSupervisor.start_child(ExampleSup18, {:kv, name: :store})
      iex> DistributedSupervisor.which_children(ExampleSup18)
      [{:undefined, pid, :worker, [:kv]}]
  """
  @spec which_children(name()) :: [{:undefined, pid(), :worker, [atom()]}]
  def which_children(name) do
    name
    |> table!()
    |> :ets.match({{:c, :_}, :"$1", :"$2"})
    |> Enum.map(fn
      [pid, %{beam: spec}] ->
        {:undefined, pid, Map.get(spec, :type, :worker),
         Map.get_lazy(spec, :modules, fn -> [Place.type(%{beam: spec})] end)}

      [pid, %{modules: modules}] ->
        {:undefined, pid, :worker, modules}

      [pid, _] ->
        {:undefined, pid, :worker, [:undefined]}
    end)
  end

  @doc """
  A cluster-wide summary: `%{name:, nodes:, hosts: %{node => %{children:,
  pending:, restarts:}}, children:, pending:, restarts:, unanswered: [node]}`
  (see `DistributedSupervisor.Status`; also emits `[:distributed_supervisor,
  :status]` through `:telemetry`, see `DistributedSupervisor.Telemetry`).
  """
  @spec status(name(), timeout()) :: DistributedSupervisor.Status.t()
  defdelegate status(name, timeout \\ 5_000), to: DistributedSupervisor.Status

  # ------------------------------------------------------------------ lookups

  @doc """
  Returns a `t:pid()` for the instance of the registry with a name `name` by key,
  or `:undefined`.

  ## Examples

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup9)
      iex> {:ok, pid1, :lookup_test} = DistributedSupervisor.start_child(ExampleSup9, {:echo, name: :lookup_test})
      iex> DistributedSupervisor.whereis(ExampleSup9, :lookup_test) == pid1
      true
      iex> DistributedSupervisor.whereis(ExampleSup9, :nonexistent_process)
      :undefined

  See: `DistributedSupervisor.children/1`
  """
  @spec whereis(name(), id()) :: pid() | :undefined
  def whereis(name, child) do
    case whereis_cached(name, child) do
      nil -> whereis_registered(name, child)
      pid -> pid
    end
  end

  # The hot path of call/cast/send by name: one ets lookup. Whether the
  # instance runs is asked (table!/1: a clear error) only when the lookup
  # fails, not before every lookup.
  defp whereis_cached(name, child) do
    lookup_cached(Instance.table(name), child)
  rescue
    ArgumentError -> lookup_cached(table!(name), child)
  end

  defp lookup_cached(table, child) do
    case :ets.lookup(table, {:c, child}) do
      [{_, pid, _}] -> pid
      [] -> nil
    end
  end

  # A process registered through DistributedSupervisor.Registry (pg), such
  # as a child that registered itself a moment before its host's child_up.
  # Not one the instance saw go down ({:down, pid} rows): pg applies a
  # leave in its own time, after the child_down or terminate_child's :ok.
  defp whereis_registered(name, child) do
    case :pg.get_members(Instance.scope(name), child) do
      [] ->
        :undefined

      pids ->
        table = Instance.table(name)
        Enum.find(pids, :undefined, &(not :ets.member(table, {:down, &1})))
    end
  end

  @doc """
  Returns a registered name by a `t:pid()` given, or `nil`.

  ## Examples

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup10)
      iex> {:ok, pid, :whois_test} = DistributedSupervisor.start_child(ExampleSup10, {:echo, name: :whois_test})
      iex> DistributedSupervisor.whois(ExampleSup10, pid)
      :whois_test
      iex> non_existing_pid = :erlang.list_to_pid(~c"<0.999.0>")
      iex> DistributedSupervisor.whois(ExampleSup10, non_existing_pid)
      nil

  See: `DistributedSupervisor.children/1`
  """
  @spec whois(name(), pid()) :: id() | nil
  def whois(name, pid) do
    case :ets.lookup(table!(name), {:p, pid}) do
      [{_, cname}] -> cname
      [] -> nil
    end
  end

  # ------------------------------------------------------------------ messaging

  @doc """
  A syntactic sugar for `GenServer.call/3` allowing to call a dynamically supervised
  GenServer by registry name and key.

  Exits `{:noproc, {GenServer, :call, _}}` at once when there is no such child.
  A child that is moving to another node (README "Moving children") is
  waited for, within `timeout`: a call made while the name has no pid, or
  one the old copy stopped without handling, is delivered to the new copy.

  ## Examples

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup11)
      iex> {:ok, _pid, :call_test} = DistributedSupervisor.start_child(ExampleSup11, {:echo, name: :call_test})
      iex> result = DistributedSupervisor.call(ExampleSup11, :call_test, {:state, 1})
      iex> match?({_, _}, result)
      true
      iex> catch_exit(DistributedSupervisor.call(ExampleSup11, :missing, :state)) |> elem(0)
      :noproc
  """
  @spec call(name(), id(), msg, timeout()) :: result when msg: term(), result: term()
  def call(name, child, msg, timeout \\ 5000) do
    deadline = Moving.deadline(timeout)
    call_pid(name, child, msg, timeout, deadline, resolve(name, child, deadline))
  end

  # A move (README "Moving children") is invisible to the caller: a call
  # made while the name has no pid waits for the new copy, and a call the
  # old copy did not handle (Moving.retry/1 says which) goes to the new one,
  # all within the caller's timeout. Exits name the via name, as
  # GenServer.call(via_name(...)) does.
  defp call_pid(name, child, msg, timeout, deadline, pid) when is_pid(pid) do
    GenServer.call(pid, msg, Moving.remaining(deadline))
  catch
    :exit, {reason, _} ->
      case Moving.retry(reason) do
        {false, _} ->
          call_exit(reason, name, child, msg, timeout)

        {when_, moved?} ->
          case Moving.await(name, child, pid, moved?, deadline, when_ == :if_marked) do
            new when is_pid(new) -> call_pid(name, child, msg, timeout, deadline, new)
            :timeout -> call_exit(:timeout, name, child, msg, timeout)
            :undefined -> call_exit(reason, name, child, msg, timeout)
          end
      end
  end

  defp call_pid(name, child, msg, timeout, _deadline, wait) do
    call_exit(if(wait == :timeout, do: :timeout, else: :noproc), name, child, msg, timeout)
  end

  defp call_exit(reason, name, child, msg, timeout),
    do: exit({reason, {GenServer, :call, [via_name(name, child), msg, timeout]}})

  @doc false
  # The pid of `child`, waiting (until deadline) while it is moving:
  # a pid, :undefined or :timeout.
  def resolve(name, child, deadline) do
    case whereis(name, child) do
      pid when is_pid(pid) ->
        pid

      :undefined ->
        # No pid: a name with no process, or one moving (its mark joins
        # before the old pid leaves and leaves after the new pid joined).
        # Two ETS reads cannot tell which (a whole move may pass between
        # them), so this asks the scope itself, through monitors: a missing
        # name still exits at once, after a few local calls.
        Moving.await(name, child, nil, false, deadline)
    end
  end

  @doc """
  A syntactic sugar for `GenServer.cast/2` allowing to call a dynamically supervised
  GenServer by registry name and key. A cast while the child moves waits for
  its new copy (at most 5 s); one the old copy received but had not handled
  when it stopped is lost, as with any process that stops.

  ## Examples

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup12)
      iex> {:ok, _pid, :cast_test} = DistributedSupervisor.start_child(ExampleSup12, {:counter, name: :cast_test})
      iex> DistributedSupervisor.cast(ExampleSup12, :cast_test, :inc)
      :ok
      iex> DistributedSupervisor.call(ExampleSup12, :cast_test, :get)
      1
  """
  @spec cast(name(), id(), msg) :: :ok when msg: term()
  def cast(name, child, msg), do: GenServer.cast(via_name(name, child), msg)

  @doc """
  A syntactic sugar for `Kernel.send/2` allowing to send a message to
  a dynamically supervised GenServer identified by registry name and key.
  Returns the message if the process exists, `:undefined` otherwise. While
  the child moves it waits for the new copy (at most 5 s), as `cast/3` does.

  ## Examples

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup13)
      iex> {:ok, _pid, :send_test} = DistributedSupervisor.start_child(ExampleSup13, {:counter, name: :send_test})
      iex> DistributedSupervisor.send(ExampleSup13, :send_test, :test_message)
      :test_message
      iex> DistributedSupervisor.send(ExampleSup13, :nonexistent, :test_message)
      :undefined
  """
  @spec send(name(), id(), msg) :: msg | :undefined when msg: term()
  def send(name, child, msg) do
    case resolve(name, child, Moving.deadline(5000)) do
      pid when is_pid(pid) -> Kernel.send(pid, msg)
      _ -> :undefined
    end
  end

  @doc """
  Returns a fully qualified name to use with a standard library functions,
  accepting `{:via, Registry, key}` as a GenServer name.

      iex> DistributedSupervisor.via_name(MyApp.DistSup, :worker)
      {:via, DistributedSupervisor.Registry, {MyApp.DistSup, :worker}}

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup15)
      iex> {:ok, _pid, :store} = DistributedSupervisor.start_child(ExampleSup15, {:kv, name: :store})
      iex> via = DistributedSupervisor.via_name(ExampleSup15, :store)
      iex> GenServer.call(via, {:put, :a, 1})
      :ok
      iex> GenServer.call(via, {:get, :a})
      {:ok, 1}
  """
  @spec via_name(name(), id()) :: {:via, module(), {name(), id()}}
  def via_name(name, id), do: {:via, DistributedSupervisor.Registry, {name, id}}

  # ------------------------------------------------------------------ the ring

  @doc """
  Returns the list of nodes operated by a registered ring: the nodes that run the
  supervisor (restricted to `:nodes` when given), the most recently added first.

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup14)
      iex> node() in DistributedSupervisor.nodes(ExampleSup14)
      true
  """
  @spec nodes(name()) :: [node()]
  def nodes(name), do: name |> ring() |> Ring.nodes()

  @doc """
  Returns the node for the key given according to a HashRing (the same node the
  dsup-nodes compute), or `nil` when no node runs the supervisor.

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup19)
      iex> DistributedSupervisor.node_for(ExampleSup19, :some_key) in DistributedSupervisor.nodes(ExampleSup19)
      true
  """
  @spec node_for(name(), term()) :: node() | nil
  def node_for(name, key), do: name |> ring() |> Ring.node_for(key)

  @doc """
  Returns the node a child of type `type` named `key` is placed on: the ring
  owner of `key` among the hosts able to run `type` (the dsup-nodes that
  registered the C worker type `type`; when none did, the Elixir hosts, which
  run BEAM modules), or `nil` when no host can run it. In a cluster whose
  hosts all run the same types this is `node_for/2`. Not in the upstream
  library.

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup22)
      iex> DistributedSupervisor.node_for(ExampleSup22, :some_key, Agent)
      node()
  """
  @spec node_for(name(), term(), atom()) :: node() | nil
  def node_for(name, key, type) do
    cands = Place.candidates(Instance.scope(name), hosts(name), allowed(name), type, :fresh)
    Place.owner(ring(name), cands, key)
  end

  @doc """
  Returns true if called from a node assigned to this key, false otherwise
  (always false on an observer, `host: false`, which hosts no children).

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup20, nodes: [node()])
      iex> DistributedSupervisor.mine?(ExampleSup20, :some_key)
      true
  """
  @spec mine?(name(), term()) :: boolean()
  def mine?(name, key), do: node_for(name, key) == node()

  # ------------------------------------------------------------------ moving children

  @doc """
  Moves the child `child` to the host `node`, with its state when its module
  implements `DistributedSupervisor.Handoff` (else by restart from its spec):
  see `DistributedSupervisor.Handoff`. Asked of the local instance, which
  forwards to the node where the child runs (a BEAM child moves only to an
  Elixir host; a C child, to a dsup-node that runs its type). Not in the
  upstream library.

  Returns `{:ok, new_pid, child}` (the current pid when the child runs on
  `node` already), `{:error, :not_found}`, `{:error, {:no_host, node}}` (no
  host able to run the child on `node`) or `{:error, {:nodedown, node}}`.
  """
  @spec move_child(name(), id(), node(), timeout()) :: {:ok, pid(), id()} | {:error, term()}
  def move_child(name, child, node, timeout \\ 30_000) do
    case GenServer.call(name, {:move_child, child, node}, timeout) do
      {:ok, pid, ^child} = ok ->
        await_up(name, child, pid)
        ok

      other ->
        other
    end
  end

  @doc """
  Inside a child's `init/1`: `{:ok, term}` when the child starts as a move
  (the term its old copy's `c:DistributedSupervisor.Handoff.handoff_state/1`
  returned) or as the failover of a copy that published a checkpoint (the
  last one, see `checkpoint/1`); `:none` on a fresh start and on a restart
  after a crash. For a child that registers itself with the via name it is
  given (`GenServer.start_link(__MODULE__, opts, name: opts[:name])`); else
  use `handoff_state/2`. Not in the upstream library.
  """
  @spec handoff_state() :: {:ok, term()} | :none
  def handoff_state do
    with name when name != nil <- own_instance(),
         [{_, cname}] <- :ets.lookup(Instance.table(name), :handoff_now),
         true <- self() in :pg.get_local_members(Instance.scope(name), cname) do
      handoff_state(name, cname)
    else
      _ -> :none
    end
  end

  @doc """
  `handoff_state/0` for the child `child` of the instance `name` (for a
  child that does not register with its via name).
  """
  @spec handoff_state(name(), id()) :: {:ok, term()} | :none
  def handoff_state(name, child) do
    case :ets.lookup(table!(name), {:handoff, child}) do
      [{_, term}] -> {:ok, term}
      [] -> :none
    end
  end

  @doc """
  From inside a child hosted on an Elixir node: publishes `term` as the
  child's checkpoint, copied to the Elixir host that would take the child
  over if this node died; there the failover's `init/1` gets it from
  `handoff_state/0`. At most 64 KiB (`:erlang.external_size/1`); sent at
  most every 100 ms per child (a newer term replaces one not yet sent).
  Returns `:ok`, `{:error, :too_big}` or `{:error, :not_found}` (the caller
  is not a child of an instance on this node, or not yet known to it: not
  inside `init/1`). Not in the upstream library.
  """
  @spec checkpoint(term()) :: :ok | {:error, :too_big | :not_found}
  def checkpoint(term) do
    case Process.get(:"$dsup_child") || own_child() do
      {name, cname} -> send_checkpoint(name, cname, self(), term)
      nil -> {:error, :not_found}
    end
  end

  @doc "`checkpoint/1` for the local child `child` of the instance `name`, from any process."
  @spec checkpoint(name(), id(), term()) :: :ok | {:error, :too_big | :not_found}
  def checkpoint(name, child, term) do
    case whereis_cached(name, child) do
      pid when is_pid(pid) and node(pid) == node() -> send_checkpoint(name, child, pid, term)
      _ -> {:error, :not_found}
    end
  end

  defp send_checkpoint(name, cname, pid, term) do
    if :erlang.external_size(term) > DistributedSupervisor.Handoff.checkpoint_max() do
      {:error, :too_big}
    else
      Kernel.send(name, {:"$dsup_checkpoint", cname, pid, term})
      :ok
    end
  rescue
    # the instance is not running (any more)
    ArgumentError -> {:error, :not_found}
  end

  # The instance whose DynamicSupervisor is the calling process's parent.
  defp own_instance do
    case Process.get(:"$ancestors") do
      [parent | _] when is_atom(parent) ->
        :persistent_term.get({Instance, :instance_of, parent}, nil)

      _ ->
        nil
    end
  end

  # {instance, child name} of the calling process, remembered in its dictionary
  defp own_child do
    with name when name != nil <- own_instance(),
         true <- :ets.whereis(Instance.table(name)) != :undefined,
         cname when cname != nil <- whois(name, self()) do
      Process.put(:"$dsup_child", {name, cname})
      {name, cname}
    else
      _ -> nil
    end
  end

  # ------------------------------------------------------------------ internals

  defp table!(name) do
    table = Instance.table(name)

    if :ets.whereis(table) == :undefined do
      raise ArgumentError,
            "no DistributedSupervisor named #{inspect(name)} is running on #{inspect(node())}"
    end

    table
  end

  defp ring(name) do
    [{:ring, ring}] = :ets.lookup(table!(name), :ring)
    ring
  end

  defp hosts(name) do
    [{:hosts, hosts}] = :ets.lookup(table!(name), :hosts)
    hosts
  end

  defp allowed(name) do
    [{:allowed, allowed}] = :ets.lookup(table!(name), :allowed)
    allowed
  end
end
