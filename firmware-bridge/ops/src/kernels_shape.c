/* Data movement: CONCATENATION and PAD (RESHAPE is a plain copy in the op table); kernels.h. */
#include "kernels.h"

void sciot_concat(const uint8_t *const *inputs, const uint32_t *chunk, unsigned n, uint32_t outer,
                  uint8_t *output)
{
    uint8_t *out = output;
    for (uint32_t o = 0; o < outer; ++o) {
        for (unsigned k = 0; k < n; ++k) {
            const uint8_t *in = inputs[k] + (uint32_t)o * chunk[k];
            for (uint32_t b = 0; b < chunk[k]; ++b) {
                *out++ = in[b];
            }
        }
    }
}

void sciot_pad_s8(const sciot_pad_params *p)
{
    int32_t out_dims[4];
    for (int d = 0; d < 4; ++d) {
        out_dims[d] = p->before[d] + p->dims[d] + p->after[d];
    }
    const int8_t *in = p->input;
    int8_t *out = p->output;
    for (int32_t i0 = 0; i0 < out_dims[0]; ++i0) {
        const bool pad0 = i0 < p->before[0] || i0 >= p->before[0] + p->dims[0];
        for (int32_t i1 = 0; i1 < out_dims[1]; ++i1) {
            const bool pad1 = pad0 || i1 < p->before[1] || i1 >= p->before[1] + p->dims[1];
            for (int32_t i2 = 0; i2 < out_dims[2]; ++i2) {
                const bool pad2 = pad1 || i2 < p->before[2] || i2 >= p->before[2] + p->dims[2];
                for (int32_t i3 = 0; i3 < out_dims[3]; ++i3) {
                    const bool pad = pad2 || i3 < p->before[3] || i3 >= p->before[3] + p->dims[3];
                    /* The input is read in order: every element not padding is the next. */
                    *out++ = pad ? p->value : *in++;
                }
            }
        }
    }
}
