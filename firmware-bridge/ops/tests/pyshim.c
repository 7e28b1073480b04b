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

/* Returns an sc_err, or -1 when in_len / out_len differ from the boundary sizes. */
int sct_run(const uint8_t *blob, size_t len, unsigned start, unsigned stop, const uint8_t *in,
            size_t in_len, uint8_t *out, size_t out_len, uint8_t *arena, size_t arena_len)
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
    return (int)sc_model_run(&m, start, stop, &io, arena, arena_len, NULL);
}
