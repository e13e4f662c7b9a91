#!/usr/bin/env bash
# Run the Elixir shim's ExUnit suite (doctests, single-node and multi-node
# tests against real dsup-nodes) with a private epmd on a free port.
#
#   elixir_shim/run-tests.sh [mix test args...]     e.g. test/cluster_test.exs
#
# Needs build/dsup-node (run `make` at the repo root first) or $DSUP_NODE.
# Every process this script starts is stopped by pid on exit: epmd, and any
# dsup-node the suite left running (pid files in $DSUP_PIDDIR). No network:
# the project has no dependencies.
set -uo pipefail

SHIM="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$SHIM/.." && pwd)"
cd "$SHIM"

STAGE="$SHIM/_build/run_$$_${RANDOM}"
mkdir -p "$STAGE/pids"
EPMD_PID=""
. "$ROOT/scripts/lib.sh"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    dsup_kill_recorded "$STAGE/pids" run-tests
    dsup_epmd_stop
    rm -rf "$STAGE"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dsup_epmd_start "$STAGE/epmd.log" || { echo "run-tests: could not start epmd" >&2; exit 2; }

export DSUP_PIDDIR="$STAGE/pids"
export DSUP_NODE="${DSUP_NODE:-$ROOT/build/dsup-node}"
export ERL_CRASH_DUMP="$STAGE/erl_crash.dump"
export MIX_ENV=test
echo "run-tests: epmd pid $EPMD_PID on port $ERL_EPMD_PORT, dsup-node $DSUP_NODE"

mix test "$@"
