/* rill-echo: an echo server on rill, the benchmark target.
 *
 * A rill_engine runs one pinned loop per CPU (or --loops N), each with its own SO_REUSEPORT
 * listener on every --listen address, so the kernel spreads connections over loops and nothing
 * is shared. Received buffers go back out with rill_send_bufs(): no copy. A client that sends
 * faster than it reads is slowed down by pausing reads at the write queue's high-water mark and
 * resuming on drain, so memory stays bounded whatever the peer does. SIGINT/SIGTERM stop it
 * gracefully: listeners close, queued replies go out (for up to DRAIN_MS), then it exits. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"
#include "../server_cli.h"

#define MAX_LISTEN 16
#define DRAIN_MS 2000 /* how long SIGINT/SIGTERM lets queued replies go out */

static const char *listen_uris[MAX_LISTEN];
static int n_listen;

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (const char *)rill_buf_data(buf)),
                              (uint32_t)len};
    int r = rill_send_bufs(c, &s, 1, NULL, NULL);
    if (r < 0) {
        rill_close(c);
        return;
    }
    /* Backpressure: a peer that does not read stops being read from. */
    if (rill_conn_write_queued(c) >= (1u << 20))
        rill_read_pause(c);
}

static void on_drain(rill_conn *c, void *ctx)
{
    (void)ctx;
    rill_read_resume(c);
}

static const struct rill_conn_handler echo_handler = {
    .on_data = on_data,
    .on_drain = on_drain,
};

/* Datagrams: each goes back to its sender from the buffer it arrived in (a reference held
 * until the send completes). A full send queue drops the echo, as a UDP server would. */
static void dgram_sent(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    (void)status;
    rill_buf_release(ctx);
}

static void on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                        const struct sockaddr *from, socklen_t fromlen, uint32_t flags, void *ctx)
{
    (void)ctx;
    if (!from || (flags & RILL_DGRAM_TRUNC))
        return; /* nobody to answer, or not the whole datagram */
    struct iovec iov = {(void *)data, len};
    if (rill_dgram_sendto(d, &iov, 1, from, fromlen, dgram_sent, rill_buf_ref(buf)) < 0)
        rill_buf_release(buf);
}

static const struct rill_dgram_handler dgram_handler = {.on_datagram = on_datagram};

/* One datagram socket on loop l (before start, so from this thread): SO_REUSEPORT, like the
 * listeners. Returns the bound UDP port, 0 for unix, or a negative errno. */
static int open_dgram(rill_loop *l, const char *uri)
{
    struct rill_dgram_config cfg = {.handler = &dgram_handler, .batch = 32,
                                    .flags = RILL_DGRAM_F_REUSEPORT | RILL_DGRAM_F_UNLINK_STALE};
    rill_dgram *d;
    int r = rill_dgram_open(l, uri, &cfg, &d);
    return r < 0 ? r : rill_dgram_port(d);
}

/* Opens a datagram address on every loop (unix+dgram: loop 0 only, a path binds once).
 * Returns the port (UDP), 0 (unix) or a negative errno. */
static int serve_dgram(rill_engine *e, const char *uri, char *bound, size_t cap)
{
    bool is_unix = strncmp(uri, "unix", 4) == 0;
    uint32_t n = is_unix ? 1 : rill_engine_loop_count(e);
    snprintf(bound, cap, "%s", uri);
    int port = 0;
    /* The first socket's port is what the others bind when the URI asked for port 0. */
    for (uint32_t i = 0; i < n; i++) {
        int r = open_dgram(rill_engine_loop(e, i), bound);
        if (r < 0)
            return r;
        if (i == 0 && r > 0) {
            port = r;
            const char *colon = strrchr(uri, ':');
            if (colon && strcmp(colon, ":0") == 0)
                snprintf(bound, cap, "%.*s:%d", (int)(colon - uri), uri, port);
        }
    }
    return port;
}

static bool is_dgram_uri(const char *uri)
{
    return strncmp(uri, "udp://", 6) == 0 || strncmp(uri, "unix+dgram:", 11) == 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rill-echo [options]\n"
            "  -l, --listen URI    address to serve, repeatable (default tcp://127.0.0.1:7000);\n"
            "                      tcp://host:port, tcp://[v6]:port, udp://host:port,\n"
            "                      unix:/path, unix:@abstract, unix+seqpacket:/path,\n"
            "                      unix+dgram:/path; port 0 picks a free port. Unix paths are\n"
            "                      served by loop 0, on a stale socket file too\n"
            "  -b, --backend NAME  auto, epoll or uring (default auto; RILL_BACKEND overrides)\n"
            "  -t, --loops N       loops, one per thread (default: one per CPU; --threads too)\n"
            "      --pin/--no-pin  pin loop i to the i-th CPU of the affinity mask (default on)\n"
            "      --steer         serve each connection on the loop of the CPU it arrived on\n"
            "  -s, --stats         print one line of counters per second\n"
            "      --idle-timeout MS    close a connection with no traffic for MS (default 0: off)\n"
            "      --send-timeout MS    close a client whose echoes have not moved for MS, one\n"
            "                      that stopped reading (default 0: off)\n"
            "  -h, --help          this text\n"
            "      --version       print the version (rill-echo X.Y.Z) and exit\n"
            "rill-echo is a benchmark target: it times nobody out unless told to. Memory stays\n"
            "bounded without that: each connection stops being read at 1 MiB of unsent echoes,\n"
            "and each loop at its memory ceiling (32 MiB), closing the connections stalled\n"
            "longest if the ceiling holds for 1 s.\n"
            "Prints \"listening URI loops=N backend=NAME caps=NAME,NAME,..\" per address once\n"
            "ready (the capabilities by rill_cap_name(); RILL_URING_DISABLE=recv_bundle,... turns\n"
            "io_uring features off); on SIGINT or SIGTERM it drains (up to 2 s) and exits.\n");
}

static void print_stats(rill_engine *e, struct rill_loop_stats *prev)
{
    struct rill_loop_stats sum;
    if (rill_engine_stats(e, NULL, 0, &sum) < 0)
        return;
    printf("conns=%llu accepts/s=%llu in=%.1fMB/s out=%.1fMB/s reads/s=%llu writes/s=%llu "
           "enters/s=%llu bufs=%llu held=%.1fMB mapped=%.1fMB mem_closes=%llu emfile=%llu\n",
           (unsigned long long)sum.conns_open, (unsigned long long)(sum.accepts - prev->accepts),
           (double)(sum.bytes_in - prev->bytes_in) / 1e6,
           (double)(sum.bytes_out - prev->bytes_out) / 1e6,
           (unsigned long long)(sum.sys_read - prev->sys_read),
           (unsigned long long)(sum.sys_write - prev->sys_write),
           (unsigned long long)(sum.uring_enters - prev->uring_enters),
           (unsigned long long)sum.bufs_in_use, (double)sum.mem_held / 1e6,
           (double)sum.buf_bytes_mapped / 1e6, (unsigned long long)sum.mem_closes,
           (unsigned long long)sum.emfile_events);
    fflush(stdout);
    *prev = sum;
}

struct echo_opts {
    struct rill_engine_config ecfg;
    bool stats, steer;
    uint32_t idle_timeout_ms, send_timeout_ms;
};

/* Parses the command line. Returns -1 to go on, else the exit status (2: bad usage). */
static int parse_args(int argc, char **argv, struct echo_opts *eo)
{
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'}, {"backend", required_argument, 0, 'b'},
        {"loops", required_argument, 0, 't'},  {"threads", required_argument, 0, 't'},
        {"pin", no_argument, 0, 'p'},          {"no-pin", no_argument, 0, 'P'},
        {"steer", no_argument, 0, 'S'},        {"stats", no_argument, 0, 's'},
        {"idle-timeout", required_argument, 0, 'I'},
        {"send-timeout", required_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    rill_engine_config_init(&eo->ecfg);
    int o;
    while ((o = getopt_long(argc, argv, "l:b:t:sh", opts, NULL)) != -1) {
        switch (o) {
        case 'l':
            if (n_listen == MAX_LISTEN) {
                fprintf(stderr, "rill-echo: at most %d --listen\n", MAX_LISTEN);
                return 2;
            }
            listen_uris[n_listen++] = optarg;
            break;
        case 'b':
            if (server_cli_backend(optarg, &eo->ecfg.loop.backend) < 0) {
                fprintf(stderr, "rill-echo: --backend must be auto, epoll or uring\n");
                return 2;
            }
            break;
        case 't': {
            char *end;
            errno = 0;
            long n = strtol(optarg, &end, 10);
            if (end == optarg || *end || errno || n < 1 || n > 1024) {
                fprintf(stderr, "rill-echo: --loops must be a whole number 1..1024, not '%s'\n",
                        optarg);
                return 2;
            }
            eo->ecfg.loops = (uint32_t)n;
            break;
        }
        case 'p':
            eo->ecfg.flags &= ~RILL_ENGINE_F_NO_PIN;
            break;
        case 'P':
            eo->ecfg.flags |= RILL_ENGINE_F_NO_PIN;
            break;
        case 'S':
            eo->steer = true;
            break;
        case 's':
            eo->stats = true;
            break;
        case 'I':
            if (server_cli_ms("rill-echo", "--idle-timeout", optarg, &eo->idle_timeout_ms) < 0)
                return 2;
            break;
        case 'T':
            if (server_cli_ms("rill-echo", "--send-timeout", optarg, &eo->send_timeout_ms) < 0)
                return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("rill-echo %s\n", rill_version());
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rill-echo: unexpected argument '%s' (addresses go with --listen)\n",
                argv[optind]);
        return 2;
    }
    if (n_listen == 0)
        listen_uris[n_listen++] = "tcp://127.0.0.1:7000";
    for (int i = 0; i < n_listen; i++)
        if (server_cli_check_listen("rill-echo", listen_uris[i]) < 0)
            return 2;
    return -1;
}

/* Opens every --listen address on the engine and prints its "listening" line. Returns 0 or the
 * first error (printed). */
static int open_all(rill_engine *e, const struct echo_opts *eo)
{
    bool steer = eo->steer;
    struct rill_listen_config lc = {
        .handler = &echo_handler,
        .flags = RILL_LISTEN_F_UNLINK_STALE,
        .conn = {.idle_timeout_ms = eo->idle_timeout_ms, .send_timeout_ms = eo->send_timeout_ms}};
    rill_loop *l0 = rill_engine_loop(e, 0);
    char caps[256];
    rill_caps_format(rill_loop_caps(l0), caps, sizeof caps);
    for (int i = 0; i < n_listen; i++) {
        const char *uri = listen_uris[i];
        int r;
        if (is_dgram_uri(uri)) {
            char bound[256];
            if ((r = serve_dgram(e, uri, bound, sizeof bound)) < 0) {
                fprintf(stderr, "rill-echo: open %s: %s\n", uri, rill_strerror(r));
                return r;
            }
            printf("listening %s loops=%u backend=%s caps=%s\n", bound,
                   strncmp(bound, "unix", 4) == 0 ? 1 : rill_engine_loop_count(e),
                   rill_loop_backend_name(l0), caps);
            continue;
        }
        rill_steering how;
        r = rill_engine_listen(e, uri, &lc, steer ? RILL_ENGINE_LISTEN_F_STEER : 0, &how);
        if (r < 0) {
            fprintf(stderr, "rill-echo: listen %s: %s\n", uri, rill_strerror(r));
            return r;
        }
        const char *colon = strrchr(uri, ':');
        int plen = colon && !strcmp(colon, ":0") ? (int)(colon - uri) : -1;
        if (plen >= 0)
            printf("listening %.*s:%d", plen, uri, r);
        else
            printf("listening %s", uri);
        printf(" loops=%u backend=%s caps=%s steering=%s\n",
               strncmp(uri, "unix", 4) == 0 ? 1 : rill_engine_loop_count(e),
               rill_loop_backend_name(l0), caps,
               how == RILL_STEER_BPF_CPU         ? "bpf-cpu"
               : how == RILL_STEER_INCOMING_CPU ? "incoming-cpu"
                                                : "hash");
    }
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    struct echo_opts eo = {0};
    int r = parse_args(argc, argv, &eo);
    if (r >= 0)
        return r;

    sigset_t sigs; /* taken by this thread only, synchronously */
    server_cli_block_stop_signals(&sigs);

    rill_engine *e;
    if ((r = rill_engine_create(&eo.ecfg, &e)) < 0) {
        fprintf(stderr, "rill-echo: engine: %s\n", rill_strerror(r));
        return 1;
    }
    if (open_all(e, &eo) < 0) {
        rill_engine_destroy(e);
        return 1;
    }
    if ((r = rill_engine_start(e)) < 0) {
        fprintf(stderr, "rill-echo: start: %s\n", rill_strerror(r));
        rill_engine_destroy(e);
        return 1;
    }
    struct rill_loop_stats prev = {0};
    for (;;) {
        struct timespec one = {1, 0};
        int sig = sigtimedwait(&sigs, NULL, &one);
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (eo.stats)
            print_stats(e, &prev);
    }
    rill_engine_stop(e, DRAIN_MS);
    /* How evenly the kernel spread connections over the loops. */
    struct rill_loop_stats per[64];
    int n = rill_engine_stats(e, per, 64, NULL);
    for (int i = 0; i < n && i < 64; i++)
        fprintf(stderr, "rill-echo: loop %d cpu %d accepted %llu bytes-in %llu\n", i,
                rill_engine_loop_cpu(e, (uint32_t)i), (unsigned long long)per[i].accepts,
                (unsigned long long)per[i].bytes_in);
    rill_engine_destroy(e);
    return 0;
}
