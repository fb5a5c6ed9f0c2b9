/* The loop: version and error strings, configuration and backend choice, run/stop/wake across
 * threads, deferred callbacks, reentrancy, and a loop set up on one thread and run on another.
 * Public timers driven by a real loop are in test_loop_timer.c; counters, slab buffers, the
 * allocator hook and destroying a loop with work on it in test_loop_resources.c.
 *
 * Timing checks only ever bound one side tightly (a timer never fires early, by the loop's own
 * clock); upper bounds are seconds, so a loaded machine slows these tests down without failing
 * them. */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

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
    h_sleep_ms(p->delay_ms);
    rill_loop_stop(p->l);
    return NULL;
}

static void *waker(void *arg)
{
    struct poke *p = arg;
    for (int i = 1; i <= p->rounds; i++) {
        while (atomic_load(&p->go) < i)
            h_sleep_ms(1);
        h_sleep_ms(p->delay_ms);
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
