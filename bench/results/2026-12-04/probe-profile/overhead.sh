#!/usr/bin/env bash
# Sampling overhead of rill-probe --profile: each cell without a profile, with per-thread
# counters and with per-CPU counters at the default 4000 Hz, and per-CPU at 1000 Hz,
# interleaved (off thread cpu cpu-1k off ...), 5 passes of 1 s; medians with [min max] and the
# ratio to the run without a profile.
# Usage: overhead.sh PATH/TO/rill-probe   (REPS=5, OUT=overhead.jsonl)
set -eu
probe=$1
reps=${REPS:-5}
out=${OUT:-overhead.jsonl}
: >"$out"
cells=("-t tcp4 -s rw-block -m pingpong -z 64" "-t tcp4 -s rw-block -m stream -z 64"
       "-t unix-stream -s rw-block -m stream -z 16384" "-t tcp4 -s uring-batch -m stream -z 64")
for r in $(seq 1 "$reps"); do
    for cell in "${cells[@]}"; do
        for prof in off thread cpu cpu-1k; do
            case $prof in
            off) flag="" ;;
            cpu-1k) flag="--profile-scope cpu --profile-hz 1000" ;;
            *) flag="--profile-scope $prof" ;;
            esac
            # shellcheck disable=SC2086 # the cell and the flag are several words
            "$probe" $cell -T 1 --json $flag |
                python3 -c 'import json,sys; d=json.load(sys.stdin); c=d["cells"][0]
print(json.dumps({"cell": sys.argv[1], "profile": sys.argv[2], "rep": int(sys.argv[3]),
 "mode": c["mode"], "value": c.get("bytes_per_s", c.get("p50_ns")),
 "cpu_ns_per_op": c["client"]["cpu_ns_per_op"] + c["server"]["cpu_ns_per_op"]}))' \
                    "$cell" "$prof" "$r" >>"$out"
        done
    done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| cell | figure | off, median [min max] | per-thread | per-CPU | per-CPU 1 kHz | thread/off | cpu/off | cpu 1 kHz/off | CPU ns/op off, thread, cpu, cpu 1 kHz |")
print("|---|---|---|---|---|---|---|---|---|---|")
for cell in dict.fromkeys(r["cell"] for r in rows):
    v = {p: [r for r in rows if r["cell"] == cell and r["profile"] == p] for p in ("off", "thread", "cpu", "cpu-1k")}
    stream = v["off"][0]["mode"] == "stream"
    f = (lambda x: "%.1f" % (x / 1e6)) if stream else (lambda x: "%.0f" % x)
    med = {p: statistics.median(r["value"] for r in v[p]) for p in v}
    cpu = {p: statistics.median(r["cpu_ns_per_op"] for r in v[p]) for p in v}
    rng = {p: "%s [%s %s]" % (f(med[p]), f(min(r["value"] for r in v[p])), f(max(r["value"] for r in v[p]))) for p in v}
    print("| `%s` | %s | %s | %s | %s | %s | %.2fx | %.2fx | %.2fx | %.0f, %.0f, %.0f, %.0f |" % (
        cell, "MB/s" if stream else "p50 ns", rng["off"], rng["thread"], rng["cpu"], rng["cpu-1k"],
        med["thread"] / med["off"], med["cpu"] / med["off"], med["cpu-1k"] / med["off"],
        cpu["off"], cpu["thread"], cpu["cpu"], cpu["cpu-1k"]))
PY
