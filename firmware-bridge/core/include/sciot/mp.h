/*
 * sciot/mp.h: the msgpack subset of the wire contract (topics.md, "Transport").
 *
 * cmp-style (caller-owned buffers, bool returns, the error kept in the context), written
 * for this project rather than vendored: see firmware-bridge/README.md, "msgpack".
 * The writer picks the smallest encoding of every value exactly as msgpack-python
 * (`packb(use_bin_type=True)`) does, so a payload the C core encodes is byte-identical to
 * the Python device's (tests/golden checks it). The reader is zero-copy: strings and
 * binaries are views into the payload.
 */
#ifndef SCIOT_MP_H
#define SCIOT_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SCIOT_MP_OK = 0,
    SCIOT_MP_OVERFLOW,  /* writer: buffer full */
    SCIOT_MP_TRUNCATED, /* reader: data ends inside an object */
    SCIOT_MP_TYPE,      /* reader: another type than asked for */
    SCIOT_MP_RANGE,     /* reader: integer does not fit the asked type */
    SCIOT_MP_DEPTH,     /* reader: nesting deeper than SCIOT_MP_MAX_DEPTH while skipping */
    SCIOT_MP_UTF8,      /* reader: a str that is not valid UTF-8 */
    SCIOT_MP_RESERVED   /* reader: byte 0xc1, never used by msgpack */
} sciot_mp_error;

#define SCIOT_MP_MAX_DEPTH 32

typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    sciot_mp_error error;
} sciot_mpw;

void sciot_mpw_init(sciot_mpw *w, uint8_t *buf, size_t cap);
bool sciot_mpw_map(sciot_mpw *w, uint32_t n);
bool sciot_mpw_array(sciot_mpw *w, uint32_t n);
bool sciot_mpw_str(sciot_mpw *w, const char *s, size_t len);
bool sciot_mpw_cstr(sciot_mpw *w, const char *s); /* NUL-terminated */
bool sciot_mpw_uint(sciot_mpw *w, uint64_t v);
bool sciot_mpw_int(sciot_mpw *w, int64_t v);
bool sciot_mpw_f64(sciot_mpw *w, double v);
bool sciot_mpw_bool(sciot_mpw *w, bool v);
bool sciot_mpw_nil(sciot_mpw *w);
bool sciot_mpw_bin(sciot_mpw *w, const void *data, size_t len);
bool sciot_mpw_bin_zeros(sciot_mpw *w, size_t len); /* bin of `len` zero bytes */

typedef enum {
    SCIOT_MP_T_NIL,
    SCIOT_MP_T_BOOL,
    SCIOT_MP_T_UINT, /* non-negative integer, any width */
    SCIOT_MP_T_INT,  /* negative integer, any width */
    SCIOT_MP_T_FLOAT,
    SCIOT_MP_T_STR,
    SCIOT_MP_T_BIN,
    SCIOT_MP_T_ARRAY,
    SCIOT_MP_T_MAP,
    SCIOT_MP_T_EXT
} sciot_mp_type;

typedef struct {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    sciot_mp_error error;
} sciot_mpr;

void sciot_mpr_init(sciot_mpr *r, const uint8_t *buf, size_t len);
/* Type of the next object without consuming it. */
bool sciot_mpr_peek(sciot_mpr *r, sciot_mp_type *type);
bool sciot_mpr_map(sciot_mpr *r, uint32_t *n);
bool sciot_mpr_array(sciot_mpr *r, uint32_t *n);
/* A UTF-8-checked view into the buffer; `chars` (may be NULL) gets its code points. */
bool sciot_mpr_str(sciot_mpr *r, const char **s, uint32_t *len, uint32_t *chars);
bool sciot_mpr_bin(sciot_mpr *r, const uint8_t **p, uint32_t *len);
/* Any msgpack integer; `negative` tells how to read `magnitude`-style values:
 * non-negative values come back in *u with *neg false, negative ones in *s with *neg true. */
bool sciot_mpr_integer(sciot_mpr *r, bool *neg, uint64_t *u, int64_t *s);
/* An integer or a float, as a double (the contract accepts an int where a float is due). */
bool sciot_mpr_number(sciot_mpr *r, double *v);
bool sciot_mpr_bool(sciot_mpr *r, bool *v);
bool sciot_mpr_nil(sciot_mpr *r);
/* Skip one object, whatever it holds (depth-limited); maps inside must have str or bin
 * keys, as msgpack-python's strict_map_key demands. */
bool sciot_mpr_skip(sciot_mpr *r);

const char *sciot_mp_strerror(sciot_mp_error e);

#ifdef __cplusplus
}
#endif

#endif /* SCIOT_MP_H */
