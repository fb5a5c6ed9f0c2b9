/* Unix stream reads that stop short with bytes still queued, and held data of a connection that
 * another connection's callback resumes: neither may leave bytes undelivered. Both backends;
 * every loop bounded. */
#include <fcntl.h>
#include <sys/un.h>

#include "harness.h"

struct two {
    rill_conn *a, *b;
    char got_b[64];
    size_t n_b;
    int fds_b;
    bool paused_b;
};

static void two_open(rill_conn *c, void *ctx)
{
    struct two *t = ctx;
    if (!t->a)
        t->a = c;
    else if (!t->b)
        t->b = c;
}

static void two_data(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx)
{
    (void)buf;
    struct two *t = ctx;
    if (c == t->b) {
        cr_assert_leq(t->n_b + len, sizeof t->got_b);
        memcpy(t->got_b + t->n_b, data, len);
        t->n_b += len;
    } else if (c == t->a && t->b) {
        cr_assert_eq(rill_read_resume(t->b), 0); /* B's own event may follow in this batch */
    }
}

/* B pauses itself when its descriptor arrives, so the bytes that came with it are held. */
static void two_fds(rill_conn *c, const int *fds, unsigned n, void *ctx)
{
    struct two *t = ctx;
    for (unsigned i = 0; i < n; i++)
        close(fds[i]);
    if (c == t->b) {
        t->fds_b++;
        if (!t->paused_b) {
            t->paused_b = true;
            cr_assert_eq(rill_read_pause(c), 0);
        }
    }
}

static void abstract_uri(char *uri, size_t cap, char *name, size_t ncap, const char *what,
                         const char *backend)
{
    snprintf(name, ncap, "rill_test_%s_%s_%d", what, backend, (int)getpid());
    snprintf(uri, cap, "unix:@%s", name);
}

static int unix_client(const char *name)
{
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    strcpy(un.sun_path + 1, name);
    cr_assert_eq(connect(s, (struct sockaddr *)&un,
                         (socklen_t)(sizeof(sa_family_t) + 1 + strlen(name))),
                 0, "connect: %s", strerror(errno));
    return s;
}

/* Sends bytes with one descriptor (of /dev/null) attached. */
static void send_with_fd(int s, const char *bytes)
{
    int pass = open("/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(pass, 0);
    cr_assert_eq(h_send_fd(s, bytes, strlen(bytes), pass), (ssize_t)strlen(bytes));
    close(pass);
}

/* A listener on an abstract name with handler h counting into t, and two clients connected in
 * turn (A, then B), returned once the server has both connections. */
static void two_setup(rill_loop *l, const char *what, const char *backend,
                      const struct rill_conn_handler *h, struct two *t, int *ca, int *cb)
{
    char uri[128], name[96];
    abstract_uri(uri, sizeof uri, name, sizeof name, what, backend);
    struct rill_listen_config lc = {.handler = h, .ctx = t};
    rill_listener *ls;
    cr_assert_eq(rill_listen(l, uri, &lc, &ls), 0);
    uint64_t end = h_now_ms() + 5000;
    *ca = unix_client(name);
    while (!t->a) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "the server never accepted A");
    }
    *cb = unix_client(name);
    while (!t->b) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "the server never accepted B");
    }
}

static void run_until_b(rill_loop *l, const struct two *t, size_t want)
{
    uint64_t end = h_now_ms() + 5000;
    while (t->n_b < want) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "B got %zu of %zu bytes: '%.*s'", t->n_b, want,
                     (int)t->n_b, t->got_b);
    }
}

/* A Unix stream read stops after the skb that carried descriptors, even to a connection that
 * takes none, with the next bytes already queued: a short read does not prove the socket empty
 * there, and no new readiness edge comes for those bytes. */
H_BACKEND_TEST(unix_reads, bytes_behind_passed_descriptors_are_read, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct two t = {0};
    static const struct rill_conn_handler h = {.on_open = two_open, .on_data = two_data};
    int ca, cb; /* A stays idle here */
    two_setup(l, "fdshort", backend, &h, &t, &ca, &cb);
    send_with_fd(cb, "first");
    cr_assert_eq(write(cb, "second", 6), 6);
    run_until_b(l, &t, 11);
    cr_assert_eq(memcmp(t.got_b, "firstsecond", 11), 0, "got '%.*s'", (int)t.n_b, t.got_b);
    close(ca);
    close(cb);
    rill_loop_destroy(l);
}

/* B's bytes are held while it is paused; A's callback resumes B, and B's own event arrives in the
 * same batch or the next: the held bytes and the new ones all reach B, in order. */
H_BACKEND_TEST(unix_reads, resumed_by_another_callback_gets_held_and_new_bytes, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct two t = {0};
    static const struct rill_conn_handler h = {.on_open = two_open, .on_data = two_data,
                                               .on_fds = two_fds};
    int ca, cb;
    two_setup(l, "resume", backend, &h, &t, &ca, &cb);
    uint64_t end = h_now_ms() + 5000;
    send_with_fd(cb, "first");
    while (!t.fds_b) {
        cr_assert_geq(rill_loop_run_once(l, 10), 0);
        cr_assert_lt(h_now_ms(), end, "B's descriptor never came");
    }
    for (int i = 0; i < 3; i++)
        cr_assert_geq(rill_loop_run_once(l, 0), 0);
    cr_assert_eq(t.n_b, 0, "on_data while paused");
    /* A becomes ready first, then B. */
    cr_assert_eq(write(ca, "x", 1), 1);
    cr_assert_eq(write(cb, "second", 6), 6);
    h_sleep_ms(20);
    run_until_b(l, &t, 11);
    cr_assert_eq(memcmp(t.got_b, "firstsecond", 11), 0, "got '%.*s'", (int)t.n_b, t.got_b);
    close(ca);
    close(cb);
    rill_loop_destroy(l);
}

/* Out-of-band data on a Unix stream (Linux 5.15): a read stops short before it with bytes
 * queued behind; the bytes around it all arrive (the out-of-band byte itself is not part of
 * the stream). Skips where the kernel has no AF_UNIX MSG_OOB. */
H_BACKEND_TEST(unix_reads, bytes_after_out_of_band_data_are_read, .timeout = 30)
{
    rill_loop *l = h_loop(backend);
    struct two t = {0};
    static const struct rill_conn_handler h = {.on_open = two_open, .on_data = two_data};
    int ca, cb;
    two_setup(l, "oob", backend, &h, &t, &ca, &cb);
    cr_assert_eq(write(cb, "first", 5), 5);
    if (send(cb, "X", 1, MSG_OOB) < 0) {
        int e = errno;
        close(ca);
        close(cb);
        rill_loop_destroy(l);
        cr_skip_test("no MSG_OOB on AF_UNIX here: %s", strerror(e));
    }
    cr_assert_eq(write(cb, "second", 6), 6);
    run_until_b(l, &t, 11);
    cr_assert_eq(memcmp(t.got_b, "firstsecond", 11), 0, "got '%.*s'", (int)t.n_b, t.got_b);
    close(ca);
    close(cb);
    rill_loop_destroy(l);
}
