/* A log-linear latency histogram in the manner of HdrHistogram, fixed to nanoseconds.
 *
 * Bucket i < 2^S (S = HIST_SUB_BITS) holds exactly the value i. Above that, octave k >= 1 covers
 * [2^(S+k-1), 2^(S+k)) in 2^S equal steps of 2^(k-1): the step is at most 1/2^S of any value in
 * the octave, hence the bounded relative error. Recording is a count-leading-zeros, a shift and
 * an increment, cheap enough for every request. */
#include <string.h>

#include "load.h"

#define SUB (1u << HIST_SUB_BITS)

unsigned hist_bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    if (msb >= HIST_MAX_BITS)
        return HIST_BUCKETS - 1;
    unsigned shift = msb - HIST_SUB_BITS;
    return ((shift + 1) << HIST_SUB_BITS) + (unsigned)((v >> shift) - SUB);
}

uint64_t hist_bucket_low(unsigned i)
{
    unsigned octave = i >> HIST_SUB_BITS;
    if (octave == 0)
        return i;
    return (uint64_t)(SUB + (i & (SUB - 1))) << (octave - 1);
}

/* The highest value that lands in bucket i (the top bucket also holds everything above). */
uint64_t hist_bucket_top(unsigned i)
{
    unsigned octave = i >> HIST_SUB_BITS;
    if (octave == 0)
        return i;
    unsigned shift = octave - 1;
    uint64_t low = (uint64_t)(SUB + (i & (SUB - 1))) << shift;
    return low + ((uint64_t)1 << shift) - 1;
}

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_record(struct hist *h, uint64_t ns)
{
    h->b[hist_bucket_of(ns)]++;
    h->count++;
    h->sum += (long double)ns;
    if (ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    if (from->count == 0)
        return;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q >= 1.0)
        return h->max;
    /* The rank of the value wanted, 1-based: the smallest r with r >= q * count. */
    uint64_t rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count)
        rank++;
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_top(i);
            return v > h->max ? h->max : v < h->min ? h->min : v;
        }
    }
    return h->max;
}
