/* Stream connections and listeners (internal): state shared by conn.c, listener.c and backends. */
#ifndef RILL_CONN_H
#define RILL_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "cookie.h"
#include "loop.h"

#define RILL__CONN_CHUNK 256u   /* connections per chunk of the slot table */
#define RILL__MAX_IOV 64u       /* iovecs handed to one sendmsg/readv */
#define RILL_ACCEPT_BUDGET 64u  /* accepts per listener per iteration */
#define RILL_READ_BUDGET (256u * 1024u) /* bytes read per connection per iteration */
#define RILL_WRITE_BUDGET (1024u * 1024u) /* bytes sent per connection per flush */
#define RILL__EMFILE_RETRY_MS 100u /* how long accept rests after EMFILE/ENFILE */

/* Connection state bits. */
enum {
    RILL__C_CONNECTING = 1u << 0, /* outbound connect in progress */
    RILL__C_OPEN = 1u << 1,       /* on_open has run */
    RILL__C_RD_PAUSED = 1u << 2,  /* the embedder paused reading */
    RILL__C_RD_STARVED = 1u << 3, /* reading waits for slab buffers */
    RILL__C_RD_EOF = 1u << 4,     /* the peer half-closed */
    RILL__C_SEND_DUE = 1u << 5,   /* marked for sending during the backend's send turn */
    RILL__C_SHUT_WANTED = 1u << 8,/* rill_shutdown: FIN once the queue is empty */
    RILL__C_SHUT_DONE = 1u << 9,  /* FIN sent */
    RILL__C_HIGH = 1u << 10,      /* passed the high-water mark; on_drain due below low */
    RILL__C_CLOSING = 1u << 11,   /* close started; on_close pending */
    RILL__C_CLOSED = 1u << 12,    /* on_close has run */
    RILL__C_CLOSE_AFTER_WQ = 1u << 13, /* close (status 0) once the queue is empty */
    RILL__C_MIGRATING = 1u << 15, /* rill_conn_migrate: quiescing before the hand-over */
};

/* One queued send: the caller's iovecs (copied) or slab buffer slices (referenced). */
struct rill__wq_entry {
    /* Zeroed as one block when the entry is taken (up to cb). */
    struct rill__wq_entry *next;
    int *fds;           /* rill_send_ex: our duplicates of the descriptors to pass, or NULL */
    void *cmsg;         /* ... and their SCM_RIGHTS control message (with fds, one block) */
    uint32_t niov;      /* iovecs in iov[] */
    uint32_t cur;       /* first iovec not fully sent */
    uint32_t nfds;
    bool bufs;          /* iov[i] points into bufs[i] (rill_send_bufs) */
    bool fds_sent;      /* the control message went out with the entry's first bytes */
    bool urgent;        /* RILL_SEND_F_URGENT: sent alone with MSG_OOB */
    bool file;          /* rill_send_file: no iovecs; file_left bytes of file_fd from file_off */
    int file_fd;        /* the caller's descriptor (not ours: never closed here) */
    uint64_t file_off;  /* the next byte to send (advanced as sent) */
    size_t file_left;   /* bytes still to send */
    /* Set by the send call. */
    rill_send_cb cb;
    void *ctx;
    size_t total;       /* bytes in the entry */
    /* Fixed for the allocation. */
    uint32_t cap;       /* iovecs the entry can hold (for recycling) */
    struct iovec *iov;  /* points just past the struct */
    struct rill_buf **buf; /* when bufs: one reference per iovec, else NULL */
};

/* Control room for a message-mode receive that takes descriptors (SCM_RIGHTS, at most 253). */
#define RILL__FD_CMSG_SPACE CMSG_SPACE(253 * sizeof(int))

/* A stream connection. Only what every backend uses is here: each backend keeps its own
 * per-connection state in a struct that embeds this one first (backend.h, conn_size). */
struct rill_conn {
    rill_loop *loop;
    int fd;
    uint32_t state;
    uint32_t slot;
    uint32_t gen;
    int close_status;
    int family, socktype;  /* AF_INET/AF_INET6/AF_UNIX; SOCK_STREAM or SOCK_SEQPACKET */
    /* Receive with recvmsg into one whole buffer (seqpacket: a message each) and, when the
     * handler takes descriptors, with room for SCM_RIGHTS. */
    bool rx_msg;

    struct rill_conn_handler h;
    void *ctx;
    struct rill_conn_options opts;

    /* Write queue: a singly-linked FIFO with a tail pointer; head->cur/iov trimmed as sent. */
    struct rill__wq_entry *wq_head, *wq_tail;
    size_t wq_bytes;
    size_t wq_file_bytes; /* the part of wq_bytes that file entries still have to send: not
                           * memory, so not held against the loop's ceiling */

    /* Connect, idle and send timeouts, one timer. Re-armed lazily: I/O only refreshes last_io
     * (any byte in or out) and wq_moved (the last byte the kernel took from the queue, or when
     * the queue stopped being empty). */
    struct rill__tnode timer;
    uint64_t last_io;
    uint64_t wq_moved;

    struct rill__list flush_link; /* on l->flush_list */
    struct rill__list read_link;  /* on l->read_list or l->starve_list (backends move it) */
    struct rill__list resume_link; /* on l->resume_list: held data due (conn.c's own) */
    struct rill__list close_link; /* on l->close_list */
    int wq_status;                /* what queued sends get when the connection dies */
    struct rill_conn *next_free;

    /* Data that arrived after the embedder paused reading waits here (linked through
     * rill_buf.next_free, lengths in rill_buf.len) until rill_read_resume(). */
    struct rill_buf *held_head, *held_tail;
    size_t held_bytes; /* their lengths, as counted against the loop's memory ceiling */
    bool held_eof;    /* end of stream arrived while paused */

    /* rill_conn_migrate: where to and whom to tell (on l->migrate_list, through read_link's
     * sibling migrate_link, until quiet). */
    struct rill__list migrate_link;
    uint32_t mig_target;
    rill_migrate_cb mig_cb;
    void *mig_arg;

    /* Connecting to a host name (conn_dial.c): the lookup and the attempts, until one wins
     * (fd is -1 until then) or the connection closes. */
    struct rill__dial *dial;
};

struct rill_listener {
    rill_loop *loop;
    int fd;
    int socktype;   /* SOCK_STREAM or SOCK_SEQPACKET */
    uint32_t flags;
    bool paused;    /* resting after EMFILE/ENFILE */
    bool closed;
    bool unlink_path; /* a Unix socket file this listener created: removed at close */
    struct rill_conn_handler h;
    void *ctx;
    struct rill_conn_options opts;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct rill__tnode retry;  /* accept retry after EMFILE */
    struct rill__list link;    /* on l->listeners, or on l->dead_listeners once closed */
    uint32_t id;               /* cookie identity: the listener's serial number on this loop */
};

/* The handle-side interface a backend may call is engine/upcall.h; what follows is shared by
 * the handle files (conn.c, conn_send.c, listener.c, migrate.c, engine.c). */

/* Connection slot table: the connection in a slot, whether live or not. */
static inline rill_conn *rill__conn_at(rill_loop *l, uint32_t slot)
{
    return (rill_conn *)((char *)l->conn_chunks[slot / RILL__CONN_CHUNK] +
                         (size_t)(slot % RILL__CONN_CHUNK) * l->conn_stride);
}
/* The connection a cookie names: NULL when the slot is free or holds a newer generation. Inline:
 * every readiness event and completion looks its connection up. */
static inline rill_conn *rill__conn_lookup(rill_loop *l, uint32_t slot, uint32_t gen)
{
    if (slot >= l->conn_slots)
        return NULL;
    rill_conn *c = rill__conn_at(l, slot);
    if (c->loop != l || (c->gen & RILL__COOKIE_GEN_MASK) != gen)
        return NULL;
    return c;
}
/* The one walk over the slot table: returns the next live connection from slot *it on and
 * moves *it past it, or NULL at the end. Start with *it = 0. A callback run on the connection
 * returned may close it (or any other). */
rill_conn *rill__conn_next(rill_loop *l, uint32_t *it);
int rill__conn_alloc(rill_loop *l, rill_conn **out);

/* Options with 0s replaced by defaults; -EINVAL for unknown flags. */
int rill__conn_options_resolve(const struct rill_conn_options *in, struct rill_conn_options *out);
/* Per-socket set-up of a new connection (TCP_NODELAY unless turned off). */
int rill__conn_setup_socket(rill_loop *l, int fd, int family, const struct rill_conn_options *o);
/* Wraps an accepted, non-blocking socket in a connection and registers it with the backend; the
 * caller then calls rill__conn_opened(). On failure fd is left to the caller. */
int rill__conn_accepted(rill_loop *l, int fd, int family, int socktype,
                        const struct rill_conn_handler *h, void *ctx,
                        const struct rill_conn_options *opts, rill_conn **out);
/* The socket's family and type, and whether it is read message by message. */
void rill__conn_set_kind(rill_conn *c, int family, int socktype);
/* The connection's one timer (connect, idle and send timeouts). */
void rill__conn_timer_fn(struct rill__tnode *t);
/* Connecting to a name (conn_dial.c): starts the lookup and the attempts for a connection
 * that is CONNECTING with no descriptor; the outcome is rill__conn_dialed() or
 * rill__conn_fail(). Returns 0, or -ENOMEM / the resolver's set-up error (nothing started). */
int rill__dial_start(rill_conn *c, const char *host, uint16_t port);
/* Stops a dial in progress (the connection is closing): closes the attempts, stops waiting. */
void rill__dial_cancel(rill_conn *c);
/* An attempt connected: fd becomes the connection's socket, started like an accepted one, and
 * on_open runs. */
void rill__conn_dialed(rill_conn *c, int fd, int family);
/* Like opened, without on_open: a connection that moved here from another loop. */
void rill__conn_adopted(rill_conn *c);
/* Delivers data (and an end of stream) held while reading was paused; returns true when nothing
 * is held any more. */
bool rill__conn_deliver_held(rill_conn *c);
/* Runs on_drain below the low water mark, and a wanted half-close (or a close that waited for
 * the queue) once the queue is empty. Inline: after nearly every send none of it applies. */
void rill__conn_check_drained_slow(rill_conn *c);
static inline void rill__conn_check_drained(rill_conn *c)
{
    /* SHUT_DONE implies SHUT_WANTED, so these three bits cover every case of the slow path. */
    if (c->state & (RILL__C_HIGH | RILL__C_SHUT_WANTED | RILL__C_CLOSE_AFTER_WQ))
        rill__conn_check_drained_slow(c);
}
/* Fails every queued send with status; used once the connection is closing. */
void rill__conn_wq_cancel_all(rill_conn *c, int status);
/* Gathers up to max iovecs from the head for one send. */
unsigned rill__conn_wq_iov(const rill_conn *c, struct iovec *iov, unsigned max);

/* Reading ran short of memory: the held bytes reached the ceiling (rill__slab_hold returned
 * true), or a read found no buffer (rill__conn_starved). Starts the grace period after which, if
 * reading still cannot go on, the connections stalled longest are closed (conn_mem.c). */
void rill__conn_mem_short(rill_loop *l);

/* Hands quiet migrating connections to their target loops (migrate.c). */
void rill__conn_migrate_ready(rill_loop *l);
/* Frees a connection slot without callbacks (its socket was handed over); conn.c. */
void rill__conn_release_slot(rill_conn *c);

/* Engine internals used by the loop side (engine.c). */
int rill__engine_push(struct rill_engine *e, uint32_t index, rill_post_fn fn, void *arg);

/* Listeners: closes every open listener of the loop (teardown and an engine's drain). */
void rill__listeners_close_all(rill_loop *l);

static inline bool rill__conn_can_read(const rill_conn *c)
{
    return !(c->state & (RILL__C_RD_PAUSED | RILL__C_RD_STARVED | RILL__C_RD_EOF |
                         RILL__C_CLOSING | RILL__C_CONNECTING | RILL__C_MIGRATING));
}

/* The write queue's sendable head when it is one plain span (no descriptors due, not urgent, no
 * entry behind it): the backend can send it with send(2), without a msghdr. NULL otherwise. */
static inline const struct iovec *rill__conn_wq_one(const rill_conn *c)
{
    const struct rill__wq_entry *e = c->wq_head;
    if (e->next || e->cur + 1 != e->niov || (e->nfds && !e->fds_sent) || e->urgent)
        return NULL;
    return &e->iov[e->cur];
}

/* Bytes the connection holds in memory for its peer (against the loop's ceiling): its write
 * queue without the file bytes, and data held for a paused reader. */
static inline size_t rill__conn_mem_held(const rill_conn *c)
{
    return c->wq_bytes - c->wq_file_bytes + c->held_bytes;
}

/* The write queue's head when it is a file send (rill_send_file): *fd, *off and *len say what
 * sendfile(2) or a splice should send next; the backend reports it with rill__conn_file_sent.
 * False when the head is not a file (or the queue is empty). */
static inline bool rill__conn_wq_file(const rill_conn *c, int *fd, uint64_t *off, size_t *len)
{
    const struct rill__wq_entry *e = c->wq_head;
    if (!e || !e->file)
        return false;
    *fd = e->file_fd;
    *off = e->file_off;
    *len = e->file_left;
    return true;
}

/* The connection has bytes to send (again): on the flush list for the send downcall. Inline:
 * every send marks its connection. A backend with a send in flight (or waiting for the socket)
 * ignores the downcall and marks the connection again when it can go on. */
static inline void rill__conn_mark_flush(rill_conn *c)
{
    if (c->state & (RILL__C_CLOSING | RILL__C_CONNECTING))
        return;
    if (c == c->loop->send_turn) { /* the backend sends when the turn ends: no list */
        c->state |= RILL__C_SEND_DUE;
        return;
    }
    if (!rill__list_linked(&c->flush_link)) {
        rill__list_push_back(&c->loop->flush_list, &c->flush_link);
        rill__loop_pending(c->loop, RILL__KIND_CONN);
    }
}

#include "upcall.h"

#endif
