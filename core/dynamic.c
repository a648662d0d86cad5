/*
 * dynamic.c - GPTQModel's per-module `dynamic` overrides; see dynamic.h.
 *
 * DESIGN.  Each rule keeps its key as written (prefix included), its place
 * in the object, its parsed overrides, a copy of its JSON value (so that
 * dynamic_to_json gives back exactly what was read) and its regex compiled
 * by PCRE2 with PCRE2_UTF | PCRE2_UCP, which makes \d, \w and friends
 * Unicode-aware the way Python's `re` treats str patterns.  Rules are
 * stored in matching order: negative ones first, then positive ones, each
 * group in the order written (GPTQModel's dynamic_get).
 *
 * Matching is Python's re.match: PCRE2_ANCHORED at match time pins the
 * match to the start of the module name; nothing pins its end, so
 * "model.layers.1" matches "model.layers.12.mlp.up_proj" as it does in
 * Python.
 *
 * dynamic_match cannot report an error (its contract is -1/0/1), so it
 * must not allocate: one match block is created at parse time, warmed up
 * once so PCRE2 has allocated its backtracking frames, and shared by the
 * rules under a mutex (the same rules may be matched from several worker
 * threads; a match takes microseconds, so the lock costs nothing).
 */
#include "dynamic.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "mem.h"

struct rule {
    char *key;              /* as written, prefix included */
    pcre2_code *re;
    int negative;
    size_t pos;             /* its place in the object as written */
    struct gptq_override ov;
    gq_json *value;         /* a copy of the override object, for dynamic_to_json */
};

struct dynamic_rules {
    struct rule *v;         /* n rules in matching order */
    size_t n;
    pcre2_match_data *md;   /* shared by every match, under mu */
    pthread_mutex_t *mu;
};

void dynamic_free(dynamic_rules *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++) {
        gq_free(d->v[i].key);
        pcre2_code_free(d->v[i].re);
        gq_json_free(d->v[i].value);
    }
    pcre2_match_data_free(d->md);
    if (d->mu) {
        pthread_mutex_destroy(d->mu);
        gq_free(d->mu);
    }
    gq_free(d->v);
    gq_free(d);
}

size_t dynamic_count(const dynamic_rules *d)
{
    return d ? d->n : 0;
}

/* GQ_EINVAL "dynamic rule '<key>': <what>". */
static int bad(gq_err *e, const char *key, const char *what)
{
    char q[96];
    return GQ_FAIL(e, GQ_EINVAL, "dynamic rule '%s': %s", gq_err_quote(q, sizeof(q), key), what);
}

/* "5", "1.5", or the JSON type of a value that is not a number. */
static const char *value_text(char *dst, size_t cap, const gq_json *v)
{
    if (gq_json_type_of(v) == GQ_JSON_NUMBER)
        snprintf(dst, cap, "%.10g", gq_json_number(v));
    else
        snprintf(dst, cap, "%s", gq_json_type_name(gq_json_type_of(v)));
    return dst;
}

/* "<name> must be <want> (got <value>)" as a rule error. */
static int bad_value(gq_err *e, const char *key, const char *name, const char *want, const gq_json *v)
{
    char msg[200], got[48];
    snprintf(msg, sizeof(msg), "%s must be %s (got %s)", name, want, value_text(got, sizeof(got), v));
    return bad(e, key, msg);
}

static int flag(int *has, int *out, const gq_json *v, const char *key, const char *name, gq_err *e)
{
    if (gq_json_bool(v) < 0)
        return bad_value(e, key, name, "true or false", v);
    *has = 1;
    *out = gq_json_bool(v);
    return 0;
}

static int parse_overrides(struct gptq_override *ov, const gq_json *obj, const char *key, gq_err *e)
{
    int rc;

    memset(ov, 0, sizeof(*ov));
    for (const gq_json *m = gq_json_first(obj); m; m = gq_json_next(m)) {
        const char *k = gq_json_key(m);
        double v = gq_json_number(m);   /* NaN unless a number */

        for (const gq_json *o = gq_json_first(obj); o != m; o = gq_json_next(o))
            if (!strcmp(gq_json_key(o), k)) {
                char msg[120], q[64];
                snprintf(msg, sizeof(msg), "key '%s' appears twice", gq_err_quote(q, sizeof(q), k));
                return bad(e, key, msg);
            }
        if (!strcmp(k, "bits")) {
            if (v != 2 && v != 3 && v != 4 && v != 8)
                return bad_value(e, key, "bits", "2, 3, 4 or 8", m);
            ov->has_bits = 1;
            ov->bits = (int)v;
        } else if (!strcmp(k, "group_size")) {
            if (!(v == -1 || (v >= 1 && v <= 2147483647.0 && v == floor(v))))
                return bad_value(e, key, "group_size", "-1 or a positive integer", m);
            ov->has_group_size = 1;
            ov->group_size = (int)v;
        } else if (!strcmp(k, "desc_act")) {
            if ((rc = flag(&ov->has_desc_act, &ov->desc_act, m, key, "desc_act", e)) < 0)
                return rc;
        } else if (!strcmp(k, "sym")) {
            if ((rc = flag(&ov->has_sym, &ov->sym, m, key, "sym", e)) < 0)
                return rc;
        } else if (!strcmp(k, "static_groups")) {
            if ((rc = flag(&ov->has_static_groups, &ov->static_groups, m, key, "static_groups", e)) < 0)
                return rc;
        } else if (!strcmp(k, "damp_percent")) {
            if (!(v > 0 && v < 1))
                return bad_value(e, key, "damp_percent", "a number in (0, 1)", m);
            ov->has_damp_percent = 1;
            ov->damp_percent = v;
        } else if (!strcmp(k, "mse")) {
            if (!(v >= 0) || isinf(v))
                return bad_value(e, key, "mse", "a number >= 0 (0 = off)", m);
            ov->has_mse = 1;
            ov->mse = v;
        } else {
            char msg[200], q[64];
            snprintf(msg, sizeof(msg), "unknown key '%s' (known: bits, group_size, desc_act, sym, "
                     "damp_percent, static_groups, mse)", gq_err_quote(q, sizeof(q), k));
            return bad(e, key, msg);
        }
    }
    return 0;
}

/* Compile rule r's regex (its key without the prefix). */
static int compile(struct rule *r, const char *pat, gq_err *e)
{
    PCRE2_SIZE erroff;
    int errcode;

    r->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &errcode,
                          &erroff, NULL);
    if (!r->re) {
        PCRE2_UCHAR msg[160];
        char what[240];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        snprintf(what, sizeof(what), "cannot compile the regex: %s at offset %zu", (const char *)msg,
                 (size_t)erroff);
        return bad(e, r->key, what);
    }
    return 0;
}

int dynamic_parse(dynamic_rules **out, const gq_json *rules, gq_err *e)
{
    dynamic_rules *d = NULL;
    size_t n = gq_json_size(rules), k = 0;
    int rc = 0;

    GQ_ASSERT_ARG(e, out != NULL);
    *out = NULL;
    if (rules && !gq_json_is_null(rules) && gq_json_type_of(rules) != GQ_JSON_OBJECT)
        return GQ_FAIL(e, GQ_EINVAL, "dynamic must be an object of regex -> overrides (got %s)",
                       gq_json_type_name(gq_json_type_of(rules)));
    if (!rules || gq_json_is_null(rules))
        n = 0;
    if (!(d = gq_calloc(1, sizeof(*d))) || !(d->v = gq_calloc(n ? n : 1, sizeof(*d->v))) ||
        !(d->mu = gq_malloc(sizeof(*d->mu))) || !(d->md = pcre2_match_data_create(1, NULL))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory parsing dynamic rules");
        goto done;
    }
    if (pthread_mutex_init(d->mu, NULL) != 0) {
        gq_free(d->mu);
        d->mu = NULL;
        rc = GQ_FAIL(e, GQ_ENOMEM, "cannot create a mutex for dynamic rules");
        goto done;
    }

    /* negative rules first, then positive ones, each in the order written */
    for (int pass = 0; pass < 2 && n; pass++) {
        size_t pos = 0;
        for (const gq_json *m = gq_json_first(rules); m; m = gq_json_next(m), pos++) {
            const char *key = gq_json_key(m), *pat = key;
            int negative = !strncmp(key, "-:", 2);
            struct rule *r;

            if (negative != (pass == 0))
                continue;
            if (negative || !strncmp(key, "+:", 2))
                pat += 2;
            for (const gq_json *o = gq_json_first(rules); o != m; o = gq_json_next(o))
                if (!strcmp(gq_json_key(o), key)) {
                    /* Python's json would keep the last one silently */
                    rc = bad(e, key, "the rule appears twice");
                    goto done;
                }
            if (gq_json_type_of(m) != GQ_JSON_OBJECT) {
                char what[120];
                snprintf(what, sizeof(what), "the value must be an object of overrides (got %s)",
                         gq_json_type_name(gq_json_type_of(m)));
                rc = bad(e, key, what);
                goto done;
            }
            if (negative && gq_json_size(m)) {
                rc = bad(e, key, "a negative (-:) rule takes no overrides");
                goto done;
            }
            r = &d->v[k];
            if ((rc = parse_overrides(&r->ov, m, key, e)) < 0)
                goto done;
            r->negative = negative;
            r->pos = pos;
            r->key = gq_strdup(key);
            r->value = gq_json_copy(m);
            d->n = ++k;
            if (!r->key || !r->value) {
                rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory parsing dynamic rules");
                goto done;
            }
            if ((rc = compile(r, pat, e)) < 0)
                goto done;
            /* the first match allocates PCRE2's frames; do it here, where failing is allowed */
            if (pcre2_match(r->re, (PCRE2_SPTR) "", 0, 0, PCRE2_ANCHORED, d->md, NULL) ==
                PCRE2_ERROR_NOMEMORY) {
                rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory parsing dynamic rules");
                goto done;
            }
        }
    }
    *out = d;
    d = NULL;
done:
    dynamic_free(d);
    return rc;
}

int dynamic_match(const dynamic_rules *d, const char *module, struct gptq_override *ov)
{
    int result = 0;

    memset(ov, 0, sizeof(*ov));
    if (!d || !d->n)
        return 0;
    pthread_mutex_lock(d->mu);
    for (size_t i = 0; i < d->n; i++) {
        /* re.match: anchored at the start, not at the end.  Errors (a regex
         * that exceeds PCRE2's match limit on a module name) count as no match. */
        int rc = pcre2_match(d->v[i].re, (PCRE2_SPTR)module, strlen(module), 0, PCRE2_ANCHORED, d->md,
                             NULL);
        if (rc >= 0) {
            result = d->v[i].negative ? -1 : 1;
            if (result > 0)
                *ov = d->v[i].ov;
            break;
        }
    }
    pthread_mutex_unlock(d->mu);
    return result;
}

int dynamic_to_json(gq_json **out, const dynamic_rules *d, gq_err *e)
{
    gq_json *o = gq_json_new_object();

    if (!o)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory writing dynamic rules");
    /* back to the order written: rule i was the pos-th member */
    for (size_t p = 0; d && p < d->n; p++)
        for (size_t i = 0; i < d->n; i++)
            if (d->v[i].pos == p) {
                if (gq_json_append(o, d->v[i].key, gq_json_copy(d->v[i].value)) < 0) {
                    gq_json_free(o);
                    return GQ_FAIL(e, GQ_ENOMEM, "out of memory writing dynamic rules");
                }
                break;
            }
    *out = o;
    return 0;
}
