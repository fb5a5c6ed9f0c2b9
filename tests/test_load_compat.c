/* rill-load's JSON against files older versions wrote (tests/data/, see its README.md): today's
 * reader takes them, today's writer gives back their bytes, and `rill-load merge` of them writes
 * the same JSON and text it wrote then. */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "load.h"

#ifndef RILL_TEST_DATA
#error "RILL_TEST_DATA (the tests/data directory) must be defined by the build"
#endif

static const char *const runs[] = {"load-0.1.0-closed.json", "load-0.1.0-open.json"};

/* The whole file, NUL-terminated, in a malloc'd buffer; *len its length. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    char *text = NULL;
    size_t cap = 0;
    FILE *m = open_memstream(&text, &cap);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, m);
    fclose(f);
    fclose(m);
    *len = cap;
    return text;
}

static char *data_file(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", RILL_TEST_DATA, name);
    return slurp(path, len);
}

static struct jv *parse_data(const char *name)
{
    size_t len, at = 0;
    char *text = data_file(name, &len);
    struct jv *root = jv_parse(text, &at);
    cr_assert_not_null(root, "%s: not read (at byte %zu)", name, at);
    free(text);
    return root;
}

Test(load_compat, reads_the_files_of_0_1_0)
{
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        struct jv *root = parse_data(runs[i]);
        cr_assert_str_eq(jv_get(root, "tool")->str, "rill-load");
        cr_assert_str_eq(jv_get(root, "version")->str, "0.1.0");
        cr_assert_eq(jv_get(root, "format")->u64, 1);
        static const char *const hists[] = {"histograms.latency", "histograms.latency_uncorrected",
                                            "histograms.connect"};
        static struct hist h;
        for (size_t k = 0; k < 3; k++)
            cr_assert_eq(jv_hist(jv_get(root, hists[k]), &h), 0, "%s: %s", runs[i], hists[k]);
        cr_assert_eq(jv_get(root, "results.requests")->u64,
                     jv_get(root, "histograms.latency.count")->u64);
        cr_assert_gt(jv_get(root, "results.requests_per_s")->num, 0);
        /* A number with a fraction (a real) and one written as 0 (an integer) both read. */
        cr_assert_eq(jv_get(root, "results.window_s")->type, JV_NUM);
        cr_assert_eq(jv_get(root, "config.requests_limit")->type, JV_NUM);
        cr_assert_eq(jv_get(root, "results.saturated")->type, JV_BOOL);
        cr_assert_eq(jv_get(root, "config.pin")->type, JV_ARR);
        jv_free(root);
        free(root);
    }
}

/* Writes v (a member of an object when key is set) with today's writer. */
static void rewrite(struct jw *j, const char *key, const struct jv *v)
{
    switch (v->type) {
    case JV_OBJ:
    case JV_ARR:
        if (v->type == JV_OBJ)
            jw_obj(j, key);
        else
            jw_arr(j, key);
        for (size_t i = 0; i < v->nkids; i++)
            rewrite(j, v->type == JV_OBJ ? v->kids[i].key : NULL, &v->kids[i]);
        jw_end(j);
        break;
    case JV_STR:
        jw_str(j, key, v->str);
        break;
    case JV_BOOL:
        jw_bool(j, key, v->num != 0);
        break;
    case JV_NULL:
        jw_num(j, key, NAN); /* how rill-load writes null: a number it could not compute */
        break;
    case JV_NUM:
        if (v->num >= 0 && (double)v->u64 == v->num)
            jw_u64(j, key, v->u64);
        else
            jw_num(j, key, v->num);
        break;
    }
}

/* Key order, separators, number formatting, strings, null: every byte as 0.1.0 wrote it. */
Test(load_compat, writer_gives_back_the_bytes_of_0_1_0)
{
    static const char *const files[] = {"load-0.1.0-closed.json", "load-0.1.0-open.json",
                                        "merge-0.1.0.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        size_t len;
        char *want = data_file(files[i], &len);
        struct jv *root = parse_data(files[i]);
        char *got = NULL;
        size_t got_len = 0;
        FILE *f = open_memstream(&got, &got_len);
        struct jw *j = jw_open(f);
        cr_assert_not_null(j);
        for (size_t k = 0; k < root->nkids; k++)
            rewrite(j, root->kids[k].key, &root->kids[k]);
        cr_assert_eq(jw_close(j), 0);
        fclose(f);
        size_t at = 0;
        while (at < len && at < got_len && want[at] == got[at])
            at++;
        cr_assert(at == len && at == got_len, "%s: differs at byte %zu: ...%.60s... vs ...%.60s...",
                  files[i], at, want + (at > 20 ? at - 20 : 0), got + (at > 20 ? at - 20 : 0));
        free(got);
        free(want);
        jv_free(root);
        free(root);
    }
}

/* Numbers the fixtures may not hold: integral doubles, tiny and huge ones, non-finite. */
Test(load_compat, numbers_print_as_percent_17g)
{
    char *got = NULL;
    size_t got_len = 0;
    FILE *f = open_memstream(&got, &got_len);
    struct jw *j = jw_open(f);
    jw_num(j, "zero", 0);
    jw_num(j, "int", 500);
    jw_num(j, "big", 12345678901234567.0);
    jw_num(j, "frac", 0.1);
    jw_num(j, "neg", -2.5);
    jw_num(j, "nan", NAN);
    jw_num(j, "inf", INFINITY);
    jw_u64(j, "u", 18446744073709551ull);
    jw_str(j, "s", "tab\tq\"b\\");
    jw_arr(j, "empty");
    jw_end(j);
    jw_obj(j, "o");
    jw_end(j);
    cr_assert_eq(jw_close(j), 0);
    fclose(f);
    cr_assert_str_eq(got, "{\"zero\":0,\"int\":500,\"big\":12345678901234568,"
                          "\"frac\":0.10000000000000001,\"neg\":-2.5,\"nan\":null,\"inf\":null,"
                          "\"u\":18446744073709551,\"s\":\"tab\\tq\\\"b\\\\\",\"empty\":[],"
                          "\"o\":{}}\n");
    free(got);
}

/* `rill-load merge` of the 0.1.0 files: the same JSON and text as 0.1.0's merge wrote. */
Test(load_compat, merge_of_0_1_0_files_is_unchanged, .timeout = 30)
{
    char out[128], txt[128], cmd[2048];
    snprintf(out, sizeof out, "/tmp/rill-load-compat-%d.json", getpid());
    snprintf(txt, sizeof txt, "/tmp/rill-load-compat-%d.txt", getpid());
    snprintf(cmd, sizeof cmd, "'%s' merge --json '%s' '%s/%s' '%s/%s' >'%s' </dev/null",
             RILL_LOAD_BIN, out, RILL_TEST_DATA, runs[0], RILL_TEST_DATA, runs[1], txt);
    int st = system(cmd);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status %d", cmd, st);
    const char *pairs[2][2] = {{out, "merge-0.1.0.json"}, {txt, "merge-0.1.0.txt"}};
    for (int i = 0; i < 2; i++) {
        size_t n1, n2;
        char *got = slurp(pairs[i][0], &n1);
        char *want = data_file(pairs[i][1], &n2);
        cr_assert(n1 == n2 && memcmp(got, want, n1) == 0, "%s differs from tests/data/%s",
                  pairs[i][0], pairs[i][1]);
        free(got);
        free(want);
        unlink(pairs[i][0]);
    }
}
