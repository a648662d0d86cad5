/*
 * forward.h - the float32 kernels of one decoder layer, internal to core/.
 *
 * core/model.c owns checkpoints, weights and the public API (model.h);
 * this module only computes.  A layer is described by plain pointers
 * (struct fwd_weights) and sizes (struct fwd_shape), so the kernels know
 * nothing of safetensors or configs.  Tests call the small kernels
 * (fwd_exp, fwd_logsumexp) directly.
 *
 * Every kernel works on row-major float32 arrays whose shapes are given
 * in the comments; sizes are in floats, never bytes.  Nothing here
 * allocates: callers pass a workspace of fwd_workspace_floats() floats.
 */
#ifndef GQ_FORWARD_H
#define GQ_FORWARD_H

#include <stddef.h>

#include "err.h"
#include "model.h"

/* Query rows per attention block: scores scratch is FWD_QBLOCK x seqlen floats. */
#define FWD_QBLOCK 64

/* A decoder layer's sizes (config values) and its rope frequencies. */
struct fwd_shape {
    size_t hidden, inter, heads, kv_heads, head_dim;
    size_t window;            /* Mistral sliding window; 0 = plain causal */
    float eps;                /* rms_norm_eps */
    const float *inv_freq;    /* (head_dim / 2) rotary inverse frequencies */
};

/*
 * A layer's float32 weights.  q_proj, k_proj and v_proj are stacked in one
 * (q + 2 kv, hidden) matrix (q = heads * head_dim, kv = kv_heads *
 * head_dim), so one GEMM computes all three; their biases likewise.
 * Biases and the q/k norms (Qwen3) are NULL when absent.
 */
struct fwd_weights {
    const float *qkv, *qkv_bias;       /* (q + 2 kv, hidden), (q + 2 kv) */
    const float *o, *o_bias;           /* (hidden, q), (hidden) */
    const float *gate, *gate_bias;     /* (inter, hidden), (inter) */
    const float *up, *up_bias;         /* (inter, hidden), (inter) */
    const float *down, *down_bias;     /* (hidden, inter), (hidden) */
    const float *in_norm, *post_norm;  /* (hidden) */
    const float *q_norm, *k_norm;      /* (head_dim) or NULL */
};

/*
 * Sequences per chunk: fwd_layer runs whole sequences in chunks of about
 * 4096 tokens (at least one sequence), which bounds its workspace
 * whatever the batch.  At most nseq.
 */
size_t fwd_chunk_seqs(size_t nseq, size_t seqlen);

/*
 * Floats of workspace fwd_layer needs for nseq sequences of seqlen tokens
 * (the largest chunk, the attention scores, the rope table); 0 when the
 * size overflows.
 */
size_t fwd_workspace_floats(const struct fwd_shape *s, size_t nseq, size_t seqlen);

/*
 * Run one decoder layer over x (nseq * seqlen, hidden) in place, chunk by
 * chunk, positions 0..seqlen-1 in every sequence.  At each capture point
 * cb (may be NULL) gets that point's input (chunk tokens, cols) and the
 * chunk's sequence count; after the callback of stop_after (CAP_NONE: run
 * to the end) the chunk stops there, x then holding partial results.  ws
 * holds fwd_workspace_floats(s, nseq, seqlen) floats, 64-byte aligned.
 * Returns 0, a callback's negative return, or GQ_ECANCELED (message set)
 * when a callback returned a positive value.
 */
int fwd_layer(float *x, const struct fwd_shape *s, const struct fwd_weights *w, size_t nseq,
              size_t seqlen, capture_fn cb, void *payload, enum capture_point stop_after,
              float *ws, gq_err *e);

/*
 * fwd_layer from capture point start, so that sequential quantization
 * need not recompute what it already has: CAP_ATTN_IN is fwd_layer (with
 * att non-NULL, the attention output, (nseq * seqlen, heads * head_dim),
 * is also stored there); CAP_O_IN takes the attention output from att and
 * x as the layer's input, adds o_proj(att) to x and goes on; CAP_MLP_IN
 * takes x as the residual stream after attention.  Callbacks come for the
 * points from start on.  x is only written from the o_proj addition on:
 * a run that stops at CAP_ATTN_IN or CAP_O_IN leaves it unchanged.
 */
int fwd_layer_part(float *x, float *att, const struct fwd_shape *s, const struct fwd_weights *w, size_t nseq,
                   size_t seqlen, enum capture_point start, capture_fn cb, void *payload,
                   enum capture_point stop_after, float *ws, gq_err *e);

/* y (rows, d) = x / sqrt(mean(x^2) + eps) * w, row by row; y may be x. */
void fwd_rmsnorm(float *y, const float *x, const float *w, size_t rows, size_t d, float eps);

/* y (n, rows) = x (n, cols) W^T + b: W (rows, cols) row-major, b (rows) or NULL. */
void fwd_linear(float *y, const float *x, const float *w, const float *b, size_t n, size_t rows,
                size_t cols);

/*
 * y[i] = e^x[i] for n floats (y may be x): within 2 ulp of the correctly
 * rounded result for normal results, +inf above 88.72, subnormal or 0
 * below -87.33, NaN for NaN.  Branch-free, so the loop vectorises.
 */
void fwd_exp(float *y, const float *x, size_t n);

/* log(sum(e^z)) over z (n > 0), max-subtracted, summed in double. */
double fwd_logsumexp(const float *z, size_t n);

#endif
