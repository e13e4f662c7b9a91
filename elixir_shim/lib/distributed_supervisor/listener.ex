defmodule DistributedSupervisor.Listener do
  @moduledoc """
  The implementation of this behaviour might be passed
  to `DistributedSupervisor.start_link/1` (option `:listeners`) to receive
  notifications about processes state.

  Every callback is optional. On each Elixir node, the instance started with
  `listeners: [MyListener]` calls `MyListener` once for each event it learns of:

    * `on_process_start/3` — a child was started (or restarted, or moved to
      another node after a node was lost); also for each child already running
      when this instance first hears of it.
    * `on_process_stop/3` — a child stopped, or its node was lost (before it is
      restarted elsewhere; `pids` is the list of the pids that went away).
    * `on_process_pending/3` — a child of a lost node that no surviving host
      can run (`type` is its worker type or module) is kept as pending; it
      starts (`on_process_start/3`) once a host able to run it joins. Not in
      the upstream library.
    * `on_node_up/3`, `on_node_down/3` — with `monitor_nodes: true`, a node that
      runs the supervisor joined or left the ring; with `monitor_nodes: :cluster`,
      any node connected or disconnected (`info` is `net_kernel`'s info list).
    * `on_node_terminate/4` — a host (a dsup-node, or an Elixir node whose
      instance stops) is stopping gracefully: `statuses` holds
      `{:status, pid, {:module, worker_type}, [state]}` for each of its children.

  Callbacks run one at a time, in event order, in a process of their own: a
  slow listener does not block the supervisor, and an exception in a listener
  is logged and otherwise ignored.

      defmodule MyApp.ProcessListener do
        @behaviour DistributedSupervisor.Listener

        @impl true
        def on_process_start(name, id, pid) do
          IO.puts("\#{inspect(name)}: \#{inspect(id)} started as \#{inspect(pid)}")
        end

        @impl true
        def on_node_down(_name, node, _info), do: IO.puts("lost \#{node}")
      end
  """

  @callback on_process_start(
              name :: DistributedSupervisor.name(),
              id :: DistributedSupervisor.id(),
              pid :: pid()
            ) :: :ok

  @callback on_process_stop(
              name :: DistributedSupervisor.name(),
              id :: DistributedSupervisor.id(),
              pids :: [pid()]
            ) :: :ok

  @callback on_process_pending(
              name :: DistributedSupervisor.name(),
              id :: DistributedSupervisor.id(),
              type :: atom()
            ) :: :ok

  @callback on_node_up(
              name :: DistributedSupervisor.name(),
              node :: node(),
              info :: map() | keyword()
            ) :: :ok

  @callback on_node_down(
              name :: DistributedSupervisor.name(),
              node :: node(),
              info :: map() | keyword()
            ) :: :ok

  @callback on_node_terminate(
              name :: DistributedSupervisor.name(),
              node :: node(),
              reason :: :normal | :shutdown | {:shutdown, term()} | term(),
              statuses :: [{:status, pid(), {:module, module()}, [term()]}]
            ) :: :ok

  @optional_callbacks on_process_start: 3,
                      on_process_stop: 3,
                      on_process_pending: 3,
                      on_node_up: 3,
                      on_node_down: 3,
                      on_node_terminate: 4
end
