/* The UDP protocol: echo over a connected datagram socket per "connection".
 *
 * Datagrams can be lost, so a reply is matched to its request by a sequence number: the first 8
 * bytes of every request are its number, the rest come from the echo pattern at that number's
 * offset, and the reply must be the same datagram back, byte for byte. Replies arrive in order
 * on loopback and nearly always elsewhere, so requests out are kept in send order: a reply to
 * the k-th request out means the k before it were lost (counted as "lost"). A reply matching
 * nothing out (a duplicate, or one that came after its request was given up) counts as
 * "extra". A request whose reply has not come back within --timeout (1 s by default for UDP) is
 * lost (conns_sweep). The socket never closes for an error: each datagram stands on its own. */
#include <errno.h>
#include <string.h>

#include "load.h"

static void on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                        const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                        void *ctx);
static void on_error(rill_dgram *d, int status, void *ctx);
static void on_close(rill_dgram *d, int status, void *ctx);

static const struct rill_dgram_handler handler = {
    .on_datagram = on_datagram, .on_error = on_error, .on_close = on_close};

int udp_open(struct lconn *lc)
{
    const struct load_opts *o = lc->w->o;
    struct rill_dgram_config cfg = {
        .handler = &handler,
        .ctx = lc,
        .peer = o->uri,
        /* One byte more than the longest reply owed: a longer one arrives cut, flagged. */
        .max_datagram = (uint32_t)o->size_max + 1,
        .batch = 32,
        .wq_limit = (size_t)o->size_max * lc->cap + 4096,
    };
    return rill_dgram_open(lc->w->loop, NULL, &cfg, &lc->d);
}

static void udp_reset(struct lconn *lc)
{
    (void)lc;
}

static int udp_send(struct lconn *lc, struct req *r)
{
    const struct load_opts *o = lc->w->o;
    size_t size = o->size_min;
    if (o->size_max > o->size_min)
        size += sched_rand(&lc->rng) % (o->size_max - o->size_min + 1);
    r->end = lc->seq++;
    r->hdr = r->end;
    r->len = (uint32_t)size;
    /* The number's bytes live in the request's slot, which stays put until the request is
     * answered or given up (a second at least), long after the datagram went out. */
    struct iovec iov[2] = {{&r->hdr, sizeof r->hdr},
                           {(void *)echo_pattern(r->end), size - sizeof r->hdr}};
    return rill_dgram_sendto(lc->d, iov, size > sizeof r->hdr ? 2 : 1, NULL, 0, NULL, NULL);
}

/* Returns the position among the requests out of the one numbered seq, or -1. */
static int find_out(const struct lconn *lc, uint64_t seq)
{
    for (uint32_t i = 0; i < lc->inflight; i++)
        if (lc->ring[(lc->head + i) % lc->cap].end == seq)
            return (int)i;
    return -1;
}

static void udp_data(struct lconn *lc, const uint8_t *p, size_t len, uint64_t now)
{
    uint64_t seq;
    if (len < sizeof seq) {
        conn_fail(lc, ERR_GARBAGE, 0);
        return;
    }
    memcpy(&seq, p, sizeof seq);
    int k = find_out(lc, seq);
    if (k < 0) {
        conn_fail(lc, ERR_EXTRA, 0);
        return;
    }
    const struct req *r = &lc->ring[(lc->head + (uint32_t)k) % lc->cap];
    if (len != r->len) {
        conn_fail(lc, len < r->len ? ERR_SHORT : ERR_EXTRA, 0);
        return;
    }
    if (memcmp(p + sizeof seq, echo_pattern(seq), len - sizeof seq) != 0) {
        lc->w->mismatch_any++;
        conn_fail(lc, ERR_GARBAGE, 0);
        return;
    }
    while (k-- > 0)
        conn_lost(lc, now);
    conn_complete(lc, now);
}

static bool udp_partial(const struct lconn *lc)
{
    (void)lc;
    return false;
}

const struct proto proto_udp = {
    .send = udp_send, .data = udp_data, .reset = udp_reset, .partial = udp_partial};

static void on_datagram(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                        const struct sockaddr *from, socklen_t fromlen, uint32_t flags, void *ctx)
{
    (void)d;
    (void)buf;
    (void)from;
    (void)fromlen;
    struct lconn *lc = ctx;
    if (lc->w->measuring)
        lc->w->bytes += len;
    if (flags & RILL_DGRAM_TRUNC) { /* longer than any request we send */
        conn_fail(lc, ERR_EXTRA, 0);
        return;
    }
    udp_data(lc, data, len, mono_ns());
}

/* ICMP port unreachable (no server yet) and the like: counted, the socket goes on. */
static void on_error(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    struct lconn *lc = ctx;
    worker_error(lc->w, ERR_CLOSE, status);
}

static void on_close(rill_dgram *d, int status, void *ctx)
{
    (void)d;
    (void)status;
    struct lconn *lc = ctx;
    lc->d = NULL;
    if (lc->opened)
        lc->w->open--;
    lc->opened = false;
    lc->w->out -= lc->inflight;
    lc->inflight = 0;
}
