/* One load thread: its own rill loop, its share of the connections, and the time line.
 *
 * Time is in whole-second ticks from t_begin, which every worker shares: tick W (the warm-up
 * length) opens the measured window, tick W + D closes it, and at every tick the worker hands
 * that second's figures to the main thread. The worker crosses each tick by itself: it runs the
 * loop with rill_loop_run_once_us() and a timeout no later than the next tick, so a peer that
 * never answers, or a loop with nothing to do, cannot hold it past the deadline. The window's loop
 * counters are read here, on the loop's own thread, so they are exact, not a torn cross-thread
 * snapshot. */
#include <errno.h>
#include <sched.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <string.h>

#include "load.h"

#define SWEEP_NS 10000000u /* how often lost UDP requests are looked for */

int worker_init(struct worker *w, const struct load_opts *o, int index, uint32_t first,
                uint32_t n)
{
    memset(w, 0, sizeof *w);
    w->o = o;
    w->index = index;
    w->cpu = o->ncpus ? o->cpus[index % o->ncpus] : -1;
    w->first_conn = first;
    w->nconns = n;
    hist_init(&w->total);
    hist_init(&w->uncorr);
    hist_init(&w->connect);
    hist_init(&w->second);
    if (o->count) /* -n: shares as even as division allows */
        w->quota = (uint64_t)(index + 1) * o->count / o->threads -
                   (uint64_t)index * o->count / o->threads;
    hist_init(&w->live.h);
    pthread_mutex_init(&w->live.mu, NULL);
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.backend = o->backend;
    /* A closed connection's slot is free again once on_close has run, and we reconnect only
     * after that, so the connections plus a margin always fit. */
    if (n + 64u > cfg.max_conns)
        cfg.max_conns = n + 64u;
    int r = rill_loop_create(&cfg, &w->loop);
    if (r < 0)
        return r;
    w->backend = rill_loop_backend_name(w->loop);
    w->caps = rill_loop_caps(w->loop);
    return 0;
}

void worker_fini(struct worker *w)
{
    rill_loop_destroy(w->loop); /* NULL when the thread already did it */
    w->loop = NULL;
    conns_fini(w);
    pthread_mutex_destroy(&w->live.mu);
}

void worker_error(struct worker *w, enum err_kind kind, int status)
{
    if (w->stopping)
        return;
    w->sec_errors++;
    if (w->measuring)
        errors_add(&w->errs, kind, status);
    else
        w->warm_errors++;
}

static void pin(const struct worker *w)
{
    if (w->cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    int r = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (r != 0)
        fprintf(stderr, "rill-load: thread %d: cannot pin to CPU %d: %s\n", w->index, w->cpu,
                rill_strerror(-r));
}

/* Runs the loop until the monotonic clock reaches `deadline` (ns), or -n is reached. Returns 0
 * or the loop's negative errno.
 *
 * The loop waits in microseconds: up to the deadline (rounded up, so a tick is crossed at most
 * a microsecond late when idle), and on UDP with requests out up to the next sweep for lost
 * replies. Open-loop sends need no wake-up of their own here: the schedule's timer (sched.c)
 * shortens the loop's wait to the next due time and sends from inside the loop. */
static int run_until(struct worker *w, uint64_t deadline)
{
    for (;;) {
        uint64_t now = mono_ns();
        if (now >= deadline || w->done || w->fatal)
            return w->fatal;
        if (now - w->last_sweep >= SWEEP_NS) { /* UDP: give up replies past --timeout */
            w->last_sweep = now;
            conns_sweep(w, now);
        }
        uint64_t wait = deadline - now;
        if (w->o->proto == PROTO_UDP && w->out && wait > SWEEP_NS)
            wait = SWEEP_NS; /* wake to look for lost datagrams */
        if (wait > 1000000000u)
            wait = 1000000000u;
        int r = rill_loop_run_once_us(w->loop, (int64_t)((wait + 999u) / 1000u));
        if (r < 0)
            return r;
    }
}

double worker_busy(const struct worker *w)
{
    if (w->w1 <= w->w0)
        return 0;
    return (double)(w->cpu1 - w->cpu0) / (double)(w->w1 - w->w0);
}

static void window_start(struct worker *w)
{
    rill_loop_stats(w->loop, &w->s0);
    w->w0 = mono_ns();
    w->cpu0 = thread_cpu_ns();
    w->measuring = true;
}

static void window_end(struct worker *w)
{
    rill_loop_stats(w->loop, &w->s1);
    w->w1 = mono_ns();
    w->cpu1 = thread_cpu_ns();
    w->measuring = false;
    w->inflight_end = conns_inflight(w, w->w1, &w->oldest_end);
    w->stopping = true; /* from here on, closes are ours */
}

/* Hands this second's figures to the main thread and starts the next second afresh. */
static void publish(struct worker *w, uint32_t k)
{
    pthread_mutex_lock(&w->live.mu);
    hist_merge(&w->live.h, &w->second);
    w->live.requests += w->sec_requests;
    w->live.errors += w->sec_errors;
    w->live.open = w->open;
    w->live.done = w->done || w->fatal;
    pthread_mutex_unlock(&w->live.mu);
    atomic_store_explicit(&w->live.second, k, memory_order_release);
    if (w->second.count)
        hist_init(&w->second);
    w->sec_requests = w->sec_errors = 0;
}

void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct load_opts *o = w->o;
    uint32_t last = o->warmup_s + o->duration_s;
    pin(w);
    prctl(PR_SET_TIMERSLACK, 1ul, 0, 0, 0); /* sleeps end on time, not up to 50 us later */
    if (o->warmup_s == 0)
        window_start(w);
    int r = conns_start(w);
    uint32_t k = 1;
    for (; r == 0 && k <= last; k++) {
        r = run_until(w, w->t_begin + (uint64_t)k * 1000000000u);
        if (r < 0 || w->done)
            break;
        if (k == o->warmup_s)
            window_start(w);
        if (k == last)
            window_end(w);
        publish(w, k);
    }
    if (r < 0 || w->done) {
        if (r < 0)
            w->fatal = r;
        if (!w->w0)
            window_start(w);
        window_end(w);
        publish(w, k > last ? last : k); /* the main thread stops waiting for this worker */
    }
    /* Closing the connections runs their on_close callbacks here, on the loop's own thread. */
    rill_loop_destroy(w->loop);
    w->loop = NULL;
    return NULL;
}
