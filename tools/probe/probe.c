/* rill-probe: the command line, signal handling, and the loop over cells. */
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"
#include "rill.h"

static const size_t default_sizes[] = {64, 1024, 16384, 65536};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: rill-probe [options]\n"
        "\n"
        "Measures what it costs to move a message through the kernel's socket paths: for each\n"
        "transport x strategy x mode x size, two threads (client and server) exchange messages;\n"
        "the probe counts every system call it makes (an io_uring_enter is one), and reads each\n"
        "thread's CPU time (CLOCK_THREAD_CPUTIME_ID) and context switches (getrusage).\n"
        "\n"
        "  -t, --transport LIST  comma-separated, or all (default tcp4):\n"
        "                        tcp4 tcp6 udp unix-stream unix-dgram unix-seqpacket socketpair\n"
        "                        veth (two network namespaces joined by a veth pair, TCP between\n"
        "                        them; needs root and iproute2, skipped otherwise)\n"
        "                        drop (UDP into a veth whose peer end is down, with a permanent\n"
        "                        neighbour entry: every datagram is dropped at transmit, before\n"
        "                        any socket; stream mode only, sender figures; needs root)\n"
        "  -s, --strategy LIST   comma-separated, or all (default all); see --list\n"
        "  -m, --mode LIST       pingpong, stream, pair, or all (default pingpong,stream):\n"
        "                        pingpong: client sends a message, server sends it back; p50/p99\n"
        "                          ns per round trip\n"
        "                        stream: client sends as fast as it can; server-side bytes/s\n"
        "                        pair: one thread sends on one socket and receives on the other:\n"
        "                          the bare cost of one send+recv pair, with no wake-up\n"
        "  -z, --size LIST       message sizes in bytes, k suffix = 1024 (default 64,1024,16384,65536)\n"
        "  -T, --time SEC        time per cell, may be fractional (default 0.5)\n"
        "  -n, --ops N           operation cap per cell (default 1000000)\n"
        "  -r, --repeat N        run every cell N times, passes interleaved (A B .. A B ..), and\n"
        "                        report each cell's median pass with the min and max of its p50\n"
        "                        (or MB/s) over the passes (default 1)\n"
        "      --iov N           iovecs per message for msgv-block and rwv-block (default 4)\n"
        "      --batch N         datagrams per sendmmsg/recvmmsg, SQEs per io_uring_enter for\n"
        "                        uring-batch (default 16, at most %d)\n"
        "      --pin C,S         pin the client thread to CPU C and the server to CPU S\n"
        "                        (default: not pinned)\n"
        "      --timestamps      SO_TIMESTAMPING software stamps on msg1-block ping-pong: split the\n"
        "                        client-to-server half into sender kernel / path / receiver kernel\n"
        "                        (TCP and UDP; AF_UNIX gives none) (default off)\n"
        "      --profile         sample both threads of every cell (perf_event_open, software\n"
        "                        cpu-clock, kernel and user callchains) and split the cell's CPU\n"
        "                        into phases: syscall socket tcp_tx udp_tx rx device copy wakeup\n"
        "                        io_uring memory user other, with the top kernel functions; needs\n"
        "                        root or kernel.perf_event_paranoid <= 1 (without it the cells run\n"
        "                        unprofiled, and the probe says why) (default off)\n"
        "      --profile-scope S cpu: one counter per CPU, keeping the side threads' samples;\n"
        "                        thread: each side thread samples itself, a ring per thread (a\n"
        "                        per-thread counter is stopped and restarted at every context\n"
        "                        switch: on a VM that tripled a blocking ping-pong's round trip);\n"
        "                        cpu needs root or kernel.perf_event_paranoid <= 0 (default: cpu\n"
        "                        where allowed, else thread); implies --profile\n"
        "      --profile-hz N    samples per second of CPU time, 100 to 50000 (default %d); each\n"
        "                        costs an interrupt and a callchain walk; implies --profile\n"
        "      --top N           kernel functions listed per profiled cell (default 10, at most %d)\n"
        "      --folded FILE     with --profile: write folded stacks (flamegraph.pl, inferno)\n"
        "      --compare A,B     profile strategies A and B on every selected transport, mode and\n"
        "                        size and print their phases side by side, per operation, with\n"
        "                        ratios and the phases that differ most (implies --profile)\n"
        "      --json            print JSON instead of the table (default off)\n"
        "      --matrix          run every strategy (unless -s is given) and print, per transport,\n"
        "                        mode and size, the strategies ranked best first; with --json\n"
        "                        only the cells are printed (default off)\n"
        "      --list            list transports and strategies, then exit\n"
        "  -h, --help            this text\n"
        "      --version         print the version (rill-probe X.Y.Z) and exit\n"
        "\n"
        "Columns: ops completed; p50/p99 ns per round trip (pingpong) or per pair; MB/s\n"
        "received (stream); system calls per op on the client|server; CPU ns per op (user+sys)\n"
        "client|server (pair: all in the client column); voluntary/involuntary context switches.\n"
        "Zero-copy cells report sends, completions and how many the kernel copied anyway (on\n"
        "loopback and veth all of them: a local receiver cannot keep the sender's pages).\n"
        "A strategy that does not apply to a combination says n/a; one this machine cannot run\n"
        "says skipped, with the reason. The B0 floor of BENCHMARKS.md:\n"
        "  rill-probe -t tcp4,socketpair -s rw-block -m pingpong,stream,pair -z 64 -r 5 --json\n"
        "Exit code: 0; 1 when a cell failed with an error; 2 for a bad command line; 130 when\n"
        "interrupted (the veth namespaces are removed first).\n",
        PROBE_MAX_BATCH, PROBE_PROF_HZ_DEFAULT, PROBE_PROF_TOP_MAX);
}

/* Whether drop is the only transport selected. */
static bool check_only_drop(const struct probe_opts *o)
{
    for (int t = 0; t < TR_COUNT; t++)
        if (t != TR_DROP && o->transports[t])
            return false;
    return o->transports[TR_DROP];
}

static void list(void)
{
    printf("transports:\n");
    for (int t = 0; t < TR_COUNT; t++)
        printf("  %s\n", probe_transport_name(t));
    printf("strategies:\n");
    for (unsigned i = 0; i < probe_strategy_count(); i++)
        printf("  %-15s %s\n", probe_strategy_get(i)->name, probe_strategy_get(i)->desc);
}

static int bad(const char *what, const char *arg)
{
    fprintf(stderr, "rill-probe: bad %s: '%s' (see --help)\n", what, arg);
    return -1;
}

/* Parses "a,b,c" calling one(item) for each; returns -1 on the first bad item, or when the
 * list names nothing at all ("", ","). */
static int each_item(const char *arg, const char *what,
                     int (*one)(struct probe_opts *, const char *), struct probe_opts *o)
{
    char *copy = strdup(arg), *save = NULL;
    int r = 0, n = 0;
    for (char *it = strtok_r(copy, ",", &save); it && r == 0; it = strtok_r(NULL, ",", &save)) {
        r = one(o, it);
        n++;
    }
    free(copy);
    if (r == 0 && n == 0) {
        fprintf(stderr, "rill-probe: bad %s: '%s' (an empty list; see --help)\n", what, arg);
        return -1;
    }
    return r;
}

static int one_transport(struct probe_opts *o, const char *s)
{
    if (strcmp(s, "all") == 0) {
        for (int t = 0; t < TR_COUNT; t++)
            o->transports[t] = true;
        return 0;
    }
    int t = probe_transport_parse(s);
    if (t < 0)
        return bad("transport", s);
    o->transports[t] = true;
    return 0;
}

static int one_strategy(struct probe_opts *o, const char *s)
{
    if (strcmp(s, "all") == 0) {
        for (unsigned i = 0; i < probe_strategy_count(); i++)
            o->strategies[i] = true;
        return 0;
    }
    int i = probe_strategy_parse(s);
    if (i < 0)
        return bad("strategy", s);
    o->strategies[i] = true;
    return 0;
}

static int one_mode(struct probe_opts *o, const char *s)
{
    for (int m = 0; m < MODE_COUNT; m++)
        if (strcmp(s, probe_mode_name(m)) == 0 || strcmp(s, "all") == 0)
            o->modes[m] = true;
    return strcmp(s, "all") == 0 || strcmp(s, "pingpong") == 0 || strcmp(s, "stream") == 0 ||
                   strcmp(s, "pair") == 0
               ? 0
               : bad("mode", s);
}

static int one_size(struct probe_opts *o, const char *s)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*end == 'k' || *end == 'K') {
        v *= 1024;
        end++;
    }
    if (errno || *end || end == s || v == 0 || v > PROBE_MAX_SIZE || o->nsizes >= 16)
        return bad("size (1 B to 1 MiB, at most 16 sizes)", s);
    o->sizes[o->nsizes++] = v;
    return 0;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v == 0 || v > max || *s == '-')
        return false;
    *out = v;
    return true;
}

/* --pin C,S: two CPUs this process may run on (a CPU outside the affinity mask, or one the
 * machine does not have, would make pthread_setaffinity_np fail and the run go unpinned). */
static int parse_pin(struct probe_opts *o, const char *arg)
{
    char *end;
    const char *p = arg;
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0)
        CPU_ZERO(&allowed);
    for (int i = 0; i < 2; i++) {
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || *p == '-' || *p == '+' || (i == 0 ? *end != ',' : *end != 0))
            return bad("pin (two CPU numbers, C,S)", arg);
        if (v >= CPU_SETSIZE || !CPU_ISSET((int)v, &allowed)) {
            fprintf(stderr, "rill-probe: bad pin: '%s': CPU %ld is not available to this process "
                            "(it may run on %d CPUs, numbered from 0; see --help)\n",
                    arg, v, CPU_COUNT(&allowed));
            return -1;
        }
        o->pin[i] = (int)v;
        p = end + 1;
    }
    return 0;
}

static int parse_compare(struct probe_opts *o, const char *arg)
{
    const char *comma = strchr(arg, ',');
    char a[64];
    if (!comma || (size_t)(comma - arg) >= sizeof a)
        return bad("compare (two strategies, A,B)", arg);
    snprintf(a, sizeof a, "%.*s", (int)(comma - arg), arg);
    o->compare[0] = probe_strategy_parse(a);
    o->compare[1] = probe_strategy_parse(comma + 1);
    if (o->compare[0] < 0 || o->compare[1] < 0 || o->compare[0] == o->compare[1])
        return bad("compare (two different strategies, A,B; see --list)", arg);
    o->profile = true;
    return 0;
}

enum { OPT_IOV = 256, OPT_BATCH, OPT_PIN, OPT_TS, OPT_JSON, OPT_MATRIX, OPT_LIST, OPT_PROFILE,
       OPT_TOP, OPT_FOLDED, OPT_COMPARE, OPT_SCOPE, OPT_HZ, OPT_VERSION };

static const struct option long_opts[] = {
    {"transport", required_argument, NULL, 't'}, {"strategy", required_argument, NULL, 's'},
    {"mode", required_argument, NULL, 'm'},      {"size", required_argument, NULL, 'z'},
    {"time", required_argument, NULL, 'T'},      {"ops", required_argument, NULL, 'n'},
    {"repeat", required_argument, NULL, 'r'},    {"iov", required_argument, NULL, OPT_IOV},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"pin", required_argument, NULL, OPT_PIN},   {"timestamps", no_argument, NULL, OPT_TS},
    {"json", no_argument, NULL, OPT_JSON},       {"matrix", no_argument, NULL, OPT_MATRIX},
    {"profile", no_argument, NULL, OPT_PROFILE}, {"top", required_argument, NULL, OPT_TOP},
    {"folded", required_argument, NULL, OPT_FOLDED},
    {"profile-scope", required_argument, NULL, OPT_SCOPE},
    {"profile-hz", required_argument, NULL, OPT_HZ},
    {"compare", required_argument, NULL, OPT_COMPARE},
    {"list", no_argument, NULL, OPT_LIST},       {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0}};

static int parse_number(struct probe_opts *o, int c, const char *arg)
{
    unsigned long v;
    char *end;
    switch (c) {
    case 'T':
        errno = 0;
        o->time_s = strtod(arg, &end);
        return errno || end == arg || *end || !(o->time_s > 0 && o->time_s <= 3600)
                   ? bad("time (seconds, above 0 and at most 3600)", arg)
                   : 0;
    case 'n':
        if (!parse_uint(arg, 100000000ul, &v))
            return bad("ops (1 to 100000000)", arg);
        o->max_ops = v;
        return 0;
    case OPT_IOV:
        if (!parse_uint(arg, PROBE_MAX_IOV, &v))
            return bad("iov count (1 to 64)", arg);
        o->iov = (unsigned)v;
        return 0;
    case 'r':
        if (!parse_uint(arg, 255, &v))
            return bad("repeat (1 to 255)", arg);
        o->repeat = (unsigned)v;
        return 0;
    case OPT_BATCH:
        if (!parse_uint(arg, PROBE_MAX_BATCH, &v))
            return bad("batch (1 to 64)", arg);
        o->batch = (unsigned)v;
        return 0;
    case OPT_TOP:
        if (!parse_uint(arg, PROBE_PROF_TOP_MAX, &v))
            return bad("top (1 to 32)", arg);
        o->top = (unsigned)v;
        return 0;
    case OPT_HZ:
        if (!parse_uint(arg, 50000, &v) || v < 100)
            return bad("profile-hz (100 to 50000)", arg);
        o->profile_hz = (unsigned)v;
        o->profile = true;
        return 0;
    default: return -1;
    }
}

static int parse_one(struct probe_opts *o, int c, const char *arg)
{
    switch (c) {
    case 't': return each_item(arg, "transport", one_transport, o);
    case 's': return each_item(arg, "strategy", one_strategy, o);
    case 'm': return each_item(arg, "mode", one_mode, o);
    case 'z': return each_item(arg, "size", one_size, o);
    case OPT_PIN: return parse_pin(o, arg);
    case OPT_COMPARE: return parse_compare(o, arg);
    case OPT_FOLDED:
        if (!*arg)
            return bad("folded (a file name)", arg);
        o->folded = arg;
        return 0;
    case OPT_TS: o->timestamps = true; return 0;
    case OPT_JSON: o->json = true; return 0;
    case OPT_MATRIX: o->matrix = true; return 0;
    case OPT_PROFILE: o->profile = true; return 0;
    case OPT_SCOPE:
        if (strcmp(arg, "thread") != 0 && strcmp(arg, "cpu") != 0)
            return bad("profile-scope (thread or cpu)", arg);
        o->profile_scope = strcmp(arg, "cpu") == 0 ? PROF_SCOPE_CPU : PROF_SCOPE_THREAD;
        o->profile = true;
        return 0;
    default: return parse_number(o, c, arg);
    }
}

/* The checks that need the whole command line. */
static int check_args(struct probe_opts *o, bool any_t, bool any_m)
{
    if (o->folded && !o->profile) {
        fprintf(stderr, "rill-probe: bad folded: '%s' (folded stacks come from --profile; add "
                        "it)\n", o->folded);
        return -1;
    }
    /* The drop transport delivers nothing: a ping-pong never gets its reply, a pair never
     * receives. Asked for explicitly with such a mode, that is a mistake to say at once. */
    if (any_t && any_m && o->transports[TR_DROP] &&
        (o->modes[MODE_PINGPONG] || o->modes[MODE_PAIR]) &&
        (check_only_drop(o) || !o->modes[MODE_STREAM])) {
        fprintf(stderr, "rill-probe: bad mode for the drop transport: %s (its packets never reach "
                        "a socket, so it runs stream mode only: UDP send-only)\n",
                o->modes[MODE_PINGPONG] ? "pingpong" : "pair");
        return -1;
    }
    return 0;
}

/* Returns 0 to run, 1 when --help, --list or --version was handled, -1 for a bad command line. */
static int parse_args(int argc, char **argv, struct probe_opts *o)
{
    bool any_t = false, any_s = false, any_m = false;
    int c;
    while ((c = getopt_long(argc, argv, "t:s:m:z:T:n:r:h", long_opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        if (c == OPT_LIST) {
            list();
            return 1;
        }
        if (c == OPT_VERSION) {
            printf("rill-probe %s\n", rill_version());
            return 1;
        }
        if (c == '?' || parse_one(o, c, optarg) < 0)
            return -1;
        any_t |= c == 't';
        any_s |= c == 's';
        any_m |= c == 'm';
    }
    if (optind < argc)
        return bad("argument (rill-probe takes options only)", argv[optind]);
    if (!any_t)
        o->transports[TR_TCP4] = true;
    if (o->compare[0] >= 0) {
        if (!any_s)
            memset(o->strategies, 0, probe_strategy_count() * sizeof(bool));
        o->strategies[o->compare[0]] = o->strategies[o->compare[1]] = true;
    } else if (!any_s) {
        for (unsigned i = 0; i < probe_strategy_count(); i++)
            o->strategies[i] = true;
    }
    if (!any_m && !(any_t && o->transports[TR_DROP] && check_only_drop(o)))
        o->modes[MODE_PINGPONG] = o->modes[MODE_STREAM] = true;
    else if (!any_m)
        o->modes[MODE_STREAM] = true;
    if (!o->nsizes)
        for (unsigned i = 0; i < sizeof default_sizes / sizeof default_sizes[0]; i++)
            o->sizes[o->nsizes++] = default_sizes[i];
    return check_args(o, any_t, any_m);
}

/* The first SIGINT/SIGTERM asks the run to stop (the current cell ends within about 20 ms, the
 * namespaces are removed, the output is written). A signal a second or more later means the
 * stop is not happening: remove the namespaces and leave at once. Signals closer together are
 * one request: `timeout` and some shells send the same signal to the process and its group. */
static void on_signal(int sig)
{
    static struct timespec first;
    struct timespec now;
    int saved = errno; /* the interrupted code may be about to read errno */
    (void)sig;
    clock_gettime(CLOCK_MONOTONIC, &now); /* async-signal-safe (POSIX.1-2008) */
    if (!probe_stopping()) {
        first = now;
        __atomic_store_n(&probe_stop, 1, __ATOMIC_RELAXED);
    } else if (now.tv_sec - first.tv_sec >= 2) {
        probe_netns_cleanup();
        _exit(130);
    }
    errno = saved;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

/* The selected cells, in the order they run and are printed. */
static struct probe_cell *list_cells(const struct probe_opts *o, size_t *ncells)
{
    size_t cap = (size_t)TR_COUNT * probe_strategy_count() * MODE_COUNT * o->nsizes, n = 0;
    struct probe_cell *cells = calloc(cap ? cap : 1, sizeof *cells);
    if (!cells)
        return NULL;
    for (int t = 0; t < TR_COUNT; t++)
        for (unsigned s = 0; s < probe_strategy_count(); s++)
            for (int m = 0; m < MODE_COUNT; m++)
                for (unsigned z = 0; z < o->nsizes; z++)
                    if (o->transports[t] && o->strategies[s] && o->modes[m])
                        cells[n++] = (struct probe_cell){.transport = t, .strategy = s,
                                                         .mode = m, .size = o->sizes[z],
                                                         .opts = o};
    *ncells = n;
    return cells;
}

/* Runs every cell --repeat times, interleaved; prints table rows as they finish (after the
 * last pass when repeating). Returns the cells, each holding its median pass. */
static struct probe_cell *run_all(const struct probe_opts *o, size_t *ncells)
{
    size_t n;
    struct probe_cell *cells = list_cells(o, &n);
    struct probe_cell *passes = calloc(n * o->repeat + 1, sizeof *passes);
    uint64_t *lat = malloc(o->max_ops * sizeof *lat);
    if (!cells || !passes || !lat) {
        fprintf(stderr, "rill-probe: out of memory\n");
        exit(1);
    }
    if (!o->json)
        probe_report_header();
    unsigned done = 0;
    size_t ran = 0;
    for (unsigned p = 0; p < o->repeat && !probe_stopping(); p++) {
        if (o->repeat > 1)
            fprintf(stderr, "rill-probe: pass %u of %u\n", p + 1, o->repeat);
        for (size_t i = 0; i < n && !probe_stopping(); i++, ran += p == 0) {
            struct probe_cell *c = &passes[p * n + i];
            *c = cells[i];
            c->lat = lat;
            probe_run_cell(c);
            c->lat = NULL;
            if (!o->json && o->repeat == 1)
                probe_report_row(c);
        }
        done += !probe_stopping();
    }
    /* An interrupted pass is incomplete: only whole passes count, or what the first one ran. */
    if (!done)
        n = ran;
    probe_fold_repeats(cells, passes, n, done ? done : 1);
    if (!o->json && o->repeat > 1)
        for (size_t i = 0; i < n; i++)
            probe_report_row(&cells[i]);
    free(passes);
    free(lat);
    *ncells = n;
    return cells;
}

/* --profile: whether sampling works here; when not, the run goes on without profiles and
 * says so once, with the setting that fixes it. --folded: the file opens before anything runs. */
static int profile_setup(struct probe_opts *o)
{
    if (!o->profile)
        return 0;
    if (o->profile_scope == PROF_SCOPE_AUTO)
        o->profile_scope = probe_profile_available(PROF_SCOPE_CPU, o->profile_why,
                                                   sizeof o->profile_why)
                               ? PROF_SCOPE_CPU
                               : PROF_SCOPE_THREAD;
    else if (o->profile_scope == PROF_SCOPE_CPU &&
             !probe_profile_available(PROF_SCOPE_CPU, o->profile_why, sizeof o->profile_why)) {
        fprintf(stderr, "rill-probe: --profile-scope cpu: %s; sampling per thread instead\n",
                o->profile_why);
        o->profile_scope = PROF_SCOPE_THREAD;
    }
    if (!probe_profile_available(o->profile_scope, o->profile_why, sizeof o->profile_why)) {
        fprintf(stderr, "rill-probe: --profile: %s; running the cells without a profile\n",
                o->profile_why);
        o->profile = false;
        return 0;
    }
    o->profile_why[0] = 0;
    char why[160];
    if (o->folded && probe_prof_folded_open(o->folded, why, sizeof why) < 0) {
        fprintf(stderr, "rill-probe: bad folded: '%s': %s\n", o->folded, why);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct probe_opts o = {.time_s = 0.5, .max_ops = 1000000, .iov = 4, .batch = 16,
                           .repeat = 1, .pin = {-1, -1}, .top = 10, .compare = {-1, -1},
                           .profile_hz = PROBE_PROF_HZ_DEFAULT};
    o.strategies = calloc(probe_strategy_count(), sizeof(bool));
    int r = o.strategies ? parse_args(argc, argv, &o) : -1;
    if (r == 0)
        r = profile_setup(&o);
    if (r != 0) {
        free(o.strategies);
        return r > 0 ? 0 : 2;
    }
    install_signals();
    atexit(probe_netns_cleanup);
    if ((o.transports[TR_VETH] || o.transports[TR_DROP]) && geteuid() == 0)
        probe_netns_remove_stale();

    size_t n;
    struct probe_cell *cells = run_all(&o, &n);
    if (o.json)
        probe_report_json(cells, n, &o);
    else if (o.compare[0] >= 0)
        probe_report_compare(cells, n, &o);
    else if (o.matrix)
        probe_report_ranking(cells, n, &o);
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (cells[i].res.status == CELL_ERROR)
            rc = 1;
    probe_prof_folded_close();
    probe_netns_cleanup();
    free(cells);
    free(o.strategies);
    return probe_stopping() ? 130 : rc;
}
