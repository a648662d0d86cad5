/*
 * tokenizer.h - Hugging Face tokenizer.json, reproducing the tokenizers
 * library id for id (calibration must see the ids the model sees).
 *
 * Supported (anything else in a tokenizer.json is refused by name at load
 * time, never approximated):
 *   model           BPE: vocab, merges as "a b" strings or ["a", "b"] pairs,
 *                   byte_fallback, unk_token, fuse_unk, ignore_merges,
 *                   continuing_subword_prefix, end_of_word_suffix,
 *                   dropout null (or 0)
 *   normalizer      Sequence, Prepend, Replace (string or regex), NFC, NFKC,
 *                   NFD, NFKD (utf8proc), Lowercase, Strip, StripAccents
 *   pre_tokenizer   ByteLevel (with or without its regex, add_prefix_space),
 *                   Split (string or regex through PCRE2, every behavior,
 *                   invert), Metaspace (prepend_scheme, split), Digits,
 *                   Whitespace, WhitespaceSplit, Sequence
 *   added tokens    matched before normalization (normalized=false) or
 *                   after it (normalized=true); special, lstrip, rstrip,
 *                   single_word
 *   post_processor  TemplateProcessing, ByteLevel, RobertaProcessing,
 *                   BertProcessing, Sequence
 *   decoder         ByteLevel, Metaspace, ByteFallback, Fuse, Strip,
 *                   Replace, Sequence
 *
 * Deliberate differences from the library, all documented choices:
 *   - truncation and padding in tokenizer.json are ignored (transformers
 *     ignores them too unless a call asks for them);
 *   - Unicode character classes in regexes (\p{L}, \p{N}, ...) come from
 *     PCRE2 (Debian 12: PCRE2 10.42, Unicode 14) while the library's
 *     Oniguruma knows Unicode 16: a character assigned after Unicode 14
 *     (e.g. U+1379F, Egyptian Hieroglyphs Extended-A) is "unassigned" to
 *     us and may be split differently.  Normalization (utf8proc 2.8) is
 *     Unicode 15.
 *   - Text is bytes here: invalid UTF-8 is refused (the library's input
 *     is a Rust string, valid by construction).
 *
 * A tokenizer is immutable after loading and may be shared by threads.
 */
#ifndef GQ_TOKENIZER_H
#define GQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct tokenizer tokenizer;

/* Parse tokenizer.json text (len bytes).  Free with tokenizer_free. */
int tokenizer_parse(tokenizer **out, const char *json, size_t len, gq_err *e);
/* Read and parse a tokenizer.json file: exactly the tokenizers library's behaviour. */
int tokenizer_load(tokenizer **out, const char *path, gq_err *e);
/*
 * Load a model directory's tokenizer as transformers does: tokenizer.json,
 * then tokenizer_config.json when present.  Where tokenizer_config.json sets
 * add_bos_token or add_eos_token, those flags decide the special tokens
 * around a sequence (bos_token / eos_token, strings or {"content": ...}),
 * replacing the tokenizer.json post-processor, as transformers'
 * Llama/Gemma-style tokenizers do; model_max_length is kept (see below).
 * path may also name a tokenizer.json file, which then loads alone.
 */
int tokenizer_load_dir(tokenizer **out, const char *path, gq_err *e);
void tokenizer_free(tokenizer *t);

/* Number of entries in the model's vocab (added tokens outside it not counted). */
size_t tokenizer_vocab_size(const tokenizer *t);
/* tokenizer_config.json's model_max_length, or 0 when absent or not a real limit (> 2^31). */
size_t tokenizer_model_max_length(const tokenizer *t);
/* Id of a token string (model vocab or added token), or -1. */
int32_t tokenizer_token_id(const tokenizer *t, const char *token);

/*
 * Encode len bytes of UTF-8 text.  add_special: apply the post-processor
 * as the library does by default (add_special_tokens=True).  *ids is
 * allocated (free with gq_free; never NULL on success), *n its length.
 * Invalid UTF-8 is GQ_EINVAL naming the byte offset.
 */
int tokenizer_encode(int32_t **ids, size_t *n, const tokenizer *t, const char *text, size_t len,
                     int add_special, gq_err *e);

/*
 * Decode ids back to text as the library's decode(ids, skip_special)
 * does: ids are turned into token strings (unknown ids are skipped, as the
 * library does), special added tokens dropped when skip_special, then the
 * decoder runs (tokens joined by " " when there is none).  *text is
 * NUL-terminated, allocated (gq_free), *len its length without the NUL.
 */
int tokenizer_decode(char **text, size_t *len, const tokenizer *t, const int32_t *ids, size_t n,
                     int skip_special, gq_err *e);

#endif
