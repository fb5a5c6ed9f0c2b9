/* Socket set-up shared by listeners, connections and datagram sockets: see sock.h.
 *
 * Unix socket files outlive the process that bound them: a server that crashed leaves its file,
 * and the next bind on that path fails with EADDRINUSE although nobody is there. Telling a stale
 * file from a live server takes a connect: a live one accepts (or queues) it, a stale one
 * refuses it with ECONNREFUSED. Only then, and only if the file is a socket, is it removed: a
 * regular file that happens to sit at the path is the user's and is never touched. */
#include "sock.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"
#include "dgram.h"
#include "sys.h"

static const char *unix_path(const struct sockaddr_storage *ss, socklen_t len)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
    if (ss->ss_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path) ||
        un->sun_path[0] == '\0')
        return NULL; /* unnamed or abstract: no file */
    return un->sun_path;
}

void rill__sock_unlink(const struct sockaddr_storage *ss, socklen_t len)
{
    const char *path = unix_path(ss, len);
    struct stat st;
    if (path && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
}

/* True when a socket file sits at the path and nobody answers on it. */
static bool unix_is_stale(const struct rill__addr *a)
{
    const char *path = unix_path(&a->ss, a->len);
    struct stat st;
    if (!path || lstat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return false;
    int fd = socket(AF_UNIX, a->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    bool stale = connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno == ECONNREFUSED;
    close(fd);
    return stale;
}

int rill__sock_bind(struct rill_loop_stats *st, int fd, const struct rill__addr *a,
                    bool unlink_stale, uint32_t mode, bool *created)
{
    *created = false;
    int r = rill__sys_bind(st, fd, (const struct sockaddr *)&a->ss, a->len);
    if (r == -EADDRINUSE && unlink_stale && unix_is_stale(a)) {
        rill__sock_unlink(&a->ss, a->len);
        r = rill__sys_bind(st, fd, (const struct sockaddr *)&a->ss, a->len);
    }
    if (r < 0)
        return r;
    const char *path = unix_path(&a->ss, a->len);
    *created = path != NULL;
    /* chmod after bind: the file exists only now. Between the two the file has the umask's
     * mode, which is why users who need it closed run under a tight umask as well. */
    if (path && mode && chmod(path, (mode_t)mode) < 0) {
        r = -errno;
        unlink(path);
        *created = false;
    }
    return r;
}

/* ---- named options ------------------------------------------------------------------------- */

struct optname {
    int level, name;
};

/* Maps a named option to its level and name for this socket's kind (the handle knows it; no
 * system call is needed to ask). */
static int opt_lookup(struct rill__sockkind k, rill_sockopt opt, struct optname *o)
{
    bool v6 = k.family == AF_INET6, inet = v6 || k.family == AF_INET;
    switch (opt) {
    case RILL_OPT_NODELAY: *o = (struct optname){IPPROTO_TCP, TCP_NODELAY}; break;
    case RILL_OPT_KEEPALIVE: *o = (struct optname){SOL_SOCKET, SO_KEEPALIVE}; return 0;
    case RILL_OPT_KEEPIDLE: *o = (struct optname){IPPROTO_TCP, TCP_KEEPIDLE}; break;
    case RILL_OPT_KEEPINTVL: *o = (struct optname){IPPROTO_TCP, TCP_KEEPINTVL}; break;
    case RILL_OPT_KEEPCNT: *o = (struct optname){IPPROTO_TCP, TCP_KEEPCNT}; break;
    case RILL_OPT_RCVBUF: *o = (struct optname){SOL_SOCKET, SO_RCVBUF}; return 0;
    case RILL_OPT_SNDBUF: *o = (struct optname){SOL_SOCKET, SO_SNDBUF}; return 0;
    case RILL_OPT_LINGER: *o = (struct optname){SOL_SOCKET, SO_LINGER}; return 0;
    case RILL_OPT_NOTSENT_LOWAT: *o = (struct optname){IPPROTO_TCP, TCP_NOTSENT_LOWAT}; break;
    case RILL_OPT_BUSY_POLL: *o = (struct optname){SOL_SOCKET, SO_BUSY_POLL}; return 0;
    case RILL_OPT_TOS:
        *o = v6 ? (struct optname){IPPROTO_IPV6, IPV6_TCLASS}
                : (struct optname){IPPROTO_IP, IP_TOS};
        return inet ? 0 : -ENOPROTOOPT;
    case RILL_OPT_V6ONLY:
        *o = (struct optname){IPPROTO_IPV6, IPV6_V6ONLY};
        return v6 ? 0 : -ENOPROTOOPT;
    /* Datagram options: meaningless on a stream, and on a Unix socket, which has no broadcast
     * or multicast. Each family has its own multicast TTL and loop; an IPv6 socket takes the
     * IPv6 ones. */
    case RILL_OPT_BROADCAST: *o = (struct optname){SOL_SOCKET, SO_BROADCAST}; goto dgram;
    case RILL_OPT_MULTICAST_TTL:
        *o = v6 ? (struct optname){IPPROTO_IPV6, IPV6_MULTICAST_HOPS}
                : (struct optname){IPPROTO_IP, IP_MULTICAST_TTL};
        goto dgram;
    case RILL_OPT_MULTICAST_LOOP:
        *o = v6 ? (struct optname){IPPROTO_IPV6, IPV6_MULTICAST_LOOP}
                : (struct optname){IPPROTO_IP, IP_MULTICAST_LOOP};
        goto dgram;
    default:
        return -EINVAL;
    }
    /* The TCP-level ones: only on TCP sockets (the kernel would say EOPNOTSUPP or worse). */
    return inet && k.socktype == SOCK_STREAM ? 0 : -ENOPROTOOPT;
dgram:
    return inet && k.socktype != SOCK_STREAM ? 0 : -ENOPROTOOPT;
}

int rill__sockopt_set(struct rill_loop_stats *st, struct rill__sockkind k, rill_sockopt opt,
                      int value)
{
    struct optname o;
    int fd = k.fd;
    int r = opt_lookup(k, opt, &o);
    if (r < 0)
        return r;
    if (opt == RILL_OPT_LINGER) {
        struct linger lg = {.l_onoff = value >= 0, .l_linger = value >= 0 ? value : 0};
        return rill__sys_setsockopt(st, fd, o.level, o.name, &lg, sizeof lg);
    }
    return rill__sys_setsockopt(st, fd, o.level, o.name, &value, sizeof value);
}

int rill__sockopt_get(struct rill_loop_stats *st, struct rill__sockkind k, rill_sockopt opt,
                      int *value)
{
    struct optname o;
    int fd = k.fd;
    int r = opt_lookup(k, opt, &o);
    if (r < 0)
        return r;
    if (opt == RILL_OPT_LINGER) {
        struct linger lg;
        socklen_t len = sizeof lg;
        r = rill__sys_getsockopt(st, fd, o.level, o.name, &lg, &len);
        if (r == 0)
            *value = lg.l_onoff ? lg.l_linger : -1;
        return r;
    }
    socklen_t len = sizeof *value;
    return rill__sys_getsockopt(st, fd, o.level, o.name, value, &len);
}

/* ---- public: options on any handle --------------------------------------------------------- */

/* Each handle type reaches the same two calls through its descriptor and its loop's counters.
 * A handle that is closing has no descriptor any more: -ENOTCONN. */
#define RILL__OPT_FNS(kind, type, FD, KIND, LOOP)                                                       \
    int rill_##kind##_setopt(type *h, rill_sockopt opt, int value)                              \
    {                                                                                            \
        if (!h)                                                                                  \
            return -EINVAL;                                                                      \
        int fd = FD(h);                                                                          \
        return fd < 0 ? -ENOTCONN : rill__sockopt_set(&LOOP(h)->stats, KIND(h, fd), opt, value);\
    }                                                                                            \
    int rill_##kind##_getopt(const type *h, rill_sockopt opt, int *value)                       \
    {                                                                                            \
        if (!h || !value)                                                                        \
            return -EINVAL;                                                                      \
        int fd = FD(h);                                                                          \
        return fd < 0 ? -ENOTCONN : rill__sockopt_get(&LOOP(h)->stats, KIND(h, fd), opt, value);\
    }                                                                                            \
    int rill_##kind##_setsockopt(type *h, int level, int name, const void *val, socklen_t len)  \
    {                                                                                            \
        if (!h || (!val && len))                                                                 \
            return -EINVAL;                                                                      \
        int fd = FD(h);                                                                          \
        return fd < 0 ? -ENOTCONN                                                                \
                      : rill__sys_setsockopt(&LOOP(h)->stats, fd, level, name, val, len);        \
    }                                                                                            \
    int rill_##kind##_getsockopt(const type *h, int level, int name, void *val, socklen_t *len) \
    {                                                                                            \
        if (!h || !val || !len)                                                                  \
            return -EINVAL;                                                                      \
        int fd = FD(h);                                                                          \
        return fd < 0 ? -ENOTCONN                                                                \
                      : rill__sys_getsockopt(&LOOP(h)->stats, fd, level, name, val, len);        \
    }

#define CONN_FD(c) rill_conn_fd(c)
#define LISTENER_FD(ls) ((ls)->closed ? -1 : (ls)->fd)
#define DGRAM_FD(d) rill_dgram_fd(d)
#define LOOP_OF(h) ((h)->loop)
#define CONN_KIND(c, fd) ((struct rill__sockkind){fd, (c)->family, (c)->socktype})
#define LISTENER_KIND(ls, fd) ((struct rill__sockkind){fd, (ls)->addr.ss_family, (ls)->socktype})
#define DGRAM_KIND(d, fd) ((struct rill__sockkind){fd, (d)->family, (d)->socktype})

RILL__OPT_FNS(conn, rill_conn, CONN_FD, CONN_KIND, LOOP_OF)
RILL__OPT_FNS(listener, rill_listener, LISTENER_FD, LISTENER_KIND, LOOP_OF)
RILL__OPT_FNS(dgram, rill_dgram, DGRAM_FD, DGRAM_KIND, LOOP_OF)

int rill_conn_tcp_info(const rill_conn *c, void *info, socklen_t *len)
{
    if (!c || !info || !len)
        return -EINVAL;
    int fd = rill_conn_fd(c);
    if (fd < 0)
        return -ENOTCONN;
    if (c->socktype != SOCK_STREAM || (c->family != AF_INET && c->family != AF_INET6))
        return -ENOPROTOOPT;
    return rill__sys_getsockopt(&c->loop->stats, fd, IPPROTO_TCP, TCP_INFO, info, len);
}

int rill_conn_peer_cred(const rill_conn *c, pid_t *pid, uid_t *uid, gid_t *gid)
{
    if (!c)
        return -EINVAL;
    int fd = rill_conn_fd(c);
    if (fd < 0)
        return -ENOTCONN;
    if (c->family != AF_UNIX)
        return -EOPNOTSUPP; /* SO_PEERCRED on TCP "works" and says nobody */
    struct ucred cr;
    socklen_t len = sizeof cr;
    int r = rill__sys_getsockopt(&c->loop->stats, fd, SOL_SOCKET, SO_PEERCRED, &cr, &len);
    if (r < 0)
        return r;
    if (pid)
        *pid = cr.pid;
    if (uid)
        *uid = cr.uid;
    if (gid)
        *gid = cr.gid;
    return 0;
}

int rill__sock_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}
