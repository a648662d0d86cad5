/*
 * jobspec.c - validating a submission into the canonical job spec (see
 * jobspec.h).  Field by field, with the field's dotted name in every
 * error; defaults filled in so the stored spec says exactly what will run.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "options.h"
#include "dynamic.h"
#include "hub.h"
#include "json.h"
#include "jobspec.h"
#include "webhook.h"

#define MAX_TEXTS 100000
#define MAX_TOKEN_IDS 50000000
#define MAX_LABELS 32

struct ctx {
    char *field;
    size_t cap;
    gq_err *e;
};

static int bad(struct ctx *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int bad(struct ctx *c, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->field, c->cap, "%s", field);
    return GQ_FAIL(c->e, GQ_EINVAL, "%s: %s", field, msg);
}

static const char *type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsNull(v)) return "null";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "invalid";
}

/* Every key of obj must be in allowed (NULL-terminated); no duplicates. */
static int check_keys(struct ctx *c, const cJSON *obj, const char *prefix, const char *const *allowed)
{
    const cJSON *m, *n;
    char f[128], q[64];
    cJSON_ArrayForEach(m, obj)
    {
        int ok = 0;
        for (size_t i = 0; allowed[i]; i++)
            ok |= !strcmp(m->string, allowed[i]);
        snprintf(f, sizeof(f), "%s%s%s", prefix, *prefix ? "." : "", gq_err_quote(q, sizeof(q), m->string));
        if (!ok)
            return bad(c, f, "unknown field");
        for (n = m->next; n; n = n->next)
            if (!strcmp(n->string, m->string))
                return bad(c, f, "given twice");
    }
    return 0;
}

static int get_int(struct ctx *c, long long *out, const cJSON *obj, const char *key, const char *field,
                   long long def, long long min, long long max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v))
        return bad(c, field, "must be an integer (got %s)", type_name(v));
    if (v->valuedouble != floor(v->valuedouble) || !isfinite(v->valuedouble))
        return bad(c, field, "must be an integer (got %g)", v->valuedouble);
    if (v->valuedouble < (double)min || v->valuedouble > (double)max)
        return bad(c, field, "must be in [%lld, %lld] (got %.17g)", min, max, v->valuedouble);
    *out = (long long)v->valuedouble;
    return 0;
}

static int get_bool(struct ctx *c, int *out, const cJSON *obj, const char *key, const char *field, int def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return bad(c, field, "must be true or false (got %s)", type_name(v));
    *out = cJSON_IsTrue(v);
    return 0;
}

static int get_obj(struct ctx *c, const cJSON **out, const cJSON *obj, const char *key, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsObject(v))
        return bad(c, field, "must be an object (got %s)", type_name(v));
    *out = v;
    return 0;
}

/* texts: a non-empty array of strings. */
static int check_texts(struct ctx *c, const cJSON *v, const char *field)
{
    const cJSON *t;
    int i = 0, any = 0;
    char f[96];
    if (!cJSON_IsArray(v))
        return bad(c, field, "must be an array of strings (got %s)", type_name(v));
    if (cJSON_GetArraySize(v) == 0 || cJSON_GetArraySize(v) > MAX_TEXTS)
        return bad(c, field, "must hold 1 to %d texts (got %d)", MAX_TEXTS, cJSON_GetArraySize(v));
    cJSON_ArrayForEach(t, v)
    {
        snprintf(f, sizeof(f), "%s[%d]", field, i++);
        if (!cJSON_IsString(t))
            return bad(c, f, "must be a string (got %s)", type_name(t));
        any |= t->valuestring[0] != '\0';
    }
    if (!any)
        return bad(c, field, "every text is empty");
    return 0;
}

/* token_ids: an array of non-negative integers, or an array of equally long arrays of them. */
static int check_ids(struct ctx *c, const cJSON *v, const char *field, int allow_rows)
{
    const cJSON *t, *x;
    long long total = 0;
    int i = 0, rowlen = -1;
    char f[96];
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) == 0)
        return bad(c, field, "must be a non-empty array of token ids");
    cJSON_ArrayForEach(t, v)
    {
        snprintf(f, sizeof(f), "%s[%d]", field, i++);
        if (allow_rows && cJSON_IsArray(t)) {
            int j = 0;
            if (rowlen < 0)
                rowlen = cJSON_GetArraySize(t);
            if (cJSON_GetArraySize(t) != rowlen || rowlen < 2)
                return bad(c, f, "rows must all have the same length, at least 2 (got %d)", cJSON_GetArraySize(t));
            cJSON_ArrayForEach(x, t)
            {
                if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > INT_MAX ||
                    x->valuedouble != floor(x->valuedouble))
                    return bad(c, f, "element %d is not a token id (a non-negative integer)", j);
                j++;
            }
            total += rowlen;
        } else {
            if (rowlen >= 0)
                return bad(c, f, "mixes rows and single ids");
            if (!cJSON_IsNumber(t) || t->valuedouble < 0 || t->valuedouble > INT_MAX ||
                t->valuedouble != floor(t->valuedouble))
                return bad(c, f, "is not a token id (a non-negative integer)");
            total++;
            rowlen = -2;
        }
        if (total > MAX_TOKEN_IDS)
            return bad(c, field, "more than %d token ids", MAX_TOKEN_IDS);
    }
    return 0;
}

static int valid_name(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max || s[0] == '.' || s[0] == '-')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return 0;
    return strstr(s, "..") == NULL;
}

static int add(cJSON *o, const char *k, cJSON *v)
{
    return v && cJSON_AddItemToObject(o, k, v) ? 0 : -1;
}

/*
 * The callback URL's host, parsed by libcurl as delivery will: a loopback,
 * private or link-local literal (or a localhost name) is refused now unless
 * allowed; other names are checked again when a delivery resolves them.
 */
static int check_callback_host(struct ctx *c, const char *url, int allow_private)
{
    CURLU *u = curl_url();
    char *host = NULL;
    int rc = 0;

    if (!u)
        return GQ_FAIL(c->e, GQ_ENOMEM, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        !host || !*host)
        rc = bad(c, "callback_url", "is not a valid URL (no host)");
    else if (!allow_private && webhook_host_private(host))
        rc = bad(c, "callback_url",
                 "names a loopback, private or link-local address (%.80s); gptqd refuses those unless it is "
                 "started with --webhook-private",
                 host);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

int jobspec_parse(cJSON **spec, const cJSON *body, const struct daemon_config *cfg, char *field, size_t cap,
                  gq_err *e)
{
    static const char *const top_keys[] = {"model", "revision", "quantization", "calibration", "eval", "output",
                                            "priority", "labels", "callback_url", NULL};
    static const char *const q_keys[] = {"bits", "group_size", "desc_act", "sym", "damp_percent", "static_groups",
                                         "true_sequential", "mse", "dynamic", "checkpoint_format", NULL};
    static const char *const c_keys[] = {"texts", "token_ids", "builtin", "num_samples", "seq_len", "seed", NULL};
    static const char *const e_keys[] = {"texts", "token_ids", "seq_len", "max_ppl_ratio", NULL};
    static const char *const o_keys[] = {"shard_size", NULL};
    struct ctx c = {field, cap, e};
    cJSON *s = NULL, *qo = NULL, *co = NULL, *eo = NULL, *oo = NULL, *lo = NULL;
    const cJSON *v, *q, *cal, *ev, *out, *labels;
    const char *model, *revision = "main";
    long long bits, gs, ns, sl, seed, prio, shard, esl;
    int desc, sym, sg, ts, mse;
    double damp = 0.01, ratio = 0;
    const char *fmt = "gptq";
    char q_[96];
    int rc;

    field[0] = '\0';
    if (!cJSON_IsObject(body))
        return bad(&c, "", "the body must be a JSON object (got %s)", type_name(body));
    if ((rc = check_keys(&c, body, "", top_keys)) < 0)
        return rc;

    /* model, revision */
    v = cJSON_GetObjectItemCaseSensitive(body, "model");
    if (!v)
        return bad(&c, "model", "is required (a Hub repo id \"org/name\" or \"local:NAME\")");
    if (!cJSON_IsString(v))
        return bad(&c, "model", "must be a string (got %s)", type_name(v));
    model = v->valuestring;
    if (!strncmp(model, "local:", 6)) {
        char path[8300];
        if (!cfg->local_models[0])
            return bad(&c, "model", "local models are not enabled on this server (--local-models)");
        if (!valid_name(model + 6, 200))
            return bad(&c, "model", "\"%s\" is not a local model name (letters, digits, '-', '_', '.'; no '/' or \"..\")",
                       gq_err_quote(q_, sizeof(q_), model + 6));
        snprintf(path, sizeof(path), "%s/%s/config.json", cfg->local_models, model + 6);
        if (access(path, R_OK) != 0)
            return bad(&c, "model", "local model %s has no config.json under --local-models",
                       gq_err_quote(q_, sizeof(q_), model + 6));
    } else {
        gq_err he = GQ_ERR_INIT;
        if (hub_valid_repo_id(model, &he) < 0)
            return bad(&c, "model", "%s", he.msg);
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "revision");
    if (v && !cJSON_IsNull(v)) {
        gq_err he = GQ_ERR_INIT;
        if (!cJSON_IsString(v))
            return bad(&c, "revision", "must be a string (got %s)", type_name(v));
        revision = v->valuestring;
        if (hub_valid_revision(revision, &he) < 0)
            return bad(&c, "revision", "%s", he.msg);
    }

    /* quantization */
    if ((rc = get_obj(&c, &q, body, "quantization", "quantization")) < 0)
        return rc;
    if (q && (rc = check_keys(&c, q, "quantization", q_keys)) < 0)
        return rc;
    if ((rc = get_int(&c, &bits, q, "bits", "quantization.bits", 4, 2, 8)) < 0)
        return rc;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return bad(&c, "quantization.bits", "must be 2, 3, 4 or 8 (got %lld)", bits);
    if ((rc = get_int(&c, &gs, q, "group_size", "quantization.group_size", 128, -1, 1 << 20)) < 0)
        return rc;
    if (gs == 0)
        return bad(&c, "quantization.group_size", "must be -1 (one group per row) or positive (got 0)");
    if ((rc = get_bool(&c, &desc, q, "desc_act", "quantization.desc_act", 0)) < 0 ||
        (rc = get_bool(&c, &sym, q, "sym", "quantization.sym", 1)) < 0 ||
        (rc = get_bool(&c, &sg, q, "static_groups", "quantization.static_groups", 0)) < 0 ||
        (rc = get_bool(&c, &ts, q, "true_sequential", "quantization.true_sequential", 1)) < 0 ||
        (rc = get_bool(&c, &mse, q, "mse", "quantization.mse", 0)) < 0)
        return rc;
    v = cJSON_GetObjectItemCaseSensitive(q, "damp_percent");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v))
            return bad(&c, "quantization.damp_percent", "must be a number (got %s)", type_name(v));
        damp = v->valuedouble;
        if (!(damp > 0 && damp < 1))
            return bad(&c, "quantization.damp_percent", "must be in (0, 1) (got %g)", damp);
    }
    v = cJSON_GetObjectItemCaseSensitive(q, "checkpoint_format");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || (strcmp(v->valuestring, "gptq") && strcmp(v->valuestring, "gptq_v2")))
            return bad(&c, "quantization.checkpoint_format", "must be \"gptq\" or \"gptq_v2\"");
        fmt = v->valuestring;
    }
    v = cJSON_GetObjectItemCaseSensitive(q, "dynamic");
    if (v && !cJSON_IsNull(v)) {
        char *t;
        gq_json *dj = NULL;
        dynamic_rules *dr = NULL;
        gq_err de = GQ_ERR_INIT;
        if (!cJSON_IsObject(v))
            return bad(&c, "quantization.dynamic", "must be an object of rules (got %s)", type_name(v));
        if (!(t = cJSON_PrintUnformatted(v)))
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
        rc = gq_json_parse(&dj, t, strlen(t), &de);
        cJSON_free(t);
        if (rc == 0)
            rc = dynamic_parse(&dr, dj, &de);
        dynamic_free(dr);
        gq_json_free(dj);
        if (rc < 0)
            return bad(&c, "quantization.dynamic", "%s", de.msg);
    }

    /* calibration */
    cal = cJSON_GetObjectItemCaseSensitive(body, "calibration");
    if (!cal)
        return bad(&c, "calibration", "is required ({\"texts\": [...]}, {\"token_ids\": [...]} or {\"builtin\": NAME})");
    if (!cJSON_IsObject(cal))
        return bad(&c, "calibration", "must be an object (got %s)", type_name(cal));
    if ((rc = check_keys(&c, cal, "calibration", c_keys)) < 0)
        return rc;
    {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(cal, "texts");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cal, "token_ids");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(cal, "builtin");
        if ((t != NULL) + (ids != NULL) + (b != NULL) != 1)
            return bad(&c, "calibration", "give exactly one of texts, token_ids and builtin");
        if (t && (rc = check_texts(&c, t, "calibration.texts")) < 0)
            return rc;
        if (ids && (rc = check_ids(&c, ids, "calibration.token_ids", 1)) < 0)
            return rc;
        if (b) {
            char p1[4400], p2[4400];
            if (!cJSON_IsString(b) || !valid_name(b->valuestring, 100))
                return bad(&c, "calibration.builtin", "must be a calibration set name");
            if (!cfg->calib_dir[0])
                return bad(&c, "calibration.builtin", "no builtin calibration sets on this server (--calib-dir)");
            snprintf(p1, sizeof(p1), "%s/%s.jsonl", cfg->calib_dir, b->valuestring);
            snprintf(p2, sizeof(p2), "%s/%s.txt", cfg->calib_dir, b->valuestring);
            if (access(p1, R_OK) != 0 && access(p2, R_OK) != 0)
                return bad(&c, "calibration.builtin", "no calibration set named %s",
                           gq_err_quote(q_, sizeof(q_), b->valuestring));
        }
    }
    if ((rc = get_int(&c, &ns, cal, "num_samples", "calibration.num_samples", 128, 1, 65536)) < 0 ||
        (rc = get_int(&c, &sl, cal, "seq_len", "calibration.seq_len", 2048, 2, 131072)) < 0 ||
        (rc = get_int(&c, &seed, cal, "seed", "calibration.seed", 0, 0, (1LL << 53))) < 0)
        return rc;
    if (ns * sl > 64LL * 1024 * 1024)
        return bad(&c, "calibration", "num_samples x seq_len = %lld tokens, more than %d", ns * sl, 64 * 1024 * 1024);

    /* eval */
    if ((rc = get_obj(&c, &ev, body, "eval", "eval")) < 0)
        return rc;
    esl = 0;
    if (ev) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "texts");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(ev, "token_ids");
        if ((rc = check_keys(&c, ev, "eval", e_keys)) < 0)
            return rc;
        if ((t != NULL) + (ids != NULL) != 1)
            return bad(&c, "eval", "give exactly one of texts and token_ids");
        if (t && (rc = check_texts(&c, t, "eval.texts")) < 0)
            return rc;
        if (ids && (rc = check_ids(&c, ids, "eval.token_ids", 0)) < 0)
            return rc;
        if ((rc = get_int(&c, &esl, ev, "seq_len", "eval.seq_len", 0, 2, 131072)) < 0)
            return rc;
        v = cJSON_GetObjectItemCaseSensitive(ev, "max_ppl_ratio");
        if (v && !cJSON_IsNull(v)) {
            if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1.0) || !isfinite(v->valuedouble))
                return bad(&c, "eval.max_ppl_ratio", "must be a number >= 1");
            ratio = v->valuedouble;
        }
    }

    /* output, priority, labels, callback */
    if ((rc = get_obj(&c, &out, body, "output", "output")) < 0)
        return rc;
    if (out && (rc = check_keys(&c, out, "output", o_keys)) < 0)
        return rc;
    if ((rc = get_int(&c, &shard, out, "shard_size", "output.shard_size", 4000000000LL, 0, 1LL << 50)) < 0)
        return rc;
    if (shard > 0 && shard < 1024 * 1024)
        return bad(&c, "output.shard_size", "must be 0 (one file) or at least 1 MiB (got %lld)", shard);
    if ((rc = get_int(&c, &prio, body, "priority", "priority", 0, -1000, 1000)) < 0)
        return rc;
    if ((rc = get_obj(&c, &labels, body, "labels", "labels")) < 0)
        return rc;
    if (labels) {
        const cJSON *m;
        char f[96];
        if (cJSON_GetArraySize(labels) > MAX_LABELS)
            return bad(&c, "labels", "at most %d labels", MAX_LABELS);
        cJSON_ArrayForEach(m, labels)
        {
            snprintf(f, sizeof(f), "labels.%s", gq_err_quote(q_, sizeof(q_), m->string));
            if (!valid_name(m->string, 63) && !(strchr(m->string, '/') && strlen(m->string) <= 63))
                return bad(&c, f, "a label key is 1-63 letters, digits, '-', '_', '.', '/'");
            if (!cJSON_IsString(m))
                return bad(&c, f, "a label value must be a string (got %s)", type_name(m));
            if (strlen(m->valuestring) > 256)
                return bad(&c, f, "a label value is at most 256 bytes");
            for (const cJSON *n = m->next; n; n = n->next)
                if (!strcmp(n->string, m->string))
                    return bad(&c, f, "given twice");
        }
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "callback_url");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v))
            return bad(&c, "callback_url", "must be a string (got %s)", type_name(v));
        if ((strncmp(v->valuestring, "http://", 7) && strncmp(v->valuestring, "https://", 8)) ||
            strlen(v->valuestring) > 2048 || strpbrk(v->valuestring, " \r\n\t"))
            return bad(&c, "callback_url", "must be an http:// or https:// URL of at most 2048 bytes");
        if ((rc = check_callback_host(&c, v->valuestring, cfg && cfg->webhook_private)) < 0)
            return rc;
    }

    /* the canonical spec */
    if (!(s = cJSON_CreateObject()) || add(s, "model", cJSON_CreateString(model)) ||
        add(s, "revision", cJSON_CreateString(revision)) || !(qo = cJSON_AddObjectToObject(s, "quantization")) ||
        add(qo, "bits", cJSON_CreateNumber((double)bits)) || add(qo, "group_size", cJSON_CreateNumber((double)gs)) ||
        add(qo, "desc_act", cJSON_CreateBool(desc)) || add(qo, "sym", cJSON_CreateBool(sym)) ||
        add(qo, "damp_percent", cJSON_CreateNumber(damp)) || add(qo, "static_groups", cJSON_CreateBool(sg)) ||
        add(qo, "true_sequential", cJSON_CreateBool(ts)) || add(qo, "mse", cJSON_CreateBool(mse)) ||
        add(qo, "dynamic", (v = cJSON_GetObjectItemCaseSensitive(q, "dynamic")) && cJSON_IsObject(v)
                               ? cJSON_Duplicate(v, 1) : cJSON_CreateNull()) ||
        add(qo, "checkpoint_format", cJSON_CreateString(fmt)) || !(co = cJSON_AddObjectToObject(s, "calibration")))
        goto oom;
    {
        const char *const k[] = {"texts", "token_ids", "builtin"};
        for (int i = 0; i < 3; i++)
            if ((v = cJSON_GetObjectItemCaseSensitive(cal, k[i])) && add(co, k[i], cJSON_Duplicate(v, 1)))
                goto oom;
    }
    if (add(co, "num_samples", cJSON_CreateNumber((double)ns)) || add(co, "seq_len", cJSON_CreateNumber((double)sl)) ||
        add(co, "seed", cJSON_CreateNumber((double)seed)))
        goto oom;
    if (ev) {
        if (!(eo = cJSON_AddObjectToObject(s, "eval")))
            goto oom;
        if ((v = cJSON_GetObjectItemCaseSensitive(ev, "texts")) && add(eo, "texts", cJSON_Duplicate(v, 1)))
            goto oom;
        if ((v = cJSON_GetObjectItemCaseSensitive(ev, "token_ids")) && add(eo, "token_ids", cJSON_Duplicate(v, 1)))
            goto oom;
        if (add(eo, "seq_len", esl ? cJSON_CreateNumber((double)esl) : cJSON_CreateNull()) ||
            add(eo, "max_ppl_ratio", ratio > 0 ? cJSON_CreateNumber(ratio) : cJSON_CreateNull()))
            goto oom;
    } else if (!cJSON_AddNullToObject(s, "eval")) {
        goto oom;
    }
    if (!(oo = cJSON_AddObjectToObject(s, "output")) || add(oo, "shard_size", cJSON_CreateNumber((double)shard)) ||
        add(s, "priority", cJSON_CreateNumber((double)prio)))
        goto oom;
    lo = labels ? cJSON_Duplicate(labels, 1) : cJSON_CreateObject();
    if (add(s, "labels", lo))
        goto oom;
    v = cJSON_GetObjectItemCaseSensitive(body, "callback_url");
    if (add(s, "callback_url", v && cJSON_IsString(v) ? cJSON_CreateString(v->valuestring) : cJSON_CreateNull()))
        goto oom;
    *spec = s;
    return 0;
oom:
    cJSON_Delete(s);
    return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
}

void jobspec_hash(char out[65], const char *spec_text)
{
    unsigned char d[32];
    unsigned int n = 0;
    EVP_Digest(spec_text, strlen(spec_text), d, &n, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static double num_of(const cJSON *o, const char *k, double def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

int64_t jobspec_estimate_memory(const cJSON *spec, int hidden, int intermediate, int vocab)
{
    const cJSON *cal = cJSON_GetObjectItemCaseSensitive(spec, "calibration");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(spec, "eval");
    double ns = num_of(cal, "num_samples", 128), sl = num_of(cal, "seq_len", 2048);
    double h = hidden > 0 ? hidden : 0, it = intermediate > 0 ? intermediate : 0, v = vocab > 0 ? vocab : 0;
    double tokens = ns * sl, est;
    /*
     * pipeline.h's account: two float32 activation copies of every
     * calibration token, one layer in float32 (4 h^2 attention + 3 h i
     * MLP), the Hessians of one group (the largest is i^2 for down_proj)
     * with the solve's scratch (about three Hessian-sized matrices and
     * weight-sized copies of the largest module), a forward chunk of 1024
     * tokens (its widest buffer is the MLP's 3 i), and the evaluation's
     * logits for a block.  Then 64 MiB for everything else.
     */
    est = 2 * tokens * h * 4;
    est += (4 * h * h + 3 * h * it) * 4;
    est += 4 * (it > h ? it * it : h * h) * 4;
    est += 3 * h * it * 4;
    est += 1024 * (3 * it + 4 * h) * 4;
    if (ev && !cJSON_IsNull(ev))
        est += 8 * sl * (v + h) * 4;
    est += 64.0 * 1024 * 1024;
    return (int64_t)est;
}

