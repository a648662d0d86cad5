/*
 * test_cli_tokenize.c - `gptq tokenize` (server/cli.c), run as a program
 * through $GPTQ_BIN (make test sets it; the cases skip without it).
 *
 * A small byte-level BPE tokenizer.json, whose ids are easy to work out by
 * hand (vocab a b ab Ġ Ġa Ċ, merges "a b" and "Ġ a", special <s> = 6
 * added by a TemplateProcessing post-processor), is written to a fresh
 * mkdtemp directory with a tokenizer_config.json that turns add_bos_token
 * off.  The CLI's output must be what the library API gives in-process
 * (tokenizer_load_dir, tokenizer_encode, tokenizer_decode) for the same
 * path and flags, and a few outputs are also checked against ids worked
 * out by hand (and confirmed with the tokenizers library, 0.23.2).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "json.h"
#include "mem.h"
#include "test.h"
#include "tokenizer.h"

static const char small_tokenizer[] =
    "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null,\n"
    " \"added_tokens\": [{\"id\": 6, \"content\": \"<s>\", \"single_word\": false, \"lstrip\": false,\n"
    "   \"rstrip\": false, \"normalized\": false, \"special\": true}],\n"
    " \"normalizer\": null,\n"
    " \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true,\n"
    "   \"use_regex\": true},\n"
    " \"post_processor\": {\"type\": \"TemplateProcessing\",\n"
    "   \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],\n"
    "   \"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}},\n"
    "     {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}],\n"
    "   \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [6], \"tokens\": [\"<s>\"]}}},\n"
    " \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n"
    " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, \"continuing_subword_prefix\": null,\n"
    "   \"end_of_word_suffix\": null, \"fuse_unk\": false, \"byte_fallback\": false,\n"
    "   \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"\\u0120\": 3, \"\\u0120a\": 4, \"\\u010a\": 5},\n"
    "   \"merges\": [\"a b\", \"\\u0120 a\"]}}\n";

/* transformers: add_bos_token false replaces the template, so the directory adds no <s> */
static const char small_config[] =
    "{\"tokenizer_class\": \"LlamaTokenizer\", \"add_bos_token\": false, \"add_eos_token\": false,\n"
    " \"bos_token\": \"<s>\", \"model_max_length\": 64}\n";

static char g_dir[64];      /* the mkdtemp directory: tokenizer.json + tokenizer_config.json */
static char g_json[128];    /* its tokenizer.json */
static const char *g_bin;

static char *tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", g_dir, name);
    return buf;
}

static int write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* The stderr a command left in g_dir/err. */
static const char *last_stderr(void)
{
    static char buf[4096];
    char path[160];
    char *s = test_read_file(tmp_path(path, sizeof(path), "err"), NULL);
    snprintf(buf, sizeof(buf), "%s", s ? s : "");
    free(s);
    return buf;
}

/*
 * What the library gives in-process: ids as the CLI's plain line, and with
 * decode the decoded text after it, as `gptq tokenize` prints them.
 */
static int api_plain(char *out, size_t cap, const char *path, const char *text, size_t len, int add_special,
                     int decode)
{
    tokenizer *t = NULL;
    int32_t *ids = NULL;
    char *dec = NULL;
    size_t n = 0, dlen = 0, k = 0;
    gq_err e = GQ_ERR_INIT;
    int rc;

    out[0] = '\0';
    if ((rc = tokenizer_load_dir(&t, path, &e)) == 0 &&
        (rc = tokenizer_encode(&ids, &n, t, text, len, add_special, &e)) == 0 && decode)
        rc = tokenizer_decode(&dec, &dlen, t, ids, n, 0, &e);
    CHECK_OK(rc, &e);
    for (size_t i = 0; rc == 0 && i < n && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, i ? " %d" : "%d", ids[i]);
    if (rc == 0 && k < cap)
        k += (size_t)snprintf(out + k, cap - k, "\n");
    if (rc == 0 && dec && k < cap)
        snprintf(out + k, cap - k, "%s\n", dec);
    gq_free(ids);
    gq_free(dec);
    tokenizer_free(t);
    return rc;
}

/* One JSON output line against the library: ids, and "decoded" when want_decoded. */
static void check_json_line(const char *line, size_t len, const char *path, const char *text, int add_special,
                            int want_decoded)
{
    gq_json *j = NULL;
    tokenizer *t = NULL;
    int32_t *ids = NULL;
    char *dec = NULL;
    size_t n = 0, dlen = 0, i = 0;
    gq_err e = GQ_ERR_INIT;
    const gq_json *arr;

    CHECK_OK(gq_json_parse(&j, line, len, &e), &e);
    CHECK_OK(tokenizer_load_dir(&t, path, &e), &e);
    if (!j || !t)
        goto done;
    CHECK_OK(tokenizer_encode(&ids, &n, t, text, strlen(text), add_special, &e), &e);
    CHECK_OK(tokenizer_decode(&dec, &dlen, t, ids, n, 0, &e), &e);
    arr = gq_json_get(j, "ids");
    CHECK_MSG(gq_json_type_of(arr) == GQ_JSON_ARRAY && gq_json_size(arr) == n, "ids of %.*s: %zu, want %zu",
              (int)len, line, gq_json_size(arr), n);
    for (const gq_json *x = gq_json_first(arr); x && i < n; x = gq_json_next(x), i++)
        CHECK_EQ_INT(gq_json_number(x), ids[i]);
    if (want_decoded)
        CHECK_MSG(dec && gq_json_string(gq_json_get(j, "decoded")) &&
                  !strcmp(gq_json_string(gq_json_get(j, "decoded")), dec),
                  "decoded of %.*s, want \"%s\"", (int)len, line, dec ? dec : "");
    else
        CHECK(gq_json_get(j, "decoded") == NULL);
done:
    gq_free(ids);
    gq_free(dec);
    tokenizer_free(t);
    gq_json_free(j);
}

/* --text, from the tokenizer.json file and from the model directory, both ways. */
static void test_cli_tokenize__text_matches_library(void)
{
    static const char *texts[] = {"ab a", "a a a b", "b<s>a", "", "ab  ab"};
    char cmd[1024], out[4096], want[4096];

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        for (int k = 0; k < 4; k++) {
            const char *path = k & 1 ? g_dir : g_json;
            int special = !(k & 2);
            snprintf(cmd, sizeof(cmd), "%s tokenize %s --text '%s'%s", g_bin, path, texts[i],
                     special ? "" : " --no-special");
            CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
            api_plain(want, sizeof(want), path, texts[i], strlen(texts[i]), special, 0);
            CHECK_MSG(!strcmp(out, want), "%s: got \"%s\", want \"%s\"", cmd, out, want);
        }
    /* worked out by hand: "ab" merges, " a" merges to Ġa, <s> = 6 from the template */
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --text 'ab a'", g_bin, g_json);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(!strcmp(out, "6 2 4\n"), "got \"%s\"", out);
    snprintf(cmd, sizeof(cmd), "%s tokenize --no-special %s --text 'ab a'", g_bin, g_json);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(!strcmp(out, "2 4\n"), "got \"%s\"", out);
    /* the directory's tokenizer_config.json turns <s> off */
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --text 'ab a'", g_bin, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(!strcmp(out, "2 4\n"), "got \"%s\"", out);
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --text ''", g_bin, g_json);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(!strcmp(out, "6\n"), "got \"%s\"", out);
}

/* --decode (a second line) and --json. */
static void test_cli_tokenize__decode_and_json(void)
{
    char cmd[1024], out[4096], want[4096];

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --text 'b<s>a' --decode", g_bin, g_json);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    api_plain(want, sizeof(want), g_json, "b<s>a", 5, 1, 1);
    CHECK_MSG(!strcmp(out, want), "got \"%s\", want \"%s\"", out, want);
    CHECK_MSG(!strcmp(out, "6 1 6 0\n<s>b<s>a\n"), "got \"%s\"", out);

    snprintf(cmd, sizeof(cmd), "%s tokenize %s --json --text 'ab a'", g_bin, g_json);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(strchr(out, '\n') == out + strlen(out) - 1, "one line: \"%s\"", out);
    check_json_line(out, strlen(out), g_json, "ab a", 1, 0);

    snprintf(cmd, sizeof(cmd), "%s tokenize %s --json --decode --no-special --text 'a a a b'", g_bin, g_json);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    check_json_line(out, strlen(out), g_json, "a a a b", 0, 1);

    snprintf(cmd, sizeof(cmd), "%s tokenize %s --decode --json --text 'ab\"\\\\'", g_bin, g_dir);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    check_json_line(out, strlen(out), g_dir, "ab\"\\\\", 1, 1);
}

/* --file F and --file - take the bytes as they are, newlines included. */
static void test_cli_tokenize__file_and_stdin(void)
{
    static const char body[] = "ab\na a\n";
    char cmd[1024], out[4096], want[4096], path[160], empty[160];

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    CHECK(write_file(tmp_path(path, sizeof(path), "in.txt"), body, strlen(body)) == 0);
    CHECK(write_file(tmp_path(empty, sizeof(empty), "empty.txt"), "", 0) == 0);
    api_plain(want, sizeof(want), g_json, body, strlen(body), 1, 1);
    CHECK(strncmp(want, "6 2 5 0 4 5\n", 12) == 0); /* by hand: ab, Ċ, a, Ġa, Ċ */

    snprintf(cmd, sizeof(cmd), "%s tokenize %s --file %s --decode", g_bin, g_json, path);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(!strcmp(out, want), "got \"%s\", want \"%s\"", out, want);
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --decode --file - < %s", g_bin, g_json, path);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(!strcmp(out, want), "stdin: got \"%s\", want \"%s\"", out, want);

    snprintf(cmd, sizeof(cmd), "%s tokenize %s --file %s", g_bin, g_json, empty);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(!strcmp(out, "6\n"), "empty file: got \"%s\"", out);
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --no-special --file - < /dev/null", g_bin, g_json);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(!strcmp(out, "\n"), "empty stdin: got \"%s\"", out);
    unlink(path);
    unlink(empty);
}

/* --jsonl: objects and bare strings, blank lines skipped, one JSON line out per text. */
static void test_cli_tokenize__jsonl(void)
{
    static const char input[] =
        "{\"text\": \"ab a\"}\n"
        "\n"
        "\"a a a b\"\n"
        "   \r\n"
        "{\"id\": 7, \"text\": \"ab\\na\"}\r\n"
        "{\"text\": \"\"}\n"
        "{\"text\": \"b<s>a\\u00e9\"}";    /* no newline at the end */
    static const char *texts[] = {"ab a", "a a a b", "ab\na", "", "b<s>a\xc3\xa9"};
    char cmd[1024], out[8192], path[160];

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    CHECK(write_file(tmp_path(path, sizeof(path), "in.jsonl"), input, strlen(input)) == 0);
    for (int k = 0; k < 4; k++) {
        int special = !(k & 1), decode = k < 2;
        size_t lines = 0;
        const char *s = out;

        if (k == 2)
            snprintf(cmd, sizeof(cmd), "%s tokenize %s --jsonl - < %s", g_bin, g_json, path);
        else
            snprintf(cmd, sizeof(cmd), "%s tokenize %s --jsonl %s%s%s", g_bin, g_json, path,
                     special ? "" : " --no-special", decode ? " --decode" : "");
        CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
        for (const char *nl; (nl = strchr(s, '\n')) != NULL; s = nl + 1, lines++)
            if (lines < 5)
                check_json_line(s, (size_t)(nl - s), g_json, texts[lines], special, decode);
        CHECK_MSG(lines == 5 && *s == '\0', "%s: %zu lines: %s", cmd, lines, out);
    }
    unlink(path);
}

/* A bad --jsonl line stops the run with exit 1 and names the line. */
static void test_cli_tokenize__jsonl_errors(void)
{
    static const struct { const char *input, *line; } cases[] = {
        {"{\"text\": \"ab\"}\n{\"txt\": \"a\"}\n{\"text\": \"b\"}\n", "line 2"},
        {"\"a\"\n\n[\"a\"]\n", "line 3"},
        {"{\"text\": \"ab\"}\n{\"text\": \"a\"\n", "line 2"},
        {"{\"text\": 42}\n", "line 1"},
        {"{\"text\": \"\\u00ff\"} trailing\n", "line 1"},
    };
    char cmd[1024], out[4096], path[160], err[160];

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    tmp_path(path, sizeof(path), "bad.jsonl");
    tmp_path(err, sizeof(err), "err");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(write_file(path, cases[i].input, strlen(cases[i].input)) == 0);
        snprintf(cmd, sizeof(cmd), "%s tokenize %s --jsonl %s 2>%s", g_bin, g_json, path, err);
        CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
        CHECK_MSG(strstr(last_stderr(), "gptq: error:") && strstr(last_stderr(), cases[i].line) &&
                  strstr(last_stderr(), path), "case %zu: %s", i, last_stderr());
    }
    /* the lines before the bad one were printed */
    CHECK(write_file(path, cases[0].input, strlen(cases[0].input)) == 0);
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --jsonl - < %s 2>%s", g_bin, g_json, path, err);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(!strcmp(out, "{\"ids\":[6,2]}\n"), "got \"%s\"", out);
    CHECK_MSG(strstr(last_stderr(), "<stdin> line 2") != NULL, "%s", last_stderr());
    unlink(path);
}

/* Usage errors exit 2 with the usage text; --help exits 0 on stdout. */
static void test_cli_tokenize__usage(void)
{
    static const char *bad[] = {
        "",                                     /* nothing */
        "--text ab",                            /* no PATH */
        "JSON",                                 /* no input */
        "JSON --text ab --file x",              /* two inputs */
        "JSON --text ab --jsonl x",
        "JSON --text",                          /* no value */
        "JSON --jsonl",
        "JSON --text ab --bogus",               /* unknown option */
        "JSON extra --text ab",                 /* two PATHs */
    };
    char cmd[1024], out[4096], args[512], err[160];

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    tmp_path(err, sizeof(err), "err");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *j = strstr(bad[i], "JSON");
        if (j)
            snprintf(args, sizeof(args), "%.*s%s%s", (int)(j - bad[i]), bad[i], g_json, j + 4);
        else
            snprintf(args, sizeof(args), "%s", bad[i]);
        snprintf(cmd, sizeof(cmd), "%s tokenize %s 2>%s", g_bin, args, err);
        CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 2);
        CHECK_MSG(out[0] == '\0', "'%s' printed \"%s\" on stdout", bad[i], out);
        CHECK_MSG(strstr(last_stderr(), "gptq: error:") && strstr(last_stderr(), "usage: gptq tokenize"),
                  "'%s': %s", bad[i], last_stderr());
    }
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --text ab --bogus 2>%s", g_bin, g_json, err);
    test_run_cmd(out, sizeof(out), cmd);
    CHECK_MSG(strstr(last_stderr(), "unknown option '--bogus'") != NULL, "%s", last_stderr());

    snprintf(cmd, sizeof(cmd), "%s tokenize --help", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strncmp(out, "usage: gptq tokenize", 20) == 0);
    snprintf(cmd, sizeof(cmd), "%s help tokenize", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK(strncmp(out, "usage: gptq tokenize", 20) == 0);
    snprintf(cmd, sizeof(cmd), "%s --help", g_bin);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 0);
    CHECK_MSG(strstr(out, "\n  tokenize ") != NULL, "%s", out);
}

/* Runtime errors exit 1 with "gptq: error:" naming the file. */
static void test_cli_tokenize__runtime_errors(void)
{
    char cmd[1024], out[4096], err[160], bad[160], badtok[160];
    static const char invalid_utf8[] = "ab\xff" "a";

    if (!g_bin)
        SKIP("GPTQ_BIN is not set (run through make test)");
    tmp_path(err, sizeof(err), "err");
    snprintf(cmd, sizeof(cmd), "%s tokenize %s/missing.json --text ab 2>%s", g_bin, g_dir, err);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "gptq: error:") && strstr(last_stderr(), "missing.json"), "%s",
              last_stderr());
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --file %s/missing.txt 2>%s", g_bin, g_json, g_dir, err);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "gptq: error:") && strstr(last_stderr(), "missing.txt"), "%s",
              last_stderr());
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --jsonl %s/missing.jsonl 2>%s", g_bin, g_json, g_dir, err);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "missing.jsonl") != NULL, "%s", last_stderr());

    /* invalid UTF-8 is refused, not guessed at */
    CHECK(write_file(tmp_path(bad, sizeof(bad), "bad.txt"), invalid_utf8, strlen(invalid_utf8)) == 0);
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --file %s 2>%s", g_bin, g_json, bad, err);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(out[0] == '\0' && strstr(last_stderr(), "gptq: error:"), "%s / %s", out, last_stderr());

    /* a tokenizer.json that is not JSON */
    CHECK(write_file(tmp_path(badtok, sizeof(badtok), "broken.json"), "{\"model\": ", 10) == 0);
    snprintf(cmd, sizeof(cmd), "%s tokenize %s --text ab 2>%s", g_bin, badtok, err);
    CHECK_EQ_INT(test_run_cmd(out, sizeof(out), cmd), 1);
    CHECK_MSG(strstr(last_stderr(), "gptq: error:") != NULL, "%s", last_stderr());
    unlink(bad);
    unlink(badtok);
}

int main(void)
{
    char path[160];
    int ready;

    t_prog = "test_cli_tokenize";
    g_bin = getenv("GPTQ_BIN");
    if (g_bin && !*g_bin)
        g_bin = NULL;
    snprintf(g_dir, sizeof(g_dir), "/tmp/gptq-cli-tokenize-XXXXXX");
    ready = mkdtemp(g_dir) != NULL;
    snprintf(g_json, sizeof(g_json), "%s/tokenizer.json", g_dir);
    ready = ready && write_file(g_json, small_tokenizer, strlen(small_tokenizer)) == 0 &&
            write_file(tmp_path(path, sizeof(path), "tokenizer_config.json"), small_config,
                       strlen(small_config)) == 0;
    if (!ready) {
        fprintf(stderr, "  cannot set up %s\n", g_dir);
        t_failed++;
        return test_report();
    }
    RUN(test_cli_tokenize__text_matches_library);
    RUN(test_cli_tokenize__decode_and_json);
    RUN(test_cli_tokenize__file_and_stdin);
    RUN(test_cli_tokenize__jsonl);
    RUN(test_cli_tokenize__jsonl_errors);
    RUN(test_cli_tokenize__usage);
    RUN(test_cli_tokenize__runtime_errors);
    unlink(g_json);
    unlink(tmp_path(path, sizeof(path), "tokenizer_config.json"));
    unlink(tmp_path(path, sizeof(path), "err"));
    rmdir(g_dir);
    return test_report();
}
