/* The write queue of a stream connection: rill_send, rill_send_ex and rill_send_bufs queue
 * entries; backends gather iovecs from the head at the flush point (rill__conn_wq_iov/_msg) and
 * report what the kernel took (rill__conn_sent), which completes entries in order, runs their
 * callbacks and the water marks' on_drain, and finishes a wanted half-close once the queue is
 * empty.
 *
 * Sends never touch the socket here: one connection's sends from many callbacks in one
 * iteration leave together from the flush point, in one sendmsg (or SQE). */
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "sys.h"

#define WQ_SMALL_IOV 4u   /* entries this small are recycled through l->wq_free */
#define WQ_FREE_MAX 1024u /* ... up to this many, so an idle loop holds little */

/* ---- entries ---------------------------------------------------------------------------- */

/* The entry functions are inline on purpose: they are on every send's path, and the common
 * small entry comes from and goes back to the loop's free list in a few instructions. */
static inline struct rill__wq_entry *wq_entry_get(rill_loop *l, unsigned niov)
{
    struct rill__wq_entry *e;
    unsigned cap = niov <= WQ_SMALL_IOV ? WQ_SMALL_IOV : niov;
    if (cap == WQ_SMALL_IOV && l->wq_free) {
        e = l->wq_free;
        l->wq_free = e->next;
        l->wq_free_len--;
    } else {
        e = rill__malloc(sizeof *e + cap * (sizeof(struct iovec) + sizeof(struct rill_buf *)));
        if (!e)
            return NULL;
        e->cap = cap;
        e->iov = (struct iovec *)(e + 1);
        e->buf = (struct rill_buf **)(e->iov + cap);
    }
    memset(e, 0, offsetof(struct rill__wq_entry, cb));
    return e;
}

/* Our duplicates of passed descriptors: the peer has its own once the message went out. */
static void wq_entry_drop_fds(struct rill__wq_entry *e)
{
    for (uint32_t i = 0; i < e->nfds; i++)
        close(e->fds[i]);
    rill__free(e->cmsg);
}

static inline void wq_entry_put(rill_loop *l, struct rill__wq_entry *e)
{
    if (e->bufs)
        for (uint32_t i = 0; i < e->niov; i++)
            rill__buf_put(e->buf[i]);
    if (__builtin_expect(e->cmsg != NULL, 0))
        wq_entry_drop_fds(e);
    if (e->cap == WQ_SMALL_IOV && l->wq_free_len < WQ_FREE_MAX) {
        e->next = l->wq_free;
        l->wq_free = e;
        l->wq_free_len++;
    } else {
        rill__free(e);
    }
}

/* What both send calls do once they have added up their bytes: refuse an empty send, a
 * connection that no longer sends, or a queue past its hard limit; then take an entry with room
 * for niov spans. Returns 0 and *out, or the error rill_send reports. */
static inline int wq_begin(rill_conn *c, size_t total, unsigned niov,
                           struct rill__wq_entry **out)
{
    if (total == 0)
        return -EINVAL;
    if (c->state & (RILL__C_CLOSING | RILL__C_SHUT_WANTED))
        return -ENOTCONN;
    /* A send into an empty queue is always accepted, so one large send is never refused;
     * otherwise the queue may not pass its hard limit. */
    if (c->wq_bytes > 0 && c->wq_bytes + total > c->opts.wq_limit) {
        /* Refused: mark the queue high so that on_drain tells the sender when to try again,
         * even when wq_high is set at (or clamped to) the limit. */
        c->state |= RILL__C_HIGH;
        return -ENOBUFS;
    }
    *out = wq_entry_get(c->loop, niov);
    return *out ? 0 : -ENOMEM;
}

static inline void wq_append(rill_conn *c, struct rill__wq_entry *e, rill_send_cb cb, void *ctx,
                             size_t total)
{
    e->cb = cb;
    e->ctx = ctx;
    e->total = total;
    if (c->wq_tail) {
        c->wq_tail->next = e;
    } else {
        c->wq_head = e;
        c->wq_moved = c->loop->now_ms; /* the send timeout counts from here */
    }
    c->wq_tail = e;
    c->wq_bytes += total;
    if (c->wq_bytes >= c->opts.wq_high)
        c->state |= RILL__C_HIGH;
    if (__builtin_expect(e->file, 0))
        c->wq_file_bytes += total; /* page cache, not memory the engine holds */
    else if (__builtin_expect(rill__slab_hold(&c->loop->slab, total), 0))
        rill__conn_mem_short(c->loop);
    rill__conn_mark_flush(c);
}

/* Duplicates the descriptors to pass and builds their SCM_RIGHTS message, in one block that
 * lives with the entry until it is sent. */
static int wq_attach_fds(struct rill__wq_entry *e, const int *fds, unsigned n)
{
    size_t space = CMSG_SPACE(n * sizeof(int));
    e->cmsg = rill__calloc(1, space + n * sizeof(int));
    if (!e->cmsg)
        return -ENOMEM;
    e->fds = (int *)((char *)e->cmsg + space);
    for (; e->nfds < n; e->nfds++) {
        int fd = fcntl(fds[e->nfds], F_DUPFD_CLOEXEC, 0);
        if (fd < 0)
            return errno == EBADF ? -EBADF : -EMFILE;
        e->fds[e->nfds] = fd;
    }
    struct msghdr m = {.msg_control = e->cmsg, .msg_controllen = space};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(cm), e->fds, n * sizeof(int));
    return 0;
}

int rill_send(rill_conn *c, const struct iovec *iov, unsigned iovcnt, rill_send_cb cb, void *ctx)
{
    return rill_send_ex(c, iov, iovcnt, NULL, cb, ctx);
}

int rill_send_ex(rill_conn *c, const struct iovec *iov, unsigned iovcnt,
                 const struct rill_send_opts *opts, rill_send_cb cb, void *ctx)
{
    if (!c || !c->loop || !iov || iovcnt == 0 || iovcnt > IOV_MAX)
        return -EINVAL;
    if (opts && ((opts->flags & ~RILL_SEND_F_URGENT) || opts->nfds > 253 ||
                 (opts->nfds && (!opts->fds || c->family != AF_UNIX)) ||
                 ((opts->flags & RILL_SEND_F_URGENT) &&
                  (c->family == AF_UNIX || c->socktype != SOCK_STREAM))))
        return -EINVAL;
    size_t total = 0;
    for (unsigned i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len && !iov[i].iov_base)
            return -EINVAL;
        total += iov[i].iov_len;
        if (total > INT_MAX) /* the callback reports the count as an int */
            return -EINVAL;
    }
    struct rill__wq_entry *e;
    int r = wq_begin(c, total, iovcnt, &e);
    if (r < 0)
        return r;
    if (opts && opts->nfds && (r = wq_attach_fds(e, opts->fds, opts->nfds)) < 0) {
        wq_entry_put(c->loop, e);
        return r;
    }
    e->urgent = opts && (opts->flags & RILL_SEND_F_URGENT);
    for (unsigned i = 0; i < iovcnt; i++)
        if (iov[i].iov_len)
            e->iov[e->niov++] = iov[i];
    wq_append(c, e, cb, ctx, total);
    return 0;
}

/* rill_send_bufs with one slice, the echo and proxy case: the same checks and the same entry
 * as the general path below, without its two loops and their bookkeeping (measured with
 * callgrind: about 60 of the 130 instructions the general path spends on one slice). */
static inline int send_buf1(rill_conn *c, const struct rill_bufslice *s, rill_send_cb cb,
                            void *ctx)
{
    struct rill_buf *b = s->buf;
    if (!b || b->refs == 0 || s->len == 0 || (size_t)s->off + s->len > rill__buf_cap(b))
        return -EINVAL;
    struct rill__wq_entry *e;
    int r = wq_begin(c, s->len, 1, &e);
    if (r < 0)
        return r;
    e->bufs = true;
    e->niov = 1;
    b->refs++; /* refs != 0 was checked above */
    e->buf[0] = b;
    e->iov[0] = (struct iovec){b->data + s->off, s->len};
    wq_append(c, e, cb, ctx, s->len);
    return 0;
}

/* Several slices: out of line, so that the one-slice path saves no registers for it. */
static __attribute__((noinline)) int send_bufs_n(rill_conn *c, const struct rill_bufslice *s,
                                                 unsigned n, rill_send_cb cb, void *ctx)
{
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) {
        if (!s[i].buf || s[i].buf->refs == 0 ||
            (size_t)s[i].off + s[i].len > rill__buf_cap(s[i].buf))
            return -EINVAL;
        total += s[i].len;
        if (total > INT_MAX)
            return -EINVAL;
    }
    struct rill__wq_entry *e;
    int r = wq_begin(c, total, n, &e);
    if (r < 0)
        return r;
    e->bufs = true;
    for (unsigned i = 0; i < n; i++) {
        if (!s[i].len)
            continue;
        rill__buf_get(s[i].buf);
        e->buf[e->niov] = s[i].buf;
        e->iov[e->niov++] = (struct iovec){s[i].buf->data + s[i].off, s[i].len};
    }
    wq_append(c, e, cb, ctx, total);
    return 0;
}

int rill_send_bufs(rill_conn *c, const struct rill_bufslice *s, unsigned n, rill_send_cb cb,
                   void *ctx)
{
    if (!c || !s || !c->loop || n == 0 || n > IOV_MAX)
        return -EINVAL;
    return n == 1 ? send_buf1(c, s, cb, ctx) : send_bufs_n(c, s, n, cb, ctx);
}

int rill_send_file(rill_conn *c, int fd, uint64_t offset, size_t len, rill_send_cb cb,
                   void *ctx)
{
    if (!c || !c->loop || fd < 0 || len == 0 || len > INT_MAX || offset > INT64_MAX - len)
        return -EINVAL;
    if (c->socktype != SOCK_STREAM)
        return -EOPNOTSUPP; /* each sendfile chunk would be a message of its own */
    if (c->state & (RILL__C_CLOSING | RILL__C_SHUT_WANTED))
        return -ENOTCONN;
    /* The hard limit bounds memory; file bytes are none, so only a queue already over it
     * refuses a file (wq_begin's rule for memory sends would refuse any file larger than the
     * limit queued behind its own header). */
    if (c->wq_bytes > c->opts.wq_limit) {
        c->state |= RILL__C_HIGH;
        return -ENOBUFS;
    }
    struct rill__wq_entry *e = wq_entry_get(c->loop, 0);
    if (!e)
        return -ENOMEM;
    e->file = true;
    e->file_fd = fd;
    e->file_off = offset;
    e->file_left = len;
    wq_append(c, e, cb, ctx, len);
    return 0;
}

/* Gathers queued iovecs for one sendmsg. Entries are joined freely on a stream, except where
 * a join would change meaning: a seqpacket sendmsg is one message, so it carries one entry; an
 * urgent send goes alone (its last byte is the urgent one); descriptors ride with the first
 * byte of a sendmsg, so an entry that carries them starts one. */
unsigned rill__conn_wq_iov(const rill_conn *c, struct iovec *iov, unsigned max)
{
    unsigned n = 0;
    for (const struct rill__wq_entry *e = c->wq_head; e && n < max; e = e->next) {
        if (e->file) /* sent on its own (rill__conn_wq_file) */
            break;
        if (e != c->wq_head && (e->urgent || (e->nfds && !e->fds_sent)))
            break;
        for (uint32_t i = e->cur; i < e->niov && n < max; i++)
            iov[n++] = e->iov[i];
        if (e->urgent || c->socktype == SOCK_SEQPACKET)
            break;
    }
    return n;
}

unsigned rill__conn_wq_msg(rill_conn *c, struct msghdr *m, struct iovec *iov, unsigned max,
                           int *flags)
{
    const struct rill__wq_entry *e = c->wq_head;
    unsigned n = rill__conn_wq_iov(c, iov, max);
    memset(m, 0, sizeof *m);
    m->msg_iov = iov;
    m->msg_iovlen = n;
    *flags = 0;
    if (e && e->nfds && !e->fds_sent) {
        m->msg_control = e->cmsg;
        m->msg_controllen = CMSG_SPACE(e->nfds * sizeof(int));
    }
    if (e && e->urgent)
        *flags = MSG_OOB;
    else if (n && e->next && e->next->file && n == e->niov - e->cur)
        *flags = MSG_MORE; /* a header before its file: one segment with the file's first bytes */
    return n;
}

void rill__conn_check_drained_slow(rill_conn *c)
{
    rill_loop *l = c->loop;
    if ((c->state & RILL__C_HIGH) && c->wq_bytes < c->opts.wq_low) {
        c->state &= ~RILL__C_HIGH;
        if (c->h.on_drain && !(c->state & RILL__C_CLOSING))
            c->h.on_drain(c, c->ctx);
    }
    if (c->wq_head || (c->state & RILL__C_CLOSING))
        return;
    if ((c->state & (RILL__C_SHUT_WANTED | RILL__C_SHUT_DONE)) == RILL__C_SHUT_WANTED) {
        c->state |= RILL__C_SHUT_DONE;
        int r = rill__sys_shutdown(&l->stats, c->fd, SHUT_WR);
        if (r < 0 && r != -ENOTCONN) {
            rill__conn_fail(c, r);
            return;
        }
    }
    /* Both directions finished (our FIN sent, the peer's received): nothing more can happen on
     * this connection, so it closes by itself rather than leak until the embedder notices. */
    if ((c->state & RILL__C_CLOSE_AFTER_WQ) ||
        (c->state & (RILL__C_SHUT_DONE | RILL__C_RD_EOF)) == (RILL__C_SHUT_DONE | RILL__C_RD_EOF))
        rill__conn_fail(c, 0);
}

/* The general case of rill__conn_sent: n bytes off the front of the queue, across entries and
 * within them. Out of line, so that the common case below saves no registers for it. */
static __attribute__((noinline)) void conn_sent_walk(rill_conn *c, size_t n)
{
    rill_loop *l = c->loop;
    struct rill__wq_entry *e;
    if (n > 0 && c->wq_head)
        c->wq_head->fds_sent = true; /* the control message went with the first byte */
    while (n > 0 && c->wq_head) {
        e = c->wq_head;
        struct iovec *v = &e->iov[e->cur];
        if (n < v->iov_len) {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= n;
            c->wq_bytes -= n;
            break;
        }
        n -= v->iov_len;
        c->wq_bytes -= v->iov_len;
        if (++e->cur < e->niov)
            continue;
        c->wq_head = e->next;
        if (!c->wq_head)
            c->wq_tail = NULL;
        /* The entry leaves the queue before its callback, which may queue more or close. */
        if (e->cb)
            e->cb(c, (int)e->total, e->ctx);
        wq_entry_put(l, e);
    }
}

void rill__conn_sent(rill_conn *c, size_t n)
{
    rill_loop *l = c->loop;
    l->stats.bytes_out += n;
    c->last_io = c->wq_moved = l->now_ms;
    rill__slab_unhold(&l->slab, n);
    struct rill__wq_entry *e = c->wq_head;
    if (e && n == c->wq_bytes && !e->next && e->cur + 1 == e->niov) {
        /* The common case: the one queued entry went out whole, and completes without the walk.
         * As there, it leaves the queue before its callback. */
        c->wq_head = c->wq_tail = NULL;
        c->wq_bytes = 0;
        if (e->cb)
            e->cb(c, (int)e->total, e->ctx);
        wq_entry_put(l, e);
    } else {
        conn_sent_walk(c, n);
    }
    rill__conn_check_drained(c);
}

void rill__conn_file_sent(rill_conn *c, size_t n)
{
    rill_loop *l = c->loop;
    struct rill__wq_entry *e = c->wq_head;
    if (n == 0) { /* the file ended before offset + len: see rill_send_file */
        rill__conn_fail(c, -ENODATA);
        return;
    }
    l->stats.bytes_out += n;
    c->last_io = c->wq_moved = l->now_ms;
    e->file_off += n;
    e->file_left -= n;
    c->wq_bytes -= n;
    c->wq_file_bytes -= n;
    if (e->file_left == 0) {
        c->wq_head = e->next;
        if (!c->wq_head)
            c->wq_tail = NULL;
        if (e->cb) /* as in rill__conn_sent: off the queue before its callback */
            e->cb(c, (int)e->total, e->ctx);
        wq_entry_put(l, e);
    }
    rill__conn_check_drained(c);
}

void rill__conn_wq_cancel_all(rill_conn *c, int status)
{
    rill_loop *l = c->loop;
    rill__slab_unhold(&l->slab, c->wq_bytes - c->wq_file_bytes);
    c->wq_file_bytes = 0;
    while (c->wq_head) {
        struct rill__wq_entry *e = c->wq_head;
        c->wq_head = e->next;
        if (!c->wq_head)
            c->wq_tail = NULL;
        c->wq_bytes -= e->total; /* approximate for a half-sent head; zeroed below */
        if (e->cb)
            e->cb(c, status, e->ctx);
        wq_entry_put(l, e);
    }
    c->wq_bytes = 0;
}
