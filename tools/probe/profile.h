/* rill-probe --profile: where in the kernel a cell spends its CPU time.
 *
 * perf_event_open samples the cell (software cpu-clock, kernel and user callchains) with one
 * mmap ring per side thread (thread scope) or one per CPU keeping only the side threads'
 * samples (CPU scope, the default where it is allowed: profile.c says why); the main thread, which watches the cell anyway,
 * drains the rings every tick (tally.c). Kernel frames are resolved from /proc/kallsyms (ksyms.c) and each
 * sample is given one phase (phases.c) by the rule written there. */
#ifndef RILL_PROBE_PROFILE_H
#define RILL_PROBE_PROFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum probe_phase {
    PHASE_SYSCALL,
    PHASE_SOCKET,
    PHASE_TCP_TX,
    PHASE_UDP_TX,
    PHASE_RX,
    PHASE_DEVICE,
    PHASE_COPY,
    PHASE_WAKEUP,
    PHASE_IO_URING,
    PHASE_MEMORY,
    PHASE_USER,
    PHASE_OTHER,
    PHASE_COUNT
};

#define PROBE_PROF_TOP_MAX 32
#define PROBE_PROF_UNMAPPED 8 /* unmapped leaf functions listed per cell */
#define PROBE_PROF_HZ_DEFAULT 4000 /* samples per second of CPU time (--profile-hz), as perf record */

struct probe_prof_fn {
    char name[64];
    double pct;
};

/* A cell's profile, kept in its result. */
struct probe_profile {
    bool on;          /* a profile was taken (false: off, or sampling was denied: see why) */
    uint64_t samples; /* kernel and user samples of both threads */
    uint64_t lost;    /* samples the kernel could not write (ring full) */
    uint64_t period_ns; /* CPU time each sample stands for */
    double phase_pct[PHASE_COUNT]; /* sums to 100 when samples > 0 */
    unsigned ntop, nunmapped;
    struct probe_prof_fn top[PROBE_PROF_TOP_MAX]; /* leaf kernel functions, share of all samples */
    /* Leaf functions the phase table does not name (their samples went to a caller's phase, or
     * to `other` when no frame of the chain is named): the table's next entries. */
    struct probe_prof_fn unmapped[PROBE_PROF_UNMAPPED];
    char why[200]; /* why there is no profile */
};

/* One perf_event_open counter and its mmap ring. */
struct probe_prof_ring {
    int fd; /* -1 when closed */
    void *ring;
    size_t ring_len; /* the mmap'd length, one header page plus the data pages */
};

/* One side thread's part in sampling. In thread scope the side thread opens and enables its
 * own ring; in CPU scope the main thread holds one ring per CPU and keeps the samples of the
 * side threads (by tid) taken after their start (t0). The side thread publishes with release
 * (`ready`), the main thread reads with acquire. */
struct probe_prof_side {
    struct probe_prof_ring r; /* thread scope */
    int ready;
    int err; /* -errno of perf_event_open or mmap */
    int tid;
    uint64_t t0_ns; /* CLOCK_MONOTONIC, when the side's run started */
};

/* AUTO, the default, is CPU where this process may open CPU counters, else THREAD. */
enum probe_prof_scope { PROF_SCOPE_AUTO, PROF_SCOPE_THREAD, PROF_SCOPE_CPU };

/* phases.c: the phase table. */
const char *probe_phase_name(enum probe_phase p);
int probe_phase_parse(const char *name);
/* The phase the table gives a kernel function, PHASE_OTHER when it names none; *named says
 * whether it did (a function the table does not know is `other` and "unmapped"). */
enum probe_phase probe_phase_classify(const char *fn, bool *named);

/* ksyms.c: /proc/kallsyms, sorted by address, searched by binary search. */
int probe_ksyms_load(char *why, size_t n);   /* once per run; 0 or -errno */
/* The index of the function containing addr, or -1. */
long probe_ksyms_find(uint64_t addr);
const char *probe_ksyms_name(long idx);
size_t probe_ksyms_count(void);
/* Memoised classification of symbol idx (phase, and whether the table named it). */
enum probe_phase probe_ksyms_phase(long idx, bool *named);

/* profile.c */
struct probe_cell;
struct probe_side;
struct probe_opts;
/* Whether this process may sample kernel callchains in the scope asked for; when not, fills
 * why with the reason and the setting that fixes it. Probed with a short-lived counter. */
bool probe_profile_available(enum probe_prof_scope scope, char *why, size_t n);
void probe_prof_side_start(struct probe_side *s); /* on the side thread, before the barrier */
void probe_prof_side_run(struct probe_side *s, bool on); /* after the barrier / at the end */
void probe_prof_cell_begin(struct probe_cell *c);  /* main thread, before the side threads */
void probe_prof_drain(struct probe_cell *c, struct probe_side *sides, unsigned nsides);
/* After the threads ended: the last drain, the cell's shares and top functions, folded stacks. */
void probe_prof_cell_end(struct probe_cell *c, struct probe_side *sides, unsigned nsides);
/* --folded FILE: stacks of every profiled cell, "frame;frame;... count" lines. */
int probe_prof_folded_open(const char *path, char *why, size_t n);
void probe_prof_folded_close(void);

#endif
