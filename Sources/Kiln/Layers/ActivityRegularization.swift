/// An L1 penalty on the activations that pass through it, as Keras's `ActivityRegularization(l1:)`: the
/// identity forward, and backward adds the gradient of λ · Σ|x| / N (N the batch size), λ · sign(x) / N, to
/// the gradient it passes on. After an autoencoder's encoder it makes a sparse autoencoder: the penalty
/// drives most of the code to zero. The penalty trains the model but is not part of the reported loss, as
/// `--l1` on the weights. No parameters; in inference, the identity.
public final class ActivityL1: Layer {
    public let strength: Float
    private var input: Tensor?

    public init(strength: Float) throws {
        guard strength >= 0, strength.isFinite else {
            throw KilnError.invalidArgument("ActivityL1: the strength λ must be finite and at least 0, not \(strength)")
        }
        self.strength = strength
    }

    public var typeName: String { "ActivityL1(\(strength))" }
    public func outputShape(for inputShape: [Int]) throws -> [Int] { inputShape }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        input = context.training ? x : nil
        return x
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let input else { return dy }
        // dx [N, ...] = dy + (λ / N) · sign(x)
        let dx = try input.map(.sign) * (strength / Float(input.shape[0]))
        try dx.axpby(alpha: 1, dy, beta: 1)
        return dx
    }
}
