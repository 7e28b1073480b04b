/*
 * The sciot model blob: checked once in sciot_model_open(), then read in place, and the
 * run loop. Layout: sciot_mqtt/models/export/format.py documents every field; the op
 * records are checked and run through the op table (blob.h) by their family's bindings.
 */
#include "blob.h"

/* A blob tensor's dims fit the API's shape. */
typedef char model_dims_fit_a_tensor[SCIOT_MODEL_MAX_DIMS <= SCIOT_MAX_DIMS ? 1 : -1];

/* Every operator sciot_ops implements, by its sciot_op_type. */
static const sciot_op_kind kinds[] = {
    {SCIOT_OP_CONV_2D, "CONV_2D", sciot_check_conv, sciot_run_conv},
    {SCIOT_OP_DEPTHWISE_CONV_2D, "DEPTHWISE_CONV_2D", sciot_check_conv, sciot_run_conv},
    {SCIOT_OP_ADD, "ADD", sciot_check_add, sciot_run_add},
    {SCIOT_OP_SOFTMAX, "SOFTMAX", sciot_check_softmax, sciot_run_softmax},
    {SCIOT_OP_FULLY_CONNECTED, "FULLY_CONNECTED", sciot_check_fully_connected,
     sciot_run_fully_connected},
    {SCIOT_OP_AVERAGE_POOL_2D, "AVERAGE_POOL_2D", sciot_check_pool, sciot_run_pool},
    {SCIOT_OP_MAX_POOL_2D, "MAX_POOL_2D", sciot_check_pool, sciot_run_pool},
    {SCIOT_OP_MEAN, "MEAN", sciot_check_mean, sciot_run_mean},
    {SCIOT_OP_RESHAPE, "RESHAPE", sciot_check_reshape, sciot_run_reshape},
    {SCIOT_OP_CONCATENATION, "CONCATENATION", sciot_check_concat, sciot_run_concat},
    {SCIOT_OP_MUL, "MUL", sciot_check_mul, sciot_run_mul},
    {SCIOT_OP_PAD, "PAD", sciot_check_pad, sciot_run_pad},
    {SCIOT_OP_PADV2, "PADV2", sciot_check_pad, sciot_run_pad},
    {SCIOT_OP_HARD_SWISH, "HARD_SWISH", sciot_check_hard_swish, sciot_run_hard_swish},
    {SCIOT_OP_LOGISTIC, "LOGISTIC", sciot_check_lookup, sciot_run_lookup},
    {SCIOT_OP_TANH, "TANH", sciot_check_lookup, sciot_run_lookup},
    {SCIOT_OP_QUANTIZE, "QUANTIZE", sciot_check_quantize, sciot_run_quantize},
    {SCIOT_OP_DEQUANTIZE, "DEQUANTIZE", sciot_check_dequantize, sciot_run_dequantize},
};

const sciot_op_kind *sciot_op_kind_of(uint8_t type)
{
    for (unsigned k = 0; k < sizeof kinds / sizeof kinds[0]; ++k) {
        if (kinds[k].type == type) {
            return &kinds[k];
        }
    }
    return 0;
}

static int16_t rd_i16(const uint8_t *p)
{
    uint16_t u = sciot_rd_u16(p);
    return u <= 0x7fffu ? (int16_t)u : (int16_t)(-(int32_t)(uint16_t)~u - 1);
}

void sciot_read_tensor(const sciot_model *m, unsigned i, sciot_tensor_rec *t)
{
    const uint8_t *p = m->_blob + m->_off_tensors + (size_t)i * SCIOT_BLOB_TENSOR_BYTES;
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

void sciot_read_op(const sciot_model *m, unsigned i, sciot_op_rec *o)
{
    const uint8_t *p = m->_blob + m->_off_ops + (size_t)i * SCIOT_BLOB_OP_BYTES;
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
    case SCIOT_BLOB_INT8:
    case SCIOT_BLOB_UINT8: return 1;
    case SCIOT_BLOB_INT16: return 2;
    case SCIOT_BLOB_INT32:
    case SCIOT_BLOB_FLOAT32: return 4;
    default: return 0;
    }
}

/* Only for a code dtype_size() accepts, as sciot_model_open() checked for every tensor. */
static sciot_dtype api_dtype(uint8_t dtype)
{
    switch (dtype) {
    case SCIOT_BLOB_UINT8: return SCIOT_DTYPE_UINT8;
    case SCIOT_BLOB_INT16: return SCIOT_DTYPE_INT16;
    case SCIOT_BLOB_INT32: return SCIOT_DTYPE_INT32;
    case SCIOT_BLOB_FLOAT32: return SCIOT_DTYPE_FLOAT32;
    default: return SCIOT_DTYPE_INT8;
    }
}

bool sciot_in_blob(const sciot_model *m, uint32_t off, uint32_t len)
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
    sciot_tensor_rec t;
    sciot_read_tensor(m, i, &t);
    if (t.kind == SCIOT_KIND_UNUSED) {
        return true;
    }
    unsigned size = dtype_size(t.dtype);
    if (size == 0 || t.ndims > SCIOT_MODEL_MAX_DIMS || t.nbytes > 0x7fffffffu) {
        return false;
    }
    uint64_t elems = 1;
    for (unsigned d = 0; d < 4; ++d) {
        /* Dims past ndims are 0, so that every reader can rely on them. */
        if (d >= t.ndims) {
            if (t.dims[d] != 0) {
                return false;
            }
            continue;
        }
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
    if ((t.dtype == SCIOT_BLOB_INT8 && (t.zero_point < -128 || t.zero_point > 127)) ||
        (t.dtype == SCIOT_BLOB_UINT8 && (t.zero_point < 0 || t.zero_point > 255))) {
        return false;
    }
    if (t.kind == SCIOT_KIND_CONSTANT) {
        return sciot_in_blob(m, t.location, t.nbytes);
    }
    if (t.kind == SCIOT_KIND_ACTIVATION) {
        return t.location == SCIOT_NOWHERE ||
               (t.location <= m->_arena_size && t.nbytes <= m->_arena_size - t.location);
    }
    return false;
}

static sciot_model_err check_op(const sciot_model *m, unsigned i)
{
    sciot_op_rec o;
    sciot_read_op(m, i, &o);
    const sciot_op_kind *kind = sciot_op_kind_of(o.type);
    if (kind == 0) {
        return SCIOT_MODEL_E_UNSUPPORTED;
    }
    /* Operand lists every binding may rely on: named tensors exist, outputs are placed. */
    if (o.num_in > 4 || o.num_out < 1 || o.num_out > 2) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    for (unsigned k = 0; k < o.num_in; ++k) {
        if (o.in[k] != SCIOT_NO_TENSOR && o.in[k] >= m->num_tensors) {
            return SCIOT_MODEL_E_MALFORMED;
        }
    }
    for (unsigned k = 0; k < o.num_out; ++k) {
        sciot_tensor_rec t;
        if (o.out[k] >= m->num_tensors) {
            return SCIOT_MODEL_E_MALFORMED;
        }
        sciot_read_tensor(m, o.out[k], &t);
        if (t.kind != SCIOT_KIND_ACTIVATION || t.location == SCIOT_NOWHERE) {
            return SCIOT_MODEL_E_MALFORMED;
        }
    }
    if (o.rounding > SCIOT_ROUND_DOUBLE_TIES_UP) {
        return SCIOT_MODEL_E_MALFORMED;
    }
    return kind->check(m, &o);
}

static bool check_boundary(const sciot_model *m, unsigned split)
{
    uint32_t off = sciot_rd_u32(m->_blob + m->_off_bounds + 4 * split);
    if (!sciot_in_blob(m, off, 2)) {
        return false;
    }
    const uint8_t *p = m->_blob + off;
    unsigned count = sciot_rd_u16(p);
    if (count > SCIOT_MAX_BOUNDARY_TENSORS || !sciot_in_blob(m, off, 2 + 2 * count)) {
        return false;
    }
    for (unsigned k = 0; k < count; ++k) {
        uint16_t t = sciot_rd_u16(p + 2 + 2 * k);
        sciot_tensor_rec rec;
        if (t >= m->num_tensors) {
            return false;
        }
        sciot_read_tensor(m, t, &rec);
        if (rec.kind != SCIOT_KIND_ACTIVATION) {
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
    if (len < SCIOT_BLOB_HEADER_BYTES || sciot_rd_u16(blob + 6) != SCIOT_BLOB_HEADER_BYTES ||
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
    if (!sciot_in_blob(m, m->_off_tensors, m->num_tensors * SCIOT_BLOB_TENSOR_BYTES) ||
        !sciot_in_blob(m, m->_off_ops, m->num_ops * SCIOT_BLOB_OP_BYTES) ||
        !sciot_in_blob(m, m->_off_bounds, 4u * (m->num_ops + 1))) {
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
    return (sciot_op_type)m->_blob[m->_off_ops + (size_t)op * SCIOT_BLOB_OP_BYTES];
}

const char *sciot_model_op_name(const sciot_model *m, unsigned op)
{
    const sciot_op_kind *kind = sciot_op_kind_of((uint8_t)sciot_model_op_type(m, op));
    return kind != 0 ? kind->name : 0;
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
    sciot_tensor_rec t;
    uint16_t index = boundary_index(m, split, k);
    sciot_read_tensor(m, index, &t);
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
        sciot_tensor_rec t;
        sciot_read_tensor(m, index, &t);
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
        sciot_tensor_rec t;
        sciot_read_tensor(m, boundary_index(m, split, k), &t);
        total += t.nbytes;
    }
    return total;
}

size_t sciot_model_arena_size(const sciot_model *m)
{
    return opened(m) ? m->_arena_size : 0;
}

/* -- run --------------------------------------------------------------------------- */

static const sciot_tensor *find(const sciot_tensor *list, unsigned n, uint32_t index)
{
    for (unsigned k = 0; k < n; ++k) {
        if (list[k].index == index) {
            return &list[k];
        }
    }
    return 0;
}

static const sciot_tensor *find_out(const sciot_run_io *io, uint32_t index)
{
    return find(io->outputs, io->num_outputs, index);
}

static const sciot_tensor *find_in(const sciot_run_io *io, uint32_t index)
{
    return find(io->inputs, io->num_inputs, index);
}

/* Where a tensor lives during this run: outputs at stop in the caller's buffers (so an
 * op inside the range that reads one reads it there), inputs at start in the caller's,
 * constants in the blob, everything else in the arena at its planned offset. */
const uint8_t *sciot_tensor_data(const sciot_run_ctx *c, uint16_t index)
{
    const sciot_tensor *o = find_out(c->io, index);
    if (o != 0) {
        return (const uint8_t *)o->data;
    }
    const sciot_tensor *i = find_in(c->io, index);
    if (i != 0) {
        return (const uint8_t *)i->data;
    }
    sciot_tensor_rec t;
    sciot_read_tensor(c->m, index, &t);
    if (t.kind == SCIOT_KIND_CONSTANT) {
        return c->m->_blob + t.location;
    }
    return c->arena + t.location;
}

uint8_t *sciot_tensor_out(const sciot_run_ctx *c, uint16_t index)
{
    const sciot_tensor *o = find_out(c->io, index);
    if (o != 0) {
        return (uint8_t *)o->data;
    }
    sciot_tensor_rec t;
    sciot_read_tensor(c->m, index, &t);
    return c->arena + t.location;
}

static bool produced_in(const sciot_model *m, uint16_t index, unsigned from, unsigned to)
{
    for (unsigned i = from; i < to; ++i) {
        sciot_op_rec o;
        sciot_read_op(m, i, &o);
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
static bool range_consistent(const sciot_model *m, unsigned start, unsigned stop,
                             const sciot_run_io *io)
{
    for (unsigned i = start; i < stop; ++i) {
        sciot_op_rec o;
        sciot_read_op(m, i, &o);
        for (unsigned k = 0; k < o.num_in && k < 4; ++k) {
            sciot_tensor_rec t;
            if (o.in[k] == SCIOT_NO_TENSOR) {
                continue;
            }
            sciot_read_tensor(m, o.in[k], &t);
            if (t.kind == SCIOT_KIND_ACTIVATION && find_in(io, o.in[k]) == 0 &&
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
    const sciot_run_io ios = {inputs, num_inputs, outputs, num_outputs};
    const sciot_run_io *io = &ios;
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
    sciot_run_ctx c = {m, io, arena};
    for (unsigned i = start_op; i < stop_op; ++i) {
        sciot_op_rec o;
        sciot_read_op(m, i, &o);
        const sciot_op_kind *kind = sciot_op_kind_of(o.type);
        if (kind == 0) {
            return SCIOT_MODEL_E_UNSUPPORTED; /* unreachable: sciot_model_open checked every op */
        }
        uint64_t t0 = (timer != 0 && timer->now != 0) ? timer->now(timer->ctx) : 0;
        kind->run(&c, &o);
        if (timer != 0 && timer->op_done != 0) {
            uint64_t t1 = timer->now != 0 ? timer->now(timer->ctx) : 0;
            timer->op_done(timer->ctx, i, t0, t1);
        }
    }
    return SCIOT_MODEL_OK;
}
