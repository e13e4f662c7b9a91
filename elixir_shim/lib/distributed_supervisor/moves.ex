defmodule DistributedSupervisor.Moves do
  @moduledoc false
  # An Elixir instance's side of the moving marks (README "Moving
  # children"; the C instances' sup_move.c; the callers' side is
  # DistributedSupervisor.Moving). Kept in the instance's state, run in the
  # instance process (the marks are pg memberships of the instance pid).
  #
  # As the mover: the instance joins {:"$dsup_moving", Name} before the old
  # copy leaves the name's group, sends {start_handoff, ...} as a call whose
  # `from` is the instance itself (`calls`: tag => move), and once the new
  # copy started holds the mark (`marks`) until the target says
  # {'$dsup', {moved_visible, Name}}, the target's host leaves, or 5 s pass.
  #
  # As the target: after starting a copy from a start_handoff call, a
  # barrier of ours (a net_kernel is_auth round trip to every connected
  # node, as Handoff.barrier/0 but without blocking the instance) and then
  # moved_visible to the caller: every peer then has the new copy's join in
  # its scope's mailbox ahead of the mover's leave of the mark. Notices that
  # arrive while a barrier is in flight wait for the next one (`waiting`),
  # so one barrier serves a whole batch of arrivals.

  @mark :"$dsup_moving"
  @mark_max_ms 5_000
  @barrier_ms 2_000

  @typedoc "A start_handoff call in flight: its target, caller (nil: rebalance) and monitor."
  @type call() :: %{
          cname: term(),
          node: node(),
          from: GenServer.from() | nil,
          mref: reference(),
          timer: reference(),
          graceful: boolean()
        }

  defstruct calls: %{}, marks: [], waiting: [], barrier: nil, sweep: false

  @type t() :: %__MODULE__{
          calls: %{optional(reference()) => call()},
          marks: [{term(), node(), integer()}],
          waiting: [{pid(), term()}],
          barrier: nil | {reference(), non_neg_integer(), [{pid(), term()}]},
          sweep: boolean()
        }

  @doc false
  @spec mark(atom(), term()) :: :ok
  def mark(scope, cname), do: :pg.join(scope, {@mark, cname}, self())

  @doc false
  @spec unmark(atom(), term()) :: :ok | :not_joined
  def unmark(scope, cname), do: :pg.leave(scope, {@mark, cname}, self())

  # ---------------------------------------------------------------- mover

  @doc false
  # A start_handoff call to `to` (an instance pid) is about to be sent with
  # the tag `tag` and our pid as `from`: follow it.
  @spec call_started(
          t(),
          reference(),
          pid(),
          term(),
          GenServer.from() | nil,
          boolean(),
          timeout()
        ) ::
          t()
  def call_started(moves, tag, to, cname, from, graceful?, timeout) do
    call = %{
      cname: cname,
      node: node(to),
      from: from,
      mref: Process.monitor(to),
      timer: Process.send_after(self(), {:"$dsup_move_timeout", tag}, timeout),
      graceful: graceful?
    }

    %{moves | calls: Map.put(moves.calls, tag, call)}
  end

  @doc false
  # The call `tag` ended (its reply, its target's DOWN, its timeout): the
  # call, or nil when it is not ours.
  @spec call_ended(t(), reference()) :: {call() | nil, t()}
  def call_ended(moves, tag) do
    case Map.pop(moves.calls, tag) do
      {nil, _} ->
        {nil, moves}

      {call, calls} ->
        Process.demonitor(call.mref, [:flush])
        Process.cancel_timer(call.timer)
        {call, %{moves | calls: calls}}
    end
  end

  @doc false
  # The tag of the call whose target monitor is `mref`, or nil.
  @spec call_of_monitor(t(), reference()) :: reference() | nil
  def call_of_monitor(moves, mref) do
    Enum.find_value(moves.calls, fn {tag, c} -> if c.mref == mref, do: tag end)
  end

  @doc false
  # The move of `cname` to `node` succeeded: keep its mark until moved_visible.
  @spec hold(t(), term(), node()) :: t()
  def hold(moves, cname, node) do
    moves = %{moves | marks: [{cname, node, now() + @mark_max_ms} | moves.marks]}

    if moves.sweep do
      moves
    else
      Process.send_after(self(), :"$dsup_mark_sweep", 1_000)
      %{moves | sweep: true}
    end
  end

  @doc false
  # {moved_visible, cname}: leave its (oldest) mark.
  @spec visible(t(), atom(), term()) :: t()
  def visible(moves, scope, cname) do
    case Enum.split_with(moves.marks, fn {c, _, _} -> c == cname end) do
      {[], _} ->
        moves

      {mine, rest} ->
        {keep, [{^cname, _, _}]} = Enum.split(mine, -1)
        _ = unmark(scope, cname)
        %{moves | marks: keep ++ rest}
    end
  end

  @doc false
  # The hosts on `nodes` left: the marks of moves to them go.
  @spec hosts_left(t(), atom(), [node()]) :: t()
  def hosts_left(moves, scope, nodes),
    do: drop_marks(moves, scope, fn {_, n, _} -> n in nodes end)

  @doc false
  # Every second while marks are held: those past their 5 s go.
  @spec sweep(t(), atom()) :: t()
  def sweep(moves, scope) do
    now = now()
    moves = drop_marks(%{moves | sweep: false}, scope, fn {_, _, until} -> until <= now end)
    if moves.marks == [], do: moves, else: hold_timer(moves)
  end

  defp hold_timer(moves) do
    Process.send_after(self(), :"$dsup_mark_sweep", 1_000)
    %{moves | sweep: true}
  end

  @doc false
  # Leave every mark (the instance is about to leave the hosts group).
  @spec release_all(t(), atom()) :: t()
  def release_all(moves, scope), do: drop_marks(moves, scope, fn _ -> true end)

  defp drop_marks(moves, scope, drop?) do
    {gone, keep} = Enum.split_with(moves.marks, drop?)
    for {cname, _, _} <- gone, do: unmark(scope, cname)
    %{moves | marks: keep}
  end

  @doc false
  # Nothing of ours is in flight or marked.
  @spec idle?(t()) :: boolean()
  def idle?(moves), do: moves.calls == %{} and moves.marks == []

  # ---------------------------------------------------------------- target

  @doc false
  # We started `cname` from a start_handoff of `mover`: tell it
  # moved_visible once a barrier of ours passed.
  @spec notify(t(), pid(), term()) :: t()
  def notify(moves, mover, cname) do
    moves = %{moves | waiting: [{mover, cname} | moves.waiting]}
    if moves.barrier == nil, do: open_barrier(moves), else: moves
  end

  defp open_barrier(%{waiting: []} = moves), do: moves

  defp open_barrier(moves) do
    tag = make_ref()
    nodes = Node.list(:connected)
    req = {:"$gen_call", {self(), tag}, {:is_auth, node()}}
    for n <- nodes, do: send({:net_kernel, n}, req)
    moves = %{moves | barrier: {tag, length(nodes), moves.waiting}, waiting: []}

    if nodes == [] do
      passed(moves)
    else
      Process.send_after(self(), {:"$dsup_barrier_timeout", tag}, @barrier_ms)
      moves
    end
  end

  @doc false
  # A reply `{tag, _}`: {true, moves} when it was our barrier's.
  @spec barrier_reply(t(), reference()) :: {boolean(), t()}
  def barrier_reply(%{barrier: {tag, left, batch}} = moves, tag) do
    if left <= 1,
      do: {true, passed(moves)},
      else: {true, %{moves | barrier: {tag, left - 1, batch}}}
  end

  def barrier_reply(moves, _tag), do: {false, moves}

  @doc false
  # Our barrier was not answered in 2 s (a peer that went away): go on.
  @spec barrier_timeout(t(), reference()) :: t()
  def barrier_timeout(%{barrier: {tag, _, _}} = moves, tag), do: passed(moves)
  def barrier_timeout(moves, _tag), do: moves

  defp passed(%{barrier: {_, _, batch}} = moves) do
    for {mover, cname} <- Enum.reverse(batch),
        do: send(mover, {:"$dsup", {:moved_visible, cname}})

    open_barrier(%{moves | barrier: nil})
  end

  defp now, do: System.monotonic_time(:millisecond)
end
