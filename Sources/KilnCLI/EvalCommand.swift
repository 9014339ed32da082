import ArgumentParser
import Foundation
import Kiln

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a checkpoint: loss, accuracy, per-class accuracy and the confusion matrix (an autoencoder: its reconstruction loss).")

    @OptionGroup var source: CheckpointOptions
    @Option(help: "Images per batch.")
    var batchSize = 256

    func run() throws {
        try reportingErrors(Self.self) {
            let restored = try source.restore()
            let (modelName, network, test, device) = (restored.name, restored.network, restored.test, restored.device)
            let task = try ModelZoo.entry(modelName).task
            let result = try Evaluation(model: network, batches: restored.batches(of: test, batchSize: batchSize), loss: task.loss,
                                        measuresAccuracy: task.measuresAccuracy)
            guard task.measuresAccuracy else {
                print(String(format: "%@ on %d test images (%@): reconstruction loss (MSE) %.5f", modelName, result.samples,
                             device.description, result.loss))
                return
            }
            print(String(format: "%@ on %d test images (%@): loss %.4f, accuracy %.2f%%", modelName, result.samples, device.description,
                         result.loss, 100 * result.accuracy))
            print("\nper-class accuracy:")
            for (index, name) in restored.classNames.enumerated() where index < result.perClassAccuracy.count {
                let padded = name.padding(toLength: 12, withPad: " ", startingAt: 0)
                print("  \(padded) " + String(format: "%6.2f%%", 100 * result.perClassAccuracy[index]))
            }
            print("\nconfusion matrix (rows: true class, columns: predicted):")
            let width = Swift.max(5, String(result.confusion.flatMap { $0 }.max() ?? 0).count + 1)
            print("      " + (0..<result.confusion.count).map { String(repeating: " ", count: width - String($0).count) + String($0) }.joined())
            for (index, row) in result.confusion.enumerated() {
                let label = String(index)
                print(String(repeating: " ", count: 4 - label.count) + label + "  "
                      + row.map { String(repeating: " ", count: width - String($0).count) + String($0) }.joined())
            }
        }
    }
}

struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary",
        abstract: "Print a model's layers with output shapes, parameters and multiply-accumulates.")

    @Argument(help: "Model name (see `kiln models`).")
    var model: String
    @Option(help: "Input as CxHxW (default: the model's own input size, as `kiln models` lists it).")
    var input: String?
    @Option(help: "Number of classes.")
    var classes = 10
    @Option(help: "Batch size for the activation-memory estimate.")
    var batchSize = 64
    @Option(help: ArgumentHelp("A ResNet's stem: imagenet or small (default: small below 128 px).", valueName: "imagenet|small"))
    var stem: String?
    @Option(help: ArgumentHelp("Mark the layers these dotted-path globs match as frozen (as kiln train --freeze).", valueName: "patterns"))
    var freeze: String?
    @Option(help: ArgumentHelp("Mark every layer before this one as frozen (as kiln train --freeze-until).", valueName: "layer"))
    var freezeUntil: String?

    func run() throws {
        try reportingErrors(Self.self) { try summarize() }
    }

    private func summarize() throws {
        let (_, shape) = try zooModel(model, input: input)
        var configuration = TrainingConfiguration()
        (configuration.model, configuration.stem, configuration.freeze, configuration.freezeUntil) = (model, stem, freeze, freezeUntil)
        do {
            try configuration.validate()
            let network = try ModelZoo.make(model, inputShape: shape, classes: classes, stem: try configuration.resNetStem())
            try configuration.freezePlan.apply(to: network, epoch: 0)
            print(try network.summary(inputShape: shape, batchSize: batchSize))
        } catch let KilnError.invalidArgument(message) { throw ValidationError(message) }
    }
}

/// The zoo's entry for `name` and the input `--input CxHxW` gives (the model's own by default), or a usage
/// error.
func zooModel(_ name: String, input: String?) throws -> (entry: ModelZoo.Entry, shape: [Int]) {
    let entry: ModelZoo.Entry
    do { entry = try ModelZoo.entry(name) } catch { throw ValidationError("\(error)") }
    let shape = input.map { $0.lowercased().split(separator: "x").compactMap { Int($0) } } ?? entry.defaultInput
    guard shape.count == 3, shape.allSatisfy({ $0 > 0 }) else { throw ValidationError("--input must look like 3x32x32") }
    return (entry, shape)
}

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List the model zoo: each model, its own input size, and what it does with 28×28 and 32×32 images.")

    func run() throws {
        let inputs = ModelZoo.entries.map { $0.defaultInput.map(String.init).joined(separator: "x") }
        let nameWidth = ModelZoo.entries.map(\.name.count).max() ?? 0, inputWidth = inputs.map(\.count).max() ?? 0
        func padded(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: width - text.count) }
        print(padded("model", nameWidth) + "  " + padded("input", inputWidth) + "  description")
        for (entry, input) in zip(ModelZoo.entries, inputs) {
            print(padded(entry.name, nameWidth) + "  " + padded(input, inputWidth) + "  " + entry.description)
            print(String(repeating: " ", count: nameWidth + inputWidth + 4) + "28×28 and 32×32: " + entry.smallImages)
            if let dropout = entry.dropout {
                print(String(repeating: " ", count: nameWidth + inputWidth + 4) + "dropout \(dropout) (kiln train --dropout P sets every rate)")
            }
        }
    }
}
