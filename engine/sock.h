/* Socket set-up shared by listeners, connections and datagram sockets (internal): binding with
 * the Unix socket file rules, and the named socket options. */
#ifndef RILL_SOCK_H
#define RILL_SOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "rill.h"
#include "addr.h"

/* Binds fd to a. For a Unix path: with unlink_stale, a socket file that nobody answers on is
 * removed and the bind retried; with mode != 0 the file gets that mode. *created is set when a
 * Unix socket file was created by this bind (the closer removes it).
 * Returns: 0 or the bind's -errno. */
int rill__sock_bind(struct rill_loop_stats *st, int fd, const struct rill__addr *a,
                    bool unlink_stale, uint32_t mode, bool *created);

/* Removes the Unix socket file named by ss if it still is a socket. */
void rill__sock_unlink(const struct sockaddr_storage *ss, socklen_t len);

/* What a handle knows of its socket: enough to map a named option to its level and name. */
struct rill__sockkind {
    int fd, family, socktype;
};

/* The named options of rill.h on a socket. Returns 0 or a negative errno. */
int rill__sockopt_set(struct rill_loop_stats *st, struct rill__sockkind k, rill_sockopt opt,
                      int value);
int rill__sockopt_get(struct rill_loop_stats *st, struct rill__sockkind k, rill_sockopt opt,
                      int *value);

/* The port of an AF_INET/AF_INET6 address (host byte order), else 0. */
int rill__sock_port(const struct sockaddr_storage *ss);

#endif
