/*
 * sciot_ops: the int8 operators of a split TinyML model, in portable C99.
 *
 * A model arrives as a "sciot model blob" written by `sciot-mqtt models export-c`
 * (sciot_mqtt/models/export/). The blob is parsed in place: sciot_model_open() only
 * checks it and remembers where its sections start, so the caller's buffer (a file read
 * into memory on the host, a `const uint8_t[]` in flash on a microcontroller) must stay
 * valid and unchanged while the sciot_model is used. Nothing here allocates, calls the OS
 * or needs libc beyond the freestanding headers.
 *
 * Split points follow the manifest: boundary s sits before operator s; boundary 0 holds
 * the model inputs and boundary N (N = number of operators) the model outputs. The
 * tensors live at a boundary are named by their manifest tensor index, the same index
 * the `infer` payload carries on the wire (topics.md).
 *
 * Results are bit-exact with LiteRT's builtin int8 kernels (run without default
 * delegates), which tests/firmware/test_ops_bitexact.py checks operator by operator.
 */
#ifndef SCIOT_OPS_H
#define SCIOT_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sciot/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Blob layout version this library reads; the exporter writes the same number. */
#define SCIOT_MODEL_VERSION 2u
/** Most dimensions a tensor may have in a blob (fewer than a tensor on the wire may have). */
#define SCIOT_MODEL_MAX_DIMS 4u

typedef enum {
    SCIOT_MODEL_OK = 0,
    SCIOT_MODEL_E_ARG,         /* NULL pointer or an argument out of range */
    SCIOT_MODEL_E_MAGIC,       /* not a sciot model blob */
    SCIOT_MODEL_E_VERSION,     /* a blob of another layout version */
    SCIOT_MODEL_E_TRUNCATED,   /* a section or record points past the end of the blob */
    SCIOT_MODEL_E_MALFORMED,   /* inconsistent records (bad tensor index, shape, dtype, ...) */
    SCIOT_MODEL_E_UNSUPPORTED, /* an operator type or option this library does not implement */
    SCIOT_MODEL_E_IO,          /* a boundary tensor missing, duplicated or of the wrong size */
    SCIOT_MODEL_E_ARENA        /* the arena is smaller than sciot_model_arena_size() */
} sciot_model_err;

/** The operators a blob may hold (export/format.py `OP_*`); sciot_model_op_name() names them
 * as TFLite does. */
typedef enum {
    SCIOT_OP_CONV_2D = 1,
    SCIOT_OP_DEPTHWISE_CONV_2D = 2,
    SCIOT_OP_ADD = 3,
    SCIOT_OP_SOFTMAX = 4,
    SCIOT_OP_FULLY_CONNECTED = 5,
    SCIOT_OP_AVERAGE_POOL_2D = 6,
    SCIOT_OP_MAX_POOL_2D = 7,
    SCIOT_OP_MEAN = 8,
    SCIOT_OP_RESHAPE = 9,
    SCIOT_OP_CONCATENATION = 10,
    SCIOT_OP_MUL = 11,
    SCIOT_OP_PAD = 12,
    SCIOT_OP_PADV2 = 13,
    SCIOT_OP_HARD_SWISH = 14,
    SCIOT_OP_LOGISTIC = 15,
    SCIOT_OP_TANH = 16,
    SCIOT_OP_QUANTIZE = 17,
    SCIOT_OP_DEQUANTIZE = 18
} sciot_op_type;

/** An opened blob. Fields are read-only for the caller; the `_`-prefixed ones are private. */
typedef struct {
    sciot_model_err error; /* why the last sciot_model_open() failed (OK after success) */
    uint16_t version;      /* blob layout version */
    uint8_t sha256[32];    /* sha256 of the .tflite the blob was exported from */
    char model_id[32];     /* NUL-terminated model id, e.g. "fomo96" */
    unsigned num_ops;      /* operators, N; split points are 0..N */
    unsigned num_tensors;  /* tensors of the model's main subgraph */
    const uint8_t *_blob;
    size_t _len;
    uint32_t _arena_size;
    uint32_t _off_tensors, _off_ops, _off_bounds;
} sciot_model;

/**
 * Optional per-operator timing through the HAL clock. `now` returns a monotonic time in
 * any unit; `op_done` is called after each operator with its start and end times.
 * Either callback may be NULL.
 */
typedef struct {
    uint64_t (*now)(void *ctx);
    void (*op_done)(void *ctx, unsigned op, uint64_t start, uint64_t end);
    void *ctx;
} sciot_op_timer;

/** Check a blob and open it in place. On failure m->error says why. */
bool sciot_model_open(sciot_model *m, const uint8_t *blob, size_t len);

/** A short English text for an error code (never NULL). */
const char *sciot_model_strerror(sciot_model_err err);

/** Operator type and its builtin name ("CONV_2D", ...); NULL/0 when op is out of range. */
sciot_op_type sciot_model_op_type(const sciot_model *m, unsigned op);
const char *sciot_model_op_name(const sciot_model *m, unsigned op);

/** Number of tensors live at boundary `split` (0..num_ops); 0 when split is out of range. */
unsigned sciot_model_boundary_count(const sciot_model *m, unsigned split);

/** The k-th tensor live at boundary `split`, in manifest order, described (data NULL). */
bool sciot_model_boundary_tensor(const sciot_model *m, unsigned split, unsigned k,
                                 sciot_tensor *out);

/**
 * Whether `list` names every tensor live at boundary `split` exactly once (in any order, by
 * index), each with the model's byte size and a buffer: what sciot_model_run() asks of its
 * inputs and of its outputs.
 */
bool sciot_model_boundary_matches(const sciot_model *m, unsigned split, const sciot_tensor *list,
                                  unsigned n);

/** Sum of the byte sizes of the tensors live at boundary `split`. */
size_t sciot_model_boundary_bytes(const sciot_model *m, unsigned split);

/** Bytes of scratch memory sciot_model_run() needs, whatever the range it runs. */
size_t sciot_model_arena_size(const sciot_model *m);

/**
 * Run operators [start_op, stop_op) (0 <= start_op <= stop_op <= num_ops) from the
 * tensors live at boundary start_op (`inputs`, read only), writing the tensors live at
 * boundary stop_op into the buffers of `outputs`. Each list names every tensor live at its
 * boundary once, in any order, by index, with data and nbytes set (the other fields are
 * not read). A tensor live at both boundaries is copied through. `arena` needs
 * sciot_model_arena_size() bytes; `timer` may be NULL. The buffers and the arena must
 * not overlap one another. Nothing is computed when the arguments are refused; returns
 * SCIOT_MODEL_OK or the reason (MALFORMED: the blob's boundary lists do not fit its ops).
 */
sciot_model_err sciot_model_run(const sciot_model *m, unsigned start_op, unsigned stop_op,
                                const sciot_tensor *inputs, unsigned num_inputs,
                                sciot_tensor *outputs, unsigned num_outputs, uint8_t *arena,
                                size_t arena_len, const sciot_op_timer *timer);

#ifdef __cplusplus
}
#endif

#endif /* SCIOT_OPS_H */
