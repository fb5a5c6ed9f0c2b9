/* Kernel symbols from /proc/kallsyms: the text symbols (t, T, w, W), sorted by address, looked
 * up by binary search (the function containing an address is the last symbol at or below it).
 * Loaded once per run; every name is classified into its phase on first use and remembered.
 *
 * The addresses are real only for a reader with CAP_SYSLOG and kernel.kptr_restrict below 2;
 * otherwise every address reads 0 and the load fails with the setting that fixes it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"

struct ksym {
    uint64_t addr;
    uint32_t name; /* offset into names */
    int8_t phase;  /* -1 not classified yet */
    bool named;
};

static struct ksym *syms;
static size_t nsyms;
static char *names;
static int load_result = 1; /* 1 not tried, 0 loaded, -errno failed */
static char load_why[160];

static int cmp_ksym(const void *a, const void *b)
{
    const struct ksym *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int push(size_t *cap, size_t *names_len, size_t *names_cap, uint64_t addr,
                const char *name)
{
    size_t l = strlen(name) + 1;
    if (nsyms == *cap) {
        *cap = *cap ? *cap * 2 : 65536;
        struct ksym *n = realloc(syms, *cap * sizeof *syms);
        if (!n)
            return -ENOMEM;
        syms = n;
    }
    if (*names_len + l > *names_cap) {
        *names_cap = *names_cap ? *names_cap * 2 : 1u << 21;
        char *n = realloc(names, *names_cap);
        if (!n)
            return -ENOMEM;
        names = n;
    }
    memcpy(names + *names_len, name, l);
    syms[nsyms++] = (struct ksym){.addr = addr, .name = (uint32_t)*names_len, .phase = -1};
    *names_len += l;
    return 0;
}

static int load(void)
{
    FILE *f = fopen("/proc/kallsyms", "r");
    if (!f) {
        snprintf(load_why, sizeof load_why, "/proc/kallsyms: %s", strerror(errno));
        return -errno;
    }
    size_t cap = 0, nl = 0, ncap = 0;
    bool nonzero = false;
    char line[512], name[256], type;
    unsigned long long addr;
    int r = 0;
    while (r == 0 && fgets(line, sizeof line, f)) {
        if (sscanf(line, "%llx %c %255s", &addr, &type, name) != 3)
            continue;
        if (type != 't' && type != 'T' && type != 'w' && type != 'W')
            continue;
        nonzero |= addr != 0;
        r = push(&cap, &nl, &ncap, addr, name);
    }
    fclose(f);
    if (r < 0) {
        snprintf(load_why, sizeof load_why, "/proc/kallsyms: out of memory");
        return r;
    }
    if (!nonzero) {
        snprintf(load_why, sizeof load_why,
                 "/proc/kallsyms shows no addresses: run as root with kernel.kptr_restrict "
                 "at 0 or 1 (sysctl kernel.kptr_restrict=1)");
        return -EACCES;
    }
    qsort(syms, nsyms, sizeof *syms, cmp_ksym);
    return 0;
}

int probe_ksyms_load(char *why, size_t n)
{
    if (load_result == 1)
        load_result = load();
    if (load_result < 0 && why)
        snprintf(why, n, "%s", load_why);
    return load_result;
}

long probe_ksyms_find(uint64_t addr)
{
    if (!nsyms || addr < syms[0].addr)
        return -1;
    size_t lo = 0, hi = nsyms; /* invariant: syms[lo].addr <= addr, answer in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (syms[mid].addr <= addr)
            lo = mid;
        else
            hi = mid;
    }
    return (long)lo;
}

const char *probe_ksyms_name(long idx)
{
    return idx >= 0 && (size_t)idx < nsyms ? names + syms[idx].name : "[unknown]";
}

size_t probe_ksyms_count(void)
{
    return nsyms;
}

enum probe_phase probe_ksyms_phase(long idx, bool *named)
{
    if (idx < 0 || (size_t)idx >= nsyms) {
        *named = false;
        return PHASE_OTHER;
    }
    struct ksym *k = &syms[idx];
    if (k->phase < 0) {
        k->phase = (int8_t)probe_phase_classify(names + k->name, &k->named);
    }
    *named = k->named;
    return (enum probe_phase)k->phase;
}
