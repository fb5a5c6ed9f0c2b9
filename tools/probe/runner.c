/* Runs one cell: opens the transport, starts the two sides on their threads behind a barrier,
 * bounds the run in time and operations, and turns the sides' counters into a result.
 *
 * A side blocked in the kernel cannot see a deadline, so the main thread is the watchdog: when a
 * run overstays (a lost UDP datagram in ping-pong, an end marker dropped) or SIGINT arrives, it
 * shuts the sockets down and sends datagram receivers an end marker (see kick()), which ends
 * every blocked read, write, epoll_wait and io_uring request. It also raises the cell's halt
 * flag and interrupts the side threads with SIGURG on every tick: a wait that a shutdown does
 * not end (a non-blocking datagram receiver whose end marker was lost, an io_uring wait for a
 * zero-copy notification) returns EINTR and sees the flag. A side that still does not end
 * within HALT_GIVE_UP_NS is a bug; the run is abandoned with a message rather than hanging. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "probe.h"

/* How long the receiver may drain after the sender finished before it is told to stop, and how
 * far past its deadline a cell may run before the watchdog ends it. */
#define DRAIN_GRACE_NS 300000000ull
#define OVERSTAY_NS 2000000000ull
#define HALT_GIVE_UP_NS 5000000000ull

volatile sig_atomic_t probe_stop;

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t probe_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool probe_side_halted(const struct probe_side *s)
{
    return probe_stopping() || __atomic_load_n(&s->cell->halt, __ATOMIC_RELAXED);
}

bool probe_side_should_stop(const struct probe_side *s)
{
    if (probe_side_halted(s) || s->eof || s->err)
        return true;
    if (!s->is_client)
        return false;
    return s->ops >= s->cell->opts->max_ops || probe_now_ns() >= s->cell->deadline_ns;
}

void probe_side_op_done(struct probe_side *s, uint64_t bytes)
{
    /* Atomic only so that the watchdog may read it; the side is its only writer. */
    __atomic_store_n(&s->ops, s->ops + 1, __ATOMIC_RELAXED);
    s->bytes += bytes;
    s->nsys_done = s->nsys;
    s->t_end_ns = probe_now_ns();
}

void probe_side_rx_account(struct probe_side *s, uint64_t bytes)
{
    if (!probe_transport_is_stream(s->cell->transport)) {
        probe_side_op_done(s, bytes);
        return;
    }
    s->carry += bytes;
    while (s->carry >= s->cell->size) {
        s->carry -= s->cell->size;
        probe_side_op_done(s, s->cell->size);
    }
}

/* Not counted: the end of the run is not an operation. Stream sockets and seqpacket signal it
 * with a half-close; datagram sockets with an empty datagram. A Unix datagram queue may be full
 * (net.unix.max_dgram_qlen, 10 by default), so the marker waits a little for room; over UDP it may
 * be dropped, and then the watchdog's grace period ends the receiver. */
void probe_stream_finish(struct probe_side *s)
{
    if (!probe_transport_is_dgram(s->cell->transport)) {
        shutdown(s->fd, SHUT_WR);
        return;
    }
    /* Three markers sent (one may be dropped), or 20 tries of 10 ms for room in the queue. */
    for (int i = 0; i < 20 && !probe_side_halted(s); i++) {
        if (send(s->fd, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL) == 0 && i >= 2)
            return;
        struct pollfd p = {.fd = s->fd, .events = POLLOUT};
        poll(&p, 1, 10);
    }
}

void probe_fill_iov(const struct probe_side *s, size_t off, size_t len, struct iovec *iov,
                    unsigned *cnt)
{
    unsigned pieces = s->cell->opts->iov;
    size_t chunk = len / pieces, pos = 0;
    unsigned n = 0;
    for (unsigned i = 0; i < pieces && pos < len; i++) {
        size_t l = i + 1 == pieces ? len - pos : chunk;
        if (l == 0)
            continue;
        if (pos + l > off) {
            size_t skip = off > pos ? off - pos : 0;
            iov[n].iov_base = s->buf + pos + skip;
            iov[n].iov_len = l - skip;
            n++;
        }
        pos += l;
    }
    *cnt = n;
}

/* Once the side was halted, its failure is the watchdog's doing (a shut-down socket, an
 * interrupted wait): the end of its run, which summarise() reports as the time-out. */
void probe_side_fail(struct probe_side *s, ssize_t r, const char *what)
{
    if (r == 0 || probe_side_halted(s)) {
        s->eof = true;
    } else if (!s->err) {
        s->err = (int)r;
        snprintf(s->why, sizeof s->why, "%s: %s", what, strerror((int)-r));
    }
}

static void pp_client(struct probe_side *s)
{
    const struct probe_strategy *st = probe_strategy_get(s->cell->strategy);
    size_t size = s->cell->size;
    s->cell->deadline_ns = probe_now_ns() + (uint64_t)(s->cell->opts->time_s * 1e9);
    while (!probe_side_should_stop(s)) {
        uint64_t t0 = probe_now_ns();
        ssize_t r = st->send_msg(s, size);
        if (r <= 0) {
            probe_side_fail(s, r, "send");
            break;
        }
        r = st->recv_msg(s, size);
        if (r <= 0) {
            probe_side_fail(s, r, "recv");
            break;
        }
        s->cell->lat[s->ops] = probe_now_ns() - t0;
        probe_side_op_done(s, size);
    }
    probe_stream_finish(s);
}

static void pp_server(struct probe_side *s)
{
    const struct probe_strategy *st = probe_strategy_get(s->cell->strategy);
    while (!probe_side_should_stop(s)) {
        ssize_t r = st->recv_msg(s, s->cell->size);
        if (r <= 0) {
            probe_side_fail(s, r, "recv");
            break;
        }
        r = st->send_msg(s, (size_t)r);
        if (r <= 0) {
            probe_side_fail(s, r, "send");
            break;
        }
        probe_side_op_done(s, (uint64_t)r);
    }
}

static void stream_tx(struct probe_side *s)
{
    const struct probe_strategy *st = probe_strategy_get(s->cell->strategy);
    s->cell->deadline_ns = probe_now_ns() + (uint64_t)(s->cell->opts->time_s * 1e9);
    while (!probe_side_should_stop(s)) {
        ssize_t r = st->send_msg(s, s->cell->size);
        if (r <= 0) {
            probe_side_fail(s, r, "send");
            break;
        }
        probe_side_op_done(s, (uint64_t)r);
    }
    probe_stream_finish(s);
}

static void stream_rx(struct probe_side *s)
{
    const struct probe_strategy *st = probe_strategy_get(s->cell->strategy);
    while (!probe_side_should_stop(s)) {
        ssize_t r = st->recv_msg(s, s->cell->size);
        if (r <= 0) {
            probe_side_fail(s, r, "recv");
            break;
        }
        probe_side_op_done(s, (uint64_t)r);
    }
}

/* The bare cost of one send+recv pair: one thread sends on the client socket and receives the
 * same message on the server socket, so no wake-up or scheduler hand-off is involved. */
static void pair_loop(struct probe_side *a, struct probe_side *b)
{
    const struct probe_strategy *st = probe_strategy_get(a->cell->strategy);
    size_t size = a->cell->size;
    a->cell->deadline_ns = probe_now_ns() + (uint64_t)(a->cell->opts->time_s * 1e9);
    while (!probe_side_should_stop(a)) {
        uint64_t t0 = probe_now_ns();
        ssize_t r = st->send_msg(a, size);
        if (r <= 0) {
            probe_side_fail(a, r, "send");
            break;
        }
        r = st->recv_msg(b, size);
        if (r <= 0) {
            probe_side_fail(b, r, "recv");
            break;
        }
        a->cell->lat[a->ops] = probe_now_ns() - t0;
        probe_side_op_done(b, size);
        probe_side_op_done(a, size);
    }
}

struct worker {
    struct probe_side *side, *other; /* other: the second side in pair mode */
    pthread_barrier_t *barrier;
};

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct probe_side *s = w->side;
    const struct probe_strategy *st = probe_strategy_get(s->cell->strategy);
    /* veth: each end runs inside its own namespace, as a server process there would. */
    if (s->netns_fd >= 0 && setns(s->netns_fd, CLONE_NEWNET) < 0)
        probe_side_fail(s, -errno, "setns");
    pin(s->cpu);
    if (s->cell->opts->profile)
        probe_prof_side_start(s);
    for (struct probe_side *x = s; x && st->thread_init; x = x == s ? w->other : NULL) {
        int r = x->err ? 0 : st->thread_init(x);
        if (r < 0) {
            x->err = r;
            if (!x->why[0])
                snprintf(x->why, sizeof x->why, "setup: %s", strerror(-r));
        }
    }
    pthread_barrier_wait(w->barrier);
    if (s->cell->opts->profile)
        probe_prof_side_run(s, true);
    getrusage(RUSAGE_THREAD, &s->ru0);
    s->cpu0_ns = thread_cpu_ns();
    s->t_start_ns = s->t_end_ns = probe_now_ns();
    if (s->err) {
        /* Setup failed: wake the peer, which is or will be blocked on this socket. */
        shutdown(s->fd, SHUT_RDWR);
    } else if (s->cell->transport == TR_DROP && !s->is_client) {
        /* Nothing reaches this side: the sender's datagrams are dropped at transmit. */
    } else if (w->other) {
        w->other->t_start_ns = s->t_start_ns;
        if (!w->other->err)
            pair_loop(s, w->other);
    } else if (s->cell->mode == MODE_PINGPONG) {
        (s->is_client ? (st->pp_client ? st->pp_client : pp_client)
                      : (st->pp_server ? st->pp_server : pp_server))(s);
    } else {
        (s->is_client ? (st->stream_tx ? st->stream_tx : stream_tx)
                      : (st->stream_rx ? st->stream_rx : stream_rx))(s);
    }
    if (s->err && s->is_client)
        probe_stream_finish(s);
    s->cpu1_ns = thread_cpu_ns();
    getrusage(RUSAGE_THREAD, &s->ru1);
    if (s->cell->opts->profile)
        probe_prof_side_run(s, false);
    return NULL;
}

/* Whether the strategy applies to the cell at all; fills c->res when it does not. */
static bool applicable(struct probe_cell *c)
{
    const struct probe_strategy *st = probe_strategy_get(c->strategy);
    struct probe_result *r = &c->res;
    r->status = CELL_NA;
    if ((st->flags & STRAT_NO_PINGPONG) && c->mode != MODE_STREAM)
        snprintf(r->why, sizeof r->why, "batching needs several messages in flight; stream only");
    else if ((st->flags & STRAT_DGRAM_ONLY) && probe_transport_is_stream(c->transport))
        snprintf(r->why, sizeof r->why, "message batching needs a datagram or seqpacket socket");
    else if (c->transport == TR_DROP && c->mode != MODE_STREAM)
        snprintf(r->why, sizeof r->why, "the drop transport delivers nothing: stream mode "
                                        "(UDP send-only) only");
    else if (c->mode == MODE_PAIR && c->size > 65536)
        snprintf(r->why, sizeof r->why, "one thread cannot send more than the socket buffers "
                                        "hold before it receives; pair mode stops at 64 KiB");
    else if (c->size == 0 || c->size > probe_transport_max_msg(c->transport))
        snprintf(r->why, sizeof r->why, "%zu B does not fit one datagram of this transport",
                 c->size);
    else if (st->check && (r->status = st->check(c, r->why, sizeof r->why)) != CELL_OK)
        return false;
    else
        r->status = CELL_OK;
    return r->status == CELL_OK;
}

/* Errors that mean "this machine or kernel cannot do it", reported as skipped. */
static bool is_unavailable(int err)
{
    return err == -ENOSYS || err == -EOPNOTSUPP || err == -EPERM || err == -EINVAL ||
           err == -ENOMEM || err == -EAFNOSUPPORT || err == -EADDRNOTAVAIL ||
           err == -EPROTONOSUPPORT || err == -ENOENT || err == -EIO;
}

static int side_setup(struct probe_cell *c, struct probe_side *s, int fd, int nsfd, int idx)
{
    const struct probe_strategy *st = probe_strategy_get(c->strategy);
    memset(s, 0, sizeof *s);
    s->prof.r.fd = -1;
    s->fd = fd;
    s->netns_fd = nsfd;
    s->cpu = c->opts->pin[idx];
    s->is_client = idx == 0;
    s->cell = c;
    s->buf_len = (c->size + 4095) & ~(size_t)4095;
    s->buf = aligned_alloc(4096, s->buf_len);
    if (!s->buf)
        return -ENOMEM;
    memset(s->buf, idx ? 's' : 'c', s->buf_len);
    if (st->flags & STRAT_NONBLOCK)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int r = st->init ? st->init(s) : 0;
    if (r < 0 && !s->why[0])
        snprintf(s->why, sizeof s->why, "%s", strerror(-r));
    return r;
}

static void side_teardown(struct probe_cell *c, struct probe_side *s)
{
    const struct probe_strategy *st = probe_strategy_get(c->strategy);
    if (st->fini && s->cell)
        st->fini(s);
    free(s->buf);
    s->buf = NULL;
}

/* Ends a side that overstays. A shutdown wakes blocking calls with EOF, but a non-blocking
 * receive on a Unix or UDP datagram socket only answers EAGAIN after it (Linux reports EOF there
 * for SEQPACKET alone), so an epoll or io_uring receiver would wait forever: datagram receivers
 * get an empty datagram, the end marker, sent from the other socket on every tick. */
static void kick(struct probe_cell *c, int fds[2], bool both, bool first)
{
    if (probe_transport_is_dgram(c->transport)) {
        send(fds[0], "", 0, MSG_DONTWAIT | MSG_NOSIGNAL); /* to the server */
        if (both)
            send(fds[1], "", 0, MSG_DONTWAIT | MSG_NOSIGNAL); /* to the client */
    }
    if (first) {
        shutdown(fds[1], SHUT_RDWR);
        if (both)
            shutdown(fds[0], SHUT_RDWR);
    }
}

/* Waits for a thread; past limit_ns, or when the run is interrupted, kicks it out. With
 * progress (the receiver), the limit moves on while *progress keeps growing: a receiver still
 * draining a full socket on a busy machine is not stuck. */
static void on_wake(int sig)
{
    (void)sig; /* only there to interrupt a blocking call with EINTR */
}

static void install_wake(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_wake; /* no SA_RESTART: the interrupted call returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGURG, &sa, NULL);
}

/* The last resort: a side that neither its socket's shutdown nor the halt flag and a signal
 * every tick could end for HALT_GIVE_UP_NS. Its thread still uses the cell, so the run ends. */
static void give_up(const struct probe_cell *c)
{
    fprintf(stderr,
            "rill-probe: %s %s %s %zu B: a side did not end %.0f s after the watchdog "
            "stopped it; giving up the run\n",
            probe_transport_name(c->transport), probe_strategy_get(c->strategy)->name,
            probe_mode_name(c->mode), c->size, HALT_GIVE_UP_NS / 1e9);
    probe_netns_cleanup();
    _exit(3);
}

static void join_watch(struct probe_cell *c, pthread_t t, int fds[2], uint64_t limit_ns,
                       bool both, const uint64_t *progress, struct probe_side *sides)
{
    bool kicked = false;
    uint64_t kicked_at = 0;
    uint64_t seen = progress ? __atomic_load_n(progress, __ATOMIC_RELAXED) : 0;
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (pthread_timedjoin_np(t, NULL, &ts) == 0)
            return;
        probe_prof_drain(c, sides, c->mode == MODE_PAIR ? 1 : 2);
        uint64_t now_seen = progress ? __atomic_load_n(progress, __ATOMIC_RELAXED) : 0;
        if (now_seen != seen && !kicked) {
            seen = now_seen;
            limit_ns = probe_now_ns() + DRAIN_GRACE_NS;
        }
        if (probe_stopping() || probe_now_ns() > limit_ns) {
            if (!probe_stopping() && both && !kicked)
                c->res.timed_out = true;
            kick(c, fds, both || probe_stopping(), !kicked);
            __atomic_store_n(&c->halt, 1, __ATOMIC_RELAXED);
            pthread_kill(t, SIGURG);
            if (!kicked)
                kicked_at = probe_now_ns();
            else if (probe_now_ns() - kicked_at > HALT_GIVE_UP_NS)
                give_up(c);
            kicked = true;
        }
    }
}

static void run_threads(struct probe_cell *c, struct probe_side sides[2], int fds[2])
{
    pthread_barrier_t barrier;
    bool pair = c->mode == MODE_PAIR;
    pthread_barrier_init(&barrier, NULL, pair ? 1 : 2);
    struct worker w[2] = {{&sides[0], pair ? &sides[1] : NULL, &barrier},
                          {&sides[1], NULL, &barrier}};
    pthread_t th[2];
    uint64_t start = probe_now_ns();
    uint64_t limit = start + (uint64_t)(c->opts->time_s * 1e9) + OVERSTAY_NS;
    if (c->opts->profile)
        probe_prof_cell_begin(c);
    pthread_create(&th[0], NULL, worker_main, &w[0]);
    if (!pair)
        pthread_create(&th[1], NULL, worker_main, &w[1]);
    join_watch(c, th[0], fds, limit, true, NULL, sides);
    if (!pair)
        join_watch(c, th[1], fds, probe_now_ns() + DRAIN_GRACE_NS, false, &sides[1].ops, sides);
    pthread_barrier_destroy(&barrier);
    if (c->opts->profile)
        probe_prof_cell_end(c, sides, pair ? 1 : 2);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t tv_ns(struct timeval tv)
{
    return (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000ull;
}

static void side_result(struct probe_cell *c, const struct probe_side *s, int idx)
{
    uint64_t ops = s->ops ? s->ops : 1;
    c->res.side[idx].sys_per_op = (double)s->nsys_done / (double)ops;
    /* The total is exact; the user/sys split comes from rusage, which the kernel samples at
     * ticks (the split of a short run can be all user or all system). */
    c->res.side[idx].cpu_ns_per_op = (double)(s->cpu1_ns - s->cpu0_ns) / (double)ops;
    c->res.side[idx].user_ns_per_op =
        (double)(tv_ns(s->ru1.ru_utime) - tv_ns(s->ru0.ru_utime)) / (double)ops;
    c->res.side[idx].sys_ns_per_op =
        (double)(tv_ns(s->ru1.ru_stime) - tv_ns(s->ru0.ru_stime)) / (double)ops;
    c->res.side[idx].vcsw = s->ru1.ru_nvcsw - s->ru0.ru_nvcsw;
    c->res.side[idx].ivcsw = s->ru1.ru_nivcsw - s->ru0.ru_nivcsw;
}

static void summarise(struct probe_cell *c, struct probe_side sides[2])
{
    struct probe_result *r = &c->res;
    struct probe_side *cl = &sides[0], *sv = &sides[1];
    r->ops = cl->ops;
    r->rx_ops = sv->ops;
    r->elapsed_s = (double)(cl->t_end_ns - cl->t_start_ns) / 1e9;
    side_result(c, cl, 0);
    side_result(c, sv, 1);
    if (c->mode == MODE_PAIR) {
        /* One thread ran both sides: its CPU time is the pair's, reported once. */
        r->side[1].user_ns_per_op = r->side[1].sys_ns_per_op = r->side[1].cpu_ns_per_op = 0;
        r->side[1].vcsw = r->side[1].ivcsw = 0;
    }
    if (c->mode != MODE_STREAM && cl->ops) {
        qsort(c->lat, cl->ops, sizeof c->lat[0], cmp_u64);
        r->min_ns = c->lat[0];
        r->p50_ns = c->lat[(cl->ops - 1) / 2];
        r->p99_ns = c->lat[(cl->ops - 1) * 99 / 100];
        r->max_ns = c->lat[cl->ops - 1];
    }
    if (c->transport == TR_DROP && cl->t_end_ns > cl->t_start_ns)
        r->bytes_per_s = (double)cl->bytes * 1e9 / (double)(cl->t_end_ns - cl->t_start_ns);
    else if (c->mode == MODE_STREAM && sv->t_end_ns > sv->t_start_ns)
        r->bytes_per_s = (double)sv->bytes * 1e9 / (double)(sv->t_end_ns - sv->t_start_ns);
    r->zc = cl->zc;
    r->zc.sends += sv->zc.sends;
    r->zc.completions += sv->zc.completions;
    r->zc.copied += sv->zc.copied;
    r->zc.usage_known = cl->zc.usage_known || sv->zc.usage_known;
    if (c->opts->timestamps)
        probe_ts_summarise(c);
    const struct probe_side *bad = cl->err ? cl : sv->err ? sv : NULL;
    if (bad) {
        r->status = is_unavailable(bad->err) ? CELL_SKIPPED : CELL_ERROR;
        snprintf(r->why, sizeof r->why, "%s side: %s", bad == cl ? "client" : "server", bad->why);
    } else if (r->timed_out) {
        r->status = CELL_ERROR;
        snprintf(r->why, sizeof r->why, "no reply within the time limit (a datagram lost?)");
    } else if (probe_stopping()) {
        r->status = CELL_ERROR;
        snprintf(r->why, sizeof r->why, "interrupted");
    } else if (cl->ops == 0) {
        r->status = CELL_ERROR;
        snprintf(r->why, sizeof r->why, "no operation completed");
    }
}

static void open_error(struct probe_cell *c, int r, const char *why)
{
    c->res.status = is_unavailable(r) || r == -EACCES ? CELL_SKIPPED : CELL_ERROR;
    snprintf(c->res.why, sizeof c->res.why, "%s", why);
}

void probe_run_cell(struct probe_cell *c)
{
    static pthread_once_t wake_once = PTHREAD_ONCE_INIT;
    pthread_once(&wake_once, install_wake);
    memset(&c->res, 0, sizeof c->res);
    c->halt = 0;
    if (!applicable(c))
        return;
    int fds[2], nsfds[2];
    char why[160] = "";
    int r = probe_transport_open(c->transport, fds, nsfds, why, sizeof why);
    if (r < 0) {
        open_error(c, r, why);
        return;
    }
    struct probe_side sides[2];
    r = side_setup(c, &sides[0], fds[0], nsfds[0], 0);
    if (r == 0)
        r = side_setup(c, &sides[1], fds[1], nsfds[1], 1);
    else
        memset(&sides[1], 0, sizeof sides[1]);
    if (r < 0) {
        open_error(c, r, sides[0].why[0] ? sides[0].why : sides[1].why);
    } else {
        if (c->opts->timestamps && (probe_strategy_get(c->strategy)->flags & STRAT_TIMESTAMPS) &&
            c->mode == MODE_PINGPONG) {
            probe_ts_enable(&sides[0]);
            probe_ts_enable(&sides[1]);
        }
        run_threads(c, sides, fds);
        summarise(c, sides);
    }
    side_teardown(c, &sides[0]);
    side_teardown(c, &sides[1]);
    close(fds[0]);
    close(fds[1]);
}
