/*
 * dtype.c - float16 and bfloat16 <-> float32, bit-exact, in portable C.
 *
 * DESIGN.  Every conversion works on the bit patterns (float bits are read
 * and written with memcpy, which compilers turn into a register move), so the
 * result does not depend on the FPU's rounding mode, flush-to-zero or
 * denormals-are-zero settings, nor on F16C/AVX512-BF16 being present.
 *
 * Narrowing (f32 -> f16/bf16) rounds to nearest, ties to even, exactly like
 * torch's .half() and .bfloat16() and like the hardware instructions:
 *   - the usual "add 0x0fff (or 0x7fff) plus the lowest kept bit, then
 *     truncate" trick does the rounding; a carry out of the mantissa bumps the
 *     exponent, which is the correct result (up to infinity);
 *   - f16 has a narrower exponent: values >= 65520 (halfway between 65504,
 *     the largest half, and 65536) become infinity, and values below 2^-14
 *     become subnormals, rounded with an explicit remainder test;
 *   - NaN stays NaN: sign and the top payload bits are kept and the quiet bit
 *     is set, so a signalling NaN whose payload would be truncated away
 *     never turns into infinity.  This is what x86 vcvtps2ph and GCC's
 *     _Float16 casts do.  (torch's bfloat16 returns the canonical 0x7FC0
 *     instead; no model weight is NaN, so we keep the IEEE behaviour.)
 * Widening (f16/bf16 -> f32) is exact for every finite value, subnormals
 * included.  A NaN keeps its sign and payload and comes out quiet (the
 * hardware behaviour), so f16 -> f32 -> f16 is the identity for every
 * pattern except signalling NaNs, which come back quieted.
 *
 * The array versions are plain loops over the inline scalar code; the
 * compiler vectorises the bf16 ones, and the f16 ones run at a few ns per
 * element, which is nothing next to the work that produced the values.
 */
#include "dtype.h"

#include <string.h>

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static inline float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

static inline float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;

    if (exp == 0x1f) {
        /* Inf, or NaN made quiet with its payload kept. */
        if (man == 0)
            return f32_from_bits(sign | 0x7f800000u);
        return f32_from_bits(sign | 0x7fc00000u | (man << 13));
    }
    if (exp == 0) {
        /* Zero or subnormal man * 2^-24: normalise into an f32 exponent. */
        uint32_t e32 = 113;   /* 2^-14 in f32's bias, for man with bit 10 set */
        if (man == 0)
            return f32_from_bits(sign);
        while (!(man & 0x400u)) {
            man <<= 1;
            e32--;
        }
        return f32_from_bits(sign | (e32 << 23) | ((man & 0x3ffu) << 13));
    }
    /* Normal: rebias 15 -> 127. */
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;

    if (a > 0x7f800000u)   /* NaN: quiet, keep the top 9 payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u)  /* >= 65520 (and Inf) round to Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) {
        /* Normal half: rebias 127 -> 15, round the 13 dropped bits. */
        a -= 0x38000000u;
        a += 0x0fffu + ((a >> 13) & 1u);
        return (uint16_t)(sign | (a >> 13));
    }
    if (a <= 0x33000000u)  /* <= 2^-25, half the smallest subnormal: tie to 0 */
        return sign;
    {
        /* Subnormal half: value = man * 2^(e - 150), result in 2^-24 units. */
        uint32_t e = a >> 23;                       /* 102 .. 112 */
        uint32_t man = (a & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                   /* 14 .. 24 */
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u)))
            q++;                                    /* may reach 0x400: 2^-14 */
        return (uint16_t)(sign | q);
    }
}

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    if ((u & 0x7fffffffu) > 0x7f800000u)
        u |= 0x00400000u;   /* NaN comes out quiet */
    return f32_from_bits(u);
}

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x0040u);
    /* Ties to even; the carry overflows to Inf past 0x7f7f8000 exactly. */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float gq_f16_to_f32(uint16_t h)
{
    return f16_to_f32(h);
}

uint16_t gq_f32_to_f16(float f)
{
    return f32_to_f16(f);
}

float gq_bf16_to_f32(uint16_t h)
{
    return bf16_to_f32(h);
}

uint16_t gq_f32_to_bf16(float f)
{
    return f32_to_bf16(f);
}

void gq_f16_to_f32_n(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = f16_to_f32(in[i]);
}

void gq_f32_to_f16_n(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = f32_to_f16(in[i]);
}

void gq_bf16_to_f32_n(float *out, const uint16_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = bf16_to_f32(in[i]);
}

void gq_f32_to_bf16_n(uint16_t *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = f32_to_bf16(in[i]);
}
