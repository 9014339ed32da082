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

/// A whole-model initialisation scheme, as `kiln train --init` names it: the weights of every convolution,
/// transposed convolution and linear layer drawn from the scheme (with their own fans), their biases zero,
/// as Keras's initialisers and PyTorch's `nn.init` are used; other parameters (batch norm) keep their own.
public enum InitializationScheme: String, CaseIterable, Sendable {
    case xavierUniform = "xavier-uniform", xavierNormal = "xavier-normal"
    case heUniform = "he-uniform", heNormal = "he-normal"
    /// LeCun normal, N(0, 1 / fan_in) (Keras's lecun_normal, SELU's).
    case lecun
    /// PyTorch's layer defaults, U(±1 / √fan_in) for weights and biases: what a model starts with anyway.
    case `default`

    var weightInitializer: Initializer {
        switch self {
        case .xavierUniform: return .xavierUniform
        case .xavierNormal: return .xavierNormal
        case .heUniform: return .heUniform()
        case .heNormal: return .heNormal()
        case .lecun: return .lecunNormal
        case .default: return .pytorchDefault
        }
    }
}

extension Layer {
    /// Re-initialises the tree with `scheme` from `seed`: parameter i draws from the stream of (seed, i), as
    /// `reset(seed:)` does.
    public func initialize(_ scheme: InitializationScheme, seed: UInt64) throws {
        let weighted = Set(namedLayers.filter { $0.layer is Conv2D || $0.layer is ConvTranspose2D || $0.layer is Linear }
            .flatMap { $0.layer.ownParameters.map { ObjectIdentifier($0.parameter) } })
        for (index, (name, parameter)) in namedParameters.enumerated() {
            let stream = Philox.mix(seed, UInt64(index))
            guard weighted.contains(ObjectIdentifier(parameter)), scheme != .default else {
                try parameter.reset(seed: stream)
                continue
            }
            let initializer: Initializer = name.hasSuffix("bias") ? .zeros : scheme.weightInitializer
            try initializer.fill(parameter.value, fanIn: parameter.fanIn, fanOut: parameter.fanOut, seed: stream)
            parameter.markModified()
        }
    }
}
