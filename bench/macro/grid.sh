#!/usr/bin/env bash
# The echo grid of issue 12: rill-echo on both backends (io_uring and epoll) against B1
# (peer-epoll) and B4 (peer-uring), side by side, over payload 64 B and 16 KiB, depth 1 and 16
# (requests in flight per connection, rill-load --depth) and 100 and 1000 connections, over TCP
# (Unix stream too with TRANSPORTS="tcp unix"). In every cell the servers run in turn, REPS
# times (A B C D A B C D ...), the server pinned to SERVER_CPU and rill-load to LOAD_CPU, so that
# machine drift hits every server alike. The report gives per cell and server the requests/s, the
# p50 and p99 latency, the server's CPU microseconds per request and the client's, each as median
# [min max], and the ratios of the medians to B1 and to B4.
#
# With BASE_BUILD set to a second rill build (say a build of main), the servers rill-uring-base
# and rill-epoll-base (that build's rill-echo) are interleaved with the others, each rill row gets
# its ratio to its -base twin, and a last table says whether 64 B at depth 1 reaches MIN_BASE
# (0.97) of the second build: that is the check that a change did not cost small-message speed.
#
# The runs themselves are bench/macro/matrix.sh with MATRIX=full and this grid's servers, sizes,
# depths and connection counts (no B0 probe, no fixed-rate or HTTP runs); report.py grid makes the
# tables from its results.jsonl.
#
#   bash bench/macro/grid.sh              the full grid: 8 cells x 4 servers x 5 repetitions of
#                                         3 s (+1 s warm-up), about 12 minutes (17 with BASE_BUILD)
#   QUICK=1 bash bench/macro/grid.sh      2 repetitions of 1 s (+1 s warm-up): about 2.5 minutes;
#                                         with BASE_BUILD the servers are then the two rills and
#                                         their -base twins only (no peers), also 2.5 minutes
#   BASE_BUILD=/path/to/main/build/release bash bench/macro/grid.sh
#
# env (defaults in brackets; QUICK=1 changes the ones marked *):
#   BUILD [build/release]  BASE_BUILD [] (the second build; adds rill-uring-base rill-epoll-base)
#   OUT [bench/results/grid-<UTC time>]: results.jsonl and grid.md
#   REPS* [5]  DURATION* [3]  WARMUP [1]  SERVER_CPU [0]  LOAD_CPU [1] (empty: no taskset)
#   SIZES ["64 16384"]  DEPTHS ["1 16"]  CONNS ["100 1000"]  TRANSPORTS ["tcp"] (or "tcp unix")
#   SERVERS* ["rill-uring rill-epoll peer-epoll peer-uring"] (+ the two -base with BASE_BUILD;
#          QUICK=1 with BASE_BUILD: "rill-uring rill-epoll rill-uring-base rill-epoll-base")
#   MIN_BASE [0.97]: the ratio 64 B at depth 1 must reach against the second build
#   STRICT [0]: 1 = exit 1 when any run measured nothing
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case ${1:-} in
-h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
"") ;;
*) echo "grid.sh: no arguments expected (got '$1'); settings are environment variables, see --help" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "grid.sh: no arguments expected; see --help" >&2; exit 2; }

invocation=""
for v in QUICK BUILD BASE_BUILD OUT REPS DURATION WARMUP SERVER_CPU LOAD_CPU SIZES DEPTHS CONNS TRANSPORTS SERVERS MIN_BASE; do
    if [ -n "${!v+x}" ]; then invocation+="$v=\"${!v}\" "; fi
done
invocation+="bash bench/macro/grid.sh"

QUICK=${QUICK:-0}
case $QUICK in 0|1) ;; *) echo "grid.sh: QUICK must be 0 or 1" >&2; exit 2 ;; esac
if [ "$QUICK" = 1 ]; then
    : "${REPS:=2}" "${DURATION:=1}"
    # The quick check against a second build: the two rills and their twins only.
    [ -n "${BASE_BUILD:-}" ] && : "${SERVERS:=rill-uring rill-epoll rill-uring-base rill-epoll-base}"
fi
BUILD=${BUILD:-build/release} BASE_BUILD=${BASE_BUILD:-}
REPS=${REPS:-5} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1}
SIZES=${SIZES:-64 16384} DEPTHS=${DEPTHS:-1 16} CONNS=${CONNS:-100 1000} TRANSPORTS=${TRANSPORTS:-tcp}
MIN_BASE=${MIN_BASE:-0.97}
OUT=${OUT:-bench/results/grid-$(date -u +%Y-%m-%dT%H%M%SZ)}
for v in REPS DURATION WARMUP; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "grid.sh: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
if [ "$REPS" -lt 1 ] || [ "$DURATION" -lt 1 ]; then echo "grid.sh: REPS and DURATION must be at least 1" >&2; exit 2; fi
[[ $MIN_BASE =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "grid.sh: MIN_BASE must be a number (got '$MIN_BASE')" >&2; exit 2; }
if [ -n "$BASE_BUILD" ]; then
    [ -x "$BASE_BUILD/rill-echo" ] || { echo "grid.sh: BASE_BUILD=$BASE_BUILD has no rill-echo (build it there first)" >&2; exit 2; }
    : "${SERVERS:=rill-uring rill-epoll rill-uring-base rill-epoll-base peer-epoll peer-uring}"
fi
SERVERS=${SERVERS:-rill-uring rill-epoll peer-epoll peer-uring}
[ -x "$BUILD/rill-load" ] || { echo "grid.sh: build first (bash tools/setup.sh build release)" >&2; exit 2; }
# A fresh OUT: the report takes every run of results.jsonl.
if [ -s "$OUT/results.jsonl" ]; then echo "grid.sh: $OUT/results.jsonl exists; pick another OUT" >&2; exit 2; fi
mkdir -p "$OUT"

start=$(date +%s)
python3 bench/macro/report.py add-meta "$OUT/results.jsonl" invocation="$invocation" base_build="$BASE_BUILD" \
    loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
# matrix.sh does the runs (its EXIT trap stops its server and removes its temp dir).
rc=0
env BUILD="$BUILD" BASE_BUILD="$BASE_BUILD" OUT="$OUT" REPS="$REPS" DURATION="$DURATION" WARMUP="$WARMUP" \
    SERVER_CPU="${SERVER_CPU-0}" LOAD_CPU="${LOAD_CPU-1}" TRANSPORTS="$TRANSPORTS" CONNS="$CONNS" SIZES="$SIZES" \
    DEPTHS="$DEPTHS" MATRIX=full SERVERS="$SERVERS" RATE_CONNS="" HTTP_SERVERS="" PROBE=0 REPORT=0 UPDATE=0 \
    STRICT="${STRICT:-0}" QUICK=0 bash bench/macro/matrix.sh || rc=$?
[ -s "$OUT/results.jsonl" ] && python3 bench/macro/report.py grid "$OUT/results.jsonl" --md "$OUT/grid.md" --min-base "$MIN_BASE"
echo "grid.sh: $(( $(date +%s) - start )) s; results in $OUT (results.jsonl, grid.md)"
exit "$rc"
