/* Cross-loop messages: a bounded multi-producer, single-consumer ring per loop.
 *
 * The algorithm is Dmitry Vyukov's bounded queue. Each slot carries a sequence number that says
 * whose turn it is: a producer claims position p with a compare-and-swap on `tail` only when
 * slot p's sequence reads p (free for this lap), writes the message, then publishes it by
 * storing p + 1 with release order. The consumer reads slot `head` when its sequence is
 * head + 1 (acquire pairs with the producer's release, so fn and arg are visible), then frees
 * it for the next lap by storing head + capacity. A full ring shows as a slot whose sequence is
 * still a lap behind: push returns -EAGAIN and nothing is queued, never a silent drop.
 * Positions are claimed in order, so messages from one producer run in the order posted.
 *
 * Waking the target loop is the caller's business (engine.c): the queue itself never blocks. */
#include "mailbox.h"

#include <errno.h>

#include "alloc.h"

struct rill__mailbox *rill__mailbox_create(uint32_t capacity)
{
    if (capacity < 2 || (capacity & (capacity - 1)))
        return NULL;
    struct rill__mailbox *m = rill__alloc_aligned(sizeof *m);
    if (!m)
        return NULL;
    m->slots = rill__calloc(capacity, sizeof *m->slots);
    if (!m->slots) {
        rill__free_aligned(m);
        return NULL;
    }
    m->mask = capacity - 1;
    for (size_t i = 0; i < capacity; i++)
        atomic_init(&m->slots[i].seq, i);
    atomic_init(&m->tail, 0);
    m->head = 0;
    return m;
}

void rill__mailbox_destroy(struct rill__mailbox *m)
{
    if (!m)
        return;
    rill__free(m->slots);
    rill__free_aligned(m);
}

int rill__mailbox_push(struct rill__mailbox *m, rill_post_fn fn, void *arg)
{
    size_t pos = atomic_load_explicit(&m->tail, memory_order_relaxed);
    for (;;) {
        struct rill__mslot *s = &m->slots[pos & m->mask];
        size_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&m->tail, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed)) {
                s->fn = fn;
                s->arg = arg;
                atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
                return 0;
            }
            /* pos was reloaded by the failed CAS: try the next free position. */
        } else if (dif < 0) {
            return -EAGAIN; /* the slot still holds last lap's message: full */
        } else {
            pos = atomic_load_explicit(&m->tail, memory_order_relaxed);
        }
    }
}

bool rill__mailbox_pending(const struct rill__mailbox *m)
{
    const struct rill__mslot *s = &m->slots[m->head & m->mask];
    return atomic_load_explicit(&s->seq, memory_order_acquire) == m->head + 1;
}

unsigned rill__mailbox_drain(struct rill__mailbox *m, rill_loop *l, unsigned budget)
{
    unsigned n = 0;
    while (n < budget) {
        struct rill__mslot *s = &m->slots[m->head & m->mask];
        if (atomic_load_explicit(&s->seq, memory_order_acquire) != m->head + 1)
            break;
        rill_post_fn fn = s->fn;
        void *arg = s->arg;
        /* Free the slot before running fn, so fn may post to this very loop. */
        atomic_store_explicit(&s->seq, m->head + m->mask + 1, memory_order_release);
        m->head++;
        fn(l, arg);
        n++;
    }
    return n;
}
