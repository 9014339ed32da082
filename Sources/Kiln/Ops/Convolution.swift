// Convolution: the op surface each backend implements, and the checked tensor-level API.

/// How a convolution pads its input with zeros.
public enum Conv2DPadding: Equatable, Sendable {
    /// `height` rows above and below, `width` columns left and right.
    case explicit(height: Int, width: Int)
    /// No padding.
    case valid
    /// The output has the input's size (stride 1 only, as in PyTorch); an odd total padding puts the extra
    /// row and column at the bottom and right.
    case same
}

/// The geometry of a 2-D convolution: kernel size, stride, zero padding, dilation and groups.
public struct Conv2DGeometry: Hashable, Sendable, CustomStringConvertible {
    public var kernelHeight: Int, kernelWidth: Int
    public var strideHeight: Int, strideWidth: Int
    public var padTop: Int, padBottom: Int, padLeft: Int, padRight: Int
    public var dilationHeight: Int, dilationWidth: Int
    public var groups: Int

    public init(kernelSize: (height: Int, width: Int), stride: (height: Int, width: Int) = (1, 1),
                padding: Conv2DPadding = .valid, dilation: (height: Int, width: Int) = (1, 1), groups: Int = 1) throws {
        kernelHeight = kernelSize.height
        kernelWidth = kernelSize.width
        strideHeight = stride.height
        strideWidth = stride.width
        dilationHeight = dilation.height
        dilationWidth = dilation.width
        self.groups = groups
        guard [kernelHeight, kernelWidth, strideHeight, strideWidth, dilationHeight, dilationWidth, groups].allSatisfy({ $0 > 0 }) else {
            throw KilnError.invalidArgument("conv2d: kernel size, stride, dilation and groups must be positive")
        }
        switch padding {
        case let .explicit(height, width):
            guard height >= 0, width >= 0 else { throw KilnError.invalidArgument("conv2d: negative padding") }
            (padTop, padBottom, padLeft, padRight) = (height, height, width, width)
        case .valid:
            (padTop, padBottom, padLeft, padRight) = (0, 0, 0, 0)
        case .same:
            guard strideHeight == 1, strideWidth == 1 else {
                throw KilnError.invalidArgument("conv2d: padding 'same' needs stride 1")
            }
            let totalHeight = dilationHeight * (kernelHeight - 1), totalWidth = dilationWidth * (kernelWidth - 1)
            (padTop, padBottom) = (totalHeight / 2, totalHeight - totalHeight / 2)
            (padLeft, padRight) = (totalWidth / 2, totalWidth - totalWidth / 2)
        }
    }

    /// A square kernel with equal stride, padding and dilation in both directions.
    public init(kernelSize: Int, stride: Int = 1, padding: Int = 0, dilation: Int = 1, groups: Int = 1) throws {
        try self.init(kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                      padding: .explicit(height: padding, width: padding), dilation: (dilation, dilation), groups: groups)
    }

    /// Output height and width for an input of `height` x `width`: floor((H + pads - d(k-1) - 1) / s) + 1.
    public func outputSize(height: Int, width: Int) -> (height: Int, width: Int) {
        let spanHeight = dilationHeight * (kernelHeight - 1) + 1, spanWidth = dilationWidth * (kernelWidth - 1) + 1
        let paddedHeight = height + padTop + padBottom, paddedWidth = width + padLeft + padRight
        return (paddedHeight < spanHeight ? 0 : (paddedHeight - spanHeight) / strideHeight + 1,
                paddedWidth < spanWidth ? 0 : (paddedWidth - spanWidth) / strideWidth + 1)
    }

    public var description: String {
        "kernel \(kernelHeight)x\(kernelWidth) stride \(strideHeight)x\(strideWidth) "
            + "pad \(padTop),\(padBottom),\(padLeft),\(padRight) dilation \(dilationHeight)x\(dilationWidth) groups \(groups)"
    }
}

/// The sizes of one convolution: input, weight and output dimensions, derived once and shared by both
/// backends.
public struct Conv2DShape: Hashable, Sendable {
    public var geometry: Conv2DGeometry
    public var batch: Int
    public var inputChannels: Int, inputHeight: Int, inputWidth: Int
    public var outputChannels: Int, outputHeight: Int, outputWidth: Int

    /// Input channels per group.
    public var groupInputChannels: Int { inputChannels / geometry.groups }
    /// Output channels per group.
    public var groupOutputChannels: Int { outputChannels / geometry.groups }
    /// Rows of the im2col matrix: one per (input channel of the group, kernel row, kernel column).
    public var patchSize: Int { groupInputChannels * geometry.kernelHeight * geometry.kernelWidth }
    /// Output pixels per channel.
    public var outputPixels: Int { outputHeight * outputWidth }
    public var inputShape: [Int] { [batch, inputChannels, inputHeight, inputWidth] }
    public var weightShape: [Int] { [outputChannels, groupInputChannels, geometry.kernelHeight, geometry.kernelWidth] }
    public var outputShape: [Int] { [batch, outputChannels, outputHeight, outputWidth] }
    /// Depthwise-style: each output channel reads a single input channel, so a direct kernel beats im2col.
    public var isDepthwise: Bool { geometry.groups > 1 && groupInputChannels == 1 }
    /// 1×1, stride 1, no padding: the input of each image already is its im2col matrix [C_in/g, H·W], so
    /// the convolution is a pure GEMM.
    public var isPointwise: Bool {
        geometry.kernelHeight == 1 && geometry.kernelWidth == 1 && geometry.strideHeight == 1 && geometry.strideWidth == 1
            && geometry.padTop == 0 && geometry.padBottom == 0 && geometry.padLeft == 0 && geometry.padRight == 0
    }

    /// 3×3, stride 1, dilation 1, one group: the shape Winograd F(2×2, 3×3) computes (forward and data gradient).
    public var isWinogradShape: Bool {
        geometry.kernelHeight == 3 && geometry.kernelWidth == 3 && geometry.strideHeight == 1 && geometry.strideWidth == 1
            && geometry.dilationHeight == 1 && geometry.dilationWidth == 1 && geometry.groups == 1
    }

    /// Checks an input shape and a weight shape against `geometry`.
    public init(input: [Int], weight: [Int], geometry: Conv2DGeometry, operation: String = "conv2d") throws {
        guard input.count == 4 else {
            throw KilnError.shapeMismatch(operation: operation, expected: "input [N, C, H, W]", got: describe(input))
        }
        guard weight.count == 4, weight[0] % geometry.groups == 0, input[1] % geometry.groups == 0,
              weight[1] * geometry.groups == input[1], weight[2] == geometry.kernelHeight, weight[3] == geometry.kernelWidth else {
            throw KilnError.shapeMismatch(
                operation: operation,
                expected: "weight [C_out, \(input[1] / Swift.max(geometry.groups, 1)), \(geometry.kernelHeight), \(geometry.kernelWidth)]"
                    + " for input \(describe(input)) with \(geometry.groups) group(s)",
                got: "weight \(describe(weight))")
        }
        self.geometry = geometry
        (batch, inputChannels, inputHeight, inputWidth) = (input[0], input[1], input[2], input[3])
        outputChannels = weight[0]
        (outputHeight, outputWidth) = geometry.outputSize(height: inputHeight, width: inputWidth)
        guard outputHeight > 0, outputWidth > 0 else {
            throw KilnError.shapeMismatch(operation: operation,
                                          expected: "an input of at least the kernel's span (\(geometry))",
                                          got: "input \(describe(input)), which leaves an empty output")
        }
    }
}

/// Convolution ops of a `Backend`. NCHW input, OIHW weight (`[C_out, C_in / groups, kh, kw]`).
/// With `accumulate`, a backward op adds to its output instead of overwriting it (parameter gradients).
public protocol ConvolutionBackend {
    /// y = x ⋆ w (+ bias per output channel), with `relu` passed through max(·, 0) in the same pass where
    /// the algorithm allows (a convolution followed by ReLU, or by a batch norm folded into it).
    func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape: Conv2DShape, relu: Bool, into y: Tensor) throws
    /// The forward pass followed by 2x2 max pooling with stride 2 (no padding, a last odd row or column
    /// dropped): y is [N, C_out, ⌊OH/2⌋, ⌊OW/2⌋]. For inference, where no arg-max is kept.
    func conv2dForwardMaxPooled(_ x: Tensor, weight: Tensor, bias: Tensor?, shape: Conv2DShape, relu: Bool, into y: Tensor) throws
    /// dx = dy ⋆ᵀ w: the gradient with respect to the input.
    func conv2dBackwardData(_ dy: Tensor, weight: Tensor, shape: Conv2DShape, into dx: Tensor) throws
    /// dw = Σ over the batch of dy ⊗ patches of x: the gradient with respect to the weight.
    func conv2dBackwardFilter(_ x: Tensor, _ dy: Tensor, shape: Conv2DShape, into dw: Tensor, accumulate: Bool) throws
}

extension Backend {
    /// conv2dForwardMaxPooled as two ops: the convolution into a scratch tensor, then the pooling (what the
    /// host does, and the OpenCL backend with an algorithm that has no pooled form).
    func convolveThenMaxPool(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, relu: Bool, into y: Tensor) throws {
        let convolved = try Tensor.empty(s.outputShape, on: device)
        try conv2dForward(x, weight: weight, bias: bias, shape: s, relu: relu, into: convolved)
        try pool2dForward(.max, convolved, geometry: try Pool2DGeometry(window: 2), relu: false, into: y, argmax: nil)
    }

    /// dbias[c] = Σ over n, h, w of dy[n, c, h, w].
    public func conv2dBackwardBias(_ dy: Tensor, into dbias: Tensor, accumulate: Bool) throws {
        let (n, c) = (dy.shape[0], dy.shape[1])
        let perImage = try Tensor.empty([n, c], on: device)
        try reduce(.sum, dy, as: ReductionShape(outer: n * c, axis: dy.count / Swift.max(n * c, 1), inner: 1), into: perImage)
        if accumulate {
            let total = try Tensor.empty([c], on: device)
            try reduce(.sum, perImage, as: ReductionShape(outer: 1, axis: n, inner: c), into: total)
            try axpby(alpha: 1, total, beta: 1, dbias)
        } else {
            try reduce(.sum, perImage, as: ReductionShape(outer: 1, axis: n, inner: c), into: dbias)
        }
    }
}

// MARK: - Tensor-level API

/// 2-D convolution (cross-correlation, as every framework computes it) of `x` [N, C_in, H, W] with
/// `weight` [C_out, C_in / groups, kh, kw] and an optional `bias` [C_out]; with `relu`, followed by
/// max(·, 0) in the same pass.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, geometry: Conv2DGeometry, relu: Bool = false) throws -> Tensor {
    let shape = try Conv2DShape(input: x.shape, weight: weight.shape, geometry: geometry)
    try x.sameDevice(weight, "conv2d")
    if let bias {
        try x.sameDevice(bias, "conv2d")
        guard bias.shape == [shape.outputChannels] else {
            throw KilnError.shapeMismatch(operation: "conv2d bias", expected: "[\(shape.outputChannels)]", got: describe(bias.shape))
        }
    }
    let y = try Tensor.empty(shape.outputShape, on: x.device)
    try x.backend.conv2dForward(x, weight: weight, bias: bias, shape: shape, relu: relu, into: y)
    return y
}

/// `conv2d` followed by 2x2 max pooling with stride 2, in one pass where the backend can: what a
/// convolution, its ReLU and a max pool compute in inference. No arg-max is kept, so there is no backward.
public func conv2dMaxPooled(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, geometry: Conv2DGeometry, relu: Bool = false) throws -> Tensor {
    let shape = try Conv2DShape(input: x.shape, weight: weight.shape, geometry: geometry)
    try x.sameDevice(weight, "conv2d")
    if let bias { try x.sameDevice(bias, "conv2d") }
    guard shape.outputHeight >= 2, shape.outputWidth >= 2 else {
        throw KilnError.invalidArgument("conv2d + max pooling: a \(shape.outputHeight)x\(shape.outputWidth) output is smaller than the 2x2 window")
    }
    let y = try Tensor.empty([shape.batch, shape.outputChannels, shape.outputHeight / 2, shape.outputWidth / 2], on: x.device)
    try x.backend.conv2dForwardMaxPooled(x, weight: weight, bias: bias, shape: shape, relu: relu, into: y)
    return y
}

/// The gradient of `conv2d` with respect to its input of shape `inputShape`.
public func conv2dBackwardData(_ dy: Tensor, weight: Tensor, inputShape: [Int], geometry: Conv2DGeometry) throws -> Tensor {
    let shape = try Conv2DShape(input: inputShape, weight: weight.shape, geometry: geometry, operation: "conv2d backward")
    try checkOutputGradient(dy, shape)
    try dy.sameDevice(weight, "conv2d backward")
    let dx = try Tensor.empty(inputShape, on: dy.device)
    try dy.backend.conv2dBackwardData(dy, weight: weight, shape: shape, into: dx)
    return dx
}

/// The gradient of `conv2d` with respect to its weight of shape `weightShape`.
public func conv2dBackwardFilter(_ x: Tensor, _ dy: Tensor, weightShape: [Int], geometry: Conv2DGeometry) throws -> Tensor {
    let shape = try filterGradientShape(x, dy, weightShape: weightShape, geometry: geometry)
    let dw = try Tensor.empty(weightShape, on: dy.device)
    try dy.backend.conv2dBackwardFilter(x, dy, shape: shape, into: dw, accumulate: false)
    return dw
}

/// Adds the gradient of `conv2d` with respect to its weight to `dw` (a parameter's gradient, weight-shaped).
public func conv2dBackwardFilter(_ x: Tensor, _ dy: Tensor, geometry: Conv2DGeometry, accumulatingInto dw: Tensor) throws {
    let shape = try filterGradientShape(x, dy, weightShape: dw.shape, geometry: geometry)
    try dy.sameDevice(dw, "conv2d backward")
    try dy.backend.conv2dBackwardFilter(x, dy, shape: shape, into: dw, accumulate: true)
}

private func filterGradientShape(_ x: Tensor, _ dy: Tensor, weightShape: [Int], geometry: Conv2DGeometry) throws -> Conv2DShape {
    let shape = try Conv2DShape(input: x.shape, weight: weightShape, geometry: geometry, operation: "conv2d backward")
    try checkOutputGradient(dy, shape)
    try dy.sameDevice(x, "conv2d backward")
    return shape
}

/// The gradient of `conv2d` with respect to its bias: the sum of `dy` over batch, height and width.
public func conv2dBackwardBias(_ dy: Tensor) throws -> Tensor {
    let dbias = try Tensor.empty([try biasChannels(dy)], on: dy.device)
    try dy.backend.conv2dBackwardBias(dy, into: dbias, accumulate: false)
    return dbias
}

/// Adds the gradient of `conv2d` with respect to its bias to `dbias` ([C]).
public func conv2dBackwardBias(_ dy: Tensor, accumulatingInto dbias: Tensor) throws {
    let channels = try biasChannels(dy)
    guard dbias.shape == [channels] else {
        throw KilnError.shapeMismatch(operation: "conv2d backward (bias)", expected: "[\(channels)]", got: describe(dbias.shape))
    }
    try dy.sameDevice(dbias, "conv2d backward (bias)")
    try dy.backend.conv2dBackwardBias(dy, into: dbias, accumulate: true)
}

private func biasChannels(_ dy: Tensor) throws -> Int {
    guard dy.rank == 4 else {
        throw KilnError.shapeMismatch(operation: "conv2d backward (bias)", expected: "[N, C, H, W]", got: describe(dy.shape))
    }
    return dy.shape[1]
}

private func checkOutputGradient(_ dy: Tensor, _ shape: Conv2DShape) throws {
    guard dy.shape == shape.outputShape else {
        throw KilnError.shapeMismatch(operation: "conv2d backward", expected: "output gradient \(describe(shape.outputShape))",
                                      got: describe(dy.shape))
    }
}
