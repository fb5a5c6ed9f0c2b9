/* The library's own allocator (internal): libc's unless rill_set_allocator() replaced it. */
#ifndef RILL_ALLOC_H
#define RILL_ALLOC_H

#include <stddef.h>

void *rill__malloc(size_t n);
void *rill__calloc(size_t n, size_t size); /* zeroed; checks n * size for overflow */
void *rill__realloc(void *p, size_t n);
void rill__free(void *p);

/* Memory for structs that carry cache-line-aligned members (the allocator hook may not align). */
void *rill__alloc_aligned(size_t size);
void rill__free_aligned(void *p);

#endif
