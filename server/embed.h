/*
 * embed.h - files compiled into the daemon binary by server/embed.sh (a
 * Makefile rule): the SQL migrations (migrations/NNNN_name.sql, in name
 * order) and the dashboard's static files (web/).  Read-only, always there.
 */
#ifndef GQ_EMBED_H
#define GQ_EMBED_H

#include <stddef.h>

struct embedded_file {
    const char *name;             /* base name, e.g. "0001_init.sql" */
    const unsigned char *data;    /* len bytes, then a NUL */
    size_t len;
};

extern const struct embedded_file embedded_migrations[];
extern const size_t embedded_migrations_count;
extern const struct embedded_file embedded_web[];
extern const size_t embedded_web_count;

#endif
