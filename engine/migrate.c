/* Moving a connection to another loop of its engine (rill_conn_migrate).
 *
 * Buffers, timers and write queues belong to one loop and are not thread-safe, so nothing of
 * them can travel: only the socket, the handler and the ctx do. The source therefore stops
 * reading and waits until the connection is quiet (no receive or send in flight, nothing queued,
 * nothing held), delivering on the old loop whatever arrives meanwhile. Then it posts the socket
 * to the target's mailbox first and forgets it second, so a full mailbox simply means "try again
 * next iteration", and the socket is never in neither loop. The target adopts the socket into a
 * new slot, starts receiving, and tells the embedder through the callback. */
#include <errno.h>
#include <unistd.h>

#include "backend.h"
#include "conn.h"
#include "sys.h"

struct handover {
    int fd;
    int family, socktype;
    struct rill_conn_handler h;
    void *ctx;
    struct rill_conn_options opts;
    rill_migrate_cb cb;
    void *arg;
};

int rill_conn_migrate(rill_conn *c, uint32_t index, rill_migrate_cb cb, void *arg)
{
    if (!c || !c->loop || !c->loop->engine || index >= rill_engine_loop_count(c->loop->engine))
        return -EINVAL;
    rill_loop *l = c->loop;
    if ((int)index == l->index)
        return -EALREADY;
    if (!(c->state & RILL__C_OPEN) || c->wq_head || c->held_head || c->held_eof ||
        (c->state & (RILL__C_CLOSING | RILL__C_MIGRATING | RILL__C_SHUT_WANTED | RILL__C_RD_EOF)) ||
        (l->ops->conn_busy(c) & RILL__BUSY_SEND))
        return -EBUSY;
    c->state |= RILL__C_MIGRATING;
    c->mig_target = index;
    c->mig_cb = cb;
    c->mig_arg = arg;
    rill__list_del(&c->read_link);
    l->ops->recv_pause(l, c); /* a completion backend cancels its armed receive */
    rill__list_push_back(&l->migrate_list, &c->migrate_link);
    rill__loop_pending(l, RILL__KIND_CONN);
    return 0;
}

static void adopt(rill_loop *l, void *arg)
{
    struct handover *h = arg;
    rill_conn *c = NULL;
    int r = l->draining ? -ESHUTDOWN : 0;
    if (r == 0)
        r = rill__conn_accepted(l, h->fd, h->family, h->socktype, &h->h, h->ctx, &h->opts, &c);
    if (r < 0) {
        rill__sys_close(&l->stats, h->fd);
        if (h->cb)
            h->cb(NULL, r, h->arg);
    } else {
        rill__conn_adopted(c);
        if (h->cb)
            h->cb(c, 0, h->arg);
    }
    rill__free(h);
}

void rill__conn_migrate_ready(rill_loop *l)
{
    struct rill__list *n = l->migrate_list.next, *next;
    for (; n != &l->migrate_list; n = next) {
        next = n->next;
        rill_conn *c = rill__container_of(n, rill_conn, migrate_link);
        if (l->ops->conn_busy(c) || c->wq_head || c->held_head || c->held_eof)
            continue; /* not quiet yet */
        struct handover *h = rill__malloc(sizeof *h);
        if (!h)
            continue;
        *h = (struct handover){c->fd,    c->family, c->socktype, c->h,
                               c->ctx,   c->opts,   c->mig_cb,   c->mig_arg};
        int r = rill__engine_push(l->engine, c->mig_target, adopt, h);
        if (r < 0) {
            rill__free(h);
            if (r != -EAGAIN) /* stopping: the move is cancelled with the connection */
                rill_close(c);
            continue; /* EAGAIN: the target's mailbox is full, next iteration */
        }
        l->ops->conn_detach(l, c);
        rill__conn_release_slot(c);
    }
}
