/* io_uring availability and per-feature probing, with the reason when something is missing.
 *
 * Debian's liburing is 2.3 while kernels move on, so every flag or opcode newer than the library
 * is defined here behind #ifndef and every one is probed before use. Setup tries the best flags
 * first and steps down: SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1: task work runs only when we
 * enter the kernel, in our thread, batched), then COOP_TASKRUN | TASKRUN_FLAG (5.19), then none.
 *
 * The reasons are worded for the one log line an automatic loop prints when it falls back to
 * epoll: the usual causes are a seccomp filter (container runtimes return ENOSYS or EPERM for
 * io_uring_setup), a security module (SELinux's io_uring class, AppArmor), the
 * kernel.io_uring_disabled sysctl (EPERM, Linux 6.6), and the locked-memory limit on older
 * kernels that charge rings to RLIMIT_MEMLOCK (ENOMEM). EPERM alone does not say which of the
 * first three refused, so the sysctl is read: only when it is non-zero is it named as the cause. */
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define URING_SYSCTL "/proc/sys/kernel/io_uring_disabled"

const char *rill__uring_setup_reason_for(int err, int sysctl, char *buf, size_t cap)
{
    if (!buf || cap == 0)
        return "";
    int e = err < 0 ? -err : err;
    /* strerrorname_np/strerrordesc_np (glibc 2.32) return constant strings, NULL when unknown. */
    const char *name = strerrorname_np(e), *desc = strerrordesc_np(e);
    switch (e) {
    case ENOSYS:
        snprintf(buf, cap, "io_uring_setup is blocked (ENOSYS: a seccomp filter, as container "
                           "runtimes install, or a kernel built without io_uring)");
        break;
    case EPERM:
        /* The kernel (io_uring_allowed(), Linux 6.6): at 2 nobody may create a ring; at 1 only
         * CAP_SYS_ADMIN and the members of kernel.io_uring_group (default -1: no group). */
        if (sysctl == 0)
            snprintf(buf, cap, "a seccomp filter or a security module refused io_uring_setup "
                               "(EPERM; not the kernel.io_uring_disabled sysctl, which is 0)");
        else if (sysctl < 0)
            snprintf(buf, cap, "a seccomp filter or a security module refused io_uring_setup "
                               "(EPERM; kernel.io_uring_disabled is absent or unreadable: the "
                               "sysctl exists from Linux 6.6)");
        else if (sysctl == 1)
            snprintf(buf, cap, "io_uring is limited by the kernel.io_uring_disabled sysctl (1) "
                               "to CAP_SYS_ADMIN and the group kernel.io_uring_group names, and "
                               "this process is not in that group (EPERM)");
        else
            snprintf(buf, cap, "io_uring is disabled for everyone by the kernel.io_uring_disabled "
                               "sysctl (%d; EPERM)", sysctl);
        break;
    case ENOMEM:
        snprintf(buf, cap, "the locked-memory limit is too low for the ring (ENOMEM: raise "
                           "RLIMIT_MEMLOCK, ulimit -l)");
        break;
    case EMFILE:
    case ENFILE:
        snprintf(buf, cap, "out of file descriptors for the ring: %s (%s)", name, desc);
        break;
    default:
        if (name && desc)
            snprintf(buf, cap, "io_uring_setup failed: %s (%s)", name, desc);
        else
            snprintf(buf, cap, "io_uring_setup failed: errno %d", e);
        break;
    }
    return buf;
}

int rill__uring_disabled_sysctl(void)
{
    int fd = open(URING_SYSCTL, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char text[16];
    ssize_t n;
    do
        n = read(fd, text, sizeof text - 1);
    while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return -1;
    text[n] = '\0';
    int v = 0, digits = 0;
    for (const char *p = text; *p >= '0' && *p <= '9' && v < 1000; p++, digits++)
        v = v * 10 + (*p - '0');
    return digits ? v : -1;
}

const char *rill__uring_setup_reason(int err)
{
    /* Thread-local: several threads create loops at once (rill_engine). */
    static _Thread_local char buf[256];
    int e = err < 0 ? -err : err;
    return rill__uring_setup_reason_for(err, e == EPERM ? rill__uring_disabled_sysctl() : -1,
                                        buf, sizeof buf);
}

#ifdef RILL_HAVE_LIBURING

#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif

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

#endif
