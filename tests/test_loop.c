/* The loop: version and error strings, configuration and backend choice, run/stop/wake across
 * threads, deferred callbacks, reentrancy, public timers driven by a real loop, counters, slab
 * buffers, the allocator hook and destroying a loop that still has work on it.
 *
 * Timing checks only ever bound one side tightly (a timer never fires early, by the loop's own
 * clock); upper bounds are seconds, so a loaded machine slows these tests down without failing
 * them. */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- version and errors --------------------------------------------------------------------- */

Test(version, string_and_number_agree)
{
    cr_assert_not_null(rill_version());
    cr_assert_str_eq(rill_version(), RILL_VERSION_STRING);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", RILL_VERSION_MAJOR, RILL_VERSION_MINOR,
             RILL_VERSION_PATCH);
    cr_assert_str_eq(buf, RILL_VERSION_STRING);
    cr_assert_eq(RILL_VERSION_NUMBER,
                 RILL_VERSION_MAJOR * 10000 + RILL_VERSION_MINOR * 100 + RILL_VERSION_PATCH);
    cr_assert_lt(RILL_VERSION_MINOR, 100);
    cr_assert_lt(RILL_VERSION_PATCH, 100);
}

Test(strerror, names_statuses)
{
    cr_assert_str_eq(rill_strerror(0), "success");
    cr_assert_str_eq(rill_strerror(5), "success", "a positive count is a success");
    cr_assert_str_eq(rill_strerror(INT_MAX), "success");
    static const int errs[] = {ECONNRESET, EINVAL, ENOBUFS, ECANCELED, EALREADY, ENOTCONN,
                               EADDRINUSE, ETIMEDOUT};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        char want[256];
        snprintf(want, sizeof want, "%s", strerror(errs[i]));
        cr_assert_str_eq(rill_strerror(-errs[i]), want, "rill_strerror(-%d)", errs[i]);
    }
    cr_assert_str_eq(rill_strerror(-99999), "unknown error");
    const char *s = rill_strerror(INT_MIN);
    cr_assert_not_null(s);
    cr_assert_gt(strlen(s), 0);
    cr_assert_not_null(rill_strerror(INT_MIN + 1));
}

Test(strerror, strings_are_constant)
{
    /* A description may not live in a buffer that the next call overwrites. */
    const char *a = rill_strerror(-99999);
    const char *b = rill_strerror(-ECONNRESET);
    (void)rill_strerror(-99998);
    (void)rill_strerror(-EPIPE);
    cr_assert_str_eq(a, "unknown error");
    cr_assert_str_eq(b, strerror(ECONNRESET));
}

/* ---- configuration and backend choice ------------------------------------------------------- */

Test(loop_config, defaults)
{
    struct rill_loop_config c;
    memset(&c, 0xa5, sizeof c);
    rill_loop_config_init(&c);
    cr_assert_eq(c.backend, RILL_BACKEND_AUTO);
    cr_assert_eq(c.slab_budget, (size_t)64 << 20);
    cr_assert_eq(c.recv_buf_size, 16u << 10);
    cr_assert_eq(c.max_conns, 65536u);
    cr_assert_eq(c.max_events, 256u);
    cr_assert_eq(c.ring_entries, 1024u);
}

Test(loop_config, invalid_values)
{
    unsetenv("RILL_BACKEND");
    int fds = h_count_fds();
    struct rill_loop_config c;
    rill_loop *l;

    rill_loop_config_init(&c);
    c.recv_buf_size = 100;
    cr_assert_eq(rill_loop_create(&c, &l), -EINVAL, "recv_buf_size below 512 B");

    rill_loop_config_init(&c);
    c.recv_buf_size = (2u << 20);
    cr_assert_eq(rill_loop_create(&c, &l), -EINVAL, "recv_buf_size above 1 MiB");

    rill_loop_config_init(&c);
    c.max_conns = UINT32_MAX;
    cr_assert_eq(rill_loop_create(&c, &l), -EINVAL, "huge max_conns");

    rill_loop_config_init(&c);
    c.backend = (rill_backend)77;
    cr_assert_eq(rill_loop_create(&c, &l), -EINVAL, "unknown backend");

    rill_loop_config_init(&c);
    c.slab_budget = 1000; /* smaller than one receive buffer */
    cr_assert_eq(rill_loop_create(&c, &l), -EINVAL, "budget below one receive buffer");

    cr_assert_eq(h_count_fds(), fds, "a refused config opens nothing");

    /* The boundaries themselves are accepted. */
    rill_loop_config_init(&c);
    c.backend = RILL_BACKEND_EPOLL;
    c.recv_buf_size = 512;
    cr_assert_eq(rill_loop_create(&c, &l), 0);
    rill_loop_destroy(l);
    c.recv_buf_size = 1u << 20;
    cr_assert_eq(rill_loop_create(&c, &l), 0);
    rill_loop_destroy(l);
    cr_assert_eq(h_count_fds(), fds);
}

Test(loop_config, null_config_means_defaults)
{
    unsetenv("RILL_BACKEND");
    rill_loop *l = NULL;
    cr_assert_eq(rill_loop_create(NULL, &l), 0);
    cr_assert_not_null(l);
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_assert_eq(st.buf_budget, (uint64_t)64 << 20);
    cr_assert_gt(rill_loop_now(l), 0);
    rill_loop_destroy(l);
}

Test(loop_env, epoll_forces_epoll)
{
    setenv("RILL_BACKEND", "epoll", 1);
    struct rill_loop_config c;
    rill_loop_config_init(&c);
    c.backend = RILL_BACKEND_URING; /* the environment wins over the config */
    rill_loop *l = NULL;
    int r = rill_loop_create(&c, &l);
    cr_assert_eq(r, 0, "%s", rill_strerror(r));
    cr_assert_str_eq(rill_loop_backend_name(l), "epoll");
    cr_assert(rill_loop_caps(l) & RILL_CAP_EDGE_TRIGGERED);
    rill_loop_destroy(l);
    unsetenv("RILL_BACKEND");
}

Test(loop_env, bogus_is_einval)
{
    int fds = h_count_fds();
    setenv("RILL_BACKEND", "bogus", 1);
    rill_loop *l = NULL;
    cr_assert_eq(rill_loop_create(NULL, &l), -EINVAL);
    struct rill_loop_config c;
    rill_loop_config_init(&c);
    c.backend = RILL_BACKEND_EPOLL;
    cr_assert_eq(rill_loop_create(&c, &l), -EINVAL, "a bad override is an error, not ignored");
    cr_assert_eq(h_count_fds(), fds);
    unsetenv("RILL_BACKEND");
}

Test(loop_env, uring_unavailable_is_enosys)
{
    setenv("RILL_BACKEND", "uring", 1);
    rill_loop *l = NULL;
    int r = rill_loop_create(NULL, &l);
    unsetenv("RILL_BACKEND");
    if (r == 0) {
        cr_assert_str_eq(rill_loop_backend_name(l), "io_uring");
        rill_loop_destroy(l);
        cr_skip_test("the io_uring backend is built and runs here");
    }
    /* Forcing a backend that cannot start is an error that says why, never a silent fallback. */
    cr_assert(r == -ENOSYS || r == -EPERM || r == -ENOMEM, "got %s", rill_strerror(r));
}

/* ---- run, stop, wake across threads --------------------------------------------------------- */

struct poke {
    rill_loop *l;
    unsigned delay_ms;
    int rounds;
    atomic_int go; /* rounds the main thread has released */
};

static void *stopper(void *arg)
{
    struct poke *p = arg;
    sleep_ms(p->delay_ms);
    rill_loop_stop(p->l);
    return NULL;
}

static void *waker(void *arg)
{
    struct poke *p = arg;
    for (int i = 1; i <= p->rounds; i++) {
        while (atomic_load(&p->go) < i)
            sleep_ms(1);
        sleep_ms(p->delay_ms);
        rill_loop_wake(p->l);
    }
    return NULL;
}

H_BACKEND_TEST(loop_run, stop_from_another_thread, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct poke p = {.l = l, .delay_ms = 100};
    pthread_t th;
    uint64_t t0 = h_now_ms();
    cr_assert_eq(pthread_create(&th, NULL, stopper, &p), 0);
    int r = rill_loop_run(l);
    uint64_t took = h_now_ms() - t0;
    pthread_join(th, NULL);
    cr_assert_eq(r, 0, "run: %s", rill_strerror(r));
    cr_assert_lt(took, 10000, "run took %llu ms to notice the stop", (unsigned long long)took);
    cr_assert_geq(took, 90, "run returned after %llu ms, before anyone stopped it",
                  (unsigned long long)took);
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_assert_lt(st.iterations, 50, "an idle loop waits, it does not spin (%llu iterations)",
                 (unsigned long long)st.iterations);
    rill_loop_destroy(l);
}

static void stop_timer_cb(rill_timer *t, void *ctx)
{
    (void)t;
    rill_loop_stop(*(rill_loop **)ctx);
}

H_BACKEND_TEST(loop_run, stop_before_run, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    rill_loop_stop(l);
    uint64_t t0 = h_now_ms();
    cr_assert_eq(rill_loop_run(l), 0);
    cr_assert_lt(h_now_ms() - t0, 2000, "a stop requested before run makes it return at once");

    /* The stop was consumed: the next run waits for its own stop (from a timer 100 ms out). */
    rill_timer *t;
    cr_assert_eq(rill_timer_create(l, stop_timer_cb, &l, &t), 0);
    cr_assert_eq(rill_timer_start(t, 100, 0), 0);
    t0 = h_now_ms();
    cr_assert_eq(rill_loop_run(l), 0);
    uint64_t took = h_now_ms() - t0;
    cr_assert_geq(took, 90, "second run returned after %llu ms: a stale stop leaked into it",
                  (unsigned long long)took);
    cr_assert_lt(took, 10000);
    rill_timer_destroy(t);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(loop_run, wake_from_another_thread, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    /* Several rounds: a wake-up must not be swallowed by the "one write per drain" shortcut. */
    struct poke p = {.l = l, .delay_ms = 50, .rounds = 3};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, waker, &p), 0);
    for (int i = 1; i <= p.rounds; i++) {
        uint64_t t0 = h_now_ms();
        atomic_store(&p.go, i);
        int r = rill_loop_run_once(l, -1);
        cr_assert_geq(r, 0, "run_once: %s", rill_strerror(r));
        cr_assert_lt(h_now_ms() - t0, 10000, "round %d", i);
    }
    pthread_join(th, NULL);
    rill_loop_destroy(l);
}

/* ---- deferred callbacks --------------------------------------------------------------------- */

struct dlog {
    int order[20000];
    int n;
    int count[20000];
    rill_loop *l;
    int extra; /* how many to defer from the first callback */
};

static struct dlog D;

static void d_rec(rill_loop *l, void *arg)
{
    (void)l;
    int id = (int)(intptr_t)arg;
    D.order[D.n++] = id;
    D.count[id]++;
}

static void d_spawn(rill_loop *l, void *arg)
{
    d_rec(l, arg);
    for (int i = 0; i < D.extra; i++)
        cr_assert_eq(rill_loop_defer(l, d_rec, (void *)(intptr_t)(1000 + i)), 0);
}

H_BACKEND_TEST(defer, fifo_and_next_iteration, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    memset(&D, 0, sizeof D);
    D.extra = 1;
    cr_assert_eq(rill_loop_defer(l, d_spawn, (void *)(intptr_t)0), 0);
    cr_assert_eq(rill_loop_defer(l, d_rec, (void *)(intptr_t)1), 0);
    cr_assert_eq(rill_loop_defer(l, d_rec, (void *)(intptr_t)2), 0);
    cr_assert_eq(D.n, 0, "nothing runs from inside rill_loop_defer");

    /* run_once(-1) must not wait: deferred work is pending. */
    cr_assert_geq(rill_loop_run_once(l, -1), 3);
    cr_assert_eq(D.n, 3, "the one deferred from a deferred callback waits an iteration");
    cr_assert_eq(D.order[0], 0);
    cr_assert_eq(D.order[1], 1);
    cr_assert_eq(D.order[2], 2);

    cr_assert_geq(rill_loop_run_once(l, -1), 1, "and the next iteration does not wait either");
    cr_assert_eq(D.n, 4);
    cr_assert_eq(D.order[3], 1000);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert_eq(D.n, 4, "each runs once");
    rill_loop_destroy(l);
}

H_BACKEND_TEST(defer, growth_while_running_keeps_order, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    memset(&D, 0, sizeof D);
    /* Move the ring's head off zero first, so that growing has to unwrap it. */
    for (int i = 0; i < 50; i++)
        cr_assert_eq(rill_loop_defer(l, d_rec, (void *)(intptr_t)(19000 + i)), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 50);
    memset(&D, 0, sizeof D);
    /* 60 deferred; the first defers 300 more while 59 still wait, which grows the ring. */
    D.extra = 300;
    cr_assert_eq(rill_loop_defer(l, d_spawn, (void *)(intptr_t)0), 0);
    for (int i = 1; i < 60; i++)
        cr_assert_eq(rill_loop_defer(l, d_rec, (void *)(intptr_t)i), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert_eq(D.n, 60);
    for (int i = 0; i < 60; i++)
        cr_assert_eq(D.order[i], i, "position %d ran %d", i, D.order[i]);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert_eq(D.n, 360);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(D.order[60 + i], 1000 + i);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(defer, ten_thousand_run_exactly_once, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    memset(&D, 0, sizeof D);
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(rill_loop_defer(l, d_rec, (void *)(intptr_t)i), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 10000);
    cr_assert_eq(D.n, 10000);
    for (int i = 0; i < 10000; i++) {
        cr_assert_eq(D.order[i], i);
        cr_assert_eq(D.count[i], 1);
    }
    h_run_for(l, 20);
    cr_assert_eq(D.n, 10000);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(defer, rejects_null, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    cr_assert_eq(rill_loop_defer(NULL, d_rec, NULL), -EINVAL);
    cr_assert_eq(rill_loop_defer(l, NULL, NULL), -EINVAL);
    memset(&D, 0, sizeof D);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert_eq(D.n, 0);
    rill_loop_destroy(l);
}

/* ---- reentrancy ----------------------------------------------------------------------------- */

struct reent {
    int run_once_r, run_r, timer_run_once_r, timer_run_r;
    bool deferred, fired;
};

static void reent_defer(rill_loop *l, void *arg)
{
    struct reent *e = arg;
    e->deferred = true;
    e->run_once_r = rill_loop_run_once(l, 0);
    e->run_r = rill_loop_run(l);
}

static rill_loop *reent_loop;

static void reent_timer(rill_timer *t, void *ctx)
{
    (void)t;
    struct reent *e = ctx;
    e->fired = true;
    e->timer_run_once_r = rill_loop_run_once(reent_loop, -1);
    e->timer_run_r = rill_loop_run(reent_loop);
}

H_BACKEND_TEST(loop_run, not_reentrant, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    reent_loop = l;
    struct reent e = {0};
    cr_assert_eq(rill_loop_defer(l, reent_defer, &e), 0);
    rill_timer *t;
    cr_assert_eq(rill_timer_create(l, reent_timer, &e, &t), 0);
    cr_assert_eq(rill_timer_start(t, 1, 0), 0);
    h_run_until(l, &e.fired, 5000, "timer");
    cr_assert(e.deferred);
    cr_assert_eq(e.run_once_r, -EBUSY);
    cr_assert_eq(e.run_r, -EBUSY);
    cr_assert_eq(e.timer_run_once_r, -EBUSY);
    cr_assert_eq(e.timer_run_r, -EBUSY);
    /* And the loop still works afterwards. */
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    rill_timer_destroy(t);
    rill_loop_destroy(l);
}

/* ---- timers through the loop ---------------------------------------------------------------- */

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
    sleep_ms(300);
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
    sleep_ms((unsigned)(4096 - now % 4096) + 5);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    sleep_ms(1500);
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

/* ---- counters ------------------------------------------------------------------------------- */

struct echo_state {
    rill_conn *c;
    bool opened, closed;
    int closes;
    int status;
};

static void es_open(rill_conn *c, void *ctx)
{
    struct echo_state *e = ctx;
    e->c = c;
    e->opened = true;
}

static void es_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    cr_assert_eq(rill_send_bufs(c, &s, 1, NULL, NULL), 0);
}

static void es_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct echo_state *e = ctx;
    e->closed = true;
    e->closes++;
    e->status = status;
}

static const struct rill_conn_handler es_h = {
    .on_open = es_open, .on_data = es_data, .on_close = es_close};

H_BACKEND_TEST(loop_stats, move_after_accept_and_echo, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct rill_loop_stats s0, s1, s2;
    rill_loop_stats(l, &s0);
    cr_assert_eq(s0.accepts, 0);
    cr_assert_eq(s0.conns_open, 0);
    cr_assert_eq(s0.bytes_in, 0);
    cr_assert_eq(s0.bytes_out, 0);

    struct echo_state e = {0};
    struct rill_listen_config lc = {.handler = &es_h, .ctx = &e};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    h_run_until(l, &e.opened, 5000, "accept");
    static const char msg[] = "hello, counters";
    const size_t n = sizeof msg - 1;
    cr_assert_eq(write(fd, msg, n), (ssize_t)n);
    char got[64];
    size_t have = 0;
    uint64_t end = h_now_ms() + 5000;
    while (have < n) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        if (h_readable(fd, 0)) {
            ssize_t r = read(fd, got + have, sizeof got - have);
            cr_assert_gt(r, 0);
            have += (size_t)r;
        }
        cr_assert_lt(h_now_ms(), end, "echo timed out");
    }
    cr_assert_eq(have, n);
    cr_assert_arr_eq(got, msg, n);

    /* A completion backend counts bytes out when the send's completion is reaped, which may be
     * an iteration after the peer already has them. */
    end = h_now_ms() + 2000;
    do {
        cr_assert_geq(rill_loop_run_once(l, 1), 0);
        rill_loop_stats(l, &s1);
    } while (s1.bytes_out < n && h_now_ms() < end);
    cr_assert_eq(s1.accepts, 1);
    cr_assert_eq(s1.conns_open, 1);
    cr_assert_eq(s1.bytes_in, n);
    cr_assert_eq(s1.bytes_out, n);
    cr_assert_gt(s1.sys_read, 0);
    cr_assert_gt(s1.sys_write, 0);
    cr_assert_geq(s1.sys_accept, 1);
    cr_assert_gt(s1.sys_poll, 0);
    cr_assert_geq(s1.sys_other, 3, "socket, bind, listen at least");
    cr_assert_gt(s1.iterations, s0.iterations);
    cr_assert_eq(s1.bufs_in_use, 0, "no buffer stays leased after the echo");

    close(fd);
    h_run_until(l, &e.closed, 5000, "on_close after the peer closed");
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    rill_loop_stats(l, &s2);
    cr_assert_eq(s2.conns_open, 0);
    cr_assert_eq(s2.accepts, 1);
    cr_assert_eq(e.closes, 1);
    cr_assert_eq(e.status, 0);
    rill_loop_destroy(l);
}

/* ---- buffers -------------------------------------------------------------------------------- */

H_BACKEND_TEST(buf, lease_ref_release, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct rill_loop_stats st;
    rill_buf *a = NULL, *b = NULL, *big = NULL, *x = (rill_buf *)&st;
    cr_assert_eq(rill_buf_lease(l, 0, &x), -EINVAL);
    cr_assert_eq(rill_buf_lease(l, (1u << 20) + 1, &x), -EINVAL);
    cr_assert_eq(rill_buf_lease(l, SIZE_MAX, &x), -EINVAL);

    cr_assert_eq(rill_buf_lease(l, 100, &a), 0);
    cr_assert_eq(rill_buf_lease(l, 5000, &b), 0);
    cr_assert_eq(rill_buf_lease(l, 1u << 20, &big), 0);
    cr_assert_geq(rill_buf_capacity(a), 100);
    cr_assert_geq(rill_buf_capacity(b), 5000);
    cr_assert_eq(rill_buf_capacity(big), 1u << 20);
    cr_assert_not_null(rill_buf_data(a));
    /* The whole capacity is usable, and buffers do not overlap. */
    memset(rill_buf_data(a), 'a', rill_buf_capacity(a));
    memset(rill_buf_data(b), 'b', rill_buf_capacity(b));
    memset(rill_buf_data(big), 'c', rill_buf_capacity(big));
    const unsigned char *pa = rill_buf_data(a);
    for (size_t i = 0; i < rill_buf_capacity(a); i++)
        cr_assert_eq(pa[i], 'a');
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 3);
    cr_assert_gt(st.buf_bytes_mapped, 0);

    cr_assert_eq(rill_buf_ref(a), a);
    rill_buf_release(a);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 3, "a referenced buffer stays leased");
    cr_assert_eq(pa[0], 'a');
    rill_buf_release(a);
    rill_buf_release(b);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 1);
    rill_buf_release(big);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 0);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(buf, small_budget_runs_out, .timeout = 30)
{
    struct rill_loop_config c;
    rill_loop_config_init(&c);
    c.slab_budget = 64u << 10;
    c.recv_buf_size = 4096;
    rill_loop *l = h_loop_cfg(backend, &c);
    rill_buf *b[64];
    int n = 0, r;
    while ((r = rill_buf_lease(l, 4096, &b[n])) == 0) {
        n++;
        cr_assert_lt(n, 64, "leased more than a 64 KiB budget holds");
    }
    cr_assert_eq(r, -ENOBUFS, "%s", rill_strerror(r));
    cr_assert_geq(n, 8, "only %d buffers of 4 KiB from a 64 KiB budget", n);
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, (uint64_t)n);
    cr_assert_eq(st.buf_exhausted, 1);
    cr_assert_eq(st.buf_budget, 64u << 10);
    cr_assert_leq(st.buf_bytes_mapped, 64u << 10);
    rill_buf *y;
    cr_assert_eq(rill_buf_lease(l, 4096, &y), -ENOBUFS);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.buf_exhausted, 2);

    rill_buf_release(b[--n]);
    cr_assert_eq(rill_buf_lease(l, 4096, &b[n]), 0, "a released buffer can be leased again");
    n++;
    for (int i = 0; i < n; i++)
        rill_buf_release(b[i]);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 0);
    rill_loop_destroy(l);
}

/* ---- the allocator hook --------------------------------------------------------------------- */

/* Counting wrappers that also tag their blocks: handing one of them to libc's free (or a libc
 * block to ours) is caught instead of silently working. */
#define CNT_MAGIC 0x52494c4cu
static atomic_long cnt_malloc, cnt_free, cnt_realloc, cnt_live;

struct cnt_hdr {
    uint32_t magic;
    uint32_t pad;
    size_t size;
};

static void *cnt_malloc_fn(size_t n)
{
    struct cnt_hdr *h = malloc(sizeof *h + n);
    if (!h)
        return NULL;
    h->magic = CNT_MAGIC;
    h->size = n;
    atomic_fetch_add(&cnt_malloc, 1);
    atomic_fetch_add(&cnt_live, 1);
    return h + 1;
}

static void cnt_free_fn(void *p)
{
    if (!p)
        return;
    struct cnt_hdr *h = (struct cnt_hdr *)p - 1;
    if (h->magic != CNT_MAGIC)
        abort(); /* not one of ours */
    h->magic = 0;
    atomic_fetch_add(&cnt_free, 1);
    atomic_fetch_sub(&cnt_live, 1);
    free(h);
}

static void *cnt_realloc_fn(void *p, size_t n)
{
    if (!p)
        return cnt_malloc_fn(n);
    struct cnt_hdr *h = (struct cnt_hdr *)p - 1;
    if (h->magic != CNT_MAGIC)
        abort();
    struct cnt_hdr *nh = realloc(h, sizeof *nh + n);
    if (!nh)
        return NULL;
    nh->size = n;
    atomic_fetch_add(&cnt_realloc, 1);
    return nh + 1;
}

Test(allocator, busy_while_a_loop_exists)
{
    unsetenv("RILL_BACKEND");
    rill_loop *l;
    cr_assert_eq(rill_loop_create(NULL, &l), 0);
    cr_assert_eq(rill_set_allocator(cnt_malloc_fn, cnt_realloc_fn, cnt_free_fn), -EBUSY);
    rill_loop *l2;
    cr_assert_eq(rill_loop_create(NULL, &l2), 0);
    rill_loop_destroy(l);
    cr_assert_eq(rill_set_allocator(cnt_malloc_fn, cnt_realloc_fn, cnt_free_fn), -EBUSY,
                 "one loop is still alive");
    rill_loop_destroy(l2);
    cr_assert_eq(rill_set_allocator(malloc, realloc, free), 0, "no loop left");
    cr_assert_eq(atomic_load(&cnt_malloc), 0, "the refused allocator was never used");
}

static void noop_defer(rill_loop *l, void *arg)
{
    (void)l;
    (void)arg;
}

static void noop_timer(rill_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
}

H_BACKEND_TEST(allocator, loop_allocations_go_through_it, .timeout = 30)
{
    /* Criterion runs every test in its own process, so no loop exists yet here. */
    cr_assert_eq(rill_set_allocator(cnt_malloc_fn, cnt_realloc_fn, cnt_free_fn), 0);
    rill_loop *l = h_loop(backend);
    long after_create = atomic_load(&cnt_malloc);
    cr_assert_gt(after_create, 0, "creating a loop allocates through the hook");

    /* Connections, write-queue entries, timers and the defer ring all use it too. */
    struct echo_state e = {0};
    struct rill_listen_config lc = {.handler = &es_h, .ctx = &e};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    cr_assert_gt(atomic_load(&cnt_malloc), after_create, "a listener allocates");
    int fd = h_client(AF_INET, rill_listener_port(ls));
    h_run_until(l, &e.opened, 5000, "accept");
    cr_assert_eq(write(fd, "ping", 4), 4);
    char buf[8];
    uint64_t end = h_now_ms() + 5000;
    size_t have = 0;
    while (have < 4) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        if (h_readable(fd, 0))
            have += (size_t)read(fd, buf + have, sizeof buf - have);
        cr_assert_lt(h_now_ms(), end);
    }
    rill_timer *t;
    long before_timer = atomic_load(&cnt_malloc);
    cr_assert_eq(rill_timer_create(l, noop_timer, NULL, &t), 0);
    cr_assert_gt(atomic_load(&cnt_malloc), before_timer, "a timer allocates");
    rill_timer_destroy(t);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(rill_loop_defer(l, noop_defer, NULL), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);

    close(fd);
    h_run_until(l, &e.closed, 5000, "close");
    rill_loop_destroy(l);
    cr_assert_eq(atomic_load(&cnt_live), 0, "%ld blocks from the hook were never freed",
                 atomic_load(&cnt_live));
    cr_assert_eq(rill_set_allocator(malloc, realloc, free), 0);
}

H_BACKEND_TEST(allocator, destroy_frees_remaining_timers, .timeout = 30)
{
    /* rill_loop_destroy: "timers still existing are freed (their handles become invalid)". */
    cr_assert_eq(rill_set_allocator(cnt_malloc_fn, cnt_realloc_fn, cnt_free_fn), 0);
    rill_loop *l = h_loop(backend);
    rill_timer *t[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rill_timer_create(l, noop_timer, NULL, &t[i]), 0);
    cr_assert_eq(rill_timer_start(t[0], 10000, 0), 0);    /* scheduled */
    cr_assert_eq(rill_timer_start(t[1], 10000, 1000), 0); /* scheduled, repeating */
    /* t[2] was never started */
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    rill_loop_destroy(l);
    cr_assert_eq(atomic_load(&cnt_live), 0, "%ld blocks leaked by rill_loop_destroy",
                 atomic_load(&cnt_live));
    cr_assert_eq(rill_set_allocator(malloc, realloc, free), 0);
}

/* ---- destroying a loop with work on it ------------------------------------------------------ */

#define DMAX 16

struct dconn {
    rill_conn *c;
    int closes;
    int status;
    int send_cbs;
    int send_status;
    bool cb_after_close;
};

struct dworld {
    struct dconn conns[DMAX];
    int n;
    int opened_out;
    int opens;
};

static struct dconn *dfind(struct dworld *w, rill_conn *c)
{
    for (int i = 0; i < w->n; i++)
        if (w->conns[i].c == c)
            return &w->conns[i];
    return NULL;
}

static struct dconn *dadd(struct dworld *w, rill_conn *c)
{
    struct dconn *d = dfind(w, c);
    if (d)
        return d;
    cr_assert_lt(w->n, DMAX);
    d = &w->conns[w->n++];
    d->c = c;
    return d;
}

static void d_open(rill_conn *c, void *ctx)
{
    struct dworld *w = ctx;
    w->opens++;
    dadd(w, c);
}

static void d_close(rill_conn *c, int status, void *ctx)
{
    struct dworld *w = ctx;
    struct dconn *d = dfind(w, c);
    cr_assert_not_null(d, "on_close for a connection never seen");
    d->closes++;
    d->status = status;
    cr_assert_eq(rill_close(c), -EALREADY);
}

static void d_sent(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct dconn *d = ctx;
    if (d->closes)
        d->cb_after_close = true;
    d->send_cbs++;
    d->send_status = status;
}

static const struct rill_conn_handler d_h = {.on_open = d_open, .on_close = d_close};

H_BACKEND_TEST(loop_destroy, closes_everything_once, .timeout = 30)
{
    int fds0 = h_count_fds();
    rill_loop *l = h_loop(backend);
    static struct dworld w;
    memset(&w, 0, sizeof w);
    struct rill_listen_config lc = {.handler = &d_h, .ctx = &w};
    rill_listener *ls, *ls2;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    cr_assert_eq(rill_listen(l, "tcp://[::1]:0", &lc, &ls2), 0);
    int port = rill_listener_port(ls);

    int cl[3];
    for (int i = 0; i < 3; i++)
        cl[i] = h_client(AF_INET, port);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    struct rill_connect_config cc = {.handler = &d_h, .ctx = &w, .timeout_ms = 10000};
    rill_conn *out[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(rill_connect(l, uri, &cc, &out[i]), 0);
    uint64_t end = h_now_ms() + 5000;
    while (w.opens < 7) { /* 3 + 2 accepted, 2 outbound */
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "only %d of 7 connections opened", w.opens);
    }
    /* One more outbound connection that never gets to open. */
    rill_conn *pending;
    cr_assert_eq(rill_connect(l, uri, &cc, &pending), 0);
    struct dconn *dp = dadd(&w, pending);

    /* Sends queued and never flushed: on two accepted connections, an outbound one and the
     * pending one. */
    static char payload[4096];
    struct iovec v = {payload, sizeof payload};
    struct dconn *withq[4] = {NULL, NULL, dfind(&w, out[0]), dp};
    cr_assert_not_null(withq[2]);
    for (int i = 0, k = 0; i < w.n && k < 2; i++)
        if (w.conns[i].c != out[0] && w.conns[i].c != out[1] && w.conns[i].c != pending)
            withq[k++] = &w.conns[i];
    cr_assert_not_null(withq[1], "two accepted connections");
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++)
            cr_assert_eq(rill_send(withq[i]->c, &v, 1, d_sent, withq[i]), 0);
    for (int i = 0; i < w.n; i++)
        cr_assert_eq(w.conns[i].closes, 0);

    rill_loop_destroy(l);

    cr_assert_eq(w.n, 8);
    for (int i = 0; i < w.n; i++) {
        cr_assert_eq(w.conns[i].closes, 1, "connection %d: on_close ran %d times", i,
                     w.conns[i].closes);
        cr_assert_eq(w.conns[i].status, -ECANCELED, "connection %d closed with %s", i,
                     rill_strerror(w.conns[i].status));
        cr_assert_not(w.conns[i].cb_after_close, "connection %d: a send callback after on_close",
                      i);
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(withq[i]->send_cbs, 3, "queued sends: %d callbacks of 3", withq[i]->send_cbs);
        cr_assert_eq(withq[i]->send_status, -ECANCELED, "send callback status %s",
                     rill_strerror(withq[i]->send_status));
    }
    for (int i = 0; i < 3; i++)
        close(cl[i]);
    cr_assert_eq(h_count_fds(), fds0, "descriptors leaked by rill_loop_destroy");
}

/* ---- a loop set up on one thread and run on another ----------------------------------------- */

struct xthread {
    rill_loop *l;
    int run_status;
};

static void xt_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    rill_send_bufs(c, &s, 1, NULL, NULL);
}

static void *xt_main(void *arg)
{
    struct xthread *x = arg;
    x->run_status = rill_loop_run(x->l);
    rill_loop_destroy(x->l); /* on the thread that ran it */
    return NULL;
}

/* The common embedding: create the loop and its listener on the main thread, run it on a worker.
 * An io_uring ring belongs to the thread that first runs it, so nothing may be submitted
 * before that. */
H_BACKEND_TEST(loop_run, set_up_on_one_thread_run_on_another, .timeout = 30)
{
    struct xthread x = {.l = h_loop(backend)};
    static const struct rill_conn_handler h = {.on_data = xt_data};
    struct rill_listen_config lc = {.handler = &h};
    rill_listener *ls;
    cr_assert_eq(rill_listen(x.l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int port = rill_listener_port(ls);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, xt_main, &x), 0);
    int fd = h_client(AF_INET, port);
    cr_assert_eq(write(fd, "ping", 4), 4);
    cr_assert(h_readable(fd, 5000), "the loop on the other thread must echo");
    char buf[8];
    cr_assert_eq(read(fd, buf, sizeof buf), 4);
    cr_assert_eq(memcmp(buf, "ping", 4), 0);
    close(fd);
    rill_loop_stop(x.l);
    pthread_join(t, NULL);
    cr_assert_eq(x.run_status, 0, "run: %s", rill_strerror(x.run_status));
}
