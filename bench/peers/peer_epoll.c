/* B1, peer-epoll: the "good epoll" echo server that rill's epoll backend must match.
 *
 * One loop per thread, each with its own SO_REUSEPORT listener. Edge-triggered throughout:
 * every socket is registered once with EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET when it is
 * accepted and never touched with epoll_ctl again (the edge-triggered EPOLLOUT costs nothing
 * while the socket stays writable: it only fires on a transition). Reads go until EAGAIN within a
 * per-wakeup budget; a connection that spends its budget goes on a ready list and is served
 * again after the others, so one fast client cannot starve the rest. Each chunk read is written
 * back inline with write(); only what a short write leaves over is copied into the connection's
 * pending buffer, and then reading stops (backpressure) until EPOLLOUT drains it. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_common.h"

#define READ_BUF (64 * 1024)
#define READ_BUDGET 16    /* reads per connection per turn before yielding to the others */
#define MAX_EVENTS 256
#define TAG_LISTENER ((uint64_t)1)

struct conn {
    int fd;
    bool ready;           /* on the ready list: more to read, budget spent */
    struct conn *next_ready;
    char *pend;           /* bytes a short write left over */
    size_t pend_off, pend_len, pend_cap;
};

struct worker {
    int index;
    int ep;
    int listen_fd[2];
    char buf[READ_BUF];
    struct conn *ready_head, *ready_tail;
    const struct peer_opts *o;
};

static void conn_close(struct conn *c)
{
    close(c->fd); /* also removes it from the epoll set */
    free(c->pend);
    c->fd = -1;
}

/* Writes out what is pending. Returns 1 when empty, 0 when the socket is full, -1 on error. */
static int flush_pending(struct conn *c)
{
    while (c->pend_len) {
        ssize_t n = write(c->fd, c->pend + c->pend_off, c->pend_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        c->pend_off += (size_t)n;
        c->pend_len -= (size_t)n;
    }
    c->pend_off = 0;
    return 1;
}

static int keep(struct conn *c, const char *p, size_t n)
{
    if (n > c->pend_cap) {
        char *q = realloc(c->pend, n);
        if (!q)
            return -1;
        c->pend = q;
        c->pend_cap = n;
    }
    memcpy(c->pend, p, n);
    c->pend_off = 0;
    c->pend_len = n;
    return 0;
}

/* Reads and echoes until EAGAIN, a short write, or the budget. Returns -1 when the connection
 * must close (EOF, error), 1 when the budget ran out with data maybe left, else 0. */
static int serve(struct worker *w, struct conn *c)
{
    for (int i = 0; i < READ_BUDGET; i++) {
        if (c->pend_len)
            return 0; /* wait for EPOLLOUT: the peer is not reading */
        ssize_t n = read(c->fd, w->buf, sizeof w->buf);
        if (n == 0)
            return -1;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t m = write(c->fd, w->buf + off, (size_t)n - off);
            if (m < 0) {
                if (errno == EINTR)
                    continue;
                if (errno != EAGAIN)
                    return -1;
                if (keep(c, w->buf + off, (size_t)n - off) < 0)
                    return -1;
                break;
            }
            off += (size_t)m;
        }
        if ((size_t)n < sizeof w->buf && !c->pend_len)
            return 0; /* a short read means the socket is drained (stream sockets) */
    }
    return c->pend_len ? 0 : 1;
}

static void make_ready(struct worker *w, struct conn *c)
{
    if (c->ready)
        return;
    c->ready = true;
    c->next_ready = NULL;
    if (w->ready_tail)
        w->ready_tail->next_ready = c;
    else
        w->ready_head = c;
    w->ready_tail = c;
}

static void handle(struct worker *w, struct conn *c)
{
    int r = serve(w, c);
    if (r < 0) {
        if (c->ready)
            return; /* closed when the ready list reaches it */
        conn_close(c);
        free(c);
        return;
    }
    if (r == 1)
        make_ready(w, c);
}

static void accept_all(struct worker *w, int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                perror("peer-epoll: accept4");
            return; /* EMFILE: the edge is lost; the next connection retries (a peer, not prod) */
        }
        peer_nodelay(fd);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

static void *run(void *arg)
{
    struct worker *w = arg;
    peer_pin(w->o, w->index);
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0)
        peer_die(w->o, "epoll_create1");
    for (int i = 0; i < 2; i++) {
        if (w->listen_fd[i] < 0)
            continue;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = TAG_LISTENER + (uint64_t)i};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, w->listen_fd[i], &ev) < 0)
            peer_die(w->o, "epoll_ctl(listener)");
    }
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, w->ready_head ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            peer_die(w->o, "epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            uint64_t u = evs[i].data.u64;
            if (u == TAG_LISTENER || u == TAG_LISTENER + 1) {
                accept_all(w, w->listen_fd[u - TAG_LISTENER]);
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (c->fd < 0)
                continue;
            if (e & EPOLLOUT) {
                int f = flush_pending(c);
                if (f < 0 && !c->ready) {
                    conn_close(c);
                    free(c);
                    continue;
                }
                if (f <= 0)
                    continue;
                /* Drained: read again, since reading stopped while bytes were pending and the
                 * edge for data that arrived meanwhile has already passed. */
            }
            if (!c->ready)
                handle(w, c);
        }
        /* One more turn for connections that spent their budget, in arrival order. */
        struct conn *c = w->ready_head;
        w->ready_head = w->ready_tail = NULL;
        while (c) {
            struct conn *next = c->next_ready;
            c->ready = false;
            handle(w, c);
            c = next;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static struct peer_opts o;
    peer_parse(&o, "peer-epoll", argc, argv);
    peer_bind_all(&o);
    struct worker *ws = calloc((size_t)o.threads, sizeof *ws);
    void *args[PEER_MAX_THREADS];
    if (!ws)
        peer_die(&o, "calloc");
    for (int i = 0; i < o.threads; i++) {
        ws[i].index = i;
        ws[i].o = &o;
        ws[i].listen_fd[0] = o.tcp_fd[i];
        ws[i].listen_fd[1] = i == 0 ? o.unix_fd : -1;
        args[i] = &ws[i];
    }
    peer_run_threads(&o, run, args);
    return 0;
}
