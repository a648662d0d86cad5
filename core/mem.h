/*
 * mem.h - the allocator every core/ module uses.
 *
 * Thin wrappers over malloc that return NULL on failure (callers turn that
 * into GQ_ENOMEM; nothing aborts), plus a test-only fault injector:
 * gq_alloc_fail_after(n) makes the (n+1)-th allocation from now fail, so a
 * test can loop over every allocation of a function and check that each
 * failure gives GQ_ENOMEM and leaks nothing.  Sizes are checked for
 * overflow (gq_mallocn).
 */
#ifndef GQ_MEM_H
#define GQ_MEM_H

#include <stddef.h>

void *gq_malloc(size_t size);
void *gq_calloc(size_t n, size_t size);
void *gq_realloc(void *p, size_t size);
/* n * size bytes, or NULL if that overflows or allocation fails. */
void *gq_mallocn(size_t n, size_t size);
/* 64-byte aligned block for kernels; free with gq_free. */
void *gq_malloc_aligned(size_t size);
void gq_free(void *p);
char *gq_strdup(const char *s);

/*
 * Bytes currently allocated through these functions, and the high-water
 * mark since the last gq_mem_peak_reset() (benchmarks report peak extra
 * memory with it).  Counts our own allocations only, not BLAS buffers.
 */
size_t gq_mem_current(void);
size_t gq_mem_peak(void);
void gq_mem_peak_reset(void);

/* Test hook: fail the allocation after n more successes; -1 disables. */
void gq_alloc_fail_after(long n);

#endif
