/*
 * log.c - plain or JSON-lines log records on stderr, one write(2) each so
 * that lines from several threads never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static gq_log_level min_level = GQ_LOG_INFO;
static int json_mode;
static const char *prog_name = "gptq";

void gq_log_setup(gq_log_level level, int json, const char *prog)
{
    min_level = level;
    json_mode = json;
    if (prog)
        prog_name = prog;
}

static const char *level_name(gq_log_level l)
{
    switch (l) {
    case GQ_LOG_DEBUG: return "debug";
    case GQ_LOG_INFO: return "info";
    case GQ_LOG_WARN: return "warning";
    default: return "error";
    }
}

/* Append s to out as the inside of a JSON string. */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return n;
}

void gq_log(gq_log_level level, const char *fmt, ...)
{
    char msg[2048], line[4608];
    va_list ap;
    int n;

    if (level < min_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (json_mode) {
        char esc[4200];
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        json_escape(esc, sizeof(esc), msg);
        n = snprintf(line, sizeof(line),
                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":\"%s\"}\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_name(level), esc);
    } else {
        n = snprintf(line, sizeof(line), "%s: %s%s%s\n", prog_name,
                     level == GQ_LOG_INFO ? "" : level_name(level),
                     level == GQ_LOG_INFO ? "" : ": ", msg);
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* nowhere left to report it */
    }
}
