defmodule DistributedSupervisor.Dispatcher do
  @moduledoc false
  # Calls the instance's listener modules (DistributedSupervisor.Listener),
  # one event at a time and in order, away from the instance: a slow or
  # failing listener never blocks or crashes the instance. Supervised beside
  # it (DistributedSupervisor.InstanceSupervisor); it traps exits so that the
  # events queued before a shutdown (node_terminate) are still delivered.
  use GenServer

  require Logger

  @type event() ::
          {:process_start, term(), pid()}
          | {:process_stop, term(), [pid()]}
          | {:process_pending, term(), atom()}
          | {:node_up, node(), keyword()}
          | {:node_down, node(), keyword()}
          | {:node_terminate, node(), term(), [term()]}

  @doc false
  @spec child_spec(keyword()) :: Supervisor.child_spec()
  def child_spec(opts),
    do: %{id: __MODULE__, start: {__MODULE__, :start_link, [opts]}, shutdown: 2_000}

  @spec start_link(keyword()) :: GenServer.on_start()
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: opts[:name])

  @doc "Hands `event` to the listeners (asynchronously); `nil`: no listeners."
  @spec dispatch(pid() | nil, event()) :: :ok
  def dispatch(nil, _event), do: :ok
  def dispatch(pid, event), do: GenServer.cast(pid, {:event, event})

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    name = Keyword.fetch!(opts, :instance)
    {loaded, missing} = Enum.split_with(Keyword.fetch!(opts, :listeners), &Code.ensure_loaded?/1)

    for mod <- missing,
        do:
          Logger.warning(
            "DistributedSupervisor #{inspect(name)}: listener #{inspect(mod)} is not available"
          )

    {:ok, %{name: name, listeners: loaded}}
  end

  @impl true
  def handle_cast({:event, event}, %{name: name, listeners: listeners} = state) do
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

    {:noreply, state}
  end

  defp callback(name, {:process_start, id, pid}), do: {:on_process_start, [name, id, pid]}
  defp callback(name, {:process_stop, id, pids}), do: {:on_process_stop, [name, id, pids]}
  defp callback(name, {:process_pending, id, type}), do: {:on_process_pending, [name, id, type]}
  defp callback(name, {:node_up, node, info}), do: {:on_node_up, [name, node, info]}
  defp callback(name, {:node_down, node, info}), do: {:on_node_down, [name, node, info]}

  defp callback(name, {:node_terminate, node, reason, statuses}),
    do: {:on_node_terminate, [name, node, reason, statuses]}
end
