#!/usr/bin/env bash
# Runs nginx (Debian's) as the HTTP peer in the foreground until killed.
#
#   bash bench/peers/nginx/run.sh [--port P] [--workers N] [--root DIR]
#
# --root DIR serves the files under DIR (nginx-files.conf: sendfile on) instead of /plaintext.
# Writes nginx.conf with the port and worker count into a temporary prefix, checks it with
# nginx -t, prints "listening tcp://127.0.0.1:P" and runs nginx; SIGTERM or SIGINT to this
# script stops nginx (master and workers) and removes the prefix. Port 0 is not supported by
# nginx: a free port outside the ephemeral range is picked here, and another one if nginx cannot
# bind it. Exit 3 when nginx is not installed, 1 when nginx does not start.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=8080 workers=1 root= conf=nginx.conf
while [ $# -gt 0 ]; do
    case $1 in
    --port) port=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --root) root=$(cd "$2" && pwd); conf=nginx-files.conf; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "run.sh: nginx not installed (apt-get install nginx)" >&2; exit 3; }
# Port 0: nginx cannot bind it, so a port is chosen here outside the kernel's ephemeral range
# (ip_local_port_range), where no outgoing connection of a concurrent test or load generator
# can be holding it. Another program may still take it between the choice and nginx's bind;
# nginx then exits (after its own five bind attempts) and the next random port is tried.
auto=0
[ "$port" = 0 ] && auto=1
read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range || { eph_lo=32768 eph_hi=60999; }
if [ "$eph_lo" -ge 11000 ]; then
    lo=10000 hi=$((eph_lo - 1))
elif [ "$eph_lo" -ge 2024 ]; then
    lo=1024 hi=$((eph_lo - 1))
elif [ "$eph_hi" -le 64535 ]; then
    lo=$((eph_hi + 1)) hi=65535
else
    lo=20000 hi=59999 # no room outside the ephemeral range: probing alone must do
fi
prefix=$(mktemp -d /tmp/rill-nginx.XXXXXX)
pid=
trap 'rm -rf "$prefix"' EXIT
trap 'if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; exit 0' TERM INT
for attempt in 1 2 3 4 5; do
    if [ $auto = 1 ]; then
        for _ in $(seq 50); do
            port=$((lo + RANDOM % (hi - lo + 1)))
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
        done
    fi
    sed -e "s|@PORT@|$port|g" -e "s|@PREFIX@|$prefix|g" -e "s|@WORKERS@|$workers|g" \
        -e "s|@ROOT@|$root|g" "$here/$conf" >"$prefix/nginx.conf"
    rm -f "$prefix/nginx.pid"
    up=0
    if "$nginx" -t -q -c "$prefix/nginx.conf" -p "$prefix" -e stderr; then
        "$nginx" -c "$prefix/nginx.conf" -p "$prefix" -e stderr &
        pid=$!
        # Up once nginx has written its pid file (it does after opening its sockets) and
        # accepts; nginx exiting first means the bind failed.
        for _ in $(seq 200); do
            if [ -s "$prefix/nginx.pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                up=1
                break
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
    fi
    [ $up = 1 ] && break
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
    fi
    if [ $auto = 0 ] || [ $attempt = 5 ]; then
        echo "run.sh: nginx did not start on port $port" >&2
        exit 1
    fi
    echo "run.sh: nginx could not start on port $port, trying another" >&2
done
echo "listening tcp://127.0.0.1:$port workers=$workers prefix=$prefix"
wait "$pid" || true
