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

int model_open(model **out, const char *dir, gq_err *e);
void model_close(model *m);
const struct model_config *model_config_of(const model *m);
const st_model *model_tensors(const model *m);

/* Rows and columns (out_features, in_features) of a Linear. */
void model_linear_shape(size_t *rows, size_t *cols, const model *m, enum linear_id id);

/* hidden (n, hidden) = embeddings of ids; ids outside the vocabulary are GQ_EINVAL. */
int model_embed(float *hidden, const model *m, const int32_t *ids, size_t n, gq_err *e);

/* Decoder layer i's weights in float32. Free with model_layer_free. */
int model_layer_load(model_layer **out, const model *m, int i, gq_err *e);
void model_layer_free(model_layer *l);

/* The layer's float32 weight (rows, cols) of a Linear, and its bias or NULL. */
const float *model_layer_linear(const model_layer *l, enum linear_id id);
const float *model_layer_bias(const model_layer *l, enum linear_id id);
/* Replace a Linear's weight (rows, cols), e.g. by its dequantized version. */
int model_layer_set_linear(model_layer *l, enum linear_id id, const float *w, gq_err *e);

/*
 * Called with the input x (tokens, cols) of capture point `point`;
 * tokens = nseq * seqlen.  A non-zero return stops the forward pass and is
 * returned by layer_forward.
 */
typedef int (*capture_fn)(enum capture_point point, const float *x, size_t tokens, size_t cols,
                          size_t nseq, void *payload);

/*
 * Run decoder layer l on hidden (nseq * seqlen, hidden), in place.  cb may
 * be NULL.  stop_after: CAP_NONE runs the whole layer (hidden is then the
 * layer's output); a capture point stops right after that point's
 * callback (hidden is then unspecified).
 */
int layer_forward(float *hidden, const model *m, const model_layer *l, size_t nseq, size_t seqlen,
                  capture_fn cb, void *payload, enum capture_point stop_after, gq_err *e);

/*
 * Final norm and lm_head: logits (n, vocab) from hidden (n, hidden).  The
 * lm_head (or the tied embedding) is converted to float32 once and kept by m.
 */
int model_logits(float *logits, model *m, const float *hidden, size_t n, gq_err *e);

/*
 * Negative log-likelihood summed over every predicted position of every
 * block: tokens (nblocks, seqlen), positions 0..seqlen-2 predict 1..seqlen-1.
 * *nll gets the sum, *count the number of predictions (nblocks*(seqlen-1)).
 * Perplexity = exp(nll / count).  Runs blocks in batches of batch.
 */
int model_nll(double *nll, size_t *count, model *m, const int32_t *tokens, size_t nblocks,
              size_t seqlen, size_t batch, gq_err *e);

#endif
