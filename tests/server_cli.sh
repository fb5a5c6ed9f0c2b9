#!/usr/bin/env bash
# The servers' command lines (rill-echo, rill-http): each bad one exits 2 before anything starts
# (no "listening" line), with one line on stderr naming the argument.
# Usage: server_cli.sh PATH/TO/rill-echo PATH/TO/rill-http
set -u
echo_bin=$1
http_bin=$2
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

total=0
# bad BIN WORDS -- ARGS...: rc 2, stderr matches WORDS (an extended regex), nothing listened.
bad() {
    local bin=$1 words=$2
    shift 3
    total=$((total + 1))
    timeout 10 "$bin" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local rc=$?
    if [ "$rc" -ne 2 ] || ! grep -Eq "$words" "$tmp/err" || grep -q '^listening' "$tmp/out"; then
        echo "FAIL: ${bin##*/} $* -> rc $rc (want 2), stderr: $(head -c 300 "$tmp/err")"
        fail=$((fail + 1))
    else
        echo "ok: ${bin##*/} $* -> 2: $(head -n 1 "$tmp/err")"
    fi
}
expect_bad() { bad "$echo_bin" "$@"; }

expect_bad "loops.*'5x'" -- -t 5x
expect_bad "loops.*''" -- -t ""
expect_bad "loops" -- --loops 0
expect_bad "loops" -- --loops 2000
expect_bad "loops.*99999999999999999999" -- -t 99999999999999999999
expect_bad "unexpected argument 'stray'" -- -l tcp://127.0.0.1:0 stray
expect_bad "backend" -- --backend fast
expect_bad "unrecognized|usage" -- --bogus
expect_bad "idle-timeout.*'5x'" -- --idle-timeout 5x
expect_bad "send-timeout.*'-1'" -- --send-timeout -1
expect_bad "send-timeout.*''" -- --send-timeout ""
# Addresses are checked before the engine starts, for both servers.
for b in "$echo_bin" "$http_bin"; do
    bad "$b" "listen 'tcp://127.0.0.1:70000': not an address" -- -l tcp://127.0.0.1:70000
    bad "$b" "listen 'tcp://\[::1': not an address" -- -l 'tcp://[::1'
    bad "$b" "listen 'bogus://x': not an address" -- -l bogus://x
    bad "$b" "cannot resolve host nonexistent.invalid" -- -l tcp://nonexistent.invalid:80
done
bad "$http_bin" "header-timeout.*'10s'" -- --header-timeout 10s
bad "$http_bin" "idle-timeout.*'-5'" -- --idle-timeout -5
bad "$http_bin" "serves streams.*udp" -- -l udp://127.0.0.1:0
bad "$http_bin" "threads" -- --threads 0
bad "$http_bin" "unexpected argument 'stray'" -- stray

for b in "$echo_bin" "$http_bin"; do
    total=$((total + 1))
    timeout 10 "$b" --help >"$tmp/out" 2>&1
    rc=$?
    if [ "$rc" -ne 0 ] || ! grep -q -- '--listen' "$tmp/out"; then
        echo "FAIL: ${b##*/} --help -> rc $rc"
        fail=$((fail + 1))
    fi
done

echo "$((total - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
