/* Datagram sockets (internal): state shared by dgram.c and the backends.
 *
 * A datagram socket is simpler than a connection in one way (no stream to reassemble, no
 * half-close) and harder in two: every send is a separate message with its own address and its
 * own result, and every receive needs a buffer large enough for the largest datagram, because
 * the kernel cuts what does not fit. Sends wait on a FIFO until the flush point, where the
 * backend takes as many as it can in one go (sendmmsg, or one submission of SENDMSG SQEs). */
#ifndef RILL_DGRAM_H
#define RILL_DGRAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "loop.h"

#define RILL__DGRAM_MAX_IOV 64u         /* iovecs in one datagram */
#define RILL__DGRAM_MAX_BATCH 256u      /* recvmmsg vector / buffer ring size, at most */
#define RILL__DGRAM_TX_INFLIGHT 64u     /* completion backend: SENDMSGs in flight per socket */
#define RILL_DGRAM_BUDGET 256u          /* datagrams received per socket per iteration */

struct io_uring_buf_ring;

/* One queued datagram. The msghdr points into the entry itself, so the kernel can read it until
 * the send completes (a completion backend submits it after rill_dgram_sendto has returned). */
struct rill__dgram_tx {
    struct rill__dgram_tx *next;
    rill_dgram_send_cb cb;
    void *ctx;
    size_t len;                  /* payload bytes */
    int status;                  /* result, once known */
    struct msghdr msg;
    struct sockaddr_storage to;
    struct iovec iov[];          /* msg.msg_iovlen of them */
};

struct rill_dgram {
    rill_loop *loop;
    int fd;
    uint32_t id;                 /* cookie identity: serial number on this loop */
    int family, socktype;
    bool connected;
    bool closing;
    bool rd_ready;               /* readiness backend: datagrams may be waiting */
    bool wr_blocked;             /* readiness backend: sendmmsg hit EAGAIN; waiting for EPOLLOUT */
    bool recv_armed;             /* completion backend: a multishot recvmsg is in flight */
    bool unlink_path;            /* remove the unix socket file at close */
    bool gro;                    /* UDP_GRO on: receives may hold several datagrams */
    struct rill_dgram_handler h;
    void *ctx;
    uint32_t max_dgram, batch;
    size_t wq_limit, wq_bytes;
    int close_status;
    uint32_t inflight;           /* completion backend: operations in flight */

    /* Queued, not yet handed to the kernel. */
    struct rill__dgram_tx *tx_head, **tx_tail;
    /* Finished (sent, failed or cancelled) sends whose callbacks run at the flush point, so that
     * no callback ever runs inside rill_dgram_sendto or the backend's submission walk. */
    struct rill__dgram_tx *done_head, **done_tail;
    /* Completion backend: SENDMSGs in flight, by the small index carried in their cookies. */
    struct rill__dgram_tx *tx_slot[RILL__DGRAM_TX_INFLIGHT];
    uint32_t tx_inflight;

    /* Readiness backend: receive buffers leased ahead for the next recvmmsg. */
    struct rill_buf **rx_bufs;

    /* Completion backend: this socket's own provided buffer ring, sized for its datagrams (the
     * loop's ring holds stream-sized buffers). */
    struct io_uring_buf_ring *br;
    struct rill_buf **br_bufs;
    uint16_t bgid;
    uint32_t br_entries, br_count;
    struct msghdr rmsg;          /* the multishot recvmsg's template (name room, no control) */

    struct sockaddr_storage local;
    socklen_t local_len;

    struct rill__list link;      /* on l->dgrams */
    struct rill__list work;      /* on l->dgram_flush (sends or callbacks due) */
    struct rill__list rlink;     /* on l->dgram_read (budget spent, or buffers wanted) */
};

/* Lookup by cookie identity. NULL when closed and gone. */
rill_dgram *rill__dgram_lookup(rill_loop *l, uint32_t id);

/* Backends: a datagram arrived (data/len inside buf, which the caller still owns). msg_flags
 * are the kernel's (MSG_TRUNC). */
void rill__dgram_on_recv(rill_dgram *d, struct rill_buf *buf, const void *data, size_t len,
                         const struct sockaddr *from, socklen_t fromlen, int msg_flags,
                         uint32_t gro_size);
/* The segment size of a coalesced (UDP_GRO) receive in a control message, or 0. */
uint32_t rill__dgram_gro_size(const struct cmsghdr *cm);
/* Control room a receive offers: enough for UDP_GRO's segment size when it is on. */
#define RILL__DGRAM_CTL 32u
/* RILL_CAP_UDP_GSO | RILL_CAP_UDP_GRO as this kernel supports them (probed once). */
uint32_t rill__udp_offload_caps(void);
/* Backends: a receive failed with err; the socket goes on unless it is closing. */
void rill__dgram_on_error(rill_dgram *d, int err);
/* Backends: a send finished with res (bytes or -errno); its callback runs at the flush point. */
void rill__dgram_tx_done(rill_dgram *d, struct rill__dgram_tx *tx, int res);
/* Backends: the next queued datagram is taken off the queue for submission. */
struct rill__dgram_tx *rill__dgram_tx_pop(rill_dgram *d);
/* Backends: put a datagram back at the head (the kernel would not take it yet). */
void rill__dgram_tx_unpop(rill_dgram *d, struct rill__dgram_tx *tx);
/* Backends: mark the socket for the flush point (more to send, or callbacks due). */
void rill__dgram_mark_flush(rill_dgram *d);
/* Backends: an operation of this socket completed (completion backends count them). */
void rill__dgram_op_end(rill_dgram *d);

/* Backends: the socket could not lease receive buffers (the slab budget is spent). It waits on
 * the loop's starve list, and reads again once buffers have come back: datagrams already queued
 * raise no new readiness edge, and a dry buffer ring takes no new receive. */
void rill__dgram_starved(rill_dgram *d);
/* The flush point, once buffers came back since: starved sockets go to l->dgram_read, where
 * each backend reads (epoll) or refills and re-arms (io_uring) them. */
void rill__dgram_retry_starved(rill_loop *l);

/* The loop's flush point: sends and callbacks of every marked socket, then closes that are due. */
void rill__dgram_flush_all(rill_loop *l);
/* Closes every datagram socket of the loop: on_close gets status (-ECANCELED when the loop is
 * destroyed, 0 when an engine stops gracefully). */
void rill__dgram_close_all(rill_loop *l, int status);

#endif
