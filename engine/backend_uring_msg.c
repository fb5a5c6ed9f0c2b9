/* The io_uring backend's receives for connections that are not plain byte streams (see
 * backend_uring.c for the backend as a whole): message mode (seqpacket, or descriptors wanted)
 * with a one-shot recvmsg into a buffer of the connection's own, and urgent data, read the
 * readiness way. Plain connections never come here. */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "backend.h"
#include "conn.h"
#include "cookie.h"
#include "sys.h"
#include "uring.h"

#ifdef RILL_HAVE_LIBURING

/* Message mode (seqpacket, or descriptors wanted): a one-shot recvmsg into a buffer of the
 * connection's own, because a multishot recv on the loop's ring cannot carry control messages
 * and its stream-sized buffers would cut a long message. */
bool rill__uring_prep_recvmsg(struct uring_loop *u, rill_conn *c, struct io_uring_sqe *sqe)
{
    rill_loop *l = &u->base;
    size_t size = rill__conn_rx_size(c);
    if (!uc(c)->mrx && !(uc(c)->mrx = rill__calloc(1, sizeof *uc(c)->mrx)))
        return false;
    struct rill__msg_rx *x = uc(c)->mrx;
    if (!x->buf && rill__slab_lease_rx(&l->slab, size, &x->buf) < 0)
        return false;
    x->iov = (struct iovec){x->buf->data, size};
    memset(&x->m, 0, sizeof x->m);
    x->m.msg_iov = &x->iov;
    x->m.msg_iovlen = 1;
    if (c->h.on_fds) {
        x->m.msg_control = x->ctl.b;
        x->m.msg_controllen = sizeof x->ctl.b;
    }
    io_uring_prep_recvmsg(sqe, c->fd, &x->m, MSG_CMSG_CLOEXEC);
    return true;
}

/* Urgent data. A TCP receive that passes the urgent mark discards the out-of-line byte, and a
 * multishot recv runs in the kernel as soon as data lands, ahead of any POLLPRI completion we
 * could act on. So a connection that takes urgent data is read the readiness way on this
 * backend: a multishot poll for POLLIN | POLLPRI, and on each completion the urgent byte first
 * (recv MSG_OOB), then the stream with plain reads until EAGAIN, as on epoll. Only connections
 * with on_urgent pay for it.
 *
 * Reads the stream with plain reads until EAGAIN or the read budget. */
void rill__uring_read_sync(struct uring_loop *u, rill_conn *c)
{
    rill_loop *l = &u->base;
    size_t budget = RILL_READ_BUDGET;
    while (rill__conn_can_read(c)) {
        struct rill_buf *b;
        if (rill__slab_lease_rx(&l->slab, l->cfg.recv_buf_size, &b) < 0) {
            rill__conn_starved(c);
            return;
        }
        struct iovec iov = {b->data, rill__buf_cap(b)};
        ssize_t r = rill__sys_readv(&l->stats, c->fd, &iov, 1);
        if (r == -EINTR) {
            rill__buf_put(b);
            continue;
        }
        if (r == -EAGAIN) {
            rill__buf_put(b);
            if (rill__sys_was_injected())
                u_mark_read(c); /* no edge will come for a fake EAGAIN */
            return;
        }
        bool more = rill__conn_recv(c, b, r); /* data, the end of stream, or an error */
        rill__buf_put(b);
        if (r <= 0 || !more)
            return;
        if (budget <= (size_t)r) {
            u_mark_read(c); /* budget spent: the rest next iteration */
            return;
        }
        budget -= (size_t)r;
    }
}

void rill__uring_arm_urgent(struct uring_loop *u, rill_conn *c)
{
    if (uc(c)->urg_armed || !rill__uring_urgent_mode(c) ||
        (c->state & (RILL__C_CLOSING | RILL__C_RD_PAUSED)))
        return;
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
    if (!sqe) {
        rill__conn_starved(c); /* retried at a later flush point */
        return;
    }
    io_uring_prep_poll_multishot(sqe, c->fd, POLLIN | POLLPRI | POLLRDHUP);
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_URGENT, c->gen, c->slot));
    uc(c)->urg_armed = true;
    u_op_start(c);
}

void rill__uring_on_urgent(struct uring_loop *u, rill_conn *c, int res, uint32_t flags)
{
    if (res > 0 && (res & POLLPRI))
        rill__conn_read_urgent(c);
    if (res > 0 && (res & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)))
        rill__uring_read_sync(u, c);
    if (!(flags & IORING_CQE_F_MORE)) {
        uc(c)->urg_armed = false;
        if (res != -ECANCELED)
            rill__uring_arm_urgent(u, c);
        u_op_end(c);
    }
}

void rill__uring_on_recvmsg(struct uring_loop *u, rill_conn *c, int res)
{
    struct rill__msg_rx *x = uc(c)->mrx;
    struct rill_buf *b = x->buf;
    uc(c)->recv_armed = false;
    u->base.stats.sys_read++;
    if (res > 0) {
        x->buf = NULL; /* the next receive leases a fresh one; this one may be kept */
        rill__conn_on_msg(c, b, (size_t)res, &x->m);
        rill__buf_put(b);
    } else if (res != -ECANCELED) {
        rill__conn_recv(c, NULL, res); /* the end of stream, or an error */
    }
    rill__uring_arm_recv(u, c);
    u_op_end(c);
}

#endif /* RILL_HAVE_LIBURING */

/* ---- watched descriptors -------------------------------------------------------------------- */

/* One multishot poll per arming. A change of events removes the old poll (by its cookie) and
 * adds a new one under a new generation, so whatever the old one still posts is stale. Nothing
 * here is counted in the loop's inflight: a poll points the kernel at no memory of ours, and
 * the ring's teardown cancels what is left. */
int rill__uring_watch(rill_loop *l, struct rill__watch *w, uint32_t events)
{
    struct uring_loop *u = u_of(l);
    struct io_uring_sqe *sqe;
    if (w->events) {
        /* No room for the remove: the old poll stays until the ring goes, its reports stale. */
        if ((sqe = rill__uring_get_sqes(u, 1))) {
            io_uring_prep_poll_remove(sqe, rill__cookie(RILL__OP_WATCH, w->gen, w->id));
            io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_NONE, 0, 0));
        }
        w->events = 0;
        w->gen = 0;
    }
    if (!events)
        return 0;
    if (!(sqe = rill__uring_get_sqes(u, 1)))
        return -EBUSY;
    uint32_t gen = rill__watch_next_gen(l);
    unsigned mask = ((events & RILL__WATCH_IN) ? POLLIN | POLLRDHUP : 0) |
                    ((events & RILL__WATCH_OUT) ? POLLOUT : 0);
    io_uring_prep_poll_multishot(sqe, w->fd, mask);
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_WATCH, gen, w->id));
    w->events = events;
    w->gen = gen;
    return 0;
}

void rill__uring_on_watch(struct uring_loop *u, uint64_t ck, int res, uint32_t flags)
{
    rill_loop *l = &u->base;
    struct rill__watch *w = rill__watch_lookup(l, rill__cookie_slot(ck), rill__cookie_gen(ck));
    if (!w) {
        l->stats.stale_completions++;
        return;
    }
    uint32_t bits;
    if (res < 0) {
        bits = RILL__WATCH_ERR; /* the poll itself failed (a closed descriptor): it has ended */
        w->events = 0;
        w->gen = 0;
    } else {
        bits = ((res & (POLLIN | POLLRDHUP)) ? RILL__WATCH_IN : 0) |
               ((res & POLLOUT) ? RILL__WATCH_OUT : 0) |
               ((res & (POLLERR | POLLHUP)) ? RILL__WATCH_ERR : 0);
        if (!(flags & IORING_CQE_F_MORE)) { /* the kernel ended the multishot: arm it again */
            uint32_t ev = w->events;
            w->events = 0;
            if (rill__uring_watch(l, w, ev) < 0)
                bits |= RILL__WATCH_ERR;
        }
    }
    w->fn(w, bits);
}
