// 2-D transpose through a local-memory tile, so that both the reads and the writes are coalesced.

#ifndef TILE
#define TILE 16
#endif

// a is [rows, cols]; out is [cols, rows].
__kernel __attribute__((reqd_work_group_size(TILE, TILE, 1)))
void transpose2d(__global const float *a, const uint a_offset,
                 __global float *out, const uint out_offset,
                 const uint rows, const uint cols) {
    __local float tile[TILE][TILE + 1];   // +1 column: no bank conflicts on the transposed read
    const uint lx = get_local_id(0), ly = get_local_id(1);
    const uint c = get_group_id(0) * TILE + lx;
    const uint r = get_group_id(1) * TILE + ly;
    if (r < rows && c < cols) tile[ly][lx] = a[a_offset + r * cols + c];
    barrier(CLK_LOCAL_MEM_FENCE);
    const uint oc = get_group_id(1) * TILE + lx;   // column of out = row of a
    const uint orow = get_group_id(0) * TILE + ly; // row of out = column of a
    if (orow < cols && oc < rows) out[out_offset + orow * rows + oc] = tile[lx][ly];
}
