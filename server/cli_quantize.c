/*
 * cli_quantize.c - `gptq quantize`: the whole job without the daemon
 * (calibration, sequential GPTQ, the checkpoint, optional evaluation and
 * perplexity gate).  Registered in cli.c's command table.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib.h"
#include "checkpoint.h"
#include "cli.h"
#include "dynamic.h"
#include "json.h"
#include "log.h"
#include "mem.h"
#include "model.h"
#include "pipeline.h"
#include "tokenizer.h"

#define EXIT_GATE 3

const char quantize_usage[] =
    "usage: gptq quantize SRC --out DIR (--calib FILE | --calib-ids FILE.i32) [options]\n"
    "\n"
    "Quantize the model SRC with GPTQ, layer by layer, and write a GPTQ checkpoint\n"
    "to DIR (which must not exist; it appears only when complete).  SRC is a local\n"
    "Hugging Face directory (config.json, safetensors, tokenizer.json) or, when no\n"
    "such directory exists, a Hub repo id (org/name): pinned to its commit sha and\n"
    "downloaded into the huggingface_hub cache first, as `gptq download` does (see\n"
    "its --help for the HF_* environment); the sha is recorded as the source revision.\n"
    "\n"
    "Source (Hub repos only):\n"
    "  --revision R         branch, tag or 40-hex commit (default main)\n"
    "  --cache-dir DIR      the Hub cache (default $HF_HUB_CACHE or $HF_HOME/hub)\n"
    "  --offline            use the cache only (also HF_HUB_OFFLINE=1)\n"
    "\n"
    "Quantization:\n"
    "  --bits N             2, 3, 4 or 8 (default 4)\n"
    "  --group-size N       columns per group, or -1 for one group per row (default 128)\n"
    "  --desc-act           act-order: columns by descending Hessian diagonal\n"
    "  --static-groups      group parameters fixed before the updates\n"
    "  --sym | --asym       symmetric (default; loads everywhere) or asymmetric zero points\n"
    "  --damp F             damp_percent, 0 < F < 1 (default 0.01; raised automatically\n"
    "                       by 0.0025 while the Hessian is not positive definite)\n"
    "  --block-size N       lazy-batch block width (default 128)\n"
    "  --mse                search each group's clipping range (grid 100, shrink 0.8, norm 2.4)\n"
    "  --no-true-sequential quantize a layer's seven Linears from one pass\n"
    "  --format F           gptq (default, v1 zero points) or gptq_v2\n"
    "  --dynamic JSON       per-module overrides, GPTQModel's grammar, e.g.\n"
    "                       '{\"-:.*down_proj\": {}, \"+:.*\\\\.0\\\\..*\": {\"bits\": 8}}'\n"
    "  --shard-size BYTES   largest safetensors shard (default 4000000000; 0 = one file)\n"
    "\n"
    "Calibration (texts are never written into the output):\n"
    "  --calib FILE         texts: JSONL with a \"text\" field, or plain text; joined\n"
    "                       with blank lines, tokenized once without special tokens\n"
    "  --calib-ids FILE     int32 little-endian token ids, sampled the same way\n"
    "  --calib-samples N    windows (default 128)\n"
    "  --calib-seqlen N     tokens per window (default 2048, capped by the model)\n"
    "  --seed N             window sampling seed (default 0)\n"
    "\n"
    "Evaluation (optional):\n"
    "  --eval-blocks FILE   int32 token blocks: perplexity before and after\n"
    "  --eval-seqlen N      tokens per eval block (default: --calib-seqlen)\n"
    "  --max-ppl-ratio F    gate: fail (exit 3) when quantized / original > F;\n"
    "                       the checkpoint is kept, and eval.json says so\n"
    "\n"
    "  --json               one JSON summary on stdout instead of text\n"
    "  -h, --help           this text\n"
    "\n"
    "Progress goes to stderr: a bar on a terminal, a line per layer otherwise.\n"
    "Ctrl-C cancels cleanly (nothing is left at DIR).\n"
    "\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error, 3 perplexity gate failed\n";

static atomic_bool interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    atomic_store(&interrupted, 1);
}

struct progress_state {
    int tty;
    int last_layer;
};

static void on_progress(const struct quantize_progress *p, void *payload)
{
    struct progress_state *ps = payload;
    if (ps->tty) {
        int width = 30, fill = (int)(p->fraction * width + 0.5);
        fprintf(stderr, "\r[%.*s%*s] %3.0f%% layer %d/%d  %-40.40s ETA %4.0fs ", fill,
                "==============================", width - fill, "", p->fraction * 100.0, p->layer + 1, p->layers,
                p->module ? p->module : "", p->eta_seconds < 0 ? 0.0 : p->eta_seconds);
        if (p->stage == QSTAGE_DONE)
            fputc('\n', stderr);
        fflush(stderr);
    } else if (p->stage == QSTAGE_WRITING && p->layer != ps->last_layer) {
        ps->last_layer = p->layer;
        fprintf(stderr, "gptq: layer %d/%d quantized (%.0f%%, %.1fs elapsed, ETA %.0fs)\n", p->layer + 1, p->layers,
                p->fraction * 100.0, p->elapsed, p->eta_seconds < 0 ? 0.0 : p->eta_seconds);
    }
}

static int eval_ppl(double *ppl, const char *dir, const int32_t *ids, size_t n, size_t seqlen, gq_err *e)
{
    model *m = NULL;
    double nll = 0;
    size_t count = 0;
    int rc;
    if (n < seqlen || seqlen < 2)
        return GQ_FAIL(e, GQ_EINVAL, "the eval blocks hold %zu ids, less than one block of %zu", n, seqlen);
    if ((rc = model_open(&m, dir, e)) == 0)
        rc = model_nll(&nll, &count, m, ids, n / seqlen, seqlen, 8, e);
    model_close(m);
    if (rc == 0)
        *ppl = exp(nll / (double)count);
    return rc;
}

int cmd_quantize(int argc, char **argv)
{
    const char *src = NULL, *out = NULL, *calib_path = NULL, *calib_ids = NULL, *dynamic_text = NULL;
    const char *eval_path = NULL, *format = "gptq", *revision = NULL, *cache_dir = NULL;
    size_t nsamples = 128, seqlen = 2048, eval_seqlen = 0, v;
    unsigned long long seed = 0, shard = 4000000000ull;
    double max_ratio = 0, ppl_before = NAN, ppl_after = NAN;
    int json = 0, rc = 0, gate_failed = 0, seqlen_given = 0, offline = 0;
    struct cli_source source;
    char reason[32] = "";
    struct quantize_options opt;
    struct quantize_report rep;
    struct calib cal;
    struct progress_state ps = {isatty(2), -1};
    dynamic_rules *dyn = NULL;
    gq_json *dynj = NULL, *ev = NULL, *sum = NULL;
    char *text = NULL;
    tokenizer *tok = NULL;
    model *m = NULL;
    char **texts = NULL;
    size_t ntexts = 0, neval = 0, nids = 0;
    int32_t *eval_ids = NULL, *ids = NULL;
    gq_err e = GQ_ERR_INIT;
    char what[300], q[128];
    struct sigaction sa;

    memset(&rep, 0, sizeof(rep));
    memset(&cal, 0, sizeof(cal));
    quantize_options_default(&opt);
    opt.gptq.q.sym = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(quantize_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--desc-act")) {
            opt.gptq.desc_act = 1, takes = 0;
        } else if (!strcmp(a, "--static-groups")) {
            opt.gptq.static_groups = 1, takes = 0;
        } else if (!strcmp(a, "--sym") || !strcmp(a, "--asym")) {
            opt.gptq.q.sym = a[2] == 's', takes = 0;
        } else if (!strcmp(a, "--mse")) {
            opt.gptq.q.mse = 1, takes = 0;
        } else if (!strcmp(a, "--no-true-sequential")) {
            opt.true_sequential = 0, takes = 0;
        } else if (!strcmp(a, "--json")) {
            json = 1, takes = 0;
        } else if (!strcmp(a, "--offline")) {
            offline = 1, takes = 0;
        } else if (a[0] == '-' && a[1] && !val) {
            snprintf(what, sizeof(what), "%s needs a value (or is unknown)", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(quantize_usage, what);
        } else if (!strcmp(a, "--out")) {
            out = val;
        } else if (!strcmp(a, "--revision")) {
            revision = val;
        } else if (!strcmp(a, "--cache-dir")) {
            cache_dir = val;
        } else if (!strcmp(a, "--calib")) {
            calib_path = val;
        } else if (!strcmp(a, "--calib-ids")) {
            calib_ids = val;
        } else if (!strcmp(a, "--dynamic")) {
            dynamic_text = val;
        } else if (!strcmp(a, "--eval-blocks")) {
            eval_path = val;
        } else if (!strcmp(a, "--format")) {
            format = val;
        } else if (!strcmp(a, "--bits") || !strcmp(a, "--block-size") || !strcmp(a, "--calib-samples") ||
                   !strcmp(a, "--calib-seqlen") || !strcmp(a, "--eval-seqlen")) {
            if (cli_parse_count(&v, val) < 0) {
                snprintf(what, sizeof(what), "%s must be a positive integer (got '%s')", a, gq_err_quote(q, sizeof(q), val));
                return cli_usage_error(quantize_usage, what);
            }
            if (!strcmp(a, "--bits"))
                opt.gptq.q.bits = (int)v;
            else if (!strcmp(a, "--block-size"))
                opt.gptq.block_size = (int)v;
            else if (!strcmp(a, "--calib-samples"))
                nsamples = v;
            else if (!strcmp(a, "--calib-seqlen"))
                seqlen = v, seqlen_given = 1;
            else
                eval_seqlen = v;
        } else if (!strcmp(a, "--group-size")) {
            if (!strcmp(val, "-1"))
                opt.gptq.group_size = -1;
            else if (cli_parse_count(&v, val) == 0)
                opt.gptq.group_size = (int)v;
            else {
                snprintf(what, sizeof(what), "--group-size must be -1 or a positive integer (got '%s')",
                         gq_err_quote(q, sizeof(q), val));
                return cli_usage_error(quantize_usage, what);
            }
        } else if (!strcmp(a, "--damp") || !strcmp(a, "--max-ppl-ratio")) {
            char *end;
            double d;
            errno = 0;
            d = strtod(val, &end);
            if (errno || *end || !(d > 0) || (!strcmp(a, "--damp") && d >= 1)) {
                snprintf(what, sizeof(what), "%s must be a number %s (got '%s')", a,
                         !strcmp(a, "--damp") ? "in (0, 1)" : "> 0", gq_err_quote(q, sizeof(q), val));
                return cli_usage_error(quantize_usage, what);
            }
            if (!strcmp(a, "--damp"))
                opt.gptq.damp_percent = d;
            else
                max_ratio = d;
        } else if (!strcmp(a, "--seed") || !strcmp(a, "--shard-size")) {
            char *end;
            unsigned long long u;
            errno = 0;
            u = strtoull(val, &end, 10);
            if (errno || *end || *val < '0' || *val > '9') {
                snprintf(what, sizeof(what), "%s must be a non-negative integer (got '%s')", a,
                         gq_err_quote(q, sizeof(q), val));
                return cli_usage_error(quantize_usage, what);
            }
            if (!strcmp(a, "--seed"))
                seed = u;
            else
                shard = u;
        } else if (a[0] == '-' && a[1]) {
            snprintf(what, sizeof(what), "unknown option '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(quantize_usage, what);
        } else if (!src) {
            src = a, takes = 0;
        } else {
            snprintf(what, sizeof(what), "unexpected argument '%s'", gq_err_quote(q, sizeof(q), a));
            return cli_usage_error(quantize_usage, what);
        }
        i += takes;
    }
    if (!src)
        return cli_usage_error(quantize_usage, "SRC is required");
    if (!out)
        return cli_usage_error(quantize_usage, "--out is required");
    if (!calib_path == !calib_ids)
        return cli_usage_error(quantize_usage, "give one of --calib and --calib-ids");
    if (opt.gptq.q.bits != 2 && opt.gptq.q.bits != 3 && opt.gptq.q.bits != 4 && opt.gptq.q.bits != 8)
        return cli_usage_error(quantize_usage, "--bits must be 2, 3, 4 or 8");
    if (strcmp(format, "gptq") != 0 && strcmp(format, "gptq_v2") != 0)
        return cli_usage_error(quantize_usage, "--format must be gptq or gptq_v2");
    if (max_ratio > 0 && !eval_path)
        return cli_usage_error(quantize_usage, "--max-ppl-ratio needs --eval-blocks");
    opt.format = !strcmp(format, "gptq_v2") ? PACK_GPTQ_V2 : PACK_GPTQ;
    opt.shard_bytes = shard;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if ((rc = cli_source_open(&source, src, revision, cache_dir, offline, json, &interrupted, reason,
                              sizeof(reason), &e)) < 0) {
        if (reason[0])
            gq_err_prefix(&e, "%s", reason);
        goto done;
    }
    opt.source_model_id = src;
    opt.source_revision = source.revision;
    src = source.dir;

    if (dynamic_text) {
        if ((rc = gq_json_parse(&dynj, dynamic_text, strlen(dynamic_text), &e)) < 0 ||
            (rc = dynamic_parse(&dyn, dynj, &e)) < 0) {
            gq_err_prefix(&e, "--dynamic");
            goto done;
        }
        opt.dynamic = dyn;
    }
    /* the calibration: seqlen capped by the model and the tokenizer */
    if ((rc = model_open(&m, src, &e)) < 0)
        goto done;
    {
        size_t cap = (size_t)model_config_of(m)->max_position_embeddings;
        if (cap && seqlen > cap) {
            if (seqlen_given)
                gq_log(GQ_LOG_WARN, "--calib-seqlen %zu capped to the model's %zu positions", seqlen, cap);
            seqlen = cap;
        }
    }
    model_close(m);
    m = NULL;
    if (calib_path) {
        if ((rc = tokenizer_load_dir(&tok, src, &e)) < 0 || (rc = calib_read_texts(&texts, &ntexts, calib_path, &e)) < 0)
            goto done;
        if (tokenizer_model_max_length(tok) && seqlen > tokenizer_model_max_length(tok))
            seqlen = tokenizer_model_max_length(tok);
        rc = calib_from_texts(&cal, tok, (const char *const *)texts, ntexts, nsamples, seqlen, seed, &e);
    } else {
        if ((rc = calib_read_ids(&ids, &nids, calib_ids, &e)) == 0)
            rc = calib_from_stream(&cal, ids, nids, nsamples, seqlen, seed, &e);
    }
    if (rc < 0)
        goto done;
    calib_texts_free(texts, ntexts);
    texts = NULL;
    if (!json)
        fprintf(stderr, "gptq: calibration %zu x %zu tokens (sha256 %.16s...)\n", cal.nsamples, cal.seqlen, cal.sha256);

    rc = quantize_model(&rep, src, out, &cal, &opt, on_progress, &ps, &interrupted, &e);
    if (rc < 0)
        goto done;

    if (eval_path) {
        if (!eval_seqlen)
            eval_seqlen = cal.seqlen;
        if ((rc = calib_read_ids(&eval_ids, &neval, eval_path, &e)) < 0 ||
            (rc = eval_ppl(&ppl_before, src, eval_ids, neval, eval_seqlen, &e)) < 0 ||
            (rc = eval_ppl(&ppl_after, out, eval_ids, neval, eval_seqlen, &e)) < 0)
            goto done;
        gate_failed = max_ratio > 0 && ppl_after / ppl_before > max_ratio;
        if (!(ev = gq_json_new_object()) ||
            gq_json_append(ev, "eval_tokens", gq_json_new_number((double)((neval / eval_seqlen) * (eval_seqlen - 1)))) ||
            gq_json_append(ev, "ppl_before", gq_json_new_number(ppl_before)) ||
            gq_json_append(ev, "ppl_after", gq_json_new_number(ppl_after)) ||
            gq_json_append(ev, "ppl_ratio", gq_json_new_number(ppl_after / ppl_before)) ||
            gq_json_append(ev, "max_ppl_ratio", max_ratio > 0 ? gq_json_new_number(max_ratio) : gq_json_new_null()) ||
            gq_json_append(ev, "gate", gq_json_new_string(max_ratio <= 0 ? "none" : gate_failed ? "failed" : "passed")) ||
            !(text = gq_json_print(ev, 2))) {
            rc = GQ_FAIL(&e, GQ_ENOMEM, "out of memory writing eval.json");
            goto done;
        }
        if ((rc = ckpt_write_file(out, "eval.json", text, strlen(text), &e)) < 0)
            goto done;
    }
    if (!(sum = gq_json_new_object()) || gq_json_append(sum, "out", gq_json_new_string(out)) ||
        gq_json_append(sum, "seconds", gq_json_new_number(rep.seconds)) ||
        gq_json_append(sum, "modules", gq_json_new_number((double)rep.nmodules)) ||
        gq_json_append(sum, "quantized", gq_json_new_number((double)rep.quantized)) ||
        gq_json_append(sum, "calibration_samples", gq_json_new_number((double)cal.nsamples)) ||
        gq_json_append(sum, "calibration_seq_len", gq_json_new_number((double)cal.seqlen)) ||
        gq_json_append(sum, "calibration_sha256", gq_json_new_string(cal.sha256)) ||
        (ev && gq_json_append(sum, "eval", gq_json_copy(ev)))) {
        rc = GQ_FAIL(&e, GQ_ENOMEM, "out of memory printing the summary");
        goto done;
    }
    if (json) {
        char *s = gq_json_print(sum, 0);
        if (!s) {
            rc = GQ_FAIL(&e, GQ_ENOMEM, "out of memory printing the summary");
            goto done;
        }
        printf("%s\n", s);
        gq_json_free_text(s);
    } else {
        printf("quantized %zu of %zu modules in %.1fs into %s\n", rep.quantized, rep.nmodules, rep.seconds, out);
        if (eval_path)
            printf("perplexity %.4f -> %.4f (x%.4f)%s\n", ppl_before, ppl_after, ppl_after / ppl_before,
                   max_ratio <= 0 ? "" : gate_failed ? ": GATE FAILED" : ": gate passed");
    }
    if (fflush(stdout) != 0)
        rc = GQ_FAIL(&e, GQ_EIO, "cannot write the result: %s", strerror(errno));
done:
    gq_json_free(ev);
    gq_json_free(sum);
    gq_json_free_text(text);
    calib_texts_free(texts, ntexts);
    calib_free(&cal);
    quantize_report_free(&rep);
    dynamic_free(dyn);
    gq_json_free(dynj);
    tokenizer_free(tok);
    model_close(m);
    gq_free(ids);
    gq_free(eval_ids);
    if (rc < 0) {
        if (ps.tty)
            fputc('\n', stderr);
        gq_log(GQ_LOG_ERROR, "%s", e.msg);
        return EXIT_RUNTIME;
    }
    if (gate_failed) {
        gq_log(GQ_LOG_ERROR, "perplexity gate failed: %.4f / %.4f = %.4f > %.4f", ppl_after, ppl_before,
               ppl_after / ppl_before, max_ratio);
        return EXIT_GATE;
    }
    return 0;
}
