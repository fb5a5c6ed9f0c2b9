/* The epoll backend: edge-triggered readiness.
 *
 * Every socket is registered once, with EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, and never
 * modified: there is no epoll_ctl per operation. With edge triggering, EPOLLOUT is only reported
 * when the socket's state changes (the kernel raises a write-space wake-up only after a send hit
 * a full buffer), so keeping it registered costs nothing; the connection acts on it only while
 * EP_WR_BLOCKED says a send came up short. That is "EPOLLOUT armed only after a short
 * write" without the two epoll_ctl calls per short write that arming it for real would cost.
 *
 * Per-handle state lives here, in structs that embed the handle first (ep_conn, ep_dgram,
 * ep_listener): what readiness was seen, whether a send waits for EPOLLOUT.
 *
 * Reads: one slab buffer per read(2), chosen here (the seam leaves the choice of buffer to the
 * backend), so that each message is read, and handed to the connection, once. Its size adapts
 * per connection: a read that fills its offer doubles the next one (up to EP_RX_MAX, one turn's
 * read budget), a read of under a quarter of it halves it again (never below recv_buf_size).
 * A 16 KiB request stream thus settles at 32 KiB offers, each read short of its offer, and a
 * bulk transfer at 256 KiB reads.
 *
 * A read that comes back shorter than its offer proves the kernel's receive queue was empty at
 * that instant, so the EAGAIN read after it is skipped. That holds under edge triggering
 * because of how the two meet: tcp_recvmsg (and unix_stream_read_generic) copy out everything
 * queued up to the offer under the socket lock, so a short count means the queue was drained;
 * bytes that arrive after that call raise a new EPOLLIN edge (ep_poll_callback runs on every
 * wake-up of the socket's wait queue, and the edge-triggered item is re-queued for it), so
 * nothing waits unseen. A Unix stream read also stops after an skb that carried descriptors
 * and before an out-of-band one (unix_stream_read_generic), with more bytes queued behind and
 * no new edge coming for them. So Unix streams are read with recvmsg and a little control room:
 * a read that brought descriptors (to a connection that takes none: they are closed) reads on;
 * and out-of-band data raises EPOLLPRI (Linux 5.15, CONFIG_AF_UNIX_OOB), after which that
 * connection reads on to EAGAIN for good (ep_conn.drained_ok). Other exceptions: the peer's FIN or an error was signalled (EP_RD_HUP),
 * where we read on to see the end of stream; urgent data, where a read stops at the mark; and
 * a read the fault hook cut short, which proves nothing. A connection that used its
 * RILL_READ_BUDGET goes on the loop's read list and continues in the next iteration, so one
 * fast sender cannot starve the others.
 *
 * Event data carries a cookie {op | generation | slot}, never a pointer: an event for a
 * connection that a callback closed earlier in the same batch finds the closing flag, and one
 * for a reused slot finds a different generation. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "backend.h"
#include "conn.h"
#include "cookie.h"
#include "dgram.h"
#include "sys.h"

#define EP_RX_MAX RILL_READ_BUDGET /* the largest receive offer */

struct epoll_loop {
    struct rill_loop base; /* first: recovered with container_of */
    int epfd;
    int wakefd;
    struct epoll_event *events;
    bool pwait2; /* epoll_pwait2 works: waits are timed to the microsecond (Linux 5.11) */
    struct rill__list accept_list; /* listeners with more to accept (budget spent, restarted) */
};

/* Connection readiness, as the edges told it. */
enum {
    EP_RD_READY = 1u << 0,    /* unread data may be waiting */
    EP_RD_HUP = 1u << 1,      /* the peer's FIN or an error was signalled, so a short read no
                               * longer proves the queue is drained */
    EP_WR_BLOCKED = 1u << 2,  /* a short write: waiting for EPOLLOUT */
    EP_URG_PENDING = 1u << 3, /* urgent data was signalled but its byte has not arrived yet */
};

/* A Unix stream read, with room for a control message: *cut says the read may have stopped
 * short at an skb that carried descriptors (see the top of this file); those are closed, as a
 * connection without on_fds never takes them. */
static ssize_t ep_read_unix(struct rill_loop_stats *st, int fd, void *buf, size_t len, bool *cut)
{
    union {
        char b[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {buf, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                       .msg_controllen = sizeof ctl.b};
    ssize_t r = rill__sys_recvmsg(st, fd, &m, MSG_DONTWAIT);
    *cut = r > 0 && (m.msg_controllen || (m.msg_flags & MSG_CTRUNC));
    if (r > 0 && m.msg_controllen)
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
            if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
                for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++)
                    close(((int *)CMSG_DATA(cm))[i]);
    return r;
}

struct ep_conn {
    struct rill_conn c; /* first */
    uint32_t f;         /* EP_* */
    uint32_t rx;        /* the next read's offer in bytes (0: recv_buf_size) */
    bool drained_ok;    /* a short read proves the socket drained (see the top of this file) */
};

struct ep_dgram {
    struct rill_dgram d; /* first */
    bool rd_ready;       /* datagrams may be waiting */
    bool wr_blocked;     /* sendmmsg hit EAGAIN; waiting for EPOLLOUT */
    struct rill_buf **rx_bufs; /* receive buffers leased ahead for the next recvmmsg (batch) */
};

struct ep_listener {
    struct rill_listener ls; /* first */
    bool ready;              /* a connection may be waiting */
    bool registered;         /* the descriptor is in the interest set */
    struct rill__list work;  /* on accept_list */
};

static inline struct epoll_loop *ep_of(rill_loop *l)
{
    return rill__container_of(l, struct epoll_loop, base);
}

static inline struct ep_conn *epc(rill_conn *c)
{
    return rill__container_of(c, struct ep_conn, c);
}

static inline struct ep_dgram *epd(rill_dgram *d)
{
    return rill__container_of(d, struct ep_dgram, d);
}

static inline struct ep_listener *epl(rill_listener *ls)
{
    return rill__container_of(ls, struct ep_listener, ls);
}

/* More to read than one turn's budget: the connection goes on in the next iteration. */
static void ep_mark_read(rill_conn *c)
{
    rill__list_del(&c->read_link);
    rill__list_push_back(&c->loop->read_list, &c->read_link);
}

static int ep_add(rill_loop *l, int fd, uint32_t events, uint64_t cookie)
{
    struct epoll_event ev = {.events = events, .data.u64 = cookie};
    l->stats.sys_ctl++;
    return epoll_ctl(ep_of(l)->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

static void ep_destroy(rill_loop *l)
{
    struct epoll_loop *ep = ep_of(l);
    if (ep->wakefd >= 0)
        close(ep->wakefd);
    if (ep->epfd >= 0)
        close(ep->epfd);
    rill__free(ep->events);
    rill__loop_fini_common(l);
    rill__free_aligned(ep);
}

static int ep_create(const struct rill_loop_config *cfg, rill_loop **out, const char **why)
{
    struct epoll_loop *ep = rill__alloc_aligned(sizeof *ep);
    if (!ep)
        return -ENOMEM;
    ep->epfd = ep->wakefd = -1;
    rill__list_init(&ep->accept_list);
    rill_loop *l = &ep->base;
    l->ops = &rill__backend_epoll;
    int r = rill__loop_init_common(l, cfg);
    if (r < 0) {
        *why = "loop state";
        rill__free_aligned(ep);
        return r;
    }
    ep->events = rill__calloc(cfg->max_events, sizeof *ep->events);
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ep->epfd < 0 || !ep->events) {
        r = ep->events ? -errno : -ENOMEM;
        *why = "epoll_create1";
        goto fail;
    }
    /* Probed before anything is registered: the probe's zero-timeout wait must not take an
     * edge that belongs to the first real wait. Without it timers wait whole milliseconds. */
    ep->pwait2 = rill__sys_epoll_pwait2_probe(ep->epfd);
    ep->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ep->wakefd < 0) {
        r = -errno;
        *why = "eventfd";
        goto fail;
    }
    if ((r = ep_add(l, ep->wakefd, EPOLLIN | EPOLLET, rill__cookie(RILL__OP_WAKE, 0, 0))) < 0) {
        *why = "epoll_ctl(eventfd)";
        goto fail;
    }
    *out = l;
    return 0;
fail:
    ep_destroy(l);
    return r;
}

static uint32_t ep_caps(const rill_loop *l)
{
    (void)l;
    return RILL_CAP_EDGE_TRIGGERED;
}

static void ep_wake(rill_loop *l)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop will wake anyway. */
    ssize_t r = write(ep_of(l)->wakefd, &one, sizeof one);
    (void)r;
}

static int ep_flush(rill_loop *l)
{
    (void)l; /* sends already went out in conn.c's flush walk; nothing is batched here */
    return 0;
}

/* ---- accepting ------------------------------------------------------------------------------ */

static void ep_accept(rill_listener *ls)
{
    rill_loop *l = ls->loop;
    struct ep_listener *el = epl(ls);
    for (unsigned i = 0; i < RILL_ACCEPT_BUDGET; i++) {
        if (ls->closed || ls->paused)
            return;
        int fd = rill__sys_accept(&l->stats, ls->fd, NULL, NULL);
        if (fd >= 0) {
            rill__listener_on_accept(ls, fd);
        } else if (fd == -EAGAIN) {
            el->ready = false;
            return;
        } else if (fd != -EINTR && fd != -ECONNABORTED) {
            rill__listener_on_accept_error(ls, fd);
        }
    }
    /* Budget spent with connections still waiting: continue next iteration. */
    if (!ls->closed && !ls->paused && !rill__list_linked(&el->work))
        rill__list_push_back(&ep_of(l)->accept_list, &el->work);
}

static int ep_listener_start(rill_loop *l, rill_listener *ls)
{
    struct ep_listener *el = epl(ls);
    if (!el->registered) {
        int r = ep_add(l, ls->fd, EPOLLIN | EPOLLET, rill__cookie(RILL__OP_LISTENER, 0, ls->id));
        if (r < 0)
            return r;
        el->registered = true;
    }
    /* Try accepting in the next iteration: after a rest for EMFILE the edge that announced the
     * waiting connections has long passed, and none may come again. */
    el->ready = true;
    if (!rill__list_linked(&el->work))
        rill__list_push_back(&ep_of(l)->accept_list, &el->work);
    return 0;
}

static void ep_listener_close(rill_loop *l, rill_listener *ls)
{
    rill__list_del(&epl(ls)->work);
    rill__sys_close(&l->stats, ls->fd);
    ls->fd = -1;
}

/* ---- connections ---------------------------------------------------------------------------- */

/* What a read's result means for the reading loop, once its bytes have been handed over: true
 * to read again. Data spends the budget (the rest waits on the read list), end of stream and
 * errors end the connection's reading, and EAGAIN waits for the next edge, except an injected
 * one, for which no edge will come. */
static bool read_goes_on(struct ep_conn *e, ssize_t r, bool injected, size_t *budget)
{
    rill_conn *c = &e->c;
    if (r > 0) {
        if (*budget > (size_t)r) {
            *budget -= (size_t)r;
            return true;
        }
        if (rill__conn_can_read(c))
            ep_mark_read(c);
    } else if (r == 0) {
        e->f &= ~EP_RD_READY;
        rill__conn_recv(c, NULL, 0);
    } else if (r == -EAGAIN) {
        if (injected)
            ep_mark_read(c);
        else
            e->f &= ~EP_RD_READY;
    } else if (r == -EINTR) {
        return true;
    } else {
        rill__conn_recv(c, NULL, r);
    }
    return false;
}

/* Message mode (seqpacket, or a Unix stream that takes descriptors): one recvmsg into one
 * whole buffer, with room for SCM_RIGHTS. A short read proves nothing here (each call returns
 * one message), so reading goes on until EAGAIN or the budget. */
static void ep_read_msg(struct ep_conn *e)
{
    rill_conn *c = &e->c;
    rill_loop *l = c->loop;
    size_t budget = RILL_READ_BUDGET;
    union {
        char buf[RILL__FD_CMSG_SPACE];
        struct cmsghdr align;
    } ctl;
    while (rill__conn_can_read(c) && (e->f & EP_RD_READY)) {
        struct rill_buf *b;
        size_t size = rill__conn_rx_size(c);
        if (rill__slab_lease_rx(&l->slab, size, &b) < 0) {
            rill__conn_starved(c);
            return;
        }
        struct iovec iov = {b->data, size};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        if (c->h.on_fds) {
            m.msg_control = ctl.buf;
            m.msg_controllen = sizeof ctl.buf;
        }
        ssize_t r = rill__sys_recvmsg(&l->stats, c->fd, &m, MSG_DONTWAIT);
        bool injected = rill__sys_was_injected(); /* before callbacks make calls of their own */
        bool ok = r <= 0 || rill__conn_on_msg(c, b, (size_t)r, &m);
        rill__buf_put(b);
        if (!ok || !read_goes_on(e, r, injected, &budget))
            return;
    }
}

/* The adaptive offer: see the top of this file. */
static void rx_adapt(struct ep_conn *e, size_t offered, size_t got, size_t floor)
{
    size_t max = floor > EP_RX_MAX ? floor : EP_RX_MAX;
    if (got == offered)
        e->rx = (uint32_t)(offered * 2 <= max ? offered * 2 : max);
    else if (got < offered / 4 && offered / 2 >= floor)
        e->rx = (uint32_t)(offered / 2);
}

static void ep_read(struct ep_conn *e)
{
    rill_conn *c = &e->c;
    rill_loop *l = c->loop;
    size_t budget = RILL_READ_BUDGET, floor = l->cfg.recv_buf_size;
    if (c->rx_msg) {
        ep_read_msg(e);
        return;
    }
    while (rill__conn_can_read(c) && (e->f & EP_RD_READY)) {
        struct rill_buf *b;
        if (rill__slab_lease_rx(&l->slab, e->rx ? e->rx : floor, &b) < 0) {
            /* A large offer the budget cannot give falls back to the configured size. */
            if (!e->rx || rill__slab_lease_rx(&l->slab, floor, &b) < 0) {
                rill__conn_starved(c); /* retried when buffers come back */
                return;
            }
            e->rx = 0;
        }
        size_t offered = rill__buf_cap(b);
        bool cut = false, injected; /* injected: taken before callbacks make calls of their own */
        ssize_t r;
        if (c->family == AF_UNIX) {
            r = ep_read_unix(&l->stats, c->fd, b->data, offered, &cut);
            injected = rill__sys_was_injected();
        } else {
            r = rill__sys_read(&l->stats, c->fd, b->data, offered, &injected);
        }
        if (r <= 0) {
            rill__buf_put(b);
            if (!read_goes_on(e, r, injected, &budget))
                return;
            continue;
        }
        bool more = rill__conn_recv(c, b, r); /* held, in order, if a callback paused */
        rill__buf_put(b);
        if (!injected)
            rx_adapt(e, offered, (size_t)r, floor);
        if ((size_t)r < offered && !injected && !cut && e->drained_ok && !(e->f & EP_RD_HUP)) {
            e->f &= ~EP_RD_READY; /* drained: see the top of this file */
            return;
        }
        if (!more || !read_goes_on(e, r, injected, &budget))
            return;
    }
}

/* What one send's result means: the bytes taken go to the queue (rill__conn_sent), and the
 * result says whether to send again. True while more is queued and the turn's budget lasts;
 * false once the socket is full (a real short send or EAGAIN: wait for the EPOLLOUT edge), the
 * budget is spent (the rest goes next iteration) or the send failed. */
static bool ep_sent(struct ep_conn *e, ssize_t r, size_t want, bool injected, size_t *budget)
{
    rill_conn *c = &e->c;
    if (r >= 0) {
        rill__conn_sent(c, (size_t)r);
        /* A real short send means the socket buffer is full: wait for the EPOLLOUT edge. */
        if ((size_t)r < want && !injected) {
            if (c->wq_head && !(c->state & RILL__C_CLOSING))
                e->f |= EP_WR_BLOCKED;
            return false;
        }
        if (*budget <= (size_t)r) {
            rill__conn_mark_flush(c); /* fairness: the rest goes next iteration */
            return false;
        }
        *budget -= (size_t)r;
        return true;
    }
    if (r == -EAGAIN) {
        if (injected)
            rill__conn_mark_flush(c); /* no edge will come for a fake EAGAIN */
        else
            e->f |= EP_WR_BLOCKED;
        return false;
    }
    if (r != -EINTR) {
        rill__conn_fail(c, (int)r);
        return false;
    }
    return true;
}

/* A file send at the head of the queue: one non-blocking sendfile(2) of up to a whole turn's
 * budget (once started). A short count does not prove the socket full here, as it does for a
 * send: the file may have ended. So the turn goes on, and the next call tells the two apart:
 * EAGAIN (which, like a short send, promises the EPOLLOUT edge), or 0, the file's end before
 * the entry's (rill__conn_file_sent fails the connection then). */
static bool ep_send_file(rill_loop *l, struct ep_conn *e, int fd, uint64_t off, size_t len,
                         size_t *budget)
{
    rill_conn *c = &e->c;
    bool injected;
    /* A whole budget's worth, whatever the turn used already: a file that follows its header
     * is not cut for the header's few bytes (the rest would cost another call next turn). */
    size_t want = len < RILL_WRITE_BUDGET ? len : RILL_WRITE_BUDGET;
    ssize_t r = rill__sys_sendfile(&l->stats, c->fd, fd, off, want, &injected);
    if (r < 0)
        return ep_sent(e, r, want, injected, budget);
    rill__conn_file_sent(c, (size_t)r);
    if (r == 0 || (c->state & RILL__C_CLOSING))
        return false;
    if (*budget <= (size_t)r) {
        rill__conn_mark_flush(c); /* fairness: the rest goes next iteration */
        return false;
    }
    *budget -= (size_t)r;
    return true;
}

static void ep_send(rill_loop *l, rill_conn *c)
{
    struct ep_conn *e = epc(c);
    size_t budget = RILL_WRITE_BUDGET;
    if (e->f & EP_WR_BLOCKED)
        return; /* EPOLLOUT's edge marks it again */
    while (c->wq_head && !(c->state & RILL__C_CLOSING)) {
        size_t want;
        ssize_t r;
        bool injected;
        int ffd;
        uint64_t foff;
        size_t flen;
        if (__builtin_expect(rill__conn_wq_file(c, &ffd, &foff, &flen), 0)) {
            if (!ep_send_file(l, e, ffd, foff, flen, &budget))
                return;
            continue;
        }
        const struct iovec *one = rill__conn_wq_one(c);
        if (one) { /* the common case: send(2), no msghdr */
            want = one->iov_len;
            r = rill__sys_send(&l->stats, c->fd, one->iov_base, want, 0, &injected);
        } else {
            struct iovec iov[RILL__MAX_IOV];
            struct msghdr m;
            int flags;
            unsigned n = rill__conn_wq_msg(c, &m, iov, RILL__MAX_IOV, &flags);
            want = 0;
            for (unsigned i = 0; i < n; i++)
                want += iov[i].iov_len;
            r = rill__sys_sendmsg(&l->stats, c->fd, &m, flags);
            injected = rill__sys_was_injected();
        }
        if (!ep_sent(e, r, want, injected, &budget))
            return;
    }
}

/* Sends what the callbacks of this connection's read just queued, now, instead of at the flush
 * point after every other ready connection has been read. Each connection still makes one send
 * per turn (its callbacks' sends are joined), so this costs no system call; what it changes is
 * when the reply leaves. Replying only at the end of the batch makes server and peer take turns:
 * the peer gets every reply at once, the server finds nothing ready when it next waits, and
 * both sleep and wake each round (measured with 10 Unix connections: 0.4 epoll_wait per read
 * and 17 k context switches a second, against 0.1 and 0.4 k for a server that writes inline,
 * at half its rate). io_uring keeps the flush point: there, deferring is what lets one enter
 * carry every send. */
static void ep_send_now(rill_loop *l, struct ep_conn *e)
{
    rill_conn *c = &e->c;
    l->send_turn = NULL;
    if (!(c->state & RILL__C_SEND_DUE))
        return;
    c->state &= ~RILL__C_SEND_DUE;
    if (c->wq_head && !(e->f & EP_WR_BLOCKED) && !(c->state & RILL__C_CLOSING)) {
        rill__list_del(&c->flush_link);
        const struct iovec *one = rill__conn_wq_one(c);
        if (one) {
            /* The common case, the turn's one reply, sent here without ep_send's loop. What
             * its callbacks queue after it (or what a short send left) goes on in ep_send,
             * whose budget starts after this send. */
            bool injected;
            size_t want = one->iov_len, budget = RILL_WRITE_BUDGET;
            ssize_t r = rill__sys_send(&l->stats, c->fd, one->iov_base, want, 0, &injected);
            if ((size_t)r == want)
                rill__conn_sent(c, want);
            else if (!ep_sent(e, r, want, injected, &budget))
                return;
            if (!c->wq_head || (c->state & RILL__C_CLOSING))
                return;
        }
        ep_send(l, c);
    } else {
        rill__conn_mark_flush(c); /* a shutdown with nothing queued: the flush point sees to it */
    }
}

/* One read turn: the connection's reads, then what their callbacks queued. */
static void ep_turn(rill_loop *l, struct ep_conn *e)
{
    l->send_turn = &e->c;
    ep_read(e);
    ep_send_now(l, e);
}

/* EPOLLPRI (urgent data) only for those who asked: it costs nothing, but says nothing to others. */
static uint32_t conn_events(const rill_conn *c)
{
    uint32_t ev = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    if (c->family == AF_UNIX && c->socktype == SOCK_STREAM)
        ev |= EPOLLPRI; /* out-of-band data: see the top of this file */
    if (c->h.on_urgent && c->family != AF_UNIX)
        ev |= EPOLLPRI;
    return ev;
}

/* A short read proves the socket drained unless the connection takes urgent data (TCP's read
 * stops at the mark); a Unix stream loses the right once it sees out-of-band data. */
static void ep_conn_kind(rill_conn *c)
{
    epc(c)->drained_ok = !c->h.on_urgent;
}

static int ep_conn_start(rill_loop *l, rill_conn *c)
{
    ep_conn_kind(c);
    epc(c)->f |= EP_RD_READY;
    return ep_add(l, c->fd, conn_events(c), rill__cookie(RILL__OP_CONN, c->gen, c->slot));
}

static int ep_conn_connect(rill_loop *l, rill_conn *c, const struct sockaddr *sa, socklen_t len,
                           uint32_t timeout_ms)
{
    (void)timeout_ms; /* conn.c's wheel timer bounds it */
    ep_conn_kind(c);
    int r = rill__sys_connect(&l->stats, c->fd, sa, len);
    if (r < 0 && r != -EINPROGRESS)
        return r;
    /* Registration reports EPOLLOUT once the handshake is done, whether it already finished
     * (loopback often completes inside connect) or not: one path for both. */
    return ep_add(l, c->fd, conn_events(c), rill__cookie(RILL__OP_CONN, c->gen, c->slot));
}

static void ep_recv_pause(rill_loop *l, rill_conn *c)
{
    (void)l;
    (void)c; /* edge-triggered: not reading is enough; EP_RD_READY remembers the pending edge */
}

static void ep_recv_resume(rill_loop *l, rill_conn *c)
{
    (void)l;
    if (epc(c)->f & EP_RD_READY)
        ep_mark_read(c);
}

/* Nothing of a connection is ever in the kernel's hands here: a send completes inside the call. */
static uint32_t ep_conn_busy(const rill_conn *c)
{
    (void)c;
    return 0;
}

static void ep_conn_free(rill_loop *l, rill_conn *c)
{
    (void)l;
    (void)c; /* nothing beyond the slot */
}

static void ep_conn_detach(rill_loop *l, rill_conn *c)
{
    l->stats.sys_ctl++;
    epoll_ctl(ep_of(l)->epfd, EPOLL_CTL_DEL, c->fd, NULL);
}

static void ep_conn_close(rill_loop *l, rill_conn *c)
{
    if (c->fd >= 0)
        rill__sys_close(&l->stats, c->fd); /* also leaves the epoll set */
    c->fd = -1;
}

/* ---- datagram sockets ----------------------------------------------------------------------- */

#define EP_MMSG 64u /* datagrams per recvmmsg / sendmmsg */

/* Reads with recvmmsg into the socket's leased buffers until the kernel queue is empty or the
 * budget is spent. Buffers not filled by one call stay leased for the next. A socket whose
 * buffers cannot be leased (the slab budget is spent) stops reading, and the kernel keeps (or
 * drops, as UDP does) what arrives; it reads again once buffers come back (rill__dgram_starved),
 * because edge triggering gives no new edge for datagrams already queued. */
static void ep_dgram_read(rill_dgram *d)
{
    rill_loop *l = d->loop;
    struct ep_dgram *e = epd(d);
    unsigned budget = RILL_DGRAM_BUDGET;
    unsigned want = d->batch < EP_MMSG ? d->batch : EP_MMSG;
    while (e->rd_ready && !d->closing && budget > 0) {
        struct mmsghdr mm[EP_MMSG];
        struct iovec iov[EP_MMSG];
        struct sockaddr_storage from[EP_MMSG];
        union {
            char b[RILL__DGRAM_CTL];
            struct cmsghdr align;
        } ctl[EP_MMSG];
        unsigned n = 0;
        for (; n < want; n++) {
            if (!e->rx_bufs[n] && rill__slab_lease_rx(&l->slab, d->max_dgram, &e->rx_bufs[n]) < 0)
                break;
            iov[n] = (struct iovec){e->rx_bufs[n]->data, d->max_dgram};
            mm[n].msg_hdr = (struct msghdr){.msg_name = &from[n], .msg_namelen = sizeof from[n],
                                            .msg_iov = &iov[n], .msg_iovlen = 1};
            if (d->gro) {
                mm[n].msg_hdr.msg_control = ctl[n].b;
                mm[n].msg_hdr.msg_controllen = sizeof ctl[n].b;
            }
            mm[n].msg_len = 0;
        }
        if (n == 0) {
            rill__dgram_starved(d); /* read again once buffers come back */
            return;
        }
        int r = rill__sys_recvmmsg(&l->stats, d->fd, mm, n);
        if (r < 0) {
            if (r == -EAGAIN) {
                e->rd_ready = false;
                return;
            }
            budget--;
            if (r != -EINTR)
                rill__dgram_on_error(d, r); /* ICMP errors: reported once, then cleared */
            continue;
        }
        for (int i = 0; i < r; i++) {
            struct rill_buf *b = e->rx_bufs[i];
            e->rx_bufs[i] = NULL;
            struct cmsghdr *cm = d->gro ? CMSG_FIRSTHDR(&mm[i].msg_hdr) : NULL;
            rill__dgram_on_recv(d, b, b->data, mm[i].msg_len, (struct sockaddr *)&from[i],
                                mm[i].msg_hdr.msg_namelen, mm[i].msg_hdr.msg_flags,
                                cm ? rill__dgram_gro_size(cm) : 0);
            rill__buf_put(b);
        }
        /* Keep the unused buffers at the front, where the next call looks first. */
        for (unsigned i = (unsigned)r, j = 0; i < n; i++, j++) {
            e->rx_bufs[j] = e->rx_bufs[i];
            e->rx_bufs[i] = NULL;
        }
        if ((unsigned)r < n)
            e->rd_ready = false; /* the queue is empty: wait for the next edge */
        budget = budget > (unsigned)r ? budget - (unsigned)r : 0;
    }
    if (e->rd_ready && !d->closing && !rill__list_linked(&d->rlink))
        rill__list_push_back(&l->dgram_read, &d->rlink);
}

static void ep_dgram_send(rill_loop *l, rill_dgram *d)
{
    unsigned budget = RILL_DGRAM_BUDGET * 4;
    if (epd(d)->wr_blocked)
        return; /* EPOLLOUT's edge marks it again */
    while (d->tx_head && budget > 0) {
        struct mmsghdr mm[EP_MMSG];
        struct rill__dgram_tx *tx[EP_MMSG];
        unsigned n = 0;
        while (n < EP_MMSG && (tx[n] = rill__dgram_tx_pop(d))) {
            mm[n].msg_hdr = tx[n]->msg;
            mm[n].msg_len = 0;
            n++;
        }
        int r = rill__sys_sendmmsg(&l->stats, d->fd, mm, n);
        unsigned done = r > 0 ? (unsigned)r : 0;
        for (unsigned i = 0; i < done; i++)
            rill__dgram_tx_done(d, tx[i], (int)mm[i].msg_len);
        /* A datagram the kernel refused fails alone; the ones after it go in the next call. */
        if (r < 0 && r != -EAGAIN && r != -EINTR)
            rill__dgram_tx_done(d, tx[done++], r);
        for (unsigned i = n; i > done; i--)
            rill__dgram_tx_unpop(d, tx[i - 1]);
        if (r == -EAGAIN) {
            epd(d)->wr_blocked = true; /* EPOLLOUT's edge brings us back */
            return;
        }
        budget = budget > n ? budget - n : 0;
    }
    if (d->tx_head)
        rill__dgram_mark_flush(d);
}

static int ep_dgram_start(rill_loop *l, rill_dgram *d)
{
    struct ep_dgram *e = epd(d);
    e->rx_bufs = rill__calloc(d->batch, sizeof *e->rx_bufs);
    if (!e->rx_bufs)
        return -ENOMEM;
    e->rd_ready = true;
    return ep_add(l, d->fd, EPOLLIN | EPOLLOUT | EPOLLET, rill__cookie(RILL__OP_DGRAM, 0, d->id));
}

static void ep_dgram_close(rill_loop *l, rill_dgram *d)
{
    if (d->fd >= 0)
        rill__sys_close(&l->stats, d->fd);
    d->fd = -1;
}

static uint32_t ep_dgram_busy(const rill_dgram *d)
{
    (void)d;
    return 0; /* sendmmsg and recvmmsg complete inside the call */
}

static void ep_dgram_free(rill_loop *l, rill_dgram *d)
{
    (void)l;
    struct ep_dgram *e = epd(d);
    for (uint32_t i = 0; e->rx_bufs && i < d->batch; i++)
        if (e->rx_bufs[i])
            rill__buf_put(e->rx_bufs[i]);
    rill__free(e->rx_bufs);
    e->rx_bufs = NULL;
}

static void ep_dgram_event(rill_loop *l, uint32_t id, uint32_t ev)
{
    rill_dgram *d = rill__dgram_lookup(l, id);
    if (!d || d->closing) {
        l->stats.stale_completions++;
        return;
    }
    struct ep_dgram *e = epd(d);
    if (ev & (EPOLLIN | EPOLLERR)) {
        e->rd_ready = true;
        rill__list_del(&d->rlink);
        ep_dgram_read(d);
    }
    if ((ev & (EPOLLOUT | EPOLLERR)) && e->wr_blocked) {
        e->wr_blocked = false;
        rill__dgram_mark_flush(d);
    }
}

/* ---- watched descriptors -------------------------------------------------------------------- */

/* EPOLLET like every other registration here; a MOD re-reports what is ready already. */
static int ep_watch(rill_loop *l, struct rill__watch *w, uint32_t events)
{
    if (!w->events && !events)
        return 0;
    int op = !w->events ? EPOLL_CTL_ADD : events ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
    uint32_t gen = events ? rill__watch_next_gen(l) : 0;
    struct epoll_event ev = {
        .events = EPOLLET | ((events & RILL__WATCH_IN) ? EPOLLIN | EPOLLRDHUP : 0) |
                  ((events & RILL__WATCH_OUT) ? EPOLLOUT : 0),
        .data.u64 = rill__cookie(RILL__OP_WATCH, gen, w->id)};
    l->stats.sys_ctl++;
    int r = epoll_ctl(ep_of(l)->epfd, op, w->fd, &ev) < 0 ? -errno : 0;
    if (r < 0 && op != EPOLL_CTL_DEL)
        return r;
    w->events = events;
    w->gen = gen;
    return 0;
}

static void ep_watch_event(rill_loop *l, uint64_t ck, uint32_t ev)
{
    struct rill__watch *w = rill__watch_lookup(l, rill__cookie_slot(ck), rill__cookie_gen(ck));
    if (!w) {
        l->stats.stale_completions++;
        return;
    }
    uint32_t bits = ((ev & (EPOLLIN | EPOLLRDHUP)) ? RILL__WATCH_IN : 0) |
                    ((ev & EPOLLOUT) ? RILL__WATCH_OUT : 0) |
                    ((ev & (EPOLLERR | EPOLLHUP)) ? RILL__WATCH_ERR : 0);
    w->fn(w, bits);
}

/* ---- dispatch ------------------------------------------------------------------------------- */

static void ep_connected(struct ep_conn *e)
{
    rill_conn *c = &e->c;
    int err = 0;
    socklen_t len = sizeof err;
    int r = rill__sys_getsockopt(&c->loop->stats, c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (r < 0 || err) {
        rill__conn_fail(c, r < 0 ? r : -err);
        return;
    }
    e->f |= EP_RD_READY;
    rill__conn_opened(c);
}

/* Every event but the common one: a connect finishing, urgent or out-of-band data, the peer's
 * FIN or an error, EPOLLOUT after a short send. Returns true when the connection takes a read
 * turn now (then it is off the read list). Out of line, so that the common event's path stays
 * short. */
static __attribute__((noinline)) bool ep_conn_event_slow(struct ep_conn *e, uint32_t ev)
{
    rill_conn *c = &e->c;
    if (c->state & RILL__C_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return false;
        ep_connected(e);
        if (c->state & RILL__C_CLOSING)
            return false;
    }
    if ((ev & EPOLLPRI) && c->family == AF_UNIX) {
        e->drained_ok = false; /* out-of-band data: reads stop short before it from now on */
    } else if ((ev & EPOLLPRI) || ((e->f & EP_URG_PENDING) && (ev & EPOLLIN))) {
        e->f &= ~EP_URG_PENDING;
        if (rill__conn_read_urgent(c))
            e->f |= EP_URG_PENDING;
    }
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        e->f |= EP_RD_HUP;
    /* Writable again: sends resume (from the read turn's send, or else the flush point). This
     * comes before the turn, so an EPOLLOUT that was reported before the turn's own send never
     * clears a block that send may set. */
    if ((ev & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && (e->f & EP_WR_BLOCKED)) {
        e->f &= ~EP_WR_BLOCKED;
        rill__conn_mark_flush(c);
    }
    if (!(ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return false;
    e->f |= EP_RD_READY;
    if (!(c->state & RILL__C_RD_STARVED))
        rill__list_del(&c->read_link); /* read now, not again from the read list */
    return true;
}

static void ep_conn_event(rill_loop *l, uint64_t cookie, uint32_t ev)
{
    rill_conn *c = rill__conn_lookup(l, rill__cookie_slot(cookie), rill__cookie_gen(cookie));
    if (!c || (c->state & RILL__C_CLOSING)) {
        l->stats.stale_completions++;
        return;
    }
    struct ep_conn *e = epc(c);
    /* The common event: data on a connected socket with nothing unusual pending (EPOLLOUT rides
     * along: an edge reports the whole current mask, and a socket is writable nearly always).
     * It does what ep_conn_event_slow does for it, with one test instead of eight. */
    if ((ev & ~(uint32_t)EPOLLOUT) == EPOLLIN && !(e->f & (EP_URG_PENDING | EP_WR_BLOCKED)) &&
        !(c->state & (RILL__C_CONNECTING | RILL__C_RD_STARVED))) {
        e->f |= EP_RD_READY;
        rill__list_del(&c->read_link); /* read now, not again from the read list */
    } else if (!ep_conn_event_slow(e, ev)) {
        return;
    }
    ep_turn(l, e);
}

static int ep_poll(rill_loop *l, int64_t timeout_us)
{
    struct epoll_loop *ep = ep_of(l);
    struct rill__list reads, accepts, dreads, *n;
    rill__list_take(&l->read_list, &reads);
    rill__list_take(&l->dgram_read, &dreads);
    rill__list_take(&ep->accept_list, &accepts);
    /* Work carried over from the last iteration is done after this wait: don't block. */
    if (!rill__list_empty(&reads) || !rill__list_empty(&dreads) || !rill__list_empty(&accepts))
        timeout_us = 0;

    l->stats.sys_poll++;
    int got = rill__sys_epoll_wait_us(ep->epfd, ep->events, (int)l->cfg.max_events, timeout_us,
                                      &ep->pwait2);
    if (got < 0) {
        if (got != -EINTR)
            return got;
        got = 0;
    }
    rill__loop_update_time(l);
    for (int i = 0; i < got; i++) {
        uint64_t ck = ep->events[i].data.u64;
        switch (rill__cookie_op(ck)) {
        case RILL__OP_CONN:
            ep_conn_event(l, ck, ep->events[i].events);
            break;
        case RILL__OP_LISTENER: {
            rill_listener *ls = rill__listener_lookup(l, rill__cookie_slot(ck));
            if (!ls) {
                l->stats.stale_completions++;
                break;
            }
            epl(ls)->ready = true;
            rill__list_del(&epl(ls)->work);
            ep_accept(ls);
            break;
        }
        case RILL__OP_DGRAM:
            ep_dgram_event(l, rill__cookie_slot(ck), ep->events[i].events);
            break;
        case RILL__OP_WATCH:
            ep_watch_event(l, ck, ep->events[i].events);
            break;
        case RILL__OP_WAKE: {
            uint64_t v;
            ssize_t r = read(ep->wakefd, &v, sizeof v);
            (void)r;
            (void)atomic_exchange(&l->wake_pending, false);
            break;
        }
        default:
            break;
        }
    }
    /* Work carried over from the previous iteration (budgets spent, EMFILE retries). */
    int extra = 0;
    while ((n = rill__list_pop_front(&accepts))) {
        struct ep_listener *el = rill__container_of(n, struct ep_listener, work);
        if (el->ready && !el->ls.paused && !el->ls.closed)
            ep_accept(&el->ls);
        extra++;
    }
    while ((n = rill__list_pop_front(&dreads))) {
        ep_dgram_read(rill__container_of(n, rill_dgram, rlink));
        extra++;
    }
    while ((n = rill__list_pop_front(&reads))) {
        rill_conn *c = rill__container_of(n, rill_conn, read_link);
        if (!(c->state & (RILL__C_CLOSING | RILL__C_RD_PAUSED)))
            ep_turn(l, epc(c));
        extra++;
    }
    return got + extra;
}

const struct rill__backend_ops rill__backend_epoll = {
    .name = "epoll",
    .conn_size = sizeof(struct ep_conn),
    .dgram_size = sizeof(struct ep_dgram),
    .listener_size = sizeof(struct ep_listener),
    .create = ep_create,
    .destroy = ep_destroy,
    .caps = ep_caps,
    .poll = ep_poll,
    .flush = ep_flush,
    .wake = ep_wake,
    .listener_start = ep_listener_start,
    .listener_close = ep_listener_close,
    .conn_busy = ep_conn_busy,
    .conn_free = ep_conn_free,
    .conn_start = ep_conn_start,
    .conn_connect = ep_conn_connect,
    .recv_pause = ep_recv_pause,
    .recv_resume = ep_recv_resume,
    .send = ep_send,
    .conn_detach = ep_conn_detach,
    .conn_close = ep_conn_close,
    .dgram_busy = ep_dgram_busy,
    .dgram_start = ep_dgram_start,
    .dgram_send = ep_dgram_send,
    .dgram_close = ep_dgram_close,
    .dgram_free = ep_dgram_free,
    .watch = ep_watch,
};
