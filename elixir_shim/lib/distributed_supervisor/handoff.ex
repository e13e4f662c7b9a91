defmodule DistributedSupervisor.Handoff do
  @moduledoc """
  Moving BEAM children with their state (the Elixir side of README "Moving
  children"; C workers have the same through `handoff_state` and
  `dsup_handoff_state()`).

  A child hosted on an Elixir node moves to another Elixir host when its
  instance stops gracefully (`Supervisor.stop/1` of the tree,
  `GenServer.stop(name)`, the application or the node stopping:
  `:init.stop()`, SIGTERM), on `DistributedSupervisor.move_child/3`, and on a
  host join when the instance runs with `rebalance: true`. It goes to the
  ring owner of its name among the remaining Elixir hosts.

  ## The contract

  The module named in the child's spec (`{MyApp.Counter, opts}` →
  `MyApp.Counter`) may implement this behaviour's one optional callback:

    * `c:handoff_state/1` takes the GenServer state of the old copy and
      returns the term the new copy starts with. A module without it (or
      whose callback raises) moves by restart from its spec, as before.

  The new copy's `init/1` gets the same init args as any start and tells a
  move from a fresh start with `DistributedSupervisor.handoff_state/0`
  (`{:ok, term}` on a move, `:none` on a fresh start and on a restart after a
  crash). A child may also publish a **checkpoint** with
  `DistributedSupervisor.checkpoint/1`: the term is copied to the Elixir host
  that would take the child over if this one died (the ring successor of its
  name among the Elixir hosts); after a crash of the whole host (kill -9, a
  lost node) the failover starts the child there and its `init/1` finds the
  last checkpoint through the same `handoff_state/0`.

      defmodule MyApp.Counter do
        use GenServer
        @behaviour DistributedSupervisor.Handoff

        def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: opts[:name])

        @impl GenServer
        def init(opts) do
          case DistributedSupervisor.handoff_state() do
            {:ok, value} -> {:ok, value}                # moved (or restored from a checkpoint)
            :none -> {:ok, Keyword.get(opts, :value, 0)} # a fresh start
          end
        end

        @impl GenServer
        def handle_call({:add, n}, _from, v) do
          # optional: survive a kill -9 of the host, not only a graceful stop
          :ok = DistributedSupervisor.checkpoint(v + n)
          {:reply, v + n, v + n}
        end

        @impl DistributedSupervisor.Handoff
        def handoff_state(v), do: v
      end

  ## How the state is taken (and what an old copy never does again)

  The hosting instance joins the name's moving mark (the pg group
  `{:"$dsup_moving", name}`, with its own pid: see "Calls during a move"
  below), suspends the old copy (`:sys.suspend/2`), reads its
  state (`:sys.get_state/2`), calls `handoff_state/1` with it (in the
  instance's process, not the child's), removes the pid from the name's pg
  group and stops it through its `DynamicSupervisor`
  (`DynamicSupervisor.terminate_child/2`: no restart). A suspended process
  handles only system messages and an exit from its parent, so it processes
  no message after its state was taken: nothing it did is lost, nothing is
  done twice. Its `terminate/2` runs when it traps exits (a suspended
  `GenServer` still handles its parent's `{:EXIT, parent, :shutdown}`, with
  the state that was handed over); else the `:shutdown` exit ends it at once.
  Its exit reason is `:shutdown` (`:killed` with `shutdown: :brutal_kill`),
  not the C copies' `{:shutdown, {:moved, node}}`: only its
  `DynamicSupervisor` can stop it without restarting it, and that sends
  `:shutdown`. Messages left in its mailbox die with it: a `cast` sent to
  the old pid is lost; a `call` by pid exits as a call to any stopped
  GenServer, one by name through `DistributedSupervisor.call/4` is sent
  again to the new copy (below).

  Edge cases: a child that does not answer the suspend in 5 s (a long
  `handle_call`) moves by restart (it is stopped as its spec says). A child
  that dies on its own between the suspend and the stop (a linked process
  crashing it) is restarted in place by its `DynamicSupervisor` while the
  new copy starts elsewhere: the duplicate rule then keeps one copy (README
  "How instances cooperate"). `handoff_state/1` must be fast and pure (it
  runs in the instance).

  ## One registered copy

  The old copy leaves the name's pg group (the scope has written the leave
  to every connected node when `:pg.leave/3` returns), then the instance
  passes the barrier the C instances use — a `net_kernel` `is_auth` round
  trip to every connected node, so every peer has the leave in its scope's
  mailbox — and only then calls `{start_handoff, Name, SpecMap, {state, T}
  | none}` on the new host (for every move: graceful stop, `move_child`,
  rebalance; the call is sent from the instance, which gets the reply), which
  first lets its own scope apply the leave. No node sees two pids for the
  name. Between the leave and the new copy's join the name has no
  registered pid (about a millisecond on loopback). A `{'$dsup', {handoff,
  ...}}` message from a C instance stopped by `gen_server:stop` is
  accepted too.

  ## Calls during a move

  The mark joins before the old copy leaves the name's group and leaves
  only after the new copy's join is on every node: the new host answers
  `start_handoff` at once and, after a barrier of its own, sends the mover
  `{'$dsup', {moved_visible, Name}}` (the mark also goes when the new host
  leaves, or after 5 s). A node that finds no pid for the name thus either
  sees the mark or the name really has no process, and
  `DistributedSupervisor.call/4` waits for the new pid, and sends again a
  call that the old copy exited under (`:shutdown` or `:killed` while the
  name is marked: it was suspended and handled nothing after its state was
  taken). A stopping instance leaves the hosts group only once each of its
  moves is answered and visible (4 s at most). The new copy's own start is
  not held up by the mark: `GenServer.start_link`'s check of its via name
  does not wait (`DistributedSupervisor.Registry`).

  ## Checkpoints

  At most 64 KiB (`:erlang.external_size/1`); the instance sends each
  child's latest one at most every 100 ms (a newer one in the window
  replaces the pending one), to the successor as `{'$dsup', {checkpoint,
  Name, Pid, Term}}` (the C instances' message). A receiver keeps at most
  256 MiB of them, uses one only for the failover of the copy that
  published it (same pid), and drops it when that child ends for good or
  another copy of the name starts. `{checkpoint_of, Name}` on an instance
  answers `{:ok, term} | :none` (what it keeps for a child elsewhere).
  """

  @doc "The term the new copy's `init/1` receives from `DistributedSupervisor.handoff_state/0`."
  @callback handoff_state(state :: term()) :: term()
  @optional_callbacks handoff_state: 1

  require Logger

  @suspend_timeout 5_000
  @barrier_timeout 2_000

  @doc false
  @spec checkpoint_max() :: pos_integer()
  def checkpoint_max, do: 65_536

  @doc false
  # Take the handoff term of local child `pid` (when `want_state?` and its
  # module has the callback) and stop it: {:state, term} | :none. When this
  # returns the pid is out of the name's pg group (the leave is on the wire
  # to every peer) and the process is gone.
  @spec take(atom(), pid(), term(), pid(), module(), boolean()) :: {:state, term()} | :none
  def take(scope, dsup, cname, pid, mod, want_state?) do
    st = if want_state? and has_callback?(mod), do: state_of(pid, mod, cname), else: :none
    _ = :pg.leave(scope, cname, pid)

    try do
      _ = DynamicSupervisor.terminate_child(dsup, pid)
    catch
      :exit, _ -> Process.exit(pid, :kill)
    end

    st
  end

  @doc false
  @spec has_callback?(module()) :: boolean()
  def has_callback?(mod),
    do: is_atom(mod) and Code.ensure_loaded?(mod) and function_exported?(mod, :handoff_state, 1)

  defp state_of(pid, mod, cname) do
    :ok = :sys.suspend(pid, @suspend_timeout)
    {:state, mod.handoff_state(:sys.get_state(pid, @suspend_timeout))}
  catch
    kind, reason ->
      Logger.warning(
        "DistributedSupervisor: cannot take the state of #{inspect(cname)} " <>
          "(#{inspect(pid)}): #{inspect({kind, reason})}; it moves by restart"
      )

      :none
  end

  @doc false
  # Every connected node has received what this node sent it before (the
  # pg leaves of the copies just stopped): a net_kernel is_auth call to
  # each, answered `yes` by BEAM and dsup nodes alike. Gives up after 2 s
  # (a peer that went away). Returns the number of nodes that did not answer.
  @spec barrier() :: non_neg_integer()
  def barrier do
    ref = make_ref()
    nodes = Node.list(:connected)
    req = {:is_auth, node()}
    for n <- nodes, do: send({:net_kernel, n}, {:"$gen_call", {self(), ref}, req})
    await(ref, length(nodes), System.monotonic_time(:millisecond) + @barrier_timeout)
  end

  defp await(_ref, 0, _deadline), do: 0

  defp await(ref, left, deadline) do
    receive do
      {^ref, _} -> await(ref, left - 1, deadline)
    after
      max(0, deadline - System.monotonic_time(:millisecond)) ->
        Logger.warning(
          "DistributedSupervisor: #{left} nodes did not answer the move barrier " <>
            "in #{@barrier_timeout} ms; moving anyway"
        )

        left
    end
  end
end
