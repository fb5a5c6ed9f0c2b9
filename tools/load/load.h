/* rill-load: shared declarations of the load generator's parts.
 *
 *   load.c     main: options in, threads started, the clock kept, the report out
 *   opts.c     command line
 *   hist.c     log-linear latency histogram
 *   worker.c   one thread, one rill loop: the time line (warm-up, window, deadline)
 *   echo.c     the workload: closed-loop request/response over TCP echo, byte-exact checks
 *   report.c   live lines, final report, CPU and system-call accounting
 *
 * The workload is the only part that knows what a request is; the worker only knows time and
 * connections. An HTTP workload or an open-loop schedule plugs in at that seam. */
#ifndef RILL_LOAD_H
#define RILL_LOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <time.h>

#include "rill.h"

#define LOAD_MAX_THREADS 256
#define LOAD_MAX_CPUS 1024

/* ---- options -------------------------------------------------------------------------------- */

struct load_opts {
    const char *target;   /* the address as given */
    const char *uri;      /* the same with the host resolved to a numeric address */
    uint32_t conns;       /* -c */
    uint32_t threads;     /* -t */
    uint32_t duration_s;  /* -d: the measured window */
    uint32_t warmup_s;    /* --warmup: runs before the window, excluded from its figures */
    size_t size;          /* -s: bytes per request (and per reply) */
    uint32_t depth;       /* --depth: requests in flight per connection */
    rill_backend backend; /* -b */
    int cpus[LOAD_MAX_CPUS];
    int ncpus;            /* --pin: thread i runs on cpus[i % ncpus]; 0: not pinned */
    long server_pid;      /* --server-pid; 0: none */
};

/* Returns 0 and fills *o; prints the reason and returns 2 (exit code) on a bad command line;
 * returns -1 after --help was printed. */
int opts_parse(int argc, char **argv, struct load_opts *o);
/* Resolves the target's host name once, so that connects never block in getaddrinfo (rill
 * resolves names on every rill_connect). Returns 0, or prints why and returns 1. */
int opts_resolve(struct load_opts *o);

/* ---- histogram ------------------------------------------------------------------------------- */

/* Values are nanoseconds. Below 2^HIST_SUB_BITS they are exact; above, each power of two is split
 * into 2^HIST_SUB_BITS linear sub-buckets, so a bucket is at most 1/128 of its value wide: under
 * 0.8 % relative error. Values from 2^HIST_MAX_BITS ns (73 minutes) on share the top bucket; max
 * stays exact. */
#define HIST_SUB_BITS 7
#define HIST_MAX_BITS 42
#define HIST_BUCKETS ((HIST_MAX_BITS - HIST_SUB_BITS + 1) << HIST_SUB_BITS) /* 4608 */

struct hist {
    uint64_t count;
    uint64_t min, max; /* exact; min is UINT64_MAX while empty */
    long double sum;   /* for the mean; long double keeps ns sums over hours exact enough */
    uint64_t b[HIST_BUCKETS];
};

void hist_init(struct hist *h);
void hist_record(struct hist *h, uint64_t ns);
void hist_merge(struct hist *into, const struct hist *from);
/* The value at quantile q (0..1): the top of the bucket holding it, clamped to [min, max]. */
uint64_t hist_quantile(const struct hist *h, double q);

/* ---- errors ---------------------------------------------------------------------------------- */

enum err_kind {
    ERR_CONNECT, /* the connection never opened (refused, timeout, ...) */
    ERR_CLOSE,   /* an open connection failed (reset, ...) */
    ERR_SEND,    /* rill_send refused a request */
    ERR_KINDS,   /* the kinds above are counted per errno */
    ERR_EOF = ERR_KINDS, /* the peer closed an open connection cleanly */
    ERR_MISMATCH,        /* a reply's bytes differed from the request's */
};
#define ERR_ERRNO_MAX 160 /* Linux errno values stay below this; others count as "other" */

struct errors {
    uint64_t by_errno[ERR_KINDS][ERR_ERRNO_MAX + 1]; /* [kind][-status], last slot: other */
    uint64_t eof;      /* the peer closed an open connection cleanly */
    uint64_t mismatch; /* replies whose bytes differed from the request's */
};

void errors_add(struct errors *e, enum err_kind kind, int status);
void errors_merge(struct errors *into, const struct errors *from);
uint64_t errors_total(const struct errors *e);

/* ---- workers --------------------------------------------------------------------------------- */

/* What a worker hands the main thread once per second, under mu. */
struct live {
    pthread_mutex_t mu;
    struct hist h;     /* latencies completed since the main thread last took them */
    uint64_t requests;
    uint64_t errors;
    uint32_t open;     /* connections open at the tick */
    _Atomic uint32_t second; /* the last tick published */
};

struct lconn;

struct worker {
    int index;
    int cpu; /* -1: not pinned */
    pthread_t tid;
    rill_loop *loop;
    const char *backend; /* the loop's backend name: a constant string that outlives the loop */
    uint32_t caps;       /* its RILL_CAP_* bits */
    const struct load_opts *o;
    uint64_t t_begin;   /* CLOCK_MONOTONIC ns of tick 0, shared by all workers */

    struct lconn *conns;
    uint32_t nconns;
    uint32_t first_conn; /* global index of conns[0] */
    uint32_t open;       /* connections open now */
    bool measuring;      /* inside the window: completions go into the figures */
    bool stopping;       /* past the deadline: closes are ours, not errors */
    int fatal;           /* a negative errno if the loop itself failed */

    /* Owned by the worker thread; the main thread reads them only after join. */
    struct hist total;
    struct hist second;  /* this second's latencies, handed over at each tick */
    uint64_t requests;   /* completed in the window */
    uint64_t bytes;      /* reply bytes verified in the window */
    uint64_t sec_requests, sec_errors;
    uint64_t warm_errors; /* errors before the window */
    uint64_t inflight_end; /* requests unanswered at the deadline */
    uint64_t oldest_end;   /* ns the oldest of them had waited */
    uint64_t mismatch_any; /* byte mismatches over the whole run, warm-up included */
    struct errors errs;  /* errors in the window */
    struct rill_loop_stats s0, s1; /* loop counters at window start and end */
    uint64_t w0, w1;     /* monotonic ns at window start and end */

    struct live live;
};

/* Creates the worker's loop (on the calling thread). Returns 0 or a negative errno. */
int worker_init(struct worker *w, const struct load_opts *o, int index, uint32_t first,
                uint32_t n);
/* Frees everything worker_init and the thread made. */
void worker_fini(struct worker *w);
/* The thread: connects, runs until t_begin + warmup + duration, closes. */
void *worker_main(void *arg);
/* Counts an error: in the window table, or as a warm-up error before it. */
void worker_error(struct worker *w, enum err_kind kind, int status);

/* ---- the echo workload ----------------------------------------------------------------------- */

/* Builds the shared, read-only request pattern. Returns 0 or -ENOMEM. */
int echo_global_init(const struct load_opts *o);
void echo_global_fini(void);
/* Allocates per-connection state for w->nconns connections and starts connecting them. */
int echo_start(struct worker *w);
/* Counts requests still unanswered (at the deadline) and how long the oldest has waited: a
 * closed loop records no latency for a request that never completes, so this is where a stall
 * at the end of the window shows. */
uint64_t echo_inflight(const struct worker *w, uint64_t now, uint64_t *oldest_ns);
/* Frees per-connection state; the loop must already be destroyed. */
void echo_fini(struct worker *w);

/* ---- time, CPU, reports ---------------------------------------------------------------------- */

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU seen at one instant: ours (RUSAGE_SELF) and, with --server-pid, the server's. */
struct cpu_mark {
    uint64_t self_user_us, self_sys_us;
    uint64_t server_us;
    int server_err; /* 0, or why the server's figure is missing */
};

void cpu_mark_take(struct cpu_mark *m, long server_pid);

/* One live line for second k, from what every worker published. */
void report_second(struct worker *ws, uint32_t n, uint32_t k, const struct load_opts *o);
/* The final report. Returns the exit code: 0, or 1 without requests or with a byte mismatch. */
int report_final(struct worker *ws, uint32_t n, const struct load_opts *o,
                 const struct cpu_mark *c0, const struct cpu_mark *c1);

#endif /* RILL_LOAD_H */
