// Activations: the op surface each backend implements, and the checked tensor-level API.

/// An elementwise activation function. At kinks the derivative is the one PyTorch uses: ReLU'(0) = 0,
/// ReLU6' is 0 at 0 and 6, leaky ReLU'(0) = slope, ELU'(0) = 1.
public enum Activation: Equatable, Sendable, CustomStringConvertible {
    case relu
    case leakyReLU(slope: Float = 0.01)
    case elu(alpha: Float = 1)
    case sigmoid
    case tanh
    /// log(1 + eˣ), computed as max(x, 0) + log1p(e^−|x|) so it never overflows.
    case softplus
    /// x · sigmoid(x) (also called SiLU).
    case swish
    /// min(max(x, 0), 6).
    case relu6

    /// The kind and parameter the kernels take (activation.cl's `activation_kind`).
    var kernelCode: (kind: ActivationKind, parameter: Float) {
        switch self {
        case .relu: return (.relu, 0)
        case let .leakyReLU(slope): return (.leakyRelu, slope)
        case let .elu(alpha): return (.elu, alpha)
        case .sigmoid: return (.sigmoid, 0)
        case .tanh: return (.tanh, 0)
        case .softplus: return (.softplus, 0)
        case .swish: return (.swish, 0)
        case .relu6: return (.relu6, 0)
        }
    }

    public var description: String {
        switch self {
        case .relu: return "ReLU"
        case let .leakyReLU(slope): return "LeakyReLU(\(slope))"
        case let .elu(alpha): return "ELU(\(alpha))"
        case .sigmoid: return "Sigmoid"
        case .tanh: return "Tanh"
        case .softplus: return "Softplus"
        case .swish: return "Swish"
        case .relu6: return "ReLU6"
        }
    }
}

/// Activation ops of a `Backend`.
public protocol ActivationBackend {
    /// y = f(x)
    func activationForward(_ activation: Activation, _ x: Tensor, into y: Tensor) throws
    /// dx = f'(x) · dy
    func activationBackward(_ activation: Activation, x: Tensor, dy: Tensor, into dx: Tensor) throws
    /// PReLU with one slope per channel ([N, C, ...] input, [C] slopes) or a single shared slope ([1]).
    func preluForward(_ x: Tensor, slopes: Tensor, into y: Tensor) throws
    /// dx = dy where x > 0, slope · dy elsewhere; dslopes (+)= Σ dy · x over x ≤ 0, per channel.
    func preluBackward(x: Tensor, slopes: Tensor, dy: Tensor, into dx: Tensor, slopeGradient: Tensor, accumulate: Bool) throws
}

extension Tensor {
    /// f(self) elementwise.
    public func activated(_ activation: Activation) throws -> Tensor {
        let y = try Tensor.empty(shape, on: device)
        try backend.activationForward(activation, self, into: y)
        return y
    }

    /// The gradient through `activation` at input `self` for the upstream gradient `dy`.
    public func activationGradient(_ activation: Activation, dy: Tensor) throws -> Tensor {
        guard dy.shape == shape else {
            throw KilnError.shapeMismatch(operation: "\(activation) backward", expected: describe(shape), got: describe(dy.shape))
        }
        try sameDevice(dy, "\(activation) backward")
        let dx = try Tensor.empty(shape, on: device)
        try backend.activationBackward(activation, x: self, dy: dy, into: dx)
        return dx
    }
}

/// Checks PReLU operands: one slope per channel (`shape[1]`) or a single shared one.
/// PReLU: x where positive, slope·x elsewhere, with one slope per channel of x [N, C, ...] or one in all.
public func prelu(_ x: Tensor, slopes: Tensor) throws -> Tensor {
    try checkPReLU(x, slopes)
    let y = try Tensor.empty(x.shape, on: x.device)
    try x.backend.preluForward(x, slopes: slopes, into: y)
    return y
}

/// The input gradient of `prelu`; adds the slopes' gradient to `slopeGradient`.
public func preluBackward(_ x: Tensor, slopes: Tensor, dy: Tensor, accumulatingInto slopeGradient: Tensor) throws -> Tensor {
    try checkPReLU(x, slopes)
    try checkSameShape(dy, x, "PReLU backward")
    try checkSameShape(slopeGradient, slopes, "PReLU backward (slopes)")
    let dx = try Tensor.empty(x.shape, on: x.device)
    try x.backend.preluBackward(x: x, slopes: slopes, dy: dy, into: dx, slopeGradient: slopeGradient, accumulate: true)
    return dx
}

func checkPReLU(_ x: Tensor, _ slopes: Tensor) throws {
    guard slopes.rank == 1, slopes.count == 1 || (x.rank >= 2 && slopes.count == x.shape[1]) else {
        throw KilnError.shapeMismatch(operation: "PReLU", expected: "slopes [1] or [\(x.rank >= 2 ? x.shape[1] : 1)] for input \(describe(x.shape))",
                                      got: describe(slopes.shape))
    }
    try x.sameDevice(slopes, "PReLU")
}

/// (channels, inner) of a PReLU input: a shared slope sees the whole tensor as one channel.
func preluLayout(_ x: Tensor, _ slopes: Tensor) -> (channels: Int, inner: Int) {
    if slopes.count == 1 { return (1, x.count / Swift.max(x.rank >= 1 ? x.shape[0] : 1, 1)) }
    return (x.shape[1], x.shape.dropFirst(2).reduce(1, *))
}
