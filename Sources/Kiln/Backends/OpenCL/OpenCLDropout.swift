import KilnCL

extension OpenCLBackend: DropoutBackend {
    public func dropoutMask(probability p: Float, key: DropoutKey, into mask: Tensor) throws {
        let (seed, offset) = (Self.words(key.stream), Self.words(key.offset(units: mask.count)))
        try dropoutKernels.dropoutMask(items: mask.count, mask: mask, n: mask.count, seedLo: seed.low, seedHi: seed.high,
                                       offsetLo: offset.low, offsetHi: offset.high, p: p, scale: p < 1 ? 1 / (1 - p) : 0)
    }
}
