/*
 * The int8 kernels behind sciot_model_run(), exposed for the unit tests.
 *
 * Semantics follow TFLite's int8 kernels as LiteRT's builtin resolver runs them:
 * reference_integer_ops for DEPTHWISE_CONV_2D and ADD, the ruy GEMM's requantization for
 * CONV_2D (ties rounded up rather than away from zero), optimized_ops' float table for
 * SOFTMAX. Each op
 * says which requantization rounding it uses (SCIOT_ROUND_*), so the blob decides.
 */
#ifndef SCIOT_KERNELS_H
#define SCIOT_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/* Requantization rounding. DOUBLE: TFLite's reference (gemmlowp's rounding doubling high
 * multiply, then a rounding shift with ties away from zero). SINGLE: ruy's portable
 * reference (one rounding of the 64-bit product). DOUBLE_TIES_UP: what ruy's x86 AVX2
 * kernels compute, and so what LiteRT's CONV_2D outputs on x86: the same high multiply,
 * then a shift that rounds ties toward +infinity. */
enum { SCIOT_ROUND_DOUBLE = 0, SCIOT_ROUND_SINGLE = 1, SCIOT_ROUND_DOUBLE_TIES_UP = 2 };

/* gemmlowp SaturatingRoundingDoublingHighMul. */
int32_t sciot_srdhm(int32_t a, int32_t b);
/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero (0..31). */
int32_t sciot_rounding_divide_by_pot(int32_t x, int exponent);
/* tflite::MultiplyByQuantizedMultiplier: x * m * 2^(shift - 31), two roundings. */
int32_t sciot_mul_quantized_double(int32_t x, int32_t multiplier, int shift);
/* ruy::detail::MultiplyByQuantizedMultiplier: the same product, one rounding, saturated. */
int32_t sciot_mul_quantized_single(int32_t x, int32_t multiplier, int shift);
/* SRDHM, then x / 2^right rounded with ties toward +infinity, as ruy's AVX2 kernels do. */
int32_t sciot_mul_quantized_ties_up(int32_t x, int32_t multiplier, int shift);
/* One of the above, by SCIOT_ROUND_*. */
int32_t sciot_mul_quantized(int rounding, int32_t x, int32_t multiplier, int shift);

/* Little-endian reads from a byte buffer of any alignment. */
static inline uint32_t sciot_rd_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline int32_t sciot_rd_i32(const uint8_t *p)
{
    uint32_t u = sciot_rd_u32(p);
    /* Two's complement without relying on an out-of-range conversion. */
    return u <= 0x7fffffffu ? (int32_t)u : -(int32_t)(~u) - 1;
}
static inline uint16_t sciot_rd_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline float sciot_rd_f32(const uint8_t *p)
{
    union {
        uint32_t u;
        float f;
    } v;
    v.u = sciot_rd_u32(p);
    return v.f;
}

/* A convolution's shapes and constants; batch 1, NHWC. */
typedef struct {
    const int8_t *input;
    int32_t in_h, in_w, in_c;
    int32_t input_offset; /* -input zero point */
    const int8_t *filter; /* conv: [out_c][k_h][k_w][in_c]; depthwise: [k_h][k_w][out_c] */
    int32_t k_h, k_w;
    const uint8_t *bias;       /* int32 little-endian [out_c], or NULL */
    const uint8_t *multiplier; /* int32 little-endian [out_c] */
    const uint8_t *shift;      /* int32 little-endian [out_c] */
    int8_t *output;
    int32_t out_h, out_w, out_c;
    int32_t output_offset; /* output zero point */
    int32_t stride_w, stride_h, dilation_w, dilation_h, pad_w, pad_h;
    int32_t depth_multiplier; /* depthwise only */
    int32_t act_min, act_max;
    int rounding; /* SCIOT_ROUND_* */
} sciot_conv_params;

void sciot_conv2d_s8(const sciot_conv_params *p);
void sciot_depthwise_conv2d_s8(const sciot_conv_params *p);

typedef struct {
    const int8_t *input1, *input2;
    int8_t *output;
    uint32_t count;
    int32_t input1_offset, input2_offset, output_offset; /* -zp1, -zp2, +zp_out */
    int32_t left_shift;
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
    int rounding;
} sciot_add_params;

void sciot_add_s8(const sciot_add_params *p);

typedef struct {
    const int8_t *input;
    int8_t *output;
    uint32_t rows, depth; /* softmax over the last dimension, `depth` long */
    const uint8_t *table; /* 256 little-endian float32: table[255 - d] = exp(-scale*beta*d) */
    float output_scale;
    int32_t output_zero_point;
} sciot_softmax_params;

void sciot_softmax_s8(const sciot_softmax_params *p);

#endif /* SCIOT_KERNELS_H */
