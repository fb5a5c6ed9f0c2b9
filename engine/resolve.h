/* The name resolver (internal): asynchronous lookups through c-ares, driven by the loop, with a
 * per-loop cache that honours the answers' TTLs. In the handles layer: conn_dial.c (connects)
 * and dgram.c (a connected datagram socket's peer) use it; it uses the ground (watches, the
 * timer wheel) and the backend's watch downcall.
 *
 * One c-ares channel per loop, created on the first name that needs a lookup (or when the loop
 * is created, if cfg.dns_servers names servers). Its sockets are watched through the backend
 * (c-ares's socket-state callback starts and stops watches) and its timeouts are one node on
 * the loop's timer wheel, re-armed from ares_timeout() after every call into c-ares. Nothing
 * here blocks: /etc/hosts is read by c-ares (a small local file), numeric hosts never get here
 * (addr.c answers them synchronously). */
#ifndef RILL_RESOLVE_H
#define RILL_RESOLVE_H

#include <stdint.h>

#include "addr.h"
#include "list.h"
#include "loop.h"

#define RILL__RESOLVE_MAX 16 /* addresses kept per name */

struct rill__resolve_wait;
/* The answer: status 0 and n >= 1 addresses (in c-ares's order, with the waiter's port and
 * socktype), or a negative status: RILL_ENONAME, RILL_EDNSTIMEOUT, RILL_EDNSFAIL, -ENOMEM,
 * -ECANCELED (the loop is going). Runs on the loop's thread, from the backend's poll or the
 * timer wheel, or from inside rill__resolve itself when c-ares answers at once (/etc/hosts). */
typedef void (*rill__resolved_fn)(struct rill__resolve_wait *w, int status,
                                  const struct rill__addr *a, int n);

/* One caller waiting for a name (embedded in the caller's state). */
struct rill__resolve_wait {
    struct rill__list link;  /* on its cache entry's waiters */
    rill__resolved_fn fn;
    uint16_t port;
    int socktype;
};

/* Resolves host (a DNS name, not a numeric address). From the cache, the addresses are written
 * to out (at most max) and counted in the return value, and fn is not called. Otherwise w
 * waits (fn is called once, later or before this returns) and 0 is returned.
 * Returns: n >= 1 from the cache; 0 waiting (or already answered); -ENOMEM, or the error of
 * setting up the resolver (fn is not called then). */
int rill__resolve(rill_loop *l, const char *host, struct rill__resolve_wait *w,
                  struct rill__addr *out, int max);
/* Stops waiting: fn will not be called. A no-op for a waiter that is not waiting. */
void rill__resolve_cancel(struct rill__resolve_wait *w);

#endif
