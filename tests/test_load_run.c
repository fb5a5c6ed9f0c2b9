/* rill-load end to end: the real program (RILL_LOAD_BIN) against servers written here, on
 * threads with plain blocking sockets, each run on both backends.
 *
 *   open-loop rate      achieved within 1% of a modest offered rate
 *   coordinated omission a server that stalls 500 ms once: the corrected p99.9 shows it, the
 *                       uncorrected one does not
 *   --json              python3 parses it and finds every documented field
 *   bad servers         garbage, short, extra bytes, resets, closes: counted by kind, no hang
 *   HTTP                content-length and chunked, pipelined; 404s counted; garbage counted
 *   churn, -n, unix stream and seqpacket, UDP (and its losses), merge
 * Every run is bounded: rill-load is killed (and the test fails) if it outlives its limit. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "harness.h"
#include "load.h"

enum mode { M_ECHO, M_STALL, M_GARBAGE, M_SHORT, M_EXTRA, M_RESET, M_CLOSE, M_HTTP, M_HTTP_404,
            M_HTTP_GARBAGE, M_UDP, M_UDP_DROP };

struct srv {
    int lfd, port;
    char path[108]; /* unix socket path, or "" */
    enum mode mode;
    atomic_bool stop;
    atomic_bool stalled;
    atomic_int active;
    uint64_t t0_ms;
    pthread_t tid;
};

struct conn_arg {
    struct srv *s;
    int fd;
};

static bool wait_readable(struct srv *s, int fd)
{
    while (!atomic_load(&s->stop))
        if (h_readable(fd, 50))
            return true;
    return false;
}

static bool write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

/* HTTP: answers every request (a blank line ends one) in the stream, alternating a
 * Content-Length body and a chunked one; `tail` carries the last bytes across reads. */
static bool http_answer(struct srv *s, int fd, const char *p, size_t n, uint32_t *tail, int *k)
{
    static const char ok_len[] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nhello, world\n";
    static const char ok_chunked[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     "5\r\nhello\r\n8\r\n, world\n\r\n0\r\n\r\n";
    static const char not_found[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno\n";
    for (size_t i = 0; i < n; i++) {
        *tail = (*tail << 8) | (uint8_t)p[i];
        if (*tail != 0x0d0a0d0a)
            continue;
        const char *r = s->mode == M_HTTP_404 ? not_found
                        : s->mode == M_HTTP_GARBAGE ? "HTTP/1.1 OK maybe\r\n\r\n"
                        : (*k)++ % 2 ? ok_chunked : ok_len;
        if (!write_all(fd, r, strlen(r)))
            return false;
    }
    return true;
}

/* One reply to n bytes just read, the way the mode misbehaves. Returns false to close. */
static bool answer(struct srv *s, int fd, char *p, size_t n, uint32_t *tail, int *k)
{
    switch (s->mode) {
    case M_ECHO:
        return write_all(fd, p, n);
    case M_STALL:
        if (h_now_ms() - s->t0_ms > 1000 && !atomic_exchange(&s->stalled, true))
            usleep(500 * 1000);
        return write_all(fd, p, n);
    case M_GARBAGE:
        for (size_t i = 0; i < n; i++)
            p[i] ^= 0x5a;
        return write_all(fd, p, n);
    case M_SHORT:
        write_all(fd, p, n / 2 ? n / 2 : 1);
        return false;
    case M_EXTRA:
        p[n] = 'X'; /* the buffer has room for one more */
        return write_all(fd, p, n + 1);
    case M_RESET: {
        struct linger lg = {1, 0}; /* close with RST */
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        return false;
    }
    case M_CLOSE:
        return false;
    default:
        return http_answer(s, fd, p, n, tail, k);
    }
}

static void *conn_main(void *arg)
{
    struct conn_arg *ca = arg;
    struct srv *s = ca->s;
    int fd = ca->fd;
    free(ca);
    char buf[65537];
    uint32_t tail = 0;
    int k = 0;
    while (wait_readable(s, fd)) {
        ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
        if (n <= 0 || !answer(s, fd, buf, (size_t)n, &tail, &k))
            break;
    }
    close(fd);
    atomic_fetch_sub(&s->active, 1);
    return NULL;
}

/* UDP: echoes every datagram (M_UDP_DROP: all but every 50th). */
static void *udp_main(void *arg)
{
    struct srv *s = arg;
    char buf[65536];
    unsigned n = 0;
    while (wait_readable(s, s->lfd)) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        ssize_t r = recvfrom(s->lfd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (r < 0 || (s->mode == M_UDP_DROP && ++n % 50 == 0))
            continue;
        sendto(s->lfd, buf, (size_t)r, 0, (struct sockaddr *)&from, len);
    }
    return NULL;
}

static void *accept_main(void *arg)
{
    struct srv *s = arg;
    while (wait_readable(s, s->lfd)) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        struct conn_arg *ca = malloc(sizeof *ca);
        ca->s = s;
        ca->fd = fd;
        pthread_t t;
        atomic_fetch_add(&s->active, 1);
        if (pthread_create(&t, NULL, conn_main, ca) != 0) {
            atomic_fetch_sub(&s->active, 1);
            close(fd);
            free(ca);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

/* A server on 127.0.0.1 (TCP or, for the UDP modes, UDP) or on a Unix socket of `type`. */
static struct srv *srv_start_type(enum mode mode, bool unix_socket, int type)
{
    struct srv *s = calloc(1, sizeof *s);
    bool udp = mode == M_UDP || mode == M_UDP_DROP;
    s->mode = mode;
    s->t0_ms = h_now_ms();
    if (unix_socket) {
        snprintf(s->path, sizeof s->path, "/tmp/rill-load-test-%d.sock", getpid());
        unlink(s->path);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strcpy(a.sun_path, s->path);
        s->lfd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
        cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0, "%s", strerror(errno));
    } else {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof a;
        s->lfd = socket(AF_INET, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
        cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof a), 0);
        getsockname(s->lfd, (struct sockaddr *)&a, &len);
        s->port = ntohs(a.sin_port);
    }
    if (!udp)
        cr_assert_eq(listen(s->lfd, 128), 0);
    cr_assert_eq(pthread_create(&s->tid, NULL, udp ? udp_main : accept_main, s), 0);
    return s;
}

static struct srv *srv_start(enum mode mode, bool unix_socket)
{
    return srv_start_type(mode, unix_socket, SOCK_STREAM);
}

static void srv_stop(struct srv *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->tid, NULL);
    for (int i = 0; i < 200 && atomic_load(&s->active) > 0; i++)
        usleep(10000);
    close(s->lfd);
    if (s->path[0])
        unlink(s->path);
    if (atomic_load(&s->active) == 0)
        free(s); /* else a connection thread still looks at it: leave it to the process's end */
}

static void srv_uri(const struct srv *s, const char *scheme, const char *suffix, char *out,
                    size_t cap)
{
    if (s->path[0])
        snprintf(out, cap, "unix:%s", s->path);
    else
        snprintf(out, cap, "%s://127.0.0.1:%d%s", scheme, s->port, suffix);
}

/* Fails the test when a sanitizer reported anything in rill-load's output (its exit code alone
 * would not tell a report from an ordinary "exit 1"). */
static void check_log(const char *log)
{
    FILE *f = fopen(log, "r");
    cr_assert_not_null(f);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "Sanitizer") || strstr(line, "runtime error:")) {
            fclose(f);
            cr_assert_fail("rill-load: %s(see %s)", line, log);
        }
    }
    fclose(f);
    unlink(log);
}

/* Runs rill-load with args (NULL-terminated, argv[0] excluded) for at most limit_s; its output
 * goes to a log file that is printed when the test fails. Returns its exit code. */
static int run_load(const char *const *args, int limit_s)
{
    const char *argv[64] = {RILL_LOAD_BIN};
    int n = 1;
    for (; args[n - 1] && n < 63; n++)
        argv[n] = args[n - 1];
    argv[n] = NULL;
    char log[64];
    snprintf(log, sizeof log, "/tmp/rill-load-test-%d.log", getpid());
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(RILL_LOAD_BIN, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    uint64_t end = h_now_ms() + (uint64_t)limit_s * 1000;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (h_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            cr_assert_fail("rill-load did not finish within %d s (hung)", limit_s);
        }
        usleep(20000);
    }
    cr_assert(WIFEXITED(st), "rill-load died: signal %d", WTERMSIG(st));
    check_log(log);
    return WEXITSTATUS(st);
}

static struct jv *load_json(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    static char text[4 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    size_t at = 0;
    struct jv *root = jv_parse(text, &at);
    cr_assert_not_null(root, "%s is not JSON (at byte %zu)", path, at);
    return root;
}

static double num(const struct jv *root, const char *path)
{
    const struct jv *v = jv_get(root, path);
    cr_assert(v && v->type == JV_NUM, "no number at %s", path);
    return v->num;
}

static void json_path(char *out, size_t cap, const char *tag)
{
    snprintf(out, cap, "/tmp/rill-load-test-%d-%s.json", getpid(), tag);
}

#define BACKEND_ARG(b) (strcmp((b), "uring") == 0 ? "uring" : "epoll")

/* Skips when the backend cannot run here: rill-load then fails to create its loop. */
static void need_backend(const char *backend)
{
    rill_loop *l = h_loop(backend);
    rill_loop_destroy(l);
}

/* Runs rill-load on `backend` against uri with opts (NULL-terminated; -q, -b and --json are
 * added) for at most 20 s, and returns its parsed JSON report, the file already removed, and
 * its exit status in *rc. Free the report with report_free(). */
static struct jv *run_report(const char *backend, const char *uri, const char *const *opts,
                             int *rc)
{
    char js[128];
    json_path(js, sizeof js, "report");
    const char *args[48];
    int n = 0;
    for (; opts[n] && n < 40; n++)
        args[n] = opts[n];
    const char *tail[] = {"-q", "-b", BACKEND_ARG(backend), "--json", js, uri, NULL};
    memcpy(&args[n], tail, sizeof tail);
    *rc = run_load(args, 20);
    struct jv *j = load_json(js);
    unlink(js);
    return j;
}

static void report_free(struct jv *j)
{
    jv_free(j);
    free(j);
}

/* ---- the load models ----------------------------------------------------------------------- */

/* The schedule's accuracy is only defined while the client keeps up with it: a run in which
 * rill-load says it fell behind (over 1% of requests taken up late: the test machine was
 * overloaded) is retried, up to three runs, and the test skips, saying so, if none kept up. */
H_BACKEND_TEST(load_run, open_loop_rate_within_one_percent, .timeout = 45)
{
    need_backend(backend);
    struct srv *s = srv_start(M_ECHO, false);
    char uri[128];
    srv_uri(s, "tcp", "", uri, sizeof uri);
    const char *opts[] = {"-c", "4", "-R", "2000", "-d", "2", "--warmup", "1", NULL};
    for (int attempt = 1; attempt <= 3; attempt++) {
        int rc;
        struct jv *j = run_report(backend, uri, opts, &rc);
        cr_assert_eq(rc, 0);
        double rps = num(j, "results.requests_per_s"), offered = num(j, "results.offered_per_s");
        double sent = num(j, "results.sent"), late = num(j, "results.late");
        bool kept_up = late <= 0.01 * sent;
        /* The saturation flag must agree with what it is made of. */
        const struct jv *sat = jv_get(j, "results.saturated");
        cr_assert(sat && sat->type == JV_BOOL && (kept_up || sat->num != 0));
        if (kept_up) {
            cr_assert_float_eq(offered, 2000, 2000 * 0.001, "offered %.1f", offered);
            cr_assert_float_eq(rps, 2000, 2000 * 0.01,
                               "achieved %.1f of 2000/s (sent %.0f, late %.0f, held %.0f, "
                               "unanswered %.0f, window %.3f s)", rps, sent, late,
                               num(j, "results.held"), num(j, "results.unanswered"),
                               num(j, "results.window_s"));
            cr_assert_eq(num(j, "results.skipped"), 0);
            cr_assert_eq(num(j, "results.errors.total"), 0);
        }
        report_free(j);
        if (kept_up) {
            srv_stop(s);
            return;
        }
        fprintf(stderr, "open_loop_rate (%s): run %d fell behind (%.0f of %.0f late), again\n",
                backend, attempt, late, sent);
    }
    srv_stop(s);
    cr_skip_test("rill-load fell behind its schedule in 3 runs: this machine is too busy");
}

H_BACKEND_TEST(load_run, coordinated_omission_is_corrected, .timeout = 30)
{
    need_backend(backend);
    struct srv *s = srv_start(M_STALL, false);
    char uri[128];
    srv_uri(s, "tcp", "", uri, sizeof uri);
    /* 1000/s on one connection: the 500 ms stall (1 s in) holds up ~500 requests. */
    const char *opts[] = {"-c", "1", "-R", "1000", "-d", "3", "--warmup", "0", NULL};
    int rc;
    struct jv *j = run_report(backend, uri, opts, &rc);
    cr_assert_eq(rc, 0);
    srv_stop(s);
    double corr = num(j, "results.latency.p99_9_us");
    double unc = num(j, "results.latency_uncorrected.p99_9_us");
    double unc_max = num(j, "results.latency_uncorrected.max_us");
    cr_assert_geq(corr, 400000, "corrected p99.9 %.0f us must show the 500 ms stall", corr);
    cr_assert_lt(unc, 100000, "uncorrected p99.9 %.0f us should not show it", unc);
    cr_assert_geq(unc_max, 400000, "the one request caught in the stall is its max (%.0f)",
                  unc_max);
    cr_assert_geq(num(j, "results.held"), 100, "the stalled requests were held back");
    report_free(j);
}

H_BACKEND_TEST(load_run, request_count_ends_the_run, .timeout = 30)
{
    need_backend(backend);
    struct srv *s = srv_start(M_ECHO, false);
    char uri[128];
    srv_uri(s, "tcp", "", uri, sizeof uri);
    const char *opts[] = {"-c", "4", "-n", "3000", "--warmup", "0", "-s", "1:300", NULL};
    uint64_t t0 = h_now_ms();
    int rc;
    struct jv *j = run_report(backend, uri, opts, &rc);
    cr_assert_eq(rc, 0);
    cr_assert_lt(h_now_ms() - t0, 15000, "-n 3000 must end the run long before its 1 h bound");
    srv_stop(s);
    cr_assert_eq(num(j, "results.requests"), 3000);
    cr_assert_eq(num(j, "results.errors.total"), 0);
    report_free(j);
}

H_BACKEND_TEST(load_run, churn_reports_connect_latency, .timeout = 30)
{
    need_backend(backend);
    struct srv *s = srv_start(M_ECHO, false);
    char uri[128];
    srv_uri(s, "tcp", "", uri, sizeof uri);
    const char *opts[] = {"-c", "2", "--churn", "5", "-d", "1", "--warmup", "0", NULL};
    int rc;
    struct jv *j = run_report(backend, uri, opts, &rc);
    cr_assert_eq(rc, 0);
    srv_stop(s);
    double reqs = num(j, "results.requests"), connects = num(j, "results.connects");
    cr_assert_gt(reqs, 50);
    /* Every 5 requests a connection is replaced (the first two opened before the window
     * counts began, or just at it). */
    cr_assert_geq(connects, reqs / 5 - 4, "%.0f connects for %.0f requests", connects, reqs);
    cr_assert_eq(num(j, "results.connect_latency.count"), connects);
    cr_assert_gt(num(j, "results.connect_latency.p50_us"), 0);
    cr_assert_eq(num(j, "results.errors.total"), 0);
    report_free(j);
}

H_BACKEND_TEST(load_run, unix_stream, .timeout = 30)
{
    need_backend(backend);
    struct srv *s = srv_start(M_ECHO, true);
    char uri[160];
    srv_uri(s, "", "", uri, sizeof uri);
    const char *opts[] = {"-c", "2", "-d", "1", "--warmup", "0", "-s", "4k", "--depth", "4", NULL};
    int rc;
    struct jv *j = run_report(backend, uri, opts, &rc);
    cr_assert_eq(rc, 0);
    srv_stop(s);
    cr_assert_gt(num(j, "results.requests"), 100);
    cr_assert_eq(num(j, "results.errors.total"), 0);
    report_free(j);
}

H_BACKEND_TEST(load_run, unix_seqpacket, .timeout = 30)
{
    need_backend(backend);
    struct srv *s = srv_start_type(M_ECHO, true, SOCK_SEQPACKET);
    char uri[160];
    snprintf(uri, sizeof uri, "unix+seqpacket:%s", s->path);
    const char *opts[] = {"-c", "2", "-d", "1", "--warmup", "0", "-s", "1:8k", "--depth", "3", NULL};
    int rc;
    struct jv *j = run_report(backend, uri, opts, &rc);
    cr_assert_eq(rc, 0);
    srv_stop(s);
    cr_assert_gt(num(j, "results.requests"), 100);
    cr_assert_eq(num(j, "results.errors.total"), 0);
    report_free(j);
}

H_BACKEND_TEST(load_run, udp_echo_and_loss, .timeout = 40)
{
    need_backend(backend);
    static const enum mode modes[] = {M_UDP, M_UDP_DROP};
    for (int i = 0; i < 2; i++) {
        struct srv *s = srv_start(modes[i], false);
        char uri[128];
        srv_uri(s, "udp", "", uri, sizeof uri);
        const char *opts[] = {"-c", "4", "-d", "2", "--warmup", "0", "-s", "8:1400", NULL};
        int rc;
        struct jv *j = run_report(backend, uri, opts, &rc);
        cr_assert_eq(rc, 0);
        srv_stop(s);
        cr_assert_gt(num(j, "results.requests"), 100);
        if (modes[i] == M_UDP) {
            cr_assert_eq(num(j, "results.errors.total"), 0);
        } else {
            /* Every 50th datagram dropped: each loss is counted once the 1 s timeout passes. */
            cr_assert_geq(num(j, "results.errors.lost"), 2);
            cr_assert_eq(num(j, "results.errors.total"), num(j, "results.errors.lost"));
        }
        report_free(j);
    }
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

H_BACKEND_TEST(load_run, http_keepalive_pipelined, .timeout = 30)
{
    need_backend(backend);
    struct srv *s = srv_start(M_HTTP, false);
    char uri[128];
    srv_uri(s, "http", "/plaintext", uri, sizeof uri);
    const char *opts[] = {"-c", "4", "--depth", "8", "-d", "1", "--warmup", "0", NULL};
    int rc;
    struct jv *j = run_report(backend, uri, opts, &rc);
    cr_assert_eq(rc, 0);
    srv_stop(s);
    double reqs = num(j, "results.requests");
    cr_assert_gt(reqs, 100);
    cr_assert_eq(num(j, "results.http_status.2xx"), reqs);
    cr_assert_eq(num(j, "results.errors.total"), 0);
    report_free(j);
}

H_BACKEND_TEST(load_run, http_errors_counted, .timeout = 30)
{
    need_backend(backend);
    static const struct {
        enum mode m;
        const char *field;
    } cases[] = {{M_HTTP_404, "results.errors.status"}, {M_HTTP_GARBAGE, "results.errors.garbage"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct srv *s = srv_start(cases[i].m, false);
        char uri[128];
        srv_uri(s, "http", "/", uri, sizeof uri);
        const char *opts[] = {"-c", "2", "-d", "1", "--warmup", "0", NULL};
        int rc;
        struct jv *j = run_report(backend, uri, opts, &rc);
        srv_stop(s);
        cr_assert(rc == 0 || rc == 1, "exit %d", rc);
        cr_assert_gt(num(j, cases[i].field), 0, "%s", cases[i].field);
        if (cases[i].m == M_HTTP_404)
            cr_assert_eq(num(j, "results.http_status.4xx"), num(j, "results.requests"));
        report_free(j);
    }
}

/* ---- bad servers ----------------------------------------------------------------------------- */

H_BACKEND_TEST(load_run, misbehaving_servers_counted_by_kind, .timeout = 50)
{
    need_backend(backend);
    static const struct {
        enum mode m;
        const char *field;
    } cases[] = {
        {M_GARBAGE, "results.errors.garbage"},
        {M_SHORT, "results.errors.short"},
        {M_EXTRA, "results.errors.extra"},
        {M_RESET, "results.errors.connection.ECONNRESET"},
        {M_CLOSE, "results.errors.eof"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct srv *s = srv_start(cases[i].m, false);
        char uri[128];
        srv_uri(s, "tcp", "", uri, sizeof uri);
        const char *opts[] = {"-c", "2", "-d", "1", "--warmup", "0", NULL};
        int rc;
        struct jv *j = run_report(backend, uri, opts, &rc);
        srv_stop(s);
        /* 1: no request completed, or (garbage) a reply's bytes differed; never a crash. */
        cr_assert(rc == 0 || rc == 1, "%s: exit %d", cases[i].field, rc);
        const struct jv *v = jv_get(j, cases[i].field);
        cr_assert(v && v->type == JV_NUM && v->num > 0, "%s not counted", cases[i].field);
        /* Reopened after every failure: more than a handful of attempts in the second. */
        cr_assert_geq(num(j, "results.errors.total"), 2, "%s", cases[i].field);
        report_free(j);
    }
}

/* ---- --json and merge ---------------------------------------------------------------------- */

/* Every field README.md documents for --json, with its type: n number, s string, b bool,
 * a array, o object, N number or null. */
static const char json_fields[] =
    "tool:s format:n version:s command:a "
    "config.target:s config.uri:s config.protocol:s config.model:s config.connections:n "
    "config.threads:n config.depth:n config.duration_s:n config.warmup_s:n "
    "config.requests_limit:n config.size_min:n config.size_max:n config.rate:n config.dist:s "
    "config.ramp_s:n config.churn:n config.timeout_ms:n config.pin:a config.server_pid:n "
    "machine.cpu_model:s machine.cpus:n machine.kernel:s machine.kernel_version:s "
    "machine.arch:s machine.backend:s machine.caps:n "
    "results.window_s:n results.requests:n results.requests_per_s:n results.offered_per_s:n "
    "results.sent:n results.late:n results.held:n results.skipped:n results.bytes:n "
    "results.mb_per_s:n results.connects:n results.unanswered:n "
    "results.oldest_unanswered_us:n results.http_status:o results.errors.total:n "
    "results.errors.warmup:n results.errors.connect:o results.errors.connection:o "
    "results.errors.send:o results.errors.eof:n results.errors.short:n results.errors.extra:n "
    "results.errors.garbage:n results.errors.status:n results.errors.lost:n results.saturated:b "
    "results.saturated_why:s results.client_busy_max:n "
    "cost.client_cpu_us_per_request:N cost.client_user_s:n cost.client_sys_s:n "
    "cost.client_poll_us_per_request:N "
    "cost.syscalls_per_request:N cost.reads_per_request:N cost.writes_per_request:N "
    "cost.polls_per_request:N cost.uring_enters_per_request:N cost.sqes_per_request:N "
    "cost.cqes_per_request:N cost.iterations_per_request:N cost.server_cpu_us_per_request:N "
    "histograms.latency:h histograms.latency_uncorrected:h histograms.connect:h series:a";

/* The latency summaries (results.latency, ...) and a series entry hold these. */
static const char *const summary_fields = "count min_us mean_us p50_us p90_us p99_us p99_9_us "
                                          "p99_99_us max_us";
static const char *const series_fields = "t warmup requests rate p50_us p99_us errors open";

static const char validator[] =
    "import json, sys\n"
    "doc = json.load(open(sys.argv[1]))\n"
    "types = {'n': (int, float), 's': str, 'b': bool, 'a': list, 'o': dict, 'h': dict}\n"
    "def get(path):\n"
    "    v = doc\n"
    "    for p in path.split('.'):\n"
    "        v = v[p]\n"
    "    return v\n"
    "for spec in sys.argv[2].split():\n"
    "    path, t = spec.split(':')\n"
    "    v = get(path)\n"
    "    if t == 'N':\n"
    "        assert v is None or isinstance(v, (int, float)), path\n"
    "        continue\n"
    "    assert isinstance(v, types[t]) and not (t == 'n' and isinstance(v, bool)), path\n"
    "    if t == 'h':\n"
    "        for k in 'unit sub_bits max_bits count min max sum buckets'.split():\n"
    "            assert k in v, path + '.' + k\n"
    "        assert sum(c for i, c in v['buckets']) == v['count'], path + ' bucket sum'\n"
    "for s in 'latency latency_uncorrected connect_latency'.split():\n"
    "    for k in sys.argv[3].split():\n"
    "        assert isinstance(doc['results'][s][k], (int, float)), s + '.' + k\n"
    "assert len(doc['series']) >= 2, 'series'\n"
    "for e in doc['series']:\n"
    "    for k in sys.argv[4].split():\n"
    "        assert k in e, 'series.' + k\n"
    "assert doc['results']['requests'] == doc['histograms']['latency']['count']\n"
    "print('ok')\n";

/* Runs the validator on a file; returns python's exit code (1 for a missing field). */
static int validate_json(const char *js)
{
    char py[96], cmd[4096];
    snprintf(py, sizeof py, "/tmp/rill-load-test-%d.py", getpid());
    FILE *f = fopen(py, "w");
    cr_assert_not_null(f);
    fputs(validator, f);
    fclose(f);
    int n = snprintf(cmd, sizeof cmd, "python3 %s %s '%s' '%s' '%s' >/dev/null 2>&1", py, js,
                     json_fields, summary_fields, series_fields);
    cr_assert_lt((size_t)n, sizeof cmd);
    int rc = system(cmd);
    unlink(py);
    cr_assert(WIFEXITED(rc), "python3 did not run");
    return WEXITSTATUS(rc);
}

H_BACKEND_TEST(load_run, json_holds_every_documented_field, .timeout = 30)
{
    need_backend(backend);
    if (system("python3 -c 'import json' 2>/dev/null") != 0)
        cr_skip_test("python3 is not available to check the JSON independently");
    struct srv *s = srv_start(M_ECHO, false);
    char uri[128], js[128];
    srv_uri(s, "tcp", "", uri, sizeof uri);
    json_path(js, sizeof js, "doc");
    const char *args[] = {"-c", "2", "-R", "500", "-d", "1", "--warmup", "1", "--pin", "0",
                          "-b", BACKEND_ARG(backend), "--json", js, uri, NULL};
    cr_assert_eq(run_load(args, 20), 0);
    srv_stop(s);
    cr_assert_eq(validate_json(js), 0, "%s lacks a documented field", js);
    struct jv *j = load_json(js);
    cr_assert_eq(num(j, "config.rate"), 500);
    cr_assert_str_eq(jv_get(j, "machine.backend")->str,
                     strcmp(backend, "uring") == 0 ? "io_uring" : "epoll");
    report_free(j);
    /* A field that is not there must fail the check, or the check proves nothing. */
    char cmd[512], bad[160];
    snprintf(bad, sizeof bad, "%s.bad", js);
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import json; d=json.load(open('%s')); del d['results']['held'];"
             " json.dump(d, open('%s', 'w'))\"", js, bad);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(validate_json(bad), 1, "the validator must notice a missing field");
    unlink(bad);
    unlink(js);
}

H_BACKEND_TEST(load_run, merge_adds_histograms, .timeout = 40)
{
    need_backend(backend);
    struct srv *s = srv_start(M_ECHO, false);
    char uri[128], a[128], b[128], m[128];
    srv_uri(s, "tcp", "", uri, sizeof uri);
    json_path(a, sizeof a, "ma");
    json_path(b, sizeof b, "mb");
    json_path(m, sizeof m, "mm");
    /* Two different loads: a closed loop and a slow open loop. */
    const char *a1[] = {"-c", "2", "-d", "1", "--warmup", "0", "-q", "-b", BACKEND_ARG(backend),
                        "--json", a, uri, NULL};
    const char *a2[] = {"-c", "1", "-R", "300", "-d", "1", "--warmup", "0", "-q", "-b",
                        BACKEND_ARG(backend), "--json", b, uri, NULL};
    cr_assert_eq(run_load(a1, 20), 0);
    cr_assert_eq(run_load(a2, 20), 0);
    srv_stop(s);
    const char *a3[] = {"merge", "--json", m, a, b, NULL};
    cr_assert_eq(run_load(a3, 20), 0);
    struct jv *ja = load_json(a), *jb = load_json(b), *jm = load_json(m);
    static struct hist ha, hb, hm;
    cr_assert_eq(jv_hist(jv_get(ja, "histograms.latency"), &ha), 0);
    cr_assert_eq(jv_hist(jv_get(jb, "histograms.latency"), &hb), 0);
    cr_assert_eq(jv_hist(jv_get(jm, "histograms.latency"), &hm), 0);
    hist_merge(&ha, &hb);
    cr_assert_eq(memcmp(ha.b, hm.b, sizeof ha.b), 0, "merged buckets are not the sum");
    cr_assert_eq(hm.count, ha.count);
    cr_assert_eq(num(jm, "results.requests"),
                 num(ja, "results.requests") + num(jb, "results.requests"));
    cr_assert_float_eq(num(jm, "results.latency.p99_us"), (double)hist_quantile(&ha, 0.99) / 1e3,
                       1e-6);
    jv_free(ja);
    jv_free(jb);
    jv_free(jm);
    free(ja);
    free(jb);
    free(jm);
    unlink(a);
    unlink(b);
    unlink(m);
}
