import ArgumentParser
import Foundation
import Kiln

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify images (PNG, PGM or JPEG) or test-set samples with a checkpoint: the top classes with probabilities.",
        discussion: """
            For a model that reconstructs its input (the autoencoder), writes each reconstruction instead, as a PNG of \
            the input, the reconstruction and their absolute difference side by side, into --out.
            """)

    @OptionGroup var source: CheckpointOptions
    @Option(parsing: .upToNextOption, help: "Indices of test-set images to classify.")
    var index: [Int] = []
    @Option(help: "How many classes to show per image.")
    var top = 3
    @Argument(help: "PNG, PGM or JPEG images, resized to the model's input size and converted to its channels.")
    var images: [String] = []
    @Option(help: "The folder for an autoencoder's reconstructions (default: reconstructions).")
    var out = "reconstructions"

    func run() throws {
        try reportingErrors(Self.self) {
            guard !images.isEmpty || !index.isEmpty else { throw ValidationError("give image files or --index N") }
            let restored = try source.restore()
            let (network, test) = (restored.network, restored.test)

            let inputs = try restored.inputs(images: images, indices: index)
            let samples = Dataset(imageShape: test.imageShape, pixels: inputs.flatMap(\.pixels), labels: inputs.map { $0.label ?? 0 },
                                 classNames: restored.classNames)
            guard let batch = try restored.batches(of: samples, batchSize: inputs.count).next() else { return }
            if try ModelZoo.entry(restored.configuration.model).task == .reconstruction {
                return try writeReconstructions(of: batch, names: inputs.map(\.name), network: network, shape: restored.inputShape)
            }
            let probabilities = try network.forward(batch.inputs, .prediction).softmax().toArray()
            let classNames = restored.classNames, classes = classNames.count
            for (row, input) in inputs.enumerated() {
                let scores = Array(probabilities[(row * classes)..<((row + 1) * classes)])
                let ranked = scores.indices.sorted { scores[$0] > scores[$1] }.prefix(Swift.max(top, 1))
                let truth = input.label.map { " (true class: \(classNames[$0]))" } ?? ""
                print("\(input.name)\(truth)")
                for k in ranked { print(String(format: "  %6.2f%%  ", 100 * scores[k]) + classNames[k]) }
            }
        }
    }

    /// input | reconstruction | |input − reconstruction|, one PNG per image, with each one's mean squared error.
    /// The images are the model's inputs as the batch holds them (normalised, if the run normalised).
    private func writeReconstructions(of batch: Batch, names: [String], network: Sequential, shape: [Int]) throws {
        let inputs = try batch.inputs.toArray()
        let outputs = try network.forward(batch.inputs, .prediction).toArray()
        let size = shape.reduce(1, *)
        let folder = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (row, name) in names.enumerated() {
            let input = Array(inputs[(row * size)..<((row + 1) * size)]), output = Array(outputs[(row * size)..<((row + 1) * size)])
            let difference = zip(input, output).map { abs($0 - $1) }
            let error = zip(input, output).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) / Float(size)
            let grid = try ImageGrid.tile(input + output + difference, shape: [3] + shape, columns: 3, border: 2)
            let file = folder.appending(path: String(format: "%03d-%@.png", row, (name as NSString).lastPathComponent.replacingOccurrences(of: " ", with: "-")))
            try grid.write(png: file)
            print(String(format: "%@: reconstruction MSE %.5f -> %@", name, error, file.path))
        }
    }
}
