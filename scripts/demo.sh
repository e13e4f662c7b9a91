#!/usr/bin/env bash
# make demo: a real mixed cluster on loopback — two dsup-nodes (C) and two
# Elixir nodes — walking through the README's story with real output.
#
#   scripts/demo.sh            (DEMO_FAST=1: fewer workers, for CI)
#
# This script starts a private epmd on a free port and the first Elixir node
# (scripts/demo.exs), which starts the dsup-nodes and the second Elixir node
# itself and stops them. Everything started here is stopped by pid on exit.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. "$ROOT/scripts/lib.sh"
STAGE="$(mktemp -d /tmp/dsup-demo-XXXXXX)"
EPMD_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # dsup-nodes the demo could not stop itself (it records their pids)
    dsup_kill_recorded "$STAGE/pids" demo
    dsup_epmd_stop
    rm -rf "$STAGE"
    exit "$rc"
}
trap cleanup EXIT INT TERM

step() { printf '==> %s\n' "$*"; }

step "building the Elixir shim"
(cd elixir_shim && MIX_ENV=dev mix compile --no-deps-check >/dev/null) || { echo "mix compile failed"; exit 1; }
# MIX_BUILD_PATH: where the OTP 27 lane keeps its Elixir 1.18 build
EBIN="${MIX_BUILD_PATH:-$ROOT/elixir_shim/_build/dev}/lib/distributed_supervisor/ebin"

dsup_epmd_start /dev/null || { echo "could not start epmd"; exit 1; }
step "starting a private epmd on port $ERL_EPMD_PORT"

mkdir -p "$STAGE/pids" "$STAGE/logs"
export DSUP_NODE="$ROOT/build/dsup-node" DSUP_DEMO_STAGE="$STAGE" DSUP_DEMO_EBIN="$EBIN"
cookie="demo_$$_$RANDOM"
elixir --name "demo_e1_$$@127.0.0.1" --cookie "$cookie" -pa "$EBIN" scripts/demo.exs </dev/null
rc=$?
if [ $rc -eq 0 ]; then
    step "demo finished: every process it started has been stopped"
else
    echo "demo FAILED (exit $rc); the end of each dsup-node log:"
    for f in "$STAGE"/logs/*.log; do [ -e "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
fi
exit $rc
