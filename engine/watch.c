/* Watched descriptors: the id table that lets a backend's readiness report name a watch without
 * a raw pointer (loop.h says what a watch is). Ground: the handles register watches and arm
 * them through the backend's watch downcall; backends look them up here. */
#include <errno.h>
#include <string.h>

#include "loop.h"

int rill__watch_register(rill_loop *l, struct rill__watch *w)
{
    if (l->watch_nfree == 0) {
        uint32_t cap = l->watch_cap ? l->watch_cap * 2 : 16;
        struct rill__watch **t = rill__realloc(l->watches, cap * sizeof *t);
        if (!t)
            return -ENOMEM;
        l->watches = t;
        uint32_t *f = rill__realloc(l->watch_free, cap * sizeof *f);
        if (!f)
            return -ENOMEM;
        l->watch_free = f;
        /* Push the new ids in reverse so the lowest is handed out first. */
        for (uint32_t i = cap; i-- > l->watch_cap;) {
            t[i] = NULL;
            f[l->watch_nfree++] = i;
        }
        l->watch_cap = cap;
    }
    w->id = l->watch_free[--l->watch_nfree];
    w->events = 0;
    w->gen = 0;
    l->watches[w->id] = w;
    return 0;
}

void rill__watch_unregister(rill_loop *l, struct rill__watch *w)
{
    if (w->id < l->watch_cap && l->watches[w->id] == w) {
        l->watches[w->id] = NULL;
        l->watch_free[l->watch_nfree++] = w->id;
    }
}

struct rill__watch *rill__watch_lookup(rill_loop *l, uint32_t id, uint32_t gen)
{
    if (id >= l->watch_cap)
        return NULL;
    struct rill__watch *w = l->watches[id];
    return w && w->events && w->gen == gen ? w : NULL;
}

void rill__watch_fini(rill_loop *l)
{
    rill__free(l->watches);
    rill__free(l->watch_free);
    l->watches = NULL;
    l->watch_free = NULL;
    l->watch_cap = l->watch_nfree = 0;
}
