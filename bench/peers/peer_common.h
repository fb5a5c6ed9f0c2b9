/* Shared plumbing of the echo peers: command line, listening sockets, CPU pinning, threads.
 *
 * Only the parts that are not what a peer is measured on live here. Each peer's event loop,
 * accept, read and write paths are in its own file, written the way its library recommends.
 *
 * Every peer takes the same options:
 *   -t, --threads N   loops, one per thread (default 1)
 *   -p, --port P      TCP port on --host (default 7000; 0 picks a free port for all threads)
 *       --host ADDR   IPv4 address to bind (default 127.0.0.1)
 *       --unix PATH   also serve a Unix stream socket (accepted by thread 0 only: Unix sockets
 *                     have no SO_REUSEPORT)
 *       --pin         pin thread i to the i-th CPU of the affinity mask
 * and prints "listening tcp://HOST:PORT threads=N" (and "listening unix:PATH") once every
 * listener is bound, so a script or test can read the port. They run until killed. */
#ifndef RILL_PEER_COMMON_H
#define RILL_PEER_COMMON_H

#include <stdbool.h>

#define PEER_MAX_THREADS 256

struct peer_opts {
    const char *name;      /* program name, for messages */
    int threads;
    int port;              /* the bound port once peer_bind_all() has run */
    const char *host;
    const char *unix_path; /* NULL: no Unix listener */
    bool pin;
    int tcp_fd[PEER_MAX_THREADS]; /* one SO_REUSEPORT listener per thread (non-blocking) */
    int unix_fd;                  /* -1 when no --unix */
};

/* Parses the common options; exits with status 2 (and usage) on a bad command line. */
void peer_parse(struct peer_opts *o, const char *name, int argc, char **argv);

/* Binds and listens one SO_REUSEPORT TCP socket per thread on host:port (port 0: the first
 * socket picks it and the others join it), plus the Unix socket, then prints the "listening"
 * lines. Exits with status 1 on failure. */
void peer_bind_all(struct peer_opts *o);

/* The two halves of peer_bind_all() for a peer that binds its own TCP listeners: the Unix
 * listener (when --unix), then the "listening" lines (o->port must be the bound port). */
void peer_listen_unix(struct peer_opts *o);
void peer_announce(const struct peer_opts *o);

/* Pins the calling thread to the i-th CPU of the process's affinity mask when o->pin. */
void peer_pin(const struct peer_opts *o, int i);

/* Runs fn(i, arg) on threads 1..n-1 and fn(0, arg) on the calling thread; never returns unless
 * every fn returns. */
void peer_run_threads(const struct peer_opts *o, void *(*fn)(void *), void **args);

/* Sets TCP_NODELAY on an accepted TCP socket (ignored for Unix sockets). */
void peer_nodelay(int fd);

/* Reports a fatal error with errno's text and exits with status 1. */
void peer_die(const struct peer_opts *o, const char *what);

#endif
