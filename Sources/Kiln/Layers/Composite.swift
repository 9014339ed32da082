/// x + f(x), or f(x) + shortcut(x) when the shortcut projects x (ResNet's downsample), optionally followed by
/// an activation of the sum. The body's layers appear at the block's level in the state dict, and the
/// shortcut under `shortcutName` — torchvision's `BasicBlock` layout (`conv1`, `bn1`, ..., `downsample.0`).
public final class Residual: Layer, RecordingContainer {
    public let body: Sequential
    public let shortcut: (any Layer)?
    public let shortcutName: String
    /// Applied to the sum (ResNet's ReLU after the addition).
    public let activation: Activation?
    private var sum: Tensor?
    private var shortcutOutput: Tensor?, shortcutOutputGradient: Tensor?

    public init(body: Sequential, shortcut: (any Layer)? = nil, shortcutName: String = "downsample", activation: Activation? = nil) {
        self.body = body
        self.shortcut = shortcut
        self.shortcutName = shortcutName
        self.activation = activation
    }

    public var children: [(name: String, layer: any Layer)] {
        body.layers + (shortcut.map { [(shortcutName, $0)] } ?? [])
    }

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        let main = try body.outputShape(for: inputShape)
        let side = try shortcut?.outputShape(for: inputShape) ?? inputShape
        guard main == side else {
            throw layerShapeError("Residual", expected: "body output \(describe(main)) equal to the shortcut's", got: side)
        }
        return main
    }

    public func summarize(path: String, input: [Int], into rows: inout [SummaryRow]) throws -> [Int] {
        let main = try summarizeChain(body.layers, path: path, input: input, into: &rows)
        let side = try shortcut.map {
            try $0.summarize(path: path.isEmpty ? shortcutName : "\(path).\(shortcutName)", input: input, into: &rows)
        } ?? input
        guard main == side else {
            throw layerShapeError("Residual", expected: "body output \(describe(main)) equal to the shortcut's", got: side).at(path)
        }
        return main
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let main = try body.forward(x, context)
        let side = try shortcut?.forward(x, context) ?? x
        shortcutOutput = side
        guard main.shape == side.shape else {
            throw layerShapeError("Residual", expected: "body output \(describe(main.shape)) equal to the shortcut's", got: side.shape)
        }
        let total = try main + side
        guard let activation else { return total }
        sum = total
        return try total.activated(activation)
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        var gradient = dy
        if let activation {
            guard let sum else { throw KilnError.invalidArgument("Residual: backward before forward") }
            gradient = try sum.activationGradient(activation, dy: dy)
        }
        let throughBody = try body.backward(gradient)
        shortcutOutputGradient = gradient
        let throughShortcut = try shortcut?.backward(gradient) ?? gradient
        return try throughBody + throughShortcut
    }

    public func recordedOutput(ofChild name: String, gradient: Bool) -> Tensor? {
        guard shortcut != nil, name == shortcutName else { return body.recordedOutput(ofChild: name, gradient: gradient) }
        return gradient ? shortcutOutputGradient : shortcutOutput
    }
}

/// Parallel branches on the same input, their outputs concatenated along channels (Inception).
public final class Concat: Layer, RecordingContainer {
    public let branches: [(name: String, layer: any Layer)]
    private var channelCounts: [Int] = []
    private var branchOutputs: [Tensor] = [], branchOutputGradients: [Tensor] = []

    public init(_ branches: [NamedLayer]) {
        self.branches = branches.enumerated().map { index, entry in (entry.name ?? String(index), entry.layer) }
    }

    public convenience init(@LayerBuilder _ build: () throws -> [NamedLayer]) rethrows {
        self.init(try build())
    }

    public var children: [(name: String, layer: any Layer)] { branches }

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        let shapes = try branches.map { try $0.layer.outputShape(for: inputShape) }
        return try concatenatedShape(shapes)
    }

    public func summarize(path: String, input: [Int], into rows: inout [SummaryRow]) throws -> [Int] {
        let shapes = try branches.map { branch in
            try branch.layer.summarize(path: path.isEmpty ? branch.name : "\(path).\(branch.name)", input: input, into: &rows)
        }
        return try naming(path) { try concatenatedShape(shapes) }
    }

    private func concatenatedShape(_ shapes: [[Int]]) throws -> [Int] {
        guard var result = shapes.first, result.count >= 2 else {
            throw KilnError.invalidArgument("Concat: needs at least one branch with [N, C, ...] output")
        }
        for shape in shapes.dropFirst() {
            guard shape.count == result.count, shape[0] == result[0], shape.dropFirst(2) == result.dropFirst(2) else {
                throw layerShapeError("Concat", expected: "branch outputs like \(describe(result)) except in channels", got: shape)
            }
            result[1] += shape[1]
        }
        return result
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        let outputs = try branches.map { try $0.layer.forward(x, context) }
        branchOutputs = outputs
        let shape = try concatenatedShape(outputs.map(\.shape))
        channelCounts = outputs.map { $0.shape[1] }
        let y = try Tensor.empty(shape, on: x.device)
        var firstChannel = 0
        for output in outputs {
            try copyChannels(from: output, to: y, at: firstChannel, count: output.shape[1], scatter: true)
            firstChannel += output.shape[1]
        }
        return y
    }

    public func backward(_ dy: Tensor) throws -> Tensor {
        var dx: Tensor?
        var firstChannel = 0
        branchOutputGradients.removeAll()
        for (index, branch) in branches.enumerated() {
            var shape = dy.shape
            shape[1] = channelCounts[index]
            let slice = try Tensor.empty(shape, on: dy.device)
            try copyChannels(from: dy, to: slice, at: firstChannel, count: shape[1], scatter: false)
            branchOutputGradients.append(slice)
            firstChannel += shape[1]
            let gradient = try branch.layer.backward(slice)
            dx = try dx.map { try $0 + gradient } ?? gradient
        }
        guard let dx else { throw KilnError.invalidArgument("Concat: no branches") }
        return dx
    }

    public func recordedOutput(ofChild name: String, gradient: Bool) -> Tensor? {
        guard let index = branches.firstIndex(where: { $0.name == name }) else { return nil }
        let recorded = gradient ? branchOutputGradients : branchOutputs
        return recorded.indices.contains(index) ? recorded[index] : nil
    }

    /// Copies `count` channels per image between a [N, count, ...] tensor and channels
    /// `first ..< first + count` of a wider [N, C, ...] tensor (into the wide one when `scatter`).
    private func copyChannels(from source: Tensor, to destination: Tensor, at first: Int, count: Int, scatter: Bool) throws {
        let wide = scatter ? destination : source
        let narrow = scatter ? source : destination
        let plane = wide.shape.dropFirst(2).reduce(1, *)
        let wideImage = wide.shape.dropFirst().reduce(1, *), narrowImage = count * plane
        for n in 0..<wide.shape[0] {
            let wideView = Tensor(storage: wide.storage, offset: wide.offset + n * wideImage + first * plane, shape: [narrowImage])
            let narrowView = Tensor(storage: narrow.storage, offset: narrow.offset + n * narrowImage, shape: [narrowImage])
            try (scatter ? wideView : narrowView).assign(scatter ? narrowView : wideView)
        }
    }
}

/// Flattens [N, ...] to [N, product of the rest].
public final class Flatten: Layer {
    private var inputShape: [Int] = []

    public init() {}

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        guard !inputShape.isEmpty else { throw layerShapeError("Flatten", expected: "[N, ...]", got: inputShape) }
        return [inputShape[0], inputShape.dropFirst().reduce(1, *)]
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        inputShape = x.shape
        return try x.reshaped(outputShape(for: x.shape))
    }

    public func backward(_ dy: Tensor) throws -> Tensor { try dy.reshaped(inputShape) }
}

/// Reshapes every sample: [N, ...] to [N] + `shape` (one entry may be -1).
public final class Reshape: Layer {
    public let shape: [Int]
    private var inputShape: [Int] = []

    public init(_ shape: [Int]) { self.shape = shape }

    public func outputShape(for inputShape: [Int]) throws -> [Int] {
        guard let batch = inputShape.first else { throw layerShapeError("Reshape", expected: "[N, ...]", got: inputShape) }
        let count = inputShape.dropFirst().reduce(1, *)
        let known = shape.filter { $0 != -1 }.reduce(1, *)
        var resolved = shape
        if let inferred = shape.firstIndex(of: -1), known > 0, count % known == 0 { resolved[inferred] = count / known }
        guard resolved.reduce(1, *) == count, resolved.allSatisfy({ $0 >= 0 }) else {
            throw layerShapeError("Reshape(\(describe(shape)))", expected: "\(count) values per sample", got: inputShape)
        }
        return [batch] + resolved
    }

    public func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor {
        inputShape = x.shape
        return try x.reshaped(outputShape(for: x.shape))
    }

    public func backward(_ dy: Tensor) throws -> Tensor { try dy.reshaped(inputShape) }
}
