/* The loop's memory ceiling, on the connection side: what happens when the bytes connections
 * hold for their peers (write queues, data held for paused readers) reach
 * rill_loop_config.mem_ceiling.
 *
 * The first answer is the slab's: at the ceiling every receive lease is refused, so reading
 * pauses everywhere through each backend's "no buffer" path (epoll stops reading the socket,
 * io_uring stops refilling its buffer ring), and the kernel's socket buffers and TCP's window
 * push back on every peer. That is enough when the peers are merely slow: their queues drain,
 * the held bytes fall below 3/4 of the ceiling, and reading resumes.
 *
 * It is not enough against peers that never read: their queues never drain, so reading would
 * stay paused for everyone, for ever. Hence the second answer: if the ceiling has held for the
 * whole grace period (mem_grace_ms) without being left, the connections whose write queues
 * moved least recently are closed with -ENOBUFS, oldest first, until the bytes they hold would
 * bring the loop below the low mark. "Moved least recently" is the wq_moved stamp the send
 * timeout uses: a connection that has stalled longest is the likeliest not to be reading at all,
 * and one that reads, however slowly, keeps moving. Data held for a paused reader counts from the
 * connection's last I/O instead. The check repeats every grace period while the ceiling holds. */
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
        if (!(c->state & RILL__C_CLOSING) && c->wq_bytes + c->held_bytes > 0)
            n++;
    if (n == 0)
        return;
    struct mem_victim *v = rill__malloc((size_t)n * sizeof *v);
    if (!v)
        return; /* tried again at the next grace period */
    uint32_t k = 0;
    for (it = 0; k < n && (c = rill__conn_next(l, &it));)
        if (!(c->state & RILL__C_CLOSING) && c->wq_bytes + c->held_bytes > 0)
            v[k++] = (struct mem_victim){c->wq_bytes ? c->wq_moved : c->last_io,
                                         c->wq_bytes + c->held_bytes, c};
    qsort(v, k, sizeof *v, victim_cmp);
    size_t freed = 0;
    for (uint32_t i = 0; i < k && s->held - freed >= s->held_low; i++) {
        freed += v[i].bytes;
        l->stats.mem_closes++;
        rill__conn_fail(v[i].c, -ENOBUFS); /* the bytes come back when it closes, below */
    }
    rill__free(v);
}

static void mem_watch_fn(struct rill__tnode *t)
{
    rill_loop *l = rill__container_of(t, rill_loop, mem_watch);
    struct rill__slab *s = &l->slab;
    if (s->rx_stop) /* below the low mark again: reading resumed, nothing to do */
        return;
    if (s->held_pauses == l->mem_mark)
        mem_close_stalled(l);
    /* Reached again since the period began, or still held after the closes (whose memory
     * returns at this iteration's flush point): look again one period on. */
    l->mem_mark = s->held_pauses;
    rill__wheel_add(&l->wheel, &l->mem_watch, l->now_ms + l->cfg.mem_grace_ms);
}

void rill__conn_mem_over(rill_loop *l)
{
    if (rill__tnode_active(&l->mem_watch) || l->cfg.mem_grace_ms == UINT32_MAX)
        return;
    l->mem_watch.fn = mem_watch_fn;
    l->mem_mark = l->slab.held_pauses;
    rill__wheel_add(&l->wheel, &l->mem_watch, l->now_ms + l->cfg.mem_grace_ms);
}
