/*
 * calib.h - calibration data: the token-id matrix GPTQ's Hessians are
 * accumulated from, and its digest.
 *
 * Sampling rule (the reference GPTQ's, GPTQ-NOTES.md §1.7 and the shared
 * fixture's targets.json): the texts are joined with "\n\n" and tokenized
 * once, as one string, without special tokens; each of the nsamples rows
 * is a window of seqlen consecutive tokens of that stream starting at a
 * uniformly random offset in [0, n - seqlen - 1] (n = stream length), the
 * offsets drawn one after the other from a splitmix64 generator seeded
 * with seed, mapped to the range without modulo bias (rejection).
 * Windows may overlap, as in the reference.  Exactly, so that another
 * implementation reproduces the matrix: state = seed; a draw is
 * state += 0x9E3779B97F4A7C15, z = state, z = (z ^ z >> 30) *
 * 0xBF58476D1CE4E5B9, z = (z ^ z >> 27) * 0x94D049BB133111EB, z ^ z >> 31
 * (64-bit wrapping arithmetic); with r = n - seqlen (the number of
 * possible offsets), draws x < 2^64 mod r are rejected and the offset is
 * x mod r (OpenBSD's arc4random_uniform).
 *
 * Digest: SHA-256 (OpenSSL EVP) over the canonical form of the final
 * matrix: nsamples and seqlen as 8-byte little-endian unsigned integers,
 * then every id as a 4-byte little-endian signed integer, row by row.  The
 * texts themselves are never kept or written anywhere.
 */
#ifndef GQ_CALIB_H
#define GQ_CALIB_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tokenizer.h"

struct calib {
    int32_t *ids;            /* (nsamples, seqlen) row-major */
    size_t nsamples, seqlen;
    size_t stream_tokens;    /* length of the token stream sampled from (0 for blocks) */
    char sha256[65];         /* lower-case hex digest of the canonical form */
};

/* Release c's ids (the struct is not freed).  NULL-safe. */
void calib_free(struct calib *c);

/*
 * Read calibration texts from path: JSONL when the first non-blank byte is
 * '{' or '"' (one JSON object with a "text" string, or one JSON string, per
 * non-empty line), otherwise the whole file is one plain text.  Blank
 * means JSON whitespace (space, tab, CR, LF); lines of blanks are skipped
 * (their numbers still count).  *texts is an array of *n NUL-terminated
 * strings (free with calib_texts_free), set only on success.  GQ_EINVAL
 * names the line of a bad JSONL record (not JSON, no "text" string, a NUL
 * byte or \u0000, invalid UTF-8), or a plain text with a NUL byte or
 * invalid UTF-8, or an empty set (an empty or all-blank file), or a path
 * that is not a regular file; GQ_ENOTFOUND, GQ_EIO, GQ_ENOMEM.  Files over
 * 4 GiB are refused.  Any thread may call it.
 */
int calib_read_texts(char ***texts, size_t *n, const char *path, gq_err *e);
void calib_texts_free(char **texts, size_t n);

/*
 * Sample nsamples windows of seqlen tokens from texts (see the rule
 * above).  GQ_EINVAL when nsamples or seqlen is 0, or the stream has fewer
 * than seqlen + 1 tokens (the message gives both numbers); tokenizer
 * errors as tokenizer_encode's; GQ_ENOMEM.  *out set only on success.
 */
int calib_from_texts(struct calib *out, const tokenizer *t, const char *const *texts, size_t n,
                     size_t nsamples, size_t seqlen, uint64_t seed, gq_err *e);

/*
 * The token stream of texts as the rule above makes it: joined with "\n\n",
 * tokenized once without special tokens.  *ids: gq_free.  Tokenizer
 * errors as tokenizer_encode's; GQ_ENOMEM.
 */
int calib_tokenize_texts(int32_t **ids, size_t *count, const tokenizer *t, const char *const *texts, size_t n,
                         gq_err *e);

/* The same sampling from a token stream ids[0, n) already tokenized. */
int calib_from_stream(struct calib *out, const int32_t *ids, size_t n, size_t nsamples, size_t seqlen,
                      uint64_t seed, gq_err *e);

/*
 * Use blocks as they are: ids (nblocks, seqlen), e.g. a file of int32
 * blocks; nsamples 0 takes all, else the first nsamples (GQ_EINVAL when
 * there are fewer).
 */
int calib_from_blocks(struct calib *out, const int32_t *ids, size_t nblocks, size_t seqlen, size_t nsamples,
                      gq_err *e);

/* Read a file of little-endian int32 ids (size a multiple of 4). *ids: gq_free. */
int calib_read_ids(int32_t **ids, size_t *n, const char *path, gq_err *e);

#endif
