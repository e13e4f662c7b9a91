#!/usr/bin/env bash
# check-layers.sh — the layering rule of c_src/ (README, Architecture): a file
# includes headers of its own layer or of layers below it, never above.
# Layers, lowest first: base wire runtime services workers http cli. Headers are
# found by name in c_src/*/ (includes are by basename: -I per layer folder).
# Also prints the layer graph (`--graph`). Exit 1 on any upward include.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT/c_src"
layers=(base wire runtime services workers http cli)
rank() { local i; for i in "${!layers[@]}"; do [ "${layers[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo -1; }

declare -A where
for d in "${layers[@]}"; do
    [ -d "$d" ] || continue
    for h in "$d"/*.h; do [ -e "$h" ] && where[$(basename "$h")]=$d; done
done

bad=0
declare -A edges
for d in "${layers[@]}"; do
    [ -d "$d" ] || continue
    rd=$(rank "$d")
    for f in "$d"/*.[ch]; do
        [ -e "$f" ] || continue
        while read -r inc; do
            t=${where[$(basename "$inc")]:-}
            [ -n "$t" ] || continue   # public header (include/) or system
            edges["$d -> $t"]=1
            if [ "$(rank "$t")" -gt "$rd" ]; then
                echo "check-layers: $f includes $inc from the higher layer '$t'"
                bad=1
            fi
        done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
    done
done
# Files outside the layer folders would escape the rule.
stray=$(find . -maxdepth 1 -name '*.[ch]' | sort)
[ -z "$stray" ] || { echo "check-layers: files outside a layer folder:"; echo "$stray"; bad=1; }
if [ "${1:-}" = "--graph" ]; then printf '%s\n' "${!edges[@]}" | sort; fi
[ $bad -eq 0 ] && echo "check-layers: OK (${layers[*]}: no upward include)"
exit $bad
