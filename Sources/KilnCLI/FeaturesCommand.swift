import ArgumentParser
import Foundation
import Kiln

struct FeaturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Use a trained network as a feature extractor: one row per image of a layer's output, and a linear probe on it.",
        discussion: """
            Writes a safetensors file with `features` [N, D] (the layer's output, averaged over height and width when \
            it is spatial) and `labels` [N] (int64), its metadata naming the layer, the checkpoint and the classes. \
            --linear-probe fits a softmax classifier on the standardised training-split features and scores it on the \
            test split's.
            """)

    @OptionGroup var source: CheckpointOptions
    @Option(help: ArgumentHelp("The layer whose output is the feature vector, by dotted path (see kiln summary): fc1, layer4, layer4.1.conv2.", valueName: "path"))
    var layer: String
    @Option(help: "The safetensors file to write.")
    var out = "features.safetensors"
    @Option(help: "The split whose features are written: train or test.")
    var split = "test"
    @Option(help: ArgumentHelp("These classes of the data set alone, relabelled in this order (default: those the checkpoint was trained on).", valueName: "classes"))
    var onlyClasses: String?
    @Option(help: "At most N training images of each class (a sample chosen by --seed).")
    var perClass: Int?
    @Option(help: "Seed of the --per-class sample and of the linear probe.")
    var seed: UInt64 = 1
    @Flag(help: "Fit a linear classifier on the training split's features and report its accuracy on the test split's.")
    var linearProbe = false
    @Option(help: "Epochs of the linear probe (Adam, lr 0.01, weight decay 1e-4, batch 64).")
    var probeEpochs = 100
    @Option(help: "Images per batch.")
    var batchSize = 256

    func validate() throws {
        guard ["train", "test"].contains(split) else { throw ValidationError("--split must be train or test, not '\(split)'") }
        if let perClass, perClass < 1 { throw ValidationError("--per-class must be at least 1, not \(perClass)") }
        guard probeEpochs >= 1 else { throw ValidationError("--probe-epochs must be at least 1, not \(probeEpochs)") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1, not \(batchSize)") }
        if let onlyClasses { do { _ = try Dataset.classList(onlyClasses) } catch { throw ValidationError("--only-classes: \(error)") } }
    }

    func run() throws {
        try reportingErrors(Self.self) {
            let restored = try CheckpointedModel(checkpoint: source.checkpoint, model: source.model, stem: source.stem, data: source.data,
                                                 onlyClasses: onlyClasses, device: source.device, sameClasses: false)
            let network = restored.network
            do { _ = try network.layer(named: layer) } catch let KilnError.invalidArgument(message) { throw ValidationError("--layer: \(message)") }

            func features(of dataset: Dataset) throws -> Dataset {
                try network.features(of: layer, batches: restored.batches(of: dataset, batchSize: batchSize), classNames: dataset.classNames)
            }
            let needsTrain = split == "train" || linearProbe
            let trainImages = try needsTrain ? trainSplit(of: restored) : nil
            let train = try trainImages.map(features)
            let test = split == "test" || linearProbe ? try features(of: restored.test) : nil
            guard let written = split == "train" ? train : test else { return }

            var file = SafeTensors()
            file.set("features", floats: written.pixels, shape: [written.count, written.imageShape[0]])
            file.set("labels", integers: written.labels.map(Int64.init), shape: [written.count])
            file.metadata = ["kiln.layer": layer, "kiln.checkpoint": source.checkpoint, "kiln.split": split,
                             "kiln.data": restored.configuration.data,
                             TrainingCheckpoint.classesKey: String(decoding: try JSONEncoder().encode(written.classNames), as: UTF8.self)]
            try file.write(to: URL(fileURLWithPath: out))
            print("\(layer) of \(restored.name): \(written.imageShape[0]) features for each of \(written.count) \(split) images "
                  + "(\(written.classNames.count) classes); wrote \(out)")

            if linearProbe, let train, let test {
                var probe = LinearProbe()
                (probe.epochs, probe.seed) = (probeEpochs, seed)
                let result = try probe.fit(train: train, test: test, device: restored.device)
                print(String(format: "linear probe on %@ (%d features, %d epochs): train accuracy %.2f%% (%d images), test accuracy %.2f%% (%d images)",
                             layer, train.imageShape[0], probeEpochs, 100 * result.trainAccuracy, train.count,
                             100 * (result.testAccuracy ?? .nan), test.count))
            }
        }
    }

    /// The training split of the checkpoint's data: its classes, the image shape the model takes, and at most
    /// `perClass` images of each class.
    private func trainSplit(of restored: CheckpointedModel) throws -> Dataset {
        let configuration = restored.configuration
        var train = try configuration.subset(try Dataset.load(configuration.data, split: .train, imageSize: configuration.imageSize,
                                                              imageShape: restored.inputShape))
        if let perClass { train = train.limited(perClass: perClass, seed: seed) }
        return train
    }
}
