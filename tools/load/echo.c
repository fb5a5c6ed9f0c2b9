/* The echo workload: closed-loop request/response over TCP, each reply checked byte for byte.
 *
 * A connection is a byte stream, and an echo server owes us back exactly the stream we sent. So
 * rather than giving every request its own buffer, the request bytes are a window onto one shared,
 * read-only pattern indexed by the connection's stream offset: byte o of a connection's stream is
 * pattern[(phase + o) % PERIOD]. A request is then one iovec into that buffer (nothing to copy,
 * nothing to keep alive per request: rill_send only needs the bytes to stay put), and checking a
 * reply is a memcmp at the offset we have verified up to.
 *
 * PERIOD is prime and the 251 bytes of one period are all different, so a reply that lost,
 * duplicated or reordered bytes fails at its first wrong byte unless the shift happens to be a
 * multiple of 251, and the phase differs per connection (and per reconnect), so bytes crossing
 * from one connection into another fail too. Requests of one connection are answered in order,
 * so their send times wait in a ring of --depth entries. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

#define PERIOD 251u
#define CONNECT_TIMEOUT_MS 3000u
#define BACKOFF_MIN_MS 10u   /* first retry after a failed connect... */
#define BACKOFF_MAX_MS 1000u /* ... doubling up to this, so a dead server costs little CPU */
#define MISMATCH_REPORTS 3   /* per worker: the first few mismatches are described on stderr */

struct lconn {
    struct worker *w;
    rill_conn *c;        /* NULL while closed */
    rill_timer *retry;   /* reconnects after a close */
    uint32_t id;         /* global connection number */
    uint32_t gen;        /* times (re)connected; varies the phase */
    uint32_t phase;      /* pattern offset of stream byte 0 */
    uint32_t backoff_ms;
    bool opened;
    bool answered;       /* at least one request completed on this connection */
    bool counted;        /* we closed it for a reason already counted as an error */
    uint64_t sent, recvd; /* stream offsets: bytes queued, bytes received and verified */
    uint32_t inflight, head;
    uint64_t *t_sent;    /* ring of --depth send times, oldest at head */
};

static uint8_t *pattern;
static size_t pattern_len;
static struct rill_conn_options conn_opts;
static int mismatch_reports[LOAD_MAX_THREADS];

static void on_open(rill_conn *c, void *ctx);
static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx);
static void on_eof(rill_conn *c, void *ctx);
static void on_close(rill_conn *c, int status, void *ctx);

static const struct rill_conn_handler handler = {
    .on_open = on_open, .on_data = on_data, .on_eof = on_eof, .on_close = on_close};

int echo_global_init(const struct load_opts *o)
{
    pattern_len = o->size + PERIOD;
    pattern = malloc(pattern_len);
    if (!pattern)
        return -ENOMEM;
    /* 167 is odd, so i * 167 mod 256 differs for every i below 256: no byte repeats in a period. */
    for (size_t i = 0; i < pattern_len; i++)
        pattern[i] = (uint8_t)((i % PERIOD) * 167u + 13u);
    /* A connection never has more than depth * size bytes queued; let the write queue hold them
     * all, since they are the pattern's bytes and cost no memory. */
    uint64_t most = (uint64_t)o->size * o->depth;
    conn_opts.wq_limit = most > (16u << 20) ? (size_t)most : (16u << 20);
    return 0;
}

void echo_global_fini(void)
{
    free(pattern);
    pattern = NULL;
}

static void retry_later(struct lconn *lc, uint32_t ms)
{
    if (lc->w->stopping)
        return;
    rill_timer_start(lc->retry, ms, 0);
}

/* Retries after the current back-off, and doubles it for the next failure. */
static void retry_backoff(struct lconn *lc)
{
    retry_later(lc, lc->backoff_ms);
    lc->backoff_ms = lc->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : lc->backoff_ms * 2;
}

static void lconn_connect(struct lconn *lc)
{
    struct worker *w = lc->w;
    lc->gen++;
    lc->phase = (lc->id * 97u + lc->gen * 31u) % PERIOD;
    lc->sent = lc->recvd = 0;
    lc->inflight = lc->head = 0;
    lc->opened = lc->answered = lc->counted = false;
    struct rill_connect_config cc = {
        .handler = &handler, .ctx = lc, .timeout_ms = CONNECT_TIMEOUT_MS, .conn = conn_opts};
    int r = rill_connect(w->loop, w->o->uri, &cc, &lc->c);
    if (r < 0) { /* refused before any socket work: -EMFILE, -ENOBUFS (loop full), ... */
        lc->c = NULL;
        worker_error(w, ERR_CONNECT, r);
        retry_backoff(lc);
    }
}

static void on_retry(rill_timer *t, void *ctx)
{
    (void)t;
    lconn_connect(ctx);
}

/* Queues one request stamped `now`. On failure the connection is closed and the error counted. */
static int send_one(struct lconn *lc, uint64_t now)
{
    size_t size = lc->w->o->size;
    struct iovec iov = {pattern + (lc->phase + lc->sent) % PERIOD, size};
    int r = rill_send(lc->c, &iov, 1, NULL, NULL);
    if (r < 0) {
        worker_error(lc->w, ERR_SEND, r);
        lc->counted = true;
        rill_close(lc->c);
        return r;
    }
    lc->t_sent[(lc->head + lc->inflight) % lc->w->o->depth] = now;
    lc->inflight++;
    lc->sent += size;
    return 0;
}

static void on_open(rill_conn *c, void *ctx)
{
    (void)c;
    struct lconn *lc = ctx;
    lc->opened = true;
    lc->w->open++;
    uint64_t now = mono_ns();
    for (uint32_t i = 0; i < lc->w->o->depth; i++)
        if (send_one(lc, now) < 0)
            return;
}

/* Returns how many leading bytes of p match the stream from lc->recvd on. */
static size_t verify(const struct lconn *lc, const uint8_t *p, size_t len)
{
    size_t done = 0;
    while (done < len) {
        size_t start = (lc->phase + lc->recvd + done) % PERIOD;
        size_t n = len - done;
        if (n > pattern_len - start)
            n = pattern_len - start;
        if (memcmp(p + done, pattern + start, n) != 0) {
            size_t i = 0;
            while (p[done + i] == pattern[start + i])
                i++;
            return done + i;
        }
        done += n;
    }
    return len;
}

static void mismatch(struct lconn *lc, const uint8_t *p, size_t len, size_t good)
{
    struct worker *w = lc->w;
    if (mismatch_reports[w->index]++ < MISMATCH_REPORTS) {
        uint64_t at = lc->recvd + good;
        if (good < len && at < lc->sent)
            fprintf(stderr, "rill-load: connection %u: reply byte %llu is 0x%02x, sent 0x%02x\n",
                    lc->id, (unsigned long long)at, p[good],
                    pattern[(lc->phase + at) % PERIOD]);
        else
            fprintf(stderr, "rill-load: connection %u: %zu bytes came back beyond the %llu sent\n",
                    lc->id, len - good, (unsigned long long)lc->sent);
    }
    worker_error(w, ERR_MISMATCH, 0);
    lc->counted = true;
    rill_close(lc->c); /* the stream is out of step: start afresh */
}

/* Accounts for the requests completed by the bytes just verified, sending the next ones. */
static void complete(struct lconn *lc, uint64_t old, uint64_t now)
{
    struct worker *w = lc->w;
    size_t size = w->o->size;
    uint64_t done = lc->recvd / size - old / size;
    if (done && !lc->answered) {
        lc->answered = true;
        lc->backoff_ms = BACKOFF_MIN_MS; /* the server works: next failure retries quickly */
    }
    for (uint64_t i = 0; i < done; i++) {
        uint64_t lat = now - lc->t_sent[lc->head];
        lc->head = (lc->head + 1) % w->o->depth;
        lc->inflight--;
        hist_record(&w->second, lat);
        w->sec_requests++;
        if (w->measuring) {
            hist_record(&w->total, lat);
            w->requests++;
        }
        if (send_one(lc, now) < 0)
            return;
    }
}

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)c;
    (void)buf;
    struct lconn *lc = ctx;
    if (lc->counted) /* closing after a mismatch: the rest of the stream means nothing */
        return;
    const uint8_t *p = data;
    uint64_t owed = lc->sent - lc->recvd;
    size_t good = verify(lc, p, len < owed ? len : (size_t)owed);
    if (good < len) {
        mismatch(lc, p, len, good);
        return;
    }
    uint64_t now = mono_ns();
    uint64_t old = lc->recvd;
    lc->recvd += len;
    if (lc->w->measuring)
        lc->w->bytes += len;
    complete(lc, old, now);
}

static void on_eof(rill_conn *c, void *ctx)
{
    (void)ctx;
    /* The server will not answer any more; waiting for our queue to drain would only delay the
     * reconnect. on_close reports it (status 0 on an open connection: closed by the peer). */
    rill_close(c);
}

static void on_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct lconn *lc = ctx;
    struct worker *w = lc->w;
    bool was_open = lc->opened;
    lc->c = NULL;
    lc->opened = false;
    lc->inflight = 0;
    if (was_open)
        w->open--;
    if (w->stopping)
        return; /* our own close at the deadline */
    if (!lc->counted) {
        if (!was_open)
            worker_error(w, ERR_CONNECT, status < 0 ? status : -ECONNABORTED);
        else if (status == 0)
            worker_error(w, ERR_EOF, 0);
        else
            worker_error(w, ERR_CLOSE, status);
    }
    /* A connection that served requests reconnects at once; one that failed before serving
     * any (refused, closed or garbled at once) backs off, so a broken server is not hammered. */
    if (lc->answered) {
        retry_later(lc, 0);
        return;
    }
    retry_backoff(lc);
}

int echo_start(struct worker *w)
{
    w->conns = calloc(w->nconns, sizeof *w->conns);
    if (!w->conns)
        return -ENOMEM;
    for (uint32_t i = 0; i < w->nconns; i++) {
        struct lconn *lc = &w->conns[i];
        lc->w = w;
        lc->id = w->first_conn + i;
        lc->backoff_ms = BACKOFF_MIN_MS;
        lc->t_sent = calloc(w->o->depth, sizeof *lc->t_sent);
        if (!lc->t_sent)
            return -ENOMEM;
        int r = rill_timer_create(w->loop, on_retry, lc, &lc->retry);
        if (r < 0)
            return r;
    }
    for (uint32_t i = 0; i < w->nconns; i++)
        lconn_connect(&w->conns[i]);
    return 0;
}

uint64_t echo_inflight(const struct worker *w, uint64_t now, uint64_t *oldest_ns)
{
    uint64_t n = 0;
    *oldest_ns = 0;
    for (uint32_t i = 0; w->conns && i < w->nconns; i++) {
        const struct lconn *lc = &w->conns[i];
        if (!lc->c || !lc->opened || lc->inflight == 0)
            continue;
        n += lc->inflight;
        uint64_t age = now - lc->t_sent[lc->head];
        if (age > *oldest_ns)
            *oldest_ns = age;
    }
    return n;
}

void echo_fini(struct worker *w)
{
    /* The timers went with the loop (rill_loop_destroy frees them). */
    for (uint32_t i = 0; w->conns && i < w->nconns; i++)
        free(w->conns[i].t_sent);
    free(w->conns);
    w->conns = NULL;
}
