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
 * Subcommands today: eval.  quantize, tokenize and inspect join the table
 * as the pipeline, the tokenizer and the checkpoint reader land.
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

#include "log.h"
#include "mem.h"
#include "model.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    const char *usage;
};

static const char eval_usage[] =
    "usage: gptq eval MODEL_DIR --blocks FILE.i32 --seqlen N [--batch N] [--json]\n"
    "\n"
    "Perplexity of a full-precision model on blocks of token ids, computed in\n"
    "float32 as transformers computes it: FILE.i32 holds little-endian int32\n"
    "ids, its length a multiple of N; each block of N ids is one sequence, and\n"
    "perplexity = exp(mean next-token negative log-likelihood over the N-1\n"
    "predicted positions of every block).\n"
    "\n"
    "  MODEL_DIR        a Hugging Face checkpoint: config.json and safetensors\n"
    "  --blocks FILE    token ids (int32, little-endian)\n"
    "  --seqlen N       tokens per block (at least 2)\n"
    "  --batch N        blocks per forward batch (default 8; memory grows with it)\n"
    "  --json           print {\"ppl\": P, \"tokens\": T} instead of text\n"
    "  -h, --help       this text\n"
    "\n"
    "Prints \"perplexity P over T tokens\", T being the number of predicted\n"
    "positions (blocks * (N - 1)).\n"
    "\n"
    "exit status: 0 ok, 1 runtime error, 2 usage error\n";

/* Print "gptq: error: <what>" and the usage; EXIT_USAGE. */
static int usage_error(const char *usage, const char *what)
{
    gq_log(GQ_LOG_ERROR, "%s", what);
    fprintf(stderr, "\n%s", usage);
    return EXIT_USAGE;
}

/* A positive decimal integer that fits an int (1..INT_MAX), or -1. */
static int parse_count(size_t *out, const char *s)
{
    char *end;
    long long v;

    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end || v < 1 || v > INT_MAX)
        return -1;
    *out = (size_t)v;
    return 0;
}

/* Read a whole file of little-endian int32 ids. */
static int read_ids(int32_t **out, size_t *n, const char *path, gq_err *e)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    int32_t *ids = NULL;
    size_t count;
    int rc = 0;

    if (!f)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "cannot open %s: %s", path,
                       strerror(errno));
    if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s is not a regular file", path);
        goto done;
    }
    if (st.st_size % 4) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: size %lld is not a multiple of 4 (int32 ids)", path,
                     (long long)st.st_size);
        goto done;
    }
    count = (size_t)st.st_size / 4;
    if (count && !(ids = gq_mallocn(count, sizeof(int32_t)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory reading %s (%zu ids)", path, count);
        goto done;
    }
    if (count && fread(ids, sizeof(int32_t), count, f) != count) {
        rc = GQ_FAIL(e, GQ_EIO, "short read on %s", path);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        /* the file is little-endian; this is a no-op on little-endian hosts */
        const unsigned char *b = (const unsigned char *)&ids[i];
        ids[i] = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                           (uint32_t)b[3] << 24);
    }
    *out = ids;
    ids = NULL;
    *n = count;
done:
    fclose(f);
    gq_free(ids);
    return rc;
}

static int cmd_eval(int argc, char **argv)
{
    const char *dir = NULL, *blocks = NULL;
    size_t seqlen = 0, batch = 8, n = 0, count = 0;
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
        } else if (!strcmp(a, "--blocks") || !strcmp(a, "--seqlen") || !strcmp(a, "--batch")) {
            if (i + 1 >= argc) {
                snprintf(what, sizeof(what), "%s needs a value", a);
                return usage_error(eval_usage, what);
            }
            i++;
            if (!strcmp(a, "--blocks")) {
                blocks = argv[i];
            } else if (parse_count(!strcmp(a, "--seqlen") ? &seqlen : &batch, argv[i]) < 0) {
                snprintf(what, sizeof(what), "%s must be a positive integer (got '%s')", a,
                         gq_err_quote(q, sizeof(q), argv[i]));
                return usage_error(eval_usage, what);
            }
        } else if (a[0] == '-' && a[1]) {
            snprintf(what, sizeof(what), "unknown option '%s'", gq_err_quote(q, sizeof(q), a));
            return usage_error(eval_usage, what);
        } else if (!dir) {
            dir = a;
        } else {
            snprintf(what, sizeof(what), "unexpected argument '%s'", gq_err_quote(q, sizeof(q), a));
            return usage_error(eval_usage, what);
        }
    }
    if (!dir)
        return usage_error(eval_usage, "MODEL_DIR is required");
    if (!blocks)
        return usage_error(eval_usage, "--blocks is required");
    if (!seqlen)
        return usage_error(eval_usage, "--seqlen is required");
    if (seqlen < 2)
        return usage_error(eval_usage, "--seqlen must be at least 2");

    if ((rc = read_ids(&ids, &n, blocks, &e)) < 0)
        goto done;
    if (n == 0 || n % seqlen) {
        rc = GQ_FAIL(&e, GQ_EINVAL, "%s holds %zu ids, not a positive multiple of --seqlen %zu",
                     blocks, n, seqlen);
        goto done;
    }
    if ((rc = model_open(&m, dir, &e)) < 0) {
        if (!strstr(e.msg, dir))
            gq_err_prefix(&e, "%s", dir);
        goto done;
    }
    if ((rc = model_nll(&nll, &count, m, ids, n / seqlen, seqlen, batch, &e)) < 0)
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

static const struct command commands[] = {
    {"eval", cmd_eval, "perplexity of a model on blocks of token ids", eval_usage},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: gptq COMMAND [ARGS]    (gptq COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nexit status: 0 ok, 1 runtime error, 2 usage error\n");
}

int main(int argc, char **argv)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    char q[128];

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
