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
/// The last forward's outputs and the last backward's gradients of every layer stay reachable
/// (`output(of:)`, `outputGradient(of:)`) for saliency maps and Grad-CAM.
public final class Sequential: Layer {
    public let layers: [(name: String, layer: any Layer)]
    public private(set) var outputs: [Tensor] = []
    public private(set) var outputGradients: [Tensor?] = []

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
        var current = x, context = context
        for (_, layer) in layers {
            current = try layer.forward(current, context)
            outputs.append(current)
            context.needsInputGradient = true  // later layers' inputs are activations
        }
        return current
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        outputGradients = Array(repeating: nil, count: layers.count)
        var gradient = dy
        for index in layers.indices.reversed() {
            outputGradients[index] = gradient
            gradient = try layers[index].layer.backward(gradient)
        }
        return gradient
    }

    /// The output of the layer named `name` in the last forward pass.
    public func output(of name: String) -> Tensor? {
        layers.firstIndex { $0.name == name }.flatMap { outputs.indices.contains($0) ? outputs[$0] : nil }
    }

    /// The gradient of the loss with respect to the output of the layer named `name`, from the last backward.
    public func outputGradient(of name: String) -> Tensor? {
        layers.firstIndex { $0.name == name }.flatMap { outputGradients.indices.contains($0) ? outputGradients[$0] : nil }
    }
}
