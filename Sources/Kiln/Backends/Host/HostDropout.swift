extension HostBackend: DropoutBackend {
    public func dropoutMask(probability p: Float, key: DropoutKey, into mask: Tensor) throws {
        let mask = mask.hostBuffer
        let (stream, offset) = (key.stream, key.offset(units: mask.count))
        let scale: Float = p < 1 ? 1 / (1 - p) : 0
        for u in mask.indices {
            mask[u] = Philox.uniform(seed: stream, position: offset &+ UInt64(u)) >= p ? scale : 0
        }
    }
}
