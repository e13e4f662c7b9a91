#!/usr/bin/env bash
# Benchmarks: dsup C workers beside a pure-BEAM baseline (what `make bench` runs).
#
#   bench/run.sh           full run, writes bench/results/calls.md and calls.csv
#   bench/run.sh --quick   smoke run (small N), writes build/bench/results/calls.*
#
# Own epmd on a free port, unique node names, every process it starts is
# stopped by pid on exit. DSUP_NODE overrides the binary (default build/dsup-node).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

MODE="full"
for a in "$@"; do
    case "$a" in
        --quick) MODE="quick" ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown argument $a" >&2; exit 2 ;;
    esac
done
OUT="$ROOT/bench/results"
[ "$MODE" = quick ] && OUT="$ROOT/build/bench/results"

RUN_ID="$$_${RANDOM}"
WORK="$ROOT/build/bench/run_$RUN_ID"
EBIN="$WORK/ebin"
PIDDIR="$WORK/pids"
mkdir -p "$EBIN" "$PIDDIR" "$OUT"
find "$ROOT/build/bench" -maxdepth 1 -name 'run_*' -mmin +60 -exec rm -rf {} + 2>/dev/null

EPMD_PID=""
ERL_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$ERL_PID" ] && kill -0 "$ERL_PID" 2>/dev/null; then
        kill -TERM "$ERL_PID" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$ERL_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$ERL_PID" 2>/dev/null
    fi
    for f in "$PIDDIR"/*; do
        [ -e "$f" ] || continue
        p="$(basename "$f")"
        if [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -q dsup-node; then
            echo "bench: killing leftover dsup-node pid $p"
            kill -KILL "$p" 2>/dev/null
        fi
        rm -f "$f"
    done
    if [ -n "$EPMD_PID" ]; then kill -TERM "$EPMD_PID" 2>/dev/null; wait "$EPMD_PID" 2>/dev/null; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for attempt in $(seq 1 20); do
    P=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    port_in_use "$P" && continue
    epmd -port "$P" >"$WORK/epmd.log" 2>&1 &
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
[ -z "$EPMD_PID" ] && { echo "bench: could not start epmd" >&2; exit 2; }
export ERL_EPMD_PORT="$P"
export DSUP_ROOT="$ROOT" DSUP_PIDDIR="$PIDDIR" ERL_CRASH_DUMP="$WORK/erl_crash.dump"
echo "bench: epmd pid $EPMD_PID on port $P"

erlc -o "$EBIN" bench/*.erl test/ct/dsup_test.erl || { echo "bench: compile error" >&2; exit 2; }

erl -name "bench_${RUN_ID}@127.0.0.1" -setcookie "dsup_bench_${RUN_ID}_${RANDOM}" \
    -noshell -pa "$EBIN" -run call_bench main "$MODE" "$OUT" "$WORK/logs" </dev/null &
ERL_PID=$!
wait "$ERL_PID"
rc=$?
ERL_PID=""
[ $rc -ne 0 ] && echo "bench: FAILED (exit $rc); dsup-node logs in $WORK/logs" >&2
exit $rc
