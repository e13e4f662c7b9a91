#!/usr/bin/env bash
# Instructions a dsup-node executes per child of a batch start, as the host
# of the batch and as an observer of one started elsewhere (callgrind:
# instruction counts do not depend on the load of a shared box, wall time
# does). bench/cg_batch.erl says how. About a minute.
#
#   bench/cg_batch.sh            build/dsup-node
#   DSUP_NODE=path bench/cg_batch.sh
# Profiles in build/cg/ (callgrind_annotate them); own epmd, nodes stopped by pid.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
. scripts/lib.sh
command -v valgrind >/dev/null || { echo "cg_batch: valgrind not installed" >&2; exit 2; }
EXE="${DSUP_NODE:-$ROOT/build/dsup-node}"
OUT="$ROOT/build/cg"
WORK="$OUT/run_$$"
mkdir -p "$WORK/ebin" "$WORK/pids"
cat > "$WORK/cg-node.sh" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file=$WORK/callgrind.out.%p "$EXE" "\$@"
WRAP
chmod +x "$WORK/cg-node.sh"
dsup_epmd_start "$WORK/epmd.log" || { echo "cg_batch: could not start epmd" >&2; exit 2; }
ERL_PID=""
cleanup() { dsup_stop_pid "$ERL_PID"; dsup_kill_recorded "$WORK/pids" cg_batch dsup-node; dsup_epmd_stop; }
trap cleanup EXIT
export DSUP_ROOT="$ROOT" DSUP_PIDDIR="$WORK/pids" DSUP_NODE="$EXE"
erlc -o "$WORK/ebin" bench/cg_batch.erl bench/baseline/bl_ring.erl test/ct/dsup_test.erl || exit 2
erl -name "cg_batch_$$@127.0.0.1" -setcookie "cg_batch_$$_${RANDOM}" -noshell -pa "$WORK/ebin" \
    -run cg_batch main "$WORK/cg-node.sh" "$WORK/logs" </dev/null >"$WORK/phases.txt" &
ERL_PID=$!
wait "$ERL_PID" || { echo "cg_batch: driver failed (logs in $WORK)" >&2; exit 1; }
ERL_PID=""
# the dumps are numbered in phase order: .1 host, .2 obs
i=0
while read -r phase n; do
    i=$((i + 1))
    f=$(ls "$WORK"/callgrind.out.*."$i" 2>/dev/null | head -n1)
    [ -n "$f" ] || { echo "cg_batch: no dump for $phase" >&2; exit 1; }
    total=$(sed -n 's/^summary: //p' "$f")
    echo "$phase: $n children, $((total / n)) instructions per child ($f)"
done < "$WORK/phases.txt"
