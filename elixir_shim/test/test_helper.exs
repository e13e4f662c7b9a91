# Distribution for the tests: a unique long name on 127.0.0.1 and a cookie of
# our own. Epmd: the VM uses $ERL_EPMD_PORT (default 4369); when no epmd
# answers there, one is started on that port and killed (by OS pid) at the end.
alias DistributedSupervisor.TestNode
alias DistributedSupervisor.TestSupport

epmd_port =
  case System.get_env("ERL_EPMD_PORT") do
    p when p in [nil, ""] -> 4369
    p -> String.to_integer(p)
  end

epmd_os_pid = TestSupport.ensure_epmd(epmd_port)

{:ok, _} =
  Node.start(:"shim_#{System.pid()}_#{System.unique_integer([:positive])}@127.0.0.1", :longnames)

Node.set_cookie(:"dsup_shim_#{System.pid()}_#{:rand.uniform(1_000_000_000)}")

# dsup-node logs: one directory per run (runs older than an hour are removed)
unless System.get_env("DSUP_LOG_DIR") do
  logs = Path.expand("../_build/test/dsup_nodes", __DIR__)
  hour_ago = System.os_time(:second) - 3600

  for dir <- Path.wildcard(Path.join(logs, "run_*")),
      File.stat!(dir, time: :posix).mtime < hour_ago,
      do: File.rm_rf(dir)

  System.put_env("DSUP_LOG_DIR", Path.join(logs, "run_#{System.pid()}"))
end

exe = TestNode.exe()

unless exe && File.regular?(exe) do
  IO.puts(:stderr, "dsup-node not found (set DSUP_NODE or run `make` at the repo root)")
  System.halt(2)
end

# The dsup-node the doctests and the single-node tests run their children on.
# Each shim instance asks it to run the same-named supervisor instance.
main = TestNode.start(name: "shim_main")
Application.put_env(:distributed_supervisor, :test_main_node, main)

ExUnit.after_suite(fn _ ->
  TestNode.stop_all()
  TestSupport.stop_epmd(epmd_os_pid)
end)

ExUnit.start(timeout: 120_000, capture_log: true)
