// Reductions over one axis of a tensor seen as [outer, axis, inner]: one work-group per output element,
// its work-items stride over the axis and combine their partial results in local memory.
// A reduction over all elements is the case outer = inner = 1.

#ifndef REDUCE_WG
#define REDUCE_WG 64   // work-group size, a power of two no larger than the device's limit
#endif

#define REDUCE_KERNEL(NAME, INIT, COMBINE)                                                          \
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))                                     \
void reduce_##NAME(__global const float *a, const uint a_offset,                                    \
                   __global float *out, const uint out_offset,                                      \
                   const uint axis, const uint inner, const float scale) {                          \
    __local float partial[REDUCE_WG];                                                               \
    const uint o = get_group_id(0);                                                                 \
    const uint lid = get_local_id(0);                                                               \
    const uint base = a_offset + (o / inner) * axis * inner + o % inner;                            \
    float acc = INIT;                                                                               \
    for (uint k = lid; k < axis; k += REDUCE_WG) { const float v = a[base + k * inner]; acc = COMBINE; } \
    partial[lid] = acc;                                                                             \
    barrier(CLK_LOCAL_MEM_FENCE);                                                                   \
    for (uint s = REDUCE_WG / 2; s > 0; s >>= 1) {                                                  \
        if (lid < s) { const float v = partial[lid + s]; acc = partial[lid]; partial[lid] = COMBINE; } \
        barrier(CLK_LOCAL_MEM_FENCE);                                                               \
    }                                                                                               \
    if (lid == 0) out[out_offset + o] = partial[0] * scale;                                         \
}

REDUCE_KERNEL(sum, 0.0f, acc + v)
REDUCE_KERNEL(max, -INFINITY, fmax(acc, v))
REDUCE_KERNEL(min, INFINITY, fmin(acc, v))

// Index of the largest value along the axis, as a float; ties go to the smallest index.
__kernel __attribute__((reqd_work_group_size(REDUCE_WG, 1, 1)))
void reduce_argmax(__global const float *a, const uint a_offset,
                   __global float *out, const uint out_offset,
                   const uint axis, const uint inner, const float unused) {
    __local float best_value[REDUCE_WG];
    __local uint best_index[REDUCE_WG];
    const uint o = get_group_id(0);
    const uint lid = get_local_id(0);
    const uint base = a_offset + (o / inner) * axis * inner + o % inner;
    float value = -INFINITY;
    uint index = 0xffffffffu;
    for (uint k = lid; k < axis; k += REDUCE_WG) {
        const float v = a[base + k * inner];
        if (index == 0xffffffffu || v > value) { value = v; index = k; }
    }
    best_value[lid] = value;
    best_index[lid] = index;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = REDUCE_WG / 2; s > 0; s >>= 1) {
        if (lid < s) {
            const float v = best_value[lid + s];
            const uint k = best_index[lid + s];
            if (k != 0xffffffffu && (best_index[lid] == 0xffffffffu || v > best_value[lid]
                                     || (v == best_value[lid] && k < best_index[lid]))) {
                best_value[lid] = v;
                best_index[lid] = k;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) out[out_offset + o] = (float)best_index[0];
}
