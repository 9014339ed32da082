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
// output pixels whose window covers it, one stride phase at a time. The third range dimension is the
// group (and the stride phase for backward data, the slice of the reduction for the filter gradient).
// Tensors are NCHW; weights OIHW. Products accumulate as a * b + c, which compilers contract to FMA
// where the device has one (mad() may trade accuracy for speed).

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
                acc[wm][wn] += a[wm] * b[wn];                                \
    }

#define CLEAR_ACC()                                                          \
    float acc[WPT_M][WPT_N];                                                 \
    for (uint wm = 0; wm < WPT_M; ++wm)                                      \
        for (uint wn = 0; wn < WPT_N; ++wn) acc[wm][wn] = 0.0f;

// The window of a convolution (kernel, stride, padding, dilation) and its output size.
#define CONV_WINDOW const uint kh, const uint kw, const uint sh, const uint sw, const int pad_top, const int pad_left, \
                    const uint dh, const uint dw, const uint out_height, const uint out_width
// The input, its channels per group, the output channels and output channels per group.
#define CONV_GEMM_SHAPE const uint batch, const uint channels, const uint height, const uint width, const uint cg, \
                        const uint out_channels, const uint og

// y = w ⋆ x (+ bias). Range: (column tiles · RN, row tiles · RM, groups); channels and out_channels are
// totals, cg and og per group.
__kernel __attribute__((reqd_work_group_size(RN, RM, 1)))
void conv_gemm_forward(__global const float *x, const uint x_offset,
                       __global const float *weight, const uint w_offset,
                       __global const float *bias, const uint bias_offset, const uint has_bias,
                       __global float *y, const uint y_offset, CONV_GEMM_SHAPE,
                       CONV_WINDOW) {
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
// overwritten. With stride s, input row h is reached only by the kernel rows i with h + pad_top − i·dh a
// multiple of s, and which rows those are depends only on h mod s: the input pixels are split into the
// s_h·s_w phases (h mod s_h, w mod s_w), and each phase reduces over its own taps only, which spares the
// s_h·s_w-fold work of zeros a plain gather would multiply. Range: (phase-pixel tiles · RN, input-channel
// tiles · RM, groups · phases).
__kernel __attribute__((reqd_work_group_size(RN, RM, 1)))
void conv_gemm_backward_data(__global const float *dy, const uint dy_offset,
                             __global const float *weight, const uint w_offset,
                             __global float *dx, const uint dx_offset, CONV_GEMM_SHAPE,
                             CONV_WINDOW) {
    LOCAL_A;
    LOCAL_B;
    LOCAL_K_TABLE;
    __local int k_weight[TILE_K];
    const uint tx = get_local_id(0), ty = get_local_id(1), lid = ty * RN + tx;
    const uint phases = sh * sw;
    const uint g = get_group_id(2) / phases, phase = get_group_id(2) % phases;
    const uint ph = phase / sw, pw = phase % sw;
    // This phase's input pixels: rows ph, ph + sh, ... and columns pw, pw + sw, ...
    const uint phase_height = ph < height ? (height - ph + sh - 1) / sh : 0;
    const uint phase_width = pw < width ? (width - pw + sw - 1) / sw : 0;
    const uint phase_plane = phase_height * phase_width, columns = batch * phase_plane;
    const uint m0 = get_group_id(1) * TILE_M, q0 = get_group_id(0) * TILE_N;
    if (q0 >= columns) return;   // the whole work-group: smaller phases need fewer tiles
    const uint plane = height * width, pixels = out_height * out_width, window = kh * kw;
    // Kernel rows i that reach this phase: ph + pad_top − i·dh ≡ 0 (mod sh); likewise columns.
    uint taps_h = 0, taps_w = 0;
    for (uint i = 0; i < kh; ++i) taps_h += ((int)ph + pad_top - (int)(i * dh)) % (int)sh == 0;
    for (uint j = 0; j < kw; ++j) taps_w += ((int)pw + pad_left - (int)(j * dw)) % (int)sw == 0;
    const uint taps = taps_h * taps_w, reduction = og * taps;

    // Right operand: this work-item's column is input pixel (h'·sh + ph, w'·sw + pw) of image n.
    const uint bq = lid % TILE_N, bk = lid / TILE_N;
    const uint q = q0 + bq;
    const bool q_valid = q < columns;
    const uint n = q_valid ? q / phase_plane : 0, hw = q_valid ? q % phase_plane : 0;
    const int row0 = (int)(hw / phase_width), col0 = (int)(hw % phase_width);
    __global const float *gradient = dy + dy_offset + (n * out_channels + g * og) * pixels;
    // Left operand: wᵀ[c, (o,i,j)] = w[o, c, i, j].
    const uint ak = lid % TILE_K, am = lid / TILE_K;
    __global const float *filters = weight + w_offset + g * og * cg * window;

    CLEAR_ACC();
    for (uint k0 = 0; k0 < reduction; k0 += TILE_K) {
        // Resolve this step's entries (o, a-th reaching row, b-th reaching column) once per work-group:
        // where they start in dy and w, and the output row and column offsets they add (h + pad_top − i·dh
        // is (h' + k_row)·sh exactly).
        if (lid < TILE_K) {
            const uint k = k0 + lid, tap = k % taps;
            uint a = tap / taps_w, b = tap % taps_w, i = 0, j = 0;
            for (uint t = 0; t < kh; ++t)
                if (((int)ph + pad_top - (int)(t * dh)) % (int)sh == 0) { if (a == 0) { i = t; break; } --a; }
            for (uint t = 0; t < kw; ++t)
                if (((int)pw + pad_left - (int)(t * dw)) % (int)sw == 0) { if (b == 0) { j = t; break; } --b; }
            k_offset[lid] = k < reduction ? (int)((k / taps) * pixels) : -1;
            k_weight[lid] = (int)((k / taps) * cg * window + i * kw + j);
            k_row[lid] = ((int)ph + pad_top - (int)(i * dh)) / (int)sh;
            k_col[lid] = ((int)pw + pad_left - (int)(j * dw)) / (int)sw;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint r = 0; r < TILE_M * TILE_K / WG; ++r) {
            const uint m = am + r * (WG / TILE_K);
            As[ak][m] = (m0 + m < cg && k_offset[ak] >= 0) ? filters[k_weight[ak] + (m0 + m) * window] : 0.0f;
        }
        for (uint r = 0; r < TILE_N * TILE_K / WG; ++r) {
            const uint kk = bk + r * (WG / TILE_N);
            const int oh = row0 + k_row[kk], ow = col0 + k_col[kk];
            const bool hit = q_valid && k_offset[kk] >= 0 && oh >= 0 && ow >= 0 && oh < (int)out_height && ow < (int)out_width;
            Bs[kk][bq] = hit ? gradient[k_offset[kk] + oh * (int)out_width + ow] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        MULTIPLY_TILE();
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    // A phase no kernel tap reaches (stride beyond the kernel's span) has an empty sum: zeros.
    for (uint wn = 0; wn < WPT_N; ++wn) {
        const uint column = q0 + tx + wn * RN;
        if (column >= columns) continue;
        const uint image_index = column / phase_plane, within = column % phase_plane;
        const uint pixel = ((within / phase_width) * sh + ph) * width + (within % phase_width) * sw + pw;
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
                               __global float *partials, const uint splits, CONV_GEMM_SHAPE,
                               CONV_WINDOW) {
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
