// Optimiser updates: the op surface each backend implements.

/// The update rule of an optimiser, with PyTorch's formulations (g is the gradient after regularisation).
public enum UpdateRule: Equatable, Sendable {
    /// v = μ·v + g; p −= lr·v (or, Nesterov, p −= lr·(g + μ·v)). μ = 0 is plain SGD.
    case sgd(momentum: Float = 0, nesterov: Bool = false)
    /// s += g²; p −= lr·g / (sqrt(s) + ε).
    case adagrad(epsilon: Float = 1e-10)
    /// s = ρs + (1−ρ)g²; Δ = sqrt(d + ε)/sqrt(s + ε)·g; d = ρd + (1−ρ)Δ²; p −= lr·Δ.
    case adadelta(rho: Float = 0.9, epsilon: Float = 1e-6)
    /// s = αs + (1−α)g²; with momentum μ: b = μb + g/(sqrt(s) + ε), p −= lr·b; else p −= lr·g/(sqrt(s) + ε).
    case rmsprop(alpha: Float = 0.99, epsilon: Float = 1e-8, momentum: Float = 0)
    /// m = β₁m + (1−β₁)g; v = β₂v + (1−β₂)g²; p −= lr·m̂/(sqrt(v̂) + ε) with bias-corrected m̂, v̂. With
    /// `decoupledWeightDecay` (AdamW) the weight decay is p −= lr·wd·p instead of an L2 term in g.
    case adam(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, decoupledWeightDecay: Bool = false)

    /// Number of state tensors (shaped like the parameter) the rule keeps.
    public var stateCount: Int {
        switch self {
        case .sgd, .adagrad: return 1
        case .adadelta, .rmsprop, .adam: return 2
        }
    }

    /// PyTorch's names for the state tensors, used in checkpoints.
    public var stateNames: [String] {
        switch self {
        case .sgd: return ["momentum_buffer"]
        case .adagrad: return ["sum"]
        case .adadelta: return ["square_avg", "acc_delta"]
        case .rmsprop: return ["square_avg", "momentum_buffer"]
        case .adam: return ["exp_avg", "exp_avg_sq"]
        }
    }

    /// The kernel's rule and its three hyper-parameters (optimizer.cl).
    var kernelCode: (kind: UpdateRuleKind, h: (Float, Float, Float)) {
        switch self {
        case let .sgd(momentum, nesterov): return (.sgd, (momentum, nesterov ? 1 : 0, 0))
        case let .adagrad(epsilon): return (.adagrad, (epsilon, 0, 0))
        case let .adadelta(rho, epsilon): return (.adadelta, (rho, epsilon, 0))
        case let .rmsprop(alpha, epsilon, momentum): return (.rmsprop, (alpha, epsilon, momentum))
        case let .adam(beta1, beta2, epsilon, decoupled): return (decoupled ? .adamw : .adam, (beta1, beta2, epsilon))
        }
    }
}

/// Penalties folded into the gradient: g = ∇ + wd·p + l1·sign(p) (for AdamW, wd decays p directly).
public struct Regularization: Equatable, Sendable {
    public var weightDecay: Float
    public var l1: Float

    public init(weightDecay: Float = 0, l1: Float = 0) {
        self.weightDecay = weightDecay
        self.l1 = l1
    }
}

/// Optimiser update ops of a `Backend`: one fused pass over a parameter, its gradient and its state.
public protocol OptimizerBackend {
    /// Updates `parameter` and `state` in place from `gradient` (left unchanged). `step` is the 1-based
    /// number of this update (Adam's bias correction).
    func applyUpdate(_ rule: UpdateRule, parameter: Tensor, gradient: Tensor, state: [Tensor], learningRate: Float,
                     step: Int, regularization: Regularization) throws
}
