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

/// Everything the fit loop needs, beyond the model and optimiser tensors, to continue a run exactly as if it
/// had not stopped: saved as JSON in every training checkpoint (`TrainingCheckpoint`).
public struct FitState: Codable, Equatable, Sendable {
    /// The part of an epoch trained before an interruption: the epoch's metrics, once it ends, cover the
    /// whole epoch and equal those of an uninterrupted run.
    public struct PartialEpoch: Codable, Equatable, Sendable {
        /// The loss of each step so far, in order (the epoch's loss is their mean, summed in this order).
        public var stepLosses: [Float]
        /// Images trained, and those of them misclassified (0 when accuracy is not measured).
        public var images: Int
        public var misclassified: Int
        /// Training time of the part.
        public var seconds: Double

        public init(stepLosses: [Float] = [], images: Int = 0, misclassified: Int = 0, seconds: Double = 0) {
            self.stepLosses = stepLosses
            self.images = images
            self.misclassified = misclassified
            self.seconds = seconds
        }
    }

    /// Where the run stands.
    public var position: TrainingPosition
    /// The seed of initialisation, shuffling and dropout. Kiln's random streams are counter-based (the
    /// shuffle is keyed by seed and epoch, dropout by seed and step), so the seed and the position are their
    /// whole state.
    public var seed: UInt64
    /// Training time of the run so far, over all its sessions.
    public var elapsedSeconds: Double
    /// The best validation loss (the training loss without validation data) so far; nil before the first epoch.
    public var bestScore: Double?
    /// Epochs since `bestScore` last improved: the early-stopping counter.
    public var epochsWithoutImprovement: Int
    /// The learning-rate scheduler's state (reduce-on-plateau's best loss, bad epochs and reductions).
    public var scheduler: LearningRateScheduler.State
    /// The learning rate of the epoch in progress (or the last one, at an epoch's end).
    public var learningRate: Float?
    /// Set when `position` is inside an epoch.
    public var partialEpoch: PartialEpoch?

    public init(position: TrainingPosition = TrainingPosition(epoch: 0, batch: 0, step: 0), seed: UInt64, elapsedSeconds: Double = 0,
                bestScore: Double? = nil, epochsWithoutImprovement: Int = 0,
                scheduler: LearningRateScheduler.State = LearningRateScheduler.State(), learningRate: Float? = nil,
                partialEpoch: PartialEpoch? = nil) {
        self.position = position
        self.seed = seed
        self.elapsedSeconds = elapsedSeconds
        self.bestScore = bestScore
        self.epochsWithoutImprovement = epochsWithoutImprovement
        self.scheduler = scheduler
        self.learningRate = learningRate
        self.partialEpoch = partialEpoch
    }
}

extension FitState {
    /// What is out of range in a decoded state (a damaged or hand-edited checkpoint), or nil: counts and
    /// positions not negative, times finite and not negative, rates and scales finite and positive.
    var outOfRange: String? {
        let p = position
        if p.epoch < 0 || p.batch < 0 || p.step < 0 { return "position \(p)" }
        if !elapsedSeconds.isFinite || elapsedSeconds < 0 { return "elapsed seconds \(elapsedSeconds)" }
        if epochsWithoutImprovement < 0 { return "epochs without improvement \(epochsWithoutImprovement)" }
        if let bestScore, bestScore.isNaN { return "best score NaN" }
        if let learningRate, !learningRate.isFinite || learningRate <= 0 { return "learning rate \(learningRate)" }
        if scheduler.epochsWithoutImprovement < 0 || !scheduler.plateauScale.isFinite || scheduler.plateauScale <= 0 {
            return "schedule state \(scheduler)"
        }
        if let partial = partialEpoch,
           partial.images < 0 || partial.misclassified < 0 || partial.misclassified > partial.images || !partial.seconds.isFinite
            || partial.seconds < 0 {
            return "partly trained epoch \(partial)"
        }
        return nil
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
        var state = FitState(position: start, seed: trainer.seed, elapsedSeconds: elapsedSeconds, scheduler: scheduler.state)
        return try run(state: &state) { metrics, isBest, _ in try epochEnded(metrics, isBest) }
    }

    /// Runs from `state`, which it restores into the scheduler first and keeps current: after each epoch
    /// (when `epochEnded` gets the epoch's metrics, whether its validation loss is the best so far and the
    /// state to checkpoint) and on return (for an interrupted run, the state to resume from).
    public func run(state: inout FitState,
                    epochEnded: (EpochMetrics, _ isBest: Bool, _ state: FitState) throws -> Void) throws -> FitOutcome {
        scheduler.state = state.scheduler
        for epoch in state.position.epoch..<epochs {
            trainer.optimizer.learningRate = scheduler.learningRate(epoch: epoch)
            state.learningRate = trainer.optimizer.learningRate
            let firstBatch = epoch == state.position.epoch ? state.position.batch : 0
            let earlier = firstBatch > 0 ? state.partialEpoch ?? FitState.PartialEpoch() : FitState.PartialEpoch()
            let progress = showProgress ? ProgressBar(total: train.batchCount - firstBatch, label: "epoch \(epoch + 1)/\(epochs)") : nil
            let batches = train.batches(epoch: epoch, startingAt: firstBatch)
            let firstStep = trainer.step
            let pass = try trainer.trainPass(batches) { step, loss, accuracy, images in
                progress?.update(step: step, loss: loss, accuracy: accuracy, images: images)
            }
            progress?.finish()
            if let error = batches.error { throw error }
            state.elapsedSeconds += pass.seconds
            try passEnded?(firstStep, pass.stepLosses)
            let sofar = FitState.PartialEpoch(stepLosses: earlier.stepLosses + pass.stepLosses, images: earlier.images + pass.images,
                                              misclassified: earlier.misclassified + pass.misclassified,
                                              seconds: earlier.seconds + pass.seconds)
            if pass.interrupted {
                state.position = TrainingPosition(epoch: epoch, batch: firstBatch + pass.stepLosses.count, step: trainer.step)
                state.partialEpoch = sofar
                return .interrupted(state.position)
            }
            let evaluation = try validation.map { try trainer.evaluate($0.batches(epoch: 0)) }
            // Before `epochEnded`, so that no checkpoint is written with a model that scores NaN.
            if let loss = evaluation?.loss, !loss.isFinite { throw TrainingError.nonFiniteValidationLoss(epoch: epoch + 1, value: loss) }
            // Without an interruption `sofar` is this pass alone and these are the pass's own figures.
            let trainLoss = sofar.stepLosses.isEmpty ? Double.nan
                : sofar.stepLosses.reduce(0) { $0 + Double($1) } / Double(sofar.stepLosses.count)
            let trainAccuracy = !trainer.measuresAccuracy ? Double.nan
                : sofar.images == 0 ? 0 : 1 - Double(sofar.misclassified) / Double(sofar.images)
            let metrics = EpochMetrics(epoch: epoch + 1, step: trainer.step, trainLoss: trainLoss, trainAccuracy: trainAccuracy,
                                       validationLoss: evaluation?.loss, validationAccuracy: evaluation?.accuracy,
                                       learningRate: Double(trainer.optimizer.learningRate),
                                       imagesPerSecond: Double(sofar.images) / Swift.max(sofar.seconds, 1e-9), seconds: state.elapsedSeconds)
            let score = evaluation?.loss ?? trainLoss
            let isBest = score < state.bestScore ?? .infinity
            if isBest { state.bestScore = score; state.epochsWithoutImprovement = 0 } else { state.epochsWithoutImprovement += 1 }
            scheduler.epochEnded(validationLoss: score)
            state.scheduler = scheduler.state
            state.position = TrainingPosition(epoch: epoch + 1, batch: 0, step: trainer.step)
            state.partialEpoch = nil
            try epochEnded(metrics, isBest, state)
            if let earlyStopPatience, state.epochsWithoutImprovement >= earlyStopPatience, epoch + 1 < epochs {
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
