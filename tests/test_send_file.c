/* File sends (rill_send_file): byte-exact files of 1 MiB and 16 KiB, in order with memory
 * sends, a range in the middle of a file, a range past the end (-ENODATA), the peer closing
 * mid-file, rill_close mid-file, a Unix stream, the write queue's accounting, refused
 * arguments and injected faults. A rill server and a blocking client share the test's thread:
 * the loop runs while the client reads, every wait bounded. */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/un.h>

#include "harness.h"
#include "sys.h"

/* A temporary file of `size` pattern bytes (seed), unlinked: the descriptor keeps it. */
static int tmp_file(size_t size, uint64_t seed)
{
    char path[] = "/tmp/rill-sendfile-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    static uint8_t chunk[64 << 10];
    for (size_t off = 0; off < size;) {
        size_t n = size - off < sizeof chunk ? size - off : sizeof chunk;
        h_fill(chunk, n, seed, off);
        cr_assert_eq(write(fd, chunk, n), (ssize_t)n);
        off += n;
    }
    return fd;
}

/* The server side: the accepted connection, its send callbacks in order, its close. */
struct srv {
    rill_conn *c;
    int st[8];
    unsigned nst;
    int status;
    bool opened, closed, cb_after_close;
};

static void srv_open(rill_conn *c, void *ctx)
{
    struct srv *s = ctx;
    s->c = c;
    s->opened = true;
}

static void srv_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct srv *s = ctx;
    s->status = status;
    s->closed = true;
}

static void srv_sent(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct srv *s = ctx;
    if (s->closed)
        s->cb_after_close = true;
    if (s->nst < 8)
        s->st[s->nst++] = status;
}

static const struct rill_conn_handler srv_h = {.on_open = srv_open, .on_close = srv_close};

/* A listening loop on `uri`, a client connected to it, the server's side accepted. */
static rill_loop *setup(const char *backend, const char *uri, struct srv *s, int *cfd)
{
    rill_loop *l = h_loop(backend);
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &srv_h, .ctx = s};
    int r = rill_listen(l, uri, &lc, &ls);
    cr_assert_eq(r, 0, "listen %s: %s", uri, rill_strerror(r));
    if (strncmp(uri, "unix:", 5) == 0) {
        *cfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        strncpy(sun.sun_path, uri + 5, sizeof sun.sun_path - 1);
        cr_assert_eq(connect(*cfd, (struct sockaddr *)&sun, sizeof sun), 0);
    } else {
        *cfd = h_client(AF_INET, rill_listener_port(ls));
    }
    h_run_until(l, &s->opened, 5000, "accept");
    return l;
}

/* Runs the loop and reads from fd until `want` bytes or the end of stream; returns the count. */
static size_t read_n(rill_loop *l, int fd, uint8_t *buf, size_t want, unsigned ms)
{
    size_t n = 0;
    uint64_t end = h_now_ms() + ms;
    while (n < want) {
        cr_assert_geq(rill_loop_run_once(l, 0), 0);
        if (h_readable(fd, 1)) {
            ssize_t r = read(fd, buf + n, want - n);
            if (r <= 0)
                break;
            n += (size_t)r;
        }
        cr_assert_lt(h_now_ms(), end, "read %zu of %zu bytes", n, want);
    }
    return n;
}

static void check_pattern(const uint8_t *p, size_t n, uint64_t seed, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != h_pattern(seed, off + i))
            cr_assert_fail("byte %zu (file offset %llu) differs", i,
                           (unsigned long long)(off + i));
}

static void whole_file(const char *backend, const char *uri, size_t size)
{
    struct srv s = {0};
    int cfd;
    rill_loop *l = setup(backend, uri, &s, &cfd);
    int fd = tmp_file(size, 7);
    cr_assert_eq(rill_send_file(s.c, fd, 0, size, srv_sent, &s), 0);
    uint8_t *in = malloc(size + 1);
    cr_assert_eq(read_n(l, cfd, in, size, 20000), size);
    check_pattern(in, size, 7, 0);
    h_run_for(l, 10);
    cr_assert_eq(s.nst, 1);
    cr_expect_eq(s.st[0], (int)size);
    cr_expect_eq(rill_conn_write_queued(s.c), 0);
    free(in);
    close(cfd);
    h_run_until(l, &s.closed, 5000, "on_close");
    close(fd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(send_file, one_mib_exact, .timeout = 30)
{
    whole_file(backend, "tcp://127.0.0.1:0", 1u << 20);
}

H_BACKEND_TEST(send_file, sixteen_kib_exact, .timeout = 30)
{
    whole_file(backend, "tcp://127.0.0.1:0", 16u << 10);
}

H_BACKEND_TEST(send_file, unix_stream_exact, .timeout = 30)
{
    char uri[64];
    snprintf(uri, sizeof uri, "unix:/tmp/rill-sf-%d-%s.sock", (int)getpid(), backend);
    unlink(uri + 5);
    whole_file(backend, uri, 300000);
    unlink(uri + 5);
}

/* Memory sends and file sends leave in the order they were queued, each callback in turn. */
H_BACKEND_TEST(send_file, interleaved_in_order, .timeout = 30)
{
    struct srv s = {0};
    int cfd;
    rill_loop *l = setup(backend, "tcp://127.0.0.1:0", &s, &cfd);
    size_t fsize = 200000;
    int fd = tmp_file(fsize, 9);
    static const char a[] = "HEAD", b[] = "MIDDLE", z[] = "TAIL";
    struct iovec va = {(void *)a, 4}, vb = {(void *)b, 6}, vz = {(void *)z, 4};
    cr_assert_eq(rill_send(s.c, &va, 1, srv_sent, &s), 0);
    cr_assert_eq(rill_send_file(s.c, fd, 0, 100000, srv_sent, &s), 0);
    cr_assert_eq(rill_send(s.c, &vb, 1, srv_sent, &s), 0);
    cr_assert_eq(rill_send_file(s.c, fd, 100000, 100000, srv_sent, &s), 0);
    cr_assert_eq(rill_send_file(s.c, fd, 5, 10, srv_sent, &s), 0);
    cr_assert_eq(rill_send(s.c, &vz, 1, srv_sent, &s), 0);
    size_t total = 4 + 100000 + 6 + 100000 + 10 + 4;
    uint8_t *in = malloc(total);
    cr_assert_eq(read_n(l, cfd, in, total, 20000), total);
    cr_expect_eq(memcmp(in, "HEAD", 4), 0);
    check_pattern(in + 4, 100000, 9, 0);
    cr_expect_eq(memcmp(in + 100004, "MIDDLE", 6), 0);
    check_pattern(in + 100010, 100000, 9, 100000);
    check_pattern(in + 200010, 10, 9, 5);
    cr_expect_eq(memcmp(in + 200020, "TAIL", 4), 0);
    h_run_for(l, 10);
    cr_assert_eq(s.nst, 6);
    int want[] = {4, 100000, 6, 100000, 10, 4};
    for (unsigned i = 0; i < 6; i++)
        cr_expect_eq(s.st[i], want[i], "callback %u: %d", i, s.st[i]);
    free(in);
    close(cfd);
    close(fd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(send_file, range_in_the_middle, .timeout = 30)
{
    struct srv s = {0};
    int cfd;
    rill_loop *l = setup(backend, "tcp://127.0.0.1:0", &s, &cfd);
    int fd = tmp_file(64u << 10, 11);
    cr_assert_eq(lseek(fd, 17, SEEK_SET), 17);
    cr_assert_eq(rill_send_file(s.c, fd, 12345, 5000, srv_sent, &s), 0);
    uint8_t in[5000];
    cr_assert_eq(read_n(l, cfd, in, sizeof in, 10000), sizeof in);
    check_pattern(in, sizeof in, 11, 12345);
    h_run_for(l, 10);
    cr_expect_eq(s.nst, 1);
    cr_expect_eq(s.st[0], 5000);
    cr_expect_eq(lseek(fd, 0, SEEK_CUR), 17, "the file's own offset must not move");
    close(cfd);
    close(fd);
    rill_loop_destroy(l);
}

/* A file shorter than the range: the bytes it has go out, then the connection fails with
 * -ENODATA: the entry's callback, the sends behind it, and on_close, in that order. */
H_BACKEND_TEST(send_file, len_past_eof_is_enodata, .timeout = 30)
{
    struct srv s = {0};
    int cfd;
    rill_loop *l = setup(backend, "tcp://127.0.0.1:0", &s, &cfd);
    int fd = tmp_file(10000, 13);
    struct iovec v = {(void *)"after", 5};
    cr_assert_eq(rill_send_file(s.c, fd, 4000, 20000, srv_sent, &s), 0);
    cr_assert_eq(rill_send(s.c, &v, 1, srv_sent, &s), 0);
    uint8_t in[20000];
    size_t n = read_n(l, cfd, in, sizeof in, 10000);
    cr_expect_eq(n, 6000, "the file's remaining 6000 bytes, then the end: got %zu", n);
    check_pattern(in, n < 6000 ? n : 6000, 13, 4000);
    h_run_until(l, &s.closed, 5000, "on_close");
    cr_expect_eq(s.status, -ENODATA);
    cr_assert_eq(s.nst, 2);
    cr_expect_eq(s.st[0], -ENODATA);
    cr_expect_eq(s.st[1], -ENODATA);
    cr_expect(!s.cb_after_close, "on_close is the last callback");
    close(cfd);
    close(fd);
    rill_loop_destroy(l);
}

/* The file changes while queued: bytes are read when sent, so a file cut short after the call
 * fails the send (-ENODATA) and one that grew sends only the range asked for. */
H_BACKEND_TEST(send_file, file_changes_while_queued, .timeout = 30)
{
    struct srv s = {0};
    int cfd;
    rill_loop *l = setup(backend, "tcp://127.0.0.1:0", &s, &cfd);
    int fd = tmp_file(8000, 29);
    cr_assert_eq(rill_send_file(s.c, fd, 0, 6000, srv_sent, &s), 0);
    uint8_t more[4000];
    h_fill(more, sizeof more, 29, 8000);
    cr_assert_eq(pwrite(fd, more, sizeof more, 8000), (ssize_t)sizeof more); /* grows */
    uint8_t in[6000];
    cr_assert_eq(read_n(l, cfd, in, sizeof in, 10000), sizeof in);
    check_pattern(in, sizeof in, 29, 0);
    h_run_for(l, 10);
    cr_assert_eq(s.nst, 1);
    cr_expect_eq(s.st[0], 6000);
    cr_assert_eq(rill_send_file(s.c, fd, 1000, 5000, srv_sent, &s), 0);
    cr_assert_eq(ftruncate(fd, 3000), 0); /* cut before the loop sends it */
    size_t n = read_n(l, cfd, in, sizeof in, 10000);
    cr_expect_eq(n, 2000, "what the file still had from offset 1000, then the end: %zu", n);
    h_run_until(l, &s.closed, 5000, "on_close");
    cr_expect_eq(s.st[1], -ENODATA);
    cr_expect_eq(s.status, -ENODATA);
    close(cfd);
    close(fd);
    rill_loop_destroy(l);
}

/* A file larger than the socket buffers can take, so that the send waits for the peer. */
static rill_loop *setup_stuck(const char *backend, struct srv *s, int *cfd, int *fd, size_t size)
{
    rill_loop *l = setup(backend, "tcp://127.0.0.1:0", s, cfd);
    *fd = tmp_file(size, 17);
    cr_assert_eq(rill_send_file(s->c, *fd, 0, size, srv_sent, s), 0);
    uint8_t in[4096];
    cr_assert_eq(read_n(l, *cfd, in, sizeof in, 10000), sizeof in);
    check_pattern(in, sizeof in, 17, 0);
    h_run_for(l, 50);
    cr_assert_gt(rill_conn_write_queued(s->c), 0, "the file must still be queued");
    cr_assert_eq(s->nst, 0);
    return l;
}

/* The peer goes away mid-file: the callback gets an error (never SIGPIPE), on_close last. */
H_BACKEND_TEST(send_file, peer_closes_mid_file, .timeout = 30)
{
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would end the test */
    struct srv s = {0};
    int cfd, fd;
    rill_loop *l = setup_stuck(backend, &s, &cfd, &fd, 32u << 20);
    close(cfd); /* unread data: a reset */
    h_run_until(l, &s.closed, 10000, "on_close");
    cr_assert_eq(s.nst, 1);
    cr_expect(s.st[0] == -ECONNRESET || s.st[0] == -EPIPE, "status %d", s.st[0]);
    cr_expect_lt(s.status, 0);
    cr_expect(!s.cb_after_close);
    close(fd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(send_file, close_mid_file, .timeout = 30)
{
    struct srv s = {0};
    int cfd, fd;
    rill_loop *l = setup_stuck(backend, &s, &cfd, &fd, 32u << 20);
    cr_assert_eq(rill_close(s.c), 0);
    h_run_until(l, &s.closed, 10000, "on_close");
    cr_assert_eq(s.nst, 1);
    cr_expect_eq(s.st[0], -ECANCELED);
    cr_expect_eq(s.status, 0);
    cr_expect(!s.cb_after_close);
    close(cfd);
    close(fd);
    rill_loop_destroy(l);
}

/* File bytes count in the queue's length and its high-water mark, not in the memory held. */
H_BACKEND_TEST(send_file, queue_accounting, .timeout = 30)
{
    struct srv s = {0};
    int cfd;
    rill_loop *l = setup(backend, "tcp://127.0.0.1:0", &s, &cfd);
    int fd = tmp_file(4u << 20, 19);
    struct rill_loop_stats st0, st1;
    rill_loop_stats(l, &st0);
    cr_assert_eq(rill_send_file(s.c, fd, 0, 4u << 20, srv_sent, &s), 0);
    rill_loop_stats(l, &st1);
    cr_expect_eq(rill_conn_write_queued(s.c), 4u << 20);
    cr_expect_eq(st1.mem_held, st0.mem_held, "file bytes are not memory held");
    /* Past wq_limit (16 MiB): a memory send is refused, a file still queued below it. */
    cr_assert_eq(rill_send_file(s.c, fd, 0, 4u << 20, srv_sent, &s), 0);
    cr_assert_eq(rill_send_file(s.c, fd, 0, 4u << 20, srv_sent, &s), 0);
    cr_assert_eq(rill_send_file(s.c, fd, 0, 4u << 20, srv_sent, &s), 0);
    cr_assert_eq(rill_send_file(s.c, fd, 0, 4u << 20, srv_sent, &s), 0); /* 20 MiB now */
    struct iovec v = {(void *)"x", 1};
    cr_expect_eq(rill_send(s.c, &v, 1, srv_sent, &s), -ENOBUFS);
    cr_expect_eq(rill_send_file(s.c, fd, 0, 1, srv_sent, &s), -ENOBUFS);
    cr_assert_eq(rill_close(s.c), 0);
    h_run_until(l, &s.closed, 5000, "on_close");
    cr_expect_eq(s.nst, 5);
    rill_loop_stats(l, &st1);
    cr_expect_eq(st1.mem_held, st0.mem_held);
    close(cfd);
    close(fd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(send_file, refused_arguments, .timeout = 30)
{
    struct srv s = {0};
    int cfd;
    rill_loop *l = setup(backend, "tcp://127.0.0.1:0", &s, &cfd);
    int fd = tmp_file(100, 1);
    cr_expect_eq(rill_send_file(NULL, fd, 0, 1, NULL, NULL), -EINVAL);
    cr_expect_eq(rill_send_file(s.c, -1, 0, 1, NULL, NULL), -EINVAL);
    cr_expect_eq(rill_send_file(s.c, fd, 0, 0, NULL, NULL), -EINVAL);
    cr_expect_eq(rill_send_file(s.c, fd, 0, (size_t)INT32_MAX + 1, NULL, NULL), -EINVAL);
    cr_expect_eq(rill_send_file(s.c, fd, UINT64_MAX - 1, 10, NULL, NULL), -EINVAL);
    cr_assert_eq(rill_shutdown(s.c), 0);
    cr_expect_eq(rill_send_file(s.c, fd, 0, 1, NULL, NULL), -ENOTCONN);
    close(cfd);
    h_run_until(l, &s.closed, 5000, "on_close");
    close(fd);
    rill_loop_destroy(l);
}

/* Injected faults on sendfile: EAGAIN, EINTR and short counts, often; the file still arrives
 * byte-exact. */
static _Atomic unsigned faults;
static int sf_hook(enum rill__sys_call call, int fd, size_t *len, void *arg)
{
    (void)fd;
    (void)arg;
    if (call != RILL__SYS_SENDFILE)
        return 0;
    unsigned n = faults++;
    if (n % 4 == 1)
        return -EAGAIN;
    if (n % 4 == 2)
        return -EINTR;
    if (*len > 4000)
        *len = 1000 + n % 3000;
    return 0;
}

H_BACKEND_TEST(send_file, injected_faults, .timeout = 30)
{
    struct srv s = {0};
    int cfd;
    rill_loop *l = setup(backend, "tcp://127.0.0.1:0", &s, &cfd);
    size_t size = 300000;
    int fd = tmp_file(size, 23);
    rill__sys_set_hook(sf_hook, NULL);
    cr_assert_eq(rill_send_file(s.c, fd, 0, size, srv_sent, &s), 0);
    uint8_t *in = malloc(size);
    size_t n = read_n(l, cfd, in, size, 20000);
    rill__sys_set_hook(NULL, NULL);
    cr_assert_eq(n, size);
    check_pattern(in, size, 23, 0);
    h_run_for(l, 10);
    cr_expect_eq(s.nst, 1);
    cr_expect_eq(s.st[0], (int)size);
    cr_expect_gt(faults, 8u);
    free(in);
    close(cfd);
    close(fd);
    rill_loop_destroy(l);
}
