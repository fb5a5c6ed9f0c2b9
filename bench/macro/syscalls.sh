#!/usr/bin/env bash
# System calls per request, counted exactly rather than estimated from rates. Each server runs
# alone (pinned to SERVER_CPU) and a tracer attaches to it once it listens; rill-load (pinned to
# LOAD_CPU) then opens CONNS connections and sends exactly REQUESTS echo requests of SIZE bytes
# with no warm-up, so every request the server serves is one rill-load counts; the tracer is
# detached when rill-load is done. Dividing the tracer's counts by the request count rill-load
# reports (its --json "requests", checked against "sent") gives calls per request served, not per
# second. Start-up is outside the count (the tracer attaches after it); the connections' accepts
# and epoll_ctl calls are inside it, and show in "other".
#
# The read family is read, readv, recvfrom, recvmsg and recvmmsg; the write family write, writev,
# sendto, sendmsg and sendmmsg; epoll_wait (with epoll_pwait, epoll_pwait2) and io_uring_enter are
# counted apart; "all" is every system call the server made (raw_syscalls:sys_enter, or strace's
# total). Two tracers, both exact: perf (perf stat on the syscalls tracepoints, which barely slows
# the server) and strace (strace -c -f, which stops the server at every call; slower servers batch
# differently, so its counts can differ from perf's; both are shown, labelled). The default is
# issue 12's case: 16 KiB echo, 100 connections, depth 1, TCP, rill-echo on epoll against B1.
#
#   bash bench/macro/syscalls.sh            3 repetitions (interleaved) of 20000 requests per tracer
#   QUICK=1 bash bench/macro/syscalls.sh    1 repetition of 5000 requests, perf only (seconds)
#
# env (defaults in brackets; QUICK=1 changes the ones marked *):
#   BUILD [build/release]  SERVERS ["rill-epoll peer-epoll"] (also rill-uring, peer-uring,
#   peer-libuv, peer-libevent)  REQUESTS* [20000]  CONNS [100]  SIZE [16384]  DEPTH [1]
#   REPS* [3]  METHODS* ["perf strace"] (those installed)  LIMIT [120]: seconds a run may take
#   SERVER_CPU [0]  LOAD_CPU [1] (empty: no taskset)  OUT []: keep each run's raw counts there
# Prints, per tracer and server, median [min max] over the repetitions of the calls per request,
# the ratio of medians to B1 (peer-epoll), and the calls that made up "other".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case ${1:-} in
-h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
"") [ $# -eq 0 ] || { echo "syscalls.sh: no arguments expected; see --help" >&2; exit 2; } ;;
*) echo "syscalls.sh: no arguments expected (got '$1'); settings are environment variables, see --help" >&2; exit 2 ;;
esac

QUICK=${QUICK:-0}
case $QUICK in 0|1) ;; *) echo "syscalls.sh: QUICK must be 0 or 1" >&2; exit 2 ;; esac
if [ "$QUICK" = 1 ]; then : "${REQUESTS:=5000}" "${REPS:=1}" "${METHODS:=perf}"; fi
BUILD=${BUILD:-build/release} SERVERS=${SERVERS:-rill-epoll peer-epoll}
REQUESTS=${REQUESTS:-20000} CONNS=${CONNS:-100} SIZE=${SIZE:-16384} DEPTH=${DEPTH:-1} REPS=${REPS:-3}
METHODS=${METHODS:-perf strace} LIMIT=${LIMIT:-120} SERVER_CPU=${SERVER_CPU-0} LOAD_CPU=${LOAD_CPU-1} OUT=${OUT:-}
for v in REQUESTS CONNS SIZE DEPTH REPS LIMIT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "syscalls.sh: $v must be a positive whole number (got '${!v}')" >&2; exit 2; }
done
if [ ! -x "$BUILD/rill-load" ] || [ ! -x "$BUILD/rill-echo" ]; then
    echo "syscalls.sh: build first (bash tools/setup.sh build release)" >&2; exit 2
fi
methods=()
for m in $METHODS; do
    case $m in
    perf) if perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then methods+=(perf); else
              echo "syscalls.sh: perf cannot count syscall tracepoints here (perf_event_paranoid, tracefs): skipped" >&2; fi ;;
    strace) if command -v strace >/dev/null; then methods+=(strace); else echo "syscalls.sh: strace not installed: skipped" >&2; fi ;;
    *) echo "syscalls.sh: unknown method '$m' (perf, strace)" >&2; exit 2 ;;
    esac
done
[ ${#methods[@]} -gt 0 ] || { echo "syscalls.sh: no tracer available (apt-get install strace)" >&2; exit 1; }
for s in $SERVERS; do
    case $s in
    rill-epoll|rill-uring) ;;
    peer-epoll|peer-uring|peer-libuv|peer-libevent) [ -x "$BUILD/bench/peers/$s" ] || { echo "syscalls.sh: $BUILD/bench/peers/$s not built" >&2; exit 2; } ;;
    *) echo "syscalls.sh: unknown server '$s'" >&2; exit 2 ;;
    esac
done
server_pre=() load_pre=()
[ -n "$SERVER_CPU" ] && server_pre=(taskset -c "$SERVER_CPU")
[ -n "$LOAD_CPU" ] && load_pre=(taskset -c "$LOAD_CPU")
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
[ -n "$OUT" ] && mkdir -p "$OUT"

tmp=$(mktemp -d)
server="" tracer=""
cleanup() {
    if [ -n "$tracer" ]; then kill -INT "$tracer" 2>/dev/null || true; wait "$tracer" 2>/dev/null || true; fi
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

READS="read readv recvfrom recvmsg recvmmsg" WRITES="write writev sendto sendmsg sendmmsg"
WAITS="epoll_wait epoll_pwait epoll_pwait2" OTHERS="io_uring_enter accept4 accept epoll_ctl close"
events=""
for s in $READS $WRITES $WAITS $OTHERS; do events+="syscalls:sys_enter_$s,"; done
events+="raw_syscalls:sys_enter"

server_cmd() {
    case $1 in
    rill-epoll) echo "$BUILD/rill-echo -t 1 --backend epoll -l tcp://127.0.0.1:0" ;;
    rill-uring) echo "$BUILD/rill-echo -t 1 --backend uring -l tcp://127.0.0.1:0" ;;
    peer-*) echo "$BUILD/bench/peers/$1 -t 1 --port 0" ;;
    esac
}

start_server() {
    local out=$tmp/server.out
    port=""
    scmd=$(server_cmd "$1")
    # shellcheck disable=SC2086 # the command is words on purpose
    "${server_pre[@]}" $scmd >"$out" 2>"$tmp/server.err" &
    server=$!
    for _ in $(seq 200); do
        port=$({ sed -nE 's/^listening tcp:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$out" 2>/dev/null || true; } | head -1)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { echo "syscalls.sh: $1 did not start" >&2; cat "$out" "$tmp/server.err" >&2; exit 1; }
}
stop_server() { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; }

# attach METHOD: starts the tracer on $server, returns once it counts.
attach() {
    rm -f "$tmp/trace.txt" "$tmp/trace.err"
    if [ "$1" = perf ]; then
        perf stat -e "$events" -x , -o "$tmp/trace.txt" -p "$server" 2>"$tmp/trace.err" &
        tracer=$!
        # perf says nothing once attached; the server is idle meanwhile, so waiting costs nothing.
        sleep 0.5
    else
        strace -c -f -o "$tmp/trace.txt" -p "$server" 2>"$tmp/trace.err" &
        tracer=$!
        for _ in $(seq 100); do grep -q attached "$tmp/trace.err" 2>/dev/null && break; sleep 0.05; done
        grep -q attached "$tmp/trace.err" || { echo "syscalls.sh: strace did not attach:" >&2; cat "$tmp/trace.err" >&2; exit 1; }
    fi
}
detach() { kill -INT "$tracer" 2>/dev/null || true; wait "$tracer" 2>/dev/null || true; tracer=""; }

runs=$tmp/runs.jsonl
: >"$runs"
# run_one METHOD SERVER REP: one traced run, one JSON line in $runs.
run_one() {
    start_server "$2"
    attach "$1"
    rm -f "$tmp/load.json"
    local lcmd=("$BUILD/rill-load" -c "$CONNS" -t 1 -n "$REQUESTS" -d "$LIMIT" --warmup 0 --depth "$DEPTH"
                -s "$SIZE" -q --json "$tmp/load.json" "tcp://127.0.0.1:$port")
    "${load_pre[@]}" "${lcmd[@]}" >"$tmp/load.out" 2>&1 || true
    detach
    stop_server
    if [ ! -s "$tmp/load.json" ] || [ ! -s "$tmp/trace.txt" ]; then
        echo "syscalls.sh: $1 $2 rep $3 measured nothing:" >&2; cat "$tmp/load.out" "$tmp/trace.err" >&2; exit 1
    fi
    if [ -n "$OUT" ]; then cp "$tmp/trace.txt" "$OUT/$1-$2-$3.txt"; cp "$tmp/load.json" "$OUT/$1-$2-$3.load.json"; fi
    python3 - "$1" "$2" "$3" "$tmp/trace.txt" "$tmp/load.json" "${server_pre[*]} $scmd" "${load_pre[*]} ${lcmd[*]}" >>"$runs" <<'EOF'
import json, sys
method, server, rep, trace, load, scmd, lcmd = sys.argv[1:]
counts = {}
for line in open(trace):
    if method == "perf":
        f = line.strip().split(",")
        if len(f) >= 3 and f[0].isdigit():
            name = f[2].split(":")[1]
            counts["all" if name == "sys_enter" else name.replace("sys_enter_", "")] = int(f[0])
    else:
        f = line.split()
        if len(f) in (5, 6) and f[0][0].isdigit() and f[3].isdigit():
            counts["all" if f[-1] == "total" else f[-1]] = int(f[3])
r = json.load(open(load))["results"]
print(json.dumps({"method": method, "server": server, "rep": int(rep), "requests": r["requests"],
                  "sent": r.get("sent"), "rps": r.get("requests_per_s"), "counts": counts,
                  "server_cmd": scmd, "load_cmd": lcmd}))
EOF
    python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).readlines()[-1]); c=d["counts"]; n=d["requests"]
print("  %-7s %-12s rep %d: %d requests (%.0f/s), %.3f read+write/request, %.3f all/request" % (d["method"], d["server"], d["rep"], n, d["rps"] or 0,
      sum(v for k, v in c.items() if k in sys.argv[2].split()) / n, c.get("all", 0) / n))' "$runs" "$READS $WRITES"
}

echo "syscalls.sh: $(uname -r); ${SIZE}-byte TCP echo, $CONNS connections, depth $DEPTH, $REQUESTS requests per run, no warm-up;"
echo "  server on CPU ${SERVER_CPU:-any}, rill-load on CPU ${LOAD_CPU:-any}; tracers: ${methods[*]}; servers: $SERVERS, $REPS repetition(s) interleaved"
for m in "${methods[@]}"; do
    for r in $(seq "$REPS"); do
        for s in $SERVERS; do run_one "$m" "$s" "$r"; done
    done
done
[ -n "$OUT" ] && cp "$runs" "$OUT/runs.jsonl"

python3 - "$runs" "$READS" "$WRITES" "$WAITS" <<'EOF'
import json, re, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
reads, writes, waits = (set(a.split()) for a in sys.argv[2:5])
cols = [("reads", lambda c: sum(c.get(k, 0) for k in reads)),
        ("writes", lambda c: sum(c.get(k, 0) for k in writes)),
        ("read+write", lambda c: sum(c.get(k, 0) for k in reads | writes)),
        ("epoll_wait", lambda c: sum(c.get(k, 0) for k in waits)),
        ("io_uring_enter", lambda c: c.get("io_uring_enter", 0)),
        ("other", lambda c: c.get("all", 0) - sum(c.get(k, 0) for k in reads | writes | waits) - c.get("io_uring_enter", 0)),
        ("all", lambda c: c.get("all", 0))]
def m3(v):
    return statistics.median(v), min(v), max(v)
def f3(t):
    return "%.3f [%.3f %.3f]" % t
bad = [r for r in runs if r["sent"] is not None and r["sent"] != r["requests"]]
for r in bad:
    print("note: %s %s rep %d: rill-load sent %d but counted %d requests" % (r["method"], r["server"], r["rep"], r["sent"], r["requests"]))
for method in dict.fromkeys(r["method"] for r in runs):
    mr = [r for r in runs if r["method"] == method]
    servers = list(dict.fromkeys(r["server"] for r in mr))
    n = len([r for r in mr if r["server"] == servers[0]])
    print()
    print("### %s: system calls per request served, median [min max] of %d run%s" % (
        "perf stat (syscalls tracepoints)" if method == "perf" else "strace -c -f", n, "s" if n > 1 else ""))
    print()
    print("| server | requests/run | " + " | ".join(c for c, _ in cols) + " | read+write / B1 | all / B1 |")
    print("|---|---|" + "---|" * (len(cols) + 2))
    med = {}
    for s in servers:
        sr = [r for r in mr if r["server"] == s]
        med[s] = {c: m3([fn(r["counts"]) / r["requests"] for r in sr]) for c, fn in cols}
    for s in servers:
        b1 = med.get("peer-epoll")
        rat = lambda c: "%.2f" % (med[s][c][0] / b1[c][0]) if b1 and b1[c][0] else "–"
        print("| %s | %d | %s | %s | %s |" % (s, statistics.median(r["requests"] for r in mr if r["server"] == s),
                                           " | ".join(f3(med[s][c]) for c, _ in cols), rat("read+write"), rat("all")))
    print()
    for s in servers:
        sr = [r for r in mr if r["server"] == s]
        names = sorted({k for r in sr for k, v in r["counts"].items() if v and k != "all"})
        per = ", ".join("%s %.4f" % (k, statistics.median(r["counts"].get(k, 0) / r["requests"] for r in sr)) for k in names)
        print("- %s, per request by call (medians): %s" % (s, per))
print()
print("Commands (the port and paths vary):")
seen = set()
for r in runs:
    for k in ("server_cmd", "load_cmd"):
        cmd = r[k] if k == "server_cmd" else re.sub(r"/tmp/tmp\.\w+/", "$TMP/", re.sub(r"127\.0\.0\.1:\d+$", "127.0.0.1:$PORT", r[k]))
        if (r["server"], k) not in seen:
            seen.add((r["server"], k))
            print("    " + cmd.strip())
EOF
