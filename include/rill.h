/* rill: a networking engine for Linux.
 *
 * This header is the whole public API. Handles are opaque. Every fallible function returns 0 (or
 * a count) on success and a negative errno on failure; callbacks receive an `int status` the same
 * way. rill_strerror() names any of them. The global errno is never part of the API.
 *
 * Threads: a rill_loop and everything created on it (listeners, connections, timers, buffers)
 * belong to the thread that runs the loop. Unless a function says otherwise, call it only from
 * that thread (from inside a callback, or before the loop first runs). rill_loop_stop() and
 * rill_loop_wake() are the exceptions: any thread may call them.
 *
 * Addresses are strings: "tcp://127.0.0.1:8080", "tcp://[::1]:8080", "tcp://localhost:0".
 * Port 0 asks the kernel for a free port; rill_listener_addr() returns what was bound. Numeric
 * addresses never block. rill_connect() and rill_dgram_open() with a peer name resolve it
 * asynchronously on the loop (c-ares, with a per-loop cache; /etc/hosts is read too) and never
 * block it; rill_listen(), a datagram socket's local address and rill_uri_check() resolve names
 * with getaddrinfo(), which blocks. */
#ifndef RILL_H
#define RILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RILL_API __attribute__((visibility("default")))
#else
#define RILL_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Version and errors
 * ------------------------------------------------------------------------------------------- */

#define RILL_VERSION_MAJOR 0
#define RILL_VERSION_MINOR 1
#define RILL_VERSION_PATCH 0
#define RILL_VERSION_STRING "0.1.0"
/* One integer that orders versions: MAJOR * 10000 + MINOR * 100 + PATCH. */
#define RILL_VERSION_NUMBER (RILL_VERSION_MAJOR * 10000 + RILL_VERSION_MINOR * 100 + RILL_VERSION_PATCH)

/* Returns the version string of the library actually linked ("0.1.0"), which may differ from
 * RILL_VERSION_STRING when the shared library was upgraded.
 * Ownership: a static string of the library's; never free it. Thread: any. */
RILL_API const char *rill_version(void);

/* Name resolution's own statuses (rill_connect(), rill_dgram_open() with a peer name), apart
 * from every errno value, so that an embedder can tell a name that does not exist from a peer
 * that refuses, and a silent resolver from a slow peer (-ETIMEDOUT is the connect's own). */
#define RILL_ENONAME (-10001)     /* "name not found": NXDOMAIN, or no IPv4/IPv6 address */
#define RILL_EDNSTIMEOUT (-10002) /* "resolver timed out": no answer within dns_timeout_ms */
#define RILL_EDNSFAIL (-10003)    /* "resolver failed": SERVFAIL, REFUSED, a bad answer ... */

/* Returns a static, human-readable description of a status: 0 is "success", a negative errno is
 * described as strerror() would describe the positive value, and RILL_ENONAME,
 * RILL_EDNSTIMEOUT, RILL_EDNSFAIL as "name not found", "resolver timed out", "resolver
 * failed". Positive values (counts) are "success" too.
 * Ownership: the string is constant and lives as long as the process; never free it.
 * Thread: any (the strings are constant). */
RILL_API const char *rill_strerror(int status);

/* Checks an address string the way rill_listen(), rill_connect() and rill_dgram_open() read it,
 * resolving its host, without opening anything: for validating a configuration or a command line
 * before starting. The forms: "tcp://host:port", "tcp://[v6]:port", "udp://host:port",
 * "unix:/path", "unix:@abstract", "unix+seqpacket:/path", "unix+dgram:/path", "raw://icmp",
 * "raw6://icmpv6", "ping://[host]", "ping6://[host]"; ports 0..65535 (0: any free one, for a
 * listener), unix paths up to 107 bytes. passive: resolve as a listener does (an empty host or
 * "*" is the wildcard) rather than as a connect.
 * Returns: 0; -EINVAL when it is malformed (an unknown scheme, a bad host or port, a path too
 * long) or NULL; -ENOENT when the host name does not resolve; -EAGAIN when the resolver failed
 * for the moment; -EAFNOSUPPORT when it resolves to no family rill can use.
 * Ownership: uri is read during the call; nothing is kept.
 * Thread: any; a host name is resolved with getaddrinfo(), which may block. */
RILL_API int rill_uri_check(const char *uri, bool passive);

/* Replaces the allocator that the library uses for its own bookkeeping (loops, connections,
 * timers, write-queue entries). Buffer memory comes from the slab's mmap'd regions, not from
 * here. Call it before creating any loop, or never; all three functions must be non-NULL and
 * behave like their libc namesakes.
 * Returns: 0; -EINVAL if any pointer is NULL; -EBUSY if a loop already exists.
 * Ownership: the library keeps the three pointers until the next call; whatever it frees goes to
 * the free_fn current at that moment, so replace them only while no rill object exists (a
 * stopped engine has no loop left but still holds memory: destroy it first).
 * Thread: any, but not concurrently with anything else in rill. */
RILL_API int rill_set_allocator(void *(*malloc_fn)(size_t), void *(*realloc_fn)(void *, size_t),
                                void (*free_fn)(void *));

/* ---------------------------------------------------------------------------------------------
 * Handles
 * ------------------------------------------------------------------------------------------- */

typedef struct rill_loop rill_loop;         /* one thread's event loop */
typedef struct rill_listener rill_listener; /* a listening stream socket */
typedef struct rill_conn rill_conn;         /* a stream connection */
typedef struct rill_timer rill_timer;       /* a one-shot or repeating timer */
typedef struct rill_buf rill_buf;           /* a refcounted slab buffer */
typedef struct rill_dgram rill_dgram;       /* a datagram socket (UDP, Unix datagram, ICMP) */

/* ---------------------------------------------------------------------------------------------
 * Loop
 * ------------------------------------------------------------------------------------------- */

typedef enum rill_backend {
    RILL_BACKEND_AUTO = 0, /* io_uring when the probe passes, else epoll; RILL_BACKEND overrides */
    RILL_BACKEND_EPOLL = 1,
    RILL_BACKEND_URING = 2,
} rill_backend;

/* Capability bits reported by rill_loop_caps(). Code asks for a capability, never a backend. */
#define RILL_CAP_MULTISHOT_ACCEPT (1u << 0)
#define RILL_CAP_MULTISHOT_RECV (1u << 1)
#define RILL_CAP_PROVIDED_BUFFERS (1u << 2)
#define RILL_CAP_SEND_ZC (1u << 3)
#define RILL_CAP_MSG_ZEROCOPY (1u << 4)
#define RILL_CAP_DEFER_TASKRUN (1u << 5)
#define RILL_CAP_EDGE_TRIGGERED (1u << 6) /* readiness backend, edge-triggered */
#define RILL_CAP_MULTISHOT_RECVMSG (1u << 7) /* datagrams: multishot recvmsg on a buffer ring */
#define RILL_CAP_UDP_GSO (1u << 8) /* the kernel segments UDP sends (UDP_SEGMENT, Linux 4.18) */
#define RILL_CAP_UDP_GRO (1u << 9) /* the kernel coalesces UDP receives (UDP_GRO, Linux 5.0) */
#define RILL_CAP_RECV_BUNDLE (1u << 10) /* io_uring: one receive fills several buffers (Linux 6.10) */
#define RILL_CAP_MSG_RING (1u << 11) /* io_uring: loops wake each other with IORING_OP_MSG_RING */
/* io_uring: receive buffers are consumed incrementally (IOU_PBUF_RING_INC, Linux 6.12): small
 * receives share one ring buffer, each taking only the bytes it needs, so on_data's data may
 * start anywhere in its buffer (as the data pointer always allowed). */
#define RILL_CAP_BUF_RING_INC (1u << 12)

/* The io_uring features rill_loop_config.disable (and RILL_URING_DISABLE) may switch off, to
 * ablate them or to step around a kernel bug; the loop then runs as on a kernel without them. */
#define RILL_CAP_DISABLEABLE                                                                     \
    (RILL_CAP_DEFER_TASKRUN | RILL_CAP_RECV_BUNDLE | RILL_CAP_MSG_RING | RILL_CAP_BUF_RING_INC)

/* The name of one capability bit, the words the tools print: "multishot_accept",
 * "multishot_recv", "buf_ring", "send_zc", "msg_zerocopy", "defer_taskrun", "edge_triggered",
 * "multishot_recvmsg", "udp_gso", "udp_gro", "recv_bundle", "msg_ring", "buf_ring_inc".
 * Returns: the name; NULL when cap is not exactly one known bit.
 * Ownership: a static string; never free it. Thread: any. */
RILL_API const char *rill_cap_name(uint32_t cap);

/* Writes the names of the bits of caps into buf, comma-separated in bit order ("" for 0), always
 * NUL-terminated when len > 0; unknown bits are written as 0x.. in hex.
 * Returns: the length of the whole text (as snprintf: it was cut when >= len).
 * Ownership: buf is the caller's storage, written during the call. Thread: any. */
RILL_API size_t rill_caps_format(uint32_t caps, char *buf, size_t len);

struct rill_loop_config {
    rill_backend backend;     /* default RILL_BACKEND_AUTO; env RILL_BACKEND=uring|epoll wins */
    size_t slab_budget;       /* bytes of buffer memory this loop may map; default 64 MiB */
    /* The smallest receive a stream connection is offered; default 16 KiB (512 B .. 1 MiB).
     * Offers adapt above it: epoll doubles a connection's next read after one that filled its
     * buffer (up to 256 KiB) and halves it after a small one; io_uring lends buffers of this
     * size from one ring, several per completion where the kernel has bundles (Linux 6.10).
     * on_data may therefore see more than this many bytes at once. */
    uint32_t recv_buf_size;
    uint32_t max_conns;       /* connections open at once on this loop; default 65536 */
    uint32_t max_events;      /* readiness events or completions reaped per poll; default 256 */
    uint32_t ring_entries;    /* io_uring submission queue size; default 1024 */
    /* RILL_CAP_* bits of io_uring features not to use, within RILL_CAP_DISABLEABLE; default 0.
     * The environment's RILL_URING_DISABLE=name[,name...] (rill_cap_name's words) adds to it. */
    uint32_t disable;
    /* The memory ceiling: bytes this loop's connections may hold for their peers, write queues
     * (every queued byte, the caller's memory included, but not the file bytes of rill_send_file)
     * and data held for paused readers.
     * Default (0): half the slab budget; SIZE_MAX: none. When it is reached, reading pauses on
     * every connection and datagram socket of the loop (as when the slab budget is spent;
     * stats.mem_pauses counts it) until the held bytes fall below 3/4 of it. If they are still
     * over it mem_grace_ms later, the connections whose write queues moved least recently are
     * closed with -ENOBUFS (stats.mem_closes), oldest first, until what they held brings the
     * loop below 3/4 of the ceiling; the check repeats every mem_grace_ms while it holds. */
    size_t mem_ceiling;
    uint32_t mem_grace_ms;    /* default (0): 1000 ms; UINT32_MAX: pause only, never close */
    /* Slab regions (about 256 KiB each) found with all their buffers free for this long
     * (checked every half period) are unmapped, so memory a burst took goes back to the kernel
     * once the burst is over; what a loop keeps is then the regions of the buffers in use,
     * including, on io_uring, those lent to the kernel's buffer ring (half the slab budget in
     * receive-size buffers, at most 512, a quarter of that with buf_ring_inc). A loop with
     * free regions waiting wakes every half period to look; one without never does.
     * Default (0): 5000 ms; UINT32_MAX: never. */
    uint32_t slab_idle_ms;
    /* The DNS servers this loop's resolver asks, instead of /etc/resolv.conf's: a comma-
     * separated list of "host[:port]" ("127.0.0.1:5353", "[::1]:53,192.0.2.1"). Copied by
     * rill_loop_create(), which fails with -EINVAL when it does not parse. NULL: the system's.
     * /etc/hosts is consulted first either way. */
    const char *dns_servers;
    /* How long one name's lookup may take before it fails with RILL_EDNSTIMEOUT (the resolver
     * retries within it: a first try of a third, a second of two thirds). Default (0): 5000. */
    uint32_t dns_timeout_ms;
};

/* Fills cfg with the defaults documented on each field. NULL is ignored.
 * Ownership: cfg is the caller's storage, written and not kept. Thread: any. */
RILL_API void rill_loop_config_init(struct rill_loop_config *cfg);

/* Creates a loop. cfg may be NULL for the defaults. The loop belongs to the thread that first runs
 * it; create it (and set up listeners, connections, timers) on any thread before that.
 * Returns: 0 and *out; -EINVAL for a bad argument or config value (a disable bit outside
 * RILL_CAP_DISABLEABLE, or a RILL_URING_DISABLE word that is not one of them: logged);
 * -ENOSYS/-EPERM/-ENOMEM when the forced backend cannot start (the reason is logged on stderr);
 * -ENOMEM; -EMFILE.
 * Ownership: cfg is read during the call and not kept. The caller owns the loop and destroys it
 * with rill_loop_destroy() (a loop of an engine is the engine's: see rill_engine_loop()).
 * Thread: any (the loop then belongs to the thread that first runs it). */
RILL_API int rill_loop_create(const struct rill_loop_config *cfg, rill_loop **out);

/* Destroys a loop that is not running. Open connections and listeners are closed first (their
 * on_close callbacks run from inside this call with -ECANCELED, and queued send callbacks with
 * -ECANCELED), timers still existing are freed (their handles become invalid), and the slab is
 * unmapped: buffers the caller still holds references to become invalid.
 * Ownership: l and every handle created on it (listeners, connections, datagram sockets, timers,
 * buffers) are invalid when this returns; do not release buffers or destroy timers after it.
 * Callbacks deferred with rill_loop_defer() that have not run are dropped: their arg is never
 * handed back. Context pointers are the caller's to free (from on_close, say).
 * Thread: the thread that ran the loop (an io_uring ring belongs to it), or any thread if it
 * never ran; never from inside one of its callbacks (ignored then). NULL is ignored. */
RILL_API void rill_loop_destroy(rill_loop *l);

/* Runs the loop until rill_loop_stop() is called.
 * Returns: 0 after a stop; -EINVAL for NULL; a negative errno if the backend failed (the loop
 * is then unusable).
 * Ownership: l stays the caller's; callbacks run inside this call and cannot destroy it.
 * Thread: the loop's thread; not reentrant (-EBUSY from inside a callback). */
RILL_API int rill_loop_run(rill_loop *l);

/* Runs one iteration: waits up to timeout_ms for I/O or a timer (0: do not wait; -1: until
 * something happens), dispatches every callback that is due, then flushes submitted work.
 * Returns: the number of events and timers dispatched (>= 0); -EINVAL for NULL; or a negative
 * errno from the backend.
 * Ownership: as rill_loop_run().
 * Thread: the loop's thread; not reentrant (-EBUSY from inside a callback). */
RILL_API int rill_loop_run_once(rill_loop *l, int timeout_ms);

/* rill_loop_run_once() with the wait in microseconds: waits up to timeout_us for I/O or a timer
 * (0: do not wait; any negative value: until something happens), dispatches every callback
 * that is due, then flushes submitted work. An idle wait lasts at least timeout_us and ends
 * about when it runs out: io_uring times it to the nanosecond, epoll with epoll_pwait2 (Linux
 * 5.11); where epoll_pwait2 is missing the wait rounds up to whole milliseconds. A timer due
 * sooner shortens the wait to its deadline; rill_loop_wake() ends it early. The callbacks that
 * fire are those of the loop's handles and timers, from inside this call.
 * Returns: the number of events and timers dispatched (>= 0), or a negative errno; -EINVAL for
 * a NULL l; -EBUSY from inside one of the loop's callbacks.
 * Ownership: as rill_loop_run().
 * Thread: the loop's thread; not reentrant. */
RILL_API int rill_loop_run_once_us(rill_loop *l, int64_t timeout_us);

/* Asks rill_loop_run() to return after the current iteration, and wakes the loop if it waits.
 * NULL is ignored.
 * Ownership: l must stay alive until this returns: from another thread, the caller makes sure
 * rill_loop_destroy() cannot run meanwhile. Nothing is kept.
 * Thread: any (async-signal-safe too: it is one atomic store and one write(2)). */
RILL_API void rill_loop_stop(rill_loop *l);

/* Wakes a loop that waits in poll, so rill_loop_run_once() returns. NULL is ignored.
 * Ownership: as rill_loop_stop(). Thread: any. */
RILL_API void rill_loop_wake(rill_loop *l);

typedef void (*rill_defer_cb)(rill_loop *l, void *arg);

/* Runs fn(l, arg) on the loop's thread at the start of the next flush point, after the current
 * batch of callbacks. Deferred callbacks run in the order they were deferred; one deferred from
 * inside a deferred callback runs in the next iteration.
 * Returns: 0; -EINVAL for NULL; -ENOMEM.
 * Ownership: arg is the caller's: passed to fn as it is, never freed. When the loop is destroyed
 * first, fn never runs, so free arg some other way then.
 * Thread: the loop's thread only (use the engine's mailbox to reach another loop). */
RILL_API int rill_loop_defer(rill_loop *l, rill_defer_cb fn, void *arg);

/* Returns the loop's cached monotonic clock in milliseconds, updated once per iteration (0 for
 * NULL). Ownership: reads l; keeps nothing. Thread: the loop's thread. */
RILL_API uint64_t rill_loop_now(const rill_loop *l);

/* Returns the same cached instant in microseconds of CLOCK_MONOTONIC (0 for NULL): the clock of
 * the timer wheel. A timer started with rill_timer_start_us(t, due_us - rill_loop_now_us(l), 0)
 * from inside a callback fires once CLOCK_MONOTONIC reaches due_us, never before. No callback.
 * Ownership: reads l; keeps nothing. Thread: the loop's thread. */
RILL_API uint64_t rill_loop_now_us(const rill_loop *l);

/* Returns "epoll" or "io_uring": the backend this loop really runs on ("none" for NULL).
 * Ownership: a static string; never free it (it outlives the loop). Thread: any. */
RILL_API const char *rill_loop_backend_name(const rill_loop *l);

/* Returns the RILL_CAP_* bits of this loop's backend (0 for NULL).
 * Ownership: reads l; keeps nothing. Thread: any. */
RILL_API uint32_t rill_loop_caps(const rill_loop *l);

/* Per-loop counters. All are totals since the loop was created except the "now" gauges. */
struct rill_loop_stats {
    uint64_t accepts;          /* connections accepted */
    uint64_t connects;         /* outbound connections established */
    uint64_t conns_open;       /* now: connections open */
    uint64_t bytes_in;         /* bytes received on streams */
    uint64_t bytes_out;        /* bytes sent on streams */
    /* The sys_* counters count system calls on epoll; on io_uring they count the operations of
     * that kind that completed (receives, sends, accepts), and uring_enters the real calls. */
    uint64_t sys_read;         /* read/readv/recv/recvmsg system calls */
    uint64_t sys_write;        /* write/writev/send/sendmsg system calls */
    uint64_t sys_accept;       /* accept4 */
    uint64_t sys_connect;      /* connect */
    uint64_t sys_poll;         /* epoll_wait / io_uring_enter that waited */
    uint64_t sys_ctl;          /* epoll_ctl */
    uint64_t sys_other;        /* socket, bind, listen, setsockopt, shutdown, close, ... */
    uint64_t bufs_in_use;      /* now: slab buffers holding data (engine or caller) */
    uint64_t bufs_in_ring;     /* now: empty buffers lent to the kernel's buffer ring (io_uring) */
    uint64_t buf_bytes_mapped; /* now: bytes of slab regions mapped */
    uint64_t buf_budget;       /* the slab budget in bytes */
    uint64_t buf_exhausted;    /* times a lease failed because the budget was spent */
    uint64_t buf_bytes_trimmed; /* bytes of idle slab regions given back to the kernel */
    uint64_t read_pauses;      /* times reading paused for lack of buffers (backpressure) */
    uint64_t timers_fired;     /* timer callbacks run (idle timeouts included) */
    uint64_t emfile_events;    /* accepts that failed with EMFILE/ENFILE */
    uint64_t stale_completions;/* events for handles already closed, dropped */
    uint64_t iterations;       /* loop iterations */
    uint64_t uring_enters;     /* io_uring_enter calls (submit and/or wait) */
    uint64_t sqes_submitted;   /* io_uring submission queue entries submitted */
    uint64_t cqes_reaped;      /* io_uring completions handled */
    uint64_t buf_ring_empty;   /* multishot receives ended because the buffer ring ran dry */
    uint64_t dgrams_in;        /* datagrams received */
    uint64_t dgrams_out;       /* datagrams sent */
    uint64_t dgrams_truncated; /* datagrams longer than max_datagram (delivered with TRUNC) */
    uint64_t dgram_bytes_in;   /* payload bytes of datagrams received */
    uint64_t dgram_bytes_out;  /* payload bytes of datagrams sent */
    uint64_t mem_held;         /* now: bytes held for peers, against the memory ceiling */
    uint64_t mem_ceiling;      /* the memory ceiling in bytes (UINT64_MAX: none) */
    uint64_t mem_pauses;       /* times the ceiling was reached and reading paused */
    uint64_t mem_closes;       /* connections closed because the ceiling held (-ENOBUFS) */
};

/* Copies the loop's counters into *out (zeros for a NULL loop; a NULL out is ignored).
 * Ownership: out is the caller's storage, written during the call; nothing is kept.
 * Thread: the loop's thread (another thread may read a torn, approximate snapshot). */
RILL_API void rill_loop_stats(const rill_loop *l, struct rill_loop_stats *out);

/* ---------------------------------------------------------------------------------------------
 * Buffers
 *
 * Slab buffers are fixed-size, refcounted blocks from the loop's slab. The engine receives into
 * them; on_data hands one over for the duration of the callback. To keep it longer, take a
 * reference with rill_buf_ref() and drop it with rill_buf_release(). Buffers belong to one loop
 * and are not thread-safe.
 *
 * Misuse of the count is caught in every build, Release included. rill_buf_release() of a
 * buffer with no reference left (a double release) and rill_buf_ref() of a buffer already
 * released cannot return an error, so they write one line naming the call and the buffer to
 * stderr and call abort(): carrying on would put the buffer on the free list twice and hand the
 * same memory to two owners. Releasing the buffer on_data lends without having referenced it
 * aborts the same way, when the engine drops its own reference after the callback.
 * rill_send_bufs() returns -EINVAL for a released buffer instead. What cannot be caught: a
 * release after the slab has leased the buffer again (it drops the new owner's reference), one
 * after the slab has unmapped the buffer's wholly free region to make room for another size,
 * and any use after rill_loop_destroy() (the slab is gone).
 * ------------------------------------------------------------------------------------------- */

/* Leases a buffer of at least `size` bytes (up to 1 MiB) with one reference held by the caller.
 * Returns: 0 and *out; -EINVAL for size 0 or over 1 MiB; -ENOBUFS when the slab budget is spent.
 * Ownership: the caller owns one reference; drop it with rill_buf_release(). The buffer belongs
 * to l's slab: every reference becomes invalid when l is destroyed. Thread: loop's. */
RILL_API int rill_buf_lease(rill_loop *l, size_t size, rill_buf **out);

/* Adds a reference to a buffer the caller may use now: one it holds a reference to, or the one
 * on_data or on_datagram lends for the duration of the callback.
 * Returns: buf (NULL for NULL). A buffer with no reference left (released already) aborts the
 * process with a message on stderr, in every build (see above).
 * Ownership: the caller owns the new reference and drops it with one rill_buf_release(); the
 * buffer and its memory stay valid while any reference is held, until the loop is destroyed.
 * Thread: the buffer's loop. */
RILL_API rill_buf *rill_buf_ref(rill_buf *buf);

/* Drops a reference; at zero the buffer returns to the slab. NULL is ignored. Releasing more
 * often than the buffer was leased and referenced aborts the process with "rill:
 * rill_buf_release: buffer 0x... released more often than it was referenced (double release)"
 * on stderr, in every build, before the slab is touched.
 * Ownership: the caller gives up one reference it owns (from rill_buf_lease() or
 * rill_buf_ref()); never release the buffer on_data lends unless you referenced it. When the
 * last reference goes, buf and rill_buf_data(buf) are invalid. Thread: loop's. */
RILL_API void rill_buf_release(rill_buf *buf);

/* Returns the first byte of the buffer's memory (NULL for NULL).
 * Ownership: the memory is the buffer's: valid while the caller holds a reference (or, for the
 * buffer on_data lends, until the callback returns); never free it. Thread: whoever holds a
 * reference. */
RILL_API void *rill_buf_data(const rill_buf *buf);

/* Returns the buffer's capacity in bytes (0 for NULL).
 * Ownership: reads buf, which the caller holds a reference to. Thread: whoever holds a
 * reference. */
RILL_API size_t rill_buf_capacity(const rill_buf *buf);

/* A byte range inside a slab buffer, for rill_send_bufs(). */
struct rill_bufslice {
    rill_buf *buf;
    uint32_t off;
    uint32_t len;
};

/* ---------------------------------------------------------------------------------------------
 * Stream connections
 * ------------------------------------------------------------------------------------------- */

/* Callbacks of a connection. All run on the loop's thread; ctx is the connection's context
 * (rill_conn_set_ctx(), initially the listener's or connect call's ctx). NULL members are
 * allowed and mean "do nothing", except on_eof whose default is to close the connection. */
struct rill_conn_handler {
    /* The connection is established (accepted, or the outbound connect succeeded). */
    void (*on_open)(rill_conn *c, void *ctx);
    /* Bytes arrived. `data`/`len` lie inside `buf`, which the engine owns for the duration of the
     * callback; take a reference with rill_buf_ref() to keep it (for rill_send_bufs(), say). */
    void (*on_data)(rill_conn *c, rill_buf *buf, const void *data, size_t len, void *ctx);
    /* The peer half-closed (read returned 0). Queued sends still go out. When NULL the
     * connection is closed with status 0 once its queued data has been sent. When our side is
     * shut down too (rill_shutdown() and its FIN sent), the connection closes with status 0
     * after this returns, whichever order the two happened in. */
    void (*on_eof)(rill_conn *c, void *ctx);
    /* The write queue fell below the low-water mark after having passed the high-water mark,
     * or after a send was refused with -ENOBUFS: the moment to send again. */
    void (*on_drain)(rill_conn *c, void *ctx);
    /* The last callback, exactly once. status is 0 for an orderly close (rill_close(), end of
     * stream) or a negative errno (-ECONNRESET, -ETIMEDOUT for a connect, idle or send timeout,
     * -ENOBUFS when the loop's memory ceiling closed it, -ECONNREFUSED, -ECANCELED when the loop
     * is destroyed, ...). The handle is invalid after
     * this returns. For an outbound connection that never opened, on_open was not called. */
    void (*on_close)(rill_conn *c, int status, void *ctx);
    /* TCP urgent (out-of-band) data arrived: the kernel's single urgent byte, taken out of the
     * stream (it never appears in on_data). It is reported when the kernel signals it, which
     * may be before on_data has delivered the bytes sent ahead of it. When NULL, urgent bytes
     * are not read and the kernel drops each one when the next arrives. */
    void (*on_urgent)(rill_conn *c, uint8_t byte, void *ctx);
    /* Unix stream and seqpacket: descriptors passed by the peer with SCM_RIGHTS arrived. They
     * come right before the on_data of the bytes they were sent with (while reading is paused,
     * when they arrive: ahead of the held bytes). Ownership: the callee owns
     * the n descriptors and must close them. When NULL, descriptors are not asked for (the
     * receive path stays the cheaper one) and any the peer sends are closed by the kernel. */
    void (*on_fds)(rill_conn *c, const int *fds, unsigned n, void *ctx);
};

#define RILL_CONN_F_NO_NODELAY (1u << 0) /* leave Nagle on (TCP_NODELAY is on by default) */

struct rill_conn_options {
    uint32_t flags;           /* RILL_CONN_F_* */
    uint32_t idle_timeout_ms; /* close with -ETIMEDOUT after this long with no I/O; 0: never */
    size_t wq_high;           /* write queue high-water mark in bytes; default 1 MiB */
    size_t wq_low;            /* on_drain fires below this after passing wq_high; default 256 KiB */
    size_t wq_limit;          /* rill_send returns -ENOBUFS past this; default 16 MiB */
    /* unix+seqpacket: the largest message accepted; one buffer this size receives each message
     * (a connection waiting for one holds it). A longer message closes the connection with
     * -EMSGSIZE rather than cut it. Default 256 KiB (above Linux's default socket send buffer,
     * which bounds a message); at most 1 MiB. */
    uint32_t msg_max;
    /* Close with -ETIMEDOUT when the write queue holds bytes and none of them has gone out for
     * this long (a peer that stopped reading); 0: never (the default). Measured from the last
     * byte the kernel took, or from when the queue stopped being empty. Checked by the same
     * timer as idle_timeout_ms, so a close comes at most one wheel tick late. */
    uint32_t send_timeout_ms;
};

typedef void (*rill_send_cb)(rill_conn *c, int status, void *ctx);

#define RILL_LISTEN_F_REUSEPORT (1u << 0)    /* SO_REUSEPORT: several listeners on one port */
#define RILL_LISTEN_F_NO_REUSEADDR (1u << 1) /* SO_REUSEADDR is on by default */
#define RILL_LISTEN_F_V6ONLY (1u << 2)       /* IPV6_V6ONLY on an IPv6 listener */
/* Unix paths: when the path holds a socket file nobody listens on (a server that crashed),
 * remove it and bind again. A live socket there still gives -EADDRINUSE, and a file that is
 * not a socket is never removed (-EADDRINUSE). */
#define RILL_LISTEN_F_UNLINK_STALE (1u << 3)

struct rill_listen_config {
    const struct rill_conn_handler *handler; /* required; copied */
    void *ctx;                               /* initial ctx of every accepted connection */
    uint32_t flags;                          /* RILL_LISTEN_F_* */
    int backlog;                             /* listen(2) backlog; 0: SOMAXCONN */
    struct rill_conn_options conn;           /* options of accepted connections; 0s: defaults */
    uint32_t mode;                           /* unix paths: chmod of the socket file; 0: umask */
};

/* Opens a listening socket on `uri` and starts accepting on this loop. Each accepted connection
 * gets on_open, then the other callbacks. When file descriptors run out (EMFILE/ENFILE), accept
 * pauses, the backlog waits, a counter records it, and accepting resumes on a timer: the loop
 * never spins.
 * Returns: 0 and *out; -EINVAL for a NULL or malformed uri/config (nothing is opened);
 * -EADDRINUSE, -EACCES, -EADDRNOTAVAIL and other bind/listen errors.
 * Ownership: uri is read during the call; cfg and *cfg->handler are copied (accepted
 * connections get their own copies); cfg->ctx stays the caller's and becomes each accepted
 * connection's ctx. The loop owns the listener; close it with rill_listener_close() (or it
 * closes with the loop). Thread: the loop's thread. */
RILL_API int rill_listen(rill_loop *l, const char *uri, const struct rill_listen_config *cfg,
                         rill_listener **out);

/* Writes the bound address (with the real port when 0 was asked) to *ss and its length to *len.
 * Returns: 0; -EINVAL for NULL.
 * Ownership: ss and len are the caller's storage, written; the address is a copy.
 * Thread: the loop's thread. */
RILL_API int rill_listener_addr(const rill_listener *ls, struct sockaddr_storage *ss,
                                socklen_t *len);

/* Returns the bound port (host byte order), or 0 if ls is NULL.
 * Ownership: reads ls; keeps nothing. Thread: the loop's thread. */
RILL_API int rill_listener_port(const rill_listener *ls);

/* Stops accepting and closes the socket; connections already accepted stay open. The handle is
 * invalid after this returns (it is freed once no event can refer to it).
 * Returns: 0; -EINVAL for NULL (and for a second close before the loop's next flush point; after
 * it the memory is gone, so never close twice).
 * Ownership: ls is the engine's to free, at the next flush point; the listener's ctx stays the
 * caller's (accepted connections keep using it as theirs). Thread: the loop's thread. */
RILL_API int rill_listener_close(rill_listener *ls);

struct rill_connect_config {
    const struct rill_conn_handler *handler; /* required; copied */
    void *ctx;                               /* the connection's initial ctx */
    uint32_t timeout_ms;                     /* connect timeout; 0: none (the kernel's) */
    struct rill_conn_options conn;           /* 0s: defaults */
};

/* Starts an outbound connection to `uri`. Success is reported by on_open; failure by on_close
 * with -ECONNREFUSED, -ETIMEDOUT (timeout_ms passed), -ENETUNREACH, ... (on_open not called).
 * Data sent before on_open is queued and goes out once connected.
 * A host name is resolved without blocking the loop (from the loop's cache while its TTL
 * lasts, else /etc/hosts and DNS through c-ares): the call returns at once, and a lookup that
 * fails ends in on_close with RILL_ENONAME (no such name), RILL_EDNSTIMEOUT (no answer within
 * the loop's dns_timeout_ms) or RILL_EDNSFAIL. The addresses are then tried in the resolver's
 * order: the next one after a failure, or after 250 ms without success while the earlier
 * attempts go on (RFC 8305 "Happy Eyeballs", simplified); the first to connect wins and the
 * others are closed; on_close reports the last failure when all fail. timeout_ms bounds the
 * whole, lookup included. Numeric addresses connect at once, without any lookup.
 * Returns: 0 and *out; -EINVAL for a NULL or malformed uri/config (nothing opened); -EMFILE;
 * -ENOBUFS when the loop's max_conns are open.
 * Ownership: uri is read during the call; cfg and *cfg->handler are copied; cfg->ctx stays the
 * caller's. The loop owns the connection until on_close returns: *out is set (and the call
 * returns 0) even when connect(2) fails at once, which on_close then reports. After on_close
 * the handle's slot is reused for a later connection: never use it again.
 * Thread: the loop's thread. */
RILL_API int rill_connect(rill_loop *l, const char *uri, const struct rill_connect_config *cfg,
                          rill_conn **out);

/* Queues bytes for sending. The iovec array is copied before this returns; the bytes it points
 * to must stay valid and unchanged until cb runs. cb (may be NULL) runs exactly once on the
 * loop's thread, never from inside this call: with the number of bytes sent, or a negative
 * errno (-ECANCELED if the connection closed first, -EPIPE/-ECONNRESET if the peer went away).
 * Returns: 0 when queued; -EINVAL for bad arguments (NULL, iovcnt 0 or over IOV_MAX, total 0
 * or over INT_MAX, an iovec with a length and a NULL base); -ENOTCONN after rill_close() or
 * rill_shutdown(); -ENOBUFS when the write queue already holds bytes and these would take it
 * past its hard limit (nothing is queued then; a send into an empty queue is always accepted,
 * so one large send is never refused); -ENOMEM.
 * Ownership: the iovec array is copied; the bytes stay the caller's and must stay valid until cb
 * runs; ctx is passed to cb and never freed. Thread: the loop's thread. */
RILL_API int rill_send(rill_conn *c, const struct iovec *iov, unsigned iovcnt, rill_send_cb cb,
                       void *ctx);

/* Like rill_send(), but sends ranges of slab buffers without copying: the engine takes its own
 * reference on each buffer (the caller keeps its references) and drops it when the bytes are
 * sent or the send fails. cb as for rill_send().
 * Returns: as rill_send(); -EINVAL also for a slice outside its buffer or of a buffer already
 * released (no reference left): misuse here is refused, not aborted, and nothing is queued.
 * Ownership: the slices array is copied; for each non-empty slice the engine takes a reference
 * of its own (none on a refusal), dropped once the send is done or failed, right after cb (if
 * any) returns; so the caller may release its references as soon as this returns. The bytes in
 * the ranges must not change until cb runs: they are sent from the buffer itself.
 * Thread: loop's. */
RILL_API int rill_send_bufs(rill_conn *c, const struct rill_bufslice *slices, unsigned n,
                            rill_send_cb cb, void *ctx);

#define RILL_SEND_F_URGENT (1u << 0) /* TCP: send with MSG_OOB; the last byte is urgent */

/* Extra parts of a send, for rill_send_ex(). */
struct rill_send_opts {
    uint32_t flags;  /* RILL_SEND_F_* */
    const int *fds;  /* unix sockets: descriptors to pass with the bytes (SCM_RIGHTS) */
    unsigned nfds;   /* how many; at most 253 (SCM_MAX_FD) */
};

/* rill_send() with options. An urgent send goes out alone in one sendmsg(MSG_OOB), after
 * everything queued before it, so its last byte is the urgent one. Descriptors are duplicated
 * before this returns (the caller keeps and may close its own) and reach the peer with the
 * first byte of these bytes, which start a sendmsg of their own; the engine closes its
 * duplicates when the send completes or fails. opts may be NULL (then this is rill_send()).
 * Returns: as rill_send(); -EINVAL also for unknown flags, nfds over 253, descriptors on a
 * socket that is not AF_UNIX or urgent data on one that is not TCP; -EMFILE when duplicating
 * the descriptors fails.
 * Ownership: as rill_send(); opts and its fds array are read during the call (the descriptors
 * are duplicated, so the caller keeps and closes its own). Thread: the loop's thread. */
RILL_API int rill_send_ex(rill_conn *c, const struct iovec *iov, unsigned iovcnt,
                          const struct rill_send_opts *opts, rill_send_cb cb, void *ctx);

/* Queues `len` bytes of the file open on `fd`, from `offset`, for sending, in order with the
 * connection's other sends; the kernel copies them from the page cache to the socket
 * (sendfile(2)), so they never pass through user memory. The file's offset is neither used nor
 * moved, so one descriptor may serve many sends at once.
 * The bytes are read when they are sent, not when queued: a file that changes meanwhile is
 * sent as it is then. A file that ends before offset + len (shorter from the start, or
 * truncated while sent) fails the connection with -ENODATA: the peer has received a prefix,
 * and what was queued behind could no longer be framed, so cb and every later send get
 * -ENODATA and on_close follows with it. A descriptor sendfile(2) cannot read (a pipe, a
 * socket, a directory) fails the connection the same way with the kernel's error (-EINVAL).
 * Stream sockets only: TCP and Unix streams. A blocking read of the file (a cold page cache on
 * a slow disk) blocks the loop, as a read(2) of it would.
 * Write-queue limits: the bytes count in the queue's length (rill_conn_write_queued(),
 * wq_high and on_drain; later sends past wq_limit are refused), but they are not memory the
 * engine holds, so they are not counted against the loop's memory ceiling (mem_ceiling), and a
 * file send itself is refused (-ENOBUFS) only when the queue is already over wq_limit.
 * cb (may be NULL) runs exactly once on the loop's thread, never from inside this call: with
 * len (as an int) once every byte was sent, or a negative errno: -ENODATA (the file ended
 * first), -ECANCELED (the connection closed first), -EPIPE/-ECONNRESET (the peer went away;
 * sendfile has no MSG_NOSIGNAL, so SIGPIPE is blocked on the loop's thread around each call and
 * the process is never signalled), or the file's read error (-EIO).
 * Returns: 0 when queued; -EINVAL for NULL c, fd < 0, len 0 or over INT_MAX, or offset + len
 * past INT64_MAX; -EOPNOTSUPP on a seqpacket connection; -ENOTCONN after rill_close() or
 * rill_shutdown(); -ENOBUFS when the write queue is over its hard limit; -ENOMEM.
 * Ownership: the descriptor stays the caller's and is not duplicated: it must stay open (and
 * name the same file) until cb runs; close it in cb, or after. ctx is passed to cb and never
 * freed. Thread: the loop's thread. */
RILL_API int rill_send_file(rill_conn *c, int fd, uint64_t offset, size_t len, rill_send_cb cb,
                            void *ctx);

/* Half-closes: once every queued byte has been sent, shuts down the sending side (FIN). Reading
 * goes on until the peer closes too; then the connection closes by itself with status 0.
 * Further sends return -ENOTCONN.
 * Returns: 0; -ENOTCONN if already shut down or closing; -EINVAL for NULL.
 * Ownership: c stays the engine's; it stays valid until its on_close has run. Thread: loop's. */
RILL_API int rill_shutdown(rill_conn *c);

/* Closes the connection without waiting for queued data: queued send callbacks get -ECANCELED,
 * then on_close(c, 0) runs from the loop (never from inside this call). Safe from any callback of
 * the connection.
 * Returns: 0; -EALREADY if close already started (on_close pending); -EINVAL for NULL.
 * Ownership: c stays valid, and calls on it refused (-ENOTCONN, -EALREADY), until on_close has
 * run; after on_close returns the engine reuses its slot for a later connection, so a handle
 * kept past it may name another connection: drop it there. Thread: the loop's thread. */
RILL_API int rill_close(rill_conn *c);

/* Stops reading (no on_data) until rill_read_resume(); the kernel's receive buffer then fills
 * and TCP flow control slows the peer. Returns: 0; -ENOTCONN when closing; -EINVAL for NULL.
 * Ownership: bytes already on their way when reading pauses (the rest of a read, completions in
 * flight) wait in slab buffers the engine holds, counted against the slab budget, until resume
 * delivers them. Thread: the loop's thread (callbacks included). */
RILL_API int rill_read_pause(rill_conn *c);
RILL_API int rill_read_resume(rill_conn *c);

/* Returns the number of bytes queued and not yet sent (0 for NULL).
 * Ownership: reads c; keeps nothing. Thread: the loop's thread. */
RILL_API size_t rill_conn_write_queued(const rill_conn *c);

/* Write the local or peer address to *ss and its length to *len.
 * Returns: 0; -EINVAL for NULL; -ENOTCONN before connect completed or after close.
 * Ownership: ss and len are the caller's storage, written during the call.
 * Thread: the loop's thread. */
RILL_API int rill_conn_local_addr(const rill_conn *c, struct sockaddr_storage *ss, socklen_t *len);
RILL_API int rill_conn_peer_addr(const rill_conn *c, struct sockaddr_storage *ss, socklen_t *len);

/* The connection's context pointer, passed to every callback (set_ctx takes effect from the
 * next callback). NULL handles are ignored / give NULL.
 * Ownership: ctx stays the caller's: the engine only hands it to callbacks and never frees it
 * (free it in on_close, the last callback); a migrated connection takes it to the target loop's
 * thread. Thread: the loop's thread. */
RILL_API void rill_conn_set_ctx(rill_conn *c, void *ctx);
RILL_API void *rill_conn_ctx(const rill_conn *c);

/* Returns the loop the connection belongs to (NULL for NULL).
 * Ownership: a plain pointer, no reference: the loop belongs to its creator (or its engine) and
 * outlives the connection. Thread: the loop's thread. */
RILL_API rill_loop *rill_conn_loop(const rill_conn *c);

/* Returns the socket descriptor (for getsockopt and the like; do not read, write or close it),
 * or -EBADF after close.
 * Ownership: the descriptor stays the engine's, which closes it when the connection closes; do
 * not keep the number past rill_close() or on_close (the kernel reuses it).
 * Thread: the loop's thread. */
RILL_API int rill_conn_fd(const rill_conn *c);

/* The peer's credentials at connect time (SO_PEERCRED), for Unix stream and seqpacket sockets.
 * Any pointer may be NULL. Returns: 0; -EINVAL for NULL c; -ENOTCONN after close; -EOPNOTSUPP
 * for a socket that is not AF_UNIX.
 * Ownership: pid, uid and gid are the caller's storage, written on success only.
 * Thread: the loop's thread. */
RILL_API int rill_conn_peer_cred(const rill_conn *c, pid_t *pid, uid_t *uid, gid_t *gid);

/* ---------------------------------------------------------------------------------------------
 * Socket options, on any handle
 *
 * Named options take and give an int. Each one is a plain setsockopt/getsockopt on the handle's
 * socket; what the kernel reads back may differ from what was set (SO_RCVBUF is doubled, for
 * instance), and that is what getopt returns.
 * ------------------------------------------------------------------------------------------- */

typedef enum rill_sockopt {
    RILL_OPT_NODELAY = 1,     /* TCP_NODELAY: 0 or 1 */
    RILL_OPT_KEEPALIVE,       /* SO_KEEPALIVE: 0 or 1 */
    RILL_OPT_KEEPIDLE,        /* TCP_KEEPIDLE: seconds idle before the first probe */
    RILL_OPT_KEEPINTVL,       /* TCP_KEEPINTVL: seconds between probes */
    RILL_OPT_KEEPCNT,         /* TCP_KEEPCNT: probes before the connection is dropped */
    RILL_OPT_RCVBUF,          /* SO_RCVBUF: bytes */
    RILL_OPT_SNDBUF,          /* SO_SNDBUF: bytes */
    RILL_OPT_LINGER,          /* SO_LINGER: seconds, or -1 for off (the default) */
    RILL_OPT_NOTSENT_LOWAT,   /* TCP_NOTSENT_LOWAT: bytes */
    RILL_OPT_BUSY_POLL,       /* SO_BUSY_POLL: microseconds (raising it may need CAP_NET_ADMIN) */
    RILL_OPT_TOS,             /* IP_TOS, or IPV6_TCLASS on an IPv6 socket */
    /* IPV6_V6ONLY: 0 or 1. The kernel takes it only before bind (-EINVAL after), and rill
     * binds every socket as it opens it: read it with getopt, and ask for it when opening, with
     * RILL_LISTEN_F_V6ONLY or RILL_DGRAM_F_V6ONLY. */
    RILL_OPT_V6ONLY,
    /* Datagram sockets (UDP, raw, ping) only; -ENOPROTOOPT on others: */
    RILL_OPT_BROADCAST,       /* SO_BROADCAST: 0 or 1; without it a send to a broadcast
                               * address fails with -EACCES */
    RILL_OPT_MULTICAST_TTL,   /* IP_MULTICAST_TTL, or IPV6_MULTICAST_HOPS on an IPv6 socket:
                               * 0-255 (default 1: the local network only; -1 sets the default) */
    RILL_OPT_MULTICAST_LOOP,  /* IP_MULTICAST_LOOP, or IPV6_MULTICAST_LOOP: 0 or 1 (default 1:
                               * this host's own members of a group get what it sends there) */
} rill_sockopt;

/* Set or read a named option. Returns: 0; -EINVAL for NULL or an unknown option; -ENOPROTOOPT
 * for an option the socket's kind has not (TCP_NODELAY on UDP, IPV6_V6ONLY on IPv4,
 * RILL_OPT_BROADCAST on TCP or Unix sockets);
 * -ENOTCONN after close; other setsockopt errors (-EPERM).
 * Ownership: the handle stays the engine's; *value is the caller's storage, written by get.
 * Thread: the handle's loop thread. */
RILL_API int rill_conn_setopt(rill_conn *c, rill_sockopt opt, int value);
RILL_API int rill_conn_getopt(const rill_conn *c, rill_sockopt opt, int *value);
RILL_API int rill_listener_setopt(rill_listener *ls, rill_sockopt opt, int value);
RILL_API int rill_listener_getopt(const rill_listener *ls, rill_sockopt opt, int *value);
RILL_API int rill_dgram_setopt(rill_dgram *d, rill_sockopt opt, int value);
RILL_API int rill_dgram_getopt(const rill_dgram *d, rill_sockopt opt, int *value);

/* Passthrough setsockopt/getsockopt on the handle's socket, for anything not named above.
 * Returns: 0; -EINVAL for NULL; -ENOTCONN after close; the call's -errno. *len is in and out
 * for get.
 * Ownership: val (len bytes) is read during set and not kept; val and *len are the caller's
 * storage, written by get. Thread: the handle's loop thread. */
RILL_API int rill_conn_setsockopt(rill_conn *c, int level, int name, const void *val,
                                  socklen_t len);
RILL_API int rill_conn_getsockopt(const rill_conn *c, int level, int name, void *val,
                                  socklen_t *len);
RILL_API int rill_listener_setsockopt(rill_listener *ls, int level, int name, const void *val,
                                      socklen_t len);
RILL_API int rill_listener_getsockopt(const rill_listener *ls, int level, int name, void *val,
                                      socklen_t *len);
RILL_API int rill_dgram_setsockopt(rill_dgram *d, int level, int name, const void *val,
                                   socklen_t len);
RILL_API int rill_dgram_getsockopt(const rill_dgram *d, int level, int name, void *val,
                                   socklen_t *len);

/* Reads TCP_INFO into *info (struct tcp_info from <netinet/tcp.h>), up to *len bytes; *len is
 * set to what the kernel filled. Returns: 0; -EINVAL for NULL; -ENOPROTOOPT on a socket that
 * is not TCP; -ENOTCONN after close.
 * Ownership: info and len are the caller's storage, written during the call.
 * Thread: the loop's thread. */
RILL_API int rill_conn_tcp_info(const rill_conn *c, void *info, socklen_t *len);

/* ---------------------------------------------------------------------------------------------
 * Datagram sockets: UDP over IPv4 and IPv6, Unix datagrams, ICMP
 *
 * Addresses: "udp://host:port", "unix+dgram:/path", "unix+dgram:@name", "raw://icmp" and
 * "raw6://icmpv6" (raw ICMP sockets: CAP_NET_RAW), "ping://" and "ping6://" (the unprivileged
 * ICMP echo socket, allowed by net.ipv4.ping_group_range), optionally with a local host
 * ("ping://127.0.0.1"). A raw IPv4 socket receives whole IP packets (header included), as the
 * kernel delivers them.
 * ------------------------------------------------------------------------------------------- */

#define RILL_DGRAM_TRUNC (1u << 0) /* on_datagram: longer than max_datagram; len is the part kept */

struct rill_dgram_handler {
    /* A datagram arrived from `from` (fromlen bytes; 0 for an unnamed Unix peer). `data`/`len`
     * lie inside `buf`, which the engine owns for the duration of the callback; take a
     * reference with rill_buf_ref() to keep it. flags: RILL_DGRAM_TRUNC. Required. */
    void (*on_datagram)(rill_dgram *d, rill_buf *buf, const void *data, size_t len,
                        const struct sockaddr *from, socklen_t fromlen, uint32_t flags,
                        void *ctx);
    /* A receive error that leaves the socket usable: -ECONNREFUSED on a connected UDP socket
     * whose peer has no listener (an ICMP port unreachable), -EHOSTUNREACH, ... Optional. */
    void (*on_error)(rill_dgram *d, int status, void *ctx);
    /* The last callback, exactly once, after rill_dgram_close() (or loop destruction, status
     * -ECANCELED) and after every send callback. The handle is invalid after it. Optional. */
    void (*on_close)(rill_dgram *d, int status, void *ctx);
};

#define RILL_DGRAM_F_REUSEPORT (1u << 0)    /* SO_REUSEPORT on the local address */
#define RILL_DGRAM_F_V6ONLY (1u << 1)       /* IPV6_V6ONLY on an IPv6 socket */
#define RILL_DGRAM_F_UNLINK_STALE (1u << 2) /* unix+dgram: as RILL_LISTEN_F_UNLINK_STALE */
/* UDP receive offload (needs RILL_CAP_UDP_GRO, else -EOPNOTSUPP): the kernel hands over runs of
 * same-sized datagrams from one sender in one receive; rill splits them again and calls
 * on_datagram once per datagram (all within one buffer), so only the cost changes. Receive
 * buffers are then at least 64 KiB, whatever max_datagram says. */
#define RILL_DGRAM_F_GRO (1u << 3)

struct rill_dgram_config {
    const struct rill_dgram_handler *handler; /* required; copied */
    void *ctx;
    /* Connected mode: the socket is connect()ed to this address ("udp://…", "unix+dgram:…");
     * sends may then pass no address, and only the peer's datagrams arrive. NULL: unconnected. */
    const char *peer;
    uint32_t flags;         /* RILL_DGRAM_F_* */
    /* Payload bytes one receive buffer holds. A longer datagram arrives cut to this length with
     * RILL_DGRAM_TRUNC, never silently. Default 65527 (the largest UDP payload over IPv6, and
     * more than over IPv4), so by default nothing is cut; at most 1 MiB - 4 KiB. Small values
     * (2048, say) save memory for small-datagram servers. */
    uint32_t max_datagram;
    /* Datagrams received per system call (recvmmsg) or buffers lent to the kernel (io_uring's
     * buffer ring): the socket holds up to batch * max_datagram bytes of buffers. Default 8,
     * at most 256. */
    uint32_t batch;
    size_t wq_limit;        /* bytes queued for sending before -ENOBUFS; default 4 MiB */
    uint32_t mode;          /* unix+dgram paths: chmod of the socket file; 0: umask */
    /* UDP send offload (needs RILL_CAP_UDP_GSO, else -EOPNOTSUPP): a send longer than gso_size
     * leaves as datagrams of gso_size bytes (the last may be shorter), cut by the kernel after
     * one trip down the stack. At most 64 segments and 65507 bytes per send. 0: off. */
    uint16_t gso_size;
};

typedef void (*rill_dgram_send_cb)(rill_dgram *d, int status, void *ctx);

/* Opens a datagram socket bound to `uri` and starts receiving on this loop. uri may be NULL
 * when cfg->peer is set: the kernel picks the local address (a Unix datagram socket is then
 * bound to an autobound abstract name, so the peer can answer).
 * A peer given by host name ("udp://name:53") is resolved without blocking the loop (as for
 * rill_connect()): the call returns the handle at once, the socket is created, bound and
 * connected to the first address once the name resolves, and sends queued meanwhile go out
 * then. Until then rill_dgram_fd() is -EBADF and rill_dgram_port() 0. A lookup (or socket set-up)
 * that fails closes the handle: on_close runs with RILL_ENONAME, RILL_EDNSTIMEOUT, RILL_EDNSFAIL
 * or the errno, and queued sends get -ECANCELED.
 * Returns: 0 and *out; -EINVAL for a NULL or malformed uri/config (nothing opened);
 * -EPERM for a raw socket without CAP_NET_RAW, or a ping socket outside ping_group_range;
 * -EADDRINUSE and other socket/bind/connect errors.
 * Ownership: uri and cfg->peer are read during the call; cfg and *cfg->handler are copied;
 * cfg->ctx stays the caller's. The loop owns the socket; close it with rill_dgram_close() (or it
 * closes with the loop). Thread: loop's. */
RILL_API int rill_dgram_open(rill_loop *l, const char *uri, const struct rill_dgram_config *cfg,
                             rill_dgram **out);

/* Queues one datagram made of the iovecs, to `to` (NULL on a connected socket: to the peer).
 * The iovec array and the address are copied; the bytes must stay valid and unchanged until
 * cb runs. Datagrams go out in batches at the flush point (sendmmsg, or one io_uring
 * submission). cb (may be NULL) runs exactly once on the loop's thread, never from inside this
 * call: with the bytes sent, or a negative errno for this datagram alone (-EMSGSIZE,
 * -ECONNREFUSED, -ENETUNREACH, -ECANCELED when the socket closed first); the socket goes on.
 * Returns: 0 when queued; -EINVAL for NULL, iovcnt over 64 or a bad address length;
 * -EDESTADDRREQ for no address on an unconnected socket; -EISCONN for an address on a
 * connected one; -EMSGSIZE over 1 MiB - 4 KiB (1 044 480 bytes: the largest payload a slab buffer carries
 * with its header); -ENOBUFS when wq_limit bytes are queued (nothing queued; a datagram into an
 * empty queue is always accepted); -ENOMEM; -ENOTCONN after close. iov may be NULL when
 * iovcnt is 0 (an empty datagram).
 * Ownership: the iovec array and the address are copied; the bytes stay the caller's until cb
 * runs (also when the socket closes first: cb then gets -ECANCELED); ctx is passed to cb and
 * never freed. Thread: the loop's thread. */
RILL_API int rill_dgram_sendto(rill_dgram *d, const struct iovec *iov, unsigned iovcnt,
                               const struct sockaddr *to, socklen_t tolen, rill_dgram_send_cb cb,
                               void *ctx);

/* Closes the socket: queued datagrams are dropped (their callbacks get -ECANCELED), receiving
 * stops, a Unix socket file this socket created is removed, and on_close(d, 0) runs from the
 * loop, never from inside this call.
 * Returns: 0; -EALREADY if closing; -EINVAL for NULL.
 * Ownership: d stays valid until on_close returns, after every send callback; the engine frees
 * it right then, so drop the handle (and free ctx) in on_close. Thread: the loop's thread. */
RILL_API int rill_dgram_close(rill_dgram *d);

/* Writes the bound local address to *ss and its length to *len.
 * Returns: 0; -EINVAL for NULL; -ENOTCONN after close.
 * Ownership: ss and len are the caller's storage, written during the call.
 * Thread: the loop's thread. */
RILL_API int rill_dgram_local_addr(const rill_dgram *d, struct sockaddr_storage *ss,
                                   socklen_t *len);

/* Returns the bound port (host byte order) of a UDP socket, else 0 (also for NULL).
 * Ownership: reads d; keeps nothing. Thread: the socket's loop thread. */
RILL_API int rill_dgram_port(const rill_dgram *d);

/* Bytes queued and not yet handed to the kernel, as counted against wq_limit: each datagram's
 * payload plus 64 bytes for its bookkeeping (so empty datagrams cannot queue without bound).
 * Returns 0 for NULL. Ownership: reads d; keeps nothing. Thread: the socket's loop thread. */
RILL_API size_t rill_dgram_queued(const rill_dgram *d);

/* The socket's descriptor (for options; do not read, write or close it), or -EBADF for NULL or
 * once closing. Ownership: the descriptor stays the engine's. Thread: the socket's loop thread. */
RILL_API int rill_dgram_fd(const rill_dgram *d);

/* The context pointer passed to every callback (set_ctx takes effect from the next callback),
 * and the loop the socket belongs to. NULL handles are ignored / give NULL.
 * Ownership: ctx stays the caller's: the engine hands it to callbacks and never frees it (free
 * it in on_close). The loop pointer is no reference; the loop outlives the socket.
 * Thread: the socket's loop thread. */
RILL_API void rill_dgram_set_ctx(rill_dgram *d, void *ctx);
RILL_API void *rill_dgram_ctx(const rill_dgram *d);
RILL_API rill_loop *rill_dgram_loop(const rill_dgram *d);

/* ---------------------------------------------------------------------------------------------
 * Broadcast and multicast (UDP over IPv4 and IPv6)
 *
 * Broadcast is an option: RILL_OPT_BROADCAST (SO_BROADCAST) lets sends reach 255.255.255.255 or
 * a subnet's broadcast address; without it they fail with -EACCES in their send callback.
 * Sending to a group needs nothing but a route to it (or rill_dgram_set_multicast_if());
 * RILL_OPT_MULTICAST_TTL and RILL_OPT_MULTICAST_LOOP tune how far it goes and whether this
 * host's own members hear it. Receiving needs a membership: rill_dgram_join().
 *
 * A Linux pitfall: a socket bound to the wildcard address ("udp://0.0.0.0:PORT") receives the
 * datagrams of every group that any socket of this host joined on that port (IP_MULTICAST_ALL,
 * on by default). Bind a listener to the group itself ("udp://239.1.2.3:PORT") to hear only its
 * group; sends from such a socket then leave from an address the kernel picks.
 * ------------------------------------------------------------------------------------------- */

/* Joins the multicast group `group` ("239.1.2.3", "ff15::1234", "[ff15::1234]") on the
 * interface named `ifname` (NULL or "": the one the kernel routes the group to), so datagrams
 * sent to the group (and to the socket's port) arrive in on_datagram. With `source` (a unicast
 * address), a source-specific join: only datagrams from that source are delivered; join again
 * with another source to add it. NULL source: any source. The group and source must be of the
 * socket's family (an IPv6 socket joins IPv6 groups). Memberships end at close.
 * IPv4 uses IP_ADD_MEMBERSHIP (struct ip_mreqn) or IP_ADD_SOURCE_MEMBERSHIP, IPv6
 * IPV6_JOIN_GROUP; MCAST_JOIN_SOURCE_GROUP serves source-specific joins on IPv6, and on IPv4
 * when an interface is named (ip_mreq_source can name it only by an address).
 * Returns: 0; -EINVAL for NULL d or group, an address that does not parse in the socket's
 * family, a group that is not multicast, or a source that is multicast or unspecified;
 * -ENODEV for an unknown interface, or when none is named and no route leads to the group;
 * -ENOPROTOOPT on a Unix datagram socket; -ENOTCONN after close; -EADDRINUSE for a group
 * already joined on that interface (an any-source join of a group joined source-specific
 * too; a source-specific join of a group joined any-source makes it source-specific);
 * -EADDRNOTAVAIL for a source already joined; -ENOBUFS over the kernel's membership limit
 * (net.ipv4.igmp_max_memberships); other setsockopt errors.
 * Ownership: group, source and ifname are read during the call and not kept.
 * Thread: the socket's loop thread. No callback fires because of it. */
RILL_API int rill_dgram_join(rill_dgram *d, const char *group, const char *source,
                             const char *ifname);

/* Leaves what rill_dgram_join() joined, with the same arguments: the group on that interface,
 * or with `source`, that source only (the group is left with its last source). Datagrams for
 * the group stop arriving once no socket of this host is a member any more (see the pitfall
 * above for wildcard-bound sockets); datagrams already received may still be delivered.
 * Returns: as rill_dgram_join(), and -EADDRNOTAVAIL for a group (or source) not joined.
 * Ownership: group, source and ifname are read during the call and not kept.
 * Thread: the socket's loop thread. No callback fires because of it. */
RILL_API int rill_dgram_leave(rill_dgram *d, const char *group, const char *source,
                              const char *ifname);

/* Sends to multicast groups leave by the interface named `ifname` (IP_MULTICAST_IF by index,
 * or IPV6_MULTICAST_IF) instead of the one the routing table picks; NULL or "" puts the
 * kernel's choice back. Unicast sends are not affected.
 * Returns: 0; -EINVAL for NULL d; -ENODEV for an unknown interface; -ENOPROTOOPT on a Unix
 * datagram socket; -ENOTCONN after close; other setsockopt errors.
 * Ownership: ifname is read during the call and not kept. Thread: the socket's loop thread. */
RILL_API int rill_dgram_set_multicast_if(rill_dgram *d, const char *ifname);

/* ---------------------------------------------------------------------------------------------
 * Timers (a hierarchical timer wheel with 1 us resolution: O(1) start and stop). The millisecond
 * calls and the microsecond ones (_us) share the wheel and the loop's microsecond clock.
 * ------------------------------------------------------------------------------------------- */

typedef void (*rill_timer_cb)(rill_timer *t, void *ctx);

/* Creates a stopped timer on the loop.
 * Returns: 0 and *out; -EINVAL for NULL; -ENOMEM.
 * Ownership: the caller owns it and frees it with rill_timer_destroy(); rill_loop_destroy()
 * frees the timers still existing. ctx stays the caller's: passed to cb, never freed.
 * Thread: loop's. */
RILL_API int rill_timer_create(rill_loop *l, rill_timer_cb cb, void *ctx, rill_timer **out);

/* (Re)starts the timer: cb runs after timeout_ms, then every repeat_ms if repeat_ms > 0. A timer
 * that is already running is rescheduled. Timers due at the same time fire in start order.
 * Returns: 0; -EINVAL for NULL.
 * Ownership: t stays the caller's (valid until rill_timer_destroy() or the loop's destruction).
 * Thread: the loop's thread (callbacks included). */
RILL_API int rill_timer_start(rill_timer *t, uint64_t timeout_ms, uint64_t repeat_ms);

/* (Re)starts the timer in microseconds: cb runs once timeout_us have passed (never earlier, by
 * the loop's monotonic clock), then every repeat_us if repeat_us > 0, each deadline counted
 * from the previous one so the period holds on average; a loop late by a whole period or more
 * skips ahead instead of firing a burst. The loop's wait ends at the deadline (see
 * rill_loop_run_once_us() for the precision of each backend), so a timer fires within the
 * system's wake-up latency of it: tens of microseconds typically, more on a busy machine. A
 * timer that is already running is rescheduled; timers due at the same time fire in start
 * order, whichever call started them. rill_timer_start(t, ms, r) is this call with ms * 1000
 * and r * 1000.
 * Returns: 0; -EINVAL for NULL.
 * Ownership: t stays the caller's (valid until rill_timer_destroy() or the loop's destruction).
 * Thread: the loop's thread (callbacks included); cb runs on it, from rill_loop_run() or
 * rill_loop_run_once(). */
RILL_API int rill_timer_start_us(rill_timer *t, uint64_t timeout_us, uint64_t repeat_us);

/* Stops the timer; it does not fire again until restarted. Stopping a stopped timer is a no-op.
 * Returns: 0; -EINVAL for NULL.
 * Ownership: t stays the caller's; stopping frees nothing (rill_timer_destroy() does).
 * Thread: the loop's thread. */
RILL_API int rill_timer_stop(rill_timer *t);

/* Returns true when the timer is scheduled (false for NULL).
 * Ownership: reads t; keeps nothing. Thread: the loop's thread. */
RILL_API bool rill_timer_active(const rill_timer *t);

/* Stops and frees the timer; allowed from inside its own callback. NULL is ignored.
 * Ownership: t is gone when this returns. Thread: the loop's thread. */
RILL_API void rill_timer_destroy(rill_timer *t);

/* ---------------------------------------------------------------------------------------------
 * Engine: one loop per CPU, each on its own pinned thread, sharing nothing
 * ------------------------------------------------------------------------------------------- */

typedef struct rill_engine rill_engine;

#define RILL_ENGINE_F_NO_PIN (1u << 0) /* do not pin loop i to the i-th CPU of the mask */

struct rill_engine_config {
    uint32_t loops;             /* 0: one per CPU in the process's affinity mask (max 1024) */
    uint32_t flags;             /* RILL_ENGINE_F_* */
    uint32_t mailbox_capacity;  /* messages each loop's mailbox holds; default 4096 (power of 2) */
    struct rill_loop_config loop; /* every loop's config (each picks its backend as usual) */
};

/* Fills cfg with the defaults. NULL is ignored.
 * Ownership: cfg is the caller's storage, written and not kept. Thread: any. */
RILL_API void rill_engine_config_init(struct rill_engine_config *cfg);

/* Creates an engine and its loops (not yet running). cfg may be NULL for the defaults.
 * Returns: 0 and *out; -EINVAL for a bad config; errors of rill_loop_create().
 * Ownership: cfg is copied. The caller owns the engine and destroys it with
 * rill_engine_destroy(); the engine owns its loops. Thread: any. */
RILL_API int rill_engine_create(const struct rill_engine_config *cfg, rill_engine **out);

/* Starts one thread per loop (pinned unless RILL_ENGINE_F_NO_PIN). Returns once every loop is
 * ready; no loop serves before all are.
 * Returns: 0; -EALREADY if started; -EAGAIN/-ENOMEM if a thread cannot start: then none runs,
 * the threads that did start have ended, and the engine may be started again or destroyed.
 * Ownership: from here each loop belongs to its own thread, which also destroys it when the
 * engine stops; e stays the caller's. Thread: the thread that created it, not a loop thread. */
RILL_API int rill_engine_start(rill_engine *e);

/* Stops gracefully: every listener and datagram socket closes first (their on_close runs with
 * status 0); then each connection is closed (on_close with
 * status 0) once its queued data is sent, or with -ETIMEDOUT when drain_ms passes first; then
 * the loops stop and their threads are joined. drain_ms 0 closes at once (queued sends get
 * -ECANCELED). Returns within about drain_ms (plus one loop iteration).
 * Returns: 0; -EINVAL for NULL; -EALREADY if not running.
 * Ownership: when this returns every loop has been destroyed on its own thread, with every
 * handle and buffer of it (rill_engine_loop() gives NULL from then on); e stays the caller's,
 * to destroy (it cannot start again). Thread: not a loop thread. */
RILL_API int rill_engine_stop(rill_engine *e, uint32_t drain_ms);

/* Destroys a stopped (or never started) engine and its loops. A running engine is stopped first
 * with drain_ms 0. NULL is ignored.
 * Ownership: e, its loops and everything on them are invalid when this returns. Messages posted
 * to an engine that never started are dropped unrun: their arg is never handed back.
 * Thread: not a loop thread. */
RILL_API void rill_engine_destroy(rill_engine *e);

/* Returns the number of loops (0 for NULL). Ownership: reads e; keeps nothing. Thread: any. */
RILL_API uint32_t rill_engine_loop_count(const rill_engine *e);

/* Returns loop `index` (NULL when out of range, and once the engine has stopped).
 * Ownership: the loop is the engine's, no reference: never rill_loop_destroy() it; it is
 * destroyed when the engine stops (or is destroyed, if it never started).
 * Thread: any, but use the loop itself only from its own thread (in its callbacks or posted
 * functions), or before start. */
RILL_API rill_loop *rill_engine_loop(const rill_engine *e, uint32_t index);

/* Returns the CPU loop `index` is pinned to, or -1 when unpinned or out of range.
 * Ownership: reads e; keeps nothing. Thread: any. */
RILL_API int rill_engine_loop_cpu(const rill_engine *e, uint32_t index);

/* Returns the index of a loop within its engine, or -1 for a loop not owned by an engine.
 * Ownership: reads l; keeps nothing. Thread: any (fixed when the engine creates the loop). */
RILL_API int rill_loop_index(const rill_loop *l);

/* Returns the engine a loop belongs to, or NULL.
 * Ownership: no reference: the engine owns the loop, not the other way round; it is the
 * creator's to destroy, never from one of its loops' threads. Thread: any. */
RILL_API rill_engine *rill_loop_engine(const rill_loop *l);

#define RILL_ENGINE_LISTEN_F_STEER (1u << 0) /* serve each connection on the loop of its CPU */

/* How rill_engine_listen() steers connections to loops. */
typedef enum rill_steering {
    RILL_STEER_HASH = 0,     /* the kernel's SO_REUSEPORT hash (no steering, or unavailable) */
    RILL_STEER_BPF_CPU = 1,  /* a reuseport BPF program picks the listener of the current CPU */
    RILL_STEER_INCOMING_CPU = 2, /* SO_INCOMING_CPU on each listener (Linux 6.2 selection) */
} rill_steering;

/* Opens one SO_REUSEPORT listener per loop on the same address, each accepting on its own loop
 * (cfg->flags gets RILL_LISTEN_F_REUSEPORT). Port 0 picks one port for all. With
 * RILL_ENGINE_LISTEN_F_STEER, a connection is served by the loop pinned to the CPU that
 * received it: by a reuseport BPF program when loop i runs on CPU i, else by SO_INCOMING_CPU;
 * when neither works (unpinned loops, an old kernel) it falls back to hashing and says so in
 * *steering and in one log line.
 * Returns: the bound port (> 0) or 0 for a unix address (one listener, on loop 0: unix sockets
 * have no SO_REUSEPORT); -EINVAL; bind/listen errors (then no listener stays open).
 * Ownership: uri and cfg are read during the call (each loop's listener copies cfg and its
 * handler); *steering is the caller's storage. The engine owns the listeners; they close when it
 * stops. Accepted connections call the handler on their own loop's thread, all with cfg->ctx as
 * their ctx: it is shared by every loop's thread at once. Thread: not a loop thread; before
 * start or while running. */
RILL_API int rill_engine_listen(rill_engine *e, const char *uri, const struct rill_listen_config *cfg,
                                uint32_t flags, rill_steering *steering);

typedef void (*rill_post_fn)(rill_loop *l, void *arg);

/* Runs fn(loop, arg) on loop `index`'s thread, in its next iteration. Messages from one thread
 * to one loop run in the order posted; none is lost or run twice. The mailbox is bounded.
 * Returns: 0; -EAGAIN when that loop's mailbox is full (nothing queued: try again later);
 * -EINVAL for a bad index or NULL fn; -ESHUTDOWN once the engine is stopping.
 * Ownership: arg stays the caller's: passed to fn as it is, never freed. A message that was
 * refused is not queued (fn never sees arg); one accepted runs exactly once, except on an engine
 * destroyed without ever starting, which drops it. Thread: any (loop threads included). */
RILL_API int rill_engine_post(rill_engine *e, uint32_t index, rill_post_fn fn, void *arg);

typedef void (*rill_migrate_cb)(rill_conn *c, int status, void *arg);

/* Moves an open connection to loop `index` of its engine, for servers that balance by load.
 * Reading stops on the current loop; once nothing is in flight there, the socket is handed over
 * and cb(new_c, 0, arg) runs on the target loop's thread with the new handle, which keeps the
 * handler and ctx and receives from then on. Until the hand-over, data already on its way is
 * still delivered to the old handle on the old loop; after it, the old handle gets no more
 * callbacks (no on_close) and is invalid. A full target mailbox only delays the hand-over. If
 * the target cannot take it (over max_conns), the socket is closed there and cb(NULL, -errno,
 * arg) runs on the target. If the connection closes before the hand-over (peer reset, engine
 * stop), the move is cancelled: on_close runs on the old handle and cb is not called.
 * Returns: 0 when the move started; -EINVAL (NULL, bad index, not in an engine); -EBUSY when
 * sends are queued, data is held or the connection is closing (finish them first); -EALREADY
 * when it already is on that loop.
 * Ownership: at the hand-over the old handle is freed (its slot reused): never use it after
 * that; the new one (given to cb) belongs to the target loop until its on_close, and takes the
 * same ctx, which from then on is used on the target's thread. arg stays the caller's and is
 * passed to cb at most once: when the move is cancelled (on_close on the old handle) cb never
 * runs, so free arg from on_close then. Thread: the connection's loop thread. */
RILL_API int rill_conn_migrate(rill_conn *c, uint32_t index, rill_migrate_cb cb, void *arg);

/* Per-loop counters (out[i] for loop i, n entries at most) and their sum. While running, each
 * loop copies its own counters on its thread (through its mailbox), so the snapshot is
 * consistent per loop. Either pointer may be NULL.
 * Returns: the engine's loop count (also when n is smaller: out gets the first n); -EINVAL;
 * -ENOMEM. A full mailbox is waited for (retried every 100 µs), never reported.
 * Ownership: per_loop (n entries) and sum are the caller's storage, written during the call; the
 * counters are copies. Thread: not a loop thread. */
RILL_API int rill_engine_stats(rill_engine *e, struct rill_loop_stats *per_loop, uint32_t n,
                               struct rill_loop_stats *sum);

#ifdef __cplusplus
}
#endif

#endif /* RILL_H */
