/*
 * sciot/device.h: the device side of the contract (topics.md), as the Python reference device
 * (sciot_mqtt/device/: device.py, presence.py, inbox.py, inference.py, offload.py) does it,
 * in portable C99.
 *
 * No heap and no OS calls: the caller gives one memory block at init (its size from
 * sciot_device_memory()), and everything hardware-specific goes through sciot_hal. The
 * device is driven by its owner's loop:
 *
 *     sciot_device_init(&dev, &cfg, &hal, mem, mem_len);
 *     for (;;) {
 *         sciot_device_step(&dev, 50);        // connect, heartbeats, receive
 *         if (time_for_an_inference) sciot_device_infer(&dev, &record);
 *     }
 *     sciot_device_stop(&dev);                // retained state online=false, disconnect
 *
 * The HAL's poll() delivers every received message with sciot_device_on_message().
 */
#ifndef SCIOT_DEVICE_H
#define SCIOT_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sciot/msgs.h"
#include "sciot/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SCIOT_MAX_SERVICES 8
#define SCIOT_MAX_DETECTIONS 256
#define SCIOT_TOPIC_MAX 160 /* sciot/v1/dev/{id}/timings/{instance} */
#define SCIOT_TEXT_MAX 72

/* The model's part of the HAL, with its own context: the ops adapter (sciot/ops_adapter.h)
 * fills it for sciot_ops; a port that runs the operators elsewhere fills it itself. */
/* A FOMO detection, decoded by the device from its own output for its inference record (the
 * wire carries the raw output only). */
typedef struct {
    int64_t cls, x, y;
    double score;
} sciot_detection;

typedef struct {
    void *ctx;
    /* The tensors live at boundary `split` (0..num_ops), in manifest order, described
     * (data NULL). */
    unsigned (*boundary_count)(void *ctx, uint16_t split);
    bool (*boundary_tensor)(void *ctx, uint16_t split, unsigned k, sciot_tensor *out);
    /* Run operators [first, last) from the tensors live at `first` (in, read only) into
     * those live at `last` (out, written); every tensor has its data and nbytes set.
     * op_ms[i] gets the time of operator first + i in milliseconds. */
    bool (*run_ops)(void *ctx, uint16_t first, uint16_t last, const sciot_tensor *in, unsigned n_in,
                    sciot_tensor *out, unsigned n_out, double *op_ms);
} sciot_model_hal;

typedef struct {
    void *user;
    /* Monotonic microseconds. */
    uint64_t (*now_us)(void *user);
    /* Sleep (or wait for an event) for up to ms; used while disconnected. */
    void (*sleep_ms)(void *user, uint32_t ms);
    /* 32 random bits for reconnect jitter (may be NULL: no jitter). */
    uint32_t (*random)(void *user);
    /* MQTT 3.1.1 clean session with a retained QoS 1 will; true once CONNACK arrived. */
    bool (*connect)(void *user, const char *client_id, const char *will_topic, const uint8_t *will,
                    size_t will_len, uint16_t keepalive_s);
    void (*disconnect)(void *user);
    /* QoS 1 publishes return once the message is handed to the transport. */
    bool (*publish)(void *user, const char *topic, const uint8_t *payload, size_t len, uint8_t qos,
                    bool retain);
    bool (*subscribe)(void *user, const char *filter, uint8_t qos);
    /* Wait up to timeout_ms for traffic, delivering each complete message through
     * sciot_device_on_message(); false when the connection is lost. */
    bool (*poll)(void *user, uint32_t timeout_ms);
    /* The model (its own context). */
    sciot_model_hal model;
    /* Fill the model input (boundary 0's single tensor) with the next image. */
    bool (*capture)(void *user, uint8_t *input, size_t nbytes);
    /* Optional: one log event (level 0 info, 1 warning), e.g. "decision rejected". */
    void (*log)(void *user, int level, const char *event, const char *detail);
} sciot_hal;

typedef struct {
    const char *id;       /* device id (topics.md pattern) */
    const char *kind;     /* announced in birth, e.g. "esp32s3", "host-c" */
    const char *fw;       /* firmware version, or NULL */
    const char *model_id; /* the one model it carries */
    uint16_t num_ops;
    uint32_t max_payload;        /* largest payload it accepts (its receive buffer) */
    double heartbeat_interval_s; /* until an assignment says otherwise */
    uint16_t keepalive_s;
    double reconnect_min_s, reconnect_max_s;
    int32_t split_pin; /* -1: follow the service's decisions */
    double result_timeout_s;
    uint32_t session; /* last session counter used (kept in NVS on the ESP32) */
} sciot_config;

void sciot_config_defaults(sciot_config *cfg);

typedef enum { SCIOT_PATH_OFFLOAD = 0, SCIOT_PATH_LOCAL, SCIOT_PATH_FALLBACK } sciot_path;

/* One inference as the device saw it (InferenceRecord of the Python device). */
typedef struct {
    uint32_t seq;
    uint16_t split;
    uint8_t path;       /* sciot_path */
    const char *reason; /* "answered", "local", "probe", "pinned", "timeout", ... */
    double head_ms;     /* operators run on the device before sending */
    double total_ms;    /* input to result on the device's clock */
    uint32_t sent_bytes;
    bool has_rtt;
    double rtt_ms;
    const uint8_t *output; /* the raw model output (valid until the next inference) */
    uint32_t output_bytes;
    uint32_t n_detections;
    const sciot_detection *detections;
} sciot_inference;

typedef struct {
    uint32_t connects, disconnects, heartbeats, assignments, rebirths, fallbacks, resumes;
    uint32_t decisions, decisions_rejected, errors_received;
    uint32_t inferences, offloaded, local, fallbacks_local;
    uint32_t unanswered; /* result timeouts that made the device stop offloading */
    uint64_t bytes_sent;
    /* link checks (topics.md, rule 8): echoes sent beside local runs, answered (their round
     * trip reported), and the payload bytes of echoes and of users' inferences */
    uint32_t echoes_sent, echoes_answered;
    uint64_t measure_uplink_bytes, user_uplink_bytes;
} sciot_summary;

typedef struct {
    char model[SCIOT_DEVICE_ID_MAX_LEN + 1];
    uint32_t decision;
    uint16_t split;
    uint8_t mode; /* sciot_split_mode */
    char reason[SCIOT_TEXT_MAX];
    bool has_predicted_ms;
    double predicted_ms;
} sciot_decision;

typedef struct {
    sciot_config cfg;
    sciot_hal hal;
    sciot_err error; /* why the last call failed */
    const char *error_detail;

    char id[SCIOT_DEVICE_ID_MAX_LEN + 1];
    char topic[SCIOT_TOPIC_MAX]; /* scratch for building topics */
    uint32_t session;
    uint32_t hb_seq;
    uint32_t infer_seq;
    bool connected;
    bool stopping;
    uint8_t mode; /* SCIOT_MODE_OFFLOAD or SCIOT_MODE_LOCAL */

    bool has_assign;
    bool assign_live; /* an assign answering this session's birth, since the service came up */
    char assign_model[SCIOT_DEVICE_ID_MAX_LEN + 1];
    uint32_t assign_session;
    double hb_interval_s;
    char assign_instance[SCIOT_TEXT_MAX];

    bool has_decision, has_followed, has_probed;
    sciot_decision decision, followed;
    uint32_t probed;

    uint8_t n_services;
    struct {
        char name[SCIOT_DEVICE_ID_MAX_LEN + 1];
        bool online;
        bool has_started_at; /* of the last online state: a new value means a restart */
        double started_at;
    } services[SCIOT_MAX_SERVICES];

    /* the inference waiting for its result */
    bool pending;
    uint32_t pending_seq;
    uint8_t pending_outcome; /* 0 waiting, 1 result, 2 error, 3 malformed result */
    char pending_error[24];

    bool has_last_rtt;
    uint32_t last_rtt_seq;
    double last_rtt_ms;

    /* moving average of a device-only run's compute time (ms): an offload predicted slower
     * is the service checking the link (topics.md, rule 8) */
    bool has_local_ms;
    double local_ms;
    /* the echo pots of this connection (latency, bandwidth: protocol/linkcheck.py), the echo
     * paid for at planning and sent after the local run, and the one awaiting its reply */
    uint32_t echo_latency_pot, echo_bandwidth_pot;
    bool echo_due;
    uint32_t echo_due_padding;
    bool echo_waiting, echo_blind; /* blind: a run started meanwhile, its reply is late */
    uint32_t echo_seq;
    uint64_t echo_sent_us;

    uint64_t next_hb_us, next_connect_us;
    double backoff_s;

    /* memory handed over at init */
    uint8_t *input;
    uint32_t input_bytes;
    uint8_t *boundary;
    uint32_t boundary_cap;
    uint8_t *output;
    uint32_t output_bytes;
    uint8_t *tx;
    size_t tx_cap;
    double *op_ms;
    sciot_tensor output_tensor; /* the model's output, described; data: the output buffer */

    uint32_t n_detections;
    sciot_detection detections[SCIOT_MAX_DETECTIONS];
    sciot_summary summary;
} sciot_device;

/* Bytes of memory sciot_device_init() needs for this model (0: the HAL's model is unusable). */
size_t sciot_device_memory(const sciot_config *cfg, const sciot_hal *hal);

bool sciot_device_init(sciot_device *dev, const sciot_config *cfg, const sciot_hal *hal, void *mem,
                       size_t mem_len);

/* Connect when due (with backoff), publish heartbeats when due, receive for up to
 * timeout_ms. False only on a fault the caller must see (dev->error); a lost broker is not
 * one: the device goes local and reconnects by itself. */
bool sciot_device_step(sciot_device *dev, uint32_t timeout_ms);

/* One inference: split as planned, offload, finish locally if the edge fails. */
bool sciot_device_infer(sciot_device *dev, sciot_inference *rec);

/* Leave cleanly: retained `online: false`, then disconnect. */
void sciot_device_stop(sciot_device *dev);

/* Called by the HAL's poll() for every complete message. */
void sciot_device_on_message(sciot_device *dev, const char *topic, const uint8_t *payload,
                             size_t len);

/* The next inference's split and why (plan() of the Python device); exposed for tests. */
uint16_t sciot_device_plan(sciot_device *dev, const char **reason, const sciot_decision **followed);

/* FOMO decode (sciot_mqtt/models/decode.py): cells whose best non-background probability
 * is at least threshold, best first. Returns how many were found (at most max). */
uint32_t sciot_fomo_decode(const int8_t *out, const sciot_tensor *tensor, float threshold,
                           sciot_detection *dets, uint32_t max);

#ifdef __cplusplus
}
#endif

#endif /* SCIOT_DEVICE_H */
