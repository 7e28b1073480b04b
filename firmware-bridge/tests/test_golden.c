/* The C core decodes every golden vector in tests/golden as its name says, and encodes the
 * device's messages byte for byte as the Python codec did (tests/golden/make_golden.py). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sciot/msgs.h"

static const char *golden_dir(void)
{
    const char *dir = getenv("SCIOT_GOLDEN_DIR");
    return dir != NULL ? dir : "../tests/golden";
}

static uint8_t *load(const char *name, size_t *len)
{
    char path[1024];
    FILE *f;
    uint8_t *buf = malloc(1 << 16);
    snprintf(path, sizeof path, "%s/%s", golden_dir(), name);
    f = fopen(path, "rb");
    assert_non_null(f);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

static int str_is(sciot_str s, const char *c)
{
    return s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0;
}

/* One decode of any message type; returns the error. */
static sciot_err decode_any(const char *message, const uint8_t *p, size_t n)
{
    static union {
        sciot_service_state a;
        sciot_service_stats b;
        sciot_birth c;
        sciot_device_state d;
        sciot_heartbeat e;
        sciot_infer_request f;
        sciot_local_timings g;
        sciot_assign h;
        sciot_split_decision i;
        sciot_infer_result j;
        sciot_command k;
        sciot_error_report l;
        sciot_echo m;
        sciot_echo_reply o;
    } u;
    if (!strcmp(message, "service_state"))
        return sciot_decode_service_state(p, n, &u.a, NULL);
    if (!strcmp(message, "service_stats"))
        return sciot_decode_service_stats(p, n, &u.b, NULL);
    if (!strcmp(message, "birth"))
        return sciot_decode_birth(p, n, &u.c, NULL);
    if (!strcmp(message, "device_state"))
        return sciot_decode_device_state(p, n, &u.d, NULL);
    if (!strcmp(message, "heartbeat"))
        return sciot_decode_heartbeat(p, n, &u.e, NULL);
    if (!strcmp(message, "infer_request"))
        return sciot_decode_infer_request(p, n, &u.f, NULL);
    if (!strcmp(message, "local_timings"))
        return sciot_decode_local_timings(p, n, &u.g, NULL);
    if (!strcmp(message, "assign"))
        return sciot_decode_assign(p, n, &u.h, NULL);
    if (!strcmp(message, "split_decision"))
        return sciot_decode_split_decision(p, n, &u.i, NULL);
    if (!strcmp(message, "infer_result"))
        return sciot_decode_infer_result(p, n, SCIOT_INFER_RESULT_MAX_BYTES, &u.j, NULL);
    if (!strcmp(message, "command"))
        return sciot_decode_command(p, n, &u.k, NULL);
    if (!strcmp(message, "error_report"))
        return sciot_decode_error_report(p, n, &u.l, NULL);
    if (!strcmp(message, "echo"))
        return sciot_decode_echo(p, n, &u.m, NULL);
    if (!strcmp(message, "echo_reply"))
        return sciot_decode_echo_reply(p, n, &u.o, NULL);
    fail_msg("no decoder for %s", message);
    return SCIOT_E_ARG;
}

static void every_vector_decodes_as_named(void **state)
{
    DIR *d = opendir(golden_dir());
    struct dirent *e;
    int seen = 0;
    (void)state;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char name[256], *message, *c, *expect, *dot;
        size_t n;
        uint8_t *p;
        sciot_err got, want;
        if (strstr(e->d_name, ".msgpack") == NULL) {
            continue;
        }
        snprintf(name, sizeof name, "%s", e->d_name);
        message = name;
        c = strstr(message, "__");
        assert_non_null(c);
        *c = '\0';
        expect = strstr(c + 2, "__");
        assert_non_null(expect);
        expect += 2;
        dot = strstr(expect, ".msgpack");
        *dot = '\0';
        want = !strcmp(expect, "ok")          ? SCIOT_OK
               : !strcmp(expect, "malformed") ? SCIOT_E_MALFORMED
               : !strcmp(expect, "invalid")   ? SCIOT_E_INVALID
                                              : SCIOT_E_TOO_LARGE;
        p = load(e->d_name, &n);
        got = decode_any(message, p, n);
        if (got != want) {
            fail_msg("%s: C decoder says %s, the file name says %s", e->d_name, sciot_strerror(got),
                     expect);
        }
        free(p);
        seen++;
    }
    closedir(d);
    assert_true(seen >= 30);
}

static void values_of_the_valid_vectors(void **state)
{
    size_t n;
    uint8_t *p;
    (void)state;
    {
        sciot_service_state m;
        p = load("service_state__valid__ok.msgpack", &n);
        assert_int_equal(sciot_decode_service_state(p, n, &m, NULL), SCIOT_OK);
        assert_true(m.online);
        assert_true(str_is(m.instance, "edge"));
        assert_true(m.has_started_at && m.started_at == 1763870400.25);
        assert_true(m.has_version && str_is(m.version, "0.1.0"));
        assert_int_equal(m.protocol, 1);
        assert_false(m.has_capacity || m.has_tier || m.has_placement || m.has_draining);
        free(p);
    }
    {
        sciot_service_state m;
        p = load("service_state__fleet__ok.msgpack", &n);
        assert_int_equal(sciot_decode_service_state(p, n, &m, NULL), SCIOT_OK);
        assert_true(m.has_capacity && m.capacity == 2.5);
        assert_true(m.has_tier && m.tier == SCIOT_TIER_CLOUD);
        assert_true(m.has_placement && m.placement == 1); /* least-loaded */
        assert_int_equal(m.n_models, 2);
        assert_true(m.has_draining && m.draining);
        free(p);
    }
    {
        sciot_service_stats m;
        p = load("service_stats__load__ok.msgpack", &n);
        assert_int_equal(sciot_decode_service_stats(p, n, &m, NULL), SCIOT_OK);
        assert_true(m.has_load && m.load.queue == 1.5);
        assert_int_equal(m.load.served, 7);
        free(p);
    }
    {
        sciot_service_stats m;
        p = load("service_stats__valid__ok.msgpack", &n);
        assert_int_equal(sciot_decode_service_stats(p, n, &m, NULL), SCIOT_OK);
        assert_true(m.uptime_s == 12.5 && m.rates.tx == 4.5);
        assert_int_equal(m.devices.online, 2);
        assert_int_equal(m.devices.stale, 1);
        assert_int_equal(m.rx_total, 125);
        assert_int_equal(m.errors_total, 1);
        free(p);
    }
    {
        sciot_assign m;
        p = load("assign__valid__ok.msgpack", &n);
        assert_int_equal(sciot_decode_assign(p, n, &m, NULL), SCIOT_OK);
        assert_true(str_is(m.model, "fomo96") && str_is(m.instance, "edge"));
        assert_int_equal(m.session, 70000);
        assert_true(m.hb_interval_s == 0.5);
        assert_int_equal(m.max_payload, 262144);
        free(p);
    }
    {
        sciot_split_decision m;
        p = load("split_decision__valid__ok.msgpack", &n);
        assert_int_equal(sciot_decode_split_decision(p, n, &m, NULL), SCIOT_OK);
        assert_int_equal(m.decision, 9);
        assert_int_equal(m.split, 13);
        assert_int_equal(m.mode, SCIOT_MODE_OFFLOAD);
        assert_true(str_is(m.reason, "predicted 4.2 ms"));
        assert_true(m.has_predicted_ms && m.predicted_ms == 4.25);
        free(p);
        p = load("split_decision__predicted_nil__ok.msgpack", &n);
        assert_int_equal(sciot_decode_split_decision(p, n, &m, NULL), SCIOT_OK);
        assert_false(m.has_predicted_ms);
        free(p);
    }
    {
        sciot_infer_result m;
        p = load("infer_result__valid__ok.msgpack", &n);
        assert_int_equal(sciot_decode_infer_result(p, n, 1 << 20, &m, NULL), SCIOT_OK);
        assert_int_equal(m.seq, 300);
        assert_int_equal(m.split, 7);
        assert_int_equal(m.output.index, 67);
        assert_int_equal(m.output.nbytes, 12);
        assert_int_equal(m.output.data[1], 37);
        assert_true(m.edge_ms.count == 2 && m.edge_ms.sum == 0.75);
        assert_true(m.service_ms == 1.5);
        assert_int_equal(sciot_decode_infer_result(p, n, 16, &m, NULL), SCIOT_E_TOO_LARGE);
        free(p);
    }
    {
        sciot_command m;
        p = load("command__valid__ok.msgpack", &n);
        assert_int_equal(sciot_decode_command(p, n, &m, NULL), SCIOT_OK);
        assert_int_equal(m.cmd, SCIOT_CMD_REBIRTH);
        assert_true(str_is(m.reason, "unknown session"));
        free(p);
    }
    {
        sciot_error_report m;
        p = load("error_report__valid__ok.msgpack", &n);
        assert_int_equal(sciot_decode_error_report(p, n, &m, NULL), SCIOT_OK);
        assert_string_equal(sciot_error_code_str(m.code), "tensor_mismatch");
        assert_true(str_is(m.topic, "infer"));
        assert_true(m.has_seq && m.seq == 300);
        free(p);
    }
}

static void assert_same(const char *name, const uint8_t *mine, size_t mine_len)
{
    size_t n;
    uint8_t *p = load(name, &n);
    assert_int_equal(mine_len, n);
    assert_memory_equal(mine, p, n);
    free(p);
}

static void device_messages_encode_byte_for_byte(void **state)
{
    uint8_t buf[4096];
    size_t n;
    size_t golden_len;
    uint8_t *golden;
    (void)state;
    {
        const char *models[] = {"fomo96"};
        sciot_birth_out b = {1, 4000000000u, "esp32s3", 1, models, 262144, "sciot-fw 0.1.0"};
        sciot_birth d;
        assert_int_equal(sciot_encode_birth(&b, buf, sizeof buf, &n), SCIOT_OK);
        assert_same("birth__valid__ok.msgpack", buf, n);
        assert_int_equal(sciot_decode_birth(buf, n, &d, NULL), SCIOT_OK);
        assert_int_equal(d.n_models, 1);
        assert_true(str_is(d.models[0], "fomo96"));
    }
    assert_int_equal(sciot_encode_device_state(false, 7, buf, sizeof buf, &n), SCIOT_OK);
    assert_same("device_state__valid__ok.msgpack", buf, n);
    assert_int_equal(
        sciot_encode_heartbeat(65535, 4294967295u, SCIOT_MODE_OFFLOAD, buf, sizeof buf, &n),
        SCIOT_OK);
    assert_same("heartbeat__valid__ok.msgpack", buf, n);
    {
        /* decode the golden request, then encode what it says: the same bytes */
        sciot_infer_request r;
        sciot_tensor t[2];
        double ms[] = {0.5, 1.25, 0.125, 2.0, 0.0, 3.5, 0.75};
        sciot_infer_request_out o;
        unsigned k, j;
        golden = load("infer_request__valid__ok.msgpack", &golden_len);
        assert_int_equal(sciot_decode_infer_request(golden, golden_len, &r, NULL), SCIOT_OK);
        assert_int_equal(r.n_tensors, 2);
        assert_int_equal(r.tensors[0].index, 48);
        assert_int_equal(r.tensors[0].zero_point, -128);
        assert_int_equal(r.tensors[1].shape[3], 12);
        assert_true(r.device_ms.count == 7 && r.device_ms.sum == 8.125);
        for (k = 0; k < 2; k++) {
            for (j = 0; j < r.tensors[k].ndim; j++) {
                t[k].shape[j] = r.tensors[k].shape[j];
            }
            t[k].index = (uint32_t)r.tensors[k].index;
            t[k].dtype = r.tensors[k].dtype;
            t[k].ndim = r.tensors[k].ndim;
            t[k].scale = r.tensors[k].scale;
            t[k].zero_point = (int32_t)r.tensors[k].zero_point;
            t[k].data = (void *)r.tensors[k].data; /* the encoder only reads it */
            t[k].nbytes = r.tensors[k].nbytes;
        }
        o.seq = r.seq;
        o.session = r.session;
        o.model = "fomo96";
        o.split = r.split;
        o.has_decision = r.has_decision;
        o.decision = r.decision;
        o.n_tensors = 2;
        o.tensors = t;
        o.n_device_ms = 7;
        o.device_ms = ms;
        o.has_rtt = r.has_rtt_ms;
        o.rtt_ms = r.rtt_ms;
        o.rtt_seq = r.rtt_seq;
        assert_int_equal(sciot_encode_infer_request(&o, buf, sizeof buf, &n), SCIOT_OK);
        assert_int_equal(n, golden_len);
        assert_memory_equal(buf, golden, n);
        assert_int_equal(sciot_encode_infer_request(&o, buf, 40, &n), SCIOT_E_BUFFER);
        free(golden);
    }
    {
        double ms[] = {1.0, 2.0, 0.5};
        sciot_local_timings_out o = {12, 70000, "fomo96", SCIOT_REASON_PROBE, 3, ms, false, 0, 0};
        sciot_local_timings d;
        assert_int_equal(sciot_encode_local_timings(&o, buf, sizeof buf, &n), SCIOT_OK);
        assert_same("local_timings__valid__ok.msgpack", buf, n);
        assert_int_equal(sciot_decode_local_timings(buf, n, &d, NULL), SCIOT_OK);
        assert_int_equal(d.reason, SCIOT_REASON_PROBE);
        assert_true(d.device_ms.count == 3 && d.device_ms.sum == 3.5);
    }
    {
        /* a link check's echo, and the service's reply to it (topics.md, rule 8) */
        sciot_echo_out o = {12, 70000, 123456.75, 16};
        sciot_echo d;
        sciot_echo_reply r;
        assert_int_equal(sciot_encode_echo(&o, buf, sizeof buf, &n), SCIOT_OK);
        assert_same("echo__valid__ok.msgpack", buf, n);
        assert_int_equal(sciot_decode_echo(buf, n, &d, NULL), SCIOT_OK);
        assert_true(d.seq == 12 && d.session == 70000 && d.sent_ms == 123456.75);
        assert_int_equal(d.padding_len, 16);
        assert_int_equal(sciot_encode_echo(&o, buf, 20, &n), SCIOT_E_BUFFER);
        o.padding_len = SCIOT_ECHO_PADDING_MAX_LEN + 1u;
        assert_int_equal(sciot_encode_echo(&o, buf, sizeof buf, &n), SCIOT_E_ARG);
        golden = load("echo_reply__valid__ok.msgpack", &golden_len);
        assert_int_equal(sciot_decode_echo_reply(golden, golden_len, &r, NULL), SCIOT_OK);
        assert_true(r.seq == 12 && r.sent_ms == 123456.75);
        free(golden);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_vector_decodes_as_named),
        cmocka_unit_test(values_of_the_valid_vectors),
        cmocka_unit_test(device_messages_encode_byte_for_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
