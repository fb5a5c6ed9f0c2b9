/* The multicore engine: creating, pinning, starting and stopping loops; reuseport fan-out over
 * a thousand short connections; steering a connection to the loop of its CPU; rill_engine_listen;
 * engine-wide counters. The mailbox is in test_engine_post.c, graceful stop in
 * test_engine_stop.c, moving a connection between loops in test_engine_migrate.c.
 *
 * Callbacks on the engine's threads report failures with NOTE()/EXPECT(), which the test thread
 * checks afterwards (see engine_util.h). */
#include <dirent.h>
#include <sys/un.h>

#include "engine_util.h"

static int count_tasks(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Waits until the process has `want` threads (loop threads exit asynchronously after a join
 * only in the kernel's bookkeeping; this is bounded and short). */
static int wait_tasks(int want)
{
    uint64_t end = h_now_ms() + 2000;
    int n;
    while ((n = count_tasks()) != want && h_now_ms() < end)
        h_sleep_ms(1);
    return n;
}

/* ---- an echo server on the engine ----------------------------------------------------------- */

static atomic_uint g_opens[MAXL], g_closes[MAXL], g_close_bad, g_wrong_thread;

static int conn_loop_index(rill_conn *c)
{
    int i = rill_loop_index(rill_conn_loop(c));
    if (i < 0 || i >= MAXL) {
        NOTE("a connection's loop has index %d", i);
        return 0;
    }
    return i;
}

static void echo_open(rill_conn *c, void *ctx)
{
    rill_loop *l = rill_conn_loop(c);
    int i = conn_loop_index(c);
    EXPECT(ctx == NULL || rill_loop_engine(l) == ctx, "rill_loop_engine() of loop %d is not the engine", i);
    if (!on_loop_thread(l))
        atomic_fetch_add(&g_wrong_thread, 1);
    atomic_fetch_add(&g_opens[i], 1);
}

static void echo_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    if (!on_loop_thread(rill_conn_loop(c)))
        atomic_fetch_add(&g_wrong_thread, 1);
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    int r = rill_send_bufs(c, &s, 1, NULL, NULL);
    EXPECT(r == 0, "echo rill_send_bufs: %s", rill_strerror(r));
}

static void echo_close(rill_conn *c, int status, void *ctx)
{
    (void)ctx;
    int i = conn_loop_index(c);
    if (status != 0)
        atomic_fetch_add(&g_close_bad, 1);
    atomic_fetch_add(&g_closes[i], 1);
}

static const struct rill_conn_handler echo_h = {
    .on_open = echo_open, .on_data = echo_data, .on_close = echo_close};

static unsigned sum_counts(atomic_uint *a, uint32_t n)
{
    unsigned s = 0;
    for (uint32_t i = 0; i < n; i++)
        s += atomic_load(&a[i]);
    return s;
}

static bool wait_count(atomic_uint *a, uint32_t n, unsigned want, unsigned ms)
{
    uint64_t end = h_now_ms() + ms;
    while (sum_counts(a, n) < want && h_now_ms() < end)
        h_sleep_ms(1);
    return sum_counts(a, n) >= want;
}

static int echo_listen(rill_engine *e, uint32_t flags, rill_steering *st)
{
    struct rill_listen_config lc = {.handler = &echo_h, .ctx = e};
    rill_steering dummy;
    int port = rill_engine_listen(e, "tcp://127.0.0.1:0", &lc, flags, st ? st : &dummy);
    cr_assert_gt(port, 0, "rill_engine_listen: %s", rill_strerror(port));
    return port;
}

/* One short echo exchange: connect, send 16 bytes, read them back, close. 0 or -errno/-EIO. */
static int short_echo(int port, uint64_t seed)
{
    int fd = cli_connect(port, 0);
    if (fd < 0)
        return fd;
    uint8_t out[16], in[16];
    h_fill(out, sizeof out, seed, 0);
    int r = write_all(fd, out, sizeof out);
    if (r == 0) {
        ssize_t n = read_full(fd, in, sizeof in);
        r = n < 0 ? (int)n : n != (ssize_t)sizeof in ? -EPIPE : memcmp(in, out, sizeof in) ? -EIO : 0;
    }
    close(fd);
    return r;
}

struct burst {
    int port, id, count;
    atomic_int ok;
};

static void *burst_main(void *arg)
{
    struct burst *b = arg;
    for (int j = 0; j < b->count; j++) {
        int r = short_echo(b->port, (uint64_t)b->id * 100000u + (uint64_t)j);
        if (r != 0) {
            NOTE("client %d, connection %d: %s", b->id, j, strerror(-r));
            break;
        }
        atomic_fetch_add(&b->ok, 1);
    }
    return NULL;
}

/* ---- create / start / stop / destroy -------------------------------------------------------- */

Test(engine_config, defaults)
{
    struct rill_engine_config c;
    memset(&c, 0xa5, sizeof c);
    rill_engine_config_init(&c);
    cr_assert_eq(c.loops, 0);
    cr_assert_eq(c.flags, 0);
    cr_assert_eq(c.mailbox_capacity, 4096);
    struct rill_loop_config lc;
    rill_loop_config_init(&lc);
    cr_assert_eq(c.loop.backend, lc.backend);
    cr_assert_eq(c.loop.slab_budget, lc.slab_budget);
    cr_assert_eq(c.loop.recv_buf_size, lc.recv_buf_size);
    cr_assert_eq(c.loop.max_conns, lc.max_conns);
}

H_BACKEND_TEST(engine, default_loops_pinned, .timeout = 60)
{
    int n = ncpus();
    cr_assert_leq(n, MAXL);
    int tasks0 = count_tasks(), fds0 = h_count_fds();
    rill_engine *e = eng_create(backend, 0, 0, 0);
    cr_assert_eq(rill_engine_loop_count(e), (uint32_t)n, "default loops: one per CPU of the mask");
    for (int i = 0; i < n; i++) {
        rill_loop *l = rill_engine_loop(e, (uint32_t)i);
        cr_assert_eq(rill_engine_loop_cpu(e, (uint32_t)i), nth_cpu(i),
                     "loop %d is pinned to the %d-th CPU of the mask", i, i);
        cr_assert_eq(rill_loop_index(l), i);
        cr_assert_eq(rill_loop_engine(l), e);
    }
    cr_assert_null(rill_engine_loop(e, (uint32_t)n));
    cr_assert_eq(rill_engine_loop_cpu(e, (uint32_t)n), -1);
    cr_assert_eq(rill_engine_loop_cpu(e, UINT32_MAX), -1);

    cr_assert_eq(eng_stop(e, 0), -EALREADY, "stop before start");
    cr_assert_eq(rill_engine_start(e), 0);
    cr_assert_eq(count_tasks(), tasks0 + n, "one thread per loop");
    cr_assert_eq(rill_engine_start(e), -EALREADY);
    record_loop_threads(e);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(g_loop_affinity_count[i], 1, "loop %d's thread is pinned to one CPU", i);
        cr_assert_eq(g_loop_affinity_first[i], nth_cpu(i), "loop %d's thread CPU", i);
        cr_assert_eq(g_loop_cpu_seen[i], nth_cpu(i), "loop %d runs on CPU %d", i, nth_cpu(i));
    }
    cr_assert_eq(eng_stop(e, 0), 0);
    cr_assert_eq(wait_tasks(tasks0), tasks0, "stop joins every loop thread");
    cr_assert_eq(eng_stop(e, 0), -EALREADY, "stop after stop");
    rill_engine_destroy(e);
    cr_assert_eq(h_count_fds(), fds0, "destroy closes every descriptor");
    check_notes();
}

H_BACKEND_TEST(engine, no_pin, .timeout = 60)
{
    int n = ncpus();
    rill_engine *e = eng_create(backend, 3, RILL_ENGINE_F_NO_PIN, 0);
    cr_assert_eq(rill_engine_loop_count(e), 3);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(rill_engine_loop_cpu(e, i), -1, "loop %u is not pinned", i);
    cr_assert_eq(rill_engine_start(e), 0);
    record_loop_threads(e);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(g_loop_affinity_count[i], n,
                     "an unpinned loop %d keeps the process's mask (%d CPUs, has %d)", i, n,
                     g_loop_affinity_count[i]);
    cr_assert_eq(eng_stop(e, 0), 0);
    rill_engine_destroy(e);
    check_notes();
}

H_BACKEND_TEST(engine, bad_config, .timeout = 30)
{
    struct rill_engine_config cfg;
    eng_config(backend, &cfg, 2000, RILL_ENGINE_F_NO_PIN, 0);
    rill_engine *e = NULL;
    cr_assert_eq(rill_engine_create(&cfg, &e), -EINVAL, "more than 1024 loops");
    cr_assert_null(e);
    eng_config(backend, &cfg, 1, 0, 100);
    cr_assert_eq(rill_engine_create(&cfg, &e), -EINVAL, "a mailbox capacity not a power of 2");
    eng_config(backend, &cfg, 1, 0x80, 0);
    cr_assert_eq(rill_engine_create(&cfg, &e), -EINVAL, "unknown flags");
    eng_config(backend, &cfg, 1, 0, 0);
    cr_assert_eq(rill_engine_create(&cfg, NULL), -EINVAL);
    cr_assert_eq(rill_engine_stop(NULL, 0), -EINVAL);
    cr_assert_eq(rill_engine_stats(NULL, NULL, 0, NULL), -EINVAL);
    rill_engine_destroy(NULL);
}

H_BACKEND_TEST(engine, destroy_without_start, .timeout = 30)
{
    int tasks0 = count_tasks(), fds0 = h_count_fds();
    rill_engine *e = eng_create(backend, 2, RILL_ENGINE_F_NO_PIN, 0);
    /* A listener opened before start is closed by destroy, never having served. */
    int port = echo_listen(e, 0, NULL);
    cr_assert_eq(count_tasks(), tasks0, "create starts no thread");
    rill_engine_destroy(e);
    cr_assert_eq(h_count_fds(), fds0);
    int fd = cli_connect(port, 0);
    cr_assert_eq(fd, -ECONNREFUSED, "the listeners are gone after destroy: %s",
                 fd < 0 ? strerror(-fd) : "connected");

    /* The defaults (cfg NULL) too: whatever backend AUTO picks. */
    e = NULL;
    int r = rill_engine_create(NULL, &e);
    if (r == 0) {
        cr_assert_eq(rill_engine_loop_count(e), (uint32_t)ncpus());
        rill_engine_destroy(e);
    } else {
        cr_log_warn("rill_engine_create(NULL): %s", rill_strerror(r));
    }
    cr_assert_eq(h_count_fds(), fds0);
}

/* An allocator that fails every call from the `fail_at`-th one after it is armed. */
static _Atomic int alloc_left = -1; /* -1: never fail */

static void *failing_malloc(size_t n)
{
    int left = atomic_load(&alloc_left);
    if (left == 0)
        return NULL;
    if (left > 0)
        atomic_fetch_sub(&alloc_left, 1);
    return malloc(n);
}

static void *failing_realloc(void *p, size_t n)
{
    return atomic_load(&alloc_left) == 0 ? NULL : realloc(p, n);
}

H_BACKEND_TEST(engine, failed_start_runs_no_loop, .timeout = 30)
{
    /* The third loop's thread cannot start (its start argument cannot be allocated): the two
     * started before it must end without serving, and the engine must start cleanly later. */
    cr_assert_eq(rill_set_allocator(failing_malloc, failing_realloc, free), 0);
    int tasks0 = count_tasks();
    rill_engine *e = eng_create(backend, 3, RILL_ENGINE_F_NO_PIN, 0);
    int port = echo_listen(e, 0, NULL);
    atomic_store(&alloc_left, 2);
    cr_assert_eq(rill_engine_start(e), -ENOMEM);
    atomic_store(&alloc_left, -1);
    cr_assert_eq(wait_tasks(tasks0), tasks0, "the threads that started have ended");
    /* The kernel queues the connection on a listener no loop serves: nothing echoes. */
    int fd = cli_connect(port, 0);
    cr_assert_geq(fd, 0, "the listener is still open: %s", fd < 0 ? strerror(-fd) : "");
    cr_assert_eq(send(fd, "x", 1, MSG_NOSIGNAL), 1);
    cr_assert_not(h_readable(fd, 100), "no loop served it");

    cr_assert_eq(rill_engine_start(e), 0, "a second start after the failed one");
    cr_assert_eq(count_tasks(), tasks0 + 3);
    char c = 0;
    cr_assert(h_readable(fd, 5000), "the started engine serves the waiting connection");
    cr_assert_eq(recv(fd, &c, 1, 0), 1);
    cr_assert_eq(c, 'x');
    close(fd);
    cr_assert_eq(eng_stop(e, 0), 0);
    rill_engine_destroy(e);
    cr_assert_eq(wait_tasks(tasks0), tasks0);
}

H_BACKEND_TEST(engine, destroy_while_running, .timeout = 60)
{
    int tasks0 = count_tasks(), fds0 = h_count_fds();
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    int port = echo_listen(e, 0, NULL);
    cr_assert_eq(rill_engine_start(e), 0);
    record_loop_threads(e);
    /* Connections still open when the engine is destroyed: each gets its on_close, and the
     * clients see the end of the stream. */
    int fds[6];
    for (int i = 0; i < 6; i++) {
        fds[i] = cli_connect(port, 0);
        cr_assert_geq(fds[i], 0, "connect: %s", strerror(-fds[i]));
        cr_assert_eq(write_all(fds[i], "ping", 4), 0);
        char b[4];
        cr_assert_eq(read_full(fds[i], b, 4), 4);
    }
    cr_assert(wait_count(g_opens, 2, 6, 5000));
    rill_engine_destroy(e);
    cr_assert_eq(wait_tasks(tasks0), tasks0, "destroy joined the loop threads");
    cr_assert_eq(sum_counts(g_closes, 2), 6, "every connection got on_close");
    cr_assert_eq(atomic_load(&g_close_bad), 0, "closed at once, with status 0");
    for (int i = 0; i < 6; i++) {
        char b[8];
        ssize_t r = recv(fds[i], b, sizeof b, 0);
        cr_assert(r == 0 || (r < 0 && errno == ECONNRESET), "client %d: %zd %s", i, r,
                  r < 0 ? strerror(errno) : "");
        close(fds[i]);
    }
    cr_assert_eq(h_count_fds(), fds0);
    check_notes();
}

/* ---- reuseport fan-out ---------------------------------------------------------------------- */

#define SHORT_CONNS 1000
#define SHORT_THREADS 2

H_BACKEND_TEST(engine, thousand_short_connections, .timeout = 120)
{
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    rill_steering st = (rill_steering)99;
    int port = echo_listen(e, 0, &st);
    cr_assert_eq(st, RILL_STEER_HASH, "no steering asked: the kernel's hash");
    cr_assert_eq(rill_engine_start(e), 0);
    record_loop_threads(e);

    static struct burst b[SHORT_THREADS];
    pthread_t th[SHORT_THREADS];
    for (int i = 0; i < SHORT_THREADS; i++) {
        b[i].port = port;
        b[i].id = i;
        b[i].count = SHORT_CONNS / SHORT_THREADS;
        cr_assert_eq(pthread_create(&th[i], NULL, burst_main, &b[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < SHORT_THREADS; i++) {
        pthread_join(th[i], NULL);
        ok += atomic_load(&b[i].ok);
    }
    check_notes();
    cr_assert_eq(ok, SHORT_CONNS, "every connection served");
    cr_assert(wait_count(g_closes, 2, SHORT_CONNS, 10000), "server closed %u of %d",
              sum_counts(g_closes, 2), SHORT_CONNS);

    struct rill_loop_stats per[2], sum;
    int r = rill_engine_stats(e, per, 2, &sum);
    cr_assert_eq(r, 2, "rill_engine_stats: %s", rill_strerror(r));
    cr_log_info("%s: loop 0 accepted %llu, loop 1 accepted %llu", backend,
                (unsigned long long)per[0].accepts, (unsigned long long)per[1].accepts);
    cr_assert_eq(per[0].accepts + per[1].accepts, SHORT_CONNS);
    cr_assert_eq(sum.accepts, SHORT_CONNS);
    for (int i = 0; i < 2; i++) {
        cr_assert_geq(per[i].accepts, SHORT_CONNS / 10, "loop %d took only %llu of %d", i,
                      (unsigned long long)per[i].accepts, SHORT_CONNS);
        cr_assert_eq(per[i].accepts, atomic_load(&g_opens[i]), "loop %d: stats vs on_open", i);
        cr_assert_eq(per[i].conns_open, 0, "loop %d", i);
        cr_assert_geq(per[i].bytes_in, 16 * per[i].accepts);
        cr_assert_geq(per[i].bytes_out, 16 * per[i].accepts);
    }
    cr_assert_eq(atomic_load(&g_close_bad), 0, "server on_close with an error");
    cr_assert_eq(atomic_load(&g_wrong_thread), 0, "callbacks ran off their loop's thread");
    cr_assert_eq(eng_stop(e, 1000), 0);
    rill_engine_destroy(e);
    check_notes();
}

/* ---- steering ------------------------------------------------------------------------------- */

#define STEER_PER_CPU 50

static atomic_uint g_steer_ok, g_steer_bad, g_steer_seen;

struct steer_conn {
    uint8_t got[4];
    unsigned n;
};

static void steer_open(rill_conn *c, void *ctx)
{
    (void)ctx;
    struct steer_conn *s = calloc(1, sizeof *s);
    rill_conn_set_ctx(c, s);
}

static void steer_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct steer_conn *s = ctx;
    const uint8_t *p = data;
    for (size_t k = 0; k < len && s->n < 4; k++)
        s->got[s->n++] = p[k];
    if (s->n < 4 || s->n == 5)
        return;
    s->n = 5;
    int32_t client_cpu;
    memcpy(&client_cpu, s->got, 4);
    rill_loop *l = rill_conn_loop(c);
    rill_engine *e = rill_loop_engine(l);
    int idx = rill_loop_index(l);
    int loop_cpu = rill_engine_loop_cpu(e, (uint32_t)idx);
    atomic_fetch_add(&g_steer_seen, 1);
    if (loop_cpu == client_cpu) {
        atomic_fetch_add(&g_steer_ok, 1);
    } else {
        if (atomic_fetch_add(&g_steer_bad, 1) == 0)
            NOTE("a connection from CPU %d was served by loop %d on CPU %d", client_cpu, idx,
                 loop_cpu);
    }
    if (sched_getcpu() != loop_cpu)
        NOTE("loop %d pinned to CPU %d runs on CPU %d", idx, loop_cpu, sched_getcpu());
    struct iovec v = {"k", 1};
    int r = rill_send(c, &v, 1, NULL, NULL);
    EXPECT(r == 0, "steer send: %s", rill_strerror(r));
}

static void steer_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)status;
    free(ctx);
}

static const struct rill_conn_handler steer_h = {
    .on_open = steer_open, .on_data = steer_data, .on_close = steer_close};

struct steer_client {
    int port, cpu, done;
};

static void *steer_client_main(void *arg)
{
    struct steer_client *sc = arg;
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(sc->cpu, &s);
    int r = pthread_setaffinity_np(pthread_self(), sizeof s, &s);
    if (r != 0) {
        NOTE("pin client to CPU %d: %s", sc->cpu, strerror(r));
        return NULL;
    }
    for (int j = 0; j < STEER_PER_CPU; j++) {
        int fd = cli_connect(sc->port, 0);
        if (fd < 0) {
            NOTE("steer connect: %s", strerror(-fd));
            return NULL;
        }
        int32_t cpu = sched_getcpu();
        if (cpu != sc->cpu)
            NOTE("a client pinned to CPU %d runs on %d", sc->cpu, cpu);
        char k;
        if (write_all(fd, &cpu, 4) != 0 || read_full(fd, &k, 1) != 1) {
            NOTE("steer exchange failed on CPU %d: %s", sc->cpu, strerror(errno));
            close(fd);
            return NULL;
        }
        close(fd);
        sc->done++;
    }
    return NULL;
}

H_BACKEND_TEST(engine, steering_to_the_cpu, .timeout = 60)
{
    int n = ncpus();
    if (n < 2)
        cr_skip_test("steering needs 2 CPUs to be observable (have %d)", n);
    cr_assert_leq(n, MAXL);
    rill_engine *e = eng_create(backend, 0, 0, 0);
    struct rill_listen_config lc = {.handler = &steer_h};
    rill_steering st = (rill_steering)99;
    int port = rill_engine_listen(e, "tcp://127.0.0.1:0", &lc, RILL_ENGINE_LISTEN_F_STEER, &st);
    cr_assert_gt(port, 0, "rill_engine_listen: %s", rill_strerror(port));
    cr_assert(st == RILL_STEER_HASH || st == RILL_STEER_BPF_CPU || st == RILL_STEER_INCOMING_CPU,
              "steering %d", (int)st);
    cr_log_info("%s: steering method %d", backend, (int)st);
    if (st == RILL_STEER_HASH) {
        rill_engine_destroy(e);
        cr_skip_test("steering unavailable here: the engine fell back to hashing");
    }
    cr_assert_eq(rill_engine_start(e), 0);
    record_loop_threads(e);
    static struct steer_client sc[MAXL];
    pthread_t th[MAXL];
    /* One CPU after the other, so each client really runs on its CPU. */
    for (int k = 0; k < n; k++) {
        sc[k] = (struct steer_client){.port = port, .cpu = nth_cpu(k)};
        cr_assert_eq(pthread_create(&th[k], NULL, steer_client_main, &sc[k]), 0);
        pthread_join(th[k], NULL);
        cr_assert_eq(sc[k].done, STEER_PER_CPU, "CPU %d: %d connections done", sc[k].cpu,
                     sc[k].done);
    }
    unsigned want = (unsigned)(n * STEER_PER_CPU);
    uint64_t end = h_now_ms() + 5000;
    while (atomic_load(&g_steer_seen) < want && h_now_ms() < end)
        h_sleep_ms(1);
    cr_log_info("%s: %u connections on their CPU's loop, %u elsewhere", backend,
                atomic_load(&g_steer_ok), atomic_load(&g_steer_bad));
    cr_assert_eq(atomic_load(&g_steer_ok), want, "every connection served on its CPU's loop");
    cr_assert_eq(eng_stop(e, 1000), 0);
    rill_engine_destroy(e);
    check_notes();
}

/* ---- rill_engine_listen --------------------------------------------------------------------- */

H_BACKEND_TEST(engine, listen_errors_leave_nothing_open, .timeout = 30)
{
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    /* A plain listener without SO_REUSEPORT owns the port: the engine cannot join it. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(s, 8), 0);
    socklen_t al = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &al);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    struct rill_listen_config lc = {.handler = &echo_h};
    rill_steering st;
    int fds0 = h_count_fds();
    cr_assert_eq(rill_engine_listen(e, uri, &lc, 0, &st), -EADDRINUSE);
    cr_assert_eq(rill_engine_listen(e, "tcp://nonsense", &lc, 0, &st), -EINVAL);
    cr_assert_eq(rill_engine_listen(e, "tcp://127.0.0.1:0", NULL, 0, &st), -EINVAL);
    cr_assert_eq(rill_engine_listen(e, "tcp://127.0.0.1:0", &lc, 0x80, &st), -EINVAL,
                 "unknown flags");
    cr_assert_eq(h_count_fds(), fds0, "a failed listen leaves no socket open");
    cr_assert_eq(rill_engine_start(e), 0);
    cr_assert_eq(rill_engine_listen(e, uri, &lc, 0, &st), -EADDRINUSE, "while running too");
    cr_assert_eq(h_count_fds(), fds0);
    close(s);
    /* Now free: the same port, while running. */
    int port = rill_engine_listen(e, uri, &lc, 0, &st);
    cr_assert_eq(port, ntohs(a.sin_port), "%s", rill_strerror(port));
    cr_assert_eq(short_echo(port, 5), 0);
    cr_assert_eq(eng_stop(e, 1000), 0);
    rill_engine_destroy(e);
    check_notes();
}

H_BACKEND_TEST(engine, listen_unix, .timeout = 30)
{
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    char path[108], uri[128];
    snprintf(path, sizeof path, "/tmp/rill-test-engine-%d.sock", (int)getpid());
    unlink(path);
    snprintf(uri, sizeof uri, "unix:%s", path);
    struct rill_listen_config lc = {.handler = &echo_h, .ctx = e};
    rill_steering st;
    int r = rill_engine_listen(e, uri, &lc, 0, &st);
    cr_assert_eq(r, 0, "rill_engine_listen(%s) on 2 loops: %s (the header promises 0 for a unix "
                       "address)", uri, rill_strerror(r));
    cr_assert_eq(rill_engine_start(e), 0);
    for (int k = 0; k < 20; k++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        cr_assert_eq(connect(fd, (struct sockaddr *)&un, sizeof un), 0, "connect: %s",
                     strerror(errno));
        char b[4];
        cr_assert_eq(write_all(fd, "unix", 4), 0);
        cr_assert_eq(read_full(fd, b, 4), 4);
        cr_assert_eq(memcmp(b, "unix", 4), 0);
        close(fd);
    }
    cr_assert(wait_count(g_opens, 2, 20, 5000));
    cr_assert_eq(eng_stop(e, 1000), 0);
    rill_engine_destroy(e);
    cr_assert_neq(access(path, F_OK), 0, "the socket file is removed");
    check_notes();
}

/* ---- engine-wide counters ------------------------------------------------------------------- */

#define NFIELDS (sizeof(struct rill_loop_stats) / sizeof(uint64_t))

static void stats_fields(const struct rill_loop_stats *s, uint64_t *out)
{
    _Static_assert(sizeof(struct rill_loop_stats) % sizeof(uint64_t) == 0, "all uint64_t");
    memcpy(out, s, sizeof *s);
}

struct churn {
    int port;
    atomic_int stop;
    atomic_int done;
};

static void *churn_main(void *arg)
{
    struct churn *c = arg;
    while (!atomic_load(&c->stop)) {
        int r = short_echo(c->port, (uint64_t)atomic_load(&c->done));
        if (r != 0) {
            NOTE("churn: %s", strerror(-r));
            return NULL;
        }
        atomic_fetch_add(&c->done, 1);
    }
    return NULL;
}

H_BACKEND_TEST(engine, stats_consistent_while_running, .timeout = 60)
{
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    int port = echo_listen(e, 0, NULL);
    cr_assert_eq(rill_engine_start(e), 0);
    static struct churn ch;
    ch.port = port;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, churn_main, &ch), 0);
    struct rill_loop_stats per[2], sum, prev[2];
    memset(prev, 0, sizeof prev);
    int calls = 0;
    uint64_t end = h_now_ms() + 500;
    while (h_now_ms() < end) {
        int r = rill_engine_stats(e, per, 2, &sum);
        if (r == -EAGAIN)
            continue;
        cr_assert_eq(r, 2, "rill_engine_stats: %s", rill_strerror(r));
        calls++;
        uint64_t f0[NFIELDS], f1[NFIELDS], fs[NFIELDS];
        stats_fields(&per[0], f0);
        stats_fields(&per[1], f1);
        stats_fields(&sum, fs);
        for (size_t k = 0; k < NFIELDS; k++)
            cr_assert_eq(fs[k], f0[k] + f1[k], "field %zu: sum %llu != %llu + %llu", k,
                         (unsigned long long)fs[k], (unsigned long long)f0[k],
                         (unsigned long long)f1[k]);
        for (int i = 0; i < 2; i++) {
            cr_assert_geq(per[i].accepts, prev[i].accepts, "loop %d: accepts went back", i);
            cr_assert_geq(per[i].iterations, prev[i].iterations, "loop %d: iterations", i);
            cr_assert_geq(per[i].bytes_in, prev[i].bytes_in, "loop %d: bytes_in", i);
            cr_assert_leq(per[i].conns_open, per[i].accepts, "loop %d: open <= accepted", i);
            cr_assert_eq(per[i].buf_budget, (64u << 20), "loop %d: the budget", i);
        }
        memcpy(prev, per, sizeof prev);
        h_sleep_ms(2);
    }
    atomic_store(&ch.stop, 1);
    pthread_join(th, NULL);
    check_notes();
    int done = atomic_load(&ch.done);
    cr_assert_gt(done, 0);
    cr_assert_gt(calls, 10);
    cr_assert(wait_count(g_closes, 2, (unsigned)done, 5000));
    struct rill_loop_stats only_sum;
    cr_assert_eq(rill_engine_stats(e, NULL, 0, &only_sum), 2, "the sum alone");
    cr_assert_eq(only_sum.accepts, (uint64_t)done);
    cr_assert_eq(rill_engine_stats(e, per, 2, NULL), 2, "per loop alone");
    cr_assert_eq(per[0].accepts + per[1].accepts, (uint64_t)done);
    cr_assert_eq(eng_stop(e, 1000), 0);
    /* Stopped: the counters are still there. */
    cr_assert_eq(rill_engine_stats(e, per, 2, &sum), 2);
    cr_assert_eq(sum.accepts, (uint64_t)done);
    cr_assert_eq(per[0].accepts + per[1].accepts, (uint64_t)done);
    cr_assert_eq(sum.conns_open, 0);
    cr_log_info("%s: %d connections, %d consistent snapshots", backend, done, calls);
    rill_engine_destroy(e);
    check_notes();
}
