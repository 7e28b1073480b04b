/*
 * Inside sciot_ops: the blob's records as the reader sees them, and the op table through
 * which model.c checks (at open) and runs (in sciot_model_run) each operator.
 *
 * Layout: sciot_mqtt/models/export/format.py documents every field. Each op family has a
 * file of bindings (ops_conv.c, ops_elementwise.c, ops_pool.c, ops_shape.c) that checks a
 * record against its tensors and turns it into the kernel's parameters (kernels.h).
 */
#ifndef SCIOT_BLOB_H
#define SCIOT_BLOB_H

#include "kernels.h"
#include "sciot_ops.h"

#define SCIOT_BLOB_HEADER_BYTES 96u
#define SCIOT_BLOB_TENSOR_BYTES 40u
#define SCIOT_BLOB_OP_BYTES 48u
#define SCIOT_NO_TENSOR 0xffffu
#define SCIOT_NOWHERE 0xffffffffu

enum { SCIOT_KIND_UNUSED = 0, SCIOT_KIND_ACTIVATION = 1, SCIOT_KIND_CONSTANT = 2 };

/* The blob's element type codes (export/format.py `DTYPE_CODES`); sciot_dtype is the API's. */
enum {
    SCIOT_BLOB_INT8 = 1,
    SCIOT_BLOB_UINT8 = 2,
    SCIOT_BLOB_INT16 = 3,
    SCIOT_BLOB_INT32 = 4,
    SCIOT_BLOB_FLOAT32 = 5
};

/* A view of one tensor record. */
typedef struct {
    uint8_t dtype, ndims, kind;
    int32_t dims[4];
    uint32_t nbytes, location;
    float scale;
    int32_t zero_point;
} sciot_tensor_rec;

/* A view of one op record. */
typedef struct {
    uint8_t type, rounding, num_in, num_out;
    uint16_t in[4], out[2];
    uint8_t stride_w, stride_h, dil_w, dil_h;
    int32_t pad_w, pad_h;
    uint16_t depth_multiplier;
    int32_t act_min, act_max;
    uint32_t params_off, params_len;
} sciot_op_rec;

void sciot_read_tensor(const sciot_model *m, unsigned i, sciot_tensor_rec *t);
void sciot_read_op(const sciot_model *m, unsigned i, sciot_op_rec *o);
/* [off, off + len) lies inside the blob. */
bool sciot_in_blob(const sciot_model *m, uint32_t off, uint32_t len);

/* -- checks the bindings share --------------------------------------------------------- */

/* Tensor `i` exists, is an activation of `dtype` and (out) is placed where an op can write
 * it; `t` receives its record. */
bool sciot_act_in(const sciot_model *m, uint16_t i, uint8_t dtype, sciot_tensor_rec *t);
bool sciot_act_out(const sciot_model *m, uint16_t i, uint8_t dtype, sciot_tensor_rec *t);
/* Tensor `i` exists and is a constant of `dtype`. */
bool sciot_const_of(const sciot_model *m, uint16_t i, uint8_t dtype, sciot_tensor_rec *t);
/* The record's operand counts are exactly these. */
bool sciot_operands(const sciot_op_rec *o, unsigned inputs, unsigned outputs);
/* The fused activation bounds are an int8 range. */
bool sciot_act_range_ok(const sciot_op_rec *o);
/* The op's parameters are exactly `len` bytes inside the blob. */
bool sciot_params_ok(const sciot_model *m, const sciot_op_rec *o, uint32_t len);
/* Every int32 shift in shifts[0..n) lies in [lo, hi]. */
bool sciot_shifts_ok(const uint8_t *shifts, uint32_t n, int lo, int hi);
/* Largest left shift each rounding is defined for (ruy: 7; TFLite: 30). */
int sciot_max_shift(uint8_t rounding);
/* Element count of a record's dims. */
uint32_t sciot_elements(const sciot_tensor_rec *t);
/* A record's dims right-aligned into four, leading ones (a scalar is 1x1x1x1). */
void sciot_dims4(const sciot_tensor_rec *t, int32_t d[4]);

/* -- running ------------------------------------------------------------------------- */

/* The tensors live at the start (inputs) and at the stop (outputs) of a run. */
typedef struct {
    const sciot_tensor *inputs;
    unsigned num_inputs;
    const sciot_tensor *outputs;
    unsigned num_outputs;
} sciot_run_io;

typedef struct {
    const sciot_model *m;
    const sciot_run_io *io;
    uint8_t *arena;
} sciot_run_ctx;

/* Where tensor `index` is read from / written to during this run. */
const uint8_t *sciot_tensor_data(const sciot_run_ctx *c, uint16_t index);
uint8_t *sciot_tensor_out(const sciot_run_ctx *c, uint16_t index);
/* The op's parameters. */
static inline const uint8_t *sciot_params(const sciot_run_ctx *c, const sciot_op_rec *o)
{
    return c->m->_blob + o->params_off;
}

/* -- the op table -------------------------------------------------------------------- */

typedef sciot_model_err (*sciot_op_check)(const sciot_model *m, const sciot_op_rec *o);
typedef void (*sciot_op_run)(const sciot_run_ctx *c, const sciot_op_rec *o);

typedef struct {
    uint8_t type; /* sciot_op_type */
    const char *name;
    sciot_op_check check; /* at sciot_model_open: SCIOT_MODEL_OK or why not */
    sciot_op_run run;     /* only on a record check() accepted */
} sciot_op_kind;

/* The kind of op type `type`, or NULL for one this library does not implement. */
const sciot_op_kind *sciot_op_kind_of(uint8_t type);

/* Bindings, by family. */
sciot_model_err sciot_check_conv(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_conv(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_fully_connected(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_fully_connected(const sciot_run_ctx *c, const sciot_op_rec *o);

sciot_model_err sciot_check_add(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_add(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_mul(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_mul(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_hard_swish(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_hard_swish(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_lookup(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_lookup(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_quantize(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_quantize(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_dequantize(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_dequantize(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_softmax(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_softmax(const sciot_run_ctx *c, const sciot_op_rec *o);

sciot_model_err sciot_check_pool(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_pool(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_mean(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_mean(const sciot_run_ctx *c, const sciot_op_rec *o);

sciot_model_err sciot_check_reshape(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_reshape(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_concat(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_concat(const sciot_run_ctx *c, const sciot_op_rec *o);
sciot_model_err sciot_check_pad(const sciot_model *m, const sciot_op_rec *o);
void sciot_run_pad(const sciot_run_ctx *c, const sciot_op_rec *o);

#endif /* SCIOT_BLOB_H */
