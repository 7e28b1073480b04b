/* The record checks every op family's bindings share (blob.h). */
#include "blob.h"

bool sciot_act_in(const sciot_model *m, uint16_t i, uint8_t dtype, sciot_tensor_rec *t)
{
    if (i >= m->num_tensors) {
        return false;
    }
    sciot_read_tensor(m, i, t);
    return t->kind == SCIOT_KIND_ACTIVATION && t->dtype == dtype;
}

bool sciot_act_out(const sciot_model *m, uint16_t i, uint8_t dtype, sciot_tensor_rec *t)
{
    return sciot_act_in(m, i, dtype, t) && t->location != SCIOT_NOWHERE;
}

bool sciot_const_of(const sciot_model *m, uint16_t i, uint8_t dtype, sciot_tensor_rec *t)
{
    if (i >= m->num_tensors) {
        return false;
    }
    sciot_read_tensor(m, i, t);
    return t->kind == SCIOT_KIND_CONSTANT && t->dtype == dtype;
}

bool sciot_operands(const sciot_op_rec *o, unsigned inputs, unsigned outputs)
{
    return o->num_in == inputs && o->num_out == outputs;
}

bool sciot_act_range_ok(const sciot_op_rec *o)
{
    return o->act_min >= -128 && o->act_max <= 127 && o->act_min <= o->act_max;
}

bool sciot_params_ok(const sciot_model *m, const sciot_op_rec *o, uint32_t len)
{
    return o->params_len == len && sciot_in_blob(m, o->params_off, len);
}

bool sciot_shifts_ok(const uint8_t *shifts, uint32_t n, int lo, int hi)
{
    for (uint32_t k = 0; k < n; ++k) {
        int32_t s = sciot_rd_i32(shifts + 4 * k);
        if (s < lo || s > hi) {
            return false;
        }
    }
    return true;
}

int sciot_max_shift(uint8_t rounding)
{
    return rounding == SCIOT_ROUND_SINGLE ? 7 : 30;
}

uint32_t sciot_elements(const sciot_tensor_rec *t)
{
    uint32_t n = 1;
    for (unsigned d = 0; d < t->ndims && d < 4; ++d) {
        n *= (uint32_t)t->dims[d];
    }
    return n;
}

void sciot_dims4(const sciot_tensor_rec *t, int32_t d[4])
{
    const unsigned lead = 4u - t->ndims;
    for (unsigned k = 0; k < 4; ++k) {
        d[k] = k < lead ? 1 : t->dims[k - lead];
    }
}
