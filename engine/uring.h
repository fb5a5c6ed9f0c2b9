/* The io_uring backend's state (internal), shared by backend_uring.c, backend_uring_msg.c and
 * backend_uring_dgram.c: everything io_uring-specific stays in these files. */
#ifndef RILL_URING_H
#define RILL_URING_H

#ifdef RILL_HAVE_LIBURING

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "conn.h"
#include "loop.h"

struct uring_loop {
    struct rill_loop base; /* first: recovered with container_of */
    struct io_uring ring;
    uint32_t caps;
    int wakefd;
    uint64_t wake_val;

    struct io_uring_buf_ring *br; /* the provided buffer ring (page-aligned, mapped) */
    size_t br_bytes;
    uint32_t br_entries, br_target, br_count;
    struct rill_buf **br_bufs; /* buffer id -> the slab buffer it names */
    uint16_t *bid_free;        /* free buffer ids */
    uint32_t bid_free_n;
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

/* Returns an SQE, submitting the queue first when it is full (`need` > 1 keeps linked SQEs in
 * one submission), or NULL when there is no room: the caller retries later. */
struct io_uring_sqe *rill__uring_get_sqes(struct uring_loop *u, unsigned need);

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

/* Datagram sockets (backend_uring_dgram.c): the backend ops, the completions of their
 * operations (RILL__OP_DRECV, DSEND, DCTL), and the flush point's refill and re-arm. */
int rill__ud_start(rill_loop *l, rill_dgram *d);
void rill__ud_send(rill_loop *l, rill_dgram *d);
void rill__ud_close(rill_loop *l, rill_dgram *d);
void rill__ud_free(rill_loop *l, rill_dgram *d);
void rill__ud_on_cqe(struct uring_loop *u, uint64_t ck, int res, uint32_t flags);
void rill__ud_rearm(struct uring_loop *u);

#endif /* RILL_HAVE_LIBURING */

#endif
