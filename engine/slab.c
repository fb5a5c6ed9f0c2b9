/* Per-loop slab of refcounted, fixed-size buffers.
 *
 * Memory layout. Buffer memory comes from mmap'd regions, each carved into equal buffers of one
 * size class; the struct rill_buf headers of a region sit in a calloc'd array after the region's
 * own header (one allocation per region). Keeping headers out of the mapping means buffers of
 * 4 KiB and more start on page boundaries, which O_DIRECT, registered buffers and MSG_ZEROCOPY
 * like, and that a mapped page is first touched when a buffer is first written, not when the
 * region is carved.
 *
 * Budget. s->mapped counts whole pages mapped, since that is what the kernel charges. A region is
 * about 256 KiB or 16 buffers, whichever is larger, so that mmap calls are rare, but never more
 * than the budget has left (and never less than one buffer). When the budget cannot cover even
 * one buffer, regions of other classes whose buffers are all free are unmapped first: without
 * that, a burst of small reads could pin the whole budget in the 512 B class forever and starve
 * every later large lease.
 *
 * Free lists are LIFO per class: the buffer released last is the most likely to still be in the
 * cache. Not thread-safe: a slab belongs to one loop. */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "slab.h"

#define REGION_TARGET ((size_t)256 * 1024) /* preferred region size in bytes */
#define REGION_MIN_BUFS 16u                /* ... unless 16 buffers of the class are larger */

static size_t class_size(uint32_t cls)
{
    return (size_t)1 << (cls + RILL__SLAB_MIN_SHIFT);
}


static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

int rill__slab_init(struct rill__slab *s, size_t budget)
{
    if (budget == 0)
        return -EINVAL;
    *s = (struct rill__slab){ .budget = budget };
    rill__slab_set_ceiling(s, SIZE_MAX);
    return 0;
}

void rill__slab_set_ceiling(struct rill__slab *s, size_t limit)
{
    s->held_limit = limit;
    s->held_low = limit == SIZE_MAX ? SIZE_MAX : limit - limit / 4;
    s->rx_stop = s->held >= limit ? 0 : limit;
}

static void region_unmap(struct rill__region *r)
{
    munmap(r->base, r->bytes);
    rill__free(r);
}

void rill__slab_fini(struct rill__slab *s)
{
    struct rill__region *r = s->regions;

    while (r) {
        struct rill__region *next = r->next;
        region_unmap(r);
        r = next;
    }
    size_t budget = s->budget, limit = s->held_limit;
    *s = (struct rill__slab){ .budget = budget };
    rill__slab_set_ceiling(s, limit);
}

/* How many buffers a new region of class cls gets with `room` bytes of budget left: the target
 * size, cut down to the room, rounded up to whole pages (the kernel maps pages, and for classes
 * below a page the rest of the last page is better used as extra buffers than wasted).
 * Returns 0 when not even one buffer fits. */
static uint32_t region_bufs(uint32_t cls, size_t room, size_t page)
{
    size_t sz = class_size(cls);
    size_t want = REGION_MIN_BUFS * sz > REGION_TARGET ? REGION_MIN_BUFS * sz : REGION_TARGET;
    size_t avail = room - room % page;
    size_t bytes = want < avail ? want : avail;

    bytes -= bytes % sz;
    if (bytes == 0)
        return 0;
    bytes = (bytes + page - 1) / page * page;
    return (uint32_t)(bytes / sz);
}

/* Maps a region of class cls with nbufs buffers and puts them all on the class's free list. */
static int region_map(struct rill__slab *s, uint32_t cls, uint32_t nbufs, size_t page)
{
    size_t sz = class_size(cls);
    size_t bytes = ((size_t)nbufs * sz + page - 1) / page * page;
    struct rill__region *r = rill__calloc(1, sizeof *r + (size_t)nbufs * sizeof(struct rill_buf));
    if (!r)
        return -ENOMEM;
    void *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
        rill__free(r);
        return -ENOMEM;
    }
    r->slab = s;
    r->base = base;
    r->bytes = bytes;
    r->cls = cls;
    r->nbufs = r->nfree = nbufs;
    r->next = s->regions;
    s->regions = r;
    s->mapped += bytes;

    /* Pushed from the last buffer down, so that leases walk the region upwards in address order
     * and the pages of a lightly used region stay untouched. */
    struct rill__slab_class *c = &s->cls[cls];
    for (uint32_t i = nbufs; i-- > 0;) {
        struct rill_buf *b = &r->bufs[i];
        b->cls = cls;
        b->data = r->base + (size_t)i * sz;
        b->region = r;
        b->next_free = c->free;
        c->free = b;
    }
    return 0;
}

/* Unmaps the regions marked doomed; classes has a bit for each class that loses one. A doomed
 * region's buffers are all on its class's free list, interleaved with other regions' buffers:
 * each affected list is filtered once, before the headers are freed. */
static void unmap_doomed(struct rill__slab *s, uint32_t classes)
{
    for (uint32_t cls = 0; cls < RILL__SLAB_CLASSES; cls++) {
        if (!(classes & (1u << cls)))
            continue;
        struct rill_buf **pp = &s->cls[cls].free;
        while (*pp) {
            if ((*pp)->region->doomed)
                *pp = (*pp)->next_free;
            else
                pp = &(*pp)->next_free;
        }
    }
    for (struct rill__region **pp = &s->regions; *pp;) {
        struct rill__region *r = *pp;
        if (!r->doomed) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        s->mapped -= r->bytes;
        region_unmap(r);
    }
}

/* Unmaps wholly free regions until `need` more bytes fit in the budget. Regions are only chosen
 * when, all together, they can make enough room: unmapping memory and then failing anyway would
 * just cost the next lease of that class an mmap.
 * Returns whether the room was made. */
static bool reclaim(struct rill__slab *s, size_t need)
{
    size_t freed = 0;
    uint32_t classes = 0; /* bit per class that loses a region */

    for (struct rill__region *r = s->regions; r; r = r->next)
        if (r->nfree == r->nbufs)
            freed += r->bytes;
    if (s->mapped - freed + need > s->budget)
        return false;

    freed = 0;
    for (struct rill__region *r = s->regions; r && s->mapped - freed + need > s->budget;
         r = r->next) {
        if (r->nfree != r->nbufs)
            continue;
        r->doomed = true;
        freed += r->bytes;
        classes |= 1u << r->cls;
    }
    unmap_doomed(s, classes);
    return true;
}

/* Regions are judged idle by sampling rather than by stamping the moment each becomes wholly
 * free: a stamp would cost every buffer release a compare and a store, on the hot path, to serve
 * a check that runs every few seconds. A region that was busy between two checks but free at
 * each of them may be unmapped although in use meanwhile; that is safe (it holds no buffer when
 * it goes) and costs at most one mmap later, and with LIFO free lists the busy buffers
 * concentrate in few regions, so it is rare. */
size_t rill__slab_trim(struct rill__slab *s, uint32_t checks, bool *more)
{
    size_t freed = 0;
    uint32_t classes = 0;
    *more = false;
    for (struct rill__region *r = s->regions; r; r = r->next) {
        if (r->nfree != r->nbufs) {
            r->idle_checks = 0;
        } else if (++r->idle_checks >= checks) {
            r->doomed = true;
            freed += r->bytes;
            classes |= 1u << r->cls;
        } else {
            *more = true;
        }
    }
    if (classes) {
        unmap_doomed(s, classes);
        s->trimmed += freed;
    }
    return freed;
}

/* Gives class cls at least one free buffer, within the budget.
 * Returns: 0; -ENOBUFS when the budget cannot hold one more buffer of the class even after
 * reclaiming; -ENOMEM when mmap or the header allocation fails. */
static int grow(struct rill__slab *s, uint32_t cls)
{
    size_t page = page_size();
    size_t room = s->budget > s->mapped ? s->budget - s->mapped : 0;
    uint32_t nbufs = region_bufs(cls, room, page);

    if (nbufs == 0) {
        size_t one = (class_size(cls) + page - 1) / page * page;
        if (!reclaim(s, one))
            return -ENOBUFS;
        room = s->budget - s->mapped;
        nbufs = region_bufs(cls, room, page);
        assert(nbufs > 0);
    }
    return region_map(s, cls, nbufs, page);
}

int rill__slab_lease_slow(struct rill__slab *s, size_t size, struct rill_buf **out)
{
    if (size == 0 || size > RILL__SLAB_MAX)
        return -EINVAL;
    uint32_t cls = rill__slab_class_of(size);
    struct rill__slab_class *c = &s->cls[cls];
    if (!c->free) {
        int rc = grow(s, cls);
        if (rc < 0) {
            if (rc == -ENOBUFS)
                s->exhausted++;
            return rc;
        }
    }
    return rill__slab_lease(s, size, out); /* the class has a free buffer now */
}

uint64_t rill__slab_class_in_use(const struct rill__slab *s, uint32_t cls)
{
    uint64_t n = 0;
    for (const struct rill__region *r = s->regions; r; r = r->next)
        if (r->cls == cls)
            n += r->nbufs - r->nfree;
    return n;
}

struct rill__slab *rill__buf_slab(const struct rill_buf *b)
{
    return b->region->slab;
}

void rill__buf_misuse(const struct rill_buf *b, const char *what, const char *why)
{
    /* The process is past saving: the slab's free list would be corrupt from here on. The line
     * is what the person reading the core needs; stderr is unbuffered, so it is out before the
     * abort. */
    fprintf(stderr, "rill: %s: buffer %p %s\n", what, (const void *)b, why);
    abort();
}

void rill__buf_free(struct rill_buf *b)
{
    struct rill__region *r = b->region;
    struct rill__slab *s = r->slab;
    struct rill__slab_class *c = &s->cls[b->cls];

    b->next_free = c->free;
    c->free = b;
    r->nfree++;
    s->in_use--;
    s->releases++;
}
