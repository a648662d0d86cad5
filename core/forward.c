/*
 * forward.c - the float32 kernels of a decoder layer: RMSNorm, Linear,
 * rotary embeddings, causal (optionally windowed) GQA attention, SwiGLU.
 *
 * DESIGN
 *
 * This follows transformers' modeling_llama.py (and the Mistral, Qwen2
 * and Qwen3 variants, which differ only in biases, the window and the
 * q/k norms) operation by operation, in float32, in torch's order where
 * rounding depends on it:
 *
 *   n1 = rmsnorm(x) * w_in                        [CAP_ATTN_IN]
 *   q, k, v = n1 Wq^T + bq, n1 Wk^T + bk, n1 Wv^T + bv  (one GEMM, stacked)
 *   q, k = rmsnorm_per_head(q) * wq, ... * wk     (Qwen3 only, before rope)
 *   q, k = q cos + rotate_half(q) sin, ...        (rotate_half: halves, not pairs)
 *   a = softmax(q k^T * head_dim^-0.5 + mask) v   [CAP_O_IN]
 *   x = x + (a Wo^T + bo)
 *   n2 = rmsnorm(x) * w_post                      [CAP_MLP_IN]
 *   m = silu(n2 Wg^T) * (n2 Wu^T)                 [CAP_DOWN_IN]
 *   x = x + (m Wd^T + bd)
 *
 * The mask is masking_utils': key j is visible from query i when j <= i
 * and, with a sliding window w, j > i - w.
 *
 * Speed: every Linear is one BLAS GEMM over all tokens of a chunk (q, k
 * and v together).  Attention runs one (sequence, head) at a time, in
 * blocks of FWD_QBLOCK query rows: each block multiplies only against the
 * keys it can see (causal and window bounds), so the upper triangle is
 * never computed and the scores scratch is FWD_QBLOCK x seqlen floats.
 * Everything else is a plain loop the compiler vectorises: exp is a
 * branch-free polynomial (fexp) rather than libm's expf, and reductions
 * keep explicit lanes so that they vectorise without reassociating.
 *
 * Chunks: sequences are processed in chunks of about CHUNK_TOKENS tokens,
 * so a batch of any size needs the workspace of one chunk.
 */
#include "forward.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define CHUNK_TOKENS 4096
#define LANES 16
#define BLOCK 256

/*
 * The loops below are compiled three times (AVX-512, AVX2, baseline
 * x86-64) and the widest one the CPU runs is picked when the program
 * loads (gcc's target_clones, an ifunc): the build stays portable and the
 * loops still run at full vector width.  Rounding is the same in every
 * clone: nothing is reassociated and -std=c11 keeps fp-contract off, so no
 * FMA is formed.
 */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

/* ---- elementwise kernels ---- */

/* float <-> its bits */
static inline uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static inline float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/*
 * e^v in float32, branch-free.  v = k ln2 + r with k = round(v / ln2) and
 * |r| <= ln2 / 2 (Cody-Waite: ln2 split in two so that k * C1 is exact),
 * e^r by the degree-7 polynomial of Cephes' expf, 2^k applied as two exact
 * power-of-two factors so that k may run from -150 (subnormal results) to
 * 128 (overflow to inf) without a special case.  k is read from the bits
 * of v / ln2 + 1.5 * 2^23, and out-of-range results are patched with
 * integer masks, never float comparisons or conversions: under the
 * default -ftrapping-math gcc will not if-convert those, and the loop
 * would not vectorise.  About 1 ulp from the correctly rounded result.
 */
static inline float fexp(float v)
{
    const float t = v * 1.44269504088896341f + 12582912.0f;
    const int32_t k = (int32_t)(fbits(t) - 0x4b400000u);   /* round(v / ln2), or garbage if huge */
    int32_t kc = k > 128 ? 128 : k, kh;
    float kf, r, p;
    uint32_t res, big, small, nan;

    kc = kc < -150 ? -150 : kc;
    kf = (float)kc;
    r = v - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    kh = kc / 2;
    res = fbits((p * bitsf((uint32_t)(kh + 127) << 23)) * bitsf((uint32_t)(kc - kh + 127) << 23));
    big = 0u - (uint32_t)(k > 128);                                 /* -> +inf */
    small = 0u - (uint32_t)(k < -150);                              /* -> +0 */
    nan = 0u - (uint32_t)((fbits(v) & 0x7fffffffu) > 0x7f800000u);  /* -> v */
    res = (res & ~big) | (0x7f800000u & big);
    res &= ~small;
    res = (res & ~nan) | (fbits(v) & nan);
    return bitsf(res);
}

/*
 * A signed integer with the order of the floats (the total order: -NaN <
 * -inf < ... < -0 < +0 < ... < +inf < +NaN), and back: max reductions in
 * integers vectorise where float comparisons do not (see fexp).
 */
static inline int32_t order_key(float f)
{
    int32_t b = (int32_t)fbits(f);
    return b ^ (int32_t)((uint32_t)(b >> 31) & 0x7fffffffu);
}

static inline float order_float(int32_t k)
{
    return bitsf((uint32_t)(k ^ (int32_t)((uint32_t)(k >> 31) & 0x7fffffffu)));
}

VECTOR_CLONES void fwd_exp(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = fexp(x[i]);
}

/* max of x (n > 0) in the total order (a NaN may win; the exps after it give NaN anyway) */
static float row_max(const float *x, size_t n)
{
    int32_t m = order_key(x[0]);

    for (size_t i = 1; i < n; i++) {
        int32_t k = order_key(x[i]);
        m = k > m ? k : m;
    }
    return order_float(m);
}

/* sum of x (n) in LANES float partial sums (roughly what a vectorised torch sum does) */
static float row_sum(const float *x, size_t n)
{
    float s[LANES] = {0}, r = 0.0f;
    size_t i = 0;

    for (; i + LANES <= n; i += LANES)
        for (size_t k = 0; k < LANES; k++)
            s[k] += x[i + k];
    for (size_t k = 0; k < LANES; k++)
        r += s[k];
    for (; i < n; i++)
        r += x[i];
    return r;
}

/* sum of x^2 (n): float squares and lanes within blocks of BLOCK, blocks added in double */
static double sum_squares(const float *x, size_t n)
{
    double s = 0.0;

    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        const size_t m = n - i0 < BLOCK ? n - i0 : BLOCK;
        float l[LANES] = {0}, r = 0.0f;
        size_t i = 0;
        for (; i + LANES <= m; i += LANES)
            for (size_t k = 0; k < LANES; k++)
                l[k] += x[i0 + i + k] * x[i0 + i + k];
        for (; i < m; i++)
            r += x[i0 + i] * x[i0 + i];
        for (size_t k = 0; k < LANES; k++)
            r += l[k];
        s += (double)r;
    }
    return s;
}

VECTOR_CLONES double fwd_logsumexp(const float *z, size_t n)
{
    const float mx = row_max(z, n);
    float t[BLOCK];
    double s = 0.0;

    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        const size_t m = n - i0 < BLOCK ? n - i0 : BLOCK;
        for (size_t i = 0; i < m; i++)
            t[i] = fexp(z[i0 + i] - mx);
        s += (double)row_sum(t, m);
    }
    return log(s) + (double)mx;
}

VECTOR_CLONES void fwd_rmsnorm(float *y, const float *x, const float *w, size_t rows, size_t d,
                               float eps)
{
    for (size_t t = 0; t < rows; t++) {
        const float *xr = x + t * d;
        float *yr = y + t * d;
        /* variance = x.pow(2).mean(-1) in float32; x * rsqrt(variance + eps); weight * that */
        const float inv = 1.0f / sqrtf((float)(sum_squares(xr, d) / (double)d) + eps);
        for (size_t i = 0; i < d; i++)
            yr[i] = w[i] * (xr[i] * inv);
    }
}

/* y (n, rows) += b (rows) on every row */
VECTOR_CLONES static void add_bias(float *restrict y, const float *restrict b, size_t n, size_t rows)
{
    for (size_t t = 0; t < n; t++)
        for (size_t i = 0; i < rows; i++)
            y[t * rows + i] += b[i];
}

void fwd_linear(float *y, const float *x, const float *w, const float *b, size_t n, size_t rows,
                size_t cols)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)rows, (int)cols, 1.0f, x,
                (int)cols, w, (int)cols, 0.0f, y, (int)rows);
    if (b)
        add_bias(y, b, n, rows);
}

/* x (n) += r (n): the residual connections. */
VECTOR_CLONES static void add_into(float *restrict x, const float *restrict r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = x[i] + r[i];
}

/* g (n) = silu(g) * u = g / (1 + e^-g) * u, torch's silu formula. */
VECTOR_CLONES static void swiglu(float *restrict g, const float *restrict u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = g[i];
        g[i] = v / (1.0f + fexp(-v)) * u[i];
    }
}

/*
 * cos and sin tables (seqlen, half): angle = position * inv_freq in
 * float32 (LlamaRotaryEmbedding: inv_freq @ position_ids, then
 * cat(freqs, freqs), so both halves of a head share one angle).
 */
static void rope_table(float *cs, float *sn, const float *inv_freq, size_t seqlen, size_t half)
{
    for (size_t p = 0; p < seqlen; p++)
        for (size_t i = 0; i < half; i++) {
            float a = (float)p * inv_freq[i];
            cs[p * half + i] = cosf(a);
            sn[p * half + i] = sinf(a);
        }
}

/*
 * Rotate nheads heads of hd at x + t * ld + h * hd for n tokens, token t at
 * position t % seqlen: x * cos + rotate_half(x) * sin, rotate_half(x) =
 * cat(-x2, x1) over the two halves.
 */
VECTOR_CLONES static void rope(float *x, size_t ld, size_t n, size_t seqlen, size_t nheads, size_t hd,
                 const float *cs, const float *sn)
{
    size_t half = hd / 2;

    for (size_t t = 0; t < n; t++) {
        const float *restrict c = cs + (t % seqlen) * half;
        const float *restrict s = sn + (t % seqlen) * half;
        for (size_t h = 0; h < nheads; h++) {
            float *restrict x1 = x + t * ld + h * hd, *restrict x2 = x1 + half;
            for (size_t i = 0; i < half; i++) {
                float a = x1[i], b = x2[i];
                x1[i] = a * c[i] - b * s[i];
                x2[i] = b * c[i] + a * s[i];
            }
        }
    }
}

/*
 * The causal softmax of scores sc (r1 - r0, nk) of queries r0..r1-1 against
 * keys lo..lo+nk-1: query i sees keys max(0, i + 1 - window) .. i (window 0:
 * no lower bound); the keys it cannot see get probability 0.
 */
VECTOR_CLONES static void softmax_block(float *sc, size_t r0, size_t r1, size_t lo, size_t nk,
                                        size_t window)
{
    for (size_t i = r0; i < r1; i++) {
        float *row = sc + (i - r0) * nk;
        const size_t a = (window && i + 1 > window ? i + 1 - window : 0) - lo, b = i + 1 - lo;
        /* torch's softmax: e^(x - max), then times 1 / sum */
        const float mx = row_max(row + a, b - a);
        float inv;
        for (size_t j = a; j < b; j++)
            row[j] = fexp(row[j] - mx);
        inv = 1.0f / row_sum(row + a, b - a);
        for (size_t j = a; j < b; j++)
            row[j] *= inv;
        memset(row, 0, a * sizeof(float));
        memset(row + b, 0, (nk - b) * sizeof(float));
    }
}

/*
 * Attention of one sequence: out (seqlen, heads * hd), row stride ldo,
 * from q (seqlen, heads * hd), k and v (seqlen, kv_heads * hd), all three
 * with row stride ld (they live side by side in the qkv buffer).  Query
 * head h reads kv head h / (heads / kv_heads) (repeat_kv).  sc is
 * FWD_QBLOCK * seqlen scratch.  Query rows go in blocks; the block [r0,
 * r1) multiplies against keys [lo, r1) only, lo being the first key its
 * first row can see.
 */
static void attention(float *out, size_t ldo, const float *q, const float *k, const float *v,
                      size_t ld, float *sc, size_t seqlen, size_t heads, size_t kv_heads,
                      size_t hd, size_t window)
{
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t group = heads / kv_heads;

    for (size_t h = 0; h < heads; h++) {
        const float *qh = q + h * hd, *kh = k + (h / group) * hd, *vh = v + (h / group) * hd;
        for (size_t r0 = 0; r0 < seqlen; r0 += FWD_QBLOCK) {
            size_t r1 = r0 + FWD_QBLOCK < seqlen ? r0 + FWD_QBLOCK : seqlen;
            size_t lo = window && r0 + 1 > window ? r0 + 1 - window : 0, nk = r1 - lo;

            /* scores (r1 - r0, nk) = q_block k[lo:r1]^T * scale */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), (int)nk, (int)hd,
                        scale, qh + r0 * ld, (int)ld, kh + lo * ld, (int)ld, 0.0f, sc, (int)nk);
            softmax_block(sc, r0, r1, lo, nk, window);
            /* out block (r1 - r0, hd) = probabilities v[lo:r1] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), (int)hd, (int)nk,
                        1.0f, sc, (int)nk, vh + lo * ld, (int)ld, 0.0f, out + r0 * ldo + h * hd,
                        (int)ldo);
        }
    }
}

/* ---- the layer ---- */

size_t fwd_chunk_seqs(size_t nseq, size_t seqlen)
{
    size_t per = seqlen && CHUNK_TOKENS / seqlen ? CHUNK_TOKENS / seqlen : 1;
    return per < nseq ? per : nseq;
}

/* a * b + c floats, rounded up to a multiple of 16 (64 bytes); SIZE_MAX on overflow */
static size_t region(size_t a, size_t b, size_t c)
{
    size_t r;
    if (a == SIZE_MAX || b == SIZE_MAX || c == SIZE_MAX)
        return SIZE_MAX;
    if (b && a > (SIZE_MAX - 64) / b)
        return SIZE_MAX;
    r = a * b;
    if (r > SIZE_MAX - 64 - c)
        return SIZE_MAX;
    return (r + c + 15) & ~(size_t)15;
}

/*
 * Where the workspace regions start (floats from ws), and its total.  up
 * shares its place with qkv and att: those are dead once o_proj has run,
 * and up is only written after that.
 */
struct ws_layout {
    size_t cs, sn, sc, nrm, qkv, att, up, gate, total;
};

static void layout(struct ws_layout *L, const struct fwd_shape *s, size_t nseq, size_t seqlen)
{
    size_t n = fwd_chunk_seqs(nseq, seqlen) * seqlen, half = s->head_dim / 2;
    size_t qd = s->heads * s->head_dim, kvd = s->kv_heads * s->head_dim, at = 0, end;

    L->cs = at;
    at = region(seqlen, half, at);
    L->sn = at;
    at = region(seqlen, half, at);
    L->sc = at;
    at = region(FWD_QBLOCK, seqlen, at);
    L->nrm = at;
    at = region(n, s->hidden, at);
    L->qkv = L->up = at;
    end = region(n, s->inter, at);
    at = region(n, qd + 2 * kvd, at);
    L->att = at;
    at = region(n, qd, at);
    at = end > at ? end : at;
    L->gate = at;
    at = region(n, s->inter, at);
    L->total = at;
}

size_t fwd_workspace_floats(const struct fwd_shape *s, size_t nseq, size_t seqlen)
{
    struct ws_layout L;
    layout(&L, s, nseq, seqlen);
    return L.total == SIZE_MAX || L.total > SIZE_MAX / sizeof(float) ? 0 : L.total;
}

static const char *const cap_names[CAP_COUNT] = {"attention input", "o_proj input", "mlp input",
                                                 "down_proj input"};

/* The callback's verdict on capture point p: 0 go on, else the code to return. */
static int captured(int rc, enum capture_point p, gq_err *e)
{
    if (rc > 0)
        return GQ_FAIL(e, GQ_ECANCELED, "forward pass stopped by the capture callback at the %s",
                       cap_names[p]);
    if (rc < 0)
        return GQ_FAIL(e, (gq_code)rc, "the capture callback failed at the %s (%s)", cap_names[p],
                       gq_code_name(rc));
    return 0;
}

/*
 * One chunk of nseq whole sequences x (nseq * seqlen, hidden) through the
 * layer, from capture point start (see fwd_layer_part); att_io is the
 * chunk's attention output (in from CAP_O_IN, out from CAP_ATTN_IN) or NULL.
 */
static int layer_chunk(float *x, float *att_io, const struct fwd_shape *s, const struct fwd_weights *w,
                       size_t nseq, size_t seqlen, enum capture_point start, capture_fn cb, void *payload,
                       enum capture_point stop, float *ws, const struct ws_layout *L, gq_err *e)
{
    const size_t n = nseq * seqlen, d = s->hidden, hd = s->head_dim, inter = s->inter;
    const size_t qd = s->heads * hd, kvd = s->kv_heads * hd, ld = qd + 2 * kvd;
    float *nrm = ws + L->nrm, *qkv = ws + L->qkv, *att = ws + L->att;
    float *gate = ws + L->gate, *up = ws + L->up;
    const float *cs = ws + L->cs, *sn = ws + L->sn;
    int rc;

    if (start == CAP_MLP_IN)
        goto mlp;
    if (start == CAP_O_IN) {
        att = att_io;
        goto o_in;
    }
    fwd_rmsnorm(nrm, x, w->in_norm, n, d, s->eps);
    if (cb && (rc = captured(cb(CAP_ATTN_IN, nrm, n, d, nseq, payload), CAP_ATTN_IN, e)) < 0)
        return rc;
    if (stop == CAP_ATTN_IN)
        return 0;

    fwd_linear(qkv, nrm, w->qkv, w->qkv_bias, n, ld, d);
    if (w->q_norm) {
        /* Qwen3: RMSNorm over each head's head_dim, before rope */
        for (size_t t = 0; t < n; t++) {
            float *qt = qkv + t * ld;
            fwd_rmsnorm(qt, qt, w->q_norm, s->heads, hd, s->eps);
            fwd_rmsnorm(qt + qd, qt + qd, w->k_norm, s->kv_heads, hd, s->eps);
        }
    }
    rope(qkv, ld, n, seqlen, s->heads, hd, cs, sn);
    rope(qkv + qd, ld, n, seqlen, s->kv_heads, hd, cs, sn);
    for (size_t q0 = 0; q0 < nseq; q0++) {
        const float *base = qkv + q0 * seqlen * ld;
        attention(att + q0 * seqlen * qd, qd, base, base + qd, base + qd + kvd, ld,
                  ws + L->sc, seqlen, s->heads, s->kv_heads, hd, s->window);
    }
    if (att_io)
        memcpy(att_io, att, n * qd * sizeof(float));
o_in:
    if (cb && (rc = captured(cb(CAP_O_IN, att, n, qd, nseq, payload), CAP_O_IN, e)) < 0)
        return rc;
    if (stop == CAP_O_IN)
        return 0;

    fwd_linear(nrm, att, w->o, w->o_bias, n, d, qd);
    add_into(x, nrm, n * d);
mlp:
    fwd_rmsnorm(nrm, x, w->post_norm, n, d, s->eps);
    if (cb && (rc = captured(cb(CAP_MLP_IN, nrm, n, d, nseq, payload), CAP_MLP_IN, e)) < 0)
        return rc;
    if (stop == CAP_MLP_IN)
        return 0;

    fwd_linear(gate, nrm, w->gate, w->gate_bias, n, inter, d);
    fwd_linear(up, nrm, w->up, w->up_bias, n, inter, d);
    swiglu(gate, up, n * inter);
    if (cb && (rc = captured(cb(CAP_DOWN_IN, gate, n, inter, nseq, payload), CAP_DOWN_IN, e)) < 0)
        return rc;
    if (stop == CAP_DOWN_IN)
        return 0;

    fwd_linear(nrm, gate, w->down, w->down_bias, n, d, inter);
    add_into(x, nrm, n * d);
    return 0;
}

int fwd_layer_part(float *x, float *att, const struct fwd_shape *s, const struct fwd_weights *w, size_t nseq,
                   size_t seqlen, enum capture_point start, capture_fn cb, void *payload,
                   enum capture_point stop_after, float *ws, gq_err *e)
{
    const size_t per = fwd_chunk_seqs(nseq, seqlen), d = s->hidden, qd = s->heads * s->head_dim;
    struct ws_layout L;
    int rc = 0;

    layout(&L, s, nseq, seqlen);
    rope_table(ws + L.cs, ws + L.sn, s->inv_freq, seqlen, s->head_dim / 2);
    for (size_t s0 = 0; s0 < nseq && rc == 0; s0 += per) {
        size_t k = nseq - s0 < per ? nseq - s0 : per;
        rc = layer_chunk(x + s0 * seqlen * d, att ? att + s0 * seqlen * qd : NULL, s, w, k, seqlen, start, cb,
                         payload, stop_after, ws, &L, e);
    }
    return rc;
}

int fwd_layer(float *x, const struct fwd_shape *s, const struct fwd_weights *w, size_t nseq,
              size_t seqlen, capture_fn cb, void *payload, enum capture_point stop_after,
              float *ws, gq_err *e)
{
    return fwd_layer_part(x, NULL, s, w, nseq, seqlen, CAP_ATTN_IN, cb, payload, stop_after, ws, e);
}
