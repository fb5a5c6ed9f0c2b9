/* The system-call shim: see sys.h.
 *
 * Why one file: fault injection must reach every error path without luck, and counting system
 * calls per kind must be exact for rill-load's "syscalls per request". Keeping the raw calls here
 * makes both true by construction. The hook is read with a relaxed atomic load: tests install it
 * before starting loops, and a stale read costs at most one uninjected call. rill__sys_injected
 * is written only while a hook is installed (rill__sys_was_injected() reads it only then). */
#include "sys.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <time.h>
#include <unistd.h>

#define SHIM_MAX_IOV 64

_Thread_local int rill__sys_injected;
_Atomic bool rill__sys_hooked;
static _Atomic(rill__sys_hook_fn) hook_fn;
static void *_Atomic hook_arg;

void rill__sys_set_hook(rill__sys_hook_fn fn, void *arg)
{
    atomic_store(&hook_arg, arg);
    atomic_store(&hook_fn, fn);
    atomic_store(&rill__sys_hooked, fn != NULL);
}

/* Consults the hook. Returns 0 to proceed or the negative errno to inject. */
static inline int fault(enum rill__sys_call call, int fd, size_t *len)
{
    if (__builtin_expect(!atomic_load_explicit(&rill__sys_hooked, memory_order_relaxed), 1))
        return 0;
    rill__sys_hook_fn fn = atomic_load_explicit(&hook_fn, memory_order_relaxed);
    rill__sys_injected = 0;
    if (!fn)
        return 0;
    int e = fn(call, fd, len, atomic_load_explicit(&hook_arg, memory_order_relaxed));
    rill__sys_injected = e != 0;
    return e;
}

int rill__sys_inject(enum rill__sys_call call, int fd, size_t *len)
{
    int e = fault(call, fd, len);
    if (e == 0 && len && *len == 0)
        *len = 1;
    return e;
}

static inline int ret_or_errno(long r)
{
    return r < 0 ? -errno : (int)r;
}

int rill__sys_socket(struct rill_loop_stats *st, int family, int type, int proto)
{
    st->sys_other++;
    int e = fault(RILL__SYS_SOCKET, -1, NULL);
    return e ? e : ret_or_errno(socket(family, type, proto));
}

int rill__sys_bind(struct rill_loop_stats *st, int fd, const struct sockaddr *sa, socklen_t len)
{
    st->sys_other++;
    int e = fault(RILL__SYS_BIND, fd, NULL);
    return e ? e : ret_or_errno(bind(fd, sa, len));
}

int rill__sys_listen(struct rill_loop_stats *st, int fd, int backlog)
{
    st->sys_other++;
    int e = fault(RILL__SYS_LISTEN, fd, NULL);
    return e ? e : ret_or_errno(listen(fd, backlog));
}

int rill__sys_accept(struct rill_loop_stats *st, int fd, struct sockaddr *sa, socklen_t *len)
{
    st->sys_accept++;
    int e = fault(RILL__SYS_ACCEPT, fd, NULL);
    return e ? e : ret_or_errno(accept4(fd, sa, len, SOCK_NONBLOCK | SOCK_CLOEXEC));
}

int rill__sys_connect(struct rill_loop_stats *st, int fd, const struct sockaddr *sa,
                      socklen_t len)
{
    st->sys_connect++;
    int e = fault(RILL__SYS_CONNECT, fd, NULL);
    return e ? e : ret_or_errno(connect(fd, sa, len));
}

/* Copies iov into out, trimmed to `limit` bytes in total; returns the new count. Used only when
 * the hook asked for a short transfer. */
static int trim_iov(const struct iovec *iov, int n, size_t limit, struct iovec *out)
{
    int k = 0;
    for (int i = 0; i < n && i < SHIM_MAX_IOV && limit > 0; i++) {
        out[k] = iov[i];
        if (out[k].iov_len > limit)
            out[k].iov_len = limit;
        limit -= out[k].iov_len;
        k++;
    }
    return k;
}

static size_t iov_total(const struct iovec *iov, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

ssize_t rill__sys_readv(struct rill_loop_stats *st, int fd, const struct iovec *iov, int iovcnt)
{
    st->sys_read++;
    if (__builtin_expect(atomic_load_explicit(&rill__sys_hooked, memory_order_relaxed), 0)) {
        size_t want = iov_total(iov, iovcnt), len = want;
        int e = fault(RILL__SYS_READV, fd, &len);
        if (e)
            return e;
        if (len == 0)
            len = 1; /* a zero-byte read would look like end of stream */
        if (len < want) {
            struct iovec tmp[SHIM_MAX_IOV];
            int k = trim_iov(iov, iovcnt, len, tmp);
            rill__sys_injected = 1;
            ssize_t r = readv(fd, tmp, k);
            return r < 0 ? -errno : r;
        }
    }
    /* One buffer: read(2), which the kernel serves without copying in an iovec array. */
    ssize_t r = iovcnt == 1 ? read(fd, iov[0].iov_base, iov[0].iov_len) : readv(fd, iov, iovcnt);
    return r < 0 ? -errno : r;
}

ssize_t rill__sys_sendmsg(struct rill_loop_stats *st, int fd, const struct msghdr *msg, int flags)
{
    st->sys_write++;
    struct msghdr mh = *msg;
    struct iovec tmp[SHIM_MAX_IOV];
    if (__builtin_expect(atomic_load_explicit(&rill__sys_hooked, memory_order_relaxed), 0)) {
        int n = (int)mh.msg_iovlen;
        size_t want = iov_total(mh.msg_iov, n), len = want;
        int e = fault(RILL__SYS_SENDMSG, fd, &len);
        if (e)
            return e;
        if (len == 0)
            len = 1; /* a zero-byte send would make no progress at all */
        if (len < want) {
            rill__sys_injected = 1;
            mh.msg_iovlen = (size_t)trim_iov(mh.msg_iov, n, len, tmp);
            mh.msg_iov = tmp;
        }
    }
    /* MSG_NOSIGNAL: a peer that went away must give EPIPE, never kill the embedder with SIGPIPE. */
    ssize_t r;
    if (mh.msg_iovlen == 1 && !mh.msg_name && !mh.msg_control)
        /* The common single-span send: send(2) spares the kernel copying in a msghdr and an
         * iovec array (a measurable share of a small echo's system time). */
        r = send(fd, mh.msg_iov[0].iov_base, mh.msg_iov[0].iov_len, flags | MSG_NOSIGNAL);
    else
        r = sendmsg(fd, &mh, flags | MSG_NOSIGNAL);
    return r < 0 ? -errno : r;
}

ssize_t rill__sys_sendv(struct rill_loop_stats *st, int fd, const struct iovec *iov, int iovcnt,
                        int flags)
{
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
    return rill__sys_sendmsg(st, fd, &mh, flags);
}

ssize_t rill__sys_recvmsg(struct rill_loop_stats *st, int fd, struct msghdr *msg, int flags)
{
    st->sys_read++;
    int e = fault(RILL__SYS_RECVMSG, fd, NULL);
    if (e)
        return e;
    ssize_t r = recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC);
    return r < 0 ? -errno : r;
}

int rill__sys_recvmmsg(struct rill_loop_stats *st, int fd, struct mmsghdr *mm, unsigned n)
{
    st->sys_read++;
    int e = fault(RILL__SYS_RECVMMSG, fd, NULL);
    return e ? e : ret_or_errno(recvmmsg(fd, mm, n, MSG_DONTWAIT, NULL));
}

int rill__sys_sendmmsg(struct rill_loop_stats *st, int fd, struct mmsghdr *mm, unsigned n)
{
    st->sys_write++;
    int e = fault(RILL__SYS_SENDMMSG, fd, NULL);
    return e ? e : ret_or_errno(sendmmsg(fd, mm, n, MSG_DONTWAIT | MSG_NOSIGNAL));
}

int rill__sys_shutdown(struct rill_loop_stats *st, int fd, int how)
{
    st->sys_other++;
    int e = fault(RILL__SYS_SHUTDOWN, fd, NULL);
    return e ? e : ret_or_errno(shutdown(fd, how));
}

ssize_t rill__sys_sendfile(struct rill_loop_stats *st, int sock, int fd, uint64_t off, size_t len,
                           bool *injected)
{
    st->sys_write++;
    *injected = false;
    if (__builtin_expect(atomic_load_explicit(&rill__sys_hooked, memory_order_relaxed), 0)) {
        size_t want = len;
        int e = fault(RILL__SYS_SENDFILE, sock, &len);
        if (e) {
            *injected = true;
            return e;
        }
        if (len == 0)
            len = 1;
        rill__sys_injected = len < want;
        *injected = len < want;
    }
    /* SIGPIPE from a socket send is directed at the sending thread (sk_stream_error and
     * unix_stream_sendmsg signal current), so blocking it here is enough; sigtimedwait takes
     * back one this call raised. That can only have happened when the call stopped short: with
     * EPIPE, or with a count below len when the peer went away after the first pages (the
     * count is returned and the signal is pending all the same). A thread that blocks SIGPIPE
     * already keeps its own pending signal as it would with any send. */
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    off_t o = (off_t)off;
    ssize_t r = sendfile(sock, fd, &o, len);
    int err = r < 0 ? errno : 0;
    if (!sigismember(&old, SIGPIPE)) {
        if (err == EPIPE || (r >= 0 && (size_t)r < len)) {
            static const struct timespec zero = {0, 0};
            while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    return r < 0 ? -err : r;
}

int rill__sys_close(struct rill_loop_stats *st, int fd)
{
    st->sys_other++;
    /* The descriptor is released even if the hook injects an error: close(2) never leaves it
     * open on Linux, and a test must not leak it. */
    int e = fault(RILL__SYS_CLOSE, fd, NULL);
    int r = ret_or_errno(close(fd));
    return e ? e : r;
}

int rill__sys_setsockopt(struct rill_loop_stats *st, int fd, int level, int name, const void *v,
                         socklen_t len)
{
    st->sys_other++;
    int e = fault(RILL__SYS_SETSOCKOPT, fd, NULL);
    return e ? e : ret_or_errno(setsockopt(fd, level, name, v, len));
}

int rill__sys_getsockopt(struct rill_loop_stats *st, int fd, int level, int name, void *v,
                         socklen_t *len)
{
    st->sys_other++;
    int e = fault(RILL__SYS_GETSOCKOPT, fd, NULL);
    return e ? e : ret_or_errno(getsockopt(fd, level, name, v, len));
}

/* epoll_pwait2 through syscall(2): glibc has a wrapper only since 2.35. System calls added since
 * Linux 5.1 have one number on every architecture (alpha aside), so 441 is safe as a default. */
#ifndef SYS_epoll_pwait2
#define SYS_epoll_pwait2 441
#endif

static int pwait2(int epfd, struct epoll_event *ev, int max, const struct timespec *ts)
{
    long r = syscall(SYS_epoll_pwait2, epfd, ev, max, ts, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

bool rill__sys_epoll_pwait2_probe(int epfd)
{
    if (fault(RILL__SYS_EPOLL_PWAIT2, epfd, NULL) < 0)
        return false;
    /* A zero timeout returns at once; the events it may report are only those of descriptors
     * registered so far, and an edge reported here would be lost, so probe before adding any. */
    struct epoll_event ev;
    struct timespec zero = {0, 0};
    return pwait2(epfd, &ev, 1, &zero) >= 0;
}

int rill__sys_epoll_wait_us(int epfd, struct epoll_event *ev, int max, int64_t timeout_us,
                            bool *pwait2_ok)
{
    if (timeout_us > 0 && *pwait2_ok) {
        struct timespec ts = {(time_t)(timeout_us / 1000000), (long)(timeout_us % 1000000) * 1000};
        int r = pwait2(epfd, ev, max, &ts);
        if (r != -ENOSYS)
            return r;
        *pwait2_ok = false; /* the probe passed but the call went away (a filter installed since) */
    }
    int ms = -1;
    if (timeout_us >= 0) {
        int64_t up = timeout_us / 1000 + (timeout_us % 1000 != 0); /* no overflow near INT64_MAX */
        ms = up > INT32_MAX ? INT32_MAX : (int)up;
    }
    int r = epoll_wait(epfd, ev, max, ms);
    return r < 0 ? -errno : r;
}
