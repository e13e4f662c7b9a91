#!/usr/bin/env bash
# check-symbols.sh BUILD EI_DIR — the sealed surface (what `make check-symbols`
# runs): libdsup.a and dsup-node export exactly the functions that
# include/dsup.h declares DSUP_EXTERN (dsup-node also exports libei whole, for
# plugins). Anything else global is an internal name leaking into every
# program that links dsup, and fails the check.
set -euo pipefail
BUILD="${1:-build}"
EI_DIR="$2"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The public names: every DSUP_EXTERN declaration in the header (the name
# before its parameter list, parenthesised or not).
sed -n 's/^DSUP_EXTERN .*[ *(]\(dsup_[a-z0-9_]*\))\{0,1\}(.*/\1/p' "$ROOT/include/dsup.h" | sort -u > "$tmp/public"
# The ABI 1 registration symbol: declared only where it is defined (the
# header's macro of that name passes the size).
echo dsup_register_worker_type >> "$tmp/public"
sort -u -o "$tmp/public" "$tmp/public"

defined() { nm "$@" 2>/dev/null | awk '$2 ~ /^[TDBRVWiu]$/ {print $3}' | sort -u; }

defined -g --defined-only "$BUILD/libdsup.a" > "$tmp/lib"
defined -D --defined-only "$BUILD/dsup-node" > "$tmp/bin"
defined -g --defined-only "$EI_DIR/lib/libei.a" > "$tmp/ei"
# What the toolchain itself puts into every executable.
printf '%s\n' _IO_stdin_used __bss_start _edata _end _fini _init __data_start \
    data_start _start __dso_handle _DYNAMIC _GLOBAL_OFFSET_TABLE_ | sort -u > "$tmp/crt"

rc=0
extra_lib=$(comm -23 "$tmp/lib" "$tmp/public")
missing=$(comm -13 "$tmp/lib" "$tmp/public")
extra_bin=$(comm -23 "$tmp/bin" "$tmp/public" | comm -23 - "$tmp/ei" | comm -23 - "$tmp/crt")
if [ -n "$extra_lib" ]; then
    echo "check-symbols: libdsup.a exports names outside include/dsup.h:"; echo "$extra_lib" | sed 's/^/  /'; rc=1
fi
if [ -n "$missing" ]; then
    echo "check-symbols: include/dsup.h declares names libdsup.a does not define:"; echo "$missing" | sed 's/^/  /'; rc=1
fi
if [ -n "$extra_bin" ]; then
    echo "check-symbols: dsup-node exports names outside include/dsup.h and libei:"; echo "$extra_bin" | sed 's/^/  /'; rc=1
fi
[ $rc -ne 0 ] || echo "check-symbols: OK ($(wc -l < "$tmp/public") public functions; libdsup.a and dsup-node export nothing else but libei)"
exit $rc
