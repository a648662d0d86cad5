/*
 * cli_hub.c - models from the Hub for the CLI: `gptq download`, and the
 * SRC resolution `gptq quantize` shares (cli_source_open, see cli.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "hub.h"
#include "json.h"
#include "log.h"

const char download_usage[] =
    "usage: gptq download REPO [--revision R] [--cache-dir DIR] [--offline] [--json]\n"
    "\n"
    "Pin REPO (a Hub repo id, \"org/name\") at revision R (a branch, tag or commit;\n"
    "default main) to its commit sha and bring the model's files into the\n"
    "huggingface_hub cache: config.json, model.safetensors or every shard of\n"
    "model.safetensors.index.json, generation_config.json and the tokenizer files\n"
    "when present.  Files already cached are not downloaded again; interrupted\n"
    "downloads resume; every file is checked against the Hub's size and hash.\n"
    "Prints the snapshot directory (a model directory for gptq quantize/eval).\n"
    "\n"
    "  --revision R      branch, tag or 40-hex commit (default main)\n"
    "  --cache-dir DIR   the cache (default $HF_HUB_CACHE, else $HF_HOME/hub, else\n"
    "                    ~/.cache/huggingface/hub)\n"
    "  --offline         use the cache only (also HF_HUB_OFFLINE=1)\n"
    "  --json            one JSON object on stdout\n"
    "  -h, --help        this text\n"
    "\n"
    "Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (else the\n"
    "file $HF_TOKEN_PATH or $HF_HOME/token), HF_HUB_CACHE, HF_HOME, HF_HUB_OFFLINE,\n"
    "HF_HUB_DISABLE_SYMLINKS, HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT\n"
    "(seconds, default 10: an API call's limit; a download with no progress for\n"
    "that long is retried), GPTQD_HUB_CONNECT_TIMEOUT (seconds, default 10).\n"
    "\n"
    "exit status: 0 ok, 1 runtime error (the message names the Hub's reason),\n"
    "2 usage error\n";

struct dl_progress {
    int tty;
    const char *repo;
    const char *last_file;
    const atomic_bool *cancel;
};

static void on_progress(void *payload, uint64_t done, uint64_t total, const char *file)
{
    struct dl_progress *p = payload;
    double mb = 1.0 / (1 << 20);
    if (p->tty) {
        fprintf(stderr, "\rgptq: %s %5.1f%% %8.1f / %.1f MiB  %-40.40s", p->repo,
                total ? 100.0 * (double)done / (double)total : 100.0, (double)done * mb, (double)total * mb,
                file ? file : "");
        if (!file)
            fputc('\n', stderr);
    } else if (file && file != p->last_file) {
        fprintf(stderr, "gptq: %s: fetching %s (%.1f of %.1f MiB present)\n", p->repo, file, (double)done * mb,
                (double)total * mb);
    }
    p->last_file = file;
}

static int on_cancel(void *payload)
{
    const struct dl_progress *p = payload;
    return p->cancel && atomic_load(p->cancel);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int fetch(struct hub_snapshot *snap, const char *repo, const char *revision, const char *cache_dir,
                 int offline, int quiet, const atomic_bool *cancel, gq_err *e)
{
    struct hub_config cfg;
    struct dl_progress p = { isatty(2), repo, NULL, cancel };
    int rc;

    if ((rc = hub_config_init(&cfg, e)) < 0) {
        snprintf(snap->reason, sizeof(snap->reason), "invalid");
        return rc;
    }
    if (cache_dir && snprintf(cfg.cache_dir, sizeof(cfg.cache_dir), "%s", cache_dir) >= (int)sizeof(cfg.cache_dir))
        return GQ_FAIL(e, GQ_EINVAL, "--cache-dir is too long");
    if (offline)
        cfg.offline = 1;
    if (!quiet)
        cfg.progress = on_progress;
    cfg.cancelled = on_cancel;
    cfg.payload = &p;
    return hub_snapshot(&cfg, repo, revision, snap, e);
}

int cli_source_open(struct cli_source *out, const char *src, const char *revision, const char *cache_dir,
                    int offline, int quiet, const atomic_bool *cancel, char *reason, size_t reason_cap,
                    gq_err *e)
{
    struct hub_snapshot snap;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&snap, 0, sizeof(snap));
    if (reason_cap)
        reason[0] = '\0';
    if (is_dir(src)) {
        if (revision)
            return GQ_FAIL(e, GQ_EINVAL, "--revision is for Hub repos, and %s is a local directory", src);
        if (snprintf(out->dir, sizeof(out->dir), "%s", src) >= (int)sizeof(out->dir))
            return GQ_FAIL(e, GQ_EINVAL, "model directory path is too long");
        snprintf(out->revision, sizeof(out->revision), "local");
        return 0;
    }
    if (hub_valid_repo_id(src, e) < 0)
        return GQ_FAIL(e, GQ_ENOTFOUND, "%s is neither a directory nor a Hub repo id (org/name)", src);
    rc = fetch(&snap, src, revision, cache_dir, offline, quiet, cancel, e);
    if (reason_cap)
        snprintf(reason, reason_cap, "%s", snap.reason);
    if (rc < 0)
        return rc;
    snprintf(out->dir, sizeof(out->dir), "%s", snap.dir);
    snprintf(out->revision, sizeof(out->revision), "%s", snap.sha);
    out->from_hub = 1;
    if (!quiet)
        gq_log(GQ_LOG_INFO, "%s pinned at %s: %d files (%d cached), %.1f MiB downloaded", src, snap.sha,
               snap.files, snap.files_cached, (double)snap.bytes_downloaded / (1 << 20));
    return 0;
}

static void print_json(const char *repo, const char *revision, const struct hub_snapshot *s, int rc,
                       const gq_err *e)
{
    gq_json *o = gq_json_new_object(), *err;
    char *text;
    if (!o)
        return;
    if (rc < 0) {
        err = gq_json_new_object();
        gq_json_add(err, "code", gq_json_new_string(s->reason[0] ? s->reason : gq_code_name(rc)));
        gq_json_add(err, "message", gq_json_new_string(e->msg));
        gq_json_add(o, "error", err);
    } else {
        gq_json_add(o, "repo", gq_json_new_string(repo));
        gq_json_add(o, "revision", gq_json_new_string(revision ? revision : "main"));
        gq_json_add(o, "sha", gq_json_new_string(s->sha));
        gq_json_add(o, "dir", gq_json_new_string(s->dir));
        gq_json_add(o, "files", gq_json_new_number(s->files));
        gq_json_add(o, "files_cached", gq_json_new_number(s->files_cached));
        gq_json_add(o, "bytes_total", gq_json_new_number((double)s->bytes_total));
        gq_json_add(o, "bytes_downloaded", gq_json_new_number((double)s->bytes_downloaded));
    }
    if ((text = gq_json_print(o, 0))) {
        puts(text);
        gq_json_free_text(text);
    }
    gq_json_free(o);
}

int cmd_download(int argc, char **argv)
{
    const char *repo = NULL, *revision = NULL, *cache_dir = NULL;
    int offline = 0, json = 0, rc;
    struct hub_snapshot snap;
    gq_err e = GQ_ERR_INIT;
    char what[256], q[96];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(download_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--revision") || !strcmp(a, "--cache-dir")) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                snprintf(what, sizeof(what), "%s needs a value", a);
                return cli_usage_error(download_usage, what);
            }
            *(a[2] == 'r' ? &revision : &cache_dir) = argv[++i];
        } else if (!strcmp(a, "--offline")) {
            offline = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            snprintf(what, sizeof(what), "unknown option '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(download_usage, what);
        } else if (!repo) {
            repo = a;
        } else {
            snprintf(what, sizeof(what), "unexpected argument '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(download_usage, what);
        }
    }
    if (!repo)
        return cli_usage_error(download_usage, "REPO is required");
    if (hub_valid_repo_id(repo, &e) < 0 || (revision && hub_valid_revision(revision, &e) < 0))
        return cli_usage_error(download_usage, e.msg);
    memset(&snap, 0, sizeof(snap));
    rc = fetch(&snap, repo, revision, cache_dir, offline, json, NULL, &e);
    if (json)
        print_json(repo, revision, &snap, rc, &e);
    if (rc < 0) {
        if (!json)
            gq_log(GQ_LOG_ERROR, "%s (%s)", e.msg, snap.reason[0] ? snap.reason : gq_code_name(rc));
        return EXIT_RUNTIME;
    }
    if (!json)
        printf("%s\n", snap.dir);
    return 0;
}
