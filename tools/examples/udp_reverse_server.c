/* A UDP request/response server: each datagram is answered with its bytes in reverse order, sent
 * back to whoever sent it. Nothing is kept per client; the address comes with each request.
 *
 *   example_udp_reverse_server udp://127.0.0.1:7002
 *
 * Prints "listening udp://HOST:PORT" and runs until SIGINT or SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "rill.h"

static rill_loop *loop;

static void sent(rill_dgram *d, int status, void *ctx)
{
    (void)d, (void)status;
    rill_buf_release(ctx); /* the answer's buffer, kept until the kernel has taken it */
}

static void on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                        const struct sockaddr *from, socklen_t fromlen, uint32_t flags, void *ctx)
{
    (void)buf, (void)flags, (void)ctx;
    rill_buf *out;
    if (!from || rill_buf_lease(rill_dgram_loop(d), len ? len : 1, &out) < 0)
        return; /* UDP: a request we cannot answer is dropped; the client asks again */
    const char *p = data;
    char *q = rill_buf_data(out);
    for (size_t i = 0; i < len; i++)
        q[i] = p[len - 1 - i];
    struct iovec iov = {q, len};
    if (rill_dgram_sendto(d, &iov, 1, from, fromlen, sent, out) < 0)
        rill_buf_release(out);
}

static void on_signal(int sig)
{
    (void)sig;
    rill_loop_stop(loop);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s udp://HOST:PORT\n", argv[0]);
        return 2;
    }
    static const struct rill_dgram_handler h = {.on_datagram = on_datagram};
    struct rill_dgram_config cfg = {.handler = &h, .max_datagram = 2048};
    rill_dgram *d;
    int r = rill_loop_create(NULL, &loop);
    if (r == 0 && (r = rill_dgram_open(loop, argv[1], &cfg, &d)) < 0)
        rill_loop_destroy(loop);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], rill_strerror(r));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    const char *colon = strrchr(argv[1], ':');
    printf("listening %.*s:%d\n", (int)(colon - argv[1]), argv[1], rill_dgram_port(d));
    fflush(stdout);
    r = rill_loop_run(loop);
    rill_loop_destroy(loop);
    return r < 0 ? 1 : 0;
}
