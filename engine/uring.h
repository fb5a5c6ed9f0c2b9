/* The io_uring backend's state (internal), shared by backend_uring.c, backend_uring_msg.c and
 * backend_uring_dgram.c: everything io_uring-specific stays in these files. */
#ifndef RILL_URING_H
#define RILL_URING_H

#ifdef RILL_HAVE_LIBURING

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "dgram.h"
#include "loop.h"

/* Newer than liburing 2.3 (values from the kernel's uapi header). Bundles came in Linux 6.10:
 * one receive may fill several buffers of a ring, consecutive entries from its head. */
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif

#define RILL__SEND_IOV 8u          /* iovecs in one send (the rest follow on completion) */
#define RILL__DGRAM_TX_INFLIGHT 64u /* SENDMSGs in flight per datagram socket */

/* A message-mode receive in flight: the kernel writes into all of it. */
struct rill__msg_rx {
    struct msghdr m;
    struct iovec iov;
    struct rill_buf *buf;
    union {
        char b[RILL__FD_CMSG_SPACE];
        struct cmsghdr align;
    } ctl;
};

/* The backend's per-connection state. Every operation started for a connection is counted in
 * inflight and ended when its last completion (the one without IORING_CQE_F_MORE) arrives; the
 * slot is reused only at 0 (u_conn_busy). A send in flight points the kernel at smsg/siov until
 * its completion. */
struct u_conn {
    struct rill_conn c; /* first */
    uint32_t inflight;
    bool send_inflight;
    bool recv_armed;    /* a multishot receive (or message-mode recvmsg) is in flight */
    bool rx_capped;     /* ... and it carried the bundle cap (u->rx_cap) */
    bool urg_armed;     /* a multishot poll for POLLPRI is in flight */
    bool file_poll;     /* a file send waits for POLLOUT (backend_uring_file.c) */
    struct msghdr smsg;
    struct iovec siov[RILL__SEND_IOV];
    void *creq;         /* connect request memory, until the connect completes */
    /* rx_msg: the one-shot recvmsg's state, allocated on first use so that the plain TCP
     * connection stays small. */
    struct rill__msg_rx *mrx;
};

/* The backend's per-socket state: a provided buffer ring of the socket's own, sized for its
 * datagrams (the loop's ring holds stream-sized buffers), and its SENDMSGs in flight, found
 * again on completion by the index their cookies carry. */
struct u_dgram {
    struct rill_dgram d; /* first */
    uint32_t inflight;   /* operations in flight */
    bool recv_armed;     /* a multishot recvmsg is in flight */
    struct rill__dgram_tx *tx_slot[RILL__DGRAM_TX_INFLIGHT];
    uint32_t tx_inflight;
    struct io_uring_buf_ring *br;
    struct rill_buf **br_bufs;
    uint16_t bgid;
    uint32_t br_entries, br_count;
    struct msghdr rmsg;  /* the multishot recvmsg's template (name room, no control) */
};

struct u_listener {
    struct rill_listener ls; /* first */
    bool registered;         /* a multishot accept is armed */
};

static inline struct u_conn *uc(rill_conn *c)
{
    return rill__container_of(c, struct u_conn, c);
}

static inline struct u_dgram *ud(rill_dgram *d)
{
    return rill__container_of(d, struct u_dgram, d);
}

static inline void u_op_start(rill_conn *c)
{
    uc(c)->inflight++;
    c->loop->inflight++;
}

static inline void u_op_end(rill_conn *c)
{
    uc(c)->inflight--;
    c->loop->inflight--;
    rill__conn_put(c);
}

static inline void u_dop_start(rill_dgram *d, uint32_t n)
{
    ud(d)->inflight += n;
    d->loop->inflight += n;
}

static inline void u_dop_end(rill_dgram *d)
{
    ud(d)->inflight--;
    d->loop->inflight--;
    rill__dgram_put(d);
}

/* A read budget spent (urgent mode reads the readiness way): go on in the next iteration. */
static inline void u_mark_read(rill_conn *c)
{
    rill__list_del(&c->read_link);
    rill__list_push_back(&c->loop->read_list, &c->read_link);
}

struct uring_loop {
    struct rill_loop base; /* first: recovered with container_of */
    struct io_uring ring;
    uint32_t caps;
    int wakefd;
    uint64_t wake_val;

    struct io_uring_buf_ring *br; /* the provided buffer ring (page-aligned, mapped) */
    size_t br_bytes;
    uint32_t br_entries, br_target, br_count;
    struct rill_buf **br_bufs; /* buffer id (= the ring entry it was added at) -> slab buffer */
    /* Incremental consumption (IOU_PBUF_RING_INC, Linux 6.12): a buffer stays in the ring while
     * receives take it piece by piece; br_off[id] is where the next piece starts. */
    bool br_inc;
    uint32_t *br_off;
    /* How a connection's multishot recv takes buffers (backend_uring_ring.c says why): rx_bundle,
     * one receive fills as many ring buffers as the socket has bytes for (a bundle,
     * IORING_RECVSEND_BUNDLE, Linux 6.10); rx_cap, the most bytes one completion takes then
     * (sqe->len of a multishot recv, a 2025 kernel addition; 0 once a kernel refused it). */
    bool rx_bundle;
    uint32_t rx_cap;
    bool bound;                /* enabled for the thread that runs the loop */
    bool wake_unarmed;         /* the wake-up read could not be queued yet */
    bool msg_ring;             /* IORING_OP_MSG_RING works (probed; off after a failure) */
    uint64_t msg_sent[16];     /* targets already sent a wake-up in this iteration (bitmap) */
    /* Buffer group ids of datagram sockets' own rings (BGID 0 is the loop's): a counter, and
     * the ids of closed sockets for reuse, so ids stay below 65536 however many come and go. */
    uint16_t bgid_next;
    uint16_t *bgid_free;
    uint32_t bgid_free_n, bgid_free_cap;
};

static inline struct uring_loop *u_of(rill_loop *l)
{
    return rill__container_of(l, struct uring_loop, base);
}

/* Watched descriptors (backend_uring_msg.c): the watch downcall, and a poll's completion. */
int rill__uring_watch(rill_loop *l, struct rill__watch *w, uint32_t events);
void rill__uring_on_watch(struct uring_loop *u, uint64_t ck, int res, uint32_t flags);

/* Returns an SQE, submitting the queue first when it is full (`need` > 1 keeps linked SQEs in
 * one submission), or NULL when there is no room: the caller retries later. */
struct io_uring_sqe *rill__uring_get_sqes(struct uring_loop *u, unsigned need);

/* The loop's buffer ring (backend_uring_ring.c, which says how receives are sized): maps and
 * registers it; tops it up from the slab (the flush point); prepares a connection's multishot
 * recv on it; takes the buffers a receive completion names out of it, handing their bytes to c
 * in order (c NULL: only given back); releases it after the ring's teardown. */
int rill__uring_br_init(struct uring_loop *u, const char **why);
void rill__uring_br_refill(struct uring_loop *u);
void rill__uring_prep_recv(struct uring_loop *u, struct io_uring_sqe *sqe, int fd);
void rill__uring_br_deliver(struct uring_loop *u, rill_conn *c, int res, uint32_t cqe_flags);
void rill__uring_br_fini(struct uring_loop *u);

/* Arms the connection's receive (multishot recv, recvmsg, or the urgent poll), unless it cannot
 * read now or has one armed. */
void rill__uring_arm_recv(struct uring_loop *u, rill_conn *c);

/* Connections that are not plain byte streams (backend_uring_msg.c, which says why each is read
 * the way it is). A connection with on_urgent is read the readiness way. */
static inline bool rill__uring_urgent_mode(const rill_conn *c)
{
    return c->h.on_urgent && c->family != AF_UNIX && !c->rx_msg;
}

/* Message mode: prepares a one-shot recvmsg into the connection's own buffer; false when no
 * memory for it. */
bool rill__uring_prep_recvmsg(struct uring_loop *u, rill_conn *c, struct io_uring_sqe *sqe);
void rill__uring_on_recvmsg(struct uring_loop *u, rill_conn *c, int res);
/* Urgent mode: arms the multishot POLLIN | POLLPRI poll; handles its completions; reads the
 * stream until EAGAIN or the read budget. */
void rill__uring_arm_urgent(struct uring_loop *u, rill_conn *c);
void rill__uring_on_urgent(struct uring_loop *u, rill_conn *c, int res, uint32_t flags);
void rill__uring_read_sync(struct uring_loop *u, rill_conn *c);

/* File sends (backend_uring_file.c): sends the file at the head of the write queue within the
 * turn's budget, arming a POLLOUT poll when the socket is full. Returns true when the head is
 * now memory to send (the caller goes on with it). on_file_poll: that poll's completion. */
bool rill__uring_send_file(struct uring_loop *u, rill_conn *c);
void rill__uring_on_file_poll(rill_conn *c, int res);

/* Datagram sockets (backend_uring_dgram.c): the backend ops, the completions of their
 * operations (RILL__OP_DRECV, DSEND, DCTL), and the flush point's refill and re-arm. */
int rill__ud_start(rill_loop *l, rill_dgram *d);
void rill__ud_send(rill_loop *l, rill_dgram *d);
uint32_t rill__ud_busy(const rill_dgram *d);
void rill__ud_close(rill_loop *l, rill_dgram *d);
void rill__ud_free(rill_loop *l, rill_dgram *d);
void rill__ud_on_cqe(struct uring_loop *u, uint64_t ck, int res, uint32_t flags);
void rill__ud_rearm(struct uring_loop *u);

#endif /* RILL_HAVE_LIBURING */

#endif
