/* rill-probe: every strategy on every transport with plausible counts, the exact system-call
 * counts that define the B0 floor, batched io_uring under one call per operation, valid JSON,
 * --help, and the veth namespaces removed even when the run is interrupted.
 *
 * The cells run in this process (the probe's sources are compiled in, without its main); the
 * command-line checks run the built binary, RILL_PROBE_BIN. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tools/probe/probe.h" /* not engine/probe.h, which shares the name */

#define OPS 300

static size_t cell_size; /* of the last run(), for cell_name() */

static struct probe_opts opts_for(uint64_t ops)
{
    struct probe_opts o = {.time_s = 10, .max_ops = ops, .iov = 4, .batch = 16,
                           .pin = {-1, -1}};
    return o;
}

/* Runs one cell and returns its result; r->status tells whether it ran. */
static struct probe_result run(enum probe_transport t, const char *strategy, enum probe_mode m,
                               size_t size, const struct probe_opts *o)
{
    int s = probe_strategy_parse(strategy);
    cr_assert_geq(s, 0, "unknown strategy %s", strategy);
    cell_size = size;
    static uint64_t lat[OPS * 4];
    cr_assert_leq(o->max_ops, sizeof lat / sizeof lat[0]);
    struct probe_cell c = {.transport = t, .strategy = (unsigned)s, .mode = m, .size = size,
                           .opts = o, .lat = lat};
    probe_run_cell(&c);
    return c.res;
}

static const char *cell_name(enum probe_transport t, const char *s, enum probe_mode m)
{
    static char buf[96];
    snprintf(buf, sizeof buf, "%s/%s/%s/%zu", probe_transport_name(t), s, probe_mode_name(m),
             cell_size);
    return buf;
}

/* What every cell that ran must show, whatever its strategy. */
static void check_plausible(enum probe_transport t, const char *s, enum probe_mode m,
                            const struct probe_result *r)
{
    const char *n = cell_name(t, s, m);
    cr_assert_eq(r->ops, OPS, "%s: %llu ops, want the cap %d", n, (unsigned long long)r->ops, OPS);
    if (t == TR_DROP) {
        /* Nothing arrives; the figures are the sender's. */
        cr_assert_eq(m, MODE_STREAM, "%s: drop runs stream mode only", n);
        cr_assert_eq(r->rx_ops, 0, "%s: a dropped datagram arrived", n);
        cr_assert_gt(r->bytes_per_s, 0, "%s", n);
        cr_assert(r->side[0].sys_per_op > 0 && r->side[0].sys_per_op < 8, "%s", n);
        return;
    }
    if (m == MODE_STREAM && t != TR_UDP)
        cr_assert_eq(r->rx_ops, r->ops, "%s: a reliable transport lost messages (%llu of %llu)",
                     n, (unsigned long long)r->rx_ops, (unsigned long long)r->ops);
    if (m == MODE_STREAM) {
        cr_assert_gt(r->rx_ops, 0, "%s: nothing received", n);
        cr_assert_leq(r->rx_ops, r->ops, "%s", n);
        cr_assert_gt(r->bytes_per_s, 0, "%s", n);
    } else {
        cr_assert_gt(r->p50_ns, 0, "%s", n);
        cr_assert(r->min_ns <= r->p50_ns && r->p50_ns <= r->p99_ns && r->p99_ns <= r->max_ns,
                  "%s: percentiles out of order", n);
    }
    for (int i = 0; i < 2; i++) {
        double sys = r->side[i].sys_per_op;
        /* Batches and multishot completions carry many messages per call, never none; and no
         * strategy needs more than a handful of calls per message. */
        cr_assert(sys > 0 && sys < 8, "%s: side %d makes %.3f calls per op", n, i, sys);
    }
    cr_assert_gt(r->side[0].cpu_ns_per_op, 0, "%s: no CPU time", n);
}

static void check_zerocopy(const char *n, const struct probe_result *r)
{
    cr_assert_geq(r->zc.sends, OPS, "%s: zero-copy sends not counted", n);
    cr_assert_leq(r->zc.completions, r->zc.sends, "%s", n);
    cr_assert_gt(r->zc.completions, 0, "%s: no zero-copy completion read", n);
    cr_assert(r->zc.usage_known, "%s: the kernel (6.2+) should report copies", n);
    /* Loopback and veth deliver to a local socket, which cannot keep the sender's pages. */
    cr_assert_eq(r->zc.copied, r->zc.completions, "%s: loopback should copy every send", n);
}

struct tparam {
    int transport;
};

static struct tparam all_transports[TR_COUNT];

ParameterizedTestParameters(probe, every_strategy)
{
    for (int i = 0; i < TR_COUNT; i++)
        all_transports[i].transport = i;
    return cr_make_param_array(struct tparam, all_transports, TR_COUNT);
}

ParameterizedTest(struct tparam *p, probe, every_strategy, .timeout = 60)
{
    enum probe_transport t = (enum probe_transport)p->transport;
    struct probe_opts o = opts_for(OPS);
    unsigned ran = 0;
    if (t == TR_VETH || t == TR_DROP)
        atexit(probe_netns_cleanup); /* also when an assertion ends the test early */
    for (unsigned s = 0; s < probe_strategy_count(); s++) {
        const char *name = probe_strategy_get(s)->name;
        /* 16 KiB: short reads and writes on byte streams, several segments per message. */
        for (int k = 0; k < 2 * MODE_COUNT; k++) {
            enum probe_mode m = (enum probe_mode)(k % MODE_COUNT);
            size_t size = k < MODE_COUNT ? 64 : 16384;
            struct probe_result r = run(t, name, m, size, &o);
            const char *n = cell_name(t, name, m);
            /* The first cell is rw-block: skipped only when the transport itself cannot be
             * set up here (veth without root, tcp6 without IPv6). */
            if (r.status == CELL_SKIPPED && s == 0 && (k == 0 || t == TR_DROP))
                cr_skip_test("%s: %s", probe_transport_name(t), r.why);
            cr_assert_neq(r.status, CELL_ERROR, "%s: %s", n, r.why);
            if (r.status != CELL_OK) {
                cr_assert(r.why[0], "%s: n/a or skipped without a reason", n);
                cr_log_info("%s: %s", n, r.why);
                continue;
            }
            ran++;
            check_plausible(t, name, m, &r);
            if (strstr(name, "-zc") && t != TR_DROP)
                check_zerocopy(n, &r);
        }
    }
    /* drop: stream mode only, datagram strategies included. */
    cr_assert_geq(ran, t == TR_DROP ? 16 : 40, "%s: only %u cells ran", probe_transport_name(t),
                  ran);
    probe_netns_cleanup();
}

/* The B0 floor's definition: blocking read/write ping-pong is one write and one read per round
 * trip on each side, and the bare pair is one call per side. */
Test(probe, rw_block_exact_syscalls, .timeout = 60)
{
    static const enum probe_transport ts[] = {TR_TCP4, TR_TCP6, TR_UDP, TR_UNIX_STREAM,
                                              TR_UNIX_DGRAM, TR_UNIX_SEQPACKET, TR_SOCKETPAIR};
    struct probe_opts o = opts_for(OPS);
    for (unsigned i = 0; i < sizeof ts / sizeof ts[0]; i++) {
        struct probe_result r = run(ts[i], "rw-block", MODE_PINGPONG, 64, &o);
        if (r.status == CELL_SKIPPED)
            continue; /* tcp6 without IPv6 */
        cr_assert_eq(r.status, CELL_OK, "%s: %s", probe_transport_name(ts[i]), r.why);
        cr_assert_eq(r.ops, OPS);
        for (int side = 0; side < 2; side++)
            cr_assert_eq(r.side[side].sys_per_op, 2.0, "%s side %d: %.4f calls per round trip",
                         probe_transport_name(ts[i]), side, r.side[side].sys_per_op);
        r = run(ts[i], "rw-block", MODE_PAIR, 64, &o);
        cr_assert_eq(r.status, CELL_OK, "%s pair: %s", probe_transport_name(ts[i]), r.why);
        cr_assert_eq(r.side[0].sys_per_op, 1.0);
        cr_assert_eq(r.side[1].sys_per_op, 1.0);
    }
}

/* Batched submission: --batch sends per io_uring_enter in a stream, so well under one call per
 * message; a ping-pong round trip is one enter per side (send and recv submitted together). */
Test(probe, uring_batch_under_one_call_per_op, .timeout = 60)
{
    struct probe_opts o = opts_for(OPS);
    struct probe_result r = run(TR_TCP4, "uring-batch", MODE_STREAM, 1024, &o);
    if (r.status == CELL_SKIPPED)
        cr_skip_test("io_uring: %s", r.why);
    cr_assert_eq(r.status, CELL_OK, "%s", r.why);
    cr_assert_lt(r.side[0].sys_per_op, 1.0, "sender: %.3f calls per message", r.side[0].sys_per_op);
    cr_assert_leq(r.side[0].sys_per_op, 2.0 / 16, "sender: %.3f", r.side[0].sys_per_op);
    /* One-shot: one enter per request (ping-pong has no full socket to make a send short). */
    struct probe_result one = run(TR_SOCKETPAIR, "uring", MODE_PINGPONG, 64, &o);
    cr_assert_eq(one.status, CELL_OK, "%s", one.why);
    cr_assert_eq(one.side[0].sys_per_op, 2.0, "one-shot: %.3f enters per round trip",
                 one.side[0].sys_per_op);
    r = run(TR_SOCKETPAIR, "uring-batch", MODE_PINGPONG, 64, &o);
    cr_assert_eq(r.status, CELL_OK, "%s", r.why);
    cr_assert_lt(r.side[0].sys_per_op, 1.1, "client: %.3f enters per round trip",
                 r.side[0].sys_per_op);
    cr_assert_lt(r.side[1].sys_per_op, 1.1, "server: %.3f enters per round trip",
                 r.side[1].sys_per_op);
}

/* --timestamps: every round trip of a TCP or UDP ping-pong gets its three parts, and together
 * they fit inside the round trip; AF_UNIX has no device and gives none. */
Test(probe, timestamps_split, .timeout = 60)
{
    struct probe_opts o = opts_for(OPS);
    o.timestamps = true;
    static const enum probe_transport inet[] = {TR_TCP4, TR_UDP};
    for (unsigned i = 0; i < 2; i++) {
        struct probe_result r = run(inet[i], "msg1-block", MODE_PINGPONG, 64, &o);
        const char *n = probe_transport_name(inet[i]);
        cr_assert_eq(r.status, CELL_OK, "%s: %s", n, r.why);
        cr_assert_eq(r.ts_samples, OPS, "%s: %llu of %d round trips stamped", n,
                     (unsigned long long)r.ts_samples, OPS);
        cr_assert(r.ts_sender_ns > 0 && r.ts_path_ns > 0 && r.ts_receiver_ns > 0, "%s", n);
        cr_assert_lt(r.ts_sender_ns + r.ts_path_ns + r.ts_receiver_ns, r.max_ns,
                     "%s: one half of a round trip outlasts the slowest round trip", n);
    }
    struct probe_result r = run(TR_SOCKETPAIR, "msg1-block", MODE_PINGPONG, 64, &o);
    cr_assert_eq(r.status, CELL_OK, "%s", r.why);
    cr_assert_eq(r.ts_samples, 0, "AF_UNIX gave TX stamps?");
}

/* After each reply the client reads its TX stamps from the error queue. AF_UNIX has no error
 * queue and takes that read as a zero-length read of the data, which returns 0 while data is
 * queued (a 70000 B reply read short, its rest already there) or after the peer shut down: the
 * read must end there, not spin (it once hung a loaded run for good). */
Test(probe, ts_collect_ends_on_unix_data_and_eof, .timeout = 20)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct probe_opts o = opts_for(OPS);
    o.timestamps = true;
    struct probe_cell c = {.transport = TR_SOCKETPAIR, .mode = MODE_PINGPONG, .size = 64,
                           .opts = &o};
    struct probe_side s = {.fd = sv[0], .is_client = true, .cell = &c, .ts_on = true};
    char data[10] = "rest-of-it", got[10];
    cr_assert_eq(write(sv[1], data, sizeof data), (ssize_t)sizeof data);
    probe_ts_collect_tx(&s, 0);
    cr_assert_leq(s.nsys, 2, "%llu error-queue reads with data queued",
                  (unsigned long long)s.nsys);
    cr_assert_eq(read(sv[0], got, sizeof got), (ssize_t)sizeof got, "the data was consumed");
    cr_assert_eq(memcmp(got, data, sizeof got), 0);
    shutdown(sv[1], SHUT_RDWR);
    s.nsys = 0;
    probe_ts_collect_tx(&s, 1);
    cr_assert_leq(s.nsys, 2, "%llu error-queue reads at EOF", (unsigned long long)s.nsys);
    cr_assert_eq(c.ts.kernel_tx, NULL, "nothing stored without a capacity");
    close(sv[0]);
    close(sv[1]);
}

/* ---- the binary ------------------------------------------------------------------------- */

static bool have(const char *cmd)
{
    char buf[128];
    snprintf(buf, sizeof buf, "command -v %s >/dev/null 2>&1", cmd);
    return system(buf) == 0;
}

/* Every child runs under timeout(1), well inside the test's own .timeout: a run that hangs
 * fails its assertion with the reason instead of the whole test timing out unexplained. A
 * child's run is bounded by its cells' time limits (rill-probe's watchdog), so these limits
 * only matter when something is broken, and leave room for a loaded machine. */
#define CHILD_LIMIT_S 60

/* Runs rill-probe ARGS with stdout into path; returns its exit code (124 or 137 when it
 * outlived CHILD_LIMIT_S and was killed). */
static int probe_to(const char *args, const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout -k 5 %d '%s' %s > '%s' 2>/dev/null", CHILD_LIMIT_S,
             RILL_PROBE_BIN, args, path);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (rc == 124 || rc == 137)
        cr_log_error("rill-probe %s: killed after %d s", args, CHILD_LIMIT_S);
    return rc;
}

/* Runs a python3 program over the JSON file at path: exit 0 when it parses and asserts hold.
 * Unless quiet, python's traceback (which assertion failed) goes to the test's output. */
static int py_json(const char *path, const char *asserts, bool quiet)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "timeout -k 5 %d python3 -c 'import json,sys\nd=json.load(open(sys.argv[1]))\n%s' "
             "'%s'%s",
             CHILD_LIMIT_S, asserts, path, quiet ? " 2>/dev/null" : "");
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void tmp_path(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "/tmp/test_probe_%d_%s.out", (int)getpid(), tag);
}

/* Three rill-probe runs (a few seconds each, up to a minute on a loaded machine, each bounded
 * by CHILD_LIMIT_S) and four JSON checks. */
Test(probe_cli, json_parses, .timeout = 240)
{
    if (!have("python3"))
        cr_skip_test("python3 not found");
    char path[128];
    tmp_path(path, sizeof path, "json");
    /* The checker itself must be able to say no. */
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fputs("{\"cells\": [", f);
    fclose(f);
    cr_assert_neq(py_json(path, "pass", true), 0, "the JSON check accepted broken JSON");

    /* The B0 command of issue 7. */
    cr_assert_eq(probe_to("--transport tcp4 --strategy rw-block --size 64 --json -n 300", path), 0);
    cr_assert_eq(py_json(path, "c=d[\"cells\"]\n"
                               "assert len(c)==2 and [x[\"mode\"] for x in c]==[\"pingpong\",\"stream\"]\n"
                               "assert all(x[\"status\"]==\"ok\" and x[\"ops\"]==300 for x in c)\n"
                               "assert c[0][\"client\"][\"syscalls_per_op\"]==2.0\n"
                               "assert c[0][\"p50_ns\"]>0 and c[1][\"bytes_per_s\"]>0", false),
                 0, "B0 JSON wrong");

    /* Many cells: n/a with reasons, zero-copy counts, timestamps, all still valid JSON. */
    cr_assert_eq(probe_to("-t udp,unix-dgram,socketpair -s all -m all -z 64,70000 -T 0.05 "
                          "-n 100 --timestamps --json", path), 0);
    cr_assert_eq(py_json(path, "c=d[\"cells\"]\n"
                               "assert len(c)==3*3*2*len(set(x[\"strategy\"] for x in c))\n"
                               "assert any(x[\"status\"]==\"n/a\" and x[\"reason\"] for x in c)\n"
                               "assert all(x[\"status\"]!=\"error\" for x in c)\n"
                               "z=[x for x in c if \"zerocopy\" in x]\n"
                               "assert z and all(x[\"zerocopy\"][\"copied\"]<=x[\"zerocopy\"][\"sends\"] for x in z)\n"
                               "u=[x for x in c if x[\"transport\"]==\"udp\" and x[\"size\"]==64 and\n"
                               "   x[\"strategy\"]==\"msg1-block\" and x[\"mode\"]==\"pingpong\"]\n"
                               "assert u[0][\"timestamps\"][\"samples\"]==u[0][\"ops\"]", false),
                 0, "multi-cell JSON wrong");

    /* --repeat: the median pass, with the spread of the headline figure. */
    cr_assert_eq(probe_to("-t socketpair -s rw-block -m pingpong,stream -z 64 -n 200 -r 3 --json",
                          path), 0);
    cr_assert_eq(py_json(path, "p,s=d[\"cells\"]\n"
                               "assert d[\"repeat\"]==3 and p[\"repeats\"]==3 and s[\"repeats\"]==3\n"
                               "assert p[\"p50_ns_min\"]<=p[\"p50_ns\"]<=p[\"p50_ns_max\"]\n"
                               "assert s[\"bytes_per_s_min\"]<=s[\"bytes_per_s\"]<=s[\"bytes_per_s_max\"]", false),
                 0, "--repeat JSON wrong");
    unlink(path);
}

Test(probe_cli, help_documents_every_option, .timeout = 60)
{
    static const char *const options[] = {"--transport", "--strategy", "--mode", "--size",
                                          "--time", "--ops", "--repeat", "--iov", "--batch", "--pin",
                                          "--timestamps", "--json", "--matrix", "--list",
                                          "--help"};
    char path[128];
    tmp_path(path, sizeof path, "help");
    cr_assert_eq(probe_to("--help", path), 0);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    static char text[16384];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    unlink(path);
    for (unsigned i = 0; i < sizeof options / sizeof options[0]; i++)
        cr_assert(strstr(text, options[i]), "--help does not mention %s", options[i]);
    cr_assert_eq(probe_to("--no-such-option", "/dev/null"), 2);
    cr_assert_eq(probe_to("--size 0", "/dev/null"), 2);
}

/* Whether `ip netns list` shows a name containing needle. */
static bool netns_listed(const char *needle)
{
    FILE *p = popen("ip netns list 2>/dev/null", "r");
    cr_assert(p);
    char line[256];
    bool found = false;
    while (fgets(line, sizeof line, p))
        found |= strstr(line, needle) != NULL;
    pclose(p);
    return found;
}

/* Whether `ip netns list` shows a probe namespace whose process is gone (other tests may be
 * running probes of their own, whose namespaces are legitimately there). */
static bool dead_probe_netns(void)
{
    FILE *p = popen("ip netns list 2>/dev/null", "r");
    cr_assert(p);
    char line[256];
    bool dead = false;
    size_t pl = strlen(probe_netns_prefix);
    while (fgets(line, sizeof line, p)) {
        if (strncmp(line, probe_netns_prefix, pl) != 0)
            continue;
        long pid = strtol(line + pl, NULL, 10);
        dead |= kill((pid_t)pid, 0) < 0 && errno == ESRCH;
    }
    pclose(p);
    return dead;
}

/* The veth tests share the machine's namespace list with any other test_probe running at the
 * same time, and one of them plants a stale namespace on purpose, which the other's "no probe
 * namespace outlived its run" would see: they take a machine-wide lock, held until the test's
 * process exits. */
static void need_root_and_ip(void)
{
    if (geteuid() != 0)
        cr_skip_test("veth needs root");
    if (!have("ip"))
        cr_skip_test("iproute2 (ip) not found");
    int fd = open("/tmp/rill-test-probe-veth.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    cr_assert_geq(fd, 0, "veth lock: %s", strerror(errno));
    cr_assert_eq(flock(fd, LOCK_EX), 0, "veth lock: %s", strerror(errno));
}

/* Waits up to ms for pid to exit; returns its wait status, or -1 after killing it. */
static int wait_exit(pid_t pid, int ms)
{
    int st;
    for (int i = 0; i < ms / 10; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return st;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

Test(probe_cli, veth_cleanup_on_sigint, .timeout = 60)
{
    need_root_and_ip();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        execl(RILL_PROBE_BIN, "rill-probe", "-t", "veth", "-s", "rw-block,uring", "-m",
              "pingpong,stream", "-z", "64,1024", "-T", "3", (char *)NULL);
        _exit(127);
    }
    char name[64], path[128];
    snprintf(name, sizeof name, "%s%d-", probe_netns_prefix, (int)pid);
    snprintf(path, sizeof path, "/run/netns/%sc", name);
    struct stat sb;
    int st, i;
    for (i = 0; i < 1000 && stat(path, &sb) != 0; i++) {
        cr_assert_neq(waitpid(pid, &st, WNOHANG), pid, "rill-probe exited before its veth run");
        usleep(10000);
    }
    cr_assert_lt(i, 1000, "the probe's namespace %s never appeared", path);
    cr_assert(netns_listed(name), "ip netns list does not show %s*", name);
    usleep(500000); /* into the middle of a cell */
    kill(pid, SIGINT);
    st = wait_exit(pid, 10000);
    cr_assert_neq(st, -1, "rill-probe did not stop within 10 s of SIGINT");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 130, "exit status %d", st);
    cr_assert_not(netns_listed(name), "namespaces %s* left behind after SIGINT", name);
}

Test(probe_cli, veth_stale_namespace_removed, .timeout = 60)
{
    need_root_and_ip();
    pid_t dead = fork(); /* a pid that no longer runs, as a killed probe's would be */
    cr_assert_geq(dead, 0);
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    char name[64], cmd[160];
    snprintf(name, sizeof name, "%s%d-c", probe_netns_prefix, (int)dead);
    snprintf(cmd, sizeof cmd, "ip netns add %s", name);
    cr_assert_eq(system(cmd), 0);
    cr_assert(netns_listed(name));
    cr_assert_eq(probe_to("-t veth -s rw-block -m pingpong -z 64 -n 100", "/dev/null"), 0);
    bool left = netns_listed(name);
    if (left) {
        snprintf(cmd, sizeof cmd, "ip netns delete %s", name);
        system(cmd);
    }
    cr_assert_not(left, "the stale namespace %s was not removed", name);
    cr_assert_not(dead_probe_netns(), "a probe namespace outlived its run");
}
