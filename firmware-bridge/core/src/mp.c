/* msgpack subset of the contract; see sciot/mp.h. */
#include "sciot/mp.h"

#include "util.h"

void sciot_mpw_init(sciot_mpw *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->error = SCIOT_MP_OK;
}

static bool put(sciot_mpw *w, const void *data, size_t n)
{
    if (w->error != SCIOT_MP_OK) {
        return false;
    }
    if (n > w->cap - w->len) {
        w->error = SCIOT_MP_OVERFLOW;
        return false;
    }
    sciot_copy(w->buf + w->len, data, n);
    w->len += n;
    return true;
}

/* Marker byte followed by `width` big-endian bytes of v. */
static bool put_be(sciot_mpw *w, uint8_t marker, uint64_t v, unsigned width)
{
    uint8_t tmp[9];
    unsigned i;
    tmp[0] = marker;
    for (i = 0; i < width; i++) {
        tmp[1 + i] = (uint8_t)(v >> (8u * (width - 1u - i)));
    }
    return put(w, tmp, 1u + width);
}

static bool put_container(sciot_mpw *w, uint32_t n, uint8_t fix, uint8_t m16, uint8_t m32)
{
    if (n < 16u) {
        uint8_t b = (uint8_t)(fix | n);
        return put(w, &b, 1);
    }
    if (n <= 0xffffu) {
        return put_be(w, m16, n, 2);
    }
    return put_be(w, m32, n, 4);
}

bool sciot_mpw_map(sciot_mpw *w, uint32_t n)
{
    return put_container(w, n, 0x80u, 0xdeu, 0xdfu);
}

bool sciot_mpw_array(sciot_mpw *w, uint32_t n)
{
    return put_container(w, n, 0x90u, 0xdcu, 0xddu);
}

bool sciot_mpw_str(sciot_mpw *w, const char *s, size_t len)
{
    bool ok;
    if (len < 32u) {
        uint8_t b = (uint8_t)(0xa0u | len);
        ok = put(w, &b, 1);
    } else if (len <= 0xffu) {
        ok = put_be(w, 0xd9u, len, 1);
    } else if (len <= 0xffffu) {
        ok = put_be(w, 0xdau, len, 2);
    } else {
        ok = put_be(w, 0xdbu, len, 4);
    }
    return ok && put(w, s, len);
}

bool sciot_mpw_cstr(sciot_mpw *w, const char *s)
{
    return sciot_mpw_str(w, s, sciot_strlen(s));
}

bool sciot_mpw_uint(sciot_mpw *w, uint64_t v)
{
    if (v < 128u) {
        uint8_t b = (uint8_t)v;
        return put(w, &b, 1);
    }
    if (v <= 0xffu) {
        return put_be(w, 0xccu, v, 1);
    }
    if (v <= 0xffffu) {
        return put_be(w, 0xcdu, v, 2);
    }
    if (v <= 0xffffffffu) {
        return put_be(w, 0xceu, v, 4);
    }
    return put_be(w, 0xcfu, v, 8);
}

bool sciot_mpw_int(sciot_mpw *w, int64_t v)
{
    if (v >= 0) {
        return sciot_mpw_uint(w, (uint64_t)v);
    }
    if (v >= -32) {
        uint8_t b = (uint8_t)(int8_t)v;
        return put(w, &b, 1);
    }
    if (v >= -128) {
        return put_be(w, 0xd0u, (uint64_t)v, 1);
    }
    if (v >= -32768) {
        return put_be(w, 0xd1u, (uint64_t)v, 2);
    }
    if (v >= -2147483647 - 1) {
        return put_be(w, 0xd2u, (uint64_t)v, 4);
    }
    return put_be(w, 0xd3u, (uint64_t)v, 8);
}

bool sciot_mpw_f64(sciot_mpw *w, double v)
{
    union {
        double d;
        uint64_t u;
    } bits;
    bits.d = v;
    return put_be(w, 0xcbu, bits.u, 8);
}

bool sciot_mpw_bool(sciot_mpw *w, bool v)
{
    uint8_t b = v ? 0xc3u : 0xc2u;
    return put(w, &b, 1);
}

bool sciot_mpw_nil(sciot_mpw *w)
{
    uint8_t b = 0xc0u;
    return put(w, &b, 1);
}

bool sciot_mpw_bin(sciot_mpw *w, const void *data, size_t len)
{
    bool ok;
    if (len <= 0xffu) {
        ok = put_be(w, 0xc4u, len, 1);
    } else if (len <= 0xffffu) {
        ok = put_be(w, 0xc5u, len, 2);
    } else {
        ok = put_be(w, 0xc6u, len, 4);
    }
    return ok && put(w, data, len);
}

bool sciot_mpw_bin_zeros(sciot_mpw *w, size_t len)
{
    bool ok;
    if (len <= 0xffu) {
        ok = put_be(w, 0xc4u, len, 1);
    } else if (len <= 0xffffu) {
        ok = put_be(w, 0xc5u, len, 2);
    } else {
        ok = put_be(w, 0xc6u, len, 4);
    }
    if (!ok) {
        return false;
    }
    if (len > w->cap - w->len) {
        w->error = SCIOT_MP_OVERFLOW;
        return false;
    }
    sciot_zero(w->buf + w->len, len);
    w->len += len;
    return true;
}

/* --- reader ---------------------------------------------------------------------------- */

void sciot_mpr_init(sciot_mpr *r, const uint8_t *buf, size_t len)
{
    r->buf = buf;
    r->len = len;
    r->pos = 0;
    r->error = SCIOT_MP_OK;
}

static bool fail(sciot_mpr *r, sciot_mp_error e)
{
    if (r->error == SCIOT_MP_OK) {
        r->error = e;
    }
    return false;
}

static bool need(sciot_mpr *r, size_t n)
{
    if (r->error != SCIOT_MP_OK) {
        return false;
    }
    if (n > r->len - r->pos) {
        return fail(r, SCIOT_MP_TRUNCATED);
    }
    return true;
}

static uint64_t be(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    unsigned i;
    for (i = 0; i < width; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

bool sciot_mpr_peek(sciot_mpr *r, sciot_mp_type *type)
{
    uint8_t b;
    if (!need(r, 1)) {
        return false;
    }
    b = r->buf[r->pos];
    if (b <= 0x7fu || (b >= 0xccu && b <= 0xcfu)) {
        *type = SCIOT_MP_T_UINT;
    } else if (b >= 0xe0u || (b >= 0xd0u && b <= 0xd3u)) {
        /* a signed marker may still hold a non-negative value */
        *type = SCIOT_MP_T_INT;
    } else if (b <= 0x8fu || b == 0xdeu || b == 0xdfu) {
        *type = SCIOT_MP_T_MAP;
    } else if (b <= 0x9fu || b == 0xdcu || b == 0xddu) {
        *type = SCIOT_MP_T_ARRAY;
    } else if (b <= 0xbfu || (b >= 0xd9u && b <= 0xdbu)) {
        *type = SCIOT_MP_T_STR;
    } else if (b == 0xc0u) {
        *type = SCIOT_MP_T_NIL;
    } else if (b == 0xc2u || b == 0xc3u) {
        *type = SCIOT_MP_T_BOOL;
    } else if (b >= 0xc4u && b <= 0xc6u) {
        *type = SCIOT_MP_T_BIN;
    } else if (b == 0xcau || b == 0xcbu) {
        *type = SCIOT_MP_T_FLOAT;
    } else if (b == 0xc1u) {
        return fail(r, SCIOT_MP_RESERVED);
    } else {
        *type = SCIOT_MP_T_EXT; /* c7-c9, d4-d8 */
    }
    return true;
}

/* Reads a length-prefixed header: fix (mask), 8/16/32-bit variants. */
static bool read_len(sciot_mpr *r, uint8_t fixmin, uint8_t fixmax, uint8_t fixmask, uint8_t m8,
                     uint8_t m16, uint8_t m32, uint32_t *n)
{
    uint8_t b;
    unsigned width;
    if (!need(r, 1)) {
        return false;
    }
    b = r->buf[r->pos];
    if (fixmax != 0 && b >= fixmin && b <= fixmax) {
        *n = (uint32_t)(b & fixmask);
        r->pos += 1;
        return true;
    }
    if (m8 != 0 && b == m8) {
        width = 1;
    } else if (b == m16) {
        width = 2;
    } else if (b == m32) {
        width = 4;
    } else {
        return fail(r, SCIOT_MP_TYPE);
    }
    if (!need(r, 1u + width)) {
        return false;
    }
    *n = (uint32_t)be(r->buf + r->pos + 1, width);
    r->pos += 1u + width;
    return true;
}

bool sciot_mpr_map(sciot_mpr *r, uint32_t *n)
{
    return read_len(r, 0x80u, 0x8fu, 0x0fu, 0, 0xdeu, 0xdfu, n);
}

bool sciot_mpr_array(sciot_mpr *r, uint32_t *n)
{
    return read_len(r, 0x90u, 0x9fu, 0x0fu, 0, 0xdcu, 0xddu, n);
}

/* Strict UTF-8 as Python decodes it: no overlongs, no surrogates, at most U+10FFFF. */
static bool utf8_valid(const uint8_t *s, uint32_t len, uint32_t *chars)
{
    uint32_t i = 0, count = 0;
    while (i < len) {
        uint8_t c = s[i];
        uint32_t need_bytes, cp, min;
        uint32_t k;
        if (c < 0x80u) {
            i++;
            count++;
            continue;
        }
        if (c >= 0xc2u && c <= 0xdfu) {
            need_bytes = 1;
            cp = c & 0x1fu;
            min = 0x80u;
        } else if (c >= 0xe0u && c <= 0xefu) {
            need_bytes = 2;
            cp = c & 0x0fu;
            min = 0x800u;
        } else if (c >= 0xf0u && c <= 0xf4u) {
            need_bytes = 3;
            cp = c & 0x07u;
            min = 0x10000u;
        } else {
            return false;
        }
        if (len - i - 1u < need_bytes) {
            return false;
        }
        for (k = 1; k <= need_bytes; k++) {
            uint8_t cc = s[i + k];
            if ((cc & 0xc0u) != 0x80u) {
                return false;
            }
            cp = (cp << 6) | (cc & 0x3fu);
        }
        if (cp < min || cp > 0x10ffffu || (cp >= 0xd800u && cp <= 0xdfffu)) {
            return false;
        }
        i += need_bytes + 1u;
        count++;
    }
    if (chars != NULL) {
        *chars = count;
    }
    return true;
}

bool sciot_mpr_str(sciot_mpr *r, const char **s, uint32_t *len, uint32_t *chars)
{
    uint32_t n;
    size_t start = r->pos;
    if (!read_len(r, 0xa0u, 0xbfu, 0x1fu, 0xd9u, 0xdau, 0xdbu, &n)) {
        return false;
    }
    if (!need(r, n)) {
        r->pos = start;
        return false;
    }
    if (!utf8_valid(r->buf + r->pos, n, chars)) {
        r->pos = start;
        return fail(r, SCIOT_MP_UTF8);
    }
    *s = (const char *)(r->buf + r->pos);
    *len = n;
    r->pos += n;
    return true;
}

bool sciot_mpr_bin(sciot_mpr *r, const uint8_t **p, uint32_t *len)
{
    uint32_t n;
    if (!read_len(r, 0, 0, 0, 0xc4u, 0xc5u, 0xc6u, &n)) {
        return false;
    }
    if (!need(r, n)) {
        return false;
    }
    *p = r->buf + r->pos;
    *len = n;
    r->pos += n;
    return true;
}

bool sciot_mpr_integer(sciot_mpr *r, bool *neg, uint64_t *u, int64_t *s)
{
    uint8_t b;
    unsigned width = 0;
    bool is_signed = false;
    uint64_t raw;
    if (!need(r, 1)) {
        return false;
    }
    b = r->buf[r->pos];
    if (b <= 0x7fu) {
        *neg = false;
        *u = b;
        r->pos += 1;
        return true;
    }
    if (b >= 0xe0u) {
        *neg = true;
        *s = (int8_t)b;
        r->pos += 1;
        return true;
    }
    switch (b) {
    case 0xccu: width = 1; break;
    case 0xcdu: width = 2; break;
    case 0xceu: width = 4; break;
    case 0xcfu: width = 8; break;
    case 0xd0u:
        width = 1;
        is_signed = true;
        break;
    case 0xd1u:
        width = 2;
        is_signed = true;
        break;
    case 0xd2u:
        width = 4;
        is_signed = true;
        break;
    case 0xd3u:
        width = 8;
        is_signed = true;
        break;
    default: return fail(r, SCIOT_MP_TYPE);
    }
    if (!need(r, 1u + width)) {
        return false;
    }
    raw = be(r->buf + r->pos + 1, width);
    r->pos += 1u + width;
    if (!is_signed) {
        *neg = false;
        *u = raw;
        return true;
    }
    {
        int64_t v;
        if (width == 8) {
            v = (int64_t)raw;
        } else {
            uint64_t sign = (uint64_t)1 << (8u * width - 1u);
            v = (int64_t)(raw ^ sign) - (int64_t)sign;
        }
        if (v >= 0) {
            *neg = false;
            *u = (uint64_t)v;
        } else {
            *neg = true;
            *s = v;
        }
    }
    return true;
}

bool sciot_mpr_number(sciot_mpr *r, double *v)
{
    sciot_mp_type t;
    if (!sciot_mpr_peek(r, &t)) {
        return false;
    }
    if (t == SCIOT_MP_T_UINT || t == SCIOT_MP_T_INT) {
        bool neg;
        uint64_t u = 0;
        int64_t s = 0;
        if (!sciot_mpr_integer(r, &neg, &u, &s)) {
            return false;
        }
        *v = neg ? (double)s : (double)u;
        return true;
    }
    if (t != SCIOT_MP_T_FLOAT) {
        return fail(r, SCIOT_MP_TYPE);
    }
    if (r->buf[r->pos] == 0xcau) {
        union {
            float f;
            uint32_t u;
        } bits;
        if (!need(r, 5)) {
            return false;
        }
        bits.u = (uint32_t)be(r->buf + r->pos + 1, 4);
        *v = (double)bits.f;
        r->pos += 5;
    } else {
        union {
            double d;
            uint64_t u;
        } bits;
        if (!need(r, 9)) {
            return false;
        }
        bits.u = be(r->buf + r->pos + 1, 8);
        *v = bits.d;
        r->pos += 9;
    }
    return true;
}

bool sciot_mpr_bool(sciot_mpr *r, bool *v)
{
    if (!need(r, 1)) {
        return false;
    }
    if (r->buf[r->pos] == 0xc2u || r->buf[r->pos] == 0xc3u) {
        *v = r->buf[r->pos] == 0xc3u;
        r->pos += 1;
        return true;
    }
    return fail(r, SCIOT_MP_TYPE);
}

bool sciot_mpr_nil(sciot_mpr *r)
{
    if (!need(r, 1)) {
        return false;
    }
    if (r->buf[r->pos] != 0xc0u) {
        return fail(r, SCIOT_MP_TYPE);
    }
    r->pos += 1;
    return true;
}

/* Iterative skip: `pending` counts objects still to skip per open container level. */
bool sciot_mpr_skip(sciot_mpr *r)
{
    uint32_t pending[SCIOT_MP_MAX_DEPTH + 1];
    bool in_map[SCIOT_MP_MAX_DEPTH + 1];
    unsigned depth = 0;
    pending[0] = 1;
    in_map[0] = false;
    for (;;) {
        sciot_mp_type t;
        uint32_t n;
        while (pending[depth] == 0) {
            if (depth == 0) {
                return true;
            }
            depth--;
        }
        pending[depth]--;
        if (!sciot_mpr_peek(r, &t)) {
            return false;
        }
        /* The contract's maps have string keys (msgpack-python: strict_map_key). */
        if (in_map[depth] && (pending[depth] & 1u) != 0 && t != SCIOT_MP_T_STR &&
            t != SCIOT_MP_T_BIN) {
            return fail(r, SCIOT_MP_TYPE);
        }
        switch (t) {
        case SCIOT_MP_T_NIL:
        case SCIOT_MP_T_BOOL: r->pos += 1; break;
        case SCIOT_MP_T_UINT:
        case SCIOT_MP_T_INT: {
            bool neg;
            uint64_t u;
            int64_t s;
            if (!sciot_mpr_integer(r, &neg, &u, &s)) {
                return false;
            }
            break;
        }
        case SCIOT_MP_T_FLOAT: {
            double d;
            if (!sciot_mpr_number(r, &d)) {
                return false;
            }
            break;
        }
        case SCIOT_MP_T_STR: {
            const char *s;
            uint32_t len;
            if (!sciot_mpr_str(r, &s, &len, NULL)) {
                return false;
            }
            break;
        }
        case SCIOT_MP_T_BIN: {
            const uint8_t *p;
            uint32_t len;
            if (!sciot_mpr_bin(r, &p, &len)) {
                return false;
            }
            break;
        }
        case SCIOT_MP_T_ARRAY:
        case SCIOT_MP_T_MAP: {
            bool is_map = t == SCIOT_MP_T_MAP;
            if (!(is_map ? sciot_mpr_map(r, &n) : sciot_mpr_array(r, &n))) {
                return false;
            }
            if (n > 0) {
                if (depth == SCIOT_MP_MAX_DEPTH) {
                    return fail(r, SCIOT_MP_DEPTH);
                }
                if (is_map && n > 0x7fffffffu) {
                    return fail(r, SCIOT_MP_TRUNCATED);
                }
                depth++;
                pending[depth] = is_map ? 2u * n : n;
                in_map[depth] = is_map;
            }
            break;
        }
        case SCIOT_MP_T_EXT: {
            uint8_t b = r->buf[r->pos];
            uint32_t size;
            size_t head;
            if (b >= 0xd4u && b <= 0xd8u) {
                size = 1u << (b - 0xd4u);
                head = 2;
            } else {
                unsigned width = b == 0xc7u ? 1u : (b == 0xc8u ? 2u : 4u);
                if (!need(r, 1u + width)) {
                    return false;
                }
                size = (uint32_t)be(r->buf + r->pos + 1, width);
                head = 2u + width;
            }
            if (!need(r, head + size)) {
                return false;
            }
            r->pos += head + size;
            break;
        }
        }
    }
}

const char *sciot_mp_strerror(sciot_mp_error e)
{
    switch (e) {
    case SCIOT_MP_OK: return "ok";
    case SCIOT_MP_OVERFLOW: return "buffer too small";
    case SCIOT_MP_TRUNCATED: return "data ends inside an object";
    case SCIOT_MP_TYPE: return "unexpected type";
    case SCIOT_MP_RANGE: return "integer out of range";
    case SCIOT_MP_DEPTH: return "nested too deep";
    case SCIOT_MP_UTF8: return "string is not valid UTF-8";
    case SCIOT_MP_RESERVED: return "reserved byte 0xc1";
    }
    return "unknown";
}
