/* The engine: N loops on N pinned threads, a SO_REUSEPORT listener per loop, steering, the
 * mailbox between them, graceful stop, and stats gathered on each loop's own thread.
 *
 * Loops share nothing. The only thing other threads touch is a loop's mailbox (mailbox.c) and
 * its wake-up (rill_loop_wake); everything else an engine call needs done on a running loop is
 * posted there and, when the caller needs an answer, waited for. Before start and after the
 * threads are joined, the calling thread does the work itself. */
#include <errno.h>
#include <linux/filter.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "conn.h"
#include "dgram.h"
#include "mailbox.h"
#include "sys.h"

#define ENGINE_MAX_LOOPS 1024u
#define ENGINE_MAX_LISTENERS 64u

struct engine_loop {
    rill_loop *loop;
    pthread_t tid;
    int cpu; /* -1: not pinned */
    int run_status;
    struct rill__mailbox *mbox;
    struct rill_loop_stats final; /* counters as the loop stopped */
    rill_timer *drain_timer;
};

struct rill_engine {
    struct rill_engine_config cfg;
    uint32_t n;
    struct engine_loop *loops;
    /* The start gate: threads count themselves ready, then wait for `go` (1: run, -1: a later
     * thread could not start, so return without touching the loop). */
    pthread_mutex_t gate_mu;
    pthread_cond_t gate_cv;
    uint32_t ready;
    int go;
    pthread_barrier_t exit_barrier; /* no loop is destroyed before stop has stopped touching it */
    bool running, joined;
    _Atomic bool shutting_down; /* posts are refused from the start of a stop */
    _Atomic uint32_t posting;   /* posts between their shutting_down check and their wake-up */
    uint32_t drain_ms;
};

/* ---- configuration -------------------------------------------------------------------------- */

void rill_engine_config_init(struct rill_engine_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->mailbox_capacity = 4096;
    rill_loop_config_init(&cfg->loop);
}

/* The CPUs of the process's affinity mask, in order; returns how many (at most max). */
static uint32_t affinity_cpus(int *cpus, uint32_t max)
{
    cpu_set_t set;
    uint32_t n = 0;
    if (sched_getaffinity(0, sizeof set, &set) < 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        for (long i = 0; i < c && n < max; i++)
            cpus[n++] = (int)i;
        return n;
    }
    for (int i = 0; i < CPU_SETSIZE && n < max; i++)
        if (CPU_ISSET(i, &set))
            cpus[n++] = i;
    return n;
}

int rill_engine_create(const struct rill_engine_config *cfg, rill_engine **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct rill_engine_config c;
    rill_engine_config_init(&c);
    if (cfg) {
        c = *cfg;
        if (!c.mailbox_capacity)
            c.mailbox_capacity = 4096;
    }
    if (c.loops > ENGINE_MAX_LOOPS || (c.flags & ~RILL_ENGINE_F_NO_PIN) ||
        c.mailbox_capacity < 2 || (c.mailbox_capacity & (c.mailbox_capacity - 1)))
        return -EINVAL;
    int cpu_list[ENGINE_MAX_LOOPS];
    uint32_t ncpu = affinity_cpus(cpu_list, ENGINE_MAX_LOOPS);
    rill_engine *e = rill__calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->cfg = c;
    e->n = c.loops ? c.loops : (ncpu ? ncpu : 1);
    e->loops = rill__calloc(e->n, sizeof *e->loops);
    if (!e->loops) {
        rill__free(e);
        return -ENOMEM;
    }
    int r = 0;
    for (uint32_t i = 0; i < e->n && r == 0; i++) {
        struct engine_loop *el = &e->loops[i];
        el->cpu = (c.flags & RILL_ENGINE_F_NO_PIN) || ncpu == 0 ? -1 : cpu_list[i % ncpu];
        el->mbox = rill__mailbox_create(c.mailbox_capacity);
        if (!el->mbox) {
            r = -ENOMEM;
            break;
        }
        r = rill_loop_create(&c.loop, &el->loop);
        if (r == 0) {
            el->loop->engine = e;
            el->loop->index = (int)i;
            el->loop->mbox = el->mbox;
        }
    }
    if (r < 0) {
        e->joined = true;
        rill_engine_destroy(e);
        return r;
    }
    *out = e;
    return 0;
}

/* ---- threads -------------------------------------------------------------------------------- */

struct thread_arg {
    rill_engine *e;
    uint32_t i;
};

static void *loop_thread(void *p)
{
    struct thread_arg *ta = p;
    rill_engine *e = ta->e;
    struct engine_loop *el = &e->loops[ta->i];
    rill__free(ta);
    if (el->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(el->cpu, &set);
        /* Best effort: a CPU taken away since create leaves the thread unpinned. */
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    pthread_mutex_lock(&e->gate_mu);
    e->ready++;
    pthread_cond_broadcast(&e->gate_cv);
    while (e->go == 0)
        pthread_cond_wait(&e->gate_cv, &e->gate_mu);
    int go = e->go;
    pthread_mutex_unlock(&e->gate_mu);
    if (go < 0)
        return NULL; /* the start failed: the loop never ran and stays the creator's */
    el->run_status = rill_loop_run(el->loop);
    pthread_barrier_wait(&e->exit_barrier);
    /* The loop ends on its own thread: an io_uring ring belongs to the thread that ran it. */
    rill_loop_stats(el->loop, &el->final);
    rill_timer_destroy(el->drain_timer);
    el->drain_timer = NULL;
    rill_loop_destroy(el->loop);
    el->loop = NULL;
    return NULL;
}

int rill_engine_start(rill_engine *e)
{
    if (!e)
        return -EINVAL;
    if (e->running || e->joined)
        return -EALREADY;
    pthread_mutex_init(&e->gate_mu, NULL);
    pthread_cond_init(&e->gate_cv, NULL);
    pthread_barrier_init(&e->exit_barrier, NULL, e->n + 1);
    e->ready = 0;
    e->go = 0;
    uint32_t started = 0;
    int r = 0;
    for (; started < e->n; started++) {
        struct thread_arg *ta = rill__malloc(sizeof *ta);
        if (ta)
            *ta = (struct thread_arg){e, started};
        r = ta ? pthread_create(&e->loops[started].tid, NULL, loop_thread, ta) : ENOMEM;
        if (r != 0) {
            rill__free(ta);
            rill__log("engine: thread %u: %s", started, strerror(r));
            break;
        }
    }
    /* Every thread started waits at the gate: all run, or (a later one could not start) all
     * leave without running their loops, which stay the engine's to destroy or start again. */
    pthread_mutex_lock(&e->gate_mu);
    while (r == 0 && e->ready < e->n)
        pthread_cond_wait(&e->gate_cv, &e->gate_mu);
    e->go = r == 0 ? 1 : -1;
    pthread_cond_broadcast(&e->gate_cv);
    pthread_mutex_unlock(&e->gate_mu);
    if (r != 0) {
        for (uint32_t i = 0; i < started; i++)
            pthread_join(e->loops[i].tid, NULL);
        pthread_barrier_destroy(&e->exit_barrier);
        pthread_cond_destroy(&e->gate_cv);
        pthread_mutex_destroy(&e->gate_mu);
        return -r;
    }
    e->running = true;
    return 0;
}

/* ---- posting -------------------------------------------------------------------------------- */

/* From one loop of the engine to another on io_uring, the sender's ring carries the wake-up
 * (IORING_OP_MSG_RING) in its next submission; from anywhere else, the eventfd. */
static void engine_wake(rill_engine *e, uint32_t index)
{
    rill_loop *dst = e->loops[index].loop, *src = rill__tls_loop;
    if (src && src != dst && src->engine == e && src->ops == dst->ops && src->ops->post_wake &&
        src->ops->post_wake(src, dst) == 0)
        return;
    rill_loop_wake(dst);
}

int rill__engine_push(rill_engine *e, uint32_t index, rill_post_fn fn, void *arg)
{
    if (index >= e->n)
        return -EINVAL;
    atomic_fetch_add(&e->posting, 1);
    if (atomic_load(&e->shutting_down) || !e->loops[index].loop) {
        atomic_fetch_sub(&e->posting, 1);
        return -ESHUTDOWN;
    }
    int r = rill__mailbox_push(e->loops[index].mbox, fn, arg);
    if (r == 0)
        engine_wake(e, index);
    atomic_fetch_sub(&e->posting, 1);
    return r;
}

int rill_engine_post(rill_engine *e, uint32_t index, rill_post_fn fn, void *arg)
{
    if (!e || !fn || index >= e->n)
        return -EINVAL;
    return rill__engine_push(e, index, fn, arg);
}

/* Runs fn on loop i and waits for it: directly when no thread runs the loop, else through its
 * mailbox (retrying while it is full; the loop drains it every iteration). */
struct call {
    rill_post_fn fn;
    void *arg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
};

static void call_trampoline(rill_loop *l, void *p)
{
    struct call *c = p;
    c->fn(l, c->arg);
    pthread_mutex_lock(&c->mu);
    c->done = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static int engine_call(rill_engine *e, uint32_t i, rill_post_fn fn, void *arg)
{
    if (!e->running) {
        if (!e->loops[i].loop)
            return -ESHUTDOWN;
        fn(e->loops[i].loop, arg);
        return 0;
    }
    struct call c = {fn, arg, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
    int r;
    /* The internal push ignores shutting_down: a stop's own messages must get through. */
    while ((r = rill__mailbox_push(e->loops[i].mbox, call_trampoline, &c)) == -EAGAIN)
        usleep(100);
    rill_loop_wake(e->loops[i].loop);
    pthread_mutex_lock(&c.mu);
    while (!c.done)
        pthread_cond_wait(&c.cv, &c.mu);
    pthread_mutex_unlock(&c.mu);
    return r;
}

/* ---- listening ------------------------------------------------------------------------------ */

struct listen_call {
    const char *uri;
    struct rill_listen_config cfg;
    rill_listener *ls;
    int status;
};

static void listen_on_loop(rill_loop *l, void *p)
{
    struct listen_call *lc = p;
    lc->status = rill_listen(l, lc->uri, &lc->cfg, &lc->ls);
}

static void close_on_loop(rill_loop *l, void *p)
{
    (void)l;
    rill_listener_close(p);
}

static void set_incoming_cpu(rill_loop *l, void *p)
{
    struct listen_call *lc = p;
    int cpu = rill_engine_loop_cpu(l->engine, (uint32_t)l->index);
    lc->status = rill__sys_setsockopt(&l->stats, lc->ls->fd, SOL_SOCKET, SO_INCOMING_CPU, &cpu,
                                      sizeof cpu);
}

/* A classic BPF program for the reuseport group: the socket index is the current CPU modulo the
 * number of loops. Listeners join the group in loop order, so index i is loop i, which runs on
 * CPU i when loops are pinned in mask order on a mask that starts at CPU 0. */
static int attach_cpu_bpf(rill_engine *e, int fd)
{
    struct sock_filter code[] = {
        {BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_AD_OFF + SKF_AD_CPU)},
        {BPF_ALU | BPF_MOD | BPF_K, 0, 0, e->n},
        {BPF_RET | BPF_A, 0, 0, 0},
    };
    struct sock_fprog prog = {.len = 3, .filter = code};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) < 0 ? -errno
                                                                                        : 0;
}

static rill_steering choose_steering(rill_engine *e, struct listen_call *lcs)
{
    bool pinned = true, identity = true;
    for (uint32_t i = 0; i < e->n; i++) {
        pinned = pinned && e->loops[i].cpu >= 0;
        identity = identity && e->loops[i].cpu == (int)i;
    }
    if (!pinned) {
        rill__log("engine: steering needs pinned loops; connections spread by hash");
        return RILL_STEER_HASH;
    }
    if (identity && attach_cpu_bpf(e, lcs[0].ls->fd) == 0)
        return RILL_STEER_BPF_CPU;
    bool ok = true;
    for (uint32_t i = 0; i < e->n && ok; i++) {
        engine_call(e, i, set_incoming_cpu, &lcs[i]);
        ok = lcs[i].status == 0;
    }
    if (ok)
        return RILL_STEER_INCOMING_CPU;
    rill__log("engine: neither a reuseport BPF program nor SO_INCOMING_CPU works here; "
              "connections spread by hash");
    return RILL_STEER_HASH;
}

int rill_engine_listen(rill_engine *e, const char *uri, const struct rill_listen_config *cfg,
                       uint32_t flags, rill_steering *steering)
{
    if (!e || !uri || !cfg || (flags & ~RILL_ENGINE_LISTEN_F_STEER) || e->joined)
        return -EINVAL;
    struct listen_call *lcs = rill__calloc(e->n, sizeof *lcs);
    if (!lcs)
        return -ENOMEM;
    char bound[300];
    int port = 0, r = 0;
    uint32_t opened = 0;
    bool unix_addr = false;
    for (uint32_t i = 0; i < e->n; i++, opened++) {
        lcs[i].uri = i == 0 ? uri : bound;
        lcs[i].cfg = *cfg;
        lcs[i].cfg.flags |= RILL_LISTEN_F_REUSEPORT;
        engine_call(e, i, listen_on_loop, &lcs[i]);
        if ((r = lcs[i].status) < 0)
            break;
        /* SO_REUSEPORT does not exist for unix sockets: one listener, on loop 0. */
        if (i == 0 && lcs[0].ls->addr.ss_family == AF_UNIX) {
            unix_addr = true;
            break;
        }
        if (i == 0) {
            /* Port 0 asked for any port: every other loop joins the one the first got. */
            port = rill_listener_port(lcs[0].ls);
            const char *colon = strrchr(uri, ':');
            if (port && colon && !strcmp(colon, ":0"))
                snprintf(bound, sizeof bound, "%.*s:%d", (int)(colon - uri), uri, port);
            else
                snprintf(bound, sizeof bound, "%s", uri);
        }
    }
    if (r < 0) {
        for (uint32_t i = 0; i < opened; i++)
            engine_call(e, i, close_on_loop, lcs[i].ls);
        rill__free(lcs);
        return r;
    }
    rill_steering how = RILL_STEER_HASH;
    if ((flags & RILL_ENGINE_LISTEN_F_STEER) && !unix_addr)
        how = choose_steering(e, lcs);
    if (steering)
        *steering = how;
    rill__free(lcs);
    return port;
}

/* ---- stopping ------------------------------------------------------------------------------- */

static void close_all_conns(rill_loop *l, int status)
{
    rill_conn *c;
    for (uint32_t it = 0; (c = rill__conn_next(l, &it));)
        if (c->state & RILL__C_CLOSING)
            continue;
        else if (status == 0)
            rill_close(c);
        else
            rill__conn_fail(c, status);
}

static void drain_deadline(rill_timer *t, void *arg)
{
    (void)t;
    close_all_conns(arg, -ETIMEDOUT);
}

/* On each loop: listeners first, then every connection closes once its queue is empty. */
static void drain_start(rill_loop *l, void *arg)
{
    rill_engine *e = arg;
    rill__listeners_close_all(l);
    /* Datagram sockets have no queue worth draining for a server that stops: they close now
     * (their armed receives are in flight and would otherwise hold the loop open). */
    rill__dgram_close_all(l, 0);
    l->draining = true;
    if (e->drain_ms == 0) {
        close_all_conns(l, 0);
        return;
    }
    rill_conn *c;
    for (uint32_t it = 0; (c = rill__conn_next(l, &it));) {
        if (c->state & RILL__C_CLOSING)
            continue;
        if (!c->wq_head && !(l->ops->conn_busy(c) & RILL__BUSY_SEND)) {
            rill_close(c);
        } else {
            c->state |= RILL__C_CLOSE_AFTER_WQ; /* closes with status 0 once sent */
            rill__list_del(&c->migrate_link);
            c->state &= ~RILL__C_MIGRATING;
        }
    }
    struct engine_loop *el = &e->loops[l->index];
    if (rill_timer_create(l, drain_deadline, l, &el->drain_timer) == 0)
        rill_timer_start(el->drain_timer, e->drain_ms, 0);
}

static void join_all(rill_engine *e)
{
    for (uint32_t i = 0; i < e->n; i++)
        pthread_join(e->loops[i].tid, NULL);
    pthread_cond_destroy(&e->gate_cv);
    pthread_mutex_destroy(&e->gate_mu);
    e->running = false;
    e->joined = true;
}

int rill_engine_stop(rill_engine *e, uint32_t drain_ms)
{
    if (!e)
        return -EINVAL;
    if (!e->running)
        return -EALREADY;
    atomic_store(&e->shutting_down, true);
    /* A post that passed its check before the store is queued ahead of drain_start, and none
     * touches a loop after this. */
    while (atomic_load(&e->posting))
        sched_yield();
    e->drain_ms = drain_ms;
    for (uint32_t i = 0; i < e->n; i++)
        engine_call(e, i, drain_start, e);
    pthread_barrier_wait(&e->exit_barrier); /* loops are destroyed only after this */
    join_all(e);
    pthread_barrier_destroy(&e->exit_barrier);
    return 0;
}

void rill_engine_destroy(rill_engine *e)
{
    if (!e)
        return;
    if (e->running)
        rill_engine_stop(e, 0);
    for (uint32_t i = 0; i < e->n; i++) {
        rill_loop_destroy(e->loops[i].loop); /* never started: this thread owns it */
        rill__mailbox_destroy(e->loops[i].mbox);
    }
    rill__free(e->loops);
    rill__free(e);
}

/* ---- accessors and stats -------------------------------------------------------------------- */

uint32_t rill_engine_loop_count(const rill_engine *e)
{
    return e ? e->n : 0;
}

rill_loop *rill_engine_loop(const rill_engine *e, uint32_t index)
{
    return e && index < e->n ? e->loops[index].loop : NULL;
}

int rill_engine_loop_cpu(const rill_engine *e, uint32_t index)
{
    return e && index < e->n ? e->loops[index].cpu : -1;
}

int rill_loop_index(const rill_loop *l)
{
    return l ? l->index : -1;
}

rill_engine *rill_loop_engine(const rill_loop *l)
{
    return l ? l->engine : NULL;
}

static void snapshot_on_loop(rill_loop *l, void *p)
{
    rill_loop_stats(l, (struct rill_loop_stats *)p + l->index);
}

_Static_assert(sizeof(struct rill_loop_stats) % sizeof(uint64_t) == 0,
               "rill_loop_stats holds only uint64_t counters, summed as an array");

static void stats_add(struct rill_loop_stats *sum, const struct rill_loop_stats *s)
{
    const uint64_t *a = (const uint64_t *)s;
    uint64_t *b = (uint64_t *)sum;
    for (size_t k = 0; k < sizeof *s / sizeof(uint64_t); k++)
        b[k] += a[k];
}

int rill_engine_stats(rill_engine *e, struct rill_loop_stats *per_loop, uint32_t n,
                      struct rill_loop_stats *sum)
{
    if (!e)
        return -EINVAL;
    struct rill_loop_stats *all = rill__calloc(e->n, sizeof *all);
    if (!all)
        return -ENOMEM;
    for (uint32_t i = 0; i < e->n; i++) {
        if (e->joined)
            all[i] = e->loops[i].final;
        else
            engine_call(e, i, snapshot_on_loop, all);
    }
    if (sum) {
        memset(sum, 0, sizeof *sum);
        for (uint32_t i = 0; i < e->n; i++)
            stats_add(sum, &all[i]);
    }
    for (uint32_t i = 0; per_loop && i < n && i < e->n; i++)
        per_loop[i] = all[i];
    rill__free(all);
    return (int)e->n;
}
