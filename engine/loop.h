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
    uint64_t now_us;             /* cached CLOCK_MONOTONIC in us, refreshed after each wait */
    uint64_t now_ms;             /* the same instant in ms (now_us / 1000): the handles' clock */
    _Atomic bool stop_requested; /* set by rill_loop_stop() from any thread */
    _Atomic bool wake_pending;   /* a wake-up write is outstanding: further ones are skipped */
    bool in_dispatch;            /* inside run/run_once: reentry is refused */

    struct rill__wheel wheel;
    struct rill__slab slab;
    /* Giving idle slab regions back (loop.c, slab_trim): armed at a flush point when buffers
     * were released since trim_mark, so that a loop with nothing to give back never wakes. */
    struct rill__tnode trim;
    uint64_t trim_mark;

    /* Deferred callbacks: a growable ring (grows only as fast as the embedder defers). */
    struct rill__defer *defer;
    uint32_t defer_cap, defer_head, defer_len;

    /* Handle kinds' per-iteration work (loop.h's enum rill__kind): a bit per kind that has
     * work due at the flush point, and a bit per kind that waits for slab buffers (retried
     * once the slab has had buffers back since starve_mark) or for a free descriptor. */
    uint32_t pending;
    uint32_t starving;
    uint64_t starve_mark;           /* slab.releases when kinds began to starve, or were retried */
    uint32_t fd_waiting;            /* kinds to wake (pending) when a descriptor is freed */

    /* Connections (conn.c): a chunked slot table, so that slot numbers stay stable and
     * bounded. Each element is conn_stride bytes: struct rill_conn first, the backend's own
     * per-connection state after it (backend.h, conn_size). */
    void **conn_chunks;             /* cfg.max_conns / RILL__CONN_CHUNK chunk pointers */
    struct rill_conn *conn_free;    /* free list of conn structs (slot and generation kept) */
    uint32_t conn_slots;            /* slots handed out so far */
    uint32_t conn_stride;           /* bytes per slot */
    struct rill__list flush_list;   /* connections with bytes to send */
    struct rill__list close_list;   /* connections whose on_close is due */
    struct rill__list resume_list;  /* resumed connections with received data held for them */
    struct rill__list starve_list;  /* connections waiting for slab buffers */
    struct rill__list migrate_list; /* connections waiting to be handed to another loop */
    uint32_t live_conns;            /* connection slots in use (open, connecting or closing) */
    /* The grace period when reading runs short of memory (conn_mem.c): armed when the held
     * bytes reach the ceiling or a read finds no buffer; mem_mark is slab.held_pauses and
     * mem_in_mark stats.bytes_in when it began, to tell memory that stayed short throughout
     * from a ceiling left and reached again, or from a spent budget that reads still got by. */
    struct rill__tnode mem_watch;
    uint64_t mem_mark, mem_in_mark;
    /* Write-queue entries for small sends are recycled through this list. */
    struct rill__wq_entry *wq_free;
    uint32_t wq_free_len;

    /* Listeners (listener.c). */
    struct rill__list listeners;    /* open listeners */
    struct rill__list dead_listeners; /* closed this iteration, freed at the flush point */
    uint32_t listener_serial;       /* ids for listener cookies */
    bool fd_freed;                  /* a descriptor was freed since resting listeners looked */

    /* Datagram sockets (dgram.c). */
    struct rill__list dgrams;       /* open datagram sockets (closing ones until freed) */
    struct rill__list dgram_flush;  /* datagram sockets with sends or callbacks due */
    struct rill__list dgram_starved; /* datagram sockets that could not lease receive buffers */
    uint32_t dgram_serial;          /* ids for datagram socket cookies */

    /* Work both backends carry from one iteration to the next (a read budget spent, buffers
     * wanted): each backend's poll takes these lists and does not wait while they hold any. */
    struct rill__list read_list;    /* connections with more to read */
    /* A backend that sends a connection's queue right after its read turn (epoll) names the
     * connection here for the turn: rill__conn_mark_flush then only flags it (SEND_DUE), and
     * the backend sends at the turn's end, sparing a flush-list push and pop per message. */
    struct rill_conn *send_turn;
    struct rill__list dgram_read;   /* datagram sockets with more to read, or to re-arm */

    struct rill__list timers;       /* every public rill_timer of this loop */

    /* Descriptors watched for readiness (watch.c): the slot of each watch by its id, and a
     * stack of free ids. */
    struct rill__watch **watches;
    uint32_t *watch_free;
    uint32_t watch_cap, watch_nfree, watch_gen;
    /* The name resolver (resolve.c): created on the first name that needs a lookup. */
    struct rill__resolver *resolver;
    uint64_t inflight;              /* kernel operations in flight, all handles (backends count) */

    /* Engine membership (NULL / -1 for a stand-alone loop). */
    struct rill_engine *engine;
    int index;
    struct rill__mailbox *mbox;
    bool draining;                  /* graceful stop: stop once no connection is left */

    struct rill_loop_stats stats __attribute__((aligned(64)));
};

/* The loop this thread is running, if any (set for the duration of rill_loop_run_once). */
extern _Thread_local rill_loop *rill__tls_loop;

static inline struct rill_loop_stats *rill__stats(rill_loop *l)
{
    return &l->stats;
}

/* Refreshes l->now_us and l->now_ms from CLOCK_MONOTONIC. */
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

/* The same in microseconds (the wheel's unit). */
static inline uint64_t rill__loop_clock_us(rill_loop *l)
{
    if (!l->in_dispatch)
        rill__loop_update_time(l);
    return l->now_us;
}

/* Returns a config with every 0 replaced by its default; -EINVAL for values out of range. */
int rill__loop_config_resolve(const struct rill_loop_config *in, struct rill_loop_config *out);

/* Common state set-up and tear-down for backends: each backend's init allocates its own struct
 * (which embeds struct rill_loop first) and calls these. */
int rill__loop_init_common(rill_loop *l, const struct rill_loop_config *cfg);
void rill__loop_fini_common(rill_loop *l);

/* ---- handle kinds ---------------------------------------------------------------------------
 *
 * The loop is the ground the handles stand on: it knows no handle kind by name. Each kind
 * registers a small table of hooks (engine/kinds.c lists them); the loop calls them in the
 * order of this enum, which is therefore the order of their flush-point work and of teardown:
 * listeners stop accepting before connections close, and datagram sockets close last. */
enum rill__kind {
    RILL__KIND_LISTENER,
    RILL__KIND_CONN,
    RILL__KIND_DGRAM,
    RILL__KIND_RESOLVE, /* the name resolver (resolve.c): no handles, torn down last */
    RILL__KINDS
};

struct rill__kind_ops {
    const char *name;
    /* Optional: checks the kind's fields of a resolved config before any backend is tried, so
     * that a bad value is the caller's -EINVAL, not a reason to fall back to another backend.
     * Returns 0 or -EINVAL. */
    int (*check)(const struct rill_loop_config *cfg);
    /* Sets up the kind's state in a new loop (rill__loop_init_common). Returns 0 or -errno. */
    int (*init)(rill_loop *l);
    /* Releases that state; every handle of the kind is gone (rill__loop_fini_common). */
    void (*fini)(rill_loop *l);
    /* The kind's work at the flush point; called while its bit is set in l->pending. It clears
     * the bit once nothing of its work is left (work queued during the walk keeps it). */
    void (*flush)(rill_loop *l);
    /* Buffers came back to the slab since the kind starved: let its handles try again. */
    void (*retry_starved)(rill_loop *l);
    /* rill_loop_destroy (status -ECANCELED): close every handle of the kind. Closes may still
     * wait for the backend's completions, which the loop then collects. */
    void (*teardown)(rill_loop *l, int status);
    /* RILL_CAP_* bits the kind adds to the backend's (a property of the kernel). */
    uint32_t (*caps)(void);
};

extern const struct rill__kind_ops *const rill__kinds[RILL__KINDS];
/* Each kind's table, defined beside its handles (listener.c, conn.c, dgram.c). */
extern const struct rill__kind_ops rill__listener_kind, rill__conn_kind, rill__dgram_kind,
    rill__resolve_kind;

#define RILL__KIND_BIT(k) (1u << (k))

/* A kind has work for the flush point: the loop's next wait does not block. */
static inline void rill__loop_pending(rill_loop *l, enum rill__kind k)
{
    l->pending |= RILL__KIND_BIT(k);
}

/* A kind waits for slab buffers: its retry_starved runs once the slab has had some back. The
 * mark is taken when the first kind starts waiting (and again at each retry), not at every
 * starvation: one kind starving later must not hide buffers that came back for another. */
static inline void rill__loop_starving(rill_loop *l, enum rill__kind k)
{
    if (!l->starving)
        l->starve_mark = l->slab.releases;
    l->starving |= RILL__KIND_BIT(k);
}

/* A descriptor was freed on this loop (the EMFILE reserve): kinds that wait for one get their
 * flush-point work, where they try again. */
static inline void rill__loop_fd_freed(rill_loop *l)
{
    if (l->fd_waiting) {
        l->fd_freed = true;
        l->pending |= l->fd_waiting;
    }
}

/* ---- watched descriptors ---------------------------------------------------------------------
 *
 * A descriptor that someone else owns (the resolver's sockets, a connect attempt racing others)
 * and wants readiness reports for, through the backend's watch downcall. A watch is named in
 * events and completions by {id, gen}: id is its slot in l->watches, gen changes every time the
 * backend arms it anew, so a report from an older arming (a cancelled poll's last completion)
 * is recognised and dropped. Readiness is reported when it arises (edge-triggered on both
 * backends: EPOLLET, a multishot poll): the watcher reads or writes until EAGAIN. */
enum {
    RILL__WATCH_IN = 1u << 0,  /* readable (or the peer hung up) */
    RILL__WATCH_OUT = 1u << 1, /* writable (a connect finished, with or without an error) */
    RILL__WATCH_ERR = 1u << 2, /* an error or hang-up is pending on the descriptor */
};

struct rill__watch {
    int fd;
    uint32_t id;     /* slot in l->watches (rill__watch_register) */
    uint32_t gen;    /* the current arming (the backend sets it from l->watch_gen) */
    uint32_t events; /* RILL__WATCH_IN | _OUT asked for now; 0: not watched */
    /* Called from the backend's poll with what became ready (RILL__WATCH_*). It may change or
     * stop the watch, or unregister and free it. */
    void (*fn)(struct rill__watch *w, uint32_t revents);
};

/* Gives w an id. Returns 0 or -ENOMEM. */
int rill__watch_register(rill_loop *l, struct rill__watch *w);
/* Frees w's id; w must not be watched any more (events 0). */
void rill__watch_unregister(rill_loop *l, struct rill__watch *w);
/* The watch a report names, or NULL when it is gone or was armed anew since (stale). */
struct rill__watch *rill__watch_lookup(rill_loop *l, uint32_t id, uint32_t gen);
/* A new arming's generation. */
static inline uint32_t rill__watch_next_gen(rill_loop *l)
{
    return ++l->watch_gen & 0xffffffu;
}
void rill__watch_fini(rill_loop *l);

/* Frees every public timer still existing (rill_loop_destroy). */
void rill__timers_free_all(rill_loop *l);

/* Logs one line on stderr, prefixed with "rill: ". */
void rill__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
