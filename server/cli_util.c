/*
 * cli_util.c - helpers the `gptq` subcommands share; see cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

int cli_usage_error(const char *usage, const char *what)
{
    gq_log(GQ_LOG_ERROR, "%s", what);
    fprintf(stderr, "\n%s", usage);
    return EXIT_USAGE;
}

int cli_parse_count(size_t *out, const char *s)
{
    char *end;
    long long v;

    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < 1 || v > INT_MAX)
        return -1;
    *out = (size_t)v;
    return 0;
}
