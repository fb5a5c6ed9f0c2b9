#!/usr/bin/env bash
# rill-echo on io_uring vs on epoll, side by side: for each connection count, runs A B A B ...
# (REPS pairs), the server pinned to CPU 0 and rill-load pinned to CPU 1, and prints the median,
# min and max of requests/s and of server CPU microseconds per request, plus the ratio of medians.
#
#   bash bench/macro/echo_backends.sh [BUILD_DIR]     (default build/release)
#   env: CONNS="1 100 1000" REPS=5 DURATION=3 WARMUP=1 SIZE=64
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
build=${1:-build/release}
echo_bin=$build/rill-echo
load_bin=$build/rill-load
[ -x "$echo_bin" ] && [ -x "$load_bin" ] || { echo "build first: cmake --preset release && cmake --build --preset release" >&2; exit 2; }
CONNS=${CONNS:-"1 100 1000"} REPS=${REPS:-5} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1} SIZE=${SIZE:-64}
ulimit -n 8192 2>/dev/null || true
ncpu=$(nproc)
server_cpu=0 client_cpu=$((ncpu > 1 ? 1 : 0))
tmp=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill -INT "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

# run BACKEND CONNS: one measured run; prints "rps cpu_us_per_req".
run() {
    local backend=$1 conns=$2 out=$tmp/echo.out
    taskset -c "$server_cpu" "$echo_bin" -t 1 --no-pin -b "$backend" -l tcp://127.0.0.1:0 >"$out" 2>&1 &
    server=$!
    local port="" i
    for i in $(seq 100); do
        port=$(sed -nE 's/^listening tcp:\/\/127\.0\.0\.1:([0-9]+) .*/\1/p' "$out")
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { cat "$out" >&2; exit 1; }
    "$load_bin" -c "$conns" -t 1 --pin "$client_cpu" -d "$DURATION" --warmup "$WARMUP" -s "$SIZE" \
        --server-pid "$server" "tcp://127.0.0.1:$port" >"$tmp/load.out" 2>&1 || true
    kill -INT "$server"; wait "$server" 2>/dev/null || true; server=""
    awk '/^requests\/s/ {r=$2} /^server CPU/ {c=$3} END {print r+0, c+0}' "$tmp/load.out"
}

# stats FILE COL: median min max of a column.
stats() { sort -n -k"$2" "$1" | awk -v c="$2" '{v[NR]=$c} END {printf "%.1f %.1f %.1f", v[int((NR+1)/2)], v[1], v[NR]}'; }

echo "rill-echo: io_uring vs epoll, ${SIZE}-byte echo, server on CPU $server_cpu, rill-load on CPU $client_cpu,"
echo "${REPS} interleaved pairs of ${DURATION} s (+${WARMUP} s warm-up); median [min max]"
printf '%-6s %-8s %-30s %-30s\n' conns backend "requests/s" "server CPU us/request"
for c in $CONNS; do
    : >"$tmp/uring" ; : >"$tmp/epoll"
    for r in $(seq "$REPS"); do
        run uring "$c" >>"$tmp/uring"
        run epoll "$c" >>"$tmp/epoll"
    done
    for b in uring epoll; do
        read -r rm rn rx <<<"$(stats "$tmp/$b" 1)"
        read -r cm cn cx <<<"$(stats "$tmp/$b" 2)"
        printf '%-6s %-8s %-30s %-30s\n' "$c" "$b" "$rm [$rn $rx]" "$cm [$cn $cx]"
        eval "${b}_r=$rm ${b}_c=$cm"
    done
    awk -v ur="$uring_r" -v er="$epoll_r" -v uc="$uring_c" -v ec="$epoll_c" -v c="$c" \
        'BEGIN {printf "%-6s ratio    uring/epoll requests/s %.2f, server CPU/request %.2f\n", c, ur/er, uc/ec}'
done
