import ArgumentParser
import Foundation
import Kiln

/// The options `eval` and `predict` share: which checkpoint, and what to read it as.
struct CheckpointOptions: ParsableArguments {
    @Option(help: "A safetensors checkpoint (Kiln's, or a PyTorch state dict of the same module tree).")
    var checkpoint: String
    @Option(help: "Model name; needed only for a checkpoint without Kiln's configuration.")
    var model: String?
    @Option(help: "Data set (default: the one the checkpoint was trained on, else fashion-mnist).")
    var data: String?
    @Option(help: "A ResNet's stem, imagenet or small; needed only for a checkpoint without Kiln's configuration (a torchvision ResNet: imagenet).")
    var stem: String?
    @Option(help: "auto, host, or cl:P:D.")
    var device = "auto"

    func restore() throws -> CheckpointedModel {
        try CheckpointedModel(checkpoint: checkpoint, model: model, stem: stem, data: data, device: device)
    }
}

/// A model restored from a checkpoint for `eval` and `predict`, with the test split of its data set.
struct CheckpointedModel {
    var name: String
    var network: Sequential
    var test: Dataset
    var device: Device
    /// The configuration the checkpoint was trained with (`kiln train`'s defaults for one that carries none):
    /// its preprocessing applies to every image the model sees.
    var configuration: TrainingConfiguration
    /// The class names the checkpoint records, else the data set's.
    var classNames: [String]
    /// What the model takes, [C, H, W]: the test set's images are this shape.
    var inputShape: [Int] { test.imageShape }

    /// Reads `checkpoint`; the model and data set come from its Kiln configuration unless given (a PyTorch
    /// state dict carries none, so it needs `model`). The model has the checkpoint's classes: those it records,
    /// else as many as its classifier's rows. With `sameClasses` the data set must have as many (eval,
    /// predict); `onlyClasses` replaces the classes of the data set that the run kept.
    init(checkpoint: String, model: String?, stem: String? = nil, data: String?, onlyClasses: String? = nil,
         device: String, sameClasses: Bool = true) throws {
        let url = URL(fileURLWithPath: checkpoint)
        guard FileManager.default.fileExists(atPath: url.path) else { throw KilnError.corruptFile(path: url.path, reason: "does not exist") }
        // A resume checkpoint's optimiser tensors are not the model's.
        let file = TrainingCheckpoint.modelPart(of: try SafeTensors.read(from: url))
        let saved = file.metadata["kiln.config"].flatMap { try? JSONDecoder().decode(TrainingConfiguration.self, from: Data($0.utf8)) }
        guard let name = model ?? saved?.model else {
            throw ValidationError("\(checkpoint) carries no Kiln configuration: name its model with --model (\(ModelZoo.names.joined(separator: ", ")))")
        }
        self.name = name
        self.device = try DeviceOption.parse(device)
        configuration = saved ?? TrainingConfiguration()
        configuration.model = name
        if let stem { configuration.stem = stem }
        if let onlyClasses { configuration.onlyClasses = onlyClasses }
        // The test images are made what the model was trained on: the size and channels of its training set.
        let dataSpec = data ?? saved?.data ?? "fashion-mnist"
        configuration.data = dataSpec
        // The classes it was trained on alone, when it was trained on some.
        test = try configuration.subset(try Dataset.load(dataSpec, split: .test, imageSize: configuration.imageSize,
                                                         imageShape: try TrainingCheckpoint.inputShape(in: file, source: url.path)))
        reportConversions(test.convertedImages, channels: test.imageShape[0], data: dataSpec)
        let stem = try configuration.resNetStem()
        network = try ModelZoo.make(name, inputShape: test.imageShape, classes: test.classNames.count, stem: stem)
        let recorded = try TrainingCheckpoint.classNames(in: file, source: url.path)
        let headRows = network.classifierPath.flatMap { file["\($0).weight"]?.shape.first }
        let classes = recorded?.count ?? headRows ?? test.classNames.count
        classNames = recorded ?? (classes == test.classNames.count ? test.classNames : (0..<classes).map(String.init))
        if sameClasses, classes != test.classNames.count {
            throw KilnError.invalidArgument("\(checkpoint) was trained on \(classes) classes (\(classNames.joined(separator: ", "))), "
                                            + "but the data set \(dataSpec) has \(test.classNames.count)")
        }
        if classes != test.classNames.count {
            network = try ModelZoo.make(name, inputShape: test.imageShape, classes: classes, stem: stem)
        }
        try network.loadStateDict(file, source: url.path, strict: false)
        try network.move(to: self.device)
    }

    /// Image files and test-set images by index, each made what the model takes as training made its images:
    /// resized (bilinear) to its input size, grey or colour converted to its channels, alpha dropped. Test
    /// images carry their label.
    func inputs(images: [String], indices: [Int]) throws -> [(name: String, pixels: [Float], label: Int?)] {
        let shape = inputShape
        var inputs: [(name: String, pixels: [Float], label: Int?)] = []
        for path in images {
            var image = try ImageFile.read(URL(fileURLWithPath: path))
            if image.channels != shape[0] { image = image.converted(toChannels: shape[0]) }
            image = image.resized(width: shape[2], height: shape[1])
            inputs.append((path, image.pixels, nil))
        }
        for i in indices {
            guard test.labels.indices.contains(i) else { throw ValidationError("--index \(i) is outside 0..<\(test.count)") }
            inputs.append(("test image \(i)", Array(test.subset([i]).pixels), test.labels[i]))
        }
        return inputs
    }

    /// Batches of `dataset` in order, preprocessed as the model was trained.
    func batches(of dataset: Dataset, batchSize: Int) throws -> PrefetchedBatches {
        try configuration.evaluationLoader(dataset, batchSize: batchSize, device: device).batches(epoch: 0)
    }
}
