/* Bindings of AVERAGE_POOL_2D, MAX_POOL_2D and MEAN (blob.h). */
#include "blob.h"

/* Int8 activation, 4-D, batch 1. */
static bool act8_4d(const sciot_model *m, uint16_t i, sciot_tensor_rec *t)
{
    return sciot_act_in(m, i, SCIOT_BLOB_INT8, t) && t->ndims == 4 && t->dims[0] == 1;
}

/* Pools: stride and padding in the record; params: int32 filter width, filter height.
 * Every window must overlap the image (its first tap before the image's end, its last
 * after the image's start), so that an average never divides by zero. */
sciot_model_err sciot_check_pool(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    if (!sciot_operands(o, 1, 1) || !act8_4d(m, o->in[0], &x) || !act8_4d(m, o->out[0], &y) ||
        x.dims[3] != y.dims[3] || !sciot_act_range_ok(o) || !sciot_params_ok(m, o, 8u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    const uint8_t *p = m->_blob + o->params_off;
    const int32_t fw = sciot_rd_i32(p), fh = sciot_rd_i32(p + 4);
    if (fw < 1 || fh < 1 || o->stride_w < 1 || o->stride_h < 1 || o->pad_w < 0 || o->pad_h < 0 ||
        o->pad_w >= fw || o->pad_h >= fh ||
        (int64_t)(y.dims[2] - 1) * o->stride_w - o->pad_w >= x.dims[2] ||
        (int64_t)(y.dims[1] - 1) * o->stride_h - o->pad_h >= x.dims[1]) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_pool(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y;
    sciot_read_tensor(c->m, o->in[0], &x);
    sciot_read_tensor(c->m, o->out[0], &y);
    const uint8_t *params = sciot_params(c, o);
    sciot_pool_params p = {
        .input = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .in_h = x.dims[1],
        .in_w = x.dims[2],
        .channels = x.dims[3],
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
        .out_h = y.dims[1],
        .out_w = y.dims[2],
        .filter_w = sciot_rd_i32(params),
        .filter_h = sciot_rd_i32(params + 4),
        .stride_h = o->stride_h,
        .stride_w = o->stride_w,
        .pad_h = o->pad_h,
        .pad_w = o->pad_w,
        .act_min = o->act_min,
        .act_max = o->act_max,
    };
    if (o->type == SCIOT_OP_AVERAGE_POOL_2D) {
        sciot_average_pool_s8(&p);
    } else {
        sciot_max_pool_s8(&p);
    }
}

/* MEAN params: uint32 reduce mask (bit d: dimension d of the input's 4-D shape), int32
 * accumulator offset, output offset, multiplier, shift, uint32 vector outputs, int32
 * vector rounding; the record's rounding is the other outputs'. Inputs: the data and the
 * constant axis list (read by the exporter only). */
sciot_model_err sciot_check_mean(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, y, axis;
    if (!sciot_operands(o, 2, 1) || !sciot_act_in(m, o->in[0], SCIOT_BLOB_INT8, &x) ||
        !sciot_act_out(m, o->out[0], SCIOT_BLOB_INT8, &y) ||
        !sciot_const_of(m, o->in[1], SCIOT_BLOB_INT32, &axis) || !sciot_params_ok(m, o, 28u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    const uint8_t *p = m->_blob + o->params_off;
    const uint32_t mask = sciot_rd_u32(p);
    const int32_t vector_rounding = sciot_rd_i32(p + 24);
    int32_t d[4];
    sciot_dims4(&x, d);
    uint32_t kept = 1;
    for (unsigned k = 0; k < 4; ++k) {
        kept *= ((mask >> k) & 1u) ? 1u : (uint32_t)d[k];
    }
    if (mask > 15u || kept != y.nbytes || sciot_rd_u32(p + 20) > y.nbytes || vector_rounding < 0 ||
        vector_rounding > SCIOT_ROUND_DOUBLE_TIES_UP ||
        !sciot_shifts_ok(p + 16, 1, -31, sciot_max_shift(o->rounding)) ||
        !sciot_shifts_ok(p + 16, 1, -31, sciot_max_shift((uint8_t)vector_rounding))) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_mean(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec x;
    sciot_read_tensor(c->m, o->in[0], &x);
    const uint8_t *params = sciot_params(c, o);
    sciot_mean_params p = {
        .input = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .reduce_mask = sciot_rd_u32(params),
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
        .acc_offset = sciot_rd_i32(params + 4),
        .output_offset = sciot_rd_i32(params + 8),
        .multiplier = sciot_rd_i32(params + 12),
        .shift = sciot_rd_i32(params + 16),
        .vector_outputs = sciot_rd_u32(params + 20),
        .vector_rounding = (int)sciot_rd_i32(params + 24),
        .rounding = o->rounding,
    };
    sciot_dims4(&x, p.dims);
    sciot_mean_s8(&p);
}
