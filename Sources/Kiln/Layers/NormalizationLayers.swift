/// Batch normalisation over channels of [N, C, H, W] (`BatchNorm(features:)` also takes [N, C]), as PyTorch's
/// BatchNorm2d/1d: learnable `weight` (γ) and `bias` (β), buffers `running_mean`, `running_var` and
/// `num_batches_tracked`.
public final class BatchNorm: Layer {
    public let features: Int
    public let settings: BatchNormSettings
    public let weight: Parameter, bias: Parameter
    public let runningMean: Parameter, runningVariance: Parameter, batchesTracked: Parameter
    private var saved: (x: Tensor, mean: Tensor, inverseStd: Tensor)?

    public init(features: Int, settings: BatchNormSettings = BatchNormSettings()) throws {
        self.features = features
        self.settings = settings
        weight = try Parameter([features], initializer: .ones)
        bias = try Parameter([features], initializer: .zeros)
        runningMean = try Parameter([features], initializer: .zeros, isBuffer: true)
        runningVariance = try Parameter([features], initializer: .ones, isBuffer: true)
        batchesTracked = try Parameter([], initializer: .zeros, isBuffer: true, storedType: .int64)
    }

    public var typeName: String { "BatchNorm" }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVariance),
         ("num_batches_tracked", batchesTracked)]
    }

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        try checkBatchNorm(inputShape, channels: features, operation: "BatchNorm(\(features))")
        return inputShape
    }

    public func multiplyAccumulates(for inputShape: [Int]) throws -> Int { inputShape.dropFirst().reduce(1, *) }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        _ = try outputShape(for: x.shape)
        let y = try Tensor.empty(x.shape, on: x.device)
        if context.training {
            let (mean, inverseStd) = (try Tensor.empty([features], on: x.device), try Tensor.empty([features], on: x.device))
            try x.backend.batchNormTrainingForward(x, gamma: weight.value, beta: bias.value, runningMean: runningMean.value,
                                                   runningVariance: runningVariance.value, settings: settings, into: y,
                                                   savedMean: mean, savedInverseStd: inverseStd)
            try x.backend.binary(.add, batchesTracked.value, scalar: 1, into: batchesTracked.value)
            saved = (x, mean, inverseStd)
        } else {
            try x.backend.batchNormInferenceForward(x, gamma: weight.value, beta: bias.value, runningMean: runningMean.value,
                                                    runningVariance: runningVariance.value, settings: settings, into: y)
            saved = nil
        }
        return y
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let saved else { throw KilnError.invalidArgument("BatchNorm(\(features)): backward needs a training-mode forward") }
        let dx = try Tensor.empty(dy.shape, on: dy.device)
        let trainable = weight.requiresGradient
        // A frozen layer still passes the gradient to its input; its parameter gradients go to scratch.
        let gammaGradient = trainable ? try weight.gradientForAccumulation() : try Tensor.empty([features], on: dy.device)
        let betaGradient = bias.requiresGradient ? try bias.gradientForAccumulation() : try Tensor.empty([features], on: dy.device)
        try dy.backend.batchNormBackward(saved.x, dy: dy, gamma: weight.value, savedMean: saved.mean, savedInverseStd: saved.inverseStd,
                                         into: dx, gammaGradient: gammaGradient, betaGradient: betaGradient, accumulate: true)
        return dx
    }
}

/// Local response normalisation across channels (AlexNet).
public final class LocalResponseNorm: Layer {
    public let settings: LRNSettings
    private var input: Tensor?

    public init(settings: LRNSettings = LRNSettings()) { self.settings = settings }

    public var typeName: String { "LocalResponseNorm" }

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        guard inputShape.count >= 2 else { throw layerShapeError("LocalResponseNorm", expected: "[N, C, ...]", got: inputShape) }
        return inputShape
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        _ = try outputShape(for: x.shape)
        input = x
        let y = try Tensor.empty(x.shape, on: x.device)
        try x.backend.lrnForward(x, settings: settings, into: y)
        return y
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let input else { throw KilnError.invalidArgument("LocalResponseNorm: backward before forward") }
        let dx = try Tensor.empty(dy.shape, on: dy.device)
        try dy.backend.lrnBackward(input, dy: dy, settings: settings, into: dx)
        return dx
    }
}
