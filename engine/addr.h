/* Address strings (internal): "tcp://host:port", "tcp://[v6]:port", "udp://host:port",
 * "unix:/path", "unix:@abstract", "unix+seqpacket:/path", "unix+dgram:/path", "raw://icmp",
 * "raw6://icmpv6", "ping://", "ping://127.0.0.1", "ping6://", "ping6://[::1]".
 *
 * Parsing is pure (no I/O, no allocation) so it can be fuzzed; resolution is a separate step. */
#ifndef RILL_ADDR_H
#define RILL_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum rill__scheme {
    RILL__SCHEME_TCP = 1,
    RILL__SCHEME_UDP,
    RILL__SCHEME_UNIX,           /* stream */
    RILL__SCHEME_UNIX_SEQPACKET,
    RILL__SCHEME_UNIX_DGRAM,
    RILL__SCHEME_RAW,  /* "raw://icmp": AF_INET SOCK_RAW IPPROTO_ICMP */
    RILL__SCHEME_RAW6, /* "raw6://icmpv6": AF_INET6 SOCK_RAW IPPROTO_ICMPV6 */
    RILL__SCHEME_PING, /* "ping://[host]": AF_INET SOCK_DGRAM IPPROTO_ICMP (unprivileged) */
    RILL__SCHEME_PING6,/* "ping6://[host]": AF_INET6 SOCK_DGRAM IPPROTO_ICMPV6 */
};

#define RILL__HOST_MAX 255 /* the longest DNS name */
#define RILL__PATH_MAX 107 /* sizeof(sun_path) - 1 */

struct rill__uri {
    enum rill__scheme scheme;
    bool abstract;                   /* unix: "@name" (Linux abstract namespace) */
    uint16_t port;                   /* tcp/udp */
    char host[RILL__HOST_MAX + 1];   /* tcp/udp: without brackets; NUL-terminated */
    char path[RILL__PATH_MAX + 1];   /* unix: the path, or the abstract name without '@' */
    uint32_t path_len;               /* bytes in path (abstract names may hold no NUL) */
};

/* Parses uri into *out. Schemes are lower case. Hosts: an IPv4 dotted quad, a bracketed IPv6
 * literal (a zone "%eth0" is allowed), "*" (the wildcard, for passive resolves), or a DNS name
 * (letters, digits, '-', '.'; labels 1..63, total at most 253, one trailing '.' allowed); a host
 * of only digits and dots must be a valid dotted quad. Ports: decimal 0..65535 with no sign, at
 * most 5 digits, required for tcp/udp, and nothing may follow them. Unix paths: non-empty, at
 * most RILL__PATH_MAX bytes, no control characters; "unix:@name" is an abstract name.
 * Returns: 0; -EINVAL for NULL or anything malformed (out is then unspecified). */
int rill__uri_parse(const char *uri, struct rill__uri *out);

/* A resolved socket address with the socket() arguments it needs. */
struct rill__addr {
    int family;   /* AF_INET, AF_INET6, AF_UNIX */
    int socktype; /* SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_RAW */
    int protocol; /* 0, or IPPROTO_ICMP / IPPROTO_ICMPV6 for raw and ping sockets */
    socklen_t len;
    struct sockaddr_storage ss;
};

/* Resolves a parsed uri into at most `max` addresses (numeric hosts without any lookup; names
 * through getaddrinfo, which blocks). For a passive (listening) resolve an empty host or "*"
 * means the IPv6 wildcard; an active resolve of a wildcard is -EINVAL. Addresses come in
 * getaddrinfo's order.
 * Returns: the number of addresses (>= 1); -EINVAL for bad arguments; -ENOENT when the name (or
 * an IPv6 zone's interface) does not resolve; -EAGAIN when the resolver failed temporarily;
 * -EAFNOSUPPORT when it resolves to no usable family. */
int rill__uri_resolve(const struct rill__uri *u, bool passive, struct rill__addr *out, int max);

/* Whether an active resolve of u would have to look a name up (tcp/udp with a host that is no
 * numeric address nor the wildcard): rill_connect and rill_dgram_open's peer then resolve it
 * asynchronously (resolve.c) instead of calling rill__uri_resolve. Pure. */
bool rill__uri_needs_lookup(const struct rill__uri *u);

/* Parse and resolve in one call, keeping the first address. Returns 0 or a negative errno as
 * the two functions above. */
int rill__addr_from_uri(const char *uri, bool passive, struct rill__addr *out);

/* Formats a socket address as a URI ("tcp://127.0.0.1:80", "tcp://[::1]:80", "unix:/p"), for
 * logs. socktype may carry SOCK_NONBLOCK / SOCK_CLOEXEC. Non-printable bytes of unix paths are
 * written as \xNN.
 * Returns: the length written (excluding NUL), truncated to fit; -EINVAL for NULL, cap 0, a
 * length too short for the family or a socktype the family has no scheme for; -EAFNOSUPPORT
 * for a family other than AF_INET, AF_INET6, AF_UNIX. */
int rill__addr_format(const struct sockaddr *sa, socklen_t len, int socktype, char *buf,
                      size_t cap);

#endif
