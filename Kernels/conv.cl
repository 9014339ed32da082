// Convolution: im2col and its adjoint (a gather, so no atomics) for the im2col + GEMM path, and direct
// kernels for depthwise convolution (each output channel reads one input channel), forward and backward.
// Tensors are NCHW; weights OIHW. Geometry is passed at run time so that one compiled program serves every
// layer shape.

#ifndef REDUCE_WG
#define REDUCE_WG 64   // work-group size of the weight-gradient reduction, a power of two
#endif

// The window of a convolution (kernel, stride, padding, dilation) and its output size.
#define CONV_WINDOW const uint kh, const uint kw, const uint sh, const uint sw, const int pad_top, const int pad_left, \
                    const uint dh, const uint dw, const uint out_height, const uint out_width
// The input seen by one group of im2col/col2im: its channels, size, first channel and channels per group.
#define IM2COL_SHAPE const uint channels, const uint height, const uint width, const uint c0, const uint cg
// A depthwise convolution's input; each input channel has `multiplier` outputs.
#define DEPTHWISE_SHAPE const uint batch, const uint in_channels, const uint height, const uint width, const uint multiplier

// cols[b][k][p] for the images n0 .. n0+batch of x and the channels c0 .. c0+cg (one group), where
// k = (c·kh + i)·kw + j and p = oh·ow_size + ow.
__kernel void im2col(__global const float *x, const uint x_offset,
                     __global float *cols, const uint batch,
                     IM2COL_SHAPE,
                     CONV_WINDOW) {
    const uint index = get_global_id(0);
    const uint pixels = out_height * out_width;
    const uint patch = cg * kh * kw;
    if (index >= batch * patch * pixels) return;
    const uint p = index % pixels;
    const uint k = (index / pixels) % patch;
    const uint b = index / (pixels * patch);
    const uint j = k % kw, i = (k / kw) % kh, c = k / (kw * kh);
    const int ih = (int)((p / out_width) * sh + i * dh) - pad_top;
    const int iw = (int)((p % out_width) * sw + j * dw) - pad_left;
    float value = 0.0f;
    if (ih >= 0 && ih < (int)height && iw >= 0 && iw < (int)width)
        value = x[x_offset + ((b * channels + c0 + c) * height + ih) * width + iw];
    cols[index] = value;
}

// The adjoint of im2col as a gather: each input pixel of the group sums the patch entries read from it.
// Overwrites dx for the channels c0 .. c0+cg of the images of the chunk.
__kernel void col2im(__global const float *cols, __global float *dx, const uint dx_offset, const uint batch,
                     IM2COL_SHAPE,
                     CONV_WINDOW) {
    const uint index = get_global_id(0);
    if (index >= batch * cg * height * width) return;
    const uint w = index % width;
    const uint h = (index / width) % height;
    const uint c = (index / (width * height)) % cg;
    const uint b = index / (width * height * cg);
    const uint pixels = out_height * out_width;
    __global const float *image_cols = cols + (size_t)b * cg * kh * kw * pixels;
    float sum = 0.0f;
    for (uint i = 0; i < kh; ++i) {
        const int top = (int)h + pad_top - (int)(i * dh);      // = oh·sh when row i of the kernel hits h
        if (top < 0 || top % (int)sh != 0) continue;
        const uint oh = (uint)top / sh;
        if (oh >= out_height) continue;
        for (uint j = 0; j < kw; ++j) {
            const int left = (int)w + pad_left - (int)(j * dw);
            if (left < 0 || left % (int)sw != 0) continue;
            const uint ow = (uint)left / sw;
            if (ow >= out_width) continue;
            sum += image_cols[((c * kh + i) * kw + j) * pixels + oh * out_width + ow];
        }
    }
    dx[dx_offset + ((b * channels + c0 + c) * height + h) * width + w] = sum;
}

// Depthwise forward: output channel o reads input channel o / multiplier, where multiplier = C_out / C_in.
__kernel void depthwise_forward(__global const float *x, const uint x_offset,
                                __global const float *weight, const uint w_offset,
                                __global float *y, const uint y_offset, DEPTHWISE_SHAPE,
                                CONV_WINDOW) {
    const uint index = get_global_id(0);
    const uint out_channels = in_channels * multiplier;
    if (index >= batch * out_channels * out_height * out_width) return;
    const uint ow = index % out_width;
    const uint oh = (index / out_width) % out_height;
    const uint o = (index / (out_width * out_height)) % out_channels;
    const uint n = index / (out_width * out_height * out_channels);
    __global const float *channel = x + x_offset + (n * in_channels + o / multiplier) * height * width;
    __global const float *filter = weight + w_offset + o * kh * kw;
    float sum = 0.0f;
    for (uint i = 0; i < kh; ++i) {
        const int ih = (int)(oh * sh + i * dh) - pad_top;
        if (ih < 0 || ih >= (int)height) continue;
        for (uint j = 0; j < kw; ++j) {
            const int iw = (int)(ow * sw + j * dw) - pad_left;
            if (iw >= 0 && iw < (int)width) sum += filter[i * kw + j] * channel[ih * width + iw];
        }
    }
    y[y_offset + index] = sum;
}

// Depthwise backward data, a gather: input pixel (n, c, h, w) sums over the multiplier output channels
// of c and the kernel taps that read it.
__kernel void depthwise_backward_data(__global const float *dy, const uint dy_offset,
                                      __global const float *weight, const uint w_offset,
                                      __global float *dx, const uint dx_offset, DEPTHWISE_SHAPE,
                                      CONV_WINDOW) {
    const uint index = get_global_id(0);
    if (index >= batch * in_channels * height * width) return;
    const uint w = index % width;
    const uint h = (index / width) % height;
    const uint c = (index / (width * height)) % in_channels;
    const uint n = index / (width * height * in_channels);
    float sum = 0.0f;
    for (uint m = 0; m < multiplier; ++m) {
        const uint o = c * multiplier + m;
        __global const float *gradient = dy + dy_offset + (n * in_channels * multiplier + o) * out_height * out_width;
        __global const float *filter = weight + w_offset + o * kh * kw;
        for (uint i = 0; i < kh; ++i) {
            const int top = (int)h + pad_top - (int)(i * dh);
            if (top < 0 || top % (int)sh != 0 || (uint)top / sh >= out_height) continue;
            for (uint j = 0; j < kw; ++j) {
                const int left = (int)w + pad_left - (int)(j * dw);
                if (left < 0 || left % (int)sw != 0 || (uint)left / sw >= out_width) continue;
                sum += filter[i * kw + j] * gradient[((uint)top / sh) * out_width + (uint)left / sw];
            }
        }
    }
    dx[dx_offset + index] = sum;
}

// Depthwise backward filter: one work-group per weight (o, i, j) reduces over the batch and the output
// pixels in local memory. With accumulate != 0 it adds to the existing gradient.
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void depthwise_backward_filter(__global const float *x, const uint x_offset,
                               __global const float *dy, const uint dy_offset,
                               __global float *dweight, const uint dw_offset, const uint accumulate, DEPTHWISE_SHAPE,
                               CONV_WINDOW) {
    __local float partial[REDUCE_WG];
    const uint weight_index = get_group_id(0);
    const uint lid = get_local_id(0);
    const uint j = weight_index % kw, i = (weight_index / kw) % kh, o = weight_index / (kw * kh);
    const uint c = o / multiplier;
    const uint pixels = out_height * out_width;
    float sum = 0.0f;
    for (uint q = lid; q < batch * pixels; q += REDUCE_WG) {
        const uint n = q / pixels, p = q % pixels;
        const int ih = (int)((p / out_width) * sh + i * dh) - pad_top;
        const int iw = (int)((p % out_width) * sw + j * dw) - pad_left;
        if (ih < 0 || ih >= (int)height || iw < 0 || iw >= (int)width) continue;
        sum += dy[dy_offset + (n * in_channels * multiplier + o) * pixels + p]
             * x[x_offset + ((n * in_channels + c) * height + ih) * width + iw];
    }
    partial[lid] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = REDUCE_WG / 2; s > 0; s >>= 1) {
        if (lid < s) partial[lid] += partial[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) {
        const uint at = dw_offset + weight_index;
        dweight[at] = (accumulate ? dweight[at] : 0.0f) + partial[0];
    }
}
