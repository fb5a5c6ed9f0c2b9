/* What a loop owns and counts: its counters after an accept and an echo, slab buffers (lease,
 * reference, release, a budget that runs out), the allocator hook every loop allocation goes
 * through, and destroying a loop that still has connections and queued sends on it. */
#include <stdatomic.h>

#include "harness.h"

/* ---- counters ------------------------------------------------------------------------------- */

struct echo_state {
    rill_conn *c;
    bool opened, closed;
    int closes;
    int status;
};

static void es_open(rill_conn *c, void *ctx)
{
    struct echo_state *e = ctx;
    e->c = c;
    e->opened = true;
}

static void es_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    cr_assert_eq(rill_send_bufs(c, &s, 1, NULL, NULL), 0);
}

static void es_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct echo_state *e = ctx;
    e->closed = true;
    e->closes++;
    e->status = status;
}

static const struct rill_conn_handler es_h = {
    .on_open = es_open, .on_data = es_data, .on_close = es_close};

H_BACKEND_TEST(loop_stats, move_after_accept_and_echo, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct rill_loop_stats s0, s1, s2;
    rill_loop_stats(l, &s0);
    cr_assert_eq(s0.accepts, 0);
    cr_assert_eq(s0.conns_open, 0);
    cr_assert_eq(s0.bytes_in, 0);
    cr_assert_eq(s0.bytes_out, 0);

    struct echo_state e = {0};
    struct rill_listen_config lc = {.handler = &es_h, .ctx = &e};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    h_run_until(l, &e.opened, 5000, "accept");
    static const char msg[] = "hello, counters";
    const size_t n = sizeof msg - 1;
    cr_assert_eq(write(fd, msg, n), (ssize_t)n);
    char got[64];
    size_t have = 0;
    uint64_t end = h_now_ms() + 5000;
    while (have < n) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        if (h_readable(fd, 0)) {
            ssize_t r = read(fd, got + have, sizeof got - have);
            cr_assert_gt(r, 0);
            have += (size_t)r;
        }
        cr_assert_lt(h_now_ms(), end, "echo timed out");
    }
    cr_assert_eq(have, n);
    cr_assert_arr_eq(got, msg, n);

    /* A completion backend counts bytes out when the send's completion is reaped, which may be
     * an iteration after the peer already has them. */
    end = h_now_ms() + 2000;
    do {
        cr_assert_geq(rill_loop_run_once(l, 1), 0);
        rill_loop_stats(l, &s1);
    } while (s1.bytes_out < n && h_now_ms() < end);
    cr_assert_eq(s1.accepts, 1);
    cr_assert_eq(s1.conns_open, 1);
    cr_assert_eq(s1.bytes_in, n);
    cr_assert_eq(s1.bytes_out, n);
    cr_assert_gt(s1.sys_read, 0);
    cr_assert_gt(s1.sys_write, 0);
    cr_assert_geq(s1.sys_accept, 1);
    cr_assert_gt(s1.sys_poll, 0);
    cr_assert_geq(s1.sys_other, 3, "socket, bind, listen at least");
    cr_assert_gt(s1.iterations, s0.iterations);
    cr_assert_eq(s1.bufs_in_use, 0, "no buffer stays leased after the echo");

    close(fd);
    h_run_until(l, &e.closed, 5000, "on_close after the peer closed");
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    rill_loop_stats(l, &s2);
    cr_assert_eq(s2.conns_open, 0);
    cr_assert_eq(s2.accepts, 1);
    cr_assert_eq(e.closes, 1);
    cr_assert_eq(e.status, 0);
    rill_loop_destroy(l);
}

/* ---- buffers -------------------------------------------------------------------------------- */

H_BACKEND_TEST(buf, lease_ref_release, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct rill_loop_stats st;
    rill_buf *a = NULL, *b = NULL, *big = NULL, *x = (rill_buf *)&st;
    cr_assert_eq(rill_buf_lease(l, 0, &x), -EINVAL);
    cr_assert_eq(rill_buf_lease(l, (1u << 20) + 1, &x), -EINVAL);
    cr_assert_eq(rill_buf_lease(l, SIZE_MAX, &x), -EINVAL);

    cr_assert_eq(rill_buf_lease(l, 100, &a), 0);
    cr_assert_eq(rill_buf_lease(l, 5000, &b), 0);
    cr_assert_eq(rill_buf_lease(l, 1u << 20, &big), 0);
    cr_assert_geq(rill_buf_capacity(a), 100);
    cr_assert_geq(rill_buf_capacity(b), 5000);
    cr_assert_eq(rill_buf_capacity(big), 1u << 20);
    cr_assert_not_null(rill_buf_data(a));
    /* The whole capacity is usable, and buffers do not overlap. */
    memset(rill_buf_data(a), 'a', rill_buf_capacity(a));
    memset(rill_buf_data(b), 'b', rill_buf_capacity(b));
    memset(rill_buf_data(big), 'c', rill_buf_capacity(big));
    const unsigned char *pa = rill_buf_data(a);
    for (size_t i = 0; i < rill_buf_capacity(a); i++)
        cr_assert_eq(pa[i], 'a');
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 3);
    cr_assert_gt(st.buf_bytes_mapped, 0);

    cr_assert_eq(rill_buf_ref(a), a);
    rill_buf_release(a);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 3, "a referenced buffer stays leased");
    cr_assert_eq(pa[0], 'a');
    rill_buf_release(a);
    rill_buf_release(b);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 1);
    rill_buf_release(big);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 0);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(buf, idle_regions_go_back_to_the_kernel, .timeout = 30)
{
    /* A burst of 64 buffers of 16 KiB (4 MiB of regions), all released: slab_idle_ms later the
     * regions are unmapped, and an idle loop is not woken for it again. */
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.slab_idle_ms = 200;
    rill_loop *l = h_loop_cfg(backend, &cfg);
    rill_loop_run_once(l, 0); /* io_uring fills its buffer ring at the first flush point */
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    uint64_t base = st.buf_bytes_mapped;
    enum { N = 64 };
    rill_buf *b[N];
    for (int i = 0; i < N; i++)
        cr_assert_eq(rill_buf_lease(l, 64u << 10, &b[i]), 0);
    rill_loop_stats(l, &st);
    cr_assert_geq(st.buf_bytes_mapped, base + N * (64u << 10));
    for (int i = 0; i < N; i++)
        rill_buf_release(b[i]);
    h_run_for(l, 100);
    rill_loop_stats(l, &st);
    cr_expect_eq(st.buf_bytes_trimmed, 0, "not idle for long enough yet");
    h_run_for(l, 400);
    rill_loop_stats(l, &st);
    cr_expect_geq(st.buf_bytes_trimmed, N * (64u << 10), "trimmed %llu",
                  (unsigned long long)st.buf_bytes_trimmed);
    cr_expect_leq(st.buf_bytes_mapped, base, "mapped %llu, %llu before the burst",
                  (unsigned long long)st.buf_bytes_mapped, (unsigned long long)base);
    /* Nothing left to give back: the loop sleeps through its whole timeout. */
    uint64_t t0 = h_now_ms();
    cr_expect_eq(rill_loop_run_once(l, 300), 0);
    cr_expect_geq(h_now_ms() - t0, 290);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(buf, small_budget_runs_out, .timeout = 30)
{
    struct rill_loop_config c;
    rill_loop_config_init(&c);
    c.slab_budget = 64u << 10;
    c.recv_buf_size = 4096;
    rill_loop *l = h_loop_cfg(backend, &c);
    rill_buf *b[64];
    int n = 0, r;
    while ((r = rill_buf_lease(l, 4096, &b[n])) == 0) {
        n++;
        cr_assert_lt(n, 64, "leased more than a 64 KiB budget holds");
    }
    cr_assert_eq(r, -ENOBUFS, "%s", rill_strerror(r));
    cr_assert_geq(n, 8, "only %d buffers of 4 KiB from a 64 KiB budget", n);
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, (uint64_t)n);
    cr_assert_eq(st.buf_exhausted, 1);
    cr_assert_eq(st.buf_budget, 64u << 10);
    cr_assert_leq(st.buf_bytes_mapped, 64u << 10);
    rill_buf *y;
    cr_assert_eq(rill_buf_lease(l, 4096, &y), -ENOBUFS);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.buf_exhausted, 2);

    rill_buf_release(b[--n]);
    cr_assert_eq(rill_buf_lease(l, 4096, &b[n]), 0, "a released buffer can be leased again");
    n++;
    for (int i = 0; i < n; i++)
        rill_buf_release(b[i]);
    rill_loop_stats(l, &st);
    cr_assert_eq(st.bufs_in_use, 0);
    rill_loop_destroy(l);
}

/* ---- the allocator hook --------------------------------------------------------------------- */

/* Counting wrappers that also tag their blocks: handing one of them to libc's free (or a libc
 * block to ours) is caught instead of silently working. */
#define CNT_MAGIC 0x52494c4cu
static atomic_long cnt_malloc, cnt_free, cnt_realloc, cnt_live;

struct cnt_hdr {
    uint32_t magic;
    uint32_t pad;
    size_t size;
};

static void *cnt_malloc_fn(size_t n)
{
    struct cnt_hdr *h = malloc(sizeof *h + n);
    if (!h)
        return NULL;
    h->magic = CNT_MAGIC;
    h->size = n;
    atomic_fetch_add(&cnt_malloc, 1);
    atomic_fetch_add(&cnt_live, 1);
    return h + 1;
}

static void cnt_free_fn(void *p)
{
    if (!p)
        return;
    struct cnt_hdr *h = (struct cnt_hdr *)p - 1;
    if (h->magic != CNT_MAGIC)
        abort(); /* not one of ours */
    h->magic = 0;
    atomic_fetch_add(&cnt_free, 1);
    atomic_fetch_sub(&cnt_live, 1);
    free(h);
}

static void *cnt_realloc_fn(void *p, size_t n)
{
    if (!p)
        return cnt_malloc_fn(n);
    struct cnt_hdr *h = (struct cnt_hdr *)p - 1;
    if (h->magic != CNT_MAGIC)
        abort();
    struct cnt_hdr *nh = realloc(h, sizeof *nh + n);
    if (!nh)
        return NULL;
    nh->size = n;
    atomic_fetch_add(&cnt_realloc, 1);
    return nh + 1;
}

Test(allocator, busy_while_a_loop_exists)
{
    unsetenv("RILL_BACKEND");
    rill_loop *l;
    cr_assert_eq(rill_loop_create(NULL, &l), 0);
    cr_assert_eq(rill_set_allocator(cnt_malloc_fn, cnt_realloc_fn, cnt_free_fn), -EBUSY);
    rill_loop *l2;
    cr_assert_eq(rill_loop_create(NULL, &l2), 0);
    rill_loop_destroy(l);
    cr_assert_eq(rill_set_allocator(cnt_malloc_fn, cnt_realloc_fn, cnt_free_fn), -EBUSY,
                 "one loop is still alive");
    rill_loop_destroy(l2);
    cr_assert_eq(rill_set_allocator(malloc, realloc, free), 0, "no loop left");
    cr_assert_eq(atomic_load(&cnt_malloc), 0, "the refused allocator was never used");
}

static void noop_defer(rill_loop *l, void *arg)
{
    (void)l;
    (void)arg;
}

static void noop_timer(rill_timer *t, void *ctx)
{
    (void)t;
    (void)ctx;
}

H_BACKEND_TEST(allocator, loop_allocations_go_through_it, .timeout = 30)
{
    /* Criterion runs every test in its own process, so no loop exists yet here. */
    cr_assert_eq(rill_set_allocator(cnt_malloc_fn, cnt_realloc_fn, cnt_free_fn), 0);
    rill_loop *l = h_loop(backend);
    long after_create = atomic_load(&cnt_malloc);
    cr_assert_gt(after_create, 0, "creating a loop allocates through the hook");

    /* Connections, write-queue entries, timers and the defer ring all use it too. */
    struct echo_state e = {0};
    struct rill_listen_config lc = {.handler = &es_h, .ctx = &e};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    cr_assert_gt(atomic_load(&cnt_malloc), after_create, "a listener allocates");
    int fd = h_client(AF_INET, rill_listener_port(ls));
    h_run_until(l, &e.opened, 5000, "accept");
    cr_assert_eq(write(fd, "ping", 4), 4);
    char buf[8];
    uint64_t end = h_now_ms() + 5000;
    size_t have = 0;
    while (have < 4) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        if (h_readable(fd, 0))
            have += (size_t)read(fd, buf + have, sizeof buf - have);
        cr_assert_lt(h_now_ms(), end);
    }
    rill_timer *t;
    long before_timer = atomic_load(&cnt_malloc);
    cr_assert_eq(rill_timer_create(l, noop_timer, NULL, &t), 0);
    cr_assert_gt(atomic_load(&cnt_malloc), before_timer, "a timer allocates");
    rill_timer_destroy(t);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(rill_loop_defer(l, noop_defer, NULL), 0);
    cr_assert_geq(rill_loop_run_once(l, 0), 0);

    close(fd);
    h_run_until(l, &e.closed, 5000, "close");
    rill_loop_destroy(l);
    cr_assert_eq(atomic_load(&cnt_live), 0, "%ld blocks from the hook were never freed",
                 atomic_load(&cnt_live));
    cr_assert_eq(rill_set_allocator(malloc, realloc, free), 0);
}

H_BACKEND_TEST(allocator, destroy_frees_remaining_timers, .timeout = 30)
{
    /* rill_loop_destroy: "timers still existing are freed (their handles become invalid)". */
    cr_assert_eq(rill_set_allocator(cnt_malloc_fn, cnt_realloc_fn, cnt_free_fn), 0);
    rill_loop *l = h_loop(backend);
    rill_timer *t[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(rill_timer_create(l, noop_timer, NULL, &t[i]), 0);
    cr_assert_eq(rill_timer_start(t[0], 10000, 0), 0);    /* scheduled */
    cr_assert_eq(rill_timer_start(t[1], 10000, 1000), 0); /* scheduled, repeating */
    /* t[2] was never started */
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    rill_loop_destroy(l);
    cr_assert_eq(atomic_load(&cnt_live), 0, "%ld blocks leaked by rill_loop_destroy",
                 atomic_load(&cnt_live));
    cr_assert_eq(rill_set_allocator(malloc, realloc, free), 0);
}

/* ---- destroying a loop with work on it ------------------------------------------------------ */

#define DMAX 16

struct dconn {
    rill_conn *c;
    int closes;
    int status;
    int send_cbs;
    int send_status;
    bool cb_after_close;
};

struct dworld {
    struct dconn conns[DMAX];
    int n;
    int opened_out;
    int opens;
};

static struct dconn *dfind(struct dworld *w, rill_conn *c)
{
    for (int i = 0; i < w->n; i++)
        if (w->conns[i].c == c)
            return &w->conns[i];
    return NULL;
}

static struct dconn *dadd(struct dworld *w, rill_conn *c)
{
    struct dconn *d = dfind(w, c);
    if (d)
        return d;
    cr_assert_lt(w->n, DMAX);
    d = &w->conns[w->n++];
    d->c = c;
    return d;
}

static void d_open(rill_conn *c, void *ctx)
{
    struct dworld *w = ctx;
    w->opens++;
    dadd(w, c);
}

static void d_close(rill_conn *c, int status, void *ctx)
{
    struct dworld *w = ctx;
    struct dconn *d = dfind(w, c);
    cr_assert_not_null(d, "on_close for a connection never seen");
    d->closes++;
    d->status = status;
    cr_assert_eq(rill_close(c), -EALREADY);
}

static void d_sent(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct dconn *d = ctx;
    if (d->closes)
        d->cb_after_close = true;
    d->send_cbs++;
    d->send_status = status;
}

static const struct rill_conn_handler d_h = {.on_open = d_open, .on_close = d_close};

H_BACKEND_TEST(loop_destroy, closes_everything_once, .timeout = 30)
{
    int fds0 = h_count_fds();
    rill_loop *l = h_loop(backend);
    static struct dworld w;
    memset(&w, 0, sizeof w);
    struct rill_listen_config lc = {.handler = &d_h, .ctx = &w};
    rill_listener *ls, *ls2;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    cr_assert_eq(rill_listen(l, "tcp://[::1]:0", &lc, &ls2), 0);
    int port = rill_listener_port(ls);

    int cl[3];
    for (int i = 0; i < 3; i++)
        cl[i] = h_client(AF_INET, port);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    struct rill_connect_config cc = {.handler = &d_h, .ctx = &w, .timeout_ms = 10000};
    rill_conn *out[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(rill_connect(l, uri, &cc, &out[i]), 0);
    uint64_t end = h_now_ms() + 5000;
    while (w.opens < 7) { /* 3 + 2 accepted, 2 outbound */
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "only %d of 7 connections opened", w.opens);
    }
    /* One more outbound connection that never gets to open. */
    rill_conn *pending;
    cr_assert_eq(rill_connect(l, uri, &cc, &pending), 0);
    struct dconn *dp = dadd(&w, pending);

    /* Sends queued and never flushed: on two accepted connections, an outbound one and the
     * pending one. */
    static char payload[4096];
    struct iovec v = {payload, sizeof payload};
    struct dconn *withq[4] = {NULL, NULL, dfind(&w, out[0]), dp};
    cr_assert_not_null(withq[2]);
    for (int i = 0, k = 0; i < w.n && k < 2; i++)
        if (w.conns[i].c != out[0] && w.conns[i].c != out[1] && w.conns[i].c != pending)
            withq[k++] = &w.conns[i];
    cr_assert_not_null(withq[1], "two accepted connections");
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++)
            cr_assert_eq(rill_send(withq[i]->c, &v, 1, d_sent, withq[i]), 0);
    for (int i = 0; i < w.n; i++)
        cr_assert_eq(w.conns[i].closes, 0);

    rill_loop_destroy(l);

    cr_assert_eq(w.n, 8);
    for (int i = 0; i < w.n; i++) {
        cr_assert_eq(w.conns[i].closes, 1, "connection %d: on_close ran %d times", i,
                     w.conns[i].closes);
        cr_assert_eq(w.conns[i].status, -ECANCELED, "connection %d closed with %s", i,
                     rill_strerror(w.conns[i].status));
        cr_assert_not(w.conns[i].cb_after_close, "connection %d: a send callback after on_close",
                      i);
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(withq[i]->send_cbs, 3, "queued sends: %d callbacks of 3", withq[i]->send_cbs);
        cr_assert_eq(withq[i]->send_status, -ECANCELED, "send callback status %s",
                     rill_strerror(withq[i]->send_status));
    }
    for (int i = 0; i < 3; i++)
        close(cl[i]);
    cr_assert_eq(h_count_fds(), fds0, "descriptors leaked by rill_loop_destroy");
}
