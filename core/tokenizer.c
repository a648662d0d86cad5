/*
 * tokenizer.c - a Hugging Face tokenizer.json, id for id.
 *
 * DESIGN
 *
 * Loading turns the JSON into flat programs: a list of normalizer steps, a
 * list of pre-tokenizer steps, the BPE tables, the ids a post-processor
 * puts before and after a sequence, and a list of decoder steps (Sequence
 * components are flattened).  Encoding follows the library's
 * TokenizerImpl::encode step by step, on a list of pieces (byte ranges of
 * an arena, or finished token ids):
 *
 *   1. added tokens with normalized=false are found in the raw text
 *      (leftmost-longest, with single_word / lstrip / rstrip exactly as
 *      AddedVocabulary::find_matches);
 *   2. every remaining piece is normalized on its own (so Prepend applies
 *      after each special token, as in the library), then searched for
 *      added tokens with normalized=true (matched in normalized form);
 *   3. the pre-tokenizer steps split pieces further: a pattern (regex,
 *      literal or character class) yields matched / unmatched spans, a
 *      split behavior turns spans into pieces, empty pieces are dropped;
 *   4. BPE turns each piece into ids: characters (with byte fallback or
 *      unk), then the library's priority queue of merges (lowest rank,
 *      then leftmost; stale entries checked as the library checks them);
 *   5. the post-processor's ids go around the sequence.
 *
 * Regexes are PCRE2 with UTF and UCP.  The library compiles its patterns
 * with Oniguruma, whose \s is the White_Space property and whose \w is
 * letters, marks, decimal digits and connectors; PCRE2's differ at the
 * edges (U+180E is \s in PCRE2), so \s \S \w \W in a pattern are rewritten
 * into those property classes before compiling.
 *
 * Unicode normalization and case mapping come from utf8proc.
 */
#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#include "buf.h"
#include "json.h"
#include "mem.h"

#define TOKENIZER_MAX_BYTES (256u << 20)
#define TOKENIZER_CONFIG_MAX_BYTES (16u << 20)
#define MAX_STEPS 64

/* GPT-2's pre-tokenizer pattern, as the ByteLevel pre-tokenizer uses it. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/* The Whitespace pre-tokenizer's \w+|[^\w\s]+ with the regex crate's classes. */
static const char whitespace_pattern[] =
    "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]+"
    "|[^\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}\\p{White_Space}]+";
/* A word character as the regex crate's \w (single_word added tokens). */
static const char word_char_pattern[] = "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]";

/* ---- components ---- */

enum pat_kind { PAT_NONE, PAT_REGEX, PAT_LITERAL, PAT_DIGIT, PAT_SPACE, PAT_CHAR };

struct pattern {
    enum pat_kind kind;
    pcre2_code *re;       /* PAT_REGEX */
    char *lit;            /* PAT_LITERAL, PAT_CHAR: the bytes */
    size_t litlen;
};

enum behavior { BEH_REMOVED, BEH_ISOLATED, BEH_MERGED_PREV, BEH_MERGED_NEXT, BEH_CONTIGUOUS };

enum norm_kind { N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWER, N_STRIP, N_STRIP_ACCENTS, N_PREPEND, N_REPLACE };

struct norm {
    enum norm_kind kind;
    int left, right;          /* N_STRIP */
    char *str;                /* N_PREPEND: prefix; N_REPLACE: content */
    size_t len;
    struct pattern pat;       /* N_REPLACE */
};

enum pre_kind { P_BYTELEVEL, P_SPLIT, P_METASPACE, P_DIGITS, P_WHITESPACE, P_WSPLIT };
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };

struct pretok {
    enum pre_kind kind;
    int add_prefix_space, use_regex;   /* P_BYTELEVEL */
    struct pattern pat;                /* P_SPLIT, P_METASPACE (the replacement), P_DIGITS, ... */
    enum behavior behavior;
    int invert;
    int scheme, split;                 /* P_METASPACE */
};

enum dec_kind { D_BYTELEVEL, D_METASPACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_REPLACE };

struct decoder {
    enum dec_kind kind;
    char ch[5];               /* D_METASPACE replacement, D_STRIP content (UTF-8) */
    size_t chlen;
    size_t start, stop;       /* D_STRIP */
    int prepend;              /* D_METASPACE: prepend_scheme is not never */
    struct pattern pat;       /* D_REPLACE */
    char *str;
    size_t len;
};

struct added {
    char *content;            /* as written */
    size_t len;
    char *pat;                /* what is matched: content, or its normalized form */
    size_t patlen;
    int32_t id;
    unsigned char special, lstrip, rstrip, single_word, normalized;
};

/* Leftmost-longest search over a set of added tokens, bucketed by first byte. */
struct matcher {
    uint32_t *idx;            /* added indices grouped by first byte, longest first */
    uint32_t start[257];
};

struct vocab_slot {
    uint32_t off, len;   /* into the arena; len == UINT32_MAX marks an empty slot */
    int32_t id;
};

struct merge_slot {
    uint64_t key;        /* (left << 32) | right, or UINT64_MAX when empty */
    int32_t rank, id;
};

struct tokenizer {
    /* model */
    char *arena;
    struct vocab_slot *vocab;
    size_t vocab_cap, vocab_n;
    uint32_t *id_off, *id_len;   /* id -> arena string (len UINT32_MAX: none) */
    size_t id_cap;
    struct merge_slot *merges;
    size_t merges_cap;
    int ignore_merges, byte_fallback, fuse_unk;
    int split_at_metaspace;      /* no token holds U+2581 after another character: see bpe_piece */
    int32_t unk_id;              /* -1: none */
    char *prefix, *suffix;       /* continuing_subword_prefix, end_of_word_suffix */
    size_t prefix_len, suffix_len;
    int32_t byte_tok[256];       /* byte fallback ids of <0xXX>, -1 when absent */
    /* added tokens */
    struct added *added;
    size_t nadded;
    struct matcher raw, normed;
    pcre2_code *word_re;
    /* pipeline */
    struct norm norms[MAX_STEPS];
    size_t nnorms;
    struct pretok pretoks[MAX_STEPS];
    size_t npretoks;
    int32_t *post_pre, *post_post;
    size_t npost_pre, npost_post;
    struct decoder decs[MAX_STEPS];
    size_t ndecs;
    int has_decoder;
    size_t model_max_length;
    char byte_char[256][3];      /* UTF-8 of each byte's stand-in character */
    unsigned char byte_char_len[256];
    int16_t char_byte[512];      /* stand-in code point -> byte, -1 */
};

/* ---- UTF-8 ---- */

static size_t utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
}

/* Code point at s (valid UTF-8 assumed); *n its length. */
static uint32_t utf8_get(const char *s, size_t *n)
{
    const unsigned char *u = (const unsigned char *)s;
    *n = utf8_len(u[0]);
    switch (*n) {
    case 1: return u[0];
    case 2: return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3Fu);
    case 3: return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3Fu);
    default:
        return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
               (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3Fu);
    }
}

static size_t utf8_put(char *out, uint32_t cp)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Length of the valid UTF-8 sequence at s[0, n), or 0 when it is invalid;
 * *maxpart gets the length of its longest valid prefix (at least 1), the
 * unit one replacement character stands for (Rust's from_utf8_lossy).
 */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *maxpart)
{
    unsigned char c = s[0];
    size_t need, k;
    unsigned char lo = 0x80, hi = 0xBF;

    *maxpart = 1;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    for (k = 1; k < need; k++) {
        unsigned char lo_k = k == 1 ? lo : 0x80, hi_k = k == 1 ? hi : 0xBF;
        if (k >= n || s[k] < lo_k || s[k] > hi_k) {
            *maxpart = k;
            return 0;
        }
    }
    return need;
}

/* Offset of the first invalid byte, or len when s is valid UTF-8. */
static size_t utf8_check(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, part;
    while (i < len) {
        size_t k;
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        if (!(k = utf8_seq(u + i, len - i, &part)))
            return i;
        i += k;
    }
    return len;
}

/* Rust's char::is_whitespace: the White_Space property. */
static int is_white_space(uint32_t cp)
{
    if ((cp >= 9 && cp <= 13) || cp == 0x85)
        return 1;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
        return 1;
    default:
        return 0;
    }
}

/* ---- hash tables ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* Model vocab id of the n bytes at s, or -1. */
static int32_t vocab_find(const tokenizer *t, const char *s, size_t n)
{
    size_t mask = t->vocab_cap - 1, i = (size_t)hash_bytes(s, n) & mask;
    for (;; i = (i + 1) & mask) {
        const struct vocab_slot *v = &t->vocab[i];
        if (v->len == UINT32_MAX)
            return -1;
        if (v->len == n && memcmp(t->arena + v->off, s, n) == 0)
            return v->id;
    }
}

static const struct merge_slot *merge_find(const tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = t->merges_cap - 1, i = (size_t)hash_u64(key) & mask;
    for (;; i = (i + 1) & mask) {
        const struct merge_slot *m = &t->merges[i];
        if (m->key == UINT64_MAX)
            return NULL;
        if (m->key == key)
            return m;
    }
}

static size_t pow2_above(size_t n)
{
    size_t c = 16;
    while (c < n * 2)
        c *= 2;
    return c;
}

/* GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to 256 + k. */
static void build_byte_map(tokenizer *t)
{
    int k = 0;
    for (int i = 0; i < 512; i++)
        t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        unsigned cp;
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
            cp = (unsigned)b;
        else
            cp = 256u + (unsigned)k++;
        t->byte_char_len[b] = (unsigned char)utf8_put(t->byte_char[b], cp);
        t->char_byte[cp] = (int16_t)b;
    }
}

/* ---- freeing ---- */

static void pattern_free(struct pattern *p)
{
    pcre2_code_free(p->re);
    gq_free(p->lit);
    memset(p, 0, sizeof(*p));
}

void tokenizer_free(tokenizer *t)
{
    if (!t)
        return;
    gq_free(t->arena);
    gq_free(t->vocab);
    gq_free(t->id_off);
    gq_free(t->id_len);
    gq_free(t->merges);
    gq_free(t->prefix);
    gq_free(t->suffix);
    for (size_t i = 0; i < t->nadded; i++) {
        gq_free(t->added[i].content);
        gq_free(t->added[i].pat);
    }
    gq_free(t->added);
    gq_free(t->raw.idx);
    gq_free(t->normed.idx);
    pcre2_code_free(t->word_re);
    for (size_t i = 0; i < t->nnorms; i++) {
        gq_free(t->norms[i].str);
        pattern_free(&t->norms[i].pat);
    }
    for (size_t i = 0; i < t->npretoks; i++)
        pattern_free(&t->pretoks[i].pat);
    for (size_t i = 0; i < t->ndecs; i++) {
        gq_free(t->decs[i].str);
        pattern_free(&t->decs[i].pat);
    }
    gq_free(t->post_pre);
    gq_free(t->post_post);
    gq_free(t);
}

size_t tokenizer_vocab_size(const tokenizer *t)
{
    return t->vocab_n;
}

size_t tokenizer_model_max_length(const tokenizer *t)
{
    return t->model_max_length;
}

int32_t tokenizer_token_id(const tokenizer *t, const char *token)
{
    size_t n = strlen(token);
    for (size_t i = 0; i < t->nadded; i++)
        if (t->added[i].len == n && !memcmp(t->added[i].content, token, n))
            return t->added[i].id;
    return vocab_find(t, token, n);
}

/* ---- regexes and patterns ---- */

/*
 * Compile an Oniguruma-flavoured pattern with PCRE2: \s \S \w \W become the
 * property classes Oniguruma gives them (see DESIGN).
 */
static int regex_compile(pcre2_code **out, const char *pat, size_t len, const char *what, gq_err *e)
{
    static const char ws[] = "\\p{White_Space}", nws[] = "\\P{White_Space}";
    static const char word[] = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";
    gq_buf b = GQ_BUF_INIT;
    int depth = 0, rc = 0, errcode;
    PCRE2_SIZE erroff;
    char q[64];

    for (size_t i = 0; i < len && rc == 0; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < len) {
            char d = pat[++i];
            if (d == 's')
                rc = gq_buf_puts(&b, ws, e);
            else if (d == 'S')
                rc = gq_buf_puts(&b, nws, e);
            else if (d == 'w' && depth)
                rc = gq_buf_puts(&b, word, e);
            else if (d == 'w')
                rc = gq_buf_printf(&b, e, "[%s]", word);
            else if (d == 'W' && !depth)
                rc = gq_buf_printf(&b, e, "[^%s]", word);
            else if (d == 'W')
                rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: %s: \\W inside a character class is not supported",
                             what);
            else {
                char two[2] = {c, d};
                rc = gq_buf_append(&b, two, 2, e);
            }
            continue;
        }
        if (c == '[') {
            depth++;
            /* a ']' right after '[' or '[^' is a literal */
            if (i + 1 < len && pat[i + 1] == '^') {
                rc = gq_buf_append(&b, pat + i, 2, e);
                i++;
            } else
                rc = gq_buf_append(&b, &c, 1, e);
            if (rc == 0 && i + 1 < len && pat[i + 1] == ']') {
                rc = gq_buf_append(&b, "\\]", 2, e);
                i++;
            }
            continue;
        }
        if (c == ']' && depth)
            depth--;
        rc = gq_buf_append(&b, &c, 1, e);
    }
    if (rc < 0)
        goto done;
    *out = pcre2_compile((PCRE2_SPTR)(b.ptr ? b.ptr : ""), b.len, PCRE2_UTF | PCRE2_UCP, &errcode,
                         &erroff, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: %s: cannot compile regex '%s': %s", what,
                     gq_err_quote(q, sizeof(q), pat), (const char *)msg);
        goto done;
    }
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);   /* the interpreter runs it otherwise */
done:
    gq_buf_free(&b);
    return rc;
}

/* {"String": s} or {"Regex": r}. */
static int pattern_parse(struct pattern *p, const gq_json *j, const char *what, gq_err *e)
{
    const char *s;
    if ((s = gq_json_string(gq_json_get(j, "String")))) {
        p->kind = PAT_LITERAL;
        p->litlen = strlen(s);
        p->lit = gq_strdup(s);
        return p->lit ? 0 : GQ_FAIL(e, GQ_ENOMEM, "out of memory loading a tokenizer");
    }
    if ((s = gq_json_string(gq_json_get(j, "Regex")))) {
        p->kind = PAT_REGEX;
        return regex_compile(&p->re, s, strlen(s), what, e);
    }
    return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: %s: pattern must be {\"String\": ...} or {\"Regex\": ...}",
                   what);
}

/* A single character given as a JSON string (Metaspace replacement, Strip content). */
static int one_char(char out[5], size_t *len, const gq_json *j, const char *what, gq_err *e)
{
    const char *s = gq_json_string(j);
    size_t n;
    if (!s || !*s || utf8_check(s, strlen(s)) != strlen(s) || (n = utf8_len((unsigned char)*s)) != strlen(s))
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: %s must be a single character", what);
    memcpy(out, s, n);
    out[n] = '\0';
    *len = n;
    return 0;
}

/* ---- match data for one encode call ---- */

struct work {
    pcre2_match_data *md;
};

/* Next match of re in s[0, len) at or after pos: 1 (and *ms, *me), 0 none, or an error. */
static int regex_next(size_t *ms, size_t *me, const pcre2_code *re, const char *s, size_t len, size_t pos,
                      struct work *w, gq_err *e)
{
    int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, w->md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, w->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer: regex matching failed: %s", (const char *)msg);
    }
    {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        *ms = ov[0];
        *me = ov[1];
    }
    return 1;
}

struct span {
    size_t s, e;
    int m;
};

struct spans {
    struct span *v;
    size_t n, cap;
};

static int span_push(struct spans *sp, size_t s, size_t e_, int m, gq_err *e)
{
    if (sp->n == sp->cap) {
        size_t cap = sp->cap ? sp->cap * 2 : 32;
        struct span *p = gq_realloc(sp->v, cap * sizeof(*p));
        if (!p)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
        sp->v = p;
        sp->cap = cap;
    }
    sp->v[sp->n++] = (struct span){s, e_, m};
    return 0;
}

/*
 * The library's Pattern::find_matches: s[0, len) as consecutive spans,
 * matched (m = 1) or not.  Regexes iterate as the onig crate does (an
 * empty match right after the previous match is skipped); a character
 * class matches every such character on its own.
 */
static int find_spans(struct spans *sp, const struct pattern *p, const char *s, size_t len, struct work *w,
                      gq_err *e)
{
    size_t prev = 0;
    int rc;

    sp->n = 0;
    if (len == 0)
        return span_push(sp, 0, 0, 0, e);
    if (p->kind == PAT_REGEX) {
        size_t pos = 0, last_end = SIZE_MAX;
        while (pos <= len) {
            size_t ms = 0, me = 0;
            if ((rc = regex_next(&ms, &me, p->re, s, len, pos, w, e)) < 0)
                return rc;
            if (rc == 0)
                break;
            if (ms == me && me == last_end) {
                if (pos >= len)
                    break;
                pos += utf8_len((unsigned char)s[pos]);
                continue;
            }
            if (prev != ms && (rc = span_push(sp, prev, ms, 0, e)) < 0)
                return rc;
            if ((rc = span_push(sp, ms, me, 1, e)) < 0)
                return rc;
            prev = last_end = pos = me;
        }
    } else if (p->kind == PAT_LITERAL) {
        size_t pos = 0;
        while (p->litlen && pos < len) {
            const char *hit = memmem(s + pos, len - pos, p->lit, p->litlen);
            size_t ms;
            if (!hit)
                break;
            ms = (size_t)(hit - s);
            if (prev != ms && (rc = span_push(sp, prev, ms, 0, e)) < 0)
                return rc;
            if ((rc = span_push(sp, ms, ms + p->litlen, 1, e)) < 0)
                return rc;
            prev = pos = ms + p->litlen;
        }
    } else {
        for (size_t i = 0; i < len;) {
            size_t n;
            uint32_t cp = utf8_get(s + i, &n);
            int hit = p->kind == PAT_DIGIT ? (cp >= '0' && cp <= '9')
                    : p->kind == PAT_SPACE ? is_white_space(cp)
                    : (n == p->litlen && !memcmp(s + i, p->lit, n));
            if (hit) {
                if (prev < i && (rc = span_push(sp, prev, i, 0, e)) < 0)
                    return rc;
                if ((rc = span_push(sp, i, i + n, 1, e)) < 0)
                    return rc;
                prev = i + n;
            }
            i += n;
        }
    }
    if (prev != len && (rc = span_push(sp, prev, len, 0, e)) < 0)
        return rc;
    return 0;
}

/*
 * NormalizedString::split's behaviors, in place: afterwards sp holds the
 * spans to keep (m = 1 marks one to remove, and is dropped).
 */
static void apply_behavior(struct spans *sp, enum behavior beh, int invert)
{
    size_t k = 0;
    int prev = 0;

    for (size_t i = 0; i < sp->n; i++)
        sp->v[i].m ^= invert;
    switch (beh) {
    case BEH_REMOVED:
        for (size_t i = 0; i < sp->n; i++)
            if (!sp->v[i].m)
                sp->v[k++] = sp->v[i];
        sp->n = k;
        return;
    case BEH_ISOLATED:
        for (size_t i = 0; i < sp->n; i++)
            sp->v[i].m = 0;
        return;
    case BEH_CONTIGUOUS:
        for (size_t i = 0; i < sp->n; i++) {
            int m = sp->v[i].m;
            if (k && m == prev)
                sp->v[k - 1].e = sp->v[i].e;
            else
                sp->v[k++] = (struct span){sp->v[i].s, sp->v[i].e, 0};
            prev = m;
        }
        sp->n = k;
        return;
    case BEH_MERGED_PREV:
        for (size_t i = 0; i < sp->n; i++) {
            int m = sp->v[i].m;
            if (k && m && !prev)
                sp->v[k - 1].e = sp->v[i].e;
            else
                sp->v[k++] = (struct span){sp->v[i].s, sp->v[i].e, 0};
            prev = m;
        }
        sp->n = k;
        return;
    case BEH_MERGED_NEXT: {
        /* right to left, then the kept spans are moved to the front in order */
        size_t w = sp->n;
        for (size_t i = sp->n; i-- > 0;) {
            int m = sp->v[i].m;
            if (w < sp->n && m && !prev)
                sp->v[w].s = sp->v[i].s;
            else
                sp->v[--w] = (struct span){sp->v[i].s, sp->v[i].e, 0};
            prev = m;
        }
        memmove(sp->v, sp->v + w, (sp->n - w) * sizeof(*sp->v));
        sp->n -= w;
        return;
    }
    }
}

/* ---- pieces ---- */

struct piece {
    size_t off, len;      /* text in the list's arena, when id < 0 */
    int32_t id;           /* a finished token */
    size_t z0;            /* bytes at its start that stem from the text's first character */
};

struct plist {
    gq_buf text;
    struct piece *v;
    size_t n, cap;
};

static int plist_push(struct plist *p, const char *s, size_t n, int32_t id, size_t z0, gq_err *e)
{
    int rc;
    if (id == -1 && n == 0)
        return 0;   /* the library drops empty pieces (id -2: a decoded token, kept) */
    if (!p->text.ptr && (rc = gq_buf_grow(&p->text, 1, e)) < 0)
        return rc;   /* text.ptr + off is then always defined */
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct piece *v = gq_realloc(p->v, cap * sizeof(*v));
        if (!v)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
        p->v = v;
        p->cap = cap;
    }
    p->v[p->n] = (struct piece){p->text.len, n, id, z0 < n ? z0 : n};
    if (n && (rc = gq_buf_append(&p->text, s, n, e)) < 0)
        return rc;
    p->n++;
    return 0;
}

/*
 * The z0 of the piece [s, e) of a piece whose z0 is given.  Metaspace's
 * prepend_scheme "first" asks whether a piece starts at offset 0 of the
 * original text (NormalizedString::offsets_original); the bytes that stem
 * from the first character (itself, what normalizers put in front of it or
 * made of it) are always a prefix of a piece, so its length says it.
 */
static size_t sub_z0(size_t z0, size_t s, size_t e)
{
    return s < z0 ? (e < z0 ? e : z0) - s : 0;
}

static void plist_clear(struct plist *p)
{
    gq_buf_clear(&p->text);
    p->n = 0;
}

static void plist_free(struct plist *p)
{
    gq_buf_free(&p->text);
    gq_free(p->v);
}

/* ---- added tokens ---- */

static int word_char_at(const tokenizer *t, const char *s, size_t len, size_t pos, struct work *w)
{
    int rc = pcre2_match(t->word_re, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED, w->md,
                         NULL);
    return rc >= 0;
}

/* Start of the trailing white space of s[0, end). */
static size_t trailing_space_start(const char *s, size_t end)
{
    size_t i = end;
    while (i > 0) {
        size_t j = i - 1, n;
        while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80)
            j--;
        if (!is_white_space(utf8_get(s + j, &n)))
            break;
        i = j;
    }
    return i;
}

/* End of the white space starting at s[pos]. */
static size_t leading_space_end(const char *s, size_t len, size_t pos)
{
    while (pos < len) {
        size_t n;
        if (!is_white_space(utf8_get(s + pos, &n)))
            break;
        pos += n;
    }
    return pos;
}

/* Leftmost-longest added token in s[pos, len): its index, or -1; *at its start. */
static long matcher_find(const tokenizer *t, const struct matcher *m, const char *s, size_t len, size_t pos,
                         size_t *at)
{
    if (!m->idx)
        return -1;
    for (size_t i = pos; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        for (uint32_t k = m->start[c]; k < m->start[c + 1]; k++) {
            const struct added *a = &t->added[m->idx[k]];
            if (a->patlen <= len - i && !memcmp(s + i, a->pat, a->patlen)) {
                *at = i;
                return (long)m->idx[k];
            }
        }
    }
    return -1;
}

/*
 * AddedVocabulary::find_matches + split_with_indices on s[0, len): push
 * the text between added tokens and the tokens themselves onto out.
 */
static int split_added(struct plist *out, const tokenizer *t, const struct matcher *m, const char *s,
                       size_t len, size_t z0, struct work *w, gq_err *e)
{
    size_t start_offset = 0, pos = 0, at;
    long k;
    int rc;

    while ((k = matcher_find(t, m, s, len, pos, &at)) >= 0) {
        const struct added *a = &t->added[k];
        size_t start = at, stop = at + a->patlen;
        pos = stop;   /* the search goes on after this match, taken or not */
        if (a->single_word) {
            int start_space = 1;
            if (start) {   /* the character before start, from its first byte */
                size_t j = start - 1;
                while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80)
                    j--;
                start_space = !word_char_at(t, s, len, j, w);
            }
            if (!start_space || (stop != len && word_char_at(t, s, len, stop, w)))
                continue;
        }
        if (a->lstrip) {
            size_t ns = trailing_space_start(s, start);
            start = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip)
            stop = leading_space_end(s, len, stop);
        if (start_offset < start &&
            (rc = plist_push(out, s + start_offset, start - start_offset, -1, sub_z0(z0, start_offset, start), e)) < 0)
            return rc;
        if ((rc = plist_push(out, NULL, 0, a->id, 0, e)) < 0)
            return rc;
        start_offset = stop;
    }
    if (start_offset < len)
        return plist_push(out, s + start_offset, len - start_offset, -1, sub_z0(z0, start_offset, len), e);
    return 0;
}

/* ---- normalizers ---- */

static int utf8proc_fail(ssize_t rc, gq_err *e)
{
    return GQ_FAIL(e, rc == UTF8PROC_ERROR_NOMEM ? GQ_ENOMEM : GQ_EINVAL, "tokenizer: unicode normalization failed: %s",
                   utf8proc_errmsg(rc));
}

/* One normalizer step: s[0, len) into out (cleared first). */
static int norm_step(gq_buf *out, const struct norm *nm, const char *s, size_t len, struct spans *sp,
                     struct work *w, gq_err *e)
{
    int rc = 0;

    gq_buf_clear(out);
    switch (nm->kind) {
    case N_NFC: case N_NFD: case N_NFKC: case N_NFKD: {
        utf8proc_uint8_t *dst = NULL;
        utf8proc_option_t opt = UTF8PROC_STABLE |
            (nm->kind == N_NFC || nm->kind == N_NFKC ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE) |
            (nm->kind == N_NFKC || nm->kind == N_NFKD ? UTF8PROC_COMPAT : 0);
        utf8proc_ssize_t n;
        size_t i = 0;
        /* nothing below U+0300 composes, and ASCII is the same in every form */
        unsigned char limit = nm->kind == N_NFC ? 0xCC : 0x80;
        while (i < len && (unsigned char)s[i] < limit)
            i++;
        if (i == len)
            return gq_buf_append(out, s, len, e);
        n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst, opt);
        if (n < 0)
            return utf8proc_fail(n, e);
        rc = gq_buf_append(out, dst, (size_t)n, e);
        free(dst);
        return rc;
    }
    case N_LOWER:
        for (size_t i = 0; i < len && rc == 0;) {
            size_t n;
            uint32_t cp = utf8_get(s + i, &n);
            char u[8];
            if (cp == 0x130)   /* the one unconditional multi-character lowercase mapping */
                rc = gq_buf_append(out, "i\xCC\x87", 3, e);
            else
                rc = gq_buf_append(out, u, utf8_put(u, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp)), e);
            i += n;
        }
        return rc;
    case N_STRIP: {
        size_t a = nm->left ? leading_space_end(s, len, 0) : 0;
        size_t b = nm->right ? trailing_space_start(s, len) : len;
        return b > a ? gq_buf_append(out, s + a, b - a, e) : 0;
    }
    case N_STRIP_ACCENTS:
        for (size_t i = 0; i < len && rc == 0;) {
            size_t n;
            uint32_t cp = utf8_get(s + i, &n);
            if (utf8proc_category((utf8proc_int32_t)cp) != UTF8PROC_CATEGORY_MN)
                rc = gq_buf_append(out, s + i, n, e);
            i += n;
        }
        return rc;
    case N_PREPEND:
        if (len && (rc = gq_buf_append(out, nm->str, nm->len, e)) < 0)
            return rc;
        return gq_buf_append(out, s, len, e);
    case N_REPLACE:
        if ((rc = find_spans(sp, &nm->pat, s, len, w, e)) < 0)
            return rc;
        for (size_t i = 0; i < sp->n && rc == 0; i++)
            rc = sp->v[i].m ? gq_buf_append(out, nm->str, nm->len, e)
                            : gq_buf_append(out, s + sp->v[i].s, sp->v[i].e - sp->v[i].s, e);
        return rc;
    }
    return 0;
}

/*
 * The z0 (see sub_z0) of a normalizer step's output, from its input's:
 * what the step made of the input's first z0 bytes.
 */
static int norm_z0(size_t *z0, const struct norm *nm, const char *s, size_t len, const gq_buf *out,
                   const struct spans *sp, gq_buf *scratch, struct work *w, gq_err *e)
{
    size_t z = *z0, o = 0;
    int rc;

    if (z == 0)
        return 0;
    switch (nm->kind) {
    case N_PREPEND:
        o = z + nm->len;
        break;
    case N_STRIP: {
        size_t a = nm->left ? leading_space_end(s, len, 0) : 0;
        o = a >= z ? 0 : z - a;
        break;
    }
    case N_REPLACE:
        /* a replacement takes the origin of the last character it replaces */
        for (size_t i = 0; i < sp->n && sp->v[i].s < z; i++) {
            if (sp->v[i].m) {
                if (sp->v[i].e > z)
                    break;
                o += nm->len;
            } else {
                o += (sp->v[i].e < z ? sp->v[i].e : z) - sp->v[i].s;
                if (sp->v[i].e > z)
                    break;
            }
        }
        break;
    default:   /* character-wise: the step applied to the prefix alone */
        if ((rc = norm_step(scratch, nm, s, z, NULL, w, e)) < 0)
            return rc;
        o = scratch->len;
        if ((nm->kind == N_NFC || nm->kind == N_NFKC) && out->len && o < utf8_len((unsigned char)out->ptr[0]))
            o = utf8_len((unsigned char)out->ptr[0]);   /* a first character composed with what follows */
        break;
    }
    *z0 = o < out->len ? o : out->len;
    return 0;
}

/* All normalizer steps on s[0, len); the result is left in *res (one of a, b), its z0 in *z0. */
static int normalize(gq_buf **res, size_t *z0, const tokenizer *t, const char *s, size_t len, size_t z0_in,
                     gq_buf *a, gq_buf *b, gq_buf *scratch, struct spans *sp, struct work *w, gq_err *e)
{
    gq_buf *cur = a, *nxt = b;
    int rc;

    *z0 = z0_in;
    gq_buf_clear(cur);
    if ((rc = gq_buf_append(cur, s, len, e)) < 0)
        return rc;
    for (size_t i = 0; i < t->nnorms; i++) {
        gq_buf *tmp;
        if ((rc = norm_step(nxt, &t->norms[i], cur->ptr ? cur->ptr : "", cur->len, sp, w, e)) < 0 ||
            (rc = norm_z0(z0, &t->norms[i], cur->ptr ? cur->ptr : "", cur->len, nxt, sp, scratch, w, e)) < 0)
            return rc;
        tmp = cur;
        cur = nxt;
        nxt = tmp;
    }
    *res = cur;
    return 0;
}

/* ---- pre-tokenizers ---- */

/* Push s[0, len) onto out, as byte-level characters when map is set. */
static int push_text(struct plist *out, const tokenizer *t, const char *s, size_t len, size_t z0, int map,
                     gq_buf *tmp, gq_err *e)
{
    size_t mz0 = 0;
    int rc;
    if (!map)
        return plist_push(out, s, len, -1, z0, e);
    gq_buf_clear(tmp);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((rc = gq_buf_append(tmp, t->byte_char[c], t->byte_char_len[c], e)) < 0)
            return rc;
        if (i < z0)
            mz0 += t->byte_char_len[c];
    }
    return plist_push(out, tmp->ptr, tmp->len, -1, mz0, e);
}

/* Split s[0, len) by pattern p and a behavior onto out (byte-level mapped when map). */
static int split_push(struct plist *out, const tokenizer *t, const struct pattern *p, enum behavior beh,
                      int invert, const char *s, size_t len, size_t z0, int map, struct spans *sp,
                      gq_buf *tmp, struct work *w, gq_err *e)
{
    int rc;
    if ((rc = find_spans(sp, p, s, len, w, e)) < 0)
        return rc;
    apply_behavior(sp, beh, invert);
    for (size_t i = 0; i < sp->n; i++)
        if ((rc = push_text(out, t, s + sp->v[i].s, sp->v[i].e - sp->v[i].s, sub_z0(z0, sp->v[i].s, sp->v[i].e), map,
                            tmp, e)) < 0)
            return rc;
    return 0;
}

/* One pre-tokenizer step on one piece s[0, len). */
static int pretok_step(struct plist *out, const tokenizer *t, const struct pretok *pt, const char *s, size_t len,
                       size_t z0, gq_buf *t1, gq_buf *t2, struct spans *sp, struct work *w, gq_err *e)
{
    int rc;

    switch (pt->kind) {
    case P_BYTELEVEL:
        if (pt->add_prefix_space && (len == 0 || s[0] != ' ')) {
            gq_buf_clear(t1);
            if ((rc = gq_buf_append(t1, " ", 1, e)) < 0 || (rc = gq_buf_append(t1, s, len, e)) < 0)
                return rc;
            s = t1->ptr;
            len = t1->len;
            z0 = z0 ? z0 + 1 : 0;
        }
        if (!pt->use_regex)
            return push_text(out, t, s, len, z0, 1, t2, e);
        return split_push(out, t, &pt->pat, BEH_ISOLATED, 0, s, len, z0, 1, sp, t2, w, e);
    case P_METASPACE: {
        const char *rep = pt->pat.lit;
        size_t rl = pt->pat.litlen;
        int prepend;
        size_t nz0 = 0;
        gq_buf_clear(t1);
        for (size_t i = 0; i < len; i++) {
            if ((rc = s[i] == ' ' ? gq_buf_append(t1, rep, rl, e) : gq_buf_append(t1, s + i, 1, e)) < 0)
                return rc;
            if (i < z0)
                nz0 = t1->len;
        }
        z0 = nz0;
        prepend = t1->len && (t1->len < rl || memcmp(t1->ptr, rep, rl) != 0) &&
                  (pt->scheme == PREPEND_ALWAYS || (pt->scheme == PREPEND_FIRST && z0 > 0));
        if (prepend) {
            gq_buf_clear(t2);
            if ((rc = gq_buf_append(t2, rep, rl, e)) < 0 || (rc = gq_buf_append(t2, t1->ptr, t1->len, e)) < 0)
                return rc;
            s = t2->ptr;
            len = t2->len;
            z0 = z0 ? z0 + rl : 0;
        } else {
            s = t1->ptr ? t1->ptr : "";
            len = t1->len;
        }
        if (!pt->split)
            return plist_push(out, s, len, -1, z0, e);
        return split_push(out, t, &pt->pat, BEH_MERGED_NEXT, 0, s, len, z0, 0, sp, NULL, w, e);
    }
    case P_SPLIT: case P_DIGITS: case P_WHITESPACE: case P_WSPLIT:
        return split_push(out, t, &pt->pat, pt->behavior, pt->invert, s, len, z0, 0, sp, NULL, w, e);
    }
    return 0;
}

/* ---- BPE ---- */

struct sym {
    int32_t c, prev, next;
    uint32_t len;
};

/* A merge waiting in the queue: ordered by rank, then position (key = rank << 32 | pos). */
struct qitem {
    uint64_t key;
    int32_t id;
    uint32_t plen;   /* bytes of the pair when queued: it is stale once that changed */
};

struct bpe_work {
    struct sym *sym;
    size_t symcap;
    struct qitem *q;
    size_t qn, qcap;
    gq_buf key;
};

static void q_push(struct bpe_work *bw, int32_t rank, int32_t id, uint32_t pos, uint32_t plen)
{
    size_t i = bw->qn++;
    struct qitem it = {(uint64_t)(uint32_t)rank << 32 | pos, id, plen};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (it.key >= bw->q[p].key)
            break;
        bw->q[i] = bw->q[p];
        i = p;
    }
    bw->q[i] = it;
}

static struct qitem q_pop(struct bpe_work *bw)
{
    struct qitem top = bw->q[0], last = bw->q[--bw->qn];
    size_t i = 0, n = bw->qn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && bw->q[c + 1].key < bw->q[c].key)
            c++;
        if (bw->q[c].key >= last.key)
            break;
        bw->q[i] = bw->q[c];
        i = c;
    }
    if (n)
        bw->q[i] = last;
    return top;
}

static int push_id(int32_t **v, size_t *n, size_t *cap, int32_t id, gq_err *e)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 64;
        int32_t *p = gq_realloc(*v, c * sizeof(int32_t));
        if (!p)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
        *v = p;
        *cap = c;
    }
    (*v)[(*n)++] = id;
    return 0;
}

struct ids {
    int32_t *v;
    size_t n, cap;
};

/* Word::merge_word + merge_all on s[0, n): ids appended to o. */
static int bpe_word(struct ids *o, const tokenizer *t, const char *s, size_t n, struct bpe_work *bw, gq_err *e)
{
    size_t k = 0;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    int rc;

    if (n + 1 > bw->symcap) {
        struct sym *p = gq_realloc(bw->sym, (n + 1) * sizeof(*p));
        struct qitem *q = gq_realloc(bw->q, (3 * n + 3) * sizeof(*q));
        if (p)
            bw->sym = p;
        if (q)
            bw->q = q;
        if (!p || !q)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
        bw->symcap = n + 1;
        bw->qcap = 3 * n + 3;
    }
#define ADD_SYM(id_, len_)                                                                   \
    do {                                                                                     \
        bw->sym[k] = (struct sym){(id_), (int32_t)k - 1, (int32_t)k + 1, (uint32_t)(len_)}; \
        k++;                                                                                 \
    } while (0)
    for (size_t i = 0; i < n;) {
        size_t cl = utf8_len((unsigned char)s[i]);
        const char *key = s + i;
        size_t keylen = cl;
        int32_t id;

        if ((i > 0 && t->prefix) || (i + cl == n && t->suffix)) {
            gq_buf_clear(&bw->key);
            if ((i > 0 && t->prefix && (rc = gq_buf_append(&bw->key, t->prefix, t->prefix_len, e)) < 0) ||
                (rc = gq_buf_append(&bw->key, s + i, cl, e)) < 0 ||
                (i + cl == n && t->suffix && (rc = gq_buf_append(&bw->key, t->suffix, t->suffix_len, e)) < 0))
                return rc;
            key = bw->key.ptr;
            keylen = bw->key.len;
        }
        i += cl;
        if ((id = vocab_find(t, key, keylen)) >= 0) {
            if (unk >= 0) {
                ADD_SYM(unk, unk_len);
                unk = -1;
            }
            ADD_SYM(id, cl);
            continue;
        }
        if (t->byte_fallback) {
            size_t b;
            for (b = 0; b < keylen && t->byte_tok[(unsigned char)key[b]] >= 0; b++)
                ;
            if (b == keylen) {
                /* the library adds these without flushing a pending unk first */
                if (k + keylen > bw->symcap) {
                    struct sym *p = gq_realloc(bw->sym, (k + keylen + n + 1) * sizeof(*p));
                    struct qitem *q = gq_realloc(bw->q, 3 * (k + keylen + n + 1) * sizeof(*q));
                    if (p)
                        bw->sym = p;
                    if (q)
                        bw->q = q;
                    if (!p || !q)
                        return GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
                    bw->symcap = k + keylen + n + 1;
                    bw->qcap = 3 * bw->symcap;
                }
                for (b = 0; b < keylen; b++)
                    ADD_SYM(t->byte_tok[(unsigned char)key[b]], 1);
                continue;
            }
        }
        if (t->unk_id == -2)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer: the model's unk_token is not in its vocab");
        if (t->unk_id >= 0) {
            if (unk >= 0 && t->fuse_unk) {
                unk_len += (uint32_t)cl;
            } else {
                if (unk >= 0)
                    ADD_SYM(unk, unk_len);
                unk = t->unk_id;
                unk_len = (uint32_t)cl;
            }
        }
    }
    if (unk >= 0)
        ADD_SYM(unk, unk_len);
#undef ADD_SYM
    if (k == 0)
        return 0;
    bw->sym[k - 1].next = -1;

    /*
     * Word::merge_all.  The library drops a queued merge when the pair now
     * at its position no longer makes the same token; a pair only changes
     * by one of its two symbols growing, and a grown pair spells a longer
     * string, hence another token: so comparing the pair's byte length
     * with the one it had when queued is the same test, without a lookup.
     */
    bw->qn = 0;
    for (size_t i = 0; i + 1 < k; i++) {
        const struct merge_slot *m = merge_find(t, bw->sym[i].c, bw->sym[i + 1].c);
        if (m)
            q_push(bw, m->rank, m->id, (uint32_t)i, bw->sym[i].len + bw->sym[i + 1].len);
    }
    while (bw->qn) {
        struct qitem top = q_pop(bw);
        uint32_t pos = (uint32_t)top.key;
        struct sym *cur = &bw->sym[pos], right;
        const struct merge_slot *m;
        if (cur->len == 0 || cur->next < 0 || cur->len + bw->sym[cur->next].len != top.plen)
            continue;   /* an expired entry */
        right = bw->sym[cur->next];
        bw->sym[cur->next].len = 0;
        cur->c = top.id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next >= 0)
            bw->sym[right.next].prev = (int32_t)pos;
        if (cur->prev >= 0 && (m = merge_find(t, bw->sym[cur->prev].c, cur->c)))
            q_push(bw, m->rank, m->id, (uint32_t)cur->prev, bw->sym[cur->prev].len + cur->len);
        if (cur->next >= 0 && (m = merge_find(t, cur->c, bw->sym[cur->next].c)))
            q_push(bw, m->rank, m->id, pos, cur->len + bw->sym[cur->next].len);
    }
    for (size_t i = 0; i < k; i++)
        if (bw->sym[i].len && (rc = push_id(&o->v, &o->n, &o->cap, bw->sym[i].c, e)) < 0)
            return rc;
    return 0;
}

#define METASPACE "\xE2\x96\x81"   /* U+2581, SentencePiece's word boundary */

/*
 * BPE::tokenize on one piece s[0, n): ids appended to o.  Without a
 * pre-tokenizer (SentencePiece-style tokenizers) a piece is a whole text
 * and the merge queue grows with it; when no token of the vocab holds
 * U+2581 right after another character (checked at load), no merge can
 * join the two sides of such a place, so the words between them are merged
 * on their own, with the same result.
 */
static int bpe_piece(struct ids *o, const tokenizer *t, const char *s, size_t n, struct bpe_work *bw, gq_err *e)
{
    size_t start = 0;
    int rc;

    if (t->ignore_merges) {
        int32_t whole = vocab_find(t, s, n);
        if (whole >= 0)
            return push_id(&o->v, &o->n, &o->cap, whole, e);
    }
    if (!t->split_at_metaspace)
        return bpe_word(o, t, s, n, bw, e);
    for (size_t i = 3; i + 3 <= n; i++) {
        if (memcmp(s + i, METASPACE, 3) != 0 || !memcmp(s + i - 3, METASPACE, 3))
            continue;
        if ((rc = bpe_word(o, t, s + start, i - start, bw, e)) < 0)
            return rc;
        start = i;
    }
    return bpe_word(o, t, s + start, n - start, bw, e);
}

/* ---- encoding ---- */

int tokenizer_encode(int32_t **ids, size_t *n, const tokenizer *t, const char *text, size_t len,
                     int add_special, gq_err *e)
{
    struct ids o = {NULL, 0, 0};
    struct work w = {NULL};
    struct plist a = {GQ_BUF_INIT, NULL, 0, 0}, b = {GQ_BUF_INIT, NULL, 0, 0}, tmp;
    gq_buf n1 = GQ_BUF_INIT, n2 = GQ_BUF_INIT, t1 = GQ_BUF_INIT, t2 = GQ_BUF_INIT;
    struct spans sp = {NULL, 0, 0};
    struct bpe_work bw = {NULL, 0, NULL, 0, 0, GQ_BUF_INIT};
    size_t bad;
    int rc = 0;

    GQ_ASSERT_ARG(e, ids && n && t && (text || len == 0));
    if ((bad = utf8_check(text, len)) != len)
        return GQ_FAIL(e, GQ_EINVAL, "text is not valid UTF-8 (at byte %zu)", bad);
    if (!(w.md = pcre2_match_data_create(1, NULL))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
        goto done;
    }
    /* 1. added tokens in the raw text */
    if ((rc = split_added(&a, t, &t->raw, text ? text : "", len, len ? utf8_len((unsigned char)text[0]) : 0, &w,
                          e)) < 0)
        goto done;
    /* 2. normalize each piece, then added tokens in normalized form */
    for (size_t i = 0; i < a.n; i++) {
        const struct piece *p = &a.v[i];
        gq_buf *nb;
        size_t z0;
        if (p->id >= 0) {
            rc = plist_push(&b, NULL, 0, p->id, 0, e);
        } else if ((rc = normalize(&nb, &z0, t, a.text.ptr + p->off, p->len, p->z0, &n1, &n2, &t1, &sp, &w,
                                   e)) == 0) {
            rc = split_added(&b, t, &t->normed, nb->ptr ? nb->ptr : "", nb->len, z0, &w, e);
        }
        if (rc < 0)
            goto done;
    }
    /* 3. pre-tokenizer steps */
    for (size_t s = 0; s < t->npretoks; s++) {
        plist_clear(&a);
        for (size_t i = 0; i < b.n; i++) {
            const struct piece *p = &b.v[i];
            rc = p->id >= 0 ? plist_push(&a, NULL, 0, p->id, 0, e)
                            : pretok_step(&a, t, &t->pretoks[s], b.text.ptr + p->off, p->len, p->z0, &t1, &t2,
                                          &sp, &w, e);
            if (rc < 0)
                goto done;
        }
        tmp = a;
        a = b;
        b = tmp;
    }
    /* 4. the model, 5. the post-processor */
    for (size_t i = 0; add_special && i < t->npost_pre; i++)
        if ((rc = push_id(&o.v, &o.n, &o.cap, t->post_pre[i], e)) < 0)
            goto done;
    for (size_t i = 0; i < b.n; i++) {
        const struct piece *p = &b.v[i];
        rc = p->id >= 0 ? push_id(&o.v, &o.n, &o.cap, p->id, e)
                        : bpe_piece(&o, t, b.text.ptr + p->off, p->len, &bw, e);
        if (rc < 0)
            goto done;
    }
    for (size_t i = 0; add_special && i < t->npost_post; i++)
        if ((rc = push_id(&o.v, &o.n, &o.cap, t->post_post[i], e)) < 0)
            goto done;
    if (!o.v && !(o.v = gq_malloc(sizeof(int32_t)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
        goto done;
    }
    *ids = o.v;
    *n = o.n;
    o.v = NULL;
done:
    gq_free(o.v);
    pcre2_match_data_free(w.md);
    plist_free(&a);
    plist_free(&b);
    gq_buf_free(&n1);
    gq_buf_free(&n2);
    gq_buf_free(&t1);
    gq_buf_free(&t2);
    gq_free(sp.v);
    gq_free(bw.sym);
    gq_free(bw.q);
    gq_buf_free(&bw.key);
    return rc;
}

/* ---- decoding ---- */

static const struct added *added_by_id(const tokenizer *t, int32_t id)
{
    for (size_t i = 0; i < t->nadded; i++)
        if (t->added[i].id == id)
            return &t->added[i];
    return NULL;
}

/* Rust's String::from_utf8_lossy: each maximal invalid part becomes U+FFFD. */
static int append_lossy(gq_buf *out, const char *s, size_t len, gq_err *e)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    int rc = 0;
    while (i < len && rc == 0) {
        size_t part, k = utf8_seq(u + i, len - i, &part);
        if (k) {
            rc = gq_buf_append(out, s + i, k, e);
            i += k;
        } else {
            rc = gq_buf_append(out, "\xEF\xBF\xBD", 3, e);
            i += part;
        }
    }
    return rc;
}

/* One decoder step: the token list in into out. */
static int dec_step(struct plist *out, const tokenizer *t, const struct decoder *d, const struct plist *in,
                    gq_buf *tmp, struct spans *sp, struct work *w, gq_err *e)
{
    int rc = 0;

    plist_clear(out);
    switch (d->kind) {
    case D_BYTELEVEL:
        gq_buf_clear(tmp);
        for (size_t i = 0; i < in->n && rc == 0; i++) {
            const char *s = in->text.ptr + in->v[i].off;
            size_t len = in->v[i].len, j, start = tmp->len;
            for (j = 0; j < len && rc == 0;) {
                size_t cl;
                uint32_t cp = utf8_get(s + j, &cl);
                if (cp >= 512 || t->char_byte[cp] < 0)
                    break;
                rc = gq_buf_append(tmp, &(char){(char)t->char_byte[cp]}, 1, e);
                j += cl;
            }
            if (rc == 0 && j < len) {   /* not all stand-ins: the token's own bytes */
                tmp->len = start;
                rc = gq_buf_append(tmp, s, len, e);
            }
        }
        if (rc == 0) {
            gq_buf lossy = GQ_BUF_INIT;
            if ((rc = append_lossy(&lossy, tmp->ptr ? tmp->ptr : "", tmp->len, e)) == 0)
                rc = plist_push(out, lossy.ptr ? lossy.ptr : "", lossy.len, -2, 0, e);
            gq_buf_free(&lossy);
        }
        return rc;
    case D_METASPACE:
        for (size_t i = 0; i < in->n && rc == 0; i++) {
            const char *s = in->text.ptr + in->v[i].off;
            size_t len = in->v[i].len;
            gq_buf_clear(tmp);
            for (size_t j = 0; j < len && rc == 0;) {
                size_t cl = utf8_len((unsigned char)s[j]);
                if (cl == d->chlen && !memcmp(s + j, d->ch, cl)) {
                    if (!(i == 0 && d->prepend))
                        rc = gq_buf_append(tmp, " ", 1, e);
                } else {
                    rc = gq_buf_append(tmp, s + j, cl, e);
                }
                j += cl;
            }
            if (rc == 0)
                rc = plist_push(out, tmp->ptr ? tmp->ptr : "", tmp->len, -2, 0, e);
        }
        return rc;
    case D_BYTEFALLBACK: {
        gq_buf bytes = GQ_BUF_INIT;
        for (size_t i = 0; i <= in->n && rc == 0; i++) {
            const char *s = i < in->n ? in->text.ptr + in->v[i].off : "";
            size_t len = i < in->n ? in->v[i].len : 0;
            int byte = -1;
            if (len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') {
                /* u8::from_str_radix(&token[3..5], 16), which takes a leading '+' */
                const char *h = strchr("0123456789abcdef", s[3] | 0x20), *l = strchr("0123456789abcdef", s[4] | 0x20);
                if (s[3] == '+' && l && s[4])
                    byte = (int)(l - "0123456789abcdef");
                else if (h && l && s[3] && s[4])
                    byte = (int)(h - "0123456789abcdef") * 16 + (int)(l - "0123456789abcdef");
            }
            if (byte >= 0 && i < in->n) {
                rc = gq_buf_append(&bytes, &(char){(char)byte}, 1, e);
                continue;
            }
            if (bytes.len) {
                if (utf8_check(bytes.ptr, bytes.len) == bytes.len)
                    rc = plist_push(out, bytes.ptr, bytes.len, -2, 0, e);
                else
                    for (size_t k = 0; k < bytes.len && rc == 0; k++)
                        rc = plist_push(out, "\xEF\xBF\xBD", 3, -2, 0, e);
                gq_buf_clear(&bytes);
            }
            if (rc == 0 && i < in->n)
                rc = plist_push(out, s, len, -2, 0, e);
        }
        gq_buf_free(&bytes);
        return rc;
    }
    case D_FUSE:
        gq_buf_clear(tmp);
        for (size_t i = 0; i < in->n && rc == 0; i++)
            rc = gq_buf_append(tmp, in->text.ptr + in->v[i].off, in->v[i].len, e);
        return rc ? rc : plist_push(out, tmp->ptr ? tmp->ptr : "", tmp->len, -2, 0, e);
    case D_STRIP:
        for (size_t i = 0; i < in->n && rc == 0; i++) {
            const char *s = in->text.ptr + in->v[i].off;
            size_t len = in->v[i].len, a = 0, b = len;
            for (size_t c = 0; c < d->start && a + d->chlen <= len && !memcmp(s + a, d->ch, d->chlen); c++)
                a += d->chlen;
            for (size_t c = 0; c < d->stop && b >= a + d->chlen && !memcmp(s + b - d->chlen, d->ch, d->chlen); c++)
                b -= d->chlen;
            rc = plist_push(out, s + a, b - a, -2, 0, e);
        }
        return rc;
    case D_REPLACE:
        for (size_t i = 0; i < in->n && rc == 0; i++) {
            const char *s = in->text.ptr + in->v[i].off;
            size_t len = in->v[i].len;
            gq_buf_clear(tmp);
            if ((rc = find_spans(sp, &d->pat, s, len, w, e)) < 0)
                return rc;
            for (size_t k = 0; k < sp->n && rc == 0; k++)
                rc = sp->v[k].m ? gq_buf_append(tmp, d->str, d->len, e)
                                : gq_buf_append(tmp, s + sp->v[k].s, sp->v[k].e - sp->v[k].s, e);
            if (rc == 0)
                rc = plist_push(out, tmp->ptr ? tmp->ptr : "", tmp->len, -2, 0, e);
        }
        return rc;
    }
    return 0;
}

int tokenizer_decode(char **text, size_t *len, const tokenizer *t, const int32_t *ids, size_t n,
                     int skip_special, gq_err *e)
{
    struct plist a = {GQ_BUF_INIT, NULL, 0, 0}, b = {GQ_BUF_INIT, NULL, 0, 0}, tmp;
    gq_buf out = GQ_BUF_INIT, scratch = GQ_BUF_INIT;
    struct spans sp = {NULL, 0, 0};
    struct work w = {NULL};
    int rc = 0;

    GQ_ASSERT_ARG(e, text && len && t && (ids || n == 0));
    if (!(w.md = pcre2_match_data_create(1, NULL))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory decoding ids");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const struct added *ad = added_by_id(t, ids[i]);
        const char *s = NULL;
        size_t l = 0;
        int special = 0;
        if (ad) {   /* simple_id_to_token: the normalized form of a normalized token */
            s = ad->pat;
            l = ad->patlen;
        } else if (ids[i] >= 0 && (size_t)ids[i] < t->id_cap && t->id_len[ids[i]] != UINT32_MAX) {
            s = t->arena + t->id_off[ids[i]];
            l = t->id_len[ids[i]];
        }
        /* is_special_token looks the string up among the special tokens' contents */
        for (size_t k = 0; s && skip_special && k < t->nadded && !special; k++)
            special = t->added[k].special && t->added[k].len == l && !memcmp(t->added[k].content, s, l);
        if (!s || (skip_special && special))
            continue;   /* unknown ids are skipped, as the library does */
        if ((rc = plist_push(&a, s, l, -2, 0, e)) < 0)
            goto done;
    }
    if (!t->has_decoder) {
        for (size_t i = 0; i < a.n && rc == 0; i++)
            if ((i && (rc = gq_buf_append(&out, " ", 1, e)) < 0) ||
                (rc = gq_buf_append(&out, a.text.ptr + a.v[i].off, a.v[i].len, e)) < 0)
                goto done;
    } else {
        for (size_t s = 0; s < t->ndecs; s++) {
            if ((rc = dec_step(&b, t, &t->decs[s], &a, &scratch, &sp, &w, e)) < 0)
                goto done;
            tmp = a;
            a = b;
            b = tmp;
        }
        for (size_t i = 0; i < a.n; i++)
            if ((rc = gq_buf_append(&out, a.text.ptr + a.v[i].off, a.v[i].len, e)) < 0)
                goto done;
    }
    if (!out.ptr && (rc = gq_buf_append(&out, "", 0, e)) < 0)
        goto done;
    if (!out.ptr && !(out.ptr = gq_calloc(1, 1))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory decoding ids");
        goto done;
    }
    *len = out.len;
    *text = gq_buf_detach(&out);
done:
    plist_free(&a);
    plist_free(&b);
    gq_buf_free(&out);
    gq_buf_free(&scratch);
    gq_free(sp.v);
    pcre2_match_data_free(w.md);
    return rc;
}

/* ---- loading ---- */

/* Refuse a component we do not implement, by name. */
static int unsupported(gq_err *e, const char *what, const gq_json *j)
{
    const char *type = gq_json_string(gq_json_get(j, "type"));
    char q[64];
    return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: unsupported %s '%s'", what,
                   gq_err_quote(q, sizeof(q), type ? type : gq_json_type_name(gq_json_type_of(j))));
}

/* A boolean member: dflt when absent or null, an error when of another type. */
static int get_flag(int *out, const gq_json *obj, const char *key, int dflt, const char *what, gq_err *e)
{
    const gq_json *v = gq_json_get(obj, key);
    if (!v || gq_json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (gq_json_bool(v) < 0)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: %s.%s must be true or false", what, key);
    *out = gq_json_bool(v);
    return 0;
}

static int get_string(const char **out, const gq_json *obj, const char *key, const char *what, gq_err *e)
{
    if (!(*out = gq_json_string(gq_json_get(obj, key))))
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: %s.%s must be a string", what, key);
    return 0;
}

static int dup_string(char **out, size_t *len, const char *s, gq_err *e)
{
    *len = strlen(s);
    if (!(*out = gq_strdup(s)))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory loading a tokenizer");
    return 0;
}

/* Metaspace's prepend_scheme, with the legacy add_prefix_space as the library reads it. */
static int prepend_scheme(int *out, const gq_json *j, const char *what, gq_err *e)
{
    const gq_json *ps = gq_json_get(j, "prepend_scheme");
    int aps = 1, rc;
    *out = PREPEND_ALWAYS;
    if (ps && !gq_json_is_null(ps)) {
        const char *s = gq_json_string(ps);
        if (s && !strcmp(s, "always"))
            *out = PREPEND_ALWAYS;
        else if (s && !strcmp(s, "first"))
            *out = PREPEND_FIRST;
        else if (s && !strcmp(s, "never"))
            *out = PREPEND_NEVER;
        else
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: %s.prepend_scheme must be \"always\", \"first\" or \"never\"",
                           what);
    }
    if ((rc = get_flag(&aps, j, "add_prefix_space", 1, what, e)) < 0)
        return rc;
    if (!aps) {
        if (*out != PREPEND_NEVER)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: %s: add_prefix_space does not match declared prepend_scheme",
                           what);
    }
    return 0;
}

static int parse_normalizer(tokenizer *t, const gq_json *j, int depth, gq_err *e)
{
    const char *type, *s;
    struct norm *nm;
    int rc;

    if (!j || gq_json_is_null(j))
        return 0;
    if (depth > 16)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: normalizers nested too deeply");
    type = gq_json_string(gq_json_get(j, "type"));
    if (type && !strcmp(type, "Sequence")) {
        const gq_json *list = gq_json_get(j, "normalizers");
        if (gq_json_type_of(list) != GQ_JSON_ARRAY)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: a Sequence normalizer needs a \"normalizers\" array");
        for (const gq_json *c = gq_json_first(list); c; c = gq_json_next(c))
            if ((rc = parse_normalizer(t, c, depth + 1, e)) < 0)
                return rc;
        return 0;
    }
    if (!type)
        return unsupported(e, "normalizer", j);
    if (t->nnorms == MAX_STEPS)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: more than %d normalizers", MAX_STEPS);
    nm = &t->norms[t->nnorms];
    memset(nm, 0, sizeof(*nm));
    if (!strcmp(type, "NFC"))
        nm->kind = N_NFC;
    else if (!strcmp(type, "NFD"))
        nm->kind = N_NFD;
    else if (!strcmp(type, "NFKC"))
        nm->kind = N_NFKC;
    else if (!strcmp(type, "NFKD"))
        nm->kind = N_NFKD;
    else if (!strcmp(type, "Lowercase"))
        nm->kind = N_LOWER;
    else if (!strcmp(type, "StripAccents"))
        nm->kind = N_STRIP_ACCENTS;
    else if (!strcmp(type, "Strip")) {
        nm->kind = N_STRIP;
        if ((rc = get_flag(&nm->left, j, "strip_left", 1, "normalizer Strip", e)) < 0 ||
            (rc = get_flag(&nm->right, j, "strip_right", 1, "normalizer Strip", e)) < 0)
            return rc;
    } else if (!strcmp(type, "Prepend")) {
        nm->kind = N_PREPEND;
        t->nnorms++;
        if ((rc = get_string(&s, j, "prepend", "normalizer Prepend", e)) < 0)
            return rc;
        return dup_string(&nm->str, &nm->len, s, e);
    } else if (!strcmp(type, "Replace")) {
        nm->kind = N_REPLACE;
        t->nnorms++;
        if ((rc = get_string(&s, j, "content", "normalizer Replace", e)) < 0 ||
            (rc = dup_string(&nm->str, &nm->len, s, e)) < 0)
            return rc;
        return pattern_parse(&nm->pat, gq_json_get(j, "pattern"), "normalizer Replace", e);
    } else
        return unsupported(e, "normalizer", j);
    t->nnorms++;
    return 0;
}

static int parse_behavior(enum behavior *out, const gq_json *j, gq_err *e)
{
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                        "Contiguous"};
    const char *s = gq_json_string(gq_json_get(j, "behavior"));
    for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(s, names[i])) {
            *out = (enum behavior)i;
            return 0;
        }
    return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: pre_tokenizer Split: behavior must be one of Removed, Isolated, "
                   "MergedWithPrevious, MergedWithNext, Contiguous");
}

static int parse_pretok(tokenizer *t, const gq_json *j, int depth, gq_err *e)
{
    const char *type;
    struct pretok *pt;
    int rc, flag = 0;

    if (!j || gq_json_is_null(j))
        return 0;
    if (depth > 16)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: pre-tokenizers nested too deeply");
    type = gq_json_string(gq_json_get(j, "type"));
    if (type && !strcmp(type, "Sequence")) {
        const gq_json *list = gq_json_get(j, "pretokenizers");
        if (gq_json_type_of(list) != GQ_JSON_ARRAY)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: a Sequence pre_tokenizer needs a \"pretokenizers\" array");
        for (const gq_json *c = gq_json_first(list); c; c = gq_json_next(c))
            if ((rc = parse_pretok(t, c, depth + 1, e)) < 0)
                return rc;
        return 0;
    }
    if (!type)
        return unsupported(e, "pre_tokenizer", j);
    if (t->npretoks == MAX_STEPS)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: more than %d pre-tokenizers", MAX_STEPS);
    pt = &t->pretoks[t->npretoks];
    memset(pt, 0, sizeof(*pt));
    if (!strcmp(type, "ByteLevel")) {
        pt->kind = P_BYTELEVEL;
        t->npretoks++;
        if ((rc = get_flag(&pt->add_prefix_space, j, "add_prefix_space", 1, "pre_tokenizer ByteLevel", e)) < 0 ||
            (rc = get_flag(&pt->use_regex, j, "use_regex", 1, "pre_tokenizer ByteLevel", e)) < 0)
            return rc;
        pt->pat.kind = PAT_REGEX;
        return pt->use_regex ? regex_compile(&pt->pat.re, gpt2_pattern, strlen(gpt2_pattern),
                                             "pre_tokenizer ByteLevel", e) : 0;
    }
    if (!strcmp(type, "Split")) {
        pt->kind = P_SPLIT;
        t->npretoks++;
        if ((rc = parse_behavior(&pt->behavior, j, e)) < 0 ||
            (rc = get_flag(&pt->invert, j, "invert", 0, "pre_tokenizer Split", e)) < 0)
            return rc;
        return pattern_parse(&pt->pat, gq_json_get(j, "pattern"), "pre_tokenizer Split", e);
    }
    if (!strcmp(type, "Metaspace")) {
        char rep[5];
        size_t rl;
        pt->kind = P_METASPACE;
        t->npretoks++;
        if ((rc = one_char(rep, &rl, gq_json_get(j, "replacement"), "pre_tokenizer Metaspace.replacement", e)) < 0 ||
            (rc = prepend_scheme(&pt->scheme, j, "pre_tokenizer Metaspace", e)) < 0 ||
            (rc = get_flag(&pt->split, j, "split", 1, "pre_tokenizer Metaspace", e)) < 0)
            return rc;
        pt->pat.kind = PAT_CHAR;
        return dup_string(&pt->pat.lit, &pt->pat.litlen, rep, e);
    }
    if (!strcmp(type, "Digits")) {
        pt->kind = P_DIGITS;
        t->npretoks++;
        if ((rc = get_flag(&flag, j, "individual_digits", 0, "pre_tokenizer Digits", e)) < 0)
            return rc;
        pt->pat.kind = PAT_DIGIT;
        pt->behavior = flag ? BEH_ISOLATED : BEH_CONTIGUOUS;
        return 0;
    }
    if (!strcmp(type, "Whitespace")) {
        pt->kind = P_WHITESPACE;
        t->npretoks++;
        pt->pat.kind = PAT_REGEX;
        pt->behavior = BEH_REMOVED;
        pt->invert = 1;
        return regex_compile(&pt->pat.re, whitespace_pattern, strlen(whitespace_pattern),
                             "pre_tokenizer Whitespace", e);
    }
    if (!strcmp(type, "WhitespaceSplit")) {
        pt->kind = P_WSPLIT;
        t->npretoks++;
        pt->pat.kind = PAT_SPACE;
        pt->behavior = BEH_REMOVED;
        return 0;
    }
    return unsupported(e, "pre_tokenizer", j);
}

/* Ids of a [token, id] pair (RobertaProcessing / BertProcessing cls and sep). */
static int pair_id(int32_t *out, const gq_json *j, const char *what, gq_err *e)
{
    long long id;
    if (gq_json_type_of(j) != GQ_JSON_ARRAY || gq_json_size(j) != 2 || !gq_json_string(gq_json_first(j)))
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: %s must be [token, id]", what);
    if (gq_json_int(&id, gq_json_next(gq_json_first(j)), 0, INT32_MAX, what, e) < 0)
        return GQ_EINVAL;
    *out = (int32_t)id;
    return 0;
}

/* Wrap the post-processor ids: pre goes before the current ones, post after. */
static int post_wrap(tokenizer *t, const int32_t *pre, size_t npre, const int32_t *post, size_t npost, gq_err *e)
{
    int32_t *a = gq_mallocn(t->npost_pre + npre + 1, sizeof(int32_t));
    int32_t *b = gq_mallocn(t->npost_post + npost + 1, sizeof(int32_t));
    if (!a || !b) {
        gq_free(a);
        gq_free(b);
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory loading a tokenizer");
    }
    if (npre)
        memcpy(a, pre, npre * sizeof(int32_t));
    if (t->npost_pre)
        memcpy(a + npre, t->post_pre, t->npost_pre * sizeof(int32_t));
    if (t->npost_post)
        memcpy(b, t->post_post, t->npost_post * sizeof(int32_t));
    if (npost)
        memcpy(b + t->npost_post, post, npost * sizeof(int32_t));
    gq_free(t->post_pre);
    gq_free(t->post_post);
    t->post_pre = a;
    t->post_post = b;
    t->npost_pre += npre;
    t->npost_post += npost;
    return 0;
}

static int parse_template(tokenizer *t, const gq_json *j, gq_err *e)
{
    const gq_json *single = gq_json_get(j, "single"), *specials = gq_json_get(j, "special_tokens");
    int32_t pre[64], post[64];
    size_t npre = 0, npost = 0, nseq = 0;
    char q[64];

    if (gq_json_type_of(single) != GQ_JSON_ARRAY)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: TemplateProcessing needs a \"single\" array");
    for (const gq_json *it = gq_json_first(single); it; it = gq_json_next(it)) {
        const gq_json *st = gq_json_get(it, "SpecialToken"), *sq = gq_json_get(it, "Sequence"), *def;
        const char *name;
        if (sq) {
            const char *id = gq_json_string(gq_json_get(sq, "id"));
            if (!id || strcmp(id, "A") != 0 || ++nseq > 1)
                return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: TemplateProcessing.single must hold the sequence $A once");
            continue;
        }
        if (!st || !(name = gq_json_string(gq_json_get(st, "id"))))
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: TemplateProcessing.single: items must be SpecialToken or Sequence");
        def = gq_json_get(gq_json_get(specials, name), "ids");
        if (gq_json_type_of(def) != GQ_JSON_ARRAY)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: TemplateProcessing: special token '%s' is not in special_tokens",
                           gq_err_quote(q, sizeof(q), name));
        for (const gq_json *d = gq_json_first(def); d; d = gq_json_next(d)) {
            long long id;
            if (npre + npost == 64)
                return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: TemplateProcessing adds more than 64 ids");
            if (gq_json_int(&id, d, 0, INT32_MAX, "TemplateProcessing special token id", e) < 0)
                return GQ_EINVAL;
            if (nseq)
                post[npost++] = (int32_t)id;
            else
                pre[npre++] = (int32_t)id;
        }
    }
    if (!nseq)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: TemplateProcessing.single must hold the sequence $A once");
    return post_wrap(t, pre, npre, post, npost, e);
}

static int parse_post(tokenizer *t, const gq_json *j, int depth, gq_err *e)
{
    const char *type;
    int rc;

    if (!j || gq_json_is_null(j))
        return 0;
    if (depth > 16)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: post-processors nested too deeply");
    type = gq_json_string(gq_json_get(j, "type"));
    if (!type)
        return unsupported(e, "post_processor", j);
    if (!strcmp(type, "ByteLevel"))
        return 0;   /* offsets only */
    if (!strcmp(type, "TemplateProcessing"))
        return parse_template(t, j, e);
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        int32_t cls, sep;
        if ((rc = pair_id(&cls, gq_json_get(j, "cls"), "post_processor cls", e)) < 0 ||
            (rc = pair_id(&sep, gq_json_get(j, "sep"), "post_processor sep", e)) < 0)
            return rc;
        return post_wrap(t, &cls, 1, &sep, 1, e);
    }
    if (!strcmp(type, "Sequence")) {
        const gq_json *list = gq_json_get(j, "processors");
        if (gq_json_type_of(list) != GQ_JSON_ARRAY)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: a Sequence post_processor needs a \"processors\" array");
        for (const gq_json *c = gq_json_first(list); c; c = gq_json_next(c))
            if ((rc = parse_post(t, c, depth + 1, e)) < 0)
                return rc;
        return 0;
    }
    return unsupported(e, "post_processor", j);
}

static int parse_decoder(tokenizer *t, const gq_json *j, int depth, gq_err *e)
{
    const char *type, *s;
    struct decoder *d;
    int rc;

    if (!j || gq_json_is_null(j))
        return 0;
    if (depth > 16)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: decoders nested too deeply");
    t->has_decoder = 1;
    type = gq_json_string(gq_json_get(j, "type"));
    if (type && !strcmp(type, "Sequence")) {
        const gq_json *list = gq_json_get(j, "decoders");
        if (gq_json_type_of(list) != GQ_JSON_ARRAY)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: a Sequence decoder needs a \"decoders\" array");
        for (const gq_json *c = gq_json_first(list); c; c = gq_json_next(c))
            if ((rc = parse_decoder(t, c, depth + 1, e)) < 0)
                return rc;
        return 0;
    }
    if (!type)
        return unsupported(e, "decoder", j);
    if (t->ndecs == MAX_STEPS)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: more than %d decoders", MAX_STEPS);
    d = &t->decs[t->ndecs];
    memset(d, 0, sizeof(*d));
    if (!strcmp(type, "ByteLevel"))
        d->kind = D_BYTELEVEL;
    else if (!strcmp(type, "ByteFallback"))
        d->kind = D_BYTEFALLBACK;
    else if (!strcmp(type, "Fuse"))
        d->kind = D_FUSE;
    else if (!strcmp(type, "Metaspace")) {
        int scheme;
        d->kind = D_METASPACE;
        if ((rc = one_char(d->ch, &d->chlen, gq_json_get(j, "replacement"), "decoder Metaspace.replacement", e)) < 0 ||
            (rc = prepend_scheme(&scheme, j, "decoder Metaspace", e)) < 0)
            return rc;
        d->prepend = scheme != PREPEND_NEVER;
    } else if (!strcmp(type, "Strip")) {
        long long a, b;
        d->kind = D_STRIP;
        if ((rc = one_char(d->ch, &d->chlen, gq_json_get(j, "content"), "decoder Strip.content", e)) < 0 ||
            (rc = gq_json_int(&a, gq_json_get(j, "start"), 0, INT32_MAX, "tokenizer.json: decoder Strip.start", e)) < 0 ||
            (rc = gq_json_int(&b, gq_json_get(j, "stop"), 0, INT32_MAX, "tokenizer.json: decoder Strip.stop", e)) < 0)
            return rc;
        d->start = (size_t)a;
        d->stop = (size_t)b;
    } else if (!strcmp(type, "Replace")) {
        d->kind = D_REPLACE;
        t->ndecs++;
        if ((rc = get_string(&s, j, "content", "decoder Replace", e)) < 0 ||
            (rc = dup_string(&d->str, &d->len, s, e)) < 0)
            return rc;
        return pattern_parse(&d->pat, gq_json_get(j, "pattern"), "decoder Replace", e);
    } else
        return unsupported(e, "decoder", j);
    t->ndecs++;
    return 0;
}

#define MAX_VOCAB_ID (1 << 24)

static int load_vocab(tokenizer *t, const gq_json *vocab, gq_err *e)
{
    size_t n = gq_json_size(vocab), total = 0, off = 0;
    long long maxid = -1;

    if (gq_json_type_of(vocab) != GQ_JSON_OBJECT || n == 0)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: model.vocab must be a non-empty object");
    for (const gq_json *m = gq_json_first(vocab); m; m = gq_json_next(m)) {
        long long id;
        total += strlen(gq_json_key(m));
        if (gq_json_int(&id, m, 0, MAX_VOCAB_ID - 1, "tokenizer.json: a vocab id", e) < 0)
            return GQ_EINVAL;
        if (id > maxid)
            maxid = id;
    }
    t->arena = gq_malloc(total + 1);
    t->vocab_cap = pow2_above(n);
    t->vocab = gq_mallocn(t->vocab_cap, sizeof(*t->vocab));
    t->id_cap = (size_t)maxid + 1;
    t->id_off = gq_mallocn(t->id_cap, sizeof(uint32_t));
    t->id_len = gq_mallocn(t->id_cap, sizeof(uint32_t));
    if (!t->arena || !t->vocab || !t->id_off || !t->id_len)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for a vocabulary of %zu tokens", n);
    for (size_t i = 0; i < t->vocab_cap; i++)
        t->vocab[i].len = UINT32_MAX;
    for (size_t i = 0; i < t->id_cap; i++)
        t->id_len[i] = UINT32_MAX;
    for (const gq_json *m = gq_json_first(vocab); m; m = gq_json_next(m)) {
        const char *key = gq_json_key(m);
        size_t len = strlen(key), mask = t->vocab_cap - 1, i;
        int32_t id = (int32_t)gq_json_number(m);
        char q[64];

        if (vocab_find(t, key, len) >= 0)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: token '%s' appears twice in the vocab",
                           gq_err_quote(q, sizeof(q), key));
        memcpy(t->arena + off, key, len);
        for (i = (size_t)hash_bytes(key, len) & mask; t->vocab[i].len != UINT32_MAX; i = (i + 1) & mask)
            ;
        t->vocab[i] = (struct vocab_slot){(uint32_t)off, (uint32_t)len, id};
        if (t->id_len[id] == UINT32_MAX) {
            t->id_off[id] = (uint32_t)off;
            t->id_len[id] = (uint32_t)len;
        }
        off += len;
        t->vocab_n++;
    }
    return 0;
}

/* The two halves of a merge, either "a b" or ["a", "b"]. */
static int merge_parts(const char **a, size_t *alen, const char **b, size_t *blen, const gq_json *m, size_t rank,
                       gq_err *e)
{
    const char *s = gq_json_string(m);
    if (s) {
        const char *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: merge %zu is not two tokens separated by one space", rank);
        *a = s;
        *alen = (size_t)(sp - s);
        *b = sp + 1;
        *blen = strlen(sp + 1);
        return 0;
    }
    if (gq_json_type_of(m) == GQ_JSON_ARRAY && gq_json_size(m) == 2 && gq_json_string(gq_json_first(m)) &&
        gq_json_string(gq_json_next(gq_json_first(m)))) {
        *a = gq_json_string(gq_json_first(m));
        *alen = strlen(*a);
        *b = gq_json_string(gq_json_next(gq_json_first(m)));
        *blen = strlen(*b);
        return 0;
    }
    return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: merge %zu must be \"a b\" or [\"a\", \"b\"]", rank);
}

static int load_merges(tokenizer *t, const gq_json *merges, gq_err *e)
{
    size_t n = gq_json_size(merges), rank = 0;
    gq_buf joined = GQ_BUF_INIT;
    int rc = 0;

    if (merges && !gq_json_is_null(merges) && gq_json_type_of(merges) != GQ_JSON_ARRAY)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: model.merges must be an array");
    t->merges_cap = pow2_above(n);
    t->merges = gq_mallocn(t->merges_cap, sizeof(*t->merges));
    if (!t->merges)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for %zu merges", n);
    for (size_t i = 0; i < t->merges_cap; i++)
        t->merges[i].key = UINT64_MAX;
    for (const gq_json *m = gq_json_first(merges); m; m = gq_json_next(m), rank++) {
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0, mask = t->merges_cap - 1, i;
        int32_t ia, ib, im;
        uint64_t key;
        char q[64];

        if ((rc = merge_parts(&a, &alen, &b, &blen, m, rank, e)) < 0)
            goto done;
        ia = vocab_find(t, a, alen);
        ib = vocab_find(t, b, blen);
        /* the merged token drops b's continuing_subword_prefix */
        gq_buf_clear(&joined);
        if ((rc = gq_buf_append(&joined, a, alen, e)) < 0)
            goto done;
        if (blen >= t->prefix_len && (rc = gq_buf_append(&joined, b + t->prefix_len, blen - t->prefix_len, e)) < 0)
            goto done;
        im = blen >= t->prefix_len ? vocab_find(t, joined.ptr, joined.len) : -1;
        if (ia < 0 || ib < 0 || im < 0) {
            rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: merge %zu ('%s') uses a token not in the vocab", rank,
                         gq_err_quote(q, sizeof(q), joined.ptr ? joined.ptr : ""));
            goto done;
        }
        key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        for (i = (size_t)hash_u64(key) & mask; t->merges[i].key != UINT64_MAX && t->merges[i].key != key;
             i = (i + 1) & mask)
            ;
        /* a repeated merge takes its last rank, as the library's map collects them */
        t->merges[i] = (struct merge_slot){key, (int32_t)rank, im};
    }
done:
    gq_buf_free(&joined);
    return rc;
}

static int parse_model(tokenizer *t, const gq_json *model, gq_err *e)
{
    const char *type = gq_json_string(gq_json_get(model, "type"));
    const gq_json *dropout = gq_json_get(model, "dropout"), *unk = gq_json_get(model, "unk_token");
    const char *s;
    int rc;

    if (gq_json_type_of(model) != GQ_JSON_OBJECT)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: no model object");
    if (type ? strcmp(type, "BPE") != 0 : !gq_json_get(model, "merges"))
        return unsupported(e, "model", model);
    if (dropout && !gq_json_is_null(dropout) && gq_json_number(dropout) != 0.0)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: BPE dropout is not supported (it makes encoding random)");
    if ((rc = get_flag(&t->byte_fallback, model, "byte_fallback", 0, "model", e)) < 0 ||
        (rc = get_flag(&t->fuse_unk, model, "fuse_unk", 0, "model", e)) < 0 ||
        (rc = get_flag(&t->ignore_merges, model, "ignore_merges", 0, "model", e)) < 0)
        return rc;
    if ((s = gq_json_string(gq_json_get(model, "continuing_subword_prefix"))) && *s &&
        (rc = dup_string(&t->prefix, &t->prefix_len, s, e)) < 0)
        return rc;
    if ((s = gq_json_string(gq_json_get(model, "end_of_word_suffix"))) && *s &&
        (rc = dup_string(&t->suffix, &t->suffix_len, s, e)) < 0)
        return rc;
    if ((rc = load_vocab(t, gq_json_get(model, "vocab"), e)) < 0 ||
        (rc = load_merges(t, gq_json_get(model, "merges"), e)) < 0)
        return rc;
    t->unk_id = -1;
    if (unk && !gq_json_is_null(unk)) {
        if (!(s = gq_json_string(unk)))
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: model.unk_token must be a string or null");
        t->unk_id = vocab_find(t, s, strlen(s));
        if (t->unk_id < 0)
            t->unk_id = -2;   /* an error when it is needed, as in the library */
    }
    for (int b = 0; b < 256; b++) {
        char code[8];
        snprintf(code, sizeof(code), "<0x%02X>", b);
        t->byte_tok[b] = vocab_find(t, code, 6);
    }
    /* see bpe_piece: U+2581 in the vocab, only ever at the start of tokens or after another U+2581 */
    t->split_at_metaspace = !t->prefix && !t->suffix && vocab_find(t, METASPACE, 3) >= 0;
    for (size_t i = 0; i < t->vocab_cap && t->split_at_metaspace; i++) {
        const struct vocab_slot *v = &t->vocab[i];
        const char *str = t->arena + v->off, *hit;
        if (v->len == UINT32_MAX)
            continue;
        for (size_t p = 1; p + 3 <= v->len && (hit = memmem(str + p, v->len - p, METASPACE, 3)); p = (size_t)(hit - str) + 1) {
            size_t at = (size_t)(hit - str);
            if (at < 3 || memcmp(hit - 3, METASPACE, 3) != 0) {
                t->split_at_metaspace = 0;
                break;
            }
        }
    }
    return 0;
}

static int cmp_matcher(const void *pa, const void *pb, void *ctx)
{
    const tokenizer *t = ctx;
    const struct added *a = &t->added[*(const uint32_t *)pa], *b = &t->added[*(const uint32_t *)pb];
    unsigned char fa = (unsigned char)a->pat[0], fb = (unsigned char)b->pat[0];
    if (fa != fb)
        return fa < fb ? -1 : 1;
    if (a->patlen != b->patlen)
        return a->patlen > b->patlen ? -1 : 1;
    return *(const uint32_t *)pa < *(const uint32_t *)pb ? -1 : 1;
}

static int build_matcher(struct matcher *m, tokenizer *t, int normalized, gq_err *e)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < t->nadded; i++)
        n += t->added[i].normalized == normalized && t->added[i].patlen;
    if (!n)
        return 0;
    if (!(m->idx = gq_mallocn(n, sizeof(uint32_t))))
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory loading a tokenizer");
    for (size_t i = 0; i < t->nadded; i++)
        if (t->added[i].normalized == normalized && t->added[i].patlen)
            m->idx[k++] = (uint32_t)i;
    qsort_r(m->idx, n, sizeof(uint32_t), cmp_matcher, t);
    for (int c = 0, j = 0; c <= 256; c++) {
        while ((size_t)j < n && (unsigned char)t->added[m->idx[j]].pat[0] < c)
            j++;
        m->start[c] = (uint32_t)j;
    }
    return 0;
}

static int load_added(tokenizer *t, const gq_json *added, gq_err *e)
{
    size_t n = gq_json_size(added), k = 0, prev, next_id = t->vocab_n;
    gq_buf n1 = GQ_BUF_INIT, n2 = GQ_BUF_INIT, n3 = GQ_BUF_INIT, *nb;
    struct spans sp = {NULL, 0, 0};
    struct work w = {NULL};
    int rc = 0, any_single = 0;

    if (!added || gq_json_is_null(added))
        return 0;
    if (gq_json_type_of(added) != GQ_JSON_ARRAY)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: added_tokens must be an array");
    t->added = gq_calloc(n ? n : 1, sizeof(*t->added));
    w.md = pcre2_match_data_create(1, NULL);
    if (!t->added || !w.md) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory for added tokens");
        goto done;
    }
    for (const gq_json *a = gq_json_first(added); a; a = gq_json_next(a), k++) {
        const char *content = gq_json_string(gq_json_get(a, "content"));
        struct added *ad = &t->added[t->nadded];
        int special = 0, lstrip = 0, rstrip = 0, single = 0, normalized = 0;
        long long id;
        int32_t vid;

        if (!content) {
            rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: added token %zu has no content", k);
            goto done;
        }
        if ((rc = get_flag(&special, a, "special", 0, "added_tokens", e)) < 0 ||
            (rc = get_flag(&lstrip, a, "lstrip", 0, "added_tokens", e)) < 0 ||
            (rc = get_flag(&rstrip, a, "rstrip", 0, "added_tokens", e)) < 0 ||
            (rc = get_flag(&single, a, "single_word", 0, "added_tokens", e)) < 0 ||
            (rc = get_flag(&normalized, a, "normalized", !special, "added_tokens", e)) < 0 ||
            (rc = gq_json_int(&id, gq_json_get(a, "id"), 0, INT32_MAX, "tokenizer.json: an added token id", e)) < 0)
            goto done;
        if (!*content)
            continue;   /* the library ignores empty added tokens */
        if ((size_t)utf8_check(content, strlen(content)) != strlen(content)) {
            rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: added token %zu is not valid UTF-8", k);
            goto done;
        }
        /*
         * Ids as AddedVocabulary::add_tokens gives them (the file's "id" is
         * only checked by the library, with a warning): an added token seen
         * before keeps its id and takes the new flags, one the model knows
         * takes the model's id, any other the next id after the vocab.
         */
        (void)id;
        for (prev = 0; prev < t->nadded && strcmp(t->added[prev].content, content) != 0; prev++)
            ;
        if (prev < t->nadded) {
            ad = &t->added[prev];
            gq_free(ad->pat);
            ad->pat = NULL;
            vid = ad->id;
        } else {
            vid = vocab_find(t, content, strlen(content));
            if (vid < 0) {
                if (next_id > INT32_MAX) {
                    rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: too many added tokens");
                    goto done;
                }
                vid = (int32_t)next_id++;
            }
            t->nadded++;
            if ((rc = dup_string(&ad->content, &ad->len, content, e)) < 0)
                goto done;
        }
        ad->id = vid;
        ad->special = (unsigned char)special;
        ad->lstrip = (unsigned char)lstrip;
        ad->rstrip = (unsigned char)rstrip;
        ad->single_word = (unsigned char)single;
        ad->normalized = (unsigned char)normalized;
        if (normalized && t->nnorms) {
            size_t z0;
            if ((rc = normalize(&nb, &z0, t, ad->content, ad->len, 0, &n1, &n2, &n3, &sp, &w, e)) < 0)
                goto done;
            rc = dup_string(&ad->pat, &ad->patlen, nb->ptr ? nb->ptr : "", e);
        } else {
            rc = dup_string(&ad->pat, &ad->patlen, content, e);
        }
        if (rc < 0)
            goto done;
        any_single |= single;
    }
    if ((rc = build_matcher(&t->raw, t, 0, e)) < 0 || (rc = build_matcher(&t->normed, t, 1, e)) < 0)
        goto done;
    if (any_single &&
        (rc = regex_compile(&t->word_re, word_char_pattern, strlen(word_char_pattern), "added tokens", e)) < 0)
        goto done;
done:
    gq_buf_free(&n1);
    gq_buf_free(&n2);
    gq_buf_free(&n3);
    gq_free(sp.v);
    pcre2_match_data_free(w.md);
    return rc;
}

/* cJSON cuts strings at \u0000; refuse such text rather than read it wrong. */
static int check_no_nul_escape(const char *json, size_t len, gq_err *e)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (json[i] != '\\')
            continue;
        if (json[i + 1] == 'u' && i + 5 < len && !memcmp(json + i + 2, "0000", 4))
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: a string contains \\u0000 (NUL), which is not supported");
        i++;   /* skip the escaped character */
    }
    return 0;
}

int tokenizer_parse(tokenizer **out, const char *json, size_t len, gq_err *e)
{
    gq_json *root = NULL;
    tokenizer *t = NULL;
    const gq_json *version;
    size_t bad;
    int rc;

    GQ_ASSERT_ARG(e, out && (json || len == 0));
    /* cJSON would take invalid UTF-8 inside strings and NUL bytes as blanks; the library does not */
    if ((bad = utf8_check(json, len)) != len)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: not valid UTF-8 (at byte %zu)", bad);
    if (len && memchr(json, '\0', len))
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: contains a NUL byte");
    if ((rc = check_no_nul_escape(json, len, e)) < 0)
        return rc;
    if ((rc = gq_json_parse(&root, json, len, e)) < 0) {
        gq_err_prefix(e, "tokenizer.json");
        return rc;
    }
    if (gq_json_type_of(root) != GQ_JSON_OBJECT) {
        rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: not a JSON object");
        goto done;
    }
    version = gq_json_get(root, "version");
    if (version && (!gq_json_string(version) || strcmp(gq_json_string(version), "1.0") != 0)) {
        rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: unknown version (only \"1.0\" exists)");
        goto done;
    }
    if (!(t = gq_calloc(1, sizeof(*t)))) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory loading a tokenizer");
        goto done;
    }
    build_byte_map(t);
    /* truncation and padding are ignored, as transformers ignores them unless asked */
    if ((rc = parse_model(t, gq_json_get(root, "model"), e)) < 0 ||
        (rc = parse_normalizer(t, gq_json_get(root, "normalizer"), 0, e)) < 0 ||
        (rc = parse_pretok(t, gq_json_get(root, "pre_tokenizer"), 0, e)) < 0 ||
        (rc = parse_post(t, gq_json_get(root, "post_processor"), 0, e)) < 0 ||
        (rc = parse_decoder(t, gq_json_get(root, "decoder"), 0, e)) < 0 ||
        (rc = load_added(t, gq_json_get(root, "added_tokens"), e)) < 0)
        goto done;
    *out = t;
    t = NULL;
done:
    tokenizer_free(t);
    gq_json_free(root);
    return rc;
}

/* Read a whole file of at most max bytes. */
static int read_file(gq_buf *b, const char *path, size_t max, gq_err *e)
{
    char chunk[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "%s: cannot open: %s", path, strerror(errno));
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = GQ_FAIL(e, errno == EISDIR ? GQ_EINVAL : GQ_EIO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (b->len + (size_t)n > max) {
            rc = GQ_FAIL(e, GQ_EINVAL, "%s: larger than %zu bytes", path, max);
            break;
        }
        if ((rc = gq_buf_append(b, chunk, (size_t)n, e)) < 0)
            break;
    }
    close(fd);
    return rc;
}

int tokenizer_load(tokenizer **out, const char *path, gq_err *e)
{
    gq_buf b = GQ_BUF_INIT;
    int rc;

    GQ_ASSERT_ARG(e, out && path);
    if ((rc = read_file(&b, path, TOKENIZER_MAX_BYTES, e)) == 0 &&
        (rc = tokenizer_parse(out, b.ptr ? b.ptr : "", b.len, e)) < 0)
        gq_err_prefix(e, "%s", path);
    gq_buf_free(&b);
    return rc;
}

/* bos_token / eos_token of tokenizer_config.json: a string or {"content": ...}. */
static const char *config_token(const gq_json *cfg, const char *key)
{
    const gq_json *v = gq_json_get(cfg, key);
    return gq_json_string(v) ? gq_json_string(v) : gq_json_string(gq_json_get(v, "content"));
}

static int apply_config(tokenizer *t, const char *path, const char *json, size_t len, gq_err *e)
{
    gq_json *cfg = NULL;
    const gq_json *mml;
    int rc;

    if ((rc = gq_json_parse(&cfg, json, len, e)) < 0) {
        gq_err_prefix(e, "%s", path);
        return rc;
    }
    if (gq_json_type_of(cfg) != GQ_JSON_OBJECT) {
        rc = GQ_FAIL(e, GQ_EINVAL, "%s: not a JSON object", path);
        goto done;
    }
    mml = gq_json_get(cfg, "model_max_length");
    if (gq_json_type_of(mml) == GQ_JSON_NUMBER && gq_json_number(mml) >= 1 && gq_json_number(mml) <= 2147483648.0)
        t->model_max_length = (size_t)gq_json_number(mml);
    for (int side = 0; side < 2; side++) {
        const char *flag = side ? "add_eos_token" : "add_bos_token", *tokkey = side ? "eos_token" : "bos_token";
        const gq_json *f = gq_json_get(cfg, flag);
        int32_t id = -1;
        if (!f || gq_json_is_null(f))
            continue;
        if (gq_json_bool(f) < 0) {
            rc = GQ_FAIL(e, GQ_EINVAL, "%s: %s must be true or false", path, flag);
            goto done;
        }
        if (gq_json_bool(f)) {
            const char *tok = config_token(cfg, tokkey);
            char q[64];
            if (!tok || (id = tokenizer_token_id(t, tok)) < 0) {
                rc = GQ_FAIL(e, GQ_EINVAL, "%s: %s is true but %s ('%s') is not a token of tokenizer.json", path, flag,
                             tokkey, gq_err_quote(q, sizeof(q), tok ? tok : "missing"));
                goto done;
            }
        }
        if (side) {
            gq_free(t->post_post);
            t->post_post = NULL;
            t->npost_post = 0;
            rc = id >= 0 ? post_wrap(t, NULL, 0, &id, 1, e) : 0;
        } else {
            gq_free(t->post_pre);
            t->post_pre = NULL;
            t->npost_pre = 0;
            rc = id >= 0 ? post_wrap(t, &id, 1, NULL, 0, e) : 0;
        }
        if (rc < 0)
            goto done;
    }
done:
    gq_json_free(cfg);
    return rc;
}

int tokenizer_load_dir(tokenizer **out, const char *path, gq_err *e)
{
    char file[4096];
    struct stat st;
    tokenizer *t = NULL;
    gq_buf cfg = GQ_BUF_INIT;
    int rc;

    GQ_ASSERT_ARG(e, out && path);
    if (stat(path, &st) < 0)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return tokenizer_load(out, path, e);
    if ((size_t)snprintf(file, sizeof(file), "%s/tokenizer.json", path) >= sizeof(file))
        return GQ_FAIL(e, GQ_EINVAL, "%s: path too long", path);
    if (stat(file, &st) < 0 && errno == ENOENT) {
        char sp[4096];
        snprintf(sp, sizeof(sp), "%s/tokenizer.model", path);
        return GQ_FAIL(e, GQ_ENOTFOUND, "%s has no tokenizer.json%s", path,
                       stat(sp, &st) == 0 ? " (only a SentencePiece tokenizer.model, which is not supported: "
                                            "convert it with transformers and save tokenizer.json)" : "");
    }
    if ((rc = tokenizer_load(&t, file, e)) < 0)
        return rc;
    snprintf(file, sizeof(file), "%s/tokenizer_config.json", path);
    rc = read_file(&cfg, file, TOKENIZER_CONFIG_MAX_BYTES, e);
    if (rc == GQ_ENOTFOUND)
        rc = 0;
    else if (rc == 0)
        rc = apply_config(t, file, cfg.ptr ? cfg.ptr : "", cfg.len, e);
    gq_buf_free(&cfg);
    if (rc < 0) {
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}
