#!/usr/bin/env bash
# Two rill-echo configurations side by side: for each connection count, runs A B A B ... (REPS
# pairs) and prints the median [min max] of requests/s and of server CPU microseconds per
# request, plus the ratios of the medians (A / B).
#
#   bash bench/macro/echo_ab.sh NAME_A "RILL_ECHO_ARGS_A" NAME_B "RILL_ECHO_ARGS_B"
#   env: BUILD=build/release CONNS="1 100 1000" REPS=5 DURATION=3 WARMUP=1 SIZE=64
#        TRANSPORT=tcp (or udp: one connected datagram socket per rill-load connection)
#        SERVER_CPUS=0 (taskset list for the server; empty: no taskset)
#        LOAD_ARGS="--pin 1" (extra rill-load options, e.g. the client's CPU)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ $# -eq 4 ] || { sed -n '2,9p' "$0"; exit 2; }
name_a=$1 args_a=$2 name_b=$3 args_b=$4
build=${BUILD:-build/release}
echo_bin=$build/rill-echo load_bin=$build/rill-load
[ -x "$echo_bin" ] && [ -x "$load_bin" ] || { echo "build first: cmake --preset release && cmake --build --preset release" >&2; exit 2; }
TRANSPORT=${TRANSPORT:-tcp}
CONNS=${CONNS:-"1 100 1000"} REPS=${REPS:-5} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1} SIZE=${SIZE:-64}
SERVER_CPUS=${SERVER_CPUS-0} LOAD_ARGS=${LOAD_ARGS-"--pin 1"}
ulimit -n 8192 2>/dev/null || true
tmp=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill -INT "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# run "ECHO_ARGS" CONNS: one measured run; prints "rps cpu_us_per_req".
run() {
    local out=$tmp/echo.out port="" i
    local pre=()
    [ -n "$SERVER_CPUS" ] && pre=(taskset -c "$SERVER_CPUS")
    # shellcheck disable=SC2086 # the arguments are words on purpose
    "${pre[@]}" "$echo_bin" $1 -l "$TRANSPORT://127.0.0.1:0" >"$out" 2>&1 &
    server=$!
    for i in $(seq 100); do
        port=$(sed -nE 's/^listening [a-z]+:\/\/127\.0\.0\.1:([0-9]+) .*/\1/p' "$out")
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { cat "$out" >&2; exit 1; }
    # shellcheck disable=SC2086
    "$load_bin" -c "$2" -t 1 $LOAD_ARGS -d "$DURATION" --warmup "$WARMUP" -s "$SIZE" \
        --server-pid "$server" "$TRANSPORT://127.0.0.1:$port" >"$tmp/load.out" 2>&1 || true
    kill -INT "$server"; wait "$server" 2>/dev/null || true; server=""
    awk '/^requests\/s/ {r=$2} /^server CPU/ {c=$3} END {print r+0, c+0}' "$tmp/load.out"
}

stats() { sort -n -k"$2" "$1" | awk -v c="$2" '{v[NR]=$c} END {printf "%.1f %.1f %.1f", v[int((NR+1)/2)], v[1], v[NR]}'; }

echo "rill-echo: $name_a ($args_a) vs $name_b ($args_b), ${SIZE}-byte $TRANSPORT echo,"
echo "server taskset '${SERVER_CPUS:-none}', rill-load $LOAD_ARGS; ${REPS} interleaved pairs of ${DURATION} s (+${WARMUP} s warm-up); median [min max]"
printf '%-6s %-10s %-30s %-30s\n' conns config "requests/s" "server CPU us/request"
for c in $CONNS; do
    : >"$tmp/a"; : >"$tmp/b"
    for r in $(seq "$REPS"); do
        run "$args_a" "$c" >>"$tmp/a"
        run "$args_b" "$c" >>"$tmp/b"
    done
    read -r ar an ax <<<"$(stats "$tmp/a" 1)"; read -r ac acn acx <<<"$(stats "$tmp/a" 2)"
    read -r br bn bx <<<"$(stats "$tmp/b" 1)"; read -r bc bcn bcx <<<"$(stats "$tmp/b" 2)"
    printf '%-6s %-10s %-30s %-30s\n' "$c" "$name_a" "$ar [$an $ax]" "$ac [$acn $acx]"
    printf '%-6s %-10s %-30s %-30s\n' "$c" "$name_b" "$br [$bn $bx]" "$bc [$bcn $bcx]"
    awk -v ar="$ar" -v br="$br" -v ac="$ac" -v bc="$bc" -v c="$c" -v a="$name_a" -v b="$name_b" \
        'BEGIN {printf "%-6s ratio      %s/%s requests/s %.2f, server CPU/request %.2f\n", c, a, b, ar/br, ac/bc}'
done
