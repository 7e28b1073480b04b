/*
 * sciot/ops_adapter.h: the operators (sciot_ops) behind the device's model HAL
 * (sciot_model_hal), written once for every port (port/host, port/esp-idf).
 *
 * In the style of cmp: the caller owns the context and every buffer, nothing is global, and
 * each call returns its outcome and leaves the reason of a failure in the context:
 *
 *     static sciot_ops_adapter ops;
 *     if (!sciot_ops_adapter_open(&ops, blob, blob_len)) log(ops.error_detail);
 *     sciot_ops_adapter_set_arena(&ops, malloc(sciot_ops_adapter_arena_size(&ops)), ...);
 *     sciot_ops_adapter_set_clock(&ops, now_us, NULL, 1000.0);    // optional: op times
 *     hal.model = sciot_ops_adapter_hal(&ops);
 *
 * Every call checks its arguments against the model before it touches a buffer: the
 * boundary and operator range, the tensor counts, each tensor's index and byte size. The
 * blob and the arena must stay valid while the adapter is used.
 */
#ifndef SCIOT_OPS_ADAPTER_H
#define SCIOT_OPS_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sciot/device.h"
#include "sciot/msgs.h"
#include "sciot/tensor.h"
#include "sciot_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    sciot_model model;        /* the opened blob (read only for the caller) */
    sciot_err error;          /* outcome of the last call: SCIOT_OK, or why it failed */
    const char *error_detail; /* a static text naming what failed (NULL after success) */
    /* private */
    uint8_t *_arena;
    size_t _arena_len;
    uint64_t (*_now)(void *ctx);
    void *_clock_ctx;
    double _ticks_per_ms;
    double *_op_ms;
    unsigned _op_first, _op_last;
} sciot_ops_adapter;

/* Checks and opens a sciot model blob in place (sciot_model_open); the first call on a
 * context, which it initializes whole (no arena, no clock). */
bool sciot_ops_adapter_open(sciot_ops_adapter *a, const uint8_t *blob, size_t blob_len);

/* Bytes of scratch memory the operators need (0 before a successful open). */
size_t sciot_ops_adapter_arena_size(const sciot_ops_adapter *a);

/* The scratch memory; refused (SCIOT_E_BUFFER) when smaller than the arena size. */
bool sciot_ops_adapter_set_arena(sciot_ops_adapter *a, uint8_t *arena, size_t arena_len);

/* A monotonic clock for each operator's time (op_ms of run_ops); without one (or with
 * now == NULL) the times are 0. ticks_per_ms: 1000 for microseconds, 1e6 for nanoseconds. */
void sciot_ops_adapter_set_clock(sciot_ops_adapter *a, uint64_t (*now)(void *ctx), void *ctx,
                                 double ticks_per_ms);

/* The model HAL with this adapter as its context. */
sciot_model_hal sciot_ops_adapter_hal(sciot_ops_adapter *a);

/* The three functions of sciot_model_hal; `adapter` is a sciot_ops_adapter. A port that runs
 * the operators some other way from the blob can take the boundaries from these two ... */
unsigned sciot_ops_adapter_boundary_count(void *adapter, uint16_t split);
bool sciot_ops_adapter_boundary_tensor(void *adapter, uint16_t split, unsigned k,
                                       sciot_tensor *out);
/* ... and checks a run with this one before it starts: first <= last <= num_ops, each list
 * holding exactly the tensors live at its boundary, with their sizes and a buffer each. */
bool sciot_ops_adapter_check_run(sciot_ops_adapter *a, uint16_t first, uint16_t last,
                                 const sciot_tensor *in, unsigned n_in, const sciot_tensor *out,
                                 unsigned n_out);
/* op_ms (may be NULL) gets last - first entries. */
bool sciot_ops_adapter_run_ops(void *adapter, uint16_t first, uint16_t last, const sciot_tensor *in,
                               unsigned n_in, sciot_tensor *out, unsigned n_out, double *op_ms);

#ifdef __cplusplus
}
#endif

#endif /* SCIOT_OPS_ADAPTER_H */
