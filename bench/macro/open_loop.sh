#!/usr/bin/env bash
# What the open loop (rill-load -R) costs the client, before and after a change: rill-load of
# BASE_BUILD and of BUILD in turn (A B A B ...), REPS times per rate, against one rill-echo (of
# BUILD) pinned to SERVER_CPU, rill-load pinned to LOAD_CPU. Per rate and build it prints the
# median [min max] of the client CPU microseconds per request, io_uring enters (or system calls
# on epoll) per request, the share of sends late (> 1 ms behind schedule), the p50 and p99
# latency from the due time, and the server's CPU microseconds per request.
#
#   BASE_BUILD=/path/to/other/build bash bench/macro/open_loop.sh
#
# env (defaults in brackets): BUILD [build/release]  BASE_BUILD [] (without it only BUILD runs)
#   RATES ["1000 2000 10000 50000"]  CONNS [10]  REPS [5]  DURATION [3]  WARMUP [1]
#   SERVER_CPU [0]  LOAD_CPU [1]  BACKEND [auto]  OUT [bench/results/open_loop-<UTC time>]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
case ${1:-} in
-h|--help) sed -n '2,/^set -e/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
esac
BUILD=${BUILD:-build/release}
BASE_BUILD=${BASE_BUILD:-}
RATES=${RATES:-"1000 2000 10000 50000"}
CONNS=${CONNS:-10}
REPS=${REPS:-5}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BACKEND=${BACKEND:-auto}
OUT=${OUT:-bench/results/open_loop-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
PORT=$((20000 + RANDOM % 20000))

taskset -c "$SERVER_CPU" "$BUILD/rill-echo" -t 1 -l "tcp://127.0.0.1:$PORT" >"$OUT/echo.log" 2>&1 &
ECHO=$!
trap 'kill $ECHO 2>/dev/null; wait $ECHO 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$OUT/echo.log" && break; sleep 0.1; done

builds="new=$BUILD"
[ -n "$BASE_BUILD" ] && builds="base=$BASE_BUILD $builds"
: >"$OUT/results.jsonl"
for rate in $RATES; do
  for rep in $(seq "$REPS"); do
    for b in $builds; do
      name=${b%%=*} dir=${b#*=}
      taskset -c "$LOAD_CPU" "$dir/rill-load" -b "$BACKEND" -c "$CONNS" -R "$rate" \
        -d "$DURATION" --warmup "$WARMUP" -q --server-pid "$ECHO" --json "$OUT/run.json" \
        "tcp://127.0.0.1:$PORT" >/dev/null 2>&1 || true
      python3 - "$OUT/run.json" "$name" "$rate" "$rep" >>"$OUT/results.jsonl" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
r, c = j["results"], j["cost"]
calls = c.get("uring_enters_per_request") or c.get("syscalls_per_request")
print(json.dumps({"build": sys.argv[2], "rate": int(sys.argv[3]), "rep": int(sys.argv[4]),
                  "cpu": c["client_cpu_us_per_request"], "calls": calls,
                  "late": r["late"] / max(r["sent"], 1), "p50": r["latency"]["p50_us"],
                  "p99": r["latency"]["p99_us"], "server": c.get("server_cpu_us_per_request"),
                  "backend": j["machine"]["backend"]}))
EOF
    done
  done
done
python3 - "$OUT/results.jsonl" <<'EOF' | tee "$OUT/open_loop.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def fmt(v, f):
    v = [x for x in v if x is not None]
    return "-" if not v else f"{f(statistics.median(v))} [{f(min(v))} {f(max(v))}]"
n1 = lambda x: f"{x:.1f}"
n2 = lambda x: f"{x:.2f}"
pc = lambda x: f"{100 * x:.2f}%"
print("| rate | build | backend | client CPU us/req | enters (calls)/req | late | p50 us | p99 us | server CPU us/req |")
print("|---|---|---|---|---|---|---|---|---|")
for rate in sorted({r["rate"] for r in rows}):
    for b in ("base", "new"):
        s = [r for r in rows if r["rate"] == rate and r["build"] == b]
        if not s:
            continue
        print(f"| {rate} | {b} | {s[0]['backend']} | {fmt([r['cpu'] for r in s], n1)} | "
              f"{fmt([r['calls'] for r in s], n2)} | {fmt([r['late'] for r in s], pc)} | "
              f"{fmt([r['p50'] for r in s], n1)} | {fmt([r['p99'] for r in s], n1)} | "
              f"{fmt([r['server'] for r in s], n1)} |")
EOF
