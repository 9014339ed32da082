// A fully connected layer's forward in one pass: y[n, o] = Σ_k x[n, k] · w[o, k] (+ b[o]), through max(·, 0)
// with relu != 0. Rows of x and of w are both contiguous in k, so a work-item reads them as vectors: it
// holds ROWS samples x COLS outputs of vector partial sums and adds each vector's lanes at the end. For the
// small layers of a classifier head, where a GEMM library's tiles are mostly launch and edge.
//
// LINEAR_VEC (4, 8 or 16 floats), LINEAR_ROWS and LINEAR_COLS are chosen per device (OpenCLLinear.swift).

#ifndef LINEAR_VEC
#define LINEAR_VEC 4
#endif
#ifndef LINEAR_ROWS
#define LINEAR_ROWS 2
#endif
#ifndef LINEAR_COLS
#define LINEAR_COLS 2
#endif
#define LINEAR_CAT(a, b) a##b
#define LINEAR_OF(a, b) LINEAR_CAT(a, b)
#define floatL LINEAR_OF(float, LINEAR_VEC)
#define vloadL LINEAR_OF(vload, LINEAR_VEC)

inline float lane_sum(const floatL v) {
    float s = 0.0f;
    for (uint l = 0; l < LINEAR_VEC; ++l) s += ((const float *)&v)[l];
    return s;
}

__kernel void linear_forward(__global const float *x, const uint x_offset, __global const float *weight, const uint w_offset,
                             __global const float *bias, const uint bias_offset, const uint has_bias,
                             __global float *y, const uint y_offset, const uint batch, const uint in_features,
                             const uint out_features, const uint relu) {
    const uint column_blocks = (out_features + LINEAR_COLS - 1) / LINEAR_COLS;
    const uint index = get_global_id(0);
    if (index >= (batch + LINEAR_ROWS - 1) / LINEAR_ROWS * column_blocks) return;
    const uint o0 = index % column_blocks * LINEAR_COLS, n0 = index / column_blocks * LINEAR_ROWS;
    // Rows past the end read the last row again (and are not written), so no load needs a test.
    __global const float *xs[LINEAR_ROWS], *ws[LINEAR_COLS];
    for (uint a = 0; a < LINEAR_ROWS; ++a) xs[a] = x + x_offset + min(n0 + a, batch - 1) * in_features;
    for (uint b = 0; b < LINEAR_COLS; ++b) ws[b] = weight + w_offset + min(o0 + b, out_features - 1) * in_features;
    floatL acc[LINEAR_ROWS][LINEAR_COLS];
    for (uint a = 0; a < LINEAR_ROWS; ++a)
        for (uint b = 0; b < LINEAR_COLS; ++b) acc[a][b] = 0.0f;
    const uint vectors = in_features / LINEAR_VEC;
    for (uint k = 0; k < vectors; ++k) {
        floatL xv[LINEAR_ROWS], wv[LINEAR_COLS];
        for (uint a = 0; a < LINEAR_ROWS; ++a) xv[a] = vloadL(k, xs[a]);
        for (uint b = 0; b < LINEAR_COLS; ++b) wv[b] = vloadL(k, ws[b]);
        for (uint a = 0; a < LINEAR_ROWS; ++a)
            for (uint b = 0; b < LINEAR_COLS; ++b) acc[a][b] = fma(xv[a], wv[b], acc[a][b]);
    }
    for (uint a = 0; a < LINEAR_ROWS; ++a)
        for (uint b = 0; b < LINEAR_COLS; ++b) {
            if (n0 + a >= batch || o0 + b >= out_features) continue;
            float sum = lane_sum(acc[a][b]);
            for (uint k = vectors * LINEAR_VEC; k < in_features; ++k) sum += xs[a][k] * ws[b][k];
            if (has_bias) sum += bias[bias_offset + o0 + b];
            y[y_offset + (n0 + a) * out_features + o0 + b] = relu ? fmax(sum, 0.0f) : sum;
        }
}
