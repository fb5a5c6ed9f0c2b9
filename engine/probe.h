/* io_uring set-up and probing (internal). */
#ifndef RILL_PROBE_H
#define RILL_PROBE_H

#include <stddef.h>
#include <stdint.h>

#include "rill.h"

#ifdef RILL_HAVE_LIBURING
#include <liburing.h>

/* Creates the ring, disabled, with the best flags the kernel takes (leaving out the features in
 * `disable`, RILL_CAP_* bits), and checks every opcode the backend uses. Returns 0 and the
 * RILL_CAP_* bits, or a negative errno with *why naming the reason (a missing opcode by name,
 * seccomp, the sysctl, the memlock limit). */
int rill__uring_setup(struct io_uring *ring, unsigned entries, uint32_t disable, uint32_t *caps,
                      const char **why);

/* Enables the ring for the calling thread (its only submitter from then on) and registers the
 * ring fd for it. Called once, from the thread that first runs the loop. Returns 0 or -errno. */
int rill__uring_bind(struct io_uring *ring);
#endif

/* The words for an io_uring_setup failure (err: a negative errno) when the
 * kernel.io_uring_disabled sysctl reads `sysctl` (0, 1 or 2; -1: absent or unreadable). The
 * sysctl only matters for EPERM, which a seccomp filter or a security module may return as well.
 * Writes a NUL-terminated text of at most cap bytes into buf and returns buf ("" when buf is
 * NULL or cap 0). Pure: it reads nothing, so tests can word every case. Thread: any. */
const char *rill__uring_setup_reason_for(int err, int sysctl, char *buf, size_t cap);

/* The value of /proc/sys/kernel/io_uring_disabled (Linux 6.6): 0, 1 or 2, or -1 when the file
 * is absent or unreadable. Thread: any. */
int rill__uring_disabled_sysctl(void);

/* The words for an io_uring_setup failure in this process: rill__uring_setup_reason_for() with
 * the sysctl read when err is EPERM. Returns a thread-local buffer, valid until the calling
 * thread's next call (loops start on several threads at once). Thread: any. */
const char *rill__uring_setup_reason(int err);

#endif
