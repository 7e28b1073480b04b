/* Elementwise int8 kernels: ADD and MUL (with broadcasting), HARD_SWISH, table lookups,
 * requantization, QUANTIZE (float32 -> int8) and DEQUANTIZE (int8 -> float32); see kernels.h
 * for whose semantics each follows. */
#include "kernels.h"

#include <limits.h>

/* NEON's vshl: a left shift for n >= 0 (wrapping), an arithmetic right shift otherwise. */
static int32_t vshl32(int32_t x, int n)
{
    if (n >= 0) {
        return n < 32 ? sciot_shl32(x, n) : 0;
    }
    return n > -32 ? x >> -n : (x < 0 ? -1 : 0);
}

/* An int value as int16, wrapping like the C++ original's narrowing does on our targets. */
static int16_t wrap16(int32_t v)
{
    const uint16_t u = (uint16_t)(uint32_t)v;
    return u <= 0x7fffu ? (int16_t)u : (int16_t)(-(int32_t)(uint16_t)~u - 1);
}

/* NEON's narrowing at the end of LiteRT's int8 blocks: `wide` (already narrowed to int16)
 * plus the output zero point in 16 bits, saturated to int8, then the activation clamp. */
static int8_t narrow_block(int16_t wide, int32_t output_offset, int32_t lo, int32_t hi)
{
    const int16_t sum = wrap16(wide + output_offset);
    return sciot_clamp8(sciot_clamp8(sum, -128, 127), lo, hi);
}

/* add.h AddElementwiseInt8, scalar tail. */
static int8_t add_one(const sciot_add_params *p, int8_t x1, int8_t x2)
{
    const int32_t a = sciot_shl32(p->input1_offset + x1, (int)p->left_shift);
    const int32_t b = sciot_shl32(p->input2_offset + x2, (int)p->left_shift);
    const int32_t sa =
        sciot_mul_quantized(p->rounding, a, p->input1_multiplier, (int)p->input1_shift);
    const int32_t sb =
        sciot_mul_quantized(p->rounding, b, p->input2_multiplier, (int)p->input2_shift);
    const int32_t sum = sciot_as_i32((uint32_t)sa + (uint32_t)sb);
    const int64_t raw =
        (int64_t)sciot_mul_quantized(p->rounding, sum, p->output_multiplier, (int)p->output_shift) +
        p->output_offset;
    return sciot_clamp8(raw, p->act_min, p->act_max);
}

/* add.h AddElementwiseInt8, NEON blocks: each input shifted by left_shift + its (negative)
 * shift in one go and high-multiplied, the sum requantized with gemmlowp's rounding, then
 * truncated to int16 (vmovn) before the zero point is added. */
static int8_t add_one_vector(const sciot_add_params *p, int8_t x1, int8_t x2)
{
    const int32_t a =
        sciot_srdhm(vshl32(p->input1_offset + x1, (int)(p->left_shift + p->input1_shift)),
                    p->input1_multiplier);
    const int32_t b =
        sciot_srdhm(vshl32(p->input2_offset + x2, (int)(p->left_shift + p->input2_shift)),
                    p->input2_multiplier);
    const int32_t sum = sciot_as_i32((uint32_t)a + (uint32_t)b);
    const int32_t s =
        sciot_rounding_divide_by_pot(sciot_srdhm(sum, p->output_multiplier), (int)-p->output_shift);
    return narrow_block(wrap16(s), p->output_offset, p->act_min, p->act_max);
}

void sciot_add_s8(const sciot_add_params *p)
{
    const sciot_broadcast *s = &p->shape;
    int8_t *out = p->output;
    uint32_t i = 0;
    for (int32_t i0 = 0; i0 < s->dims[0]; ++i0) {
        for (int32_t i1 = 0; i1 < s->dims[1]; ++i1) {
            for (int32_t i2 = 0; i2 < s->dims[2]; ++i2) {
                const int8_t *a =
                    p->input1 + i0 * s->stride1[0] + i1 * s->stride1[1] + i2 * s->stride1[2];
                const int8_t *b =
                    p->input2 + i0 * s->stride2[0] + i1 * s->stride2[1] + i2 * s->stride2[2];
                for (int32_t i3 = 0; i3 < s->dims[3]; ++i3, ++i) {
                    const int8_t x1 = a[i3 * s->stride1[3]], x2 = b[i3 * s->stride2[3]];
                    *out++ = i < p->vector_count ? add_one_vector(p, x1, x2) : add_one(p, x1, x2);
                }
            }
        }
    }
}

/* mul.h MulElementwise: the offset inputs' product (at most 255 * 255), requantized; in
 * NEON blocks saturated to int16 before the zero point is added in 16 bits. */
static int8_t mul_one(const sciot_mul_params *p, int8_t x1, int8_t x2, bool vector)
{
    const int32_t product = (p->input1_offset + x1) * (p->input2_offset + x2);
    const int32_t scaled =
        sciot_mul_quantized(p->rounding, product, p->output_multiplier, (int)p->output_shift);
    if (vector) {
        const int16_t wide = (int16_t)(scaled > INT16_MAX   ? INT16_MAX
                                       : scaled < INT16_MIN ? INT16_MIN
                                                            : scaled);
        return narrow_block(wide, p->output_offset, p->act_min, p->act_max);
    }
    return sciot_clamp8((int64_t)scaled + p->output_offset, p->act_min, p->act_max);
}

void sciot_mul_s8(const sciot_mul_params *p)
{
    const sciot_broadcast *s = &p->shape;
    int8_t *out = p->output;
    uint32_t i = 0;
    for (int32_t i0 = 0; i0 < s->dims[0]; ++i0) {
        for (int32_t i1 = 0; i1 < s->dims[1]; ++i1) {
            for (int32_t i2 = 0; i2 < s->dims[2]; ++i2) {
                const int8_t *a =
                    p->input1 + i0 * s->stride1[0] + i1 * s->stride1[1] + i2 * s->stride1[2];
                const int8_t *b =
                    p->input2 + i0 * s->stride2[0] + i1 * s->stride2[1] + i2 * s->stride2[2];
                for (int32_t i3 = 0; i3 < s->dims[3]; ++i3, ++i) {
                    *out++ = mul_one(p, a[i3 * s->stride1[3]], b[i3 * s->stride2[3]],
                                     i < p->vector_count);
                }
            }
        }
    }
}

/* -- HARD_SWISH: reference_ops::HardSwish in int16 fixed point ------------------------- */

/* gemmlowp SaturatingRoundingDoublingHighMul for int16. */
static int16_t srdhm16(int16_t a, int16_t b)
{
    if (a == b && a == INT16_MIN) {
        return INT16_MAX;
    }
    const int32_t ab = (int32_t)a * (int32_t)b;
    const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return wrap16((ab + nudge) / (1 << 15)); /* division truncates toward zero, as in C++ */
}

/* hard_swish.h SaturatingDoublingHighMul: the same product, truncated instead of rounded. */
static int16_t sdhm16(int16_t a, int16_t b)
{
    if (a == b && a == INT16_MIN) {
        return INT16_MAX;
    }
    return wrap16(((int32_t)a * (int32_t)b) / (1 << 15));
}

/* gemmlowp RoundingDivideByPOT for int16, exponent 0..31 (its mask wraps to 16 bits). */
static int16_t rounding_divide_by_pot16(int16_t x, int exponent)
{
    const int16_t mask = wrap16((int32_t)((INT64_C(1) << exponent) - 1));
    const int16_t remainder = (int16_t)(x & mask);
    const int16_t threshold = wrap16((mask >> 1) + (x < 0 ? 1 : 0));
    return wrap16((x >> exponent) + (remainder > threshold ? 1 : 0));
}

/* hard_swish.h SaturatingLeftShift: value * 2^amount, saturated to int16 (amount 0..30). */
static int16_t saturating_left_shift16(int16_t value, int amount)
{
    int64_t result = (int64_t)value * ((int64_t)1 << amount);
    if (result > INT16_MAX) {
        result = INT16_MAX;
    }
    if (result < INT16_MIN) {
        result = INT16_MIN;
    }
    return (int16_t)result;
}

void sciot_hard_swish_s8(const sciot_hard_swish_params *p)
{
    const int16_t out_mult = wrap16(p->output_multiplier);
    const int16_t reluish_mult = wrap16(p->reluish_multiplier);
    const int reluish_exp = (int)p->reluish_exponent;
    for (uint32_t i = 0; i < p->count; ++i) {
        const int16_t input_value = wrap16(p->input[i] - p->input_zero_point);
        const int16_t hires = wrap16(input_value * (1 << 7));
        const int16_t preshift_output = srdhm16(hires, out_mult);
        /* The "relu-ish" multiplier: x rescaled from [-3, 3] to [0, 1], saturating. */
        int16_t reluish = hires;
        if (reluish_exp > 0) {
            reluish = saturating_left_shift16(reluish, reluish_exp - 1);
        }
        reluish = srdhm16(reluish, reluish_mult);
        if (reluish_exp > 0) {
            reluish = saturating_left_shift16(reluish, 1);
        }
        if (reluish_exp < 0) {
            reluish = rounding_divide_by_pot16(reluish, -reluish_exp);
        }
        reluish = wrap16((reluish + (1 << 15)) >> 1);
        const int16_t preshift = sdhm16(reluish, preshift_output);
        int16_t value = rounding_divide_by_pot16(preshift, (int)-p->output_exponent);
        value = wrap16(value + p->output_zero_point);
        p->output[i] = sciot_clamp8(value, -128, 127);
    }
}

/* -- lookups, requantization, float conversions --------------------------------------- */

void sciot_lookup_s8(const int8_t *input, int8_t *output, uint32_t count, const uint8_t *table)
{
    for (uint32_t i = 0; i < count; ++i) {
        output[i] = (int8_t)table[(uint8_t)input[i]];
    }
}

void sciot_requantize_s8(const sciot_requantize_params *p)
{
    for (uint32_t i = 0; i < p->count; ++i) {
        const int rounding = i < p->vector_count ? p->vector_rounding : p->rounding;
        const int32_t x = p->input[i] - p->input_zero_point;
        const int64_t y = (int64_t)sciot_mul_quantized(rounding, x, p->multiplier, (int)p->shift) +
                          p->output_zero_point;
        p->output[i] = sciot_clamp8(y, -128, 127);
    }
}

int32_t sciot_float_key(uint32_t bits)
{
    /* Sign-magnitude to two's complement: more negative floats get smaller keys. */
    return bits < 0x80000000u ? (int32_t)bits : -(int32_t)(bits & 0x7fffffffu);
}

static int8_t quantize_one(uint32_t bits, const uint8_t *map)
{
    const int32_t lo = sciot_rd_i32(map + 1020);
    const int32_t hi = sciot_rd_i32(map + 1024);
    const int8_t outside = (int8_t)map[1028];
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        return outside; /* NaN */
    }
    const int32_t key = sciot_float_key(bits);
    if (key < lo || key > hi) {
        return outside;
    }
    /* How many of the 255 ascending thresholds are <= key. */
    unsigned below = 0, above = 255;
    while (below < above) {
        const unsigned mid = (below + above) / 2u;
        if (sciot_rd_i32(map + 4u * mid) <= key) {
            below = mid + 1u;
        } else {
            above = mid;
        }
    }
    return (int8_t)(-128 + (int)below);
}

void sciot_quantize_f32_s8(const sciot_quantize_params *p)
{
    for (uint32_t i = 0; i < p->count; ++i) {
        const uint8_t *map = i < p->vector_count ? p->vector_map : p->map;
        p->output[i] = quantize_one(sciot_rd_u32(p->input + 4u * i), map);
    }
}

void sciot_dequantize_s8_f32(const sciot_dequantize_params *p)
{
    for (uint32_t i = 0; i < p->count; ++i) {
        const uint8_t *table = i < p->vector_count ? p->vector_table : p->table;
        const uint8_t *bits = table + 4u * (uint8_t)p->input[i];
        for (unsigned b = 0; b < 4; ++b) {
            p->output[4u * i + b] = bits[b];
        }
    }
}
