extension Philox {
    /// Derives an independent stream seed from a seed and an index (a parameter number, a layer number)
    /// with SplitMix64's finaliser, so that nearby indices give unrelated streams.
    public static func mix(_ seed: UInt64, _ index: UInt64) -> UInt64 {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15 &* (index &+ 1)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// 0..<count in the order of a Fisher–Yates shuffle driven by the SplitMix64 stream `stream` (its k-th
    /// output is mix(stream, k)): the same order for the same stream on every machine.
    public static func shuffledIndices(_ count: Int, stream: UInt64) -> [Int] {
        var order = Array(0..<count)
        for (k, i) in stride(from: count - 1, to: 0, by: -1).enumerated() {
            order.swapAt(i, Int(mix(stream, UInt64(k)) % UInt64(i + 1)))
        }
        return order
    }
}
