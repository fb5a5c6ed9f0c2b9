#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind --tool=callgrind, for rill-echo on
# epoll and for the peers B1 (peer-epoll), B2 (libuv) and B3 (libevent): the cost of each
# server's own code and of the libraries it calls, free of the timer noise that CPU-time figures
# carry on a shared 2-CPU machine. Kernel work (the system calls themselves) is not counted here;
# bench/macro/syscalls.sh counts those.
#
# Start-up, the connections' accepts and shutdown would swamp a short run, so each server runs
# under callgrind twice: once for N1 and once for N2 echo requests (rill-load -n, no warm-up, the
# same CONNS connections), and the figure is (Ir(N2) - Ir(N1)) / (N2 - N1), which cancels
# everything the two runs share. The top TOP functions by self instructions per request are
# computed the same way (callgrind_annotate of both runs, per function, differenced), so they
# show where a request's instructions go. The request counts are rill-load's (its --json
# "requests"), not assumed. Under callgrind a server runs several times slower than natively, so
# each event-loop turn gathers more ready connections than it would natively; the count per
# request is that of a server kept busy, which is what the comparison is meant for.
#
# Valgrind cannot follow io_uring (the kernel does the work the ring describes), so rill-echo on
# io_uring is measured natively instead: user (and system) CPU time of the server from
# /proc/PID/stat (clock ticks, utime and stime) over URING_REQUESTS requests, in microseconds per
# request, beside rill-echo on epoll measured the same way. Those rows are CPU time, not
# instructions, and are labelled so.
#
# The servers stop with SIGTERM: rill-echo drains and exits on it (as on SIGINT), the peers die
# of it, and callgrind writes its counts either way. SIGINT would not do: a shell script starts
# background commands with SIGINT ignored, so the peers (which install no handler) would not stop.
#
#   bash bench/macro/callgrind.sh           N1=2000 N2=12000, 64 B, 50 connections, depth 1
#   QUICK=1 bash bench/macro/callgrind.sh   N1=1000 N2=4000, URING_REQUESTS=200000
#
# env (defaults in brackets; QUICK=1 changes the ones marked *):
#   BUILD [build/release]  SERVERS ["rill-epoll peer-epoll peer-libuv peer-libevent"]
#   N1* [2000]  N2* [12000]  CONNS [50]  SIZE [64]  DEPTH [1]  REPS [1]: callgrind pairs per server
#   TOP [10]  TOP_SERVERS ["rill-epoll"]: whose top functions to print (any of SERVERS)
#   URING [1]: 0 = no native CPU rows  URING_REQUESTS* [1000000]  URING_REPS [3]
#   SERVER_CPU [0]  LOAD_CPU [1] (empty: no taskset)  LIMIT [120]: seconds a load run may take
#   OUT []: keep the callgrind output files and the per-run lines there
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case ${1:-} in
-h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
"") [ $# -eq 0 ] || { echo "callgrind.sh: no arguments expected; see --help" >&2; exit 2; } ;;
*) echo "callgrind.sh: no arguments expected (got '$1'); settings are environment variables, see --help" >&2; exit 2 ;;
esac

QUICK=${QUICK:-0}
case $QUICK in 0|1) ;; *) echo "callgrind.sh: QUICK must be 0 or 1" >&2; exit 2 ;; esac
if [ "$QUICK" = 1 ]; then : "${N1:=1000}" "${N2:=4000}" "${URING_REQUESTS:=200000}"; fi
BUILD=${BUILD:-build/release} SERVERS=${SERVERS:-rill-epoll peer-epoll peer-libuv peer-libevent}
N1=${N1:-2000} N2=${N2:-12000} CONNS=${CONNS:-50} SIZE=${SIZE:-64} DEPTH=${DEPTH:-1} REPS=${REPS:-1}
TOP=${TOP:-10} TOP_SERVERS=${TOP_SERVERS-rill-epoll} URING=${URING:-1} URING_REQUESTS=${URING_REQUESTS:-1000000}
URING_REPS=${URING_REPS:-3} SERVER_CPU=${SERVER_CPU-0} LOAD_CPU=${LOAD_CPU-1} LIMIT=${LIMIT:-120} OUT=${OUT:-}
for v in N1 N2 CONNS SIZE DEPTH REPS TOP URING_REQUESTS URING_REPS LIMIT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "callgrind.sh: $v must be a positive whole number (got '${!v}')" >&2; exit 2; }
done
[ "$N2" -gt "$N1" ] || { echo "callgrind.sh: N2 ($N2) must be larger than N1 ($N1)" >&2; exit 2; }
case $URING in 0|1) ;; *) echo "callgrind.sh: URING must be 0 or 1" >&2; exit 2 ;; esac
for s in $SERVERS $TOP_SERVERS; do
    case $s in
    rill-epoll) ;;
    peer-epoll|peer-libuv|peer-libevent|peer-uring)
        [ "$s" = peer-uring ] && { echo "callgrind.sh: peer-uring runs on io_uring, which valgrind cannot follow" >&2; exit 2; }
        [ -x "$BUILD/bench/peers/$s" ] || { echo "callgrind.sh: $BUILD/bench/peers/$s not built" >&2; exit 2; } ;;
    rill-uring) echo "callgrind.sh: rill-uring is measured natively (URING=1), not under callgrind" >&2; exit 2 ;;
    *) echo "callgrind.sh: unknown server '$s'" >&2; exit 2 ;;
    esac
done
if [ ! -x "$BUILD/rill-load" ] || [ ! -x "$BUILD/rill-echo" ]; then
    echo "callgrind.sh: build first (bash tools/setup.sh build release)" >&2; exit 2
fi
for t in valgrind callgrind_annotate python3; do
    command -v "$t" >/dev/null || { echo "callgrind.sh: $t not installed (apt-get install valgrind)" >&2; exit 1; }
done
server_pre=() load_pre=()
[ -n "$SERVER_CPU" ] && server_pre=(taskset -c "$SERVER_CPU")
[ -n "$LOAD_CPU" ] && load_pre=(taskset -c "$LOAD_CPU")
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
[ -n "$OUT" ] && mkdir -p "$OUT"

tmp=$(mktemp -d)
server=""
# stop_server: SIGTERM, then up to 60 s for callgrind to write its file, then SIGKILL.
stop_server() {
    [ -n "$server" ] || return 0
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 600); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
}
cleanup() { stop_server; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
hz=$(getconf CLK_TCK)

server_cmd() {
    case $1 in
    rill-epoll) echo "$BUILD/rill-echo -t 1 --backend epoll -l tcp://127.0.0.1:0" ;;
    rill-uring) echo "$BUILD/rill-echo -t 1 --backend uring -l tcp://127.0.0.1:0" ;;
    peer-*) echo "$BUILD/bench/peers/$1 -t 1 --port 0" ;;
    esac
}

# start_server NAME [callgrind-out-file]: sets $server and $port (valgrind starts slowly: 60 s).
start_server() {
    local out=$tmp/server.out pre=()
    port=""
    [ -n "${2:-}" ] && pre=(valgrind --tool=callgrind --callgrind-out-file="$2" --log-file="$tmp/valgrind.log")
    scmd=$(server_cmd "$1")
    # shellcheck disable=SC2086 # the command is words on purpose
    "${server_pre[@]}" "${pre[@]}" $scmd >"$out" 2>"$tmp/server.err" &
    server=$!
    for _ in $(seq 600); do
        port=$({ sed -nE 's/^listening tcp:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$out" 2>/dev/null || true; } | head -1)
        [ -n "$port" ] && break
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "callgrind.sh: $1 did not start" >&2; cat "$out" "$tmp/server.err" "$tmp/valgrind.log" >&2 2>/dev/null; exit 1; }
}

# load N: N requests, no warm-up; sets $got and $sent to the requests rill-load counted and sent.
load() {
    rm -f "$tmp/load.json"
    lcmd=("$BUILD/rill-load" -c "$CONNS" -t 1 -n "$1" -d "$LIMIT" --warmup 0 --depth "$DEPTH" -s "$SIZE" -q
          --json "$tmp/load.json" "tcp://127.0.0.1:$port")
    "${load_pre[@]}" "${lcmd[@]}" >"$tmp/load.out" 2>&1 || true
    [ -s "$tmp/load.json" ] || { echo "callgrind.sh: rill-load measured nothing:" >&2; cat "$tmp/load.out" >&2; exit 1; }
    read -r got sent <<<"$(python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"]; print(r["requests"], r.get("sent", r["requests"]))' "$tmp/load.json")"
}

# cpu_ticks: utime and stime (clock ticks) of every thread of $server, and their time on a CPU
# (nanoseconds, /proc/PID/task/TID/schedstat: user and system together, but exact).
cpu_ticks() {
    local ticks ns
    ticks=$(cat /proc/"$server"/task/*/stat 2>/dev/null | awk '{u += $14; s += $15} END {print u + 0, s + 0}')
    ns=$(cat /proc/"$server"/task/*/schedstat 2>/dev/null | awk '{t += $1} END {printf "%.0f", t}')
    echo "$ticks $ns"
}

runs=$tmp/runs.jsonl
: >"$runs"
ncg=$(( $(wc -w <<<"$SERVERS") * REPS * 2 ))
echo "callgrind.sh: $(uname -r), valgrind $(valgrind --version | sed 's/valgrind-//'); ${SIZE}-byte TCP echo, $CONNS connections, depth $DEPTH;"
echo "  $ncg callgrind runs ($SERVERS; N1=$N1 and N2=$N2 requests, $REPS pair(s) each)$([ "$URING" = 1 ] && echo ", then native CPU time of rill-echo io_uring and epoll over $URING_REQUESTS requests x $URING_REPS")"
start=$(date +%s)
for r in $(seq "$REPS"); do
    for s in $SERVERS; do
        for n in $N1 $N2; do
            cg=$tmp/cg.$s.$r.$n
            rm -f "$cg"
            start_server "$s" "$cg"
            load "$n"
            stop_server
            [ -s "$cg" ] || { echo "callgrind.sh: callgrind wrote no output for $s:" >&2; cat "$tmp/valgrind.log" >&2; exit 1; }
            ir=$(sed -nE 's/^(summary|totals): *([0-9]+).*/\2/p' "$cg" | head -1)
            callgrind_annotate --inclusive=no --threshold=100 --auto=no "$cg" >"$cg.annotate" 2>/dev/null || true
            [ -n "$OUT" ] && cp "$cg" "$OUT/callgrind.out.$s.$r.$n"
            printf '  %-14s pair %d, %6d requests: %12d Ir (whole run)\n' "$s" "$r" "$got" "$ir"
            printf '{"server":"%s","rep":%d,"n":%d,"requests":%d,"sent":%d,"ir":%d,"annotate":"%s","server_cmd":"%s"}\n' \
                "$s" "$r" "$n" "$got" "$sent" "$ir" "$cg.annotate" "valgrind --tool=callgrind $scmd" >>"$runs"
        done
    done
done
echo "  callgrind runs took $(( $(date +%s) - start )) s"

cpu=$tmp/cpu.txt
: >"$cpu"
if [ "$URING" = 1 ]; then
    for r in $(seq "$URING_REPS"); do
        for s in rill-uring rill-epoll; do
            start_server "$s"
            read -r u0 s0 n0 <<<"$(cpu_ticks)"
            load "$URING_REQUESTS"
            read -r u1 s1 n1 <<<"$(cpu_ticks)"
            stop_server
            echo "$s $r $got $((u1 - u0)) $((s1 - s0)) $((n1 - n0))" >>"$cpu"
            awk -v s="$s" -v r="$r" -v n="$got" -v u=$((u1 - u0)) -v k=$((s1 - s0)) -v t=$((n1 - n0)) -v hz="$hz" \
                'BEGIN {printf "  %-14s native rep %d, %d requests: user %.2f s, system %.2f s (ticks), on CPU %.3f s (schedstat)\n", s, r, n, u / hz, k / hz, t / 1e9}'
        done
    done
fi
[ -n "$OUT" ] && cp "$runs" "$OUT/runs.jsonl" && cp "$cpu" "$OUT/cpu.txt"

python3 - "$runs" "$cpu" "$hz" "$TOP" "$TOP_SERVERS" "${load_pre[*]} ${lcmd[*]}" <<'EOF'
import json, re, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = [l.split() for l in open(sys.argv[2]) if l.strip()]
hz, top, top_servers, lcmd = float(sys.argv[3]), int(sys.argv[4]), sys.argv[5].split(), sys.argv[6]
names = {"rill-epoll": "rill-echo, epoll", "peer-epoll": "B1 peer-epoll", "peer-libuv": "B2 libuv",
         "peer-libevent": "B3 libevent", "rill-uring": "rill-echo, io_uring"}

def m3(v):
    return statistics.median(v), min(v), max(v)

def f3(t, nd=1):
    return ("%.{0}f [%.{0}f %.{0}f]".format(nd)) % t

def functions(path):
    """callgrind_annotate --inclusive=no: self Ir per file:function."""
    out, table = {}, False
    for line in open(path):
        if line.rstrip().endswith("file:function"):
            table = True
            continue
        m = re.match(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+([^=\s].*?)(\s+\[[^\]]*\])?\s*$", line)
        if table and m:
            out[m.group(2)] = out.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    return out

servers = list(dict.fromkeys(r["server"] for r in runs))
pairs = {}
for s in servers:
    for rep in sorted({r["rep"] for r in runs if r["server"] == s}):
        a, b = sorted((r for r in runs if r["server"] == s and r["rep"] == rep), key=lambda r: r["n"])
        pairs.setdefault(s, []).append((a, b))
print()
print("### User-space instructions per request (callgrind, (Ir(N2) - Ir(N1)) / (N2 - N1))")
print()
print("| server | instructions/request | / B1 | N1, N2 (requests) | Ir(N1), Ir(N2) |")
print("|---|---|---|---|---|")
per = {}
for s in servers:
    per[s] = m3([(b["ir"] - a["ir"]) / (b["requests"] - a["requests"]) for a, b in pairs[s]])
for s in servers:
    a, b = pairs[s][0]
    b1 = per.get("peer-epoll")
    print("| %s | %s | %s | %d, %d | %d, %d |" % (names.get(s, s), f3(per[s]), "%.2f" % (per[s][0] / b1[0]) if b1 else "–",
                                                 a["requests"], b["requests"], a["ir"], b["ir"]))
for r in runs:
    if r["sent"] != r["requests"]:
        print("note: %s, %d requests: rill-load sent %d" % (r["server"], r["requests"], r["sent"]))
for s in top_servers:
    if s not in pairs:
        continue
    a, b = pairs[s][0]
    fa, fb = functions(a["annotate"]), functions(b["annotate"])
    dn = b["requests"] - a["requests"]
    diff = sorted(((fb.get(k, 0) - fa.get(k, 0)) / dn, k) for k in set(fa) | set(fb))
    diff.reverse()
    tot = per[s][0]
    print()
    print("#### %s: top %d functions by self instructions per request (pair 1)" % (names.get(s, s), top))
    print()
    print("| Ir/request | share | function (file:function) |")
    print("|---|---|---|")
    for v, k in diff[:top]:
        print("| %.1f | %.1f%% | %s |" % (v, 100 * v / tot if tot else 0, k))
    rest = sum(v for v, _ in diff[top:])
    print("| %.1f | %.1f%% | (the other %d functions) |" % (rest, 100 * rest / tot if tot else 0, len(diff) - top))
if cpu:
    print()
    print("### Native server CPU time per request (not instructions: /proc/PID/stat, %d Hz ticks, no valgrind)" % hz)
    print()
    print("| server | requests/run | user us/request | system us/request | user ticks/run | all CPU us/request (schedstat) | runs |")
    print("|---|---|---|---|---|---|---|")
    for s in dict.fromkeys(c[0] for c in cpu):
        rows = [c for c in cpu if c[0] == s]
        u = m3([int(c[3]) / hz * 1e6 / int(c[2]) for c in rows])
        k = m3([int(c[4]) / hz * 1e6 / int(c[2]) for c in rows])
        t = m3([int(c[5]) / 1e3 / int(c[2]) for c in rows])
        print("| %s | %d | %s | %s | %d | %s | %d |" % (names.get(s, s), int(rows[0][2]), f3(u, 3), f3(k, 3),
                                                     statistics.median(int(c[3]) for c in rows), f3(t, 3), len(rows)))
    print()
    print("utime and stime are sampled at each %.0f ms clock tick: a figure over few user ticks (column 5) is coarse, "
          "and on this kernel most of an echo server's time is system time. The schedstat column is exact but "
          "adds user and system together." % (1000 / hz))
print()
print("Commands (the port, request count and paths vary):")
for s in servers:
    print("    " + pairs[s][0][0]["server_cmd"])
print("    " + re.sub(r"/tmp/tmp\.\w+/", "$TMP/", re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:$PORT", lcmd)))
EOF
