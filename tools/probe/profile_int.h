/* Between profile.c (sampling, tallies) and folded.c (--folded stacks). Main thread only. */
#ifndef RILL_PROBE_PROFILE_INT_H
#define RILL_PROBE_PROFILE_INT_H

#include <stdint.h>

struct probe_cell;

void probe_prof_folded_begin(const struct probe_cell *c);
/* One sample: kernel symbols (leaf first, -1 unknown), user addresses (leaf first); side 0
 * client, 1 server, 2 the single thread of a pair cell. */
void probe_prof_folded_add(const long *ksym, unsigned nk, const uint64_t *user, unsigned nu,
                           int side);
void probe_prof_folded_end(const struct probe_cell *c);

#endif
