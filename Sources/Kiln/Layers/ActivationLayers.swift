/// An elementwise activation as a layer: `ActivationLayer(.relu)`, or the shorthands `ReLU()`, ...
public final class ActivationLayer: Layer {
    public let activation: Activation
    /// The input of the last forward pass, kept for backward.
    private(set) var input: Tensor?

    public init(_ activation: Activation) { self.activation = activation }

    public var typeName: String { activation.description }
    public func outputShape(for inputShape: [Int]) throws -> [Int] { inputShape }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        input = x
        return try x.activated(activation)
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let input else { throw KilnError.invalidArgument("\(typeName): backward before forward") }
        return try input.activationGradient(activation, dy: dy)
    }
}

public func ReLU() -> ActivationLayer { ActivationLayer(.relu) }
public func ReLU6() -> ActivationLayer { ActivationLayer(.relu6) }
public func LeakyReLU(slope: Float = 0.01) -> ActivationLayer { ActivationLayer(.leakyReLU(slope: slope)) }
public func ELU(alpha: Float = 1) -> ActivationLayer { ActivationLayer(.elu(alpha: alpha)) }
public func Sigmoid() -> ActivationLayer { ActivationLayer(.sigmoid) }
public func Tanh() -> ActivationLayer { ActivationLayer(.tanh) }
public func Softplus() -> ActivationLayer { ActivationLayer(.softplus) }
public func Swish() -> ActivationLayer { ActivationLayer(.swish) }

/// PReLU with a learnable slope per channel (`channels`) or one shared slope (`channels: 1`), initialised
/// to 0.25 as in PyTorch.
public final class PReLU: Layer {
    public let weight: Parameter
    private var input: Tensor?

    public init(channels: Int = 1, initialSlope: Float = 0.25) throws {
        weight = try Parameter([channels], initializer: .constant(initialSlope))
    }

    public var ownParameters: [(name: String, parameter: Parameter)] { [("weight", weight)] }
    public func outputShape(for inputShape: [Int]) throws -> [Int] { inputShape }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        input = x
        return try prelu(x, slopes: weight.value)
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let input else { throw KilnError.invalidArgument("PReLU: backward before forward") }
        // A frozen slope still passes the gradient to the input; its own gradient goes to scratch.
        let slopeGradient = weight.requiresGradient ? try weight.gradientForAccumulation() : try Tensor.empty(weight.value.shape, on: dy.device)
        return try preluBackward(input, slopes: weight.value, dy: dy, accumulatingInto: slopeGradient)
    }
}
