/// Inference-time fusion: a convolution followed by any of a batch norm in inference mode, a ReLU and a 2x2
/// max pooling with stride 2, in this order, runs as one convolution. The batch norm is folded into the
/// convolution's weights and bias, exactly (it is affine per channel):
///
///   s = γ / √(σ² + ε)        w'[o] = w[o] · s[o]        b'[o] = (b[o] − μ[o]) · s[o] + β[o]
///
/// computed once per version of the six tensors it comes from; the ReLU and the pooling are applied in the
/// convolution's pass. A linear layer and the ReLU after it run as one `linear(relu: true)`. Only passes
/// with no backward after them fuse (`ForwardContext.prediction`). Training's
/// fusion of a ReLU into the max pooling after it is `Pool2D.forwardAfterReLU`.
struct FoldedConvolution {
    /// The versions of weight, bias, γ, β, running mean and running variance the folded tensors match.
    var versions: [Int]
    var weight: Tensor
    var bias: Tensor
}

/// A run of layers of a sequence that a `.prediction` pass computes in one op.
protocol FusedRun {
    /// How many layers of the sequence it covers.
    var length: Int { get }
    /// Whether an input of `shape` fits every layer of the run; one that does not runs unfused, so that the
    /// layer that refuses it names itself.
    func accepts(_ shape: [Int]) -> Bool
    func forward(_ x: Tensor) throws -> Tensor
}

/// The fusable run that starts at `index` of `layers`, if any.
func fusedRun(_ layers: [(name: String, layer: any Layer)], at index: Int) -> (any FusedRun)? {
    FusedConvolution(layers, at: index) ?? FusedLinear(layers, at: index)
}

/// A run of layers of a sequence that fuses into one convolution.
struct FusedConvolution: FusedRun {
    var convolution: Conv2D
    var batchNorm: BatchNorm?
    var relu: Bool
    /// Whether a 2x2 max pooling with stride 2 ends the run.
    var maxPool: Bool
    /// How many layers of the sequence it covers (2 to 4).
    var length: Int

    /// The fusable run starting at `index` of `layers`: a `Conv2D`, then optionally a `BatchNorm` of as many
    /// channels, a ReLU and a 2x2/2 max pooling, in this order; nil unless it covers at least two layers.
    init?(_ layers: [(name: String, layer: any Layer)], at index: Int) {
        guard let convolution = layers[index].layer as? Conv2D else { return nil }
        var next = index + 1
        var batchNorm: BatchNorm?
        if next < layers.count, let norm = layers[next].layer as? BatchNorm, norm.features == convolution.outputChannels {
            batchNorm = norm
            next += 1
        }
        let relu = next < layers.count && (layers[next].layer as? ActivationLayer)?.activation == .relu
        if relu { next += 1 }
        let pool = next < layers.count ? layers[next].layer as? Pool2D : nil
        let maxPool = pool.map { $0.kind == .max && $0.geometry == (try? Pool2DGeometry(window: 2)) } ?? false
        if maxPool { next += 1 }
        guard next - index >= 2 else { return nil }
        (self.convolution, self.batchNorm, self.relu, self.maxPool, length) = (convolution, batchNorm, relu, maxPool, next - index)
    }

    func accepts(_ shape: [Int]) -> Bool {
        guard let output = try? convolution.outputShape(for: shape) else { return false }
        return !maxPool || (output[2] >= 2 && output[3] >= 2)
    }

    func forward(_ x: Tensor) throws -> Tensor {
        let folded = try batchNorm.map { try convolution.foldedWeights(with: $0) }
        let weight = folded?.weight ?? convolution.weight.value, bias = folded?.bias ?? convolution.bias?.value
        if maxPool { return try conv2dMaxPooled(x, weight: weight, bias: bias, geometry: convolution.geometry, relu: relu) }
        return try conv2d(x, weight: weight, bias: bias, geometry: convolution.geometry, relu: relu)
    }
}

/// A linear layer and the ReLU after it: one pass of `linear(relu: true)`.
struct FusedLinear: FusedRun {
    var linear: Linear
    var length: Int { 2 }

    init?(_ layers: [(name: String, layer: any Layer)], at index: Int) {
        guard index + 1 < layers.count, let linear = layers[index].layer as? Linear,
              (layers[index + 1].layer as? ActivationLayer)?.activation == .relu else { return nil }
        self.linear = linear
    }

    func accepts(_ shape: [Int]) -> Bool { (try? linear.outputShape(for: shape)) != nil }

    func forward(_ x: Tensor) throws -> Tensor {
        try Kiln.linear(x, weight: linear.weight.value, bias: linear.bias?.value, relu: true)
    }
}

extension Conv2D {
    /// This convolution's weight and bias with `batchNorm` folded in, from the cache while its sources are
    /// unchanged.
    func foldedWeights(with batchNorm: BatchNorm) throws -> FoldedConvolution {
        let sources = [weight, bias, batchNorm.weight, batchNorm.bias, batchNorm.runningMean, batchNorm.runningVariance]
        let versions = sources.map { $0?.version ?? -1 }
        if let folded, folded.versions == versions, folded.weight.device == weight.value.device { return folded }
        // s = γ / √(σ² + ε): [C_out]
        let scale = try (batchNorm.runningVariance.value + batchNorm.settings.epsilon).map(.rsqrt) * batchNorm.weight.value
        let w = weight.value
        // w'[o, c, i, j] = w[o, c, i, j] · s[o]
        let foldedWeight = try Tensor.empty(w.shape, on: w.device)
        try w.backend.binaryPerChannel(.mul, w, scale, channels: outputChannels, inner: w.count / outputChannels, into: foldedWeight)
        // b' = (b − μ) · s + β
        let centred = try bias.map { try $0.value - batchNorm.runningMean.value } ?? (batchNorm.runningMean.value * -1)
        let foldedBias = try centred * scale + batchNorm.bias.value
        let result = FoldedConvolution(versions: versions, weight: foldedWeight, bias: foldedBias)
        folded = result
        return result
    }
}
