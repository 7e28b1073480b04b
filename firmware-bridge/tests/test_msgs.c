/* Decoder limits the golden vectors do not cover. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sciot/mp.h"
#include "sciot/msgs.h"

static void write_split(sciot_mpw *w, const char *mode, int64_t split, bool extra_nil)
{
    sciot_mpw_map(w, extra_nil ? 6 : 5);
    sciot_mpw_cstr(w, "decision");
    sciot_mpw_uint(w, 4);
    sciot_mpw_cstr(w, "model");
    sciot_mpw_cstr(w, "fomo96");
    sciot_mpw_cstr(w, "split");
    sciot_mpw_int(w, split);
    sciot_mpw_cstr(w, "mode");
    sciot_mpw_cstr(w, mode);
    sciot_mpw_cstr(w, "reason");
    sciot_mpw_cstr(w, "because");
    if (extra_nil) {
        sciot_mpw_cstr(w, "predicted_ms");
        sciot_mpw_nil(w);
    }
}

static void split_decisions(void **state)
{
    uint8_t b[256];
    sciot_mpw w;
    sciot_split_decision d;
    const char *detail = NULL;
    (void)state;
    sciot_mpw_init(&w, b, sizeof b);
    write_split(&w, "probe", 65535, true);
    assert_int_equal(sciot_decode_split_decision(b, w.len, &d, &detail), SCIOT_OK);
    assert_int_equal(d.mode, SCIOT_MODE_PROBE);
    assert_int_equal(d.split, 65535);
    assert_false(d.has_predicted_ms);
    sciot_mpw_init(&w, b, sizeof b);
    write_split(&w, "local", 65536, false);
    assert_int_equal(sciot_decode_split_decision(b, w.len, &d, &detail), SCIOT_E_INVALID);
    assert_string_equal(detail, "split");
    sciot_mpw_init(&w, b, sizeof b);
    write_split(&w, "Local", 3, false);
    assert_int_equal(sciot_decode_split_decision(b, w.len, &d, &detail), SCIOT_E_INVALID);
    assert_string_equal(detail, "mode");
    /* truncated anywhere: malformed, never a crash */
    sciot_mpw_init(&w, b, sizeof b);
    write_split(&w, "offload", 3, true);
    {
        size_t cut;
        for (cut = 0; cut < w.len; cut++) {
            assert_int_equal(sciot_decode_split_decision(b, cut, &d, NULL), SCIOT_E_MALFORMED);
        }
    }
}

static void too_many_tensors(void **state)
{
    static uint8_t b[4096];
    sciot_mpw w;
    sciot_infer_request r;
    unsigned k;
    (void)state;
    sciot_mpw_init(&w, b, sizeof b);
    sciot_mpw_map(&w, 6);
    sciot_mpw_cstr(&w, "seq");
    sciot_mpw_uint(&w, 1);
    sciot_mpw_cstr(&w, "session");
    sciot_mpw_uint(&w, 1);
    sciot_mpw_cstr(&w, "model");
    sciot_mpw_cstr(&w, "m");
    sciot_mpw_cstr(&w, "split");
    sciot_mpw_uint(&w, 1);
    sciot_mpw_cstr(&w, "device_ms");
    sciot_mpw_array(&w, 0);
    sciot_mpw_cstr(&w, "tensors");
    sciot_mpw_array(&w, 17);
    for (k = 0; k < 17; k++) {
        sciot_mpw_map(&w, 6);
        sciot_mpw_cstr(&w, "index");
        sciot_mpw_uint(&w, k);
        sciot_mpw_cstr(&w, "dtype");
        sciot_mpw_cstr(&w, "int8");
        sciot_mpw_cstr(&w, "shape");
        sciot_mpw_array(&w, 1);
        sciot_mpw_uint(&w, 1);
        sciot_mpw_cstr(&w, "scale");
        sciot_mpw_f64(&w, 0.5);
        sciot_mpw_cstr(&w, "zero_point");
        sciot_mpw_int(&w, 0);
        sciot_mpw_cstr(&w, "data");
        sciot_mpw_bin(&w, "x", 1);
    }
    assert_int_equal(w.error, SCIOT_MP_OK);
    assert_int_equal(sciot_decode_infer_request(b, w.len, &r, NULL), SCIOT_E_INVALID);
}

static void ids(void **state)
{
    (void)state;
    assert_true(sciot_is_valid_id("dev-1.a_b", 9));
    assert_false(sciot_is_valid_id("-dev", 4));
    assert_false(sciot_is_valid_id("a+b", 3));
    assert_false(sciot_is_valid_id("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(split_decisions),
        cmocka_unit_test(too_many_tensors),
        cmocka_unit_test(ids),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
