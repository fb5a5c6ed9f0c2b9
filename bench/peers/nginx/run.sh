#!/usr/bin/env bash
# Runs nginx (Debian's) as the HTTP peer in the foreground until killed.
#
#   bash bench/peers/nginx/run.sh [--port P] [--workers N]
#
# Writes nginx.conf with the port and worker count into a temporary prefix, checks it with
# nginx -t, prints "listening tcp://127.0.0.1:P" and runs nginx; SIGTERM or SIGINT to this
# script stops nginx (master and workers) and removes the prefix. Port 0 is not supported by
# nginx: a free port is picked here first. Exit 3 when nginx is not installed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
port=8080 workers=1
while [ $# -gt 0 ]; do
    case $1 in
    --port) port=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "run.sh: nginx not installed (apt-get install nginx)" >&2; exit 3; }
if [ "$port" = 0 ]; then
    # A random port in 20000-59999 that nothing answers on (nginx -t below fails if it was taken
    # in between, and the caller sees that).
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
    done
fi
prefix=$(mktemp -d /tmp/rill-nginx.XXXXXX)
sed -e "s|@PORT@|$port|g" -e "s|@PREFIX@|$prefix|g" -e "s|@WORKERS@|$workers|g" \
    "$here/nginx.conf" >"$prefix/nginx.conf"
"$nginx" -t -q -c "$prefix/nginx.conf" -p "$prefix" -e stderr
"$nginx" -c "$prefix/nginx.conf" -p "$prefix" -e stderr &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$prefix"; exit 0' TERM INT
# Announce only once nginx accepts connections.
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.05
done
echo "listening tcp://127.0.0.1:$port workers=$workers prefix=$prefix"
wait $pid
