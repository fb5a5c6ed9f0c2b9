/* libFuzzer target for rill__uri_parse.
 *
 * The input is copied into a heap buffer of exactly its length plus the NUL, so AddressSanitizer
 * reports any read past the terminator. Inputs longer than MAX_INPUT are cut: every accepted URI
 * is far shorter, and the parser must reject the rest after a bounded look. When parsing
 * succeeds, the fields must satisfy what addr.h promises; a violation aborts, which the fuzzer
 * reports as a crash with the input that caused it.
 *
 * Build: clang -g -fsanitize=fuzzer,address,undefined -Iinclude -Iengine tests/fuzz_addr.c
 *        engine/addr.c -o fuzz_addr */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"

#define MAX_INPUT 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool has_nul_within(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static void check_inet(const struct rill__uri *u, const char *in)
{
    size_t n;

    check(has_nul_within(u->host, sizeof u->host));
    n = strlen(u->host);
    check(n > 0 && n <= RILL__HOST_MAX);
    check(u->port <= 65535);
    /* The host came from the input, so it must occur in it. */
    check(strstr(in, u->host) != NULL);
    check(!u->abstract && u->path_len == 0);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)u->host[i];
        check(c > 0x20 && c < 0x7f);
    }
}

static void check_unix(const struct rill__uri *u, const char *in)
{
    check(u->path_len > 0 && u->path_len <= RILL__PATH_MAX);
    check(u->path[u->path_len] == '\0');
    check(strlen(u->path) == u->path_len);
    check(u->port == 0 && u->host[0] == '\0');
    /* The path is the input's tail, after the scheme and an optional '@'. */
    check(strlen(in) >= u->path_len);
    check(strcmp(in + strlen(in) - u->path_len, u->path) == 0);
    if (u->abstract)
        check(in[strlen(in) - u->path_len - 1] == '@');
}

/* raw:// and raw6:// name only a protocol; ping:// and ping6:// an optional address literal. */
static void check_icmp(const struct rill__uri *u, const char *in)
{
    check(has_nul_within(u->host, sizeof u->host));
    check(u->port == 0 && u->path_len == 0 && !u->abstract);
    size_t n = strlen(u->host);
    if (u->scheme == RILL__SCHEME_RAW || u->scheme == RILL__SCHEME_RAW6)
        check(n == 0);
    if (n)
        check(strstr(in, u->host) != NULL);
    for (size_t i = 0; i < n; i++)
        check(strchr("0123456789abcdefABCDEF.:", u->host[i]) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rill__uri u;
    char *in;
    int rc;

    if (size > MAX_INPUT)
        size = MAX_INPUT;
    in = malloc(size + 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';

    memset(&u, 0xa5, sizeof u); /* garbage, so unset fields are noticed */
    rc = rill__uri_parse(in, &u);
    check(rc == 0 || rc == -EINVAL);
    if (rc == 0) {
        switch (u.scheme) {
        case RILL__SCHEME_TCP:
        case RILL__SCHEME_UDP:
            check_inet(&u, in);
            break;
        case RILL__SCHEME_UNIX:
        case RILL__SCHEME_UNIX_SEQPACKET:
        case RILL__SCHEME_UNIX_DGRAM:
            check_unix(&u, in);
            break;
        case RILL__SCHEME_RAW:
        case RILL__SCHEME_RAW6:
        case RILL__SCHEME_PING:
        case RILL__SCHEME_PING6:
            check_icmp(&u, in);
            break;
        default:
            abort();
        }
    }
    free(in);
    return 0;
}
