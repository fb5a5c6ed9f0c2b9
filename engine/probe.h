/* io_uring set-up and probing (internal). */
#ifndef RILL_PROBE_H
#define RILL_PROBE_H

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

/* The words for an io_uring_setup failure. */
const char *rill__uring_setup_reason(int err);

#endif
