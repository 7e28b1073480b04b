/*
 * The device state machine against a fake HAL and a fake clock: what it publishes, when, and
 * how it reacts to what the service sends (sciot_mqtt/device/ is the reference: device.py,
 * presence.py and inbox.py).
 *
 * The fake model has 3 operators; boundary 2 holds two tensors (a residual block), and
 * every operator adds its number + 1 to each byte, so a split run equals a whole run only
 * if the tensors travel correctly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sciot/device.h"
#include "sciot/mp.h"

#define MAX_MSGS 256
#define NUM_OPS 3

typedef struct {
    char topic[128];
    uint8_t payload[2048];
    size_t len;
    uint8_t qos;
    bool retain;
} msg;

typedef struct {
    uint64_t now_us;
    bool broker_up;
    bool link_up;
    int connects;
    char client_id[96];
    char will_topic[128];
    uint8_t will[64];
    size_t will_len;
    char subs[16][128];
    int n_subs;
    msg out[MAX_MSGS];
    int n_out;
    msg in[32];
    int n_in;
    /* answer an `infer` with a result (1), an error (2), or nothing (0) */
    int answer;
    sciot_device *dev;
} fake;

static fake F;
static sciot_device DEV;
static uint8_t MEM[1 << 16];

/* --- fake HAL --------------------------------------------------------------------------- */

static uint64_t f_now(void *u)
{
    (void)u;
    return F.now_us;
}

static void f_sleep(void *u, uint32_t ms)
{
    (void)u;
    F.now_us += (uint64_t)ms * 1000u;
}

static bool f_connect(void *u, const char *cid, const char *wt, const uint8_t *w, size_t wl,
                      uint16_t ka)
{
    (void)u;
    (void)ka;
    F.connects++;
    if (!F.broker_up) {
        return false;
    }
    snprintf(F.client_id, sizeof F.client_id, "%s", cid);
    snprintf(F.will_topic, sizeof F.will_topic, "%s", wt);
    memcpy(F.will, w, wl);
    F.will_len = wl;
    F.n_subs = 0;
    F.link_up = true;
    return true;
}

static void f_disconnect(void *u)
{
    (void)u;
    F.link_up = false;
}

static void queue_in(const char *topic, const uint8_t *p, size_t n)
{
    msg *m = &F.in[F.n_in++];
    snprintf(m->topic, sizeof m->topic, "%s", topic);
    memcpy(m->payload, p, n);
    m->len = n;
}

static void answer_infer(const uint8_t *p, size_t n);

static bool f_publish(void *u, const char *topic, const uint8_t *p, size_t n, uint8_t qos,
                      bool retain)
{
    msg *m;
    (void)u;
    if (!F.link_up) {
        return false;
    }
    assert_true(F.n_out < MAX_MSGS);
    m = &F.out[F.n_out++];
    snprintf(m->topic, sizeof m->topic, "%s", topic);
    m->len = n < sizeof m->payload ? n : sizeof m->payload;
    memcpy(m->payload, p, m->len);
    m->qos = qos;
    m->retain = retain;
    if (strstr(topic, "/infer") != NULL) {
        answer_infer(p, n);
    }
    return true;
}

static bool f_subscribe(void *u, const char *filter, uint8_t qos)
{
    (void)u;
    (void)qos;
    snprintf(F.subs[F.n_subs++], sizeof F.subs[0], "%s", filter);
    return F.link_up;
}

static bool f_poll(void *u, uint32_t timeout_ms)
{
    int i;
    (void)u;
    if (!F.link_up) {
        return false;
    }
    if (F.n_in > 0) {
        int n = F.n_in;
        F.n_in = 0;
        for (i = 0; i < n; i++) {
            sciot_device_on_message(F.dev, F.in[i].topic, F.in[i].payload, F.in[i].len);
        }
        F.now_us += 1000u;
        return F.link_up;
    }
    F.now_us += (uint64_t)(timeout_ms > 0 ? timeout_ms : 1u) * 1000u;
    return F.link_up;
}

static const sciot_tensor LIVE_TENSORS[NUM_OPS + 1][2] = {
    {{0, SCIOT_DTYPE_INT8, 2, {1, 4}, 0.5, -1, 4, NULL}},
    {{1, SCIOT_DTYPE_INT8, 2, {1, 4}, 0.5, -1, 4, NULL}},
    {{1, SCIOT_DTYPE_INT8, 2, {1, 4}, 0.5, -1, 4, NULL},
     {2, SCIOT_DTYPE_INT8, 2, {1, 4}, 0.5, -1, 4, NULL}},
    {{3, SCIOT_DTYPE_INT8, 4, {1, 2, 2, 3}, 0.00390625, -128, 12, NULL}},
};
static const unsigned COUNTS[NUM_OPS + 1] = {1, 1, 2, 1};

static unsigned f_count(void *u, uint16_t split)
{
    (void)u;
    return split <= NUM_OPS ? COUNTS[split] : 0;
}

static bool f_tensor(void *u, uint16_t split, unsigned k, sciot_tensor *out)
{
    (void)u;
    if (split > NUM_OPS || k >= COUNTS[split]) {
        return false;
    }
    *out = LIVE_TENSORS[split][k];
    return true;
}

/* State between boundaries: 4 bytes; op i adds i + 1; the output spreads them over 12. */
static bool f_run(void *u, uint16_t first, uint16_t last, const sciot_tensor *in, unsigned n_in,
                  sciot_tensor *out, unsigned n_out, double *op_ms)
{
    int8_t v[4];
    unsigned i, op;
    (void)u;
    assert_int_equal(n_in, COUNTS[first]);
    assert_int_equal(n_out, COUNTS[last]);
    memcpy(v, in[0].data, 4);
    for (op = first; op < last; op++) {
        for (i = 0; i < 4; i++) {
            v[i] = (int8_t)(v[i] + (int8_t)(op + 1u));
        }
        op_ms[op - first] = 1.5;
        F.now_us += 1500u;
    }
    if (last == NUM_OPS) {
        for (i = 0; i < 12; i++) {
            ((uint8_t *)out[0].data)[i] = (uint8_t)(i % 3u == 1u && i < 3u ? 127 : v[i % 4u]);
        }
    } else {
        for (i = 0; i < n_out; i++) {
            memcpy(out[i].data, v, 4);
        }
    }
    return true;
}

static bool f_capture(void *u, uint8_t *input, size_t n)
{
    size_t i;
    (void)u;
    for (i = 0; i < n; i++) {
        input[i] = (uint8_t)(10 + i);
    }
    return true;
}

/* --- helpers ---------------------------------------------------------------------------- */

static sciot_hal make_hal(void)
{
    sciot_hal h;
    memset(&h, 0, sizeof h);
    h.now_us = f_now;
    h.sleep_ms = f_sleep;
    h.connect = f_connect;
    h.disconnect = f_disconnect;
    h.publish = f_publish;
    h.subscribe = f_subscribe;
    h.poll = f_poll;
    h.model.boundary_count = f_count;
    h.model.boundary_tensor = f_tensor;
    h.model.run_ops = f_run;
    h.capture = f_capture;
    return h;
}

static sciot_config make_cfg(void)
{
    sciot_config c;
    sciot_config_defaults(&c);
    c.id = "d1";
    c.kind = "test";
    c.model_id = "fake";
    c.num_ops = NUM_OPS;
    c.session = 41;
    c.heartbeat_interval_s = 5.0;
    c.result_timeout_s = 2.0;
    return c;
}

static int setup(void **state)
{
    sciot_config cfg = make_cfg();
    sciot_hal hal = make_hal();
    (void)state;
    memset(&F, 0, sizeof F);
    F.broker_up = true;
    F.now_us = 1000000u;
    F.dev = &DEV;
    assert_true(sciot_device_memory(&cfg, &hal) <= sizeof MEM);
    assert_true(sciot_device_init(&DEV, &cfg, &hal, MEM, sizeof MEM));
    return 0;
}

static int count_topic(const char *suffix, int since)
{
    int i, n = 0;
    for (i = since; i < F.n_out; i++) {
        const char *t = F.out[i].topic;
        size_t tl = strlen(t), sl = strlen(suffix);
        if (tl >= sl && strcmp(t + tl - sl, suffix) == 0) {
            n++;
        }
    }
    return n;
}

static const msg *last_on(const char *suffix)
{
    int i;
    for (i = F.n_out - 1; i >= 0; i--) {
        const char *t = F.out[i].topic;
        size_t tl = strlen(t), sl = strlen(suffix);
        if (tl >= sl && strcmp(t + tl - sl, suffix) == 0) {
            return &F.out[i];
        }
    }
    return NULL;
}

static void send_assign_to(double hb, uint32_t session, const char *instance)
{
    uint8_t b[256];
    sciot_mpw w;
    sciot_mpw_init(&w, b, sizeof b);
    sciot_mpw_map(&w, 5);
    sciot_mpw_cstr(&w, "model");
    sciot_mpw_cstr(&w, "fake");
    sciot_mpw_cstr(&w, "session");
    sciot_mpw_uint(&w, session);
    sciot_mpw_cstr(&w, "hb_interval_s");
    sciot_mpw_f64(&w, hb);
    sciot_mpw_cstr(&w, "max_payload");
    sciot_mpw_uint(&w, 262144);
    sciot_mpw_cstr(&w, "instance");
    sciot_mpw_cstr(&w, instance);
    queue_in("sciot/v1/dev/d1/assign", b, w.len);
}

static void send_assign_for(double hb, uint32_t session)
{
    send_assign_to(hb, session, "edge");
}

static void send_assign(double hb)
{
    send_assign_for(hb, DEV.session);
}

static void send_instance(const char *instance, bool online, double started_at)
{
    uint8_t b[128];
    char topic[96];
    sciot_mpw w;
    sciot_mpw_init(&w, b, sizeof b);
    sciot_mpw_map(&w, 3);
    sciot_mpw_cstr(&w, "online");
    sciot_mpw_bool(&w, online);
    sciot_mpw_cstr(&w, "instance");
    sciot_mpw_cstr(&w, instance);
    sciot_mpw_cstr(&w, "started_at");
    sciot_mpw_f64(&w, started_at);
    snprintf(topic, sizeof topic, "sciot/v1/service/%s/state", instance);
    queue_in(topic, b, w.len);
}

static void send_service(bool online)
{
    send_instance("edge", online, 1.0);
}

static void send_split(uint32_t decision, const char *mode, int64_t split)
{
    uint8_t b[256];
    sciot_mpw w;
    sciot_mpw_init(&w, b, sizeof b);
    sciot_mpw_map(&w, 5);
    sciot_mpw_cstr(&w, "decision");
    sciot_mpw_uint(&w, decision);
    sciot_mpw_cstr(&w, "model");
    sciot_mpw_cstr(&w, "fake");
    sciot_mpw_cstr(&w, "split");
    sciot_mpw_int(&w, split);
    sciot_mpw_cstr(&w, "mode");
    sciot_mpw_cstr(&w, mode);
    sciot_mpw_cstr(&w, "reason");
    sciot_mpw_cstr(&w, "test");
    queue_in("sciot/v1/dev/d1/split", b, w.len);
}

static void answer_infer(const uint8_t *p, size_t n)
{
    sciot_infer_request r;
    uint8_t b[512], out[12];
    sciot_mpw w;
    unsigned i;
    assert_int_equal(sciot_decode_infer_request(p, n, &r, NULL), SCIOT_OK);
    if (F.answer == 0) {
        return;
    }
    sciot_mpw_init(&w, b, sizeof b);
    if (F.answer == 2) {
        sciot_mpw_map(&w, 4);
        sciot_mpw_cstr(&w, "code");
        sciot_mpw_cstr(&w, "overloaded");
        sciot_mpw_cstr(&w, "reason");
        sciot_mpw_cstr(&w, "queue full");
        sciot_mpw_cstr(&w, "topic");
        sciot_mpw_cstr(&w, "infer");
        sciot_mpw_cstr(&w, "seq");
        sciot_mpw_uint(&w, r.seq);
        queue_in("sciot/v1/dev/d1/error", b, w.len);
        return;
    }
    for (i = 0; i < 12; i++) {
        out[i] = 0x55;
    }
    sciot_mpw_map(&w, 7);
    sciot_mpw_cstr(&w, "seq");
    sciot_mpw_uint(&w, r.seq);
    sciot_mpw_cstr(&w, "model");
    sciot_mpw_cstr(&w, "fake");
    sciot_mpw_cstr(&w, "split");
    sciot_mpw_uint(&w, r.split);
    sciot_mpw_cstr(&w, "output");
    sciot_mpw_map(&w, 6);
    sciot_mpw_cstr(&w, "index");
    sciot_mpw_uint(&w, 3);
    sciot_mpw_cstr(&w, "dtype");
    sciot_mpw_cstr(&w, "int8");
    sciot_mpw_cstr(&w, "shape");
    sciot_mpw_array(&w, 4);
    sciot_mpw_uint(&w, 1);
    sciot_mpw_uint(&w, 2);
    sciot_mpw_uint(&w, 2);
    sciot_mpw_uint(&w, 3);
    sciot_mpw_cstr(&w, "scale");
    sciot_mpw_f64(&w, 0.00390625);
    sciot_mpw_cstr(&w, "zero_point");
    sciot_mpw_int(&w, -128);
    sciot_mpw_cstr(&w, "data");
    sciot_mpw_bin(&w, out, 12);
    sciot_mpw_cstr(&w, "edge_ms");
    sciot_mpw_array(&w, 0);
    sciot_mpw_cstr(&w, "queue_ms");
    sciot_mpw_f64(&w, 0);
    sciot_mpw_cstr(&w, "service_ms");
    sciot_mpw_f64(&w, 0.5);
    queue_in("sciot/v1/dev/d1/result", b, w.len);
}

/* Connect, get assigned by an online service: mode offload. */
static void bring_online(void)
{
    sciot_device_step(&DEV, 10);
    assert_true(DEV.connected);
    send_service(true);
    send_assign(0.5);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_OFFLOAD);
}

/* --- tests ------------------------------------------------------------------------------ */

static void connect_announces_in_order(void **state)
{
    sciot_device_state will, st;
    sciot_birth birth;
    sciot_heartbeat hb;
    (void)state;
    sciot_device_step(&DEV, 10);
    assert_true(DEV.connected);
    assert_int_equal(DEV.session, 42);      /* incremented before the connection */
    assert_string_equal(F.client_id, "d1"); /* the device id: its account (topics.md) */
    assert_string_equal(F.will_topic, "sciot/v1/dev/d1/state");
    assert_int_equal(sciot_decode_device_state(F.will, F.will_len, &will, NULL), SCIOT_OK);
    assert_false(will.online);
    assert_int_equal(will.session, 42);
    assert_int_equal(F.n_subs, 7);
    assert_string_equal(F.subs[0], "sciot/v1/dev/d1/assign");
    assert_string_equal(F.subs[5], "sciot/v1/dev/d1/echo_reply");
    assert_string_equal(F.subs[6], "sciot/v1/service/+/state");
    /* state online (retained), then birth, then a heartbeat */
    assert_string_equal(F.out[0].topic, "sciot/v1/dev/d1/state");
    assert_true(F.out[0].retain);
    assert_int_equal(sciot_decode_device_state(F.out[0].payload, F.out[0].len, &st, NULL),
                     SCIOT_OK);
    assert_true(st.online);
    assert_int_equal(st.session, 42);
    assert_string_equal(F.out[1].topic, "sciot/v1/dev/d1/birth");
    assert_false(F.out[1].retain);
    assert_int_equal(sciot_decode_birth(F.out[1].payload, F.out[1].len, &birth, NULL), SCIOT_OK);
    assert_int_equal(birth.session, 42);
    assert_int_equal(birth.protocol, SCIOT_PROTOCOL_VERSION);
    assert_int_equal(birth.n_models, 1);
    sciot_device_step(&DEV, 10);
    assert_string_equal(F.out[2].topic, "sciot/v1/dev/d1/hb");
    assert_int_equal(F.out[2].qos, 0);
    assert_int_equal(sciot_decode_heartbeat(F.out[2].payload, F.out[2].len, &hb, NULL), SCIOT_OK);
    assert_int_equal(hb.mode, SCIOT_MODE_LOCAL); /* no assignment, no service yet */
    assert_int_equal(DEV.summary.connects, 1);
}

static void assignment_and_service_give_offload(void **state)
{
    (void)state;
    bring_online();
    assert_int_equal(DEV.summary.assignments, 1);
    assert_int_equal(DEV.summary.resumes, 1);
    assert_true(DEV.hb_interval_s == 0.5);
}

static void heartbeats_follow_the_assigned_interval(void **state)
{
    int since, i;
    uint64_t start;
    sciot_heartbeat hb;
    uint32_t first_seq;
    (void)state;
    bring_online();
    sciot_device_step(&DEV, 1);
    since = F.n_out;
    start = F.now_us;
    first_seq = DEV.hb_seq;
    while (F.now_us - start < 5000000u) {
        sciot_device_step(&DEV, 50);
    }
    /* 5 s at 0.5 s: 10 heartbeats, give or take the one at the edge */
    i = count_topic("/hb", since);
    assert_true(i >= 9 && i <= 11);
    assert_int_equal(
        sciot_decode_heartbeat(last_on("/hb")->payload, last_on("/hb")->len, &hb, NULL), SCIOT_OK);
    assert_int_equal(hb.seq, first_seq + (uint32_t)i - 1u);
    assert_int_equal(hb.session, DEV.session);
    assert_int_equal(hb.mode, SCIOT_MODE_OFFLOAD);
}

static void broker_loss_goes_local_and_reconnects_with_a_new_session(void **state)
{
    sciot_device_state will;
    uint32_t first;
    uint64_t lost_at;
    (void)state;
    bring_online();
    first = DEV.session;
    F.link_up = false;
    F.broker_up = false;
    sciot_device_step(&DEV, 10);
    assert_false(DEV.connected);
    assert_int_equal(DEV.mode, SCIOT_MODE_LOCAL);
    assert_int_equal(DEV.summary.fallbacks, 1);
    assert_int_equal(DEV.summary.disconnects, 1);
    /* backoff: no attempt before reconnect_min, attempts keep failing while the broker is down */
    lost_at = F.now_us;
    sciot_device_step(&DEV, 10);
    assert_true(F.now_us - lost_at < 200000u || F.connects >= 2);
    while (F.now_us - lost_at < 3000000u) {
        sciot_device_step(&DEV, 100);
    }
    assert_true(F.connects >= 3 && F.connects <= 8); /* 0.2 s doubling, not a busy loop */
    F.broker_up = true;
    while (!DEV.connected) {
        sciot_device_step(&DEV, 100);
    }
    assert_true(DEV.session > first + 1u); /* one increment per connection attempt */
    assert_int_equal(sciot_decode_device_state(F.will, F.will_len, &will, NULL), SCIOT_OK);
    assert_int_equal(will.session, DEV.session);
    /* assignment kept; the service's retained state comes back after the subscribe, but only
     * an assign answering the new session's birth proves the service is there */
    assert_int_equal(DEV.mode, SCIOT_MODE_LOCAL);
    send_service(true);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_LOCAL);
    send_assign(0.5);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_OFFLOAD);
    assert_int_equal(DEV.summary.resumes, 2);
}

static void service_offline_falls_back_and_resumes(void **state)
{
    sciot_heartbeat hb;
    (void)state;
    bring_online();
    send_service(false);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_LOCAL);
    assert_int_equal(DEV.summary.fallbacks, 1);
    while (count_topic("/hb", 0) < 4) {
        sciot_device_step(&DEV, 100);
    }
    assert_int_equal(
        sciot_decode_heartbeat(last_on("/hb")->payload, last_on("/hb")->len, &hb, NULL), SCIOT_OK);
    assert_int_equal(hb.mode, SCIOT_MODE_LOCAL);
    {
        /* a local inference publishes timings, not infer */
        sciot_inference rec;
        sciot_local_timings t;
        assert_true(sciot_device_infer(&DEV, &rec));
        assert_int_equal(rec.path, SCIOT_PATH_LOCAL);
        assert_int_equal(count_topic("/infer/edge", 0), 0);
        assert_int_equal(sciot_decode_local_timings(last_on("/timings/edge")->payload,
                                                    last_on("/timings/edge")->len, &t, NULL),
                         SCIOT_OK);
        assert_int_equal(t.reason, SCIOT_REASON_LOCAL);
        assert_int_equal(t.device_ms.count, NUM_OPS);
        assert_true(t.device_ms.sum == 4.5);
        /* every cell passes 0.5; the one holding 127 comes first (the record keeps them) */
        assert_int_equal(rec.n_detections, 4);
        assert_int_equal(rec.detections[0].x, 0);
        assert_int_equal(rec.detections[0].y, 0);
        assert_true(rec.detections[0].score == 255.0 / 256.0);
    }
    /* back online: local until it answers the birth it asks for (cmd rebirth) */
    send_service(true);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_LOCAL);
    send_assign(0.5);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_OFFLOAD);
    assert_int_equal(DEV.summary.resumes, 2);
}

/* A retained assign names an earlier session: it gives the model, not the right to offload. */
static void only_an_assign_answering_this_birth_allows_offload(void **state)
{
    (void)state;
    sciot_device_step(&DEV, 10);
    assert_true(DEV.connected);
    send_service(true);
    send_assign_for(0.5, DEV.session - 1u);
    sciot_device_step(&DEV, 10);
    assert_true(DEV.has_assign);
    assert_int_equal(DEV.mode, SCIOT_MODE_LOCAL);
    send_assign(0.5);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_OFFLOAD);
}

static void rebirth_command_announces_again(void **state)
{
    uint8_t b[64];
    sciot_mpw w;
    int since;
    sciot_birth birth;
    (void)state;
    bring_online();
    since = F.n_out;
    sciot_mpw_init(&w, b, sizeof b);
    sciot_mpw_map(&w, 2);
    sciot_mpw_cstr(&w, "cmd");
    sciot_mpw_cstr(&w, "rebirth");
    sciot_mpw_cstr(&w, "reason");
    sciot_mpw_cstr(&w, "service restarted");
    queue_in("sciot/v1/dev/d1/cmd", b, w.len);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.summary.rebirths, 1);
    assert_int_equal(count_topic("/state", since), 1);
    assert_int_equal(count_topic("/birth", since), 1);
    assert_int_equal(
        sciot_decode_birth(last_on("/birth")->payload, last_on("/birth")->len, &birth, NULL),
        SCIOT_OK);
    assert_int_equal(birth.session, DEV.session); /* the current session, not a new one */
}

static void malformed_decision_is_rejected_and_the_last_one_kept(void **state)
{
    const char *reason;
    const sciot_decision *followed;
    uint8_t junk[] = {0x93, 1, 2, 3};
    (void)state;
    bring_online();
    send_split(1, "offload", 2);
    sciot_device_step(&DEV, 10);
    assert_int_equal(sciot_device_plan(&DEV, &reason, &followed), 2);
    send_split(2, "sideways", 1);
    queue_in("sciot/v1/dev/d1/split", junk, sizeof junk);
    send_split(3, "offload", 70000);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.summary.decisions_rejected, 3);
    assert_int_equal(DEV.summary.decisions, 1);
    assert_int_equal(sciot_device_plan(&DEV, &reason, &followed), 2);
    assert_string_equal(reason, "decision");
    assert_int_equal(followed->decision, 1);
}

static void retained_split_applies_at_once(void **state)
{
    const char *reason;
    const sciot_decision *followed;
    (void)state;
    /* retained assign, split and service state arrive right after the subscribe */
    sciot_device_step(&DEV, 10);
    send_service(true);
    send_assign(0.5);
    send_split(7, "offload", 1);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_OFFLOAD);
    assert_int_equal(sciot_device_plan(&DEV, &reason, &followed), 1);
    assert_int_equal(followed->decision, 7);
}

static void probe_runs_once_then_follows_the_last_decision(void **state)
{
    sciot_inference rec;
    sciot_local_timings t;
    (void)state;
    bring_online();
    F.answer = 1;
    send_split(1, "offload", 2);
    send_split(2, "probe", 3);
    sciot_device_step(&DEV, 10);
    assert_true(sciot_device_infer(&DEV, &rec));
    assert_int_equal(rec.split, NUM_OPS);
    assert_string_equal(rec.reason, "probe");
    assert_int_equal(sciot_decode_local_timings(last_on("/timings/edge")->payload,
                                                last_on("/timings/edge")->len, &t, NULL),
                     SCIOT_OK);
    assert_int_equal(t.reason, SCIOT_REASON_PROBE);
    assert_true(sciot_device_infer(&DEV, &rec));
    assert_int_equal(rec.split, 2);
    assert_int_equal(rec.path, SCIOT_PATH_OFFLOAD);
    assert_int_equal(count_topic("/timings/edge", 0), 1);
}

/* An offload predicted slower than the device's own device-only run is a link check. */
static void send_link_check(uint32_t decision, int64_t split, double predicted_ms)
{
    uint8_t b[256];
    sciot_mpw w;
    sciot_mpw_init(&w, b, sizeof b);
    sciot_mpw_map(&w, 6);
    sciot_mpw_cstr(&w, "decision");
    sciot_mpw_uint(&w, decision);
    sciot_mpw_cstr(&w, "model");
    sciot_mpw_cstr(&w, "fake");
    sciot_mpw_cstr(&w, "split");
    sciot_mpw_int(&w, split);
    sciot_mpw_cstr(&w, "mode");
    sciot_mpw_cstr(&w, "offload");
    sciot_mpw_cstr(&w, "reason");
    sciot_mpw_cstr(&w, "checking the link");
    sciot_mpw_cstr(&w, "predicted_ms");
    sciot_mpw_f64(&w, predicted_ms);
    queue_in("sciot/v1/dev/d1/split", b, w.len);
}

static void send_echo_reply(uint32_t seq, double sent_ms)
{
    uint8_t b[64];
    sciot_mpw w;
    sciot_mpw_init(&w, b, sizeof b);
    sciot_mpw_map(&w, 2);
    sciot_mpw_cstr(&w, "seq");
    sciot_mpw_uint(&w, seq);
    sciot_mpw_cstr(&w, "sent_ms");
    sciot_mpw_f64(&w, sent_ms);
    queue_in("sciot/v1/dev/d1/echo_reply", b, w.len);
}

static void link_check_is_an_echo_beside_a_local_run(void **state)
{
    sciot_inference rec;
    sciot_echo e;
    sciot_local_timings t;
    const msg *m;
    int i, mark;
    (void)state;
    bring_online();
    F.answer = 1;
    send_split(1, "local", NUM_OPS);
    sciot_device_step(&DEV, 10);
    assert_true(sciot_device_infer(&DEV, &rec)); /* a local run: the device knows its time */
    assert_int_equal(rec.path, SCIOT_PATH_LOCAL);
    send_link_check(2, 0, 1000.0); /* 1000 ms predicted, 4.5 ms here: only the link matters */
    sciot_device_step(&DEV, 10);
    mark = F.n_out;
    for (i = 0; i < 30 && count_topic("/echo/edge", mark) == 0; i++) {
        assert_true(sciot_device_infer(&DEV, &rec));
        assert_int_equal(rec.path, SCIOT_PATH_LOCAL); /* the user is served locally */
        assert_int_equal(rec.split, NUM_OPS);
    }
    assert_string_equal(rec.reason, "link check beside");
    assert_int_equal(count_topic("/infer/edge", mark), 0); /* no tensor goes out */
    m = last_on("/echo/edge");
    assert_non_null(m);
    assert_int_equal(m->qos, 0);
    assert_int_equal(sciot_decode_echo(m->payload, m->len, &e, NULL), SCIOT_OK);
    assert_int_equal(e.seq, rec.seq);
    assert_int_equal(e.session, DEV.session);
    assert_int_equal(e.padding_len, 0); /* the first echo measures latency */
    assert_true(DEV.summary.echoes_sent == 1);
    /* within budget: half of a tenth of what users' inferences sent (the latency pot) */
    assert_true(2u * DEV.summary.measure_uplink_bytes * SCIOT_ECHO_SHARE_DIVISOR <=
                DEV.summary.user_uplink_bytes);
    /* the reply, heard while idle: its round trip goes with the next timings */
    F.now_us += 7000u;
    send_echo_reply(e.seq, e.sent_ms);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.summary.echoes_answered, 1);
    assert_true(sciot_device_infer(&DEV, &rec));
    m = last_on("/timings/edge");
    assert_int_equal(sciot_decode_local_timings(m->payload, m->len, &t, NULL), SCIOT_OK);
    assert_true(t.has_rtt_seq && t.rtt_seq == e.seq);
    assert_true(t.rtt_ms >= 7.0 && t.rtt_ms < 20.0);
    /* a reply that waited behind a run is not a sample */
    mark = F.n_out;
    for (i = 0; i < 30 && count_topic("/echo/edge", mark) == 0; i++) {
        assert_true(sciot_device_infer(&DEV, &rec));
    }
    m = last_on("/echo/edge");
    assert_int_equal(sciot_decode_echo(m->payload, m->len, &e, NULL), SCIOT_OK);
    assert_true(sciot_device_infer(&DEV, &rec)); /* runs before the reply is handled */
    send_echo_reply(e.seq, e.sent_ms);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.summary.echoes_answered, 1);
    assert_false(DEV.echo_waiting); /* answered all the same: the next one may go */
}

static void offload_sends_the_live_tensors_and_uses_the_result(void **state)
{
    sciot_inference rec;
    sciot_infer_request r;
    const msg *m;
    (void)state;
    bring_online();
    F.answer = 1;
    send_split(5, "offload", 2);
    sciot_device_step(&DEV, 10);
    assert_true(sciot_device_infer(&DEV, &rec));
    assert_int_equal(rec.path, SCIOT_PATH_OFFLOAD);
    assert_string_equal(rec.reason, "answered");
    assert_int_equal(rec.output[0], 0x55); /* the service's output, not a local one */
    m = last_on("/infer/edge");
    assert_non_null(m);
    assert_int_equal(m->qos, 1);
    assert_int_equal(sciot_decode_infer_request(m->payload, m->len, &r, NULL), SCIOT_OK);
    assert_int_equal(r.split, 2);
    assert_true(r.has_decision && r.decision == 5);
    assert_int_equal(r.session, DEV.session);
    assert_int_equal(r.n_tensors, 2); /* both live tensors of the residual block */
    assert_int_equal(r.tensors[0].index, 1);
    assert_int_equal(r.tensors[1].index, 2);
    /* input 10..13, ops 0 and 1 added 1 and 2 */
    assert_int_equal(r.tensors[0].data[0], 13);
    assert_int_equal(r.tensors[1].data[3], 16);
    assert_true(r.device_ms.count == 2 && r.device_ms.sum == 3.0);
    assert_false(r.has_rtt_ms);
    /* the next request reports this one's round trip */
    assert_true(sciot_device_infer(&DEV, &rec));
    assert_int_equal(sciot_decode_infer_request(last_on("/infer/edge")->payload,
                                                last_on("/infer/edge")->len, &r, NULL),
                     SCIOT_OK);
    assert_true(r.has_rtt_ms && r.has_rtt_seq);
    assert_int_equal(r.rtt_seq, r.seq - 1u);
}

/* A fleet (topics.md, "Fleet"): requests go to the instance the assign names; another
 * instance starting does not stop the device offloading, a handover moves the requests, and
 * the will of an instance that no longer serves the device changes nothing. */
static void requests_follow_the_assigned_instance(void **state)
{
    sciot_inference rec;
    (void)state;
    bring_online();
    F.answer = 1;
    send_split(5, "offload", 2);
    send_instance("cloud", true, 2.0); /* another instance comes up: not ours */
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_OFFLOAD);
    assert_true(sciot_device_infer(&DEV, &rec));
    assert_string_equal(rec.reason, "answered");
    assert_int_equal(count_topic("/infer/edge", 0), 1);
    send_assign_to(0.5, DEV.session, "cloud"); /* handed over */
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_OFFLOAD);
    assert_true(sciot_device_infer(&DEV, &rec));
    assert_string_equal(rec.reason, "answered");
    assert_int_equal(count_topic("/infer/cloud", 0), 1);
    assert_int_equal(count_topic("/infer/edge", 0), 1);
    send_service(false); /* the old instance's will */
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_OFFLOAD);
    send_instance("cloud", false, 2.0); /* its own instance's will: local at once */
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_LOCAL);
}

static void no_result_or_an_error_finishes_locally(void **state)
{
    sciot_inference rec;
    uint8_t local[12];
    uint64_t t0;
    (void)state;
    bring_online();
    send_service(false);
    sciot_device_step(&DEV, 10);
    assert_true(sciot_device_infer(&DEV, &rec)); /* a local reference output */
    memcpy(local, rec.output, 12);
    send_service(true);
    send_assign(0.5);
    send_split(5, "offload", 1);
    sciot_device_step(&DEV, 10);
    F.answer = 0;
    t0 = F.now_us;
    assert_true(sciot_device_infer(&DEV, &rec));
    assert_int_equal(rec.path, SCIOT_PATH_FALLBACK);
    assert_string_equal(rec.reason, "timeout");
    assert_true(F.now_us - t0 >= 2000000u);     /* the result timeout passed */
    assert_memory_equal(rec.output, local, 12); /* the tail ran from the tensors it held */
    /* a hung service: local, and state + birth again until the service answers them */
    assert_int_equal(DEV.summary.unanswered, 1);
    assert_int_equal(DEV.mode, SCIOT_MODE_LOCAL);
    assert_int_equal(count_topic("/birth", 0), 2);
    send_assign(0.5);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.mode, SCIOT_MODE_OFFLOAD);
    F.answer = 2;
    assert_true(sciot_device_infer(&DEV, &rec));
    assert_int_equal(rec.path, SCIOT_PATH_FALLBACK);
    assert_string_equal(rec.reason, "error:overloaded");
    assert_int_equal(DEV.summary.errors_received, 1);
    assert_int_equal(DEV.summary.fallbacks_local, 2);
    assert_int_equal(DEV.summary.offloaded, 0);
}

static void cleared_assignment_goes_local(void **state)
{
    (void)state;
    bring_online();
    queue_in("sciot/v1/dev/d1/assign", (const uint8_t *)"", 0); /* retained message deleted */
    sciot_device_step(&DEV, 10);
    assert_false(DEV.has_assign);
    assert_int_equal(DEV.mode, SCIOT_MODE_LOCAL);
    assert_true(DEV.hb_interval_s == 5.0); /* the configured interval again */
}

static void messages_for_others_are_ignored(void **state)
{
    uint8_t b[128];
    sciot_mpw w;
    (void)state;
    bring_online();
    sciot_mpw_init(&w, b, sizeof b);
    sciot_mpw_map(&w, 2);
    sciot_mpw_cstr(&w, "cmd");
    sciot_mpw_cstr(&w, "rebirth");
    sciot_mpw_cstr(&w, "reason");
    sciot_mpw_cstr(&w, "x");
    queue_in("sciot/v1/dev/d2/cmd", b, w.len);
    queue_in("sciot/v1/dev/d1/cmd/extra", b, w.len);
    queue_in("other/v1/dev/d1/cmd", b, w.len);
    sciot_device_step(&DEV, 10);
    assert_int_equal(DEV.summary.rebirths, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(connect_announces_in_order, setup),
        cmocka_unit_test_setup(assignment_and_service_give_offload, setup),
        cmocka_unit_test_setup(heartbeats_follow_the_assigned_interval, setup),
        cmocka_unit_test_setup(broker_loss_goes_local_and_reconnects_with_a_new_session, setup),
        cmocka_unit_test_setup(service_offline_falls_back_and_resumes, setup),
        cmocka_unit_test_setup(only_an_assign_answering_this_birth_allows_offload, setup),
        cmocka_unit_test_setup(rebirth_command_announces_again, setup),
        cmocka_unit_test_setup(malformed_decision_is_rejected_and_the_last_one_kept, setup),
        cmocka_unit_test_setup(retained_split_applies_at_once, setup),
        cmocka_unit_test_setup(probe_runs_once_then_follows_the_last_decision, setup),
        cmocka_unit_test_setup(link_check_is_an_echo_beside_a_local_run, setup),
        cmocka_unit_test_setup(offload_sends_the_live_tensors_and_uses_the_result, setup),
        cmocka_unit_test_setup(requests_follow_the_assigned_instance, setup),
        cmocka_unit_test_setup(no_result_or_an_error_finishes_locally, setup),
        cmocka_unit_test_setup(cleared_assignment_goes_local, setup),
        cmocka_unit_test_setup(messages_for_others_are_ignored, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
