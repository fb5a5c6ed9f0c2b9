/* Unix domain sockets through the connection API, on both backends: stream echo on paths and
 * abstract names, seqpacket with message boundaries kept up to the socket's limit, stale socket
 * files, cleanup and file mode, descriptor passing and peer credentials between processes. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "harness.h"

/* ---- an echo server: each on_data goes back as one send (one message on seqpacket) ---------- */

struct srv {
    rill_listener *ls;
    int closed_status;
    bool closed;
    unsigned msgs;
    pid_t peer_pid;
    uid_t peer_uid;
    int got_fd; /* a descriptor received from the peer, or -1 */
    rill_conn *conn;
};

static void srv_on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    struct srv *s = ctx;
    s->msgs++;
    struct rill_bufslice sl = {buf, (uint32_t)((const char *)data - (const char *)rill_buf_data(buf)),
                               (uint32_t)len};
    int r = rill_send_bufs(c, &sl, 1, NULL, NULL);
    cr_assert_eq(r, 0, "echo: %s", rill_strerror(r));
}

static void srv_on_open(rill_conn *c, void *ctx)
{
    struct srv *s = ctx;
    s->conn = c;
    pid_t pid;
    uid_t uid;
    if (rill_conn_peer_cred(c, &pid, &uid, NULL) == 0) {
        s->peer_pid = pid;
        s->peer_uid = uid;
    }
}

static void srv_on_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct srv *s = ctx;
    s->closed = true;
    s->closed_status = status;
}

static void srv_on_fds(rill_conn *c, const int *fds, unsigned n, void *ctx)
{
    (void)c;
    struct srv *s = ctx;
    cr_assert_eq(n, 1u);
    s->got_fd = fds[0];
}

static const struct rill_conn_handler srv_h = {.on_open = srv_on_open, .on_data = srv_on_data,
                                               .on_close = srv_on_close};
static const struct rill_conn_handler srv_fd_h = {.on_open = srv_on_open, .on_data = srv_on_data,
                                                  .on_close = srv_on_close, .on_fds = srv_on_fds};

static void srv_listen(rill_loop *l, const char *uri, struct srv *s, uint32_t msg_max,
                       const struct rill_conn_handler *h)
{
    s->got_fd = -1;
    struct rill_listen_config cfg = {.handler = h, .ctx = s, .conn.msg_max = msg_max};
    int r = rill_listen(l, uri, &cfg, &s->ls);
    cr_assert_eq(r, 0, "listen %s: %s", uri, rill_strerror(r));
}

/* ---- a client that sends messages one at a time and expects each back whole ---------------- */

struct cli {
    size_t *sizes;
    unsigned n, next, back;
    size_t got;      /* bytes of the current echo (stream: may come in pieces) */
    bool seqpacket, done, closed;
    int status;
    uint8_t *buf;
};

static void cli_send_next(rill_conn *c, struct cli *k)
{
    size_t n = k->sizes[k->next];
    h_fill(k->buf, n, k->next, 0);
    struct iovec iov = {k->buf, n};
    cr_assert_eq(rill_send(c, &iov, 1, NULL, NULL), 0);
}

static void cli_on_open(rill_conn *c, void *ctx)
{
    cli_send_next(c, ctx);
}

static void cli_on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct cli *k = ctx;
    size_t want = k->sizes[k->next];
    if (k->seqpacket)
        cr_assert_eq(len, want, "message %u: one on_data per message, %zu bytes not %zu",
                     k->next, want, len);
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(p[i], h_pattern(k->next, k->got + i), "byte %zu of message %u",
                     k->got + i, k->next);
    k->got += len;
    cr_assert_leq(k->got, want);
    if (k->got < want)
        return;
    k->got = 0;
    if (++k->next == k->n) {
        k->done = true;
        rill_close(c);
        return;
    }
    cli_send_next(c, k);
}

static void cli_on_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct cli *k = ctx;
    k->closed = true;
    k->status = status;
}

static const struct rill_conn_handler cli_h = {.on_open = cli_on_open, .on_data = cli_on_data,
                                               .on_close = cli_on_close};

static void run_client(rill_loop *l, const char *uri, size_t *sizes, unsigned n, bool seqpacket,
                       uint32_t msg_max)
{
    struct cli k = {.sizes = sizes, .n = n, .seqpacket = seqpacket};
    size_t max = 0;
    for (unsigned i = 0; i < n; i++)
        max = sizes[i] > max ? sizes[i] : max;
    k.buf = malloc(max);
    struct rill_connect_config cfg = {.handler = &cli_h, .ctx = &k, .conn.msg_max = msg_max};
    rill_conn *c;
    int r = rill_connect(l, uri, &cfg, &c);
    cr_assert_eq(r, 0, "connect %s: %s", uri, rill_strerror(r));
    h_run_until(l, &k.closed, 20000, "client done");
    cr_assert(k.done, "all %u messages echoed (closed with %s after %u)", n,
              rill_strerror(k.status), k.next);
    free(k.buf);
}

static void tmp_path(char *buf, size_t cap, const char *what, const char *backend)
{
    snprintf(buf, cap, "/tmp/rill-%s-%d-%s.sock", what, getpid(), backend);
    unlink(buf);
}

H_BACKEND_TEST(unixsock, stream_echo_on_a_path_and_cleanup, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    char path[96], uri[128];
    tmp_path(path, sizeof path, "stream", backend);
    snprintf(uri, sizeof uri, "unix:%s", path);
    struct srv s = {0};
    srv_listen(l, uri, &s, 0, &srv_h);
    size_t sizes[] = {1, 100, 16384, 100000, 1 << 20};
    run_client(l, uri, sizes, 5, false, 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(rill_listener_close(s.ls), 0);
    cr_assert_neq(stat(path, &st), 0, "the listener removes the socket file it created");
    rill_loop_destroy(l);
}

H_BACKEND_TEST(unixsock, stream_echo_on_an_abstract_name, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    char uri[128];
    snprintf(uri, sizeof uri, "unix:@rill-stream-%d-%s", getpid(), backend);
    struct srv s = {0};
    srv_listen(l, uri, &s, 0, &srv_h);
    size_t sizes[] = {1, 5000, 70000};
    run_client(l, uri, sizes, 3, false, 0);
    rill_listener_close(s.ls);
    rill_loop_destroy(l);
}

/* The largest seqpacket message the kernel takes from this process: a little under the send
 * buffer. Found by asking a socketpair, so the test follows the machine's settings. */
static size_t seqpacket_limit(void)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
    size_t lo = 1, hi = 4u << 20;
    char *p = calloc(1, hi);
    char *sink = malloc(hi);
    while (lo + 1 < hi) {
        size_t mid = (lo + hi) / 2;
        if (send(sv[0], p, mid, MSG_DONTWAIT) == (ssize_t)mid) {
            lo = mid;
            cr_assert_eq(recv(sv[1], sink, hi, 0), (ssize_t)mid);
        } else {
            hi = mid;
        }
    }
    free(p);
    free(sink);
    close(sv[0]);
    close(sv[1]);
    return lo;
}

H_BACKEND_TEST(unixsock, seqpacket_keeps_boundaries_up_to_the_limit, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    char path[96], uri[128];
    tmp_path(path, sizeof path, "seq", backend);
    snprintf(uri, sizeof uri, "unix+seqpacket:%s", path);
    size_t limit = seqpacket_limit();
    cr_assert_gt(limit, 65536u);
    uint32_t msg_max = 1u << 20;
    struct srv s = {0};
    srv_listen(l, uri, &s, msg_max, &srv_h);
    /* Every size twice in a row: two messages of the same size must not merge. */
    size_t sizes[] = {1, 1, 100, 100, 4096, 4096, 16384, 16385, 65536, 65536, limit, limit, 7};
    run_client(l, uri, sizes, sizeof sizes / sizeof sizes[0], true, msg_max);
    cr_assert_eq(s.msgs, sizeof sizes / sizeof sizes[0], "one on_data per message (%u)", s.msgs);
    rill_listener_close(s.ls);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(unixsock, seqpacket_message_over_msg_max_closes_with_emsgsize, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    char path[96], uri[128];
    tmp_path(path, sizeof path, "seqmax", backend);
    snprintf(uri, sizeof uri, "unix+seqpacket:%s", path);
    struct srv s = {0};
    srv_listen(l, uri, &s, 1024, &srv_h);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&un, sizeof un), 0);
    static char big[4096];
    cr_assert_eq(send(fd, big, sizeof big, 0), (ssize_t)sizeof big);
    h_run_until(l, &s.closed, 3000, "server connection closes");
    cr_assert_eq(s.closed_status, -EMSGSIZE, "never a silently cut message: %s",
                 rill_strerror(s.closed_status));
    close(fd);
    rill_listener_close(s.ls);
    rill_loop_destroy(l);
}

/* ---- socket files: stale, live, not a socket, mode ------------------------------------------ */

H_BACKEND_TEST(unixsock, stale_socket_file_is_replaced_only_when_asked, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    char path[96], uri[128];
    tmp_path(path, sizeof path, "stale", backend);
    snprintf(uri, sizeof uri, "unix:%s", path);
    /* A crashed server's leftover: bound, never unlinked, closed. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&un, sizeof un), 0);
    close(fd);

    struct srv s = {0};
    struct rill_listen_config cfg = {.handler = &srv_h, .ctx = &s};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, uri, &cfg, &ls), -EADDRINUSE, "not removed without the flag");
    cfg.flags = RILL_LISTEN_F_UNLINK_STALE;
    cfg.mode = 0600;
    cr_assert_eq(rill_listen(l, uri, &cfg, &ls), 0, "a stale file is replaced with the flag");
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600u, "the mode option applies");

    /* A live listener is never taken over, flag or not. */
    rill_listener *ls2;
    cr_assert_eq(rill_listen(l, uri, &cfg, &ls2), -EADDRINUSE);
    cr_assert_eq(stat(path, &st), 0, "and its file stays");
    rill_listener_close(ls);
    cr_assert_neq(stat(path, &st), 0);

    /* A regular file is the user's: never removed. */
    int f = open(path, O_CREAT | O_WRONLY, 0600);
    close(f);
    cr_assert_eq(rill_listen(l, uri, &cfg, &ls2), -EADDRINUSE);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISREG(st.st_mode));
    unlink(path);
    rill_loop_destroy(l);
}

/* ---- descriptors and credentials between processes ----------------------------------------- */

/* The child: connects, sends "fd" with a pipe's write end, then waits for the server's echo and
 * for a descriptor back, writes "back" into that one, and exits. */
static int child_main(const char *path, int pipe_w)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path, path);
    if (connect(fd, (struct sockaddr *)&un, sizeof un) < 0)
        return 2;
    if (h_send_fd(fd, "fd", 2, pipe_w) != 2)
        return 3;
    close(pipe_w);
    /* The echo of "fd", then "xy" with a descriptor attached. */
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr a;
    } ctl;
    struct iovec iov;
    struct msghdr m;
    struct cmsghdr *cm;
    char in[8];
    size_t got = 0;
    int passed = -1;
    while (got < 4) {
        iov = (struct iovec){in + got, sizeof in - got};
        m = (struct msghdr){.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                            .msg_controllen = sizeof ctl.b};
        ssize_t r = recvmsg(fd, &m, 0);
        if (r <= 0)
            return 4;
        for (cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm))
            if (cm->cmsg_type == SCM_RIGHTS)
                memcpy(&passed, CMSG_DATA(cm), sizeof(int));
        got += (size_t)r;
    }
    if (memcmp(in, "fdxy", 4) != 0 || passed < 0)
        return 5;
    if (write(passed, "back", 4) != 4)
        return 6;
    close(fd);
    return 0;
}

H_BACKEND_TEST(unixsock, descriptors_and_credentials_between_processes, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    char path[96], uri[128];
    tmp_path(path, sizeof path, "fds", backend);
    snprintf(uri, sizeof uri, "unix:%s", path);
    struct srv s = {0};
    srv_listen(l, uri, &s, 0, &srv_fd_h);
    int from_child[2], to_test[2];
    cr_assert_eq(pipe(from_child), 0);
    cr_assert_eq(pipe(to_test), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(from_child[0]);
        close(to_test[0]);
        close(to_test[1]);
        _exit(child_main(path, from_child[1]));
    }
    close(from_child[1]);
    uint64_t end = h_now_ms() + 5000;
    while ((s.got_fd < 0 || s.msgs < 1 || !s.conn) && h_now_ms() < end)
        rill_loop_run_once(l, 10);
    cr_assert_geq(s.got_fd, 0, "the child's descriptor arrived through on_fds");
    cr_assert_eq(s.peer_pid, pid, "SO_PEERCRED names the child");
    cr_assert_eq(s.peer_uid, getuid());
    /* The descriptor works: what we write into it comes out of the child's pipe. */
    cr_assert_eq(write(s.got_fd, "via", 3), 3);
    char buf[8] = {0};
    cr_assert_eq(read(from_child[0], buf, 3), 3);
    cr_assert_str_eq(buf, "via");
    close(s.got_fd);
    /* And the other way: our pipe's write end goes to the child, which writes "back" into it.
     * The engine sends a duplicate, so closing ours right after the call is fine. */
    struct iovec iov = {"xy", 2};
    struct rill_send_opts o = {.fds = &to_test[1], .nfds = 1};
    cr_assert_eq(rill_send_ex(s.conn, &iov, 1, &o, NULL, NULL), 0);
    close(to_test[1]);
    int status = -1;
    end = h_now_ms() + 5000;
    while (h_now_ms() < end && waitpid(pid, &status, WNOHANG) == 0)
        rill_loop_run_once(l, 10);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    memset(buf, 0, sizeof buf);
    cr_assert_eq(read(to_test[0], buf, 4), 4);
    cr_assert_str_eq(buf, "back");
    close(to_test[0]);
    close(from_child[0]);
    /* Descriptors are refused on a socket that cannot carry them. */
    rill_listener_close(s.ls);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(unixsock, peer_cred_and_descriptors_refused_on_tcp, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct srv s = {0};
    srv_listen(l, "tcp://127.0.0.1:0", &s, 0, &srv_h);
    int fd = h_client(AF_INET, rill_listener_port(s.ls));
    uint64_t end = h_now_ms() + 3000;
    while (!s.conn && h_now_ms() < end)
        rill_loop_run_once(l, 10);
    cr_assert_not_null(s.conn);
    pid_t pid;
    cr_assert_eq(rill_conn_peer_cred(s.conn, &pid, NULL, NULL), -EOPNOTSUPP);
    struct iovec iov = {"x", 1};
    struct rill_send_opts o = {.fds = &fd, .nfds = 1};
    cr_assert_eq(rill_send_ex(s.conn, &iov, 1, &o, NULL, NULL), -EINVAL);
    close(fd);
    rill_listener_close(s.ls);
    rill_loop_destroy(l);
}
