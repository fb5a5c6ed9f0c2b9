#!/usr/bin/env bash
# rill-load's command line: a bad address or port exits 2 before any connection is made, with
# one line on stderr naming it; a name that does not resolve says so. Usage: load_cli.sh PATH
set -u
load_bin=$1
fail=0
n=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect RC WORDS -- ARGS...: exit code RC, stderr matches WORDS (an extended regex).
expect() {
    local want=$1 words=$2
    shift 3
    n=$((n + 1))
    timeout 20 "$load_bin" -d 1 --warmup 0 -q "$@" >"$tmp/out" 2>"$tmp/err" </dev/null
    local rc=$?
    if [ "$rc" -ne "$want" ] || ! grep -Eq "$words" "$tmp/err"; then
        echo "FAIL: rill-load $* -> rc $rc (want $want), stderr: $(head -c 300 "$tmp/err")"
        fail=$((fail + 1))
    else
        echo "ok: rill-load $* -> $rc: $(head -n 1 "$tmp/err")"
    fi
}

expect 2 "bad port '70000'" -- tcp://127.0.0.1:70000
expect 2 "bad port '0'" -- tcp://127.0.0.1:0
expect 2 "bad port 'http'" -- tcp://127.0.0.1:http
expect 2 "bad address" -- 'tcp://[::1'
expect 2 "bad address" -- tcp://127.0.0.1
expect 2 "bad port '99999'" -- udp://127.0.0.1:99999
expect 2 "bad port '70000'" -- http://127.0.0.1:70000/
expect 1 "cannot resolve host no-such-host.invalid" -- tcp://no-such-host.invalid:7000

echo "$((n - fail)) passed, $fail failed"
[ "$fail" -eq 0 ]
