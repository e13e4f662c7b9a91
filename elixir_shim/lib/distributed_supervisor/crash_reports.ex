defmodule DistributedSupervisor.CrashReports do
  @moduledoc """
  C workers' exits in this node's `Logger` (opt-in).

  With `crash_reports: true` in `DistributedSupervisor.start_link/1` (or
  `config :distributed_supervisor, crash_reports: true`), the instance on this
  node joins the group `:"$dsup_crash_reports"` of its pg scope, and every
  dsup-node hosting children sends it the exits of its workers as
  `{:"$dsup", {:crash_report, report}}`, where `report` is a map with the keys
  `:instance`, `:node`, `:child`, `:type`, `:pid`, `:reason`, `:action`
  (`:restart`, `:none`, `:give_up`) and `:level` (`:error` for a crash,
  `:info` for a normal stop). They are logged here at that level, one line
  like the dsup-node's own, with the fields as metadata (`dsup_instance`,
  `dsup_node`, `dsup_child`, `dsup_type`, `dsup_pid`, `dsup_reason`,
  `dsup_action`) and `domain: [:dsup, :crash_report]` for `:logger` filters.

  The dsup-node rate-limits them (10 at once, then 1 a second per instance);
  `{:"$dsup", {:crash_reports_suppressed, instance, node, count}}` tells how
  many it held back, logged as a warning.
  """

  require Logger

  @group :"$dsup_crash_reports"

  @doc false
  @spec group() :: atom()
  def group, do: @group

  @doc false
  @spec enabled?(keyword()) :: boolean()
  def enabled?(opts),
    do:
      Keyword.get(
        opts,
        :crash_reports,
        Application.get_env(:distributed_supervisor, :crash_reports, false)
      )

  @doc false
  @spec log(map()) :: :ok
  def log(%{level: level} = r) when level in [:error, :info] do
    Logger.log(level, fn -> {text(r), metadata(r)} end)
  end

  def log(_other), do: :ok

  @doc false
  @spec log_suppressed(atom(), node(), non_neg_integer()) :: :ok
  def log_suppressed(instance, node, count) do
    Logger.warning(
      "#{inspect(instance)}: #{count} worker exit reports from #{node} suppressed (rate limit)",
      domain: [:dsup, :crash_report],
      dsup_instance: instance,
      dsup_node: node
    )
  end

  defp text(r) do
    what = if r.level == :error, do: "crash report", else: "child stopped"

    "#{what}: supervisor=#{inspect(r.instance)} child=#{inspect(r.child)} type=#{inspect(r.type)} " <>
      "pid=#{inspect(r.pid)} node=#{r.node} reason=#{inspect(r.reason)} action=#{r.action}"
  end

  defp metadata(r) do
    [
      domain: [:dsup, :crash_report],
      dsup_instance: r.instance,
      dsup_node: r.node,
      dsup_child: r.child,
      dsup_type: r.type,
      dsup_pid: r.pid,
      dsup_reason: r.reason,
      dsup_action: r.action
    ]
  end
end
