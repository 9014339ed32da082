/// How a parameter is filled when a layer is created or reset. Seeded: the same seed gives the same values
/// on every device.
public enum Initializer: Equatable, Sendable {
    case zeros
    case ones
    case constant(Float)
    case uniform(low: Float, high: Float)
    case normal(mean: Float, std: Float)
    /// Glorot & Bengio: U(±sqrt(6 / (fan_in + fan_out))).
    case xavierUniform
    /// Glorot & Bengio: N(0, 2 / (fan_in + fan_out)).
    case xavierNormal
    /// He et al., for ReLU: U(±sqrt(6 / fan)), fan = fan_in or fan_out.
    case heUniform(FanMode = .fanIn)
    /// He et al., for ReLU: N(0, 2 / fan).
    case heNormal(FanMode = .fanIn)
    /// LeCun: U(±sqrt(3 / fan_in)).
    case lecunUniform
    /// LeCun: N(0, 1 / fan_in).
    case lecunNormal
    /// PyTorch's default for convolution and linear layers (weights and biases): U(±1 / sqrt(fan_in)).
    case pytorchDefault

    public enum FanMode: Equatable, Sendable { case fanIn, fanOut }

    /// Fills `tensor`, a parameter with the given fans, from the stream `seed`.
    public func fill(_ tensor: Tensor, fanIn: Int, fanOut: Int, seed: UInt64) throws {
        let (fanIn, fanOut) = (Float(Swift.max(fanIn, 1)), Float(Swift.max(fanOut, 1)))
        func uniform(_ bound: Float) throws {
            try tensor.fillUniform(low: -bound, high: bound, seed: seed)
        }
        func normal(_ std: Float) throws {
            try tensor.fillNormal(mean: 0, std: std, seed: seed)
        }
        switch self {
        case .zeros: try tensor.fill(0)
        case .ones: try tensor.fill(1)
        case let .constant(value): try tensor.fill(value)
        case let .uniform(low, high): try tensor.fillUniform(low: low, high: high, seed: seed)
        case let .normal(mean, std): try tensor.fillNormal(mean: mean, std: std, seed: seed)
        case .xavierUniform: try uniform((6 / (fanIn + fanOut)).squareRoot())
        case .xavierNormal: try normal((2 / (fanIn + fanOut)).squareRoot())
        case let .heUniform(mode): try uniform((6 / (mode == .fanIn ? fanIn : fanOut)).squareRoot())
        case let .heNormal(mode): try normal((2 / (mode == .fanIn ? fanIn : fanOut)).squareRoot())
        case .lecunUniform: try uniform((3 / fanIn).squareRoot())
        case .lecunNormal: try normal((1 / fanIn).squareRoot())
        case .pytorchDefault: try uniform(1 / fanIn.squareRoot())
        }
    }
}
