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

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for f in "$STAGE"/pids/*; do
        [ -e "$f" ] || continue
        p="$(basename "$f")"
        if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -q dsup-node; then
            echo "run-tests: killing leftover dsup-node pid $p"
            kill -KILL "$p" 2>/dev/null
        fi
        rm -f "$f"
    done
    if [ -n "$EPMD_PID" ]; then
        kill -TERM "$EPMD_PID" 2>/dev/null
        wait "$EPMD_PID" 2>/dev/null
    fi
    rm -rf "$STAGE"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for _ in $(seq 1 20); do
    P=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    port_in_use "$P" && continue
    epmd -port "$P" >"$STAGE/epmd.log" 2>&1 &
    EPMD_PID=$!
    ok=""
    for _ in $(seq 1 100); do
        kill -0 "$EPMD_PID" 2>/dev/null || break
        if epmd -port "$P" -names >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.1
    done
    [ -n "$ok" ] && break
    kill -KILL "$EPMD_PID" 2>/dev/null; wait "$EPMD_PID" 2>/dev/null; EPMD_PID=""
done
if [ -z "$EPMD_PID" ]; then echo "run-tests: could not start epmd" >&2; exit 2; fi

export ERL_EPMD_PORT="$P"
export DSUP_PIDDIR="$STAGE/pids"
export DSUP_NODE="${DSUP_NODE:-$ROOT/build/dsup-node}"
export ERL_CRASH_DUMP="$STAGE/erl_crash.dump"
export MIX_ENV=test
echo "run-tests: epmd pid $EPMD_PID on port $P, dsup-node $DSUP_NODE"

mix test "$@"
