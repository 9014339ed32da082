// Elementwise kernels: fill, binary ops (same shape, scalar, per-channel broadcast), axpby and unary maps.
// Every buffer is addressed as (buffer, offset in elements) so tensor views need no sub-buffers.

// ---- fill ----
__kernel void fill(__global float *out, const uint out_offset, const uint n, const float value) {
    const uint i = get_global_id(0);
    if (i < n) out[out_offset + i] = value;
}

// ---- binary: out = a OP b ----
#define BINARY_KERNELS(NAME, EXPR)                                                                  \
__kernel void binary_##NAME(__global const float *a, const uint a_offset,                           \
                            __global const float *b, const uint b_offset,                           \
                            __global float *out, const uint out_offset, const uint n) {             \
    const uint i = get_global_id(0);                                                                \
    if (i >= n) return;                                                                             \
    const float x = a[a_offset + i];                                                                \
    const float y = b[b_offset + i];                                                                \
    out[out_offset + i] = EXPR;                                                                     \
}                                                                                                   \
__kernel void scalar_##NAME(__global const float *a, const uint a_offset, const float y,            \
                            __global float *out, const uint out_offset, const uint n) {             \
    const uint i = get_global_id(0);                                                                \
    if (i >= n) return;                                                                             \
    const float x = a[a_offset + i];                                                                \
    out[out_offset + i] = EXPR;                                                                     \
}                                                                                                   \
/* a is [outer, channels, inner] (NCHW: outer = N, inner = H*W); b holds one value per channel. */  \
__kernel void channel_##NAME(__global const float *a, const uint a_offset,                          \
                             __global const float *b, const uint b_offset,                          \
                             __global float *out, const uint out_offset,                            \
                             const uint n, const uint channels, const uint inner) {                 \
    const uint i = get_global_id(0);                                                                \
    if (i >= n) return;                                                                             \
    const float x = a[a_offset + i];                                                                \
    const float y = b[b_offset + (i / inner) % channels];                                           \
    out[out_offset + i] = EXPR;                                                                     \
}

BINARY_KERNELS(add, x + y)
BINARY_KERNELS(sub, x - y)
BINARY_KERNELS(mul, x * y)
BINARY_KERNELS(div, x / y)
BINARY_KERNELS(max, fmax(x, y))
BINARY_KERNELS(min, fmin(x, y))

// ---- y = alpha * x + beta * y ----
__kernel void axpby(const float alpha, __global const float *x, const uint x_offset,
                    const float beta, __global float *y, const uint y_offset, const uint n) {
    const uint i = get_global_id(0);
    if (i < n) y[y_offset + i] = alpha * x[x_offset + i] + beta * y[y_offset + i];
}

// ---- unary: out = f(a) ----
#define UNARY_KERNEL(NAME, EXPR)                                                                    \
__kernel void unary_##NAME(__global const float *a, const uint a_offset,                            \
                           __global float *out, const uint out_offset, const uint n) {              \
    const uint i = get_global_id(0);                                                                \
    if (i >= n) return;                                                                             \
    const float x = a[a_offset + i];                                                                \
    out[out_offset + i] = EXPR;                                                                     \
}

UNARY_KERNEL(neg, -x)
UNARY_KERNEL(abs, fabs(x))
UNARY_KERNEL(square, x * x)
UNARY_KERNEL(sqrt, sqrt(x))
UNARY_KERNEL(rsqrt, rsqrt(x))
UNARY_KERNEL(exp, exp(x))
UNARY_KERNEL(log, log(x))
UNARY_KERNEL(reciprocal, 1.0f / x)
UNARY_KERNEL(relu, fmax(x, 0.0f))
UNARY_KERNEL(sigmoid, 1.0f / (1.0f + exp(-x)))
UNARY_KERNEL(tanh, tanh(x))
UNARY_KERNEL(sign, (float)((x > 0.0f) - (x < 0.0f)))
