/// Batch normalisation over channels of [N, C, H, W] (`BatchNorm(features:)` also takes [N, C]), as PyTorch's
/// BatchNorm2d/1d: learnable `weight` (γ) and `bias` (β), buffers `running_mean`, `running_var` and
/// `num_batches_tracked`.
///
/// A frozen batch norm (γ and β both frozen) runs in inference mode in training too, as Keras's do: it
/// normalises with its running statistics and keeps them, so a frozen backbone computes what it was trained
/// to compute while the layers after it train.
public final class BatchNorm: Layer {
    public let features: Int
    public let settings: BatchNormSettings
    public let weight: Parameter, bias: Parameter
    public let runningMean: Parameter, runningVariance: Parameter, batchesTracked: Parameter
    /// What the last forward keeps for backward: the input, and the batch statistics of a training-mode pass
    /// (nil after an inference-mode one, whose backward uses the running statistics).
    private var saved: (x: Tensor, statistics: BatchNormStatistics?)?
    /// Set after a synchronised training forward (data-parallel `--sync-bn`): its synchroniser and statistics.
    private var synchronized: (synchronizer: BatchNormSynchronizer, statistics: BatchNormSynchronizer.Statistics)?

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

    /// Whether γ and β are both frozen, so that training leaves the running statistics as they are.
    public var isFrozen: Bool { !weight.requiresGradient && !bias.requiresGradient }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        _ = try outputShape(for: x.shape)
        guard context.training, !isFrozen else {
            saved = (x, nil)
            synchronized = nil
            return try batchNormInference(x, gamma: weight.value, beta: bias.value, runningMean: runningMean.value,
                                          runningVariance: runningVariance.value, settings: settings)
        }
        let y: Tensor, statistics: BatchNormStatistics
        if let synchronizer = context.batchNormSync {
            let synced = try synchronizer.trainingForward(x, gamma: weight.value, beta: bias.value, runningMean: runningMean.value,
                                                          runningVariance: runningVariance.value, settings: settings)
            (y, statistics) = (synced.output, synced.statistics.batch)
            synchronized = (synchronizer, synced.statistics)
        } else {
            (y, statistics) = try batchNormTraining(x, gamma: weight.value, beta: bias.value, runningMean: runningMean.value,
                                                    runningVariance: runningVariance.value, settings: settings)
            synchronized = nil
        }
        try batchesTracked.value.assign(batchesTracked.value + 1)
        for buffer in [runningMean, runningVariance, batchesTracked] { buffer.markModified() }
        saved = (x, statistics)
        return y
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let saved else { throw KilnError.invalidArgument("BatchNorm(\(features)): backward before forward") }
        guard let statistics = saved.statistics else {
            synchronized = nil
            return try batchNormInferenceBackward(saved.x, dy: dy, gamma: weight.value, runningMean: runningMean.value,
                                                  runningVariance: runningVariance.value, settings: settings,
                                                  accumulatingInto: weight.requiresGradient ? try weight.gradientForAccumulation() : nil,
                                                  bias.requiresGradient ? try bias.gradientForAccumulation() : nil)
        }
        // A layer with one of γ, β frozen still passes the gradient to its input; the frozen one's goes to scratch.
        let gammaGradient = weight.requiresGradient ? try weight.gradientForAccumulation() : try Tensor.empty([features], on: dy.device)
        let betaGradient = bias.requiresGradient ? try bias.gradientForAccumulation() : try Tensor.empty([features], on: dy.device)
        if let (synchronizer, synced) = synchronized {
            return try synchronizer.backward(saved.x, dy: dy, gamma: weight.value, statistics: synced,
                                             accumulatingInto: gammaGradient, betaGradient)
        }
        return try batchNormBackward(saved.x, dy: dy, gamma: weight.value, statistics: statistics,
                                     accumulatingInto: gammaGradient, betaGradient)
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
        return try localResponseNorm(x, settings: settings)
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let input else { throw KilnError.invalidArgument("LocalResponseNorm: backward before forward") }
        return try localResponseNormBackward(input, dy: dy, settings: settings)
    }
}
