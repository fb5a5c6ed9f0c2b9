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
#define RILL_DGRAM_BUDGET 256u          /* datagrams received per socket per iteration */

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

/* A datagram socket. As with connections, each backend keeps its own per-socket state in a
 * struct that embeds this one first (backend.h, dgram_size). */
struct rill_dgram {
    rill_loop *loop;
    int fd;
    uint32_t id;                 /* cookie identity: serial number on this loop */
    int family, socktype;
    bool connected;
    bool closing;
    bool unlink_path;            /* remove the unix socket file at close */
    bool gro;                    /* UDP_GRO on: receives may hold several datagrams */
    struct rill_dgram_handler h;
    void *ctx;
    uint32_t max_dgram, batch;
    size_t wq_limit, wq_bytes;
    int close_status;

    /* Queued, not yet handed to the kernel. */
    struct rill__dgram_tx *tx_head, **tx_tail;
    /* Finished (sent, failed or cancelled) sends whose callbacks run at the flush point, so that
     * no callback ever runs inside rill_dgram_sendto or the backend's submission walk. */
    struct rill__dgram_tx *done_head, **done_tail;
    struct sockaddr_storage local;
    socklen_t local_len;

    struct rill__list link;      /* on l->dgrams */
    struct rill__list work;      /* on l->dgram_flush (sends or callbacks due) */
    struct rill__list rlink;     /* on l->dgram_read or l->dgram_starved */

    /* A peer given by name (dgram.c): the lookup in progress, with what the socket's set-up
     * needs once it answers. fd is -1 until then. */
    struct rill__dgram_dial *dial;
};

/* Control room a receive offers: enough for UDP_GRO's segment size when it is on. */
#define RILL__DGRAM_CTL 32u
/* RILL_CAP_UDP_GSO | RILL_CAP_UDP_GRO as this kernel supports them (probed once). */
uint32_t rill__udp_offload_caps(void);

/* Closes every datagram socket of the loop: on_close gets status (-ECANCELED when the loop is
 * destroyed, 0 when an engine stops gracefully). */
void rill__dgram_close_all(rill_loop *l, int status);

#include "upcall.h"

#endif
