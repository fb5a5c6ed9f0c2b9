/* Between profile.c (sampling, tallies) and folded.c (--folded stacks). Main thread only. */
#ifndef RILL_PROBE_PROFILE_INT_H
#define RILL_PROBE_PROFILE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "profile.h"

struct probe_cell;

void probe_prof_folded_begin(const struct probe_cell *c);
/* One sample: kernel symbols (leaf first, -1 unknown), user addresses (leaf first); side 0
 * client, 1 server, 2 the single thread of a pair cell. */
void probe_prof_folded_add(const long *ksym, unsigned nk, const uint64_t *user, unsigned nu,
                           int side);
void probe_prof_folded_end(const struct probe_cell *c);

/* tally.c: a cell's samples, counted by phase and leaf function (main thread only). */
struct probe_side;
void probe_tally_begin(void);
/* Reads what the kernel wrote into r since the last call. side >= 0: every sample is that
 * side's (thread scope); side < 0: a CPU's ring, whose samples are kept only when their tid is
 * one of sides[] and they were taken after its t0. */
void probe_tally_drain(struct probe_prof_ring *r, int side, const struct probe_side *sides,
                       unsigned nsides, bool pair);
void probe_tally_end(struct probe_profile *pr, unsigned ntop);

#endif
