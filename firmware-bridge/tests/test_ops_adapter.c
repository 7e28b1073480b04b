/*
 * The ops adapter (sciot/ops_adapter.h) over a real sciot model blob, built here byte by
 * byte as sciot_mqtt/models/export/ lays it out: one ADD whose output is the sum of its two
 * inputs, so boundary 0 holds two tensors and boundary 1 one. Every bound the adapter checks
 * is crossed once, and a refused run must leave the output buffer untouched.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sciot/ops_adapter.h"

#define BLOB_LEN 336u
#define NOWHERE 0xffffffffu

static uint8_t BLOB[BLOB_LEN];

static void put16(size_t at, uint32_t v)
{
    BLOB[at] = (uint8_t)v;
    BLOB[at + 1] = (uint8_t)(v >> 8);
}

static void put32(size_t at, uint32_t v)
{
    put16(at, v & 0xffffu);
    put16(at + 2, v >> 16);
}

/* An int8 activation of shape [1, 4] at `location` in the arena (NOWHERE: a model input). */
static void put_tensor(size_t at, uint32_t location)
{
    BLOB[at] = 1; /* int8 */
    BLOB[at + 1] = 2;
    BLOB[at + 2] = 1; /* activation */
    put32(at + 4, 1);
    put32(at + 8, 4);
    put32(at + 20, 4); /* nbytes */
    put32(at + 24, location);
    put32(at + 28, 0x3f000000u); /* scale 0.5f */
    put32(at + 32, 0);           /* zero point */
}

/* y = a + b: each input scaled by 2^20 * 2^-1, the sum by 2^-1 * 2^-18. */
static void build_blob(void)
{
    memset(BLOB, 0, sizeof BLOB);
    memcpy(BLOB, "SCMB", 4);
    put16(4, SCIOT_MODEL_VERSION);
    put16(6, 96); /* header bytes */
    put32(8, BLOB_LEN);
    put16(12, 3);  /* tensors */
    put16(14, 1);  /* ops */
    put32(16, 4);  /* arena bytes */
    put32(20, 96); /* tensors at */
    put32(24, 224);
    put32(28, 304);
    memcpy(BLOB + 64, "adder", 5);
    put_tensor(96, NOWHERE);
    put_tensor(136, NOWHERE);
    put_tensor(176, 0);
    BLOB[224] = 3; /* ADD */
    BLOB[226] = 2;
    BLOB[227] = 1;
    put16(228, 0);
    put16(230, 1);
    put16(232, 0xffffu);
    put16(234, 0xffffu);
    put16(236, 2);
    put16(238, 0xffffu);
    put32(252, (uint32_t)-128);
    put32(256, 127);
    put32(260, 272); /* params at */
    put32(264, 32);
    put32(272, 20);            /* left shift */
    put32(276, 1u << 30);      /* input 1: x 0.5 */
    put32(284, 1u << 30);      /* input 2: x 0.5 */
    put32(292, 1u << 30);      /* output: x 0.5 ... */
    put32(296, (uint32_t)-18); /* ... x 2^-18 */
    put32(300, 0);             /* no element computed like LiteRT's NEON blocks */
    put32(304, 312);           /* boundary 0 */
    put32(308, 320);           /* boundary 1 */
    put16(312, 2);
    put16(314, 0);
    put16(316, 1);
    put16(320, 1);
    put16(322, 2);
}

static uint64_t ticks;

static uint64_t fake_now(void *ctx)
{
    (void)ctx;
    ticks += 1500u;
    return ticks;
}

typedef struct {
    sciot_ops_adapter ops;
    uint8_t arena[4];
    int8_t a[4], b[4], y[4];
    sciot_tensor in[2], out[1];
} fixture;

static int setup(void **state)
{
    static fixture f;
    static const int8_t a[4] = {1, 2, 3, 4}, b[4] = {10, 20, 30, -128};
    build_blob();
    memset(&f, 0, sizeof f);
    memcpy(f.a, a, 4);
    memcpy(f.b, b, 4);
    if (!sciot_ops_adapter_open(&f.ops, BLOB, sizeof BLOB) ||
        !sciot_ops_adapter_set_arena(&f.ops, f.arena, sizeof f.arena)) {
        return -1;
    }
    sciot_ops_adapter_set_clock(&f.ops, fake_now, NULL, 1000.0);
    if (!sciot_ops_adapter_boundary_tensor(&f.ops, 0, 0, &f.in[0]) ||
        !sciot_ops_adapter_boundary_tensor(&f.ops, 0, 1, &f.in[1]) ||
        !sciot_ops_adapter_boundary_tensor(&f.ops, 1, 0, &f.out[0])) {
        return -1;
    }
    f.in[0].data = f.a;
    f.in[1].data = f.b;
    f.out[0].data = f.y;
    *state = &f;
    return 0;
}

static void runs_the_operators_and_times_them(void **state)
{
    fixture *f = *state;
    static const int8_t sum[4] = {11, 22, 33, -124};
    double op_ms[1] = {-1};
    sciot_model_hal hal = sciot_ops_adapter_hal(&f->ops);
    assert_ptr_equal(hal.ctx, &f->ops);
    assert_int_equal(hal.boundary_count(hal.ctx, 0), 2);
    assert_int_equal(hal.boundary_count(hal.ctx, 1), 1);
    assert_true(hal.run_ops(hal.ctx, 0, 1, f->in, 2, f->out, 1, op_ms));
    assert_int_equal(f->ops.error, SCIOT_OK);
    assert_null(f->ops.error_detail);
    assert_memory_equal(f->y, sum, 4);
    assert_true(op_ms[0] == 1.5); /* one clock step of 1500 ticks at 1000 per ms */
    /* inputs in any order, no times wanted */
    {
        sciot_tensor swapped[2] = {f->in[1], f->in[0]};
        memset(f->y, 0, 4);
        assert_true(sciot_ops_adapter_run_ops(&f->ops, 0, 1, swapped, 2, f->out, 1, NULL));
        assert_memory_equal(f->y, sum, 4);
    }
}

static void describes_the_boundaries(void **state)
{
    fixture *f = *state;
    sciot_tensor t;
    memset(&t, 0xff, sizeof t);
    assert_true(sciot_ops_adapter_boundary_tensor(&f->ops, 0, 1, &t));
    assert_int_equal(t.index, 1);
    assert_int_equal(t.dtype, SCIOT_DTYPE_INT8);
    assert_int_equal(t.ndim, 2);
    assert_int_equal(t.shape[0], 1);
    assert_int_equal(t.shape[1], 4);
    assert_int_equal(t.shape[2], 0);
    assert_int_equal(t.nbytes, 4);
    assert_true(t.scale == 0.5);
    assert_int_equal(t.zero_point, 0);
    assert_null(t.data);
    /* past the tensors of a boundary, past the model's boundaries */
    assert_false(sciot_ops_adapter_boundary_tensor(&f->ops, 0, 2, &t));
    assert_int_equal(f->ops.error, SCIOT_E_ARG);
    assert_non_null(f->ops.error_detail);
    assert_false(sciot_ops_adapter_boundary_tensor(&f->ops, 2, 0, &t));
    assert_int_equal(f->ops.error, SCIOT_E_ARG);
    assert_int_equal(sciot_ops_adapter_boundary_count(&f->ops, 2), 0);
    assert_int_equal(f->ops.error, SCIOT_E_ARG);
    assert_false(sciot_ops_adapter_boundary_tensor(&f->ops, 0, 0, NULL));
    assert_int_equal(f->ops.error, SCIOT_E_ARG);
}

/* A refused run says why and writes nothing. */
static void refuse(fixture *f, uint16_t first, uint16_t last, const sciot_tensor *in, unsigned n_in,
                   sciot_tensor *out, unsigned n_out, sciot_err want)
{
    double op_ms[2] = {-1, -1};
    memset(f->y, 0x55, 4);
    assert_false(sciot_ops_adapter_run_ops(&f->ops, first, last, in, n_in, out, n_out, op_ms));
    assert_int_equal(f->ops.error, want);
    assert_non_null(f->ops.error_detail);
    assert_true(op_ms[0] == -1 && op_ms[1] == -1);
    assert_int_equal((uint8_t)f->y[0], 0x55);
    assert_int_equal((uint8_t)f->y[3], 0x55);
}

static void refuses_ranges_counts_and_sizes(void **state)
{
    fixture *f = *state;
    sciot_tensor bad[SCIOT_MAX_BOUNDARY_TENSORS + 1];
    refuse(f, 1, 0, f->in, 2, f->out, 1, SCIOT_E_ARG);    /* backwards */
    refuse(f, 0, 2, f->in, 2, f->out, 1, SCIOT_E_ARG);    /* past the last operator */
    refuse(f, 0, 1, f->in, 1, f->out, 1, SCIOT_E_BUFFER); /* one input missing */
    refuse(f, 0, 1, f->in, 2, f->out, 0, SCIOT_E_BUFFER); /* no output */
    refuse(f, 0, 1, f->in, 2, NULL, 1, SCIOT_E_BUFFER);
    memcpy(bad, f->in, sizeof f->in);
    bad[1] = bad[0]; /* the same tensor twice */
    refuse(f, 0, 1, bad, 2, f->out, 1, SCIOT_E_BUFFER);
    memcpy(bad, f->in, sizeof f->in);
    bad[1].index = 2; /* not live at boundary 0 */
    refuse(f, 0, 1, bad, 2, f->out, 1, SCIOT_E_BUFFER);
    memcpy(bad, f->in, sizeof f->in);
    bad[0].nbytes = 8; /* a buffer of the wrong size */
    refuse(f, 0, 1, bad, 2, f->out, 1, SCIOT_E_BUFFER);
    memcpy(bad, f->in, sizeof f->in);
    bad[1].data = NULL;
    refuse(f, 0, 1, bad, 2, f->out, 1, SCIOT_E_BUFFER);
    {
        sciot_tensor out = f->out[0];
        out.nbytes = 3; /* the output buffer too small */
        refuse(f, 0, 1, f->in, 2, &out, 1, SCIOT_E_BUFFER);
    }
    memset(bad, 0, sizeof bad);
    refuse(f, 0, 1, bad, SCIOT_MAX_BOUNDARY_TENSORS + 1, f->out, 1, SCIOT_E_ARG);
    /* the same checks, without running anything */
    assert_false(sciot_ops_adapter_check_run(&f->ops, 0, 1, f->in, 1, f->out, 1));
    assert_int_equal(f->ops.error, SCIOT_E_BUFFER);
    assert_true(sciot_ops_adapter_check_run(&f->ops, 0, 1, f->in, 2, f->out, 1));
    assert_int_equal(f->ops.error, SCIOT_OK);
}

static void needs_a_model_and_an_arena(void **state)
{
    fixture *f = *state;
    sciot_ops_adapter other;
    uint8_t small[3];
    memset(&other, 0, sizeof other);
    assert_int_equal(sciot_ops_adapter_boundary_count(&other, 0), 0);
    assert_int_equal(other.error, SCIOT_E_STATE);
    assert_false(sciot_ops_adapter_run_ops(&other, 0, 0, NULL, 0, NULL, 0, NULL));
    assert_int_equal(other.error, SCIOT_E_STATE);
    /* a blob that is not one */
    assert_false(sciot_ops_adapter_open(&other, BLOB, 50));
    assert_int_equal(other.error, SCIOT_E_MODEL);
    assert_string_equal(other.error_detail, "sciot model blob truncated");
    assert_int_equal(sciot_ops_adapter_arena_size(&other), 0);
    /* an opened model without enough arena runs no operator */
    assert_true(sciot_ops_adapter_open(&other, BLOB, sizeof BLOB));
    assert_int_equal(sciot_ops_adapter_arena_size(&other), 4);
    assert_false(sciot_ops_adapter_set_arena(&other, small, sizeof small));
    assert_int_equal(other.error, SCIOT_E_BUFFER);
    memset(f->y, 0x55, 4);
    assert_false(sciot_ops_adapter_run_ops(&other, 0, 1, f->in, 2, f->out, 1, NULL));
    assert_int_equal(other.error, SCIOT_E_STATE);
    assert_int_equal((uint8_t)f->y[0], 0x55);
    /* ... but may pass the tensors of one boundary through an empty range */
    assert_true(sciot_ops_adapter_run_ops(&other, 1, 1, f->out, 1, f->out, 1, NULL));
}

static void times_are_zero_without_a_clock(void **state)
{
    fixture *f = *state;
    sciot_ops_adapter plain;
    double op_ms[1] = {-1};
    assert_true(sciot_ops_adapter_open(&plain, BLOB, sizeof BLOB));
    assert_true(sciot_ops_adapter_set_arena(&plain, f->arena, sizeof f->arena));
    assert_true(sciot_ops_adapter_run_ops(&plain, 0, 1, f->in, 2, f->out, 1, op_ms));
    assert_true(op_ms[0] == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(runs_the_operators_and_times_them, setup),
        cmocka_unit_test_setup(describes_the_boundaries, setup),
        cmocka_unit_test_setup(refuses_ranges_counts_and_sizes, setup),
        cmocka_unit_test_setup(needs_a_model_and_an_arena, setup),
        cmocka_unit_test_setup(times_are_zero_without_a_clock, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
