/* Tests of the per-loop slab (engine/slab.c): leases, references, size classes, the budget and
 * reclaiming wholly free regions for another class. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "slab.h"

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

static size_t page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

Test(slab, init_rejects_zero_budget)
{
    struct rill__slab s;
    cr_assert_eq(rill__slab_init(&s, 0), -EINVAL);
    cr_assert_eq(rill__slab_init(&s, 1 * MiB), 0);
    cr_assert_eq(s.budget, 1 * MiB);
    cr_assert_eq(s.mapped, 0, "init maps nothing");
    cr_assert_null(s.regions);
    rill__slab_fini(&s);
}

Test(slab, invalid_sizes)
{
    struct rill__slab s;
    struct rill_buf *b = NULL;
    cr_assert_eq(rill__slab_init(&s, 4 * MiB), 0);
    cr_assert_eq(rill__slab_lease(&s, 0, &b), -EINVAL);
    cr_assert_eq(rill__slab_lease(&s, RILL__SLAB_MAX + 1, &b), -EINVAL);
    cr_assert_eq(rill__slab_lease(&s, SIZE_MAX, &b), -EINVAL);
    cr_assert_null(b);
    cr_assert_eq(s.exhausted, 0, "invalid sizes are not budget failures");
    cr_assert_eq(s.mapped, 0);
    rill__slab_fini(&s);
}

Test(slab, classes_and_capacities)
{
    static const struct {
        size_t ask, cap;
        uint32_t cls;
    } cases[] = {
        { 1, 512, 0 },          { 511, 512, 0 },        { 512, 512, 0 },
        { 513, 1024, 1 },       { 1024, 1024, 1 },      { 1025, 2048, 2 },
        { 4095, 4096, 3 },      { 4096, 4096, 3 },      { 4097, 8192, 4 },
        { 16 * KiB, 16 * KiB, 5 }, { 64 * KiB + 1, 128 * KiB, 8 }, { 1 * MiB, 1 * MiB, 11 },
    };
    struct rill__slab s;
    cr_assert_eq(rill__slab_init(&s, 64 * MiB), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct rill_buf *b;
        cr_assert_eq(rill__slab_lease(&s, cases[i].ask, &b), 0, "lease %zu", cases[i].ask);
        cr_assert_eq(rill__buf_cap(b), cases[i].cap, "cap of %zu", cases[i].ask);
        cr_assert_eq(b->cls, cases[i].cls, "class of %zu", cases[i].ask);
        cr_assert_eq(b->refs, 1);
        cr_assert_eq(rill__buf_slab(b), &s);
        /* The whole capacity is usable memory (ASan would flag anything less). */
        memset(b->data, 0xa5, rill__buf_cap(b));
        rill__buf_put(b);
    }
    cr_assert_eq(RILL__SLAB_CLASSES, 12);
    rill__slab_fini(&s);
}

Test(slab, big_classes_are_page_aligned)
{
    struct rill__slab s;
    cr_assert_eq(rill__slab_init(&s, 256 * MiB), 0);
    for (size_t sz = 4 * KiB; sz <= RILL__SLAB_MAX; sz *= 2) {
        struct rill_buf *b[3];
        for (int i = 0; i < 3; i++) {
            cr_assert_eq(rill__slab_lease(&s, sz, &b[i]), 0);
            cr_assert_eq((uintptr_t)b[i]->data % page(), 0, "%zu B buffer not page-aligned", sz);
        }
        for (int i = 0; i < 3; i++)
            rill__buf_put(b[i]);
    }
    rill__slab_fini(&s);
}

Test(slab, buffers_do_not_overlap)
{
    enum { N = 600 }; /* more than one 256 KiB region of 512 B buffers */
    static struct rill_buf *b[N];
    struct rill__slab s;
    cr_assert_eq(rill__slab_init(&s, 16 * MiB), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rill__slab_lease(&s, 512, &b[i]), 0);
        memset(b[i]->data, i & 0xff, 512);
    }
    for (int i = 0; i < N; i++)
        for (size_t j = 0; j < 512; j++)
            cr_assert_eq(b[i]->data[j], (uint8_t)(i & 0xff), "buffer %d byte %zu clobbered", i, j);
    cr_assert_eq(s.in_use, N);
    cr_assert_eq(rill__slab_class_in_use(&s, 0), N);
    for (int i = 0; i < N; i++)
        rill__buf_put(b[i]);
    cr_assert_eq(s.in_use, 0);
    rill__slab_fini(&s);
}

Test(slab, ref_and_put)
{
    struct rill__slab s;
    struct rill_buf *b, *again;
    cr_assert_eq(rill__slab_init(&s, 4 * MiB), 0);
    cr_assert_eq(rill__slab_lease(&s, 2000, &b), 0);
    cr_assert_eq(s.in_use, 1);
    cr_assert_eq(rill__slab_class_in_use(&s, 2), 1);

    rill__buf_get(b);
    rill__buf_get(b);
    cr_assert_eq(b->refs, 3);
    rill__buf_put(b);
    rill__buf_put(b);
    cr_assert_eq(b->refs, 1);
    cr_assert_eq(s.releases, 0, "a put that leaves references is not a release");
    cr_assert_eq(s.in_use, 1);

    rill__buf_put(b);
    cr_assert_eq(b->refs, 0);
    cr_assert_eq(s.releases, 1);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(rill__slab_class_in_use(&s, 2), 0);

    /* LIFO: the buffer released last is leased first. */
    cr_assert_eq(rill__slab_lease(&s, 1500, &again), 0);
    cr_assert_eq(again, b);
    cr_assert_eq(again->refs, 1);
    rill__buf_put(again);
    cr_assert_eq(s.releases, 2);
    rill__slab_fini(&s);
}

/* A put or get on a free buffer aborts in every build (the free list would be corrupt after
 * it); the message itself is checked in test_misuse. */
Test(slab, put_on_a_free_buffer_aborts, .signal = SIGABRT, .init = cr_redirect_stderr)
{
    struct rill__slab s;
    struct rill_buf *b;
    cr_assert_eq(rill__slab_init(&s, 4 * MiB), 0);
    cr_assert_eq(rill__slab_lease(&s, 100, &b), 0);
    rill__buf_put(b);
    cr_assert_eq(s.releases, 1);
    rill__buf_put(b);
    cr_assert_fail("a put on a free buffer returned (refs now %u, releases %llu)", b->refs,
                   (unsigned long long)s.releases);
}

Test(slab, get_on_a_free_buffer_aborts, .signal = SIGABRT, .init = cr_redirect_stderr)
{
    struct rill__slab s;
    struct rill_buf *b;
    cr_assert_eq(rill__slab_init(&s, 4 * MiB), 0);
    cr_assert_eq(rill__slab_lease(&s, 100, &b), 0);
    rill__buf_put(b);
    rill__buf_get(b);
    cr_assert_fail("a get on a free buffer returned (refs now %u)", b->refs);
}

Test(slab, region_sizes)
{
    struct rill__slab s;
    struct rill_buf *b;

    /* Small classes get about 256 KiB per region. */
    cr_assert_eq(rill__slab_init(&s, 64 * MiB), 0);
    cr_assert_eq(rill__slab_lease(&s, 512, &b), 0);
    cr_assert_eq(s.mapped, 256 * KiB);
    rill__buf_put(b);

    /* Large classes get 16 buffers. */
    cr_assert_eq(rill__slab_lease(&s, 1 * MiB, &b), 0);
    cr_assert_eq(s.mapped, 256 * KiB + 16 * MiB);
    rill__buf_put(b);
    rill__slab_fini(&s);
    cr_assert_eq(s.mapped, 0);
    cr_assert_null(s.regions);

    /* The remaining budget caps a region, here at 3 buffers. */
    struct rill_buf *m[4];
    cr_assert_eq(rill__slab_init(&s, 3 * MiB + 5000), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rill__slab_lease(&s, 1 * MiB, &m[i]), 0);
    cr_assert_eq(s.mapped, 3 * MiB, "a single region of 3 buffers");
    cr_assert_eq(rill__slab_lease(&s, 1 * MiB, &m[3]), -ENOBUFS);
    /* 5000 bytes are left: exactly one page can still be mapped for small buffers. */
    cr_assert_eq(rill__slab_lease(&s, 512, &b), 0);
    cr_assert_eq(s.mapped, 3 * MiB + page());
    cr_assert_leq(s.mapped, s.budget);
    rill__buf_put(b);
    for (int i = 0; i < 3; i++)
        rill__buf_put(m[i]);
    rill__slab_fini(&s);
}

Test(slab, budget_exhaustion)
{
    struct rill__slab s;
    struct rill_buf *b[5];
    cr_assert_eq(rill__slab_init(&s, 64 * KiB), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(rill__slab_lease(&s, 16 * KiB, &b[i]), 0);
    cr_assert_eq(s.mapped, 64 * KiB);

    struct rill_buf *none = NULL;
    cr_assert_eq(rill__slab_lease(&s, 16 * KiB, &none), -ENOBUFS);
    cr_assert_null(none);
    cr_assert_eq(s.exhausted, 1);
    cr_assert_eq(rill__slab_lease(&s, 512, &none), -ENOBUFS, "no room for another class either");
    cr_assert_eq(s.exhausted, 2);
    cr_assert_eq(s.in_use, 4);
    cr_assert_leq(s.mapped, s.budget);

    /* A release makes the buffer available again without mapping more. */
    rill__buf_put(b[2]);
    cr_assert_eq(rill__slab_lease(&s, 10 * KiB, &b[4]), 0);
    cr_assert_eq(b[4], b[2]);
    cr_assert_eq(s.exhausted, 2);
    cr_assert_eq(s.mapped, 64 * KiB);

    rill__buf_put(b[0]);
    rill__buf_put(b[1]);
    rill__buf_put(b[3]);
    rill__buf_put(b[4]);
    rill__slab_fini(&s);
}

Test(slab, budget_smaller_than_a_buffer)
{
    struct rill__slab s;
    struct rill_buf *b;
    cr_assert_eq(rill__slab_init(&s, 6 * KiB), 0);
    cr_assert_eq(rill__slab_lease(&s, 8 * KiB, &b), -ENOBUFS);
    cr_assert_eq(s.exhausted, 1);
    cr_assert_eq(s.mapped, 0);
    cr_assert_eq(rill__slab_lease(&s, 4 * KiB, &b), 0);
    cr_assert_eq(s.mapped, 4 * KiB, "the region is cut to what the budget allows in whole pages");
    rill__buf_put(b);
    rill__slab_fini(&s);
}

Test(slab, reclaims_free_regions_for_another_class)
{
    enum { SMALL = 512 }; /* a 256 KiB budget holds exactly one region of 512 B buffers */
    static struct rill_buf *b[SMALL];
    struct rill__slab s;
    struct rill_buf *big, *none;

    cr_assert_eq(rill__slab_init(&s, 256 * KiB), 0);
    for (int i = 0; i < SMALL; i++)
        cr_assert_eq(rill__slab_lease(&s, 100, &b[i]), 0);
    cr_assert_eq(s.mapped, 256 * KiB);
    cr_assert_eq(rill__slab_lease(&s, 16 * KiB, &big), -ENOBUFS);
    cr_assert_eq(s.exhausted, 1);

    /* One buffer still leased: the region is not wholly free and must survive. */
    for (int i = 1; i < SMALL; i++)
        rill__buf_put(b[i]);
    cr_assert_eq(rill__slab_lease(&s, 16 * KiB, &big), -ENOBUFS);
    cr_assert_eq(s.exhausted, 2);
    memset(b[0]->data, 7, 512); /* still mapped: this write would fault otherwise */

    /* Now it is wholly free: it is unmapped and the budget goes to the 16 KiB class. */
    rill__buf_put(b[0]);
    cr_assert_eq(rill__slab_lease(&s, 16 * KiB, &big), 0);
    cr_assert_eq(rill__buf_cap(big), 16 * KiB);
    cr_assert_eq(s.mapped, 256 * KiB);
    cr_assert_null(s.cls[0].free, "buffers of the unmapped region left the free list");
    cr_assert_eq(s.exhausted, 2);
    memset(big->data, 1, 16 * KiB);

    /* The 16 KiB region is in use, so the small class cannot get its memory back. */
    cr_assert_eq(rill__slab_lease(&s, 512, &none), -ENOBUFS);
    cr_assert_eq(s.exhausted, 3);

    rill__buf_put(big);
    cr_assert_eq(rill__slab_lease(&s, 512, &b[0]), 0, "and back again once it is free");
    cr_assert_null(s.cls[5].free);
    rill__buf_put(b[0]);
    rill__slab_fini(&s);
}

Test(slab, reclaim_keeps_other_regions)
{
    /* Two small regions of class 0, one wholly free and one partly used, and a third class that
     * needs one region's worth: only the free one may go, and the used one keeps its buffers on
     * the free list. */
    enum { PER = 512 };
    static struct rill_buf *b[2 * PER];
    struct rill__slab s;
    struct rill_buf *big;

    cr_assert_eq(rill__slab_init(&s, 512 * KiB), 0);
    for (int i = 0; i < 2 * PER; i++)
        cr_assert_eq(rill__slab_lease(&s, 512, &b[i]), 0);
    cr_assert_eq(s.mapped, 512 * KiB);
    cr_assert_neq(b[0]->region, b[PER]->region);
    for (int i = 0; i < PER; i++)
        rill__buf_put(b[i]); /* the first region is wholly free */
    for (int i = PER + 1; i < 2 * PER; i++)
        rill__buf_put(b[i]); /* the second keeps one lease */

    cr_assert_eq(rill__slab_lease(&s, 64 * KiB, &big), 0);
    cr_assert_leq(s.mapped, s.budget);
    uint64_t free_small = 0;
    for (struct rill_buf *f = s.cls[0].free; f; f = f->next_free) {
        cr_assert_eq(f->region, b[PER]->region, "a free buffer of an unmapped region survived");
        free_small++;
    }
    cr_assert_eq(free_small, PER - 1);
    rill__buf_put(big);
    rill__buf_put(b[PER]);
    rill__slab_fini(&s);
}

Test(slab, counters_per_class)
{
    struct rill__slab s;
    struct rill_buf *a, *c, *d;
    cr_assert_eq(rill__slab_init(&s, 8 * MiB), 0);
    cr_assert_eq(rill__slab_lease(&s, 512, &a), 0);
    cr_assert_eq(rill__slab_lease(&s, 4096, &c), 0);
    cr_assert_eq(rill__slab_lease(&s, 4000, &d), 0);
    cr_assert_eq(s.in_use, 3);
    cr_assert_eq(rill__slab_class_in_use(&s, 0), 1);
    cr_assert_eq(rill__slab_class_in_use(&s, 3), 2);
    rill__buf_put(d);
    cr_assert_eq(rill__slab_class_in_use(&s, 3), 1);
    cr_assert_eq(s.in_use, 2);
    cr_assert_eq(s.releases, 1);
    rill__buf_put(a);
    rill__buf_put(c);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.releases, 3);
    cr_assert_eq(s.exhausted, 0);
    rill__slab_fini(&s);
}

Test(slab, fini_with_leased_buffers_and_reuse)
{
    struct rill__slab s;
    struct rill_buf *b;
    cr_assert_eq(rill__slab_init(&s, 4 * MiB), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(rill__slab_lease(&s, 9000, &b), 0);
    rill__slab_fini(&s); /* leaked leases must not leak memory (LeakSanitizer checks) */
    cr_assert_eq(s.mapped, 0);
    cr_assert_eq(s.in_use, 0);
    cr_assert_eq(s.budget, 4 * MiB);
    /* A finished slab is empty and usable again. */
    cr_assert_eq(rill__slab_lease(&s, 9000, &b), 0);
    rill__buf_put(b);
    rill__slab_fini(&s);
}

Test(slab, churn_stays_within_budget)
{
    /* Random leases and releases across all classes under a tight budget: the budget holds, every
     * failure is -ENOBUFS and counted, and leased buffers never alias. */
    enum { SLOTS = 64, ROUNDS = 20000 };
    struct rill_buf *held[SLOTS] = { 0 };
    struct rill__slab s;
    uint64_t fails = 0, x = 0x9e3779b97f4a7c15ull;

    cr_assert_eq(rill__slab_init(&s, 8 * MiB), 0);
    for (int r = 0; r < ROUNDS; r++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned i = (unsigned)(x % SLOTS);
        if (held[i]) {
            cr_assert_eq(held[i]->data[0], (uint8_t)i, "buffer %u was handed to someone else", i);
            rill__buf_put(held[i]);
            held[i] = NULL;
            continue;
        }
        size_t sz = 1 + (size_t)((x >> 20) % (1u << (9 + (x >> 8) % 12)));
        int rc = rill__slab_lease(&s, sz, &held[i]);
        if (rc == -ENOBUFS) {
            fails++;
            held[i] = NULL;
            continue;
        }
        cr_assert_eq(rc, 0);
        cr_assert_geq(rill__buf_cap(held[i]), sz);
        held[i]->data[0] = (uint8_t)i;
        cr_assert_leq(s.mapped, s.budget);
    }
    cr_assert_eq(s.exhausted, fails);
    for (unsigned i = 0; i < SLOTS; i++)
        if (held[i])
            rill__buf_put(held[i]);
    cr_assert_eq(s.in_use, 0);
    rill__slab_fini(&s);
}

/* ---- giving idle regions back, and the memory ceiling's receive gate ------------------------- */

Test(slab, trim_unmaps_regions_idle_long_enough)
{
    struct rill__slab s;
    cr_assert_eq(rill__slab_init(&s, 8 * MiB), 0);
    enum { N = 64 }; /* 64 x 16 KiB: four regions of 16 */
    struct rill_buf *b[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(rill__slab_lease(&s, 16 * KiB, &b[i]), 0);
    size_t mapped = s.mapped;
    cr_assert_eq(mapped, N * 16 * KiB);
    bool more;
    /* Nothing is free: nothing goes, and nothing is waiting. */
    cr_expect_eq(rill__slab_trim(&s, 3, &more), 0);
    cr_expect(!more);
    /* All but b[0]: three regions wholly free, the first one kept by b[0]. */
    for (int i = 1; i < N; i++)
        rill__buf_put(b[i]);
    cr_expect_eq(rill__slab_trim(&s, 3, &more), 0, "free at one check only");
    cr_expect(more);
    /* One region is used between the checks: its count starts again. */
    struct rill_buf *x;
    cr_assert_eq(rill__slab_lease(&s, 16 * KiB, &x), 0);
    cr_expect_eq(rill__slab_trim(&s, 3, &more), 0);
    rill__buf_put(x);
    cr_expect_eq(rill__slab_trim(&s, 3, &more), 2 * 16 * 16 * KiB, "free at three checks in a row");
    cr_expect(more, "the region that was used meanwhile waits for its third check");
    cr_expect_eq(rill__slab_trim(&s, 3, &more), 0);
    cr_expect_eq(rill__slab_trim(&s, 3, &more), 16 * 16 * KiB);
    cr_expect(!more, "the region in use is never unmapped");
    cr_expect_eq(s.mapped, 16 * 16 * KiB);
    cr_expect_eq(s.trimmed, 3 * 16 * 16 * KiB);
    /* The buffer kept is intact, and the slab leases again after trimming (new regions). */
    memset(b[0]->data, 0x5a, 16 * KiB);
    for (int i = 1; i < N; i++)
        cr_assert_eq(rill__slab_lease(&s, 16 * KiB, &b[i]), 0);
    for (int i = 0; i < N; i++)
        rill__buf_put(b[i]);
    cr_expect_eq(s.in_use, 0);
    for (int i = 0; i < 3; i++)
        rill__slab_trim(&s, 3, &more);
    cr_expect_eq(s.mapped, 0);
    rill__slab_fini(&s);
}

Test(slab, ceiling_gates_receive_leases)
{
    struct rill__slab s;
    cr_assert_eq(rill__slab_init(&s, 8 * MiB), 0);
    rill__slab_set_ceiling(&s, 1 * MiB);
    struct rill_buf *b;
    cr_assert_eq(rill__slab_lease_rx(&s, 4096, &b), 0);
    rill__buf_put(b);
    cr_expect(!rill__slab_hold(&s, 512 * KiB));
    cr_expect(rill__slab_hold(&s, 512 * KiB), "at the ceiling");
    cr_expect_eq(s.held_pauses, 1);
    cr_expect_eq(rill__slab_lease_rx(&s, 4096, &b), -ENOBUFS);
    cr_expect_eq(rill__slab_lease(&s, 4096, &b), 0, "only receive leases are gated");
    rill__buf_put(b);
    cr_expect(rill__slab_hold(&s, 1), "still over: the caller's grace period goes on");
    cr_expect_eq(s.held_pauses, 1, "one pause, however many holds");
    /* Below the ceiling is not enough: receive leases come back below 3/4 of it. */
    rill__slab_unhold(&s, 256 * KiB);
    cr_expect_eq(rill__slab_lease_rx(&s, 4096, &b), -ENOBUFS);
    uint64_t rel = s.releases;
    rill__slab_unhold(&s, 1);
    cr_expect_eq(s.held, 768 * KiB);
    cr_expect_eq(rill__slab_lease_rx(&s, 4096, &b), -ENOBUFS, "768 KiB is not below 3/4");
    rill__slab_unhold(&s, 1);
    cr_expect_gt(s.releases, rel, "readers waiting for buffers are told to retry");
    cr_assert_eq(rill__slab_lease_rx(&s, 4096, &b), 0);
    rill__buf_put(b);
    rill__slab_unhold(&s, s.held);
    rill__slab_fini(&s);
}
