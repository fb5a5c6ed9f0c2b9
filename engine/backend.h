/* The backend seam (internal).
 *
 * A backend is a table of functions behind which readiness (epoll) or completion (io_uring) I/O
 * happens. The rest of the engine never asks which backend runs; it asks for a capability bit.
 *
 * The seam runs both ways and both are written down: this file lists the downcalls (what the
 * loop and the handles ask of a backend), engine/upcall.h lists every upcall (what a backend
 * may call in the handles). ARCHITECTURE.md shows where the seam sits among the layers.
 *
 * The seam is shaped for a completion backend: the caller never hands the backend a buffer to
 * receive into. It says "receive on this connection" (conn_start, recv_resume), and the backend
 * chooses the slab buffer the bytes land in and hands it over once, with rill__conn_recv().
 * Sends are the mirror image: conn.c owns the write queue, the backend gathers iovecs from it
 * (rill__conn_wq_msg) and reports progress (rill__conn_sent). Nothing the backend does is
 * visible to the embedder before the flush point of the iteration, except callbacks it
 * dispatches from poll.
 *
 * Private state. Each backend's loop state is a struct that embeds struct rill_loop as its
 * first member; its per-handle state is a struct that embeds struct rill_conn (rill_dgram,
 * rill_listener) first, of the size the backend declares here, allocated by the handle code and
 * recovered with rill__container_of. The handle structs carry nothing that only one backend
 * uses, and code outside backend_*.c asks a backend about a handle only through conn_busy and
 * dgram_busy (is it quiet?) or a capability bit, never by testing a backend's fields. */
#ifndef RILL_BACKEND_H
#define RILL_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "rill.h"
#include "upcall.h"

struct rill__watch;

/* What conn_busy / dgram_busy report. */
enum {
    RILL__BUSY_SEND = 1u << 0, /* the kernel may still read queued bytes (a send in flight) */
    RILL__BUSY_OPS = 1u << 1,  /* some operation may still complete naming the handle */
};

struct rill__backend_ops {
    const char *name;
    /* The backend bounds connects itself (a linked timeout); otherwise conn.c arms a timer. */
    bool links_connect_timeout;
    /* Bytes of the backend's per-handle structs, each embedding the handle's struct first
     * (>= sizeof the handle). The handle code allocates and zeroes them. */
    uint32_t conn_size, dgram_size, listener_size;

    /* Allocates the backend's state (embedding struct rill_loop), initialises the common part
     * with rill__loop_init_common(cfg) and the backend's own resources.
     * Returns 0 and *out, or a negative errno (*why then names the reason, for the log). */
    int (*create)(const struct rill_loop_config *cfg, rill_loop **out, const char **why);

    /* Releases the backend's resources and the memory create() allocated. Every connection and
     * listener is already gone; rill__loop_fini_common() is called by the backend. */
    void (*destroy)(rill_loop *l);

    /* RILL_CAP_* of this instance (probing may have disabled some). */
    uint32_t (*caps)(const rill_loop *l);

    /* Waits up to timeout_us microseconds (-1: no limit, 0: no wait) and dispatches what
     * arrived: calls into conn.c and listener.c, which run the embedder's callbacks. The wait
     * ends no earlier than the timeout unless something arrives (a wait the kernel can only
     * time in milliseconds rounds up), so a timer the loop waits for is never found not due.
     * Returns: the number of events or completions handled, or a negative errno if the backend
     * itself failed. */
    int (*poll)(rill_loop *l, int64_t timeout_us);

    /* The flush point's last step: submit whatever the iteration batched. Returns 0 or -errno. */
    int (*flush)(rill_loop *l);

    /* Interrupts a poll in progress. Any thread; async-signal-safe. */
    void (*wake)(rill_loop *l);
    /* Optional: wakes loop dst of the same engine and backend from loop src's own thread
     * without a system call of its own (io_uring: IORING_OP_MSG_RING, sent with src's next
     * submission). Returns 0 when queued; otherwise the caller uses wake. */
    int (*post_wake)(rill_loop *src, rill_loop *dst);

    /* Starts (or, after a pause for EMFILE, restarts) accepting on a bound, listening socket. */
    int (*listener_start)(rill_loop *l, rill_listener *ls);
    /* Stops accepting and closes the listener's descriptor. The listener is freed by the caller
     * right after this returns, so no later event may refer to it except through its cookie. */
    void (*listener_close)(rill_loop *l, rill_listener *ls);

    /* Is the connection quiet? RILL__BUSY_* bits; 0 when nothing of it is in the kernel's
     * hands. on_close waits while SEND is set, the slot's reuse and a migration while any is. */
    uint32_t (*conn_busy)(const rill_conn *c);
    /* The slot is about to be reused (or the loop is going): frees what the backend allocated
     * for the connection beyond its struct. The connection is closed and quiet. */
    void (*conn_free)(rill_loop *l, rill_conn *c);

    /* Registers an accepted (connected) socket and starts receiving unless reads are paused. */
    int (*conn_start)(rill_loop *l, rill_conn *c);
    /* Starts a non-blocking connect; success or failure comes back through rill__conn_opened()
     * or rill__conn_fail(). Unless links_connect_timeout, conn.c bounds it with a timer. */
    int (*conn_connect)(rill_loop *l, rill_conn *c, const struct sockaddr *sa, socklen_t len,
                        uint32_t timeout_ms);
    /* Reading is paused (by the embedder): stop receiving (a completion backend cancels). */
    void (*recv_pause)(rill_loop *l, rill_conn *c);
    /* Receiving was paused (by the embedder, or for lack of buffers) and may go on now; data
     * held for the connection meanwhile has been delivered already. */
    void (*recv_resume)(rill_loop *l, rill_conn *c);
    /* The write queue has bytes: send what the socket takes. Called at the flush point (epoll
     * also right after a connection's read turn). A backend that has a send in flight, or waits
     * for the socket to take more, returns at once and calls rill__conn_mark_flush() when it can
     * go on. */
    void (*send)(rill_loop *l, rill_conn *c);
    /* Forgets a quiet connection's descriptor without closing it (it moves to another loop):
     * conn_busy is 0. */
    void (*conn_detach)(rill_loop *l, rill_conn *c);
    /* Cancels in-flight work and closes the descriptor. Completions that are still due come back
     * later; after the last one the backend calls rill__conn_put(), and the slot is reused only
     * then. */
    void (*conn_close)(rill_loop *l, rill_conn *c);

    /* Datagram sockets (dgram.c). Is the socket quiet? RILL__BUSY_* as for connections. */
    uint32_t (*dgram_busy)(const rill_dgram *d);
    /* Registers a bound socket and starts receiving. */
    int (*dgram_start)(rill_loop *l, rill_dgram *d);
    /* Hands queued datagrams (rill__dgram_tx_pop) to the kernel; called at the flush point. A
     * backend that waits for the socket to take more returns at once. */
    void (*dgram_send)(rill_loop *l, rill_dgram *d);
    /* Cancels in-flight work and closes the descriptor; after the last completion still due
     * the backend calls rill__dgram_put(). */
    void (*dgram_close)(rill_loop *l, rill_dgram *d);
    /* Frees what the backend holds for a socket whose last operation has completed. */
    void (*dgram_free)(rill_loop *l, rill_dgram *d);

    /* Watched descriptors (loop.h, struct rill__watch): descriptors the handles do not read
     * themselves, the resolver's sockets and connect attempts. Starts, changes (events !=
     * w->events) or stops (events 0) watching w->fd for RILL__WATCH_IN / RILL__WATCH_OUT; sets
     * w->events, and w->gen to a new arming. Readiness is reported when it arises, from poll,
     * by calling w->fn (found again with rill__watch_lookup; a report of an older arming is
     * dropped): epoll, an EPOLLET registration (EPOLL_CTL_ADD / MOD / DEL); io_uring, a
     * multishot IORING_OP_POLL_ADD submitted at the flush point (re-armed when the kernel ends
     * it), and a POLL_REMOVE for the old arming. Stopping must come before the owner closes the
     * descriptor. w must stay registered and in memory while events != 0.
     * Returns: 0, or a negative errno (nothing is watched then). */
    int (*watch)(rill_loop *l, struct rill__watch *w, uint32_t events);
};

extern const struct rill__backend_ops rill__backend_epoll;
extern const struct rill__backend_ops rill__backend_uring;

#endif
