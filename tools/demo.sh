#!/usr/bin/env bash
# rill's "main job" in one minute: an echo server on every CPU, driven by rill's own load
# generator, once per backend, each report under its backend's name.
#
#   bash tools/demo.sh        (tools/setup.sh demo builds the release preset, then runs this)
#
# Builds nothing: it uses build/release (or $RILL_BUILD_DIR). Per backend, rill-echo listens on
# a free loopback port with one pinned thread per CPU; rill-load then runs 64 connections from one
# thread for 1 s of warm-up plus 5 s, reading the server's CPU time from /proc to report server
# CPU per request. A backend the engine cannot start is reported in one line and skipped. Every
# wait is bounded, and the server is stopped whatever happens to this script.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RILL_BUILD_DIR:-$root/build/release}"
backends="${RILL_DEMO_BACKENDS:-epoll uring}"

START_WAIT_S=5  # for rill-echo to print its address, or die
LOAD_LIMIT_S=30 # rill-load stops by itself after 6 s; this only guards against a bug
STOP_WAIT_S=5   # for rill-echo to exit after SIGINT, before SIGKILL

find_bin() {
    local f
    f=$(find "$build" -maxdepth 3 -type f -name "$1" -perm -u+x 2>/dev/null | head -n 1)
    if [ -z "$f" ]; then
        echo "demo: $1 not found under $build; build first: bash tools/setup.sh demo" >&2
        exit 1
    fi
    echo "$f"
}

echo_bin=$(find_bin rill-echo)
load_bin=$(find_bin rill-load)
ncpu=$(nproc)
tmp=$(mktemp -d)
server_pid=""

# Stops the server if it runs: SIGINT (its clean exit), then SIGKILL if it lingers.
stop_server() {
    [ -n "$server_pid" ] || return 0
    local pid=$server_pid i
    server_pid=""
    kill -INT "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_WAIT_S * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "demo: rill-echo ignored SIGINT for ${STOP_WAIT_S}s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # reached through the trap
cleanup() {
    stop_server
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts rill-echo on backend $1; sets server_pid and port, or prints why not and returns 1.
start_server() {
    local backend=$1 i line reason
    "$echo_bin" --threads "$ncpu" -l tcp://127.0.0.1:0 -b "$backend" \
        >"$tmp/echo.out" 2>"$tmp/echo.err" &
    server_pid=$!
    for ((i = 0; i < START_WAIT_S * 20; i++)); do
        line=$(head -n 1 "$tmp/echo.out")
        if [[ "$line" == listening* ]]; then
            port=$(sed -n 's/^listening tcp:\/\/[^ ]*:\([0-9][0-9]*\) .*/\1/p' <<<"$line")
            [ -n "$port" ] && return 0
            break
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    reason=$(grep -m 1 -v '^[[:space:]]*$' "$tmp/echo.err" || true)
    if [ -z "$reason" ]; then
        reason=${line:-"no address printed within ${START_WAIT_S}s"}
    fi
    stop_server
    echo "$backend: not available (${reason})"
    return 1
}

echo "rill demo: rill-echo ($ncpu pinned threads) <- rill-load (1 thread, 64 connections," \
    "64-byte echo, 1 s warm-up + 5 s)"
echo "machine: $ncpu CPUs, Linux $(uname -r)"
if [ "$ncpu" -le 2 ]; then
    echo "note: only $ncpu CPUs: rill-load and rill-echo's threads share them, so the figures" \
        "measure both sides competing for the same cores (see client and server CPU/request)"
fi

status=0
for backend in $backends; do
    echo
    echo "=== $backend ==="
    start_server "$backend" || continue
    echo "rill-echo: $(head -n 1 "$tmp/echo.out")"
    rc=0
    timeout --signal=INT --kill-after=5 "$LOAD_LIMIT_S" \
        "$load_bin" -c 64 -t 1 -d 5 --warmup 1 -s 64 --server-pid "$server_pid" \
        "tcp://127.0.0.1:$port" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "demo: rill-load on $backend failed (exit $rc)"
        status=1
    fi
    stop_server
done
exit "$status"
