/*
 * mem.c - allocation wrappers with an optional fault injector for tests.
 *
 * The injector counter is process-wide and atomic; it is meant for
 * single-threaded unit tests only and is disabled (-1) by default.
 */
#include "mem.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_long fail_after = -1;
static atomic_size_t mem_current, mem_peak;

static void *track(void *p)
{
    if (p) {
        size_t n = malloc_usable_size(p);
        size_t cur = atomic_fetch_add(&mem_current, n) + n;
        size_t peak = atomic_load(&mem_peak);
        while (cur > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, cur))
            ;
    }
    return p;
}

static void untrack(void *p)
{
    if (p)
        atomic_fetch_sub(&mem_current, malloc_usable_size(p));
}

size_t gq_mem_current(void)
{
    return atomic_load(&mem_current);
}

size_t gq_mem_peak(void)
{
    return atomic_load(&mem_peak);
}

void gq_mem_peak_reset(void)
{
    atomic_store(&mem_peak, atomic_load(&mem_current));
}

void gq_alloc_fail_after(long n)
{
    atomic_store(&fail_after, n);
}

static int injected_failure(void)
{
    long n = atomic_load(&fail_after);
    if (n < 0)
        return 0;
    if (n == 0)
        return 1;
    atomic_store(&fail_after, n - 1);
    return 0;
}

void *gq_malloc(size_t size)
{
    if (injected_failure())
        return NULL;
    return track(malloc(size ? size : 1));
}

void *gq_calloc(size_t n, size_t size)
{
    if (injected_failure())
        return NULL;
    return track(calloc(n ? n : 1, size ? size : 1));
}

void *gq_realloc(void *p, size_t size)
{
    void *q;
    size_t old = p ? malloc_usable_size(p) : 0;
    if (injected_failure())
        return NULL;
    q = realloc(p, size ? size : 1);
    if (q) {
        atomic_fetch_sub(&mem_current, old);
        track(q);
    }
    return q;
}

void *gq_mallocn(size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    return gq_malloc(n * size);
}

void *gq_malloc_aligned(size_t size)
{
    void *p = NULL;
    if (injected_failure())
        return NULL;
    size = (size + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, size ? size : 64) != 0)
        return NULL;
    return track(p);
}

void gq_free(void *p)
{
    untrack(p);
    free(p);
}

char *gq_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = gq_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
