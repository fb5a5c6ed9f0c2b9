/* Transports: how the probe's two sockets are connected. Every address is loopback (127.0.0.1,
 * ::1), an abstract Unix name private to this process, or an address inside the namespaces the
 * probe created itself (veth). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "probe.h"

static const char *const names[TR_COUNT] = {
    [TR_TCP4] = "tcp4",
    [TR_TCP6] = "tcp6",
    [TR_UDP] = "udp",
    [TR_UNIX_STREAM] = "unix-stream",
    [TR_UNIX_DGRAM] = "unix-dgram",
    [TR_UNIX_SEQPACKET] = "unix-seqpacket",
    [TR_SOCKETPAIR] = "socketpair",
    [TR_VETH] = "veth",
    [TR_DROP] = "drop",
};

/* The veth pair's addresses; they exist only inside the probe's own namespaces. */
#define VETH_CLIENT_ADDR "10.213.77.1"
#define VETH_SERVER_ADDR "10.213.77.2"

const char *probe_transport_name(enum probe_transport t)
{
    return (unsigned)t < TR_COUNT ? names[t] : "?";
}

int probe_transport_parse(const char *name)
{
    for (int i = 0; i < TR_COUNT; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

bool probe_transport_is_inet(enum probe_transport t)
{
    return t == TR_TCP4 || t == TR_TCP6 || t == TR_UDP || t == TR_VETH || t == TR_DROP;
}

bool probe_transport_is_stream(enum probe_transport t)
{
    return t == TR_TCP4 || t == TR_TCP6 || t == TR_UNIX_STREAM || t == TR_SOCKETPAIR ||
           t == TR_VETH;
}

bool probe_transport_is_dgram(enum probe_transport t)
{
    return t == TR_UDP || t == TR_UNIX_DGRAM || t == TR_DROP;
}

/* The largest message the transport carries in one piece: UDP's payload limit over IPv4
 * (65535 - 20 - 8); Unix datagrams are bounded by the send buffer, which the default
 * net.core.wmem_default (212992) comfortably exceeds for the probe's sizes. */
size_t probe_transport_max_msg(enum probe_transport t)
{
    return t == TR_UDP || t == TR_DROP ? 65507u : PROBE_MAX_SIZE;
}

static int fail(int err, char *why, size_t n, const char *what)
{
    snprintf(why, n, "%s: %s", what, strerror(err));
    return -err;
}

static void tcp_tune(int fd)
{
    int one = 1;
    /* Ping-pong would otherwise meet Nagle's algorithm and delayed ACKs. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Listens on addr (port 0), connects a client to it and accepts. */
static int tcp_pair(int family, const struct sockaddr *addr, socklen_t alen, int nsfds[2],
                    int fds[2], char *why, size_t n)
{
    int self = -1, l = -1, c = -1, a = -1, err = 0;
    if (nsfds[0] >= 0) {
        self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (self < 0 || setns(nsfds[1], CLONE_NEWNET) < 0)
            return fail(errno, why, n, "setns into the server namespace");
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, addr, alen) < 0 || listen(l, 4) < 0 ||
        getsockname(l, (struct sockaddr *)&ss, &sl) < 0) {
        err = fail(errno, why, n, family == AF_INET6 ? "listen on [::1]" : "listen");
        goto out;
    }
    /* A socket keeps the namespace it was created in, so the client is created in its own. */
    if (nsfds[0] >= 0 && setns(nsfds[0], CLONE_NEWNET) < 0) {
        err = fail(errno, why, n, "setns into the client namespace");
        goto out;
    }
    c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&ss, sl) < 0) {
        err = fail(errno, why, n, "connect");
        goto out;
    }
    a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (a < 0) {
        err = fail(errno, why, n, "accept");
        goto out;
    }
    tcp_tune(c);
    tcp_tune(a);
    fds[0] = c;
    fds[1] = a;
    c = a = -1;
out:
    if (self >= 0) {
        if (setns(self, CLONE_NEWNET) < 0 && !err)
            err = fail(errno, why, n, "setns back");
        close(self);
    }
    if (l >= 0)
        close(l);
    if (c >= 0)
        close(c);
    return err;
}

static int udp_pair(int fds[2], char *why, size_t n)
{
    struct sockaddr_in sa[2];
    for (int i = 0; i < 2; i++) {
        socklen_t sl = sizeof sa[i];
        memset(&sa[i], 0, sizeof sa[i]);
        sa[i].sin_family = AF_INET;
        sa[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa[i], sizeof sa[i]) < 0 ||
            getsockname(fds[i], (struct sockaddr *)&sa[i], &sl) < 0)
            return fail(errno, why, n, "udp socket");
    }
    for (int i = 0; i < 2; i++)
        if (connect(fds[i], (struct sockaddr *)&sa[!i], sizeof sa[!i]) < 0)
            return fail(errno, why, n, "udp connect");
    return 0;
}

/* The drop transport: inside its namespace, a client UDP socket connected to the neighbour
 * that is never reached, and a server socket that is never sent to (the server side of a drop
 * cell does nothing; the socket exists because every cell has two). */
static int drop_pair(int fds[2], int nsfds[2], char *why, size_t n)
{
    int r = probe_netns_setup_drop(why, n);
    if (r < 0)
        return r;
    nsfds[0] = nsfds[1] = probe_netns_fd(2);
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0 || setns(nsfds[0], CLONE_NEWNET) < 0) {
        r = fail(errno, why, n, "setns into the drop namespace");
        if (self >= 0)
            close(self);
        return r;
    }
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET,
                                                             .sin_port = htons(9)};
    inet_pton(AF_INET, PROBE_DROP_SRC, &src.sin_addr);
    inet_pton(AF_INET, PROBE_DROP_DST, &dst.sin_addr);
    for (int i = 0; i < 2 && r == 0; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&src, sizeof src) < 0)
            r = fail(errno, why, n, "udp socket in the drop namespace");
    }
    if (r == 0 && connect(fds[0], (struct sockaddr *)&dst, sizeof dst) < 0)
        r = fail(errno, why, n, "udp connect to the dropping neighbour");
    if (setns(self, CLONE_NEWNET) < 0 && r == 0)
        r = fail(errno, why, n, "setns back");
    close(self);
    return r;
}

/* An abstract Unix address unique to this process and call (no file to clean up). */
static socklen_t unix_addr(struct sockaddr_un *su, const char *tag)
{
    static unsigned seq;
    memset(su, 0, sizeof *su);
    su->sun_family = AF_UNIX;
    int len = snprintf(su->sun_path + 1, sizeof su->sun_path - 1, "rill-probe-%d-%s-%u",
                       (int)getpid(), tag, seq++);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)len);
}

static int unix_conn_pair(int type, int fds[2], char *why, size_t n)
{
    struct sockaddr_un su;
    socklen_t sl = unix_addr(&su, "l");
    int l = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&su, sl) < 0 || listen(l, 4) < 0) {
        int e = errno;
        if (l >= 0)
            close(l);
        return fail(e, why, n, "unix listen");
    }
    fds[0] = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    if (fds[0] < 0 || connect(fds[0], (struct sockaddr *)&su, sl) < 0 ||
        (fds[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0) {
        int e = errno;
        close(l);
        return fail(e, why, n, "unix connect");
    }
    close(l);
    return 0;
}

static int unix_dgram_pair(int fds[2], char *why, size_t n)
{
    struct sockaddr_un su[2];
    socklen_t sl[2];
    for (int i = 0; i < 2; i++) {
        sl[i] = unix_addr(&su[i], "d");
        fds[i] = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&su[i], sl[i]) < 0)
            return fail(errno, why, n, "unix dgram socket");
    }
    for (int i = 0; i < 2; i++)
        if (connect(fds[i], (struct sockaddr *)&su[!i], sl[!i]) < 0)
            return fail(errno, why, n, "unix dgram connect");
    return 0;
}

static int open_pair(enum probe_transport t, int fds[2], int nsfds[2], char *why, size_t n)
{
    switch (t) {
    case TR_TCP4: {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return tcp_pair(AF_INET, (struct sockaddr *)&sa, sizeof sa, nsfds, fds, why, n);
    }
    case TR_TCP6: {
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
        return tcp_pair(AF_INET6, (struct sockaddr *)&sa, sizeof sa, nsfds, fds, why, n);
    }
    case TR_VETH: {
        int r = probe_netns_setup(why, n);
        if (r < 0)
            return r;
        nsfds[0] = probe_netns_fd(0);
        nsfds[1] = probe_netns_fd(1);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        inet_pton(AF_INET, VETH_SERVER_ADDR, &sa.sin_addr);
        return tcp_pair(AF_INET, (struct sockaddr *)&sa, sizeof sa, nsfds, fds, why, n);
    }
    case TR_UDP:
        return udp_pair(fds, why, n);
    case TR_DROP:
        return drop_pair(fds, nsfds, why, n);
    case TR_UNIX_STREAM:
        return unix_conn_pair(SOCK_STREAM, fds, why, n);
    case TR_UNIX_SEQPACKET:
        return unix_conn_pair(SOCK_SEQPACKET, fds, why, n);
    case TR_UNIX_DGRAM:
        return unix_dgram_pair(fds, why, n);
    case TR_SOCKETPAIR:
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
            return fail(errno, why, n, "socketpair");
        return 0;
    default:
        return fail(EINVAL, why, n, "transport");
    }
}

int probe_transport_open(enum probe_transport t, int fds[2], int nsfds[2], char *why, size_t n)
{
    fds[0] = fds[1] = -1;
    nsfds[0] = nsfds[1] = -1;
    int r = open_pair(t, fds, nsfds, why, n);
    if (r < 0) {
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        fds[0] = fds[1] = -1;
    }
    return r;
}
