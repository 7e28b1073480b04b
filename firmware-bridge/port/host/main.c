/*
 * sciot-fw-host: the firmware core as a Linux process, libmosquitto as its transport and
 * sciot_ops running the real model segments. A real device: it computes every result it
 * reports (nothing is replayed), so it can stand in for an ESP32 against `sciot-mqtt up`.
 *
 *   sciot-fw-host --id X --host H --port P --model BLOB [--count N --interval S] ...
 *
 * Prints one JSON line on exit, like `sciot-mqtt device`.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <mosquitto.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sciot/device.h"
#include "sciot/ops_adapter.h"

#define FW_VERSION "sciot-fw-host 0.1.0"

typedef struct {
    struct mosquitto *mosq;
    sciot_device *dev;
    bool connected;
    bool connack;
    int connack_rc;
    int sub_mid;
    bool sub_acked;
    const char *host;
    int port;
    /* model */
    sciot_ops_adapter ops;
    uint8_t *blob;
    uint8_t *arena;
    /* input */
    uint8_t *frames;
    size_t n_frames;
    size_t next_frame;
    bool float_input; /* the model takes float32 (QUANTIZE first), not int8 */
    const char *id;
} host_ctx;

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void log_json(const char *id, const char *level, const char *event, const char *detail)
{
    fprintf(stderr, "{\"level\": \"%s\", \"device_id\": \"%s\", \"event\": \"%s\", \"detail\": \"",
            level, id, event);
    for (; detail != NULL && *detail != '\0'; detail++) {
        if (*detail == '"' || *detail == '\\') {
            fputc('\\', stderr);
        }
        fputc((unsigned char)*detail >= 0x20 ? *detail : ' ', stderr);
    }
    fputs("\"}\n", stderr);
}

/* --- HAL: clock ------------------------------------------------------------------------ */

static uint64_t hal_now_us(void *user)
{
    (void)user;
    return mono_ns() / 1000u;
}

static void hal_sleep_ms(void *user, uint32_t ms)
{
    struct timespec ts;
    (void)user;
    if (g_stop) {
        return;
    }
    ts.tv_sec = ms / 1000u;
    ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !g_stop) {
    }
}

static uint32_t hal_random(void *user)
{
    (void)user;
    return (uint32_t)rand();
}

static void hal_log(void *user, int level, const char *event, const char *detail)
{
    host_ctx *h = user;
    log_json(h->id, level == 0 ? "info" : "warning", event, detail);
}

/* --- HAL: MQTT over libmosquitto ----------------------------------------------------------- */

static void on_connect(struct mosquitto *mosq, void *user, int rc)
{
    host_ctx *h = user;
    (void)mosq;
    h->connack = true;
    h->connack_rc = rc;
    h->connected = rc == 0;
}

static void on_disconnect(struct mosquitto *mosq, void *user, int rc)
{
    host_ctx *h = user;
    (void)mosq;
    (void)rc;
    h->connected = false;
}

static void on_subscribe(struct mosquitto *mosq, void *user, int mid, int n, const int *granted)
{
    host_ctx *h = user;
    (void)mosq;
    (void)n;
    (void)granted;
    if (mid == h->sub_mid) {
        h->sub_acked = true;
    }
}

static void on_message(struct mosquitto *mosq, void *user, const struct mosquitto_message *msg)
{
    host_ctx *h = user;
    (void)mosq;
    sciot_device_on_message(h->dev, msg->topic, (const uint8_t *)msg->payload,
                            (size_t)msg->payloadlen);
}

/* Runs the network loop until `done` holds or timeout_ms passes; false if the link drops. */
static bool loop_until(host_ctx *h, const bool *done, uint32_t timeout_ms)
{
    uint64_t deadline = mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!*done) {
        int rc;
        uint64_t now = mono_ns();
        if (now >= deadline || g_stop) {
            return false;
        }
        rc = mosquitto_loop(h->mosq, 50, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            return false;
        }
    }
    return true;
}

static bool hal_connect(void *user, const char *client_id, const char *will_topic,
                        const uint8_t *will, size_t will_len, uint16_t keepalive_s)
{
    host_ctx *h = user;
    if (h->mosq != NULL) {
        mosquitto_destroy(h->mosq);
    }
    h->mosq = mosquitto_new(client_id, true, h);
    if (h->mosq == NULL) {
        return false;
    }
    mosquitto_int_option(h->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_connect_callback_set(h->mosq, on_connect);
    mosquitto_disconnect_callback_set(h->mosq, on_disconnect);
    mosquitto_subscribe_callback_set(h->mosq, on_subscribe);
    mosquitto_message_callback_set(h->mosq, on_message);
    if (mosquitto_will_set(h->mosq, will_topic, (int)will_len, will, 1, true) != MOSQ_ERR_SUCCESS) {
        return false;
    }
    h->connack = false;
    h->connected = false;
    if (mosquitto_connect(h->mosq, h->host, h->port, keepalive_s) != MOSQ_ERR_SUCCESS) {
        return false;
    }
    if (!loop_until(h, &h->connack, 5000) || !h->connected) {
        mosquitto_disconnect(h->mosq);
        return false;
    }
    return true;
}

static void hal_disconnect(void *user)
{
    host_ctx *h = user;
    if (h->mosq != NULL) {
        mosquitto_disconnect(h->mosq);
        (void)mosquitto_loop(h->mosq, 0, 1);
    }
    h->connected = false;
}

static bool hal_publish(void *user, const char *topic, const uint8_t *payload, size_t len,
                        uint8_t qos, bool retain)
{
    host_ctx *h = user;
    if (!h->connected) {
        return false;
    }
    return mosquitto_publish(h->mosq, NULL, topic, (int)len, payload, qos, retain) ==
           MOSQ_ERR_SUCCESS;
}

/* Waits for SUBACK, so the device cannot miss the answer to its birth (topics.md rule 1). */
static bool hal_subscribe(void *user, const char *filter, uint8_t qos)
{
    host_ctx *h = user;
    h->sub_acked = false;
    if (mosquitto_subscribe(h->mosq, &h->sub_mid, filter, qos) != MOSQ_ERR_SUCCESS) {
        return false;
    }
    return loop_until(h, &h->sub_acked, 5000);
}

static bool hal_poll(void *user, uint32_t timeout_ms)
{
    host_ctx *h = user;
    int rc;
    if (!h->connected) {
        return false;
    }
    rc = mosquitto_loop(h->mosq, (int)timeout_ms, 1);
    return rc == MOSQ_ERR_SUCCESS && h->connected;
}

/* --- HAL: input ---------------------------------------------------------------------------- */

/* The test pattern's value at element i of frame `frame`, in [-128, 127]: a diagonal
 * gradient (over 96-wide rows of 3 channels) with a bright square that moves per frame. */
static int pattern(size_t i, size_t frame)
{
    size_t side = 96, at = (frame * 7u) % 80u;
    size_t px = i / 3u, x = px % side, y = px / side;
    if (x >= at && x < at + 12u && y >= at && y < at + 12u) {
        return 127;
    }
    return (int)((x + y) % 256u) - 128;
}

static bool hal_capture(void *user, uint8_t *input, size_t nbytes)
{
    host_ctx *h = user;
    size_t i;
    if (h->frames != NULL) {
        memcpy(input, h->frames + (h->next_frame % h->n_frames) * nbytes, nbytes);
    } else if (h->float_input) {
        /* the same pattern as float32 in [0, 1], little-endian */
        for (i = 0; i + 4u <= nbytes; i += 4u) {
            union {
                float f;
                uint32_t u;
            } v;
            v.f = (float)(pattern(i / 4u, h->next_frame) + 128) / 255.0f;
            input[i] = (uint8_t)v.u;
            input[i + 1] = (uint8_t)(v.u >> 8);
            input[i + 2] = (uint8_t)(v.u >> 16);
            input[i + 3] = (uint8_t)(v.u >> 24);
        }
    } else {
        for (i = 0; i < nbytes; i++) {
            input[i] = (uint8_t)(int8_t)pattern(i, h->next_frame);
        }
    }
    h->next_frame++;
    return true;
}

/* --- files --------------------------------------------------------------------------------- */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long size;
    if (f == NULL) {
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc(size > 0 ? (size_t)size : 1u);
    if (buf != NULL && fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void hex(FILE *f, const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        fprintf(f, "%02x", p[i]);
    }
}

/* --- command line --------------------------------------------------------------------------- */

typedef struct {
    sciot_config cfg;
    const char *host;
    int port;
    const char *model_path, *input_path, *records_path;
    long count;        /* inferences to run; -1: none, only stay connected */
    double interval_s; /* between inferences */
    double duration_s; /* without --count: how long to stay connected (< 0: until a signal) */
    double wait_s;     /* with --count: how long to wait for offloading before the first */
} options;

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --model BLOB [options]\n"
            "  --id ID                 device id (device-1)\n"
            "  --host HOST --port P    broker (127.0.0.1:1883)\n"
            "  --kind KIND             announced in birth (host-c)\n"
            "  --model BLOB            sciot model blob (sciot-mqtt models export-c)\n"
            "  --count N               run N inferences, then stop\n"
            "  --interval S            seconds between inferences (0)\n"
            "  --duration S            without --count: stop after S seconds\n"
            "  --wait S                seconds to wait for the service before --count (10)\n"
            "  --split N               pin the split point\n"
            "  --heartbeat-interval S  until assign says otherwise (5)\n"
            "  --keepalive S           MQTT keepalive (10)\n"
            "  --result-timeout S      seconds before finishing locally (5)\n"
            "  --max-payload N         largest payload accepted (262144)\n"
            "  --reconnect-min S / --reconnect-max S   backoff (0.2 / 5)\n"
            "  --input FILE            raw input frames of the model input's type and size\n"
            "                          (int8, or float32 little-endian), cycled\n"
            "  --records FILE          one JSON line per inference (output in hex)\n"
            "  --session N             last session counter (default: clock in ms)\n",
            prog);
}

/* Fills o from the command line; -1 to go on, else the exit code (0 after --help). */
static int parse_args(int argc, char **argv, options *o)
{
    enum {
        O_ID = 1,
        O_HOST,
        O_PORT,
        O_KIND,
        O_MODEL,
        O_COUNT,
        O_INTERVAL,
        O_DURATION,
        O_WAIT,
        O_SPLIT,
        O_HB,
        O_KEEPALIVE,
        O_RESULT_TIMEOUT,
        O_MAX_PAYLOAD,
        O_RMIN,
        O_RMAX,
        O_INPUT,
        O_RECORDS,
        O_SESSION,
        O_HELP
    };
    static const struct option opts[] = {
        {"id", required_argument, 0, O_ID},
        {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},
        {"kind", required_argument, 0, O_KIND},
        {"model", required_argument, 0, O_MODEL},
        {"count", required_argument, 0, O_COUNT},
        {"interval", required_argument, 0, O_INTERVAL},
        {"duration", required_argument, 0, O_DURATION},
        {"wait", required_argument, 0, O_WAIT},
        {"split", required_argument, 0, O_SPLIT},
        {"heartbeat-interval", required_argument, 0, O_HB},
        {"keepalive", required_argument, 0, O_KEEPALIVE},
        {"result-timeout", required_argument, 0, O_RESULT_TIMEOUT},
        {"max-payload", required_argument, 0, O_MAX_PAYLOAD},
        {"reconnect-min", required_argument, 0, O_RMIN},
        {"reconnect-max", required_argument, 0, O_RMAX},
        {"input", required_argument, 0, O_INPUT},
        {"records", required_argument, 0, O_RECORDS},
        {"session", required_argument, 0, O_SESSION},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    sciot_config *cfg = &o->cfg;
    bool session_given = false;
    int c;
    memset(o, 0, sizeof *o);
    sciot_config_defaults(cfg);
    cfg->fw = FW_VERSION;
    o->host = "127.0.0.1";
    o->port = 1883;
    o->count = -1;
    o->duration_s = -1;
    o->wait_s = 10;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_ID: cfg->id = optarg; break;
        case O_HOST: o->host = optarg; break;
        case O_PORT: o->port = atoi(optarg); break;
        case O_KIND: cfg->kind = optarg; break;
        case O_MODEL: o->model_path = optarg; break;
        case O_COUNT: o->count = atol(optarg); break;
        case O_INTERVAL: o->interval_s = atof(optarg); break;
        case O_DURATION: o->duration_s = atof(optarg); break;
        case O_WAIT: o->wait_s = atof(optarg); break;
        case O_SPLIT: cfg->split_pin = atoi(optarg); break;
        case O_HB: cfg->heartbeat_interval_s = atof(optarg); break;
        case O_KEEPALIVE: cfg->keepalive_s = (uint16_t)atoi(optarg); break;
        case O_RESULT_TIMEOUT: cfg->result_timeout_s = atof(optarg); break;
        case O_MAX_PAYLOAD: cfg->max_payload = (uint32_t)strtoul(optarg, NULL, 10); break;
        case O_RMIN: cfg->reconnect_min_s = atof(optarg); break;
        case O_RMAX: cfg->reconnect_max_s = atof(optarg); break;
        case O_INPUT: o->input_path = optarg; break;
        case O_RECORDS: o->records_path = optarg; break;
        case O_SESSION:
            cfg->session = (uint32_t)strtoul(optarg, NULL, 10);
            session_given = true;
            break;
        case O_HELP: usage(argv[0]); return 0;
        default: usage(argv[0]); return 2;
        }
    }
    if (o->model_path == NULL) {
        usage(argv[0]);
        return 2;
    }
    if (!session_given) {
        /* like the Python device: seeded from the clock (firmware keeps it in NVS) */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        cfg->session = (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
    }
    return -1;
}

/* --- setup ----------------------------------------------------------------------------------- */

static uint64_t clock_ns(void *ctx)
{
    (void)ctx;
    return mono_ns();
}

/* The blob, opened through the ops adapter, with its arena and the clock for op times. */
static bool load_model(host_ctx *h, const char *path)
{
    size_t blob_len = 0, arena_len;
    h->blob = read_file(path, &blob_len);
    if (h->blob == NULL) {
        fprintf(stderr, "sciot-fw-host: cannot read %s: %s\n", path, strerror(errno));
        return false;
    }
    if (!sciot_ops_adapter_open(&h->ops, h->blob, blob_len)) {
        fprintf(stderr, "sciot-fw-host: %s: %s\n", path, h->ops.error_detail);
        return false;
    }
    arena_len = sciot_ops_adapter_arena_size(&h->ops);
    h->arena = malloc(arena_len + 1u);
    if (h->arena == NULL || !sciot_ops_adapter_set_arena(&h->ops, h->arena, arena_len)) {
        fprintf(stderr, "sciot-fw-host: no memory for the model's arena\n");
        return false;
    }
    sciot_ops_adapter_set_clock(&h->ops, clock_ns, NULL, 1e6);
    sciot_tensor input;
    if (sciot_ops_adapter_boundary_tensor(&h->ops, 0, 0, &input)) {
        h->float_input = input.dtype == SCIOT_DTYPE_FLOAT32;
    }
    return true;
}

/* --input: whole frames of the model input's size, which hal_capture cycles through. */
static bool load_frames(host_ctx *h, const char *path)
{
    size_t len = 0, frame = sciot_model_boundary_bytes(&h->ops.model, 0);
    h->frames = read_file(path, &len);
    if (h->frames == NULL || frame == 0 || len == 0 || len % frame != 0) {
        fprintf(stderr,
                "sciot-fw-host: %s: want whole frames of the model input, %zu bytes each "
                "(%s, little-endian)\n",
                path, frame, h->float_input ? "float32" : "int8");
        return false;
    }
    h->n_frames = len / frame;
    return true;
}

/* The core's HAL: this file's clock, libmosquitto and input, the ops adapter's model. */
static sciot_hal wire_hal(host_ctx *h)
{
    sciot_hal hal;
    memset(&hal, 0, sizeof hal);
    hal.user = h;
    hal.now_us = hal_now_us;
    hal.sleep_ms = hal_sleep_ms;
    hal.random = hal_random;
    hal.connect = hal_connect;
    hal.disconnect = hal_disconnect;
    hal.publish = hal_publish;
    hal.subscribe = hal_subscribe;
    hal.poll = hal_poll;
    hal.model = sciot_ops_adapter_hal(&h->ops);
    hal.capture = hal_capture;
    hal.log = hal_log;
    return hal;
}

/* --- what the inferences did ---------------------------------------------------------------- */

#define MAX_REASONS 16

typedef struct {
    uint32_t count, offloaded, local, fallback, checked, matched;
    uint64_t bytes_sent;
    char reason_text[MAX_REASONS][32];
    uint32_t reason_n[MAX_REASONS];
    unsigned n_reasons;
    uint32_t *splits; /* per split point */
    double *totals;   /* per inference */
    double *heads;
} run_stats;

static bool stats_init(run_stats *s, unsigned num_ops, long count)
{
    size_t n = count > 0 ? (size_t)count : 1u;
    memset(s, 0, sizeof *s);
    s->splits = calloc(num_ops + 1u, sizeof *s->splits);
    s->totals = calloc(n, sizeof *s->totals);
    s->heads = calloc(n, sizeof *s->heads);
    return s->splits != NULL && s->totals != NULL && s->heads != NULL;
}

static void stats_free(run_stats *s)
{
    free(s->splits);
    free(s->totals);
    free(s->heads);
}

static void count_reason(run_stats *s, const char *reason)
{
    unsigned i;
    for (i = 0; i < s->n_reasons; i++) {
        if (strcmp(s->reason_text[i], reason) == 0) {
            s->reason_n[i]++;
            return;
        }
    }
    if (s->n_reasons < MAX_REASONS) {
        snprintf(s->reason_text[s->n_reasons], sizeof s->reason_text[0], "%s", reason);
        s->reason_n[s->n_reasons++] = 1;
    }
}

/* Counts inference number i (0-based, below the --count the arrays were sized for). */
static void stats_add(run_stats *s, const sciot_inference *rec, long i)
{
    s->count++;
    s->offloaded += rec->path == SCIOT_PATH_OFFLOAD;
    s->local += rec->path == SCIOT_PATH_LOCAL;
    s->fallback += rec->path == SCIOT_PATH_FALLBACK;
    s->bytes_sent += rec->sent_bytes;
    s->splits[rec->split]++;
    s->totals[i] = rec->total_ms;
    s->heads[i] = rec->head_ms;
    count_reason(s, rec->reason);
}

/* Like the Python device's verify=True: a whole local run on the same input must give the
 * same output, so an offloaded result (the service's LiteRT tail) is checked bit for bit. */
static void check_against_local(host_ctx *h, const sciot_device *dev, const sciot_inference *rec,
                                uint8_t *scratch, run_stats *s)
{
    sciot_tensor in, out;
    uint16_t last = (uint16_t)h->ops.model.num_ops;
    if (!sciot_ops_adapter_boundary_tensor(&h->ops, 0, 0, &in) ||
        !sciot_ops_adapter_boundary_tensor(&h->ops, last, 0, &out)) {
        return;
    }
    in.data = dev->input;
    out.data = scratch;
    if (sciot_ops_adapter_run_ops(&h->ops, 0, last, &in, 1, &out, 1, NULL)) {
        s->checked++;
        s->matched += memcmp(scratch, rec->output, rec->output_bytes) == 0;
    }
}

static const char *const PATHS[] = {"offload", "local", "fallback"};

/* --records: one JSON line per inference, the output in hex. */
static void write_record(FILE *f, const sciot_inference *rec)
{
    uint32_t d;
    fprintf(f,
            "{\"seq\": %u, \"split\": %u, \"path\": \"%s\", \"reason\": \"%s\", "
            "\"head_ms\": %.6f, \"total_ms\": %.6f, \"sent_bytes\": %u, \"output\": \"",
            rec->seq, rec->split, PATHS[rec->path], rec->reason, rec->head_ms, rec->total_ms,
            rec->sent_bytes);
    hex(f, rec->output, rec->output_bytes);
    fprintf(f, "\", \"detections\": [");
    for (d = 0; d < rec->n_detections; d++) {
        fprintf(f, "%s[%lld, %lld, %lld, %.17g]", d ? ", " : "", (long long)rec->detections[d].cls,
                (long long)rec->detections[d].x, (long long)rec->detections[d].y,
                rec->detections[d].score);
    }
    fprintf(f, "]}\n");
    fflush(f);
}

/* --- the run loop --------------------------------------------------------------------------- */

static double seconds_since(uint64_t start_ns)
{
    return (double)(mono_ns() - start_ns) / 1e9;
}

/* Without --count: connected (heartbeats, decisions, commands) for duration_s, or until a
 * signal when it is negative. */
static void stay_connected(sciot_device *dev, double duration_s)
{
    uint64_t start = mono_ns();
    while (!g_stop && (duration_s < 0 || seconds_since(start) < duration_s)) {
        sciot_device_step(dev, 100);
    }
}

/* Before the first of --count inferences: until the service has taken the device on. */
static void wait_for_offload(sciot_device *dev, double wait_s)
{
    uint64_t start = mono_ns();
    while (!g_stop && dev->mode != SCIOT_MODE_OFFLOAD && seconds_since(start) < wait_s) {
        sciot_device_step(dev, 50);
    }
}

/* Between inferences the device keeps stepping, so heartbeats and decisions go on. */
static void step_until(sciot_device *dev, uint64_t deadline_ns)
{
    while (!g_stop && mono_ns() < deadline_ns) {
        uint64_t left_ms = (deadline_ns - mono_ns()) / 1000000u;
        sciot_device_step(dev, left_ms < 100 ? (uint32_t)left_ms : 100u);
    }
}

/* --count inferences, --interval apart; each one counted, checked and recorded. */
static void run_inferences(host_ctx *h, sciot_device *dev, const options *o, run_stats *st,
                           FILE *records)
{
    long i;
    uint8_t *scratch = malloc(sciot_model_boundary_bytes(&h->ops.model, h->ops.model.num_ops));
    if (scratch == NULL) {
        log_json(h->id, "error", "no memory for the local check", "");
        return;
    }
    for (i = 0; i < o->count && !g_stop; i++) {
        sciot_inference rec;
        if (!sciot_device_infer(dev, &rec)) {
            if (h->ops.error != SCIOT_OK) {
                log_json(h->id, "error", "run_ops failed", h->ops.error_detail);
            }
            log_json(h->id, "error", "inference failed", dev->error_detail);
            break;
        }
        check_against_local(h, dev, &rec, scratch, st);
        stats_add(st, &rec, i);
        if (records != NULL) {
            write_record(records, &rec);
        }
        step_until(dev, mono_ns() + (uint64_t)(o->interval_s * 1e9));
    }
    free(scratch);
}

/* --- summary --------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's default (linear) percentile */
static double percentile(double *v, uint32_t n, double q)
{
    double pos, frac;
    uint32_t lo;
    if (n == 0) {
        return 0.0;
    }
    qsort(v, n, sizeof *v, cmp_double);
    pos = q / 100.0 * (double)(n - 1u);
    lo = (uint32_t)pos;
    frac = pos - (double)lo;
    return lo + 1u < n ? v[lo] + (v[lo + 1u] - v[lo]) * frac : v[lo];
}

/* The "inference" block of the summary: counts, reasons, splits, latencies, the check. */
static void print_inference_summary(run_stats *st, unsigned num_ops)
{
    bool first = true;
    unsigned i;
    printf(", \"inference\": {\"count\": %u, \"offloaded\": %u, \"local\": %u, "
           "\"fallback\": %u, \"reasons\": {",
           st->count, st->offloaded, st->local, st->fallback);
    for (i = 0; i < st->n_reasons; i++) {
        printf("%s\"%s\": %u", i ? ", " : "", st->reason_text[i], st->reason_n[i]);
    }
    printf("}, \"splits\": {");
    for (i = 0; i <= num_ops; i++) {
        if (st->splits[i]) {
            printf("%s\"%u\": %u", first ? "" : ", ", i, st->splits[i]);
            first = false;
        }
    }
    printf("}, \"latency_ms\": {\"p50\": %.6f, \"p95\": %.6f}, "
           "\"device_ms\": {\"p50\": %.6f}, \"bytes_sent\": %llu, "
           "\"checked_against_local\": %u, \"all_match_local\": %s}",
           percentile(st->totals, st->count, 50), percentile(st->totals, st->count, 95),
           percentile(st->heads, st->count, 50), (unsigned long long)st->bytes_sent, st->checked,
           st->checked > 0 && st->checked == st->matched ? "true" : "false");
}

/* One JSON line on stdout: the Python device's counters, plus the inference block. */
static void print_summary(const sciot_device *dev, run_stats *st)
{
    const sciot_summary *s = &dev->summary;
    printf("{\"device_id\": \"%s\", \"session\": %u, \"mode\": \"%s\", \"model\": ", dev->id,
           dev->session, dev->mode == SCIOT_MODE_OFFLOAD ? "offload" : "local");
    if (dev->has_assign) {
        printf("\"%s\"", dev->assign_model);
    } else {
        printf("null");
    }
    printf(", \"kind\": \"%s\", \"connects\": %u, \"disconnects\": %u, \"heartbeats\": %u, "
           "\"assignments\": %u, \"rebirths\": %u, \"fallbacks\": %u, \"resumes\": %u, "
           "\"decisions\": %u, \"decisions_rejected\": %u, \"errors_received\": %u, "
           "\"inferences\": %u, \"offloaded\": %u, \"local\": %u, \"fallbacks_local\": %u, "
           "\"unanswered\": %u, \"echoes_sent\": %u, \"echoes_answered\": %u, "
           "\"measure_uplink_bytes\": %llu, \"user_uplink_bytes\": %llu",
           dev->cfg.kind, s->connects, s->disconnects, s->heartbeats, s->assignments, s->rebirths,
           s->fallbacks, s->resumes, s->decisions, s->decisions_rejected, s->errors_received,
           s->inferences, s->offloaded, s->local, s->fallbacks_local, s->unanswered, s->echoes_sent,
           s->echoes_answered, (unsigned long long)s->measure_uplink_bytes,
           (unsigned long long)s->user_uplink_bytes);
    if (st->count > 0) {
        print_inference_summary(st, dev->cfg.num_ops);
    }
    printf("}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static sciot_device dev; /* large: not on the stack */
    static host_ctx h;
    options o;
    sciot_hal hal;
    run_stats st;
    FILE *records = NULL;
    size_t mem_len;
    void *mem;
    int exit_code = parse_args(argc, argv, &o);
    if (exit_code >= 0) {
        return exit_code;
    }
    h.id = o.cfg.id;
    h.host = o.host;
    h.port = o.port;
    h.dev = &dev;
    if (!load_model(&h, o.model_path) || (o.input_path != NULL && !load_frames(&h, o.input_path))) {
        return 1;
    }
    o.cfg.model_id = h.ops.model.model_id;
    o.cfg.num_ops = (uint16_t)h.ops.model.num_ops;
    if (o.records_path != NULL && (records = fopen(o.records_path, "w")) == NULL) {
        fprintf(stderr, "sciot-fw-host: cannot write %s: %s\n", o.records_path, strerror(errno));
        return 1;
    }
    hal = wire_hal(&h);
    mem_len = sciot_device_memory(&o.cfg, &hal);
    mem = mem_len ? malloc(mem_len) : NULL;
    if (mem == NULL || !stats_init(&st, o.cfg.num_ops, o.count) ||
        !sciot_device_init(&dev, &o.cfg, &hal, mem, mem_len)) {
        fprintf(stderr, "sciot-fw-host: init failed: %s (%s)\n", sciot_strerror(dev.error),
                dev.error_detail ? dev.error_detail : "");
        return 1;
    }
    srand((unsigned)mono_ns());
    mosquitto_lib_init();
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    if (o.count < 0) {
        stay_connected(&dev, o.duration_s);
    } else {
        wait_for_offload(&dev, o.wait_s);
        run_inferences(&h, &dev, &o, &st, records);
    }

    sciot_device_stop(&dev);
    if (h.mosq != NULL) {
        mosquitto_destroy(h.mosq);
    }
    mosquitto_lib_cleanup();
    if (records != NULL) {
        fclose(records);
    }
    print_summary(&dev, &st);
    free(mem);
    free(h.arena);
    free(h.blob);
    free(h.frames);
    stats_free(&st);
    return 0;
}
