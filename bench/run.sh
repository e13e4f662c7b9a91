#!/usr/bin/env bash
# Benchmarks: dsup C workers beside a pure-BEAM baseline (what `make bench` runs).
#
#   bench/run.sh           full run, writes bench/results/: summary.md + summary.csv
#                          (every row), latency.png (latency CDFs), calls.md/.csv
#   bench/run.sh --quick   smoke run (small N, < 1 min), same files under
#                          build/bench/results/; checks only that every row is there
#   bench/run.sh --scale8  only the 2M-children run below (bench/results/scale8.*;
#                          SCALE8_N, SCALE8_HOSTS, SCALE8_BATCH tune it)
#
# Three steps, each its own caller node: bench/call_bench.erl (call round
# trips), bench/http_bench.erl (calls while /metrics is scraped every 10 ms),
# then bench/sup_bench.erl (ring/phash2, start_child, failover, memory, pg sync,
# pg join/leave, scale, shim; it also folds the call rows into the summary).
# The full run ends with bench/scale_bench.erl (2M children over 8 dsup-nodes,
# kill -9 of one: scale8.md/.csv).
# The baseline is bench/baseline/. bench/bench_ring.c is built here against
# build/libdsup_internal.a (it calls the ring and phash2 directly, which the
# sealed libdsup.a keeps hidden) with the project's flags (bench/flags.mk asks
# the Makefile).
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
        --scale8) MODE="scale8" ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
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
. "$ROOT/scripts/lib.sh"

EPMD_PID=""
ERL_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    dsup_stop_pid "$ERL_PID"
    # leftover dsup-nodes, and BEAM peers of sup_bench (beam_<pid>; their
    # cookie names this run)
    dsup_kill_recorded "$PIDDIR" bench dsup-node "dsup_bench_${RUN_ID}_"
    dsup_epmd_stop
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dsup_epmd_start "$WORK/epmd.log" || { echo "bench: could not start epmd" >&2; exit 2; }
export DSUP_ROOT="$ROOT" DSUP_PIDDIR="$PIDDIR" ERL_CRASH_DUMP="$WORK/erl_crash.dump"
echo "bench: epmd pid $EPMD_PID on port $ERL_EPMD_PORT"

erlc -o "$EBIN" bench/*.erl bench/baseline/*.erl test/ct/dsup_test.erl test/ct/dsup_cluster.erl \
    || { echo "bench: compile error" >&2; exit 2; }
# bench_ring (C side of the ring/phash2 rows): the Makefile's CC/CFLAGS/libs.
make --no-print-directory -s build/libdsup_internal.a \
    || { echo "bench: build/libdsup_internal.a does not build (run make first)" >&2; exit 2; }
FLAGS="$(make --no-print-directory -s -f Makefile -f bench/flags.mk bench-flags)" \
    || { echo "bench: could not read the build flags" >&2; exit 2; }
flag() { printf '%s\n' "$FLAGS" | sed -n "s/^$1=//p"; }
# shellcheck disable=SC2046  # the flags are word lists
$(flag BENCH_CC) $(flag BENCH_CFLAGS) $(flag BENCH_LDFLAGS) -o "$WORK/bench_ring" \
    bench/bench_ring.c build/libdsup_internal.a $(flag BENCH_LIBS) \
    || { echo "bench: bench/bench_ring.c does not build" >&2; exit 2; }
export SUP_BENCH_RING_BIN="$WORK/bench_ring"
command -v gnuplot >/dev/null || scripts/install-deps.sh gnuplot-nox \
    || echo "bench: gnuplot-nox not installed, no latency.png" >&2

# The Elixir shim, if it compiles, for the whereis/call rows: built into our
# own directory (MIX_BUILD_PATH), never into elixir_shim/_build.
if [ -f elixir_shim/mix.exs ] && command -v mix >/dev/null; then
    if (cd elixir_shim && MIX_BUILD_PATH="$WORK/shim_build" mix compile) >"$WORK/shim_compile.log" 2>&1 \
       && [ -f "$WORK/shim_build/lib/distributed_supervisor/ebin/Elixir.DistributedSupervisor.beam" ]; then
        export SUP_BENCH_SHIM_EBIN="$WORK/shim_build/lib/distributed_supervisor/ebin"
    else
        echo "bench: elixir_shim does not compile (see $WORK/shim_compile.log): shim rows pending" >&2
    fi
fi

# run_step NAME MODULE: one caller node erl -run MODULE main MODE OUT LOGS
run_step() {
    erl -name "$1_${RUN_ID}@127.0.0.1" -setcookie "dsup_bench_${RUN_ID}_${RANDOM}" \
        -kernel prevent_overlapping_partitions false \
        -noshell -pa "$EBIN" -run "$2" main "$MODE" "$OUT" "$WORK/logs" </dev/null &
    ERL_PID=$!
    wait "$ERL_PID"
    local rc=$?
    ERL_PID=""
    [ $rc -ne 0 ] && echo "bench: $2 FAILED (exit $rc); dsup-node logs in $WORK/logs" >&2
    return $rc
}

START=$SECONDS
rc1=0 rc2=0 rc3=0 rc4=0
if [ "$MODE" != scale8 ]; then
    rm -f "$OUT/calls.csv" "$OUT/http.csv" "$OUT/summary.csv"
    run_step bench call_bench; rc1=$?
    run_step bench_http http_bench; rc3=$?
    run_step bench_sup sup_bench; rc2=$?
fi
# The 2M-children scale run (bench/scale_bench.erl: 8 dsup-nodes, kill -9 of
# one, several GB of RAM): full run (BENCH_SCALE8=0 skips it) or --scale8.
if [ "$MODE" = scale8 ] || { [ "$MODE" = full ] && [ "${BENCH_SCALE8:-1}" != 0 ]; }; then
    run_step bench_scale8 scale_bench; rc4=$?
fi
rc=$(( rc1 != 0 ? rc1 : rc3 != 0 ? rc3 : rc2 != 0 ? rc2 : rc4 ))
echo "bench: done in $(( SECONDS - START )) s"

if [ "$MODE" = quick ] && [ $rc -eq 0 ]; then
    # smoke check: every row is present (no time is asserted)
    for r in call_seq_small call_seq_1k call_conc8_small call_async32_small start_seq start_conc start_cpu start_batch \
             shim_whereis shim_call shim_call_name_vs_pid failover mem_idle_child mem_idle_child_scale pg_sync pg_join_batch pg_join_single \
             ring_node_for phash2_small phash2_1k scale_start scale_rss scale_call metrics_under_load \
             cluster_mem_2 cluster_mem_4 move_rate move_gap move_other_calls checkpoint_cost; do
        grep -q "^$r," "$OUT/summary.csv" || { echo "bench: row $r missing from $OUT/summary.csv" >&2; rc=1; }
    done
    [ -s "$OUT/summary.md" ] || { echo "bench: $OUT/summary.md missing" >&2; rc=1; }
    [ $rc -eq 0 ] && echo "bench: quick run OK, every row present"
fi
exit $rc
