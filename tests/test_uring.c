/* The io_uring backend's hard cases, run on both backends wherever they mean something, so that
 * epoll is held to the same contract: a completion queue far smaller than the work (overflow),
 * close while sends and receives are in flight, close from inside every callback, heavy slot
 * reuse (no completion may reach the next connection in a slot), the io_uring counters and the
 * buffer ring under a tiny slab budget, and read pause/resume ordering.
 *
 * Server and clients share one loop where they can; plain blocking sockets play the peer when a
 * test needs a peer that misbehaves on purpose (never reads, reads late, half-closes). */
#include <fcntl.h>

#include "harness.h"

#define MiB (1u << 20)

/* ---- an echo server on rill (as in test_conn.c) --------------------------------------------- */

static void echo_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    cr_assert_eq(rill_send_bufs(c, &s, 1, NULL, NULL), 0);
    if (rill_conn_write_queued(c) >= MiB)
        rill_read_pause(c);
}

static void echo_drain(rill_conn *c, void *ctx)
{
    (void)ctx;
    rill_read_resume(c);
}

static const struct rill_conn_handler echo_h = {.on_data = echo_data, .on_drain = echo_drain};

static rill_listener *listen_on(rill_loop *l, const struct rill_conn_handler *h, void *ctx)
{
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = h, .ctx = ctx};
    int r = rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls);
    cr_assert_eq(r, 0, "listen: %s", rill_strerror(r));
    return ls;
}

/* ---- echo clients on rill: each checks its echo byte for byte ------------------------------- */

struct cli {
    rill_conn *c;
    uint8_t *data;
    size_t size, got;
    uint64_t seed;
    int status, opens, closes;
    bool mismatch;
    int *done;
};

static void cli_open(rill_conn *c, void *ctx)
{
    struct cli *k = ctx;
    k->opens++;
    struct iovec v = {k->data, k->size};
    cr_assert_eq(rill_send(c, &v, 1, NULL, NULL), 0);
}

static void cli_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct cli *k = ctx;
    const uint8_t *p = data;
    if (k->got + len > k->size)
        k->mismatch = true;
    for (size_t i = 0; i < len && !k->mismatch; i++)
        if (p[i] != k->data[k->got + i])
            k->mismatch = true;
    k->got += len;
    if (k->got >= k->size || k->mismatch)
        rill_close(c);
}

static void cli_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct cli *k = ctx;
    k->status = status;
    k->closes++;
    (*k->done)++;
}

static const struct rill_conn_handler cli_h = {
    .on_open = cli_open, .on_data = cli_data, .on_close = cli_close};

static void cli_start(rill_loop *l, int port, struct cli *k, size_t size, uint64_t seed, int *done)
{
    k->size = size;
    k->seed = seed;
    k->data = malloc(size);
    cr_assert_not_null(k->data);
    h_fill(k->data, size, seed, 0);
    k->done = done;
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    struct rill_connect_config cc = {.handler = &cli_h, .ctx = k, .timeout_ms = 10000};
    int r = rill_connect(l, uri, &cc, &k->c);
    cr_assert_eq(r, 0, "connect: %s", rill_strerror(r));
}

static void cli_check(struct cli *k, int n)
{
    for (int i = 0; i < n; i++) {
        cr_expect_eq(k[i].opens, 1, "client %d opened %d times", i, k[i].opens);
        cr_expect_eq(k[i].closes, 1, "client %d closed %d times", i, k[i].closes);
        cr_expect(!k[i].mismatch, "client %d: bytes differ", i);
        cr_expect_eq(k[i].got, k[i].size, "client %d: got %zu of %zu", i, k[i].got, k[i].size);
        cr_expect_eq(k[i].status, 0, "client %d: %s", i, rill_strerror(k[i].status));
    }
}

static void cli_free(struct cli *k, int n)
{
    for (int i = 0; i < n; i++)
        free(k[i].data);
}

static struct rill_loop_stats stats_of(rill_loop *l)
{
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    return st;
}

/* Runs the loop until no connection holds a slot and the descriptor count is back to `fds`:
 * on io_uring a close finishes in the kernel only when the loop enters it again. */
static void settle(rill_loop *l, int fds, unsigned ms)
{
    uint64_t end = h_now_ms() + ms;
    for (;;) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        struct rill_loop_stats st = stats_of(l);
        if (st.conns_open == 0 && (fds < 0 || h_count_fds() == fds))
            return;
        if (h_now_ms() >= end) {
            cr_assert_fail("the loop did not settle: %llu connections open, %d descriptors "
                           "(want %d)",
                           (unsigned long long)st.conns_open, h_count_fds(), fds);
        }
    }
}

/* ---- many echoes: CQ overflow, counters, a tiny slab ----------------------------------------- */

struct echo_run {
    struct rill_loop_stats st; /* after every connection closed and the loop idled */
    uint64_t max_batch;        /* most completions reaped in one iteration */
    uint64_t max_leased;       /* most buffers leased at once (in use + in the ring) */
};

/* n rill clients echo `size(i)` bytes each through a rill echo server on one loop built from
 * cfg; every byte is checked, then the loop settles (no slot held, no descriptor left). */
static void run_echoes(const char *backend, const struct rill_loop_config *cfg, int n,
                       size_t base, size_t spread, struct echo_run *out)
{
    rill_loop *l = h_loop_cfg(backend, (struct rill_loop_config *)cfg);
    rill_listener *ls = listen_on(l, &echo_h, NULL);
    int fds = h_count_fds();
    struct cli *k = calloc((size_t)n, sizeof *k);
    int done = 0;
    for (int i = 0; i < n; i++)
        cli_start(l, rill_listener_port(ls), &k[i], base + (size_t)(i * 7919) % spread,
                  (uint64_t)i + 1, &done);
    uint64_t end = h_now_ms() + 30000, prev = 0;
    memset(out, 0, sizeof *out);
    while (done < n) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        struct rill_loop_stats st = stats_of(l);
        if (st.cqes_reaped - prev > out->max_batch)
            out->max_batch = st.cqes_reaped - prev;
        prev = st.cqes_reaped;
        if (st.bufs_in_use + st.bufs_in_ring > out->max_leased)
            out->max_leased = st.bufs_in_use + st.bufs_in_ring;
        if (h_now_ms() >= end) {
            cr_assert_fail("%s: echo timed out: %d of %d done; conns_open %llu, bufs_in_use "
                           "%llu, bufs_in_ring %llu, read_pauses %llu, buf_ring_empty %llu, "
                           "buf_exhausted %llu", backend, done, n,
                           (unsigned long long)st.conns_open, (unsigned long long)st.bufs_in_use,
                           (unsigned long long)st.bufs_in_ring,
                           (unsigned long long)st.read_pauses,
                           (unsigned long long)st.buf_ring_empty,
                           (unsigned long long)st.buf_exhausted);
        }
    }
    cli_check(k, n);
    settle(l, fds, 5000);
    h_run_for(l, 20); /* idle */
    out->st = stats_of(l);
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += k[i].size;
    cr_expect_eq(out->st.accepts, (uint64_t)n);
    cr_expect_eq(out->st.connects, (uint64_t)n);
    cr_expect_eq(out->st.bytes_in, 2 * bytes, "bytes_in %llu, want %llu",
                 (unsigned long long)out->st.bytes_in, (unsigned long long)(2 * bytes));
    cr_expect_eq(out->st.bytes_out, 2 * bytes);
    cr_expect_eq(out->st.bufs_in_use, 0, "%llu buffers still in use after every connection "
                 "closed", (unsigned long long)out->st.bufs_in_use);
    if (strcmp(backend, "uring") == 0) {
        cr_expect_eq(out->st.stale_completions, 0);
        cr_expect_gt(out->st.bufs_in_ring, 0, "an idle io_uring loop keeps buffers in the ring");
    } else {
        cr_expect_eq(out->st.bufs_in_ring, 0);
    }
    cli_free(k, n);
    free(k);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(uring, cq_overflow_loses_nothing, .timeout = 120)
{
    /* Four SQ entries, so an eight-entry completion queue, under 200 concurrent echoes: the
     * completions outnumber the CQ many times over and must all arrive (IORING_FEAT_NODROP
     * overflow, multishot requests ended by the overflow and re-armed). epoll ignores the
     * ring size and must simply pass too. */
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.ring_entries = 4;
    struct echo_run r;
    run_echoes(backend, &cfg, 200, 1, 120000, &r);
    if (strcmp(backend, "uring") == 0)
        cr_expect_gt(r.max_batch, 8, "at most %llu completions in one iteration: the CQ never "
                     "overflowed", (unsigned long long)r.max_batch);
}

H_BACKEND_TEST(uring, cq_overflow_with_a_dry_buffer_ring, .timeout = 120)
{
    /* Both at once: completions overflow while receives keep ending for want of buffers. */
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.ring_entries = 4;
    cfg.slab_budget = 64u << 10;
    cfg.recv_buf_size = 4096;
    struct echo_run r;
    run_echoes(backend, &cfg, 100, 1000, 100000, &r);
    cr_expect_gt(r.st.read_pauses, 0);
    if (strcmp(backend, "uring") == 0)
        cr_expect_gt(r.st.buf_ring_empty, 0);
}

H_BACKEND_TEST(uring, stats_after_echo, .timeout = 60)
{
    struct echo_run r;
    run_echoes(backend, NULL, 8, 50000, 1, &r);
    const struct rill_loop_stats *st = &r.st;
    if (strcmp(backend, "uring") == 0) {
        cr_expect_gt(st->uring_enters, 0);
        cr_expect_gt(st->cqes_reaped, 0);
        /* At least: 8 connects, 8 accepts, 16 receives, 16 sends, 16 cancel + 16 close. */
        cr_expect_geq(st->sqes_submitted, 8u * 8, "sqes %llu",
                      (unsigned long long)st->sqes_submitted);
        cr_expect_eq(st->sys_ctl, 0, "io_uring never calls epoll_ctl");
        cr_expect_eq(st->buf_ring_empty, 0, "16 MiB of buffers cannot run dry here");
    } else {
        cr_expect_eq(st->uring_enters, 0);
        cr_expect_eq(st->sqes_submitted, 0);
        cr_expect_eq(st->cqes_reaped, 0);
        cr_expect_eq(st->buf_ring_empty, 0);
        cr_expect_gt(st->sys_ctl, 0);
    }
}

H_BACKEND_TEST(uring, tiny_slab_budget_runs_the_ring_dry, .timeout = 120)
{
    /* 64 KiB of 4 KiB buffers (16) for 40 connections echoing ~170 KB each. */
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.slab_budget = 64u << 10;
    cfg.recv_buf_size = 4096;
    struct echo_run r;
    run_echoes(backend, &cfg, 40, 150000, 40000, &r);
    cr_expect_leq(r.max_leased, 16, "%llu buffers leased at once",
                  (unsigned long long)r.max_leased);
    cr_expect_leq(r.st.buf_bytes_mapped, cfg.slab_budget);
    cr_expect_gt(r.st.read_pauses, 0, "the budget must really have run out");
    if (strcmp(backend, "uring") == 0)
        cr_expect_gt(r.st.buf_ring_empty, 0, "the buffer ring never ran dry");
    else
        cr_expect_eq(r.st.buf_ring_empty, 0);
}

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
    rill_loop *l = h_loop(backend);
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
    rill_loop *l = h_loop(backend);
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

/* ---- slot reuse ----------------------------------------------------------------------------- */

/* Each client sends [u32 id][u32 size][pattern(id)...]; the server side checks every byte it
 * receives against the id it saw first, and echoes. A completion delivered to the wrong
 * connection shows as a mismatch on either side. */
struct reuse {
    int srv_opens, srv_closes, srv_bad, srv_short, srv_err;
    struct cli cur;
    int cli_done;
};

struct srv {
    struct reuse *r;
    uint8_t hdr[8];
    size_t got;
    uint32_t id, size;
};

static void rs_open(rill_conn *c, void *ctx)
{
    struct reuse *r = ctx;
    r->srv_opens++;
    struct srv *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->r = r;
    rill_conn_set_ctx(c, s);
}

static void rs_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    struct srv *s = ctx;
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++, s->got++) {
        if (s->got < 8) {
            s->hdr[s->got] = p[i];
            if (s->got == 7) {
                memcpy(&s->id, s->hdr, 4);
                memcpy(&s->size, s->hdr + 4, 4);
            }
        } else if (s->got >= s->size || p[i] != h_pattern(s->id, s->got)) {
            s->r->srv_bad++;
            break;
        }
    }
    echo_data(c, buf, data, len, NULL);
}

static void rs_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct srv *s = ctx;
    s->r->srv_closes++;
    if (s->got != s->size)
        s->r->srv_short++;
    if (status != 0)
        s->r->srv_err++;
    free(s);
}

static const struct rill_conn_handler rs_h = {
    .on_open = rs_open, .on_data = rs_data, .on_close = rs_close};

H_BACKEND_TEST(uring, slot_reuse_never_delivers_old_completions, .timeout = 120)
{
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.max_conns = 4; /* two pairs at most: every slot is reused hundreds of times */
    rill_loop *l = h_loop_cfg(backend, &cfg);
    bool uring = strcmp(backend, "uring") == 0;
    struct reuse r = {0};
    rill_listener *ls = listen_on(l, &rs_h, &r);
    int port = rill_listener_port(ls);
    int fds = h_count_fds();
    enum { CYCLES = 2000 };
    int bad_clients = 0;
    uint64_t end = h_now_ms() + 90000;
    for (uint32_t id = 1; id <= CYCLES; id++) {
        /* Start the next pair as soon as the previous client has closed and two slots are free
         * (the previous pair's slots may still wait for their last completions). */
        while (stats_of(l).conns_open > cfg.max_conns - 2) {
            cr_assert_geq(rill_loop_run_once(l, 1), 0);
            cr_assert_lt(h_now_ms(), end, "slots never freed (cycle %u)", id);
        }
        struct cli *k = &r.cur;
        free(k->data);
        memset(k, 0, sizeof *k);
        r.cli_done = 0;
        uint32_t size = 8 + (id * 7919u) % 20000u;
        k->size = size;
        k->seed = id;
        k->data = malloc(size);
        h_fill(k->data, size, id, 0);
        memcpy(k->data, &id, 4);
        memcpy(k->data + 4, &size, 4);
        k->done = &r.cli_done;
        char uri[64];
        snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
        struct rill_connect_config cc = {.handler = &cli_h, .ctx = k, .timeout_ms = 5000};
        int rc = rill_connect(l, uri, &cc, &k->c);
        cr_assert_eq(rc, 0, "cycle %u: connect: %s", id, rill_strerror(rc));
        while (!r.cli_done) {
            cr_assert_geq(rill_loop_run_once(l, 5), 0);
            cr_assert_lt(h_now_ms(), end, "cycle %u never finished", id);
        }
        if (k->mismatch || k->got != k->size || k->status != 0 || k->opens != 1) {
            if (bad_clients++ < 5)
                cr_log_error("cycle %u: mismatch %d, got %zu of %zu, status %s, opens %d", id,
                             k->mismatch, k->got, k->size, rill_strerror(k->status), k->opens);
        }
    }
    free(r.cur.data);
    settle(l, fds, 5000);
    struct rill_loop_stats st = stats_of(l);
    cr_expect_eq(bad_clients, 0, "%d clients saw wrong or missing data", bad_clients);
    cr_expect_eq(r.srv_bad, 0, "%d server connections saw another's bytes", r.srv_bad);
    cr_expect_eq(r.srv_short, 0, "%d server connections got a short stream", r.srv_short);
    cr_expect_eq(r.srv_err, 0, "%d server connections closed with an error", r.srv_err);
    cr_expect_eq(r.srv_opens, CYCLES);
    cr_expect_eq(r.srv_closes, r.srv_opens, "on_close %d, opens %d", r.srv_closes, r.srv_opens);
    cr_expect_eq(st.accepts, CYCLES);
    cr_expect_eq(st.connects, CYCLES);
    if (uring)
        cr_expect_eq(st.stale_completions, 0, "stale completions: %llu",
                     (unsigned long long)st.stale_completions);
    rill_loop_destroy(l);
}

/* ---- read pause / resume -------------------------------------------------------------------- */

struct pr {
    rill_conn *c;
    bool paused;
    int on_data_while_paused, eof_while_paused, eofs, closes;
    bool eof_before_all;
    size_t got, want_total, pause_at;
    uint64_t seed;
    bool mismatch;
    int resume_mode; /* 0: the test resumes; 1: deferred right away; 2: on a 1 ms timer */
    rill_timer *t;
    int pauses;
};

static void pr_resume_now(struct pr *p)
{
    p->paused = false;
    cr_assert_eq(rill_read_resume(p->c), 0);
}

static void pr_defer(rill_loop *l, void *arg)
{
    (void)l;
    struct pr *p = arg;
    if (p->paused && p->c)
        pr_resume_now(p);
}

static void pr_timer(rill_timer *t, void *ctx)
{
    (void)t;
    pr_defer(NULL, ctx);
}

static void pr_open(rill_conn *c, void *ctx)
{
    struct pr *p = ctx;
    p->c = c;
    if (p->pause_at == 0) {
        cr_assert_eq(rill_read_pause(c), 0);
        cr_assert_eq(rill_read_pause(c), 0, "pausing twice is harmless");
        p->paused = true;
    }
}

static void pr_data(rill_conn *c, rill_buf *b, const void *d, size_t len, void *ctx)
{
    (void)b;
    struct pr *p = ctx;
    if (p->paused)
        p->on_data_while_paused++;
    const uint8_t *q = d;
    for (size_t i = 0; i < len && !p->mismatch; i++)
        if (q[i] != h_pattern(p->seed, p->got + i))
            p->mismatch = true;
    p->got += len;
    if (p->resume_mode && !p->paused) {
        /* Pause after every delivery and resume almost at once: completions of the cancelled
         * receive race the resume, which must not reorder anything. */
        cr_assert_eq(rill_read_pause(c), 0);
        p->paused = true;
        p->pauses++;
        if (p->resume_mode == 1)
            cr_assert_eq(rill_loop_defer(rill_conn_loop(c), pr_defer, p), 0);
        else
            rill_timer_start(p->t, 1, 0);
    } else if (p->pause_at && p->got >= p->pause_at && !p->paused) {
        cr_assert_eq(rill_read_pause(c), 0);
        p->paused = true;
        p->pause_at = 0;
    }
}

static void pr_eof(rill_conn *c, void *ctx)
{
    (void)c;
    struct pr *p = ctx;
    if (p->paused)
        p->eof_while_paused++;
    if (p->got != p->want_total)
        p->eof_before_all = true;
    p->eofs++;
}

static void pr_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)status;
    struct pr *p = ctx;
    p->closes++;
    p->c = NULL;
}

static const struct rill_conn_handler pr_h = {
    .on_open = pr_open, .on_data = pr_data, .on_eof = pr_eof, .on_close = pr_close};

/* Writes `n` pattern bytes from offset *off on a blocking socket. */
static void peer_write(int fd, uint64_t seed, size_t *off, size_t n)
{
    uint8_t buf[16384];
    while (n > 0) {
        size_t m = n < sizeof buf ? n : sizeof buf;
        h_fill(buf, m, seed, *off);
        cr_assert_eq(write(fd, buf, m), (ssize_t)m);
        *off += m;
        n -= m;
    }
}

H_BACKEND_TEST(uring, read_pause_holds_data_and_eof_until_resume, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct pr p = {.seed = 42, .pause_at = 0, .want_total = 300000};
    rill_listener *ls = listen_on(l, &pr_h, &p);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    uint64_t end = h_now_ms() + 5000;
    while (!p.c) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        cr_assert_lt(h_now_ms(), end, "accept");
    }
    /* 1: paused from on_open, data arrives, nothing is delivered until resume. */
    size_t off = 0;
    peer_write(fd, p.seed, &off, 100000);
    h_run_for(l, 100);
    cr_expect_eq(p.got, 0, "%zu bytes delivered while paused", p.got);
    cr_expect_eq(p.on_data_while_paused, 0);
    pr_resume_now(&p);
    end = h_now_ms() + 5000;
    while (p.got < off) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu after resume", p.got, off);
    }
    /* 2: paused from inside on_data mid-stream; the rest and the FIN arrive while paused. */
    p.pause_at = p.got + 1;
    peer_write(fd, p.seed, &off, 50000);
    end = h_now_ms() + 5000;
    while (!p.paused) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        cr_assert_lt(h_now_ms(), end, "pause in on_data");
    }
    size_t at_pause = p.got;
    peer_write(fd, p.seed, &off, 150000);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    h_run_for(l, 100);
    cr_expect_eq(p.got, at_pause, "bytes delivered while paused: %zu", p.got - at_pause);
    cr_expect_eq(p.eofs, 0, "on_eof while paused");
    cr_expect_eq(p.on_data_while_paused, 0, "%s: %d on_data calls while paused", backend,
                 p.on_data_while_paused);
    pr_resume_now(&p);
    bool eof = false;
    end = h_now_ms() + 5000;
    while (!eof) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        eof = p.eofs > 0;
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu, no eof", p.got, off);
    }
    cr_expect_eq(p.got, off);
    cr_expect_eq(off, p.want_total);
    cr_expect(!p.mismatch, "bytes out of order or corrupted");
    cr_expect(!p.eof_before_all, "on_eof came before the data held while paused");
    cr_expect_eq(p.on_data_while_paused + p.eof_while_paused, 0, "%s", backend);
    close(fd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(uring, read_pause_stops_receiving, .timeout = 30)
{
    /* While paused the engine must stop taking data from the kernel (TCP flow control slows
     * the peer), not keep receiving into buffers it holds back. */
    rill_loop *l = h_loop(backend);
    struct pr p = {.seed = 9, .pause_at = 1};
    rill_listener *ls = listen_on(l, &pr_h, &p);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    size_t off = 0;
    uint8_t buf[65536];
    uint64_t end = h_now_ms() + 300;
    /* The peer writes as fast as the socket takes it for 300 ms, reading is paused after the
     * first delivery. */
    while (h_now_ms() < end) {
        h_fill(buf, sizeof buf, p.seed, off);
        ssize_t w = write(fd, buf, sizeof buf);
        if (w > 0)
            off += (size_t)w;
        cr_assert_geq(rill_loop_run_once(l, 0), 0);
    }
    cr_assert(p.paused, "never paused");
    struct rill_loop_stats st = stats_of(l);
    size_t held = (size_t)st.bufs_in_use * 16384u;
    cr_log_info("%s: %zu bytes written, %zu delivered, %llu buffers held while paused", backend,
                off, p.got, (unsigned long long)st.bufs_in_use);
    cr_expect_leq(st.bufs_in_use, 64,
                  "%llu buffers (%zu bytes) held for a paused connection: receiving went on",
                  (unsigned long long)st.bufs_in_use, held);
    cr_expect_eq(p.on_data_while_paused, 0, "%s: %d on_data calls while paused", backend,
                 p.on_data_while_paused);
    size_t at_pause = p.got;
    pr_resume_now(&p);
    /* Drain: write the rest, then everything arrives in order. */
    end = h_now_ms() + 10000;
    while (p.got < off) {
        cr_assert_geq(rill_loop_run_once(l, 1), 0);
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu", p.got, off);
    }
    cr_expect_gt(p.got, at_pause);
    cr_expect(!p.mismatch, "bytes out of order or corrupted");
    close(fd);
    rill_loop_destroy(l);
}

static void run_pause_storm(const char *backend, int resume_mode)
{
    rill_loop *l = h_loop(backend);
    struct pr p = {.seed = 77, .resume_mode = resume_mode};
    p.pause_at = 1; /* on_open does not pause */
    rill_listener *ls = listen_on(l, &pr_h, &p);
    cr_assert_eq(rill_timer_create(l, pr_timer, &p, &p.t), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    const size_t total = 8u * MiB;
    p.want_total = total;
    size_t off = 0;
    uint8_t buf[32768];
    uint64_t end = h_now_ms() + 60000;
    while (p.eofs == 0) {
        if (off < total) {
            size_t m = total - off < sizeof buf ? total - off : sizeof buf;
            h_fill(buf, m, p.seed, off);
            ssize_t w = write(fd, buf, m);
            if (w > 0)
                off += (size_t)w;
            if (off == total)
                shutdown(fd, SHUT_WR);
        }
        cr_assert_geq(rill_loop_run_once(l, 0), 0);
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu (sent %zu)", p.got, total, off);
        if (p.mismatch)
            break;
    }
    cr_expect(!p.mismatch, "bytes out of order or corrupted near offset %zu", p.got);
    cr_expect_eq(p.got, total);
    cr_expect(!p.eof_before_all);
    cr_expect_eq(p.on_data_while_paused, 0, "%s: %d on_data calls while paused", backend,
                 p.on_data_while_paused);
    cr_expect_eq(p.eof_while_paused, 0);
    cr_expect_gt(p.pauses, 10);
    rill_timer_destroy(p.t);
    close(fd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(uring, read_pause_resume_storm_deferred, .timeout = 90)
{
    run_pause_storm(backend, 1);
}

H_BACKEND_TEST(uring, read_pause_resume_storm_timer, .timeout = 90)
{
    run_pause_storm(backend, 2);
}

H_BACKEND_TEST(uring, close_while_paused_frees_held_data, .timeout = 30)
{
    /* Data (and the FIN) that arrived while paused is dropped by a close: no on_data, no
     * on_eof, on_close once, and every buffer goes back. */
    rill_loop *l = h_loop(backend);
    struct pr p = {.seed = 5, .pause_at = 1};
    rill_listener *ls = listen_on(l, &pr_h, &p);
    int fds = h_count_fds();
    int fd = h_client(AF_INET, rill_listener_port(ls));
    size_t off = 0;
    peer_write(fd, p.seed, &off, 200000);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    uint64_t end = h_now_ms() + 5000;
    while (!p.paused) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        cr_assert_lt(h_now_ms(), end, "pause in on_data");
    }
    h_run_for(l, 50);
    size_t at_pause = p.got;
    cr_assert_not_null(p.c);
    cr_assert_eq(rill_close(p.c), 0);
    h_run_for(l, 50);
    close(fd);
    settle(l, fds, 5000);
    cr_expect_eq(p.got, at_pause, "%s: data delivered after pause and close", backend);
    cr_expect_eq(p.on_data_while_paused, 0, "%s", backend);
    cr_expect_eq(p.eofs, 0);
    cr_expect_eq(p.closes, 1);
    cr_expect_eq(stats_of(l).bufs_in_use, 0, "held buffers leaked: %llu",
                 (unsigned long long)stats_of(l).bufs_in_use);
    rill_loop_destroy(l);
}
