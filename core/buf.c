/*
 * buf.c - growable, NUL-terminated byte buffer.
 */
#include "buf.h"

#include <stdio.h>
#include <string.h>

#include "mem.h"

int gq_buf_grow(gq_buf *b, size_t extra, gq_err *e)
{
    size_t need, cap;
    char *p;

    if (extra > (size_t)-1 / 2 - b->len)
        return GQ_FAIL(e, GQ_ENOMEM, "buffer size overflow");
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    p = gq_realloc(b->ptr, cap);
    if (!p)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int gq_buf_append(gq_buf *b, const void *data, size_t n, gq_err *e)
{
    int rc;
    if ((rc = gq_buf_grow(b, n, e)) < 0)
        return rc;
    if (n)
        memcpy(b->ptr + b->len, data, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return 0;
}

int gq_buf_puts(gq_buf *b, const char *s, gq_err *e)
{
    return gq_buf_append(b, s, strlen(s), e);
}

int gq_buf_vprintf(gq_buf *b, gq_err *e, const char *fmt, va_list ap)
{
    va_list ap2;
    int n, rc;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return GQ_FAIL(e, GQ_EINVAL, "bad format string");
    if ((rc = gq_buf_grow(b, (size_t)n, e)) < 0)
        return rc;
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int gq_buf_printf(gq_buf *b, gq_err *e, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = gq_buf_vprintf(b, e, fmt, ap);
    va_end(ap);
    return rc;
}

char *gq_buf_detach(gq_buf *b)
{
    char *p = b->ptr;
    b->ptr = NULL;
    b->len = b->cap = 0;
    return p;
}

void gq_buf_clear(gq_buf *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

void gq_buf_free(gq_buf *b)
{
    if (!b)
        return;
    gq_free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}
