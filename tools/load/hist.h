/* rill-load's latency histogram (hist.c): plain C with no atomics, so the google-benchmark of it
 * (bench/micro/bench_hist.cc) can include it too. */
#ifndef RILL_LOAD_HIST_H
#define RILL_LOAD_HIST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Values are nanoseconds. Below 2^HIST_SUB_BITS they are exact; above, each power of two is split
 * into 2^HIST_SUB_BITS linear sub-buckets, so a bucket is at most 1/128 of its value wide: under
 * 0.8 % relative error. Values from 2^HIST_MAX_BITS ns (73 minutes) on share the top bucket; max
 * stays exact. */
#define HIST_SUB_BITS 7
#define HIST_MAX_BITS 42
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) << HIST_SUB_BITS) /* 4608 */

struct hist {
    uint64_t count;
    uint64_t min, max; /* exact; min is UINT64_MAX while empty */
    long double sum;   /* for the mean; long double keeps ns sums over hours exact enough */
    uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t ns);
void hist_merge(struct hist *into, const struct hist *from);
/* The value at quantile q (0..1): the top of the bucket holding it, clamped to [min, max]. */
uint64_t hist_quantile(const struct hist *h, double q);
/* The bucket a value lands in, and the lowest and highest value of bucket i. */
unsigned hist_bucket_of(uint64_t v);
uint64_t hist_bucket_low(unsigned i);
uint64_t hist_bucket_top(unsigned i);

#ifdef __cplusplus
}
#endif

#endif
