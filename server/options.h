/*
 * options.h - gptqd's configuration: one table of options, each a flag with
 * a GPTQD_ environment twin (the flag wins), validated at startup and
 * read-only afterwards.  `gptqd --help` prints the table.
 */
#ifndef GQ_OPTIONS_H
#define GQ_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define CONFIG_MAX_TOKENS 16

struct daemon_config {
    char listen[128];           /* ADDR:PORT as given */
    char listen_addr[64];       /* its address */
    int port;                   /* 0 = ephemeral (see port_file) */
    char db_path[4096];
    char data_dir[4096];        /* artifacts/, work/, hub/ (unless HF_HUB_CACHE) */
    char artifacts_dir[4200];   /* <data_dir>/artifacts */
    char work_dir[4200];        /* <data_dir>/work: jobs' temporary files */
    char hub_cache[4200];       /* HF_HUB_CACHE, else <data_dir>/hub */
    char local_models[4096];    /* "" = local:NAME models refused */
    char calib_dir[4096];       /* builtin calibration sets NAME.jsonl/.txt; "" = none */
    int workers;
    int64_t memory_budget;      /* bytes; 0 = no limit */
    size_t max_body;            /* largest request body, bytes */
    int max_attempts;           /* runs of one job before a crash-interrupted job fails */
    int http_threads;
    int connection_timeout_s;
    int max_connections;
    char *tokens[CONFIG_MAX_TOKENS];  /* bearer tokens; none = no auth */
    size_t ntokens;
    char cors_origin[512];      /* "" = no CORS headers; "*" or one origin */
    char webhook_secret[512];   /* "" = unsigned webhooks */
    int webhook_attempts;
    long webhook_backoff_ms;
    int webhook_private;        /* webhooks may reach loopback/private/link-local addresses */
    int hub_offline;            /* GPTQD_HUB_OFFLINE or HF_HUB_OFFLINE */
    long hub_connect_timeout_ms;
    long hub_stall_timeout_ms;
    int hub_retries;
    char log_level[8];          /* debug, info, warn, error */
    char port_file[4096];       /* write the bound port here once listening ("" = no) */
};

/*
 * Parse argv (after the program name) over the environment into *out.
 * Returns 0, 1 when --help or --version was printed to stdout (exit 0), or
 * GQ_EINVAL with a message naming the flag or variable and the bad value.
 */
int options_parse(struct daemon_config *out, int argc, char **argv, gq_err *e);
void options_free(struct daemon_config *c);   /* the tokens */

/* The --help text. */
extern const char options_usage[];

#endif
