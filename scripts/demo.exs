# The dsup demo, run by scripts/demo.sh on the first Elixir node.
#
# Two dsup-nodes (C) and two Elixir nodes, one supervisor: start C workers and
# Elixir GenServer children side by side, show where they run (each on a host
# able to run it), call and cast them, look them up, kill -9 a dsup-node and
# stop an Elixir node's instance and watch their children come back on the
# survivors, then stop everything. Every step prints what it does; any
# surprise exits non-zero.

alias DistributedSupervisor, as: DS
alias DistributedSupervisor.TestNode

defmodule Demo do
  def step(text), do: IO.puts("==> " <> text)
  def say(text), do: IO.puts("    " <> text)

  def check!(true, _what), do: :ok
  def check!(other, what), do: raise("demo check failed: #{what} (got #{inspect(other)})")

  def ms(t0), do: System.monotonic_time(:millisecond) - t0
end

defmodule Demo.Listener do
  @behaviour DistributedSupervisor.Listener
  # Counts events in a public ETS table the demo reads at the end.
  def on_process_start(_name, _id, _pid), do: bump(:process_start)
  def on_process_stop(_name, _id, _pids), do: bump(:process_stop)
  def on_node_up(_name, node, _info), do: bump({:node_up, node})
  def on_node_down(_name, node, _info), do: bump({:node_down, node})
  defp bump(key), do: :ets.update_counter(:demo_events, key, 1, {key, 0}) && :ok
end

# An ordinary Elixir GenServer, as an app written for the hex library has.
# Compiled here and loaded on the second Elixir node too (both host it).
greeter_src = ~S'''
defmodule Demo.Greeter do
  use GenServer
  def start_link(opts), do: GenServer.start_link(__MODULE__, opts, name: opts[:name])
  @impl true
  def init(opts), do: {:ok, Keyword.get(opts, :greeting, "hello")}
  @impl true
  def handle_call({:greet, who}, _from, g), do: {:reply, "#{g}, #{who} (from #{node()})", g}
end
'''
[{Demo.Greeter, greeter_bin}] = Code.compile_string(greeter_src)

fast? = System.get_env("DEMO_FAST") in ["1", "true"]
workers = if fast?, do: 40, else: 100
stage = System.fetch_env!("DSUP_DEMO_STAGE")
sup = Demo.DistSup

:ets.new(:demo_events, [:named_table, :public])

Demo.step("starting two dsup-nodes (the C-node) with --supervisor #{inspect(sup)}")
log_dir = Path.join(stage, "logs")
System.put_env("DSUP_PIDDIR", Path.join(stage, "pids"))
a = TestNode.start(name: "demo_c1", supervisor: sup, log_dir: log_dir)
b = TestNode.start(name: "demo_c2", supervisor: sup, log_dir: log_dir, connect: [node(), a.node])
Demo.say("#{a.node} (os pid #{a.os_pid}) and #{b.node} (os pid #{b.os_pid}), hidden C-nodes")

Demo.step("starting a second Elixir node")
paths = :code.get_path() |> Enum.map(&to_string/1) |> Enum.reject(&String.starts_with?(&1, to_string(:code.root_dir())))
args = ["-setcookie", Atom.to_string(Node.get_cookie()), "-connect_all", "false"] ++ Enum.flat_map(paths, &["-pa", &1])
{:ok, peer, e2} =
  :peer.start(%{name: :"demo_e2_#{System.pid()}", host: ~c"127.0.0.1", longnames: true,
                args: Enum.map(args, &to_charlist/1), wait_boot: 30_000})
Demo.say("#{e2}")

Demo.step("DistributedSupervisor.start_link(name: #{inspect(sup)}, monitor_nodes: true, listeners: Demo.Listener) on both Elixir nodes")
{:ok, _} = DS.start_link(name: sup, monitor_nodes: true, listeners: Demo.Listener)
{:ok, _} = :erpc.call(e2, Application, :ensure_all_started, [:distributed_supervisor])
{:module, Demo.Greeter} = :erpc.call(e2, :code, :load_binary, [Demo.Greeter, ~c"demo_greeter", greeter_bin])
{:ok, _} = :erpc.call(e2, DS, :start, [[name: sup]])
TestNode.wait_in_ring(a, sup)
TestNode.wait_in_ring(b, sup)
TestNode.wait_in_ring(e2, sup)
Demo.say("DS.nodes(#{inspect(sup)}) = #{inspect(Enum.sort(DS.nodes(sup)))}")

Demo.step("starting #{workers} named C workers from Elixir: {:counter, name: {:worker, i}, value: i}")
t0 = System.monotonic_time(:millisecond)
for i <- 1..workers do
  {:ok, pid, {:worker, ^i}} = DS.start_child(sup, {:counter, name: {:worker, i}, value: i})
  Demo.check!(is_pid(pid), "start_child returns a pid")
end
Demo.say("started in #{Demo.ms(t0)} ms")
Demo.check!(DS.start_child(sup, {:counter, name: {:worker, 1}}) |> elem(0) == :error, "a duplicate name is refused")
Demo.say("a second {:worker, 1} is refused: #{inspect(DS.start_child(sup, {:counter, name: {:worker, 1}}))}")

Demo.step("where they run (placement by the libring ring, the same on Elixir and C)")
spread = fn ->
  DS.children(sup) |> Enum.frequencies_by(fn {_name, {pid, _spec}} -> node(pid) end)
end
for {n, count} <- spread.(), do: Demo.say("#{n}: #{count} workers")
Demo.check!(Enum.all?(1..workers, fn i -> DS.node_for(sup, {:worker, i}, :counter) == node(DS.whereis(sup, {:worker, i})) end),
       "each worker runs on its node_for")
Demo.say("every worker runs on DS.node_for(sup, name, :counter): the ring owner among the hosts that run :counter")

greeters = if fast?, do: 6, else: 10
Demo.step("starting #{greeters} Elixir GenServer children under the same supervisor: {Demo.Greeter, name: {:greeter, i}}")
for i <- 1..greeters do
  {:ok, pid, {:greeter, ^i}} = DS.start_child(sup, {Demo.Greeter, name: {:greeter, i}, greeting: "hi"})
  Demo.check!(node(pid) in [node(), e2], "an Elixir child runs on an Elixir host")
  Demo.check!(node(pid) == DS.node_for(sup, {:greeter, i}, Demo.Greeter), "on its owner among the Elixir hosts")
end
for {n, count} <- spread.(), do: Demo.say("#{n}: #{count} children")
case DS.local_children(sup) do
  [mine | _] -> Demo.say("a local child is a local pid: Process.alive?(#{inspect(mine)}) = #{Process.alive?(mine)}")
  # node names differ per run, and so does the ring: all may land on the other host
  [] -> Demo.say("this run's ring put every greeter on #{e2}: DS.local_children(sup) = []")
end
Demo.say("DS.call(sup, {:greeter, 1}, {:greet, \"dsup\"}) = #{inspect(DS.call(sup, {:greeter, 1}, {:greet, "dsup"}))}")
{_, g1spec} = DS.children(sup)[{:greeter, 1}]
Demo.say("its spec, as the hex library shapes it: #{inspect(g1spec)}")
Demo.check!(DS.start_child(sup, {:counter, name: {:greeter, 1}}) |> elem(0) == :error, "one name space for both kinds")
Demo.say("a C worker named {:greeter, 1} is refused: one name space")

Demo.step("calling and casting them")
Demo.say("DS.call(sup, {:worker, 7}, :get) = #{inspect(DS.call(sup, {:worker, 7}, :get))}")
:ok = DS.cast(sup, {:worker, 7}, :inc)
Demo.say("DS.cast(sup, {:worker, 7}, :inc) = :ok; then :get = #{inspect(DS.call(sup, {:worker, 7}, :get))}")
Demo.check!(DS.call(sup, {:worker, 7}, :get) == 8, "the cast was applied")
Demo.say("GenServer.call(DS.via_name(sup, {:worker, 9}), {:add, 100}) = #{inspect(GenServer.call(DS.via_name(sup, {:worker, 9}), {:add, 100}))}")
Demo.say(":sys.get_state(DS.whereis(sup, {:worker, 3})) = #{inspect(:sys.get_state(DS.whereis(sup, {:worker, 3})))}")

Demo.step("looking them up")
w5 = DS.whereis(sup, {:worker, 5})
Demo.say("DS.whereis(sup, {:worker, 5}) = #{inspect(w5)} on #{node(w5)}; DS.whois(sup, pid) = #{inspect(DS.whois(sup, w5))}")
Demo.say("DS.whereis(sup, :nobody) = #{inspect(DS.whereis(sup, :nobody))}")
TestNode.wait_until(fn -> map_size(:erpc.call(e2, DS, :children, [sup])) == workers + greeters end, 10_000)
Demo.say("map_size(DS.children(sup)) = #{map_size(DS.children(sup))} here, " <>
      "#{map_size(:erpc.call(e2, DS, :children, [sup]))} on #{e2} (each Elixir node keeps its own copy)")

Demo.step("kill -9 #{a.node} (os pid #{a.os_pid}) while its workers are running")
victims = for {name, {pid, _}} <- DS.children(sup), node(pid) == a.node, do: name
Demo.say("#{length(victims)} workers live there")
t0 = System.monotonic_time(:millisecond)
TestNode.kill(a)
back? = fn ->
  Enum.all?(victims, fn name ->
    case DS.whereis(sup, name) do
      pid when is_pid(pid) -> node(pid) == b.node
      _ -> false
    end
  end)
end
TestNode.wait_until(back?, 10_000)
took = Demo.ms(t0)
Demo.say("all #{length(victims)} are back on #{b.node} after #{took} ms")
Demo.check!(took < 1_000, "failover within a second")
Demo.say("DS.nodes(sup) = #{inspect(DS.nodes(sup))}")
Demo.say("DS.call(sup, hd(victims), :get) = #{inspect(DS.call(sup, hd(victims), :get))} (restarted from its cached spec)")
for {n, count} <- spread.(), do: Demo.say("#{n}: #{count} children")

Demo.step("stopping the instance on #{e2}: its Elixir children move here, by their own names")
moving = for {name, {pid, _}} <- DS.children(sup), node(pid) == e2, do: name
:ok = :erpc.call(e2, GenServer, :stop, [sup])
TestNode.wait_until(fn ->
  Enum.all?(moving, fn name -> (p = DS.whereis(sup, name)) != :undefined and node(p) == node() end)
end, 10_000)
Demo.say("#{length(moving)} greeters now run on #{node()}; DS.nodes(sup) = #{inspect(Enum.sort(DS.nodes(sup)))}")
Demo.say("DS.call(sup, {:greeter, 2}, {:greet, \"again\"}) = #{inspect(DS.call(sup, {:greeter, 2}, {:greet, "again"}))}")
for {n, count} <- spread.(), do: Demo.say("#{n}: #{count} children")

Demo.step("listener events seen on this node")
for {k, v} <- :ets.tab2list(:demo_events) |> Enum.sort(), do: Demo.say("#{inspect(k)}: #{v}")

Demo.step("shutting down: stop this node's instance (its children with it), SIGTERM the surviving dsup-node, stop the second Elixir node")
:ok = GenServer.stop(sup)
{:ok, status} = TestNode.stop(b)
Demo.say("#{b.node} exited with status #{status}")
:peer.stop(peer)
Demo.say("#{e2} stopped")
