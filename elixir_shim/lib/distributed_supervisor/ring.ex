defmodule DistributedSupervisor.Ring do
  @moduledoc """
  A consistent-hash ring that places keys exactly like libring 1.7's `HashRing`
  (which upstream `distributed_supervisor` uses) and like the ring inside every
  `dsup-node`.

    * Each node gets 128 points `:erlang.phash2({node, i}, 4294967295)` for `i`
      in `1..128`; the points are kept sorted; when two points collide the node
      added earlier keeps it.
    * A key goes to the node of the first point `>= :erlang.phash2(key, 4294967295)`,
      wrapping round to the smallest point.
    * Atom keys are hashed as `:erlang.phash2(:erlang.term_to_binary(atom), 4294967295)`
      (so their placement depends on how the running OTP release encodes atoms: the
      dsup-node's `--ring-atoms` must match; its default is the release it was built
      with).

  The ring is a plain value: readers look it up in the instance's ETS table and
  search it without messaging any process.

      iex> ring = DistributedSupervisor.Ring.new([:"a@h", :"b@h"])
      iex> DistributedSupervisor.Ring.nodes(ring)
      [:"b@h", :"a@h"]
      iex> DistributedSupervisor.Ring.node_for(ring, "some key") in [:"a@h", :"b@h"]
      true
      iex> DistributedSupervisor.Ring.node_for(DistributedSupervisor.Ring.new(), :k)
      nil
  """

  @hash_range 4_294_967_295
  @weight 128

  defstruct hashes: {}, owners: {}, nodes: []

  @typedoc "A ring: sorted point hashes, the node of each point, nodes newest first."
  @type t :: %__MODULE__{hashes: tuple(), owners: tuple(), nodes: [node()]}

  @doc "An empty ring, or a ring with `nodes` added in list order."
  @spec new([node()]) :: t()
  def new(nodes \\ []), do: Enum.reduce(nodes, %__MODULE__{}, &add_node(&2, &1))

  @doc "The ring's nodes, the most recently added first (like `HashRing.nodes/1`)."
  @spec nodes(t()) :: [node()]
  def nodes(%__MODULE__{nodes: nodes}), do: nodes

  @doc "Whether `node` is on the ring."
  @spec member?(t(), node()) :: boolean()
  def member?(%__MODULE__{nodes: nodes}, node), do: node in nodes

  @doc "Adds `node` (a no-op when it is already there); existing points win collisions."
  @spec add_node(t(), node()) :: t()
  def add_node(%__MODULE__{nodes: nodes} = ring, node) when is_atom(node) do
    if node in nodes do
      ring
    else
      taken = ring.hashes |> Tuple.to_list() |> MapSet.new()

      new_points =
        1..@weight
        |> Enum.map(&:erlang.phash2({node, &1}, @hash_range))
        |> Enum.uniq()
        |> Enum.reject(&MapSet.member?(taken, &1))
        |> Enum.map(&{&1, node})

      points(ring) |> Enum.concat(new_points) |> rebuild([node | nodes])
    end
  end

  @doc "Removes `node` and its points (a no-op when it is not there)."
  @spec remove_node(t(), node()) :: t()
  def remove_node(%__MODULE__{nodes: nodes} = ring, node) do
    if node in nodes do
      points(ring) |> Enum.reject(fn {_, n} -> n == node end) |> rebuild(List.delete(nodes, node))
    else
      ring
    end
  end

  @doc "The node that owns `key`, or `nil` when the ring is empty."
  @spec node_for(t(), term()) :: node() | nil
  def node_for(%__MODULE__{hashes: {}}, _key), do: nil

  def node_for(%__MODULE__{hashes: hashes, owners: owners}, key) do
    h = key_hash(key)
    n = tuple_size(hashes)

    case lower_bound(hashes, h, 0, n) do
      ^n -> elem(owners, 0)
      i -> elem(owners, i)
    end
  end

  @doc "The hash a key is placed by (see the module doc for atoms)."
  @spec key_hash(term()) :: non_neg_integer()
  def key_hash(key) when is_atom(key),
    do: :erlang.phash2(:erlang.term_to_binary(key), @hash_range)

  def key_hash(key), do: :erlang.phash2(key, @hash_range)

  defp points(%__MODULE__{hashes: hashes, owners: owners}) do
    Enum.zip(Tuple.to_list(hashes), Tuple.to_list(owners))
  end

  defp rebuild(points, nodes) do
    sorted = Enum.sort(points)

    %__MODULE__{
      hashes: sorted |> Enum.map(&elem(&1, 0)) |> List.to_tuple(),
      owners: sorted |> Enum.map(&elem(&1, 1)) |> List.to_tuple(),
      nodes: nodes
    }
  end

  # first index i in [lo, hi) with elem(hashes, i) >= h; hi when none
  defp lower_bound(_hashes, _h, lo, hi) when lo >= hi, do: lo

  defp lower_bound(hashes, h, lo, hi) do
    mid = div(lo + hi, 2)

    if elem(hashes, mid) < h,
      do: lower_bound(hashes, h, mid + 1, hi),
      else: lower_bound(hashes, h, lo, mid)
  end
end
