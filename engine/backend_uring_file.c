/* The io_uring backend's file sends (rill_send_file; see backend_uring.c for the backend as a
 * whole).
 *
 * A file at the head of the write queue goes out with non-blocking sendfile(2) from the flush
 * point, as many calls as the turn's budget allows, and when the socket is full (EAGAIN) a
 * one-shot IORING_OP_POLL_ADD for POLLOUT brings the connection back. Why not
 * IORING_OP_SPLICE file -> pipe -> socket: splice is not a non-blocking operation in io_uring
 * (io_uring/splice.c forces it to the io-wq worker pool), so each step costs a worker thread's
 * wake-up and two completions, where sendfile from the ring's own thread costs one system call
 * and moves the same page-cache pages (sendfile is the same splice inside the kernel, through
 * the task's internal pipe). BENCHMARKS.md ("File sends") has the comparison.
 *
 * Per-connection state is in struct u_conn (uring.h): file_poll says the POLLOUT poll is in
 * flight (counted in the connection's inflight, so close cancels it by descriptor and the slot
 * waits for its -ECANCELED). */
#include <errno.h>
#include <poll.h>

#include "backend.h"
#include "conn.h"
#include "cookie.h"
#include "sys.h"
#include "uring.h"

#ifdef RILL_HAVE_LIBURING

/* Waits for the socket to take more. */
static void file_arm_poll(struct uring_loop *u, rill_conn *c)
{
    struct io_uring_sqe *sqe = rill__uring_get_sqes(u, 1);
    if (!sqe) {
        rill__conn_mark_flush(c); /* no room: try the send again next iteration */
        return;
    }
    io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
    io_uring_sqe_set_data64(sqe, rill__cookie(RILL__OP_FILE_POLL, c->gen, c->slot));
    uc(c)->file_poll = true;
    u_op_start(c);
}

bool rill__uring_send_file(struct uring_loop *u, rill_conn *c)
{
    rill_loop *l = &u->base;
    size_t budget = RILL_WRITE_BUDGET;
    int fd;
    uint64_t off;
    size_t len;
    while (!(c->state & RILL__C_CLOSING) && rill__conn_wq_file(c, &fd, &off, &len)) {
        bool injected;
        size_t want = len < budget ? len : budget;
        ssize_t r = rill__sys_sendfile(&l->stats, c->fd, fd, off, want, &injected);
        if (r == -EAGAIN && !injected) {
            file_arm_poll(u, c);
            return false;
        }
        if (r == -EAGAIN || r == -EINTR) {
            rill__conn_mark_flush(c); /* a pretended one: no poll would fire */
            return false;
        }
        if (r < 0) {
            rill__conn_fail(c, (int)r);
            return false;
        }
        /* A short count may be a full socket or the file's end; the next call tells them
         * apart (EAGAIN, or 0 which file_sent turns into -ENODATA). */
        rill__conn_file_sent(c, (size_t)r);
        if (r == 0)
            return false;
        if (budget <= (size_t)r) {
            rill__conn_mark_flush(c); /* fairness: the rest goes next iteration */
            return false;
        }
        budget -= (size_t)r;
    }
    return !(c->state & RILL__C_CLOSING) && c->wq_head;
}

void rill__uring_on_file_poll(rill_conn *c, int res)
{
    (void)res; /* POLLOUT, an error or hang-up (the next sendfile reports it), or -ECANCELED */
    uc(c)->file_poll = false;
    if (!(c->state & RILL__C_CLOSING) && c->wq_head)
        rill__conn_mark_flush(c);
    u_op_end(c);
}

#endif /* RILL_HAVE_LIBURING */
