/* The client of example_udp_reverse_server: sends each argument as one request and prints each
 * answer on its own line, in order. UDP may lose a datagram, so a request without an answer
 * after 200 ms is sent again, up to 10 times.
 *
 *   example_udp_reverse_client udp://127.0.0.1:7002 hello world   prints "olleh" then "dlrow" */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rill.h"

struct session {
    char **req;
    int n, next, tries;
    rill_dgram *d;
    rill_timer *t;
    int status;
};

static void ask(struct session *s)
{
    struct iovec iov = {s->req[s->next], strlen(s->req[s->next])};
    int r = rill_dgram_sendto(s->d, &iov, 1, NULL, 0, NULL, NULL);
    if (r < 0 || ++s->tries > 10) {
        s->status = r < 0 ? r : -ETIMEDOUT;
        rill_loop_stop(rill_dgram_loop(s->d));
        return;
    }
    rill_timer_start(s->t, 200, 0);
}

static void on_timeout(rill_timer *t, void *ctx)
{
    (void)t;
    ask(ctx);
}

static void on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                        const struct sockaddr *from, socklen_t fromlen, uint32_t flags, void *ctx)
{
    (void)buf, (void)from, (void)fromlen, (void)flags;
    struct session *s = ctx;
    /* Answers carry no request id, so only one with the right length counts (a late answer to
     * an earlier retry of the same request is identical anyway). */
    if (s->next >= s->n || len != strlen(s->req[s->next]))
        return;
    printf("%.*s\n", (int)len, (const char *)data);
    rill_timer_stop(s->t);
    s->tries = 0;
    if (++s->next == s->n)
        rill_loop_stop(rill_dgram_loop(d));
    else
        ask(s);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s udp://HOST:PORT REQUEST...\n", argv[0]);
        return 2;
    }
    struct session s = {.req = argv + 2, .n = argc - 2};
    static const struct rill_dgram_handler h = {.on_datagram = on_datagram};
    /* Connected mode: requests need no address, and only the server's answers arrive. */
    struct rill_dgram_config cfg = {.handler = &h, .ctx = &s, .peer = argv[1],
                                    .max_datagram = 2048};
    rill_loop *l = NULL;
    int r = rill_loop_create(NULL, &l);
    if (r == 0)
        r = rill_dgram_open(l, NULL, &cfg, &s.d);
    if (r == 0)
        r = rill_timer_create(l, on_timeout, &s, &s.t);
    if (r == 0) {
        ask(&s);
        r = rill_loop_run(l);
    }
    if (r == 0)
        r = s.status;
    if (r < 0)
        fprintf(stderr, "%s: %s\n", argv[1], rill_strerror(r));
    rill_loop_destroy(l);
    return r < 0 ? 1 : 0;
}
