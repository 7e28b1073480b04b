/*
 * MQTT for the core over esp-mqtt (MQTT 3.1.1). esp-mqtt calls its event handler on its own
 * task and hands a large message over in several MQTT_EVENT_DATA chunks; the handler
 * reassembles them into one buffer and queues the complete message on a ring buffer, and
 * the device task dispatches queued messages in poll(), so the core stays single-threaded.
 * Not built in this repository's CI (no ESP-IDF here): see ../README.md.
 */
#include "hal_esp.h"

#include <string.h>

#include <stdlib.h>

#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/ringbuf.h"
#include "freertos/task.h"
#include "mqtt_client.h"

static const char *TAG = "sciot-mqtt";

#define BIT_CONNECTED BIT0
#define BIT_DISCONNECTED BIT1
#define BIT_SUBACK BIT2

typedef struct {
    esp_mqtt_client_handle_t client;
    EventGroupHandle_t events;
    RingbufHandle_t inbox;
    sciot_device *dev;
    int sub_mid;
    bool started;
    /* reassembly of one message from its chunks (esp-mqtt's task only) */
    uint8_t *rx;
    size_t rx_cap;
    char rx_topic[SCIOT_TOPIC_MAX];
    size_t rx_total;
    bool rx_skip;
} mqtt_hal;

static mqtt_hal M;

/* One inbox item: NUL-terminated topic, then the payload. */
static void deliver(const char *topic, const uint8_t *payload, size_t len)
{
    size_t tlen = strlen(topic) + 1u;
    void *item;
    if (xRingbufferSendAcquire(M.inbox, &item, tlen + len, pdMS_TO_TICKS(100)) != pdTRUE) {
        ESP_LOGW(TAG, "inbox full: dropped a message on %s", topic);
        return;
    }
    memcpy(item, topic, tlen);
    memcpy((uint8_t *)item + tlen, payload, len);
    xRingbufferSendComplete(M.inbox, item);
}

static void on_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    esp_mqtt_event_handle_t e = data;
    (void)arg;
    (void)base;
    switch ((esp_mqtt_event_id_t)id) {
    case MQTT_EVENT_CONNECTED:
        xEventGroupClearBits(M.events, BIT_DISCONNECTED);
        xEventGroupSetBits(M.events, BIT_CONNECTED);
        break;
    case MQTT_EVENT_DISCONNECTED:
    case MQTT_EVENT_ERROR:
        xEventGroupClearBits(M.events, BIT_CONNECTED);
        xEventGroupSetBits(M.events, BIT_DISCONNECTED);
        break;
    case MQTT_EVENT_SUBSCRIBED:
        if (e->msg_id == M.sub_mid) {
            xEventGroupSetBits(M.events, BIT_SUBACK);
        }
        break;
    case MQTT_EVENT_DATA:
        if (e->current_data_offset == 0) {
            /* the first chunk carries the topic and the total size */
            M.rx_total = (size_t)e->total_data_len;
            M.rx_skip = M.rx_total > M.rx_cap || (size_t)e->topic_len >= sizeof M.rx_topic;
            if (!M.rx_skip) {
                memcpy(M.rx_topic, e->topic, (size_t)e->topic_len);
                M.rx_topic[e->topic_len] = '\0';
            } else {
                ESP_LOGW(TAG, "message of %u bytes over max_payload: dropped",
                         (unsigned)M.rx_total);
            }
        }
        if (M.rx_skip) {
            break;
        }
        memcpy(M.rx + e->current_data_offset, e->data, (size_t)e->data_len);
        if ((size_t)(e->current_data_offset + e->data_len) == M.rx_total) {
            deliver(M.rx_topic, M.rx, M.rx_total);
        }
        break;
    default: break;
    }
}

static uint64_t hal_now_us(void *user)
{
    (void)user;
    return (uint64_t)esp_timer_get_time();
}

static void hal_sleep_ms(void *user, uint32_t ms)
{
    (void)user;
    vTaskDelay(pdMS_TO_TICKS(ms > 0 ? ms : 1));
}

static uint32_t hal_random32(void *user)
{
    (void)user;
    return esp_random();
}

static bool hal_connect(void *user, const char *client_id, const char *will_topic,
                        const uint8_t *will, size_t will_len, uint16_t keepalive_s)
{
    esp_mqtt_client_config_t cfg = {0};
    EventBits_t bits;
    (void)user;
    cfg.broker.address.uri = CONFIG_SCIOT_BROKER_URI;
    cfg.credentials.client_id = client_id;
    cfg.session.protocol_ver = MQTT_PROTOCOL_V_3_1_1;
    cfg.session.disable_clean_session = false;
    cfg.session.keepalive = keepalive_s;
    cfg.session.last_will.topic = will_topic;
    cfg.session.last_will.msg = (const char *)will;
    cfg.session.last_will.msg_len = (int)will_len;
    cfg.session.last_will.qos = 1;
    cfg.session.last_will.retain = 1;
    cfg.network.disable_auto_reconnect = true; /* the core reconnects, with a new session */
    cfg.buffer.size = 8192;
    xEventGroupClearBits(M.events, BIT_CONNECTED | BIT_DISCONNECTED);
    if (M.client == NULL) {
        M.client = esp_mqtt_client_init(&cfg);
        if (M.client == NULL) {
            return false;
        }
        esp_mqtt_client_register_event(M.client, ESP_EVENT_ANY_ID, on_event, NULL);
    } else if (esp_mqtt_set_config(M.client, &cfg) != ESP_OK) {
        return false;
    }
    if (!M.started) {
        M.started = esp_mqtt_client_start(M.client) == ESP_OK;
    } else {
        (void)esp_mqtt_client_reconnect(M.client);
    }
    bits = xEventGroupWaitBits(M.events, BIT_CONNECTED | BIT_DISCONNECTED, pdFALSE, pdFALSE,
                               pdMS_TO_TICKS(10000));
    return (bits & BIT_CONNECTED) != 0;
}

static void hal_disconnect(void *user)
{
    (void)user;
    if (M.client != NULL) {
        (void)esp_mqtt_client_disconnect(M.client);
    }
    xEventGroupClearBits(M.events, BIT_CONNECTED);
}

static bool hal_publish(void *user, const char *topic, const uint8_t *p, size_t n, uint8_t qos,
                        bool retain)
{
    (void)user;
    if ((xEventGroupGetBits(M.events) & BIT_CONNECTED) == 0) {
        return false;
    }
    return esp_mqtt_client_publish(M.client, topic, (const char *)p, (int)n, qos, retain) >= 0;
}

static bool hal_subscribe(void *user, const char *filter, uint8_t qos)
{
    EventBits_t bits;
    (void)user;
    xEventGroupClearBits(M.events, BIT_SUBACK);
    M.sub_mid = esp_mqtt_client_subscribe(M.client, filter, qos);
    if (M.sub_mid < 0) {
        return false;
    }
    bits = xEventGroupWaitBits(M.events, BIT_SUBACK | BIT_DISCONNECTED, pdFALSE, pdFALSE,
                               pdMS_TO_TICKS(5000));
    return (bits & BIT_SUBACK) != 0;
}

static bool hal_poll(void *user, uint32_t timeout_ms)
{
    size_t size;
    TickType_t wait = pdMS_TO_TICKS(timeout_ms);
    (void)user;
    for (;;) {
        uint8_t *item = xRingbufferReceive(M.inbox, &size, wait);
        if (item == NULL) {
            break;
        }
        {
            size_t tlen = strlen((const char *)item) + 1u;
            sciot_device_on_message(M.dev, (const char *)item, item + tlen, size - tlen);
        }
        vRingbufferReturnItem(M.inbox, item);
        wait = 0; /* drain what is there, then return */
    }
    return (xEventGroupGetBits(M.events) & BIT_CONNECTED) != 0;
}

bool sciot_esp_mqtt_init(sciot_hal *hal, sciot_device *dev, size_t max_payload)
{
    M.events = xEventGroupCreate();
    M.rx_cap = max_payload;
    M.rx = heap_caps_malloc(max_payload, MALLOC_CAP_SPIRAM | MALLOC_CAP_8BIT);
    if (M.rx == NULL) {
        M.rx = malloc(max_payload);
    }
    /* room for a result plus the control messages that may arrive meanwhile */
    M.inbox = xRingbufferCreate(2u * max_payload + 8192u, RINGBUF_TYPE_NOSPLIT);
    M.dev = dev;
    if (M.events == NULL || M.rx == NULL || M.inbox == NULL) {
        return false;
    }
    hal->now_us = hal_now_us;
    hal->sleep_ms = hal_sleep_ms;
    hal->random = hal_random32;
    hal->connect = hal_connect;
    hal->disconnect = hal_disconnect;
    hal->publish = hal_publish;
    hal->subscribe = hal_subscribe;
    hal->poll = hal_poll;
    return true;
}
