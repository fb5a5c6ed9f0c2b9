/* The io_uring backend: completions instead of readiness.
 *
 * - Accept: one multishot accept per listener, re-armed when the kernel ends it. EMFILE ends it
 *   too; the listener then rests on its retry timer (listener.c) instead of re-arming at once,
 *   so running out of descriptors never spins.
 * - Receive: one multishot recv per connection, with IOSQE_BUFFER_SELECT on a provided buffer
 *   ring fed from the loop's slab (backend_uring_ring.c). Buffers follow data: an idle
 *   connection holds none. Where the kernel has bundles (Linux 6.10) one completion fills as
 *   many buffers as the socket has bytes for, up to 256 KiB, so a bulk transfer takes few
 *   completions and a small message one buffer (backend_uring_ring.c says why bundles rather
 *   than a ring of larger buffers). A buffer leaves the ring when a completion names it and
 *   goes back to the slab when its last reference drops (the embedder may keep one); the ring
 *   is topped up at the flush point. When the ring runs dry the kernel ends the recv with
 *   ENOBUFS: the connection waits on the starve list and is re-armed once buffers come back.
 *   Nothing is lost; the bytes stay in the socket.
 * - Send: send (one iovec) or sendmsg (up to RILL__SEND_IOV) straight from the write queue, one
 *   in flight per connection; a short send continues from the queue on completion. Files
 *   (rill_send_file): backend_uring_file.c.
 * - Connect: IORING_OP_CONNECT linked to a timeout.
 * - Close: cancel everything on the fd, hard-linked to IORING_OP_CLOSE so the descriptor stays
 *   valid until the cancellation has looked it up. Every operation is counted on its connection
 *   (u_op_start/end, in struct u_conn); the slot is reused only after the last completion, so a late
 *   completion can never reach the next connection in that slot, and if one ever carries a stale
 *   generation it is counted and dropped.
 * - Batching: SQEs are prepared all iteration long and submitted at the flush point; poll
 *   submits anything left and waits in the same io_uring_enter, then reaps completions in
 *   batches. Completions the flush point's enter already posted are reaped without entering.
 *   CQ overflow (IORING_FEAT_NODROP) is flushed with another GETEVENTS enter.
 * - Seqpacket, descriptor-taking and urgent-data connections are received differently:
 *   backend_uring_msg.c. Datagram sockets: backend_uring_dgram.c.
 * - Per-handle state (what is armed, in flight, the send's msghdr) is in uring.h's u_conn,
 *   u_dgram and u_listener, which embed the handles first.
 *
 * liburing here is 2.3; newer constants are defined in probe.c behind #ifndef and every opcode
 * is probed there before the backend starts. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <unistd.h>

#include "backend.h"
#include "conn.h"
#include "cookie.h"
#include "dgram.h"
#include "probe.h"
#include "uring.h"
#include "sys.h"

#ifdef RILL_HAVE_LIBURING

#define REAP_BATCH 64u

struct connect_req {
    struct sockaddr_storage ss;
    struct __kernel_timespec ts;
};

/* Nothing is submitted before the loop's thread first runs it (set-up calls only prepare SQEs),
 * because the ring becomes that thread's own when it is enabled. */
static int u_bind(struct uring_loop *u)
{
    if (__builtin_expect(u->bound, 1))
        return 0;
    int r = rill__uring_bind(&u->ring);
    if (r == 0)
        u->bound = true;
    return r;
}

/* Returns an SQE, submitting the queue first when it is full. `need` > 1 keeps linked SQEs in
 * one submission: a link must not straddle two batches. */
struct io_uring_sqe *rill__uring_get_sqes(struct uring_loop *u, unsigned need)
{
    if (io_uring_sq_space_left(&u->ring) < need && u_bind(u) == 0) {
        int r = io_uring_submit(&u->ring);
        u->base.stats.uring_enters++;
        if (r > 0)
            u->base.stats.sqes_submitted += (uint64_t)r;
    }
    /* Still no room (the submit failed, or the loop's thread has not run it yet): the caller
     * retries later or fails the one operation; never a NULL dereference. */
    if (io_uring_sq_space_left(&u->ring) < need)
        return NULL;
    return io_uring_get_sqe(&u->ring);
}

/* ---- life cycle ----------------------------------------------------------------------------- */

static void u_arm_wake(struct uring_loop *u)
{
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
    u->wake_unarmed = !sqe; /* u_flush tries again */
    if (!sqe)
        return;
    io_uring_prep_read(sqe, u->wakefd, &u->wake_val, sizeof u->wake_val, 0);
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_WAKE, 0, 0));
}

static void u_destroy(rill_loop *l)
{
    struct uring_loop *u = u_of(l);
    /* No unregister calls: a SINGLE_ISSUER ring refuses them from other threads, and tearing
     * the ring down releases the buffer ring and the registered fd anyway. */
    if (u->ring.ring_fd >= 0)
        io_uring_queue_exit(&u->ring);
    rill__uring_br_fini(u);
    rill__free(u->bgid_free);
    if (u->wakefd >= 0)
        close(u->wakefd);
    rill__loop_fini_common(l);
    rill__free_aligned(u);
}

static int u_create(const struct rill_loop_config *cfg, rill_loop **out, const char **why)
{
    struct uring_loop *u = rill__alloc_aligned(sizeof *u);
    if (!u)
        return -ENOMEM;
    u->wakefd = -1;
    u->ring.ring_fd = -1;
    rill_loop *l = &u->base;
    l->ops = &rill__backend_uring;
    int r = rill__loop_init_common(l, cfg);
    if (r < 0) {
        *why = "loop state";
        rill__free_aligned(u);
        return r;
    }
    if ((r = rill__uring_setup(&u->ring, cfg->ring_entries, cfg->disable, &u->caps, why)) < 0) {
        u->ring.ring_fd = -1;
        goto fail;
    }
    if ((r = rill__uring_br_init(u, why)) < 0)
        goto fail;
    u->wakefd = eventfd(0, EFD_CLOEXEC);
    if (u->wakefd < 0) {
        r = -errno;
        *why = "eventfd";
        goto fail;
    }
    u_arm_wake(u);
    u->msg_ring = (u->caps & RILL_CAP_MSG_RING) != 0;
    *out = l;
    return 0;
fail:
    u_destroy(l);
    return r;
}

/* What this loop uses now: a cross-ring wake-up that failed once is off for good (u_dispatch). */
static uint32_t u_caps(const rill_loop *l)
{
    struct uring_loop *u = u_of((rill_loop *)l);
    uint32_t caps = u->caps & ~(RILL_CAP_MSG_RING | RILL_CAP_RECV_BUNDLE);
    return caps | (u->msg_ring ? RILL_CAP_MSG_RING : 0) | (u->rx_bundle ? RILL_CAP_RECV_BUNDLE : 0) |
           (u->br_inc ? RILL_CAP_BUF_RING_INC : 0);
}

static int u_post_wake(rill_loop *src, rill_loop *dst)
{
    struct uring_loop *u = u_of(src), *v = u_of(dst);
    uint32_t i = (uint32_t)dst->index;
    if (!u->msg_ring || i >= 64 * 16 || !v->bound)
        return -1;
    /* One wake-up per target per iteration: the target drains its whole mailbox anyway. */
    if (u->msg_sent[i / 64] & (1ull << (i % 64)))
        return 0;
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
    if (!sqe)
        return -1;
    io_uring_prep_msg_ring(sqe, v->ring.ring_fd, 0, rill__cookie(RILL__OP_MSG, 0, 0), 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS; /* the sender hears back only on failure */
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_MSG_FAIL, 0, i));
    u->msg_sent[i / 64] |= 1ull << (i % 64);
    return 0;
}

static void u_wake(rill_loop *l)
{
    uint64_t one = 1;
    ssize_t r = write(u_of(l)->wakefd, &one, sizeof one);
    (void)r; /* EAGAIN: the counter is already non-zero, a wake-up is on its way */
}

static int u_flush(rill_loop *l)
{
    struct uring_loop *u = u_of(l);
    rill__uring_br_refill(u);
    if (!rill__list_empty(&l->dgram_read))
        rill__ud_rearm(u);
    if (u->wake_unarmed)
        u_arm_wake(u);
    memset(u->msg_sent, 0, sizeof u->msg_sent);
    unsigned pending = io_uring_sq_ready(&u->ring);
    if (!pending)
        return 0;
    int b = u_bind(u);
    if (b < 0)
        return b;
    /* Submit and run deferred task work in the same enter: with DEFER_TASKRUN a cancelled
     * request releases its file (and a close takes effect) only inside such an enter. */
    int r = io_uring_submit_and_get_events(&u->ring);
    l->stats.uring_enters++;
    if (r > 0)
        l->stats.sqes_submitted += (uint64_t)r;
    return (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) ? r : 0;
}

/* ---- accepting ------------------------------------------------------------------------------ */

static inline struct u_listener *ul(rill_listener *ls)
{
    return rill__container_of(ls, struct u_listener, ls);
}

static int u_listener_start(rill_loop *l, rill_listener *ls)
{
    struct uring_loop *u = u_of(l);
    if (ul(ls)->registered) /* a multishot accept is armed already */
        return 0;
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
    if (!sqe)
        return -EAGAIN; /* a restart rests and tries again on the retry timer */
    io_uring_prep_multishot_accept(sqe, ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_ACCEPT, 0, ls->id));
    ul(ls)->registered = true;
    return 0;
}

static void u_listener_close(rill_loop *l, rill_listener *ls)
{
    struct uring_loop *u = u_of(l);
    if (ul(ls)->registered && u->bound) {
        /* Cancel now, not at the flush point, so the port is free when this returns: the
         * armed accept holds a reference to the socket until it is cancelled. (Before the
         * loop first ran, the accept was never submitted and fails on the closed fd.) */
        struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
        if (!sqe)
            goto close_fd; /* the accept ends with an error once the fd is gone */
        io_uring_prep_cancel64(sqe, rill__cookie(RILL__OP_ACCEPT, 0, ls->id), 0);
        io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_NONE, 0, 0)); /* not tracked */
        int r = io_uring_submit_and_get_events(&u->ring);
        l->stats.uring_enters++;
        if (r > 0)
            l->stats.sqes_submitted += (uint64_t)r;
    }
close_fd:
    rill__sys_close(&l->stats, ls->fd);
    ls->fd = -1;
}

static void u_on_accept(struct uring_loop *u, uint64_t ck, int res, uint32_t flags)
{
    rill_loop *l = &u->base;
    rill_listener *ls = rill__listener_lookup(l, rill__cookie_slot(ck));
    if (!ls) {
        if (res != -ECANCELED) /* the accept of a closed listener ends with ECANCELED */
            l->stats.stale_completions++;
        if (res >= 0)
            rill__sys_close(&l->stats, res); /* accepted just before the listener closed */
        return;
    }
    l->stats.sys_accept++;
    if (res >= 0)
        rill__listener_on_accept(ls, res);
    else if (res != -ECANCELED && res != -EINTR && res != -ECONNABORTED)
        rill__listener_on_accept_error(ls, res);
    if (flags & IORING_CQE_F_MORE)
        return;
    ul(ls)->registered = false;
    if (ls->closed || ls->paused)
        return; /* the retry timer restarts a resting listener */
    if (res < 0 && res != -ECANCELED && res != -EINTR && res != -ECONNABORTED) {
        rill__listener_rest(ls); /* an unknown error: rest rather than spin re-arming */
        return;
    }
    if (u_listener_start(l, ls) < 0)
        rill__listener_rest(ls);
}

/* ---- connections ---------------------------------------------------------------------------- */

void rill__uring_arm_recv(struct uring_loop *u, rill_conn *c)
{
    if (rill__uring_urgent_mode(c)) {
        rill__uring_arm_urgent(u, c);
        return;
    }
    if (uc(c)->recv_armed || !rill__conn_can_read(c))
        return;
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
    if (!sqe) {
        rill__conn_starved(c); /* retried at a later flush point, like a dry buffer ring */
        return;
    }
    if (c->rx_msg) {
        if (!rill__uring_prep_recvmsg(u, c, sqe)) {
            io_uring_prep_nop(sqe); /* the SQE is taken; make it harmless */
            io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_NONE, 0, 0));
            rill__conn_starved(c);
            return;
        }
    } else {
        rill__uring_prep_recv(u, sqe, c->fd);
        uc(c)->rx_capped = u->rx_cap != 0;
    }
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_RECV, c->gen, c->slot));
    uc(c)->recv_armed = true;
    u_op_start(c);
}

static int u_conn_start(rill_loop *l, rill_conn *c)
{
    rill__uring_arm_recv(u_of(l), c);
    return 0;
}

static int u_conn_connect(rill_loop *l, rill_conn *c, const struct sockaddr *sa, socklen_t len,
                          uint32_t timeout_ms)
{
    struct uring_loop *u = u_of(l);
    struct connect_req *cr = rill__calloc(1, sizeof *cr);
    if (!cr)
        return -ENOMEM;
    /* The kernel reads the address and the timeout when the SQEs are submitted, at the flush
     * point, after rill_connect() has returned: they must live on the heap until then. */
    memcpy(&cr->ss, sa, len);
    cr->ts.tv_sec = timeout_ms / 1000;
    cr->ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
    uc(c)->creq = cr;
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, timeout_ms ? 2 : 1);
    if (!sqe) {
        rill__free(cr);
        uc(c)->creq = NULL;
        return -EAGAIN; /* reported through on_close */
    }
    io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&cr->ss, len);
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_CONNECT, c->gen, c->slot));
    u_op_start(c);
    if (timeout_ms) {
        sqe->flags |= IOSQE_IO_LINK;
        sqe = io_uring_get_sqe(&u->ring);
        io_uring_prep_link_timeout(sqe, &cr->ts, 0);
        io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_TIMEOUT, c->gen, c->slot));
        u_op_start(c);
    }
    l->stats.sys_connect++;
    return 0;
}

static void u_recv_pause(rill_loop *l, rill_conn *c)
{
    struct uring_loop *u = u_of(l);
    if (uc(c)->urg_armed) {
        struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
        if (sqe) {
            io_uring_prep_cancel64(sqe, rill__cookie(RILL__OP_URGENT, c->gen, c->slot), 0);
            io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_CANCEL, c->gen, c->slot));
            u_op_start(c);
        }
    }
    if (!uc(c)->recv_armed)
        return;
    /* Completions already on their way still arrive; conn data for a paused connection is held
     * (u_on_recv) and delivered on resume, so "no on_data while paused" holds. */
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
    if (!sqe)
        return; /* the receive stays armed; what it brings is held until resume */
    io_uring_prep_cancel64(sqe, rill__cookie(RILL__OP_RECV, c->gen, c->slot), 0);
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_CANCEL, c->gen, c->slot));
    u_op_start(c);
}

static void u_recv_resume(rill_loop *l, rill_conn *c)
{
    if (rill__uring_urgent_mode(c) && uc(c)->urg_armed)
        rill__uring_read_sync(u_of(l), c); /* the poll's edge has passed: read what waits */
    else
        rill__uring_arm_recv(u_of(l), c);
}

/* Fault injection for tests: the hook may fail the send (EINTR, EAGAIN) or shorten it, as it
 * does for the readiness backend's sendmsg. A real error it injects fails the connection. */
static int inject_send(rill_conn *c, unsigned *n)
{
    size_t want = 0, len;
    for (unsigned i = 0; i < *n; i++)
        want += uc(c)->siov[i].iov_len;
    len = want;
    int e = rill__sys_inject(RILL__SYS_SENDMSG, c->fd, &len);
    if (e == -EINTR || e == -EAGAIN)
        return e;
    if (e < 0) {
        rill__conn_fail(c, e);
        return e;
    }
    for (unsigned i = 0; i < *n && len < want; i++) {
        if (uc(c)->siov[i].iov_len >= len) {
            uc(c)->siov[i].iov_len = len;
            *n = i + 1;
            break;
        }
        len -= uc(c)->siov[i].iov_len;
    }
    return 0;
}

static void u_send(rill_loop *l, rill_conn *c)
{
    struct uring_loop *u = u_of(l);
    if (uc(c)->send_inflight || uc(c)->file_poll || (c->state & RILL__C_CLOSING))
        return; /* its completion marks the connection again */
    int ffd;
    uint64_t foff;
    size_t flen;
    if (__builtin_expect(rill__conn_wq_file(c, &ffd, &foff, &flen), 0) &&
        !rill__uring_send_file(u, c))
        return;
    int flags;
    unsigned n = rill__conn_wq_msg(c, &uc(c)->smsg, uc(c)->siov, RILL__SEND_IOV, &flags);
    if (n == 0)
        return;
    if (__builtin_expect(inject_send(c, &n) < 0, 0)) {
        rill__conn_mark_flush(c); /* a pretended EINTR/EAGAIN: try again next iteration */
        return;
    }
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
    if (!sqe) {
        rill__conn_mark_flush(c); /* next iteration */
        return;
    }
    if (n == 1 && !uc(c)->smsg.msg_controllen && !flags) {
        io_uring_prep_send(sqe, c->fd, uc(c)->siov[0].iov_base, uc(c)->siov[0].iov_len, MSG_NOSIGNAL);
    } else {
        uc(c)->smsg.msg_iovlen = n; /* inject_send may have cut it */
        io_uring_prep_sendmsg(sqe, c->fd, &uc(c)->smsg, MSG_NOSIGNAL | flags);
    }
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_SEND, c->gen, c->slot));
    uc(c)->send_inflight = true;
    u_op_start(c);
    l->stats.sys_write++;
}

static uint32_t u_conn_busy(const rill_conn *c)
{
    const struct u_conn *x = rill__container_of(c, struct u_conn, c);
    return (x->send_inflight ? RILL__BUSY_SEND : 0) | (x->inflight ? RILL__BUSY_OPS : 0);
}

static void u_conn_free(rill_loop *l, rill_conn *c)
{
    (void)l;
    struct u_conn *x = uc(c);
    if (x->mrx) {
        if (x->mrx->buf)
            rill__buf_put(x->mrx->buf);
        rill__free(x->mrx);
        x->mrx = NULL;
    }
}

static void u_conn_detach(rill_loop *l, rill_conn *c)
{
    (void)l;
    (void)c; /* nothing is registered per descriptor, and nothing is in flight by contract */
}

static void u_conn_close(rill_loop *l, rill_conn *c)
{
    struct uring_loop *u = u_of(l);
    if (c->fd < 0)
        return;
    /* Hard link: the close runs whether or not the cancel found anything (-ENOENT). */
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 2);
    if (!sqe) {
        /* No room to cancel: close the descriptor directly. Armed requests keep the socket
         * until they end (the peer's FIN or reset ends a receive), and their completions
         * still arrive and are counted, so the slot is not reused before they do. */
        rill__sys_close(&l->stats, c->fd);
        c->fd = -1;
        return;
    }
    io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
    sqe->flags |= IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_CANCEL, c->gen, c->slot));
    u_op_start(c);
    sqe = io_uring_get_sqe(&u->ring);
    io_uring_prep_close(sqe, c->fd);
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_CLOSE, c->gen, c->slot));
    u_op_start(c);
    l->stats.sys_other++;
    c->fd = -1;
}

/* ---- completions ---------------------------------------------------------------------------- */

static void u_on_recv(struct uring_loop *u, rill_conn *c, int res, uint32_t flags)
{
    rill_loop *l = &u->base;
    if (c->rx_msg && !(flags & IORING_CQE_F_BUFFER)) {
        rill__uring_on_recvmsg(u, c, res);
        return;
    }
    bool more = flags & IORING_CQE_F_MORE;
    if (!more)
        uc(c)->recv_armed = false;
    l->stats.sys_read++;
    if (res > 0 && (flags & IORING_CQE_F_BUFFER)) {
        rill__uring_br_deliver(u, c, res, flags); /* held if paused: completions already sent */
    } else if (res == 0) {
        rill__conn_recv(c, NULL, 0);
    } else if (res == -ENOBUFS) {
        l->stats.buf_ring_empty++;
        if (!(c->state & (RILL__C_CLOSING | RILL__C_RD_PAUSED)))
            rill__conn_starved(c);
    } else if (res == -EINVAL && uc(c)->rx_capped && !more) {
        /* A kernel without the bundle cap (backend_uring_ring.c) refuses it: every receive armed
         * with it before the first refusal was reaped comes back so, and each is re-armed
         * below without it. */
        u->rx_cap = 0;
    } else if (res < 0 && res != -ECANCELED) {
        rill__conn_recv(c, NULL, res);
    }
    if (res <= 0 && (flags & IORING_CQE_F_BUFFER))
        rill__uring_br_deliver(u, NULL, res, flags); /* never seen: a buffer, no bytes */
    if (!more) {
        rill__uring_arm_recv(u, c); /* no-op unless the connection can still read */
        u_op_end(c);
    }
}

static void u_on_send(rill_conn *c, int res)
{
    uc(c)->send_inflight = false;
    if (c->state & RILL__C_CLOSING) {
        rill__conn_close_ready(c);
    } else if (res >= 0) {
        rill__conn_sent(c, (size_t)res);
        if (c->wq_head)
            rill__conn_mark_flush(c);
    } else {
        rill__conn_fail(c, res);
    }
    u_op_end(c);
}

static void u_on_connect(struct uring_loop *u, rill_conn *c, int res)
{
    rill__free(uc(c)->creq);
    uc(c)->creq = NULL;
    if (!(c->state & RILL__C_CLOSING)) {
        if (res == 0) {
            rill__conn_opened(c);
            rill__uring_arm_recv(u, c);
        } else {
            /* -ECANCELED here means the linked timeout fired first. */
            rill__conn_fail(c, res == -ECANCELED ? -ETIMEDOUT : res);
        }
    }
    u_op_end(c);
}

static void u_on_conn_cqe(struct uring_loop *u, uint64_t ck, int res, uint32_t flags)
{
    rill_loop *l = &u->base;
    rill_conn *c = rill__conn_lookup(l, rill__cookie_slot(ck), rill__cookie_gen(ck));
    if (!c || uc(c)->inflight == 0) {
        /* Never expected, since slots wait for their last completion; if it happens, the
         * completion is dropped and its buffer returned rather than delivered to a stranger. */
        l->stats.stale_completions++;
        if (flags & IORING_CQE_F_BUFFER)
            rill__uring_br_deliver(u, NULL, res, flags);
        return;
    }
    switch (rill__cookie_op(ck)) {
    case RILL__OP_RECV:
        u_on_recv(u, c, res, flags);
        break;
    case RILL__OP_SEND:
        u_on_send(c, res);
        break;
    case RILL__OP_CONNECT:
        u_on_connect(u, c, res);
        break;
    case RILL__OP_URGENT:
        rill__uring_on_urgent(u, c, res, flags);
        break;
    case RILL__OP_FILE_POLL:
        rill__uring_on_file_poll(c, res);
        break;
    default: /* TIMEOUT, CANCEL, CLOSE: bookkeeping only */
        u_op_end(c);
        break;
    }
}

static void u_dispatch(struct uring_loop *u, struct io_uring_cqe *cqe)
{
    uint64_t ck = io_uring_cqe_get_data64(cqe);
    switch (rill__cookie_op(ck)) {
    case RILL__OP_WAKE:
        atomic_store(&u->base.wake_pending, false);
        u_arm_wake(u);
        break;
    case RILL__OP_ACCEPT:
        u_on_accept(u, ck, cqe->res, cqe->flags);
        break;
    case RILL__OP_NONE:
    case RILL__OP_MSG: /* woken by another loop: its mailbox is drained at the flush point */
        break;
    case RILL__OP_MSG_FAIL: {
        /* The kernel refused the cross-ring message: use the eventfd from now on. */
        u->msg_ring = false;
        rill_loop *dst = rill_engine_loop(u->base.engine, rill__cookie_slot(ck));
        if (dst)
            rill_loop_wake(dst);
        break;
    }
    case RILL__OP_DRECV:
    case RILL__OP_DSEND:
    case RILL__OP_DCTL:
        rill__ud_on_cqe(u, ck, cqe->res, cqe->flags);
        break;
    case RILL__OP_WATCH:
        rill__uring_on_watch(u, ck, cqe->res, cqe->flags);
        break;
    default:
        u_on_conn_cqe(u, ck, cqe->res, cqe->flags);
        break;
    }
}

/* A connection on the read list spent its read budget (urgent mode, read the readiness way) or
 * met an injected fault: it goes on reading. */
static void u_read_on(struct uring_loop *u, rill_conn *c)
{
    if (c->state & (RILL__C_CLOSING | RILL__C_RD_PAUSED))
        return;
    if (rill__uring_urgent_mode(c) && uc(c)->urg_armed)
        rill__uring_read_sync(u, c);
    else
        rill__uring_arm_recv(u, c);
}

static int u_reap(struct uring_loop *u)
{
    struct io_uring_cqe *cqes[REAP_BATCH];
    int total = 0;
    for (;;) {
        unsigned n = io_uring_peek_batch_cqe(&u->ring, cqes, REAP_BATCH);
        if (n == 0) {
            /* Completions the CQ had no room for wait in the kernel (NODROP); fetch them. */
            if (!io_uring_cq_has_overflow(&u->ring))
                break;
            io_uring_get_events(&u->ring);
            u->base.stats.uring_enters++;
            continue;
        }
        /* Copy out before dispatching: callbacks may submit, and the CQ slots are released in
         * one step afterwards. */
        struct io_uring_cqe copy[REAP_BATCH];
        for (unsigned i = 0; i < n; i++)
            copy[i] = *cqes[i];
        io_uring_cq_advance(&u->ring, n);
        for (unsigned i = 0; i < n; i++)
            u_dispatch(u, &copy[i]);
        u->base.stats.cqes_reaped += n;
        total += (int)n;
    }
    return total;
}

static int u_poll(rill_loop *l, int64_t timeout_us)
{
    struct uring_loop *u = u_of(l);
    struct rill__list held, *node;
    rill__list_take(&l->read_list, &held);
    /* Work carried over is done after this wait: a read budget spent (held), or a datagram
     * socket whose re-arm found no SQE (l->dgram_read, re-armed at the next flush point). */
    if (!rill__list_empty(&held) || !rill__list_empty(&l->dgram_read))
        timeout_us = 0;

    unsigned pending = io_uring_sq_ready(&u->ring);
    int r = u_bind(u);
    if (r < 0)
        return r;
    if (pending == 0 && io_uring_cq_ready(&u->ring)) {
        /* Completions are posted already, by the enter with GETEVENTS that ended the last
         * flush point (for a send on loopback that is usually its own completion): reap them
         * without entering again. That enter ran the deferred task work too, and this
         * iteration reaps every completion there is, so nothing waits behind the skip. */
        r = 0;
    } else if (timeout_us == 0 || io_uring_cq_ready(&u->ring)) {
        /* With DEFER_TASKRUN completions are only posted when we enter with GETEVENTS. */
        l->stats.sys_poll++;
        l->stats.uring_enters++;
        r = io_uring_submit_and_get_events(&u->ring);
    } else {
        struct io_uring_cqe *cqe;
        /* The wait is timed to the nanosecond: with IORING_FEAT_EXT_ARG (Linux 5.11) liburing
         * passes ts to io_uring_enter itself (IORING_ENTER_EXT_ARG), one system call; on older
         * kernels it queues an IORING_OP_TIMEOUT, which is just as precise. */
        struct __kernel_timespec ts = {.tv_sec = timeout_us / 1000000,
                                       .tv_nsec = (long long)(timeout_us % 1000000) * 1000};
        l->stats.sys_poll++;
        l->stats.uring_enters++;
        r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, timeout_us < 0 ? NULL : &ts, NULL);
    }
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
        return r;
    l->stats.sqes_submitted += pending;
    rill__loop_update_time(l);
    int n = u_reap(u);
    while ((node = rill__list_pop_front(&held))) {
        u_read_on(u, rill__container_of(node, rill_conn, read_link));
        n++;
    }
    return n;
}

const struct rill__backend_ops rill__backend_uring = {
    .name = "io_uring",
    .links_connect_timeout = true,
    .conn_size = sizeof(struct u_conn),
    .dgram_size = sizeof(struct u_dgram),
    .listener_size = sizeof(struct u_listener),
    .create = u_create,
    .destroy = u_destroy,
    .caps = u_caps,
    .poll = u_poll,
    .flush = u_flush,
    .wake = u_wake,
    .post_wake = u_post_wake,
    .listener_start = u_listener_start,
    .listener_close = u_listener_close,
    .conn_busy = u_conn_busy,
    .conn_free = u_conn_free,
    .conn_start = u_conn_start,
    .conn_connect = u_conn_connect,
    .recv_pause = u_recv_pause,
    .recv_resume = u_recv_resume,
    .send = u_send,
    .conn_detach = u_conn_detach,
    .conn_close = u_conn_close,
    .dgram_busy = rill__ud_busy,
    .dgram_start = rill__ud_start,
    .dgram_send = rill__ud_send,
    .dgram_close = rill__ud_close,
    .dgram_free = rill__ud_free,
    .watch = rill__uring_watch,
};

#else /* !RILL_HAVE_LIBURING: the backend exists and says why it cannot start */

static int u_create_missing(const struct rill_loop_config *cfg, rill_loop **out, const char **why)
{
    (void)cfg;
    (void)out;
    *why = "this build has no liburing";
    return -ENOSYS;
}

const struct rill__backend_ops rill__backend_uring = {
    .name = "io_uring",
    .create = u_create_missing,
};

#endif
