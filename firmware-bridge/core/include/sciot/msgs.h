/*
 * sciot/msgs.h: encode and decode the payloads of topics.md.
 *
 * Decoding follows sciot_mqtt/protocol/codec.py: a payload that is not one msgpack map
 * with string keys (or not valid UTF-8) is SCIOT_E_MALFORMED; a required key missing, a
 * value of the wrong type or out of range is SCIOT_E_INVALID; unknown keys are ignored; an
 * optional key holding nil counts as absent. Decoded strings and binaries are views into
 * the payload, which must outlive the decoded struct. Keys, limits and enum values come
 * from generated/sciot_protocol.h, generated from the Python contract.
 */
#ifndef SCIOT_MSGS_H
#define SCIOT_MSGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sciot/tensor.h"
#include "sciot_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SCIOT_OK = 0,
    SCIOT_E_MALFORMED, /* not msgpack, not a map, not UTF-8 (wire code "malformed") */
    SCIOT_E_INVALID,   /* missing key, wrong type, out of range (wire code "invalid") */
    SCIOT_E_TOO_LARGE, /* over the topic's size limit (wire code "too_large") */
    SCIOT_E_BUFFER,    /* a caller-owned buffer is too small */
    SCIOT_E_ARG,       /* an argument the caller got wrong */
    SCIOT_E_HAL,       /* a HAL call failed (publish, connect, run) */
    SCIOT_E_MODEL,     /* the model cannot do what was asked (no such split, sizes) */
    SCIOT_E_STATE      /* not possible in the current state (e.g. not connected) */
} sciot_err;

const char *sciot_strerror(sciot_err e);

typedef struct {
    const char *ptr; /* not NUL-terminated */
    uint32_t len;
} sciot_str;

typedef enum { SCIOT_MODE_OFFLOAD = 0, SCIOT_MODE_LOCAL, SCIOT_MODE_PROBE } sciot_split_mode;
typedef enum { SCIOT_REASON_LOCAL = 0, SCIOT_REASON_PROBE, SCIOT_REASON_PINNED } sciot_reason;

#define SCIOT_MAX_MODELS SCIOT_BIRTH_MODELS_MAX_LEN

/*
 * A tensor as a peer sent it: a read-only view into the received payload, checked against
 * the contract only. It is not a sciot_tensor because it is not yet the model's: the
 * contract bounds it differently (any 64-bit zero point, up to SCIOT_MAX_DIMS dims of
 * 1..65535, an index up to 2^31-1), its bytes belong to the payload and must not be
 * written, and it says nothing about whether it fits the model until the receiver compares
 * it with the model's own description (as the device does with a result's output).
 */
typedef struct {
    int64_t index;
    uint8_t dtype; /* sciot_dtype */
    uint8_t ndim;
    uint16_t shape[SCIOT_MAX_DIMS];
    double scale;
    int64_t zero_point;
    const uint8_t *data;
    uint32_t nbytes;
} sciot_wire_tensor;

/* A list of numbers (e.g. device_ms) kept as a view: count and sum are checked at decode. */
typedef struct {
    uint32_t count;
    double sum;
} sciot_numbers;

typedef struct {
    bool online;
    sciot_str instance;
    bool has_started_at;
    double started_at;
    bool has_version;
    sciot_str version;
    bool has_protocol;
    int64_t protocol; /* SCIOT_PROTOCOL_VERSION when absent */
    /* What the instances of a fleet tell each other (topics.md, "Fleet"): validated; a device
     * has no use for them (its assign names the instance serving it). */
    bool has_capacity;
    double capacity;
    bool has_tier;
    uint8_t tier; /* SCIOT_TIER_EDGE, SCIOT_TIER_CLOUD */
    bool has_placement;
    uint8_t placement; /* index in SCIOT_SERVICE_STATE_PLACEMENT_*, in contract order */
    uint32_t n_models; /* the models it serves: counted, not kept */
    bool has_draining;
    bool draining;
} sciot_service_state;

enum { SCIOT_TIER_EDGE = 0, SCIOT_TIER_CLOUD = 1 };

typedef struct {
    int64_t online, stale, offline;
} sciot_device_counts;

typedef struct {
    double rx, tx, errors;
} sciot_message_rates;

typedef struct {
    int64_t received, answered, rejected, duplicates, lost, running;
} sciot_inference_counts;

typedef struct {
    double queue;
    int64_t served;
} sciot_service_load;

typedef struct {
    double interval_s;
    int64_t offloaded, local, samples;
    bool has_latency_p50_ms;
    double latency_p50_ms;
    bool has_latency_p99_ms;
    double latency_p99_ms;
    double queue_ms;
} sciot_inference_window;

typedef struct {
    sciot_str instance;
    double uptime_s;
    sciot_device_counts devices;
    sciot_message_rates rates;
    int64_t rx_total, tx_total, errors_total;
    bool has_inference;
    sciot_inference_counts inference;
    bool has_window;
    sciot_inference_window window;
    bool has_load;
    sciot_service_load load;
} sciot_service_stats;

typedef struct {
    int64_t protocol;
    uint32_t session;
    sciot_str kind;
    uint32_t n_models;
    sciot_str models[SCIOT_MAX_MODELS];
    int64_t max_payload;
    bool has_fw;
    sciot_str fw;
} sciot_birth;

typedef struct {
    bool online;
    uint32_t session;
} sciot_device_state;

typedef struct {
    uint32_t seq;
    uint32_t session;
    uint8_t mode; /* SCIOT_MODE_OFFLOAD or SCIOT_MODE_LOCAL */
} sciot_heartbeat;

typedef struct {
    uint32_t seq;
    uint32_t session;
    sciot_str model;
    uint16_t split;
    bool has_decision;
    uint32_t decision;
    uint32_t n_tensors;
    sciot_wire_tensor tensors[SCIOT_MAX_BOUNDARY_TENSORS];
    sciot_numbers device_ms;
    bool has_rtt_ms;
    double rtt_ms;
    bool has_rtt_seq;
    uint32_t rtt_seq;
} sciot_infer_request;

typedef struct {
    uint32_t seq;
    uint32_t session;
    sciot_str model;
    uint8_t reason; /* sciot_reason */
    sciot_numbers device_ms;
    bool has_rtt_ms;
    double rtt_ms;
    bool has_rtt_seq;
    uint32_t rtt_seq;
} sciot_local_timings;

/* A link check (topics.md, rule 8): padding of zeros, its size is what matters. */
typedef struct {
    uint32_t seq;
    uint32_t session;
    double sent_ms;
    const uint8_t *padding;
    uint32_t padding_len;
} sciot_echo;

typedef struct {
    uint32_t seq;
    double sent_ms;
} sciot_echo_reply;

typedef struct {
    sciot_str model;
    uint32_t session;
    double hb_interval_s;
    int64_t max_payload;
    sciot_str instance;
} sciot_assign;

typedef struct {
    uint32_t decision;
    sciot_str model;
    uint16_t split;
    uint8_t mode; /* sciot_split_mode */
    sciot_str reason;
    bool has_predicted_ms;
    double predicted_ms;
} sciot_split_decision;

typedef struct {
    uint32_t seq;
    sciot_str model;
    uint16_t split;
    sciot_wire_tensor output;
    sciot_numbers edge_ms;
    double queue_ms;
    double service_ms;
} sciot_infer_result;

typedef enum { SCIOT_CMD_REBIRTH = 0 } sciot_cmd;

typedef struct {
    uint8_t cmd; /* sciot_cmd */
    sciot_str reason;
} sciot_command;

typedef enum {
#define SCIOT_X_ERR(NAME, STR) SCIOT_CODE_##NAME,
    SCIOT_ERROR_CODES(SCIOT_X_ERR)
#undef SCIOT_X_ERR
        SCIOT_CODE_COUNT_
} sciot_error_code;

typedef struct {
    uint8_t code; /* sciot_error_code */
    sciot_str reason;
    sciot_str topic;
    bool has_seq;
    int64_t seq;
} sciot_error_report;

/* Decoders: payload -> struct. On failure the struct is unspecified and `detail` (may be
 * NULL) points to a static text naming what failed. */
sciot_err sciot_decode_service_state(const uint8_t *p, size_t n, sciot_service_state *out,
                                     const char **detail);
sciot_err sciot_decode_service_stats(const uint8_t *p, size_t n, sciot_service_stats *out,
                                     const char **detail);
sciot_err sciot_decode_birth(const uint8_t *p, size_t n, sciot_birth *out, const char **detail);
sciot_err sciot_decode_device_state(const uint8_t *p, size_t n, sciot_device_state *out,
                                    const char **detail);
sciot_err sciot_decode_heartbeat(const uint8_t *p, size_t n, sciot_heartbeat *out,
                                 const char **detail);
sciot_err sciot_decode_infer_request(const uint8_t *p, size_t n, sciot_infer_request *out,
                                     const char **detail);
sciot_err sciot_decode_local_timings(const uint8_t *p, size_t n, sciot_local_timings *out,
                                     const char **detail);
sciot_err sciot_decode_echo(const uint8_t *p, size_t n, sciot_echo *out, const char **detail);
sciot_err sciot_decode_echo_reply(const uint8_t *p, size_t n, sciot_echo_reply *out,
                                  const char **detail);
sciot_err sciot_decode_assign(const uint8_t *p, size_t n, sciot_assign *out, const char **detail);
sciot_err sciot_decode_split_decision(const uint8_t *p, size_t n, sciot_split_decision *out,
                                      const char **detail);
/* max_bytes: the device's own max_payload (the result topic's limit is the contract's). */
sciot_err sciot_decode_infer_result(const uint8_t *p, size_t n, size_t max_bytes,
                                    sciot_infer_result *out, const char **detail);
sciot_err sciot_decode_command(const uint8_t *p, size_t n, sciot_command *out, const char **detail);
sciot_err sciot_decode_error_report(const uint8_t *p, size_t n, sciot_error_report *out,
                                    const char **detail);

/* Encoders for what a device publishes, in the Python device's key order, so the bytes
 * equal what msgpack-python writes for the same message. *len gets the payload size. */
typedef struct {
    int64_t protocol;
    uint32_t session;
    const char *kind;
    uint8_t n_models;
    const char *const *models;
    int64_t max_payload;
    const char *fw; /* NULL: omitted */
} sciot_birth_out;

sciot_err sciot_encode_birth(const sciot_birth_out *m, uint8_t *buf, size_t cap, size_t *len);
sciot_err sciot_encode_device_state(bool online, uint32_t session, uint8_t *buf, size_t cap,
                                    size_t *len);
sciot_err sciot_encode_heartbeat(uint32_t seq, uint32_t session, uint8_t mode, uint8_t *buf,
                                 size_t cap, size_t *len);

typedef struct {
    uint32_t seq;
    uint32_t session;
    const char *model;
    uint16_t split;
    bool has_decision;
    uint32_t decision;
    uint8_t n_tensors;
    const sciot_tensor *tensors; /* the live tensors at split, data set */
    uint32_t n_device_ms;
    const double *device_ms;
    bool has_rtt;
    double rtt_ms;
    uint32_t rtt_seq;
} sciot_infer_request_out;

sciot_err sciot_encode_infer_request(const sciot_infer_request_out *m, uint8_t *buf, size_t cap,
                                     size_t *len);

typedef struct {
    uint32_t seq;
    uint32_t session;
    const char *model;
    uint8_t reason; /* sciot_reason */
    uint32_t n_device_ms;
    const double *device_ms;
    bool has_rtt;
    double rtt_ms;
    uint32_t rtt_seq;
} sciot_local_timings_out;

sciot_err sciot_encode_local_timings(const sciot_local_timings_out *m, uint8_t *buf, size_t cap,
                                     size_t *len);

typedef struct {
    uint32_t seq;
    uint32_t session;
    double sent_ms;
    uint32_t padding_len; /* zeros */
} sciot_echo_out;

sciot_err sciot_encode_echo(const sciot_echo_out *m, uint8_t *buf, size_t cap, size_t *len);

/* Text of an error code as on the wire ("malformed", ...). */
const char *sciot_error_code_str(uint8_t code);
const char *sciot_dtype_str(uint8_t dtype);
bool sciot_is_valid_id(const char *s, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* SCIOT_MSGS_H */
