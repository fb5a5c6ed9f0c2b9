/* rill-load's parts that need no network: the histogram (accuracy against a sorted array,
 * range, merge equals the histogram of the union), the JSON writer and reader (a histogram
 * survives the round trip), the HTTP response parser (lengths, chunks, pipelining, any split,
 * garbage) and the open-loop schedule's arithmetic. */
#include <math.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "load.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Log-uniform values from 1 us to 1 h: every octave the histogram has gets some. */
static uint64_t random_latency(uint64_t *rng)
{
    double lo = log(1e3), hi = log(3600e9);
    double u = (double)(sched_rand(rng) >> 11) / 9007199254740992.0;
    return (uint64_t)exp(lo + u * (hi - lo));
}

static const double qs[] = {0.0001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0};

/* The exact quantile by the same rank rule as hist_quantile: the smallest r >= q * n. */
static uint64_t exact_quantile(const uint64_t *sorted, size_t n, double q)
{
    uint64_t rank = (uint64_t)ceil(q * (double)n);
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

static void check_against(const struct hist *h, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_u64);
    cr_assert_eq(h->count, n);
    cr_assert_eq(h->min, v[0]);
    cr_assert_eq(h->max, v[n - 1]);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        uint64_t want = exact_quantile(v, n, qs[i]), got = hist_quantile(h, qs[i]);
        double rel = fabs((double)got - (double)want) / (double)want;
        cr_assert_leq(rel, 0.01, "q %g: histogram %llu, exact %llu (%.3f%% off)", qs[i],
                      (unsigned long long)got, (unsigned long long)want, rel * 100);
    }
}

Test(load_hist, accuracy_against_sorted_array)
{
    enum { N = 200000 };
    static struct hist h;
    static uint64_t v[N];
    uint64_t rng = 12345;
    hist_init(&h);
    for (size_t i = 0; i < N; i++) {
        v[i] = random_latency(&rng);
        hist_record(&h, v[i]);
    }
    check_against(&h, v, N);
}

Test(load_hist, every_bucket_within_one_percent)
{
    /* 1 us (1000 ns) up to past an hour: the bucket of any value is at most 1% wide. */
    for (unsigned i = hist_bucket_of(1000); i < HIST_BUCKETS - 1; i++) {
        uint64_t lo = hist_bucket_low(i), top = hist_bucket_top(i);
        cr_assert_eq(hist_bucket_of(lo), i);
        cr_assert_eq(hist_bucket_of(top), i);
        cr_assert_eq(hist_bucket_of(top + 1), i + 1);
        cr_assert_leq((double)(top - lo) / (double)lo, 0.01, "bucket %u [%llu, %llu]", i,
                      (unsigned long long)lo, (unsigned long long)top);
    }
    uint64_t hour = 3600ull * 1000000000ull;
    cr_assert_lt(hist_bucket_of(hour), HIST_BUCKETS - 1, "an hour must not land in the overflow");
}

Test(load_hist, merge_equals_union)
{
    enum { N = 50000 };
    static struct hist a, b, merged, all;
    static uint64_t v[2 * N];
    uint64_t rng = 777;
    hist_init(&a);
    hist_init(&b);
    hist_init(&all);
    for (size_t i = 0; i < 2 * N; i++) {
        /* Two different distributions: a narrow fast one and a wide slow one. */
        v[i] = i < N ? 20000 + sched_rand(&rng) % 30000 : random_latency(&rng);
        hist_record(i < N ? &a : &b, v[i]);
        hist_record(&all, v[i]);
    }
    hist_init(&merged);
    hist_merge(&merged, &a);
    hist_merge(&merged, &b);
    cr_assert_eq(memcmp(merged.b, all.b, sizeof all.b), 0, "buckets differ");
    cr_assert_eq(merged.count, all.count);
    cr_assert_eq(merged.min, all.min);
    cr_assert_eq(merged.max, all.max);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        cr_assert_eq(hist_quantile(&merged, qs[i]), hist_quantile(&all, qs[i]));
    check_against(&merged, v, 2 * N);
    /* And what averaging would have said is wrong here: the test can tell the two apart. */
    double avg = ((double)hist_quantile(&a, 0.99) + (double)hist_quantile(&b, 0.99)) / 2;
    cr_assert_gt(fabs(avg - (double)hist_quantile(&all, 0.99)) / avg, 0.05);
}

Test(load_json, histogram_round_trip_and_merge_file)
{
    static struct hist h, back;
    uint64_t rng = 99;
    hist_init(&h);
    for (int i = 0; i < 10000; i++)
        hist_record(&h, random_latency(&rng));
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    struct jw *j = jw_open(f);
    jw_hist(j, "h", &h);
    jw_str(j, "s", "a \"quoted\"\\ line\n");
    jw_close(j);
    fclose(f);
    size_t at = 0;
    struct jv *root = jv_parse(text, &at);
    cr_assert_not_null(root, "parse failed at %zu: %s", at, text);
    cr_assert_eq(jv_hist(jv_get(root, "h"), &back), 0);
    cr_assert_eq(memcmp(h.b, back.b, sizeof h.b), 0);
    cr_assert_eq(back.count, h.count);
    cr_assert_eq(back.max, h.max);
    cr_assert_eq(back.min, h.min);
    const struct jv *s = jv_get(root, "s");
    cr_assert_str_eq(s->str, "a \"quoted\"\\ line\n");
    jv_free(root);
    free(root);
    free(text);
    cr_assert_null(jv_parse("{\"a\": [1, 2,]}", &at), "trailing comma must be refused");
    cr_assert_null(jv_parse("{\"a\": 1} x", &at));
}

/* ---- the HTTP parser ----------------------------------------------------------------------- */

static const char pipelined[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello"
    "HTTP/1.1 100 Continue\r\n\r\n"
    "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
    "3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: y\r\n\r\n"
    "HTTP/1.1 204 No Content\r\n\r\n"
    "HTTP/1.0 200 OK\r\ncontent-length: 0\r\nConnection: close\r\n\r\n";

Test(load_http, pipelined_responses_in_one_piece)
{
    struct http_parse hp = {0};
    int status = 0;
    size_t used;
    int n = http_parse_feed(&hp, (const uint8_t *)pipelined, strlen(pipelined), &status, &used);
    cr_assert_eq(n, 4);
    cr_assert_eq(used, strlen(pipelined));
    cr_assert_eq(status, 200);
    cr_assert(hp.close, "Connection: close must be seen");
}

Test(load_http, any_split_gives_the_same_responses)
{
    size_t len = strlen(pipelined);
    for (size_t cut = 1; cut < len; cut++) {
        struct http_parse hp = {0};
        int status = 0, n = 0, r;
        size_t used;
        r = http_parse_feed(&hp, (const uint8_t *)pipelined, cut, &status, &used);
        cr_assert_geq(r, 0, "cut %zu", cut);
        n += r;
        r = http_parse_feed(&hp, (const uint8_t *)pipelined + cut, len - cut, &status, &used);
        cr_assert_geq(r, 0, "cut %zu", cut);
        n += r;
        cr_assert_eq(n, 4, "cut at %zu gave %d responses", cut, n);
    }
    /* Byte by byte too. */
    struct http_parse hp = {0};
    int status = 0, n = 0;
    size_t used;
    for (size_t i = 0; i < len; i++)
        n += http_parse_feed(&hp, (const uint8_t *)pipelined + i, 1, &status, &used);
    cr_assert_eq(n, 4);
}

Test(load_http, garbage_is_refused)
{
    static const char *const bad[] = {
        "SSH-2.0-OpenSSH\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n", /* neither a length nor chunks: ends only at a close */
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct http_parse hp = {0};
        int status = 0;
        size_t used;
        cr_assert_eq(http_parse_feed(&hp, (const uint8_t *)bad[i], strlen(bad[i]), &status, &used),
                     -1, "accepted: %s", bad[i]);
    }
}

/* Parses text in pieces cut at random; returns the responses completed, or -1 on garbage. */
static int parse_in_pieces(const uint8_t *p, size_t len, uint64_t *rng)
{
    struct http_parse hp = {0};
    int status = 0, n = 0;
    size_t off = 0;
    while (off < len) {
        size_t piece = 1 + sched_rand(rng) % 64;
        if (piece > len - off)
            piece = len - off;
        size_t used;
        int r = http_parse_feed(&hp, p + off, piece, &status, &used);
        if (r < 0)
            return -1;
        cr_assert_eq(used, piece, "a piece must be consumed whole when it is not garbage");
        n += r;
        off += piece;
    }
    return n;
}

Test(load_http, random_streams_parse_the_same_in_any_pieces)
{
    /* Random well-formed responses, some then damaged by one random byte: whatever the cut,
     * the parser must agree with itself (and ASan watches every read). */
    static const char *const parts[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\na\r\n0123456789\r\n0\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
    };
    uint64_t rng = 4242;
    uint8_t buf[4096];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0;
        int want = 0;
        for (int k = 0; k < 8; k++) {
            unsigned i = (unsigned)(sched_rand(&rng) % 5);
            size_t n = strlen(parts[i]);
            memcpy(buf + len, parts[i], n);
            len += n;
            want += i != 3; /* 100 Continue is not a response of its own */
        }
        bool damaged = iter % 2;
        if (damaged)
            buf[sched_rand(&rng) % len] = (uint8_t)sched_rand(&rng);
        struct http_parse hp = {0};
        int status = 0;
        size_t used;
        int whole = http_parse_feed(&hp, buf, len, &status, &used);
        if (!damaged)
            cr_assert_eq(whole, want, "iteration %d", iter);
        int pieces = parse_in_pieces(buf, len, &rng);
        cr_assert_eq(whole < 0, pieces < 0, "iteration %d: whole %d, in pieces %d", iter, whole,
                     pieces);
        if (whole >= 0)
            cr_assert_eq(whole, pieces, "iteration %d", iter);
    }
}

/* ---- the schedule's arithmetic ------------------------------------------------------------- */

Test(load_sched, positions_map_to_times)
{
    /* Without a ramp: u requests at r per second are due at u / r. */
    cr_assert_float_eq(sched_time_at(500, 1000, 0), 0.5, 1e-12);
    /* With a 10 s ramp to 100/s: 500 requests are due in the ramp, after it 100/s. */
    cr_assert_float_eq(sched_time_at(500, 100, 10), 10.0, 1e-9);
    cr_assert_float_eq(sched_time_at(125, 100, 10), 5.0, 1e-9); /* N(5) = 100*25/20 */
    cr_assert_float_eq(sched_time_at(600, 100, 10), 11.0, 1e-9);
    /* Poisson gaps have mean 1. */
    uint64_t rng = 5;
    double sum = 0;
    for (int i = 0; i < 200000; i++)
        sum += sched_gap(DIST_POISSON, &rng);
    cr_assert_float_eq(sum / 200000, 1.0, 0.01);
    cr_assert_eq(sched_gap(DIST_EVEN, &rng), 1.0);
}
