defmodule DistributedSupervisor.Registry do
  @moduledoc """
  The `:via` module of `DistributedSupervisor.via_name/2`: a name
  `{:via, DistributedSupervisor.Registry, {name, id}}` reaches the child `id`
  of the instance `name`, wherever it runs, with the standard library:

      GenServer.call(DistributedSupervisor.via_name(MyApp.DistSup, :w1), :get)
      GenServer.cast(DistributedSupervisor.via_name(MyApp.DistSup, :w1), :inc)

  Children started through `DistributedSupervisor.start_child/3` (C workers on
  dsup-nodes) are found in the instance's child table. A local BEAM process may
  also register itself under an id (`GenServer.start_link(M, arg, name:
  DistributedSupervisor.via_name(MyApp.DistSup, :x))`): it joins the pg group
  named by the id in the instance's scope, like upstream; it is found by
  `whereis_name/1` but is not one of the supervisor's `children/1`.
  """

  @doc "The pid registered as `{name, id}`, or `:undefined`."
  @spec whereis_name({DistributedSupervisor.name(), DistributedSupervisor.id()}) ::
          pid() | :undefined
  def whereis_name({name, id}), do: DistributedSupervisor.whereis(name, id)

  @doc "Registers a local `pid` as `{name, id}`: `:yes`, or `:no` when the id is taken."
  @spec register_name({DistributedSupervisor.name(), DistributedSupervisor.id()}, pid()) ::
          :yes | :no
  def register_name({name, id}, pid) when is_pid(pid) do
    case DistributedSupervisor.whereis(name, id) do
      :undefined ->
        :ok = :pg.join(DistributedSupervisor.Instance.scope(name), id, pid)
        :yes

      _ ->
        :no
    end
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
    case DistributedSupervisor.whereis(name, id) do
      pid when is_pid(pid) ->
        Kernel.send(pid, msg)
        pid

      :undefined ->
        exit({:badarg, {key, msg}})
    end
  end
end
