import Foundation

/// What a training run is: the model, data, device and hyperparameters. Saved as a run's config.json and in
/// every checkpoint's metadata (`kiln.config`), so a run can be resumed and a checkpoint evaluated without
/// naming them again. The property defaults are `kiln train`'s.
public struct TrainingConfiguration: Codable, Equatable, Sendable {
    /// A model of the zoo (`ModelZoo.names`).
    public var model = "lenet-bn2"
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
    /// The learning rate at the start of the schedule (`kiln train` defaults it by rule:
    /// `defaultLearningRate(for:)`).
    public var lr: Float = 0.05
    /// Momentum of the momentum and nesterov optimizers.
    public var momentum: Float = 0.9
    /// Adam's and AdamW's (β₁, β₂); nil for (0.9, 0.999).
    public var betas: [Float]?
    /// The ε of Adam, AdamW, RMSProp, AdaGrad and Adadelta; nil for the rule's own (PyTorch's defaults).
    public var eps: Float?
    /// Adadelta's ρ; nil for 0.9.
    public var rho: Float?
    /// RMSProp's smoothing constant α; nil for 0.99.
    public var alpha: Float?
    /// L2 weight decay (decoupled for adamw).
    public var weightDecay: Float = 5e-4
    /// L1 penalty λ·Σ|w| on every learnable parameter (its subgradient λ·sign(w) is added to the gradient);
    /// nil for none.
    public var l1: Float?
    /// After each update, every weight row (first dimension) of a parameter with two or more dimensions is
    /// scaled down to at most this L2 norm; nil for no constraint.
    public var maxNorm: Float?
    /// All gradients together are scaled down to at most this global L2 norm before each update (PyTorch's
    /// clip_grad_norm_); nil for no clipping.
    public var clipGradNorm: Float?
    /// Parameter kinds the weight decay skips, comma-separated: `bias` (every parameter named bias),
    /// `norm` (the weight and bias of every batch norm); nil for none.
    public var noWeightDecayOn: String?
    /// constant, step (×γ every third of the run, or at `milestones`), exponential (×γ every epoch), cosine,
    /// onecycle or plateau (`LearningRateSchedule`).
    public var schedule = "cosine"
    /// The epochs (1-based, comma-separated) at which the step schedule multiplies the rate by γ: "3,6".
    public var milestones: String?
    /// The factor of the step and exponential schedules (default 0.1 and 0.95).
    public var gamma: Float?
    /// A linear warm-up in front of the schedule: a number of steps ("500") or of epochs ("2ep").
    public var warmup: String?
    /// The seed of initialisation, shuffling and dropout.
    public var seed: UInt64 = 1
    /// The fraction of the training set held out for validation. nil, the default, holds out a stratified
    /// min(5,000, 10 %) of it (`validationCount`); 0 validates on the test set, as runs did before the
    /// default split (their config.json says 0, and they resume so).
    public var valSplit: Double?
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
    /// Train on these classes alone (`Dataset.classList`: "0-4", "5,7,9"), relabelled in that order, in
    /// every split; nil for all.
    public var onlyClasses: String?
    /// Train on at most this many images of every class (of the training split, before validation is held
    /// out), a seeded random sample; nil for all.
    public var perClass: Int?
    /// A ResNet's stem, `imagenet` or `small` (`ResNetStem`); nil for the zoo's choice by input size.
    public var stem: String?
    /// The safetensors file (a Kiln checkpoint or any state dict) whose matching tensors initialise the
    /// model (`Layer.loadPretrained`); nil to start from the seed's initialisation.
    public var initFrom: String?
    /// Label smoothing ε of the classification loss (PyTorch's cross_entropy label_smoothing); nil for none.
    public var labelSmoothing: Float?
    /// The rate of every dropout layer of the model; nil for the zoo's own rates.
    public var dropout: Float?
    /// σ of Gaussian noise added to every training image (`DataLoader.inputNoise`): with the autoencoder, a
    /// denoising autoencoder, trained to reconstruct the clean image; nil for none.
    public var noise: Float?
    /// λ of an L1 penalty on the autoencoder's code (`ActivityL1` after its encoder): a sparse autoencoder; nil for none.
    public var sparsity: Float?
    /// An initialisation scheme (`InitializationScheme`: xavier-uniform, he-normal, ...) applied from the seed;
    /// nil for the layers' defaults. `kiln train --init` takes a scheme name or a file.
    public var initScheme: String?
    /// Make any tensor of `initFrom` missing, unexpected or of another shape an error.
    public var strictInit: Bool?
    /// Dotted-path globs of the layers to freeze (`Layer.parameters(matching:)`), comma-separated.
    public var freeze: String?
    /// Freeze every layer before this one.
    public var freezeUntil: String?
    /// The epoch (1-based) from which the frozen layers train.
    public var unfreezeAt: Int?
    /// The learning rate of the frozen layers once they train (the schedule scales it as it scales `lr`).
    public var lrBackbone: Float?
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
                momentum: Float, weightDecay: Float, schedule: String, seed: UInt64, valSplit: Double?, earlyStop: Int?) {
        (self.model, self.data, self.device, self.epochs, self.batchSize) = (model, data, device, epochs, batchSize)
        (self.optimizer, self.lr, self.momentum, self.weightDecay) = (optimizer, lr, momentum, weightDecay)
        (self.schedule, self.seed, self.valSplit, self.earlyStop) = (schedule, seed, valSplit, earlyStop)
    }

    /// The most images the default split holds out: enough for a steady validation loss, while a large
    /// training set keeps nearly all of its images for training.
    public static let defaultValidationImages = 5_000

    /// Whether the test set scores every epoch (`valSplit` 0) rather than a split of the training set.
    public var validatesOnTestSet: Bool { valSplit == 0 }

    /// How many of `trainingImages` images are held out for validation: `valSplit` of them rounded, or by
    /// default min(5,000, 10 % rounded); 0 when the test set validates.
    public func validationCount(trainingImages: Int) -> Int {
        guard let valSplit else { return Swift.min(Self.defaultValidationImages, (trainingImages + 5) / 10) }
        return Int((Double(trainingImages) * valSplit).rounded())
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
    /// [0, 1), `--weight-decay` and `--l1` finite and not negative, `--max-norm` and `--clip-grad-norm` positive,
    /// `--no-weight-decay-on` a list of known kinds.
    public func validateValues() throws {
        func invalid(_ message: String) -> KilnError { .invalidArgument(message) }
        guard lr.isFinite, lr > 0 else { throw invalid("--lr must be a positive finite number, not \(lr)") }
        guard epochs >= 1 else { throw invalid("--epochs must be at least 1, not \(epochs)") }
        guard batchSize >= 1 else { throw invalid("--batch-size must be at least 1, not \(batchSize)") }
        if let valSplit, !(valSplit.isFinite && valSplit >= 0 && valSplit < 1) {
            throw invalid("--val-split must be at least 0 and below 1 (a fraction of the training set), not \(valSplit)")
        }
        guard momentum.isFinite, momentum >= 0, momentum < 1 else { throw invalid("--momentum must be at least 0 and below 1, not \(momentum)") }
        guard weightDecay.isFinite, weightDecay >= 0 else { throw invalid("--weight-decay must be a finite number of at least 0, not \(weightDecay)") }
        try validateOptimizerSettings()
        if let l1, !(l1.isFinite && l1 >= 0) { throw invalid("--l1 must be a finite number of at least 0, not \(l1)") }
        if let maxNorm, !(maxNorm.isFinite && maxNorm > 0) { throw invalid("--max-norm must be a positive finite number, not \(maxNorm)") }
        if let clipGradNorm, !(clipGradNorm.isFinite && clipGradNorm > 0) {
            throw invalid("--clip-grad-norm must be a positive finite number, not \(clipGradNorm)")
        }
        _ = try decayExemptKinds()
        if let gamma, !(gamma.isFinite && gamma > 0 && gamma <= 1) { throw invalid("--gamma must be above 0 and at most 1, not \(gamma)") }
        if gamma != nil, !["step", "exponential"].contains(schedule.lowercased()) {
            throw invalid("--gamma sets the factor of the step and exponential schedules, not of --schedule \(schedule)")
        }
        if milestones != nil, schedule.lowercased() != "step" { throw invalid("--milestones are the epochs of --schedule step, not of \(schedule)") }
        _ = try milestoneEpochs()
        _ = try warmupLength()
        if let earlyStop, earlyStop < 1 { throw invalid("--early-stop must be at least 1, not \(earlyStop)") }
        if let perClass, perClass < 1 { throw invalid("--per-class must be at least 1, not \(perClass)") }
        if let onlyClasses {
            do { _ = try Dataset.classList(onlyClasses) } catch let KilnError.invalidArgument(message) { throw invalid("--only-classes: \(message)") }
        }
        if let labelSmoothing, !(labelSmoothing >= 0 && labelSmoothing < 1) {
            throw invalid("--label-smoothing must be at least 0 and below 1, not \(labelSmoothing)")
        }
        if let dropout, !(dropout >= 0 && dropout < 1) { throw invalid("--dropout must be at least 0 and below 1, not \(dropout)") }
        if let noise, !(noise >= 0 && noise.isFinite) { throw invalid("--noise must be a standard deviation of at least 0, not \(noise)") }
        if let sparsity, !(sparsity >= 0 && sparsity.isFinite) { throw invalid("--sparsity must be at least 0, not \(sparsity)") }
        if let sparsity, sparsity > 0, model.lowercased() != "autoencoder" {
            throw invalid("--sparsity penalises the autoencoder's code; \(model) has none (use --l1 for its weights)")
        }
        if strictInit == true, initFrom == nil { throw invalid("--strict checks what --init loads: give --init FILE with it") }
        if let freeze, freeze.split(separator: ",", omittingEmptySubsequences: false).contains(where: { $0.trimmingCharacters(in: .whitespaces).isEmpty }) {
            throw invalid("--freeze takes comma-separated layer patterns (conv1,bn1,layer1.*), not '\(freeze)'")
        }
        let freezes = freeze != nil || freezeUntil != nil
        if let unfreezeAt {
            guard freezes else { throw invalid("--unfreeze-at \(unfreezeAt) needs layers to unfreeze: give --freeze or --freeze-until") }
            guard unfreezeAt >= 2 else { throw invalid("--unfreeze-at must be at least 2 (the epoch, from 1, whose training unfreezes), not \(unfreezeAt)") }
            guard unfreezeAt <= epochs else {
                throw invalid("--unfreeze-at \(unfreezeAt) is beyond the run, which trains \(epochs) epoch\(epochs == 1 ? "" : "s")")
            }
        }
        if let lrBackbone {
            guard lrBackbone.isFinite, lrBackbone > 0 else { throw invalid("--lr-backbone must be a positive finite number, not \(lrBackbone)") }
            guard freezes, unfreezeAt != nil else {
                throw invalid("--lr-backbone sets the rate of the frozen layers once they train: give --freeze or --freeze-until, and --unfreeze-at")
            }
        }
        if let imageSize, imageSize < 1 { throw invalid("--image-size must be at least 1 (the side in pixels every image is resized to), not \(imageSize)") }
        if normalizationMean != nil || normalizationStd != nil {
            let (mean, std) = (normalizationMean ?? [], normalizationStd ?? [])
            guard mean.count == std.count, !mean.isEmpty, mean.allSatisfy(\.isFinite), std.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw invalid("the recorded normalisation needs as many finite means as positive standard deviations, not \(mean) and \(std)")
            }
        }
    }

    /// Checks the sizes that depend on the data: a validation set (when there is one) that is not empty,
    /// and a training set, what is left of it, that is not empty and holds at least one batch.
    public func validate(trainingImages: Int, validationImages: Int?) throws {
        if let validationImages, validationImages == 0 {
            switch valSplit {
            case nil:
                // The default split of a data set of under 5 images rounds to nothing.
                throw KilnError.invalidArgument("the training set of \(data) (\(trainingImages) image\(trainingImages == 1 ? "" : "s")) is too small "
                                                + "to hold out validation images (10 % of it rounds to 0); give --val-split 0 to validate on the test set")
            case let fraction? where fraction > 0:
                throw KilnError.invalidArgument("--val-split \(fraction) holds out no image of the training set")
            default:
                throw KilnError.invalidArgument("the test set of \(data), which --val-split 0 validates on, is empty")
            }
        }
        let part: String
        switch valSplit {
        case nil: part = validationImages.map { " after holding out \($0) validation image\($0 == 1 ? "" : "s")" } ?? ""
        case let fraction? where fraction > 0: part = " after holding out --val-split \(fraction)"
        default: part = ""
        }
        guard trainingImages > 0 else { throw KilnError.invalidArgument("the training set of \(data) is empty\(part)") }
        guard batchSize <= trainingImages else {
            throw KilnError.invalidArgument("--batch-size \(batchSize) is larger than the training set (\(trainingImages) image\(trainingImages == 1 ? "" : "s")\(part))")
        }
        let stepsPerEpoch = (trainingImages + batchSize - 1) / batchSize
        if let warmup, try warmupSteps(stepsPerEpoch: stepsPerEpoch) >= epochs * stepsPerEpoch {
            throw KilnError.invalidArgument("--warmup \(warmup) is \(try warmupSteps(stepsPerEpoch: stepsPerEpoch)) steps, as long as the run or longer "
                                            + "(\(epochs) epoch\(epochs == 1 ? "" : "s") of \(stepsPerEpoch) steps)")
        }
    }
}

// The values' own parsing, beside their checks (the fuzz target compiles this file alone).
extension TrainingConfiguration {
    /// The parameter kinds of `noWeightDecayOn`, or `KilnError.invalidArgument` naming the known ones.
    func decayExemptKinds() throws -> Set<String> {
        guard let noWeightDecayOn else { return [] }
        let kinds = noWeightDecayOn.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        for kind in kinds where !["bias", "norm"].contains(kind) {
            throw KilnError.invalidArgument("--no-weight-decay-on takes bias, norm or both (bias,norm), not '\(kind.isEmpty ? noWeightDecayOn : kind)'")
        }
        return Set(kinds)
    }

    /// Each rule setting in its range and given only to a rule that has it.
    func validateOptimizerSettings() throws {
        let rule = optimizer.lowercased()
        func applies(_ option: String, to rules: [String]) throws {
            guard rules.contains(rule) else {
                throw KilnError.invalidArgument("\(option) is a setting of \(rules.joined(separator: ", ")), not of --optimizer \(optimizer)")
            }
        }
        if let betas {
            try applies("--betas", to: ["adam", "adamw"])
            guard betas.count == 2, betas.allSatisfy({ $0 >= 0 && $0 < 1 }) else {
                throw KilnError.invalidArgument("--betas takes two numbers in [0, 1), β₁,β₂ (0.9,0.999), not \(betas.map { "\($0)" }.joined(separator: ","))")
            }
        }
        if let eps {
            try applies("--eps", to: ["adam", "adamw", "rmsprop", "adagrad", "adadelta"])
            guard eps.isFinite, eps > 0 else { throw KilnError.invalidArgument("--eps must be a positive finite number, not \(eps)") }
        }
        if let rho {
            try applies("--rho", to: ["adadelta"])
            guard rho >= 0, rho <= 1 else { throw KilnError.invalidArgument("--rho must be in [0, 1], not \(rho)") }
        }
        if let alpha {
            try applies("--alpha", to: ["rmsprop"])
            guard alpha >= 0, alpha < 1 else { throw KilnError.invalidArgument("--alpha must be in [0, 1), not \(alpha)") }
        }
    }

    /// `milestones` as 0-based epochs at which the rate drops (PyTorch's MultiStepLR milestones): "3,6" drops
    /// after the third and the sixth epoch.
    func milestoneEpochs() throws -> [Int]? {
        guard let milestones else { return nil }
        let values = milestones.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        let epochs = values.compactMap { $0 }
        guard !epochs.isEmpty, epochs.count == values.count, epochs.allSatisfy({ $0 >= 1 }), zip(epochs, epochs.dropFirst()).allSatisfy({ $0 < $1 })
        else { throw KilnError.invalidArgument("--milestones takes increasing epochs from 1, comma-separated (3,6), not '\(milestones)'") }
        return epochs
    }

    /// `warmup` parsed: (a count, whether it counts epochs).
    func warmupLength() throws -> (count: Double, epochs: Bool)? {
        guard let warmup else { return nil }
        let text = warmup.trimmingCharacters(in: .whitespaces).lowercased()
        let isEpochs = text.hasSuffix("ep")
        guard let count = Double(isEpochs ? String(text.dropLast(2)) : text), count > 0, count.isFinite, isEpochs || count == count.rounded() else {
            throw KilnError.invalidArgument("--warmup takes a number of steps (500) or of epochs (2ep), not '\(warmup)'")
        }
        return (count, isEpochs)
    }

    /// The warm-up in steps for epochs of `stepsPerEpoch` steps (0 without one).
    func warmupSteps(stepsPerEpoch: Int) throws -> Int {
        guard let (count, isEpochs) = try warmupLength() else { return 0 }
        return isEpochs ? Swift.max(Int((count * Double(stepsPerEpoch)).rounded()), 1) : Int(count)
    }
}
