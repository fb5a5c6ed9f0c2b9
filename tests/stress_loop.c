/* Cross-thread wake and stop under ThreadSanitizer: one thread runs rill_loop_run with a
 * repeating timer while four others hammer rill_loop_wake and finally call rill_loop_stop.
 * The loop must stop, must have kept running its timer throughout, and TSan must stay quiet.
 * A plain program (Criterion cannot start under TSan): returns 0 on success. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"

#define HAMMERS 4
#define HAMMER_MS 1000u
#define BOUND_MS 20000u

static atomic_int timer_fired;   /* written by the loop thread, read by the hammers */
static atomic_int run_result = 1; /* 1: still running */
static atomic_long wakes;

struct ctx {
    rill_loop *l;
    int id;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void tick(rill_timer *t, void *arg)
{
    (void)t;
    (void)arg;
    atomic_fetch_add(&timer_fired, 1);
}

static void *runner(void *arg)
{
    struct ctx *c = arg;
    atomic_store(&run_result, rill_loop_run(c->l));
    return NULL;
}

static void *hammer(void *arg)
{
    struct ctx *c = arg;
    /* Start once the loop is demonstrably running (its timer fired). */
    uint64_t end = now_ms() + BOUND_MS;
    while (atomic_load(&timer_fired) == 0 && now_ms() < end)
        sleep_ms(1);
    uint64_t stop_at = now_ms() + HAMMER_MS;
    long n = 0;
    while (now_ms() < stop_at) {
        for (int i = 0; i < 64; i++)
            rill_loop_wake(c->l);
        n += 64;
        if (c->id == 0 && (n & 1023) == 0)
            sched_yield();
    }
    atomic_fetch_add(&wakes, n);
    rill_loop_stop(c->l);
    rill_loop_wake(c->l); /* wakes after a stop are harmless */
    return NULL;
}

static int fail(const char *what)
{
    fprintf(stderr, "stress_loop: FAIL: %s\n", what);
    return 1;
}

int main(void)
{
    unsetenv("RILL_BACKEND");
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.backend = RILL_BACKEND_EPOLL;
    rill_loop *l;
    int r = rill_loop_create(&cfg, &l);
    if (r < 0) {
        fprintf(stderr, "rill_loop_create: %s\n", rill_strerror(r));
        return 1;
    }
    /* Created and started before the loop first runs, which is when it belongs to no thread. */
    rill_timer *t;
    if (rill_timer_create(l, tick, NULL, &t) < 0 || rill_timer_start(t, 1, 2) < 0)
        return fail("timer set-up");

    struct ctx rc = {l, -1};
    struct ctx hc[HAMMERS];
    pthread_t rt, ht[HAMMERS];
    uint64_t t0 = now_ms();
    if (pthread_create(&rt, NULL, runner, &rc) != 0)
        return fail("pthread_create");
    for (int i = 0; i < HAMMERS; i++) {
        hc[i] = (struct ctx){l, i};
        if (pthread_create(&ht[i], NULL, hammer, &hc[i]) != 0)
            return fail("pthread_create");
    }
    for (int i = 0; i < HAMMERS; i++)
        pthread_join(ht[i], NULL);

    /* Every hammer has stopped the loop; it must return promptly. */
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += BOUND_MS / 1000u;
    if (pthread_timedjoin_np(rt, NULL, &deadline) != 0) {
        fprintf(stderr, "stress_loop: FAIL: rill_loop_run did not return after rill_loop_stop\n");
        _exit(1); /* the loop thread is stuck; do not tear down under it */
    }
    uint64_t took = now_ms() - t0;

    int fired = atomic_load(&timer_fired);
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    int rr = atomic_load(&run_result);
    printf("stress_loop: %ld wakes from %d threads, %d timer firings, %llu iterations, %llu ms\n",
           atomic_load(&wakes), HAMMERS, fired, (unsigned long long)st.iterations,
           (unsigned long long)took);
    if (rr != 0) {
        fprintf(stderr, "rill_loop_run returned %d (%s)\n", rr, rill_strerror(rr));
        return fail("rill_loop_run did not return 0");
    }
    if (atomic_load(&wakes) <= 0)
        return fail("no wake-ups were made");
    /* At a 2 ms period for about a second of hammering, the timer must have kept going; a loop
     * starved by wake-ups would show a handful at most. */
    if (fired < 20)
        return fail("the repeating timer barely ran while the loop was being woken");
    if (!rill_timer_active(t))
        return fail("the repeating timer is no longer scheduled");

    /* The loop is still usable from this thread now that nobody runs it. */
    int before = fired;
    uint64_t end = now_ms() + BOUND_MS;
    while (atomic_load(&timer_fired) == before) {
        if (rill_loop_run_once(l, 10) < 0)
            return fail("run_once after the stress");
        if (now_ms() > end)
            return fail("the timer stopped firing after the stress");
    }
    rill_timer_destroy(t);
    rill_loop_destroy(l);
    return 0;
}
