# Elixir hosts (issue 14): the shim's own BEAM children beside the upstream
# library's mechanism (bench/baseline, in plain OTP), same run, same peers.
# Run by bench/shim_hosts.sh on a fresh Elixir node (the caller):
#
#   start_hosts_seq  Elixir children started one after another from one host
#                    into a 3-host ring, until every host sees every child
#   whereis_host     DistributedSupervisor.whereis/2 on a host (baseline:
#                    upstream's whereis: pg lookup + is_process_alive RPC)
#   mem_host_child   memory per idle hosted child on one host (shim) vs a
#                    plain DynamicSupervisor child (same Agent child)
#
# Prints a markdown table and writes it to $BENCH_OUT when set.

alias DistributedSupervisor, as: DS

defmodule B do
  def time_us(fun) do
    t0 = System.monotonic_time(:microsecond)
    r = fun.()
    {System.monotonic_time(:microsecond) - t0, r}
  end

  def wait(fun, timeout \\ 60_000) do
    deadline = System.monotonic_time(:millisecond) + timeout

    Stream.repeatedly(fn -> fun.() end)
    |> Enum.find(fn ok ->
      ok or (System.monotonic_time(:millisecond) > deadline and raise("bench: wait timed out")) or
        (Process.sleep(2) && false)
    end)
  end

  def median(l), do: l |> Enum.sort() |> Enum.at(div(length(l), 2))

  def peer(prefix, beams) do
    paths =
      :code.get_path()
      |> Enum.map(&to_string/1)
      |> Enum.reject(&String.starts_with?(&1, to_string(:code.root_dir())))

    args =
      (["-setcookie", Atom.to_string(Node.get_cookie()), "-connect_all", "false"] ++
         Enum.flat_map(paths, &["-pa", &1]))
      |> Enum.map(&to_charlist/1)

    {:ok, peer, node} =
      :peer.start(%{
        name: :"#{prefix}_#{System.pid()}_#{System.unique_integer([:positive])}",
        host: ~c"127.0.0.1",
        longnames: true,
        args: args,
        wait_boot: 30_000
      })

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:distributed_supervisor])
    for {m, bin} <- beams, do: {:module, ^m} = :erpc.call(node, :code, :load_binary, [m, ~c"bench", bin])
    {peer, node}
  end
end


# Run on the peers (shipped there as a binary).
work_src = ~S"""
defmodule BenchHostsWork do
  alias DistributedSupervisor, as: DS

  def start_shim(name, n), do: for(i <- 1..n, do: {:ok, _, _} = DS.start_child(name, {Agent, fn -> i end}))
  def start_bl(inst, n), do: for(i <- 1..n, do: {:ok, _, _} = :bl_dsup.start_child(inst, {:k, i}))
  def start_bl_keys(inst, keys), do: for(k <- keys, do: {:ok, _, _} = :bl_dsup.start_child(inst, k))

  def whereis_shim(name, iters) do
    kt = DS.children(name) |> Map.keys() |> List.to_tuple()
    k = tuple_size(kt)
    t0 = System.monotonic_time(:nanosecond)
    for i <- 1..iters, do: true = is_pid(DS.whereis(name, elem(kt, rem(i, k))))
    (System.monotonic_time(:nanosecond) - t0) / iters / 1000
  end

  def whereis_bl(inst, keys, iters) do
    kt = List.to_tuple(keys)
    k = tuple_size(kt)
    t0 = System.monotonic_time(:nanosecond)
    for i <- 1..iters, do: true = is_pid(:bl_dsup.whereis(inst, elem(kt, rem(i, k))))
    (System.monotonic_time(:nanosecond) - t0) / iters / 1000
  end

  def mem do
    for p <- Process.list(), do: :erlang.garbage_collect(p)
    :erlang.memory(:total)
  end

  def memory(name, n) do
    {:ok, _} = DS.start(name: name, nodes: [node()])
    m0 = mem()
    for _ <- 1..n, do: {:ok, _, _} = DS.start_child(name, {Agent, fn -> 0 end}, node())
    m1 = mem()
    GenServer.stop(name)
    {:ok, sup} = DynamicSupervisor.start_link(strategy: :one_for_one)
    Process.unlink(sup)
    m2 = mem()
    for _ <- 1..n, do: {:ok, _} = DynamicSupervisor.start_child(sup, {Agent, fn -> 0 end})
    m3 = mem()
    Process.exit(sup, :shutdown)
    {(m1 - m0) / n, (m3 - m2) / n}
  end
end
"""

n_start = String.to_integer(System.get_env("N_START", "2000"))
n_mem = String.to_integer(System.get_env("N_MEM", "20000"))
reps = String.to_integer(System.get_env("REPS", "3"))

beams =
  for f <- Path.wildcard(Path.expand("baseline/*.erl", __DIR__)) do
    {:ok, m, bin} = :compile.file(String.to_charlist(f), [:binary])
    {:module, ^m} = :code.load_binary(m, String.to_charlist(f), bin)
    {m, bin}
  end

beams = beams ++ Code.compile_string(work_src)

peers = for i <- 1..3, do: B.peer("bh#{i}", beams)
hosts = Enum.map(peers, &elem(&1, 1))
[e1, e2, _e3] = hosts

rows = []

# ---- start rate ----------------------------------------------------------
shim_rates =
  for r <- 1..reps do
    name = :"Elixir.BenchShim#{r}"
    for h <- hosts, do: :erpc.call(h, DS, :start, [[name: name, nodes: hosts]])
    B.wait(fn -> Enum.all?(hosts, &(length(:erpc.call(&1, DS, :nodes, [name])) == 3)) end)

    {us, _} =
      B.time_us(fn ->
        :erpc.call(e1, BenchHostsWork, :start_shim, [name, n_start], :infinity)

        B.wait(fn -> Enum.all?(hosts, &(:erpc.call(&1, DS, :count_children, [name]).active == n_start)) end)
      end)

    for h <- hosts, do: :erpc.call(h, GenServer, :stop, [name])
    n_start * 1_000_000 / us
  end

bl_rates =
  for r <- 1..reps do
    inst = :"bl_bench_#{r}"
    for h <- hosts, do: :ok = :erpc.call(h, :bl_dsup, :start, [inst])
    scope = :bl_dsup.names(inst).scope

    B.wait(fn ->
      Enum.all?(hosts, fn h -> :erpc.call(h, :pg, :get_members, [scope, :"$bl_hosts"]) |> length() == 3 end)
    end)

    {us, _} =
      B.time_us(fn ->
        :erpc.call(e1, BenchHostsWork, :start_bl, [inst, n_start], :infinity)

        B.wait(fn ->
          Enum.all?(hosts, fn h -> length(:erpc.call(h, :pg, :which_groups, [scope])) >= n_start end)
        end)
      end)

    for h <- hosts, do: :erpc.call(h, :bl_dsup, :stop, [inst])
    n_start * 1_000_000 / us
  end

s = B.median(shim_rates)
b = B.median(bl_rates)

rows = [
  {"start_hosts_seq",
   "Elixir children started sequentially from one host into 3 Elixir hosts, until every host sees every child",
   "starts/s", s, b, s / b, "≥ 20× baseline", s >= 20 * b}
  | rows
]

# ---- whereis --------------------------------------------------------------
name = BenchShimW
for h <- hosts, do: :erpc.call(h, DS, :start, [[name: name, nodes: hosts]])
B.wait(fn -> Enum.all?(hosts, &(length(:erpc.call(&1, DS, :nodes, [name])) == 3)) end)
keys = for i <- 1..300, do: {:w, i}
:erpc.call(e1, BenchHostsWork, :start_shim, [name, 300], :infinity)
B.wait(fn -> :erpc.call(e2, DS, :count_children, [name]).active == 300 end)

inst = :bl_bench_w
for h <- hosts, do: :ok = :erpc.call(h, :bl_dsup, :start, [inst])
scope = :bl_dsup.names(inst).scope
B.wait(fn -> Enum.all?(hosts, fn h -> :erpc.call(h, :pg, :get_members, [scope, :"$bl_hosts"]) |> length() == 3 end) end)
:erpc.call(e1, BenchHostsWork, :start_bl_keys, [inst, keys], :infinity)
B.wait(fn -> length(:erpc.call(e2, :pg, :which_groups, [scope])) >= 300 end)

w_shim = :erpc.call(e2, BenchHostsWork, :whereis_shim, [name, 200_000], :infinity)
w_bl = :erpc.call(e2, BenchHostsWork, :whereis_bl, [inst, keys, 3_000], :infinity)

rows = [
  {"whereis_host", "DistributedSupervisor.whereis/2 on an Elixir host, 300 children on 3 hosts",
   "µs/op", w_shim, w_bl, w_bl / w_shim, "≤ 2 µs/op", w_shim <= 2}
  | rows
]

# ---- memory per hosted child ------------------------------------------------
mem_name = BenchShimM

{shim_b, plain_b} = :erpc.call(e2, BenchHostsWork, :memory, [mem_name, n_mem], :infinity)

rows = [
  {"mem_host_child",
   "memory per idle Elixir child on its host (Agent), N = #{n_mem}: shim host vs a plain DynamicSupervisor child",
   "bytes/child", shim_b, plain_b, plain_b / shim_b, "≤ plain + 200 B", shim_b <= plain_b + 200}
  | rows
]

for {p, _} <- peers, do: :peer.stop(p)

fmt = fn
  v when is_float(v) and v >= 100 -> :erlang.float_to_binary(v, decimals: 0)
  v when is_float(v) -> :erlang.float_to_binary(v, decimals: 2)
  v -> to_string(v)
end

table =
  [
    "| scenario | unit | dsup shim | baseline | advantage | target | met |",
    "|---|---|---:|---:|---:|---|---|"
    | for {id, what, unit, d, bl, adv, target, met} <- Enum.reverse(rows) do
        "| #{what} (`#{id}`) | #{unit} | #{fmt.(d)} | #{fmt.(bl)} | #{fmt.(adv)}× | #{target} | #{if met, do: "yes", else: "no"} |"
      end
  ]
  |> Enum.join("\n")

IO.puts(table)
if out = System.get_env("BENCH_OUT"), do: File.write!(out, table <> "\n")
