/* Misuse of the public API: NULL arguments, malformed addresses and configs, calls on a closing
 * connection, bad send arguments, buffers released too often, listeners closed twice or
 * competing for a port, and the write-queue hard limit. Every refused call must leave no trace:
 * no descriptor opened, no byte queued, no callback run; misuse that cannot be refused (a void
 * call) aborts with a message before it touches anything. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.h"

#include <criterion/redirect.h>

/* ---- a loop with one accepted connection ---------------------------------------------------- */

struct pair {
    rill_loop *l;
    rill_listener *ls;
    int fd;       /* the plain client socket */
    rill_conn *c; /* the accepted connection */
    int opens, closes, status;
    /* In on_close: */
    int close_in_close, send_in_close, shutdown_in_close;
    /* Send callbacks: */
    int cbs, cb_status, cbs_after_close, send_in_cb;
    int drains;
    size_t q_at_drain;
};

static const char some[] = "0123456789";

static void p_open(rill_conn *c, void *ctx)
{
    struct pair *p = ctx;
    p->opens++;
    p->c = c;
}

static void p_close(rill_conn *c, int status, void *ctx)
{
    struct pair *p = ctx;
    p->closes++;
    p->status = status;
    struct iovec v = {(void *)some, 3};
    p->close_in_close = rill_close(c);
    p->send_in_close = rill_send(c, &v, 1, NULL, NULL);
    p->shutdown_in_close = rill_shutdown(c);
}

static void p_sent(rill_conn *c, int status, void *ctx)
{
    struct pair *p = ctx;
    p->cbs++;
    p->cb_status = status;
    if (p->closes)
        p->cbs_after_close++;
    if (status < 0) {
        struct iovec v = {(void *)some, 3};
        p->send_in_cb = rill_send(c, &v, 1, NULL, NULL);
    }
}

static void p_drain(rill_conn *c, void *ctx)
{
    struct pair *p = ctx;
    p->drains++;
    p->q_at_drain = rill_conn_write_queued(c);
}

static const struct rill_conn_handler p_h = {
    .on_open = p_open, .on_close = p_close, .on_drain = p_drain};

static void pair_open(struct pair *p, const char *backend, const struct rill_conn_options *o)
{
    memset(p, 0, sizeof *p);
    p->l = h_loop(backend);
    struct rill_listen_config lc = {.handler = &p_h, .ctx = p};
    if (o)
        lc.conn = *o;
    int r = rill_listen(p->l, "tcp://127.0.0.1:0", &lc, &p->ls);
    cr_assert_eq(r, 0, "listen: %s", rill_strerror(r));
    p->fd = h_client(AF_INET, rill_listener_port(p->ls));
    uint64_t end = h_now_ms() + 5000;
    while (!p->c) {
        cr_assert_geq(rill_loop_run_once(p->l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "accept timed out");
    }
}

static void pair_close(struct pair *p)
{
    if (p->fd >= 0)
        close(p->fd);
    rill_loop_destroy(p->l);
}

/* ---- NULL arguments ------------------------------------------------------------------------- */

static void noop_timer(rill_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
}

static void noop_defer(rill_loop *l, void *arg)
{
    (void)l;
    (void)arg;
}

H_BACKEND_TEST(misuse, null_arguments, .timeout = 30)
{
    /* Global functions. */
    cr_assert_eq(rill_set_allocator(NULL, realloc, free), -EINVAL);
    cr_assert_eq(rill_set_allocator(malloc, NULL, free), -EINVAL);
    cr_assert_eq(rill_set_allocator(malloc, realloc, NULL), -EINVAL);
    rill_loop_config_init(NULL);
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cr_assert_eq(rill_loop_create(&cfg, NULL), -EINVAL);
    cr_assert_eq(rill_loop_create(NULL, NULL), -EINVAL);

    /* Loop functions with a NULL loop. */
    rill_loop_destroy(NULL);
    cr_assert_eq(rill_loop_run(NULL), -EINVAL);
    cr_assert_eq(rill_loop_run_once(NULL, 0), -EINVAL);
    cr_assert_eq(rill_loop_run_once(NULL, -1), -EINVAL);
    rill_loop_stop(NULL);
    rill_loop_wake(NULL);
    cr_assert_eq(rill_loop_defer(NULL, noop_defer, NULL), -EINVAL);
    cr_assert_eq(rill_loop_now(NULL), 0);
    cr_assert_not_null(rill_loop_backend_name(NULL));
    cr_assert_eq(rill_loop_caps(NULL), 0);
    struct rill_loop_stats st;
    memset(&st, 0xff, sizeof st);
    rill_loop_stats(NULL, &st);
    rill_buf *b = NULL;
    cr_assert_eq(rill_buf_lease(NULL, 100, &b), -EINVAL);
    cr_assert_null(rill_buf_ref(NULL));
    rill_buf_release(NULL);
    cr_assert_null(rill_buf_data(NULL));
    cr_assert_eq(rill_buf_capacity(NULL), 0);
    rill_timer *t = NULL;
    cr_assert_eq(rill_timer_create(NULL, noop_timer, NULL, &t), -EINVAL);
    cr_assert_eq(rill_timer_start(NULL, 1, 0), -EINVAL);
    cr_assert_eq(rill_timer_stop(NULL), -EINVAL);
    cr_assert_not(rill_timer_active(NULL));
    rill_timer_destroy(NULL);

    /* Listener and connection functions with NULL handles. */
    cr_assert_eq(rill_listener_close(NULL), -EINVAL);
    cr_assert_eq(rill_listener_port(NULL), 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    cr_assert_eq(rill_listener_addr(NULL, &ss, &len), -EINVAL);
    struct iovec v = {(void *)some, 3};
    cr_assert_eq(rill_send(NULL, &v, 1, NULL, NULL), -EINVAL);
    cr_assert_eq(rill_send_bufs(NULL, NULL, 1, NULL, NULL), -EINVAL);
    cr_assert_eq(rill_shutdown(NULL), -EINVAL);
    cr_assert_eq(rill_close(NULL), -EINVAL);
    cr_assert_eq(rill_read_pause(NULL), -EINVAL);
    cr_assert_eq(rill_read_resume(NULL), -EINVAL);
    cr_assert_eq(rill_conn_write_queued(NULL), 0);
    cr_assert_eq(rill_conn_local_addr(NULL, &ss, &len), -EINVAL);
    cr_assert_eq(rill_conn_peer_addr(NULL, &ss, &len), -EINVAL);
    rill_conn_set_ctx(NULL, &ss);
    cr_assert_null(rill_conn_ctx(NULL));
    cr_assert_null(rill_conn_loop(NULL));
    cr_assert_lt(rill_conn_fd(NULL), 0);

    /* Valid handles with the other arguments NULL. */
    struct pair p;
    pair_open(&p, backend, NULL);
    rill_loop *l = p.l;
    rill_loop_stats(l, NULL);
    cr_assert_eq(rill_loop_defer(l, NULL, NULL), -EINVAL);
    cr_assert_eq(rill_buf_lease(l, 100, NULL), -EINVAL);
    cr_assert_eq(rill_timer_create(l, NULL, NULL, &t), -EINVAL);
    cr_assert_eq(rill_timer_create(l, noop_timer, NULL, NULL), -EINVAL);

    struct rill_listen_config lc = {.handler = &p_h};
    rill_listener *ls = NULL;
    cr_assert_eq(rill_listen(NULL, "tcp://127.0.0.1:0", &lc, &ls), -EINVAL);
    cr_assert_eq(rill_listen(l, NULL, &lc, &ls), -EINVAL);
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", NULL, &ls), -EINVAL);
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, NULL), -EINVAL);
    cr_assert_eq(rill_listener_addr(p.ls, NULL, &len), -EINVAL);
    cr_assert_eq(rill_listener_addr(p.ls, &ss, NULL), -EINVAL);

    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", rill_listener_port(p.ls));
    struct rill_connect_config cc = {.handler = &p_h};
    rill_conn *c = NULL;
    cr_assert_eq(rill_connect(NULL, uri, &cc, &c), -EINVAL);
    cr_assert_eq(rill_connect(l, NULL, &cc, &c), -EINVAL);
    cr_assert_eq(rill_connect(l, uri, NULL, &c), -EINVAL);
    cr_assert_eq(rill_connect(l, uri, &cc, NULL), -EINVAL);

    cr_assert_eq(rill_send(p.c, NULL, 1, NULL, NULL), -EINVAL);
    cr_assert_eq(rill_send_bufs(p.c, NULL, 1, NULL, NULL), -EINVAL);
    struct rill_bufslice nullbuf = {NULL, 0, 1};
    cr_assert_eq(rill_send_bufs(p.c, &nullbuf, 1, NULL, NULL), -EINVAL);
    cr_assert_eq(rill_conn_local_addr(p.c, NULL, &len), -EINVAL);
    cr_assert_eq(rill_conn_local_addr(p.c, &ss, NULL), -EINVAL);
    cr_assert_eq(rill_conn_peer_addr(p.c, NULL, &len), -EINVAL);
    cr_assert_eq(rill_conn_peer_addr(p.c, &ss, NULL), -EINVAL);
    cr_assert_eq(rill_conn_write_queued(p.c), 0, "nothing was queued by the refused calls");

    /* The connection and the loop are still fine. */
    len = sizeof ss;
    cr_assert_eq(rill_conn_peer_addr(p.c, &ss, &len), 0);
    cr_assert_eq(ss.ss_family, AF_INET);
    cr_assert_eq(p.closes, 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert_eq(p.closes, 0);
    pair_close(&p);
}

/* ---- malformed addresses and configs -------------------------------------------------------- */

static const char *const bad_uris[] = {
    "", "tcp://", "tcp://1.2.3.4", "tcp://[::1", "tcp://x:99999", "ftp://a:1", "tcp://a b:1",
};

struct opener {
    int opens, closes;
};

static void o_open(rill_conn *c, void *ctx)
{
    (void)c;
    ((struct opener *)ctx)->opens++;
}

static void o_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)status;
    ((struct opener *)ctx)->closes++;
}

static const struct rill_conn_handler o_h = {.on_open = o_open, .on_close = o_close};

H_BACKEND_TEST(misuse, malformed_uris, .timeout = 30)
{
    /* Two slots: if a refused connect kept one, the valid connect below (and its accepted
     * peer) would not fit. */
    struct rill_loop_config c;
    rill_loop_config_init(&c);
    c.max_conns = 2;
    int fds0 = h_count_fds();
    rill_loop *l = h_loop_cfg(backend, &c);
    struct opener o = {0};
    struct rill_listen_config lc = {.handler = &o_h, .ctx = &o};
    struct rill_connect_config cc = {.handler = &o_h, .ctx = &o};
    struct rill_loop_stats s0, s1;
    rill_loop_stats(l, &s0);
    int fds = h_count_fds();
    for (size_t i = 0; i < sizeof bad_uris / sizeof bad_uris[0]; i++) {
        rill_listener *ls = NULL;
        rill_conn *cn = NULL;
        int r = rill_listen(l, bad_uris[i], &lc, &ls);
        cr_assert_eq(r, -EINVAL, "rill_listen(\"%s\"): %s", bad_uris[i], rill_strerror(r));
        r = rill_connect(l, bad_uris[i], &cc, &cn);
        cr_assert_eq(r, -EINVAL, "rill_connect(\"%s\"): %s", bad_uris[i], rill_strerror(r));
        cr_assert_eq(h_count_fds(), fds, "\"%s\" opened a descriptor", bad_uris[i]);
    }
    rill_loop_stats(l, &s1);
    cr_assert_eq(s1.sys_other, s0.sys_other, "no socket() for a malformed address");
    cr_assert_eq(s1.sys_connect, s0.sys_connect);
    h_run_for(l, 20);
    cr_assert_eq(o.opens + o.closes, 0, "a refused call runs no callback");

    /* Nothing leaked: a valid listener and connection still fit. */
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", rill_listener_port(ls));
    rill_conn *cn;
    cr_assert_eq(rill_connect(l, uri, &cc, &cn), 0);
    uint64_t end = h_now_ms() + 5000;
    while (o.opens < 2) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "the valid connection did not open (%d of 2)", o.opens);
    }
    cr_assert_eq(o.closes, 0);
    rill_loop_destroy(l);
    cr_assert_eq(h_count_fds(), fds0, "the loop's own descriptors are gone too");
}

H_BACKEND_TEST(misuse, bad_configs, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct opener o = {0};
    int fds = h_count_fds();
    rill_listener *ls = NULL;
    rill_conn *cn = NULL;

    struct rill_listen_config lc = {.handler = NULL, .ctx = &o};
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), -EINVAL, "NULL handler");
    lc.handler = &o_h;
    lc.flags = 1u << 20;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), -EINVAL, "unknown listen flag");
    lc.flags = 0;
    lc.conn.flags = 1u << 20;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), -EINVAL, "unknown conn flag");
    lc.conn.flags = 0;
    lc.backlog = -1;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), -EINVAL, "negative backlog");

    struct rill_connect_config cc = {.handler = NULL, .ctx = &o};
    cr_assert_eq(rill_connect(l, "tcp://127.0.0.1:9", &cc, &cn), -EINVAL, "NULL handler");
    cc.handler = &o_h;
    cc.conn.flags = 1u << 20;
    cr_assert_eq(rill_connect(l, "tcp://127.0.0.1:9", &cc, &cn), -EINVAL, "unknown conn flag");
    cr_assert_eq(h_count_fds(), fds, "a refused config opens nothing");
    h_run_for(l, 20);
    cr_assert_eq(o.opens + o.closes, 0);
    rill_loop_destroy(l);
}

/* ---- closing, and calls after close --------------------------------------------------------- */

H_BACKEND_TEST(misuse, calls_after_close, .timeout = 30)
{
    struct pair p;
    pair_open(&p, backend, NULL);
    rill_conn *c = p.c;
    struct iovec v = {(void *)some, sizeof some - 1};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rill_send(c, &v, 1, p_sent, &p), 0);
    rill_buf *b;
    cr_assert_eq(rill_buf_lease(p.l, 64, &b), 0);
    struct rill_bufslice s = {b, 0, 8};

    cr_assert_eq(rill_close(c), 0);
    cr_assert_eq(p.closes, 0, "on_close never runs from inside rill_close");
    cr_assert_eq(p.cbs, 0, "nor do send callbacks");
    cr_assert_eq(rill_close(c), -EALREADY);
    cr_assert_eq(rill_send(c, &v, 1, p_sent, &p), -ENOTCONN);
    cr_assert_eq(rill_send_bufs(c, &s, 1, p_sent, &p), -ENOTCONN);
    cr_assert_eq(rill_shutdown(c), -ENOTCONN);
    cr_assert_eq(rill_read_pause(c), -ENOTCONN);
    cr_assert_eq(rill_read_resume(c), -ENOTCONN);
    cr_assert_lt(rill_conn_fd(c), 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    cr_assert_eq(rill_conn_peer_addr(c, &ss, &len), -ENOTCONN);

    uint64_t end = h_now_ms() + 5000;
    while (!p.closes) {
        cr_assert_geq(rill_loop_run_once(p.l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "on_close never ran");
    }
    h_run_for(p.l, 30);
    cr_assert_eq(p.closes, 1, "on_close exactly once");
    cr_assert_eq(p.status, 0, "rill_close closes with status 0, got %s", rill_strerror(p.status));
    cr_assert_eq(p.close_in_close, -EALREADY);
    cr_assert_eq(p.send_in_close, -ENOTCONN);
    cr_assert_eq(p.shutdown_in_close, -ENOTCONN);
    cr_assert_eq(p.cbs, 3, "each queued send callback exactly once (got %d)", p.cbs);
    cr_assert_eq(p.cb_status, -ECANCELED, "%s", rill_strerror(p.cb_status));
    cr_assert_eq(p.cbs_after_close, 0, "on_close is the last callback");
    cr_assert_eq(p.send_in_cb, -ENOTCONN);

    /* The queued bytes never went out: the peer sees the end of the stream straight away. */
    char buf[64];
    cr_assert(h_readable(p.fd, 5000));
    cr_assert_eq(read(p.fd, buf, sizeof buf), 0);

    rill_buf_release(b);
    struct rill_loop_stats st;
    rill_loop_stats(p.l, &st);
    cr_assert_eq(st.bufs_in_use, 0, "a refused rill_send_bufs keeps no reference");
    cr_assert_eq(st.conns_open, 0);
    pair_close(&p);
}

/* ---- send arguments ------------------------------------------------------------------------- */

H_BACKEND_TEST(misuse, send_arguments, .timeout = 30)
{
    struct pair p;
    pair_open(&p, backend, NULL);
    rill_conn *c = p.c;
    static struct iovec many[IOV_MAX + 1];
    static char bytes[IOV_MAX + 1];
    h_fill((uint8_t *)bytes, sizeof bytes, 3, 0);
    for (int i = 0; i <= IOV_MAX; i++)
        many[i] = (struct iovec){&bytes[i], 1};

    cr_assert_eq(rill_send(c, many, 0, p_sent, &p), -EINVAL, "iovcnt 0");
    cr_assert_eq(rill_send(c, many, IOV_MAX + 1, p_sent, &p), -EINVAL, "iovcnt over IOV_MAX");
    cr_assert_eq(rill_send(c, many, UINT_MAX, p_sent, &p), -EINVAL, "iovcnt UINT_MAX");
    struct iovec zero[2] = {{bytes, 0}, {bytes + 1, 0}};
    cr_assert_eq(rill_send(c, zero, 1, p_sent, &p), -EINVAL, "zero total length");
    cr_assert_eq(rill_send(c, zero, 2, p_sent, &p), -EINVAL, "zero total length, 2 iovecs");
    struct iovec nullbase[2] = {{bytes, 1}, {NULL, 5}};
    cr_assert_eq(rill_send(c, nullbase, 2, p_sent, &p), -EINVAL, "NULL base with a length");
    cr_assert_eq(rill_conn_write_queued(c), 0, "a refused send queues nothing");

    /* IOV_MAX itself is allowed, and the bytes arrive in order. */
    cr_assert_eq(rill_send(c, many, IOV_MAX, p_sent, &p), 0);
    cr_assert_eq(rill_conn_write_queued(c), (size_t)IOV_MAX);
    char got[IOV_MAX];
    size_t have = 0;
    uint64_t end = h_now_ms() + 5000;
    while (have < IOV_MAX) {
        cr_assert_geq(rill_loop_run_once(p.l, 5), 0);
        if (h_readable(p.fd, 0)) {
            ssize_t r = read(p.fd, got + have, sizeof got - have);
            cr_assert_gt(r, 0);
            have += (size_t)r;
        }
        cr_assert_lt(h_now_ms(), end, "received %zu of %d bytes", have, IOV_MAX);
    }
    cr_assert_arr_eq(got, bytes, IOV_MAX);
    end = h_now_ms() + 5000;
    while (p.cbs == 0) {
        cr_assert_geq(rill_loop_run_once(p.l, 5), 0);
        cr_assert_lt(h_now_ms(), end);
    }
    cr_assert_eq(p.cbs, 1, "only the accepted send calls back");
    cr_assert_eq(p.cb_status, IOV_MAX);
    pair_close(&p);
}

H_BACKEND_TEST(misuse, send_bufs_slices, .timeout = 30)
{
    struct pair p;
    pair_open(&p, backend, NULL);
    rill_conn *c = p.c;
    rill_buf *b;
    cr_assert_eq(rill_buf_lease(p.l, 1000, &b), 0);
    uint32_t cap = (uint32_t)rill_buf_capacity(b);
    h_fill(rill_buf_data(b), cap, 9, 0);

    struct rill_bufslice bad[] = {
        {b, 0, cap + 1}, {b, cap, 1}, {b, 1, cap}, {b, UINT32_MAX, 1}, {b, 0, UINT32_MAX},
        {b, UINT32_MAX, UINT32_MAX},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(rill_send_bufs(c, &bad[i], 1, p_sent, &p), -EINVAL,
                     "slice {off %u, len %u} of a %u-byte buffer", bad[i].off, bad[i].len, cap);
    struct rill_bufslice mixed[2] = {{b, 0, 10}, {b, cap - 5, 6}};
    cr_assert_eq(rill_send_bufs(c, mixed, 2, p_sent, &p), -EINVAL, "one bad slice of two");
    struct rill_bufslice empty = {b, 0, 0};
    cr_assert_eq(rill_send_bufs(c, &empty, 1, p_sent, &p), -EINVAL, "zero total length");
    cr_assert_eq(rill_send_bufs(c, mixed, 0, p_sent, &p), -EINVAL, "no slices");
    cr_assert_eq(rill_conn_write_queued(c), 0);
    struct rill_loop_stats st;
    rill_loop_stats(p.l, &st);
    cr_assert_eq(st.bufs_in_use, 1, "refused slices take no reference");

    /* The last byte of the buffer is inside it. */
    struct rill_bufslice edge = {b, cap - 1, 1};
    cr_assert_eq(rill_send_bufs(c, &edge, 1, p_sent, &p), 0);
    rill_buf_release(b); /* the engine holds its own reference now */
    char got = 0;
    uint64_t end = h_now_ms() + 5000;
    while (p.cbs == 0) {
        cr_assert_geq(rill_loop_run_once(p.l, 5), 0);
        cr_assert_lt(h_now_ms(), end);
    }
    cr_assert(h_readable(p.fd, 5000));
    cr_assert_eq(read(p.fd, &got, 1), 1);
    cr_assert_eq((uint8_t)got, h_pattern(9, cap - 1));
    rill_loop_stats(p.l, &st);
    cr_assert_eq(st.bufs_in_use, 0, "the engine dropped its reference once sent");
    pair_close(&p);
}

/* ---- buffers released too often ------------------------------------------------------------ */

/* A buffer's references are counted; one release too many would put it on the slab's free list
 * twice, and two later leases would then hand the same memory to two owners. That is caught in
 * every build, Release included: the call aborts before it touches the slab. Buffers do not
 * depend on the backend, so these run on epoll only. */

static rill_loop *epoll_loop(void)
{
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.backend = RILL_BACKEND_EPOLL;
    unsetenv("RILL_BACKEND");
    rill_loop *l = NULL;
    return rill_loop_create(&cfg, &l) == 0 ? l : NULL;
}

/* Leases a buffer and drops its only reference: what is left is a pointer to a free buffer. */
static rill_buf *released_buf(rill_loop *l)
{
    rill_buf *b = NULL;
    if (rill_buf_lease(l, 100, &b) < 0)
        return NULL;
    rill_buf_release(b);
    return b;
}

Test(misuse, buf_double_release_aborts, .signal = SIGABRT, .init = cr_redirect_stderr,
     .timeout = 30)
{
    rill_loop *l = epoll_loop();
    cr_assert_not_null(l);
    rill_buf *b = released_buf(l);
    cr_assert_not_null(b);
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 0, "the first release freed the buffer");
    rill_buf_release(b); /* aborts */
    cr_assert_fail("a second rill_buf_release of a buffer leased once returned");
}

Test(misuse, buf_ref_after_release_aborts, .signal = SIGABRT, .init = cr_redirect_stderr,
     .timeout = 30)
{
    rill_loop *l = epoll_loop();
    cr_assert_not_null(l);
    rill_buf *b = released_buf(l);
    cr_assert_not_null(b);
    rill_buf_ref(b); /* aborts */
    cr_assert_fail("rill_buf_ref of a released buffer returned");
}

/* Runs wrong() in a child process whose stderr goes into out[]; returns its wait status. */
static int run_child(void (*wrong)(rill_loop *, rill_buf *), char *out, size_t cap)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        close(fds[1]);
        rill_loop *l = epoll_loop();
        rill_buf *b = l ? released_buf(l) : NULL;
        if (!b)
            _exit(2);
        wrong(l, b);
        _exit(0); /* not reached when the misuse is caught */
    }
    close(fds[1]);
    size_t have = 0;
    ssize_t r;
    while (have + 1 < cap && (r = read(fds[0], out + have, cap - 1 - have)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        cr_assert_gt(r, 0, "read: %s", strerror(errno));
        have += (size_t)r;
    }
    out[have] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        cr_assert_eq(errno, EINTR);
    return status;
}

static void release_again(rill_loop *l, rill_buf *b)
{
    (void)l;
    rill_buf_release(b);
}

static void ref_again(rill_loop *l, rill_buf *b)
{
    (void)l;
    rill_buf_ref(b);
}

Test(misuse, buf_misuse_message_names_it, .timeout = 30)
{
    static char out[4096];
    int st = run_child(release_again, out, sizeof out);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
              "a double release ends the process with SIGABRT (status %#x); stderr: %s", st, out);
    cr_assert_not_null(strstr(out, "rill: rill_buf_release: buffer 0x"), "stderr: %s", out);
    cr_assert_not_null(strstr(out, "double release"), "stderr: %s", out);

    st = run_child(ref_again, out, sizeof out);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT,
              "a reference on a released buffer ends the process with SIGABRT (status %#x); "
              "stderr: %s", st, out);
    cr_assert_not_null(strstr(out, "rill: rill_buf_ref: buffer 0x"), "stderr: %s", out);
    cr_assert_not_null(strstr(out, "already released"), "stderr: %s", out);
}

/* rill_send_bufs can refuse instead: a slice of a released buffer is -EINVAL, nothing queued. */
H_BACKEND_TEST(misuse, send_bufs_released_buffer, .timeout = 30)
{
    struct pair p;
    pair_open(&p, backend, NULL);
    rill_buf *b;
    cr_assert_eq(rill_buf_lease(p.l, 100, &b), 0);
    rill_buf_release(b);
    struct rill_bufslice s = {b, 0, 10};
    cr_assert_eq(rill_send_bufs(p.c, &s, 1, p_sent, &p), -EINVAL);
    cr_assert_eq(rill_conn_write_queued(p.c), 0);
    struct rill_loop_stats st;
    rill_loop_stats(p.l, &st);
    cr_assert_eq(st.bufs_in_use, 0, "the refused send took no reference");
    h_run_for(p.l, 20);
    cr_assert_eq(p.cbs, 0, "a refused send never calls back");
    pair_close(&p);
}

/* ---- listeners ------------------------------------------------------------------------------ */

H_BACKEND_TEST(misuse, listener_close_twice, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct opener o = {0};
    int fds = h_count_fds();
    struct rill_listen_config lc = {.handler = &o_h, .ctx = &o};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int port = rill_listener_port(ls);
    cr_assert_eq(h_count_fds(), fds + 1);
    cr_assert_eq(rill_listener_close(ls), 0);
    /* Still before the flush point that frees it: the handle may be used this once more. */
    cr_assert_eq(rill_listener_close(ls), -EINVAL);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert_eq(h_count_fds(), fds, "the listening socket is closed");

    /* Nobody listens there any more. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), -1);
    cr_assert_eq(errno, ECONNREFUSED, "%s", strerror(errno));
    close(fd);
    h_run_for(l, 20);
    cr_assert_eq(o.opens, 0);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(misuse, same_port_twice, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct opener o = {0};
    struct rill_listen_config lc = {.handler = &o_h, .ctx = &o};
    rill_listener *a, *b = NULL;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &a), 0);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", rill_listener_port(a));
    int fds = h_count_fds();
    int r = rill_listen(l, uri, &lc, &b);
    cr_assert_eq(r, -EADDRINUSE, "second listener without REUSEPORT: %s", rill_strerror(r));
    cr_assert_eq(h_count_fds(), fds, "the failed listen closed its socket");

    /* With SO_REUSEPORT on both, they share the port; one without it still cannot join. */
    struct rill_listen_config rc = {.handler = &o_h, .ctx = &o, .flags = RILL_LISTEN_F_REUSEPORT};
    rill_listener *c1, *c2, *c3 = NULL;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &rc, &c1), 0);
    int port = rill_listener_port(c1);
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    r = rill_listen(l, uri, &rc, &c2);
    cr_assert_eq(r, 0, "second REUSEPORT listener: %s", rill_strerror(r));
    cr_assert_eq(rill_listener_port(c2), port);
    fds = h_count_fds();
    cr_assert_eq(rill_listen(l, uri, &lc, &c3), -EADDRINUSE);
    cr_assert_eq(h_count_fds(), fds);

    int fd = h_client(AF_INET, port);
    uint64_t end = h_now_ms() + 5000;
    while (o.opens < 1) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "the shared port accepts");
    }
    close(fd);
    rill_loop_destroy(l);
}

/* ---- the write queue's hard limit ----------------------------------------------------------- */

#define CHUNK (64u << 10)
static uint8_t chunk[CHUNK];

struct wq {
    int ok, err, refused;
    size_t sent;
};

static void wq_sent(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct wq *w = ctx;
    if (status > 0) {
        w->ok++;
        w->sent += (size_t)status;
    } else {
        w->err++;
    }
}

static void wq_refused(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)status;
    ((struct wq *)ctx)->refused++;
}

static void run_wq_limit(const char *backend, const struct rill_conn_options *o)
{
    const size_t limit = o->wq_limit;
    const size_t low = o->wq_low ? o->wq_low : (256u << 10);
    h_fill(chunk, CHUNK, 5, 0);
    struct pair p;
    pair_open(&p, backend, o);
    rill_conn *c = p.c;
    struct wq w = {0};
    struct iovec v = {chunk, CHUNK};
    size_t accepted = 0;
    int nsend = 0, r;

    /* The peer does not read: fill its receive buffer, our send buffer, then the queue. */
    uint64_t end = h_now_ms() + 20000;
    for (;;) {
        size_t before = rill_conn_write_queued(c);
        r = rill_send(c, &v, 1, wq_sent, &w);
        if (r == -ENOBUFS) {
            cr_assert_eq(rill_conn_write_queued(c), before, "-ENOBUFS queued something");
            break;
        }
        cr_assert_eq(r, 0, "send %d: %s", nsend, rill_strerror(r));
        accepted += CHUNK;
        nsend++;
        cr_assert_leq(rill_conn_write_queued(c), limit, "queue %zu over the limit %zu",
                      rill_conn_write_queued(c), limit);
        if (nsend % 4 == 0)
            cr_assert_geq(rill_loop_run_once(p.l, 0), 0);
        cr_assert_leq(rill_conn_write_queued(c), limit);
        cr_assert_lt(h_now_ms(), end, "never hit the limit (%d sends)", nsend);
        cr_assert_lt(nsend, 4000, "never hit the limit");
    }
    size_t q = rill_conn_write_queued(c);
    cr_assert_gt(q, 0);
    cr_assert_gt(q + CHUNK, limit, "refused although %zu + %u fits in %zu", q, CHUNK, limit);

    /* Refused again, by both send calls; nothing queued, no reference kept. */
    cr_assert_eq(rill_send(c, &v, 1, wq_refused, &w), -ENOBUFS);
    rill_buf *b;
    cr_assert_eq(rill_buf_lease(p.l, CHUNK, &b), 0);
    memcpy(rill_buf_data(b), chunk, CHUNK);
    struct rill_bufslice s = {b, 0, CHUNK};
    cr_assert_eq(rill_send_bufs(c, &s, 1, wq_refused, &w), -ENOBUFS);
    cr_assert_eq(rill_conn_write_queued(c), q);
    rill_buf_release(b);

    /* Now the peer reads: everything accepted arrives, in order, and on_drain fires once. */
    cr_assert_eq(fcntl(p.fd, F_SETFL, fcntl(p.fd, F_GETFL) | O_NONBLOCK), 0);
    static uint8_t rbuf[256 << 10];
    size_t got = 0;
    bool bad = false;
    end = h_now_ms() + 30000;
    while (got < accepted || w.ok < nsend) {
        ssize_t n;
        while ((n = read(p.fd, rbuf, sizeof rbuf)) > 0) {
            for (ssize_t i = 0; i < n && !bad; i++)
                if (rbuf[i] != chunk[(got + (size_t)i) % CHUNK])
                    bad = true;
            got += (size_t)n;
        }
        cr_assert(n < 0 && errno == EAGAIN, "peer read: %zd %s", n, strerror(errno));
        cr_assert_not(bad, "bytes out of order near offset %zu", got);
        cr_assert_leq(got, accepted, "more bytes arrived than were accepted");
        cr_assert_geq(rill_loop_run_once(p.l, 1), 0);
        cr_assert_lt(h_now_ms(), end, "drained %zu of %zu bytes", got, accepted);
    }
    h_run_for(p.l, 30);
    cr_assert_eq(got, accepted);
    cr_assert_eq(w.ok, nsend);
    cr_assert_eq(w.sent, accepted);
    cr_assert_eq(w.err, 0);
    cr_assert_eq(w.refused, 0, "a refused send never calls back");
    cr_assert_eq(rill_conn_write_queued(c), 0);
    cr_expect_eq(p.drains, 1, "on_drain fired %d times after the queue filled up and drained",
                 p.drains);
    if (p.drains)
        cr_expect_lt(p.q_at_drain, low, "on_drain with %zu bytes queued", p.q_at_drain);
    cr_expect_eq(p.closes, 0);
    pair_close(&p);
}

H_BACKEND_TEST(misuse, write_queue_hard_limit, .timeout = 90)
{
    struct rill_conn_options o = {.wq_limit = 1u << 20};
    run_wq_limit(backend, &o);
}

H_BACKEND_TEST(misuse, write_queue_hard_limit_with_marks, .timeout = 90)
{
    struct rill_conn_options o = {.wq_limit = 1u << 20, .wq_high = 512u << 10, .wq_low = 128u << 10};
    run_wq_limit(backend, &o);
}

/* ---- destroying a loop from inside its own callback ----------------------------------------- */

static void destroy_in_defer(rill_loop *l, void *arg)
{
    *(bool *)arg = true;
    rill_loop_destroy(l); /* ignored: never from inside one of its callbacks */
}

static void count_timer(rill_timer *t, void *ctx)
{
    (void)t;
    (*(int *)ctx)++;
}

H_BACKEND_TEST(misuse, destroy_inside_callback_is_ignored, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    bool ran = false;
    int fired = 0;
    rill_timer *t;
    cr_assert_eq(rill_timer_create(l, count_timer, &fired, &t), 0);
    cr_assert_eq(rill_loop_defer(l, destroy_in_defer, &ran), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert(ran);
    /* The loop is intact: a timer still fires and the defer ring still works. */
    cr_assert_eq(rill_timer_start(t, 5, 0), 0);
    uint64_t end = h_now_ms() + 5000;
    while (!fired) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end);
    }
    cr_assert_eq(rill_loop_defer(l, noop_defer, NULL), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 1);
    rill_timer_destroy(t);
    rill_loop_destroy(l);
}
