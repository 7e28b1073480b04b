/* SOFTMAX (int8): optimized_ops::Softmax's float table, sum and scale (kernels.h). */
#include "kernels.h"

/* std::round for the small values softmax produces: half away from zero. (x - trunc(x)
 * is exact for |x| < 2^23, so no double rounding creeps in.) Out-of-range values and NaN,
 * which only a damaged table can produce, saturate instead of being undefined. */
static int32_t round_half_away(float x)
{
    if (!(x > -1.0e6f && x < 1.0e6f)) {
        return x > 0.0f ? 1000000 : -1000000;
    }
    const bool neg = x < 0.0f;
    const float a = neg ? -x : x;
    int32_t t = (int32_t)a;
    if (a - (float)t >= 0.5f) {
        ++t;
    }
    return neg ? -t : t;
}

void sciot_softmax_s8(const sciot_softmax_params *p)
{
    const int8_t *in = p->input;
    int8_t *out = p->output;
    for (uint32_t r = 0; r < p->rows; ++r) {
        int32_t max_val = -128;
        for (uint32_t j = 0; j < p->depth; ++j) {
            if (in[j] > max_val) {
                max_val = in[j];
            }
        }
        /* optimized_ops::Softmax: table_offset = &table[255 - max], indexed by the int8
         * value, i.e. exp(-scale * beta * (max - x)); summed and scaled in float. Each
         * step is one IEEE single operation (no a * b + c a compiler could fuse), so a
         * soft-float MCU computes the same bits as SSE. */
        const uint8_t *base = p->table + 4 * (255 - max_val);
        float sum = 0.0f;
        for (uint32_t j = 0; j < p->depth; ++j) {
            sum += sciot_rd_f32(base + 4 * in[j]);
        }
        const float inv = 1.0f / (sum * p->output_scale);
        for (uint32_t j = 0; j < p->depth; ++j) {
            const float prob = sciot_rd_f32(base + 4 * in[j]) * inv;
            out[j] = sciot_clamp8(round_half_away(prob) + p->output_zero_point, -128, 127);
        }
        in += p->depth;
        out += p->depth;
    }
}
