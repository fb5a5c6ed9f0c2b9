/* A profiled cell's samples: read from the mmap rings, given a phase, counted.
 *
 * Only the main thread reads the rings and the tallies: it drains every ring each watchdog
 * tick, as the one consumer perf_event_open(2) allows per ring (data_head read with acquire,
 * data_tail written with release). A record that wraps around the end of the ring is copied
 * out whole before it is parsed.
 *
 * A sample's phase is decided by its kernel callchain, walked from the leaf: the first frame
 * the phase table names (phases.c says why); a sample with no kernel frame was taken in user
 * space. Each sample stands for one period (--profile-hz) of CPU time. */
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "probe.h"
#include "profile_int.h"

#define MAX_FRAMES 128

static uint64_t phase_count[PHASE_COUNT], samples, lost;
static uint32_t *leaf_count; /* per kernel symbol, probe_ksyms_count() entries */
static long *touched;        /* symbols with a non-zero leaf_count */
static size_t ntouched;

void probe_tally_begin(void)
{
    memset(phase_count, 0, sizeof phase_count);
    samples = lost = 0;
    for (size_t i = 0; i < ntouched; i++)
        leaf_count[touched[i]] = 0;
    ntouched = 0;
    if (!leaf_count && probe_ksyms_count()) {
        leaf_count = calloc(probe_ksyms_count(), sizeof *leaf_count);
        touched = calloc(probe_ksyms_count(), sizeof *touched);
        if (!leaf_count || !touched) {
            free(leaf_count);
            free(touched);
            leaf_count = NULL;
            touched = NULL;
        }
    }
}

/* One sample: its kernel frames (leaf first) and user frames (leaf first). */
static void account(const uint64_t *kern, unsigned nk, const uint64_t *user, unsigned nu,
                    int side)
{
    long sym[MAX_FRAMES];
    enum probe_phase phase = nk ? PHASE_OTHER : PHASE_USER;
    bool decided = false;
    for (unsigned i = 0; i < nk; i++) {
        bool named;
        sym[i] = probe_ksyms_find(kern[i]);
        enum probe_phase p = probe_ksyms_phase(sym[i], &named);
        if (named && !decided) {
            phase = p;
            decided = true;
        }
    }
    samples++;
    phase_count[phase]++;
    if (nk && sym[0] >= 0 && leaf_count && leaf_count[sym[0]]++ == 0)
        touched[ntouched++] = sym[0];
    probe_prof_folded_add(sym, nk, user, nu, side);
}

/* The side a CPU ring's sample belongs to, or -1 when it is not the cell's. */
static int side_of(uint32_t tid, uint64_t time, const struct probe_side *sides, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (__atomic_load_n(&sides[i].prof.ready, __ATOMIC_ACQUIRE) &&
            (uint32_t)sides[i].prof.tid == tid)
            return time >= sides[i].prof.t0_ns ? (int)i : -1;
    return -1;
}

static void parse_sample(const unsigned char *rec, size_t len, int side,
                         const struct probe_side *sides, unsigned nsides, bool pair)
{
    /* PERF_SAMPLE_IP, _TID, _TIME, _CALLCHAIN, in that order after the header. */
    size_t off = sizeof(struct perf_event_header) + 8;
    uint32_t pid_tid[2];
    uint64_t time, nr;
    if (off + 24 > len)
        return;
    memcpy(pid_tid, rec + off, 8);
    memcpy(&time, rec + off + 8, 8);
    memcpy(&nr, rec + off + 16, 8);
    off += 24;
    if (nr > (len - off) / 8)
        return;
    if (side < 0 && (side = side_of(pid_tid[1], time, sides, nsides)) < 0)
        return;
    uint64_t kern[MAX_FRAMES], user[MAX_FRAMES], ctx = 0;
    unsigned nk = 0, nu = 0;
    for (uint64_t i = 0; i < nr; i++) {
        uint64_t ip;
        memcpy(&ip, rec + off + i * 8, 8);
        if (ip >= (uint64_t)PERF_CONTEXT_MAX) {
            ctx = ip;
            continue;
        }
        if (ctx == (uint64_t)PERF_CONTEXT_KERNEL && nk < MAX_FRAMES)
            kern[nk++] = ip;
        else if (ctx == (uint64_t)PERF_CONTEXT_USER && nu < MAX_FRAMES)
            user[nu++] = ip;
    }
    account(kern, nk, user, nu, pair ? 2 : side);
}

void probe_tally_drain(struct probe_prof_ring *r, int side, const struct probe_side *sides,
                       unsigned nsides, bool pair)
{
    if (r->fd < 0 || !r->ring)
        return;
    struct perf_event_mmap_page *mp = r->ring;
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t size = mp->data_size ? mp->data_size : r->ring_len - page;
    unsigned char *data = (unsigned char *)r->ring + (mp->data_offset ? mp->data_offset : page);
    uint64_t head = __atomic_load_n(&mp->data_head, __ATOMIC_ACQUIRE), tail = mp->data_tail;
    static unsigned char rec[65536];
    while (tail + sizeof(struct perf_event_header) <= head) {
        struct perf_event_header h;
        for (size_t i = 0; i < sizeof h; i++)
            ((unsigned char *)&h)[i] = data[(tail + i) % size];
        if (h.size < sizeof h || tail + h.size > head)
            break;
        for (size_t i = 0; i < h.size; i++)
            rec[i] = data[(tail + i) % size];
        if (h.type == PERF_RECORD_SAMPLE) {
            parse_sample(rec, h.size, side, sides, nsides, pair);
        } else if (h.type == PERF_RECORD_LOST && h.size >= sizeof h + 16) {
            uint64_t n;
            memcpy(&n, rec + sizeof h + 8, 8);
            lost += n; /* in CPU scope, other threads' samples too: an upper bound */
        }
        tail += h.size;
    }
    __atomic_store_n(&mp->data_tail, tail, __ATOMIC_RELEASE);
}

static int cmp_leaf(const void *a, const void *b)
{
    uint32_t x = leaf_count[*(const long *)a], y = leaf_count[*(const long *)b];
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The cell's top leaf functions, and the unnamed ones among them. */
static void top_functions(struct probe_profile *pr, unsigned ntop)
{
    if (!leaf_count)
        return;
    qsort(touched, ntouched, sizeof *touched, cmp_leaf);
    for (size_t i = 0; i < ntouched; i++) {
        long s = touched[i];
        double pct = 100.0 * leaf_count[s] / (double)samples;
        bool named;
        probe_ksyms_phase(s, &named);
        if (pr->ntop < ntop) {
            snprintf(pr->top[pr->ntop].name, sizeof pr->top[0].name, "%s", probe_ksyms_name(s));
            pr->top[pr->ntop++].pct = pct;
        }
        if (!named && pr->nunmapped < PROBE_PROF_UNMAPPED) {
            snprintf(pr->unmapped[pr->nunmapped].name, sizeof pr->unmapped[0].name, "%s",
                     probe_ksyms_name(s));
            pr->unmapped[pr->nunmapped++].pct = pct;
        }
    }
}

void probe_tally_end(struct probe_profile *pr, unsigned ntop)
{
    pr->samples = samples;
    pr->lost = lost;
    pr->on = samples > 0;
    if (!samples && !pr->why[0])
        snprintf(pr->why, sizeof pr->why, "no samples (the cell used under %llu us of CPU)",
                 (unsigned long long)pr->period_ns / 1000);
    for (int p = 0; p < PHASE_COUNT && samples; p++)
        pr->phase_pct[p] = 100.0 * (double)phase_count[p] / (double)samples;
    if (samples)
        top_functions(pr, ntop);
}
