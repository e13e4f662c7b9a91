#!/usr/bin/env bash
# The Elixir-hosts benchmark rows (bench/shim_hosts_bench.exs) beside the
# upstream mechanism (bench/baseline): a private epmd, three BEAM peers, all
# stopped on exit.  N_START, N_MEM, REPS and BENCH_OUT tune it.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/lib.sh"
EPMD_PID=""
trap 'dsup_epmd_stop' EXIT
(cd elixir_shim && MIX_ENV=dev mix compile >/dev/null) || { echo "mix compile failed"; exit 1; }
EBIN="$ROOT/elixir_shim/_build/dev/lib/distributed_supervisor/ebin"
dsup_epmd_start /dev/null || { echo "could not start epmd"; exit 1; }
elixir --name "bench_hosts_$$@127.0.0.1" --cookie "bench_$$_$RANDOM" -pa "$EBIN" bench/shim_hosts_bench.exs </dev/null
