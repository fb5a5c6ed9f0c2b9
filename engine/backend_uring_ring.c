/* The io_uring backend's provided buffer ring for connections (see backend_uring.c for the
 * backend as a whole): one ring per loop (buffer group BGID) of recv_buf_size buffers leased
 * from the slab, lent to every plain connection's multishot recv, topped up at the flush point.
 * Datagram sockets have rings of their own (backend_uring_dgram.c). */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#include "conn.h"
#include "uring.h"

#ifdef RILL_HAVE_LIBURING

#define BGID 0              /* the loop's buffer group; datagram sockets' groups come after */

#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2 /* io_uring_buf_reg.flags (the old "pad"), Linux 6.12 */
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4)
#endif
#define BR_MAX_TARGET 512u  /* buffers kept in the ring at most */
#define RX_MAX (256u << 10) /* bytes one bundle takes at most: the epoll backend's largest read */

/* Receive size. A connection that keeps the socket full should take few, large receives, and
 * one that reads little should hold little: the epoll backend gets both by sizing each read's
 * one buffer. Here the kernel picks the buffers, and a multishot recv cannot change its
 * buffer group while armed: moving a bulk connection to a ring of larger buffers means
 * cancelling and re-arming it, and by the time its first full completion is reaped the kernel
 * has already posted up to 33 of them (it retries a multishot recv 32 times per run while the
 * socket has data: 1 MiB on loopback came as 65 completions of 16 KiB over two enters).
 *
 * Bundles answer it without that race (Linux 6.10): one receive fills as many buffers of the
 * ring as the socket has bytes for, consecutive entries from the ring's head, and its one
 * completion names the first. So the receive size adapts per receive, in the kernel, to what
 * is queued: a small message takes one buffer, a bulk burst takes many in one completion, and
 * every buffer stays recv_buf_size, so no second ring of large buffers is held for bulk
 * connections and none has to be taken back from one that went quiet. sqe->len caps what one
 * completion takes at RX_MAX (the epoll backend's largest read; one buffer if that is larger):
 * one bulk connection cannot drain the ring in one completion, and the kernel requeues a
 * multishot recv that reached its cap behind the others instead of retrying it at once.
 * Kernels that have bundles but not the cap (it came in 2025) refuse the length with EINVAL;
 * the loop then arms without it (u_on_recv). Without bundles (before 6.10) every completion
 * is one buffer, as it always was. */
static void br_size_rx(struct uring_loop *u)
{
    /* Never below one buffer's length: a cap shorter than the first buffer would cut that
     * buffer's entry short, and some kernels write the shortened length back into the ring. */
    uint32_t cls = rill__slab_class_of(u->base.cfg.recv_buf_size);
    size_t one = (size_t)1 << (cls + RILL__SLAB_MIN_SHIFT);
    u->rx_bundle = (u->ring.features & IORING_FEAT_RECVSEND_BUNDLE) != 0 &&
                   !(u->base.cfg.disable & RILL_CAP_RECV_BUNDLE);
    u->rx_cap = u->rx_bundle ? (uint32_t)(one > RX_MAX ? one : RX_MAX) : 0;
}

int rill__uring_br_init(struct uring_loop *u, const char **why)
{
    rill_loop *l = &u->base;
    uint64_t budget_bufs = l->cfg.slab_budget / l->cfg.recv_buf_size;
    uint32_t target = (uint32_t)(budget_bufs / 2 ? budget_bufs / 2 : 1);
    if (target > BR_MAX_TARGET)
        target = BR_MAX_TARGET;
    uint32_t entries = 1;
    while (entries < target)
        entries <<= 1;
    u->br_entries = entries;
    u->br_target = target;
    u->br_bytes = entries * sizeof(struct io_uring_buf);
    u->br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    u->br_bufs = rill__calloc(entries, sizeof *u->br_bufs);
    u->br_off = rill__calloc(entries, sizeof *u->br_off);
    if (u->br == MAP_FAILED || !u->br_bufs || !u->br_off) {
        if (u->br == MAP_FAILED)
            u->br = NULL;
        *why = "buffer ring memory";
        return -ENOMEM;
    }
    io_uring_buf_ring_init(u->br);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)u->br,
                                   .ring_entries = entries,
                                   .bgid = BGID};
    /* Incremental consumption first: a kernel without it (before 6.12) refuses the flag with
     * EINVAL, and the ring is registered again without. */
    int r = -EINVAL;
    if (!(l->cfg.disable & RILL_CAP_BUF_RING_INC)) {
        reg.pad = IOU_PBUF_RING_INC;
        r = io_uring_register_buf_ring(&u->ring, &reg, 0);
        u->br_inc = r == 0;
    }
    if (r == -EINVAL) {
        reg.pad = 0;
        r = io_uring_register_buf_ring(&u->ring, &reg, 0);
    }
    if (r < 0) {
        *why = "provided buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19)";
        munmap(u->br, u->br_bytes);
        u->br = NULL;
        return r == -EINVAL ? -EOPNOTSUPP : r;
    }
    /* Consumed incrementally, a buffer holds many receives (256 of 64 bytes at 16 KiB), and the
     * ring's pages are written densely: a quarter of the buffers offers the kernel the same
     * room for bulk data in flight without keeping 512 mostly idle buffers resident. */
    if (u->br_inc && u->br_target / 4 >= 16)
        u->br_target /= 4;
    br_size_rx(u);
    return 0;
}

/* Tops the ring up from the slab, at the flush point. A buffer's id is the index of the ring
 * entry it is added at, so that the buffers of a receive that fills several (a bundle, whose
 * buffers are consecutive entries) have consecutive ids. The entry at the tail is free once the
 * buffer last added there was taken: the kernel consumes entries in ring order and completions
 * are reaped in that order, so it always is while the ring holds fewer than br_entries
 * buffers; if a completion ever came out of order, the refill stops there until it is reaped,
 * rather than overwrite an entry. */
void rill__uring_br_refill(struct uring_loop *u)
{
    rill_loop *l = &u->base;
    int added = 0;
    unsigned mask = (unsigned)io_uring_buf_ring_mask(u->br_entries);
    while (u->br_count < u->br_target) {
        uint16_t bid = (uint16_t)((u->br->tail + added) & mask);
        struct rill_buf *b;
        if (u->br_bufs[bid] || rill__slab_lease_rx(&l->slab, l->cfg.recv_buf_size, &b) < 0)
            break;
        u->br_bufs[bid] = b;
        io_uring_buf_ring_add(u->br, b->data, (unsigned)rill__buf_cap(b), bid, mask, added++);
        u->br_count++;
        l->stats.bufs_in_ring++;
    }
    if (added)
        io_uring_buf_ring_advance(u->br, added);
    /* Connections whose receive ended for want of buffers can go on while the ring has some:
     * whenever it has, not only when this call added them (a retry may have met an empty ring
     * whose refill happened before its ENOBUFS was reaped). At most as many as there are
     * buffers, so a crowd of starved connections does not turn into a storm of ENOBUFS. */
    if (u->br_count > 0)
        rill__conn_retry_starved(l, u->br_count);
}

/* Takes buffer `bid` out of the ring; the caller owns its reference. *len is the length its
 * ring entry offered, which the kernel may have shortened (see rill__uring_br_deliver). NULL
 * if the ring holds no buffer under that id, which would be a bug: the caller stops there. */
static struct rill_buf *br_take(struct uring_loop *u, uint16_t bid, uint32_t *len)
{
    unsigned mask = (unsigned)io_uring_buf_ring_mask(u->br_entries);
    struct rill_buf *b = u->br_bufs[bid & mask];
    if (!b)
        return NULL;
    *len = u->br->bufs[bid & mask].len;
    u->br_bufs[bid & mask] = NULL;
    u->br_count--;
    u->base.stats.bufs_in_ring--;
    return b;
}

/* Takes the buffers of one receive completion out of the ring and, when c is not NULL, hands
 * each one's bytes to the connection in order (a callback that pauses has the rest held, one
 * that closes has them dropped, by conn.c). A bundle's bytes fill consecutive entries from the
 * one the completion names; each entry holds at most what the entry offered, which is the
 * buffer's capacity unless a kernel shortened the first entry of a bundle to the bytes queued
 * then (kernels before that was removed did, and left it short if that receive failed), so
 * the lengths are read back from the entries rather than assumed. The entries are intact:
 * rill__uring_br_refill writes an entry only after its buffer was taken here. */
/* The incremental case of rill__uring_br_deliver. Each receive takes bytes from where the last
 * one left off in its first buffer (br_off), then whole buffers, the last one maybe in part. A
 * buffer leaves the ring when it is used up: every one but the last of a bundle, and the last
 * unless the completion says more will come in it (IORING_CQE_F_BUF_MORE). The kernel advances
 * the ring entry's own address and length as it consumes, so they are not read back here; and
 * a receive of no bytes consumes nothing in this mode, so its buffer stays. */
static void br_deliver_inc(struct uring_loop *u, rill_conn *c, int res, uint32_t cqe_flags)
{
    unsigned mask = (unsigned)io_uring_buf_ring_mask(u->br_entries);
    uint16_t bid = (uint16_t)(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
    size_t left = res > 0 ? (size_t)res : 0;
    bool more = cqe_flags & IORING_CQE_F_BUF_MORE;
    while (left > 0) {
        unsigned i = bid++ & mask;
        struct rill_buf *b = u->br_bufs[i];
        if (!b)
            break;
        uint32_t off = u->br_off[i];
        size_t room = rill__buf_cap(b) - off, n = left < room ? left : room;
        left -= n;
        bool done = left > 0 || !more;
        if (done) { /* out of the ring before the callback, which may end the loop's I/O */
            u->br_bufs[i] = NULL;
            u->br_off[i] = 0;
            u->br_count--;
            u->base.stats.bufs_in_ring--;
        } else {
            u->br_off[i] = off + (uint32_t)n;
        }
        if (c && n > 0)
            rill__conn_recv_at(c, b, off, n);
        if (done)
            rill__buf_put(b);
    }
}

void rill__uring_br_deliver(struct uring_loop *u, rill_conn *c, int res, uint32_t cqe_flags)
{
    if (u->br_inc) {
        br_deliver_inc(u, c, res, cqe_flags);
        return;
    }
    uint16_t bid = (uint16_t)(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
    size_t left = res > 0 ? (size_t)res : 0;
    do {
        uint32_t len;
        struct rill_buf *b = br_take(u, bid++, &len);
        if (!b)
            break;
        size_t n = left < len ? left : len;
        if (n == 0 && left > 0)
            n = left < rill__buf_cap(b) ? left : rill__buf_cap(b); /* never an empty entry */
        if (c && n > 0)
            rill__conn_recv(c, b, (ssize_t)n);
        rill__buf_put(b);
        left -= n;
    } while (left > 0);
}

/* Prepares c's multishot recv on the loop's ring, as a bundle with its cap where the kernel
 * has them (see br_size_rx). */
void rill__uring_prep_recv(struct uring_loop *u, struct io_uring_sqe *sqe, int fd)
{
    io_uring_prep_recv_multishot(sqe, fd, NULL, u->rx_cap, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    if (u->rx_bundle)
        sqe->ioprio |= IORING_RECVSEND_BUNDLE;
}

/* Gives back what the ring holds. No unregister call: a SINGLE_ISSUER ring refuses it from
 * other threads, and the ring's teardown, which comes first, releases the buffer ring. */
void rill__uring_br_fini(struct uring_loop *u)
{
    for (uint32_t i = 0; u->br_bufs && i < u->br_entries; i++)
        if (u->br_bufs[i])
            rill__buf_put(u->br_bufs[i]);
    if (u->br)
        munmap(u->br, u->br_bytes);
    rill__free(u->br_bufs);
    rill__free(u->br_off);
    u->br = NULL;
    u->br_bufs = NULL;
    u->br_off = NULL;
}

#endif /* RILL_HAVE_LIBURING */
