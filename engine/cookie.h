/* Completion cookies (internal): {op | generation | slot} packed in 64 bits.
 *
 * A cookie names the operation and the handle it belongs to without a raw pointer, so that an
 * event or completion that arrives after its handle was closed and its slot reused is recognised
 * by its stale generation and dropped instead of touching someone else's connection. */
#ifndef RILL_COOKIE_H
#define RILL_COOKIE_H

#include <stdint.h>

enum rill__op {
    RILL__OP_NONE = 0,
    RILL__OP_WAKE,     /* the loop's wake-up eventfd */
    RILL__OP_CONN,     /* readiness of a connection (epoll) */
    RILL__OP_LISTENER, /* readiness of a listener (epoll) */
    RILL__OP_ACCEPT,   /* completion backends: one per operation kind */
    RILL__OP_RECV,
    RILL__OP_SEND,
    RILL__OP_CONNECT,
    RILL__OP_TIMEOUT,
    RILL__OP_CANCEL,
    RILL__OP_CLOSE,
    RILL__OP_MSG,      /* a wake-up posted by another loop's ring (IORING_OP_MSG_RING) */
    RILL__OP_MSG_FAIL, /* that post failed on the sender's side; slot = target loop index */
    RILL__OP_DGRAM,    /* readiness of a datagram socket (epoll); slot = its id */
    RILL__OP_DRECV,    /* completion backends: a datagram socket's multishot recvmsg */
    RILL__OP_DSEND,    /* ... one of its SENDMSGs; generation = its in-flight index */
    RILL__OP_DCTL,     /* ... its cancel and close (bookkeeping only) */
    RILL__OP_URGENT,   /* a connection's poll for urgent data (POLLPRI) */
    RILL__OP_WATCH,    /* a watched descriptor's readiness; slot = watch id, gen = its arming */
    RILL__OP_FILE_POLL, /* a connection's file send waits for POLLOUT (io_uring) */
};

#define RILL__COOKIE_OP_BITS 8u
#define RILL__COOKIE_GEN_BITS 24u
#define RILL__COOKIE_GEN_MASK ((1u << RILL__COOKIE_GEN_BITS) - 1u)

static inline uint64_t rill__cookie(enum rill__op op, uint32_t gen, uint32_t slot)
{
    return ((uint64_t)op << 56) | ((uint64_t)(gen & RILL__COOKIE_GEN_MASK) << 32) | slot;
}

static inline enum rill__op rill__cookie_op(uint64_t c)
{
    return (enum rill__op)(c >> 56);
}

static inline uint32_t rill__cookie_gen(uint64_t c)
{
    return (uint32_t)(c >> 32) & RILL__COOKIE_GEN_MASK;
}

static inline uint32_t rill__cookie_slot(uint64_t c)
{
    return (uint32_t)c;
}

#endif
