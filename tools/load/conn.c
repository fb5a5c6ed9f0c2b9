/* A connection's life: connect, send when the load model allows, complete replies, close, and
 * reopen. The protocol (echo.c, http.c) says what a request and a reply are; this file says when.
 *
 * Every request has a slot in the connection's ring: [head, head + inflight) are out, the next
 * `backlog` are due but not yet sent. In a closed loop a request is made when a slot frees up, so
 * its due time is its send time. In an open loop the schedule (sched.c) makes a request due
 * whether or not the connection can take it: it waits in the backlog, and its latency runs from
 * when it was due, so a server that stalls is charged for every request it delayed, not only
 * the ones that happened to be out (no coordinated omission). A backlog that is full drops the
 * request and counts it as skipped.
 *
 * A reply's latency is now - min(due, sent) ("corrected") and now - sent ("uncorrected"). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

#define CONNECT_TIMEOUT_MS 3000u
#define BACKOFF_MIN_MS 10u   /* first retry after a failed connect... */
#define BACKOFF_MAX_MS 1000u /* ... doubling up to this, so a dead server costs little CPU */
#define BACKLOG_S 2.0        /* open loop: a connection holds up to 2 s of due requests */
#define BACKLOG_MIN 16u
#define BACKLOG_MAX 65536u

static const struct proto *proto;
static struct rill_conn_options conn_opts;
static uint32_t ring_cap;

static void on_open(rill_conn *c, void *ctx);
static void pump(struct lconn *lc, uint64_t now);
static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx);
static void on_eof(rill_conn *c, void *ctx);
static void on_close(rill_conn *c, int status, void *ctx);

static const struct rill_conn_handler handler = {
    .on_open = on_open, .on_data = on_data, .on_eof = on_eof, .on_close = on_close};

int conns_global_init(const struct load_opts *o)
{
    proto = o->proto == PROTO_HTTP ? &proto_http : o->proto == PROTO_UDP ? &proto_udp : &proto_echo;
    int r = o->proto == PROTO_HTTP ? http_global_init(o) : echo_global_init(o);
    if (r < 0)
        return r;
    /* A connection never has more than depth * size bytes queued (plus its backlog once it
     * reopens); the bytes are shared and cost nothing, so let the write queue hold them. */
    ring_cap = o->depth;
    if (o->rate > 0) {
        double b = ceil(o->rate / o->conns * BACKLOG_S);
        ring_cap += b < BACKLOG_MIN ? BACKLOG_MIN : b > BACKLOG_MAX ? BACKLOG_MAX : (uint32_t)b;
    }
    uint64_t most = (uint64_t)o->size_max * ring_cap;
    conn_opts.wq_limit = most > (16u << 20) ? (size_t)most : (16u << 20);
    conn_opts.idle_timeout_ms = o->timeout_ms;
    if (o->seqpacket && o->size_max > (256u << 10))
        conn_opts.msg_max = (uint32_t)o->size_max; /* one message holds one whole reply */
    return 0;
}

void conns_global_fini(void)
{
    echo_global_fini();
    http_global_fini();
}

static struct req *slot(struct lconn *lc, uint32_t i)
{
    return &lc->ring[(lc->head + i) % lc->cap];
}

static void retry_later(struct lconn *lc, uint32_t ms)
{
    if (!lc->w->stopping)
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
    lc->opened = lc->answered = lc->counted = lc->peer_closes = lc->closing = false;
    lc->on_conn = 0;
    proto->reset(lc);
    if (w->o->proto == PROTO_UDP) {
        int r = udp_open(lc);
        if (r == -EINVAL || r == -EPROTONOSUPPORT) {
            w->fatal = r;
        } else if (r < 0) {
            worker_error(w, ERR_CONNECT, r);
            retry_backoff(lc);
        } else {
            lc->opened = true;
            w->open++;
            pump(lc, mono_ns());
        }
        return;
    }
    struct rill_connect_config cc = {
        .handler = &handler, .ctx = lc, .timeout_ms = CONNECT_TIMEOUT_MS, .conn = conn_opts};
    lc->t_connect = mono_ns();
    int r = rill_connect(w->loop, w->o->uri, &cc, &lc->c);
    if (r < 0) { /* refused before any socket work: -EMFILE, -ENOBUFS (loop full), ... */
        lc->c = NULL;
        if (r == -EPROTONOSUPPORT || r == -EINVAL) { /* will never work: stop the run */
            w->fatal = r;
            return;
        }
        worker_error(w, ERR_CONNECT, r);
        retry_backoff(lc);
    }
}

static void on_retry(rill_timer *t, void *ctx)
{
    (void)t;
    lconn_connect(ctx);
}

/* Closes the connection on purpose or after an error already counted. */
static void close_quietly(struct lconn *lc)
{
    lc->counted = true;
    if (!lc->closing) {
        lc->closing = true;
        rill_close(lc->c);
    }
}

void conn_fail(struct lconn *lc, enum err_kind kind, int status)
{
    worker_error(lc->w, kind, status);
    if (!lc->d) /* a datagram socket goes on: the next reply stands on its own */
        close_quietly(lc);
}

void conn_lost(struct lconn *lc, uint64_t now)
{
    (void)now;
    worker_error(lc->w, ERR_LOST, 0);
    lc->head = (lc->head + 1) % lc->cap;
    lc->inflight--;
    lc->w->out--;
}

void conns_sweep(struct worker *w, uint64_t now)
{
    uint64_t limit = (uint64_t)w->o->timeout_ms * 1000000u;
    if (w->o->proto != PROTO_UDP)
        return; /* streams time out through the engine's idle timeout */
    for (uint32_t i = 0; i < w->nconns; i++) {
        struct lconn *lc = &w->conns[i];
        bool freed = false;
        while (lc->inflight && now - lc->ring[lc->head].sent > limit) {
            conn_lost(lc, now);
            freed = true;
        }
        if (freed)
            pump(lc, now);
    }
}

/* May another request go out on this connection now? */
static bool may_send(const struct lconn *lc)
{
    const struct worker *w = lc->w;
    const struct load_opts *o = w->o;
    if (!lc->opened || lc->closing || lc->peer_closes || w->stopping || w->done)
        return false;
    if (lc->inflight >= o->depth)
        return false;
    return o->churn == 0 || lc->on_conn < o->churn;
}

/* -n: may the closed loop make one more request? */
static bool quota_allows(const struct worker *w)
{
    return !w->quota || !w->measuring || w->sent < w->quota;
}

static int send_slot(struct lconn *lc, struct req *r, uint64_t now)
{
    struct worker *w = lc->w;
    r->sent = now;
    int rc = proto->send(lc, r);
    if (rc < 0) {
        conn_fail(lc, ERR_SEND, rc);
        return rc;
    }
    lc->inflight++;
    lc->on_conn++;
    w->out++;
    if (w->measuring) {
        w->sent++;
        if (now - r->due > LOAD_LATE_NS)
            w->held++;
    }
    return 0;
}

/* Sends what may go: the backlog first (open loop, or requests requeued after a close), then,
 * in a closed loop, new requests up to --depth. */
static void pump(struct lconn *lc, uint64_t now)
{
    struct worker *w = lc->w;
    while (may_send(lc)) {
        if (lc->backlog) {
            lc->backlog--;
            if (send_slot(lc, slot(lc, lc->inflight), now) < 0)
                return;
        } else if (w->o->rate <= 0 && quota_allows(w)) {
            struct req *r = slot(lc, lc->inflight);
            r->due = now;
            if (send_slot(lc, r, now) < 0)
                return;
        } else {
            return;
        }
    }
}

void conn_due(struct lconn *lc, uint64_t due, uint64_t now)
{
    struct worker *w = lc->w;
    if (w->stopping || w->done || (w->quota && w->measuring && w->sent >= w->quota))
        return;
    if (w->measuring && now - due > LOAD_LATE_NS)
        w->late++; /* the loop itself came to this request late: the client is the limit */
    if (lc->inflight + lc->backlog >= lc->cap) {
        if (w->measuring)
            w->skipped++;
        return;
    }
    slot(lc, lc->inflight + lc->backlog)->due = due;
    lc->backlog++;
    pump(lc, now);
}

static void record(struct worker *w, const struct req *r, uint64_t now)
{
    uint64_t start = r->due < r->sent ? r->due : r->sent;
    uint64_t lat = now - start;
    hist_record(&w->second, lat);
    w->sec_requests++;
    if (!w->measuring)
        return;
    hist_record(&w->total, lat);
    hist_record(&w->uncorr, now - r->sent);
    w->requests++;
    if (w->quota && w->requests >= w->quota)
        w->done = true;
}

bool conn_complete(struct lconn *lc, uint64_t now)
{
    struct worker *w = lc->w;
    record(w, slot(lc, 0), now);
    lc->head = (lc->head + 1) % lc->cap;
    lc->inflight--;
    w->out--;
    if (!lc->answered) {
        lc->answered = true;
        lc->backoff_ms = BACKOFF_MIN_MS; /* the server works: next failure retries quickly */
    }
    if (w->o->churn && lc->on_conn >= w->o->churn && lc->inflight == 0) {
        close_quietly(lc); /* churn: this connection has done its share; on_close reopens */
        return false;
    }
    if (w->done) /* -n reached: the worker ends the window; nothing more to send */
        return !lc->closing;
    pump(lc, now);
    return !lc->closing;
}

static void on_open(rill_conn *c, void *ctx)
{
    (void)c;
    struct lconn *lc = ctx;
    struct worker *w = lc->w;
    uint64_t now = mono_ns();
    lc->opened = true;
    w->open++;
    if (w->measuring) {
        hist_record(&w->connect, now - lc->t_connect);
        w->connects++;
    }
    pump(lc, now);
}

static void on_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)c;
    (void)buf;
    struct lconn *lc = ctx;
    if (lc->closing) /* closing after an error: the rest of the stream means nothing */
        return;
    if (lc->w->measuring)
        lc->w->bytes += len;
    proto->data(lc, data, len, mono_ns());
}

static void on_eof(rill_conn *c, void *ctx)
{
    (void)c;
    /* The server will not answer any more; waiting for our queue to drain would only delay the
     * reconnect. on_close reports it (status 0 on an open connection: closed by the peer). */
    struct lconn *lc = ctx;
    if (!lc->closing) {
        lc->closing = true;
        rill_close(lc->c);
    }
}

/* Counts what a close the client did not ask for means. */
static void count_close(struct lconn *lc, bool was_open, int status, uint32_t lost, bool partial)
{
    struct worker *w = lc->w;
    if (!was_open)
        worker_error(w, ERR_CONNECT, status < 0 ? status : -ECONNABORTED);
    else if (status == -ETIMEDOUT && lost == 0)
        ; /* an idle connection timed out with nothing owed: just reopen it */
    else if (status < 0)
        worker_error(w, ERR_CLOSE, status);
    else if (partial)
        worker_error(w, ERR_SHORT, 0);
    else if (lost && !lc->peer_closes)
        worker_error(w, ERR_EOF, 0);
}

static void on_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct lconn *lc = ctx;
    struct worker *w = lc->w;
    bool was_open = lc->opened;
    uint32_t lost = lc->inflight;
    bool partial = was_open && lost && proto->partial(lc);
    lc->c = NULL;
    lc->opened = false;
    w->out -= lost;
    if (lc->peer_closes) {
        lc->backlog += lost; /* announced (Connection: close): resend them, due times kept */
    } else {
        lc->head = (lc->head + lost) % lc->cap; /* lost with the connection */
    }
    lc->inflight = 0;
    if (was_open)
        w->open--;
    if (w->stopping)
        return; /* our own close at the deadline */
    if (!lc->counted)
        count_close(lc, was_open, status, lost, partial);
    /* A connection that served requests reconnects at once; one that failed before serving
     * any (refused, closed or garbled at once) backs off, so a broken server is not hammered. */
    if (lc->answered || lc->peer_closes) {
        retry_later(lc, 0);
        return;
    }
    retry_backoff(lc);
}

int conns_start(struct worker *w)
{
    w->conns = calloc(w->nconns, sizeof *w->conns);
    if (!w->conns)
        return -ENOMEM;
    for (uint32_t i = 0; i < w->nconns; i++) {
        struct lconn *lc = &w->conns[i];
        lc->w = w;
        lc->id = w->first_conn + i;
        lc->backoff_ms = BACKOFF_MIN_MS;
        lc->rng = 0x9e3779b97f4a7c15ull * (lc->id + 1) ^ 0x5851f42d4c957f2dull;
        lc->cap = ring_cap;
        lc->ring = calloc(lc->cap, sizeof *lc->ring);
        if (!lc->ring)
            return -ENOMEM;
        int r = rill_timer_create(w->loop, on_retry, lc, &lc->retry);
        if (r < 0)
            return r;
    }
    int r = sched_init(w);
    if (r < 0)
        return r;
    for (uint32_t i = 0; i < w->nconns && !w->fatal; i++)
        lconn_connect(&w->conns[i]);
    return w->fatal;
}

uint64_t conns_inflight(const struct worker *w, uint64_t now, uint64_t *oldest_ns)
{
    uint64_t n = 0;
    *oldest_ns = 0;
    for (uint32_t i = 0; w->conns && i < w->nconns; i++) {
        struct lconn *lc = &w->conns[i];
        uint32_t k = lc->inflight + lc->backlog;
        if (!k)
            continue;
        n += k;
        const struct req *r = &lc->ring[lc->head];
        uint64_t start = r->due < r->sent || !lc->inflight ? r->due : r->sent;
        uint64_t age = now > start ? now - start : 0;
        if (age > *oldest_ns)
            *oldest_ns = age;
    }
    return n;
}

void conns_fini(struct worker *w)
{
    /* The timers went with the loop (rill_loop_destroy frees them). */
    sched_fini(w);
    for (uint32_t i = 0; w->conns && i < w->nconns; i++)
        free(w->conns[i].ring);
    free(w->conns);
    w->conns = NULL;
}
