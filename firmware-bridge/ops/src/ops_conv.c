/* Bindings of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED (blob.h).
 *
 * Records: inputs (input, filter, bias or none), the fused activation's bounds, the
 * requantization rounding; params: int32 multiplier[C] then int32 shift[C], and for
 * DEPTHWISE_CONV_2D then uint32 vector channels and int32 vector rounding (the first
 * channels round so, the others with the record's rounding). */
#include "blob.h"

/* Int8 activation, 4-D, batch 1. */
static bool act8_4d(const sciot_model *m, uint16_t i, sciot_tensor_rec *t)
{
    return sciot_act_in(m, i, SCIOT_BLOB_INT8, t) && t->ndims == 4 && t->dims[0] == 1;
}

/* Optional int32 bias of `channels` values. */
static bool bias_ok(const sciot_model *m, const sciot_op_rec *o, int32_t channels)
{
    sciot_tensor_rec b;
    if (o->num_in < 3 || o->in[2] == SCIOT_NO_TENSOR) {
        return true;
    }
    return sciot_const_of(m, o->in[2], SCIOT_BLOB_INT32, &b) && b.nbytes == 4u * (uint32_t)channels;
}

/* Per-channel multipliers and shifts (then `extra` bytes), the shifts within what the
 * rounding defines. */
static bool channel_params_ok(const sciot_model *m, const sciot_op_rec *o, int32_t channels,
                              uint32_t extra)
{
    const uint32_t c = (uint32_t)channels;
    return sciot_params_ok(m, o, 8u * c + extra) &&
           sciot_shifts_ok(m->_blob + o->params_off + 4u * c, c, -31, sciot_max_shift(o->rounding));
}

/* DEPTHWISE_CONV_2D's vector channels and rounding, after the shifts. */
static bool vector_params_ok(const sciot_model *m, const sciot_op_rec *o, int32_t channels)
{
    const uint8_t *p = m->_blob + o->params_off + 8u * (uint32_t)channels;
    const uint32_t vector_channels = sciot_rd_u32(p);
    const int32_t rounding = sciot_rd_i32(p + 4);
    return vector_channels <= (uint32_t)channels && rounding >= 0 &&
           rounding <= SCIOT_ROUND_DOUBLE_TIES_UP &&
           sciot_shifts_ok(m->_blob + o->params_off + 4u * (uint32_t)channels, (uint32_t)channels,
                           -31, sciot_max_shift((uint8_t)rounding));
}

static const uint8_t *bias_data(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    return (o->num_in == 3 && o->in[2] != SCIOT_NO_TENSOR) ? sciot_tensor_data(c, o->in[2]) : 0;
}

sciot_model_err sciot_check_conv(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, f, y;
    if (o->num_in < 2 || o->num_in > 3 || o->num_out != 1) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    if (!act8_4d(m, o->in[0], &x) || !act8_4d(m, o->out[0], &y) ||
        !sciot_const_of(m, o->in[1], SCIOT_BLOB_INT8, &f) || f.ndims != 4) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    const int32_t oc = y.dims[3];
    if (o->type == SCIOT_OP_CONV_2D) {
        if (f.dims[0] != oc || f.dims[3] != x.dims[3]) {
            return SCIOT_MODEL_E_MALFORMED;
        }
    } else if (f.dims[0] != 1 || f.dims[3] != oc || o->depth_multiplier < 1 ||
               oc != x.dims[3] * (int32_t)o->depth_multiplier) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    const bool depthwise = o->type == SCIOT_OP_DEPTHWISE_CONV_2D;
    if (!bias_ok(m, o, oc) || o->stride_w < 1 || o->stride_h < 1 || o->dil_w < 1 || o->dil_h < 1 ||
        o->pad_w < 0 || o->pad_h < 0 || !sciot_act_range_ok(o) ||
        !channel_params_ok(m, o, oc, depthwise ? 8u : 0u) ||
        (depthwise && !vector_params_ok(m, o, oc))) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_conv(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec x, f, y;
    sciot_read_tensor(c->m, o->in[0], &x);
    sciot_read_tensor(c->m, o->in[1], &f);
    sciot_read_tensor(c->m, o->out[0], &y);
    const uint8_t *params = sciot_params(c, o);
    sciot_conv_params p = {
        .input = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .in_h = x.dims[1],
        .in_w = x.dims[2],
        .in_c = x.dims[3],
        .input_offset = -x.zero_point,
        .filter = (const int8_t *)sciot_tensor_data(c, o->in[1]),
        .k_h = f.dims[1],
        .k_w = f.dims[2],
        .bias = bias_data(c, o),
        .multiplier = params,
        .shift = params + 4u * (uint32_t)y.dims[3],
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
        .out_h = y.dims[1],
        .out_w = y.dims[2],
        .out_c = y.dims[3],
        .output_offset = y.zero_point,
        .stride_w = o->stride_w,
        .stride_h = o->stride_h,
        .dilation_w = o->dil_w,
        .dilation_h = o->dil_h,
        .pad_w = o->pad_w,
        .pad_h = o->pad_h,
        .depth_multiplier = o->depth_multiplier,
        .act_min = o->act_min,
        .act_max = o->act_max,
        .rounding = o->rounding,
    };
    if (o->type == SCIOT_OP_CONV_2D) {
        sciot_conv2d_s8(&p);
        return;
    }
    const uint8_t *vector = params + 8u * (uint32_t)y.dims[3];
    p.vector_channels = (int32_t)sciot_rd_u32(vector);
    p.vector_rounding = (int)sciot_rd_i32(vector + 4);
    sciot_depthwise_conv2d_s8(&p);
}

/* FULLY_CONNECTED: any int8 input whose bytes are whole rows of the filter's depth; the
 * output is rows x C. */
sciot_model_err sciot_check_fully_connected(const sciot_model *m, const sciot_op_rec *o)
{
    sciot_tensor_rec x, f, y;
    if (o->num_in < 2 || o->num_in > 3 || o->num_out != 1 ||
        !sciot_act_in(m, o->in[0], SCIOT_BLOB_INT8, &x) ||
        !sciot_act_out(m, o->out[0], SCIOT_BLOB_INT8, &y) ||
        !sciot_const_of(m, o->in[1], SCIOT_BLOB_INT8, &f) || f.ndims != 2 || y.ndims < 1) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    const int32_t channels = f.dims[0], depth = f.dims[1];
    if (x.nbytes % (uint32_t)depth != 0 || y.dims[y.ndims - 1] != channels ||
        y.nbytes != x.nbytes / (uint32_t)depth * (uint32_t)channels || !bias_ok(m, o, channels) ||
        !sciot_act_range_ok(o) || !channel_params_ok(m, o, channels, 0u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

void sciot_run_fully_connected(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    sciot_tensor_rec x, f, y;
    sciot_read_tensor(c->m, o->in[0], &x);
    sciot_read_tensor(c->m, o->in[1], &f);
    sciot_read_tensor(c->m, o->out[0], &y);
    const uint8_t *params = sciot_params(c, o);
    sciot_fc_params p = {
        .input = (const int8_t *)sciot_tensor_data(c, o->in[0]),
        .rows = (int32_t)(x.nbytes / (uint32_t)f.dims[1]),
        .depth = f.dims[1],
        .input_offset = -x.zero_point,
        .filter = (const int8_t *)sciot_tensor_data(c, o->in[1]),
        .bias = bias_data(c, o),
        .multiplier = params,
        .shift = params + 4u * (uint32_t)f.dims[0],
        .output = (int8_t *)sciot_tensor_out(c, o->out[0]),
        .out_c = f.dims[0],
        .output_offset = y.zero_point,
        .act_min = o->act_min,
        .act_max = o->act_max,
        .rounding = o->rounding,
    };
    sciot_fully_connected_s8(&p);
}
