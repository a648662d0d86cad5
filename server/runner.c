/*
 * runner.c - one job, start to end, on a worker thread.
 *
 * Stages and their share of the job's progress fraction:
 *   downloading  0.00-0.05  the Hub snapshot (pinned sha recorded), or the local directory
 *   calibrating  0.05-0.07  tokenizer + calibration windows (digest recorded)
 *   quantizing   0.07-0.92  quantize_model into <work>/<id>/out (per-layer events)
 *   writing      0.92-0.95  files hashed, moved to <artifacts>/<id>, metadata stored
 *   evaluating   0.95-1.00  perplexity before and after, the gate (when asked)
 * Each transition is a store row update plus a state event; progress is
 * written at most every 200 ms (and at every layer), so polling clients see
 * it without the job paying for it.
 *
 * Failure never leaves debris: <work>/<id> is removed whatever happens, an
 * artifact directory appears only complete (rename), and a job put back
 * by shutdown starts again from the beginning (downloads resume from the
 * cache).  The job's error code is a stable word: the Hub's reason
 * (repo_not_found, ...), "invalid_model", "invalid_calibration",
 * "numerical", "io", "out_of_memory", "gate_failed", "cancelled", "internal".
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "calib.h"
#include "options.h"
#include "dynamic.h"
#include "hub.h"
#include "jobspec.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "model.h"
#include "pipeline.h"
#include "runner.h"
#include "tokenizer.h"
#include "webhook.h"

struct run {
    const struct runner_env *env;
    const struct job *job;
    const atomic_bool *cancel;
    double last_progress;         /* monotonic seconds of the last progress write */
    int last_layer;
    double lo, hi;                /* the stage's share of the fraction */
    char reason[32];              /* job error code when set by a stage */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

int runner_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int runner_mkdirs(const char *path, mode_t mode)
{
    char buf[4300];
    size_t n = strlen(path);
    if (n >= sizeof(buf))
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++)
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -1;
            buf[i] = c;
        }
    return 0;
}

/* ---- spec access ---- */

static int jint(const cJSON *o, const char *k, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? (int)v->valuedouble : def;
}

static double jnum(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static int jbool(const cJSON *o, const char *k, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- progress and events ---- */

static void event(struct run *r, const char *kind, const char *level, const char *data, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void event(struct run *r, const char *kind, const char *level, const char *data, const char *fmt, ...)
{
    char msg[512];
    gq_err e = GQ_ERR_INIT;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (store_event_add(r->env->st, r->job->id, kind, level, msg, data, &e) < 0)
        gq_log(GQ_LOG_WARN, "job %s: cannot record an event: %s", r->job->id, e.msg);
}

static void progress(struct run *r, const char *stage, int layer, int layers, double frac, double eta, int force)
{
    double now = mono_s();
    gq_err e = GQ_ERR_INIT;
    if (!force && now - r->last_progress < 0.2)
        return;
    r->last_progress = now;
    if (frac < 0)
        frac = 0;
    if (frac > 1)
        frac = 1;
    if (store_job_progress(r->env->st, r->job->id, stage, layer, layers, r->lo + (r->hi - r->lo) * frac, eta, &e) < 0)
        gq_log(GQ_LOG_WARN, "job %s: cannot record progress: %s", r->job->id, e.msg);
}

static long test_delay_ms(void);

static int is_cancelled(const struct run *r)
{
    return atomic_load(r->cancel);
}

/* Enter a stage; a cancellation raised meanwhile ends the job here (every stage is a boundary). */
static int stage(struct run *r, enum job_status s, double lo, double hi, gq_err *e)
{
    int rc = store_job_transition(r->env->st, r->job->id, s, NULL, NULL, e);
    long delay = test_delay_ms();
    r->lo = lo, r->hi = hi;
    r->last_layer = -1;
    if (rc < 0)
        return rc;
    progress(r, job_status_name(s), -1, -1, 0, -1, 1);
    if (delay > 0)
        usleep((useconds_t)delay * 10000);   /* the test hook: each stage lasts long enough to cancel */
    if (is_cancelled(r))
        return GQ_FAIL(e, GQ_ECANCELED, "cancelled while %s", job_status_name(s));
    return 0;
}

static void on_hub_progress(void *payload, uint64_t done, uint64_t total, const char *file)
{
    struct run *r = payload;
    (void)file;
    progress(r, "downloading", -1, -1, total ? (double)done / (double)total : 1.0, -1, file == NULL);
}

static int on_hub_cancel(void *payload)
{
    return is_cancelled(payload);
}

/*
 * Test hook: GPTQD_TEST_DELAY_MS=N sleeps N ms at every quantization
 * progress report, so the daemon's tests can cancel, kill and stop a job
 * in the middle of quantizing a model that would otherwise take
 * milliseconds.  Unset in production; read once.
 */
static long test_delay_ms(void)
{
    static atomic_long delay = -1;
    long d = atomic_load(&delay);
    if (d < 0) {
        const char *v = getenv("GPTQD_TEST_DELAY_MS");
        d = v ? atol(v) : 0;
        atomic_store(&delay, d > 0 ? d : 0);
    }
    return d;
}

static void on_quant_progress(const struct quantize_progress *p, void *payload)
{
    struct run *r = payload;
    long delay = test_delay_ms();
    if (delay > 0 && p->stage != QSTAGE_DONE)
        usleep((useconds_t)delay * 1000);
    int new_layer = p->stage == QSTAGE_WRITING && p->layer != r->last_layer;
    progress(r, p->stage == QSTAGE_WRITING ? "writing_layer" : "quantizing", p->layer, p->layers, p->fraction,
             p->eta_seconds, new_layer);
    if (new_layer) {
        r->last_layer = p->layer;
        event(r, "progress", "info", NULL, "layer %d/%d quantized (%.0f%%, %.1fs elapsed)", p->layer + 1, p->layers,
              p->fraction * 100.0, p->elapsed);
    }
}

/* ---- the model ---- */

/* dir = the model directory of local:NAME, refusing names that leave --local-models. */
static int local_model_dir(char *dir, size_t cap, const struct daemon_config *cfg, const char *name, gq_err *e)
{
    char root[PATH_MAX], real[PATH_MAX], path[4400];
    size_t n;
    if (!cfg->local_models[0])
        return GQ_FAIL(e, GQ_EINVAL, "local models are not enabled (start gptqd with --local-models DIR)");
    if (!realpath(cfg->local_models, root))
        return GQ_FAIL(e, GQ_ENOTFOUND, "--local-models %s: %s", cfg->local_models, strerror(errno));
    snprintf(path, sizeof(path), "%s/%s", root, name);
    if (!realpath(path, real))
        return GQ_FAIL(e, GQ_ENOTFOUND, "local model %s does not exist", name);
    n = strlen(root);
    if (strncmp(real, root, n) != 0 || real[n] != '/')
        return GQ_FAIL(e, GQ_EINVAL, "local model %s is outside --local-models", name);
    if ((size_t)snprintf(dir, cap, "%s", real) >= cap)
        return GQ_FAIL(e, GQ_EINVAL, "local model path too long");
    return 0;
}

static int fetch_model(struct run *r, char *dir, size_t cap, char *sha, size_t shacap, gq_err *e)
{
    const struct daemon_config *cfg = r->env->cfg;
    const struct job *j = r->job;
    struct hub_config hc;
    struct hub_snapshot snap;
    int rc;

    if (!strncmp(j->model, "local:", 6)) {
        snprintf(sha, shacap, "local");
        return local_model_dir(dir, cap, cfg, j->model + 6, e);
    }
    if ((rc = hub_config_init(&hc, e)) < 0)
        return rc;
    snprintf(hc.cache_dir, sizeof(hc.cache_dir), "%.4095s", cfg->hub_cache);
    hc.offline = hc.offline || cfg->hub_offline;
    hc.connect_timeout_ms = cfg->hub_connect_timeout_ms;
    hc.stall_timeout_ms = cfg->hub_stall_timeout_ms;
    hc.max_retries = cfg->hub_retries;
    hc.progress = on_hub_progress;
    hc.cancelled = on_hub_cancel;
    hc.payload = r;
    memset(&snap, 0, sizeof(snap));
    rc = hub_snapshot(&hc, j->model, j->revision, &snap, e);
    if (rc < 0) {
        snprintf(r->reason, sizeof(r->reason), "%s", snap.reason[0] ? snap.reason : "hub_error");
        return rc;
    }
    metrics_bytes_downloaded(r->env->metrics, snap.bytes_downloaded);
    event(r, "log", "info", NULL, "pinned %s@%s to %s: %d files, %d cached, %llu bytes downloaded", j->model,
          j->revision, snap.sha, snap.files, snap.files_cached, (unsigned long long)snap.bytes_downloaded);
    snprintf(sha, shacap, "%s", snap.sha);
    snprintf(dir, cap, "%s", snap.dir);
    return 0;
}

/* ---- calibration and evaluation ids ---- */

static int json_ids(int32_t **out, size_t *n, const cJSON *arr, gq_err *e)
{
    size_t k = 0, cnt = (size_t)cJSON_GetArraySize(arr);
    int32_t *ids = gq_mallocn(cnt ? cnt : 1, sizeof(int32_t));
    const cJSON *v;
    if (!ids)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    cJSON_ArrayForEach(v, arr) ids[k++] = (int32_t)v->valuedouble;
    *out = ids;
    *n = k;
    return 0;
}

static int json_texts(char ***texts, size_t *n, const cJSON *arr, gq_err *e)
{
    size_t k = 0, cnt = (size_t)cJSON_GetArraySize(arr);
    char **t = gq_calloc(cnt ? cnt : 1, sizeof(char *));
    const cJSON *v;
    if (!t)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    cJSON_ArrayForEach(v, arr)
    {
        if (!(t[k] = gq_strdup(v->valuestring))) {
            calib_texts_free(t, k);
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        }
        k++;
    }
    *texts = t;
    *n = k;
    return 0;
}

static int build_calib(struct calib *cal, const cJSON *c, const char *model_dir, const struct daemon_config *cfg,
                       size_t seqlen, char *source, size_t source_cap, gq_err *e)
{
    const cJSON *texts = cJSON_GetObjectItemCaseSensitive(c, "texts");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c, "token_ids");
    const char *builtin = jstr(c, "builtin");
    size_t ns = (size_t)jint(c, "num_samples", 128);
    uint64_t seed = (uint64_t)jnum(c, "seed", 0);
    tokenizer *tok = NULL;
    char **t = NULL;
    size_t nt = 0, nids = 0;
    int32_t *v = NULL;
    int rc;

    if (ids && cJSON_IsArray(ids)) {
        snprintf(source, source_cap, "token_ids");
        if (cJSON_IsArray(cJSON_GetArrayItem(ids, 0))) {
            /* rows given as they are: blocks */
            size_t rows = (size_t)cJSON_GetArraySize(ids), len = (size_t)cJSON_GetArraySize(ids->child), k = 0;
            const cJSON *row, *x;
            if (!(v = gq_mallocn(rows * len > 0 ? rows * len : 1, sizeof(int32_t))))
                return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
            cJSON_ArrayForEach(row, ids) cJSON_ArrayForEach(x, row) v[k++] = (int32_t)x->valuedouble;
            rc = calib_from_blocks(cal, v, rows, len, ns < rows ? ns : rows, e);
        } else if ((rc = json_ids(&v, &nids, ids, e)) == 0) {
            rc = calib_from_stream(cal, v, nids, ns, seqlen, seed, e);
        }
        gq_free(v);
        return rc;
    }
    if ((rc = tokenizer_load_dir(&tok, model_dir, e)) < 0)
        return rc;
    if (tokenizer_model_max_length(tok) && seqlen > tokenizer_model_max_length(tok))
        seqlen = tokenizer_model_max_length(tok);
    if (builtin) {
        char path[4400];
        snprintf(source, source_cap, "builtin:%s", builtin);
        snprintf(path, sizeof(path), "%s/%s.jsonl", cfg->calib_dir, builtin);
        if (access(path, R_OK) != 0)
            snprintf(path, sizeof(path), "%s/%s.txt", cfg->calib_dir, builtin);
        rc = calib_read_texts(&t, &nt, path, e);
    } else {
        snprintf(source, source_cap, "texts");
        rc = json_texts(&t, &nt, texts, e);
    }
    if (rc == 0)
        rc = calib_from_texts(cal, tok, (const char *const *)t, nt, ns, seqlen, seed, e);
    calib_texts_free(t, nt);
    tokenizer_free(tok);
    return rc;
}

/* The evaluation blocks: ids cut into blocks of seqlen (texts tokenized as calibration texts are). */
static int build_eval(int32_t **out, size_t *nblocks, const cJSON *ev, const char *model_dir, size_t seqlen,
                      gq_err *e)
{
    const cJSON *texts = cJSON_GetObjectItemCaseSensitive(ev, "texts");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(ev, "token_ids");
    int32_t *v = NULL;
    size_t n = 0;
    int rc;
    if (ids && cJSON_IsArray(ids)) {
        rc = json_ids(&v, &n, ids, e);
    } else {
        tokenizer *tok = NULL;
        char **t = NULL;
        size_t nt = 0;
        if ((rc = tokenizer_load_dir(&tok, model_dir, e)) == 0 && (rc = json_texts(&t, &nt, texts, e)) == 0)
            rc = calib_tokenize_texts(&v, &n, tok, (const char *const *)t, nt, e);
        calib_texts_free(t, nt);
        tokenizer_free(tok);
    }
    if (rc == 0 && n / seqlen == 0) {
        gq_free(v);
        return GQ_FAIL(e, GQ_EINVAL, "eval: %zu tokens, fewer than one block of %zu", n, seqlen);
    }
    if (rc < 0) {
        gq_free(v);
        return rc;
    }
    *out = v;
    *nblocks = n / seqlen;
    return 0;
}

static int perplexity(double *ppl, const char *dir, const int32_t *ids, size_t nblocks, size_t seqlen, gq_err *e)
{
    model *m = NULL;
    double nll = 0;
    size_t count = 0;
    int rc;
    if ((rc = model_open(&m, dir, e)) == 0 && (rc = model_nll(&nll, &count, m, ids, nblocks, seqlen, 8, e)) == 0)
        *ppl = exp(nll / (double)count);
    model_close(m);
    return rc;
}

/* ---- the artifact ---- */

static int sha256_file(char hex[65], int64_t *size, const char *path, gq_err *e)
{
    unsigned char buf[1 << 16], d[EVP_MAX_MD_SIZE];
    unsigned int dn = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    ssize_t got;
    int64_t total = 0;
    if (!ctx || fd < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((got = read(fd, buf, sizeof(buf))) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)got);
        total += got;
    }
    if (got < 0) {
        rc = GQ_FAIL(e, GQ_EIO, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    EVP_DigestFinal_ex(ctx, d, &dn);
    for (unsigned int i = 0; i < dn; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
    *size = total;
done:
    if (fd >= 0)
        close(fd);
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int cmp_files(const void *a, const void *b)
{
    return strcmp(((const struct artifact_file *)a)->name, ((const struct artifact_file *)b)->name);
}

/* Every regular file of dir (flat: a checkpoint has no subdirectories), hashed, in name order. */
static int list_files(struct artifact_file **out, size_t *n, const char *dir, gq_err *e)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    struct artifact_file *f = NULL, *nf;
    size_t cnt = 0, cap = 0;
    int rc = 0;
    if (!d)
        return GQ_FAIL(e, GQ_EIO, "cannot list %s: %s", dir, strerror(errno));
    while ((de = readdir(d))) {
        char path[4800];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (de->d_name[0] == '.' || lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            if (!(nf = gq_realloc(f, cap * sizeof(*f)))) {
                rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
                goto done;
            }
            f = nf;
        }
        memset(&f[cnt], 0, sizeof(f[cnt]));
        if (!(f[cnt].name = gq_strdup(de->d_name))) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
            goto done;
        }
        cnt++;
        if ((rc = sha256_file(f[cnt - 1].sha256, &f[cnt - 1].size, path, e)) < 0)
            goto done;
    }
    if (cnt)
        qsort(f, cnt, sizeof(*f), cmp_files);
done:
    closedir(d);
    if (rc < 0) {
        for (size_t i = 0; i < cnt; i++)
            gq_free(f[i].name);
        gq_free(f);
        return rc;
    }
    *out = f;
    *n = cnt;
    return 0;
}

static int layer_of(const char *module)
{
    const char *p = strstr(module, "layers.");
    return p ? atoi(p + 7) : -1;
}

/* The per-layer metrics: {"layer", "out_rel_mean", "modules": [...]} for each layer. */
static cJSON *layers_json(const struct quantize_report *rep)
{
    cJSON *arr = cJSON_CreateArray(), *cur = NULL, *mods = NULL;
    int cur_layer = -2;
    double sum = 0;
    int cnt = 0;
    for (size_t i = 0; arr && i < rep->nmodules; i++) {
        const struct module_log *m = &rep->modules[i];
        int l = layer_of(m->name);
        cJSON *o;
        if (l != cur_layer) {
            if (cur)
                cJSON_AddNumberToObject(cur, "out_rel_mean", cnt ? sum / cnt : 0);
            cur = cJSON_CreateObject();
            cJSON_AddItemToArray(arr, cur);
            cJSON_AddNumberToObject(cur, "layer", l);
            mods = cJSON_AddArrayToObject(cur, "modules");
            cur_layer = l, sum = 0, cnt = 0;
        }
        o = cJSON_CreateObject();
        cJSON_AddItemToArray(mods, o);
        cJSON_AddStringToObject(o, "name", m->name);
        cJSON_AddBoolToObject(o, "quantized", m->quantized);
        if (m->quantized) {
            cJSON_AddNumberToObject(o, "bits", m->bits);
            cJSON_AddNumberToObject(o, "group_size", m->group_size);
            cJSON_AddNumberToObject(o, "out_rel", m->out_rel);
            cJSON_AddNumberToObject(o, "rtn_out_rel", m->rtn_out_rel);
            cJSON_AddNumberToObject(o, "avg_loss", m->avg_loss);
            cJSON_AddNumberToObject(o, "damp_percent", m->damp_percent);
            cJSON_AddNumberToObject(o, "damp_retries", m->damp_retries);
            cJSON_AddNumberToObject(o, "seconds", m->seconds);
            sum += m->out_rel, cnt++;
        }
    }
    if (cur)
        cJSON_AddNumberToObject(cur, "out_rel_mean", cnt ? sum / cnt : 0);
    return arr;
}

/* ---- the job ---- */

static const char *reason_of(int code)
{
    switch (code) {
    case GQ_ENOMEM: return "out_of_memory";
    case GQ_EIO: return "io";
    case GQ_ENUMERIC: return "numerical";
    case GQ_ECANCELED: return "cancelled";
    case GQ_ENOTFOUND: return "not_found";
    case GQ_EINVAL: return "invalid_input";
    case GQ_ENET: return "network";
    default: return "internal";
    }
}

static void finish(struct run *r, enum job_status s, const char *code, const char *msg, double t0)
{
    const struct runner_env *env = r->env;
    gq_err e = GQ_ERR_INIT;
    struct job *now = NULL;
    if (store_job_transition(env->st, r->job->id, s, code, msg, &e) < 0) {
        gq_log(GQ_LOG_ERROR, "job %s: cannot record its end (%s): %s", r->job->id, job_status_name(s), e.msg);
        return;
    }
    metrics_job_finished(env->metrics, s, mono_s() - t0);
    gq_log(s == JOB_SUCCEEDED ? GQ_LOG_INFO : GQ_LOG_WARN, "job %s %s%s%s", r->job->id, job_status_name(s),
           msg ? ": " : "", msg ? msg : "");
    if (r->job->callback_url && store_job_get(&now, env->st, r->job->id, &e) == 0) {
        cJSON *body = api_job_json(now);
        char *text = body ? cJSON_PrintUnformatted(body) : NULL;
        if (text && store_webhook_add(env->st, r->job->id, r->job->callback_url, text, &e) == 0)
            webhook_notify(env->webhooks);
        else
            gq_log(GQ_LOG_ERROR, "job %s: cannot queue its webhook: %s", r->job->id, text ? e.msg : "out of memory");
        cJSON_free(text);
        cJSON_Delete(body);
        job_free(now);
    }
}

void runner_run(const struct runner_env *env, const struct job *j, const atomic_bool *cancel,
                const atomic_bool *shutdown)
{
    const struct daemon_config *cfg = env->cfg;
    struct run r;
    gq_err e = GQ_ERR_INIT, e2 = GQ_ERR_INIT;
    int requeued = 0;
    cJSON *spec = NULL, *meta = NULL;
    const cJSON *q, *c, *ev, *outp;
    char model_dir[4400], sha[64] = "", work[4400], out[4500], art[4400], calib_source[160];
    struct quantize_options opt;
    struct quantize_report rep;
    struct calib cal;
    dynamic_rules *dyn = NULL;
    gq_json *dynj = NULL;
    int32_t *eval_ids = NULL;
    size_t eval_blocks = 0, seqlen, eval_seqlen = 0;
    struct artifact_file *files = NULL;
    size_t nfiles = 0;
    char *meta_text = NULL;
    double t0 = mono_s(), ppl_before = NAN, ppl_after = NAN, max_ratio = 0;
    int rc = 0, gate_failed = 0, stored = 0;
    int64_t bytes = 0;

    memset(&r, 0, sizeof(r));
    memset(&rep, 0, sizeof(rep));
    memset(&cal, 0, sizeof(cal));
    r.env = env, r.job = j, r.cancel = cancel, r.last_layer = -1, r.hi = 0.05;
    snprintf(work, sizeof(work), "%s/%s", cfg->work_dir, j->id);
    snprintf(out, sizeof(out), "%s/out", work);
    snprintf(art, sizeof(art), "%s/%s", cfg->artifacts_dir, j->id);

    if (!(spec = cJSON_Parse(j->spec))) {
        rc = GQ_FAIL(&e, GQ_EINVAL, "the stored job spec is not JSON");
        goto done;
    }
    q = cJSON_GetObjectItemCaseSensitive(spec, "quantization");
    c = cJSON_GetObjectItemCaseSensitive(spec, "calibration");
    ev = cJSON_GetObjectItemCaseSensitive(spec, "eval");
    outp = cJSON_GetObjectItemCaseSensitive(spec, "output");
    if (ev && cJSON_IsNull(ev))
        ev = NULL;
    runner_rmtree(work);
    if (runner_mkdirs(work, 0755) < 0) {
        rc = GQ_FAIL(&e, GQ_EIO, "cannot create %s: %s", work, strerror(errno));
        goto done;
    }

    /* downloading (the claim already moved the job there) */
    progress(&r, "downloading", -1, -1, 0, -1, 1);
    if ((rc = fetch_model(&r, model_dir, sizeof(model_dir), sha, sizeof(sha), &e)) < 0)
        goto done;
    if ((rc = store_job_set_source_revision(env->st, j->id, sha, &e)) < 0)
        goto done;
    if (is_cancelled(&r)) {
        rc = GQ_FAIL(&e, GQ_ECANCELED, "cancelled");
        goto done;
    }

    /* calibrating */
    if ((rc = stage(&r, JOB_CALIBRATING, 0.05, 0.07, &e)) < 0)
        goto done;
    {
        model *m = NULL;
        struct model_config mc;
        if ((rc = model_open(&m, model_dir, &e)) < 0) {
            snprintf(r.reason, sizeof(r.reason), "invalid_model");
            goto done;
        }
        mc = *model_config_of(m);
        model_close(m);
        seqlen = (size_t)jint(c, "seq_len", 2048);
        if (mc.max_position_embeddings > 0 && seqlen > (size_t)mc.max_position_embeddings)
            seqlen = (size_t)mc.max_position_embeddings;
        if (cfg->memory_budget > 0) {
            int64_t need = jobspec_estimate_memory(spec, mc.hidden_size, mc.intermediate_size, mc.vocab_size);
            if (need > cfg->memory_budget) {
                snprintf(r.reason, sizeof(r.reason), "memory_budget");
                rc = GQ_FAIL(&e, GQ_EINVAL, "the model needs about %lld bytes, more than --memory-budget %lld",
                             (long long)need, (long long)cfg->memory_budget);
                goto done;
            }
        }
    }
    if ((rc = build_calib(&cal, c, model_dir, cfg, seqlen, calib_source, sizeof(calib_source), &e)) < 0) {
        snprintf(r.reason, sizeof(r.reason), "invalid_calibration");
        goto done;
    }
    event(&r, "log", "info", NULL, "calibration: %zu x %zu tokens from %s, sha256 %s", cal.nsamples, cal.seqlen,
          calib_source, cal.sha256);

    /* quantizing */
    if ((rc = stage(&r, JOB_QUANTIZING, 0.07, 0.92, &e)) < 0)
        goto done;
    quantize_options_default(&opt);
    opt.gptq.q.bits = jint(q, "bits", 4);
    opt.gptq.group_size = jint(q, "group_size", 128);
    opt.gptq.desc_act = jbool(q, "desc_act", 0);
    opt.gptq.q.sym = jbool(q, "sym", 1);
    opt.gptq.damp_percent = jnum(q, "damp_percent", 0.01);
    opt.gptq.static_groups = jbool(q, "static_groups", 0);
    opt.gptq.q.mse = jbool(q, "mse", 0);
    opt.true_sequential = jbool(q, "true_sequential", 1);
    opt.format = jstr(q, "checkpoint_format") && !strcmp(jstr(q, "checkpoint_format"), "gptq_v2") ? PACK_GPTQ_V2
                                                                                                  : PACK_GPTQ;
    opt.shard_bytes = (uint64_t)jnum(outp, "shard_size", 4e9);
    opt.source_model_id = j->model;
    opt.source_revision = sha;
    {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(q, "dynamic");
        if (d && cJSON_IsObject(d)) {
            char *t = cJSON_PrintUnformatted(d);
            rc = t ? gq_json_parse(&dynj, t, strlen(t), &e) : GQ_FAIL(&e, GQ_ENOMEM, "out of memory");
            cJSON_free(t);
            if (rc < 0 || (rc = dynamic_parse(&dyn, dynj, &e)) < 0)
                goto done;
            opt.dynamic = dyn;
        }
    }
    r.last_progress = 0;
    if ((rc = quantize_model(&rep, model_dir, out, &cal, &opt, on_quant_progress, &r, cancel, &e)) < 0)
        goto done;

    /* writing: hash, move into place, record */
    if ((rc = stage(&r, JOB_WRITING, 0.92, ev ? 0.95 : 1.0, &e)) < 0)
        goto done;
    if ((rc = list_files(&files, &nfiles, out, &e)) < 0)
        goto done;
    for (size_t i = 0; i < nfiles; i++)
        bytes += files[i].size;
    if (runner_mkdirs(cfg->artifacts_dir, 0755) < 0 || runner_rmtree(art) < 0 || rename(out, art) < 0) {
        rc = GQ_FAIL(&e, GQ_EIO, "cannot move the checkpoint to %s: %s", art, strerror(errno));
        goto done;
    }
    if (!(meta = cJSON_CreateObject())) {
        rc = GQ_FAIL(&e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    cJSON_AddStringToObject(meta, "model", j->model);
    cJSON_AddStringToObject(meta, "revision", j->revision);
    cJSON_AddStringToObject(meta, "source_revision", sha);
    {
        cJSON *qc = cJSON_Duplicate(q, 1);
        cJSON_AddItemToObject(meta, "quantization", qc);
        cJSON *cj = cJSON_AddObjectToObject(meta, "calibration");
        cJSON_AddStringToObject(cj, "source", calib_source);
        cJSON_AddNumberToObject(cj, "num_samples", (double)cal.nsamples);
        cJSON_AddNumberToObject(cj, "seq_len", (double)cal.seqlen);
        cJSON_AddNumberToObject(cj, "seed", jnum(c, "seed", 0));
        cJSON_AddNumberToObject(cj, "stream_tokens", (double)cal.stream_tokens);
        cJSON_AddStringToObject(cj, "sha256", cal.sha256);
    }
    cJSON_AddNumberToObject(meta, "modules", (double)rep.nmodules);
    cJSON_AddNumberToObject(meta, "modules_quantized", (double)rep.quantized);
    cJSON_AddNumberToObject(meta, "quantize_seconds", rep.seconds);
    cJSON_AddNumberToObject(meta, "peak_bytes", (double)rep.peak_bytes);
    cJSON_AddItemToObject(meta, "layers", layers_json(&rep));
    cJSON_AddNullToObject(meta, "eval");
    if (!(meta_text = cJSON_PrintUnformatted(meta))) {
        rc = GQ_FAIL(&e, GQ_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = store_artifact_put(env->st, j->id, art, meta_text, files, nfiles, &e)) < 0)
        goto done;
    stored = 1;
    event(&r, "log", "info", NULL, "artifact: %zu files, %lld bytes", nfiles, (long long)bytes);

    /* evaluating */
    if (ev) {
        char gate[16];
        cJSON *ej;
        if ((rc = stage(&r, JOB_EVALUATING, 0.95, 1.0, &e)) < 0)
            goto done;
        eval_seqlen = (size_t)jint(ev, "seq_len", 0);
        if (!eval_seqlen)
            eval_seqlen = cal.seqlen;
        max_ratio = jnum(ev, "max_ppl_ratio", 0);
        if ((rc = build_eval(&eval_ids, &eval_blocks, ev, model_dir, eval_seqlen, &e)) < 0) {
            snprintf(r.reason, sizeof(r.reason), "invalid_eval");
            goto done;
        }
        if ((rc = perplexity(&ppl_before, model_dir, eval_ids, eval_blocks, eval_seqlen, &e)) < 0)
            goto done;
        progress(&r, "evaluating", -1, -1, 0.5, -1, 1);
        if (is_cancelled(&r)) {
            rc = GQ_FAIL(&e, GQ_ECANCELED, "cancelled");
            goto done;
        }
        if ((rc = perplexity(&ppl_after, art, eval_ids, eval_blocks, eval_seqlen, &e)) < 0)
            goto done;
        gate_failed = max_ratio > 0 && ppl_after / ppl_before > max_ratio;
        snprintf(gate, sizeof(gate), "%s", max_ratio <= 0 ? "none" : gate_failed ? "failed" : "passed");
        cJSON_DeleteItemFromObject(meta, "eval");
        ej = cJSON_AddObjectToObject(meta, "eval");
        cJSON_AddNumberToObject(ej, "blocks", (double)eval_blocks);
        cJSON_AddNumberToObject(ej, "seq_len", (double)eval_seqlen);
        cJSON_AddNumberToObject(ej, "tokens", (double)(eval_blocks * (eval_seqlen - 1)));
        cJSON_AddNumberToObject(ej, "ppl_before", ppl_before);
        cJSON_AddNumberToObject(ej, "ppl_after", ppl_after);
        cJSON_AddNumberToObject(ej, "ppl_ratio", ppl_after / ppl_before);
        if (max_ratio > 0)
            cJSON_AddNumberToObject(ej, "max_ppl_ratio", max_ratio);
        else
            cJSON_AddNullToObject(ej, "max_ppl_ratio");
        cJSON_AddStringToObject(ej, "gate", gate);
        cJSON_free(meta_text);
        if (!(meta_text = cJSON_PrintUnformatted(meta))) {
            rc = GQ_FAIL(&e, GQ_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = store_artifact_put(env->st, j->id, art, meta_text, files, nfiles, &e)) < 0)
            goto done;
        event(&r, "log", gate_failed ? "error" : "info", NULL, "perplexity %.4f -> %.4f (x%.4f), gate %s",
              ppl_before, ppl_after, ppl_after / ppl_before, gate);
    }

done:
    runner_rmtree(work);
    if (rc == 0 && !gate_failed) {
        finish(&r, JOB_SUCCEEDED, NULL, NULL, t0);
    } else if (rc == 0) {
        char msg[200];
        snprintf(msg, sizeof(msg), "perplexity gate failed: %.4f / %.4f = %.4f > %.4f (the artifact is kept)",
                 ppl_after, ppl_before, ppl_after / ppl_before, max_ratio);
        finish(&r, JOB_FAILED, "gate_failed", msg, t0);
    } else if (e.code == GQ_ECANCELED && atomic_load(shutdown) &&
               (requeued = store_job_requeue(env->st, j->id, &e2)) != 1) {
        if (!stored)
            runner_rmtree(art);
        if (requeued < 0)
            gq_log(GQ_LOG_ERROR, "job %s: cannot re-queue it: %s", j->id, e2.msg);
        else
            gq_log(GQ_LOG_INFO, "job %s re-queued by shutdown", j->id);
    } else if (e.code == GQ_ECANCELED) {   /* by request (also one made during the drain) */
        if (!stored)
            runner_rmtree(art);
        finish(&r, JOB_CANCELLED, "cancelled", "cancelled by request", t0);
    } else {
        /* an artifact already recorded stays (the evaluation failed after it) */
        if (!stored)
            runner_rmtree(art);
        finish(&r, JOB_FAILED, r.reason[0] ? r.reason : reason_of(e.code), e.msg, t0);
    }
    gq_free(eval_ids);
    for (size_t i = 0; i < nfiles; i++)
        gq_free(files[i].name);
    gq_free(files);
    cJSON_free(meta_text);
    cJSON_Delete(meta);
    cJSON_Delete(spec);
    calib_free(&cal);
    quantize_report_free(&rep);
    dynamic_free(dyn);
    gq_json_free(dynj);
}
