// 2-D max and average pooling over NCHW planes, forward and backward. Backward is a gather: each input
// element sums the gradients of the windows that contain it, so no atomics are needed.
// Max pooling: ties go to the first maximum in row-major window order; padded positions never win.
// Average pooling divides by the full window size, padding included (count_include_pad).

// One work-item per output element. With keep_argmax, argmax receives h·W + w of the winner (max pooling
// only); with relu, the maximum goes through max(·, 0), which is the pooling of ReLU(x).
__kernel void pool_forward(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                           __global float *argmax, const uint a_offset, const uint is_max, const uint keep_argmax, const uint relu, const uint n,
                           const uint height, const uint width, const uint out_height, const uint out_width,
                           const uint kh, const uint kw, const uint sh, const uint sw, const int ph, const int pw) {
    const uint index = get_global_id(0);
    if (index >= n) return;
    const uint ow = index % out_width;
    const uint oh = (index / out_width) % out_height;
    const uint plane = index / (out_width * out_height);
    __global const float *input = x + x_offset + plane * height * width;
    float best = -INFINITY, sum = 0.0f;
    int best_index = -1;
    for (uint i = 0; i < kh; ++i) {
        const int h = (int)(oh * sh + i) - ph;
        if (h < 0 || h >= (int)height) continue;
        for (uint j = 0; j < kw; ++j) {
            const int w = (int)(ow * sw + j) - pw;
            if (w < 0 || w >= (int)width) continue;
            const float v = input[h * width + w];
            sum += v;
            if (best_index < 0 || v > best) { best = v; best_index = h * (int)width + w; }
        }
    }
    if (is_max) {
        y[y_offset + index] = relu ? fmax(best, 0.0f) : best;
        if (keep_argmax) argmax[a_offset + index] = (float)best_index;
    } else {
        y[y_offset + index] = sum / (float)(kh * kw);
    }
}

// One work-item per input element: sums dy over the windows containing it (for max pooling, only those
// whose arg-max it is, and with relu only those whose output y is positive).
__kernel void pool_backward(__global const float *dy, const uint dy_offset, __global const float *argmax, const uint a_offset,
                            __global const float *y, const uint y_offset, const uint relu,
                            __global float *dx, const uint dx_offset, const uint is_max, const uint n,
                            const uint height, const uint width, const uint out_height, const uint out_width,
                            const uint kh, const uint kw, const uint sh, const uint sw, const int ph, const int pw) {
    const uint index = get_global_id(0);
    if (index >= n) return;
    const uint w = index % width;
    const uint h = (index / width) % height;
    const uint plane = index / (width * height);
    const uint plane_out = plane * out_height * out_width;
    const float position = (float)(h * width + w);
    float sum = 0.0f;
    for (uint i = 0; i < kh; ++i) {
        const int top = (int)h + ph - (int)i;            // = oh·sh for a window whose row i is h
        if (top < 0 || top % (int)sh != 0 || (uint)top / sh >= out_height) continue;
        for (uint j = 0; j < kw; ++j) {
            const int left = (int)w + pw - (int)j;
            if (left < 0 || left % (int)sw != 0 || (uint)left / sw >= out_width) continue;
            const uint out = plane_out + ((uint)top / sh) * out_width + (uint)left / sw;
            if (is_max) {
                if (argmax[a_offset + out] == position && (!relu || y[y_offset + out] > 0.0f)) sum += dy[dy_offset + out];
            } else {
                sum += dy[dy_offset + out] / (float)(kh * kw);
            }
        }
    }
    dx[dx_offset + index] = sum;
}

// Max pooling backward when windows do not overlap (window ≤ stride, the usual 2x2/2): each window's
// gradient goes to its arg-max alone, so one work-item per output element scatters it without conflicts
// (with relu, only where the output y is positive). dx must be zero beforehand.
__kernel void pool_backward_max_scatter(__global const float *dy, const uint dy_offset, __global const float *argmax,
                                        const uint a_offset, __global const float *y, const uint y_offset, const uint relu,
                                        __global float *dx, const uint dx_offset, const uint n,
                                        const uint plane_in, const uint plane_out) {
    const uint index = get_global_id(0);
    if (index >= n) return;
    const int position = (int)argmax[a_offset + index];
    if (position >= 0 && (!relu || y[y_offset + index] > 0.0f)) dx[dx_offset + (index / plane_out) * plane_in + (uint)position] = dy[dy_offset + index];
}
