import ArgumentParser
import Foundation
import Kiln

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify images (PNG or PGM) or test-set samples with a checkpoint: the top classes with probabilities.")

    @OptionGroup var source: CheckpointOptions
    @Option(parsing: .upToNextOption, help: "Indices of test-set images to classify.")
    var index: [Int] = []
    @Option(help: "How many classes to show per image.")
    var top = 3
    @Argument(help: "PNG or PGM images, of the model's input size.")
    var images: [String] = []

    func run() throws {
        try reportingErrors(Self.self) {
            guard !images.isEmpty || !index.isEmpty else { throw ValidationError("give image files or --index N") }
            let restored = try source.restore()
            let (modelName, network, test, device) = (restored.name, restored.network, restored.test, restored.device)

            var inputs: [(name: String, pixels: [Float], label: Int?)] = []
            for path in images {
                let image = try ImageFile.read(URL(fileURLWithPath: path)).converted(toChannels: test.imageShape[0])
                guard [image.channels, image.height, image.width] == test.imageShape else {
                    throw ValidationError("\(path) is \(image.height)×\(image.width); \(modelName) takes \(test.imageShape[1])×\(test.imageShape[2])")
                }
                inputs.append((path, image.pixels, nil))
            }
            for i in index {
                guard test.labels.indices.contains(i) else { throw ValidationError("--index \(i) is outside 0..<\(test.count)") }
                inputs.append(("test image \(i)", Array(test.subset([i]).pixels), test.labels[i]))
            }
            let samples = Dataset(imageShape: test.imageShape, pixels: inputs.flatMap(\.pixels), labels: inputs.map { $0.label ?? 0 },
                                 classNames: test.classNames)
            guard let batch = try restored.batches(of: samples, batchSize: inputs.count).next() else { return }
            let probabilities = try network.forward(batch.inputs, .inference).softmax().toArray()
            let classes = test.classNames.count
            for (row, input) in inputs.enumerated() {
                let scores = Array(probabilities[(row * classes)..<((row + 1) * classes)])
                let ranked = scores.indices.sorted { scores[$0] > scores[$1] }.prefix(Swift.max(top, 1))
                let truth = input.label.map { " (true class: \(test.classNames[$0]))" } ?? ""
                print("\(input.name)\(truth)")
                for k in ranked { print(String(format: "  %6.2f%%  ", 100 * scores[k]) + test.classNames[k]) }
            }
        }
    }
}
