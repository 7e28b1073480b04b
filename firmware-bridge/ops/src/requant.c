/* The fixed-point requantization arithmetic every int8 kernel shares (kernels.h). */
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
int32_t sciot_as_i32(uint32_t u)
{
    return u <= 0x7fffffffu ? (int32_t)u : -(int32_t)(~u) - 1;
}

/* x * 2^left in 32 bits, wrapping like the C++ original would on the hardware we run on
 * (it never overflows for multipliers a converter produces), without signed overflow. */
int32_t sciot_shl32(int32_t x, int left)
{
    return sciot_as_i32((uint32_t)x << left);
}

int32_t sciot_mul_quantized_double(int32_t x, int32_t multiplier, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return sciot_rounding_divide_by_pot(sciot_srdhm(sciot_shl32(x, left), multiplier), right);
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
    const int32_t high = sciot_srdhm(sciot_shl32(x, left), multiplier);
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

int8_t sciot_clamp8(int64_t v, int32_t lo, int32_t hi)
{
    if (v < lo) {
        v = lo;
    }
    if (v > hi) {
        v = hi;
    }
    return (int8_t)v;
}
