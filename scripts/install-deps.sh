#!/usr/bin/env bash
# Installs the Debian packages dsup needs, only those whose tool is missing.
# What `make deps` runs (and `make test`/`make demo`/`make bench`/`make fuzz`
# through it); plain `make` never does. Safe to run repeatedly; does nothing
# (and needs no network) when everything is present.
#
# A tool found on PATH counts whatever installed it (asdf, kerl, a source
# build): its Debian package is then not installed.
# DSUP_NO_APT=1: never run apt-get; report what is missing (naming the Debian
# package) and fail if a required tool is.
#
# Usage: install-deps.sh [extra-package ...]   (e.g. clang for `make fuzz`)
set -euo pipefail

# Succeeds when the C compiler finds every header named.
cc_has() { printf '#include <%s>\n' "$@" | "${CC:-cc}" -E -x c - >/dev/null 2>&1; }
ei_has() {
    local d
    d=$(erl -noshell -eval 'io:format("~s",[code:lib_dir(erl_interface)]),halt().' 2>/dev/null) &&
        [ -f "$d/include/ei.h" ]
}
deb_has() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Debian package | required (1) or optional (0) | what | check (succeeds when present)
checks=(
  "make|1|make|command -v make"
  "gcc|1|a C compiler (${CC:-cc})|command -v ${CC:-cc}"
  "erlang-nox|1|erl and erlc|command -v erl && command -v erlc"
  "erlang-dev|1|erl_interface (ei.h)|ei_has"
  "erlang-common-test|1|ct_run|command -v ct_run"
  "elixir|1|elixir and mix|command -v elixir && command -v mix"
  "libuv1-dev|1|uv.h|cc_has uv.h"
  "libcmocka-dev|1|cmocka.h|cc_has stdarg.h stddef.h stdint.h setjmp.h cmocka.h"
  "rebar3|0|rebar3|command -v rebar3"
  "pkg-config|0|pkg-config|command -v pkg-config"
)
for p in "$@"; do
  checks+=("$p|1|$p|deb_has $p")
done

missing=()
required_missing=()
for c in "${checks[@]}"; do
  IFS='|' read -r pkg req what test <<<"$c"
  if ! eval "$test" >/dev/null 2>&1; then
    missing+=("$pkg")
    [ "$req" = 1 ] && required_missing+=("$pkg")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "${DSUP_NO_APT:-}" = 1 ]; then
  for c in "${checks[@]}"; do
    IFS='|' read -r pkg req what test <<<"$c"
    case " ${missing[*]} " in *" $pkg "*)
      echo "install-deps: missing $what (Debian package $pkg)$([ "$req" = 0 ] && echo ', optional')" >&2 ;;
    esac
  done
  if [ ${#required_missing[@]} -gt 0 ]; then
    echo "install-deps: DSUP_NO_APT=1: install ${required_missing[*]} (or the same tools another way) and retry" >&2
    exit 1
  fi
  exit 0
fi

echo "install-deps: installing ${missing[*]} (DSUP_NO_APT=1 to skip)" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq </dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
