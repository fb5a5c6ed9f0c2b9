/* Intrusive doubly-linked list (internal). A node that is not on a list has next == NULL. */
#ifndef RILL_LIST_H
#define RILL_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct rill__list {
    struct rill__list *next, *prev;
};

#define rill__container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void rill__list_init(struct rill__list *h)
{
    h->next = h->prev = h;
}

static inline bool rill__list_empty(const struct rill__list *h)
{
    return h->next == h;
}

static inline bool rill__list_linked(const struct rill__list *n)
{
    return n->next != NULL;
}

static inline void rill__list_push_back(struct rill__list *h, struct rill__list *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

static inline void rill__list_push_front(struct rill__list *h, struct rill__list *n)
{
    n->next = h->next;
    n->prev = h;
    h->next->prev = n;
    h->next = n;
}

static inline void rill__list_del(struct rill__list *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

static inline struct rill__list *rill__list_pop_front(struct rill__list *h)
{
    struct rill__list *n = h->next;
    if (n == h)
        return NULL;
    rill__list_del(n);
    return n;
}

/* Moves every node of `from` to the empty list `to`, leaving `from` empty. Work lists are taken
 * this way before a walk, so that nodes added during the walk wait for the next one. */
static inline void rill__list_take(struct rill__list *from, struct rill__list *to)
{
    rill__list_init(to);
    if (rill__list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    rill__list_init(from);
}

#endif
