/* Outbound connections: rill_connect. A numeric address (or a Unix path) is connected at once
 * by the backend (conn_connect). A host name goes through the lookup (resolve.c), then its
 * addresses are tried in order, each in a socket of its own, RFC 8305 style simplified: the
 * next address is tried as soon as one fails, or after DIAL_STAGGER_MS without success while
 * the earlier attempts go on; the first that connects becomes the connection's socket and the
 * others are closed.
 *
 * The attempts are not connections: they are descriptors this file watches through the
 * backend's watch downcall (writable means the handshake ended, SO_ERROR says how). The winner
 * is handed to the backend like an accepted socket (conn_start), through rill__conn_dialed().
 *
 * Lifetime: the dial belongs to its connection (c->dial) from rill_connect until the winner is
 * handed over or the connection closes (rill__dial_cancel, from conn_begin_close), whichever
 * is first; both free it, and every watch is stopped before its descriptor is closed. */
#include "conn.h"

#include <errno.h>
#include <string.h>

#include "addr.h"
#include "backend.h"
#include "resolve.h"
#include "sys.h"

#define DIAL_STAGGER_MS 250u /* RFC 8305's recommended connection attempt delay */

struct dial_try {
    struct rill__watch w;    /* fd -1: not running */
    struct rill__dial *d;
    int family;
};

struct rill__dial {
    rill_conn *c;
    struct rill__resolve_wait rw;
    struct rill__tnode stagger;
    struct rill__addr addr[RILL__RESOLVE_MAX];
    struct dial_try tries[RILL__RESOLVE_MAX];
    int naddr, next, running;
    int last_err;
};

static void try_stop(rill_loop *l, struct dial_try *t, bool close_fd)
{
    if (t->w.fd < 0)
        return;
    l->ops->watch(l, &t->w, 0);
    rill__watch_unregister(l, &t->w);
    if (close_fd)
        rill__sys_close(&l->stats, t->w.fd);
    t->w.fd = -1;
    t->d->running--;
}

static void dial_free(rill_conn *c)
{
    struct rill__dial *d = c->dial;
    rill_loop *l = c->loop;
    for (int i = 0; i < d->naddr; i++)
        try_stop(l, &d->tries[i], true);
    rill__resolve_cancel(&d->rw);
    rill__wheel_del(&l->wheel, &d->stagger);
    c->dial = NULL;
    rill__free(d);
}

void rill__dial_cancel(rill_conn *c)
{
    if (c->dial)
        dial_free(c);
}

static void try_ready(struct rill__watch *w, uint32_t bits);

/* Starts one attempt: a non-blocking socket, connect(2), a watch for writability. Returns 0
 * when it runs, or the error that ended it at once. */
static int try_start(struct rill__dial *d, int i)
{
    rill_conn *c = d->c;
    rill_loop *l = c->loop;
    const struct rill__addr *a = &d->addr[i];
    struct dial_try *t = &d->tries[i];
    int fd = rill__sys_socket(&l->stats, a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    int r = rill__conn_setup_socket(l, fd, a->family, &c->opts);
    if (r == 0) {
        r = rill__sys_connect(&l->stats, fd, (const struct sockaddr *)&a->ss, a->len);
        r = (r == -EINPROGRESS) ? 0 : r; /* 0 too: loopback may finish inside connect */
    }
    if (r == 0 && (r = rill__watch_register(l, &t->w)) == 0) {
        t->w.fd = fd;
        t->w.fn = try_ready;
        t->d = d;
        t->family = a->family;
        d->running++;
        if ((r = l->ops->watch(l, &t->w, RILL__WATCH_OUT)) < 0) {
            try_stop(l, t, false);
            t->w.fd = -1;
        }
    }
    if (r < 0)
        rill__sys_close(&l->stats, fd);
    return r;
}

/* Starts the next address that will run (skipping those that fail at once); with none left
 * and nothing running, the connection fails with the last error. Then the stagger timer. */
static void dial_next(struct rill__dial *d)
{
    rill_conn *c = d->c;
    rill_loop *l = c->loop;
    bool started = false;
    while (!started && d->next < d->naddr) {
        int r = try_start(d, d->next++);
        if (r < 0)
            d->last_err = r;
        else
            started = true;
    }
    rill__wheel_del(&l->wheel, &d->stagger);
    if (d->running == 0) {
        int err = d->last_err ? d->last_err : -ECONNREFUSED;
        dial_free(c);
        rill__conn_fail(c, err);
        return;
    }
    if (d->next < d->naddr)
        rill__wheel_add_ms(&l->wheel, &d->stagger, rill__loop_clock(l) + DIAL_STAGGER_MS);
}

static void dial_stagger_fn(struct rill__tnode *n)
{
    dial_next(rill__container_of(n, struct rill__dial, stagger));
}

static void try_ready(struct rill__watch *w, uint32_t bits)
{
    struct dial_try *t = rill__container_of(w, struct dial_try, w);
    struct rill__dial *d = t->d;
    rill_conn *c = d->c;
    rill_loop *l = c->loop;
    if (!(bits & (RILL__WATCH_OUT | RILL__WATCH_ERR)))
        return;
    int err = 0;
    socklen_t len = sizeof err;
    int r = rill__sys_getsockopt(&l->stats, w->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (r == 0 && err == 0) {
        int fd = w->fd, family = t->family;
        try_stop(l, t, false); /* the winner's descriptor stays open */
        dial_free(c);
        rill__conn_dialed(c, fd, family);
        return;
    }
    d->last_err = r < 0 ? r : -err;
    try_stop(l, t, true);
    dial_next(d); /* at once: a failure does not wait for the stagger */
}

static void dial_resolved(struct rill__resolve_wait *w, int status, const struct rill__addr *a,
                          int n)
{
    struct rill__dial *d = rill__container_of(w, struct rill__dial, rw);
    if (status < 0) {
        rill_conn *c = d->c;
        dial_free(c);
        rill__conn_fail(c, status);
        return;
    }
    memcpy(d->addr, a, (size_t)n * sizeof *a);
    d->naddr = n;
    dial_next(d);
}

int rill__dial_start(rill_conn *c, const char *host, uint16_t port)
{
    struct rill__dial *d = rill__calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    d->c = c;
    d->stagger.fn = dial_stagger_fn;
    d->rw.fn = dial_resolved;
    d->rw.port = port;
    d->rw.socktype = SOCK_STREAM;
    for (int i = 0; i < RILL__RESOLVE_MAX; i++)
        d->tries[i].w.fd = -1;
    c->dial = d;
    int n = rill__resolve(c->loop, host, &d->rw, d->addr, RILL__RESOLVE_MAX);
    if (n < 0) {
        dial_free(c);
        return n;
    }
    if (n > 0) { /* from the cache */
        d->naddr = n;
        dial_next(d);
    }
    return 0;
}

/* ---- rill_connect --------------------------------------------------------------------------- */

/* A host name: the connection starts with no descriptor; the lookup and the attempts
 * (conn_dial.c) give it one, or fail it through on_close. The timer bounds the whole. */
static int connect_name(rill_loop *l, rill_conn *c, const struct rill__uri *u,
                        const struct rill_connect_config *cfg)
{
    if (cfg->timeout_ms)
        rill__wheel_add_ms(&l->wheel, &c->timer, rill__loop_clock(l) + cfg->timeout_ms);
    int r = rill__dial_start(c, u->host, u->port);
    if (r < 0)
        rill__conn_fail(c, r);
    return 0;
}

static int connect_addr(rill_loop *l, rill_conn *c, const struct rill__addr *a,
                        const struct rill_connect_config *cfg)
{
    int fd = rill__sys_socket(&l->stats, a->family, a->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    int r = rill__conn_setup_socket(l, fd, a->family, &c->opts);
    if (r < 0) {
        rill__sys_close(&l->stats, fd);
        return r;
    }
    c->fd = fd;
    rill__conn_set_kind(c, a->family, a->socktype);
    if (cfg->timeout_ms && !l->ops->links_connect_timeout)
        rill__wheel_add_ms(&l->wheel, &c->timer, rill__loop_clock(l) + cfg->timeout_ms);
    r = l->ops->conn_connect(l, c, (const struct sockaddr *)&a->ss, a->len, cfg->timeout_ms);
    if (r < 0) /* reported through on_close, like a refusal that arrives later */
        rill__conn_fail(c, r);
    return 0;
}

int rill_connect(rill_loop *l, const char *uri, const struct rill_connect_config *cfg,
                 rill_conn **out)
{
    if (!l || !uri || !cfg || !cfg->handler || !out)
        return -EINVAL;
    struct rill_conn_options opts;
    int r = rill__conn_options_resolve(&cfg->conn, &opts);
    if (r < 0)
        return r;
    struct rill__uri u;
    struct rill__addr a;
    if ((r = rill__uri_parse(uri, &u)) < 0)
        return r;
    bool name = rill__uri_needs_lookup(&u);
    if (!name && (r = rill__uri_resolve(&u, false, &a, 1)) < 0)
        return r;
    int socktype = name ? (u.scheme == RILL__SCHEME_TCP ? SOCK_STREAM : SOCK_DGRAM) : a.socktype;
    if (socktype != SOCK_STREAM && socktype != SOCK_SEQPACKET)
        return -EPROTONOSUPPORT; /* datagrams: rill_dgram_open() */
    rill_conn *c;
    if ((r = rill__conn_alloc(l, &c)) < 0)
        return r;
    c->h = *cfg->handler;
    c->ctx = cfg->ctx;
    c->opts = opts;
    c->state = RILL__C_CONNECTING;
    c->timer.fn = rill__conn_timer_fn;
    if (name) {
        rill__conn_set_kind(c, AF_INET, SOCK_STREAM); /* the family is the winner's, later */
        r = connect_name(l, c, &u, cfg);
    } else {
        r = connect_addr(l, c, &a, cfg);
    }
    if (r < 0) {
        rill__conn_release_slot(c);
        return r;
    }
    *out = c;
    return 0;
}

void rill__conn_dialed(rill_conn *c, int fd, int family)
{
    rill_loop *l = c->loop;
    c->fd = fd;
    rill__conn_set_kind(c, family, SOCK_STREAM);
    /* Started like an accepted socket: CONNECTING goes first, so that the backend arms the
     * receive, and it is counted as a connect here. */
    c->state &= ~RILL__C_CONNECTING;
    l->stats.connects++;
    int r = l->ops->conn_start(l, c);
    if (r < 0) {
        rill__conn_fail(c, r);
        return;
    }
    rill__conn_opened(c);
}
