/* The engine's graceful stop with busy connections: slow readers drained before the deadline,
 * stuck readers cut at it.
 *
 * Callbacks on the engine's threads report failures with NOTE()/EXPECT(), which the test thread
 * checks afterwards (see engine_util.h). */
#include "engine_util.h"

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
        h_sleep_ms(1);
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
    h_sleep_ms(lc->delay_ms);
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
            h_sleep_ms(1);
    for (int i = 0; i < BULK_CONNS; i++)
        cr_assert(atomic_load(&g_bs[i].opened), "server connection %d never opened", i);
    h_sleep_ms(50); /* let the engine fill the socket buffers */
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
