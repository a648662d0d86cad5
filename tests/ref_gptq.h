/*
 * ref_gptq.h - the test oracle: a naive GPTQ in double precision, written
 * for clarity, never for speed (O(cols^3) time, plain malloc).
 *
 * It follows the reference semantics of IST-DASLab gptq `fasterquant` and
 * AutoGPTQ's scale/zero/g_idx bookkeeping (GPTQ-NOTES.md §1.2, §1.3), but
 * without the lazy-batch trick: each column's error is pushed into every
 * later column at once.  The lazy-batch quirk that matters for the output
 * (a group that starts inside a block takes its parameters from weights
 * without that block's updates) is reproduced with an explicit snapshot.
 *
 * Only the types of core/ are used (struct quant_config, struct
 * gptq_params, gq_code); no core/ function is called, so the oracle is
 * independent of the code it judges.
 *
 * Precision note: everything is double, except that the quantizer rounds
 * to float32 where the reference's float32 tensors decide discrete
 * outcomes: the range width and the scale, the MSE shrink factor and the
 * shrunk range, and the quotients -xmin / scale and w / scale whose rint
 * gives the zero and the code.  Exact ties there are structural, not rare:
 * an all-zero row has -xmin / scale = maxq / 2 = k + 0.5 in exact
 * arithmetic (4-bit: float32 gives zero 7, double would give 8), and in a
 * symmetric row the most negative weight sits exactly -maxq / 2 steps from
 * zero.  With float32 inputs the quantizer is thereby bit-identical to
 * the reference's; the GPTQ updates, the inverse, the MSE error sums and
 * the losses stay double.
 */
#ifndef GQ_REF_GPTQ_H
#define GQ_REF_GPTQ_H

#include <stddef.h>
#include <stdint.h>

#include "gptq.h"

/* rint() in the default rounding mode: half to even, like torch.round. */
double ref_rint(double x);

/* clamp(rint(w / scale) + zero, 0, maxq) */
int ref_code(double w, double scale, double zero, int maxq);

/* scale * (q - zero) */
double ref_dequant(int q, double scale, double zero);

/*
 * find_params for rows r < rows over x[r*ld + k], k < cols, including the
 * optional MSE grid search (c->mse).  Writes scale[rows] (float32-exact
 * values) and zero[rows] (integers in [0, maxq]).
 */
void ref_find_params(double *scale, double *zero, const double *x, size_t rows, size_t cols,
                     size_t ld, const struct quant_config *c);

/*
 * The inverse-Hessian factor GPTQ uses: H' = H with dead diagonals set to 1,
 * columns in processing order (desc_act: diag(H') descending, ties by
 * ascending column), plus damp_percent * mean(diag H') on the diagonal;
 * u (cols, cols) row-major upper triangular with H'^-1 = u^T u.
 */
struct ref_factor {
    size_t n;
    int32_t *perm;        /* (n) processing order, NULL without desc_act */
    double *u;            /* (n, n) */
    double damp_percent;  /* damping that succeeded */
    int damp_retries;     /* failed attempts before it */
};

/*
 * Build the factor, retrying with damp_percent += damp_auto_increment
 * while the Cholesky of H' (or of its inverse) fails and damp_percent < 1.
 * 0, GQ_ENUMERIC when no damping works, GQ_ENOMEM.  Free with
 * ref_factor_free (NULL-safe; the struct itself is not freed).
 */
int ref_factor_new(struct ref_factor *out, const float *H, size_t cols, int desc_act,
                   double damp_percent, double damp_auto_increment);
void ref_factor_free(struct ref_factor *f);

/*
 * Tie following.  GPTQ feeds each rounding decision back into every later
 * column of the row, so one code that float32 and double round to
 * different sides of a boundary k + 0.5 (the quotient was within float
 * noise of it) changes the rest of the row: a free-running double oracle
 * disagrees with a correct float32 implementation in whole row tails.
 * Given the implementation's codes, the oracle adopts the other code
 * wherever its own quotient w / scale + zero lies within tol of the
 * boundary between the two codes (and the codes differ by one), counts
 * it, and carries on from the same state as the implementation.  Any
 * disagreement farther than tol from a boundary is kept, so a real
 * difference still shows as a mismatch.  tol is in quantization steps.
 */
struct ref_hint {
    const uint8_t *qint;   /* (rows, cols) codes under test, original column order */
    double tol;
};

struct ref_result {
    size_t rows, cols, ngroups, group;
    uint8_t *qint;        /* (rows, cols) original column order */
    double *scales;       /* (ngroups, rows), processing order under desc_act non-static */
    int32_t *zeros;       /* (ngroups, rows) */
    int32_t *g_idx;       /* (cols) */
    double *wq;           /* (rows, cols) dequantized, original order */
    int32_t *perm;        /* (cols) under desc_act, else NULL */
    double damp_percent;
    int damp_retries;
    size_t dead_columns;
    double loss;          /* sum over columns of sum_rows (w - q)^2 / d^2 / 2 */
    double avg_loss;      /* loss / nsamples */
    double *qv;           /* (rows, cols) w / scale + zero before rounding, original order */
    size_t ties_followed; /* codes taken from the hint */
    double max_tie_dist;  /* largest |qv - boundary| among them, in steps */
};

/*
 * GPTQ of W (rows, cols) against the finished Hessian H (cols, cols), with
 * p's bits, sym, mse, group_size, desc_act, static_groups, block_size,
 * damp_percent and damp_auto_increment.  pre, when not NULL, is a factor
 * built by ref_factor_new for the same H, desc_act and damping (lets a
 * test grid reuse the O(cols^3) part); NULL builds one.  hint, when not
 * NULL, makes the oracle follow the given codes at rounding ties (see
 * struct ref_hint); NULL runs free.  0, GQ_ENUMERIC, GQ_ENOMEM.  Free with
 * ref_result_free (NULL-safe).
 */
int ref_gptq(struct ref_result *out, const float *W, size_t rows, size_t cols, const float *H,
             double nsamples, const struct gptq_params *p, const struct ref_factor *pre,
             const struct ref_hint *hint);
void ref_result_free(struct ref_result *r);

/* err = tr((W - Wq) H (W - Wq)^T), ref = tr(W H W^T), all in double. */
void ref_output_error(double *err, double *ref, const float *W, const float *Wq, size_t rows,
                      size_t cols, const float *H);

#endif
