/* Datagram sockets: UDP over IPv4 and IPv6, Unix datagram sockets, raw and ping ICMP sockets.
 *
 * Life of a send: rill_dgram_sendto copies the iovecs and the address into one allocation (a
 * struct rill__dgram_tx whose msghdr points into itself) and appends it to the socket's FIFO.
 * At the flush point the backend takes them off in a batch: the readiness backend with
 * sendmmsg, the completion backend as SENDMSG SQEs that go out with the loop's one submission.
 * A datagram's result is its own: EMSGSIZE or ECONNREFUSED fails that datagram's callback, not
 * the socket. Results are collected on a second list and their callbacks run at the flush point,
 * so a callback never runs inside rill_dgram_sendto or in the middle of a batch.
 *
 * Receives never allocate per datagram beyond a slab lease: the backend lends buffers of
 * max_datagram bytes (plus, on io_uring, room for the recvmsg header) and hands each filled one
 * to on_datagram. A datagram longer than the buffer is reported with RILL_DGRAM_TRUNC; the
 * kernel has dropped its tail by then, and saying so is all anyone can do.
 *
 * Close mirrors the connection's: asynchronous, queued sends get -ECANCELED, on_close runs last
 * once the backend reports the socket quiet (dgram_busy), and only then is the memory freed.
 * The loop knows datagram sockets only through rill__dgram_kind (at the bottom). */
#include "dgram.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "addr.h"
#include "backend.h"
#include "resolve.h"
#include "sock.h"
#include "sys.h"

#define DGRAM_DEFAULT_MAX 65527u        /* the largest UDP payload over IPv6 (65535 - 8) */
#define DGRAM_DEFAULT_BATCH 8u
#define DGRAM_DEFAULT_WQ_LIMIT (4u << 20)
#define DGRAM_MAX_PAYLOAD ((1u << 20) - 4096u)
#define DGRAM_TX_OVERHEAD 64u           /* bytes each queued datagram counts for, besides data */

rill_dgram *rill__dgram_lookup(rill_loop *l, uint32_t id)
{
    for (struct rill__list *n = l->dgrams.next; n != &l->dgrams; n = n->next) {
        rill_dgram *d = rill__container_of(n, rill_dgram, link);
        if (d->id == id)
            return d;
    }
    return NULL;
}

/* ---- opening -------------------------------------------------------------------------------- */

static int dgram_config_check(const struct rill_dgram_config *cfg)
{
    if (!cfg->handler || !cfg->handler->on_datagram)
        return -EINVAL;
    if (cfg->flags & ~(RILL_DGRAM_F_REUSEPORT | RILL_DGRAM_F_V6ONLY | RILL_DGRAM_F_UNLINK_STALE |
                       RILL_DGRAM_F_GRO))
        return -EINVAL;
    uint32_t caps = rill__udp_offload_caps();
    if ((cfg->gso_size && !(caps & RILL_CAP_UDP_GSO)) ||
        ((cfg->flags & RILL_DGRAM_F_GRO) && !(caps & RILL_CAP_UDP_GRO)))
        return -EOPNOTSUPP;
    if (cfg->max_datagram > DGRAM_MAX_PAYLOAD || cfg->batch > RILL__DGRAM_MAX_BATCH)
        return -EINVAL;
    return 0;
}

/* Sets up the socket: options, bind (explicit, or the autobind a Unix client needs to be
 * answered), connect for connected mode. */
static int dgram_socket(rill_loop *l, const struct rill__addr *local, const struct rill__addr *peer,
                        const struct rill_dgram_config *cfg, bool *created)
{
    const struct rill__addr *a = local ? local : peer;
    int fd = rill__sys_socket(&l->stats, a->family, a->socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                              a->protocol);
    if (fd < 0)
        return fd;
    int one = 1, r = 0;
    *created = false;
    if (a->family == AF_INET6) {
        int v6only = (cfg->flags & RILL_DGRAM_F_V6ONLY) ? 1 : 0;
        r = rill__sys_setsockopt(&l->stats, fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (r == 0 && (cfg->flags & RILL_DGRAM_F_REUSEPORT) && a->family != AF_UNIX)
        r = rill__sys_setsockopt(&l->stats, fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    bool udp = a->family != AF_UNIX && a->socktype == SOCK_DGRAM && a->protocol == 0;
    if (r == 0 && (cfg->gso_size || (cfg->flags & RILL_DGRAM_F_GRO)) && !udp)
        r = -EINVAL; /* offloads are UDP's */
    if (r == 0 && cfg->gso_size) {
        int seg = cfg->gso_size;
        r = rill__sys_setsockopt(&l->stats, fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof seg);
    }
    if (r == 0 && (cfg->flags & RILL_DGRAM_F_GRO))
        r = rill__sys_setsockopt(&l->stats, fd, SOL_UDP, UDP_GRO, &one, sizeof one);
    if (r == 0 && local) {
        r = rill__sock_bind(&l->stats, fd, local, cfg->flags & RILL_DGRAM_F_UNLINK_STALE,
                            cfg->mode, created);
    } else if (r == 0 && a->family == AF_UNIX) {
        /* Autobind: a bind with only the family gives the socket a unique abstract name. */
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        r = rill__sys_bind(&l->stats, fd, (struct sockaddr *)&un, sizeof(sa_family_t));
    }
    if (r == 0 && peer)
        r = rill__sys_connect(&l->stats, fd, (const struct sockaddr *)&peer->ss, peer->len);
    if (r < 0) {
        if (*created) {
            struct sockaddr_storage ss = local->ss;
            rill__sock_unlink(&ss, local->len);
        }
        rill__sys_close(&l->stats, fd);
        return r;
    }
    return fd;
}

static int resolve_pair(const char *uri, const char *peer_uri, struct rill__addr *local,
                        struct rill__addr *peer)
{
    int r;
    if (uri && (r = rill__addr_from_uri(uri, true, local)) < 0)
        return r;
    if (peer_uri && (r = rill__addr_from_uri(peer_uri, false, peer)) < 0)
        return r;
    const struct rill__addr *a = uri ? local : peer;
    if (a->socktype != SOCK_DGRAM && a->socktype != SOCK_RAW)
        return -EPROTONOSUPPORT; /* tcp:// or unix: (streams) have their own API */
    if (uri && peer_uri &&
        (local->socktype != peer->socktype || local->protocol != peer->protocol ||
         (local->family == AF_UNIX) != (peer->family == AF_UNIX)))
        return -EINVAL;
    /* A wildcard IPv6 local address talks to IPv4 peers too (V6ONLY is off by default). */
    if (uri && peer_uri && local->family == AF_INET && peer->family == AF_INET6)
        return -EAFNOSUPPORT;
    return 0;
}

/* The handle's fields that come from its config. */
static void dgram_init(rill_dgram *d, rill_loop *l, const struct rill_dgram_config *cfg)
{
    d->loop = l;
    d->fd = -1;
    d->id = ++l->dgram_serial;
    d->connected = cfg->peer != NULL;
    d->h = *cfg->handler;
    d->ctx = cfg->ctx;
    d->max_dgram = cfg->max_datagram ? cfg->max_datagram : DGRAM_DEFAULT_MAX;
    d->gro = cfg->flags & RILL_DGRAM_F_GRO;
    if (d->gro && d->max_dgram < 65535)
        d->max_dgram = 65535; /* a coalesced run is up to 64 KiB */
    d->batch = cfg->batch ? cfg->batch : DGRAM_DEFAULT_BATCH;
    d->wq_limit = cfg->wq_limit ? cfg->wq_limit : DGRAM_DEFAULT_WQ_LIMIT;
    d->tx_tail = &d->tx_head;
    d->done_tail = &d->done_head;
}

/* The socket is made (fd), with its local address known: registers it with the backend. On
 * failure the socket is closed again (and its file removed) and the error returned. */
static int dgram_attach(rill_dgram *d, int fd, const struct rill__addr *a, bool created)
{
    rill_loop *l = d->loop;
    d->fd = fd;
    d->family = a->family;
    d->socktype = a->socktype;
    d->unlink_path = created;
    d->local_len = sizeof d->local;
    if (getsockname(fd, (struct sockaddr *)&d->local, &d->local_len) < 0)
        d->local_len = 0;
    int r = l->ops->dgram_start(l, d);
    if (r < 0) {
        l->ops->dgram_close(l, d);
        l->ops->dgram_free(l, d);
        if (created)
            rill__sock_unlink(&d->local, d->local_len);
        d->unlink_path = false;
        d->fd = -1;
    }
    return r;
}

static void dgram_begin_close(rill_dgram *d, int status);

/* ---- a peer given by name ------------------------------------------------------------------- */

struct rill__dgram_dial {
    rill_dgram *d;
    struct rill__resolve_wait rw;
    struct rill_dgram_config cfg; /* peer NULL: the name is resolved */
    bool has_local;
    struct rill__addr local;
};

static void dgram_dial_free(rill_dgram *d)
{
    if (!d->dial)
        return;
    rill__resolve_cancel(&d->dial->rw);
    rill__free(d->dial);
    d->dial = NULL;
}

/* The peer's addresses: the first one the local address can reach becomes the peer, the socket
 * is set up, and what was queued meanwhile goes out. */
static void dgram_resolved(struct rill__resolve_wait *w, int status, const struct rill__addr *a,
                           int n)
{
    struct rill__dgram_dial *dd = rill__container_of(w, struct rill__dgram_dial, rw);
    rill_dgram *d = dd->d;
    const struct rill__addr *peer = NULL;
    for (int i = 0; status == 0 && i < n && !peer; i++)
        if (!dd->has_local || dd->local.family != AF_INET || a[i].family == AF_INET)
            peer = &a[i];
    if (status == 0 && !peer)
        status = -EAFNOSUPPORT;
    bool created = false;
    int fd = status;
    if (status == 0)
        fd = dgram_socket(d->loop, dd->has_local ? &dd->local : NULL, peer, &dd->cfg, &created);
    if (fd >= 0)
        fd = dgram_attach(d, fd, dd->has_local ? &dd->local : peer, created);
    dgram_dial_free(d);
    if (fd < 0)
        dgram_begin_close(d, fd);
    else if (d->tx_head)
        rill__dgram_mark_flush(d);
}

/* Opens the handle at once and resolves the peer's name on the loop. */
static int dgram_open_name(rill_loop *l, const char *uri, const struct rill__uri *pu,
                           const struct rill_dgram_config *cfg, rill_dgram **out)
{
    if (pu->scheme != RILL__SCHEME_UDP)
        return -EPROTONOSUPPORT;
    struct rill__dgram_dial *dd = rill__calloc(1, sizeof *dd);
    if (!dd)
        return -ENOMEM;
    int r = 0;
    if (uri && (r = rill__addr_from_uri(uri, true, &dd->local)) == 0 &&
        (dd->local.family == AF_UNIX || dd->local.socktype != SOCK_DGRAM || dd->local.protocol))
        r = -EINVAL; /* a udp:// peer needs a udp:// local address */
    rill_dgram *d = r == 0 ? rill__calloc(1, l->ops->dgram_size) : NULL;
    if (!d) {
        rill__free(dd);
        return r < 0 ? r : -ENOMEM;
    }
    dgram_init(d, l, cfg);
    d->family = uri ? dd->local.family : AF_UNSPEC;
    d->socktype = SOCK_DGRAM;
    dd->d = d;
    dd->cfg = *cfg;
    dd->cfg.peer = NULL;
    dd->has_local = uri != NULL;
    dd->rw.fn = dgram_resolved;
    dd->rw.port = pu->port;
    dd->rw.socktype = SOCK_DGRAM;
    d->dial = dd;
    rill__list_push_back(&l->dgrams, &d->link);
    struct rill__addr a[RILL__RESOLVE_MAX];
    int n = rill__resolve(l, pu->host, &dd->rw, a, RILL__RESOLVE_MAX);
    if (n < 0) {
        rill__list_del(&d->link);
        rill__free(dd);
        rill__free(d);
        return n;
    }
    if (n > 0)
        dgram_resolved(&dd->rw, 0, a, n); /* from the cache */
    *out = d;
    return 0;
}

int rill_dgram_open(rill_loop *l, const char *uri, const struct rill_dgram_config *cfg,
                    rill_dgram **out)
{
    if (!l || !cfg || !out || (!uri && !cfg->peer))
        return -EINVAL;
    *out = NULL;
    int r = dgram_config_check(cfg);
    if (r < 0)
        return r;
    struct rill__uri pu;
    if (cfg->peer && rill__uri_parse(cfg->peer, &pu) == 0 && rill__uri_needs_lookup(&pu))
        return dgram_open_name(l, uri, &pu, cfg, out);
    struct rill__addr local, peer;
    if ((r = resolve_pair(uri, cfg->peer, &local, &peer)) < 0)
        return r;
    rill_dgram *d = rill__calloc(1, l->ops->dgram_size); /* with the backend's part */
    if (!d)
        return -ENOMEM;
    bool created;
    int fd = dgram_socket(l, uri ? &local : NULL, cfg->peer ? &peer : NULL, cfg, &created);
    if (fd < 0) {
        rill__free(d);
        return fd;
    }
    dgram_init(d, l, cfg);
    rill__list_push_back(&l->dgrams, &d->link);
    if ((r = dgram_attach(d, fd, uri ? &local : &peer, created)) < 0) {
        rill__list_del(&d->link);
        rill__free(d);
        return r;
    }
    *out = d;
    return 0;
}

/* ---- sending -------------------------------------------------------------------------------- */

void rill__dgram_mark_flush(rill_dgram *d)
{
    if (!rill__list_linked(&d->work)) {
        rill__list_push_back(&d->loop->dgram_flush, &d->work);
        rill__loop_pending(d->loop, RILL__KIND_DGRAM);
    }
}

int rill_dgram_sendto(rill_dgram *d, const struct iovec *iov, unsigned iovcnt,
                      const struct sockaddr *to, socklen_t tolen, rill_dgram_send_cb cb,
                      void *ctx)
{
    if (!d || (iovcnt && !iov) || iovcnt > RILL__DGRAM_MAX_IOV)
        return -EINVAL;
    if (d->closing)
        return -ENOTCONN;
    if (to && (tolen < sizeof(sa_family_t) || tolen > sizeof(struct sockaddr_storage)))
        return -EINVAL;
    if (!to && !d->connected)
        return -EDESTADDRREQ;
    if (to && d->connected)
        return -EISCONN;
    size_t len = 0;
    for (unsigned i = 0; i < iovcnt; i++) {
        if (!iov[i].iov_base && iov[i].iov_len)
            return -EINVAL;
        len += iov[i].iov_len;
    }
    if (len > DGRAM_MAX_PAYLOAD)
        return -EMSGSIZE;
    if (d->wq_bytes + len + DGRAM_TX_OVERHEAD > d->wq_limit && d->tx_head)
        return -ENOBUFS;
    struct rill__dgram_tx *tx = rill__malloc(sizeof *tx + iovcnt * sizeof(struct iovec));
    if (!tx)
        return -ENOMEM;
    memset(tx, 0, sizeof *tx);
    tx->cb = cb;
    tx->ctx = ctx;
    tx->len = len;
    if (iovcnt)
        memcpy(tx->iov, iov, iovcnt * sizeof *iov);
    tx->msg.msg_iov = tx->iov;
    tx->msg.msg_iovlen = iovcnt;
    if (to) {
        memcpy(&tx->to, to, tolen);
        tx->msg.msg_name = &tx->to;
        tx->msg.msg_namelen = tolen;
    }
    *d->tx_tail = tx;
    d->tx_tail = &tx->next;
    d->wq_bytes += len + DGRAM_TX_OVERHEAD;
    rill__dgram_mark_flush(d);
    return 0;
}

struct rill__dgram_tx *rill__dgram_tx_pop(rill_dgram *d)
{
    struct rill__dgram_tx *tx = d->tx_head;
    if (tx) {
        d->tx_head = tx->next;
        if (!d->tx_head)
            d->tx_tail = &d->tx_head;
        tx->next = NULL;
        d->wq_bytes -= tx->len + DGRAM_TX_OVERHEAD;
    }
    return tx;
}

void rill__dgram_tx_unpop(rill_dgram *d, struct rill__dgram_tx *tx)
{
    tx->next = d->tx_head;
    d->tx_head = tx;
    if (!tx->next)
        d->tx_tail = &tx->next;
    d->wq_bytes += tx->len + DGRAM_TX_OVERHEAD;
}

void rill__dgram_tx_done(rill_dgram *d, struct rill__dgram_tx *tx, int res)
{
    tx->status = res;
    tx->next = NULL;
    *d->done_tail = tx;
    d->done_tail = &tx->next;
    if (res >= 0) {
        d->loop->stats.dgrams_out++;
        d->loop->stats.dgram_bytes_out += (uint64_t)res;
    }
    rill__dgram_mark_flush(d);
}

static void run_done(rill_dgram *d)
{
    struct rill__dgram_tx *tx = d->done_head;
    d->done_head = NULL;
    d->done_tail = &d->done_head;
    while (tx) {
        struct rill__dgram_tx *next = tx->next;
        if (tx->cb)
            tx->cb(d, tx->status, tx->ctx);
        rill__free(tx);
        tx = next;
    }
}

/* ---- receiving ------------------------------------------------------------------------------ */

uint32_t rill__dgram_gro_size(const struct cmsghdr *cm)
{
    int v;
    if (cm->cmsg_level != SOL_UDP || cm->cmsg_type != UDP_GRO || cm->cmsg_len < CMSG_LEN(sizeof v))
        return 0;
    memcpy(&v, CMSG_DATA(cm), sizeof v);
    return v > 0 ? (uint32_t)v : 0;
}

void rill__dgram_on_recv(rill_dgram *d, struct rill_buf *buf, const void *data, size_t len,
                         const struct sockaddr *from, socklen_t fromlen, int msg_flags,
                         uint32_t gro_size)
{
    rill_loop *l = d->loop;
    uint32_t flags = 0;
    if (msg_flags & MSG_TRUNC) {
        flags |= RILL_DGRAM_TRUNC;
        l->stats.dgrams_truncated++;
    }
    /* An unnamed Unix peer (one that never bound) has a name of just the family. */
    if (fromlen <= sizeof(sa_family_t))
        from = NULL, fromlen = 0;
    /* A coalesced run (UDP_GRO): gro_size-byte datagrams back to back, the last maybe shorter. */
    size_t seg = gro_size && !(flags & RILL_DGRAM_TRUNC) ? gro_size : len;
    const char *p = data;
    do {
        size_t n = len < seg ? len : seg;
        if (d->closing)
            return;
        l->stats.dgrams_in++;
        l->stats.dgram_bytes_in += n;
        d->h.on_datagram(d, buf, p, n, from, fromlen, flags, d->ctx);
        p += n;
        len -= n;
    } while (len > 0);
}

uint32_t rill__udp_offload_caps(void)
{
    /* A property of the kernel, not of a loop: asked once, of a throw-away socket. */
    static _Atomic uint32_t caps = UINT32_MAX;
    uint32_t c = atomic_load_explicit(&caps, memory_order_relaxed);
    if (c != UINT32_MAX)
        return c;
    c = 0;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int v = 1000, one = 1;
    if (fd >= 0 && setsockopt(fd, SOL_UDP, UDP_SEGMENT, &v, sizeof v) == 0)
        c |= RILL_CAP_UDP_GSO;
    if (fd >= 0 && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0)
        c |= RILL_CAP_UDP_GRO;
    if (fd >= 0)
        close(fd);
    atomic_store_explicit(&caps, c, memory_order_relaxed);
    return c;
}

void rill__dgram_on_error(rill_dgram *d, int err)
{
    if (!d->closing && d->h.on_error)
        d->h.on_error(d, err, d->ctx);
}

/* ---- closing -------------------------------------------------------------------------------- */

void rill__dgram_put(rill_dgram *d)
{
    if (d->closing && !d->loop->ops->dgram_busy(d))
        rill__dgram_mark_flush(d);
}

static void dgram_begin_close(rill_dgram *d, int status)
{
    rill_loop *l = d->loop;
    d->closing = true;
    d->close_status = status;
    struct rill__dgram_tx *tx;
    while ((tx = rill__dgram_tx_pop(d)))
        rill__dgram_tx_done(d, tx, -ECANCELED);
    rill__list_del(&d->rlink);
    dgram_dial_free(d); /* a peer's lookup in progress: nobody waits for it now */
    l->ops->dgram_close(l, d);
    if (d->unlink_path)
        rill__sock_unlink(&d->local, d->local_len);
    rill__dgram_mark_flush(d);
}

int rill_dgram_close(rill_dgram *d)
{
    if (!d)
        return -EINVAL;
    if (d->closing)
        return -EALREADY;
    dgram_begin_close(d, 0);
    return 0;
}

static void dgram_free(rill_dgram *d)
{
    rill_loop *l = d->loop;
    l->ops->dgram_free(l, d);
    rill__list_del(&d->link);
    rill__list_del(&d->work);
    rill__list_del(&d->rlink);
    rill__free(d);
    rill__loop_fd_freed(l);
}

void rill__dgram_starved(rill_dgram *d)
{
    rill_loop *l = d->loop;
    l->stats.read_pauses++;
    rill__list_del(&d->rlink);
    rill__list_push_back(&l->dgram_starved, &d->rlink);
    rill__loop_starving(l, RILL__KIND_DGRAM);
}

/* Buffers came back: starved sockets go to l->dgram_read, where each backend reads (epoll) or
 * refills and re-arms (io_uring) them. */
static void dgram_retry_starved(rill_loop *l)
{
    struct rill__list *n;
    while ((n = rill__list_pop_front(&l->dgram_starved)))
        rill__list_push_back(&l->dgram_read, n);
    l->starving &= ~RILL__KIND_BIT(RILL__KIND_DGRAM);
}

/* The flush point: sends and callbacks of every marked socket, then closes that are due. */
static void dgram_flush_all(rill_loop *l)
{
    struct rill__list todo, *n;
    rill__list_take(&l->dgram_flush, &todo);
    while ((n = rill__list_pop_front(&todo))) {
        rill_dgram *d = rill__container_of(n, rill_dgram, work);
        if (d->tx_head && !d->closing && d->fd >= 0) /* none while the peer is resolved */
            l->ops->dgram_send(l, d);
        if (d->done_head)
            run_done(d);
        /* The close is complete once the kernel holds nothing of ours: on_close, then free. */
        if (d->closing && !l->ops->dgram_busy(d) && !d->done_head) {
            if (d->h.on_close)
                d->h.on_close(d, d->close_status, d->ctx);
            dgram_free(d);
        }
    }
    if (rill__list_empty(&l->dgram_flush))
        l->pending &= ~RILL__KIND_BIT(RILL__KIND_DGRAM);
}

void rill__dgram_close_all(rill_loop *l, int status)
{
    for (struct rill__list *n = l->dgrams.next; n != &l->dgrams; n = n->next) {
        rill_dgram *d = rill__container_of(n, rill_dgram, link);
        if (!d->closing)
            dgram_begin_close(d, status);
    }
    dgram_flush_all(l);
}

static int dgram_kind_init(rill_loop *l)
{
    rill__list_init(&l->dgrams);
    rill__list_init(&l->dgram_flush);
    rill__list_init(&l->dgram_starved);
    rill__list_init(&l->dgram_read);
    return 0;
}

const struct rill__kind_ops rill__dgram_kind = {
    .name = "datagram",
    .init = dgram_kind_init,
    .flush = dgram_flush_all,
    .retry_starved = dgram_retry_starved,
    .teardown = rill__dgram_close_all,
    .caps = rill__udp_offload_caps,
};

/* ---- accessors ------------------------------------------------------------------------------ */

int rill_dgram_local_addr(const rill_dgram *d, struct sockaddr_storage *ss, socklen_t *len)
{
    if (!d || !ss || !len)
        return -EINVAL;
    if (d->closing)
        return -ENOTCONN;
    *ss = d->local;
    *len = d->local_len;
    return 0;
}

int rill_dgram_port(const rill_dgram *d)
{
    return d ? rill__sock_port(&d->local) : 0;
}

size_t rill_dgram_queued(const rill_dgram *d)
{
    return d ? d->wq_bytes : 0;
}

int rill_dgram_fd(const rill_dgram *d)
{
    return (d && !d->closing && d->fd >= 0) ? d->fd : -EBADF;
}

void rill_dgram_set_ctx(rill_dgram *d, void *ctx)
{
    if (d)
        d->ctx = ctx;
}

void *rill_dgram_ctx(const rill_dgram *d)
{
    return d ? d->ctx : NULL;
}

rill_loop *rill_dgram_loop(const rill_dgram *d)
{
    return d ? d->loop : NULL;
}
