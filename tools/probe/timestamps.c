/* Software timestamps (--timestamps) split the client-to-server half of a round trip into:
 *   sender kernel    user send()            -> TX software stamp (the skb reaching the driver)
 *   path             TX software stamp      -> RX software stamp (the skb entering the stack)
 *   receiver kernel  RX software stamp      -> user recvmsg() returning
 * All stamps are CLOCK_REALTIME, which both threads share. SOF_TIMESTAMPING_OPT_TSONLY (4.10)
 * keeps the payload out of the error queue. AF_UNIX has no device and gives no TX stamp, so the
 * split exists only for TCP and UDP; a cell without stamps reports zero samples. */
#include <errno.h>
#include <time.h> /* before linux/errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "probe.h"

#define TS_CAP (1u << 20)

uint64_t probe_realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t ts_ns(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_nsec;
}

static uint64_t stamp_of(struct msghdr *m)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SO_TIMESTAMPING) {
            struct scm_timestamping st;
            memcpy(&st, CMSG_DATA(cm), sizeof st);
            return ts_ns(&st.ts[0]);
        }
    }
    return 0;
}

/* Software RX stamps are taken only while the kernel's netstamp static key is on. The first
 * socket asking for them turns it on from a workqueue (net_enable_timestamp defers the switch),
 * and the last one to close turns it off again, so a short cell would see its first packets,
 * or all of them, unstamped. A socket that keeps asking for the whole run, plus a datagram to
 * itself until one comes back stamped, keeps the key on and waits for it. */
static int warm_fd = -1;

static void warm_up(void)
{
    if (warm_fd >= 0)
        return;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int flags = SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE;
    warm_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (warm_fd < 0 || bind(warm_fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(warm_fd, (struct sockaddr *)&sa, &sl) < 0 ||
        connect(warm_fd, (struct sockaddr *)&sa, sl) < 0 ||
        setsockopt(warm_fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) < 0)
        return;
    /* This runs on the main thread, out of the watchdog's reach: a datagram to itself lost on
     * a loaded machine ends the warm-up instead of blocking the run. */
    struct timeval tmo = {.tv_usec = 200000};
    setsockopt(warm_fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
    for (int i = 0; i < 200; i++) {
        char byte = 0;
        union {
            char buf[256];
            struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                           .msg_controllen = sizeof control.buf};
        if (send(warm_fd, &byte, 1, 0) != 1 || recvmsg(warm_fd, &m, 0) != 1 || stamp_of(&m))
            return;
        struct timespec pause = {.tv_nsec = 1000000};
        nanosleep(&pause, NULL);
    }
}

int probe_ts_enable(struct probe_side *s)
{
    warm_up();
    struct probe_ts *t = &s->cell->ts;
    if (!t->cap) {
        uint64_t cap = s->cell->opts->max_ops < TS_CAP ? s->cell->opts->max_ops : TS_CAP;
        t->user_send = calloc(cap, sizeof(uint64_t));
        t->kernel_tx = calloc(cap, sizeof(uint64_t));
        t->kernel_rx = calloc(cap, sizeof(uint64_t));
        t->user_recv = calloc(cap, sizeof(uint64_t));
        if (!t->user_send || !t->kernel_tx || !t->kernel_rx || !t->user_recv)
            return -ENOMEM;
        t->cap = cap;
    }
    int flags = SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_TSONLY |
                (s->is_client ? SOF_TIMESTAMPING_TX_SOFTWARE : SOF_TIMESTAMPING_RX_SOFTWARE);
    if (setsockopt(s->fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) < 0)
        return -errno;
    s->ts_on = true;
    return 0;
}

void probe_ts_record_send(struct probe_side *s, uint64_t op, uint64_t user_send_ns)
{
    if (op < s->cell->ts.cap)
        s->cell->ts.user_send[op] = user_send_ns;
}

/* Reads the error queue to empty (counted calls); the first TX stamp belongs to this op.
 *
 * Only TCP and UDP have an error queue. An AF_UNIX socket ignores MSG_ERRQUEUE and makes the
 * call a zero-length read of the data itself: it returns 0 without consuming anything whenever
 * data is queued (the rest of a reply read short) or the peer has shut down, forever. So a read
 * ends the loop unless the kernel marks it as taken from the error queue, and the loop has a
 * bound: the queue holds one stamp per send, and this runs after every reply. */
void probe_ts_collect_tx(struct probe_side *s, uint64_t op)
{
    uint64_t first = 0;
    for (int i = 0; i < 64; i++) {
        union {
            char buf[512];
            struct cmsghdr align;
        } control;
        struct msghdr m = {.msg_control = control.buf, .msg_controllen = sizeof control.buf};
        if (PROBE_SYS(s, recvmsg(s->fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT)) < 0 ||
            !(m.msg_flags & MSG_ERRQUEUE))
            break;
        uint64_t t = stamp_of(&m);
        if (!first)
            first = t;
    }
    if (op < s->cell->ts.cap)
        s->cell->ts.kernel_tx[op] = first;
}

void probe_ts_from_cmsg(struct probe_side *s, void *msghdr, uint64_t op)
{
    uint64_t now = probe_realtime_ns();
    if (op >= s->cell->ts.cap)
        return;
    s->cell->ts.kernel_rx[op] = stamp_of(msghdr);
    s->cell->ts.user_recv[op] = now;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

void probe_ts_summarise(struct probe_cell *c)
{
    struct probe_ts *t = &c->ts;
    uint64_t n = c->res.ops < t->cap ? c->res.ops : t->cap, k = 0;
    uint64_t *part[3];
    for (int i = 0; i < 3; i++)
        part[i] = calloc(n ? n : 1, sizeof(uint64_t));
    for (uint64_t i = 0; part[0] && part[1] && part[2] && i < n; i++) {
        uint64_t us = t->user_send[i], tx = t->kernel_tx[i], rx = t->kernel_rx[i];
        uint64_t ur = t->user_recv[i];
        if (!us || !tx || !rx || !ur || tx < us || rx < tx || ur < rx)
            continue;
        part[0][k] = tx - us;
        part[1][k] = rx - tx;
        part[2][k] = ur - rx;
        k++;
    }
    c->res.ts_samples = k;
    if (k) {
        for (int i = 0; i < 3; i++)
            qsort(part[i], k, sizeof(uint64_t), cmp_u64);
        c->res.ts_sender_ns = part[0][(k - 1) / 2];
        c->res.ts_path_ns = part[1][(k - 1) / 2];
        c->res.ts_receiver_ns = part[2][(k - 1) / 2];
    }
    for (int i = 0; i < 3; i++)
        free(part[i]);
    free(t->user_send);
    free(t->kernel_tx);
    free(t->kernel_rx);
    free(t->user_recv);
    memset(t, 0, sizeof *t);
}
