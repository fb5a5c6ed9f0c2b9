/* rill-probe: a kernel socket path profiler.
 *
 * One measurement is a cell: a transport (how the two sockets are connected), a strategy (which
 * system calls move the bytes), a mode (ping-pong latency, stream throughput, or the bare cost of
 * one send+recv pair in one thread) and a message size. Each cell runs two sides, usually on two
 * threads; every system call a side makes goes through PROBE_SYS(), which counts it, so the
 * figures say how many calls an operation took without strace or perf. */
#ifndef RILL_PROBE_H
#define RILL_PROBE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "profile.h"

enum probe_transport {
    TR_TCP4,
    TR_TCP6,
    TR_UDP,
    TR_UNIX_STREAM,
    TR_UNIX_DGRAM,
    TR_UNIX_SEQPACKET,
    TR_SOCKETPAIR,
    TR_VETH,
    TR_DROP, /* UDP into a veth with its peer down: dropped at transmit (netns.c) */
    TR_COUNT
};

enum probe_mode { MODE_PINGPONG, MODE_STREAM, MODE_PAIR, MODE_COUNT };

enum probe_status { CELL_OK, CELL_NA, CELL_SKIPPED, CELL_ERROR };

#define PROBE_MAX_IOV 64
#define PROBE_MAX_BATCH 64
#define PROBE_MAX_SIZE (1u << 20)

/* The command line, after parsing. */
struct probe_opts {
    bool transports[TR_COUNT];
    bool *strategies; /* indexed like probe_strategies[] */
    bool modes[MODE_COUNT];
    size_t sizes[16];
    unsigned nsizes;
    double time_s;  /* per cell */
    uint64_t max_ops;
    unsigned iov;   /* iovecs per message for the *v strategies */
    unsigned batch; /* messages per call (sendmmsg) or SQEs per io_uring_enter */
    unsigned repeat; /* passes over every cell, interleaved; the median pass is reported */
    int pin[2];     /* CPUs of the client and server threads, -1 for none */
    bool timestamps, json, matrix, quiet;
    /* --profile: sample both threads of every cell (profile.h); off when sampling is not
     * possible here, with the reason in profile_why (the cells run without a profile). */
    bool profile;
    enum probe_prof_scope profile_scope; /* --profile-scope: a ring per thread or per CPU */
    unsigned top;          /* --top: kernel functions listed per cell */
    unsigned profile_hz;   /* --profile-hz: samples per second of CPU time */
    const char *folded;    /* --folded FILE, or NULL */
    int compare[2];        /* --compare A,B: strategy indexes, -1 when not comparing */
    char profile_why[200];
};

/* Zero-copy accounting: sends asked to be zero-copy, completions received, and completions in
 * which the kernel reports that it copied after all (always the case on loopback and veth into
 * a local socket: the receiving socket cannot hold on to the sender's pages). */
struct probe_zc {
    uint64_t sends, completions, copied;
    bool usage_known; /* false when the kernel cannot report copies (SEND_ZC before 6.2) */
};

/* One end of a cell. Counters are written only by the thread that runs this side. */
struct probe_side {
    int fd;
    int netns_fd; /* namespace this side's thread joins, -1 for none */
    int cpu;      /* CPU to pin to, -1 for none */
    bool is_client;
    struct probe_cell *cell;
    unsigned char *buf;   /* at least cell->size bytes, or the zero-copy slots */
    size_t buf_len;
    void *priv;           /* the strategy's state for this side */

    uint64_t nsys;        /* every counted system call so far */
    uint64_t nsys_done;   /* nsys when the last complete operation finished */
    uint64_t ops;         /* complete operations (round trips, messages) */
    uint64_t bytes;       /* payload bytes moved by this side */
    uint64_t carry;       /* bytes already received beyond the current message (multishot) */
    uint64_t t_start_ns, t_end_ns;
    struct rusage ru0, ru1;
    uint64_t cpu0_ns, cpu1_ns; /* CLOCK_THREAD_CPUTIME_ID: exact, unlike rusage's ticks */
    struct probe_zc zc;
    bool eof;
    bool ts_on;           /* SO_TIMESTAMPING enabled on fd (--timestamps) */
    int err;              /* first error, -errno, 0 for none */
    char why[160];        /* what failed, or why the cell was skipped */
    struct probe_prof_side prof; /* --profile: this thread's sampling */
};

/* Software timestamps of the client-to-server direction of each round trip (CLOCK_REALTIME). */
struct probe_ts {
    uint64_t *user_send, *kernel_tx, *kernel_rx, *user_recv;
    uint64_t cap;
};

struct probe_result {
    enum probe_status status;
    char why[200];
    uint64_t ops;    /* client's operations: round trips, pairs, or messages sent */
    uint64_t rx_ops; /* messages the server received (stream: fewer than ops if UDP dropped) */
    double elapsed_s;
    uint64_t p50_ns, p99_ns, min_ns, max_ns; /* per round trip (ping-pong) or per pair */
    double bytes_per_s;                      /* stream */
    struct {
        double sys_per_op, cpu_ns_per_op, user_ns_per_op, sys_ns_per_op;
        long vcsw, ivcsw;
    } side[2]; /* 0 client (sender), 1 server (receiver) */
    struct probe_zc zc;
    bool timed_out;
    /* --repeat: how many passes ran this cell, and the spread of its headline figure (p50 ns,
     * or bytes/s in stream mode) over them; the rest of the result is the median pass's. */
    unsigned repeats;
    double rep_min, rep_max;
    /* Medians of the timestamp split, 0 when the kernel gave none. */
    uint64_t ts_samples, ts_sender_ns, ts_path_ns, ts_receiver_ns;
    struct probe_profile prof; /* --profile */
};

struct probe_cell {
    enum probe_transport transport;
    unsigned strategy; /* index into probe_strategies[] */
    enum probe_mode mode;
    size_t size;
    const struct probe_opts *opts;
    uint64_t deadline_ns; /* CLOCK_MONOTONIC */
    uint64_t *lat;        /* client's per-op latencies, opts->max_ops entries */
    struct probe_ts ts;
    struct probe_result res;
    int halt; /* set by the watchdog when the cell overstays: the sides end at their next check */
};

/* A strategy: how one side sends and receives one message. send_msg and recv_msg move exactly
 * one message (looping over short transfers on stream sockets) and return its length, 0 at the
 * end of the run (EOF or the end marker), or -errno. The optional hooks replace the generic
 * loops of runner.c where a strategy can do better than one message per call (batches). */
struct probe_strategy {
    const char *name;
    const char *desc;
    unsigned flags;
    /* Returns CELL_OK, or CELL_NA / CELL_SKIPPED with the reason in why. */
    enum probe_status (*check)(const struct probe_cell *c, char *why, size_t n);
    int (*init)(struct probe_side *s);        /* on the main thread, before the run */
    int (*thread_init)(struct probe_side *s); /* on the side's own thread (io_uring rings) */
    void (*fini)(struct probe_side *s);
    ssize_t (*send_msg)(struct probe_side *s, size_t len);
    ssize_t (*recv_msg)(struct probe_side *s, size_t len);
    void (*pp_client)(struct probe_side *s);  /* whole ping-pong client loop */
    void (*pp_server)(struct probe_side *s);  /* whole ping-pong server loop */
    void (*stream_tx)(struct probe_side *s);  /* whole stream sender loop */
    void (*stream_rx)(struct probe_side *s);  /* whole stream receiver loop */
};

#define STRAT_NONBLOCK (1u << 0)  /* sockets are set O_NONBLOCK */
#define STRAT_DGRAM_ONLY (1u << 1) /* message-preserving sockets only */
#define STRAT_NO_PINGPONG (1u << 2)
#define STRAT_TIMESTAMPS (1u << 3) /* carries --timestamps */

/* strategies.c: the strategies in the order they are listed and ranked. */
const struct probe_strategy *probe_strategy_get(unsigned i);
unsigned probe_strategy_count(void);
int probe_strategy_parse(const char *name);
extern volatile sig_atomic_t probe_stop; /* set by SIGINT/SIGTERM */

/* Whether the run was asked to stop. An atomic load: the flag is read by the side threads while
 * the signal handler, on the main thread, writes it. */
static inline bool probe_stopping(void)
{
    return __atomic_load_n(&probe_stop, __ATOMIC_RELAXED);
}

/* Counts one system call of side s and evaluates the call. */
#define PROBE_SYS(s, call) ((s)->nsys++, (call))

/* transports.c */
const char *probe_transport_name(enum probe_transport t);
int probe_transport_parse(const char *name);
bool probe_transport_is_inet(enum probe_transport t);
bool probe_transport_is_stream(enum probe_transport t); /* byte stream (no message bounds) */
bool probe_transport_is_dgram(enum probe_transport t);  /* may lose or reorder (UDP, unix dgram) */
size_t probe_transport_max_msg(enum probe_transport t);
/* Creates a connected pair: fds[0] the client, fds[1] the server; nsfds[] the namespaces the
 * two threads must join (-1 when none). Returns 0, or -errno with the reason in why. */
int probe_transport_open(enum probe_transport t, int fds[2], int nsfds[2], char *why, size_t n);

/* The drop transport's addresses: the veth end that is up, and the neighbour it sends to. */
#define PROBE_DROP_SRC "10.213.78.1"
#define PROBE_DROP_DST "10.213.78.2"

/* netns.c */
int probe_netns_setup(char *why, size_t n); /* creates the veth namespaces once per run */
int probe_netns_setup_drop(char *why, size_t n); /* the drop transport's namespace, once */
int probe_netns_fd(int which); /* 0 veth client's namespace, 1 veth server's, 2 drop's */
void probe_netns_remove_stale(void);
void probe_netns_cleanup(void);             /* async-signal-safe */
extern const char probe_netns_prefix[];

/* runner.c */
uint64_t probe_now_ns(void);
bool probe_side_should_stop(const struct probe_side *s);
/* Whether the watchdog or a signal ended the run: every wait and retry loop checks it, and
 * every blocking call is interrupted (EINTR) while it holds. */
bool probe_side_halted(const struct probe_side *s);
void probe_side_op_done(struct probe_side *s, uint64_t bytes);
/* Records the end of the run (r == 0) or the side's first error (r < 0) as "what: error". */
void probe_side_fail(struct probe_side *s, ssize_t r, const char *what);
/* Receivers: counts received bytes as whole messages (a byte stream has no message bounds). */
void probe_side_rx_account(struct probe_side *s, uint64_t bytes);
void probe_run_cell(struct probe_cell *c);
void probe_stream_finish(struct probe_side *s); /* tells the receiver the stream has ended */
void probe_fill_iov(const struct probe_side *s, size_t off, size_t len, struct iovec *iov,
                    unsigned *cnt);

/* timestamps.c: SO_TIMESTAMPING for the msg1-block ping-pong (--timestamps). The client stores
 * its user-space send time, then after the reply reads the kernel's TX timestamp from the error
 * queue; the server takes the RX timestamp from recvmsg's control data. */
uint64_t probe_realtime_ns(void);
int probe_ts_enable(struct probe_side *s);
void probe_ts_record_send(struct probe_side *s, uint64_t op, uint64_t user_send_ns);
void probe_ts_collect_tx(struct probe_side *s, uint64_t op);
void probe_ts_from_cmsg(struct probe_side *s, void *msghdr, uint64_t op);
void probe_ts_summarise(struct probe_cell *c);

/* repeat.c: folds passes[p * n + i] (p < npasses) into cells[i], keeping the median pass. */
void probe_fold_repeats(struct probe_cell *cells, const struct probe_cell *passes, size_t n,
                        unsigned npasses);

/* report.c */
void probe_report_header(void);
void probe_report_row(const struct probe_cell *c);
void probe_report_json(struct probe_cell *cells, size_t n, const struct probe_opts *o);
void probe_report_ranking(struct probe_cell *cells, size_t n, const struct probe_opts *o);
/* report_profile.c: the phase shares of --profile, in the table, JSON and --compare. */
void probe_report_profile_row(const struct probe_cell *c);
void probe_report_profile_json(const struct probe_cell *c);
void probe_report_compare(struct probe_cell *cells, size_t n, const struct probe_opts *o);
void probe_report_compare_json(const struct probe_cell *cells, size_t n,
                               const struct probe_opts *o);
const char *probe_mode_name(enum probe_mode m);

#endif
