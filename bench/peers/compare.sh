#!/usr/bin/env bash
# Side-by-side runs of rill against the peers of bench/peers, interleaved (A B C ... A B C ...),
# REPS repetitions, median [min max]. Server pinned to SERVER_CPU, load generator to LOAD_CPU.
#
#   bash bench/peers/compare.sh echo   rill-echo (io_uring, epoll) vs the echo peers, by rill-load
#   bash bench/peers/compare.sh http   rill-http (io_uring, epoll) vs nginx, by wrk
#
# env: BUILD=build/release REPS=5 DURATION=5 WARMUP=1 SERVER_CPU=0 LOAD_CPU=1 (empty: no taskset)
#      RAW=DIR keeps every run's raw output (load generator and server) in DIR
#      STRICT=1 exits 1 when any run measured nothing (the ctest quick mode sets it)
#      echo: CONNS="100" SIZE=64 SERVERS="rill-uring rill-epoll peer-epoll peer-uring"
#            (also peer-libuv, peer-libevent); DEPTH=1
#      http: CONNS="100" DEPTHS="1 16" SERVERS="rill-http-uring rill-http-epoll nginx" PATH_=/plaintext
#            files: ROOT=DIR with SERVERS="rill-http-root-uring rill-http-root-epoll nginx-root"
#            (rill-http --root DIR, nginx with sendfile on) and PATH_=/a-file-in-DIR
#            LOADGEN=rill-load drives them with rill-load instead of wrk (client CPU too)
# Prints one table row per server: requests/s, p50/p99/p99.9 latency (us; wrk gives no p99.9),
# server CPU us per request (from /proc of the server and its descendants), client CPU us per
# request (echo only: rill-load reports it), and the ratio of requests/s to the first server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mode=${1:-}
[ "$mode" = echo ] || [ "$mode" = http ] || { sed -n '2,16p' "$0"; exit 2; }
BUILD=${BUILD:-build/release} REPS=${REPS:-5} DURATION=${DURATION:-5} WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU-0} LOAD_CPU=${LOAD_CPU-1} CONNS=${CONNS:-100} STRICT=${STRICT:-0}
server_pre=() load_pre=()
[ -n "$SERVER_CPU" ] && server_pre=(taskset -c "$SERVER_CPU")
[ -n "$LOAD_CPU" ] && load_pre=(taskset -c "$LOAD_CPU")
failed=0
ulimit -n 65536 2>/dev/null || true
tmp=$(mktemp -d)
RAW=${RAW:-}
[ -n "$RAW" ] && mkdir -p "$RAW"
nrun=0
server=""
cleanup() { [ -n "$server" ] && kill -TERM "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
hz=$(getconf CLK_TCK)

server_cmd() {
    case $1 in
    rill-uring) echo "$BUILD/rill-echo -t 1 --backend uring -l tcp://127.0.0.1:0" ;;
    rill-epoll) echo "$BUILD/rill-echo -t 1 --backend epoll -l tcp://127.0.0.1:0" ;;
    peer-*) echo "$BUILD/bench/peers/$1 -t 1 --port 0" ;;
    rill-http-uring) echo "$BUILD/rill-http -t 1 --backend uring -l tcp://127.0.0.1:0" ;;
    rill-http-epoll) echo "$BUILD/rill-http -t 1 --backend epoll -l tcp://127.0.0.1:0" ;;
    nginx) echo "bash bench/peers/nginx/run.sh --port 0 --workers 1" ;;
    rill-http-root-uring) echo "$BUILD/rill-http -t 1 --backend uring -l tcp://127.0.0.1:0 --root $ROOT" ;;
    rill-http-root-epoll) echo "$BUILD/rill-http -t 1 --backend epoll -l tcp://127.0.0.1:0 --root $ROOT" ;;
    nginx-root) echo "bash bench/peers/nginx/run.sh --port 0 --workers 1 --root $ROOT" ;;
    *) echo "compare.sh: unknown server $1" >&2; exit 2 ;;
    esac
}

# descendants PID: the pid and every process below it (run.sh -> nginx master -> workers).
descendants() {
    local c
    echo "$1"
    for c in $(pgrep -P "$1" 2>/dev/null || true); do descendants "$c"; done
}

# CPU ticks (user + system) of a process and its descendants.
ticks() {
    local total=0 p t
    for p in $(descendants "$1"); do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}

# start_server NAME: sets $server (its pid) and $port; not in a subshell, so that $server stays.
start_server() {
    local out=$tmp/server.out i
    port=""
    # The server's shell truncates $out only once it runs: a stale file from the previous run
    # would hand us the previous port.
    rm -f "$out" "$tmp/server.err"
    # shellcheck disable=SC2046 # the command is words on purpose
    "${server_pre[@]}" $(server_cmd "$1") >"$out" 2>"$tmp/server.err" &
    server=$!
    for i in $(seq 200); do
        # (The file may not exist yet: sed's failure must not end the script under pipefail.)
        port=$({ sed -nE 's/^listening tcp:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$out" 2>/dev/null || true; } | head -1)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { echo "compare.sh: $1 did not start" >&2; cat "$out" "$tmp/server.err" >&2; exit 1; }
}

stop_server() { kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; }

# keep NAME FILE: files a run's raw output under $RAW; warns when the run measured nothing.
keep() {
    nrun=$((nrun + 1))
    if [ -n "$RAW" ]; then
        cp "$2" "$RAW/$(printf %03d $nrun)-$1.txt"
        cat "$tmp/server.out" "$tmp/server.err" >"$RAW/$(printf %03d $nrun)-$1.server.txt" 2>/dev/null || true
    fi
    if ! grep -qE '^(requests/s|Requests/sec)' "$2"; then
        echo "compare.sh: run $nrun ($1) measured nothing:" >&2
        cat "$2" >&2
        failed=1
    fi
}

# to_us VALUE: wrk's "1.23ms" / "456.00us" / "1.2s" in microseconds.
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) printf "%.0f\n", n * 1000; else if (v ~ /s$/) printf "%.0f\n", n * 1e6; else print n }'; }

# One measured run; prints "rps p50 p99 p999 server_us client_us".
run_echo() {
    local name=$1 conns=$2
    start_server "$name"
    "${load_pre[@]}" "$BUILD/rill-load" -c "$conns" -t 1 -d "$DURATION" --warmup "$WARMUP" \
        -s "${SIZE:-64}" --depth "${DEPTH:-1}" --server-pid "$server" "tcp://127.0.0.1:$port" \
        >"$tmp/load.out" 2>&1 || true
    stop_server
    keep "$name" "$tmp/load.out"
    awk '/^requests\/s/ {r=$2} /^latency/ {for (i=1;i<NF;i++) {if ($i=="p50") a=$(i+1); if ($i=="p99") b=$(i+1); if ($i=="p99.9") c=$(i+1)}}
         /^server CPU/ {s=$3} /^client CPU/ {k=$3} END {print r+0, a+0, b+0, c+0, s+0, k+0}' "$tmp/load.out"
}

# run_http with rill-load as the load generator: its own figures, and the server's CPU from /proc
# as for wrk (the server's descendants included: nginx's workers).
run_http_load() {
    local name=$1 conns=$2 depth=$3 t0 t1
    start_server "$name"
    local url="http://127.0.0.1:$port${PATH_:-/plaintext}"
    "${load_pre[@]}" "$BUILD/rill-load" -c "$conns" -t 1 -d "$WARMUP" --depth "$depth" "$url" >/dev/null 2>&1 || true
    t0=$(ticks "$server")
    "${load_pre[@]}" "$BUILD/rill-load" -c "$conns" -t 1 -d "$DURATION" --depth "$depth" "$url" \
        >"$tmp/load.out" 2>&1 || true
    t1=$(ticks "$server")
    stop_server
    keep "$name-d$depth" "$tmp/load.out"
    awk -v t=$((t1 - t0)) -v hz="$hz" '/^requests / {n=$2} /^requests\/s/ {r=$2}
         /^latency/ {for (i=1;i<NF;i++) {if ($i=="p50") a=$(i+1); if ($i=="p99") b=$(i+1); if ($i=="p99.9") c=$(i+1)}}
         /^client CPU/ {k=$3} END {printf "%s %s %s %s %.2f %s\n", r+0, a+0, b+0, c+0, (n > 0 ? t / hz * 1e6 / n : 0), k+0}' "$tmp/load.out"
}

run_http() {
    local name=$1 conns=$2 depth=$3 t0 t1 args=()
    if [ "${LOADGEN:-wrk}" = rill-load ]; then
        run_http_load "$@"
        return
    fi
    start_server "$name"
    [ "$depth" -gt 1 ] && args=(-s bench/peers/pipeline.lua)
    local url="http://127.0.0.1:$port${PATH_:-/plaintext}"
    "${load_pre[@]}" wrk -t 1 -c "$conns" -d "${WARMUP}s" "${args[@]}" "$url" -- "$depth" >/dev/null 2>&1 || true
    t0=$(ticks "$server")
    "${load_pre[@]}" wrk -t 1 -c "$conns" -d "${DURATION}s" --latency "${args[@]}" "$url" -- "$depth" \
        >"$tmp/wrk.out" 2>&1 || true
    t1=$(ticks "$server")
    stop_server
    keep "$name-d$depth" "$tmp/wrk.out"
    local rps p50 p99 p999 total
    rps=$(awk '/^Requests\/sec/ {print $2}' "$tmp/wrk.out")
    total=$(awk '/requests in/ {print $1}' "$tmp/wrk.out")
    p50=$(to_us "$(awk '$1=="50%" {print $2}' "$tmp/wrk.out")")
    p99=$(to_us "$(awk '$1=="99%" {print $2}' "$tmp/wrk.out")")
    p999=- # wrk --latency reports 50/75/90/99% only
    # Server CPU over the measured wrk run (a few ms of start/stop included): us per request.
    local cpu_us
    cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="${total:-0}" 'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print 0 }')
    echo "${rps:-0} ${p50:-0} ${p99:-0} ${p999:-0} $cpu_us 0"
}

# med FILE COL: "median [min max]" of a column.
med() { sort -g -k"$2" "$1" | awk -v c="$2" '{v[NR]=$c} END {printf "%.1f [%.1f %.1f]", v[int((NR+1)/2)], v[1], v[NR]}'; }
medv() { sort -g -k"$2" "$1" | awk -v c="$2" '{v[NR]=$c} END {print v[int((NR+1)/2)]}'; }

report() { # report LABEL SERVERS...: the table rows of one workload, ratios to the first server
    local label=$1; shift
    local first=$1 base s
    base=$(medv "$tmp/$first" 1)
    for s in "$@"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %.2f |\n' "$label" "$s" "$(med "$tmp/$s" 1)" \
            "$(medv "$tmp/$s" 2)" "$(medv "$tmp/$s" 3)" "$(medv "$tmp/$s" 4)" "$(med "$tmp/$s" 5)" \
            "$(medv "$tmp/$s" 6)" "$(awk -v a="$(medv "$tmp/$s" 1)" -v b="$base" 'BEGIN {print (b > 0 ? a / b : 0)}')"
    done
}

echo "compare.sh $mode: $(uname -r), $(nproc) CPUs, server on CPU ${SERVER_CPU:-any}, load on CPU ${LOAD_CPU:-any},"
echo "$REPS interleaved repetitions of ${DURATION} s (+${WARMUP} s warm-up); median [min max]; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| workload | server | requests/s | p50 us | p99 us | p99.9 us | server CPU us/req | client CPU us/req | rps / first |"
echo "|---|---|---|---|---|---|---|---|---|"
if [ "$mode" = echo ]; then
    # shellcheck disable=SC2206
    servers=(${SERVERS:-rill-uring rill-epoll peer-epoll peer-uring})
    for c in $CONNS; do
        for s in "${servers[@]}"; do : >"$tmp/$s"; done
        for _ in $(seq "$REPS"); do
            for s in "${servers[@]}"; do run_echo "$s" "$c" >>"$tmp/$s"; done
        done
        report "echo ${SIZE:-64} B, $c conns, depth ${DEPTH:-1}" "${servers[@]}"
    done
else
    # shellcheck disable=SC2206
    servers=(${SERVERS:-rill-http-uring rill-http-epoll nginx})
    for c in $CONNS; do
        for d in ${DEPTHS:-1 16}; do
            for s in "${servers[@]}"; do : >"$tmp/$s"; done
            for _ in $(seq "$REPS"); do
                for s in "${servers[@]}"; do run_http "$s" "$c" "$d" >>"$tmp/$s"; done
            done
            report "http ${PATH_:-/plaintext}, $c conns, depth $d" "${servers[@]}"
        done
    done
fi
if [ "$STRICT" = 1 ] && [ "$failed" = 1 ]; then
    echo "compare.sh: some runs measured nothing (see above)" >&2
    exit 1
fi
