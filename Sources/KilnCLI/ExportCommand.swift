import ArgumentParser
import Foundation
import Kiln
import KilnInterop

/// Writes a checkpoint's model in a format other runtimes load.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint's model as an ONNX file (for onnxruntime, TensorRT, OpenVINO, ...).",
        discussion: """
            The graph is the model's inference pass on float32 NCHW images, preprocessed as training preprocessed \
            them (the normalisation is recorded in the file's metadata, kiln.normalization_mean and _std): batch \
            norms use their running statistics and dropout is left out. Its input is named input, its output \
            logits (probabilities with --softmax, reconstruction for an autoencoder).
            """)

    @OptionGroup var source: CheckpointOptions
    @Option(help: "The format to write: onnx.")
    var format = "onnx"
    @Option(help: "The file to write (default: the checkpoint's path with .onnx).")
    var out: String?
    @Option(help: ArgumentHelp("The batch dimension: dynamic (any batch size) or a fixed size.", valueName: "dynamic|N"))
    var batch = "dynamic"
    @Option(help: "The ONNX opset, \(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound).")
    var opset = 17
    @Flag(help: "End the graph with a softmax over the classes (output: probabilities).")
    var softmax = false

    func validate() throws {
        guard format.lowercased() == "onnx" else { throw ValidationError("--format must be onnx, not '\(format)'") }
        _ = try batchOption()
        guard ONNXExport.supportedOpsets.contains(opset) else {
            throw ValidationError("--opset must be from \(ONNXExport.supportedOpsets.lowerBound) to \(ONNXExport.supportedOpsets.upperBound), not \(opset)")
        }
    }

    private func batchOption() throws -> ONNXExportOptions.Batch {
        if batch.lowercased() == "dynamic" { return .dynamic }
        guard let size = Int(batch), size >= 1 else { throw ValidationError("--batch must be dynamic or a size of at least 1, not '\(batch)'") }
        return .fixed(size)
    }

    func run() throws {
        try reportingErrors(Self.self) {
            // The parameters are read, not run: the host spares an OpenCL start.
            var options = source
            options.device = "host"
            let restored = try options.restore()
            let task = try ModelZoo.entry(restored.name).task
            if softmax, task != .classification { throw ValidationError("--softmax: \(restored.name) is not a classifier") }
            let exportOptions = ONNXExportOptions(batch: try batchOption(), opset: opset, appendSoftmax: softmax,
                                                  outputName: task == .classification ? nil : "reconstruction",
                                                  graphName: restored.name, metadata: metadata(of: restored, task: task))
            let bytes = try ONNXExport.model(restored.network, inputShape: restored.inputShape, options: exportOptions)
            let url = URL(fileURLWithPath: out ?? (source.checkpoint.hasSuffix(".safetensors")
                ? String(source.checkpoint.dropLast(".safetensors".count)) : source.checkpoint) + ".onnx")
            try writeAtomically(bytes, to: url)
            let shape = restored.inputShape.map(String.init).joined(separator: "×")
            print("wrote \(url.path): \(restored.name), input [\(batch), \(shape)], opset \(opset), "
                  + "\(bytes.count) bytes")
        }
    }

    /// What a user of the file needs to feed and read it: the class names and the input's preprocessing.
    private func metadata(of restored: CheckpointedModel, task: ModelTask) -> [String: String] {
        var metadata = ["kiln.model": restored.name]
        let list = { (values: [String]) in "[" + values.joined(separator: ",") + "]" }
        let quoted = { (name: String) in "\"" + name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
        if task == .classification { metadata["kiln.classes"] = list(restored.classNames.map(quoted)) }
        let configuration = restored.configuration
        if let mean = configuration.normalizationMean, let std = configuration.normalizationStd {
            metadata["kiln.normalization_mean"] = list(mean.map { "\($0)" })
            metadata["kiln.normalization_std"] = list(std.map { "\($0)" })
        }
        if configuration.standardize == true { metadata["kiln.standardize"] = "each image to zero mean and unit variance" }
        if configuration.equalize == true { metadata["kiln.equalize"] = "each image's histogram equalised" }
        return metadata
    }
}
