defmodule DistributedSupervisor.TestSupport.Counter do
  @moduledoc false
  # A counter that moves with its value (DistributedSupervisor.Handoff) and,
  # with `checkpoint: true`, checkpoints every change. `trap: true` traps
  # exits and reports its terminate/2 to `sink:` ({:terminated, tag, value}).
  # Each init reports {:counter_init, tag, node(), self(), how} to `sink:`,
  # `how` being what DistributedSupervisor.handoff_state/0 answered (with
  # `explicit: true`, handoff_state/2 with the instance and id of its via name).
  use GenServer
  @behaviour DistributedSupervisor.Handoff

  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: Keyword.get(opts, :name))

  @impl GenServer
  def init(opts) do
    if opts[:trap], do: Process.flag(:trap_exit, true)

    how =
      case {opts[:explicit], opts[:name]} do
        {true, {:via, _, {ds, id}}} -> DistributedSupervisor.handoff_state(ds, id)
        _ -> DistributedSupervisor.handoff_state()
      end

    if sink = opts[:sink], do: send(sink, {:counter_init, opts[:tag], node(), self(), how})

    v =
      case how do
        {:ok, {:counter, v}} -> v
        :none -> Keyword.get(opts, :value, 0)
      end

    {:ok, %{v: v, ckpt: opts[:checkpoint] == true, sink: opts[:sink], tag: opts[:tag]}}
  end

  @impl GenServer
  def handle_call(:get, _from, s), do: {:reply, s.v, s}

  def handle_call({:add, n}, _from, s) do
    s = %{s | v: s.v + n}
    if s.ckpt, do: :ok = DistributedSupervisor.checkpoint({:counter, s.v})
    {:reply, s.v, s}
  end

  @impl GenServer
  def handle_cast({:add, n}, s), do: {:noreply, %{s | v: s.v + n}}

  @impl GenServer
  def terminate(reason, s) do
    if s.sink, do: send(s.sink, {:terminated, s.tag, s.v, reason})
    :ok
  end

  @impl DistributedSupervisor.Handoff
  def handoff_state(s), do: {:counter, s.v}
end

defmodule DistributedSupervisor.TestSupport.HandoffApp do
  @moduledoc false
  # An application whose tree runs a DistributedSupervisor instance, so that
  # :init.stop() on a peer stops it as a release's shutdown does.
  use Application

  def load_and_start(opts) do
    spec = [
      description: ~c"dsup handoff test app",
      vsn: ~c"0.1.0",
      modules: [__MODULE__],
      registered: [],
      applications: [:kernel, :stdlib, :elixir, :logger, :distributed_supervisor],
      mod: {__MODULE__, opts}
    ]

    :ok = :application.load({:application, :dsup_handoff_app, spec})
    {:ok, _} = Application.ensure_all_started(:dsup_handoff_app)
    :ok
  end

  @impl true
  def start(_type, opts),
    do: Supervisor.start_link([{DistributedSupervisor, opts}], strategy: :one_for_one)
end

defmodule DistributedSupervisor.TestSupport.PgWatch do
  @moduledoc false
  # Follows pg groups on the node it runs on (:pg.monitor/2: every join and
  # leave its scope applies) and remembers the largest membership seen per
  # group (and per mark). For the `marked` ids it also follows their moving marks
  # ({:"$dsup_moving", id}, README "Moving children") and keeps each break
  # of the order callers by name rely on: {id, :left_unmarked} (the last pid
  # left while the name was not marked) or {id, :mark_left_early} (the mark
  # went while the name had no pid). {:report, from} -> {%{group => max},
  # [break]} (breaks in the order seen).

  @mark :"$dsup_moving"

  def start(scope, groups, marked \\ []) do
    me = self()

    pid =
      spawn(fn ->
        all = groups ++ Enum.map(marked, &{@mark, &1})
        refs = Map.new(all, fn g -> {g, :pg.monitor(scope, g)} end)
        members = Map.new(refs, fn {g, {_ref, pids}} -> {g, MapSet.new(pids)} end)
        max = Map.new(all, fn g -> {g, MapSet.size(members[g])} end)
        send(me, {:pg_watch_ready, self()})
        loop(members, max, MapSet.new(marked), [])
      end)

    receive do
      {:pg_watch_ready, ^pid} -> pid
    after
      5_000 -> raise "PgWatch did not start"
    end
  end

  def report(pid) do
    ref = make_ref()
    send(pid, {:report, self(), ref})

    receive do
      {^ref, result} -> result
    after
      5_000 -> raise "PgWatch did not answer"
    end
  end

  defp loop(members, max, marked, breaks) do
    receive do
      {_ref, :join, g, pids} ->
        set = MapSet.union(members[g], MapSet.new(pids))

        max =
          if Map.has_key?(max, g),
            do: Map.update!(max, g, &Kernel.max(&1, MapSet.size(set))),
            else: max

        loop(Map.put(members, g, set), max, marked, breaks)

      {_ref, :leave, g, pids} ->
        members = Map.put(members, g, MapSet.difference(members[g], MapSet.new(pids)))
        loop(members, max, marked, check(g, members, marked) ++ breaks)

      {:report, from, ref} ->
        send(from, {ref, {max, Enum.reverse(breaks)}})
        loop(members, max, marked, breaks)
    end
  end

  defp check({@mark, id}, members, _marked) do
    if MapSet.size(members[{@mark, id}]) == 0 and MapSet.size(members[id]) == 0,
      do: [{id, :mark_left_early}],
      else: []
  end

  defp check(id, members, marked) do
    if MapSet.member?(marked, id) and MapSet.size(members[id]) == 0 and
         MapSet.size(members[{@mark, id}]) == 0,
       do: [{id, :left_unmarked}],
       else: []
  end
end

defmodule DistributedSupervisor.TestSupport.Hammer do
  @moduledoc false
  # A client that adds 1 to each of `ids` in turn by name
  # (DistributedSupervisor.call) until stopped, and reports per id: the
  # acknowledged adds, the calls that exited (none is expected while a
  # child moves with its state: calls by name wait out its moving mark),
  # the last value seen and whether a value
  # ever failed to grow; under :gap_us, the longest time between two
  # acknowledged adds of one child (microseconds); under :exits, the first
  # few exits ({id, reason}).

  def start(name, ids) do
    spawn(fn ->
      Process.put(:gap, {System.monotonic_time(:microsecond), %{}, 0})
      loop(name, ids, Map.new(ids, &{&1, {0, 0, nil, false}}))
    end)
  end

  def stop(pid) do
    ref = make_ref()
    send(pid, {:stop, self(), ref})

    receive do
      {^ref, stats} -> stats
    after
      10_000 -> raise "Hammer did not answer"
    end
  end

  defp acked(id) do
    now = System.monotonic_time(:microsecond)
    {t0, last, max} = Process.get(:gap)
    gap = now - Map.get(last, id, t0)
    Process.put(:gap, {t0, Map.put(last, id, now), Kernel.max(max, gap)})
  end

  defp loop(name, ids, stats) do
    receive do
      {:stop, from, ref} ->
        reasons = Enum.take(Process.get(:exits, []), 5)
        stats = stats |> Map.put(:gap_us, elem(Process.get(:gap), 2)) |> Map.put(:exits, reasons)
        send(from, {ref, stats})
    after
      0 ->
        stats =
          Enum.reduce(ids, stats, fn id, acc ->
            {acks, exits, last, back?} = acc[id]

            try do
              v = DistributedSupervisor.call(name, id, {:add, 1}, 5_000)
              acked(id)
              Map.put(acc, id, {acks + 1, exits, v, back? or (last != nil and v <= last)})
            catch
              :exit, reason ->
                Process.put(:exits, [{id, reason} | Process.get(:exits, [])])
                Map.put(acc, id, {acks, exits + 1, last, back?})
            end
          end)

        loop(name, ids, stats)
    end
  end
end

defmodule DistributedSupervisor.TestSupport.CallTimer do
  @moduledoc false
  # Mean time of `n` calls {:add, 1} by name from this node (microseconds).
  def mean_us(name, id, n) do
    {us, _} =
      :timer.tc(fn ->
        for _ <- 1..n, do: DistributedSupervisor.call(name, id, {:add, 1})
      end)

    us / n
  end
end
