#!/usr/bin/env bash
# Installs the Debian packages dsup needs, only those that are missing.
# Safe to run repeatedly; does nothing (and needs no network) when all are present.
set -euo pipefail

# Usage: install-deps.sh [extra-package ...]   (e.g. clang for `make fuzz`)
pkgs=(erlang-nox erlang-dev elixir libuv1-dev libcmocka-dev rebar3 erlang-common-test
      make gcc pkg-config "$@")
# HTTP endpoints (--http; see README "Metrics and status pages") and their tests.
pkgs+=(libh2o-dev prometheus chromium fonts-dejavu-core)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq </dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
