/* The classic socket-course programs of tools/examples, run as real processes on both backends
 * (RILL_BACKEND in their environment), with their expected output checked. The multicast
 * announcer and listener run in a network namespace of their own (tests/netns_util.h). */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "netns_util.h"

#ifndef RILL_EXAMPLE_DIR
/* Built without tools (RILL_TOOLS=OFF): there is nothing to run. */
Test(examples, not_built)
{
    cr_skip_test("the examples are not built (RILL_TOOLS=OFF)");
}
#else

struct server {
    pid_t pid;
    FILE *out;
    char addr[256];
};

/* Reads one line from fd within ms, or fails the test. */
static void read_line(FILE *f, char *buf, size_t cap, int ms, const char *what)
{
    cr_assert(h_readable(fileno(f), ms), "no output from %s within %d ms", what, ms);
    cr_assert_not_null(fgets(buf, (int)cap, f), "%s closed its output", what);
    buf[strcspn(buf, "\n")] = '\0';
}

static void start_server(const char *backend, const char *prog, const char *arg, struct server *s)
{
    /* Skips here, before any process starts, if the backend cannot run on this machine. */
    rill_loop_destroy(h_loop(backend));
    int p[2];
    cr_assert_eq(pipe(p), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", RILL_EXAMPLE_DIR, prog);
    s->pid = fork();
    cr_assert_geq(s->pid, 0);
    if (s->pid == 0) {
        setenv("RILL_BACKEND", backend, 1);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execl(path, prog, arg, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    s->out = fdopen(p[0], "r");
    char line[256];
    read_line(s->out, line, sizeof line, 5000, prog);
    cr_assert_eq(strncmp(line, "listening ", 10), 0, "%s said: %s", prog, line);
    snprintf(s->addr, sizeof s->addr, "%s", line + 10);
}

static void stop_server(struct server *s)
{
    kill(s->pid, SIGTERM);
    int status;
    cr_assert_eq(waitpid(s->pid, &status, 0), s->pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "server exit status %d", status);
    fclose(s->out);
}

/* Runs a client with argv (argv[0] is the program name), feeding it `input`; returns its
 * standard output (static storage) and checks it exits 0 within 10 s. */
static const char *run_client(const char *backend, char *const argv[], const char *input)
{
    static char out[65536];
    int in[2], o[2];
    cr_assert_eq(pipe(in), 0);
    cr_assert_eq(pipe(o), 0);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", RILL_EXAMPLE_DIR, argv[0]);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("RILL_BACKEND", backend, 1);
        dup2(in[0], 0);
        dup2(o[1], 1);
        close(in[0]), close(in[1]), close(o[0]), close(o[1]);
        execv(path, argv);
        _exit(127);
    }
    close(in[0]);
    close(o[1]);
    if (input)
        cr_assert_eq(write(in[1], input, strlen(input)), (ssize_t)strlen(input));
    close(in[1]);
    size_t n = 0;
    uint64_t end = h_now_ms() + 10000;
    for (;;) {
        cr_assert_lt(h_now_ms(), end, "%s did not finish", argv[0]);
        if (!h_readable(o[0], 100))
            continue;
        ssize_t r = read(o[0], out + n, sizeof out - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    out[n] = '\0';
    close(o[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s exit status %d, output: %s",
              argv[0], status, out);
    return out;
}

H_BACKEND_TEST(examples, unix_next_letter, .timeout = 60)
{
    char path[96];
    snprintf(path, sizeof path, "/tmp/rill-letters-%d-%s.sock", getpid(), backend);
    struct server s;
    start_server(backend, "example_unix_letters_server", path, &s);
    char *argv[] = {"example_unix_letters_client", path, "Hello, zebra! Zz", NULL};
    cr_assert_str_eq(run_client(backend, argv, NULL), "Ifmmp, afcsb! Aa\n");
    stop_server(&s);
    struct stat st;
    cr_assert_neq(stat(path, &st), 0, "the server removed its socket file");
}

H_BACKEND_TEST(examples, tcp_upper_case_lines, .timeout = 60)
{
    struct server s;
    start_server(backend, "example_tcp_upper_server", "tcp://127.0.0.1:0", &s);
    char *argv[] = {"example_tcp_upper_client", s.addr, NULL};
    /* The client sends 7 bytes at a time: every line here crosses a piece boundary. */
    const char *in = "hello world\nrill splits nothing\nabc\n\nmixed Case 123 line\nno newline";
    cr_assert_str_eq(run_client(backend, argv, in),
                     "HELLO WORLD\nRILL SPLITS NOTHING\nABC\n\nMIXED CASE 123 LINE\nNO NEWLINE\n");
    stop_server(&s);
}

H_BACKEND_TEST(examples, udp_request_response, .timeout = 60)
{
    struct server s;
    start_server(backend, "example_udp_reverse_server", "udp://127.0.0.1:0", &s);
    char *argv[] = {"example_udp_reverse_client", s.addr, "hello", "world", "stressed", NULL};
    cr_assert_str_eq(run_client(backend, argv, NULL), "olleh\ndlrow\ndesserts\n");
    stop_server(&s);
}

H_BACKEND_TEST(examples, tcp_concurrent_sums, .timeout = 60)
{
    struct server s;
    start_server(backend, "example_tcp_sum_server", "tcp://127.0.0.1:0", &s);
    int port = atoi(strrchr(s.addr, ':') + 1);
    /* 100 clients connected at once, each sending its own numbers in two pieces before any
     * of them finishes: the server must keep 100 totals apart. */
    enum { N = 100 };
    int fds[N];
    for (int i = 0; i < N; i++)
        fds[i] = h_client(AF_INET, port);
    for (int i = 0; i < N; i++) {
        char a[64];
        int n = snprintf(a, sizeof a, "%d\n-%d\n1", i * 10, i);
        cr_assert_eq(write(fds[i], a, (size_t)n), n);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(write(fds[i], "00\n", 3), 3); /* the last number is 100 */
        shutdown(fds[i], SHUT_WR);
    }
    for (int i = 0; i < N; i++) {
        char want[64], got[64] = {0};
        snprintf(want, sizeof want, "sum %d count 3\n", i * 10 - i + 100);
        size_t n = 0;
        while (n < sizeof got - 1 && h_readable(fds[i], 5000)) {
            ssize_t r = read(fds[i], got + n, sizeof got - 1 - n);
            if (r <= 0)
                break; /* the server closed after its answer */
            n += (size_t)r;
        }
        cr_assert_str_eq(got, want, "client %d", i);
        close(fds[i]);
    }
    stop_server(&s);
}

/* ---- the multicast announcer and listener, in a namespace of their own --------------------- */

/* Starts the example with argv in the namespace child, its standard output on *out. */
static pid_t ns_start(char *const argv[], FILE **out)
{
    int p[2];
    H_NS_CHECK(pipe(p) == 0, "pipe");
    char path[512];
    snprintf(path, sizeof path, "%s/%s", RILL_EXAMPLE_DIR, argv[0]);
    pid_t pid = fork();
    H_NS_CHECK(pid >= 0, "fork");
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(path, argv);
        _exit(127);
    }
    close(p[1]);
    *out = fdopen(p[0], "r");
    return pid;
}

static void ns_line(FILE *f, char *buf, size_t cap, const char *what)
{
    H_NS_CHECK(h_readable(fileno(f), 5000), "no line from the %s within 5 s", what);
    H_NS_CHECK(fgets(buf, (int)cap, f) != NULL, "the %s closed its output", what);
    buf[strcspn(buf, "\n")] = '\0';
}

/* Waits up to 10 s for pid to exit 0. */
static void ns_reap(pid_t pid, const char *what)
{
    int st = 0;
    uint64_t end = h_now_ms() + 10000;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && h_now_ms() < end)
        h_sleep_ms(10);
    if (r == 0)
        kill(pid, SIGKILL), waitpid(pid, &st, 0);
    H_NS_CHECK(r == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the %s: status %d", what, st);
}

/* The listener joins on mcA and exits after 3 announcements, each from an address starting with
 * `from`; the announcer sends 5 (UDP has no
 * retries: the spare two cover a listener still starting) out of mcA with multicast loop on. */
static void multicast_pair(const char *group_uri, const char *from)
{
    char *lis[] = {"example_udp_multicast", "listen", (char *)group_uri, "mcA", "3", NULL};
    char *ann[] = {"example_udp_multicast", "announce", (char *)group_uri, "news", "mcA", "5",
                   NULL};
    FILE *lo, *ao;
    char line[256], want[128];
    pid_t lp = ns_start(lis, &lo);
    ns_line(lo, line, sizeof line, "listener");
    snprintf(want, sizeof want, "listening %s", group_uri);
    H_NS_CHECK(strcmp(line, want) == 0, "the listener said: %s", line);
    pid_t ap = ns_start(ann, &ao);
    ns_line(ao, line, sizeof line, "announcer");
    snprintf(want, sizeof want, "announcing to %s", group_uri);
    H_NS_CHECK(strcmp(line, want) == 0, "the announcer said: %s", line);
    snprintf(want, sizeof want, "news from %s", from);
    for (int i = 0; i < 3; i++) {
        ns_line(lo, line, sizeof line, "listener");
        H_NS_CHECK(strncmp(line, want, strlen(want)) == 0, "announcement %d: '%s', want '%s...'",
                   i, line, want);
    }
    ns_reap(lp, "listener");
    ns_reap(ap, "announcer");
    fclose(lo);
    fclose(ao);
}

static void multicast_body(const char *backend)
{
    setenv("RILL_BACKEND", backend, 1);
    multicast_pair("udp://239.1.2.3:7003", "10.99.0.1");
    /* The announcer's source is one of mcA's IPv6 addresses: the kernel picks which. */
    multicast_pair("udp://[ff15::1234]:7003", "fd00:99::");
}

H_BACKEND_TEST(examples, udp_multicast_announcer_and_listener, .timeout = 60)
{
    rill_loop_destroy(h_loop(backend)); /* skips when the backend cannot run here */
    h_netns_run(backend, h_ns_veth_script, multicast_body, 40000);
}

#endif
