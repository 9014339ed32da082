import KilnCL

/// A layer that draws random numbers in training. Its masks are keyed by (run seed, training step,
/// `stream`); unless given one, it takes the stream of its dotted path in the model when the model is
/// reset or trained (`assignRandomStreams`), so no two such layers share masks.
public protocol RandomStreamLayer: Layer {
    var stream: Int { get }
    /// Whether `stream` was given explicitly (then the path does not replace it).
    var hasExplicitStream: Bool { get }
    func adoptStream(_ stream: Int)
}

extension Layer {
    /// Gives every `RandomStreamLayer` of the tree without an explicit stream the stream of its dotted path.
    public func assignRandomStreams() {
        for (path, layer) in namedLayers {
            guard let random = layer as? RandomStreamLayer, !random.hasExplicitStream else { continue }
            random.adoptStream(Int(truncatingIfNeeded: fnv1a64(path) >> 1))  // non-negative
        }
    }
}

/// Inverted dropout in training, identity at inference. With `spatial`, whole channels are dropped
/// (PyTorch's Dropout2d). Masks are keyed by (run seed, training step, `stream`): see `RandomStreamLayer`.
public final class Dropout: RandomStreamLayer {
    public private(set) var probability: Float
    public let spatial: Bool
    public private(set) var stream: Int
    public let hasExplicitStream: Bool
    private var mask: Tensor?

    public init(probability: Float = 0.5, spatial: Bool = false, stream: Int? = nil) throws {
        guard probability >= 0, probability <= 1 else {
            throw KilnError.invalidArgument("Dropout: probability \(probability) is outside [0, 1]")
        }
        self.probability = probability
        self.spatial = spatial
        self.stream = stream ?? 0
        hasExplicitStream = stream != nil
    }

    public func adoptStream(_ stream: Int) { self.stream = stream }

    /// Changes the rate (`kiln train --dropout`).
    public func setProbability(_ probability: Float) throws {
        guard probability >= 0, probability < 1 else {
            throw KilnError.invalidArgument("Dropout: probability \(probability) is outside [0, 1)")
        }
        self.probability = probability
    }

    public var typeName: String { spatial ? "SpatialDropout" : "Dropout" }
    public func outputShape(for inputShape: [Int]) throws -> [Int] { inputShape }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        guard context.training, probability > 0 else {
            mask = nil
            return x
        }
        let units = spatial && x.rank >= 3 ? x.shape[0] * x.shape[1] : x.count
        let key = DropoutKey(seed: context.seed, step: context.step, layer: stream, units: units, batch: x.shape[0], shard: context.shard)
        let result = try dropout(x, probability: probability, key: key, spatial: spatial)
        mask = result.mask
        return result.output
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let mask else { return dy }
        return try dropoutBackward(dy, mask: mask)
    }
}

/// A fully connected layer with DropConnect (Wan et al. 2013): in training each weight is dropped with
/// probability p and the kept ones scaled by 1/(1 − p), a fresh mask every step (keyed like dropout by
/// (seed, step, `stream`), see `RandomStreamLayer`); at inference it is a plain linear layer.
public final class DropConnectLinear: RandomStreamLayer {
    public let linear: Linear
    public let probability: Float
    public private(set) var stream: Int
    public let hasExplicitStream: Bool
    private var saved: (input: Tensor, mask: Tensor, maskedWeight: Tensor)?

    public init(inputFeatures: Int, outputFeatures: Int, probability: Float = 0.5, stream: Int? = nil) throws {
        guard probability >= 0, probability < 1 else {
            throw KilnError.invalidArgument("DropConnectLinear: probability \(probability) is outside [0, 1)")
        }
        linear = try Linear(inputFeatures: inputFeatures, outputFeatures: outputFeatures)
        self.probability = probability
        self.stream = stream ?? 0
        hasExplicitStream = stream != nil
    }

    public func adoptStream(_ stream: Int) { self.stream = stream }

    public var ownParameters: [(name: String, parameter: Parameter)] { linear.ownParameters }
    public func outputShape(for inputShape: [Int]) throws -> [Int] { try linear.outputShape(for: inputShape) }
    public func multiplyAccumulates(for inputShape: [Int]) throws -> Int { try linear.multiplyAccumulates(for: inputShape) }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        guard context.training, probability > 0 else {
            saved = nil
            return try linear.forward(x, context)
        }
        _ = try outputShape(for: x.shape)
        let weight = linear.weight.value
        let mask = try dropoutMask(weight.shape, probability: probability,
                                   key: DropoutKey(seed: context.seed, step: context.step, layer: stream), on: weight.device)
        let maskedWeight = try weight * mask
        saved = (x, mask, maskedWeight)
        // y [N, out] = x [N, in] · (W ⊙ M)ᵀ + b
        let y = try x.matmul(maskedWeight, transposeOther: true)
        if let bias = linear.bias { try y.addPerChannel(bias.value) }
        return y
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        guard let saved else { return try linear.backward(dy) }
        if linear.weight.requiresGradient {
            // dW += (dyᵀ · x) ⊙ M
            let full = try dy.matmul(saved.input, transposeSelf: true)
            try linear.weight.gradientForAccumulation().axpby(alpha: 1, full * saved.mask, beta: 1)
        }
        if let bias = linear.bias, bias.requiresGradient {
            try bias.gradientForAccumulation().axpby(alpha: 1, dy.sum(axis: 0), beta: 1)
        }
        return try dy.matmul(saved.maskedWeight)
    }
}

extension Layer {
    /// Sets the rate of every `Dropout` layer of the tree; returns how many there are.
    @discardableResult
    public func setDropout(_ probability: Float) throws -> Int {
        let layers = namedLayers.compactMap { $0.layer as? Dropout }
        for layer in layers { try layer.setProbability(probability) }
        return layers.count
    }
}
