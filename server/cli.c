/*
 * cli.c - `gptq`, the command-line face of the engine.
 *
 * A table of subcommands, each a function over its own argc/argv (argv[0]
 * is the subcommand's name) that returns the process exit status:
 *
 *   0  success
 *   1  runtime error (bad model or input file, I/O, numeric failure)
 *   2  usage error (unknown command or option, missing or malformed value)
 *
 * Errors are printed on stderr as "gptq: error: <message>" (gq_log), usage
 * errors followed by the subcommand's usage text.  Results go to stdout.
 * `gptq --help` and `gptq COMMAND --help` print usage on stdout and exit 0.
 *
 * The BLAS thread count is set once here, before any work, to the number
 * of online CPUs: core/ never changes it.
 *
 * Subcommands: quantize (server/cli_quantize.c), eval, inspect, tokenize.
 */
#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blas_env.h"
#include "buf.h"
#include "calib.h"
#include "cli.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"


struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    const char *usage;
};

static const char eval_usage[] =
    "usage: gptq eval MODEL_DIR (--blocks FILE.i32 | --texts FILE) --seqlen N [--batch N] [--json]\n"
    "\n"
    "Perplexity of a model (full precision, or a GPTQ checkpoint dequantized as\n"
    "the loaders do) on blocks of token ids, computed in float32 as transformers\n"
    "computes it: each block of N ids is one sequence, and perplexity =\n"
    "exp(mean next-token negative log-likelihood over the N-1 predicted\n"
    "positions of every block).\n"
    "\n"
    "  MODEL_DIR        a Hugging Face checkpoint: config.json and safetensors;\n"
    "                   GPTQ checkpoints (quantization_config or\n"
    "                   quantize_config.json) included\n"
    "  --blocks FILE    token ids (int32, little-endian), a multiple of N of them\n"
    "  --texts FILE     texts instead: JSONL (one {\"text\": ...} or JSON string a\n"
    "                   line) or one plain text; joined with \"\\n\\n\" and tokenized\n"
    "                   once by MODEL_DIR's tokenizer without special tokens (as\n"
    "                   calibration does), the stream cut into consecutive blocks\n"
    "                   of N tokens, the remainder dropped\n"
    "  --seqlen N       tokens per block (at least 2)\n"
    "  --batch N        blocks per forward batch (default 8; memory grows with it)\n"
    "  --json           print {\"ppl\": P, \"tokens\": T} instead of text\n"
    "  -h, --help       this text\n"
    "\n"
    "Prints \"perplexity P over T tokens\", T being the number of predicted\n"
    "positions (blocks * (N - 1)).\n"
    "\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

static const char inspect_usage[] =
    "usage: gptq inspect DIR [--json]\n"
    "\n"
    "What a checkpoint directory holds, without loading any weight:\n"
    "  - the model: architecture, layers, sizes, dtype;\n"
    "  - the quantization config (bits, group size, desc_act, sym, zero-point\n"
    "    format, dynamic rules as written) and the file it was read from, or\n"
    "    \"none\" for a float model;\n"
    "  - the provenance in DIR/quant_config.json when there is one, its keys as\n"
    "    they are written (source_model_id, source_revision, calibration_sha256,\n"
    "    calibration_sample_count, ...);\n"
    "  - each decoder Linear: packed (with its bits and group size after the\n"
    "    dynamic rules) or float, counted;\n"
    "  - every tensor (name, dtype, shape) and the total bytes;\n"
    "  - whether the checkpoint passes the checks that loading it for eval\n"
    "    applies (tensor presence, dtypes, shapes).\n"
    "\n"
    "  DIR          a Hugging Face checkpoint directory (config.json, safetensors)\n"
    "  --json       one JSON object instead of text\n"
    "  -h, --help   this text\n"
    "\n"
    "exit status: 0 ok, 1 runtime error (config or safetensors unreadable, or a\n"
    "checkpoint that fails the checks: everything else is printed first),\n"
    "2 usage error\n";

static const char tokenize_usage[] =
    "usage: gptq tokenize PATH (--text STR | --file F | --jsonl F) [--no-special] [--decode] [--json]\n"
    "\n"
    "Token ids of a text as the model's Hugging Face tokenizer gives them (the\n"
    "tokenizers library's encode, special tokens added as add_special_tokens=True\n"
    "does), and optionally the ids decoded back to text.\n"
    "\n"
    "  PATH             a model directory (tokenizer.json, with the overrides of\n"
    "                   tokenizer_config.json as transformers applies them) or a\n"
    "                   tokenizer.json file (loaded alone)\n"
    "  --text STR       encode STR\n"
    "  --file F         encode the whole of file F, as bytes (- reads stdin)\n"
    "  --jsonl F        encode each non-empty line of F (- reads stdin): a JSON\n"
    "                   object with a \"text\" string, or a JSON string (a text\n"
    "                   cannot hold U+0000); prints one JSON line per input line\n"
    "  --no-special     add no special tokens (add_special_tokens=False)\n"
    "  --decode         also decode the ids, special tokens kept\n"
    "  --json           print {\"ids\": [...]} (and \"decoded\" with --decode)\n"
    "  -h, --help       this text\n"
    "\n"
    "Prints the ids on one line, separated by spaces, and with --decode the\n"
    "decoded text on the next.  --jsonl always prints JSON, one\n"
    "{\"ids\": [...]} object (with \"decoded\" under --decode) per input line; an\n"
    "error stops it with the line number.\n"
    "\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

/*
 * --texts: the token stream of the texts in path (calib_read_texts: JSONL
 * or plain) joined with "\n\n" and tokenized once by dir's tokenizer
 * without special tokens, as calibration tokenizes (calib_from_texts),
 * then cut into consecutive blocks of seqlen: *ids (nblocks * seqlen, the
 * remainder dropped), *nblocks.  GQ_EINVAL when not one block fits.
 */
static int text_blocks(int32_t **ids, size_t *nblocks, const char *dir, const char *path, size_t seqlen,
                       gq_err *e)
{
    char **texts = NULL;
    size_t ntexts = 0, n = 0;
    int32_t *stream = NULL;
    tokenizer *t = NULL;
    int rc;

    if ((rc = calib_read_texts(&texts, &ntexts, path, e)) < 0)
        goto done;
    if ((rc = tokenizer_load_dir(&t, dir, e)) < 0) {
        if (!strstr(e->msg, dir))
            gq_err_prefix(e, "%s", dir);
        goto done;
    }
    if ((rc = calib_tokenize_texts(&stream, &n, t, (const char *const *)texts, ntexts, e)) < 0) {
        gq_err_prefix(e, "%s", path);
        goto done;
    }
    if (n < seqlen) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s gives %zu tokens, fewer than one block of --seqlen %zu", path, n, seqlen);
        goto done;
    }
    gq_log(GQ_LOG_INFO, "%s: %zu texts, %zu tokens: %zu blocks of %zu (%zu tokens dropped)", path, ntexts, n,
           n / seqlen, seqlen, n % seqlen);
    *ids = stream;
    stream = NULL;
    *nblocks = n / seqlen;
done:
    calib_texts_free(texts, ntexts);
    tokenizer_free(t);
    gq_free(stream);
    return rc;
}

static int cmd_eval(int argc, char **argv)
{
    const char *dir = NULL, *blocks = NULL, *texts = NULL;
    size_t seqlen = 0, batch = 8, n = 0, nblocks = 0, count = 0;
    int json = 0, rc;
    int32_t *ids = NULL;
    model *m = NULL;
    double nll = 0.0, ppl;
    gq_err e = GQ_ERR_INIT;
    char what[300], q[128];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(eval_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--blocks") || !strcmp(a, "--texts") || !strcmp(a, "--seqlen") ||
                   !strcmp(a, "--batch")) {
            if (i + 1 >= argc) {
                snprintf(what, sizeof(what), "%s needs a value", a);
                return cli_usage_error(eval_usage, what);
            }
            i++;
            if (!strcmp(a, "--blocks")) {
                blocks = argv[i];
            } else if (!strcmp(a, "--texts")) {
                texts = argv[i];
            } else if (cli_parse_count(!strcmp(a, "--seqlen") ? &seqlen : &batch, argv[i]) < 0) {
                snprintf(what, sizeof(what), "%s must be a positive integer (got '%s')", a,
                         gq_err_quote(q, sizeof(q), argv[i]));
                return cli_usage_error(eval_usage, what);
            }
        } else if (a[0] == '-' && a[1]) {
            snprintf(what, sizeof(what), "unknown option '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(eval_usage, what);
        } else if (!dir) {
            dir = a;
        } else {
            snprintf(what, sizeof(what), "unexpected argument '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(eval_usage, what);
        }
    }
    if (!dir)
        return cli_usage_error(eval_usage, "MODEL_DIR is required");
    if (!blocks && !texts)
        return cli_usage_error(eval_usage, "--blocks or --texts is required");
    if (blocks && texts)
        return cli_usage_error(eval_usage, "give only one of --blocks and --texts");
    if (!seqlen)
        return cli_usage_error(eval_usage, "--seqlen is required");
    if (seqlen < 2)
        return cli_usage_error(eval_usage, "--seqlen must be at least 2");

    if (blocks) {
        if ((rc = calib_read_ids(&ids, &n, blocks, &e)) < 0)
            goto done;
        if (n == 0 || n % seqlen) {
            rc = GQ_FAIL(&e, GQ_EINVAL, "%s holds %zu ids, not a positive multiple of --seqlen %zu",
                         blocks, n, seqlen);
            goto done;
        }
        nblocks = n / seqlen;
    } else if ((rc = text_blocks(&ids, &nblocks, dir, texts, seqlen, &e)) < 0) {
        goto done;
    }
    if ((rc = model_open(&m, dir, &e)) < 0) {
        if (!strstr(e.msg, dir))
            gq_err_prefix(&e, "%s", dir);
        goto done;
    }
    if ((rc = model_nll(&nll, &count, m, ids, nblocks, seqlen, batch, &e)) < 0)
        goto done;
    ppl = exp(nll / (double)count);
    if (json)
        printf("{\"ppl\": %.6f, \"tokens\": %zu}\n", ppl, count);
    else
        printf("perplexity %.4f over %zu tokens\n", ppl, count);
    if (fflush(stdout) != 0)
        rc = GQ_FAIL(&e, GQ_EIO, "cannot write the result: %s", strerror(errno));
done:
    model_close(m);
    gq_free(ids);
    if (rc < 0) {
        gq_log(GQ_LOG_ERROR, "%s", e.msg);
        return EXIT_RUNTIME;
    }
    return 0;
}

/* ---- inspect ---- */

static int read_all(gq_buf *b, const char *path, gq_err *e);

/* How one decoder Linear is stored, from the tensor names. */
enum stored { STORED_MISSING = 0, STORED_PACKED, STORED_FLOAT };

struct linear_row {
    char name[96];
    enum stored stored;
    struct model_gptq_module q;     /* packed: its settings after the dynamic rules */
};

static const char *stored_name(enum stored s)
{
    return s == STORED_PACKED ? "packed" : s == STORED_FLOAT ? "float" : "missing";
}

/* Everything inspect reports, gathered before printing. */
struct inspection {
    const char *dir;
    struct model_config cfg;
    int quantized;
    struct model_gptq gptq;
    dynamic_rules *dynamic;
    gq_json *provenance;            /* quant_config.json, or NULL */
    st_model *st;
    struct linear_row *rows;        /* num_layers * LIN_COUNT */
    size_t nrows, npacked, nfloat, nmissing;
    int valid;
    char error[256];
};

static void inspection_free(struct inspection *in)
{
    dynamic_free(in->dynamic);
    gq_json_free(in->provenance);
    st_model_close(in->st);
    gq_free(in->rows);
}

/* dir/quant_config.json as a JSON object, or NULL when absent. */
static int read_provenance(gq_json **out, const char *dir, gq_err *e)
{
    gq_buf text = GQ_BUF_INIT;
    char path[4200];
    struct stat st;
    int rc;

    *out = NULL;
    snprintf(path, sizeof(path), "%s/quant_config.json", dir);
    if (stat(path, &st) < 0 && errno == ENOENT)
        return 0;
    if ((rc = read_all(&text, path, e)) < 0 || (rc = gq_json_parse(out, text.ptr ? text.ptr : "", text.len, e)) < 0)
        gq_err_prefix(e, "%s", path);
    else if (gq_json_type_of(*out) != GQ_JSON_OBJECT) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: not a JSON object (got %s)", path, gq_json_type_name(gq_json_type_of(*out)));
        gq_json_free(*out);
        *out = NULL;
    }
    gq_buf_free(&text);
    return rc;
}

static int inspect_gather(struct inspection *in, const char *dir, gq_err *e)
{
    gq_err check = GQ_ERR_INIT;
    model *m = NULL;
    char path[4200];
    int rc;

    in->dir = dir;
    if ((size_t)snprintf(path, sizeof(path), "%s/config.json", dir) >= sizeof(path))
        return GQ_FAIL(e, GQ_EINVAL, "model directory path is too long (%zu bytes)", strlen(dir));
    if ((rc = model_config_load(&in->cfg, path, e)) < 0 ||
        (rc = model_gptq_load(&in->gptq, &in->dynamic, &in->quantized, dir, e)) < 0 ||
        (rc = read_provenance(&in->provenance, dir, e)) < 0 || (rc = st_model_open(&in->st, dir, e)) < 0)
        return rc;
    in->nrows = (size_t)in->cfg.num_layers * LIN_COUNT;
    if (!(in->rows = gq_calloc(in->nrows, sizeof(*in->rows))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory listing %zu modules", in->nrows);
    for (size_t i = 0; i < in->nrows; i++) {
        struct linear_row *r = &in->rows[i];
        char name[128];
        linear_module_name(r->name, sizeof(r->name), (int)(i / LIN_COUNT), (enum linear_id)(i % LIN_COUNT));
        snprintf(name, sizeof(name), "%s.qweight", r->name);
        if (st_model_find(in->st, name)) {
            r->stored = STORED_PACKED;
            if (in->quantized)
                model_gptq_module(&r->q, &in->gptq, in->dynamic, r->name);
            in->npacked++;
            continue;
        }
        snprintf(name, sizeof(name), "%s.weight", r->name);
        r->stored = st_model_find(in->st, name) ? STORED_FLOAT : STORED_MISSING;
        if (r->stored == STORED_FLOAT)
            in->nfloat++;
        else
            in->nmissing++;
    }
    /* the checks eval's loading applies */
    in->valid = model_open(&m, dir, &check) == 0;
    if (!in->valid)
        snprintf(in->error, sizeof(in->error), "%s", check.msg);
    model_close(m);
    return 0;
}

/* "[a, b]" */
static void shape_str(char *buf, size_t cap, const struct st_tensor *t)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (at < cap)
        snprintf(buf + at, cap - at, "]");
}

/* Packed modules counted per (bits, group size), in first-seen order: "4-bit g128: 180". */
static int print_bit_counts(gq_buf *b, const struct inspection *in, gq_err *e)
{
    int rc = 0;
    for (size_t i = 0; i < in->nrows && rc == 0; i++) {
        const struct linear_row *r = &in->rows[i];
        size_t n = 0, seen = 0;
        if (r->stored != STORED_PACKED || !r->q.bits)
            continue;
        for (size_t j = 0; j < in->nrows; j++) {
            const struct linear_row *o = &in->rows[j];
            if (o->stored == STORED_PACKED && o->q.bits == r->q.bits && o->q.group_size == r->q.group_size) {
                seen |= j < i;
                n++;
            }
        }
        if (!seen)
            rc = gq_buf_printf(b, e, "  %d-bit g%d: %zu\n", r->q.bits, r->q.group_size, n);
    }
    return rc;
}

static int inspect_text(gq_buf *b, const struct inspection *in, gq_err *e)
{
    const struct model_config *c = &in->cfg;
    gq_json *dyn = NULL;
    char *txt = NULL, shape[128];
    int rc;

    if ((rc = gq_buf_printf(b, e, "%s: %s, %d layers, hidden %d, intermediate %d, %d heads (%d kv), vocab %d, "
                            "dtype %s\n", in->dir, c->arch->name, c->num_layers, c->hidden_size,
                            c->intermediate_size, c->num_heads, c->num_kv_heads, c->vocab_size,
                            c->dtype[0] ? c->dtype : "unspecified")) < 0)
        goto done;
    if (!in->quantized) {
        rc = gq_buf_puts(b, "quantization: none (a float checkpoint)\n", e);
    } else {
        const struct model_gptq *g = &in->gptq;
        if ((rc = gq_buf_printf(b, e, "quantization: gptq, from %s%s\n  bits %d, group_size %d, desc_act %s, sym %s, "
                                "format %s\n", g->source, strcmp(g->source, "config.json") ? "" : " (quantization_config)",
                                g->bits, g->group_size, g->desc_act ? "true" : "false", g->sym ? "true" : "false",
                                pack_format_name(g->format))) < 0 ||
            (rc = gq_buf_printf(b, e, "  dynamic rules: %zu%s\n", dynamic_count(in->dynamic),
                                dynamic_count(in->dynamic) ? " (\"-:\" rules tried first, then the rest in order)" : "")) < 0 ||
            (rc = dynamic_to_json(&dyn, in->dynamic, e)) < 0)
            goto done;
        for (const gq_json *r = gq_json_first(dyn); r; r = gq_json_next(r)) {
            if (!(txt = gq_json_print(r, 0))) {
                rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory printing the dynamic rules");
                goto done;
            }
            rc = gq_buf_printf(b, e, "    %s  %s\n", gq_json_key(r), txt);
            gq_json_free_text(txt);
            txt = NULL;
            if (rc < 0)
                goto done;
        }
    }
    if (rc < 0)
        goto done;
    if (in->provenance) {
        if ((rc = gq_buf_puts(b, "provenance (quant_config.json):\n", e)) < 0)
            goto done;
        for (const gq_json *p = gq_json_first(in->provenance); p; p = gq_json_next(p)) {
            const char *sv = gq_json_string(p);
            if (!sv && !(txt = gq_json_print(p, 0))) {
                rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory printing the provenance");
                goto done;
            }
            rc = gq_buf_printf(b, e, "  %s: %s\n", gq_json_key(p), sv ? sv : txt);
            gq_json_free_text(txt);
            txt = NULL;
            if (rc < 0)
                goto done;
        }
    }
    if ((rc = gq_buf_printf(b, e, "linears: %zu (%zu packed, %zu float%s", in->nrows, in->npacked, in->nfloat,
                            in->nmissing ? ", " : ")\n")) < 0 ||
        (in->nmissing && (rc = gq_buf_printf(b, e, "%zu missing)\n", in->nmissing)) < 0) ||
        (rc = print_bit_counts(b, in, e)) < 0)
        goto done;
    for (size_t i = 0; i < in->nrows; i++) {
        const struct linear_row *r = &in->rows[i];
        /* the exceptions: float modules of a GPTQ checkpoint, missing ones, packed ones the config excludes */
        if ((r->stored == STORED_PACKED && r->q.bits) || (r->stored == STORED_FLOAT && !in->quantized))
            continue;
        if ((rc = gq_buf_printf(b, e, "  %s: %s%s\n", r->name, stored_name(r->stored),
                                r->stored == STORED_PACKED ? ", but the quantization config does not quantize it"
                                                           : "")) < 0)
            goto done;
    }
    if ((rc = gq_buf_printf(b, e, "tensors: %zu, %llu bytes\n", st_model_count(in->st),
                            (unsigned long long)st_model_total_bytes(in->st))) < 0)
        goto done;
    for (size_t i = 0; i < st_model_count(in->st); i++) {
        const struct st_tensor *t = st_model_tensor(in->st, i);
        shape_str(shape, sizeof(shape), t);
        if ((rc = gq_buf_printf(b, e, "  %-56s %-4s %s\n", t->name, st_dtype_name(t->dtype), shape)) < 0)
            goto done;
    }
    rc = in->valid ? gq_buf_puts(b, "check: ok\n", e) : gq_buf_printf(b, e, "check: FAILED: %s\n", in->error);
done:
    gq_json_free_text(txt);
    gq_json_free(dyn);
    return rc;
}

/* Add to obj, counting failures (each add frees what it is given on failure). */
static void jadd(int *bad, gq_json *obj, const char *key, gq_json *v)
{
    if (gq_json_append(obj, key, v) < 0)
        *bad = 1;
}

static int inspect_json(gq_buf *b, const struct inspection *in, gq_err *e)
{
    const struct model_config *c = &in->cfg;
    gq_json *root = gq_json_new_object(), *q = NULL, *lin = NULL, *mods = NULL, *tens = NULL, *dyn = NULL;
    char *txt = NULL;
    int bad = !root, rc = 0;

    if (bad)
        goto done;
    jadd(&bad, root, "dir", gq_json_new_string(in->dir));
    jadd(&bad, root, "architecture", gq_json_new_string(c->arch->name));
    jadd(&bad, root, "num_layers", gq_json_new_number(c->num_layers));
    jadd(&bad, root, "hidden_size", gq_json_new_number(c->hidden_size));
    jadd(&bad, root, "intermediate_size", gq_json_new_number(c->intermediate_size));
    jadd(&bad, root, "vocab_size", gq_json_new_number(c->vocab_size));
    jadd(&bad, root, "dtype", c->dtype[0] ? gq_json_new_string(c->dtype) : gq_json_new_null());
    if (in->quantized) {
        const struct model_gptq *g = &in->gptq;
        if ((rc = dynamic_to_json(&dyn, in->dynamic, e)) < 0)
            goto done;
        if (!(q = gq_json_new_object())) {
            bad = 1;
            goto done;
        }
        jadd(&bad, q, "quant_method", gq_json_new_string("gptq"));
        jadd(&bad, q, "source", gq_json_new_string(g->source));
        jadd(&bad, q, "bits", gq_json_new_number(g->bits));
        jadd(&bad, q, "group_size", gq_json_new_number(g->group_size));
        jadd(&bad, q, "desc_act", gq_json_new_bool(g->desc_act));
        jadd(&bad, q, "sym", gq_json_new_bool(g->sym));
        jadd(&bad, q, "format", gq_json_new_string(pack_format_name(g->format)));
        jadd(&bad, q, "dynamic", dyn);
        dyn = NULL;
        jadd(&bad, root, "quantization", q);
    } else {
        jadd(&bad, root, "quantization", gq_json_new_null());
    }
    jadd(&bad, root, "provenance", in->provenance ? gq_json_copy(in->provenance) : gq_json_new_null());
    if (!(lin = gq_json_new_object()) || !(mods = gq_json_new_array())) {
        bad = 1;
        goto done;
    }
    jadd(&bad, lin, "total", gq_json_new_number((double)in->nrows));
    jadd(&bad, lin, "quantized", gq_json_new_number((double)in->npacked));
    jadd(&bad, lin, "unquantized", gq_json_new_number((double)in->nfloat));
    jadd(&bad, lin, "missing", gq_json_new_number((double)in->nmissing));
    for (size_t i = 0; i < in->nrows && !bad; i++) {
        const struct linear_row *r = &in->rows[i];
        gq_json *o = gq_json_new_object();
        if (!o) {
            bad = 1;
            break;
        }
        jadd(&bad, o, "name", gq_json_new_string(r->name));
        jadd(&bad, o, "stored", gq_json_new_string(stored_name(r->stored)));
        if (r->stored == STORED_PACKED && in->quantized) {
            jadd(&bad, o, "bits", gq_json_new_number(r->q.bits));
            jadd(&bad, o, "group_size", gq_json_new_number(r->q.group_size));
            jadd(&bad, o, "desc_act", gq_json_new_bool(r->q.desc_act));
            jadd(&bad, o, "sym", gq_json_new_bool(r->q.sym));
        }
        if (gq_json_add(mods, NULL, o) < 0)
            bad = 1;
    }
    jadd(&bad, lin, "modules", mods);
    mods = NULL;
    jadd(&bad, root, "linears", lin);
    lin = NULL;
    if (bad || !(tens = gq_json_new_array())) {
        bad = 1;
        goto done;
    }
    for (size_t i = 0; i < st_model_count(in->st) && !bad; i++) {
        const struct st_tensor *t = st_model_tensor(in->st, i);
        gq_json *o = gq_json_new_object(), *shape = gq_json_new_array();
        if (!o || !shape) {
            gq_json_free(o);
            gq_json_free(shape);
            bad = 1;
            break;
        }
        for (int d = 0; d < t->ndim; d++)
            if (gq_json_add(shape, NULL, gq_json_new_number((double)t->shape[d])) < 0)
                bad = 1;
        jadd(&bad, o, "name", gq_json_new_string(t->name));
        jadd(&bad, o, "dtype", gq_json_new_string(st_dtype_name(t->dtype)));
        jadd(&bad, o, "shape", shape);
        if (gq_json_add(tens, NULL, o) < 0)
            bad = 1;
    }
    jadd(&bad, root, "tensors", tens);
    tens = NULL;
    jadd(&bad, root, "tensor_count", gq_json_new_number((double)st_model_count(in->st)));
    jadd(&bad, root, "total_bytes", gq_json_new_number((double)st_model_total_bytes(in->st)));
    jadd(&bad, root, "valid", gq_json_new_bool(in->valid));
    jadd(&bad, root, "error", in->valid ? gq_json_new_null() : gq_json_new_string(in->error));
    if (!bad && (!(txt = gq_json_print(root, 2)) || (rc = gq_buf_printf(b, e, "%s\n", txt)) < 0))
        bad = !txt;
done:
    if (bad && rc == 0)
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory printing the inspection");
    gq_json_free_text(txt);
    gq_json_free(dyn);
    gq_json_free(lin);
    gq_json_free(mods);
    gq_json_free(tens);
    gq_json_free(root);
    return rc;
}

static int cmd_inspect(int argc, char **argv)
{
    const char *dir = NULL;
    struct inspection in;
    gq_buf out = GQ_BUF_INIT;
    gq_err e = GQ_ERR_INIT;
    char what[300], q[128];
    int json = 0, rc;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(inspect_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            snprintf(what, sizeof(what), "unknown option '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(inspect_usage, what);
        } else if (!dir) {
            dir = a;
        } else {
            snprintf(what, sizeof(what), "unexpected argument '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(inspect_usage, what);
        }
    }
    if (!dir)
        return cli_usage_error(inspect_usage, "DIR is required");

    memset(&in, 0, sizeof(in));
    if ((rc = inspect_gather(&in, dir, &e)) < 0) {
        if (!strstr(e.msg, dir))
            gq_err_prefix(&e, "%s", dir);
        goto done;
    }
    if ((rc = json ? inspect_json(&out, &in, &e) : inspect_text(&out, &in, &e)) < 0)
        goto done;
    if (fwrite(out.ptr, 1, out.len, stdout) != out.len || fflush(stdout) != 0)
        rc = GQ_FAIL(&e, GQ_EIO, "cannot write the result: %s", strerror(errno));
    else if (!in.valid)
        rc = GQ_FAIL(&e, GQ_EINVAL, "%s", in.error);
done:
    inspection_free(&in);
    gq_buf_free(&out);
    if (rc < 0) {
        gq_log(GQ_LOG_ERROR, "%s", e.msg);
        return EXIT_RUNTIME;
    }
    return 0;
}

/* Open path for reading, "-" meaning stdin. */
static int open_input(FILE **out, const char *path, gq_err *e)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "cannot open %s: %s", path, strerror(errno));
    *out = f;
    return 0;
}

static void close_input(FILE *f)
{
    if (f && f != stdin)
        fclose(f);
}

/* The whole of path ("-" = stdin), as bytes, appended to b. */
static int read_all(gq_buf *b, const char *path, gq_err *e)
{
    FILE *f = NULL;
    char chunk[65536];
    size_t got;
    int rc;

    if ((rc = open_input(&f, path, e)) < 0)
        return rc;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if ((rc = gq_buf_append(b, chunk, got, e)) < 0)
            goto done;
    if (ferror(f))
        rc = GQ_FAIL(e, GQ_EIO, "cannot read %s: %s", path, strerror(errno));
done:
    close_input(f);
    return rc;
}

/*
 * Print one tokenization: the ids space-separated on a line (then the
 * decoded text, when there is one, on the next), or with json one line
 * {"ids": [...], "decoded": "..."} built and escaped by gq_json.
 */
static int print_tokens(const int32_t *ids, size_t n, const char *decoded, size_t decoded_len, int json,
                        gq_err *e)
{
    gq_buf line = GQ_BUF_INIT;
    gq_json *obj = NULL, *arr = NULL;
    char *txt = NULL;
    int rc = 0;

    if (json) {
        if (!(obj = gq_json_new_object()) || !(arr = gq_json_new_array())) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory printing %zu ids", n);
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            if (gq_json_add(arr, NULL, gq_json_new_number(ids[i])) < 0) {
                rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory printing %zu ids", n);
                goto done;
            }
        rc = gq_json_append(obj, "ids", arr);
        arr = NULL; /* owned by obj, or freed, either way */
        /* gq_json strings end at NUL; a decoded text holding one is cut there */
        if (rc == 0 && decoded)
            rc = gq_json_append(obj, "decoded", gq_json_new_string(decoded));
        if (rc < 0 || !(txt = gq_json_print(obj, 0))) {
            rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory printing %zu ids", n);
            goto done;
        }
        if ((rc = gq_buf_printf(&line, e, "%s\n", txt)) < 0)
            goto done;
    } else {
        for (size_t i = 0; i < n; i++)
            if ((rc = gq_buf_printf(&line, e, i ? " %d" : "%d", (int)ids[i])) < 0)
                goto done;
        if ((rc = gq_buf_append(&line, "\n", 1, e)) < 0)
            goto done;
        if (decoded && ((rc = gq_buf_append(&line, decoded, decoded_len, e)) < 0 ||
                        (rc = gq_buf_append(&line, "\n", 1, e)) < 0))
            goto done;
    }
    if (fwrite(line.ptr, 1, line.len, stdout) != line.len)
        rc = GQ_FAIL(e, GQ_EIO, "cannot write the result: %s", strerror(errno));
done:
    gq_json_free_text(txt);
    gq_json_free(arr);
    gq_json_free(obj);
    gq_buf_free(&line);
    return rc;
}

/* Encode len bytes of text (and decode them back when asked), then print. */
static int tokenize_one(const tokenizer *t, const char *text, size_t len, int add_special, int decode, int json,
                        gq_err *e)
{
    int32_t *ids = NULL;
    char *decoded = NULL;
    size_t n = 0, decoded_len = 0;
    int rc;

    if ((rc = tokenizer_encode(&ids, &n, t, text, len, add_special, e)) < 0)
        goto done;
    if (decode && (rc = tokenizer_decode(&decoded, &decoded_len, t, ids, n, 0, e)) < 0)
        goto done;
    rc = print_tokens(ids, n, decoded, decoded_len, json, e);
done:
    gq_free(ids);
    gq_free(decoded);
    return rc;
}

/*
 * --jsonl: one JSON result line per non-empty input line of f (name is
 * for messages).  The first bad line stops it with an error naming it.
 */
static int tokenize_jsonl(const tokenizer *t, FILE *f, const char *name, int add_special, int decode, gq_err *e)
{
    char *line = NULL; /* getline's buffer: malloc'd, released with free */
    size_t cap = 0, lineno = 0;
    ssize_t got;
    int rc = 0;

    while ((got = getline(&line, &cap, f)) >= 0) {
        gq_json *j = NULL;
        const char *text;
        size_t k = 0;

        lineno++;
        while (k < (size_t)got && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n'))
            k++;
        if (k == (size_t)got)
            continue;
        if ((rc = gq_json_parse(&j, line, (size_t)got, e)) < 0) {
            gq_err_prefix(e, "%s line %zu", name, lineno);
            goto done;
        }
        text = gq_json_string(j) ? gq_json_string(j) : gq_json_string(gq_json_get(j, "text"));
        if (!text)
            rc = GQ_FAIL(e, GQ_EINVAL, "%s line %zu: want a JSON string or an object with a \"text\" string",
                         name, lineno);
        else if ((rc = tokenize_one(t, text, strlen(text), add_special, decode, 1, e)) < 0)
            gq_err_prefix(e, "%s line %zu", name, lineno);
        gq_json_free(j);
        if (rc < 0)
            goto done;
    }
    if (ferror(f))
        rc = GQ_FAIL(e, GQ_EIO, "cannot read %s: %s", name, strerror(errno));
done:
    free(line);
    return rc;
}

static int cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL, *text = NULL, *file = NULL, *jsonl = NULL;
    int add_special = 1, decode = 0, json = 0, inputs = 0, rc;
    tokenizer *t = NULL;
    gq_buf input = GQ_BUF_INIT;
    FILE *lines = NULL;
    gq_err e = GQ_ERR_INIT;
    char what[300], q[128];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(tokenize_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--no-special")) {
            add_special = 0;
        } else if (!strcmp(a, "--decode")) {
            decode = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--text") || !strcmp(a, "--file") || !strcmp(a, "--jsonl")) {
            if (i + 1 >= argc) {
                snprintf(what, sizeof(what), "%s needs a value", a);
                return cli_usage_error(tokenize_usage, what);
            }
            i++;
            inputs++;
            if (!strcmp(a, "--text"))
                text = argv[i];
            else if (!strcmp(a, "--file"))
                file = argv[i];
            else
                jsonl = argv[i];
        } else if (a[0] == '-' && a[1]) {
            snprintf(what, sizeof(what), "unknown option '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(tokenize_usage, what);
        } else if (!path) {
            path = a;
        } else {
            snprintf(what, sizeof(what), "unexpected argument '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(tokenize_usage, what);
        }
    }
    if (!path)
        return cli_usage_error(tokenize_usage, "PATH is required");
    if (inputs == 0)
        return cli_usage_error(tokenize_usage, "one of --text, --file or --jsonl is required");
    if (inputs > 1)
        return cli_usage_error(tokenize_usage, "give only one of --text, --file and --jsonl");

    /* the input first: a missing file should not wait for a large tokenizer to load */
    if (file && (rc = read_all(&input, file, &e)) < 0)
        goto done;
    if (jsonl && (rc = open_input(&lines, jsonl, &e)) < 0)
        goto done;
    if ((rc = tokenizer_load_dir(&t, path, &e)) < 0) {
        if (!strstr(e.msg, path))
            gq_err_prefix(&e, "%s", path);
        goto done;
    }
    if (jsonl)
        rc = tokenize_jsonl(t, lines, strcmp(jsonl, "-") ? jsonl : "<stdin>", add_special, decode, &e);
    else if (file)
        rc = tokenize_one(t, input.len ? input.ptr : "", input.len, add_special, decode, json, &e);
    else
        rc = tokenize_one(t, text, strlen(text), add_special, decode, json, &e);
    if (rc == 0 && fflush(stdout) != 0)
        rc = GQ_FAIL(&e, GQ_EIO, "cannot write the result: %s", strerror(errno));
done:
    close_input(lines);
    tokenizer_free(t);
    gq_buf_free(&input);
    if (rc < 0) {
        gq_log(GQ_LOG_ERROR, "%s", e.msg);
        return EXIT_RUNTIME;
    }
    return 0;
}

static const struct command commands[] = {
    {"quantize", cmd_quantize, "GPTQ-quantize a model into a GPTQ checkpoint", quantize_usage},
    {"download", cmd_download, "pin a Hub repo at a commit and fetch its model files into the cache",
     download_usage},
    {"eval", cmd_eval, "perplexity of a model (float or GPTQ) on token blocks or texts", eval_usage},
    {"inspect", cmd_inspect, "what a checkpoint holds: quantization config, provenance, tensors", inspect_usage},
    {"tokenize", cmd_tokenize, "token ids of a text, as the model's tokenizer gives them", tokenize_usage},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: gptq COMMAND [ARGS]    (gptq COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nOpenBLAS: when it picks generic kernels on a CPU it does not know, gptq\n"
                 "re-executes itself once with OPENBLAS_CORETYPE set to what the CPU runs\n"
                 "(SkylakeX or Haswell); a set OPENBLAS_CORETYPE is kept, GQ_BLAS_KEEP=1 turns\n"
                 "this off.\n");
    fprintf(out, "\nexit status: 0 ok, 1 runtime error, 2 usage error\n");
}

int main(int argc, char **argv)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    char q[128];

    blas_env_select();   /* may re-execute with OPENBLAS_CORETYPE set */
    gq_log_setup(GQ_LOG_INFO, 0, "gptq");
    if (argc < 2) {
        gq_log(GQ_LOG_ERROR, "no command given");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        /* gptq help COMMAND: that command's usage */
        for (size_t i = 0; argc > 2 && i < sizeof(commands) / sizeof(commands[0]); i++)
            if (!strcmp(argv[2], commands[i].name)) {
                fputs(commands[i].usage, stdout);
                return 0;
            }
        usage(stdout);
        return 0;
    }
    openblas_set_num_threads(cpus > 0 && cpus < INT_MAX ? (int)cpus : 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    gq_log(GQ_LOG_ERROR, "unknown command '%s'", gq_err_quote(q, sizeof(q), argv[1]));
    usage(stderr);
    return EXIT_USAGE;
}
