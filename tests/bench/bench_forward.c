/*
 * bench_forward.c - forward throughput of one Llama-7B-shaped decoder
 * layer (hidden 4096, intermediate 11008, 32 heads of 128, no GQA) over
 * 8 sequences of 512 tokens, against one 4096^3 sgemm timed in the same
 * run.  The layer is a generated bf16 checkpoint written to a temporary
 * directory with the project's own writer, then read back like any model.
 *
 * flops counts the seven Linears (2 * tokens * in * out each) and the two
 * attention products over the causal half only (2 * 2 * seq * (seq + 1) / 2
 * * head_dim per sequence and head): the forward skips the keys a query
 * cannot see, so counting the full square would flatter it.  The sgemm
 * reference is the best of two runs, the layer the best of two.
 * Prints {"bench": "forward_layer", "seconds", "tokens_per_s", "vs":
 * "sgemm4096", "flops_ratio", "attention_flops": "causal"}.
 */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blas_env.h"
#include "dtype.h"
#include "model.h"
#include "safetensors.h"

#define HID 4096
#define INTER 11008
#define NSEQ 8
#define SEQ 512

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)(rng >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
}

static int put(st_writer *w, const char *name, size_t n, float scale, gq_err *e)
{
    uint16_t *buf = malloc(n * sizeof(uint16_t));
    int rc;
    if (!buf)
        return GQ_FAIL(e, GQ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        buf[i] = gq_f32_to_bf16(scale * frand());
    rc = st_writer_write(w, name, buf, n * sizeof(uint16_t), e);
    free(buf);
    return rc;
}

int main(void)
{
    blas_env_select();   /* full-speed kernels where OpenBLAS misdetects the CPU */
    static const struct { const char *name; int64_t r, c; } t[] = {
        {"model.embed_tokens.weight", 256, HID},
        {"model.norm.weight", HID, -1},
        {"model.layers.0.input_layernorm.weight", HID, -1},
        {"model.layers.0.post_attention_layernorm.weight", HID, -1},
        {"model.layers.0.self_attn.q_proj.weight", HID, HID},
        {"model.layers.0.self_attn.k_proj.weight", HID, HID},
        {"model.layers.0.self_attn.v_proj.weight", HID, HID},
        {"model.layers.0.self_attn.o_proj.weight", HID, HID},
        {"model.layers.0.mlp.gate_proj.weight", INTER, HID},
        {"model.layers.0.mlp.up_proj.weight", INTER, HID},
        {"model.layers.0.mlp.down_proj.weight", HID, INTER},
        {"lm_head.weight", 256, HID},
    };
    char dir[] = "/tmp/gptq-bench-XXXXXX", path[256];
    gq_err e = GQ_ERR_INIT;
    st_writer *w = NULL;
    model *m = NULL;
    model_layer *l = NULL;
    float *h = NULL, *a = NULL, *b = NULL, *c = NULL;
    double sg, t0, best = 1e30, flops;
    FILE *f;
    int rc = 1;

    if (!mkdtemp(dir))
        return 1;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    f = fopen(path, "w");
    if (!f)
        goto done;
    fprintf(f, "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": %d, "
               "\"intermediate_size\": %d, \"num_hidden_layers\": 1, \"num_attention_heads\": 32, "
               "\"num_key_value_heads\": 32, \"vocab_size\": 256, \"rms_norm_eps\": 1e-5, "
               "\"rope_theta\": 10000.0, \"max_position_embeddings\": 4096, "
               "\"hidden_act\": \"silu\", \"torch_dtype\": \"bfloat16\"}\n", HID, INTER);
    fclose(f);
    if (st_writer_open(&w, dir, 0, &e) < 0)
        goto fail;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (st_writer_declare(w, t[i].name, ST_BF16, t[i].c < 0 ? 1 : 2,
                              (const int64_t[]){t[i].r, t[i].c}, &e) < 0)
            goto fail;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
        if (put(w, t[i].name, (size_t)t[i].r * (size_t)(t[i].c < 0 ? 1 : t[i].c),
                t[i].c < 0 ? 1.0f : 0.03f, &e) < 0)
            goto fail;
    rc = st_writer_finish(w, &e);
    w = NULL;
    if (rc < 0 || model_open(&m, dir, &e) < 0 || model_layer_load(&l, m, 0, &e) < 0)
        goto fail;

    a = malloc((size_t)HID * HID * sizeof(float));
    b = malloc((size_t)HID * HID * sizeof(float));
    c = malloc((size_t)HID * HID * sizeof(float));
    h = malloc((size_t)NSEQ * SEQ * HID * sizeof(float));
    if (!a || !b || !c || !h)
        goto done;
    for (size_t i = 0; i < (size_t)HID * HID; i++) {
        a[i] = frand();
        b[i] = frand();
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, HID, HID, HID, 1.0f, a, HID, b, HID,
                0.0f, c, HID);
    sg = 1e30;
    for (int rep = 0; rep < 2; rep++) {
        t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, HID, HID, HID, 1.0f, a, HID, b, HID,
                    0.0f, c, HID);
        t0 = now() - t0;
        if (t0 < sg)
            sg = t0;
    }
    for (int rep = 0; rep < 2; rep++) {
        for (size_t i = 0; i < (size_t)NSEQ * SEQ * HID; i++)
            h[i] = frand();
        t0 = now();
        if (layer_forward(h, m, l, NSEQ, SEQ, NULL, NULL, CAP_NONE, &e) < 0)
            goto fail;
        t0 = now() - t0;
        if (t0 < best)
            best = t0;
    }
    flops = 2.0 * NSEQ * SEQ * ((double)HID * HID * 4 + 3.0 * HID * INTER) +
            4.0 * NSEQ * 32 * ((double)SEQ * (SEQ + 1) / 2) * 128;
    printf("{\"bench\": \"sgemm4096\", \"seconds\": %.4f, \"gflops\": %.1f}\n", sg,
           2.0 * HID * (double)HID * HID / sg * 1e-9);
    printf("{\"bench\": \"forward_layer\", \"seconds\": %.4f, \"tokens_per_s\": %.0f, \"vs\": "
           "\"sgemm4096\", \"time_ratio\": %.3f, \"flops_ratio\": %.3f, \"gflops\": %.1f, "
           "\"attention_flops\": \"causal\"}\n",
           best, NSEQ * SEQ / best, best / sg,
           (flops / best) / (2.0 * HID * (double)HID * HID / sg), flops / best * 1e-9);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_forward: %s\n", e.msg);
    rc = 1;
done:
    st_writer_abort(w);
    model_layer_free(l);
    model_close(m);
    free(a);
    free(b);
    free(c);
    free(h);
    snprintf(path, sizeof(path), "rm -rf '%s'", dir);
    if (system(path) != 0)
        rc = 1;
    return rc;
}
