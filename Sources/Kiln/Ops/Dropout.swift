// Dropout family: the op surface each backend implements, and the checked tensor-level API.

/// Where a dropout mask draws its randomness: the counter-based stream of `Philox.mix(seed, layer)`, unit u
/// of training step `step` reading position `step · units + u`. Host and device give the same mask for the
/// same key, and a resumed run redraws exactly the masks it would have drawn.
///
/// In data-parallel training a rank's mask is its part of the mask of the whole (global) batch: with
/// `shard`, unit u reads position `step · globalUnits + unitsBefore + u`, where the global batch has
/// `globalUnits` units and the samples of earlier ranks `unitsBefore`, so the masks do not depend on the
/// number of ranks.
public struct DropoutKey: Equatable, Sendable {
    public var seed: UInt64
    public var step: Int
    public var layer: Int
    /// (units of the samples before this rank's, units of the whole global batch); nil for a whole batch.
    public var shard: (unitsBefore: Int, globalUnits: Int)?

    public init(seed: UInt64, step: Int, layer: Int) {
        self.seed = seed
        self.step = step
        self.layer = layer
    }

    /// The key of a mask of `units` units over `batch` samples, placed in the global batch by `shard`.
    public init(seed: UInt64, step: Int, layer: Int, units: Int, batch: Int, shard: BatchShard?) {
        self.init(seed: seed, step: step, layer: layer)
        if let shard, batch > 0 {
            let perSample = units / batch
            self.shard = (shard.first * perSample, shard.globalCount * perSample)
        }
    }

    public static func == (a: DropoutKey, b: DropoutKey) -> Bool {
        (a.seed, a.step, a.layer) == (b.seed, b.step, b.layer)
            && a.shard?.unitsBefore == b.shard?.unitsBefore && a.shard?.globalUnits == b.shard?.globalUnits
    }

    var stream: UInt64 { Philox.mix(seed, UInt64(truncatingIfNeeded: layer)) }
    func offset(units: Int) -> UInt64 {
        guard let shard else { return UInt64(step) &* UInt64(units) }
        return UInt64(step) &* UInt64(shard.globalUnits) &+ UInt64(shard.unitsBefore)
    }
}

/// Dropout ops of a `Backend`.
public protocol DropoutBackend {
    /// Fills `mask` with one value per unit: 0 with probability p, else 1/(1 − p) (inverted dropout, so the
    /// expected value is kept); p = 1 gives all zeros.
    func dropoutMask(probability: Float, key: DropoutKey, into mask: Tensor) throws
}

extension Backend {
    /// y = x·mask for element-wise dropout (mask shaped like x), or, for spatial dropout, one mask value per
    /// (sample, channel) of [N, C, H, W] scaling the whole plane.
    func applyDropoutMask(_ x: Tensor, mask: Tensor, into y: Tensor) throws {
        if mask.count == x.count {
            try binary(.mul, x, mask, into: y)
        } else {
            try binaryPerChannel(.mul, x, mask, channels: mask.count, inner: x.count / Swift.max(mask.count, 1), into: y)
        }
    }
}

/// The output of a dropout forward and the mask its backward needs.
public struct DropoutResult {
    public var output: Tensor
    public var mask: Tensor
}

/// A dropout mask of `shape`: 0 with probability p, else 1/(1 − p), keyed by `key` (the same on every device).
public func dropoutMask(_ shape: [Int], probability p: Float, key: DropoutKey, on device: Device) throws -> Tensor {
    guard p >= 0, p <= 1 else { throw KilnError.invalidArgument("dropout: probability \(p) is outside [0, 1]") }
    let mask = try Tensor.empty(shape, on: device)
    try mask.backend.dropoutMask(probability: p, key: key, into: mask)
    return mask
}

/// Inverted dropout in training (zero each element with probability p, scale the rest by 1/(1 − p)); with
/// `spatial`, whole channels of [N, C, H, W] are dropped together. At inference use the input unchanged.
public func dropout(_ x: Tensor, probability p: Float, key: DropoutKey, spatial: Bool = false) throws -> DropoutResult {
    if spatial, x.rank < 3 {
        throw KilnError.shapeMismatch(operation: "spatial dropout", expected: "[N, C, H, W]", got: describe(x.shape))
    }
    let mask = try dropoutMask(spatial ? [x.shape[0] * x.shape[1]] : x.shape, probability: p, key: key, on: x.device)
    let y = try Tensor.empty(x.shape, on: x.device)
    try x.backend.applyDropoutMask(x, mask: mask, into: y)
    return DropoutResult(output: y, mask: mask)
}

/// dx = dy·mask, with the mask of the forward pass.
public func dropoutBackward(_ dy: Tensor, mask: Tensor) throws -> Tensor {
    let dx = try Tensor.empty(dy.shape, on: dy.device)
    try dy.backend.applyDropoutMask(dy, mask: mask, into: dx)
    return dx
}
