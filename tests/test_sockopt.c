/* Socket options on every handle, TCP_INFO, and TCP urgent data, on both backends. */
#include <netinet/tcp.h>

#include "harness.h"

struct pair {
    rill_listener *ls;
    rill_conn *srv, *cli;
    bool srv_open, cli_open;
    uint8_t urgent[8];
    unsigned nurgent;
    char data[64];
    size_t ndata, data_at_urgent[8];
};

static void s_on_open(rill_conn *c, void *ctx)
{
    struct pair *p = ctx;
    p->srv = c;
    p->srv_open = true;
}

static void s_on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)c, (void)buf;
    struct pair *p = ctx;
    cr_assert_leq(p->ndata + len, sizeof p->data);
    memcpy(p->data + p->ndata, data, len);
    p->ndata += len;
}

static void s_on_urgent(rill_conn *c, uint8_t byte, void *ctx)
{
    (void)c;
    struct pair *p = ctx;
    cr_assert_lt(p->nurgent, 8u);
    p->data_at_urgent[p->nurgent] = p->ndata;
    p->urgent[p->nurgent++] = byte;
}

static void c_on_open(rill_conn *c, void *ctx)
{
    struct pair *p = ctx;
    p->cli = c;
    p->cli_open = true;
}

static const struct rill_conn_handler s_h = {.on_open = s_on_open, .on_data = s_on_data,
                                             .on_urgent = s_on_urgent};
static const struct rill_conn_handler c_h = {.on_open = c_on_open};

static rill_loop *pair_open(const char *backend, const char *uri_fmt, struct pair *p)
{
    rill_loop *l = h_loop(backend);
    struct rill_listen_config lc = {.handler = &s_h, .ctx = p};
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://%s:0", uri_fmt);
    cr_assert_eq(rill_listen(l, uri, &lc, &p->ls), 0);
    snprintf(uri, sizeof uri, "tcp://%s:%d", uri_fmt, rill_listener_port(p->ls));
    struct rill_connect_config cc = {.handler = &c_h, .ctx = p};
    cr_assert_eq(rill_connect(l, uri, &cc, &p->cli), 0);
    uint64_t end = h_now_ms() + 3000;
    while (!(p->srv_open && p->cli_open) && h_now_ms() < end)
        rill_loop_run_once(l, 10);
    cr_assert(p->srv_open && p->cli_open);
    return l;
}

/* Sets and reads back an option; `expect` is what the kernel reports for `value`. */
static void opt_roundtrip(rill_conn *c, rill_sockopt opt, int value, int expect, const char *name)
{
    int r = rill_conn_setopt(c, opt, value);
    cr_assert_eq(r, 0, "set %s: %s", name, rill_strerror(r));
    int got = -12345;
    r = rill_conn_getopt(c, opt, &got);
    cr_assert_eq(r, 0, "get %s: %s", name, rill_strerror(r));
    cr_assert_eq(got, expect, "%s: set %d, read back %d, expected %d", name, value, got, expect);
}

H_BACKEND_TEST(sockopt, named_options_set_and_read_back, .timeout = 30)
{
    struct pair p = {0};
    rill_loop *l = pair_open(backend, "[::1]", &p);
    rill_conn *c = p.cli;
    opt_roundtrip(c, RILL_OPT_NODELAY, 0, 0, "TCP_NODELAY");
    opt_roundtrip(c, RILL_OPT_NODELAY, 1, 1, "TCP_NODELAY");
    opt_roundtrip(c, RILL_OPT_KEEPALIVE, 1, 1, "SO_KEEPALIVE");
    opt_roundtrip(c, RILL_OPT_KEEPIDLE, 30, 30, "TCP_KEEPIDLE");
    opt_roundtrip(c, RILL_OPT_KEEPINTVL, 5, 5, "TCP_KEEPINTVL");
    opt_roundtrip(c, RILL_OPT_KEEPCNT, 4, 4, "TCP_KEEPCNT");
    /* The kernel doubles buffer sizes for its bookkeeping (socket(7)). */
    opt_roundtrip(c, RILL_OPT_RCVBUF, 65536, 131072, "SO_RCVBUF");
    opt_roundtrip(c, RILL_OPT_SNDBUF, 65536, 131072, "SO_SNDBUF");
    opt_roundtrip(c, RILL_OPT_LINGER, 3, 3, "SO_LINGER");
    opt_roundtrip(c, RILL_OPT_LINGER, -1, -1, "SO_LINGER off");
    opt_roundtrip(c, RILL_OPT_NOTSENT_LOWAT, 16384, 16384, "TCP_NOTSENT_LOWAT");
    opt_roundtrip(c, RILL_OPT_BUSY_POLL, 50, 50, "SO_BUSY_POLL");
    opt_roundtrip(c, RILL_OPT_TOS, 0x20, 0x20, "IPV6_TCLASS");
    int v;
    cr_assert_eq(rill_conn_getopt(c, RILL_OPT_V6ONLY, &v), 0);
    cr_assert_eq(rill_conn_getopt(c, (rill_sockopt)999, &v), -EINVAL);

    /* The passthrough: any level and name. */
    int one = 1, got = 0;
    socklen_t len = sizeof got;
    cr_assert_eq(rill_conn_setsockopt(c, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one), 0);
    cr_assert_eq(rill_conn_getsockopt(c, SOL_SOCKET, SO_TYPE, &got, &len), 0);
    cr_assert_eq(got, SOCK_STREAM);
    cr_assert_eq(rill_conn_setsockopt(c, SOL_SOCKET, 424242, &one, sizeof one), -ENOPROTOOPT);

    /* Listeners take options too. */
    cr_assert_eq(rill_listener_setopt(p.ls, RILL_OPT_RCVBUF, 32768), 0);
    cr_assert_eq(rill_listener_getopt(p.ls, RILL_OPT_RCVBUF, &v), 0);
    cr_assert_eq(v, 65536);
    /* (Bound to ::1, the kernel itself turns IPV6_V6ONLY on: a v4 peer cannot reach ::1.) */
    cr_assert_eq(rill_listener_getopt(p.ls, RILL_OPT_V6ONLY, &v), 0);
    cr_assert_eq(v, 1);

    /* TCP_INFO: a connected socket in ESTABLISHED state that has sent something. */
    struct iovec iov = {"ping", 4};
    cr_assert_eq(rill_send(c, &iov, 1, NULL, NULL), 0);
    h_run_for(l, 20);
    struct tcp_info ti;
    len = sizeof ti;
    cr_assert_eq(rill_conn_tcp_info(c, &ti, &len), 0);
    cr_assert_eq(ti.tcpi_state, 1 /* TCP_ESTABLISHED */);
    cr_assert_geq(len, (socklen_t)offsetof(struct tcp_info, tcpi_rtt));
    cr_assert_gt(ti.tcpi_snd_mss, 0u);

    rill_close(p.cli);
    h_run_for(l, 10);
    cr_assert_eq(rill_conn_setopt(p.cli, RILL_OPT_NODELAY, 1), -ENOTCONN);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(sockopt, options_on_datagram_and_ipv4_sockets, .timeout = 30)
{
    struct pair p = {0};
    rill_loop *l = pair_open(backend, "127.0.0.1", &p);
    int v;
    cr_assert_eq(rill_conn_getopt(p.cli, RILL_OPT_V6ONLY, &v), -ENOPROTOOPT,
                 "IPV6_V6ONLY on an IPv4 socket");
    opt_roundtrip(p.cli, RILL_OPT_TOS, 0x10, 0x10, "IP_TOS");
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    cr_assert_eq(rill_conn_tcp_info(p.cli, &ti, &len), 0);
    rill_loop_destroy(l);
}

static void dg_on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                           const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                           void *ctx)
{
    (void)d, (void)buf, (void)data, (void)len, (void)from, (void)fromlen, (void)flags, (void)ctx;
}

H_BACKEND_TEST(sockopt, datagram_socket_options, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct rill_dgram_handler h = {.on_datagram = dg_on_datagram};
    struct rill_dgram_config cfg = {.handler = &h};
    rill_dgram *d;
    cr_assert_eq(rill_dgram_open(l, "udp://[::1]:0", &cfg, &d), 0);
    int v;
    cr_assert_eq(rill_dgram_setopt(d, RILL_OPT_RCVBUF, 100000), 0);
    cr_assert_eq(rill_dgram_getopt(d, RILL_OPT_RCVBUF, &v), 0);
    cr_assert_eq(v, 200000);
    cr_assert_eq(rill_dgram_setopt(d, RILL_OPT_TOS, 0x28), 0);
    cr_assert_eq(rill_dgram_getopt(d, RILL_OPT_TOS, &v), 0);
    cr_assert_eq(v, 0x28);
    cr_assert_eq(rill_dgram_setopt(d, RILL_OPT_NODELAY, 1), -ENOPROTOOPT, "no TCP options on UDP");
    cr_assert_eq(rill_dgram_setopt(d, RILL_OPT_KEEPIDLE, 1), -ENOPROTOOPT);
    int one = 1;
    cr_assert_eq(rill_dgram_setsockopt(d, SOL_SOCKET, SO_BROADCAST, &one, sizeof one), 0);
    rill_dgram_close(d);
    /* IPV6_V6ONLY: off unless asked, on when asked, on the wildcard. */
    cr_assert_eq(rill_dgram_open(l, "udp://[::]:0", &cfg, &d), 0);
    cr_assert_eq(rill_dgram_getopt(d, RILL_OPT_V6ONLY, &v), 0);
    cr_assert_eq(v, 0, "rill sets IPV6_V6ONLY off unless asked");
    rill_dgram_close(d);
    cfg.flags = RILL_DGRAM_F_V6ONLY;
    cr_assert_eq(rill_dgram_open(l, "udp://[::]:0", &cfg, &d), 0);
    cr_assert_eq(rill_dgram_getopt(d, RILL_OPT_V6ONLY, &v), 0);
    cr_assert_eq(v, 1);
    rill_dgram_close(d);
    rill_loop_destroy(l);
}

/* ---- urgent data ---------------------------------------------------------------------------- */

H_BACKEND_TEST(sockopt, urgent_data_from_a_plain_peer, .timeout = 30)
{
    struct pair p = {0};
    rill_loop *l = h_loop(backend);
    struct rill_listen_config lc = {.handler = &s_h, .ctx = &p};
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &p.ls), 0);
    int fd = h_client(AF_INET, rill_listener_port(p.ls));
    h_run_for(l, 20);
    cr_assert_eq(send(fd, "abc", 3, 0), 3);
    h_run_for(l, 50);
    cr_assert_eq(send(fd, "!", 1, MSG_OOB), 1);
    h_run_for(l, 50);
    cr_assert_eq(send(fd, "def", 3, 0), 3);
    uint64_t end = h_now_ms() + 3000;
    while ((p.ndata < 6 || p.nurgent < 1) && h_now_ms() < end)
        rill_loop_run_once(l, 10);
    cr_assert_eq(p.nurgent, 1u, "on_urgent once");
    cr_assert_eq(p.urgent[0], '!');
    /* Out of line, as the kernel defines it: the urgent byte leaves the stream, and the bytes
     * sent before it were delivered first. */
    cr_assert_eq(p.ndata, 6u);
    cr_assert_eq(memcmp(p.data, "abcdef", 6), 0, "stream without the urgent byte: %.*s",
                 (int)p.ndata, p.data);
    cr_assert_eq(p.data_at_urgent[0], 3u, "urgent byte reported after the bytes before it");
    close(fd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(sockopt, urgent_send_flag_between_rill_peers, .timeout = 30)
{
    struct pair p = {0};
    rill_loop *l = pair_open(backend, "127.0.0.1", &p);
    struct iovec a = {"hello", 5}, u = {"X", 1}, b = {"world", 5};
    struct rill_send_opts urg = {.flags = RILL_SEND_F_URGENT};
    cr_assert_eq(rill_send(p.cli, &a, 1, NULL, NULL), 0);
    cr_assert_eq(rill_send_ex(p.cli, &u, 1, &urg, NULL, NULL), 0);
    cr_assert_eq(rill_send(p.cli, &b, 1, NULL, NULL), 0);
    uint64_t end = h_now_ms() + 3000;
    while ((p.ndata < 10 || p.nurgent < 1) && h_now_ms() < end)
        rill_loop_run_once(l, 10);
    cr_assert_eq(p.nurgent, 1u);
    cr_assert_eq(p.urgent[0], 'X');
    cr_assert_eq(p.ndata, 10u);
    cr_assert_eq(memcmp(p.data, "helloworld", 10), 0, "%.*s", (int)p.ndata, p.data);
    /* Urgent data is a TCP thing. */
    struct rill_send_opts bad = {.flags = 1u << 7};
    cr_assert_eq(rill_send_ex(p.cli, &u, 1, &bad, NULL, NULL), -EINVAL);
    rill_loop_destroy(l);
}
