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

FILE *load_out; /* stdout, or stderr when the JSON goes to stdout */

/* ---- errors ------------------------------------------------------------------------------- */

void errors_add(struct errors *e, enum err_kind kind, int status)
{
    if (kind >= ERR_KINDS) {
        e->named[kind - ERR_KINDS]++;
        return;
    }
    int n = -status;
    e->by_errno[kind][n > 0 && n < ERR_ERRNO_MAX ? n : ERR_ERRNO_MAX]++;
}

void errors_merge(struct errors *into, const struct errors *from)
{
    for (int k = 0; k < ERR_KINDS; k++)
        for (int i = 0; i <= ERR_ERRNO_MAX; i++)
            into->by_errno[k][i] += from->by_errno[k][i];
    for (int k = 0; k < ERR_NAMED; k++)
        into->named[k] += from->named[k];
}

uint64_t errors_total(const struct errors *e)
{
    uint64_t t = 0;
    for (int k = 0; k < ERR_NAMED; k++)
        t += e->named[k];
    for (int k = 0; k < ERR_KINDS; k++)
        for (int i = 0; i <= ERR_ERRNO_MAX; i++)
            t += e->by_errno[k][i];
    return t;
}

const char *errors_kind_name(enum err_kind k)
{
    static const char *const names[ERR_ALL] = {"connect", "connection", "send",   "eof",
                                               "short",   "extra",      "garbage", "status",
                                               "lost"};
    return k < ERR_ALL ? names[k] : "?";
}

static void errors_print(const struct errors *e)
{
    static const char *const what[ERR_NAMED] = {
        "closed by the peer, requests unanswered", "closed by the peer inside a reply",
        "bytes beyond every reply owed", "reply bytes wrong (not the echo, not HTTP)",
        "HTTP status outside 2xx", "UDP reply missing (--timeout)"};
    for (int k = 0; k < ERR_KINDS; k++) {
        for (int i = 1; i <= ERR_ERRNO_MAX; i++) {
            if (!e->by_errno[k][i])
                continue;
            const char *name = i < ERR_ERRNO_MAX ? strerrorname_np(i) : NULL;
            fprintf(load_out, "  %-10s %-14s %-40s %llu\n", errors_kind_name(k),
                    name ? name : "other", i < ERR_ERRNO_MAX ? rill_strerror(-i) : "",
                    (unsigned long long)e->by_errno[k][i]);
        }
    }
    for (int k = 0; k < ERR_NAMED; k++)
        if (e->named[k])
            fprintf(load_out, "  %-10s %-14s %-40s %llu\n", errors_kind_name(ERR_KINDS + k), "",
                    what[k], (unsigned long long)e->named[k]);
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

void report_second(struct worker *ws, uint32_t n, uint32_t k, const struct load_opts *o,
                   struct second *s)
{
    static struct hist h; /* 37 KiB: not on the stack; only the main thread comes here */
    hist_init(&h);
    memset(s, 0, sizeof *s);
    for (uint32_t i = 0; i < n; i++) {
        struct live *lv = &ws[i].live;
        pthread_mutex_lock(&lv->mu);
        hist_merge(&h, &lv->h);
        if (lv->h.count)
            hist_init(&lv->h);
        s->requests += lv->requests;
        s->errors += lv->errors;
        s->open += lv->open;
        lv->requests = lv->errors = 0;
        pthread_mutex_unlock(&lv->mu);
    }
    s->t = k;
    s->warmup = k <= o->warmup_s;
    char p50[24] = "-", p99[24] = "-"; /* a second without replies has no percentiles */
    if (h.count) {
        s->p50 = hist_quantile(&h, 0.50);
        s->p99 = hist_quantile(&h, 0.99);
        snprintf(p50, sizeof p50, "%.1f", (double)s->p50 / 1e3);
        snprintf(p99, sizeof p99, "%.1f", (double)s->p99 / 1e3);
    }
    if (o->quiet)
        return;
    fprintf(load_out,
            "%4us %-7s requests %-9llu p50 %9s us  p99 %9s us  errors %-6llu open %llu\n", k,
            s->warmup ? "warm-up" : "", (unsigned long long)s->requests, p50, p99,
            (unsigned long long)s->errors, (unsigned long long)s->open);
    fflush(load_out);
}

/* ---- the final report --------------------------------------------------------------------- */

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
    d->bytes_in += b->bytes_in - a->bytes_in;
    d->bytes_out += b->bytes_out - a->bytes_out;
}

static void gather_worker(struct totals *t, const struct worker *w)
{
    hist_merge(&t->h, &w->total);
    hist_merge(&t->uncorr, &w->uncorr);
    hist_merge(&t->connect, &w->connect);
    errors_merge(&t->e, &w->errs);
    t->requests += w->requests;
    t->sent += w->sent;
    t->late += w->late;
    t->held += w->held;
    t->skipped += w->skipped;
    t->bytes += w->bytes;
    t->connects += w->connects;
    t->warm_errors += w->warm_errors;
    t->mismatch_any += w->mismatch_any;
    t->inflight += w->inflight_end;
    for (int i = 0; i < 6; i++)
        t->status[i] += w->status[i];
    if (w->oldest_end > t->oldest)
        t->oldest = w->oldest_end;
    if (w->w0 && w->w0 < t->w0)
        t->w0 = w->w0;
    if (w->w1 > t->w1)
        t->w1 = w->w1;
    stats_add_delta(&t->sys, &w->s0, &w->s1);
    double busy = worker_busy(w);
    if (busy > t->busy_max) {
        t->busy_max = busy;
        t->busy_thread = w->index;
    }
    if (w->fatal) {
        fprintf(stderr, "rill-load: thread %d: loop failed: %s\n", w->index,
                rill_strerror(w->fatal));
        t->fatal = w->fatal;
    }
}

/* The client was the limit when a loop had no idle time left or sends could not keep up. */
static void judge(struct totals *t)
{
    double late = t->sent ? (double)t->late / (double)t->sent : 0;
    t->saturated = t->busy_max > 0.90 || late > 0.01 || t->skipped > 0;
    if (!t->saturated)
        return;
    snprintf(t->why, sizeof t->why, "thread %d busy %.0f%%; %.1f%% of sends late; %llu skipped",
             t->busy_thread, t->busy_max * 100, late * 100, (unsigned long long)t->skipped);
}

void report_gather(struct worker *ws, uint32_t n, const struct load_opts *o,
                   const struct cpu_mark *c0, const struct cpu_mark *c1, struct totals *t)
{
    memset(t, 0, sizeof *t);
    hist_init(&t->h);
    hist_init(&t->uncorr);
    hist_init(&t->connect);
    t->w0 = UINT64_MAX;
    for (uint32_t i = 0; i < n; i++)
        gather_worker(t, &ws[i]);
    if (t->w1 <= t->w0)
        t->w0 = t->w1 = 0;
    t->secs = (double)(t->w1 - t->w0) / 1e9;
    t->rps = t->secs > 0 ? (double)t->requests / t->secs : 0;
    if (t->w1) {
        double a = (double)(t->w0 - ws[0].t_begin) / 1e9, b = (double)(t->w1 - ws[0].t_begin) / 1e9;
        t->offered = opts_offered(o, a, b);
    }
    t->user_us = c1->self_user_us - c0->self_user_us;
    t->sys_us = c1->self_sys_us - c0->self_sys_us;
    t->server_err = c0->server_err ? c0->server_err : c1->server_err;
    t->server_us = t->server_err ? 0 : c1->server_us - c0->server_us;
    judge(t);
}

void report_latency_line(const char *label, const struct hist *h)
{
    static const double q[] = {0.50, 0.90, 0.99, 0.999, 0.9999};
    static const char *const name[] = {"p50", "p90", "p99", "p99.9", "p99.99"};
    if (h->count == 0) {
        fprintf(load_out, "%-14snone recorded\n", label);
        return;
    }
    fprintf(load_out, "%-14s", label);
    for (unsigned i = 0; i < sizeof q / sizeof q[0]; i++)
        fprintf(load_out, "%s %.1f  ", name[i], (double)hist_quantile(h, q[i]) / 1e3);
    fprintf(load_out, "max %.1f  (min %.1f, mean %.1f)\n", (double)h->max / 1e3,
            (double)h->min / 1e3, (double)(h->sum / h->count) / 1e3);
}

/* CPU and system calls per request; each figure says "n/a" rather than divide by zero. */
static void print_costs(const struct totals *t, const struct load_opts *o)
{
    FILE *f = load_out;
    double r = (double)t->requests;
    const struct rill_loop_stats *s = &t->sys;
    uint64_t other = s->sys_accept + s->sys_connect + s->sys_ctl + s->sys_other;
    uint64_t calls = s->sys_read + s->sys_write + s->sys_poll + other;
    if (t->requests) {
        fprintf(f, "client CPU    %.2f us/request (user %.3f s, sys %.3f s, all threads",
                (double)(t->user_us + t->sys_us) / r, (double)t->user_us / 1e6,
                (double)t->sys_us / 1e6);
        fprintf(f, ")\n");
        if (s->uring_enters) /* io_uring: reads and writes are submissions, not calls */
            fprintf(f, "client calls  %.3f io_uring_enter/request (%.3f SQEs, %.3f CQEs per "
                       "request; %.3f loop iterations/request)\n",
                    (double)s->uring_enters / r, (double)s->sqes_submitted / r,
                    (double)s->cqes_reaped / r, (double)s->iterations / r);
        else
            fprintf(f, "client calls  %.3f syscalls/request (read %.3f write %.3f poll %.3f "
                       "other %.3f; %.3f loop iterations/request)\n",
                    (double)calls / r, (double)s->sys_read / r, (double)s->sys_write / r,
                    (double)s->sys_poll / r, (double)other / r, (double)s->iterations / r);
    } else {
        fprintf(f, "client CPU    n/a (no requests; user %.3f s, sys %.3f s)\n",
                (double)t->user_us / 1e6, (double)t->sys_us / 1e6);
    }
    fprintf(f, "client busy   %.0f%% (the busiest loop: thread %d)\n", t->busy_max * 100,
            t->busy_thread);
    if (!o->server_pid)
        return;
    if (t->server_err)
        fprintf(f, "server CPU    n/a (/proc/%ld/stat: %s)\n", o->server_pid,
                rill_strerror(t->server_err));
    else if (t->requests)
        fprintf(f, "server CPU    %.2f us/request (pid %ld, %.3f s)\n",
                (double)t->server_us / r, o->server_pid, (double)t->server_us / 1e6);
    else
        fprintf(f, "server CPU    n/a (no requests)\n");
}

static void print_load(const struct totals *t, const struct load_opts *o)
{
    FILE *f = load_out;
    if (o->rate > 0) {
        fprintf(f, "requests/s    %.1f achieved, %.1f offered (%s%s)\n", t->rps, t->offered,
                o->dist == DIST_POISSON ? "poisson" : "evenly spaced",
                o->ramp_s ? ", ramping" : "");
        fprintf(f, "sends         %llu: %llu late (the client > 1 ms behind schedule), %llu held "
                   "> 1 ms (connection busy or reopening), %llu skipped\n",
                (unsigned long long)t->sent, (unsigned long long)t->late,
                (unsigned long long)t->held, (unsigned long long)t->skipped);
        report_latency_line("latency (us)", &t->h);
        report_latency_line("uncorrected", &t->uncorr);
    } else {
        fprintf(f, "requests/s    %.1f\n", t->rps);
        report_latency_line("latency (us)", &t->h);
    }
    if (o->churn)
        report_latency_line("connect (us)", &t->connect);
    if (o->proto == PROTO_HTTP)
        fprintf(f, "responses     1xx %llu  2xx %llu  3xx %llu  4xx %llu  5xx %llu  other %llu\n",
                (unsigned long long)t->status[1], (unsigned long long)t->status[2],
                (unsigned long long)t->status[3], (unsigned long long)t->status[4],
                (unsigned long long)t->status[5], (unsigned long long)t->status[0]);
}

int report_final(const struct totals *t, const struct load_opts *o, const char *backend,
                 uint32_t caps)
{
    FILE *f = load_out;
    fprintf(f, "\ntarget        %s: %u connections, %u thread%s, depth %u, ", o->target, o->conns,
            o->threads, o->threads == 1 ? "" : "s", o->depth);
    if (o->proto == PROTO_HTTP)
        fprintf(f, "HTTP GET %s\n", o->path);
    else if (o->size_min == o->size_max)
        fprintf(f, "%zu-byte requests\n", o->size_min);
    else
        fprintf(f, "%zu..%zu-byte requests\n", o->size_min, o->size_max);
    char names[256];
    rill_caps_format(caps, names, sizeof names);
    fprintf(f, "backend       %s (caps %s)\n", backend, names);
    fprintf(f, "window        %.3f s (after %u s of warm-up)\n", t->secs, o->warmup_s);
    fprintf(f, "requests      %llu\n", (unsigned long long)t->requests);
    print_load(t, o);
    double mbps = t->secs > 0 ? (double)t->bytes / t->secs / 1e6 : 0;
    fprintf(f, "throughput    %.2f MB/s of replies\n", mbps);
    fprintf(f, "unanswered    %llu requests out or due at the end",
            (unsigned long long)t->inflight);
    if (t->inflight)
        fprintf(f, ", the oldest waiting %.1f us", (double)t->oldest / 1e3);
    fprintf(f, "\nerrors        %llu", (unsigned long long)errors_total(&t->e));
    if (t->warm_errors)
        fprintf(f, " (and %llu during warm-up, not counted)", (unsigned long long)t->warm_errors);
    fprintf(f, "\n");
    errors_print(&t->e);
    print_costs(t, o);
    if (t->saturated)
        fprintf(f, "saturated     yes: the client was the limit, busy or not given the CPU in "
                   "time (%s)\n", t->why);
    else
        fprintf(f, "saturated     no\n");
    fflush(f);

    int rc = t->fatal ? 1 : 0;
    if (t->requests == 0) {
        fprintf(stderr, "rill-load: no request completed in the window\n");
        rc = 1;
    }
    if (t->mismatch_any) {
        fprintf(stderr, "rill-load: %llu replies differed from their requests\n",
                (unsigned long long)t->mismatch_any);
        rc = 1;
    }
    return rc;
}
