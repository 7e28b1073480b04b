/* Payloads of topics.md: a table-driven decoder and the device's encoders. */
#include "sciot/msgs.h"

#include <float.h> /* freestanding, unlike math.h's isfinite */

#include "sciot/mp.h"
#include "util.h"

/* --- enum tables (values from the generated header) -------------------------------------- */

static const char *const DTYPES[] = {
    SCIOT_TENSOR_DTYPE_INT8,  SCIOT_TENSOR_DTYPE_UINT8,   SCIOT_TENSOR_DTYPE_INT16,
    SCIOT_TENSOR_DTYPE_INT32, SCIOT_TENSOR_DTYPE_FLOAT32,
};
static const char *const HB_MODES[] = {SCIOT_HEARTBEAT_MODE_OFFLOAD, SCIOT_HEARTBEAT_MODE_LOCAL};
static const char *const SPLIT_MODES[] = {
    SCIOT_SPLIT_DECISION_MODE_OFFLOAD,
    SCIOT_SPLIT_DECISION_MODE_LOCAL,
    SCIOT_SPLIT_DECISION_MODE_PROBE,
};
static const char *const REASONS[] = {
    SCIOT_LOCAL_TIMINGS_REASON_LOCAL,
    SCIOT_LOCAL_TIMINGS_REASON_PROBE,
    SCIOT_LOCAL_TIMINGS_REASON_PINNED,
};
static const char *const TIERS[] = {SCIOT_SERVICE_STATE_TIER_EDGE, SCIOT_SERVICE_STATE_TIER_CLOUD};
static const char *const PLACEMENTS[] = {
    SCIOT_SERVICE_STATE_PLACEMENT_HASH,
    SCIOT_SERVICE_STATE_PLACEMENT_LEAST_LOADED,
    SCIOT_SERVICE_STATE_PLACEMENT_TIERED,
};
static const char *const COMMANDS[] = {SCIOT_COMMAND_CMD_REBIRTH};
static const char *const ERROR_CODES[] = {
#define SCIOT_X_ERR(NAME, STR) STR,
    SCIOT_ERROR_CODES(SCIOT_X_ERR)
#undef SCIOT_X_ERR
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_FIELDS 16 /* per map; the largest message (InferRequest) has 9 */

SCIOT_STATIC_ASSERT(COUNT(ERROR_CODES) == SCIOT_ERROR_CODE_COUNT, error_codes);
SCIOT_STATIC_ASSERT(COUNT(DTYPES) == SCIOT_DTYPE_FLOAT32 + 1, dtypes);
/* sciot_infer_request_out.n_tensors is a uint8_t */
SCIOT_STATIC_ASSERT(SCIOT_MAX_BOUNDARY_TENSORS <= 255u, boundary_tensors_fit_u8);

const char *sciot_error_code_str(uint8_t code)
{
    return code < COUNT(ERROR_CODES) ? ERROR_CODES[code] : "?";
}

const char *sciot_dtype_str(uint8_t dtype)
{
    return dtype < COUNT(DTYPES) ? DTYPES[dtype] : "?";
}

const char *sciot_strerror(sciot_err e)
{
    switch (e) {
    case SCIOT_OK: return "ok";
    case SCIOT_E_MALFORMED: return SCIOT_ERROR_CODE_MALFORMED;
    case SCIOT_E_INVALID: return SCIOT_ERROR_CODE_INVALID;
    case SCIOT_E_TOO_LARGE: return SCIOT_ERROR_CODE_TOO_LARGE;
    case SCIOT_E_BUFFER: return "buffer too small";
    case SCIOT_E_ARG: return "bad argument";
    case SCIOT_E_HAL: return "hal call failed";
    case SCIOT_E_MODEL: return "model cannot do that";
    case SCIOT_E_STATE: return "not possible in this state";
    }
    return "unknown";
}

bool sciot_is_valid_id(const char *s, size_t len)
{
    size_t i;
    if (len < 1 || len > SCIOT_DEVICE_ID_MAX_LEN) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-'))) {
            return false;
        }
    }
    return true;
}

/* --- schema ---------------------------------------------------------------------------- */

typedef enum {
    F_BOOL,  /* bool */
    F_INT,   /* int64_t */
    F_U32,   /* uint32_t, 0..2^32-1 */
    F_U16,   /* uint16_t, 0..65535 */
    F_NUM,   /* double; an int is accepted */
    F_STR,   /* sciot_str, max_len in code points */
    F_ID,    /* sciot_str matching the model/device id pattern */
    F_ENUM,  /* uint8_t index into enums */
    F_BIN,   /* const uint8_t * at off, uint32_t length at aux */
    F_NUMS,  /* sciot_numbers */
    F_IDS,   /* sciot_str array at off (max_store), uint32_t count at aux */
    F_SHAPE, /* uint16_t array at off, uint8_t count at aux */
    F_OBJ,   /* nested struct at off */
    F_OBJS   /* nested structs at off (max_store kept), uint32_t count at aux */
} ftype;

#define HAS_MIN 1u
#define MIN_EXCL 2u
#define HAS_MAX 4u

struct schema;

typedef struct {
    const char *key;
    uint8_t required;
    uint8_t type;
    uint8_t flags;
    uint16_t off;
    int16_t has_off; /* offset of its bool has_ flag, or -1 */
    uint16_t aux;
    double min, max;    /* numbers, and items of F_SHAPE */
    uint32_t min_items; /* arrays */
    uint32_t max_len;   /* strings: code points; bin: bytes; arrays: items (0: none) */
    uint32_t item_len;  /* F_IDS: most code points per item */
    const char *const *enums;
    uint8_t n_enums;
    const struct schema *sub;
    uint16_t sub_size;
    uint16_t max_store;
} field;

typedef struct schema {
    const field *fields;
    uint8_t n;
} schema;

#define OFF(T, m) ((uint16_t)offsetof(T, m))
#define HAS(T, m) ((int16_t)offsetof(T, m))
#define NONE (-1)

/* A field's key and whether it is required, both from the generated header: a contract
 * change that makes a field optional (or required) reaches the decoder by regenerating. */
#define KEY_REQ(M, F) SCIOT_##M##_KEY_##F, SCIOT_##M##_REQ_##F

/* Shorthands, one per kind of field: (message, FIELD) as the generated header names them.
 * Kept out of clang-format, which would spread each initializer over four lines. */
/* clang-format off */
#define FBOOL(M, F, T, m) \
    {KEY_REQ(M, F), F_BOOL, 0, OFF(T, m), NONE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
#define FBOOLH(M, F, T, m, h) \
    {KEY_REQ(M, F), F_BOOL, 0, OFF(T, m), h, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
#define FINT(M, F, T, m, h, fl, lo, hi) \
    {KEY_REQ(M, F), F_INT, fl, OFF(T, m), h, 0, lo, hi, 0, 0, 0, 0, 0, 0, 0, 0}
#define FU32(M, F, T, m, h) \
    {KEY_REQ(M, F), F_U32, HAS_MIN | HAS_MAX, OFF(T, m), h, 0, 0, 4294967295.0, 0, 0, 0, 0, 0, 0, \
     0, 0}
#define FU16(M, F, T, m) \
    {KEY_REQ(M, F), F_U16, HAS_MIN | HAS_MAX, OFF(T, m), NONE, 0, 0, 65535.0, 0, 0, 0, 0, 0, 0, 0, \
     0}
#define FNUM(M, F, T, m, h, fl, lo, hi) \
    {KEY_REQ(M, F), F_NUM, fl, OFF(T, m), h, 0, lo, hi, 0, 0, 0, 0, 0, 0, 0, 0}
#define FSTR(M, F, T, m, h, len) \
    {KEY_REQ(M, F), F_STR, 0, OFF(T, m), h, 0, 0, 0, 0, len, 0, 0, 0, 0, 0, 0}
#define FID(M, F, T, m) \
    {KEY_REQ(M, F), F_ID, 0, OFF(T, m), NONE, 0, 0, 0, 0, SCIOT_DEVICE_ID_MAX_LEN, 0, 0, 0, 0, 0, 0}
#define FENUM(M, F, T, m, tab) \
    {KEY_REQ(M, F), F_ENUM, 0, OFF(T, m), NONE, 0, 0, 0, 0, 0, 0, tab, (uint8_t)COUNT(tab), 0, 0, \
     0}
#define FENUMH(M, F, T, m, h, tab) \
    {KEY_REQ(M, F), F_ENUM, 0, OFF(T, m), h, 0, 0, 0, 0, 0, 0, tab, (uint8_t)COUNT(tab), 0, 0, 0}
/* Every number list is of durations: each item within the generated _ITEM_GE/_ITEM_LE. */
#define FNUMS(M, F, T, m, items) \
    {KEY_REQ(M, F), F_NUMS, HAS_MIN | HAS_MAX, OFF(T, m), NONE, 0, SCIOT_##M##_##F##_ITEM_GE, \
     SCIOT_##M##_##F##_ITEM_LE, 0, items, 0, 0, 0, 0, 0, 0}
#define FOBJ(M, F, T, m, S, ST) \
    {KEY_REQ(M, F), F_OBJ, 0, OFF(T, m), NONE, 0, 0, 0, 0, 0, 0, 0, 0, &S, (uint16_t)sizeof(ST), \
     1}
#define FOBJH(M, F, T, m, h, S, ST) \
    {KEY_REQ(M, F), F_OBJ, 0, OFF(T, m), h, 0, 0, 0, 0, 0, 0, 0, 0, &S, (uint16_t)sizeof(ST), 1}
#define FOBJS(M, F, T, m, cnt, S, ST, lo, hi) \
    {KEY_REQ(M, F), F_OBJS, 0, OFF(T, m), NONE, OFF(T, cnt), 0, 0, lo, hi, 0, 0, 0, &S, \
     (uint16_t)sizeof(ST), (uint16_t)(sizeof(((T *)0)->m) / sizeof(ST))}
/* clang-format on */

/* Tensor */
static const field TENSOR_F[] = {
    FINT(TENSOR, INDEX, sciot_wire_tensor, index, NONE, HAS_MIN | HAS_MAX, SCIOT_TENSOR_INDEX_GE,
         SCIOT_TENSOR_INDEX_LE),
    FENUM(TENSOR, DTYPE, sciot_wire_tensor, dtype, DTYPES),
    {KEY_REQ(TENSOR, SHAPE), F_SHAPE, HAS_MIN | HAS_MAX, OFF(sciot_wire_tensor, shape), NONE,
     OFF(sciot_wire_tensor, ndim), SCIOT_TENSOR_SHAPE_ITEM_GE, SCIOT_TENSOR_SHAPE_ITEM_LE,
     SCIOT_TENSOR_SHAPE_MIN_LEN, SCIOT_TENSOR_SHAPE_MAX_LEN, 0, 0, 0, 0, 0, 0},
    FNUM(TENSOR, SCALE, sciot_wire_tensor, scale, NONE, 0, 0, 0),
    FINT(TENSOR, ZERO_POINT, sciot_wire_tensor, zero_point, NONE, 0, 0, 0),
    {KEY_REQ(TENSOR, DATA), F_BIN, 0, OFF(sciot_wire_tensor, data), NONE,
     OFF(sciot_wire_tensor, nbytes), 0, 0, 0, SCIOT_TENSOR_DATA_MAX_LEN, 0, 0, 0, 0, 0, 0},
};
SCIOT_STATIC_ASSERT(COUNT(TENSOR_F) == SCIOT_TENSOR_FIELD_COUNT, tensor_fields);
static const schema TENSOR_S = {TENSOR_F, (uint8_t)COUNT(TENSOR_F)};

/* ServiceState */
static const field SERVICE_STATE_F[] = {
    FBOOL(SERVICE_STATE, ONLINE, sciot_service_state, online),
    FSTR(SERVICE_STATE, INSTANCE, sciot_service_state, instance, NONE,
         SCIOT_SERVICE_STATE_INSTANCE_MAX_LEN),
    FNUM(SERVICE_STATE, STARTED_AT, sciot_service_state, started_at,
         HAS(sciot_service_state, has_started_at), 0, 0, 0),
    FSTR(SERVICE_STATE, VERSION, sciot_service_state, version,
         HAS(sciot_service_state, has_version), SCIOT_SERVICE_STATE_VERSION_MAX_LEN),
    FINT(SERVICE_STATE, PROTOCOL, sciot_service_state, protocol,
         HAS(sciot_service_state, has_protocol), 0, 0, 0),
    FNUM(SERVICE_STATE, CAPACITY, sciot_service_state, capacity,
         HAS(sciot_service_state, has_capacity), HAS_MIN | MIN_EXCL | HAS_MAX,
         SCIOT_SERVICE_STATE_CAPACITY_GT, SCIOT_SERVICE_STATE_CAPACITY_LE),
    FENUMH(SERVICE_STATE, TIER, sciot_service_state, tier, HAS(sciot_service_state, has_tier),
           TIERS),
    FENUMH(SERVICE_STATE, PLACEMENT, sciot_service_state, placement,
           HAS(sciot_service_state, has_placement), PLACEMENTS),
    /* validated and counted; max_store 0: none kept */
    {KEY_REQ(SERVICE_STATE, MODELS), F_IDS, 0, OFF(sciot_service_state, n_models), NONE,
     OFF(sciot_service_state, n_models), 0, 0, 0, SCIOT_SERVICE_STATE_MODELS_MAX_LEN,
     SCIOT_SERVICE_STATE_MODELS_ITEM_MAX_LEN, 0, 0, 0, 0, 0},
    FBOOLH(SERVICE_STATE, DRAINING, sciot_service_state, draining,
           HAS(sciot_service_state, has_draining)),
};
SCIOT_STATIC_ASSERT(COUNT(SERVICE_STATE_F) == SCIOT_SERVICE_STATE_FIELD_COUNT, ss_fields);
static const schema SERVICE_STATE_S = {SERVICE_STATE_F, (uint8_t)COUNT(SERVICE_STATE_F)};

/* ServiceStats */
static const field COUNTS_F[] = {
    FINT(DEVICE_COUNTS, ONLINE, sciot_device_counts, online, NONE, HAS_MIN, 0, 0),
    FINT(DEVICE_COUNTS, STALE, sciot_device_counts, stale, NONE, HAS_MIN, 0, 0),
    FINT(DEVICE_COUNTS, OFFLINE, sciot_device_counts, offline, NONE, HAS_MIN, 0, 0),
};
SCIOT_STATIC_ASSERT(COUNT(COUNTS_F) == SCIOT_DEVICE_COUNTS_FIELD_COUNT, counts_fields);
static const schema COUNTS_S = {COUNTS_F, (uint8_t)COUNT(COUNTS_F)};
static const field RATES_F[] = {
    FNUM(MESSAGE_RATES, RX, sciot_message_rates, rx, NONE, HAS_MIN, 0, 0),
    FNUM(MESSAGE_RATES, TX, sciot_message_rates, tx, NONE, HAS_MIN, 0, 0),
    FNUM(MESSAGE_RATES, ERRORS, sciot_message_rates, errors, NONE, HAS_MIN, 0, 0),
};
SCIOT_STATIC_ASSERT(COUNT(RATES_F) == SCIOT_MESSAGE_RATES_FIELD_COUNT, rates_fields);
static const schema RATES_S = {RATES_F, (uint8_t)COUNT(RATES_F)};
static const field INFERENCE_F[] = {
    FINT(INFERENCE_COUNTS, RECEIVED, sciot_inference_counts, received, NONE, HAS_MIN, 0, 0),
    FINT(INFERENCE_COUNTS, ANSWERED, sciot_inference_counts, answered, NONE, HAS_MIN, 0, 0),
    FINT(INFERENCE_COUNTS, REJECTED, sciot_inference_counts, rejected, NONE, HAS_MIN, 0, 0),
    FINT(INFERENCE_COUNTS, DUPLICATES, sciot_inference_counts, duplicates, NONE, HAS_MIN, 0, 0),
    FINT(INFERENCE_COUNTS, LOST, sciot_inference_counts, lost, NONE, HAS_MIN, 0, 0),
    FINT(INFERENCE_COUNTS, RUNNING, sciot_inference_counts, running, NONE, HAS_MIN, 0, 0),
};
SCIOT_STATIC_ASSERT(COUNT(INFERENCE_F) == SCIOT_INFERENCE_COUNTS_FIELD_COUNT, inference_fields);
static const schema INFERENCE_S = {INFERENCE_F, (uint8_t)COUNT(INFERENCE_F)};
static const field LOAD_F[] = {
    FNUM(SERVICE_LOAD, QUEUE, sciot_service_load, queue, NONE, HAS_MIN | HAS_MAX, 0,
         SCIOT_SERVICE_LOAD_QUEUE_LE),
    FINT(SERVICE_LOAD, SERVED, sciot_service_load, served, NONE, HAS_MIN, 0, 0),
};
SCIOT_STATIC_ASSERT(COUNT(LOAD_F) == SCIOT_SERVICE_LOAD_FIELD_COUNT, load_fields);
static const schema LOAD_S = {LOAD_F, (uint8_t)COUNT(LOAD_F)};
static const field WINDOW_F[] = {
    FNUM(INFERENCE_WINDOW, INTERVAL_S, sciot_inference_window, interval_s, NONE,
         HAS_MIN | MIN_EXCL | HAS_MAX, SCIOT_INFERENCE_WINDOW_INTERVAL_S_GT,
         SCIOT_INFERENCE_WINDOW_INTERVAL_S_LE),
    FINT(INFERENCE_WINDOW, OFFLOADED, sciot_inference_window, offloaded, NONE, HAS_MIN, 0, 0),
    FINT(INFERENCE_WINDOW, LOCAL, sciot_inference_window, local, NONE, HAS_MIN, 0, 0),
    FINT(INFERENCE_WINDOW, SAMPLES, sciot_inference_window, samples, NONE, HAS_MIN, 0, 0),
    FNUM(INFERENCE_WINDOW, LATENCY_P50_MS, sciot_inference_window, latency_p50_ms,
         HAS(sciot_inference_window, has_latency_p50_ms), HAS_MIN | HAS_MAX, 0,
         SCIOT_INFERENCE_WINDOW_LATENCY_P50_MS_LE),
    FNUM(INFERENCE_WINDOW, LATENCY_P99_MS, sciot_inference_window, latency_p99_ms,
         HAS(sciot_inference_window, has_latency_p99_ms), HAS_MIN | HAS_MAX, 0,
         SCIOT_INFERENCE_WINDOW_LATENCY_P99_MS_LE),
    FNUM(INFERENCE_WINDOW, QUEUE_MS, sciot_inference_window, queue_ms, NONE, HAS_MIN | HAS_MAX, 0,
         SCIOT_INFERENCE_WINDOW_QUEUE_MS_LE),
};
SCIOT_STATIC_ASSERT(COUNT(WINDOW_F) == SCIOT_INFERENCE_WINDOW_FIELD_COUNT, window_fields);
static const schema WINDOW_S = {WINDOW_F, (uint8_t)COUNT(WINDOW_F)};
static const field STATS_F[] = {
    FSTR(SERVICE_STATS, INSTANCE, sciot_service_stats, instance, NONE,
         SCIOT_SERVICE_STATS_INSTANCE_MAX_LEN),
    FNUM(SERVICE_STATS, UPTIME_S, sciot_service_stats, uptime_s, NONE, HAS_MIN, 0, 0),
    FOBJ(SERVICE_STATS, DEVICES, sciot_service_stats, devices, COUNTS_S, sciot_device_counts),
    FOBJ(SERVICE_STATS, RATES, sciot_service_stats, rates, RATES_S, sciot_message_rates),
    FINT(SERVICE_STATS, RX_TOTAL, sciot_service_stats, rx_total, NONE, HAS_MIN, 0, 0),
    FINT(SERVICE_STATS, TX_TOTAL, sciot_service_stats, tx_total, NONE, HAS_MIN, 0, 0),
    FINT(SERVICE_STATS, ERRORS_TOTAL, sciot_service_stats, errors_total, NONE, HAS_MIN, 0, 0),
    FOBJH(SERVICE_STATS, INFERENCE, sciot_service_stats, inference,
          HAS(sciot_service_stats, has_inference), INFERENCE_S, sciot_inference_counts),
    FOBJH(SERVICE_STATS, WINDOW, sciot_service_stats, window, HAS(sciot_service_stats, has_window),
          WINDOW_S, sciot_inference_window),
    FOBJH(SERVICE_STATS, LOAD, sciot_service_stats, load, HAS(sciot_service_stats, has_load),
          LOAD_S, sciot_service_load),
};
SCIOT_STATIC_ASSERT(COUNT(STATS_F) == SCIOT_SERVICE_STATS_FIELD_COUNT, stats_fields);
static const schema STATS_S = {STATS_F, (uint8_t)COUNT(STATS_F)};

/* Birth */
static const field BIRTH_F[] = {
    FINT(BIRTH, PROTOCOL, sciot_birth, protocol, NONE, 0, 0, 0),
    FU32(BIRTH, SESSION, sciot_birth, session, NONE),
    FSTR(BIRTH, KIND, sciot_birth, kind, NONE, SCIOT_BIRTH_KIND_MAX_LEN),
    {KEY_REQ(BIRTH, MODELS), F_IDS, 0, OFF(sciot_birth, models), NONE, OFF(sciot_birth, n_models),
     0, 0, SCIOT_BIRTH_MODELS_MIN_LEN, SCIOT_BIRTH_MODELS_MAX_LEN, SCIOT_BIRTH_MODELS_ITEM_MAX_LEN,
     0, 0, 0, 0, SCIOT_MAX_MODELS},
    FINT(BIRTH, MAX_PAYLOAD, sciot_birth, max_payload, NONE, HAS_MIN | HAS_MAX,
         SCIOT_BIRTH_MAX_PAYLOAD_GE, SCIOT_BIRTH_MAX_PAYLOAD_LE),
    FSTR(BIRTH, FW, sciot_birth, fw, HAS(sciot_birth, has_fw), SCIOT_BIRTH_FW_MAX_LEN),
};
SCIOT_STATIC_ASSERT(COUNT(BIRTH_F) == SCIOT_BIRTH_FIELD_COUNT, birth_fields);
static const schema BIRTH_S = {BIRTH_F, (uint8_t)COUNT(BIRTH_F)};

/* DeviceState */
static const field DEVICE_STATE_F[] = {
    FBOOL(DEVICE_STATE, ONLINE, sciot_device_state, online),
    FU32(DEVICE_STATE, SESSION, sciot_device_state, session, NONE),
};
SCIOT_STATIC_ASSERT(COUNT(DEVICE_STATE_F) == SCIOT_DEVICE_STATE_FIELD_COUNT, ds_fields);
static const schema DEVICE_STATE_S = {DEVICE_STATE_F, (uint8_t)COUNT(DEVICE_STATE_F)};

/* Heartbeat */
static const field HEARTBEAT_F[] = {
    FU32(HEARTBEAT, SEQ, sciot_heartbeat, seq, NONE),
    FU32(HEARTBEAT, SESSION, sciot_heartbeat, session, NONE),
    FENUM(HEARTBEAT, MODE, sciot_heartbeat, mode, HB_MODES),
};
SCIOT_STATIC_ASSERT(COUNT(HEARTBEAT_F) == SCIOT_HEARTBEAT_FIELD_COUNT, hb_fields);
static const schema HEARTBEAT_S = {HEARTBEAT_F, (uint8_t)COUNT(HEARTBEAT_F)};

/* InferRequest */
static const field INFER_F[] = {
    FU32(INFER_REQUEST, SEQ, sciot_infer_request, seq, NONE),
    FU32(INFER_REQUEST, SESSION, sciot_infer_request, session, NONE),
    FID(INFER_REQUEST, MODEL, sciot_infer_request, model),
    FU16(INFER_REQUEST, SPLIT, sciot_infer_request, split),
    FU32(INFER_REQUEST, DECISION, sciot_infer_request, decision,
         HAS(sciot_infer_request, has_decision)),
    FOBJS(INFER_REQUEST, TENSORS, sciot_infer_request, tensors, n_tensors, TENSOR_S,
          sciot_wire_tensor, SCIOT_INFER_REQUEST_TENSORS_MIN_LEN,
          SCIOT_INFER_REQUEST_TENSORS_MAX_LEN),
    FNUMS(INFER_REQUEST, DEVICE_MS, sciot_infer_request, device_ms,
          SCIOT_INFER_REQUEST_DEVICE_MS_MAX_LEN),
    FNUM(INFER_REQUEST, RTT_MS, sciot_infer_request, rtt_ms, HAS(sciot_infer_request, has_rtt_ms),
         HAS_MIN | HAS_MAX, SCIOT_INFER_REQUEST_RTT_MS_GE, SCIOT_INFER_REQUEST_RTT_MS_LE),
    FU32(INFER_REQUEST, RTT_SEQ, sciot_infer_request, rtt_seq,
         HAS(sciot_infer_request, has_rtt_seq)),
};
SCIOT_STATIC_ASSERT(COUNT(INFER_F) == SCIOT_INFER_REQUEST_FIELD_COUNT, infer_fields);
SCIOT_STATIC_ASSERT(COUNT(INFER_F) <= MAX_FIELDS, infer_fits);
static const schema INFER_S = {INFER_F, (uint8_t)COUNT(INFER_F)};

/* LocalTimings */
static const field TIMINGS_F[] = {
    FU32(LOCAL_TIMINGS, SEQ, sciot_local_timings, seq, NONE),
    FU32(LOCAL_TIMINGS, SESSION, sciot_local_timings, session, NONE),
    FID(LOCAL_TIMINGS, MODEL, sciot_local_timings, model),
    FENUM(LOCAL_TIMINGS, REASON, sciot_local_timings, reason, REASONS),
    FNUMS(LOCAL_TIMINGS, DEVICE_MS, sciot_local_timings, device_ms,
          SCIOT_LOCAL_TIMINGS_DEVICE_MS_MAX_LEN),
    FNUM(LOCAL_TIMINGS, RTT_MS, sciot_local_timings, rtt_ms, HAS(sciot_local_timings, has_rtt_ms),
         HAS_MIN | HAS_MAX, SCIOT_LOCAL_TIMINGS_RTT_MS_GE, SCIOT_LOCAL_TIMINGS_RTT_MS_LE),
    FU32(LOCAL_TIMINGS, RTT_SEQ, sciot_local_timings, rtt_seq,
         HAS(sciot_local_timings, has_rtt_seq)),
};
SCIOT_STATIC_ASSERT(COUNT(TIMINGS_F) == SCIOT_LOCAL_TIMINGS_FIELD_COUNT, timings_fields);
static const schema TIMINGS_S = {TIMINGS_F, (uint8_t)COUNT(TIMINGS_F)};

/* Echo */
static const field ECHO_F[] = {
    FU32(ECHO, SEQ, sciot_echo, seq, NONE),
    FU32(ECHO, SESSION, sciot_echo, session, NONE),
    FNUM(ECHO, SENT_MS, sciot_echo, sent_ms, NONE, HAS_MIN | HAS_MAX, SCIOT_ECHO_SENT_MS_GE,
         SCIOT_ECHO_SENT_MS_LE),
    {KEY_REQ(ECHO, PADDING), F_BIN, 0, OFF(sciot_echo, padding), NONE, OFF(sciot_echo, padding_len),
     0, 0, 0, SCIOT_ECHO_PADDING_MAX_LEN, 0, 0, 0, 0, 0, 0},
};
SCIOT_STATIC_ASSERT(COUNT(ECHO_F) == SCIOT_ECHO_FIELD_COUNT, echo_fields);
static const schema ECHO_S = {ECHO_F, (uint8_t)COUNT(ECHO_F)};

/* EchoReply */
static const field ECHO_REPLY_F[] = {
    FU32(ECHO_REPLY, SEQ, sciot_echo_reply, seq, NONE),
    FNUM(ECHO_REPLY, SENT_MS, sciot_echo_reply, sent_ms, NONE, HAS_MIN | HAS_MAX,
         SCIOT_ECHO_REPLY_SENT_MS_GE, SCIOT_ECHO_REPLY_SENT_MS_LE),
};
SCIOT_STATIC_ASSERT(COUNT(ECHO_REPLY_F) == SCIOT_ECHO_REPLY_FIELD_COUNT, echo_reply_fields);
static const schema ECHO_REPLY_S = {ECHO_REPLY_F, (uint8_t)COUNT(ECHO_REPLY_F)};

/* Assign */
static const field ASSIGN_F[] = {
    FID(ASSIGN, MODEL, sciot_assign, model),
    FU32(ASSIGN, SESSION, sciot_assign, session, NONE),
    FNUM(ASSIGN, HB_INTERVAL_S, sciot_assign, hb_interval_s, NONE, HAS_MIN | MIN_EXCL | HAS_MAX,
         SCIOT_ASSIGN_HB_INTERVAL_S_GT, SCIOT_ASSIGN_HB_INTERVAL_S_LE),
    FINT(ASSIGN, MAX_PAYLOAD, sciot_assign, max_payload, NONE, HAS_MIN, SCIOT_ASSIGN_MAX_PAYLOAD_GE,
         0),
    FSTR(ASSIGN, INSTANCE, sciot_assign, instance, NONE, SCIOT_ASSIGN_INSTANCE_MAX_LEN),
};
SCIOT_STATIC_ASSERT(COUNT(ASSIGN_F) == SCIOT_ASSIGN_FIELD_COUNT, assign_fields);
static const schema ASSIGN_S = {ASSIGN_F, (uint8_t)COUNT(ASSIGN_F)};

/* SplitDecision */
static const field SPLIT_F[] = {
    FU32(SPLIT_DECISION, DECISION, sciot_split_decision, decision, NONE),
    FID(SPLIT_DECISION, MODEL, sciot_split_decision, model),
    FU16(SPLIT_DECISION, SPLIT, sciot_split_decision, split),
    FENUM(SPLIT_DECISION, MODE, sciot_split_decision, mode, SPLIT_MODES),
    FSTR(SPLIT_DECISION, REASON, sciot_split_decision, reason, NONE,
         SCIOT_SPLIT_DECISION_REASON_MAX_LEN),
    FNUM(SPLIT_DECISION, PREDICTED_MS, sciot_split_decision, predicted_ms,
         HAS(sciot_split_decision, has_predicted_ms), HAS_MIN | HAS_MAX,
         SCIOT_SPLIT_DECISION_PREDICTED_MS_GE, SCIOT_SPLIT_DECISION_PREDICTED_MS_LE),
};
SCIOT_STATIC_ASSERT(COUNT(SPLIT_F) == SCIOT_SPLIT_DECISION_FIELD_COUNT, split_fields);
static const schema SPLIT_S = {SPLIT_F, (uint8_t)COUNT(SPLIT_F)};

/* InferResult */
static const field RESULT_F[] = {
    FU32(INFER_RESULT, SEQ, sciot_infer_result, seq, NONE),
    FID(INFER_RESULT, MODEL, sciot_infer_result, model),
    FU16(INFER_RESULT, SPLIT, sciot_infer_result, split),
    FOBJ(INFER_RESULT, OUTPUT, sciot_infer_result, output, TENSOR_S, sciot_wire_tensor),
    FNUMS(INFER_RESULT, EDGE_MS, sciot_infer_result, edge_ms, SCIOT_INFER_RESULT_EDGE_MS_MAX_LEN),
    FNUM(INFER_RESULT, QUEUE_MS, sciot_infer_result, queue_ms, NONE, HAS_MIN | HAS_MAX,
         SCIOT_INFER_RESULT_QUEUE_MS_GE, SCIOT_INFER_RESULT_QUEUE_MS_LE),
    FNUM(INFER_RESULT, SERVICE_MS, sciot_infer_result, service_ms, NONE, HAS_MIN | HAS_MAX,
         SCIOT_INFER_RESULT_SERVICE_MS_GE, SCIOT_INFER_RESULT_SERVICE_MS_LE),
};
SCIOT_STATIC_ASSERT(COUNT(RESULT_F) == SCIOT_INFER_RESULT_FIELD_COUNT, result_fields);
static const schema RESULT_S = {RESULT_F, (uint8_t)COUNT(RESULT_F)};

/* Command */
static const field COMMAND_F[] = {
    FENUM(COMMAND, CMD, sciot_command, cmd, COMMANDS),
    FSTR(COMMAND, REASON, sciot_command, reason, NONE, SCIOT_COMMAND_REASON_MAX_LEN),
};
SCIOT_STATIC_ASSERT(COUNT(COMMAND_F) == SCIOT_COMMAND_FIELD_COUNT, command_fields);
static const schema COMMAND_S = {COMMAND_F, (uint8_t)COUNT(COMMAND_F)};

/* ErrorReport */
static const field ERROR_F[] = {
    FENUM(ERROR_REPORT, CODE, sciot_error_report, code, ERROR_CODES),
    FSTR(ERROR_REPORT, REASON, sciot_error_report, reason, NONE, SCIOT_ERROR_REPORT_REASON_MAX_LEN),
    FSTR(ERROR_REPORT, TOPIC, sciot_error_report, topic, NONE, SCIOT_ERROR_REPORT_TOPIC_MAX_LEN),
    FINT(ERROR_REPORT, SEQ, sciot_error_report, seq, HAS(sciot_error_report, has_seq), 0, 0, 0),
};
SCIOT_STATIC_ASSERT(COUNT(ERROR_F) == SCIOT_ERROR_REPORT_FIELD_COUNT, error_fields);
static const schema ERROR_S = {ERROR_F, (uint8_t)COUNT(ERROR_F)};

/* --- the decoder ----------------------------------------------------------------------- */

typedef struct {
    sciot_mpr r;
    const char *detail;
} dec;

static sciot_err invalid(dec *d, const char *what)
{
    d->detail = what;
    return SCIOT_E_INVALID;
}

/* Also false for NaN and the infinities, which no field of the contract allows (every
 * comparison with NaN is false). */
static bool range_ok(const field *f, double v)
{
    if (!(v >= -DBL_MAX && v <= DBL_MAX)) {
        return false;
    }
    if ((f->flags & HAS_MIN) != 0u) {
        if ((f->flags & MIN_EXCL) != 0u ? !(v > f->min) : !(v >= f->min)) {
            return false;
        }
    }
    if ((f->flags & HAS_MAX) != 0u && !(v <= f->max)) {
        return false;
    }
    return true;
}

/* An integer (never a bool or float: the contract's ints are strict). */
static bool read_int(dec *d, int64_t *out)
{
    bool neg;
    uint64_t u = 0;
    int64_t s = 0;
    sciot_mp_type t;
    if (!sciot_mpr_peek(&d->r, &t) || (t != SCIOT_MP_T_UINT && t != SCIOT_MP_T_INT)) {
        return false;
    }
    if (!sciot_mpr_integer(&d->r, &neg, &u, &s)) {
        return false;
    }
    if (!neg && u > (uint64_t)INT64_MAX) {
        return false; /* valid in Python's unbounded ints; no field of the contract needs it */
    }
    *out = neg ? s : (int64_t)u;
    return true;
}

static sciot_err decode_map(dec *d, const schema *s, uint8_t *base);

static sciot_err decode_field(dec *d, const field *f, uint8_t *base)
{
    uint8_t *at = base + f->off;
    switch ((ftype)f->type) {
    case F_BOOL:
        if (!sciot_mpr_bool(&d->r, (bool *)(void *)at)) {
            return invalid(d, f->key);
        }
        return SCIOT_OK;
    case F_INT:
    case F_U32:
    case F_U16: {
        int64_t v;
        if (!read_int(d, &v) || !range_ok(f, (double)v)) {
            return invalid(d, f->key);
        }
        if (f->type == F_INT) {
            *(int64_t *)(void *)at = v;
        } else if (f->type == F_U32) {
            *(uint32_t *)(void *)at = (uint32_t)v;
        } else {
            *(uint16_t *)(void *)at = (uint16_t)v;
        }
        return SCIOT_OK;
    }
    case F_NUM: {
        sciot_mp_type t;
        double v;
        if (!sciot_mpr_peek(&d->r, &t) ||
            (t != SCIOT_MP_T_UINT && t != SCIOT_MP_T_INT && t != SCIOT_MP_T_FLOAT) ||
            !sciot_mpr_number(&d->r, &v) || !range_ok(f, v)) {
            return invalid(d, f->key);
        }
        *(double *)(void *)at = v;
        return SCIOT_OK;
    }
    case F_STR:
    case F_ID:
    case F_ENUM: {
        const char *p;
        uint32_t len, chars;
        if (!sciot_mpr_str(&d->r, &p, &len, &chars)) {
            return invalid(d, f->key);
        }
        if (f->type == F_ENUM) {
            uint8_t i;
            for (i = 0; i < f->n_enums; i++) {
                if (sciot_str_eq(p, len, f->enums[i])) {
                    *at = i;
                    return SCIOT_OK;
                }
            }
            return invalid(d, f->key);
        }
        if ((f->max_len != 0u && chars > f->max_len) ||
            (f->type == F_ID && !sciot_is_valid_id(p, len))) {
            return invalid(d, f->key);
        }
        ((sciot_str *)(void *)at)->ptr = p;
        ((sciot_str *)(void *)at)->len = len;
        return SCIOT_OK;
    }
    case F_BIN: {
        const uint8_t *p;
        uint32_t len;
        if (!sciot_mpr_bin(&d->r, &p, &len) || (f->max_len != 0u && len > f->max_len)) {
            return invalid(d, f->key);
        }
        *(const uint8_t **)(void *)at = p;
        *(uint32_t *)(void *)(base + f->aux) = len;
        return SCIOT_OK;
    }
    default: break;
    }
    /* arrays and nested maps */
    if (f->type == F_OBJ) {
        return decode_map(d, f->sub, at);
    }
    {
        uint32_t n, i;
        if (!sciot_mpr_array(&d->r, &n)) {
            return invalid(d, f->key);
        }
        if (n < f->min_items || (f->max_len != 0u && n > f->max_len)) {
            return invalid(d, f->key);
        }
        if (f->type == F_NUMS) {
            sciot_numbers *nums = (sciot_numbers *)(void *)at;
            nums->count = n;
            nums->sum = 0;
            for (i = 0; i < n; i++) {
                sciot_mp_type t;
                double v;
                if (!sciot_mpr_peek(&d->r, &t) ||
                    (t != SCIOT_MP_T_UINT && t != SCIOT_MP_T_INT && t != SCIOT_MP_T_FLOAT) ||
                    !sciot_mpr_number(&d->r, &v) || !range_ok(f, v)) {
                    return invalid(d, f->key);
                }
                nums->sum += v;
            }
            return SCIOT_OK;
        }
        if (f->type == F_SHAPE) {
            uint16_t *dims = (uint16_t *)(void *)at;
            for (i = 0; i < n; i++) {
                int64_t v;
                if (!read_int(d, &v) || !range_ok(f, (double)v)) {
                    return invalid(d, f->key);
                }
                dims[i] = (uint16_t)v;
            }
            *(base + f->aux) = (uint8_t)n;
            return SCIOT_OK;
        }
        if (f->type == F_IDS) {
            sciot_str *items = (sciot_str *)(void *)at;
            for (i = 0; i < n; i++) {
                const char *p;
                uint32_t len, chars;
                if (!sciot_mpr_str(&d->r, &p, &len, &chars) || chars > f->item_len ||
                    !sciot_is_valid_id(p, len)) {
                    return invalid(d, f->key);
                }
                if (i < f->max_store) {
                    items[i].ptr = p;
                    items[i].len = len;
                }
            }
            *(uint32_t *)(void *)(base + f->aux) = n;
            return SCIOT_OK;
        }
        /* F_OBJS: every item is validated; the first max_store are kept */
        for (i = 0; i < n; i++) {
            uint8_t scratch[128];
            uint8_t *item = i < f->max_store ? at + (size_t)i * f->sub_size : scratch;
            sciot_err e;
            if (i >= f->max_store && f->sub_size > sizeof scratch) {
                return invalid(d, f->key);
            }
            e = decode_map(d, f->sub, item);
            if (e != SCIOT_OK) {
                return e;
            }
        }
        *(uint32_t *)(void *)(base + f->aux) = n;
        return SCIOT_OK;
    }
}

/* Two passes, because msgpack-python keeps the last of duplicate keys: first find where
 * each known field's (last) value starts, then decode those values only. */
static sciot_err decode_map(dec *d, const schema *s, uint8_t *base)
{
    uint32_t n, i, seen = 0;
    size_t at[MAX_FIELDS], end;
    uint8_t k;
    if (!sciot_mpr_map(&d->r, &n)) {
        return invalid(d, "expected a map");
    }
    for (i = 0; i < n; i++) {
        const char *key = "";
        uint32_t klen = 0, chars;
        sciot_mp_type t;
        const field *f = NULL;
        if (!sciot_mpr_peek(&d->r, &t)) {
            return SCIOT_E_MALFORMED;
        }
        if (t == SCIOT_MP_T_STR) {
            if (!sciot_mpr_str(&d->r, &key, &klen, &chars)) {
                return SCIOT_E_MALFORMED;
            }
            for (k = 0; k < s->n; k++) {
                if (sciot_str_eq(key, klen, s->fields[k].key)) {
                    f = &s->fields[k];
                    break;
                }
            }
        } else if (!sciot_mpr_skip(&d->r)) { /* a bin key names no field */
            return SCIOT_E_MALFORMED;
        }
        if (f != NULL) {
            at[k] = d->r.pos;
            seen |= 1u << k;
        }
        if (!sciot_mpr_skip(&d->r)) {
            return SCIOT_E_MALFORMED;
        }
    }
    end = d->r.pos;
    for (k = 0; k < s->n; k++) {
        const field *f = &s->fields[k];
        sciot_mp_type t;
        if ((seen & (1u << k)) == 0u) {
            if (f->required) {
                return invalid(d, f->key);
            }
            continue;
        }
        d->r.pos = at[k];
        if (!sciot_mpr_peek(&d->r, &t)) {
            return SCIOT_E_MALFORMED;
        }
        if (t == SCIOT_MP_T_NIL) {
            /* None: absent for an optional field, a type error for a required one */
            if (f->required) {
                return invalid(d, f->key);
            }
            continue;
        }
        {
            sciot_err e = decode_field(d, f, base);
            if (e != SCIOT_OK) {
                return e;
            }
        }
        if (f->has_off >= 0) {
            *(bool *)(void *)(base + f->has_off) = true;
        }
    }
    d->r.pos = end;
    return SCIOT_OK;
}

static sciot_err decode(const uint8_t *p, size_t n, size_t max_bytes, const schema *s, void *out,
                        size_t out_size, const char **detail)
{
    dec d;
    sciot_mp_type t;
    sciot_err e;
    d.detail = NULL;
    if (detail != NULL) {
        *detail = NULL;
    }
    if (n > max_bytes) {
        if (detail != NULL) {
            *detail = "payload over the topic's size limit";
        }
        return SCIOT_E_TOO_LARGE;
    }
    /* Well-formed first, as msgpack-python parses the whole payload before validation. */
    sciot_mpr_init(&d.r, p, n);
    if (!sciot_mpr_skip(&d.r) || d.r.pos != n) {
        if (detail != NULL) {
            *detail = d.r.error != SCIOT_MP_OK ? sciot_mp_strerror(d.r.error) : "extra data";
        }
        return SCIOT_E_MALFORMED;
    }
    sciot_mpr_init(&d.r, p, n);
    if (!sciot_mpr_peek(&d.r, &t) || t != SCIOT_MP_T_MAP) {
        if (detail != NULL) {
            *detail = "payload is not a map";
        }
        return SCIOT_E_MALFORMED;
    }
    sciot_zero(out, out_size);
    e = decode_map(&d, s, (uint8_t *)out);
    if (detail != NULL && d.detail != NULL) {
        *detail = d.detail;
    }
    return e;
}

sciot_err sciot_decode_service_state(const uint8_t *p, size_t n, sciot_service_state *out,
                                     const char **detail)
{
    sciot_err e =
        decode(p, n, SCIOT_SERVICE_STATE_MAX_BYTES, &SERVICE_STATE_S, out, sizeof *out, detail);
    if (e == SCIOT_OK && !out->has_protocol) {
        out->protocol = SCIOT_PROTOCOL_VERSION;
    }
    return e;
}

sciot_err sciot_decode_service_stats(const uint8_t *p, size_t n, sciot_service_stats *out,
                                     const char **detail)
{
    return decode(p, n, SCIOT_SERVICE_STATS_MAX_BYTES, &STATS_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_birth(const uint8_t *p, size_t n, sciot_birth *out, const char **detail)
{
    return decode(p, n, SCIOT_BIRTH_MAX_BYTES, &BIRTH_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_device_state(const uint8_t *p, size_t n, sciot_device_state *out,
                                    const char **detail)
{
    return decode(p, n, SCIOT_DEVICE_STATE_MAX_BYTES, &DEVICE_STATE_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_heartbeat(const uint8_t *p, size_t n, sciot_heartbeat *out,
                                 const char **detail)
{
    return decode(p, n, SCIOT_HEARTBEAT_MAX_BYTES, &HEARTBEAT_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_infer_request(const uint8_t *p, size_t n, sciot_infer_request *out,
                                     const char **detail)
{
    return decode(p, n, SCIOT_INFER_REQUEST_MAX_BYTES, &INFER_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_local_timings(const uint8_t *p, size_t n, sciot_local_timings *out,
                                     const char **detail)
{
    return decode(p, n, SCIOT_LOCAL_TIMINGS_MAX_BYTES, &TIMINGS_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_echo(const uint8_t *p, size_t n, sciot_echo *out, const char **detail)
{
    return decode(p, n, SCIOT_ECHO_MAX_BYTES, &ECHO_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_echo_reply(const uint8_t *p, size_t n, sciot_echo_reply *out,
                                  const char **detail)
{
    return decode(p, n, SCIOT_ECHO_REPLY_MAX_BYTES, &ECHO_REPLY_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_assign(const uint8_t *p, size_t n, sciot_assign *out, const char **detail)
{
    return decode(p, n, SCIOT_ASSIGN_MAX_BYTES, &ASSIGN_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_split_decision(const uint8_t *p, size_t n, sciot_split_decision *out,
                                      const char **detail)
{
    return decode(p, n, SCIOT_SPLIT_DECISION_MAX_BYTES, &SPLIT_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_infer_result(const uint8_t *p, size_t n, size_t max_bytes,
                                    sciot_infer_result *out, const char **detail)
{
    return decode(p, n, max_bytes, &RESULT_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_command(const uint8_t *p, size_t n, sciot_command *out, const char **detail)
{
    return decode(p, n, SCIOT_COMMAND_MAX_BYTES, &COMMAND_S, out, sizeof *out, detail);
}

sciot_err sciot_decode_error_report(const uint8_t *p, size_t n, sciot_error_report *out,
                                    const char **detail)
{
    return decode(p, n, SCIOT_ERROR_REPORT_MAX_BYTES, &ERROR_S, out, sizeof *out, detail);
}

/* --- encoders -------------------------------------------------------------------------- */

static sciot_err finish(sciot_mpw *w, size_t *len)
{
    if (w->error != SCIOT_MP_OK) {
        return SCIOT_E_BUFFER;
    }
    *len = w->len;
    return SCIOT_OK;
}

#define KEY(w, k) sciot_mpw_cstr(w, k)

sciot_err sciot_encode_birth(const sciot_birth_out *m, uint8_t *buf, size_t cap, size_t *len)
{
    sciot_mpw w;
    uint8_t i;
    sciot_mpw_init(&w, buf, cap);
    sciot_mpw_map(&w, m->fw != NULL ? 6u : 5u);
    KEY(&w, SCIOT_BIRTH_KEY_PROTOCOL);
    sciot_mpw_int(&w, m->protocol);
    KEY(&w, SCIOT_BIRTH_KEY_SESSION);
    sciot_mpw_uint(&w, m->session);
    KEY(&w, SCIOT_BIRTH_KEY_KIND);
    sciot_mpw_cstr(&w, m->kind);
    KEY(&w, SCIOT_BIRTH_KEY_MODELS);
    sciot_mpw_array(&w, m->n_models);
    for (i = 0; i < m->n_models; i++) {
        sciot_mpw_cstr(&w, m->models[i]);
    }
    KEY(&w, SCIOT_BIRTH_KEY_MAX_PAYLOAD);
    sciot_mpw_int(&w, m->max_payload);
    if (m->fw != NULL) {
        KEY(&w, SCIOT_BIRTH_KEY_FW);
        sciot_mpw_cstr(&w, m->fw);
    }
    return finish(&w, len);
}

sciot_err sciot_encode_device_state(bool online, uint32_t session, uint8_t *buf, size_t cap,
                                    size_t *len)
{
    sciot_mpw w;
    sciot_mpw_init(&w, buf, cap);
    sciot_mpw_map(&w, 2);
    KEY(&w, SCIOT_DEVICE_STATE_KEY_ONLINE);
    sciot_mpw_bool(&w, online);
    KEY(&w, SCIOT_DEVICE_STATE_KEY_SESSION);
    sciot_mpw_uint(&w, session);
    return finish(&w, len);
}

sciot_err sciot_encode_heartbeat(uint32_t seq, uint32_t session, uint8_t mode, uint8_t *buf,
                                 size_t cap, size_t *len)
{
    sciot_mpw w;
    if (mode >= COUNT(HB_MODES)) {
        return SCIOT_E_ARG;
    }
    sciot_mpw_init(&w, buf, cap);
    sciot_mpw_map(&w, 3);
    KEY(&w, SCIOT_HEARTBEAT_KEY_SEQ);
    sciot_mpw_uint(&w, seq);
    KEY(&w, SCIOT_HEARTBEAT_KEY_SESSION);
    sciot_mpw_uint(&w, session);
    KEY(&w, SCIOT_HEARTBEAT_KEY_MODE);
    sciot_mpw_cstr(&w, HB_MODES[mode]);
    return finish(&w, len);
}

static void write_numbers(sciot_mpw *w, const double *v, uint32_t n)
{
    uint32_t i;
    sciot_mpw_array(w, n);
    for (i = 0; i < n; i++) {
        sciot_mpw_f64(w, v[i]);
    }
}

sciot_err sciot_encode_infer_request(const sciot_infer_request_out *m, uint8_t *buf, size_t cap,
                                     size_t *len)
{
    sciot_mpw w;
    uint8_t i, k;
    if (m->n_tensors < 1 || m->n_tensors > SCIOT_MAX_BOUNDARY_TENSORS) {
        return SCIOT_E_ARG;
    }
    sciot_mpw_init(&w, buf, cap);
    sciot_mpw_map(&w, 6u + (m->has_decision ? 1u : 0u) + (m->has_rtt ? 2u : 0u));
    KEY(&w, SCIOT_INFER_REQUEST_KEY_SEQ);
    sciot_mpw_uint(&w, m->seq);
    KEY(&w, SCIOT_INFER_REQUEST_KEY_SESSION);
    sciot_mpw_uint(&w, m->session);
    KEY(&w, SCIOT_INFER_REQUEST_KEY_MODEL);
    sciot_mpw_cstr(&w, m->model);
    KEY(&w, SCIOT_INFER_REQUEST_KEY_SPLIT);
    sciot_mpw_uint(&w, m->split);
    if (m->has_decision) {
        KEY(&w, SCIOT_INFER_REQUEST_KEY_DECISION);
        sciot_mpw_uint(&w, m->decision);
    }
    KEY(&w, SCIOT_INFER_REQUEST_KEY_TENSORS);
    sciot_mpw_array(&w, m->n_tensors);
    for (i = 0; i < m->n_tensors; i++) {
        const sciot_tensor *t = &m->tensors[i];
        sciot_mpw_map(&w, 6);
        KEY(&w, SCIOT_TENSOR_KEY_INDEX);
        sciot_mpw_uint(&w, t->index);
        KEY(&w, SCIOT_TENSOR_KEY_DTYPE);
        sciot_mpw_cstr(&w, sciot_dtype_str(t->dtype));
        KEY(&w, SCIOT_TENSOR_KEY_SHAPE);
        sciot_mpw_array(&w, t->ndim);
        for (k = 0; k < t->ndim; k++) {
            sciot_mpw_int(&w, t->shape[k]);
        }
        KEY(&w, SCIOT_TENSOR_KEY_SCALE);
        sciot_mpw_f64(&w, t->scale);
        KEY(&w, SCIOT_TENSOR_KEY_ZERO_POINT);
        sciot_mpw_int(&w, t->zero_point);
        KEY(&w, SCIOT_TENSOR_KEY_DATA);
        sciot_mpw_bin(&w, t->data, t->nbytes);
    }
    KEY(&w, SCIOT_INFER_REQUEST_KEY_DEVICE_MS);
    write_numbers(&w, m->device_ms, m->n_device_ms);
    if (m->has_rtt) {
        KEY(&w, SCIOT_INFER_REQUEST_KEY_RTT_MS);
        sciot_mpw_f64(&w, m->rtt_ms);
        KEY(&w, SCIOT_INFER_REQUEST_KEY_RTT_SEQ);
        sciot_mpw_uint(&w, m->rtt_seq);
    }
    return finish(&w, len);
}

sciot_err sciot_encode_local_timings(const sciot_local_timings_out *m, uint8_t *buf, size_t cap,
                                     size_t *len)
{
    sciot_mpw w;
    if (m->reason >= COUNT(REASONS)) {
        return SCIOT_E_ARG;
    }
    sciot_mpw_init(&w, buf, cap);
    sciot_mpw_map(&w, 5u + (m->has_rtt ? 2u : 0u));
    KEY(&w, SCIOT_LOCAL_TIMINGS_KEY_SEQ);
    sciot_mpw_uint(&w, m->seq);
    KEY(&w, SCIOT_LOCAL_TIMINGS_KEY_SESSION);
    sciot_mpw_uint(&w, m->session);
    KEY(&w, SCIOT_LOCAL_TIMINGS_KEY_MODEL);
    sciot_mpw_cstr(&w, m->model);
    KEY(&w, SCIOT_LOCAL_TIMINGS_KEY_REASON);
    sciot_mpw_cstr(&w, REASONS[m->reason]);
    KEY(&w, SCIOT_LOCAL_TIMINGS_KEY_DEVICE_MS);
    write_numbers(&w, m->device_ms, m->n_device_ms);
    if (m->has_rtt) {
        KEY(&w, SCIOT_LOCAL_TIMINGS_KEY_RTT_MS);
        sciot_mpw_f64(&w, m->rtt_ms);
        KEY(&w, SCIOT_LOCAL_TIMINGS_KEY_RTT_SEQ);
        sciot_mpw_uint(&w, m->rtt_seq);
    }
    return finish(&w, len);
}

sciot_err sciot_encode_echo(const sciot_echo_out *m, uint8_t *buf, size_t cap, size_t *len)
{
    sciot_mpw w;
    if (m->padding_len > SCIOT_ECHO_PADDING_MAX_LEN) {
        return SCIOT_E_ARG;
    }
    sciot_mpw_init(&w, buf, cap);
    sciot_mpw_map(&w, 4);
    KEY(&w, SCIOT_ECHO_KEY_SEQ);
    sciot_mpw_uint(&w, m->seq);
    KEY(&w, SCIOT_ECHO_KEY_SESSION);
    sciot_mpw_uint(&w, m->session);
    KEY(&w, SCIOT_ECHO_KEY_SENT_MS);
    sciot_mpw_f64(&w, m->sent_ms);
    KEY(&w, SCIOT_ECHO_KEY_PADDING);
    sciot_mpw_bin_zeros(&w, m->padding_len);
    return finish(&w, len);
}
