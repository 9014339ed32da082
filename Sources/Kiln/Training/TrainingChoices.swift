import Foundation

// What a configuration's names mean to the trainer: the zoo model, update rule, schedule and data set. Kept
// apart from TrainingConfiguration.swift, which reads and checks config.json on its own.
extension TrainingConfiguration {
    /// Checks the names of the model, optimiser and schedule and the values of the hyperparameters, so a typo
    /// or a bad value fails before any data is loaded; raises `KilnError.invalidArgument` listing the choices
    /// or naming the allowed range.
    public func validate() throws {
        _ = try ModelZoo.entry(model)
        _ = try updateRule()
        _ = try learningRateSchedule()
        try validateValues()
    }

    /// The optimiser this configuration names, for `model`'s parameters.
    public func makeOptimizer(for model: any Layer) throws -> Optimizer {
        Optimizer(model: model, rule: try updateRule(), learningRate: lr, regularization: Regularization(weightDecay: weightDecay))
    }

    /// The update rule `optimizer` names, or `KilnError.invalidArgument` listing the rules.
    public func updateRule() throws -> UpdateRule {
        switch optimizer.lowercased() {
        case "sgd": return .sgd()
        case "momentum": return .sgd(momentum: momentum)
        case "nesterov": return .sgd(momentum: momentum, nesterov: true)
        case "adagrad": return .adagrad()
        case "adadelta": return .adadelta()
        case "rmsprop": return .rmsprop()
        case "adam": return .adam()
        case "adamw": return .adam(decoupledWeightDecay: true)
        default:
            throw KilnError.invalidArgument("unknown optimizer '\(optimizer)'; use sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam or adamw")
        }
    }

    /// The schedule `schedule` names (step and cosine span `epochs`), or `KilnError.invalidArgument` listing them.
    public func learningRateSchedule() throws -> LearningRateSchedule {
        switch schedule.lowercased() {
        case "constant": return .constant
        case "step": return .step(every: Swift.max(epochs / 3, 1), gamma: 0.1)
        case "cosine": return .cosine(epochs: epochs)
        case "plateau": return .reduceOnPlateau()
        default: throw KilnError.invalidArgument("unknown schedule '\(schedule)'; use constant, step, cosine or plateau")
        }
    }

    /// The training, validation and test sets of `data`. The validation set is held out of the training set,
    /// stratified by class and chosen by `seed` (`Dataset.validationSplit`), `validationCount` images of it;
    /// the training set is the rest, in its stored order. With `valSplit` 0 the test set validates and the
    /// training set is whole.
    public func loadData() throws -> (train: Dataset, validation: Dataset, test: Dataset) {
        let whole = try Dataset.load(data, split: .train)
        let test = try Dataset.load(data, split: .test)
        guard whole.count > 0 else { throw KilnError.invalidArgument("the data set \(data) has no training images") }
        guard !validatesOnTestSet else { return (whole, test, test) }
        let (train, validation) = try whole.splitValidation(count: validationCount(trainingImages: whole.count), seed: seed)
        return (train, validation, test)
    }
}
