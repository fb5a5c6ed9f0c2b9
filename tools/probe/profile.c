/* --profile: per-thread cpu-clock sampling with callchains, and the cell's phase shares.
 *
 * Each side thread opens a counter on itself (pid 0, any CPU), so only the probe's own two
 * threads are sampled, wherever the scheduler puts them; the counter starts disabled and is
 * enabled after the start barrier, disabled when the side's run ends, so setup and teardown are
 * not in the profile. The kernel writes samples into the thread's mmap ring; the main thread,
 * which wakes every 20 ms to watch the cell anyway, drains both rings (one consumer per ring:
 * data_head read with acquire, data_tail written with release, as perf_event_open(2) asks).
 * The ring holds about 100 ms of samples at 10 kHz, so a main thread kept off the CPU for a
 * while loses none; samples the kernel could not write are counted (PERF_RECORD_LOST).
 *
 * A sample's phase is decided by its kernel callchain, walked from the leaf (phases.c says
 * why); a sample with no kernel frame was taken in user space. The cell's CPU time is the
 * samples' count (each stands for PROBE_PROF_PERIOD_NS of thread CPU time). */
#include <errno.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "probe.h"
#include "profile_int.h"

#define RING_PAGES 256 /* data pages per thread, a power of two: 1 MiB */
#define MAX_FRAMES 128

/* The per-cell tallies; only the main thread touches them. */
static uint64_t phase_count[PHASE_COUNT], samples, lost;
static uint32_t *leaf_count;   /* per kernel symbol, probe_ksyms_count() entries */
static long *touched;          /* symbols with a non-zero leaf_count */
static size_t ntouched;

static void attr_init(struct perf_event_attr *a)
{
    memset(a, 0, sizeof *a);
    a->size = sizeof *a;
    a->type = PERF_TYPE_SOFTWARE;
    a->config = PERF_COUNT_SW_CPU_CLOCK;
    a->sample_period = PROBE_PROF_PERIOD_NS;
    a->sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_CALLCHAIN;
    a->disabled = 1;
    a->exclude_hv = 1;
}

static int perf_open_self(void)
{
    struct perf_event_attr a;
    attr_init(&a);
    return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static int read_paranoid(void)
{
    FILE *f = fopen("/proc/sys/kernel/perf_event_paranoid", "r");
    int v = 99;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = 99;
        fclose(f);
    }
    return v;
}

/* The reason sampling failed with err, and the setting that fixes it. */
static void denied_why(int err, char *why, size_t n)
{
    if (err == EACCES || err == EPERM)
        snprintf(why, n,
                 "perf_event_open: %s (kernel.perf_event_paranoid is %d): sampling kernel "
                 "callchains needs root or CAP_PERFMON, or `sysctl kernel.perf_event_paranoid=1`",
                 strerror(err), read_paranoid());
    else if (err == ENOSYS)
        snprintf(why, n, "perf_event_open: %s (a seccomp filter, or a kernel built without "
                         "CONFIG_PERF_EVENTS)", strerror(err));
    else
        snprintf(why, n, "perf_event_open: %s (no software cpu-clock event)", strerror(err));
}

bool probe_profile_available(char *why, size_t n)
{
    int fd = perf_open_self();
    if (fd < 0) {
        denied_why(errno, why, n);
        return false;
    }
    close(fd);
    return probe_ksyms_load(why, n) == 0;
}

void probe_prof_open(struct probe_prof_side *p)
{
    long page = sysconf(_SC_PAGESIZE);
    p->fd = perf_open_self();
    if (p->fd < 0) {
        p->err = -errno;
        return;
    }
    /* The mmap is charged to the locked-memory allowance (kernel.perf_event_mlock_kb) for
     * non-root users: halve the ring until it fits. */
    for (size_t pages = RING_PAGES; pages >= 8; pages /= 2) {
        p->ring_len = (pages + 1) * (size_t)page;
        p->ring = mmap(NULL, p->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
        if (p->ring != MAP_FAILED)
            break;
        p->ring = NULL;
    }
    if (!p->ring) {
        p->err = -errno;
        close(p->fd);
        p->fd = -1;
        return;
    }
    __atomic_store_n(&p->ready, 1, __ATOMIC_RELEASE);
}

void probe_prof_enable(struct probe_prof_side *p, bool on)
{
    if (p->fd >= 0 && p->ring)
        ioctl(p->fd, on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0);
}

static void prof_close(struct probe_prof_side *p)
{
    if (p->ring)
        munmap(p->ring, p->ring_len);
    if (p->fd >= 0)
        close(p->fd);
    p->ring = NULL;
    p->fd = -1;
    p->ready = 0;
}

void probe_prof_cell_begin(struct probe_cell *c)
{
    memset(phase_count, 0, sizeof phase_count);
    samples = lost = 0;
    for (size_t i = 0; i < ntouched; i++)
        leaf_count[touched[i]] = 0;
    ntouched = 0;
    if (!leaf_count && probe_ksyms_count()) {
        leaf_count = calloc(probe_ksyms_count(), sizeof *leaf_count);
        touched = calloc(probe_ksyms_count(), sizeof *touched);
        if (!leaf_count || !touched) {
            free(leaf_count);
            free(touched);
            leaf_count = NULL;
            touched = NULL;
        }
    }
    probe_prof_folded_begin(c);
}

/* One sample: its kernel frames (leaf first) and user frames (leaf first). */
static void account(const uint64_t *kern, unsigned nk, const uint64_t *user, unsigned nu,
                    int side)
{
    long sym[MAX_FRAMES];
    enum probe_phase phase = nk ? PHASE_OTHER : PHASE_USER;
    bool decided = false;
    for (unsigned i = 0; i < nk; i++) {
        bool named;
        sym[i] = probe_ksyms_find(kern[i]);
        enum probe_phase p = probe_ksyms_phase(sym[i], &named);
        if (named && !decided) {
            phase = p;
            decided = true;
        }
    }
    samples++;
    phase_count[phase]++;
    if (nk && sym[0] >= 0 && leaf_count) {
        if (leaf_count[sym[0]]++ == 0)
            touched[ntouched++] = sym[0];
    }
    probe_prof_folded_add(sym, nk, user, nu, side);
}

static void parse_sample(const unsigned char *rec, size_t len, int side)
{
    /* PERF_SAMPLE_IP, PERF_SAMPLE_TID, PERF_SAMPLE_CALLCHAIN, in that order (after the header). */
    size_t off = sizeof(struct perf_event_header) + 8 + 8;
    uint64_t nr;
    if (off + 8 > len)
        return;
    memcpy(&nr, rec + off, 8);
    off += 8;
    if (off + nr * 8 > len)
        return;
    uint64_t kern[MAX_FRAMES], user[MAX_FRAMES], ctx = 0;
    unsigned nk = 0, nu = 0;
    for (uint64_t i = 0; i < nr; i++) {
        uint64_t ip;
        memcpy(&ip, rec + off + i * 8, 8);
        if (ip >= (uint64_t)PERF_CONTEXT_MAX) {
            ctx = ip;
            continue;
        }
        if (ctx == (uint64_t)PERF_CONTEXT_KERNEL && nk < MAX_FRAMES)
            kern[nk++] = ip;
        else if (ctx == (uint64_t)PERF_CONTEXT_USER && nu < MAX_FRAMES)
            user[nu++] = ip;
    }
    account(kern, nk, user, nu, side);
}

static void drain_one(struct probe_prof_side *p, int side)
{
    if (!__atomic_load_n(&p->ready, __ATOMIC_ACQUIRE))
        return;
    struct perf_event_mmap_page *mp = p->ring;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t size = mp->data_size ? mp->data_size : p->ring_len - (size_t)page;
    unsigned char *data = (unsigned char *)p->ring + (mp->data_offset ? mp->data_offset : (uint64_t)page);
    uint64_t head = __atomic_load_n(&mp->data_head, __ATOMIC_ACQUIRE), tail = mp->data_tail;
    static unsigned char rec[65536];
    while (tail + sizeof(struct perf_event_header) <= head) {
        struct perf_event_header h;
        for (size_t i = 0; i < sizeof h; i++)
            ((unsigned char *)&h)[i] = data[(tail + i) % size];
        if (h.size < sizeof h || tail + h.size > head)
            break;
        for (size_t i = 0; i < h.size; i++)
            rec[i] = data[(tail + i) % size];
        if (h.type == PERF_RECORD_SAMPLE)
            parse_sample(rec, h.size, side);
        else if (h.type == PERF_RECORD_LOST && h.size >= sizeof h + 16) {
            uint64_t n;
            memcpy(&n, rec + sizeof h + 8, 8);
            lost += n;
        }
        tail += h.size;
    }
    __atomic_store_n(&mp->data_tail, tail, __ATOMIC_RELEASE);
}

void probe_prof_drain(struct probe_cell *c, struct probe_side *sides, unsigned nsides)
{
    if (!c->opts->profile)
        return;
    for (unsigned i = 0; i < nsides; i++)
        drain_one(&sides[i].prof, c->mode == MODE_PAIR ? 2 : (int)i);
}

static int cmp_leaf(const void *a, const void *b)
{
    uint32_t x = leaf_count[*(const long *)a], y = leaf_count[*(const long *)b];
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The cell's top leaf functions, and the unnamed ones among them. */
static void top_functions(struct probe_profile *pr, unsigned ntop)
{
    if (!leaf_count)
        return;
    qsort(touched, ntouched, sizeof *touched, cmp_leaf);
    for (size_t i = 0; i < ntouched; i++) {
        long s = touched[i];
        double pct = 100.0 * leaf_count[s] / (double)samples;
        bool named;
        probe_ksyms_phase(s, &named);
        if (pr->ntop < ntop) {
            snprintf(pr->top[pr->ntop].name, sizeof pr->top[0].name, "%s", probe_ksyms_name(s));
            pr->top[pr->ntop++].pct = pct;
        }
        if (!named && pr->nunmapped < PROBE_PROF_UNMAPPED) {
            snprintf(pr->unmapped[pr->nunmapped].name, sizeof pr->unmapped[0].name, "%s",
                     probe_ksyms_name(s));
            pr->unmapped[pr->nunmapped++].pct = pct;
        }
    }
}

void probe_prof_cell_end(struct probe_cell *c, struct probe_side *sides, unsigned nsides)
{
    struct probe_profile *pr = &c->res.prof;
    probe_prof_drain(c, sides, nsides);
    for (unsigned i = 0; i < nsides; i++) {
        if (sides[i].prof.err && !pr->why[0]) {
            char why[180];
            denied_why(-sides[i].prof.err, why, sizeof why);
            snprintf(pr->why, sizeof pr->why, "%s side: %s", i ? "server" : "client", why);
        }
        prof_close(&sides[i].prof);
    }
    pr->samples = samples;
    pr->lost = lost;
    pr->on = samples > 0;
    if (!samples && !pr->why[0])
        snprintf(pr->why, sizeof pr->why, "no samples (the cell used under %llu us of CPU)",
                 PROBE_PROF_PERIOD_NS / 1000);
    for (int p = 0; p < PHASE_COUNT && samples; p++)
        pr->phase_pct[p] = 100.0 * (double)phase_count[p] / (double)samples;
    if (samples)
        top_functions(pr, c->opts->top);
    probe_prof_folded_end(c);
}
