/// Philox-4x32-10, the counter-based generator of Salmon et al. ("Parallel random numbers:
/// as easy as 1, 2, 3", SC'11), as defined by Random123.
///
/// Streams are functions of `(seed, position)` alone, so any element can be produced
/// independently and the host and the OpenCL kernels in `Kernels/random.cl` agree bit for
/// bit. The key is `(lo32(seed), hi32(seed))`. Uniform element `g` is word `g % 4` of the
/// block at counter `(lo32(g / 4), hi32(g / 4), 0, 0)`, mapped to `Float(word >> 8) * 2^-24`
/// in [0, 1). Normal element `g` uses the block at counter `(lo32(g), hi32(g), 0, 1)`:
/// `u1 = Float((w0 >> 8) + 1) * 2^-24` in (0, 1], `u2 = Float(w1 >> 8) * 2^-24` in [0, 1), and
/// `z = sqrt(-2 ln u1) * cos(2π u2)` (Box–Muller, one output per block), evaluated with
/// `DeterministicMath` rather than the platform's library.
public enum Philox {
    /// One Philox-4x32-10 block: 10 rounds of the counter under the key.
    public static func block(
        counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)
    ) -> (UInt32, UInt32, UInt32, UInt32) {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 {
                k0 &+= 0x9E37_79B9
                k1 &+= 0xBB67_AE85
            }
            let p0 = UInt32(0xD251_1F53).multipliedFullWidth(by: c0)
            let p1 = UInt32(0xCD9E_8D57).multipliedFullWidth(by: c2)
            (c0, c1, c2, c3) = (p1.high ^ c1 ^ k0, p1.low, p0.high ^ c3 ^ k1, p0.low)
        }
        return (c0, c1, c2, c3)
    }

    /// Uniform element at `position` of the stream for `seed`, in [0, 1).
    public static func uniform(seed: UInt64, position: UInt64) -> Float {
        let b = block(counter: counter(position >> 2, 0), key: key(seed))
        return unitFloat(word(b, position & 3))
    }

    /// Standard normal element at `position` of the stream for `seed`.
    public static func normal(seed: UInt64, position: UInt64) -> Float {
        let b = block(counter: counter(position, 1), key: key(seed))
        return boxMuller(b.0, b.1)
    }

    /// Fills `out[i]` with `low + (high - low) * uniform(seed, offset + i)`.
    public static func fillUniform(
        _ out: UnsafeMutableBufferPointer<Float>, seed: UInt64, offset: UInt64, low: Float, high: Float
    ) {
        let k = key(seed)
        let range = high - low
        var i = 0
        while i < out.count {
            // One block serves the (up to) four consecutive positions that share a counter.
            let g = offset &+ UInt64(i)
            let b = block(counter: counter(g >> 2, 0), key: k)
            var lane = g & 3
            while lane < 4 && i < out.count {
                out[i] = low + range * unitFloat(word(b, lane))
                lane += 1
                i += 1
            }
        }
    }

    /// Fills `out[i]` with `mean + std * normal(seed, offset + i)`.
    public static func fillNormal(
        _ out: UnsafeMutableBufferPointer<Float>, seed: UInt64, offset: UInt64, mean: Float, std: Float
    ) {
        let k = key(seed)
        for i in 0..<out.count {
            let b = block(counter: counter(offset &+ UInt64(i), 1), key: k)
            out[i] = mean + std * boxMuller(b.0, b.1)
        }
    }

    @inline(__always)
    static func key(_ seed: UInt64) -> (UInt32, UInt32) {
        (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))
    }

    @inline(__always)
    static func counter(_ index: UInt64, _ stream: UInt32) -> (UInt32, UInt32, UInt32, UInt32) {
        (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32), 0, stream)
    }

    @inline(__always)
    static func word(_ b: (UInt32, UInt32, UInt32, UInt32), _ lane: UInt64) -> UInt32 {
        switch lane {
        case 0: return b.0
        case 1: return b.1
        case 2: return b.2
        default: return b.3
        }
    }

    /// The top 24 bits convert exactly, so the result is a multiple of 2^-24 on every platform.
    @inline(__always)
    static func unitFloat(_ word: UInt32) -> Float {
        Float(word >> 8) * 0x1p-24
    }

    @inline(__always)
    static func boxMuller(_ w0: UInt32, _ w1: UInt32) -> Float {
        let u1 = Float((w0 >> 8) + 1) * 0x1p-24  // (0, 1]: log never sees zero
        let u2 = Float(w1 >> 8) * 0x1p-24
        let r = DeterministicMath.sqrt(-2 * DeterministicMath.log(u1))
        return r * DeterministicMath.cos2pi(u2)
    }
}

/// Elementary functions built only from correctly rounded float add, subtract and multiply
/// plus exact conversions and bit operations, so they round identically on every IEEE
/// platform. Library `log`/`cos`/`sqrt` (and `/`) are not correctly rounded in OpenCL and
/// vary by driver. `Kernels/random.cl` mirrors each operation in the same order; change both
/// together. Coefficients are float32 least-squares fits on Chebyshev nodes.
enum DeterministicMath {
    /// Natural log for positive, normal, finite `x`. Max abs error 5e-7 (0.26 ulp) over (0, 1], rel 8.2e-8.
    static func log(_ x: Float) -> Float {
        let bits = x.bitPattern
        var e = Int32(bitPattern: (bits >> 23) & 0xff) - 127
        var m = Float(bitPattern: (bits & 0x7f_ffff) | 0x3f80_0000)  // [1, 2)
        // Centre the mantissa on 1 so the polynomial interval is [sqrt(1/2)-1, sqrt(2)-1].
        if m > 0x1.6a09e6p+0 {
            m = m * 0.5
            e = e + 1
        }
        let f = m - 1  // exact (Sterbenz)
        // ln(1 + f) = f + f^2 * q(f)
        var q: Float = -0x1.328c1ap-4
        q = 0x1.0a0a3p-3 + f * q
        q = -0x1.11749p-3 + f * q
        q = 0x1.2244b8p-3 + f * q
        q = -0x1.53d066p-3 + f * q
        q = 0x1.99a40cp-3 + f * q
        q = -0x1.00066ep-2 + f * q
        q = 0x1.555556p-2 + f * q
        q = -0x1.fffffp-2 + f * q
        let ef = Float(e)
        // ln 2 split in two: ef * ln2Hi is exact, and the small terms are summed first.
        var t = f * f
        t = t * q
        t = t + ef * 0x1.7f7d1cp-20
        t = t + f
        return ef * 0x1.62e4p-1 + t
    }

    /// cos(2π u) for u in [0, 1). Max abs error 9.2e-8.
    static func cos2pi(_ u: Float) -> Float {
        // Quarter turns: u * 4 is exact, and so are both subtractions, so r in [-1/2, 1/2].
        let t = u * 4
        var q = Int32(t)
        var r = t - Float(q)
        if r > 0.5 {
            r = r - 1
            q = q + 1
        }
        let r2 = r * r
        var c: Float = 0x1.da09e6p-11  // cos(π r / 2) = 1 + r^2 * p(r^2)
        c = -0x1.55c6acp-6 + r2 * c
        c = 0x1.03c1ep-2 + r2 * c
        c = -0x1.3bd3ccp+0 + r2 * c
        c = r2 * c
        c = 1 + c
        var s: Float = -0x1.2d0fa6p-8  // sin(π r / 2) = r * p(r^2)
        s = 0x1.465afcp-4 + r2 * s
        s = -0x1.4abbaap-1 + r2 * s
        s = 0x1.921fb4p+0 + r2 * s
        s = r * s
        switch q & 3 {
        case 0: return c
        case 1: return -s
        case 2: return -c
        default: return s
        }
    }

    /// Square root for finite `x >= 0` as x * rsqrt(x). Max rel error 2.2e-7.
    static func sqrt(_ x: Float) -> Float {
        // Bit-trick estimate (3.4% error); three Newton steps reach float precision.
        var y = Float(bitPattern: 0x5f37_59df &- (x.bitPattern >> 1))
        let hx = 0.5 * x
        for _ in 0..<3 {
            var t = hx * y
            t = t * y
            t = 1.5 - t
            y = y * t
        }
        return x * y
    }
}
