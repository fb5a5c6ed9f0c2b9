/* The io_uring backend's read pause/resume ordering, run on both backends so that epoll is held
 * to the same contract: data and EOF held until resume, receiving stopped while paused, storms
 * of pause and resume (deferred and on a timer), and close while paused.
 *
 * Server and clients share one loop where they can; plain blocking sockets play the peer when a
 * test needs a peer that misbehaves on purpose (never reads, reads late, half-closes). */
#include <fcntl.h>

#include "uring_util.h"

struct pr {
    rill_conn *c;
    bool paused;
    int on_data_while_paused, eof_while_paused, eofs, closes;
    bool eof_before_all;
    size_t got, want_total, pause_at;
    uint64_t seed;
    bool mismatch;
    int resume_mode; /* 0: the test resumes; 1: deferred right away; 2: on a 1 ms timer */
    rill_timer *t;
    int pauses;
};

static void pr_resume_now(struct pr *p)
{
    p->paused = false;
    cr_assert_eq(rill_read_resume(p->c), 0);
}

static void pr_defer(rill_loop *l, void *arg)
{
    (void)l;
    struct pr *p = arg;
    if (p->paused && p->c)
        pr_resume_now(p);
}

static void pr_timer(rill_timer *t, void *ctx)
{
    (void)t;
    pr_defer(NULL, ctx);
}

static void pr_open(rill_conn *c, void *ctx)
{
    struct pr *p = ctx;
    p->c = c;
    if (p->pause_at == 0) {
        cr_assert_eq(rill_read_pause(c), 0);
        cr_assert_eq(rill_read_pause(c), 0, "pausing twice is harmless");
        p->paused = true;
    }
}

static void pr_data(rill_conn *c, rill_buf *b, const void *d, size_t len, void *ctx)
{
    (void)b;
    struct pr *p = ctx;
    if (p->paused)
        p->on_data_while_paused++;
    const uint8_t *q = d;
    for (size_t i = 0; i < len && !p->mismatch; i++)
        if (q[i] != h_pattern(p->seed, p->got + i))
            p->mismatch = true;
    p->got += len;
    if (p->resume_mode && !p->paused) {
        /* Pause after every delivery and resume almost at once: completions of the cancelled
         * receive race the resume, which must not reorder anything. */
        cr_assert_eq(rill_read_pause(c), 0);
        p->paused = true;
        p->pauses++;
        if (p->resume_mode == 1)
            cr_assert_eq(rill_loop_defer(rill_conn_loop(c), pr_defer, p), 0);
        else
            rill_timer_start(p->t, 1, 0);
    } else if (p->pause_at && p->got >= p->pause_at && !p->paused) {
        cr_assert_eq(rill_read_pause(c), 0);
        p->paused = true;
        p->pause_at = 0;
    }
}

static void pr_eof(rill_conn *c, void *ctx)
{
    (void)c;
    struct pr *p = ctx;
    if (p->paused)
        p->eof_while_paused++;
    if (p->got != p->want_total)
        p->eof_before_all = true;
    p->eofs++;
}

static void pr_close(rill_conn *c, int status, void *ctx)
{
    (void)c;
    (void)status;
    struct pr *p = ctx;
    p->closes++;
    p->c = NULL;
}

static const struct rill_conn_handler pr_h = {
    .on_open = pr_open, .on_data = pr_data, .on_eof = pr_eof, .on_close = pr_close};

/* Writes `n` pattern bytes from offset *off on a blocking socket. */
static void peer_write(int fd, uint64_t seed, size_t *off, size_t n)
{
    uint8_t buf[16384];
    while (n > 0) {
        size_t m = n < sizeof buf ? n : sizeof buf;
        h_fill(buf, m, seed, *off);
        cr_assert_eq(write(fd, buf, m), (ssize_t)m);
        *off += m;
        n -= m;
    }
}

H_BACKEND_TEST(uring, read_pause_holds_data_and_eof_until_resume, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct pr p = {.seed = 42, .pause_at = 0, .want_total = 300000};
    rill_listener *ls = listen_on(l, &pr_h, &p);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    uint64_t end = h_now_ms() + 5000;
    while (!p.c) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        cr_assert_lt(h_now_ms(), end, "accept");
    }
    /* 1: paused from on_open, data arrives, nothing is delivered until resume. */
    size_t off = 0;
    peer_write(fd, p.seed, &off, 100000);
    h_run_for(l, 100);
    cr_expect_eq(p.got, 0, "%zu bytes delivered while paused", p.got);
    cr_expect_eq(p.on_data_while_paused, 0);
    pr_resume_now(&p);
    end = h_now_ms() + 5000;
    while (p.got < off) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu after resume", p.got, off);
    }
    /* 2: paused from inside on_data mid-stream; the rest and the FIN arrive while paused. */
    p.pause_at = p.got + 1;
    peer_write(fd, p.seed, &off, 50000);
    end = h_now_ms() + 5000;
    while (!p.paused) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        cr_assert_lt(h_now_ms(), end, "pause in on_data");
    }
    size_t at_pause = p.got;
    peer_write(fd, p.seed, &off, 150000);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    h_run_for(l, 100);
    cr_expect_eq(p.got, at_pause, "bytes delivered while paused: %zu", p.got - at_pause);
    cr_expect_eq(p.eofs, 0, "on_eof while paused");
    cr_expect_eq(p.on_data_while_paused, 0, "%s: %d on_data calls while paused", backend,
                 p.on_data_while_paused);
    pr_resume_now(&p);
    bool eof = false;
    end = h_now_ms() + 5000;
    while (!eof) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        eof = p.eofs > 0;
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu, no eof", p.got, off);
    }
    cr_expect_eq(p.got, off);
    cr_expect_eq(off, p.want_total);
    cr_expect(!p.mismatch, "bytes out of order or corrupted");
    cr_expect(!p.eof_before_all, "on_eof came before the data held while paused");
    cr_expect_eq(p.on_data_while_paused + p.eof_while_paused, 0, "%s", backend);
    close(fd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(uring, read_pause_stops_receiving, .timeout = 30)
{
    /* While paused the engine must stop taking data from the kernel (TCP flow control slows
     * the peer), not keep receiving into buffers it holds back. */
    rill_loop *l = h_loop(backend);
    struct pr p = {.seed = 9, .pause_at = 1};
    rill_listener *ls = listen_on(l, &pr_h, &p);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    size_t off = 0;
    uint8_t buf[65536];
    uint64_t end = h_now_ms() + 300;
    /* The peer writes as fast as the socket takes it for 300 ms, reading is paused after the
     * first delivery. */
    while (h_now_ms() < end) {
        h_fill(buf, sizeof buf, p.seed, off);
        ssize_t w = write(fd, buf, sizeof buf);
        if (w > 0)
            off += (size_t)w;
        cr_assert_geq(rill_loop_run_once(l, 0), 0);
    }
    cr_assert(p.paused, "never paused");
    struct rill_loop_stats st = stats_of(l);
    size_t held = (size_t)st.bufs_in_use * 16384u;
    cr_log_info("%s: %zu bytes written, %zu delivered, %llu buffers held while paused", backend,
                off, p.got, (unsigned long long)st.bufs_in_use);
    cr_expect_leq(st.bufs_in_use, 64,
                  "%llu buffers (%zu bytes) held for a paused connection: receiving went on",
                  (unsigned long long)st.bufs_in_use, held);
    cr_expect_eq(p.on_data_while_paused, 0, "%s: %d on_data calls while paused", backend,
                 p.on_data_while_paused);
    size_t at_pause = p.got;
    pr_resume_now(&p);
    /* Drain: write the rest, then everything arrives in order. */
    end = h_now_ms() + 10000;
    while (p.got < off) {
        cr_assert_geq(rill_loop_run_once(l, 1), 0);
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu", p.got, off);
    }
    cr_expect_gt(p.got, at_pause);
    cr_expect(!p.mismatch, "bytes out of order or corrupted");
    close(fd);
    rill_loop_destroy(l);
}

static void run_pause_storm(const char *backend, int resume_mode)
{
    rill_loop *l = h_loop(backend);
    struct pr p = {.seed = 77, .resume_mode = resume_mode};
    p.pause_at = 1; /* on_open does not pause */
    rill_listener *ls = listen_on(l, &pr_h, &p);
    cr_assert_eq(rill_timer_create(l, pr_timer, &p, &p.t), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    const size_t total = 8u * MiB;
    p.want_total = total;
    size_t off = 0;
    uint8_t buf[32768];
    uint64_t end = h_now_ms() + 60000;
    while (p.eofs == 0) {
        if (off < total) {
            size_t m = total - off < sizeof buf ? total - off : sizeof buf;
            h_fill(buf, m, p.seed, off);
            ssize_t w = write(fd, buf, m);
            if (w > 0)
                off += (size_t)w;
            if (off == total)
                shutdown(fd, SHUT_WR);
        }
        cr_assert_geq(rill_loop_run_once(l, 0), 0);
        cr_assert_lt(h_now_ms(), end, "got %zu of %zu (sent %zu)", p.got, total, off);
        if (p.mismatch)
            break;
    }
    cr_expect(!p.mismatch, "bytes out of order or corrupted near offset %zu", p.got);
    cr_expect_eq(p.got, total);
    cr_expect(!p.eof_before_all);
    cr_expect_eq(p.on_data_while_paused, 0, "%s: %d on_data calls while paused", backend,
                 p.on_data_while_paused);
    cr_expect_eq(p.eof_while_paused, 0);
    cr_expect_gt(p.pauses, 10);
    rill_timer_destroy(p.t);
    close(fd);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(uring, read_pause_resume_storm_deferred, .timeout = 90)
{
    run_pause_storm(backend, 1);
}

H_BACKEND_TEST(uring, read_pause_resume_storm_timer, .timeout = 90)
{
    run_pause_storm(backend, 2);
}

H_BACKEND_TEST(uring, close_while_paused_frees_held_data, .timeout = 30)
{
    /* Data (and the FIN) that arrived while paused is dropped by a close: no on_data, no
     * on_eof, on_close once, and every buffer goes back. */
    rill_loop *l = h_loop(backend);
    struct pr p = {.seed = 5, .pause_at = 1};
    rill_listener *ls = listen_on(l, &pr_h, &p);
    int fds = h_count_fds();
    int fd = h_client(AF_INET, rill_listener_port(ls));
    size_t off = 0;
    peer_write(fd, p.seed, &off, 200000);
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    uint64_t end = h_now_ms() + 5000;
    while (!p.paused) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        cr_assert_lt(h_now_ms(), end, "pause in on_data");
    }
    h_run_for(l, 50);
    size_t at_pause = p.got;
    cr_assert_not_null(p.c);
    cr_assert_eq(rill_close(p.c), 0);
    h_run_for(l, 50);
    close(fd);
    settle(l, fds, 5000);
    cr_expect_eq(p.got, at_pause, "%s: data delivered after pause and close", backend);
    cr_expect_eq(p.on_data_while_paused, 0, "%s", backend);
    cr_expect_eq(p.eofs, 0);
    cr_expect_eq(p.closes, 1);
    cr_expect_eq(stats_of(l).bufs_in_use, 0, "held buffers leaked: %llu",
                 (unsigned long long)stats_of(l).bufs_in_use);
    rill_loop_destroy(l);
}
