/* --repeat N: every cell runs N times, the passes interleaved (A B C ... A B C ...) so that a
 * slow spell of the machine spreads over all cells instead of landing on one; each cell then
 * reports its median pass, with the minimum and maximum of its headline figure. */
#include <stdlib.h>

#include "probe.h"

static double headline(const struct probe_cell *c)
{
    return c->mode == MODE_STREAM ? c->res.bytes_per_s : (double)c->res.p50_ns;
}

static int cmp_headline(const void *a, const void *b)
{
    double x = headline(*(const struct probe_cell *const *)a);
    double y = headline(*(const struct probe_cell *const *)b);
    return x < y ? -1 : x > y;
}

void probe_fold_repeats(struct probe_cell *cells, const struct probe_cell *passes, size_t n,
                        unsigned npasses)
{
    const struct probe_cell *ok[256];
    for (size_t i = 0; i < n; i++) {
        unsigned k = 0;
        for (unsigned p = 0; p < npasses && k < 256; p++)
            if (passes[p * n + i].res.status == CELL_OK)
                ok[k++] = &passes[p * n + i];
        if (k == 0) {
            cells[i] = passes[i]; /* n/a, skipped or failed: the first pass says why */
            continue;
        }
        qsort(ok, k, sizeof ok[0], cmp_headline);
        cells[i] = *ok[(k - 1) / 2];
        cells[i].res.repeats = k;
        cells[i].res.rep_min = headline(ok[0]);
        cells[i].res.rep_max = headline(ok[k - 1]);
    }
}
