/* B2, peer-libuv: an echo server the way libuv's documentation writes one.
 *
 * One uv_loop_t per thread. libuv 1.44 (Debian 12) has no UV_TCP_REUSEPORT (it came in 1.49),
 * so each thread's SO_REUSEPORT listening socket is made by peer_common and handed to libuv
 * with uv_tcp_open(), the documented way to adopt an existing socket. Each connection reads
 * with uv_read_start() into a buffer from alloc_cb, and writes back with uv_try_write() first
 * (the fast path libuv recommends when the socket is likely writable), queueing only what is
 * left with uv_write(). Reading stops while more than WQ_HIGH bytes wait to be written and
 * resumes when the queue has drained. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "peer_common.h"

#define READ_BUF (64 * 1024)
#define WQ_HIGH (1u << 20)

struct worker {
    int index;
    const struct peer_opts *o;
    uv_loop_t loop;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
    char buf[READ_BUF]; /* one read buffer per loop: each read is written or copied at once */
};

struct write_req {
    uv_write_t req;
    uv_buf_t buf;
    char data[];
};

static void on_close(uv_handle_t *h)
{
    free(h);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct worker *w = h->loop->data;
    *buf = uv_buf_init(w->buf, sizeof w->buf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;
    uv_stream_t *s = req->handle;
    free(wr);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (s->data && uv_stream_get_write_queue_size(s) == 0 && !uv_is_closing((uv_handle_t *)s)) {
        s->data = NULL;
        uv_read_start(s, alloc_cb, on_read);
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    if (n < 0) {
        /* UV_EOF or an error: close (pending writes are cancelled with UV_ECANCELED). */
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (n == 0)
        return; /* EAGAIN, nothing read */
    size_t off = 0;
    if (uv_stream_get_write_queue_size(s) == 0) {
        uv_buf_t b = uv_buf_init(buf->base, (unsigned)n);
        int r = uv_try_write(s, &b, 1);
        if (r < 0 && r != UV_EAGAIN) {
            uv_close((uv_handle_t *)s, on_close);
            return;
        }
        if (r > 0)
            off = (size_t)r;
    }
    if (off == (size_t)n)
        return;
    /* The read buffer is reused by the next read, so what waits for uv_write is copied. */
    size_t left = (size_t)n - off;
    struct write_req *wr = malloc(sizeof *wr + left);
    if (!wr) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    memcpy(wr->data, buf->base + off, left);
    wr->buf = uv_buf_init(wr->data, (unsigned)left);
    if (uv_write(&wr->req, s, &wr->buf, 1, on_write) < 0) {
        free(wr);
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (uv_stream_get_write_queue_size(s) > WQ_HIGH) {
        uv_read_stop(s); /* the peer is not reading: stop reading until the queue drains */
        s->data = s;     /* marks "paused" */
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        fprintf(stderr, "peer-libuv: connection: %s\n", uv_strerror(status));
        return;
    }
    uv_stream_t *client;
    if (server->type == UV_TCP) {
        uv_tcp_t *t = malloc(sizeof *t);
        if (!t)
            return;
        uv_tcp_init(server->loop, t);
        client = (uv_stream_t *)t;
    } else {
        uv_pipe_t *p = malloc(sizeof *p);
        if (!p)
            return;
        uv_pipe_init(server->loop, p, 0);
        client = (uv_stream_t *)p;
    }
    client->data = NULL; /* not paused */
    if (uv_accept(server, client) != 0) {
        uv_close((uv_handle_t *)client, on_close);
        return;
    }
    if (server->type == UV_TCP)
        uv_tcp_nodelay((uv_tcp_t *)client, 1);
    uv_read_start(client, alloc_cb, on_read);
}

static void *run(void *arg)
{
    struct worker *w = arg;
    peer_pin(w->o, w->index);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void check(const struct peer_opts *o, int r, const char *what)
{
    if (r < 0) {
        fprintf(stderr, "%s: %s: %s\n", o->name, what, uv_strerror(r));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    static struct peer_opts o;
    peer_parse(&o, "peer-libuv", argc, argv);
    peer_bind_all(&o);
    struct worker *ws = calloc((size_t)o.threads, sizeof *ws);
    void *args[PEER_MAX_THREADS];
    if (!ws)
        peer_die(&o, "calloc");
    /* Loops and handles are set up here, then each loop runs on its own thread and is never
     * touched by another one again. */
    for (int i = 0; i < o.threads; i++) {
        struct worker *w = &ws[i];
        w->index = i;
        w->o = &o;
        check(&o, uv_loop_init(&w->loop), "uv_loop_init");
        w->loop.data = w;
        check(&o, uv_tcp_init(&w->loop, &w->tcp), "uv_tcp_init");
        check(&o, uv_tcp_open(&w->tcp, o.tcp_fd[i]), "uv_tcp_open");
        check(&o, uv_listen((uv_stream_t *)&w->tcp, SOMAXCONN, on_connection), "uv_listen");
        if (i == 0 && o.unix_fd >= 0) {
            check(&o, uv_pipe_init(&w->loop, &w->pipe, 0), "uv_pipe_init");
            check(&o, uv_pipe_open(&w->pipe, o.unix_fd), "uv_pipe_open");
            check(&o, uv_listen((uv_stream_t *)&w->pipe, SOMAXCONN, on_connection), "uv_listen");
        }
        args[i] = w;
    }
    peer_run_threads(&o, run, args);
    return 0;
}
