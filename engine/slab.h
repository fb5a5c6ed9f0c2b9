/* Per-loop slab of refcounted, fixed-size buffers (internal).
 *
 * Size classes are powers of two from RILL__SLAB_MIN (512 B) to RILL__SLAB_MAX (1 MiB). Buffer
 * memory comes from large mmap'd regions, each carved into buffers of one class; the headers
 * (struct rill_buf) live in a malloc'd array beside the region so that buffer memory stays
 * page-aligned and untouched until used. The total of mapped bytes never exceeds the budget.
 * Not thread-safe: a slab belongs to one loop. */
#ifndef RILL_SLAB_H
#define RILL_SLAB_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RILL__SLAB_MIN_SHIFT 9u  /* 512 B */
#define RILL__SLAB_MAX_SHIFT 20u /* 1 MiB */
#define RILL__SLAB_CLASSES (RILL__SLAB_MAX_SHIFT - RILL__SLAB_MIN_SHIFT + 1u)
#define RILL__SLAB_MAX (1u << RILL__SLAB_MAX_SHIFT)

struct rill__slab;
struct rill__region;

struct rill_buf {
    uint32_t refs;               /* 0 while on the free list */
    uint32_t cls;                /* size class index */
    uint32_t len;                /* bytes of data a backend holds in it (held receives) */
    uint8_t *data;               /* page-aligned (for classes >= 4 KiB) memory of the class size */
    struct rill__region *region; /* the region the buffer was carved from */
    struct rill_buf *next_free;  /* free-list link while refs == 0 */
};

struct rill__slab_class {
    struct rill_buf *free; /* LIFO free list: the most recently used buffer is the warmest */
};

struct rill__slab {
    size_t budget;                 /* bytes that may be mapped at most */
    size_t mapped;                 /* bytes mapped now */
    uint64_t in_use;               /* buffers leased now, all classes */
    uint64_t exhausted;            /* leases that failed for lack of budget */
    uint64_t releases;             /* buffers returned to a free list, ever (a cheap "changed" mark) */
    uint64_t trimmed;              /* bytes unmapped by rill__slab_trim, ever */
    struct rill__region *regions;  /* every mapped region */
    struct rill__slab_class cls[RILL__SLAB_CLASSES];

    /* The loop's memory ceiling (rill_loop_config.mem_ceiling). The handles report the bytes
     * they hold for peers, write queues and data held for paused readers, with
     * rill__slab_hold()/_unhold(); at the ceiling, receive leases (rill__slab_lease_rx) are
     * refused until the held bytes fall below held_low, so that reading pauses everywhere
     * through the backends' usual "no buffer" path. Kept here because the receive lease is
     * where it bites; the slab does not know what holds the bytes. */
    size_t held;                   /* bytes held for peers now (not all of them slab memory) */
    size_t held_limit;             /* the ceiling; SIZE_MAX: none */
    size_t held_low;               /* receive leases come back below this */
    size_t rx_stop;                /* held_limit, or 0 while receive leases are refused */
    uint64_t held_pauses;          /* times the ceiling was reached */
};

/* Prepares an empty slab with the given budget in bytes (> 0). Maps nothing yet.
 * Returns: 0; -EINVAL for budget 0. */
int rill__slab_init(struct rill__slab *s, size_t budget);

/* Unmaps every region. Buffers still referenced become invalid. */
void rill__slab_fini(struct rill__slab *s);

/* Leases a buffer of at least `size` bytes (1 .. RILL__SLAB_MAX), refs = 1.
 * Maps a new region when the class has no free buffer and the budget allows; when it does not,
 * unmaps wholly free regions of other classes to make room before giving up.
 * Returns: 0 and *out; -EINVAL for size 0 or too large; -ENOBUFS when the budget is spent
 * (s->exhausted counts it); -ENOMEM when mmap or the header allocation fails. */
int rill__slab_lease_slow(struct rill__slab *s, size_t size, struct rill_buf **out);

/* A region: buffers of one class carved from one mapping (slab.c). In this header only so that
 * the lease below can be inline. */
struct rill__region {
    struct rill__region *next; /* in s->regions */
    struct rill__slab *slab;   /* owner, for rill__buf_slab() and rill__buf_put() */
    uint8_t *base;             /* the mapping */
    size_t bytes;              /* its length, a multiple of the page size */
    uint32_t cls;              /* size class of every buffer in it */
    uint32_t nbufs;            /* buffers carved from it */
    uint32_t nfree;            /* of which on the free list now; nfree == nbufs: reclaimable */
    bool doomed;               /* chosen for unmapping by reclaim() */
    uint32_t idle_checks;      /* rill__slab_trim calls in a row that found it wholly free */
    struct rill_buf bufs[];    /* the headers, bufs[i].data == base + i * class size */
};

/* Smallest class whose buffers hold `size` bytes (1 .. RILL__SLAB_MAX). */
static inline uint32_t rill__slab_class_of(size_t size)
{
    if (size <= ((size_t)1 << RILL__SLAB_MIN_SHIFT))
        return 0;
    unsigned bits = 64u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
    return bits - RILL__SLAB_MIN_SHIFT;
}

/* Inline: a lease from a class with a free buffer is a list pop, on every read's path. */
static inline int rill__slab_lease(struct rill__slab *s, size_t size, struct rill_buf **out)
{
    if (__builtin_expect(size - 1 >= RILL__SLAB_MAX, 0)) /* 0 wraps around */
        return -EINVAL;
    struct rill__slab_class *c = &s->cls[rill__slab_class_of(size)];
    struct rill_buf *b = c->free;
    if (__builtin_expect(!b, 0))
        return rill__slab_lease_slow(s, size, out); /* map a region, or fail */
    c->free = b->next_free;
    b->next_free = NULL;
    b->refs = 1;
    b->region->nfree--;
    s->in_use++;
    *out = b;
    return 0;
}

/* Sets the memory ceiling (SIZE_MAX: none); receive leases come back below 3/4 of it. */
void rill__slab_set_ceiling(struct rill__slab *s, size_t limit);

/* The handles took n more bytes to hold for a peer. Returns true when the held bytes are at the
 * ceiling (receive leases are refused from now on; the caller starts its grace period). */
static inline bool rill__slab_hold(struct rill__slab *s, size_t n)
{
    s->held += n;
    if (__builtin_expect(s->held < s->rx_stop, 1))
        return false;
    if (s->rx_stop) {
        s->rx_stop = 0;
        s->held_pauses++;
    }
    return true;
}

/* n held bytes were sent, delivered or dropped. Below the low mark after a pause, receive leases
 * come back, and the "buffers came back" mark moves so that readers waiting for one retry. */
static inline void rill__slab_unhold(struct rill__slab *s, size_t n)
{
    s->held -= n;
    if (__builtin_expect(s->rx_stop == 0, 0) && s->held < s->held_low) {
        s->rx_stop = s->held_limit;
        s->releases++;
    }
}

/* A lease for receiving: as rill__slab_lease(), refused with -ENOBUFS while the held bytes are
 * over the ceiling. Every lease a backend makes to read into goes through here. */
static inline int rill__slab_lease_rx(struct rill__slab *s, size_t size, struct rill_buf **out)
{
    if (__builtin_expect(s->rx_stop == 0, 0))
        return -ENOBUFS;
    return rill__slab_lease(s, size, out);
}

/* One check of a periodic trim: unmaps the regions found wholly free by `checks` calls in a row
 * (this one included), giving their memory back to the kernel. Sets *more when wholly free
 * regions remain (a later check may unmap them). Returns the bytes unmapped. */
size_t rill__slab_trim(struct rill__slab *s, uint32_t checks, bool *more);

/* Buffers of class cls leased now, counted from the regions (for tests and diagnostics: the
 * lease and release paths keep only the slab-wide count). */
uint64_t rill__slab_class_in_use(const struct rill__slab *s, uint32_t cls);

/* Returns the buffer's slab (through its region). */
struct rill__slab *rill__buf_slab(const struct rill_buf *b);

/* Capacity in bytes of a buffer. */
static inline size_t rill__buf_cap(const struct rill_buf *b)
{
    return (size_t)1 << (b->cls + RILL__SLAB_MIN_SHIFT);
}

/* Writes "rill: <what>: buffer <b> <why>" to stderr and aborts. Out of line and cold, so that
 * the checks in rill__buf_put() and rill__buf_get() cost one compare and branch each. */
__attribute__((cold, noinline, noreturn)) void rill__buf_misuse(const struct rill_buf *b,
                                                                const char *what, const char *why);

/* Puts a buffer whose last reference was just dropped back on its class's free list. */
void rill__buf_free(struct rill_buf *b);

/* Drops one reference; at zero the buffer goes back on its class's free list. A put on a buffer
 * whose refs is already 0 (a double release) aborts with a message, in every build. Inline: a
 * put that is not the last (the common one on the echo path, where the write queue still holds
 * a reference) costs a compare and a decrement. */
static inline void rill__buf_put(struct rill_buf *b)
{
    /* A put on a free buffer is a double release by the caller; letting it through would put the
     * buffer on the free list twice and hand it to two owners later. It is checked in every
     * build (Release strips assert()): one compare that is never true in a correct program. The
     * engine's own puts drop references it took, so when one of them trips, the caller released
     * a buffer it did not hold a reference to (one on_data lent, say): the name stays
     * rill_buf_release. */
    if (__builtin_expect(b->refs == 0, 0))
        rill__buf_misuse(b, "rill_buf_release",
                         "released more often than it was referenced (double release)");
    if (--b->refs == 0)
        rill__buf_free(b);
}

/* Adds a reference. A get on a free buffer (refs 0: released already) aborts with a message in
 * every build: letting it through would hand out a buffer that is still on the free list. */
static inline void rill__buf_get(struct rill_buf *b)
{
    if (__builtin_expect(b->refs == 0, 0))
        rill__buf_misuse(b, "rill_buf_ref", "is already released (a reference on a free buffer)");
    b->refs++;
}

#endif
