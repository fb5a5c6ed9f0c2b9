/* Receive sizing: a connection's receive offer adapts to what it reads, so that each message is
 * read in one call and a bulk transfer in few. Counted exactly with the loop's own counters
 * (sys_read: read system calls on epoll, receive completions on io_uring), never timed. */
#include <fcntl.h>
#include <inttypes.h>

#include "harness.h"

struct sink {
    size_t bytes;
    uint64_t calls; /* on_data */
};

static void sink_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)c;
    (void)buf;
    (void)data;
    struct sink *k = ctx;
    k->bytes += len;
    k->calls++;
}

static const struct rill_conn_handler sink_h = {.on_data = sink_data};

/* A listener whose connections run handler h with ctx, and a blocking client connected to it;
 * returns the client's descriptor once the server has its connection. */
static int tcp_pair(rill_loop *l, const struct rill_conn_handler *h, void *ctx)
{
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = h, .ctx = ctx};
    int r = rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls);
    cr_assert_eq(r, 0, "listen: %s", rill_strerror(r));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)rill_listener_port(ls))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct rill_loop_stats st;
    uint64_t end = h_now_ms() + 5000;
    do {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        rill_loop_stats(l, &st);
        cr_assert_lt(h_now_ms(), end, "the server never accepted");
    } while (st.conns_open == 0);
    return fd;
}

static int sink_pair(rill_loop *l, struct sink *k)
{
    return tcp_pair(l, &sink_h, k);
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        cr_assert_gt(w, 0, "send: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

static void run_until_bytes(rill_loop *l, const struct sink *k, size_t want)
{
    uint64_t end = h_now_ms() + 5000;
    while (k->bytes < want) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu bytes", k->bytes, want);
    }
}

/* A stream of 16 KiB requests, one at a time: after the first few, each is read in one call,
 * with no EAGAIN read after it, and reaches on_data once. A receive that offered exactly the
 * configured 16 KiB would fill its offer every time and need a second read to learn the socket
 * was empty (epoll: 2 reads per request). */
H_BACKEND_TEST(recv_size, sixteen_kib_requests_are_read_once_each, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct sink k = {0};
    int fd = sink_pair(l, &k);
    enum { WARM = 8, N = 64, SIZE = 16384 };
    static uint8_t msg[SIZE];
    memset(msg, 'r', sizeof msg);
    struct rill_loop_stats a, b;
    for (int i = 0; i < WARM + N; i++) {
        if (i == WARM) {
            rill_loop_stats(l, &a);
            k.calls = 0;
        }
        send_all(fd, msg, sizeof msg);
        run_until_bytes(l, &k, (size_t)(i + 1) * SIZE);
        /* A few idle iterations: an EAGAIN read, if any were made, happens here. */
        for (int j = 0; j < 3; j++)
            cr_assert_geq(rill_loop_run_once(l, 0), 0);
    }
    rill_loop_stats(l, &b);
    uint64_t reads = b.sys_read - a.sys_read;
    cr_log_info("%s: %" PRIu64 " reads and %" PRIu64 " on_data for %d requests of 16 KiB",
                backend, reads, k.calls, N);
    /* Loopback delivers a 16 KiB send as one segment, so one read each; a little slack for a
     * request that arrived in two pieces all the same. */
    cr_assert_leq(reads, N + N / 16, "%" PRIu64 " reads for %d requests", reads, N);
    cr_assert_leq(k.calls, N + N / 16, "%" PRIu64 " on_data for %d requests", k.calls, N);
    close(fd);
    rill_loop_destroy(l);
}

/* A 1 MiB transfer from a sender that keeps the socket full: the offer grows while reads fill
 * it, so the transfer takes a handful of reads instead of one per 16 KiB (64) or per 32 KiB (32,
 * the old two-buffer readv). The client is non-blocking and takes turns with the loop, one
 * process, no thread. */
H_BACKEND_TEST(recv_size, one_mib_takes_few_reads, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct sink k = {0};
    int fd = sink_pair(l, &k);
    enum { SIZE = 1 << 20 };
    uint8_t *big = malloc(SIZE);
    cr_assert_not_null(big);
    memset(big, 'm', SIZE);
    cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    struct rill_loop_stats a, b;
    rill_loop_stats(l, &a);
    size_t sent = 0;
    uint64_t end = h_now_ms() + 10000;
    while (k.bytes < SIZE) {
        while (sent < SIZE) {
            ssize_t w = send(fd, big + sent, SIZE - sent, MSG_NOSIGNAL);
            if (w < 0) {
                cr_assert_eq(errno, EAGAIN, "send: %s", strerror(errno));
                break;
            }
            sent += (size_t)w;
        }
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "got %zu of %d bytes", k.bytes, SIZE);
    }
    rill_loop_stats(l, &b);
    uint64_t reads = b.sys_read - a.sys_read;
    cr_log_info("%s: %" PRIu64 " reads, %" PRIu64 " on_data for 1 MiB", backend, reads, k.calls);
    cr_assert_leq(reads, 16, "%" PRIu64 " reads for 1 MiB (32 before sizing adapted)", reads);
    free(big);
    close(fd);
    rill_loop_destroy(l);
}

/* ---- bytes in order, and the size going back down ------------------------------------------ */

/* The byte at stream offset i: position-dependent, so a buffer delivered twice, skipped or out
 * of order shows (a period of 251 is prime to every buffer size). */
static uint8_t pattern_at(size_t i)
{
    return (uint8_t)(i % 251u);
}

struct checker {
    rill_conn *conn;
    size_t bytes;       /* bytes seen in order */
    size_t bad_at;      /* first offset that did not match, or SIZE_MAX */
    uint64_t calls;     /* on_data */
    size_t max_cap;     /* largest rill_buf_capacity() seen since the last reset */
    bool pause_each;    /* pause the connection after every on_data */
    uint64_t paused_in; /* on_data calls that paused */
};

static void check_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    struct checker *k = ctx;
    const uint8_t *p = data;
    k->conn = c;
    for (size_t i = 0; i < len && k->bad_at == SIZE_MAX; i++)
        if (p[i] != pattern_at(k->bytes + i))
            k->bad_at = k->bytes + i;
    k->bytes += len;
    k->calls++;
    if (rill_buf_capacity(buf) > k->max_cap)
        k->max_cap = rill_buf_capacity(buf);
    if (k->pause_each && rill_read_pause(c) == 0)
        k->paused_in++;
}

static const struct rill_conn_handler check_h = {.on_data = check_data};

/* Like sink_pair, for a checker; the client is non-blocking. */
static int check_pair(rill_loop *l, struct checker *k)
{
    int fd = tcp_pair(l, &check_h, k);
    cr_assert_eq(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    return fd;
}

/* Sends `size` bytes of the pattern from stream offset *sent on, taking turns with the loop
 * (one process, no thread), and resuming the connection whenever a callback paused it. */
static void pump(rill_loop *l, int fd, struct checker *k, size_t *sent, size_t size)
{
    static uint8_t chunk[1 << 16];
    size_t want = *sent + size;
    uint64_t end = h_now_ms() + 10000;
    while (k->bytes < want) {
        while (*sent < want) {
            size_t n = want - *sent < sizeof chunk ? want - *sent : sizeof chunk;
            for (size_t i = 0; i < n; i++)
                chunk[i] = pattern_at(*sent + i);
            ssize_t w = send(fd, chunk, n, MSG_NOSIGNAL);
            if (w < 0) {
                cr_assert_eq(errno, EAGAIN, "send: %s", strerror(errno));
                break;
            }
            *sent += (size_t)w;
        }
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        if (k->pause_each && k->conn)
            rill_read_resume(k->conn);
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu bytes", k->bytes, want);
    }
}

/* A bulk transfer that takes large receives (on io_uring one completion fills many buffers)
 * reaches on_data whole and in order, and leaves no buffer leased once it is over. */
H_BACKEND_TEST(recv_size, bulk_bytes_arrive_whole_and_in_order, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct checker k = {.bad_at = SIZE_MAX};
    int fd = check_pair(l, &k);
    size_t sent = 0;
    pump(l, fd, &k, &sent, 8u << 20);
    cr_assert_eq(k.bad_at, SIZE_MAX, "byte %zu is not the one sent", k.bad_at);
    cr_assert_eq(k.bytes, (size_t)8 << 20);
    struct rill_loop_stats st;
    for (int j = 0; j < 3; j++)
        cr_assert_geq(rill_loop_run_once(l, 0), 0);
    rill_loop_stats(l, &st);
    cr_log_info("%s: %" PRIu64 " reads, %" PRIu64 " on_data for 8 MiB", backend, st.sys_read,
                k.calls);
    cr_assert_eq(st.bufs_in_use, 0, "%" PRIu64 " buffers still leased", st.bufs_in_use);
    close(fd);
    rill_loop_destroy(l);
}

/* With bundles switched off (rill_loop_config.disable = RILL_CAP_RECV_BUNDLE) io_uring takes one
 * ring buffer per completion, as on a kernel before 6.10: the loop says so in its capabilities,
 * the bytes still arrive whole and in order, and the transfer takes one completion per buffer. */
H_BACKEND_TEST(recv_size, bulk_without_bundles_arrives_in_order, .timeout = 30)
{
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.disable = RILL_CAP_RECV_BUNDLE;
    rill_loop *l = h_loop_cfg(backend, &cfg);
    cr_assert_eq(rill_loop_caps(l) & RILL_CAP_RECV_BUNDLE, 0);
    struct checker k = {.bad_at = SIZE_MAX};
    int fd = check_pair(l, &k);
    size_t sent = 0;
    pump(l, fd, &k, &sent, 1u << 20);
    cr_assert_eq(k.bad_at, SIZE_MAX, "byte %zu is not the one sent", k.bad_at);
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_log_info("%s: %" PRIu64 " reads for 1 MiB without bundles", backend, st.sys_read);
    if (strcmp(backend, "uring") == 0) /* 16 KiB a completion: the fallback really ran */
        cr_assert_geq(st.sys_read, 64, "%" PRIu64 " completions", st.sys_read);
    close(fd);
    rill_loop_destroy(l);
}

/* The same, with the connection pausing in every on_data: what the rest of a large receive
 * brings is held and delivered, in order, after the resume, never while paused. */
H_BACKEND_TEST(recv_size, bulk_bytes_held_in_order_while_paused, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct checker k = {.bad_at = SIZE_MAX, .pause_each = true};
    int fd = check_pair(l, &k);
    size_t sent = 0;
    struct rill_loop_stats a, b;
    rill_loop_stats(l, &a);
    pump(l, fd, &k, &sent, 2u << 20);
    rill_loop_stats(l, &b);
    /* On io_uring a receive brings up to 16 buffers, the rest held after the first one's pause;
     * every pause also ends the armed receive with a cancelled completion, counted as a read. */
    cr_log_info("%s: %" PRIu64 " reads, %" PRIu64 " on_data for 2 MiB, pausing in each",
                backend, b.sys_read - a.sys_read, k.calls);
    cr_assert_eq(k.bad_at, SIZE_MAX, "byte %zu is not the one sent", k.bad_at);
    cr_assert_eq(k.bytes, (size_t)2 << 20);
    cr_assert_eq(k.paused_in, k.calls, "on_data ran while the connection was paused");
    close(fd);
    rill_loop_destroy(l);
}

/* After a bulk transfer grew the receives, small messages one at a time go back to small
 * buffers: each is read once, into a buffer of the configured size (epoll halves its offer
 * after each read under a quarter of it, 256 KiB down to 16 KiB in four reads; io_uring's
 * bundles take one 16 KiB buffer for a small message from the start). */
H_BACKEND_TEST(recv_size, small_messages_after_bulk_take_small_buffers, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct checker k = {.bad_at = SIZE_MAX};
    int fd = check_pair(l, &k);
    size_t sent = 0;
    pump(l, fd, &k, &sent, 1u << 20);
    size_t bulk_cap = k.max_cap;
    enum { WARM = 8, N = 32, SMALL = 200 };
    struct rill_loop_stats a, b;
    for (int i = 0; i < WARM + N; i++) {
        if (i == WARM) {
            rill_loop_stats(l, &a);
            k.calls = 0;
            k.max_cap = 0;
        }
        pump(l, fd, &k, &sent, SMALL);
        for (int j = 0; j < 3; j++)
            cr_assert_geq(rill_loop_run_once(l, 0), 0);
    }
    rill_loop_stats(l, &b);
    uint64_t reads = b.sys_read - a.sys_read;
    cr_log_info("%s: largest buffer %zu during the bulk, %zu after; %" PRIu64
                " reads for %d small messages", backend, bulk_cap, k.max_cap, reads, N);
    cr_assert_eq(k.bad_at, SIZE_MAX, "byte %zu is not the one sent", k.bad_at);
    cr_assert_leq(k.max_cap, 16u << 10, "small messages still read into %zu-byte buffers",
                  k.max_cap);
    cr_assert_eq(reads, N, "%" PRIu64 " reads for %d messages", reads, N);
    cr_assert_eq(k.calls, N);
    cr_assert_eq(b.bufs_in_use, 0, "%" PRIu64 " buffers still leased", b.bufs_in_use);
    close(fd);
    rill_loop_destroy(l);
}
