/* Broadcast and multicast on datagram sockets, on both backends: join a group and receive what
 * is sent to it, leave and receive nothing more; source-specific joins hear only their source;
 * IPv6 groups; broadcast with SO_BROADCAST and -EACCES without it; the multicast TTL and loop
 * options, and the errors of every call.
 *
 * Everything that sends runs in a network namespace of its own (tests/netns_util.h: a veth
 * pair with private addresses, gone with the child that made it), never on a real network. */
#include <arpa/inet.h>
#include <net/if.h>

#include "netns_util.h"
#include "sys.h"

/* ---- a receiver that remembers what it got ------------------------------------------------ */

struct rx {
    unsigned n;
    char last[64];
    char from[INET6_ADDRSTRLEN];
};

static void rx_on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                           const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                           void *ctx)
{
    (void)d, (void)buf, (void)fromlen, (void)flags;
    struct rx *rx = ctx;
    rx->n++;
    snprintf(rx->last, sizeof rx->last, "%.*s", (int)len, (const char *)data);
    const void *a = from->sa_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)from)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)from)->sin6_addr;
    inet_ntop(from->sa_family, a, rx->from, sizeof rx->from);
}

static const struct rill_dgram_handler rx_handler = {.on_datagram = rx_on_datagram};

static rill_dgram *ns_open(rill_loop *l, const char *uri, struct rx *rx)
{
    struct rill_dgram_config cfg = {.handler = &rx_handler, .ctx = rx, .max_datagram = 2048};
    rill_dgram *d;
    int r = rill_dgram_open(l, uri, &cfg, &d);
    H_NS_CHECK(r == 0, "open %s: %s", uri, rill_strerror(r));
    return d;
}

static void sent_cb(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    *(int *)ctx = status;
}

/* Sends text to host:port and runs the loop until its callback; returns the send's status. */
static int ns_send(rill_loop *l, rill_dgram *d, const char *host, int port, const char *text)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (strchr(host, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        H_NS_CHECK(inet_pton(AF_INET6, host, &a->sin6_addr) == 1, "bad address %s", host);
        len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        H_NS_CHECK(inet_pton(AF_INET, host, &a->sin_addr) == 1, "bad address %s", host);
        len = sizeof *a;
    }
    int status = 1;
    struct iovec iov = {(void *)text, strlen(text)};
    int r = rill_dgram_sendto(d, &iov, 1, (struct sockaddr *)&ss, len, sent_cb, &status);
    H_NS_CHECK(r == 0, "sendto %s: %s", host, rill_strerror(r));
    uint64_t end = h_now_ms() + 3000;
    while (status == 1) {
        H_NS_CHECK(rill_loop_run_once(l, 10) >= 0, "run_once");
        H_NS_CHECK(h_now_ms() < end, "no send callback for %s", host);
    }
    return status;
}

/* Runs the loop until rx has n datagrams (true) or ms pass (false). */
static bool ns_wait(rill_loop *l, const struct rx *rx, unsigned n, unsigned ms)
{
    uint64_t end = h_now_ms() + ms;
    while (rx->n < n && h_now_ms() < end)
        H_NS_CHECK(rill_loop_run_once(l, 10) >= 0, "run_once");
    return rx->n >= n;
}

/* Sends text and checks it arrives (want true) or that nothing arrives within 300 ms. */
static void ns_expect(rill_loop *l, rill_dgram *tx, struct rx *rx, const char *group, int port,
                      const char *text, bool want)
{
    unsigned before = rx->n;
    int r = ns_send(l, tx, group, port, text);
    H_NS_CHECK(r == (int)strlen(text), "send '%s' to %s: %s", text, group, rill_strerror(r));
    bool got = ns_wait(l, rx, before + 1, want ? 3000 : 300);
    H_NS_CHECK(got == want, "'%s' to %s: %s", text, group,
               want ? "did not arrive" : "arrived although it must not");
    if (want)
        H_NS_CHECK(strcmp(rx->last, text) == 0, "got '%s', sent '%s'", rx->last, text);
}

static void ns_close(rill_loop *l, rill_dgram *a, rill_dgram *b)
{
    rill_dgram_close(a);
    if (b)
        rill_dgram_close(b);
    rill_loop_destroy(l);
}

/* A sender on the wildcard address whose multicast leaves by mcA. */
static rill_dgram *ns_sender(rill_loop *l, const char *uri, struct rx *rx)
{
    rill_dgram *d = ns_open(l, uri, rx);
    int r = rill_dgram_set_multicast_if(d, "mcA");
    H_NS_CHECK(r == 0, "set_multicast_if mcA: %s", rill_strerror(r));
    return d;
}

/* ---- IPv4 any-source ------------------------------------------------------------------------ */

static void v4_join_receive_leave(const char *backend)
{
    rill_loop *l = h_ns_loop(backend);
    struct rx rx = {0}, txr = {0};
    rill_dgram *d = ns_open(l, "udp://239.1.2.3:0", &rx); /* bound to the group: its own only */
    rill_dgram *tx = ns_sender(l, "udp://0.0.0.0:0", &txr);
    int port = rill_dgram_port(d);
    ns_expect(l, tx, &rx, "239.1.2.3", port, "before join", false);
    int r = rill_dgram_join(d, "239.1.2.3", NULL, "mcA");
    H_NS_CHECK(r == 0, "join 239.1.2.3 on mcA: %s", rill_strerror(r));
    r = rill_dgram_join(d, "239.1.2.3", NULL, "mcA");
    H_NS_CHECK(r == -EADDRINUSE, "second join: %s", rill_strerror(r));
    ns_expect(l, tx, &rx, "239.1.2.3", port, "hello group", true);
    H_NS_CHECK(strcmp(rx.from, "10.99.0.1") == 0, "from %s", rx.from);
    r = rill_dgram_leave(d, "239.1.2.3", NULL, "mcA");
    H_NS_CHECK(r == 0, "leave: %s", rill_strerror(r));
    r = rill_dgram_leave(d, "239.1.2.3", NULL, "mcA");
    H_NS_CHECK(r == -EADDRNOTAVAIL, "second leave: %s", rill_strerror(r));
    ns_expect(l, tx, &rx, "239.1.2.3", port, "after leave", false);
    /* NULL interface: the kernel's choice, by the 224.0.0.0/4 route (mcA). */
    r = rill_dgram_join(d, "239.1.2.3", NULL, NULL);
    H_NS_CHECK(r == 0, "join with the kernel's interface: %s", rill_strerror(r));
    ns_expect(l, tx, &rx, "239.1.2.3", port, "joined again", true);
    H_NS_CHECK(rx.n == 2 && txr.n == 0, "rx %u datagrams, sender %u", rx.n, txr.n);
    /* A source-specific join over the any-source one: Linux turns the (empty) exclude filter
     * into an include filter of that source, so the sender at 10.99.0.1 is no longer heard. */
    r = rill_dgram_join(d, "239.1.2.3", "10.99.0.2", NULL);
    H_NS_CHECK(r == 0, "source-specific join over any-source: %s", rill_strerror(r));
    ns_expect(l, tx, &rx, "239.1.2.3", port, "not from 10.99.0.2", false);
    ns_close(l, d, tx);
}

H_BACKEND_TEST(mcast, v4_join_receive_leave, .timeout = 30)
{
    h_netns_run(backend, h_ns_veth_script, v4_join_receive_leave, 20000);
}

/* ---- source-specific ------------------------------------------------------------------------ */

/* Two senders, bound to src1 and src2, each send their own address; only the joined source's
 * arrive, then both once the second source joins too, then only src2's after src1 leaves. */
static void ssm_two_sources(const char *backend, const char *group, const char *src1,
                            const char *src2, const char *ifname)
{
    rill_loop *l = h_ns_loop(backend);
    struct rx rx = {0}, t1r = {0}, t2r = {0};
    char uri[96];
    bool v6 = strchr(group, ':') != NULL;
    snprintf(uri, sizeof uri, v6 ? "udp://[%s]:0" : "udp://%s:0", group);
    rill_dgram *d = ns_open(l, uri, &rx);
    int port = rill_dgram_port(d);
    snprintf(uri, sizeof uri, v6 ? "udp://[%s]:0" : "udp://%s:0", src1);
    rill_dgram *t1 = ns_sender(l, uri, &t1r);
    snprintf(uri, sizeof uri, v6 ? "udp://[%s]:0" : "udp://%s:0", src2);
    rill_dgram *t2 = ns_sender(l, uri, &t2r);
    int r = rill_dgram_join(d, group, src1, ifname);
    H_NS_CHECK(r == 0, "join %s from %s: %s", group, src1, rill_strerror(r));
    ns_expect(l, t2, &rx, group, port, src2, false);
    ns_expect(l, t1, &rx, group, port, src1, true);
    H_NS_CHECK(strcmp(rx.from, src1) == 0, "from %s, want %s", rx.from, src1);
    ns_expect(l, t2, &rx, group, port, src2, false);
    r = rill_dgram_join(d, group, src2, ifname);
    H_NS_CHECK(r == 0, "join %s from %s too: %s", group, src2, rill_strerror(r));
    ns_expect(l, t2, &rx, group, port, src2, true);
    r = rill_dgram_leave(d, group, src1, ifname);
    H_NS_CHECK(r == 0, "leave source %s: %s", src1, rill_strerror(r));
    ns_expect(l, t1, &rx, group, port, src1, false);
    ns_expect(l, t2, &rx, group, port, src2, true);
    /* An any-source join of a group joined source-specific: the kernel refuses the mix. */
    r = rill_dgram_join(d, group, NULL, ifname);
    H_NS_CHECK(r == -EADDRINUSE, "any-source join over source-specific: %s", rill_strerror(r));
    r = rill_dgram_leave(d, group, src2, ifname);
    H_NS_CHECK(r == 0, "leave the last source: %s", rill_strerror(r));
    ns_expect(l, t2, &rx, group, port, src2, false);
    rill_dgram_close(t2);
    ns_close(l, d, t1);
}

static void v4_ssm_default_if(const char *backend)
{
    /* No interface named: IP_ADD_SOURCE_MEMBERSHIP. */
    ssm_two_sources(backend, "232.1.1.1", "10.99.0.2", "10.99.0.3", NULL);
}

static void v4_ssm_named_if(const char *backend)
{
    /* A named interface: MCAST_JOIN_SOURCE_GROUP by index. */
    ssm_two_sources(backend, "232.1.1.2", "10.99.0.3", "10.99.0.2", "mcA");
}

H_BACKEND_TEST(mcast, v4_source_specific_default_interface, .timeout = 30)
{
    h_netns_run(backend, h_ns_veth_script, v4_ssm_default_if, 20000);
}

H_BACKEND_TEST(mcast, v4_source_specific_named_interface, .timeout = 30)
{
    h_netns_run(backend, h_ns_veth_script, v4_ssm_named_if, 20000);
}

/* ---- IPv6 ----------------------------------------------------------------------------------- */

static void v6_join_receive_leave(const char *backend)
{
    rill_loop *l = h_ns_loop(backend);
    struct rx rx = {0}, txr = {0};
    rill_dgram *d = ns_open(l, "udp://[ff15::1234]:0", &rx);
    rill_dgram *tx = ns_sender(l, "udp://[::]:0", &txr);
    int port = rill_dgram_port(d);
    int r = rill_dgram_join(d, "[ff15::1234]", NULL, "mcA");
    H_NS_CHECK(r == 0, "join ff15::1234 on mcA: %s", rill_strerror(r));
    r = rill_dgram_join(d, "ff15::1234", NULL, "mcA");
    H_NS_CHECK(r == -EADDRINUSE, "second join: %s", rill_strerror(r));
    ns_expect(l, tx, &rx, "ff15::1234", port, "hello v6 group", true);
    r = rill_dgram_leave(d, "ff15::1234", NULL, "mcA");
    H_NS_CHECK(r == 0, "leave: %s", rill_strerror(r));
    ns_expect(l, tx, &rx, "ff15::1234", port, "after leave", false);
    H_NS_CHECK(rill_dgram_leave(d, "ff15::1234", NULL, "mcA") == -EADDRNOTAVAIL, "2nd leave");
    ns_close(l, d, tx);
}

static void v6_ssm(const char *backend)
{
    ssm_two_sources(backend, "ff35::4321", "fd00:99::2", "fd00:99::3", "mcA");
}

H_BACKEND_TEST(mcast, v6_join_receive_leave, .timeout = 30)
{
    h_netns_run(backend, h_ns_veth_script, v6_join_receive_leave, 20000);
}

H_BACKEND_TEST(mcast, v6_source_specific, .timeout = 30)
{
    h_netns_run(backend, h_ns_veth_script, v6_ssm, 20000);
}

/* ---- the loop option's effect, and broadcast ------------------------------------------------ */

static void loop_option_effect(const char *backend)
{
    rill_loop *l = h_ns_loop(backend);
    struct rx rx = {0}, txr = {0}, rx6 = {0}, txr6 = {0};
    rill_dgram *d = ns_open(l, "udp://239.1.2.4:0", &rx);
    rill_dgram *tx = ns_sender(l, "udp://0.0.0.0:0", &txr);
    rill_dgram *d6 = ns_open(l, "udp://[ff15::99]:0", &rx6);
    rill_dgram *tx6 = ns_sender(l, "udp://[::]:0", &txr6);
    H_NS_CHECK(rill_dgram_join(d, "239.1.2.4", NULL, "mcA") == 0, "join v4");
    H_NS_CHECK(rill_dgram_join(d6, "ff15::99", NULL, "mcA") == 0, "join v6");
    int port = rill_dgram_port(d), port6 = rill_dgram_port(d6);
    /* The members are on this host: only the loopback copy reaches them. */
    H_NS_CHECK(rill_dgram_setopt(tx, RILL_OPT_MULTICAST_LOOP, 0) == 0, "loop off");
    H_NS_CHECK(rill_dgram_setopt(tx6, RILL_OPT_MULTICAST_LOOP, 0) == 0, "loop off v6");
    ns_expect(l, tx, &rx, "239.1.2.4", port, "loop off", false);
    ns_expect(l, tx6, &rx6, "ff15::99", port6, "loop off", false);
    H_NS_CHECK(rill_dgram_setopt(tx, RILL_OPT_MULTICAST_LOOP, 1) == 0, "loop on");
    H_NS_CHECK(rill_dgram_setopt(tx6, RILL_OPT_MULTICAST_LOOP, 1) == 0, "loop on v6");
    ns_expect(l, tx, &rx, "239.1.2.4", port, "loop on", true);
    ns_expect(l, tx6, &rx6, "ff15::99", port6, "loop on", true);
    rill_dgram_close(d6);
    rill_dgram_close(tx6);
    ns_close(l, d, tx);
}

H_BACKEND_TEST(mcast, loop_option_decides_local_delivery, .timeout = 30)
{
    h_netns_run(backend, h_ns_veth_script, loop_option_effect, 20000);
}

static void broadcast(const char *backend)
{
    rill_loop *l = h_ns_loop(backend);
    struct rx rx = {0}, txr = {0};
    rill_dgram *d = ns_open(l, "udp://0.0.0.0:0", &rx);
    rill_dgram *tx = ns_open(l, "udp://10.99.0.1:0", &txr);
    int port = rill_dgram_port(d), v = -1;
    H_NS_CHECK(rill_dgram_getopt(tx, RILL_OPT_BROADCAST, &v) == 0 && v == 0, "default %d", v);
    int r = ns_send(l, tx, "10.99.0.255", port, "no");
    H_NS_CHECK(r == -EACCES, "subnet broadcast without SO_BROADCAST: %s", rill_strerror(r));
    r = ns_send(l, tx, "255.255.255.255", port, "no");
    H_NS_CHECK(r == -EACCES, "255.255.255.255 without SO_BROADCAST: %s", rill_strerror(r));
    H_NS_CHECK(rill_dgram_setopt(tx, RILL_OPT_BROADCAST, 1) == 0, "setopt");
    H_NS_CHECK(rill_dgram_getopt(tx, RILL_OPT_BROADCAST, &v) == 0 && v == 1, "now %d", v);
    ns_expect(l, tx, &rx, "10.99.0.255", port, "subnet broadcast", true);
    ns_expect(l, tx, &rx, "255.255.255.255", port, "limited broadcast", true);
    H_NS_CHECK(strcmp(rx.from, "10.99.0.1") == 0, "from %s", rx.from);
    H_NS_CHECK(rx.n == 2, "%u datagrams", rx.n);
    ns_close(l, d, tx);
}

H_BACKEND_TEST(mcast, broadcast_needs_the_option, .timeout = 30)
{
    h_netns_run(backend, h_ns_veth_script, broadcast, 20000);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void errors(const char *backend)
{
    rill_loop *l = h_ns_loop(backend);
    struct rx rx = {0};
    rill_dgram *d = ns_open(l, "udp://0.0.0.0:0", &rx);
    rill_dgram *d6 = ns_open(l, "udp://[::]:0", &rx);
    H_NS_CHECK(rill_dgram_join(NULL, "239.1.1.1", NULL, NULL) == -EINVAL, "NULL d");
    H_NS_CHECK(rill_dgram_join(d, NULL, NULL, NULL) == -EINVAL, "NULL group");
    H_NS_CHECK(rill_dgram_join(d, "10.99.0.2", NULL, NULL) == -EINVAL, "unicast group");
    H_NS_CHECK(rill_dgram_join(d, "not an address", NULL, NULL) == -EINVAL, "garbage");
    H_NS_CHECK(rill_dgram_join(d, "ff15::1", NULL, NULL) == -EINVAL, "v6 group, v4 socket");
    H_NS_CHECK(rill_dgram_join(d6, "239.1.1.1", NULL, NULL) == -EINVAL, "v4 group, v6 socket");
    H_NS_CHECK(rill_dgram_join(d, "232.1.1.1", "239.1.1.1", NULL) == -EINVAL, "mc source");
    H_NS_CHECK(rill_dgram_join(d, "232.1.1.1", "0.0.0.0", NULL) == -EINVAL, "any source");
    H_NS_CHECK(rill_dgram_join(d6, "ff35::1", "10.99.0.2", "mcA") == -EINVAL, "v4 source");
    H_NS_CHECK(rill_dgram_join(d, "239.1.1.1", NULL, "nosuchif0") == -ENODEV, "unknown if");
    H_NS_CHECK(rill_dgram_join(d6, "ff15::1", NULL, "nosuchif0") == -ENODEV, "unknown if 6");
    H_NS_CHECK(rill_dgram_join(d, "239.1.1.1", "10.99.0.2", "an-interface-name-too-long") ==
                   -ENODEV, "overlong name");
    H_NS_CHECK(rill_dgram_leave(d, "239.1.1.1", NULL, "nosuchif0") == -ENODEV, "leave unknown");
    H_NS_CHECK(rill_dgram_leave(d, "239.1.1.1", NULL, NULL) == -EADDRNOTAVAIL, "not joined");
    H_NS_CHECK(rill_dgram_set_multicast_if(d, "nosuchif0") == -ENODEV, "mcast if unknown");
    H_NS_CHECK(rill_dgram_set_multicast_if(NULL, "mcA") == -EINVAL, "mcast if NULL");
    H_NS_CHECK(rill_dgram_set_multicast_if(d, "mcA") == 0, "mcast if mcA");
    H_NS_CHECK(rill_dgram_set_multicast_if(d, NULL) == 0, "mcast if back to default");
    H_NS_CHECK(rill_dgram_set_multicast_if(d6, "") == 0, "mcast if v6 default");
    /* Without a multicast route and with no interface named, there is nowhere to join. */
    H_NS_CHECK(h_ns_ip("route del 224.0.0.0/4 dev mcA") == 0, "route del");
    int r = rill_dgram_join(d, "239.1.1.1", NULL, NULL);
    H_NS_CHECK(r == -ENODEV, "join without a route: %s", rill_strerror(r));
    rill_dgram_close(d);
    H_NS_CHECK(rill_dgram_join(d, "239.1.1.1", NULL, "mcA") == -ENOTCONN, "after close");
    H_NS_CHECK(rill_dgram_set_multicast_if(d, "mcA") == -ENOTCONN, "mcast if after close");
    ns_close(l, d6, NULL);
}

H_BACKEND_TEST(mcast, errors_are_clear, .timeout = 30)
{
    h_netns_run(backend, h_ns_veth_script, errors, 20000);
}

/* ---- options, on loopback: nothing is sent ------------------------------------------------- */

static void check_opt(rill_dgram *d, rill_sockopt opt, int def, int set, const char *what)
{
    int v = -2;
    cr_assert_eq(rill_dgram_getopt(d, opt, &v), 0, "%s get", what);
    cr_assert_eq(v, def, "%s default %d", what, v);
    cr_assert_eq(rill_dgram_setopt(d, opt, set), 0, "%s set %d", what, set);
    cr_assert_eq(rill_dgram_getopt(d, opt, &v), 0, "%s get", what);
    cr_assert_eq(v, set, "%s reads back %d after set %d", what, v, set);
}

H_BACKEND_TEST(mcast, ttl_loop_broadcast_options_round_trip, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct rx rx = {0};
    struct rill_dgram_config cfg = {.handler = &rx_handler, .ctx = &rx};
    rill_dgram *d4, *d6, *du;
    cr_assert_eq(rill_dgram_open(l, "udp://127.0.0.1:0", &cfg, &d4), 0);
    cr_assert_eq(rill_dgram_open(l, "udp://[::1]:0", &cfg, &d6), 0);
    char uname[64];
    snprintf(uname, sizeof uname, "unix+dgram:@rill-mcast-opts-%d-%s", getpid(), backend);
    cr_assert_eq(rill_dgram_open(l, uname, &cfg, &du), 0);
    check_opt(d4, RILL_OPT_MULTICAST_TTL, 1, 7, "IP_MULTICAST_TTL");
    check_opt(d4, RILL_OPT_MULTICAST_LOOP, 1, 0, "IP_MULTICAST_LOOP");
    check_opt(d4, RILL_OPT_BROADCAST, 0, 1, "SO_BROADCAST");
    check_opt(d6, RILL_OPT_MULTICAST_TTL, 1, 64, "IPV6_MULTICAST_HOPS");
    check_opt(d6, RILL_OPT_MULTICAST_LOOP, 1, 0, "IPV6_MULTICAST_LOOP");
    check_opt(d6, RILL_OPT_BROADCAST, 0, 1, "SO_BROADCAST v6");
    int v;
    cr_assert_eq(rill_dgram_setopt(d4, RILL_OPT_MULTICAST_TTL, -1), 0, "-1: the default");
    cr_assert_eq(rill_dgram_getopt(d4, RILL_OPT_MULTICAST_TTL, &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(rill_dgram_setopt(d4, RILL_OPT_MULTICAST_TTL, 256), -EINVAL);
    cr_assert_eq(rill_dgram_setopt(du, RILL_OPT_BROADCAST, 1), -ENOPROTOOPT);
    cr_assert_eq(rill_dgram_getopt(du, RILL_OPT_MULTICAST_TTL, &v), -ENOPROTOOPT);
    cr_assert_eq(rill_dgram_setopt(du, RILL_OPT_MULTICAST_LOOP, 0), -ENOPROTOOPT);
    cr_assert_eq(rill_dgram_join(du, "239.1.1.1", NULL, NULL), -ENOPROTOOPT);
    cr_assert_eq(rill_dgram_set_multicast_if(du, NULL), -ENOPROTOOPT);
    /* A stream has neither broadcast nor multicast. */
    static const struct rill_conn_handler ch = {0};
    struct rill_listen_config lc = {.handler = &ch};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    cr_assert_eq(rill_listener_setopt(ls, RILL_OPT_BROADCAST, 1), -ENOPROTOOPT);
    cr_assert_eq(rill_listener_getopt(ls, RILL_OPT_MULTICAST_LOOP, &v), -ENOPROTOOPT);
    rill_listener_close(ls);
    rill_dgram_close(d4);
    rill_dgram_close(d6);
    rill_dgram_close(du);
    h_run_for(l, 20);
    rill_loop_destroy(l);
}

/* ---- a kernel error comes back as it is (injected: nothing is joined) ---------------------- */

static int fail_setsockopt(enum rill__sys_call call, int fd, size_t *len, void *arg)
{
    (void)fd, (void)len, (void)arg;
    return call == RILL__SYS_SETSOCKOPT ? -ENOBUFS : 0;
}

H_BACKEND_TEST(mcast, setsockopt_errors_pass_through, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct rx rx = {0};
    struct rill_dgram_config cfg = {.handler = &rx_handler, .ctx = &rx};
    rill_dgram *d4, *d6;
    cr_assert_eq(rill_dgram_open(l, "udp://127.0.0.1:0", &cfg, &d4), 0);
    cr_assert_eq(rill_dgram_open(l, "udp://[::1]:0", &cfg, &d6), 0);
    rill__sys_set_hook(fail_setsockopt, NULL);
    /* Every path: ip_mreqn, ip_mreq_source, group_source_req (both families), ipv6_mreq. */
    int r[] = {
        rill_dgram_join(d4, "239.1.1.1", NULL, "lo"),
        rill_dgram_join(d4, "232.1.1.1", "127.0.0.2", NULL),
        rill_dgram_leave(d4, "232.1.1.1", "127.0.0.2", "lo"),
        rill_dgram_join(d6, "ff15::1", "::1", NULL),
        rill_dgram_leave(d6, "ff15::1", NULL, "lo"),
        rill_dgram_set_multicast_if(d4, "lo"),
        rill_dgram_set_multicast_if(d6, NULL),
        rill_dgram_setopt(d4, RILL_OPT_BROADCAST, 1),
    };
    rill__sys_set_hook(NULL, NULL);
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        cr_assert_eq(r[i], -ENOBUFS, "call %zu: %s", i, rill_strerror(r[i]));
    rill_dgram_close(d4);
    rill_dgram_close(d6);
    h_run_for(l, 20);
    rill_loop_destroy(l);
}
