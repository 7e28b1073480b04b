/*
 * MQTT for the core over esp-mqtt (MQTT 3.1.1). esp-mqtt calls its event handler on its own
 * task and hands a large message over in several MQTT_EVENT_DATA chunks; the handler
 * reassembles them into one buffer and queues the complete message on a ring buffer, and
 * the device task dispatches queued messages in poll(), so the core stays single-threaded.
 * The state is the caller's (sciot_esp_mqtt in sciot_esp_port, the HAL's user); the broker,
 * login and TLS settings come from Kconfig (main/Kconfig.projbuild).
 */
#include "hal_esp.h"

#include <stdlib.h>
#include <string.h>

#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_random.h"
#include "esp_timer.h"
#include "freertos/task.h"
#include "sdkconfig.h"

static const char *TAG = "sciot-mqtt";

#define BIT_CONNECTED BIT0
#define BIT_DISCONNECTED BIT1
#define BIT_SUBACK BIT2

#if CONFIG_SCIOT_TLS
/* PEM files embedded by main/CMakeLists.txt (EMBED_TXTFILES: NUL-terminated) */
extern const char ca_crt_start[] asm("_binary_ca_crt_start");
#if CONFIG_SCIOT_TLS_CLIENT_CERT
extern const char client_crt_start[] asm("_binary_client_crt_start");
extern const char client_key_start[] asm("_binary_client_key_start");
#endif
#endif

static sciot_esp_mqtt *mqtt_of(void *user)
{
    return &((sciot_esp_port *)user)->mqtt;
}

/* One inbox item: NUL-terminated topic, then the payload. */
static void deliver(sciot_esp_mqtt *m, const char *topic, const uint8_t *payload, size_t len)
{
    size_t tlen = strlen(topic) + 1u;
    void *item;
    if (xRingbufferSendAcquire(m->inbox, &item, tlen + len, pdMS_TO_TICKS(100)) != pdTRUE) {
        ESP_LOGW(TAG, "inbox full: dropped a message on %s", topic);
        return;
    }
    memcpy(item, topic, tlen);
    memcpy((uint8_t *)item + tlen, payload, len);
    xRingbufferSendComplete(m->inbox, item);
}

/* esp-mqtt's task: arg is the sciot_esp_mqtt given at registration. */
static void on_event(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    sciot_esp_mqtt *m = arg;
    esp_mqtt_event_handle_t e = data;
    (void)base;
    switch ((esp_mqtt_event_id_t)id) {
    case MQTT_EVENT_CONNECTED:
        xEventGroupClearBits(m->events, BIT_DISCONNECTED);
        xEventGroupSetBits(m->events, BIT_CONNECTED);
        break;
    case MQTT_EVENT_DISCONNECTED:
    case MQTT_EVENT_ERROR:
        xEventGroupClearBits(m->events, BIT_CONNECTED);
        xEventGroupSetBits(m->events, BIT_DISCONNECTED);
        break;
    case MQTT_EVENT_SUBSCRIBED:
        if (e->msg_id == m->sub_mid) {
            xEventGroupSetBits(m->events, BIT_SUBACK);
        }
        break;
    case MQTT_EVENT_DATA:
        if (e->current_data_offset == 0) {
            /* the first chunk carries the topic and the total size */
            m->rx_total = (size_t)e->total_data_len;
            m->rx_skip = m->rx_total > m->rx_cap || (size_t)e->topic_len >= sizeof m->rx_topic;
            if (!m->rx_skip) {
                memcpy(m->rx_topic, e->topic, (size_t)e->topic_len);
                m->rx_topic[e->topic_len] = '\0';
            } else {
                ESP_LOGW(TAG, "message of %u bytes over max_payload: dropped",
                         (unsigned)m->rx_total);
            }
        }
        if (m->rx_skip) {
            break;
        }
        memcpy(m->rx + e->current_data_offset, e->data, (size_t)e->data_len);
        if ((size_t)(e->current_data_offset + e->data_len) == m->rx_total) {
            deliver(m, m->rx_topic, m->rx, m->rx_total);
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

/* The broker from Kconfig; the username is the device id (mosquitto/README.md). */
static void broker_config(esp_mqtt_client_config_t *cfg, const char *client_id)
{
    cfg->broker.address.uri = CONFIG_SCIOT_BROKER_URI;
    cfg->credentials.client_id = client_id;
    if (CONFIG_SCIOT_DEVICE_PASSWORD[0] != '\0') {
        cfg->credentials.username = client_id;
        cfg->credentials.authentication.password = CONFIG_SCIOT_DEVICE_PASSWORD;
    }
#if CONFIG_SCIOT_TLS
    cfg->broker.verification.certificate = ca_crt_start;
#if CONFIG_SCIOT_TLS_CLIENT_CERT
    cfg->credentials.authentication.certificate = client_crt_start;
    cfg->credentials.authentication.key = client_key_start;
#endif
#endif
}

static bool hal_connect(void *user, const char *client_id, const char *will_topic,
                        const uint8_t *will, size_t will_len, uint16_t keepalive_s)
{
    sciot_esp_mqtt *m = mqtt_of(user);
    esp_mqtt_client_config_t cfg;
    EventBits_t bits;
    memset(&cfg, 0, sizeof cfg);
    broker_config(&cfg, client_id);
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
    xEventGroupClearBits(m->events, BIT_CONNECTED | BIT_DISCONNECTED);
    if (m->client == NULL) {
        m->client = esp_mqtt_client_init(&cfg);
        if (m->client == NULL) {
            return false;
        }
        esp_mqtt_client_register_event(m->client, ESP_EVENT_ANY_ID, on_event, m);
    } else if (esp_mqtt_set_config(m->client, &cfg) != ESP_OK) {
        return false;
    }
    if (!m->started) {
        m->started = esp_mqtt_client_start(m->client) == ESP_OK;
    } else {
        (void)esp_mqtt_client_reconnect(m->client);
    }
    bits = xEventGroupWaitBits(m->events, BIT_CONNECTED | BIT_DISCONNECTED, pdFALSE, pdFALSE,
                               pdMS_TO_TICKS(10000));
    return (bits & BIT_CONNECTED) != 0;
}

static void hal_disconnect(void *user)
{
    sciot_esp_mqtt *m = mqtt_of(user);
    if (m->client != NULL) {
        (void)esp_mqtt_client_disconnect(m->client);
    }
    xEventGroupClearBits(m->events, BIT_CONNECTED);
}

static bool hal_publish(void *user, const char *topic, const uint8_t *p, size_t n, uint8_t qos,
                        bool retain)
{
    sciot_esp_mqtt *m = mqtt_of(user);
    if ((xEventGroupGetBits(m->events) & BIT_CONNECTED) == 0) {
        return false;
    }
    return esp_mqtt_client_publish(m->client, topic, (const char *)p, (int)n, qos, retain) >= 0;
}

static bool hal_subscribe(void *user, const char *filter, uint8_t qos)
{
    sciot_esp_mqtt *m = mqtt_of(user);
    EventBits_t bits;
    xEventGroupClearBits(m->events, BIT_SUBACK);
    m->sub_mid = esp_mqtt_client_subscribe(m->client, filter, qos);
    if (m->sub_mid < 0) {
        return false;
    }
    bits = xEventGroupWaitBits(m->events, BIT_SUBACK | BIT_DISCONNECTED, pdFALSE, pdFALSE,
                               pdMS_TO_TICKS(5000));
    return (bits & BIT_SUBACK) != 0;
}

static bool hal_poll(void *user, uint32_t timeout_ms)
{
    sciot_esp_mqtt *m = mqtt_of(user);
    size_t size;
    TickType_t wait = pdMS_TO_TICKS(timeout_ms);
    for (;;) {
        uint8_t *item = xRingbufferReceive(m->inbox, &size, wait);
        if (item == NULL) {
            break;
        }
        {
            size_t tlen = strlen((const char *)item) + 1u;
            sciot_device_on_message(m->dev, (const char *)item, item + tlen, size - tlen);
        }
        vRingbufferReturnItem(m->inbox, item);
        wait = 0; /* drain what is there, then return */
    }
    return (xEventGroupGetBits(m->events) & BIT_CONNECTED) != 0;
}

bool sciot_esp_mqtt_init(sciot_esp_port *port, sciot_hal *hal, sciot_device *dev,
                         size_t max_payload)
{
    sciot_esp_mqtt *m = &port->mqtt;
    memset(m, 0, sizeof *m);
    m->events = xEventGroupCreate();
    m->rx_cap = max_payload;
    m->rx = heap_caps_malloc(max_payload, MALLOC_CAP_SPIRAM | MALLOC_CAP_8BIT);
    if (m->rx == NULL) {
        m->rx = malloc(max_payload);
    }
    /* room for a result plus the control messages that may arrive meanwhile */
    m->inbox = xRingbufferCreate(2u * max_payload + 8192u, RINGBUF_TYPE_NOSPLIT);
    m->dev = dev;
    if (m->events == NULL || m->rx == NULL || m->inbox == NULL) {
        return false;
    }
    hal->user = port;
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
