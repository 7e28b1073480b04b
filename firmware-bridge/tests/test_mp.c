/* The msgpack subset: smallest encodings as msgpack-python picks them, strict reading. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sciot/mp.h"

static size_t enc_uint(uint64_t v, uint8_t *out)
{
    sciot_mpw w;
    sciot_mpw_init(&w, out, 16);
    assert_true(sciot_mpw_uint(&w, v));
    return w.len;
}

static size_t enc_int(int64_t v, uint8_t *out)
{
    sciot_mpw w;
    sciot_mpw_init(&w, out, 16);
    assert_true(sciot_mpw_int(&w, v));
    return w.len;
}

static void integers_take_the_smallest_form(void **state)
{
    uint8_t b[16];
    (void)state;
    assert_int_equal(enc_uint(127, b), 1);
    assert_int_equal(b[0], 0x7f);
    assert_int_equal(enc_uint(128, b), 2);
    assert_int_equal(b[0], 0xcc);
    assert_int_equal(enc_uint(256, b), 3);
    assert_int_equal(b[0], 0xcd);
    assert_int_equal(enc_uint(65536, b), 5);
    assert_int_equal(b[0], 0xce);
    assert_int_equal(enc_uint(4294967296u, b), 9);
    assert_int_equal(b[0], 0xcf);
    assert_int_equal(enc_int(-32, b), 1);
    assert_int_equal(b[0], 0xe0);
    assert_int_equal(enc_int(-33, b), 2);
    assert_int_equal(b[0], 0xd0);
    assert_int_equal(enc_int(-129, b), 3);
    assert_int_equal(b[0], 0xd1);
    assert_int_equal(enc_int(-32769, b), 5);
    assert_int_equal(b[0], 0xd2);
    assert_int_equal(enc_int(INT64_MIN, b), 9);
    assert_int_equal(b[0], 0xd3);
}

static void integers_round_trip(void **state)
{
    static const int64_t values[] = {0,     1,      127,    128,       255,       256,
                                     65535, 65536,  -1,     -32,       -33,       -128,
                                     -129,  -32768, -32769, INT32_MIN, INT64_MIN, INT64_MAX};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof values / sizeof values[0]; i++) {
        uint8_t b[16];
        sciot_mpr r;
        bool neg;
        uint64_t u = 0;
        int64_t s = 0;
        size_t n = enc_int(values[i], b);
        sciot_mpr_init(&r, b, n);
        assert_true(sciot_mpr_integer(&r, &neg, &u, &s));
        assert_int_equal(r.pos, n);
        assert_true(neg ? s == values[i] : (int64_t)u == values[i]);
    }
}

static void strings_bins_and_containers(void **state)
{
    uint8_t b[512];
    char text[300];
    sciot_mpw w;
    sciot_mpr r;
    const char *s;
    const uint8_t *p;
    uint32_t len, chars, n;
    (void)state;
    memset(text, 'a', sizeof text);
    sciot_mpw_init(&w, b, sizeof b);
    assert_true(sciot_mpw_str(&w, text, 31));
    assert_int_equal(b[0], 0xbf);
    assert_true(sciot_mpw_str(&w, text, 32));
    assert_int_equal(b[32], 0xd9);
    assert_true(sciot_mpw_bin(&w, text, 3));
    assert_true(sciot_mpw_map(&w, 16));
    assert_true(sciot_mpw_array(&w, 15));
    sciot_mpr_init(&r, b, w.len);
    assert_true(sciot_mpr_str(&r, &s, &len, &chars));
    assert_int_equal(len, 31);
    assert_true(sciot_mpr_str(&r, &s, &len, &chars));
    assert_int_equal(len, 32);
    assert_false(sciot_mpr_str(&r, &s, &len, &chars)); /* a bin is not a str */
    assert_int_equal(r.error, SCIOT_MP_TYPE);
    r.error = SCIOT_MP_OK;
    assert_true(sciot_mpr_bin(&r, &p, &len));
    assert_int_equal(len, 3);
    assert_true(sciot_mpr_map(&r, &n));
    assert_int_equal(n, 16);
    assert_true(sciot_mpr_array(&r, &n));
    assert_int_equal(n, 15);
    /* overflow is sticky */
    sciot_mpw_init(&w, b, 4);
    assert_false(sciot_mpw_str(&w, text, 10));
    assert_int_equal(w.error, SCIOT_MP_OVERFLOW);
    assert_false(sciot_mpw_nil(&w));
}

static void utf8_is_checked_like_python(void **state)
{
    static const uint8_t ok[] = {0xa5, 'c', 0xc3, 0xa9, 'f', 'e'}; /* "cef" with e-acute */
    static const uint8_t overlong[] = {0xa2, 0xc0, 0xaf};          /* overlong '/' */
    static const uint8_t surrogate[] = {0xa3, 0xed, 0xa0, 0x80};   /* U+D800 */
    static const uint8_t cut[] = {0xa2, 0xe2, 0x82};               /* truncated */
    sciot_mpr r;
    const char *s;
    uint32_t len, chars;
    (void)state;
    sciot_mpr_init(&r, ok, sizeof ok);
    assert_true(sciot_mpr_str(&r, &s, &len, &chars));
    assert_int_equal(len, 5);
    assert_int_equal(chars, 4);
    sciot_mpr_init(&r, overlong, sizeof overlong);
    assert_false(sciot_mpr_str(&r, &s, &len, &chars));
    assert_int_equal(r.error, SCIOT_MP_UTF8);
    sciot_mpr_init(&r, surrogate, sizeof surrogate);
    assert_false(sciot_mpr_str(&r, &s, &len, &chars));
    sciot_mpr_init(&r, cut, sizeof cut);
    assert_false(sciot_mpr_str(&r, &s, &len, &chars));
}

static void skip_handles_nesting_and_limits(void **state)
{
    uint8_t deep[64];
    uint8_t nested[] = {0x82, 0xa1, 'a', 0x92, 0xc0, 0xcb, 0,    0, 0, 0, 0,
                        0,    0,    0,   0xa1, 'b',  0xd6, 0x01, 1, 2, 3, 4};
    uint8_t truncated[] = {0x92, 0x01};
    uint8_t int_key[] = {0x81, 0x01, 0x02};
    sciot_mpr r;
    size_t i;
    (void)state;
    sciot_mpr_init(&r, nested, sizeof nested);
    assert_true(sciot_mpr_skip(&r));
    assert_int_equal(r.pos, sizeof nested);
    sciot_mpr_init(&r, truncated, sizeof truncated);
    assert_false(sciot_mpr_skip(&r));
    assert_int_equal(r.error, SCIOT_MP_TRUNCATED);
    sciot_mpr_init(&r, int_key, sizeof int_key);
    assert_false(sciot_mpr_skip(&r));
    for (i = 0; i < sizeof deep; i++) {
        deep[i] = 0x91; /* [[[[...]]]] */
    }
    sciot_mpr_init(&r, deep, sizeof deep);
    assert_false(sciot_mpr_skip(&r));
    assert_int_equal(r.error, SCIOT_MP_DEPTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(integers_take_the_smallest_form),
        cmocka_unit_test(integers_round_trip),
        cmocka_unit_test(strings_bins_and_containers),
        cmocka_unit_test(utf8_is_checked_like_python),
        cmocka_unit_test(skip_handles_nesting_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
