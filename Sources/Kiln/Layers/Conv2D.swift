/// A 2-D convolution layer over NCHW input with OIHW weights, as PyTorch's `nn.Conv2d`.
public final class Conv2D: Layer {
    public let inputChannels: Int, outputChannels: Int
    public let geometry: Conv2DGeometry
    public let weight: Parameter
    public let bias: Parameter?
    private var input: Tensor?
    private var shape: Conv2DShape?
    private var needsInputGradient = true
    /// The weights with a following batch norm folded in, and the parameter versions they were made from.
    var folded: FoldedConvolution?

    public convenience init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                dilation: Int = 1, groups: Int = 1, bias: Bool = true,
                weightInitializer: Initializer = .pytorchDefault, biasInitializer: Initializer = .pytorchDefault) throws {
        try self.init(inputChannels: inputChannels, outputChannels: outputChannels,
                      geometry: Conv2DGeometry(kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation, groups: groups),
                      bias: bias, weightInitializer: weightInitializer, biasInitializer: biasInitializer)
    }

    public init(inputChannels: Int, outputChannels: Int, geometry: Conv2DGeometry, bias: Bool = true,
                weightInitializer: Initializer = .pytorchDefault, biasInitializer: Initializer = .pytorchDefault) throws {
        guard inputChannels % geometry.groups == 0, outputChannels % geometry.groups == 0 else {
            throw KilnError.invalidArgument("Conv2D: \(inputChannels) input and \(outputChannels) output channels "
                                            + "are not both divisible by \(geometry.groups) groups")
        }
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.geometry = geometry
        let fanIn = inputChannels / geometry.groups * geometry.kernelHeight * geometry.kernelWidth
        let fanOut = outputChannels / geometry.groups * geometry.kernelHeight * geometry.kernelWidth
        weight = try Parameter([outputChannels, inputChannels / geometry.groups, geometry.kernelHeight, geometry.kernelWidth],
                               initializer: weightInitializer, fanIn: fanIn, fanOut: fanOut)
        self.bias = bias ? try Parameter([outputChannels], initializer: biasInitializer, fanIn: fanIn, fanOut: fanOut) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    private var name: String { "Conv2D(\(inputChannels) → \(outputChannels), \(geometry))" }

    private func convolutionShape(_ inputShape: [Int]) throws -> Conv2DShape {
        guard inputShape.count == 4, inputShape[1] == inputChannels else {
            throw layerShapeError(name, expected: "[N, \(inputChannels), H, W]", got: inputShape)
        }
        return try Conv2DShape(input: inputShape, weight: weight.value.shape, geometry: geometry, operation: name)
    }

    public func outputShape(for inputShape: [Int]) throws -> [Int] { try convolutionShape(inputShape).outputShape }

    public func multiplyAccumulates(for inputShape: [Int]) throws -> Int {
        let s = try convolutionShape(inputShape)
        return s.outputChannels * s.outputPixels * s.patchSize
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let s = try convolutionShape(x.shape)
        input = x
        shape = s
        needsInputGradient = context.needsInputGradient
        return try conv2d(x, weight: weight.value, bias: bias?.value, geometry: s.geometry)
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let x = input, let s = shape else { throw KilnError.invalidArgument("\(name): backward before forward") }
        if weight.requiresGradient {
            try conv2dBackwardFilter(x, dy, geometry: s.geometry, accumulatingInto: weight.gradientForAccumulation())
        }
        if let bias, bias.requiresGradient {
            try conv2dBackwardBias(dy, accumulatingInto: bias.gradientForAccumulation())
        }
        // The first layer's input gradient is never used: skip its pass (the result is left unset).
        guard needsInputGradient else { return try Tensor.empty(s.inputShape, on: dy.device) }
        return try conv2dBackwardData(dy, weight: weight.value, inputShape: s.inputShape, geometry: s.geometry)
    }
}
