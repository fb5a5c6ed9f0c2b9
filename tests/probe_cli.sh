#!/usr/bin/env bash
# rill-probe's command line: each bad one exits 2 before any cell runs (no table header on
# stdout), with one line on stderr naming the argument and why. Usage: probe_cli.sh PATH/TO/rill-probe
set -u
probe_bin=$1
fail=0
total=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ncpu=$(nproc)

# expect_bad WORDS -- ARGS...: rc 2, stderr one line matching WORDS (an extended regex), nothing run.
expect_bad() {
    local words=$1
    shift 2
    total=$((total + 1))
    timeout 20 "$probe_bin" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local rc=$?
    local lines
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -ne 2 ] || [ "$lines" -ne 1 ] || ! grep -Eq "$words" "$tmp/err" || [ -s "$tmp/out" ]; then
        echo "FAIL: rill-probe $* -> rc $rc (want 2), $lines stderr lines: $(head -c 300 "$tmp/err")"
        fail=$((fail + 1))
    else
        echo "ok: rill-probe $* -> 2: $(head -n 1 "$tmp/err")"
    fi
}

expect_bad "pin.*CPU 99 " -- --pin 99,99 -m pair -z 64
expect_bad "pin.*CPU $ncpu " -- --pin 0,"$ncpu"
expect_bad "pin" -- --pin 0
expect_bad "pin" -- --pin 0,1x
expect_bad "pin" -- --pin -1,0
expect_bad "transport.*''.*empty" -- -t ""
expect_bad "transport.*','" -- -t ,
expect_bad "strategy.*''" -- -s ""
expect_bad "mode.*''" -- -m ""
expect_bad "size.*''" -- -z ""
expect_bad "transport.*'tcp5'" -- -t tcp5
expect_bad "strategy.*'nope'" -- -s nope
expect_bad "mode.*'bulk'" -- -m bulk
expect_bad "size.*'0'" -- -z 0
expect_bad "size.*'2M'" -- -z 2M
expect_bad "time.*'abc'" -- -T abc
expect_bad "time.*'0'" -- -T 0
expect_bad "ops.*'-5'" -- -n -5
expect_bad "repeat.*'0'" -- -r 0
expect_bad "iov.*'65'" -- --iov 65
expect_bad "batch.*'0'" -- --batch 0
expect_bad "top.*'33'" -- --top 33
expect_bad "profile-hz.*'99'" -- --profile-hz 99
expect_bad "compare.*'rw-block'" -- --compare rw-block
expect_bad "compare.*'rw-block,rw-block'" -- --compare rw-block,rw-block
expect_bad "compare.*'rw-block,nope'" -- --compare rw-block,nope
expect_bad "folded.*--profile" -- --folded "$tmp/f"
expect_bad "profile-scope.*'core'" -- --profile-scope core
expect_bad "drop.*stream mode only" -- -t drop -m pingpong
expect_bad "argument.*'stray'" -- stray
expect_bad "unrecognized|invalid" -- --bogus
expect_bad "requires an argument" -- -t

check() {
    total=$((total + 1))
    if "$@"; then echo "ok: $*"; else echo "FAIL: $*"; fail=$((fail + 1)); fi
}
check bash -c "'$probe_bin' --list | grep -qx '  drop'"
check bash -c "'$probe_bin' --help | grep -q -- '--profile'"

echo "$((total - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
