/* Helpers shared by the io_uring hard-case tests (test_uring*.c): a listener on 127.0.0.1, a
 * loop's counters, and settling a loop until no connection holds a slot. */
#ifndef RILL_TEST_URING_UTIL_H
#define RILL_TEST_URING_UTIL_H

#include "harness.h"

#define MiB (1u << 20)

static inline rill_listener *listen_on(rill_loop *l, const struct rill_conn_handler *h, void *ctx)
{
    rill_listener *ls;
    struct rill_listen_config lc = {.handler = h, .ctx = ctx};
    int r = rill_listen(l, "tcp://127.0.0.1:0", &lc, &ls);
    cr_assert_eq(r, 0, "listen: %s", rill_strerror(r));
    return ls;
}

static inline struct rill_loop_stats stats_of(rill_loop *l)
{
    struct rill_loop_stats st;
    rill_loop_stats(l, &st);
    return st;
}

/* Runs the loop until no connection holds a slot and the descriptor count is back to `fds`:
 * on io_uring a close finishes in the kernel only when the loop enters it again. */
static inline void settle(rill_loop *l, int fds, unsigned ms)
{
    uint64_t end = h_now_ms() + ms;
    for (;;) {
        cr_assert_geq(rill_loop_run_once(l, 5), 0);
        struct rill_loop_stats st = stats_of(l);
        if (st.conns_open == 0 && (fds < 0 || h_count_fds() == fds))
            return;
        if (h_now_ms() >= end) {
            cr_assert_fail("the loop did not settle: %llu connections open, %d descriptors "
                           "(want %d)",
                           (unsigned long long)st.conns_open, h_count_fds(), fds);
        }
    }
}

#endif
