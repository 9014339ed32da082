import Foundation

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
    /// A progress line per epoch, written through `ConsoleOutput.standard`: drain it before printing after
    /// `run`.
    public var showProgress = true
    /// Called after every pass over training batches (also a stopped one) with the step number of its first
    /// batch, and the loss and learning rate of each step.
    public var passEnded: ((_ firstStep: Int, _ losses: [Float], _ learningRates: [Float]) throws -> Void)?
    /// Called before each epoch's (or the resumed part of an epoch's) first step with the epoch (0-based):
    /// what unfreezes layers at an epoch.
    public var epochStarting: ((_ epoch: Int) throws -> Void)?

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
        let backend = try train.device.backend()
        scheduler.stepsPerEpoch = train.batchCount
        trainer.scheduler = scheduler
        defer { trainer.scheduler = nil }
        for epoch in state.position.epoch..<epochs {
            try epochStarting?(epoch)
            // The rate of the epoch's first step: what metrics.csv reports for the epoch (also for one resumed
            // mid-way).
            let epochLearningRate = scheduler.learningRate(epoch: epoch)
            trainer.optimizer.learningRate = epochLearningRate
            state.learningRate = epochLearningRate
            let firstBatch = epoch == state.position.epoch ? state.position.batch : 0
            let earlier = firstBatch > 0 ? state.partialEpoch ?? FitState.PartialEpoch() : FitState.PartialEpoch()
            let progress = showProgress ? ProgressBar(total: train.batchCount - firstBatch, label: "epoch \(epoch + 1)/\(epochs)") : nil
            let batches = train.batches(epoch: epoch, startingAt: firstBatch)
            let firstStep = trainer.step
            var workDone = backend.warmupWorkDone
            let isFirstPass = epoch == state.position.epoch
            let pass = try trainer.trainPass(batches) { step, loss, accuracy, images in
                // The run's first step is one-time work too: drivers finish compiling at a kernel's first
                // launch (POCL generates its code then). Waiting for it keeps that time out of step 2.
                let isFirstStep = isFirstPass && step == 1
                if isFirstStep { try? backend.synchronize() }
                let work = backend.warmupWorkDone
                progress?.update(step: step, loss: loss, accuracy: accuracy, images: images,
                                 warmingUp: isFirstStep || work != workDone)
                workDone = work
            }
            progress?.finish()
            if let error = batches.error { throw error }
            state.elapsedSeconds += pass.seconds
            try passEnded?(firstStep, pass.stepLosses, pass.stepLearningRates)
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
                                       learningRate: Double(epochLearningRate),
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

/// Softmax cross-entropy with label smoothing ε (`kiln train --label-smoothing`).
public func crossEntropyLoss(labelSmoothing: Float) -> LossFunction {
    { output, batch in
        let result = try crossEntropy(logits: output, targets: batch.targets, labelSmoothing: labelSmoothing)
        return (result.loss, result.gradient)
    }
}

/// The loss for models that reconstruct their input (autoencoders): mean squared error against the batch's
/// inputs, or against the clean images when the inputs were corrupted (a denoising autoencoder).
public func reconstructionLoss(_ output: Tensor, _ batch: Batch) throws -> (loss: Tensor, gradient: Tensor) {
    let result = try meanSquaredError(prediction: output, target: batch.cleanInputs ?? batch.inputs)
    return (result.loss, result.gradient)
}
