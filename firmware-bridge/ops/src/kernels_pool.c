/* AVERAGE_POOL_2D, MAX_POOL_2D (optimized_integer_ops' pooling) and MEAN; kernels.h. */
#include "kernels.h"

/* The window of output (oy, ox) clipped to the image: [y0, y1) x [x0, x1). */
typedef struct {
    int32_t y0, y1, x0, x1;
} window;

static window clip_window(const sciot_pool_params *p, int32_t oy, int32_t ox)
{
    const int32_t in_y = oy * p->stride_h - p->pad_h;
    const int32_t in_x = ox * p->stride_w - p->pad_w;
    window w;
    w.y0 = in_y < 0 ? 0 : in_y;
    w.y1 = in_y + p->filter_h < p->in_h ? in_y + p->filter_h : p->in_h;
    w.x0 = in_x < 0 ? 0 : in_x;
    w.x1 = in_x + p->filter_w < p->in_w ? in_x + p->filter_w : p->in_w;
    return w;
}

void sciot_average_pool_s8(const sciot_pool_params *p)
{
    const int32_t c = p->channels;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const window w = clip_window(p, oy, ox);
            const int32_t count = (w.y1 - w.y0) * (w.x1 - w.x0);
            int8_t *out = p->output + (oy * p->out_w + ox) * c;
            for (int32_t ch = 0; ch < c; ++ch) {
                int32_t acc = 0;
                for (int32_t y = w.y0; y < w.y1; ++y) {
                    for (int32_t x = w.x0; x < w.x1; ++x) {
                        acc += p->input[(y * p->in_w + x) * c + ch];
                    }
                }
                /* The raw int8 values' mean (the input's and output's quantization are
                 * one), rounded half away from zero. A window that misses the image, which
                 * only a damaged blob describes, yields 0 rather than a division by zero. */
                int32_t avg = 0;
                if (count > 0) {
                    avg = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                }
                out[ch] = sciot_clamp8(avg, p->act_min, p->act_max);
            }
        }
    }
}

void sciot_max_pool_s8(const sciot_pool_params *p)
{
    const int32_t c = p->channels;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const window w = clip_window(p, oy, ox);
            int8_t *out = p->output + (oy * p->out_w + ox) * c;
            for (int32_t ch = 0; ch < c; ++ch) {
                int32_t max = -128;
                for (int32_t y = w.y0; y < w.y1; ++y) {
                    for (int32_t x = w.x0; x < w.x1; ++x) {
                        const int32_t v = p->input[(y * p->in_w + x) * c + ch];
                        max = v > max ? v : max;
                    }
                }
                out[ch] = sciot_clamp8(max, p->act_min, p->act_max);
            }
        }
    }
}

void sciot_mean_s8(const sciot_mean_params *p)
{
    /* Row-major steps of the input, and the extents of the kept and reduced dimensions. */
    int32_t step[4], kept[4], reduced[4];
    step[3] = 1;
    for (int d = 2; d >= 0; --d) {
        step[d] = step[d + 1] * p->dims[d + 1];
    }
    for (int d = 0; d < 4; ++d) {
        const bool r = (p->reduce_mask >> d) & 1u;
        kept[d] = r ? 1 : p->dims[d];
        reduced[d] = r ? p->dims[d] : 1;
    }
    uint32_t o = 0;
    for (int32_t k0 = 0; k0 < kept[0]; ++k0) {
        for (int32_t k1 = 0; k1 < kept[1]; ++k1) {
            for (int32_t k2 = 0; k2 < kept[2]; ++k2) {
                for (int32_t k3 = 0; k3 < kept[3]; ++k3, ++o) {
                    const int8_t *base =
                        p->input + k0 * step[0] + k1 * step[1] + k2 * step[2] + k3 * step[3];
                    uint32_t acc = (uint32_t)p->acc_offset;
                    for (int32_t r0 = 0; r0 < reduced[0]; ++r0) {
                        for (int32_t r1 = 0; r1 < reduced[1]; ++r1) {
                            for (int32_t r2 = 0; r2 < reduced[2]; ++r2) {
                                for (int32_t r3 = 0; r3 < reduced[3]; ++r3) {
                                    acc += (uint32_t)(int32_t)base[r0 * step[0] + r1 * step[1] +
                                                                   r2 * step[2] + r3 * step[3]];
                                }
                            }
                        }
                    }
                    const int rounding = o < p->vector_outputs ? p->vector_rounding : p->rounding;
                    const int64_t y = (int64_t)sciot_mul_quantized(rounding, sciot_as_i32(acc),
                                                                   p->multiplier, (int)p->shift) +
                                      p->output_offset;
                    p->output[o] = sciot_clamp8(y, -128, 127);
                }
            }
        }
    }
}
