#!/usr/bin/env bash
# Checks that a shared library exports only the public API: every defined dynamic symbol starts
# with "rill_" (but not "rill__", the internal prefix), and there is at least one (rill_version).
# Usage: check-exports.sh NM LIBRARY
set -euo pipefail
nm_bin=${1:?usage: check-exports.sh NM LIBRARY}
lib=${2:?usage: check-exports.sh NM LIBRARY}

syms=$("$nm_bin" -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | sort -u)
count=$(printf '%s\n' "$syms" | grep -c . || true)
bad=$(printf '%s\n' "$syms" | grep -v -E '^rill_' || true)
internal=$(printf '%s\n' "$syms" | grep -E '^rill__' || true)

status=0
if [ -n "$bad" ]; then
    echo "FAIL: $lib exports symbols outside the rill_ namespace (mark them static, or drop RILL_API):"
    printf '%s\n' "$bad" | sed 's/^/  /'
    status=1
fi
if [ -n "$internal" ]; then
    echo "FAIL: $lib exports internal rill__ symbols (they must not carry RILL_API):"
    printf '%s\n' "$internal" | sed 's/^/  /'
    status=1
fi
if ! printf '%s\n' "$syms" | grep -qx 'rill_version'; then
    echo "FAIL: $lib does not export rill_version"
    status=1
fi
[ "$status" -eq 0 ] && echo "OK: $lib exports $count symbols, all rill_*"
exit "$status"
