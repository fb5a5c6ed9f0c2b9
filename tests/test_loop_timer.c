/* Public timers driven by a real loop: one-shot and repeating, stopped, restarted and destroyed
 * from their own callbacks, many in deadline order, and started after the loop paused.
 *
 * Timing checks only ever bound one side tightly (a timer never fires early, by the loop's own
 * clock); upper bounds are seconds, so a loaded machine slows these tests down without failing
 * them. */
#include "harness.h"

struct tl {
    rill_loop *l;
    rill_timer *t;
    int fired;
    uint64_t start_loop, start_wall; /* the loop's clock and the wall clock when started */
    uint64_t at_loop[64], at_wall[64];
    bool active_in_cb;
    int stop_after;
    bool destroy_in_cb;
    int id;
    int *order;
    int *norder;
};

static void tl_cb(rill_timer *t, void *ctx)
{
    struct tl *x = ctx;
    if (x->fired < 64) {
        x->at_loop[x->fired] = rill_loop_now(x->l);
        x->at_wall[x->fired] = h_now_ms();
    }
    x->fired++;
    x->active_in_cb = rill_timer_active(t);
    if (x->order)
        x->order[(*x->norder)++] = x->id;
    if (x->stop_after && x->fired == x->stop_after)
        cr_assert_eq(rill_timer_stop(t), 0);
    if (x->destroy_in_cb) {
        rill_timer_destroy(t);
        x->t = NULL;
    }
}

/* Starts x->t from inside the loop (a deferred callback), where the loop's clock is fresh. */
struct tl_start {
    struct tl *x;
    uint64_t timeout, repeat;
};

static void tl_start_deferred(rill_loop *l, void *arg)
{
    struct tl_start *s = arg;
    s->x->start_loop = rill_loop_now(l);
    s->x->start_wall = h_now_ms();
    cr_assert_eq(rill_timer_start(s->x->t, s->timeout, s->repeat), 0);
}

H_BACKEND_TEST(loop_timer, one_shot_fires_once_not_early, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct tl x = {.l = l};
    cr_assert_eq(rill_timer_create(l, tl_cb, &x, &x.t), 0);
    cr_assert_not(rill_timer_active(x.t));
    struct tl_start s = {&x, 60, 0};
    cr_assert_eq(rill_loop_defer(l, tl_start_deferred, &s), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert(rill_timer_active(x.t));
    uint64_t end = h_now_ms() + 5000;
    while (x.fired == 0) {
        cr_assert_geq(rill_loop_run_once(l, -1), 0); /* the loop sleeps until the deadline */
        cr_assert_lt(h_now_ms(), end, "one-shot timer never fired");
    }
    cr_assert_eq(x.fired, 1);
    cr_assert_geq(x.at_loop[0] - x.start_loop, 60, "fired %llu ms after start by the loop clock",
                  (unsigned long long)(x.at_loop[0] - x.start_loop));
    cr_assert_geq(x.at_wall[0] - x.start_wall, 59);
    cr_assert_not(x.active_in_cb);
    cr_assert_not(rill_timer_active(x.t));
    h_run_for(l, 150);
    cr_assert_eq(x.fired, 1, "a one-shot timer fires once");
    rill_timer_destroy(x.t);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(loop_timer, repeat_until_stopped, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct tl x = {.l = l};
    cr_assert_eq(rill_timer_create(l, tl_cb, &x, &x.t), 0);
    struct tl_start s = {&x, 10, 10};
    cr_assert_eq(rill_loop_defer(l, tl_start_deferred, &s), 0);
    uint64_t end = h_now_ms() + 10000;
    while (x.fired < 5) {
        cr_assert_geq(rill_loop_run_once(l, 50), 0);
        cr_assert_lt(h_now_ms(), end, "repeating timer fired only %d times", x.fired);
    }
    cr_assert(x.active_in_cb, "a repeating timer is rescheduled before its callback");
    cr_assert(rill_timer_active(x.t));
    for (int i = 1; i < 5; i++)
        cr_assert_geq(x.at_loop[i] - x.at_loop[i - 1], 1, "firings %d and %d at the same ms",
                      i - 1, i);
    cr_assert_geq(x.at_loop[4] - x.start_loop, 50, "5 periods of 10 ms take at least 50 ms");
    cr_assert_eq(rill_timer_stop(x.t), 0);
    cr_assert_not(rill_timer_active(x.t));
    int n = x.fired;
    h_run_for(l, 100);
    cr_assert_eq(x.fired, n, "a stopped timer does not fire");
    cr_assert_eq(rill_timer_stop(x.t), 0, "stopping a stopped timer is a no-op");
    rill_timer_destroy(x.t);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(loop_timer, stop_from_own_callback, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct tl x = {.l = l, .stop_after = 3};
    cr_assert_eq(rill_timer_create(l, tl_cb, &x, &x.t), 0);
    cr_assert_eq(rill_timer_start(x.t, 5, 5), 0);
    uint64_t end = h_now_ms() + 5000;
    while (x.fired < 3) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end);
    }
    h_run_for(l, 60);
    cr_assert_eq(x.fired, 3);
    cr_assert_not(rill_timer_active(x.t));
    rill_timer_destroy(x.t);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(loop_timer, restart_reschedules, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    /* Later: a 50 ms timer restarted at 400 ms is quiet at 200 ms. */
    struct tl x = {.l = l};
    cr_assert_eq(rill_timer_create(l, tl_cb, &x, &x.t), 0);
    struct tl_start s = {&x, 50, 0};
    cr_assert_eq(rill_loop_defer(l, tl_start_deferred, &s), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    s.timeout = 400;
    cr_assert_eq(rill_loop_defer(l, tl_start_deferred, &s), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert(rill_timer_active(x.t));
    uint64_t w0 = h_now_ms();
    while (h_now_ms() - w0 < 200)
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
    cr_assert_eq(x.fired, 0, "the restart must replace the 50 ms deadline");
    uint64_t end = h_now_ms() + 10000;
    while (x.fired == 0) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end);
    }
    cr_assert_geq(x.at_loop[0] - x.start_loop, 400);
    h_run_for(l, 50);
    cr_assert_eq(x.fired, 1, "rescheduling does not leave the old deadline behind");

    /* Sooner: a 5 s timer restarted at 30 ms fires long before 5 s. */
    struct tl y = {.l = l};
    cr_assert_eq(rill_timer_create(l, tl_cb, &y, &y.t), 0);
    cr_assert_eq(rill_timer_start(y.t, 5000, 0), 0);
    s = (struct tl_start){&y, 30, 0};
    cr_assert_eq(rill_loop_defer(l, tl_start_deferred, &s), 0);
    end = h_now_ms() + 3000;
    while (y.fired == 0) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "the restarted timer kept its old 5 s deadline");
    }
    cr_assert_geq(y.at_loop[0] - y.start_loop, 30);
    cr_assert_eq(y.fired, 1);
    rill_timer_destroy(x.t);
    rill_timer_destroy(y.t);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(loop_timer, destroy_inside_own_callback, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct tl one = {.l = l, .destroy_in_cb = true};
    struct tl rep = {.l = l, .destroy_in_cb = true};
    struct tl other = {.l = l};
    cr_assert_eq(rill_timer_create(l, tl_cb, &one, &one.t), 0);
    cr_assert_eq(rill_timer_create(l, tl_cb, &rep, &rep.t), 0);
    cr_assert_eq(rill_timer_create(l, tl_cb, &other, &other.t), 0);
    cr_assert_eq(rill_timer_start(one.t, 5, 0), 0);
    cr_assert_eq(rill_timer_start(rep.t, 5, 5), 0); /* a repeating one is re-added first */
    cr_assert_eq(rill_timer_start(other.t, 40, 0), 0);
    uint64_t end = h_now_ms() + 5000;
    while (other.fired == 0) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end);
    }
    h_run_for(l, 50);
    cr_assert_eq(one.fired, 1);
    cr_assert_eq(rep.fired, 1, "a repeating timer destroyed in its callback fires no more");
    cr_assert_null(one.t);
    cr_assert_null(rep.t);
    rill_timer_destroy(other.t);
    rill_loop_destroy(l);
}

struct tl_many {
    struct tl x[32];
    uint64_t timeout[32];
};

static void tl_start_many(rill_loop *l, void *arg)
{
    struct tl_many *m = arg;
    for (int i = 0; i < 32; i++) {
        m->x[i].start_loop = rill_loop_now(l);
        cr_assert_eq(rill_timer_start(m->x[i].t, m->timeout[i], 0), 0);
    }
}

H_BACKEND_TEST(loop_timer, many_fire_in_deadline_order, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    static struct tl_many m;
    static int order[64];
    int norder = 0;
    memset(&m, 0, sizeof m);
    for (int i = 0; i < 32; i++) {
        /* Distinct timeouts, started out of order: 7 is coprime with 32. */
        m.timeout[i] = 5 + (uint64_t)((i * 7) % 32) * 4;
        m.x[i].l = l;
        m.x[i].id = i;
        m.x[i].order = order;
        m.x[i].norder = &norder;
        cr_assert_eq(rill_timer_create(l, tl_cb, &m.x[i], &m.x[i].t), 0);
    }
    struct rill_loop_stats st0, st1;
    rill_loop_stats(l, &st0);
    cr_assert_eq(rill_loop_defer(l, tl_start_many, &m), 0);
    uint64_t end = h_now_ms() + 10000;
    while (norder < 32) {
        cr_assert_geq(rill_loop_run_once(l, -1), 0);
        cr_assert_lt(h_now_ms(), end, "only %d of 32 timers fired", norder);
    }
    for (int k = 1; k < 32; k++)
        cr_assert_lt(m.timeout[order[k - 1]], m.timeout[order[k]],
                     "firing %d: timer %d (%llu ms) after timer %d (%llu ms)", k, order[k],
                     (unsigned long long)m.timeout[order[k]], order[k - 1],
                     (unsigned long long)m.timeout[order[k - 1]]);
    for (int i = 0; i < 32; i++) {
        cr_assert_eq(m.x[i].fired, 1);
        cr_assert_geq(m.x[i].at_loop[0] - m.x[i].start_loop, m.timeout[i], "timer %d early", i);
    }
    rill_loop_stats(l, &st1);
    cr_assert_eq(st1.timers_fired - st0.timers_fired, 32, "timers_fired counts each firing");
    for (int i = 0; i < 32; i++)
        rill_timer_destroy(m.x[i].t);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(loop_timer, started_outside_the_loop_after_a_pause, .timeout = 30)
{
    /* Set-up code that runs for a while between creating (or last running) the loop and
     * starting a timer must not get a deadline computed from the loop's stale clock. */
    rill_loop *l = h_loop(backend);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    h_sleep_ms(300);
    struct tl x = {.l = l};
    cr_assert_eq(rill_timer_create(l, tl_cb, &x, &x.t), 0);
    cr_assert_eq(rill_timer_start(x.t, 100, 0), 0);
    uint64_t t0 = h_now_ms(); /* start, then measure: t0 is not earlier than the start */
    uint64_t end = t0 + 10000;
    while (x.fired == 0) {
        /* Short polls: the loop's clock moves on every few ms whatever the timer says. */
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        cr_assert_lt(h_now_ms(), end, "timer never fired");
    }
    uint64_t took = x.at_wall[0] - t0;
    cr_assert_geq(took, 99, "a 100 ms timer fired %llu ms after it was started",
                  (unsigned long long)took);
    rill_timer_destroy(x.t);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(loop_timer, not_late_after_a_pause, .timeout = 30)
{
    /* The other half of the same clock: the loop must not sleep for the time that passed
     * outside it on top of the timer's own timeout. */
    rill_loop *l = h_loop(backend);
    /* Begin just after a multiple of 4096 ms of the monotonic clock, so the pause and the
     * timeout (1.6 s) stay inside one 4096 ms block: a timer wheel's coarser levels then offer
     * no earlier wake-up that could hide a wait computed from a stale clock. A correct loop is
     * on time wherever it starts. */
    uint64_t now = h_now_ms();
    h_sleep_ms((unsigned)(4096 - now % 4096) + 5);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    h_sleep_ms(1500);
    struct tl x = {.l = l};
    cr_assert_eq(rill_timer_create(l, tl_cb, &x, &x.t), 0);
    cr_assert_eq(rill_timer_start(x.t, 100, 0), 0);
    uint64_t t0 = h_now_ms();
    uint64_t end = t0 + 10000;
    while (x.fired == 0) {
        cr_assert_geq(rill_loop_run_once(l, -1), 0);
        cr_assert_lt(h_now_ms(), end, "timer never fired");
    }
    uint64_t took = x.at_wall[0] - t0;
    cr_expect_lt(took, 1000, "a 100 ms timer fired %llu ms after it was started",
                 (unsigned long long)took);
    rill_timer_destroy(x.t);
    rill_loop_destroy(l);
}
