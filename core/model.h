/*
 * model.h - a decoder-only model opened from a Hugging Face directory, and
 * its forward pass in float32, exactly as transformers computes it.
 *
 * model_open() reads config.json and maps the safetensors (nothing is
 * loaded).  Weights are converted to float32 one decoder layer at a time
 * (model_layer_load), so memory holds one layer, the embeddings and the
 * activations, whatever the depth.
 *
 * The forward pass works on a batch of `nseq` sequences of `seqlen`
 * tokens, hidden states (nseq * seqlen, hidden) row-major, positions
 * 0..seqlen-1 in every sequence, causal attention (windowed when the
 * config has an active sliding window).  Matrix products go through BLAS.
 * Attention is computed one (sequence, head) at a time, so its scratch is
 * seqlen^2 floats, not seqlen^2 * batch * heads.
 *
 * Capture: a decoder layer's Linears take their inputs at four points, in
 * true-sequential order: the attention input (q, k, v), the o_proj input,
 * the MLP input (gate, up) and the down_proj input.  layer_forward() calls
 * the capture callback with each point's input (tokens, in_features) as it
 * computes it, and can stop right after a given point, so a caller that
 * accumulates Hessians for one group of Linears runs only as much of the
 * layer as it needs.  model_layer_set_linear() replaces a Linear's weight
 * (by its dequantized version) before the next run.
 *
 * Batches are processed in chunks of whole sequences (about 4096 tokens,
 * at least one sequence), so activations stay bounded whatever nseq; the
 * callback is then called once per chunk and point, in chunk order.
 *
 * GPTQ checkpoints (GPTQ-NOTES.md §2) open the same way: the quantization
 * config comes from config.json's quantization_config or, without one,
 * quantize_config.json / quant_config.json (model_gptq_load), and each
 * decoder Linear is either packed (<prefix>.qweight, .qzeros, .scales,
 * .g_idx) with its own bits and group size after the dynamic rules, or a
 * float <prefix>.weight.  model_layer_load dequantizes packed Linears into
 * the same float32 slab, exactly as the loaders do, so everything below
 * (layer_forward, model_nll) works on them unchanged; memory is still one
 * layer (plus one Linear's unpacked codes while it is dequantized).
 *
 * Threads: a model and its layers are read-only during forward passes
 * except through the functions that say otherwise; different layers may
 * run on different threads.
 */
#ifndef GQ_MODEL_H
#define GQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"
#include "safetensors.h"

enum linear_id { LIN_Q = 0, LIN_K, LIN_V, LIN_O, LIN_GATE, LIN_UP, LIN_DOWN, LIN_COUNT };

enum capture_point { CAP_ATTN_IN = 0, CAP_O_IN, CAP_MLP_IN, CAP_DOWN_IN, CAP_COUNT, CAP_NONE = -1 };

/* "q_proj", ... and "self_attn" / "mlp": the module names transformers uses. */
const char *linear_name(enum linear_id id);
/* Full module name: "model.layers.<layer>.self_attn.q_proj" into buf. */
void linear_module_name(char *buf, size_t cap, int layer, enum linear_id id);
/* The capture point whose input feeds this Linear. */
enum capture_point linear_capture_point(enum linear_id id);

typedef struct model model;
typedef struct model_layer model_layer;

/*
 * Open the model in dir: dir/config.json (model_config_load) and dir's
 * safetensors (st_model_open, mapped, nothing converted).  Every tensor
 * the config implies (embeddings, each layer's Linears, their biases when
 * the config has them, norms, q/k norms for Qwen3, the final norm, the
 * lm_head unless tied) is checked here for presence, shape and a float
 * dtype (F32, F16, BF16); tensors the config does not use are ignored, as
 * transformers ignores them.  For a GPTQ checkpoint each decoder Linear
 * must instead be either <prefix>.qweight I32 [in*bits/32, out], .qzeros
 * I32 [G, out*bits/32], .scales F16/BF16/F32 [G, out] and .g_idx I32 [in]
 * (optional when the module's desc_act is false: then k / group_size),
 * G = ceil(in / group_size) (1 for -1), with in and out multiples of 32;
 * or a float <prefix>.weight (a module a "-:" rule excludes, or one the
 * checkpoint leaves unquantized).  g_idx values are checked when the layer
 * is loaded.  Free with model_close (NULL-safe).  Errors: those of
 * model_config_load, model_gptq_load and st_model_open (GQ_ENOTFOUND when
 * dir has no config.json or no checkpoint); GQ_EINVAL naming a missing
 * tensor or one with the wrong shape or dtype, with the expected shape
 * (and for packed tensors the bits and group size it follows from), a
 * .qweight for a module a "-:" rule leaves unquantized; GQ_ENOMEM.
 */
int model_open(model **out, const char *dir, gq_err *e);
void model_close(model *m);
/* The parsed config and the mapped tensors; owned by m, valid until model_close. */
const struct model_config *model_config_of(const model *m);
const st_model *model_tensors(const model *m);

/*
 * How decoder Linear (layer, id) is stored: 1 when GPTQ-packed, *out then
 * its bits, group size, desc_act and sym after the dynamic rules; 0 when
 * a float .weight (a float checkpoint, a module a "-:" rule excludes or
 * one stored unquantized) or for a layer or id out of range, *out zeroed.
 * model_config_of(m)->quantized and ->gptq give the base config.
 */
int model_linear_quant(struct model_gptq_module *out, const model *m, int layer, enum linear_id id);
/* A GPTQ checkpoint's dynamic rules (possibly empty), NULL for a float one; owned by m. */
const dynamic_rules *model_dynamic(const model *m);

/* Rows and columns (out_features, in_features) of a Linear, from the config. */
void model_linear_shape(size_t *rows, size_t *cols, const model *m, enum linear_id id);

/*
 * hidden (n, hidden) = the embeddings of ids (n), widened to float32.
 * GQ_EINVAL, naming the first bad id and its position, when an id is
 * outside 0..vocab_size-1 (nothing written); GQ_ENOMEM.
 */
int model_embed(float *hidden, const model *m, const int32_t *ids, size_t n, gq_err *e);

/*
 * Decoder layer i's weights in float32 (one allocation; q/k/v adjacent),
 * packed GPTQ Linears dequantized (see model_open), the mapped pages
 * released after conversion.  Free with model_layer_free (NULL-safe).
 * GQ_EINVAL for i outside 0..num_layers-1, a bad tensor (as model_open) or
 * a g_idx value that is not a group (naming the tensor and the index),
 * GQ_ENOMEM.
 */
int model_layer_load(model_layer **out, const model *m, int i, gq_err *e);
void model_layer_free(model_layer *l);

/*
 * The layer's float32 weight (rows, cols) of a Linear, and its bias (rows)
 * or NULL; owned by l, valid until model_layer_free; NULL for a bad id.
 */
const float *model_layer_linear(const model_layer *l, enum linear_id id);
const float *model_layer_bias(const model_layer *l, enum linear_id id);
/*
 * Replace a Linear's weight by a copy of w (rows, cols), e.g. its
 * dequantized version; the bias stays.  GQ_EINVAL for a bad id or NULL w.
 */
int model_layer_set_linear(model_layer *l, enum linear_id id, const float *w, gq_err *e);

/*
 * Called with the input x (tokens, cols) of capture point `point` for one
 * chunk of nseq whole sequences (tokens = nseq * seqlen); x is read-only
 * and valid during the call only.  0 goes on.  A positive return stops the
 * forward pass: layer_forward returns GQ_ECANCELED.  A negative return (a
 * gq_code) stops it too and is returned as is, with a generic message in
 * e (a callback with a better message keeps it in its payload).
 */
typedef int (*capture_fn)(enum capture_point point, const float *x, size_t tokens, size_t cols,
                          size_t nseq, void *payload);

/*
 * Run decoder layer l on hidden (nseq * seqlen, hidden), in place,
 * positions 0..seqlen-1 in every sequence.  cb may be NULL.  stop_after:
 * CAP_NONE runs the whole layer (hidden is then the layer's output); a
 * capture point stops right after that point's callback (hidden is then
 * unspecified).  Allocates its workspace (the activations of one chunk)
 * per call.  m and l are only read: calls may run on several threads.
 * Errors: GQ_EINVAL for nseq or seqlen 0, seqlen over 2^20 or a bad
 * stop_after; GQ_ENOMEM; the callback's (see capture_fn).
 */
int layer_forward(float *hidden, const model *m, const model_layer *l, size_t nseq, size_t seqlen,
                  capture_fn cb, void *payload, enum capture_point stop_after, gq_err *e);

/*
 * layer_forward from capture point start, for sequential quantization
 * (fwd_layer_part): start CAP_ATTN_IN is layer_forward, and with att
 * non-NULL also stores the attention output (nseq * seqlen, num_heads *
 * head_dim) there; CAP_O_IN takes that attention output from att and
 * hidden as the layer input, adds o_proj(att) to hidden and goes on;
 * CAP_MLP_IN takes hidden as the residual stream after attention.
 * hidden is written only from the o_proj addition on, so a pass that
 * stops at CAP_ATTN_IN or CAP_O_IN leaves it unchanged.  GQ_EINVAL for
 * another start, a stop before the start, or CAP_O_IN without att; else
 * as layer_forward.
 */
int layer_forward_part(float *hidden, float *att, const model *m, const model_layer *l, size_t nseq,
                       size_t seqlen, enum capture_point start, capture_fn cb, void *payload,
                       enum capture_point stop_after, gq_err *e);

/*
 * Final norm and lm_head: logits (n, vocab) from hidden (n, hidden).  The
 * lm_head (or the tied embedding) is converted to float32 on first use and
 * kept by m, so this call modifies m: not concurrently with others on m.
 * GQ_ENOMEM.
 */
int model_logits(float *logits, model *m, const float *hidden, size_t n, gq_err *e);

/*
 * Negative log-likelihood summed over every predicted position of every
 * block: tokens (nblocks, seqlen), positions 0..seqlen-2 predict 1..seqlen-1.
 * *nll gets the sum (log-softmax in float32, max-subtracted, summed in
 * double), *count the number of predictions (nblocks*(seqlen-1)).
 * Perplexity = exp(nll / count).  Runs blocks in batches of batch (0: 8):
 * per batch, embeddings, every layer (converted, run, dropped), logits;
 * memory is one layer, one batch's activations and a block of logits.
 * Modifies m as model_logits does.  Errors: GQ_EINVAL for seqlen < 2, no
 * blocks, too many tokens, a token id outside the vocabulary (checked
 * before any work, naming block and position), a bad tensor; GQ_ENUMERIC
 * for non-finite logits; GQ_ENOMEM.  Outputs are set only on success.
 */
int model_nll(double *nll, size_t *count, model *m, const int32_t *tokens, size_t nblocks,
              size_t seqlen, size_t batch, gq_err *e);

#endif
