#!/usr/bin/env bash
# Instructions and allocations per start on a dsup-node, under callgrind
# (what README's "Instructions a dsup-node executes per start" reports):
#
#   bench/start_cost.sh [WARM [N]]    (defaults 3000 2000)
#
# bench/start_cost.erl says what each phase does. For each phase: Ir per
# start from the frame's arrival to the reply's write (conn.c on_read, which
# flushes the reply) and in total, and calls per start of malloc, calloc and
# realloc from the program (libc's own calls among them left out). Counts
# are instructions, not time: the load of the machine does not change them.
# Own epmd on a free port; every process it starts is stopped by pid.
# DSUP_NODE overrides the binary (default build/dsup-node).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
WARM="${1:-3000}"
N="${2:-2000}"
EXE="${DSUP_NODE:-$ROOT/build/dsup-node}"
command -v valgrind >/dev/null || { echo "start_cost: valgrind not installed" >&2; exit 2; }
[ -x "$EXE" ] || { echo "start_cost: $EXE not built (run make)" >&2; exit 2; }
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

WORK="$ROOT/build/bench/start_cost_$$"
mkdir -p "$WORK/ebin"
A_PID="" B_PID=""
cleanup() {
    # A's counters are dumped already: no graceful stop under valgrind
    [ -n "$A_PID" ] && kill -KILL "$A_PID" 2>/dev/null && wait "$A_PID" 2>/dev/null
    dsup_stop_pid "$B_PID"
    dsup_epmd_stop
}
trap cleanup EXIT
erlc -o "$WORK/ebin" bench/start_cost.erl || exit 2
dsup_epmd_start "$WORK/epmd.log" || { echo "start_cost: could not start epmd" >&2; exit 2; }

COOKIE="start_cost_$$"
A="sca_$$@127.0.0.1"
B="scb_$$@127.0.0.1"
# B's instance starts later, from the script (the local phases need A alone).
"$EXE" --name "$B" --cookie "$COOKIE" --log-level warn >"$WORK/b.log" 2>&1 &
B_PID=$!
valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$WORK/cg.out" \
    "$EXE" --name "$A" --cookie "$COOKIE" --connect "$B" --log-level warn \
    --supervisor Elixir.StartCost >"$WORK/a.log" 2>&1 &
A_PID=$!
erl -noshell -name "scc_$$@127.0.0.1" -setcookie "$COOKIE" -pa "$WORK/ebin" \
    -run start_cost main "$A" "$B" "$A_PID" "$WARM" "$N" || { echo "start_cost: see $WORK" >&2; exit 1; }

# Ir of on_read and the total, calls of the allocators by the program.
for f in "$WORK"/cg.out.*; do
    phase=$(sed -n 's/^desc: Trigger: dump //p' "$f")
    ann=$(callgrind_annotate --inclusive=yes --threshold=100 --tree=caller "$f" 2>/dev/null)
    printf '%s\n' "$ann" | awk -v n="$N" -v phase="$phase" '
        function num(s) { gsub(",", "", s); return s + 0 }
        /PROGRAM TOTALS/ { total = num($1) }
        /^ *[0-9,]+ .*\*  .*conn\.c:on_read / { read = num($1) }
        /^ *[0-9,]+ .* < / { if (match($0, /\(([0-9,]+)x\)/)) { c = substr($0, RSTART + 1, RLENGTH - 3); pend[++np] = $0; cnt[np] = num(c) } next }
        /\*  .*malloc\.c:(malloc|calloc|realloc) / {
            fn = $0; sub(/.*malloc\.c:/, "", fn); sub(/ .*/, "", fn)
            for (i = 1; i <= np; i++) if (pend[i] !~ /malloc\.c:/) calls[fn] += cnt[i]
        }
        /^$/ { np = 0 }
        END { printf "%-8s Ir/start %6.0f (on_read %6.0f)  malloc %.2f  calloc %.2f  realloc %.2f per start\n",
                     phase, total / n, read / n, calls["malloc"] / n, calls["calloc"] / n, calls["realloc"] / n }'
done
rm -rf "$WORK"
