/* The io_uring backend's datagram sockets (see backend_uring.c for the backend as a whole).
 *
 * Each socket gets a provided buffer ring of its own and one multishot recvmsg on it; queued
 * datagrams go out as SENDMSG SQEs with the loop's one submission, up to RILL__DGRAM_TX_INFLIGHT
 * in flight per socket, each found again on completion by the index its cookie carries. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "backend.h"
#include "cookie.h"
#include "dgram.h"
#include "sys.h"
#include "uring.h"

#ifdef RILL_HAVE_LIBURING

/* Each socket gets a provided buffer ring of its own, because its buffers must hold a whole
 * datagram plus the recvmsg header the kernel writes in front of it (struct io_uring_recvmsg_out
 * and the source address), while the loop's ring holds stream-sized buffers. Buffer i of the
 * ring always has id i. */
/* What the kernel writes before the payload: the recvmsg header and the source address. */
#define D_HDR                                                                                      \
    ((uint32_t)(sizeof(struct io_uring_recvmsg_out) + sizeof(struct sockaddr_storage) +            \
                RILL__DGRAM_CTL))

static void d_refill(struct uring_loop *u, rill_dgram *d)
{
    rill_loop *l = &u->base;
    unsigned mask = (unsigned)io_uring_buf_ring_mask(ud(d)->br_entries);
    int added = 0;
    for (uint32_t i = 0; i < ud(d)->br_entries && ud(d)->br_count < ud(d)->br_entries; i++) {
        if (ud(d)->br_bufs[i])
            continue;
        struct rill_buf *b;
        if (rill__slab_lease_rx(&l->slab, d->max_dgram + D_HDR, &b) < 0)
            break;
        ud(d)->br_bufs[i] = b;
        /* Exactly header + max_datagram, though the slab's buffer may be larger: a datagram
         * longer than max_datagram is cut there and flagged, as on the readiness backend. */
        io_uring_buf_ring_add(ud(d)->br, b->data, d->max_dgram + D_HDR, (unsigned short)i, mask,
                              added++);
        ud(d)->br_count++;
    }
    if (added)
        io_uring_buf_ring_advance(ud(d)->br, added);
}

static void d_arm_recv(struct uring_loop *u, rill_dgram *d)
{
    if (ud(d)->recv_armed || d->closing)
        return;
    d_refill(u, d);
    if (ud(d)->br_count == 0) {
        rill__dgram_starved(d); /* no buffer to lend: re-armed once the slab has some again */
        return;
    }
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
    if (!sqe) {
        rill__list_del(&d->rlink);
        rill__list_push_back(&u->base.dgram_read, &d->rlink); /* next flush point */
        return;
    }
    io_uring_prep_recvmsg_multishot(sqe, d->fd, &ud(d)->rmsg, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = ud(d)->bgid;
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_DRECV, 0, d->id));
    ud(d)->recv_armed = true;
    u_dop_start(d, 1);
}

int rill__ud_start(rill_loop *l, rill_dgram *d)
{
    struct uring_loop *u = u_of(l);
    uint32_t entries = 1;
    while (entries < d->batch)
        entries <<= 1;
    uint16_t bgid;
    if (u->bgid_free_n)
        bgid = u->bgid_free[--u->bgid_free_n];
    else if (u->bgid_next < UINT16_MAX)
        bgid = ++u->bgid_next;
    else
        return -ENOBUFS;
    ud(d)->bgid = bgid;
    ud(d)->br_entries = entries;
    size_t bytes = entries * sizeof(struct io_uring_buf);
    ud(d)->br = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ud(d)->br_bufs = rill__calloc(entries, sizeof *ud(d)->br_bufs);
    if (ud(d)->br == MAP_FAILED || !ud(d)->br_bufs) {
        if (ud(d)->br == MAP_FAILED)
            ud(d)->br = NULL;
        return -ENOMEM;
    }
    io_uring_buf_ring_init(ud(d)->br);
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)ud(d)->br,
                                   .ring_entries = entries,
                                   .bgid = bgid};
    int r = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (r < 0) {
        munmap(ud(d)->br, bytes);
        ud(d)->br = NULL;
        return r;
    }
    memset(&ud(d)->rmsg, 0, sizeof ud(d)->rmsg);
    ud(d)->rmsg.msg_namelen = sizeof(struct sockaddr_storage);
    ud(d)->rmsg.msg_controllen = RILL__DGRAM_CTL; /* room kept even without GRO: D_HDR is fixed */
    d_arm_recv(u, d);
    return 0;
}

void rill__ud_send(rill_loop *l, rill_dgram *d)
{
    struct uring_loop *u = u_of(l);
    while (d->tx_head && ud(d)->tx_inflight < RILL__DGRAM_TX_INFLIGHT) {
        uint32_t i = 0;
        while (ud(d)->tx_slot[i])
            i++;
        struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
        if (!sqe) {
            rill__dgram_mark_flush(d); /* next iteration */
            return;
        }
        struct rill__dgram_tx *tx = rill__dgram_tx_pop(d);
        io_uring_prep_sendmsg(sqe, d->fd, &tx->msg, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_DSEND, i, d->id));
        ud(d)->tx_slot[i] = tx;
        ud(d)->tx_inflight++;
        u_dop_start(d, 1);
        l->stats.sys_write++;
    }
}

uint32_t rill__ud_busy(const rill_dgram *d)
{
    const struct u_dgram *x = rill__container_of(d, struct u_dgram, d);
    return (x->tx_inflight ? RILL__BUSY_SEND : 0) | (x->inflight ? RILL__BUSY_OPS : 0);
}

void rill__ud_close(rill_loop *l, rill_dgram *d)
{
    struct uring_loop *u = u_of(l);
    rill__list_del(&d->rlink);
    if (d->fd < 0)
        return;
    struct io_uring_sqe *sqe = ud(d)->inflight ? rill__uring_get_sqes(u, 2) : NULL;
    if (!sqe) {
        rill__sys_close(&l->stats, d->fd); /* nothing armed, or no room: armed requests end */
        d->fd = -1;
        return;
    }
    io_uring_prep_cancel_fd(sqe, d->fd, IORING_ASYNC_CANCEL_ALL);
    sqe->flags |= IOSQE_IO_HARDLINK;
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_DCTL, 0, d->id));
    sqe = io_uring_get_sqe(&u->ring);
    io_uring_prep_close(sqe, d->fd);
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_DCTL, 0, d->id));
    u_dop_start(d, 2);
    l->stats.sys_other++;
    d->fd = -1;
}

void rill__ud_free(rill_loop *l, rill_dgram *d)
{
    struct uring_loop *u = u_of(l);
    rill__list_del(&d->rlink);
    if (ud(d)->br) {
        /* Unregistering needs the ring's own thread once it runs; a loop destroyed elsewhere
         * (never run) or torn down releases every ring with io_uring_queue_exit anyway. */
        if (u->bound)
            io_uring_unregister_buf_ring(&u->ring, ud(d)->bgid);
        munmap(ud(d)->br, ud(d)->br_entries * sizeof(struct io_uring_buf));
        ud(d)->br = NULL;
        if (u->bgid_free_n == u->bgid_free_cap) {
            uint32_t cap = u->bgid_free_cap ? u->bgid_free_cap * 2 : 16;
            uint16_t *f = rill__malloc(cap * sizeof *f);
            if (f) {
                if (u->bgid_free_n)
                    memcpy(f, u->bgid_free, u->bgid_free_n * sizeof *f);
                rill__free(u->bgid_free);
                u->bgid_free = f;
                u->bgid_free_cap = cap;
            }
        }
        if (u->bgid_free_n < u->bgid_free_cap)
            u->bgid_free[u->bgid_free_n++] = ud(d)->bgid;
    }
    for (uint32_t i = 0; ud(d)->br_bufs && i < ud(d)->br_entries; i++)
        if (ud(d)->br_bufs[i])
            rill__buf_put(ud(d)->br_bufs[i]);
    rill__free(ud(d)->br_bufs);
    ud(d)->br_bufs = NULL;
}

static void u_on_drecv(struct uring_loop *u, rill_dgram *d, int res, uint32_t flags)
{
    struct rill_buf *b = NULL;
    if (flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);
        b = ud(d)->br_bufs[bid];
        ud(d)->br_bufs[bid] = NULL;
        ud(d)->br_count--;
    }
    u->base.stats.sys_read++;
    if (res >= 0 && b) {
        struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(b->data, res, &ud(d)->rmsg);
        if (o) {
            socklen_t namelen = o->namelen < ud(d)->rmsg.msg_namelen ? o->namelen : ud(d)->rmsg.msg_namelen;
            void *data = io_uring_recvmsg_payload(o, &ud(d)->rmsg);
            /* For a cut datagram liburing reports the length it had (o->payloadlen); what
             * the buffer holds ends at res. */
            size_t len = (size_t)((char *)b->data + res - (char *)data);
            struct cmsghdr *cm = io_uring_recvmsg_cmsg_firsthdr(o, &ud(d)->rmsg);
            rill__dgram_on_recv(d, b, data, len, io_uring_recvmsg_name(o), namelen, (int)o->flags,
                                cm ? rill__dgram_gro_size(cm) : 0);
        }
    } else if (res == -ENOBUFS) {
        u->base.stats.buf_ring_empty++; /* re-armed below, after a refill */
    } else if (res < 0 && res != -ECANCELED) {
        rill__dgram_on_error(d, res);
    }
    if (b)
        rill__buf_put(b);
    if (!(flags & IORING_CQE_F_MORE)) {
        ud(d)->recv_armed = false;
        u_dop_end(d);
    }
    /* Refill and re-arm at the flush point, once per iteration however many arrived. */
    if (!d->closing && !rill__list_linked(&d->rlink))
        rill__list_push_back(&u->base.dgram_read, &d->rlink);
}

void rill__ud_on_cqe(struct uring_loop *u, uint64_t ck, int res, uint32_t flags)
{
    rill_loop *l = &u->base;
    rill_dgram *d = rill__dgram_lookup(l, rill__cookie_slot(ck));
    if (!d || ud(d)->inflight == 0) {
        l->stats.stale_completions++;
        return;
    }
    switch (rill__cookie_op(ck)) {
    case RILL__OP_DRECV:
        u_on_drecv(u, d, res, flags);
        break;
    case RILL__OP_DSEND: {
        uint32_t i = rill__cookie_gen(ck);
        struct rill__dgram_tx *tx = i < RILL__DGRAM_TX_INFLIGHT ? ud(d)->tx_slot[i] : NULL;
        if (tx) {
            ud(d)->tx_slot[i] = NULL;
            ud(d)->tx_inflight--;
            rill__dgram_tx_done(d, tx, res);
        }
        u_dop_end(d);
        break;
    }
    default: /* DCTL */
        u_dop_end(d);
        break;
    }
}

/* At the flush point: refill and re-arm the sockets whose receive consumed buffers or ended. */
void rill__ud_rearm(struct uring_loop *u)
{
    rill_loop *l = &u->base;
    struct rill__list todo, *n;
    rill__list_take(&l->dgram_read, &todo);
    while ((n = rill__list_pop_front(&todo))) {
        rill_dgram *d = rill__container_of(n, rill_dgram, rlink);
        if (ud(d)->recv_armed)
            d_refill(u, d);
        else
            d_arm_recv(u, d);
    }
}

#endif /* RILL_HAVE_LIBURING */
