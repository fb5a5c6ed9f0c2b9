/* rill-http: its request parser (tools/http/parser.c) directly, then the server end to end on
 * both backends: keep-alive, pipelining at depth 16 (in one write and split into small pieces),
 * Connection: close, HTTP/1.0, and the error statuses (400, 404, 405, 413, 431). */
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "harness.h"
#include "parser.h"

/* ---------------------------------------------------------------------------------------------
 * The parser
 * ------------------------------------------------------------------------------------------- */

/* Parses a whole buffer; fills up to max requests; returns how many completed, or -status on
 * an error (after the requests before it). */
static int parse_all(struct http_parser *p, const char *s, size_t len, struct http_request *out,
                     int max)
{
    int n = 0;
    while (len) {
        enum http_event ev;
        size_t used = http_parse(p, s, len, &ev);
        cr_assert_leq(used, len);
        s += used;
        len -= used;
        if (ev == HTTP_ERROR)
            return -p->status;
        if (ev == HTTP_REQUEST) {
            cr_assert_lt(n, max, "more requests than expected");
            out[n++] = p->req;
        } else {
            cr_assert_eq(len, 0, "NEED_MORE must consume everything");
        }
    }
    return n;
}

static int parse_str(const char *s, struct http_request *out, int max)
{
    struct http_parser p;
    http_parser_init(&p, NULL);
    return parse_all(&p, s, strlen(s), out, max);
}

static int status_of(const char *s)
{
    struct http_request r[4];
    int n = parse_str(s, r, 4);
    return n < 0 ? -n : 0;
}

Test(http_parser, simple_get)
{
    struct http_request r[1];
    cr_assert_eq(parse_str("GET /plaintext HTTP/1.1\r\nHost: localhost\r\n\r\n", r, 1), 1);
    cr_assert_eq(r[0].method, HTTP_GET);
    cr_assert_str_eq(r[0].path, "/plaintext");
    cr_assert_eq(r[0].version_minor, 1);
    cr_assert(r[0].keep_alive);
    cr_assert_eq(r[0].content_length, 0);
}

Test(http_parser, details)
{
    struct http_request r[1];
    /* A query is not part of the path; HEAD is known; header names are case-insensitive. */
    cr_assert_eq(parse_str("HEAD /json?x=1&y=2 HTTP/1.1\r\nhOsT: a\r\n\r\n", r, 1), 1);
    cr_assert_eq(r[0].method, HTTP_HEAD);
    cr_assert_str_eq(r[0].path, "/json");
    /* Connection is a token list; close wins. */
    cr_assert_eq(parse_str("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Close\r\n\r\n", r, 1), 1);
    cr_assert_not(r[0].keep_alive);
    /* HTTP/1.0 closes unless it asks for keep-alive. */
    cr_assert_eq(parse_str("GET / HTTP/1.0\r\n\r\n", r, 1), 1);
    cr_assert_eq(r[0].version_minor, 0);
    cr_assert_not(r[0].keep_alive);
    cr_assert_eq(parse_str("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", r, 1), 1);
    cr_assert(r[0].keep_alive);
    /* Bare LF line ends, leading empty lines, an unknown method, a long path. */
    cr_assert_eq(parse_str("\r\n\r\nBREW /pot HTTP/1.1\nHost: a\n\n", r, 1), 1);
    cr_assert_eq(r[0].method, HTTP_OTHER);
    char big[600];
    snprintf(big, sizeof big, "GET /%0400d HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    cr_assert_eq(parse_str(big, r, 1), 1);
    cr_assert(r[0].path_truncated);
    cr_assert_eq(r[0].path_len, HTTP_PATH_KEEP);
    /* Optional whitespace around values; obs-text in a value. */
    cr_assert_eq(parse_str("GET / HTTP/1.1\r\nHost:a\r\nX-Y: \t\xc3\xa9t\xc3\xa9 \r\n"
                           "Content-Length: 0 \r\n\r\n", r, 1), 1);
}

/* Three requests, one with a body that must be skipped, then one more. */
static const char PIPELINE[] =
    "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n"
    "POST /json HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
    "GET /json HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
    "HEAD /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

static void check_pipeline(const struct http_request *r)
{
    cr_assert_eq(r[0].method, HTTP_GET);
    cr_assert_str_eq(r[0].path, "/plaintext");
    cr_assert_eq(r[1].method, HTTP_POST);
    cr_assert_str_eq(r[1].path, "/json");
    cr_assert_eq(r[1].content_length, 11);
    cr_assert_eq(r[2].method, HTTP_GET);
    cr_assert_str_eq(r[2].path, "/json");
    cr_assert(r[2].keep_alive);
    cr_assert_eq(r[3].method, HTTP_HEAD);
    cr_assert_not(r[3].keep_alive);
}

Test(http_parser, pipelined_split_at_every_byte)
{
    size_t len = sizeof PIPELINE - 1;
    struct http_request r[4];
    cr_assert_eq(parse_str(PIPELINE, r, 4), 4);
    check_pipeline(r);
    /* Two pieces, split at every boundary. */
    for (size_t cut = 0; cut <= len; cut++) {
        struct http_parser p;
        http_parser_init(&p, NULL);
        int a = parse_all(&p, PIPELINE, cut, r, 4);
        cr_assert_geq(a, 0, "cut %zu", cut);
        int b = parse_all(&p, PIPELINE + cut, len - cut, r + a, 4 - a);
        cr_assert_eq(a + b, 4, "cut at %zu", cut);
        check_pipeline(r);
    }
    /* One byte at a time. */
    struct http_parser p;
    http_parser_init(&p, NULL);
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        int k = parse_all(&p, PIPELINE + i, 1, r + n, 4 - n);
        cr_assert_geq(k, 0);
        n += k;
    }
    cr_assert_eq(n, 4);
    check_pipeline(r);
}

Test(http_parser, malformed_is_400)
{
    static const char *const bad[] = {
        "GET /\r\n\r\n",                                         /* HTTP/0.9 */
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",                    /* two spaces */
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",                    /* space after version */
        "GET / HTTX/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.x\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\n Host: a\r\n\r\n",                    /* obs-fold / leading space */
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",                    /* space before ':' */
        "GET / HTTP/1.1\r\nHost: a\r\nNo-Colon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n",        /* a control in a value */
        "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",               /* a bare CR */
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",                                /* 1.1 without Host */
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",                     /* not a token */
        "GET \x80/ HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET %2F HTTP/1.1\r\nHost: a\r\n\r\n",                   /* not a target form */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(status_of(bad[i]), 400, "case %zu: %s", i, bad[i]);
    cr_expect_eq(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    cr_expect_eq(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), 501);
}

Test(http_parser, limits)
{
    /* A header section over 8 KiB: 431, whether one field or many. */
    static char req[20000];
    int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: ");
    memset(req + n, 'v', 9000);
    strcpy(req + n + 9000, "\r\n\r\n");
    cr_assert_eq(status_of(req), 431);
    n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: a\r\n");
    while (n < 10000)
        n += snprintf(req + n, sizeof req - (size_t)n, "X-Field-%d: value\r\n", n);
    strcpy(req + n, "\r\n");
    cr_assert_eq(status_of(req), 431);
    /* Endless empty lines before a request are bounded by the same limit. */
    for (int i = 0; i < 9000; i++)
        req[i] = '\n';
    req[9000] = '\0';
    cr_assert_eq(status_of(req), 431);
    /* A 5000-byte target: 414. */
    n = snprintf(req, sizeof req, "GET /");
    memset(req + n, 'p', 5000);
    strcpy(req + n + 5000, " HTTP/1.1\r\nHost: a\r\n\r\n");
    cr_assert_eq(status_of(req), 414);
    /* Bodies over 1 MiB: 413, including lengths that overflow 64 bits. */
    cr_assert_eq(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n"), 413);
    cr_assert_eq(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "
                           "99999999999999999999999999999\r\n\r\n"), 413);
    struct http_request r[1];
    cr_assert_eq(parse_str("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n", r, 1),
                 0, "exactly the limit is accepted (the body is still to come)");
    /* Limits can be changed. */
    struct http_parser p;
    struct http_limits lim = {.max_head = 64, .max_body = 10};
    http_parser_init(&p, &lim);
    static const char s[] = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    cr_assert_eq(parse_all(&p, s, sizeof s - 1, r, 1), -413);
    http_parser_init(&p, &lim);
    static const char t[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: 0123456789012345678901234567890\r\n\r\n";
    cr_assert_eq(parse_all(&p, t, sizeof t - 1, r, 1), -431);
}

Test(http_parser, error_is_sticky)
{
    struct http_parser p;
    http_parser_init(&p, NULL);
    enum http_event ev;
    static const char bad[] = "GET / HTTP/1.1\r\nBad Header\r\n\r\nGET / HTTP/1.1\r\n";
    size_t used = http_parse(&p, bad, sizeof bad - 1, &ev);
    cr_assert_eq(ev, HTTP_ERROR);
    cr_assert_eq(p.status, 400);
    cr_assert_lt(used, sizeof bad - 1);
    cr_assert_eq(http_parse(&p, "GET", 3, &ev), 0);
    cr_assert_eq(ev, HTTP_ERROR);
    cr_assert_str_eq(http_reason(431), "Request Header Fields Too Large");
}

/* ---------------------------------------------------------------------------------------------
 * rill-http end to end
 * ------------------------------------------------------------------------------------------- */

#define IO_MS 20000

struct proc {
    pid_t pid;
    int out;
    int port;
    char text[512];
};

/* Starts rill-http on `listen` (tcp://127.0.0.1:0 for a free port) with the backend and loop
 * count, and the NULL-terminated extra arguments (NULL for none); skips when that backend
 * cannot run here. */
static void server_start_args(struct proc *p, const char *backend, const char *listen,
                              const char *threads, const char *const *extra)
{
#ifndef RILL_HTTP_BIN
    (void)p;
    (void)backend;
    (void)listen;
    (void)threads;
    (void)extra;
    cr_skip_test("rill-http was not built (RILL_TOOLS=OFF)");
#else
    int fds[2];
    cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
    memset(p, 0, sizeof *p);
    p->pid = fork();
    cr_assert_geq(p->pid, 0);
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], 1);
        unsetenv("RILL_BACKEND"); /* the parameter decides */
        const char *argv[24] = {RILL_HTTP_BIN, "--listen", listen, "--threads", threads,
                                "--no-pin", "--backend", backend};
        for (int i = 0; extra && extra[i] && i < 15; i++)
            argv[8 + i] = extra[i];
        execv(RILL_HTTP_BIN, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    p->out = fds[0];
    size_t len = 0;
    uint64_t end = h_now_ms() + 10000;
    while (h_now_ms() < end && len < sizeof p->text - 1) {
        if (!h_readable(p->out, 50))
            continue;
        ssize_t n = read(p->out, p->text + len, sizeof p->text - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        p->text[len] = '\0';
        const char *l = strstr(p->text, "listening ");
        if (l && strchr(l, '\n')) {
            if (!strncmp(l, "listening tcp://127.0.0.1:", 26))
                p->port = atoi(l + 26);
            const char *want = strcmp(backend, "uring") ? "backend=epoll" : "backend=io_uring";
            cr_assert(strstr(p->text, want), "expected %s: %s", want, p->text);
            return;
        }
    }
    int st;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &st, 0);
    if (!strcmp(backend, "uring"))
        cr_skip_test("rill-http cannot run on io_uring here: %s", p->text);
    cr_assert_fail("rill-http did not start (status 0x%x): %s", st, p->text);
#endif
}

static void server_start_on(struct proc *p, const char *backend, const char *listen,
                            const char *threads)
{
    server_start_args(p, backend, listen, threads, NULL);
}

static void server_start(struct proc *p, const char *backend)
{
#ifdef RILL_HTTP_BIN
    server_start_on(p, backend, "tcp://127.0.0.1:0", "1");
#else
    (void)p;
    (void)backend;
    cr_skip_test("rill-http was not built (RILL_TOOLS=OFF)");
#endif
}

/* Stops the server with SIGTERM (a graceful drain) and checks that it exits with status 0. */
static void server_stop(struct proc *p)
{
    kill(p->pid, SIGTERM);
    uint64_t end = h_now_ms() + 10000;
    int st = 0;
    while (waitpid(p->pid, &st, WNOHANG) == 0) {
        if (h_now_ms() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &st, 0);
            cr_assert_fail("rill-http did not stop on SIGTERM");
        }
        usleep(10000);
    }
    close(p->out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "rill-http exit status 0x%x", st);
}

static void send_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        s += n;
        len -= (size_t)n;
    }
}

struct resp {
    int status;
    bool closes; /* "Connection: close" */
    char body[64];
};

/* Reads exactly n responses (head + Content-Length body) into r. Responses must arrive whole
 * and in order; the stream must not hold more than n of them. */
static void read_responses(int fd, struct resp *r, int n)
{
    static char buf[1 << 16];
    size_t len = 0;
    uint64_t end = h_now_ms() + IO_MS;
    for (int i = 0; i < n; i++) {
        char *he;
        while (!(he = memmem(buf, len, "\r\n\r\n", 4))) {
            cr_assert_lt(h_now_ms(), end, "response %d of %d timed out", i, n);
            cr_assert(h_readable(fd, IO_MS), "response %d of %d timed out", i, n);
            ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
            cr_assert_gt(k, 0, "connection ended before response %d of %d", i, n);
            len += (size_t)k;
            buf[len] = '\0';
        }
        size_t head = (size_t)(he + 4 - buf);
        *he = '\0';
        cr_assert_eq(strncmp(buf, "HTTP/1.1 ", 9), 0, "%s", buf);
        r[i].status = atoi(buf + 9);
        const char *cl = strcasestr(buf, "\r\nContent-Length: ");
        cr_assert(cl, "no Content-Length: %s", buf);
        r[i].closes = strcasestr(buf, "\r\nConnection: close") != NULL;
        cr_assert(strstr(buf, "\r\nDate: "), "no Date: %s", buf);
        size_t body = strtoul(cl + 18, NULL, 10);
        *he = '\r';
        while (len < head + body) {
            cr_assert(h_readable(fd, IO_MS));
            ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
            cr_assert_gt(k, 0);
            len += (size_t)k;
        }
        size_t keep = body < sizeof r[i].body ? body : sizeof r[i].body - 1;
        memcpy(r[i].body, buf + head, keep);
        r[i].body[keep] = '\0';
        memmove(buf, buf + head + body, len - head - body);
        len -= head + body;
    }
    cr_assert_eq(len, 0, "unexpected bytes after %d responses", n);
}

/* True when the server closes the connection within the time limit (EOF or reset). */
static bool closed_by_server(int fd)
{
    char c;
    if (!h_readable(fd, IO_MS))
        return false;
    return recv(fd, &c, 1, 0) <= 0;
}

static const char GET_PLAIN[] = "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";

H_BACKEND_TEST(http_server, keep_alive, .timeout = 60)
{
    struct proc p;
    server_start(&p, backend);
    int fd = h_client(AF_INET, p.port);
    struct resp r[1];
    for (int i = 0; i < 200; i++) {
        const char *req = i % 2 ? "GET /json HTTP/1.1\r\nHost: t\r\n\r\n" : GET_PLAIN;
        send_all(fd, req, strlen(req));
        read_responses(fd, r, 1);
        cr_assert_eq(r[0].status, 200);
        cr_assert_not(r[0].closes);
        cr_assert_str_eq(r[0].body, i % 2 ? "{\"message\":\"Hello, World!\"}" : "Hello, World!");
    }
    /* HEAD: the head of a GET, no body (read_responses would see the 13 bytes otherwise). */
    static const char head[] = "HEAD /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";
    send_all(fd, head, sizeof head - 1);
    char buf[512];
    size_t len = 0;
    while (!memmem(buf, len, "\r\n\r\n", 4)) {
        cr_assert(h_readable(fd, IO_MS));
        ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        cr_assert_gt(k, 0);
        len += (size_t)k;
    }
    buf[len] = '\0';
    cr_assert(strstr(buf, "Content-Length: 13\r\n"), "%s", buf);
    cr_assert_str_eq(strstr(buf, "\r\n\r\n"), "\r\n\r\n", "HEAD must have no body");
    /* 404 and 405 keep the connection. */
    static const char nf[] = "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                             "DELETE /json HTTP/1.1\r\nHost: t\r\n\r\n";
    send_all(fd, nf, sizeof nf - 1);
    struct resp two[2];
    read_responses(fd, two, 2);
    cr_assert_eq(two[0].status, 404);
    cr_assert_eq(two[1].status, 405);
    send_all(fd, GET_PLAIN, sizeof GET_PLAIN - 1);
    read_responses(fd, r, 1);
    cr_assert_eq(r[0].status, 200);
    close(fd);
    server_stop(&p);
}

H_BACKEND_TEST(http_server, pipelined_depth_16, .timeout = 60)
{
    struct proc p;
    server_start(&p, backend);
    enum { DEPTH = 16 };
    static char many[DEPTH * 64];
    size_t len = 0;
    for (int i = 0; i < DEPTH; i++) {
        const char *req = i % 3 == 2 ? "GET /json HTTP/1.1\r\nHost: t\r\n\r\n" : GET_PLAIN;
        memcpy(many + len, req, strlen(req));
        len += strlen(req);
    }
    int fd = h_client(AF_INET, p.port);
    struct resp r[DEPTH];
    for (int round = 0; round < 50; round++) {
        send_all(fd, many, len); /* all 16 in one write */
        read_responses(fd, r, DEPTH);
        for (int i = 0; i < DEPTH; i++) {
            cr_assert_eq(r[i].status, 200);
            cr_assert_str_eq(r[i].body, i % 3 == 2 ? "{\"message\":\"Hello, World!\"}"
                                                    : "Hello, World!", "round %d answer %d", round, i);
        }
    }
    /* The same 16 split into 7-byte pieces, so requests straddle reads: still in order. */
    for (size_t off = 0; off < len; off += 7) {
        send_all(fd, many + off, len - off < 7 ? len - off : 7);
        usleep(200);
    }
    read_responses(fd, r, DEPTH);
    for (int i = 0; i < DEPTH; i++)
        cr_assert_str_eq(r[i].body, i % 3 == 2 ? "{\"message\":\"Hello, World!\"}" : "Hello, World!");
    close(fd);

    /* Several pipelining clients at once. */
    enum { CLIENTS = 20 };
    int fds[CLIENTS];
    for (int c = 0; c < CLIENTS; c++) {
        fds[c] = h_client(AF_INET, p.port);
        send_all(fds[c], many, len);
    }
    for (int c = 0; c < CLIENTS; c++) {
        read_responses(fds[c], r, DEPTH);
        close(fds[c]);
    }
    server_stop(&p);
}

H_BACKEND_TEST(http_server, connection_close, .timeout = 60)
{
    struct proc p;
    server_start(&p, backend);
    struct resp r[2];
    /* Connection: close on the 2nd of 3 pipelined requests: two answers, then the end. */
    int fd = h_client(AF_INET, p.port);
    static const char req[] = "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"
                              "GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                              "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";
    send_all(fd, req, sizeof req - 1);
    read_responses(fd, r, 2);
    cr_assert_not(r[0].closes);
    cr_assert(r[1].closes);
    cr_assert(closed_by_server(fd), "the server must close after Connection: close");
    close(fd);
    /* HTTP/1.0 without keep-alive closes; with it, stays. */
    fd = h_client(AF_INET, p.port);
    static const char old[] = "GET /plaintext HTTP/1.0\r\n\r\n";
    send_all(fd, old, sizeof old - 1);
    read_responses(fd, r, 1);
    cr_assert_eq(r[0].status, 200);
    cr_assert(closed_by_server(fd));
    close(fd);
    fd = h_client(AF_INET, p.port);
    static const char ka[] = "GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    send_all(fd, ka, sizeof ka - 1);
    send_all(fd, ka, sizeof ka - 1);
    read_responses(fd, r, 2);
    cr_assert_eq(r[1].status, 200);
    close(fd);
    server_stop(&p);
}

/* Sends a bad request (after a good one) and expects the good answer, then `status` with
 * Connection: close, then the end of the connection. */
static void expect_error(int port, const char *bad, size_t len, int status)
{
    int fd = h_client(AF_INET, port);
    send_all(fd, GET_PLAIN, sizeof GET_PLAIN - 1);
    send_all(fd, bad, len);
    struct resp r[2];
    read_responses(fd, r, 2);
    cr_assert_eq(r[0].status, 200);
    cr_assert_eq(r[1].status, status, "expected %d, got %d", status, r[1].status);
    cr_assert(r[1].closes);
    cr_assert(closed_by_server(fd), "the server must close after a %d", status);
    close(fd);
}

H_BACKEND_TEST(http_server, errors, .timeout = 60)
{
    struct proc p;
    server_start(&p, backend);
    static const char bad[] = "GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n";
    expect_error(p.port, bad, sizeof bad - 1, 400);
    static const char big[] = "POST /json HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n";
    expect_error(p.port, big, sizeof big - 1, 413);
    static char huge[16384];
    int n = snprintf(huge, sizeof huge, "GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Huge: ");
    memset(huge + n, 'h', 12000);
    strcpy(huge + n + 12000, "\r\n\r\n");
    expect_error(p.port, huge, strlen(huge), 431);
    static const char te[] = "POST /json HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    expect_error(p.port, te, sizeof te - 1, 501);
    /* The server keeps serving everyone else. */
    int fd = h_client(AF_INET, p.port);
    send_all(fd, GET_PLAIN, sizeof GET_PLAIN - 1);
    struct resp r[1];
    read_responses(fd, r, 1);
    cr_assert_eq(r[0].status, 200);
    close(fd);
    server_stop(&p);
}

/* Two loops on TCP (connections spread over both by SO_REUSEPORT), and a Unix socket. */
H_BACKEND_TEST(http_server, two_loops_and_unix, .timeout = 60)
{
    struct proc p;
    server_start_on(&p, backend, "tcp://127.0.0.1:0", "2");
    cr_assert(strstr(p.text, "loops=2"), "%s", p.text);
    enum { CLIENTS = 16 };
    int fds[CLIENTS];
    struct resp r[4];
    static const char four[] = "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";
    for (int i = 0; i < CLIENTS; i++) {
        fds[i] = h_client(AF_INET, p.port);
        send_all(fds[i], four, sizeof four - 1);
    }
    for (int i = 0; i < CLIENTS; i++) {
        read_responses(fds[i], r, 4);
        for (int k = 0; k < 4; k++)
            cr_assert_str_eq(r[k].body, "Hello, World!");
        close(fds[i]);
    }
    server_stop(&p);

    char uri[128], path[108];
    snprintf(path, sizeof path, "/tmp/rill-http-test-%d-%s.sock", (int)getpid(), backend);
    snprintf(uri, sizeof uri, "unix:%s", path);
    unlink(path);
    server_start_on(&p, backend, uri, "1");
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    snprintf(u.sun_path, sizeof u.sun_path, "%s", path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&u, sizeof u), 0, "connect %s: %s", path,
                 strerror(errno));
    send_all(fd, four, sizeof four - 1);
    read_responses(fd, r, 4);
    cr_assert_eq(r[3].status, 200);
    close(fd);
    server_stop(&p);
    unlink(path);
}

/* ---------------------------------------------------------------------------------------------
 * Slow and stuck clients
 * ------------------------------------------------------------------------------------------- */

enum { N_SLOW = 200 };

H_BACKEND_TEST(http_server, slowloris_is_timed_out, .timeout = 60)
{
    /* 200 clients each trickle a request head, a byte every 100 ms, against a 500 ms header
     * timeout: all of them are answered 408 and closed within 1.5 s, while a normal client on
     * its own connection completes its requests the whole time. */
    struct proc p;
    static const char *const args[] = {"--header-timeout", "500", NULL};
    server_start_args(&p, backend, "tcp://127.0.0.1:0", "1", args);
    int slow[N_SLOW];
    bool gone[N_SLOW] = {0};
    static const char head[] = "GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Slow: ";
    uint64_t t0 = h_now_ms();
    for (int i = 0; i < N_SLOW; i++) {
        slow[i] = h_client(AF_INET, p.port);
        cr_assert_eq(send(slow[i], "G", 1, MSG_NOSIGNAL), 1);
        cr_assert_eq(fcntl(slow[i], F_SETFL, O_NONBLOCK), 0);
    }
    int good = h_client(AF_INET, p.port);
    int served = 0, closed = 0;
    uint64_t next_byte = h_now_ms() + 100, last_close = 0;
    size_t pos = 1;
    while (closed < N_SLOW && h_now_ms() < t0 + 5000) {
        send_all(good, GET_PLAIN, sizeof GET_PLAIN - 1);
        struct resp r[1];
        read_responses(good, r, 1);
        cr_assert_eq(r[0].status, 200);
        served++;
        if (h_now_ms() >= next_byte) { /* the next byte of every slow head */
            char c = pos < sizeof head - 1 ? head[pos] : 'x';
            pos++;
            for (int i = 0; i < N_SLOW; i++)
                if (!gone[i])
                    (void)send(slow[i], &c, 1, MSG_NOSIGNAL);
            next_byte += 100;
        }
        for (int i = 0; i < N_SLOW; i++) {
            if (gone[i])
                continue;
            char buf[512];
            ssize_t n;
            while ((n = recv(slow[i], buf, sizeof buf, 0)) > 0) {
                buf[n < (ssize_t)sizeof buf ? n : (ssize_t)sizeof buf - 1] = '\0';
                cr_assert(strstr(buf, "HTTP/1.1 408") == buf || strstr(buf, "408"),
                          "slow client %d: expected a 408, got %.60s", i, buf);
            }
            if (n == 0 || (n < 0 && errno != EAGAIN)) {
                gone[i] = true;
                closed++;
                last_close = h_now_ms();
            }
        }
    }
    cr_expect_eq(closed, N_SLOW, "%d of %d slow clients closed", closed, N_SLOW);
    cr_expect_leq(last_close - t0, 1500, "the last slow client went after %llu ms",
                  (unsigned long long)(last_close - t0));
    cr_expect_gt(served, 10, "the normal client got %d answers meanwhile", served);
    for (int i = 0; i < N_SLOW; i++)
        close(slow[i]);
    close(good);
    server_stop(&p);
}

H_BACKEND_TEST(http_server, closes_after_an_error_whatever_the_peer_does, .timeout = 60)
{
    /* A client that gets a 400 and neither reads on nor closes: the server's FIN comes at once,
     * and within the 2 s linger its socket is gone too (a byte sent then meets a reset). */
    struct proc p;
    server_start(&p, backend);
    int fd = h_client(AF_INET, p.port);
    static const char bad[] = "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n";
    send_all(fd, bad, sizeof bad - 1);
    struct resp r[1];
    read_responses(fd, r, 1);
    cr_assert_eq(r[0].status, 400);
    cr_assert(closed_by_server(fd));
    uint64_t end = h_now_ms() + 5000;
    bool reset = false;
    while (!reset && h_now_ms() < end) {
        usleep(200000);
        if (send(fd, "x", 1, MSG_NOSIGNAL) < 0) {
            reset = true; /* EPIPE or ECONNRESET: the socket is closed for good */
            break;
        }
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
        reset = n < 0 && errno == ECONNRESET;
    }
    cr_expect(reset, "the server kept its socket open after the error");
    close(fd);
    server_stop(&p);
}
