/* Hierarchical timer wheel, and the public rill_timer built on it.
 *
 * Placement rule. A node whose deadline is later than the wheel's clock lives on level k, where k
 * is the highest 6-bit digit in which the deadline and the clock differ, in the slot named by the
 * deadline's digit k. Because the deadline is later, that digit of the deadline is larger than the
 * clock's, and the two share every digit above k. As the clock moves forward it keeps sharing
 * those upper digits until it reaches the slot's first microsecond (its "entry time"), and at that
 * moment the slot is cascaded: each node is placed again relative to the new clock, which puts it
 * on a lower level, or fires it if its deadline is exactly now.
 *
 * Invariant: on every level, every occupied slot's digit is greater than the clock's digit at
 * that level, and every node shares the clock's digits above its level. Two consequences make the
 * wheel cheap. First, no slot ever wraps around, so the lowest set bit of a level's bitmap names
 * its earliest slot. Second, the lowest non-empty level holds the earliest entry time of all: an
 * entry time on level j lies inside the clock's current 64^(j+1) block, while any entry time on a
 * higher level lies beyond it. So the next instant at which anything can happen is found in O(1),
 * and advance() jumps straight there, whatever the distance.
 *
 * Deadlines whose digits differ from the clock's above the top level (more than the current
 * 64^8 us block away) go on the `far` list. That list is the top level's overflow slot: the clock
 * can only leave its 64^8 us block at the block boundary, so `far` is re-cascaded exactly there,
 * which keeps the placement rule intact without a slot "behind" the clock.
 *
 * Order. Nodes with equal deadlines fire in the order they were added: at any moment a node's
 * level and slot are a function of its deadline and the clock, so two nodes with the same deadline
 * always share a slot, appends keep them in order, and a cascade walks a slot front to back. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "list.h"
#include "loop.h"
#include "timer.h"

#define LVL_BITS 6u
#define LVL_MASK ((uint64_t)RILL__WHEEL_SLOTS - 1u)
#define RANGE_BITS (LVL_BITS * RILL__WHEEL_LEVELS) /* 48: the span of all levels, 64^8 us */
/* How many nodes of the earliest slot next() looks at to report its earliest deadline exactly
 * rather than the slot's entry time: a loop with a few timers then sleeps once to the deadline,
 * instead of waking at each cascade on the way down (up to seven for a far deadline). A slot
 * with more nodes (many idle timeouts at once) gets the lower bound, and costs a cascade. */
#define NEXT_SCAN 16u

_Static_assert(RILL__WHEEL_SLOTS == 64, "one 64-bit occupancy word per level");
_Static_assert(RANGE_BITS < 64, "shifts by RANGE_BITS must stay defined");

/* ---------------------------------------------------------------------------------------------
 * Sentinel lists of timer nodes
 * ------------------------------------------------------------------------------------------- */

static void tlist_init(struct rill__tnode *h)
{
    h->next = h->prev = h;
}

static bool tlist_empty(const struct rill__tnode *h)
{
    return h->next == h;
}

static void tlist_append(struct rill__tnode *h, struct rill__tnode *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static void tlist_unlink(struct rill__tnode *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

/* Moves every node of `from` to the end of `to`, in order, leaving `from` empty. */
static void tlist_splice(struct rill__tnode *from, struct rill__tnode *to)
{
    if (tlist_empty(from))
        return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    tlist_init(from);
}

/* ---------------------------------------------------------------------------------------------
 * The wheel
 * ------------------------------------------------------------------------------------------- */

void rill__wheel_init(struct rill__wheel *w, uint64_t now_us)
{
    w->now = now_us;
    w->count = 0;
    w->fired = 0;
    for (unsigned l = 0; l < RILL__WHEEL_LEVELS; l++) {
        w->occupied[l] = 0;
        for (unsigned s = 0; s < RILL__WHEEL_SLOTS; s++)
            tlist_init(&w->slots[l][s]);
    }
    tlist_init(&w->due);
    tlist_init(&w->far);
}

/* Places a node whose deadline is later than the clock, by the placement rule above. */
static void place(struct rill__wheel *w, struct rill__tnode *n)
{
    uint64_t diff = n->expires ^ w->now;
    unsigned lvl = (63u - (unsigned)__builtin_clzll(diff)) / LVL_BITS;

    if (lvl >= RILL__WHEEL_LEVELS) {
        tlist_append(&w->far, n);
        return;
    }
    unsigned slot = (unsigned)((n->expires >> (lvl * LVL_BITS)) & LVL_MASK);
    tlist_append(&w->slots[lvl][slot], n);
    w->occupied[lvl] |= (uint64_t)1 << slot;
}

void rill__wheel_add(struct rill__wheel *w, struct rill__tnode *n, uint64_t expires_us)
{
    /* The contract forbids adding a scheduled node, but unlinking first turns that mistake into
     * a reschedule instead of a corrupted slot list. */
    rill__wheel_del(w, n);
    w->count++;
    if (expires_us <= w->now) {
        /* A deadline already reached has no slot ahead of the clock; it waits on `due`, whose
         * members all read the clock at the time of their add, so firing `due` first keeps
         * deadline order. */
        n->expires = w->now;
        tlist_append(&w->due, n);
        return;
    }
    n->expires = expires_us;
    place(w, n);
}

/* Returns whether the list head h is one of the level slots, and which. Comparing addresses as
 * integers is how a detached list head is told apart from `due`, `far` or a local list in O(1). */
static bool slot_of(const struct rill__wheel *w, const struct rill__tnode *h, unsigned *lvl,
                    unsigned *slot)
{
    uintptr_t base = (uintptr_t)&w->slots[0][0];
    uintptr_t p = (uintptr_t)h;

    if (p < base || p >= base + sizeof w->slots)
        return false;
    size_t idx = (p - base) / sizeof(struct rill__tnode);
    *lvl = (unsigned)(idx / RILL__WHEEL_SLOTS);
    *slot = (unsigned)(idx % RILL__WHEEL_SLOTS);
    return true;
}

void rill__wheel_del(struct rill__wheel *w, struct rill__tnode *n)
{
    if (!n->prev)
        return;
    struct rill__tnode *nx = n->next, *pv = n->prev;
    tlist_unlink(n);
    w->count--;
    /* When the neighbours coincide, only the list head is left: the list is empty, and if it is
     * a level slot its occupancy bit must go, or next() would report a slot with nothing in it. */
    unsigned lvl, slot;
    if (nx == pv && slot_of(w, nx, &lvl, &slot))
        w->occupied[lvl] &= ~((uint64_t)1 << slot);
}

/* Finds the next instant after the clock at which a slot becomes current: the entry time of the
 * lowest level's earliest occupied slot (see the invariant above), else the next 64^8 us block
 * boundary if `far` holds anything. *lvl is RILL__WHEEL_LEVELS for the `far` case.
 * Returns false when nothing is scheduled on the levels or `far`. */
static bool next_event(const struct rill__wheel *w, uint64_t *at, unsigned *lvl, unsigned *slot)
{
    for (unsigned l = 0; l < RILL__WHEEL_LEVELS; l++) {
        if (!w->occupied[l])
            continue;
        unsigned shift = l * LVL_BITS;
        unsigned s = (unsigned)__builtin_ctzll(w->occupied[l]);
        *at = ((w->now >> (shift + LVL_BITS)) << (shift + LVL_BITS)) | ((uint64_t)s << shift);
        *lvl = l;
        *slot = s;
        return true;
    }
    if (tlist_empty(&w->far))
        return false;
    /* A far node differs from the clock above bit 48, so the clock is not in the last 64^8 us
     * block of the 64-bit range and this addition cannot overflow. */
    *at = ((w->now >> RANGE_BITS) + 1) << RANGE_BITS;
    *lvl = RILL__WHEEL_LEVELS;
    *slot = 0;
    return true;
}

int64_t rill__wheel_next(const struct rill__wheel *w)
{
    uint64_t at;
    unsigned lvl, slot;

    if (!tlist_empty(&w->due))
        return 0;
    if (!next_event(w, &at, &lvl, &slot))
        return -1;
    /* On level 0 the entry time is the deadline itself. Higher up it is the first microsecond of
     * the slot, which is no later than any deadline in it: a lower bound, as promised. The
     * earliest deadline of all is in this very slot (every other slot's range lies after its
     * own), so when the slot is short, its smallest deadline is the exact answer. */
    if (lvl > 0 && lvl < RILL__WHEEL_LEVELS) {
        const struct rill__tnode *h = &w->slots[lvl][slot], *n = h->next;
        uint64_t min = UINT64_MAX;
        for (unsigned i = 0; i < NEXT_SCAN && n != h; i++, n = n->next)
            min = n->expires < min ? n->expires : min;
        if (n == h)
            at = min;
    }
    return (int64_t)(at - w->now);
}

/* With the clock just moved onto the entry time of (lvl, slot), empties that slot: nodes due now
 * go to `fire` in slot order, the others are placed again relative to the new clock. */
static void cascade(struct rill__wheel *w, unsigned lvl, unsigned slot, struct rill__tnode *fire)
{
    struct rill__tnode tmp;
    struct rill__tnode *head = lvl < RILL__WHEEL_LEVELS ? &w->slots[lvl][slot] : &w->far;

    tlist_init(&tmp);
    tlist_splice(head, &tmp);
    if (lvl < RILL__WHEEL_LEVELS)
        w->occupied[lvl] &= ~((uint64_t)1 << slot);
    while (!tlist_empty(&tmp)) {
        struct rill__tnode *n = tmp.next;
        tlist_unlink(n);
        if (n->expires == w->now)
            tlist_append(fire, n);
        else
            place(w, n);
    }
}

/* Fires the nodes of `fire` front to back. Each is unlinked (and counted out) before its fn runs,
 * so fn may re-add it, free it, or delete nodes still waiting on `fire`: those are ordinary
 * scheduled nodes, and del unlinks them from this list like from any other. */
static unsigned fire_all(struct rill__wheel *w, struct rill__tnode *fire)
{
    unsigned fired = 0;

    while (!tlist_empty(fire)) {
        struct rill__tnode *n = fire->next;
        tlist_unlink(n);
        w->count--;
        w->fired++;
        fired++;
        n->fn(n);
    }
    return fired;
}

unsigned rill__wheel_advance(struct rill__wheel *w, uint64_t now_us)
{
    struct rill__tnode fire;
    unsigned fired;

    /* `due` is taken whole before anything fires: a node that fn adds with a deadline already
     * reached waits for the next advance, so a callback that keeps re-adding itself at "now"
     * cannot hold the loop here forever. */
    tlist_init(&fire);
    tlist_splice(&w->due, &fire);
    fired = fire_all(w, &fire);

    /* Jump from one slot entry time to the next; empty stretches of time cost nothing. The clock
     * reads the instant being processed while fns run, so they schedule relative to it. */
    for (;;) {
        uint64_t at;
        unsigned lvl, slot;
        if (!next_event(w, &at, &lvl, &slot) || at > now_us)
            break;
        w->now = at;
        cascade(w, lvl, slot, &fire);
        fired += fire_all(w, &fire);
    }
    if (now_us > w->now)
        w->now = now_us;
    return fired;
}

/* ---------------------------------------------------------------------------------------------
 * Public timers
 * ------------------------------------------------------------------------------------------- */

struct rill_timer {
    struct rill__tnode node; /* first, so the wheel's node is the timer's address */
    rill_loop *loop;
    rill_timer_cb cb;
    void *ctx;
    uint64_t repeat; /* us between firings; 0 for a one-shot timer */
    struct rill__list link; /* on l->timers, so that rill_loop_destroy can free it */
};

/* Deadlines saturate instead of wrapping: a timeout of UINT64_MAX means "never" in practice, and
 * a wrapped sum would land in the past and fire at once. */
static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static void timer_fire(struct rill__tnode *n)
{
    rill_timer *t = rill__container_of(n, rill_timer, node);
    rill_loop *l = t->loop;

    /* A repeating timer is scheduled again before its callback runs, so the callback sees it
     * active and may stop, restart or destroy it; after the callback, t is never touched again.
     * The next deadline keeps the period anchored to the previous deadline, so lateness does not
     * accumulate; when that is already due (the loop was late by a whole period or more), the
     * timer skips to now + repeat rather than firing a burst of catch-up callbacks. */
    if (t->repeat) {
        uint64_t next = add_sat(n->expires, t->repeat);
        if (next <= l->now_us)
            next = add_sat(l->now_us, t->repeat);
        rill__wheel_add(&l->wheel, n, next);
    }
    t->cb(t, t->ctx);
}

int rill_timer_create(rill_loop *l, rill_timer_cb cb, void *ctx, rill_timer **out)
{
    if (!l || !cb || !out)
        return -EINVAL;
    rill_timer *t = rill__calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->node.fn = timer_fire;
    t->loop = l;
    t->cb = cb;
    t->ctx = ctx;
    rill__list_push_back(&l->timers, &t->link);
    *out = t;
    return 0;
}

int rill_timer_start_us(rill_timer *t, uint64_t timeout_us, uint64_t repeat_us)
{
    if (!t)
        return -EINVAL;
    rill_loop *l = t->loop;
    rill__wheel_del(&l->wheel, &t->node);
    t->repeat = repeat_us;
    rill__wheel_add(&l->wheel, &t->node, add_sat(rill__loop_clock_us(l), timeout_us));
    return 0;
}

/* Milliseconds times 1000, saturating like add_sat: UINT64_MAX ms stays "never". */
static uint64_t ms_to_us(uint64_t ms)
{
    return ms > UINT64_MAX / 1000u ? UINT64_MAX : ms * 1000u;
}

int rill_timer_start(rill_timer *t, uint64_t timeout_ms, uint64_t repeat_ms)
{
    return rill_timer_start_us(t, ms_to_us(timeout_ms), ms_to_us(repeat_ms));
}

int rill_timer_stop(rill_timer *t)
{
    if (!t)
        return -EINVAL;
    rill__wheel_del(&t->loop->wheel, &t->node);
    return 0;
}

bool rill_timer_active(const rill_timer *t)
{
    return t && rill__tnode_active(&t->node);
}

void rill_timer_destroy(rill_timer *t)
{
    if (!t)
        return;
    /* Safe from inside the timer's own callback: timer_fire does not touch t after cb returns. */
    rill__wheel_del(&t->loop->wheel, &t->node);
    rill__list_del(&t->link);
    rill__free(t);
}

void rill__timers_free_all(rill_loop *l)
{
    while (!rill__list_empty(&l->timers))
        rill_timer_destroy(rill__container_of(l->timers.next, rill_timer, link));
}
