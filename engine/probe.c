/* io_uring availability and per-feature probing, with the reason when something is missing.
 *
 * Debian's liburing is 2.3 while kernels move on, so every flag or opcode newer than the library
 * is defined here behind #ifndef and every one is probed before use. Setup tries the best flags
 * first and steps down: SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1: task work runs only when we
 * enter the kernel, in our thread, batched), then COOP_TASKRUN | TASKRUN_FLAG (5.19), then none.
 *
 * The reasons are worded for the one log line an automatic loop prints when it falls back to
 * epoll: the usual causes are a seccomp filter (container runtimes return ENOSYS for
 * io_uring_setup), the kernel.io_uring_disabled sysctl (EPERM), and the locked-memory limit on
 * older kernels that charge rings to RLIMIT_MEMLOCK (ENOMEM). */
#include "probe.h"

#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef RILL_HAVE_LIBURING

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

const char *rill__uring_setup_reason(int err)
{
    switch (err) {
    case -ENOSYS:
        return "io_uring_setup is blocked (ENOSYS: a seccomp filter, as container runtimes "
               "install, or a kernel built without io_uring)";
    case -EPERM:
        return "io_uring is disabled by the kernel.io_uring_disabled sysctl (EPERM)";
    case -ENOMEM:
        return "the locked-memory limit is too low for the ring (ENOMEM: raise RLIMIT_MEMLOCK, "
               "ulimit -l)";
    case -EMFILE:
    case -ENFILE:
        return "out of file descriptors for the ring";
    default:
        return "io_uring_setup failed";
    }
}

/* The opcodes the backend cannot work without, with the kernel that brought each. */
static const struct {
    int op;
    const char *name;
} needed_ops[] = {
    {IORING_OP_ACCEPT, "IORING_OP_ACCEPT (Linux 5.5)"},
    {IORING_OP_CONNECT, "IORING_OP_CONNECT (Linux 5.5)"},
    {IORING_OP_RECV, "IORING_OP_RECV (Linux 5.6)"},
    {IORING_OP_SEND, "IORING_OP_SEND (Linux 5.6)"},
    {IORING_OP_SENDMSG, "IORING_OP_SENDMSG (Linux 5.3)"},
    {IORING_OP_RECVMSG, "IORING_OP_RECVMSG (Linux 5.3)"},
    {IORING_OP_POLL_ADD, "IORING_OP_POLL_ADD (Linux 5.1)"},
    {IORING_OP_READ, "IORING_OP_READ (Linux 5.6)"},
    {IORING_OP_ASYNC_CANCEL, "IORING_OP_ASYNC_CANCEL (Linux 5.5)"},
    {IORING_OP_LINK_TIMEOUT, "IORING_OP_LINK_TIMEOUT (Linux 5.5)"},
    {IORING_OP_CLOSE, "IORING_OP_CLOSE (Linux 5.6)"},
};

static int probe_ops(struct io_uring *ring, uint32_t *caps, const char **why)
{
    struct io_uring_probe *p = io_uring_get_probe_ring(ring);
    if (!p) {
        *why = "the kernel cannot describe its io_uring opcodes (IORING_REGISTER_PROBE, Linux 5.6)";
        return -EOPNOTSUPP;
    }
    int r = 0;
    for (size_t i = 0; i < sizeof needed_ops / sizeof needed_ops[0]; i++) {
        if (!io_uring_opcode_supported(p, needed_ops[i].op)) {
            *why = needed_ops[i].name;
            r = -EOPNOTSUPP;
            break;
        }
    }
    if (r == 0 && io_uring_opcode_supported(p, IORING_OP_MSG_RING))
        *caps |= RILL_CAP_MSG_RING;
    io_uring_free_probe(p);
    return r;
}

int rill__uring_setup(struct io_uring *ring, unsigned entries, uint32_t disable, uint32_t *caps,
                      const char **why)
{
    /* R_DISABLED: a loop is often created on one thread and run on another, and a
     * SINGLE_ISSUER ring belongs to the task that enables it; rill__uring_bind() enables it on
     * the thread that first runs the loop. */
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
            IORING_SETUP_R_DISABLED,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
            IORING_SETUP_SUBMIT_ALL | IORING_SETUP_R_DISABLED,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        0,
    };
    int r = -EINVAL;
    unsigned used = 0;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        if ((disable & RILL_CAP_DEFER_TASKRUN) && (tries[i] & IORING_SETUP_DEFER_TASKRUN))
            continue; /* switched off: the COOP_TASKRUN set-up, as on a kernel before 6.1 */
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i];
        r = io_uring_queue_init_params(entries, ring, &p);
        if (r == 0) {
            used = tries[i];
            if (!(p.features & IORING_FEAT_NODROP)) {
                /* Without NODROP an overflowing completion queue loses completions (<5.5). */
                io_uring_queue_exit(ring);
                *why = "IORING_FEAT_NODROP (Linux 5.5)";
                return -EOPNOTSUPP;
            }
            break;
        }
        if (r != -EINVAL) /* only "flag unknown" is worth a weaker retry */
            break;
    }
    if (r < 0) {
        *why = rill__uring_setup_reason(r);
        return r;
    }
    *caps = RILL_CAP_MULTISHOT_ACCEPT | RILL_CAP_MULTISHOT_RECV | RILL_CAP_PROVIDED_BUFFERS |
            RILL_CAP_MULTISHOT_RECVMSG;
    if (used & IORING_SETUP_DEFER_TASKRUN)
        *caps |= RILL_CAP_DEFER_TASKRUN;
    if ((r = probe_ops(ring, caps, why)) < 0) {
        io_uring_queue_exit(ring);
        return r;
    }
    *caps &= ~disable;
    /* Multishot receive (recv and recvmsg) arrived in Linux 6.0, as did SINGLE_ISSUER: a kernel that refused
     * SINGLE_ISSUER is older, and its recv would reject IORING_RECV_MULTISHOT. (The weaker
     * set-ups above are still tried so the reason names the real gap.) */
    if (!(used & IORING_SETUP_SINGLE_ISSUER)) {
        io_uring_queue_exit(ring);
        *why = "multishot recv (Linux 6.0)";
        return -EOPNOTSUPP;
    }
    return 0;
}

int rill__uring_bind(struct io_uring *ring)
{
    /* Debian's liburing 2.3 declares io_uring_enable_rings() but does not export it, so the
     * register call is made directly. */
    long r = syscall(__NR_io_uring_register, ring->ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (r < 0 && errno != EBADFD) /* EBADFD: the ring was not created disabled */
        return -errno;
    /* A registered ring fd saves an fdget/fdput on every io_uring_enter (Linux 5.18). It is
     * registered per task, which is why this too waits for the loop's own thread. */
    io_uring_register_ring_fd(ring);
    return 0;
}

#else /* !RILL_HAVE_LIBURING */

const char *rill__uring_setup_reason(int err)
{
    (void)err;
    return "this build has no liburing";
}

#endif
