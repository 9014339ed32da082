import KilnCL

extension OpenCLBackend: DropoutBackend {
    public func dropoutMask(probability p: Float, key: DropoutKey, into mask: Tensor) throws {
        try launch("dropout_mask", in: "dropout.cl", prelude: ["random.cl"], count: mask.count,
                   mask.clArguments + [.uint(UInt32(mask.count))] + Self.streamArguments(key.stream, key.offset(units: mask.count))
                   + [.float(p), .float(p < 1 ? 1 / (1 - p) : 0)])
    }
}
