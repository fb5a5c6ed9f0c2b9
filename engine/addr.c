/* Address strings: parsing (pure), resolution (may block in getaddrinfo) and formatting for logs.
 *
 * The parser is fuzzed, so every scan in it is bounded twice: by the terminating NUL (each loop
 * tests a byte before it looks at the next one) and by the largest field it can fill. It never
 * allocates and never calls anything that touches the system except inet_pton(), which is a pure
 * function of its arguments. */
#include "addr.h"
#include "rill.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

/* The socket() type argument may carry these flags; formatting ignores them. */
#define SOCKTYPE_MASK (~(SOCK_NONBLOCK | SOCK_CLOEXEC))

/* RFC 1035: 255 octets on the wire is 253 characters of text without the trailing dot. */
#define DNS_NAME_MAX 253
#define DNS_LABEL_MAX 63

/* The longest text rill__addr_format can produce: "unix+seqpacket:@" and 108 bytes written as
 * "\xNN" each is under 460; an IPv6 URI is under 80. */
#define FORMAT_MAX 512

_Static_assert(RILL__PATH_MAX + 1 == sizeof(((struct sockaddr_un *)0)->sun_path),
               "RILL__PATH_MAX must track sun_path");

/* ASCII classes written out, because <ctype.h> depends on the locale and takes int arguments
 * whose negative values (high-bit chars) are undefined behaviour. */
static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_alnum(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_ctl(char c)
{
    unsigned char u = (unsigned char)c;
    return u < 0x20 || u == 0x7f;
}

/* Counts bytes of s before the first `stop` byte or the NUL, looking at no more than limit + 1
 * bytes, so a result of limit + 1 means "too long" without reading further. */
static size_t span_until(const char *s, char stop, size_t limit)
{
    size_t n = 0;
    while (n <= limit && s[n] != '\0' && s[n] != stop)
        n++;
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static const struct {
    const char *prefix;
    size_t len;
    enum rill__scheme scheme;
} schemes[] = {
    {"tcp://", 6, RILL__SCHEME_TCP},
    {"udp://", 6, RILL__SCHEME_UDP},
    {"unix:", 5, RILL__SCHEME_UNIX},
    {"unix+seqpacket:", 15, RILL__SCHEME_UNIX_SEQPACKET},
    {"unix+dgram:", 11, RILL__SCHEME_UNIX_DGRAM},
    {"raw://", 6, RILL__SCHEME_RAW},
    {"raw6://", 7, RILL__SCHEME_RAW6},
    {"ping://", 7, RILL__SCHEME_PING},
    {"ping6://", 8, RILL__SCHEME_PING6},
};

/* strncmp stops at the first difference, and a NUL in uri is a difference from every prefix,
 * so a short input is never read past its end. Schemes are matched case-sensitively: the
 * strings come from configuration written by people, and one spelling keeps logs greppable. */
static const char *match_scheme(const char *uri, enum rill__scheme *scheme)
{
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        if (strncmp(uri, schemes[i].prefix, schemes[i].len) == 0) {
            *scheme = schemes[i].scheme;
            return uri + schemes[i].len;
        }
    }
    return NULL;
}

/* A port is 1..5 decimal digits worth at most 65535, and it ends the URI: anything after it
 * (a path, a query, a second colon) is an error rather than something silently ignored. Leading
 * zeros are decimal, never octal. strtoul is not used because it accepts signs and spaces. */
static int parse_port(const char *p, uint16_t *port)
{
    uint32_t v = 0;
    size_t n = 0;

    while (n < 6 && is_digit(p[n]))
        v = v * 10 + (uint32_t)(p[n++] - '0');
    if (n == 0 || n > 5 || p[n] != '\0' || v > 65535)
        return -EINVAL;
    *port = (uint16_t)v;
    return 0;
}

/* Interface names on Linux are at most IFNAMSIZ - 1 bytes. The kernel allows more characters
 * than these, but the names people give interfaces (eth0, enp3s0, br-lan, wg0.1) fit this set, and
 * a narrow set keeps '%', ']', '/' and spaces out of what we later hand to if_nametoindex. */
static bool zone_ok(const char *z, size_t n)
{
    if (n == 0 || n >= IFNAMSIZ)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum(z[i]) && z[i] != '-' && z[i] != '_' && z[i] != '.')
            return false;
    return true;
}

/* h holds n bytes from between the brackets (NUL-terminated): an IPv6 literal and an optional
 * "%zone". inet_pton does not know zones (RFC 4007), so the address is checked on a copy cut
 * at the '%'. */
static bool ipv6_literal_ok(const char *h, size_t n)
{
    char a[INET6_ADDRSTRLEN];
    struct in6_addr tmp;
    const char *pct = memchr(h, '%', n);
    size_t alen = pct ? (size_t)(pct - h) : n;

    if (alen == 0 || alen >= sizeof a)
        return false;
    if (pct && !zone_ok(pct + 1, n - alen - 1))
        return false;
    memcpy(a, h, alen);
    a[alen] = '\0';
    return inet_pton(AF_INET6, a, &tmp) == 1;
}

/* A DNS name as RFC 1123 allows in host names: labels of 1..63 letters, digits and '-', not
 * starting or ending with '-', joined by '.', at most 253 characters, with one optional trailing
 * '.' (the fully qualified spelling). h is NUL-terminated and n bytes long. */
static bool dns_name_ok(const char *h, size_t n)
{
    size_t label = 0;

    if (n > 1 && h[n - 1] == '.')
        n--; /* The root label: "example.com." is the same name. */
    if (n == 0 || n > DNS_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            label = 0;
        } else if (is_alnum(c) || c == '-') {
            if (c == '-' && label == 0)
                return false;
            if (++label > DNS_LABEL_MAX)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && h[n - 1] != '-';
}

/* An unbracketed host: "*", a dotted quad, or a DNS name. A host made only of digits and dots
 * must be a valid dotted quad, because getaddrinfo would otherwise hand "1.2.3" or "10.1" to
 * inet_aton's legacy forms and connect somewhere nobody wrote. inet_pton also refuses leading
 * zeros, which inet_aton would read as octal. */
static bool host_ok(const char *h, size_t n)
{
    bool numeric = true;
    struct in_addr tmp;

    if (n == 1 && h[0] == '*')
        return true;
    for (size_t i = 0; i < n && numeric; i++)
        numeric = is_digit(h[i]) || h[i] == '.';
    if (numeric)
        return inet_pton(AF_INET, h, &tmp) == 1;
    return dns_name_ok(h, n);
}

/* tcp://HOST:PORT or tcp://[V6%ZONE]:PORT (udp the same). Anything between "//" and the host,
 * such as "user@", fails the host's character set. */
static int parse_inet(const char *s, struct rill__uri *out)
{
    const char *p = s;
    size_t n;

    if (*p == '[') {
        p++;
        n = span_until(p, ']', RILL__HOST_MAX);
        if (n > RILL__HOST_MAX || p[n] != ']')
            return -EINVAL;
        memcpy(out->host, p, n);
        out->host[n] = '\0';
        if (!ipv6_literal_ok(out->host, n))
            return -EINVAL;
        p += n + 1;
    } else {
        /* The first ':' ends the host, so an unbracketed IPv6 literal leaves an empty host
         * ("::1:80") or a port with a ':' in it ("fe80::1:80"); both are rejected. */
        n = span_until(p, ':', RILL__HOST_MAX);
        if (n == 0 || n > RILL__HOST_MAX)
            return -EINVAL;
        memcpy(out->host, p, n);
        out->host[n] = '\0';
        if (!host_ok(out->host, n))
            return -EINVAL;
        p += n;
    }
    if (*p != ':')
        return -EINVAL;
    return parse_port(p + 1, &out->port);
}

/* unix:PATH or unix:@NAME. Paths may be relative and may hold spaces (file names do), but no
 * control characters: a newline or escape in a socket path is a configuration mistake, and it
 * would also travel into logs. The same rule keeps abstract names printable, which also means
 * they can hold no NUL, so path_len and strlen(path) always agree. */
static int parse_unix(const char *s, struct rill__uri *out)
{
    size_t n;

    if (*s == '@') {
        out->abstract = true;
        s++;
    }
    n = strnlen(s, RILL__PATH_MAX + 1);
    if (n == 0 || n > RILL__PATH_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (is_ctl(s[i]))
            return -EINVAL;
    memcpy(out->path, s, n);
    out->path[n] = '\0';
    out->path_len = (uint32_t)n;
    return 0;
}

/* "ping://" takes an optional local address literal: a dotted quad, or for ping6 a bracketed
 * IPv6 literal. Names are refused; the socket is local, so there is nothing to look up. */
static int parse_ping_host(const char *s, struct rill__uri *out)
{
    size_t n = strnlen(s, RILL__HOST_MAX + 1);
    if (n > RILL__HOST_MAX)
        return -EINVAL;
    if (n == 0)
        return 0;
    if (out->scheme == RILL__SCHEME_PING6) {
        if (s[0] != '[' || s[n - 1] != ']' || n < 3)
            return -EINVAL;
        s++;
        n -= 2;
    }
    for (size_t i = 0; i < n; i++)
        if (!(is_hex(s[i]) || s[i] == '.' || s[i] == ':'))
            return -EINVAL;
    memcpy(out->host, s, n);
    out->host[n] = '\0';
    return 0;
}

int rill__uri_parse(const char *uri, struct rill__uri *out)
{
    enum rill__scheme scheme;
    const char *rest;

    if (uri == NULL || out == NULL)
        return -EINVAL;
    rest = match_scheme(uri, &scheme);
    if (rest == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->scheme = scheme;
    switch (scheme) {
    case RILL__SCHEME_TCP:
    case RILL__SCHEME_UDP:
        return parse_inet(rest, out);
    case RILL__SCHEME_RAW:
        return strcmp(rest, "icmp") == 0 ? 0 : -EINVAL;
    case RILL__SCHEME_RAW6:
        return strcmp(rest, "icmpv6") == 0 ? 0 : -EINVAL;
    case RILL__SCHEME_PING:
    case RILL__SCHEME_PING6:
        return parse_ping_host(rest, out);
    default:
        return parse_unix(rest, out);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Resolution                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static int scheme_socktype(enum rill__scheme s)
{
    switch (s) {
    case RILL__SCHEME_TCP:
    case RILL__SCHEME_UNIX:
        return SOCK_STREAM;
    case RILL__SCHEME_UDP:
    case RILL__SCHEME_UNIX_DGRAM:
        return SOCK_DGRAM;
    case RILL__SCHEME_UNIX_SEQPACKET:
        return SOCK_SEQPACKET;
    case RILL__SCHEME_RAW:
    case RILL__SCHEME_RAW6:
        return SOCK_RAW;
    case RILL__SCHEME_PING:
    case RILL__SCHEME_PING6:
        return SOCK_DGRAM;
    }
    return -1;
}

/* Filesystem paths get a length that counts their NUL, which is what getsockname() reports back
 * for them. Abstract names are exactly the bytes given, after a leading NUL: the kernel compares
 * them by length, so one trailing byte more would be a different name. The uri may be
 * hand-built, so path_len is checked against the buffer instead of trusted. */
static int resolve_unix(const struct rill__uri *u, struct rill__addr *out)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    size_t n = u->path_len;

    if (n == 0 || n > RILL__PATH_MAX)
        return -EINVAL;
    if (!u->abstract && memchr(u->path, '\0', n) != NULL)
        return -EINVAL;
    sun->sun_family = AF_UNIX;
    if (u->abstract) {
        sun->sun_path[0] = '\0';
        memcpy(sun->sun_path + 1, u->path, n);
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else {
        memcpy(sun->sun_path, u->path, n);
        sun->sun_path[n] = '\0';
        out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    out->family = AF_UNIX;
    return 1;
}

/* An IPv6 zone is an interface name or its index. if_nametoindex asks the kernel, which is why
 * this happens here and not in the pure parser. */
static int zone_index(const char *zone, uint32_t *idx)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; is_digit(zone[i]) && v <= UINT32_MAX; i++)
        v = v * 10 + (uint64_t)(zone[i] - '0');
    if (i > 0 && zone[i] == '\0') {
        if (v == 0 || v > UINT32_MAX)
            return -EINVAL;
        *idx = (uint32_t)v;
        return 0;
    }
    *idx = if_nametoindex(zone);
    return *idx ? 0 : -ENOENT;
}

/* Numeric hosts never reach getaddrinfo: they cannot block, and they must work inside a fresh
 * network namespace or a sandbox with no resolver configuration at all. Returns 1 when host was
 * a literal and out is filled, 0 when it is a name, or a negative errno. */
static int resolve_numeric(const char *host, uint16_t port, struct rill__addr *out)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
    char a[INET6_ADDRSTRLEN];
    const char *pct = strchr(host, '%');
    size_t alen = pct ? (size_t)(pct - host) : strlen(host);

    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        out->family = AF_INET;
        out->len = sizeof *sin;
        return 1;
    }
    if (alen >= sizeof a)
        return 0;
    memcpy(a, host, alen);
    a[alen] = '\0';
    if (inet_pton(AF_INET6, a, &sin6->sin6_addr) != 1)
        return 0;
    if (pct) {
        uint32_t idx;
        int rc = zone_index(pct + 1, &idx);
        if (rc < 0)
            return rc;
        sin6->sin6_scope_id = idx;
    }
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    out->family = AF_INET6;
    out->len = sizeof *sin6;
    return 1;
}

/* The IPv6 wildcard "::" accepts IPv4 as well when the listener clears IPV6_V6ONLY (the Linux
 * default is net.ipv6.bindv6only = 0), so one socket serves both families. */
static int resolve_wildcard(uint16_t port, struct rill__addr *out)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;

    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = in6addr_any;
    sin6->sin6_port = htons(port);
    out->family = AF_INET6;
    out->len = sizeof *sin6;
    return 1;
}

static int gai_errno(int rc)
{
    switch (rc) {
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_FAMILY:
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -EAFNOSUPPORT;
    case EAI_SYSTEM:
        return errno > 0 ? -errno : -EIO;
    case EAI_SERVICE:
    case EAI_SOCKTYPE:
    case EAI_BADFLAGS:
        return -EINVAL;
    default: /* EAI_NONAME, EAI_NODATA, EAI_FAIL: the name does not resolve. */
        return -ENOENT;
    }
}

/* AI_ADDRCONFIG stays off: it drops every address family that has no non-loopback address, so
 * in a test's fresh network namespace (loopback only) "localhost" would resolve to nothing.
 * AI_NUMERICSERV because the port is always a number and service lookups read /etc/services.
 * getaddrinfo allocates with libc's malloc, outside rill_set_allocator; freeaddrinfo pairs it. */
static int resolve_name(const struct rill__uri *u, bool passive, int socktype,
                        struct rill__addr *out, int max)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    int n = 0, rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    snprintf(port, sizeof port, "%u", (unsigned)u->port);
    errno = 0;
    rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0)
        return gai_errno(rc);
    for (const struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        if (ai->ai_addrlen > sizeof out[n].ss)
            continue;
        memset(&out[n], 0, sizeof out[n]);
        memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
        out[n].family = ai->ai_family;
        out[n].socktype = socktype;
        out[n].len = ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    return n > 0 ? n : -EAFNOSUPPORT;
}

/* ICMP sockets: the local address is the wildcard of the family unless a literal was given.
 * Port 0 lets a ping socket's kernel pick its echo identifier. */
static int resolve_icmp(const struct rill__uri *u, struct rill__addr *out)
{
    bool v6 = u->scheme == RILL__SCHEME_RAW6 || u->scheme == RILL__SCHEME_PING6;
    if (memchr(u->host, '\0', sizeof u->host) == NULL)
        return -EINVAL;
    out->protocol = v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
    if (u->host[0] != '\0') {
        int rc = resolve_numeric(u->host, 0, out);
        if (rc <= 0 || out->family != (v6 ? AF_INET6 : AF_INET))
            return -EINVAL;
        return 1;
    }
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_any;
        out->len = sizeof *sin6;
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        out->len = sizeof *sin;
    }
    out->family = v6 ? AF_INET6 : AF_INET;
    return 1;
}

bool rill__uri_needs_lookup(const struct rill__uri *u)
{
    struct in_addr a4;
    if (!u || (u->scheme != RILL__SCHEME_TCP && u->scheme != RILL__SCHEME_UDP))
        return false;
    /* The parser lets a name hold only letters, digits, '-' and '.', so a ':' is IPv6. */
    return u->host[0] && strcmp(u->host, "*") != 0 && !strchr(u->host, ':') &&
           inet_pton(AF_INET, u->host, &a4) != 1;
}

int rill__uri_resolve(const struct rill__uri *u, bool passive, struct rill__addr *out, int max)
{
    int socktype, rc;

    if (u == NULL || out == NULL || max < 1)
        return -EINVAL;
    socktype = scheme_socktype(u->scheme);
    if (socktype < 0)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->socktype = socktype;
    if (u->scheme >= RILL__SCHEME_RAW)
        return resolve_icmp(u, out);
    if (u->scheme != RILL__SCHEME_TCP && u->scheme != RILL__SCHEME_UDP)
        return resolve_unix(u, out);

    /* A hand-built uri may lack the NUL the parser guarantees. */
    if (memchr(u->host, '\0', sizeof u->host) == NULL)
        return -EINVAL;
    if (u->host[0] == '\0' || strcmp(u->host, "*") == 0) {
        /* A client must name its peer; connecting to "::" only reaches this host by a kernel
         * accident, so a wildcard is refused rather than guessed at. */
        return passive ? resolve_wildcard(u->port, out) : -EINVAL;
    }
    rc = resolve_numeric(u->host, u->port, out);
    if (rc != 0)
        return rc;
    return resolve_name(u, passive, socktype, out, max);
}

int rill__addr_from_uri(const char *uri, bool passive, struct rill__addr *out)
{
    struct rill__uri u;
    int rc;

    if (out == NULL)
        return -EINVAL;
    rc = rill__uri_parse(uri, &u);
    if (rc < 0)
        return rc;
    rc = rill__uri_resolve(&u, passive, out, 1);
    return rc < 0 ? rc : 0;
}

int rill_uri_check(const char *uri, bool passive)
{
    struct rill__addr a;
    return rill__addr_from_uri(uri, passive, &a);
}

/* ------------------------------------------------------------------------------------------ */
/* Formatting                                                                                 */
/* ------------------------------------------------------------------------------------------ */

static const char *unix_scheme_name(int socktype)
{
    switch (socktype) {
    case SOCK_STREAM:
        return "unix:";
    case SOCK_SEQPACKET:
        return "unix+seqpacket:";
    case SOCK_DGRAM:
        return "unix+dgram:";
    }
    return NULL;
}

/* Writes the name bytes, escaping non-printable ones as \xNN: abstract names may hold any byte
 * (autobind names are five hex digits, but a peer may pick binary ones), and a log line must not
 * carry raw control characters. t has room for every name: see FORMAT_MAX. */
static size_t put_escaped(char *t, const unsigned char *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f) {
            t[o++] = (char)p[i];
        } else {
            t[o++] = '\\';
            t[o++] = 'x';
            t[o++] = hex[p[i] >> 4];
            t[o++] = hex[p[i] & 15];
        }
    }
    return o;
}

/* The kernel reports an unnamed socket (socketpair, unbound client) with a length of just the
 * family; it is written as a bare "unix:", which deliberately does not parse back. A length
 * larger than the structure (a caller passing its buffer size) is clamped. */
static int format_unix(const struct sockaddr_un *sun, socklen_t len, int socktype, char *t)
{
    const char *scheme = unix_scheme_name(socktype);
    size_t off = offsetof(struct sockaddr_un, sun_path);
    size_t n, o;

    if (scheme == NULL || len < off)
        return -EINVAL;
    if (len > sizeof *sun)
        len = sizeof *sun;
    n = len - off;
    o = strlen(scheme);
    memcpy(t, scheme, o);
    if (n > 0 && sun->sun_path[0] == '\0') {
        t[o++] = '@';
        o += put_escaped(t + o, (const unsigned char *)sun->sun_path + 1, n - 1);
    } else if (n > 0) {
        n = strnlen(sun->sun_path, n);
        o += put_escaped(t + o, (const unsigned char *)sun->sun_path, n);
    }
    t[o] = '\0';
    return (int)o;
}

/* A zone is written by name when the interface still exists, by number otherwise; both parse
 * back. */
static int format_inet6(const struct sockaddr_in6 *sin6, const char *scheme, char *t, size_t cap)
{
    char a[INET6_ADDRSTRLEN], zone[IF_NAMESIZE + 12] = "";
    uint32_t scope = sin6->sin6_scope_id;

    if (inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof a) == NULL)
        return -EINVAL;
    if (scope != 0) {
        char name[IF_NAMESIZE];
        if (if_indextoname(scope, name) != NULL)
            snprintf(zone, sizeof zone, "%%%s", name);
        else
            snprintf(zone, sizeof zone, "%%%u", (unsigned)scope);
    }
    return snprintf(t, cap, "%s[%s%s]:%u", scheme, a, zone, (unsigned)ntohs(sin6->sin6_port));
}

static int format_any(const struct sockaddr *sa, socklen_t len, int socktype, char *t, size_t cap)
{
    const char *scheme = socktype == SOCK_DGRAM ? "udp://" : "tcp://";
    bool inet_type = socktype == SOCK_STREAM || socktype == SOCK_DGRAM;

    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        char a[INET_ADDRSTRLEN];
        if (len < sizeof *sin || !inet_type)
            return -EINVAL;
        if (inet_ntop(AF_INET, &sin->sin_addr, a, sizeof a) == NULL)
            return -EINVAL;
        return snprintf(t, cap, "%s%s:%u", scheme, a, (unsigned)ntohs(sin->sin_port));
    }
    case AF_INET6:
        if (len < sizeof(struct sockaddr_in6) || !inet_type)
            return -EINVAL;
        return format_inet6((const struct sockaddr_in6 *)sa, scheme, t, cap);
    case AF_UNIX:
        return format_unix((const struct sockaddr_un *)sa, len, socktype, t);
    }
    return -EAFNOSUPPORT;
}

/* Everything is first written to a buffer that fits the longest form, then copied, so that
 * truncation is one rule in one place. */
int rill__addr_format(const struct sockaddr *sa, socklen_t len, int socktype, char *buf,
                      size_t cap)
{
    char t[FORMAT_MAX];
    int n;

    if (sa == NULL || buf == NULL || cap == 0 || len < sizeof(sa_family_t))
        return -EINVAL;
    n = format_any(sa, len, socktype & SOCKTYPE_MASK, t, sizeof t);
    if (n < 0)
        return n;
    if ((size_t)n >= cap)
        n = (int)(cap - 1);
    memcpy(buf, t, (size_t)n);
    buf[n] = '\0';
    return n;
}
