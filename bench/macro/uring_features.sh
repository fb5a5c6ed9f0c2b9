#!/usr/bin/env bash
# The io_uring ablation of issue 14 (item 6): rill-echo on io_uring with each of its optional
# io_uring features switched off in turn (RILL_URING_DISABLE=NAME: recv_bundle, defer_taskrun,
# msg_ring, buf_ring_inc) against all of them on, interleaved (all on, no-recv_bundle, no-defer_taskrun,
# no-msg_ring, all on, ... REPS times), the server pinned to SERVER_CPU and rill-load to LOAD_CPU.
# Cells: 64 B at depth 1 and at depth 16 and 16 KiB at depth 1 (requests in flight per
# connection), at 100 and 1000 connections, over TCP and Unix stream. The report gives per cell
# and variant the requests/s, p50 and p99, server and client CPU us per request, io_uring_enter
# calls per request of the server (perf stat on the syscall tracepoint, ENTERS=1) and of
# rill-load, each as median [min max], and the ratios of the medians to all on.
#
# Before any run, each variant's rill-echo is started once and its start line read: a feature
# the kernel lacks (not in the caps= of all on) has its variant skipped, with a note; a variant
# whose caps still name its feature is an error. The report checks the start line of every run
# again, and says per variant whether the feature was really off.
#
# The runs themselves are bench/macro/matrix.sh (MATRIX=cells, servers rill-uring and
# rill-uring-no-NAME; no B0 probe, fixed-rate or HTTP runs); report.py features makes the tables.
#
#   bash bench/macro/uring_features.sh          12 cells x 4 variants x 5 repetitions of 3 s
#                                               (+1 s warm-up): about 20 minutes
#   QUICK=1 bash bench/macro/uring_features.sh  100 connections only, 2 repetitions of 1 s
#                                               (+1 s warm-up): about 2.5 minutes
#
# env (defaults in brackets; QUICK=1 changes the ones marked *):
#   BUILD [build/release]  OUT [bench/results/uring-features-<UTC time>]: results.jsonl, features.md
#   REPS* [5]  DURATION* [3]  WARMUP [1]  SERVER_CPU [0]  LOAD_CPU [1] (empty: no taskset)
#   FEATURES ["recv_bundle defer_taskrun msg_ring buf_ring_inc"]: one variant each (NAME+NAME: both off at once)
#   CELLS ["64/1 64/16 16384/1"]: SIZE/DEPTH pairs  CONNS* ["100 1000"]  TRANSPORTS ["tcp unix"]
#   ENTERS [1]: count the server's io_uring_enter calls with perf (0, or perf unable: not counted)
#   STRICT [0]: 1 = exit 1 when any run measured nothing
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case ${1:-} in
-h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
"") ;;
*) echo "uring_features.sh: no arguments expected (got '$1'); settings are environment variables, see --help" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "uring_features.sh: no arguments expected; see --help" >&2; exit 2; }

invocation=""
for v in QUICK BUILD OUT REPS DURATION WARMUP SERVER_CPU LOAD_CPU FEATURES CELLS CONNS TRANSPORTS ENTERS; do
    if [ -n "${!v+x}" ]; then invocation+="$v=\"${!v}\" "; fi
done
invocation+="bash bench/macro/uring_features.sh"

QUICK=${QUICK:-0}
case $QUICK in 0|1) ;; *) echo "uring_features.sh: QUICK must be 0 or 1" >&2; exit 2 ;; esac
if [ "$QUICK" = 1 ]; then : "${REPS:=2}" "${DURATION:=1}" "${CONNS:=100}"; fi
BUILD=${BUILD:-build/release} REPS=${REPS:-5} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1}
FEATURES=${FEATURES:-recv_bundle defer_taskrun msg_ring buf_ring_inc} CELLS=${CELLS:-64/1 64/16 16384/1}
CONNS=${CONNS:-100 1000} TRANSPORTS=${TRANSPORTS:-tcp unix} ENTERS=${ENTERS:-1}
OUT=${OUT:-bench/results/uring-features-$(date -u +%Y-%m-%dT%H%M%SZ)}
for v in REPS DURATION WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "uring_features.sh: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
if [ "$REPS" -lt 1 ] || [ "$DURATION" -lt 1 ]; then echo "uring_features.sh: REPS and DURATION must be at least 1" >&2; exit 2; fi
case $ENTERS in 0|1) ;; *) echo "uring_features.sh: ENTERS must be 0 or 1" >&2; exit 2 ;; esac
for c in $CELLS; do
    [[ $c =~ ^[0-9]+/[0-9]+$ ]] || { echo "uring_features.sh: CELLS entries are SIZE/DEPTH (got '$c')" >&2; exit 2; }
done
for c in $CONNS; do [[ $c =~ ^[0-9]+$ ]] || { echo "uring_features.sh: CONNS must be whole numbers (got '$c')" >&2; exit 2; }; done
for t in $TRANSPORTS; do case $t in tcp|unix) ;; *) echo "uring_features.sh: TRANSPORTS are tcp and unix (got '$t')" >&2; exit 2 ;; esac; done
for f in $FEATURES; do
    [[ $f =~ ^[a-z_]+(\+[a-z_]+)*$ ]] || { echo "uring_features.sh: bad feature name '$f'" >&2; exit 2; }
done
if [ ! -x "$BUILD/rill-echo" ] || [ ! -x "$BUILD/rill-load" ]; then
    echo "uring_features.sh: build first (cmake --preset release && cmake --build --preset release)" >&2; exit 2
fi
# A fresh OUT: the report takes every run of results.jsonl.
if [ -s "$OUT/results.jsonl" ]; then echo "uring_features.sh: $OUT/results.jsonl exists; pick another OUT" >&2; exit 2; fi
if [ "$ENTERS" = 1 ] && ! perf stat -e syscalls:sys_enter_io_uring_enter -x "," true >/dev/null 2>&1; then
    echo "uring_features.sh: perf cannot count syscalls:sys_enter_io_uring_enter here (not installed, perf_event_paranoid or tracefs): server enters not counted" >&2
    ENTERS=0
fi

tmp=$(mktemp -d)
pre=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [ -n "$pre" ]; then kill -TERM "$pre" 2>/dev/null || true; wait "$pre" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# caps_line [NAME[+NAME..]]: rill-echo's start line on io_uring with those features off (empty:
# it did not start within 5 s; its error is in $tmp/pre.err).
caps_line() {
    local off=${1:-} line=""
    rm -f "$tmp/pre.out"
    env ${off:+RILL_URING_DISABLE="${off//+/,}"} timeout -k 2 10 "$BUILD/rill-echo" -t 1 --backend uring \
        -l tcp://127.0.0.1:0 >"$tmp/pre.out" 2>"$tmp/pre.err" &
    pre=$!
    for _ in $(seq 100); do
        line=$(grep -m1 '^listening' "$tmp/pre.out" 2>/dev/null || true)
        [ -n "$line" ] && break
        kill -0 "$pre" 2>/dev/null || break
        sleep 0.05
    done
    kill -TERM "$pre" 2>/dev/null || true; wait "$pre" 2>/dev/null || true; pre=""
    echo "$line"
}
has_cap() { [[ ,$(sed -nE 's/.*caps=([^ ]*).*/\1/p' <<<"$1"), == *",$2,"* ]]; }

allon=$(caps_line)
[ -n "$allon" ] || { echo "uring_features.sh: rill-echo did not start on io_uring:" >&2; cat "$tmp/pre.err" >&2; exit 1; }
[[ $allon == *backend=io_uring* ]] || { echo "uring_features.sh: rill-echo --backend uring runs on another backend: $allon" >&2; exit 1; }
echo "all on: $allon"
servers="rill-uring" skipped="" bad=0
for f in $FEATURES; do
    missing=""
    for n in ${f//+/ }; do has_cap "$allon" "$n" || missing+="$n "; done
    if [ -n "$missing" ]; then
        note="no-$f: the kernel (or build) lacks ${missing% } (not in all on's caps)"
        echo "uring_features.sh: skipped $note" >&2; skipped+="$note; "; continue
    fi
    line=$(caps_line "$f")
    if [ -z "$line" ]; then
        echo "uring_features.sh: RILL_URING_DISABLE=${f//+/,}: rill-echo did not start:" >&2; cat "$tmp/pre.err" >&2; bad=1; continue
    fi
    still=""
    for n in ${f//+/ }; do if has_cap "$line" "$n"; then still+="$n "; fi; done
    if [ -n "$still" ]; then
        echo "uring_features.sh: RILL_URING_DISABLE=${f//+/,}: caps still name ${still% }: $line" >&2; bad=1; continue
    fi
    echo "no-$f: off (caps lack ${f//+/, }): $line"
    servers+=" rill-uring-no-$f"
done
[ "$bad" = 0 ] || exit 1
[ "$servers" != rill-uring ] || echo "uring_features.sh: no feature to switch off; all on runs alone" >&2

mkdir -p "$OUT"
start=$(date +%s)
python3 bench/macro/report.py add-meta "$OUT/results.jsonl" invocation="$invocation" allon_line="$allon" \
    skipped="$skipped" loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
# matrix.sh does the runs (its EXIT trap stops its server and removes its temp dir).
rc=0
env BUILD="$BUILD" OUT="$OUT" REPS="$REPS" DURATION="$DURATION" WARMUP="$WARMUP" \
    SERVER_CPU="${SERVER_CPU-0}" LOAD_CPU="${LOAD_CPU-1}" TRANSPORTS="$TRANSPORTS" CONNS="$CONNS" \
    MATRIX=cells CELLS="$CELLS" SERVERS="$servers" ENTERS="$ENTERS" RATE_CONNS="" HTTP_SERVERS="" PROBE=0 \
    REPORT=0 UPDATE=0 STRICT="${STRICT:-0}" QUICK=0 BASE_BUILD="" bash bench/macro/matrix.sh || rc=$?
[ -s "$OUT/results.jsonl" ] && python3 bench/macro/report.py features "$OUT/results.jsonl" --md "$OUT/features.md"
echo "uring_features.sh: $(( $(date +%s) - start )) s; results in $OUT (results.jsonl, features.md)"
exit "$rc"
