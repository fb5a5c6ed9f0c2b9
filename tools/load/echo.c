/* The echo protocol: a request is --size bytes (fixed, or uniform over a range), the reply is the
 * same bytes back, checked byte for byte.
 *
 * A connection is a byte stream, and an echo server owes us back exactly the stream we sent. So
 * rather than giving every request its own buffer, the request bytes are a window onto one shared,
 * read-only pattern indexed by the connection's stream offset: byte o of a connection's stream is
 * pattern[(phase + o) % PERIOD]. A request is then one iovec into that buffer (nothing to copy,
 * nothing to keep alive per request: rill_send only needs the bytes to stay put), and checking a
 * reply is a memcmp at the offset we have verified up to. Each request records the stream offset
 * just past its bytes, so replies complete in order whatever their sizes.
 *
 * PERIOD is prime and the 251 bytes of one period are all different, so a reply that lost,
 * duplicated or reordered bytes fails at its first wrong byte unless the shift happens to be a
 * multiple of 251, and the phase differs per connection (and per reconnect), so bytes crossing
 * from one connection into another fail too. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

#define PERIOD 251u
#define MISMATCH_REPORTS 3 /* per worker: the first few mismatches are described on stderr */

static uint8_t *pattern;
static size_t pattern_len;
static int mismatch_reports[LOAD_MAX_THREADS];

int echo_global_init(const struct load_opts *o)
{
    pattern_len = o->size_max + PERIOD;
    pattern = malloc(pattern_len);
    if (!pattern)
        return -ENOMEM;
    /* 167 is odd, so i * 167 mod 256 differs for every i below 256: no byte repeats in a period. */
    for (size_t i = 0; i < pattern_len; i++)
        pattern[i] = (uint8_t)((i % PERIOD) * 167u + 13u);
    return 0;
}

void echo_global_fini(void)
{
    free(pattern);
    pattern = NULL;
}

const uint8_t *echo_pattern(uint64_t off)
{
    return pattern + off % PERIOD;
}

static void echo_reset(struct lconn *lc)
{
    lc->phase = (lc->id * 97u + lc->gen * 31u) % PERIOD;
    lc->sent = lc->recvd = lc->done_off = 0;
}

static int echo_send(struct lconn *lc, struct req *r)
{
    const struct load_opts *o = lc->w->o;
    size_t size = o->size_min;
    if (o->size_max > o->size_min)
        size += sched_rand(&lc->rng) % (o->size_max - o->size_min + 1);
    struct iovec iov = {pattern + (lc->phase + lc->sent) % PERIOD, size};
    int rc = rill_send(lc->c, &iov, 1, NULL, NULL);
    if (rc < 0)
        return rc;
    lc->sent += size;
    r->end = lc->sent;
    return 0;
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

static void mismatch(struct lconn *lc, const uint8_t *p, size_t len, size_t good, size_t owed)
{
    struct worker *w = lc->w;
    bool extra = good == owed; /* every owed byte was right; more came than we sent */
    if (mismatch_reports[w->index]++ < MISMATCH_REPORTS) {
        uint64_t at = lc->recvd + good;
        if (!extra)
            fprintf(stderr, "rill-load: connection %u: reply byte %llu is 0x%02x, sent 0x%02x\n",
                    lc->id, (unsigned long long)at, p[good],
                    pattern[(lc->phase + at) % PERIOD]);
        else
            fprintf(stderr, "rill-load: connection %u: %zu bytes came back beyond the %llu sent\n",
                    lc->id, len - good, (unsigned long long)lc->sent);
    }
    if (!extra)
        w->mismatch_any++; /* fails the run even when it happened during warm-up */
    conn_fail(lc, extra ? ERR_EXTRA : ERR_GARBAGE, 0); /* out of step: start afresh */
}

/* unix+seqpacket: a reply is one message, exactly as long as its request. */
static bool seqpacket_whole(struct lconn *lc, size_t len)
{
    if (!lc->inflight) {
        conn_fail(lc, ERR_EXTRA, 0);
        return false;
    }
    uint64_t want = lc->ring[lc->head].end - lc->done_off;
    if (len == want)
        return true;
    conn_fail(lc, len < want ? ERR_SHORT : ERR_EXTRA, 0);
    return false;
}

static void echo_data(struct lconn *lc, const uint8_t *p, size_t len, uint64_t now)
{
    if (lc->w->o->seqpacket && !seqpacket_whole(lc, len))
        return;
    uint64_t owed = lc->sent - lc->recvd;
    size_t good = verify(lc, p, len < owed ? len : (size_t)owed);
    if (good < len) {
        mismatch(lc, p, len, good, (size_t)(owed < len ? owed : len));
        return;
    }
    lc->recvd += len;
    while (lc->inflight && lc->ring[lc->head].end <= lc->recvd) {
        lc->done_off = lc->ring[lc->head].end;
        if (!conn_complete(lc, now))
            return;
    }
}

static bool echo_partial(const struct lconn *lc)
{
    return lc->recvd > lc->done_off;
}

const struct proto proto_echo = {
    .send = echo_send, .data = echo_data, .reset = echo_reset, .partial = echo_partial};
