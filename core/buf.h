/*
 * buf.h - gq_buf, a growable byte buffer that is always NUL-terminated.
 *
 * Initialise with GQ_BUF_INIT; gq_buf_free() releases it (and is a no-op on
 * an initialised empty buffer).  Appends return 0 or GQ_ENOMEM.
 */
#ifndef GQ_BUF_H
#define GQ_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "err.h"

typedef struct {
    char *ptr;  /* NUL-terminated once anything was appended; may be NULL */
    size_t len;
    size_t cap;
} gq_buf;

#define GQ_BUF_INIT { NULL, 0, 0 }

int gq_buf_grow(gq_buf *b, size_t extra, gq_err *e);
int gq_buf_append(gq_buf *b, const void *data, size_t n, gq_err *e);
int gq_buf_puts(gq_buf *b, const char *s, gq_err *e);
int gq_buf_printf(gq_buf *b, gq_err *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int gq_buf_vprintf(gq_buf *b, gq_err *e, const char *fmt, va_list ap);
/* Give up ownership of the bytes (caller frees with gq_free); b becomes empty. */
char *gq_buf_detach(gq_buf *b);
void gq_buf_clear(gq_buf *b);
void gq_buf_free(gq_buf *b);

#endif
