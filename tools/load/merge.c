/* rill-load merge: adds several runs' --json files into one report.
 *
 * Histograms add bucket by bucket, so the merged percentiles are those of the union of all the
 * requests, exactly as if one generator had recorded them all; averaging percentiles would be
 * meaningless. Counts add. Rates add too: merging is for runs that loaded one server at the same
 * time from several machines (or processes); for runs one after another, the merged latency
 * distribution is still right, and the summed rate is not a rate of anything. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

struct merged {
    struct hist lat, unc, conn;
    uint64_t requests, sent, late, skipped, bytes, errors;
    double rps, offered, window_max;
    bool saturated;
    uint32_t runs;
};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *b = realloc(buf, cap * 2);
        if (!b) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = b;
        cap *= 2;
    }
    if (buf)
        buf[n] = '\0';
    fclose(f);
    return buf;
}

static double num_at(const struct jv *root, const char *path)
{
    const struct jv *v = jv_get(root, path);
    return v && v->type == JV_NUM ? v->num : 0;
}

static uint64_t u64_at(const struct jv *root, const char *path)
{
    const struct jv *v = jv_get(root, path);
    return v && v->type == JV_NUM ? v->u64 : 0;
}

/* Adds one file. Returns 0, or prints why and returns -1. */
static int add_file(struct merged *m, const char *path)
{
    char *text = slurp(path);
    if (!text) {
        fprintf(stderr, "rill-load merge: cannot read %s\n", path);
        return -1;
    }
    size_t at = 0;
    struct jv *root = jv_parse(text, &at);
    free(text);
    static struct hist h[3];
    static const char *const names[3] = {"histograms.latency", "histograms.latency_uncorrected",
                                         "histograms.connect"};
    int r = root ? 0 : -1;
    for (int i = 0; r == 0 && i < 3; i++)
        r = jv_hist(jv_get(root, names[i]), &h[i]);
    if (r < 0) {
        fprintf(stderr, "rill-load merge: %s: %s\n", path,
                root ? "no rill-load histograms in it" : "not JSON");
        jv_free(root);
        free(root);
        return -1;
    }
    hist_merge(&m->lat, &h[0]);
    hist_merge(&m->unc, &h[1]);
    hist_merge(&m->conn, &h[2]);
    m->requests += u64_at(root, "results.requests");
    m->sent += u64_at(root, "results.sent");
    m->late += u64_at(root, "results.late");
    m->skipped += u64_at(root, "results.skipped");
    m->bytes += u64_at(root, "results.bytes");
    m->errors += u64_at(root, "results.errors.total");
    m->rps += num_at(root, "results.requests_per_s");
    m->offered += num_at(root, "results.offered_per_s");
    double w = num_at(root, "results.window_s");
    if (w > m->window_max)
        m->window_max = w;
    const struct jv *sat = jv_get(root, "results.saturated");
    m->saturated |= sat && sat->type == JV_BOOL && sat->num != 0;
    m->runs++;
    jv_free(root);
    free(root);
    return 0;
}

static void print(const struct merged *m)
{
    FILE *f = load_out;
    fprintf(f, "merged        %u runs\n", m->runs);
    fprintf(f, "requests      %llu\n", (unsigned long long)m->requests);
    fprintf(f, "requests/s    %.1f (sum of the runs' rates)", m->rps);
    if (m->offered > 0)
        fprintf(f, ", %.1f offered", m->offered);
    fprintf(f, "\n");
    report_latency_line("latency (us)", &m->lat);
    if (m->offered > 0)
        report_latency_line("uncorrected", &m->unc);
    if (m->conn.count)
        report_latency_line("connect (us)", &m->conn);
    fprintf(f, "sends         %llu, %llu late, %llu skipped\n", (unsigned long long)m->sent,
            (unsigned long long)m->late, (unsigned long long)m->skipped);
    fprintf(f, "errors        %llu\n", (unsigned long long)m->errors);
    fprintf(f, "saturated     %s\n", m->saturated ? "yes (in at least one run)" : "no");
}

static int write_json(const struct merged *m, const char *path)
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
    jw_str(j, "tool", "rill-load merge");
    jw_u64(j, "format", 1);
    jw_obj(j, "results");
    jw_u64(j, "runs", m->runs);
    jw_u64(j, "requests", m->requests);
    jw_num(j, "requests_per_s", m->rps);
    jw_num(j, "offered_per_s", m->offered);
    jw_num(j, "window_s", m->window_max);
    jw_u64(j, "sent", m->sent);
    jw_u64(j, "late", m->late);
    jw_u64(j, "skipped", m->skipped);
    jw_u64(j, "bytes", m->bytes);
    jw_obj(j, "errors");
    jw_u64(j, "total", m->errors);
    jw_end(j);
    jw_latency(j, "latency", &m->lat);
    jw_latency(j, "latency_uncorrected", &m->unc);
    jw_latency(j, "connect_latency", &m->conn);
    jw_bool(j, "saturated", m->saturated);
    jw_end(j);
    jw_obj(j, "histograms");
    jw_hist(j, "latency", &m->lat);
    jw_hist(j, "latency_uncorrected", &m->unc);
    jw_hist(j, "connect", &m->conn);
    jw_end(j);
    int r = jw_close(j);
    if (to_stdout)
        return fflush(f) && r == 0 ? -EIO : r;
    if (fclose(f) && r == 0)
        r = -errno;
    return r;
}

int merge_main(int argc, char **argv)
{
    static const struct option lopts[] = {{"json", required_argument, 0, 'j'},
                                          {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *json = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        if (opt == 'j') {
            json = optarg;
        } else {
            opts_usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "rill-load merge: expected one or more JSON files (see --help)\n");
        return 2;
    }
    if (json && !strcmp(json, "-"))
        load_out = stderr;
    static struct merged m;
    hist_init(&m.lat);
    hist_init(&m.unc);
    hist_init(&m.conn);
    for (int i = optind; i < argc; i++)
        if (add_file(&m, argv[i]) < 0)
            return 1;
    print(&m);
    if (json) {
        int r = write_json(&m, json);
        if (r < 0) {
            fprintf(stderr, "rill-load merge: cannot write %s: %s\n", json, rill_strerror(r));
            return 1;
        }
    }
    return 0;
}
