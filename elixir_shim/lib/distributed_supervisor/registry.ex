defmodule DistributedSupervisor.Registry do
  @moduledoc """
  The `:via` module of `DistributedSupervisor.via_name/2`: a name
  `{:via, DistributedSupervisor.Registry, {name, id}}` reaches the child `id`
  of the instance `name`, wherever it runs, with the standard library:

      GenServer.call(DistributedSupervisor.via_name(MyApp.DistSup, :w1), :get)
      GenServer.cast(DistributedSupervisor.via_name(MyApp.DistSup, :w1), :inc)

  A BEAM child started through `DistributedSupervisor.start_child/3` gets this
  name in its start options (`name: {:via, DistributedSupervisor.Registry,
  {name, id}}`) and registers itself with it, as with the upstream library:
  it joins the pg group named by the id in the instance's scope. C workers on
  dsup-nodes are registered the same way by their C instance. A local BEAM
  process may also register itself under an id (`GenServer.start_link(M, arg,
  name: DistributedSupervisor.via_name(MyApp.DistSup, :x))`): it is found by
  `whereis_name/1` but is not one of the supervisor's `children/1`.
  """

  @doc "The pid registered as `{name, id}`, or `:undefined`."
  @spec whereis_name({DistributedSupervisor.name(), DistributedSupervisor.id()}) ::
          pid() | :undefined
  def whereis_name({name, id} = key) do
    # During a move of `id` (README "Moving children") this waits for the new
    # copy, at most 5 s (a via name carries no timeout; GenServer's default);
    # not when the new copy itself is starting: GenServer.start_link asks
    # whereis_name first, from the DynamicSupervisor that starts it
    # (Instance.start_registered/3), and would wait for itself.
    found =
      if Process.get(:"$dsup_starting") == key,
        do: DistributedSupervisor.whereis(name, id),
        else: DistributedSupervisor.resolve(name, id, DistributedSupervisor.Moving.deadline(5000))

    case found do
      # a local child that just died (its restart is registering now): gone
      pid when is_pid(pid) and node(pid) == node() ->
        if Process.alive?(pid), do: pid, else: live_other(name, id, pid) || :undefined

      pid when is_pid(pid) ->
        pid

      _ ->
        :undefined
    end
  end

  @doc "Registers a local `pid` as `{name, id}`: `:yes`, or `:no` when the id is taken."
  @spec register_name({DistributedSupervisor.name(), DistributedSupervisor.id()}, pid()) ::
          :yes | :no
  def register_name({name, id}, pid) when is_pid(pid) do
    case live_other(name, id, pid) do
      nil ->
        :ok = :pg.join(DistributedSupervisor.Instance.scope(name), id, pid)
        :yes

      _ ->
        :no
    end
  end

  @doc false
  # Another live process registered as {name, id}, or nil. Not counted: a
  # local one that died but is not yet out of pg (e.g. the previous run of a
  # restarting child), nor a remote one the instance saw go down ({:down, pid}
  # rows, as whereis/2): pg applies that leave in its own time, after the
  # child_down or terminate_child's :ok.
  @spec live_other(DistributedSupervisor.name(), term(), pid()) :: pid() | nil
  def live_other(name, id, pid) do
    candidates =
      case DistributedSupervisor.whereis(name, id) do
        :undefined -> []
        p -> [p]
      end ++ :pg.get_members(DistributedSupervisor.Instance.scope(name), id)

    table = DistributedSupervisor.Instance.table(name)

    Enum.find(candidates, fn p ->
      p != pid and not :ets.member(table, {:down, p}) and
        if(node(p) == node(), do: Process.alive?(p), else: true)
    end)
  end

  @doc "Removes the local processes registered as `{name, id}`."
  @spec unregister_name({DistributedSupervisor.name(), DistributedSupervisor.id()}) :: :ok
  def unregister_name({name, id}) do
    scope = DistributedSupervisor.Instance.scope(name)

    for pid <- :pg.get_local_members(scope, id), do: :pg.leave(scope, id, pid)
    :ok
  end

  @doc "Sends `msg` to `{name, id}`; exits `{:badarg, {{name, id}, msg}}` when nothing is registered."
  @spec send({DistributedSupervisor.name(), DistributedSupervisor.id()}, term()) :: pid()
  def send({name, id} = key, msg) do
    case DistributedSupervisor.resolve(name, id, DistributedSupervisor.Moving.deadline(5000)) do
      pid when is_pid(pid) ->
        Kernel.send(pid, msg)
        pid

      _ ->
        exit({:badarg, {key, msg}})
    end
  end
end
