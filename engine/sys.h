/* The system-call shim (internal): the only place socket system calls are made.
 *
 * Every wrapper returns the result or a negative errno (never -1 with errno), counts itself in
 * the caller's stats, and first consults the fault-injection hook so that tests can force EINTR,
 * EAGAIN, ENOBUFS, short transfers, ECONNRESET or EMFILE deterministically. */
#ifndef RILL_SYS_H
#define RILL_SYS_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "rill.h"

enum rill__sys_call {
    RILL__SYS_SOCKET,
    RILL__SYS_BIND,
    RILL__SYS_LISTEN,
    RILL__SYS_ACCEPT,
    RILL__SYS_CONNECT,
    RILL__SYS_READV,
    RILL__SYS_SENDMSG,
    RILL__SYS_SHUTDOWN,
    RILL__SYS_CLOSE,
    RILL__SYS_SETSOCKOPT,
    RILL__SYS_GETSOCKOPT,
    RILL__SYS_RECVMMSG,
    RILL__SYS_SENDMMSG,
    RILL__SYS_RECVMSG,
    RILL__SYS_EPOLL_PWAIT2, /* consulted once, by the probe at loop creation (-ENOSYS: absent) */
    RILL__SYS_SENDFILE,
    RILL__SYS_COUNT_
};

/* The fault hook. Called before the real call with the call kind, the descriptor (-1 for socket)
 * and, for data transfers, *len = the bytes asked for. It returns 0 to let the call proceed
 * (possibly after lowering *len to force a short transfer), or a negative errno to fail the call
 * without making it. NULL (the default) means no injection. Global, for tests. */
typedef int (*rill__sys_hook_fn)(enum rill__sys_call call, int fd, size_t *len, void *arg);
void rill__sys_set_hook(rill__sys_hook_fn fn, void *arg);

/* True while a hook is installed. The hot wrappers below test only this (one relaxed load, a
 * plain load on x86), so a release build pays nothing more for fault injection unless a test
 * turns it on. */
extern _Atomic bool rill__sys_hooked;

/* Whether the hook shaped the last call on this thread (an injected error or a transfer cut
 * short), valid while a hook is installed. A real short transfer on a stream socket proves the
 * kernel queue was drained (read) or full (write), and a real EAGAIN promises an edge-triggered
 * wake-up later; the readiness backend relies on both to skip system calls. An injected one
 * proves nothing and promises nothing, so callers retry in the next iteration instead. */
extern _Thread_local int rill__sys_injected;

static inline bool rill__sys_was_injected(void)
{
    return __builtin_expect(atomic_load_explicit(&rill__sys_hooked, memory_order_relaxed), 0) &&
           rill__sys_injected;
}

/* For a completion backend, which submits instead of calling: consults the hook for `call` as
 * the wrapper would. Returns 0 (possibly lowering *len) or the negative errno to pretend. */
int rill__sys_inject(enum rill__sys_call call, int fd, size_t *len);

int rill__sys_socket(struct rill_loop_stats *st, int family, int type, int proto);
int rill__sys_bind(struct rill_loop_stats *st, int fd, const struct sockaddr *sa, socklen_t len);
int rill__sys_listen(struct rill_loop_stats *st, int fd, int backlog);
int rill__sys_accept(struct rill_loop_stats *st, int fd, struct sockaddr *sa, socklen_t *len);
int rill__sys_connect(struct rill_loop_stats *st, int fd, const struct sockaddr *sa,
                      socklen_t len);
ssize_t rill__sys_readv(struct rill_loop_stats *st, int fd, const struct iovec *iov, int iovcnt);
ssize_t rill__sys_sendv(struct rill_loop_stats *st, int fd, const struct iovec *iov, int iovcnt,
                        int flags);

/* A system call without glibc's syscall(2) wrapper: on x86-64 the instruction itself, which
 * returns the negative errno directly (as liburing does without libc); elsewhere syscall(2).
 * Callgrind counts about 15 instructions per call saved: the wrapper's argument shuffle, its
 * call and return, and the errno round trip through thread-local storage. */
#if defined(__x86_64__)
static inline long rill__syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
    register long r10 __asm__("r10") = a4;
    register long r8 __asm__("r8") = a5;
    register long r9 __asm__("r9") = a6;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#else
static inline long rill__syscall6(long nr, long a1, long a2, long a3, long a4, long a5, long a6)
{
    long r = syscall(nr, a1, a2, a3, a4, a5, a6);
    return r < 0 ? -errno : r;
}
#endif

/* One span each way, the common case of a stream: read(2) and send(2), no iovec array or msghdr
 * for the kernel to copy in. Inline, so that without a hook they cost the system call and a
 * counter; with one they take the general path, where the hook is consulted. *injected says
 * whether the hook shaped this call (rill__sys_was_injected() without a second look at the
 * hook): false on the fast path, which the compiler folds into the caller's tests.
 *
 * They enter the kernel directly, not through glibc's read() and send(): those are pthread
 * cancellation points, and in a threaded process each call pays for switching asynchronous
 * cancellation on and off around the system call (about 60 instructions of the ~100 the two
 * wrappers cost per echoed message, measured with callgrind). The sockets are non-blocking, so
 * these calls never wait and cancelling a loop inside one has no use; the loop's wait
 * (epoll_wait, io_uring_enter) stays a cancellation point. */
static inline ssize_t rill__sys_read(struct rill_loop_stats *st, int fd, void *buf, size_t len,
                                     bool *injected)
{
    if (__builtin_expect(atomic_load_explicit(&rill__sys_hooked, memory_order_relaxed), 0)) {
        struct iovec iov = {buf, len};
        ssize_t r = rill__sys_readv(st, fd, &iov, 1);
        *injected = rill__sys_injected;
        return r;
    }
    *injected = false;
    st->sys_read++;
    return rill__syscall6(SYS_read, fd, (long)buf, (long)len, 0, 0, 0);
}

static inline ssize_t rill__sys_send(struct rill_loop_stats *st, int fd, const void *buf,
                                     size_t len, int flags, bool *injected)
{
    if (__builtin_expect(atomic_load_explicit(&rill__sys_hooked, memory_order_relaxed), 0)) {
        struct iovec iov = {(void *)buf, len};
        ssize_t r = rill__sys_sendv(st, fd, &iov, 1, flags);
        *injected = rill__sys_injected;
        return r;
    }
    *injected = false;
    st->sys_write++;
    /* MSG_NOSIGNAL: a peer that went away gives EPIPE, never SIGPIPE for the embedder. */
    return rill__syscall6(SYS_sendto, fd, (long)buf, (long)len, flags | MSG_NOSIGNAL, 0, 0);
}
/* Datagram batches and message calls; the hook may fail them (EINTR, EAGAIN, or an error). */
int rill__sys_recvmmsg(struct rill_loop_stats *st, int fd, struct mmsghdr *mm, unsigned n);
int rill__sys_sendmmsg(struct rill_loop_stats *st, int fd, struct mmsghdr *mm, unsigned n);
ssize_t rill__sys_recvmsg(struct rill_loop_stats *st, int fd, struct msghdr *msg, int flags);
ssize_t rill__sys_sendmsg(struct rill_loop_stats *st, int fd, const struct msghdr *msg,
                          int flags);
/* sendfile(2) of len bytes of file `fd` from *off to socket `sock` (non-blocking), without
 * moving the file's own offset; *off is not changed (the caller advances it by the result).
 * sendfile has no MSG_NOSIGNAL, so SIGPIPE is blocked on the calling thread around the call and
 * one it raised (the peer went away: -EPIPE) is taken back before the mask is restored: the
 * embedder's process is never signalled. The hook may fail or shorten it (*injected says so). */
ssize_t rill__sys_sendfile(struct rill_loop_stats *st, int sock, int fd, uint64_t off, size_t len,
                           bool *injected);
int rill__sys_shutdown(struct rill_loop_stats *st, int fd, int how);
int rill__sys_close(struct rill_loop_stats *st, int fd);
int rill__sys_setsockopt(struct rill_loop_stats *st, int fd, int level, int name, const void *v,
                         socklen_t len);
int rill__sys_getsockopt(struct rill_loop_stats *st, int fd, int level, int name, void *v,
                         socklen_t *len);

struct epoll_event;

/* Whether epoll_pwait2(2) (Linux 5.11: a timespec timeout) works on this epoll descriptor: one
 * call that does not wait. The hook may answer for it (-ENOSYS forces the fallback, in tests);
 * a seccomp filter that refuses the call answers ENOSYS or EPERM, both mean "no". */
bool rill__sys_epoll_pwait2_probe(int epfd);

/* Waits for epoll events up to timeout_us microseconds (-1: no limit, 0: no wait). With
 * *pwait2 (from the probe) the timeout is exact to the microsecond; without, epoll_wait(2)
 * waits whole milliseconds, rounded up, so the wait never ends before the timeout. An ENOSYS
 * from epoll_pwait2 clears *pwait2 and falls back for good.
 * Returns: the number of events, or a negative errno (-EINTR included). */
int rill__sys_epoll_wait_us(int epfd, struct epoll_event *ev, int max, int64_t timeout_us,
                            bool *pwait2);

#endif
