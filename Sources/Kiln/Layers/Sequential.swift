/// A layer with the name it has inside its container (its key in the state dict).
public struct NamedLayer {
    public var name: String?
    public var layer: any Layer
}

extension Layer {
    /// This layer under `name` in a container, e.g. `Conv2D(...).named("conv1")`.
    public func named(_ name: String) -> NamedLayer { NamedLayer(name: name, layer: self) }
}

/// Builds the layer list of a `Sequential` from a block of layers, `if`s and `for` loops.
@resultBuilder
public enum LayerBuilder {
    public static func buildExpression(_ layer: any Layer) -> [NamedLayer] { [NamedLayer(name: nil, layer: layer)] }
    public static func buildExpression(_ layer: NamedLayer) -> [NamedLayer] { [layer] }
    public static func buildExpression(_ layers: [NamedLayer]) -> [NamedLayer] { layers }
    public static func buildBlock(_ parts: [NamedLayer]...) -> [NamedLayer] { parts.flatMap { $0 } }
    public static func buildOptional(_ part: [NamedLayer]?) -> [NamedLayer] { part ?? [] }
    public static func buildEither(first: [NamedLayer]) -> [NamedLayer] { first }
    public static func buildEither(second: [NamedLayer]) -> [NamedLayer] { second }
    public static func buildArray(_ parts: [[NamedLayer]]) -> [NamedLayer] { parts.flatMap { $0 } }
}

/// Layers applied one after another, as PyTorch's `nn.Sequential`. A layer without a name is named by its
/// position ("0", "1", ...), so the state-dict names match PyTorch's for the same module tree.
///
/// The last forward's outputs and the last backward's gradients of every layer of the tree stay reachable by
/// dotted path (`output(of:)`, `outputGradient(of:)`) for feature extraction, saliency maps and Grad-CAM.
/// Backward stops below the lowest layer that trains when nothing needs the input's gradient, so a frozen
/// backbone costs its forward pass only.
///
/// Runs of layers are fused where that saves a pass (Fusion.swift): in a `.prediction` pass a convolution
/// with the batch norm, ReLU and 2x2 max pooling after it, and a linear layer with its ReLU; in training a ReLU with the max pooling after it.
/// The outputs of fused-away layers are not recorded (`output(of:)` returns nil for them); passes that read
/// every layer's output use `.inferenceRecordingEveryLayer`.
public final class Sequential: Layer, RecordingContainer {
    public private(set) var layers: [(name: String, layer: any Layer)]
    public private(set) var outputs: [Tensor] = []
    /// Layers whose output the last forward did not compute, having fused them into the layer after.
    private var fusedAway: Set<Int> = []
    public private(set) var outputGradients: [Tensor?] = []
    /// The input's shape and the first layer backward must reach, from the last forward.
    private var inputShape: [Int] = []
    private var lowestTrainingLayer = 0
    /// Called after each child's backward in `backward`, with the child: data-parallel training starts
    /// averaging the gradients a layer has finished while the layers before it go on.
    public var childBackwardEnded: ((any Layer) throws -> Void)?

    public init(_ layers: [NamedLayer]) {
        self.layers = layers.enumerated().map { index, entry in (entry.name ?? String(index), entry.layer) }
    }

    public convenience init(@LayerBuilder _ build: () throws -> [NamedLayer]) rethrows {
        self.init(try build())
    }

    public var children: [(name: String, layer: any Layer)] { layers }

    /// The output shape; an input that does not fit raises an error naming the innermost layer, by its
    /// dotted path ("features.30"), where it stops fitting (a spatial size reaching zero, say).
    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        var rows: [SummaryRow] = []
        return try summarize(path: "", input: inputShape, into: &rows)
    }

    public func summarize(path: String, input: [Int], into rows: inout [SummaryRow]) throws -> [Int] {
        try summarizeChain(layers, path: path, input: input, into: &rows)
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        outputs.removeAll(keepingCapacity: true)
        inputShape = x.shape
        // Without a use for the input's gradient, backward need not go below the lowest layer that trains.
        lowestTrainingLayer = context.needsInputGradient ? 0
            : layers.firstIndex { $0.layer.hasTrainableParameters } ?? layers.count
        let inputGradientNeeded = context.needsInputGradient
        let fuses = !context.training && !context.needsInputGradient && context.fusesLayers
        fusedAway.removeAll(keepingCapacity: true)
        var current = x, context = context
        var index = 0
        while index < layers.count {
            if fuses, let fused = fusedRun(layers, at: index), fused.accepts(current.shape) {
                current = try fused.forward(current)
                for skipped in index..<(index + fused.length - 1) {
                    fusedAway.insert(skipped)
                    outputs.append(current)  // a placeholder: recordedOutput(ofChild:) reports none
                }
                outputs.append(current)
                index += fused.length
                continue
            }
            if context.training, context.fusesLayers, let pool = Self.maxPoolAfterReLU(layers, at: index, input: current.shape) {
                // A ReLU and the max pooling after it, in one pass forward and one backward.
                current = try pool.forwardAfterReLU(current)
                fusedAway.insert(index)
                outputs += [current, current]  // the first a placeholder, as above
                index += 2
                continue
            }
            // A pass that fuses has no backward after it: the layers inside this one need no input gradient
            // either, so that containers within (a residual block's body) fuse too.
            context.needsInputGradient = !fuses && (inputGradientNeeded || index > lowestTrainingLayer)
            current = try layers[index].layer.forward(current, context)
            outputs.append(current)
            index += 1
        }
        return current
    }

    /// The max pooling at `index + 1` when the layer at `index` is a ReLU and the pooling takes `input`.
    private static func maxPoolAfterReLU(_ layers: [(name: String, layer: any Layer)], at index: Int, input: [Int]) -> Pool2D? {
        guard index + 1 < layers.count, (layers[index].layer as? ActivationLayer)?.activation == .relu,
              let pool = layers[index + 1].layer as? Pool2D, pool.kind == .max, (try? pool.outputShape(for: input)) != nil
        else { return nil }
        return pool
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        outputGradients = Array(repeating: nil, count: layers.count)
        var gradient = dy
        // A fused-away layer's backward was done by the layer it was fused into.
        for index in layers.indices.reversed() where index >= lowestTrainingLayer && !fusedAway.contains(index) {
            outputGradients[index] = gradient
            gradient = try layers[index].layer.backward(gradient)
            try childBackwardEnded?(layers[index].layer)
        }
        // Nothing reads the input's gradient (the forward context said so): a tensor of its shape stands in.
        return lowestTrainingLayer == 0 ? gradient : try Tensor.empty(inputShape, on: dy.device)
    }

    /// The output of the layer at the dotted path `path` ("fc1", "layer4.1", "layer4.1.conv2") in the last
    /// forward pass; nil when there is no such layer or it has not run.
    public func output(of path: String) -> Tensor? { recorded(path, gradient: false) }

    /// The gradient of the loss with respect to the output of the layer at `path`, from the last backward.
    public func outputGradient(of path: String) -> Tensor? { recorded(path, gradient: true) }

    public func recordedOutput(ofChild name: String, gradient: Bool) -> Tensor? {
        guard let index = layers.firstIndex(where: { $0.name == name }), gradient || !fusedAway.contains(index) else { return nil }
        let recorded = gradient ? outputGradients : outputs
        return recorded.indices.contains(index) ? recorded[index] : nil
    }

    /// Replaces the layer at the dotted path `path` ("fc", "classifier.6", "layer4.1.conv2") with `layer`,
    /// keeping its name: a new head for other classes, say. The new layer's parameters are as it made them.
    public func replace(_ path: String, with layer: any Layer) throws {
        let parts = path.split(separator: ".").map(String.init)
        guard let name = parts.last else { throw KilnError.invalidArgument("replace: an empty layer path") }
        let parentPath = parts.dropLast().joined(separator: ".")
        let parent = try self.layer(named: parentPath)
        let container = (parent as? Residual)?.body ?? parent as? Sequential
        guard let container, let index = container.layers.firstIndex(where: { $0.name == name }) else {
            _ = try self.layer(named: path)  // names what does not exist
            throw KilnError.invalidArgument("replace: \(path) is not a layer of a sequence, which alone can be replaced")
        }
        container.layers[index].layer = layer
        container.outputs.removeAll()
    }

    private func recorded(_ path: String, gradient: Bool) -> Tensor? {
        var parts = path.split(separator: ".").map(String.init)
        guard let last = parts.popLast() else { return nil }
        guard let parent = layer(at: parts.joined(separator: ".")) as? any RecordingContainer else { return nil }
        return parent.recordedOutput(ofChild: last, gradient: gradient)
    }
}

/// A container that keeps its children's outputs from the last forward pass, and the gradients with respect
/// to them from the last backward, so that `Sequential.output(of:)` reaches any layer of a tree.
public protocol RecordingContainer: Layer {
    /// The last output of the child named `name` (or, with `gradient`, the gradient with respect to it).
    func recordedOutput(ofChild name: String, gradient: Bool) -> Tensor?
}

extension Layer {
    /// The sub-layer at a dotted path ("" for this one), or an error that names the first part that is not
    /// there and lists the layers that are.
    public func layer(named path: String) throws -> any Layer {
        var current: any Layer = self
        var walked: [String] = []
        for name in path.split(separator: ".").map(String.init) {
            guard let next = current.children.first(where: { $0.name == name })?.layer else {
                let place = walked.isEmpty ? "the model" : walked.joined(separator: ".")
                let names = current.children.map(\.name)
                throw KilnError.invalidArgument("no layer '\(path)': \(place) has no '\(name)'"
                    + (names.isEmpty ? " (it has no layers inside)" : "; its layers: \(names.joined(separator: ", "))"))
            }
            walked.append(name)
            current = next
        }
        return current
    }
}
