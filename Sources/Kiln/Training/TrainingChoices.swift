import Foundation

// What a configuration's names mean to the trainer: the zoo model, update rule, schedule, data set, augmentation and
// preprocessing. Kept apart from TrainingConfiguration.swift, which reads and checks config.json on its own.
extension TrainingConfiguration {
    /// The set that scores every epoch, as metrics.csv, curves.svg and `kiln train` name it.
    public var scoredSet: ScoredSet { validatesOnTestSet ? .test : .validation }

    /// Checks the names of the model, optimiser and schedule and the values of the hyperparameters, so a typo
    /// or a bad value fails before any data is loaded; raises `KilnError.invalidArgument` listing the choices
    /// or naming the allowed range.
    public func validate() throws {
        _ = try ModelZoo.entry(model)
        _ = try updateRule()
        _ = try learningRateSchedule()
        _ = try resNetStem()
        _ = try initializationScheme()
        if let augment { _ = try AugmentationSpec(augment) }
        if let normalize { _ = try Preprocessing.parseNormalize(normalize) }
        try validateValues()
    }

    /// What `freeze`, `freezeUntil` and `unfreezeAt` ask for.
    public var freezePlan: FreezePlan {
        FreezePlan(patterns: freeze?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } ?? [],
                   until: freezeUntil, unfreezeAtEpoch: unfreezeAt)
    }

    /// The ResNet stem `stem` names, or nil for the zoo's choice; an error for a model that takes none.
    public func resNetStem() throws -> ResNetStem? {
        guard let stem else { return nil }
        let choice = try ResNetStem(option: stem)
        try ModelZoo.entry(model).check(stem: choice)
        return choice
    }

    /// The zoo model of this configuration for images of `inputShape` and `classes` classes, initialised
    /// from the seed.
    public func makeModel(inputShape: [Int], classes: Int) throws -> Sequential {
        let model = try ModelZoo.make(self.model, inputShape: inputShape, classes: classes, stem: try resNetStem(), dropout: dropout,
                                      sparsity: sparsity)
        if let scheme = try initializationScheme() {
            try model.initialize(scheme, seed: seed)
        } else {
            try model.reset(seed: seed)
        }
        return model
    }

    /// The scheme `initScheme` names, or `KilnError.invalidArgument` listing them.
    public func initializationScheme() throws -> InitializationScheme? {
        guard let initScheme else { return nil }
        guard let scheme = InitializationScheme(rawValue: initScheme.lowercased()) else {
            throw KilnError.invalidArgument("unknown initialisation '\(initScheme)'; use "
                                            + "\(InitializationScheme.allCases.map(\.rawValue).joined(separator: ", ")), or a safetensors file")
        }
        return scheme
    }

    /// The training loss of a `task` model: its own, with `labelSmoothing` for a classifier.
    public func loss(for task: ModelTask) -> LossFunction {
        guard task == .classification, let labelSmoothing, labelSmoothing > 0 else { return task.loss }
        return crossEntropyLoss(labelSmoothing: labelSmoothing)
    }

    /// The training batches of `train`: shuffled by `seed`, augmented as `augment` says, then preprocessed.
    public func trainingLoader(_ train: Dataset, preprocessing: Preprocessing?, seed: UInt64, device: Device) throws -> DataLoader {
        var loader = DataLoader(dataset: train, batchSize: batchSize, shuffle: true, seed: seed, device: device)
        loader.augmentation = try augmentationPipeline(seed: seed, classes: train.classNames.count)
        loader.preprocessing = preprocessing
        loader.inputNoise = noise
        return loader
    }

    /// The augmentation of training batches, or nil for none.
    public func augmentationPipeline(seed: UInt64, classes: Int) throws -> AugmentationPipeline? {
        guard let augment else { return nil }
        let spec = try AugmentationSpec(augment)
        return spec.isEmpty ? nil : AugmentationPipeline(spec: spec, seed: seed, epochs: epochs, classes: classes)
    }

    /// Batches of `dataset` in its order, preprocessed as this configuration trains (for evaluation and
    /// prediction; the normalisation must be resolved, as a run's recorded configuration is).
    public func evaluationLoader(_ dataset: Dataset, batchSize: Int, device: Device) throws -> DataLoader {
        if normalize?.lowercased() == "auto", normalizationMean == nil {
            throw KilnError.invalidArgument("--normalize auto: the training set's statistics were not recorded with this configuration")
        }
        var dataset = dataset
        if equalize == true { dataset.equalizeHistograms() }
        var loader = DataLoader(dataset: dataset, batchSize: batchSize, shuffle: false, device: device)
        loader.preprocessing = try preprocessing(for: dataset)
        return loader
    }

    /// The preprocessing of every batch: the recorded normalisation, else `normalize` resolved for `train`
    /// (its per-channel statistics for `auto`), and standardisation; nil for none.
    public func preprocessing(for train: Dataset) throws -> Preprocessing? {
        var preprocessing = Preprocessing(standardize: standardize ?? false, equalize: equalize ?? false)
        if let mean = normalizationMean, let std = normalizationStd {
            (preprocessing.mean, preprocessing.std) = (mean, std)
        } else if let normalize {
            let channels = train.imageShape[0]
            let values = try Preprocessing.parseNormalize(normalize).map { try Preprocessing.perChannel($0, channels: channels) }
                ?? train.channelStatistics()
            (preprocessing.mean, preprocessing.std) = (values.mean, values.std)
        }
        return preprocessing.isIdentity ? nil : preprocessing
    }

    /// The optimiser this configuration names, for `model`'s parameters, with its regularisation: weight decay
    /// (minus the kinds `noWeightDecayOn` exempts), L1, gradient clipping and the max-norm constraint.
    public func makeOptimizer(for model: any Layer) throws -> Optimizer {
        let optimizer = Optimizer(parameters: model.namedParameters, rule: try updateRule(), learningRate: lr,
                                  regularization: Regularization(weightDecay: weightDecay, l1: l1 ?? 0),
                                  clipGradientNorm: clipGradNorm, maxNorm: maxNorm)
        let kinds = try decayExemptKinds()
        optimizer.exemptFromWeightDecay(model.namedLayers.flatMap { _, layer in
            layer.ownParameters.filter { name, parameter in
                !parameter.isBuffer && ((kinds.contains("bias") && name == "bias") || (kinds.contains("norm") && layer is BatchNorm))
            }.map(\.parameter)
        })
        return optimizer
    }

    /// The update rule `optimizer` names with the settings given (`betas`, `eps`, `rho`, `alpha`; PyTorch's
    /// defaults otherwise), or `KilnError.invalidArgument` listing the rules.
    public func updateRule() throws -> UpdateRule {
        let (beta1, beta2) = (betas?.first ?? 0.9, betas?.last ?? 0.999)
        switch optimizer.lowercased() {
        case "sgd": return .sgd()
        case "momentum": return .sgd(momentum: momentum)
        case "nesterov": return .sgd(momentum: momentum, nesterov: true)
        case "adagrad": return .adagrad(epsilon: eps ?? 1e-10)
        case "adadelta": return .adadelta(rho: rho ?? 0.9, epsilon: eps ?? 1e-6)
        case "rmsprop": return .rmsprop(alpha: alpha ?? 0.99, epsilon: eps ?? 1e-8)
        case "adam": return .adam(beta1: beta1, beta2: beta2, epsilon: eps ?? 1e-8)
        case "adamw": return .adam(beta1: beta1, beta2: beta2, epsilon: eps ?? 1e-8, decoupledWeightDecay: true)
        default:
            throw KilnError.invalidArgument("unknown optimizer '\(optimizer)'; use sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam or adamw")
        }
    }

    /// The usual learning rate of each rule (PyTorch's and Keras's defaults; 0.05 for SGD, Kiln's recipe):
    /// what `kiln train` uses when `--lr` is not given.
    public static func defaultLearningRate(for optimizer: String) -> Float {
        switch optimizer.lowercased() {
        case "adam", "adamw", "rmsprop": return 1e-3
        case "adagrad": return 1e-2
        case "adadelta": return 1
        default: return 0.05
        }
    }

    /// Writes the rule's effective settings into the configuration (what config.json then records): the
    /// learning rate unless `keepingLearningRate`, and the rule's own hyperparameters not given.
    public mutating func applyOptimizerDefaults(keepingLearningRate: Bool) {
        if !keepingLearningRate { lr = Self.defaultLearningRate(for: optimizer) }
        guard let rule = try? updateRule() else { return }
        switch rule {
        case let .adam(beta1, beta2, epsilon, _): (betas, eps) = ([beta1, beta2], epsilon)
        case let .rmsprop(alpha, epsilon, _): (self.alpha, eps) = (alpha, epsilon)
        case let .adadelta(rho, epsilon): (self.rho, eps) = (rho, epsilon)
        case let .adagrad(epsilon): eps = epsilon
        case .sgd: break
        }
    }

    /// The rule and its effective settings in one line: "adam: lr 0.001, betas 0.9, 0.999, eps 1e-08".
    public func optimizerDescription() throws -> String {
        var text = "\(optimizer): lr \(lr)"
        switch try updateRule() {
        case let .sgd(momentum, nesterov) where momentum > 0: text += ", momentum \(momentum)\(nesterov ? " (Nesterov)" : "")"
        case .sgd: break
        case let .adam(beta1, beta2, epsilon, _): text += ", betas \(beta1), \(beta2), eps \(epsilon)"
        case let .rmsprop(alpha, epsilon, _): text += ", alpha \(alpha), eps \(epsilon)"
        case let .adadelta(rho, epsilon): text += ", rho \(rho), eps \(epsilon)"
        case let .adagrad(epsilon): text += ", eps \(epsilon)"
        }
        return text + ", weight decay \(weightDecay)"
    }

    /// The schedule `schedule` names (step, cosine and one-cycle span `epochs`), or `KilnError.invalidArgument`
    /// listing them.
    public func learningRateSchedule() throws -> LearningRateSchedule {
        switch schedule.lowercased() {
        case "constant": return .constant
        case "step":
            if let epochs = try milestoneEpochs() { return .milestones(epochs, gamma: gamma ?? 0.1) }
            return .step(every: Swift.max(epochs / 3, 1), gamma: gamma ?? 0.1)
        case "exponential": return .exponential(gamma: gamma ?? 0.95)
        case "cosine": return .cosine(epochs: epochs)
        case "onecycle": return .oneCycle(epochs: epochs)
        case "plateau": return .reduceOnPlateau()
        default:
            throw KilnError.invalidArgument("unknown schedule '\(schedule)'; use \(LearningRateSchedule.names.joined(separator: ", "))")
        }
    }

    /// The scheduler of a run whose epochs have `stepsPerEpoch` steps.
    public func makeScheduler(stepsPerEpoch: Int) throws -> LearningRateScheduler {
        LearningRateScheduler(schedule: try learningRateSchedule(), baseLearningRate: lr, stepsPerEpoch: stepsPerEpoch,
                              warmupSteps: try warmupSteps(stepsPerEpoch: stepsPerEpoch))
    }

    /// `dataset`'s images of `onlyClasses` (relabelled), or all of it.
    public func subset(_ dataset: Dataset) throws -> Dataset {
        guard let onlyClasses else { return dataset }
        do { return try dataset.restricted(toClasses: try Dataset.classList(onlyClasses)) } catch let KilnError.invalidArgument(message) {
            throw KilnError.invalidArgument("--only-classes \(onlyClasses): \(message)")
        }
    }

    /// The training, validation and test sets of `data` (of `onlyClasses` alone, and at most `perClass`
    /// training images of each), resized to `imageSize` (the test set's images made
    /// the training set's shape: an image folder's channels follow its training split). The validation set is
    /// held out of the training set, stratified by class and chosen by `seed` (`Dataset.validationSplit`),
    /// `validationCount` images of it; the training set is the rest, in its stored order. With `valSplit` 0
    /// the test set validates and the training set is whole.
    public func loadData() throws -> (train: Dataset, validation: Dataset, test: Dataset) {
        var whole = try subset(try Dataset.load(data, split: .train, imageSize: imageSize))
        if let perClass { whole = whole.limited(perClass: perClass, seed: seed) }
        let test = try subset(try Dataset.load(data, split: .test, imageSize: imageSize, imageShape: whole.imageShape))
        guard whole.count > 0 else { throw KilnError.invalidArgument("the data set \(data) has no training images") }
        guard !validatesOnTestSet else { return (whole, test, test) }
        var (train, validation) = try whole.splitValidation(count: validationCount(trainingImages: whole.count), seed: seed)
        // The count of conversions stays with the training set: it is what loading did to the whole split.
        train.convertedImages = whole.convertedImages
        return (train, validation, test)
    }
}
