/* Network namespaces for tests that need more than loopback (multicast, broadcast): the test
 * body runs in a forked child that has unshared its network namespace and built interfaces in
 * it with iproute2.
 *
 * The namespace has no name (no bind mount under /run/netns), so nothing can leak: it lives as
 * long as the child and every process the child started, and the kernel removes it, with its
 * interfaces, when they are gone, however they end (a failed check, a crash, the parent's
 * SIGKILL on timeout).
 *
 * The child cannot use Criterion's asserts (an assert would make the child report and finish
 * the test as if it were the worker), so the body checks with H_NS_CHECK and skips with
 * H_NS_SKIP: each writes one line for the parent and exits. The parent turns the child's exit
 * into a pass, a skip (exit 77) or a failure carrying the child's line. */
#ifndef RILL_TEST_NETNS_UTIL_H
#define RILL_TEST_NETNS_UTIL_H

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>

#include "harness.h"

#define H_NS_SKIP_EXIT 77

static int h_ns_report_fd = -1;

/* Reports why the child stops and exits with code (0 passes, 77 skips, anything else fails). */
__attribute__((format(printf, 4, 5), noreturn)) static inline void
h_ns_exit(int code, const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (h_ns_report_fd >= 0 && write(h_ns_report_fd, msg, strlen(msg)) < 0)
        _exit(code);
    _exit(code);
}

#define H_NS_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond))                                                                           \
            h_ns_exit(1, __FILE__, __LINE__, __VA_ARGS__);                                     \
    } while (0)
#define H_NS_SKIP(...) h_ns_exit(H_NS_SKIP_EXIT, __FILE__, __LINE__, __VA_ARGS__)

/* Runs `ip WORDS` (one command line, split at spaces), its output thrown away.
 * Returns its exit status. */
static inline int h_ns_ip(const char *line)
{
    char buf[256], *argv[32];
    int argc = 0;
    snprintf(buf, sizeof buf, "%s", line);
    argv[argc++] = "ip";
    for (char *save, *w = strtok_r(buf, " ", &save); w && argc < 31; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return 126;
    if (pid == 0) {
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0)
            dup2(dn, 1), dup2(dn, 2);
        execvp("ip", argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return 126;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* A veth pair mcA/mcB, both up; mcA has 10.99.0.1-3/24 (broadcast 10.99.0.255) and
 * fd00:99::1-3/64, and the IPv4 multicast and limited broadcast routes lead out of it (the
 * IPv6 ff00::/8 route comes with the link). Sent to a group joined on mcA, a datagram is looped
 * back to this host's members (IP_MULTICAST_LOOP); its copy that reaches mcB is dropped there,
 * mcB being a member of nothing. A line starting with '?' skips the test when it fails (veth
 * may be missing from the kernel); any other failing line fails it. */
static const char *const h_ns_veth_script[] = {
    "?link add mcA type veth peer name mcB",
    "link set lo up",
    "addr add 10.99.0.1/24 brd + dev mcA",
    "addr add 10.99.0.2/24 dev mcA",
    "addr add 10.99.0.3/24 dev mcA",
    "-6 addr add fd00:99::1/64 dev mcA nodad",
    "-6 addr add fd00:99::2/64 dev mcA nodad",
    "-6 addr add fd00:99::3/64 dev mcA nodad",
    "link set mcA up",
    "link set mcB up",
    "route add 224.0.0.0/4 dev mcA",
    "route add 255.255.255.255/32 dev mcA",
    NULL,
};

/* In the child: a new namespace, built by script. */
static inline void h_ns_enter(const char *const *script)
{
    if (unshare(CLONE_NEWNET) < 0)
        H_NS_SKIP("unshare(CLONE_NEWNET): %s", strerror(errno));
    for (; *script; script++) {
        bool optional = (*script)[0] == '?';
        const char *line = *script + optional;
        int r = h_ns_ip(line);
        if (r != 0 && optional)
            H_NS_SKIP("`ip %s` failed (exit %d): not available here", line, r);
        H_NS_CHECK(r == 0, "network set-up `ip %s` failed (exit %d)", line, r);
    }
}

/* In the child: a loop on the named backend, or a skip when that backend cannot run here. */
static inline rill_loop *h_ns_loop(const char *backend)
{
    struct rill_loop_config c;
    rill_loop_config_init(&c);
    bool uring = strcmp(backend, "uring") == 0;
    c.backend = uring ? RILL_BACKEND_URING : RILL_BACKEND_EPOLL;
    unsetenv("RILL_BACKEND");
    rill_loop *l = NULL;
    int r = rill_loop_create(&c, &l);
    if (uring && (r == -ENOSYS || r == -EPERM || r == -ENOMEM || r == -EOPNOTSUPP))
        H_NS_SKIP("%s backend unavailable here: %s", backend, rill_strerror(r));
    H_NS_CHECK(r == 0, "rill_loop_create(%s): %s", backend, rill_strerror(r));
    return l;
}

/* Runs body(backend) in a child inside a fresh namespace built by script, for at most ms
 * (then the child is killed and the test fails). Skips when not root or without `ip`. */
static inline void h_netns_run(const char *backend, const char *const *script,
                               void (*body)(const char *backend), unsigned ms)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to create a network namespace");
    if (system("command -v ip >/dev/null 2>&1") != 0)
        cr_skip_test("iproute2 (`ip`) not found");
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(p[0]);
        h_ns_report_fd = p[1];
        h_ns_enter(script);
        body(backend);
        _exit(0);
    }
    close(p[1]);
    char msg[512];
    size_t n = 0;
    uint64_t end = h_now_ms() + ms;
    bool timed_out = false;
    for (;;) {
        int64_t left = (int64_t)(end - h_now_ms());
        if (left <= 0) {
            timed_out = true;
            break;
        }
        if (!h_readable(p[0], (int)left))
            continue;
        ssize_t r = read(p[0], msg + n, sizeof msg - 1 - n);
        if (r <= 0)
            break; /* the child (and everything it started) closed its end: done */
        n += (size_t)r;
    }
    msg[n] = '\0';
    close(p[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(!timed_out, "the namespace child took over %u ms", ms);
    cr_assert(WIFEXITED(st), "the namespace child died by signal %d", WTERMSIG(st));
    if (WEXITSTATUS(st) == H_NS_SKIP_EXIT)
        cr_skip_test("%s", msg);
    cr_assert_eq(WEXITSTATUS(st), 0, "%s", n ? msg : "the namespace child failed");
}

#endif
