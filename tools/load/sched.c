/* The open-loop schedule: every connection carries its share of the total rate (-R / -c) as its
 * own sequence of due times, and the worker keeps its connections in a min-heap by the next one.
 *
 * A connection's schedule is a position u counted in requests: request k is due when the
 * schedule's cumulative count N(t) reaches u_k. Evenly spaced requests step u by 1, Poisson ones
 * by an exponential variate of mean 1; the mapping from u back to time does the rest. Without a
 * ramp N(t) = r t, so t = u / r. With a linear ramp over T seconds the rate is r t / T until T,
 * so N(t) = r t^2 / (2T) and t = sqrt(2 u T / r); after T, t = T + (u - r T / 2) / r. Mapping a
 * unit-rate Poisson process through N^-1 is exactly the inhomogeneous Poisson process of that
 * rate, so the ramp costs nothing in correctness.
 *
 * Connections start at staggered positions (connection i at i / C of an interval) so that the
 * total is evenly spaced as well, not C requests at once. Due times are absolute (from the
 * shared t_begin), computed from u, never by adding gaps to a clock: a late loop does not shift
 * the schedule, it only makes sends late, which is what the latency figures must show.
 *
 * The worker sleeps until the next request is due: one microsecond timer (rill_timer_start_us)
 * fires at the heap's earliest due time, sends what is due, and sets itself for the next. The
 * sends leave at that iteration's flush point, so a request costs one wake-up and one
 * submission, and no CPU is spent polling for it (Linux wakes a sleeping thread some tens of
 * microseconds late, which the corrected latency shows; the timer slack is 1 ns, see
 * worker.c). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "load.h"

#define FIRE_BUDGET 4096u /* requests fired per call, so I/O is not starved when far behind */

uint64_t sched_rand(uint64_t *rng)
{
    /* xorshift64*: small, fast, good enough for sizes and gaps. */
    uint64_t x = *rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

double sched_gap(enum load_dist d, uint64_t *rng)
{
    if (d == DIST_EVEN)
        return 1.0;
    /* Uniform in (0, 1]: never log(0). */
    double uni = ((double)(sched_rand(rng) >> 11) + 1.0) / 9007199254740992.0;
    return -log(uni);
}

double sched_time_at(double u, double r, double ramp_s)
{
    if (r <= 0)
        return INFINITY;
    if (ramp_s <= 0)
        return u / r;
    double ramp_reqs = r * ramp_s / 2; /* requests due during the ramp */
    if (u < ramp_reqs)
        return sqrt(2 * u * ramp_s / r);
    return ramp_s + (u - ramp_reqs) / r;
}

static uint64_t due_of(const struct worker *w, double u)
{
    double t = sched_time_at(u, w->rate_conn, (double)w->o->ramp_s);
    if (!(t < 1e7)) /* past any run's end (or not finite): never */
        return UINT64_MAX;
    return w->t_begin + (uint64_t)(t * 1e9);
}

static bool earlier(const struct lconn *a, const struct lconn *b)
{
    return a->next_due < b->next_due;
}

static void heap_set(struct worker *w, uint32_t i, struct lconn *lc)
{
    w->heap[i] = lc;
    lc->heap_idx = i;
}

static void sift_down(struct worker *w, uint32_t i)
{
    struct lconn *lc = w->heap[i];
    for (;;) {
        uint32_t l = 2 * i + 1, m = l + 1, best = l;
        if (l >= w->nheap)
            break;
        if (m < w->nheap && earlier(w->heap[m], w->heap[l]))
            best = m;
        if (!earlier(w->heap[best], lc))
            break;
        heap_set(w, i, w->heap[best]);
        i = best;
    }
    heap_set(w, i, lc);
}

/* Sets the send timer for due_ns (CLOCK_MONOTONIC), rounded up to the microsecond so that it
 * never fires before the request is due; UINT64_MAX stops it. */
static void sched_arm(struct worker *w, uint64_t due_ns)
{
    if (due_ns == UINT64_MAX) {
        rill_timer_stop(w->send_timer);
        return;
    }
    uint64_t due_us = due_ns / 1000u + (due_ns % 1000u != 0);
    uint64_t now_us = rill_loop_now_us(w->loop);
    rill_timer_start_us(w->send_timer, due_us > now_us ? due_us - now_us : 0, 0);
}

static void on_send_due(rill_timer *t, void *ctx)
{
    (void)t;
    struct worker *w = ctx;
    sched_arm(w, sched_run(w, mono_ns()));
}

int sched_init(struct worker *w)
{
    const struct load_opts *o = w->o;
    if (o->rate <= 0)
        return 0;
    int r = rill_timer_create(w->loop, on_send_due, w, &w->send_timer);
    if (r < 0)
        return r;
    w->rate_conn = o->rate / o->conns;
    w->heap = calloc(w->nconns ? w->nconns : 1, sizeof *w->heap);
    if (!w->heap)
        return -ENOMEM;
    for (uint32_t i = 0; i < w->nconns; i++) {
        struct lconn *lc = &w->conns[i];
        lc->u = o->dist == DIST_EVEN ? (double)lc->id / o->conns : sched_gap(o->dist, &lc->rng);
        lc->next_due = due_of(w, lc->u);
        heap_set(w, w->nheap++, lc);
    }
    for (uint32_t i = w->nheap / 2; i-- > 0;)
        sift_down(w, i);
    /* The first firing runs in the loop's first iteration, where the clock is fresh, and sets
     * the timer precisely from there. */
    return rill_timer_start_us(w->send_timer, 0, 0);
}

void sched_fini(struct worker *w)
{
    w->send_timer = NULL; /* it went with the loop */
    free(w->heap);
    w->heap = NULL;
    w->nheap = 0;
}

uint64_t sched_run(struct worker *w, uint64_t now)
{
    if (!w->nheap)
        return UINT64_MAX;
    for (uint32_t n = 0; n < FIRE_BUDGET && w->heap[0]->next_due <= now; n++) {
        struct lconn *lc = w->heap[0];
        uint64_t due = lc->next_due;
        lc->u += sched_gap(w->o->dist, &lc->rng);
        lc->next_due = due_of(w, lc->u);
        sift_down(w, 0);
        conn_due(lc, due, now);
    }
    return w->heap[0]->next_due;
}
