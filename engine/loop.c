/* One thread's loop: create, run, stop, the flush point, deferred work, and the small public
 * helpers (version, errors, allocator, buffers).
 *
 * An iteration is: wait in the backend (which dispatches I/O callbacks), advance the timer wheel,
 * then the flush point. The flush point runs the mailbox and deferred callbacks, lets handle
 * kinds starved of buffers try again once buffers came back, runs each kind's work (sends,
 * due on_close callbacks, ...) and finally lets the backend submit what it batched. Doing sends
 * there, not inside rill_send(), is what lets several sends from one callback leave in one
 * system call (or one submission on io_uring).
 *
 * The loop is the ground: it names no handle kind. Kinds (connections, listeners, datagram
 * sockets) register hooks (loop.h, struct rill__kind_ops; engine/kinds.c lists them) and say
 * with a bit in l->pending that they have work; the loop runs them in the enum's order. */
#include "loop.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "mailbox.h"

/* ---- allocator ------------------------------------------------------------------------------ */

static void *(*alloc_malloc)(size_t) = malloc;
static void *(*alloc_realloc)(void *, size_t) = realloc;
static void (*alloc_free)(void *) = free;
static _Atomic int loops_alive;

int rill_set_allocator(void *(*m)(size_t), void *(*r)(void *, size_t), void (*f)(void *))
{
    if (!m || !r || !f)
        return -EINVAL;
    if (atomic_load(&loops_alive) > 0)
        return -EBUSY;
    alloc_malloc = m;
    alloc_realloc = r;
    alloc_free = f;
    return 0;
}

void *rill__malloc(size_t n)
{
    return alloc_malloc(n ? n : 1);
}

void *rill__calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        return NULL;
    void *p = alloc_malloc(total ? total : 1);
    if (p)
        memset(p, 0, total);
    return p;
}

void *rill__realloc(void *p, size_t n)
{
    return alloc_realloc(p, n ? n : 1);
}

void rill__free(void *p)
{
    if (p)
        alloc_free(p);
}

/* The embedder's allocator promises malloc's alignment (16), not a cache line; the loop's stats
 * sit on their own line, so over-allocate and keep the original pointer just below the block. */
void *rill__alloc_aligned(size_t size)
{
    char *raw = rill__calloc(1, size + 64 + sizeof(void *));
    if (!raw)
        return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void rill__free_aligned(void *p)
{
    if (p)
        rill__free(((void **)p)[-1]);
}

/* ---- version, errors, log ------------------------------------------------------------------- */

const char *rill_version(void)
{
    return RILL_VERSION_STRING;
}

const char *rill_strerror(int status)
{
    if (status >= 0)
        return "success";
    if (status == INT32_MIN)
        return "unknown error";
    /* strerror() may use a shared buffer for unknown values; strerrordesc_np() returns constant
     * strings and NULL for unknown ones (glibc 2.32+). */
    switch (status) {
    case RILL_ENONAME:
        return "name not found";
    case RILL_EDNSTIMEOUT:
        return "resolver timed out";
    case RILL_EDNSFAIL:
        return "resolver failed";
    default:
        break;
    }
    const char *s = strerrordesc_np(-status);
    return s ? s : "unknown error";
}

void rill__log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n] = '\n';
    /* One write(2) per line so that lines from several loops do not interleave. */
    fprintf(stderr, "rill: %.*s", n + 1, line);
}

/* ---- configuration -------------------------------------------------------------------------- */

void rill_loop_config_init(struct rill_loop_config *cfg)
{
    if (!cfg)
        return;
    memset(cfg, 0, sizeof *cfg);
    cfg->backend = RILL_BACKEND_AUTO;
    cfg->slab_budget = 64u << 20;
    cfg->recv_buf_size = 16u << 10;
    cfg->max_conns = 65536;
    cfg->max_events = 256;
    cfg->ring_entries = 1024;
}

int rill__loop_config_resolve(const struct rill_loop_config *in, struct rill_loop_config *out)
{
    struct rill_loop_config d;
    rill_loop_config_init(&d);
    if (in) {
        if (in->backend < RILL_BACKEND_AUTO || in->backend > RILL_BACKEND_URING)
            return -EINVAL;
        d.backend = in->backend;
        if (in->slab_budget)
            d.slab_budget = in->slab_budget;
        if (in->recv_buf_size)
            d.recv_buf_size = in->recv_buf_size;
        if (in->max_conns)
            d.max_conns = in->max_conns;
        if (in->max_events)
            d.max_events = in->max_events;
        if (in->ring_entries)
            d.ring_entries = in->ring_entries;
        d.disable = in->disable;
        d.mem_ceiling = in->mem_ceiling;
        d.mem_grace_ms = in->mem_grace_ms;
        d.slab_idle_ms = in->slab_idle_ms;
        d.dns_servers = in->dns_servers;
        d.dns_timeout_ms = in->dns_timeout_ms;
    }
    if (!d.dns_timeout_ms)
        d.dns_timeout_ms = 5000;
    if (!d.slab_idle_ms)
        d.slab_idle_ms = 5000;
    if (!d.mem_ceiling)
        d.mem_ceiling = d.slab_budget / 2;
    if (!d.mem_grace_ms)
        d.mem_grace_ms = 1000;
    if (d.disable & ~RILL_CAP_DISABLEABLE)
        return -EINVAL;
    if (d.recv_buf_size < 512 || d.recv_buf_size > RILL__SLAB_MAX || d.slab_budget < d.recv_buf_size)
        return -EINVAL;
    if (d.max_conns > (1u << 24) || d.max_events > 65536 || d.ring_entries > 32768)
        return -EINVAL;
    *out = d;
    return 0;
}

/* ---- life cycle ----------------------------------------------------------------------------- */

void rill__loop_update_time(rill_loop *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    l->now_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    l->now_ms = l->now_us / 1000u;
}

/* The slab's idle regions go back to the kernel: checked every slab_idle_ms / 2, a region found
 * wholly free by three checks in a row (so for at least slab_idle_ms) is unmapped. The timer
 * runs while wholly free regions remain and stops when none does; a later release arms it
 * again from the flush point (slab_trim_watch), so a loop with nothing to give back never
 * wakes for it. */
#define TRIM_CHECKS 3u

static uint64_t trim_period(const rill_loop *l)
{
    return l->cfg.slab_idle_ms / 2 ? l->cfg.slab_idle_ms / 2 : 1;
}

static void slab_trim_fn(struct rill__tnode *t)
{
    rill_loop *l = rill__container_of(t, rill_loop, trim);
    bool more;
    rill__slab_trim(&l->slab, TRIM_CHECKS, &more);
    l->trim_mark = l->slab.releases;
    if (more)
        rill__wheel_add_ms(&l->wheel, &l->trim, l->now_ms + trim_period(l));
}

static inline void slab_trim_watch(rill_loop *l)
{
    if (l->slab.releases != l->trim_mark && !rill__tnode_active(&l->trim) &&
        l->cfg.slab_idle_ms != UINT32_MAX) {
        l->trim_mark = l->slab.releases;
        rill__wheel_add_ms(&l->wheel, &l->trim, l->now_ms + trim_period(l));
    }
}

int rill__loop_init_common(rill_loop *l, const struct rill_loop_config *cfg)
{
    l->cfg = *cfg;
    int r = rill__slab_init(&l->slab, cfg->slab_budget);
    if (r < 0)
        return r;
    rill__slab_set_ceiling(&l->slab, cfg->mem_ceiling);
    l->trim.fn = slab_trim_fn;
    rill__loop_update_time(l);
    rill__wheel_init(&l->wheel, l->now_us);
    rill__list_init(&l->timers);
    for (unsigned k = 0; k < RILL__KINDS; k++) {
        if (rill__kinds[k]->init && (r = rill__kinds[k]->init(l)) < 0) {
            while (k-- > 0)
                if (rill__kinds[k]->fini)
                    rill__kinds[k]->fini(l);
            rill__slab_fini(&l->slab);
            return r;
        }
    }
    l->index = -1;
    l->stats.buf_budget = cfg->slab_budget;
    atomic_fetch_add(&loops_alive, 1);
    return 0;
}

void rill__loop_fini_common(rill_loop *l)
{
    for (unsigned k = RILL__KINDS; k-- > 0;)
        if (rill__kinds[k]->fini)
            rill__kinds[k]->fini(l);
    rill__watch_fini(l);
    rill__free(l->defer);
    rill__slab_fini(&l->slab);
    atomic_fetch_sub(&loops_alive, 1);
}

/* ---- capabilities by name -------------------------------------------------------------------- */

/* Indexed by bit number: the words rill-echo, rill-load and RILL_URING_DISABLE use. */
static const char *const cap_names[] = {
    "multishot_accept", "multishot_recv", "buf_ring",          "send_zc",
    "msg_zerocopy",     "defer_taskrun",  "edge_triggered",    "multishot_recvmsg",
    "udp_gso",          "udp_gro",        "recv_bundle",       "msg_ring",
    "buf_ring_inc",
};

const char *rill_cap_name(uint32_t cap)
{
    if (cap == 0 || (cap & (cap - 1)))
        return NULL;
    unsigned bit = (unsigned)__builtin_ctz(cap);
    return bit < sizeof cap_names / sizeof cap_names[0] ? cap_names[bit] : NULL;
}

size_t rill_caps_format(uint32_t caps, char *buf, size_t len)
{
    size_t n = 0;
    if (!buf)
        len = 0; /* only the length is wanted */
    if (len)
        buf[0] = '\0';
    for (unsigned bit = 0; bit < 32; bit++) {
        uint32_t b = 1u << bit;
        if (!(caps & b))
            continue;
        const char *name = rill_cap_name(b);
        char hex[16];
        if (!name) {
            snprintf(hex, sizeof hex, "0x%x", b);
            name = hex;
        }
        int w = snprintf(buf ? buf + (n < len ? n : len) : NULL, n < len ? len - n : 0, "%s%s",
                         n ? "," : "", name);
        n += w > 0 ? (size_t)w : 0;
    }
    return n;
}

/* RILL_URING_DISABLE=name[,name...]: io_uring features to switch off, in rill_cap_name's words,
 * for ablation or to step around a kernel bug without a rebuild. */
static int env_disable(uint32_t *out)
{
    const char *env = getenv("RILL_URING_DISABLE");
    *out = 0;
    if (!env)
        return 0;
    char word[32];
    for (const char *p = env; *p;) {
        size_t n = strcspn(p, ", ");
        uint32_t cap = 0;
        if (n > 0 && n < sizeof word) {
            memcpy(word, p, n);
            word[n] = '\0';
            for (unsigned bit = 0; bit < 32 && !cap; bit++)
                if (rill_cap_name(1u << bit) && !strcmp(rill_cap_name(1u << bit), word))
                    cap = 1u << bit;
        }
        if (n > 0 && !(cap & RILL_CAP_DISABLEABLE)) {
            rill__log("RILL_URING_DISABLE: \"%.*s\" is not one of recv_bundle, defer_taskrun, "
                      "msg_ring, buf_ring_inc", (int)n, p);
            return -EINVAL;
        }
        *out |= cap;
        p += n;
        p += strspn(p, ", ");
    }
    return 0;
}

/* Which backend to try: the environment wins over the config, so that any program can be run on
 * either backend without a rebuild. */
static int choose_backend(rill_backend cfg_choice, rill_backend *out)
{
    const char *env = getenv("RILL_BACKEND");
    if (env && *env) {
        if (!strcmp(env, "epoll"))
            *out = RILL_BACKEND_EPOLL;
        else if (!strcmp(env, "uring") || !strcmp(env, "io_uring"))
            *out = RILL_BACKEND_URING;
        else if (!strcmp(env, "auto"))
            *out = RILL_BACKEND_AUTO;
        else {
            rill__log("RILL_BACKEND=%s is not one of uring, epoll, auto", env);
            return -EINVAL;
        }
        return 0;
    }
    *out = cfg_choice;
    return 0;
}

/* Set by the first automatic loop that fell back to epoll (and logged why). */
static atomic_flag fallback_said = ATOMIC_FLAG_INIT;

int rill_loop_create(const struct rill_loop_config *cfg, rill_loop **out)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    struct rill_loop_config c;
    int r = rill__loop_config_resolve(cfg, &c);
    if (r < 0)
        return r;
    for (unsigned k = 0; k < RILL__KINDS; k++)
        if (rill__kinds[k]->check && (r = rill__kinds[k]->check(&c)) < 0)
            return r;
    rill_backend which;
    if ((r = choose_backend(c.backend, &which)) < 0)
        return r;
    uint32_t env_off;
    if ((r = env_disable(&env_off)) < 0)
        return r;
    c.disable |= env_off;
    const char *why = NULL;
    if (which != RILL_BACKEND_EPOLL) {
        r = rill__backend_uring.create(&c, out, &why);
        if (r == 0) {
            (*out)->cfg.backend = RILL_BACKEND_URING;
            return 0;
        }
        if (which == RILL_BACKEND_URING) { /* forced: an error with the reason, no fallback */
            rill__log("io_uring unavailable: %s", why ? why : rill_strerror(r));
            return r;
        }
        /* Said once per process: rill_engine starts one loop per CPU, each would say the same
         * (one kernel, one seccomp filter, one set of limits). A test-and-set, since those
         * loops are created on their own threads. */
        if (!atomic_flag_test_and_set_explicit(&fallback_said, memory_order_relaxed))
            rill__log("io_uring unavailable: %s; using epoll", why ? why : rill_strerror(r));
        why = NULL;
    }
    r = rill__backend_epoll.create(&c, out, &why);
    if (r < 0) {
        rill__log("epoll backend failed: %s (%s)", why ? why : "setup", rill_strerror(r));
        return r;
    }
    (*out)->cfg.backend = RILL_BACKEND_EPOLL;
    return 0;
}

static void run_kinds(rill_loop *l);

void rill_loop_destroy(rill_loop *l)
{
    if (!l || l->in_dispatch)
        return;
    /* Every kind closes its handles, in the enum's order: listeners stop accepting first. */
    for (unsigned k = 0; k < RILL__KINDS; k++)
        if (rill__kinds[k]->teardown)
            rill__kinds[k]->teardown(l, -ECANCELED);
    /* A completion backend gets its cancellations back before memory goes: the kernel may
     * still read a send's bytes or write into a receive buffer until then. Bounded, in case a
     * kernel never answers. */
    uint64_t end = l->now_ms + 2000;
    while (l->inflight > 0 && l->now_ms < end) {
        l->in_dispatch = true;
        int r = l->ops->flush(l);
        if (r >= 0)
            r = l->ops->poll(l, 10000);
        run_kinds(l); /* on_close callbacks and frees that the completions made due */
        l->in_dispatch = false;
        rill__loop_update_time(l);
        if (r < 0)
            break; /* e.g. not the loop's thread: the ring's teardown cancels the rest */
    }
    rill__timers_free_all(l);
    l->ops->destroy(l);
}

/* ---- deferred callbacks --------------------------------------------------------------------- */

int rill_loop_defer(rill_loop *l, rill_defer_cb fn, void *arg)
{
    if (!l || !fn)
        return -EINVAL;
    if (l->defer_len == l->defer_cap) {
        uint32_t cap = l->defer_cap ? l->defer_cap * 2 : 64;
        struct rill__defer *d = rill__malloc(cap * sizeof *d);
        if (!d)
            return -ENOMEM;
        for (uint32_t i = 0; i < l->defer_len; i++)
            d[i] = l->defer[(l->defer_head + i) % l->defer_cap];
        rill__free(l->defer);
        l->defer = d;
        l->defer_cap = cap;
        l->defer_head = 0;
    }
    l->defer[(l->defer_head + l->defer_len) % l->defer_cap] = (struct rill__defer){fn, arg};
    l->defer_len++;
    return 0;
}

/* Runs the callbacks deferred before this call; ones they defer wait for the next iteration, so
 * a callback that re-defers itself cannot starve I/O. */
static unsigned run_deferred(rill_loop *l)
{
    uint32_t n = l->defer_len;
    for (uint32_t i = 0; i < n; i++) {
        struct rill__defer d = l->defer[l->defer_head];
        l->defer_head = (l->defer_head + 1) % l->defer_cap;
        l->defer_len--;
        d.fn(l, d.arg);
    }
    return n;
}

/* ---- running -------------------------------------------------------------------------------- */

/* Work for the flush point makes the wait not block. (Work a backend carries over itself, such
 * as a spent read budget, is the backend's to know: its poll does not block either.) */
static bool has_pending_work(const rill_loop *l)
{
    return l->defer_len || (l->mbox && rill__mailbox_pending(l->mbox)) || l->pending ||
           (l->starving && l->slab.releases != l->starve_mark) ||
           atomic_load_explicit(&l->stop_requested, memory_order_relaxed);
}

/* The wait in microseconds (-1: no limit): the caller's timeout, shortened to the wheel's next
 * deadline. */
static int64_t poll_timeout(const rill_loop *l, int64_t timeout_us)
{
    if (timeout_us == 0 || has_pending_work(l))
        return 0;
    int64_t next = rill__wheel_next(&l->wheel);
    if (next < 0)
        return timeout_us;
    /* The wheel measures from its last advance; time spent outside the loop since then is
     * already gone from the wait. */
    next -= (int64_t)(l->now_us - l->wheel.now);
    if (next < 0)
        next = 0;
    if (timeout_us < 0 || next < timeout_us)
        return next;
    return timeout_us;
}

/* Each kind's work, in the enum's order: first the retries of kinds starved of buffers, once the
 * slab has had some back since they starved, then the flush work of every kind with its bit in
 * l->pending. A kind clears its own bit when nothing is left. */
static void run_kinds(rill_loop *l)
{
    if (l->starving && l->slab.releases != l->starve_mark) {
        uint32_t starving = l->starving;
        l->starve_mark = l->slab.releases;
        for (unsigned k = 0; k < RILL__KINDS; k++)
            if ((starving & RILL__KIND_BIT(k)) && rill__kinds[k]->retry_starved)
                rill__kinds[k]->retry_starved(l);
    }
    for (unsigned k = 0; k < RILL__KINDS; k++)
        if (l->pending & RILL__KIND_BIT(k))
            rill__kinds[k]->flush(l);
}

/* The flush point: see the comment at the top of this file. */
static int flush_point(rill_loop *l)
{
    unsigned n = 0;
    /* Messages from other loops and threads first, at most one mailbox's worth per iteration,
     * so a flood of posts cannot starve this loop's own I/O. */
    if (l->mbox)
        n += rill__mailbox_drain(l->mbox, l, (unsigned)l->mbox->mask + 1);
    n += run_deferred(l);
    run_kinds(l);
    slab_trim_watch(l);
    int r = l->ops->flush(l);
    /* A graceful stop ends when the last connection has gone, in-flight work included. */
    if (l->draining && l->live_conns == 0 && l->inflight == 0)
        atomic_store(&l->stop_requested, true);
    return r < 0 ? r : (int)n;
}

_Thread_local rill_loop *rill__tls_loop;

int rill_loop_run_once(rill_loop *l, int timeout_ms)
{
    return rill_loop_run_once_us(l, timeout_ms < 0 ? -1 : (int64_t)timeout_ms * 1000);
}

int rill_loop_run_once_us(rill_loop *l, int64_t timeout_us)
{
    if (!l)
        return -EINVAL;
    if (l->in_dispatch)
        return -EBUSY;
    l->in_dispatch = true;
    rill_loop *outer = rill__tls_loop;
    rill__tls_loop = l;
    rill__loop_update_time(l);
    int n = l->ops->poll(l, poll_timeout(l, timeout_us < 0 ? -1 : timeout_us));
    if (n >= 0) {
        rill__loop_update_time(l);
        n += (int)rill__wheel_advance(&l->wheel, l->now_us);
        int f = flush_point(l);
        n = f < 0 ? f : n + f;
    }
    l->stats.iterations++;
    l->in_dispatch = false;
    rill__tls_loop = outer;
    return n;
}

int rill_loop_run(rill_loop *l)
{
    if (!l)
        return -EINVAL;
    if (l->in_dispatch)
        return -EBUSY;
    for (;;) {
        if (atomic_exchange(&l->stop_requested, false))
            return 0;
        int r = rill_loop_run_once(l, -1);
        if (r < 0)
            return r;
    }
}

void rill_loop_stop(rill_loop *l)
{
    if (!l)
        return;
    atomic_store(&l->stop_requested, true);
    rill_loop_wake(l);
}

void rill_loop_wake(rill_loop *l)
{
    if (!l)
        return;
    /* Only the first wake-up since the loop last drained its wake descriptor writes; the rest
     * are free. The backend clears the flag before draining, so no wake-up is lost. */
    if (!atomic_exchange(&l->wake_pending, true))
        l->ops->wake(l);
}

uint64_t rill_loop_now(const rill_loop *l)
{
    return l ? l->now_ms : 0;
}

uint64_t rill_loop_now_us(const rill_loop *l)
{
    return l ? l->now_us : 0;
}

const char *rill_loop_backend_name(const rill_loop *l)
{
    return l ? l->ops->name : "none";
}

uint32_t rill_loop_caps(const rill_loop *l)
{
    if (!l)
        return 0;
    uint32_t caps = l->ops->caps(l);
    for (unsigned k = 0; k < RILL__KINDS; k++)
        if (rill__kinds[k]->caps)
            caps |= rill__kinds[k]->caps();
    return caps;
}

/* ---- buffers -------------------------------------------------------------------------------- */

int rill_buf_lease(rill_loop *l, size_t size, rill_buf **out)
{
    if (!l || !out || size == 0 || size > RILL__SLAB_MAX)
        return -EINVAL;
    return rill__slab_lease(&l->slab, size, out);
}

rill_buf *rill_buf_ref(rill_buf *buf)
{
    if (buf)
        rill__buf_get(buf);
    return buf;
}

void rill_buf_release(rill_buf *buf)
{
    if (buf)
        rill__buf_put(buf);
}

void *rill_buf_data(const rill_buf *buf)
{
    return buf ? buf->data : NULL;
}

size_t rill_buf_capacity(const rill_buf *buf)
{
    return buf ? rill__buf_cap(buf) : 0;
}
