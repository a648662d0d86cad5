/*
 * tokenizer.c - byte-level BPE from a Hugging Face tokenizer.json.
 *
 * DESIGN
 *
 * Loading builds two open-addressing hash tables: token string -> id (the
 * vocab, strings kept in one arena) and (left id, right id) -> (rank,
 * merged id) (the merges).  Encoding follows the tokenizers library:
 *
 *   1. added tokens are found in the raw text (longest match at the
 *      leftmost position) and emitted as their ids; the text between them
 *      goes through the rest of the pipeline;
 *   2. the ByteLevel pre-tokenizer splits that text with the GPT-2 regex
 *      (PCRE2, Unicode properties) and maps every byte of a piece to its
 *      printable stand-in character (bytes_to_unicode);
 *   3. BPE turns each piece into symbols (one per character, unknown
 *      characters dropped as the library does without an unk token) and
 *      repeatedly merges the adjacent pair of lowest rank (leftmost first),
 *      which is what the library's heap of merges computes;
 *   4. the post-processor adds nothing for ByteLevel / null.
 *
 * Components it does not implement are refused at load time with their
 * names.
 */
#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <fcntl.h>
#include <pcre2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "mem.h"

#define TOKENIZER_MAX_BYTES (256u << 20)

/* GPT-2's pre-tokenizer pattern, as the ByteLevel pre-tokenizer uses it. */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct vocab_slot {
    uint32_t off, len;   /* into the arena; len == UINT32_MAX marks an empty slot */
    int32_t id;
};

struct merge_slot {
    uint64_t key;        /* (left << 32) | right, or UINT64_MAX when empty */
    int32_t rank, id;
};

struct added {
    char *content;
    size_t len;
    int32_t id;
};

struct tokenizer {
    char *arena;
    size_t arena_len;
    struct vocab_slot *vocab;
    size_t vocab_cap, vocab_n;
    struct merge_slot *merges;
    size_t merges_cap;
    struct added *added;
    size_t nadded;
    int ignore_merges;
    int add_prefix_space;
    int use_regex;
    pcre2_code *re;
    char byte_char[256][3];     /* UTF-8 of each byte's stand-in character */
    unsigned char byte_char_len[256];
};

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

/* Id of the n bytes at s, or -1. */
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
    if (!t->merges_cap)
        return NULL;
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
    for (int b = 0; b < 256; b++) {
        unsigned cp;
        if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
            cp = (unsigned)b;
        else
            cp = 256u + (unsigned)k++;
        if (cp < 0x80) {
            t->byte_char[b][0] = (char)cp;
            t->byte_char_len[b] = 1;
        } else {
            t->byte_char[b][0] = (char)(0xC0 | (cp >> 6));
            t->byte_char[b][1] = (char)(0x80 | (cp & 0x3F));
            t->byte_char_len[b] = 2;
        }
    }
}

void tokenizer_free(tokenizer *t)
{
    if (!t)
        return;
    gq_free(t->arena);
    gq_free(t->vocab);
    gq_free(t->merges);
    for (size_t i = 0; i < t->nadded; i++)
        gq_free(t->added[i].content);
    gq_free(t->added);
    pcre2_code_free(t->re);
    gq_free(t);
}

size_t tokenizer_vocab_size(const tokenizer *t)
{
    return t->vocab_n;
}

/* Refuse a component we do not implement, by name. */
static int unsupported(gq_err *e, const char *what, const gq_json *j)
{
    const char *type = gq_json_string(gq_json_get(j, "type"));
    char q[64];
    return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: unsupported %s '%s'", what,
                   gq_err_quote(q, sizeof(q), type ? type : gq_json_type_name(gq_json_type_of(j))));
}

static int load_vocab(tokenizer *t, const gq_json *vocab, gq_err *e)
{
    size_t n = gq_json_size(vocab), total = 0, off = 0;

    if (gq_json_type_of(vocab) != GQ_JSON_OBJECT || n == 0)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: model.vocab must be a non-empty object");
    for (const gq_json *m = gq_json_first(vocab); m; m = gq_json_next(m))
        total += strlen(gq_json_key(m));
    t->arena = gq_malloc(total + 1);
    t->vocab_cap = pow2_above(n);
    t->vocab = gq_mallocn(t->vocab_cap, sizeof(*t->vocab));
    if (!t->arena || !t->vocab)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for a vocabulary of %zu tokens", n);
    for (size_t i = 0; i < t->vocab_cap; i++)
        t->vocab[i].len = UINT32_MAX;
    for (const gq_json *m = gq_json_first(vocab); m; m = gq_json_next(m)) {
        const char *key = gq_json_key(m);
        size_t len = strlen(key), mask = t->vocab_cap - 1, i;
        long long id;
        int rc;
        char q[64];

        if ((rc = gq_json_int(&id, m, 0, INT32_MAX, "tokenizer.json: a vocab id", e)) < 0)
            return rc;
        if (vocab_find(t, key, len) >= 0)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: token '%s' appears twice in the vocab",
                           gq_err_quote(q, sizeof(q), key));
        memcpy(t->arena + off, key, len);
        for (i = (size_t)hash_bytes(key, len) & mask; t->vocab[i].len != UINT32_MAX;
             i = (i + 1) & mask)
            ;
        t->vocab[i].off = (uint32_t)off;
        t->vocab[i].len = (uint32_t)len;
        t->vocab[i].id = (int32_t)id;
        off += len;
        t->vocab_n++;
    }
    t->arena_len = off;
    return 0;
}

/* The two halves of a merge, either "a b" or ["a", "b"]. */
static int merge_parts(const char **a, size_t *alen, const char **b, size_t *blen,
                       const gq_json *m, size_t rank, gq_err *e)
{
    const char *s = gq_json_string(m);
    if (s) {
        const char *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: merge %zu is not two tokens separated by one space",
                           rank);
        *a = s;
        *alen = (size_t)(sp - s);
        *b = sp + 1;
        *blen = strlen(sp + 1);
        return 0;
    }
    if (gq_json_type_of(m) == GQ_JSON_ARRAY && gq_json_size(m) == 2 &&
        gq_json_string(gq_json_first(m)) && gq_json_string(gq_json_next(gq_json_first(m)))) {
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
    char *joined = NULL;
    size_t cap = 0;
    int rc = 0;

    if (merges && gq_json_type_of(merges) != GQ_JSON_ARRAY)
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
        if (alen + blen + 1 > cap) {
            char *p = gq_realloc(joined, alen + blen + 1);
            if (!p) {
                rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory reading merges");
                goto done;
            }
            joined = p;
            cap = alen + blen + 1;
        }
        memcpy(joined, a, alen);
        memcpy(joined + alen, b, blen);
        ia = vocab_find(t, a, alen);
        ib = vocab_find(t, b, blen);
        im = vocab_find(t, joined, alen + blen);
        if (ia < 0 || ib < 0 || im < 0) {
            joined[alen + blen] = '\0';
            rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: merge %zu ('%s') uses a token not in the vocab",
                         rank, gq_err_quote(q, sizeof(q), joined));
            goto done;
        }
        key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
        for (i = (size_t)hash_u64(key) & mask; t->merges[i].key != UINT64_MAX; i = (i + 1) & mask)
            if (t->merges[i].key == key)
                break;
        if (t->merges[i].key == key)
            continue;   /* a repeated merge keeps its first (best) rank */
        t->merges[i].key = key;
        t->merges[i].rank = (int32_t)rank;
        t->merges[i].id = im;
    }
done:
    gq_free(joined);
    return rc;
}

static int load_added(tokenizer *t, const gq_json *added, gq_err *e)
{
    size_t n = gq_json_size(added), k = 0;

    if (!added || gq_json_is_null(added))
        return 0;
    if (gq_json_type_of(added) != GQ_JSON_ARRAY)
        return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: added_tokens must be an array");
    t->added = gq_calloc(n ? n : 1, sizeof(*t->added));
    if (!t->added)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory for added tokens");
    for (const gq_json *a = gq_json_first(added); a; a = gq_json_next(a), k++) {
        const char *content = gq_json_string(gq_json_get(a, "content"));
        static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
        long long id;
        int rc;

        if (!content || !*content)
            return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: added token %zu has no content", k);
        if ((rc = gq_json_int(&id, gq_json_get(a, "id"), 0, INT32_MAX,
                              "tokenizer.json: an added token id", e)) < 0)
            return rc;
        for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++)
            if (gq_json_bool(gq_json_get(a, flags[f])) == 1)
                return GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: added token %zu uses %s, not supported yet",
                               k, flags[f]);
        if (gq_json_bool(gq_json_get(a, "normalized")) == 1 &&
            gq_json_bool(gq_json_get(a, "special")) != 1)
            return GQ_FAIL(e, GQ_EINVAL,
                           "tokenizer.json: added token %zu is normalized, not supported yet", k);
        t->added[k].content = gq_strdup(content);
        if (!t->added[k].content)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory for added tokens");
        t->added[k].len = strlen(content);
        t->added[k].id = (int32_t)id;
        t->nadded++;
    }
    return 0;
}

int tokenizer_parse(tokenizer **out, const char *json, size_t len, gq_err *e)
{
    gq_json *root = NULL;
    const gq_json *model, *pre, *post, *norm;
    tokenizer *t = NULL;
    const char *type;
    int rc, errcode;
    PCRE2_SIZE erroff;

    if ((rc = gq_json_parse(&root, json, len, e)) < 0) {
        gq_err_prefix(e, "tokenizer.json");
        return rc;
    }
    t = gq_calloc(1, sizeof(*t));
    if (!t) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory loading a tokenizer");
        goto done;
    }
    build_byte_map(t);
    model = gq_json_get(root, "model");
    type = gq_json_string(gq_json_get(model, "type"));
    if (!model || (type && strcmp(type, "BPE") != 0)) {
        rc = unsupported(e, "model", model);
        goto done;
    }
    if (!gq_json_is_null(gq_json_get(model, "dropout")) && gq_json_get(model, "dropout")) {
        rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: BPE dropout is not supported (it makes encoding random)");
        goto done;
    }
    if (gq_json_string(gq_json_get(model, "unk_token")) ||
        gq_json_bool(gq_json_get(model, "byte_fallback")) == 1 ||
        gq_json_string(gq_json_get(model, "continuing_subword_prefix")) ||
        gq_json_string(gq_json_get(model, "end_of_word_suffix"))) {
        rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer.json: BPE unk_token / byte_fallback / subword affixes are not supported yet");
        goto done;
    }
    t->ignore_merges = gq_json_bool(gq_json_get(model, "ignore_merges")) == 1;
    norm = gq_json_get(root, "normalizer");
    if (norm && !gq_json_is_null(norm)) {
        rc = unsupported(e, "normalizer", norm);
        goto done;
    }
    pre = gq_json_get(root, "pre_tokenizer");
    type = gq_json_string(gq_json_get(pre, "type"));
    if (!pre || gq_json_is_null(pre) || !type || strcmp(type, "ByteLevel") != 0) {
        rc = unsupported(e, "pre_tokenizer", pre);
        goto done;
    }
    t->add_prefix_space = gq_json_bool(gq_json_get(pre, "add_prefix_space")) == 1;
    t->use_regex = gq_json_bool(gq_json_get(pre, "use_regex")) != 0;
    post = gq_json_get(root, "post_processor");
    type = gq_json_string(gq_json_get(post, "type"));
    if (post && !gq_json_is_null(post) && (!type || strcmp(type, "ByteLevel") != 0)) {
        rc = unsupported(e, "post_processor", post);
        goto done;
    }
    if ((rc = load_vocab(t, gq_json_get(model, "vocab"), e)) < 0 ||
        (rc = load_merges(t, gq_json_get(model, "merges"), e)) < 0 ||
        (rc = load_added(t, gq_json_get(root, "added_tokens"), e)) < 0)
        goto done;
    t->re = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &errcode, &erroff, NULL);
    if (!t->re) {
        rc = GQ_FAIL(e, GQ_EINVAL, "tokenizer: cannot compile the ByteLevel pattern (error %d)", errcode);
        goto done;
    }
    *out = t;
    t = NULL;
    rc = 0;
done:
    tokenizer_free(t);
    gq_json_free(root);
    return rc;
}

int tokenizer_load(tokenizer **out, const char *path, gq_err *e)
{
    gq_buf b = GQ_BUF_INIT;
    char chunk[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return GQ_FAIL(e, errno == ENOENT ? GQ_ENOTFOUND : GQ_EIO, "%s: cannot open: %s", path,
                       strerror(errno));
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = GQ_FAIL(e, GQ_EIO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > TOKENIZER_MAX_BYTES) {
            rc = GQ_FAIL(e, GQ_EINVAL, "%s: larger than %u bytes", path, TOKENIZER_MAX_BYTES);
            break;
        }
        if ((rc = gq_buf_append(&b, chunk, (size_t)n, e)) < 0)
            break;
    }
    close(fd);
    if (rc == 0 && (rc = tokenizer_parse(out, b.ptr ? b.ptr : "", b.len, e)) < 0)
        gq_err_prefix(e, "%s", path);
    gq_buf_free(&b);
    return rc;
}

/* ---- encoding ---- */

struct ids {
    int32_t *v;
    size_t n, cap;
};

static int push(struct ids *o, int32_t id, gq_err *e)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *p = gq_realloc(o->v, cap * sizeof(int32_t));
        if (!p)
            return GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
        o->v = p;
        o->cap = cap;
    }
    o->v[o->n++] = id;
    return 0;
}

/* BPE on one pre-token of byte-level characters (s, n bytes of UTF-8). */
static int bpe_word(struct ids *o, const tokenizer *t, const char *s, size_t n, int32_t *sym,
                    gq_err *e)
{
    size_t k = 0;
    int32_t whole;
    int rc;

    if (t->ignore_merges && (whole = vocab_find(t, s, n)) >= 0)
        return push(o, whole, e);
    for (size_t i = 0; i < n;) {
        size_t cl = ((unsigned char)s[i] & 0x80) == 0 ? 1 : ((unsigned char)s[i] & 0xE0) == 0xC0 ? 2
                  : ((unsigned char)s[i] & 0xF0) == 0xE0 ? 3 : 4;
        int32_t id = vocab_find(t, s + i, cl);
        if (id >= 0)
            sym[k++] = id;   /* characters not in the vocab are dropped, as the library does */
        i += cl;
    }
    for (;;) {
        int32_t best_rank = INT32_MAX, best_id = -1;
        size_t best = 0;
        for (size_t i = 0; i + 1 < k; i++) {
            const struct merge_slot *m = merge_find(t, sym[i], sym[i + 1]);
            if (m && m->rank < best_rank) {
                best_rank = m->rank;
                best_id = m->id;
                best = i;
            }
        }
        if (best_id < 0)
            break;
        sym[best] = best_id;
        memmove(sym + best + 1, sym + best + 2, (k - best - 2) * sizeof(int32_t));
        k--;
    }
    for (size_t i = 0; i < k; i++)
        if ((rc = push(o, sym[i], e)) < 0)
            return rc;
    return 0;
}

/* Pre-tokenize and BPE a stretch of text with no added tokens in it. */
static int encode_plain(struct ids *o, const tokenizer *t, const char *text, size_t len,
                        pcre2_match_data *md, gq_buf *piece, int32_t **sym, size_t *symcap,
                        gq_err *e)
{
    size_t pos = 0;
    int rc;

    while (pos < len) {
        size_t start, end;
        if (t->use_regex) {
            int m = pcre2_match(t->re, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            PCRE2_SIZE *ov;
            if (m < 0)
                break;   /* the pattern matches every character; nothing is left */
            ov = pcre2_get_ovector_pointer(md);
            start = ov[0];
            end = ov[1];
            if (end == start) {   /* cannot happen with this pattern; never loop */
                end = start + 1;
            }
        } else {
            start = pos;
            end = len;
        }
        /* byte-level characters of text[start, end) */
        gq_buf_clear(piece);
        for (size_t i = start; i < end; i++) {
            unsigned char b = (unsigned char)text[i];
            if ((rc = gq_buf_append(piece, t->byte_char[b], t->byte_char_len[b], e)) < 0)
                return rc;
        }
        if (piece->len > *symcap) {
            int32_t *p = gq_realloc(*sym, piece->len * sizeof(int32_t));
            if (!p)
                return GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
            *sym = p;
            *symcap = piece->len;
        }
        if (piece->len && (rc = bpe_word(o, t, piece->ptr, piece->len, *sym, e)) < 0)
            return rc;
        pos = end;
    }
    return 0;
}

int tokenizer_encode(int32_t **ids, size_t *n, const tokenizer *t, const char *text, size_t len,
                     int add_special, gq_err *e)
{
    struct ids o = {NULL, 0, 0};
    pcre2_match_data *md = NULL;
    gq_buf piece = GQ_BUF_INIT, pre = GQ_BUF_INIT;
    int32_t *sym = NULL;
    size_t symcap = 0, seg = 0;
    int rc = 0;

    (void)add_special;   /* ByteLevel / null post-processors add no ids */
    md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!md) {
        rc = GQ_FAIL(e, GQ_ENOMEM, "out of memory encoding text");
        goto done;
    }
    {
        /* one checked match validates the UTF-8 of the whole text up front */
        int m = pcre2_match(t->re, (PCRE2_SPTR)text, len, 0, 0, md, NULL);
        if (m <= PCRE2_ERROR_UTF8_ERR1 && m >= PCRE2_ERROR_UTF8_ERR21) {
            rc = GQ_FAIL(e, GQ_EINVAL, "text is not valid UTF-8 (at byte %zu)",
                         (size_t)pcre2_get_startchar(md));
            goto done;
        }
    }
    if (t->add_prefix_space && (len == 0 || text[0] != ' ')) {
        if ((rc = gq_buf_puts(&pre, " ", e)) < 0 || (rc = gq_buf_append(&pre, text, len, e)) < 0)
            goto done;
        text = pre.ptr;
        len = pre.len;
    }
    /* split on added tokens: longest match at the leftmost position */
    for (size_t i = 0; i < len;) {
        size_t best_len = 0;
        int32_t best_id = -1;
        for (size_t a = 0; a < t->nadded; a++) {
            const struct added *ad = &t->added[a];
            if (ad->len > best_len && ad->len <= len - i && memcmp(text + i, ad->content, ad->len) == 0) {
                best_len = ad->len;
                best_id = ad->id;
            }
        }
        if (best_id < 0) {
            i++;
            continue;
        }
        if ((rc = encode_plain(&o, t, text + seg, i - seg, md, &piece, &sym, &symcap, e)) < 0 ||
            (rc = push(&o, best_id, e)) < 0)
            goto done;
        i += best_len;
        seg = i;
    }
    if ((rc = encode_plain(&o, t, text + seg, len - seg, md, &piece, &sym, &symcap, e)) < 0)
        goto done;
    *ids = o.v;
    *n = o.n;
    o.v = NULL;
done:
    gq_free(o.v);
    gq_free(sym);
    gq_buf_free(&piece);
    gq_buf_free(&pre);
    pcre2_match_data_free(md);
    return rc;
}
