/* rill-http --root DIR on both backends: files of 1 MiB and 16 KiB arrive byte-exact on one
 * keep-alive connection (with HEAD between them), and what must not be served is refused:
 * a missing file (404), ".." however spelled, a directory, a symbolic link out of the root
 * and one inside it (403), another method (405). */
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"

#define IO_MS 20000

struct server {
    pid_t pid;
    int out, port;
    char root[128];
};

static void write_file(const char *dir, const char *name, size_t size, uint64_t seed)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    uint8_t *b = malloc(size);
    h_fill(b, size, seed, 0);
    cr_assert_eq(write(fd, b, size), (ssize_t)size);
    free(b);
    close(fd);
}

/* The root: big (1 MiB), small (16 KiB), sub/ with a file, a symlink out, a symlink in. */
static void make_root(struct server *s, const char *backend)
{
    snprintf(s->root, sizeof s->root, "/tmp/rill-http-root-%d-%s", (int)getpid(), backend);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->root);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(mkdir(s->root, 0755), 0);
    write_file(s->root, "big", 1u << 20, 1);
    write_file(s->root, "small.txt", 16u << 10, 2);
    char p[256], t[256];
    snprintf(p, sizeof p, "%s/sub", s->root);
    cr_assert_eq(mkdir(p, 0755), 0);
    write_file(p, "inner", 100, 3);
    snprintf(p, sizeof p, "%s/out", s->root);
    cr_assert_eq(symlink("/etc/passwd", p), 0);
    snprintf(p, sizeof p, "%s/in", s->root);
    snprintf(t, sizeof t, "%s/big", s->root);
    cr_assert_eq(symlink(t, p), 0);
}

static void start(struct server *s, const char *backend)
{
#ifndef RILL_HTTP_BIN
    (void)s;
    (void)backend;
    cr_skip_test("rill-http was not built (RILL_TOOLS=OFF)");
#else
    make_root(s, backend);
    int fds[2];
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    s->pid = fork();
    cr_assert_geq(s->pid, 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        unsetenv("RILL_BACKEND");
        execl(RILL_HTTP_BIN, RILL_HTTP_BIN, "--listen", "tcp://127.0.0.1:0", "--threads", "1",
              "--no-pin", "--backend", backend, "--root", s->root, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    s->out = fds[0];
    char text[512];
    size_t len = 0;
    uint64_t end = h_now_ms() + 10000;
    while (h_now_ms() < end && len < sizeof text - 1) {
        if (!h_readable(s->out, 50))
            continue;
        ssize_t n = read(s->out, text + len, sizeof text - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        text[len] = '\0';
        const char *l = strstr(text, "listening tcp://127.0.0.1:");
        if (l && strchr(l, '\n')) {
            s->port = atoi(l + 26);
            return;
        }
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    if (!strcmp(backend, "uring"))
        cr_skip_test("rill-http cannot run on io_uring here");
    cr_assert_fail("rill-http --root did not start");
#endif
}

static void stop(struct server *s)
{
    kill(s->pid, SIGTERM);
    int st = 0;
    uint64_t end = h_now_ms() + 10000;
    while (waitpid(s->pid, &st, WNOHANG) == 0) {
        if (h_now_ms() > end) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            cr_assert_fail("rill-http did not stop on SIGTERM");
        }
        usleep(10000);
    }
    close(s->out);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status 0x%x", st);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->root);
    cr_expect_eq(system(cmd), 0);
}

/* Sends one request and reads its answer: the status, Content-Length and (unless head) the
 * body into a malloc'd *body. */
static int fetch(int fd, const char *method, const char *path, bool head, size_t *clen,
                 uint8_t **body)
{
    char req[512];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: t\r\n\r\n", method, path);
    cr_assert_eq(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
    char hd[2048];
    size_t len = 0;
    char *e;
    while (!(e = memmem(hd, len, "\r\n\r\n", 4))) {
        cr_assert(h_readable(fd, IO_MS), "%s %s: no answer", method, path);
        cr_assert_lt(len, sizeof hd - 1);
        ssize_t k = recv(fd, hd + len, 1, 0); /* byte by byte: the body stays in the socket */
        cr_assert_gt(k, 0, "%s %s: connection ended", method, path);
        len += (size_t)k;
    }
    *e = '\0';
    cr_assert_eq(strncmp(hd, "HTTP/1.1 ", 9), 0, "%s", hd);
    const char *cl = strcasestr(hd, "\r\nContent-Length: ");
    cr_assert(cl, "no Content-Length: %s", hd);
    *clen = strtoul(cl + 18, NULL, 10);
    *body = NULL;
    if (!head) {
        *body = malloc(*clen + 1);
        size_t got = 0;
        while (got < *clen) {
            cr_assert(h_readable(fd, IO_MS), "%s %s: body stalled at %zu", method, path, got);
            ssize_t k = recv(fd, *body + got, *clen - got, 0);
            cr_assert_gt(k, 0, "%s %s: body ended at %zu of %zu", method, path, got, *clen);
            got += (size_t)k;
        }
    }
    return atoi(hd + 9);
}

static void expect_file(int fd, const char *path, size_t size, uint64_t seed)
{
    size_t clen;
    uint8_t *b;
    cr_assert_eq(fetch(fd, "GET", path, false, &clen, &b), 200, "GET %s", path);
    cr_assert_eq(clen, size);
    for (size_t i = 0; i < size; i++)
        if (b[i] != h_pattern(seed, i))
            cr_assert_fail("%s: byte %zu differs", path, i);
    free(b);
}

static int status_of(int fd, const char *method, const char *path)
{
    size_t clen;
    uint8_t *b;
    int st = fetch(fd, method, path, !strcmp(method, "HEAD"), &clen, &b);
    free(b);
    return st;
}

H_BACKEND_TEST(http_root, files_byte_exact_and_head, .timeout = 60)
{
    struct server s;
    start(&s, backend);
    int fd = h_client(AF_INET, s.port);
    expect_file(fd, "/big", 1u << 20, 1);
    expect_file(fd, "/small.txt", 16u << 10, 2);
    size_t clen;
    uint8_t *b;
    cr_expect_eq(fetch(fd, "HEAD", "/big", true, &clen, &b), 200);
    cr_expect_eq(clen, 1u << 20, "HEAD carries the file's length, and no body");
    expect_file(fd, "/sub/inner", 100, 3);
    expect_file(fd, "//sub/./inner", 100, 3);
    expect_file(fd, "/big", 1u << 20, 1);
    close(fd);
    stop(&s);
}

H_BACKEND_TEST(http_root, refusals, .timeout = 60)
{
    struct server s;
    start(&s, backend);
    int fd = h_client(AF_INET, s.port);
    cr_expect_eq(status_of(fd, "GET", "/missing"), 404);
    cr_expect_eq(status_of(fd, "HEAD", "/missing"), 404);
    cr_expect_eq(status_of(fd, "GET", "/../etc/passwd"), 403);
    cr_expect_eq(status_of(fd, "GET", "/sub/../../etc/passwd"), 403);
    cr_expect_eq(status_of(fd, "GET", "/%2e%2e/etc/passwd"), 403);
    cr_expect_eq(status_of(fd, "GET", "/sub%2f..%2f..%2fetc/passwd"), 403);
    cr_expect_eq(status_of(fd, "GET", "/out"), 403, "a symlink out of the root");
    cr_expect_eq(status_of(fd, "GET", "/in"), 403, "a symlink, even inside the root");
    cr_expect_eq(status_of(fd, "GET", "/sub"), 403, "a directory");
    cr_expect_eq(status_of(fd, "GET", "/"), 403, "the root itself");
    cr_expect_eq(status_of(fd, "GET", "/%zz"), 400);
    cr_expect_eq(status_of(fd, "DELETE", "/big"), 405);
    expect_file(fd, "/small.txt", 16u << 10, 2); /* the connection is still good */
    close(fd);
    stop(&s);
}
