/* The ESP-IDF port's HAL pieces (not built here: see ../README.md). */
#ifndef SCIOT_HAL_ESP_H
#define SCIOT_HAL_ESP_H

#include <stdbool.h>
#include <stddef.h>

#include "sciot/device.h"
#include "sciot/ops_adapter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most tensors live at any boundary of the model, together (the TFLM runner keeps each). */
#define SCIOT_ESP_MAX_STORED 64

/* The model and the input: the caller owns it (no globals), sciot_esp_model_init fills it. */
typedef struct {
    sciot_ops_adapter ops; /* the blob: boundaries, and the operators with sciot_ops */
    /* esp-tflite-micro: every tensor live at some boundary, with its buffer */
    sciot_tensor stored[SCIOT_ESP_MAX_STORED];
    unsigned n_stored;
    uint8_t *tflm_arena;
    unsigned frame;           /* of the test pattern */
    const char *error_detail; /* why the last esp-tflite-micro run failed (NULL: it did not) */
} sciot_esp_model;

/* Clock, MQTT (esp-mqtt with chunk reassembly) and randomness. */
bool sciot_esp_mqtt_init(sciot_hal *hal, sciot_device *dev, size_t max_payload);

/* Model boundaries from the sciot blob through the ops adapter, operators through
 * esp-tflite-micro per-op segments (CONFIG_SCIOT_RUNNER_TFLM) or sciot_ops, test-pattern
 * input. Sets hal->model, hal->capture and hal->user (the model: hal_mqtt.c keeps its own
 * state). model_id/num_ops out. */
bool sciot_esp_model_init(sciot_esp_model *model, sciot_hal *hal, const char **model_id,
                          unsigned *num_ops);

/* Why the last model call failed ("" when none did). */
const char *sciot_esp_model_error(const sciot_esp_model *model);

#ifdef __cplusplus
}
#endif

#endif
