/* Moving a connection between the engine's loops: the byte stream survives the move, the
 * refusals, rill_conn_migrate outside an engine, and a move into a full loop.
 *
 * Callbacks on the engine's threads report failures with NOTE()/EXPECT(), which the test thread
 * checks afterwards (see engine_util.h). */
#include "engine_util.h"

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
        h_sleep_ms(1);

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

/* Queued on a connection so that it is busy (more than a 16 KiB receive buffer takes at once);
 * what the bytes are does not matter. */
static uint8_t g_busy[4u << 20];

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
        struct iovec v = {g_busy, sizeof g_busy};
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
    rill_engine *e = eng_create(backend, 2, pin_flags(2), 0);
    cr_assert_eq(rill_engine_start(e), 0);
    int port = listen_on_loop(e, 0, &err_h, NULL);
    int a = cli_connect(port, 16384);
    cr_assert_geq(a, 0);
    uint64_t end = h_now_ms() + 5000;
    while (atomic_load(&g_err_checked) < 1 && h_now_ms() < end)
        h_sleep_ms(1);
    int b = cli_connect(port, 0);
    cr_assert_geq(b, 0);
    while ((atomic_load(&g_err_checked) < 2 || atomic_load(&g_err_closed) < 1) && h_now_ms() < end)
        h_sleep_ms(1);
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
        h_sleep_ms(1);
    int b = cli_connect(p0, 0);
    cr_assert_geq(b, 0);
    cr_assert_eq(write_all(b, "x", 1), 0);
    while (atomic_load(&g_full_cb) == 0 && h_now_ms() < end)
        h_sleep_ms(1);
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
