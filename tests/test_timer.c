/* Tests of the hierarchical timer wheel (engine/timer.c), driven directly through rill__wheel_*,
 * and of the public rill_timer API on top of it, driven through a bare struct rill_loop whose
 * clock the test sets by hand. No test depends on real time. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "loop.h"
#include "timer.h"

#define HOUR ((uint64_t)3600 * 1000)
#define DAY (24 * HOUR)
#define YEAR (365 * DAY)

/* ---------------------------------------------------------------------------------------------
 * Fixtures: items that record when and in which order they fired
 * ------------------------------------------------------------------------------------------- */

struct item {
    struct rill__tnode node;
    uint64_t deadline; /* what the test asked for */
    uint64_t seq;      /* add order, for ties */
    unsigned fired;    /* times fn ran */
    uint64_t fired_at; /* the wheel's clock while fn ran */
    unsigned id;
};

static struct rill__wheel W;
static struct item **rec; /* every firing, in order */
static size_t nrec, caprec;
static uint64_t seqno;

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A random distance with every scale equally likely: 0 .. 2^maxbits. */
static uint64_t rnd_span(unsigned maxbits)
{
    unsigned bits = (unsigned)(rnd() % (maxbits + 1));
    return bits ? rnd() & ((UINT64_C(1) << bits) - 1) : 0;
}

static void record(struct item *it)
{
    if (nrec == caprec) {
        caprec = caprec ? 2 * caprec : 1024;
        rec = realloc(rec, caprec * sizeof *rec);
        cr_assert_not_null(rec);
    }
    rec[nrec++] = it;
}

static void item_fire(struct rill__tnode *n)
{
    struct item *it = rill__container_of(n, struct item, node);
    cr_assert_not(rill__tnode_active(n), "a node is unscheduled before its fn runs");
    it->fired++;
    it->fired_at = W.now;
    record(it);
}

static void item_add(struct item *it, uint64_t deadline)
{
    it->deadline = deadline;
    it->seq = seqno++;
    if (!it->node.fn)
        it->node.fn = item_fire;
    rill__wheel_add(&W, &it->node, deadline);
}

static void setup(void)
{
    memset(&W, 0, sizeof W);
    nrec = 0;
    seqno = 0;
    rng = 0x243f6a8885a308d3ull;
}

static void teardown(void)
{
    free(rec);
    rec = NULL;
    nrec = caprec = 0;
}

TestSuite(wheel, .init = setup, .fini = teardown);

/* Checks that the firings rec[from..nrec) are in (deadline, add order) order, continuing from
 * the firing before them, and none came before its deadline or after `target`. */
static void check_order(size_t from, uint64_t target)
{
    for (size_t i = from; i < nrec; i++) {
        struct item *it = rec[i];
        cr_assert_leq(it->deadline, target, "fired past the advance target");
        cr_assert_geq(it->fired_at, it->deadline, "fired before its deadline");
        if (i == 0)
            continue;
        struct item *prev = rec[i - 1];
        cr_assert(prev->deadline < it->deadline ||
                      (prev->deadline == it->deadline && prev->seq < it->seq),
                  "out of order: deadline %llu seq %llu after deadline %llu seq %llu",
                  (unsigned long long)it->deadline, (unsigned long long)it->seq,
                  (unsigned long long)prev->deadline, (unsigned long long)prev->seq);
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------------------------------------------
 * Basics
 * ------------------------------------------------------------------------------------------- */

Test(wheel, empty)
{
    rill__wheel_init(&W, 777);
    cr_assert_eq(W.now, 777);
    cr_assert_eq(W.count, 0);
    cr_assert_eq(rill__wheel_next(&W), -1);
    cr_assert_eq(rill__wheel_advance(&W, 100000), 0);
    cr_assert_eq(W.now, 100000);
    cr_assert_eq(rill__wheel_advance(&W, 5), 0, "the clock never goes backwards");
    cr_assert_eq(W.now, 100000);
}

Test(wheel, fires_at_its_deadline_once)
{
    struct item a = { 0 };
    rill__wheel_init(&W, 64 * 1000);
    item_add(&a, 64 * 1000 + 10);
    cr_assert(rill__tnode_active(&a.node));
    cr_assert_eq(W.count, 1);
    cr_assert_eq(rill__wheel_next(&W), 10, "exact on level 0");
    cr_assert_eq(rill__wheel_advance(&W, 64 * 1000 + 9), 0);
    cr_assert_eq(a.fired, 0);
    cr_assert_eq(rill__wheel_next(&W), 1);
    cr_assert_eq(rill__wheel_advance(&W, 64 * 1000 + 10), 1);
    cr_assert_eq(a.fired, 1);
    cr_assert_eq(a.fired_at, 64 * 1000 + 10);
    cr_assert_not(rill__tnode_active(&a.node));
    cr_assert_eq(W.count, 0);
    cr_assert_eq(W.fired, 1);
    cr_assert_eq(rill__wheel_advance(&W, 1000000), 0);
    cr_assert_eq(a.fired, 1);
    cr_assert_eq(rill__wheel_next(&W), -1);
}

Test(wheel, past_deadline_fires_at_next_advance)
{
    struct item a = { 0 }, b = { 0 };
    rill__wheel_init(&W, 5000);
    item_add(&a, 4000);
    item_add(&b, 5000);
    cr_assert_eq(a.node.expires, 5000, "a past deadline reads the clock");
    cr_assert_eq(rill__wheel_next(&W), 0);
    cr_assert_eq(rill__wheel_advance(&W, 5000), 2, "fires without the clock moving");
    cr_assert_eq(nrec, 2);
    cr_assert_eq(rec[0], &a);
    cr_assert_eq(rec[1], &b);
    cr_assert_eq(W.count, 0);
}

Test(wheel, del_is_idempotent_and_clears_occupancy)
{
    struct item a = { 0 }, b = { 0 };
    rill__wheel_init(&W, 0);
    item_add(&a, 100000);
    item_add(&b, 100000);
    rill__wheel_del(&W, &a.node);
    rill__wheel_del(&W, &a.node);
    cr_assert_not(rill__tnode_active(&a.node));
    cr_assert_eq(W.count, 1);
    rill__wheel_del(&W, &b.node);
    cr_assert_eq(W.count, 0);
    for (int l = 0; l < RILL__WHEEL_LEVELS; l++)
        cr_assert_eq(W.occupied[l], 0, "level %d still marked occupied", l);
    cr_assert_eq(rill__wheel_next(&W), -1);
    cr_assert_eq(rill__wheel_advance(&W, 200000), 0);
    cr_assert_eq(a.fired + b.fired, 0);

    struct item never = { 0 };
    never.node.fn = item_fire;
    rill__wheel_del(&W, &never.node); /* never scheduled: a no-op */
    cr_assert_eq(W.count, 0);
}

Test(wheel, add_on_a_scheduled_node_reschedules)
{
    struct item a = { 0 };
    rill__wheel_init(&W, 0);
    item_add(&a, 50);
    item_add(&a, 500);
    cr_assert_eq(W.count, 1);
    cr_assert_eq(rill__wheel_advance(&W, 499), 0);
    cr_assert_eq(rill__wheel_advance(&W, 500), 1);
}

/* ---------------------------------------------------------------------------------------------
 * Ordering
 * ------------------------------------------------------------------------------------------- */

static void random_order_run(uint64_t base, unsigned span_bits, unsigned step_bits)
{
    enum { N = 5000 };
    struct item *it = calloc(N, sizeof *it);
    uint64_t *sorted = malloc(N * sizeof *sorted);
    cr_assert(it && sorted);

    rill__wheel_init(&W, base);
    for (unsigned i = 0; i < N; i++) {
        item_add(&it[i], base + rnd_span(span_bits));
        sorted[i] = it[i].node.expires;
    }
    qsort(sorted, N, sizeof *sorted, cmp_u64);

    size_t due = 0;
    unsigned rounds = 0;
    while (W.count > 0) {
        cr_assert_lt(++rounds, 1000000, "advance does not make progress");
        uint64_t target = W.now + rnd_span(step_bits);
        size_t before = nrec;
        unsigned n = rill__wheel_advance(&W, target);
        cr_assert_eq(n, nrec - before);
        check_order(before, target);
        while (due < N && sorted[due] <= target)
            due++;
        cr_assert_eq(nrec, due, "after advance(%llu): %zu fired, %zu due",
                     (unsigned long long)target, nrec, due);
        cr_assert_eq(W.count, N - due);
    }
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(it[i].fired, 1, "item %u fired %u times", i, it[i].fired);
        if (it[i].deadline > base)
            cr_assert_eq(it[i].fired_at, it[i].deadline, "fired at %llu, not its deadline",
                         (unsigned long long)it[i].fired_at);
    }
    cr_assert_eq(W.fired, N);
    free(it);
    free(sorted);
}

Test(wheel, random_deadlines_fire_in_order_small_steps)
{
    random_order_run(123456789, 20, 8);
}

Test(wheel, random_deadlines_fire_in_order_mixed_steps)
{
    random_order_run(987654321012ull, 40, 34);
}

Test(wheel, random_deadlines_dense_ties)
{
    random_order_run(64 * 64 - 3, 6, 3); /* 5000 nodes on ~64 deadlines: ties everywhere */
}

Test(wheel, equal_deadlines_fire_in_add_order_across_levels)
{
    /* The same deadline added from different clock positions lands on different levels first;
     * cascades must still deliver the nodes in the order they were added. */
    enum { N = 300 };
    static struct item it[N];
    const uint64_t d = 5 * 64 * 64 * 64 + 17;
    rill__wheel_init(&W, 3);
    for (unsigned i = 0; i < N; i++) {
        item_add(&it[i], d);
        rill__wheel_advance(&W, W.now + rnd() % (d / N));
    }
    cr_assert_eq(nrec, 0);
    cr_assert_eq(rill__wheel_advance(&W, d), N);
    for (unsigned i = 0; i < N; i++)
        cr_assert_eq(rec[i], &it[i], "position %u holds item %ld", i, (long)(rec[i] - it));
}

/* ---------------------------------------------------------------------------------------------
 * Cancellation
 * ------------------------------------------------------------------------------------------- */

static struct item *victims[64];
static unsigned nvictims;

static void killer_fire(struct rill__tnode *n)
{
    item_fire(n);
    for (unsigned i = 0; i < nvictims; i++)
        rill__wheel_del(&W, &victims[i]->node);
}

Test(wheel, deleted_nodes_never_fire)
{
    enum { N = 2000 };
    static struct item it[N];
    rill__wheel_init(&W, 1000);
    for (unsigned i = 0; i < N; i++) {
        it[i].id = i;
        item_add(&it[i], 1000 + rnd_span(24));
    }
    for (unsigned i = 1; i < N; i += 2)
        rill__wheel_del(&W, &it[i].node);
    cr_assert_eq(W.count, N / 2);

    /* A killer due at the same time as its victims, added before them, so they wait on the
     * same firing batch when it runs; and victims far in the future. */
    static struct item killer, late[8];
    static struct item same[8];
    killer.node.fn = killer_fire;
    item_add(&killer, 1000 + 4321);
    nvictims = 0;
    for (unsigned i = 0; i < 8; i++) {
        item_add(&same[i], 1000 + 4321);
        item_add(&late[i], 1000 + 4321 + 1 + rnd_span(30));
        victims[nvictims++] = &same[i];
        victims[nvictims++] = &late[i];
    }

    unsigned fired = rill__wheel_advance(&W, UINT64_C(1) << 40);
    cr_assert_eq(fired, N / 2 + 1);
    cr_assert_eq(W.count, 0);
    for (unsigned i = 0; i < N; i++)
        cr_assert_eq(it[i].fired, i % 2 ? 0u : 1u, "item %u", i);
    cr_assert_eq(killer.fired, 1);
    for (unsigned i = 0; i < 8; i++) {
        cr_assert_eq(same[i].fired, 0);
        cr_assert_eq(late[i].fired, 0);
    }
    check_order(0, UINT64_C(1) << 40);
}

/* ---------------------------------------------------------------------------------------------
 * Callbacks that re-add, and callbacks that free
 * ------------------------------------------------------------------------------------------- */

static unsigned periodic_left;
static uint64_t periodic_at[32];
static unsigned nperiodic;

static void periodic_fire(struct rill__tnode *n)
{
    periodic_at[nperiodic++] = W.now;
    if (--periodic_left)
        rill__wheel_add(&W, n, n->expires + 1000);
}

Test(wheel, readd_from_fn_fires_within_the_same_advance)
{
    struct rill__tnode n = { .fn = periodic_fire };
    rill__wheel_init(&W, 0);
    periodic_left = 10;
    nperiodic = 0;
    rill__wheel_add(&W, &n, 1000);
    cr_assert_eq(rill__wheel_advance(&W, 5500), 5);
    cr_assert(rill__tnode_active(&n));
    cr_assert_eq(rill__wheel_advance(&W, 1000000), 5);
    cr_assert_not(rill__tnode_active(&n));
    for (unsigned i = 0; i < 10; i++)
        cr_assert_eq(periodic_at[i], 1000 * (i + 1));
}

static void readd_now_fire(struct rill__tnode *n)
{
    periodic_at[nperiodic++] = W.now;
    if (--periodic_left)
        rill__wheel_add(&W, n, W.now); /* already due */
}

Test(wheel, readd_at_now_waits_for_next_advance)
{
    struct rill__tnode n = { .fn = readd_now_fire };
    rill__wheel_init(&W, 0);
    periodic_left = 3;
    nperiodic = 0;
    rill__wheel_add(&W, &n, 10);
    cr_assert_eq(rill__wheel_advance(&W, 10), 1, "no livelock: one firing per advance");
    cr_assert_eq(rill__wheel_next(&W), 0);
    cr_assert_eq(rill__wheel_advance(&W, 10), 1);
    cr_assert_eq(rill__wheel_advance(&W, 20), 1);
    cr_assert_eq(rill__wheel_advance(&W, 30), 0);
    cr_assert_eq(nperiodic, 3);
}

struct owned {
    struct rill__tnode node;
    struct owned *other; /* deleted and freed by this one's fn when non-NULL */
};

static unsigned owned_fired;

static void owned_fire(struct rill__tnode *n)
{
    struct owned *o = rill__container_of(n, struct owned, node);
    owned_fired++;
    if (o->other) {
        rill__wheel_del(&W, &o->other->node);
        free(o->other);
    }
    memset(o, 0xdd, sizeof *o);
    free(o);
}

Test(wheel, free_from_fn)
{
    enum { N = 3000 };
    rill__wheel_init(&W, 42);
    owned_fired = 0;
    unsigned expected = 0;
    for (unsigned i = 0; i < N; i++) {
        struct owned *o = calloc(1, sizeof *o);
        cr_assert_not_null(o);
        o->node.fn = owned_fire;
        uint64_t d = 42 + rnd_span(22);
        rill__wheel_add(&W, &o->node, d);
        expected++;
        if (i % 10 == 0) {
            /* A partner due at the same time (on the same firing batch) or later: freed by o. */
            struct owned *p = calloc(1, sizeof *p);
            cr_assert_not_null(p);
            p->node.fn = owned_fire;
            rill__wheel_add(&W, &p->node, i % 20 ? d : d + 1 + rnd_span(20));
            o->other = p;
        }
    }
    cr_assert_eq(rill__wheel_advance(&W, UINT64_C(1) << 30), expected);
    cr_assert_eq(owned_fired, expected);
    cr_assert_eq(W.count, 0);
}

/* ---------------------------------------------------------------------------------------------
 * Large jumps and the top level's clamp
 * ------------------------------------------------------------------------------------------- */

Test(wheel, large_jumps)
{
    const uint64_t base = UINT64_C(5000000000) + 12345; /* two months of uptime, unaligned */
    struct item h3 = { 0 }, d2 = { 0 }, y3 = { 0 }, y40 = { 0 };
    rill__wheel_init(&W, base);
    item_add(&y40, base + 40 * YEAR);
    item_add(&y3, base + 3 * YEAR + 7);
    item_add(&d2, base + 2 * DAY + 1);
    item_add(&h3, base + 3 * HOUR);

    int64_t nx = rill__wheel_next(&W);
    cr_assert_geq(nx, 0);
    cr_assert_leq((uint64_t)nx, 3 * HOUR);

    cr_assert_eq(rill__wheel_advance(&W, base + 1 * HOUR), 0);
    cr_assert_eq(rill__wheel_advance(&W, base + 3 * HOUR - 1), 0);
    cr_assert_eq(rill__wheel_advance(&W, base + 3 * HOUR), 1);
    cr_assert_eq(h3.fired_at, base + 3 * HOUR);
    cr_assert_eq(rill__wheel_advance(&W, base + 2 * DAY), 0);
    cr_assert_eq(rill__wheel_advance(&W, base + 2 * DAY + 1), 1);
    cr_assert_eq(d2.fired_at, base + 2 * DAY + 1);

    /* Past the 64^6 ms range of the levels: clamped, re-cascaded, and exactly on time. */
    cr_assert_eq(rill__wheel_advance(&W, base + 3 * YEAR + 6), 0);
    cr_assert(rill__tnode_active(&y3.node));
    cr_assert_eq(rill__wheel_next(&W), 1);
    cr_assert_eq(rill__wheel_advance(&W, base + 3 * YEAR + 7), 1);
    cr_assert_eq(y3.fired_at, base + 3 * YEAR + 7);

    cr_assert_eq(rill__wheel_advance(&W, base + 40 * YEAR - 1), 0);
    cr_assert_eq(rill__wheel_advance(&W, base + 41 * YEAR), 1);
    cr_assert_eq(y40.fired_at, base + 40 * YEAR);
    cr_assert_eq(W.count, 0);
}

Test(wheel, one_jump_over_everything)
{
    enum { N = 1000 };
    static struct item it[N];
    rill__wheel_init(&W, 999);
    for (unsigned i = 0; i < N; i++)
        item_add(&it[i], 999 + rnd_span(45)); /* up to 1100 years away */
    cr_assert_eq(rill__wheel_advance(&W, UINT64_C(1) << 46), N);
    check_order(0, UINT64_C(1) << 46);
    for (unsigned i = 0; i < N; i++)
        cr_assert_eq(it[i].fired, 1);
}

Test(wheel, extreme_deadlines)
{
    struct item never = { 0 }, edge = { 0 };
    rill__wheel_init(&W, 1000);
    item_add(&never, UINT64_MAX);
    cr_assert_eq(rill__wheel_advance(&W, 1000 + 100 * YEAR), 0);
    cr_assert(rill__tnode_active(&never.node));
    rill__wheel_del(&W, &never.node);
    cr_assert_eq(W.count, 0);
    cr_assert_eq(rill__wheel_next(&W), -1);

    /* Near the top of the 64-bit clock. */
    rill__wheel_init(&W, UINT64_MAX - 100000);
    item_add(&edge, UINT64_MAX - 5);
    item_add(&never, UINT64_MAX);
    cr_assert_eq(rill__wheel_advance(&W, UINT64_MAX - 6), 0);
    cr_assert_eq(rill__wheel_advance(&W, UINT64_MAX - 5), 1);
    cr_assert_eq(rill__wheel_advance(&W, UINT64_MAX), 1);
    cr_assert_eq(never.fired_at, UINT64_MAX);
}

/* ---------------------------------------------------------------------------------------------
 * next()
 * ------------------------------------------------------------------------------------------- */

static uint64_t min_pending(struct item *it, unsigned n)
{
    uint64_t m = UINT64_MAX;
    for (unsigned i = 0; i < n; i++)
        if (rill__tnode_active(&it[i].node) && it[i].node.expires < m)
            m = it[i].node.expires;
    return m;
}

Test(wheel, next_is_a_lower_bound)
{
    /* Sleeping exactly next() ms and advancing, over and over, must never step over a deadline:
     * whatever fires then fires exactly at the new clock. */
    enum { N = 400 };
    static struct item it[N];
    for (unsigned round = 0; round < 4; round++) {
        uint64_t base = rnd_span(44);
        memset(it, 0, sizeof it);
        rill__wheel_init(&W, base);
        nrec = 0;
        for (unsigned i = 0; i < N; i++)
            item_add(&it[i], base + 1 + rnd_span(12 + 8 * round));
        unsigned steps = 0;
        for (;;) {
            int64_t nx = rill__wheel_next(&W);
            if (nx < 0)
                break;
            cr_assert_lt(++steps, 100000);
            uint64_t target = W.now + (uint64_t)nx;
            cr_assert_geq(min_pending(it, N), target, "next() overshoots a deadline");
            size_t before = nrec;
            rill__wheel_advance(&W, target);
            for (size_t i = before; i < nrec; i++)
                cr_assert_eq(rec[i]->deadline, target);
        }
        cr_assert_eq(nrec, N);
        cr_assert_eq(W.count, 0);
    }
}

Test(wheel, next_is_exact_on_level_zero)
{
    struct item a = { 0 }, b = { 0 };
    rill__wheel_init(&W, 64 * 77);
    item_add(&a, 64 * 77 + 63);
    item_add(&b, 64 * 77 + 20);
    cr_assert_eq(rill__wheel_next(&W), 20);
    rill__wheel_del(&W, &b.node);
    cr_assert_eq(rill__wheel_next(&W), 63);
    rill__wheel_advance(&W, 64 * 77 + 63);
    cr_assert_eq(rill__wheel_next(&W), -1);
}

/* ---------------------------------------------------------------------------------------------
 * Stress against a reference model
 * ------------------------------------------------------------------------------------------- */

Test(wheel, stress_against_model)
{
    enum { N = 4000, OPS = 60000 };
    struct item *it = calloc(N, sizeof *it);
    cr_assert_not_null(it);
    rill__wheel_init(&W, 31337);
    uint64_t active = 0;

    for (unsigned op = 0; op < OPS; op++) {
        unsigned r = (unsigned)(rnd() % 100);
        struct item *x = &it[rnd() % N];
        if (r < 50) {
            if (rill__tnode_active(&x->node))
                continue;
            item_add(x, W.now + rnd_span(r < 5 ? 40 : 18));
            active++;
        } else if (r < 80) {
            if (rill__tnode_active(&x->node))
                active--;
            rill__wheel_del(&W, &x->node);
        } else if (r < 95 || op % 7 == 0) {
            uint64_t target = W.now + rnd_span(r < 90 ? 10 : 22);
            uint64_t expect = 0;
            for (unsigned i = 0; i < N; i++)
                if (rill__tnode_active(&it[i].node) && it[i].node.expires <= target)
                    expect++;
            size_t before = nrec;
            cr_assert_eq(rill__wheel_advance(&W, target), expect);
            check_order(before, target);
            for (size_t i = before; i < nrec; i++)
                cr_assert_eq(rec[i]->fired_at, rec[i]->node.expires);
            active -= expect;
            /* Ordering across advances is only promised within one call. */
            nrec = 0;
        }
        cr_assert_eq(W.count, active);
    }
    cr_assert_eq(rill__wheel_advance(&W, UINT64_MAX), active);
    cr_assert_eq(W.count, 0);
    for (int l = 0; l < RILL__WHEEL_LEVELS; l++)
        cr_assert_eq(W.occupied[l], 0);
    free(it);
}

/* ---------------------------------------------------------------------------------------------
 * Public timers (rill_timer_*) on a bare loop struct: only its wheel and clock are used
 * ------------------------------------------------------------------------------------------- */

static struct rill_loop L;

struct tlog {
    uint64_t at[64];
    unsigned n;
    unsigned stop_after;    /* stop the timer from its callback at this firing (0: never) */
    unsigned destroy_after; /* destroy it from its callback at this firing (0: never) */
    bool active_in_cb;
    int order; /* for start-order checks */
};

static int fire_order[64];
static unsigned nfire_order;

static void tcb(rill_timer *t, void *ctx)
{
    struct tlog *g = ctx;
    g->at[g->n++] = L.now_ms;
    g->active_in_cb = rill_timer_active(t);
    fire_order[nfire_order++] = g->order;
    if (g->n == g->stop_after)
        cr_assert_eq(rill_timer_stop(t), 0);
    if (g->n == g->destroy_after)
        rill_timer_destroy(t);
}

/* Moves the loop's clock to `now` ms (the wheel counts microseconds) and advances the wheel. */
static unsigned run_to(uint64_t now)
{
    L.now_ms = now;
    L.now_us = now * 1000;
    return rill__wheel_advance(&L.wheel, L.now_us);
}

/* Runs the "loop" one millisecond at a time, as a loop that is never late would. */
static unsigned run_each_ms_to(uint64_t now)
{
    unsigned n = 0;
    while (L.now_ms < now)
        n += run_to(L.now_ms + 1);
    return n;
}

static void loop_setup(void)
{
    memset(&L, 0, sizeof L);
    L.now_ms = 10000;
    L.now_us = L.now_ms * 1000;
    /* As if inside an iteration: the tests drive the clock, the loop must not refresh it. */
    L.in_dispatch = true;
    rill__list_init(&L.timers);
    rill__wheel_init(&L.wheel, L.now_us);
    nfire_order = 0;
}

TestSuite(rill_timer, .init = loop_setup);

Test(rill_timer, argument_checks)
{
    rill_timer *t = NULL;
    cr_assert_eq(rill_timer_create(NULL, tcb, NULL, &t), -EINVAL);
    cr_assert_eq(rill_timer_create(&L, NULL, NULL, &t), -EINVAL);
    cr_assert_eq(rill_timer_create(&L, tcb, NULL, NULL), -EINVAL);
    cr_assert_eq(rill_timer_start(NULL, 1, 0), -EINVAL);
    cr_assert_eq(rill_timer_stop(NULL), -EINVAL);
    cr_assert_not(rill_timer_active(NULL));
    rill_timer_destroy(NULL);
}

Test(rill_timer, one_shot)
{
    struct tlog g = { 0 };
    rill_timer *t;
    cr_assert_eq(rill_timer_create(&L, tcb, &g, &t), 0);
    cr_assert_not(rill_timer_active(t));
    cr_assert_eq(rill_timer_start(t, 25, 0), 0);
    cr_assert(rill_timer_active(t));
    cr_assert_eq(run_to(10024), 0);
    cr_assert_eq(run_to(10025), 1);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.at[0], 10025);
    cr_assert_not(g.active_in_cb);
    cr_assert_not(rill_timer_active(t));
    cr_assert_eq(run_to(20000), 0);
    cr_assert_eq(rill_timer_stop(t), 0, "stopping a stopped timer is a no-op");
    rill_timer_destroy(t);
    cr_assert_eq(L.wheel.count, 0);
}

Test(rill_timer, repeat_keeps_its_period_and_skips_when_late)
{
    struct tlog g = { 0 };
    rill_timer *t;
    cr_assert_eq(rill_timer_create(&L, tcb, &g, &t), 0);
    cr_assert_eq(rill_timer_start(t, 10, 5), 0);
    cr_assert_eq(run_each_ms_to(10020), 3);
    cr_assert_eq(g.n, 3);
    cr_assert_eq(g.at[0], 10010);
    cr_assert_eq(g.at[1], 10015);
    cr_assert_eq(g.at[2], 10020);
    cr_assert(g.active_in_cb, "re-added before the callback runs");

    /* Late by more than a period: one callback, then now + repeat, no burst of catch-ups. */
    cr_assert_eq(run_to(10037), 1);
    cr_assert_eq(run_to(10041), 0);
    cr_assert_eq(run_to(10042), 1);
    /* Late by less than a period: the next deadline stays on the original grid. */
    cr_assert_eq(run_to(10049), 1);
    cr_assert_eq(run_to(10051), 0);
    cr_assert_eq(run_to(10052), 1);
    /* Late by exactly one period: the deadline after it is already due, so it moves on too. */
    cr_assert_eq(run_to(10062), 1);
    cr_assert_eq(run_to(10062), 0, "no back-to-back catch-up firing");
    cr_assert_eq(run_to(10066), 0);
    cr_assert_eq(run_to(10067), 1);
    rill_timer_destroy(t);
    cr_assert_eq(L.wheel.count, 0);
}

Test(rill_timer, stop_from_callback)
{
    struct tlog g = { .stop_after = 3 };
    rill_timer *t;
    cr_assert_eq(rill_timer_create(&L, tcb, &g, &t), 0);
    cr_assert_eq(rill_timer_start(t, 1, 1), 0);
    cr_assert_eq(run_each_ms_to(10100), 3);
    cr_assert_not(rill_timer_active(t));
    rill_timer_destroy(t);
}

Test(rill_timer, destroy_from_callback)
{
    struct tlog g = { .destroy_after = 2 };
    struct tlog h = { 0 };
    rill_timer *t, *u;
    cr_assert_eq(rill_timer_create(&L, tcb, &g, &t), 0);
    cr_assert_eq(rill_timer_create(&L, tcb, &h, &u), 0);
    cr_assert_eq(rill_timer_start(t, 3, 3), 0);
    cr_assert_eq(rill_timer_start(u, 7, 0), 0);
    cr_assert_eq(run_each_ms_to(10100), 3);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(h.n, 1);
    cr_assert_eq(L.wheel.count, 0);
    rill_timer_destroy(u);
}

Test(rill_timer, equal_deadlines_fire_in_start_order)
{
    enum { N = 10 };
    struct tlog g[N];
    rill_timer *t[N];
    memset(g, 0, sizeof g);
    for (int i = 0; i < N; i++) {
        g[i].order = i;
        cr_assert_eq(rill_timer_create(&L, tcb, &g[i], &t[i]), 0);
        cr_assert_eq(rill_timer_start(t[i], 200, 0), 0);
    }
    /* Restarting moves a timer behind the others with the same deadline. */
    cr_assert_eq(rill_timer_start(t[3], 200, 0), 0);
    cr_assert_eq(run_to(10200), N);
    static const int want[N] = { 0, 1, 2, 4, 5, 6, 7, 8, 9, 3 };
    for (int i = 0; i < N; i++)
        cr_assert_eq(fire_order[i], want[i], "firing %d was timer %d", i, fire_order[i]);
    for (int i = 0; i < N; i++)
        rill_timer_destroy(t[i]);
}

Test(rill_timer, zero_timeout_fires_on_next_advance)
{
    struct tlog g = { 0 };
    rill_timer *t;
    cr_assert_eq(rill_timer_create(&L, tcb, &g, &t), 0);
    cr_assert_eq(rill_timer_start(t, 0, 0), 0);
    cr_assert_eq(run_to(L.now_ms), 1);
    cr_assert_eq(g.n, 1);
    rill_timer_destroy(t);
}
