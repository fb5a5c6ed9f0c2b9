/* The handle kinds a loop runs (loop.h, struct rill__kind_ops), indexed by enum rill__kind,
 * whose order is the order of their flush-point work and of teardown. A new kind of handle adds
 * itself here and to the enum; loop.c stays as it is. */
#include "loop.h"

const struct rill__kind_ops *const rill__kinds[RILL__KINDS] = {
    [RILL__KIND_LISTENER] = &rill__listener_kind,
    [RILL__KIND_CONN] = &rill__conn_kind,
    [RILL__KIND_DGRAM] = &rill__dgram_kind,
    [RILL__KIND_RESOLVE] = &rill__resolve_kind,
};
