/* A UDP multicast announcer and its listener, one program with two modes.
 *
 *   example_udp_multicast listen udp://239.1.2.3:7003 [IFNAME [COUNT]]
 *   example_udp_multicast announce udp://239.1.2.3:7003 TEXT [IFNAME [COUNT]]
 *
 * IPv6 groups work the same way: udp://[ff15::1234]:7003.
 *
 * listen: binds to the group's address and port, so that only this group's datagrams arrive (on
 * Linux a socket bound to the wildcard address would also hear every other group joined on that
 * port), joins the group on the interface IFNAME ("" or absent: the one the kernel routes the
 * group to), prints "listening udp://GROUP:PORT", then one line "TEXT from ADDRESS" per
 * announcement. After COUNT announcements it leaves the group and exits 0; without COUNT it runs
 * until SIGINT or SIGTERM.
 *
 * announce: sends TEXT to the group every 100 ms from an ephemeral port, out of IFNAME (absent:
 * as the routing table says), with a TTL of 1 (the local network only) and multicast loop on, so
 * that listeners on this host hear it too. Prints "announcing to udp://GROUP:PORT"; stops after
 * COUNT announcements, or at SIGINT or SIGTERM. */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill.h"

static rill_loop *loop;

struct app {
    char group[64];           /* the host part of the URI, brackets and all */
    struct sockaddr_storage to;
    socklen_t tolen;
    const char *text, *ifname;
    long count, done;         /* count 0: forever */
    rill_dgram *d;
    int status;
};

/* Splits "udp://HOST:PORT" into the group (HOST) and a socket address. Returns 0 or -1. */
static int parse(const char *uri, struct app *a)
{
    const char *colon = strrchr(uri, ':');
    if (strncmp(uri, "udp://", 6) != 0 || !colon || colon - uri - 6 >= (long)sizeof a->group)
        return -1;
    snprintf(a->group, sizeof a->group, "%.*s", (int)(colon - uri - 6), uri + 6);
    int port = atoi(colon + 1);
    struct sockaddr_in *in = (struct sockaddr_in *)&a->to;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->to;
    size_t n = strlen(a->group);
    if (n > 2 && a->group[0] == '[' && a->group[n - 1] == ']') {
        char host[64];
        snprintf(host, sizeof host, "%.*s", (int)n - 2, a->group + 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        a->tolen = sizeof *in6;
        return inet_pton(AF_INET6, host, &in6->sin6_addr) == 1 ? 0 : -1;
    }
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    a->tolen = sizeof *in;
    return inet_pton(AF_INET, a->group, &in->sin_addr) == 1 ? 0 : -1;
}

static void on_announcement(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                            const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                            void *ctx)
{
    (void)buf, (void)fromlen, (void)flags;
    struct app *a = ctx;
    char who[INET6_ADDRSTRLEN] = "?";
    if (from && from->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)from)->sin_addr, who, sizeof who);
    else if (from && from->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)from)->sin6_addr, who, sizeof who);
    printf("%.*s from %s\n", (int)len, (const char *)data, who);
    fflush(stdout);
    if (a->count && ++a->done == a->count) {
        rill_dgram_leave(d, a->group, NULL, a->ifname);
        rill_loop_stop(loop);
    }
}

static void sent(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    struct app *a = ctx;
    if (status < 0) {
        fprintf(stderr, "announce: %s\n", rill_strerror(status));
        a->status = status;
        rill_loop_stop(loop);
    } else if (a->count && ++a->done == a->count) {
        rill_loop_stop(loop);
    }
}

static void announce(rill_timer *t, void *ctx)
{
    struct app *a = ctx;
    struct iovec iov = {(void *)a->text, strlen(a->text)};
    int r = rill_dgram_sendto(a->d, &iov, 1, (struct sockaddr *)&a->to, a->tolen, sent, a);
    if (r < 0) {
        a->status = r;
        rill_loop_stop(loop);
    }
    (void)t;
}

/* Opens the socket of either mode. Returns 0 or a negative errno, naming the step that failed. */
static int open_mode(struct app *a, bool listen, const char *uri, const char **step)
{
    static const struct rill_dgram_handler h = {.on_datagram = on_announcement};
    struct rill_dgram_config cfg = {.handler = &h, .ctx = a, .max_datagram = 2048};
    const char *any = a->to.ss_family == AF_INET6 ? "udp://[::]:0" : "udp://0.0.0.0:0";
    int r;
    *step = "open";
    if ((r = rill_dgram_open(loop, listen ? uri : any, &cfg, &a->d)) < 0)
        return r;
    if (listen) {
        *step = "join";
        return rill_dgram_join(a->d, a->group, NULL, a->ifname);
    }
    *step = "set options";
    if ((r = rill_dgram_setopt(a->d, RILL_OPT_MULTICAST_TTL, 1)) < 0 ||
        (r = rill_dgram_setopt(a->d, RILL_OPT_MULTICAST_LOOP, 1)) < 0)
        return r;
    *step = "set the multicast interface";
    return a->ifname ? rill_dgram_set_multicast_if(a->d, a->ifname) : 0;
}

static void on_signal(int sig)
{
    (void)sig;
    rill_loop_stop(loop);
}

int main(int argc, char **argv)
{
    bool listen = argc >= 3 && strcmp(argv[1], "listen") == 0;
    bool talk = argc >= 4 && strcmp(argv[1], "announce") == 0;
    struct app a = {0};
    int opt = listen ? 3 : 4; /* where IFNAME would be */
    if ((!listen && !talk) || argc > opt + 2 || parse(argv[2], &a) < 0) {
        fprintf(stderr, "usage: %s listen udp://GROUP:PORT [IFNAME [COUNT]]\n"
                        "       %s announce udp://GROUP:PORT TEXT [IFNAME [COUNT]]\n",
                argv[0], argv[0]);
        return 2;
    }
    a.text = talk ? argv[3] : NULL;
    a.ifname = argc > opt && argv[opt][0] ? argv[opt] : NULL;
    a.count = argc > opt + 1 ? atol(argv[opt + 1]) : 0;
    const char *step = "create the loop";
    rill_timer *t = NULL;
    int r = rill_loop_create(NULL, &loop);
    if (r == 0)
        r = open_mode(&a, listen, argv[2], &step);
    if (r == 0 && talk && (r = rill_timer_create(loop, announce, &a, &t)) == 0)
        r = rill_timer_start(t, 0, 100);
    if (r < 0) {
        fprintf(stderr, "%s: %s: %s\n", argv[2], step, rill_strerror(r));
        if (loop)
            rill_loop_destroy(loop);
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("%s %s\n", listen ? "listening" : "announcing to", argv[2]);
    fflush(stdout);
    r = rill_loop_run(loop);
    if (t)
        rill_timer_destroy(t);
    rill_loop_destroy(loop);
    return r < 0 || a.status < 0 ? 1 : 0;
}
