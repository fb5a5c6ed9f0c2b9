/* The upcalls (internal): every function a backend may call into the handles, and nothing else.
 *
 * backend.h is the other half of the seam: what the handles and the loop ask of a backend. A
 * backend calls only what this file lists (plus the ground: loop.h, slab.h, timer.h, sys.h,
 * cookie.h), and only from its own poll, flush or downcalls, on the loop's thread. Each upcall
 * may run embedder callbacks, so after any of them a handle may be closing: the ones that can
 * end a handle's reading or sending say what they return for that.
 *
 * Lifetime rule for every kind: a backend that has an operation in flight for a handle holds
 * the handle's slot; when the last one ends it calls rill__conn_put / rill__dgram_put, which free
 * the handle if it is closed and the backend reports it quiet (conn_busy / dgram_busy). */
#ifndef RILL_UPCALL_H
#define RILL_UPCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "rill.h"

struct rill_buf;
struct rill__dgram_tx;

/* ---- connections ------------------------------------------------------------------------- */

/* rill__conn_lookup(l, slot, gen) (inline, in conn.h): the connection a cookie names; NULL
 * when the slot is free or holds a newer generation. */

/* rill__conn_can_read(c) (inline, in conn.h): the connection may receive now: not paused, not
 * starved, no end of stream yet, not closing, connecting or migrating. A backend checks it
 * before it starts a receive. */

/* The bytes to lease for one message-mode receive (seqpacket: msg_max; else recv_buf_size). */
size_t rill__conn_rx_size(const rill_conn *c);

/* The connection is connected (a connect finished, or an accepted socket was registered): runs
 * on_open, and sends queued before it. */
void rill__conn_opened(rill_conn *c);

/* One receive finished, reported once: res > 0 bytes at buf->data (the backend keeps its own
 * reference; the embedder may take one), 0 the peer's end of stream, < 0 a receive error that
 * ends the connection. Transient results (EAGAIN, EINTR, ECANCELED, ENOBUFS) are the backend's
 * business and never come here. Data that reaches a paused connection is held, in order.
 * Returns: true while the connection may go on receiving (rill__conn_can_read). */
bool rill__conn_recv(rill_conn *c, struct rill_buf *buf, ssize_t res);

/* As rill__conn_recv() for len > 0 bytes at buf->data + off: a buffer that several receives
 * share (incremental buffer rings), whose other bytes may be other connections'. Data for a
 * paused connection is copied into a buffer of its own to be held (a lease that fails closes
 * the connection with -ENOBUFS). Returns: as rill__conn_recv(). */
bool rill__conn_recv_at(rill_conn *c, struct rill_buf *buf, uint32_t off, size_t len);

/* Message mode: one received message with its control data (descriptors are handed to on_fds
 * first, then the bytes). Returns false when the message ended the connection (a seqpacket
 * message or descriptors cut short: -EMSGSIZE). */
bool rill__conn_on_msg(rill_conn *c, struct rill_buf *buf, size_t len, const struct msghdr *m);

/* Urgent data was signalled (EPOLLPRI / POLLPRI): reads the byte and calls on_urgent.
 * Returns: true when the byte has not arrived yet (ask again when data next arrives). */
bool rill__conn_read_urgent(rill_conn *c);

/* Something failed for good (a connect, a send, a receive set-up): closes with status. */
void rill__conn_fail(rill_conn *c, int status);

/* The connection wants buffers the slab cannot give now: it waits, and its receive is resumed
 * (downcall recv_resume) once buffers come back. */
void rill__conn_starved(rill_conn *c);
/* Buffers came back: lets at most `max` starved connections try to receive again. */
void rill__conn_retry_starved(rill_loop *l, uint32_t max);

/* Sending. The backend gathers the head of the write queue into one sendmsg (iovecs, the
 * descriptors due with them, MSG_OOB for an urgent send; Returns the iovec count), and
 * reports what the kernel took: sent() completes entries in order with their callbacks and
 * checks the water marks (a callback may close the connection). */
unsigned rill__conn_wq_msg(rill_conn *c, struct msghdr *m, struct iovec *iov, unsigned max,
                           int *flags);
void rill__conn_sent(rill_conn *c, size_t n);
/* rill__conn_wq_file(c, &fd, &off, &len) (inline, in conn.h): the queue's head is a file
 * send (rill_send_file); the iovec gather above stops before one. The backend sends it with
 * sendfile(2) or splices and reports each step with file_sent(): n > 0 bytes went out; 0 means
 * the file ended first, which fails the connection (-ENODATA). A send error the backend passes
 * to rill__conn_fail. */
void rill__conn_file_sent(rill_conn *c, size_t n);
/* rill__conn_wq_one(c) (inline, in conn.h): the queue's head when it is one plain span that
 * send(2) can carry, else NULL (then use rill__conn_wq_msg). */
/* rill__conn_mark_flush(c) (inline, in conn.h): the connection has bytes to send (again); the
 * flush point calls the send downcall. */

/* A closing connection's send ended: its on_close may be due now (it waits while conn_busy
 * says the kernel may still read queued bytes). */
void rill__conn_close_ready(rill_conn *c);
/* The last operation the backend had in flight for the connection ended: frees the slot if the
 * connection is closed and quiet. */
void rill__conn_put(rill_conn *c);

/* ---- listeners ---------------------------------------------------------------------------- */

/* The listener a cookie names, or NULL once it is closed and gone. */
rill_listener *rill__listener_lookup(rill_loop *l, uint32_t id);
/* A connection was accepted: wraps fd and starts it (or closes fd when that fails). */
void rill__listener_on_accept(rill_listener *ls, int fd);
/* An accept error: EMFILE/ENFILE pause accepting and retry on a timer; others are counted. */
void rill__listener_on_accept_error(rill_listener *ls, int err);
/* Stops accepting for a while (RILL__EMFILE_RETRY_MS); the retry timer or a freed descriptor
 * restarts it through the listener_start downcall. */
void rill__listener_rest(rill_listener *ls);

/* ---- datagram sockets --------------------------------------------------------------------- */

/* The socket a cookie names, or NULL once it is closed and gone. */
rill_dgram *rill__dgram_lookup(rill_loop *l, uint32_t id);
/* A datagram arrived (data/len inside buf, which the caller still owns). msg_flags are the
 * kernel's (MSG_TRUNC); gro_size is the segment size of a coalesced receive, or 0. */
void rill__dgram_on_recv(rill_dgram *d, struct rill_buf *buf, const void *data, size_t len,
                         const struct sockaddr *from, socklen_t fromlen, int msg_flags,
                         uint32_t gro_size);
/* The segment size of a coalesced (UDP_GRO) receive in a control message, or 0. */
uint32_t rill__dgram_gro_size(const struct cmsghdr *cm);
/* A receive failed with err (an ICMP error); the socket goes on. */
void rill__dgram_on_error(rill_dgram *d, int err);
/* Sending: take the next queued datagram for submission, put one back at the head (the kernel
 * would not take it yet), and report one's result (bytes or -errno; its callback runs at the
 * flush point). */
struct rill__dgram_tx *rill__dgram_tx_pop(rill_dgram *d);
void rill__dgram_tx_unpop(rill_dgram *d, struct rill__dgram_tx *tx);
void rill__dgram_tx_done(rill_dgram *d, struct rill__dgram_tx *tx, int res);
/* More to send: the flush point calls the dgram_send downcall again. */
void rill__dgram_mark_flush(rill_dgram *d);
/* The socket could not lease receive buffers: it reads again (through l->dgram_read) once the
 * slab has had buffers back, because datagrams already queued raise no new readiness edge. */
void rill__dgram_starved(rill_dgram *d);
/* The last operation the backend had in flight for the socket ended: a closing socket's
 * on_close and free may run at the flush point now. */
void rill__dgram_put(rill_dgram *d);

/* ---- watched descriptors ------------------------------------------------------------------ */

/* rill__watch_lookup(l, id, gen) (loop.h, the ground): the watch a report names, or NULL when
 * it is gone or armed anew since. Then the backend calls w->fn(w, RILL__WATCH_* bits), which
 * may stop, change or free the watch. */

#endif
