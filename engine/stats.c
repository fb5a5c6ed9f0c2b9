/* Per-loop counters. Most are bumped where the event happens (the system-call shim, conn.c,
 * listener.c); the slab and timer gauges are read from their owners at snapshot time so the hot
 * paths do not keep two copies. */
#include <string.h>

#include "loop.h"

void rill_loop_stats(const rill_loop *l, struct rill_loop_stats *out)
{
    if (!out)
        return;
    if (!l) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = l->stats;
    /* Buffers waiting empty in the kernel's ring are pooled memory, not data being held. */
    out->bufs_in_use = l->slab.in_use - l->stats.bufs_in_ring;
    out->buf_bytes_mapped = l->slab.mapped;
    out->buf_budget = l->slab.budget;
    out->buf_exhausted = l->slab.exhausted;
    out->buf_bytes_trimmed = l->slab.trimmed;
    out->mem_held = l->slab.held;
    out->mem_ceiling = l->slab.held_limit == SIZE_MAX ? UINT64_MAX : l->slab.held_limit;
    out->mem_pauses = l->slab.held_pauses;
    out->timers_fired = l->wheel.fired;
}
