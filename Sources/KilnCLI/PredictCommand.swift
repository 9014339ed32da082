import ArgumentParser
import Foundation
import Kiln

struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify images (PNG, PGM or JPEG) or test-set samples with a checkpoint: the top classes with probabilities.")

    @OptionGroup var source: CheckpointOptions
    @Option(parsing: .upToNextOption, help: "Indices of test-set images to classify.")
    var index: [Int] = []
    @Option(help: "How many classes to show per image.")
    var top = 3
    @Argument(help: "PNG, PGM or JPEG images, resized to the model's input size and converted to its channels.")
    var images: [String] = []

    func run() throws {
        try reportingErrors(Self.self) {
            guard !images.isEmpty || !index.isEmpty else { throw ValidationError("give image files or --index N") }
            let restored = try source.restore()
            let (network, test) = (restored.network, restored.test)

            let inputs = try restored.inputs(images: images, indices: index)
            let samples = Dataset(imageShape: test.imageShape, pixels: inputs.flatMap(\.pixels), labels: inputs.map { $0.label ?? 0 },
                                 classNames: restored.classNames)
            guard let batch = try restored.batches(of: samples, batchSize: inputs.count).next() else { return }
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
}
