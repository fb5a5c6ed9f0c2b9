/* The engine under ThreadSanitizer: two loops, four producer threads posting numbered messages
 * to both loops, client threads making short echo connections to a reuseport listener, and the
 * main thread polling rill_engine_stats() all the while; then a graceful stop (the producers
 * still posting until they are refused with -ESHUTDOWN) and destroy.
 *
 * Success: every post that returned 0 was run exactly once, in order per producer and loop; every
 * connection was served; the counters added up; TSan stayed quiet. Runs the epoll backend, then
 * io_uring when it is available (or only the backend named in argv[1]: "epoll" or "uring").
 * A plain program (Criterion cannot start under TSan): returns 0 on success, bounded in time. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"

#define LOOPS 2
#define PRODUCERS 4
#define CLIENTS 2
#define RUN_MS 1000u   /* how long producers and clients keep going */
#define BOUND_MS 10000u /* a hard bound on any wait */
#define WATCHDOG_S 60    /* the whole program */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static atomic_int failures;

__attribute__((format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    if (atomic_fetch_add(&failures, 1) < 10) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "stress_engine: FAIL: ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

/* ---- the mailbox side ----------------------------------------------------------------------- */

/* Written only by loop i's thread; read by main after the loop threads were joined. */
struct loop_rec {
    uint32_t next[PRODUCERS];
    uint64_t count;
    uint64_t out_of_order;
    char pad[64];
};
static struct loop_rec recs[LOOPS];

static void msg_fn(rill_loop *l, void *arg)
{
    int i = rill_loop_index(l);
    if (i < 0 || i >= LOOPS) {
        fail("a message ran on loop %d", i);
        return;
    }
    uintptr_t v = (uintptr_t)arg;
    unsigned p = (unsigned)(v >> 32) - 1;
    uint32_t seq = (uint32_t)v;
    if (p >= PRODUCERS) {
        fail("a message from producer %u", p);
        return;
    }
    struct loop_rec *r = &recs[i];
    if (seq != r->next[p])
        r->out_of_order++;
    r->next[p] = seq + 1;
    r->count++;
}

struct producer {
    rill_engine *e;
    unsigned id;
    uint32_t posted[LOOPS]; /* messages accepted per loop (the next sequence number) */
    uint64_t retries;
    int error;
};

/* Posts until the engine refuses with -ESHUTDOWN: producers keep going right through the
 * stop, so a post that was accepted while the loops wound down must still run. */
static void *producer_main(void *arg)
{
    struct producer *p = arg;
    uint64_t bound = now_ms() + BOUND_MS;
    bool open[LOOPS];
    int nopen = LOOPS;
    for (int i = 0; i < LOOPS; i++)
        open[i] = true;
    while (nopen > 0) {
        if (now_ms() > bound) {
            p->error = -ETIMEDOUT;
            return NULL;
        }
        for (int burst = 0; burst < 64; burst++)
            for (uint32_t i = 0; i < LOOPS; i++) {
                if (!open[i])
                    continue;
                void *arg2 = (void *)(((uintptr_t)(p->id + 1) << 32) | p->posted[i]);
                int r = rill_engine_post(p->e, i, msg_fn, arg2);
                if (r == 0) {
                    p->posted[i]++;
                } else if (r == -EAGAIN) {
                    p->retries++;
                    sched_yield();
                } else if (r == -ESHUTDOWN) {
                    open[i] = false;
                    nopen--;
                } else {
                    p->error = r;
                    return NULL;
                }
            }
    }
    return NULL;
}

/* ---- the echo side -------------------------------------------------------------------------- */

static void echo_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    int r = rill_send_bufs(c, &s, 1, NULL, NULL);
    if (r != 0)
        fail("echo send: %s", rill_strerror(r));
}

static atomic_long server_closes;

static void echo_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)ctx;
    if (status != 0)
        fail("server on_close: %s", rill_strerror(status));
    atomic_fetch_add(&server_closes, 1);
}

static const struct rill_conn_handler echo_h = {.on_data = echo_data, .on_close = echo_close};

struct client {
    int port, id;
    long served;
    int error;
};

static int one_echo(int port, unsigned seed)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    char out[32], in[32];
    for (size_t k = 0; k < sizeof out; k++)
        out[k] = (char)(seed * 31u + k);
    if (send(fd, out, sizeof out, MSG_NOSIGNAL) != (ssize_t)sizeof out) {
        r = -EIO;
    } else {
        size_t got = 0;
        while (got < sizeof in) {
            ssize_t n = recv(fd, in + got, sizeof in - got, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                r = n < 0 ? -errno : -EPIPE;
                break;
            }
            got += (size_t)n;
        }
        if (r == 0 && memcmp(in, out, sizeof in) != 0)
            r = -EBADMSG;
    }
    close(fd);
    return r;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    uint64_t stop_at = now_ms() + RUN_MS;
    while (now_ms() < stop_at) {
        int r = one_echo(c->port, (unsigned)(c->id * 100000 + c->served));
        if (r != 0) {
            c->error = r;
            return NULL;
        }
        c->served++;
    }
    return NULL;
}

/* ---- one run -------------------------------------------------------------------------------- */

static int run(rill_backend backend, const char *name)
{
    memset(recs, 0, sizeof recs);
    atomic_store(&server_closes, 0);
    cpu_set_t mask;
    CPU_ZERO(&mask);
    sched_getaffinity(0, sizeof mask, &mask);
    struct rill_engine_config cfg;
    rill_engine_config_init(&cfg);
    cfg.loops = LOOPS;
    cfg.flags = CPU_COUNT(&mask) >= LOOPS ? 0 : RILL_ENGINE_F_NO_PIN;
    cfg.loop.backend = backend;
    rill_engine *e;
    int r = rill_engine_create(&cfg, &e);
    if (backend == RILL_BACKEND_URING &&
        (r == -ENOSYS || r == -EPERM || r == -ENOMEM || r == -EOPNOTSUPP)) {
        printf("stress_engine: %s unavailable here (%s): skipped\n", name, rill_strerror(r));
        return 0;
    }
    if (r != 0) {
        fprintf(stderr, "stress_engine: rill_engine_create(%s): %s\n", name, rill_strerror(r));
        return 1;
    }
    struct rill_listen_config lc = {.handler = &echo_h};
    rill_steering st;
    int port = rill_engine_listen(e, "tcp://127.0.0.1:0", &lc, 0, &st);
    if (port <= 0) {
        fprintf(stderr, "stress_engine: rill_engine_listen: %s\n", rill_strerror(port));
        return 1;
    }
    if ((r = rill_engine_start(e)) != 0) {
        fprintf(stderr, "stress_engine: rill_engine_start: %s\n", rill_strerror(r));
        return 1;
    }

    uint64_t t0 = now_ms();
    static struct producer prod[PRODUCERS];
    static struct client cli[CLIENTS];
    pthread_t pt[PRODUCERS], ct[CLIENTS];
    for (unsigned k = 0; k < PRODUCERS; k++) {
        prod[k] = (struct producer){.e = e, .id = k};
        if (pthread_create(&pt[k], NULL, producer_main, &prod[k]) != 0)
            return 1;
    }
    for (int k = 0; k < CLIENTS; k++) {
        cli[k] = (struct client){.port = port, .id = k};
        if (pthread_create(&ct[k], NULL, client_main, &cli[k]) != 0)
            return 1;
    }

    /* Poll the counters while all of that runs. */
    long snapshots = 0, eagain = 0;
    uint64_t last_accepts = 0;
    while (now_ms() < t0 + RUN_MS) {
        struct rill_loop_stats per[LOOPS], sum;
        r = rill_engine_stats(e, per, LOOPS, &sum);
        if (r == -EAGAIN) {
            eagain++;
            continue;
        }
        if (r != LOOPS) {
            fail("rill_engine_stats: %s (%d)", rill_strerror(r), r);
            break;
        }
        snapshots++;
        uint64_t acc = 0, open = 0, bytes = 0;
        for (int i = 0; i < LOOPS; i++) {
            acc += per[i].accepts;
            open += per[i].conns_open;
            bytes += per[i].bytes_in;
        }
        if (acc != sum.accepts || open != sum.conns_open || bytes != sum.bytes_in)
            fail("stats: the sum is not the sum of the loops (accepts %llu vs %llu)", (unsigned long long)acc, (unsigned long long)sum.accepts);
        if (sum.accepts < last_accepts)
            fail("stats: accepts went backwards (%llu < %llu)", (unsigned long long)sum.accepts, (unsigned long long)last_accepts);
        last_accepts = sum.accepts;
        sleep_us(500);
    }

    long posted = 0, retries = 0, served = 0;
    for (int k = 0; k < CLIENTS; k++) {
        pthread_join(ct[k], NULL);
        if (cli[k].error)
            fail("client %d: %s", k, strerror(-cli[k].error));
        served += cli[k].served;
    }
    /* Let the last server-side closes (the clients closed first) finish before the stop. */
    uint64_t bound = now_ms() + BOUND_MS;
    while (atomic_load(&server_closes) < served && now_ms() < bound)
        sleep_us(1000);

    /* Stop while the producers are still posting. */
    uint64_t ts = now_ms();
    r = rill_engine_stop(e, 1000);
    uint64_t stop_took = now_ms() - ts;
    if (r != 0)
        fail("rill_engine_stop: %s", rill_strerror(r));
    if (stop_took > 2000)
        fail("rill_engine_stop(1000) took %llu ms", (unsigned long long)stop_took);
    for (unsigned k = 0; k < PRODUCERS; k++) {
        pthread_join(pt[k], NULL);
        if (prod[k].error)
            fail("producer %u: %s", k, rill_strerror(prod[k].error));
        for (int i = 0; i < LOOPS; i++)
            posted += prod[k].posted[i];
        retries += (long)prod[k].retries;
    }
    if (rill_engine_post(e, 0, msg_fn, (void *)(uintptr_t)1) != -ESHUTDOWN)
        fail("a post after the stop was not refused with -ESHUTDOWN");

    /* Stopped: every message accepted before the stop ran exactly once, in order. */
    for (int i = 0; i < LOOPS; i++) {
        uint64_t want = 0;
        for (unsigned k = 0; k < PRODUCERS; k++) {
            want += prod[k].posted[i];
            if (recs[i].next[k] != prod[k].posted[i])
                fail("loop %d, producer %u: ran up to %u, posted %u", i, k, recs[i].next[k], prod[k].posted[i]);
        }
        if (recs[i].count != want)
            fail("loop %d: %llu messages run, %llu posted", i, (unsigned long long)recs[i].count, (unsigned long long)want);
        if (recs[i].out_of_order)
            fail("loop %d: %llu messages out of order", i, (unsigned long long)recs[i].out_of_order);
    }
    struct rill_loop_stats sum;
    if (rill_engine_stats(e, NULL, 0, &sum) != LOOPS)
        fail("rill_engine_stats after stop");
    else if ((long)sum.accepts != served)
        fail("%llu accepts, %ld connections served", (unsigned long long)sum.accepts, served);
    if (atomic_load(&server_closes) != served)
        fail("%ld server closes, %ld connections", atomic_load(&server_closes), served);
    rill_engine_destroy(e);
    printf("stress_engine: %s: %ld messages (%ld retries), %ld connections, %ld stats snapshots "
           "(%ld busy), stop %llu ms, total %llu ms\n",
           name, posted, retries, served, snapshots, eagain, (unsigned long long)stop_took,
           (unsigned long long)(now_ms() - t0));
    if (posted == 0 || served == 0 || snapshots == 0)
        fail("nothing was exercised");
    return atomic_load(&failures) ? 1 : 0;
}

/* A hung engine (a loop deaf to its mailbox, a stop that never returns) fails the program
 * instead of running into ctest's timeout. */
static void *watchdog_main(void *arg)
{
    (void)arg;
    struct timespec ts = {WATCHDOG_S, 0};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    fprintf(stderr, "stress_engine: FAIL: still running after %d s (a hang)\n", WATCHDOG_S);
    _exit(1);
}

int main(int argc, char **argv)
{
    unsetenv("RILL_BACKEND");
    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog_main, NULL) != 0)
        return 1;
    pthread_detach(wd);
    bool epoll = true, uring = true;
    if (argc > 1) {
        epoll = strcmp(argv[1], "epoll") == 0;
        uring = strcmp(argv[1], "uring") == 0;
        if (!epoll && !uring) {
            fprintf(stderr, "usage: %s [epoll|uring]\n", argv[0]);
            return 2;
        }
    }
    int rc = 0;
    if (epoll)
        rc |= run(RILL_BACKEND_EPOLL, "epoll");
    if (uring)
        rc |= run(RILL_BACKEND_URING, "io_uring");
    return rc;
}
