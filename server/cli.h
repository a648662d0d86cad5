/*
 * cli.h - what the `gptq` subcommands share (server/cli*.c).
 *
 * Exit status of every subcommand: 0 success, 1 runtime error (bad model
 * or input file, I/O, numeric failure), 2 usage error (unknown command or
 * option, missing or malformed value); `quantize` adds 3 (perplexity gate
 * failed).
 */
#ifndef GQ_CLI_H
#define GQ_CLI_H

#include <stddef.h>

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* Print "gptq: error: <what>" and the usage on stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *what);
/* A positive decimal integer that fits an int (1..INT_MAX): 0, or -1. */
int cli_parse_count(size_t *out, const char *s);

extern const char quantize_usage[];
int cmd_quantize(int argc, char **argv);

#endif
