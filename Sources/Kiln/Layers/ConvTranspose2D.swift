/// A 2-D transposed convolution over NCHW input, as PyTorch's `nn.ConvTranspose2d`: weight
/// `[C_in, C_out / groups, kh, kw]`, bias `[C_out]`, and an output of
/// `(H − 1)·stride − 2·padding + dilation·(k − 1) + outputPadding + 1` rows (likewise columns).
///
/// A transposed convolution is the backward-data pass of an ordinary convolution whose input has the
/// transposed convolution's output shape and whose output has its input shape, with the same weight
/// (read as OIHW with O = C_in). So the layer needs no kernels of its own:
///
/// | transposed convolution | the underlying convolution (input [N, C_out, H_out, W_out] → [N, C_in, H, W]) |
/// |---|---|
/// | forward                | backward-data                                                                  |
/// | input gradient         | forward                                                                        |
/// | weight gradient        | backward-filter, with the output gradient as the convolution's input and the layer's input as its output gradient |
/// | bias gradient          | the sum of the output gradient over N, H, W                                    |
///
/// `outputPadding` (extra rows at the bottom and columns at the right, which only the bias reaches) must be
/// smaller than the stride: it picks one of the `stride` output sizes that the underlying convolution maps
/// to the same input size. (PyTorch also accepts `outputPadding < dilation` with stride 1; Kiln does not.)
public final class ConvTranspose2D: Layer {
    public let inputChannels: Int, outputChannels: Int
    /// The geometry of the underlying convolution: kernel, stride, padding, dilation and groups.
    public let geometry: Conv2DGeometry
    public let outputPaddingHeight: Int, outputPaddingWidth: Int
    public let weight: Parameter
    public let bias: Parameter?
    private var input: Tensor?
    private var shape: Conv2DShape?

    /// A square kernel with equal stride, padding, output padding and dilation in both directions.
    public convenience init(inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            outputPadding: Int = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = true,
                            weightInitializer: Initializer = .pytorchDefault, biasInitializer: Initializer = .pytorchDefault) throws {
        try self.init(inputChannels: inputChannels, outputChannels: outputChannels,
                      geometry: Conv2DGeometry(kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation, groups: groups),
                      outputPadding: (outputPadding, outputPadding), bias: bias,
                      weightInitializer: weightInitializer, biasInitializer: biasInitializer)
    }

    public init(inputChannels: Int, outputChannels: Int, geometry: Conv2DGeometry, outputPadding: (height: Int, width: Int) = (0, 0),
                bias: Bool = true, weightInitializer: Initializer = .pytorchDefault, biasInitializer: Initializer = .pytorchDefault) throws {
        guard inputChannels % geometry.groups == 0, outputChannels % geometry.groups == 0 else {
            throw KilnError.invalidArgument("ConvTranspose2D: \(inputChannels) input and \(outputChannels) output channels "
                                            + "are not both divisible by \(geometry.groups) groups")
        }
        guard (0..<geometry.strideHeight).contains(outputPadding.height), (0..<geometry.strideWidth).contains(outputPadding.width) else {
            throw KilnError.invalidArgument("ConvTranspose2D: output padding \(outputPadding.height)x\(outputPadding.width) must be "
                                            + "non-negative and smaller than the stride \(geometry.strideHeight)x\(geometry.strideWidth)")
        }
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.geometry = geometry
        (outputPaddingHeight, outputPaddingWidth) = outputPadding
        let kernelArea = geometry.kernelHeight * geometry.kernelWidth
        // PyTorch computes the fans from the weight's dimensions 1 and 0, which for this layout are the
        // output and the input channels.
        let fanIn = outputChannels / geometry.groups * kernelArea
        let fanOut = inputChannels * kernelArea
        weight = try Parameter([inputChannels, outputChannels / geometry.groups, geometry.kernelHeight, geometry.kernelWidth],
                               initializer: weightInitializer, fanIn: fanIn, fanOut: fanOut)
        self.bias = bias ? try Parameter([outputChannels], initializer: biasInitializer, fanIn: fanIn, fanOut: fanOut) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    private var name: String {
        "ConvTranspose2D(\(inputChannels) → \(outputChannels), \(geometry) output padding \(outputPaddingHeight)x\(outputPaddingWidth))"
    }

    /// The underlying convolution for an input of `inputShape` ([N, C_in, H, W]): its input is this layer's
    /// output [N, C_out, H_out, W_out], its output this layer's input.
    private func convolutionShape(_ inputShape: [Int]) throws -> Conv2DShape {
        guard inputShape.count == 4, inputShape[1] == inputChannels else {
            throw layerShapeError(name, expected: "[N, \(inputChannels), H, W]", got: inputShape)
        }
        let g = geometry
        let outputHeight = (inputShape[2] - 1) * g.strideHeight - g.padTop - g.padBottom
            + g.dilationHeight * (g.kernelHeight - 1) + outputPaddingHeight + 1
        let outputWidth = (inputShape[3] - 1) * g.strideWidth - g.padLeft - g.padRight
            + g.dilationWidth * (g.kernelWidth - 1) + outputPaddingWidth + 1
        guard inputShape[2] > 0, inputShape[3] > 0, outputHeight > 0, outputWidth > 0 else {
            throw layerShapeError(name, expected: "an input large enough for a non-empty output", got: inputShape)
        }
        let s = try Conv2DShape(input: [inputShape[0], outputChannels, outputHeight, outputWidth], weight: weight.value.shape,
                                geometry: geometry, operation: name)
        // Holds whenever outputPadding < stride (checked at init); a guard, not an expected path.
        guard s.outputShape == inputShape else {
            throw layerShapeError(name, expected: "an input that the \(outputHeight)x\(outputWidth) output maps back to", got: inputShape)
        }
        return s
    }

    public func outputShape(for inputShape: [Int]) throws -> [Int] { try convolutionShape(inputShape).inputShape }

    /// Every input element meets C_out/groups · kh · kw weights: the underlying convolution's count.
    public func multiplyAccumulates(for inputShape: [Int]) throws -> Int {
        let s = try convolutionShape(inputShape)
        return s.outputChannels * s.outputPixels * s.patchSize
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let s = try convolutionShape(x.shape)
        input = x
        shape = s
        // y [N, C_out, H_out, W_out] = the underlying convolution's input gradient for "output gradient" x.
        let y = try conv2dBackwardData(x, weight: weight.value, inputShape: s.inputShape, geometry: s.geometry)
        if let bias { try y.addPerChannel(bias.value) }
        return y
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let x = input, let s = shape else { throw KilnError.invalidArgument("\(name): backward before forward") }
        guard dy.shape == s.inputShape else {
            throw layerShapeError(name, expected: "output gradient \(describe(s.inputShape))", got: dy.shape)
        }
        if weight.requiresGradient {
            // dw [C_in, C_out/g, kh, kw]: the underlying convolution's weight gradient with dy as its input
            // and x as its output gradient.
            try conv2dBackwardFilter(dy, x, geometry: s.geometry, accumulatingInto: weight.gradientForAccumulation())
        }
        if let bias, bias.requiresGradient {
            try conv2dBackwardBias(dy, accumulatingInto: bias.gradientForAccumulation())
        }
        // dx [N, C_in, H, W] = the underlying convolution applied to dy.
        return try conv2d(dy, weight: weight.value, geometry: s.geometry)
    }
}
