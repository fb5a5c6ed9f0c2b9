/* rill-http: a small HTTP/1.1 server on the rill engine, for plaintext-style benchmarks against
 * nginx and as an example of embedding rill.
 *
 *   GET /plaintext   "Hello, World!" as text/plain
 *   GET /json        {"message":"Hello, World!"} as application/json
 * HEAD works on both; another method on them is 405, another path 404.
 *
 * One loop per CPU (rill_engine), each with its own SO_REUSEPORT listener. Each connection owns
 * an incremental parser (parser.c), so requests may arrive split anywhere. Pipelining: every
 * request that one read delivers is answered in order into one slab buffer, and that buffer
 * goes out with one rill_send_bufs(), so 16 pipelined requests cost one send. Keep-alive is the
 * HTTP/1.1 default; "Connection: close", an HTTP/1.0 request without "Connection: keep-alive",
 * or any parse error (answered with its status: 400, 413, 414, 431, 501, 505) ends the
 * connection once the answers are sent. Bytes after such a request are ignored. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "parser.h"
#include "rill.h"
#include "../server_cli.h"

#define OUT_BUF (16 * 1024) /* responses batched per send; a batch that fills it is sent early */
#define MAX_RESPONSE 512    /* room one response needs at most */
#define WQ_PAUSE (1u << 20) /* stop reading a client that does not read its answers */
#define DRAIN_MS 2000

static const char PLAINTEXT[] = "Hello, World!";
static const char JSON[] = "{\"message\":\"Hello, World!\"}";

struct hconn {
    struct http_parser parser;
    bool closing; /* the last answer is queued; ignore anything more */
};

/* The Date header, formatted once per second per loop thread (loops share nothing). */
static __thread struct {
    time_t at;
    char text[40];
} date_cache;

static const char *http_date(void)
{
    time_t now = time(NULL);
    if (now != date_cache.at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(date_cache.text, sizeof date_cache.text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        date_cache.at = now;
    }
    return date_cache.text;
}

/* The batch of answers being built for one connection's read. */
struct out {
    rill_conn *c;
    rill_buf *buf;
    size_t len;
    int err;
};

static void out_flush(struct out *o)
{
    if (!o->buf)
        return;
    if (o->len && !o->err) {
        struct rill_bufslice s = {o->buf, 0, (uint32_t)o->len};
        o->err = rill_send_bufs(o->c, &s, 1, NULL, NULL); /* the engine takes its own ref */
    }
    rill_buf_release(o->buf);
    o->buf = NULL;
    o->len = 0;
}

static char *out_room(struct out *o)
{
    if (o->buf && OUT_BUF - o->len < MAX_RESPONSE)
        out_flush(o);
    if (!o->buf && !o->err) {
        o->err = rill_buf_lease(rill_conn_loop(o->c), OUT_BUF, &o->buf);
        if (o->err)
            o->buf = NULL;
    }
    return o->buf ? (char *)rill_buf_data(o->buf) + o->len : NULL;
}

static void respond(struct out *o, int status, const char *type, const char *body, size_t blen,
                    bool head_only, const char *connection)
{
    char *p = out_room(o);
    if (!p)
        return;
    int n = snprintf(p, MAX_RESPONSE,
                     "HTTP/1.1 %d %s\r\nServer: rill\r\nDate: %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n%s%s%s%s\r\n",
                     status, http_reason(status), http_date(), type, blen,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "", connection ? "Connection: " : "",
                     connection ? connection : "", connection ? "\r\n" : "");
    if (n < 0 || (size_t)n + blen > MAX_RESPONSE) {
        o->err = -EOVERFLOW;
        return;
    }
    if (!head_only) {
        memcpy(p + n, body, blen);
        n += (int)blen;
    }
    o->len += (size_t)n;
}

static void answer(struct out *o, const struct http_request *rq, bool close_after)
{
    const char *conn = close_after ? "close" : rq->version_minor == 0 ? "keep-alive" : NULL;
    bool known = !rq->path_truncated &&
                 (!strcmp(rq->path, "/plaintext") || !strcmp(rq->path, "/json"));
    if (!known) {
        respond(o, 404, "text/plain", "Not Found\n", 10, rq->method == HTTP_HEAD, conn);
    } else if (rq->method != HTTP_GET && rq->method != HTTP_HEAD) {
        respond(o, 405, "text/plain", "Method Not Allowed\n", 19, false, conn);
    } else if (rq->path[1] == 'p') {
        respond(o, 200, "text/plain", PLAINTEXT, sizeof PLAINTEXT - 1, rq->method == HTTP_HEAD,
                conn);
    } else {
        respond(o, 200, "application/json", JSON, sizeof JSON - 1, rq->method == HTTP_HEAD, conn);
    }
}

static void on_open(rill_conn *c, void *ctx)
{
    (void)ctx;
    struct hconn *h = malloc(sizeof *h);
    if (!h) {
        rill_conn_set_ctx(c, NULL);
        rill_close(c);
        return;
    }
    http_parser_init(&h->parser, NULL);
    h->closing = false;
    rill_conn_set_ctx(c, h);
}

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct hconn *h = ctx;
    if (!h || h->closing)
        return;
    struct out o = {.c = c};
    const char *p = data;
    while (len && !h->closing) {
        enum http_event ev;
        size_t n = http_parse(&h->parser, p, len, &ev);
        p += n;
        len -= n;
        if (ev == HTTP_REQUEST) {
            h->closing = !h->parser.req.keep_alive;
            answer(&o, &h->parser.req, h->closing);
        } else if (ev == HTTP_ERROR) {
            int st = h->parser.status;
            char body[64];
            int bl = snprintf(body, sizeof body, "%s\n", http_reason(st));
            respond(&o, st, "text/plain", body, (size_t)bl, false, "close");
            h->closing = true;
        }
    }
    out_flush(&o);
    if (o.err) {
        rill_close(c);
        return;
    }
    if (h->closing)
        rill_shutdown(c); /* FIN after the answers; the connection closes when the peer does */
    else if (rill_conn_write_queued(c) >= WQ_PAUSE)
        rill_read_pause(c);
}

static void on_drain(rill_conn *c, void *ctx)
{
    (void)ctx;
    rill_read_resume(c);
}

static void on_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)status;
    free(ctx);
}

static const struct rill_conn_handler http_handler = {
    .on_open = on_open,
    .on_data = on_data,
    .on_drain = on_drain,
    .on_close = on_close,
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: rill-http [options]\n"
            "  -l, --listen URI    address to serve (default tcp://127.0.0.1:8080; port 0 picks one)\n"
            "  -b, --backend NAME  auto, epoll or uring (default auto; RILL_BACKEND overrides)\n"
            "  -t, --threads N     loops, one per thread (default: one per CPU; --loops too)\n"
            "      --pin/--no-pin  pin loop i to the i-th CPU of the affinity mask (default on)\n"
            "  -h, --help          this text\n"
            "      --version       print the version (rill-http X.Y.Z) and exit\n"
            "Serves GET/HEAD /plaintext and /json. Prints \"listening URI loops=N backend=NAME\"\n"
            "once ready; on SIGINT or SIGTERM it drains (up to 2 s) and exits.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'}, {"backend", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'}, {"loops", required_argument, 0, 't'},
        {"pin", no_argument, 0, 'p'},          {"no-pin", no_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    struct rill_engine_config ecfg;
    rill_engine_config_init(&ecfg);
    const char *uri = "tcp://127.0.0.1:8080";
    int o;
    while ((o = getopt_long(argc, argv, "l:b:t:h", opts, NULL)) != -1) {
        switch (o) {
        case 'l':
            uri = optarg;
            break;
        case 'b':
            if (server_cli_backend(optarg, &ecfg.loop.backend) < 0) {
                fprintf(stderr, "rill-http: --backend must be auto, epoll or uring\n");
                return 2;
            }
            break;
        case 't': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 1024) {
                fprintf(stderr, "rill-http: --threads must be 1..1024\n");
                return 2;
            }
            ecfg.loops = (uint32_t)n;
            break;
        }
        case 'p':
            ecfg.flags &= ~RILL_ENGINE_F_NO_PIN;
            break;
        case 'P':
            ecfg.flags |= RILL_ENGINE_F_NO_PIN;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("rill-http %s\n", rill_version());
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    sigset_t sigs; /* taken by this thread only, synchronously */
    server_cli_block_stop_signals(&sigs);

    rill_engine *e;
    int r = rill_engine_create(&ecfg, &e);
    if (r < 0) {
        fprintf(stderr, "rill-http: engine: %s\n", rill_strerror(r));
        return 1;
    }
    struct rill_listen_config lc = {.handler = &http_handler};
    r = rill_engine_listen(e, uri, &lc, 0, NULL);
    if (r < 0) {
        fprintf(stderr, "rill-http: listen %s: %s\n", uri, rill_strerror(r));
        rill_engine_destroy(e);
        return 1;
    }
    const char *colon = strrchr(uri, ':');
    rill_loop *l0 = rill_engine_loop(e, 0);
    if (colon && !strcmp(colon, ":0"))
        printf("listening %.*s:%d", (int)(colon - uri), uri, r);
    else
        printf("listening %s", uri);
    printf(" loops=%u backend=%s\n", rill_engine_loop_count(e), rill_loop_backend_name(l0));
    fflush(stdout);
    if ((r = rill_engine_start(e)) < 0) {
        fprintf(stderr, "rill-http: start: %s\n", rill_strerror(r));
        rill_engine_destroy(e);
        return 1;
    }
    while (sigwaitinfo(&sigs, NULL) < 0 && errno == EINTR)
        ;
    rill_engine_stop(e, DRAIN_MS);
    rill_engine_destroy(e);
    return 0;
}
