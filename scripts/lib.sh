# shellcheck shell=bash
# Shared helpers for the scripts that run dsup-nodes (scripts/run-ct.sh,
# bench/run.sh, elixir_shim/run-tests.sh, scripts/demo.sh). Source it (bash):
#
#   . "$ROOT/scripts/lib.sh"
#
# Functions, all safe under `set -u`; call them in the script's own shell (not
# in $(...)), so that the epmd they start stays a child the script can wait for:
#
#   dsup_epmd_start LOGFILE     start a private epmd on a free port
#   dsup_epmd_stop              stop it
#   dsup_stop_pid PID [TENTHS]  TERM, wait up to TENTHS/10 s, then KILL
#   dsup_kill_recorded DIR LABEL [PATTERN] [BEAM_PATTERN]
#                               kill the leftover processes recorded in DIR

EPMD_PID="${EPMD_PID:-}"

# dsup_port_in_use PORT: true if something accepts TCP connections on
# 127.0.0.1:PORT.
dsup_port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# dsup_epmd_start LOGFILE: start epmd (not -daemon, so its pid is known) on a
# random free port in 20000..59999, its output going to LOGFILE. Tries up to 20
# ports, waiting up to ~10 s for each epmd to answer. On success sets EPMD_PID,
# exports ERL_EPMD_PORT and returns 0; on failure leaves EPMD_PID empty (and
# every epmd it started stopped) and returns 1. Prints nothing.
dsup_epmd_start() {
    local log="$1" port ok _
    EPMD_PID=""
    for _ in $(seq 1 20); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        dsup_port_in_use "$port" && continue
        epmd -port "$port" </dev/null >"$log" 2>&1 &
        EPMD_PID=$!
        ok=""
        for _ in $(seq 1 100); do
            kill -0 "$EPMD_PID" 2>/dev/null || break
            if ERL_EPMD_PORT="$port" epmd -port "$port" -names >/dev/null 2>&1; then ok=1; break; fi
            sleep 0.1
        done
        if [ -n "$ok" ]; then
            export ERL_EPMD_PORT="$port"
            return 0
        fi
        kill -KILL "$EPMD_PID" 2>/dev/null; wait "$EPMD_PID" 2>/dev/null; EPMD_PID=""
    done
    return 1
}

# dsup_epmd_stop: TERM the epmd of dsup_epmd_start (if any) and reap it.
dsup_epmd_stop() {
    if [ -n "$EPMD_PID" ]; then
        kill -TERM "$EPMD_PID" 2>/dev/null
        wait "$EPMD_PID" 2>/dev/null
    fi
    return 0
}

# dsup_stop_pid PID [TENTHS]: if PID is set and alive, send it TERM, wait up to
# TENTHS tenths of a second (default 50: 5 s) for it to go, then KILL it.
dsup_stop_pid() {
    local pid="${1:-}" tenths="${2:-50}" _
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    fi
    return 0
}

# dsup_cmdline_has PID PATTERN: true if /proc/PID/cmdline (arguments joined by
# spaces) matches the grep PATTERN.
dsup_cmdline_has() {
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -q -- "$2"
}

# dsup_kill_recorded DIR LABEL [PATTERN] [BEAM_PATTERN]: for each pid file in
# DIR (a file named after the OS pid, as dsup_test and TestNode write them under
# $DSUP_PIDDIR), KILL that process if its command line still matches PATTERN
# (default dsup-node; a pid reused by something else is left alone), printing
# "LABEL: killing leftover dsup-node pid N"; then remove the file. Files named
# beam_<pid> (BEAM peers, as bench/sup_bench.erl records them) are matched
# against BEAM_PATTERN instead ("LABEL: killing leftover BEAM peer pid N");
# without BEAM_PATTERN they are only removed.
dsup_kill_recorded() {
    local dir="$1" label="$2" pat="${3:-dsup-node}" beam_pat="${4:-}" f p
    for f in "$dir"/*; do
        [ -e "$f" ] || continue
        p="$(basename "$f")"
        case "$p" in
            beam_*)
                p="${p#beam_}"
                if [ -n "$beam_pat" ] && dsup_cmdline_has "$p" "$beam_pat"; then
                    echo "$label: killing leftover BEAM peer pid $p"
                    kill -KILL "$p" 2>/dev/null
                fi ;;
            *)
                if dsup_cmdline_has "$p" "$pat"; then
                    echo "$label: killing leftover dsup-node pid $p"
                    kill -KILL "$p" 2>/dev/null
                fi ;;
        esac
        rm -f "$f"
    done
    return 0
}
