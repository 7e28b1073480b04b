/* sciot_ops behind sciot_model_hal: see sciot/ops_adapter.h. */
#include "sciot/ops_adapter.h"

static bool fail(sciot_ops_adapter *a, sciot_err err, const char *detail)
{
    a->error = err;
    a->error_detail = detail;
    return false;
}

static bool done(sciot_ops_adapter *a)
{
    a->error = SCIOT_OK;
    a->error_detail = 0;
    return true;
}

/* sciot_model_open() refuses a model without operators, and zero is not an open model. */
static bool opened(const sciot_ops_adapter *a)
{
    return a->model.error == SCIOT_MODEL_OK && a->model.num_ops > 0;
}

/* Everything starts over: no arena, no clock. */
bool sciot_ops_adapter_open(sciot_ops_adapter *a, const uint8_t *blob, size_t blob_len)
{
    a->_arena = 0;
    a->_arena_len = 0;
    a->_now = 0;
    a->_clock_ctx = 0;
    a->_ticks_per_ms = 1.0;
    a->_op_ms = 0;
    a->_op_first = a->_op_last = 0;
    if (!sciot_model_open(&a->model, blob, blob_len)) {
        return fail(a, SCIOT_E_MODEL, sciot_model_strerror(a->model.error));
    }
    return done(a);
}

size_t sciot_ops_adapter_arena_size(const sciot_ops_adapter *a)
{
    return opened(a) ? sciot_model_arena_size(&a->model) : 0;
}

bool sciot_ops_adapter_set_arena(sciot_ops_adapter *a, uint8_t *arena, size_t arena_len)
{
    if (!opened(a)) {
        return fail(a, SCIOT_E_STATE, "no model opened");
    }
    if (arena_len < sciot_model_arena_size(&a->model) || (arena == 0 && arena_len > 0)) {
        return fail(a, SCIOT_E_BUFFER, "arena smaller than the model needs");
    }
    a->_arena = arena;
    a->_arena_len = arena_len;
    return done(a);
}

void sciot_ops_adapter_set_clock(sciot_ops_adapter *a, uint64_t (*now)(void *ctx), void *ctx,
                                 double ticks_per_ms)
{
    a->_now = ticks_per_ms > 0 ? now : 0;
    a->_clock_ctx = ctx;
    a->_ticks_per_ms = ticks_per_ms > 0 ? ticks_per_ms : 1.0;
}

sciot_model_hal sciot_ops_adapter_hal(sciot_ops_adapter *a)
{
    sciot_model_hal hal;
    hal.ctx = a;
    hal.boundary_count = sciot_ops_adapter_boundary_count;
    hal.boundary_tensor = sciot_ops_adapter_boundary_tensor;
    hal.run_ops = sciot_ops_adapter_run_ops;
    return hal;
}

unsigned sciot_ops_adapter_boundary_count(void *adapter, uint16_t split)
{
    sciot_ops_adapter *a = adapter;
    if (!opened(a)) {
        (void)fail(a, SCIOT_E_STATE, "no model opened");
        return 0;
    }
    if (split > a->model.num_ops) {
        (void)fail(a, SCIOT_E_ARG, "split point past the model's last operator");
        return 0;
    }
    (void)done(a);
    return sciot_model_boundary_count(&a->model, split);
}

bool sciot_ops_adapter_boundary_tensor(void *adapter, uint16_t split, unsigned k, sciot_tensor *out)
{
    sciot_ops_adapter *a = adapter;
    if (!opened(a)) {
        return fail(a, SCIOT_E_STATE, "no model opened");
    }
    if (out == 0) {
        return fail(a, SCIOT_E_ARG, "no tensor to describe into");
    }
    if (split > a->model.num_ops) {
        return fail(a, SCIOT_E_ARG, "split point past the model's last operator");
    }
    if (k >= sciot_model_boundary_count(&a->model, split)) {
        return fail(a, SCIOT_E_ARG, "tensor index past the boundary's tensors");
    }
    if (!sciot_model_boundary_tensor(&a->model, split, k, out)) {
        return fail(a, SCIOT_E_MODEL, "the blob does not describe this tensor");
    }
    return done(a);
}

bool sciot_ops_adapter_check_run(sciot_ops_adapter *a, uint16_t first, uint16_t last,
                                 const sciot_tensor *in, unsigned n_in, const sciot_tensor *out,
                                 unsigned n_out)
{
    if (!opened(a)) {
        return fail(a, SCIOT_E_STATE, "no model opened");
    }
    if (first > last || last > a->model.num_ops) {
        return fail(a, SCIOT_E_ARG, "operator range outside the model");
    }
    if (n_in > SCIOT_MAX_BOUNDARY_TENSORS || n_out > SCIOT_MAX_BOUNDARY_TENSORS) {
        return fail(a, SCIOT_E_ARG, "more tensors than a boundary holds");
    }
    if (!sciot_model_boundary_matches(&a->model, first, in, n_in)) {
        return fail(a, SCIOT_E_BUFFER, "input tensors are not the boundary's, or sized wrong");
    }
    if (!sciot_model_boundary_matches(&a->model, last, out, n_out)) {
        return fail(a, SCIOT_E_BUFFER, "output tensors are not the boundary's, or sized wrong");
    }
    return done(a);
}

static uint64_t clock_now(void *adapter)
{
    sciot_ops_adapter *a = adapter;
    return a->_now != 0 ? a->_now(a->_clock_ctx) : 0;
}

static void op_done(void *adapter, unsigned op, uint64_t start, uint64_t end)
{
    sciot_ops_adapter *a = adapter;
    if (a->_op_ms != 0 && a->_now != 0 && op >= a->_op_first && op < a->_op_last && end >= start) {
        a->_op_ms[op - a->_op_first] = (double)(end - start) / a->_ticks_per_ms;
    }
}

bool sciot_ops_adapter_run_ops(void *adapter, uint16_t first, uint16_t last, const sciot_tensor *in,
                               unsigned n_in, sciot_tensor *out, unsigned n_out, double *op_ms)
{
    sciot_ops_adapter *a = adapter;
    sciot_op_timer timer;
    sciot_model_err e;
    unsigned op;
    if (!sciot_ops_adapter_check_run(a, first, last, in, n_in, out, n_out)) {
        return false;
    }
    if (first < last && a->_arena_len < sciot_model_arena_size(&a->model)) {
        return fail(a, SCIOT_E_STATE, "no arena for the operators");
    }
    if (op_ms != 0) {
        for (op = first; op < last; op++) {
            op_ms[op - first] = 0;
        }
    }
    timer.now = clock_now;
    timer.op_done = op_done;
    timer.ctx = a;
    a->_op_ms = op_ms;
    a->_op_first = first;
    a->_op_last = last;
    e = sciot_model_run(&a->model, first, last, in, n_in, out, n_out, a->_arena, a->_arena_len,
                        &timer);
    a->_op_ms = 0;
    if (e != SCIOT_MODEL_OK) {
        return fail(a, SCIOT_E_MODEL, sciot_model_strerror(e));
    }
    return done(a);
}
