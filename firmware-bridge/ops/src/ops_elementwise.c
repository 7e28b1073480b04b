/* Bindings of the elementwise and activation ops (blob.h): ADD, MUL, HARD_SWISH, LOGISTIC,
 * TANH, QUANTIZE, DEQUANTIZE and SOFTMAX. Each op's params are listed at its check. */
#include "blob.h"

/* An int8 operand of a binary op: an activation or a constant. */
static bool int8_operand(const sciot_model *m, uint16_t i, sciot_tensor_rec *t)
{
    if (i >= m->num_tensors) {
        return false;
    }
    sciot_read_tensor(m, i, t);
    return t->dtype == SCIOT_BLOB_INT8 &&
           (t->kind == SCIOT_KIND_ACTIVATION || t->kind == SCIOT_KIND_CONSTANT);
}

/* Numpy-style broadcasting of a and b to exactly y's shape. */
static bool broadcast(const sciot_tensor_rec *a, const sciot_tensor_rec *b,
                      const sciot_tensor_rec *y, sciot_broadcast *s)
{
    int32_t da[4], db[4], dy[4], step_a = 1, step_b = 1;
    sciot_dims4(a, da);
    sciot_dims4(b, db);
    sciot_dims4(y, dy);
    for (int d = 3; d >= 0; --d) {
        if ((da[d] != dy[d] && da[d] != 1) || (db[d] != dy[d] && db[d] != 1)) {
            return false;
        }
        s->dims[d] = dy[d];
        s->stride1[d] = da[d] == 1 ? 0 : step_a;
        s->stride2[d] = db[d] == 1 ? 0 : step_b;
        step_a *= da[d];
        step_b *= db[d];
    }
    return true;
}

/* The uint32 vector count at `at` in the params is at most the output's elements. */
static bool vector_count_ok(const sciot_model *m, const sciot_op_rec *o, uint32_t at)
{
    sciot_tensor_rec y;
    sciot_read_tensor(m, o->out[0], &y);
    return sciot_rd_u32(m->_blob + o->params_off + at) <= sciot_elements(&y);
}

/* Two int8 operands that broadcast to the int8 output. */
static bool binary_ok(const sciot_model *m, const sciot_op_rec *o, sciot_broadcast *s)
{
    sciot_tensor_rec a, b, y;
    return sciot_operands(o, 2, 1) && int8_operand(m, o->in[0], &a) &&
           int8_operand(m, o->in[1], &b) && sciot_act_out(m, o->out[0], SCIOT_BLOB_INT8, &y) &&
           broadcast(&a, &b, &y, s) && sciot_act_range_ok(o);
}

/* ADD params: int32 left shift, multiplier and shift of input 1, of input 2, of the output,
 * uint32 vector count (kernels.h). */
sciot_model_err sciot_check_add(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_broadcast s;
    if (!binary_ok(m, o, &s) || !sciot_params_ok(m, o, 32u) || !vector_count_ok(m, o, 28u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    const uint8_t *p = m->_blob + o->params_off;
    int32_t left = sciot_rd_i32(p);
    int hi = sciot_max_shift(o->rounding);
    if (left < 0 || left > 24 || !sciot_shifts_ok(p + 8, 1, -31, hi) ||
        !sciot_shifts_ok(p + 16, 1, -31, hi) || !sciot_shifts_ok(p + 24, 1, -31, hi)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_add(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec a, b, y;
    sciot_read_tensor(c->m, o->in[0], &a);
    sciot_read_tensor(c->m, o->in[1], &b);
    sciot_read_tensor(c->m, o->out[0], &y);
    const uint8_t *params = sciot_params(c, o);
    sciot_add_params p = {
        .input1 = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .input2 = (const int8_t *)sciot_tensor_data(c, o->in[1]),
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
        .input1_offset = -a.zero_point,
        .input2_offset = -b.zero_point,
        .output_offset = y.zero_point,
        .left_shift = sciot_rd_i32(params),
        .input1_multiplier = sciot_rd_i32(params + 4),
        .input1_shift = sciot_rd_i32(params + 8),
        .input2_multiplier = sciot_rd_i32(params + 12),
        .input2_shift = sciot_rd_i32(params + 16),
        .output_multiplier = sciot_rd_i32(params + 20),
        .output_shift = sciot_rd_i32(params + 24),
        .act_min = o->act_min,
        .act_max = o->act_max,
        .rounding = o->rounding,
        .vector_count = sciot_rd_u32(params + 28),
    };
    broadcast(&a, &b, &y, &p.shape);
    sciot_add_s8(&p);
}

/* MUL params: int32 output multiplier, int32 output shift, uint32 vector count. */
sciot_model_err sciot_check_mul(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_broadcast s;
    if (!binary_ok(m, o, &s) || !sciot_params_ok(m, o, 12u) || !vector_count_ok(m, o, 8u) ||
        !sciot_shifts_ok(m->_blob + o->params_off + 4, 1, -31, sciot_max_shift(o->rounding))) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_mul(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec a, b, y;
    sciot_read_tensor(c->m, o->in[0], &a);
    sciot_read_tensor(c->m, o->in[1], &b);
    sciot_read_tensor(c->m, o->out[0], &y);
    const uint8_t *params = sciot_params(c, o);
    sciot_mul_params p = {
        .input1 = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .input2 = (const int8_t *)sciot_tensor_data(c, o->in[1]),
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
        .input1_offset = -a.zero_point,
        .input2_offset = -b.zero_point,
        .output_offset = y.zero_point,
        .output_multiplier = sciot_rd_i32(params),
        .output_shift = sciot_rd_i32(params + 4),
        .act_min = o->act_min,
        .act_max = o->act_max,
        .rounding = o->rounding,
        .vector_count = sciot_rd_u32(params + 8),
    };
    broadcast(&a, &b, &y, &p.shape);
    sciot_mul_s8(&p);
}

/* One input, one output, both `in_dtype` / `out_dtype` activations of as many elements. */
static bool unary_ok(const sciot_model *m, const sciot_op_rec *o, uint8_t in_dtype,
                     uint8_t out_dtype, sciot_tensor_rec *x, sciot_tensor_rec *y)
{
    return sciot_operands(o, 1, 1) && sciot_act_in(m, o->in[0], in_dtype, x) &&
           sciot_act_out(m, o->out[0], out_dtype, y) && sciot_elements(x) == sciot_elements(y);
}

/* HARD_SWISH params: int32 output multiplier (int16 range), output exponent (<= 0),
 * "relu-ish" multiplier (int16 range), its exponent. */
sciot_model_err sciot_check_hard_swish(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    if (!unary_ok(m, o, SCIOT_BLOB_INT8, SCIOT_BLOB_INT8, &x, &y) || !sciot_params_ok(m, o, 16u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    const uint8_t *p = m->_blob + o->params_off;
    const int32_t out_mult = sciot_rd_i32(p), out_exp = sciot_rd_i32(p + 4);
    const int32_t relu_mult = sciot_rd_i32(p + 8), relu_exp = sciot_rd_i32(p + 12);
    if (out_mult < 0 || out_mult > 32767 || out_exp < -31 || out_exp > 0 || relu_mult < 0 ||
        relu_mult > 32767 || relu_exp < -31 || relu_exp > 30) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_hard_swish(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    sciot_read_tensor(c->m, o->in[0], &x);
    sciot_read_tensor(c->m, o->out[0], &y);
    const uint8_t *params = sciot_params(c, o);
    sciot_hard_swish_params p = {
        .input = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
        .count = y.nbytes,
        .input_zero_point = x.zero_point,
        .output_zero_point = y.zero_point,
        .output_multiplier = sciot_rd_i32(params),
        .output_exponent = sciot_rd_i32(params + 4),
        .reluish_multiplier = sciot_rd_i32(params + 8),
        .reluish_exponent = sciot_rd_i32(params + 12),
    };
    sciot_hard_swish_s8(&p);
}

/* LOGISTIC and TANH params: int8 table[256], indexed by the input's bits as uint8. */
sciot_model_err sciot_check_lookup(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    if (!unary_ok(m, o, SCIOT_BLOB_INT8, SCIOT_BLOB_INT8, &x, &y) || !sciot_params_ok(m, o, 256u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_lookup(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec y;
    sciot_read_tensor(c->m, o->out[0], &y);
    sciot_lookup_s8((const int8_t *)sciot_tensor_data(c, o->in[0]),
                    (int8_t *)sciot_tensor_out(c, o->out[0]), y.nbytes, sciot_params(c, o));
}

#define QUANTIZE_F32_PARAMS (4u + 2u * SCIOT_QUANTIZE_MAP_BYTES)
#define DEQUANTIZE_PARAMS (4u + 2u * 1024u)

/* QUANTIZE from float32, params: uint32 vector_count, then the two maps of kernels.h.
 * From int8 (requantization), params: int32 multiplier, shift, vector_count and
 * vector_rounding; the record's rounding is the scalar tail's. */
sciot_model_err sciot_check_quantize(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    if (unary_ok(m, o, SCIOT_BLOB_FLOAT32, SCIOT_BLOB_INT8, &x, &y)) {
        if (!sciot_params_ok(m, o, QUANTIZE_F32_PARAMS) ||
            sciot_rd_u32(m->_blob + o->params_off) > y.nbytes) {
            return SCIOT_MODEL_E_MALFORMED;
        }
        return SCIOT_MODEL_OK;
    }
    if (!unary_ok(m, o, SCIOT_BLOB_INT8, SCIOT_BLOB_INT8, &x, &y) || !sciot_params_ok(m, o, 16u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    const uint8_t *p = m->_blob + o->params_off;
    const int32_t vector_rounding = sciot_rd_i32(p + 12);
    if (sciot_rd_u32(p + 8) > y.nbytes || vector_rounding < 0 ||
        vector_rounding > SCIOT_ROUND_DOUBLE_TIES_UP ||
        !sciot_shifts_ok(p + 4, 1, -31, sciot_max_shift(o->rounding)) ||
        !sciot_shifts_ok(p + 4, 1, -31, sciot_max_shift((uint8_t)vector_rounding))) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_quantize(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    sciot_read_tensor(c->m, o->in[0], &x);
    sciot_read_tensor(c->m, o->out[0], &y);
    const uint8_t *params = sciot_params(c, o);
    if (x.dtype == SCIOT_BLOB_FLOAT32) {
        sciot_quantize_params p = {
            .input = sciot_tensor_data(c, o->in[0]),
            .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
            .count = y.nbytes,
            .vector_count = sciot_rd_u32(params),
            .vector_map = params + 4,
            .map = params + 4 + SCIOT_QUANTIZE_MAP_BYTES,
        };
        sciot_quantize_f32_s8(&p);
        return;
    }
    sciot_requantize_params p = {
        .input = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
        .count = y.nbytes,
        .vector_count = sciot_rd_u32(params + 8),
        .input_zero_point = x.zero_point,
        .output_zero_point = y.zero_point,
        .multiplier = sciot_rd_i32(params),
        .shift = sciot_rd_i32(params + 4),
        .vector_rounding = (int)sciot_rd_i32(params + 12),
        .rounding = o->rounding,
    };
    sciot_requantize_s8(&p);
}

/* DEQUANTIZE params: uint32 vector_count, then two float32 tables of 256 (kernels.h). */
sciot_model_err sciot_check_dequantize(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    if (!unary_ok(m, o, SCIOT_BLOB_INT8, SCIOT_BLOB_FLOAT32, &x, &y) ||
        !sciot_params_ok(m, o, DEQUANTIZE_PARAMS) ||
        sciot_rd_u32(m->_blob + o->params_off) > x.nbytes) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_dequantize(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec x;
    sciot_read_tensor(c->m, o->in[0], &x);
    const uint8_t *params = sciot_params(c, o);
    sciot_dequantize_params p = {
        .input = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .output = sciot_tensor_out(c, o->out[0]),
        .count = x.nbytes,
        .vector_count = sciot_rd_u32(params),
        .vector_table = params + 4,
        .table = params + 4 + 1024,
    };
    sciot_dequantize_s8_f32(&p);
}

/* SOFTMAX params: float32 table[256] (table[255 - d] = expf(-input_scale * beta * d)). */
sciot_model_err sciot_check_softmax(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    if (!unary_ok(m, o, SCIOT_BLOB_INT8, SCIOT_BLOB_INT8, &x, &y) || x.ndims < 1 ||
        x.ndims != y.ndims || x.dims[x.ndims - 1] != y.dims[y.ndims - 1] || !(y.scale > 0.0f) ||
        !sciot_params_ok(m, o, 1024u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_softmax(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec y;
    sciot_read_tensor(c->m, o->out[0], &y);
    const uint32_t depth = (uint32_t)y.dims[y.ndims - 1];
    sciot_softmax_params p = {
        .input = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
        .rows = y.nbytes / depth,
        .depth = depth,
        .table = sciot_params(c, o),
        .output_scale = y.scale,
        .output_zero_point = y.zero_point,
    };
    sciot_softmax_s8(&p);
}
