// Philox-4x32-10 random streams, bit-identical to Sources/Kiln/Random/Philox.swift.
//
// Every float operation below is a correctly rounded add, subtract or multiply (or an exact
// conversion), done in the same order as the Swift code, so results match the host exactly.
// That needs: no fma contraction (the pragma), no builtin log/cos/sqrt or '/', and no
// -cl-fast-relaxed-math, -cl-mad-enable or -cl-unsafe-math-optimizations when building.
// Later files (e.g. dropout.cl) are concatenated after this one and call the kiln_ helpers.
#pragma OPENCL FP_CONTRACT OFF

inline uint4 kiln_philox4x32_10(uint4 ctr, uint2 key) {
    for (int round = 0; round < 10; round++) {
        if (round > 0) {
            key.x += 0x9E3779B9u;
            key.y += 0xBB67AE85u;
        }
        const uint hi0 = mul_hi(0xD2511F53u, ctr.x), lo0 = 0xD2511F53u * ctr.x;
        const uint hi1 = mul_hi(0xCD9E8D57u, ctr.z), lo1 = 0xCD9E8D57u * ctr.z;
        ctr = (uint4)(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
    }
    return ctr;
}

inline uint2 kiln_philox_key(ulong seed) { return (uint2)((uint)seed, (uint)(seed >> 32)); }

// The top 24 bits convert exactly: a multiple of 2^-24 in [0, 1).
inline float kiln_unit_float(uint word) { return (float)(word >> 8) * 0x1p-24f; }

// Natural log for positive, normal, finite x (see DeterministicMath.log).
inline float kiln_det_log(float x) {
    const uint bits = as_uint(x);
    int e = (int)((bits >> 23) & 0xffu) - 127;
    float m = as_float((bits & 0x7fffffu) | 0x3f800000u);
    if (m > 0x1.6a09e6p+0f) {
        m = m * 0.5f;
        e = e + 1;
    }
    const float f = m - 1.0f;
    float q = -0x1.328c1ap-4f;
    q = 0x1.0a0a3p-3f + f * q;
    q = -0x1.11749p-3f + f * q;
    q = 0x1.2244b8p-3f + f * q;
    q = -0x1.53d066p-3f + f * q;
    q = 0x1.99a40cp-3f + f * q;
    q = -0x1.00066ep-2f + f * q;
    q = 0x1.555556p-2f + f * q;
    q = -0x1.fffffp-2f + f * q;
    const float ef = (float)e;
    float t = f * f;
    t = t * q;
    t = t + ef * 0x1.7f7d1cp-20f;
    t = t + f;
    return ef * 0x1.62e4p-1f + t;
}

// cos(2 pi u) for u in [0, 1) (see DeterministicMath.cos2pi).
inline float kiln_det_cos2pi(float u) {
    const float t = u * 4.0f;
    int q = (int)t;
    float r = t - (float)q;
    if (r > 0.5f) {
        r = r - 1.0f;
        q = q + 1;
    }
    const float r2 = r * r;
    float c = 0x1.da09e6p-11f;
    c = -0x1.55c6acp-6f + r2 * c;
    c = 0x1.03c1ep-2f + r2 * c;
    c = -0x1.3bd3ccp+0f + r2 * c;
    c = r2 * c;
    c = 1.0f + c;
    float s = -0x1.2d0fa6p-8f;
    s = 0x1.465afcp-4f + r2 * s;
    s = -0x1.4abbaap-1f + r2 * s;
    s = 0x1.921fb4p+0f + r2 * s;
    s = r * s;
    // The quadrant's value through private memory rather than a switch, for the same Oclgrind defect
    // as in kiln_uniform.
    const float quadrant[4] = {c, -s, -c, s};
    return quadrant[q & 3];
}

// Square root for finite x >= 0 as x * rsqrt(x) (see DeterministicMath.sqrt).
inline float kiln_det_sqrt(float x) {
    float y = as_float(0x5f3759dfu - (as_uint(x) >> 1));
    const float hx = 0.5f * x;
    for (int i = 0; i < 3; i++) {
        float t = hx * y;
        t = t * y;
        t = 1.5f - t;
        y = y * t;
    }
    return x * y;
}

inline float kiln_uniform(ulong seed, ulong position) {
    const ulong index = position >> 2;
    const uint4 b = kiln_philox4x32_10((uint4)((uint)index, (uint)(index >> 32), 0u, 0u),
                                       kiln_philox_key(seed));
    // Through private memory rather than a select of components: Oclgrind 21.10 mis-evaluates the
    // select chain the compiler makes of `lane == 0 ? b.x : ...` (lanes 0 and 1 read lane 3).
    uint words[4];
    vstore4(b, 0, words);
    return kiln_unit_float(words[position & 3]);
}

inline float kiln_normal(ulong seed, ulong position) {
    const uint4 b = kiln_philox4x32_10((uint4)((uint)position, (uint)(position >> 32), 0u, 1u),
                                       kiln_philox_key(seed));
    const float u1 = (float)((b.x >> 8) + 1u) * 0x1p-24f;
    const float u2 = (float)(b.y >> 8) * 0x1p-24f;
    const float r = kiln_det_sqrt(-2.0f * kiln_det_log(u1));
    return r * kiln_det_cos2pi(u2);
}

__kernel void random_uniform(__global float *out, const uint out_offset, const uint n,
                             const uint seed_lo, const uint seed_hi,
                             const uint offset_lo, const uint offset_hi,
                             const float low, const float high) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const ulong seed = ((ulong)seed_hi << 32) | seed_lo;
    const ulong position = (((ulong)offset_hi << 32) | offset_lo) + i;
    const float range = high - low;
    out[out_offset + i] = low + range * kiln_uniform(seed, position);
}

__kernel void random_normal(__global float *out, const uint out_offset, const uint n,
                            const uint seed_lo, const uint seed_hi,
                            const uint offset_lo, const uint offset_hi,
                            const float mean, const float std) {
    const uint i = get_global_id(0);
    if (i >= n) return;
    const ulong seed = ((ulong)seed_hi << 32) | seed_lo;
    const ulong position = (((ulong)offset_hi << 32) | offset_lo) + i;
    out[out_offset + i] = mean + std * kiln_normal(seed, position);
}
