/* JSON for --json and `rill-load merge`, through jansson.
 *
 * The writer builds the document as a jansson tree while the caller walks its data (jw_obj /
 * jw_arr open a level, jw_end closes it) and dumps it once, compact, in the order the members
 * were added. The bytes are those rill-load 0.1.0's hand-written writer produced: counts are
 * exact integers; rates and ratios are %.17g (a reader gets back the bits that were written),
 * and a double with an integral value below 1e17, which %.17g prints without a dot, goes in as
 * a jansson integer because jansson would append ".0" to it as a real. Where jansson differs
 * (an exponent is written 1e-5, not 1e-05; control characters in strings as \n, not \u000a),
 * both forms read back to the same value.
 *
 * The reader parses with jansson and copies the tree into struct jv, the view merge.c and the
 * tests walk: a count keeps its exact 64-bit value next to its double. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

#define JW_DEPTH 32

/* Compact (no spaces after ',' and ':'), members in the order they were added, and reals with
 * the 17 significant digits of %.17g. */
#define JW_DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17))

struct jw {
    FILE *f;
    int depth;
    bool failed;             /* an allocation failed: jw_close reports it */
    json_t *open[JW_DEPTH];  /* open[0] is the document; open[depth] takes the next member */
};

struct jw *jw_open(FILE *f)
{
    struct jw *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->f = f;
    j->open[0] = json_object();
    if (!j->open[0]) {
        free(j);
        return NULL;
    }
    return j;
}

int jw_close(struct jw *j)
{
    int r = j->failed ? -ENOMEM : 0;
    if (r == 0 && (json_dumpf(j->open[0], j->f, JW_DUMP_FLAGS) < 0 || fputc('\n', j->f) == EOF))
        r = -EIO;
    json_decref(j->open[0]);
    free(j);
    return r;
}

/* Adds v (a new reference, or NULL when making it failed) to the innermost open level: under
 * key in an object, at the end of an array (key NULL). Returns v, borrowed, or NULL. */
static json_t *member(struct jw *j, const char *key, json_t *v)
{
    json_t *parent = j->open[j->depth];
    int r = -1;
    if (v && json_is_object(parent))
        r = json_object_set_new(parent, key ? key : "", v);
    else if (v)
        r = json_array_append_new(parent, v);
    if (r < 0) {
        j->failed = true;
        return NULL;
    }
    return v;
}

static void open_level(struct jw *j, const char *key, json_t *level)
{
    if (j->depth + 1 >= JW_DEPTH) {
        json_decref(level);
        j->failed = true;
        return;
    }
    if (member(j, key, level))
        j->open[++j->depth] = level;
}

void jw_obj(struct jw *j, const char *key) { open_level(j, key, json_object()); }
void jw_arr(struct jw *j, const char *key) { open_level(j, key, json_array()); }

void jw_end(struct jw *j)
{
    if (j->depth > 0)
        j->depth--;
}

void jw_u64(struct jw *j, const char *key, uint64_t v)
{
    /* json_int_t is 64-bit signed; no count rill-load keeps gets near 2^63, but one that did
     * would still be written as a number, rounded to a double. */
    member(j, key, v <= (uint64_t)INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v));
}

void jw_num(struct jw *j, const char *key, double v)
{
    json_t *n;
    if (!isfinite(v))
        n = json_null();
    else if (v == trunc(v) && fabs(v) < 1e17)
        n = json_integer((json_int_t)v); /* what %.17g prints for it: the digits, no dot */
    else
        n = json_real(v);
    member(j, key, n);
}

/* jansson takes UTF-8 only. A string that is not (an argument in another encoding) is written
 * with '?' for every byte outside ASCII, so that the document stays JSON. */
static json_t *string_value(const char *s)
{
    json_t *v = json_string(s);
    if (v)
        return v;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

void jw_str(struct jw *j, const char *key, const char *s)
{
    member(j, key, string_value(s ? s : ""));
}

void jw_bool(struct jw *j, const char *key, bool v)
{
    member(j, key, json_boolean(v));
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

/* Copies a jansson value into *v (zeroed by the caller). Returns 0 or -1 (out of memory). */
static int copy_value(const json_t *in, struct jv *v)
{
    switch (json_typeof(in)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *kid;
        v->type = JV_OBJ;
        if (json_object_size(in) && !(v->kids = calloc(json_object_size(in), sizeof *v->kids)))
            return -1;
        json_object_foreach((json_t *)in, key, kid) {
            struct jv *k = &v->kids[v->nkids++];
            if (!(k->key = strdup(key)) || copy_value(kid, k) < 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *kid;
        v->type = JV_ARR;
        if (json_array_size(in) && !(v->kids = calloc(json_array_size(in), sizeof *v->kids)))
            return -1;
        json_array_foreach(in, i, kid) {
            v->nkids++;
            if (copy_value(kid, &v->kids[i]) < 0)
                return -1;
        }
        return 0;
    }
    case JSON_STRING:
        v->type = JV_STR;
        return (v->str = strdup(json_string_value(in))) ? 0 : -1;
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(in);
        v->type = JV_NUM;
        v->num = (double)i;
        v->u64 = i > 0 ? (uint64_t)i : 0;
        return 0;
    }
    case JSON_REAL:
        v->type = JV_NUM;
        v->num = json_real_value(in);
        v->u64 = v->num >= 18446744073709551616.0 ? UINT64_MAX
                 : v->num > 0                     ? (uint64_t)v->num
                                                  : 0;
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        v->type = JV_BOOL;
        v->num = json_is_true(in);
        return 0;
    case JSON_NULL:
    default:
        v->type = JV_NULL;
        return 0;
    }
}

struct jv *jv_parse(const char *text, size_t *err_at)
{
    json_error_t err;
    /* The whole text must be one value (jansson refuses what follows it unless told not to);
     * duplicate keys are read as the last one, as most readers do. */
    json_t *doc = json_loads(text, 0, &err);
    if (!doc) {
        if (err_at)
            *err_at = err.position > 0 ? (size_t)err.position : 0;
        return NULL;
    }
    struct jv *v = calloc(1, sizeof *v);
    if (v && copy_value(doc, v) < 0) {
        jv_free(v);
        free(v);
        v = NULL;
        if (err_at)
            *err_at = 0;
    }
    json_decref(doc);
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
