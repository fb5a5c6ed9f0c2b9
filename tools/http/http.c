/* rill-http: a small HTTP/1.1 server on the rill engine, for plaintext-style benchmarks against
 * nginx and as an example of embedding rill.
 *
 *   GET /plaintext   "Hello, World!" as text/plain
 *   GET /json        {"message":"Hello, World!"} as application/json
 * HEAD works on both; another method on them is 405, another path 404.
 * With --root DIR it serves the files under DIR instead (and only them): GET or HEAD of a
 * regular file is 200 with its Content-Length, its bytes sent from the page cache with
 * rill_send_file(); a missing file is 404; a directory, a ".." segment or a symbolic link
 * anywhere in the path is 403 (files.c: how escapes are refused); another method is 405.
 *
 * One loop per CPU (rill_engine), each with its own SO_REUSEPORT listener. Each connection owns
 * an incremental parser (parser.c), so requests may arrive split anywhere. Pipelining: every
 * request that one read delivers is answered in order into one slab buffer, and that buffer
 * goes out with one rill_send_bufs(), so 16 pipelined requests cost one send. Keep-alive is the
 * HTTP/1.1 default; "Connection: close", an HTTP/1.0 request without "Connection: keep-alive",
 * or any parse error (answered with its status: 400, 413, 414, 431, 501, 505) ends the
 * connection once the answers are sent. Bytes after such a request are ignored.
 *
 * Slow and hostile clients are timed out by default (each is 0 to turn it off):
 *   --header-timeout  a request head must arrive whole within it, counted from the connection's
 *                     opening or from the first byte of the head (408, then close): a client
 *                     trickling a header byte at a time cannot hold a descriptor for long;
 *   --idle-timeout    a keep-alive connection with no traffic at all is closed;
 *   --send-timeout    a client whose answers do not move (it stopped reading) is closed.
 * Once the last answer is queued the server shuts down its side and closes for good LINGER_MS
 * later at the latest, whatever the peer does: it may read the answers meanwhile, and the bytes
 * it still sends are read and dropped, so that a close with unread data (a reset) does not
 * destroy the answer on its way. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "files.h"
#include "parser.h"
#include "rill.h"
#include "../server_cli.h"

#define OUT_BUF (16 * 1024) /* responses batched per send; a batch that fills it is sent early */
#define MAX_RESPONSE 512    /* room one response needs at most */
#define WQ_PAUSE (1u << 20) /* stop reading a client that does not read its answers */
#define DRAIN_MS 2000
#define LINGER_MS 2000      /* after the last answer: how long the peer may take to read it */
#define MAX_FILES 64        /* --root: files queued per connection (more in one read: closed) */

/* --root DIR's descriptor, or -1 to serve the built-in paths. */
static int root_fd = -1;

/* The timeouts of the command line, in ms (0: off), the same for every loop. */
static uint32_t header_timeout_ms = 10000, idle_timeout_ms = 30000, send_timeout_ms = 30000;

static const char PLAINTEXT[] = "Hello, World!";
static const char JSON[] = "{\"message\":\"Hello, World!\"}";

struct hconn {
    struct http_parser parser;
    rill_conn *c;
    rill_timer *timer; /* the header timeout, then the linger after the last answer */
    bool closing;      /* the last answer is queued; ignore anything more */
    /* --root: descriptors of the files queued (rill_send_file), oldest first; each is closed by
     * its send's callback, which run in order. Their bytes are not memory, so they do not
     * count for WQ_PAUSE; MAX_FILES bounds the descriptors a client that does not read holds. */
    int files[MAX_FILES];
    unsigned file_head, nfiles;
    uint64_t file_sizes[MAX_FILES];
    uint64_t file_bytes; /* the sizes of the files queued */
};

/* What the connection's queue holds in memory: the queue less its files (less at most the part
 * of the first file already sent, so this may undercount by that much). */
static size_t mem_queued(rill_conn *c, const struct hconn *h)
{
    size_t q = rill_conn_write_queued(c);
    return q > h->file_bytes ? q - (size_t)h->file_bytes : 0;
}

/* Reading pauses while the answers held in memory pass WQ_PAUSE, or MAX_FILES are queued. */
static void check_resume(rill_conn *c, const struct hconn *h)
{
    if (mem_queued(c, h) < WQ_PAUSE && h->nfiles < MAX_FILES)
        rill_read_resume(c);
}

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
    if (n < 0 || (size_t)n + (head_only ? 0 : blen) > MAX_RESPONSE) {
        o->err = -EOVERFLOW;
        return;
    }
    if (!head_only) {
        memcpy(p + n, body, blen);
        n += (int)blen;
    }
    o->len += (size_t)n;
}

static void file_sent(rill_conn *c, int status, void *ctx)
{
    (void)status; /* a failure ends the connection, which on_close reports */
    struct hconn *h = ctx;
    close(h->files[h->file_head]);
    h->file_bytes -= h->file_sizes[h->file_head];
    h->file_head = (h->file_head + 1) % MAX_FILES;
    h->nfiles--;
    check_resume(c, h);
}

/* --root: the file's head (in the batch, which goes out first), then the file itself. */
static void answer_file(struct out *o, struct hconn *h, const struct http_request *rq,
                        const char *conn)
{
    bool head = rq->method == HTTP_HEAD;
    if (rq->method != HTTP_GET && !head) {
        respond(o, 405, "text/plain", "Method Not Allowed\n", 19, false, conn);
        return;
    }
    struct file_hit f;
    int st = rq->path_truncated ? 414 : files_resolve(root_fd, rq->path, rq->path_len, &f);
    if (st != 200) {
        char body[64];
        int bl = snprintf(body, sizeof body, "%s\n", http_reason(st));
        respond(o, st, "text/plain", body, (size_t)bl, head, conn);
        return;
    }
    if (f.size > INT32_MAX || h->nfiles == MAX_FILES) { /* one rill_send_file: an int count */
        close(f.fd);
        o->err = -EFBIG;
        return;
    }
    respond(o, 200, f.type, NULL, (size_t)f.size, true, conn);
    if (head || f.size == 0 || o->err) {
        close(f.fd);
        return;
    }
    out_flush(o); /* the head before the file */
    if (!o->err)
        o->err = rill_send_file(o->c, f.fd, 0, (size_t)f.size, file_sent, h);
    if (o->err) {
        close(f.fd);
        return;
    }
    unsigned i = (h->file_head + h->nfiles++) % MAX_FILES;
    h->files[i] = f.fd;
    h->file_sizes[i] = f.size;
    h->file_bytes += f.size;
}

static void answer(struct out *o, struct hconn *h, const struct http_request *rq,
                   bool close_after)
{
    const char *conn = close_after ? "close" : rq->version_minor == 0 ? "keep-alive" : NULL;
    if (root_fd >= 0) {
        answer_file(o, h, rq, conn);
        return;
    }
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

/* The header timeout (408, then the linger), or the end of the linger (close). */
static void on_timer(rill_timer *t, void *ctx)
{
    (void)t;
    struct hconn *h = ctx;
    if (h->closing) {
        rill_close(h->c);
        return;
    }
    struct out o = {.c = h->c};
    respond(&o, 408, "text/plain", "Request Timeout\n", 16, false, "close");
    out_flush(&o);
    h->closing = true;
    rill_shutdown(h->c);
    rill_timer_start(h->timer, LINGER_MS, 0);
}

static void on_open(rill_conn *c, void *ctx)
{
    (void)ctx;
    struct hconn *h = malloc(sizeof *h);
    if (!h || rill_timer_create(rill_conn_loop(c), on_timer, h, &h->timer) < 0) {
        free(h);
        rill_conn_set_ctx(c, NULL);
        rill_close(c);
        return;
    }
    http_parser_init(&h->parser, NULL);
    h->c = c;
    h->closing = false;
    h->file_head = h->nfiles = 0;
    h->file_bytes = 0;
    rill_conn_set_ctx(c, h);
    if (header_timeout_ms)
        rill_timer_start(h->timer, header_timeout_ms, 0);
}

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct hconn *h = ctx;
    if (!h || h->closing)
        return;
    struct out o = {.c = c};
    const char *p = data;
    bool answered = false;
    while (len && !h->closing) {
        enum http_event ev;
        size_t n = http_parse(&h->parser, p, len, &ev);
        p += n;
        len -= n;
        if (ev == HTTP_REQUEST) {
            h->closing = !h->parser.req.keep_alive;
            answer(&o, h, &h->parser.req, h->closing);
            answered = true;
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
    if (h->closing) {
        /* FIN after the answers; the connection closes when the peer does, or at the end of the
         * linger. */
        rill_shutdown(c);
        rill_timer_start(h->timer, LINGER_MS, 0);
        return;
    }
    if (header_timeout_ms) {
        /* A head under way keeps the deadline it started with, however slowly its bytes come; a
         * new one (after an answer, or the first bytes after a quiet keep-alive) gets a fresh
         * one; between requests the idle timeout alone applies. */
        if (!http_parser_in_head(&h->parser))
            rill_timer_stop(h->timer);
        else if (answered || !rill_timer_active(h->timer))
            rill_timer_start(h->timer, header_timeout_ms, 0);
    }
    if (mem_queued(c, h) >= WQ_PAUSE || h->nfiles == MAX_FILES)
        rill_read_pause(c);
}

static void on_drain(rill_conn *c, void *ctx)
{
    if (ctx)
        check_resume(c, ctx);
}

static void on_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)status;
    struct hconn *h = ctx;
    if (h)
        rill_timer_destroy(h->timer);
    free(h);
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
            "      --header-timeout MS  a request head must arrive whole within MS of the\n"
            "                      connection's opening or of its first byte, else 408 and close\n"
            "                      (default 10000; 0: off)\n"
            "      --idle-timeout MS    close a connection with no traffic for MS (default 30000;\n"
            "                      0: off)\n"
            "      --send-timeout MS    close a client whose answers have not moved for MS, one\n"
            "                      that stopped reading (default 30000; 0: off)\n"
            "  -r, --root DIR      serve the regular files under DIR (GET/HEAD, sent with\n"
            "                      rill_send_file) instead of /plaintext and /json; a missing\n"
            "                      file is 404; a directory, '..' or a symlink in the path 403\n"
            "  -h, --help          this text\n"
            "      --version       print the version (rill-http X.Y.Z) and exit\n"
            "Serves GET/HEAD /plaintext and /json (or --root). Prints \"listening URI loops=N backend=NAME\"\n"
            "once ready; on SIGINT or SIGTERM it drains (up to 2 s) and exits. After its last\n"
            "answer to a connection it closes it within 2 s, whatever the peer does.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, 0, 'l'}, {"backend", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'}, {"loops", required_argument, 0, 't'},
        {"pin", no_argument, 0, 'p'},          {"no-pin", no_argument, 0, 'P'},
        {"header-timeout", required_argument, 0, 'H'},
        {"idle-timeout", required_argument, 0, 'I'},
        {"send-timeout", required_argument, 0, 'S'},
        {"root", required_argument, 0, 'r'},
        {"help", no_argument, 0, 'h'},         {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0}};
    struct rill_engine_config ecfg;
    rill_engine_config_init(&ecfg);
    const char *uri = "tcp://127.0.0.1:8080";
    int o;
    while ((o = getopt_long(argc, argv, "l:b:t:r:h", opts, NULL)) != -1) {
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
        case 'H':
            if (server_cli_ms("rill-http", "--header-timeout", optarg, &header_timeout_ms) < 0)
                return 2;
            break;
        case 'I':
            if (server_cli_ms("rill-http", "--idle-timeout", optarg, &idle_timeout_ms) < 0)
                return 2;
            break;
        case 'S':
            if (server_cli_ms("rill-http", "--send-timeout", optarg, &send_timeout_ms) < 0)
                return 2;
            break;
        case 'r':
            if (root_fd >= 0)
                close(root_fd);
            if ((root_fd = files_open_root(optarg)) < 0) {
                fprintf(stderr, "rill-http: --root '%s': %s\n", optarg, rill_strerror(root_fd));
                return 2;
            }
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
        fprintf(stderr, "rill-http: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (server_cli_check_listen("rill-http", uri) < 0)
        return 2;
    if (!strncmp(uri, "udp://", 6) || !strncmp(uri, "unix+dgram:", 11)) {
        fprintf(stderr, "rill-http: --listen '%s': HTTP serves streams (tcp://, unix:), not udp:// "
                        "or unix+dgram:\n", uri);
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
    struct rill_listen_config lc = {
        .handler = &http_handler,
        .conn = {.idle_timeout_ms = idle_timeout_ms, .send_timeout_ms = send_timeout_ms}};
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
