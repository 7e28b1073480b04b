/*
 * The int8 kernels behind sciot_model_run(), exposed for the unit tests.
 *
 * Each follows the int8 kernel LiteRT's builtin resolver runs on the machine the blob was
 * exported on (see ../README.md for which one, op by op). Where LiteRT rounds differently
 * in different places (ruy's GEMM, NEON code emulated with SSE on x86, a scalar tail) the
 * kernel is told which rounding applies where (SCIOT_ROUND_*, a "vector" prefix), so the
 * blob decides. Everything LiteRT derives in floating point at Prepare time (multipliers,
 * lookup tables, thresholds) arrives precomputed in the blob; the kernels themselves are
 * integer-only except SOFTMAX's few float operations per cell.
 *
 * Files: requant.c (fixed-point arithmetic), kernels_conv.c (CONV_2D, DEPTHWISE_CONV_2D,
 * FULLY_CONNECTED), kernels_elementwise.c (ADD, MUL, HARD_SWISH, table lookups,
 * requantization, QUANTIZE, DEQUANTIZE), kernels_pool.c (AVERAGE_POOL_2D, MAX_POOL_2D,
 * MEAN), kernels_shape.c (CONCATENATION, PAD), kernels_softmax.c.
 */
#ifndef SCIOT_KERNELS_H
#define SCIOT_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

/* -- requantization arithmetic (requant.c) ------------------------------------------- */

/* Requantization rounding. DOUBLE: TFLite's reference (gemmlowp's rounding doubling high
 * multiply, then a rounding shift with ties away from zero). SINGLE: ruy's portable
 * reference (one rounding of the 64-bit product). DOUBLE_TIES_UP: the same high multiply,
 * then a shift that rounds ties toward +infinity: what ruy's x86 AVX2 kernels compute, and
 * what NEON's rounding shift (vrshl) computes, natively or emulated with SSE. */
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

/* Two's complement reinterpretation and wrapping arithmetic, without signed overflow. */
int32_t sciot_as_i32(uint32_t u);
int32_t sciot_shl32(int32_t x, int left);
int8_t sciot_clamp8(int64_t v, int32_t lo, int32_t hi);

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

/* -- convolutions and matrix products (kernels_conv.c) --------------------------------- */

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
    /* Output channels [0, vector_channels) round with vector_rounding instead (LiteRT's
     * depthwise requantizes blocks of 8 channels with NEON code, the rest with scalar). */
    int32_t vector_channels;
    int vector_rounding;
} sciot_conv_params;

void sciot_conv2d_s8(const sciot_conv_params *p);
void sciot_depthwise_conv2d_s8(const sciot_conv_params *p);

/* FULLY_CONNECTED: rows x depth input times the transposed [out_c][depth] filter. */
typedef struct {
    const int8_t *input;
    int32_t rows, depth;
    int32_t input_offset;              /* -input zero point */
    const int8_t *filter;              /* [out_c][depth], zero point 0 */
    const uint8_t *bias;               /* int32 little-endian [out_c], or NULL */
    const uint8_t *multiplier, *shift; /* int32 little-endian [out_c] */
    int8_t *output;                    /* [rows][out_c] */
    int32_t out_c;
    int32_t output_offset;
    int32_t act_min, act_max;
    int rounding;
} sciot_fc_params;

void sciot_fully_connected_s8(const sciot_fc_params *p);

/* -- elementwise (kernels_elementwise.c) ---------------------------------------------- */

/* The output's 4-D index space (leading dimensions 1) and, for each input, its step in
 * elements along each dimension: 0 where that input is broadcast. */
typedef struct {
    int32_t dims[4];
    int32_t stride1[4], stride2[4];
} sciot_broadcast;

typedef struct {
    const int8_t *input1, *input2;
    int8_t *output;
    sciot_broadcast shape;
    int32_t input1_offset, input2_offset, output_offset; /* -zp1, -zp2, +zp_out */
    int32_t left_shift;
    int32_t input1_multiplier, input1_shift;
    int32_t input2_multiplier, input2_shift;
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
    int rounding;
    /* Elements [0, vector_count) as LiteRT's NEON blocks compute them (elementwise only):
     * each input scaled by one high multiply after a combined shift, the sum's requantized
     * value narrowed to int16 before the zero point is added (see kernels_elementwise.c). */
    uint32_t vector_count;
} sciot_add_params;

void sciot_add_s8(const sciot_add_params *p);

typedef struct {
    const int8_t *input1, *input2;
    int8_t *output;
    sciot_broadcast shape;
    int32_t input1_offset, input2_offset, output_offset; /* -zp1, -zp2, +zp_out */
    int32_t output_multiplier, output_shift;
    int32_t act_min, act_max;
    int rounding;
    /* Elements [0, vector_count) as LiteRT's NEON blocks compute them: the requantized
     * product saturated to int16 before the zero point is added in 16 bits. */
    uint32_t vector_count;
} sciot_mul_params;

void sciot_mul_s8(const sciot_mul_params *p);

/* reference_ops::HardSwish's 16-bit fixed point (int16 multipliers and exponents). */
typedef struct {
    const int8_t *input;
    int8_t *output;
    uint32_t count;
    int32_t input_zero_point, output_zero_point;
    int32_t output_multiplier, output_exponent;   /* int16 multiplier, exponent <= 0 */
    int32_t reluish_multiplier, reluish_exponent; /* int16 multiplier */
} sciot_hard_swish_params;

void sciot_hard_swish_s8(const sciot_hard_swish_params *p);

/* out[i] = table[(uint8_t)in[i]]: LOGISTIC and TANH, whose tables LiteRT fills at Prepare. */
void sciot_lookup_s8(const int8_t *input, int8_t *output, uint32_t count, const uint8_t *table);

/* int8 -> int8 requantization; the first `vector_count` elements with `vector_rounding`
 * (LiteRT's NEON blocks), the rest with `rounding` (its scalar tail). */
typedef struct {
    const int8_t *input;
    int8_t *output;
    uint32_t count, vector_count;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift;
    int vector_rounding, rounding;
} sciot_requantize_params;

void sciot_requantize_s8(const sciot_requantize_params *p);

/* float32 -> int8 as a monotone step function of the float's bits, plus the value LiteRT
 * produces where its float -> int32 conversion overflows (NaN, huge values). A map is
 * SCIOT_QUANTIZE_MAP_BYTES: int32 thresholds[255] (ordered keys, see kernels_elementwise.c:
 * output = -128 + how many are <= the key), int32 lo_key, int32 hi_key (the keys between
 * which the step function holds), int8 outside (the output elsewhere and for NaN), 3 x 0. */
#define SCIOT_QUANTIZE_MAP_BYTES 1032u
typedef struct {
    const uint8_t *input; /* float32 little-endian */
    int8_t *output;
    uint32_t count, vector_count;
    const uint8_t *vector_map, *map; /* elements [0, vector_count), and the rest */
} sciot_quantize_params;

void sciot_quantize_f32_s8(const sciot_quantize_params *p);
/* The order-preserving int32 key of a float32's bits (-0 and +0 alike). */
int32_t sciot_float_key(uint32_t bits);

/* int8 -> float32 through two 256-entry tables of float32 bits (indexed by (uint8_t)x):
 * one for elements [0, vector_count), one for the rest. */
typedef struct {
    const int8_t *input;
    uint8_t *output; /* float32 little-endian */
    uint32_t count, vector_count;
    const uint8_t *vector_table, *table;
} sciot_dequantize_params;

void sciot_dequantize_s8_f32(const sciot_dequantize_params *p);

/* -- pooling and reductions (kernels_pool.c) ------------------------------------------ */

typedef struct {
    const int8_t *input;
    int32_t in_h, in_w, channels;
    int8_t *output;
    int32_t out_h, out_w;
    int32_t filter_h, filter_w, stride_h, stride_w, pad_h, pad_w;
    int32_t act_min, act_max;
} sciot_pool_params;

void sciot_average_pool_s8(const sciot_pool_params *p);
void sciot_max_pool_s8(const sciot_pool_params *p);

/* MEAN: over the dimensions in `reduce_mask` (bit d: dims[d]), each output is
 * requantize(sum of raw inputs + acc_offset) + output_offset, clamped to int8; outputs in
 * row-major order of the kept dimensions. The first `vector_outputs` outputs round with
 * `vector_rounding` (LiteRT's NEON blocks of channels), the rest with `rounding`. */
typedef struct {
    const int8_t *input;
    int32_t dims[4];
    uint32_t reduce_mask;
    int8_t *output;
    int32_t acc_offset, output_offset;
    int32_t multiplier, shift;
    uint32_t vector_outputs;
    int vector_rounding, rounding;
} sciot_mean_params;

void sciot_mean_s8(const sciot_mean_params *p);

/* -- data movement (kernels_shape.c) -------------------------------------------------- */

/* CONCATENATION: `outer` times, each input's next `chunk[k]` bytes in turn. */
void sciot_concat(const uint8_t *const *inputs, const uint32_t *chunk, unsigned n, uint32_t outer,
                  uint8_t *output);

/* PAD of a 4-D int8 tensor: `before`/`after` elements along each dimension get `value`. */
typedef struct {
    const int8_t *input;
    int32_t dims[4];
    int32_t before[4], after[4];
    int8_t value;
    int8_t *output;
} sciot_pad_params;

void sciot_pad_s8(const sciot_pad_params *p);

/* -- softmax (kernels_softmax.c) ------------------------------------------------------ */

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
