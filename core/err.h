/*
 * err.h - the one error type of gptqd.
 *
 * Functions that can fail return int: 0 (GQ_OK) or a negative gq_code, and
 * fill a caller-supplied gq_err with a one-line, lower-case message that
 * names the bad value.  The error travels explicitly (never thread-local),
 * because jobs move between threads.  GQ_FAIL() is the single way to fail:
 * it records __FILE__:__LINE__ and is a good place for a breakpoint.
 */
#ifndef GQ_ERR_H
#define GQ_ERR_H

#include <stddef.h>

typedef enum {
    GQ_OK = 0,
    GQ_ENOMEM = -1,     /* allocation failed */
    GQ_EINVAL = -2,     /* bad argument, bad input file, bad request */
    GQ_ENOTFOUND = -3,  /* no such file, tensor, job, repo */
    GQ_ECONFLICT = -4,  /* state conflict (idempotency, transitions) */
    GQ_EBUSY = -5,      /* try later */
    GQ_EIO = -6,        /* read/write failure */
    GQ_EDB = -7,        /* database failure */
    GQ_ENET = -8,       /* network failure */
    GQ_ENUMERIC = -9,   /* numerical failure (NaN, not positive definite) */
    GQ_ECANCELED = -10  /* cooperative cancellation */
} gq_code;

typedef struct {
    gq_code code;
    char msg[256];
    const char *file;
    int line;
} gq_err;

#define GQ_ERR_INIT { GQ_OK, "", 0, 0 }

/* Record an error in e (which may be NULL) and return code. */
int gq_fail(gq_err *e, gq_code code, const char *file, int line,
            const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define GQ_FAIL(e, code, ...) gq_fail((e), (code), __FILE__, __LINE__, __VA_ARGS__)

/* Reset e to "no error". */
void gq_err_clear(gq_err *e);

/* Prefix the message already in e with "prefix: ", keeping the code. */
void gq_err_prefix(gq_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * s made safe to quote in a one-line message: control bytes become '?' and
 * a value longer than cap - 1 is cut, ending in "...".  Returns dst.
 */
const char *gq_err_quote(char *dst, size_t cap, const char *s);

/* Stable lower-case name of a code ("invalid", "not_found", ...). */
const char *gq_code_name(int code);

/*
 * Argument checks at module entry: assert in debug builds, an EINVAL error
 * in release builds (NDEBUG), so a caller's bug never aborts the daemon.
 */
#ifdef NDEBUG
#define GQ_ASSERT_ARG(e, x) \
    do { if (!(x)) return GQ_FAIL((e), GQ_EINVAL, "invalid argument: %s", #x); } while (0)
#else
#include <assert.h>
#define GQ_ASSERT_ARG(e, x) assert(x)
#endif

#endif
