/* The loop's internal state, shared by loop.c, the backends, conn.c, listener.c and timer.c. */
#ifndef RILL_LOOP_H
#define RILL_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill.h"
#include "alloc.h"
#include "list.h"
#include "slab.h"
#include "timer.h"

struct rill__backend_ops;
struct rill__conn_pool;

/* A deferred callback. */
struct rill__defer {
    rill_defer_cb fn;
    void *arg;
};

struct rill_loop {
    const struct rill__backend_ops *ops;
    struct rill_loop_config cfg;
    uint64_t now_ms;             /* cached CLOCK_MONOTONIC in ms, refreshed once per iteration */
    _Atomic bool stop_requested; /* set by rill_loop_stop() from any thread */
    _Atomic bool wake_pending;   /* a wake-up write is outstanding: further ones are skipped */
    bool in_dispatch;            /* inside run/run_once: reentry is refused */

    struct rill__wheel wheel;
    struct rill__slab slab;

    /* Deferred callbacks: a growable ring (grows only as fast as the embedder defers). */
    struct rill__defer *defer;
    uint32_t defer_cap, defer_head, defer_len;

    /* Connections: a chunked slot table, so that slot numbers stay stable and bounded. */
    struct rill_conn **conn_chunks; /* cfg.max_conns / RILL__CONN_CHUNK chunk pointers */
    struct rill_conn *conn_free;    /* free list of conn structs (slot and generation kept) */
    uint32_t conn_slots;            /* slots handed out so far */

    /* Work lists, each walked at the flush point. */
    struct rill__list flush_list;   /* connections with bytes to send */
    struct rill__list close_list;   /* connections whose on_close is due */
    struct rill__list read_list;    /* connections with more to read (budget spent) */
    struct rill__list starve_list;  /* connections waiting for slab buffers */
    struct rill__list listeners;    /* open listeners */
    struct rill__list accept_list;  /* listeners with more to accept (budget spent) */
    struct rill__list dead_listeners; /* closed this iteration, freed at the flush point */
    uint32_t listener_serial;       /* ids for listener cookies */
    struct rill__list dgrams;       /* open datagram sockets (closing ones until freed) */
    struct rill__list dgram_flush;  /* datagram sockets with sends or callbacks due */
    struct rill__list dgram_read;   /* datagram sockets with more to read (budget spent) */
    struct rill__list dgram_starved; /* datagram sockets that could not lease receive buffers */
    uint64_t dgram_starve_mark;     /* slab.releases when one last starved or all were retried */
    uint32_t dgram_serial;          /* ids for datagram socket cookies */
    struct rill__list timers;       /* every public rill_timer of this loop */
    uint64_t inflight;              /* completion-backend operations in flight, all handles */
    uint32_t live_conns;            /* connection slots in use (open, connecting or closing) */

    /* Engine membership (NULL / -1 for a stand-alone loop). */
    struct rill_engine *engine;
    int index;
    struct rill__mailbox *mbox;
    struct rill__list migrate_list; /* connections waiting to be handed to another loop */
    bool draining;                  /* graceful stop: stop once no connection is left */
    uint64_t starve_mark;           /* slab.releases when the starve list was last retried */

    /* Write-queue entries for small sends are recycled through this list. */
    struct rill__wq_entry *wq_free;
    uint32_t wq_free_len;

    struct rill_loop_stats stats __attribute__((aligned(64)));
};

/* The loop this thread is running, if any (set for the duration of rill_loop_run_once). */
extern _Thread_local rill_loop *rill__tls_loop;

static inline struct rill_loop_stats *rill__stats(rill_loop *l)
{
    return &l->stats;
}

/* Refreshes l->now_ms from CLOCK_MONOTONIC. */
void rill__loop_update_time(rill_loop *l);

/* The loop's clock for computing a deadline. Inside an iteration the cached value is fresh; a
 * call from outside (set-up code before the loop runs, or after a long pause) refreshes it so a
 * timeout never starts from a stale time and fires early. */
static inline uint64_t rill__loop_clock(rill_loop *l)
{
    if (!l->in_dispatch)
        rill__loop_update_time(l);
    return l->now_ms;
}

/* Returns a config with every 0 replaced by its default; -EINVAL for values out of range. */
int rill__loop_config_resolve(const struct rill_loop_config *in, struct rill_loop_config *out);

/* Common state set-up and tear-down for backends: each backend's init allocates its own struct
 * (which embeds struct rill_loop first) and calls these. */
int rill__loop_init_common(rill_loop *l, const struct rill_loop_config *cfg);
void rill__loop_fini_common(rill_loop *l);

/* Frees every public timer still existing (rill_loop_destroy). */
void rill__timers_free_all(rill_loop *l);

/* Logs one line on stderr, prefixed with "rill: ". */
void rill__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
