#!/usr/bin/env bash
# The benchmark matrix of issue 7, side by side: rill-echo (io_uring, epoll) against the echo
# peers B1..B4 under rill-load, a fixed-rate run at half of B1's measured maximum, rill-http
# against nginx under wrk and under rill-load, and the B0 floor from rill-probe. Every server of
# a workload runs in turn, REPS times (A B C .. A B C ..); each run is one JSON line appended to
# $OUT/results.jsonl; report.py then makes the tables (median [min max]), targets and plots.
#
#   bash bench/macro/matrix.sh              the default matrix (long: see the counts it prints)
#   QUICK=1 bash bench/macro/matrix.sh      a reduced matrix, under 3 minutes
#   UPDATE=1 ...                            also replace the generated block of BENCHMARKS.md
#
# env (defaults in brackets; QUICK=1 changes the ones marked *):
#   BUILD [build/release]  OUT [bench/results/<UTC date>]  REPS* [5]  DURATION* [3]  WARMUP [1]
#   SERVER_CPU [0]  LOAD_CPU [1]  (empty: no taskset)
#   TRANSPORTS* ["tcp unix"]  CONNS* ["1 10 100 1000"]  SIZES* ["64 1024 16384"]  DEPTHS ["1 16"]
#   MATRIX [star]: star = every CONNS at the first size and depth, then every other size and
#          every other depth at STAR_CONNS* [100]; full = every combination; cells = every CONNS
#          at each SIZE/DEPTH pair of CELLS (e.g. "64/1 64/16 16384/1"; SIZES and DEPTHS unused)
#   SERVERS ["rill-uring rill-epoll peer-epoll peer-libuv peer-libevent peer-uring"]; also
#          rill-uring-base and rill-epoll-base: rill-echo of a second build, BASE_BUILD; and
#          rill-uring-no-NAME[+NAME..]: rill-echo on io_uring with RILL_URING_DISABLE=NAME[,NAME..]
#   ENTERS [0]: 1 = run rill-echo under `perf stat -e syscalls:sys_enter_io_uring_enter` and
#          record the server's io_uring_enter calls per request (over its life, warm-up included)
#   LIMIT [DURATION + WARMUP + 30]: seconds after which a rill-load run is killed
#   BASE_BUILD []: the build directory of that second rill (e.g. a build of main) to compare with
#   RATE_CONNS* [1000] (empty: no fixed-rate run)  RATE_TRANSPORTS [tcp]
#   HTTP_SERVERS ["rill-http-uring rill-http-epoll nginx"] (empty: no HTTP)  HTTP_LOADS ["wrk rill-load"]
#   HTTP_CONNS [100]  HTTP_DEPTHS [1]  HTTP_PATH [/plaintext]
#   PROBE [1]: the B0 floor (rill-probe, tcp4 and socketpair, 64 B, blocking read/write)
#   REPORT [1]: run report.py at the end (PNG plots into PLOTS [bench/plots]);
#   UPDATE [0]: 1 = also write BENCHMARKS.md's block (else only $OUT/report.md)
#   STRICT [0]: exit 1 when any run measured nothing (the ctest sets it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case ${1:-} in -h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#'; exit 0 ;; esac
invocation=""
for v in QUICK REPS DURATION WARMUP TRANSPORTS CONNS SIZES DEPTHS MATRIX CELLS STAR_CONNS SERVERS BASE_BUILD RATE_CONNS ENTERS \
         RATE_TRANSPORTS HTTP_SERVERS HTTP_LOADS HTTP_CONNS HTTP_DEPTHS PROBE UPDATE SERVER_CPU LOAD_CPU OUT; do
    if [ -n "${!v+x}" ]; then invocation+="$v=\"${!v}\" "; fi
done
invocation+="bash bench/macro/matrix.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    : "${REPS:=2}" "${DURATION:=1}" "${TRANSPORTS:=tcp}" "${CONNS:=1 100}" "${SIZES:=64}"
    : "${DEPTHS:=1 16}" "${RATE_CONNS=100}" "${STAR_CONNS:=100}"
fi
BUILD=${BUILD:-build/release} OUT=${OUT:-bench/results/$(date -u +%F)}
REPS=${REPS:-5} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU-0} LOAD_CPU=${LOAD_CPU-1}
TRANSPORTS=${TRANSPORTS:-tcp unix} CONNS=${CONNS:-1 10 100 1000} SIZES=${SIZES:-64 1024 16384}
DEPTHS=${DEPTHS:-1 16} MATRIX=${MATRIX:-star} STAR_CONNS=${STAR_CONNS:-100}
SERVERS=${SERVERS-rill-uring rill-epoll peer-epoll peer-libuv peer-libevent peer-uring}
RATE_CONNS=${RATE_CONNS-1000} RATE_TRANSPORTS=${RATE_TRANSPORTS:-tcp}
HTTP_SERVERS=${HTTP_SERVERS-rill-http-uring rill-http-epoll nginx} HTTP_LOADS=${HTTP_LOADS-wrk rill-load}
HTTP_CONNS=${HTTP_CONNS:-100} HTTP_DEPTHS=${HTTP_DEPTHS:-1} HTTP_PATH=${HTTP_PATH:-/plaintext}
PROBE=${PROBE:-1} REPORT=${REPORT:-1} UPDATE=${UPDATE:-0} STRICT=${STRICT:-0} BASE_BUILD=${BASE_BUILD:-}
CELLS=${CELLS:-64/1} ENTERS=${ENTERS:-0} LIMIT=${LIMIT:-$((DURATION + WARMUP + 30))}

[ -x "$BUILD/rill-load" ] || { echo "matrix.sh: build first (cmake --preset release && cmake --build --preset release)" >&2; exit 2; }
server_pre=() load_pre=()
[ -n "$SERVER_CPU" ] && server_pre=(taskset -c "$SERVER_CPU")
[ -n "$LOAD_CPU" ] && load_pre=(taskset -c "$LOAD_CPU")
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true
mkdir -p "$OUT"
results=$OUT/results.jsonl
py() { python3 bench/macro/report.py "$@"; }
tmp=$(mktemp -d)
server="" worker="" counted=0
cleanup() {
    if [ -n "$server" ] && [ "$counted" = 1 ] && [ -n "$worker" ]; then kill -TERM "$worker" 2>/dev/null || true; fi
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
hz=$(getconf CLK_TCK)
run_id=$(date -u +%Y%m%dT%H%M%SZ)-$$
failed=0 nrun=0

# Drop servers whose binary was not built (the peers need libuv, libevent, liburing).
have() {
    case $1 in
    rill-uring|rill-epoll|rill-uring-no-*) [ -x "$BUILD/rill-echo" ] ;;
    rill-uring-base|rill-epoll-base) [ -n "$BASE_BUILD" ] && [ -x "$BASE_BUILD/rill-echo" ] ;;
    rill-http-*) [ -x "$BUILD/rill-http" ] ;;
    peer-*) [ -x "$BUILD/bench/peers/$1" ] ;;
    nginx) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ;;
    wrk) command -v wrk >/dev/null ;;
    rill-load) true ;;
    *) false ;;
    esac
}
keep_have() { local x kept=(); for x in $1; do if have "$x"; then kept+=("$x"); else echo "matrix.sh: $x not available, skipped" >&2; fi; done; echo "${kept[*]:-}"; }
SERVERS=$(keep_have "$SERVERS") HTTP_SERVERS=$(keep_have "$HTTP_SERVERS") HTTP_LOADS=$(keep_have "$HTTP_LOADS")

# server_cmd NAME TRANSPORT SOCK: the command line of a server.
server_cmd() {
    local l="tcp://127.0.0.1:0" u=""
    [ "$2" = unix ] && l="unix:$3" u="--unix $3"
    case $1 in
    rill-uring) echo "$BUILD/rill-echo -t 1 --backend uring -l $l" ;;
    rill-uring-no-*) local off=${1#rill-uring-no-}
        echo "env RILL_URING_DISABLE=${off//+/,} $BUILD/rill-echo -t 1 --backend uring -l $l" ;;
    rill-epoll) echo "$BUILD/rill-echo -t 1 --backend epoll -l $l" ;;
    rill-uring-base) echo "$BASE_BUILD/rill-echo -t 1 --backend uring -l $l" ;;
    rill-epoll-base) echo "$BASE_BUILD/rill-echo -t 1 --backend epoll -l $l" ;;
    peer-*) echo "$BUILD/bench/peers/$1 -t 1 --port 0 $u" ;;
    rill-http-uring) echo "$BUILD/rill-http -t 1 --backend uring -l tcp://127.0.0.1:0" ;;
    rill-http-epoll) echo "$BUILD/rill-http -t 1 --backend epoll -l tcp://127.0.0.1:0" ;;
    nginx) echo "bash bench/peers/nginx/run.sh --port 0 --workers 1" ;;
    *) echo "matrix.sh: unknown server $1" >&2; exit 2 ;;
    esac
}

descendants() { local c; echo "$1"; for c in $(pgrep -P "$1" 2>/dev/null || true); do descendants "$c"; done; }
ticks() {
    local total=0 p t
    for p in $(descendants "$1"); do
        t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
        total=$((total + t))
    done
    echo "$total"
}

# start_server NAME TRANSPORT: sets $server, $target_base (tcp://127.0.0.1:P or unix:PATH),
# $port, $worker (the pid doing the work: nginx's worker, or rill-echo under perf, else the
# server), $scmd and $counted (1: the server runs under perf stat, ENTERS=1).
start_server() {
    local out=$tmp/server.out sock=$tmp/srv.sock perf_pre=()
    port="" worker="" counted=0
    rm -f "$out" "$tmp/server.err" "$sock" "$tmp/enters.txt"
    scmd="$(server_cmd "$1" "$2" "$sock")"
    if [ "$ENTERS" = 1 ] && [[ $1 == rill-uring* ]]; then
        counted=1 perf_pre=(perf stat -e syscalls:sys_enter_io_uring_enter -x "," -o "$tmp/enters.txt" --)
    fi
    # shellcheck disable=SC2086 # the command is words on purpose
    "${server_pre[@]}" "${perf_pre[@]}" $scmd >"$out" 2>"$tmp/server.err" &
    server=$!
    if [ "$counted" = 1 ]; then scmd="${perf_pre[*]} $scmd"; fi
    for _ in $(seq 200); do
        port=$({ sed -nE 's/^listening tcp:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$out" 2>/dev/null || true; } | head -1)
        if [ "$2" = unix ]; then
            grep -q '^listening' "$out" 2>/dev/null && [ -S "$sock" ] && break
        elif [ -n "$port" ]; then break; fi
        sleep 0.05
    done
    if [ "$2" = unix ]; then target_base="unix:$sock"; else target_base="tcp://127.0.0.1:$port"; fi
    grep -q '^listening' "$out" 2>/dev/null || { echo "matrix.sh: $1 did not start" >&2; cat "$out" "$tmp/server.err" >&2; exit 1; }
    worker=$server
    if [ "$1" = nginx ]; then
        for _ in $(seq 50); do
            worker=$(for p in $(descendants "$server"); do grep -qs 'worker process' "/proc/$p/cmdline" && echo "$p"; done | head -1)
            [ -n "$worker" ] && break
            sleep 0.05
        done
        [ -n "$worker" ] || worker=$server
    fi
    if [ "$counted" = 1 ]; then # perf's child (env and taskset exec): rill-echo
        worker=$(for p in $(descendants "$server"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = rill-echo ] && echo "$p"; done | head -1)
        [ -n "$worker" ] || { echo "matrix.sh: $1 under perf: no rill-echo process" >&2; exit 1; }
    fi
}
# Under perf the server is stopped itself (perf then writes its count and exits).
stop_server() {
    if [ "$counted" = 1 ]; then
        kill -TERM "$worker" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$server" 2>/dev/null || break; sleep 0.05; done
    fi
    kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""
}

check() { # check FILE: counts the run; notes a run that measured nothing
    nrun=$((nrun + 1))
    if ! grep -qE '^(requests/s|Requests/sec)' "$1"; then
        echo "matrix.sh: run $nrun measured nothing:" >&2; cat "$1" >&2; failed=1
    fi
}

# run_load KIND SERVER TRANSPORT CONNS SIZE DEPTH REP [RATE]: one rill-load run, one JSON line.
run_load() {
    local kind=$1 name=$2 tr=$3 c=$4 size=$5 depth=$6 rep=$7 rate=${8:-0} target ra=()
    start_server "$name" "$tr"
    target=$target_base
    if [ "$kind" = http ]; then target="http://127.0.0.1:$port$HTTP_PATH"; else ra=(-s "$size"); fi
    [ "$rate" != 0 ] && ra+=(-R "$rate")
    local lcmd=(rill-load -c "$c" -t 1 -d "$DURATION" --warmup "$WARMUP" --depth "$depth" "${ra[@]}" -q
                --server-pid "$worker" --json "$tmp/load.json" "$target") extra=()
    rm -f "$tmp/load.json"
    "${load_pre[@]}" timeout -k 5 "$LIMIT" "$BUILD/${lcmd[0]}" "${lcmd[@]:1}" >"$tmp/load.out" 2>&1 || true
    stop_server
    check "$tmp/load.out"
    # The server's start line (its capabilities) and, under perf, its io_uring_enter calls and the
    # bytes it received over its life (rill-echo's exit line), for report.py.
    extra=(server_line="$(grep -m1 '^listening' "$tmp/server.out" 2>/dev/null || true)")
    if [ "$counted" = 1 ]; then
        extra+=(server_enters="$(awk -F, '$3 ~ /io_uring_enter/ {print $1}' "$tmp/enters.txt" 2>/dev/null || true)"
                server_bytes_in="$(sed -nE 's/.* bytes-in ([0-9]+).*/\1/p' "$tmp/server.out" "$tmp/server.err" 2>/dev/null | head -1)")
    fi
    if [ -s "$tmp/load.json" ]; then
        py add-load "$tmp/load.json" "$results" run="$run_id" kind="$kind" server="$name" load=rill-load \
            transport="$tr" conns="$c" size="$size" depth="$depth" rep="$rep" rate="$rate" \
            server_cmd="${server_pre[*]} $scmd" load_cmd="${load_pre[*]} ${lcmd[*]}" "${extra[@]}"
    fi
}

# run_wrk SERVER CONNS DEPTH REP: one wrk run (after a warm-up run), one JSON line.
run_wrk() {
    local name=$1 c=$2 depth=$3 rep=$4 t0 t1 args=() ct0 ct1
    start_server "$name" tcp
    [ "$depth" -gt 1 ] && args=(-s bench/peers/pipeline.lua)
    local url="http://127.0.0.1:$port$HTTP_PATH"
    [ "$WARMUP" != 0 ] && { "${load_pre[@]}" wrk -t 1 -c "$c" -d "${WARMUP}s" "${args[@]}" "$url" -- "$depth" >/dev/null 2>&1 || true; }
    t0=$(ticks "$server")
    # `times` (not in a subshell: that would report the subshell's children) before and after wrk.
    times >"$tmp/times0"
    local wcmd=(wrk -t 1 -c "$c" -d "${DURATION}s" --latency "${args[@]}" "$url" -- "$depth")
    "${load_pre[@]}" "${wcmd[@]}" >"$tmp/wrk.out" 2>&1 || true
    times >"$tmp/times1"
    ct0=$(sed -n 2p "$tmp/times0") ct1=$(sed -n 2p "$tmp/times1")
    t1=$(ticks "$server")
    stop_server
    check "$tmp/wrk.out"
    py add-wrk "$tmp/wrk.out" "$results" run="$run_id" kind=http server="$name" load=wrk transport=tcp \
        conns="$c" size=0 depth="$depth" rep="$rep" rate=0 server_ticks=$((t1 - t0)) hz="$hz" \
        client_times0="$ct0" client_times1="$ct1" duration="$DURATION" \
        server_cmd="${server_pre[*]} $scmd" load_cmd="${load_pre[*]} ${wcmd[*]}"
}

# The workloads: "TRANSPORT CONNS SIZE DEPTH" lines.
workloads() {
    local t c s d s0 d0
    read -r s0 _ <<<"$SIZES"; read -r d0 _ <<<"$DEPTHS"
    for t in $TRANSPORTS; do
        if [ "$MATRIX" = full ]; then
            for c in $CONNS; do for s in $SIZES; do for d in $DEPTHS; do echo "$t $c $s $d"; done; done; done
        elif [ "$MATRIX" = cells ]; then
            for c in $CONNS; do for s in $CELLS; do echo "$t $c ${s%/*} ${s#*/}"; done; done
        else
            for c in $CONNS; do echo "$t $c $s0 $d0"; done
            for s in $SIZES; do [ "$s" = "$s0" ] || echo "$t $STAR_CONNS $s $d0"; done
            for d in $DEPTHS; do [ "$d" = "$d0" ] || echo "$t $STAR_CONNS $s0 $d"; done
        fi
    done
}

nserv=$(wc -w <<<"$SERVERS") nhttp=$(wc -w <<<"$HTTP_SERVERS") nloads=$(wc -w <<<"$HTTP_LOADS")
nwl=$(workloads | wc -l) nrate=$(wc -w <<<"$RATE_CONNS $RATE_TRANSPORTS")
[ -z "$RATE_CONNS" ] && nrate=0
runs=$(( (nwl * nserv + (nrate > 0 ? $(wc -w <<<"$RATE_TRANSPORTS") * $(wc -w <<<"$RATE_CONNS") * nserv : 0) \
        + nhttp * nloads * $(wc -w <<<"$HTTP_CONNS") * $(wc -w <<<"$HTTP_DEPTHS")) * REPS ))
echo "matrix.sh: $(uname -r), $(nproc) CPUs, server on CPU ${SERVER_CPU:-any}, load on CPU ${LOAD_CPU:-any}; $runs runs of ${DURATION} s (+${WARMUP} s warm-up), about $(( runs * (DURATION + WARMUP + 1) / 60 + 1 )) min; results: $results"
py add-meta "$results" run="$run_id" invocation="$invocation" reps="$REPS" duration="$DURATION" \
    warmup="$WARMUP" server_cpu="$SERVER_CPU" load_cpu="$LOAD_CPU" transports="$TRANSPORTS" conns="$CONNS" \
    sizes="$SIZES" depths="$DEPTHS" matrix="$MATRIX" cells="$CELLS" enters="$ENTERS" servers="$SERVERS" rate_conns="$RATE_CONNS" \
    http_servers="$HTTP_SERVERS" http_loads="$HTTP_LOADS" http_conns="$HTTP_CONNS" http_depths="$HTTP_DEPTHS" \
    probe="$PROBE" base_build="$BASE_BUILD" loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"

# B0: the blocking floor, client thread on the load CPU, server thread on the server CPU.
if [ "$PROBE" = 1 ] && [ -x "$BUILD/rill-probe" ]; then
    pin=()
    [ -n "$SERVER_CPU" ] && [ -n "$LOAD_CPU" ] && pin=(--pin "$LOAD_CPU,$SERVER_CPU")
    pcmd=(rill-probe -t "tcp4,socketpair" -s rw-block -m "pingpong,stream,pair" -z 64 -r "$REPS" -T 0.5 "${pin[@]}" --json)
    echo "B0: ${pcmd[*]}"
    if "$BUILD/${pcmd[0]}" "${pcmd[@]:1}" >"$tmp/probe.json" 2>"$tmp/probe.err"; then
        py add-probe "$tmp/probe.json" "$results" run="$run_id" kind=probe load_cmd="${pcmd[*]}"
    else
        echo "matrix.sh: rill-probe failed:" >&2; cat "$tmp/probe.err" >&2; failed=1
    fi
fi

# Echo workloads, the servers interleaved.
if [ -n "$SERVERS" ]; then
    while read -r t c s d; do
        echo "echo $t, $c conns, $s B, depth $d: $SERVERS x $REPS"
        for r in $(seq "$REPS"); do
            for srv in $SERVERS; do run_load echo "$srv" "$t" "$c" "$s" "$d" "$r"; done
        done
    done < <(workloads)
fi

# Fixed rate at half of B1's maximum (measured above at the same workload, else now).
if [ -n "$RATE_CONNS" ] && [ -n "$SERVERS" ]; then
    read -r s0 _ <<<"$SIZES"; read -r d0 _ <<<"$DEPTHS"
    for t in $RATE_TRANSPORTS; do
        for c in $RATE_CONNS; do
            max=$(py median "$results" run="$run_id" kind=echo server=peer-epoll transport="$t" conns="$c" size="$s0" depth="$d0")
            if [ "$max" = 0 ] && have peer-epoll; then
                run_load calib peer-epoll "$t" "$c" "$s0" "$d0" 1
                max=$(py median "$results" run="$run_id" kind=calib server=peer-epoll transport="$t" conns="$c" size="$s0" depth="$d0")
            fi
            rate=$(awk -v m="$max" 'BEGIN {printf "%d", m / 2}')
            if [ "$rate" -lt 1 ]; then echo "matrix.sh: no B1 maximum for $t $c conns: fixed-rate run skipped" >&2; continue; fi
            echo "fixed rate $t, $c conns, $s0 B: $rate requests/s (half of B1's $max): $SERVERS x $REPS"
            for r in $(seq "$REPS"); do
                for srv in $SERVERS; do run_load rate "$srv" "$t" "$c" "$s0" "$d0" "$r" "$rate"; done
            done
        done
    done
fi

# HTTP: rill-http against nginx, under each load generator.
if [ -n "$HTTP_SERVERS" ]; then
    for ld in $HTTP_LOADS; do
        for c in $HTTP_CONNS; do
            for d in $HTTP_DEPTHS; do
                echo "http $HTTP_PATH by $ld, $c conns, depth $d: $HTTP_SERVERS x $REPS"
                for r in $(seq "$REPS"); do
                    for srv in $HTTP_SERVERS; do
                        if [ "$ld" = wrk ]; then run_wrk "$srv" "$c" "$d" "$r"; else run_load http "$srv" tcp "$c" 0 "$d" "$r"; fi
                    done
                done
            done
        done
    done
fi

echo "matrix.sh: $nrun runs done; results in $results"
if [ "$REPORT" = 1 ]; then
    args=(report "$results" --md "$OUT/report.md" --plots "${PLOTS:-bench/plots}")
    [ "$UPDATE" = 1 ] && args+=(--update BENCHMARKS.md)
    py "${args[@]}"
fi
if [ "$STRICT" = 1 ] && [ "$failed" = 1 ]; then
    echo "matrix.sh: some runs measured nothing (see above)" >&2
    exit 1
fi
