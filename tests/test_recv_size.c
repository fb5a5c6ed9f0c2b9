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

/* A listener whose connections count into *k, and a blocking client connected to it; returns
 * the client's descriptor once the server has its connection. */
static int sink_pair(rill_loop *l, struct sink *k)
{
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &sink_h, .ctx = k};
    int r = rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls);
    cr_assert_eq(r, 0, "listen: %s", rill_strerror(r));
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rill_listener_port(ls))};
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
