/*
 * The model for the core on the ESP32: boundaries from the sciot model blob (sciot_ops), the
 * operators through esp-tflite-micro, one exported .tflite segment per operator
 * (`sciot-mqtt models export-c`), or through sciot_ops itself (CONFIG_SCIOT_RUNNER_SCIOT_OPS).
 * Input: the host build's test pattern. Not built in this repository's CI: see ../README.md.
 *
 * The model files are those of fomo96; for another model, export it and change the two
 * names below (sciot_<id>_blob, sciot_<id>_op_segments). Each segment's entry names the
 * manifest tensors it reads and writes, in its own input and output order.
 */
#include <stdlib.h>
#include <string.h>

#include "esp_heap_caps.h"
#include "esp_timer.h"
#include "hal_esp.h"
#include "fomo96_model.h"
#include "fomo96_segments.h"
#include "sciot_ops.h"
#include "sdkconfig.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

#define BLOB sciot_fomo96_blob
#define SEGMENTS sciot_fomo96_op_segments
#define TFLM_ARENA (160 * 1024)
#define MAX_STORE 64

namespace {

sciot_model g_model;
uint8_t *g_ops_arena;
size_t g_ops_arena_len;
uint8_t *g_tflm_arena;
unsigned g_frame;

/* Every tensor live at some boundary, by manifest index: the runner's working memory. */
struct Stored {
    uint32_t index;
    uint8_t *data;
    uint32_t nbytes;
};
Stored g_store[MAX_STORE];
unsigned g_stored;

Stored *find(uint32_t index)
{
    for (unsigned i = 0; i < g_stored; i++) {
        if (g_store[i].index == index) {
            return &g_store[i];
        }
    }
    return nullptr;
}

tflite::MicroMutableOpResolver<4> &resolver()
{
    static tflite::MicroMutableOpResolver<4> r;
    static bool ready = false;
    if (!ready) {
        r.AddConv2D();
        r.AddDepthwiseConv2D();
        r.AddAdd();
        r.AddSoftmax();
        ready = true;
    }
    return r;
}

unsigned boundary_count(void *, uint16_t split)
{
    return sciot_model_boundary_count(&g_model, split);
}

bool boundary_tensor(void *, uint16_t split, unsigned k, sciot_tensor *out)
{
    return sciot_model_boundary_tensor(&g_model, split, k, out);
}

#if CONFIG_SCIOT_RUNNER_SCIOT_OPS
double *g_op_ms;
unsigned g_first;

uint64_t timer_now(void *)
{
    return (uint64_t)esp_timer_get_time();
}

void timer_done(void *, unsigned op, uint64_t start, uint64_t end)
{
    g_op_ms[op - g_first] = (double)(end - start) / 1000.0;
}

bool run_ops(void *, uint16_t first, uint16_t last, const sciot_tensor *in, unsigned n_in,
             sciot_tensor *out, unsigned n_out, double *op_ms)
{
    sciot_op_timer timer = {timer_now, timer_done, nullptr};
    g_op_ms = op_ms;
    g_first = first;
    return sciot_model_run(&g_model, first, last, in, n_in, out, n_out, g_ops_arena,
                           g_ops_arena_len, &timer) == SCIOT_MODEL_OK;
}
#else
bool run_ops(void *, uint16_t first, uint16_t last, const sciot_tensor *in, unsigned n_in,
             sciot_tensor *out, unsigned n_out, double *op_ms)
{
    for (unsigned k = 0; k < n_in; k++) {
        Stored *s = find(in[k].index);
        if (s == nullptr || s->nbytes != in[k].nbytes) {
            return false;
        }
        memcpy(s->data, in[k].data, s->nbytes);
    }
    for (unsigned op = first; op < last; op++) {
        const sciot_segment &seg = SEGMENTS[op];
        /* one interpreter at a time in one arena: a thin port trades speed for memory */
        tflite::MicroInterpreter interp(tflite::GetModel(seg.tflite), resolver(),
                                        g_tflm_arena, TFLM_ARENA);
        if (interp.AllocateTensors() != kTfLiteOk) {
            return false;
        }
        for (unsigned k = 0; k < seg.num_inputs; k++) {
            Stored *s = find(seg.inputs[k]);
            if (s == nullptr || interp.input(k)->bytes != s->nbytes) {
                return false;
            }
            memcpy(interp.input(k)->data.raw, s->data, s->nbytes);
        }
        int64_t t0 = esp_timer_get_time();
        if (interp.Invoke() != kTfLiteOk) {
            return false;
        }
        op_ms[op - first] = (double)(esp_timer_get_time() - t0) / 1000.0;
        for (unsigned k = 0; k < seg.num_outputs; k++) {
            Stored *s = find(seg.outputs[k]);
            if (s == nullptr || interp.output(k)->bytes != s->nbytes) {
                return false;
            }
            memcpy(s->data, interp.output(k)->data.raw, s->nbytes);
        }
    }
    for (unsigned k = 0; k < n_out; k++) {
        Stored *s = find(out[k].index);
        if (s == nullptr || s->nbytes != out[k].nbytes) {
            return false;
        }
        memcpy(out[k].data, s->data, s->nbytes);
    }
    return true;
}
#endif

/* The host build's test pattern (port/host/main.c), so both devices see the same frames. */
bool capture(void *, uint8_t *input, size_t nbytes)
{
    size_t side = 96, at = (g_frame * 7u) % 80u;
    for (size_t i = 0; i < nbytes; i++) {
        size_t px = i / 3u, x = px % side, y = px / side;
        int v = (int)((x + y) % 256u) - 128;
        if (x >= at && x < at + 12u && y >= at && y < at + 12u) {
            v = 127;
        }
        input[i] = (uint8_t)(int8_t)v;
    }
    g_frame++;
    return true;
}

uint8_t *big_alloc(size_t n)
{
    void *p = heap_caps_malloc(n, MALLOC_CAP_SPIRAM | MALLOC_CAP_8BIT);
    return static_cast<uint8_t *>(p != nullptr ? p : malloc(n));
}

}  // namespace

extern "C" bool sciot_esp_model_init(sciot_hal *hal, const char **model_id, unsigned *num_ops)
{
    if (!sciot_model_open(&g_model, BLOB, sizeof BLOB)) {
        return false;
    }
    g_ops_arena_len = sciot_model_arena_size(&g_model);
    g_ops_arena = big_alloc(g_ops_arena_len ? g_ops_arena_len : 1u);
    g_tflm_arena = big_alloc(TFLM_ARENA);
    for (unsigned s = 0; s <= g_model.num_ops; s++) {
        for (unsigned k = 0; k < sciot_model_boundary_count(&g_model, s); k++) {
            sciot_tensor t;
            if (!sciot_model_boundary_tensor(&g_model, s, k, &t) || find(t.index) != nullptr) {
                continue;
            }
            if (g_stored == MAX_STORE) {
                return false;
            }
            g_store[g_stored++] = {t.index, big_alloc(t.nbytes), t.nbytes};
        }
    }
    hal->model.ctx = nullptr;
    hal->model.boundary_count = boundary_count;
    hal->model.boundary_tensor = boundary_tensor;
    hal->model.run_ops = run_ops;
    hal->capture = capture;
    *model_id = g_model.model_id;
    *num_ops = g_model.num_ops;
    return g_ops_arena != nullptr && g_tflm_arena != nullptr;
}
