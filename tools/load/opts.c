/* rill-load's command line, in the style of wrk: -c -t -d -R plus a few of our own. The help
 * text is in help.c. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <limits.h>
#include <math.h>
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


/* "64", "4k" or "64:1024" (uniform between the two, inclusive). */
static int parse_size(const char *s, struct load_opts *o)
{
    static const unsigned long kib[] = {1024, 1024 * 1024};
    char lo[32];
    const char *colon = strchr(s, ':');
    unsigned long a, b;
    if (!colon)
        return parse_num(s, "km", kib, MAX_SIZE, &a) < 0 || a == 0 ? -EINVAL
                                                                   : (o->size_min = o->size_max = a, 0);
    if ((size_t)(colon - s) >= sizeof lo)
        return -EINVAL;
    memcpy(lo, s, (size_t)(colon - s));
    lo[colon - s] = '\0';
    if (parse_num(lo, "km", kib, MAX_SIZE, &a) < 0 || parse_num(colon + 1, "km", kib, MAX_SIZE, &b) < 0 ||
        a == 0 || b < a)
        return -EINVAL;
    o->size_min = a;
    o->size_max = b;
    return 0;
}

static int parse_rate(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v > 0) || v > 1e9)
        return -EINVAL;
    *out = v;
    return 0;
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
    if (o->depth == 0 || (uint64_t)o->size_max * o->depth > MAX_INFLIGHT_BYTES) {
        fprintf(stderr, "rill-load: --size and --depth must be > 0, their product <= %lu\n",
                MAX_INFLIGHT_BYTES);
        return 2;
    }
    if (o->ramp_s && o->rate <= 0) {
        fprintf(stderr, "rill-load: --ramp needs a rate (-R)\n");
        return 2;
    }
    if (o->proto == PROTO_UDP && (o->size_min < 8 || o->size_max > 65507 || o->churn)) {
        fprintf(stderr, "rill-load: udp:// needs --size between 8 and 65507 (a request starts "
                        "with its 8-byte number) and no --churn\n");
        return 2;
    }
    if (o->dist == DIST_POISSON && o->rate <= 0) {
        fprintf(stderr, "rill-load: --dist poisson needs a rate (-R)\n");
        return 2;
    }
    return 0;
}

static int parse_misc(int opt, const char *arg, struct load_opts *o)
{
    static const unsigned long none[] = {1};
    unsigned long v;
    switch (opt) {
    case 'R':
        return parse_rate(arg, &o->rate) < 0 ? bad("rate", arg) : 0;
    case 'n':
        if (parse_num(arg, "", none, 1ul << 48, &v) < 0 || v == 0)
            return bad("request count", arg);
        o->count = v;
        return 0;
    case 'X':
        if (!strcmp(arg, "even") || !strcmp(arg, "uniform"))
            o->dist = DIST_EVEN;
        else if (!strcmp(arg, "poisson") || !strcmp(arg, "exp"))
            o->dist = DIST_POISSON;
        else
            return bad("distribution", arg);
        return 0;
    case 'r':
        return parse_seconds(arg, &o->ramp_s) < 0 ? bad("ramp", arg) : 0;
    case 'C':
        if (parse_num(arg, "", none, UINT32_MAX, &v) < 0 || v == 0)
            return bad("churn count", arg);
        o->churn = (uint32_t)v;
        return 0;
    case 'T': {
        uint32_t s;
        if (parse_seconds(arg, &s) < 0 || s == 0 || s > 86400)
            return bad("timeout", arg);
        o->timeout_ms = s * 1000u;
        return 0;
    }
    case 'j':
        o->json = arg;
        return 0;
    case 'q':
        o->quiet = true;
        return 0;
    }
    return 2;
}

static int parse_one(int opt, const char *arg, struct load_opts *o)
{
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
        return parse_size(arg, o) < 0 ? bad("size", arg) : 0;
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
    return parse_misc(opt, arg, o);
}

/* Splits "HOST:PORT" or "[V6]:PORT" (h points at it; it ends at '/' or the end) into host and
 * port. Returns 0 or -EINVAL. */
static int split_hostport(const char *h, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon, *end = h + strcspn(h, "/");
    size_t hn;
    if (*h == '[') {
        const char *close = memchr(h, ']', (size_t)(end - h));
        if (!close || close[1] != ':')
            return -EINVAL;
        h++;
        hn = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = memrchr(h, ':', (size_t)(end - h));
        if (!colon)
            return -EINVAL;
        hn = (size_t)(colon - h);
    }
    size_t pn = (size_t)(end - colon - 1);
    if (hn == 0 || hn >= hcap || pn == 0 || pn >= pcap)
        return -EINVAL;
    memcpy(host, h, hn);
    host[hn] = '\0';
    memcpy(port, colon + 1, pn);
    port[pn] = '\0';
    return 0;
}

/* Checks the target's scheme and sets the protocol. Returns 0 or an exit code. */
static int parse_target(struct load_opts *o, const char *t)
{
    o->target = o->uri = t;
    o->path = "/";
    if (!strncmp(t, "udp://", 6)) {
        o->proto = PROTO_UDP;
        return 0;
    }
    if (!strncmp(t, "http://", 7)) {
        o->proto = PROTO_HTTP;
        const char *slash = strchr(t + 7, '/');
        if (slash)
            o->path = slash;
        size_t hn = slash ? (size_t)(slash - t - 7) : strlen(t + 7);
        if (hn == 0 || hn >= sizeof o->host)
            return bad("address", t);
        memcpy(o->host, t + 7, hn);
        o->host[hn] = '\0';
        return 0;
    }
    if (!strncmp(t, "https://", 8)) {
        fprintf(stderr, "rill-load: https is not supported (no TLS)\n");
        return 2;
    }
    o->seqpacket = !strncmp(t, "unix+seqpacket:", 15);
    if (!strncmp(t, "tcp://", 6) || !strncmp(t, "unix:", 5) || o->seqpacket)
        return 0;
    return bad("address (tcp://, udp://, unix:, unix+seqpacket:, http://)", t);
}

int opts_parse(int argc, char **argv, struct load_opts *o)
{
    static const struct option lopts[] = {
        {"connections", required_argument, 0, 'c'}, {"threads", required_argument, 0, 't'},
        {"duration", required_argument, 0, 'd'},    {"warmup", required_argument, 0, 'W'},
        {"size", required_argument, 0, 's'},        {"depth", required_argument, 0, 'D'},
        {"backend", required_argument, 0, 'b'},     {"pin", required_argument, 0, 'P'},
        {"server-pid", required_argument, 0, 'S'},  {"help", no_argument, 0, 'h'},
        {"rate", required_argument, 0, 'R'},        {"requests", required_argument, 0, 'n'},
        {"dist", required_argument, 0, 'X'},        {"ramp", required_argument, 0, 'r'},
        {"churn", required_argument, 0, 'C'},       {"timeout", required_argument, 0, 'T'},
        {"json", required_argument, 0, 'j'},        {"quiet", no_argument, 0, 'q'},
        {"version", no_argument, 0, 'V'},         {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->argc = argc;
    o->argv = argv;
    o->conns = 64;
    o->threads = 1;
    o->duration_s = 5;
    o->warmup_s = 1;
    o->size_min = o->size_max = 64;
    o->depth = 1;
    o->timeout_ms = 10000;
    o->backend = RILL_BACKEND_AUTO;
    bool duration_given = false, timeout_given = false;
    int opt, r;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:t:d:s:b:R:n:qh", lopts, NULL)) != -1) {
        if (opt == 'h') {
            opts_usage(stdout);
            return -1;
        }
        if (opt == 'V') {
            printf("rill-load %s\n", rill_version());
            return -1;
        }
        if (opt == '?') {
            fprintf(stderr, "rill-load: see --help\n");
            return 2;
        }
        duration_given |= opt == 'd';
        timeout_given |= opt == 'T';
        if ((r = parse_one(opt, optarg, o)) != 0)
            return r;
    }
    if (!timeout_given && !strncmp(argv[argc - 1], "udp://", 6))
        o->timeout_ms = 1000; /* a lost datagram holds its slot this long */
    if (o->count && !duration_given)
        o->duration_s = 3600; /* -n alone: the count ends the run; an hour bounds it */
    if (optind != argc - 1) {
        fprintf(stderr, "rill-load: expected one address, such as tcp://127.0.0.1:7000 "
                        "(see --help)\n");
        return 2;
    }
    if ((r = parse_target(o, argv[optind])) != 0)
        return r;
    return check(o);
}

int opts_resolve(struct load_opts *o)
{
    static char uri[INET6_ADDRSTRLEN + 256 + 32];
    char host[256], port[16], num[INET6_ADDRSTRLEN + 256];
    bool http = o->proto == PROTO_HTTP, udp = o->proto == PROTO_UDP;
    if (!http && !udp && strncmp(o->target, "tcp://", 6) != 0)
        return 0; /* unix: nothing to resolve */
    const char *hp = o->target + (http ? 7 : 6);
    if (split_hostport(hp, host, sizeof host, port, sizeof port) < 0) {
        fprintf(stderr, "rill-load: bad address '%s': expected %s://HOST:PORT\n", o->target,
                http ? "http" : udp ? "udp" : "tcp");
        return 2; /* a bad command line, before anything started */
    }
    char *end;
    errno = 0;
    long pn = strtol(port, &end, 10);
    if (end == port || *end || errno || pn < 1 || pn > 65535) {
        fprintf(stderr, "rill-load: bad port '%s' in '%s': expected 1..65535\n", port, o->target);
        return 2;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "rill-load: cannot resolve host %s: %s\n", host, gai_strerror(rc));
        return 1;
    }
    /* The first address is the one the resolver prefers; every connection uses it. */
    const void *a = res->ai_family == AF_INET6
                        ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                        : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    inet_ntop(res->ai_family, a, num, sizeof num);
    if (res->ai_family == AF_INET6 && ((struct sockaddr_in6 *)res->ai_addr)->sin6_scope_id &&
        strchr(host, '%'))
        snprintf(num, sizeof num, "%s", host); /* keep a zone the user gave */
    snprintf(uri, sizeof uri, res->ai_family == AF_INET6 ? "%s://[%s]:%s" : "%s://%s:%s",
             udp ? "udp" : "tcp", num, port);
    freeaddrinfo(res);
    o->uri = uri;
    return 0;
}

/* Requests due by t seconds after the start, over all connections. */
static double due_by(const struct load_opts *o, double t)
{
    double r = o->rate, T = o->ramp_s;
    if (t <= 0)
        return 0;
    if (T <= 0)
        return r * t;
    if (t < T)
        return r * t * t / (2 * T);
    return r * T / 2 + r * (t - T);
}

double opts_offered(const struct load_opts *o, double t0, double t1)
{
    if (o->rate <= 0 || t1 <= t0)
        return 0;
    return (due_by(o, t1) - due_by(o, t0)) / (t1 - t0);
}
