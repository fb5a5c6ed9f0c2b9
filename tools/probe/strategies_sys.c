/* The plain system-call strategies: read/write, send/recv, sendmsg/recvmsg with one and with
 * several iovecs, writev/readv, sendmmsg/recvmmsg, and non-blocking send/recv driven by an
 * edge-triggered epoll. Every call that reaches the kernel goes through PROBE_SYS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "probe.h"
#include "strategies.h"

enum sys_kind { K_RW, K_SENDRECV, K_MSG1, K_MSGV, K_RWV };

static ssize_t ret(ssize_t r)
{
    return r < 0 ? -errno : r;
}

static ssize_t msg_call(struct probe_side *s, bool tx, struct iovec *iov, unsigned n)
{
    union {
        char buf[256];
        struct cmsghdr align;
    } control;
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = n};
    if (s->ts_on && !tx) {
        m.msg_control = control.buf;
        m.msg_controllen = sizeof control.buf;
    }
    uint64_t user_send = 0;
    if (s->ts_on && tx && s->is_client)
        user_send = probe_realtime_ns();
    ssize_t r = ret(tx ? PROBE_SYS(s, sendmsg(s->fd, &m, MSG_NOSIGNAL))
                       : PROBE_SYS(s, recvmsg(s->fd, &m, 0)));
    if (s->ts_on && r > 0) {
        if (tx && s->is_client)
            probe_ts_record_send(s, s->ops, user_send);
        else if (!tx && s->is_client)
            probe_ts_collect_tx(s, s->ops); /* the reply is here: the TX stamp is long queued */
        else if (!tx)
            probe_ts_from_cmsg(s, &m, s->ops);
    }
    return r;
}

/* One system call moving the part [off, len) of a message. */
static ssize_t one_call(struct probe_side *s, enum sys_kind k, bool tx, size_t off, size_t len)
{
    void *p = s->buf + off;
    size_t l = len - off;
    struct iovec iov[PROBE_MAX_IOV];
    unsigned n = 1;
    switch (k) {
    case K_RW:
        return ret(tx ? PROBE_SYS(s, write(s->fd, p, l)) : PROBE_SYS(s, read(s->fd, p, l)));
    case K_SENDRECV:
        return ret(tx ? PROBE_SYS(s, send(s->fd, p, l, MSG_NOSIGNAL))
                      : PROBE_SYS(s, recv(s->fd, p, l, 0)));
    case K_MSG1:
        iov[0].iov_base = p;
        iov[0].iov_len = l;
        return msg_call(s, tx, iov, 1);
    case K_MSGV:
        probe_fill_iov(s, off, len, iov, &n);
        return msg_call(s, tx, iov, n);
    case K_RWV:
        probe_fill_iov(s, off, len, iov, &n);
        return ret(tx ? PROBE_SYS(s, writev(s->fd, iov, (int)n))
                      : PROBE_SYS(s, readv(s->fd, iov, (int)n)));
    }
    return -EINVAL;
}

/* The epoll strategy's state: an edge-triggered epoll set holding the one socket, registered
 * once for both directions so that no operation needs an epoll_ctl. */
struct ep_state {
    int epfd;
};

static int ep_wait(struct probe_side *s)
{
    struct ep_state *e = s->priv;
    struct epoll_event ev;
    int r = PROBE_SYS(s, epoll_wait(e->epfd, &ev, 1, -1));
    return r < 0 && errno != EINTR ? -errno : 0;
}

/* Moves one whole message: on a byte stream, loops over short transfers; on a message socket,
 * one call is one message. Returns the length, 0 at the end of the run, or -errno. */
static ssize_t xfer(struct probe_side *s, enum sys_kind k, bool tx, size_t len)
{
    bool stream = probe_transport_is_stream(s->cell->transport);
    size_t off = 0;
    do {
        ssize_t r = one_call(s, k, tx, off, len);
        if (r == -EINTR) {
            if (probe_side_halted(s))
                return 0;
            continue;
        }
        if (r == -EAGAIN && s->priv) {
            int w = ep_wait(s);
            if (w < 0)
                return w;
            if (probe_side_halted(s))
                return 0;
            continue;
        }
        if (r <= 0)
            return r;
        if (!stream)
            return r;
        off += (size_t)r;
    } while (off < len);
    return (ssize_t)len;
}

#define SYS_PAIR(name, kind)                                                                   \
    static ssize_t name##_send(struct probe_side *s, size_t len)                               \
    {                                                                                          \
        return xfer(s, kind, true, len);                                                       \
    }                                                                                          \
    static ssize_t name##_recv(struct probe_side *s, size_t len)                               \
    {                                                                                          \
        return xfer(s, kind, false, len);                                                      \
    }

SYS_PAIR(rw, K_RW)
SYS_PAIR(sr, K_SENDRECV)
SYS_PAIR(msg1, K_MSG1)
SYS_PAIR(msgv, K_MSGV)
SYS_PAIR(rwv, K_RWV)

static int ep_init(struct probe_side *s)
{
    struct ep_state *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    s->priv = e;
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET};
    if (e->epfd < 0 || epoll_ctl(e->epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
        snprintf(s->why, sizeof s->why, "epoll: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

static void ep_fini(struct probe_side *s)
{
    struct ep_state *e = s->priv;
    if (e && e->epfd >= 0)
        close(e->epfd);
    free(e);
    s->priv = NULL;
}

/* sendmmsg/recvmmsg: up to --batch datagrams per call, in stream mode only (with one message in
 * flight a batch call degenerates to sendmsg). */
static void mmsg_tx(struct probe_side *s)
{
    unsigned batch = s->cell->opts->batch;
    struct mmsghdr msgs[PROBE_MAX_BATCH];
    struct iovec iov = {.iov_base = s->buf, .iov_len = s->cell->size};
    memset(msgs, 0, sizeof msgs);
    for (unsigned i = 0; i < batch; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    s->cell->deadline_ns = probe_now_ns() + (uint64_t)(s->cell->opts->time_s * 1e9);
    while (!probe_side_should_stop(s)) {
        uint64_t left = s->cell->opts->max_ops - s->ops;
        unsigned n = left < batch ? (unsigned)left : batch;
        int r = PROBE_SYS(s, sendmmsg(s->fd, msgs, n, MSG_NOSIGNAL));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            s->err = r < 0 ? -errno : -EIO;
            snprintf(s->why, sizeof s->why, "sendmmsg: %s", strerror(-s->err));
            break;
        }
        for (int i = 0; i < r; i++)
            probe_side_op_done(s, msgs[i].msg_len);
    }
    probe_stream_finish(s);
}

static void mmsg_rx(struct probe_side *s)
{
    unsigned batch = s->cell->opts->batch;
    struct mmsghdr msgs[PROBE_MAX_BATCH];
    struct iovec iov = {.iov_base = s->buf, .iov_len = s->cell->size};
    memset(msgs, 0, sizeof msgs);
    for (unsigned i = 0; i < batch; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    while (!probe_side_should_stop(s)) {
        /* MSG_WAITFORONE: block for the first datagram only, then take what is queued. */
        int r = PROBE_SYS(s, recvmmsg(s->fd, msgs, batch, MSG_WAITFORONE, NULL));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            s->err = -errno;
            snprintf(s->why, sizeof s->why, "recvmmsg: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < r && !s->eof; i++) {
            if (msgs[i].msg_len == 0)
                s->eof = true;
            else
                probe_side_op_done(s, msgs[i].msg_len);
        }
        if (r == 0)
            s->eof = true;
    }
}

const struct probe_strategy probe_strategy_sys[] = {
    {.name = "rw-block", .desc = "read/write on blocking sockets (the B0 floor)",
     .send_msg = rw_send, .recv_msg = rw_recv},
    {.name = "sendrecv-block", .desc = "send/recv on blocking sockets",
     .send_msg = sr_send, .recv_msg = sr_recv},
    {.name = "msg1-block", .desc = "sendmsg/recvmsg, 1 iovec (carries --timestamps)",
     .flags = STRAT_TIMESTAMPS, .send_msg = msg1_send, .recv_msg = msg1_recv},
    {.name = "msgv-block", .desc = "sendmsg/recvmsg, --iov iovecs per message",
     .send_msg = msgv_send, .recv_msg = msgv_recv},
    {.name = "rwv-block", .desc = "writev/readv, --iov iovecs per message",
     .send_msg = rwv_send, .recv_msg = rwv_recv},
    {.name = "mmsg-block", .desc = "sendmmsg/recvmmsg, --batch datagrams per call",
     .flags = STRAT_DGRAM_ONLY | STRAT_NO_PINGPONG, .stream_tx = mmsg_tx, .stream_rx = mmsg_rx},
    {.name = "sendrecv-epoll", .desc = "non-blocking send/recv, edge-triggered epoll on EAGAIN",
     .flags = STRAT_NONBLOCK, .init = ep_init, .fini = ep_fini,
     .send_msg = sr_send, .recv_msg = sr_recv},
};
const unsigned probe_strategy_sys_count = sizeof probe_strategy_sys / sizeof probe_strategy_sys[0];
