/* int8 kernels; see kernels.h for whose semantics each follows. */
#include "kernels.h"

#include <limits.h>

int32_t sciot_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? (INT64_C(1) << 30) : (1 - (INT64_C(1) << 30));
    /* C division truncates toward zero, like gemmlowp's. */
    return (int32_t)((ab + nudge) / (INT64_C(1) << 31));
}

int32_t sciot_rounding_divide_by_pot(int32_t x, int exponent)
{
    if (exponent <= 0) {
        return x;
    }
    const int32_t mask = (int32_t)((INT64_C(1) << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    /* >> of a negative int is arithmetic on every compiler we target (GCC documents it). */
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* Two's complement reinterpretation, without the implementation-defined conversion. */
static int32_t as_i32(uint32_t u)
{
    return u <= 0x7fffffffu ? (int32_t)u : -(int32_t)(~u) - 1;
}

/* x * 2^left in 32 bits, wrapping like the C++ original would on the hardware we run on
 * (it never overflows for multipliers a converter produces), without signed overflow. */
static int32_t shl32(int32_t x, int left)
{
    return as_i32((uint32_t)x << left);
}

int32_t sciot_mul_quantized_double(int32_t x, int32_t multiplier, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return sciot_rounding_divide_by_pot(sciot_srdhm(shl32(x, left), multiplier), right);
}

int32_t sciot_mul_quantized_single(int32_t x, int32_t multiplier, int shift)
{
    const int total = 31 - shift; /* shift in [-31, 30] keeps this in [1, 62] */
    const int64_t round = INT64_C(1) << (total - 1);
    int64_t r = ((int64_t)x * (int64_t)multiplier + round) >> total;
    if (r > INT32_MAX) {
        return INT32_MAX;
    }
    if (r < INT32_MIN) {
        return INT32_MIN;
    }
    return (int32_t)r;
}

int32_t sciot_mul_quantized_ties_up(int32_t x, int32_t multiplier, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int32_t high = sciot_srdhm(shl32(x, left), multiplier);
    if (right == 0) {
        return high;
    }
    const int32_t nudge = (int32_t)(UINT32_C(1) << (right - 1));
    if (high > INT32_MAX - nudge) {
        /* ruy's rounding_right_shift: the add would overflow, so it yields 2^(31 - right). */
        return (int32_t)(UINT32_C(1) << (31 - right));
    }
    return (high + nudge) >> right;
}

int32_t sciot_mul_quantized(int rounding, int32_t x, int32_t multiplier, int shift)
{
    switch (rounding) {
    case SCIOT_ROUND_SINGLE: return sciot_mul_quantized_single(x, multiplier, shift);
    case SCIOT_ROUND_DOUBLE_TIES_UP: return sciot_mul_quantized_ties_up(x, multiplier, shift);
    default: return sciot_mul_quantized_double(x, multiplier, shift);
    }
}

static int8_t clamp8_64(int64_t v, int32_t lo, int32_t hi)
{
    if (v < lo) {
        v = lo;
    }
    if (v > hi) {
        v = hi;
    }
    return (int8_t)v;
}

static int8_t clamp8(int32_t v, int32_t lo, int32_t hi)
{
    if (v < lo) {
        v = lo;
    }
    if (v > hi) {
        v = hi;
    }
    return (int8_t)v;
}

/* Accumulators add in uint32: the same two's complement result as TFLite's int32 sums
 * whenever those do not overflow (real models never do), and defined when a damaged
 * blob makes them. */
static int8_t requantize(const sciot_conv_params *p, uint32_t acc, int32_t oc)
{
    if (p->bias != 0) {
        acc += (uint32_t)sciot_rd_i32(p->bias + 4 * oc);
    }
    const int32_t scaled =
        sciot_mul_quantized(p->rounding, as_i32(acc), sciot_rd_i32(p->multiplier + 4 * oc),
                            (int)sciot_rd_i32(p->shift + 4 * oc));
    return clamp8_64((int64_t)scaled + p->output_offset, p->act_min, p->act_max);
}

void sciot_conv2d_s8(const sciot_conv_params *p)
{
    const int32_t in_c = p->in_c;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            int8_t *out = p->output + ((int32_t)oy * p->out_w + ox) * p->out_c;
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                uint32_t acc = 0;
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = y0 + p->dilation_h * ky;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = x0 + p->dilation_w * kx;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        const int8_t *in = p->input + (iy * p->in_w + ix) * in_c;
                        const int8_t *f = p->filter + ((oc * p->k_h + ky) * p->k_w + kx) * in_c;
                        for (int32_t ic = 0; ic < in_c; ++ic) {
                            acc += (uint32_t)((int32_t)f[ic] * ((int32_t)in[ic] + p->input_offset));
                        }
                    }
                }
                out[oc] = requantize(p, acc, oc);
            }
        }
    }
}

void sciot_depthwise_conv2d_s8(const sciot_conv_params *p)
{
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            int8_t *out = p->output + ((int32_t)oy * p->out_w + ox) * p->out_c;
            for (int32_t ic = 0; ic < p->in_c; ++ic) {
                for (int32_t m = 0; m < p->depth_multiplier; ++m) {
                    const int32_t oc = ic * p->depth_multiplier + m;
                    uint32_t acc = 0;
                    for (int32_t ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = y0 + p->dilation_h * ky;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = x0 + p->dilation_w * kx;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            const int32_t v = p->input[(iy * p->in_w + ix) * p->in_c + ic];
                            const int32_t f = p->filter[(ky * p->k_w + kx) * p->out_c + oc];
                            acc += (uint32_t)(f * (v + p->input_offset));
                        }
                    }
                    out[oc] = requantize(p, acc, oc);
                }
            }
        }
    }
}

void sciot_add_s8(const sciot_add_params *p)
{
    for (uint32_t i = 0; i < p->count; ++i) {
        const int32_t a = shl32(p->input1_offset + p->input1[i], (int)p->left_shift);
        const int32_t b = shl32(p->input2_offset + p->input2[i], (int)p->left_shift);
        const int32_t sa =
            sciot_mul_quantized(p->rounding, a, p->input1_multiplier, (int)p->input1_shift);
        const int32_t sb =
            sciot_mul_quantized(p->rounding, b, p->input2_multiplier, (int)p->input2_shift);
        const int32_t sum = as_i32((uint32_t)sa + (uint32_t)sb);
        const int64_t raw = (int64_t)sciot_mul_quantized(p->rounding, sum, p->output_multiplier,
                                                         (int)p->output_shift) +
                            p->output_offset;
        p->output[i] = clamp8_64(raw, p->act_min, p->act_max);
    }
}

/* std::round for the small values softmax produces: half away from zero. (x - trunc(x)
 * is exact for |x| < 2^23, so no double rounding creeps in.) Out-of-range values and NaN,
 * which only a damaged table can produce, saturate instead of being undefined. */
static int32_t round_half_away(float x)
{
    if (!(x > -1.0e6f && x < 1.0e6f)) {
        return x > 0.0f ? 1000000 : -1000000;
    }
    const bool neg = x < 0.0f;
    const float a = neg ? -x : x;
    int32_t t = (int32_t)a;
    if (a - (float)t >= 0.5f) {
        ++t;
    }
    return neg ? -t : t;
}

void sciot_softmax_s8(const sciot_softmax_params *p)
{
    const int8_t *in = p->input;
    int8_t *out = p->output;
    for (uint32_t r = 0; r < p->rows; ++r) {
        int32_t max_val = -128;
        for (uint32_t j = 0; j < p->depth; ++j) {
            if (in[j] > max_val) {
                max_val = in[j];
            }
        }
        /* optimized_ops::Softmax: table_offset = &table[255 - max], indexed by the int8
         * value, i.e. exp(-scale * beta * (max - x)); summed and scaled in float. Each
         * step is one IEEE single operation (no a * b + c a compiler could fuse), so a
         * soft-float MCU computes the same bits as SSE. */
        const uint8_t *base = p->table + 4 * (255 - max_val);
        float sum = 0.0f;
        for (uint32_t j = 0; j < p->depth; ++j) {
            sum += sciot_rd_f32(base + 4 * in[j]);
        }
        const float inv = 1.0f / (sum * p->output_scale);
        for (uint32_t j = 0; j < p->depth; ++j) {
            const float prob = sciot_rd_f32(base + 4 * in[j]) * inv;
            out[j] = clamp8(round_half_away(prob) + p->output_zero_point, -128, 127);
        }
        in += p->depth;
        out += p->depth;
    }
}
