/* --profile: who opens the counters, when they run, and what the cell's profile says.
 *
 * Thread scope: each side thread opens a cpu-clock counter on itself (pid 0, any
 * CPU), so only the probe's own threads are sampled, wherever the scheduler puts them; it starts
 * disabled, is enabled after the start barrier and disabled when the side's run ends, so setup
 * and teardown are not in the profile.
 *
 * CPU scope (the default where allowed): the main thread opens one counter per CPU the process may
 * run on (pid -1), before the side threads start, and keeps the samples whose tid is a side
 * thread's, taken after that side's start. It exists because a per-thread counter is switched
 * out and in with its thread: the kernel stops and restarts the counter's hrtimer at every
 * context switch, which on a virtual machine costs timer reprogramming (a VM exit) per switch,
 * and a blocking ping-pong switches four times per round trip. A CPU counter runs through
 * context switches untouched: on this project's 2-CPU VM a 64 B TCP ping-pong went from about
 * 14 us to 52 us per round trip under thread scope and stayed at about 14.5 us under CPU scope
 * (BENCHMARKS.md), and thread scope's own switching cost showed up as `wakeup` in the profile
 * it was taking. CPU scope needs more privilege (root, CAP_PERFMON, or
 * kernel.perf_event_paranoid at 0 or below) and samples the other processes on those CPUs too
 * (discarded here, but their interrupts are paid).
 *
 * Either way the rings are 1 MiB (about 300 ms of samples at 10 kHz with deep callchains), so
 * a main thread kept off the CPU for a while loses none; what the kernel could not write is
 * counted (PERF_RECORD_LOST). */
#include <errno.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"
#include "profile_int.h"

#define RING_PAGES 256 /* data pages per ring, a power of two: 1 MiB */
#define MAX_CPUS 256

static struct probe_prof_ring cpu_ring[MAX_CPUS];
static unsigned ncpu_ring;

static void attr_init(struct perf_event_attr *a, uint64_t period_ns)
{
    memset(a, 0, sizeof *a);
    a->size = sizeof *a;
    a->type = PERF_TYPE_SOFTWARE;
    a->config = PERF_COUNT_SW_CPU_CLOCK;
    a->sample_period = period_ns; /* cpu-clock counts nanoseconds */
    a->sample_type =
        PERF_SAMPLE_IP | PERF_SAMPLE_TID | PERF_SAMPLE_TIME | PERF_SAMPLE_CALLCHAIN;
    a->use_clockid = 1;
    a->clockid = CLOCK_MONOTONIC; /* the clock of probe_now_ns(), for the CPU scope's t0 */
    a->disabled = 1;
    a->exclude_hv = 1;
}

static uint64_t period_of(const struct probe_opts *o)
{
    return 1000000000ull / (o->profile_hz ? o->profile_hz : PROBE_PROF_HZ_DEFAULT);
}

static int perf_open(pid_t pid, int cpu, uint64_t period_ns)
{
    struct perf_event_attr a;
    attr_init(&a, period_ns);
    return (int)syscall(SYS_perf_event_open, &a, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC);
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
static void denied_why(int err, enum probe_prof_scope scope, char *why, size_t n)
{
    if (err == EACCES || err == EPERM)
        snprintf(why, n,
                 "perf_event_open: %s (kernel.perf_event_paranoid is %d): sampling kernel "
                 "callchains %s needs root or CAP_PERFMON, or `sysctl "
                 "kernel.perf_event_paranoid=%d`",
                 strerror(err), read_paranoid(),
                 scope == PROF_SCOPE_CPU ? "of a whole CPU" : "of a thread",
                 scope == PROF_SCOPE_CPU ? 0 : 1);
    else if (err == ENOSYS)
        snprintf(why, n, "perf_event_open: %s (a seccomp filter, or a kernel built without "
                         "CONFIG_PERF_EVENTS)", strerror(err));
    else
        snprintf(why, n, "perf_event_open: %s (no software cpu-clock event)", strerror(err));
}

bool probe_profile_available(enum probe_prof_scope scope, char *why, size_t n)
{
    uint64_t period = 1000000000ull / PROBE_PROF_HZ_DEFAULT;
    int fd = scope == PROF_SCOPE_CPU
                 ? perf_open(-1, sched_getcpu() < 0 ? 0 : sched_getcpu(), period)
                 : perf_open(0, -1, period);
    if (fd < 0) {
        denied_why(errno, scope, why, n);
        return false;
    }
    close(fd);
    return probe_ksyms_load(why, n) == 0;
}

static int ring_open(struct probe_prof_ring *r, pid_t pid, int cpu, uint64_t period_ns)
{
    long page = sysconf(_SC_PAGESIZE);
    r->ring = NULL;
    r->fd = perf_open(pid, cpu, period_ns);
    if (r->fd < 0)
        return -errno;
    /* The mmap is charged to the locked-memory allowance (kernel.perf_event_mlock_kb) for
     * non-root users: halve the ring until it fits. */
    for (size_t pages = RING_PAGES; pages >= 8; pages /= 2) {
        r->ring_len = (pages + 1) * (size_t)page;
        r->ring = mmap(NULL, r->ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
        if (r->ring != MAP_FAILED)
            return 0;
    }
    int err = -errno;
    r->ring = NULL;
    close(r->fd);
    r->fd = -1;
    return err;
}

static void ring_enable(struct probe_prof_ring *r, bool on)
{
    if (r->fd >= 0)
        ioctl(r->fd, on ? PERF_EVENT_IOC_ENABLE : PERF_EVENT_IOC_DISABLE, 0);
}

static void ring_close(struct probe_prof_ring *r)
{
    if (r->ring)
        munmap(r->ring, r->ring_len);
    if (r->fd >= 0)
        close(r->fd);
    r->ring = NULL;
    r->fd = -1;
}

void probe_prof_side_start(struct probe_side *s)
{
    struct probe_prof_side *p = &s->prof;
    p->tid = (int)gettid();
    if (s->cell->opts->profile_scope != PROF_SCOPE_CPU) /* AUTO is resolved by then */
        p->err = ring_open(&p->r, 0, -1, period_of(s->cell->opts));
}

void probe_prof_side_run(struct probe_side *s, bool on)
{
    struct probe_prof_side *p = &s->prof;
    if (on) {
        p->t0_ns = probe_now_ns();
        ring_enable(&p->r, true);
        __atomic_store_n(&p->ready, 1, __ATOMIC_RELEASE);
    } else {
        ring_enable(&p->r, false);
    }
}

/* CPU scope: a counter on every CPU this process may run on, enabled before the sides start. */
static void open_cpu_rings(struct probe_profile *pr, uint64_t period_ns)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    ncpu_ring = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && ncpu_ring < MAX_CPUS; cpu++) {
        if (!CPU_ISSET(cpu, &set))
            continue;
        int r = ring_open(&cpu_ring[ncpu_ring], -1, cpu, period_ns);
        if (r < 0) {
            denied_why(-r, PROF_SCOPE_CPU, pr->why, sizeof pr->why);
            continue;
        }
        ring_enable(&cpu_ring[ncpu_ring++], true);
    }
}

void probe_prof_cell_begin(struct probe_cell *c)
{
    probe_tally_begin();
    probe_prof_folded_begin(c);
    c->res.prof.period_ns = period_of(c->opts);
    if (c->opts->profile_scope == PROF_SCOPE_CPU)
        open_cpu_rings(&c->res.prof, c->res.prof.period_ns);
}

void probe_prof_drain(struct probe_cell *c, struct probe_side *sides, unsigned nsides)
{
    if (!c->opts->profile)
        return;
    bool pair = c->mode == MODE_PAIR;
    for (unsigned i = 0; i < ncpu_ring; i++)
        probe_tally_drain(&cpu_ring[i], -1, sides, nsides, pair);
    for (unsigned i = 0; i < nsides; i++)
        if (__atomic_load_n(&sides[i].prof.ready, __ATOMIC_ACQUIRE))
            probe_tally_drain(&sides[i].prof.r, (int)i, sides, nsides, pair);
}

void probe_prof_cell_end(struct probe_cell *c, struct probe_side *sides, unsigned nsides)
{
    struct probe_profile *pr = &c->res.prof;
    for (unsigned i = 0; i < ncpu_ring; i++)
        ring_enable(&cpu_ring[i], false);
    probe_prof_drain(c, sides, nsides);
    for (unsigned i = 0; i < ncpu_ring; i++)
        ring_close(&cpu_ring[i]);
    ncpu_ring = 0;
    for (unsigned i = 0; i < nsides; i++) {
        if (sides[i].prof.err && !pr->why[0]) {
            char why[180];
            denied_why(-sides[i].prof.err, PROF_SCOPE_THREAD, why, sizeof why);
            snprintf(pr->why, sizeof pr->why, "%s side: %s", i ? "server" : "client", why);
        }
        ring_close(&sides[i].prof.r);
        sides[i].prof.ready = 0;
    }
    probe_tally_end(pr, c->opts->top);
    probe_prof_folded_end(c);
}
