defmodule DistributedSupervisor.Status do
  @moduledoc """
  `DistributedSupervisor.status/1`: a cluster-wide summary of one instance.

  The child table and the ring come from this node's copy (no message); each
  host (a node whose C instance is in `:"$dsup_hosts"`) is asked for its own
  figures with `GenServer.call({name, host}, :status)`, all hosts at once,
  each within the timeout.
  """

  alias DistributedSupervisor.{Instance, Ring, Telemetry}

  @typedoc "One host's figures; `nil` where the host did not answer."
  @type host :: %{
          children: non_neg_integer(),
          pending: non_neg_integer() | nil,
          restarts: non_neg_integer() | nil
        }

  @type t :: %{
          name: atom(),
          nodes: [node()],
          hosts: %{node() => host()},
          children: non_neg_integer(),
          pending: non_neg_integer(),
          restarts: non_neg_integer(),
          unanswered: [node()]
        }

  @doc false
  @spec status(atom(), timeout()) :: t()
  def status(name, timeout \\ 5_000) do
    table = Instance.table(name)

    if :ets.whereis(table) == :undefined do
      raise ArgumentError,
            "no DistributedSupervisor named #{inspect(name)} is running on #{inspect(node())}"
    end

    [{:ring, ring}] = :ets.lookup(table, :ring)
    [{:hosts, hosts}] = :ets.lookup(table, :hosts)

    # children per node as this node's copy of the table has them: the
    # figure for a host that does not answer
    seen =
      table
      |> :ets.match({{:c, :_}, :"$1", :_})
      |> Enum.frequencies_by(fn [pid] -> node(pid) end)

    answers =
      hosts
      |> Task.async_stream(&{&1, ask(name, &1, timeout)},
        timeout: timeout + 1_000,
        on_timeout: :kill_task
      )
      |> Enum.zip(hosts)
      |> Map.new(fn
        {{:ok, {node, answer}}, node} -> {node, answer}
        {_, node} -> {node, nil}
      end)

    host_map =
      Map.new(hosts, fn node ->
        case answers[node] do
          %{} = a -> {node, a}
          nil -> {node, %{children: Map.get(seen, node, 0), pending: nil, restarts: nil}}
        end
      end)

    status = %{
      name: name,
      nodes: Ring.nodes(ring),
      hosts: host_map,
      children: :ets.select_count(table, [{{{:c, :_}, :_, :_}, [], [true]}]),
      pending: sum(host_map, :pending),
      restarts: sum(host_map, :restarts),
      unanswered: for({node, nil} <- answers, do: node) |> Enum.sort()
    }

    Telemetry.execute(
      [:distributed_supervisor, :status],
      Map.take(status, [:children, :pending, :restarts]) |> Map.put(:hosts, map_size(host_map)),
      %{name: name, unanswered: status.unanswered}
    )

    status
  end

  # A C instance answers [{node, N}, {children, C}, {pending, P}, {restarts, R}].
  defp ask(name, node, timeout) do
    case GenServer.call({name, node}, :status, timeout) do
      list when is_list(list) ->
        %{
          children: Keyword.fetch!(list, :children),
          pending: Keyword.fetch!(list, :pending),
          restarts: Keyword.fetch!(list, :restarts)
        }

      _other ->
        nil
    end
  catch
    :exit, _ -> nil
    :error, _ -> nil
  end

  defp sum(host_map, key),
    do: host_map |> Map.values() |> Enum.map(&(Map.fetch!(&1, key) || 0)) |> Enum.sum()
end
