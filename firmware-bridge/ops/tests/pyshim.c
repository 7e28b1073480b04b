/*
 * A flat entry point for ctypes (tests/firmware/test_ops_bitexact.py): boundary tensors
 * go in and out concatenated in the blob's boundary order, so Python needs no structs.
 */
#include <stddef.h>
#include <stdint.h>

#include "sciot_ops.h"

int sct_open(const uint8_t *blob, size_t len);
long sct_arena_size(const uint8_t *blob, size_t len);
int sct_run(const uint8_t *blob, size_t len, unsigned start, unsigned stop, uint8_t *in,
            size_t in_len, uint8_t *out, size_t out_len, uint8_t *arena, size_t arena_len);
int sct_run_timed(const uint8_t *blob, size_t len, unsigned start, unsigned stop, uint8_t *in,
                  size_t in_len, uint8_t *out, size_t out_len, uint8_t *arena, size_t arena_len,
                  uint32_t *calls, unsigned max_calls);
int sct_model_info(const uint8_t *blob, size_t len, uint32_t *num_ops, uint8_t *sha256,
                   char *model_id);
int sct_boundary_tensor(const uint8_t *blob, size_t len, unsigned split, unsigned k,
                        int32_t *fields, float *scale);
const char *sct_op_name(const uint8_t *blob, size_t len, unsigned op);
int sct_run_io(const uint8_t *blob, size_t len, unsigned start, unsigned stop, unsigned n_in,
               const uint32_t *in_index, const uint32_t *in_nbytes, uint8_t *in, unsigned n_out,
               const uint32_t *out_index, const uint32_t *out_nbytes, uint8_t *out, uint8_t *arena,
               size_t arena_len);

int sct_open(const uint8_t *blob, size_t len)
{
    sciot_model m;
    sciot_model_open(&m, blob, len);
    return (int)m.error;
}

long sct_arena_size(const uint8_t *blob, size_t len)
{
    sciot_model m;
    if (!sciot_model_open(&m, blob, len)) {
        return -1;
    }
    return (long)sciot_model_arena_size(&m);
}

int sct_model_info(const uint8_t *blob, size_t len, uint32_t *num_ops, uint8_t *sha256,
                   char *model_id)
{
    sciot_model m;
    if (!sciot_model_open(&m, blob, len)) {
        return (int)m.error;
    }
    *num_ops = m.num_ops;
    for (unsigned k = 0; k < 32; ++k) {
        sha256[k] = m.sha256[k];
        model_id[k] = m.model_id[k];
    }
    return 0;
}

/* fields: index, dtype (sciot_dtype), ndim, shape[4], nbytes, zero point. */
int sct_boundary_tensor(const uint8_t *blob, size_t len, unsigned split, unsigned k,
                        int32_t *fields, float *scale)
{
    sciot_model m;
    sciot_tensor t;
    if (!sciot_model_open(&m, blob, len)) {
        return (int)m.error;
    }
    if (!sciot_model_boundary_tensor(&m, split, k, &t)) {
        return -1;
    }
    fields[0] = (int32_t)t.index;
    fields[1] = (int32_t)t.dtype;
    fields[2] = (int32_t)t.ndim;
    for (unsigned d = 0; d < SCIOT_MODEL_MAX_DIMS; ++d) {
        fields[3 + d] = t.shape[d];
    }
    fields[7] = (int32_t)t.nbytes;
    fields[8] = t.zero_point;
    *scale = (float)t.scale;
    return 0;
}

const char *sct_op_name(const uint8_t *blob, size_t len, unsigned op)
{
    sciot_model m;
    sciot_model_open(&m, blob, len);
    return sciot_model_op_name(&m, op);
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

/* The tensors live at `split`, their bytes one after the other in buf. */
static unsigned lay_out_boundary(const sciot_model *m, unsigned split, uint8_t *buf,
                                 sciot_tensor *list)
{
    unsigned n = sciot_model_boundary_count(m, split);
    size_t at = 0;
    for (unsigned k = 0; k < n; ++k) {
        sciot_model_boundary_tensor(m, split, k, &list[k]);
        list[k].data = buf + at;
        at += list[k].nbytes;
    }
    return n;
}

static int run(const uint8_t *blob, size_t len, unsigned start, unsigned stop, uint8_t *in,
               size_t in_len, uint8_t *out, size_t out_len, uint8_t *arena, size_t arena_len,
               const sciot_op_timer *timer)
{
    sciot_model m;
    if (!sciot_model_open(&m, blob, len)) {
        return (int)m.error;
    }
    if (sciot_model_boundary_bytes(&m, start) != in_len ||
        sciot_model_boundary_bytes(&m, stop) != out_len) {
        return -1;
    }
    sciot_tensor ins[SCIOT_MAX_BOUNDARY_TENSORS];
    sciot_tensor outs[SCIOT_MAX_BOUNDARY_TENSORS];
    unsigned n_in = lay_out_boundary(&m, start, in, ins);
    unsigned n_out = lay_out_boundary(&m, stop, out, outs);
    return (int)sciot_model_run(&m, start, stop, ins, n_in, outs, n_out, arena, arena_len, timer);
}

/* Returns an sciot_model_err, or -1 when in_len / out_len differ from the boundary sizes. */
int sct_run(const uint8_t *blob, size_t len, unsigned start, unsigned stop, uint8_t *in,
            size_t in_len, uint8_t *out, size_t out_len, uint8_t *arena, size_t arena_len)
{
    return run(blob, len, start, stop, in, in_len, out, out_len, arena, arena_len, NULL);
}

/* Like sct_run with a fake clock: the number of op_done calls, -(1 + sciot_model_err) on an
 * error, -100 on a size mismatch. */
int sct_run_timed(const uint8_t *blob, size_t len, unsigned start, unsigned stop, uint8_t *in,
                  size_t in_len, uint8_t *out, size_t out_len, uint8_t *arena, size_t arena_len,
                  uint32_t *calls, unsigned max_calls)
{
    fake_clock c = {0, calls, 0, max_calls};
    sciot_op_timer timer = {tick, op_done, &c};
    int err = run(blob, len, start, stop, in, in_len, out, out_len, arena, arena_len, &timer);
    if (err < 0) {
        return -100;
    }
    return err == 0 ? (int)c.n : -(1 + err);
}

/* Any io lists the caller makes up (order, duplicates, sizes): what sciot_model_run says. */
int sct_run_io(const uint8_t *blob, size_t len, unsigned start, unsigned stop, unsigned n_in,
               const uint32_t *in_index, const uint32_t *in_nbytes, uint8_t *in, unsigned n_out,
               const uint32_t *out_index, const uint32_t *out_nbytes, uint8_t *out, uint8_t *arena,
               size_t arena_len)
{
    sciot_model m;
    sciot_tensor ins[SCIOT_MAX_BOUNDARY_TENSORS] = {{0}};
    sciot_tensor outs[SCIOT_MAX_BOUNDARY_TENSORS] = {{0}};
    if (!sciot_model_open(&m, blob, len)) {
        return (int)m.error;
    }
    if (n_in > SCIOT_MAX_BOUNDARY_TENSORS || n_out > SCIOT_MAX_BOUNDARY_TENSORS) {
        return -1;
    }
    size_t at = 0;
    for (unsigned k = 0; k < n_in; ++k) {
        ins[k].index = in_index[k];
        ins[k].data = in + at;
        ins[k].nbytes = in_nbytes[k];
        at += in_nbytes[k];
    }
    at = 0;
    for (unsigned k = 0; k < n_out; ++k) {
        outs[k].index = out_index[k];
        outs[k].data = out + at;
        outs[k].nbytes = out_nbytes[k];
        at += out_nbytes[k];
    }
    return (int)sciot_model_run(&m, start, stop, ins, n_in, outs, n_out, arena, arena_len, NULL);
}
