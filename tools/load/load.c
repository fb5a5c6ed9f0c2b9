/* rill-load: a load generator built on rill's own client side.
 *
 * Closed loop: each connection keeps --depth requests in flight and sends the next only when a
 * reply has come back complete (and, for echo, byte-exact). Open loop (-R): requests fall due on
 * a schedule whether or not the server keeps up, and latency runs from the due time.
 *
 * main() parses the options, makes one loop per thread (so a backend that cannot start is
 * reported before anything runs), starts the threads, then keeps the clock: once a second it
 * collects what the workers published and prints a line; at the window's edges it reads CPU
 * times. The workers stop at the deadline (or at -n) on their own; main waits for them only a
 * short grace longer, then reports. See load.h for the map of the other files. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "load.h"

#define JOIN_GRACE_S 2        /* how long past the deadline a worker may take to stop */
#define TICK_WAIT_MAX_MS 500  /* how long a live line waits for a late worker */

static struct worker workers[LOAD_MAX_THREADS];
static struct second *series; /* one entry per tick */
static uint32_t nseries;

static void sleep_until(uint64_t t_ns)
{
    struct timespec ts = {(time_t)(t_ns / 1000000000u), (long)(t_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* Every connection is a descriptor: lift the soft limit towards the hard one when needed. */
static void raise_nofile(uint64_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= want)
        return;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < want)
        fprintf(stderr, "rill-load: only %llu file descriptors allowed (ulimit -n); expect "
                        "EMFILE errors\n", (unsigned long long)rl.rlim_cur);
}

/* Creates every worker's loop; on failure destroys those made and returns the error. */
static int create_workers(const struct load_opts *o)
{
    for (uint32_t i = 0; i < o->threads; i++) {
        /* Connections are dealt out as evenly as division allows. */
        uint32_t first = (uint32_t)((uint64_t)i * o->conns / o->threads);
        uint32_t next = (uint32_t)((uint64_t)(i + 1) * o->conns / o->threads);
        int r = worker_init(&workers[i], o, (int)i, first, next - first);
        if (r < 0) {
            fprintf(stderr, "rill-load: cannot create a loop%s: %s\n",
                    o->backend == RILL_BACKEND_URING   ? " on io_uring"
                    : o->backend == RILL_BACKEND_EPOLL ? " on epoll"
                                                       : "",
                    rill_strerror(r));
            for (uint32_t j = 0; j <= i; j++)
                worker_fini(&workers[j]);
            return r;
        }
    }
    return 0;
}

static bool all_done_one(struct worker *w)
{
    pthread_mutex_lock(&w->live.mu);
    bool d = w->live.done;
    pthread_mutex_unlock(&w->live.mu);
    return d;
}

static bool all_done(uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (!all_done_one(&workers[i]))
            return false;
    return true;
}

/* Waits until every worker has published tick k, or a little longer than it should take. */
static void wait_tick(uint32_t n, uint32_t k)
{
    for (int waited = 0; waited < TICK_WAIT_MAX_MS; waited++) {
        uint32_t i = 0;
        while (i < n && (atomic_load_explicit(&workers[i].live.second, memory_order_acquire) >= k ||
                         all_done_one(&workers[i])))
            i++;
        if (i == n)
            return;
        usleep(1000);
    }
}

/* Joins every worker, giving each until `deadline` (CLOCK_REALTIME, as pthread wants).
 * Returns 0, or -ETIMEDOUT when one of them is stuck. */
static int join_workers(uint32_t n, const struct timespec *deadline)
{
    for (uint32_t i = 0; i < n; i++) {
        int r = pthread_timedjoin_np(workers[i].tid, NULL, deadline);
        if (r != 0) {
            fprintf(stderr, "rill-load: thread %u did not stop %d s after the deadline: %s\n", i,
                    JOIN_GRACE_S, rill_strerror(-r));
            return -ETIMEDOUT;
        }
    }
    return 0;
}

static void print_header(const struct load_opts *o)
{
    FILE *f = load_out;
    fprintf(f, "rill-load %s threads=%u connections=%u depth=%u ", o->target, o->threads, o->conns,
            o->depth);
    if (o->proto != PROTO_HTTP && o->size_min == o->size_max)
        fprintf(f, "size=%zu ", o->size_min);
    else if (o->proto != PROTO_HTTP)
        fprintf(f, "size=%zu:%zu ", o->size_min, o->size_max);
    if (o->rate > 0)
        fprintf(f, "rate=%g dist=%s ramp=%us ", o->rate,
                o->dist == DIST_POISSON ? "poisson" : "even", o->ramp_s);
    if (o->churn)
        fprintf(f, "churn=%u ", o->churn);
    if (o->count)
        fprintf(f, "requests=%llu ", (unsigned long long)o->count);
    fprintf(f, "warmup=%us duration=%us backend=%s", o->warmup_s, o->duration_s,
            workers[0].backend);
    if (o->ncpus) {
        fprintf(f, " pin=");
        for (int i = 0; i < o->ncpus && i < (int)o->threads; i++)
            fprintf(f, "%s%d", i ? "," : "", o->cpus[i]);
    }
    if (strcmp(o->uri, o->target) != 0)
        fprintf(f, " (%s)", o->uri);
    fprintf(f, "\n");
    fflush(f);
}

/* Keeps the clock from tick 0 to the deadline; fills the CPU marks at the window's edges. */
static int run(const struct load_opts *o, struct cpu_mark *c0, struct cpu_mark *c1)
{
    uint32_t n = o->threads, last = o->warmup_s + o->duration_s;
    uint64_t t_begin = mono_ns();
    for (uint32_t i = 0; i < n; i++)
        workers[i].t_begin = t_begin;
    if (o->warmup_s == 0)
        cpu_mark_take(c0, o->server_pid);
    for (uint32_t i = 0; i < n; i++) {
        int r = pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]);
        if (r != 0) {
            fprintf(stderr, "rill-load: cannot start thread %u: %s\n", i, rill_strerror(-r));
            exit(1); /* the threads already running would otherwise need a stop protocol */
        }
    }
    bool c1_taken = false;
    for (uint32_t k = 1; k <= last; k++) {
        sleep_until(t_begin + (uint64_t)k * 1000000000u);
        if (k == o->warmup_s)
            cpu_mark_take(c0, o->server_pid);
        if (k == last) {
            cpu_mark_take(c1, o->server_pid);
            c1_taken = true;
        }
        wait_tick(n, k);
        report_second(workers, n, k, o, &series[nseries++]);
        if (k > o->warmup_s && all_done(n)) /* -n reached by every thread */
            break;
    }
    if (!c1_taken)
        cpu_mark_take(c1, o->server_pid);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += JOIN_GRACE_S;
    return join_workers(n, &dl);
}

static int finish(const struct load_opts *o, const struct cpu_mark *c0,
                  const struct cpu_mark *c1)
{
    static struct totals t; /* three histograms' worth: not on the stack */
    report_gather(workers, o->threads, o, c0, c1, &t);
    int rc = report_final(&t, o, workers[0].backend, workers[0].caps);
    if (o->json) {
        struct run_info ri = {o, &t, workers[0].backend, workers[0].caps, series, nseries};
        int r = json_write_run(o->json, &ri);
        if (r < 0) {
            fprintf(stderr, "rill-load: cannot write %s: %s\n", o->json, rill_strerror(r));
            rc = 1;
        }
    }
    return rc;
}

int main(int argc, char **argv)
{
    load_out = stdout;
    if (argc > 1 && !strcmp(argv[1], "merge"))
        return merge_main(argc - 1, argv + 1);
    struct load_opts o;
    int r = opts_parse(argc, argv, &o);
    if (r != 0)
        return r < 0 ? 0 : r; /* -1: --help was printed */
    if (o.json && !strcmp(o.json, "-"))
        load_out = stderr; /* stdout carries the JSON alone */
    if ((r = opts_resolve(&o)) != 0)
        return r; /* 2: a bad address or port; 1: the name does not resolve */
    signal(SIGPIPE, SIG_IGN); /* rill sends with MSG_NOSIGNAL; this is for anything else */
    raise_nofile((uint64_t)o.conns + 64);
    series = calloc((size_t)o.warmup_s + o.duration_s + 1, sizeof *series);
    if (!series || conns_global_init(&o) < 0) {
        fprintf(stderr, "rill-load: out of memory\n");
        return 1;
    }
    if (create_workers(&o) < 0)
        return 1;
    print_header(&o);

    struct cpu_mark c0 = {0}, c1 = {0};
    if (run(&o, &c0, &c1) < 0) {
        /* A thread is stuck inside the engine: its memory cannot be freed safely, and waiting
         * longer is what this program promises never to do. */
        fflush(NULL);
        _exit(1);
    }
    for (uint32_t i = 0; i < o.threads; i++) {
        if (workers[i].fatal == -EPROTONOSUPPORT) { /* the engine cannot open such sockets */
            fprintf(stderr, "rill-load: %s: rill_connect does not support this socket type "
                            "(%s)\n", o.target, rill_strerror(workers[i].fatal));
            return 1;
        }
    }
    int rc = finish(&o, &c0, &c1);
    for (uint32_t i = 0; i < o.threads; i++)
        worker_fini(&workers[i]);
    conns_global_fini();
    free(series);
    return rc;
}
