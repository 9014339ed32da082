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
