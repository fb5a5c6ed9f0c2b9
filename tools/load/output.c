/* --json: one run as a JSON document. Its fields are listed in README.md (rill-load section);
 * tests/test_load_run.c checks that every one of them is there.
 *
 *   tool, format, version, command[]
 *   config      what was asked: target, protocol, model, connections, threads, depth, ...
 *   machine     cpu_model, cpus, kernel, backend, caps
 *   results     window, requests, rates, sends, latency summaries, errors, saturation
 *   cost        client CPU and system calls per request, server CPU per request
 *   histograms  latency (corrected), latency_uncorrected, connect: exact summaries and buckets
 *   series      one entry per second (warm-up included, flagged) */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "load.h"

/* The CPU model from /proc/cpuinfo ("model name", or what other architectures call it). */
static void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) && strncmp(line, "Model", 5) &&
            strncmp(line, "cpu model", 9))
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        colon++;
        while (*colon == ' ' || *colon == '\t')
            colon++;
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(out, cap, "%s", colon);
        break;
    }
    fclose(f);
}

static void write_config(struct jw *j, const struct load_opts *o)
{
    jw_obj(j, "config");
    jw_str(j, "target", o->target);
    jw_str(j, "uri", o->uri);
    jw_str(j, "protocol", o->proto == PROTO_HTTP ? "http" : o->proto == PROTO_UDP ? "udp" : "echo");
    jw_str(j, "model", o->rate > 0 ? "open" : "closed");
    jw_u64(j, "connections", o->conns);
    jw_u64(j, "threads", o->threads);
    jw_u64(j, "depth", o->depth);
    jw_u64(j, "duration_s", o->duration_s);
    jw_u64(j, "warmup_s", o->warmup_s);
    jw_u64(j, "requests_limit", o->count);
    jw_u64(j, "size_min", o->size_min);
    jw_u64(j, "size_max", o->size_max);
    jw_num(j, "rate", o->rate);
    jw_str(j, "dist", o->dist == DIST_POISSON ? "poisson" : "even");
    jw_u64(j, "ramp_s", o->ramp_s);
    jw_u64(j, "churn", o->churn);
    jw_u64(j, "timeout_ms", o->timeout_ms);
    jw_arr(j, "pin");
    for (int i = 0; i < o->ncpus; i++)
        jw_u64(j, NULL, (uint64_t)o->cpus[i]);
    jw_end(j);
    jw_u64(j, "server_pid", (uint64_t)o->server_pid);
    jw_end(j);
}

static void write_machine(struct jw *j, const struct run_info *ri)
{
    char model[256];
    struct utsname u;
    cpu_model(model, sizeof model);
    if (uname(&u) < 0)
        memset(&u, 0, sizeof u);
    jw_obj(j, "machine");
    jw_str(j, "cpu_model", model);
    jw_u64(j, "cpus", (uint64_t)sysconf(_SC_NPROCESSORS_ONLN));
    jw_str(j, "kernel", u.release);
    jw_str(j, "kernel_version", u.version);
    jw_str(j, "arch", u.machine);
    jw_str(j, "backend", ri->backend);
    jw_u64(j, "caps", ri->caps);
    jw_end(j);
}

static void write_errors(struct jw *j, const struct totals *t)
{
    jw_obj(j, "errors");
    jw_u64(j, "total", errors_total(&t->e));
    jw_u64(j, "warmup", t->warm_errors);
    for (int k = 0; k < ERR_KINDS; k++) {
        /* Errnos without a name count as "other", with the ones past ERR_ERRNO_MAX: one key. */
        uint64_t other = 0;
        jw_obj(j, errors_kind_name(k));
        for (int i = 1; i <= ERR_ERRNO_MAX; i++) {
            if (!t->e.by_errno[k][i])
                continue;
            const char *name = i < ERR_ERRNO_MAX ? strerrorname_np(i) : NULL;
            if (name)
                jw_u64(j, name, t->e.by_errno[k][i]);
            else
                other += t->e.by_errno[k][i];
        }
        if (other)
            jw_u64(j, "other", other);
        jw_end(j);
    }
    for (int k = 0; k < ERR_NAMED; k++)
        jw_u64(j, errors_kind_name(ERR_KINDS + k), t->e.named[k]);
    jw_end(j);
}

static void write_results(struct jw *j, const struct totals *t)
{
    jw_obj(j, "results");
    jw_num(j, "window_s", t->secs);
    jw_u64(j, "requests", t->requests);
    jw_num(j, "requests_per_s", t->rps);
    jw_num(j, "offered_per_s", t->offered);
    jw_u64(j, "sent", t->sent);
    jw_u64(j, "late", t->late);
    jw_u64(j, "held", t->held);
    jw_u64(j, "skipped", t->skipped);
    jw_u64(j, "bytes", t->bytes);
    jw_num(j, "mb_per_s", t->secs > 0 ? (double)t->bytes / t->secs / 1e6 : 0);
    jw_u64(j, "connects", t->connects);
    jw_u64(j, "unanswered", t->inflight);
    jw_num(j, "oldest_unanswered_us", (double)t->oldest / 1e3);
    jw_latency(j, "latency", &t->h);
    jw_latency(j, "latency_uncorrected", &t->uncorr);
    jw_latency(j, "connect_latency", &t->connect);
    jw_obj(j, "http_status");
    static const char *const cls[6] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 0; i < 6; i++)
        jw_u64(j, cls[i], t->status[i]);
    jw_end(j);
    write_errors(j, t);
    jw_bool(j, "saturated", t->saturated);
    jw_str(j, "saturated_why", t->why);
    jw_num(j, "client_busy_max", t->busy_max);
    jw_end(j);
}

static void per_req(struct jw *j, const char *key, uint64_t v, uint64_t reqs)
{
    if (reqs)
        jw_num(j, key, (double)v / (double)reqs);
    else
        jw_num(j, key, NAN); /* written as null */
}

static void write_cost(struct jw *j, const struct totals *t, const struct load_opts *o)
{
    const struct rill_loop_stats *s = &t->sys;
    uint64_t r = t->requests;
    uint64_t other = s->sys_accept + s->sys_connect + s->sys_ctl + s->sys_other;
    jw_obj(j, "cost");
    per_req(j, "client_cpu_us_per_request", t->user_us + t->sys_us, r);
    jw_num(j, "client_user_s", (double)t->user_us / 1e6);
    jw_num(j, "client_sys_s", (double)t->sys_us / 1e6);
    per_req(j, "client_poll_us_per_request", t->poll_us, r);
    per_req(j, "syscalls_per_request",
            s->uring_enters ? s->uring_enters + other
                            : s->sys_read + s->sys_write + s->sys_poll + other, r);
    per_req(j, "reads_per_request", s->sys_read, r);
    per_req(j, "writes_per_request", s->sys_write, r);
    per_req(j, "polls_per_request", s->sys_poll, r);
    per_req(j, "uring_enters_per_request", s->uring_enters, r);
    per_req(j, "sqes_per_request", s->sqes_submitted, r);
    per_req(j, "cqes_per_request", s->cqes_reaped, r);
    per_req(j, "iterations_per_request", s->iterations, r);
    if (o->server_pid && !t->server_err)
        per_req(j, "server_cpu_us_per_request", t->server_us, r);
    else
        jw_num(j, "server_cpu_us_per_request", NAN);
    jw_end(j);
}

static void write_series(struct jw *j, const struct run_info *ri)
{
    jw_arr(j, "series");
    for (uint32_t i = 0; i < ri->nseries; i++) {
        const struct second *s = &ri->series[i];
        jw_obj(j, NULL);
        jw_u64(j, "t", s->t);
        jw_bool(j, "warmup", s->warmup);
        jw_u64(j, "requests", s->requests);
        jw_num(j, "rate", (double)s->requests); /* per one-second tick */
        jw_num(j, "p50_us", (double)s->p50 / 1e3);
        jw_num(j, "p99_us", (double)s->p99 / 1e3);
        jw_u64(j, "errors", s->errors);
        jw_u64(j, "open", s->open);
        jw_end(j);
    }
    jw_end(j);
}

int json_write_run(const char *path, const struct run_info *ri)
{
    bool to_stdout = !strcmp(path, "-");
    FILE *f = to_stdout ? stdout : fopen(path, "w");
    if (!f)
        return -errno;
    struct jw *j = jw_open(f);
    if (!j) {
        if (!to_stdout)
            fclose(f);
        return -ENOMEM;
    }
    jw_str(j, "tool", "rill-load");
    jw_u64(j, "format", 1);
    jw_str(j, "version", rill_version());
    jw_arr(j, "command");
    for (int i = 0; i < ri->o->argc; i++)
        jw_str(j, NULL, ri->o->argv[i]);
    jw_end(j);
    write_config(j, ri->o);
    write_machine(j, ri);
    write_results(j, ri->t);
    write_cost(j, ri->t, ri->o);
    jw_obj(j, "histograms");
    jw_hist(j, "latency", &ri->t->h);
    jw_hist(j, "latency_uncorrected", &ri->t->uncorr);
    jw_hist(j, "connect", &ri->t->connect);
    jw_end(j);
    write_series(j, ri);
    int r = jw_close(j);
    if (r == 0 && ferror(f))
        r = -EIO;
    if (to_stdout)
        fflush(f);
    else if (fclose(f) != 0)
        r = -errno;
    return r;
}
