// Activations, forward and backward, selected by a kind at run time so one program serves them all.
// PReLU has its own kernels: a per-channel slope and a gather reduction for the slope gradient.

#ifndef REDUCE_WG
#define REDUCE_WG 64
#endif

// The kinds, shared with Swift (generated there as ActivationKind). p is the slope of leaky ReLU and the
// alpha of ELU. An unknown kind gives NaN rather than some other activation.
enum activation_kind {
    ACTIVATION_RELU = 0, ACTIVATION_LEAKY_RELU = 1, ACTIVATION_ELU = 2, ACTIVATION_SIGMOID = 3,
    ACTIVATION_TANH = 4, ACTIVATION_SOFTPLUS = 5, ACTIVATION_SWISH = 6, ACTIVATION_RELU6 = 7,
};
typedef int activation_kind;

inline float sigmoid_of(float x) { return 1.0f / (1.0f + exp(-x)); }

inline float activate(activation_kind kind, float p, float x) {
    switch (kind) {
    case ACTIVATION_RELU: return fmax(x, 0.0f);
    case ACTIVATION_LEAKY_RELU: return x > 0.0f ? x : p * x;
    case ACTIVATION_ELU: return x > 0.0f ? x : p * expm1(x);
    case ACTIVATION_SIGMOID: return sigmoid_of(x);
    case ACTIVATION_TANH: return tanh(x);
    case ACTIVATION_SOFTPLUS: return fmax(x, 0.0f) + log1p(exp(-fabs(x)));
    case ACTIVATION_SWISH: return x * sigmoid_of(x);
    case ACTIVATION_RELU6: return fmin(fmax(x, 0.0f), 6.0f);
    default: return NAN;
    }
}

inline float derivative(activation_kind kind, float p, float x) {
    switch (kind) {
    case ACTIVATION_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case ACTIVATION_LEAKY_RELU: return x > 0.0f ? 1.0f : p;
    case ACTIVATION_ELU: return x > 0.0f ? 1.0f : p * exp(x);
    case ACTIVATION_SIGMOID: { const float s = sigmoid_of(x); return s * (1.0f - s); }
    case ACTIVATION_TANH: { const float t = tanh(x); return 1.0f - t * t; }
    case ACTIVATION_SOFTPLUS: return sigmoid_of(x);
    case ACTIVATION_SWISH: { const float s = sigmoid_of(x); return s * (1.0f + x * (1.0f - s)); }
    case ACTIVATION_RELU6: return (x > 0.0f && x < 6.0f) ? 1.0f : 0.0f;
    default: return NAN;
    }
}

__kernel void activation_forward(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                                 const uint n, const activation_kind kind, const float p) {
    const uint i = get_global_id(0);
    if (i < n) y[y_offset + i] = activate(kind, p, x[x_offset + i]);
}

__kernel void activation_backward(__global const float *x, const uint x_offset, __global const float *dy, const uint dy_offset,
                                  __global float *dx, const uint dx_offset, const uint n, const activation_kind kind, const float p) {
    const uint i = get_global_id(0);
    if (i < n) dx[dx_offset + i] = derivative(kind, p, x[x_offset + i]) * dy[dy_offset + i];
}

// x, y: [N, C, inner]; slopes: [C].
__kernel void prelu_forward(__global const float *x, const uint x_offset, __global const float *slopes, const uint s_offset,
                            __global float *y, const uint y_offset, const uint n, const uint channels, const uint inner) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const float v = x[x_offset + i];
    y[y_offset + i] = v > 0.0f ? v : slopes[s_offset + (i / inner) % channels] * v;
}

__kernel void prelu_backward_data(__global const float *x, const uint x_offset, __global const float *slopes, const uint s_offset,
                                  __global const float *dy, const uint dy_offset, __global float *dx, const uint dx_offset,
                                  const uint n, const uint channels, const uint inner) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const float g = dy[dy_offset + i];
    dx[dx_offset + i] = x[x_offset + i] > 0.0f ? g : slopes[s_offset + (i / inner) % channels] * g;
}

// One work-group per channel sums dy·x over the non-positive inputs of that channel.
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void prelu_backward_slope(__global const float *x, const uint x_offset, __global const float *dy, const uint dy_offset,
                          __global float *dslopes, const uint ds_offset, const uint accumulate,
                          const uint n, const uint channels, const uint inner) {
    __local float partial[REDUCE_WG];
    const uint c = get_group_id(0);
    const uint lid = get_local_id(0);
    const uint per_channel = n / channels;  // N · inner elements
    float sum = 0.0f;
    for (uint q = lid; q < per_channel; q += REDUCE_WG) {
        const uint i = (q / inner) * channels * inner + c * inner + q % inner;
        const float v = x[x_offset + i];
        if (v <= 0.0f) sum += dy[dy_offset + i] * v;
    }
    partial[lid] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = REDUCE_WG / 2; s > 0; s >>= 1) {
        if (lid < s) partial[lid] += partial[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) dslopes[ds_offset + c] = (accumulate ? dslopes[ds_offset + c] : 0.0f) + partial[0];
}
