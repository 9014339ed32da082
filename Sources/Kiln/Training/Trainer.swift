import Foundation
import Synchronization

/// A batch ready for a step: inputs and targets on the training device, labels on the host.
public struct Batch {
    /// [B, C, H, W] (or [B, features]) on the training device.
    public var inputs: Tensor
    /// What the loss trains towards, on the training device: [B] class indices as Float values, or [B, K]
    /// class probabilities (after mixup or cutmix).
    public var targets: Tensor
    /// The class indices on the host (of the first image, for a mixed one).
    public var labels: [Int]
    /// The images' indices in their data set (empty when the batch was not made by a `DataLoader`).
    public var samples: [Int]
    /// The inputs before `DataLoader.inputNoise` corrupted them, preprocessed alike (nil without noise): what
    /// a denoising autoencoder's reconstruction is compared with.
    public var cleanInputs: Tensor?
    /// Where these samples sit in the step's global batch, for a data-parallel loader's batch (nil otherwise).
    public var shard: BatchShard?

    public init(inputs: Tensor, targets: Tensor, labels: [Int], samples: [Int] = []) {
        self.inputs = inputs
        self.targets = targets
        self.labels = labels
        self.samples = samples
    }
}

/// Maps a model output and its batch to the mean loss (a one-element tensor, so reading it can wait) and
/// the gradient of that loss with respect to the output.
public typealias LossFunction = (_ output: Tensor, _ batch: Batch) throws -> (loss: Tensor, gradient: Tensor)

/// Why training stopped early.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    /// The training loss became NaN or infinite at this step (0-based, of the whole run); parameters after
    /// it are not trusted.
    case nonFiniteLoss(step: Int, value: Float)
    /// The validation loss after this epoch (1-based) is NaN or infinite: the epoch's parameters are not trusted.
    case nonFiniteValidationLoss(epoch: Int, value: Double)

    public var description: String {
        switch self {
        case let .nonFiniteLoss(step, value):
            return "training stopped: the training loss is \(value.isNaN ? "NaN" : "\(value)") at step \(step)"
        case let .nonFiniteValidationLoss(epoch, value):
            return "training stopped: the validation loss is \(value.isNaN ? "NaN" : "\(value)") after epoch \(epoch)"
        }
    }
}

/// Loss and accuracy over a pass through data.
public struct PassResult: Sendable {
    public var loss: Double
    public var accuracy: Double
    public var images: Int
    /// Images whose argmax missed the label (0 when accuracy is not measured); with `images`, what lets a
    /// pass resumed mid-epoch report the accuracy of the whole epoch.
    public var misclassified: Int
    public var seconds: Double
    /// Losses of the individual steps, in order (training passes).
    public var stepLosses: [Float]
    /// The learning rate each step used (training passes).
    public var stepLearningRates: [Float] = []
    /// Whether the pass stopped early because a stop was requested.
    public var interrupted: Bool
}

/// Runs training steps and evaluation passes of a model. The host waits for the device only when it reads
/// the losses, once every `readInterval` steps.
public final class Trainer {
    public let model: any Layer
    public let optimizer: Optimizer
    public let lossFunction: LossFunction
    /// Whether the model is a classifier whose argmax is compared with the labels; false for models whose
    /// output is not class scores (an autoencoder), whose passes then report an accuracy of NaN.
    public let measuresAccuracy: Bool
    public let seed: UInt64
    /// Steps taken so far over the whole run; keys the dropout masks.
    public private(set) var step: Int
    /// Steps between reads of the loss (the only point where training waits for the device).
    public var readInterval = 20
    /// When set, every training step is profiled kernel by kernel (OpenCL only; each step then waits for
    /// the device).
    public var profile: KernelProfile?
    /// When set, gives the optimiser its learning rate (and momentum, for one-cycle) before every step.
    public var scheduler: LearningRateScheduler?
    /// When set, the ranks of a job train the model data-parallel: each step takes this rank's shard of the
    /// global batch (`Batch.shard`), the gradients are averaged over the ranks before the update, losses and
    /// accuracy are those of the global batch, and every rank stops after the same step.
    public var dataParallel: DataParallel?
    private let stopFlag = Atomic<Bool>(false)
    /// Whether some rank asked to stop, as the last step's gradient average said (data-parallel only).
    private var agreedStop = false

    public init(model: any Layer, optimizer: Optimizer, loss: @escaping LossFunction, seed: UInt64, step: Int = 0,
                measuresAccuracy: Bool = true) {
        self.model = model
        self.optimizer = optimizer
        lossFunction = loss
        self.measuresAccuracy = measuresAccuracy
        self.seed = seed
        self.step = step
        model.assignRandomStreams()
    }

    /// Asks a running pass to stop after its current step (safe from a signal handler's queue).
    public func requestStop() { stopFlag.store(true, ordering: .relaxed) }
    public var stopRequested: Bool { stopFlag.load(ordering: .relaxed) }
    /// Whether the pass stops after this step: a stop asked here, or on any rank in data-parallel training.
    private var stopsNow: Bool { dataParallel == nil ? stopRequested : agreedStop }

    /// One training step on `batch`, returning the loss tensor (on the device, not read).
    @discardableResult
    public func trainStep(_ batch: Batch) throws -> (loss: Tensor, output: Tensor) {
        try profile?.beginStep()
        try model.zeroGradients()
        var context = ForwardContext(training: true, step: step, seed: seed, needsInputGradient: false)
        let buckets = dataParallel.map { dataParallel in
            let buckets = dataParallel.gradientBuckets(for: model)
            buckets.beginStep { [unowned self] in stopRequested }
            context.shard = batch.shard
            if dataParallel.synchronizesBatchNorm {
                let synchronizer = BatchNormSynchronizer(dataParallel.communicator)
                // Its backward all-reduce comes after the buckets already complete on every rank (see GradientBuckets).
                synchronizer.beforeBackwardReduction = { try buckets.startCompleteBuckets() }
                context.batchNormSync = synchronizer
            }
            return buckets
        }
        let output = try model.forward(batch.inputs, context)
        var (loss, gradient) = try lossFunction(output, batch)
        if let dataParallel, let buckets {
            // The rank's share of an uneven last batch weighs by its size (see BatchShard.gradientScale).
            if let scale = batch.shard?.gradientScale(ranks: dataParallel.ranks), scale != 1 { gradient = try gradient.binary(.mul, scale) }
            let sequential = model as? Sequential
            sequential?.childBackwardEnded = { try buckets.finished($0.namedParameters.map(\.parameter)) }
            defer { sequential?.childBackwardEnded = nil }
            _ = try model.backward(gradient)
            agreedStop = try buckets.finish()
        } else {
            _ = try model.backward(gradient)
        }
        if let scheduler {
            optimizer.learningRate = scheduler.learningRate(step: step)
            if let momentum = scheduler.momentum(step: step) { optimizer.setMomentum(momentum) }
        }
        try optimizer.step()
        try profile?.endStep()
        step += 1
        return (loss, output)
    }

    /// Trains on every batch of `batches`, showing progress through `progress(step in pass, running loss,
    /// running accuracy, images)` after every read. Stops early, after a whole step, when a stop is requested.
    public func trainPass<Batches: Sequence<Batch>>(
        _ batches: Batches, progress: ((Int, Double, Double, Int) -> Void)? = nil
    ) throws -> PassResult {
        let start = ContinuousClock.now
        var tracker: AccuracyTracker?
        var pending: [(step: Int, loss: Tensor, weight: Double)] = []
        var stepLosses: [Float] = []
        var stepLearningRates: [Float] = []
        var images = 0, stepsInPass = 0
        // Over every rank in data-parallel training: images and misses as of the last read.
        var (passImages, passMisclassified) = (0, 0)
        var shownLoss = Double.nan, shownAccuracy = Double.nan
        var interrupted = false

        func readPending() throws {
            var values = try pending.map { Double(try $0.loss.item()) }
            let misclassified = try tracker?.misclassified() ?? 0
            (passImages, passMisclassified) = (images, misclassified)
            if let dataParallel {
                // The global batch's mean loss is the ranks' means weighted by their shares of it.
                let sums = try dataParallel.sum(zip(values, pending).map { $0 * $1.weight } + [Double(images), Double(misclassified)])
                values = Array(sums.prefix(values.count))
                (passImages, passMisclassified) = (Int(sums[values.count]), Int(sums[values.count + 1]))
            }
            for ((step, _, _), value) in zip(pending, values) {
                guard value.isFinite else { throw TrainingError.nonFiniteLoss(step: step, value: Float(value)) }
                stepLosses.append(Float(value))
            }
            pending.removeAll(keepingCapacity: true)
        }
        func accuracy() -> Double {
            passImages == 0 ? .nan : 1 - Double(passMisclassified) / Double(passImages)
        }

        for batch in batches {
            let stepNumber = step
            let (loss, output) = try trainStep(batch)
            pending.append((stepNumber, loss, batch.shard?.lossWeight ?? 1))
            stepLearningRates.append(optimizer.learningRate)
            if measuresAccuracy {
                if tracker == nil { tracker = try AccuracyTracker(on: output.device) }
                // Soft targets are scored against the first image's label.
                let labels = batch.targets.rank == 1 ? batch.targets
                    : try Tensor(batch.labels.map(Float.init), shape: [batch.labels.count], on: output.device)
                try tracker?.add(output: output, targets: labels)
            }
            images += batch.labels.count
            stepsInPass += 1
            if pending.count >= readInterval {
                try readPending()
                (shownLoss, shownAccuracy) = (mean(stepLosses), tracker == nil ? .nan : accuracy())
            }
            // Every step moves the bar; the loss and accuracy shown are those of the last read.
            progress?(stepsInPass, shownLoss, shownAccuracy, images * (dataParallel?.ranks ?? 1))
            if stopsNow { interrupted = true; break }
        }
        try readPending()
        let passAccuracy = measuresAccuracy ? (tracker == nil ? 0 : accuracy()) : .nan
        progress?(stepsInPass, mean(stepLosses), passAccuracy, passImages)
        return PassResult(loss: mean(stepLosses), accuracy: passAccuracy, images: passImages, misclassified: passMisclassified,
                          seconds: seconds(ContinuousClock.now - start), stepLosses: stepLosses,
                          stepLearningRates: stepLearningRates, interrupted: interrupted)
    }

    /// Loss and accuracy of the model in inference mode over `batches` (the mean over samples).
    /// In data-parallel training `batches` are this rank's shards, and the result is that of the whole set,
    /// scored with rank 0's batch-norm statistics (broadcast first, as DDP does).
    public func evaluate<Batches: Sequence<Batch>>(_ batches: Batches) throws -> Evaluation {
        guard let dataParallel else { return try Evaluation(model: model, batches: batches, loss: lossFunction, measuresAccuracy: measuresAccuracy) }
        try dataParallel.broadcastParameters(of: model, buffersOnly: true)
        return try dataParallel.combine(Evaluation(model: model, batches: batches, loss: lossFunction, measuresAccuracy: measuresAccuracy))
    }

    private func mean(_ values: [Float]) -> Double {
        values.isEmpty ? .nan : values.reduce(0) { $0 + Double($1) } / Double(values.count)
    }
}

/// Counts correct predictions on the device, so accuracy costs no read until it is asked for.
struct AccuracyTracker {
    private let wrong: Tensor
    private var samples = 0

    init(on device: Device) throws { wrong = try Tensor.zeros([1], on: device) }

    /// Adds a batch: a prediction is wrong when argmax(output) differs from the target, counted as
    /// min(|argmax - target|, 1).
    mutating func add(output: Tensor, targets: Tensor) throws {
        let predicted = try output.argmax(axis: 1)
        let miss = try (predicted - targets).map(.abs).binary(.min, 1)
        try wrong.axpby(alpha: 1, miss.reduce(.sum).reshaped([1]), beta: 1)
        samples += targets.count
    }

    func accuracy() throws -> Double {
        samples == 0 ? 0 : 1 - Double(try misclassified()) / Double(samples)
    }

    /// The count is a Float on the device, exact up to 2^24 misses.
    func misclassified() throws -> Int { Int(try wrong.item().rounded()) }
}

/// The result of evaluating a classifier: loss, accuracy, per-class accuracy and the confusion matrix.
public struct Evaluation: Sendable {
    public var loss: Double
    public var accuracy: Double
    /// confusion[true class][predicted class]
    public var confusion: [[Int]]
    public var samples: Int

    public var perClassAccuracy: [Double] {
        confusion.enumerated().map { index, row in
            let total = row.reduce(0, +)
            return total == 0 ? .nan : Double(row[index]) / Double(total)
        }
    }

    /// An evaluation from its totals.
    public init(loss: Double, samples: Int, confusion: [[Int]], measuresAccuracy: Bool = true) {
        (self.loss, self.samples, self.confusion) = (loss, samples, confusion)
        let correct = confusion.indices.map { confusion[$0][$0] }.reduce(0, +)
        accuracy = !measuresAccuracy ? .nan : samples == 0 ? 0 : Double(correct) / Double(samples)
    }

    /// Runs `model` in inference mode over `batches`. Without `measuresAccuracy` (a model whose output is not
    /// class scores) only the loss is computed: accuracy is NaN and the confusion matrix empty.
    public init<Batches: Sequence<Batch>>(model: any Layer, batches: Batches, loss: LossFunction, measuresAccuracy: Bool = true) throws {
        var totalLoss = 0.0
        var samples = 0
        var confusion: [[Int]] = []
        for batch in batches {
            let output = try model.forward(batch.inputs, .prediction)
            let (batchLoss, _) = try loss(output, batch)
            totalLoss += Double(try batchLoss.item()) * Double(batch.labels.count)
            samples += batch.labels.count
            guard measuresAccuracy else { continue }
            let classes = output.shape[1]
            if confusion.isEmpty { confusion = Array(repeating: Array(repeating: 0, count: classes), count: classes) }
            let predicted = try output.argmax(axis: 1).toArray()
            for (label, prediction) in zip(batch.labels, predicted) where confusion.indices.contains(label) {
                confusion[label][Int(prediction)] += 1
            }
        }
        self.samples = samples
        self.confusion = confusion
        self.loss = samples == 0 ? .nan : totalLoss / Double(samples)
        let correct = confusion.indices.map { confusion[$0][$0] }.reduce(0, +)
        accuracy = !measuresAccuracy ? .nan : samples == 0 ? 0 : Double(correct) / Double(samples)
    }
}
