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
    public var scheduler: LearningRateSchedulerState
    /// The learning rate of the epoch in progress (or the last one, at an epoch's end).
    public var learningRate: Float?
    /// Set when `position` is inside an epoch.
    public var partialEpoch: PartialEpoch?

    public init(position: TrainingPosition = TrainingPosition(epoch: 0, batch: 0, step: 0), seed: UInt64, elapsedSeconds: Double = 0,
                bestScore: Double? = nil, epochsWithoutImprovement: Int = 0,
                scheduler: LearningRateSchedulerState = LearningRateSchedulerState(), learningRate: Float? = nil,
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
    /// Decodes the JSON a checkpoint keeps in its metadata (`what`, in `source`), raising
    /// `KilnError.corruptFile` naming both when it is not a fit state or holds a value out of range.
    public static func decode(json: String, source: String, what: String) throws -> FitState {
        let state: FitState
        do {
            state = try JSONDecoder.nonConforming.decode(FitState.self, from: Data(json.utf8))
        } catch {
            throw KilnError.corruptFile(path: source, reason: "\(what) is not a fit state (\(describeDecodingError(error)))")
        }
        if let problem = state.outOfRange { throw KilnError.corruptFile(path: source, reason: "\(what) is out of range: \(problem)") }
        return state
    }

    /// What is out of range in a decoded state (a damaged or hand-edited checkpoint), or nil: counts and
    /// positions not negative, times finite and not negative, rates and scales finite and positive, losses not
    /// NaN (training stops at a non-finite loss, so a saved step loss is finite).
    var outOfRange: String? {
        let p = position
        if p.epoch < 0 || p.batch < 0 || p.step < 0 { return "position \(p)" }
        if !elapsedSeconds.isFinite || elapsedSeconds < 0 { return "elapsed seconds \(elapsedSeconds)" }
        if epochsWithoutImprovement < 0 { return "epochs without improvement \(epochsWithoutImprovement)" }
        if let bestScore, bestScore.isNaN { return "best score NaN" }
        if let learningRate, !learningRate.isFinite || learningRate <= 0 { return "learning rate \(learningRate)" }
        if scheduler.epochsWithoutImprovement < 0 || !scheduler.plateauScale.isFinite || scheduler.plateauScale <= 0
            || scheduler.bestLoss?.isNaN == true {
            return "schedule state \(scheduler)"
        }
        if let partial = partialEpoch,
           partial.images < 0 || partial.misclassified < 0 || partial.misclassified > partial.images || !partial.seconds.isFinite
            || partial.seconds < 0 || !partial.stepLosses.allSatisfy(\.isFinite) {
            return "partly trained epoch \(partial)"
        }
        return nil
    }
}

/// What the scheduler has learnt from the epochs so far: only reduce-on-plateau keeps any, but a resumed
/// run needs it to lower the rate at the same epochs as an uninterrupted one.
public struct LearningRateSchedulerState: Codable, Equatable, Sendable {
    /// The lowest validation loss reported so far; nil before the first epoch.
    public var bestLoss: Double?
    /// Epochs since the loss last improved (reset when the rate is lowered).
    public var epochsWithoutImprovement: Int
    /// The product of the plateau reductions applied so far.
    public var plateauScale: Float

    public init(bestLoss: Double? = nil, epochsWithoutImprovement: Int = 0, plateauScale: Float = 1) {
        self.bestLoss = bestLoss
        self.epochsWithoutImprovement = epochsWithoutImprovement
        self.plateauScale = plateauScale
    }
}
