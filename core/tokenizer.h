/*
 * tokenizer.h - Hugging Face tokenizer.json, reproducing the tokenizers
 * library id for id (calibration must see the ids the model sees).
 *
 * Supported so far (anything else is refused by name, never approximated):
 *   model           BPE: vocab, merges as "a b" strings or ["a", "b"] pairs,
 *                   ignore_merges, dropout null, unk_token null
 *   normalizer      null
 *   pre_tokenizer   ByteLevel (use_regex with the GPT-2 pattern through
 *                   PCRE2, add_prefix_space)
 *   post_processor  null, ByteLevel (adds no ids)
 *   added tokens    matched in the raw text before anything else, longest
 *                   first; lstrip / rstrip / single_word not yet supported
 * The rest of the components the issue lists (Metaspace, Split, Sequence,
 * NFC/NFKC, TemplateProcessing, byte_fallback, decoders) come next.
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
/* Read and parse a tokenizer.json file. */
int tokenizer_load(tokenizer **out, const char *path, gq_err *e);
void tokenizer_free(tokenizer *t);

size_t tokenizer_vocab_size(const tokenizer *t);

/*
 * Encode len bytes of UTF-8 text.  add_special: apply the post-processor
 * as the library does by default (add_special_tokens=True).  *ids is
 * allocated (free with gq_free), *n its length.  Invalid UTF-8 is
 * GQ_EINVAL.
 */
int tokenizer_encode(int32_t **ids, size_t *n, const tokenizer *t, const char *text, size_t len,
                     int add_special, gq_err *e);

#endif
