// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions: each 2x2 output tile costs 16 multiplies per
// (input, output) channel pair instead of 36. The three transforms are here; the 16 products
// M[t] = U[t] · V[t] (one per transformed-tile position t) are one strided-batched GEMM on the host side.
//
//   U = G g Gᵀ   (filters)   V = Bᵀ d B   (4x4 input tiles, stride 2)   Y = Aᵀ M A   (2x2 output tiles)
//
// Layouts: U [16][rows][cols], V [16][channels][tiles], M [16][rows][tiles], where tiles run over
// (image, tile row, tile column). Backward data of a 3x3 stride-1 convolution is a 3x3 stride-1
// convolution of dy with the filters rotated by 180° and C_in/C_out swapped, so the filter transform can
// read its filters that way (flip != 0) and the rest is shared.

// U[t][r][c] = (G g Gᵀ)[t] for the filter g of output r and input c. With flip == 0, g = weight[r][c];
// otherwise weight is [cols][rows][3][3] and g is weight[c][r] rotated by 180°.
__kernel void winograd_filter_transform(__global const float *weight, const uint w_offset, __global float *u,
                                        const uint rows, const uint cols, const uint flip) {
    const uint index = get_global_id(0);
    if (index >= rows * cols) return;
    const uint r = index / cols, c = index % cols;
    float g[3][3];
    __global const float *source = weight + w_offset + (flip ? (c * rows + r) : index) * 9;
    for (uint i = 0; i < 3; ++i)
        for (uint j = 0; j < 3; ++j) g[i][j] = flip ? source[8 - (i * 3 + j)] : source[i * 3 + j];
    // G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]
    float gg[4][3];
    for (uint j = 0; j < 3; ++j) {
        gg[0][j] = g[0][j];
        gg[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
        gg[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
        gg[3][j] = g[2][j];
    }
    const uint stride = rows * cols;
    for (uint i = 0; i < 4; ++i) {
        __global float *out = u + (i * 4) * stride + index;
        out[0] = gg[i][0];
        out[stride] = 0.5f * (gg[i][0] + gg[i][1] + gg[i][2]);
        out[2 * stride] = 0.5f * (gg[i][0] - gg[i][1] + gg[i][2]);
        out[3 * stride] = gg[i][2];
    }
}

// V[t][c][tile] = (Bᵀ d B)[t] for the 4x4 input window d at (2·tile row − pad_top, 2·tile column −
// pad_left) of channel c; pixels outside the image are zero, which also covers partial edge tiles.
__kernel void winograd_input_transform(__global const float *x, const uint x_offset, __global float *v,
                                       const uint batch, const uint channels, const uint height, const uint width,
                                       const int pad_top, const int pad_left, const uint tiles_h, const uint tiles_w) {
    const uint index = get_global_id(0);
    const uint per_image = tiles_h * tiles_w, tiles = batch * per_image;
    if (index >= channels * tiles) return;
    const uint c = index / tiles, tile = index % tiles;
    const uint n = tile / per_image, th = (tile % per_image) / tiles_w, tw = tile % tiles_w;
    __global const float *plane = x + x_offset + (n * channels + c) * height * width;
    const int top = (int)(2 * th) - pad_top, left = (int)(2 * tw) - pad_left;
    float d[4][4];
    for (int i = 0; i < 4; ++i) {
        const int ih = top + i;
        const bool row_inside = ih >= 0 && ih < (int)height;
        for (int j = 0; j < 4; ++j) {
            const int iw = left + j;
            d[i][j] = (row_inside && iw >= 0 && iw < (int)width) ? plane[ih * (int)width + iw] : 0.0f;
        }
    }
    // Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
    float bd[4][4];
    for (uint j = 0; j < 4; ++j) {
        bd[0][j] = d[0][j] - d[2][j];
        bd[1][j] = d[1][j] + d[2][j];
        bd[2][j] = d[2][j] - d[1][j];
        bd[3][j] = d[1][j] - d[3][j];
    }
    const uint stride = channels * tiles;
    for (uint i = 0; i < 4; ++i) {
        __global float *out = v + (i * 4) * stride + index;
        out[0] = bd[i][0] - bd[i][2];
        out[stride] = bd[i][1] + bd[i][2];
        out[2 * stride] = bd[i][2] - bd[i][1];
        out[3 * stride] = bd[i][1] - bd[i][3];
    }
}

// y[n][r][2·tile row + i][2·tile column + j] = (Aᵀ M A)[i][j] (+ bias[r]), dropping the half of an edge
// tile that falls outside the output.
__kernel void winograd_output_transform(__global const float *m, __global float *y, const uint y_offset,
                                        __global const float *bias, const uint bias_offset, const uint has_bias,
                                        const uint batch, const uint rows, const uint out_height, const uint out_width,
                                        const uint tiles_h, const uint tiles_w) {
    const uint index = get_global_id(0);
    const uint per_image = tiles_h * tiles_w, tiles = batch * per_image;
    if (index >= rows * tiles) return;
    const uint r = index / tiles, tile = index % tiles;
    const uint n = tile / per_image, th = (tile % per_image) / tiles_w, tw = tile % tiles_w;
    const uint stride = rows * tiles;
    float t[16];
    for (uint k = 0; k < 16; ++k) t[k] = m[k * stride + index];
    // Aᵀ = [1 1 1 0; 0 1 -1 -1]
    float at[2][4];
    for (uint j = 0; j < 4; ++j) {
        at[0][j] = t[j] + t[4 + j] + t[8 + j];
        at[1][j] = t[4 + j] - t[8 + j] - t[12 + j];
    }
    const float b = has_bias ? bias[bias_offset + r] : 0.0f;
    __global float *plane = y + y_offset + (n * rows + r) * out_height * out_width;
    const uint oh = 2 * th, ow = 2 * tw;
    for (uint i = 0; i < 2; ++i) {
        if (oh + i >= out_height) break;
        const float left = at[i][0] + at[i][1] + at[i][2] + b;
        const float right = at[i][1] - at[i][2] - at[i][3] + b;
        plane[(oh + i) * out_width + ow] = left;
        if (ow + 1 < out_width) plane[(oh + i) * out_width + ow + 1] = right;
    }
}
