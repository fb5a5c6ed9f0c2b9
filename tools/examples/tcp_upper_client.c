/* The client of example_tcp_upper_server: sends standard input in deliberately small pieces
 * (7 bytes at a time, so lines cross pieces) and prints every answer until the
 * server has answered each line.
 *
 *   printf 'hello\nworld\n' | example_tcp_upper_client tcp://127.0.0.1:7001   prints HELLO WORLD */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill.h"

#define PIECE 7

struct session {
    char *text;
    size_t len, lines, answered;
    int status;
};

static void on_open(rill_conn *c, void *ctx)
{
    struct session *s = ctx;
    for (size_t off = 0; off < s->len; off += PIECE) {
        size_t n = s->len - off < PIECE ? s->len - off : PIECE;
        struct iovec iov = {s->text + off, n};
        if (rill_send(c, &iov, 1, NULL, NULL) < 0) {
            rill_close(c);
            return;
        }
    }
    if (s->lines == 0)
        rill_close(c);
}

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct session *s = ctx;
    fwrite(data, 1, len, stdout);
    for (size_t i = 0; i < len; i++)
        s->answered += ((const char *)data)[i] == '\n';
    if (s->answered >= s->lines)
        rill_close(c);
}

static void on_close(rill_conn *c, int status, void *ctx)
{
    ((struct session *)ctx)->status = status;
    rill_loop_stop(rill_conn_loop(c));
}

/* Reads all of standard input; a last line without its newline gets one. */
static char *read_stdin(size_t *len)
{
    size_t cap = 4096, n = 0;
    char *p = malloc(cap + 1);
    size_t got;
    while (p && (got = fread(p + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap)
            p = realloc(p, (cap *= 2) + 1);
    }
    if (p && n && p[n - 1] != '\n')
        p[n++] = '\n';
    *len = n;
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s tcp://HOST:PORT < lines\n", argv[0]);
        return 2;
    }
    struct session s = {0};
    s.text = read_stdin(&s.len);
    for (size_t i = 0; i < s.len; i++)
        s.lines += s.text[i] == '\n';
    static const struct rill_conn_handler h = {.on_open = on_open, .on_data = on_data,
                                               .on_close = on_close};
    struct rill_connect_config cfg = {.handler = &h, .ctx = &s, .timeout_ms = 5000};
    rill_loop *l = NULL;
    rill_conn *c;
    int r = s.text ? rill_loop_create(NULL, &l) : -ENOMEM;
    if (r == 0 && (r = rill_connect(l, argv[1], &cfg, &c)) == 0)
        r = rill_loop_run(l);
    if (r == 0 && s.answered < s.lines)
        r = s.status ? s.status : -EPIPE;
    if (r < 0)
        fprintf(stderr, "%s: %s\n", argv[1], rill_strerror(r));
    rill_loop_destroy(l);
    free(s.text);
    return r < 0 ? 1 : 0;
}
