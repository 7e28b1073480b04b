/* The ESP-IDF port's HAL pieces (not built here: see ../README.md). */
#ifndef SCIOT_HAL_ESP_H
#define SCIOT_HAL_ESP_H

#include <stdbool.h>
#include <stddef.h>

#include "sciot/device.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Clock, MQTT (esp-mqtt with chunk reassembly) and randomness. */
bool sciot_esp_mqtt_init(sciot_hal *hal, sciot_device *dev, size_t max_payload);

/* Model boundaries from the sciot blob, operators through esp-tflite-micro per-op segments
 * (CONFIG_SCIOT_RUNNER_TFLM) or sciot_ops, test-pattern input. model_id/num_ops out. */
bool sciot_esp_model_init(sciot_hal *hal, const char **model_id, unsigned *num_ops);

#ifdef __cplusplus
}
#endif

#endif
