/* How should the io_uring backend send a file? Measures, for one file size over TCP loopback,
 * the sender's CPU time and the wall time per file of:
 *
 *   sendfile   non-blocking sendfile(2) from the sending thread, poll(POLLOUT) when the socket
 *              is full (what backend_epoll.c and backend_uring_file.c do);
 *   splice     io_uring: IORING_OP_SPLICE file -> pipe linked to IORING_OP_SPLICE pipe ->
 *              socket, per pipe-full (the pipe grown to 1 MiB with F_SETPIPE_SZ), the rest of a
 *              short socket splice spliced again; the socket blocking, since io_uring runs
 *              splice on its io-wq workers anyway.
 *
 * A reader thread drains the other end; its own CPU time is subtracted from the process's,
 * which includes the io-wq workers. Run A B A B ... and take medians (BENCHMARKS.md).
 *
 *   cc -O2 -o /tmp/file_send_mech bench/macro/file_send_mech.c -luring -lpthread
 *   /tmp/file_send_mech sendfile|splice SIZE COUNT */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double reader_cpu;
static size_t want_total;

static void *reader(void *arg)
{
    int fd = *(int *)arg;
    static char buf[1 << 20];
    size_t got = 0;
    while (got < want_total) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    reader_cpu = now_s(CLOCK_THREAD_CPUTIME_ID);
    return NULL;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "%s: %s\n", what, strerror(err));
    exit(1);
}

static void send_sendfile(int sock, int file, size_t size)
{
    off_t off = 0;
    while ((size_t)off < size) {
        ssize_t r = sendfile(sock, file, &off, size - (size_t)off);
        if (r < 0 && errno == EAGAIN) {
            struct pollfd p = {.fd = sock, .events = POLLOUT};
            poll(&p, 1, -1);
        } else if (r <= 0) {
            die("sendfile", errno);
        }
    }
}

static void send_splice(struct io_uring *ring, int sock, int file, int pipefd[2], size_t size,
                        size_t pipe_sz)
{
    size_t off = 0, in_pipe = 0;
    while (off < size || in_pipe) {
        unsigned n = 0;
        if (in_pipe) { /* the rest of a short socket splice */
            struct io_uring_sqe *s = io_uring_get_sqe(ring);
            io_uring_prep_splice(s, pipefd[0], -1, sock, -1, (unsigned)in_pipe, 0);
            s->user_data = 2;
            n = 1;
        } else {
            unsigned len = (unsigned)(size - off < pipe_sz ? size - off : pipe_sz);
            struct io_uring_sqe *s = io_uring_get_sqe(ring);
            io_uring_prep_splice(s, file, (int64_t)off, pipefd[1], -1, len, 0);
            s->flags |= IOSQE_IO_LINK;
            s->user_data = 1;
            s = io_uring_get_sqe(ring);
            io_uring_prep_splice(s, pipefd[0], -1, sock, -1, len, 0);
            s->user_data = 2;
            n = 2;
        }
        io_uring_submit_and_wait(ring, n);
        for (unsigned i = 0; i < n; i++) {
            struct io_uring_cqe *cqe;
            io_uring_wait_cqe(ring, &cqe);
            int res = cqe->res;
            unsigned long long ud = cqe->user_data;
            io_uring_cqe_seen(ring, cqe);
            if (ud == 1) {
                if (res <= 0)
                    die("splice file->pipe", -res);
                off += (size_t)res;
                in_pipe += (size_t)res;
            } else if (res > 0) {
                in_pipe -= (size_t)res;
            } else if (res != -ECANCELED) {
                die("splice pipe->socket", -res);
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return fprintf(stderr, "usage: %s sendfile|splice SIZE COUNT\n", argv[0]), 2;
    int splice_mode = !strcmp(argv[1], "splice");
    size_t size = strtoul(argv[2], NULL, 0), count = strtoul(argv[3], NULL, 0);
    want_total = size * count;
    char path[] = "/tmp/file_send_mech-XXXXXX";
    int file = mkstemp(path);
    unlink(path);
    char *b = malloc(size);
    memset(b, 'x', size);
    if (write(file, b, size) != (ssize_t)size)
        die("write", errno);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(ls, (struct sockaddr *)&a, sizeof a);
    listen(ls, 1);
    getsockname(ls, (struct sockaddr *)&a, &al);
    int rd = socket(AF_INET, SOCK_STREAM, 0);
    connect(rd, (struct sockaddr *)&a, sizeof a);
    int sock = accept(ls, NULL, NULL);
    pthread_t t;
    pthread_create(&t, NULL, reader, &rd);
    struct io_uring ring;
    int pipefd[2];
    size_t pipe_sz = 0;
    if (splice_mode) {
        if (io_uring_queue_init(8, &ring, 0) < 0 || pipe(pipefd) < 0)
            die("setup", errno);
        int r = fcntl(pipefd[1], F_SETPIPE_SZ, 1 << 20);
        pipe_sz = r > 0 ? (size_t)r : 65536;
    } else {
        fcntl(sock, F_SETFL, O_NONBLOCK);
    }
    double w0 = now_s(CLOCK_MONOTONIC), c0 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    for (size_t i = 0; i < count; i++) {
        if (splice_mode)
            send_splice(&ring, sock, file, pipefd, size, pipe_sz);
        else
            send_sendfile(sock, file, size);
    }
    pthread_join(t, NULL);
    double w1 = now_s(CLOCK_MONOTONIC), c1 = now_s(CLOCK_PROCESS_CPUTIME_ID);
    double sender = c1 - c0 - reader_cpu;
    printf("%s size=%zu count=%zu wall_us_per_file=%.1f sender_cpu_us_per_file=%.1f\n", argv[1],
           size, count, (w1 - w0) * 1e6 / (double)count, sender * 1e6 / (double)count);
    return 0;
}
