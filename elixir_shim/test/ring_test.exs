defmodule DistributedSupervisor.RingTest do
  use ExUnit.Case, async: true

  alias DistributedSupervisor.Ring

  @nodes [:"a@127.0.0.1", :"b@127.0.0.1", :"c@127.0.0.1"]

  test "128 points per node, sorted; nodes newest first" do
    ring = Ring.new(@nodes)
    hashes = Tuple.to_list(ring.hashes)
    assert length(hashes) == 3 * 128
    assert hashes == Enum.sort(hashes)
    assert Ring.nodes(ring) == Enum.reverse(@nodes)
    assert Ring.add_node(ring, :"a@127.0.0.1") == ring
  end

  test "a key goes to the first point >= its hash, wrapping" do
    ring = Ring.new(@nodes)
    points = Enum.zip(Tuple.to_list(ring.hashes), Tuple.to_list(ring.owners))

    for key <- [:a, "b", 1, {2, 3}, [4], 5.5, %{6 => 7}] do
      h = Ring.key_hash(key)
      {_, owner} = Enum.find(points, hd(points), fn {p, _} -> p >= h end)
      assert Ring.node_for(ring, key) == owner
    end

    # atoms hash as their external format (libring)
    assert Ring.key_hash(:a) == :erlang.phash2(:erlang.term_to_binary(:a), 4_294_967_295)
    assert Ring.key_hash("a") == :erlang.phash2("a", 4_294_967_295)
  end

  test "removing a node gives the ring without it" do
    keys = Enum.to_list(1..2_000)
    full = Ring.new(@nodes)
    without_b = Ring.remove_node(full, :"b@127.0.0.1")
    assert Ring.nodes(without_b) == [:"c@127.0.0.1", :"a@127.0.0.1"]

    assert Enum.map(keys, &Ring.node_for(without_b, &1)) ==
             Enum.map(keys, &Ring.node_for(Ring.new([:"a@127.0.0.1", :"c@127.0.0.1"]), &1))

    # only b's keys moved
    for k <- keys, Ring.node_for(full, k) != :"b@127.0.0.1" do
      assert Ring.node_for(without_b, k) == Ring.node_for(full, k)
    end

    assert Ring.remove_node(Ring.new(), :x@y) == Ring.new()
    assert Ring.node_for(Ring.new(), :k) == nil
  end
end
