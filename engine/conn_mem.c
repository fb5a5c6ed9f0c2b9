/* What a loop does when reading runs short of memory, on the connection side: the bytes that
 * connections hold for their peers (write queues, data held for paused readers) reached
 * rill_loop_config.mem_ceiling, or the slab budget is spent and reads find no buffer.
 *
 * The first answer is the slab's: at the ceiling every receive lease is refused, so reading
 * pauses everywhere through each backend's "no buffer" path (epoll stops reading the socket,
 * io_uring stops refilling its buffer ring), and the kernel's socket buffers and TCP's window
 * push back on every peer; a spent budget does the same by itself. That is enough when the
 * peers are merely slow: their queues drain, the memory comes back, and reading resumes.
 *
 * It is not enough against peers that never read: their queues never drain, so reading would
 * stay paused for everyone, for ever. Hence the second answer: if reading still cannot go on a
 * grace period (mem_grace_ms) after it ran short (at the ceiling: without the ceiling having
 * been left meanwhile; with the budget spent: a receive-size lease still fails), the
 * connections whose write queues moved least recently are closed with -ENOBUFS, oldest first,
 * until the bytes they hold would bring the loop below the ceiling's low mark, or below 3/4 of
 * what it holds when it is under the ceiling (the budget case: the slab's regions are shared
 * by buffers of every size, so no exact amount frees one). "Moved least recently" is the
 * wq_moved stamp the send timeout uses: a connection that has stalled longest is the likeliest
 * not to be reading at all, and one that reads, however slowly, keeps moving. Data held for a
 * paused reader counts from the connection's last I/O instead. The check repeats every grace
 * period while reading stays short. */
#include <stdlib.h>

#include "conn.h"

struct mem_victim {
    uint64_t since; /* when its queue last moved */
    size_t bytes;   /* what it holds */
    rill_conn *c;
};

static int victim_cmp(const void *a, const void *b)
{
    const struct mem_victim *x = a, *y = b;
    return (x->since > y->since) - (x->since < y->since);
}

/* Closes connections stalled longest until what they hold brings the loop below the low mark.
 * One walk of the slot table and a sort, on an event that happens at most once a grace period. */
static void mem_close_stalled(rill_loop *l)
{
    struct rill__slab *s = &l->slab;
    uint32_t n = 0, it = 0;
    rill_conn *c;
    while ((c = rill__conn_next(l, &it)))
        if (!(c->state & RILL__C_CLOSING) && rill__conn_mem_held(c) > 0)
            n++;
    if (n == 0)
        return;
    struct mem_victim *v = rill__malloc((size_t)n * sizeof *v);
    if (!v)
        return; /* tried again at the next grace period */
    uint32_t k = 0;
    for (it = 0; k < n && (c = rill__conn_next(l, &it));)
        if (!(c->state & RILL__C_CLOSING) && rill__conn_mem_held(c) > 0)
            v[k++] = (struct mem_victim){c->wq_bytes ? c->wq_moved : c->last_io,
                                         rill__conn_mem_held(c), c};
    qsort(v, k, sizeof *v, victim_cmp);
    size_t low = s->held - s->held / 4 < s->held_low ? s->held - s->held / 4 : s->held_low;
    size_t freed = 0;
    for (uint32_t i = 0; i < k && s->held - freed > low; i++) {
        freed += v[i].bytes;
        l->stats.mem_closes++;
        rill__conn_fail(v[i].c, -ENOBUFS); /* the bytes come back when it closes, below */
    }
    rill__free(v);
}

/* Whether reading still cannot go on for want of memory: the ceiling holds, or the slab cannot
 * lend one receive buffer. (A lease that succeeds goes straight back; the readers waiting for
 * one are retried because of it.) */
static bool mem_short(rill_loop *l)
{
    struct rill__slab *s = &l->slab;
    if (s->rx_stop == 0)
        return true;
    struct rill_buf *b;
    if (rill__slab_lease(s, l->cfg.recv_buf_size, &b) < 0)
        return true;
    rill__buf_put(b);
    return false;
}

/* A grace period begins: what it will be compared with at its end. */
static void mem_watch_arm(rill_loop *l)
{
    l->mem_mark = l->slab.held_pauses;
    l->mem_in_mark = l->stats.bytes_in;
    rill__wheel_add_ms(&l->wheel, &l->mem_watch, l->now_ms + l->cfg.mem_grace_ms);
}

static void mem_watch_fn(struct rill__tnode *t)
{
    rill_loop *l = rill__container_of(t, rill_loop, mem_watch);
    struct rill__slab *s = &l->slab;
    if (!mem_short(l))
        return; /* reading goes on: nothing to do until it runs short again */
    /* Only if it was short throughout. At the ceiling: it was not left and reached again since
     * the period began. With the budget spent: no byte was read all period (a loop with a small
     * budget and busy peers runs short at times, but its reads go on). */
    if (s->rx_stop == 0 ? s->held_pauses == l->mem_mark : l->stats.bytes_in == l->mem_in_mark)
        mem_close_stalled(l);
    /* Look again one period on: the closes give their memory back at this iteration's flush
     * point, and reading resumes then unless it is still short. */
    mem_watch_arm(l);
}

void rill__conn_mem_short(rill_loop *l)
{
    if (rill__tnode_active(&l->mem_watch) || l->cfg.mem_grace_ms == UINT32_MAX)
        return;
    l->mem_watch.fn = mem_watch_fn;
    mem_watch_arm(l);
}
