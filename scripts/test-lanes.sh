#!/usr/bin/env bash
# make test: the test matrix, one lane per supported Erlang/OTP release.
#
#   scripts/test-lanes.sh [25] [27]      (make test OTP="25 27"; default both)
#
# Lane 25: this machine's Debian 12 packages (OTP 25, Elixir 1.14): the unit
#   tests, the CT suites, the shim's ExUnit suite, the demo (fast mode) and the
#   benchmarks (quick mode).
# Lane 27: Debian 13's OTP 27 and Elixir 1.18, unpacked under build/otp27 by
#   scripts/otp27.sh (Debian's package archive only): the unit tests (their
#   references from OTP 27's erl), the CT suites (BEAM side on OTP 27; the
#   dsup-node as built), the shim's ExUnit suite on Elixir 1.18 (compiler
#   warnings are errors) and the demo (fast mode).
# Both lanes set DSUP_OTHER_ERL to the other release's erl, so the
# mixed-release cases of dsup_terms_SUITE call one dsup-node from both.
#
# The binaries are built beforehand (make test does). Every step runs even
# after a failure; one summary line per lane; exit 1 when any step failed.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
LANES=("$@")
[ ${#LANES[@]} -eq 0 ] && LANES=(25 27)
SYS_ERL="$(command -v erl)"
# The erl that builds the node (its erl_interface): tests that run make use
# it whatever erl the lane's PATH finds first.
export DSUP_BUILD_ERL="$SYS_ERL"
OTP27_BIN="$ROOT/build/otp27/bin"
SUMMARY=()
rc=0

for l in "${LANES[@]}"; do
    case "$l" in 25|27) ;; *) echo "test-lanes: unknown lane '$l' (25 or 27)" >&2; exit 2 ;; esac
done

# Lane 27's toolchain first, so that lane 25's mixed-release cases have it.
otp27_ok=0
if printf '%s\n' "${LANES[@]}" | grep -qx 27; then
    scripts/otp27.sh && otp27_ok=1
fi

# run_step NAME CMD...: run, remember "NAME ok|FAILED"
run_step() {
    local name="$1"; shift
    echo
    echo "==== [lane $LANE] $name: $*"
    local t0=$SECONDS
    if "$@"; then
        STEPS+=("$name ok")
    else
        STEPS+=("$name FAILED")
        LANE_RC=1
    fi
    echo "==== [lane $LANE] $name done in $((SECONDS - t0)) s"
}

unit_bins() {
    local t ok=0
    for t in build/test/test_*; do
        [ -x "$t" ] || continue
        echo "== $t"
        "$t" || ok=1
    done
    return $ok
}

versions() {
    erl -noshell -eval 'io:format("OTP ~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null
    printf ', Elixir %s' "$(elixir -e 'IO.write(System.version())' 2>/dev/null)"
}

lane_25() {
    if [ -x "$OTP27_BIN/erl" ] && [ -f "$ROOT/build/otp27/.ready" ]; then
        export DSUP_OTHER_ERL="$OTP27_BIN/erl"
    else
        unset DSUP_OTHER_ERL
    fi
    run_step unit unit_bins
    run_step ct scripts/run-ct.sh
    run_step shim elixir_shim/run-tests.sh
    run_step demo env DEMO_FAST=1 scripts/demo.sh
    run_step bench bench/run.sh --quick
}

shim_27() {
    (cd elixir_shim && MIX_ENV=test mix compile --force --warnings-as-errors) &&
        elixir_shim/run-tests.sh --warnings-as-errors
}

lane_27() {
    if [ "$otp27_ok" != 1 ]; then
        STEPS+=("setup FAILED (scripts/otp27.sh)")
        LANE_RC=1
        return
    fi
    export PATH="$OTP27_BIN:$PATH"
    export DSUP_OTHER_ERL="$SYS_ERL"
    # Elixir 1.18's build must not replace lane 25's (Elixir 1.14) one.
    export MIX_BUILD_PATH="$ROOT/elixir_shim/_build/otp27_test"
    export CT_LOGDIR="$ROOT/build/ct_logs_otp27"
    run_step unit unit_bins
    run_step ct scripts/run-ct.sh
    run_step shim shim_27
    run_step demo env DEMO_FAST=1 MIX_BUILD_PATH="$ROOT/elixir_shim/_build/otp27_dev" scripts/demo.sh
}

for LANE in "${LANES[@]}"; do
    STEPS=()
    LANE_RC=0
    t0=$SECONDS
    ( "lane_$LANE"
      printf '%s\n' "${STEPS[@]}" > "$ROOT/build/.lane_$LANE.steps"
      echo "$(versions)" > "$ROOT/build/.lane_$LANE.vsn"
      exit $LANE_RC )
    lrc=$?
    steps=$(paste -sd, "$ROOT/build/.lane_$LANE.steps" 2>/dev/null | sed 's/,/, /g')
    vsn=$(cat "$ROOT/build/.lane_$LANE.vsn" 2>/dev/null)
    rm -f "$ROOT/build/.lane_$LANE.steps" "$ROOT/build/.lane_$LANE.vsn"
    [ $lrc -ne 0 ] && rc=1
    SUMMARY+=("lane OTP $LANE ($vsn): $([ $lrc -eq 0 ] && echo PASS || echo FAIL) [$steps] in $((SECONDS - t0)) s")
done

echo
echo "==== test summary"
for s in "${SUMMARY[@]}"; do echo "test: $s"; done
exit $rc
