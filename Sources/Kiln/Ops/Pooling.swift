// Pooling: the op surface each backend implements, and the checked tensor-level API.

/// Max or average pooling.
public enum PoolKind: String, Sendable {
    /// The largest value of the window. Ties go to the first maximum in row-major window order (top-left
    /// first); padded positions never win. Backward routes the gradient to that element only.
    case max
    /// The mean of the window, dividing by the full window size including padded zeros (PyTorch's default,
    /// count_include_pad=True).
    case average
}

/// The shape of a 2-D pooling over NCHW: window, stride and zero padding.
public struct Pool2DGeometry: Equatable, Sendable, CustomStringConvertible {
    public var windowHeight: Int, windowWidth: Int
    public var strideHeight: Int, strideWidth: Int
    public var padHeight: Int, padWidth: Int

    /// A square window; the stride defaults to the window (PyTorch's default).
    public init(window: Int, stride: Int? = nil, padding: Int = 0) throws {
        try self.init(window: (window, window), stride: (stride ?? window, stride ?? window), padding: (padding, padding))
    }

    public init(window: (height: Int, width: Int), stride: (height: Int, width: Int), padding: (height: Int, width: Int) = (0, 0)) throws {
        (windowHeight, windowWidth) = window
        (strideHeight, strideWidth) = stride
        (padHeight, padWidth) = padding
        guard windowHeight > 0, windowWidth > 0, strideHeight > 0, strideWidth > 0 else {
            throw KilnError.invalidArgument("pooling: window and stride must be positive")
        }
        guard padHeight >= 0, padWidth >= 0, 2 * padHeight <= windowHeight, 2 * padWidth <= windowWidth else {
            throw KilnError.invalidArgument("pooling: padding must be between 0 and half the window")
        }
    }

    /// floor((H + 2p − k) / s) + 1 in each direction.
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        let h = height + 2 * padHeight - windowHeight, w = width + 2 * padWidth - windowWidth
        return (h < 0 ? 0 : h / strideHeight + 1, w < 0 ? 0 : w / strideWidth + 1)
    }

    public var description: String {
        "window \(windowHeight)x\(windowWidth) stride \(strideHeight)x\(strideWidth) pad \(padHeight)x\(padWidth)"
    }

    /// The output shape for `input` [N, C, H, W], or an error naming `operation` when it does not fit.
    func outputShape(_ input: [Int], operation: String) throws -> [Int] {
        guard input.count == 4 else { throw KilnError.shapeMismatch(operation: operation, expected: "[N, C, H, W]", got: describe(input)) }
        let (h, w) = outputSize(height: input[2], width: input[3])
        guard h > 0, w > 0 else {
            throw KilnError.shapeMismatch(operation: operation, expected: "an input of at least the window (\(self))", got: describe(input))
        }
        return [input[0], input[1], h, w]
    }
}

/// Pooling ops of a `Backend` on NCHW tensors.
public protocol PoolingBackend {
    /// y = pool(x). For max pooling, `argmax` ([N, C, OH, OW]) receives the winning position h·W + w of each
    /// window within its input plane, as a Float. With `relu` (max pooling only) y = max(pool(x), 0), which is
    /// the pooling of ReLU(x): a ReLU and the max pooling after it in one pass.
    func pool2dForward(_ kind: PoolKind, _ x: Tensor, geometry: Pool2DGeometry, relu: Bool, into y: Tensor, argmax: Tensor?) throws
    /// dx from dy: max pooling routes each window's gradient to its arg-max (from forward), average pooling
    /// spreads it evenly over the window. With `reluOutput`, the y of a `relu` forward, windows whose y is
    /// not positive pass nothing back (the ReLU's gradient).
    func pool2dBackward(_ kind: PoolKind, dy: Tensor, argmax: Tensor?, geometry: Pool2DGeometry, reluOutput: Tensor?,
                        into dx: Tensor) throws
}

/// The result of a pooling forward: the output, and for max pooling the arg-max positions backward needs.
public struct PoolResult {
    public var output: Tensor
    public var argmax: Tensor?
}

/// 2-D pooling of `x` [N, C, H, W]; with `relu` (max pooling only), of ReLU(x), in one pass.
public func pool2d(_ kind: PoolKind, _ x: Tensor, geometry: Pool2DGeometry, relu: Bool = false) throws -> PoolResult {
    let shape = try geometry.outputShape(x.shape, operation: "\(kind.rawValue) pool")
    guard !relu || kind == .max else { throw KilnError.invalidArgument("average pooling does not commute with ReLU: no fused form") }
    let y = try Tensor.empty(shape, on: x.device)
    let argmax = kind == .max ? try Tensor.empty(shape, on: x.device) : nil
    try x.backend.pool2dForward(kind, x, geometry: geometry, relu: relu, into: y, argmax: argmax)
    return PoolResult(output: y, argmax: argmax)
}

/// The gradient of `pool2d` with respect to its input of shape `inputShape`; for a `relu` forward, pass its
/// output as `reluOutput` to get the gradient with respect to the ReLU's input.
public func pool2dBackward(_ kind: PoolKind, dy: Tensor, argmax: Tensor?, inputShape: [Int], geometry: Pool2DGeometry,
                           reluOutput: Tensor? = nil) throws -> Tensor {
    let shape = try geometry.outputShape(inputShape, operation: "\(kind.rawValue) pool backward")
    guard dy.shape == shape, kind == .average || argmax?.shape == shape else {
        throw KilnError.shapeMismatch(operation: "\(kind.rawValue) pool backward", expected: describe(shape), got: describe(dy.shape))
    }
    let dx = try Tensor.empty(inputShape, on: dy.device)
    try dy.backend.pool2dBackward(kind, dy: dy, argmax: argmax, geometry: geometry, reluOutput: reluOutput, into: dx)
    return dx
}

/// Global pooling: one window over each whole plane, [N, C, H, W] -> [N, C, 1, 1].
public func globalPoolGeometry(for inputShape: [Int]) throws -> Pool2DGeometry {
    guard inputShape.count == 4, inputShape[2] > 0, inputShape[3] > 0 else {
        throw KilnError.shapeMismatch(operation: "global pool", expected: "[N, C, H, W]", got: describe(inputShape))
    }
    return try Pool2DGeometry(window: (inputShape[2], inputShape[3]), stride: (1, 1))
}
