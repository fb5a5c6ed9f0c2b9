/* rill-load: shared declarations of the load generator's parts.
 *
 *   load.c     main: options in, threads started, the clock kept, the report out
 *   opts.c     command line (help.c: the --help text)
 *   hist.c     log-linear latency histogram
 *   sched.c    the open-loop schedule: when each connection's next request is due
 *   worker.c   one thread, one rill loop: the time line (warm-up, window, deadline)
 *   conn.c     a connection's life: connect, send when allowed or due, complete, close, reopen
 *   echo.c     the echo protocol: requests from a pattern, replies checked byte for byte
 *   http.c     the HTTP/1.1 protocol: GET requests, an incremental response parser
 *   report.c   live lines, final report, CPU and system-call accounting
 *   json.c     --json output and its reader (for merge), through jansson
 *   merge.c    `rill-load merge a.json b.json ...`
 *
 * The protocol is the only part that knows what a request is; conn.c knows when to send and how
 * a connection lives; the worker only knows time. */
#ifndef RILL_LOAD_H
#define RILL_LOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#include "rill.h"
#include "hist.h"

#define LOAD_MAX_THREADS 256
#define LOAD_MAX_CPUS 1024
#define LOAD_LATE_NS 1000000u /* a request taken up more than 1 ms after it was due is late */

/* ---- options -------------------------------------------------------------------------------- */

enum load_proto { PROTO_ECHO, PROTO_HTTP, PROTO_UDP };
enum load_dist { DIST_EVEN, DIST_POISSON };

struct load_opts {
    const char *target;   /* the address as given */
    const char *uri;      /* what rill_connect gets: tcp:// with a numeric host, or unix:... */
    enum load_proto proto;
    char host[256];       /* HTTP Host header */
    const char *path;     /* HTTP request target; "/" by default */
    uint32_t conns;       /* -c */
    uint32_t threads;     /* -t */
    uint32_t duration_s;  /* -d: the measured window (with -n: its upper bound) */
    uint32_t warmup_s;    /* --warmup: runs before the window, excluded from its figures */
    uint64_t count;       /* -n: requests in the window; 0: run for -d */
    size_t size_min, size_max; /* -s: bytes per request (and per reply): fixed or uniform range */
    uint32_t depth;       /* --depth: requests in flight per connection (closed loop: always) */
    double rate;          /* -R: requests/s in total; 0: closed loop */
    enum load_dist dist;  /* --dist */
    uint32_t ramp_s;      /* --ramp: the rate rises linearly from 0 over this long */
    uint32_t churn;       /* --churn N: close and reopen each connection after N requests */
    uint32_t timeout_ms;  /* --timeout: a connection silent this long with requests out fails */
    rill_backend backend; /* -b */
    int cpus[LOAD_MAX_CPUS];
    int ncpus;            /* --pin: thread i runs on cpus[i % ncpus]; 0: not pinned */
    long server_pid;      /* --server-pid; 0: none */
    const char *json;     /* --json FILE or "-"; NULL: none */
    bool quiet;           /* --quiet: no live lines */
    bool seqpacket;       /* unix+seqpacket: every reply must be one message */
    int argc;             /* the command line, for the JSON record */
    char **argv;
};

/* Returns 0 and fills *o; prints the reason and returns 2 (exit code) on a bad command line;
 * returns -1 after --help was printed. */
int opts_parse(int argc, char **argv, struct load_opts *o);
/* Resolves the target's host name once, so that connects never block in getaddrinfo (rill
 * resolves names on every rill_connect). Returns 0, or prints why and returns the exit code:
 * 2 for a bad address or port (a bad command line), 1 for a name that does not resolve. */
int opts_resolve(struct load_opts *o);
void opts_usage(FILE *f);
/* Requests per second offered by the schedule between t0 and t1 s after the start (ramp aware). */
double opts_offered(const struct load_opts *o, double t0, double t1);

/* ---- histogram: hist.h ---------------------------------------------------------------------- */

/* ---- errors ---------------------------------------------------------------------------------- */

enum err_kind {
    ERR_CONNECT, /* the connection never opened (refused, timeout, ...) */
    ERR_CLOSE,   /* an open connection failed (reset, timeout with requests out, ...) */
    ERR_SEND,    /* rill_send refused a request */
    ERR_KINDS,   /* the kinds above are counted per errno */
    ERR_EOF = ERR_KINDS, /* the peer closed with requests unanswered and no partial reply */
    ERR_SHORT,   /* the peer closed in the middle of a reply */
    ERR_EXTRA,   /* bytes beyond every reply owed (echo), or a response with no request (HTTP) */
    ERR_GARBAGE, /* reply bytes differ from the request (echo) or are not HTTP */
    ERR_STATUS,  /* an HTTP response outside 2xx */
    ERR_LOST,    /* UDP: no reply within --timeout, or a later one came back first */
    ERR_ALL
};
#define ERR_NAMED (ERR_ALL - ERR_KINDS)
#define ERR_ERRNO_MAX 160 /* Linux errno values stay below this; others count as "other" */

struct errors {
    uint64_t by_errno[ERR_KINDS][ERR_ERRNO_MAX + 1]; /* [kind][-status], last slot: other */
    uint64_t named[ERR_NAMED];                      /* [kind - ERR_KINDS] */
};

void errors_add(struct errors *e, enum err_kind kind, int status);
void errors_merge(struct errors *into, const struct errors *from);
uint64_t errors_total(const struct errors *e);
const char *errors_kind_name(enum err_kind k); /* "connect", ..., "status" */

/* ---- connections ----------------------------------------------------------------------------- */

/* One request's times: when it was due (the schedule), when it went out, and for echo the stream
 * offset just past its reply. In a closed loop due == sent. */
struct req {
    uint64_t due, sent, end; /* UDP: end is the request's sequence number */
    uint64_t hdr;            /* UDP: the sequence number as sent (the datagram's first bytes) */
    uint32_t len;            /* UDP: the datagram's length */
};

struct http_parse {
    int state;
    int status;
    uint64_t left;      /* body or chunk bytes still to skip */
    bool chunked, close, has_len;
    uint32_t line_len;  /* bytes of the current line (status, header or chunk size) seen */
    char line[256];     /* its first bytes: enough for every header we look at */
};

struct worker;

struct lconn {
    struct worker *w;
    rill_conn *c;        /* NULL while closed */
    rill_dgram *d;       /* UDP: the connected datagram socket instead */
    uint64_t seq;        /* UDP: the next sequence number */
    rill_timer *retry;   /* reconnects after a close */
    uint32_t id;         /* global connection number */
    uint32_t gen;        /* times (re)connected; varies the echo phase */
    uint32_t phase;      /* echo: pattern offset of stream byte 0 */
    uint32_t backoff_ms;
    bool opened;
    bool answered;       /* at least one request completed on this connection */
    bool counted;        /* we closed it for a reason already counted, or on purpose */
    bool peer_closes;    /* HTTP: the last response said Connection: close */
    uint64_t t_connect;  /* when rill_connect was called (connect latency) */
    uint32_t on_conn;    /* requests sent on this connection (churn) */
    uint64_t rng;        /* xorshift state: request sizes, Poisson gaps */
    /* The request ring: [head, head + inflight) are out, the next `backlog` are due, not sent. */
    struct req *ring;
    uint32_t cap, head, inflight, backlog;
    /* Open loop: the schedule position (in requests) and the next due time. */
    double u;
    uint64_t next_due;
    uint32_t heap_idx;
    /* echo: stream offsets queued, received (verified), and the end of the last reply done */
    uint64_t sent, recvd, done_off;
    bool closing;        /* rill_close was called: its remaining bytes mean nothing */
    struct http_parse hp;
};

/* ---- workers --------------------------------------------------------------------------------- */

/* What a worker hands the main thread once per second, under mu. */
struct live {
    pthread_mutex_t mu;
    struct hist h;     /* latencies completed since the main thread last took them */
    uint64_t requests;
    uint64_t errors;
    uint32_t open;     /* connections open at the tick */
    bool done;         /* the worker's window has ended (-n reached, or it failed) */
    _Atomic uint32_t second; /* the last tick published */
};

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
    bool done;           /* -n: this worker's share is complete */
    int fatal;           /* a negative errno if the loop itself failed */
    uint64_t quota;      /* -n: this worker's share of the requests; 0: none */
    uint64_t out;        /* requests out now, over all connections */
    double rate_conn;    /* open loop: each connection's rate, requests per second */
    struct lconn **heap; /* open loop: connections by next due time */
    uint32_t nheap;
    rill_timer *send_timer; /* open loop: fires when the heap's first request is due */

    /* Owned by the worker thread; the main thread reads them only after join. */
    struct hist total;   /* latency from when each request was due (corrected) */
    struct hist uncorr;  /* latency from when it was sent */
    struct hist connect; /* connect latency */
    struct hist second;  /* this second's latencies, handed over at each tick */
    uint64_t requests;   /* completed in the window */
    uint64_t sent;       /* sent in the window */
    uint64_t late;       /* open loop: fired more than LOAD_LATE_NS after due (the client's fault) */
    uint64_t held;       /* sent more than LOAD_LATE_NS after due for any reason (depth, reopen) */
    uint64_t skipped;    /* due in the window but dropped: the connection's backlog was full */
    uint64_t bytes;      /* reply bytes in the window */
    uint64_t connects;   /* connections opened in the window */
    uint64_t status[6];  /* HTTP responses by class: [1] 1xx ... [5] 5xx, [0] other */
    uint64_t sec_requests, sec_errors;
    uint64_t warm_errors; /* errors before the window */
    uint64_t inflight_end; /* requests unanswered at the deadline */
    uint64_t oldest_end;   /* ns the oldest of them had waited */
    uint64_t mismatch_any; /* echo byte mismatches over the whole run, warm-up included */
    uint64_t last_sweep;   /* when conns_sweep last ran */
    struct errors errs;  /* errors in the window */
    struct rill_loop_stats s0, s1; /* loop counters at window start and end */
    uint64_t w0, w1;     /* monotonic ns at window start and end */
    uint64_t cpu0, cpu1; /* the thread's CPU time at window start and end */

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
/* Busy fraction of the thread over the window: CPU time over wall time. */
double worker_busy(const struct worker *w);

/* ---- conn.c ---------------------------------------------------------------------------------- */

int conns_global_init(const struct load_opts *o);
void conns_global_fini(void);
/* Allocates per-connection state for w->nconns connections and starts connecting them. */
int conns_start(struct worker *w);
/* Frees per-connection state; the loop must already be destroyed. */
void conns_fini(struct worker *w);
/* Counts requests still unanswered (at the deadline) and how long the oldest has waited. */
uint64_t conns_inflight(const struct worker *w, uint64_t now, uint64_t *oldest_ns);
/* Open loop: a request of lc falls due at `due`; it goes out now if allowed, else waits. */
void conn_due(struct lconn *lc, uint64_t due, uint64_t now);
/* The protocol saw the reply to the oldest request out complete. Returns false when the
 * connection was closed meanwhile (churn, quota), so the caller stops looking at its bytes. */
bool conn_complete(struct lconn *lc, uint64_t now);
/* Closes the connection after an error of `kind` (already decided by the protocol); a UDP
 * socket only counts it. */
void conn_fail(struct lconn *lc, enum err_kind kind, int status);
/* The oldest request out is lost (UDP): counted, and its slot freed. */
void conn_lost(struct lconn *lc, uint64_t now);
/* Once a second: UDP requests out longer than --timeout are lost. */
void conns_sweep(struct worker *w, uint64_t now);

/* ---- protocols: echo.c, http.c ---------------------------------------------------------------- */

struct proto {
    /* Queues one request; fills r->end where the protocol needs it. Returns 0 or -errno. */
    int (*send)(struct lconn *lc, struct req *r);
    /* Consumes received bytes, calling conn_complete() per reply and conn_fail() on bad ones. */
    void (*data)(struct lconn *lc, const uint8_t *p, size_t len, uint64_t now);
    /* The connection is new: reset the protocol's state. */
    void (*reset)(struct lconn *lc);
    /* True when a reply has started but not finished (a close now is a short reply). */
    bool (*partial)(const struct lconn *lc);
};

extern const struct proto proto_echo, proto_http, proto_udp;
/* The echo pattern from offset off (any offset; at least size_max bytes follow it). */
const uint8_t *echo_pattern(uint64_t off);
/* UDP: opens lc's connected datagram socket. Returns 0 or -errno (counted by the caller). */
int udp_open(struct lconn *lc);
int echo_global_init(const struct load_opts *o);
void echo_global_fini(void);
int http_global_init(const struct load_opts *o);
void http_global_fini(void);
/* Parses HTTP response bytes for tests: returns the number of complete responses in p, or -1
 * on garbage; *status gets the last status. */
int http_parse_feed(struct http_parse *hp, const uint8_t *p, size_t len, int *status,
                    size_t *consumed);

/* ---- sched.c --------------------------------------------------------------------------------- */

/* Seconds after the start at which schedule position u (in requests of one connection at rate
 * r with a linear ramp over ramp_s) falls due. */
double sched_time_at(double u, double r, double ramp_s);
/* The gap to the next position: 1 (evenly spaced) or an exponential variate (Poisson). */
double sched_gap(enum load_dist d, uint64_t *rng);
uint64_t sched_rand(uint64_t *rng);
/* Builds the schedule and the send timer (on w->loop), first firing in the loop's first
 * iteration. Returns 0 or a negative errno. */
int sched_init(struct worker *w);
void sched_fini(struct worker *w);
/* Fires every connection whose request is due by now. Returns the next due time (UINT64_MAX
 * when nothing is scheduled). */
uint64_t sched_run(struct worker *w, uint64_t now);

/* ---- time, CPU, reports ---------------------------------------------------------------------- */

static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU seen at one instant: ours (RUSAGE_SELF) and, with --server-pid, the server's. */
struct cpu_mark {
    uint64_t self_user_us, self_sys_us;
    uint64_t server_us;
    int server_err; /* 0, or why the server's figure is missing */
};

void cpu_mark_take(struct cpu_mark *m, long server_pid);

extern FILE *load_out; /* where the text report goes: stdout, or stderr with --json - */

/* One second of the live series. */
struct second {
    uint32_t t;
    bool warmup;
    uint64_t requests, errors, open;
    uint64_t p50, p99; /* ns; 0 when nothing completed */
};

/* Everything the final report shows, gathered from the workers. */
struct totals {
    struct hist h, uncorr, connect;
    struct errors e;
    uint64_t requests, sent, late, held, skipped, bytes, connects, warm_errors, mismatch_any;
    uint64_t inflight, oldest, status[6];
    uint64_t w0, w1;            /* the window: earliest start, latest end */
    struct rill_loop_stats sys; /* deltas over the window, summed over loops */
    double busy_max;            /* the busiest loop's busy fraction */
    uint64_t poll_us;           /* CPU spent polling for sends: 0 since sends sleep on a timer
                                 * (kept for the JSON key client_poll_us_per_request) */
    int busy_thread;
    double secs, rps, offered;  /* window length, achieved and offered rates */
    bool saturated;
    char why[160];              /* why it is saturated */
    int fatal;
    uint64_t user_us, sys_us, server_us;
    int server_err;
};

/* One live line for second k, from what every worker published; fills *s. */
void report_second(struct worker *ws, uint32_t n, uint32_t k, const struct load_opts *o,
                   struct second *s);
void report_gather(struct worker *ws, uint32_t n, const struct load_opts *o,
                   const struct cpu_mark *c0, const struct cpu_mark *c1, struct totals *t);
/* Prints the final report. Returns the exit code: 0, or 1 without requests or with a byte
 * mismatch. */
int report_final(const struct totals *t, const struct load_opts *o, const char *backend,
                 uint32_t caps);
void report_latency_line(const char *label, const struct hist *h);

/* ---- json.c ---------------------------------------------------------------------------------- */

struct run_info {
    const struct load_opts *o;
    const struct totals *t;
    const char *backend;
    uint32_t caps;
    const struct second *series;
    uint32_t nseries;
};

/* Writes the run as JSON to path ("-": stdout). Returns 0 or -errno. */
int json_write_run(const char *path, const struct run_info *ri);
/* A JSON document being built: jw_open starts it (the top-level object), the jw_* calls add
 * members to the innermost open object or array (key NULL inside an array), jw_obj / jw_arr
 * open one, jw_end closes it, and jw_close writes the whole document to f on one line and frees
 * it. jw_close returns 0, -ENOMEM when building failed, or -EIO when writing did. */
struct jw;
struct jw *jw_open(FILE *f);
int jw_close(struct jw *j);
void jw_obj(struct jw *j, const char *key);
void jw_arr(struct jw *j, const char *key);
void jw_end(struct jw *j);
void jw_u64(struct jw *j, const char *key, uint64_t v);
void jw_num(struct jw *j, const char *key, double v);
void jw_str(struct jw *j, const char *key, const char *s);
void jw_bool(struct jw *j, const char *key, bool v);
/* A histogram as an object (used by merge too); jw_latency: its percentiles in us. */
void jw_hist(struct jw *j, const char *key, const struct hist *h);
void jw_latency(struct jw *j, const char *key, const struct hist *h);

/* A parsed JSON value (merge reads the files rill-load wrote). */
enum jv_type { JV_NULL, JV_BOOL, JV_NUM, JV_STR, JV_ARR, JV_OBJ };
struct jv {
    enum jv_type type;
    double num;
    uint64_t u64;     /* the exact value of a non-negative integer */
    char *str;        /* JV_STR; the key for members of an object */
    char *key;
    struct jv *kids;  /* JV_ARR, JV_OBJ */
    size_t nkids;
};
/* Parses text (one JSON value and nothing after it); returns NULL on a syntax error (with
 * *err_at the offset). Free the result with jv_free() and free(). */
struct jv *jv_parse(const char *text, size_t *err_at);
void jv_free(struct jv *v);
const struct jv *jv_get(const struct jv *obj, const char *path); /* "a.b.c" */
/* Reads a histogram written by jw_hist. Returns 0 or -EINVAL. */
int jv_hist(const struct jv *v, struct hist *h);

/* ---- merge.c --------------------------------------------------------------------------------- */

int merge_main(int argc, char **argv);

#endif /* RILL_LOAD_H */
