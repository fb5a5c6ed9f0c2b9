/* The strategy tables of strategies_sys.c, strategies_uring.c and zerocopy.c, joined into one
 * list by strategies.c. */
#ifndef RILL_PROBE_STRATEGIES_H
#define RILL_PROBE_STRATEGIES_H

#include "probe.h"

extern const struct probe_strategy probe_strategy_sys[];
extern const unsigned probe_strategy_sys_count;
extern const struct probe_strategy probe_strategy_uring[];
extern const unsigned probe_strategy_uring_count;
extern const struct probe_strategy probe_strategy_zc[];
extern const unsigned probe_strategy_zc_count;

#endif
