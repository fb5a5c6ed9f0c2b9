#!/usr/bin/env bash
# Memory of rill-echo (io_uring) at 1000 active connections, depth 1, buf_ring_inc on and off,
# interleaved. SIZE=64 (default) or SIZE=16384 (16k-1000conns.txt).
SIZE=${SIZE:-64}
B=build/release
for rep in 1 2 3; do
  for v in on off; do
    env=""; [ $v = off ] && env="RILL_URING_DISABLE=buf_ring_inc"
    env $env taskset -c 0 $B/rill-echo -t 1 --backend uring --stats -l tcp://127.0.0.1:7420 > /tmp/inc-$v.out 2>&1 &
    pid=$!; sleep 0.5
    taskset -c 1 $B/rill-load -c 1000 -d 4 --warmup 1 -s $SIZE -q tcp://127.0.0.1:7420 > /tmp/inc-load-$v.out 2>&1
    rss=$(grep VmHWM /proc/$pid/status | awk '{print $2}')
    kill $pid; wait $pid 2>/dev/null
    rps=$(grep -o "requests/s *[0-9.]*" /tmp/inc-load-$v.out | awk '{print $2}')
    maxbufs=$(grep -o "bufs=[0-9]*" /tmp/inc-$v.out | cut -d= -f2 | sort -n | tail -1)
    maxmap=$(grep -o "mapped=[0-9.]*" /tmp/inc-$v.out | cut -d= -f2 | sort -n | tail -1)
    caps=$(grep -o "buf_ring_inc" /tmp/inc-$v.out | head -1)
    echo "rep=$rep inc=$v caps_has_inc=${caps:-no} rps=$rps max_bufs_in_use=$maxbufs max_mapped_MB=$maxmap VmHWM_kB=$rss"
  done
done
