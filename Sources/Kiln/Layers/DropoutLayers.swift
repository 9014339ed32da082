/// Inverted dropout in training, identity at inference. With `spatial`, whole channels are dropped
/// (PyTorch's Dropout2d). Masks are keyed by (run seed, training step, `stream`): give each dropout layer of
/// a model its own stream number.
public final class Dropout: Layer {
    public let probability: Float
    public let spatial: Bool
    public let stream: Int
    private var mask: Tensor?

    public init(probability: Float = 0.5, spatial: Bool = false, stream: Int = 0) throws {
        guard probability >= 0, probability <= 1 else {
            throw KilnError.invalidArgument("Dropout: probability \(probability) is outside [0, 1]")
        }
        self.probability = probability
        self.spatial = spatial
        self.stream = stream
    }

    public var typeName: String { spatial ? "SpatialDropout" : "Dropout" }
    public func outputShape(for inputShape: [Int]) throws -> [Int] { inputShape }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        guard context.training, probability > 0 else {
            mask = nil
            return x
        }
        let result = try dropout(x, probability: probability, key: DropoutKey(seed: context.seed, step: context.step, layer: stream),
                                 spatial: spatial)
        mask = result.mask
        return result.output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let mask else { return dy }
        return try dropoutBackward(dy, mask: mask)
    }
}
