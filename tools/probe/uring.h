/* The io_uring side state shared by strategies_uring.c and zerocopy.c (SEND_ZC). Every
 * io_uring_enter goes through ur_enter, which counts it as one system call: liburing 2.3's
 * io_uring_submit_and_wait enters exactly once when it has SQEs to submit or a wait count. */
#ifndef RILL_PROBE_URING_H
#define RILL_PROBE_URING_H

#ifdef RILL_HAVE_LIBURING
#include <liburing.h>

#include "probe.h"

/* user_data of each kind of request. */
enum { UD_SEND = 1, UD_RECV, UD_MSHOT, UD_ZC };

/* Newer than liburing 2.3's headers: SEND_ZC's usage report came in Linux 6.2. */
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

#define UR_ZC_SLOTS 16

struct ur_state {
    struct io_uring ring;
    bool ring_ok;
    bool send_done, recv_done;
    int send_res, recv_res;
    unsigned recv_pending; /* one-shot recvs in flight (batch receiver) */
    unsigned send_pending; /* sends in flight (batch sender) */
    uint64_t recv_bytes, send_bytes; /* sums over completions, for the batch loops */
    unsigned send_cqes, recv_msgs;
    bool mshot_eof; /* the multishot recv saw the end; rx_avail may still hold messages */
    int mshot_err;
    int send_err, recv_err;
    bool recv_eof;
    /* Multishot recv on a provided-buffer ring. */
    struct io_uring_buf_ring *br;
    size_t br_bytes, buf_sz;
    unsigned nbufs;
    unsigned char *bufs;
    bool mshot_armed;
    /* uring-bundle: one recv fills several ring buffers (IORING_RECVSEND_BUNDLE, 6.10);
     * uring-inc: the ring's buffers are consumed piece by piece (IOU_PBUF_RING_INC, 6.12), and
     * a buffer goes back only when a completion leaves it (no IORING_CQE_F_BUF_MORE). */
    bool bundle, inc;
    uint32_t inc_off[32]; /* uring-inc: where the next piece of each buffer starts */
    uint64_t rx_avail;  /* stream bytes received and not yet taken as a message */
    uint64_t rx_msgs;   /* datagrams received and not yet taken */
    unsigned char *rxbuf; /* a receive area apart from the send buffer (batch) */
    /* SEND_ZC: one slot per buffer in flight; a slot is free once its notification came. */
    bool zc_busy[UR_ZC_SLOTS];
    unsigned zc_inflight;
    bool zc_report; /* IORING_SEND_ZC_REPORT_USAGE accepted by the kernel */
    unsigned char *zcbuf; /* UR_ZC_SLOTS send buffers */
};

int ur_thread_init(struct probe_side *s);
void ur_fini(struct probe_side *s);
int ur_enter(struct probe_side *s, unsigned wait_nr);
void ur_reap(struct probe_side *s);
struct io_uring_sqe *ur_sqe(struct probe_side *s);
enum probe_status ur_check(const struct probe_cell *c, char *why, size_t n);
ssize_t ur_recv_into(struct probe_side *s, unsigned char *buf, size_t off, size_t len);
ssize_t ur_send_from(struct probe_side *s, const unsigned char *buf, size_t off, size_t len);
int ur_wait_flag(struct probe_side *s, const bool *flag);
/* zerocopy.c: handles a SEND_ZC completion or notification CQE. */
void ur_zc_cqe(struct probe_side *s, const struct io_uring_cqe *cqe);
#endif

#endif
