/* A concurrent TCP server: any number of clients at once, each with its own running total. A
 * client sends numbers (one per line, in any pieces), then half-closes its side; the server
 * answers "sum N count K" and closes. No thread per client: one loop serves them all, and each
 * connection's state lives in its context.
 *
 *   example_tcp_sum_server tcp://127.0.0.1:7003
 *   printf '1\n2\n39\n' | nc -N 127.0.0.1 7003      prints "sum 42 count 3"
 *
 * Prints "listening tcp://HOST:PORT" and runs until SIGINT or SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill.h"

struct total {
    long long sum, cur;
    long count;
    int sign;
    int digits;
    char answer[64];
};

static rill_loop *loop;
static long open_clients, served;

static void on_open(rill_conn *c, void *ctx)
{
    (void)ctx;
    struct total *t = calloc(1, sizeof *t);
    if (!t) {
        rill_close(c);
        return;
    }
    t->sign = 1;
    rill_conn_set_ctx(c, t);
    open_clients++;
}

static void end_number(struct total *t)
{
    if (t->digits)
        t->sum += t->sign * t->cur, t->count++;
    t->cur = 0, t->digits = 0, t->sign = 1;
}

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)c, (void)buf;
    struct total *t = ctx;
    const char *p = data;
    for (size_t i = 0; i < len; i++) {
        if (p[i] >= '0' && p[i] <= '9')
            t->cur = t->cur * 10 + (p[i] - '0'), t->digits++;
        else if (p[i] == '-' && !t->digits)
            t->sign = -1;
        else
            end_number(t); /* newline (or any separator) ends a number */
    }
}

/* The client has said everything: answer, then FIN; the connection closes once both sides
 * are done. */
static void on_eof(rill_conn *c, void *ctx)
{
    struct total *t = ctx;
    end_number(t);
    int n = snprintf(t->answer, sizeof t->answer, "sum %lld count %ld\n", t->sum, t->count);
    struct iovec iov = {t->answer, (size_t)n}; /* t lives until on_close: the bytes stay valid */
    if (rill_send(c, &iov, 1, NULL, NULL) < 0 || rill_shutdown(c) < 0)
        rill_close(c);
    served++;
}

static void on_close(rill_conn *c, int status, void *ctx)
{
    (void)c, (void)status;
    free(ctx);
    open_clients--;
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
                                               .on_eof = on_eof, .on_close = on_close};
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
    fprintf(stderr, "served %ld clients, %ld still open\n", served, open_clients);
    rill_loop_destroy(loop);
    return r < 0 ? 1 : 0;
}
