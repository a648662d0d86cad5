/*
 * main.c - gptqd: configuration, start-up (directories, migrations,
 * recovery, the worker pool, the webhook sender, the HTTP server), and an
 * orderly stop on SIGTERM/SIGINT.
 *
 * Start-up order matters: the schema is migrated before any connection
 * opens; jobs a crash left running are re-queued (or failed after
 * --max-attempts) and every temporary file is removed before a worker can
 * claim anything; artifact directories the database does not know (a
 * crash between the rename and the row) are removed too.
 *
 * Signals are blocked in every thread and taken by sigwait() here, so no
 * handler ever runs inside the engine.
 */
#include <cblas.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "blas_env.h"
#include "options.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "pool.h"
#include "runner.h"
#include "store.h"
#include "webhook.h"

static int parent_dir(const char *path)
{
    char buf[4300];
    char *slash;
    snprintf(buf, sizeof(buf), "%s", path);
    if (!(slash = strrchr(buf, '/')) || slash == buf)
        return 0;
    *slash = '\0';
    return runner_mkdirs(buf, 0750);
}

/* Remove every entry of dir (the directory stays). */
static void empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4600];
    if (!d)
        return;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            runner_rmtree(path);
        }
    closedir(d);
}

/* Artifact directories with no row: a crash after the rename, or a delete before the rmtree. */
static void remove_orphans(store *s, const char *artifacts)
{
    char **dirs = NULL, path[4600], real[PATH_MAX];
    size_t n = 0;
    gq_err e = GQ_ERR_INIT;
    DIR *d;
    struct dirent *de;
    if (store_artifact_dirs(&dirs, &n, s, &e) < 0) {
        gq_log(GQ_LOG_WARN, "cannot list artifacts: %s", e.msg);
        return;
    }
    if ((d = opendir(artifacts))) {
        while ((de = readdir(d))) {
            int known = 0;
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(path, sizeof(path), "%s/%s", artifacts, de->d_name);
            for (size_t i = 0; i < n && !known; i++) {
                char r2[PATH_MAX];
                known = !strcmp(dirs[i], path) ||
                        (realpath(path, real) && realpath(dirs[i], r2) && !strcmp(real, r2));
            }
            if (!known) {
                gq_log(GQ_LOG_INFO, "removing %s: no job owns it", path);
                runner_rmtree(path);
            }
        }
        closedir(d);
    }
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
}

int main(int argc, char **argv)
{
    struct daemon_config cfg;
    struct api_ctx ctx;
    metrics *m = NULL;
    webhook_sender *wh = NULL;
    pool *p = NULL;
    http_server *h = NULL;
    store *st = NULL;
    gq_err e = GQ_ERR_INIT;
    sigset_t sigs;
    int rc, from = 0, to = 0, port = 0, sig = 0, status = 1;
    long cpus;
    gq_log_level level;
    char abs_data[PATH_MAX];

    blas_env_select();   /* may re-execute with OPENBLAS_CORETYPE set */
    rc = options_parse(&cfg, argc - 1, argv + 1, &e);
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "gptqd: %s\n", e.msg);
        return 2;
    }
    level = !strcmp(cfg.log_level, "debug") ? GQ_LOG_DEBUG : !strcmp(cfg.log_level, "warn") ? GQ_LOG_WARN
            : !strcmp(cfg.log_level, "error") ? GQ_LOG_ERROR : GQ_LOG_INFO;
    gq_log_setup(level, 1, "gptqd");

    /* all threads inherit this mask; main takes the signals with sigwait */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (runner_mkdirs(cfg.data_dir, 0750) < 0 || runner_mkdirs(cfg.artifacts_dir, 0750) < 0 ||
        runner_mkdirs(cfg.work_dir, 0750) < 0 ||
        parent_dir(cfg.db_path) < 0) {
        gq_log(GQ_LOG_ERROR, "cannot create the data directories under %s: %s", cfg.data_dir, strerror(errno));
        goto done;
    }
    /* artifact paths are stored absolute, so a later --data-dir spelled differently still finds them */
    if (realpath(cfg.data_dir, abs_data)) {
        snprintf(cfg.artifacts_dir, sizeof(cfg.artifacts_dir), "%s/artifacts", abs_data);
        snprintf(cfg.work_dir, sizeof(cfg.work_dir), "%s/work", abs_data);
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        gq_log(GQ_LOG_ERROR, "libcurl failed to initialise");
        goto done;
    }
    if (store_migrate(cfg.db_path, &from, &to, &e) < 0) {
        gq_log(GQ_LOG_ERROR, "database %s: %s", cfg.db_path, e.msg);
        goto done;
    }
    if (from != to)
        gq_log(GQ_LOG_INFO, "database %s migrated from schema %d to %d", cfg.db_path, from, to);
    if (store_open(&st, cfg.db_path, &e) < 0) {
        gq_log(GQ_LOG_ERROR, "database %s: %s", cfg.db_path, e.msg);
        goto done;
    }
    {
        char(*ids)[24] = NULL;
        size_t n = 0;
        if (store_recover(&ids, &n, st, cfg.max_attempts, &e) < 0) {
            gq_log(GQ_LOG_ERROR, "recovery failed: %s", e.msg);
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            gq_log(GQ_LOG_WARN, "job %s was interrupted by a stop without drain; recovered", ids[i]);
        free(ids);
        empty_dir(cfg.work_dir);
        remove_orphans(st, cfg.artifacts_dir);
    }

    /* BLAS threads: the cores shared among the workers, set once here */
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    openblas_set_num_threads(cpus > cfg.workers ? (int)(cpus / cfg.workers) : 1);

    if (metrics_new(&m, &e) < 0) {
        gq_log(GQ_LOG_ERROR, "%s", e.msg);
        goto done;
    }
    {
        struct webhook_config wc = {.db_path = cfg.db_path,
                                    .secret = cfg.webhook_secret,
                                    .allow_private = cfg.webhook_private,
                                    .max_attempts = cfg.webhook_attempts,
                                    .backoff_ms = cfg.webhook_backoff_ms,
                                    .backoff_max_ms = 600000,
                                    .timeout_ms = 10000,
                                    .metrics = m};
        if (webhook_start(&wh, &wc, &e) < 0) {
            gq_log(GQ_LOG_ERROR, "webhooks: %s", e.msg);
            goto done;
        }
    }
    if (pool_start(&p, &cfg, m, wh, &e) < 0) {
        gq_log(GQ_LOG_ERROR, "workers: %s", e.msg);
        goto done;
    }
    memset(&ctx, 0, sizeof(ctx));
    ctx.cfg = &cfg;
    ctx.pool = p;
    ctx.metrics = m;
    ctx.started_ms = store_now_ms();
    if (http_start(&h, &cfg, &ctx, &port, &e) < 0) {
        gq_log(GQ_LOG_ERROR, "%s", e.msg);
        goto done;
    }
    if (cfg.port_file[0]) {
        char tmp[4200];
        FILE *f;
        snprintf(tmp, sizeof(tmp), "%s.tmp", cfg.port_file);
        if (!(f = fopen(tmp, "w")) || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, cfg.port_file) < 0) {
            gq_log(GQ_LOG_ERROR, "cannot write --port-file %s: %s", cfg.port_file, strerror(errno));
            goto done;
        }
    }
    gq_log(GQ_LOG_INFO, "gptqd listening on http://%s:%d (workers %d, database %s, data %s, auth %s)",
           cfg.listen_addr, port, cfg.workers, cfg.db_path, cfg.data_dir, cfg.ntokens ? "on" : "off");

    while (sigwait(&sigs, &sig) == 0 && sig != SIGTERM && sig != SIGINT)
        ;
    gq_log(GQ_LOG_INFO, "signal %d: stopping (running jobs go back to the queue)", sig);
    status = 0;
done:
    http_stop(h);
    pool_stop(p);
    webhook_stop(wh);
    if (store_close(st) < 0)
        gq_log(GQ_LOG_ERROR, "closing the database failed");
    metrics_free(m);
    options_free(&cfg);
    curl_global_cleanup();
    if (status == 0)
        gq_log(GQ_LOG_INFO, "stopped");
    return status;
}
