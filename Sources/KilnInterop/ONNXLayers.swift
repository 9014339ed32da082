import Kiln

/// A layer with an ONNX form: the nodes that compute its inference forward pass.
protocol ONNXExportable: Layer {
    /// Adds the layer's nodes to `graph`, reading `input`, and returns its output. `path` is the layer's
    /// dotted path, which names its nodes and (with the parameter's name) its initialisers.
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue
}

/// The nodes of any layer of the tree; a layer without an ONNX form is an error naming it.
func exportLayer(_ layer: any Layer, _ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
    guard let exportable = layer as? any ONNXExportable else {
        throw KilnError.invalidArgument("ONNX export: \(path.isEmpty ? "the model" : path) (\(layer.typeName)) has no ONNX form")
    }
    return try exportable.exportONNX(input, path: path, to: &graph)
}

/// "parent.child", or the child alone at the root.
func childPath(_ parent: String, _ child: String) -> String { parent.isEmpty ? child : "\(parent).\(child)" }

/// Chains `layers` from `input`.
private func exportChain(_ layers: [(name: String, layer: any Layer)], _ input: ONNXValue, path: String,
                         to graph: inout ONNXGraph) throws -> ONNXValue {
    var value = input
    for (name, layer) in layers { value = try exportLayer(layer, value, path: childPath(path, name), to: &graph) }
    return value
}

// MARK: Containers

extension Sequential: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        try exportChain(layers, input, path: path, to: &graph)
    }
}

extension Residual: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        let main = try exportChain(body.layers, input, path: path, to: &graph)
        let side = try shortcut.map { try exportLayer($0, input, path: childPath(path, shortcutName), to: &graph) } ?? input
        let sum = try graph.add("Add", [main.name, side.name], name: childPath(path, "add"), shape: main.shape, layer: path)
        guard let activation else { return sum }
        return try exportActivation(activation, sum, name: childPath(path, "activation"), layer: path, to: &graph)
    }
}

extension Concat: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        let outputs = try branches.map { try exportLayer($0.layer, input, path: childPath(path, $0.name), to: &graph) }
        return try graph.add("Concat", outputs.map(\.name), name: childPath(path, "concat"), shape: try outputShape(for: input.shape),
                             layer: path, attributes: [.int("axis", 1)])
    }
}

extension Flatten: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        try graph.add("Flatten", [input.name], name: path, shape: try outputShape(for: input.shape), layer: path,
                      attributes: [.int("axis", 1)])
    }
}

extension Reshape: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        // 0 keeps the batch dimension, whatever the batch size the graph runs at.
        let target = graph.addInt64Initializer([0] + shape, name: childPath(path, "shape"))
        return try graph.add("Reshape", [input.name, target], name: path, shape: try outputShape(for: input.shape), layer: path)
    }
}

// MARK: Convolutions and linear layers

/// The attributes Conv and ConvTranspose share; ONNX orders pads as all the starts, then all the ends.
private func convolutionAttributes(_ geometry: Conv2DGeometry) -> [Onnx_AttributeProto] {
    [.ints("kernel_shape", [geometry.kernelHeight, geometry.kernelWidth]),
     .ints("strides", [geometry.strideHeight, geometry.strideWidth]),
     .ints("pads", [geometry.padTop, geometry.padLeft, geometry.padBottom, geometry.padRight]),
     .ints("dilations", [geometry.dilationHeight, geometry.dilationWidth]),
     .int("group", geometry.groups)]
}

extension Conv2D: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        var inputs = [input.name, try graph.addParameter(weight, name: childPath(path, "weight"))]
        if let bias { inputs.append(try graph.addParameter(bias, name: childPath(path, "bias"))) }
        return try graph.add("Conv", inputs, name: path, shape: try outputShape(for: input.shape), layer: path,
                             attributes: convolutionAttributes(geometry))
    }
}

extension ConvTranspose2D: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        var inputs = [input.name, try graph.addParameter(weight, name: childPath(path, "weight"))]
        if let bias { inputs.append(try graph.addParameter(bias, name: childPath(path, "bias"))) }
        return try graph.add("ConvTranspose", inputs, name: path, shape: try outputShape(for: input.shape), layer: path,
                             attributes: convolutionAttributes(geometry) + [.ints("output_padding", [outputPaddingHeight, outputPaddingWidth])])
    }
}

/// y = x Wᵀ + b as Gemm (x [N, in], W [out, in]).
private func exportLinear(_ linear: Linear, _ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
    var inputs = [input.name, try graph.addParameter(linear.weight, name: childPath(path, "weight"))]
    if let bias = linear.bias { inputs.append(try graph.addParameter(bias, name: childPath(path, "bias"))) }
    return try graph.add("Gemm", inputs, name: path, shape: try linear.outputShape(for: input.shape), layer: path,
                         attributes: [.int("transB", 1)])
}

extension Linear: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        try exportLinear(self, input, path: path, to: &graph)
    }
}

extension DropConnectLinear: ONNXExportable {
    /// In inference the whole weight matrix is used, as in training's expectation.
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        try exportLinear(linear, input, path: path, to: &graph)
    }
}

// MARK: Normalisation, pooling, resampling

extension BatchNorm: ONNXExportable {
    /// Inference form: the running statistics (ONNX BatchNormalization in test mode, one output).
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        let inputs = [input.name] + (try [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVariance)]
            .map { try graph.addParameter($0.1, name: childPath(path, $0.0)) })
        return try graph.add("BatchNormalization", inputs, name: path, shape: input.shape, layer: path,
                             attributes: [.float("epsilon", settings.epsilon), .float("momentum", 1 - settings.momentum)])
    }
}

extension LocalResponseNorm: ONNXExportable {
    /// PyTorch's and ONNX's LRN are the same function: x / (k + α/n · Σ x²)^β over n channels.
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        try graph.add("LRN", [input.name], name: path, shape: input.shape, layer: path,
                      attributes: [.int("size", settings.size), .float("alpha", settings.alpha), .float("beta", settings.beta),
                                   .float("bias", settings.k)])
    }
}

extension Pool2D: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        var attributes: [Onnx_AttributeProto] = [
            .ints("kernel_shape", [geometry.windowHeight, geometry.windowWidth]),
            .ints("strides", [geometry.strideHeight, geometry.strideWidth]),
            .ints("pads", [geometry.padHeight, geometry.padWidth, geometry.padHeight, geometry.padWidth]),
        ]
        // Kiln's average divides by the whole window, padding included, as PyTorch's default.
        if kind == .average { attributes.append(.int("count_include_pad", 1)) }
        return try graph.add(kind == .max ? "MaxPool" : "AveragePool", [input.name], name: path,
                             shape: try outputShape(for: input.shape), layer: path, attributes: attributes)
    }
}

extension GlobalPool2D: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        try graph.add(kind == .max ? "GlobalMaxPool" : "GlobalAveragePool", [input.name], name: path,
                      shape: try outputShape(for: input.shape), layer: path)
    }
}

extension Upsample2D: ONNXExportable {
    /// Nearest neighbour by an integer factor: output pixel i reads input pixel floor(i / s).
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        let scales = graph.addInitializer([1, 1, Float(scale), Float(scale)], shape: [4], name: childPath(path, "scales"))
        return try graph.add("Resize", [input.name, "", scales], name: path, shape: try outputShape(for: input.shape), layer: path,
                             attributes: [.string("mode", "nearest"), .string("coordinate_transformation_mode", "asymmetric"),
                                          .string("nearest_mode", "floor")])
    }
}

extension Dropout: ONNXExportable {
    /// The identity in inference: no node.
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue { input }
}

extension ActivityL1: ONNXExportable {
    /// A training penalty: the identity in inference, no node.
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue { input }
}

// MARK: Activations

/// The nodes of `activation` on `input`.
func exportActivation(_ activation: Activation, _ input: ONNXValue, name: String, layer: String,
                      to graph: inout ONNXGraph) throws -> ONNXValue {
    let x = [input.name], shape = input.shape
    switch activation {
    case .relu: return try graph.add("Relu", x, name: name, shape: shape, layer: layer)
    case let .leakyReLU(slope): return try graph.add("LeakyRelu", x, name: name, shape: shape, layer: layer, attributes: [.float("alpha", slope)])
    case let .elu(alpha): return try graph.add("Elu", x, name: name, shape: shape, layer: layer, attributes: [.float("alpha", alpha)])
    case .sigmoid: return try graph.add("Sigmoid", x, name: name, shape: shape, layer: layer)
    case .tanh: return try graph.add("Tanh", x, name: name, shape: shape, layer: layer)
    case .softplus: return try graph.add("Softplus", x, name: name, shape: shape, layer: layer)
    case .swish:
        let gate = try graph.add("Sigmoid", x, name: childPath(name, "sigmoid"), shape: shape, layer: layer)
        return try graph.add("Mul", [input.name, gate.name], name: name, shape: shape, layer: layer)
    case .relu6:
        let low = graph.addInitializer([0], shape: [], name: childPath(name, "min"))
        let high = graph.addInitializer([6], shape: [], name: childPath(name, "max"))
        return try graph.add("Clip", [input.name, low, high], name: name, shape: shape, layer: layer)
    }
}

extension ActivationLayer: ONNXExportable {
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        try exportActivation(activation, input, name: path, layer: path, to: &graph)
    }
}

extension PReLU: ONNXExportable {
    /// The slopes broadcast over the channel axis: [C] becomes [C, 1, 1] for an [N, C, H, W] input.
    func exportONNX(_ input: ONNXValue, path: String, to graph: inout ONNXGraph) throws -> ONNXValue {
        let channels = weight.value.count
        let shape = channels == 1 ? [1] : [channels] + Array(repeating: 1, count: max(input.shape.count - 2, 0))
        let slopes = try graph.addParameter(weight, name: childPath(path, "weight"), shape: shape)
        return try graph.add("PRelu", [input.name, slopes], name: path, shape: input.shape, layer: path)
    }
}
