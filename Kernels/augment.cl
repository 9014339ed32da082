// Data augmentation and preprocessing of [N, C, H, W] batches. Every random choice is made on the host and
// arrives here as a per-sample parameter row, so a kernel is a plain function of (images, parameters) and
// the host backend (Sources/Kiln/Backends/Host/HostAugmentation.swift) is its readable spec.
//
// Contraction into fma would round differently from the host's separate multiply and add: the exact ops
// (shift/flip, erase, mix, scale/shift) must match the host bit for bit.
#pragma OPENCL FP_CONTRACT OFF

#ifndef REDUCE_WG
#define REDUCE_WG 64
#endif

// What lies outside the image, shared with Swift (generated there as AugmentBorderKind).
enum augment_border_kind { AUGMENT_BORDER_CONSTANT = 0, AUGMENT_BORDER_REFLECT = 1 };
typedef int augment_border_kind;

// Sampling of the affine warp (generated as AugmentInterpolationKind).
enum augment_interpolation_kind { AUGMENT_INTERPOLATION_NEAREST = 0, AUGMENT_INTERPOLATION_BILINEAR = 1 };
typedef int augment_interpolation_kind;

// Reflection without repeating the edge (numpy's "reflect"): -1 -> 1, size -> size - 2.
inline int reflect_index(int i, int size) {
    if (size == 1) return 0;
    const int period = 2 * (size - 1);
    i = i % period;
    if (i < 0) i += period;
    return i < size ? i : period - i;
}

// One work-item per output element. params[n] = (shift x, shift y, flip x, flip y): output (h, w) reads the
// input at (flip y ? H-1-h : h) + shift y, (flip x ? W-1-w : w) + shift x — a crop of the padded image
// followed by flips. Shifts are whole numbers.
__kernel void shift_flip(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                         __global const float *params, const uint p_offset, const uint n, const uint channels,
                         const uint height, const uint width, const augment_border_kind border, const float fill) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const uint w = i % width, h = (i / width) % height, sample = i / (width * height * channels);
    __global const float *p = params + p_offset + 4 * sample;
    int sw = (p[2] != 0.0f ? (int)(width - 1 - w) : (int)w) + (int)p[0];
    int sh = (p[3] != 0.0f ? (int)(height - 1 - h) : (int)h) + (int)p[1];
    if (border == AUGMENT_BORDER_REFLECT) {
        sw = reflect_index(sw, (int)width);
        sh = reflect_index(sh, (int)height);
    } else if (sw < 0 || sw >= (int)width || sh < 0 || sh >= (int)height) {
        y[y_offset + i] = fill;
        return;
    }
    y[y_offset + i] = x[x_offset + (i - h * width - w) + (uint)sh * width + (uint)sw];  // the plane's start, then (sh, sw)
}

// The input pixel (row r, column c) of a plane, or `fill` outside it.
inline float pixel_or_fill(__global const float *plane, int r, int c, int height, int width, float fill) {
    return r < 0 || r >= height || c < 0 || c >= width ? fill : plane[r * width + c];
}

// One work-item per output element of y [N, C, OH, OW]. matrices[n] = (a, b, c, d, e, f) maps an output
// pixel centre (u, v) = (ow + 0.5, oh + 0.5) to the input point (a·u + b·v + c, d·u + e·v + f), in pixel
// units with the origin at the input's top-left corner. Nearest takes the pixel containing the point;
// bilinear weighs the four pixel centres around it. Taps outside the input read `fill`.
__kernel void warp_affine(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                          __global const float *matrices, const uint m_offset, const uint n, const uint channels,
                          const uint height, const uint width, const uint out_height, const uint out_width,
                          const augment_interpolation_kind interpolation, const float fill) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const uint ow = i % out_width, oh = (i / out_width) % out_height, plane = i / (out_width * out_height);
    __global const float *m = matrices + m_offset + 6 * (plane / channels);
    __global const float *input = x + x_offset + plane * height * width;
    const float u = (float)ow + 0.5f, v = (float)oh + 0.5f;
    const float sx = m[0] * u + m[1] * v + m[2];
    const float sy = m[3] * u + m[4] * v + m[5];
    if (interpolation == AUGMENT_INTERPOLATION_NEAREST) {
        y[y_offset + i] = pixel_or_fill(input, (int)floor(sy), (int)floor(sx), (int)height, (int)width, fill);
        return;
    }
    const float cx = sx - 0.5f, cy = sy - 0.5f;
    const float x0 = floor(cx), y0 = floor(cy);
    const float fx = cx - x0, fy = cy - y0;
    const int c0 = (int)x0, r0 = (int)y0;
    const float top = pixel_or_fill(input, r0, c0, (int)height, (int)width, fill) * (1.0f - fx)
                      + pixel_or_fill(input, r0, c0 + 1, (int)height, (int)width, fill) * fx;
    const float bottom = pixel_or_fill(input, r0 + 1, c0, (int)height, (int)width, fill) * (1.0f - fx)
                         + pixel_or_fill(input, r0 + 1, c0 + 1, (int)height, (int)width, fill) * fx;
    y[y_offset + i] = top * (1.0f - fy) + bottom * fy;
}

inline float clamp_unit(float v) { return fmin(fmax(v, 0.0f), 1.0f); }

// The sum of `value` over the work-group, in every work-item (a tree reduction in `partial`).
inline float group_sum(float value, __local float *partial) {
    const uint lid = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE);  // `partial` may still be read from a previous sum
    partial[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint step = REDUCE_WG / 2; step > 0; step >>= 1) {
        if (lid < step) partial[lid] += partial[lid + step];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return partial[0];
}

// The luma torchvision uses for grey (ITU-R 601-2) of pixel q of an image, after the brightness factor.
inline float bright_grey(__global const float *image, uint q, uint plane, uint channels, float brightness) {
    if (channels != 3) return clamp_unit(image[q] * brightness);
    return 0.299f * clamp_unit(image[q] * brightness) + 0.587f * clamp_unit(image[plane + q] * brightness)
           + 0.114f * clamp_unit(image[2 * plane + q] * brightness);
}

// One work-group per image. factors[n] = (brightness, contrast, saturation), applied in that order as
// torchvision's adjust_* functions do, each clamped to [0, 1]: v·b; blend with the mean grey of the image
// (contrast); blend with the pixel's own grey (saturation, 3 channels only). A factor of 1 leaves the image.
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void color_jitter(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                  __global const float *factors, const uint f_offset, const uint channels, const uint plane) {
    __local float partial[REDUCE_WG];
    const uint sample = get_group_id(0), lid = get_local_id(0);
    __global const float *image = x + x_offset + sample * channels * plane;
    __global float *out = y + y_offset + sample * channels * plane;
    const float b = factors[f_offset + 3 * sample], c = factors[f_offset + 3 * sample + 1];
    const float s = factors[f_offset + 3 * sample + 2];
    float sum = 0.0f;
    for (uint q = lid; q < plane; q += REDUCE_WG) sum += bright_grey(image, q, plane, channels, b);
    const float mean = group_sum(sum, partial) / (float)plane;
    for (uint q = lid; q < plane; q += REDUCE_WG) {
        float v[3];
        for (uint k = 0; k < channels && k < 3; ++k) {
            const float bright = clamp_unit(image[k * plane + q] * b);
            v[k] = clamp_unit(c * bright + (1.0f - c) * mean);
        }
        if (channels == 3) {
            const float grey = 0.299f * v[0] + 0.587f * v[1] + 0.114f * v[2];
            for (uint k = 0; k < 3; ++k) v[k] = clamp_unit(s * v[k] + (1.0f - s) * grey);
        }
        for (uint k = 0; k < channels && k < 3; ++k) out[k * plane + q] = v[k];
        // Beyond three channels contrast alone applies, as for grey.
        for (uint k = 3; k < channels; ++k) out[k * plane + q] = clamp_unit(c * clamp_unit(image[k * plane + q] * b) + (1.0f - c) * mean);
    }
}

// One work-item per element. boxes[n] = (x0, y0, x1, y1), whole numbers: pixels with x0 ≤ w < x1 and
// y0 ≤ h < y1 become `value` in every channel (cutout, random erasing); an empty box leaves the image.
__kernel void erase_boxes(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                          __global const float *boxes, const uint b_offset, const uint n, const uint channels,
                          const uint height, const uint width, const float value) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const float w = (float)(i % width), h = (float)((i / width) % height);
    __global const float *box = boxes + b_offset + 4 * (i / (width * height * channels));
    y[y_offset + i] = w >= box[0] && w < box[2] && h >= box[1] && h < box[3] ? value : x[x_offset + i];
}

// One work-item per element of y [N, C, H, W]. params[n] = (λ, x0, y0, x1, y1): inside the box the partner's
// pixel (cutmix), elsewhere λ·a + (1 − λ)·b (mixup; sample pairing is λ = 1/2; λ = 1 keeps a exactly).
__kernel void mix_pairs(__global const float *a, const uint a_offset, __global const float *b, const uint b_offset,
                        __global float *y, const uint y_offset, __global const float *params, const uint p_offset,
                        const uint n, const uint channels, const uint height, const uint width) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const float w = (float)(i % width), h = (float)((i / width) % height);
    __global const float *p = params + p_offset + 5 * (i / (width * height * channels));
    const float va = a[a_offset + i], vb = b[b_offset + i];
    y[y_offset + i] = w >= p[1] && w < p[3] && h >= p[2] && h < p[4] ? vb : p[0] * va + (1.0f - p[0]) * vb;
}

// One work-item per element: y = x·scale[c] + shift[c] for channel c = (i / inner) % channels (per-channel
// normalisation with scale = 1/std, shift = −mean/std).
__kernel void scale_shift_channels(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                                   __global const float *scale, const uint s_offset, __global const float *shift,
                                   const uint t_offset, const uint n, const uint channels, const uint inner) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const uint c = (i / inner) % channels;
    y[y_offset + i] = x[x_offset + i] * scale[s_offset + c] + shift[t_offset + c];
}

// One work-group per image of `size` elements: (x − mean) / max(std, 1/√size), the population statistics
// of the whole image (TensorFlow's per_image_standardization, global contrast normalisation).
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void standardize_images(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                        const uint size) {
    __local float partial[REDUCE_WG];
    const uint sample = get_group_id(0), lid = get_local_id(0);
    __global const float *image = x + x_offset + sample * size;
    float sum = 0.0f;
    for (uint q = lid; q < size; q += REDUCE_WG) sum += image[q];
    const float mean = group_sum(sum, partial) / (float)size;
    float squares = 0.0f;
    for (uint q = lid; q < size; q += REDUCE_WG) {
        const float d = image[q] - mean;
        squares += d * d;
    }
    const float scale = 1.0f / fmax(sqrt(group_sum(squares, partial) / (float)size), rsqrt((float)size));
    for (uint q = lid; q < size; q += REDUCE_WG) y[y_offset + sample * size + q] = (image[q] - mean) * scale;
}
