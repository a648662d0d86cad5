/*
 * fuzz_tokenizer.c - libFuzzer target for the tokenizer (core/tokenizer.c).
 *
 * The first input byte picks the mode (its value modulo 3; the seed corpus
 * starts its files with '0', '1' or '2'):
 *
 *   0  the rest is a tokenizer.json: tokenizer_parse, and when it loads,
 *      encode a few fixed strings both ways, decode a few ids (in and out
 *      of range, negative) and what the encodings gave, look tokens up;
 *   1  the rest is text for a fixed tokenizer.json built into this file,
 *      as rich as the library allows: BPE with byte_fallback, unk_token and
 *      fuse_unk (some <0xXX> byte tokens missing, so both fallbacks run);
 *      normalizers NFC, Replace (string and regex), Lowercase, Strip,
 *      Prepend; pre-tokenizers Split (Llama 3's regex), Digits, Metaspace;
 *      added tokens with lstrip / rstrip / single_word, normalized true and
 *      false, special and not; TemplateProcessing; decoders Replace,
 *      ByteFallback, Fuse, Strip.  The text is encoded with and without
 *      special tokens, and the rest is also decoded as int32 ids (raw, and
 *      folded into the vocabulary's range with some negative and
 *      out-of-range ids left in);
 *   2  the same with a byte-level BPE tokenizer (ByteLevel pre-tokenizer
 *      with its regex, Sequence of ByteLevel and TemplateProcessing
 *      post-processors, ByteLevel decoder).
 *
 * The fixed tokenizers are built once, lazily.  One the core refuses is
 * reported once on stderr and mode 1 then runs as mode 2 (and mode 2
 * returns), so the target keeps working on a core that supports less and
 * covers more as soon as the core catches up.  Both are valid for the
 * Hugging Face library (Tokenizer.fromFile loads them).
 *
 * Invariants that would be bugs, not bad input, trap: a failure other than
 * GQ_EINVAL or with no message; a parse that fails without setting GQ_EINVAL
 * or that leaves *out set; for the fixed tokenizers, valid UTF-8 that does
 * not encode, invalid UTF-8 (as Rust's str defines it: no overlongs, no
 * surrogates, nothing past U+10FFFF) that does; ids outside the tokenizer;
 * add_special not wrapping exactly the template's ids around the plain
 * encoding; decoded text that is not NUL-terminated, or not valid UTF-8
 * although the tokenizer.json was (the library always returns a Rust
 * String); for the byte-level tokenizer, decode(encode(text)) != text.
 *
 * Built by tests/fuzz/run.sh with clang -fsanitize=fuzzer,address,undefined.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mem.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sink;

/* ---- invariants ---- */

static void check_error(int rc, const gq_err *e)
{
    if (rc != 0 && (rc != GQ_EINVAL || e->code != GQ_EINVAL || e->msg[0] == '\0'))
        __builtin_trap();
}

/* UTF-8 as Rust's std::str::from_utf8 accepts it. */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            k = 1;
            cp = c & 0x1F;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2;
            cp = c & 0x0F;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += k + 1;
    }
    return 1;
}

/*
 * Decode ids both ways; the text must be NUL-terminated, and valid UTF-8
 * when utf8 is set (the tokenizer.json was: the library reads the file into
 * a Rust String, so it never sees token strings that are not).
 */
static void decode_check(const tokenizer *t, const int32_t *ids, size_t n, int utf8)
{
    for (int skip = 0; skip <= 1; skip++) {
        gq_err e = GQ_ERR_INIT;
        char *text = NULL;
        size_t len = 0;
        int rc = tokenizer_decode(&text, &len, t, ids, n, skip, &e);
        check_error(rc, &e);
        if (rc == 0) {
            if (!text || text[len] != '\0' || (utf8 && !utf8_valid((const uint8_t *)text, len)))
                __builtin_trap();
            sink += (unsigned)len;
        }
        gq_free(text);
    }
}

/* ---- the fixed tokenizers ---- */

/*
 * Appending to the buffer: out of memory leaves the buffer short and sets
 * build_failed, so a whole build is checked once at the end.
 */
static int build_failed;

static void put(gq_buf *b, const char *s)
{
    if (gq_buf_puts(b, s, NULL) < 0)
        build_failed = 1;
}

/* s as a JSON string. */
static void put_str(gq_buf *b, const char *s)
{
    put(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\' || *p < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", *p);
            put(b, esc);
        } else if (gq_buf_append(b, p, 1, NULL) < 0) {
            build_failed = 1;
        }
    }
    put(b, "\"");
}

/* One added_tokens entry; all but the first are preceded by a comma. */
static void put_added(gq_buf *b, int first, int id, const char *content, int single_word,
                      int lstrip, int rstrip, int normalized, int special)
{
    char head[40];
    snprintf(head, sizeof(head), "%s{\"id\": %d, \"content\": ", first ? "" : ", ", id);
    put(b, head);
    put_str(b, content);
    put(b, single_word ? ", \"single_word\": true" : ", \"single_word\": false");
    put(b, lstrip ? ", \"lstrip\": true" : ", \"lstrip\": false");
    put(b, rstrip ? ", \"rstrip\": true" : ", \"rstrip\": false");
    put(b, normalized ? ", \"normalized\": true" : ", \"normalized\": false");
    put(b, special ? ", \"special\": true}" : ", \"special\": false}");
}

/*
 * A BPE vocab under construction: tokens in id order.  Merges name two
 * tokens already in it and add their concatenation.
 */
#define MAX_VOCAB 700
struct vocab {
    char tok[MAX_VOCAB][24];
    int n;
    const char *merges[64][2];
    int nmerges;
};

static int vocab_find(const struct vocab *v, const char *s)
{
    for (int i = 0; i < v->n; i++)
        if (!strcmp(v->tok[i], s))
            return i;
    return -1;
}

static void vocab_add(struct vocab *v, const char *s)
{
    if (vocab_find(v, s) >= 0)
        return;
    if (v->n == MAX_VOCAB || strlen(s) >= sizeof(v->tok[0]))
        abort();   /* a mistake in this file, not input */
    snprintf(v->tok[v->n++], sizeof(v->tok[0]), "%s", s);
}

static void vocab_merge(struct vocab *v, const char *a, const char *b)
{
    char ab[48];
    if (vocab_find(v, a) < 0 || vocab_find(v, b) < 0 || v->nmerges == 64)
        abort();
    snprintf(ab, sizeof(ab), "%s%s", a, b);
    vocab_add(v, ab);
    v->merges[v->nmerges][0] = a;
    v->merges[v->nmerges++][1] = b;
}

static void put_model(gq_buf *b, const struct vocab *v)
{
    put(b, "\"vocab\": {");
    for (int i = 0; i < v->n; i++) {
        char id[24];
        if (i)
            put(b, ", ");
        put_str(b, v->tok[i]);
        snprintf(id, sizeof(id), ": %d", i);
        put(b, id);
    }
    put(b, "}, \"merges\": [");
    for (int i = 0; i < v->nmerges; i++) {
        put(b, i ? ", [" : "[");
        put_str(b, v->merges[i][0]);
        put(b, ", ");
        put_str(b, v->merges[i][1]);
        put(b, "]");
    }
    put(b, "]}}");
}

static const char llama3_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Ids of the rich tokenizer that the checks need. */
#define RICH_BOS 1
#define RICH_EOS 2

static void build_rich(gq_buf *b, int *nids)
{
    static struct vocab v;
    static const char *const chars[] = {
        "\xe2\x96\x81", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o",
        "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z", "0", "1", "2", "3", "4", "5", "6",
        "7", "8", "9", ".", ",", ";", ":", "!", "?", "'", "\"", "-", "(", ")", "[", "]", "<", ">",
        "|", "/", "\\", "_", "\n", "\t", "\xc3\xa9", "\xc3\x9f", "\xe6\x97\xa5", "\xe6\x9c\xac"};
    static const char *const merges[][2] = {
        {"\xe2\x96\x81", "t"}, {"h", "e"}, {"\xe2\x96\x81t", "he"}, {"i", "n"}, {"e", "r"},
        {"a", "n"}, {"\xe2\x96\x81", "a"}, {"o", "n"}, {"r", "e"}, {"in", "g"},
        {"\xe2\x96\x81", "s"}, {"e", "d"}, {"\xe2\x96\x81", "i"}, {"\xe2\x96\x81i", "n"},
        {"\xe2\x96\x81", "w"}, {"o", "r"}, {"\xe2\x96\x81w", "or"}, {"l", "d"},
        {"\xe2\x96\x81wor", "ld"}, {"\xe2\x96\x81", "\xe2\x96\x81"}, {"c", "\xc3\xa9"},
        {"\xe6\x97\xa5", "\xe6\x9c\xac"}, {"<", "s"}, {"<s", ">"}, {"m", "a"}, {"s", "k"},
        {"ma", "sk"}, {"\xe2\x96\x81", "x"}};
    char hex[16];
    int V;

    v.n = v.nmerges = 0;
    vocab_add(&v, "<unk>");
    vocab_add(&v, "<s>");
    vocab_add(&v, "</s>");
    /* byte tokens, but none for 4-byte UTF-8 leads: those characters go to <unk> */
    for (int c = 0; c < 256; c++)
        if (c < 0xF0 || c > 0xF4) {
            snprintf(hex, sizeof(hex), "<0x%02X>", c);
            vocab_add(&v, hex);
        }
    for (size_t i = 0; i < sizeof(chars) / sizeof(chars[0]); i++)
        vocab_add(&v, chars[i]);
    for (size_t i = 0; i < sizeof(merges) / sizeof(merges[0]); i++)
        vocab_merge(&v, merges[i][0], merges[i][1]);
    V = v.n;

    put(b, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [");
    put_added(b, 1, 0, "<unk>", 0, 0, 0, 0, 1);
    put_added(b, 0, RICH_BOS, "<s>", 0, 0, 0, 0, 1);
    put_added(b, 0, RICH_EOS, "</s>", 0, 0, 0, 0, 1);
    put_added(b, 0, V, "<|im_start|>", 0, 1, 1, 0, 1);
    put_added(b, 0, V + 1, "[mask]", 1, 0, 0, 1, 0);
    put_added(b, 0, V + 2, "<sep>", 0, 1, 0, 1, 1);
    put_added(b, 0, V + 3, "\xe2\x96\x81x\xe2\x96\x81", 1, 0, 1, 0, 0);
    put_added(b, 0, V + 4, "Hello World", 0, 0, 1, 0, 0);
    put(b, "], \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
           "{\"type\": \"NFC\"}, "
           "{\"type\": \"Replace\", \"pattern\": {\"String\": \"``\"}, \"content\": \"\\\"\"}, "
           "{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\r\\\\n?\"}, \"content\": \"\\n\"}, "
           "{\"type\": \"Lowercase\"}, "
           "{\"type\": \"Strip\", \"strip_left\": false, \"strip_right\": true}, "
           "{\"type\": \"Prepend\", \"prepend\": \"\xe2\x96\x81\"}]}, ");
    put(b, "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
           "{\"type\": \"Split\", \"pattern\": {\"Regex\": ");
    put_str(b, llama3_pattern);
    put(b, "}, \"behavior\": \"Isolated\", \"invert\": false}, "
           "{\"type\": \"Digits\", \"individual_digits\": true}, "
           "{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", "
           "\"prepend_scheme\": \"first\", \"split\": true}]}, ");
    put(b, "\"post_processor\": {\"type\": \"TemplateProcessing\", "
           "\"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
           "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
           "{\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}], "
           "\"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
           "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
           "{\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}, "
           "{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}, "
           "{\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 1}}], "
           "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}, "
           "\"</s>\": {\"id\": \"</s>\", \"ids\": [2], \"tokens\": [\"</s>\"]}}}, ");
    put(b, "\"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
           "{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xe2\x96\x81\"}, \"content\": \" \"}, "
           "{\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, "
           "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}, ");
    put(b, "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"<unk>\", "
           "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, "
           "\"fuse_unk\": true, \"byte_fallback\": true, \"ignore_merges\": false, ");
    put_model(b, &v);
    *nids = V + 5;
}

/* GPT-2's byte-to-character map: printable Latin-1 as itself, the rest from U+0100. */
static void byte_char(char out[3], int byte)
{
    int cp = byte, n = 0;
    if (!((byte >= 0x21 && byte <= 0x7E) || (byte >= 0xA1 && byte <= 0xAC) || byte >= 0xAE)) {
        for (int c = 0; c < byte; c++)
            n += !((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE);
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

static void build_bytelevel(gq_buf *b, int *nids, int *eot)
{
    static struct vocab v;
    static char bc[256][3];
    /* merges over the byte characters: G is the space (U+0120) */
    static const char *const merges[][2] = {
        {"\xc4\xa0", "t"}, {"h", "e"}, {"\xc4\xa0t", "he"}, {"i", "n"}, {"e", "r"}, {"a", "n"},
        {"\xc4\xa0", "a"}, {"o", "n"}, {"in", "g"}, {"\xc4\xa0", "\xc4\xa0"},
        {"\xc4\xa0\xc4\xa0", "\xc4\xa0\xc4\xa0"}, {"\xc4\x8a", "\xc4\x8a"}, {"1", "2"},
        {"12", "3"}, {"'", "s"}, {"\xc4\xa0", "w"}, {"o", "r"},
        {"\xc4\xa0w", "or"}, {"l", "d"}, {"\xc4\xa0wor", "ld"}};
    int V;

    v.n = v.nmerges = 0;
    for (int c = 0; c < 256; c++) {
        byte_char(bc[c], c);
        vocab_add(&v, bc[c]);
    }
    for (size_t i = 0; i < sizeof(merges) / sizeof(merges[0]); i++)
        vocab_merge(&v, merges[i][0], merges[i][1]);
    /* U+65E5 (E6 97 A5) as one token, in two merges of byte characters */
    vocab_merge(&v, bc[0xE6], bc[0x97]);
    vocab_merge(&v, v.tok[v.n - 1], bc[0xA5]);
    V = v.n;

    put(b, "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [");
    put_added(b, 1, V, "<|endoftext|>", 0, 0, 0, 0, 1);
    put_added(b, 0, V + 1, "<pad>", 0, 0, 0, 1, 0);
    put(b, "], \"normalizer\": null, "
           "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
           "\"trim_offsets\": true, \"use_regex\": true}, "
           "\"post_processor\": {\"type\": \"Sequence\", \"processors\": ["
           "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, "
           "\"use_regex\": true}, "
           "{\"type\": \"TemplateProcessing\", "
           "\"single\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
           "{\"SpecialToken\": {\"id\": \"<|endoftext|>\", \"type_id\": 0}}], "
           "\"pair\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
           "{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], "
           "\"special_tokens\": {\"<|endoftext|>\": {\"id\": \"<|endoftext|>\", \"ids\": [");
    {
        char id[16];
        snprintf(id, sizeof(id), "%d", V);
        put(b, id);
    }
    put(b, "], \"tokens\": [\"<|endoftext|>\"]}}}]}, "
           "\"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, "
           "\"trim_offsets\": true, \"use_regex\": true}, "
           "\"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
           "\"continuing_subword_prefix\": \"\", \"end_of_word_suffix\": \"\", "
           "\"fuse_unk\": false, \"byte_fallback\": false, \"ignore_merges\": false, ");
    put_model(b, &v);
    *nids = V + 2;
    *eot = V;   /* <|endoftext|> */
}

struct fixed {
    const char *name;
    int tried;
    tokenizer *t;
    int nids;       /* ids are 0 .. nids-1 */
    int eot;        /* byte-level: the id the template appends */
};

static struct fixed rich = {"rich", 0, NULL, 0, 0}, bytelevel = {"byte-level", 0, NULL, 0, 0};

/* The tokenizer, built on first use; NULL (said once on stderr) if refused. */
static const struct fixed *fixed_get(struct fixed *f)
{
    gq_buf b = GQ_BUF_INIT;
    gq_err e = GQ_ERR_INIT;

    if (f->tried)
        return f->t ? f : NULL;
    f->tried = 1;
    build_failed = 0;
    if (f == &rich)
        build_rich(&b, &f->nids);
    else
        build_bytelevel(&b, &f->nids, &f->eot);
    if (build_failed)
        abort();
    if (getenv("FUZZ_TOKENIZER_DUMP")) {   /* for checking the JSON with the library */
        FILE *out = fopen(getenv("FUZZ_TOKENIZER_DUMP"), f == &rich ? "w" : "a");
        if (out) {
            fprintf(out, "%s\n", b.ptr);
            fclose(out);
        }
    }
    if (tokenizer_parse(&f->t, b.ptr, b.len, &e) < 0) {
        fprintf(stderr, "fuzz_tokenizer: the fixed %s tokenizer does not load (%s); %s\n", f->name,
                e.msg, f == &rich ? "mode 1 runs as mode 2" : "mode 2 is skipped");
        f->t = NULL;
    }
    gq_buf_free(&b);
    return f->t ? f : NULL;
}

/* ---- the modes ---- */

static void fuzz_json(const uint8_t *data, size_t size)
{
    static const char *const texts[] = {
        "Hello world", "  two  spaces\tand tab\n", "<s>hi</s> <|endoftext|>",
        "na\xc3\xafve caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\xa4\x97", "1234567 3.14",
        "", "\xe2\x96\x81lead", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    gq_err e = GQ_ERR_INIT;
    tokenizer *t = NULL;   /* and still NULL after a failure */
    int rc = tokenizer_parse(&t, (const char *)data, size, &e), utf8 = utf8_valid(data, size);

    check_error(rc, &e);
    if (rc < 0) {
        if (t != NULL)
            __builtin_trap();
        return;
    }
    {
        size_t vs = tokenizer_vocab_size(t);
        int32_t probe[] = {0, 1, 2, 3, (int32_t)vs - 1, (int32_t)vs, (int32_t)vs + 1, -1,
                           INT32_MAX, INT32_MIN};
        decode_check(t, probe, sizeof(probe) / sizeof(probe[0]), utf8);
        sink += (unsigned)tokenizer_token_id(t, "<s>") + (unsigned)tokenizer_token_id(t, "a") +
                (unsigned)tokenizer_token_id(t, "") + (unsigned)tokenizer_model_max_length(t);
    }
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        for (int special = 0; special <= 1; special++) {
            int32_t *ids = NULL;
            size_t n = 0;
            rc = tokenizer_encode(&ids, &n, t, texts[i], strlen(texts[i]), special, &e);
            check_error(rc, &e);
            if (rc == 0) {
                if (!ids)
                    __builtin_trap();
                for (size_t k = 0; k < n; k++)
                    if (ids[k] < 0)
                        __builtin_trap();
                decode_check(t, ids, n, utf8);
            }
            gq_free(ids);
        }
    tokenizer_free(t);
}

/* Encode with add_special 0 or 1; NULL ids on failure (checked here). */
static int32_t *encode(size_t *n, const struct fixed *f, const uint8_t *text, size_t len,
                       int special, int valid)
{
    gq_err e = GQ_ERR_INIT;
    int32_t *ids = NULL;
    int rc = tokenizer_encode(&ids, n, f->t, (const char *)text, len, special, &e);

    check_error(rc, &e);
    if ((rc == 0) != valid || (rc == 0 && !ids))
        __builtin_trap();
    for (size_t k = 0; rc == 0 && k < *n; k++)
        if (ids[k] < 0 || ids[k] >= f->nids)
            __builtin_trap();
    return ids;
}

static void fuzz_text(const struct fixed *f, const uint8_t *text, size_t len)
{
    int valid = utf8_valid(text, len);
    size_t n0 = 0, n1 = 0, nraw = len / 4;
    int32_t *ids0 = encode(&n0, f, text, len, 0, valid);
    int32_t *ids1 = encode(&n1, f, text, len, 1, valid);
    int32_t *raw = NULL;

    if (valid) {
        /* add_special puts exactly the template's ids around the plain encoding */
        if (f == &rich) {
            if (n1 != n0 + 2 || ids1[0] != RICH_BOS || ids1[n1 - 1] != RICH_EOS ||
                (n0 && memcmp(ids1 + 1, ids0, n0 * sizeof(int32_t)) != 0))
                __builtin_trap();
        } else {
            if (n1 != n0 + 1 || ids1[n0] != f->eot ||
                (n0 && memcmp(ids1, ids0, n0 * sizeof(int32_t)) != 0))
                __builtin_trap();
        }
        decode_check(f->t, ids1, n1, 1);
        /* byte-level BPE loses nothing: decoding gives the text back */
        if (f == &bytelevel) {
            gq_err e = GQ_ERR_INIT;
            char *back = NULL;
            size_t blen = 0;
            if (tokenizer_decode(&back, &blen, f->t, ids0, n0, 0, &e) != 0 || blen != len ||
                memcmp(back, text, len) != 0)
                __builtin_trap();
            gq_free(back);
        }
    }
    gq_free(ids0);
    gq_free(ids1);

    /* the same bytes as ids: raw, then folded into [-4, nids + 4) */
    if (nraw) {
        raw = malloc(nraw * sizeof(int32_t));
        if (!raw)
            abort();
        memcpy(raw, text, nraw * sizeof(int32_t));
        decode_check(f->t, raw, nraw, 1);
        for (size_t k = 0; k < nraw; k++)
            raw[k] = (int32_t)((uint32_t)raw[k] % (uint32_t)(f->nids + 8)) - 4;
        decode_check(f->t, raw, nraw, 1);
        free(raw);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct fixed *f;

    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0:
        fuzz_json(data + 1, size - 1);
        break;
    case 1:
        if ((f = fixed_get(&rich)) || (f = fixed_get(&bytelevel)))
            fuzz_text(f, data + 1, size - 1);
        break;
    default:
        if ((f = fixed_get(&bytelevel)))
            fuzz_text(f, data + 1, size - 1);
        break;
    }
    return 0;
}
