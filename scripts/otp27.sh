#!/usr/bin/env bash
# Set up Debian 13's Erlang/OTP 27 and Elixir 1.18 under build/otp27/, runnable
# on this Debian 12 machine, for the OTP 27 test lane (make test OTP=27).
#
#   scripts/otp27.sh            set up (idempotent; fast when already done)
#   scripts/otp27.sh --env      set up, then print `export PATH=...` for eval
#
# How: the .debs are fetched with `apt-get download` under a private apt
# configuration (its own sources file for the trixie suite, same archive URI
# as this machine's own apt sources, its own lists/cache under build/otp27/apt;
# the system's apt configuration is never touched, nothing is installed with
# dpkg -i), unpacked with `dpkg -x` into build/otp27/root together with
# Debian 13's libc6. Debian 13's beam.smp needs a newer glibc than Debian 12
# has, so every ELF executable of that OTP is renamed X.elf and replaced by a
# small script that runs it through Debian 13's own loader:
#     ld-linux-x86-64.so.2 --library-path <its libs> --argv0 X X.elf ...
# (--library-path is not inherited by children: erl starts beam.smp, beam.smp
# erl_child_setup and inet_gethost, ct_run starts erl... each has its wrapper.)
# The erl/start scripts get ROOTDIR pointing at the unpacked tree.
# build/otp27/bin holds erl, erlc, ct_run, epmd, escript, elixir, mix, iex.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${OTP27_DIR:-$ROOT/build/otp27}"
SUITE=trixie
# OTP, common_test and what it needs, erlang-dev for ct.hrl, Elixir, and the
# shared libraries their ELF files need that Debian 12's versions cannot give.
PKGS=(erlang-base erlang-common-test erlang-dev erlang-crypto erlang-debugger erlang-wx
      erlang-ftp erlang-inets erlang-runtime-tools erlang-snmp erlang-mnesia erlang-ssh
      erlang-ssl erlang-public-key erlang-asn1 erlang-tools erlang-xmerl erlang-syntax-tools
      erlang-parsetools libjs-jquery libjs-jquery-tablesorter
      elixir
      libc6 libtinfo6 zlib1g libssl3t64 libzstd1 libsystemd0 libcap2 libgcc-s1 libstdc++6)
STAMP="$DIR/.ready"

env_lines() { echo "export PATH=\"$DIR/bin:\$PATH\""; }

if [ -f "$STAMP" ] && [ "$STAMP" -nt "$0" ]; then
    [ "${1:-}" = "--env" ] && env_lines
    exit 0
fi

say() { echo "otp27: $*" >&2; }

# ---- the archive URI this machine's apt already uses for Debian (not a host
# name written here): first URIs/deb line whose suite is the plain release.
archive_uri() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk 'BEGIN{RS=""} /Suites:[^\n]*(bookworm|trixie|stable)( |\n|$)/ && !/-security/ {
                     if (match($0, /URIs:[ \t]*[^ \t\n]+/)) { s=substr($0,RSTART,RLENGTH); sub(/URIs:[ \t]*/,"",s); print s; exit } }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return 0; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($(i+1) !~ /security/) { print $i; exit } else break } }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return 0; }
    done
    return 1
}

URI="$(archive_uri)" || { say "no Debian archive URI found in /etc/apt/sources.list{,.d}"; exit 2; }
APT="$DIR/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/etc/preferences.d" "$APT/etc/apt.conf.d" \
         "$APT/etc/trusted.gpg.d" "$DIR/debs"
: > "$APT/status"
cat > "$APT/etc/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $URI $SUITE main
EOF
cat > "$APT/apt.conf" <<EOF
Dir::Etc "$APT/etc";
Dir::Etc::sourcelist "$APT/etc/sources.list";
Dir::Etc::sourceparts "-";
Dir::Etc::preferencesparts "$APT/etc/preferences.d";
Dir::Etc::trustedparts "$APT/etc/trusted.gpg.d";
Dir::State "$APT";
Dir::State::lists "$APT/lists";
Dir::State::status "$APT/status";
Dir::Cache "$APT/cache";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::Retries "2";
Acquire::http::Timeout "30";
EOF
export APT_CONFIG="$APT/apt.conf"

# ---- download (cached: a .deb already in debs/ is not fetched again)
need_download=0
for p in "${PKGS[@]}"; do
    ls "$DIR/debs/${p}_"*.deb >/dev/null 2>&1 || { need_download=1; break; }
done
if [ "$need_download" = 1 ]; then
    say "fetching Debian 13 ($SUITE) package lists from $URI"
    if ! apt-get -q update -o Debug::NoLocking=1 >"$APT/update.log" 2>&1 ||
       grep -qE '^(Err|W: Failed|E: )' "$APT/update.log"; then
        say "ERROR: cannot reach the Debian archive $URI for $SUITE (see $APT/update.log):"
        tail -n 5 "$APT/update.log" >&2
        exit 2
    fi
    say "downloading ${#PKGS[@]} packages into $DIR/debs"
    if ! (cd "$DIR/debs" && apt-get -q download -o Debug::NoLocking=1 "${PKGS[@]}" >"$APT/download.log" 2>&1); then
        say "ERROR: apt-get download failed (see $APT/download.log):"
        tail -n 5 "$APT/download.log" >&2
        exit 2
    fi
fi

# ---- unpack into a fresh tree
say "unpacking into $DIR/root"
rm -rf "$DIR/root.tmp" "$DIR/bin"
mkdir -p "$DIR/root.tmp"
for p in "${PKGS[@]}"; do
    deb=$(ls -t "$DIR/debs/${p}_"*.deb | head -n1)
    dpkg -x "$deb" "$DIR/root.tmp"
done
R="$DIR/root.tmp"
LD_SO="/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
[ -e "$R$LD_SO" ] || LD_SO="/lib64/ld-linux-x86-64.so.2"
[ -e "$R$LD_SO" ] || { say "no ld-linux-x86-64.so.2 in Debian 13's libc6"; exit 2; }

# ---- wrap every ELF executable under usr/lib/erlang (and nothing of libc)
final="$DIR/root"
libpath="$final/usr/lib/x86_64-linux-gnu:$final/lib/x86_64-linux-gnu"
n=0
while IFS= read -r -d '' f; do
    [ -L "$f" ] && continue
    head -c 4 "$f" | grep -q $'\x7fELF' || continue
    case "$f" in *.so|*.so.*) continue ;; esac
    mv "$f" "$f.elf"
    rel="${f#"$R"}"
    cat > "$f" <<EOF
#!/bin/sh
# Debian 13's $(basename "$f"), run through Debian 13's own loader (scripts/otp27.sh)
exec "$final$LD_SO" --library-path "$libpath" --argv0 "\$0" "$final$rel.elf" "\$@"
EOF
    chmod 755 "$f"
    n=$((n + 1))
done < <(find "$R/usr/lib/erlang" -type f -perm -u+x -print0)

# ---- ROOTDIR in the erl/start scripts
for s in "$R"/usr/lib/erlang/bin/erl "$R"/usr/lib/erlang/bin/start "$R"/usr/lib/erlang/erts-*/bin/erl \
         "$R"/usr/lib/erlang/erts-*/bin/start "$R"/usr/lib/erlang/bin/start_erl "$R"/usr/lib/erlang/erts-*/bin/start_erl; do
    [ -f "$s" ] || continue
    sed -i -e "s|^\([[:space:]]*\)ROOTDIR=.*|\1ROOTDIR=\"$final/usr/lib/erlang\"|" "$s"
done

rm -rf "$final"
mv "$R" "$final"

# ---- bin/: what a lane puts first on PATH
mkdir -p "$DIR/bin"
for b in erl erlc ct_run epmd escript; do
    ln -sf "$final/usr/lib/erlang/bin/$b" "$DIR/bin/$b"
done
for b in elixir elixirc mix iex; do
    ln -sf "$final/usr/lib/elixir/bin/$b" "$DIR/bin/$b"
done

# ---- check it runs
rel=$(PATH="$DIR/bin:$PATH" erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().' 2>&1) || true
if [ "$rel" != "27" ]; then
    say "ERROR: the unpacked erl does not run (got: $rel)"
    exit 2
fi
ver=$(PATH="$DIR/bin:$PATH" elixir -e 'IO.write(System.version())' 2>&1) || true
say "ready: OTP $rel ($(cat "$final"/usr/lib/erlang/releases/27/OTP_VERSION 2>/dev/null)), Elixir $ver, $n ELF files wrapped"
touch "$STAMP"
[ "${1:-}" = "--env" ] && env_lines
exit 0
