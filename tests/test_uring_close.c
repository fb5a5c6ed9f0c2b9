/* The io_uring backend's hard cases around close, run on both backends so that epoll is held
 * to the same contract: close (and destroy) while sends and receives are in flight, close while
 * connects are in flight, and close from inside every callback.
 *
 * Server and clients share one loop where they can; plain blocking sockets play the peer when a
 * test needs a peer that misbehaves on purpose (never reads, reads late, half-closes). */
#include <fcntl.h>

#include "uring_util.h"

/* ---- close while sends and receives are in flight ------------------------------------------- */

enum { SENDS = 4, SEND_SIZE = 4 * MiB };
static uint8_t big[SEND_SIZE]; /* shared by every send: it stays valid until the callbacks */

struct inflight {
    rill_conn *c;
    int opens, closes, status;
    int cb_n[SENDS], cb_status[SENDS];
    int cb_order_bad;
    int last_cb;
    size_t got;
};

struct sendref {
    struct inflight *f;
    int i;
};

static struct sendref refs[64][SENDS];

static void inf_send_cb(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct sendref *r = ctx;
    r->f->cb_n[r->i]++;
    r->f->cb_status[r->i] = status;
    if (r->i != r->f->last_cb + 1)
        r->f->cb_order_bad++;
    r->f->last_cb = r->i;
}

static void inf_open(rill_conn *c, void *ctx)
{
    struct inflight *arr = ctx;
    int i = 0;
    while (arr[i].c)
        i++;
    struct inflight *f = &arr[i];
    f->c = c;
    f->last_cb = -1;
    f->opens++;
    rill_conn_set_ctx(c, f);
    for (int s = 0; s < SENDS; s++) {
        refs[i][s] = (struct sendref){f, s};
        struct iovec v = {big, SEND_SIZE};
        int r = rill_send(c, &v, 1, inf_send_cb, &refs[i][s]);
        cr_assert_eq(r, 0, "send %d: %s", s, rill_strerror(r));
    }
}

static void inf_data(rill_conn *c, rill_buf *b, const void *d, size_t len, void *ctx)
{
    (void)c;
    (void)b;
    (void)d;
    ((struct inflight *)ctx)->got += len;
}

static void inf_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct inflight *f = ctx;
    f->closes++;
    f->status = status;
    for (int s = 0; s < SENDS; s++)
        if (f->cb_n[s] != 1)
            f->cb_order_bad += 1000; /* on_close must come after every send callback */
}

static const struct rill_conn_handler inf_h = {
    .on_open = inf_open, .on_data = inf_data, .on_close = inf_close};

/* A loop without a memory ceiling: the tests below queue SENDS x 4 MiB of their own memory on
 * every connection towards peers that never read, which is what the default ceiling (half the
 * slab budget) exists to stop; here the point is closing with all of it in flight. */
static rill_loop *inflight_loop(const char *backend)
{
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.mem_ceiling = SIZE_MAX;
    return h_loop_cfg(backend, &cfg);
}

/* Opens n connections whose server side queues SENDS x 4 MiB towards a peer that never reads,
 * while the peer writes 64 KiB (so receives complete too). Returns the listener. */
static rill_listener *inflight_setup(rill_loop *l, struct inflight *f, int n, int *peers)
{
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &inf_h, .ctx = f, .conn.wq_limit = 64u * MiB};
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    static uint8_t chunk[64 * 1024];
    for (int i = 0; i < n; i++) {
        peers[i] = h_client(AF_INET, rill_listener_port(ls));
        cr_assert_eq(write(peers[i], chunk, sizeof chunk), (ssize_t)sizeof chunk);
    }
    uint64_t end = h_now_ms() + 10000;
    for (;;) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        int ready = 0;
        for (int i = 0; i < n; i++)
            ready += f[i].c && f[i].got == sizeof chunk;
        if (ready == n)
            break;
        cr_assert_lt(h_now_ms(), end, "%d of %d connections opened and received", ready, n);
    }
    h_run_for(l, 30); /* let the sends fill the socket buffers and stall */
    for (int i = 0; i < n; i++)
        cr_assert_gt(rill_conn_write_queued(f[i].c), 0, "conn %d sent everything already", i);
    return ls;
}

static void inflight_check(struct inflight *f, int n, int want_status)
{
    for (int i = 0; i < n; i++) {
        cr_expect_eq(f[i].opens, 1, "conn %d", i);
        cr_expect_eq(f[i].closes, 1, "conn %d: on_close ran %d times", i, f[i].closes);
        cr_expect_eq(f[i].status, want_status, "conn %d: on_close status %s", i,
                     rill_strerror(f[i].status));
        cr_expect_eq(f[i].cb_order_bad, 0, "conn %d: send callbacks out of order or after "
                                           "on_close", i);
        bool cancelled = false;
        for (int s = 0; s < SENDS; s++) {
            cr_expect_eq(f[i].cb_n[s], 1, "conn %d send %d: callback ran %d times", i, s,
                         f[i].cb_n[s]);
            int st = f[i].cb_status[s];
            cr_expect(st == -ECANCELED || st == SEND_SIZE, "conn %d send %d: status %d (%s)", i,
                      s, st, rill_strerror(st));
            if (st == -ECANCELED)
                cancelled = true;
            else
                cr_expect(!cancelled, "conn %d: send %d completed after an earlier one was "
                                      "cancelled", i, s);
        }
        cr_expect(cancelled, "conn %d: the transfer was not in flight at close", i);
    }
}

H_BACKEND_TEST(uring, close_with_sends_and_recvs_in_flight, .timeout = 60)
{
    rill_loop *l = inflight_loop(backend);
    enum { N = 24 };
    struct inflight f[N + 1];
    memset(f, 0, sizeof f);
    int fds = h_count_fds();
    int peers[N];
    rill_listener *ls = inflight_setup(l, f, N, peers);
    fds++; /* the listener */
    for (int i = 0; i < N; i++) {
        cr_assert_eq(rill_close(f[i].c), 0);
        cr_assert_eq(rill_close(f[i].c), -EALREADY);
        cr_assert_eq(f[i].closes, 0, "on_close never runs inside rill_close");
    }
    uint64_t end = h_now_ms() + 10000;
    for (;;) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        int closed = 0;
        for (int i = 0; i < N; i++)
            closed += f[i].closes > 0;
        if (closed == N)
            break;
        cr_assert_lt(h_now_ms(), end, "%d of %d closed", closed, N);
    }
    /* The peers see the end of the stream after whatever was sent. */
    for (int i = 0; i < N; i++) {
        char sink[65536];
        ssize_t r;
        uint64_t pend = h_now_ms() + 5000;
        fcntl(peers[i], F_SETFL, O_NONBLOCK);
        while ((r = read(peers[i], sink, sizeof sink)) != 0) {
            if (r < 0 && errno != EAGAIN)
                break; /* ECONNRESET is an end too */
            if (r < 0)
                rill_loop_run_once(l, 1);
            cr_assert_lt(h_now_ms(), pend, "peer %d never saw the connection end", i);
        }
        close(peers[i]);
    }
    settle(l, fds, 5000);
    inflight_check(f, N, 0);
    struct rill_loop_stats st = stats_of(l);
    cr_expect_eq(st.bufs_in_use, 0, "buffers leaked: %llu", (unsigned long long)st.bufs_in_use);
    if (strcmp(backend, "uring") == 0)
        cr_expect_eq(st.stale_completions, 0);
    rill_listener_close(ls);
    rill_loop_destroy(l);
    for (int i = 0; i < N; i++)
        cr_expect_eq(f[i].closes, 1, "destroy must not close a connection again");
}

H_BACKEND_TEST(uring, destroy_with_sends_and_recvs_in_flight, .timeout = 60)
{
    int fds = h_count_fds();
    rill_loop *l = inflight_loop(backend);
    enum { N = 16 };
    struct inflight f[N + 1];
    memset(f, 0, sizeof f);
    int peers[N];
    inflight_setup(l, f, N, peers);
    rill_loop_destroy(l);
    inflight_check(f, N, -ECANCELED);
    for (int i = 0; i < N; i++)
        close(peers[i]);
    cr_expect_eq(h_count_fds(), fds, "descriptors leaked by destroy: %d, want %d",
                 h_count_fds(), fds);
}

/* ---- close while connects are in flight ----------------------------------------------------- */

struct pend {
    int opens, closes, status;
};

static void pend_open(rill_conn *c, void *ctx)
{
    (void)c;
    ((struct pend *)ctx)->opens++;
}

static void pend_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct pend *p = ctx;
    p->closes++;
    p->status = status;
}

static const struct rill_conn_handler pend_h = {.on_open = pend_open, .on_close = pend_close};

H_BACKEND_TEST(uring, close_while_connecting, .timeout = 30)
{
    /* A listener that never accepts, its queue filled: further SYNs are dropped, so connects
     * stay in flight (on io_uring: IORING_OP_CONNECT, with or without a linked timeout) until
     * they are closed. Some are closed before the loop ever submitted them. */
    rill_loop *l = h_loop(backend);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(lfd, 0), 0);
    getsockname(lfd, (struct sockaddr *)&a, &alen);
    int fillers[8];
    for (int i = 0; i < 8; i++) {
        fillers[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[i], (struct sockaddr *)&a, sizeof a);
    }
    usleep(50000);
    int fds = h_count_fds();
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    enum { N = 12 };
    struct pend p[N];
    memset(p, 0, sizeof p);
    rill_conn *c[N];
    for (int i = 0; i < N; i++) {
        struct rill_connect_config cc = {.handler = &pend_h, .ctx = &p[i],
                                         .timeout_ms = (i % 2) ? 10000 : 0};
        cr_assert_eq(rill_connect(l, uri, &cc, &c[i]), 0);
    }
    for (int i = 0; i < 4; i++) /* closed before anything was submitted */
        cr_assert_eq(rill_close(c[i]), 0);
    h_run_for(l, 50);
    for (int i = 0; i < N; i++) {
        cr_expect_eq(p[i].opens, 0, "connect %d opened", i);
        if (i >= 4) {
            cr_expect_eq(p[i].closes, 0, "connect %d closed by itself: %s", i,
                         rill_strerror(p[i].status));
            cr_assert_eq(rill_close(c[i]), 0);
        }
    }
    uint64_t end = h_now_ms() + 5000;
    for (;;) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        int closed = 0;
        for (int i = 0; i < N; i++)
            closed += p[i].closes > 0;
        if (closed == N && h_count_fds() == fds)
            break;
        cr_assert_lt(h_now_ms(), end, "%d of %d closed, %d descriptors (want %d)", closed, N,
                     h_count_fds(), fds);
    }
    h_run_for(l, 30);
    for (int i = 0; i < N; i++) {
        cr_expect_eq(p[i].closes, 1, "connect %d: on_close ran %d times", i, p[i].closes);
        cr_expect_eq(p[i].status, 0, "connect %d: %s", i, rill_strerror(p[i].status));
        cr_expect_eq(p[i].opens, 0);
    }
    if (strcmp(backend, "uring") == 0)
        cr_expect_eq(stats_of(l).stale_completions, 0);
    rill_loop_destroy(l);
    for (int i = 0; i < 8; i++)
        close(fillers[i]);
    close(lfd);
}

/* ---- close from inside every callback ------------------------------------------------------- */

enum cmode { M_OPEN, M_DATA, M_EOF, M_DRAIN, M_SENDCB, M_CANCELCB };

struct cc {
    enum cmode mode;
    rill_conn *c;
    int opens, datas, eofs, drains, sendcbs, closes;
    int after_close; /* callbacks other than send callbacks and on_close after our close */
    bool closed_by_us;
    int close_rc, again_rc, send_rc, pause_rc, shut_rc, close_in_close_rc, send_in_close_rc;
    int sendcb_close_rc; /* rill_close from a send callback of a closing connection */
    int status, sendcb_status;
    size_t got;
};

static uint8_t small_msg[10] = "0123456789";

static void cc_close_here(struct cc *k, rill_conn *c)
{
    k->closed_by_us = true;
    k->close_rc = rill_close(c);
    k->again_rc = rill_close(c);
    struct iovec v = {small_msg, sizeof small_msg};
    k->send_rc = rill_send(c, &v, 1, NULL, NULL);
    k->pause_rc = rill_read_pause(c);
    k->shut_rc = rill_shutdown(c);
}

static void cc_sendcb(rill_conn *c, int status, void *ctx)
{
    struct cc *k = ctx;
    k->sendcbs++;
    k->sendcb_status = status;
    if (k->mode == M_SENDCB && !k->closed_by_us)
        cc_close_here(k, c);
    else if (k->mode == M_CANCELCB && k->closed_by_us)
        k->sendcb_close_rc = rill_close(c);
}

static void cc_open(rill_conn *c, void *ctx)
{
    struct cc *k = ctx;
    k->c = c;
    k->opens++;
    if (k->mode == M_OPEN) {
        cc_close_here(k, c);
    } else if (k->mode == M_DRAIN) {
        struct iovec v = {big, MiB}; /* over wq_high: on_drain follows once the peer reads */
        cr_assert_eq(rill_send(c, &v, 1, cc_sendcb, k), 0);
    } else if (k->mode == M_SENDCB) {
        struct iovec v = {small_msg, sizeof small_msg};
        cr_assert_eq(rill_send(c, &v, 1, cc_sendcb, k), 0);
    } else if (k->mode == M_CANCELCB) {
        /* Never read by the peer: these are cancelled by the close, and their callbacks (run
         * while the close is under way) try to close again. */
        for (int i = 0; i < 3; i++) {
            struct iovec v = {big, SEND_SIZE};
            cr_assert_eq(rill_send(c, &v, 1, cc_sendcb, k), 0);
        }
    }
}

static void cc_data(rill_conn *c, rill_buf *b, const void *d, size_t len, void *ctx)
{
    (void)b;
    (void)d;
    struct cc *k = ctx;
    if (k->closed_by_us)
        k->after_close++;
    k->datas++;
    k->got += len;
    if ((k->mode == M_DATA || k->mode == M_CANCELCB) && !k->closed_by_us)
        cc_close_here(k, c);
}

static void cc_eof(rill_conn *c, void *ctx)
{
    struct cc *k = ctx;
    if (k->closed_by_us)
        k->after_close++;
    k->eofs++;
    if (k->mode == M_EOF && !k->closed_by_us)
        cc_close_here(k, c);
}

static void cc_drain(rill_conn *c, void *ctx)
{
    struct cc *k = ctx;
    if (k->closed_by_us)
        k->after_close++;
    k->drains++;
    if (k->mode == M_DRAIN && !k->closed_by_us)
        cc_close_here(k, c);
}

static void cc_close(rill_conn *c, int status, void *ctx)
{
    struct cc *k = ctx;
    k->closes++;
    k->status = status;
    k->close_in_close_rc = rill_close(c);
    struct iovec v = {small_msg, sizeof small_msg};
    k->send_in_close_rc = rill_send(c, &v, 1, NULL, NULL);
}

static const struct rill_conn_handler cc_h = {.on_open = cc_open,
                                              .on_data = cc_data,
                                              .on_eof = cc_eof,
                                              .on_drain = cc_drain,
                                              .on_close = cc_close};

static void run_close_mode(const char *backend, enum cmode mode)
{
    rill_loop *l = h_loop(backend);
    struct cc k = {.mode = mode};
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &cc_h, .ctx = &k};
    if (mode == M_DRAIN) {
        lc.conn.wq_high = 64 * 1024;
        lc.conn.wq_low = 16 * 1024;
    }
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int fds = h_count_fds();
    int peer = h_client(AF_INET, rill_listener_port(ls));
    static uint8_t chunk[100000];
    h_fill(chunk, sizeof chunk, 7, 0);
    switch (mode) {
    case M_OPEN:
    case M_DATA:
        cr_assert_eq(write(peer, chunk, sizeof chunk), (ssize_t)sizeof chunk);
        break;
    case M_EOF:
        cr_assert_eq(write(peer, "hello", 5), 5);
        cr_assert_eq(shutdown(peer, SHUT_WR), 0);
        break;
    case M_CANCELCB:
        h_run_for(l, 30); /* the sends go out as far as they can, then stall */
        cr_assert_eq(write(peer, "x", 1), 1);
        break;
    default:
        break;
    }
    fcntl(peer, F_SETFL, O_NONBLOCK);
    uint64_t end = h_now_ms() + 10000;
    size_t peer_got = 0;
    while (k.closes == 0) {
        cr_assert_geq(rill_loop_run_once(l, 2), 0);
        if (mode == M_DRAIN) { /* the peer reads, so the queue drains */
            char sink[65536];
            ssize_t r;
            while ((r = read(peer, sink, sizeof sink)) > 0)
                peer_got += (size_t)r;
        }
        cr_assert_lt(h_now_ms(), end, "on_close never ran (mode %d)", mode);
    }
    /* Keep running: nothing may follow on_close, and the close must complete. */
    h_run_for(l, 50);
    close(peer);
    settle(l, fds, 5000);

    cr_expect_eq(k.opens, 1);
    cr_expect(k.closed_by_us, "the mode's callback never ran");
    cr_expect_eq(k.closes, 1, "on_close ran %d times", k.closes);
    cr_expect_eq(k.status, 0, "status %s", rill_strerror(k.status));
    cr_expect_eq(k.close_rc, 0);
    cr_expect_eq(k.again_rc, -EALREADY);
    cr_expect_eq(k.send_rc, -ENOTCONN);
    cr_expect_eq(k.pause_rc, -ENOTCONN);
    cr_expect_eq(k.shut_rc, -ENOTCONN);
    cr_expect_eq(k.close_in_close_rc, -EALREADY, "rill_close from on_close: %d",
                 k.close_in_close_rc);
    cr_expect_eq(k.send_in_close_rc, -ENOTCONN);
    cr_expect_eq(k.after_close, 0, "%d callbacks after rill_close", k.after_close);
    switch (mode) {
    case M_OPEN:
        cr_expect_eq(k.datas, 0);
        break;
    case M_DATA:
        cr_expect_eq(k.datas, 1);
        break;
    case M_EOF:
        cr_expect_eq(k.eofs, 1);
        cr_expect_eq(k.got, 5);
        break;
    case M_DRAIN:
        cr_expect_eq(k.drains, 1);
        cr_expect_eq(k.sendcbs, 1);
        cr_expect(k.sendcb_status == MiB || k.sendcb_status == -ECANCELED, "%d",
                  k.sendcb_status);
        cr_expect_geq(peer_got, MiB - 16 * 1024, "the peer read %zu", peer_got);
        break;
    case M_SENDCB:
        cr_expect_eq(k.sendcbs, 1);
        cr_expect_eq(k.sendcb_status, (int)sizeof small_msg);
        break;
    case M_CANCELCB:
        cr_expect_eq(k.sendcbs, 3, "every send callback once, got %d", k.sendcbs);
        cr_expect_eq(k.sendcb_status, -ECANCELED);
        cr_expect_eq(k.sendcb_close_rc, -EALREADY);
        break;
    }
    rill_loop_destroy(l);
    cr_expect_eq(k.closes, 1, "destroy must not close a connection again");
}

H_BACKEND_TEST(uring, close_in_on_open, .timeout = 30) { run_close_mode(backend, M_OPEN); }
H_BACKEND_TEST(uring, close_in_on_data, .timeout = 30) { run_close_mode(backend, M_DATA); }
H_BACKEND_TEST(uring, close_in_on_eof, .timeout = 30) { run_close_mode(backend, M_EOF); }
H_BACKEND_TEST(uring, close_in_on_drain, .timeout = 30) { run_close_mode(backend, M_DRAIN); }
H_BACKEND_TEST(uring, close_in_send_cb, .timeout = 30) { run_close_mode(backend, M_SENDCB); }
H_BACKEND_TEST(uring, close_in_cancelled_send_cb, .timeout = 30)
{
    run_close_mode(backend, M_CANCELCB);
}
