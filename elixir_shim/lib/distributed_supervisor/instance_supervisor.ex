defmodule DistributedSupervisor.InstanceSupervisor do
  @moduledoc false
  # The process tree behind DistributedSupervisor.start_link/1 (as Elixir's
  # DynamicSupervisor and Horde's per-instance Supervisor do it):
  #
  #   InstanceSupervisor   (registered as Name.Supervisor, the pid start_link returns)
  #   ├── the pg scope Name.Scope        (:ignore when the node runs it already)
  #   ├── Task.Supervisor Name.Tasks     (the instance's helper tasks)
  #   ├── Dispatcher Name.Dispatcher     (listener callbacks; only with listeners)
  #   ├── DynamicSupervisor Name.Children (the hosted children; only on a host)
  #   └── Instance, registered as Name   (the wire API's {Name, node})
  #
  # :one_for_all, because these parts describe one state: the instance's
  # table lists the children the DynamicSupervisor runs, and its pg
  # memberships live in the scope. After a partial restart a new instance
  # would find children it never heard of, or an old one would keep rows of
  # children (or pg groups) that died; so any crash restarts them all, and the
  # cluster sees the node leave and rejoin (its children fail over and back).
  #
  # The instance comes last: it is stopped first, while its children still
  # run, so that it can report their state (node_terminate) and stop them
  # itself before it leaves '$dsup_hosts' (a failover elsewhere must not meet
  # the old copies). It is `:transient`: when it stops for good with reason
  # :normal (GenServer.stop(Name)) it asks this supervisor to stop with
  # :normal too (Instance.stop_tree/2), as the lone instance process stopped
  # before; not auto_shutdown, whose :shutdown exit would kill the process
  # that started the tree linked.
  use Supervisor

  alias DistributedSupervisor.{Dispatcher, Instance}

  @doc false
  @spec start_link(keyword()) :: Supervisor.on_start()
  def start_link(opts),
    do: Supervisor.start_link(__MODULE__, opts, name: Instance.supervisor(opts[:name]))

  @doc false
  # Not linked to the caller (the supervisor is then its own parent).
  @spec start(keyword()) :: Supervisor.on_start()
  def start(opts) do
    sup = {:local, Instance.supervisor(opts[:name])}
    :gen_server.start(sup, :supervisor, {sup, __MODULE__, opts}, [])
  end

  @impl true
  def init(opts) do
    name = Keyword.fetch!(opts, :name)
    host? = Keyword.get(opts, :host, true)
    listeners = Keyword.get(opts, :listeners, [])

    children =
      [
        %{
          id: :scope,
          start: {__MODULE__, :start_scope, [Instance.scope(name)]},
          shutdown: :brutal_kill
        },
        Supervisor.child_spec({Task.Supervisor, name: Instance.tasks(name)}, id: :tasks),
        listeners != [] &&
          {Dispatcher, name: Instance.dispatcher(name), instance: name, listeners: listeners},
        host? &&
          %{
            id: :children,
            start:
              {DynamicSupervisor, :start_link,
               [
                 [
                   name: Instance.children_sup(name),
                   strategy: :one_for_one,
                   max_restarts: Keyword.get(opts, :max_restarts, 3),
                   max_seconds: Keyword.get(opts, :max_seconds, 5)
                 ]
               ]},
            type: :supervisor,
            shutdown: :infinity
          },
        %{
          id: Instance,
          start: {GenServer, :start_link, [Instance, opts, [name: name]]},
          restart: :transient,
          modules: [Instance],
          # it reports and stops its children itself (see above)
          shutdown: :infinity
        }
      ]
      |> Enum.filter(& &1)

    flags = %{strategy: :one_for_all, intensity: 3, period: 5}
    {:ok, {flags, Enum.map(children, &Supervisor.child_spec(&1, []))}}
  end

  @doc false
  # The node may run the scope already (another instance of the same name
  # being stopped, or the application): use it, it is not ours to stop.
  @spec start_scope(atom()) :: {:ok, pid()} | :ignore
  def start_scope(scope) do
    case :pg.start_link(scope) do
      {:ok, pid} -> {:ok, pid}
      {:error, {:already_started, _}} -> :ignore
    end
  end
end
