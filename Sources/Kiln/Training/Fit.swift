import Foundation

/// Where a run stands: what a checkpoint must hold to continue exactly.
public struct TrainingPosition: Codable, Equatable, Sendable {
    /// The epoch in progress (0-based).
    public var epoch: Int
    /// Batches of that epoch already trained.
    public var batch: Int
    /// Training steps taken in the whole run.
    public var step: Int

    public init(epoch: Int, batch: Int, step: Int) {
        self.epoch = epoch
        self.batch = batch
        self.step = step
    }
}

/// How a `fit` ended.
public enum FitOutcome: Equatable, Sendable {
    case completed
    case earlyStopped(epoch: Int)
    /// A stop was requested; training halted after a whole step at this position.
    case interrupted(TrainingPosition)
}

/// The training loop: epochs of shuffled batches with a progress line, validation after each epoch,
/// learning-rate schedule, early stopping, and a callback per epoch (metrics, checkpoints).
public struct Fit {
    public var trainer: Trainer
    public var scheduler: LearningRateScheduler
    public var train: DataLoader
    public var validation: DataLoader?
    public var epochs: Int
    /// Stop when the validation loss has not improved for this many epochs.
    public var earlyStopPatience: Int?
    public var showProgress = true
    /// Called after every pass over training batches (also a stopped one) with the step number of its first
    /// batch and the loss of each step.
    public var passEnded: ((_ firstStep: Int, _ losses: [Float]) throws -> Void)?

    public init(trainer: Trainer, scheduler: LearningRateScheduler, train: DataLoader, validation: DataLoader?, epochs: Int,
                earlyStopPatience: Int? = nil) {
        self.trainer = trainer
        self.scheduler = scheduler
        self.train = train
        self.validation = validation
        self.epochs = epochs
        self.earlyStopPatience = earlyStopPatience
    }

    /// Runs from `start` (a fresh run starts at epoch 0, batch 0). `epochEnded` gets each epoch's metrics
    /// and whether its validation loss is the best so far; `interrupted` gets the position of a requested
    /// stop before `run` returns.
    public func run(from start: TrainingPosition = TrainingPosition(epoch: 0, batch: 0, step: 0),
                    elapsedSeconds: Double = 0,
                    epochEnded: (EpochMetrics, _ isBest: Bool) throws -> Void) throws -> FitOutcome {
        var best = Double.infinity, epochsWithoutImprovement = 0
        var totalSeconds = elapsedSeconds
        for epoch in start.epoch..<epochs {
            trainer.optimizer.learningRate = scheduler.learningRate(epoch: epoch)
            let firstBatch = epoch == start.epoch ? start.batch : 0
            let progress = showProgress ? ProgressBar(total: train.batchCount - firstBatch, label: "epoch \(epoch + 1)/\(epochs)") : nil
            let batches = train.batches(epoch: epoch, startingAt: firstBatch)
            let firstStep = trainer.step
            let pass = try trainer.trainPass(batches) { step, loss, accuracy, images in
                progress?.update(step: step, loss: loss, accuracy: accuracy, images: images)
            }
            progress?.finish()
            if let error = batches.error { throw error }
            totalSeconds += pass.seconds
            try passEnded?(firstStep, pass.stepLosses)
            if pass.interrupted {
                return .interrupted(TrainingPosition(epoch: epoch, batch: firstBatch + pass.stepLosses.count, step: trainer.step))
            }
            let evaluation = try validation.map { try trainer.evaluate($0.batches(epoch: 0)) }
            let metrics = EpochMetrics(epoch: epoch + 1, step: trainer.step, trainLoss: pass.loss, trainAccuracy: pass.accuracy,
                                       validationLoss: evaluation?.loss, validationAccuracy: evaluation?.accuracy,
                                       learningRate: Double(trainer.optimizer.learningRate),
                                       imagesPerSecond: Double(pass.images) / Swift.max(pass.seconds, 1e-9), seconds: totalSeconds)
            let score = evaluation?.loss ?? pass.loss
            let isBest = score < best
            if isBest { best = score; epochsWithoutImprovement = 0 } else { epochsWithoutImprovement += 1 }
            scheduler.epochEnded(validationLoss: score)
            try epochEnded(metrics, isBest)
            if let earlyStopPatience, epochsWithoutImprovement >= earlyStopPatience, epoch + 1 < epochs {
                return .earlyStopped(epoch: epoch + 1)
            }
        }
        return .completed
    }
}

/// The usual loss for classifiers: softmax cross-entropy against the batch's targets.
public func crossEntropyLoss(_ output: Tensor, _ batch: Batch) throws -> (loss: Tensor, gradient: Tensor) {
    let result = try crossEntropy(logits: output, targets: batch.targets)
    return (result.loss, result.gradient)
}

/// The loss for models that reconstruct their input (autoencoders): mean squared error against the batch's
/// inputs.
public func reconstructionLoss(_ output: Tensor, _ batch: Batch) throws -> (loss: Tensor, gradient: Tensor) {
    let result = try meanSquaredError(prediction: output, target: batch.inputs)
    return (result.loss, result.gradient)
}
