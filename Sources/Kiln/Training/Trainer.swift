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
    private let stopFlag = Atomic<Bool>(false)

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

    /// One training step on `batch`, returning the loss tensor (on the device, not read).
    @discardableResult
    public func trainStep(_ batch: Batch) throws -> (loss: Tensor, output: Tensor) {
        try profile?.beginStep()
        try model.zeroGradients()
        let output = try model.forward(batch.inputs, ForwardContext(training: true, step: step, seed: seed, needsInputGradient: false))
        let (loss, gradient) = try lossFunction(output, batch)
        _ = try model.backward(gradient)
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
        var pending: [(step: Int, loss: Tensor)] = []
        var stepLosses: [Float] = []
        var stepLearningRates: [Float] = []
        var images = 0, stepsInPass = 0
        var shownLoss = Double.nan, shownAccuracy = Double.nan
        var interrupted = false

        func readPending() throws {
            for (step, loss) in pending {
                let value = try loss.item()
                guard value.isFinite else { throw TrainingError.nonFiniteLoss(step: step, value: value) }
                stepLosses.append(value)
            }
            pending.removeAll(keepingCapacity: true)
        }

        for batch in batches {
            let stepNumber = step
            let (loss, output) = try trainStep(batch)
            pending.append((stepNumber, loss))
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
                (shownLoss, shownAccuracy) = (mean(stepLosses), try tracker?.accuracy() ?? .nan)
            }
            // Every step moves the bar; the loss and accuracy shown are those of the last read.
            progress?(stepsInPass, shownLoss, shownAccuracy, images)
            if stopRequested { interrupted = true; break }
        }
        try readPending()
        let accuracy = measuresAccuracy ? try tracker?.accuracy() ?? 0 : .nan
        let misclassified = try tracker?.misclassified() ?? 0
        progress?(stepsInPass, mean(stepLosses), accuracy, images)
        return PassResult(loss: mean(stepLosses), accuracy: accuracy, images: images, misclassified: misclassified,
                          seconds: seconds(ContinuousClock.now - start), stepLosses: stepLosses,
                          stepLearningRates: stepLearningRates, interrupted: interrupted)
    }

    /// Loss and accuracy of the model in inference mode over `batches` (the mean over samples).
    public func evaluate<Batches: Sequence<Batch>>(_ batches: Batches) throws -> Evaluation {
        try Evaluation(model: model, batches: batches, loss: lossFunction, measuresAccuracy: measuresAccuracy)
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
