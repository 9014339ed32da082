import Foundation

/// What a training run is: the model, data, device and hyperparameters. Saved as a run's config.json and in
/// every checkpoint's metadata (`kiln.config`), so a run can be resumed and a checkpoint evaluated without
/// naming them again. The property defaults are `kiln train`'s.
public struct TrainingConfiguration: Codable, Equatable, Sendable {
    /// A model of the zoo (`ModelZoo.names`).
    public var model = "lenet-bn"
    /// A data set spec for `Dataset.load`: fashion-mnist, mnist:DIR, cifar10:DIR, folder:DIR (an image
    /// folder), or a folder of IDX files.
    public var data = "fashion-mnist"
    /// The side every image is resized to (bilinear); nil keeps the data set's own size (the images of an
    /// image folder must then share one). Optional, so that config.json files written before it decode.
    public var imageSize: Int?
    /// A device spec: auto, host or cl:P:D.
    public var device = "auto"
    /// Epochs of the whole run (a resumed run trains those left).
    public var epochs = 10
    /// Images per training step.
    public var batchSize = 64
    /// sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam or adamw.
    public var optimizer = "nesterov"
    /// The learning rate at the start of the schedule.
    public var lr: Float = 0.05
    /// Momentum of the momentum and nesterov optimizers.
    public var momentum: Float = 0.9
    /// L2 weight decay (decoupled for adamw).
    public var weightDecay: Float = 5e-4
    /// constant, step (×0.1 every third of the run), cosine or plateau.
    public var schedule = "cosine"
    /// The seed of initialisation, shuffling and dropout.
    public var seed: UInt64 = 1
    /// The fraction of the training set held out for validation (0 validates on the test set).
    public var valSplit = 0.0
    /// Stop when the validation loss has not improved for this many epochs.
    public var earlyStop: Int?
    /// The augmentation of training batches: an `AugmentationSpec` (steps or a preset); nil for none.
    public var augment: String?
    /// Per-channel normalisation: `auto` (the training set's statistics), `MEAN,STD`, or C means then C
    /// standard deviations; nil for none.
    public var normalize: String?
    /// Per-image standardisation of every batch (global contrast normalisation).
    public var standardize: Bool?
    /// Histogram equalisation of every image when the data set loads.
    public var equalize: Bool?
    /// The means and standard deviations `normalize` resolved to, per channel: recorded in config.json (and
    /// so in every checkpoint), so that eval and predict normalise exactly as training did.
    public var normalizationMean: [Float]?
    public var normalizationStd: [Float]?
    /// The device `device` resolved to and its name: recorded in config.json, not read.
    public var resolvedDevice: String?
    public var deviceName: String?

    /// `kiln train`'s defaults.
    public init() {}

    /// A configuration with every option given, in `kiln train`'s order.
    public init(model: String, data: String, device: String, epochs: Int, batchSize: Int, optimizer: String, lr: Float,
                momentum: Float, weightDecay: Float, schedule: String, seed: UInt64, valSplit: Double, earlyStop: Int?) {
        (self.model, self.data, self.device, self.epochs, self.batchSize) = (model, data, device, epochs, batchSize)
        (self.optimizer, self.lr, self.momentum, self.weightDecay) = (optimizer, lr, momentum, weightDecay)
        (self.schedule, self.seed, self.valSplit, self.earlyStop) = (schedule, seed, valSplit, earlyStop)
    }

    /// Reads a config.json, raising an error that names the file when it is missing or not a configuration.
    public static func read(from url: URL) throws -> TrainingConfiguration {
        guard FileManager.default.fileExists(atPath: url.path) else { throw KilnError.corruptFile(path: url.path, reason: "does not exist") }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be read (\(describeFileError(error)))")
        }
        return try parse(data, path: url.path)
    }

    /// Decodes and range-checks the bytes of a config.json; `path` names the file in errors.
    public static func parse(_ data: Data, path: String) throws -> TrainingConfiguration {
        let configuration: TrainingConfiguration
        do { configuration = try JSONDecoder().decode(TrainingConfiguration.self, from: data) } catch {
            throw KilnError.corruptFile(path: path, reason: "is not a training configuration (\(describeDecodingError(error)))")
        }
        do { try configuration.validateValues() } catch {
            throw KilnError.corruptFile(path: path, reason: "holds a value out of range (\(error))")
        }
        return configuration
    }

    /// The JSON of config.json: pretty-printed with sorted keys.
    public func prettyJSON() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(self)
    }

    /// The hyperparameters' ranges, each error named by its `kiln train` option: `--lr` positive and finite,
    /// `--epochs`, `--batch-size`, `--early-stop` and `--image-size` at least 1, `--val-split` in [0, 1), `--momentum` in
    /// [0, 1), `--weight-decay` finite and not negative.
    public func validateValues() throws {
        func invalid(_ message: String) -> KilnError { .invalidArgument(message) }
        guard lr.isFinite, lr > 0 else { throw invalid("--lr must be a positive finite number, not \(lr)") }
        guard epochs >= 1 else { throw invalid("--epochs must be at least 1, not \(epochs)") }
        guard batchSize >= 1 else { throw invalid("--batch-size must be at least 1, not \(batchSize)") }
        guard valSplit.isFinite, valSplit >= 0, valSplit < 1 else {
            throw invalid("--val-split must be at least 0 and below 1 (a fraction of the training set), not \(valSplit)")
        }
        guard momentum.isFinite, momentum >= 0, momentum < 1 else { throw invalid("--momentum must be at least 0 and below 1, not \(momentum)") }
        guard weightDecay.isFinite, weightDecay >= 0 else { throw invalid("--weight-decay must be a finite number of at least 0, not \(weightDecay)") }
        if let earlyStop, earlyStop < 1 { throw invalid("--early-stop must be at least 1, not \(earlyStop)") }
        if let imageSize, imageSize < 1 { throw invalid("--image-size must be at least 1 (the side in pixels every image is resized to), not \(imageSize)") }
        if normalizationMean != nil || normalizationStd != nil {
            let (mean, std) = (normalizationMean ?? [], normalizationStd ?? [])
            guard mean.count == std.count, !mean.isEmpty, mean.allSatisfy(\.isFinite), std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw invalid("the recorded normalisation needs as many finite means as positive standard deviations, not \(mean) and \(std)")
            }
        }
    }

    /// Checks the sizes that depend on the data: a training set that is not empty and holds at least one
    /// batch, and a validation set (when there is one) that is not empty.
    public func validate(trainingImages: Int, validationImages: Int?) throws {
        let part = valSplit > 0 ? " after holding out --val-split \(valSplit)" : ""
        guard trainingImages > 0 else { throw KilnError.invalidArgument("the training set of \(data) is empty\(part)") }
        guard batchSize <= trainingImages else {
            throw KilnError.invalidArgument("--batch-size \(batchSize) is larger than the training set (\(trainingImages) image\(trainingImages == 1 ? "" : "s")\(part))")
        }
        if let validationImages, validationImages == 0 {
            throw KilnError.invalidArgument(valSplit > 0 ? "--val-split \(valSplit) holds out no image of the training set"
                                                       : "the validation (test) set of \(data) is empty")
        }
    }
}
