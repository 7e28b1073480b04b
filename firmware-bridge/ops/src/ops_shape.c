/* Bindings of RESHAPE, CONCATENATION, PAD and PADV2 (blob.h): ops that move bytes. */
#include "blob.h"

/* Tensor `i` exists, is an activation or a constant, and has `dtype`. */
static bool operand_of(const sciot_model *m, uint16_t i, uint8_t dtype, sciot_tensor_rec *t)
{
    if (i >= m->num_tensors) {
        return false;
    }
    sciot_read_tensor(m, i, t);
    return t->dtype == dtype &&
           (t->kind == SCIOT_KIND_ACTIVATION || t->kind == SCIOT_KIND_CONSTANT);
}

/* RESHAPE: no params; inputs the data and, optionally, the constant new shape. */
sciot_model_err sciot_check_reshape(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y, shape;
    if (o->num_in < 1 || o->num_in > 2 || o->num_out != 1 || o->in[0] >= m->num_tensors) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    sciot_read_tensor(m, o->out[0], &y);
    if (!sciot_act_in(m, o->in[0], y.dtype, &x) || x.nbytes != y.nbytes ||
        (o->num_in == 2 && o->in[1] != SCIOT_NO_TENSOR &&
         !sciot_const_of(m, o->in[1], SCIOT_BLOB_INT32, &shape))) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_reshape(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec y;
    sciot_read_tensor(c->m, o->out[0], &y);
    const uint8_t *in = sciot_tensor_data(c, o->in[0]);
    uint8_t *out = sciot_tensor_out(c, o->out[0]);
    if (in != out) {
        for (uint32_t b = 0; b < y.nbytes; ++b) {
            out[b] = in[b];
        }
    }
}

/* CONCATENATION params: int32 axis (0 <= axis < rank). Inputs of the output's type and
 * rank, equal to it but along the axis, whose extents there add up to the output's. */
sciot_model_err sciot_check_concat(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec y;
    if (o->num_in < 1 || o->num_out != 1 || !sciot_params_ok(m, o, 4u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    sciot_read_tensor(m, o->out[0], &y);
    const int32_t axis = sciot_rd_i32(m->_blob + o->params_off);
    if (y.ndims < 1 || axis < 0 || axis >= (int32_t)y.ndims) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    int64_t along = 0;
    for (unsigned k = 0; k < o->num_in; ++k) {
        sciot_tensor_rec x;
        if (!operand_of(m, o->in[k], y.dtype, &x) || x.ndims != y.ndims) {
            return SCIOT_MODEL_E_MALFORMED;
        }
        for (int32_t d = 0; d < (int32_t)y.ndims; ++d) {
            if (d != axis && x.dims[d] != y.dims[d]) {
                return SCIOT_MODEL_E_MALFORMED;
            }
        }
        along += x.dims[axis];
    }
    return along == y.dims[axis] ? SCIOT_MODEL_OK : SCIOT_MODEL_E_MALFORMED;
}

void sciot_run_concat(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec y;
    sciot_read_tensor(c->m, o->out[0], &y);
    const int32_t axis = sciot_rd_i32(sciot_params(c, o));
    uint32_t outer = 1;
    for (int32_t d = 0; d < axis; ++d) {
        outer *= (uint32_t)y.dims[d];
    }
    const uint8_t *inputs[4];
    uint32_t chunk[4];
    for (unsigned k = 0; k < o->num_in; ++k) {
        sciot_tensor_rec x;
        sciot_read_tensor(c->m, o->in[k], &x);
        inputs[k] = sciot_tensor_data(c, o->in[k]);
        chunk[k] = x.nbytes / outer;
    }
    sciot_concat(inputs, chunk, o->num_in, outer, sciot_tensor_out(c, o->out[0]));
}

/* PAD and PADV2 params: int32 before[4], after[4] (along the input's 4-D shape), int32
 * value. Inputs: the data, the constant paddings and, for PADV2, the constant value. */
sciot_model_err sciot_check_pad(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    const unsigned inputs = o->type == SCIOT_OP_PADV2 ? 3u : 2u;
    if (!sciot_operands(o, inputs, 1) || !sciot_act_in(m, o->in[0], SCIOT_BLOB_INT8, &x) ||
        !sciot_act_out(m, o->out[0], SCIOT_BLOB_INT8, &y) || !sciot_params_ok(m, o, 36u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    for (unsigned k = 1; k < inputs; ++k) {
        sciot_tensor_rec t;
        if (o->in[k] >= m->num_tensors) {
            return SCIOT_MODEL_E_MALFORMED;
        }
        sciot_read_tensor(m, o->in[k], &t);
        if (t.kind != SCIOT_KIND_CONSTANT) {
            return SCIOT_MODEL_E_MALFORMED;
        }
    }
    const uint8_t *p = m->_blob + o->params_off;
    int32_t dx[4], dy[4];
    sciot_dims4(&x, dx);
    sciot_dims4(&y, dy);
    if (x.ndims != y.ndims) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    for (unsigned d = 0; d < 4; ++d) {
        const int32_t before = sciot_rd_i32(p + 4 * d), after = sciot_rd_i32(p + 16 + 4 * d);
        if (before < 0 || after < 0 || (int64_t)before + dx[d] + after != dy[d]) {
            return SCIOT_MODEL_E_MALFORMED;
        }
    }
    const int32_t value = sciot_rd_i32(p + 32);
    return value >= -128 && value <= 127 ? SCIOT_MODEL_OK : SCIOT_MODEL_E_MALFORMED;
}

void sciot_run_pad(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec x;
    sciot_read_tensor(c->m, o->in[0], &x);
    const uint8_t *params = sciot_params(c, o);
    sciot_pad_params p = {
        .input = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .value = (int8_t)sciot_rd_i32(params + 32),
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
    };
    sciot_dims4(&x, p.dims);
    for (unsigned d = 0; d < 4; ++d) {
        p.before[d] = sciot_rd_i32(params + 4 * d);
        p.after[d] = sciot_rd_i32(params + 16 + 4 * d);
    }
    sciot_pad_s8(&p);
}
