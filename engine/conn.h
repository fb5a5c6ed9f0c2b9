/* Stream connections and listeners (internal): state shared by conn.c, listener.c and backends. */
#ifndef RILL_CONN_H
#define RILL_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "loop.h"

#define RILL__CONN_CHUNK 256u   /* connections per chunk of the slot table */
#define RILL__MAX_IOV 64u       /* iovecs handed to one sendmsg/readv */
#define RILL__SEND_IOV 8u       /* iovecs in one io_uring send (the rest follow on completion) */
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
    RILL__C_RD_READY = 1u << 5,   /* readiness backend: unread data may be waiting */
    RILL__C_WR_BLOCKED = 1u << 6, /* readiness backend: a short write, waiting for EPOLLOUT */
    RILL__C_WR_INFLIGHT = 1u << 7,/* completion backend: a send is in flight */
    RILL__C_SHUT_WANTED = 1u << 8,/* rill_shutdown: FIN once the queue is empty */
    RILL__C_SHUT_DONE = 1u << 9,  /* FIN sent */
    RILL__C_HIGH = 1u << 10,      /* passed the high-water mark; on_drain due below low */
    RILL__C_CLOSING = 1u << 11,   /* close started; on_close pending */
    RILL__C_CLOSED = 1u << 12,    /* on_close has run */
    RILL__C_CLOSE_AFTER_WQ = 1u << 13, /* close (status 0) once the queue is empty */
    RILL__C_MIGRATING = 1u << 15, /* rill_conn_migrate: quiescing before the hand-over */
    RILL__C_RD_HUP = 1u << 14,    /* readiness backend: the peer's FIN or an error was signalled,
                                   * so a short read no longer proves the queue is drained */
};

/* One queued send: the caller's iovecs (copied) or slab buffer slices (referenced). */
struct rill__wq_entry {
    struct rill__wq_entry *next;
    int *fds;           /* rill_send_ex: our duplicates of the descriptors to pass, or NULL */
    void *cmsg;         /* ... and their SCM_RIGHTS control message (with fds, one block) */
    uint32_t nfds;
    bool fds_sent;      /* the control message went out with the entry's first bytes */
    bool urgent;        /* RILL_SEND_F_URGENT: sent alone with MSG_OOB */
    rill_send_cb cb;
    void *ctx;
    size_t total;       /* bytes in the entry */
    uint32_t niov;      /* iovecs in iov[] */
    uint32_t cur;       /* first iovec not fully sent */
    uint32_t cap;       /* iovecs the entry can hold (for recycling) */
    bool bufs;          /* iov[i] points into bufs[i] (rill_send_bufs) */
    struct iovec *iov;  /* points just past the struct */
    struct rill_buf **buf; /* when bufs: one reference per iovec, else NULL */
};

/* A message-mode receive in flight on a completion backend: the kernel writes into all of it. */
struct rill__msg_rx {
    struct msghdr m;
    struct iovec iov;
    struct rill_buf *buf;
    union {
        char b[CMSG_SPACE(253 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
};

struct rill_conn {
    rill_loop *loop;
    int fd;
    uint32_t state;
    uint32_t slot;
    uint32_t gen;
    uint32_t inflight; /* completion-backend operations not yet completed */
    int close_status;
    int family, socktype;  /* AF_INET/AF_INET6/AF_UNIX; SOCK_STREAM or SOCK_SEQPACKET */
    /* Receive with recvmsg into one whole buffer (seqpacket: a message each) and, when the
     * handler takes descriptors, with room for SCM_RIGHTS. */
    bool rx_msg;
    bool urg_pending;      /* urgent data was signalled but its byte has not arrived yet */
    bool urg_armed;        /* completion backend: a multishot poll for POLLPRI is in flight */

    struct rill_conn_handler h;
    void *ctx;
    struct rill_conn_options opts;

    /* Write queue: a singly-linked FIFO with a tail pointer; head->cur/iov trimmed as sent. */
    struct rill__wq_entry *wq_head, *wq_tail;
    size_t wq_bytes;

    /* Idle or connect timeout. Re-armed lazily: I/O only refreshes last_io. */
    struct rill__tnode timer;
    uint64_t last_io;

    struct rill__list flush_link; /* on l->flush_list */
    struct rill__list read_link;  /* on l->read_list or l->starve_list */
    struct rill__list close_link; /* on l->close_list */
    int wq_status;                /* what queued sends get when the connection dies */
    struct rill_conn *next_free;

    /* Completion backend state. A send in flight points the kernel at siov/smsg until its
     * completion; data that arrived after the embedder paused reading waits on held_* (linked
     * through rill_buf.next_free, lengths in rill_buf.len) until rill_read_resume(). */
    struct msghdr smsg;
    struct iovec siov[RILL__SEND_IOV];
    struct rill_buf *held_head, *held_tail;
    bool held_eof;    /* end of stream arrived while paused */
    bool recv_armed;  /* a multishot receive is in flight */
    void *creq;       /* connect request memory, until the connect completes */
    /* rx_msg on the completion backend: the one-shot recvmsg's state, allocated on first use so
     * that the plain TCP connection stays small. */
    struct rill__msg_rx *mrx;

    /* rill_conn_migrate: where to and whom to tell (on l->migrate_list, through read_link's
     * sibling migrate_link, until quiet). */
    struct rill__list migrate_link;
    uint32_t mig_target;
    rill_migrate_cb mig_cb;
    void *mig_arg;
};

struct rill_listener {
    rill_loop *loop;
    int fd;
    int socktype;   /* SOCK_STREAM or SOCK_SEQPACKET */
    uint32_t flags;
    bool paused;    /* resting after EMFILE/ENFILE */
    bool ready;     /* readiness backend: a connection may be waiting */
    bool closed;
    bool registered; /* readiness backend: the descriptor is in the interest set */
    bool unlink_path; /* a Unix socket file this listener created: removed at close */
    struct rill_conn_handler h;
    void *ctx;
    struct rill_conn_options opts;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct rill__tnode retry;  /* accept retry after EMFILE */
    struct rill__list link;    /* on l->listeners, or on l->dead_listeners once closed */
    struct rill__list work;    /* on l->accept_list */
    uint32_t id;               /* cookie identity: the listener's serial number on this loop */
};

/* Message-mode receives (rx_msg): the buffer size to lease, the control room to offer, and the
 * hand-over of one received message: descriptors first, then the bytes. Returns false when the
 * connection failed (a message longer than msg_max: -EMSGSIZE). */
size_t rill__conn_rx_size(const rill_conn *c);
#define RILL__FD_CMSG_SPACE sizeof(((struct rill__msg_rx *)0)->ctl)
bool rill__conn_on_msg(rill_conn *c, struct rill_buf *buf, size_t len, const struct msghdr *m);

/* Builds the next sendmsg from the write queue: iovecs (at most max), the control message of
 * descriptors due with them, and MSG_OOB for an urgent send. Returns the iovec count. */
unsigned rill__conn_wq_msg(rill_conn *c, struct msghdr *m, struct iovec *iov, unsigned max,
                           int *flags);

/* Urgent data was signalled (EPOLLPRI / POLLPRI): read the byte and call on_urgent. */
void rill__conn_read_urgent(rill_conn *c);

/* Connection slot table. */
int rill__conn_alloc(rill_loop *l, rill_conn **out);
rill_conn *rill__conn_lookup(rill_loop *l, uint32_t slot, uint32_t gen);
void rill__conn_pool_fini(rill_loop *l);

/* Options with 0s replaced by defaults; -EINVAL for unknown flags. */
int rill__conn_options_resolve(const struct rill_conn_options *in, struct rill_conn_options *out);
/* Per-socket set-up of a new connection (TCP_NODELAY unless turned off). */
int rill__conn_setup_socket(rill_loop *l, int fd, int family, const struct rill_conn_options *o);
/* Wraps an accepted, non-blocking socket in a connection and registers it with the backend; the
 * caller then calls rill__conn_opened(). On failure fd is left to the caller. */
int rill__conn_accepted(rill_loop *l, int fd, int family, int socktype,
                        const struct rill_conn_handler *h, void *ctx,
                        const struct rill_conn_options *opts, rill_conn **out);

/* Called by backends. */
void rill__conn_opened(rill_conn *c);
/* Like opened, without on_open: a connection that moved here from another loop. */
void rill__conn_adopted(rill_conn *c);
void rill__conn_on_data(rill_conn *c, struct rill_buf *buf, size_t len);
void rill__conn_on_eof(rill_conn *c);
/* Delivers data (and an end of stream) held while reading was paused; returns true when nothing
 * is held any more. */
bool rill__conn_deliver_held(rill_conn *c);
void rill__conn_fail(rill_conn *c, int status);
/* The write queue (conn_send.c). Backends: the kernel took n bytes from the head; completes
 * entries in order with their callbacks and checks the water marks. */
void rill__conn_sent(rill_conn *c, size_t n);
/* Gathers up to max iovecs from the head for one send. */
unsigned rill__conn_wq_iov(const rill_conn *c, struct iovec *iov, unsigned max);
/* Runs on_drain below the low water mark, and a wanted half-close (or a close that waited for
 * the queue) once the queue is empty. */
void rill__conn_check_drained(rill_conn *c);
/* Fails every queued send with status; used once the connection is closing. */
void rill__conn_wq_cancel_all(rill_conn *c, int status);
void rill__conn_starved(rill_conn *c);
void rill__conn_mark_flush(rill_conn *c);
void rill__conn_mark_read(rill_conn *c); /* more to read: continue next iteration */
void rill__conn_put(rill_conn *c);
/* Completion backends: a send completed on a closing connection; its on_close may run now. */
void rill__conn_close_ready(rill_conn *c);

/* Completion backends count every operation they start on a connection, and end it when its
 * last completion (the one without IORING_CQE_F_MORE) arrives; the slot is reused only at 0. */
static inline void rill__conn_op_start(rill_conn *c)
{
    c->inflight++;
    c->loop->inflight++;
}

static inline void rill__conn_op_end(rill_conn *c)
{
    c->inflight--;
    c->loop->inflight--;
    rill__conn_put(c);
}

static inline bool rill__conn_can_read(const rill_conn *c)
{
    return !(c->state & (RILL__C_RD_PAUSED | RILL__C_RD_STARVED | RILL__C_RD_EOF |
                         RILL__C_CLOSING | RILL__C_CONNECTING | RILL__C_MIGRATING));
}

/* Accepting a socket: wraps fd in a connection of the listener and starts it (or closes fd). */
void rill__listener_on_accept(rill_listener *ls, int fd);
/* An accept error: EMFILE/ENFILE pause accepting and retry on a timer; others are counted. */
void rill__listener_on_accept_error(rill_listener *ls, int err);
/* Stops accepting for RILL__EMFILE_RETRY_MS; the retry timer (or a freed descriptor) restarts. */
void rill__listener_rest(rill_listener *ls);
rill_listener *rill__listener_lookup(rill_loop *l, uint32_t id);
/* Frees listeners closed during this iteration (events may name them until then). */
void rill__listeners_reap(rill_loop *l);
/* A descriptor was freed on this loop: listeners resting after EMFILE may try again now. */
void rill__listeners_fd_freed(rill_loop *l);

/* Hands quiet migrating connections to their target loops (migrate.c). */
void rill__conn_migrate_ready(rill_loop *l);
/* Frees a connection slot without callbacks (its socket was handed over); conn.c. */
void rill__conn_release_slot(rill_conn *c);

/* Engine internals used by the loop side (engine.c). */
int rill__engine_push(struct rill_engine *e, uint32_t index, rill_post_fn fn, void *arg);

/* Flush point work, in loop.c order. */
void rill__conn_flush_all(rill_loop *l);
void rill__conn_close_all_due(rill_loop *l);
/* Lets at most `max` starved connections try to receive again. */
void rill__conn_retry_starved(rill_loop *l, uint32_t max);
void rill__loop_close_everything(rill_loop *l);

#endif
