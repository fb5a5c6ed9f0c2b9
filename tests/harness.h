/* Shared helpers for the Criterion tests: backend parameters, bounded loop running, plain
 * blocking sockets for the "other side" of a connection, and descriptor counting.
 *
 * Every I/O test is parameterised over both backends with H_BACKEND_PARAMS(suite, name); a
 * backend that cannot start on this machine (or is not built yet) skips, it does not fail. */
#ifndef RILL_TEST_HARNESS_H
#define RILL_TEST_HARNESS_H

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rill.h"

/* Parameters hold the name by value: Criterion runs each test in a fresh process where the
 * parent's pointers mean nothing. */
struct h_backend {
    char id[8];
};
static struct h_backend h_backends[] = {{"epoll"}, {"uring"}};

/* Declares a parameterised test run once per backend; the body sees `const char *backend`. */
#define H_BACKEND_TEST(suite, name, ...)                                                       \
    ParameterizedTestParameters(suite, name)                                                   \
    {                                                                                          \
        return cr_make_param_array(struct h_backend, h_backends,                               \
                                   sizeof h_backends / sizeof h_backends[0]);                  \
    }                                                                                          \
    static void suite##_##name##_body(const char *backend);                                    \
    ParameterizedTest(struct h_backend *bp, suite, name, __VA_ARGS__)                          \
    {                                                                                          \
        suite##_##name##_body(bp->id);                                                         \
    }                                                                                          \
    static void suite##_##name##_body(const char *backend)

static inline uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sleeps ms milliseconds, resuming after a signal. */
static inline void h_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Creates a loop on the named backend; skips the test when that backend cannot run here. */
static inline rill_loop *h_loop_cfg(const char *backend, struct rill_loop_config *cfg)
{
    struct rill_loop_config c;
    if (cfg)
        c = *cfg;
    else
        rill_loop_config_init(&c);
    c.backend = strcmp(backend, "uring") == 0 ? RILL_BACKEND_URING : RILL_BACKEND_EPOLL;
    unsetenv("RILL_BACKEND"); /* the parameter, not the environment, decides here */
    rill_loop *l = NULL;
    int r = rill_loop_create(&c, &l);
    if (c.backend == RILL_BACKEND_URING &&
        (r == -ENOSYS || r == -EPERM || r == -ENOMEM || r == -EOPNOTSUPP))
        cr_skip_test("%s backend unavailable here: %s", backend, rill_strerror(r));
    cr_assert_eq(r, 0, "rill_loop_create(%s): %s", backend, rill_strerror(r));
    cr_assert_str_eq(rill_loop_backend_name(l), strcmp(backend, "uring") == 0 ? "io_uring" : "epoll",
                     "the loop must run on the backend the parameter names");
    return l;
}

static inline rill_loop *h_loop(const char *backend)
{
    return h_loop_cfg(backend, NULL);
}

/* Runs the loop until *done is true or ms pass; fails the test on timeout. */
static inline void h_run_until(rill_loop *l, const bool *done, unsigned ms, const char *what)
{
    uint64_t end = h_now_ms() + ms;
    while (!*done) {
        int r = rill_loop_run_once(l, 10);
        cr_assert_geq(r, 0, "run_once: %s", rill_strerror(r));
        cr_assert_lt(h_now_ms(), end, "timed out waiting for: %s", what);
    }
}

/* Runs the loop for ms milliseconds. */
static inline void h_run_for(rill_loop *l, unsigned ms)
{
    uint64_t end = h_now_ms() + ms;
    while (h_now_ms() < end)
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
}

static inline int h_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* A plain blocking client socket connected to 127.0.0.1:port or [::1]:port. */
static inline int h_client(int family, int port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    }
    cr_assert_eq(connect(fd, (struct sockaddr *)&ss, len), 0, "connect: %s", strerror(errno));
    return fd;
}

/* Waits up to ms for fd to become readable. */
static inline bool h_readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1;
}

/* A deterministic byte pattern, so any echo can be checked without keeping a copy. */
static inline uint8_t h_pattern(uint64_t seed, uint64_t i)
{
    uint64_t x = (i + seed * 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull;
    return (uint8_t)(x >> 56);
}

static inline void h_fill(uint8_t *p, size_t n, uint64_t seed, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        p[i] = h_pattern(seed, off + i);
}

/* Sends len bytes on a Unix socket with descriptor fd attached (SCM_RIGHTS). Returns what
 * sendmsg returns. Usable from a forked child: it asserts nothing. */
static inline ssize_t h_send_fd(int s, const void *bytes, size_t len, int fd)
{
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = {(void *)bytes, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                       .msg_controllen = sizeof ctl.b};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    return sendmsg(s, &m, 0);
}

#endif
