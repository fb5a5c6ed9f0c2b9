/* Multicast group membership and the outgoing multicast interface of a datagram socket.
 *
 * The kernel speaks three dialects for one idea, and which one fits depends on the family and on
 * whether a source is named:
 *   - IPv4 any-source: IP_ADD_MEMBERSHIP with a struct ip_mreqn, which names the interface by
 *     index (the older struct ip_mreq could only name it by one of its addresses);
 *   - IPv4 source-specific: IP_ADD_SOURCE_MEMBERSHIP with a struct ip_mreq_source, which again
 *     names the interface only by an address. An interface may have no IPv4 address or share
 *     one, so when an interface is named the protocol-independent MCAST_JOIN_SOURCE_GROUP
 *     (RFC 3678, Linux 2.6.15), which takes an index, is used instead;
 *   - IPv6: IPV6_JOIN_GROUP with a struct ipv6_mreq (index), and MCAST_JOIN_SOURCE_GROUP for a
 *     source (IPv6 has no option of its own for that).
 * The leave options mirror the join ones. Interface names are turned into indexes with
 * SIOCGIFINDEX on the socket itself, so the name is looked up in the socket's network namespace,
 * which need not be the calling thread's.
 *
 * A Linux pitfall worth knowing, and documented in rill.h: a socket bound to the wildcard address
 * receives datagrams for every group that any socket of the host joined on that port
 * (IP_MULTICAST_ALL, on by default); binding to the group address itself avoids it. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/ioctl.h>

#include "dgram.h"
#include "sys.h"

/* What a join or leave is about, parsed and checked. */
struct mc_req {
    int family;
    bool has_source;
    unsigned ifindex;                /* 0: the kernel picks the interface by routing the group */
    struct sockaddr_storage group, source;
};

/* The index of the interface called ifname, as the socket's namespace knows it; NULL or "" is
 * index 0. Returns 0 or -ENODEV. */
static int mc_ifindex(const rill_dgram *d, const char *ifname, unsigned *index)
{
    *index = 0;
    if (!ifname || !*ifname)
        return 0;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    size_t n = strlen(ifname);
    if (n >= sizeof ifr.ifr_name)
        return -ENODEV; /* no interface can have that name */
    memcpy(ifr.ifr_name, ifname, n);
    if (ioctl(d->fd, SIOCGIFINDEX, &ifr) < 0)
        return errno == ENODEV || errno == ENXIO ? -ENODEV : -errno;
    *index = (unsigned)ifr.ifr_ifindex;
    return 0;
}

/* Parses an address of the given family into ss ("[...]" is accepted around IPv6, as in URIs).
 * Returns 0 or -EINVAL (also for an address of the other family). */
static int mc_parse(int family, const char *s, struct sockaddr_storage *ss)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(s);
    if (n >= sizeof buf)
        return -EINVAL;
    if (family == AF_INET6 && n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        memcpy(buf, s + 1, n - 2);
        buf[n - 2] = '\0';
    } else {
        memcpy(buf, s, n + 1);
    }
    memset(ss, 0, sizeof *ss);
    ss->ss_family = (sa_family_t)family;
    void *a = family == AF_INET ? (void *)&((struct sockaddr_in *)ss)->sin_addr
                                : (void *)&((struct sockaddr_in6 *)ss)->sin6_addr;
    return inet_pton(family, buf, a) == 1 ? 0 : -EINVAL;
}

static bool mc_is_multicast(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return IN_MULTICAST(ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr));
    return IN6_IS_ADDR_MULTICAST(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

static bool mc_is_unspecified(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
}

/* The checks every join and leave share. */
static int mc_prepare(const rill_dgram *d, const char *group, const char *source,
                      const char *ifname, struct mc_req *rq)
{
    if (!d || !group)
        return -EINVAL;
    if (d->closing)
        return -ENOTCONN;
    if (d->family != AF_INET && d->family != AF_INET6)
        return -ENOPROTOOPT; /* a Unix datagram socket has no groups */
    memset(rq, 0, sizeof *rq);
    rq->family = d->family;
    if (mc_parse(d->family, group, &rq->group) < 0 || !mc_is_multicast(&rq->group))
        return -EINVAL;
    if (source) {
        if (mc_parse(d->family, source, &rq->source) < 0 || mc_is_multicast(&rq->source) ||
            mc_is_unspecified(&rq->source))
            return -EINVAL;
        rq->has_source = true;
    }
    return mc_ifindex(d, ifname, &rq->ifindex);
}

/* IPv4, except a source-specific change on a named interface (mc_source_group). */
static int mc_v4(rill_dgram *d, const struct mc_req *rq, bool join)
{
    struct rill_loop_stats *st = &d->loop->stats;
    struct in_addr g = ((const struct sockaddr_in *)&rq->group)->sin_addr;
    if (!rq->has_source) {
        struct ip_mreqn m = {.imr_multiaddr = g, .imr_ifindex = (int)rq->ifindex};
        return rill__sys_setsockopt(st, d->fd, IPPROTO_IP,
                                    join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &m, sizeof m);
    }
    struct ip_mreq_source m = {
        .imr_multiaddr = g,
        .imr_interface = {htonl(INADDR_ANY)}, /* the kernel's choice, by routing the group */
        .imr_sourceaddr = ((const struct sockaddr_in *)&rq->source)->sin_addr,
    };
    return rill__sys_setsockopt(st, d->fd, IPPROTO_IP,
                                join ? IP_ADD_SOURCE_MEMBERSHIP : IP_DROP_SOURCE_MEMBERSHIP, &m,
                                sizeof m);
}

static int mc_source_group(rill_dgram *d, const struct mc_req *rq, bool join)
{
    struct group_source_req m;
    memset(&m, 0, sizeof m);
    m.gsr_interface = rq->ifindex;
    m.gsr_group = rq->group;
    m.gsr_source = rq->source;
    int level = rq->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    return rill__sys_setsockopt(&d->loop->stats, d->fd, level,
                                join ? MCAST_JOIN_SOURCE_GROUP : MCAST_LEAVE_SOURCE_GROUP, &m,
                                sizeof m);
}

static int mc_change(rill_dgram *d, const char *group, const char *source, const char *ifname,
                     bool join)
{
    struct mc_req rq;
    int r = mc_prepare(d, group, source, ifname, &rq);
    if (r < 0)
        return r;
    if (rq.family == AF_INET && !(rq.has_source && rq.ifindex))
        return mc_v4(d, &rq, join);
    if (rq.has_source) /* IPv6, or IPv4 on a named interface: by index */
        return mc_source_group(d, &rq, join);
    struct ipv6_mreq m = {.ipv6mr_multiaddr = ((struct sockaddr_in6 *)&rq.group)->sin6_addr,
                          .ipv6mr_interface = rq.ifindex};
    return rill__sys_setsockopt(&d->loop->stats, d->fd, IPPROTO_IPV6,
                                join ? IPV6_JOIN_GROUP : IPV6_LEAVE_GROUP, &m, sizeof m);
}

int rill_dgram_join(rill_dgram *d, const char *group, const char *source, const char *ifname)
{
    return mc_change(d, group, source, ifname, true);
}

int rill_dgram_leave(rill_dgram *d, const char *group, const char *source, const char *ifname)
{
    return mc_change(d, group, source, ifname, false);
}

int rill_dgram_set_multicast_if(rill_dgram *d, const char *ifname)
{
    if (!d)
        return -EINVAL;
    if (d->closing)
        return -ENOTCONN;
    if (d->family != AF_INET && d->family != AF_INET6)
        return -ENOPROTOOPT;
    unsigned index;
    int r = mc_ifindex(d, ifname, &index);
    if (r < 0)
        return r;
    struct rill_loop_stats *st = &d->loop->stats;
    if (d->family == AF_INET) {
        /* Index 0 with no address puts the kernel's choice back. */
        struct ip_mreqn m = {.imr_ifindex = (int)index};
        return rill__sys_setsockopt(st, d->fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m);
    }
    int v = (int)index;
    return rill__sys_setsockopt(st, d->fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &v, sizeof v);
}
