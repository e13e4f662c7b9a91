#!/usr/bin/env bash
# Run the Common Test suites in test/ct against build/dsup-node (what `make ct` runs).
#
# Everything runs on 127.0.0.1 with a private epmd on a free port; every process
# this script starts is stopped by pid on exit. Extra arguments go to ct_run,
# e.g.  scripts/run-ct.sh -suite dsup_node_SUITE -case ping_hidden
#
# Environment: DSUP_NODE (binary, default build/dsup-node), DSUP_LOG_LEVEL
# (passed to every dsup-node as --log-level), CT_LOGDIR (default build/ct_logs).
# Exit status: 0 only if every test case passed (a failed or auto-skipped case,
# a compile error or a harness error gives non-zero).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

LOGDIR="${CT_LOGDIR:-$ROOT/build/ct_logs}"
RUN_ID="$$_${RANDOM}"
STAGE="$ROOT/build/ct/run_$RUN_ID"      # suites are compiled here, not in test/ct
EBIN="$STAGE/ebin"
PIDDIR="$STAGE/pids"
RESULTS="$STAGE/results.txt"
OUT="$STAGE/ct_run.out"
mkdir -p "$LOGDIR" "$STAGE/src" "$EBIN" "$PIDDIR"
. "$ROOT/scripts/lib.sh"
# staging dirs of runs older than an hour (concurrent runs are left alone)
find "$ROOT/build/ct" -maxdepth 1 -name 'run_*' -mmin +60 -exec rm -rf {} + 2>/dev/null
: > "$RESULTS"

EPMD_PID=""
CT_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    dsup_stop_pid "$CT_PID"
    # dsup-nodes started by dsup_test that are still running (pid files)
    dsup_kill_recorded "$PIDDIR" run-ct
    dsup_epmd_stop
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- a private epmd on a free port (not -daemon: we own its pid)
dsup_epmd_start "$STAGE/epmd.log" || { echo "run-ct: could not start epmd" >&2; exit 2; }
echo "run-ct: epmd pid $EPMD_PID on port $ERL_EPMD_PORT"

export DSUP_ROOT="$ROOT"
export DSUP_PIDDIR="$PIDDIR"
export DSUP_CT_RESULTS="$RESULTS"
export DSUP_LOG_DIR="$LOGDIR/dsup_nodes"
export ERL_CRASH_DUMP="$STAGE/erl_crash.dump"   # never litter the repo root
if [ -z "${DSUP_NODE:-}" ] && [ ! -x "$ROOT/build/dsup-node" ]; then
    echo "run-ct: warning: $ROOT/build/dsup-node not built (run make build)" >&2
fi

# ---- compile (suites and helpers); errors stop here with a clear message
cp test/ct/*.erl "$STAGE/src/"
for d in test/ct/*_data; do [ -d "$d" ] && cp -r "$d" "$STAGE/src/"; done
if ! erlc -o "$EBIN" "$STAGE"/src/*.erl; then
    echo "run-ct: CT SUMMARY: compile error" >&2
    exit 2
fi
cp "$EBIN"/*.beam "$STAGE/src/"    # ct_run finds suites (and up-to-date beams) in -dir

NODE="ct_${RUN_ID}@127.0.0.1"
COOKIE="dsup_ct_${RUN_ID}_${RANDOM}"
echo "run-ct: ct node $NODE, logs in $LOGDIR"

ct_run -name "$NODE" -setcookie "$COOKIE" -noshell \
    -pa "$EBIN" -dir "$STAGE/src" -logdir "$LOGDIR" \
    -ct_hooks dsup_cth "$@" </dev/null > >(tee "$OUT") 2>&1 &
CT_PID=$!
wait "$CT_PID"
CT_RC=$?
CT_PID=""

COMPLETE="$(grep -a 'TEST COMPLETE' "$OUT" | tail -n1)"
pass=$(grep -c '^PASS ' "$RESULTS")
fail=$(grep -c '^FAIL ' "$RESULTS")
askip=$(grep -c '^AUTO_SKIP ' "$RESULTS")
uskip=$(grep -c '^SKIP ' "$RESULTS")

echo
echo "run-ct: ---- per-case results ($RESULTS)"
sed -e 's/^/  /' "$RESULTS"
rc=0
[ -z "$COMPLETE" ] && { echo "run-ct: no TEST COMPLETE line: the run did not finish"; rc=2; }
[ "$fail" -gt 0 ] && rc=1
[ "$askip" -gt 0 ] && rc=1
[ "$pass" -eq 0 ] && rc=1
[ "$CT_RC" -ne 0 ] && [ "$rc" -eq 0 ] && rc=$CT_RC
grep -aq 'failed' <<<"$COMPLETE" && ! grep -aq ' 0 failed' <<<"$COMPLETE" && rc=1
echo "run-ct: CT SUMMARY: $pass passed, $fail failed, $askip auto-skipped, $uskip skipped${COMPLETE:+ | $COMPLETE} (ct_run exit $CT_RC) => $([ $rc -eq 0 ] && echo OK || echo FAILED)"
exit $rc
