/* B4, peer-uring: a hand-written liburing echo server, the floor for rill's io_uring backend
 * ("abstraction cost": rill on io_uring against this).
 *
 * One ring per thread, created with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
 * (Linux 6.1), falling back to IORING_SETUP_COOP_TASKRUN (5.19) and then to no flags when the
 * kernel refuses. Each thread has its own SO_REUSEPORT listener with one multishot accept
 * (5.19), and every connection one multishot recv (6.0) that picks buffers from a provided
 * buffer ring (5.19) registered with io_uring_register_buf_ring (liburing 2.3 has no
 * io_uring_setup_buf_ring, so the ring memory is mmap'd here).
 *
 * The echo: a received buffer is queued on its connection and sent back from where it lies
 * (no copy). One send is in flight per connection at a time, because two sends on one stream
 * socket may complete out of order when the first one is short; a short send is resubmitted
 * for the rest. A buffer goes back to the buffer ring once all its bytes are sent. When the ring
 * runs dry, a multishot recv ends with -ENOBUFS; that connection waits on a list and its recv
 * is re-armed once buffers come back: memory stays bounded by the buffer ring. */
#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_common.h"

#define RING_ENTRIES 1024
#define CQ_ENTRIES 8192
#define NBUFS 1024          /* buffers in each thread's buffer ring (a power of 2) */
#define BUF_SIZE (16 * 1024)
#define BGID 0
#define NO_BID 0xffffu

enum { OP_RECV = 0, OP_SEND = 1, OP_ACCEPT = 2, OP_MASK = 3 };

struct conn {
    int fd;
    bool recv_armed, send_inflight, closing, waiting_bufs;
    uint16_t head, tail; /* queue of received buffers to send back, linked by next_bid[] */
    struct conn *next_wait;
};

struct worker {
    int index;
    const struct peer_opts *o;
    int listen_fd[2];
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    char *bufs;
    int returned; /* buffers added to the buffer ring since its tail was last published */
    uint16_t next_bid[NBUFS];
    uint32_t buf_off[NBUFS], buf_len[NBUFS];
    struct conn *wait_head; /* connections whose recv stopped for lack of buffers */
};

static struct io_uring_sqe *get_sqe(struct worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    if (!sqe) {
        /* The submission queue is full: submit what is there and take a fresh entry. */
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
        if (!sqe) {
            fprintf(stderr, "peer-uring: no SQE after submit\n");
            exit(1);
        }
    }
    return sqe;
}

static void arm_accept(struct worker *w, int i)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_multishot_accept(sqe, w->listen_fd[i], NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ((uint64_t)i << 2) | OP_ACCEPT);
}

static void arm_recv(struct worker *w, struct conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_RECV);
    c->recv_armed = true;
}

static void send_head(struct worker *w, struct conn *c)
{
    uint16_t bid = c->head;
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_send(sqe, c->fd, w->bufs + (size_t)bid * BUF_SIZE + w->buf_off[bid],
                       w->buf_len[bid], MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_SEND);
    c->send_inflight = true;
}

static void recycle(struct worker *w, uint16_t bid)
{
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, bid,
                          io_uring_buf_ring_mask(NBUFS), w->returned++);
}

static uint16_t pop(struct worker *w, struct conn *c)
{
    uint16_t bid = c->head;
    c->head = w->next_bid[bid];
    if (c->head == NO_BID)
        c->tail = NO_BID;
    return bid;
}

/* Frees the connection once nothing of it is in flight. */
static void maybe_free(struct worker *w, struct conn *c)
{
    if (!c->closing || c->recv_armed || c->send_inflight || c->waiting_bufs)
        return;
    while (c->head != NO_BID)
        recycle(w, pop(w, c));
    close(c->fd);
    free(c);
}

/* Starts closing: a recv still armed is ended by shutting the socket down (it completes with
 * 0), which is simpler than a cancel and just as final for an echo server. */
static void start_close(struct worker *w, struct conn *c)
{
    if (!c->closing) {
        c->closing = true;
        if (c->recv_armed)
            shutdown(c->fd, SHUT_RDWR);
    }
    maybe_free(w, c);
}

static void on_accept(struct worker *w, struct io_uring_cqe *cqe, int li)
{
    /* The multishot ended (an error, or the CQ overflowed): re-arm. On EMFILE this retries at
     * once, where a production server would back off on a timer (nginx does); a benchmark peer
     * runs with a descriptor limit above its connection count. */
    if (!(cqe->flags & IORING_CQE_F_MORE))
        arm_accept(w, li);
    if (cqe->res < 0) {
        if (cqe->res != -ECONNABORTED)
            fprintf(stderr, "peer-uring: accept: %s\n", strerror(-cqe->res));
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(cqe->res);
        return;
    }
    c->fd = cqe->res;
    c->head = c->tail = NO_BID;
    peer_nodelay(c->fd);
    arm_recv(w, c);
}

static void on_recv(struct worker *w, struct conn *c, struct io_uring_cqe *cqe)
{
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more)
        c->recv_armed = false;
    if (cqe->res > 0) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        if (c->closing) {
            recycle(w, bid);
            if (!more)
                maybe_free(w, c);
        } else {
            w->buf_off[bid] = 0;
            w->buf_len[bid] = (uint32_t)cqe->res;
            w->next_bid[bid] = NO_BID;
            if (c->tail == NO_BID)
                c->head = bid;
            else
                w->next_bid[c->tail] = bid;
            c->tail = bid;
            if (!c->send_inflight)
                send_head(w, c);
            if (!more)
                arm_recv(w, c);
        }
    } else if (cqe->res == -ENOBUFS && !c->closing) {
        /* The buffer ring ran dry: wait until sends give buffers back. */
        c->waiting_bufs = true;
        c->next_wait = w->wait_head;
        w->wait_head = c;
    } else if (!more) {
        start_close(w, c); /* 0: the peer closed; < 0: an error. c may be freed now. */
    }
}

static void on_send(struct worker *w, struct conn *c, struct io_uring_cqe *cqe)
{
    c->send_inflight = false;
    if (cqe->res < 0 || c->closing) {
        start_close(w, c);
        return;
    }
    uint16_t bid = c->head;
    w->buf_off[bid] += (uint32_t)cqe->res;
    w->buf_len[bid] -= (uint32_t)cqe->res;
    if (w->buf_len[bid] == 0)
        recycle(w, pop(w, c));
    if (c->head != NO_BID)
        send_head(w, c); /* the rest of a short send, or the next buffer */
}

static void setup_ring(struct worker *w)
{
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int r = -EINVAL;
    for (unsigned i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p = {.flags = tries[i] | IORING_SETUP_CQSIZE,
                                    .cq_entries = CQ_ENTRIES};
        r = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
        if (r == 0) {
            if (w->index == 0 && i > 0)
                fprintf(stderr, "peer-uring: kernel refused DEFER_TASKRUN; using flags 0x%x\n",
                        tries[i]);
            break;
        }
        if (r != -EINVAL)
            break;
    }
    if (r < 0) {
        errno = -r;
        peer_die(w->o, "io_uring_queue_init_params");
    }
    io_uring_register_ring_fd(&w->ring); /* saves an fd lookup per enter; optional */

    size_t ring_bytes = NBUFS * sizeof(struct io_uring_buf);
    w->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    w->bufs = mmap(NULL, (size_t)NBUFS * BUF_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->br == MAP_FAILED || w->bufs == MAP_FAILED)
        peer_die(w->o, "mmap");
    struct io_uring_buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)w->br,
                                   .ring_entries = NBUFS, .bgid = BGID};
    r = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (r < 0) {
        errno = -r;
        peer_die(w->o, "io_uring_register_buf_ring (needs Linux 5.19)");
    }
    io_uring_buf_ring_init(w->br);
    for (int i = 0; i < NBUFS; i++)
        recycle(w, (uint16_t)i);
    io_uring_buf_ring_advance(w->br, w->returned);
    w->returned = 0;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    peer_pin(w->o, w->index);
    setup_ring(w);
    for (int i = 0; i < 2; i++)
        if (w->listen_fd[i] >= 0)
            arm_accept(w, i);
    for (;;) {
        int r = io_uring_submit_and_wait(&w->ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            errno = -r;
            peer_die(w->o, "io_uring_submit_and_wait");
        }
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe) {
            n++;
            uint64_t ud = cqe->user_data;
            struct conn *c = (struct conn *)(uintptr_t)(ud & ~(uint64_t)OP_MASK);
            switch (ud & OP_MASK) {
            case OP_ACCEPT:
                on_accept(w, cqe, (int)(ud >> 2));
                break;
            case OP_RECV:
                on_recv(w, c, cqe);
                break;
            case OP_SEND:
                on_send(w, c, cqe);
                break;
            }
        }
        io_uring_cq_advance(&w->ring, n);
        if (w->returned) {
            io_uring_buf_ring_advance(w->br, w->returned);
            w->returned = 0;
            /* Buffers are back: connections that ran dry receive again. */
            struct conn *c = w->wait_head;
            w->wait_head = NULL;
            while (c) {
                struct conn *next = c->next_wait;
                c->waiting_bufs = false;
                if (c->closing)
                    maybe_free(w, c);
                else
                    arm_recv(w, c);
                c = next;
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static struct peer_opts o;
    peer_parse(&o, "peer-uring", argc, argv);
    /* Say plainly, before announcing anything, when io_uring cannot run here at all (seccomp:
     * ENOSYS, kernel.io_uring_disabled: EPERM, locked memory: ENOMEM); exit 3 tells a script or
     * test to skip this peer rather than count it as broken. */
    struct io_uring probe;
    int pr = io_uring_queue_init(2, &probe, 0);
    if (pr < 0) {
        fprintf(stderr, "peer-uring: io_uring unavailable: %s\n", strerror(-pr));
        return 3;
    }
    io_uring_queue_exit(&probe);
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
