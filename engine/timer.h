/* Hierarchical timer wheel (internal).
 *
 * The wheel counts microseconds. RILL__WHEEL_LEVELS levels of 64 slots; level 0 has 1 us slots,
 * level k has 64^k us slots, so eight levels reach 64^8 us (about 8.9 years); later deadlines
 * wait on an overflow list and are re-cascaded. A microsecond tick costs two levels more than
 * the millisecond tick it replaced: a far deadline is placed again at most twice more on its
 * way down, and next() looks at two more bitmap words. Each level keeps a 64-bit occupancy bitmap so the next deadline is found with a
 * count-trailing-zeros instead of a scan. Start and stop are O(1) (doubly-linked slot lists);
 * advancing cascades a higher-level slot down when the lower level wraps.
 *
 * A node sits on the level of the highest 6-bit digit in which its deadline differs from the
 * wheel's clock, in the slot named by that digit of the deadline. Two lists complete the levels:
 * `due` holds nodes added with a deadline already reached (they fire at the next advance), and
 * `far` is the top level's overflow for deadlines outside the current 64^8 us block; it is
 * re-cascaded each time the clock crosses such a block boundary.
 * Not thread-safe: a wheel belongs to one loop; advance is not reentrant (fn must not call it). */
#ifndef RILL_TIMER_H
#define RILL_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define RILL__WHEEL_LEVELS 8
#define RILL__WHEEL_SLOTS 64

struct rill__tnode;
typedef void (*rill__tnode_fn)(struct rill__tnode *n);

/* A timer node, embedded in whatever needs a deadline (a connection's idle timer, a public
 * rill_timer). Zero-initialise it, set fn, then add. */
struct rill__tnode {
    struct rill__tnode *next, *prev; /* slot list; prev == NULL when not scheduled */
    uint64_t expires;                /* absolute deadline in wheel microseconds */
    rill__tnode_fn fn;               /* called when the deadline passes */
};

struct rill__wheel {
    uint64_t now;   /* the wheel's current time in us: every deadline <= now has fired */
    uint64_t count; /* nodes scheduled */
    uint64_t fired; /* nodes fired, ever */
    uint64_t occupied[RILL__WHEEL_LEVELS];
    struct rill__tnode slots[RILL__WHEEL_LEVELS][RILL__WHEEL_SLOTS]; /* list heads (sentinels) */
    struct rill__tnode due; /* list head: deadline already reached when added; fire next advance */
    struct rill__tnode far; /* list head: beyond the top level's range; re-cascaded at 64^8 us */
};

/* Initialises an empty wheel whose clock reads now_us. */
void rill__wheel_init(struct rill__wheel *w, uint64_t now_us);

/* Schedules n to fire once the wheel's clock reaches expires_us (a deadline in the past fires at
 * the next advance, and n->expires then reads the wheel's clock at the time of the add). n must
 * not be scheduled already (call del first). Nodes with equal deadlines fire in the order they
 * were added. O(1). */
void rill__wheel_add(struct rill__wheel *w, struct rill__tnode *n, uint64_t expires_us);

/* rill__wheel_add with a deadline in milliseconds of the same clock (the connection, listener
 * and memory timers count in ms): it fires once the clock reaches expires_ms * 1000 us, that is
 * once the loop's millisecond clock reads expires_ms. Saturates instead of wrapping. */
static inline void rill__wheel_add_ms(struct rill__wheel *w, struct rill__tnode *n,
                                      uint64_t expires_ms)
{
    uint64_t us;
    if (__builtin_mul_overflow(expires_ms, (uint64_t)1000, &us))
        us = UINT64_MAX;
    rill__wheel_add(w, n, us);
}

/* Unschedules n; a no-op if it is not scheduled. O(1). */
void rill__wheel_del(struct rill__wheel *w, struct rill__tnode *n);

static inline bool rill__tnode_active(const struct rill__tnode *n)
{
    return n->prev != 0;
}

/* Microseconds from the wheel's clock until the earliest possible deadline: exact when the
 * earliest slot holds few nodes (they are looked at, up to a small bound) or lies on level 0,
 * otherwise a lower bound (the next cascade). Returns -1 when nothing is scheduled. */
int64_t rill__wheel_next(const struct rill__wheel *w);

/* Moves the clock to now_us (never backwards) and fires, in deadline order, every node whose
 * deadline is <= now_us. A node is unscheduled before its fn runs, so fn may re-add it, delete
 * other nodes, or free the memory that holds it. While fn runs, w->now reads the deadline being
 * fired; a node that fn adds with a deadline <= w->now fires at the next advance, one with a
 * later deadline <= now_us fires during this one. The cost is proportional to the occupied slots
 * passed, not to the time skipped.
 * Returns: the number of nodes fired. */
unsigned rill__wheel_advance(struct rill__wheel *w, uint64_t now_us);

#endif
