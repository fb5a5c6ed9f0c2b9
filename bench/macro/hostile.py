#!/usr/bin/env python3
"""Hostile peers against the servers we ship, as a new user deploying them would meet them.

Two scenarios, each bounded in time, on loopback only; the server is pinned to CPU 0 and the
clients to CPU 1 (on a 2-CPU machine):

  slowloris   rill-http --header-timeout 1000 under a 1024-descriptor limit; 1100 clients each
              open a connection and trickle a request head one byte every 3 s. Meanwhile
              rill-load drives 16 normal keep-alive connections. Reports how many slow
              connections the server closed within 8 s, and rill-load's requests/s, errors
              and timeouts.
  nonreaders  rill-echo with its defaults (one loop per CPU); 1000 clients send 64 KiB chunks
              as fast as the server takes them and never read. Reports the server's peak RSS
              (VmHWM) against the documented bound, the loops' memory counters from --stats,
              and the RSS 8 s after the clients left (idle slab regions are given back after
              5 s).

Usage: python3 bench/macro/hostile.py [--build build/release] [slowloris] [nonreaders]
"""
import argparse
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(cmd, cpu, limit_fds=None):
    """Starts a server pinned to `cpu`; returns (proc, port, listening line) once it is ready."""
    def pre():
        if limit_fds:
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit_fds, limit_fds))
        os.sched_setaffinity(0, {cpu})
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=pre)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = p.stdout.readline()
        m = re.search(r"listening tcp://127\.0\.0\.1:(\d+)", line)
        if m:
            return p, int(m.group(1)), line
    p.kill()
    sys.exit("server did not start: " + " ".join(cmd))


def stop(p):
    p.terminate()
    try:
        return p.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()[0]


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def connect_nb(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    return s


def slowloris(build):
    srv, port, _ = start([f"{build}/rill-http", "-t", "1", "--no-pin", "--header-timeout", "1000",
                       "-l", "tcp://127.0.0.1:0"], 0, limit_fds=1024)
    os.sched_setaffinity(0, {1})
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    n = 1100
    head = b"GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"x" * 64
    socks = [connect_nb(port) for _ in range(n)]
    t0 = time.time()
    load = subprocess.Popen([f"{build}/rill-load", "-c", "16", "-d", "8", "--warmup", "0",
                             "--timeout", "5", f"http://127.0.0.1:{port}/plaintext"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {1}))
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    closed_at = {}
    pos = [0] * n
    next_byte = 0.0
    while time.time() - t0 < 8.5 and len(closed_at) < n:
        now = time.time()
        if now >= next_byte:  # one more byte of every open slow head, every 3 s
            for i, s in enumerate(socks):
                if i not in closed_at:
                    try:
                        s.send(head[pos[i] % len(head):pos[i] % len(head) + 1])
                        pos[i] += 1
                    except OSError:
                        pass
            next_byte = now + 3
        for key, _ in sel.select(timeout=0.05):
            i = key.data
            try:
                data = key.fileobj.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed_at[i] = time.time() - t0
                sel.unregister(key.fileobj)
    out = load.communicate(timeout=30)[0]
    stop(srv)
    for s in socks:
        s.close()
    within8 = sum(1 for t in closed_at.values() if t <= 8)
    print(f"slowloris: {within8} of {n} slow connections closed by the server within 8 s "
          f"(last at {max(closed_at.values()) if closed_at else 0:.2f} s)")
    print("rill-load, 16 normal connections, 8 s:")
    print("  " + "\n  ".join(l for l in out.splitlines() if l.strip()))
    return within8 >= 1000


def nonreaders(build):
    srv, port, line = start([f"{build}/rill-echo", "--stats", "-l", "tcp://127.0.0.1:0"], 0)
    loops = int(re.search(r"loops=(\d+)", line).group(1))
    os.sched_setaffinity(0, {1})
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    n = 1000
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
    chunk = b"\0" * 65536
    base = rss_kb(srv.pid, "VmRSS")
    t0, sent, reset = time.time(), 0, 0
    while time.time() - t0 < 12:
        for i, s in enumerate(socks):
            if s is None:
                continue
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                pass
            except OSError:
                socks[i] = None  # the server closed it
                reset += 1
        time.sleep(0.005)
    peak = rss_kb(srv.pid, "VmHWM")
    for s in socks:
        if s:
            s.close()
    time.sleep(8)
    after = rss_kb(srv.pid, "VmRSS")
    out = stop(srv)
    stats = [l for l in out.splitlines() if l.startswith("conns=")]
    bound = loops * 64 * 1024 + 32 * 1024  # KiB: each loop's slab budget, plus the program
    print(f"nonreaders: {n} clients sent {sent / 2**20:.0f} MiB in 12 s and read nothing; "
          f"{reset} were closed by the server (memory ceiling)")
    print(f"  rill-echo RSS: {base / 1024:.0f} MiB at start, peak {peak / 1024:.0f} MiB "
          f"(bound {bound / 1024:.0f} MiB: {loops} loops x 64 MiB slab budget + 32 MiB), "
          f"{after / 1024:.0f} MiB 8 s after the clients left")
    if stats:
        print("  last --stats line under load: " + stats[-1])
    return peak < bound


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build/release"))
    ap.add_argument("scenario", nargs="*", help="slowloris, nonreaders (default: both)")
    a = ap.parse_args()
    bad = [sc for sc in a.scenario if sc not in ("slowloris", "nonreaders")]
    if bad:
        ap.error(f"unknown scenario {bad[0]!r}: slowloris or nonreaders")
    ok = True
    for sc in a.scenario or ["slowloris", "nonreaders"]:
        ok = (slowloris if sc == "slowloris" else nonreaders)(a.build) and ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
