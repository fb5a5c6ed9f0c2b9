#!/usr/bin/env python3
"""Renders rill-probe --profile --json output as the BENCHMARKS.md phase table (markdown).
Usage: table.py profile.json"""
import json
import sys

PHASES = ["syscall", "socket", "tcp_tx", "rx", "device", "copy", "wakeup", "io_uring",
          "memory", "user", "other"]

d = json.load(open(sys.argv[1]))
print("| transport | mode | size | strategy | headline | CPU ns/op c+s | samples | "
      + " | ".join(PHASES) + " |")
print("|" + "---|" * (7 + len(PHASES)))
for c in d["cells"]:
    if c["status"] != "ok" or "profile" not in c or not c["profile"].get("samples"):
        continue
    p = c["profile"]
    if c["mode"] == "stream":
        head = "%.1f MB/s" % (c["bytes_per_s"] / 1e6)
    else:
        head = "p50 %d ns" % c["p50_ns"]
    cpu = c["client"]["cpu_ns_per_op"] + c["server"]["cpu_ns_per_op"]
    shares = [p["phases"][k] for k in PHASES]
    shares[2] += p["phases"]["udp_tx"]
    print("| %s | %s | %d | %s | %s | %.0f | %d | %s |" % (
        c["transport"], c["mode"], c["size"], c["strategy"], head, cpu, p["samples"],
        " | ".join("%.1f" % x for x in shares)))
