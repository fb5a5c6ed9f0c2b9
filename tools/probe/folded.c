/* --folded FILE: the profile's stacks in the folded format flame-graph tools read
 * (flamegraph.pl, inferno): one line per distinct stack, frames root first, separated by ';',
 * then a space and the number of samples. Each stack starts with the cell
 * ("tcp4/rw-block/stream/64") and the thread ("client", "server", or "pair"), so one file holds
 * every cell and a flame graph can be cut to one with grep.
 *
 * User frames are named by dladdr: the exported symbol when there is one (libc's read, send ...),
 * else the object's file name in brackets. Kernel frames come from /proc/kallsyms. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "profile_int.h"

#define USER_FRAMES 16 /* user frames kept, nearest the leaf */

static FILE *out;

struct entry {
    char *stack;
    uint64_t count;
};

static struct entry *tab;
static size_t tab_cap, tab_used;
static char prefix[128];

int probe_prof_folded_open(const char *path, char *why, size_t n)
{
    out = fopen(path, "w");
    if (!out) {
        snprintf(why, n, "%m");
        return -1;
    }
    return 0;
}

void probe_prof_folded_close(void)
{
    if (out)
        fclose(out);
    out = NULL;
}

void probe_prof_folded_begin(const struct probe_cell *c)
{
    if (!out)
        return;
    snprintf(prefix, sizeof prefix, "%s/%s/%s/%zu", probe_transport_name(c->transport),
             probe_strategy_get(c->strategy)->name, probe_mode_name(c->mode), c->size);
}

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct entry *slot(struct entry *t, size_t cap, const char *s)
{
    size_t i = hash(s) & (cap - 1);
    while (t[i].stack && strcmp(t[i].stack, s) != 0)
        i = (i + 1) & (cap - 1);
    return &t[i];
}

static int grow(void)
{
    size_t cap = tab_cap ? tab_cap * 2 : 4096;
    struct entry *t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < tab_cap; i++)
        if (tab[i].stack)
            *slot(t, cap, tab[i].stack) = tab[i];
    free(tab);
    tab = t;
    tab_cap = cap;
    return 0;
}

/* Appends ";name" to buf at *len, if it fits. */
static void frame(char *buf, size_t cap, size_t *len, const char *name)
{
    int w = snprintf(buf + *len, cap - *len, ";%s", name);
    if (w > 0 && (size_t)w < cap - *len)
        *len += (size_t)w;
}

static const char *user_name(uint64_t ip, char *buf, size_t n)
{
    Dl_info di = {0};
    if (dladdr((void *)(uintptr_t)ip, &di) && di.dli_sname)
        return di.dli_sname;
    const char *f = di.dli_fname ? strrchr(di.dli_fname, '/') : NULL;
    snprintf(buf, n, "[%s]", f ? f + 1 : "user");
    return buf;
}

void probe_prof_folded_add(const long *ksym, unsigned nk, const uint64_t *user, unsigned nu,
                           int side)
{
    static const char *const thread[] = {"client", "server", "pair"};
    if (!out)
        return;
    char buf[8192], name[128];
    size_t len = (size_t)snprintf(buf, sizeof buf, "%s;%s", prefix, thread[side]);
    char prev[128] = "";
    for (unsigned i = nu < USER_FRAMES ? nu : USER_FRAMES; i-- > 0;) {
        const char *u = user_name(user[i], name, sizeof name);
        if (strcmp(prev, u) != 0) /* one frame for a run of the same name (recursion, [obj]) */
            frame(buf, sizeof buf, &len, u);
        snprintf(prev, sizeof prev, "%s", u);
    }
    for (unsigned i = nk; i-- > 0;)
        frame(buf, sizeof buf, &len, probe_ksyms_name(ksym[i]));
    if (tab_used * 2 >= tab_cap && grow() < 0)
        return;
    struct entry *e = slot(tab, tab_cap, buf);
    if (!e->stack) {
        e->stack = strdup(buf);
        if (!e->stack)
            return;
        tab_used++;
    }
    e->count++;
}

void probe_prof_folded_end(const struct probe_cell *c)
{
    (void)c;
    if (!out)
        return;
    for (size_t i = 0; i < tab_cap; i++)
        if (tab[i].stack) {
            fprintf(out, "%s %llu\n", tab[i].stack, (unsigned long long)tab[i].count);
            free(tab[i].stack);
            tab[i].stack = NULL;
        }
    tab_used = 0;
    fflush(out);
}
