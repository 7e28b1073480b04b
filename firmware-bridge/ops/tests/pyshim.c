/*
 * A flat entry point for ctypes (tests/firmware/test_ops_bitexact.py): boundary tensors
 * go in and out concatenated in the blob's boundary order, so Python needs no structs.
 */
#include <stddef.h>
#include <stdint.h>

#include "sciot_ops.h"

int sct_open(const uint8_t *blob, size_t len);
long sct_arena_size(const uint8_t *blob, size_t len);
int sct_run(const uint8_t *blob, size_t len, unsigned start, unsigned stop, const uint8_t *in,
            size_t in_len, uint8_t *out, size_t out_len, uint8_t *arena, size_t arena_len);
int sct_run_timed(const uint8_t *blob, size_t len, unsigned start, unsigned stop,
                  const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                  uint8_t *arena, size_t arena_len, uint32_t *calls, unsigned max_calls);
int sct_model_info(const uint8_t *blob, size_t len, uint32_t *num_ops, uint8_t *sha256,
                   char *model_id);
int sct_boundary_tensor(const uint8_t *blob, size_t len, unsigned split, unsigned k,
                        int32_t *fields, float *scale);
const char *sct_op_name(const uint8_t *blob, size_t len, unsigned op);
int sct_run_io(const uint8_t *blob, size_t len, unsigned start, unsigned stop, unsigned n_in,
               const uint32_t *in_index, const uint32_t *in_nbytes, const uint8_t *in,
               unsigned n_out, const uint32_t *out_index, const uint32_t *out_nbytes,
               uint8_t *out, uint8_t *arena, size_t arena_len);

int sct_open(const uint8_t *blob, size_t len)
{
    sc_model m;
    sc_model_open(&m, blob, len);
    return (int)m.error;
}

long sct_arena_size(const uint8_t *blob, size_t len)
{
    sc_model m;
    if (!sc_model_open(&m, blob, len)) {
        return -1;
    }
    return (long)sc_model_arena_size(&m);
}

int sct_model_info(const uint8_t *blob, size_t len, uint32_t *num_ops, uint8_t *sha256,
                   char *model_id)
{
    sc_model m;
    if (!sc_model_open(&m, blob, len)) {
        return (int)m.error;
    }
    *num_ops = m.num_ops;
    for (unsigned k = 0; k < 32; ++k) {
        sha256[k] = m.sha256[k];
        model_id[k] = m.model_id[k];
    }
    return 0;
}

/* fields: index, dtype, ndims, dims[4], nbytes, zero point. */
int sct_boundary_tensor(const uint8_t *blob, size_t len, unsigned split, unsigned k,
                        int32_t *fields, float *scale)
{
    sc_model m;
    sc_tensor_info t;
    if (!sc_model_open(&m, blob, len)) {
        return (int)m.error;
    }
    if (!sc_model_boundary_tensor(&m, split, k, &t)) {
        return -1;
    }
    fields[0] = (int32_t)t.index;
    fields[1] = (int32_t)t.dtype;
    fields[2] = (int32_t)t.ndims;
    for (unsigned d = 0; d < SC_MAX_DIMS; ++d) {
        fields[3 + d] = t.dims[d];
    }
    fields[7] = (int32_t)t.nbytes;
    fields[8] = t.zero_point;
    *scale = t.scale;
    return 0;
}

const char *sct_op_name(const uint8_t *blob, size_t len, unsigned op)
{
    sc_model m;
    sc_model_open(&m, blob, len);
    return sc_model_op_name(&m, op);
}

typedef struct {
    uint64_t clock;
    uint32_t *calls;
    unsigned n, max;
} fake_clock;

static uint64_t tick(void *ctx)
{
    return ++((fake_clock *)ctx)->clock;
}

/* Records (op, start, end) triples. */
static void op_done(void *ctx, unsigned op, uint64_t start, uint64_t end)
{
    fake_clock *c = ctx;
    if (c->n < c->max) {
        c->calls[3 * c->n] = op;
        c->calls[3 * c->n + 1] = (uint32_t)start;
        c->calls[3 * c->n + 2] = (uint32_t)end;
    }
    ++c->n;
}

static int run(const uint8_t *blob, size_t len, unsigned start, unsigned stop, const uint8_t *in,
               size_t in_len, uint8_t *out, size_t out_len, uint8_t *arena, size_t arena_len,
               const sc_op_timer *timer)
{
    sc_model m;
    if (!sc_model_open(&m, blob, len)) {
        return (int)m.error;
    }
    if (sc_model_boundary_bytes(&m, start) != in_len ||
        sc_model_boundary_bytes(&m, stop) != out_len) {
        return -1;
    }
    sc_tensor_in ins[SC_MAX_BOUNDARY_TENSORS];
    sc_tensor_out outs[SC_MAX_BOUNDARY_TENSORS];
    sc_tensor_io io = {ins, sc_model_boundary_count(&m, start), outs,
                       sc_model_boundary_count(&m, stop)};
    size_t at = 0;
    for (unsigned k = 0; k < io.num_inputs; ++k) {
        sc_tensor_info t;
        sc_model_boundary_tensor(&m, start, k, &t);
        ins[k] = (sc_tensor_in){t.index, in + at, t.nbytes};
        at += t.nbytes;
    }
    at = 0;
    for (unsigned k = 0; k < io.num_outputs; ++k) {
        sc_tensor_info t;
        sc_model_boundary_tensor(&m, stop, k, &t);
        outs[k] = (sc_tensor_out){t.index, out + at, t.nbytes};
        at += t.nbytes;
    }
    return (int)sc_model_run(&m, start, stop, &io, arena, arena_len, timer);
}

/* Returns an sc_err, or -1 when in_len / out_len differ from the boundary sizes. */
int sct_run(const uint8_t *blob, size_t len, unsigned start, unsigned stop, const uint8_t *in,
            size_t in_len, uint8_t *out, size_t out_len, uint8_t *arena, size_t arena_len)
{
    return run(blob, len, start, stop, in, in_len, out, out_len, arena, arena_len, NULL);
}

/* Like sct_run with a fake clock: the number of op_done calls, -(1 + sc_err) on an
 * error, -100 on a size mismatch. */
int sct_run_timed(const uint8_t *blob, size_t len, unsigned start, unsigned stop,
                  const uint8_t *in, size_t in_len, uint8_t *out, size_t out_len,
                  uint8_t *arena, size_t arena_len, uint32_t *calls, unsigned max_calls)
{
    fake_clock c = {0, calls, 0, max_calls};
    sc_op_timer timer = {tick, op_done, &c};
    int err = run(blob, len, start, stop, in, in_len, out, out_len, arena, arena_len, &timer);
    if (err < 0) {
        return -100;
    }
    return err == 0 ? (int)c.n : -(1 + err);
}

/* Any io lists the caller makes up (order, duplicates, sizes): what sc_model_run says. */
int sct_run_io(const uint8_t *blob, size_t len, unsigned start, unsigned stop, unsigned n_in,
               const uint32_t *in_index, const uint32_t *in_nbytes, const uint8_t *in,
               unsigned n_out, const uint32_t *out_index, const uint32_t *out_nbytes,
               uint8_t *out, uint8_t *arena, size_t arena_len)
{
    sc_model m;
    sc_tensor_in ins[SC_MAX_BOUNDARY_TENSORS];
    sc_tensor_out outs[SC_MAX_BOUNDARY_TENSORS];
    if (!sc_model_open(&m, blob, len)) {
        return (int)m.error;
    }
    if (n_in > SC_MAX_BOUNDARY_TENSORS || n_out > SC_MAX_BOUNDARY_TENSORS) {
        return -1;
    }
    size_t at = 0;
    for (unsigned k = 0; k < n_in; ++k) {
        ins[k] = (sc_tensor_in){in_index[k], in + at, in_nbytes[k]};
        at += in_nbytes[k];
    }
    at = 0;
    for (unsigned k = 0; k < n_out; ++k) {
        outs[k] = (sc_tensor_out){out_index[k], out + at, out_nbytes[k]};
        at += out_nbytes[k];
    }
    sc_tensor_io io = {ins, n_in, outs, n_out};
    return (int)sc_model_run(&m, start, stop, &io, arena, arena_len, NULL);
}
