import Foundation
import Kiln

/// A value of the graph being built: its name and its shape (the batch first).
struct ONNXValue {
    var name: String
    var shape: [Int]
}

/// An ONNX graph being built layer by layer: its nodes, its initialisers (the parameters, by their state-dict
/// names), and the opset the export targets, which every op checks that it exists in.
struct ONNXGraph {
    let opset: Int
    private(set) var nodes: [Onnx_NodeProto] = []
    private(set) var initializers: [Onnx_TensorProto] = []
    private var usedNames: Set<String> = []

    init(opset: Int, reservedNames: Set<String>) {
        self.opset = opset
        usedNames = reservedNames
    }

    /// The first opset in which each op Kiln writes has the form it writes: BatchNormalization without the
    /// `spatial` attribute (9), Gemm with an optional C (11), Clip with its bounds as inputs (11), Resize with
    /// an optional region of interest (13). The others have had theirs since opset 7, the oldest Kiln writes.
    static let firstOpset: [String: Int] = ["BatchNormalization": 9, "Gemm": 11, "Clip": 11, "Resize": 13]

    /// A name for a new value, `base` unless a value or parameter already has it.
    mutating func uniqueName(_ base: String) -> String {
        var name = base, index = 1
        while usedNames.contains(name) {
            index += 1
            name = "\(base)_\(index)"
        }
        usedNames.insert(name)
        return name
    }

    /// Adds an `opType` node reading `inputs` (an empty name is an omitted optional input) and returns its
    /// output, named after `name` (the layer's path), of shape `shape`. `layer` names the layer for the error
    /// when the opset lacks the op.
    mutating func add(_ opType: String, _ inputs: [String], name: String, shape: [Int], layer: String,
                      attributes: [Onnx_AttributeProto] = []) throws -> ONNXValue {
        if let first = Self.firstOpset[opType], opset < first {
            throw KilnError.invalidArgument("ONNX opset \(opset) is too old for \(layer): its \(opType) needs opset \(first) or later "
                                            + "(--opset \(first))")
        }
        var node = Onnx_NodeProto()
        node.opType = opType
        node.name = uniqueName(name.isEmpty ? opType : name)
        node.input = inputs
        node.output = [node.name]
        node.attribute = attributes
        nodes.append(node)
        return ONNXValue(name: node.name, shape: shape)
    }

    /// Adds a float initialiser of `shape` holding `values` and returns its name.
    mutating func addInitializer(_ values: [Float], shape: [Int], name: String) -> String {
        var tensor = Onnx_TensorProto()
        tensor.name = uniqueName(name)
        tensor.dims = shape.map(Int64.init)
        tensor.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.rawData = values.withUnsafeBytes { Data($0) }
        initializers.append(tensor)
        return tensor.name
    }

    /// Adds a parameter as an initialiser under its state-dict name, optionally in another shape of as many values.
    mutating func addParameter(_ parameter: Parameter, name: String, shape: [Int]? = nil) throws -> String {
        addInitializer(try parameter.value.toArray(), shape: shape ?? parameter.value.shape, name: name)
    }

    /// Adds a one-dimensional int64 initialiser (a shape for Reshape) and returns its name.
    mutating func addInt64Initializer(_ values: [Int], name: String) -> String {
        var tensor = Onnx_TensorProto()
        tensor.name = uniqueName(name)
        tensor.dims = [Int64(values.count)]
        tensor.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        tensor.rawData = values.map { Int64($0).littleEndian }.withUnsafeBytes { Data($0) }
        initializers.append(tensor)
        return tensor.name
    }

    /// Gives the value `old` (the output of the last node that wrote it) the name `new`.
    mutating func rename(_ old: String, to new: String) {
        guard let index = nodes.lastIndex(where: { $0.output.contains(old) }) else { return }
        nodes[index].output = nodes[index].output.map { $0 == old ? new : $0 }
        usedNames.insert(new)
    }
}

extension Onnx_AttributeProto {
    static func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        (attribute.name, attribute.type, attribute.i) = (name, .int, Int64(value))
        return attribute
    }

    static func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        (attribute.name, attribute.type, attribute.ints) = (name, .ints, values.map(Int64.init))
        return attribute
    }

    static func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        (attribute.name, attribute.type, attribute.f) = (name, .float, value)
        return attribute
    }

    static func string(_ name: String, _ value: String) -> Onnx_AttributeProto {
        var attribute = Onnx_AttributeProto()
        (attribute.name, attribute.type, attribute.s) = (name, .string, Data(value.utf8))
        return attribute
    }
}
