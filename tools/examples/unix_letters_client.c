/* The client of example_unix_letters_server: sends its text, prints the answer.
 *
 *   example_unix_letters_client /tmp/letters.sock "Hello, zebra"   prints "Ifmmp, afcsb" */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rill.h"

struct session {
    const char *text;
    size_t want, got;
    int status;
};

static void on_open(rill_conn *c, void *ctx)
{
    struct session *s = ctx;
    struct iovec iov = {(void *)s->text, s->want};
    if (rill_send(c, &iov, 1, NULL, NULL) < 0)
        rill_close(c);
}

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct session *s = ctx;
    fwrite(data, 1, len, stdout);
    s->got += len;
    if (s->got >= s->want)
        rill_close(c); /* every byte has its answer */
}

static void on_close(rill_conn *c, int status, void *ctx)
{
    struct session *s = ctx;
    s->status = status;
    rill_loop_stop(rill_conn_loop(c));
}

int main(int argc, char **argv)
{
    if (argc != 3 || argv[2][0] == '\0') {
        fprintf(stderr, "usage: %s SOCKET_PATH TEXT\n", argv[0]);
        return 2;
    }
    char uri[256];
    snprintf(uri, sizeof uri, "unix:%s", argv[1]);
    struct session s = {.text = argv[2], .want = strlen(argv[2])};
    static const struct rill_conn_handler h = {.on_open = on_open, .on_data = on_data,
                                               .on_close = on_close};
    struct rill_connect_config cfg = {.handler = &h, .ctx = &s, .timeout_ms = 5000};
    rill_loop *l = NULL;
    rill_conn *c;
    int r = rill_loop_create(NULL, &l);
    if (r == 0 && (r = rill_connect(l, uri, &cfg, &c)) == 0)
        r = rill_loop_run(l);
    if (r == 0 && s.got < s.want)
        r = s.status ? s.status : -EPIPE;
    if (r < 0)
        fprintf(stderr, "%s: %s\n", uri, rill_strerror(r));
    else
        putchar('\n');
    rill_loop_destroy(l);
    return r < 0 ? 1 : 0;
}
