/* --profile output: the phase shares and top kernel functions under each table row, the
 * "profile" object of a JSON cell, and --compare's side-by-side table of two strategies. */
#include <stdio.h>
#include <string.h>

#include "probe.h"

static void fn_list(const char *title, const struct probe_prof_fn *f, unsigned n)
{
    printf("    %s:", title);
    for (unsigned i = 0; i < n; i++)
        printf("%s %s %.1f%%", i ? "," : "", f[i].name, f[i].pct);
    printf("\n");
}

void probe_report_profile_row(const struct probe_cell *c)
{
    const struct probe_profile *p = &c->res.prof;
    if (c->res.status != CELL_OK && c->res.ops == 0)
        return;
    if (!c->opts->profile) {
        if (c->opts->profile_why[0])
            printf("    profile: none (%s)\n", c->opts->profile_why);
        return;
    }
    if (!p->on) {
        printf("    profile: none (%s)\n", p->why);
        return;
    }
    printf("    phases (%llu samples, %s scope%s):", (unsigned long long)p->samples,
           c->opts->profile_scope == PROF_SCOPE_CPU ? "cpu" : "thread",
           p->lost ? ", some lost" : "");
    for (int i = 0; i < PHASE_COUNT; i++)
        if (p->phase_pct[i] >= 0.05)
            printf(" %s %.1f%%", probe_phase_name(i), p->phase_pct[i]);
    printf("\n");
    fn_list("top", p->top, p->ntop);
    if (p->nunmapped)
        fn_list("not in the phase table", p->unmapped, p->nunmapped);
    fflush(stdout);
}

static void json_fns(const char *key, const struct probe_prof_fn *f, unsigned n)
{
    printf(",\"%s\":[", key);
    for (unsigned i = 0; i < n; i++)
        printf("%s{\"function\":\"%s\",\"percent\":%.2f}", i ? "," : "", f[i].name, f[i].pct);
    printf("]");
}

/* Kernel symbol names are [A-Za-z0-9_.$], so they need no JSON escaping. */
void probe_report_profile_json(const struct probe_cell *c)
{
    const struct probe_profile *p = &c->res.prof;
    const char *why = c->opts->profile ? p->why : c->opts->profile_why;
    if (!c->opts->profile && !why[0])
        return;
    if (!p->on) {
        printf(",\"profile\":{\"samples\":0,\"reason\":\"");
        for (const char *s = why; *s; s++)
            printf(*s == '"' || *s == '\\' ? "\\%c" : "%c", *s);
        printf("\"}");
        return;
    }
    printf(",\"profile\":{\"samples\":%llu,\"lost\":%llu,\"period_ns\":%llu,\"scope\":\"%s\","
           "\"phases\":{",
           (unsigned long long)p->samples, (unsigned long long)p->lost,
           (unsigned long long)p->period_ns,
           c->opts->profile_scope == PROF_SCOPE_CPU ? "cpu" : "thread");
    for (int i = 0; i < PHASE_COUNT; i++)
        printf("%s\"%s\":%.2f", i ? "," : "", probe_phase_name(i), p->phase_pct[i]);
    printf("}");
    json_fns("top", p->top, p->ntop);
    json_fns("unmapped", p->unmapped, p->nunmapped);
    printf("}");
}

/* CPU ns per operation spent in phase ph: the phase's share of both threads' CPU time. */
static double phase_ns(const struct probe_cell *c, int ph)
{
    const struct probe_result *r = &c->res;
    return r->prof.phase_pct[ph] / 100.0 * (r->side[0].cpu_ns_per_op + r->side[1].cpu_ns_per_op);
}

static const struct probe_cell *find_peer(const struct probe_cell *cells, size_t n,
                                          const struct probe_cell *a, int strategy)
{
    for (size_t j = 0; j < n; j++)
        if ((int)cells[j].strategy == strategy && cells[j].transport == a->transport &&
            cells[j].mode == a->mode && cells[j].size == a->size)
            return &cells[j];
    return NULL;
}

/* "B spends 41% less in syscall and 12% more in io_uring than A": the phases whose cost per
 * operation fell and rose the most, the larger change first. */
static void verdict(const struct probe_cell *a, const struct probe_cell *b)
{
    int lo = -1, hi = -1;
    double dlo = 0, dhi = 0;
    for (int i = 0; i < PHASE_COUNT; i++) {
        double d = phase_ns(b, i) - phase_ns(a, i);
        if (d < dlo) {
            dlo = d;
            lo = i;
        }
        if (d > dhi) {
            dhi = d;
            hi = i;
        }
    }
    const char *an = probe_strategy_get(a->strategy)->name;
    const char *bn = probe_strategy_get(b->strategy)->name;
    char part[2][96] = {"", ""};
    if (lo >= 0)
        snprintf(part[0], sizeof part[0], "%.0f%% less in %s (%.0f ns/op less)",
                 100.0 * -dlo / phase_ns(a, lo), probe_phase_name(lo), -dlo);
    if (hi >= 0 && phase_ns(a, hi) >= 0.5)
        snprintf(part[1], sizeof part[1], "%.0f%% more in %s (%.0f ns/op more)",
                 100.0 * dhi / phase_ns(a, hi), probe_phase_name(hi), dhi);
    else if (hi >= 0)
        snprintf(part[1], sizeof part[1], "%.0f ns/op in %s (none in %s)", dhi,
                 probe_phase_name(hi), an);
    int first = -dlo >= dhi ? 0 : 1;
    if (lo < 0 && hi < 0) {
        printf("  %s and %s spend the same in every phase\n", bn, an);
        return;
    }
    printf("  %s spends %s%s%s than %s; the phase that differs most: %s\n", bn, part[first],
           part[!first][0] && part[first][0] ? " and " : "", part[!first], an,
           probe_phase_name(first == 0 ? lo : hi));
}

static void compare_one(const struct probe_cell *a, const struct probe_cell *b)
{
    const char *an = probe_strategy_get(a->strategy)->name;
    const char *bn = probe_strategy_get(b->strategy)->name;
    printf("\ncompare: %s %s %zu B, CPU ns per operation (both threads) by phase\n",
           probe_transport_name(a->transport), probe_mode_name(a->mode), a->size);
    if (a->res.status != CELL_OK || b->res.status != CELL_OK || !a->res.prof.on ||
        !b->res.prof.on) {
        const struct probe_cell *x = a->res.status != CELL_OK || !a->res.prof.on ? a : b;
        printf("  %s: no profile (%s)\n", probe_strategy_get(x->strategy)->name,
               x->res.status != CELL_OK ? x->res.why
               : x->res.prof.why[0]     ? x->res.prof.why
                                        : x->opts->profile_why);
        return;
    }
    printf("  %-10s %14s %14s %9s\n", "phase", an, bn, "B/A");
    printf("  %-10s %14s %14s\n", "", "ns/op  share", "ns/op  share");
    double ta = 0, tb = 0;
    for (int i = 0; i < PHASE_COUNT; i++) {
        double x = phase_ns(a, i), y = phase_ns(b, i);
        ta += x;
        tb += y;
        if (x < 0.5 && y < 0.5)
            continue;
        char ratio[16] = "-";
        if (x >= 0.5)
            snprintf(ratio, sizeof ratio, "%.2fx", y / x);
        printf("  %-10s %9.0f %3.0f%% %9.0f %3.0f%% %9s\n", probe_phase_name(i), x,
               a->res.prof.phase_pct[i], y, b->res.prof.phase_pct[i], ratio);
    }
    printf("  %-10s %14.0f %14.0f %8.2fx\n", "total", ta, tb, ta > 0 ? tb / ta : 0.0);
    verdict(a, b);
}

static double absd(double x)
{
    return x < 0 ? -x : x;
}

/* The phase whose cost per operation differs most between a and b. */
static int most_different(const struct probe_cell *a, const struct probe_cell *b)
{
    int best = 0;
    for (int i = 1; i < PHASE_COUNT; i++)
        if (absd(phase_ns(b, i) - phase_ns(a, i)) > absd(phase_ns(b, best) - phase_ns(a, best)))
            best = i;
    return best;
}

static void compare_json_one(const struct probe_cell *a, const struct probe_cell *b)
{
    printf("{\"transport\":\"%s\",\"mode\":\"%s\",\"size\":%zu,\"a\":\"%s\",\"b\":\"%s\"",
           probe_transport_name(a->transport), probe_mode_name(a->mode), a->size,
           probe_strategy_get(a->strategy)->name, probe_strategy_get(b->strategy)->name);
    if (a->res.status != CELL_OK || b->res.status != CELL_OK || !a->res.prof.on ||
        !b->res.prof.on) {
        printf(",\"profiled\":false}");
        return;
    }
    printf(",\"profiled\":true,\"phases\":{");
    for (int i = 0; i < PHASE_COUNT; i++) {
        double x = phase_ns(a, i), y = phase_ns(b, i);
        printf("%s\"%s\":{\"a_ns_per_op\":%.1f,\"b_ns_per_op\":%.1f", i ? "," : "",
               probe_phase_name(i), x, y);
        if (x >= 0.5)
            printf(",\"ratio\":%.3f", y / x);
        printf("}");
    }
    printf("},\"most_different\":\"%s\"}", probe_phase_name(most_different(a, b)));
}

/* The "compare" array of --compare --json: per transport, mode and size, both strategies'
 * CPU ns per operation in each phase, the ratio B/A, and the phase that differs most. */
void probe_report_compare_json(const struct probe_cell *cells, size_t n,
                               const struct probe_opts *o)
{
    bool first = true;
    printf(",\"compare\":[");
    for (size_t i = 0; i < n; i++) {
        if ((int)cells[i].strategy != o->compare[0])
            continue;
        const struct probe_cell *b = find_peer(cells, n, &cells[i], o->compare[1]);
        if (!b || cells[i].res.status == CELL_NA || b->res.status == CELL_NA)
            continue;
        printf("%s\n", first ? "" : ",");
        first = false;
        compare_json_one(&cells[i], b);
    }
    printf("\n]");
}

void probe_report_compare(struct probe_cell *cells, size_t n, const struct probe_opts *o)
{
    for (size_t i = 0; i < n; i++) {
        if ((int)cells[i].strategy != o->compare[0])
            continue;
        const struct probe_cell *b = find_peer(cells, n, &cells[i], o->compare[1]);
        if (b && cells[i].res.status != CELL_NA && b->res.status != CELL_NA)
            compare_one(&cells[i], b);
    }
}
