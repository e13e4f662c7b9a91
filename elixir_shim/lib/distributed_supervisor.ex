defmodule DistributedSupervisor do
  @moduledoc """
  DistributedSupervisor is a specialized dynamic supervisor designed to work transparently
  in distributed Erlang/Elixir environments — here with the API of the hex library
  `distributed_supervisor` 0.5, and with children that are **C workers** running on
  `dsup-node`s (Erlang C-nodes), which every BEAM process sees as GenServers.

  ## Architecture

    * Each `dsup-node` runs a C instance of the supervisor (started with
      `--supervisor Name`, or on request of an Elixir instance: see below). Its
      pid is a member of the pg group `:"$dsup_hosts"` in the scope
      `Module.concat(Name, Scope)`; the nodes of those members form the
      consistent-hash ring (libring's `HashRing`, see `DistributedSupervisor.Ring`).
    * `start_link/1` on an Elixir node starts an *observer* instance registered
      as `Name`: it joins `:"$dsup_observers"`, follows the hosts group to build
      the same ring, and keeps a copy of the cluster's child table, streamed to it
      by the C instances. `whereis/2`, `whois/2`, `children/1`, `nodes/1`,
      `node_for/2` and `mine?/2` read that copy (an ETS table) without any
      message or RPC.
    * The instance asks every connected dsup-node (only those in `:nodes` when it
      is given) to run the same-named instance when it has none, at start and
      whenever a node connects; `start_link/1` returns once the dsup-nodes that
      answered are on the ring (or after 5 s).
    * `start_child/3` places a child by its name on the ring and asks the owner's
      C instance to start it; duplicate names are refused cluster-wide.
    * When a dsup-node is lost, each of its children is restarted by the child's
      new ring owner (unless it is `:temporary`), and every instance updates its
      child table.

  An Elixir node hosts no children, so `local_children/1` is `[]` and
  `mine?/2` is `false` there.

  ## Child specifications

  Worker types are atoms naming C worker types (the built-in ones are `:echo`,
  `:counter` and `:kv`; plugins add more, possibly under Elixir aliases):

    * `Type` — no init args, a fresh reference as the child's name;
    * `{Type, keyword}` — `name:`, `restart:` (`:permanent` | `:transient` |
      `:temporary`) and `shutdown:` (`:brutal_kill` | ms | `:infinity`) are taken out,
      the rest are the worker's init args: `{:counter, name: :c1, value: 5}`;
    * `{Type, term}` — any other term is the init arg as is;
    * a child-spec map `%{id: _, start: {Type, _fun, args}, restart: _, shutdown: _}`,
      where `args` is `[arg]` or, as in `start: {Type, :start_link, name: X}`, a
      keyword list read like the `{Type, keyword}` form.

  ## Options

  `:name` (required atom), `:cache_children?` (`true`), `:nodes` (`[]`: every
  node that runs the supervisor), `:monitor_nodes` (`false` | `true` |
  `:cluster`), `:listeners` (a module or a list of modules implementing
  `DistributedSupervisor.Listener`). Extensions: `:max_restarts` (3) and
  `:max_seconds` (5), the restart intensity of the C instances this instance
  starts; `:quorum` (`false`: both sides of a partition stay available; a
  positive integer N, the configured number of hosts, or `true`, N being the
  length of `:nodes`: a side holding fewer than N div 2 + 1 hosts stops its
  children and refuses starts with `{:error, :no_quorum}`; README, "Partitions
  and failures").

  ## Differences from upstream

    * The examples below use the built-in C worker types instead of upstream's
      `DistributedSupervisor.Test.GenServer`; they need a dsup-node connected to
      this node (the test suite starts one, see `DistributedSupervisor.TestNode`).
    * Option errors raise `DistributedSupervisor.ValidationError`, with
      NimbleOptions' messages.
    * Following upstream's documented intent where its code differs: the ring holds
      only nodes that run the supervisor; orphans of a lost node are re-placed each
      by its own key; `:temporary` children are not restarted elsewhere;
      `monitor_nodes: :cluster` works.
    * `node_for/2` is `nil` on an empty ring (libring answers an error tuple);
      `start_child/3` then returns `{:error, :no_nodes}`.
  """

  alias DistributedSupervisor.{Instance, Ring, ValidationError}

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
    :quorum
  ]

  # ------------------------------------------------------------------ start

  @doc """
  Returns a specification to start this module under a supervisor.
  See `Supervisor`.

      iex> DistributedSupervisor.child_spec(name: MyApp.DistSup)
      %{id: DistributedSupervisor, start: {DistributedSupervisor, :start_link, [[name: MyApp.DistSup]]}, type: :supervisor}
  """
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(init_arg) do
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
    * `:nodes` (list of `t:atom/0`) - The hardcoded list of nodes to spread children across;
      if not passed, all nodes running the supervisor are used. The default value is `[]`.
    * `:monitor_nodes` (`false | true | :cluster`) - `true`: listeners hear of nodes joining
      and leaving the ring; `:cluster`: of every node connecting and disconnecting.
      The ring always follows the nodes that run the supervisor. The default value is `false`.
    * `:listeners` - The implementation(s) of `DistributedSupervisor.Listener` to receive
      notifications. The default value is `[]`.

  Returns `{:ok, pid}`, or `{:error, {:already_started, pid}}` when an instance of that
  name runs on this node. Raises `DistributedSupervisor.ValidationError` for a bad option.

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
  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts \\ []) do
    opts = validate!(opts)
    GenServer.start_link(Instance, opts, name: Keyword.fetch!(opts, :name))
  end

  @doc """
  Starts an instance like `start_link/1` but not linked to the caller (as
  `GenServer.start/3`): for starting one from a short-lived process, such as
  an `:erpc` call on another node. Not in the upstream library.
  """
  @spec start(keyword()) :: GenServer.on_start()
  def start(opts) do
    opts = validate!(opts)
    GenServer.start(Instance, opts, name: Keyword.fetch!(opts, :name))
  end

  # NimbleOptions-like validation (same messages), with no dependency.
  defp validate!(opts) do
    unless Keyword.keyword?(opts) do
      raise ValidationError,
        message: "expected a keyword list as options, got: #{inspect(opts)}",
        value: opts
    end

    case Keyword.keys(opts) -- @known do
      [] ->
        :ok

      unknown ->
        raise ValidationError,
          message:
            "unknown options #{inspect(Enum.uniq(unknown))}, valid options are: #{inspect(@known)}",
          key: hd(unknown),
          value: Keyword.get(opts, hd(unknown))
    end

    unless Keyword.has_key?(opts, :name) do
      raise ValidationError,
        message:
          "required :name option not found, received options: #{inspect(Keyword.keys(opts))}",
        key: :name
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
        raise ValidationError,
          message:
            "invalid list in :nodes option: invalid value for list element at position #{i}: " <>
              "expected atom, got: #{inspect(n)}",
          key: :nodes,
          value: v
    end)
  end

  defp check_option(:nodes, v), do: bad_value(:nodes, v, "expected list")

  defp check_option(:listeners, v) do
    case Enum.reject(List.wrap(v), &(is_atom(&1) and &1 not in [nil, true, false])) do
      [] -> :ok
      _ -> bad_value(:listeners, v, "expected a module or a list of modules")
    end
  end

  defp check_option(k, v) when k in [:max_restarts] and is_integer(v) and v >= 0, do: :ok
  defp check_option(k, v) when k in [:max_seconds] and is_integer(v) and v > 0, do: :ok

  defp check_option(:max_restarts, v),
    do: bad_value(:max_restarts, v, "expected non negative integer")

  defp check_option(:max_seconds, v), do: bad_value(:max_seconds, v, "expected positive integer")

  defp check_option(:quorum, v) when is_boolean(v) or (is_integer(v) and v > 0), do: :ok

  defp check_option(:quorum, v),
    do: bad_value(:quorum, v, "expected boolean or positive integer")

  defp bad_value(key, v, expected) do
    raise ValidationError,
      message: "invalid value for #{inspect(key)} option: #{expected}, got: #{inspect(v)}",
      key: key,
      value: v
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
        nil -> place(name, cname, spec_map, node, 3)
      end
    end
  end

  defp place(name, cname, spec_map, nil, tries) do
    ring = ring(name)

    case Ring.node_for(ring, cname) do
      nil ->
        {:error, :no_nodes}

      owner ->
        case start_on(name, owner, cname, spec_map) do
          {:error, {:nodedown, _}} when tries > 1 ->
            # the owner left meanwhile: place again once the ring shows it
            wait_ring_change(name, ring, 1_000)
            place(name, cname, spec_map, nil, tries - 1)

          other ->
            other
        end
    end
  end

  defp place(name, cname, spec_map, node, _tries) when is_atom(node) do
    if node in hosts(name),
      do: start_on(name, node, cname, spec_map),
      else: {:error, {:nodedown, node}}
  end

  defp start_on(name, node, cname, spec_map) do
    case GenServer.call({name, node}, {:start_child_here, cname, spec_map}, @start_timeout) do
      {:ok, pid, ^cname} = ok ->
        await(name, {:await_up, cname, pid})
        ok

      other ->
        other
    end
  catch
    :exit, {reason, _} when reason in [:noproc, :nodedown] -> {:error, {:nodedown, node}}
    :exit, {{:nodedown, _}, _} -> {:error, {:nodedown, node}}
  end

  defp wait_ring_change(name, ring, timeout) do
    deadline = System.monotonic_time(:millisecond) + timeout
    wait_ring_change_until(name, ring, deadline)
  end

  defp wait_ring_change_until(name, ring, deadline) do
    if ring(name) == ring and System.monotonic_time(:millisecond) < deadline do
      Process.sleep(10)
      wait_ring_change_until(name, ring, deadline)
    else
      :ok
    end
  end

  # Let the local instance's table catch up with what a C instance answered.
  defp await(name, req) do
    GenServer.call(name, req, 5_000)
  catch
    :exit, _ -> :ok
  end

  @doc false
  # {:ok, {type, name | nil, init_args, restart, shutdown}} | {:error, {:incorrect_spec, spec}}
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
  @spec terminate_child(name(), pid() | nil) :: :ok | {:error, :not_found}
  def terminate_child(name, pid) when is_pid(pid) do
    node = node(pid)

    if node in hosts(name) do
      case GenServer.call({name, node}, {:terminate_child, pid}, @start_timeout) do
        :ok ->
          await(name, {:await_down, pid})
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
    |> Map.new(fn [cname, pid, spec] -> {cname, {pid, spec}} end)
  end

  @doc """
  Returns a list of pids of local children.

  Children run on dsup-nodes only, so on an Elixir node this is `[]`.

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup16)
      iex> {:ok, _pid, _} = DistributedSupervisor.start_child(ExampleSup16, :echo)
      iex> DistributedSupervisor.local_children(ExampleSup16)
      []
  """
  @spec local_children(name()) :: [pid()]
  def local_children(name) do
    me = node()

    name
    |> table!()
    |> :ets.match({{:p, :"$1"}, :_})
    |> Enum.flat_map(fn [pid] -> if node(pid) == me, do: [pid], else: [] end)
  end

  @doc """
  Counts the cluster's children, like `DynamicSupervisor.count_children/1`.

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
    n = :ets.select_count(table!(name), [{{{:c, :_}, :_, :_}, [], [true]}])
    %{specs: n, active: n, supervisors: 0, workers: n}
  end

  @doc """
  Lists the cluster's children, like `DynamicSupervisor.which_children/1`:
  `{:undefined, pid, :worker, [worker_type]}` each.

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
      [pid, %{modules: modules}] -> {:undefined, pid, :worker, modules}
      [pid, _] -> {:undefined, pid, :worker, [:undefined]}
    end)
  end

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

  defp whereis_cached(name, child) do
    case :ets.lookup(table!(name), {:c, child}) do
      [{_, pid, _}] -> pid
      [] -> nil
    end
  end

  # A BEAM process registered through DistributedSupervisor.Registry (pg);
  # members on dsup-nodes are children, and the child table answers for them.
  defp whereis_registered(name, child) do
    hosts = hosts(name)

    case Enum.reject(:pg.get_members(Instance.scope(name), child), &(node(&1) in hosts)) do
      [pid | _] -> pid
      [] -> :undefined
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
  def call(name, child, msg, timeout \\ 5000),
    do: GenServer.call(via_name(name, child), msg, timeout)

  @doc """
  A syntactic sugar for `GenServer.cast/2` allowing to call a dynamically supervised
  GenServer by registry name and key.

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
  Returns the message if the process exists, `:undefined` otherwise.

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
    case whereis(name, child) do
      pid when is_pid(pid) -> Kernel.send(pid, msg)
      :undefined -> :undefined
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
      iex> [_ | _] = DistributedSupervisor.nodes(ExampleSup14)
      iex> node() in DistributedSupervisor.nodes(ExampleSup14)
      false
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
  Returns true if called from a node assigned to this key, false otherwise
  (always false on an Elixir node, which hosts no children).

      iex> {:ok, _sup} = DistributedSupervisor.start_link(name: ExampleSup20)
      iex> DistributedSupervisor.mine?(ExampleSup20, :some_key)
      false
  """
  @spec mine?(name(), term()) :: boolean()
  def mine?(name, key), do: node_for(name, key) == node()

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
end
