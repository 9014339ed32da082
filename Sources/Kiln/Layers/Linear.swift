/// A fully connected layer: y = x · Wᵀ + b, with W [out, in] as in PyTorch.
public final class Linear: Layer {
    public let inputFeatures: Int, outputFeatures: Int
    public let weight: Parameter
    public let bias: Parameter?
    private var input: Tensor?

    public init(inputFeatures: Int, outputFeatures: Int, bias: Bool = true,
                weightInitializer: Initializer = .pytorchDefault, biasInitializer: Initializer = .pytorchDefault) throws {
        self.inputFeatures = inputFeatures
        self.outputFeatures = outputFeatures
        weight = try Parameter([outputFeatures, inputFeatures], initializer: weightInitializer,
                               fanIn: inputFeatures, fanOut: outputFeatures)
        self.bias = bias ? try Parameter([outputFeatures], initializer: biasInitializer, fanIn: inputFeatures, fanOut: outputFeatures) : nil
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        guard inputShape.count == 2, inputShape[1] == inputFeatures else {
            throw layerShapeError("Linear(\(inputFeatures) → \(outputFeatures))", expected: "[N, \(inputFeatures)]", got: inputShape)
        }
        return [inputShape[0], outputFeatures]
    }

    public func multiplyAccumulates(for inputShape: [Int]) throws -> Int { inputFeatures * outputFeatures }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        _ = try outputShape(for: x.shape)
        input = x
        // y [N, out] = x [N, in] · Wᵀ [in, out] (+ b broadcast over the batch)
        return try linear(x, weight: weight.value, bias: bias?.value)
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let x = input else { throw KilnError.invalidArgument("Linear: backward before forward") }
        if weight.requiresGradient {
            // dW [out, in] += dyᵀ [out, N] · x [N, in]
            try dy.matmul(x, transposeSelf: true, accumulatingInto: weight.gradientForAccumulation())
        }
        if let bias, bias.requiresGradient {
            // db [out] += Σ_n dy [n, out]
            try bias.gradientForAccumulation().axpby(alpha: 1, dy.sum(axis: 0), beta: 1)
        }
        // dx [N, in] = dy [N, out] · W [out, in]
        return try dy.matmul(weight.value)
    }
}
