/* A Unix stream server that answers each byte with the next letter: 'a' becomes 'b', 'z'
 * becomes 'a' (and the same for capitals); anything else comes back unchanged.
 *
 *   example_unix_letters_server /tmp/letters.sock
 *
 * It prints "listening unix:PATH" once ready and runs until SIGINT or SIGTERM, then removes
 * its socket file (the engine does that when the listener closes). */
#include <signal.h>
#include <stdio.h>

#include "rill.h"

static rill_loop *loop;

static char next_letter(char ch)
{
    if (ch >= 'a' && ch <= 'z')
        return ch == 'z' ? 'a' : (char)(ch + 1);
    if (ch >= 'A' && ch <= 'Z')
        return ch == 'Z' ? 'A' : (char)(ch + 1);
    return ch;
}

static void on_data(rill_conn *c, rill_buf *in, const void *data, size_t len, void *ctx)
{
    (void)in, (void)ctx;
    /* The answer goes into a buffer of our own; the engine keeps a reference until it is sent. */
    rill_buf *out;
    if (rill_buf_lease(rill_conn_loop(c), len, &out) < 0) {
        rill_close(c);
        return;
    }
    const char *p = data;
    char *q = rill_buf_data(out);
    for (size_t i = 0; i < len; i++)
        q[i] = next_letter(p[i]);
    struct rill_bufslice s = {out, 0, (uint32_t)len};
    if (rill_send_bufs(c, &s, 1, NULL, NULL) < 0)
        rill_close(c);
    rill_buf_release(out);
}

static void on_signal(int sig)
{
    (void)sig;
    rill_loop_stop(loop); /* async-signal-safe */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET_PATH\n", argv[0]);
        return 2;
    }
    char uri[256];
    snprintf(uri, sizeof uri, "unix:%s", argv[1]);
    static const struct rill_conn_handler h = {.on_data = on_data};
    struct rill_listen_config cfg = {.handler = &h, .flags = RILL_LISTEN_F_UNLINK_STALE};
    rill_listener *ls;
    int r = rill_loop_create(NULL, &loop);
    if (r == 0 && (r = rill_listen(loop, uri, &cfg, &ls)) < 0)
        rill_loop_destroy(loop);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", uri, rill_strerror(r));
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("listening %s\n", uri);
    fflush(stdout);
    r = rill_loop_run(loop);
    rill_loop_destroy(loop); /* closes the listener, which removes the socket file */
    return r < 0 ? 1 : 0;
}
