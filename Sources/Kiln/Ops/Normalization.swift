// Batch norm and local response normalisation: the op surface each backend implements, and the checked
// tensor-level API.

/// Batch-norm settings, PyTorch's defaults: running = (1 − momentum)·running + momentum·batch, with the
/// unbiased batch variance for the running estimate.
public struct BatchNormSettings: Equatable, Sendable {
    public var epsilon: Float = 1e-5
    public var momentum: Float = 0.1

    public init(epsilon: Float = 1e-5, momentum: Float = 0.1) {
        self.epsilon = epsilon
        self.momentum = momentum
    }
}

/// Local response normalisation (AlexNet), as PyTorch's `nn.LocalResponseNorm`:
/// b_c = a_c / (k + α/size · Σ a_{c'}²)^β over the `size` channels c − ⌊size/2⌋ … c + ⌊(size−1)/2⌋.
public struct LRNSettings: Equatable, Sendable {
    public var size: Int
    public var alpha: Float
    public var beta: Float
    public var k: Float

    public init(size: Int = 5, alpha: Float = 1e-4, beta: Float = 0.75, k: Float = 2) {
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k
    }
}

/// Normalisation ops of a `Backend`. Inputs are [N, C, H, W] (per-channel statistics over N, H, W) or
/// [N, C] (per feature over N); per-channel tensors are [C].
public protocol NormalizationBackend {
    /// Training forward with batch statistics: y = γ·(x − μ)·σ⁻¹ + β; saves μ and σ⁻¹ = 1/sqrt(var + ε) for
    /// backward, and updates the running mean and (unbiased) running variance in place.
    func batchNormTrainingForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                  settings: BatchNormSettings, into y: Tensor, savedMean: Tensor, savedInverseStd: Tensor) throws
    /// Inference forward with the running statistics.
    func batchNormInferenceForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                   settings: BatchNormSettings, into y: Tensor) throws
    /// dx = γσ⁻¹/m · (m·dy − Σdy − x̂·Σ(dy·x̂)) with m = N·H·W; dγ (+)= Σ dy·x̂, dβ (+)= Σ dy.
    func batchNormBackward(_ x: Tensor, dy: Tensor, gamma: Tensor, savedMean: Tensor, savedInverseStd: Tensor,
                           into dx: Tensor, gammaGradient: Tensor, betaGradient: Tensor, accumulate: Bool) throws
    func lrnForward(_ x: Tensor, settings: LRNSettings, into y: Tensor) throws
    func lrnBackward(_ x: Tensor, dy: Tensor, settings: LRNSettings, into dx: Tensor) throws
}

/// (batch, channels, inner) of a batch-norm input: [N, C, H, W] or [N, C].
func batchNormLayout(_ x: Tensor) -> (batch: Int, channels: Int, inner: Int) {
    (x.shape[0], x.shape[1], x.shape.dropFirst(2).reduce(1, *))
}

/// Checks a batch-norm input against its per-channel tensors; `operation` names the layer in errors.
func checkBatchNorm(_ shape: [Int], channels: Int, operation: String) throws {
    guard shape.count == 2 || shape.count == 4, shape[1] == channels else {
        throw KilnError.shapeMismatch(operation: operation, expected: "[N, \(channels)] or [N, \(channels), H, W]", got: describe(shape))
    }
}

// MARK: - Tensor-level API

/// What a training-mode batch norm keeps for its backward pass: the batch mean and 1/sqrt(var + ε), [C].
public struct BatchNormStatistics {
    public var mean: Tensor
    public var inverseStd: Tensor
}

/// Batch norm with the batch's statistics (training): returns y and the statistics backward needs, and
/// updates `runningMean` and `runningVariance` in place. x is [N, C] or [N, C, H, W]; the others are [C].
public func batchNormTraining(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                              settings: BatchNormSettings) throws -> (output: Tensor, statistics: BatchNormStatistics) {
    try checkBatchNormOperands(x, [gamma, beta, runningMean, runningVariance])
    let channels = gamma.count
    let y = try Tensor.empty(x.shape, on: x.device)
    let statistics = BatchNormStatistics(mean: try Tensor.empty([channels], on: x.device),
                                         inverseStd: try Tensor.empty([channels], on: x.device))
    try x.backend.batchNormTrainingForward(x, gamma: gamma, beta: beta, runningMean: runningMean, runningVariance: runningVariance,
                                           settings: settings, into: y, savedMean: statistics.mean,
                                           savedInverseStd: statistics.inverseStd)
    return (y, statistics)
}

/// Batch norm with the running statistics (inference).
public func batchNormInference(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                               settings: BatchNormSettings) throws -> Tensor {
    try checkBatchNormOperands(x, [gamma, beta, runningMean, runningVariance])
    let y = try Tensor.empty(x.shape, on: x.device)
    try x.backend.batchNormInferenceForward(x, gamma: gamma, beta: beta, runningMean: runningMean, runningVariance: runningVariance,
                                            settings: settings, into: y)
    return y
}

/// The input gradient of a training-mode batch norm; adds dγ and dβ to `gammaGradient` and `betaGradient`.
public func batchNormBackward(_ x: Tensor, dy: Tensor, gamma: Tensor, statistics: BatchNormStatistics,
                              accumulatingInto gammaGradient: Tensor, _ betaGradient: Tensor) throws -> Tensor {
    try checkBatchNormOperands(x, [gamma, statistics.mean, statistics.inverseStd, gammaGradient, betaGradient])
    try checkSameShape(dy, x, "batch norm backward")
    let dx = try Tensor.empty(x.shape, on: x.device)
    try x.backend.batchNormBackward(x, dy: dy, gamma: gamma, savedMean: statistics.mean, savedInverseStd: statistics.inverseStd,
                                    into: dx, gammaGradient: gammaGradient, betaGradient: betaGradient, accumulate: true)
    return dx
}

/// The gradients of an inference-mode batch norm, y = γ·(x − μ_r)·σ_r⁻¹ + β with the running statistics held
/// fixed: dx = dy·γ·σ_r⁻¹ per channel; dγ = Σ dy·(x − μ_r)·σ_r⁻¹ and dβ = Σ dy over N, H, W are added to the
/// gradients given (nil: not wanted). What saliency maps need of a model in inference mode, and what a
/// frozen batch norm (which keeps its running statistics while the layers around it train) passes back.
public func batchNormInferenceBackward(_ x: Tensor, dy: Tensor, gamma: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                       settings: BatchNormSettings, accumulatingInto gammaGradient: Tensor? = nil,
                                       _ betaGradient: Tensor? = nil) throws -> Tensor {
    try checkBatchNormOperands(x, [gamma, runningMean, runningVariance] + [gammaGradient, betaGradient].compactMap { $0 })
    try checkSameShape(dy, x, "batch norm backward")
    let (batch, channels, inner) = batchNormLayout(x)
    // σ_r⁻¹ = 1/sqrt(var_r + ε), [C]
    let inverseStd = try runningVariance.binary(.add, settings.epsilon).map(.sqrt).map(.reciprocal)
    let dx = try Tensor.empty(x.shape, on: x.device)
    try x.backend.binaryPerChannel(.mul, dy, try gamma * inverseStd, channels: channels, inner: inner, into: dx)
    // Σ over N and the inner positions of a [N, C, inner] tensor, [C]
    func channelSums(_ t: Tensor) throws -> Tensor { try t.reshaped([batch, channels, inner]).sum(axis: 2).sum(axis: 0) }
    if let betaGradient { try betaGradient.axpby(alpha: 1, try channelSums(dy), beta: 1) }
    if let gammaGradient {
        // x̂ = (x − μ_r)·σ_r⁻¹, [N, C, inner]
        let normalized = try Tensor.empty(x.shape, on: x.device)
        try x.backend.binaryPerChannel(.sub, x, runningMean, channels: channels, inner: inner, into: normalized)
        try x.backend.binaryPerChannel(.mul, normalized, inverseStd, channels: channels, inner: inner, into: normalized)
        try gammaGradient.axpby(alpha: 1, try channelSums(try normalized * dy), beta: 1)
    }
    return dx
}

/// Local response normalisation across the channels of x [N, C, ...].
public func localResponseNorm(_ x: Tensor, settings: LRNSettings) throws -> Tensor {
    try checkLRN(x)
    let y = try Tensor.empty(x.shape, on: x.device)
    try x.backend.lrnForward(x, settings: settings, into: y)
    return y
}

/// The input gradient of `localResponseNorm`.
public func localResponseNormBackward(_ x: Tensor, dy: Tensor, settings: LRNSettings) throws -> Tensor {
    try checkLRN(x)
    try checkSameShape(dy, x, "local response norm backward")
    let dx = try Tensor.empty(x.shape, on: x.device)
    try x.backend.lrnBackward(x, dy: dy, settings: settings, into: dx)
    return dx
}

private func checkBatchNormOperands(_ x: Tensor, _ perChannel: [Tensor]) throws {
    let channels = perChannel[0].count
    try checkBatchNorm(x.shape, channels: channels, operation: "batch norm")
    for tensor in perChannel {
        guard tensor.shape == [channels] else {
            throw KilnError.shapeMismatch(operation: "batch norm (per-channel tensors)", expected: "[\(channels)]", got: describe(tensor.shape))
        }
        try x.sameDevice(tensor, "batch norm")
    }
}

private func checkLRN(_ x: Tensor) throws {
    guard x.rank >= 2 else { throw KilnError.shapeMismatch(operation: "local response norm", expected: "[N, C, ...]", got: describe(x.shape)) }
}

/// A gradient must have its forward tensor's shape and device.
func checkSameShape(_ gradient: Tensor, _ reference: Tensor, _ operation: String) throws {
    try reference.sameDevice(gradient, operation)
    guard gradient.shape == reference.shape else {
        throw KilnError.shapeMismatch(operation: operation, expected: describe(reference.shape), got: describe(gradient.shape))
    }
}
