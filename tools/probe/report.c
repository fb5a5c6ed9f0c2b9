/* Output: the readable table (one row per cell, printed as each cell finishes), JSON, and the
 * --matrix ranking of strategies per transport, mode and size. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "probe.h"

static const char *const mode_names[MODE_COUNT] = {"pingpong", "stream", "pair"};
static const char *const status_names[] = {"ok", "n/a", "skipped", "error"};

const char *probe_mode_name(enum probe_mode m)
{
    return (unsigned)m < MODE_COUNT ? mode_names[m] : "?";
}

static const char *strat_name(const struct probe_cell *c)
{
    return probe_strategy_get(c->strategy)->name;
}

void probe_report_header(void)
{
    printf("%-14s %-14s %-8s %6s %8s %9s %9s %9s %11s %17s %13s %s\n", "transport", "strategy",
           "mode", "size", "ops", "p50_ns", "p99_ns", "MB/s", "sys/op c|s", "cpu_ns/op c|s",
           "csw v|iv c|s", "notes");
}

static void zc_note(const struct probe_result *r, char *out, size_t n)
{
    if (!r->zc.sends) {
        out[0] = 0;
        return;
    }
    if (r->zc.usage_known)
        snprintf(out, n, " zc: %llu sent, %llu done, %llu copied",
                 (unsigned long long)r->zc.sends, (unsigned long long)r->zc.completions,
                 (unsigned long long)r->zc.copied);
    else
        snprintf(out, n, " zc: %llu sent, %llu done, copies not reported by this kernel",
                 (unsigned long long)r->zc.sends, (unsigned long long)r->zc.completions);
}

void probe_report_row(const struct probe_cell *c)
{
    const struct probe_result *r = &c->res;
    printf("%-14s %-14s %-8s %6zu ", probe_transport_name(c->transport), strat_name(c),
           probe_mode_name(c->mode), c->size);
    if (r->status != CELL_OK && r->ops == 0) {
        printf("%-8s %s\n", status_names[r->status], r->why);
        return;
    }
    char p50[16] = "-", p99[16] = "-", mbs[16] = "-", sys[24], cpu[32], csw[24], zc[96];
    if (c->mode == MODE_STREAM)
        snprintf(mbs, sizeof mbs, "%.1f", r->bytes_per_s / 1e6);
    else {
        snprintf(p50, sizeof p50, "%llu", (unsigned long long)r->p50_ns);
        snprintf(p99, sizeof p99, "%llu", (unsigned long long)r->p99_ns);
    }
    snprintf(sys, sizeof sys, "%.2f|%.2f", r->side[0].sys_per_op, r->side[1].sys_per_op);
    snprintf(cpu, sizeof cpu, "%.0f|%.0f", r->side[0].cpu_ns_per_op, r->side[1].cpu_ns_per_op);
    snprintf(csw, sizeof csw, "%ld/%ld|%ld/%ld", r->side[0].vcsw, r->side[0].ivcsw,
             r->side[1].vcsw, r->side[1].ivcsw);
    zc_note(r, zc, sizeof zc);
    printf("%8llu %9s %9s %9s %11s %17s %13s", (unsigned long long)r->ops, p50, p99, mbs, sys,
           cpu, csw);
    if (c->mode == MODE_STREAM && r->rx_ops < r->ops)
        printf(" rx %llu of %llu msgs", (unsigned long long)r->rx_ops,
               (unsigned long long)r->ops);
    printf("%s", zc);
    if (r->repeats > 1 && c->mode == MODE_STREAM)
        printf(" median of %u: %.1f..%.1f MB/s", r->repeats, r->rep_min / 1e6, r->rep_max / 1e6);
    else if (r->repeats > 1)
        printf(" median of %u: p50 %.0f..%.0f ns", r->repeats, r->rep_min, r->rep_max);
    if (r->ts_samples)
        printf(" ts: sender %llu path %llu receiver %llu ns (%llu samples)",
               (unsigned long long)r->ts_sender_ns, (unsigned long long)r->ts_path_ns,
               (unsigned long long)r->ts_receiver_ns, (unsigned long long)r->ts_samples);
    else if (c->opts->timestamps && (probe_strategy_get(c->strategy)->flags & STRAT_TIMESTAMPS) &&
             c->mode == MODE_PINGPONG)
        printf(" ts: none from this transport");
    if (r->status != CELL_OK)
        printf(" [%s: %s]", status_names[r->status], r->why);
    if (c->transport == TR_DROP)
        printf(" sender MB/s: every datagram dropped at transmit");
    printf("\n");
    probe_report_profile_row(c);
    fflush(stdout);
}

/* Writes s as a JSON string. */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void json_side(const char *name, const struct probe_result *r, int i)
{
    printf(",\"%s\":{\"syscalls_per_op\":%.4f,\"cpu_ns_per_op\":%.1f,\"user_ns_per_op\":%.1f,"
           "\"sys_ns_per_op\":%.1f,\"vol_ctx_switches\":%ld,\"invol_ctx_switches\":%ld}",
           name, r->side[i].sys_per_op, r->side[i].cpu_ns_per_op, r->side[i].user_ns_per_op,
           r->side[i].sys_ns_per_op,
           r->side[i].vcsw, r->side[i].ivcsw);
}

static void json_cell(const struct probe_cell *c)
{
    const struct probe_result *r = &c->res;
    printf("{\"transport\":\"%s\",\"strategy\":\"%s\",\"mode\":\"%s\",\"size\":%zu,\"status\":\"%s\"",
           probe_transport_name(c->transport), strat_name(c), probe_mode_name(c->mode), c->size,
           status_names[r->status]);
    if (r->why[0]) {
        printf(",\"reason\":");
        json_str(r->why);
    }
    if (r->status != CELL_OK && r->ops == 0) {
        printf("}");
        return;
    }
    printf(",\"ops\":%llu,\"rx_ops\":%llu,\"elapsed_s\":%.6f", (unsigned long long)r->ops,
           (unsigned long long)r->rx_ops, r->elapsed_s);
    if (c->mode == MODE_STREAM)
        printf(",\"bytes_per_s\":%.0f", r->bytes_per_s);
    else
        printf(",\"p50_ns\":%llu,\"p99_ns\":%llu,\"min_ns\":%llu,\"max_ns\":%llu",
               (unsigned long long)r->p50_ns, (unsigned long long)r->p99_ns,
               (unsigned long long)r->min_ns, (unsigned long long)r->max_ns);
    if (r->repeats > 1)
        printf(",\"repeats\":%u,\"%s_min\":%.0f,\"%s_max\":%.0f", r->repeats,
               c->mode == MODE_STREAM ? "bytes_per_s" : "p50_ns", r->rep_min,
               c->mode == MODE_STREAM ? "bytes_per_s" : "p50_ns", r->rep_max);
    json_side("client", r, 0);
    json_side("server", r, 1);
    if (r->zc.sends)
        printf(",\"zerocopy\":{\"sends\":%llu,\"completions\":%llu,\"copied\":%llu,"
               "\"copies_reported\":%s}",
               (unsigned long long)r->zc.sends, (unsigned long long)r->zc.completions,
               (unsigned long long)r->zc.copied, r->zc.usage_known ? "true" : "false");
    if (r->ts_samples)
        printf(",\"timestamps\":{\"samples\":%llu,\"sender_kernel_ns\":%llu,\"path_ns\":%llu,"
               "\"receiver_kernel_ns\":%llu}",
               (unsigned long long)r->ts_samples, (unsigned long long)r->ts_sender_ns,
               (unsigned long long)r->ts_path_ns, (unsigned long long)r->ts_receiver_ns);
    probe_report_profile_json(c);
    printf("}");
}

void probe_report_json(struct probe_cell *cells, size_t n, const struct probe_opts *o)
{
    struct utsname u;
    uname(&u);
    printf("{\"tool\":\"rill-probe\",\"kernel\":");
    json_str(u.release);
    printf(",\"time_per_cell_s\":%.3f,\"max_ops\":%llu,\"repeat\":%u,\"iov\":%u,\"batch\":%u,"
           "\"pin\":[%d,%d],\"profile\":%s,\"profile_scope\":\"%s\",\"profile_hz\":%u,"
           "\"interrupted\":%s,\"cells\":[",
           o->time_s, (unsigned long long)o->max_ops, o->repeat, o->iov, o->batch, o->pin[0],
           o->pin[1], o->profile ? "true" : "false",
           !o->profile ? "none" : o->profile_scope == PROF_SCOPE_CPU ? "cpu" : "thread",
           o->profile_hz,
           probe_stopping() ? "true" : "false");
    for (size_t i = 0; i < n; i++) {
        if (i)
            printf(",");
        printf("\n");
        json_cell(&cells[i]);
    }
    printf("\n]");
    if (o->compare[0] >= 0)
        probe_report_compare_json(cells, n, o);
    printf("}\n");
}

static int cmp_rank(const void *a, const void *b)
{
    const struct probe_cell *x = *(const struct probe_cell *const *)a;
    const struct probe_cell *y = *(const struct probe_cell *const *)b;
    if (x->mode == MODE_STREAM)
        return x->res.bytes_per_s < y->res.bytes_per_s ? 1 : x->res.bytes_per_s > y->res.bytes_per_s ? -1 : 0;
    return x->res.p50_ns < y->res.p50_ns ? -1 : x->res.p50_ns > y->res.p50_ns;
}

/* For each transport, mode and size: the strategies that ran, best first, with the ratio to
 * the best (latency: p50 over the best p50; stream: best throughput over this one's). */
void probe_report_ranking(struct probe_cell *cells, size_t n, const struct probe_opts *o)
{
    (void)o;
    const struct probe_cell **group = calloc(n ? n : 1, sizeof *group);
    bool *done = calloc(n ? n : 1, sizeof *done);
    if (!group || !done)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (done[i])
            continue;
        size_t k = 0;
        for (size_t j = i; j < n; j++) {
            const struct probe_cell *a = &cells[i], *b = &cells[j];
            if (done[j] || a->transport != b->transport || a->mode != b->mode || a->size != b->size)
                continue;
            done[j] = true;
            if (b->res.status == CELL_OK)
                group[k++] = b;
        }
        if (!k)
            continue;
        qsort(group, k, sizeof *group, cmp_rank);
        printf("\nranking: %s %s %zu B (%s)\n", probe_transport_name(cells[i].transport),
               probe_mode_name(cells[i].mode), cells[i].size,
               cells[i].mode == MODE_STREAM ? "MB/s, best first" : "p50 ns, best first");
        for (size_t j = 0; j < k; j++) {
            const struct probe_result *r = &group[j]->res;
            if (group[j]->mode == MODE_STREAM)
                printf("  %2zu. %-14s %10.1f MB/s  %5.2fx  %.2f|%.2f sys/op\n", j + 1,
                       strat_name(group[j]), r->bytes_per_s / 1e6,
                       r->bytes_per_s > 0 ? group[0]->res.bytes_per_s / r->bytes_per_s : 0.0,
                       r->side[0].sys_per_op, r->side[1].sys_per_op);
            else
                printf("  %2zu. %-14s %10llu ns    %5.2fx  %.2f|%.2f sys/op\n", j + 1,
                       strat_name(group[j]), (unsigned long long)r->p50_ns,
                       group[0]->res.p50_ns ? (double)r->p50_ns / (double)group[0]->res.p50_ns
                                            : 0.0,
                       r->side[0].sys_per_op, r->side[1].sys_per_op);
        }
    }
out:
    free(group);
    free(done);
}
