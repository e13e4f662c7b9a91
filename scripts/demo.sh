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
STAGE="$(mktemp -d /tmp/dsup-demo-XXXXXX)"
EPMD_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # dsup-nodes the demo could not stop itself (it records their pids)
    for f in "$STAGE"/pids/*; do
        [ -e "$f" ] || continue
        kill -KILL "$(basename "$f")" 2>/dev/null
    done
    [ -n "$EPMD_PID" ] && kill -TERM "$EPMD_PID" 2>/dev/null && wait "$EPMD_PID" 2>/dev/null
    rm -rf "$STAGE"
    exit "$rc"
}
trap cleanup EXIT INT TERM

step() { printf '==> %s\n' "$*"; }

step "building the Elixir shim"
(cd elixir_shim && MIX_ENV=dev mix compile --no-deps-check >/dev/null) || { echo "mix compile failed"; exit 1; }
EBIN="$ROOT/elixir_shim/_build/dev/lib/distributed_supervisor/ebin"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
       echo $((20000 + RANDOM % 20000)))
step "starting a private epmd on port $port"
epmd -port "$port" </dev/null >/dev/null 2>&1 &
EPMD_PID=$!
export ERL_EPMD_PORT=$port
for _ in $(seq 1 100); do epmd -port "$port" -names >/dev/null 2>&1 && break; sleep 0.05; done

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
