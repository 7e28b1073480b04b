/*
 * sciot firmware for ESP32: Wi-Fi, the session counter in NVS, and the portable core's loop
 * (firmware-bridge/core) with esp-mqtt and esp-tflite-micro behind its HAL. Settings come
 * from Kconfig (idf.py menuconfig, "sciot device"); see firmware-bridge/README.md.
 */
#include <stdio.h>
#include <string.h>

#include "esp_event.h"
#include "esp_heap_caps.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_timer.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/task.h"
#include "hal_esp.h"
#include "nvs.h"
#include "nvs_flash.h"
#include "sdkconfig.h"

#define WIFI_UP BIT0

static const char *TAG = "sciot";

/* arg: the event group whose WIFI_UP bit says the station has an address. */
static void on_wifi(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    EventGroupHandle_t wifi = arg;
    if (base == WIFI_EVENT && (id == WIFI_EVENT_STA_START || id == WIFI_EVENT_STA_DISCONNECTED)) {
        xEventGroupClearBits(wifi, WIFI_UP);
        esp_wifi_connect(); /* the core sees the broker go and comes back by itself */
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        const ip_event_got_ip_t *got = data;
        ESP_LOGI(TAG, "wifi: got address " IPSTR, IP2STR(&got->ip_info.ip));
        xEventGroupSetBits(wifi, WIFI_UP);
    }
}

/* Connects as a station with the Kconfig SSID and password; returns once it has an address. */
static void wifi_start(void)
{
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    wifi_config_t cfg;
    EventGroupHandle_t wifi = xEventGroupCreate();
    memset(&cfg, 0, sizeof cfg);
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    esp_netif_create_default_wifi_sta();
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_wifi, wifi));
    ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_wifi, wifi));
    strncpy((char *)cfg.sta.ssid, CONFIG_SCIOT_WIFI_SSID, sizeof cfg.sta.ssid);
    strncpy((char *)cfg.sta.password, CONFIG_SCIOT_WIFI_PASSWORD, sizeof cfg.sta.password);
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &cfg));
    ESP_ERROR_CHECK(esp_wifi_start());
    ESP_LOGI(TAG, "wifi: connecting to \"%s\"", CONFIG_SCIOT_WIFI_SSID);
    xEventGroupWaitBits(wifi, WIFI_UP, pdFALSE, pdFALSE, portMAX_DELAY);
}

/* topics.md, "Sessions": the counter survives restarts, so a new connection is newer. */
static uint32_t session_load(void)
{
    nvs_handle_t h;
    uint32_t v = 0;
    if (nvs_open("sciot", NVS_READONLY, &h) == ESP_OK) {
        (void)nvs_get_u32(h, "session", &v);
        nvs_close(h);
    }
    return v;
}

static void session_store(uint32_t v)
{
    nvs_handle_t h;
    if (nvs_open("sciot", NVS_READWRITE, &h) == ESP_OK) {
        (void)nvs_set_u32(h, "session", v);
        (void)nvs_commit(h);
        nvs_close(h);
    }
}

static void on_log(void *user, int level, const char *event, const char *detail)
{
    (void)user;
    if (level == 0) {
        ESP_LOGI(TAG, "%s %s", event, detail);
    } else {
        ESP_LOGW(TAG, "%s %s", event, detail);
    }
}

/* What menuconfig must set before the device can do anything. */
static bool settings_ok(void)
{
    if (CONFIG_SCIOT_WIFI_SSID[0] == '\0' || CONFIG_SCIOT_BROKER_URI[0] == '\0' ||
        CONFIG_SCIOT_DEVICE_ID[0] == '\0') {
        ESP_LOGE(TAG, "set the Wi-Fi SSID, the broker URI and the device id: idf.py menuconfig, "
                      "\"sciot device\"");
        return false;
    }
    return true;
}

static void run(sciot_device *dev, sciot_esp_port *port, uint32_t session)
{
    int64_t next_infer = esp_timer_get_time();
    for (;;) {
        sciot_device_step(dev, 50);
        if (dev->session != session) {
            session_store(session = dev->session);
        }
        if (esp_timer_get_time() >= next_infer) {
            sciot_inference rec;
            if (sciot_device_infer(dev, &rec)) {
                ESP_LOGI(TAG, "inference %u split %u %s (%s) %.1f ms, %u detections",
                         (unsigned)rec.seq, rec.split,
                         rec.path == SCIOT_PATH_OFFLOAD ? "offload"
                         : rec.path == SCIOT_PATH_LOCAL ? "local"
                                                        : "fallback",
                         rec.reason, rec.total_ms, (unsigned)rec.n_detections);
            } else {
                ESP_LOGW(TAG, "inference failed: %s (%s)", dev->error_detail,
                         sciot_esp_model_error(&port->model));
            }
            next_infer = esp_timer_get_time() + (int64_t)CONFIG_SCIOT_INFER_INTERVAL_MS * 1000;
        }
    }
}

void app_main(void)
{
    /* large (the device's bookkeeping, the live tensors' table): static, not on the stack */
    static sciot_device dev;
    static sciot_esp_port port;
    sciot_config cfg;
    sciot_hal hal;
    const char *model_id = NULL;
    unsigned num_ops = 0;
    size_t mem_len;
    void *mem;
    esp_err_t err;
    if (!settings_ok()) {
        return;
    }
    err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        ESP_ERROR_CHECK(nvs_flash_init());
    }
    memset(&hal, 0, sizeof hal);
    if (!sciot_esp_model_init(&port, &hal, &model_id, &num_ops)) {
        ESP_LOGE(TAG, "model init failed: %s", sciot_esp_model_error(&port.model));
        return;
    }
    ESP_LOGI(TAG, "model %s: %u operators, split points 0..%u", model_id, num_ops, num_ops);
    wifi_start();
    if (!sciot_esp_mqtt_init(&port, &hal, &dev, CONFIG_SCIOT_MAX_PAYLOAD)) {
        ESP_LOGE(TAG, "mqtt init failed (memory?)");
        return;
    }
    hal.log = on_log;
    sciot_config_defaults(&cfg);
    cfg.id = CONFIG_SCIOT_DEVICE_ID;
    cfg.kind = CONFIG_SCIOT_DEVICE_KIND;
    cfg.fw = "sciot-fw-esp32 0.1.0";
    cfg.model_id = model_id;
    cfg.num_ops = (uint16_t)num_ops;
    cfg.max_payload = CONFIG_SCIOT_MAX_PAYLOAD;
    cfg.heartbeat_interval_s = CONFIG_SCIOT_HEARTBEAT_MS / 1000.0;
    cfg.result_timeout_s = CONFIG_SCIOT_RESULT_TIMEOUT_MS / 1000.0;
    cfg.keepalive_s = (uint16_t)CONFIG_SCIOT_KEEPALIVE_S;
    cfg.split_pin = CONFIG_SCIOT_SPLIT_PIN;
    cfg.session = session_load();

    /* the only allocation of the core's memory, once, before it runs */
    mem_len = sciot_device_memory(&cfg, &hal);
    mem = heap_caps_malloc(mem_len, MALLOC_CAP_SPIRAM | MALLOC_CAP_8BIT);
    if (mem == NULL) {
        mem = heap_caps_malloc(mem_len, MALLOC_CAP_8BIT);
    }
    if (mem == NULL || !sciot_device_init(&dev, &cfg, &hal, mem, mem_len)) {
        ESP_LOGE(TAG, "device init failed (%u bytes): %s", (unsigned)mem_len,
                 mem == NULL ? "no memory" : sciot_strerror(dev.error));
        return;
    }
    ESP_LOGI(TAG, "device %s: broker %s, session %u", cfg.id, CONFIG_SCIOT_BROKER_URI,
             (unsigned)cfg.session);
    run(&dev, &port, cfg.session);
}
