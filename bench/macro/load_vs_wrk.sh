#!/usr/bin/env bash
# rill-load vs wrk against the same nginx: requests/s and CPU per request, side by side.
#
#   bash bench/macro/load_vs_wrk.sh
#
# nginx (Debian) serves a fixed 13-byte body from a config this script writes to a temp dir:
# one process (master_process off), access log off, keep-alive without a request limit, pinned
# to CPU 0. The load generator is pinned to CPU 1. For each connection count the two generators
# run alternately, A B A B ..., REPS times each, for DURATION seconds, same threads, same
# connections, no pipelining (wrk does not pipeline without a script). Both are measured the
# same way from outside: requests/s from each tool's own count over its own run, client CPU
# from the shell's `time` over the whole process, server CPU from /proc/PID/stat before and
# after. rill-load runs with --warmup 0 so that its whole process and its count line up, as
# wrk's do.
#
# Env: CONNS ("64 256"), THREADS (1), REPS (5), DURATION (5), PORT (18480),
#      RILL_LOAD (build/release/rill-load), OUT (a temp dir: raw results, one JSON per run).
# Prints a Markdown table: median [min max] per generator, and the ratio of medians.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CONNS=${CONNS:-"64 256"}
THREADS=${THREADS:-1}
REPS=${REPS:-5}
DURATION=${DURATION:-5}
PORT=${PORT:-18480}
RILL_LOAD=${RILL_LOAD:-$root/build/release/rill-load}
OUT=${OUT:-$(mktemp -d /tmp/load_vs_wrk.XXXXXX)}
mkdir -p "$OUT/nginx/logs"

for bin in nginx wrk taskset python3 "$RILL_LOAD"; do
    command -v "$bin" >/dev/null || { echo "missing: $bin (apt-get install -y nginx wrk)"; exit 1; }
done

cat > "$OUT/nginx/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/logs/error.log;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    server {
        listen 127.0.0.1:$PORT reuseport backlog=4096;
        location / { default_type text/plain; return 200 "Hello, World!"; }
    }
}
EOF

taskset -c 0 nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" &
ngx=$!
trap 'kill $ngx 2>/dev/null; wait $ngx 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && break
    sleep 0.1
done

cpu_us() { # utime + stime of a process in microseconds
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) * 1000000 / hz }' \
        "/proc/$1/stat"
}

# run TOOL CONNS REP: one run; appends "tool conns rep rps client_us server_us requests" to raw.
run() {
    local tool=$1 c=$2 rep=$3 log="$OUT/$1-c$2-r$3"
    local s0 s1 t reqs rps
    s0=$(cpu_us $ngx)
    if [ "$tool" = wrk ]; then
        { TIMEFORMAT='%3U %3S'; time taskset -c 1 wrk -t "$THREADS" -c "$c" -d "${DURATION}s" \
            "http://127.0.0.1:$PORT/" > "$log.txt"; } 2> "$log.time"
        reqs=$(awk '/requests in/ { print $1 }' "$log.txt")
        rps=$(awk '/^Requests\/sec/ { print $2 }' "$log.txt")
    else
        { TIMEFORMAT='%3U %3S'; time taskset -c 1 "$RILL_LOAD" -t "$THREADS" -c "$c" \
            -d "$DURATION" --warmup 0 -q --server-pid $ngx --json "$log.json" \
            "http://127.0.0.1:$PORT/" > "$log.txt"; } 2> "$log.time"
        reqs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"]["requests"])' "$log.json")
        rps=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"]["requests_per_s"])' "$log.json")
    fi
    s1=$(cpu_us $ngx)
    t=$(tail -n 1 "$log.time")
    echo "$tool $c $rep $rps $t $((${s1%.*} - ${s0%.*})) $reqs" >> "$OUT/raw.txt"
}

: > "$OUT/raw.txt"
for c in $CONNS; do
    for rep in $(seq "$REPS"); do
        run rill-load "$c" "$rep"
        run wrk "$c" "$rep"
    done
done

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), Linux $(uname -r)"
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///') on CPU 0; load on CPU 1; threads $THREADS; ${DURATION}s runs; raw: $OUT/raw.txt"
python3 - "$OUT/raw.txt" <<'EOF'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
data = {}
for tool, c, rep, rps, user, sys_, srv, reqs in rows:
    reqs = float(reqs)
    d = data.setdefault((int(c), tool), {"rps": [], "cli": [], "srv": []})
    d["rps"].append(float(rps))
    d["cli"].append((float(user) + float(sys_)) * 1e6 / reqs)
    d["srv"].append(float(srv) / reqs)
def fmt(v, p=1):
    return f"{st.median(v):,.{p}f} [{min(v):,.{p}f} {max(v):,.{p}f}]".replace(",", " ")
print("| connections | generator | requests/s | client CPU µs/req | server CPU µs/req |")
print("|---|---|---|---|---|")
for c in sorted({k[0] for k in data}):
    for tool in ("rill-load", "wrk"):
        d = data[(c, tool)]
        print(f"| {c} | {tool} | {fmt(d['rps'], 0)} | {fmt(d['cli'], 2)} | {fmt(d['srv'], 2)} |")
print()
for c in sorted({k[0] for k in data}):
    a, b = data[(c, "rill-load")], data[(c, "wrk")]
    print(f"{c} connections, rill-load / wrk (ratio of medians): requests/s "
          f"{st.median(a['rps']) / st.median(b['rps']):.2f}, client CPU per request "
          f"{st.median(a['cli']) / st.median(b['cli']):.2f}, server CPU per request "
          f"{st.median(a['srv']) / st.median(b['srv']):.2f}")
EOF
