defmodule DistributedSupervisor.Moving do
  @moduledoc false
  # Messages by name across a move (README "Moving children").
  #
  # An instance that moves a child joins the pg group {:"$dsup_moving", id}
  # (with its own pid) before the old copy leaves the name's group, and
  # leaves it only once every peer has the new copy's join in its scope's
  # mailbox. Both come from one scope, in order, so an observer that finds
  # no pid for the name either sees the mark (wait: the new pid comes) or
  # the name really has no process. The wait is event-driven: pg monitors
  # on the name and on its mark, bounded by the caller's deadline.
  #
  # Which failed calls are sent again: only those that cannot have been
  # handled. A GenServer (C or BEAM) answers a call before it handles the
  # next message, and its reply travels before its exit signal, so a call
  # that got an exit and no reply was not answered; the old copy's state
  # was taken in the same step that stopped it, so nothing it did after
  # that is lost. Retried: `{:shutdown, {:moved, node}}` (the stop reason of
  # a moved copy), `:noproc` (the monitor found the process already gone:
  # the call, sent after the monitor, never reached it), and `:shutdown` /
  # `{:shutdown, _}` / `:killed` while the name is marked moving (a BEAM
  # child moved off an Elixir host is stopped by its DynamicSupervisor, so
  # with `:shutdown`, or `:killed` for `shutdown: :brutal_kill`; it was
  # suspended when its state was taken and handled nothing after that). Not retried: a call
  # the old copy took and left unanswered to answer later (a deferred
  # reply) exits as before; `:nodedown`, timeouts and crashes exit as
  # before.

  @mark :"$dsup_moving"

  # A mark gone with no new pid yet: an instance ended by gen_server:stop
  # hands over without a barrier and its marks leave with it, while the new
  # copy's join comes from another node over another link (it may arrive a
  # little later); a failed move never brings one.
  # Wait this long at most (ms) for the join before giving up.
  @grace 200

  @doc false
  def deadline(:infinity), do: :infinity
  def deadline(ms) when is_integer(ms) and ms >= 0, do: now() + ms

  @doc false
  def remaining(:infinity), do: :infinity
  def remaining(deadline), do: max(deadline - now(), 0)

  @doc false
  # {retry?, moved?}: may a call that exited with `reason` be sent again
  # (see above); moved?: the exit itself says the copy moved.
  def retry(reason) do
    case reason do
      {:shutdown, {:moved, _}} -> {true, true}
      :noproc -> {true, false}
      :shutdown -> {:if_marked, false}
      {:shutdown, _} -> {:if_marked, false}
      # a BEAM child moved off an Elixir host with `shutdown: :brutal_kill`
      :killed -> {:if_marked, false}
      _ -> {false, false}
    end
  end

  @doc false
  # The live pid registered as `id` other than `old`, waiting while the name
  # is marked moving (or `moved?`) until `deadline`: a pid, `:undefined`
  # (not moving and no pid) or `:timeout`. `only_if_marked`: give up at once
  # unless the name is marked (a plain shutdown is a move only then).
  def await(name, id, old, moved?, deadline, only_if_marked \\ false) do
    scope = DistributedSupervisor.Instance.scope(name)
    # pg.monitor is a call to the scope: it also makes the scope apply every
    # join and leave that reached this node before the exit we got.
    {r1, members} = :pg.monitor(scope, id)
    {r2, marks} = :pg.monitor(scope, {@mark, id})

    try do
      grace = if moved? and marks == [], do: now() + @grace, else: nil

      if only_if_marked and marks == [] and live(members, old) == [] do
        :undefined
      else
        loop(r1, r2, members, marks, old, grace, deadline)
      end
    after
      :pg.demonitor(scope, r1)
      :pg.demonitor(scope, r2)
      flush(r1)
      flush(r2)
    end
  end

  defp loop(r1, r2, members, marks, old, grace, deadline) do
    case live(members, old) do
      [pid | _] ->
        pid

      [] ->
        wait_until =
          cond do
            marks != [] -> deadline
            grace != nil -> earliest(grace, deadline)
            true -> nil
          end

        if wait_until == nil do
          # an event already here (a join applied between the two monitors)
          receive do
            {^r1, _, _, _} = ev -> event(ev, r1, r2, members, marks, old, grace, deadline)
            {^r2, _, _, _} = ev -> event(ev, r1, r2, members, marks, old, grace, deadline)
          after
            0 -> :undefined
          end
        else
          receive do
            {^r1, _, _, _} = ev -> event(ev, r1, r2, members, marks, old, grace, deadline)
            {^r2, _, _, _} = ev -> event(ev, r1, r2, members, marks, old, grace, deadline)
          after
            remaining(wait_until) ->
              if wait_until == deadline and deadline != :infinity and now() >= deadline,
                do: :timeout,
                else: :undefined
          end
        end
    end
  end

  defp event({r1, :join, _, pids}, r1, r2, members, marks, old, grace, deadline),
    do: loop(r1, r2, members ++ pids, marks, old, grace, deadline)

  defp event({r1, :leave, _, pids}, r1, r2, members, marks, old, grace, deadline),
    do: loop(r1, r2, members -- pids, marks, old, grace, deadline)

  defp event({r2, :join, _, pids}, r1, r2, members, marks, old, grace, deadline),
    do: loop(r1, r2, members, marks ++ pids, old, grace, deadline)

  defp event({r2, :leave, _, pids}, r1, r2, members, marks, old, grace, deadline) do
    case marks -- pids do
      [] -> loop(r1, r2, members, [], old, now() + @grace, deadline)
      left -> loop(r1, r2, members, left, old, grace, deadline)
    end
  end

  defp live(members, old) do
    Enum.filter(members, fn p ->
      p != old and (node(p) != node() or Process.alive?(p))
    end)
  end

  defp earliest(a, :infinity), do: a
  defp earliest(a, b), do: min(a, b)

  defp flush(ref) do
    receive do
      {^ref, _, _, _} -> flush(ref)
    after
      0 -> :ok
    end
  end

  defp now, do: System.monotonic_time(:millisecond)
end
