/* Resource limits: running out of file descriptors at accept, a peer that never reads, and the
 * loop's memory ceiling against many of them.
 *
 * The EMFILE test runs the server in a forked child with a low RLIMIT_NOFILE and floods it with
 * more connections than it can hold. The server must keep serving the connections it has, rest
 * instead of spinning while starved (its CPU time is read from /proc), and accept the waiting
 * connections once descriptors free up. */
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "harness.h"

static void echo_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)ctx;
    struct rill_bufslice s = {buf, (uint32_t)((const char *)data - (char *)rill_buf_data(buf)),
                              (uint32_t)len};
    if (rill_send_bufs(c, &s, 1, NULL, NULL) < 0)
        rill_close(c);
    else if (rill_conn_write_queued(c) >= (256u << 10))
        rill_read_pause(c);
}

static void echo_drain(rill_conn *c, void *ctx)
{
    (void)ctx;
    rill_read_resume(c);
}

static const struct rill_conn_handler echo_h = {.on_data = echo_data, .on_drain = echo_drain};

/* The child: serve until the control pipe closes, then report the loop's stats and exit. */
static void emfile_child(const char *backend, int report_fd, int ctl_fd)
{
    struct rlimit rl = {48, 48};
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        _exit(10);
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.backend = strcmp(backend, "uring") == 0 ? RILL_BACKEND_URING : RILL_BACKEND_EPOLL;
    rill_loop *l;
    if (rill_loop_create(&cfg, &l) < 0)
        _exit(11);
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &echo_h, .backlog = 1024};
    if (rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls) < 0)
        _exit(12);
    int port = rill_listener_port(ls);
    if (write(report_fd, &port, sizeof port) != sizeof port)
        _exit(13);
    uint64_t end = h_now_ms() + 60000;
    for (;;) {
        struct pollfd p = {.fd = ctl_fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1 || h_now_ms() > end)
            break;
        if (rill_loop_run_once(l, 20) < 0)
            _exit(14);
    }
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    if (write(report_fd, &st, sizeof st) != sizeof st)
        _exit(15);
    rill_loop_destroy(l);
    _exit(0);
}

/* utime + stime of a process, in milliseconds. */
static long proc_cpu_ms(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    cr_assert(p);
    unsigned long ut = 0, st = 0;
    /* After ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    cr_assert_eq(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st), 2);
    return (long)((ut + st) * 1000 / (unsigned long)sysconf(_SC_CLK_TCK));
}

enum { N_CLIENTS = 120 };

/* Polls every unserved client for its echo byte for up to ms; returns how many are served. */
static int collect_echoes(const int *fd, bool *served, int ms)
{
    uint64_t end = h_now_ms() + (uint64_t)ms;
    int total = 0;
    do {
        total = 0;
        for (int i = 0; i < N_CLIENTS; i++) {
            if (!served[i] && h_readable(fd[i], 0)) {
                char c;
                cr_assert_eq(read(fd[i], &c, 1), 1, "client %d: echo expected", i);
                cr_assert_eq(c, 'a' + i % 26);
                served[i] = true;
            }
            total += served[i];
        }
        if (total < N_CLIENTS)
            usleep(5000);
    } while (total < N_CLIENTS && h_now_ms() < end);
    return total;
}

H_BACKEND_TEST(limits, emfile_flood_recovers, .timeout = 90)
{
    rill_loop_destroy(h_loop(backend)); /* skips when the backend cannot run here */
    int report[2], ctl[2];
    cr_assert_eq(pipe(report), 0);
    cr_assert_eq(pipe(ctl), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(report[0]);
        close(ctl[1]);
        emfile_child(backend, report[1], ctl[0]);
    }
    close(report[1]);
    close(ctl[0]);
    int port;
    cr_assert_eq(read(report[0], &port, sizeof port), (ssize_t)sizeof port, "child failed to listen");

    int fd[N_CLIENTS];
    bool served[N_CLIENTS] = {0};
    for (int i = 0; i < N_CLIENTS; i++) {
        fd[i] = h_client(AF_INET, port); /* completes in the kernel's backlog */
        char c = (char)('a' + i % 26);
        cr_assert_eq(write(fd[i], &c, 1), 1);
    }
    int first = collect_echoes(fd, served, 2000);
    cr_expect_gt(first, 10, "the server must serve what its descriptors allow (%d)", first);
    cr_expect_lt(first, N_CLIENTS, "the limit must really bite (%d served)", first);

    /* Starved: connections wait in the backlog. The server must rest, not spin. */
    long cpu0 = proc_cpu_ms(pid);
    usleep(1500 * 1000);
    long starved_cpu = proc_cpu_ms(pid) - cpu0;
    cr_expect_lt(starved_cpu, 300, "server used %ld ms of CPU in 1.5 s while starved", starved_cpu);

    /* Served connections keep working while others wait. */
    for (int i = 0; i < N_CLIENTS; i++) {
        if (!served[i])
            continue;
        cr_assert_eq(write(fd[i], "z", 1), 1);
        cr_assert(h_readable(fd[i], 5000), "served client %d must still be echoed", i);
        char c;
        cr_assert_eq(read(fd[i], &c, 1), 1);
        cr_assert_eq(c, 'z');
    }

    /* Free descriptors by closing the served clients, round after round, until all are served. */
    bool closed[N_CLIENTS] = {0};
    int total = first;
    uint64_t end = h_now_ms() + 30000;
    while (total < N_CLIENTS && h_now_ms() < end) {
        for (int i = 0; i < N_CLIENTS; i++)
            if (served[i] && !closed[i]) {
                close(fd[i]);
                closed[i] = true;
            }
        total = collect_echoes(fd, served, 1000);
    }
    cr_expect_eq(total, N_CLIENTS, "every waiting connection is accepted eventually (%d)", total);
    for (int i = 0; i < N_CLIENTS; i++)
        if (!closed[i])
            close(fd[i]);

    close(ctl[1]); /* tells the child to stop */
    struct rill_loop_stats st;
    cr_assert_eq(read(report[0], &st, sizeof st), (ssize_t)sizeof st);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    cr_expect_gt(st.emfile_events, 0);
    cr_expect_eq(st.accepts, (uint64_t)N_CLIENTS);
    close(report[0]);
}

/* A client that sends and never reads: the echo server stops reading from it once its write
 * queue passes the high-water mark, so memory stays bounded however long the client floods. */
H_BACKEND_TEST(limits, flooding_peer_that_never_reads, .timeout = 60)
{
    rill_loop *l = h_loop(backend);
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &echo_h};
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    int fd = h_client(AF_INET, rill_listener_port(ls));
    cr_assert_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
    static char chunk[65536];
    size_t sent = 0;
    uint64_t end = h_now_ms() + 3000;
    while (h_now_ms() < end) {
        ssize_t w = write(fd, chunk, sizeof chunk);
        if (w > 0)
            sent += (size_t)w;
        rill_loop_run_once(l, 1);
    }
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    cr_expect_gt(sent, 1u << 20, "the client must have pushed a lot (%zu)", sent);
    /* The server holds at most its high-water mark plus one read's worth of buffers. */
    uint64_t held = st.bufs_in_use * 16384;
    cr_expect_leq(held, (256u << 10) + 2 * 16384 + 16384, "server holds %llu bytes",
                  (unsigned long long)held);
    cr_expect_lt(st.bytes_in, sent + 1);
    close(fd);
    rill_loop_destroy(l);
}

/* ---- the memory ceiling ---------------------------------------------------------------------- */

enum { N_STALL = 16 };

/* Pushes 64 KiB into each live flooder that has room; returns how many are still open. */
static int flood_round(int *fd, int n)
{
    static char chunk[65536];
    int open = 0;
    for (int i = 0; i < n; i++) {
        if (fd[i] < 0)
            continue;
        ssize_t w = send(fd[i], chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) {
            close(fd[i]); /* the server closed it: reset or broken pipe */
            fd[i] = -1;
            continue;
        }
        open++;
    }
    return open;
}

/* A client with a small receive buffer, so that the kernel holds little for a peer that never
 * reads and the server's queue fills soon. */
static int small_client(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    int small = 16 << 10;
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

/* An echo server for the flooders: a loop with this slab budget and memory ceiling, a 400 ms
 * grace period and 4 KiB receives; the echo pauses a connection at 256 KiB queued (on_drain
 * resumes it below 64 KiB), and accepted sockets get a small send buffer (inherited from the
 * listener), so that the server's queues fill soon. */
static rill_loop *flood_server(const char *backend, size_t budget, size_t ceiling, int *port)
{
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.slab_budget = budget;
    cfg.recv_buf_size = 4096;
    cfg.mem_ceiling = ceiling;
    cfg.mem_grace_ms = 400;
    rill_loop *l = h_loop_cfg(backend, &cfg);
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = &echo_h,
                                    .conn = {.wq_high = 256u << 10, .wq_low = 64u << 10}};
    cr_assert_eq(rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls), 0);
    cr_assert_eq(rill_listener_setopt(ls, RILL_OPT_SNDBUF, 16 << 10), 0);
    *port = rill_listener_port(ls);
    return l;
}

H_BACKEND_TEST(limits, memory_ceiling_pauses_then_closes_the_stalled, .timeout = 60)
{
    /* 16 peers that send and never read want 16 x 256 KiB of write queue (the echo pauses each
     * at 256 KiB); the loop's ceiling is 2 MiB. Reading must pause for everyone at the ceiling,
     * and after the grace period the stalled connections are closed, so that a well-behaved
     * client that arrives meanwhile is served. */
    int port;
    rill_loop *l = flood_server(backend, 16u << 20, 2u << 20, &port);
    int fd[N_STALL];
    for (int i = 0; i < N_STALL; i++)
        fd[i] = small_client(port);

    struct rill_loop_stats st;
    uint64_t held_max = 0, end = h_now_ms() + 10000;
    do {
        flood_round(fd, N_STALL);
        rill_loop_run_once(l, 1);
        rill_loop_stats(l, &st);
        if (st.mem_held > held_max)
            held_max = st.mem_held;
    } while (st.mem_pauses == 0 && h_now_ms() < end);
    cr_assert_gt(st.mem_pauses, 0, "the ceiling was never reached (held %llu)",
                 (unsigned long long)st.mem_held);
    cr_expect_eq(st.mem_ceiling, 2u << 20);
    cr_expect_eq(st.mem_closes, 0, "closed before the grace period");

    /* A client that reads arrives while reading is paused. */
    int good = h_client(AF_INET, port);
    cr_assert_eq(write(good, "ping", 4), 4);
    uint64_t t0 = h_now_ms();
    char echo[4];
    size_t got = 0;
    end = t0 + 15000;
    while (got < 4 && h_now_ms() < end) {
        flood_round(fd, N_STALL);
        rill_loop_run_once(l, 1);
        rill_loop_stats(l, &st);
        if (st.mem_held > held_max)
            held_max = st.mem_held;
        ssize_t r = recv(good, echo + got, 4 - got, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
    }
    cr_assert_eq(got, 4, "the well-behaved client was never served (closes %llu, held %llu)",
                 (unsigned long long)st.mem_closes, (unsigned long long)st.mem_held);
    cr_expect_eq(memcmp(echo, "ping", 4), 0);
    /* It may have been served in a moment when the flooders' socket buffers still took bytes
     * and the ceiling was left; once they are full the ceiling holds, and the grace period
     * ends in closes. */
    end = h_now_ms() + 4000;
    int open = N_STALL;
    while (h_now_ms() < end) {
        open = flood_round(fd, N_STALL);
        rill_loop_run_once(l, 1);
        rill_loop_stats(l, &st);
        if (st.mem_held > held_max)
            held_max = st.mem_held;
    }
    /* Each grace period closes the stalled longest and the rest fill their queues again, until
     * those left fit under the ceiling (8 at 256 KiB each, fewer with the bytes in flight); the
     * client that reads is never one of them. */
    cr_expect_geq(st.mem_closes, N_STALL - 8, "%s: %llu closes, %llu pauses, held %llu (max %llu)", backend,
                  (unsigned long long)st.mem_closes, (unsigned long long)st.mem_pauses,
                  (unsigned long long)st.mem_held, (unsigned long long)held_max);
    cr_expect_eq(open, N_STALL - (int)st.mem_closes, "%d flooders open after %llu closes", open,
                 (unsigned long long)st.mem_closes);
    cr_expect_lt(st.mem_held, 2u << 20, "held %llu", (unsigned long long)st.mem_held);
    cr_assert_eq(write(good, "pong", 4), 4);
    got = 0;
    end = h_now_ms() + 5000;
    while (got < 4 && h_now_ms() < end) {
        rill_loop_run_once(l, 1);
        ssize_t r = recv(good, echo + got, 4 - got, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
    }
    cr_expect_eq(got, 4, "the client that reads must still be served");
    cr_expect_lt(st.mem_closes, N_STALL + 1);
    /* What was on its way when the ceiling was reached may still land: on epoll one read per
     * connection at most, on io_uring also the buffers already lent to the kernel's ring (at
     * most half the slab budget in receive-size buffers, capped at 512: 2 MiB here). */
    uint64_t slack = rill_loop_caps(l) & RILL_CAP_PROVIDED_BUFFERS ? (2u << 20) + (256u << 10)
                                                           : (256u << 10) * N_STALL;
    cr_expect_leq(held_max, (2u << 20) + slack, "held %llu at most",
                  (unsigned long long)held_max);
    for (int i = 0; i < N_STALL; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    close(good);
    rill_loop_destroy(l);
}

H_BACKEND_TEST(limits, spent_slab_budget_closes_the_stalled, .timeout = 60)
{
    /* No ceiling, a 2 MiB slab budget: the flooders' queues spend the budget, so reads find no
     * buffer; when no byte has been read for a whole grace period, the connections stalled
     * longest are closed and a client that reads is served again. */
    int port;
    rill_loop *l = flood_server(backend, 2u << 20, SIZE_MAX, &port);
    int fd[N_STALL];
    for (int i = 0; i < N_STALL; i++)
        fd[i] = small_client(port);
    /* Flood until reading has stopped: the budget spent and no byte read for 200 ms. */
    struct rill_loop_stats st;
    uint64_t end = h_now_ms() + 10000, in = 0, still_since = h_now_ms();
    do {
        flood_round(fd, N_STALL);
        rill_loop_run_once(l, 1);
        rill_loop_stats(l, &st);
        if (st.bytes_in != in || st.buf_exhausted == 0) {
            in = st.bytes_in;
            still_since = h_now_ms();
        }
    } while (h_now_ms() - still_since < 200 && h_now_ms() < end);
    cr_assert_gt(st.buf_exhausted, 0, "%s: the budget was never spent", backend);
    cr_assert_geq(h_now_ms() - still_since, 200, "%s: reading never stopped", backend);
    cr_expect_eq(st.mem_ceiling, UINT64_MAX);
    int good = h_client(AF_INET, port);
    cr_assert_eq(write(good, "ping", 4), 4);
    char echo[4];
    size_t got = 0;
    end = h_now_ms() + 15000;
    while (got < 4 && h_now_ms() < end) {
        flood_round(fd, N_STALL);
        rill_loop_run_once(l, 1);
        ssize_t r = recv(good, echo + got, 4 - got, MSG_DONTWAIT);
        if (r > 0)
            got += (size_t)r;
    }
    rill_loop_stats(l, &st);
    cr_assert_eq(got, 4, "%s: the well-behaved client was never served (closes %llu)", backend,
                 (unsigned long long)st.mem_closes);
    cr_expect_eq(memcmp(echo, "ping", 4), 0);
    cr_expect_gt(st.mem_closes, 0, "%s: served without closing anyone", backend);
    for (int i = 0; i < N_STALL; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    close(good);
    rill_loop_destroy(l);
}
