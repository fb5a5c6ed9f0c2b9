/* Address strings: parsing (valid and malformed), resolution without the network, formatting and
 * round trips through the kernel's own view of a bound socket. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "rill.h"

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)

/* ------------------------------------------------------------------------------------------ */
/* Parsing: accepted                                                                          */
/* ------------------------------------------------------------------------------------------ */

/* Criterion runs each test in a re-executed copy of this program, where a pointer to a string
 * literal of the parent (under PIE and ASLR) points nowhere; parameters therefore hold their
 * strings by value. An empty host means a unix case. */
struct good {
    char uri[48];
    enum rill__scheme scheme;
    char host[24]; /* tcp/udp */
    int port;
    char path[16]; /* unix */
    bool abstract;
};

struct str {
    char s[48];
};

ParameterizedTestParameters(addr_parse, accepts)
{
    static struct good cases[] = {
        {"tcp://127.0.0.1:8080", RILL__SCHEME_TCP, "127.0.0.1", 8080, "", false},
        {"tcp://[::1]:8080", RILL__SCHEME_TCP, "::1", 8080, "", false},
        {"tcp://localhost:0", RILL__SCHEME_TCP, "localhost", 0, "", false},
        {"tcp://[fe80::1%lo]:1", RILL__SCHEME_TCP, "fe80::1%lo", 1, "", false},
        {"tcp://[fe80::1%2]:1", RILL__SCHEME_TCP, "fe80::1%2", 1, "", false},
        {"tcp://*:8080", RILL__SCHEME_TCP, "*", 8080, "", false},
        {"tcp://0.0.0.0:65535", RILL__SCHEME_TCP, "0.0.0.0", 65535, "", false},
        {"tcp://example.com:443", RILL__SCHEME_TCP, "example.com", 443, "", false},
        {"tcp://example.com.:443", RILL__SCHEME_TCP, "example.com.", 443, "", false},
        {"tcp://a-b.c-d.e:1", RILL__SCHEME_TCP, "a-b.c-d.e", 1, "", false},
        {"tcp://3f4e5a6b7c8d:1", RILL__SCHEME_TCP, "3f4e5a6b7c8d", 1, "", false},
        {"tcp://1.2.3.4a:1", RILL__SCHEME_TCP, "1.2.3.4a", 1, "", false},
        {"tcp://h:00080", RILL__SCHEME_TCP, "h", 80, "", false},
        {"tcp://[::ffff:1.2.3.4]:9", RILL__SCHEME_TCP, "::ffff:1.2.3.4", 9, "", false},
        {"udp://[::1]:53", RILL__SCHEME_UDP, "::1", 53, "", false},
        {"udp://10.0.0.1:5353", RILL__SCHEME_UDP, "10.0.0.1", 5353, "", false},
        {"unix:/tmp/x", RILL__SCHEME_UNIX, "", 0, "/tmp/x", false},
        {"unix:rel/sock", RILL__SCHEME_UNIX, "", 0, "rel/sock", false},
        {"unix:/with space", RILL__SCHEME_UNIX, "", 0, "/with space", false},
        {"unix:@abc", RILL__SCHEME_UNIX, "", 0, "abc", true},
        {"unix:@@", RILL__SCHEME_UNIX, "", 0, "@", true},
        {"unix+seqpacket:/p", RILL__SCHEME_UNIX_SEQPACKET, "", 0, "/p", false},
        {"unix+seqpacket:@sp", RILL__SCHEME_UNIX_SEQPACKET, "", 0, "sp", true},
        {"unix+dgram:/p", RILL__SCHEME_UNIX_DGRAM, "", 0, "/p", false},
    };
    return cr_make_param_array(struct good, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct good *g, addr_parse, accepts)
{
    struct rill__uri u;

    cr_assert_eq(rill__uri_parse(g->uri, &u), 0, "%s should parse", g->uri);
    cr_expect_eq(u.scheme, g->scheme, "%s", g->uri);
    if (g->host[0] != '\0') {
        cr_expect_str_eq(u.host, g->host, "%s", g->uri);
        cr_expect_eq(u.port, g->port, "%s", g->uri);
    } else {
        cr_expect_str_eq(u.path, g->path, "%s", g->uri);
        cr_expect_eq(u.path_len, strlen(g->path), "%s", g->uri);
        cr_expect_eq(u.abstract, g->abstract, "%s", g->uri);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing: rejected                                                                          */
/* ------------------------------------------------------------------------------------------ */

ParameterizedTestParameters(addr_parse, rejects)
{
    static struct str cases[] = {
        {""},
        {"tcp://"},
        {"tcp:/1.2.3.4:1"},
        {"TCP://1.2.3.4:1"},
        {"tcp://1.2.3.4"},
        {"tcp://1.2.3.4:"},
        {"tcp://1.2.3.4:65536"},
        {"tcp://1.2.3.4:99999"},
        {"tcp://1.2.3.4:123456"},
        {"tcp://1.2.3.4:-1"},
        {"tcp://1.2.3.4:+1"},
        {"tcp://1.2.3.4: 1"},
        {"tcp://1.2.3.4:1 "},
        {"tcp://1.2.3.4:0x10"},
        {"tcp://:80"},
        {"tcp://::1:80"},
        {"tcp://fe80::1:80"},
        {"tcp://[::1]80"},
        {"tcp://[::1]"},
        {"tcp://[::1]:"},
        {"tcp://[::1"},
        {"tcp://[::1:80"},
        {"tcp://[]:80"},
        {"tcp://[1.2.3.4]:80"},
        {"tcp://[::1%]:80"},
        {"tcp://[::1%a/b]:80"},
        {"tcp://[::1%0123456789abcdef]:80"},
        {"tcp://[%lo]:80"},
        {"tcp://[*]:80"},
        {"tcp://[::1]]:80"},
        {"tcp://[::1]:80]"},
        {"tcp://[example.com]:80"},
        {"tcp://256.1.1.1:1"},
        {"tcp://1.2.3:1"},
        {"tcp://1.2.3.4.5:1"},
        {"tcp://01.2.3.4:1"},
        {"tcp://10:1"},
        {"tcp://1.2.3.4.:1"},
        {"tcp://**:1"},
        {"tcp://*.example.com:1"},
        {"ftp://x:1"},
        {"http://x:1"},
        {"tcp://a b:1"},
        {"tcp:// a:1"},
        {"tcp://a_b:1"},
        {"tcp://user@host:1"},
        {"tcp://user:pw@host:1"},
        {"tcp://-a:1"},
        {"tcp://a-:1"},
        {"tcp://a.-b:1"},
        {"tcp://a..b:1"},
        {"tcp://.a:1"},
        {"tcp://.:1"},
        {"tcp://a..:1"},
        {"tcp://1.2.3.4:80/x"},
        {"tcp://1.2.3.4:80?q"},
        {"tcp://1.2.3.4:80#f"},
        {"tcp://1.2.3.4:80:81"},
        {"tcp://h\t:1"},
        {"tcp://h\n:1"},
        {"tcp://h:1\n"},
        {"tcp://h\x7f:1"},
        {"tcp://h\xc3\xa9:1"},
        {"udp://"},
        {"udp://1.2.3.4"},
        {"unix"},
        {"unix:"},
        {"unix:@"},
        {"unix:/a\nb"},
        {"unix:/a\tb"},
        {"unix:@a\x01"},
        {"unix+seqpacket:"},
        {"unix+dgram:"},
        {"unix+stream:/p"},
        {"unix+seqpacket/p"},
    };
    return cr_make_param_array(struct str, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct str *uri, addr_parse, rejects)
{
    struct rill__uri u;

    cr_expect_eq(rill__uri_parse(uri->s, &u), -EINVAL, "\"%s\" should be rejected", uri->s);
}

Test(addr_parse, null_arguments)
{
    struct rill__uri u;

    cr_expect_eq(rill__uri_parse(NULL, &u), -EINVAL);
    cr_expect_eq(rill__uri_parse("tcp://1.2.3.4:1", NULL), -EINVAL);
}

/* Builds "prefix" + n copies of c into buf. */
static const char *repeat(char *buf, const char *prefix, char c, size_t n, const char *suffix)
{
    size_t p = strlen(prefix);

    memcpy(buf, prefix, p);
    memset(buf + p, c, n);
    strcpy(buf + p + n, suffix);
    return buf;
}

Test(addr_parse, unix_path_length_limit)
{
    char buf[512];
    struct rill__uri u;

    cr_expect_eq(rill__uri_parse(repeat(buf, "unix:/", 'a', RILL__PATH_MAX - 1, ""), &u), 0);
    cr_expect_eq(u.path_len, RILL__PATH_MAX);
    cr_expect_eq(strlen(u.path), RILL__PATH_MAX);
    cr_expect_eq(rill__uri_parse(repeat(buf, "unix:/", 'a', RILL__PATH_MAX, ""), &u), -EINVAL);
    cr_expect_eq(rill__uri_parse(repeat(buf, "unix:@", 'a', RILL__PATH_MAX, ""), &u), 0);
    cr_expect_eq(u.path_len, RILL__PATH_MAX);
    cr_expect(u.abstract);
    cr_expect_eq(rill__uri_parse(repeat(buf, "unix:@", 'a', RILL__PATH_MAX + 1, ""), &u),
                 -EINVAL);
    cr_expect_eq(rill__uri_parse(repeat(buf, "unix+dgram:", 'a', 300, ""), &u), -EINVAL);
}

Test(addr_parse, dns_label_length_limit)
{
    char buf[512];
    struct rill__uri u;

    cr_expect_eq(rill__uri_parse(repeat(buf, "tcp://", 'a', 63, ".com:1"), &u), 0);
    cr_expect_eq(rill__uri_parse(repeat(buf, "tcp://", 'a', 64, ".com:1"), &u), -EINVAL);
    cr_expect_eq(rill__uri_parse(repeat(buf, "tcp://x.", 'a', 64, ":1"), &u), -EINVAL);
}

/* 253 characters is the longest name; it is built from 63-byte labels. */
Test(addr_parse, dns_name_length_limit)
{
    char name[300], buf[400];
    struct rill__uri u;
    size_t n = 0;

    while (n < 253) {
        size_t label = 253 - n > 63 ? 63 : 253 - n;
        memset(name + n, 'a', label);
        n += label;
        if (n < 253)
            name[n++] = '.';
    }
    name[253] = '\0';
    cr_assert_eq(strlen(name), 253);
    snprintf(buf, sizeof buf, "tcp://%s:1", name);
    cr_expect_eq(rill__uri_parse(buf, &u), 0);
    snprintf(buf, sizeof buf, "tcp://%s.:1", name);
    cr_expect_eq(rill__uri_parse(buf, &u), 0, "a trailing dot does not count");
    snprintf(buf, sizeof buf, "tcp://%sb:1", name);
    cr_expect_eq(rill__uri_parse(buf, &u), -EINVAL);
    cr_expect_eq(rill__uri_parse(repeat(buf, "tcp://", 'a', 350, ":1"), &u), -EINVAL);
    cr_expect_eq(rill__uri_parse(repeat(buf, "tcp://[", ':', 350, "]:1"), &u), -EINVAL);
}

/* Every control character, in host and in path, is refused. */
Test(addr_parse, control_characters)
{
    char buf[64];
    struct rill__uri u;

    for (int c = 1; c < 0x20; c++) {
        snprintf(buf, sizeof buf, "tcp://a%cb:1", c);
        cr_expect_eq(rill__uri_parse(buf, &u), -EINVAL, "host with byte %#x", c);
        snprintf(buf, sizeof buf, "unix:/a%cb", c);
        cr_expect_eq(rill__uri_parse(buf, &u), -EINVAL, "path with byte %#x", c);
        snprintf(buf, sizeof buf, "unix:@a%cb", c);
        cr_expect_eq(rill__uri_parse(buf, &u), -EINVAL, "abstract name with byte %#x", c);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Resolution                                                                                 */
/* ------------------------------------------------------------------------------------------ */

Test(addr_resolve, numeric_ipv4)
{
    struct rill__addr a;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;

    cr_assert_eq(rill__addr_from_uri("tcp://127.0.0.1:8080", false, &a), 0);
    cr_expect_eq(a.family, AF_INET);
    cr_expect_eq(a.socktype, SOCK_STREAM);
    cr_expect_eq(a.len, sizeof(struct sockaddr_in));
    cr_expect_eq(sin->sin_family, AF_INET);
    cr_expect_eq(ntohs(sin->sin_port), 8080);
    cr_expect_eq(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
}

Test(addr_resolve, numeric_ipv6)
{
    struct rill__addr a;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;

    cr_assert_eq(rill__addr_from_uri("udp://[::1]:53", false, &a), 0);
    cr_expect_eq(a.family, AF_INET6);
    cr_expect_eq(a.socktype, SOCK_DGRAM);
    cr_expect_eq(a.len, sizeof(struct sockaddr_in6));
    cr_expect_eq(ntohs(sin6->sin6_port), 53);
    cr_expect(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    cr_expect_eq(sin6->sin6_scope_id, 0);
}

/* "lo" exists in every network namespace, so a zone naming it always resolves. */
Test(addr_resolve, ipv6_zone)
{
    struct rill__addr a;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;

    cr_assert_eq(rill__addr_from_uri("tcp://[fe80::1%lo]:1", false, &a), 0);
    cr_expect_eq(sin6->sin6_scope_id, if_nametoindex("lo"));
    cr_assert_eq(rill__addr_from_uri("tcp://[fe80::1%7]:1", false, &a), 0);
    cr_expect_eq(sin6->sin6_scope_id, 7);
    cr_expect_eq(rill__addr_from_uri("tcp://[fe80::1%nosuchif0]:1", false, &a), -ENOENT);
}

Test(addr_resolve, wildcard)
{
    struct rill__addr a;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;

    cr_assert_eq(rill__addr_from_uri("tcp://*:8080", true, &a), 0);
    cr_expect_eq(a.family, AF_INET6);
    cr_expect_eq(a.len, sizeof(struct sockaddr_in6));
    cr_expect(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
    cr_expect_eq(ntohs(sin6->sin6_port), 8080);
    cr_expect_eq(rill__addr_from_uri("tcp://*:8080", false, &a), -EINVAL,
                 "a client cannot connect to a wildcard");
}

Test(addr_resolve, localhost)
{
    struct rill__uri u;
    struct rill__addr a[8];
    int n;

    cr_assert_eq(rill__uri_parse("tcp://localhost:4242", &u), 0);
    n = rill__uri_resolve(&u, false, a, 8);
    if (n == -ENOENT || n == -EAGAIN || n == -EAFNOSUPPORT)
        cr_skip_test("localhost does not resolve on this machine (%d)", n);
    cr_assert_gt(n, 0);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(a[i].socktype, SOCK_STREAM);
        if (a[i].family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)&a[i].ss;
            cr_expect_eq(a[i].len, sizeof *sin);
            cr_expect_eq(ntohs(sin->sin_port), 4242);
        } else {
            const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a[i].ss;
            cr_expect_eq(a[i].family, AF_INET6);
            cr_expect_eq(a[i].len, sizeof *sin6);
            cr_expect_eq(ntohs(sin6->sin6_port), 4242);
        }
    }
    cr_expect_eq(rill__uri_resolve(&u, false, a, 1), 1, "max bounds the count");
}

Test(addr_resolve, unix_lengths_and_types)
{
    struct rill__addr a;
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&a.ss;

    cr_assert_eq(rill__addr_from_uri("unix:/tmp/x", true, &a), 0);
    cr_expect_eq(a.family, AF_UNIX);
    cr_expect_eq(a.socktype, SOCK_STREAM);
    cr_expect_eq(a.len, SUN_OFF + strlen("/tmp/x") + 1);
    cr_expect_str_eq(sun->sun_path, "/tmp/x");

    cr_assert_eq(rill__addr_from_uri("unix:@abc", true, &a), 0);
    cr_expect_eq(a.len, SUN_OFF + 1 + 3);
    cr_expect_eq(sun->sun_path[0], '\0');
    cr_expect_eq(memcmp(sun->sun_path + 1, "abc", 3), 0);

    cr_assert_eq(rill__addr_from_uri("unix+seqpacket:/p", true, &a), 0);
    cr_expect_eq(a.socktype, SOCK_SEQPACKET);
    cr_assert_eq(rill__addr_from_uri("unix+dgram:/p", true, &a), 0);
    cr_expect_eq(a.socktype, SOCK_DGRAM);
}

Test(addr_resolve, longest_unix_names_fit)
{
    char buf[256];
    struct rill__addr a;

    memcpy(buf, "unix:@", 6);
    memset(buf + 6, 'n', RILL__PATH_MAX);
    buf[6 + RILL__PATH_MAX] = '\0';
    cr_assert_eq(rill__addr_from_uri(buf, true, &a), 0);
    cr_expect_eq(a.len, sizeof(struct sockaddr_un));
    buf[5] = '/';
    buf[5 + RILL__PATH_MAX] = '\0';
    cr_assert_eq(rill__addr_from_uri(buf, true, &a), 0);
    cr_expect_eq(a.len, sizeof(struct sockaddr_un));
}

Test(addr_resolve, bad_arguments)
{
    struct rill__uri u;
    struct rill__addr a;

    cr_assert_eq(rill__uri_parse("tcp://1.2.3.4:1", &u), 0);
    cr_expect_eq(rill__uri_resolve(NULL, false, &a, 1), -EINVAL);
    cr_expect_eq(rill__uri_resolve(&u, false, NULL, 1), -EINVAL);
    cr_expect_eq(rill__uri_resolve(&u, false, &a, 0), -EINVAL);
    cr_expect_eq(rill__addr_from_uri("tcp://1.2.3.4", false, &a), -EINVAL);
    cr_expect_eq(rill__addr_from_uri(NULL, false, &a), -EINVAL);
    cr_expect_eq(rill__addr_from_uri("tcp://1.2.3.4:1", false, NULL), -EINVAL);

    /* Hand-built uris are checked, not trusted. */
    memset(&u, 0, sizeof u);
    u.scheme = RILL__SCHEME_UNIX;
    u.path_len = RILL__PATH_MAX + 1;
    cr_expect_eq(rill__uri_resolve(&u, true, &a, 1), -EINVAL);
    u.path_len = 0;
    cr_expect_eq(rill__uri_resolve(&u, true, &a, 1), -EINVAL);
    u.path_len = 3; /* path is all NUL: not a filesystem path */
    cr_expect_eq(rill__uri_resolve(&u, true, &a, 1), -EINVAL);
    u.scheme = 99;
    cr_expect_eq(rill__uri_resolve(&u, true, &a, 1), -EINVAL);
    memset(&u, 'a', sizeof u);
    u.scheme = RILL__SCHEME_TCP;
    cr_expect_eq(rill__uri_resolve(&u, true, &a, 1), -EINVAL, "host without a NUL");
}

/* ------------------------------------------------------------------------------------------ */
/* Formatting                                                                                 */
/* ------------------------------------------------------------------------------------------ */

ParameterizedTestParameters(addr_format, round_trips)
{
    static struct str cases[] = {
        {"tcp://127.0.0.1:80"},    {"tcp://[::1]:80"},      {"udp://10.1.2.3:53"},
        {"udp://[2001:db8::1]:0"}, {"tcp://0.0.0.0:65535"}, {"tcp://[fe80::1%lo]:22"},
        {"unix:/tmp/x"},           {"unix:@abc"},           {"unix+seqpacket:/p"},
        {"unix+seqpacket:@q"},     {"unix+dgram:/p"},       {"unix:rel"},
    };
    return cr_make_param_array(struct str, cases, sizeof cases / sizeof cases[0]);
}

ParameterizedTest(struct str *uri, addr_format, round_trips)
{
    struct rill__addr a;
    char buf[256];
    int n;

    cr_assert_eq(rill__addr_from_uri(uri->s, true, &a), 0, "%s", uri->s);
    n = rill__addr_format((struct sockaddr *)&a.ss, a.len, a.socktype, buf, sizeof buf);
    cr_expect_eq(n, (int)strlen(uri->s), "%s -> %s", uri->s, buf);
    cr_expect_str_eq(buf, uri->s);
}

Test(addr_format, truncates_and_checks)
{
    struct rill__addr a;
    char buf[8];

    cr_assert_eq(rill__addr_from_uri("tcp://127.0.0.1:80", false, &a), 0);
    cr_expect_eq(rill__addr_format((struct sockaddr *)&a.ss, a.len, SOCK_STREAM, buf, sizeof buf),
                 7);
    cr_expect_str_eq(buf, "tcp://1");
    cr_expect_eq(rill__addr_format((struct sockaddr *)&a.ss, a.len, SOCK_STREAM, buf, 1), 0);
    cr_expect_str_eq(buf, "");
    cr_expect_eq(rill__addr_format((struct sockaddr *)&a.ss, a.len, SOCK_STREAM, buf, 0),
                 -EINVAL);
    cr_expect_eq(rill__addr_format(NULL, a.len, SOCK_STREAM, buf, sizeof buf), -EINVAL);
    cr_expect_eq(rill__addr_format((struct sockaddr *)&a.ss, a.len, SOCK_STREAM, NULL, 8),
                 -EINVAL);
    cr_expect_eq(rill__addr_format((struct sockaddr *)&a.ss, 4, SOCK_STREAM, buf, sizeof buf),
                 -EINVAL, "too short for sockaddr_in");
    cr_expect_eq(
        rill__addr_format((struct sockaddr *)&a.ss, a.len, SOCK_SEQPACKET, buf, sizeof buf),
        -EINVAL, "no scheme for inet seqpacket");
    a.ss.ss_family = AF_PACKET;
    cr_expect_eq(rill__addr_format((struct sockaddr *)&a.ss, a.len, SOCK_STREAM, buf, sizeof buf),
                 -EAFNOSUPPORT);
}

Test(addr_format, socktype_flags_are_ignored)
{
    struct rill__addr a;
    char buf[64];

    cr_assert_eq(rill__addr_from_uri("udp://1.2.3.4:5", false, &a), 0);
    rill__addr_format((struct sockaddr *)&a.ss, a.len, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      buf, sizeof buf);
    cr_expect_str_eq(buf, "udp://1.2.3.4:5");
}

Test(addr_format, unix_edge_cases)
{
    struct sockaddr_un sun;
    char buf[256];

    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    cr_expect_eq(rill__addr_format((struct sockaddr *)&sun, SUN_OFF, SOCK_STREAM, buf, sizeof buf),
                 5);
    cr_expect_str_eq(buf, "unix:", "an unnamed socket");

    memcpy(sun.sun_path, "\0a\nb\xff", 5);
    rill__addr_format((struct sockaddr *)&sun, SUN_OFF + 5, SOCK_DGRAM, buf, sizeof buf);
    cr_expect_str_eq(buf, "unix+dgram:@a\\x0ab\\xff");

    /* A full-length path without a NUL, and a caller passing a length larger than the struct. */
    memset(sun.sun_path, 'p', sizeof sun.sun_path);
    rill__addr_format((struct sockaddr *)&sun, sizeof sun + 20, SOCK_STREAM, buf, sizeof buf);
    cr_expect_eq(strlen(buf), 5 + sizeof sun.sun_path);
}

/* The kernel's own report of a bound socket formats back to what was asked for. */
Test(addr_format, kernel_round_trip)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct rill__addr a;
    char want[64], buf[64];
    int fd;

    snprintf(want, sizeof want, "unix:@rill-test-addr-%d", (int)getpid());
    cr_assert_eq(rill__addr_from_uri(want, true, &a), 0);
    fd = socket(a.family, a.socktype, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a.ss, a.len), 0, "bind: %s", strerror(errno));
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    cr_expect_eq(len, a.len);
    rill__addr_format((struct sockaddr *)&ss, len, a.socktype, buf, sizeof buf);
    cr_expect_str_eq(buf, want);
    close(fd);

    cr_assert_eq(rill__addr_from_uri("tcp://127.0.0.1:0", true, &a), 0);
    fd = socket(a.family, a.socktype, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a.ss, a.len), 0, "bind: %s", strerror(errno));
    len = sizeof ss;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    snprintf(want, sizeof want, "tcp://127.0.0.1:%u",
             (unsigned)ntohs(((struct sockaddr_in *)&ss)->sin_port));
    rill__addr_format((struct sockaddr *)&ss, len, SOCK_STREAM, buf, sizeof buf);
    cr_expect_str_eq(buf, want);
    close(fd);
}

Test(uri_check, public_check_without_opening)
{
    cr_expect_eq(rill_uri_check("tcp://127.0.0.1:0", true), 0);
    cr_expect_eq(rill_uri_check("tcp://[::1]:7000", false), 0);
    cr_expect_eq(rill_uri_check("unix:@rill-check", true), 0);
    cr_expect_eq(rill_uri_check("udp://localhost:53", false), 0, "/etc/hosts names resolve");
    cr_expect_eq(rill_uri_check("tcp://127.0.0.1:70000", true), -EINVAL);
    cr_expect_eq(rill_uri_check("tcp://[::1", true), -EINVAL);
    cr_expect_eq(rill_uri_check("bogus://x", true), -EINVAL);
    cr_expect_eq(rill_uri_check(NULL, true), -EINVAL);
    cr_expect_eq(rill_uri_check("tcp://*:80", false), -EINVAL, "a wildcard cannot be connected to");
    cr_expect_eq(rill_uri_check("tcp://nonexistent.invalid:80", false), -ENOENT);
}
