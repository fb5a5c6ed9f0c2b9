#!/usr/bin/env bash
# rill-echo on io_uring vs on epoll: one loop pinned to CPU 0, rill-load pinned to CPU 1.
#   bash bench/macro/echo_backends.sh        (env as for echo_ab.sh)
exec bash "$(dirname "${BASH_SOURCE[0]}")/echo_ab.sh" uring "-t 1 --no-pin -b uring" \
    epoll "-t 1 --no-pin -b epoll"
