/* rill-load's command line, in the style of wrk: -c -t -d plus a few of our own. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

/* Limits that keep the arithmetic in range, not performance advice. */
#define MAX_CONNS 1000000u
#define MAX_SIZE (256ul << 20)
#define MAX_DEPTH 65536u
#define MAX_INFLIGHT_BYTES (1ul << 30) /* depth * size: bytes one connection may have queued */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: rill-load [options] tcp://HOST:PORT\n"
        "\n"
        "Closed-loop TCP echo load: every connection sends a request of --size bytes with a\n"
        "known pattern, waits for exactly those bytes to come back, checks them byte for byte,\n"
        "records the latency and sends the next one; --depth requests are kept in flight.\n"
        "\n"
        "  -c, --connections N  connections to open, spread over the threads (default 64)\n"
        "  -t, --threads N      threads, each running its own rill loop (default 1)\n"
        "  -d, --duration T     length of the measured window (default 5s)\n"
        "      --warmup T       load before the window, left out of its figures (default 1s)\n"
        "                       T is whole seconds with an optional s, m or h suffix\n"
        "  -s, --size BYTES     request size; k, m suffixes are 1024-based (default 64)\n"
        "      --depth N        requests in flight per connection (default 1)\n"
        "  -b, --backend NAME   auto, epoll or uring (default auto; RILL_BACKEND overrides)\n"
        "      --pin CPUS       pin thread i to the i-th CPU of a list such as 1 or 0,2-3,\n"
        "                       cycling through it (default: not pinned)\n"
        "      --server-pid PID read the server's CPU time from /proc/PID/stat and report\n"
        "                       server CPU microseconds per request (default: not reported)\n"
        "  -h, --help           this text\n"
        "\n"
        "Prints one line per second (requests, p50/p99 of that second, errors, connections\n"
        "open), then: requests, requests/s, MB/s, latency percentiles in microseconds, errors\n"
        "by kind, client CPU and system calls per request, and the backend. Connections that\n"
        "fail or close are counted and reopened. Exit code: 0; 1 when no request completed in\n"
        "the window or a reply's bytes differed; 2 for a bad command line.\n");
}

/* Parses an unsigned decimal with an optional suffix from `units` ("smh" or "km"), each
 * multiplying by the matching entry of `mult`. Returns 0 or -EINVAL. */
static int parse_num(const char *s, const char *units, const unsigned long *mult,
                     unsigned long max, unsigned long *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (errno)
        return -EINVAL;
    if (*end) {
        const char *u = strchr(units, tolower((unsigned char)*end));
        if (!u || end[1])
            return -EINVAL;
        unsigned long m = mult[u - units];
        if (v > max / m)
            return -EINVAL;
        v *= m;
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_seconds(const char *s, uint32_t *out)
{
    static const unsigned long mult[] = {1, 60, 3600};
    unsigned long v;
    if (parse_num(s, "smh", mult, 7 * 24 * 3600ul, &v) < 0)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

/* "1", "0,1", "0-3,6": a list of CPU numbers, in the order given. */
static int parse_cpus(const char *s, struct load_opts *o)
{
    o->ncpus = 0;
    while (*s) {
        char *end;
        if (!isdigit((unsigned char)*s))
            return -EINVAL;
        long a = strtol(s, &end, 10), b = a;
        if (*end == '-') {
            if (!isdigit((unsigned char)end[1]))
                return -EINVAL;
            b = strtol(end + 1, &end, 10);
        }
        if (a > b || b >= CPU_SETSIZE)
            return -EINVAL;
        for (long c = a; c <= b; c++) {
            if (o->ncpus == LOAD_MAX_CPUS)
                return -EINVAL;
            o->cpus[o->ncpus++] = (int)c;
        }
        if (*end == ',' && end[1])
            end++;
        else if (*end)
            return -EINVAL;
        s = end;
    }
    return o->ncpus ? 0 : -EINVAL;
}

static int parse_backend(const char *s, rill_backend *out)
{
    if (!strcmp(s, "epoll"))
        *out = RILL_BACKEND_EPOLL;
    else if (!strcmp(s, "uring") || !strcmp(s, "io_uring"))
        *out = RILL_BACKEND_URING;
    else if (!strcmp(s, "auto"))
        *out = RILL_BACKEND_AUTO;
    else
        return -EINVAL;
    return 0;
}

static int bad(const char *what, const char *arg)
{
    fprintf(stderr, "rill-load: bad %s '%s' (see --help)\n", what, arg ? arg : "");
    return 2;
}

/* Range checks across options, once all are known. */
static int check(struct load_opts *o)
{
    if (o->conns == 0 || o->conns > MAX_CONNS)
        return bad("connection count", "0");
    if (o->threads == 0 || o->threads > LOAD_MAX_THREADS || o->threads > o->conns) {
        fprintf(stderr, "rill-load: --threads must be 1..%d and at most --connections\n",
                LOAD_MAX_THREADS);
        return 2;
    }
    if (o->duration_s == 0)
        return bad("duration", "0");
    if (o->size == 0 || o->depth == 0 || (uint64_t)o->size * o->depth > MAX_INFLIGHT_BYTES) {
        fprintf(stderr, "rill-load: --size and --depth must be > 0, their product <= %lu\n",
                MAX_INFLIGHT_BYTES);
        return 2;
    }
    return 0;
}

static int parse_one(int opt, const char *arg, struct load_opts *o)
{
    static const unsigned long kib[] = {1024, 1024 * 1024};
    static const unsigned long none[] = {1};
    unsigned long v;
    switch (opt) {
    case 'c':
        if (parse_num(arg, "", none, MAX_CONNS, &v) < 0)
            return bad("connection count", arg);
        o->conns = (uint32_t)v;
        return 0;
    case 't':
        if (parse_num(arg, "", none, LOAD_MAX_THREADS, &v) < 0)
            return bad("thread count", arg);
        o->threads = (uint32_t)v;
        return 0;
    case 'd':
        return parse_seconds(arg, &o->duration_s) < 0 ? bad("duration", arg) : 0;
    case 'W':
        return parse_seconds(arg, &o->warmup_s) < 0 ? bad("warm-up", arg) : 0;
    case 's':
        if (parse_num(arg, "km", kib, MAX_SIZE, &v) < 0)
            return bad("size", arg);
        o->size = v;
        return 0;
    case 'D':
        if (parse_num(arg, "", none, MAX_DEPTH, &v) < 0)
            return bad("depth", arg);
        o->depth = (uint32_t)v;
        return 0;
    case 'b':
        return parse_backend(arg, &o->backend) < 0 ? bad("backend", arg) : 0;
    case 'P':
        return parse_cpus(arg, o) < 0 ? bad("CPU list", arg) : 0;
    case 'S':
        if (parse_num(arg, "", none, INT_MAX, &v) < 0 || v == 0)
            return bad("server pid", arg);
        o->server_pid = (long)v;
        return 0;
    }
    return 2;
}

int opts_parse(int argc, char **argv, struct load_opts *o)
{
    static const struct option lopts[] = {
        {"connections", required_argument, 0, 'c'}, {"threads", required_argument, 0, 't'},
        {"duration", required_argument, 0, 'd'},    {"warmup", required_argument, 0, 'W'},
        {"size", required_argument, 0, 's'},        {"depth", required_argument, 0, 'D'},
        {"backend", required_argument, 0, 'b'},     {"pin", required_argument, 0, 'P'},
        {"server-pid", required_argument, 0, 'S'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->conns = 64;
    o->threads = 1;
    o->duration_s = 5;
    o->warmup_s = 1;
    o->size = 64;
    o->depth = 1;
    o->backend = RILL_BACKEND_AUTO;
    int opt, r;
    while ((opt = getopt_long(argc, argv, "c:t:d:s:b:h", lopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            return -1;
        }
        if (opt == '?') {
            usage(stderr);
            return 2;
        }
        if ((r = parse_one(opt, optarg, o)) != 0)
            return r;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "rill-load: expected one address, such as tcp://127.0.0.1:7000\n");
        usage(stderr);
        return 2;
    }
    o->target = o->uri = argv[optind];
    if (strncmp(o->uri, "tcp://", 6) != 0)
        return bad("address (only tcp:// for now)", o->uri);
    return check(o);
}

/* Splits "tcp://HOST:PORT" or "tcp://[V6]:PORT" into host and port. Returns 0 or -EINVAL. */
static int split_target(const char *uri, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *h = uri + 6, *colon;
    size_t hn;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        h++;
        hn = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(h, ':');
        if (!colon)
            return -EINVAL;
        hn = (size_t)(colon - h);
    }
    if (hn == 0 || hn >= hcap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap)
        return -EINVAL;
    memcpy(host, h, hn);
    host[hn] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

int opts_resolve(struct load_opts *o)
{
    static char uri[INET6_ADDRSTRLEN + 32];
    char host[256], port[16], num[INET6_ADDRSTRLEN];
    if (split_target(o->target, host, sizeof host, port, sizeof port) < 0) {
        fprintf(stderr, "rill-load: bad address '%s': expected tcp://HOST:PORT\n", o->target);
        return 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc == 0) { /* already numeric (an IPv6 zone included): rill takes it as it is */
        freeaddrinfo(res);
        return 0;
    }
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "rill-load: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return 1;
    }
    /* The first address is the one the resolver prefers; every connection uses it. */
    const void *a = res->ai_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    inet_ntop(res->ai_family, a, num, sizeof num);
    snprintf(uri, sizeof uri, res->ai_family == AF_INET6 ? "tcp://[%s]:%s" : "tcp://%s:%s", num,
             port);
    freeaddrinfo(res);
    o->uri = uri;
    return 0;
}
