/*
 * log.h - leveled logging to stderr.
 *
 * Two formats: plain text for the CLI ("gptq: warning: ...") and one JSON
 * object per line for the daemon ({"ts":..., "level":..., "msg":...}).
 * The format and threshold are set once at startup (before threads start)
 * and only read afterwards.  Messages must never contain secrets.
 */
#ifndef GQ_LOG_H
#define GQ_LOG_H

typedef enum { GQ_LOG_DEBUG = 0, GQ_LOG_INFO, GQ_LOG_WARN, GQ_LOG_ERROR } gq_log_level;

void gq_log_setup(gq_log_level min_level, int json, const char *prog);
void gq_log(gq_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
