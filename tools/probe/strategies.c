/* One list of every strategy, in the order of the tables: system calls, io_uring, zero-copy. */
#include <string.h>

#include "strategies.h"

const struct probe_strategy *probe_strategy_get(unsigned i)
{
    if (i < probe_strategy_sys_count)
        return &probe_strategy_sys[i];
    i -= probe_strategy_sys_count;
    if (i < probe_strategy_uring_count)
        return &probe_strategy_uring[i];
    i -= probe_strategy_uring_count;
    return i < probe_strategy_zc_count ? &probe_strategy_zc[i] : NULL;
}

unsigned probe_strategy_count(void)
{
    return probe_strategy_sys_count + probe_strategy_uring_count + probe_strategy_zc_count;
}

int probe_strategy_parse(const char *name)
{
    for (unsigned i = 0; i < probe_strategy_count(); i++)
        if (strcmp(probe_strategy_get(i)->name, name) == 0)
            return (int)i;
    return -1;
}
