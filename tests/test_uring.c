/* The io_uring backend's hard cases, run on both backends wherever they mean something, so that
 * epoll is held to the same contract: a completion queue far smaller than the work (overflow),
 * the io_uring counters and the buffer ring under a tiny slab budget, and heavy slot reuse (no
 * completion may reach the next connection in a slot). Closing with work in flight is in
 * test_uring_close.c, read pause/resume ordering in test_uring_pause.c.
 *
 * Server and clients share one loop where they can; plain blocking sockets play the peer when a
 * test needs a peer that misbehaves on purpose (never reads, reads late, half-closes). */
#include <sys/wait.h>

#include "uring_util.h"

/* ---- an echo server on rill (as in test_conn.c) --------------------------------------------- */

static void echo_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    cr_assert_eq(rill_send_bufs(c, &s, 1, NULL, NULL), 0);
    if (rill_conn_write_queued(c) >= MiB)
        rill_read_pause(c);
}

static void echo_drain(rill_conn *c, void *ctx)
{
    (void)ctx;
    rill_read_resume(c);
}

static const struct rill_conn_handler echo_h = {.on_data = echo_data, .on_drain = echo_drain};

/* ---- echo clients on rill: each checks its echo byte for byte ------------------------------- */

struct cli {
    rill_conn *c;
    uint8_t *data;
    size_t size, got;
    uint64_t seed;
    int status, opens, closes;
    bool mismatch;
    int *done;
};

static void cli_open(rill_conn *c, void *ctx)
{
    struct cli *k = ctx;
    k->opens++;
    struct iovec v = {k->data, k->size};
    cr_assert_eq(rill_send(c, &v, 1, NULL, NULL), 0);
}

static void cli_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct cli *k = ctx;
    const uint8_t *p = data;
    if (k->got + len > k->size)
        k->mismatch = true;
    for (size_t i = 0; i < len && !k->mismatch; i++)
        if (p[i] != k->data[k->got + i])
            k->mismatch = true;
    k->got += len;
    if (k->got >= k->size || k->mismatch)
        rill_close(c);
}

static void cli_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct cli *k = ctx;
    k->status = status;
    k->closes++;
    (*k->done)++;
}

static const struct rill_conn_handler cli_h = {
    .on_open = cli_open, .on_data = cli_data, .on_close = cli_close};

static void cli_start(rill_loop *l, int port, struct cli *k, size_t size, uint64_t seed, int *done)
{
    k->size = size;
    k->seed = seed;
    k->data = malloc(size);
    cr_assert_not_null(k->data);
    h_fill(k->data, size, seed, 0);
    k->done = done;
    char uri[64];
    snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
    struct rill_connect_config cc = {.handler = &cli_h, .ctx = k, .timeout_ms = 10000};
    int r = rill_connect(l, uri, &cc, &k->c);
    cr_assert_eq(r, 0, "connect: %s", rill_strerror(r));
}

static void cli_check(struct cli *k, int n)
{
    for (int i = 0; i < n; i++) {
        cr_expect_eq(k[i].opens, 1, "client %d opened %d times", i, k[i].opens);
        cr_expect_eq(k[i].closes, 1, "client %d closed %d times", i, k[i].closes);
        cr_expect(!k[i].mismatch, "client %d: bytes differ", i);
        cr_expect_eq(k[i].got, k[i].size, "client %d: got %zu of %zu", i, k[i].got, k[i].size);
        cr_expect_eq(k[i].status, 0, "client %d: %s", i, rill_strerror(k[i].status));
    }
}

static void cli_free(struct cli *k, int n)
{
    for (int i = 0; i < n; i++)
        free(k[i].data);
}

/* ---- many echoes: CQ overflow, counters, a tiny slab ----------------------------------------- */

struct echo_run {
    struct rill_loop_stats st; /* after every connection closed and the loop idled */
    uint64_t max_batch;        /* most completions reaped in one iteration */
    uint64_t max_leased;       /* most buffers leased at once (in use + in the ring) */
};

/* n rill clients echo `size(i)` bytes each through a rill echo server on one loop built from
 * cfg; every byte is checked, then the loop settles (no slot held, no descriptor left). */
static void run_echoes(const char *backend, const struct rill_loop_config *cfg, int n,
                       size_t base, size_t spread, struct echo_run *out)
{
    rill_loop *l = h_loop_cfg(backend, (struct rill_loop_config *)cfg);
    rill_listener *ls = listen_on(l, &echo_h, NULL);
    int fds = h_count_fds();
    struct cli *k = calloc((size_t)n, sizeof *k);
    int done = 0;
    for (int i = 0; i < n; i++)
        cli_start(l, rill_listener_port(ls), &k[i], base + (size_t)(i * 7919) % spread,
                  (uint64_t)i + 1, &done);
    uint64_t end = h_now_ms() + 30000, prev = 0;
    memset(out, 0, sizeof *out);
    while (done < n) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        struct rill_loop_stats st = stats_of(l);
        if (st.cqes_reaped - prev > out->max_batch)
            out->max_batch = st.cqes_reaped - prev;
        prev = st.cqes_reaped;
        if (st.bufs_in_use + st.bufs_in_ring > out->max_leased)
            out->max_leased = st.bufs_in_use + st.bufs_in_ring;
        if (h_now_ms() >= end) {
            cr_assert_fail("%s: echo timed out: %d of %d done; conns_open %llu, bufs_in_use "
                           "%llu, bufs_in_ring %llu, read_pauses %llu, buf_ring_empty %llu, "
                           "buf_exhausted %llu", backend, done, n,
                           (unsigned long long)st.conns_open, (unsigned long long)st.bufs_in_use,
                           (unsigned long long)st.bufs_in_ring,
                           (unsigned long long)st.read_pauses,
                           (unsigned long long)st.buf_ring_empty,
                           (unsigned long long)st.buf_exhausted);
        }
    }
    cli_check(k, n);
    settle(l, fds, 5000);
    h_run_for(l, 20); /* idle */
    out->st = stats_of(l);
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += k[i].size;
    cr_expect_eq(out->st.accepts, (uint64_t)n);
    cr_expect_eq(out->st.connects, (uint64_t)n);
    cr_expect_eq(out->st.bytes_in, 2 * bytes, "bytes_in %llu, want %llu",
                 (unsigned long long)out->st.bytes_in, (unsigned long long)(2 * bytes));
    cr_expect_eq(out->st.bytes_out, 2 * bytes);
    cr_expect_eq(out->st.bufs_in_use, 0, "%llu buffers still in use after every connection "
                 "closed", (unsigned long long)out->st.bufs_in_use);
    if (strcmp(backend, "uring") == 0) {
        cr_expect_eq(out->st.stale_completions, 0);
        cr_expect_gt(out->st.bufs_in_ring, 0, "an idle io_uring loop keeps buffers in the ring");
    } else {
        cr_expect_eq(out->st.bufs_in_ring, 0);
    }
    cli_free(k, n);
    free(k);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(uring, cq_overflow_loses_nothing, .timeout = 120)
{
    /* Four SQ entries, so an eight-entry completion queue, under 200 concurrent echoes: the
     * completions outnumber the CQ many times over and must all arrive (IORING_FEAT_NODROP
     * overflow, multishot requests ended by the overflow and re-armed). epoll ignores the
     * ring size and must simply pass too. */
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.ring_entries = 4;
    struct echo_run r;
    run_echoes(backend, &cfg, 200, 1, 120000, &r);
    if (strcmp(backend, "uring") == 0)
        cr_expect_gt(r.max_batch, 8, "at most %llu completions in one iteration: the CQ never "
                     "overflowed", (unsigned long long)r.max_batch);
}

H_BACKEND_TEST(uring, cq_overflow_with_a_dry_buffer_ring, .timeout = 120)
{
    /* Both at once: completions overflow while receives keep ending for want of buffers. */
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.ring_entries = 4;
    cfg.slab_budget = 64u << 10;
    cfg.recv_buf_size = 4096;
    struct echo_run r;
    run_echoes(backend, &cfg, 100, 1000, 100000, &r);
    cr_expect_gt(r.st.read_pauses, 0);
    if (strcmp(backend, "uring") == 0)
        cr_expect_gt(r.st.buf_ring_empty, 0);
}

H_BACKEND_TEST(uring, stats_after_echo, .timeout = 60)
{
    struct echo_run r;
    run_echoes(backend, NULL, 8, 50000, 1, &r);
    const struct rill_loop_stats *st = &r.st;
    if (strcmp(backend, "uring") == 0) {
        cr_expect_gt(st->uring_enters, 0);
        cr_expect_gt(st->cqes_reaped, 0);
        /* At least: 8 connects, 8 accepts, 16 receives, 16 sends, 16 cancel + 16 close. */
        cr_expect_geq(st->sqes_submitted, 8u * 8, "sqes %llu",
                      (unsigned long long)st->sqes_submitted);
        cr_expect_eq(st->sys_ctl, 0, "io_uring never calls epoll_ctl");
        cr_expect_eq(st->buf_ring_empty, 0, "16 MiB of buffers cannot run dry here");
    } else {
        cr_expect_eq(st->uring_enters, 0);
        cr_expect_eq(st->sqes_submitted, 0);
        cr_expect_eq(st->cqes_reaped, 0);
        cr_expect_eq(st->buf_ring_empty, 0);
        cr_expect_gt(st->sys_ctl, 0);
    }
}

/* A blocking peer in a child process: n round trips of 64 bytes to 127.0.0.1:port, then close.
 * Exits 0 when every reply came back whole and equal. */
static void pingpong_child(int port, int n)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        _exit(2);
    char out[64], in[64];
    for (int i = 0; i < n; i++) {
        memset(out, 'a' + i % 26, sizeof out);
        if (send(fd, out, sizeof out, MSG_NOSIGNAL) != (ssize_t)sizeof out ||
            recv(fd, in, sizeof in, MSG_WAITALL) != (ssize_t)sizeof in ||
            memcmp(in, out, sizeof in) != 0)
            _exit(3);
    }
    close(fd);
    _exit(0);
}

static void pingpong_closed(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)status;
    *(bool *)ctx = true;
}

H_BACKEND_TEST(uring, pingpong_enters_the_kernel_twice_per_round_trip, .timeout = 60)
{
    /* One request at a time: the loop waits for the request (one enter), and the flush point
     * submits the reply and collects what is ready (a second). The reply's own completion is
     * posted by that second enter, so the next wait must not take a third enter to reap it. */
    enum { N = 2000 };
    rill_loop *l = h_loop(backend);
    bool closed = false;
    const struct rill_conn_handler h = {.on_data = echo_data, .on_close = pingpong_closed};
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &h, .ctx = &closed};
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int port = rill_listener_port(ls);
    h_run_for(l, 20); /* the accept is armed and submitted before the peer connects */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        pingpong_child(port, N);
    struct rill_loop_stats s0 = stats_of(l);
    /* Waits of a second: a wait that times out would be an enter no round trip asked for. */
    uint64_t end = h_now_ms() + 30000;
    while (!closed) {
        cr_assert_geq(rill_loop_run_once(l, 1000), 0);
        cr_assert_lt(h_now_ms(), end, "the peer never closed");
    }
    struct rill_loop_stats s1 = stats_of(l);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the peer failed (status 0x%x)", st);
    cr_assert_geq(s1.bytes_in - s0.bytes_in, (uint64_t)N * 64);
    if (strcmp(backend, "uring") == 0 && (rill_loop_caps(l) & RILL_CAP_DEFER_TASKRUN)) {
        /* (Without DEFER_TASKRUN the kernel posts completions on its own schedule, and the
         * count is not pinned down.) Slack for the accept and the close. Without reaping what the flush point's enter
         * posted, this took about 2.3 enters per round trip (4653 here). */
        uint64_t enters = s1.uring_enters - s0.uring_enters;
        cr_expect_leq(enters, 2u * N + N / 20, "%llu enters for %d round trips",
                      (unsigned long long)enters, N);
    } else if (strcmp(backend, "epoll") == 0) {
        /* epoll: one wait per round trip. */
        cr_expect_leq(s1.sys_poll - s0.sys_poll, (uint64_t)N + N / 20);
    }
    rill_listener_close(ls);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(uring, tiny_slab_budget_runs_the_ring_dry, .timeout = 120)
{
    /* 64 KiB of 4 KiB buffers (16) for 40 connections echoing ~170 KB each. */
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.slab_budget = 64u << 10;
    cfg.recv_buf_size = 4096;
    struct echo_run r;
    run_echoes(backend, &cfg, 40, 150000, 40000, &r);
    cr_expect_leq(r.max_leased, 16, "%llu buffers leased at once",
                  (unsigned long long)r.max_leased);
    cr_expect_leq(r.st.buf_bytes_mapped, cfg.slab_budget);
    cr_expect_gt(r.st.read_pauses, 0, "the budget must really have run out");
    if (strcmp(backend, "uring") == 0)
        cr_expect_gt(r.st.buf_ring_empty, 0, "the buffer ring never ran dry");
    else
        cr_expect_eq(r.st.buf_ring_empty, 0);
}

/* ---- slot reuse ----------------------------------------------------------------------------- */

/* Each client sends [u32 id][u32 size][pattern(id)...]; the server side checks every byte it
 * receives against the id it saw first, and echoes. A completion delivered to the wrong
 * connection shows as a mismatch on either side. */
struct reuse {
    int srv_opens, srv_closes, srv_bad, srv_short, srv_err;
    struct cli cur;
    int cli_done;
};

struct srv {
    struct reuse *r;
    uint8_t hdr[8];
    size_t got;
    uint32_t id, size;
};

static void rs_open(rill_conn *c, void *ctx)
{
    struct reuse *r = ctx;
    r->srv_opens++;
    struct srv *s = calloc(1, sizeof *s);
    cr_assert_not_null(s);
    s->r = r;
    rill_conn_set_ctx(c, s);
}

static void rs_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    struct srv *s = ctx;
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++, s->got++) {
        if (s->got < 8) {
            s->hdr[s->got] = p[i];
            if (s->got == 7) {
                memcpy(&s->id, s->hdr, 4);
                memcpy(&s->size, s->hdr + 4, 4);
            }
        } else if (s->got >= s->size || p[i] != h_pattern(s->id, s->got)) {
            s->r->srv_bad++;
            break;
        }
    }
    echo_data(c, buf, data, len, NULL);
}

static void rs_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    struct srv *s = ctx;
    s->r->srv_closes++;
    if (s->got != s->size)
        s->r->srv_short++;
    if (status != 0)
        s->r->srv_err++;
    free(s);
}

static const struct rill_conn_handler rs_h = {
    .on_open = rs_open, .on_data = rs_data, .on_close = rs_close};

H_BACKEND_TEST(uring, slot_reuse_never_delivers_old_completions, .timeout = 120)
{
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.max_conns = 4; /* two pairs at most: every slot is reused hundreds of times */
    rill_loop *l = h_loop_cfg(backend, &cfg);
    bool uring = strcmp(backend, "uring") == 0;
    struct reuse r = {0};
    rill_listener *ls = listen_on(l, &rs_h, &r);
    int port = rill_listener_port(ls);
    int fds = h_count_fds();
    enum { CYCLES = 2000 };
    int bad_clients = 0;
    uint64_t end = h_now_ms() + 90000;
    for (uint32_t id = 1; id <= CYCLES; id++) {
        /* Start the next pair as soon as the previous client has closed and two slots are free
         * (the previous pair's slots may still wait for their last completions). */
        while (stats_of(l).conns_open > cfg.max_conns - 2) {
            cr_assert_geq(rill_loop_run_once(l, 1), 0);
            cr_assert_lt(h_now_ms(), end, "slots never freed (cycle %u)", id);
        }
        struct cli *k = &r.cur;
        free(k->data);
        memset(k, 0, sizeof *k);
        r.cli_done = 0;
        uint32_t size = 8 + (id * 7919u) % 20000u;
        k->size = size;
        k->seed = id;
        k->data = malloc(size);
        h_fill(k->data, size, id, 0);
        memcpy(k->data, &id, 4);
        memcpy(k->data + 4, &size, 4);
        k->done = &r.cli_done;
        char uri[64];
        snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
        struct rill_connect_config cc = {.handler = &cli_h, .ctx = k, .timeout_ms = 5000};
        int rc = rill_connect(l, uri, &cc, &k->c);
        cr_assert_eq(rc, 0, "cycle %u: connect: %s", id, rill_strerror(rc));
        while (!r.cli_done) {
            cr_assert_geq(rill_loop_run_once(l, 5), 0);
            cr_assert_lt(h_now_ms(), end, "cycle %u never finished", id);
        }
        if (k->mismatch || k->got != k->size || k->status != 0 || k->opens != 1) {
            if (bad_clients++ < 5)
                cr_log_error("cycle %u: mismatch %d, got %zu of %zu, status %s, opens %d", id,
                             k->mismatch, k->got, k->size, rill_strerror(k->status), k->opens);
        }
    }
    free(r.cur.data);
    settle(l, fds, 5000);
    struct rill_loop_stats st = stats_of(l);
    cr_expect_eq(bad_clients, 0, "%d clients saw wrong or missing data", bad_clients);
    cr_expect_eq(r.srv_bad, 0, "%d server connections saw another's bytes", r.srv_bad);
    cr_expect_eq(r.srv_short, 0, "%d server connections got a short stream", r.srv_short);
    cr_expect_eq(r.srv_err, 0, "%d server connections closed with an error", r.srv_err);
    cr_expect_eq(r.srv_opens, CYCLES);
    cr_expect_eq(r.srv_closes, r.srv_opens, "on_close %d, opens %d", r.srv_closes, r.srv_opens);
    cr_expect_eq(st.accepts, CYCLES);
    cr_expect_eq(st.connects, CYCLES);
    if (uring)
        cr_expect_eq(st.stale_completions, 0, "stale completions: %llu",
                     (unsigned long long)st.stale_completions);
    rill_loop_destroy(l);
}

/* ---- incremental buffer consumption ------------------------------------------------------------ */

/* A server that keeps a reference to every buffer it is handed, to count how many distinct ring
 * buffers 64-byte messages took, and checks each message's bytes. */
struct inc_srv {
    rill_buf *bufs[512];
    int nbufs, msgs, bad, offset_nonzero;
};

static void inc_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)c;
    struct inc_srv *s = ctx;
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)('a' + (s->msgs + (int)(i / 64)) % 26))
            s->bad++;
    s->msgs += (int)(len / 64);
    s->offset_nonzero += p != (const uint8_t *)rill_buf_data(buf);
    for (int i = 0; i < s->nbufs; i++)
        if (s->bufs[i] == buf)
            return;
    if (s->nbufs < 512)
        s->bufs[s->nbufs++] = rill_buf_ref(buf);
}

/* 200 messages of 64 B, one at a time, each answered only by the server's reading it: with
 * incremental consumption they share ring buffers (16 KiB holds 256 of them), without it each
 * takes a 16 KiB buffer of its own. */
static struct inc_srv inc_run(const char *backend, uint32_t disable)
{
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.disable = disable;
    rill_loop *l = h_loop_cfg(backend, &cfg);
    if (!disable && !(rill_loop_caps(l) & RILL_CAP_BUF_RING_INC)) {
        rill_loop_destroy(l);
        cr_skip_test("the kernel has no incremental buffer rings (IOU_PBUF_RING_INC, Linux 6.12)");
    }
    if (disable)
        cr_assert_eq(rill_loop_caps(l) & RILL_CAP_BUF_RING_INC, 0, "the switch-off did not work");
    static struct inc_srv s;
    memset(&s, 0, sizeof s);
    struct rill_conn_handler h = {.on_data = inc_data};
    struct rill_listen_config lc = {.handler = &h, .ctx = &s};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    for (int m = 0; m < 200; m++) {
        char msg[64];
        memset(msg, 'a' + m % 26, sizeof msg);
        cr_assert_eq(write(fd, msg, sizeof msg), 64);
        uint64_t end = h_now_ms() + 5000;
        while (s.msgs <= m && h_now_ms() < end)
            rill_loop_run_once(l, 5);
        cr_assert_gt(s.msgs, m, "message %d never arrived", m);
    }
    struct inc_srv out = s;
    for (int i = 0; i < s.nbufs; i++)
        rill_buf_release(s.bufs[i]);
    close(fd);
    rill_loop_destroy(l);
    return out;
}

Test(uring, small_reads_share_ring_buffers_when_incremental, .timeout = 60)
{
    struct inc_srv on = inc_run("uring", 0);
    cr_expect_eq(on.bad, 0, "%d bytes not the ones sent", on.bad);
    cr_expect_eq(on.msgs, 200);
    cr_expect_leq(on.nbufs, 2, "200 messages of 64 B took %d buffers of 16 KiB", on.nbufs);
    cr_expect_gt(on.offset_nonzero, 150, "messages start inside their buffer");
    struct inc_srv off = inc_run("uring", RILL_CAP_BUF_RING_INC);
    cr_expect_eq(off.bad, 0);
    cr_expect_geq(off.nbufs, 190, "without it every message takes a buffer (%d)", off.nbufs);
}
