#!/usr/bin/env bash
# rill-echo's command line: each bad one exits 2 before anything starts (no "listening" line),
# with one line on stderr naming the argument. Usage: echo_cli.sh PATH/TO/rill-echo
set -u
echo_bin=$1
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect_bad WORDS -- ARGS...: rc 2, stderr matches WORDS (an extended regex), nothing listened.
expect_bad() {
    local words=$1
    shift 2
    timeout 10 "$echo_bin" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local rc=$?
    if [ "$rc" -ne 2 ] || ! grep -Eq "$words" "$tmp/err" || grep -q '^listening' "$tmp/out"; then
        echo "FAIL: rill-echo $* -> rc $rc (want 2), stderr: $(head -c 300 "$tmp/err")"
        fail=$((fail + 1))
    else
        echo "ok: rill-echo $* -> 2: $(head -n 1 "$tmp/err")"
    fi
}

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

timeout 10 "$echo_bin" --help >"$tmp/out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] || ! grep -q -- '--listen' "$tmp/out"; then
    echo "FAIL: rill-echo --help -> rc $rc"
    fail=$((fail + 1))
fi

total=12
echo "$((total - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
