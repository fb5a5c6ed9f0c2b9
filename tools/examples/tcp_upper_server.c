/* A TCP server that answers each line with the same line in upper case. TCP delivers bytes, not
 * lines: a line may arrive in pieces, and one read may hold several lines, so each connection
 * keeps the unfinished line until its newline comes. A line over 4 KiB is refused.
 *
 *   example_tcp_upper_server tcp://127.0.0.1:7001
 *
 * Prints "listening tcp://HOST:PORT" (the real port when 0 was asked) and runs until SIGINT or
 * SIGTERM. */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill.h"

#define LINE_MAX_BYTES 4096

struct line {
    size_t len;
    char buf[LINE_MAX_BYTES];
};

static rill_loop *loop;

static void on_open(rill_conn *c, void *ctx)
{
    (void)ctx;
    struct line *ln = calloc(1, sizeof *ln); /* per-connection state, freed in on_close */
    if (!ln) {
        rill_close(c);
        return;
    }
    rill_conn_set_ctx(c, ln);
}

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct line *ln = ctx;
    const char *p = data;
    for (size_t i = 0; i < len; i++) {
        if (ln->len == LINE_MAX_BYTES) {
            static const char err[] = "ERROR line too long\n";
            struct iovec iov = {(void *)err, sizeof err - 1};
            rill_send(c, &iov, 1, NULL, NULL);
            rill_shutdown(c); /* the error goes out, then FIN */
            return;
        }
        ln->buf[ln->len++] = (char)toupper((unsigned char)p[i]);
        if (p[i] != '\n')
            continue;
        /* A whole line: copy it into a buffer the engine keeps until it is sent. */
        rill_buf *out;
        if (rill_buf_lease(rill_conn_loop(c), ln->len, &out) < 0) {
            rill_close(c);
            return;
        }
        memcpy(rill_buf_data(out), ln->buf, ln->len);
        struct rill_bufslice s = {out, 0, (uint32_t)ln->len};
        int r = rill_send_bufs(c, &s, 1, NULL, NULL);
        rill_buf_release(out);
        ln->len = 0;
        if (r < 0) {
            rill_close(c);
            return;
        }
    }
}

static void on_close(rill_conn *c, int status, void *ctx)
{
    (void)c, (void)status;
    free(ctx);
}

static void on_signal(int sig)
{
    (void)sig;
    rill_loop_stop(loop);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s tcp://HOST:PORT\n", argv[0]);
        return 2;
    }
    static const struct rill_conn_handler h = {.on_open = on_open, .on_data = on_data,
                                               .on_close = on_close};
    struct rill_listen_config cfg = {.handler = &h};
    rill_listener *ls;
    int r = rill_loop_create(NULL, &loop);
    if (r == 0 && (r = rill_listen(loop, argv[1], &cfg, &ls)) < 0)
        rill_loop_destroy(loop);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", argv[1], rill_strerror(r));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    const char *colon = strrchr(argv[1], ':');
    printf("listening %.*s:%d\n", (int)(colon - argv[1]), argv[1], rill_listener_port(ls));
    fflush(stdout);
    r = rill_loop_run(loop);
    rill_loop_destroy(loop);
    return r < 0 ? 1 : 0;
}
