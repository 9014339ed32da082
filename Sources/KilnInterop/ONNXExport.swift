import Foundation
import Kiln

/// Writes a Kiln model as an ONNX model: its inference forward pass (batch norms on their running
/// statistics, dropout as the identity) as one graph over float32 NCHW tensors, its parameters as
/// initialisers under their state-dict names, so that onnxruntime, TensorRT or OpenVINO run it.
///
///     let bytes = try ONNXExport.model(network, inputShape: [1, 28, 28], options: ONNXExportOptions(opset: 17))
///     try Data(bytes).write(to: URL(fileURLWithPath: "model.onnx"))
public enum ONNXExport {
    /// The opsets Kiln writes.
    public static let supportedOpsets = 7...21

    /// The ONNX file of `model` for inputs [N, C, H, W] with [C, H, W] = `inputShape`.
    public static func model(_ model: any Layer, inputShape: [Int], options: ONNXExportOptions = ONNXExportOptions()) throws -> [UInt8] {
        let proto = try modelProto(model, inputShape: inputShape, options: options)
        return Array(try proto.serializedData())
    }

    static func modelProto(_ model: any Layer, inputShape: [Int], options: ONNXExportOptions) throws -> Onnx_ModelProto {
        guard supportedOpsets.contains(options.opset) else {
            throw KilnError.invalidArgument("ONNX opset \(options.opset) is not one Kiln writes: choose one of "
                                            + "\(supportedOpsets.lowerBound)–\(supportedOpsets.upperBound) (default 17)")
        }
        if case let .fixed(batch) = options.batch, batch < 1 {
            throw KilnError.invalidArgument("ONNX export: a fixed batch size must be at least 1, not \(batch)")
        }
        let inputName = "input"
        let example = [options.batch.exampleSize] + inputShape
        let outputShape = try model.outputShape(for: example)
        var graph = ONNXGraph(opset: options.opset, reservedNames: [inputName, options.outputName])
        var output = try exportLayer(model, ONNXValue(name: inputName, shape: example), path: "", to: &graph)
        if options.appendSoftmax {
            output = try graph.add("Softmax", [output.name], name: "softmax", shape: output.shape, layer: "--softmax",
                                   attributes: [.int("axis", 1)])
        }
        if output.name == inputName {
            output = try graph.add("Identity", [inputName], name: "identity", shape: output.shape, layer: "the model")
        }
        graph.rename(output.name, to: options.outputName)

        var proto = Onnx_GraphProto()
        proto.name = options.graphName
        proto.node = graph.nodes
        proto.initializer = graph.initializers
        proto.input = [valueInfo(inputName, shape: example, batch: options.batch)]
        proto.output = [valueInfo(options.outputName, shape: outputShape, batch: options.batch)]

        var model = Onnx_ModelProto()
        model.irVersion = irVersion(forOpset: options.opset)
        var opset = Onnx_OperatorSetIdProto()
        (opset.domain, opset.version) = ("", Int64(options.opset))
        model.opsetImport = [opset]
        model.producerName = "Kiln"
        model.graph = proto
        model.metadataProps = options.metadata.sorted { $0.key < $1.key }.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            (entry.key, entry.value) = (key, value)
            return entry
        }
        return model
    }

    /// The IR version of the ONNX release that introduced `opset`, which every runtime of that opset reads.
    static func irVersion(forOpset opset: Int) -> Int64 {
        switch opset {
        case ...8: return 3
        case 9: return 4
        case 10: return 5
        case 11: return 6
        case 12...14: return 7
        case 15...18: return 8
        case 19...20: return 9
        default: return 10
        }
    }

    private static func valueInfo(_ name: String, shape: [Int], batch: ONNXExportOptions.Batch) -> Onnx_ValueInfoProto {
        var tensorShape = Onnx_TensorShapeProto()
        tensorShape.dim = shape.enumerated().map { axis, size in
            var dimension = Onnx_TensorShapeProto.Dimension()
            if axis == 0, case .dynamic = batch { dimension.dimParam = "batch" } else { dimension.dimValue = Int64(size) }
            return dimension
        }
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensorType.shape = tensorShape
        var type = Onnx_TypeProto()
        type.tensorType = tensorType
        var info = Onnx_ValueInfoProto()
        (info.name, info.type) = (name, type)
        return info
    }
}

/// How `ONNXExport` writes a model.
public struct ONNXExportOptions: Sendable {
    /// The batch dimension of the graph's input and output.
    public enum Batch: Equatable, Sendable {
        /// A named dimension ("batch"): any batch size runs.
        case dynamic
        /// This many images in every run.
        case fixed(Int)

        /// The batch size the shapes are worked out for.
        var exampleSize: Int {
            if case let .fixed(size) = self { return size }
            return 1
        }
    }

    public var batch: Batch
    /// The ONNX operator set version (`ONNXExport.supportedOpsets`).
    public var opset: Int
    /// End the graph with a softmax over the classes, so that it outputs probabilities.
    public var appendSoftmax: Bool
    /// The name of the graph's output ("logits", "probabilities", "reconstruction").
    public var outputName: String
    public var graphName: String
    /// Written into the model's metadata_props (class names, the input's normalisation, ...).
    public var metadata: [String: String]

    public init(batch: Batch = .dynamic, opset: Int = 17, appendSoftmax: Bool = false, outputName: String? = nil,
                graphName: String = "kiln", metadata: [String: String] = [:]) {
        self.batch = batch
        self.opset = opset
        self.appendSoftmax = appendSoftmax
        self.outputName = outputName ?? (appendSoftmax ? "probabilities" : "logits")
        self.graphName = graphName
        self.metadata = metadata
    }
}
