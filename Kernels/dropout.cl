// Dropout masks from the shared counter-based generator (random.cl is compiled in front of this file):
// unit u keeps with probability 1 − p, and a kept unit is scaled by 1/(1 − p) (inverted dropout).
//! prelude: random.cl

__kernel void dropout_mask(__global float *mask, const uint mask_offset, const uint n,
                           const uint seed_lo, const uint seed_hi, const uint offset_lo, const uint offset_hi,
                           const float p, const float scale) {
    const uint u = get_global_id(0);
    if (u >= n) return;
    const ulong seed = ((ulong)seed_hi << 32) | seed_lo;
    const ulong position = (((ulong)offset_hi << 32) | offset_lo) + u;
    mask[mask_offset + u] = kiln_uniform(seed, position) >= p ? scale : 0.0f;
}
