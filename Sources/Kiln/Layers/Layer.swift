/// A learnable tensor of a layer (or a buffer such as a running mean), with its gradient.
public final class Parameter {
    /// Replacing the tensor counts as a modification.
    public var value: Tensor { didSet { markModified() } }
    /// Counts the modifications of the value, so that what is derived from it (a batch norm folded into a
    /// convolution's weights) is recomputed only when it changed. Kiln's own writers (optimisers, batch
    /// norm's running statistics, checkpoint and pretrained loading, resets) count theirs; code that writes
    /// into `value` in place itself calls `markModified()`.
    public private(set) var version = 0
    /// The accumulated gradient; nil until the first backward pass (and always for buffers).
    public var gradient: Tensor?
    /// False for buffers (running statistics) and for frozen parameters: optimisers skip them.
    public var requiresGradient: Bool
    /// True for state that is saved in checkpoints but never trained (PyTorch's buffers).
    public let isBuffer: Bool
    /// The element type in checkpoints: Float32, or int64 for counters such as `num_batches_tracked`.
    public let storedType: SafeTensors.DType
    let initializer: Initializer
    let fanIn: Int, fanOut: Int

    public init(_ shape: [Int], initializer: Initializer, fanIn: Int = 1, fanOut: Int = 1, isBuffer: Bool = false,
         storedType: SafeTensors.DType = .float32) throws {
        value = try Tensor.zeros(shape)
        self.storedType = storedType
        self.initializer = initializer
        self.fanIn = fanIn
        self.fanOut = fanOut
        self.isBuffer = isBuffer
        requiresGradient = !isBuffer
        try reset(seed: 0)
    }

    /// Refills the value with its initializer from stream `seed`, on its current device.
    public func reset(seed: UInt64) throws {
        try initializer.fill(value, fanIn: fanIn, fanOut: fanOut, seed: seed)
        markModified()
    }

    /// Records that the value was written in place.
    public func markModified() { version &+= 1 }

    /// The gradient tensor, created as zeros on first use.
    public func gradientForAccumulation() throws -> Tensor {
        if let gradient, gradient.device == value.device { return gradient }
        let created = try Tensor.zeros(value.shape, on: value.device)
        gradient = created
        return created
    }
}

/// What a forward pass needs to know besides its input.
public struct ForwardContext: Sendable {
    /// Training mode: batch statistics in batch norm, dropout active. Inference mode otherwise.
    public var training: Bool
    /// The training step, which keys dropout masks together with the seed and the layer.
    public var step: Int
    /// The run's seed.
    public var seed: UInt64
    /// Whether backward must return the gradient with respect to this input. A training step sets it to
    /// false for the network's input, which nothing reads, so the first layer skips its most expensive
    /// backward product; its backward then returns a tensor of the input's shape with unspecified values.
    /// Containers pass it to the layers that see their input and set it for the layers after them.
    public var needsInputGradient: Bool
    /// Whether an inference pass that needs no input gradient may fuse layers (a convolution with the batch
    /// norm and ReLU after it), leaving the outputs of the fused-away layers unrecorded. Passes that read
    /// `Sequential.output(of:)` of any layer turn it off.
    public var fusesLayers: Bool
    /// In data-parallel training, where this rank's samples sit in the step's global batch: what keys the
    /// dropout masks, so that they do not depend on the number of ranks. nil for a batch of its own.
    public var shard: BatchShard?
    /// Set in data-parallel training with synchronised batch norm: training-mode batch norms then normalise
    /// with the statistics of the global batch.
    public var batchNormSync: BatchNormSynchronizer?

    public init(training: Bool, step: Int = 0, seed: UInt64 = 0, needsInputGradient: Bool = true, fusesLayers: Bool = true) {
        self.training = training
        self.step = step
        self.seed = seed
        self.needsInputGradient = needsInputGradient
        self.fusesLayers = fusesLayers
    }

    /// Inference mode, ready for a backward pass to the input (saliency, tests of gradients).
    public static let inference = ForwardContext(training: false)
    /// Inference with no backward pass after it: evaluation, prediction, benchmarks. Layers are fused where
    /// they can be, so only the outputs of layers that were not fused away are recorded.
    public static let prediction = ForwardContext(training: false, needsInputGradient: false)
    /// Inference that records every layer's output (feature extraction, explanations).
    public static let inferenceRecordingEveryLayer = ForwardContext(training: false, fusesLayers: false)
}

/// A network layer: forward keeps what backward needs; backward returns the gradient with respect to the
/// input and adds the gradients of the parameters to `Parameter.gradient`.
public protocol Layer: AnyObject {
    /// A short type name for summaries, e.g. "Conv2D".
    var typeName: String { get }
    /// The output shape for an input shape (batch included), or an error naming the layer.
    func outputShape(for inputShape: [Int]) throws -> [Int]
    func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor
    func backward(_ dy: Tensor) throws -> Tensor
    /// This layer's own parameters and buffers, by their local names ("weight", "running_mean", ...).
    var ownParameters: [(name: String, parameter: Parameter)] { get }
    /// Sub-layers, by their local names ("0", "conv1", ...).
    var children: [(name: String, layer: any Layer)] { get }
    /// Multiply-accumulates of one sample's forward pass through this layer alone (not its children).
    func multiplyAccumulates(for inputShape: [Int]) throws -> Int
    /// Appends a summary row per leaf layer under `path` and returns the output shape. Containers
    /// override it to walk their children with the shapes they feed them.
    func summarize(path: String, input: [Int], into rows: inout [SummaryRow]) throws -> [Int]
}

extension Layer {
    public var typeName: String { String(describing: type(of: self)) }
    public var ownParameters: [(name: String, parameter: Parameter)] { [] }
    public var children: [(name: String, layer: any Layer)] { [] }
    public func multiplyAccumulates(for inputShape: [Int]) throws -> Int { 0 }

    public func summarize(path: String, input: [Int], into rows: inout [SummaryRow]) throws -> [Int] {
        try naming(path) {
            let output = try outputShape(for: input)
            let parameters = ownParameters.map(\.parameter)
            let learnable = parameters.filter { !$0.isBuffer }
            rows.append(SummaryRow(
                name: path, type: typeName, outputShape: output,
                trainableParameters: learnable.filter(\.requiresGradient).map(\.value.count).reduce(0, +),
                frozenParameters: learnable.filter { !$0.requiresGradient }.map(\.value.count).reduce(0, +),
                bufferElements: parameters.filter(\.isBuffer).map(\.value.count).reduce(0, +),
                multiplyAccumulates: try multiplyAccumulates(for: input)))
            return output
        }
    }

    /// Every parameter and buffer of the layer tree, named as PyTorch's state dict names them
    /// ("conv1.weight", "layer1.0.bn1.running_var", ...).
    public var namedParameters: [(name: String, parameter: Parameter)] {
        ownParameters + children.flatMap { child in
            child.layer.namedParameters.map { ("\(child.name).\($0.name)", $0.parameter) }
        }
    }

    /// Every layer of the tree with its dotted path ("" for this one, then "features", "features.0", ...).
    public var namedLayers: [(path: String, layer: any Layer)] {
        [("", self)] + children.flatMap { child in
            child.layer.namedLayers.map { ($0.path.isEmpty ? child.name : "\(child.name).\($0.path)", $0.layer) }
        }
    }

    /// Whether any parameter of the tree trains; walks the tree without building names (it runs every step).
    public var hasTrainableParameters: Bool {
        ownParameters.contains { $0.parameter.requiresGradient } || children.contains { $0.layer.hasTrainableParameters }
    }

    /// Trainable parameters only.
    public var trainableParameters: [Parameter] {
        namedParameters.map(\.parameter).filter(\.requiresGradient)
    }

    /// Moves every parameter and buffer to `device` (gradients are dropped and recreated there).
    public func move(to device: Device) throws {
        for (_, parameter) in namedParameters where parameter.value.device != device {
            parameter.value = try parameter.value.to(device)
            parameter.gradient = nil
        }
    }

    /// Re-initialises every parameter deterministically: parameter i of the tree draws from a stream derived
    /// from (seed, i), on its current device. Random layers take their paths' streams (`assignRandomStreams`).
    public func reset(seed: UInt64) throws {
        for (index, entry) in namedParameters.enumerated() {
            try entry.parameter.reset(seed: Philox.mix(seed, UInt64(index)))
        }
        assignRandomStreams()
    }

    /// Sets every gradient to zero.
    public func zeroGradients() throws {
        for (_, parameter) in namedParameters { try parameter.gradient?.fill(0) }
    }

    /// Freezes (or unfreezes) every learnable parameter of the tree.
    public func setTrainable(_ trainable: Bool) {
        for (_, parameter) in namedParameters where !parameter.isBuffer { parameter.requiresGradient = trainable }
    }

    /// The sub-layer at a dotted path ("features.0", "fc"), or nil (`layer(named:)` says what is missing).
    public func layer(at path: String) -> (any Layer)? { try? layer(named: path) }
}

/// Raised by layers when an input does not fit; names the layer and both shapes.
func layerShapeError(_ layer: String, expected: String, got shape: [Int]) -> KilnError {
    .shapeMismatch(operation: layer, expected: expected, got: describe(shape))
}

/// Runs `body`, putting the dotted path of the layer it concerns in front of any `KilnError` it throws, so
/// that a shape error deep inside a model says where: "features.30 (MaxPool2D(...)): shapes do not match: ...".
func naming<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as KilnError {
        throw error.at(path)
    }
}

extension KilnError {
    /// This error with a layer's dotted path in front of the operation it names (unchanged for an empty path).
    func at(_ path: String) -> KilnError {
        guard !path.isEmpty else { return self }
        switch self {
        case let .shapeMismatch(operation, expected, got):
            return .shapeMismatch(operation: "\(path) (\(operation))", expected: expected, got: got)
        case let .invalidArgument(message):
            return .invalidArgument("\(path): \(message)")
        default:
            return self
        }
    }
}
