/* The benchmark peers of bench/peers answer correctly: each echo peer is started on a free port,
 * echoes byte-exact at several sizes (up to 1 MiB) over TCP and over its Unix socket, serves many
 * clients at once, and is killed. nginx (bench/peers/nginx) serves its fixed body, pipelined too.
 * A peer whose library was not found at configure time was not built and its test skips; so do
 * peer-uring where io_uring cannot run and nginx where it is not installed.
 *
 * The peers' paths come from tests/CMakeLists.txt (PEER_<NAME>_BIN, NGINX_RUN_SH). */
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "harness.h"

/* The peers are programs of their own, not rill loops: no test here is per backend. */
static const void *const unused_backends __attribute__((unused)) = h_backends;

#define START_MS 20000 /* nginx may need a second port: its own bind retries take 2.5 s */
#define IO_MS 20000

struct proc {
    pid_t pid;
    int out;            /* the child's stdout */
    int port;
    char unix_path[108];
    char text[512];     /* what it printed before it was ready */
};

/* Starts argv[0] with stdout on a pipe and waits for its "listening tcp://…:PORT" line. Returns
 * false (and the child's exit status in *status) when it exits first. The child dies with the
 * test worker, whatever happens to the test. */
static bool proc_start(struct proc *p, char *const argv[], int *status)
{
    int fds[2];
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    memset(p, 0, sizeof *p);
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    p->out = fds[0];
    size_t len = 0;
    uint64_t end = h_now_ms() + START_MS;
    while (h_now_ms() < end && len < sizeof p->text - 1) {
        struct pollfd pf = {.fd = p->out, .events = POLLIN};
        if (poll(&pf, 1, 50) == 1) {
            ssize_t n = read(p->out, p->text + len, sizeof p->text - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            p->text[len] = '\0';
            const char *l = strstr(p->text, "listening tcp://");
            if (l && strchr(l, '\n')) {
                const char *colon = strchr(l + strlen("listening tcp://"), ':');
                cr_assert(colon, "no port in: %s", p->text);
                p->port = atoi(colon + 1);
                const char *u = strstr(p->text, "listening unix:");
                if (u && strchr(u, '\n'))
                    sscanf(u, "listening unix:%107s", p->unix_path);
                return true;
            }
        }
    }
    /* It exited or never said it was ready. */
    kill(p->pid, SIGKILL);
    int st = 0;
    waitpid(p->pid, &st, 0);
    *status = st;
    close(p->out);
    return false;
}

static void proc_stop(struct proc *p)
{
    kill(p->pid, SIGTERM);
    uint64_t end = h_now_ms() + 5000;
    int st;
    while (waitpid(p->pid, &st, WNOHANG) == 0) {
        if (h_now_ms() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            break;
        }
        usleep(10000);
    }
    close(p->out);
}

static int unix_client(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    snprintf(u.sun_path, sizeof u.sun_path, "%s", path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&u, sizeof u), 0, "connect %s: %s", path,
                 strerror(errno));
    return fd;
}

/* Sends `size` pattern bytes and reads them back, both at once (poll), checking every byte.
 * With read_delay_ms, reading starts only after that long (or once everything is sent): the
 * peer then meets a client that does not read and must hold back, not lose or reorder bytes. */
static void echo_exact_delayed(int fd, size_t size, uint64_t seed, unsigned read_delay_ms)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    size_t sent = 0, got = 0;
    uint8_t chunk[16384];
    uint64_t start = h_now_ms(), end = start + IO_MS;
    while (got < size) {
        cr_assert_lt(h_now_ms(), end, "echo of %zu bytes timed out at %zu", size, got);
        bool reading = sent == size || h_now_ms() >= start + read_delay_ms;
        struct pollfd pf = {.fd = fd,
                            .events = (reading ? POLLIN : 0) | (sent < size ? POLLOUT : 0)};
        cr_assert_geq(poll(&pf, 1, 100), 0);
        if ((pf.revents & POLLOUT) && sent < size) {
            size_t n = size - sent < sizeof chunk ? size - sent : sizeof chunk;
            for (size_t i = 0; i < n; i++)
                chunk[i] = h_pattern(seed, sent + i);
            ssize_t w = send(fd, chunk, n, MSG_NOSIGNAL);
            if (w > 0)
                sent += (size_t)w;
            else
                cr_assert(errno == EAGAIN, "send: %s", strerror(errno));
        }
        if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = recv(fd, chunk, sizeof chunk, 0);
            cr_assert_neq(r, 0, "the peer closed after %zu of %zu bytes", got, size);
            if (r < 0) {
                cr_assert(errno == EAGAIN, "recv: %s", strerror(errno));
                continue;
            }
            cr_assert_leq(got + (size_t)r, sent, "more bytes came back than were sent");
            for (ssize_t i = 0; i < r; i++)
                cr_assert_eq(chunk[i], h_pattern(seed, got + (size_t)i),
                             "byte %zu of a %zu-byte echo differs", got + (size_t)i, size);
            got += (size_t)r;
        }
    }
    fcntl(fd, F_SETFL, fl);
}

static void echo_exact(int fd, size_t size, uint64_t seed)
{
    echo_exact_delayed(fd, size, seed, 0);
}

static void check_echo_peer(const char *bin, const char *name)
{
    struct proc p;
    char path[108];
    snprintf(path, sizeof path, "/tmp/rill-test-%s-%d.sock", name, (int)getpid());
    char *argv[] = {(char *)bin, "--threads", "2", "--port", "0", "--unix", path, NULL};
    int st;
    if (!proc_start(&p, argv, &st)) {
        if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
            cr_skip_test("%s cannot run here (exit 3)", name);
        cr_assert_fail("%s did not start (status 0x%x): %s", name, st, p.text);
        return;
    }
    cr_assert_gt(p.port, 0);
    cr_assert_str_eq(p.unix_path, path, "%s", p.text);

    static const size_t sizes[] = {1, 64, 1000, 16384, 65536, 1u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int fd = h_client(AF_INET, p.port);
        echo_exact(fd, sizes[i], i);
        echo_exact(fd, sizes[i], i + 100); /* the same connection again */
        close(fd);
        fd = unix_client(path);
        echo_exact(fd, sizes[i], i + 200);
        close(fd);
    }

    /* A client that stops reading while it sends 16 MiB: the peer's backpressure (stop reading,
     * resume once its writes drain) must deliver every byte in order once the client reads. */
    int slow = h_client(AF_INET, p.port);
    echo_exact_delayed(slow, 16u << 20, 42, 500);
    close(slow);

    /* Many clients at once, each with its own bytes, all connected before any is served. */
    enum { CLIENTS = 100 };
    int fds[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        fds[i] = h_client(AF_INET, p.port);
    for (int i = 0; i < CLIENTS; i++) {
        uint8_t msg[100];
        for (size_t k = 0; k < sizeof msg; k++)
            msg[k] = h_pattern((uint64_t)i + 1000, k);
        cr_assert_eq(send(fds[i], msg, sizeof msg, MSG_NOSIGNAL), (ssize_t)sizeof msg);
    }
    for (int i = 0; i < CLIENTS; i++) {
        uint8_t back[100];
        size_t got = 0;
        while (got < sizeof back) {
            cr_assert(h_readable(fds[i], IO_MS), "client %d got no answer", i);
            ssize_t r = recv(fds[i], back + got, sizeof back - got, 0);
            cr_assert_gt(r, 0, "client %d: %s", i, r ? strerror(errno) : "closed");
            got += (size_t)r;
        }
        for (size_t k = 0; k < sizeof back; k++)
            cr_assert_eq(back[k], h_pattern((uint64_t)i + 1000, k), "client %d byte %zu", i, k);
        close(fds[i]);
    }

    /* Still serving after all those closes. */
    int fd = h_client(AF_INET, p.port);
    echo_exact(fd, 4096, 7);
    close(fd);
    proc_stop(&p);
    unlink(path);
}

#define PEER_TEST(name, macro)                                                                 \
    Test(peers, name, .timeout = 60)                                                           \
    {                                                                                          \
        check_echo_peer(macro, #name);                                                         \
    }

#ifdef PEER_EPOLL_BIN
PEER_TEST(epoll, PEER_EPOLL_BIN)
#else
Test(peers, epoll) { cr_skip_test("peer-epoll was not built"); }
#endif
#ifdef PEER_URING_BIN
PEER_TEST(uring, PEER_URING_BIN)
#else
Test(peers, uring) { cr_skip_test("peer-uring was not built (liburing-dev missing)"); }
#endif
#ifdef PEER_LIBUV_BIN
PEER_TEST(libuv, PEER_LIBUV_BIN)
#else
Test(peers, libuv) { cr_skip_test("peer-libuv was not built (libuv1-dev missing)"); }
#endif
#ifdef PEER_LIBEVENT_BIN
PEER_TEST(libevent, PEER_LIBEVENT_BIN)
#else
Test(peers, libevent) { cr_skip_test("peer-libevent was not built (libevent-dev missing)"); }
#endif

/* Reads HTTP responses until `n` complete ones have arrived; returns how many were 200 with the
 * plaintext body. */
static int read_plaintext_responses(int fd, int n)
{
    char buf[65536];
    size_t len = 0;
    int done = 0, ok = 0;
    uint64_t end = h_now_ms() + IO_MS;
    while (done < n) {
        char *head_end;
        while (!(head_end = memmem(buf, len, "\r\n\r\n", 4)) ||
               !strstr(buf, "Content-Length: ")) {
            cr_assert_lt(h_now_ms(), end, "timed out after %d of %d responses", done, n);
            cr_assert(h_readable(fd, 100) || h_now_ms() < end);
            ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, MSG_DONTWAIT);
            if (r < 0 && errno == EAGAIN)
                continue;
            cr_assert_gt(r, 0, "connection ended after %d of %d responses", done, n);
            len += (size_t)r;
            buf[len] = '\0';
        }
        size_t head = (size_t)(head_end + 4 - buf);
        const char *cl = strcasestr(buf, "Content-Length: ");
        cr_assert(cl && cl < head_end, "a response without Content-Length: %.*s", (int)head, buf);
        size_t body = strtoul(cl + 16, NULL, 10);
        while (len < head + body) {
            cr_assert(h_readable(fd, IO_MS), "body timed out");
            ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
            cr_assert_gt(r, 0);
            len += (size_t)r;
            buf[len] = '\0';
        }
        if (!strncmp(buf, "HTTP/1.1 200", 12) && body == 13 && !memcmp(buf + head, "Hello, World!", 13))
            ok++;
        memmove(buf, buf + head + body, len - head - body);
        len -= head + body;
        buf[len] = '\0';
        done++;
    }
    return ok;
}

Test(peers, nginx, .timeout = 60)
{
#ifndef NGINX_RUN_SH
    cr_skip_test("no NGINX_RUN_SH");
#else
    if (access("/usr/sbin/nginx", X_OK) != 0)
        cr_skip_test("nginx is not installed (apt-get install nginx)");
    struct proc p;
    char *argv[] = {"/bin/bash", NGINX_RUN_SH, "--port", "0", NULL};
    int st;
    if (!proc_start(&p, argv, &st)) {
        if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
            cr_skip_test("nginx cannot run here");
        cr_assert_fail("nginx did not start (status 0x%x): %s", st, p.text);
        return;
    }
    int fd = h_client(AF_INET, p.port);
    static const char req[] = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < 10; i++) {
        cr_assert_eq(send(fd, req, sizeof req - 1, MSG_NOSIGNAL), (ssize_t)sizeof req - 1);
        cr_assert_eq(read_plaintext_responses(fd, 1), 1, "keep-alive request %d", i);
    }
    char many[16 * sizeof req];
    for (int i = 0; i < 16; i++)
        memcpy(many + i * (sizeof req - 1), req, sizeof req - 1);
    cr_assert_eq(send(fd, many, 16 * (sizeof req - 1), MSG_NOSIGNAL), (ssize_t)(16 * (sizeof req - 1)));
    cr_assert_eq(read_plaintext_responses(fd, 16), 16, "pipelined depth 16");
    close(fd);
    proc_stop(&p);
#endif
}
