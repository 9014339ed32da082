// Augmentation and preprocessing: the op surface each backend implements, and the checked tensor-level API.
// The ops are deterministic functions of a batch and per-sample parameters; `AugmentationPipeline` draws the
// parameters from the counter-based streams, so host and device augment a sample alike.

/// What lies outside the image for a shift or a crop of the padded image.
public enum AugmentBorder: Equatable, Sendable {
    /// A constant value (torchvision's padding_mode="constant", fill).
    case constant(Float)
    /// The image mirrored without repeating its edge (padding_mode="reflect").
    case reflect
}

/// How the affine warp samples the input.
public enum Interpolation: String, Equatable, Sendable, CaseIterable {
    case nearest, bilinear
}

/// Augmentation ops of a `Backend` on [N, C, H, W] batches; parameter rows are per sample.
public protocol AugmentationBackend {
    /// y[n, c, h, w] = x[n, c, fy(h) + dy, fx(w) + dx] with params[n] = (dx, dy, flip x, flip y) (whole numbers;
    /// a flip is nonzero), fx(w) = W − 1 − w when flipping x, else w; outside the image, `border`.
    func shiftFlip(_ x: Tensor, params: Tensor, border: AugmentBorder, into y: Tensor) throws
    /// y [N, C, OH, OW] samples x at (a·u + b·v + c, d·u + e·v + f) for the output pixel centre (u, v) =
    /// (ow + ½, oh + ½), with matrices[n] = (a, b, c, d, e, f) in pixel units; taps outside read `fill`.
    func warpAffine(_ x: Tensor, matrices: Tensor, interpolation: Interpolation, fill: Float, into y: Tensor) throws
    /// Brightness, contrast and saturation factors [N, 3], applied in that order as torchvision's adjust_*.
    func colorJitter(_ x: Tensor, factors: Tensor, into y: Tensor) throws
    /// Every channel's pixels inside boxes[n] = (x0, y0, x1, y1) (half-open, whole numbers) set to `value`.
    func eraseBoxes(_ x: Tensor, boxes: Tensor, value: Float, into y: Tensor) throws
    /// y = b inside params[n]'s box (x0, y0, x1, y1), λ·a + (1 − λ)·b elsewhere, with params[n] = (λ, box).
    func mixPairs(_ a: Tensor, _ b: Tensor, params: Tensor, into y: Tensor) throws
    /// y = x·scale[c] + shift[c] for channel c of [N, C, ...].
    func scaleShiftChannels(_ x: Tensor, scale: Tensor, shift: Tensor, into y: Tensor) throws
    /// Each image (x − mean) / max(std, 1/√size) over its own C·H·W values.
    func standardizeImages(_ x: Tensor, into y: Tensor) throws
}

private func checkImages(_ x: Tensor, _ operation: String) throws {
    guard x.rank == 4 else { throw KilnError.shapeMismatch(operation: operation, expected: "[N, C, H, W]", got: describe(x.shape)) }
}

/// Checks per-sample parameter rows [N, width] for a batch.
private func checkRows(_ params: Tensor, width: Int, for x: Tensor, _ operation: String) throws {
    guard params.shape == [x.shape[0], width] else {
        throw KilnError.shapeMismatch(operation: operation, expected: "parameters [\(x.shape[0]), \(width)]", got: describe(params.shape))
    }
    try x.sameDevice(params, operation)
}

/// Crops of the padded images and flips: see `AugmentationBackend.shiftFlip`.
public func shiftFlip(_ x: Tensor, params: Tensor, border: AugmentBorder = .constant(0)) throws -> Tensor {
    try checkImages(x, "shift/flip")
    try checkRows(params, width: 4, for: x, "shift/flip")
    let y = try Tensor.empty(x.shape, on: x.device)
    try x.backend.shiftFlip(x, params: params, border: border, into: y)
    return y
}

/// Affine warps to `outputSize` (default: the input's): see `AugmentationBackend.warpAffine`.
public func warpAffine(_ x: Tensor, matrices: Tensor, outputSize: (height: Int, width: Int)? = nil,
                       interpolation: Interpolation = .bilinear, fill: Float = 0) throws -> Tensor {
    try checkImages(x, "affine warp")
    try checkRows(matrices, width: 6, for: x, "affine warp")
    let size = outputSize ?? (x.shape[2], x.shape[3])
    guard size.height > 0, size.width > 0 else {
        throw KilnError.invalidArgument("affine warp: output size \(size.height)x\(size.width) is empty")
    }
    let y = try Tensor.empty([x.shape[0], x.shape[1], size.height, size.width], on: x.device)
    try x.backend.warpAffine(x, matrices: matrices, interpolation: interpolation, fill: fill, into: y)
    return y
}

/// Brightness, contrast and saturation jitter with factors [N, 3]: see `AugmentationBackend.colorJitter`.
public func colorJitter(_ x: Tensor, factors: Tensor) throws -> Tensor {
    try checkImages(x, "colour jitter")
    try checkRows(factors, width: 3, for: x, "colour jitter")
    let y = try Tensor.empty(x.shape, on: x.device)
    try x.backend.colorJitter(x, factors: factors, into: y)
    return y
}

/// Cutout and random erasing: boxes [N, 4] set to `value`.
public func eraseBoxes(_ x: Tensor, boxes: Tensor, value: Float = 0) throws -> Tensor {
    try checkImages(x, "erase")
    try checkRows(boxes, width: 4, for: x, "erase")
    let y = try Tensor.empty(x.shape, on: x.device)
    try x.backend.eraseBoxes(x, boxes: boxes, value: value, into: y)
    return y
}

/// Mixup, cutmix and sample pairing of each image with its partner: params [N, 5] = (λ, x0, y0, x1, y1).
public func mixPairs(_ a: Tensor, _ b: Tensor, params: Tensor) throws -> Tensor {
    try checkImages(a, "mix")
    guard b.shape == a.shape else { throw KilnError.shapeMismatch(operation: "mix", expected: describe(a.shape), got: describe(b.shape)) }
    try a.sameDevice(b, "mix")
    try checkRows(params, width: 5, for: a, "mix")
    let y = try Tensor.empty(a.shape, on: a.device)
    try a.backend.mixPairs(a, b, params: params, into: y)
    return y
}

/// Per-channel normalisation of [N, C, ...]: (x − mean[c]) / std[c], computed as x·(1/std) + (−mean/std).
public func normalizeChannels(_ x: Tensor, mean: [Float], std: [Float]) throws -> Tensor {
    guard x.rank >= 2 else { throw KilnError.shapeMismatch(operation: "normalize", expected: "[N, C, ...]", got: describe(x.shape)) }
    let channels = x.shape[1]
    guard mean.count == channels, std.count == channels else {
        throw KilnError.shapeMismatch(operation: "normalize", expected: "\(channels) means and standard deviations",
                                      got: "\(mean.count) and \(std.count)")
    }
    guard std.allSatisfy({ $0 > 0 && $0.isFinite }), mean.allSatisfy(\.isFinite) else {
        throw KilnError.invalidArgument("normalize: means must be finite and standard deviations positive, not \(mean) and \(std)")
    }
    let scale = std.map { 1 / $0 }
    let shift = zip(mean, scale).map { -$0 * $1 }
    let y = try Tensor.empty(x.shape, on: x.device)
    try x.backend.scaleShiftChannels(x, scale: try Tensor(scale, shape: [channels], on: x.device),
                                     shift: try Tensor(shift, shape: [channels], on: x.device), into: y)
    return y
}

/// Per-image standardisation (global contrast normalisation): each image to zero mean and unit variance.
public func standardizeImages(_ x: Tensor) throws -> Tensor {
    guard x.rank >= 2 else { throw KilnError.shapeMismatch(operation: "standardize", expected: "[N, ...]", got: describe(x.shape)) }
    let y = try Tensor.empty(x.shape, on: x.device)
    try x.backend.standardizeImages(x, into: y)
    return y
}
