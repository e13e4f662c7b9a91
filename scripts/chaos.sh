#!/usr/bin/env bash
# make chaos / make chaos-quick: dsup-nodes and Elixir nodes, each in its own
# Linux network namespace with its own epmd, under a seeded random schedule of
# partitions, kills, SIGSTOPs, epmd and pg-scope kills; a workload on the
# Elixir nodes and a checker (test/chaos/dsup_chaos.erl).
#
#   scripts/chaos.sh [--quick] [--rounds N] [--seeds "S1 S2"] [--dsup N] [--elixir M]
#                    [--settle SECONDS] [--quorum]   (instances in quorum mode)
#   scripts/chaos.sh --scale [--dsup N] [--elixir M] [--children N] [--kill K]
#                    (preload N children, kill K dsup-nodes at once, measure)
#
# Network: a "switch" namespace holds a bridge; every node namespace (and the
# driver's) has one veth into it and an address in 10.213.0.0/24. The addresses
# exist only inside namespaces this script creates (the root namespace has no
# route to them), and every namespace is deleted on exit, after the processes
# inside it (all started by this run) are killed by pid. Needs root.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

QUICK=0; KILL=0; QUORUM=0; ROUNDS=""; SEEDS=""; NDSUP=""; NELIXIR=""; CHILDREN=""; SCALE=0; SETTLE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --rounds) ROUNDS="$2"; shift ;;
        --seeds) SEEDS="$2"; shift ;;
        --dsup) NDSUP="$2"; shift ;;
        --elixir) NELIXIR="$2"; shift ;;
        --children) CHILDREN="$2"; shift ;;
        --settle) SETTLE="$2"; shift ;;
        --scale) SCALE=1 ;;
        --kill) KILL="$2"; shift ;;
        --quorum) QUORUM=1 ;;
        *) echo "chaos: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
if [ "$SCALE" = 1 ]; then
    : "${NDSUP:=10}" "${NELIXIR:=2}" "${CHILDREN:=20000}" "${SEEDS:=1}" "${ROUNDS:=1}"
elif [ "$QUICK" = 1 ]; then
    # the fixed-seed run of make test: each seed's rounds include the faults
    # that once broke an invariant (see test/chaos/README.md)
    : "${NDSUP:=3}" "${NELIXIR:=2}" "${SEEDS:=11 12}" "${ROUNDS:=6}"
else
    : "${NDSUP:=5}" "${NELIXIR:=2}" "${SEEDS:=1 2 3 4}" "${ROUNDS:=25}"
fi
: "${CHILDREN:=0}" "${SETTLE:=45}"

[ "$(id -u)" -eq 0 ] || { echo "chaos: needs root (ip netns)" >&2; exit 2; }
command -v ip >/dev/null || { echo "chaos: needs iproute2 (ip)" >&2; exit 2; }

RUN="dsc$$"
STAGE="$(mktemp -d /tmp/dsup-chaos-XXXXXX)"
SW="${RUN}sw"
NSES=()

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # every process in our namespaces was started by this run: kill them by pid
    for ns in "${NSES[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    done
    for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if { [ "$rc" -ne 0 ] || [ -n "${DSUP_CHAOS_KEEP:-}" ]; } && [ -d "$STAGE/logs" ]; then
        echo "chaos: logs kept in $STAGE/logs"
    else
        rm -rf "$STAGE"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ns_add NAME IP: a namespace with lo and eth0 (IP/24) on the switch's bridge
IDX=0
ns_add() {
    local ns="$1" ip="$2"
    IDX=$((IDX + 1))
    ip netns add "$ns" || exit 1
    NSES+=("$ns")
    ip -n "$SW" link add "p$IDX" type veth peer name eth0 netns "$ns" || exit 1
    ip -n "$SW" link set "p$IDX" master br0 up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

ip netns add "$SW" || exit 1
NSES+=("$SW")
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
ip -n "$SW" link set lo up

# node list for the driver: kind name namespace ip
NODES="$STAGE/nodes"
: > "$NODES"
ns_add "${RUN}drv" 10.213.0.2
for i in $(seq 1 "$NDSUP"); do
    ns_add "${RUN}d$i" "10.213.0.$((10 + i))"
    echo "dsup d$i ${RUN}d$i 10.213.0.$((10 + i))" >> "$NODES"
done
for i in $(seq 1 "$NELIXIR"); do
    ns_add "${RUN}e$i" "10.213.0.$((200 + i))"
    echo "elixir e$i ${RUN}e$i 10.213.0.$((200 + i))" >> "$NODES"
done

(cd elixir_shim && MIX_ENV=dev mix compile --no-deps-check >/dev/null) || { echo "chaos: mix compile failed" >&2; exit 1; }
mkdir -p "$STAGE/ebin" "$STAGE/logs"
erlc -o "$STAGE/ebin" test/chaos/*.erl || exit 1

# the driver's own epmd, then the driver (hidden) in its namespace
ip netns exec "${RUN}drv" epmd -daemon
export DSUP_CHAOS_STAGE="$STAGE" DSUP_CHAOS_NODES="$NODES" DSUP_CHAOS_ROOT="$ROOT"
export DSUP_CHAOS_SHIM_EBIN="$ROOT/elixir_shim/_build/dev/lib/distributed_supervisor/ebin"
ip netns exec "${RUN}drv" erl -noshell -name "drv@10.213.0.2" -hidden -setcookie "chaos_$$_$RANDOM" \
    -kernel net_ticktime 3 -kernel logger_level critical -pa "$STAGE/ebin" \
    -eval "dsup_chaos:main(#{seeds => [$(echo "$SEEDS" | tr ' ' ',')], rounds => $ROUNDS, children => $CHILDREN, scale => $SCALE =:= 1, settle_s => $SETTLE, regressions => $QUICK =:= 1, quorum => $QUORUM =:= 1, kill => max(1, case $KILL of 0 -> $NDSUP div 10; K -> K end)})" </dev/null
rc=$?
# a node built with sanitizers (DSUP_NODE=build/san/dsup-node) reports in its log
if grep -lE "AddressSanitizer|LeakSanitizer|runtime error:" "$STAGE"/logs/*.log 2>/dev/null; then
    echo "chaos: sanitizer reports in the node logs above"
    rc=1
fi
exit "$rc"
