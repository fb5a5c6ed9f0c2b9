/* Shared plumbing of the echo peers (see peer_common.h). */
#include "peer_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void usage(FILE *f, const char *name)
{
    fprintf(f,
            "usage: %s [options]\n"
            "  -t, --threads N   loops, one per thread (default 1)\n"
            "  -p, --port P      TCP port (default 7000; 0 picks a free one)\n"
            "      --host ADDR   IPv4 address to bind (default 127.0.0.1)\n"
            "      --unix PATH   also serve a Unix stream socket (on thread 0)\n"
            "      --pin         pin thread i to the i-th CPU of the affinity mask\n"
            "  -h, --help        this text\n"
            "Echoes every byte back. Prints \"listening tcp://HOST:PORT threads=N\" once ready;\n"
            "runs until killed.\n",
            name);
}

void peer_die(const struct peer_opts *o, const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", o->name, what, strerror(errno));
    exit(1);
}

void peer_parse(struct peer_opts *o, const char *name, int argc, char **argv)
{
    static const struct option opts[] = {
        {"threads", required_argument, 0, 't'}, {"port", required_argument, 0, 'p'},
        {"host", required_argument, 0, 'H'},    {"unix", required_argument, 0, 'u'},
        {"pin", no_argument, 0, 'P'},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->name = name;
    o->threads = 1;
    o->port = 7000;
    o->host = "127.0.0.1";
    o->unix_fd = -1;
    int c;
    while ((c = getopt_long(argc, argv, "t:p:h", opts, NULL)) != -1) {
        char *end;
        long v;
        switch (c) {
        case 't':
            v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > PEER_MAX_THREADS) {
                fprintf(stderr, "%s: --threads must be 1..%d\n", name, PEER_MAX_THREADS);
                exit(2);
            }
            o->threads = (int)v;
            break;
        case 'p':
            v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 65535) {
                fprintf(stderr, "%s: --port must be 0..65535\n", name);
                exit(2);
            }
            o->port = (int)v;
            break;
        case 'H':
            o->host = optarg;
            break;
        case 'u':
            o->unix_path = optarg;
            break;
        case 'P':
            o->pin = true;
            break;
        case 'h':
            usage(stdout, name);
            exit(0);
        default:
            usage(stderr, name);
            exit(2);
        }
    }
    if (optind != argc) {
        usage(stderr, name);
        exit(2);
    }
    /* A peer that writes to a closed socket must see EPIPE, not die. */
    signal(SIGPIPE, SIG_IGN);
}

static int listen_tcp(struct peer_opts *o)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1) {
        fprintf(stderr, "%s: --host must be an IPv4 address\n", o->name);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        peer_die(o, "socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        peer_die(o, "SO_REUSEPORT");
    /* Linux copies TCP_NODELAY from the listener to accepted sockets; the peers set it on each
     * accepted socket too (peer_nodelay), as a server that does not rely on that would. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
        peer_die(o, "bind");
    if (listen(fd, SOMAXCONN) < 0)
        peer_die(o, "listen");
    if (o->port == 0) {
        socklen_t len = sizeof a;
        if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
            peer_die(o, "getsockname");
        o->port = ntohs(a.sin_port);
    }
    return fd;
}

void peer_listen_unix(struct peer_opts *o)
{
    if (o->unix_path) {
        struct sockaddr_un u = {.sun_family = AF_UNIX};
        if (strlen(o->unix_path) >= sizeof u.sun_path) {
            fprintf(stderr, "%s: --unix path too long\n", o->name);
            exit(2);
        }
        strcpy(u.sun_path, o->unix_path);
        unlink(o->unix_path);
        o->unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (o->unix_fd < 0)
            peer_die(o, "socket(AF_UNIX)");
        if (bind(o->unix_fd, (struct sockaddr *)&u, sizeof u) < 0)
            peer_die(o, "bind(unix)");
        if (listen(o->unix_fd, SOMAXCONN) < 0)
            peer_die(o, "listen(unix)");
    }
}

void peer_announce(const struct peer_opts *o)
{
    printf("listening tcp://%s:%d threads=%d\n", o->host, o->port, o->threads);
    if (o->unix_path)
        printf("listening unix:%s\n", o->unix_path);
    fflush(stdout);
}

void peer_bind_all(struct peer_opts *o)
{
    for (int i = 0; i < o->threads; i++)
        o->tcp_fd[i] = listen_tcp(o);
    peer_listen_unix(o);
    peer_announce(o);
}

void peer_pin(const struct peer_opts *o, int i)
{
    if (!o->pin)
        return;
    cpu_set_t mask, one;
    if (sched_getaffinity(0, sizeof mask, &mask) < 0)
        return;
    int n = CPU_COUNT(&mask), k = i % (n ? n : 1);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &mask))
            continue;
        if (k-- == 0) {
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
    }
}

void peer_run_threads(const struct peer_opts *o, void *(*fn)(void *), void **args)
{
    pthread_t th[PEER_MAX_THREADS];
    for (int i = 1; i < o->threads; i++) {
        errno = pthread_create(&th[i], NULL, fn, args[i]);
        if (errno)
            peer_die(o, "pthread_create");
    }
    fn(args[0]);
    for (int i = 1; i < o->threads; i++)
        pthread_join(th[i], NULL);
}

void peer_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* EOPNOTSUPP on Unix: fine */
}
