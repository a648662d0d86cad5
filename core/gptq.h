/*
 * gptq.h - GPTQ for one Linear layer: Hessian accumulation and the
 * lazy-batch solve (Frantar et al. 2022; GPTQ-NOTES.md §1.1, §1.3).
 *
 * Shapes follow Hugging Face: W is (rows = out_features, cols = in_features)
 * row-major float32; a calibration activation batch X is (tokens, cols).
 *
 * Threads: no global state.  Several threads may quantize different layers
 * at once; each call uses only its own buffers.  BLAS threading is a
 * process-wide OpenBLAS setting that the program's main() sets once (the
 * CLI: every core; the daemon: cores / workers); core/ never changes it.
 */
#ifndef GQ_GPTQ_H
#define GQ_GPTQ_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "quant.h"

struct gptq_params {
    struct quant_config q;      /* bits, sym, mse search */
    int group_size;             /* -1 = one group per row, else > 0 */
    int desc_act;               /* act-order: columns by descending diag(H) */
    int static_groups;          /* group params fixed before any update */
    int block_size;             /* lazy-batch block width, default 128 */
    double damp_percent;        /* damping = damp_percent * mean(diag H), default 0.01 */
    double damp_auto_increment; /* added after a failed Cholesky, default 0.0025; 0 = no retry */
    int metrics;                /* 1 = compute output errors (one GEMM), default 1 */
};

/* 4-bit asym, group 128, no act-order, block 128, damp 0.01 (+0.0025), metrics on. */
void gptq_params_default(struct gptq_params *p);

/* 0, or GQ_EINVAL naming the bad field. */
int gptq_params_check(const struct gptq_params *p, gq_err *e);

/* ---- Hessian accumulation ------------------------------------------- */

typedef struct gptq_hessian gptq_hessian;

/* A zeroed accumulator for inputs of width cols.  Free with gptq_hessian_free. */
int gptq_hessian_new(gptq_hessian **out, size_t cols, gq_err *e);
void gptq_hessian_free(gptq_hessian *h);

/*
 * Add one calibration batch: x (tokens, cols) with row stride ldx, holding
 * nseq sequences.  mask[t] == 0 leaves token t out (padding must not enter
 * H); mask may be NULL.  After all batches H = (2 / N) sum_t x_t x_t^T with
 * N the total number of sequences, as the reference computes it.
 */
int gptq_hessian_add(gptq_hessian *h, const float *x, size_t tokens, size_t ldx,
                     const unsigned char *mask, size_t nseq, gq_err *e);

/* Number of columns, sequences and tokens accumulated so far. */
size_t gptq_hessian_cols(const gptq_hessian *h);
size_t gptq_hessian_nsamples(const gptq_hessian *h);
size_t gptq_hessian_ntokens(const gptq_hessian *h);

/*
 * The finished H (cols, cols), full symmetric, row-major; owned by h.  The
 * first call scales and symmetrises in place; adding afterwards is an error.
 * Fails with GQ_EINVAL when nothing was accumulated.
 */
int gptq_hessian_matrix(const float **out, gptq_hessian *h, gq_err *e);

/* ---- the solve -------------------------------------------------------- */

struct gptq_result {
    size_t rows, cols;
    size_t ngroups;        /* ceil(cols / group), 1 when group_size == -1 */
    size_t group;          /* effective group width (cols when -1) */
    uint8_t *qint;         /* (rows, cols) integer codes, original column order */
    float *scales;         /* (ngroups, rows) */
    int32_t *zeros;        /* (ngroups, rows), integers in [0, maxq] */
    int32_t *g_idx;        /* (cols) group of each input column */
    float *wq;             /* (rows, cols) dequantized weight, original order */
    int32_t *perm;         /* (cols) processing order under desc_act, else NULL */

    double damp_percent;   /* damping finally used (after retries) */
    int damp_retries;      /* failed Cholesky attempts before it */
    size_t dead_columns;   /* columns with diag(H) == 0 */
    double avg_loss;       /* the reference's figure: sum of losses / nsamples */
    double weight_sqerr;   /* ||W - Wq||_F^2 */
    double out_err;        /* tr(dW H dW^T), H as accumulated (if metrics) */
    double out_ref;        /* tr(W H W^T) */
    double out_rel;        /* out_err / out_ref (0 when out_ref is 0) */
    double seconds;        /* wall time of gptq_quantize */
};

/* Release everything a result owns; the struct itself is not freed. NULL-safe. */
void gptq_result_free(struct gptq_result *r);

/*
 * Quantize W (rows, cols) with GPTQ against H (cols, cols), the finished
 * Hessian (2/N sum x x^T); nsamples is N, used only for avg_loss.  On
 * success fills *out (caller frees with gptq_result_free).  H and W are not
 * modified.  cancel (may be NULL) is polled once per column block and
 * gives GQ_ECANCELED.  A Hessian that stays not positive definite after
 * every damping increase, or non-finite input, gives GQ_ENUMERIC.
 */
int gptq_quantize(struct gptq_result *out, const float *W, size_t rows, size_t cols,
                  const float *H, double nsamples, const struct gptq_params *p,
                  const atomic_bool *cancel, gq_err *e);

/*
 * Exact output errors of any quantized weight Wq against W under H, with
 * one symmetric GEMM: err = tr((W-Wq) H (W-Wq)^T), ref = tr(W H W^T).
 * Used for the metrics above and to measure RTN the same way.
 */
int gptq_output_error(double *err, double *ref, const float *W, const float *Wq, size_t rows,
                      size_t cols, const float *H, gq_err *e);

#endif
