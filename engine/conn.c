/* Stream connections: the slot table, the state machine, half-close, timeouts and asynchronous
 * close. The write queue and its water marks are in conn_send.c; rill_connect is in
 * conn_dial.c.
 *
 * Everything here is backend-neutral. Backends report what happened through engine/upcall.h
 * (opened, a receive, bytes sent, failure) and conn.c turns it into the embedder's callbacks;
 * conn.c asks the backend to send at the flush point (conn_flush_all), so sends queued by many
 * callbacks in one iteration leave together. (The epoll backend sends a connection's queue
 * sooner, right after that connection's read turn, when the reply would otherwise wait for the
 * whole batch: see ep_send_now and l->send_turn.)
 *
 * Lifetime: a connection is "closing" from conn_begin_close() until its on_close has run at the
 * flush point, and its memory is reused only when, in addition, the backend reports it quiet
 * (conn_busy() == 0: nothing in flight for it). The slot keeps its number; its generation is
 * bumped on reuse so that a late event carrying the old cookie is recognised and dropped.
 *
 * The loop knows connections only through rill__conn_kind (at the bottom): their flush-point
 * work, the retry of starved reads, and teardown. */
#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "addr.h"
#include "backend.h"
#include "cookie.h"
#include "sys.h"

/* ---- slot table ----------------------------------------------------------------------------- */

int rill__conn_alloc(rill_loop *l, rill_conn **out)
{
    if (!l->conn_free) {
        if (l->conn_slots >= l->cfg.max_conns)
            return -ENOBUFS;
        uint32_t chunk = l->conn_slots / RILL__CONN_CHUNK;
        char *arr = rill__calloc(RILL__CONN_CHUNK, l->conn_stride);
        if (!arr)
            return -ENOMEM;
        l->conn_chunks[chunk] = arr;
        uint32_t n = RILL__CONN_CHUNK;
        if (l->cfg.max_conns - l->conn_slots < n)
            n = l->cfg.max_conns - l->conn_slots;
        /* Push in reverse so the lowest slot is handed out first. */
        for (uint32_t i = n; i-- > 0;) {
            rill_conn *c = (rill_conn *)(arr + (size_t)i * l->conn_stride);
            c->slot = l->conn_slots + i;
            c->fd = -1;
            c->next_free = l->conn_free;
            l->conn_free = c;
        }
        l->conn_slots += n;
    }
    rill_conn *c = l->conn_free;
    l->conn_free = c->next_free;
    uint32_t slot = c->slot, gen = c->gen;
    memset(c, 0, l->conn_stride); /* the backend's part too */
    c->slot = slot;
    c->gen = gen;
    c->loop = l;
    c->fd = -1;
    c->wq_status = -ECANCELED;
    l->live_conns++;
    *out = c;
    return 0;
}

rill_conn *rill__conn_next(rill_loop *l, uint32_t *it)
{
    while (*it < l->conn_slots) {
        rill_conn *c = rill__conn_at(l, (*it)++);
        if (c->loop == l)
            return c;
    }
    return NULL;
}

static void conn_free(rill_conn *c)
{
    rill_loop *l = c->loop;
    l->ops->conn_free(l, c);
    if (c->state & RILL__C_OPEN)
        l->stats.conns_open--;
    l->live_conns--;
    c->loop = NULL;
    c->state = 0;
    c->gen++;
    c->next_free = l->conn_free;
    l->conn_free = c;
    rill__loop_fd_freed(l);
}

void rill__conn_release_slot(rill_conn *c)
{
    rill__wheel_del(&c->loop->wheel, &c->timer);
    rill__list_del(&c->flush_link);
    rill__list_del(&c->read_link);
    rill__list_del(&c->resume_link);
    rill__list_del(&c->migrate_link);
    c->fd = -1;
    conn_free(c);
}

/* ---- flush point work ----------------------------------------------------------------------- */

static void conn_flush_all(rill_loop *l)
{
    /* Take the list as it is now: connections marked by callbacks during this walk are sent in
     * the next iteration, which the loop then runs without waiting. */
    struct rill__list todo;
    rill__list_take(&l->flush_list, &todo);

    struct rill__list *n;
    while ((n = rill__list_pop_front(&todo))) {
        rill_conn *c = rill__container_of(n, rill_conn, flush_link);
        if (c->state & RILL__C_CLOSING)
            continue;
        if (c->wq_head)
            l->ops->send(l, c);
        else
            rill__conn_check_drained(c);
    }
}

void rill__conn_retry_starved(rill_loop *l, uint32_t max)
{
    /* Two passes: first the connections that hold nothing for their peers, then the others,
     * each in the order they starved. When memory ran short because some peers do not read, the
     * buffers that came back go first to connections that will hand them on, not to those whose
     * queues only grow with every read: a client that behaves is served even while a crowd of
     * stalled ones waits at the memory ceiling. One that starves again in the first pass is
     * retried once more in the second; max bounds the whole. */
    for (int pass = 0; pass < 2 && max > 0; pass++) {
        struct rill__list todo, *n;
        rill__list_take(&l->starve_list, &todo);
        while ((n = rill__list_pop_front(&todo))) {
            rill_conn *c = rill__container_of(n, rill_conn, read_link);
            if (max == 0 || (pass == 0 && c->wq_bytes + c->held_bytes > 0)) {
                rill__list_push_back(&l->starve_list, n); /* in order, for the next pass */
                continue;
            }
            max--;
            c->state &= ~RILL__C_RD_STARVED;
            if (rill__conn_can_read(c))
                l->ops->recv_resume(l, c);
        }
    }
    if (rill__list_empty(&l->starve_list))
        l->starving &= ~RILL__KIND_BIT(RILL__KIND_CONN);
}

void rill__conn_starved(rill_conn *c)
{
    c->state |= RILL__C_RD_STARVED;
    c->loop->stats.read_pauses++;
    rill__list_del(&c->read_link);
    rill__list_push_back(&c->loop->starve_list, &c->read_link);
    rill__loop_starving(c->loop, RILL__KIND_CONN);
    rill__conn_mem_short(c->loop);
}

/* Resumed connections with data held for them: delivered here, at the flush point, then their
 * receive goes on. Never inside rill_read_resume(), whose caller may be a callback. The list has
 * a link of its own: backends move read_link between their lists meanwhile (a receive that
 * arrives before the flush point is appended to what is held, in order). */
static void conn_resume_all(rill_loop *l)
{
    struct rill__list todo, *n;
    rill__list_take(&l->resume_list, &todo);
    while ((n = rill__list_pop_front(&todo))) {
        rill_conn *c = rill__container_of(n, rill_conn, resume_link);
        if (rill__conn_deliver_held(c) && rill__conn_can_read(c))
            l->ops->recv_resume(l, c);
    }
}

/* ---- state machine -------------------------------------------------------------------------- */

static void conn_begin_close(rill_conn *c, int status)
{
    if (c->state & RILL__C_CLOSING)
        return;
    rill_loop *l = c->loop;
    c->state |= RILL__C_CLOSING;
    c->close_status = status;
    rill__list_del(&c->flush_link);
    rill__list_del(&c->read_link);
    rill__list_del(&c->resume_link);
    rill__list_del(&c->migrate_link); /* closing cancels a move that has not happened */
    rill__wheel_del(&l->wheel, &c->timer);
    rill__dial_cancel(c);
    if (c->fd >= 0) /* a dial that never connected has no descriptor, nothing in the backend */
        l->ops->conn_close(l, c);
    rill__list_push_back(&l->close_list, &c->close_link);
    rill__loop_pending(l, RILL__KIND_CONN);
}

void rill__conn_fail(rill_conn *c, int status)
{
    /* An I/O error is also what the queued sends learn; a deliberate close cancels them. */
    if (status < 0 && status != -ETIMEDOUT)
        c->wq_status = status;
    conn_begin_close(c, status);
}

static void conn_close_all_due(rill_loop *l)
{
    struct rill__list *n;
    while ((n = rill__list_pop_front(&l->close_list))) {
        rill_conn *c = rill__container_of(n, rill_conn, close_link);
        /* The kernel may still read the queue's bytes for a send in flight; their callbacks
         * (and on_close, always last) wait for its completion: rill__conn_close_ready(). */
        if (l->ops->conn_busy(c) & RILL__BUSY_SEND)
            continue;
        while (c->held_head) {
            struct rill_buf *b = c->held_head;
            c->held_head = b->next_free;
            rill__buf_put(b);
        }
        c->held_tail = NULL;
        rill__slab_unhold(&l->slab, c->held_bytes);
        c->held_bytes = 0;
        rill__conn_wq_cancel_all(c, c->wq_status);
        c->state |= RILL__C_CLOSED;
        if (c->h.on_close)
            c->h.on_close(c, c->close_status, c->ctx);
        rill__conn_put(c);
    }
}

void rill__conn_close_ready(rill_conn *c)
{
    if ((c->state & (RILL__C_CLOSING | RILL__C_CLOSED)) == RILL__C_CLOSING &&
        !rill__list_linked(&c->close_link)) {
        rill__list_push_back(&c->loop->close_list, &c->close_link);
        rill__loop_pending(c->loop, RILL__KIND_CONN);
    }
}

void rill__conn_put(rill_conn *c)
{
    if ((c->state & RILL__C_CLOSED) && !c->loop->ops->conn_busy(c))
        conn_free(c);
}

/* The next moment the connection's timer must look at it: the idle deadline, and with a send
 * timeout the deadline of the queued bytes (or, with the queue empty, one period from now, so
 * that the timer stays armed and a send never has to arm it). UINT64_MAX: neither is set. */
static uint64_t conn_next_due(const rill_conn *c, uint64_t now)
{
    uint64_t due = UINT64_MAX;
    if (c->opts.idle_timeout_ms)
        due = c->last_io + c->opts.idle_timeout_ms;
    if (c->opts.send_timeout_ms) {
        uint64_t s = (c->wq_head ? c->wq_moved : now) + c->opts.send_timeout_ms;
        if (s < due)
            due = s;
    }
    return due;
}

void rill__conn_timer_fn(struct rill__tnode *t)
{
    rill_conn *c = rill__container_of(t, rill_conn, timer);
    rill_loop *l = c->loop;
    if (c->state & RILL__C_CONNECTING) {
        rill__conn_fail(c, -ETIMEDOUT);
        return;
    }
    /* I/O only moved last_io and wq_moved forward (no timer work per send or receive), so the
     * timer fires at the earliest deadline it could have had and re-arms for what is left. */
    uint64_t due = conn_next_due(c, l->now_ms);
    if (due <= l->now_ms) {
        rill__conn_fail(c, -ETIMEDOUT);
        return;
    }
    if (due != UINT64_MAX)
        rill__wheel_add_ms(&l->wheel, &c->timer, due);
}

static void conn_start_timer(rill_conn *c)
{
    rill_loop *l = c->loop;
    c->last_io = l->now_ms;
    c->wq_moved = l->now_ms;
    rill__wheel_del(&l->wheel, &c->timer);
    uint64_t due = conn_next_due(c, l->now_ms);
    if (due != UINT64_MAX)
        rill__wheel_add_ms(&l->wheel, &c->timer, due);
}

void rill__conn_opened(rill_conn *c)
{
    rill_loop *l = c->loop;
    if (c->state & RILL__C_CONNECTING) {
        c->state &= ~RILL__C_CONNECTING;
        l->stats.connects++;
    }
    c->state |= RILL__C_OPEN;
    l->stats.conns_open++;
    conn_start_timer(c);
    if (c->h.on_open)
        c->h.on_open(c, c->ctx);
    if (c->state & RILL__C_CLOSING)
        return;
    /* Sends and a shutdown queued before the connection opened go out now. */
    if (c->wq_head || (c->state & RILL__C_SHUT_WANTED))
        rill__conn_mark_flush(c);
}

static void conn_deliver(rill_conn *c, struct rill_buf *buf, const uint8_t *data, size_t len)
{
    rill_loop *l = c->loop;
    l->stats.bytes_in += len;
    c->last_io = l->now_ms;
    if (c->h.on_data)
        c->h.on_data(c, buf, data, len, c->ctx);
}

void rill__conn_adopted(rill_conn *c)
{
    c->state |= RILL__C_OPEN;
    c->loop->stats.conns_open++;
    conn_start_timer(c);
}

static void conn_on_eof(rill_conn *c);

static void conn_on_data(rill_conn *c, struct rill_buf *buf, size_t len)
{
    if (c->state & RILL__C_CLOSING)
        return;
    /* Bytes that reach a paused connection (the rest of a readv, completions already on their
     * way) wait, in order, behind anything held before them: no on_data while paused. */
    if ((c->state & RILL__C_RD_PAUSED) || c->held_head) {
        rill__buf_get(buf);
        buf->len = (uint32_t)len;
        buf->next_free = NULL;
        if (c->held_tail)
            c->held_tail->next_free = buf;
        else
            c->held_head = buf;
        c->held_tail = buf;
        c->held_bytes += len;
        if (rill__slab_hold(&c->loop->slab, len))
            rill__conn_mem_short(c->loop);
        return;
    }
    conn_deliver(c, buf, buf->data, len);
}

bool rill__conn_deliver_held(rill_conn *c)
{
    while (c->held_head && !(c->state & (RILL__C_RD_PAUSED | RILL__C_CLOSING))) {
        struct rill_buf *b = c->held_head;
        c->held_head = b->next_free;
        if (!c->held_head)
            c->held_tail = NULL;
        c->held_bytes -= b->len;
        rill__slab_unhold(&c->loop->slab, b->len);
        conn_deliver(c, b, b->data, b->len); /* the oldest held bytes: straight to the callback */
        rill__buf_put(b);
    }
    if (c->held_eof && !c->held_head && !(c->state & (RILL__C_RD_PAUSED | RILL__C_CLOSING))) {
        c->held_eof = false;
        conn_on_eof(c);
    }
    return !c->held_head && !c->held_eof;
}

bool rill__conn_recv(rill_conn *c, struct rill_buf *buf, ssize_t res)
{
    /* Data for a connection that reads and holds nothing: straight to on_data. */
    if (__builtin_expect(res > 0 && !(c->state & (RILL__C_CLOSING | RILL__C_RD_PAUSED)) &&
                             !c->held_head, 1))
        conn_deliver(c, buf, buf->data, (size_t)res);
    else if (res > 0)
        conn_on_data(c, buf, (size_t)res);
    else if (res == 0)
        conn_on_eof(c);
    else if (!(c->state & RILL__C_CLOSING))
        rill__conn_fail(c, (int)res);
    return rill__conn_can_read(c);
}

bool rill__conn_recv_at(rill_conn *c, struct rill_buf *buf, uint32_t off, size_t len)
{
    if (off == 0)
        return rill__conn_recv(c, buf, (ssize_t)len);
    if (!(c->state & (RILL__C_CLOSING | RILL__C_RD_PAUSED)) && !c->held_head) {
        conn_deliver(c, buf, buf->data + off, len);
        return rill__conn_can_read(c);
    }
    if (c->state & RILL__C_CLOSING)
        return false;
    /* Held data is a buffer of its own, from its start (the held list links buffers, and this
     * one's other bytes may belong to other connections): a copy, on this rare path. */
    struct rill_buf *copy;
    if (rill__slab_lease(&c->loop->slab, len, &copy) < 0) {
        rill__conn_fail(c, -ENOBUFS);
        return false;
    }
    memcpy(copy->data, buf->data + off, len);
    conn_on_data(c, copy, len);
    rill__buf_put(copy);
    return rill__conn_can_read(c);
}

static void conn_on_eof(rill_conn *c)
{
    if (c->state & RILL__C_CLOSING)
        return;
    if ((c->state & RILL__C_RD_PAUSED) || c->held_head) {
        c->held_eof = true; /* after the held bytes, once reading resumes */
        c->state |= RILL__C_RD_EOF;
        return;
    }
    c->state |= RILL__C_RD_EOF;
    rill__list_del(&c->read_link);
    if (c->h.on_eof) {
        c->h.on_eof(c, c->ctx);
        if ((c->state & (RILL__C_SHUT_DONE | RILL__C_CLOSING)) == RILL__C_SHUT_DONE)
            rill__conn_fail(c, 0); /* both directions are finished */
        return;
    }
    /* The default: finish sending what is queued (an echo's last reply), then close. */
    c->state |= RILL__C_CLOSE_AFTER_WQ;
    if (!c->wq_head)
        rill__conn_fail(c, 0);
}

/* ---- socket kinds: message receives, descriptors, urgent data -------------------------------- */

void rill__conn_set_kind(rill_conn *c, int family, int socktype)
{
    c->family = family;
    c->socktype = socktype;
    c->rx_msg = socktype == SOCK_SEQPACKET || (family == AF_UNIX && c->h.on_fds);
}

size_t rill__conn_rx_size(const rill_conn *c)
{
    return c->socktype == SOCK_SEQPACKET ? c->opts.msg_max : c->loop->cfg.recv_buf_size;
}

/* Hands over the descriptors of a control message: to on_fds, or closed when nobody takes them
 * (a handler may be swapped for one without on_fds while descriptors are on their way). */
static void conn_take_fds(rill_conn *c, const struct msghdr *m)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR((struct msghdr *)m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        unsigned n = (unsigned)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int fds[253];
        n = n > 253 ? 253 : n;
        memcpy(fds, CMSG_DATA(cm), n * sizeof(int));
        if (c->h.on_fds && !(c->state & RILL__C_CLOSING))
            c->h.on_fds(c, fds, n, c->ctx);
        else
            for (unsigned i = 0; i < n; i++)
                close(fds[i]);
    }
}

bool rill__conn_on_msg(rill_conn *c, struct rill_buf *buf, size_t len, const struct msghdr *m)
{
    if (m->msg_controllen)
        conn_take_fds(c, m);
    /* A seqpacket message longer than the buffer has lost its tail in the kernel already; the
     * stream of messages is no longer what the peer sent, so it ends here, loudly. A cut
     * control message (MSG_CTRUNC) means descriptors were lost: the same. */
    if ((m->msg_flags & MSG_TRUNC) && c->socktype == SOCK_SEQPACKET) {
        rill__conn_fail(c, -EMSGSIZE);
        return false;
    }
    if (m->msg_flags & MSG_CTRUNC) {
        rill__conn_fail(c, -EMSGSIZE);
        return false;
    }
    if (len)
        conn_on_data(c, buf, len);
    return true;
}

bool rill__conn_read_urgent(rill_conn *c)
{
    if ((c->state & RILL__C_CLOSING) || !c->h.on_urgent)
        return false;
    uint8_t byte;
    struct iovec iov = {&byte, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    ssize_t r = rill__sys_recvmsg(&c->loop->stats, c->fd, &m, MSG_OOB | MSG_DONTWAIT);
    /* EAGAIN: the urgent pointer came ahead of its byte; the next arrival of data tries again.
     * EINVAL: no urgent byte any more (already read, or overtaken by a newer one). */
    if (r == 1)
        c->h.on_urgent(c, byte, c->ctx);
    return r == -EAGAIN;
}

/* ---- public: options, connect, close -------------------------------------------------------- */

int rill__conn_options_resolve(const struct rill_conn_options *in, struct rill_conn_options *out)
{
    struct rill_conn_options d = {
        .wq_high = 1u << 20, .wq_low = 256u << 10, .wq_limit = 16u << 20, .msg_max = 256u << 10};
    if (in) {
        if (in->msg_max)
            d.msg_max = in->msg_max;
        d.flags = in->flags;
        d.idle_timeout_ms = in->idle_timeout_ms;
        d.send_timeout_ms = in->send_timeout_ms;
        if (in->wq_high)
            d.wq_high = in->wq_high;
        if (in->wq_low)
            d.wq_low = in->wq_low;
        if (in->wq_limit)
            d.wq_limit = in->wq_limit;
    }
    if ((d.flags & ~RILL_CONN_F_NO_NODELAY) || d.msg_max > RILL__SLAB_MAX)
        return -EINVAL;
    if (d.wq_high > d.wq_limit)
        d.wq_high = d.wq_limit;
    if (d.wq_low > d.wq_high)
        d.wq_low = d.wq_high;
    *out = d;
    return 0;
}

int rill__conn_setup_socket(rill_loop *l, int fd, int family, const struct rill_conn_options *o)
{
    if ((family == AF_INET || family == AF_INET6) && !(o->flags & RILL_CONN_F_NO_NODELAY)) {
        int one = 1;
        return rill__sys_setsockopt(&l->stats, fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return 0;
}

/* Wraps an accepted socket; called by listener.c. */
int rill__conn_accepted(rill_loop *l, int fd, int family, int socktype,
                        const struct rill_conn_handler *h, void *ctx,
                        const struct rill_conn_options *opts, rill_conn **out)
{
    rill_conn *c;
    int r = rill__conn_alloc(l, &c);
    if (r < 0)
        return r;
    c->fd = fd;
    c->h = *h;
    c->ctx = ctx;
    c->opts = *opts;
    rill__conn_set_kind(c, family, socktype);
    c->timer.fn = rill__conn_timer_fn;
    if ((r = l->ops->conn_start(l, c)) < 0) {
        c->fd = -1;
        conn_free(c);
        return r;
    }
    *out = c;
    return 0;
}

int rill_close(rill_conn *c)
{
    if (!c || !c->loop)
        return -EINVAL;
    if (c->state & RILL__C_CLOSING)
        return -EALREADY;
    conn_begin_close(c, 0);
    return 0;
}

int rill_shutdown(rill_conn *c)
{
    if (!c || !c->loop)
        return -EINVAL;
    if (c->state & (RILL__C_CLOSING | RILL__C_SHUT_WANTED))
        return -ENOTCONN;
    c->state |= RILL__C_SHUT_WANTED;
    rill__conn_mark_flush(c);
    return 0;
}

int rill_read_pause(rill_conn *c)
{
    if (!c || !c->loop)
        return -EINVAL;
    if (c->state & RILL__C_CLOSING)
        return -ENOTCONN;
    if (!(c->state & RILL__C_RD_PAUSED)) {
        c->state |= RILL__C_RD_PAUSED;
        rill__list_del(&c->read_link);
        rill__list_del(&c->resume_link);
        c->state &= ~RILL__C_RD_STARVED;
        c->loop->ops->recv_pause(c->loop, c);
    }
    return 0;
}

int rill_read_resume(rill_conn *c)
{
    if (!c || !c->loop)
        return -EINVAL;
    if (c->state & RILL__C_CLOSING)
        return -ENOTCONN;
    if (c->state & RILL__C_RD_PAUSED) {
        c->state &= ~RILL__C_RD_PAUSED;
        if (c->held_head || c->held_eof) {
            rill__list_push_back(&c->loop->resume_list, &c->resume_link);
            rill__loop_pending(c->loop, RILL__KIND_CONN);
        } else if (rill__conn_can_read(c)) {
            c->loop->ops->recv_resume(c->loop, c);
        }
    }
    return 0;
}

size_t rill_conn_write_queued(const rill_conn *c)
{
    return c ? c->wq_bytes : 0;
}

static int conn_addr(const rill_conn *c, struct sockaddr_storage *ss, socklen_t *len, bool peer)
{
    if (!c || !c->loop || !ss || !len)
        return -EINVAL;
    if (c->fd < 0 || (c->state & (RILL__C_CONNECTING | RILL__C_CLOSING)))
        return -ENOTCONN;
    *len = sizeof *ss;
    int r = peer ? getpeername(c->fd, (struct sockaddr *)ss, len)
                 : getsockname(c->fd, (struct sockaddr *)ss, len);
    return r < 0 ? -errno : 0;
}

int rill_conn_local_addr(const rill_conn *c, struct sockaddr_storage *ss, socklen_t *len)
{
    return conn_addr(c, ss, len, false);
}

int rill_conn_peer_addr(const rill_conn *c, struct sockaddr_storage *ss, socklen_t *len)
{
    return conn_addr(c, ss, len, true);
}

void rill_conn_set_ctx(rill_conn *c, void *ctx)
{
    if (c)
        c->ctx = ctx;
}

void *rill_conn_ctx(const rill_conn *c)
{
    return c ? c->ctx : NULL;
}

rill_loop *rill_conn_loop(const rill_conn *c)
{
    return c ? c->loop : NULL;
}

int rill_conn_fd(const rill_conn *c)
{
    return (c && c->fd >= 0 && !(c->state & RILL__C_CLOSING)) ? c->fd : -EBADF;
}

/* ---- the connection kind: what the loop runs ------------------------------------------------ */

static int conn_kind_init(rill_loop *l)
{
    uint32_t chunks = (l->cfg.max_conns + RILL__CONN_CHUNK - 1) / RILL__CONN_CHUNK;
    l->conn_stride = (l->ops->conn_size + 15u) & ~15u;
    l->conn_chunks = rill__calloc(chunks, sizeof *l->conn_chunks);
    if (!l->conn_chunks)
        return -ENOMEM;
    rill__list_init(&l->flush_list);
    rill__list_init(&l->close_list);
    rill__list_init(&l->resume_list);
    rill__list_init(&l->starve_list);
    rill__list_init(&l->migrate_list);
    rill__list_init(&l->read_list);
    return 0;
}

static void conn_kind_fini(rill_loop *l)
{
    rill__wheel_del(&l->wheel, &l->mem_watch);
    for (uint32_t i = 0; l->conn_chunks && i * RILL__CONN_CHUNK < l->conn_slots; i++)
        rill__free(l->conn_chunks[i]);
    rill__free(l->conn_chunks);
    l->conn_chunks = NULL;
    while (l->wq_free) {
        struct rill__wq_entry *e = l->wq_free;
        l->wq_free = e->next;
        rill__free(e);
    }
}

/* The flush point's connection work, in order: held data of resumed connections, sends, moves
 * to other loops once quiet, then the on_close callbacks that are due (last, so that a close
 * requested by any callback before it is delivered in the same iteration). */
static void conn_kind_flush(rill_loop *l)
{
    if (!rill__list_empty(&l->resume_list))
        conn_resume_all(l);
    conn_flush_all(l);
    if (!rill__list_empty(&l->migrate_list))
        rill__conn_migrate_ready(l);
    conn_close_all_due(l);
    if (rill__list_empty(&l->flush_list) && rill__list_empty(&l->close_list) &&
        rill__list_empty(&l->resume_list) && rill__list_empty(&l->migrate_list))
        l->pending &= ~RILL__KIND_BIT(RILL__KIND_CONN);
}

static void conn_kind_retry_starved(rill_loop *l)
{
    rill__conn_retry_starved(l, UINT32_MAX);
}

static void conn_kind_teardown(rill_loop *l, int status)
{
    rill_conn *c;
    for (uint32_t it = 0; (c = rill__conn_next(l, &it));)
        if (!(c->state & RILL__C_CLOSING)) {
            c->wq_status = status;
            conn_begin_close(c, status);
        }
    /* Callbacks of the closing connections may not open new ones on a dying loop, but they may
     * defer work; that work is dropped with the loop. */
    conn_close_all_due(l);
}

const struct rill__kind_ops rill__conn_kind = {
    .name = "connection",
    .init = conn_kind_init,
    .fini = conn_kind_fini,
    .flush = conn_kind_flush,
    .retry_starved = conn_kind_retry_starved,
    .teardown = conn_kind_teardown,
};
