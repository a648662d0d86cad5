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
 * Subcommands today: eval, tokenize.  quantize and inspect join the table
 * as the pipeline and the checkpoint reader land.
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

#include "buf.h"
#include "json.h"
#include "cli.h"
#include "log.h"
#include "mem.h"
#include "model.h"
#include "tokenizer.h"

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
                return usage_error(tokenize_usage, what);
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
            return usage_error(tokenize_usage, what);
        } else if (!path) {
            path = a;
        } else {
            snprintf(what, sizeof(what), "unexpected argument '%s'", gq_err_quote(q, sizeof(q), a));
            return usage_error(tokenize_usage, what);
        }
    }
    if (!path)
        return usage_error(tokenize_usage, "PATH is required");
    if (inputs == 0)
        return usage_error(tokenize_usage, "one of --text, --file or --jsonl is required");
    if (inputs > 1)
        return usage_error(tokenize_usage, "give only one of --text, --file and --jsonl");

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
    {"eval", cmd_eval, "perplexity of a model on blocks of token ids", eval_usage},
    {"tokenize", cmd_tokenize, "token ids of a text, as the model's tokenizer gives them", tokenize_usage},
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
