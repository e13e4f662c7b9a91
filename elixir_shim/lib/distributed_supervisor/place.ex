defmodule DistributedSupervisor.Place do
  @moduledoc false
  # Placement by capability, the same rule as c_src/sup_place.c:
  #
  #   * a C host joins {:"$dsup_type", Type} for each worker type its node
  #     registered; an Elixir host joins :"$dsup_beam"; both join
  #     :"$dsup_hosts" after those;
  #   * the candidates for a child of type T: the hosts in {:"$dsup_type", T};
  #     for a BEAM child (or a new start of a type no C host advertises) the
  #     hosts in :"$dsup_beam" — the distinct nodes, restricted to `:nodes`,
  #     sorted;
  #   * the owner is libring over the candidates: the instance's ring when
  #     they are all of its nodes (a homogeneous cluster places as plain
  #     libring), else a ring of the candidates added in sorted order.
  alias DistributedSupervisor.Ring

  @beam :"$dsup_beam"
  @type_tag :"$dsup_type"

  @type kind() :: :c | :beam | :fresh

  @spec beam_group() :: atom()
  def beam_group, do: @beam
  @spec type_group(atom()) :: {atom(), atom()}
  def type_group(type), do: {@type_tag, type}

  @spec capability_group?(term()) :: boolean()
  def capability_group?(@beam), do: true
  def capability_group?({@type_tag, _}), do: true
  def capability_group?(_), do: false

  @doc false
  # kind: :c (a C child: only C hosts of its type), :beam (only Elixir
  # hosts), :fresh (a new start: C hosts of the type if any, else Elixir hosts)
  @spec candidates(atom(), [node()], [node()], atom(), kind()) :: [node()]
  def candidates(scope, hosts, allowed, type, kind) do
    c = if kind == :beam, do: [], else: member_nodes(scope, type_group(type), hosts, allowed)

    cond do
      c != [] -> c
      kind == :c -> []
      true -> member_nodes(scope, @beam, hosts, allowed)
    end
  end

  @spec member_nodes(atom(), term(), [node()], [node()]) :: [node()]
  def member_nodes(scope, group, hosts, allowed) do
    scope
    |> :pg.get_members(group)
    |> Enum.map(&node/1)
    |> Enum.uniq()
    |> Enum.filter(&(&1 in hosts and (allowed == [] or &1 in allowed)))
    |> Enum.sort()
  end

  @doc false
  @spec owner(Ring.t(), [node()], term()) :: node() | nil
  def owner(_ring, [], _key), do: nil

  def owner(ring, candidates, key) do
    if length(candidates) == length(Ring.nodes(ring)) and
         Enum.all?(candidates, &Ring.member?(ring, &1)) do
      Ring.node_for(ring, key)
    else
      Ring.node_for(ring_of(candidates), key)
    end
  end

  # A candidate set's ring never changes: keep a few per process.
  defp ring_of(nodes) do
    key = {__MODULE__, nodes}

    case Process.get(key) do
      nil ->
        ring = Ring.new(nodes)
        cached = Process.get({__MODULE__, :keys}, [])

        cached =
          if length(cached) >= 8 do
            Process.delete(List.last(cached))
            List.delete_at(cached, -1)
          else
            cached
          end

        Process.put({__MODULE__, :keys}, [key | cached])
        Process.put(key, ring)
        ring

      ring ->
        ring
    end
  end

  @doc false
  # The kind, type and restart of a cached (wire) spec.
  @spec kind(term()) :: :beam | :c | nil
  def kind(%{beam: _}), do: :beam
  def kind(%{start: _}), do: :c
  def kind(_), do: nil

  @spec type(term()) :: atom()
  def type(%{beam: %{start: {m, _, _}}}), do: m
  def type(%{start: {t, _, _}}), do: t
  def type(_), do: :undefined

  @spec restart(term()) :: :permanent | :transient | :temporary
  def restart(%{restart: r}), do: r
  def restart(%{}), do: :permanent
  def restart(_), do: :temporary
end
