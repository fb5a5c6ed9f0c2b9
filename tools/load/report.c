/* What rill-load prints: a line per second, the final report, and the CPU accounting behind its
 * per-request figures.
 *
 * CPU per request is the honest way to compare engines on one machine: requests/s alone cannot
 * tell a faster server from a load generator that ran out of CPU first, so we report the client's
 * own CPU (getrusage, every thread) and, given its pid, the server's (/proc/PID/stat), both over
 * the measured window only. System calls per request come from the loops' own counters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "load.h"

/* ---- errors ------------------------------------------------------------------------------- */

void errors_add(struct errors *e, enum err_kind kind, int status)
{
    if (kind == ERR_EOF) {
        e->eof++;
    } else if (kind == ERR_MISMATCH) {
        e->mismatch++;
    } else {
        int n = -status;
        e->by_errno[kind][n > 0 && n < ERR_ERRNO_MAX ? n : ERR_ERRNO_MAX]++;
    }
}

void errors_merge(struct errors *into, const struct errors *from)
{
    for (int k = 0; k < ERR_KINDS; k++)
        for (int i = 0; i <= ERR_ERRNO_MAX; i++)
            into->by_errno[k][i] += from->by_errno[k][i];
    into->eof += from->eof;
    into->mismatch += from->mismatch;
}

uint64_t errors_total(const struct errors *e)
{
    uint64_t t = e->eof + e->mismatch;
    for (int k = 0; k < ERR_KINDS; k++)
        for (int i = 0; i <= ERR_ERRNO_MAX; i++)
            t += e->by_errno[k][i];
    return t;
}

static void errors_print(const struct errors *e)
{
    static const char *const kind[ERR_KINDS] = {"connect", "connection", "send"};
    for (int k = 0; k < ERR_KINDS; k++) {
        for (int i = 1; i <= ERR_ERRNO_MAX; i++) {
            if (!e->by_errno[k][i])
                continue;
            const char *name = i < ERR_ERRNO_MAX ? strerrorname_np(i) : NULL;
            printf("  %-10s %-14s %-32s %llu\n", kind[k], name ? name : "other",
                   i < ERR_ERRNO_MAX ? rill_strerror(-i) : "",
                   (unsigned long long)e->by_errno[k][i]);
        }
    }
    if (e->eof)
        printf("  %-10s %-14s %-32s %llu\n", "connection", "EOF", "closed by the peer",
               (unsigned long long)e->eof);
    if (e->mismatch)
        printf("  %-10s %-14s %-32s %llu\n", "reply", "MISMATCH", "bytes differ from the request",
               (unsigned long long)e->mismatch);
}

/* ---- CPU ---------------------------------------------------------------------------------- */

/* utime + stime of a process in microseconds, from /proc/PID/stat. Returns 0 or -errno. */
static int proc_cpu_us(long pid, uint64_t *us)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: fields are counted from the
     * last ')'. Field 3 (state) follows it; utime and stime are fields 14 and 15. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -EINVAL;
    unsigned long long utime, stime;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -EINVAL;
    long hz = sysconf(_SC_CLK_TCK);
    *us = (utime + stime) * 1000000ull / (unsigned long long)(hz > 0 ? hz : 100);
    return 0;
}

void cpu_mark_take(struct cpu_mark *m, long server_pid)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    m->self_user_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec;
    m->self_sys_us = (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
    m->server_us = 0;
    m->server_err = server_pid ? proc_cpu_us(server_pid, &m->server_us) : 0;
}

/* ---- once a second ------------------------------------------------------------------------ */

void report_second(struct worker *ws, uint32_t n, uint32_t k, const struct load_opts *o)
{
    static struct hist h; /* 37 KiB: not on the stack; only the main thread comes here */
    hist_init(&h);
    uint64_t reqs = 0, errs = 0, open = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct live *lv = &ws[i].live;
        pthread_mutex_lock(&lv->mu);
        hist_merge(&h, &lv->h);
        if (lv->h.count)
            hist_init(&lv->h);
        reqs += lv->requests;
        errs += lv->errors;
        open += lv->open;
        lv->requests = lv->errors = 0;
        pthread_mutex_unlock(&lv->mu);
    }
    char p50[24] = "-", p99[24] = "-"; /* a second without replies has no percentiles */
    if (h.count) {
        snprintf(p50, sizeof p50, "%.1f", (double)hist_quantile(&h, 0.50) / 1e3);
        snprintf(p99, sizeof p99, "%.1f", (double)hist_quantile(&h, 0.99) / 1e3);
    }
    printf("%4us %-7s requests %-9llu p50 %9s us  p99 %9s us  errors %-6llu open %llu\n", k,
           k <= o->warmup_s ? "warm-up" : "", (unsigned long long)reqs, p50, p99,
           (unsigned long long)errs, (unsigned long long)open);
    fflush(stdout);
}

/* ---- the final report --------------------------------------------------------------------- */

struct totals {
    struct hist h;
    struct errors e;
    uint64_t requests, bytes, warm_errors, mismatch_any, inflight, oldest;
    uint64_t w0, w1;            /* the window: earliest start, latest end */
    struct rill_loop_stats sys; /* deltas over the window, summed over loops */
    int fatal;
};

static void stats_add_delta(struct rill_loop_stats *d, const struct rill_loop_stats *a,
                            const struct rill_loop_stats *b)
{
    d->sys_read += b->sys_read - a->sys_read;
    d->sys_write += b->sys_write - a->sys_write;
    d->sys_accept += b->sys_accept - a->sys_accept;
    d->sys_connect += b->sys_connect - a->sys_connect;
    d->sys_poll += b->sys_poll - a->sys_poll;
    d->sys_ctl += b->sys_ctl - a->sys_ctl;
    d->sys_other += b->sys_other - a->sys_other;
    d->iterations += b->iterations - a->iterations;
    d->uring_enters += b->uring_enters - a->uring_enters;
    d->sqes_submitted += b->sqes_submitted - a->sqes_submitted;
    d->cqes_reaped += b->cqes_reaped - a->cqes_reaped;
}

static void gather(struct worker *ws, uint32_t n, struct totals *t)
{
    memset(t, 0, sizeof *t);
    hist_init(&t->h);
    t->w0 = UINT64_MAX;
    for (uint32_t i = 0; i < n; i++) {
        const struct worker *w = &ws[i];
        hist_merge(&t->h, &w->total);
        errors_merge(&t->e, &w->errs);
        t->requests += w->requests;
        t->bytes += w->bytes;
        t->warm_errors += w->warm_errors;
        t->mismatch_any += w->mismatch_any;
        t->inflight += w->inflight_end;
        if (w->oldest_end > t->oldest)
            t->oldest = w->oldest_end;
        if (w->w0 && w->w0 < t->w0)
            t->w0 = w->w0;
        if (w->w1 > t->w1)
            t->w1 = w->w1;
        stats_add_delta(&t->sys, &w->s0, &w->s1);
        if (w->fatal) {
            fprintf(stderr, "rill-load: thread %d: loop failed: %s\n", w->index,
                    rill_strerror(w->fatal));
            t->fatal = w->fatal;
        }
    }
    if (t->w1 <= t->w0)
        t->w0 = t->w1 = 0;
}

static void print_latency(const struct hist *h)
{
    static const double q[] = {0.50, 0.90, 0.99, 0.999, 0.9999};
    static const char *const name[] = {"p50", "p90", "p99", "p99.9", "p99.99"};
    if (h->count == 0) {
        printf("latency       none recorded\n");
        return;
    }
    printf("latency (us)  ");
    for (unsigned i = 0; i < sizeof q / sizeof q[0]; i++)
        printf("%s %.1f  ", name[i], (double)hist_quantile(h, q[i]) / 1e3);
    printf("max %.1f  (min %.1f, mean %.1f)\n", (double)h->max / 1e3, (double)h->min / 1e3,
           (double)(h->sum / h->count) / 1e3);
}

/* CPU and system calls per request; each figure says "n/a" rather than divide by zero. */
static void print_costs(const struct totals *t, const struct load_opts *o,
                        const struct cpu_mark *c0, const struct cpu_mark *c1)
{
    double r = (double)t->requests;
    uint64_t user = c1->self_user_us - c0->self_user_us, sys = c1->self_sys_us - c0->self_sys_us;
    const struct rill_loop_stats *s = &t->sys;
    uint64_t other = s->sys_accept + s->sys_connect + s->sys_ctl + s->sys_other;
    uint64_t calls = s->sys_read + s->sys_write + s->sys_poll + other;
    if (t->requests) {
        printf("client CPU    %.2f us/request (user %.3f s, sys %.3f s, all threads)\n",
               (double)(user + sys) / r, (double)user / 1e6, (double)sys / 1e6);
        if (s->uring_enters) /* io_uring: reads and writes are submissions, not calls */
            printf("client calls  %.3f io_uring_enter/request (%.3f SQEs, %.3f CQEs per request; "
                   "%.3f loop iterations/request)\n",
                   (double)s->uring_enters / r, (double)s->sqes_submitted / r,
                   (double)s->cqes_reaped / r, (double)s->iterations / r);
        else
            printf("client calls  %.3f syscalls/request (read %.3f write %.3f poll %.3f other %.3f; "
                   "%.3f loop iterations/request)\n",
                   (double)calls / r, (double)s->sys_read / r, (double)s->sys_write / r,
                   (double)s->sys_poll / r, (double)other / r, (double)s->iterations / r);
    } else {
        printf("client CPU    n/a (no requests; user %.3f s, sys %.3f s)\n", (double)user / 1e6,
               (double)sys / 1e6);
    }
    if (!o->server_pid)
        return;
    int err = c0->server_err ? c0->server_err : c1->server_err;
    if (err)
        printf("server CPU    n/a (/proc/%ld/stat: %s)\n", o->server_pid, rill_strerror(err));
    else if (t->requests)
        printf("server CPU    %.2f us/request (pid %ld, %.3f s)\n",
               (double)(c1->server_us - c0->server_us) / r, o->server_pid,
               (double)(c1->server_us - c0->server_us) / 1e6);
    else
        printf("server CPU    n/a (no requests)\n");
}

int report_final(struct worker *ws, uint32_t n, const struct load_opts *o,
                 const struct cpu_mark *c0, const struct cpu_mark *c1)
{
    static struct totals t; /* two histograms' worth: not on the stack */
    gather(ws, n, &t);
    double secs = (double)(t.w1 - t.w0) / 1e9;
    double rps = secs > 0 ? (double)t.requests / secs : 0;
    printf("\ntarget        %s: %u connections, %u thread%s, depth %u, %zu-byte requests\n",
           o->target, o->conns, o->threads, o->threads == 1 ? "" : "s", o->depth, o->size);
    printf("backend       %s (caps 0x%x)\n", ws[0].backend, ws[0].caps);
    printf("window        %.3f s (after %u s of warm-up)\n", secs, o->warmup_s);
    printf("requests      %llu\n", (unsigned long long)t.requests);
    printf("requests/s    %.1f\n", rps);
    double mbps = secs > 0 ? (double)t.bytes / secs / 1e6 : 0;
    printf("throughput    %.2f MB/s of replies (%.2f MB/s both ways)\n", mbps, 2 * mbps);
    print_latency(&t.h);
    printf("unanswered    %llu requests in flight at the deadline", (unsigned long long)t.inflight);
    if (t.inflight)
        printf(", the oldest sent %.1f us before", (double)t.oldest / 1e3);
    printf("\n");
    printf("errors        %llu", (unsigned long long)errors_total(&t.e));
    if (t.warm_errors)
        printf(" (and %llu during warm-up, not counted)", (unsigned long long)t.warm_errors);
    printf("\n");
    errors_print(&t.e);
    print_costs(&t, o, c0, c1);
    fflush(stdout);

    int rc = t.fatal ? 1 : 0;
    if (t.requests == 0) {
        fprintf(stderr, "rill-load: no request completed in the window\n");
        rc = 1;
    }
    if (t.mismatch_any) {
        fprintf(stderr, "rill-load: %llu replies differed from their requests\n",
                (unsigned long long)t.mismatch_any);
        rc = 1;
    }
    return rc;
}
