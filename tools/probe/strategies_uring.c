/* io_uring strategies: one-shot send/recv (one request per io_uring_enter), multishot recv on a
 * provided-buffer ring (plain, as bundles, or on an incrementally consumed ring), and batched
 * submission (several requests per io_uring_enter).
 *
 * Rings are created on the side's own thread: with IORING_SETUP_SINGLE_ISSUER (Linux 6.0) the
 * creating task is the only one allowed to submit. DEFER_TASKRUN (6.1) runs completions only
 * inside io_uring_enter, so nothing is reaped without an enter that the probe counts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "probe.h"
#include "strategies.h"
#include "uring.h"

#ifdef RILL_HAVE_LIBURING

#define UR_ENTRIES 128
#define UR_BGID 7

#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4) /* sqe->ioprio of a recv, Linux 6.10 */
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2 /* io_uring_buf_reg.flags (the old "pad"), Linux 6.12 */
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif

/* Availability, probed once per process: a ring can be created, and the opcodes exist. */
static int avail = 1; /* 1 unknown, 0 yes, -errno no */
static char avail_why[128];
static bool have_send_zc;

static void probe_kernel(void)
{
    struct io_uring ring;
    int r = io_uring_queue_init(8, &ring, 0);
    if (r < 0) {
        /* ENOSYS: seccomp or no io_uring; EPERM: kernel.io_uring_disabled; ENOMEM: memlock. */
        snprintf(avail_why, sizeof avail_why, "io_uring unavailable: %s", strerror(-r));
        avail = r;
        return;
    }
    struct io_uring_probe *p = io_uring_get_probe_ring(&ring);
    avail = 0;
    if (!p || !io_uring_opcode_supported(p, IORING_OP_SEND) ||
        !io_uring_opcode_supported(p, IORING_OP_RECV)) {
        snprintf(avail_why, sizeof avail_why, "kernel lacks IORING_OP_SEND/RECV (5.6)");
        avail = -EOPNOTSUPP;
    }
    have_send_zc = p && io_uring_opcode_supported(p, IORING_OP_SEND_ZC);
    if (p)
        io_uring_free_probe(p);
    io_uring_queue_exit(&ring);
}

enum probe_status ur_check(const struct probe_cell *c, char *why, size_t n)
{
    if (avail == 1)
        probe_kernel();
    if (avail < 0) {
        snprintf(why, n, "%s", avail_why);
        return CELL_SKIPPED;
    }
    if (strcmp(probe_strategy_get(c->strategy)->name, "uring-zc") == 0 && !have_send_zc) {
        snprintf(why, n, "kernel lacks IORING_OP_SEND_ZC (6.0)");
        return CELL_SKIPPED;
    }
    return CELL_OK;
}

static int ring_create(struct ur_state *u)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, /* 6.1 */
        IORING_SETUP_COOP_TASKRUN,                               /* 5.19 */
        0,
    };
    int r = -EINVAL;
    for (unsigned i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        r = io_uring_queue_init(UR_ENTRIES, &u->ring, tries[i]);
        if (r != -EINVAL)
            break;
    }
    u->ring_ok = r == 0;
    return r;
}

/* Registers a provided-buffer ring (Linux 5.19) of nbufs buffers of buf_sz bytes: each one
 * message long (rounded up to pages); for uring-inc, 64 KiB buffers that many messages share. */
static int bufring_create(struct probe_side *s, struct ur_state *u)
{
    u->nbufs = 32;
    u->buf_sz = (s->cell->size + 4095) & ~(size_t)4095;
    if (u->inc && u->buf_sz < 65536)
        u->buf_sz = 65536;
    u->br_bytes = u->nbufs * sizeof(struct io_uring_buf);
    u->br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->bufs = aligned_alloc(4096, u->nbufs * u->buf_sz);
    if (u->br == MAP_FAILED || !u->bufs) {
        u->br = u->br == MAP_FAILED ? NULL : u->br;
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)u->br, .ring_entries = u->nbufs, .bgid = UR_BGID};
    reg.pad = u->inc ? IOU_PBUF_RING_INC : 0;
    int r = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (r < 0) {
        snprintf(s->why, sizeof s->why, "%s: %s",
                 u->inc ? "incremental buffer ring (IOU_PBUF_RING_INC, 6.12)"
                        : "provided buffer ring (5.19)",
                 strerror(-r));
        return r;
    }
    if (u->bundle && !(u->ring.features & IORING_FEAT_RECVSEND_BUNDLE)) {
        snprintf(s->why, sizeof s->why, "kernel lacks receive bundles (IORING_RECVSEND_BUNDLE, 6.10)");
        return -EOPNOTSUPP;
    }
    io_uring_buf_ring_init(u->br);
    for (unsigned i = 0; i < u->nbufs; i++)
        io_uring_buf_ring_add(u->br, u->bufs + i * u->buf_sz, (unsigned)u->buf_sz,
                              (unsigned short)i, io_uring_buf_ring_mask(u->nbufs), (int)i);
    io_uring_buf_ring_advance(u->br, (int)u->nbufs);
    return 0;
}

int ur_thread_init(struct probe_side *s)
{
    struct ur_state *u = calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    s->priv = u;
    int r = ring_create(u);
    if (r < 0) {
        snprintf(s->why, sizeof s->why, "io_uring_queue_init: %s", strerror(-r));
        return r;
    }
    u->rxbuf = aligned_alloc(4096, s->cell->opts->batch * s->buf_len);
    if (!u->rxbuf)
        return -ENOMEM;
    u->zc_report = true;
    const char *name = probe_strategy_get(s->cell->strategy)->name;
    u->bundle = strcmp(name, "uring-bundle") == 0;
    u->inc = strcmp(name, "uring-inc") == 0;
    if (u->bundle || u->inc || strcmp(name, "uring-mshot") == 0)
        return bufring_create(s, u);
    return 0;
}

void ur_fini(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    if (!u)
        return;
    if (u->ring_ok)
        io_uring_queue_exit(&u->ring);
    if (u->br)
        munmap(u->br, u->br_bytes);
    free(u->bufs);
    free(u->rxbuf);
    free(u);
    s->priv = NULL;
}

struct io_uring_sqe *ur_sqe(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        /* The SQ is full: submit what is there (counted) and take the freed slot. */
        ur_enter(s, 0);
        sqe = io_uring_get_sqe(&u->ring);
    }
    return sqe;
}

int ur_enter(struct probe_side *s, unsigned wait_nr)
{
    struct ur_state *u = s->priv;
    int r = PROBE_SYS(s, io_uring_submit_and_wait(&u->ring, wait_nr));
    if (probe_side_halted(s))
        return -ECANCELED; /* every caller ends its loop on an error */
    if (r == -EINTR || r == -ETIME || r == -EAGAIN || r == -EBUSY)
        return 0;
    return r < 0 ? r : 0;
}

/* Gives the buffers a completion used up back to the ring: one; for a bundle every buffer its
 * bytes filled (consecutive ids, each full but the last); on an incremental ring the buffers
 * its bytes finished, from where the previous piece of the first one ended: all but the last,
 * and the last unless the completion says more will come in it (IORING_CQE_F_BUF_MORE). A
 * receive of no bytes uses nothing up there. */
static void recycle(struct ur_state *u, const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_BUFFER))
        return;
    unsigned mask = (unsigned)io_uring_buf_ring_mask(u->nbufs);
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT, n = 0;
    unsigned done[32];
    if (u->inc) {
        size_t left = cqe->res > 0 ? (size_t)cqe->res : 0;
        for (unsigned b = bid & mask; left > 0 && n < 32; b = (b + 1) & mask) {
            size_t room = u->buf_sz - u->inc_off[b], take = left < room ? left : room;
            left -= take;
            if (left > 0 || !(cqe->flags & IORING_CQE_F_BUF_MORE)) {
                u->inc_off[b] = 0;
                done[n++] = b;
            } else {
                u->inc_off[b] += (uint32_t)take;
            }
        }
    } else {
        unsigned k = u->bundle && cqe->res > 0
                         ? (unsigned)(((size_t)cqe->res + u->buf_sz - 1) / u->buf_sz) : 1;
        for (; n < k && n < 32; n++)
            done[n] = (bid + n) & mask;
    }
    for (unsigned i = 0; i < n; i++)
        io_uring_buf_ring_add(u->br, u->bufs + done[i] * u->buf_sz, (unsigned)u->buf_sz,
                              (unsigned short)done[i], (int)mask, (int)i);
    if (n)
        io_uring_buf_ring_advance(u->br, (int)n);
}

static void mshot_cqe(struct probe_side *s, struct ur_state *u, const struct io_uring_cqe *cqe)
{
    recycle(u, cqe);
    if (!(cqe->flags & IORING_CQE_F_MORE))
        u->mshot_armed = false;
    if (cqe->res > 0) {
        if (probe_transport_is_stream(s->cell->transport))
            u->rx_avail += (uint64_t)cqe->res;
        else
            u->rx_msgs++;
    } else if (cqe->res == 0) {
        u->mshot_eof = true;
    } else if (cqe->res != -ENOBUFS && !u->mshot_err) {
        /* ENOBUFS only means the buffer ring ran dry; re-arming is the answer. */
        u->mshot_err = cqe->res;
    }
}

void ur_reap(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        switch ((unsigned)(cqe->user_data & 0xff)) {
        case UD_SEND:
            u->send_done = true;
            u->send_res = cqe->res;
            u->send_cqes++;
            if (cqe->res > 0)
                u->send_bytes += (uint64_t)cqe->res;
            else if (!u->send_err)
                u->send_err = cqe->res ? cqe->res : -EPIPE;
            if (u->send_pending)
                u->send_pending--;
            break;
        case UD_RECV:
            u->recv_done = true;
            u->recv_res = cqe->res;
            if (cqe->res > 0) {
                u->recv_bytes += (uint64_t)cqe->res;
                u->recv_msgs++;
            } else if (cqe->res == 0)
                u->recv_eof = true;
            else if (!u->recv_err)
                u->recv_err = cqe->res;
            if (u->recv_pending)
                u->recv_pending--;
            break;
        case UD_MSHOT:
            mshot_cqe(s, u, cqe);
            break;
        case UD_ZC:
            ur_zc_cqe(s, cqe);
            break;
        }
        io_uring_cqe_seen(&u->ring, cqe);
    }
}

int ur_wait_flag(struct probe_side *s, const bool *flag)
{
    while (!*flag) {
        int r = ur_enter(s, 1);
        if (r < 0)
            return r;
        ur_reap(s);
    }
    return 0;
}

/* One-shot sends of [off, len) until it is all sent (a stream may take short sends). */
ssize_t ur_send_from(struct probe_side *s, const unsigned char *buf, size_t off, size_t len)
{
    struct ur_state *u = s->priv;
    bool stream = probe_transport_is_stream(s->cell->transport);
    do {
        struct io_uring_sqe *sqe = ur_sqe(s);
        io_uring_prep_send(sqe, s->fd, buf + off, len - off, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, UD_SEND);
        u->send_done = false;
        int r = ur_wait_flag(s, &u->send_done);
        if (r < 0)
            return r;
        if (u->send_res <= 0)
            return u->send_res ? u->send_res : -EPIPE;
        off += (size_t)u->send_res;
    } while (stream && off < len);
    return (ssize_t)len;
}

/* One-shot receives into buf[off, len): a whole message, or 0 at the end of the run. */
ssize_t ur_recv_into(struct probe_side *s, unsigned char *buf, size_t off, size_t len)
{
    struct ur_state *u = s->priv;
    bool stream = probe_transport_is_stream(s->cell->transport);
    do {
        struct io_uring_sqe *sqe = ur_sqe(s);
        io_uring_prep_recv(sqe, s->fd, buf + off, len - off, 0);
        io_uring_sqe_set_data64(sqe, UD_RECV);
        u->recv_done = false;
        int r = ur_wait_flag(s, &u->recv_done);
        if (r < 0)
            return r;
        if (u->recv_res <= 0)
            return u->recv_res;
        if (!stream)
            return u->recv_res;
        off += (size_t)u->recv_res;
    } while (off < len);
    return (ssize_t)len;
}

static ssize_t ur_send(struct probe_side *s, size_t len)
{
    return ur_send_from(s, s->buf, 0, len);
}

static ssize_t ur_recv(struct probe_side *s, size_t len)
{
    return ur_recv_into(s, s->buf, 0, len);
}

/* Multishot recv (Linux 6.0): armed once, it posts a CQE per arrival into a buffer picked
 * from the ring, until it ends (no IORING_CQE_F_MORE) and is re-armed. */
static ssize_t ur_recv_mshot(struct probe_side *s, size_t len)
{
    struct ur_state *u = s->priv;
    bool stream = probe_transport_is_stream(s->cell->transport);
    for (;;) {
        if (stream && u->rx_avail >= len) {
            u->rx_avail -= len;
            return (ssize_t)len;
        }
        if (!stream && u->rx_msgs) {
            u->rx_msgs--;
            return (ssize_t)s->cell->size;
        }
        if (u->mshot_err || u->mshot_eof)
            return u->mshot_err;
        if (!u->mshot_armed) {
            struct io_uring_sqe *sqe = ur_sqe(s);
            io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
            sqe->flags |= IOSQE_BUFFER_SELECT;
            sqe->buf_group = UR_BGID;
            if (u->bundle)
                sqe->ioprio |= IORING_RECVSEND_BUNDLE;
            io_uring_sqe_set_data64(sqe, UD_MSHOT);
            u->mshot_armed = true;
        }
        int r = ur_enter(s, 1);
        if (r < 0)
            return r;
        ur_reap(s);
    }
}

/* Batched ping-pong client: the request's send and the reply's recv go in one enter. */
static void batch_pp_client(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    size_t size = s->cell->size;
    s->cell->deadline_ns = probe_now_ns() + (uint64_t)(s->cell->opts->time_s * 1e9);
    while (!probe_side_should_stop(s)) {
        uint64_t t0 = probe_now_ns();
        struct io_uring_sqe *sqe = ur_sqe(s);
        io_uring_prep_send(sqe, s->fd, s->buf, size, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, UD_SEND);
        sqe = ur_sqe(s);
        io_uring_prep_recv(sqe, s->fd, u->rxbuf, size, 0);
        io_uring_sqe_set_data64(sqe, UD_RECV);
        u->send_done = u->recv_done = false;
        ssize_t r = ur_enter(s, 2);
        ur_reap(s);
        if (r == 0)
            r = ur_wait_flag(s, &u->send_done);
        if (r == 0)
            r = ur_wait_flag(s, &u->recv_done);
        if (r == 0 && u->send_res > 0 && (size_t)u->send_res < size)
            r = ur_send_from(s, s->buf, (size_t)u->send_res, size); /* short send */
        else if (r == 0 && u->send_res <= 0)
            r = u->send_res ? u->send_res : -EPIPE;
        if (r >= 0 && u->recv_res > 0 && (size_t)u->recv_res < size &&
            probe_transport_is_stream(s->cell->transport))
            r = ur_recv_into(s, u->rxbuf, (size_t)u->recv_res, size);
        else if (r >= 0)
            r = u->recv_res;
        if (r <= 0) {
            probe_side_fail(s, r, "batched send+recv");
            break;
        }
        s->cell->lat[s->ops] = probe_now_ns() - t0;
        probe_side_op_done(s, size);
    }
    probe_stream_finish(s);
}

/* Takes one complete request that the pending recv delivered (finishing a short one). */
static ssize_t batch_take_request(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    size_t size = s->cell->size;
    int r = ur_wait_flag(s, &u->recv_done);
    if (r < 0)
        return r;
    if (u->recv_res <= 0)
        return u->recv_res;
    if ((size_t)u->recv_res < size && probe_transport_is_stream(s->cell->transport))
        return ur_recv_into(s, u->rxbuf, (size_t)u->recv_res, size);
    return u->recv_res;
}

/* Batched ping-pong server: the reply's send and the next request's recv go in one enter. */
static void batch_pp_server(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    size_t size = s->cell->size;
    struct io_uring_sqe *sqe = ur_sqe(s);
    io_uring_prep_recv(sqe, s->fd, u->rxbuf, size, 0);
    io_uring_sqe_set_data64(sqe, UD_RECV);
    u->recv_done = false;
    int r = ur_enter(s, 1);
    ur_reap(s);
    while (r == 0 && !probe_side_should_stop(s)) {
        ssize_t n = batch_take_request(s);
        if (n <= 0) {
            probe_side_fail(s, n, "recv");
            break;
        }
        sqe = ur_sqe(s);
        io_uring_prep_send(sqe, s->fd, s->buf, (size_t)n, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, UD_SEND);
        sqe = ur_sqe(s);
        io_uring_prep_recv(sqe, s->fd, u->rxbuf, size, 0);
        io_uring_sqe_set_data64(sqe, UD_RECV);
        u->send_done = u->recv_done = false;
        ssize_t w = ur_enter(s, 2);
        ur_reap(s);
        if (w == 0)
            w = ur_wait_flag(s, &u->send_done);
        if (w == 0 && u->send_res > 0 && u->send_res < n)
            w = ur_send_from(s, s->buf, (size_t)u->send_res, (size_t)n);
        else if (w == 0 && u->send_res <= 0)
            w = u->send_res ? u->send_res : -EPIPE;
        if (w < 0) {
            probe_side_fail(s, w, "send");
            break;
        }
        probe_side_op_done(s, (uint64_t)n);
    }
}

/* Batched stream sender: --batch sends per enter. Several sends in flight on one stream socket
 * may be carried out of order when one has to wait for buffer space; the byte counts stay
 * exact, which is all a throughput figure needs. MSG_WAITALL makes the kernel (5.19+) finish a
 * short send itself instead of completing it short. */
static void batch_stream_tx(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    unsigned batch = s->cell->opts->batch;
    int flags = MSG_NOSIGNAL | (probe_transport_is_stream(s->cell->transport) ? MSG_WAITALL : 0);
    s->cell->deadline_ns = probe_now_ns() + (uint64_t)(s->cell->opts->time_s * 1e9);
    while (!probe_side_should_stop(s)) {
        uint64_t left = s->cell->opts->max_ops - s->ops;
        unsigned n = left < batch ? (unsigned)left : batch;
        for (unsigned i = 0; i < n; i++) {
            struct io_uring_sqe *sqe = ur_sqe(s);
            io_uring_prep_send(sqe, s->fd, s->buf, s->cell->size, flags);
            io_uring_sqe_set_data64(sqe, UD_SEND);
        }
        u->send_pending = n;
        u->send_cqes = 0;
        u->send_bytes = 0;
        int r = ur_enter(s, n);
        ur_reap(s);
        while (r == 0 && u->send_pending) {
            r = ur_enter(s, u->send_pending);
            ur_reap(s);
        }
        if (r < 0 || u->send_err) {
            probe_side_fail(s, r < 0 ? r : u->send_err, "batched send");
            break;
        }
        for (unsigned i = 0; i < u->send_cqes; i++)
            probe_side_op_done(s, 0);
        s->bytes += u->send_bytes;
    }
    probe_stream_finish(s);
}

/* Batched stream receiver: keeps --batch recvs posted and reaps all that completed per enter. */
static void batch_stream_rx(struct probe_side *s)
{
    struct ur_state *u = s->priv;
    unsigned batch = s->cell->opts->batch, slot = 0;
    while (!probe_side_should_stop(s)) {
        while (u->recv_pending < batch && !u->recv_eof) {
            struct io_uring_sqe *sqe = ur_sqe(s);
            io_uring_prep_recv(sqe, s->fd, u->rxbuf + (slot++ % batch) * s->buf_len,
                               s->cell->size, 0);
            io_uring_sqe_set_data64(sqe, UD_RECV);
            u->recv_pending++;
        }
        int r = ur_enter(s, 1);
        ur_reap(s);
        uint64_t got = u->recv_bytes;
        unsigned msgs = u->recv_msgs;
        u->recv_bytes = 0;
        u->recv_msgs = 0;
        if (probe_transport_is_stream(s->cell->transport)) {
            probe_side_rx_account(s, got);
        } else {
            for (unsigned i = 0; i < msgs; i++) /* one datagram per completion */
                probe_side_op_done(s, 0);
            s->bytes += got;
        }
        if (r < 0 || u->recv_err) {
            probe_side_fail(s, r < 0 ? r : u->recv_err, "batched recv");
            break;
        }
        if (u->recv_eof)
            s->eof = true;
    }
}

const struct probe_strategy probe_strategy_uring[] = {
    {.name = "uring", .desc = "io_uring one-shot send/recv, one request per io_uring_enter",
     .check = ur_check, .thread_init = ur_thread_init, .fini = ur_fini,
     .send_msg = ur_send, .recv_msg = ur_recv},
    {.name = "uring-mshot", .desc = "io_uring multishot recv on a provided buffer ring + send",
     .check = ur_check, .thread_init = ur_thread_init, .fini = ur_fini,
     .send_msg = ur_send, .recv_msg = ur_recv_mshot},
    {.name = "uring-bundle",
     .desc = "io_uring multishot recv as bundles: one completion, several ring buffers (6.10)",
     .check = ur_check, .thread_init = ur_thread_init, .fini = ur_fini,
     .send_msg = ur_send, .recv_msg = ur_recv_mshot},
    {.name = "uring-inc",
     .desc = "io_uring multishot recv on an incrementally consumed ring of 64 KiB buffers (6.12)",
     .check = ur_check, .thread_init = ur_thread_init, .fini = ur_fini,
     .send_msg = ur_send, .recv_msg = ur_recv_mshot},
    {.name = "uring-batch", .desc = "io_uring, several requests per io_uring_enter (--batch)",
     .check = ur_check, .thread_init = ur_thread_init, .fini = ur_fini,
     .send_msg = ur_send, .recv_msg = ur_recv, .pp_client = batch_pp_client,
     .pp_server = batch_pp_server, .stream_tx = batch_stream_tx, .stream_rx = batch_stream_rx},
};

#else /* !RILL_HAVE_LIBURING */

static enum probe_status no_uring(const struct probe_cell *c, char *why, size_t n)
{
    (void)c;
    snprintf(why, n, "rill-probe was built without liburing");
    return CELL_SKIPPED;
}

const struct probe_strategy probe_strategy_uring[] = {
    {.name = "uring", .desc = "io_uring one-shot send/recv (not built)", .check = no_uring},
    {.name = "uring-mshot", .desc = "io_uring multishot recv (not built)", .check = no_uring},
    {.name = "uring-bundle", .desc = "io_uring receive bundles (not built)", .check = no_uring},
    {.name = "uring-inc", .desc = "io_uring incremental buffer ring (not built)", .check = no_uring},
    {.name = "uring-batch", .desc = "io_uring batched submission (not built)", .check = no_uring},
};

#endif

const unsigned probe_strategy_uring_count =
    sizeof probe_strategy_uring / sizeof probe_strategy_uring[0];
