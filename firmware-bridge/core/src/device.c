/* The device state machine; mirrors sciot_mqtt/device/ (device.py: connection and mode;
 * presence.py: state, will, birth, heartbeats; inbox.py: what the service sends;
 * inference.py and offload.py: one inference) step by step. */
#include "sciot/device.h"

#include "util.h"

#define TX_OVERHEAD 1024u

void sciot_config_defaults(sciot_config *cfg)
{
    sciot_zero(cfg, sizeof *cfg);
    cfg->id = "device-1";
    cfg->kind = "host-c";
    cfg->max_payload = 262144u;
    cfg->heartbeat_interval_s = 5.0;
    cfg->keepalive_s = 10;
    cfg->reconnect_min_s = 0.2;
    cfg->reconnect_max_s = 5.0;
    cfg->split_pin = -1;
    cfg->result_timeout_s = 5.0;
}

static void log_event(sciot_device *dev, int level, const char *event, const char *detail)
{
    if (dev->hal.log != NULL) {
        dev->hal.log(dev->hal.user, level, event, detail != NULL ? detail : "");
    }
}

static bool fail(sciot_device *dev, sciot_err e, const char *detail)
{
    dev->error = e;
    dev->error_detail = detail;
    return false;
}

static uint64_t now_us(sciot_device *dev)
{
    return dev->hal.now_us(dev->hal.user);
}

static uint64_t secs_to_us(double s)
{
    return s <= 0 ? 0u : (uint64_t)(s * 1e6);
}

static void copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap) {
        len = cap - 1u;
    }
    sciot_copy(dst, src, len);
    dst[len] = '\0';
}

static bool str_is(sciot_str s, const char *cstr)
{
    return sciot_str_eq(s.ptr, s.len, cstr);
}

static bool str_eq_c(const char *a, const char *b)
{
    return sciot_str_eq(a, sciot_strlen(a), b);
}

/* sciot/v1/dev/{id}/{kind} in dev->topic */
static const char *dev_topic(sciot_device *dev, const char *kind)
{
    size_t pos = 0;
    dev->topic[0] = '\0';
    (void)sciot_append(dev->topic, sizeof dev->topic, &pos, SCIOT_NAMESPACE "/dev/",
                       sciot_strlen(SCIOT_NAMESPACE "/dev/"));
    (void)sciot_append(dev->topic, sizeof dev->topic, &pos, dev->id, sciot_strlen(dev->id));
    (void)sciot_append(dev->topic, sizeof dev->topic, &pos, "/", 1);
    (void)sciot_append(dev->topic, sizeof dev->topic, &pos, kind, sciot_strlen(kind));
    return dev->topic;
}

/* sciot/v1/dev/{id}/{kind}/{instance} in dev->topic: what goes to the one instance serving the
 * device, the one its assign names (topics.md, "Fleet"); NULL if it does not fit. */
static const char *addressed_topic(sciot_device *dev, const char *kind)
{
    size_t pos = sciot_strlen(dev_topic(dev, kind));
    if (!sciot_append(dev->topic, sizeof dev->topic, &pos, "/", 1) ||
        !sciot_append(dev->topic, sizeof dev->topic, &pos, dev->assign_instance,
                      sciot_strlen(dev->assign_instance))) {
        return NULL;
    }
    return dev->topic;
}

/* --- memory ---------------------------------------------------------------------------- */

static uint32_t boundary_bytes(const sciot_hal *hal, uint16_t split, unsigned *count)
{
    unsigned n = hal->model.boundary_count(hal->model.ctx, split), k;
    uint32_t total = 0;
    for (k = 0; k < n; k++) {
        sciot_tensor t;
        if (!hal->model.boundary_tensor(hal->model.ctx, split, k, &t)) {
            return 0;
        }
        total += t.nbytes;
    }
    if (count != NULL) {
        *count = n;
    }
    return total;
}

typedef struct {
    uint32_t input, boundary, output;
    size_t tx;
} layout;

static bool plan_memory(const sciot_config *cfg, const sciot_hal *hal, layout *l)
{
    uint16_t s;
    unsigned n_in = 0, n_out = 0;
    l->input = boundary_bytes(hal, 0, &n_in);
    l->output = boundary_bytes(hal, cfg->num_ops, &n_out);
    l->boundary = 0;
    if (cfg->num_ops == 0 || n_in != 1 || n_out != 1 || l->input == 0 || l->output == 0) {
        return false;
    }
    l->tx = l->input;
    for (s = 1; s < cfg->num_ops; s++) {
        uint32_t b = boundary_bytes(hal, s, NULL);
        if (b == 0) {
            return false;
        }
        if (b > l->boundary) {
            l->boundary = b;
        }
        if (b > l->tx) {
            l->tx = b;
        }
    }
    l->tx += TX_OVERHEAD + 9u * cfg->num_ops + 64u * SCIOT_MAX_BOUNDARY_TENSORS;
    if (l->tx < 4096u + 9u * cfg->num_ops + 32u * SCIOT_MAX_DETECTIONS) {
        l->tx = 4096u + 9u * cfg->num_ops + 32u * SCIOT_MAX_DETECTIONS;
    }
    return true;
}

static size_t align8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

size_t sciot_device_memory(const sciot_config *cfg, const sciot_hal *hal)
{
    layout l;
    if (!plan_memory(cfg, hal, &l)) {
        return 0;
    }
    return align8(l.input) + align8(l.boundary) + align8(l.output) + align8(l.tx) +
           sizeof(double) * cfg->num_ops + 8u;
}

bool sciot_device_init(sciot_device *dev, const sciot_config *cfg, const sciot_hal *hal, void *mem,
                       size_t mem_len)
{
    layout l;
    uint8_t *p;
    size_t idlen;
    sciot_zero(dev, sizeof *dev);
    dev->cfg = *cfg;
    dev->hal = *hal;
    dev->mode = SCIOT_MODE_LOCAL;
    idlen = cfg->id != NULL ? sciot_strlen(cfg->id) : 0;
    if (!sciot_is_valid_id(cfg->id, idlen) || cfg->model_id == NULL ||
        !sciot_is_valid_id(cfg->model_id, sciot_strlen(cfg->model_id))) {
        return fail(dev, SCIOT_E_ARG, "device id or model id is not a valid topic level");
    }
    copy_str(dev->id, sizeof dev->id, cfg->id, idlen);
    if (!plan_memory(cfg, hal, &l)) {
        return fail(dev, SCIOT_E_MODEL, "the model has no usable boundaries");
    }
    if (mem == NULL || mem_len < sciot_device_memory(cfg, hal)) {
        return fail(dev, SCIOT_E_BUFFER, "memory block smaller than sciot_device_memory()");
    }
    p = (uint8_t *)(((uintptr_t)mem + 7u) & ~(uintptr_t)7u);
    dev->op_ms = (double *)(void *)p;
    p += sizeof(double) * cfg->num_ops;
    dev->input = p;
    dev->input_bytes = l.input;
    p += align8(l.input);
    dev->boundary = p;
    dev->boundary_cap = l.boundary;
    p += align8(l.boundary);
    dev->output = p;
    dev->output_bytes = l.output;
    p += align8(l.output);
    dev->tx = p;
    dev->tx_cap = l.tx;
    if (!hal->model.boundary_tensor(hal->model.ctx, cfg->num_ops, 0, &dev->output_tensor)) {
        return fail(dev, SCIOT_E_MODEL, "no output tensor");
    }
    dev->output_tensor.data = dev->output;
    dev->session = cfg->session;
    dev->hb_interval_s = cfg->heartbeat_interval_s;
    dev->backoff_s = cfg->reconnect_min_s;
    return true;
}

/* --- mode ------------------------------------------------------------------------------ */

/* Whether the instance serving the device (its assign's) is online: another instance of a
 * fleet being up does not serve it (topics.md, "Fleet"). */
static bool service_online(const sciot_device *dev)
{
    uint8_t i;
    for (i = 0; i < dev->n_services; i++) {
        if (dev->services[i].online && str_eq_c(dev->services[i].name, dev->assign_instance)) {
            return true;
        }
    }
    return false;
}

/* _changed_now(): offload only while connected, some service is online, and it has answered
 * this session's birth with an assign since it came online (topics.md, "Device modes"). */
static void update_mode(sciot_device *dev)
{
    uint8_t mode = dev->connected && dev->has_assign && dev->assign_live && service_online(dev)
                       ? SCIOT_MODE_OFFLOAD
                       : SCIOT_MODE_LOCAL;
    if (mode == dev->mode) {
        return;
    }
    if (mode == SCIOT_MODE_LOCAL) {
        if (!dev->stopping) {
            dev->summary.fallbacks++;
        }
        if (dev->pending && dev->pending_outcome == 0) {
            dev->pending_outcome = 2;
            copy_str(dev->pending_error, sizeof dev->pending_error, "service unavailable", 19);
        }
    } else {
        dev->summary.resumes++;
    }
    dev->mode = mode;
    log_event(dev, 0, "mode", mode == SCIOT_MODE_OFFLOAD ? "offload" : "local");
}

/* --- connection ------------------------------------------------------------------------ */

static bool publish(sciot_device *dev, const char *kind, const uint8_t *p, size_t n, uint8_t qos,
                    bool retain)
{
    return dev->hal.publish(dev->hal.user, dev_topic(dev, kind), p, n, qos, retain);
}

/* To the instance serving the device (`infer`, `timings`). */
static bool publish_addressed(sciot_device *dev, const char *kind, const uint8_t *p, size_t n,
                              uint8_t qos, bool retain)
{
    const char *topic = addressed_topic(dev, kind);
    return topic != NULL && dev->hal.publish(dev->hal.user, topic, p, n, qos, retain);
}

/* `state` online, then `birth`: the order topics.md fixes. */
static bool announce(sciot_device *dev)
{
    uint8_t buf[512];
    size_t n;
    sciot_birth_out birth;
    const char *models[1];
    if (sciot_encode_device_state(true, dev->session, buf, sizeof buf, &n) != SCIOT_OK ||
        !publish(dev, SCIOT_DEVICE_STATE_TOPIC, buf, n, SCIOT_DEVICE_STATE_QOS,
                 SCIOT_DEVICE_STATE_RETAIN)) {
        return false;
    }
    models[0] = dev->cfg.model_id;
    birth.protocol = SCIOT_PROTOCOL_VERSION;
    birth.session = dev->session;
    birth.kind = dev->cfg.kind;
    birth.n_models = 1;
    birth.models = models;
    birth.max_payload = dev->cfg.max_payload;
    birth.fw = dev->cfg.fw;
    if (sciot_encode_birth(&birth, buf, sizeof buf, &n) != SCIOT_OK) {
        return false;
    }
    return publish(dev, SCIOT_BIRTH_TOPIC, buf, n, SCIOT_BIRTH_QOS, SCIOT_BIRTH_RETAIN);
}

static void lost(sciot_device *dev)
{
    if (dev->connected) {
        dev->summary.disconnects++;
        dev->hal.disconnect(dev->hal.user);
    }
    dev->connected = false;
    update_mode(dev);
}

/* No result in time: the service may hang with its connection open, so its will would come
 * only after its keepalive. Work locally until it answers a new birth (topics.md, "Device
 * modes"). */
static void service_unresponsive(sciot_device *dev)
{
    if (!dev->assign_live) {
        return;
    }
    dev->summary.unanswered++;
    log_event(dev, 1, "no result in time; local until the service answers a birth", NULL);
    dev->assign_live = false;
    update_mode(dev);
    if (dev->connected && !announce(dev)) {
        lost(dev);
    }
}

static void schedule_reconnect(sciot_device *dev)
{
    /* Backoff: doubling from reconnect_min to reconnect_max, with up to 25 % jitter. */
    double delay = dev->backoff_s;
    if (dev->hal.random != NULL) {
        delay *= 1.0 + 0.25 * ((double)(dev->hal.random(dev->hal.user) % 1000u) / 1000.0);
    }
    dev->next_connect_us = now_us(dev) + secs_to_us(delay);
    dev->backoff_s *= 2.0;
    if (dev->backoff_s > dev->cfg.reconnect_max_s) {
        dev->backoff_s = dev->cfg.reconnect_max_s;
    }
}

static bool connect(sciot_device *dev)
{
    static const char *const kinds[] = {
        SCIOT_ASSIGN_TOPIC,  SCIOT_SPLIT_DECISION_TOPIC, SCIOT_INFER_RESULT_TOPIC,
        SCIOT_COMMAND_TOPIC, SCIOT_ERROR_REPORT_TOPIC,   SCIOT_ECHO_REPLY_TOPIC,
    };
    char will_topic[SCIOT_TOPIC_MAX];
    uint8_t will[32];
    size_t will_len;
    unsigned i;
    dev->session = dev->session + 1u; /* before every connection (topics.md, "Sessions") */
    if (sciot_encode_device_state(false, dev->session, will, sizeof will, &will_len) != SCIOT_OK) {
        return false;
    }
    (void)dev_topic(dev, SCIOT_DEVICE_STATE_TOPIC);
    copy_str(will_topic, sizeof will_topic, dev->topic, sciot_strlen(dev->topic));
    /* The client id is the device id, which is also its broker account (topics.md,
     * "Clients and accounts"): a broker with logins binds the two. */
    if (!dev->hal.connect(dev->hal.user, dev->id, will_topic, will, will_len,
                          dev->cfg.keepalive_s)) {
        return false;
    }
    dev->n_services = 0;
    dev->assign_live = false;
    /* a new connection, a new echo budget (protocol/linkcheck.py) */
    dev->echo_latency_pot = 0;
    dev->echo_bandwidth_pot = 0;
    dev->echo_due = false;
    dev->echo_waiting = false;
    for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (!dev->hal.subscribe(dev->hal.user, dev_topic(dev, kinds[i]), 1)) {
            dev->hal.disconnect(dev->hal.user);
            return false;
        }
    }
    if (!dev->hal.subscribe(dev->hal.user, SCIOT_NAMESPACE "/service/+/" SCIOT_SERVICE_STATE_TOPIC,
                            1) ||
        !announce(dev)) {
        dev->hal.disconnect(dev->hal.user);
        return false;
    }
    dev->connected = true;
    dev->summary.connects++;
    dev->backoff_s = dev->cfg.reconnect_min_s;
    dev->next_hb_us = now_us(dev); /* a heartbeat at once, like the Python device */
    log_event(dev, 0, "connected", NULL);
    update_mode(dev);
    return true;
}

static void heartbeat(sciot_device *dev)
{
    uint8_t buf[64];
    size_t n;
    if (sciot_encode_heartbeat(dev->hb_seq, dev->session, dev->mode, buf, sizeof buf, &n) ==
            SCIOT_OK &&
        publish(dev, SCIOT_HEARTBEAT_TOPIC, buf, n, SCIOT_HEARTBEAT_QOS, SCIOT_HEARTBEAT_RETAIN)) {
        dev->hb_seq = dev->hb_seq + 1u;
        dev->summary.heartbeats++;
    }
    dev->next_hb_us = now_us(dev) + secs_to_us(dev->hb_interval_s);
}

bool sciot_device_step(sciot_device *dev, uint32_t timeout_ms)
{
    uint64_t now = now_us(dev);
    if (!dev->connected) {
        if (now >= dev->next_connect_us) {
            if (!connect(dev)) {
                log_event(dev, 1, "broker unreachable", NULL);
                schedule_reconnect(dev);
            }
        } else {
            uint64_t wait_ms = (dev->next_connect_us - now + 999u) / 1000u;
            dev->hal.sleep_ms(dev->hal.user, wait_ms < timeout_ms ? (uint32_t)wait_ms : timeout_ms);
        }
        return true;
    }
    if (now >= dev->next_hb_us) {
        heartbeat(dev);
    }
    {
        uint64_t until_hb = dev->next_hb_us > now ? (dev->next_hb_us - now) / 1000u : 0u;
        uint32_t wait = until_hb < timeout_ms ? (uint32_t)until_hb : timeout_ms;
        if (!dev->hal.poll(dev->hal.user, wait)) {
            log_event(dev, 1, "connection lost", NULL);
            lost(dev);
            schedule_reconnect(dev);
        }
    }
    return true;
}

void sciot_device_stop(sciot_device *dev)
{
    dev->stopping = true;
    if (dev->connected) {
        uint8_t buf[32];
        size_t n;
        if (sciot_encode_device_state(false, dev->session, buf, sizeof buf, &n) == SCIOT_OK) {
            (void)publish(dev, SCIOT_DEVICE_STATE_TOPIC, buf, n, SCIOT_DEVICE_STATE_QOS,
                          SCIOT_DEVICE_STATE_RETAIN);
        }
        (void)dev->hal.poll(dev->hal.user, 0); /* flush */
        lost(dev);
    }
}

/* --- receiving ------------------------------------------------------------------------- */

static void on_service_state(sciot_device *dev, const char *name, size_t name_len, const uint8_t *p,
                             size_t n)
{
    uint8_t i;
    int slot = -1;
    for (i = 0; i < dev->n_services; i++) {
        if (sciot_str_eq(name, name_len, dev->services[i].name)) {
            slot = i;
            break;
        }
    }
    if (n == 0) { /* retained state cleared */
        if (slot >= 0) {
            dev->services[slot] = dev->services[dev->n_services - 1u];
            dev->n_services--;
        }
        return;
    }
    {
        sciot_service_state st;
        const char *detail;
        if (sciot_decode_service_state(p, n, &st, &detail) != SCIOT_OK) {
            log_event(dev, 1, "service state rejected", detail);
            return;
        }
        bool was_online, restarted;
        if (slot < 0) {
            if (dev->n_services == SCIOT_MAX_SERVICES || name_len > SCIOT_DEVICE_ID_MAX_LEN) {
                log_event(dev, 1, "too many service instances", NULL);
                return;
            }
            slot = dev->n_services++;
            copy_str(dev->services[slot].name, sizeof dev->services[slot].name, name, name_len);
            dev->services[slot].online = false;
            dev->services[slot].has_started_at = false;
        }
        was_online = dev->services[slot].online;
        restarted = dev->services[slot].has_started_at != st.has_started_at ||
                    (st.has_started_at && dev->services[slot].started_at != st.started_at);
        if (st.online && (!was_online || restarted) &&
            str_eq_c(dev->services[slot].name, dev->assign_instance)) {
            /* Its instance (re)starting knows nothing of this connection yet: wait for the
             * answer to a birth (it asks for one) before offloading again. Another instance
             * of the fleet coming up changes nothing here. */
            dev->assign_live = false;
        }
        dev->services[slot].online = st.online;
        if (st.online) {
            dev->services[slot].has_started_at = st.has_started_at;
            dev->services[slot].started_at = st.started_at;
        }
    }
}

static void on_assign(sciot_device *dev, const uint8_t *p, size_t n)
{
    sciot_assign a;
    const char *detail;
    bool had;
    double previous;
    if (n == 0) { /* retained assignment cleared: back to the configured interval */
        dev->has_assign = false;
        dev->hb_interval_s = dev->cfg.heartbeat_interval_s;
        return;
    }
    if (sciot_decode_assign(p, n, &a, &detail) != SCIOT_OK) {
        log_event(dev, 1, "assign rejected", detail);
        return;
    }
    if (!str_is(a.model, dev->cfg.model_id)) {
        log_event(dev, 1, "assignment of a model this device lacks", NULL);
        return;
    }
    had = dev->has_assign;
    previous = dev->hb_interval_s;
    dev->has_assign = true;
    copy_str(dev->assign_model, sizeof dev->assign_model, a.model.ptr, a.model.len);
    copy_str(dev->assign_instance, sizeof dev->assign_instance, a.instance.ptr, a.instance.len);
    dev->assign_session = a.session;
    if (a.session == dev->session) {
        dev->assign_live = true;
    }
    dev->hb_interval_s = a.hb_interval_s;
    dev->summary.assignments++;
    if (!had || previous != a.hb_interval_s) {
        dev->next_hb_us = now_us(dev); /* a new interval: heartbeat now, then at the new pace */
    }
    log_event(dev, 0, "assigned", dev->assign_model);
}

static void on_split(sciot_device *dev, const uint8_t *p, size_t n)
{
    sciot_split_decision s;
    const char *detail;
    if (n == 0) {
        dev->has_decision = false;
        return;
    }
    if (sciot_decode_split_decision(p, n, &s, &detail) != SCIOT_OK) {
        dev->summary.decisions_rejected++;
        log_event(dev, 1, "decision rejected", detail);
        return;
    }
    dev->has_decision = true;
    dev->decision.decision = s.decision;
    dev->decision.split = s.split;
    dev->decision.mode = s.mode;
    copy_str(dev->decision.model, sizeof dev->decision.model, s.model.ptr, s.model.len);
    copy_str(dev->decision.reason, sizeof dev->decision.reason, s.reason.ptr, s.reason.len);
    dev->decision.has_predicted_ms = s.has_predicted_ms;
    dev->decision.predicted_ms = s.predicted_ms;
    if (s.mode != SCIOT_MODE_PROBE) {
        dev->followed = dev->decision;
        dev->has_followed = true;
    }
    dev->summary.decisions++;
}

static void on_result(sciot_device *dev, const uint8_t *p, size_t n)
{
    sciot_infer_result r;
    const char *detail;
    if (sciot_decode_infer_result(p, n, dev->cfg.max_payload, &r, &detail) != SCIOT_OK) {
        log_event(dev, 1, "result rejected", detail);
        return;
    }
    if (!dev->pending || dev->pending_outcome != 0 || r.seq != dev->pending_seq) {
        return;
    }
    if (r.output.nbytes == 0 || r.output.nbytes != dev->output_bytes) {
        dev->pending_outcome = 3;
        return;
    }
    sciot_copy(dev->output, r.output.data, r.output.nbytes);
    dev->pending_outcome = 1;
}

static void on_error(sciot_device *dev, const uint8_t *p, size_t n)
{
    sciot_error_report e;
    const char *detail;
    if (sciot_decode_error_report(p, n, &e, &detail) != SCIOT_OK) {
        log_event(dev, 1, "error report rejected", detail);
        return;
    }
    dev->summary.errors_received++;
    if (str_is(e.topic, SCIOT_DEV_TOPIC_INFER) && e.has_seq && dev->pending &&
        dev->pending_outcome == 0 && e.seq >= 0 && (uint64_t)e.seq == dev->pending_seq) {
        size_t pos = 0;
        const char *code = sciot_error_code_str(e.code);
        dev->pending_error[0] = '\0';
        (void)sciot_append(dev->pending_error, sizeof dev->pending_error, &pos, "error:", 6);
        (void)sciot_append(dev->pending_error, sizeof dev->pending_error, &pos, code,
                           sciot_strlen(code));
        dev->pending_outcome = 2;
    }
    log_event(dev, 1, "service rejected a message", sciot_error_code_str(e.code));
}

/* The answer to the echo awaiting it: its round trip goes with the next message, unless a
 * run started meanwhile (this single thread handled the reply late: no honest sample). */
static void on_echo_reply(sciot_device *dev, const uint8_t *p, size_t n)
{
    sciot_echo_reply r;
    const char *detail;
    double now_ms;
    if (sciot_decode_echo_reply(p, n, &r, &detail) != SCIOT_OK) {
        log_event(dev, 1, "echo reply rejected", detail);
        return;
    }
    if (!dev->echo_waiting || r.seq != dev->echo_seq) {
        return;
    }
    dev->echo_waiting = false;
    if (dev->echo_blind) {
        log_event(dev, 0, "echo reply handled after a run; not a sample", NULL);
        return;
    }
    now_ms = (double)now_us(dev) / 1000.0;
    dev->has_last_rtt = true;
    dev->last_rtt_seq = r.seq;
    dev->last_rtt_ms = now_ms > r.sent_ms ? now_ms - r.sent_ms : 0.0;
    dev->summary.echoes_answered++;
}

static void on_command(sciot_device *dev, const uint8_t *p, size_t n)
{
    sciot_command c;
    const char *detail;
    if (sciot_decode_command(p, n, &c, &detail) != SCIOT_OK) {
        log_event(dev, 1, "command rejected", detail);
        return;
    }
    if (c.cmd == SCIOT_CMD_REBIRTH) {
        dev->summary.rebirths++;
        log_event(dev, 0, "rebirth", NULL);
        if (dev->connected) {
            (void)announce(dev);
        }
    }
}

/* Splits "sciot/v1/<scope>/<ident>/<last>" like parse_topic(). */
static bool parse(const char *topic, const char **scope, size_t *scope_len, const char **ident,
                  size_t *ident_len, const char **last)
{
    static const char ns[] = SCIOT_NAMESPACE "/";
    const char *p = topic, *q;
    size_t i;
    for (i = 0; i < sizeof ns - 1u; i++) {
        if (p[i] != ns[i]) {
            return false;
        }
    }
    p += sizeof ns - 1u;
    for (q = p; *q != '\0' && *q != '/'; q++) {
    }
    if (*q != '/') {
        return false;
    }
    *scope = p;
    *scope_len = (size_t)(q - p);
    p = q + 1;
    for (q = p; *q != '\0' && *q != '/'; q++) {
    }
    if (*q != '/') {
        return false;
    }
    *ident = p;
    *ident_len = (size_t)(q - p);
    *last = q + 1;
    for (q = *last; *q != '\0'; q++) {
        if (*q == '/') {
            return false;
        }
    }
    return true;
}

void sciot_device_on_message(sciot_device *dev, const char *topic, const uint8_t *payload,
                             size_t len)
{
    const char *scope, *ident, *last;
    size_t scope_len, ident_len;
    if (!parse(topic, &scope, &scope_len, &ident, &ident_len, &last)) {
        return;
    }
    if (sciot_str_eq(scope, scope_len, "service")) {
        if (sciot_str_eq(last, sciot_strlen(last), SCIOT_SERVICE_STATE_TOPIC)) {
            on_service_state(dev, ident, ident_len, payload, len);
        }
    } else if (sciot_str_eq(scope, scope_len, "dev") && sciot_str_eq(ident, ident_len, dev->id)) {
        size_t n = sciot_strlen(last);
        if (sciot_str_eq(last, n, SCIOT_ASSIGN_TOPIC)) {
            on_assign(dev, payload, len);
        } else if (sciot_str_eq(last, n, SCIOT_SPLIT_DECISION_TOPIC)) {
            on_split(dev, payload, len);
        } else if (sciot_str_eq(last, n, SCIOT_INFER_RESULT_TOPIC)) {
            on_result(dev, payload, len);
        } else if (sciot_str_eq(last, n, SCIOT_COMMAND_TOPIC)) {
            on_command(dev, payload, len);
        } else if (sciot_str_eq(last, n, SCIOT_ERROR_REPORT_TOPIC)) {
            on_error(dev, payload, len);
        } else if (sciot_str_eq(last, n, SCIOT_ECHO_REPLY_TOPIC)) {
            on_echo_reply(dev, payload, len);
        }
    }
    update_mode(dev);
}

/* --- inference ------------------------------------------------------------------------- */

uint16_t sciot_device_plan(sciot_device *dev, const char **reason, const sciot_decision **followed)
{
    uint16_t n = dev->cfg.num_ops;
    const sciot_decision *d = dev->has_decision ? &dev->decision : NULL;
    *followed = NULL;
    if (dev->mode != SCIOT_MODE_OFFLOAD) {
        *reason = "local";
        return n;
    }
    if (dev->cfg.split_pin >= 0) {
        *reason = "pinned";
        return dev->cfg.split_pin < (int32_t)n ? (uint16_t)dev->cfg.split_pin : n;
    }
    if (d != NULL && d->mode == SCIOT_MODE_PROBE) {
        if (!dev->has_probed || d->decision != dev->probed) {
            *reason = "probe";
            *followed = d;
            return n;
        }
        d = dev->has_followed ? &dev->followed : NULL; /* one probe per probe decision */
    }
    if (d == NULL || !sciot_str_eq(d->model, sciot_strlen(d->model), dev->cfg.model_id)) {
        *reason = "local";
        return n;
    }
    *followed = d;
    if (d->mode == SCIOT_MODE_LOCAL || d->split >= n) {
        *reason = "local";
        return n;
    }
    *reason = "decision";
    return d->split;
}

uint32_t sciot_fomo_decode(const int8_t *out, const sciot_tensor *tensor, float threshold,
                           sciot_detection *dets, uint32_t max)
{
    uint32_t h, w, c, y, x, k, found = 0;
    float scale = (float)tensor->scale;
    if (tensor->ndim != 4 || tensor->shape[0] != 1) {
        return 0;
    }
    h = (uint32_t)tensor->shape[1];
    w = (uint32_t)tensor->shape[2];
    c = (uint32_t)tensor->shape[3];
    for (y = 0; y < h; y++) {
        for (x = 0; x < w; x++) {
            const int8_t *cell = out + ((size_t)y * w + x) * c;
            float best = -1.0f;
            uint32_t best_k = 0;
            for (k = 1; k < c; k++) { /* channel 0 is background */
                float prob = ((float)cell[k] - (float)tensor->zero_point) * scale;
                if (prob > best) {
                    best = prob;
                    best_k = k;
                }
            }
            if (best >= threshold && found < max) {
                /* insert keeping (-score, y, x) order; cells arrive in (y, x) order */
                uint32_t at = found;
                while (at > 0 && dets[at - 1u].score < (double)best) {
                    dets[at] = dets[at - 1u];
                    at--;
                }
                dets[at].cls = best_k;
                dets[at].x = x;
                dets[at].y = y;
                dets[at].score = (double)best;
                found++;
            }
        }
    }
    return found;
}

/* The tensors live at `split`, their data laid out one after the other in base[0..cap). */
static bool load_boundary(sciot_device *dev, uint16_t split, sciot_tensor *tensors, uint8_t *base,
                          uint32_t cap, unsigned *count)
{
    unsigned n = dev->hal.model.boundary_count(dev->hal.model.ctx, split), k;
    uint32_t off = 0;
    if (n == 0 || n > SCIOT_MAX_BOUNDARY_TENSORS) {
        return false;
    }
    for (k = 0; k < n; k++) {
        if (!dev->hal.model.boundary_tensor(dev->hal.model.ctx, split, k, &tensors[k]) ||
            tensors[k].nbytes > cap - off) {
            return false;
        }
        tensors[k].data = base + off;
        off += tensors[k].nbytes;
    }
    *count = n;
    return true;
}

/* What an echo of n bytes takes from its pot. */
static uint64_t echo_cost(uint64_t n)
{
    return 2u * SCIOT_ECHO_SHARE_DIVISOR * n;
}

/* A pot gains n, up to one echo of its kind (`cap` bytes of echo). */
static uint32_t pot_plus(uint32_t pot, size_t n, uint32_t cap)
{
    uint64_t v = (uint64_t)pot + n, most = echo_cost(cap);
    return (uint32_t)(v < most ? v : most);
}

/* A payload of a user's inference went out: both echo pots gain its size
 * (protocol/linkcheck.py). */
static void earn(sciot_device *dev, size_t n)
{
    dev->summary.user_uplink_bytes += n;
    dev->echo_latency_pot = pot_plus(dev->echo_latency_pot, n, SCIOT_ECHO_LATENCY_CAP);
    dev->echo_bandwidth_pot = pot_plus(dev->echo_bandwidth_pot, n, SCIOT_ECHO_BANDWIDTH_CAP);
}

static void take_rtt(sciot_device *dev, bool *has, double *ms, uint32_t *seq)
{
    *has = dev->has_last_rtt;
    *ms = dev->last_rtt_ms;
    *seq = dev->last_rtt_seq;
    dev->has_last_rtt = false;
}

static void publish_timings(sciot_device *dev, uint32_t seq, const char *reason)
{
    sciot_local_timings_out t;
    size_t n;
    if (!dev->connected || !dev->has_assign) {
        return; /* no instance serves it: nobody to tell */
    }
    t.seq = seq;
    t.session = dev->session;
    t.model = dev->cfg.model_id;
    t.reason = sciot_str_eq(reason, sciot_strlen(reason), "probe")    ? SCIOT_REASON_PROBE
               : sciot_str_eq(reason, sciot_strlen(reason), "pinned") ? SCIOT_REASON_PINNED
                                                                      : SCIOT_REASON_LOCAL;
    t.n_device_ms = dev->cfg.num_ops;
    t.device_ms = dev->op_ms;
    take_rtt(dev, &t.has_rtt, &t.rtt_ms, &t.rtt_seq);
    if (sciot_encode_local_timings(&t, dev->tx, dev->tx_cap, &n) == SCIOT_OK) {
        earn(dev, n);
        (void)publish_addressed(dev, SCIOT_LOCAL_TIMINGS_TOPIC, dev->tx, n, SCIOT_LOCAL_TIMINGS_QOS,
                                SCIOT_LOCAL_TIMINGS_RETAIN);
    }
}

/* --- link checks (topics.md, rule 8; the same rule as sciot_mqtt/protocol/linkcheck.py) ---- */

/* An offload the service predicts slower than this device's own device-only run only
 * measures the link: the user need not wait for it. */
static bool is_link_check(const sciot_device *dev, const sciot_decision *followed)
{
    return followed != NULL && followed->has_predicted_ms && dev->has_local_ms &&
           followed->predicted_ms > dev->local_ms;
}

static void observe_local(sciot_device *dev, double compute_ms)
{
    if (!dev->has_local_ms) {
        dev->local_ms = compute_ms;
        dev->has_local_ms = true;
    } else {
        dev->local_ms += 0.2 * (compute_ms - dev->local_ms);
    }
}

/* Pay for the echo due beside local run `seq`, checking split `split`; why the run is local.
 * Sent after the run (send_echo): this single thread could not hear its reply during it. */
static const char *prepare_echo(sciot_device *dev, uint32_t seq, uint16_t split)
{
    sciot_echo_out e;
    size_t small, large;
    uint64_t cost_small, cost_large;
    uint32_t checked;
    if (dev->echo_waiting &&
        now_us(dev) - dev->echo_sent_us > secs_to_us(dev->cfg.result_timeout_s)) {
        dev->echo_waiting = false; /* unanswered: given up, as a result would be */
    }
    if (dev->echo_waiting || !dev->connected) {
        return "link check: no echo due";
    }
    checked = boundary_bytes(&dev->hal, split, NULL);
    e.seq = seq;
    e.session = dev->session;
    e.sent_ms = 0.0;
    e.padding_len = 0;
    if (sciot_encode_echo(&e, dev->tx, dev->tx_cap, &small) != SCIOT_OK) {
        return "link check: no echo due";
    }
    e.padding_len = checked < SCIOT_ECHO_LARGE_PADDING ? checked : SCIOT_ECHO_LARGE_PADDING;
    if (sciot_encode_echo(&e, dev->tx, dev->tx_cap, &large) != SCIOT_OK) {
        return "link check: no echo due";
    }
    cost_small = echo_cost(small);
    cost_large = echo_cost(large);
    if (cost_large <= dev->echo_bandwidth_pot && large > small) {
        dev->echo_bandwidth_pot -= (uint32_t)cost_large; /* a bandwidth echo */
    } else if (cost_small <= dev->echo_latency_pot) {
        dev->echo_latency_pot -= (uint32_t)cost_small; /* a latency echo */
        e.padding_len = 0;
    } else {
        return "link check: no echo due";
    }
    dev->echo_due = true;
    dev->echo_due_padding = e.padding_len;
    return "link check beside";
}

static void send_echo(sciot_device *dev, uint32_t seq)
{
    sciot_echo_out e;
    size_t n;
    dev->echo_due = false;
    if (!dev->connected || !dev->has_assign) {
        return;
    }
    e.seq = seq;
    e.session = dev->session;
    e.sent_ms = (double)now_us(dev) / 1000.0;
    e.padding_len = dev->echo_due_padding;
    if (sciot_encode_echo(&e, dev->tx, dev->tx_cap, &n) != SCIOT_OK) {
        return;
    }
    dev->summary.measure_uplink_bytes += n;
    dev->summary.echoes_sent++;
    if (publish_addressed(dev, SCIOT_ECHO_TOPIC, dev->tx, n, SCIOT_ECHO_QOS, SCIOT_ECHO_RETAIN)) {
        dev->echo_waiting = true;
        dev->echo_blind = false;
        dev->echo_seq = seq;
        dev->echo_sent_us = now_us(dev);
    }
}

/* Publishes `infer` and waits for its result; the outcome is in dev->pending_outcome, with a
 * reason for a fallback. *sent gets the payload size, *rtt the round trip. */
static const char *offload(sciot_device *dev, uint32_t seq, uint16_t split,
                           const sciot_tensor *tensors, unsigned count, uint32_t *sent, double *rtt)
{
    sciot_infer_request_out req;
    size_t n;
    uint64_t sent_at, deadline;
    if (!dev->connected || !dev->has_assign) {
        return "disconnected";
    }
    req.seq = seq;
    req.session = dev->session;
    req.model = dev->cfg.model_id;
    req.split = split;
    /* like the Python device: the current decision's number, absent when pinned */
    req.has_decision = dev->cfg.split_pin < 0 && dev->has_decision;
    req.decision = dev->decision.decision;
    req.n_tensors = (uint8_t)count;
    req.tensors = tensors;
    req.n_device_ms = split;
    req.device_ms = dev->op_ms;
    take_rtt(dev, &req.has_rtt, &req.rtt_ms, &req.rtt_seq);
    if (sciot_encode_infer_request(&req, dev->tx, dev->tx_cap, &n) != SCIOT_OK) {
        return "payload too large";
    }
    earn(dev, n);
    dev->pending = true;
    dev->pending_seq = seq;
    dev->pending_outcome = 0;
    sent_at = now_us(dev);
    deadline = sent_at + secs_to_us(dev->cfg.result_timeout_s);
    if (!publish_addressed(dev, SCIOT_INFER_REQUEST_TOPIC, dev->tx, n, SCIOT_INFER_REQUEST_QOS,
                           SCIOT_INFER_REQUEST_RETAIN)) {
        dev->pending = false;
        return "disconnected";
    }
    *sent = (uint32_t)n;
    while (dev->pending_outcome == 0) {
        uint64_t now = now_us(dev);
        if (now >= deadline) {
            dev->pending = false;
            service_unresponsive(dev);
            return "timeout";
        }
        if (!dev->connected) {
            dev->pending = false;
            return "disconnected";
        }
        (void)sciot_device_step(dev, (uint32_t)((deadline - now + 999u) / 1000u));
    }
    dev->pending = false;
    if (dev->pending_outcome == 2) {
        return dev->pending_error;
    }
    if (dev->pending_outcome == 3) {
        return "malformed result";
    }
    *rtt = (double)(now_us(dev) - sent_at) / 1000.0;
    dev->has_last_rtt = true;
    dev->last_rtt_seq = seq;
    dev->last_rtt_ms = *rtt;
    return NULL;
}

bool sciot_device_infer(sciot_device *dev, sciot_inference *rec)
{
    sciot_tensor in[1], live[SCIOT_MAX_BOUNDARY_TENSORS], out[1];
    unsigned n_in = 0, count = 0, n_out = 0, i;
    const sciot_decision *followed;
    const char *reason;
    uint16_t split, num_ops = dev->cfg.num_ops;
    uint32_t seq = dev->infer_seq;
    uint64_t started;
    double head = 0;
    sciot_zero(rec, sizeof *rec);
    dev->infer_seq = dev->infer_seq + 1u;
    if (!load_boundary(dev, 0, in, dev->input, dev->input_bytes, &n_in) ||
        !load_boundary(dev, num_ops, out, dev->output, dev->output_bytes, &n_out)) {
        return fail(dev, SCIOT_E_MODEL, "model boundaries changed");
    }
    if (!dev->hal.capture(dev->hal.user, dev->input, dev->input_bytes)) {
        return fail(dev, SCIOT_E_HAL, "input capture failed");
    }
    if (dev->echo_waiting) {
        dev->echo_blind = true; /* its reply, if it comes during this run, is handled late */
    }
    split = sciot_device_plan(dev, &reason, &followed);
    if (sciot_str_eq(reason, sciot_strlen(reason), "probe") && followed != NULL) {
        dev->has_probed = true;
        dev->probed = followed->decision;
    }
    if (sciot_str_eq(reason, sciot_strlen(reason), "decision") && is_link_check(dev, followed)) {
        /* The user is served locally; the link is checked beside (an echo, not `infer`). */
        reason = prepare_echo(dev, seq, split);
        split = num_ops;
    }
    started = now_us(dev);
    for (i = 0; i < num_ops; i++) {
        dev->op_ms[i] = 0;
    }
    rec->seq = seq;
    rec->split = split;
    rec->reason = reason;
    if (split == num_ops) {
        if (!dev->hal.model.run_ops(dev->hal.model.ctx, 0, num_ops, in, n_in, out, n_out,
                                    dev->op_ms)) {
            return fail(dev, SCIOT_E_HAL, "run_ops failed");
        }
        rec->path = SCIOT_PATH_LOCAL;
        dev->n_detections =
            sciot_fomo_decode((const int8_t *)(const void *)dev->output, &dev->output_tensor, 0.5f,
                              dev->detections, SCIOT_MAX_DETECTIONS);
        for (i = 0; i < num_ops; i++) {
            head += dev->op_ms[i];
        }
        observe_local(dev, head);
        head = 0;
        publish_timings(dev, seq, reason);
        if (dev->echo_due) {
            send_echo(dev, seq);
        }
    } else {
        const char *why;
        double rtt = 0;
        if (split == 0) {
            count = n_in;
            live[0] = in[0];
        } else {
            if (!load_boundary(dev, split, live, dev->boundary, dev->boundary_cap, &count) ||
                !dev->hal.model.run_ops(dev->hal.model.ctx, 0, split, in, n_in, live, count,
                                        dev->op_ms)) {
                return fail(dev, SCIOT_E_HAL, "run_ops failed");
            }
        }
        why = offload(dev, seq, split, live, count, &rec->sent_bytes, &rtt);
        if (why == NULL) {
            rec->path = SCIOT_PATH_OFFLOAD;
            rec->reason = "answered";
            rec->has_rtt = true;
            rec->rtt_ms = rtt;
        } else {
            if (!dev->hal.model.run_ops(dev->hal.model.ctx, split, num_ops, live, count, out, n_out,
                                        dev->op_ms + split)) {
                return fail(dev, SCIOT_E_HAL, "run_ops failed");
            }
            rec->path = SCIOT_PATH_FALLBACK;
            rec->reason = why;
            log_event(dev, 1, "finished locally", why);
        }
        dev->n_detections =
            sciot_fomo_decode((const int8_t *)(const void *)dev->output, &dev->output_tensor, 0.5f,
                              dev->detections, SCIOT_MAX_DETECTIONS);
    }
    for (i = 0; i < (rec->path == SCIOT_PATH_LOCAL ? num_ops : split); i++) {
        head += dev->op_ms[i];
    }
    rec->head_ms = head;
    rec->total_ms = (double)(now_us(dev) - started) / 1000.0;
    rec->output = dev->output;
    rec->output_bytes = dev->output_bytes;
    rec->n_detections = dev->n_detections;
    rec->detections = dev->detections;
    dev->summary.inferences++;
    dev->summary.bytes_sent += rec->sent_bytes;
    if (rec->path == SCIOT_PATH_OFFLOAD) {
        dev->summary.offloaded++;
    } else if (rec->path == SCIOT_PATH_LOCAL) {
        dev->summary.local++;
    } else {
        dev->summary.fallbacks_local++;
    }
    return true;
}
