/*
 * sciot_ops: the int8 operators of a split TinyML model, in portable C99.
 *
 * A model arrives as a "sciot model blob" written by `sciot-mqtt models export-c`
 * (sciot_mqtt/models/export/). The blob is parsed in place: sc_model_open() only
 * checks it and remembers where its sections start, so the caller's buffer (a file read
 * into memory on the host, a `const uint8_t[]` in flash on a microcontroller) must stay
 * valid and unchanged while the sc_model is used. Nothing here allocates, calls the OS
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

#ifdef __cplusplus
extern "C" {
#endif

/** Blob layout version this library reads; the exporter writes the same number. */
#define SC_MODEL_VERSION 1u
/** Most dimensions a tensor may have in a blob. */
#define SC_MAX_DIMS 4u
/** Most tensors live at one boundary (the wire contract's limit, topics.md). */
#define SC_MAX_BOUNDARY_TENSORS 16u

typedef enum {
    SC_OK = 0,
    SC_ERR_ARG,         /* NULL pointer or an argument out of range */
    SC_ERR_MAGIC,       /* not a sciot model blob */
    SC_ERR_VERSION,     /* a blob of another layout version */
    SC_ERR_TRUNCATED,   /* a section or record points past the end of the blob */
    SC_ERR_MALFORMED,   /* inconsistent records (bad tensor index, shape, dtype, ...) */
    SC_ERR_UNSUPPORTED, /* an operator type or option this library does not implement */
    SC_ERR_IO,          /* a boundary tensor missing, duplicated or of the wrong size */
    SC_ERR_ARENA        /* the arena is smaller than sc_model_arena_size() */
} sc_err;

typedef enum {
    SC_DTYPE_INT8 = 1,
    SC_DTYPE_UINT8 = 2,
    SC_DTYPE_INT16 = 3,
    SC_DTYPE_INT32 = 4,
    SC_DTYPE_FLOAT32 = 5
} sc_dtype;

typedef enum {
    SC_OP_CONV_2D = 1,
    SC_OP_DEPTHWISE_CONV_2D = 2,
    SC_OP_ADD = 3,
    SC_OP_SOFTMAX = 4
} sc_op_type;

/** An opened blob. Fields are read-only for the caller; the `_`-prefixed ones are private. */
typedef struct {
    sc_err error;              /* why the last sc_model_open() failed (SC_OK after success) */
    uint16_t version;          /* blob layout version */
    uint8_t sha256[32];        /* sha256 of the .tflite the blob was exported from */
    char model_id[32];         /* NUL-terminated model id, e.g. "fomo96" */
    unsigned num_ops;          /* operators, N; split points are 0..N */
    unsigned num_tensors;      /* tensors of the model's main subgraph */
    const uint8_t *_blob;
    size_t _len;
    uint32_t _arena_size;
    uint32_t _off_tensors, _off_ops, _off_bounds;
} sc_model;

/** One tensor as it crosses a boundary (what the wire `Tensor` needs). */
typedef struct {
    uint32_t index;            /* manifest tensor index */
    sc_dtype dtype;
    unsigned ndims;
    int32_t dims[SC_MAX_DIMS]; /* batch first; only the first ndims are meaningful */
    uint32_t nbytes;           /* elements * element size */
    float scale;               /* quantization scale; 0 when not quantized */
    int32_t zero_point;
} sc_tensor_info;

/** A boundary tensor the caller gives to sc_model_run() ... */
typedef struct {
    uint32_t index;            /* manifest tensor index */
    const void *data;          /* nbytes bytes, C order, little-endian */
    size_t nbytes;
} sc_tensor_in;

/** ... and one it wants back: the buffer is the caller's, filled by sc_model_run(). */
typedef struct {
    uint32_t index;
    void *data;
    size_t nbytes;
} sc_tensor_out;

/**
 * The tensors live at start_op (inputs) and at stop_op (outputs), in any order, each
 * listed once. Use sc_model_boundary_tensor() to learn which they are and their sizes.
 */
typedef struct {
    const sc_tensor_in *inputs;
    unsigned num_inputs;
    sc_tensor_out *outputs;
    unsigned num_outputs;
} sc_tensor_io;

/**
 * Optional per-operator timing through the HAL clock. `now` returns a monotonic time in
 * any unit; `op_done` is called after each operator with its start and end times.
 * Either callback may be NULL.
 */
typedef struct {
    uint64_t (*now)(void *ctx);
    void (*op_done)(void *ctx, unsigned op, uint64_t start, uint64_t end);
    void *ctx;
} sc_op_timer;

/** Check a blob and open it in place. On failure m->error says why. */
bool sc_model_open(sc_model *m, const uint8_t *blob, size_t len);

/** A short English text for an error code (never NULL). */
const char *sc_strerror(sc_err err);

/** Operator type and its builtin name ("CONV_2D", ...); NULL/0 when op is out of range. */
sc_op_type sc_model_op_type(const sc_model *m, unsigned op);
const char *sc_model_op_name(const sc_model *m, unsigned op);

/** Number of tensors live at boundary `split` (0..num_ops); 0 when split is out of range. */
unsigned sc_model_boundary_count(const sc_model *m, unsigned split);

/** The k-th tensor live at boundary `split`, in manifest order. */
bool sc_model_boundary_tensor(const sc_model *m, unsigned split, unsigned k,
                              sc_tensor_info *out);

/** Sum of the byte sizes of the tensors live at boundary `split`. */
size_t sc_model_boundary_bytes(const sc_model *m, unsigned split);

/** Bytes of scratch memory sc_model_run() needs, whatever the range it runs. */
size_t sc_model_arena_size(const sc_model *m);

/**
 * Run operators [start_op, stop_op) (0 <= start_op <= stop_op <= num_ops) from the
 * tensors live at boundary start_op, writing the tensors live at boundary stop_op into
 * io->outputs. A tensor live at both boundaries is copied through. `arena` needs
 * sc_model_arena_size() bytes; `timer` may be NULL. The io buffers and the arena must
 * not overlap one another. Nothing is computed when the arguments are refused; returns
 * SC_OK or the reason (SC_ERR_MALFORMED: the blob's boundary lists do not fit its ops).
 */
sc_err sc_model_run(const sc_model *m, unsigned start_op, unsigned stop_op,
                    const sc_tensor_io *io, uint8_t *arena, size_t arena_len,
                    const sc_op_timer *timer);

#ifdef __cplusplus
}
#endif

#endif /* SCIOT_OPS_H */
