/*
 * The model for the core on the ESP32, from what `sciot-mqtt models export-c` wrote into
 * main/model/ (sciot_exported_model.h names it), one of two ways (Kconfig "Operator runtime"):
 *
 * - CONFIG_SCIOT_RUNNER_TFLM: esp-tflite-micro runs one exported .tflite segment per
 *   operator, with the operators the model needs registered by the generated
 *   <id>_tflm_ops.h, in one arena of the exporter's planned size plus
 *   CONFIG_SCIOT_TFLM_ARENA_EXTRA. The tensors live at each split point come from the
 *   generated tables, and sit between operators in one store at the exported offsets.
 * - CONFIG_SCIOT_RUNNER_SCIOT_OPS: the sciot model blob through the ops adapter (the same C
 *   kernels as the host build); only for a model whose blob export-c could write.
 *
 * Input: the host build's test pattern, for any input type.
 */
#include <stdlib.h>
#include <string.h>

#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_timer.h"
#include "hal_esp.h"
#include "sciot_exported_model.h"
#include "sdkconfig.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#if CONFIG_SCIOT_RUNNER_SCIOT_OPS && !defined(SCIOT_EXPORTED_BLOB)
#error \
    "SCIOT_RUNNER_SCIOT_OPS needs a sciot model blob, and export-c wrote none for this model (sciot_exported_model.h says why): choose the esp-tflite-micro runner"
#endif

namespace {

sciot_esp_model *model_of(void *user)
{
    return &static_cast<sciot_esp_port *>(user)->model;
}

/* PSRAM when there is some, else internal RAM. */
uint8_t *big_alloc(size_t n)
{
    void *p = heap_caps_malloc(n, MALLOC_CAP_SPIRAM | MALLOC_CAP_8BIT);
    return static_cast<uint8_t *>(p != nullptr ? p : heap_caps_malloc(n, MALLOC_CAP_8BIT));
}

bool fail(sciot_esp_model *m, const char *why)
{
    m->error_detail = why;
    return false;
}

/* The host build's test pattern (port/host/main.c) element by element, so that a model with
 * an 8-bit input sees the same frames as sciot-fw-host; other types get it scaled. */
bool capture(void *user, uint8_t *input, size_t nbytes)
{
    sciot_esp_model *m = model_of(user);
    const sciot_tensor &in = m->input;
    size_t side = 96, at = (m->frame * 7u) % 80u;
    size_t n = in.dtype == SCIOT_DTYPE_FLOAT32 || in.dtype == SCIOT_DTYPE_INT32 ? nbytes / 4
               : in.dtype == SCIOT_DTYPE_INT16                                  ? nbytes / 2
                                                                                : nbytes;
    for (size_t i = 0; i < n; i++) {
        size_t px = i / 3u, x = px % side, y = px / side;
        int v = (int)((x + y) % 256u) - 128;
        if (x >= at && x < at + 12u && y >= at && y < at + 12u) {
            v = 127;
        }
        switch (in.dtype) {
        case SCIOT_DTYPE_FLOAT32: {
            float f = (float)(v + 128) / 255.0f;
            memcpy(input + 4 * i, &f, 4);
            break;
        }
        case SCIOT_DTYPE_INT32: {
            int32_t w = v;
            memcpy(input + 4 * i, &w, 4);
            break;
        }
        case SCIOT_DTYPE_INT16: {
            int16_t w = (int16_t)v;
            memcpy(input + 2 * i, &w, 2);
            break;
        }
        case SCIOT_DTYPE_UINT8: input[i] = (uint8_t)(v + 128); break;
        default: input[i] = (uint8_t)(int8_t)v; break;
        }
    }
    m->frame++;
    return true;
}

#if CONFIG_SCIOT_RUNNER_SCIOT_OPS
uint64_t clock_us(void *)
{
    return (uint64_t)esp_timer_get_time();
}

bool init_runner(sciot_esp_model *m, sciot_hal *hal)
{
    if (!sciot_ops_adapter_open(&m->ops, SCIOT_EXPORTED_BLOB, sizeof SCIOT_EXPORTED_BLOB)) {
        return fail(m, m->ops.error_detail);
    }
    size_t arena_len = sciot_ops_adapter_arena_size(&m->ops);
    if (!sciot_ops_adapter_set_arena(&m->ops, big_alloc(arena_len + 1u), arena_len)) {
        return fail(m, m->ops.error_detail);
    }
    sciot_ops_adapter_set_clock(&m->ops, clock_us, nullptr, 1000.0);
    hal->model = sciot_ops_adapter_hal(&m->ops);
    return true;
}

const char *model_id(const sciot_esp_model *m)
{
    return m->ops.model.model_id;
}

unsigned model_ops(const sciot_esp_model *m)
{
    return m->ops.model.num_ops;
}
#else
const char *TAG = "sciot-model";
const sciot_segmented_model &MODEL = SCIOT_EXPORTED_SEGMENTED;

const char *model_id(const sciot_esp_model *)
{
    return MODEL.model_id;
}

unsigned model_ops(const sciot_esp_model *)
{
    return MODEL.num_ops;
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

/* Every tensor live at some split point, at its exported offset in one store: tensors never
 * live at once share bytes (the budget's "live tensors"). */
bool store_live_tensors(sciot_esp_model *m)
{
    uint8_t *store = big_alloc(MODEL.store_bytes);
    if (store == nullptr) {
        return fail(m, "no memory for the live tensors");
    }
    for (unsigned s = 0; s <= MODEL.num_ops; s++) {
        const sciot_split_point &p = MODEL.split_points[s];
        for (unsigned k = 0; k < p.count; k++) {
            if (stored(m, p.tensors[k].index) != nullptr) {
                continue;
            }
            if (m->n_stored == SCIOT_ESP_MAX_STORED) {
                return fail(m, "more live tensors than SCIOT_ESP_MAX_STORED");
            }
            sciot_tensor t = p.tensors[k];
            t.data = nullptr;
            for (unsigned j = 0; j < MODEL.num_stored; j++) {
                if (MODEL.stored[j].index == t.index &&
                    MODEL.stored[j].offset + t.nbytes <= MODEL.store_bytes) {
                    t.data = store + MODEL.stored[j].offset;
                }
            }
            if (t.data == nullptr) {
                return fail(m, "a live tensor without its place in the exported store");
            }
            m->stored[m->n_stored++] = t;
        }
    }
    return true;
}

unsigned tflm_boundary_count(void *ctx, uint16_t split)
{
    (void)ctx;
    return split <= MODEL.num_ops ? MODEL.split_points[split].count : 0;
}

bool tflm_boundary_tensor(void *ctx, uint16_t split, unsigned k, sciot_tensor *out)
{
    sciot_esp_model *m = static_cast<sciot_esp_model *>(ctx);
    if (split > MODEL.num_ops || k >= MODEL.split_points[split].count || out == nullptr) {
        return fail(m, "no such tensor at that split point");
    }
    *out = MODEL.split_points[split].tensors[k];
    return true;
}

/* Whether `list` holds every tensor live at `split` exactly once, with its size and a buffer
 * (what sciot_ops_adapter_check_run asks of a run, against the generated tables). */
bool matches(uint16_t split, const sciot_tensor *list, unsigned n)
{
    const sciot_split_point &p = MODEL.split_points[split];
    if (n != p.count || (n > 0 && list == nullptr)) {
        return false;
    }
    for (unsigned k = 0; k < p.count; k++) {
        unsigned found = 0;
        for (unsigned j = 0; j < n; j++) {
            if (list[j].index == p.tensors[k].index) {
                found++;
                if (list[j].nbytes != p.tensors[k].nbytes || list[j].data == nullptr) {
                    return false;
                }
            }
        }
        if (found != 1) {
            return false;
        }
    }
    return true;
}

/* Copies one segment tensor between the interpreter and the store, checking both sides. */
bool segment_io(sciot_esp_model *m, TfLiteTensor *t, uint16_t index, bool to_interpreter)
{
    sciot_tensor *s = stored(m, index);
    if (t == nullptr || s == nullptr || t->bytes != s->nbytes) {
        return fail(m, "a segment's tensor is not the exported table's");
    }
    if (to_interpreter) {
        memcpy(t->data.raw, s->data, s->nbytes);
    } else {
        memcpy(s->data, t->data.raw, s->nbytes);
    }
    return true;
}

/* One interpreter at a time in one arena: a thin port trades speed for memory. With
 * `ms` NULL the operator is only set up (its arena use recorded), not run. */
bool run_segment(sciot_esp_model *m, const SCIOT_EXPORTED_TFLM_RESOLVER &resolver, unsigned op,
                 double *ms)
{
    const sciot_segment &seg = MODEL.segments[op];
    if (seg.num_inputs > 4 || seg.num_outputs > 2) {
        return fail(m, "a segment with more inputs or outputs than its table holds");
    }
    tflite::MicroInterpreter interp(tflite::GetModel(seg.tflite), resolver, m->tflm_arena,
                                    m->tflm_arena_len);
    if (interp.AllocateTensors() != kTfLiteOk) {
        return fail(m, "esp-tflite-micro could not set up an operator in its arena "
                       "(CONFIG_SCIOT_TFLM_ARENA_EXTRA)");
    }
    if (interp.arena_used_bytes() > m->tflm_arena_used) {
        m->tflm_arena_used = interp.arena_used_bytes();
    }
    if (interp.inputs_size() != seg.num_inputs || interp.outputs_size() != seg.num_outputs) {
        return fail(m, "a segment's inputs or outputs are not the exported table's");
    }
    if (ms == nullptr) {
        return true;
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
    /* the range and both lists against the exported tables, before any buffer is touched */
    if (first > last || last > MODEL.num_ops) {
        return fail(m, "operator range outside the model");
    }
    if (!matches(first, in, n_in) || !matches(last, out, n_out)) {
        return fail(m, "tensors are not the split point's, or sized wrong");
    }
    SCIOT_EXPORTED_TFLM_RESOLVER resolver;
    if (!SCIOT_EXPORTED_TFLM_ADD_OPS(resolver)) {
        return fail(m, "esp-tflite-micro refused an operator registration");
    }
    for (unsigned k = 0; k < n_in; k++) {
        memcpy(stored(m, in[k].index)->data, in[k].data, in[k].nbytes);
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
        memcpy(out[k].data, stored(m, out[k].index)->data, out[k].nbytes);
    }
    return true;
}

/* The arena, then every operator set up once in it: a model that cannot run fails here, at
 * start, and the log says how much of the arena TFLM really used. */
bool init_runner(sciot_esp_model *m, sciot_hal *hal)
{
    m->tflm_arena_len = MODEL.tflm_arena_bytes + CONFIG_SCIOT_TFLM_ARENA_EXTRA;
    m->tflm_arena = big_alloc(m->tflm_arena_len);
    if (m->tflm_arena == nullptr) {
        return fail(m, "no memory for the esp-tflite-micro arena");
    }
    if (!store_live_tensors(m)) {
        return false;
    }
    SCIOT_EXPORTED_TFLM_RESOLVER resolver;
    if (!SCIOT_EXPORTED_TFLM_ADD_OPS(resolver)) {
        return fail(m, "esp-tflite-micro refused an operator registration");
    }
    for (unsigned op = 0; op < MODEL.num_ops; op++) {
        if (!run_segment(m, resolver, op, nullptr)) {
            ESP_LOGE(TAG, "operator %u of %s", op, MODEL.model_id);
            return false;
        }
    }
    ESP_LOGI(TAG, "esp-tflite-micro arena: %u of %u bytes used at most (planned %u)",
             (unsigned)m->tflm_arena_used, (unsigned)m->tflm_arena_len,
             (unsigned)MODEL.tflm_arena_bytes);
    hal->model.ctx = m;
    hal->model.boundary_count = tflm_boundary_count;
    hal->model.boundary_tensor = tflm_boundary_tensor;
    hal->model.run_ops = tflm_run_ops;
    return true;
}
#endif

} // namespace

extern "C" bool sciot_esp_model_init(sciot_esp_port *port, sciot_hal *hal, const char **id,
                                     unsigned *num_ops)
{
    sciot_esp_model *m = &port->model;
    memset(m, 0, sizeof *m);
    if (!init_runner(m, hal)) {
        return false;
    }
    /* the input's description, for the test pattern */
    if (hal->model.boundary_count(hal->model.ctx, 0) != 1 ||
        !hal->model.boundary_tensor(hal->model.ctx, 0, 0, &m->input)) {
        return fail(m, "a model with one input is needed for the test pattern");
    }
    hal->user = port;
    hal->capture = capture;
    *id = model_id(m);
    *num_ops = model_ops(m);
    return true;
}

extern "C" const char *sciot_esp_model_error(const sciot_esp_model *m)
{
    if (m->error_detail != nullptr) {
        return m->error_detail;
    }
    return m->ops.error_detail != nullptr ? m->ops.error_detail : "";
}
