// Local response normalisation across channels (AlexNet), PyTorch's definition:
// b_c = a_c / s_c^β, s_c = k + α/size · Σ a_{c'}² over c' = c − size/2 … c + (size−1)/2 (clipped).

inline float lrn_scale(__global const float *x, const uint i, const uint c, const uint channels, const uint inner,
                       const int size, const float alpha, const float k) {
    const int first = max((int)c - size / 2, 0), last = min((int)c + (size - 1) / 2, (int)channels - 1);
    float sum = 0.0f;
    for (int j = first; j <= last; ++j) {
        const float v = x[(int)i + (j - (int)c) * (int)inner];
        sum += v * v;
    }
    return k + alpha / (float)size * sum;
}

__kernel void lrn_forward(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                          const uint n, const uint channels, const uint inner,
                          const int size, const float alpha, const float beta, const float k) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const uint c = (i / inner) % channels;
    __global const float *a = x + x_offset;
    y[y_offset + i] = a[i] * pow(lrn_scale(a, i, c, channels, inner, size, alpha, k), -beta);
}

// dx_i = dy_i·s_i^−β − 2αβ/size · a_i · Σ_{j whose window holds i} dy_j·a_j·s_j^(−β−1)
__kernel void lrn_backward(__global const float *x, const uint x_offset, __global const float *dy, const uint dy_offset,
                           __global float *dx, const uint dx_offset, const uint n, const uint channels, const uint inner,
                           const int size, const float alpha, const float beta, const float k) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const uint c = (i / inner) % channels;
    __global const float *a = x + x_offset;
    __global const float *g = dy + dy_offset;
    const int first = max((int)c - (size - 1) / 2, 0), last = min((int)c + size / 2, (int)channels - 1);
    float sum = 0.0f;
    for (int j = first; j <= last; ++j) {
        const uint other = (uint)((int)i + (j - (int)c) * (int)inner);
        sum += g[other] * a[other] * pow(lrn_scale(a, other, (uint)j, channels, inner, size, alpha, k), -beta - 1.0f);
    }
    dx[dx_offset + i] = g[i] * pow(lrn_scale(a, i, c, channels, inner, size, alpha, k), -beta)
                      - 2.0f * alpha * beta / (float)size * a[i] * sum;
}
