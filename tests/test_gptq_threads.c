/*
 * test_gptq_threads.c - several threads quantizing different layers at
 * once (what the daemon's workers do) get the same answers as one thread
 * doing them in turn: core/ has no global state, and the installed OpenBLAS
 * may be called from several threads at the same time.
 */
#include <pthread.h>
#include <stdint.h>

#include "gptq.h"
#include "test.h"

#define NLAYERS 4
#define ROWS 96
#define COLS 256
#define TOKENS 1024

struct layer {
    float w[ROWS * COLS];
    float x[TOKENS * COLS];
    struct gptq_params p;
    struct gptq_result r;
    int rc;
    gq_err e;
};

static struct layer layers[NLAYERS];
static struct gptq_result sequential[NLAYERS];

static void make_layer(struct layer *l, unsigned long long seed)
{
    unsigned long long s = seed;
    for (size_t i = 0; i < ROWS * COLS; i++)
        l->w[i] = (float)(0.05 * test_rand_normal(&s));
    for (size_t t = 0; t < TOKENS; t++) {
        double common = test_rand_normal(&s);
        for (size_t c = 0; c < COLS; c++)
            l->x[t * COLS + c] = (float)(common * (1.0 + (double)(c % 5)) + test_rand_normal(&s));
    }
    gptq_params_default(&l->p);
    l->p.q.bits = 3 + (int)(seed % 2);
    l->p.group_size = seed % 3 ? 64 : -1;
    l->p.desc_act = (int)(seed % 2);
}

static int run_layer(struct gptq_result *out, struct layer *l)
{
    gptq_hessian *h = NULL;
    const float *H;
    int rc;

    gq_err_clear(&l->e);
    if ((rc = gptq_hessian_new(&h, COLS, &l->e)) < 0)
        return rc;
    for (size_t t0 = 0; t0 < TOKENS && rc == 0; t0 += 256)
        rc = gptq_hessian_add(h, l->x + t0 * COLS, 256, COLS, NULL, 1, &l->e);
    if (rc == 0)
        rc = gptq_hessian_matrix(&H, h, &l->e);
    if (rc == 0)
        rc = gptq_quantize(out, l->w, ROWS, COLS, H, TOKENS / 256, &l->p, NULL, &l->e);
    gptq_hessian_free(h);
    return rc;
}

static void *worker(void *arg)
{
    struct layer *l = arg;
    l->rc = run_layer(&l->r, l);
    return NULL;
}

static void test_gptq_threads__concurrent_equals_sequential(void)
{
    pthread_t th[NLAYERS];

    for (int i = 0; i < NLAYERS; i++) {
        make_layer(&layers[i], 1000 + (unsigned long long)i);
        CHECK_OK(run_layer(&sequential[i], &layers[i]), &layers[i].e);
    }
    for (int i = 0; i < NLAYERS; i++)
        CHECK(pthread_create(&th[i], NULL, worker, &layers[i]) == 0);
    for (int i = 0; i < NLAYERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < NLAYERS; i++) {
        size_t same = 0, total = (size_t)ROWS * COLS;
        CHECK_OK(layers[i].rc, &layers[i].e);
        if (layers[i].rc != 0 || !sequential[i].qint)
            continue;
        for (size_t k = 0; k < total; k++)
            same += layers[i].r.qint[k] == sequential[i].qint[k];
        /* BLAS may split work differently when called from two threads at once */
        CHECK_MSG(same * 1000 >= total * 999, "layer %d: %zu of %zu codes equal", i, same, total);
        CHECK_NEAR(layers[i].r.out_rel, sequential[i].out_rel, 1e-3 * sequential[i].out_rel);
        gptq_result_free(&layers[i].r);
        gptq_result_free(&sequential[i]);
    }
}

int main(void)
{
    t_prog = "test_gptq_threads";
    RUN(test_gptq_threads__concurrent_equals_sequential);
    return test_report();
}
