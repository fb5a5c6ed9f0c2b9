/* Stream connections: byte-exact echo across sizes and families, injected faults (short
 * transfers, EINTR, EAGAIN), peer reset, half-close both ways, connect refused and timed out,
 * idle timeout, buffer starvation. Server and clients share one loop, so every test is a
 * deterministic single-threaded program bounded by a deadline. */
#include <stdatomic.h>

#include "harness.h"
#include "sys.h"

/* ---- an echo server on rill ----------------------------------------------------------------- */

static void echo_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    cr_assert_eq(rill_send_bufs(c, &s, 1, NULL, NULL), 0);
    if (rill_conn_write_queued(c) >= (1u << 20))
        rill_read_pause(c);
}

static void echo_drain(rill_conn *c, void *ctx)
{
    (void)ctx;
    rill_read_resume(c);
}

static const struct rill_conn_handler echo_h = {.on_data = echo_data, .on_drain = echo_drain};

static rill_listener *echo_listen(rill_loop *l, const char *uri)
{
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &echo_h};
    int r = rill_listen(l, uri, &lc, &ls);
    cr_assert_eq(r, 0, "listen %s: %s", uri, rill_strerror(r));
    cr_assert_gt(rill_listener_port(ls), 0);
    return ls;
}

/* ---- echo clients on rill ------------------------------------------------------------------- */

struct cli {
    rill_conn *c;
    uint8_t *data;
    size_t size, got;
    uint64_t seed;
    int status;
    bool opened, closed, mismatch;
    int *done;
};

static void cli_open(rill_conn *c, void *ctx)
{
    struct cli *k = ctx;
    k->opened = true;
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
        if (p[i] != h_pattern(k->seed, k->got + i))
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
    k->closed = true;
    (*k->done)++;
}

static const struct rill_conn_handler cli_h = {
    .on_open = cli_open, .on_data = cli_data, .on_close = cli_close};

static void run_echo(const char *backend, const char *listen_uri, const char *host,
                     const size_t *sizes, int n)
{
    rill_loop *l = h_loop(backend);
    rill_listener *ls = echo_listen(l, listen_uri);
    char uri[128];
    snprintf(uri, sizeof uri, "tcp://%s:%d", host, rill_listener_port(ls));
    struct cli *k = calloc((size_t)n, sizeof *k);
    int done = 0;
    for (int i = 0; i < n; i++) {
        k[i].size = sizes[i];
        k[i].seed = (uint64_t)i + 1;
        k[i].data = malloc(sizes[i]);
        k[i].done = &done;
        h_fill(k[i].data, sizes[i], k[i].seed, 0);
        struct rill_connect_config cc = {.handler = &cli_h, .ctx = &k[i], .timeout_ms = 5000};
        cr_assert_eq(rill_connect(l, uri, &cc, &k[i].c), 0);
    }
    bool all = false;
    uint64_t end = h_now_ms() + 60000;
    while (!all) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        all = done == n;
        cr_assert_lt(h_now_ms(), end, "echo timed out: %d of %d done", done, n);
    }
    for (int i = 0; i < n; i++) {
        cr_expect(k[i].opened, "client %d never opened", i);
        cr_expect(!k[i].mismatch, "client %d: bytes differ", i);
        cr_expect_eq(k[i].got, k[i].size, "client %d: got %zu of %zu", i, k[i].got, k[i].size);
        cr_expect_eq(k[i].status, 0, "client %d: %s", i, rill_strerror(k[i].status));
        free(k[i].data);
    }
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_expect_eq(st.accepts, (uint64_t)n);
    cr_expect_eq(st.connects, (uint64_t)n);
    free(k);
    rill_loop_destroy(l);
}

static const size_t echo_sizes[] = {1,       2,       7,         100,       1000,    4095,
                                    4096,    4097,    16384,     16385,     65536,   100000,
                                    1 << 20, 3 << 20, 16u << 20, 1,         512,     32768};

H_BACKEND_TEST(conn, echo_sizes_ipv4, .timeout = 120)
{
    run_echo(backend, "tcp://127.0.0.1:0", "127.0.0.1", echo_sizes,
             (int)(sizeof echo_sizes / sizeof echo_sizes[0]));
}

H_BACKEND_TEST(conn, echo_sizes_ipv6, .timeout = 120)
{
    run_echo(backend, "tcp://[::1]:0", "[::1]", echo_sizes,
             (int)(sizeof echo_sizes / sizeof echo_sizes[0]));
}

H_BACKEND_TEST(conn, echo_many_concurrent, .timeout = 120)
{
    size_t sizes[200];
    for (int i = 0; i < 200; i++)
        sizes[i] = (size_t)(1 + (i * 7919) % 200000);
    run_echo(backend, "tcp://127.0.0.1:0", "127.0.0.1", sizes, 200);
}

/* ---- injected faults ------------------------------------------------------------------------ */

static _Atomic uint64_t fault_rng = 88172645463325252ull;
static _Atomic uint64_t faults_done;

static uint64_t xorshift(void)
{
    uint64_t x = atomic_load(&fault_rng);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    atomic_store(&fault_rng, x);
    return x;
}

/* One call in three is disturbed: cut short, EINTR, or a spurious EAGAIN. */
static int chaos_hook(enum rill__sys_call call, int fd, size_t *len, void *arg)
{
    (void)fd;
    (void)arg;
    if (call != RILL__SYS_READV && call != RILL__SYS_SENDMSG)
        return 0;
    uint64_t x = xorshift();
    switch (x % 6) {
    case 0:
        if (*len > 1) {
            *len = 1 + (size_t)(x >> 8) % (*len - 1);
            atomic_fetch_add(&faults_done, 1);
        }
        return 0;
    case 1:
        atomic_fetch_add(&faults_done, 1);
        return -EINTR;
    case 2:
        atomic_fetch_add(&faults_done, 1);
        return -EAGAIN;
    default:
        return 0;
    }
}

H_BACKEND_TEST(conn, echo_with_injected_faults, .timeout = 120)
{
    atomic_store(&faults_done, 0);
    rill__sys_set_hook(chaos_hook, NULL);
    size_t sizes[40];
    for (int i = 0; i < 40; i++)
        sizes[i] = (size_t)(1 + (i * 104729) % 300000);
    sizes[0] = 2u << 20;
    run_echo(backend, "tcp://127.0.0.1:0", "127.0.0.1", sizes, 40);
    rill__sys_set_hook(NULL, NULL);
    /* On io_uring only sends pass the hook (a completed receive cannot be undone), so fewer
     * calls are disturbed there; on both, many must have been. */
    cr_expect_gt(atomic_load(&faults_done), 30, "the hook must really have disturbed calls");
}

/* ---- send callbacks, peer reset ------------------------------------------------------------- */

struct blaster {
    int status;
    bool closed;
    int cb_ok, cb_err, last_cb_err;
    rill_conn *c;
};

static uint8_t blast_chunk[64 * 1024];

static void blast_cb(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct blaster *b = ctx;
    if (status > 0)
        b->cb_ok++;
    else {
        b->cb_err++;
        b->last_cb_err = status;
    }
}

static void blast_open(rill_conn *c, void *ctx)
{
    struct blaster *b = ctx;
    b->c = c;
    rill_conn_set_ctx(c, b);
}

static void blast_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct blaster *b = ctx;
    b->status = status;
    b->closed = true;
}

H_BACKEND_TEST(conn, peer_reset_mid_write, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    struct blaster b = {0};
    struct rill_conn_handler h = {.on_open = blast_open, .on_close = blast_close};
    struct rill_listen_config lc = {.handler = &h, .ctx = &b};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    bool opened = false;
    uint64_t end = h_now_ms() + 5000;
    while (!b.c) {
        rill_loop_run_once(l, 10);
        cr_assert_lt(h_now_ms(), end);
    }
    (void)opened;
    /* Queue far more than the socket buffers hold, let some of it go, then reset. */
    struct iovec v = {blast_chunk, sizeof blast_chunk};
    for (int i = 0; i < 64; i++)
        cr_assert_eq(rill_send(b.c, &v, 1, blast_cb, &b), 0);
    h_run_for(l, 50);
    cr_assert(!b.closed);
    char sink[4096];
    cr_assert_gt(read(fd, sink, sizeof sink), 0, "some bytes must have arrived");
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd); /* RST */
    h_run_until(l, &b.closed, 5000, "on_close after reset");
    cr_expect(b.status == -ECONNRESET || b.status == -EPIPE, "status %s", rill_strerror(b.status));
    cr_expect_eq(b.cb_ok + b.cb_err, 64, "every send callback runs exactly once");
    cr_expect_gt(b.cb_err, 0);
    cr_expect(b.last_cb_err == -ECONNRESET || b.last_cb_err == -EPIPE, "send cb status %s",
              rill_strerror(b.last_cb_err));
    rill_loop_destroy(l);
}

/* ---- half-close ----------------------------------------------------------------------------- */

struct halfer {
    rill_conn *c;
    size_t got;
    bool opened, eof, closed;
    int status;
};

static void half_data(rill_conn *c, rill_buf *buf, const void *d, size_t len, void *ctx)
{
    (void)c;
    (void)buf;
    (void)d;
    ((struct halfer *)ctx)->got += len;
}

static void half_eof(rill_conn *c, void *ctx)
{
    struct halfer *hf = ctx;
    hf->eof = true;
    /* Answer after the peer's FIN, then half-close our side: a request/response over half-close. */
    static const char reply[] = "after-eof";
    struct iovec v = {(void *)reply, sizeof reply - 1};
    cr_assert_eq(rill_send(c, &v, 1, NULL, NULL), 0);
    cr_assert_eq(rill_shutdown(c), 0);
    cr_assert_eq(rill_shutdown(c), -ENOTCONN);
    cr_assert_eq(rill_send(c, &v, 1, NULL, NULL), -ENOTCONN);
}

static void half_open(rill_conn *c, void *ctx)
{
    ((struct halfer *)ctx)->c = c;
    ((struct halfer *)ctx)->opened = true;
}

static void half_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct halfer *hf = ctx;
    hf->closed = true;
    hf->status = status;
}

H_BACKEND_TEST(conn, half_close_by_peer, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct halfer hf = {0};
    struct rill_conn_handler h = {
        .on_open = half_open, .on_data = half_data, .on_eof = half_eof, .on_close = half_close};
    struct rill_listen_config lc = {.handler = &h, .ctx = &hf};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://[::1]:0", &lc, &ls), 0);
    int fd = h_client(AF_INET6, rill_listener_port(ls));
    cr_assert_eq(write(fd, "hello", 5), 5);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    h_run_until(l, &hf.eof, 5000, "on_eof");
    cr_expect_eq(hf.got, 5);
    h_run_for(l, 20);
    char buf[64];
    ssize_t n = 0, r;
    while ((r = read(fd, buf + n, sizeof buf - (size_t)n)) > 0)
        n += r;
    cr_expect_eq(r, 0, "the server's FIN must follow its reply");
    cr_expect_eq(n, 9);
    cr_expect_eq(memcmp(buf, "after-eof", 9), 0);
    close(fd);
    h_run_until(l, &hf.closed, 5000, "on_close");
    rill_loop_destroy(l);
}

H_BACKEND_TEST(conn, half_close_by_us_keeps_reading, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct halfer hf = {0};
    struct rill_conn_handler h = {.on_open = half_open, .on_data = half_data, .on_close = half_close};
    struct rill_listen_config lc = {.handler = &h, .ctx = &hf};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    h_run_until(l, &hf.opened, 5000, "accept");
    static uint8_t big[300000];
    h_fill(big, sizeof big, 3, 0);
    struct iovec v = {big, sizeof big};
    cr_assert_eq(rill_send(hf.c, &v, 1, NULL, NULL), 0);
    cr_assert_eq(rill_shutdown(hf.c), 0);
    /* The peer gets every byte, then EOF... */
    static uint8_t in[300000 + 1];
    size_t n = 0;
    uint64_t end = h_now_ms() + 10000;
    for (;;) {
        rill_loop_run_once(l, 1);
        if (!h_readable(fd, 1))
            continue;
        ssize_t r = read(fd, in + n, sizeof in - n);
        cr_assert_geq(r, 0);
        if (r == 0)
            break;
        n += (size_t)r;
        cr_assert_lt(h_now_ms(), end);
    }
    cr_expect_eq(n, sizeof big);
    cr_expect_eq(memcmp(in, big, sizeof big), 0);
    /* ...and can still send to us: our reading side is open. */
    cr_assert_eq(write(fd, "still", 5), 5);
    end = h_now_ms() + 5000;
    while (hf.got < 5 && h_now_ms() < end)
        rill_loop_run_once(l, 10);
    cr_expect_eq(hf.got, 5);
    cr_expect(!hf.closed);
    close(fd); /* our default on_eof then closes with status 0 */
    h_run_until(l, &hf.closed, 5000, "close after both sides are done");
    cr_expect_eq(hf.status, 0);
    rill_loop_destroy(l);
}

/* ---- connect failures and timeouts ---------------------------------------------------------- */

struct outcome {
    bool opened, closed;
    int status;
};

static void oc_open(rill_conn *c, void *ctx)
{
    (void)c;
    ((struct outcome *)ctx)->opened = true;
}

static void oc_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct outcome *o = ctx;
    o->closed = true;
    o->status = status;
}

static const struct rill_conn_handler oc_h = {.on_open = oc_open, .on_close = oc_close};

/* A port on which nothing listens: bound (so no one else takes it) but not listening. */
static int unused_port(int *holder)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *holder = fd;
    return ntohs(a.sin_port);
}

H_BACKEND_TEST(conn, connect_refused, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    int holder, port = unused_port(&holder);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    struct outcome o = {0};
    struct rill_connect_config cc = {.handler = &oc_h, .ctx = &o, .timeout_ms = 5000};
    rill_conn *c;
    cr_assert_eq(rill_connect(l, uri, &cc, &c), 0);
    cr_assert(!o.closed, "on_close never runs inside rill_connect");
    h_run_until(l, &o.closed, 5000, "refusal");
    cr_expect(!o.opened);
    cr_expect_eq(o.status, -ECONNREFUSED, "got %s", rill_strerror(o.status));
    close(holder);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(conn, connect_timeout, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    /* A listener that never accepts, with its queue filled: further SYNs are dropped, so a
     * connect neither succeeds nor fails until our timeout. */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(lfd, 0), 0);
    getsockname(lfd, (struct sockaddr *)&a, &len);
    int fillers[8], nf = 0;
    for (; nf < 8; nf++) {
        fillers[nf] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fillers[nf], (struct sockaddr *)&a, sizeof a);
    }
    usleep(100000);
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    struct outcome o = {0};
    struct rill_connect_config cc = {.handler = &oc_h, .ctx = &o, .timeout_ms = 300};
    rill_conn *c;
    uint64_t t0 = h_now_ms();
    cr_assert_eq(rill_connect(l, uri, &cc, &c), 0);
    h_run_until(l, &o.closed, 5000, "connect timeout");
    cr_expect(!o.opened);
    cr_expect_eq(o.status, -ETIMEDOUT, "got %s", rill_strerror(o.status));
    cr_expect_geq(h_now_ms() - t0, 290);
    for (int i = 0; i < nf; i++)
        close(fillers[i]);
    close(lfd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(conn, idle_timeout, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct halfer hf = {0};
    struct rill_conn_handler h = {.on_open = half_open, .on_data = half_data, .on_close = half_close};
    /* 500 ms against writes 100 ms apart: a margin a loaded 2-CPU machine cannot eat. */
    struct rill_listen_config lc = {.handler = &h, .ctx = &hf, .conn.idle_timeout_ms = 500};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    uint64_t t0 = h_now_ms();
    /* Activity pushes the deadline: four writes 100 ms apart keep it alive past 500 ms. */
    for (int i = 0; i < 4; i++) {
        h_run_for(l, 100);
        cr_assert_eq(write(fd, "x", 1), 1);
    }
    cr_expect(!hf.closed, "activity must defer the idle timeout");
    h_run_until(l, &hf.closed, 5000, "idle timeout");
    uint64_t took = h_now_ms() - t0;
    cr_expect_eq(hf.status, -ETIMEDOUT, "got %s", rill_strerror(hf.status));
    cr_expect_geq(took, 890, "closed after %llu ms", (unsigned long long)took);
    cr_expect_eq(hf.got, 4);
    /* The loop keeps running, as in any real program: a completion backend finishes the close
     * in the kernel only when the loop next enters it. */
    uint64_t end = h_now_ms() + 5000;
    while (!h_readable(fd, 0) && h_now_ms() < end)
        rill_loop_run_once(l, 5);
    char c;
    cr_expect_eq(read(fd, &c, 1), 0, "the peer sees the connection end");
    close(fd);
    rill_loop_destroy(l);
}

/* ---- send timeout ---------------------------------------------------------------------------- */

/* A server that queues 4 MiB to each peer as it connects, with small socket buffers so that
 * every read the peer makes shows up as progress of the server's queue at once. */
struct stall {
    uint8_t *blob;
    size_t blob_len;
    int status, sent_status;
    bool closed;
    uint64_t closed_at;
};

static void stall_sent(rill_conn *c, int status, void *ctx)
{
    (void)c;
    ((struct stall *)ctx)->sent_status = status;
}

static void stall_open(rill_conn *c, void *ctx)
{
    struct stall *st = ctx;
    cr_assert_eq(rill_conn_setopt(c, RILL_OPT_SNDBUF, 32 << 10), 0);
    struct iovec v = {st->blob, st->blob_len};
    cr_assert_eq(rill_send(c, &v, 1, stall_sent, st), 0);
}

static void stall_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct stall *st = ctx;
    st->closed = true;
    st->status = status;
    st->closed_at = h_now_ms();
}

/* Listens with a send timeout; each accepted connection queues st->blob (when there is one).
 * Returns the port. */
static int stall_listen(rill_loop *l, struct stall *st, uint32_t send_timeout_ms)
{
    struct rill_conn_handler h = {.on_open = st->blob ? stall_open : NULL, .on_close = stall_close};
    struct rill_listen_config lc = {.handler = &h, .ctx = st,
                                    .conn.send_timeout_ms = send_timeout_ms};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    return rill_listener_port(ls);
}

H_BACKEND_TEST(conn, send_timeout_closes_a_peer_that_stops_reading, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct stall st = {.blob_len = 4u << 20};
    st.blob = calloc(1, st.blob_len);
    int fd = h_client(AF_INET, stall_listen(l, &st, 600));
    int small = 32 << 10;
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    /* A slow reader: 16 KiB every 100 ms for 1.5 s is progress, however slow, and the queue
     * (4 MiB) never empties meanwhile. */
    static char sink[16 << 10];
    size_t got = 0;
    for (int i = 0; i < 15; i++) {
        h_run_for(l, 100);
        ssize_t r = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
    }
    cr_expect(!st.closed, "a peer that reads must not time out (closed with %s)",
              rill_strerror(st.status));
    cr_expect_gt(got, 0u);
    /* Then it stops reading: the queue stops moving and the connection closes. */
    uint64_t stop = h_now_ms();
    h_run_until(l, &st.closed, 5000, "send timeout");
    cr_expect_eq(st.status, -ETIMEDOUT, "got %s", rill_strerror(st.status));
    cr_expect_eq(st.sent_status, -ECANCELED, "the unsent bytes' callback: %s",
                 rill_strerror(st.sent_status));
    /* The deadline counts from the last progress the server saw, which TCP's window updates
     * make coarser than the reads: so only an upper bound here (the lower one is below). */
    uint64_t took = st.closed_at - stop;
    cr_expect_leq(took, 3000, "closed %llu ms after the last read", (unsigned long long)took);
    close(fd);
    rill_loop_destroy(l);
    free(st.blob);
}

H_BACKEND_TEST(conn, send_timeout_counts_from_the_first_queued_byte, .timeout = 30)
{
    /* A peer that never reads: the queue never moves past what the socket buffers take, and
     * the connection closes one timeout after that, not before. */
    rill_loop *l = h_loop(backend);
    struct stall st = {.blob_len = 4u << 20};
    st.blob = calloc(1, st.blob_len);
    int port = stall_listen(l, &st, 600);
    uint64_t t0 = h_now_ms();
    int fd = h_client(AF_INET, port);
    h_run_until(l, &st.closed, 5000, "send timeout");
    uint64_t took = st.closed_at - t0;
    cr_expect_eq(st.status, -ETIMEDOUT, "got %s", rill_strerror(st.status));
    cr_expect_geq(took, 590, "closed %llu ms after connecting", (unsigned long long)took);
    cr_expect_leq(took, 3000, "closed %llu ms after connecting", (unsigned long long)took);
    close(fd);
    rill_loop_destroy(l);
    free(st.blob);
}

H_BACKEND_TEST(conn, send_timeout_leaves_an_idle_connection_alone, .timeout = 30)
{
    /* Nothing queued is nothing stalled: a quiet connection with a send timeout stays open. */
    rill_loop *l = h_loop(backend);
    struct stall st = {0};
    int fd = h_client(AF_INET, stall_listen(l, &st, 200));
    h_run_for(l, 800);
    cr_expect(!st.closed, "closed with %s", rill_strerror(st.status));
    close(fd);
    h_run_until(l, &st.closed, 5000, "close after the peer left");
    cr_expect_eq(st.status, 0);
    rill_loop_destroy(l);
}

/* ---- buffer starvation ---------------------------------------------------------------------- */

H_BACKEND_TEST(conn, tiny_slab_budget_loses_nothing, .timeout = 120)
{
    /* 64 KiB of buffers for 30 connections echoing 200 KB each: reads pause for want of
     * buffers again and again, and every byte still arrives in order. */
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.slab_budget = 64u << 10;
    cfg.recv_buf_size = 4096;
    rill_loop *l = h_loop_cfg(backend, &cfg);
    rill_listener *ls = echo_listen(l, "tcp://127.0.0.1:0");
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", rill_listener_port(ls));
    enum { N = 30 };
    struct cli k[N] = {0};
    int done = 0;
    for (int i = 0; i < N; i++) {
        k[i].size = 200000;
        k[i].seed = (uint64_t)i + 100;
        k[i].data = malloc(k[i].size);
        k[i].done = &done;
        h_fill(k[i].data, k[i].size, k[i].seed, 0);
        struct rill_connect_config cc = {.handler = &cli_h, .ctx = &k[i]};
        cr_assert_eq(rill_connect(l, uri, &cc, &k[i].c), 0);
    }
    uint64_t end = h_now_ms() + 60000;
    while (done < N) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "%d of %d done", done, N);
    }
    for (int i = 0; i < N; i++) {
        cr_expect(!k[i].mismatch && k[i].got == k[i].size, "client %d", i);
        free(k[i].data);
    }
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_expect_gt(st.read_pauses, 0, "the budget must really have run out");
    cr_expect_leq(st.buf_bytes_mapped, cfg.slab_budget);
    rill_loop_destroy(l);
}
