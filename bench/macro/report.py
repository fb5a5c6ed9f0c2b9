#!/usr/bin/env python3
"""Results and report of bench/macro/matrix.sh (python3 standard library only).

  report.py add-meta RESULTS k=v ...            one "meta" line: the invocation and its knobs
  report.py add-load LOAD.json RESULTS k=v ...  one run of rill-load (its --json, slimmed)
  report.py add-wrk WRK.txt RESULTS k=v ...     one run of wrk (its text, parsed)
  report.py add-probe PROBE.json RESULTS k=v .. the B0 floor cells of rill-probe --json
  report.py median RESULTS k=v ...              median requests/s of the matching runs (0: none)
  report.py check RESULTS                       exit 1 unless every line is a JSON object with a
                                                "kind" and some run measured requests
  report.py report RESULTS --md FILE [--plots DIR] [--update BENCHMARKS.md]
  report.py features RESULTS [--md FILE]         the cells of bench/macro/uring_features.sh:
                                                rill-uring with each io_uring feature off
                                                (rill-uring-no-NAME) against all on, ratios of
                                                medians to all on, and whether each variant's
                                                start line really lacked the feature
  report.py grid RESULTS [--md FILE] [--min-base R]
                                                the echo cells of bench/macro/grid.sh: every
                                                figure as median [min max], ratios of medians to
                                                B1 and B4 and to the second build's rill-*-base,
                                                and whether 64 B at depth 1 reaches R (0.97) of it

Every line of RESULTS is one JSON object. The report takes, per workload and server, the median
over the repetitions with the min and max, the ratios to each peer, the issue-7 targets (met,
missed or not measured) and, when gnuplot is installed, PNG plots.
"""
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
ECHO_ORDER = ["rill-uring", "rill-epoll", "peer-epoll", "peer-libuv", "peer-libevent", "peer-uring"]
HTTP_ORDER = ["rill-http-uring", "rill-http-epoll", "nginx"]
PEER_NAMES = {"peer-epoll": "B1 epoll", "peer-libuv": "B2 libuv", "peer-libevent": "B3 libevent",
              "peer-uring": "B4 liburing", "nginx": "nginx"}
NUM_KEYS = {"conns", "size", "depth", "rep", "rate", "server_ticks", "hz", "duration", "reps", "server_enters",
            "server_bytes_in"}


def kv(args):
    out = {}
    for a in args:
        k, _, v = a.partition("=")
        if k in NUM_KEYS:
            try:
                v = float(v) if "." in v else int(v)
            except ValueError:
                pass
        out[k] = v
    return out


def rounded(x):
    if isinstance(x, float):
        return float("%.5g" % x)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    return x


def append(path, rec):
    rec.setdefault("time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    with open(path, "a") as f:
        f.write(json.dumps(rounded(rec), sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")


def limited(rec):
    """Why a figure is what it is: the load generator, the server's CPU, or neither."""
    why = []
    if rec.get("saturated"):
        why.append("load generator (%s)" % (rec.get("saturated_why") or "saturated"))
    elif rec.get("client_busy") is not None and rec["client_busy"] >= 0.9:
        why.append("load generator (client CPU %.0f%%)" % (100 * rec["client_busy"]))
    srv = rec.get("server_cpu_us") or 0
    util = srv * (rec.get("rps") or 0) / 1e6
    rec["server_util"] = round(util, 3)
    if util >= 0.9:
        why.append("server CPU (%.0f%% of its one CPU)" % (100 * util))
    ncpu = (rec.get("machine") or {}).get("cpus") or os.cpu_count() or 0
    if why and ncpu <= 2:
        why.append("2 CPUs: one for the server, one for the load")
    return ", ".join(why)


def say(rec):
    """One line per run on stdout, so that the script's output shows each figure and its limit."""
    def f(x, nd=1):
        return "-" if x is None else ("%." + str(nd) + "f") % x
    print("  %-16s rep %s: %s req/s, p50 %s p99 %s p99.9 %s us, server %s client %s us/req%s" % (
        rec.get("server"), rec.get("rep"), f(rec.get("rps"), 0), f(rec.get("p50")), f(rec.get("p99")),
        f(rec.get("p999")), f(rec.get("server_cpu_us"), 2), f(rec.get("client_cpu_us"), 2),
        "  [limited by " + rec["limited"] + "]" if rec.get("limited") else ""), flush=True)


def add_load(path, results, meta):
    with open(path) as f:
        d = json.load(f)
    r, c, lat = d.get("results", {}), d.get("cost", {}), d.get("results", {}).get("latency", {})
    rec = dict(meta)
    rec.update({
        "rps": r.get("requests_per_s", 0), "requests": r.get("requests", 0),
        "p50": lat.get("p50_us"), "p90": lat.get("p90_us"), "p99": lat.get("p99_us"),
        "p999": lat.get("p99_9_us"), "max": lat.get("max_us"),
        "p50_uncorrected": r.get("latency_uncorrected", {}).get("p50_us"),
        "offered": r.get("offered_per_s", 0), "late": r.get("late", 0), "skipped": r.get("skipped", 0),
        "errors": r.get("errors", {}).get("total", 0), "saturated": bool(r.get("saturated")),
        "saturated_why": r.get("saturated_why", ""), "client_busy": r.get("client_busy_max"),
        "server_cpu_us": c.get("server_cpu_us_per_request"), "client_cpu_us": c.get("client_cpu_us_per_request"),
        "client_enters": c.get("uring_enters_per_request"),
    })
    # matrix.sh ENTERS=1: the server's io_uring_enter calls over its life, per request it echoed
    # over its life (bytes received / request size; warm-up included on both sides).
    ent, bin_, size = rec.pop("server_enters", None), rec.pop("server_bytes_in", None), rec.get("size")
    if isinstance(ent, int) and isinstance(bin_, int) and bin_ > 0 and isinstance(size, int) and size > 0:
        rec["server_enters"] = ent / (bin_ / size)
    # The machine once per results file (the report takes the last one it finds).
    if not os.path.exists(results) or '"machine"' not in open(results).read():
        rec["machine"] = d.get("machine", {})
    rec["limited"] = limited(rec)
    append(results, rec)
    say(rec)


def to_us(s):
    m = re.match(r"([\d.]+)(us|ms|s)$", s)
    if not m:
        return None
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]


def add_wrk(path, results, meta):
    with open(path) as f:
        text = f.read()
    rec = dict(meta)
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    rec["rps"] = float(m.group(1)) if m else 0
    m = re.search(r"^\s*(\d+) requests in", text, re.M)
    n = int(m.group(1)) if m else 0
    rec["requests"] = n
    for pct, key in (("50", "p50"), ("90", "p90"), ("99", "p99")):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        rec[key] = to_us(m.group(1)) if m else None
    rec["p999"] = None  # wrk --latency stops at 99%
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errs = sum(int(x) for x in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errs += int(m.group(1)) if m else 0
    rec["errors"] = errs
    hz = float(meta.get("hz") or 100)
    rec["server_cpu_us"] = (meta.get("server_ticks", 0) / hz * 1e6 / n) if n else None
    # bash's `times`: the children's user and system time before and after wrk ("0m1.234s").
    def secs(s):
        tot = 0.0
        for part in s.split():
            mm = re.match(r"(\d+)m([\d.]+)s", part)
            if mm:
                tot += int(mm.group(1)) * 60 + float(mm.group(2))
        return tot
    cpu = secs(meta.get("client_times1", "")) - secs(meta.get("client_times0", ""))
    rec["client_cpu_us"] = cpu * 1e6 / n if n else None
    dur = float(meta.get("duration") or 1)
    rec["client_busy"] = cpu / dur
    rec["saturated"] = rec["client_busy"] >= 0.9
    rec["saturated_why"] = "wrk busy %.0f%% of its CPU" % (100 * rec["client_busy"]) if rec["saturated"] else ""
    for k in ("client_times0", "client_times1"):
        rec.pop(k, None)
    rec["client_cpu_s"] = round(cpu, 3)
    rec["limited"] = limited(rec)
    append(results, rec)
    say(rec)


def add_probe(path, results, meta):
    with open(path) as f:
        d = json.load(f)
    for c in d.get("cells", []):
        rec = dict(meta)
        rec.update({"transport": c.get("transport"), "strategy": c.get("strategy"), "mode": c.get("mode"),
                    "size": c.get("size"), "status": c.get("status"), "p50_ns": c.get("p50_ns"),
                    "p99_ns": c.get("p99_ns"), "p50_ns_min": c.get("p50_ns_min"),
                    "p50_ns_max": c.get("p50_ns_max"),
                    "mb_per_s": c["bytes_per_s"] / 1e6 if c.get("bytes_per_s") else None,
                    "ops": c.get("ops"), "elapsed_s": c.get("elapsed_s"), "kernel": d.get("kernel"),
                    "server_cpu_ns": c.get("server", {}).get("cpu_ns_per_op"),
                    "client_cpu_ns": c.get("client", {}).get("cpu_ns_per_op")})
        append(results, rec)


def load(path):
    recs = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if line:
                try:
                    recs.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit("report.py: %s:%d: not JSON: %s" % (path, i, e))
    return recs


def match(rec, sel):
    return all(str(rec.get(k)) == str(v) for k, v in sel.items())


def med(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


# --------------------------------------------------------------------------- the report

def fmt(x, nd=1):
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return "%.0f" % x
    return ("%." + str(nd) + "f") % x


def fmt3(t, nd=1):
    if t is None:
        return "–"
    return "%s [%s %s]" % (fmt(t[0], nd), fmt(t[1], nd), fmt(t[2], nd))


class Cell:
    """The repetitions of one server on one workload."""

    def __init__(self, recs):
        self.recs = recs
        g = lambda k: med([r.get(k) for r in recs])
        self.rps, self.p50, self.p99, self.p999 = g("rps"), g("p50"), g("p99"), g("p999")
        self.srv, self.cli = g("server_cpu_us"), g("client_cpu_us")
        self.errors = sum(r.get("errors") or 0 for r in recs)
        n = len(recs)
        nload = [r for r in recs if r.get("saturated") or (r.get("client_busy") or 0) >= 0.9]
        nsrv = [r for r in recs if (r.get("server_util") or 0) >= 0.9]
        lim = []
        if nload:
            busy = max(r.get("client_busy") or 0 for r in nload)
            lim.append("load generator (%d of %d runs; busy up to %.0f%%)" % (len(nload), n, 100 * busy))
        if nsrv:
            lim.append("server's CPU (%d of %d runs)" % (len(nsrv), n))
        self.limited = "; ".join(lim)
        self.n = len(recs)

    def v(self, name):
        t = getattr(self, name)
        return t[0] if t else None


def workload_key(r):
    return (r["kind"], r.get("load", "rill-load"), r.get("transport"), r.get("conns"), r.get("size"),
            r.get("depth"), r.get("rate", 0))


def workload_title(k):
    kind, ld, tr, c, size, depth, rate = k
    if kind == "echo":
        return "echo, %s, %s conns, %s B, depth %s" % (tr.upper() if tr == "tcp" else "Unix stream", c, size, depth)
    if kind == "rate":
        return "fixed rate %s requests/s (half of B1's maximum), %s, %s conns, %s B" % (
            rate, tr.upper() if tr == "tcp" else "Unix stream", c, size)
    if kind == "http":
        return "HTTP /plaintext by %s, %s conns, depth %s" % (ld, c, depth)
    return str(k)


def machine(recs):
    m = {}
    for r in recs:
        if r.get("machine"):
            m = r["machine"]
    cpu = m.get("cpu_model")
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = cpu or line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    kernel = m.get("kernel") or platform.release()
    ncpu = m.get("cpus") or os.cpu_count()
    return cpu or "unknown", kernel, ncpu


def ratio(a, b):
    return a / b if a and b else None


def targets(groups, probe):
    """Rows: (target, measured, ratio text, verdict)."""
    rows = []

    def cell(kind, tr, c, size, depth, server, ld="rill-load", rate=None):
        for k, servers in groups.items():
            if k[0] == kind and k[1] == ld and k[2] == tr and k[3] == c and k[4] == size and k[5] == depth:
                if server in servers:
                    return servers[server]
        return None

    def verdict(r, lim, le=False):
        if r is None:
            return "not measured"
        ok = r <= lim if le else r >= lim
        return "**met**" if ok else "**missed**"

    # 1. 1 conn, 64 B: rill's p50 round trip against the B0 blocking floor.
    for tr, pt in (("tcp", "tcp4"), ("unix", "socketpair")):
        b0 = [p for p in probe if p.get("transport") == pt and p.get("mode") == "pingpong" and p.get("size") == 64
              and p.get("p50_ns")]
        b0p50 = statistics.median([p["p50_ns"] / 1000 for p in b0]) if b0 else None
        c = cell("echo", tr, 1, 64, 1, "rill-uring")
        r = ratio(c.v("p50") if c else None, b0p50)
        rows.append(("1 conn, 64 B, %s: rill (io_uring) p50 round trip ≤ 1.10× B0 (%s blocking ping-pong)" % (tr, pt),
                     "rill %s us, B0 %s us" % (fmt(c.v("p50") if c else None), fmt(b0p50)), r, verdict(r, 1.10, True)))
    for tr in ("tcp", "unix"):
        for peer, lim in (("peer-epoll", 1.15), ("peer-libuv", 1.2)):
            a, b = cell("echo", tr, 1000, 64, 1, "rill-uring"), cell("echo", tr, 1000, 64, 1, peer)
            r = ratio(a.v("rps") if a else None, b.v("rps") if b else None)
            rows.append(("1000 conns, 64 B, %s: rill (io_uring) ≥ %.2f× %s requests/s" % (tr, lim, PEER_NAMES[peer]),
                         "%s vs %s" % (fmt(a.v("rps") if a else None), fmt(b.v("rps") if b else None)), r, verdict(r, lim)))
        rk = [k for k in groups if k[0] == "rate" and k[2] == tr and k[3] == 1000]
        a = groups[rk[0]].get("rill-uring") if rk else None
        b = groups[rk[0]].get("peer-epoll") if rk else None
        r = ratio(a.v("srv") if a else None, b.v("srv") if b else None)
        rows.append(("1000 conns, 64 B, %s, fixed rate: rill (io_uring) server CPU/request ≤ 0.8× B1's" % tr,
                     "%s vs %s us" % (fmt(a.v("srv") if a else None, 2), fmt(b.v("srv") if b else None, 2)), r,
                     verdict(r, 0.8, True)))
    for tr in ("tcp", "unix"):
        for c in (100, 1000):
            a, b = cell("echo", tr, c, 64, 1, "rill-uring"), cell("echo", tr, c, 64, 1, "peer-uring")
            r = ratio(a.v("rps") if a else None, b.v("rps") if b else None)
            rows.append(("abstraction cost, %s conns, %s: rill (io_uring) ≥ 0.90× B4" % (c, tr),
                         "%s vs %s" % (fmt(a.v("rps") if a else None), fmt(b.v("rps") if b else None)), r, verdict(r, 0.90)))
    for tr in ("tcp", "unix"):
        for c in (1, 10, 100, 1000):
            a, b = cell("echo", tr, c, 64, 1, "rill-epoll"), cell("echo", tr, c, 64, 1, "peer-epoll")
            r = ratio(a.v("rps") if a else None, b.v("rps") if b else None)
            rows.append(("fallback, %s conns, %s: rill (epoll) ≥ 0.95× B1" % (c, tr),
                         "%s vs %s" % (fmt(a.v("rps") if a else None), fmt(b.v("rps") if b else None)), r, verdict(r, 0.95)))
    for tr in ("tcp", "unix"):
        for what, size, depth in (("16 KiB", 16384, 1), ("pipelined depth 16", 64, 16)):
            found = [k for k in groups if k[0] == "echo" and k[2] == tr and k[4] == size and k[5] == depth]
            if not found:
                rows.append(("no regression, %s, %s: rill ≥ 1.0× B1" % (what, tr), "–", None, "not measured"))
            for k in sorted(found, key=lambda k: k[3]):
                for srv in ("rill-uring", "rill-epoll"):
                    a, b = groups[k].get(srv), groups[k].get("peer-epoll")
                    r = ratio(a.v("rps") if a else None, b.v("rps") if b else None)
                    rows.append(("no regression, %s, %s conns, %s: rill (%s) ≥ 1.0× B1" % (what, k[3], tr, srv[5:]),
                                 "%s vs %s" % (fmt(a.v("rps") if a else None), fmt(b.v("rps") if b else None)), r,
                                 verdict(r, 1.0)))
    for ld in ("wrk", "rill-load"):
        found = [k for k in groups if k[0] == "http" and k[1] == ld]
        if not found:
            rows.append(("HTTP plaintext by %s: rill-http ≥ 1.0× nginx" % ld, "–", None, "not measured"))
        for k in sorted(found, key=lambda k: (k[3], k[5])):
            for srv in ("rill-http-uring", "rill-http-epoll"):
                a, b = groups[k].get(srv), groups[k].get("nginx")
                r = ratio(a.v("rps") if a else None, b.v("rps") if b else None)
                rows.append(("HTTP plaintext by %s, %s conns, depth %s: rill-http (%s) ≥ 1.0× nginx" % (ld, k[3], k[5], srv[10:]),
                             "%s vs %s" % (fmt(a.v("rps") if a else None), fmt(b.v("rps") if b else None)), r,
                             verdict(r, 1.0)))
    return rows


def gnuplot(script, plots):
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True, cwd=plots)
        return True
    except (OSError, subprocess.CalledProcessError) as e:
        sys.stderr.write("report.py: gnuplot failed: %s\n" % (getattr(e, "stderr", "") or e))
        return False


def plot(groups, plots):
    """PNG plots; returns the file names written (relative to plots)."""
    os.makedirs(plots, exist_ok=True)
    made = []
    for tr in ("tcp", "unix"):
        ks = sorted([k for k in groups if k[0] == "echo" and k[2] == tr and k[4] == 64 and k[5] == 1], key=lambda k: k[3])
        if len(ks) < 2:
            continue
        servers = [s for s in ECHO_ORDER if any(s in groups[k] for k in ks)]
        for what, attr, ylabel, name in (("throughput", "rps", "requests/s (median, min-max)", "echo-%s-throughput.png"),
                                         ("server CPU", "srv", "server CPU us/request", "echo-%s-cpu.png")):
            dat = "%s-%s.dat" % (name[:-4] % tr, attr)
            with open(os.path.join(plots, dat), "w") as f:
                for s in servers:
                    f.write("# %s\n" % s)
                    for k in ks:
                        c = groups[k].get(s)
                        t = getattr(c, attr) if c else None
                        if t:
                            f.write("%d %g %g %g\n" % (k[3], t[0], t[1], t[2]))
                    f.write("\n\n")
            plots_cmd = ", ".join("'%s' index %d using 1:2:3:4 with yerrorlines title '%s'" % (dat, i, s)
                                  for i, s in enumerate(servers))
            script = ("set terminal pngcairo size 800,500 noenhanced\nset output '%s'\nset logscale x\n"
                      "set xlabel 'connections'\nset ylabel '%s'\nset title 'echo %s 64 B depth 1: %s against connections'\n"
                      "set key outside right\nset xtics (1,10,100,1000)\nset yrange [0:*]\nplot %s\n"
                      % (name % tr, ylabel, tr, what, plots_cmd))
            if gnuplot(script, plots):
                made.append(name % tr)
    # Latency percentiles per workload kind: one bar cluster per server.
    for kind in ("echo", "rate", "http"):
        ks = [k for k in groups if k[0] == kind]
        if not ks:
            continue
        order = ECHO_ORDER if kind != "http" else HTTP_ORDER
        rows = []
        for k in sorted(ks, key=lambda k: (str(k[1]), k[2] or "", k[3], k[4] or 0, k[5])):
            for s in order:
                c = groups[k].get(s)
                if c and c.p50:
                    lab = "%s %s c%s %sB d%s" % (s, k[2] if kind != "http" else k[1], k[3], k[4], k[5])
                    rows.append((lab, c.v("p50"), c.v("p99"), c.v("p999")))
        if not rows:
            continue
        dat = "latency-%s.dat" % kind
        with open(os.path.join(plots, dat), "w") as f:
            for lab, a, b, c in rows:
                f.write('"%s" %s %s %s\n' % (lab, *("?" if x is None else "%g" % x for x in (a, b, c))))
        name = "latency-%s.png" % kind
        script = ("set terminal pngcairo size %d,600 noenhanced\nset output '%s'\nset style data histograms\n"
                  "set datafile missing '?'\nset bmargin 12\n"
                  "set style histogram clustered gap 1\nset style fill solid 0.8 border -1\nset logscale y\n"
                  "set ylabel 'latency us (median of runs; log)'\nset xtics rotate by -60 font ',7'\n"
                  "set title '%s: p50, p99, p99.9 (wrk gives no p99.9)'\nset key top left\n"
                  "plot '%s' using 2:xtic(1) title 'p50', '' using 3 title 'p99', '' using 4 title 'p99.9'\n"
                  % (max(800, 26 * len(rows)), name, kind, dat))
        if gnuplot(script, plots):
            made.append(name)
    # CPU per request at equal load (the fixed-rate runs) and in every echo workload.
    ks = sorted([k for k in groups if k[0] in ("rate", "http")], key=lambda k: (k[0], str(k[1]), k[3], k[5]))
    rows = []
    for k in ks:
        for s in ECHO_ORDER + HTTP_ORDER:
            c = groups[k].get(s)
            if c and c.srv:
                rows.append(("%s %s %s c%s d%s" % (k[0], s, k[1] if k[0] == "http" else k[2], k[3], k[5]), c.v("srv"),
                             c.v("cli") or 0))
    if rows:
        with open(os.path.join(plots, "cpu.dat"), "w") as f:
            for lab, a, b in rows:
                f.write('"%s" %g %g\n' % (lab, a, b))
        script = ("set terminal pngcairo size %d,600 noenhanced\nset output 'cpu-per-request.png'\nset bmargin 12\n"
                  "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
                  "set ylabel 'CPU us/request (median)'\nset xtics rotate by -60 font ',7'\nset yrange [0:*]\n"
                  "set title 'CPU per request: fixed rate (equal load) and HTTP'\n"
                  "plot 'cpu.dat' using 2:xtic(1) title 'server', '' using 3 title 'client'\n" % (max(800, 30 * len(rows))))
        if gnuplot(script, plots):
            made.append("cpu-per-request.png")
    for f in os.listdir(plots):
        if f.endswith(".dat"):
            os.remove(os.path.join(plots, f))
    return made


def report(results, md_path, plots, update):
    recs = load(results)
    metas = [r for r in recs if r.get("kind") == "meta"]
    probe = [r for r in recs if r.get("kind") == "probe"]
    runs = [r for r in recs if r.get("kind") in ("echo", "rate", "http")]
    byk = {}
    for r in runs:
        byk.setdefault(workload_key(r), {}).setdefault(r["server"], []).append(r)
    groups = {k: {s: Cell(v) for s, v in d.items()} for k, d in byk.items()}
    cpu, kernel, ncpu = machine(recs)
    L = []
    L.append("## The matrix (generated by bench/macro/matrix.sh)")
    L.append("")
    L.append("Generated by `bench/macro/report.py` from `%s` on %s. Do not edit by hand: "
             "`UPDATE=1 bash bench/macro/matrix.sh` rewrites this block." % (results, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    L.append("")
    L.append("**Machine:** %s, %s CPUs, Linux %s. Server pinned to CPU %s, load generator to CPU %s "
             "(one each: with %s CPUs the server and the load generator have one CPU apiece, and any "
             "figure where either is at 100%% of its CPU is marked below)." % (
                 cpu, ncpu, kernel, metas[-1].get("server_cpu", "?") if metas else "?",
                 metas[-1].get("load_cpu", "?") if metas else "?", ncpu))
    L.append("")
    L.append("**Commands** (each run of the script; the servers of a workload interleaved A B C … A B C …, "
             "median [min max] over the repetitions):")
    L.append("")
    L.append("```")
    for m in metas:
        L.append("%s   # load average at start %s" % (m.get("invocation"), m.get("loadavg")))
    seen = set()
    for r in runs + probe:
        for key in ("server_cmd", "load_cmd"):
            cmd = r.get(key)
            if not cmd:
                continue
            shape = (r.get("kind"), r.get("server"), r.get("load"), key)
            if shape in seen:
                continue
            seen.add(shape)
            cmd = re.sub(r"/tmp/tmp\.\w+/", "$TMP/", cmd)
            cmd = re.sub(r"--server-pid \d+", "--server-pid $SERVER", cmd)
            cmd = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:$PORT", cmd)
            L.append("%s" % cmd.strip())
    L.append("```")
    L.append("")
    # Targets first: they are the point.
    L.append("### Targets of issue 7")
    L.append("")
    L.append("| target | measured (median) | ratio | verdict |")
    L.append("|---|---|---|---|")
    for t, m, r, v in targets(groups, probe):
        L.append("| %s | %s | %s | %s |" % (t, m, "%.2f" % r if r is not None else "–", v))
    L.append("")
    L.append("A ratio is of medians. *not measured*: the cell was not part of the runs above (see the commands); "
             "a missed target stays missed here; what was found about why belongs in the hand-written sections above. "
             "The 1-connection round trip of rill is measured by rill-load (a rill client), the B0 floor by two "
             "blocking threads: the ratio charges rill for both ends.")
    L.append("")
    if probe:
        L.append("### B0 floor (rill-probe, blocking read/write, two threads)")
        L.append("")
        L.append("| transport | mode | p50 us [min max of passes] | p99 us | MB/s | client CPU ns/op | server CPU ns/op |")
        L.append("|---|---|---|---|---|---|---|")
        for p in probe:
            if p.get("status") != "ok":
                continue
            p50 = (p["p50_ns"] / 1000, (p.get("p50_ns_min") or p["p50_ns"]) / 1000,
                   (p.get("p50_ns_max") or p["p50_ns"]) / 1000) if p.get("p50_ns") else None
            L.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                p["transport"], p["mode"], fmt3(p50), fmt(p["p99_ns"] / 1000 if p.get("p99_ns") else None),
                fmt(p.get("mb_per_s")), fmt(p.get("client_cpu_ns"), 0), fmt(p.get("server_cpu_ns"), 0)))
        L.append("")
    L.append("### Workloads")
    L.append("")
    L.append("requests/s and CPU: median [min max]; latency in us, medians of the runs' percentiles "
             "(open loop for the fixed-rate runs: measured from when each request was due); server CPU per "
             "request from /proc of the server (nginx: its worker); client CPU per request of the load "
             "generator. *limited by* names what held a figure down in any repetition: the load "
             "generator (rill-load's saturated flag, or wrk over 90% of its CPU), or the server's CPU (over 90% of "
             "it busy). Both are limits of having 2 CPUs: the server has one CPU and the load generator the other, "
             "so a figure marked *load generator* measures rill-load or wrk rather than the server (the ratio "
             "between servers then understates the difference), and one marked *server's CPU* is the "
             "server's one-CPU maximum, as intended.")
    L.append("")
    kinds = {"echo": 0, "rate": 1, "http": 2}
    for k in sorted(groups, key=lambda k: (kinds[k[0]], str(k[1]), {"tcp": 0, "unix": 1}.get(k[2], 2), k[4] or 0, k[5], k[3])):
        g = groups[k]
        order = [s for s in (HTTP_ORDER if k[0] == "http" else ECHO_ORDER) if s in g] + \
                sorted(s for s in g if s not in ECHO_ORDER + HTTP_ORDER)
        peers = [s for s in order if s in PEER_NAMES]
        reps = max(c.n for c in g.values())
        L.append("#### %s (%d repetitions)" % (workload_title(k), reps))
        L.append("")
        head = "| server | requests/s | p50 | p99 | p99.9 | server CPU us/req | client CPU us/req |"
        if k[0] != "rate":
            head += "".join(" rps / %s |" % PEER_NAMES[p] for p in peers)
        if k[0] == "rate":
            head += "".join(" CPU / %s |" % PEER_NAMES[p] for p in peers)
        head += " limited by |"
        L.append(head)
        L.append("|" + "---|" * (head.count("|") - 1))
        for s in order:
            c = g[s]
            row = "| %s | %s | %s | %s | %s | %s | %s |" % (
                s, fmt3(c.rps, 0), fmt(c.v("p50")), fmt(c.v("p99")), fmt(c.v("p999")), fmt3(c.srv, 2),
                fmt(c.v("cli"), 2))
            for p in peers if k[0] != "rate" else []:
                r = ratio(c.v("rps"), g[p].v("rps"))
                row += " %s |" % ("%.2f" % r if r else "–")
            if k[0] == "rate":
                for p in peers:
                    r = ratio(c.v("srv"), g[p].v("srv"))
                    row += " %s |" % ("%.2f" % r if r else "–")
            lim = c.limited
            if c.errors:
                lim = (lim + "; " if lim else "") + "%d errors" % c.errors
            row += " %s |" % (lim or "–")
            L.append(row)
        L.append("")
    # What was not run.
    notrun = []
    ran_tr = {k[2] for k in groups if k[0] == "echo"}
    for tr in ("tcp", "unix"):
        if tr not in ran_tr:
            notrun.append("echo over %s" % tr)
    for tr in sorted(ran_tr):
        ran = sorted((k[3], k[4], k[5]) for k in groups if k[0] == "echo" and k[2] == tr)
        if len(ran) < 4 * 3 * 2:
            notrun.append("%s echo: %d of the 24 cells (1, 10, 100, 1000 connections x 64 B, 1 KiB, 16 KiB x depth 1, 16) "
                          "were run, only these (connections/bytes/depth): %s" % (
                              tr, len(ran), ", ".join("%s/%s/%s" % c for c in ran)))
    if not [k for k in groups if k[0] == "rate"]:
        notrun.append("the fixed-rate run")
    for tr in ("tcp", "unix"):
        if not [k for k in groups if k[0] == "rate" and k[2] == tr]:
            notrun.append("fixed rate over %s" % tr)
    hs = [k for k in groups if k[0] == "http"]
    for ld in ("wrk", "rill-load"):
        if not [k for k in hs if k[1] == ld]:
            notrun.append("HTTP under %s" % ld)
    if hs:
        notrun.append("HTTP at connection counts other than %s and depths other than %s" % (
            ", ".join(str(c) for c in sorted({k[3] for k in hs})), ", ".join(str(d) for d in sorted({k[5] for k in hs}))))
    allservers = {s for g in groups.values() for s in g}
    for s in ECHO_ORDER + HTTP_ORDER:
        if s not in allservers:
            notrun.append("server %s" % s)
    if not probe:
        notrun.append("the B0 floor (rill-probe)")
    L.append("### Not run")
    L.append("")
    for n in notrun:
        L.append("- " + n)
    if not notrun:
        L.append("- nothing: the whole matrix ran.")
    L.append("")
    # Plots.
    L.append("### Plots")
    L.append("")
    if plots and shutil.which("gnuplot"):
        made = plot(groups, plots)
        rel = os.path.relpath(plots, os.path.dirname(os.path.abspath(update)) if update else os.path.dirname(os.path.abspath(md_path)))
        for m in made:
            L.append("![%s](%s/%s)" % (m[:-4], rel, m))
        if not made:
            L.append("No plot: too few points (gnuplot needs two connection counts for the throughput plots).")
    else:
        L.append("No plots: gnuplot is not installed (`apt-get install gnuplot-nox`, or `bash tools/setup.sh`).")
    L.append("")
    text = "\n".join(L)
    with open(md_path, "w") as f:
        f.write(text)
    if update:
        with open(update) as f:
            doc = f.read()
        block = BEGIN + "\n" + text + END
        if BEGIN in doc and END in doc:
            doc = doc[:doc.index(BEGIN)] + block + doc[doc.index(END) + len(END):]
        else:
            doc = doc.rstrip("\n") + "\n\n" + block + "\n"
        with open(update, "w") as f:
            f.write(doc)
    print("report.py: %s%s" % (md_path, " and " + update if update else ""))


GRID_ORDER = ["rill-uring", "rill-epoll", "rill-uring-base", "rill-epoll-base", "peer-epoll", "peer-uring",
              "peer-libuv", "peer-libevent"]


def emit(lines, md_path):
    """Prints a report's lines and, given a path, writes them there as Markdown."""
    text = "\n".join(lines)
    print(text)
    if md_path:
        with open(md_path, "w") as f:
            f.write(text)
        print("report.py: %s" % md_path)


def grid(results, md_path, min_base):
    """The echo cells of grid.sh, one table per cell: each server's figures as median [min max]
    and the ratios of medians to B1, to B4 and, for rill-X, to rill-X-base (the second build)."""
    recs = [r for r in load(results) if r.get("kind") == "echo"]
    metas = [r for r in load(results) if r.get("kind") == "meta"]
    byk = {}
    for r in recs:
        byk.setdefault(workload_key(r), {}).setdefault(r["server"], []).append(r)
    groups = {k: {s: Cell(v) for s, v in d.items()} for k, d in byk.items()}
    cpu, kernel, ncpu = machine(recs)
    L = ["## Grid (generated by bench/macro/grid.sh)", ""]
    L.append("From `%s`, %s. %s, %s CPUs, Linux %s; server on CPU %s, rill-load on CPU %s." % (
        results, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpu, ncpu, kernel,
        metas[-1].get("server_cpu", "?") if metas else "?", metas[-1].get("load_cpu", "?") if metas else "?"))
    for m in metas:
        L.append("")
        L.append("    %s   # load average at start %s" % (m.get("invocation"), m.get("loadavg")))
        if m.get("base_build"):
            L.append("    # rill-*-base: %s/rill-echo" % m["base_build"])
    L.append("")
    L.append("Each figure is the median [min max] over the repetitions, the servers of a cell interleaved "
             "A B C D A B C D; latency in us; CPU in us per request (server: from /proc of the server; "
             "client: rill-load's own). Ratios are of medians: requests/s of the row's server over B1's "
             "and B4's, server CPU per request likewise, and for rill-X the requests/s over rill-X-base's "
             "(the second build).")
    L.append("")
    checks = []
    for k in sorted(groups, key=lambda k: ({"tcp": 0, "unix": 1}.get(k[2], 2), k[4] or 0, k[5], k[3])):
        g = groups[k]
        order = [s for s in GRID_ORDER if s in g] + sorted(s for s in g if s not in GRID_ORDER)
        reps = max(c.n for c in g.values())
        L.append("#### %s (%d repetitions)" % (workload_title(k), reps))
        L.append("")
        has_base = any(s.endswith("-base") for s in g)
        head = ("| server | requests/s | p50 us | p99 us | server CPU us/req | client CPU us/req "
                "| rps / B1 | rps / B4 | CPU / B1 | CPU / B4 |" + (" rps / base |" if has_base else "") + " limited by |")
        L.append(head)
        L.append("|" + "---|" * (head.count("|") - 1))
        b1, b4 = g.get("peer-epoll"), g.get("peer-uring")

        def rt(a, b, attr):
            r = ratio(a.v(attr), b.v(attr)) if a and b else None
            return "%.2f" % r if r else "–"
        for s in order:
            c = g[s]
            base = g.get(s + "-base") if s.startswith("rill-") and not s.endswith("-base") else None
            rb = ratio(c.v("rps"), base.v("rps")) if base else None
            if base and k[4] == 64 and k[5] == 1:
                checks.append((workload_title(k), s, rb, ratio(c.v("srv"), base.v("srv"))))
            lim = c.limited
            if c.errors:
                lim = (lim + "; " if lim else "") + "%d errors" % c.errors
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |%s %s |" % (
                s, fmt3(c.rps, 0), fmt3(c.p50), fmt3(c.p99), fmt3(c.srv, 2), fmt3(c.cli, 2),
                rt(c, b1, "rps"), rt(c, b4, "rps"), rt(c, b1, "srv"), rt(c, b4, "srv"),
                (" %s |" % ("%.2f" % rb if rb else "–")) if has_base else "", lim or "–"))
        L.append("")
    if checks:
        L.append("#### 64 B at depth 1 against the second build (requests/s ratio of medians ≥ %.2f)" % min_base)
        L.append("")
        L.append("| cell | server | requests/s / its -base | verdict | server CPU per request / its -base |")
        L.append("|---|---|---|---|---|")
        for t, s, r, rc in checks:
            L.append("| %s | %s | %s | %s | %s |" % (t, s, "%.2f" % r if r else "–",
                                                    "not measured" if r is None else ("met" if r >= min_base else "**missed**"),
                                                    "%.2f" % rc if rc else "–"))
        L.append("")
        L.append("The verdict is on requests/s. When the machine is shared, the spread [min max] of the cells above "
                 "says how far to trust it; server CPU per request (lower is better) moves less with load from "
                 "elsewhere and is shown beside it.")
        L.append("")
    emit(L, md_path)
    if not groups:
        sys.exit("report.py: %s: no echo runs" % results)


def caps_of(line):
    m = re.search(r"\bcaps=(\S*)", line or "")
    return set(m.group(1).split(",")) - {""} if m else None


def features(results, md_path):
    """The cells of uring_features.sh: per cell, all on and each rill-uring-no-NAME as median
    [min max], the ratios of medians to all on; then, per variant, whether every run's rill-echo
    start line named the io_uring backend and lacked the switched-off capabilities."""
    allrecs = load(results)
    recs = [r for r in allrecs if r.get("kind") == "echo" and str(r.get("server", "")).startswith("rill-uring")]
    metas = [r for r in allrecs if r.get("kind") == "meta"]
    byk = {}
    for r in recs:
        byk.setdefault(workload_key(r), {}).setdefault(r["server"], []).append(r)
    groups = {k: {s: Cell(v) for s, v in d.items()} for k, d in byk.items()}
    servers = []  # in the order they ran: all on first, then the variants as FEATURES lists them
    for r in recs:
        if r["server"] not in servers:
            servers.append(r["server"])
    cpu, kernel, ncpu = machine(recs)
    L = ["## io_uring features, one at a time (generated by bench/macro/uring_features.sh)", ""]
    L.append("From `%s`, %s. %s, %s CPUs, Linux %s." % (
        results, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cpu, ncpu, kernel))
    notes = []
    for m in metas:
        if m.get("invocation"):
            L.append("")
            L.append("    %s   # load average at start %s" % (m.get("invocation"), m.get("loadavg")))
        if m.get("server_cpu") is not None and m.get("load_cpu") is not None:
            L.append("")
            L.append("Server on CPU %s, rill-load on CPU %s." % (m.get("server_cpu") or "any", m.get("load_cpu") or "any"))
        for n in str(m.get("skipped") or "").split(";"):
            if n.strip():
                notes.append(n.strip())
    L.append("")
    # Did each variant run without its feature? From every run's start line.
    allcaps = set()
    for r in recs:
        if r["server"] == "rill-uring" and caps_of(r.get("server_line")):
            allcaps |= caps_of(r.get("server_line"))
    L.append("### Variants: was the feature really off?")
    L.append("")
    L.append("| variant | RILL_URING_DISABLE | runs | checked from rill-echo's start line |")
    L.append("|---|---|---|---|")
    for s in servers:
        runs = [r for r in recs if r["server"] == s]
        off = s[len("rill-uring-no-"):].split("+") if s.startswith("rill-uring-no-") else []
        bad_backend = [r for r in runs if "backend=io_uring" not in (r.get("server_line") or "")]
        nocaps = [r for r in runs if caps_of(r.get("server_line")) is None]
        still = sorted({n for r in runs for n in off if n in (caps_of(r.get("server_line")) or set())})
        if nocaps:
            v = "**not checked**: %d of %d runs without a caps= start line" % (len(nocaps), len(runs))
        elif bad_backend:
            v = "**not io_uring** in %d of %d runs" % (len(bad_backend), len(runs))
        elif not off:
            v = "all on: caps=%s (in all %d runs)" % (",".join(sorted(allcaps)), len(runs))
        elif still:
            v = "**still on**: caps list %s in some runs" % ", ".join(still)
        else:
            v = "off: caps lack %s in all %d runs%s" % (", ".join(off), len(runs), "" if all(
                n in allcaps for n in off) else " (but all-on lacks it too)")
        L.append("| %s | %s | %d | %s |" % ("all on" if s == "rill-uring" else s, ",".join(off) or "–", len(runs), v))
    for n in notes:
        L.append("")
        L.append("Skipped: %s." % n)
    L.append("")
    L.append("Each figure is the median [min max] over the repetitions, the variants of a cell interleaved "
             "(all on, then each variant, REPS times); latency in us; CPU in us per request (server: /proc of "
             "rill-echo over rill-load's window; client: rill-load's own). io_uring_enter per request: the "
             "server's from `perf stat -e syscalls:sys_enter_io_uring_enter` over rill-echo's whole life divided "
             "by the requests it echoed in that life (bytes received / request size; warm-up and idle start and "
             "stop included), the client's from rill-load. Ratios are of medians, variant over all on "
             "(requests/s: above 1 is faster; latency and CPU: above 1 is more).")
    L.append("")
    for k in sorted(groups, key=lambda k: ({"tcp": 0, "unix": 1}.get(k[2], 2), k[3], k[4] or 0, k[5])):
        g = groups[k]
        base = g.get("rill-uring")
        reps = max(c.n for c in g.values())
        L.append("#### %s (%d repetitions)" % (workload_title(k), reps))
        L.append("")
        head = ("| variant | requests/s | p50 us | p99 us | server CPU us/req | client CPU us/req | server enters/req "
                "| client enters/req | rps / all on | p50 / all on | p99 / all on | srv CPU / all on "
                "| cli CPU / all on | srv enters / all on | limited by |")
        L.append(head)
        L.append("|" + "---|" * (head.count("|") - 1))
        for s in [x for x in servers if x in g]:
            c = g[s]
            ent = med([r.get("server_enters") for r in c.recs])
            cent = med([r.get("client_enters") for r in c.recs])

            def rt(attr, a=c, b=base):
                if attr == "ent":
                    x, y = ent, med([r.get("server_enters") for r in b.recs]) if b else None
                    r = ratio(x[0] if x else None, y[0] if y else None)
                else:
                    r = ratio(a.v(attr), b.v(attr)) if b else None
                return "%.3f" % r if r else "–"
            lim = c.limited
            if c.errors:
                lim = (lim + "; " if lim else "") + "%d errors" % c.errors
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                "all on" if s == "rill-uring" else s, fmt3(c.rps, 0), fmt3(c.p50), fmt3(c.p99), fmt3(c.srv, 2),
                fmt3(c.cli, 2), fmt3(ent, 3), fmt3(cent, 3), rt("rps"), rt("p50"), rt("p99"), rt("srv"),
                rt("cli"), rt("ent"), lim or "–"))
        L.append("")
    emit(L, md_path)
    if not groups:
        sys.exit("report.py: %s: no rill-uring echo runs" % results)


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    cmd = argv[1]
    if cmd == "add-meta":
        rec = {"kind": "meta"}
        rec.update({k: v for k, v in kv(argv[3:]).items()})
        rec["kind"] = "meta"
        append(argv[2], rec)
    elif cmd == "add-load":
        add_load(argv[2], argv[3], kv(argv[4:]))
    elif cmd == "add-wrk":
        add_wrk(argv[2], argv[3], kv(argv[4:]))
    elif cmd == "add-probe":
        add_probe(argv[2], argv[3], kv(argv[4:]))
    elif cmd == "median":
        sel = kv(argv[3:])
        vals = [r.get("rps") for r in load(argv[2]) if match(r, sel)] if os.path.exists(argv[2]) else []
        m = med(vals)
        print("%.0f" % m[0] if m else 0)
    elif cmd == "check":
        recs = load(argv[2])
        bad = [i for i, r in enumerate(recs, 1) if not isinstance(r, dict) or "kind" not in r]
        runs = [r for r in recs if r.get("kind") in ("echo", "rate", "http") and (r.get("rps") or 0) > 0]
        if bad or not runs:
            sys.exit("report.py: %s: %d lines without a kind, %d runs that measured requests" % (argv[2], len(bad), len(runs)))
        print("report.py: %s: %d lines, %d runs measured requests" % (argv[2], len(recs), len(runs)))
    elif cmd == "report":
        args = argv[3:]
        md, plots, update = None, None, None
        while args:
            a = args.pop(0)
            if a == "--md":
                md = args.pop(0)
            elif a == "--plots":
                plots = args.pop(0)
            elif a == "--update":
                update = args.pop(0)
            else:
                sys.exit("report.py: unknown option %s" % a)
        report(argv[2], md or "report.md", plots, update)
    elif cmd == "features":
        args = argv[3:]
        md = None
        while args:
            a = args.pop(0)
            if a == "--md" and args:
                md = args.pop(0)
            else:
                sys.exit("report.py: unknown option %s" % a)
        features(argv[2], md)
    elif cmd == "grid":
        args = argv[3:]
        md, min_base = None, 0.97
        while args:
            a = args.pop(0)
            if a == "--md" and args:
                md = args.pop(0)
            elif a == "--min-base" and args:
                min_base = float(args.pop(0))
            else:
                sys.exit("report.py: unknown option %s" % a)
        grid(argv[2], md, min_base)
    else:
        sys.exit("report.py: unknown command %s" % cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
