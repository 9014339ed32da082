// Convolution as an implicit GEMM: the patch matrix of im2col is never written to memory. Each work-group
// computes one output tile, staging a tile of the left operand and a gathered tile of the right operand in
// __local memory, TILE_K rows of the reduction at a time; each work-item keeps a WPT_M x WPT_N block of
// outputs in registers. Geometry is passed at run time so one compiled program serves every layer shape.
//
//   forward          y[o, (n,p)]     = Σ_(c,i,j)  w[o, (c,i,j)] · x̂[(c,i,j), (n,p)]        (+ bias[o])
//   backward data    dx[c, (n,h,w)]  = Σ_(o,i,j)  w[o, (c,i,j)] · dŷ[(o,i,j), (n,h,w)]
//   backward filter  dw[o, (c,i,j)]  = Σ_(n,p)    dy[o, (n,p)] · x̂[(c,i,j), (n,p)]
//
// x̂ gathers input pixels under each window (zero in the padding); dŷ gathers, for an input pixel, the
// output pixels whose window covers it (zero where the stride skips it). The third range dimension is the
// group (and, for the filter gradient, the slice of the reduction). Tensors are NCHW; weights OIHW.

#ifndef TILE_M
#define TILE_M 64   // rows of the output tile (output channels; input channels for backward data)
#endif
#ifndef TILE_N
#define TILE_N 64   // columns of the output tile
#endif
#ifndef TILE_K
#define TILE_K 16   // reduction step staged in local memory
#endif
#ifndef WPT_M
#define WPT_M 4     // outputs per work-item along rows
#endif
#ifndef WPT_N
#define WPT_N 4     // outputs per work-item along columns
#endif

#define RM (TILE_M / WPT_M)   // work-items along rows: local dimension 1
#define RN (TILE_N / WPT_N)   // work-items along columns: local dimension 0
#define WG (RM * RN)

// The loaders below give every work-item a fixed column of each staged tile, so index arithmetic that
// depends only on the column is done once per tile instead of once per element.
#if (TILE_M % WPT_M) || (TILE_N % WPT_N) || (WG % TILE_K) || (WG % TILE_N) || ((TILE_M * TILE_K) % WG) || ((TILE_N * TILE_K) % WG)
#error "conv_gemm.cl: the work-group (TILE_M/WPT_M x TILE_N/WPT_N) must divide both staged tiles and be a multiple of TILE_K and TILE_N"
#endif

// +1: the loaders write down columns of these tiles; the padding keeps those stores off one bank.
#define LOCAL_A __local float As[TILE_K][TILE_M + 1]
#define LOCAL_B __local float Bs[TILE_K][TILE_N + 1]
// Per reduction step of the gathering kernels: where entry k starts in the gathered tensor (-1 past the
// end) and its kernel row and column offsets.
#define LOCAL_K_TABLE __local int k_offset[TILE_K], k_row[TILE_K], k_col[TILE_K]

// acc += As[k][rows of this work-item] ⊗ Bs[k][columns of this work-item] over the staged tile. Rows and
// columns are strided by RM and RN so that neighbouring work-items read neighbouring local words.
#define MULTIPLY_TILE()                                                      \
    for (uint kk = 0; kk < TILE_K; ++kk) {                                   \
        float a[WPT_M], b[WPT_N];                                            \
        for (uint wm = 0; wm < WPT_M; ++wm) a[wm] = As[kk][ty + wm * RM];    \
        for (uint wn = 0; wn < WPT_N; ++wn) b[wn] = Bs[kk][tx + wn * RN];    \
        for (uint wm = 0; wm < WPT_M; ++wm)                                  \
            for (uint wn = 0; wn < WPT_N; ++wn)                              \
                acc[wm][wn] = mad(a[wm], b[wn], acc[wm][wn]);                \
    }

#define CLEAR_ACC()                                                          \
    float acc[WPT_M][WPT_N];                                                 \
    for (uint wm = 0; wm < WPT_M; ++wm)                                      \
        for (uint wn = 0; wn < WPT_N; ++wn) acc[wm][wn] = 0.0f;

// y = w ⋆ x (+ bias). Range: (column tiles · RN, row tiles · RM, groups); channels and out_channels are
// totals, cg and og per group.
__kernel __attribute__((reqd_work_group_size(RN, RM, 1)))
void conv_gemm_forward(__global const float *x, const uint x_offset,
                       __global const float *weight, const uint w_offset,
                       __global const float *bias, const uint bias_offset, const uint has_bias,
                       __global float *y, const uint y_offset, const uint batch,
                       const uint channels, const uint height, const uint width, const uint cg,
                       const uint out_channels, const uint og,
                       const uint kh, const uint kw, const uint sh, const uint sw, const int pad_top, const int pad_left,
                       const uint dh, const uint dw, const uint out_height, const uint out_width) {
    LOCAL_A;
    LOCAL_B;
    LOCAL_K_TABLE;
    const uint tx = get_local_id(0), ty = get_local_id(1), lid = ty * RN + tx;
    const uint g = get_group_id(2);
    const uint m0 = get_group_id(1) * TILE_M, q0 = get_group_id(0) * TILE_N;
    const uint pixels = out_height * out_width, columns = batch * pixels;
    const uint window = kh * kw, patch = cg * window;

    // Right operand: this work-item's column of x̂ is output pixel q of image n.
    const uint bq = lid % TILE_N, bk = lid / TILE_N;
    const uint q = q0 + bq;
    const bool q_valid = q < columns;
    const uint n = q_valid ? q / pixels : 0, p = q_valid ? q % pixels : 0;
    const int ih0 = (int)((p / out_width) * sh) - pad_top, iw0 = (int)((p % out_width) * sw) - pad_left;
    __global const float *image = x + x_offset + (n * channels + g * cg) * height * width;
    // Left operand: rows of w, read along k so that neighbouring work-items read neighbouring words.
    const uint ak = lid % TILE_K, am = lid / TILE_K;
    __global const float *filters = weight + w_offset + g * og * patch;

    CLEAR_ACC();
    for (uint k0 = 0; k0 < patch; k0 += TILE_K) {
        // Resolve this step's patch entries (c, i, j) once per work-group rather than once per element.
        if (lid < TILE_K) {
            const uint k = k0 + lid, ij = k % window;
            k_offset[lid] = k < patch ? (int)((k / window) * height * width) : -1;
            k_row[lid] = (int)((ij / kw) * dh);
            k_col[lid] = (int)((ij % kw) * dw);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint r = 0; r < TILE_M * TILE_K / WG; ++r) {
            const uint m = am + r * (WG / TILE_K), k = k0 + ak;
            As[ak][m] = (m0 + m < og && k < patch) ? filters[(m0 + m) * patch + k] : 0.0f;
        }
        for (uint r = 0; r < TILE_N * TILE_K / WG; ++r) {
            const uint kk = bk + r * (WG / TILE_N);
            const int ih = ih0 + k_row[kk], iw = iw0 + k_col[kk];
            float value = 0.0f;
            if (q_valid && k_offset[kk] >= 0 && ih >= 0 && ih < (int)height && iw >= 0 && iw < (int)width)
                value = image[k_offset[kk] + ih * (int)width + iw];
            Bs[kk][bq] = value;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        MULTIPLY_TILE();
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (uint wn = 0; wn < WPT_N; ++wn) {
        const uint column = q0 + tx + wn * RN;
        if (column >= columns) continue;
        const uint image_index = column / pixels, pixel = column % pixels;
        for (uint wm = 0; wm < WPT_M; ++wm) {
            const uint m = m0 + ty + wm * RM;
            if (m >= og) continue;
            const uint o = g * og + m;
            y[y_offset + (image_index * out_channels + o) * pixels + pixel] = acc[wm][wn] + (has_bias ? bias[bias_offset + o] : 0.0f);
        }
    }
}

// dx = wᵀ ⋆ dy as a gather (each input pixel sums what its windows received), so no atomics and dx is
// overwritten. Range: (input-pixel tiles · RN, input-channel tiles · RM, groups).
__kernel __attribute__((reqd_work_group_size(RN, RM, 1)))
void conv_gemm_backward_data(__global const float *dy, const uint dy_offset,
                             __global const float *weight, const uint w_offset,
                             __global float *dx, const uint dx_offset, const uint batch,
                             const uint channels, const uint height, const uint width, const uint cg,
                             const uint out_channels, const uint og,
                             const uint kh, const uint kw, const uint sh, const uint sw, const int pad_top, const int pad_left,
                             const uint dh, const uint dw, const uint out_height, const uint out_width) {
    LOCAL_A;
    LOCAL_B;
    LOCAL_K_TABLE;
    const uint tx = get_local_id(0), ty = get_local_id(1), lid = ty * RN + tx;
    const uint g = get_group_id(2);
    const uint m0 = get_group_id(1) * TILE_M, q0 = get_group_id(0) * TILE_N;
    const uint plane = height * width, columns = batch * plane, pixels = out_height * out_width;
    const uint window = kh * kw, reduction = og * window;

    // Right operand: this work-item's column is input pixel (h, w) of image n.
    const uint bq = lid % TILE_N, bk = lid / TILE_N;
    const uint q = q0 + bq;
    const bool q_valid = q < columns;
    const uint n = q_valid ? q / plane : 0, hw = q_valid ? q % plane : 0;
    const int top0 = (int)(hw / width) + pad_top, left0 = (int)(hw % width) + pad_left;
    __global const float *gradient = dy + dy_offset + (n * out_channels + g * og) * pixels;
    // Left operand: wᵀ[c, (o,i,j)] = w[o, c, i, j], read along (i, j).
    const uint ak = lid % TILE_K, am = lid / TILE_K;
    __global const float *filters = weight + w_offset + g * og * cg * window;
    const bool unit_stride = sh == 1 && sw == 1;

    CLEAR_ACC();
    for (uint k0 = 0; k0 < reduction; k0 += TILE_K) {
        // Resolve this step's entries (o, i, j) once per work-group rather than once per element.
        if (lid < TILE_K) {
            const uint k = k0 + lid, ij = k % window;
            k_offset[lid] = k < reduction ? (int)((k / window) * pixels) : -1;
            k_row[lid] = (int)((ij / kw) * dh);
            k_col[lid] = (int)((ij % kw) * dw);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint r = 0; r < TILE_M * TILE_K / WG; ++r) {
            const uint m = am + r * (WG / TILE_K), k = k0 + ak;
            As[ak][m] = (m0 + m < cg && k < reduction) ? filters[((k / window) * cg + m0 + m) * window + k % window] : 0.0f;
        }
        for (uint r = 0; r < TILE_N * TILE_K / WG; ++r) {
            const uint kk = bk + r * (WG / TILE_N);
            // Output row oh reads input row h through kernel row i when oh·sh + i·dh = h + pad_top.
            int oh = top0 - k_row[kk], ow = left0 - k_col[kk];
            bool hit = q_valid && k_offset[kk] >= 0 && oh >= 0 && ow >= 0;
            if (unit_stride) {
                hit = hit && oh < (int)out_height && ow < (int)out_width;
            } else if (hit) {
                hit = oh % (int)sh == 0 && ow % (int)sw == 0;
                oh /= (int)sh;
                ow /= (int)sw;
                hit = hit && oh < (int)out_height && ow < (int)out_width;
            }
            Bs[kk][bq] = hit ? gradient[k_offset[kk] + oh * (int)out_width + ow] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        MULTIPLY_TILE();
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (uint wn = 0; wn < WPT_N; ++wn) {
        const uint column = q0 + tx + wn * RN;
        if (column >= columns) continue;
        const uint image_index = column / plane, pixel = column % plane;
        for (uint wm = 0; wm < WPT_M; ++wm) {
            const uint m = m0 + ty + wm * RM;
            if (m < cg) dx[dx_offset + (image_index * channels + g * cg + m) * plane + pixel] = acc[wm][wn];
        }
    }
}

// dw = dy · x̂ᵀ, reducing over every (image, output pixel). The reduction is cut into `splits` slices so
// that small weight tensors still fill the device: with one slice the result goes straight to dweight
// (added to it when accumulate != 0); with more, slice s writes partials[s] and conv_gemm_sum_splits adds
// them up. Range: (patch tiles · RN, output-channel tiles · RM, groups · splits).
__kernel __attribute__((reqd_work_group_size(RN, RM, 1)))
void conv_gemm_backward_filter(__global const float *x, const uint x_offset,
                               __global const float *dy, const uint dy_offset,
                               __global float *dweight, const uint dw_offset, const uint accumulate,
                               __global float *partials, const uint splits, const uint batch,
                               const uint channels, const uint height, const uint width, const uint cg,
                               const uint out_channels, const uint og,
                               const uint kh, const uint kw, const uint sh, const uint sw, const int pad_top, const int pad_left,
                               const uint dh, const uint dw, const uint out_height, const uint out_width) {
    LOCAL_A;
    LOCAL_B;
    const uint tx = get_local_id(0), ty = get_local_id(1), lid = ty * RN + tx;
    const uint g = get_group_id(2) / splits, slice = get_group_id(2) % splits;
    const uint m0 = get_group_id(1) * TILE_M, k0 = get_group_id(0) * TILE_N;
    const uint pixels = out_height * out_width, columns = batch * pixels, plane = height * width;
    const uint window = kh * kw, patch = cg * window;
    // Slices start on TILE_K boundaries.
    const uint span = ((columns + splits - 1) / splits + TILE_K - 1) / TILE_K * TILE_K;
    const uint begin = slice * span, end = min(columns, begin + span);

    // Both operands are read along the reduction (output pixels are contiguous in dy and nearly so in x),
    // so every work-item owns one reduction index aq of each staged tile.
    const uint aq = lid % TILE_K, row = lid / TILE_K;
    // The patch entries this work-item loads never change: resolve them to input offsets once.
    int entry_offset[TILE_N * TILE_K / WG], entry_top[TILE_N * TILE_K / WG], entry_left[TILE_N * TILE_K / WG];
    for (uint r = 0; r < TILE_N * TILE_K / WG; ++r) {
        const uint k = k0 + row + r * (WG / TILE_K);
        const uint c = k / window, ij = k % window;
        entry_offset[r] = k < patch ? (int)((g * cg + c) * plane) : -1;
        entry_top[r] = (int)((ij / kw) * dh) - pad_top;
        entry_left[r] = (int)((ij % kw) * dw) - pad_left;
    }

    CLEAR_ACC();
    for (uint q0 = begin; q0 < end; q0 += TILE_K) {
        const uint q = q0 + aq;
        const bool q_valid = q < end;
        const uint n = q_valid ? q / pixels : 0, p = q_valid ? q % pixels : 0;
        const int oh = (int)((p / out_width) * sh), ow = (int)((p % out_width) * sw);
        for (uint r = 0; r < TILE_M * TILE_K / WG; ++r) {
            const uint m = row + r * (WG / TILE_K);
            As[aq][m] = (q_valid && m0 + m < og) ? dy[dy_offset + (n * out_channels + g * og + m0 + m) * pixels + p] : 0.0f;
        }
        for (uint r = 0; r < TILE_N * TILE_K / WG; ++r) {
            const int ih = oh + entry_top[r], iw = ow + entry_left[r];
            float value = 0.0f;
            if (q_valid && entry_offset[r] >= 0 && ih >= 0 && ih < (int)height && iw >= 0 && iw < (int)width)
                value = x[x_offset + n * channels * plane + (uint)entry_offset[r] + ih * width + iw];
            Bs[aq][row + r * (WG / TILE_K)] = value;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        MULTIPLY_TILE();
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    const uint count = out_channels * patch;
    for (uint wm = 0; wm < WPT_M; ++wm) {
        const uint m = m0 + ty + wm * RM;
        if (m >= og) continue;
        for (uint wn = 0; wn < WPT_N; ++wn) {
            const uint k = k0 + tx + wn * RN;
            if (k >= patch) continue;
            const uint at = (g * og + m) * patch + k;
            if (splits > 1) {
                partials[slice * count + at] = acc[wm][wn];
            } else {
                dweight[dw_offset + at] = (accumulate ? dweight[dw_offset + at] : 0.0f) + acc[wm][wn];
            }
        }
    }
}

// dweight (+)= Σ_s partials[s], for the sliced filter gradient.
__kernel void conv_gemm_sum_splits(__global const float *partials, __global float *dweight, const uint dw_offset,
                                   const uint count, const uint splits, const uint accumulate) {
    const uint index = get_global_id(0);
    if (index >= count) return;
    float sum = accumulate ? dweight[dw_offset + index] : 0.0f;
    for (uint s = 0; s < splits; ++s) sum += partials[s * count + index];
    dweight[dw_offset + index] = sum;
}
