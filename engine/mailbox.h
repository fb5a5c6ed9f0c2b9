/* Cross-loop messages (internal): a bounded multi-producer, single-consumer queue per loop. */
#ifndef RILL_MAILBOX_H
#define RILL_MAILBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill.h"

struct rill__mslot {
    _Atomic size_t seq; /* the slot's turn: pos while free, pos + 1 once written */
    rill_post_fn fn;
    void *arg;
};

struct rill__mailbox {
    size_t mask;
    _Alignas(64) _Atomic size_t tail; /* next position producers claim */
    _Alignas(64) size_t head;         /* next position the owning loop reads (consumer only) */
    struct rill__mslot *slots;
};

/* capacity: a power of two >= 2. Returns NULL without memory. */
struct rill__mailbox *rill__mailbox_create(uint32_t capacity);
void rill__mailbox_destroy(struct rill__mailbox *m);

/* Any thread. Returns 0, or -EAGAIN when full (nothing queued). */
int rill__mailbox_push(struct rill__mailbox *m, rill_post_fn fn, void *arg);

/* Owning loop only: true when a message is waiting. */
bool rill__mailbox_pending(const struct rill__mailbox *m);

/* Owning loop only: runs up to `budget` messages in order; returns how many ran. */
unsigned rill__mailbox_drain(struct rill__mailbox *m, rill_loop *l, unsigned budget);

#endif
