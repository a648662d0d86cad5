/*
 * err.c - gq_err: explicit error values with a message and a location.
 */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int gq_fail(gq_err *e, gq_code code, const char *file, int line, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
        e->code = code;
        e->file = file;
        e->line = line;
    }
    return code;
}

void gq_err_clear(gq_err *e)
{
    if (!e)
        return;
    e->code = GQ_OK;
    e->msg[0] = '\0';
    e->file = NULL;
    e->line = 0;
}

void gq_err_prefix(gq_err *e, const char *fmt, ...)
{
    char pre[128], joined[sizeof(pre) + sizeof(e->msg) + 2];
    va_list ap;

    if (!e)
        return;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    snprintf(joined, sizeof(joined), "%s: %s", pre, e->msg);
    memcpy(e->msg, joined, sizeof(e->msg) - 1);   /* keep the head if too long */
    e->msg[sizeof(e->msg) - 1] = '\0';
}

const char *gq_err_quote(char *dst, size_t cap, const char *s)
{
    size_t n = 0, len = strlen(s);
    for (; s[n] && n + 1 < cap; n++)
        dst[n] = (unsigned char)s[n] < 0x20 || s[n] == 0x7f ? '?' : s[n];
    dst[n] = '\0';
    if (n < len && cap > 4)
        memcpy(dst + cap - 4, "...", 4);
    return dst;
}

const char *gq_code_name(int code)
{
    switch (code) {
    case GQ_OK: return "ok";
    case GQ_ENOMEM: return "out_of_memory";
    case GQ_EINVAL: return "invalid";
    case GQ_ENOTFOUND: return "not_found";
    case GQ_ECONFLICT: return "conflict";
    case GQ_EBUSY: return "busy";
    case GQ_EIO: return "io";
    case GQ_EDB: return "database";
    case GQ_ENET: return "network";
    case GQ_ENUMERIC: return "numeric";
    case GQ_ECANCELED: return "cancelled";
    default: return "unknown";
    }
}
