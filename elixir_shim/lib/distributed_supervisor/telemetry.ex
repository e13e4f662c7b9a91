defmodule DistributedSupervisor.Telemetry do
  @moduledoc """
  `:telemetry` events of DistributedSupervisor, emitted through
  `:telemetry.execute/3` when the `:telemetry` application is present; the
  shim does not depend on it (nothing is emitted, nothing fails, without it).

  Emitted by the instance process on each node where `start_link/1` runs, as
  that node observes the cluster (every node's instance emits its own
  copy), so handlers run in that process: keep them fast.

  | event | measurements | metadata |
  |---|---|---|
  | `[:distributed_supervisor, :child, :start]` | `system_time` | `name`, `id`, `pid`, `node` |
  | `[:distributed_supervisor, :child, :stop]` | `system_time` | `name`, `id`, `pid`, `node` |
  | `[:distributed_supervisor, :host, :join]` | `system_time`, `hosts` | `name`, `node`, `pid` |
  | `[:distributed_supervisor, :host, :leave]` | `system_time`, `hosts` | `name`, `node`, `pid` |
  | `[:distributed_supervisor, :node, :up]` | `system_time` | `name`, `node`, `info` |
  | `[:distributed_supervisor, :node, :down]` | `system_time` | `name`, `node`, `info` |
  | `[:distributed_supervisor, :node, :terminate]` | `system_time`, `children` | `name`, `node`, `reason` |
  | `[:distributed_supervisor, :status]` | `hosts`, `children`, `pending`, `restarts` | `name`, `unanswered` |

  `child :start`/`:stop` and `node` events are the listener callbacks'
  (`on_process_start`, `on_process_stop` once per pid, `on_node_up`/`down`
  with `monitor_nodes`, `on_node_terminate`); `host` events follow the
  `:"$dsup_hosts"` group (`hosts`: the number of host processes after the
  change); `:status` is emitted by each `DistributedSupervisor.status/1`.
  `system_time` is `System.system_time/0` (native units).
  """

  # :telemetry is optional: not a dependency, not there at compile time
  @compile {:no_warn_undefined, :telemetry}

  @doc """
  `:telemetry.execute/3` when `:telemetry` is loaded, else nothing.

  A handler can only be attached through `:telemetry.attach/4`, which loads
  the module: so "loaded" is tested with the `function_exported?/3` BIF (no
  code-server round trip per event, unlike `Code.ensure_loaded?/1` when the
  module is absent).
  """
  @spec execute([atom()], map(), map()) :: :ok
  def execute(event, measurements, metadata) do
    if function_exported?(:telemetry, :execute, 3),
      do: :telemetry.execute(event, measurements, metadata)

    :ok
  end

  @doc false
  # The instance's listener events (Instance.emit/2), as telemetry events.
  @spec listener_event(DistributedSupervisor.name(), tuple()) :: :ok
  def listener_event(name, {:process_start, id, pid}),
    do: child(:start, name, id, pid)

  def listener_event(name, {:process_stop, id, pids}),
    do: Enum.each(pids, &child(:stop, name, id, &1))

  def listener_event(name, {:node_up, node, info}), do: node_event(:up, name, node, info)
  def listener_event(name, {:node_down, node, info}), do: node_event(:down, name, node, info)

  def listener_event(name, {:node_terminate, node, reason, statuses}) do
    execute(
      [:distributed_supervisor, :node, :terminate],
      %{system_time: System.system_time(), children: length(List.wrap(statuses))},
      %{name: name, node: node, reason: reason}
    )
  end

  def listener_event(_name, _other), do: :ok

  @doc false
  # Host pids joined or left '$dsup_hosts'; `count`: host processes after.
  @spec hosts_event(DistributedSupervisor.name(), :join | :leave, [pid()], non_neg_integer()) ::
          :ok
  def hosts_event(name, what, pids, count) when what in [:join, :leave] do
    for pid <- pids do
      execute(
        [:distributed_supervisor, :host, what],
        %{system_time: System.system_time(), hosts: count},
        %{name: name, node: node(pid), pid: pid}
      )
    end

    :ok
  end

  defp child(what, name, id, pid) do
    execute(
      [:distributed_supervisor, :child, what],
      %{system_time: System.system_time()},
      %{name: name, id: id, pid: pid, node: node(pid)}
    )
  end

  defp node_event(what, name, node, info) do
    execute(
      [:distributed_supervisor, :node, what],
      %{system_time: System.system_time()},
      %{name: name, node: node, info: info}
    )
  end
end
