/*
 * The ESP-IDF port's HAL pieces: MQTT over esp-mqtt (hal_mqtt.c) and the model
 * (runner_tflm.cc). Each keeps its state in a struct the caller owns; main.c owns one
 * sciot_esp_port, which holds both and is the HAL's `user`.
 */
#ifndef SCIOT_HAL_ESP_H
#define SCIOT_HAL_ESP_H

#include <stdbool.h>
#include <stddef.h>

#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/ringbuf.h"
#include "mqtt_client.h"
#include "sciot/device.h"
#include "sciot/ops_adapter.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most tensors live at any boundary of the model, together (the TFLM runner keeps each). */
#define SCIOT_ESP_MAX_STORED 64

/* MQTT: esp-mqtt's client, and the messages its task hands to the device task. */
typedef struct {
    esp_mqtt_client_handle_t client;
    EventGroupHandle_t events; /* connected, disconnected, SUBACK */
    RingbufHandle_t inbox;     /* complete messages: NUL-terminated topic, then the payload */
    sciot_device *dev;
    int sub_mid;
    bool started;
    /* reassembly of one message from its MQTT_EVENT_DATA chunks (esp-mqtt's task only) */
    uint8_t *rx;
    size_t rx_cap;
    char rx_topic[SCIOT_TOPIC_MAX];
    size_t rx_total;
    bool rx_skip;
} sciot_esp_mqtt;

/* The model and the input. */
typedef struct {
    /* the blob through the ops adapter (CONFIG_SCIOT_RUNNER_SCIOT_OPS only) */
    sciot_ops_adapter ops;
    /* esp-tflite-micro: every tensor live at some boundary, with its buffer, and the arena
     * one operator's interpreter runs in */
    sciot_tensor stored[SCIOT_ESP_MAX_STORED];
    unsigned n_stored;
    uint8_t *tflm_arena;
    size_t tflm_arena_len;
    size_t tflm_arena_used;   /* the most any operator's interpreter took (arena_used_bytes) */
    sciot_tensor input;       /* the model input, described: the test pattern's type */
    unsigned frame;           /* of the test pattern */
    const char *error_detail; /* why the last call failed (NULL: it did not) */
} sciot_esp_model;

/* Everything the HAL functions reach through `user`. */
typedef struct {
    sciot_esp_mqtt mqtt;
    sciot_esp_model model;
} sciot_esp_port;

/* Clock, MQTT (esp-mqtt with chunk reassembly, the broker and TLS settings from Kconfig) and
 * randomness into hal; their state in port->mqtt. Sets hal->user to port. */
bool sciot_esp_mqtt_init(sciot_esp_port *port, sciot_hal *hal, sciot_device *dev,
                         size_t max_payload);

/* The exported model (main/model/sciot_exported_model.h): boundaries and operators through
 * esp-tflite-micro, one segment per operator (CONFIG_SCIOT_RUNNER_TFLM), or the sciot model
 * blob through the ops adapter (CONFIG_SCIOT_RUNNER_SCIOT_OPS); the test pattern as input.
 * Sets hal->model and hal->capture (which reads port->model); model_id/num_ops out. */
bool sciot_esp_model_init(sciot_esp_port *port, sciot_hal *hal, const char **id, unsigned *num_ops);

/* Why the last model call failed ("" when none did). */
const char *sciot_esp_model_error(const sciot_esp_model *model);

#ifdef __cplusplus
}
#endif

#endif
