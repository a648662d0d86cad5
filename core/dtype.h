/*
 * dtype.h - float16 and bfloat16 conversions, bit-exact with IEEE 754 and
 * with torch for every non-NaN value (round to nearest, ties to even;
 * overflow to infinity; subnormals exact).  NaN stays a quiet NaN with its
 * sign and top payload bits (torch writes one fixed NaN instead).
 */
#ifndef GQ_DTYPE_H
#define GQ_DTYPE_H

#include <stddef.h>
#include <stdint.h>

float gq_f16_to_f32(uint16_t h);
uint16_t gq_f32_to_f16(float f);
float gq_bf16_to_f32(uint16_t h);
uint16_t gq_f32_to_bf16(float f);

/* Whole arrays. */
void gq_f16_to_f32_n(float *out, const uint16_t *in, size_t n);
void gq_f32_to_f16_n(uint16_t *out, const float *in, size_t n);
void gq_bf16_to_f32_n(float *out, const uint16_t *in, size_t n);
void gq_f32_to_bf16_n(uint16_t *out, const float *in, size_t n);

/* Round through the type and back: what a model stored in fp16/bf16 sees. */
static inline float gq_round_f16(float f)
{
    return gq_f16_to_f32(gq_f32_to_f16(f));
}
static inline float gq_round_bf16(float f)
{
    return gq_bf16_to_f32(gq_f32_to_bf16(f));
}

#endif
