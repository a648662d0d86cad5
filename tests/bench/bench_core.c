/*
 * bench_core.c - speed of the engine core on one Llama-7B-sized layer.
 *
 * A 4096 x 4096 Linear with 32,768 calibration tokens: Hessian
 * accumulation, the GPTQ solve (inverse factor + column loop + block
 * updates), the output-error metrics, and packing, each compared with one
 * 4096^3 OpenBLAS sgemm timed in the same run (these machines are noisy, so
 * only ratios mean anything).  One JSON object per line:
 *   {"bench": NAME, "seconds": S, "vs": "sgemm4096", "time_ratio": T,
 *    "flops_ratio": F, "peak_extra_bytes": B, ...}
 * time_ratio = seconds / sgemm seconds; flops_ratio = this step's FLOP rate
 * / the sgemm's FLOP rate, where the step's FLOPs are countable.
 * Environment: BENCH_N (default 4096), BENCH_TOKENS (default 32768).
 */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas_env.h"
#include "dtype.h"
#include "gptq.h"
#include "mem.h"
#include "pack.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fill(float *x, size_t n, uint64_t seed, float amp)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = amp * ((float)(s >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f);
    }
}

static size_t env_size(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, NULL, 10) : dflt;
}

static double sgemm_s, sgemm_flops;

static void report(const char *name, double s, double flops, size_t peak, const char *extra)
{
    printf("{\"bench\": \"%s\", \"seconds\": %.4f, \"vs\": \"sgemm%zu\", \"time_ratio\": %.4f", name,
           s, (size_t)env_size("BENCH_N", 4096), s / sgemm_s);
    if (flops > 0)
        printf(", \"flops_ratio\": %.4f, \"gflops\": %.1f", (flops / s) / (sgemm_flops / sgemm_s),
               flops / s * 1e-9);
    printf(", \"peak_extra_bytes\": %zu%s}\n", peak, extra ? extra : "");
    fflush(stdout);
}

int main(void)
{
    blas_env_select();   /* full-speed kernels where OpenBLAS misdetects the CPU */
    size_t n = env_size("BENCH_N", 4096), tokens = env_size("BENCH_TOKENS", 32768);
    size_t batch = 4096, rows = n;
    float *a = NULL, *b = NULL, *c = NULL, *x = NULL, *w = NULL;
    gptq_hessian *h = NULL;
    const float *H;
    struct gptq_params p;
    struct gptq_result r;
    gq_err e = GQ_ERR_INIT;
    double t, first;
    size_t base;
    int rc = 1;

    memset(&r, 0, sizeof(r));
    a = malloc(n * n * sizeof(float));
    b = malloc(n * n * sizeof(float));
    c = malloc(n * n * sizeof(float));
    if (!a || !b || !c)
        goto done;
    fill(a, n * n, 1, 1.0f);
    fill(b, n * n, 2, 1.0f);
    /* warm up the BLAS threads, then time the reference */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 512, 512, 512, 1.0f, a, 512, b, 512,
                0.0f, c, 512);
    sgemm_s = 1e30;
    for (int k = 0; k < 2; k++) {
        t = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a,
                    (int)n, b, (int)n, 0.0f, c, (int)n);
        t = now() - t;
        if (t < sgemm_s)
            sgemm_s = t;
    }
    sgemm_flops = 2.0 * (double)n * (double)n * (double)n;
    printf("{\"bench\": \"sgemm%zu\", \"seconds\": %.4f, \"gflops\": %.1f, \"blas_threads\": %d}\n",
           n, sgemm_s, sgemm_flops / sgemm_s * 1e-9, openblas_get_num_threads());
    free(a);
    free(b);
    free(c);
    a = b = c = NULL;

    /* Hessian: tokens in batches of 4096, H = 2/N sum x x^T */
    x = malloc(batch * n * sizeof(float));
    if (!x)
        goto done;
    fill(x, batch * n, 3, 1.0f);
    if (gptq_hessian_new(&h, n, &e) < 0)
        goto fail;
    base = gq_mem_current();
    gq_mem_peak_reset();
    t = now();
    for (size_t t0 = 0; t0 < tokens; t0 += batch) {
        /* the same batch repeatedly: timing only; refilling would be timed too */
        if (gptq_hessian_add(h, x, batch, n, NULL, 1, &e) < 0)
            goto fail;
    }
    if (gptq_hessian_matrix(&H, h, &e) < 0)
        goto fail;
    t = now() - t;
    report("hessian", t, (double)tokens * (double)n * (double)(n + 1), gq_mem_peak() - base, NULL);
    free(x);
    x = NULL;

    /* Solve: 4-bit, group 128, the default path. */
    w = malloc(rows * n * sizeof(float));
    if (!w)
        goto done;
    fill(w, rows * n, 4, 0.05f);
    gptq_params_default(&p);
    p.metrics = 0;
    /*
     * Twice: the first run also pays for the first touch of ~240 MB of fresh
     * pages, which on these VMs costs several microseconds a page (the host
     * backs guest memory lazily); the second is the steady state a pipeline
     * quantizing layer after layer sees.  Both are printed.
     */
    if (gptq_quantize(&r, w, rows, n, H, (double)tokens / 2048.0, &p, NULL, &e) < 0)
        goto fail;
    first = r.seconds;
    gptq_result_free(&r);
    base = gq_mem_current();
    gq_mem_peak_reset();
    if (gptq_quantize(&r, w, rows, n, H, (double)tokens / 2048.0, &p, NULL, &e) < 0)
        goto fail;
    {
        /* potrf n^3/3 + trtri n^3/3 + updates ~ 2 rows n^2 / 2 * 2 */
        double nn = (double)n, flops = 2.0 * nn * nn * nn / 3.0 + 2.0 * (double)rows * nn * nn / 2.0;
        char extra[128];
        snprintf(extra, sizeof(extra), ", \"damp_retries\": %d, \"first_run_seconds\": %.4f",
                 r.damp_retries, first);
        report("solve", r.seconds, flops, gq_mem_peak() - base - 0, extra);
    }

    /* Output-error metrics: one symmetric GEMM of [dW; W] with H. */
    {
        double err, ref;
        base = gq_mem_current();
        gq_mem_peak_reset();
        t = now();
        if (gptq_output_error(&err, &ref, w, r.wq, rows, n, H, &e) < 0)
            goto fail;
        t = now() - t;
        report("metrics", t, 2.0 * 2.0 * (double)rows * (double)n * (double)n,
               gq_mem_peak() - base, NULL);
    }

    /* Packing: qweight, qzeros (v1), fp16 scales, g_idx copy. */
    {
        size_t qw = pack_qweight_rows(n, 4) * rows, qz = r.ngroups * pack_qzeros_cols(rows, 4);
        int32_t *qweight = malloc(qw * sizeof(int32_t)), *qzeros = malloc(qz * sizeof(int32_t));
        uint16_t *sc = malloc(r.ngroups * rows * sizeof(uint16_t));
        if (!qweight || !qzeros || !sc) {
            free(qweight);
            free(qzeros);
            free(sc);
            goto done;
        }
        t = now();
        if (pack_qweight(qweight, r.qint, rows, n, 4, &e) < 0 ||
            pack_qzeros(qzeros, r.zeros, r.ngroups, rows, 4, PACK_GPTQ, &e) < 0) {
            free(qweight);
            free(qzeros);
            free(sc);
            goto fail;
        }
        gq_f32_to_f16_n(sc, r.scales, r.ngroups * rows);
        t = now() - t;
        report("pack", t, 0, 0, NULL);
        free(qweight);
        free(qzeros);
        free(sc);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_core: %s\n", e.msg);
done:
    gptq_result_free(&r);
    gptq_hessian_free(h);
    free(a);
    free(b);
    free(c);
    free(x);
    free(w);
    return rc;
}
