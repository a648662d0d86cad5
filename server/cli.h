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

#include <stdatomic.h>
#include <stddef.h>

#include "err.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* Print "gptq: error: <what>" and the usage on stderr; returns EXIT_USAGE. */
int cli_usage_error(const char *usage, const char *what);
/* A positive decimal integer that fits an int (1..INT_MAX): 0, or -1. */
int cli_parse_count(size_t *out, const char *s);

extern const char quantize_usage[];
int cmd_quantize(int argc, char **argv);
extern const char download_usage[];
int cmd_download(int argc, char **argv);

/*
 * Where a model comes from (server/cli_hub.c): SRC is a local directory when
 * one exists by that name, otherwise a Hub repo id ("org/name"), pinned at
 * revision (NULL = "main") and brought into the huggingface_hub cache
 * (HF_* environment; cache_dir and offline override it when set).  Progress
 * goes to stderr unless quiet; *cancel (may be NULL) stops a download.
 */
struct cli_source {
    char dir[4400];        /* the model directory to open */
    char revision[48];     /* the pinned commit sha, or "local" */
    int from_hub;
};
int cli_source_open(struct cli_source *out, const char *src, const char *revision, const char *cache_dir,
                    int offline, int quiet, const atomic_bool *cancel, char *reason, size_t reason_cap,
                    gq_err *e);

#endif
