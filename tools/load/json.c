/* JSON: a small streaming writer for --json, and a small reader for `rill-load merge`.
 *
 * The writer keeps one "a member was already written" bit per nesting level and nothing else.
 * Numbers that are counts are written as exact integers; rates and ratios as %.17g, so a reader
 * gets back the bits that were written. The reader is a recursive descent parser into a tree, for
 * files of a few hundred kilobytes at most (rill-load's own output); it rejects what it does not
 * understand instead of guessing. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

#define JW_DEPTH 32
#define JV_DEPTH 64

struct jw {
    FILE *f;
    int depth;
    bool some[JW_DEPTH]; /* a member has been written at this level */
    char kind[JW_DEPTH]; /* '{' or '[' */
};

struct jw *jw_open(FILE *f)
{
    struct jw *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->f = f;
    fputc('{', f);
    return j;
}

void jw_close(struct jw *j)
{
    fputs("}\n", j->f);
    free(j);
}

static void put_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* Writes the comma and the key (none inside an array: key NULL). */
static void member(struct jw *j, const char *key)
{
    if (j->some[j->depth])
        fputc(',', j->f);
    j->some[j->depth] = true;
    if (key) {
        put_str(j->f, key);
        fputc(':', j->f);
    }
}

static void open_level(struct jw *j, const char *key, char c)
{
    member(j, key);
    fputc(c, j->f);
    if (j->depth + 1 < JW_DEPTH)
        j->depth++;
    j->some[j->depth] = false;
    j->kind[j->depth] = c;
}

void jw_obj(struct jw *j, const char *key) { open_level(j, key, '{'); }
void jw_arr(struct jw *j, const char *key) { open_level(j, key, '['); }

/* Closes the innermost object or array with the bracket of its kind. */
void jw_end(struct jw *j)
{
    fputc(j->kind[j->depth] == '[' ? ']' : '}', j->f);
    if (j->depth > 0)
        j->depth--;
}

void jw_u64(struct jw *j, const char *key, uint64_t v)
{
    member(j, key);
    fprintf(j->f, "%llu", (unsigned long long)v);
}

void jw_num(struct jw *j, const char *key, double v)
{
    member(j, key);
    if (isfinite(v))
        fprintf(j->f, "%.17g", v);
    else
        fputs("null", j->f);
}

void jw_str(struct jw *j, const char *key, const char *s)
{
    member(j, key);
    put_str(j->f, s ? s : "");
}

void jw_bool(struct jw *j, const char *key, bool v)
{
    member(j, key);
    fputs(v ? "true" : "false", j->f);
}

/* A histogram: its exact summary and the non-empty buckets as [index, count] pairs, with the
 * layout (sub_bits, max_bits) so a reader can refuse a histogram of another shape. */
void jw_hist(struct jw *j, const char *key, const struct hist *h)
{
    jw_obj(j, key);
    jw_str(j, "unit", "ns");
    jw_u64(j, "sub_bits", HIST_SUB_BITS);
    jw_u64(j, "max_bits", HIST_MAX_BITS);
    jw_u64(j, "count", h->count);
    jw_u64(j, "min", h->count ? h->min : 0);
    jw_u64(j, "max", h->max);
    jw_num(j, "sum", (double)h->sum);
    jw_arr(j, "buckets");
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!h->b[i])
            continue;
        jw_arr(j, NULL);
        jw_u64(j, NULL, i);
        jw_u64(j, NULL, h->b[i]);
        jw_end(j);
    }
    jw_end(j);
    jw_end(j);
}

/* Percentiles in microseconds. */
void jw_latency(struct jw *j, const char *key, const struct hist *h)
{
    jw_obj(j, key);
    jw_u64(j, "count", h->count);
    jw_num(j, "min_us", h->count ? (double)h->min / 1e3 : 0);
    jw_num(j, "mean_us", h->count ? (double)(h->sum / h->count) / 1e3 : 0);
    jw_num(j, "p50_us", (double)hist_quantile(h, 0.50) / 1e3);
    jw_num(j, "p90_us", (double)hist_quantile(h, 0.90) / 1e3);
    jw_num(j, "p99_us", (double)hist_quantile(h, 0.99) / 1e3);
    jw_num(j, "p99_9_us", (double)hist_quantile(h, 0.999) / 1e3);
    jw_num(j, "p99_99_us", (double)hist_quantile(h, 0.9999) / 1e3);
    jw_num(j, "max_us", (double)h->max / 1e3);
    jw_end(j);
}

/* ---- the reader ------------------------------------------------------------------------------ */

struct jp {
    const char *s, *p;
    int depth;
};

static void skip_ws(struct jp *jp)
{
    while (*jp->p == ' ' || *jp->p == '\n' || *jp->p == '\r' || *jp->p == '\t')
        jp->p++;
}

static int parse_value(struct jp *jp, struct jv *v);

/* A string without \u escapes beyond ASCII (rill-load writes none). Returns a malloc'd copy. */
static char *parse_string(struct jp *jp)
{
    if (*jp->p != '"')
        return NULL;
    const char *q = ++jp->p;
    size_t n = 0;
    char *out = malloc(strlen(q) + 1);
    if (!out)
        return NULL;
    while (*q && *q != '"') {
        if (*q == '\\') {
            q++;
            char c = *q == 'n' ? '\n' : *q == 't' ? '\t' : *q == 'r' ? '\r' : *q;
            if (*q == 'u') {
                unsigned u;
                if (sscanf(q + 1, "%4x", &u) != 1 || u > 0x7f) {
                    free(out);
                    return NULL;
                }
                c = (char)u;
                q += 4;
            } else if (!strchr("\"\\/bfnrt", *q)) {
                free(out);
                return NULL;
            }
            out[n++] = c;
            q++;
        } else {
            out[n++] = *q++;
        }
    }
    if (*q != '"') {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    jp->p = q + 1;
    return out;
}

static int add_kid(struct jv *v, struct jv *kid)
{
    struct jv *k = realloc(v->kids, (v->nkids + 1) * sizeof *k);
    if (!k)
        return -1;
    v->kids = k;
    v->kids[v->nkids++] = *kid;
    return 0;
}

static int parse_container(struct jp *jp, struct jv *v, char close)
{
    v->type = close == '}' ? JV_OBJ : JV_ARR;
    jp->p++;
    skip_ws(jp);
    if (*jp->p == close) {
        jp->p++;
        return 0;
    }
    for (;;) {
        struct jv kid = {0};
        skip_ws(jp);
        if (close == '}') {
            if (!(kid.key = parse_string(jp)))
                return -1;
            skip_ws(jp);
            if (*jp->p++ != ':') {
                free(kid.key);
                return -1;
            }
        }
        if (parse_value(jp, &kid) < 0 || add_kid(v, &kid) < 0) {
            jv_free(&kid);
            return -1;
        }
        skip_ws(jp);
        if (*jp->p == ',') {
            jp->p++;
            continue;
        }
        if (*jp->p++ != close)
            return -1;
        return 0;
    }
}

static int parse_number(struct jp *jp, struct jv *v)
{
    char *end;
    v->type = JV_NUM;
    v->num = strtod(jp->p, &end);
    if (end == jp->p)
        return -1;
    if (*jp->p != '-' && strspn(jp->p, "0123456789") == (size_t)(end - jp->p))
        v->u64 = strtoull(jp->p, NULL, 10);
    else
        v->u64 = v->num > 0 ? (uint64_t)v->num : 0;
    jp->p = end;
    return 0;
}

static int parse_value(struct jp *jp, struct jv *v)
{
    skip_ws(jp);
    if (++jp->depth > JV_DEPTH)
        return -1;
    int r = 0;
    if (*jp->p == '{' || *jp->p == '[') {
        r = parse_container(jp, v, *jp->p == '{' ? '}' : ']');
    } else if (*jp->p == '"') {
        v->type = JV_STR;
        r = (v->str = parse_string(jp)) ? 0 : -1;
    } else if (!strncmp(jp->p, "true", 4) || !strncmp(jp->p, "false", 5)) {
        v->type = JV_BOOL;
        v->num = *jp->p == 't';
        jp->p += *jp->p == 't' ? 4 : 5;
    } else if (!strncmp(jp->p, "null", 4)) {
        v->type = JV_NULL;
        jp->p += 4;
    } else {
        r = parse_number(jp, v);
    }
    jp->depth--;
    return r;
}

struct jv *jv_parse(const char *text, size_t *err_at)
{
    struct jp jp = {text, text, 0};
    struct jv *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    if (parse_value(&jp, v) < 0 || (skip_ws(&jp), *jp.p != '\0')) {
        if (err_at)
            *err_at = (size_t)(jp.p - text);
        jv_free(v);
        free(v);
        return NULL;
    }
    return v;
}

/* Frees what v holds (not v itself, which may be an array element). */
void jv_free(struct jv *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->nkids; i++)
        jv_free(&v->kids[i]);
    free(v->kids);
    free(v->str);
    free(v->key);
    memset(v, 0, sizeof *v);
}

const struct jv *jv_get(const struct jv *obj, const char *path)
{
    char part[64];
    while (obj && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof part || obj->type != JV_OBJ)
            return NULL;
        memcpy(part, path, n);
        part[n] = '\0';
        const struct jv *found = NULL;
        for (size_t i = 0; i < obj->nkids && !found; i++)
            if (!strcmp(obj->kids[i].key, part))
                found = &obj->kids[i];
        obj = found;
        path += n + (path[n] == '.');
    }
    return obj;
}

static uint64_t jv_u64_at(const struct jv *o, const char *key, bool *ok)
{
    const struct jv *v = jv_get(o, key);
    if (!v || v->type != JV_NUM) {
        *ok = false;
        return 0;
    }
    return v->u64;
}

int jv_hist(const struct jv *v, struct hist *h)
{
    bool ok = true;
    hist_init(h);
    if (!v || jv_u64_at(v, "sub_bits", &ok) != HIST_SUB_BITS ||
        jv_u64_at(v, "max_bits", &ok) != HIST_MAX_BITS || !ok)
        return -EINVAL;
    const struct jv *b = jv_get(v, "buckets"), *sum = jv_get(v, "sum");
    if (!b || b->type != JV_ARR || !sum || sum->type != JV_NUM)
        return -EINVAL;
    for (size_t i = 0; i < b->nkids; i++) {
        const struct jv *pair = &b->kids[i];
        if (pair->type != JV_ARR || pair->nkids != 2 || pair->kids[0].type != JV_NUM ||
            pair->kids[1].type != JV_NUM || pair->kids[0].u64 >= HIST_BUCKETS)
            return -EINVAL;
        h->b[pair->kids[0].u64] += pair->kids[1].u64;
    }
    h->count = jv_u64_at(v, "count", &ok);
    h->max = jv_u64_at(v, "max", &ok);
    h->min = h->count ? jv_u64_at(v, "min", &ok) : UINT64_MAX;
    h->sum = sum->num;
    uint64_t n = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        n += h->b[i];
    return ok && n == h->count ? 0 : -EINVAL;
}
