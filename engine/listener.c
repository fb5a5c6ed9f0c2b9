/* Listeners: socket set-up, the accept path shared by backends, and the answer to running out of
 * file descriptors.
 *
 * EMFILE/ENFILE: the pending connection stays in the kernel's backlog, so an edge-triggered or
 * multishot accept that simply retried would spin at 100% CPU without making progress. Like
 * nginx, the listener rests instead: accepting stops, a timer (RILL__EMFILE_RETRY_MS) retries,
 * and a descriptor freed on this loop (a connection closing: rill__loop_fd_freed) retries at the
 * next flush point. Connections that are already open keep being served throughout.
 *
 * The loop knows listeners only through rill__listener_kind (at the bottom). */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "backend.h"
#include "conn.h"
#include "sock.h"
#include "sys.h"

static void listener_retry_fn(struct rill__tnode *t)
{
    rill_listener *ls = rill__container_of(t, rill_listener, retry);
    ls->paused = false;
    ls->loop->ops->listener_start(ls->loop, ls);
}

/* A descriptor was freed: every resting listener tries again now rather than at its timer. */
static void listeners_fd_freed(rill_loop *l)
{
    bool resting = false;
    l->fd_freed = false;
    for (struct rill__list *n = l->listeners.next; n != &l->listeners; n = n->next) {
        rill_listener *ls = rill__container_of(n, rill_listener, link);
        if (ls->paused) {
            rill__wheel_del(&l->wheel, &ls->retry);
            ls->paused = false;
            l->ops->listener_start(l, ls);
            resting |= ls->paused; /* it may rest again at once */
        }
    }
    if (!resting)
        l->fd_waiting &= ~RILL__KIND_BIT(RILL__KIND_LISTENER);
}

void rill__listener_on_accept(rill_listener *ls, int fd)
{
    rill_loop *l = ls->loop;
    rill_conn *c;
    l->stats.accepts++;
    int r = rill__conn_setup_socket(l, fd, ls->addr.ss_family, &ls->opts);
    if (r == 0)
        r = rill__conn_accepted(l, fd, ls->addr.ss_family, ls->socktype, &ls->h, ls->ctx,
                                &ls->opts, &c);
    if (r < 0) {
        /* Over max_conns, or out of memory: the peer sees a reset, the loop carries on. */
        rill__sys_close(&l->stats, fd);
        return;
    }
    rill__conn_opened(c);
}

void rill__listener_rest(rill_listener *ls)
{
    rill_loop *l = ls->loop;
    if (ls->paused || ls->closed)
        return;
    ls->paused = true;
    l->fd_waiting |= RILL__KIND_BIT(RILL__KIND_LISTENER);
    rill__wheel_add_ms(&l->wheel, &ls->retry, l->now_ms + RILL__EMFILE_RETRY_MS);
}

void rill__listener_on_accept_error(rill_listener *ls, int err)
{
    if (err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM) {
        if (err == -EMFILE || err == -ENFILE)
            ls->loop->stats.emfile_events++;
        rill__listener_rest(ls);
    }
    /* Other errors (ECONNABORTED, EPROTO, EPERM from a firewall) concern one connection only. */
}

rill_listener *rill__listener_lookup(rill_loop *l, uint32_t id)
{
    for (struct rill__list *n = l->listeners.next; n != &l->listeners; n = n->next) {
        rill_listener *ls = rill__container_of(n, rill_listener, link);
        if (ls->id == id)
            return ls;
    }
    return NULL;
}

static void listeners_reap(rill_loop *l)
{
    struct rill__list *n;
    while ((n = rill__list_pop_front(&l->dead_listeners)))
        rill__free(rill__container_of(n, rill_listener, link));
}

static int listen_socket(rill_loop *l, const struct rill__addr *a,
                         const struct rill_listen_config *cfg, bool *created)
{
    *created = false;
    int fd = rill__sys_socket(&l->stats, a->family, a->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fd;
    int one = 1, r = 0;
    if (a->family != AF_UNIX) {
        if (!(cfg->flags & RILL_LISTEN_F_NO_REUSEADDR))
            r = rill__sys_setsockopt(&l->stats, fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (r == 0 && (cfg->flags & RILL_LISTEN_F_REUSEPORT))
            r = rill__sys_setsockopt(&l->stats, fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    if (r == 0 && a->family == AF_INET6) {
        /* Set it either way: the system default (net.ipv6.bindv6only) must not decide. */
        int v6only = (cfg->flags & RILL_LISTEN_F_V6ONLY) ? 1 : 0;
        r = rill__sys_setsockopt(&l->stats, fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (r == 0)
        r = rill__sock_bind(&l->stats, fd, a, cfg->flags & RILL_LISTEN_F_UNLINK_STALE, cfg->mode,
                            created);
    if (r == 0)
        r = rill__sys_listen(&l->stats, fd, cfg->backlog > 0 ? cfg->backlog : SOMAXCONN);
    if (r < 0) {
        if (*created)
            rill__sock_unlink(&a->ss, a->len);
        *created = false;
        rill__sys_close(&l->stats, fd);
        return r;
    }
    return fd;
}

int rill_listen(rill_loop *l, const char *uri, const struct rill_listen_config *cfg,
                rill_listener **out)
{
    if (!l || !uri || !cfg || !cfg->handler || !out || cfg->backlog < 0)
        return -EINVAL;
    if (cfg->flags & ~(RILL_LISTEN_F_REUSEPORT | RILL_LISTEN_F_NO_REUSEADDR |
                       RILL_LISTEN_F_V6ONLY | RILL_LISTEN_F_UNLINK_STALE))
        return -EINVAL;
    struct rill_conn_options opts;
    int r = rill__conn_options_resolve(&cfg->conn, &opts);
    if (r < 0)
        return r;
    struct rill__addr a;
    if ((r = rill__addr_from_uri(uri, true, &a)) < 0)
        return r;
    if (a.socktype != SOCK_STREAM && a.socktype != SOCK_SEQPACKET)
        return -EPROTONOSUPPORT; /* datagrams: rill_dgram_open() */
    rill_listener *ls = rill__calloc(1, l->ops->listener_size); /* with the backend's part */
    if (!ls)
        return -ENOMEM;
    bool created;
    int fd = listen_socket(l, &a, cfg, &created);
    if (fd < 0) {
        rill__free(ls);
        return fd;
    }
    ls->loop = l;
    ls->fd = fd;
    ls->flags = cfg->flags;
    ls->unlink_path = created;
    ls->socktype = a.socktype;
    ls->h = *cfg->handler;
    ls->ctx = cfg->ctx;
    ls->opts = opts;
    ls->id = ++l->listener_serial;
    ls->retry.fn = listener_retry_fn;
    ls->addr_len = sizeof ls->addr;
    if (getsockname(fd, (struct sockaddr *)&ls->addr, &ls->addr_len) < 0) {
        ls->addr = a.ss;
        ls->addr_len = a.len;
    }
    rill__list_push_back(&l->listeners, &ls->link);
    if ((r = l->ops->listener_start(l, ls)) < 0) {
        rill__list_del(&ls->link);
        rill__sys_close(&l->stats, fd);
        rill__free(ls);
        return r;
    }
    *out = ls;
    return 0;
}

int rill_listener_addr(const rill_listener *ls, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!ls || !ss || !len)
        return -EINVAL;
    memcpy(ss, &ls->addr, ls->addr_len);
    *len = ls->addr_len;
    return 0;
}

int rill_listener_port(const rill_listener *ls)
{
    return ls ? rill__sock_port(&ls->addr) : 0;
}

int rill_listener_close(rill_listener *ls)
{
    if (!ls || ls->closed)
        return -EINVAL;
    rill_loop *l = ls->loop;
    ls->closed = true;
    rill__wheel_del(&l->wheel, &ls->retry);
    rill__list_del(&ls->link);
    l->ops->listener_close(l, ls);
    /* The engine removes the socket file it created (abstract names have none). */
    if (ls->unlink_path)
        rill__sock_unlink(&ls->addr, ls->addr_len);
    /* Freed at the flush point: an accept loop further up the stack may still hold it. */
    rill__list_push_back(&l->dead_listeners, &ls->link);
    rill__loop_pending(l, RILL__KIND_LISTENER);
    return 0;
}

/* ---- the listener kind: what the loop runs -------------------------------------------------- */

void rill__listeners_close_all(rill_loop *l)
{
    while (!rill__list_empty(&l->listeners))
        rill_listener_close(rill__container_of(l->listeners.next, rill_listener, link));
}

static int listener_kind_init(rill_loop *l)
{
    rill__list_init(&l->listeners);
    rill__list_init(&l->dead_listeners);
    return 0;
}

static void listener_kind_flush(rill_loop *l)
{
    if (l->fd_freed)
        listeners_fd_freed(l);
    listeners_reap(l);
    l->pending &= ~RILL__KIND_BIT(RILL__KIND_LISTENER);
}

static void listener_kind_teardown(rill_loop *l, int status)
{
    (void)status;
    rill__listeners_close_all(l);
    listeners_reap(l);
}

const struct rill__kind_ops rill__listener_kind = {
    .name = "listener",
    .init = listener_kind_init,
    .flush = listener_kind_flush,
    .teardown = listener_kind_teardown,
};
