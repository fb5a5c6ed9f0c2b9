/* The multicore engine: creating, pinning, starting and stopping loops; reuseport fan-out over
 * a thousand short connections; steering a connection to the loop of its CPU; the cross-loop
 * mailbox (order per producer, exactly-once delivery, a full mailbox, errors); graceful stop
 * with busy connections (drained, or cut at the deadline); moving a connection between loops;
 * engine-wide counters.
 *
 * Loop callbacks run on the engine's threads, where Criterion's assertions must not be used
 * (they unwind the test thread). Those callbacks record what they see, and failures with
 * NOTE()/EXPECT(); the test thread asserts afterwards (check_notes()). Every wait has a
 * deadline, clients use loopback and blocking sockets with receive and send timeouts. */
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/time.h>
#include <sys/un.h>

#include "harness.h"

#define MAXL 64 /* loops any test here uses at most (the machine's CPUs for the defaults) */

/* ---- failures off the test thread ----------------------------------------------------------- */

static atomic_int g_nerr;
static pthread_mutex_t g_err_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_err[512];

__attribute__((format(printf, 2, 3))) static void note(int line, const char *fmt, ...)
{
    if (atomic_fetch_add(&g_nerr, 1) != 0)
        return;
    pthread_mutex_lock(&g_err_mu);
    int n = snprintf(g_err, sizeof g_err, "line %d: ", line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err + n, sizeof g_err - (size_t)n, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&g_err_mu);
}
#define NOTE(...) note(__LINE__, __VA_ARGS__)
#define EXPECT(cond, ...)                                                                      \
    do {                                                                                       \
        if (!(cond))                                                                           \
            NOTE(__VA_ARGS__);                                                                 \
    } while (0)

static void check_notes(void)
{
    int n = atomic_load(&g_nerr);
    if (n == 0)
        return;
    pthread_mutex_lock(&g_err_mu);
    char msg[512];
    memcpy(msg, g_err, sizeof msg);
    pthread_mutex_unlock(&g_err_mu);
    cr_assert_fail("%d failure(s) on engine or client threads; the first: %s", n, msg);
}

/* ---- time, CPUs, threads -------------------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static cpu_set_t g_mask;

/* CPUs in this process's affinity mask (what the engine's default sizes itself by). */
static int ncpus(void)
{
    CPU_ZERO(&g_mask);
    if (sched_getaffinity(0, sizeof g_mask, &g_mask) != 0)
        return 1;
    return CPU_COUNT(&g_mask);
}

/* The i-th CPU of the mask, or -1. */
static int nth_cpu(int i)
{
    for (int c = 0, k = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &g_mask) && k++ == i)
            return c;
    return -1;
}

/* Pinned when there are CPUs enough for `loops`, so every test also passes on one CPU. */
static uint32_t pin_flags(uint32_t loops)
{
    return ncpus() >= (int)loops ? 0u : RILL_ENGINE_F_NO_PIN;
}

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
        sleep_ms(1);
    return n;
}

/* ---- engine set-up -------------------------------------------------------------------------- */

static bool is_uring(const char *backend)
{
    return strcmp(backend, "uring") == 0;
}

static void eng_config(const char *backend, struct rill_engine_config *cfg, uint32_t loops,
                       uint32_t flags, uint32_t mailbox)
{
    rill_engine_config_init(cfg);
    cfg->loops = loops;
    cfg->flags = flags;
    if (mailbox)
        cfg->mailbox_capacity = mailbox;
    cfg->loop.backend = is_uring(backend) ? RILL_BACKEND_URING : RILL_BACKEND_EPOLL;
}

/* Creates an engine on the named backend; skips when io_uring cannot run here. */
static rill_engine *eng_create_cfg(const char *backend, const struct rill_engine_config *cfg)
{
    unsetenv("RILL_BACKEND"); /* the parameter, not the environment, decides here */
    rill_engine *e = NULL;
    int r = rill_engine_create(cfg, &e);
    if (is_uring(backend) && (r == -ENOSYS || r == -EPERM || r == -ENOMEM || r == -EOPNOTSUPP))
        cr_skip_test("%s backend unavailable here: %s", backend, rill_strerror(r));
    cr_assert_eq(r, 0, "rill_engine_create(%s): %s", backend, rill_strerror(r));
    cr_assert_not_null(e);
    uint32_t n = rill_engine_loop_count(e);
    cr_assert_gt(n, 0);
    for (uint32_t i = 0; i < n; i++) {
        rill_loop *l = rill_engine_loop(e, i);
        cr_assert_not_null(l, "loop %u", i);
        cr_assert_str_eq(rill_loop_backend_name(l), is_uring(backend) ? "io_uring" : "epoll",
                         "loop %u must run on the backend the parameter names", i);
    }
    return e;
}

static rill_engine *eng_create(const char *backend, uint32_t loops, uint32_t flags,
                               uint32_t mailbox)
{
    struct rill_engine_config cfg;
    eng_config(backend, &cfg, loops, flags, mailbox);
    return eng_create_cfg(backend, &cfg);
}

/* Posts, retrying while the mailbox is full, for up to 5 s. */
static int post_retry(rill_engine *e, uint32_t i, rill_post_fn fn, void *arg)
{
    uint64_t end = h_now_ms() + 5000;
    int r;
    while ((r = rill_engine_post(e, i, fn, arg)) == -EAGAIN && h_now_ms() < end)
        sleep_us(200);
    return r;
}

static bool sem_wait_ms(sem_t *s, unsigned ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000u;
    ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    int r;
    while ((r = sem_timedwait(s, &ts)) < 0 && errno == EINTR)
        ;
    return r == 0;
}

/* Runs fn(loop, arg) on loop i's thread and waits for it (from the test thread). The struct is
 * static: if a wait ever timed out, a late run must not write into a dead stack frame. */
struct call {
    rill_post_fn fn;
    void *arg;
    sem_t done;
};

static void call_tramp(rill_loop *l, void *a)
{
    struct call *c = a;
    c->fn(l, c->arg);
    sem_post(&c->done);
}

static void eng_call(rill_engine *e, uint32_t i, rill_post_fn fn, void *arg)
{
    static struct call c;
    c.fn = fn;
    c.arg = arg;
    sem_init(&c.done, 0, 0);
    int r = post_retry(e, i, call_tramp, &c);
    cr_assert_eq(r, 0, "rill_engine_post(loop %u): %s", i, rill_strerror(r));
    cr_assert(sem_wait_ms(&c.done, 10000), "a function posted to loop %u never ran", i);
    sem_destroy(&c.done);
}

/* rill_engine_stop(), bounded: a stop that hangs (a loop that never runs its drain message)
 * fails the test with a message instead of running into the test's timeout. */
struct stopper {
    rill_engine *e;
    uint32_t drain_ms;
    int r;
};

static void *stopper_main(void *arg)
{
    struct stopper *s = arg;
    s->r = rill_engine_stop(s->e, s->drain_ms);
    return NULL;
}

static int eng_stop(rill_engine *e, uint32_t drain_ms)
{
    static struct stopper s;
    s = (struct stopper){.e = e, .drain_ms = drain_ms};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, stopper_main, &s), 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 15 + drain_ms / 1000u;
    int r = pthread_timedjoin_np(th, NULL, &ts);
    cr_assert_eq(r, 0, "rill_engine_stop(%u) has not returned after %u s: a loop never ran its "
                       "drain message (asleep through its wake-up?)", drain_ms,
                 15 + drain_ms / 1000u);
    return s.r;
}

/* What each loop's thread is, learned by posting to it. */
static pthread_t g_loop_thread[MAXL];
static int g_loop_cpu_seen[MAXL];
static int g_loop_affinity_count[MAXL];
static int g_loop_affinity_first[MAXL];
static bool g_threads_known;

static void rec_thread(rill_loop *l, void *arg)
{
    (void)arg;
    int i = rill_loop_index(l);
    if (i < 0 || i >= MAXL) {
        NOTE("rill_loop_index() of an engine loop is %d", i);
        return;
    }
    g_loop_thread[i] = pthread_self();
    g_loop_cpu_seen[i] = sched_getcpu();
    cpu_set_t s;
    CPU_ZERO(&s);
    pthread_getaffinity_np(pthread_self(), sizeof s, &s);
    g_loop_affinity_count[i] = CPU_COUNT(&s);
    g_loop_affinity_first[i] = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &s)) {
            g_loop_affinity_first[i] = c;
            break;
        }
}

static void record_loop_threads(rill_engine *e)
{
    uint32_t n = rill_engine_loop_count(e);
    cr_assert_leq(n, MAXL);
    for (uint32_t i = 0; i < n; i++)
        eng_call(e, i, rec_thread, NULL);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t j = i + 1; j < n; j++)
            cr_assert(!pthread_equal(g_loop_thread[i], g_loop_thread[j]),
                      "loops %u and %u run on the same thread", i, j);
    cr_assert(!pthread_equal(g_loop_thread[0], pthread_self()), "loop 0 runs on the test thread");
    g_threads_known = true;
}

/* True when the caller is l's own thread (always true before the threads were recorded). */
static bool on_loop_thread(rill_loop *l)
{
    int i = rill_loop_index(l);
    if (i < 0 || i >= MAXL)
        return false;
    return !g_threads_known || pthread_equal(pthread_self(), g_loop_thread[i]);
}

/* ---- plain blocking clients (safe on any thread: no Criterion calls) ------------------------- */

static int cli_connect(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads exactly n bytes; returns n, fewer at EOF, or -errno. */
static ssize_t read_full(int fd, void *p, size_t n)
{
    char *d = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, d + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
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
        sleep_ms(1);
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
        sleep_ms(1);
    cr_log_info("%s: %u connections on their CPU's loop, %u elsewhere", backend,
                atomic_load(&g_steer_ok), atomic_load(&g_steer_bad));
    cr_assert_eq(atomic_load(&g_steer_ok), want, "every connection served on its CPU's loop");
    cr_assert_eq(eng_stop(e, 1000), 0);
    rill_engine_destroy(e);
    check_notes();
}

/* ---- mailbox -------------------------------------------------------------------------------- */

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
            sleep_ms(1);
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
        sleep_ms(1);
    cr_assert_eq(atomic_load(&g_ran), accepted, "every accepted message runs");
    cr_assert_eq(atomic_load(&g_ran_bad), 0, "in the order posted");
    cr_assert_eq(atomic_load(&g_blocker_timed_out), 0);
    /* Room again. */
    cr_assert_eq(post_retry(e, 0, seq_fn, (void *)(uintptr_t)accepted), 0);
    end = h_now_ms() + 10000;
    while (atomic_load(&g_ran) < accepted + 1 && h_now_ms() < end)
        sleep_ms(1);
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
        sleep_ms(1);
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

H_BACKEND_TEST(engine, post_between_loops, .timeout = 60)
{
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
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
        sleep_ms(1);
    sleep_ms(50);
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

/* ---- graceful stop -------------------------------------------------------------------------- */

#define BULK_CONNS 4
#define BULK_MAX (8u << 20)

static uint8_t g_bulk[BULK_MAX];
static size_t g_bulk_size;

struct bulk_srv {
    atomic_int opened;
    atomic_int send_done;
    int send_status;
    atomic_int closed;
    int close_status;
};
static struct bulk_srv g_bs[BULK_CONNS];
static atomic_int g_bulk_next;

static void bulk_sent(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct bulk_srv *s = ctx;
    s->send_status = status;
    atomic_store(&s->send_done, 1);
}

static void bulk_open(rill_conn *c, void *ctx)
{
    (void)ctx;
    int k = atomic_fetch_add(&g_bulk_next, 1);
    if (k >= BULK_CONNS) {
        NOTE("more connections than clients");
        rill_close(c);
        return;
    }
    struct bulk_srv *s = &g_bs[k];
    rill_conn_set_ctx(c, s);
    /* A small kernel send buffer (no autotuning): most of the data stays in the engine's queue,
     * which is what a graceful stop has to drain. */
    int sndbuf = 32768;
    EXPECT(setsockopt(rill_conn_fd(c), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) == 0,
           "SO_SNDBUF: %s", strerror(errno));
    struct iovec v = {g_bulk, g_bulk_size};
    int r = rill_send(c, &v, 1, bulk_sent, s);
    EXPECT(r == 0, "bulk send: %s", rill_strerror(r));
    atomic_store(&s->opened, 1);
}

static void bulk_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct bulk_srv *s = ctx;
    if (!s)
        return;
    s->close_status = status;
    atomic_store(&s->closed, 1);
}

static const struct rill_conn_handler bulk_h = {.on_open = bulk_open, .on_close = bulk_close};

struct slow_reader {
    int fd;
    bool read;         /* false: never read, just wait to be released */
    atomic_int *go;
    size_t got;
    bool mismatch;
    int end;           /* 0 at EOF, or -errno */
};

static void *slow_reader_main(void *arg)
{
    struct slow_reader *sr = arg;
    while (!atomic_load(sr->go))
        sleep_ms(1);
    if (!sr->read)
        return NULL;
    static _Thread_local uint8_t buf[8192];
    for (;;) {
        ssize_t r = recv(sr->fd, buf, sizeof buf, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            sr->end = r == 0 ? 0 : -errno;
            return NULL;
        }
        if (!sr->mismatch) {
            if (sr->got + (size_t)r > g_bulk_size || memcmp(buf, g_bulk + sr->got, (size_t)r))
                sr->mismatch = true;
        }
        sr->got += (size_t)r;
        sleep_us(1000);
    }
}

struct late_connect {
    atomic_int *stopping;
    int port;
    unsigned delay_ms;
    int result;
};

/* Once the test thread has begun stopping, connects after delay_ms: the listeners are closed
 * first, so this must be refused while the connections still drain. */
static void *late_connect_main(void *arg)
{
    struct late_connect *lc = arg;
    while (!atomic_load(lc->stopping))
        sleep_us(100);
    sleep_ms(lc->delay_ms);
    int fd = cli_connect(lc->port, 0);
    lc->result = fd < 0 ? fd : 0;
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void run_graceful(const char *backend, bool clients_read, size_t size, uint32_t drain_ms)
{
    g_bulk_size = size;
    h_fill(g_bulk, size, 77, 0);
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    struct rill_listen_config lc = {.handler = &bulk_h};
    rill_steering st;
    int port = rill_engine_listen(e, "tcp://127.0.0.1:0", &lc, 0, &st);
    cr_assert_gt(port, 0, "rill_engine_listen: %s", rill_strerror(port));
    cr_assert_eq(rill_engine_start(e), 0);

    static atomic_int go, stopping;
    static struct slow_reader sr[BULK_CONNS];
    pthread_t th[BULK_CONNS];
    for (int i = 0; i < BULK_CONNS; i++) {
        /* A small receive buffer keeps most of the data in the engine's write queue. */
        int fd = cli_connect(port, 16384);
        cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
        sr[i] = (struct slow_reader){.fd = fd, .read = clients_read, .go = &go, .end = 1};
        cr_assert_eq(pthread_create(&th[i], NULL, slow_reader_main, &sr[i]), 0);
    }
    uint64_t end = h_now_ms() + 10000;
    for (int i = 0; i < BULK_CONNS; i++)
        while (!atomic_load(&g_bs[i].opened) && h_now_ms() < end)
            sleep_ms(1);
    for (int i = 0; i < BULK_CONNS; i++)
        cr_assert(atomic_load(&g_bs[i].opened), "server connection %d never opened", i);
    sleep_ms(50); /* let the engine fill the socket buffers */
    int pending = 0;
    for (int i = 0; i < BULK_CONNS; i++)
        pending += !atomic_load(&g_bs[i].send_done);
    cr_assert_gt(pending, 0, "the sends were meant to be still queued when stop begins");

    static struct late_connect late;
    late = (struct late_connect){.stopping = &stopping, .port = port, .delay_ms = 100,
                                 .result = 1};
    pthread_t lt;
    cr_assert_eq(pthread_create(&lt, NULL, late_connect_main, &late), 0);

    atomic_store(&go, 1);
    atomic_store(&stopping, 1);
    uint64_t t0 = h_now_ms();
    int r = eng_stop(e, drain_ms);
    uint64_t took = h_now_ms() - t0;
    cr_assert_eq(r, 0, "rill_engine_stop: %s", rill_strerror(r));
    cr_log_info("%s: stop(%u ms) with %d sends of %zu bytes queued took %llu ms", backend,
                drain_ms, pending, size, (unsigned long long)took);
    pthread_join(lt, NULL);
    for (int i = 0; i < BULK_CONNS; i++)
        pthread_join(th[i], NULL);

    cr_assert_eq(late.result, -ECONNREFUSED,
                 "a connect %u ms into stop: the listeners must already be closed (%s)",
                 late.delay_ms, late.result < 0 ? strerror(-late.result) : "connected");
    int fd = cli_connect(port, 0);
    cr_assert_eq(fd, -ECONNREFUSED, "connect after stop: %s", fd < 0 ? strerror(-fd) : "connected");

    for (int i = 0; i < BULK_CONNS; i++)
        cr_assert(atomic_load(&g_bs[i].closed), "connection %d: on_close did not run", i);
    if (clients_read) {
        cr_assert_lt(took, drain_ms + 1000u, "stop must return within its deadline");
        for (int i = 0; i < BULK_CONNS; i++) {
            cr_assert_eq(sr[i].end, 0, "client %d: %s before EOF", i, strerror(-sr[i].end));
            cr_assert_eq(sr[i].got, size, "client %d: got %zu of %zu bytes before EOF", i,
                         sr[i].got, size);
            cr_assert(!sr[i].mismatch, "client %d: bytes differ", i);
            cr_assert_eq(g_bs[i].close_status, 0, "connection %d closed with %s", i,
                         rill_strerror(g_bs[i].close_status));
            cr_assert_eq(g_bs[i].send_status, (int)size, "connection %d: send status %s", i,
                         rill_strerror(g_bs[i].send_status));
        }
    } else {
        cr_assert_geq(took, drain_ms - 20, "stop gave up before the drain deadline");
        cr_assert_lt(took, 2000, "stop(%u) must return in about that time", drain_ms);
        for (int i = 0; i < BULK_CONNS; i++) {
            cr_assert_eq(g_bs[i].close_status, -ETIMEDOUT, "connection %d closed with %s", i,
                         rill_strerror(g_bs[i].close_status));
            cr_assert(atomic_load(&g_bs[i].send_done), "connection %d: send callback never ran",
                      i);
            cr_assert_lt(g_bs[i].send_status, 0, "connection %d: an unsent send completed: %d", i,
                         g_bs[i].send_status);
        }
    }
    for (int i = 0; i < BULK_CONNS; i++)
        close(sr[i].fd);
    rill_engine_destroy(e);
    check_notes();
}

H_BACKEND_TEST(engine, graceful_stop_drains_slow_readers, .timeout = 60)
{
    run_graceful(backend, true, 2u << 20, 5000);
}

H_BACKEND_TEST(engine, graceful_stop_times_out_stuck_readers, .timeout = 60)
{
    run_graceful(backend, false, BULK_MAX, 300);
}

/* ---- migrating a connection between loops --------------------------------------------------- */

#define MIG_MSGS 40000u
#define MIG_TRIGGER (MIG_MSGS / 8u * 8u)

struct mig {
    atomic_int phase;  /* 0 on loop 0, 1 moving, 2 on loop 1 */
    rill_conn *old_c;
    uint64_t rx_old, rx_new;
    unsigned ebusy;
    atomic_int cb_runs;
    int cb_status, cb_loop;
    bool cb_thread_ok;
    uint8_t *carry;
    size_t carry_len;
    unsigned late_old; /* on_data calls on the old handle after the move began */
    atomic_int closed;
    int close_status, close_loop;
    uint32_t open_loop;
};
static struct mig g_mig;

static void mig_try(rill_conn *c, const void *data, size_t len);

/* Keeps bytes received on the old loop after the move began; the new loop echoes them first. */
static void mig_carry(struct mig *m, const void *data, size_t len)
{
    m->carry = realloc(m->carry, m->carry_len + len);
    memcpy(m->carry + m->carry_len, data, len);
    m->carry_len += len;
}

static void mig_carry_sent(rill_conn *c, int status, void *ctx)
{
    (void)c;
    EXPECT(status >= 0, "sending the carried bytes: %s", rill_strerror(status));
    free(ctx);
}

static void mig_cb(rill_conn *nc, int status, void *arg)
{
    struct mig *m = arg;
    atomic_fetch_add(&m->cb_runs, 1);
    m->cb_status = status;
    if (status != 0 || !nc) {
        NOTE("migration failed: %s", rill_strerror(status));
        return;
    }
    rill_loop *l = rill_conn_loop(nc);
    m->cb_loop = rill_loop_index(l);
    m->cb_thread_ok = on_loop_thread(l) && pthread_equal(pthread_self(), g_loop_thread[1]);
    EXPECT(rill_conn_ctx(nc) == m, "the new handle keeps its ctx");
    atomic_store(&m->phase, 2);
    if (m->carry_len) {
        /* The bytes that came with the callback in which the move began: echo them first. */
        struct iovec v = {m->carry, m->carry_len};
        int r = rill_send(nc, &v, 1, mig_carry_sent, m->carry);
        EXPECT(r == 0, "send on the new handle: %s", rill_strerror(r));
        m->carry = NULL;
    }
}

static void mig_sent(rill_conn *c, int status, void *ctx)
{
    (void)status;
    struct mig *m = ctx;
    if (atomic_load(&m->phase) == 0 && rill_conn_write_queued(c) == 0)
        mig_try(c, NULL, 0);
}

/* Starts the move once enough has been echoed on loop 0 and nothing is queued. */
static void mig_try(rill_conn *c, const void *data, size_t len)
{
    struct mig *m = &g_mig;
    if (m->rx_old < MIG_TRIGGER || rill_conn_write_queued(c) != 0)
        return;
    int r = rill_conn_migrate(c, 1, mig_cb, m);
    if (r == 0) {
        m->old_c = c;
        atomic_store(&m->phase, 1);
        if (data)
            mig_carry(m, data, len);
        return;
    }
    EXPECT(r == -EBUSY, "rill_conn_migrate with nothing queued: %s", rill_strerror(r));
}

static void mig_open(rill_conn *c, void *ctx)
{
    struct mig *m = ctx;
    m->open_loop = (uint32_t)rill_loop_index(rill_conn_loop(c));
}

static void mig_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    struct mig *m = ctx;
    rill_loop *l = rill_conn_loop(c);
    int idx = rill_loop_index(l);
    int phase = atomic_load(&m->phase);
    if (phase == 1) {
        if (c != m->old_c) {
            NOTE("on_data on the new handle (loop %d) before the migrate callback", idx);
            return;
        }
        /* Bytes the old loop had in flight when the move began ("data that arrived before the
         * move is delivered on the old loop first"): they go out first on the new loop. */
        EXPECT(idx == 0, "old handle on loop %d", idx);
        m->late_old++;
        m->rx_old += len;
        mig_carry(m, data, len);
        return;
    }
    if (phase == 0) {
        EXPECT(idx == 0, "before the move, data arrives on loop %d", idx);
        m->rx_old += len;
        /* Move now, carrying these bytes, if nothing is queued. */
        mig_try(c, data, len);
        if (atomic_load(&m->phase) == 1)
            return;
    } else {
        EXPECT(idx == 1 && on_loop_thread(l), "after the move, data arrives on loop %d", idx);
        m->rx_new += len;
    }
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    int r = rill_send_bufs(c, &s, 1, mig_sent, m);
    EXPECT(r == 0, "echo on loop %d: %s", idx, rill_strerror(r));
    if (phase == 0 && m->rx_old >= MIG_TRIGGER && rill_conn_write_queued(c) > 0) {
        /* A send is queued: the move must be refused. */
        r = rill_conn_migrate(c, 1, mig_cb, m);
        if (r == 0) {
            NOTE("rill_conn_migrate accepted a connection with %zu bytes queued",
                 rill_conn_write_queued(c));
            m->old_c = c;
            atomic_store(&m->phase, 1);
        } else {
            EXPECT(r == -EBUSY, "rill_conn_migrate with a send queued: %s", rill_strerror(r));
            m->ebusy++;
        }
    }
}

static void mig_close(rill_conn *c, int status, void *ctx)
{
    struct mig *m = ctx;
    m->close_status = status;
    m->close_loop = rill_loop_index(rill_conn_loop(c));
    EXPECT(c != m->old_c, "on_close on the old handle");
    atomic_fetch_add(&m->closed, 1);
}

static const struct rill_conn_handler mig_h = {
    .on_open = mig_open, .on_data = mig_data, .on_close = mig_close};

/* Opens a listener on one loop only (from that loop's thread, through the mailbox). */
struct listen_req {
    const struct rill_conn_handler *h;
    void *ctx;
    int port;
    rill_listener *ls;
};

static void listen_fn(rill_loop *l, void *arg)
{
    struct listen_req *q = arg;
    struct rill_listen_config lc = {.handler = q->h, .ctx = q->ctx};
    int r = rill_listen(l, "tcp://127.0.0.1:0", &lc, &q->ls);
    q->port = r < 0 ? r : rill_listener_port(q->ls);
}

static int listen_on_loop(rill_engine *e, uint32_t i, const struct rill_conn_handler *h, void *ctx)
{
    static struct listen_req q;
    q = (struct listen_req){.h = h, .ctx = ctx};
    eng_call(e, i, listen_fn, &q);
    cr_assert_gt(q.port, 0, "rill_listen on loop %u: %s", i, rill_strerror(q.port));
    return q.port;
}

struct mig_writer {
    int fd;
    int error;
};

static void *mig_writer_main(void *arg)
{
    struct mig_writer *w = arg;
    uint64_t msg[32];
    for (uint32_t seq = 0; seq < MIG_MSGS; seq += 32) {
        for (unsigned k = 0; k < 32; k++)
            msg[k] = seq + k;
        int r = write_all(w->fd, msg, sizeof msg);
        if (r != 0) {
            w->error = r;
            return NULL;
        }
        if ((seq / 32) % 8 == 0)
            sleep_us(100);
    }
    shutdown(w->fd, SHUT_WR);
    return NULL;
}

H_BACKEND_TEST(engine, migrate_keeps_the_stream, .timeout = 60)
{
    _Static_assert(MIG_MSGS % 32 == 0, "whole batches");
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    cr_assert_eq(rill_engine_start(e), 0);
    record_loop_threads(e);
    int port = listen_on_loop(e, 0, &mig_h, &g_mig);
    int fd = cli_connect(port, 0);
    cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
    static struct mig_writer w;
    w.fd = fd;
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, mig_writer_main, &w), 0);

    /* Read the echo: every number in order, none missing, none twice. */
    static uint64_t in[1024];
    uint64_t expect = 0;
    bool bad = false;
    while (expect < MIG_MSGS && !bad) {
        size_t want = (MIG_MSGS - expect) < 1024 ? (size_t)(MIG_MSGS - expect) : 1024;
        ssize_t r = read_full(fd, in, want * 8);
        if (r <= 0 || r % 8) {
            cr_log_error("echo read: %zd (%s) after %llu messages", r, r < 0 ? strerror(errno) : "EOF",
                         (unsigned long long)expect);
            bad = true;
            break;
        }
        for (ssize_t k = 0; k < r / 8; k++, expect++)
            if (in[k] != expect) {
                cr_log_error("message %llu came back as %llu", (unsigned long long)expect,
                             (unsigned long long)in[k]);
                bad = true;
                break;
            }
    }
    pthread_join(th, NULL);
    cr_assert_eq(w.error, 0, "writer: %s", strerror(-w.error));
    check_notes();
    cr_assert(!bad, "the echoed stream is wrong");
    char x;
    cr_assert_eq(read_full(fd, &x, 1), 0, "EOF after the whole echo");
    close(fd);
    uint64_t end = h_now_ms() + 5000;
    while (!atomic_load(&g_mig.closed) && h_now_ms() < end)
        sleep_ms(1);

    struct rill_loop_stats per[2];
    cr_assert_eq(rill_engine_stats(e, per, 2, NULL), 2);
    cr_assert_eq(eng_stop(e, 1000), 0);
    cr_log_info("%s: %llu bytes on loop 0, %llu on loop 1; %u moves refused with a send queued; "
                "%u deliveries on the old handle after the move began (%zu bytes carried)",
                backend, (unsigned long long)g_mig.rx_old, (unsigned long long)g_mig.rx_new,
                g_mig.ebusy, g_mig.late_old, g_mig.carry_len);
    cr_assert_eq(g_mig.open_loop, 0);
    cr_assert_eq(atomic_load(&g_mig.cb_runs), 1, "the migrate callback runs once");
    cr_assert_eq(g_mig.cb_status, 0);
    cr_assert_eq(g_mig.cb_loop, 1, "the new handle is on loop 1");
    cr_assert(g_mig.cb_thread_ok, "the migrate callback runs on loop 1's thread");
    cr_assert_eq(g_mig.rx_old + g_mig.rx_new, (uint64_t)MIG_MSGS * 8);
    cr_assert_gt(g_mig.rx_new, 0, "loop 1 served the rest of the stream");
    cr_assert_eq(atomic_load(&g_mig.closed), 1, "on_close once, on the new handle");
    cr_assert_eq(g_mig.close_loop, 1);
    cr_assert_eq(g_mig.close_status, 0);
    cr_assert_eq(per[0].accepts, 1);
    cr_assert_eq(per[1].accepts, 0);
    cr_assert_geq(per[1].bytes_in, g_mig.rx_new);
    cr_assert_eq(per[0].conns_open + per[1].conns_open, 0);
    rill_engine_destroy(e);
    check_notes();
}

/* The refusals: a send queued (-EBUSY), its own loop (-EALREADY), a bad index (-EINVAL),
 * closing (-EBUSY). */
static atomic_int g_err_open, g_err_checked, g_err_closed, g_err_cb;

static void err_mig_cb(rill_conn *c, int status, void *arg)
{
    (void)c;
    (void)status;
    (void)arg;
    atomic_fetch_add(&g_err_cb, 1);
}

static void err_open(rill_conn *c, void *ctx)
{
    (void)ctx;
    int k = atomic_fetch_add(&g_err_open, 1);
    int r;
    if (k == 0) {
        struct iovec v = {g_bulk, 4u << 20};
        r = rill_send(c, &v, 1, NULL, NULL);
        EXPECT(r == 0, "send: %s", rill_strerror(r));
        EXPECT(rill_conn_write_queued(c) > 0, "4 MiB went out at once");
        r = rill_conn_migrate(c, 1, err_mig_cb, NULL);
        EXPECT(r == -EBUSY, "migrate with a send queued: %s", rill_strerror(r));
    } else {
        r = rill_conn_migrate(c, 0, err_mig_cb, NULL);
        EXPECT(r == -EALREADY, "migrate to its own loop: %s", rill_strerror(r));
        r = rill_conn_migrate(c, 2, err_mig_cb, NULL);
        EXPECT(r == -EINVAL, "migrate to loop 2 of 2: %s", rill_strerror(r));
        r = rill_conn_migrate(c, UINT32_MAX, err_mig_cb, NULL);
        EXPECT(r == -EINVAL, "migrate to loop UINT32_MAX: %s", rill_strerror(r));
        r = rill_conn_migrate(NULL, 1, err_mig_cb, NULL);
        EXPECT(r == -EINVAL, "migrate NULL: %s", rill_strerror(r));
        r = rill_close(c);
        EXPECT(r == 0, "close: %s", rill_strerror(r));
        r = rill_conn_migrate(c, 1, err_mig_cb, NULL);
        EXPECT(r == -EBUSY, "migrate a closing connection: %s", rill_strerror(r));
    }
    atomic_fetch_add(&g_err_checked, 1);
}

static void err_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)status;
    (void)ctx;
    atomic_fetch_add(&g_err_closed, 1);
}

static const struct rill_conn_handler err_h = {.on_open = err_open, .on_close = err_close};

H_BACKEND_TEST(engine, migrate_refusals, .timeout = 60)
{
    g_bulk_size = 4u << 20;
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    cr_assert_eq(rill_engine_start(e), 0);
    int port = listen_on_loop(e, 0, &err_h, NULL);
    int a = cli_connect(port, 16384);
    cr_assert_geq(a, 0);
    uint64_t end = h_now_ms() + 5000;
    while (atomic_load(&g_err_checked) < 1 && h_now_ms() < end)
        sleep_ms(1);
    int b = cli_connect(port, 0);
    cr_assert_geq(b, 0);
    while ((atomic_load(&g_err_checked) < 2 || atomic_load(&g_err_closed) < 1) && h_now_ms() < end)
        sleep_ms(1);
    cr_assert_eq(atomic_load(&g_err_checked), 2);
    cr_assert_eq(atomic_load(&g_err_closed), 1, "the closed connection got its on_close");
    char x;
    cr_assert_eq(read_full(b, &x, 1), 0, "EOF on the closed one");
    cr_assert_eq(eng_stop(e, 0), 0);
    cr_assert_eq(atomic_load(&g_err_closed), 2, "stop closed the busy one");
    cr_assert_eq(atomic_load(&g_err_cb), 0, "a refused move calls no callback");
    close(a);
    close(b);
    rill_engine_destroy(e);
    check_notes();
}

static int g_plain_migrate = 1;
static bool g_plain_open;

static void plain_open(rill_conn *c, void *ctx)
{
    (void)ctx;
    g_plain_migrate = rill_conn_migrate(c, 0, err_mig_cb, NULL);
    g_plain_open = true;
}

static const struct rill_conn_handler plain_h = {.on_open = plain_open};

H_BACKEND_TEST(engine, migrate_outside_an_engine, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    cr_assert_eq(rill_loop_index(l), -1);
    cr_assert_null(rill_loop_engine(l));
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &plain_h};
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    h_run_until(l, &g_plain_open, 5000, "accept");
    cr_assert_eq(g_plain_migrate, -EINVAL, "migrate on a loop outside an engine: %s",
                 rill_strerror(g_plain_migrate));
    cr_assert_eq(atomic_load(&g_err_cb), 0);
    close(fd);
    rill_loop_destroy(l);
}

/* A move into a loop that has no room (max_conns): the connection is closed, cb(NULL, -errno)
 * runs, and the old handle gets no on_close. */
static atomic_int g_full_cb, g_full_cb_status, g_full_closes_loop0, g_full_closes_loop1,
    g_full_migrate_r = 1;
static atomic_int g_full_opens;
static rill_conn *g_full_old;

static void full_cb(rill_conn *c, int status, void *arg)
{
    (void)arg;
    EXPECT(c == NULL, "a failed move hands over a handle");
    atomic_store(&g_full_cb_status, status);
    atomic_fetch_add(&g_full_cb, 1);
}

static void full_open(rill_conn *c, void *ctx)
{
    (void)c;
    (void)ctx;
    atomic_fetch_add(&g_full_opens, 1);
}

static void full_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    (void)data;
    (void)len;
    (void)ctx;
    if (rill_loop_index(rill_conn_loop(c)) != 0 || atomic_load(&g_full_migrate_r) != 1)
        return;
    g_full_old = c;
    atomic_store(&g_full_migrate_r, rill_conn_migrate(c, 1, full_cb, NULL));
}

static void full_close(rill_conn *c, int status, void *ctx)
{
    (void)status;
    (void)ctx;
    EXPECT(c != g_full_old, "on_close on the handle of a connection whose move failed");
    if (rill_loop_index(rill_conn_loop(c)) == 0)
        atomic_fetch_add(&g_full_closes_loop0, 1);
    else
        atomic_fetch_add(&g_full_closes_loop1, 1);
}

static const struct rill_conn_handler full_h = {
    .on_open = full_open, .on_data = full_data, .on_close = full_close};

H_BACKEND_TEST(engine, migrate_into_a_full_loop, .timeout = 60)
{
    struct rill_engine_config cfg;
    eng_config(backend, &cfg, 2, pin_flags(2), 0);
    cfg.loop.max_conns = 1;
    rill_engine *e = eng_create_cfg(backend, &cfg);
    cr_assert_eq(rill_engine_start(e), 0);
    int p0 = listen_on_loop(e, 0, &full_h, NULL);
    int p1 = listen_on_loop(e, 1, &full_h, NULL);
    int a = cli_connect(p1, 0); /* takes loop 1's only slot */
    cr_assert_geq(a, 0);
    uint64_t end = h_now_ms() + 5000;
    while (atomic_load(&g_full_opens) < 1 && h_now_ms() < end)
        sleep_ms(1);
    int b = cli_connect(p0, 0);
    cr_assert_geq(b, 0);
    cr_assert_eq(write_all(b, "x", 1), 0);
    while (atomic_load(&g_full_cb) == 0 && h_now_ms() < end)
        sleep_ms(1);
    cr_assert_eq(atomic_load(&g_full_migrate_r), 0, "the move starts: %s",
                 rill_strerror(atomic_load(&g_full_migrate_r)));
    cr_assert_eq(atomic_load(&g_full_cb), 1, "the migrate callback reports the failure");
    cr_assert_lt(atomic_load(&g_full_cb_status), 0);
    cr_log_info("%s: a move into a full loop: %s", backend,
                rill_strerror(atomic_load(&g_full_cb_status)));
    char x;
    ssize_t r = read_full(b, &x, 1);
    cr_assert(r == 0 || r == -ECONNRESET, "the moved connection is closed: %zd", r);
    cr_assert_eq(eng_stop(e, 0), 0);
    cr_assert_eq(atomic_load(&g_full_closes_loop1), 1, "the connection on loop 1 closed at stop");
    cr_assert_eq(atomic_load(&g_full_closes_loop0), 0, "no on_close for the failed move");
    close(a);
    close(b);
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
        sleep_ms(2);
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
