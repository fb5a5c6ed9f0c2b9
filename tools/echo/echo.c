/* rill-echo: an echo server on rill, the benchmark target.
 *
 * Each thread runs its own loop with its own SO_REUSEPORT listener on every --listen address, so
 * the kernel spreads connections over threads and nothing is shared. Received buffers go back out
 * with rill_send_bufs(): no copy. A client that sends faster than it reads is slowed down by
 * pausing reads at the write queue's high-water mark and resuming on drain, so memory stays
 * bounded whatever the peer does.
 *
 * The multi-loop part here is deliberately small; the engine issue moves it into rill_engine. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"

#define MAX_LISTEN 16
#define MAX_THREADS 256

struct worker {
    pthread_t tid;
    int index;
    rill_loop *loop;
    rill_listener *ls[MAX_LISTEN];
    int err;
};

static const char *listen_uris[MAX_LISTEN];
static int n_listen;
static char bound_uris[MAX_LISTEN][320];
static struct rill_loop_config loop_cfg;
static bool pin = true;
static pthread_barrier_t ready;

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (const char *)rill_buf_data(buf)),
                              (uint32_t)len};
    int r = rill_send_bufs(c, &s, 1, NULL, NULL);
    if (r < 0) {
        rill_close(c);
        return;
    }
    /* Backpressure: a peer that does not read stops being read from. */
    if (rill_conn_write_queued(c) >= (1u << 20))
        rill_read_pause(c);
}

static void on_drain(rill_conn *c, void *ctx)
{
    (void)ctx;
    rill_read_resume(c);
}

static const struct rill_conn_handler echo_handler = {
    .on_data = on_data,
    .on_drain = on_drain,
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->index % CPU_SETSIZE, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set); /* best effort */
    }
    pthread_barrier_wait(&ready);
    if (w->err == 0)
        w->err = rill_loop_run(w->loop);
    /* Destroyed here, on the thread that ran it: an io_uring ring belongs to that thread. */
    rill_loop_destroy(w->loop);
    w->loop = NULL;
    return NULL;
}

/* Replaces port 0 with the port the first thread got, so all threads share one port. */
static void remember_bound(int i, const char *uri, rill_listener *ls)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int port = rill_listener_port(ls);
    const char *colon = strrchr(uri, ':');
    size_t cap = sizeof bound_uris[i];
    if (strlen(uri) + 8 > cap) /* URIs are far shorter; keep as given */
        port = 0;
    if (port && colon && !strcmp(colon, ":0") && rill_listener_addr(ls, &ss, &len) == 0)
        snprintf(bound_uris[i], cap, "%.*s:%d", (int)(colon - uri), uri, port);
    else
        snprintf(bound_uris[i], cap, "%.*s", (int)(cap - 1), uri);
}

static int start_worker(struct worker *w)
{
    int r = rill_loop_create(&loop_cfg, &w->loop);
    if (r < 0) {
        fprintf(stderr, "rill-echo: loop: %s\n", rill_strerror(r));
        return r;
    }
    struct rill_listen_config lc = {.handler = &echo_handler, .flags = RILL_LISTEN_F_REUSEPORT};
    for (int i = 0; i < n_listen; i++) {
        const char *uri = w->index == 0 ? listen_uris[i] : bound_uris[i];
        r = rill_listen(w->loop, uri, &lc, &w->ls[i]);
        if (r < 0) {
            fprintf(stderr, "rill-echo: listen %s: %s\n", uri, rill_strerror(r));
            return r;
        }
        if (w->index == 0)
            remember_bound(i, uri, w->ls[i]);
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rill-echo [options]\n"
            "  -l, --listen URI    address to serve, repeatable (default tcp://127.0.0.1:7000);\n"
            "                      tcp://host:port, tcp://[v6]:port; port 0 picks a free port\n"
            "  -b, --backend NAME  auto, epoll or uring (default auto; RILL_BACKEND overrides)\n"
            "  -t, --threads N     loops, one per thread (default: number of CPUs)\n"
            "      --no-pin        do not pin thread i to CPU i\n"
            "  -s, --stats         print one line of counters per second\n"
            "  -h, --help          this text\n"
            "Prints \"listening URI backend=NAME caps=0x..\" per address once ready; exits\n"
            "cleanly on SIGINT or SIGTERM.\n");
}

static void print_stats(struct worker *ws, int n, struct rill_loop_stats *prev)
{
    struct rill_loop_stats sum = {0};
    for (int i = 0; i < n; i++) {
        struct rill_loop_stats s;
        rill_loop_stats(ws[i].loop, &s); /* approximate across threads: fine for a status line */
        sum.accepts += s.accepts;
        sum.conns_open += s.conns_open;
        sum.bytes_in += s.bytes_in;
        sum.bytes_out += s.bytes_out;
        sum.sys_read += s.sys_read;
        sum.sys_write += s.sys_write;
        sum.bufs_in_use += s.bufs_in_use;
        sum.emfile_events += s.emfile_events;
    }
    printf("conns=%llu accepts/s=%llu in=%.1fMB/s out=%.1fMB/s reads/s=%llu writes/s=%llu "
           "bufs=%llu emfile=%llu\n",
           (unsigned long long)sum.conns_open, (unsigned long long)(sum.accepts - prev->accepts),
           (double)(sum.bytes_in - prev->bytes_in) / 1e6,
           (double)(sum.bytes_out - prev->bytes_out) / 1e6,
           (unsigned long long)(sum.sys_read - prev->sys_read),
           (unsigned long long)(sum.sys_write - prev->sys_write),
           (unsigned long long)sum.bufs_in_use, (unsigned long long)sum.emfile_events);
    fflush(stdout);
    *prev = sum;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'}, {"backend", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'}, {"no-pin", no_argument, 0, 'P'},
        {"stats", no_argument, 0, 's'},         {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    rill_loop_config_init(&loop_cfg);
    long threads = sysconf(_SC_NPROCESSORS_ONLN);
    bool stats = false;
    int o;
    while ((o = getopt_long(argc, argv, "l:b:t:sh", opts, NULL)) != -1) {
        switch (o) {
        case 'l':
            if (n_listen == MAX_LISTEN) {
                fprintf(stderr, "rill-echo: at most %d --listen\n", MAX_LISTEN);
                return 2;
            }
            listen_uris[n_listen++] = optarg;
            break;
        case 'b':
            if (!strcmp(optarg, "epoll"))
                loop_cfg.backend = RILL_BACKEND_EPOLL;
            else if (!strcmp(optarg, "uring") || !strcmp(optarg, "io_uring"))
                loop_cfg.backend = RILL_BACKEND_URING;
            else if (!strcmp(optarg, "auto"))
                loop_cfg.backend = RILL_BACKEND_AUTO;
            else {
                fprintf(stderr, "rill-echo: --backend must be auto, epoll or uring\n");
                return 2;
            }
            break;
        case 't':
            threads = strtol(optarg, NULL, 10);
            if (threads < 1 || threads > MAX_THREADS) {
                fprintf(stderr, "rill-echo: --threads must be 1..%d\n", MAX_THREADS);
                return 2;
            }
            break;
        case 'P':
            pin = false;
            break;
        case 's':
            stats = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (n_listen == 0)
        listen_uris[n_listen++] = "tcp://127.0.0.1:7000";

    /* Signals are taken synchronously by the main thread only. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    static struct worker ws[MAX_THREADS];
    int n = (int)threads, rc = 0;
    for (int i = 0; i < n; i++) {
        ws[i].index = i;
        if (start_worker(&ws[i]) < 0) {
            for (int j = 0; j <= i; j++)
                rill_loop_destroy(ws[j].loop);
            return 1;
        }
    }
    for (int i = 0; i < n_listen; i++)
        printf("listening %s threads=%d backend=%s caps=0x%x\n", bound_uris[i], n,
               rill_loop_backend_name(ws[0].loop), rill_loop_caps(ws[0].loop));
    fflush(stdout);
    pthread_barrier_init(&ready, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++)
        pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]);
    pthread_barrier_wait(&ready);

    struct rill_loop_stats prev = {0};
    for (;;) {
        struct timespec one = {1, 0};
        int sig = sigtimedwait(&sigs, NULL, &one);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (stats)
            print_stats(ws, n, &prev);
    }
    for (int i = 0; i < n; i++)
        rill_loop_stop(ws[i].loop);
    for (int i = 0; i < n; i++) {
        pthread_join(ws[i].tid, NULL);
        if (ws[i].err < 0) {
            fprintf(stderr, "rill-echo: loop %d: %s\n", i, rill_strerror(ws[i].err));
            rc = 1;
        }
    }
    return rc;
}
