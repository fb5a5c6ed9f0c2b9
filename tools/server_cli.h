/* Command-line pieces shared by the servers built on rill_engine (rill-echo, rill-http). */
#ifndef RILL_TOOLS_SERVER_CLI_H
#define RILL_TOOLS_SERVER_CLI_H

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill.h"

/* Parses a --backend value: auto, epoll, uring or io_uring. Returns 0, or -1 for anything else. */
static inline int server_cli_backend(const char *name, rill_backend *out)
{
    if (!strcmp(name, "epoll"))
        *out = RILL_BACKEND_EPOLL;
    else if (!strcmp(name, "uring") || !strcmp(name, "io_uring"))
        *out = RILL_BACKEND_URING;
    else if (!strcmp(name, "auto"))
        *out = RILL_BACKEND_AUTO;
    else
        return -1;
    return 0;
}

/* Parses a timeout in milliseconds: a whole number 0 .. 86 400 000 (a day; 0: off) and nothing
 * else. Returns 0, or -1 with a line on stderr naming the tool, the option and the value. */
static inline int server_cli_ms(const char *tool, const char *opt, const char *arg, uint32_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (!*arg || *end || errno || v < 0 || v > 86400000LL) {
        fprintf(stderr, "%s: %s takes milliseconds, a whole number 0..86400000 (0: off), not '%s'\n",
                tool, opt, arg);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* Checks a --listen address before anything starts (rill_uri_check): 0, or -1 with one line on
 * stderr saying what is wrong with it. */
static inline int server_cli_check_listen(const char *tool, const char *uri)
{
    int r = rill_uri_check(uri, true);
    if (r == 0)
        return 0;
    if (r == -ENOENT || r == -EAGAIN) {
        /* The host: after "://", inside brackets or up to the port's colon. */
        const char *h = strstr(uri, "://");
        h = h ? h + 3 : uri;
        const char *e = *h == '[' ? strchr(++h, ']') : strrchr(h, ':');
        int n = e ? (int)(e - h) : (int)strlen(h);
        fprintf(stderr, "%s: --listen '%s': cannot resolve host %.*s: %s\n", tool, uri, n, h,
                r == -ENOENT ? "no such name" : "the resolver failed for now; try again");
    } else {
        fprintf(stderr,
                "%s: --listen '%s': not an address to listen on (tcp://HOST:PORT, udp://HOST:PORT "
                "with PORT 0..65535, unix:/PATH of at most 107 bytes, unix:@NAME, "
                "unix+seqpacket:/PATH, unix+dgram:/PATH)\n",
                tool, uri);
    }
    return -1;
}

/* Makes SIGINT and SIGTERM something the main thread waits for (sigwait on *sigs): blocked here,
 * so the loops' threads, created later, inherit the blocked mask. Their default dispositions
 * come back first: a shell without job control starts background jobs with SIGINT ignored, and
 * an ignored signal is discarded even while blocked. */
static inline void server_cli_block_stop_signals(sigset_t *sigs)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(sigs);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
}

#endif
