/*
 * demo_layer.c - what `make demo` shows until the daemon exists: one
 * generated Linear layer (1024 x 2048, calibration inputs with correlated
 * features like a transformer's) quantized by round-to-nearest and by GPTQ
 * at several settings, packed into the GPTQ checkpoint tensors, and the
 * output error of each on the calibration inputs, tr(dW H dW^T)/tr(W H W^T).
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "gptq.h"
#include "pack.h"
#include "quant.h"

static double gauss(uint64_t *s)
{
    double u1, u2;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    u1 = ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    u2 = ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int main(void)
{
    const size_t rows = 1024, cols = 2048, tokens = 8192, rank = 256;
    static const struct { int bits, group, act; const char *name; } cfg[] = {
        {4, 128, 0, "4-bit g128"}, {4, 128, 1, "4-bit g128 act-order"},
        {4, -1, 0, "4-bit per-channel"}, {3, 128, 0, "3-bit g128"}, {2, 64, 0, "2-bit g64"},
    };
    float *w = malloc(rows * cols * sizeof(float)), *x = malloc(tokens * cols * sizeof(float));
    float *z = malloc(tokens * rank * sizeof(float)), *mix = malloc(rank * cols * sizeof(float));
    uint8_t *q = malloc(rows * cols);
    float *wq = malloc(rows * cols * sizeof(float)), *sc = malloc(cols * rows * sizeof(float));
    int32_t *zs = malloc(cols * rows * sizeof(int32_t));
    int32_t *qweight = malloc(rows * cols * sizeof(int32_t)), *qzeros = malloc(cols * rows * sizeof(int32_t));
    gptq_hessian *h = NULL;
    const float *H;
    gq_err e = GQ_ERR_INIT;
    uint64_t s = 42;
    int rc = 1;

    if (!w || !x || !z || !mix || !q || !wq || !sc || !zs || !qweight || !qzeros)
        goto done;
    for (size_t i = 0; i < rows * cols; i++)
        w[i] = (float)(0.02 * gauss(&s));
    /* x = z * mix + noise: inputs live mostly in a 256-dim subspace, with a few loud features */
    for (size_t i = 0; i < tokens * rank; i++)
        z[i] = (float)gauss(&s);
    for (size_t i = 0; i < rank * cols; i++)
        mix[i] = (float)(gauss(&s) / sqrt((double)rank));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)tokens, (int)cols, (int)rank,
                1.0f, z, (int)rank, mix, (int)cols, 0.0f, x, (int)cols);
    for (size_t t = 0; t < tokens; t++)
        for (size_t c = 0; c < cols; c++)
            x[t * cols + c] = x[t * cols + c] * (c % 97 == 0 ? 8.0f : 1.0f) + 0.05f * (float)gauss(&s);

    if (gptq_hessian_new(&h, cols, &e) < 0)
        goto fail;
    for (size_t t0 = 0; t0 < tokens; t0 += 2048)
        if (gptq_hessian_add(h, x + t0 * cols, 2048, cols, NULL, 1, &e) < 0)
            goto fail;
    if (gptq_hessian_matrix(&H, h, &e) < 0)
        goto fail;

    printf("gptqd engine demo: one %zu x %zu Linear, %zu calibration tokens\n", rows, cols, tokens);
    printf("%-22s %12s %12s %8s %9s %8s\n", "config", "RTN rel err", "GPTQ rel err", "ratio",
           "damp", "seconds");
    for (size_t k = 0; k < sizeof(cfg) / sizeof(cfg[0]); k++) {
        struct gptq_params p;
        struct gptq_result r;
        double rerr, rref;

        gptq_params_default(&p);
        p.q.bits = cfg[k].bits;
        p.group_size = cfg[k].group;
        p.desc_act = cfg[k].act;
        if (quant_rtn(q, sc, zs, wq, w, rows, cols, cfg[k].group, &p.q, &e) < 0 ||
            gptq_output_error(&rerr, &rref, w, wq, rows, cols, H, &e) < 0)
            goto fail;
        if (gptq_quantize(&r, w, rows, cols, H, (double)tokens / 2048.0, &p, NULL, &e) < 0)
            goto fail;
        if (pack_check(rows, cols, p.q.bits, p.group_size, &e) < 0 ||
            pack_qweight(qweight, r.qint, rows, cols, p.q.bits, &e) < 0 ||
            pack_qzeros(qzeros, r.zeros, r.ngroups, rows, p.q.bits, PACK_GPTQ, &e) < 0) {
            gptq_result_free(&r);
            goto fail;
        }
        printf("%-22s %12.3e %12.3e %8.3f %9.4f %8.3f\n", cfg[k].name, rerr / rref, r.out_rel,
               r.out_rel / (rerr / rref), r.damp_percent, r.seconds);
        gptq_result_free(&r);
    }
    printf("packed: qweight int32 [%zu, %zu] (4-bit), qzeros int32 [%zu, %zu], checkpoint_format gptq\n",
           pack_qweight_rows(cols, 4), rows, cols / 128, pack_qzeros_cols(rows, 4));
    printf("the daemon (REST API, Hub downloads, whole models) is under construction; see README.md\n");
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "demo: %s\n", e.msg);
done:
    gptq_hessian_free(h);
    free(w); free(x); free(z); free(mix); free(q); free(wq); free(sc); free(zs); free(qweight); free(qzeros);
    return rc;
}
