/* CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED: int32 accumulation, then per-channel
 * requantization with the rounding the blob gives (kernels.h). */
#include "kernels.h"

/* Accumulators add in uint32: the same two's complement result as TFLite's int32 sums
 * whenever those do not overflow (real models never do), and defined when a damaged
 * blob makes them. */
static int8_t requantize(const sciot_conv_params *p, uint32_t acc, int32_t oc)
{
    if (p->bias != 0) {
        acc += (uint32_t)sciot_rd_i32(p->bias + 4 * oc);
    }
    const int rounding = oc < p->vector_channels ? p->vector_rounding : p->rounding;
    const int32_t scaled =
        sciot_mul_quantized(rounding, sciot_as_i32(acc), sciot_rd_i32(p->multiplier + 4 * oc),
                            (int)sciot_rd_i32(p->shift + 4 * oc));
    return sciot_clamp8((int64_t)scaled + p->output_offset, p->act_min, p->act_max);
}

void sciot_conv2d_s8(const sciot_conv_params *p)
{
    const int32_t in_c = p->in_c;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            int8_t *out = p->output + ((int32_t)oy * p->out_w + ox) * p->out_c;
            for (int32_t oc = 0; oc < p->out_c; ++oc) {
                uint32_t acc = 0;
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = y0 + p->dilation_h * ky;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = x0 + p->dilation_w * kx;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        const int8_t *in = p->input + (iy * p->in_w + ix) * in_c;
                        const int8_t *f = p->filter + ((oc * p->k_h + ky) * p->k_w + kx) * in_c;
                        for (int32_t ic = 0; ic < in_c; ++ic) {
                            acc += (uint32_t)((int32_t)f[ic] * ((int32_t)in[ic] + p->input_offset));
                        }
                    }
                }
                out[oc] = requantize(p, acc, oc);
            }
        }
    }
}

void sciot_depthwise_conv2d_s8(const sciot_conv_params *p)
{
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t y0 = oy * p->stride_h - p->pad_h;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t x0 = ox * p->stride_w - p->pad_w;
            int8_t *out = p->output + ((int32_t)oy * p->out_w + ox) * p->out_c;
            for (int32_t ic = 0; ic < p->in_c; ++ic) {
                for (int32_t m = 0; m < p->depth_multiplier; ++m) {
                    const int32_t oc = ic * p->depth_multiplier + m;
                    uint32_t acc = 0;
                    for (int32_t ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = y0 + p->dilation_h * ky;
                        if (iy < 0 || iy >= p->in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = x0 + p->dilation_w * kx;
                            if (ix < 0 || ix >= p->in_w) {
                                continue;
                            }
                            const int32_t v = p->input[(iy * p->in_w + ix) * p->in_c + ic];
                            const int32_t f = p->filter[(ky * p->k_w + kx) * p->out_c + oc];
                            acc += (uint32_t)(f * (v + p->input_offset));
                        }
                    }
                    out[oc] = requantize(p, acc, oc);
                }
            }
        }
    }
}

void sciot_fully_connected_s8(const sciot_fc_params *p)
{
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *in = p->input + r * p->depth;
        int8_t *out = p->output + r * p->out_c;
        for (int32_t oc = 0; oc < p->out_c; ++oc) {
            const int8_t *f = p->filter + oc * p->depth;
            uint32_t acc = 0;
            for (int32_t d = 0; d < p->depth; ++d) {
                acc += (uint32_t)((int32_t)f[d] * ((int32_t)in[d] + p->input_offset));
            }
            if (p->bias != 0) {
                acc += (uint32_t)sciot_rd_i32(p->bias + 4 * oc);
            }
            const int32_t scaled = sciot_mul_quantized(p->rounding, sciot_as_i32(acc),
                                                       sciot_rd_i32(p->multiplier + 4 * oc),
                                                       (int)sciot_rd_i32(p->shift + 4 * oc));
            out[oc] = sciot_clamp8((int64_t)scaled + p->output_offset, p->act_min, p->act_max);
        }
    }
}
