/*
 * ref_forward.h - the test oracle for the forward pass: a naive decoder
 * forward in double precision, written line by line from the transformers
 * modelling code of Llama, Mistral, Qwen2 and Qwen3, for clarity and never
 * for speed (one token, one head, one dot product at a time; plain malloc).
 *
 * What it computes, per sequence of token ids at positions 0..seqlen-1:
 * embeddings; per decoder layer RMSNorm, q/k/v projections (+ biases as
 * the config says), Qwen3's per-head q/k RMSNorm before rope, rotary
 * embeddings (default, linear, llama3), causal GQA attention (windowed
 * with Mistral's sliding window: key j is seen from query i when
 * i - window < j <= i), o projection, residual, RMSNorm, SwiGLU MLP,
 * residual; then the final RMSNorm and the lm_head (the embedding matrix
 * when tie_word_embeddings).
 *
 * Precision: weights are the checkpoint's values (fp16/bf16 widened
 * exactly), every activation is double.  The one float32 step is the
 * rope inverse frequencies, computed as transformers does in float32
 * (ref_fwd_inv_freq), because those float32 values are what the model
 * actually uses; cos/sin and everything after are double.
 *
 * Only st_model_* / st_tensor_to_f32 (core/safetensors.h),
 * model_config_load (core/config.h) and core/json.h (for reference
 * meta.json files) are used from core/; nothing of core/model.c, so the
 * oracle is independent of the forward it judges.
 *
 * Checked against transformers itself by tests/test_ref_forward.c on the
 * shared tiny-qwen2-gcide fixture.
 */
#ifndef GQ_REF_FORWARD_H
#define GQ_REF_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "safetensors.h"

/*
 * The rope inverse frequencies inv_freq[head_dim / 2] of config c, in
 * float32 exactly as transformers' modeling_rope_utils computes them:
 * default 1 / theta^(2i / d); linear divides by factor; llama3 keeps the
 * high frequencies (wavelength < original_max / high_freq_factor), divides
 * the low ones (wavelength > original_max / low_freq_factor) by factor and
 * blends in between.  Each step is rounded to float32 in torch's order
 * (a / tensor is reciprocal(tensor) * a).  May differ from torch by an ulp
 * where torch's vectorised powf is not correctly rounded.
 */
void ref_fwd_inv_freq(float *inv_freq, const struct model_config *c);

/*
 * Run the first `layers` decoder layers (0..num_layers; a larger value
 * means all) of the model whose config is c and whose tensors are st, on
 * ids (nseq, seqlen) row-major.  hidden (nseq * seqlen, hidden_size), if
 * not NULL, receives the residual stream after those layers (before the
 * final norm); logits (nseq * seqlen, vocab_size), if not NULL, receives
 * the logits (computed only when all layers ran).  c may be a modified copy
 * of the checkpoint's config (tests switch features off to show that a
 * fixture exercises them); tensor shapes are checked against it.
 * inv_freq (head_dim / 2), when not NULL, replaces the rope frequencies
 * ref_fwd_inv_freq would give (a test reproduces a transformers run whose
 * rope buffer had been rounded to float16).
 *
 * Errors: GQ_EINVAL for an id outside the vocabulary, a missing tensor
 * (named), a tensor whose shape does not match the config (named, with
 * both shapes) or whose dtype is not F32/F16/BF16, logits asked for after
 * a partial run, nseq or seqlen 0; GQ_ENOMEM.  Nothing is kept.
 */
int ref_fwd_run(double *hidden, double *logits, const struct model_config *c, const st_model *st,
                const float *inv_freq, const int32_t *ids, size_t nseq, size_t seqlen, int layers,
                gq_err *e);

/*
 * The whole forward from a model directory: dir/config.json
 * (model_config_load) and dir's safetensors (st_model_open); logits
 * (nseq * seqlen, vocab) in double.  Errors as model_config_load,
 * st_model_open and ref_fwd_run; messages of the last are prefixed with
 * dir.
 */
int ref_fwd_logits(double *logits, const char *dir, const int32_t *ids, size_t nseq, size_t seqlen,
                   gq_err *e);

/* ---- reference files ---- */

/*
 * A directory of reference logits: meta.json with "input_ids" (nseq lists
 * of seqlen ids), "logits_shape" [nseq, seqlen, vocab] and "logits_file"
 * (default logits.f32), and that file: float32 little-endian, row-major.
 */
struct ref_fwd_reference {
    int32_t *ids;       /* (nseq, seqlen) */
    float *logits;      /* (nseq, seqlen, vocab) */
    size_t nseq, seqlen, vocab;
};

/*
 * Read refdir/meta.json and its logits file into *out (fields set only on
 * success; free with ref_fwd_reference_free, which is NULL-safe on a
 * zeroed struct).  GQ_ENOTFOUND / GQ_EIO for unreadable files, GQ_EINVAL
 * for a malformed meta.json (named key) or a logits file whose size is
 * not nseq * seqlen * vocab * 4, GQ_ENOMEM.
 */
int ref_fwd_reference_load(struct ref_fwd_reference *out, const char *refdir, gq_err *e);
void ref_fwd_reference_free(struct ref_fwd_reference *r);

/* How far logits are from reference logits. */
struct ref_fwd_diff {
    double max_abs;         /* max |got - want| */
    size_t worst;           /* flat index of that difference */
    double range;           /* max(want) - min(want) */
    size_t argmax_mismatch; /* rows whose argmax differs (first index wins ties) */
    size_t first_mismatch;  /* first such row; rows when none */
    size_t nonfinite;       /* non-finite values in got */
};

/* Compare got and want, both (rows, vocab). */
void ref_fwd_compare(struct ref_fwd_diff *out, const float *got, const float *want, size_t rows,
                     size_t vocab);

#endif
