/* Datagram sockets on both backends: UDP over IPv4 and IPv6 and Unix datagram echo with many
 * clients and sizes up to 64 KiB, batching under load, the truncation flag, connected mode and
 * its errors, raw and ping ICMP sockets. */
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "harness.h"

/* ---- an echo server: every datagram goes back to its sender from the same buffer ------------ */

struct echo_srv {
    rill_dgram *d;
    uint64_t got, truncated;
    size_t last_len;
};

static void srv_sent(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    (void)status;
    rill_buf_release(ctx);
}

static void srv_on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                            const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                            void *ctx)
{
    struct echo_srv *s = ctx;
    s->got++;
    s->last_len = len;
    if (flags & RILL_DGRAM_TRUNC) {
        s->truncated++;
        return;
    }
    cr_assert_not_null(from, "a UDP or bound Unix sender has an address");
    struct iovec iov = {(void *)data, len};
    rill_buf_ref(buf);
    int r = rill_dgram_sendto(d, &iov, 1, from, fromlen, srv_sent, buf);
    cr_assert_eq(r, 0, "echo sendto: %s", rill_strerror(r));
}

static const struct rill_dgram_handler srv_handler = {.on_datagram = srv_on_datagram};

static rill_dgram *srv_open(rill_loop *l, const char *uri, struct echo_srv *s, uint32_t max)
{
    struct rill_dgram_config cfg = {.handler = &srv_handler, .ctx = s, .max_datagram = max,
                                    .flags = RILL_DGRAM_F_UNLINK_STALE};
    int r = rill_dgram_open(l, uri, &cfg, &s->d);
    cr_assert_eq(r, 0, "open %s: %s", uri, rill_strerror(r));
    return s->d;
}

/* ---- clients: one datagram in flight each, checked byte for byte, resent when lost ----------- */

#define MAXC 32

static const size_t sizes[] = {1, 64, 512, 1400, 4096, 9000, 32768, 65000};
#define NSIZES (sizeof sizes / sizeof sizes[0])

struct client {
    struct clients *all;
    rill_dgram *d;
    rill_timer *t;
    unsigned id, step;
    uint8_t *buf;
    bool done;
};

struct clients {
    struct client c[MAXC];
    unsigned n, done, resends, bad;
    unsigned steps; /* datagrams per client */
};

static size_t step_size(const struct client *c)
{
    return sizes[(c->id + c->step) % NSIZES];
}

static void cli_send(struct client *c)
{
    size_t n = step_size(c);
    uint64_t seed = (uint64_t)c->id << 32 | c->step;
    h_fill(c->buf, n, seed, 0);
    struct iovec iov[2] = {{c->buf, n / 2}, {c->buf + n / 2, n - n / 2}};
    int r = rill_dgram_sendto(c->d, iov, 2, NULL, 0, NULL, NULL);
    cr_assert_eq(r, 0, "client sendto: %s", rill_strerror(r));
    rill_timer_start(c->t, 300, 0); /* UDP may drop: resend after 300 ms without an answer */
}

static void cli_timeout(rill_timer *t, void *ctx)
{
    (void)t;
    struct client *c = ctx;
    c->all->resends++;
    cli_send(c);
}

static void cli_on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                            const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                            void *ctx)
{
    (void)d, (void)buf, (void)from, (void)fromlen;
    struct client *c = ctx;
    cr_assert_eq(flags, 0u);
    if (c->done || len != step_size(c)) {
        c->all->bad += c->done ? 0 : 0; /* a late duplicate of an earlier resend: ignored */
        return;
    }
    uint64_t seed = (uint64_t)c->id << 32 | c->step;
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        if (p[i] != h_pattern(seed, i)) {
            /* A duplicate from an earlier step with the same size cannot match this seed. */
            return;
        }
    rill_timer_stop(c->t);
    if (++c->step == c->all->steps) {
        c->done = true;
        c->all->done++;
        return;
    }
    cli_send(c);
}

static const struct rill_dgram_handler cli_handler = {.on_datagram = cli_on_datagram};

static void run_echo(rill_loop *l, const char *peer, unsigned nclients, unsigned steps)
{
    struct clients *cs = calloc(1, sizeof *cs);
    cs->n = nclients;
    cs->steps = steps;
    for (unsigned i = 0; i < nclients; i++) {
        struct client *c = &cs->c[i];
        c->all = cs;
        c->id = i;
        c->buf = malloc(65536);
        struct rill_dgram_config cfg = {.handler = &cli_handler, .ctx = c, .peer = peer};
        int r = rill_dgram_open(l, NULL, &cfg, &c->d);
        cr_assert_eq(r, 0, "client open %s: %s", peer, rill_strerror(r));
        cr_assert_eq(rill_timer_create(l, cli_timeout, c, &c->t), 0);
        cli_send(c);
    }
    bool all = false;
    uint64_t end = h_now_ms() + 20000;
    while (!all) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        all = cs->done == nclients;
        cr_assert_lt(h_now_ms(), end, "echo: %u of %u clients done, %u resends", cs->done,
                     nclients, cs->resends);
    }
    cr_assert_eq(cs->bad, 0u);
    /* Loopback drops only when a receive queue overflows; most datagrams must get through. */
    cr_assert_lt(cs->resends, nclients * steps / 2, "%u resends", cs->resends);
    for (unsigned i = 0; i < nclients; i++) {
        rill_timer_destroy(cs->c[i].t);
        cr_assert_eq(rill_dgram_close(cs->c[i].d), 0);
        free(cs->c[i].buf);
    }
    h_run_for(l, 20);
    free(cs);
}

/* "udp://HOST:PORT" for the server's bound port; host is "127.0.0.1" or "[::1]". */
static char *peer_uri(rill_dgram *srv, const char *host)
{
    static char uri[128];
    snprintf(uri, sizeof uri, "udp://%s:%d", host, rill_dgram_port(srv));
    return uri;
}

H_BACKEND_TEST(dgram, udp4_echo_many_clients_and_sizes, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    struct echo_srv s = {0};
    srv_open(l, "udp://127.0.0.1:0", &s, 0);
    run_echo(l, peer_uri(s.d, "127.0.0.1"), MAXC, 2 * NSIZES);
    cr_assert_geq(s.got, (uint64_t)MAXC * 2 * NSIZES);
    rill_dgram_close(s.d);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(dgram, udp6_echo_many_clients_and_sizes, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    struct echo_srv s = {0};
    srv_open(l, "udp://[::1]:0", &s, 0);
    run_echo(l, peer_uri(s.d, "[::1]"), 16, NSIZES);
    rill_dgram_close(s.d);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(dgram, unix_dgram_echo_and_cleanup, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    char path[64], uri[80];
    snprintf(path, sizeof path, "/tmp/rill-dgram-%d-%s.sock", getpid(), backend);
    snprintf(uri, sizeof uri, "unix+dgram:%s", path);
    struct echo_srv s = {0};
    srv_open(l, uri, &s, 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    /* Unix datagrams are not lost: the sender waits for room instead. */
    run_echo(l, uri, 8, NSIZES);
    rill_dgram_close(s.d);
    h_run_for(l, 10);
    cr_assert_neq(stat(path, &st), 0, "the socket file is removed at close");
    rill_loop_destroy(l);
}

H_BACKEND_TEST(dgram, abstract_unix_dgram_echo, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    char uri[80];
    snprintf(uri, sizeof uri, "unix+dgram:@rill-test-%d-%s", getpid(), backend);
    struct echo_srv s = {0};
    srv_open(l, uri, &s, 0);
    run_echo(l, uri, 4, NSIZES);
    rill_dgram_close(s.d);
    rill_loop_destroy(l);
}

/* ---- truncation --------------------------------------------------------------------------- */

H_BACKEND_TEST(dgram, truncated_datagram_is_flagged_never_silently_cut, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    struct echo_srv s = {0};
    srv_open(l, "udp://127.0.0.1:0", &s, 1000);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage ss;
    socklen_t len;
    rill_dgram_local_addr(s.d, &ss, &len);
    static char big[3000], small[1000];
    cr_assert_eq(sendto(fd, big, sizeof big, 0, (struct sockaddr *)&ss, len), (ssize_t)sizeof big);
    uint64_t end = h_now_ms() + 3000;
    while (s.got < 1 && h_now_ms() < end)
        rill_loop_run_once(l, 10);
    cr_assert_eq(s.got, 1u);
    cr_assert_eq(s.truncated, 1u, "a 3000-byte datagram into 1000 bytes carries RILL_DGRAM_TRUNC");
    cr_assert_eq(s.last_len, 1000u);
    /* Exactly the buffer's size is not truncated. */
    cr_assert_eq(sendto(fd, small, sizeof small, 0, (struct sockaddr *)&ss, len),
                 (ssize_t)sizeof small);
    while (s.got < 2 && h_now_ms() < end)
        rill_loop_run_once(l, 10);
    cr_assert_eq(s.truncated, 1u);
    cr_assert(h_readable(fd, 2000), "the 1000-byte datagram is echoed");
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_assert_eq(st.dgrams_truncated, 1u);
    close(fd);
    rill_dgram_close(s.d);
    rill_loop_destroy(l);
}

/* ---- batching ----------------------------------------------------------------------------- */

struct burst {
    unsigned got, sent;
};

static void burst_on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                              const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                              void *ctx)
{
    (void)d, (void)buf, (void)data, (void)len, (void)from, (void)fromlen, (void)flags;
    ((struct burst *)ctx)->got++;
}

static void burst_sent(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    cr_assert_eq(status, 64);
    ((struct burst *)ctx)->sent++;
}

H_BACKEND_TEST(dgram, bursts_are_batched, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    struct burst b = {0};
    struct rill_dgram_handler h = {.on_datagram = burst_on_datagram};
    struct rill_dgram_config scfg = {.handler = &h, .ctx = &b, .max_datagram = 2048, .batch = 64};
    rill_dgram *srv, *cli;
    cr_assert_eq(rill_dgram_open(l, "udp://127.0.0.1:0", &scfg, &srv), 0);
    struct rill_dgram_config ccfg = {.handler = &h, .ctx = &b, .peer = peer_uri(srv, "127.0.0.1")};
    cr_assert_eq(rill_dgram_open(l, NULL, &ccfg, &cli), 0);
    h_run_for(l, 5);
    struct rill_loop_stats s0, s1;
    rill_loop_stats(l, &s0);
    static char msg[64];
    const unsigned rounds = 20, per = 48;
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < per; i++) {
            struct iovec iov = {msg, sizeof msg};
            cr_assert_eq(rill_dgram_sendto(cli, &iov, 1, NULL, 0, burst_sent, &b), 0);
        }
        uint64_t end = h_now_ms() + 2000;
        while (b.sent < (r + 1) * per && h_now_ms() < end)
            rill_loop_run_once(l, 5);
        while (b.got < (r + 1) * per && h_now_ms() < end)
            rill_loop_run_once(l, 5);
    }
    rill_loop_stats(l, &s1);
    cr_assert_eq(b.sent, rounds * per);
    cr_assert_eq(b.got, rounds * per, "loopback with 48 in flight loses nothing");
    uint64_t in = s1.dgrams_in - s0.dgrams_in, out = s1.dgrams_out - s0.dgrams_out;
    cr_assert_eq(in, rounds * per);
    cr_assert_eq(out, rounds * per);
    if (strcmp(backend, "epoll") == 0) {
        /* sendmmsg takes a round's 48 datagrams in one call; recvmmsg takes what has arrived. */
        cr_assert_leq(s1.sys_write - s0.sys_write, out / 8, "sendmmsg batches");
        cr_assert_leq(s1.sys_read - s0.sys_read, in / 2, "recvmmsg batches");
    } else {
        /* One submission carries a round's SENDMSGs, and one multishot recvmsg serves all. */
        cr_assert_leq(s1.uring_enters - s0.uring_enters, (in + out) / 8, "io_uring batches");
    }
    rill_dgram_close(cli);
    rill_dgram_close(srv);
    rill_loop_destroy(l);
}

/* ---- connected mode and its errors --------------------------------------------------------- */

struct errs {
    int on_error, send_status;
    bool closed, sent;
};

static void err_on_error(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    ((struct errs *)ctx)->on_error = status;
}

static void err_sent(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    struct errs *e = ctx;
    e->send_status = status;
    e->sent = true;
}

static void err_closed(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    cr_assert_eq(status, 0);
    ((struct errs *)ctx)->closed = true;
}

/* ---- a slab spent by the embedder: datagrams wait in the kernel, then arrive ---------------- */

#define HOARD_MAX 128

struct hoard {
    rill_buf *held[HOARD_MAX];
    unsigned nheld, got;
};

static void hoard_on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                              const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                              void *ctx)
{
    (void)d, (void)data, (void)len, (void)from, (void)fromlen, (void)flags;
    struct hoard *h = ctx;
    h->got++;
    cr_assert_lt(h->nheld, HOARD_MAX);
    rill_buf_ref(buf); /* keep it: the slab runs dry */
    h->held[h->nheld++] = buf;
}

H_BACKEND_TEST(dgram, spent_slab_resumes_when_buffers_come_back, .timeout = 30)
{
    /* The embedder keeps every buffer it is given, so the loop's 1 MiB of buffers (at most 64
     * for 16 KiB datagrams; fewer on io_uring, whose buffers also hold the recvmsg header and
     * whose stream ring takes half the budget) run out with datagrams still queued in the
     * socket. When it lets them go, the rest must arrive with no new datagram to raise another
     * readiness edge. */
    enum { N = 100 };
    struct rill_loop_config lcfg;
    rill_loop_config_init(&lcfg);
    lcfg.slab_budget = 1u << 20;
    rill_loop *l = h_loop_cfg(backend, &lcfg);
    struct hoard h = {0};
    struct rill_dgram_handler dh = {.on_datagram = hoard_on_datagram};
    struct rill_dgram_config cfg = {.handler = &dh, .ctx = &h, .max_datagram = 16384, .batch = 4};
    rill_dgram *srv;
    cr_assert_eq(rill_dgram_open(l, "udp://127.0.0.1:0", &cfg, &srv), 0);
    /* Room in the kernel for every datagram while none is read (rmem_max caps the request). */
    cr_assert_eq(rill_dgram_setopt(srv, RILL_OPT_RCVBUF, 1 << 20), 0);
    h_run_for(l, 5);

    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rill_dgram_port(srv)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static char msg[100];
    for (int i = 0; i < N; i++)
        cr_assert_eq(sendto(fd, msg, sizeof msg, 0, (struct sockaddr *)&to, sizeof to),
                     (ssize_t)sizeof msg);
    h_run_for(l, 200);
    unsigned stalled = h.got;
    cr_assert_lt(stalled, N, "1 MiB of buffers cannot hold %d datagrams", N);
    cr_assert_gt(stalled, 0);

    /* Released between iterations, as an embedder driving the loop itself may: the next wait
     * must not block (it would until a new datagram came, and none will). */
    while (h.nheld)
        rill_buf_release(h.held[--h.nheld]);
    uint64_t start = h_now_ms();
    while (h.got < N && h_now_ms() - start < 5000) {
        cr_assert_geq(rill_loop_run_once(l, 5000), 0);
        while (h.nheld) /* from now on the embedder gives every buffer back */
            rill_buf_release(h.held[--h.nheld]);
    }
    cr_assert_eq(h.got, N, "%u of %d datagrams arrived after the buffers came back (%u before)",
                 h.got, N, stalled);
    cr_assert_lt(h_now_ms() - start, 4000, "the loop waited for an edge with datagrams queued");
    close(fd);
    rill_dgram_close(srv);
    h_run_for(l, 20);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(dgram, connected_mode_rules_and_refused_peer, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    struct errs e = {0};
    struct rill_dgram_handler h = {.on_datagram = burst_on_datagram, .on_error = err_on_error,
                                   .on_close = err_closed};
    /* A port nobody listens on: find one by binding and closing. */
    int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(probe, (struct sockaddr *)&a, sizeof a);
    getsockname(probe, (struct sockaddr *)&a, &al);
    close(probe);
    char peer[64];
    snprintf(peer, sizeof peer, "udp://127.0.0.1:%u", ntohs(a.sin_port));
    struct rill_dgram_config cfg = {.handler = &h, .ctx = &e, .peer = peer};
    rill_dgram *d;
    cr_assert_eq(rill_dgram_open(l, NULL, &cfg, &d), 0);
    static char msg[10];
    struct iovec iov = {msg, sizeof msg};
    cr_assert_eq(rill_dgram_sendto(d, &iov, 1, (struct sockaddr *)&a, sizeof a, NULL, NULL),
                 -EISCONN);
    cr_assert_eq(rill_dgram_sendto(d, &iov, 1, NULL, 0, err_sent, &e), 0);
    uint64_t end = h_now_ms() + 3000;
    while (!e.sent && h_now_ms() < end)
        rill_loop_run_once(l, 10);
    cr_assert(e.sent);
    cr_assert_eq(e.send_status, (int)sizeof msg);
    /* The ICMP port unreachable comes back as an error on the socket: on_error, or the next
     * send's own status. */
    e.sent = false;
    while (e.on_error == 0 && h_now_ms() < end) {
        if (!e.sent)
            rill_loop_run_once(l, 10);
        if (e.on_error == 0 && e.sent && e.send_status == -ECONNREFUSED)
            break;
        if (e.on_error == 0 && !e.sent && h_now_ms() + 2800 > end) {
            cr_assert_eq(rill_dgram_sendto(d, &iov, 1, NULL, 0, err_sent, &e), 0);
        }
    }
    cr_assert(e.on_error == -ECONNREFUSED || e.send_status == -ECONNREFUSED,
              "refused peer reported: on_error %d, send %d", e.on_error, e.send_status);
    cr_assert_eq(rill_dgram_close(d), 0);
    cr_assert_eq(rill_dgram_close(d), -EALREADY);
    h_run_until(l, &e.closed, 2000, "on_close");

    /* Unconnected: an address is required. */
    struct rill_dgram_config ucfg = {.handler = &h, .ctx = &e};
    cr_assert_eq(rill_dgram_open(l, "udp://127.0.0.1:0", &ucfg, &d), 0);
    cr_assert_eq(rill_dgram_sendto(d, &iov, 1, NULL, 0, NULL, NULL), -EDESTADDRREQ);
    rill_dgram_close(d);
    rill_loop_destroy(l);
}

/* ---- bad input ---------------------------------------------------------------------------- */

static void cancel_cb(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    *(int *)ctx = status;
}

H_BACKEND_TEST(dgram, bad_input_is_refused_and_close_cancels, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    struct rill_dgram_handler h = {.on_datagram = burst_on_datagram};
    struct rill_dgram_config cfg = {.handler = &h};
    rill_dgram *d = NULL;
    int before = h_count_fds();
    cr_assert_eq(rill_dgram_open(l, "udp://nonsense", &cfg, &d), -EINVAL);
    cr_assert_eq(rill_dgram_open(l, "tcp://127.0.0.1:0", &cfg, &d), -EPROTONOSUPPORT);
    cr_assert_eq(rill_dgram_open(l, NULL, &cfg, &d), -EINVAL);
    struct rill_dgram_config bad = {.handler = NULL};
    cr_assert_eq(rill_dgram_open(l, "udp://127.0.0.1:0", &bad, &d), -EINVAL);
    struct rill_dgram_config big = {.handler = &h, .max_datagram = 4u << 20};
    cr_assert_eq(rill_dgram_open(l, "udp://127.0.0.1:0", &big, &d), -EINVAL);
    cr_assert_eq(h_count_fds(), before, "nothing opened for bad input");

    struct rill_dgram_config small = {.handler = &h, .wq_limit = 4096};
    cr_assert_eq(rill_dgram_open(l, "udp://127.0.0.1:0", &small, &d), 0);
    struct sockaddr_storage ss;
    socklen_t len;
    rill_dgram_local_addr(d, &ss, &len);
    static char msg[1000];
    struct iovec iov = {msg, sizeof msg};
    int st[8];
    unsigned queued = 0;
    for (unsigned i = 0; i < 8; i++) {
        st[i] = 1;
        int r = rill_dgram_sendto(d, &iov, 1, (struct sockaddr *)&ss, len, cancel_cb, &st[i]);
        if (r == -ENOBUFS)
            break;
        cr_assert_eq(r, 0);
        queued++;
    }
    cr_assert_lt(queued, 8u, "the queue limit refuses sends with -ENOBUFS");
    cr_assert_eq(rill_dgram_close(d), 0);
    h_run_for(l, 20);
    for (unsigned i = 0; i < queued; i++)
        cr_assert_eq(st[i], -ECANCELED, "queued sends are cancelled by close");
    cr_assert_eq(h_count_fds(), before);
    rill_loop_destroy(l);
}

/* ---- ICMP: raw sockets when privileged, ping sockets when allowed --------------------------- */

struct ping {
    bool got;
    uint8_t type;
};

static void ping_on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                             const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                             void *ctx)
{
    (void)d, (void)buf, (void)from, (void)fromlen, (void)flags;
    struct ping *p = ctx;
    const uint8_t *b = data;
    /* Raw IPv4 sockets deliver the IP header first; skip it by its length field. */
    size_t off = (len >= 20 && (b[0] >> 4) == 4) ? (size_t)(b[0] & 0x0f) * 4 : 0;
    if (len > off) {
        p->type = b[off];
        if (p->type == ICMP_ECHOREPLY)
            p->got = true;
    }
}

static uint16_t icmp_sum(const uint8_t *p, size_t n)
{
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static int ping_once(const char *backend, const char *uri)
{
    rill_loop *l = h_loop(backend);
    struct ping p = {0};
    struct rill_dgram_handler h = {.on_datagram = ping_on_datagram};
    struct rill_dgram_config cfg = {.handler = &h, .ctx = &p, .max_datagram = 2048};
    rill_dgram *d;
    int r = rill_dgram_open(l, uri, &cfg, &d);
    if (r < 0) {
        rill_loop_destroy(l);
        return r;
    }
    uint8_t pkt[16] = {ICMP_ECHO, 0, 0, 0, 0x12, 0x34, 0, 1, 'r', 'i', 'l', 'l'};
    uint16_t sum = icmp_sum(pkt, sizeof pkt);
    pkt[2] = (uint8_t)(sum >> 8);
    pkt[3] = (uint8_t)sum;
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct iovec iov = {pkt, sizeof pkt};
    cr_assert_eq(rill_dgram_sendto(d, &iov, 1, (struct sockaddr *)&to, sizeof to, NULL, NULL), 0);
    h_run_until(l, &p.got, 3000, "ICMP echo reply from 127.0.0.1");
    rill_dgram_close(d);
    rill_loop_destroy(l);
    return 0;
}

H_BACKEND_TEST(dgram, raw_icmp_echo_when_privileged, .timeout = 60)
{
    int r = ping_once(backend, "raw://icmp");
    if (r == -EPERM)
        cr_skip_test("raw sockets need CAP_NET_RAW");
    cr_assert_eq(r, 0, "raw://icmp: %s", rill_strerror(r));
}

H_BACKEND_TEST(dgram, raw_icmp_without_privilege_is_eperm, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to drop privileges");
    pid_t pid = fork();
    if (pid == 0) {
        /* nobody, with no capabilities left. */
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(3);
        rill_loop_config_init(&(struct rill_loop_config){0});
        struct rill_loop_config c;
        rill_loop_config_init(&c);
        c.backend = strcmp(backend, "uring") == 0 ? RILL_BACKEND_URING : RILL_BACKEND_EPOLL;
        rill_loop *l;
        if (rill_loop_create(&c, &l) < 0)
            _exit(4);
        struct rill_dgram_handler h = {.on_datagram = ping_on_datagram};
        struct rill_dgram_config cfg = {.handler = &h};
        rill_dgram *d;
        int r = rill_dgram_open(l, "raw://icmp", &cfg, &d);
        _exit(r == -EPERM ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status));
    if (WEXITSTATUS(status) == 4)
        cr_skip_test("the %s backend cannot start for an unprivileged user here", backend);
    cr_assert_eq(WEXITSTATUS(status), 0, "raw://icmp without CAP_NET_RAW gives -EPERM");
}

H_BACKEND_TEST(dgram, ping_socket_echo_when_allowed, .timeout = 60)
{
    int r = ping_once(backend, "ping://");
    if (r == -EACCES || r == -EPERM)
        cr_skip_test("ping sockets not allowed by net.ipv4.ping_group_range");
    cr_assert_eq(r, 0, "ping://: %s", rill_strerror(r));
}

/* ---- UDP segmentation and coalescing offloads ----------------------------------------------- */

struct seg {
    unsigned got, bad;
    size_t bytes;
};

static void seg_on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                            const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                            void *ctx)
{
    (void)d, (void)buf, (void)from, (void)fromlen, (void)flags;
    struct seg *s = ctx;
    /* Every segment starts with its index, so splitting errors show. */
    const uint8_t *p = data;
    if (len != (s->got == 9 ? 500u : 1000u) || p[0] != s->got)
        s->bad++;
    s->got++;
    s->bytes += len;
}

H_BACKEND_TEST(dgram, gso_send_and_gro_receive, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    uint32_t caps = rill_loop_caps(l);
    if ((caps & (RILL_CAP_UDP_GSO | RILL_CAP_UDP_GRO)) != (RILL_CAP_UDP_GSO | RILL_CAP_UDP_GRO))
        cr_skip_test("this kernel lacks UDP GSO or GRO");
    struct rill_dgram_handler h = {.on_datagram = seg_on_datagram};
    for (int gro = 0; gro <= 1; gro++) {
        struct seg s = {0};
        struct rill_dgram_config scfg = {.handler = &h, .ctx = &s,
                                         .flags = gro ? RILL_DGRAM_F_GRO : 0};
        rill_dgram *srv, *cli;
        cr_assert_eq(rill_dgram_open(l, "udp://127.0.0.1:0", &scfg, &srv), 0);
        struct rill_dgram_config ccfg = {.handler = &h, .ctx = &s, .gso_size = 1000,
                                         .peer = peer_uri(srv, "127.0.0.1")};
        cr_assert_eq(rill_dgram_open(l, NULL, &ccfg, &cli), 0);
        /* One send of 9500 bytes: nine 1000-byte datagrams and a 500-byte one. */
        static uint8_t big[9500];
        for (unsigned i = 0; i < 10; i++)
            memset(big + i * 1000, (int)i, i == 9 ? 500 : 1000);
        struct rill_loop_stats s0, s1;
        rill_loop_stats(l, &s0);
        struct iovec iov = {big, sizeof big};
        cr_assert_eq(rill_dgram_sendto(cli, &iov, 1, NULL, 0, NULL, NULL), 0);
        uint64_t end = h_now_ms() + 3000;
        while (s.got < 10 && h_now_ms() < end)
            rill_loop_run_once(l, 10);
        rill_loop_stats(l, &s1);
        cr_assert_eq(s.got, 10u, "gro=%d: %u datagrams", gro, s.got);
        cr_assert_eq(s.bad, 0u, "gro=%d: segments split where they were cut", gro);
        cr_assert_eq(s.bytes, sizeof big);
        cr_assert_eq(s1.dgrams_out - s0.dgrams_out, 1u, "one send left the application");
        rill_dgram_close(cli);
        rill_dgram_close(srv);
    }
    /* Offloads are UDP's. */
    struct rill_dgram_config bad = {.handler = &h, .gso_size = 1000};
    rill_dgram *d;
    cr_assert_eq(rill_dgram_open(l, "unix+dgram:@rill-gso-bad", &bad, &d), -EINVAL);
    rill_loop_destroy(l);
}
