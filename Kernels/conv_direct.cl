// Direct convolution for layers with few channels per group (LeNet's 1 -> 6 and 6 -> 16, a ResNet stem's
// 3 -> 64), where a GEMM's reduction is too short to pay for its tiles. Every size of the layer except the
// batch is compiled in (-D options, one program per layer shape), so the loops over the window unroll,
// index arithmetic folds into constants, and each work-item keeps a block of outputs in registers.
//
//   forward          y[n, o, p]      = Σ_(c,i,j)  w[o, c, i, j] · x[n, c, p·s + (i,j)·d − pad]   (+ bias[o])
//   backward data    dx[n, c, h, w]  = Σ_(o,i,j)  w[o, c, i, j] · dy[n, o, (h,w) + pad − (i,j)·d) / s]
//   backward filter  dw[o, c, i, j]  = Σ_(n,p)    dy[n, o, p] · x[n, c, p·s + (i,j)·d − pad]
//
// The sums over c and o stay inside one group. Tensors are NCHW; weights OIHW.

#ifndef REDUCE_WG
#define REDUCE_WG 64
#endif
#if !defined(C_IN) || !defined(C_OUT) || !defined(GROUPS) || !defined(IN_H) || !defined(IN_W) || !defined(OUT_H) || \
    !defined(OUT_W) || !defined(KH) || !defined(KW) || !defined(SH) || !defined(SW) || !defined(PT) || !defined(PL) ||  \
    !defined(DH) || !defined(DW) || !defined(OUT_BLOCK) || !defined(IN_BLOCK) || !defined(XP_H) || !defined(XP_W) ||   \
    !defined(VEC) || !defined(PCOLS)
#error "conv_direct.cl: the layer's shape is compiled in; every size must be defined"
#endif

#define CG (C_IN / GROUPS)            // input channels per group
#define OG (C_OUT / GROUPS)           // output channels per group
#define IN_PIXELS (IN_H * IN_W)
#define OUT_PIXELS (OUT_H * OUT_W)
#define TAPS (KH * KW)
#define OUT_BLOCKS (C_OUT / OUT_BLOCK)  // OUT_BLOCK divides OG
#define IN_BLOCKS (C_IN / IN_BLOCK)     // IN_BLOCK divides CG
#ifndef PIXEL_BLOCK
#define PIXEL_BLOCK 4                   // output pixels of a row per forward work-item
#endif
#if PIXEL_BLOCK % 2
#error "conv_direct.cl: PIXEL_BLOCK must be even (the pooled forward pairs its columns)"
#endif
#define ROW_BLOCKS ((OUT_W + PIXEL_BLOCK - 1) / PIXEL_BLOCK)
#define IN_ROW_BLOCKS ((IN_W + PIXEL_BLOCK - 1) / PIXEL_BLOCK)
#define VECTOR_BLOCKS ((OUT_W + 3) / 4)     // vectors of four output pixels per row (filter gradient)
#define POOLED_H (OUT_H / 2)                // after 2x2 max pooling with stride 2
#define POOLED_W (OUT_W / 2)
#define POOLED_ROW_BLOCKS ((POOLED_W + PIXEL_BLOCK / 2 - 1) / (PIXEL_BLOCK / 2))

// acc[b][q] += Σ_(c,i,j) w[o0 + b, c, i, j] · x[n, c0 + c, oh·SH + i·DH − PT, (ow0 + q)·SW + j·DW − PL] for
// PIXEL_BLOCK neighbouring outputs of row oh: each input value loaded serves OUT_BLOCK filters and each
// weight PIXEL_BLOCK pixels. `image` is x at (n, c0), `filters` the weights of output o0.
inline void accumulate_row(__global const float *image, __global const float *filters, const uint oh, const uint ow0,
                           float acc[OUT_BLOCK][PIXEL_BLOCK]) {
    for (uint c = 0; c < CG; ++c) {
        for (uint i = 0; i < KH; ++i) {
            const int ih = (int)(oh * SH + i * DH) - PT;
            if (ih < 0 || ih >= IN_H) continue;
            __global const float *row = image + c * IN_PIXELS + ih * IN_W;
            for (uint j = 0; j < KW; ++j) {
                float v[PIXEL_BLOCK];
                for (uint q = 0; q < PIXEL_BLOCK; ++q) {
                    const int iw = (int)((ow0 + q) * SW + j * DW) - PL;
                    const bool inside = iw >= 0 && iw < IN_W;
                    // The index is clamped so that no lane reads outside the row even where the load is hoisted.
                    v[q] = inside ? row[inside ? iw : 0] : 0.0f;
                }
                for (uint b = 0; b < OUT_BLOCK; ++b) {
                    const float f = filters[(b * CG + c) * TAPS + i * KW + j];
                    for (uint q = 0; q < PIXEL_BLOCK; ++q) acc[b][q] += v[q] * f;
                }
            }
        }
    }
}

// acc[b][q] = bias[o0 + b], or 0 without a bias.
inline void start_with_bias(float acc[OUT_BLOCK][PIXEL_BLOCK], __global const float *bias, const uint bias_offset,
                            const uint has_bias, const uint o0) {
    for (uint b = 0; b < OUT_BLOCK; ++b)
        for (uint q = 0; q < PIXEL_BLOCK; ++q) acc[b][q] = has_bias ? bias[bias_offset + o0 + b] : 0.0f;
}

// One work-item per PIXEL_BLOCK neighbouring output pixels of a row and a block of OUT_BLOCK output
// channels. With relu != 0 the result goes through max(·, 0) (a convolution followed by ReLU, or batch
// norm folded in).
__kernel void direct_forward(__global const float *x, const uint x_offset,
                             __global const float *weight, const uint w_offset,
                             __global const float *bias, const uint bias_offset, const uint has_bias,
                             __global float *y, const uint y_offset, const uint batch, const uint relu) {
    const uint index = get_global_id(0);
    if (index >= batch * OUT_BLOCKS * OUT_H * ROW_BLOCKS) return;
    const uint ow0 = (index % ROW_BLOCKS) * PIXEL_BLOCK;
    const uint oh = (index / ROW_BLOCKS) % OUT_H;
    const uint block = (index / (ROW_BLOCKS * OUT_H)) % OUT_BLOCKS;
    const uint n = index / (ROW_BLOCKS * OUT_H * OUT_BLOCKS);
    const uint o0 = block * OUT_BLOCK;
    float acc[OUT_BLOCK][PIXEL_BLOCK];
    start_with_bias(acc, bias, bias_offset, has_bias, o0);
    accumulate_row(x + x_offset + (n * C_IN + (o0 / OG) * CG) * IN_PIXELS, weight + w_offset + o0 * CG * TAPS, oh, ow0, acc);
    __global float *out = y + y_offset + (n * C_OUT + o0) * OUT_PIXELS + oh * OUT_W + ow0;
    for (uint b = 0; b < OUT_BLOCK; ++b)
        for (uint q = 0; q < PIXEL_BLOCK; ++q)
            if (ow0 + q < OUT_W) out[b * OUT_PIXELS + q] = relu ? fmax(acc[b][q], 0.0f) : acc[b][q];
}

// The forward pass followed by 2x2 max pooling with stride 2 (floor: a last odd row or column is dropped),
// for inference: one work-item per PIXEL_BLOCK / 2 neighbouring pooled outputs of a row and a block of
// OUT_BLOCK channels computes the two convolution rows under them and writes only their maxima, so the
// convolution's output never reaches memory. relu as in direct_forward (max pooling commutes with it).
__kernel void direct_forward_max_pool(__global const float *x, const uint x_offset,
                                      __global const float *weight, const uint w_offset,
                                      __global const float *bias, const uint bias_offset, const uint has_bias,
                                      __global float *y, const uint y_offset, const uint batch, const uint relu) {
    const uint index = get_global_id(0);
    if (index >= batch * OUT_BLOCKS * POOLED_H * POOLED_ROW_BLOCKS) return;
    const uint ow0 = (index % POOLED_ROW_BLOCKS) * PIXEL_BLOCK;
    const uint ph = (index / POOLED_ROW_BLOCKS) % POOLED_H;
    const uint block = (index / (POOLED_ROW_BLOCKS * POOLED_H)) % OUT_BLOCKS;
    const uint n = index / (POOLED_ROW_BLOCKS * POOLED_H * OUT_BLOCKS);
    const uint o0 = block * OUT_BLOCK;
    __global const float *image = x + x_offset + (n * C_IN + (o0 / OG) * CG) * IN_PIXELS;
    __global const float *filters = weight + w_offset + o0 * CG * TAPS;
    float top[OUT_BLOCK][PIXEL_BLOCK], bottom[OUT_BLOCK][PIXEL_BLOCK];
    start_with_bias(top, bias, bias_offset, has_bias, o0);
    start_with_bias(bottom, bias, bias_offset, has_bias, o0);
    accumulate_row(image, filters, 2 * ph, ow0, top);
    accumulate_row(image, filters, 2 * ph + 1, ow0, bottom);
    __global float *out = y + y_offset + (n * C_OUT + o0) * POOLED_H * POOLED_W + ph * POOLED_W + ow0 / 2;
    for (uint b = 0; b < OUT_BLOCK; ++b)
        for (uint q = 0; q < PIXEL_BLOCK / 2; ++q) {
            if (ow0 / 2 + q >= POOLED_W) continue;
            const float best = fmax(fmax(top[b][2 * q], top[b][2 * q + 1]), fmax(bottom[b][2 * q], bottom[b][2 * q + 1]));
            out[b * POOLED_H * POOLED_W + q] = relu ? fmax(best, 0.0f) : best;
        }
}

// The forward pass with output channels in vector lanes, for groups of 8 or more output channels (LeNet's
// 6 -> 16, a ResNet stem's 3 -> 64): a work-item holds a block of 2 rows x 2·PCOLS columns of outputs, each
// a vector of VEC channels, so every input value loaded is one broadcast multiply-add into a full vector,
// and the CPU drivers' compilers turn it into one vector instruction. The work-group first copies its
// VEC channels' weights into local memory transposed, tap-major, so that a tap's VEC weights are one load.
#define CAT(a, b) a##b
#define VECTOR_OF(a, b) CAT(a, b)
#define floatV VECTOR_OF(float, VEC)
#define VECTOR_WG REDUCE_WG
#define CHANNEL_VECTORS ((OG + VEC - 1) / VEC)   // vectors of VEC channels per group (the last one padded)
#define BLOCK_COLS (2 * PCOLS)
#define WINDOW_WEIGHTS (CG * TAPS)

// The channel vector a work-item computes, from dimension 1 of the range: its group, its first output
// channel inside the group and overall.
typedef struct {
    uint group, group_o0, o0;
} ChannelVector;

// The work-item's channel vector, with its weights copied into `taps`, transposed by the work-group:
// taps[c·TAPS + t] = (w[o0 + l, c, t] for the lanes l of the vector; 0 past the group's end).
inline ChannelVector channel_vector(__global const float *weight, __local floatV *taps) {
    const uint vector = get_global_id(1);
    ChannelVector v;
    v.group = vector / CHANNEL_VECTORS;
    v.group_o0 = vector % CHANNEL_VECTORS * VEC;
    v.o0 = v.group * OG + v.group_o0;
    __local float *flat = (__local float *)taps;
    for (uint e = get_local_id(0); e < WINDOW_WEIGHTS * VEC; e += VECTOR_WG) {
        const uint lane = e % VEC, k = e / VEC;
        flat[e] = v.group_o0 + lane < OG ? weight[(v.o0 + lane) * WINDOW_WEIGHTS + k] : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    return v;
}

// acc[q][col] += Σ_(c,i,j) taps[c, i, j] · x[c, (oh0 + q)·SH + i·DH − PT, (ow0 + col)·SW + j·DW − PL];
// `check` tests every column against the row's ends (false where the whole block lies inside).
inline void accumulate_vector_block(__global const float *image, __local const floatV *taps, const uint oh0,
                                    const uint ow0, floatV acc[2][BLOCK_COLS], const bool check) {
    for (uint c = 0; c < CG; ++c)
        for (uint i = 0; i < KH; ++i)
            for (uint j = 0; j < KW; ++j) {
                const floatV w = taps[(c * KH + i) * KW + j];
                for (uint q = 0; q < 2; ++q) {
                    const int ih = (int)((oh0 + q) * SH + i * DH) - PT;
                    if (ih < 0 || ih >= IN_H) continue;
                    __global const float *row = image + c * IN_PIXELS + ih * IN_W;
                    for (uint col = 0; col < BLOCK_COLS; ++col) {
                        const int iw = (int)((ow0 + col) * SW + j * DW) - PL;
                        const bool inside = !check || (iw >= 0 && iw < IN_W);
                        acc[q][col] += (inside ? row[inside ? iw : 0] : 0.0f) * w;
                    }
                }
            }
}

// The block's sums started at the bias; the two versions of the loop are each unrolled whole, so the
// version without column tests runs wherever the block's windows stay inside the rows.
inline void vector_block(__global const float *image, __local const floatV *taps, __global const float *bias,
                         const uint has_bias, const ChannelVector v, const uint oh0, const uint ow0,
                         floatV acc[2][BLOCK_COLS]) {
    floatV start = 0.0f;
    if (has_bias)
        for (uint l = 0; l < VEC; ++l)
            if (v.group_o0 + l < OG) ((float *)&start)[l] = bias[v.o0 + l];
    for (uint q = 0; q < 2; ++q)
        for (uint col = 0; col < BLOCK_COLS; ++col) acc[q][col] = start;
    const bool inside = ow0 * SW >= PL && (ow0 + BLOCK_COLS - 1) * SW + (KW - 1) * DW < IN_W + PL;
    if (inside) accumulate_vector_block(image, taps, oh0, ow0, acc, false);
    else accumulate_vector_block(image, taps, oh0, ow0, acc, true);
}

// Dimension 1 of the range: (group, channel vector); dimension 0: (image, pair of rows, block of columns).
__kernel __attribute__((reqd_work_group_size(VECTOR_WG, 1, 1)))
void direct_vector_forward(__global const float *x, const uint x_offset,
                           __global const float *weight, const uint w_offset,
                           __global const float *bias, const uint bias_offset, const uint has_bias,
                           __global float *y, const uint y_offset, const uint batch, const uint relu) {
    __local floatV taps[WINDOW_WEIGHTS];
    const ChannelVector v = channel_vector(weight + w_offset, taps);
    const uint column_blocks = (OUT_W + BLOCK_COLS - 1) / BLOCK_COLS, row_pairs = (OUT_H + 1) / 2;
    const uint index = get_global_id(0);
    if (index >= batch * row_pairs * column_blocks) return;
    const uint ow0 = (index % column_blocks) * BLOCK_COLS;
    const uint oh0 = (index / column_blocks) % row_pairs * 2;
    const uint n = index / (column_blocks * row_pairs);
    floatV acc[2][BLOCK_COLS];
    vector_block(x + x_offset + (n * C_IN + v.group * CG) * IN_PIXELS, taps, bias + bias_offset, has_bias, v, oh0, ow0, acc);
    __global float *out = y + y_offset + (n * C_OUT + v.o0) * OUT_PIXELS + oh0 * OUT_W + ow0;
    for (uint q = 0; q < 2; ++q)
        for (uint col = 0; col < BLOCK_COLS; ++col) {
            if (oh0 + q >= OUT_H || ow0 + col >= OUT_W) continue;
            const floatV sum = relu ? fmax(acc[q][col], 0.0f) : acc[q][col];
            for (uint l = 0; l < VEC; ++l)
                if (v.group_o0 + l < OG) out[l * OUT_PIXELS + q * OUT_W + col] = ((const float *)&sum)[l];
        }
}

// direct_vector_forward followed by 2x2 max pooling with stride 2 (floor), for inference: a block is
// PCOLS pooled outputs of one pooled row, and only their maxima are written.
__kernel __attribute__((reqd_work_group_size(VECTOR_WG, 1, 1)))
void direct_vector_forward_max_pool(__global const float *x, const uint x_offset,
                                    __global const float *weight, const uint w_offset,
                                    __global const float *bias, const uint bias_offset, const uint has_bias,
                                    __global float *y, const uint y_offset, const uint batch, const uint relu) {
    __local floatV taps[WINDOW_WEIGHTS];
    const ChannelVector v = channel_vector(weight + w_offset, taps);
    const uint column_blocks = (POOLED_W + PCOLS - 1) / PCOLS;
    const uint index = get_global_id(0);
    if (index >= batch * POOLED_H * column_blocks) return;
    const uint pw0 = (index % column_blocks) * PCOLS;
    const uint ph = (index / column_blocks) % POOLED_H;
    const uint n = index / (column_blocks * POOLED_H);
    floatV acc[2][BLOCK_COLS];
    vector_block(x + x_offset + (n * C_IN + v.group * CG) * IN_PIXELS, taps, bias + bias_offset, has_bias, v, 2 * ph, 2 * pw0, acc);
    __global float *out = y + y_offset + (n * C_OUT + v.o0) * POOLED_H * POOLED_W + ph * POOLED_W + pw0;
    for (uint p = 0; p < PCOLS; ++p) {
        if (pw0 + p >= POOLED_W) continue;
        floatV best = fmax(fmax(acc[0][2 * p], acc[0][2 * p + 1]), fmax(acc[1][2 * p], acc[1][2 * p + 1]));
        if (relu) best = fmax(best, 0.0f);
        for (uint l = 0; l < VEC; ++l)
            if (v.group_o0 + l < OG) out[l * POOLED_H * POOLED_W + p] = ((const float *)&best)[l];
    }
}

// A gather: one work-item per PIXEL_BLOCK neighbouring input pixels of a row and a block of IN_BLOCK input
// channels sums over the output pixels whose window covers each. Overwrites dx.
__kernel void direct_backward_data(__global const float *dy, const uint dy_offset,
                                   __global const float *weight, const uint w_offset,
                                   __global float *dx, const uint dx_offset, const uint batch) {
    const uint index = get_global_id(0);
    if (index >= batch * IN_BLOCKS * IN_H * IN_ROW_BLOCKS) return;
    const uint w0 = (index % IN_ROW_BLOCKS) * PIXEL_BLOCK;
    const uint h = (index / IN_ROW_BLOCKS) % IN_H;
    const uint block = (index / (IN_ROW_BLOCKS * IN_H)) % IN_BLOCKS;
    const uint n = index / (IN_ROW_BLOCKS * IN_H * IN_BLOCKS);
    const uint c = block * IN_BLOCK;       // first input channel of the block
    const uint g = c / CG, cg = c % CG;    // its group and its index inside the group
    float acc[IN_BLOCK][PIXEL_BLOCK];
    for (uint b = 0; b < IN_BLOCK; ++b)
        for (uint q = 0; q < PIXEL_BLOCK; ++q) acc[b][q] = 0.0f;
    __global const float *gradient = dy + dy_offset + (n * C_OUT + g * OG) * OUT_PIXELS;
    for (uint i = 0; i < KH; ++i) {
        const int top = (int)h + PT - (int)(i * DH);   // = oh·SH when row i of the window lands on h
        if (top < 0 || top % SH != 0 || top / SH >= OUT_H) continue;
        __global const float *row = gradient + (top / SH) * OUT_W;
        for (uint j = 0; j < KW; ++j) {
            int column[PIXEL_BLOCK];
            for (uint q = 0; q < PIXEL_BLOCK; ++q) {
                const int left = (int)(w0 + q) + PL - (int)(j * DW);
                column[q] = left >= 0 && left % SW == 0 && left / SW < OUT_W && w0 + q < IN_W ? left / SW : -1;
            }
            for (uint o = 0; o < OG; ++o) {
                float d[PIXEL_BLOCK];
                for (uint q = 0; q < PIXEL_BLOCK; ++q)
                    d[q] = column[q] >= 0 ? row[o * OUT_PIXELS + (column[q] >= 0 ? column[q] : 0)] : 0.0f;
                __global const float *taps = weight + w_offset + ((g * OG + o) * CG + cg) * TAPS + i * KW + j;
                for (uint b = 0; b < IN_BLOCK; ++b) {
                    const float f = taps[b * TAPS];
                    for (uint q = 0; q < PIXEL_BLOCK; ++q) acc[b][q] += d[q] * f;
                }
            }
        }
    }
    __global float *out = dx + dx_offset + (n * C_IN + c) * IN_PIXELS + h * IN_W + w0;
    for (uint b = 0; b < IN_BLOCK; ++b)
        for (uint q = 0; q < PIXEL_BLOCK; ++q)
            if (w0 + q < IN_W) out[b * IN_PIXELS + q] = acc[b][q];
}

// The input zero-padded into a workspace of XP_H x XP_W per plane, wide enough for whole vectors of four
// output pixels: the filter gradient then reads every window without a bounds test.
#define XP_PIXELS (XP_H * XP_W)
#if SW == 1
#define LOAD4(p) vload4(0, p)
#elif SW == 2
#define LOAD4(p) vload8(0, p).even
#else
#define LOAD4(p) (float4)((p)[0], (p)[SW], (p)[2 * SW], (p)[3 * SW])
#endif

__kernel void direct_pad_input(__global const float *x, const uint x_offset, __global float *xp, const uint batch) {
    const uint index = get_global_id(0);
    if (index >= batch * C_IN * XP_PIXELS) return;
    const uint col = index % XP_W, row = (index / XP_W) % XP_H, plane = index / XP_PIXELS;
    const int h = (int)row - PT, w = (int)col - PL;
    const bool inside = h >= 0 && h < IN_H && w >= 0 && w < IN_W;
    xp[index] = inside ? x[x_offset + plane * IN_PIXELS + (inside ? h * IN_W + w : 0)] : 0.0f;
}

// One work-group per (output channel, input channel of its group): each work-item sums every tap of the
// window over a strided share of the batch's rows of four output pixels, as vectors, then the group adds
// the shares in local memory. Reads the padded input. With accumulate != 0 the result is added to dw.
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void direct_backward_filter(__global const float *xp, __global const float *dy, const uint dy_offset,
                            __global float *dweight, const uint dw_offset, const uint batch, const uint accumulate) {
    __local float partial[TAPS][REDUCE_WG];
    const uint lid = get_local_id(0);
    const uint pair = get_group_id(0);     // o · CG + c
    const uint o = pair / CG, c = pair % CG;
    const uint input_channel = (o / OG) * CG + c;
    float4 acc[TAPS];
    for (uint t = 0; t < TAPS; ++t) acc[t] = 0.0f;
    for (uint r = lid; r < batch * OUT_H * VECTOR_BLOCKS; r += REDUCE_WG) {
        const uint ow0 = (r % VECTOR_BLOCKS) * 4;
        const uint oh = (r / VECTOR_BLOCKS) % OUT_H;
        const uint n = r / (VECTOR_BLOCKS * OUT_H);
        __global const float *g = dy + dy_offset + (n * C_OUT + o) * OUT_PIXELS + oh * OUT_W + ow0;
        // Lanes past the row's end are zero, so their products vanish.
        const float4 d = ow0 + 4 <= OUT_W ? vload4(0, g)
            : (float4)(g[0], ow0 + 1 < OUT_W ? g[1] : 0.0f, ow0 + 2 < OUT_W ? g[2] : 0.0f, 0.0f);
        __global const float *window = xp + (n * C_IN + input_channel) * XP_PIXELS + oh * SH * XP_W + ow0 * SW;
        for (uint i = 0; i < KH; ++i)
            for (uint j = 0; j < KW; ++j) acc[i * KW + j] += d * LOAD4(window + i * DH * XP_W + j * DW);
    }
    for (uint t = 0; t < TAPS; ++t) partial[t][lid] = acc[t].x + acc[t].y + acc[t].z + acc[t].w;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint t = lid; t < TAPS; t += REDUCE_WG) {
        float sum = 0.0f;
        for (uint k = 0; k < REDUCE_WG; ++k) sum += partial[t][k];
        const uint at = dw_offset + pair * TAPS + t;
        dweight[at] = (accumulate ? dweight[at] : 0.0f) + sum;
    }
}
