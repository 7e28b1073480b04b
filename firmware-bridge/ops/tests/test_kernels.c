/*
 * Unit tests of the int8 kernels and the blob reader's first checks (cmocka).
 * Expected values are worked out by hand from the definitions in kernels.h; the
 * model-level bit-exactness against LiteRT is tests/firmware/test_ops_bitexact.py.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "kernels.h"
#include "sciot_ops.h"

#define Q_HALF (INT32_C(1) << 30) /* multiplier 0.5 */

static void test_srdhm(void **state)
{
    (void)state;
    /* The one overflowing product saturates. */
    assert_int_equal(sciot_srdhm(INT32_MIN, INT32_MIN), INT32_MAX);
    assert_int_equal(sciot_srdhm(INT32_MIN, INT32_MAX), INT32_MIN + 1);
    /* 3 * 0.5 = 1.5 rounds up; -3 * 0.5 = -1.5 rounds toward zero (gemmlowp's nudge). */
    assert_int_equal(sciot_srdhm(3, Q_HALF), 2);
    assert_int_equal(sciot_srdhm(-3, Q_HALF), -1);
    assert_int_equal(sciot_srdhm(-6, Q_HALF), -3);
    assert_int_equal(sciot_srdhm(1 << 30, 1 << 30), 1 << 29);
}

static void test_rounding_divide_by_pot(void **state)
{
    (void)state;
    assert_int_equal(sciot_rounding_divide_by_pot(7, 0), 7);
    assert_int_equal(sciot_rounding_divide_by_pot(5, 1), 3);   /* 2.5 -> 3 */
    assert_int_equal(sciot_rounding_divide_by_pot(-5, 1), -3); /* -2.5 -> -3: away from zero */
    assert_int_equal(sciot_rounding_divide_by_pot(-7, 2), -2); /* -1.75 */
    assert_int_equal(sciot_rounding_divide_by_pot(INT32_MIN, 31), -1);
    assert_int_equal(sciot_rounding_divide_by_pot(INT32_MAX, 31), 1);
}

static void test_roundings_differ_where_expected(void **state)
{
    (void)state;
    /* -6 * 0.5 * 2^-1 = -1.5: ties away from zero, up, or up (one rounding). */
    assert_int_equal(sciot_mul_quantized_double(-6, Q_HALF, -1), -2);
    assert_int_equal(sciot_mul_quantized_ties_up(-6, Q_HALF, -1), -1);
    assert_int_equal(sciot_mul_quantized_single(-6, Q_HALF, -1), -1);
    /* +1.5 rounds to 2 in all three. */
    assert_int_equal(sciot_mul_quantized_double(6, Q_HALF, -1), 2);
    assert_int_equal(sciot_mul_quantized_ties_up(6, Q_HALF, -1), 2);
    assert_int_equal(sciot_mul_quantized_single(6, Q_HALF, -1), 2);
    /* 3 * (1 - 2^-31) / 2 = 1.4999...: two roundings give 2, one gives 1. */
    assert_int_equal(sciot_mul_quantized_double(3, INT32_MAX, -1), 2);
    assert_int_equal(sciot_mul_quantized_ties_up(3, INT32_MAX, -1), 2);
    assert_int_equal(sciot_mul_quantized_single(3, INT32_MAX, -1), 1);
    /* Positive shifts multiply first: 3 * 0.5 * 2^2 = 6. */
    assert_int_equal(sciot_mul_quantized_double(3, Q_HALF, 2), 6);
    assert_int_equal(sciot_mul_quantized_ties_up(3, Q_HALF, 2), 6);
    assert_int_equal(sciot_mul_quantized_single(3, Q_HALF, 2), 6);
    /* The largest right shift. */
    assert_int_equal(sciot_mul_quantized_double(INT32_MAX, INT32_MAX, -31), 1);
    assert_int_equal(sciot_mul_quantized_single(INT32_MIN, Q_HALF, -31), 0);
    /* ruy's rounding shift where adding the nudge would overflow. */
    assert_int_equal(sciot_mul_quantized_ties_up(INT32_MIN, INT32_MIN, -1), 1 << 30);
    assert_int_equal(sciot_mul_quantized_ties_up(INT32_MIN, INT32_MIN, 0), INT32_MAX);
    /* ruy's single rounding saturates instead of wrapping. */
    assert_int_equal(sciot_mul_quantized_single(INT32_MAX, INT32_MAX, 7), INT32_MAX);
    assert_int_equal(sciot_mul_quantized_single(INT32_MIN, INT32_MAX, 7), INT32_MIN);
    /* Dispatch. */
    assert_int_equal(sciot_mul_quantized(SCIOT_ROUND_DOUBLE, -6, Q_HALF, -1), -2);
    assert_int_equal(sciot_mul_quantized(SCIOT_ROUND_DOUBLE_TIES_UP, -6, Q_HALF, -1), -1);
    assert_int_equal(sciot_mul_quantized(SCIOT_ROUND_SINGLE, 3, INT32_MAX, -1), 1);
}

static uint8_t i32s[4][16];

static const uint8_t *le32(unsigned slot, const int32_t *v, unsigned n)
{
    for (unsigned k = 0; k < n; ++k) {
        uint32_t u = (uint32_t)v[k];
        for (unsigned b = 0; b < 4; ++b) {
            i32s[slot][4 * k + b] = (uint8_t)(u >> (8 * b));
        }
    }
    return i32s[slot];
}

/* 2x2x1 input, 2x2 filter of ones; multiplier 1.0 (0.5 * 2^1). */
static sciot_conv_params conv_2x2(const int8_t *in, const int8_t *filter, int8_t *out)
{
    static const int32_t mult[1] = {Q_HALF}, shift[1] = {1}, bias[1] = {5};
    sciot_conv_params p = {0};
    p.input = in;
    p.in_h = p.in_w = 2;
    p.in_c = 1;
    p.filter = filter;
    p.k_h = p.k_w = 2;
    p.bias = le32(0, bias, 1);
    p.multiplier = le32(1, mult, 1);
    p.shift = le32(2, shift, 1);
    p.output = out;
    p.out_c = 1;
    p.stride_w = p.stride_h = p.dilation_w = p.dilation_h = 1;
    p.act_min = -128;
    p.act_max = 127;
    p.rounding = SCIOT_ROUND_DOUBLE;
    return p;
}

static void test_conv_valid_same_offsets_and_clamp(void **state)
{
    (void)state;
    const int8_t in[4] = {1, 2, 3, 4}, ones[4] = {1, 1, 1, 1};
    int8_t out[4] = {0};
    /* VALID: one output, 1+2+3+4 + bias 5, output zero point -3. */
    sciot_conv_params p = conv_2x2(in, ones, out);
    p.out_h = p.out_w = 1;
    p.output_offset = -3;
    sciot_conv2d_s8(&p);
    assert_int_equal(out[0], 12);
    /* The input zero point is subtracted from every tap inside the image. */
    p.input_offset = -1;
    sciot_conv2d_s8(&p);
    assert_int_equal(out[0], 8);
    /* Fused activation bounds. */
    p.act_max = 4;
    sciot_conv2d_s8(&p);
    assert_int_equal(out[0], 4);
    /* SAME, stride 1: total padding 1 goes bottom/right (pad 0 top/left); taps outside
     * the image contribute nothing. */
    p = conv_2x2(in, ones, out);
    p.out_h = p.out_w = 2;
    sciot_conv2d_s8(&p);
    assert_int_equal(out[0], 10 + 5);
    assert_int_equal(out[1], 6 + 5);
    assert_int_equal(out[2], 7 + 5);
    assert_int_equal(out[3], 4 + 5);
    /* Padding on the top/left side, stride 2: only the bottom-right tap lands. */
    p = conv_2x2(in, ones, out);
    p.out_h = p.out_w = 1;
    p.pad_h = p.pad_w = 1;
    p.stride_h = p.stride_w = 2;
    sciot_conv2d_s8(&p);
    assert_int_equal(out[0], 1 + 5);
}

static void test_depthwise_multiplier(void **state)
{
    (void)state;
    /* 1x1x2 input, depth multiplier 2: out channel c*2+m uses filter[c*2+m]. */
    const int8_t in[2] = {3, -4};
    const int8_t filter[4] = {1, 2, -1, 3};
    static const int32_t mult[4] = {Q_HALF, Q_HALF, Q_HALF, Q_HALF};
    static const int32_t shift[4] = {1, 1, 1, 1};
    int8_t out[4] = {0};
    sciot_conv_params p = {0};
    p.input = in;
    p.in_h = p.in_w = 1;
    p.in_c = 2;
    p.filter = filter;
    p.k_h = p.k_w = 1;
    p.multiplier = le32(1, mult, 4);
    p.shift = le32(2, shift, 4);
    p.output = out;
    p.out_h = p.out_w = 1;
    p.out_c = 4;
    p.depth_multiplier = 2;
    p.stride_w = p.stride_h = p.dilation_w = p.dilation_h = 1;
    p.act_min = -128;
    p.act_max = 127;
    sciot_depthwise_conv2d_s8(&p);
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 6);
    assert_int_equal(out[2], 4);
    assert_int_equal(out[3], -12);
}

/* A broadcast shape that walks n elements of both inputs in step. */
static sciot_broadcast flat(int32_t n)
{
    sciot_broadcast s = {{1, 1, 1, n}, {0, 0, 0, 1}, {0, 0, 0, 1}};
    return s;
}

static void test_add_same_scale_and_saturation(void **state)
{
    (void)state;
    /* Inputs and output of one scale: each input * 0.5 after << 20, output * 2^-19. */
    const int8_t a[3] = {10, -100, 100}, b[3] = {-3, -100, 100};
    int8_t out[3] = {0};
    sciot_add_params p = {0};
    p.input1 = a;
    p.input2 = b;
    p.output = out;
    p.shape = flat(3);
    p.left_shift = 20;
    p.input1_multiplier = p.input2_multiplier = Q_HALF;
    p.output_multiplier = Q_HALF;
    p.output_shift = -18;
    p.act_min = -128;
    p.act_max = 127;
    sciot_add_s8(&p);
    assert_int_equal(out[0], 7);
    assert_int_equal(out[1], -128);
    assert_int_equal(out[2], 127);
    /* Zero points: (10 - 2) + (-3 - 1) + 5. */
    p.input1_offset = -2;
    p.input2_offset = -1;
    p.output_offset = 5;
    sciot_add_s8(&p);
    assert_int_equal(out[0], 9);
}

static void test_softmax_uniform_and_peaked(void **state)
{
    (void)state;
    static uint8_t table[1024];
    /* table[255 - d] = 2^-d: exp of a made-up scale, exact in float. */
    for (unsigned i = 0; i < 256; ++i) {
        union {
            float f;
            uint32_t u;
        } v;
        unsigned d = 255 - i;
        v.f = d < 120 ? 1.0f / (float)((uint64_t)1 << (d < 63 ? d : 63)) : 0.0f;
        for (unsigned b = 0; b < 4; ++b) {
            table[4 * i + b] = (uint8_t)(v.u >> (8 * b));
        }
    }
    const int8_t in[6] = {5, 5, 5, 7, 6, -128};
    int8_t out[6] = {0};
    sciot_softmax_params p = {in, out, 2, 3, table, 1.0f / 256.0f, -128};
    sciot_softmax_s8(&p);
    /* 1/3 * 256 = 85.33 -> 85. */
    assert_int_equal(out[0], 85 - 128);
    assert_int_equal(out[1], 85 - 128);
    assert_int_equal(out[2], 85 - 128);
    /* weights 1, 1/2, ~0 of 1.5: 170.67 -> 171, 85.33 -> 85, 0. */
    assert_int_equal(out[3], 171 - 128);
    assert_int_equal(out[4], 85 - 128);
    assert_int_equal(out[5], -128);
}

static void test_open_rejects_bad_blobs(void **state)
{
    (void)state;
    sciot_model m;
    uint8_t blob[128];
    memset(blob, 0, sizeof blob);
    assert_false(sciot_model_open(&m, NULL, 10));
    assert_int_equal(m.error, SCIOT_MODEL_E_ARG);
    assert_false(sciot_model_open(&m, blob, 4));
    assert_int_equal(m.error, SCIOT_MODEL_E_TRUNCATED);
    memcpy(blob, "XCMB", 4);
    assert_false(sciot_model_open(&m, blob, sizeof blob));
    assert_int_equal(m.error, SCIOT_MODEL_E_MAGIC);
    memcpy(blob, "SCMB", 4);
    blob[4] = 1; /* the layout before the TinyML operator set */
    assert_false(sciot_model_open(&m, blob, sizeof blob));
    assert_int_equal(m.error, SCIOT_MODEL_E_VERSION);
    blob[4] = SCIOT_MODEL_VERSION;
    blob[6] = 96;
    blob[8] = 200; /* claims 200 bytes, has 128 */
    assert_false(sciot_model_open(&m, blob, sizeof blob));
    assert_int_equal(m.error, SCIOT_MODEL_E_TRUNCATED);
    blob[8] = 128; /* no ops, no tensors */
    assert_false(sciot_model_open(&m, blob, sizeof blob));
    assert_int_equal(m.error, SCIOT_MODEL_E_MALFORMED);
    /* A model that failed to open answers no queries and runs nothing. */
    assert_int_equal(sciot_model_boundary_count(&m, 0), 0);
    assert_int_equal(sciot_model_arena_size(&m), 0);
    assert_null(sciot_model_op_name(&m, 0));
    assert_int_equal(sciot_model_run(&m, 0, 0, NULL, 0, NULL, 0, NULL, 0, NULL), SCIOT_MODEL_E_ARG);
    assert_string_equal(sciot_model_strerror(SCIOT_MODEL_E_ARENA), "arena too small");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_srdhm),
        cmocka_unit_test(test_rounding_divide_by_pot),
        cmocka_unit_test(test_roundings_differ_where_expected),
        cmocka_unit_test(test_conv_valid_same_offsets_and_clamp),
        cmocka_unit_test(test_depthwise_multiplier),
        cmocka_unit_test(test_add_same_scale_and_saturation),
        cmocka_unit_test(test_softmax_uniform_and_peaked),
        cmocka_unit_test(test_open_rejects_bad_blobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
