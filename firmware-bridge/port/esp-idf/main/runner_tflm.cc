/*
 * The model for the core on the ESP32: boundaries from the sciot model blob through the ops
 * adapter (sciot/ops_adapter.h), the operators through esp-tflite-micro, one exported .tflite
 * segment per operator (`sciot-mqtt models export-c`), or through sciot_ops itself
 * (CONFIG_SCIOT_RUNNER_SCIOT_OPS), where the adapter is the whole model HAL. Input: the host
 * build's test pattern. Not built in this repository's CI: see ../README.md.
 *
 * The model files are those of fomo96; for another model, export it and change the names
 * below (sciot_<id>_blob, sciot_<id>_op_segments, SCIOT_<ID>_NUM_OPS). Each segment's entry
 * names the manifest tensors it reads and writes, in its own input and output order.
 */
#include <stdlib.h>
#include <string.h>

#include "esp_heap_caps.h"
#include "esp_timer.h"
#include "hal_esp.h"
#include "fomo96_model.h"
#include "fomo96_segments.h"
#include "sdkconfig.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#define BLOB sciot_fomo96_blob
#define SEGMENTS sciot_fomo96_op_segments
#define NUM_SEGMENTS SCIOT_FOMO96_NUM_OPS
#define TFLM_ARENA (160 * 1024)

namespace {

uint8_t *big_alloc(size_t n)
{
    void *p = heap_caps_malloc(n, MALLOC_CAP_SPIRAM | MALLOC_CAP_8BIT);
    return static_cast<uint8_t *>(p != nullptr ? p : malloc(n));
}

/* The host build's test pattern (port/host/main.c), so both devices see the same frames. */
bool capture(void *ctx, uint8_t *input, size_t nbytes)
{
    sciot_esp_model *m = static_cast<sciot_esp_model *>(ctx);
    size_t side = 96, at = (m->frame * 7u) % 80u;
    for (size_t i = 0; i < nbytes; i++) {
        size_t px = i / 3u, x = px % side, y = px / side;
        int v = (int)((x + y) % 256u) - 128;
        if (x >= at && x < at + 12u && y >= at && y < at + 12u) {
            v = 127;
        }
        input[i] = (uint8_t)(int8_t)v;
    }
    m->frame++;
    return true;
}

#if CONFIG_SCIOT_RUNNER_SCIOT_OPS
uint64_t clock_us(void *)
{
    return (uint64_t)esp_timer_get_time();
}
#else
bool fail(sciot_esp_model *m, const char *why)
{
    m->error_detail = why;
    return false;
}

sciot_tensor *stored(sciot_esp_model *m, uint32_t index)
{
    for (unsigned i = 0; i < m->n_stored; i++) {
        if (m->stored[i].index == index) {
            return &m->stored[i];
        }
    }
    return nullptr;
}

/* Working memory for every tensor live at some boundary, once. */
bool store_boundary_tensors(sciot_esp_model *m)
{
    for (unsigned s = 0; s <= m->ops.model.num_ops; s++) {
        unsigned n = sciot_ops_adapter_boundary_count(&m->ops, (uint16_t)s);
        for (unsigned k = 0; k < n; k++) {
            sciot_tensor t;
            if (!sciot_ops_adapter_boundary_tensor(&m->ops, (uint16_t)s, k, &t)) {
                return fail(m, m->ops.error_detail);
            }
            if (stored(m, t.index) != nullptr) {
                continue;
            }
            if (m->n_stored == SCIOT_ESP_MAX_STORED) {
                return fail(m, "more live tensors than SCIOT_ESP_MAX_STORED");
            }
            t.data = big_alloc(t.nbytes);
            if (t.data == nullptr) {
                return fail(m, "no memory for the live tensors");
            }
            m->stored[m->n_stored++] = t;
        }
    }
    return true;
}

unsigned tflm_boundary_count(void *ctx, uint16_t split)
{
    return sciot_ops_adapter_boundary_count(&static_cast<sciot_esp_model *>(ctx)->ops, split);
}

bool tflm_boundary_tensor(void *ctx, uint16_t split, unsigned k, sciot_tensor *out)
{
    return sciot_ops_adapter_boundary_tensor(&static_cast<sciot_esp_model *>(ctx)->ops, split, k,
                                             out);
}

/* Copies one segment tensor between the interpreter and the store, checking both sides. */
bool segment_io(sciot_esp_model *m, TfLiteTensor *t, uint16_t index, bool to_interpreter)
{
    sciot_tensor *s = stored(m, index);
    if (t == nullptr || s == nullptr || t->bytes != s->nbytes) {
        return fail(m, "a segment's tensor is not the blob's");
    }
    if (to_interpreter) {
        memcpy(t->data.raw, s->data, s->nbytes);
    } else {
        memcpy(s->data, t->data.raw, s->nbytes);
    }
    return true;
}

/* One interpreter at a time in one arena: a thin port trades speed for memory. */
bool run_segment(sciot_esp_model *m, const tflite::MicroOpResolver &resolver, unsigned op,
                 double *ms)
{
    const sciot_segment &seg = SEGMENTS[op];
    if (seg.num_inputs > 4 || seg.num_outputs > 2) {
        return fail(m, "a segment with more inputs or outputs than its table holds");
    }
    tflite::MicroInterpreter interp(tflite::GetModel(seg.tflite), resolver, m->tflm_arena,
                                    TFLM_ARENA);
    if (interp.AllocateTensors() != kTfLiteOk || interp.inputs_size() != seg.num_inputs ||
        interp.outputs_size() != seg.num_outputs) {
        return fail(m, "esp-tflite-micro refused a segment");
    }
    for (unsigned k = 0; k < seg.num_inputs; k++) {
        if (!segment_io(m, interp.input(k), seg.inputs[k], true)) {
            return false;
        }
    }
    int64_t t0 = esp_timer_get_time();
    if (interp.Invoke() != kTfLiteOk) {
        return fail(m, "esp-tflite-micro failed to run a segment");
    }
    *ms = (double)(esp_timer_get_time() - t0) / 1000.0;
    for (unsigned k = 0; k < seg.num_outputs; k++) {
        if (!segment_io(m, interp.output(k), seg.outputs[k], false)) {
            return false;
        }
    }
    return true;
}

bool tflm_run_ops(void *ctx, uint16_t first, uint16_t last, const sciot_tensor *in, unsigned n_in,
                  sciot_tensor *out, unsigned n_out, double *op_ms)
{
    sciot_esp_model *m = static_cast<sciot_esp_model *>(ctx);
    m->error_detail = nullptr;
    /* the range and both lists against the blob, before any buffer is touched */
    if (!sciot_ops_adapter_check_run(&m->ops, first, last, in, n_in, out, n_out)) {
        return fail(m, m->ops.error_detail);
    }
    tflite::MicroMutableOpResolver<4> resolver;
    resolver.AddConv2D();
    resolver.AddDepthwiseConv2D();
    resolver.AddAdd();
    resolver.AddSoftmax();
    for (unsigned k = 0; k < n_in; k++) {
        sciot_tensor *s = stored(m, in[k].index);
        if (s == nullptr) {
            return fail(m, "an input tensor the store lacks");
        }
        memcpy(s->data, in[k].data, s->nbytes);
    }
    for (unsigned op = first; op < last; op++) {
        double ms = 0;
        if (!run_segment(m, resolver, op, &ms)) {
            return false;
        }
        if (op_ms != nullptr) {
            op_ms[op - first] = ms;
        }
    }
    for (unsigned k = 0; k < n_out; k++) {
        sciot_tensor *s = stored(m, out[k].index);
        if (s == nullptr) {
            return fail(m, "an output tensor the store lacks");
        }
        memcpy(out[k].data, s->data, s->nbytes);
    }
    return true;
}
#endif

} // namespace

extern "C" bool sciot_esp_model_init(sciot_esp_model *m, sciot_hal *hal, const char **model_id,
                                     unsigned *num_ops)
{
    memset(m, 0, sizeof *m);
    if (!sciot_ops_adapter_open(&m->ops, BLOB, sizeof BLOB)) {
        m->error_detail = m->ops.error_detail;
        return false;
    }
#if CONFIG_SCIOT_RUNNER_SCIOT_OPS
    size_t arena_len = sciot_ops_adapter_arena_size(&m->ops);
    if (!sciot_ops_adapter_set_arena(&m->ops, big_alloc(arena_len + 1u), arena_len)) {
        m->error_detail = m->ops.error_detail;
        return false;
    }
    sciot_ops_adapter_set_clock(&m->ops, clock_us, nullptr, 1000.0);
    hal->model = sciot_ops_adapter_hal(&m->ops);
#else
    if (m->ops.model.num_ops != NUM_SEGMENTS) {
        return fail(m, "the blob and the segments are of different models");
    }
    m->tflm_arena = big_alloc(TFLM_ARENA);
    if (m->tflm_arena == nullptr) {
        return fail(m, "no memory for the esp-tflite-micro arena");
    }
    if (!store_boundary_tensors(m)) {
        return false;
    }
    hal->model.ctx = m;
    hal->model.boundary_count = tflm_boundary_count;
    hal->model.boundary_tensor = tflm_boundary_tensor;
    hal->model.run_ops = tflm_run_ops;
#endif
    hal->user = m;
    hal->capture = capture;
    *model_id = m->ops.model.model_id;
    *num_ops = m->ops.model.num_ops;
    return true;
}

extern "C" const char *sciot_esp_model_error(const sciot_esp_model *m)
{
    if (m->error_detail != nullptr) {
        return m->error_detail;
    }
    return m->ops.error_detail != nullptr ? m->ops.error_detail : "";
}
