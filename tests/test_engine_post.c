/* The engine's cross-loop mailbox: order per producer and exactly-once delivery, every post
 * waking its loop, a full mailbox, post errors, posts between loops, and posting through a
 * stop.
 *
 * Callbacks on the engine's threads report failures with NOTE()/EXPECT(), which the test thread
 * checks afterwards (see engine_util.h). */
#include "engine_util.h"

#define PRODUCERS 4
#define PER_PRODUCER 20000

struct mb_loop {
    uint32_t next[PRODUCERS]; /* the sequence number expected next from each producer */
    uint64_t bad_order;
    atomic_uint_fast64_t count;
    bool wrong_thread;
    char pad[64];
};
static struct mb_loop g_mb[MAXL];

static void *mb_arg(unsigned producer, uint32_t seq)
{
    return (void *)(((uintptr_t)(producer + 1) << 32) | seq);
}

static void mb_fn(rill_loop *l, void *arg)
{
    int i = rill_loop_index(l);
    if (i < 0 || i >= MAXL) {
        NOTE("posted function got loop index %d", i);
        return;
    }
    struct mb_loop *m = &g_mb[i];
    uintptr_t v = (uintptr_t)arg;
    unsigned p = (unsigned)(v >> 32) - 1;
    uint32_t seq = (uint32_t)v;
    if (p >= PRODUCERS) {
        NOTE("loop %d: a message from producer %u", i, p);
        return;
    }
    if (seq != m->next[p]) {
        if (m->bad_order++ == 0)
            NOTE("loop %d, producer %u: got %u, expected %u", i, p, seq, m->next[p]);
    }
    m->next[p] = seq + 1;
    if (!on_loop_thread(l))
        m->wrong_thread = true;
    atomic_store_explicit(&m->count, atomic_load_explicit(&m->count, memory_order_relaxed) + 1,
                          memory_order_release);
}

struct producer {
    rill_engine *e;
    unsigned id;
    uint32_t loops;
    uint64_t retries;
    int error;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    /* The whole run takes well under a second; a mailbox full for this long is a loop that
     * stopped draining it (a lost wake-up). */
    uint64_t end = h_now_ms() + 15000;
    for (uint32_t seq = 0; seq < PER_PRODUCER; seq++)
        for (uint32_t i = 0; i < p->loops; i++) {
            int r;
            while ((r = rill_engine_post(p->e, i, mb_fn, mb_arg(p->id, seq))) == -EAGAIN) {
                p->retries++;
                if (h_now_ms() > end) {
                    p->error = -ETIMEDOUT;
                    return NULL;
                }
                sched_yield();
            }
            if (r != 0) {
                p->error = r;
                return NULL;
            }
        }
    return NULL;
}

H_BACKEND_TEST(engine, mailbox_order_and_exactly_once, .timeout = 120)
{
    const uint32_t L = 2;
    rill_engine *e = eng_create(backend, L, pin_flags(L), 0);
    cr_assert_eq(rill_engine_start(e), 0);
    record_loop_threads(e);
    static struct producer p[PRODUCERS];
    pthread_t th[PRODUCERS];
    uint64_t t0 = h_now_ms();
    for (unsigned k = 0; k < PRODUCERS; k++) {
        p[k] = (struct producer){.e = e, .id = k, .loops = L};
        cr_assert_eq(pthread_create(&th[k], NULL, producer_main, &p[k]), 0);
    }
    uint64_t retries = 0;
    for (unsigned k = 0; k < PRODUCERS; k++) {
        pthread_join(th[k], NULL);
        cr_assert_eq(p[k].error, 0, "%s: producer %u: %s%s", backend, k, rill_strerror(p[k].error),
                     p[k].error == -ETIMEDOUT ? " (a mailbox stayed full for 15 s: its loop "
                                                "stopped draining it)" : "");
        retries += p[k].retries;
    }
    const uint64_t want = (uint64_t)PRODUCERS * PER_PRODUCER;
    uint64_t end = h_now_ms() + 10000;
    for (uint32_t i = 0; i < L; i++)
        while (atomic_load_explicit(&g_mb[i].count, memory_order_acquire) < want &&
               h_now_ms() < end)
            h_sleep_ms(1);
    uint64_t took = h_now_ms() - t0;
    for (uint32_t i = 0; i < L; i++)
        cr_assert_eq(atomic_load(&g_mb[i].count), want,
                     "%s: loop %u ran %llu of %llu messages; the rest sat in its mailbox for 10 s "
                     "(the loop slept through its wake-up)", backend, i,
                     (unsigned long long)atomic_load(&g_mb[i].count), (unsigned long long)want);
    cr_assert_eq(eng_stop(e, 0), 0);
    /* The loop threads are joined: their records are ours to read. */
    for (uint32_t i = 0; i < L; i++) {
        cr_assert_eq(g_mb[i].bad_order, 0, "loop %u: messages out of order", i);
        for (unsigned k = 0; k < PRODUCERS; k++)
            cr_assert_eq(g_mb[i].next[k], PER_PRODUCER, "loop %u, producer %u", i, k);
        cr_assert(!g_mb[i].wrong_thread, "loop %u ran a message off its thread", i);
    }
    cr_log_info("%s: %llu messages to %u loops in %llu ms, %llu retries on -EAGAIN", backend,
                (unsigned long long)(want * L), L, (unsigned long long)took,
                (unsigned long long)retries);
    rill_engine_destroy(e);
    check_notes();
}

/* Every post wakes its loop: producers post one message at a time and wait for it to run, so
 * the mailbox never fills and nothing else (no I/O, no timer, no retry on -EAGAIN) would wake a
 * loop that slept through a wake-up. */
#define PINGS 50000

struct pinger {
    rill_engine *e;
    uint32_t loop;
    atomic_uint acked;
    unsigned sent;
    int error;
    uint64_t worst_us;
};

static void ping_fn(rill_loop *l, void *arg)
{
    (void)l;
    struct pinger *p = arg;
    atomic_fetch_add_explicit(&p->acked, 1, memory_order_release);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void *pinger_main(void *arg)
{
    struct pinger *p = arg;
    for (p->sent = 0; p->sent < PINGS;) {
        uint64_t t0 = now_us();
        int r = rill_engine_post(p->e, p->loop, ping_fn, p);
        if (r != 0) {
            p->error = r;
            return NULL;
        }
        p->sent++;
        while (atomic_load_explicit(&p->acked, memory_order_acquire) < p->sent) {
            if (now_us() - t0 > 3000000u) {
                p->error = -ETIMEDOUT;
                return NULL;
            }
            sched_yield();
        }
        uint64_t dt = now_us() - t0;
        if (dt > p->worst_us)
            p->worst_us = dt;
    }
    return NULL;
}

H_BACKEND_TEST(engine, mailbox_every_post_wakes_its_loop, .timeout = 120)
{
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    cr_assert_eq(rill_engine_start(e), 0);
    static struct pinger p[PRODUCERS];
    pthread_t th[PRODUCERS];
    uint64_t t0 = h_now_ms();
    for (unsigned k = 0; k < PRODUCERS; k++) {
        p[k].e = e;
        p[k].loop = k % 2;
        cr_assert_eq(pthread_create(&th[k], NULL, pinger_main, &p[k]), 0);
    }
    uint64_t worst = 0;
    for (unsigned k = 0; k < PRODUCERS; k++) {
        pthread_join(th[k], NULL);
        cr_assert_eq(p[k].error, 0,
                     "%s: producer %u, message %u to loop %u: %s%s", backend, k, p[k].sent,
                     p[k].loop,
                     rill_strerror(p[k].error),
                     p[k].error == -ETIMEDOUT ? " (posted, not run after 3 s: the loop slept "
                                                "through its wake-up)" : "");
        cr_assert_eq(atomic_load(&p[k].acked), PINGS);
        if (p[k].worst_us > worst)
            worst = p[k].worst_us;
    }
    cr_log_info("%s: %u round trips through the mailbox in %llu ms, the slowest %llu us", backend,
                PRODUCERS * PINGS, (unsigned long long)(h_now_ms() - t0),
                (unsigned long long)worst);
    cr_assert_eq(eng_stop(e, 0), 0);
    rill_engine_destroy(e);
}

/* A full mailbox: the loop is held inside a posted function while the test fills its mailbox. */

static sem_t g_entered, g_release;
static atomic_uint g_ran;
static atomic_uint g_ran_bad;
static atomic_int g_blocker_timed_out;

static void blocker_fn(rill_loop *l, void *arg)
{
    (void)l;
    (void)arg;
    sem_post(&g_entered);
    if (!sem_wait_ms(&g_release, 20000))
        atomic_store(&g_blocker_timed_out, 1);
}

static void seq_fn(rill_loop *l, void *arg)
{
    (void)l;
    unsigned k = (unsigned)(uintptr_t)arg;
    if (k != atomic_load(&g_ran))
        atomic_fetch_add(&g_ran_bad, 1);
    atomic_fetch_add(&g_ran, 1);
}

H_BACKEND_TEST(engine, mailbox_full, .timeout = 60)
{
    const uint32_t cap = 64;
    rill_engine *e = eng_create(backend, 1, 0, cap);
    sem_init(&g_entered, 0, 0);
    sem_init(&g_release, 0, 0);
    cr_assert_eq(rill_engine_start(e), 0);
    cr_assert_eq(rill_engine_post(e, 0, blocker_fn, NULL), 0);
    cr_assert(sem_wait_ms(&g_entered, 10000), "the blocking function never started");
    /* The blocker has been taken out of the mailbox: it holds `cap` more. */
    unsigned accepted = 0;
    int r = 0;
    for (unsigned k = 0; k < 4 * cap; k++) {
        r = rill_engine_post(e, 0, seq_fn, (void *)(uintptr_t)k);
        if (r != 0)
            break;
        accepted++;
    }
    cr_assert_eq(r, -EAGAIN, "a full mailbox: %s", rill_strerror(r));
    cr_assert_eq(accepted, cap, "the mailbox took %u messages, its capacity is %u", accepted, cap);
    cr_assert_eq(rill_engine_post(e, 0, seq_fn, (void *)(uintptr_t)9999), -EAGAIN,
                 "still full, nothing queued");
    sem_post(&g_release);
    uint64_t end = h_now_ms() + 10000;
    while (atomic_load(&g_ran) < accepted && h_now_ms() < end)
        h_sleep_ms(1);
    cr_assert_eq(atomic_load(&g_ran), accepted, "every accepted message runs");
    cr_assert_eq(atomic_load(&g_ran_bad), 0, "in the order posted");
    cr_assert_eq(atomic_load(&g_blocker_timed_out), 0);
    /* Room again. */
    cr_assert_eq(post_retry(e, 0, seq_fn, (void *)(uintptr_t)accepted), 0);
    end = h_now_ms() + 10000;
    while (atomic_load(&g_ran) < accepted + 1 && h_now_ms() < end)
        h_sleep_ms(1);
    cr_assert_eq(atomic_load(&g_ran), accepted + 1);
    cr_assert_eq(eng_stop(e, 0), 0);
    cr_assert_eq(atomic_load(&g_ran), accepted + 1, "nothing ran twice");
    rill_engine_destroy(e);
    check_notes();
}

static void noop_fn(rill_loop *l, void *arg)
{
    (void)l;
    (void)arg;
}

static atomic_int g_early_ran;
static void early_fn(rill_loop *l, void *arg)
{
    (void)arg;
    if (rill_loop_index(l) == 1)
        atomic_fetch_add(&g_early_ran, 1);
}

H_BACKEND_TEST(engine, post_errors, .timeout = 30)
{
    rill_engine *e = eng_create(backend, 2, RILL_ENGINE_F_NO_PIN, 0);
    cr_assert_eq(rill_engine_post(e, 2, noop_fn, NULL), -EINVAL, "index out of range");
    cr_assert_eq(rill_engine_post(e, UINT32_MAX, noop_fn, NULL), -EINVAL);
    cr_assert_eq(rill_engine_post(e, 0, NULL, NULL), -EINVAL, "NULL fn");
    /* Posted before start: runs once the loop runs. */
    cr_assert_eq(rill_engine_post(e, 1, early_fn, NULL), 0);
    cr_assert_eq(rill_engine_start(e), 0);
    uint64_t end = h_now_ms() + 5000;
    while (atomic_load(&g_early_ran) == 0 && h_now_ms() < end)
        h_sleep_ms(1);
    cr_assert_eq(atomic_load(&g_early_ran), 1, "a message posted before start ran once");
    cr_assert_eq(rill_engine_post(e, 2, noop_fn, NULL), -EINVAL);
    cr_assert_eq(rill_engine_post(e, 0, noop_fn, NULL), 0);
    cr_assert_eq(eng_stop(e, 0), 0);
    cr_assert_eq(rill_engine_post(e, 0, noop_fn, NULL), -ESHUTDOWN, "post after stop");
    cr_assert_eq(rill_engine_post(e, 1, noop_fn, NULL), -ESHUTDOWN);
    rill_engine_destroy(e);
}

/* Loops post to each other: a token goes round, each hop on the right thread. */
#define HOPS 2000
struct hop {
    rill_engine *e;
    uint32_t loops;
    unsigned left;
    int expect_loop;
    sem_t done;
};

static void hop_fn(rill_loop *l, void *arg)
{
    struct hop *h = arg;
    int i = rill_loop_index(l);
    EXPECT(i == h->expect_loop, "the token reached loop %d, not %d", i, h->expect_loop);
    EXPECT(on_loop_thread(l), "hop on loop %d off its thread", i);
    if (--h->left == 0) {
        sem_post(&h->done);
        return;
    }
    h->expect_loop = (i + 1) % (int)h->loops;
    int r;
    while ((r = rill_engine_post(h->e, (uint32_t)h->expect_loop, hop_fn, h)) == -EAGAIN)
        sched_yield();
    if (r != 0) {
        NOTE("post from loop %d: %s", i, rill_strerror(r));
        sem_post(&h->done);
    }
}

/* Starts e (2 loops), sends the token round HOPS times, stops and destroys e. */
static void run_hops(rill_engine *e)
{
    cr_assert_eq(rill_engine_start(e), 0);
    record_loop_threads(e);
    static struct hop h;
    h.e = e;
    h.loops = 2;
    h.left = HOPS;
    h.expect_loop = 0;
    sem_init(&h.done, 0, 0);
    cr_assert_eq(rill_engine_post(e, 0, hop_fn, &h), 0);
    cr_assert(sem_wait_ms(&h.done, 20000), "the token stopped after %u hops", HOPS - h.left);
    cr_assert_eq(h.left, 0);
    cr_assert_eq(eng_stop(e, 0), 0);
    rill_engine_destroy(e);
    check_notes();
}

H_BACKEND_TEST(engine, post_between_loops, .timeout = 60)
{
    run_hops(eng_create(backend, 2, pin_flags(2), 0));
}

/* The same hops with IORING_OP_MSG_RING switched off (rill_loop_config.disable): loops wake
 * each other through their eventfds, as on a kernel without it, and no post is lost. */
H_BACKEND_TEST(engine, post_between_loops_without_msg_ring, .timeout = 60)
{
    struct rill_engine_config cfg;
    eng_config(backend, &cfg, 2, pin_flags(2), 0);
    cfg.loop.disable = RILL_CAP_MSG_RING;
    rill_engine *e = eng_create_cfg(backend, &cfg);
    cr_assert_eq(rill_loop_caps(rill_engine_loop(e, 0)) & RILL_CAP_MSG_RING, 0);
    run_hops(e);
}

/* Posting while the engine stops: every post that returned 0 runs exactly once (none is lost
 * in a mailbox whose loop has gone), the rest get -ESHUTDOWN, nothing else. */
struct stop_producer {
    rill_engine *e;
    unsigned id;
    uint32_t posted[2];
    int error;
};

static atomic_int g_stop_producers_started;

static void *stop_producer_main(void *arg)
{
    struct stop_producer *p = arg;
    atomic_fetch_add(&g_stop_producers_started, 1);
    uint64_t end = h_now_ms() + 15000;
    bool open[2] = {true, true};
    while ((open[0] || open[1]) && h_now_ms() < end)
        for (uint32_t i = 0; i < 2; i++) {
            if (!open[i])
                continue;
            int r = rill_engine_post(p->e, i, mb_fn, mb_arg(p->id, p->posted[i]));
            if (r == 0)
                p->posted[i]++;
            else if (r == -ESHUTDOWN)
                open[i] = false;
            else if (r != -EAGAIN) {
                p->error = r;
                return NULL;
            }
        }
    if (open[0] || open[1])
        p->error = -ETIMEDOUT;
    return NULL;
}

H_BACKEND_TEST(engine, post_through_stop, .timeout = 60)
{
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    cr_assert_eq(rill_engine_start(e), 0);
    record_loop_threads(e);
    static struct stop_producer p[PRODUCERS];
    pthread_t th[PRODUCERS];
    for (unsigned k = 0; k < PRODUCERS; k++) {
        p[k] = (struct stop_producer){.e = e, .id = k};
        cr_assert_eq(pthread_create(&th[k], NULL, stop_producer_main, &p[k]), 0);
    }
    while (atomic_load(&g_stop_producers_started) < PRODUCERS)
        h_sleep_ms(1);
    h_sleep_ms(50);
    cr_assert_eq(eng_stop(e, 0), 0);
    for (unsigned k = 0; k < PRODUCERS; k++) {
        pthread_join(th[k], NULL);
        cr_assert_eq(p[k].error, 0, "producer %u: %s", k, rill_strerror(p[k].error));
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < 2; i++) {
        uint64_t want = 0;
        for (unsigned k = 0; k < PRODUCERS; k++) {
            want += p[k].posted[i];
            cr_assert_eq(g_mb[i].next[k], p[k].posted[i],
                         "loop %u, producer %u: %u posts accepted, %u run", i, k,
                         p[k].posted[i], g_mb[i].next[k]);
        }
        cr_assert_eq(atomic_load(&g_mb[i].count), want, "loop %u ran %llu of %llu accepted posts",
                     i, (unsigned long long)atomic_load(&g_mb[i].count), (unsigned long long)want);
        cr_assert_eq(g_mb[i].bad_order, 0);
        total += want;
    }
    cr_assert_gt(total, 0);
    cr_log_info("%s: %llu posts accepted before the stop, all run", backend,
                (unsigned long long)total);
    rill_engine_destroy(e);
    check_notes();
}
