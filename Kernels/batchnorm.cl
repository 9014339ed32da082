// Batch norm over [N, C, inner] (inner = H·W, or 1 for [N, C]): per-channel statistics by one work-group
// per channel with local-memory trees, and per-element normalisation. Forward and backward.

#ifndef REDUCE_WG
#define REDUCE_WG 64
#endif

// Runs BODY for this work-item's share of the m = N·inner elements i of channel c. Planes of at least a
// work-group are walked image by image, so that no index needs a division; smaller ones (a [N, C] batch
// norm, late small feature maps) as one flattened range.
#define FOR_CHANNEL_ELEMENTS(BODY)                                                                  \
    if (inner >= REDUCE_WG) {                                                                       \
        for (uint image = 0; image < batch; ++image) {                                              \
            const uint first = (image * channels + c) * inner;                                      \
            for (uint p = lid; p < inner; p += REDUCE_WG) {                                         \
                const uint i = first + p;                                                           \
                BODY;                                                                               \
            }                                                                                       \
        }                                                                                           \
    } else {                                                                                        \
        for (uint k = lid; k < m; k += REDUCE_WG) {                                                 \
            const uint i = (k / inner * channels + c) * inner + k % inner;                          \
            BODY;                                                                                   \
        }                                                                                           \
    }

// Sums `value(i)` over the elements of channel c into every work-item's return value.
#define CHANNEL_SUM(RESULT, EXPR)                                                                   \
    {                                                                                               \
        float acc = 0.0f;                                                                           \
        FOR_CHANNEL_ELEMENTS(acc += (EXPR))                                                         \
        partial[lid] = acc;                                                                         \
        barrier(CLK_LOCAL_MEM_FENCE);                                                               \
        for (uint s = REDUCE_WG / 2; s > 0; s >>= 1) {                                              \
            if (lid < s) partial[lid] += partial[lid + s];                                          \
            barrier(CLK_LOCAL_MEM_FENCE);                                                           \
        }                                                                                           \
        RESULT = partial[0];                                                                        \
        barrier(CLK_LOCAL_MEM_FENCE);                                                               \
    }

// The batch statistics of channel c (two passes: mean, then squared deviations) into `mean` and
// `inv_std` = 1/√(var + ε), saved for backward, and the running estimates updated with the unbiased variance.
#define BATCH_STATISTICS()                                                                          \
    float sum, squares;                                                                             \
    CHANNEL_SUM(sum, x[x_offset + i])                                                               \
    const float mean = sum / (float)m;                                                              \
    CHANNEL_SUM(squares, (x[x_offset + i] - mean) * (x[x_offset + i] - mean))                       \
    const float variance = squares / (float)m;                                                      \
    const float inv_std = 1.0f / sqrt(variance + eps);                                              \
    if (lid == 0) {                                                                                 \
        saved_mean[sm_offset + c] = mean;                                                           \
        saved_inv_std[si_offset + c] = inv_std;                                                     \
        const float unbiased = m > 1 ? squares / (float)(m - 1) : variance;                         \
        running_mean[rm_offset + c] = (1.0f - momentum) * running_mean[rm_offset + c] + momentum * mean; \
        running_var[rv_offset + c] = (1.0f - momentum) * running_var[rv_offset + c] + momentum * unbiased; \
    }

__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void batchnorm_statistics(__global const float *x, const uint x_offset,
                          __global float *saved_mean, const uint sm_offset, __global float *saved_inv_std, const uint si_offset,
                          __global float *running_mean, const uint rm_offset, __global float *running_var, const uint rv_offset,
                          const uint batch, const uint channels, const uint inner, const float eps, const float momentum) {
    __local float partial[REDUCE_WG];
    const uint c = get_group_id(0);
    const uint lid = get_local_id(0);
    const uint m = batch * inner;
    BATCH_STATISTICS()
}

// y = γ·(x − μ)·σ⁻¹ + β, with σ⁻¹ given (training) or computed from a variance (inference).
__kernel void batchnorm_apply(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                              __global const float *gamma, const uint g_offset, __global const float *beta, const uint b_offset,
                              __global const float *mean, const uint m_offset, __global const float *scale, const uint s_offset,
                              const uint scale_is_variance, const float eps, const uint n, const uint channels, const uint inner) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const uint c = (i / inner) % channels;
    const float s = scale_is_variance ? 1.0f / sqrt(scale[s_offset + c] + eps) : scale[s_offset + c];
    y[y_offset + i] = gamma[g_offset + c] * (x[x_offset + i] - mean[m_offset + c]) * s + beta[b_offset + c];
}

// The sums of channel c's backward, sum_dy = Σ dy and sum_dy_xhat = Σ dy·x̂ (with mu and s, its saved mean and
// σ⁻¹), and dβ, dγ updated with them (added to when accumulate).
#define BACKWARD_SUMS()                                                                             \
    const float mu = mean[m_offset + c], s = inv_std[s_offset + c];                                 \
    float sum_dy, sum_dy_xhat;                                                                      \
    CHANNEL_SUM(sum_dy, dy[dy_offset + i])                                                          \
    CHANNEL_SUM(sum_dy_xhat, dy[dy_offset + i] * (x[x_offset + i] - mu) * s)                        \
    if (lid == 0) {                                                                                 \
        dgamma[dg_offset + c] = (accumulate ? dgamma[dg_offset + c] : 0.0f) + sum_dy_xhat;          \
        dbeta[db_offset + c] = (accumulate ? dbeta[db_offset + c] : 0.0f) + sum_dy;                 \
    }

// Per channel: sums[c] = Σ dy, sums[C + c] = Σ dy·x̂, for batchnorm_backward_data; dγ and dβ updated.
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void batchnorm_backward_reduce(__global const float *x, const uint x_offset, __global const float *dy, const uint dy_offset,
                               __global const float *mean, const uint m_offset, __global const float *inv_std, const uint s_offset,
                               __global float *sums, __global float *dgamma, const uint dg_offset,
                               __global float *dbeta, const uint db_offset, const uint accumulate,
                               const uint batch, const uint channels, const uint inner) {
    __local float partial[REDUCE_WG];
    const uint c = get_group_id(0);
    const uint lid = get_local_id(0);
    const uint m = batch * inner;
    BACKWARD_SUMS()
    if (lid == 0) {
        sums[c] = sum_dy;
        sums[channels + c] = sum_dy_xhat;
    }
}

// dx = γσ⁻¹/m · (m·dy − Σdy − x̂·Σ(dy·x̂))
__kernel void batchnorm_backward_data(__global const float *x, const uint x_offset, __global const float *dy, const uint dy_offset,
                                      __global const float *gamma, const uint g_offset,
                                      __global const float *mean, const uint m_offset, __global const float *inv_std, const uint s_offset,
                                      __global const float *sums, __global float *dx, const uint dx_offset,
                                      const uint n, const uint batch, const uint channels, const uint inner) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const uint c = (i / inner) % channels;
    const float m = (float)(batch * inner);
    const float s = inv_std[s_offset + c];
    const float xhat = (x[x_offset + i] - mean[m_offset + c]) * s;
    dx[dx_offset + i] = gamma[g_offset + c] * s / m * (m * dy[dy_offset + i] - sums[c] - xhat * sums[channels + c]);
}

// The training forward in one launch, for channels small enough that one work-group normalises a whole
// channel (devices whose work-groups are cores: POCL): statistics as batchnorm_statistics, then
// y = γ·(x − μ)·σ⁻¹ + β over the same elements.
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void batchnorm_train_forward(__global const float *x, const uint x_offset, __global float *y, const uint y_offset,
                             __global const float *gamma, const uint g_offset, __global const float *beta, const uint b_offset,
                             __global float *saved_mean, const uint sm_offset, __global float *saved_inv_std, const uint si_offset,
                             __global float *running_mean, const uint rm_offset, __global float *running_var, const uint rv_offset,
                             const uint batch, const uint channels, const uint inner, const float eps, const float momentum) {
    __local float partial[REDUCE_WG];
    const uint c = get_group_id(0);
    const uint lid = get_local_id(0);
    const uint m = batch * inner;
    BATCH_STATISTICS()
    const float scale = gamma[g_offset + c] * inv_std, shift = beta[b_offset + c] - mean * scale;
    FOR_CHANNEL_ELEMENTS(y[y_offset + i] = x[x_offset + i] * scale + shift)
}

// The training backward in one launch, for the same channels: the sums of batchnorm_backward_reduce (dγ and
// dβ updated, added to when accumulate), then dx as batchnorm_backward_data over the same elements.
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void batchnorm_train_backward(__global const float *x, const uint x_offset, __global const float *dy, const uint dy_offset,
                              __global const float *gamma, const uint g_offset,
                              __global const float *mean, const uint m_offset, __global const float *inv_std, const uint s_offset,
                              __global float *dx, const uint dx_offset, __global float *dgamma, const uint dg_offset,
                              __global float *dbeta, const uint db_offset, const uint accumulate,
                              const uint batch, const uint channels, const uint inner) {
    __local float partial[REDUCE_WG];
    const uint c = get_group_id(0);
    const uint lid = get_local_id(0);
    const uint m = batch * inner;
    BACKWARD_SUMS()
    // dx = γσ⁻¹/m · (m·dy − Σdy − x̂·Σ(dy·x̂))
    const float scale = gamma[g_offset + c] * s / (float)m, count = (float)m;
    FOR_CHANNEL_ELEMENTS(dx[dx_offset + i] = scale * (count * dy[dy_offset + i] - sum_dy - (x[x_offset + i] - mu) * s * sum_dy_xhat))
}
