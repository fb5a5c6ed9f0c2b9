/* io_uring set-up and probing (internal). */
#ifndef RILL_PROBE_H
#define RILL_PROBE_H

#include <stdint.h>

#include "rill.h"

#ifdef RILL_HAVE_LIBURING
#include <liburing.h>

/* Creates the ring with the best flags the kernel takes, checks every opcode the backend uses,
 * and registers the ring fd. Returns 0 and the RILL_CAP_* bits, or a negative errno with *why
 * naming the reason (a missing opcode by name, seccomp, the sysctl, the memlock limit). */
int rill__uring_setup(struct io_uring *ring, unsigned entries, uint32_t *caps, const char **why);
#endif

/* The words for an io_uring_setup failure. */
const char *rill__uring_setup_reason(int err);

#endif
