/*
 * The sciot model blob: checked once in sciot_model_open(), then read in place.
 * Layout: sciot_mqtt/models/export/format.py documents every field.
 */
#include "sciot_ops.h"

#include "kernels.h"

#define HEADER_BYTES 96u
#define TENSOR_BYTES 40u
#define OP_BYTES 48u
#define NO_TENSOR 0xffffu
#define NOWHERE 0xffffffffu

enum { KIND_UNUSED = 0, KIND_ACTIVATION = 1, KIND_CONSTANT = 2 };

/* The blob's element type codes (export/format.py `DTYPE_CODES`); sciot_dtype is the API's. */
enum {
    BLOB_DTYPE_INT8 = 1,
    BLOB_DTYPE_UINT8 = 2,
    BLOB_DTYPE_INT16 = 3,
    BLOB_DTYPE_INT32 = 4,
    BLOB_DTYPE_FLOAT32 = 5
};

/* A blob tensor's dims fit the API's shape. */
typedef char model_dims_fit_a_tensor[SCIOT_MODEL_MAX_DIMS <= SCIOT_MAX_DIMS ? 1 : -1];

/* A view of one tensor record. */
typedef struct {
    uint8_t dtype, ndims, kind;
    int32_t dims[4];
    uint32_t nbytes, location;
    float scale;
    int32_t zero_point;
} tensor_rec;

/* A view of one op record. */
typedef struct {
    uint8_t type, rounding, num_in, num_out;
    uint16_t in[4], out[2];
    uint8_t stride_w, stride_h, dil_w, dil_h;
    int32_t pad_w, pad_h;
    uint16_t depth_multiplier;
    int32_t act_min, act_max;
    uint32_t params_off, params_len;
} op_rec;

static int16_t rd_i16(const uint8_t *p)
{
    uint16_t u = sciot_rd_u16(p);
    return u <= 0x7fffu ? (int16_t)u : (int16_t)(-(int32_t)(uint16_t)~u - 1);
}

static void read_tensor(const sciot_model *m, unsigned i, tensor_rec *t)
{
    const uint8_t *p = m->_blob + m->_off_tensors + (size_t)i * TENSOR_BYTES;
    t->dtype = p[0];
    t->ndims = p[1];
    t->kind = p[2];
    for (unsigned d = 0; d < 4; ++d) {
        t->dims[d] = sciot_rd_i32(p + 4 + 4 * d);
    }
    t->nbytes = sciot_rd_u32(p + 20);
    t->location = sciot_rd_u32(p + 24);
    t->scale = sciot_rd_f32(p + 28);
    t->zero_point = sciot_rd_i32(p + 32);
}

static void read_op(const sciot_model *m, unsigned i, op_rec *o)
{
    const uint8_t *p = m->_blob + m->_off_ops + (size_t)i * OP_BYTES;
    o->type = p[0];
    o->rounding = p[1];
    o->num_in = p[2];
    o->num_out = p[3];
    for (unsigned k = 0; k < 4; ++k) {
        o->in[k] = sciot_rd_u16(p + 4 + 2 * k);
    }
    o->out[0] = sciot_rd_u16(p + 12);
    o->out[1] = sciot_rd_u16(p + 14);
    o->stride_w = p[16];
    o->stride_h = p[17];
    o->dil_w = p[18];
    o->dil_h = p[19];
    o->pad_w = rd_i16(p + 20);
    o->pad_h = rd_i16(p + 22);
    o->depth_multiplier = sciot_rd_u16(p + 24);
    o->act_min = sciot_rd_i32(p + 28);
    o->act_max = sciot_rd_i32(p + 32);
    o->params_off = sciot_rd_u32(p + 36);
    o->params_len = sciot_rd_u32(p + 40);
}

static unsigned dtype_size(uint8_t dtype)
{
    switch (dtype) {
    case BLOB_DTYPE_INT8:
    case BLOB_DTYPE_UINT8: return 1;
    case BLOB_DTYPE_INT16: return 2;
    case BLOB_DTYPE_INT32:
    case BLOB_DTYPE_FLOAT32: return 4;
    default: return 0;
    }
}

/* Only for a code dtype_size() accepts, as sciot_model_open() checked for every tensor. */
static sciot_dtype api_dtype(uint8_t dtype)
{
    switch (dtype) {
    case BLOB_DTYPE_UINT8: return SCIOT_DTYPE_UINT8;
    case BLOB_DTYPE_INT16: return SCIOT_DTYPE_INT16;
    case BLOB_DTYPE_INT32: return SCIOT_DTYPE_INT32;
    case BLOB_DTYPE_FLOAT32: return SCIOT_DTYPE_FLOAT32;
    default: return SCIOT_DTYPE_INT8;
    }
}

static bool in_blob(const sciot_model *m, uint32_t off, uint32_t len)
{
    return off <= m->_len && len <= m->_len - off;
}

static bool fail(sciot_model *m, sciot_model_err err)
{
    m->error = err;
    return false;
}

static const uint8_t *boundary_list(const sciot_model *m, unsigned split)
{
    return m->_blob + sciot_rd_u32(m->_blob + m->_off_bounds + 4 * split);
}

/* -- checks at open ---------------------------------------------------------------- */

static bool check_tensor(const sciot_model *m, unsigned i)
{
    tensor_rec t;
    read_tensor(m, i, &t);
    if (t.kind == KIND_UNUSED) {
        return true;
    }
    unsigned size = dtype_size(t.dtype);
    if (size == 0 || t.ndims > SCIOT_MODEL_MAX_DIMS || t.nbytes > 0x7fffffffu) {
        return false;
    }
    uint64_t elems = 1;
    for (unsigned d = 0; d < t.ndims; ++d) {
        if (t.dims[d] < 1) {
            return false;
        }
        elems *= (uint64_t)t.dims[d];
        if (elems > 0x7fffffffu) {
            return false;
        }
    }
    if (elems * size != t.nbytes) {
        return false;
    }
    if ((t.dtype == BLOB_DTYPE_INT8 && (t.zero_point < -128 || t.zero_point > 127)) ||
        (t.dtype == BLOB_DTYPE_UINT8 && (t.zero_point < 0 || t.zero_point > 255))) {
        return false;
    }
    if (t.kind == KIND_CONSTANT) {
        return in_blob(m, t.location, t.nbytes);
    }
    if (t.kind == KIND_ACTIVATION) {
        return t.location == NOWHERE ||
               (t.location <= m->_arena_size && t.nbytes <= m->_arena_size - t.location);
    }
    return false;
}

/* Activation int8 4-D tensor of batch 1. */
static bool is_act8_4d(const sciot_model *m, uint16_t i, tensor_rec *t)
{
    if (i >= m->num_tensors) {
        return false;
    }
    read_tensor(m, i, t);
    return t->kind == KIND_ACTIVATION && t->dtype == BLOB_DTYPE_INT8 && t->ndims == 4 &&
           t->dims[0] == 1;
}

static bool check_shifts(const uint8_t *shifts, uint32_t n, int lo, int hi)
{
    for (uint32_t k = 0; k < n; ++k) {
        int32_t s = sciot_rd_i32(shifts + 4 * k);
        if (s < lo || s > hi) {
            return false;
        }
    }
    return true;
}

/* Shift range each rounding is defined for (ruy: -31..7; TFLite: left shift <= 30). */
static int max_shift(uint8_t rounding)
{
    return rounding == SCIOT_ROUND_SINGLE ? 7 : 30;
}

static sciot_model_err check_conv(const sciot_model *m, const op_rec *o)
{
    tensor_rec x, f, b, y;
    if (o->num_in < 2 || o->num_in > 3 || o->num_out != 1) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    if (!is_act8_4d(m, o->in[0], &x) || !is_act8_4d(m, o->out[0], &y) || y.location == NOWHERE ||
        o->in[1] >= m->num_tensors) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    read_tensor(m, o->in[1], &f);
    if (f.kind != KIND_CONSTANT || f.dtype != BLOB_DTYPE_INT8 || f.ndims != 4) {
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
    if (o->num_in == 3 && o->in[2] != NO_TENSOR) {
        if (o->in[2] >= m->num_tensors) {
            return SCIOT_MODEL_E_MALFORMED;
        }
        read_tensor(m, o->in[2], &b);
        if (b.kind != KIND_CONSTANT || b.dtype != BLOB_DTYPE_INT32 ||
            b.nbytes != 4u * (uint32_t)oc) {
            return SCIOT_MODEL_E_MALFORMED;
        }
    }
    if (o->stride_w < 1 || o->stride_h < 1 || o->dil_w < 1 || o->dil_h < 1 || o->pad_w < 0 ||
        o->pad_h < 0 || o->rounding > SCIOT_ROUND_DOUBLE_TIES_UP || o->act_min < -128 ||
        o->act_max > 127 || o->act_min > o->act_max) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    if (o->params_len != 8u * (uint32_t)oc || !in_blob(m, o->params_off, o->params_len) ||
        !check_shifts(m->_blob + o->params_off + 4u * (uint32_t)oc, (uint32_t)oc, -31,
                      max_shift(o->rounding))) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

static sciot_model_err check_add(const sciot_model *m, const op_rec *o)
{
    tensor_rec a, b, y;
    if (o->num_in != 2 || o->num_out != 1 || o->in[0] >= m->num_tensors ||
        o->in[1] >= m->num_tensors || o->out[0] >= m->num_tensors) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    read_tensor(m, o->in[0], &a);
    read_tensor(m, o->in[1], &b);
    read_tensor(m, o->out[0], &y);
    if (a.kind != KIND_ACTIVATION || b.kind != KIND_ACTIVATION || y.kind != KIND_ACTIVATION ||
        y.location == NOWHERE || a.dtype != BLOB_DTYPE_INT8 || b.dtype != BLOB_DTYPE_INT8 ||
        y.dtype != BLOB_DTYPE_INT8 || a.nbytes != y.nbytes || b.nbytes != y.nbytes) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    if (o->params_len != 28u || !in_blob(m, o->params_off, 28u) || o->act_min < -128 ||
        o->act_max > 127 || o->act_min > o->act_max || o->rounding > SCIOT_ROUND_DOUBLE_TIES_UP) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    const uint8_t *p = m->_blob + o->params_off;
    int32_t left = sciot_rd_i32(p);
    int hi = max_shift(o->rounding);
    if (left < 0 || left > 24 || !check_shifts(p + 8, 1, -31, hi) ||
        !check_shifts(p + 16, 1, -31, hi) || !check_shifts(p + 24, 1, -31, hi)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

static sciot_model_err check_softmax(const sciot_model *m, const op_rec *o)
{
    tensor_rec x, y;
    if (o->num_in != 1 || o->num_out != 1 || o->in[0] >= m->num_tensors ||
        o->out[0] >= m->num_tensors) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    read_tensor(m, o->in[0], &x);
    read_tensor(m, o->out[0], &y);
    if (x.kind != KIND_ACTIVATION || y.kind != KIND_ACTIVATION || y.location == NOWHERE ||
        x.dtype != BLOB_DTYPE_INT8 || y.dtype != BLOB_DTYPE_INT8 || x.nbytes != y.nbytes ||
        x.ndims < 1 || x.ndims != y.ndims || x.dims[x.ndims - 1] != y.dims[y.ndims - 1] ||
        !(y.scale > 0.0f)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    if (o->params_len != 1024u || !in_blob(m, o->params_off, 1024u)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return SCIOT_MODEL_OK;
}

static sciot_model_err check_op(const sciot_model *m, unsigned i)
{
    op_rec o;
    read_op(m, i, &o);
    switch (o.type) {
    case SCIOT_OP_CONV_2D:
    case SCIOT_OP_DEPTHWISE_CONV_2D: return check_conv(m, &o);
    case SCIOT_OP_ADD: return check_add(m, &o);
    case SCIOT_OP_SOFTMAX: return check_softmax(m, &o);
    default: return SCIOT_MODEL_E_UNSUPPORTED;
    }
}

static bool check_boundary(const sciot_model *m, unsigned split)
{
    uint32_t off = sciot_rd_u32(m->_blob + m->_off_bounds + 4 * split);
    if (!in_blob(m, off, 2)) {
        return false;
    }
    const uint8_t *p = m->_blob + off;
    unsigned count = sciot_rd_u16(p);
    if (count > SCIOT_MAX_BOUNDARY_TENSORS || !in_blob(m, off, 2 + 2 * count)) {
        return false;
    }
    for (unsigned k = 0; k < count; ++k) {
        uint16_t t = sciot_rd_u16(p + 2 + 2 * k);
        tensor_rec rec;
        if (t >= m->num_tensors) {
            return false;
        }
        read_tensor(m, t, &rec);
        if (rec.kind != KIND_ACTIVATION) {
            return false;
        }
        for (unsigned j = 0; j < k; ++j) {
            if (sciot_rd_u16(p + 2 + 2 * j) == t) {
                return false;
            }
        }
    }
    return true;
}

bool sciot_model_open(sciot_model *m, const uint8_t *blob, size_t len)
{
    if (m == 0) {
        return false;
    }
    *m = (sciot_model){0};
    if (blob == 0) {
        return fail(m, SCIOT_MODEL_E_ARG);
    }
    if (len < 8) {
        return fail(m, SCIOT_MODEL_E_TRUNCATED);
    }
    if (blob[0] != 'S' || blob[1] != 'C' || blob[2] != 'M' || blob[3] != 'B') {
        return fail(m, SCIOT_MODEL_E_MAGIC);
    }
    m->version = sciot_rd_u16(blob + 4);
    if (m->version != SCIOT_MODEL_VERSION) {
        return fail(m, SCIOT_MODEL_E_VERSION);
    }
    if (len < HEADER_BYTES || sciot_rd_u16(blob + 6) != HEADER_BYTES ||
        sciot_rd_u32(blob + 8) > len) {
        return fail(m, SCIOT_MODEL_E_TRUNCATED);
    }
    m->_blob = blob;
    m->_len = sciot_rd_u32(blob + 8);
    m->num_tensors = sciot_rd_u16(blob + 12);
    m->num_ops = sciot_rd_u16(blob + 14);
    m->_arena_size = sciot_rd_u32(blob + 16);
    m->_off_tensors = sciot_rd_u32(blob + 20);
    m->_off_ops = sciot_rd_u32(blob + 24);
    m->_off_bounds = sciot_rd_u32(blob + 28);
    for (unsigned k = 0; k < 32; ++k) {
        m->sha256[k] = blob[32 + k];
        m->model_id[k] = (char)blob[64 + k];
    }
    m->model_id[31] = '\0';
    if (m->num_ops == 0 || m->num_tensors == 0 || m->_arena_size > 0x7fffffffu) {
        return fail(m, SCIOT_MODEL_E_MALFORMED);
    }
    if (!in_blob(m, m->_off_tensors, m->num_tensors * TENSOR_BYTES) ||
        !in_blob(m, m->_off_ops, m->num_ops * OP_BYTES) ||
        !in_blob(m, m->_off_bounds, 4u * (m->num_ops + 1))) {
        return fail(m, SCIOT_MODEL_E_TRUNCATED);
    }
    for (unsigned i = 0; i < m->num_tensors; ++i) {
        if (!check_tensor(m, i)) {
            return fail(m, SCIOT_MODEL_E_MALFORMED);
        }
    }
    for (unsigned i = 0; i < m->num_ops; ++i) {
        sciot_model_err err = check_op(m, i);
        if (err != SCIOT_MODEL_OK) {
            return fail(m, err);
        }
    }
    for (unsigned s = 0; s <= m->num_ops; ++s) {
        if (!check_boundary(m, s)) {
            return fail(m, SCIOT_MODEL_E_MALFORMED);
        }
    }
    m->error = SCIOT_MODEL_OK;
    return true;
}

const char *sciot_model_strerror(sciot_model_err err)
{
    switch (err) {
    case SCIOT_MODEL_OK: return "ok";
    case SCIOT_MODEL_E_ARG: return "invalid argument";
    case SCIOT_MODEL_E_MAGIC: return "not a sciot model blob";
    case SCIOT_MODEL_E_VERSION: return "unsupported sciot model blob version";
    case SCIOT_MODEL_E_TRUNCATED: return "sciot model blob truncated";
    case SCIOT_MODEL_E_MALFORMED: return "malformed sciot model blob";
    case SCIOT_MODEL_E_UNSUPPORTED: return "unsupported operator";
    case SCIOT_MODEL_E_IO: return "boundary tensors missing or of the wrong size";
    case SCIOT_MODEL_E_ARENA: return "arena too small";
    }
    return "unknown error";
}

/* -- queries ----------------------------------------------------------------------- */

static bool opened(const sciot_model *m)
{
    return m != 0 && m->_blob != 0 && m->error == SCIOT_MODEL_OK;
}

sciot_op_type sciot_model_op_type(const sciot_model *m, unsigned op)
{
    if (!opened(m) || op >= m->num_ops) {
        return (sciot_op_type)0;
    }
    return (sciot_op_type)m->_blob[m->_off_ops + (size_t)op * OP_BYTES];
}

const char *sciot_model_op_name(const sciot_model *m, unsigned op)
{
    switch (sciot_model_op_type(m, op)) {
    case SCIOT_OP_CONV_2D: return "CONV_2D";
    case SCIOT_OP_DEPTHWISE_CONV_2D: return "DEPTHWISE_CONV_2D";
    case SCIOT_OP_ADD: return "ADD";
    case SCIOT_OP_SOFTMAX: return "SOFTMAX";
    }
    return 0;
}

unsigned sciot_model_boundary_count(const sciot_model *m, unsigned split)
{
    if (!opened(m) || split > m->num_ops) {
        return 0;
    }
    return sciot_rd_u16(boundary_list(m, split));
}

static uint16_t boundary_index(const sciot_model *m, unsigned split, unsigned k)
{
    return sciot_rd_u16(boundary_list(m, split) + 2 + 2 * k);
}

bool sciot_model_boundary_tensor(const sciot_model *m, unsigned split, unsigned k,
                                 sciot_tensor *out)
{
    if (out == 0 || k >= sciot_model_boundary_count(m, split)) {
        return false;
    }
    tensor_rec t;
    uint16_t index = boundary_index(m, split, k);
    read_tensor(m, index, &t);
    out->index = index;
    out->dtype = (uint8_t)api_dtype(t.dtype);
    out->ndim = t.ndims;
    for (unsigned d = 0; d < SCIOT_MAX_DIMS; ++d) {
        out->shape[d] = d < t.ndims && d < SCIOT_MODEL_MAX_DIMS ? t.dims[d] : 0;
    }
    out->nbytes = t.nbytes;
    out->scale = (double)t.scale;
    out->zero_point = t.zero_point;
    out->data = 0;
    return true;
}

bool sciot_model_boundary_matches(const sciot_model *m, unsigned split, const sciot_tensor *list,
                                  unsigned n)
{
    if (!opened(m) || split > m->num_ops || (n > 0 && list == 0)) {
        return false;
    }
    unsigned count = sciot_model_boundary_count(m, split);
    if (n != count) {
        return false;
    }
    for (unsigned k = 0; k < count; ++k) {
        uint16_t index = boundary_index(m, split, k);
        tensor_rec t;
        read_tensor(m, index, &t);
        unsigned seen = 0;
        for (unsigned j = 0; j < n; ++j) {
            if (list[j].index == index) {
                if (list[j].nbytes != t.nbytes || list[j].data == 0) {
                    return false;
                }
                ++seen;
            }
        }
        if (seen != 1) {
            return false;
        }
    }
    return true;
}

size_t sciot_model_boundary_bytes(const sciot_model *m, unsigned split)
{
    size_t total = 0;
    unsigned count = sciot_model_boundary_count(m, split);
    for (unsigned k = 0; k < count; ++k) {
        tensor_rec t;
        read_tensor(m, boundary_index(m, split, k), &t);
        total += t.nbytes;
    }
    return total;
}

size_t sciot_model_arena_size(const sciot_model *m)
{
    return opened(m) ? m->_arena_size : 0;
}

/* -- run --------------------------------------------------------------------------- */

/* The tensors live at the start (inputs) and at the stop (outputs) of a run. */
typedef struct {
    const sciot_tensor *inputs;
    unsigned num_inputs;
    const sciot_tensor *outputs;
    unsigned num_outputs;
} run_io;

typedef struct {
    const sciot_model *m;
    const run_io *io;
    uint8_t *arena;
} run_ctx;

static const sciot_tensor *find(const sciot_tensor *list, unsigned n, uint32_t index)
{
    for (unsigned k = 0; k < n; ++k) {
        if (list[k].index == index) {
            return &list[k];
        }
    }
    return 0;
}

static const sciot_tensor *find_out(const run_io *io, uint32_t index)
{
    return find(io->outputs, io->num_outputs, index);
}

static const sciot_tensor *find_in(const run_io *io, uint32_t index)
{
    return find(io->inputs, io->num_inputs, index);
}

/* Where a tensor lives during this run: outputs at stop in the caller's buffers (so an
 * op inside the range that reads one reads it there), inputs at start in the caller's,
 * constants in the blob, everything else in the arena at its planned offset. */
static const uint8_t *tensor_data(const run_ctx *c, uint16_t index)
{
    const sciot_tensor *o = find_out(c->io, index);
    if (o != 0) {
        return (const uint8_t *)o->data;
    }
    const sciot_tensor *i = find_in(c->io, index);
    if (i != 0) {
        return (const uint8_t *)i->data;
    }
    tensor_rec t;
    read_tensor(c->m, index, &t);
    if (t.kind == KIND_CONSTANT) {
        return c->m->_blob + t.location;
    }
    return c->arena + t.location;
}

static int8_t *tensor_out(const run_ctx *c, uint16_t index)
{
    const sciot_tensor *o = find_out(c->io, index);
    if (o != 0) {
        return (int8_t *)o->data;
    }
    tensor_rec t;
    read_tensor(c->m, index, &t);
    return (int8_t *)(c->arena + t.location);
}

static void run_conv(const run_ctx *c, const op_rec *o)
{
    tensor_rec x, f, y;
    read_tensor(c->m, o->in[0], &x);
    read_tensor(c->m, o->in[1], &f);
    read_tensor(c->m, o->out[0], &y);
    const uint8_t *params = c->m->_blob + o->params_off;
    sciot_conv_params p = {
        .input = (const int8_t *)tensor_data(c, o->in[0]),
        .in_h = x.dims[1],
        .in_w = x.dims[2],
        .in_c = x.dims[3],
        .input_offset = -x.zero_point,
        .filter = (const int8_t *)(c->m->_blob + f.location),
        .k_h = f.dims[1],
        .k_w = f.dims[2],
        .bias = (o->num_in == 3 && o->in[2] != NO_TENSOR) ? tensor_data(c, o->in[2]) : 0,
        .multiplier = params,
        .shift = params + 4u * (uint32_t)y.dims[3],
        .output = tensor_out(c, o->out[0]),
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
    } else {
        sciot_depthwise_conv2d_s8(&p);
    }
}

static void run_add(const run_ctx *c, const op_rec *o)
{
    tensor_rec a, b, y;
    read_tensor(c->m, o->in[0], &a);
    read_tensor(c->m, o->in[1], &b);
    read_tensor(c->m, o->out[0], &y);
    const uint8_t *params = c->m->_blob + o->params_off;
    sciot_add_params p = {
        .input1 = (const int8_t *)tensor_data(c, o->in[0]),
        .input2 = (const int8_t *)tensor_data(c, o->in[1]),
        .output = tensor_out(c, o->out[0]),
        .count = y.nbytes,
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
    };
    sciot_add_s8(&p);
}

static void run_softmax(const run_ctx *c, const op_rec *o)
{
    tensor_rec y;
    read_tensor(c->m, o->out[0], &y);
    const uint32_t depth = (uint32_t)y.dims[y.ndims - 1];
    sciot_softmax_params p = {
        .input = (const int8_t *)tensor_data(c, o->in[0]),
        .output = tensor_out(c, o->out[0]),
        .rows = y.nbytes / depth,
        .depth = depth,
        .table = c->m->_blob + o->params_off,
        .output_scale = y.scale,
        .output_zero_point = y.zero_point,
    };
    sciot_softmax_s8(&p);
}

static bool produced_in(const sciot_model *m, uint16_t index, unsigned from, unsigned to)
{
    for (unsigned i = from; i < to; ++i) {
        op_rec o;
        read_op(m, i, &o);
        for (unsigned k = 0; k < o.num_out && k < 2; ++k) {
            if (o.out[k] == index) {
                return true;
            }
        }
    }
    return false;
}

/* Every activation an op of the range reads comes from the caller or from an earlier op
 * of the range, and every tensor owed at stop is made or passed through. A blob from the
 * exporter always satisfies this (it is what liveness means); a damaged one might not, and
 * would otherwise read an unplanned arena slot. */
static bool range_consistent(const sciot_model *m, unsigned start, unsigned stop, const run_io *io)
{
    for (unsigned i = start; i < stop; ++i) {
        op_rec o;
        read_op(m, i, &o);
        for (unsigned k = 0; k < o.num_in && k < 4; ++k) {
            tensor_rec t;
            if (o.in[k] == NO_TENSOR) {
                continue;
            }
            read_tensor(m, o.in[k], &t);
            if (t.kind == KIND_ACTIVATION && find_in(io, o.in[k]) == 0 &&
                !produced_in(m, o.in[k], start, i)) {
                return false;
            }
        }
    }
    for (unsigned k = 0; k < io->num_outputs; ++k) {
        uint16_t index = (uint16_t)io->outputs[k].index;
        if (find_in(io, index) == 0 && !produced_in(m, index, start, stop)) {
            return false;
        }
    }
    return true;
}

sciot_model_err sciot_model_run(const sciot_model *m, unsigned start_op, unsigned stop_op,
                                const sciot_tensor *inputs, unsigned num_inputs,
                                sciot_tensor *outputs, unsigned num_outputs, uint8_t *arena,
                                size_t arena_len, const sciot_op_timer *timer)
{
    if (!opened(m) || start_op > stop_op || stop_op > m->num_ops ||
        (num_inputs > 0 && inputs == 0) || (num_outputs > 0 && outputs == 0)) {
        return SCIOT_MODEL_E_ARG;
    }
    if (start_op < stop_op && (arena_len < m->_arena_size || (arena == 0 && m->_arena_size))) {
        return SCIOT_MODEL_E_ARENA;
    }
    if (!sciot_model_boundary_matches(m, start_op, inputs, num_inputs) ||
        !sciot_model_boundary_matches(m, stop_op, outputs, num_outputs)) {
        return SCIOT_MODEL_E_IO;
    }
    const run_io ios = {inputs, num_inputs, outputs, num_outputs};
    const run_io *io = &ios;
    if (!range_consistent(m, start_op, stop_op, io)) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    /* Tensors live across the whole range pass straight through. */
    for (unsigned k = 0; k < num_outputs; ++k) {
        const sciot_tensor *in = find_in(io, outputs[k].index);
        if (in != 0 && in->data != outputs[k].data) {
            const uint8_t *src = (const uint8_t *)in->data;
            uint8_t *dst = (uint8_t *)outputs[k].data;
            for (size_t b = 0; b < in->nbytes; ++b) {
                dst[b] = src[b];
            }
        }
    }
    run_ctx c = {m, io, arena};
    for (unsigned i = start_op; i < stop_op; ++i) {
        op_rec o;
        read_op(m, i, &o);
        uint64_t t0 = (timer != 0 && timer->now != 0) ? timer->now(timer->ctx) : 0;
        switch (o.type) {
        case SCIOT_OP_CONV_2D:
        case SCIOT_OP_DEPTHWISE_CONV_2D: run_conv(&c, &o); break;
        case SCIOT_OP_ADD: run_add(&c, &o); break;
        case SCIOT_OP_SOFTMAX: run_softmax(&c, &o); break;
        default:
            return SCIOT_MODEL_E_UNSUPPORTED; /* unreachable: sciot_model_open checked every op */
        }
        if (timer != 0 && timer->op_done != 0) {
            uint64_t t1 = timer->now != 0 ? timer->now(timer->ctx) : 0;
            timer->op_done(timer->ctx, i, t0, t1);
        }
    }
    return SCIOT_MODEL_OK;
}
