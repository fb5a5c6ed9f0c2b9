/* Zero-copy sends: io_uring SEND_ZC (Linux 6.0) and MSG_ZEROCOPY (TCP 4.14, UDP 5.0).
 *
 * Both hand the kernel references to user pages and tell the sender later when the pages are
 * free again; a buffer is not written or reused before that. Both also say whether the kernel
 * had to copy after all: SEND_ZC in the notification CQE's res (IORING_NOTIF_USAGE_ZC_COPIED,
 * asked for with IORING_SEND_ZC_REPORT_USAGE, Linux 6.2), MSG_ZEROCOPY in the error queue
 * (SO_EE_CODE_ZEROCOPY_COPIED). Over loopback and veth to a local socket the answer is always
 * "copied": the receiving socket cannot keep the sender's pages, so skb_orphan_frags_rx copies
 * them on delivery. The probe reports that count as it comes; it does not hide it. */
#include <errno.h>
#include <time.h> /* before linux/errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "probe.h"
#include "strategies.h"
#include "uring.h"

#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif
#ifndef SO_EE_CODE_ZEROCOPY_COPIED
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif

#define ZC_SLOTS 16

static enum probe_status inet_only(const struct probe_cell *c, char *why, size_t n,
                                   const char *what)
{
    if (probe_transport_is_inet(c->transport))
        return CELL_OK;
    snprintf(why, n, "%s exists for TCP and UDP sockets only, not AF_UNIX", what);
    return CELL_NA;
}

/* ---- MSG_ZEROCOPY -------------------------------------------------------------------------- */

struct mz_state {
    unsigned char *bufs; /* ZC_SLOTS buffers, used in turn */
    uint64_t next_id;    /* the kernel numbers zero-copy sends 0, 1, 2 ... per socket */
    uint64_t completed;
};

static enum probe_status mz_check(const struct probe_cell *c, char *why, size_t n)
{
    return inet_only(c, why, n, "MSG_ZEROCOPY");
}

static int mz_init(struct probe_side *s)
{
    int one = 1;
    if (setsockopt(s->fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof one) < 0) {
        snprintf(s->why, sizeof s->why, "SO_ZEROCOPY: %s", strerror(errno));
        return -errno;
    }
    struct mz_state *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    s->priv = m;
    m->bufs = aligned_alloc(4096, ZC_SLOTS * s->buf_len);
    if (!m->bufs)
        return -ENOMEM;
    memset(m->bufs, 'z', ZC_SLOTS * s->buf_len);
    return 0;
}

static void mz_fini(struct probe_side *s)
{
    struct mz_state *m = s->priv;
    if (m)
        free(m->bufs);
    free(m);
    s->priv = NULL;
}

/* Parses one error-queue message: a range [ee_info, ee_data] of completed sends. */
static void mz_parse(struct probe_side *s, struct mz_state *m, struct msghdr *msg)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
        if (!((cm->cmsg_level == SOL_IP && cm->cmsg_type == IP_RECVERR) ||
              (cm->cmsg_level == SOL_IPV6 && cm->cmsg_type == IPV6_RECVERR)))
            continue;
        struct sock_extended_err ee;
        memcpy(&ee, CMSG_DATA(cm), sizeof ee);
        if (ee.ee_errno != 0 || ee.ee_origin != SO_EE_ORIGIN_ZEROCOPY)
            continue;
        uint64_t n = (uint64_t)(ee.ee_data - ee.ee_info) + 1;
        m->completed += n;
        s->zc.completions += n;
        s->zc.usage_known = true;
        if (ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED)
            s->zc.copied += n;
    }
}

/* Reads completions from the error queue; with block, waits until at least one came. */
static int mz_drain(struct probe_side *s, bool block)
{
    struct mz_state *m = s->priv;
    bool got = false;
    for (;;) {
        union {
            char buf[CMSG_SPACE(sizeof(struct sock_extended_err) + sizeof(struct sockaddr_in6))];
            struct cmsghdr align;
        } control;
        struct msghdr msg = {.msg_control = control.buf, .msg_controllen = sizeof control.buf};
        ssize_t r = PROBE_SYS(s, recvmsg(s->fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT));
        if (r >= 0) {
            mz_parse(s, m, &msg);
            got = true;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        if (!block || got || probe_side_halted(s))
            return 0;
        /* An error queue entry shows as POLLERR, which poll reports without being asked. */
        struct pollfd p = {.fd = s->fd};
        PROBE_SYS(s, poll(&p, 1, 100));
    }
}

static ssize_t mz_send(struct probe_side *s, size_t len)
{
    struct mz_state *m = s->priv;
    bool stream = probe_transport_is_stream(s->cell->transport);
    while (m->next_id - m->completed >= ZC_SLOTS) {
        int r = mz_drain(s, true);
        if (r < 0 || probe_side_halted(s))
            return r;
    }
    unsigned char *p = m->bufs + (m->next_id % ZC_SLOTS) * s->buf_len;
    size_t off = 0;
    while (off < len) {
        if (probe_side_halted(s))
            return 0;
        ssize_t r = PROBE_SYS(s, send(s->fd, p + off, len - off, MSG_ZEROCOPY | MSG_NOSIGNAL));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == ENOBUFS) {
            /* Over the socket's optmem budget for pinned pages: wait for completions. */
            int d = mz_drain(s, true);
            if (d < 0)
                return d;
            continue;
        }
        if (r < 0)
            return -errno;
        m->next_id++;
        s->zc.sends++;
        off += (size_t)r;
        if (!stream)
            break; /* a datagram goes whole or not at all */
    }
    /* Reap in batches of half the slots, so the error queue costs a fraction of a call. */
    if (m->next_id - m->completed >= ZC_SLOTS / 2) {
        int r = mz_drain(s, false);
        if (r < 0)
            return r;
    }
    return (ssize_t)len;
}

static ssize_t mz_recv(struct probe_side *s, size_t len)
{
    bool stream = probe_transport_is_stream(s->cell->transport);
    size_t off = 0;
    do {
        ssize_t r = PROBE_SYS(s, recv(s->fd, s->buf + off, len - off, 0));
        if (r < 0 && errno == EINTR && !probe_side_halted(s))
            continue;
        if (r <= 0)
            return r < 0 ? -errno : 0;
        if (!stream)
            return r;
        off += (size_t)r;
    } while (off < len);
    return (ssize_t)len;
}

/* ---- io_uring SEND_ZC ---------------------------------------------------------------------- */

#ifdef RILL_HAVE_LIBURING

static enum probe_status uz_check(const struct probe_cell *c, char *why, size_t n)
{
    enum probe_status st = inet_only(c, why, n, "SEND_ZC");
    return st == CELL_OK ? ur_check(c, why, n) : st;
}

static int uz_thread_init(struct probe_side *s)
{
    int r = ur_thread_init(s);
    if (r < 0)
        return r;
    struct ur_state *u = s->priv;
    u->zcbuf = aligned_alloc(4096, UR_ZC_SLOTS * s->buf_len);
    if (!u->zcbuf)
        return -ENOMEM;
    memset(u->zcbuf, 'z', UR_ZC_SLOTS * s->buf_len);
    return 0;
}

static void uz_fini(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    unsigned char *zcbuf = u ? u->zcbuf : NULL;
    ur_fini(s); /* the ring goes first: no request may still point at the buffers */
    free(zcbuf);
}

/* A SEND_ZC request posts its result CQE (with IORING_CQE_F_MORE when a notification will
 * follow) and later a notification CQE (IORING_CQE_F_NOTIF) once the pages are released. */
void ur_zc_cqe(struct probe_side *s, const struct io_uring_cqe *cqe)
{
    struct ur_state *u = s->priv;
    unsigned slot = (unsigned)(cqe->user_data >> 8) % UR_ZC_SLOTS;
    if (cqe->flags & IORING_CQE_F_NOTIF) {
        u->zc_busy[slot] = false;
        u->zc_inflight--;
        s->zc.completions++;
        if (u->zc_report) {
            s->zc.usage_known = true;
            if ((uint32_t)cqe->res & IORING_NOTIF_USAGE_ZC_COPIED)
                s->zc.copied++;
        }
        return;
    }
    u->send_done = true;
    u->send_res = cqe->res;
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        u->zc_busy[slot] = false;
        u->zc_inflight--;
    }
}

static int uz_free_slot(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    for (;;) {
        for (unsigned i = 0; i < UR_ZC_SLOTS; i++)
            if (!u->zc_busy[i])
                return (int)i;
        int r = ur_enter(s, 1);
        if (r < 0)
            return r;
        ur_reap(s);
    }
}

static ssize_t uz_send(struct probe_side *s, size_t len)
{
    struct ur_state *u = s->priv;
    bool stream = probe_transport_is_stream(s->cell->transport);
    size_t off = 0;
    int slot = uz_free_slot(s);
    if (slot < 0)
        return slot;
    unsigned char *p = u->zcbuf + (size_t)slot * s->buf_len;
    while (off < len) {
        struct io_uring_sqe *sqe = ur_sqe(s);
        io_uring_prep_send_zc(sqe, s->fd, p + off, len - off, MSG_NOSIGNAL, 0);
        if (u->zc_report)
            sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
        io_uring_sqe_set_data64(sqe, UD_ZC | ((uint64_t)slot << 8));
        u->zc_busy[slot] = true;
        u->zc_inflight++;
        u->send_done = false;
        int r = ur_wait_flag(s, &u->send_done);
        if (r < 0)
            return r;
        if (u->send_res == -EINVAL && u->zc_report) {
            /* Before Linux 6.2 the usage report flag is rejected: go on without it. */
            u->zc_report = false;
            continue;
        }
        if (u->send_res <= 0)
            return u->send_res ? u->send_res : -EPIPE;
        s->zc.sends++;
        off += (size_t)u->send_res;
        if (!stream)
            break; /* a datagram goes whole or not at all */
    }
    return (ssize_t)len;
}

static ssize_t uz_recv(struct probe_side *s, size_t len)
{
    return ur_recv_into(s, s->buf, 0, len);
}

#else

static enum probe_status uz_check(const struct probe_cell *c, char *why, size_t n)
{
    (void)c;
    snprintf(why, n, "rill-probe was built without liburing");
    return CELL_SKIPPED;
}

#endif

const struct probe_strategy probe_strategy_zc[] = {
#ifdef RILL_HAVE_LIBURING
    {.name = "uring-zc", .desc = "io_uring SEND_ZC + recv; counts copied notifications",
     .check = uz_check, .thread_init = uz_thread_init, .fini = uz_fini,
     .send_msg = uz_send, .recv_msg = uz_recv},
#else
    {.name = "uring-zc", .desc = "io_uring SEND_ZC (not built)", .check = uz_check},
#endif
    {.name = "msg-zc", .desc = "send(MSG_ZEROCOPY), completions from the error queue",
     .check = mz_check, .init = mz_init, .fini = mz_fini, .send_msg = mz_send,
     .recv_msg = mz_recv},
};
const unsigned probe_strategy_zc_count = sizeof probe_strategy_zc / sizeof probe_strategy_zc[0];
