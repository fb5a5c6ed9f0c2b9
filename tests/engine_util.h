/* Helpers shared by the engine tests (test_engine*.c): failures recorded off the test thread
 * (NOTE/EXPECT, checked by check_notes()), CPUs and pinning, creating and stopping an engine on
 * a named backend, running a function on a loop's thread, learning each loop's thread, and plain
 * blocking clients.
 *
 * Loop callbacks run on the engine's threads, where Criterion's assertions must not be used
 * (they unwind the test thread). Those callbacks record what they see, and failures with
 * NOTE()/EXPECT(); the test thread asserts afterwards (check_notes()). Every wait has a
 * deadline, clients use loopback and blocking sockets with receive and send timeouts.
 *
 * Everything here is static: each test program gets its own copy of the state. */
#ifndef RILL_TEST_ENGINE_UTIL_H
#define RILL_TEST_ENGINE_UTIL_H

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/time.h>

#include "harness.h"

#define MAXL 64 /* loops any test here uses at most (the machine's CPUs for the defaults) */

/* ---- failures off the test thread ----------------------------------------------------------- */

static atomic_int g_nerr;
static pthread_mutex_t g_err_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_err[512];

__attribute__((format(printf, 2, 3))) static inline void note(int line, const char *fmt, ...)
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

static inline void check_notes(void)
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

static inline void sleep_us(unsigned us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static cpu_set_t g_mask;

/* CPUs in this process's affinity mask (what the engine's default sizes itself by). */
static inline int ncpus(void)
{
    CPU_ZERO(&g_mask);
    if (sched_getaffinity(0, sizeof g_mask, &g_mask) != 0)
        return 1;
    return CPU_COUNT(&g_mask);
}

/* The i-th CPU of the mask, or -1. */
static inline int nth_cpu(int i)
{
    for (int c = 0, k = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &g_mask) && k++ == i)
            return c;
    return -1;
}

/* Pinned when there are CPUs enough for `loops`, so every test also passes on one CPU. */
static inline uint32_t pin_flags(uint32_t loops)
{
    return ncpus() >= (int)loops ? 0u : RILL_ENGINE_F_NO_PIN;
}

/* ---- engine set-up -------------------------------------------------------------------------- */

static inline bool is_uring(const char *backend)
{
    return strcmp(backend, "uring") == 0;
}

static inline void eng_config(const char *backend, struct rill_engine_config *cfg,
                              uint32_t loops, uint32_t flags, uint32_t mailbox)
{
    rill_engine_config_init(cfg);
    cfg->loops = loops;
    cfg->flags = flags;
    if (mailbox)
        cfg->mailbox_capacity = mailbox;
    cfg->loop.backend = is_uring(backend) ? RILL_BACKEND_URING : RILL_BACKEND_EPOLL;
}

/* Creates an engine on the named backend; skips when io_uring cannot run here. */
static inline rill_engine *eng_create_cfg(const char *backend, const struct rill_engine_config *cfg)
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

static inline rill_engine *eng_create(const char *backend, uint32_t loops, uint32_t flags,
                                      uint32_t mailbox)
{
    struct rill_engine_config cfg;
    eng_config(backend, &cfg, loops, flags, mailbox);
    return eng_create_cfg(backend, &cfg);
}

/* Posts, retrying while the mailbox is full, for up to 5 s. */
static inline int post_retry(rill_engine *e, uint32_t i, rill_post_fn fn, void *arg)
{
    uint64_t end = h_now_ms() + 5000;
    int r;
    while ((r = rill_engine_post(e, i, fn, arg)) == -EAGAIN && h_now_ms() < end)
        sleep_us(200);
    return r;
}

static inline bool sem_wait_ms(sem_t *s, unsigned ms)
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

static inline void call_tramp(rill_loop *l, void *a)
{
    struct call *c = a;
    c->fn(l, c->arg);
    sem_post(&c->done);
}

static inline void eng_call(rill_engine *e, uint32_t i, rill_post_fn fn, void *arg)
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

static inline void *stopper_main(void *arg)
{
    struct stopper *s = arg;
    s->r = rill_engine_stop(s->e, s->drain_ms);
    return NULL;
}

static inline int eng_stop(rill_engine *e, uint32_t drain_ms)
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

static inline void rec_thread(rill_loop *l, void *arg)
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

static inline void record_loop_threads(rill_engine *e)
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
static inline bool on_loop_thread(rill_loop *l)
{
    int i = rill_loop_index(l);
    if (i < 0 || i >= MAXL)
        return false;
    return !g_threads_known || pthread_equal(pthread_self(), g_loop_thread[i]);
}

/* ---- plain blocking clients (safe on any thread: no Criterion calls) ------------------------- */

static inline int cli_connect(int port, int rcvbuf)
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
    int err = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        err = -errno;
        /* A connect interrupted by a signal goes on in the kernel (seen once in CI, under a
         * loaded machine): its outcome is the socket's, once it is writable. */
        if (err == -EINTR) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof err;
            if (poll(&p, 1, 10000) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0)
                err = -err;
            else
                err = -ETIMEDOUT;
        }
    }
    if (err < 0) {
        close(fd);
        return err;
    }
    return fd;
}

static inline int write_all(int fd, const void *p, size_t n)
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
static inline ssize_t read_full(int fd, void *p, size_t n)
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

#endif
