/*
 * sciot/tensor.h: the firmware's one word for a tensor, shared by the core (sciot/device.h,
 * sciot/msgs.h), the operators (sciot_ops.h), the ops adapter and the ports.
 *
 * A tensor is named by its manifest tensor index, the same number at every boundary of the
 * model and in the `infer` payload (topics.md). The limits come from the generated contract
 * header, so the C side cannot allow more than the Python contract does.
 */
#ifndef SCIOT_TENSOR_H
#define SCIOT_TENSOR_H

#include <stdint.h>

#include "sciot_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most dimensions of a tensor (the contract's Tensor.shape max_length). */
#define SCIOT_MAX_DIMS SCIOT_TENSOR_SHAPE_MAX_LEN
/* Most tensors live at one boundary (the contract's InferRequest.tensors max_length): the
 * only definition of this limit in C. sciot_mqtt/models/export/ refuses a model that
 * needs more, and tests/firmware/test_limits.py checks that it agrees with the contract. */
#define SCIOT_MAX_BOUNDARY_TENSORS SCIOT_INFER_REQUEST_TENSORS_MAX_LEN

/* Element types, in the order of the contract's Tensor.dtype literals (msgs.c maps them to
 * the wire strings; the model blob has its own codes, which ops/src/model.c maps to these). */
typedef enum {
    SCIOT_DTYPE_INT8 = 0,
    SCIOT_DTYPE_UINT8,
    SCIOT_DTYPE_INT16,
    SCIOT_DTYPE_INT32,
    SCIOT_DTYPE_FLOAT32
} sciot_dtype;

/*
 * A tensor: what it is and, when there are any, where its bytes are. The model describes one
 * with data == NULL (sciot_model_boundary_tensor, the HAL's boundary_tensor); the core points
 * data at its own buffers to run operators on it (run_ops reads the inputs' bytes and writes
 * the outputs') and to send it (sciot_encode_infer_request).
 */
typedef struct {
    uint32_t index;                /* manifest tensor index */
    uint8_t dtype;                 /* sciot_dtype */
    uint8_t ndim;                  /* used entries of shape */
    int32_t shape[SCIOT_MAX_DIMS]; /* batch first */
    double scale;                  /* real value = scale * (q - zero_point); 0: not quantized */
    int32_t zero_point;
    uint32_t nbytes; /* elements * element size */
    void *data;      /* nbytes bytes in C order, little-endian; NULL in a description */
} sciot_tensor;

#ifdef __cplusplus
}
#endif

#endif /* SCIOT_TENSOR_H */
