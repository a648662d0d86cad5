/*
 * cli.c - `gptq`, the command-line face of the engine.
 *
 * A table of subcommands, each a function over argc/argv that returns the
 * process exit status: 0 success, 1 runtime error (bad model, I/O, numeric
 * failure), 2 usage error.  Errors are printed as "gptq: error: ...".
 * The BLAS thread count is set once here, before any work: every online
 * core (core/ never changes it).
 *
 * Subcommands today: eval.  quantize, tokenize and inspect join the table
 * as the pipeline, tokenizer and checkpoint reader land.
 */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "model.h"

#define EXIT_USAGE 2

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
};

static const char eval_usage[] =
    "usage: gptq eval MODEL_DIR --blocks FILE.i32 --seqlen N [--batch N] [--json]\n"
    "\n"
    "Perplexity of a full-precision model on blocks of token ids: FILE.i32 holds\n"
    "little-endian int32 ids, its length a multiple of N; each block of N tokens\n"
    "is one sequence.  perplexity = exp(mean next-token negative log-likelihood\n"
    "over the N-1 predicted positions of every block), as transformers computes it.\n"
    "\n"
    "  --blocks FILE   token ids (int32, little-endian)\n"
    "  --seqlen N      tokens per block (>= 2)\n"
    "  --batch N       blocks per forward batch (default 8)\n"
    "  --json          print {\"ppl\": P, \"tokens\": T} (T = predicted positions)\n"
    "\n"
    "exit status: 0 ok, 1 error, 2 usage error\n";

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "gptq: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage);
    return EXIT_USAGE;
}

static int parse_size(size_t *out, const char *s)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *out = (size_t)v;
    return 0;
}

/* Read a whole file of int32 ids. */
static int read_ids(int32_t **out, size_t *n, const char *path, gq_err *e)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    int32_t *ids;

    if (!f)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "cannot open %s: %s", path,
                       strerror(errno));
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return GQ_FAIL(e, GQ_EINVAL, "%s is not a regular file", path);
    }
    if (st.st_size % 4) {
        fclose(f);
        return GQ_FAIL(e, GQ_EINVAL, "%s: size %lld is not a multiple of 4 (int32 ids)", path,
                       (long long)st.st_size);
    }
    ids = gq_malloc((size_t)st.st_size);
    if (!ids) {
        fclose(f);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory reading %s", path);
    }
    if (fread(ids, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        fclose(f);
        gq_free(ids);
        return GQ_FAIL(e, GQ_EIO, "short read on %s", path);
    }
    fclose(f);
    *out = ids;
    *n = (size_t)st.st_size / 4;
    return 0;
}

static int cmd_eval(int argc, char **argv)
{
    const char *dir = NULL, *blocks = NULL;
    size_t seqlen = 0, batch = 8, n = 0, count = 0;
    int json = 0, rc;
    int32_t *ids = NULL;
    model *m = NULL;
    double nll = 0.0;
    gq_err e = GQ_ERR_INIT;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(eval_usage, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--blocks") || !strcmp(a, "--seqlen") || !strcmp(a, "--batch")) {
            if (i + 1 >= argc)
                return usage_error(eval_usage, "%s needs a value", a);
            if (!strcmp(a, "--blocks")) {
                blocks = argv[++i];
            } else if (parse_size(!strcmp(a, "--seqlen") ? &seqlen : &batch, argv[++i]) < 0) {
                return usage_error(eval_usage, "bad number '%s'", argv[i]);
            }
        } else if (a[0] == '-') {
            return usage_error(eval_usage, "unknown option '%s'", a);
        } else if (!dir) {
            dir = a;
        } else {
            return usage_error(eval_usage, "unexpected argument '%s'", a);
        }
    }
    if (!dir)
        return usage_error(eval_usage, "%s", "MODEL_DIR is required");
    if (!blocks)
        return usage_error(eval_usage, "%s", "--blocks is required");
    if (seqlen < 2)
        return usage_error(eval_usage, "%s", "--seqlen N is required and must be at least 2");
    if (batch == 0)
        return usage_error(eval_usage, "%s", "--batch must be positive");

    if ((rc = read_ids(&ids, &n, blocks, &e)) < 0)
        goto done;
    if (n == 0 || n % seqlen) {
        rc = GQ_FAIL(&e, GQ_EINVAL, "%s holds %zu ids, not a positive multiple of --seqlen %zu",
                     blocks, n, seqlen);
        goto done;
    }
    if ((rc = model_open(&m, dir, &e)) < 0)
        goto done;
    if ((rc = model_nll(&nll, &count, m, ids, n / seqlen, seqlen, batch, &e)) < 0)
        goto done;
    if (json)
        printf("{\"ppl\": %.6f, \"tokens\": %zu}\n", exp(nll / (double)count), count);
    else
        printf("perplexity %.4f over %zu predicted tokens\n", exp(nll / (double)count), count);
done:
    model_close(m);
    gq_free(ids);
    if (rc < 0) {
        gq_log(GQ_LOG_ERROR, "%s", e.msg);
        return 1;
    }
    return 0;
}

static const struct command commands[] = {
    {"eval", cmd_eval, "perplexity of a model on token-id blocks"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: gptq COMMAND [ARGS]   (gptq COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nexit status: 0 ok, 1 error, 2 usage error\n");
}

int main(int argc, char **argv)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    gq_log_setup(GQ_LOG_INFO, 0, "gptq");
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    openblas_set_num_threads(cpus > 0 ? (int)cpus : 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "gptq: error: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
