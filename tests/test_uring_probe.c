/* io_uring probing and backend choice: the reasons a loop logs when io_uring cannot start, the
 * automatic fallback to epoll, the refusal to fall back when io_uring is forced, and the
 * capability bits each backend advertises.
 *
 * The failures are produced for real, not simulated: a forked child installs a seccomp filter
 * that makes io_uring_setup (or one io_uring_register opcode) fail with a chosen errno, the way
 * container runtimes, the kernel.io_uring_disabled sysctl or a low RLIMIT_MEMLOCK make it fail,
 * then creates a loop with its stderr on a pipe. The child reports through a second pipe and its
 * exit status; the parent (the Criterion worker) asserts. A seccomp filter cannot be removed, so
 * it must never be installed in the worker itself. */
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/io_uring.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "harness.h"
#include "probe.h"

#if defined(__x86_64__)
#define PROBE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define PROBE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifndef IORING_REGISTER_PBUF_RING
#define IORING_REGISTER_PBUF_RING 22
#endif

#define URING_BITS                                                                             \
    (RILL_CAP_MULTISHOT_ACCEPT | RILL_CAP_MULTISHOT_RECV | RILL_CAP_PROVIDED_BUFFERS |        \
     RILL_CAP_SEND_ZC | RILL_CAP_DEFER_TASKRUN | RILL_CAP_RECV_BUNDLE | RILL_CAP_MSG_RING |    \
     RILL_CAP_BUF_RING_INC)
#define URING_MUST (RILL_CAP_MULTISHOT_ACCEPT | RILL_CAP_MULTISHOT_RECV | RILL_CAP_PROVIDED_BUFFERS)

/* ---- the child ------------------------------------------------------------------------------ */

enum target {
    T_NONE,     /* no filter */
    T_SETUP,    /* io_uring_setup fails */
    T_REGISTER, /* io_uring_register(fd, `reg_op`, ...) fails */
};

struct probe_req {
    enum target target;
    int err;           /* errno the filter returns */
    unsigned reg_op;   /* for T_REGISTER */
    rill_backend which;
    const char *env;   /* RILL_BACKEND for the child, NULL: unset */
    int loops;         /* how many loops the child creates, all alive at once: 1 (0) or 2 */
    const char *fake_sysctl; /* non-NULL: what kernel.io_uring_disabled reads as in the child */
};

struct probe_res {
    int stage;     /* 0: nothing reported; 1: the filter could not be installed; 2: done;
                    * 3: the sysctl could not be faked */
    int filter_errno;
    int rc;        /* rill_loop_create */
    char backend[16];
    int rc2;       /* the second loop (loops = 2): rill_loop_create, its backend, run_once */
    char backend2[16];
    int run_rc2;
    uint32_t caps;
    int run_rc;    /* rill_loop_run_once(l, 0) on the loop created */
    int fds_before, fds_after;
    long leaks;    /* the library's allocations still live after rill_loop_destroy */
    long allocs;   /* ... and made in all */
    int alloc_rc;  /* rill_set_allocator */
};

struct probe_out {
    struct probe_res res;
    int status; /* waitpid status */
    char log[8192];
};

static int install_filter(const struct probe_req *q)
{
#ifndef PROBE_AUDIT_ARCH
    (void)q;
    errno = EOPNOTSUPP;
    return -1;
#else
    struct sock_filter f[16];
    unsigned n = 0;
    unsigned ret_err = (unsigned)SECCOMP_RET_ERRNO | ((unsigned)q->err & SECCOMP_RET_DATA);
    /* Another architecture's system call numbers mean something else: let them through. */
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROBE_AUDIT_ARCH, 1, 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    if (q->target == T_SETUP) {
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1);
        f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ret_err);
    } else {
        /* io_uring_register(fd, opcode, arg, nr_args): compare the opcode's low 32 bits. */
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 0, 3);
        f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                              offsetof(struct seccomp_data, args[1]));
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, q->reg_op, 0, 1);
        f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ret_err);
    }
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
#endif
}

/* Makes /proc/sys/kernel/io_uring_disabled read as `text` in this process only: a private
 * mount namespace and a file bind-mounted over it. The kernel's own setting is untouched (it is
 * not what refuses io_uring_setup here; the seccomp filter is), only what the library reads. */
static int fake_sysctl(const char *text)
{
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -1;
    char path[] = "/tmp/rill-test-sysctl-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    size_t n = strlen(text);
    int r = write(fd, text, n) == (ssize_t)n ? 0 : -1;
    close(fd);
    if (r == 0)
        r = mount(path, "/proc/sys/kernel/io_uring_disabled", NULL, MS_BIND, NULL);
    int e = errno;
    unlink(path); /* the bind mount keeps the file alive */
    errno = e;
    return r;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        c += w;
        n -= (size_t)w;
    }
}

/* The child counts the library's own allocations through rill_set_allocator(): a failed set-up
 * must free what it allocated. (LeakSanitizer cannot be used here: in a child forked from a
 * multi-threaded worker it sees threads it cannot suspend and warns of false leaks.) */
static long live_allocs, total_allocs;

static void *count_malloc(size_t n)
{
    void *p = malloc(n);
    if (p) {
        live_allocs++;
        total_allocs++;
    }
    return p;
}

static void *count_realloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (q && !p)
        live_allocs++;
    return q;
}

static void count_free(void *p)
{
    if (p)
        live_allocs--;
    free(p);
}

static void child(const struct probe_req *q, int resfd, int logfd)
{
    struct probe_res res = {0};
    if (dup2(logfd, STDERR_FILENO) < 0)
        _exit(90);
    close(logfd);
    setvbuf(stderr, NULL, _IONBF, 0);
    if (q->fake_sysctl && fake_sysctl(q->fake_sysctl) < 0) {
        res.stage = 3;
        res.filter_errno = errno;
        write_all(resfd, &res, sizeof res);
        _exit(0);
    }
    if (q->target != T_NONE && install_filter(q) < 0) {
        res.stage = 1;
        res.filter_errno = errno;
        write_all(resfd, &res, sizeof res);
        _exit(0);
    }
    if (q->env)
        setenv("RILL_BACKEND", q->env, 1);
    else
        unsetenv("RILL_BACKEND");
    res.alloc_rc = rill_set_allocator(count_malloc, count_realloc, count_free);
    res.fds_before = h_count_fds();
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.backend = q->which;
    rill_loop *l = NULL, *l2 = NULL;
    res.rc = rill_loop_create(&cfg, &l);
    if (res.rc == 0) {
        snprintf(res.backend, sizeof res.backend, "%s", rill_loop_backend_name(l));
        res.caps = rill_loop_caps(l);
        res.run_rc = rill_loop_run_once(l, 0);
    } else if (l) {
        res.rc = -10000; /* *out must stay NULL on failure */
        l = NULL;
    }
    if (q->loops == 2) {
        /* The second loop is created while the first is alive, as rill_engine's are. */
        res.rc2 = rill_loop_create(&cfg, &l2);
        if (res.rc2 == 0) {
            snprintf(res.backend2, sizeof res.backend2, "%s", rill_loop_backend_name(l2));
            res.run_rc2 = rill_loop_run_once(l2, 0);
            rill_loop_destroy(l2);
        } else if (l2) {
            res.rc2 = -10000;
        }
    }
    if (l)
        rill_loop_destroy(l);
    res.fds_after = h_count_fds();
    res.leaks = live_allocs;
    res.allocs = total_allocs;
    res.stage = 2;
    write_all(resfd, &res, sizeof res);
    /* _exit: the worker's atexit handlers (Criterion's among them) must not run twice. */
    _exit(0);
}

static size_t read_all(int fd, void *p, size_t cap)
{
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, (char *)p + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return got;
        got += (size_t)r;
        if (got == cap) { /* drain the rest so the child never blocks on a full pipe */
            char sink[512];
            while (read(fd, sink, sizeof sink) > 0)
                ;
            return got;
        }
    }
}

static void run_probe(const struct probe_req *q, struct probe_out *out)
{
    memset(out, 0, sizeof *out);
    int rp[2], lp[2];
    cr_assert_eq(pipe2(rp, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(lp, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(rp[0]);
        close(lp[0]);
        child(q, rp[1], lp[1]);
    }
    close(rp[1]);
    close(lp[1]);
    /* The log first: the child writes it before its result, and both are small. */
    size_t n = read_all(lp[0], out->log, sizeof out->log - 1);
    out->log[n] = '\0';
    size_t got = read_all(rp[0], &out->res, sizeof out->res);
    close(lp[0]);
    close(rp[0]);
    while (waitpid(pid, &out->status, 0) < 0 && errno == EINTR)
        ;
    /* Show the child's stderr: a sanitizer report in it must reach ctest's output. */
    if (n)
        fprintf(stderr, "[child stderr]\n%s", out->log);
    cr_assert(WIFEXITED(out->status) && WEXITSTATUS(out->status) == 0,
              "the child died (status 0x%x); its stderr:\n%s", out->status, out->log);
    cr_assert_eq(got, sizeof out->res, "the child reported nothing");
    if (out->res.stage == 1)
        cr_skip_test("cannot install a seccomp filter here: %s", strerror(out->res.filter_errno));
    if (out->res.stage == 3)
        cr_skip_test("cannot fake kernel.io_uring_disabled here (a private mount namespace and a "
                     "bind mount): %s", strerror(out->res.filter_errno));
    cr_assert_eq(out->res.stage, 2);
    cr_expect_eq(out->res.alloc_rc, 0, "rill_set_allocator in the child: %s",
                 rill_strerror(out->res.alloc_rc));
    cr_expect_gt(out->res.allocs, 0, "the counting allocator saw nothing");
    cr_expect_eq(out->res.leaks, 0, "%ld allocations of the library leaked", out->res.leaks);
    cr_expect_eq(out->res.fds_after, out->res.fds_before,
                 "descriptors leaked: %d before, %d after", out->res.fds_before, out->res.fds_after);
}

static int count_lines(const char *log, const char *prefix)
{
    int n = 0;
    size_t pl = strlen(prefix);
    for (const char *p = log; *p;) {
        if (!strncmp(p, prefix, pl))
            n++;
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        p = nl + 1;
    }
    return n;
}

/* io_uring works in this process (so the set-up steps after io_uring_setup can be tested). */
static void require_uring(void)
{
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.backend = RILL_BACKEND_URING;
    unsetenv("RILL_BACKEND");
    rill_loop *l = NULL;
    int r = rill_loop_create(&cfg, &l);
    if (r < 0)
        cr_skip_test("io_uring unavailable here: %s", rill_strerror(r));
    rill_loop_destroy(l);
}

#define NWORDS(w) ((int)(sizeof(w) / sizeof((w)[0])))

/* The log names every word before a NULL in words[] and none of those after it. */
static void check_words(const char *log, const char *const *words, int nwords)
{
    bool must = true;
    for (int i = 0; i < nwords; i++) {
        if (!words[i])
            must = false;
        else if (must)
            cr_expect(strstr(log, words[i]), "the reason must name \"%s\"; log:\n%s", words[i],
                      log);
        else
            cr_expect(!strstr(log, words[i]), "the reason must not say \"%s\"; log:\n%s",
                      words[i], log);
    }
}

/* An automatic loop under the filter: it must come up on epoll and say why, in one line (one
 * for the process: with q->loops = 2 the second loop falls back too, silently). */
static void expect_fallback(const struct probe_req *q, const char *const *words, int nwords)
{
    struct probe_out o;
    run_probe(q, &o);
    cr_assert_eq(o.res.rc, 0, "an automatic loop must fall back, got %s", rill_strerror(o.res.rc));
    cr_expect_str_eq(o.res.backend, "epoll");
    if (q->loops == 2) {
        cr_assert_eq(o.res.rc2, 0, "the second automatic loop must fall back too, got %s",
                     rill_strerror(o.res.rc2));
        cr_expect_str_eq(o.res.backend2, "epoll");
        cr_expect_geq(o.res.run_rc2, 0, "the second fallback loop runs: %s",
                      rill_strerror(o.res.run_rc2));
    }
    cr_expect(o.res.caps & RILL_CAP_EDGE_TRIGGERED, "caps 0x%x", o.res.caps);
    cr_expect_eq(o.res.caps & URING_BITS, 0, "an epoll loop advertises io_uring bits: 0x%x",
                 o.res.caps);
    cr_expect_geq(o.res.run_rc, 0, "the fallback loop runs: %s", rill_strerror(o.res.run_rc));
    cr_expect_eq(count_lines(o.log, "rill: "), 1, "exactly one log line, got:\n%s", o.log);
    cr_expect(strstr(o.log, "io_uring unavailable"), "log:\n%s", o.log);
    cr_expect(strstr(o.log, "using epoll"), "the line says what the loop does instead:\n%s",
              o.log);
    check_words(o.log, words, nwords);
}

/* A forced io_uring loop under the filter: no fallback, the error, and the reason logged. */
static void expect_refusal(const struct probe_req *q, int want, const char *const *words,
                           int nwords)
{
    struct probe_out o;
    run_probe(q, &o);
    cr_expect_eq(o.res.rc, want, "forced io_uring: want %s, got %s (%d)", rill_strerror(want),
                 rill_strerror(o.res.rc), o.res.rc);
    cr_expect_eq(o.res.backend[0], '\0', "no loop may be created");
    int lines = 1;
    if (q->loops == 2) {
        /* An error returned to the caller is logged every time, not once per process. */
        cr_expect_eq(o.res.rc2, want, "second forced loop: want %s, got %s (%d)",
                     rill_strerror(want), rill_strerror(o.res.rc2), o.res.rc2);
        cr_expect_eq(o.res.backend2[0], '\0', "no second loop may be created");
        lines = 2;
    }
    cr_expect_eq(count_lines(o.log, "rill: "), lines, "exactly %d log line(s), got:\n%s", lines,
                 o.log);
    cr_expect_eq(count_lines(o.log, "rill: io_uring unavailable"), lines, "log:\n%s", o.log);
    cr_expect(!strstr(o.log, "epoll"), "a forced backend never falls back:\n%s", o.log);
    check_words(o.log, words, nwords);
}

/* ---- io_uring_setup blocked ----------------------------------------------------------------- */

Test(uring_probe, auto_falls_back_on_seccomp_enosys, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = ENOSYS, .which = RILL_BACKEND_AUTO};
    const char *w[] = {"seccomp", "ENOSYS"};
    expect_fallback(&q, w, 2);
}

/* What an EPERM from io_uring_setup must be blamed on, given this machine's
 * kernel.io_uring_disabled (which the tests read and never change): a seccomp filter or a
 * security module when the sysctl is 0 or absent, the sysctl itself otherwise. Fills w (room for
 * 8) for check_words() and returns how many. */
static int eperm_words(const char **w)
{
    int n = 0, sysctl = rill__uring_disabled_sysctl();
    w[n++] = "EPERM";
    if (sysctl <= 0) {
        w[n++] = "seccomp";
        w[n++] = "security module";
        w[n++] = sysctl == 0 ? "sysctl, which is 0" : "absent or unreadable";
        w[n++] = NULL;
        w[n++] = "disabled by";
        w[n++] = "disabled for";
        w[n++] = "limited by";
    } else if (sysctl == 1) {
        w[n++] = "kernel.io_uring_disabled sysctl (1)";
        w[n++] = "kernel.io_uring_group";
    } else {
        w[n++] = "disabled for everyone by the kernel.io_uring_disabled sysctl";
    }
    return n;
}

Test(uring_probe, auto_falls_back_on_eperm, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EPERM, .which = RILL_BACKEND_AUTO};
    const char *w[8];
    expect_fallback(&q, w, eperm_words(w));
}

/* The acceptance: under a seccomp EPERM with the sysctl at 0, the fallback line does not
 * blame the sysctl, and two loops print it once. */
Test(uring_probe, two_auto_loops_on_seccomp_eperm_say_it_once, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EPERM, .which = RILL_BACKEND_AUTO,
                          .loops = 2};
    const char *w[8];
    expect_fallback(&q, w, eperm_words(w));
}

/* The same EPERM with kernel.io_uring_disabled reading 0, 1, 2 and nothing (faked in the child's
 * own mount namespace): the line follows what the sysctl says. */
Test(uring_probe, eperm_follows_the_sysctl_0, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EPERM, .which = RILL_BACKEND_AUTO,
                          .loops = 2, .fake_sysctl = "0\n"};
    const char *w[] = {"seccomp", "security module", "EPERM", "sysctl, which is 0", NULL,
                       "disabled by", "disabled for", "limited by"};
    expect_fallback(&q, w, NWORDS(w));
}

Test(uring_probe, eperm_follows_the_sysctl_1, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EPERM, .which = RILL_BACKEND_AUTO,
                          .loops = 2, .fake_sysctl = "1\n"};
    const char *w[] = {"kernel.io_uring_disabled sysctl (1)", "kernel.io_uring_group", "EPERM",
                       NULL, "seccomp"};
    expect_fallback(&q, w, NWORDS(w));
}

Test(uring_probe, eperm_follows_the_sysctl_2, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EPERM, .which = RILL_BACKEND_URING,
                          .loops = 2, .fake_sysctl = "2\n"};
    const char *w[] = {"disabled for everyone by the kernel.io_uring_disabled sysctl (2; EPERM)",
                       NULL, "seccomp"};
    expect_refusal(&q, -EPERM, w, NWORDS(w));
}

Test(uring_probe, eperm_with_the_sysctl_unreadable, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EPERM, .which = RILL_BACKEND_AUTO,
                          .fake_sysctl = ""};
    const char *w[] = {"seccomp", "security module", "absent or unreadable", NULL, "disabled by"};
    expect_fallback(&q, w, NWORDS(w));
}

Test(uring_probe, two_auto_loops_on_seccomp_enosys_say_it_once, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = ENOSYS, .which = RILL_BACKEND_AUTO,
                          .loops = 2};
    const char *w[] = {"seccomp", "ENOSYS", NULL, "io_uring_disabled"};
    expect_fallback(&q, w, NWORDS(w));
}

Test(uring_probe, two_auto_loops_on_eacces_say_it_once, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EACCES, .which = RILL_BACKEND_AUTO,
                          .loops = 2};
    const char *w[] = {"io_uring_setup failed: EACCES (Permission denied)", NULL,
                       "io_uring_disabled", "seccomp"};
    expect_fallback(&q, w, NWORDS(w));
}

Test(uring_probe, auto_falls_back_on_memlock_enomem, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = ENOMEM, .which = RILL_BACKEND_AUTO};
    const char *w[] = {"locked-memory", "RLIMIT_MEMLOCK"};
    expect_fallback(&q, w, NWORDS(w));
}

Test(uring_probe, auto_env_falls_back_too, .timeout = 30)
{
    /* RILL_BACKEND=auto is the same as no choice at all. */
    struct probe_req q = {.target = T_SETUP, .err = ENOSYS, .which = RILL_BACKEND_URING,
                          .env = "auto"};
    const char *w[] = {"seccomp"};
    expect_fallback(&q, w, 1);
}

Test(uring_probe, forced_uring_under_seccomp_is_enosys, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = ENOSYS, .which = RILL_BACKEND_URING};
    const char *w[] = {"seccomp"};
    expect_refusal(&q, -ENOSYS, w, 1);
}

Test(uring_probe, forced_uring_by_env_under_seccomp_is_enosys, .timeout = 30)
{
    /* The environment forces as firmly as the config does. */
    struct probe_req q = {.target = T_SETUP, .err = ENOSYS, .which = RILL_BACKEND_AUTO,
                          .env = "uring"};
    const char *w[] = {"seccomp"};
    expect_refusal(&q, -ENOSYS, w, 1);
}

Test(uring_probe, forced_uring_under_eperm_is_eperm, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EPERM, .which = RILL_BACKEND_URING};
    const char *w[8];
    expect_refusal(&q, -EPERM, w, eperm_words(w));
}

Test(uring_probe, two_forced_loops_under_eperm_log_twice, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EPERM, .which = RILL_BACKEND_URING,
                          .loops = 2};
    const char *w[8];
    expect_refusal(&q, -EPERM, w, eperm_words(w));
}

Test(uring_probe, two_forced_loops_under_eacces_log_twice, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = EACCES, .which = RILL_BACKEND_URING,
                          .loops = 2};
    const char *w[] = {"EACCES (Permission denied)"};
    expect_refusal(&q, -EACCES, w, 1);
}

Test(uring_probe, forced_uring_under_memlock_is_enomem, .timeout = 30)
{
    struct probe_req q = {.target = T_SETUP, .err = ENOMEM, .which = RILL_BACKEND_URING};
    const char *w[] = {"RLIMIT_MEMLOCK"};
    expect_refusal(&q, -ENOMEM, w, 1);
}

Test(uring_probe, forced_epoll_ignores_a_blocked_uring, .timeout = 30)
{
    /* An epoll loop never touches io_uring, so it neither fails nor logs. */
    struct probe_req q = {.target = T_SETUP, .err = ENOSYS, .which = RILL_BACKEND_EPOLL};
    struct probe_out o;
    run_probe(&q, &o);
    cr_expect_eq(o.res.rc, 0);
    cr_expect_str_eq(o.res.backend, "epoll");
    cr_expect_eq(o.log[0], '\0', "nothing logged, got:\n%s", o.log);
}

/* ---- a later set-up step blocked: the ring exists and must not leak ------------------------- */

Test(uring_probe, opcode_probe_refused_names_it, .timeout = 30)
{
    require_uring();
    struct probe_req q = {.target = T_REGISTER, .err = EINVAL, .reg_op = IORING_REGISTER_PROBE,
                          .which = RILL_BACKEND_AUTO};
    const char *w[] = {"IORING_REGISTER_PROBE"};
    expect_fallback(&q, w, 1);
    q.which = RILL_BACKEND_URING;
    expect_refusal(&q, -EOPNOTSUPP, w, 1);
}

Test(uring_probe, buffer_ring_refused_names_it, .timeout = 30)
{
    require_uring();
    struct probe_req q = {.target = T_REGISTER, .err = EINVAL,
                          .reg_op = IORING_REGISTER_PBUF_RING, .which = RILL_BACKEND_AUTO};
    const char *w[] = {"provided buffer rings"};
    expect_fallback(&q, w, 1);
    q.which = RILL_BACKEND_URING;
    expect_refusal(&q, -EOPNOTSUPP, w, 1);
}

/* ---- no filter: names and capabilities ------------------------------------------------------ */

Test(uring_probe, forced_uring_name_and_caps, .timeout = 30)
{
    rill_loop *l = h_loop("uring"); /* skips when io_uring cannot run here */
    uint32_t caps = rill_loop_caps(l);
    cr_expect_str_eq(rill_loop_backend_name(l), "io_uring");
    cr_expect_eq(caps & URING_MUST, URING_MUST, "caps 0x%x", caps);
    cr_expect_eq(caps & RILL_CAP_EDGE_TRIGGERED, 0, "io_uring is not a readiness backend");
    cr_assert_geq(rill_loop_run_once(l, 0), 0);
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_expect_gt(st.bufs_in_ring, 0, "an idle loop keeps empty buffers in the ring");
    cr_expect_eq(st.bufs_in_use, 0, "buffers in the ring are not \"in use\"");
    rill_loop_destroy(l);
}

Test(uring_probe, epoll_caps, .timeout = 30)
{
    (void)h_backends; /* harness.h's backend table: these tests pick backends themselves */
    rill_loop *l = h_loop("epoll");
    uint32_t caps = rill_loop_caps(l);
    cr_expect_str_eq(rill_loop_backend_name(l), "epoll");
    cr_expect(caps & RILL_CAP_EDGE_TRIGGERED, "caps 0x%x", caps);
    cr_expect_eq(caps & URING_BITS, 0, "caps 0x%x", caps);
    rill_loop_destroy(l);
}

Test(uring_probe, auto_picks_uring_when_available, .timeout = 30)
{
    require_uring();
    struct probe_req q = {.target = T_NONE, .which = RILL_BACKEND_AUTO};
    struct probe_out o;
    run_probe(&q, &o);
    cr_expect_eq(o.res.rc, 0);
    cr_expect_str_eq(o.res.backend, "io_uring");
    cr_expect_eq(o.res.caps & URING_MUST, URING_MUST, "caps 0x%x", o.res.caps);
    cr_expect_eq(o.log[0], '\0', "a loop that got io_uring logs nothing, got:\n%s", o.log);
}

/* ---- capabilities by name, and switching io_uring features off ------------------------------ */

Test(uring_probe, every_capability_has_one_name, .timeout = 30)
{
    static const uint32_t bits[] = {
        RILL_CAP_MULTISHOT_ACCEPT, RILL_CAP_MULTISHOT_RECV,    RILL_CAP_PROVIDED_BUFFERS,
        RILL_CAP_SEND_ZC,          RILL_CAP_MSG_ZEROCOPY,      RILL_CAP_DEFER_TASKRUN,
        RILL_CAP_EDGE_TRIGGERED,   RILL_CAP_MULTISHOT_RECVMSG, RILL_CAP_UDP_GSO,
        RILL_CAP_UDP_GRO,          RILL_CAP_RECV_BUNDLE,       RILL_CAP_MSG_RING,
        RILL_CAP_BUF_RING_INC,
    };
    uint32_t all = 0;
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
        const char *n = rill_cap_name(bits[i]);
        cr_assert_not_null(n, "bit 0x%x has no name", bits[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(n, rill_cap_name(bits[j]), "two bits are called %s", n);
        all |= bits[i];
    }
    cr_expect_null(rill_cap_name(0));
    cr_expect_null(rill_cap_name(RILL_CAP_MULTISHOT_ACCEPT | RILL_CAP_MULTISHOT_RECV));
    cr_expect_null(rill_cap_name(1u << 30));
    cr_expect_str_eq(rill_cap_name(RILL_CAP_RECV_BUNDLE), "recv_bundle");
    cr_expect_str_eq(rill_cap_name(RILL_CAP_BUF_RING_INC), "buf_ring_inc");

    char buf[512];
    size_t n = rill_caps_format(RILL_CAP_MULTISHOT_ACCEPT | RILL_CAP_RECV_BUNDLE | (1u << 30), buf,
                                sizeof buf);
    cr_expect_str_eq(buf, "multishot_accept,recv_bundle,0x40000000");
    cr_expect_eq(n, strlen(buf));
    cr_expect_eq(rill_caps_format(0, buf, sizeof buf), 0);
    cr_expect_str_eq(buf, "");
    /* Cut short: NUL-terminated, and the length says how long the whole text would be. */
    n = rill_caps_format(all, buf, 8);
    cr_expect_eq(strlen(buf), 7);
    cr_expect_gt(n, 7);
}

/* rill_loop_config.disable and RILL_URING_DISABLE switch features off on io_uring (what the loop
 * reports is what it uses); anything but the switchable three is refused, by name. */
Test(uring_probe, disabled_features_are_off, .timeout = 30)
{
    rill_loop *probe = h_loop("uring"); /* skips when io_uring cannot run here */
    uint32_t have = rill_loop_caps(probe);
    rill_loop_destroy(probe);

    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.disable = RILL_CAP_DEFER_TASKRUN;
    rill_loop *l = h_loop_cfg("uring", &cfg);
    uint32_t caps = rill_loop_caps(l);
    cr_expect_eq(caps & RILL_CAP_DEFER_TASKRUN, 0, "caps 0x%x", caps);
    cr_expect_eq(caps & URING_MUST, URING_MUST, "the rest stays: caps 0x%x", caps);
    rill_loop_destroy(l);

    setenv("RILL_URING_DISABLE", "recv_bundle, msg_ring", 1);
    rill_loop_config_init(&cfg);
    cfg.backend = RILL_BACKEND_URING;
    cr_assert_eq(rill_loop_create(&cfg, &l), 0);
    caps = rill_loop_caps(l);
    cr_expect_eq(caps & (RILL_CAP_RECV_BUNDLE | RILL_CAP_MSG_RING), 0, "caps 0x%x", caps);
    cr_expect_eq(caps & RILL_CAP_DEFER_TASKRUN, have & RILL_CAP_DEFER_TASKRUN);
    rill_loop_destroy(l);

    setenv("RILL_URING_DISABLE", "multishot_recv", 1);
    cr_expect_eq(rill_loop_create(&cfg, &l), -EINVAL, "a feature the backend needs");
    setenv("RILL_URING_DISABLE", "bogus", 1);
    cr_expect_eq(rill_loop_create(&cfg, &l), -EINVAL);
    unsetenv("RILL_URING_DISABLE");
    cfg.disable = RILL_CAP_MULTISHOT_ACCEPT;
    cr_expect_eq(rill_loop_create(&cfg, &l), -EINVAL);
}
