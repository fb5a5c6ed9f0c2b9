#!/usr/bin/env bash
# rill-echo with 2 loops vs 1 loop (io_uring), the load generator sharing the machine: no
# taskset on the server, rill-load unpinned. On 2 CPUs this shows spreading, not scaling.
#   bash bench/macro/echo_loops.sh          (env as for echo_ab.sh)
SERVER_CPUS=${SERVER_CPUS-} LOAD_ARGS=${LOAD_ARGS-} \
    exec bash "$(dirname "${BASH_SOURCE[0]}")/echo_ab.sh" 2loops "-t 2" 1loop "-t 1"
