import Foundation

/// A training run in a folder: it trains a model with the `Fit` loop and keeps, after every epoch,
///
/// - config.json: the `TrainingConfiguration` (with the device it resolved to),
/// - metrics.csv: one `EpochMetrics` row per epoch (`MetricsLog`),
/// - steps.csv: the loss of every step,
/// - curves.svg: the loss and accuracy curves (`TrainingPlot`),
/// - last.safetensors and last.optimizer.safetensors: the model, the optimiser and the `FitState` after the
///   latest epoch (or at a requested stop),
/// - best.safetensors: the model after the epoch with the lowest validation loss.
///
/// Every file but steps.csv (append-only, trimmed on resume) is replaced atomically, so a run killed at any
/// point leaves whole files. A run created with `resuming: true` continues from last.safetensors exactly as
/// if it had not stopped: the same batches, dropout masks, learning rates, early stopping and metrics rows.
///
///     let configuration = try TrainingRun.savedConfiguration(in: folder)   // or a new one
///     let (train, validation, _) = try configuration.loadData()
///     let run = try TrainingRun(folder: folder, configuration: configuration, train: train,
///                               validation: validation, device: .host, resuming: true)
///     let outcome = try run.run()
public final class TrainingRun {
    /// The names of the files in the run folder.
    public static let configurationFile = "config.json"
    public static let metricsFile = "metrics.csv"
    public static let stepsFile = "steps.csv"
    public static let curvesFile = "curves.svg"
    public static let lastCheckpointFile = "last.safetensors"
    public static let bestCheckpointFile = "best.safetensors"
    /// Images per evaluation batch (validation and `evaluate`); it does not change the results.
    public static let evaluationBatchSize = 256

    /// The run folder.
    public let folder: URL
    /// The configuration as given (config.json also records the resolved device).
    public let configuration: TrainingConfiguration
    /// The model trained, on `device`.
    public let model: any Layer
    /// Runs the steps; `trainer.step` counts the steps of the whole run.
    public let trainer: Trainer
    /// Sets each epoch's learning rate from the configuration's schedule (its state restored on resume).
    public let scheduler: LearningRateScheduler
    /// Where the model and the batches live.
    public let device: Device
    /// Whether the run continues one found in `folder`.
    public let isResumed: Bool
    /// Where the run stands: updated after every epoch and when `run` returns.
    public private(set) var state: FitState
    /// The rows of metrics.csv so far.
    public private(set) var metrics: MetricsLog
    /// Draw a progress line per epoch (on standard output).
    public var showProgress = true
    /// The title of curves.svg.
    public var title: String
    /// Called after each epoch once its files are written, with its metrics and whether they are the best so far.
    public var epochEnded: ((EpochMetrics, _ isBest: Bool) throws -> Void)?

    private let train: DataLoader
    private let validation: DataLoader?
    private let steps: StepLog
    private let configurationJSON: String

    /// The configuration's optimiser, for `model`'s parameters.
    public var optimizer: Optimizer { trainer.optimizer }
    /// The checkpoint `run` writes after every epoch and at a stop, and a resumed run starts from.
    public var lastCheckpoint: URL { folder.appending(path: Self.lastCheckpointFile) }
    /// The checkpoint of the epoch with the best validation loss (the model alone).
    public var bestCheckpoint: URL { folder.appending(path: Self.bestCheckpointFile) }

    /// Starts a run in `folder` (created if needed; its files are replaced), or with `resuming`, continues
    /// the one there from its last checkpoint. `model` is trained as given (moved to `device`); its loss and
    /// scoring follow `task`. The optimiser, schedule, epochs, batch size, seed and early stopping come from
    /// `configuration`; `validation` scores every epoch (without it the training loss does).
    public init(folder: URL, configuration: TrainingConfiguration, model: any Layer, task: ModelTask = .classification,
                train: Dataset, validation: Dataset?, device: Device, resuming: Bool = false) throws {
        self.folder = folder
        self.configuration = configuration
        self.model = model
        self.device = device
        isResumed = resuming
        title = "\(configuration.model) on \(configuration.data)"
        try model.move(to: device)
        let optimizer = try configuration.makeOptimizer(for: model)
        scheduler = LearningRateScheduler(schedule: try configuration.learningRateSchedule(), baseLearningRate: configuration.lr)
        configurationJSON = String(decoding: try JSONEncoder.sorted.encode(configuration), as: UTF8.self)
        steps = StepLog(url: folder.appending(path: Self.stepsFile))
        let metricsURL = folder.appending(path: Self.metricsFile)

        if resuming {
            let checkpoint = folder.appending(path: Self.lastCheckpointFile)
            let (position, saved) = try TrainingCheckpoint.loadState(model: model, optimizer: optimizer, from: checkpoint)
            guard let position else { throw KilnError.corruptFile(path: checkpoint.path, reason: "holds no training position") }
            metrics = try MetricsLog.read(from: metricsURL)
            metrics.truncate(afterEpoch: position.epoch)
            // A checkpoint from before fit states were saved carries the position alone: the schedule and early
            // stopping then start afresh, as they always did.
            state = saved ?? FitState(position: position, seed: configuration.seed, elapsedSeconds: metrics.rows.last?.seconds ?? 0)
            guard state.seed == configuration.seed else {
                throw KilnError.corruptFile(path: checkpoint.path, reason: "was trained with seed \(state.seed), but the configuration has \(configuration.seed)")
            }
            try steps.keep(before: position.step)
        } else {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            var recorded = configuration
            (recorded.resolvedDevice, recorded.deviceName) = (device.description, try device.backend().name)
            try writeAtomically(Array(try recorded.prettyJSON()), to: folder.appending(path: Self.configurationFile))
            try steps.create()
            metrics = MetricsLog(url: metricsURL)
            state = FitState(seed: configuration.seed)
        }
        scheduler.state = state.scheduler
        trainer = Trainer(model: model, optimizer: optimizer, loss: task.loss, seed: state.seed, step: state.position.step,
                          measuresAccuracy: task.measuresAccuracy)
        self.train = DataLoader(dataset: train, batchSize: configuration.batchSize, shuffle: true, seed: state.seed, device: device)
        self.validation = validation.map { DataLoader(dataset: $0, batchSize: Self.evaluationBatchSize, shuffle: false, device: device) }
    }

    /// A run of the zoo model `configuration.model`, built for `train`'s images and classes and initialised
    /// from the seed (a resumed run then loads its checkpoint over it).
    public convenience init(folder: URL, configuration: TrainingConfiguration, train: Dataset, validation: Dataset?,
                            device: Device, resuming: Bool = false) throws {
        let task = try ModelZoo.entry(configuration.model).task
        let model = try ModelZoo.make(configuration.model, inputShape: train.imageShape, classes: train.classNames.count)
        try model.reset(seed: configuration.seed)
        try self.init(folder: folder, configuration: configuration, model: model, task: task, train: train,
                      validation: validation, device: device, resuming: resuming)
    }

    /// The configuration saved in a run folder's config.json.
    public static func savedConfiguration(in folder: URL) throws -> TrainingConfiguration {
        try TrainingConfiguration.read(from: folder.appending(path: configurationFile))
    }

    /// Trains the remaining epochs. Returns `.interrupted` after `requestStop`, with last.safetensors holding
    /// the stop's position; a `TrainingError` (a non-finite loss) propagates and leaves the last checkpoint
    /// of a whole epoch in place.
    public func run() throws -> FitOutcome {
        var fit = Fit(trainer: trainer, scheduler: scheduler, train: train, validation: validation, epochs: configuration.epochs,
                      earlyStopPatience: configuration.earlyStop)
        fit.showProgress = showProgress
        fit.passEnded = { [steps] firstStep, losses in try steps.append(firstStep: firstStep, losses: losses) }
        var current = state
        let outcome = try fit.run(state: &current) { epochMetrics, isBest, epochState in
            try metrics.append(epochMetrics)
            try writeAtomically(Array(TrainingPlot.svg(metrics.rows, title: title).utf8), to: folder.appending(path: Self.curvesFile))
            try TrainingCheckpoint.save(model: model, optimizer: optimizer, state: epochState, configuration: configurationJSON, to: lastCheckpoint)
            if isBest {
                try TrainingCheckpoint.save(model: model, optimizer: nil, state: epochState, configuration: configurationJSON, to: bestCheckpoint)
            }
            state = epochState
            try epochEnded?(epochMetrics, isBest)
        }
        state = current
        if case .interrupted = outcome {
            try TrainingCheckpoint.save(model: model, optimizer: optimizer, state: state, configuration: configurationJSON, to: lastCheckpoint)
        }
        return outcome
    }

    /// Asks `run` to stop after the current step and checkpoint (safe from any thread, e.g. a signal handler's).
    public func requestStop() { trainer.requestStop() }

    /// The model's loss and accuracy on `dataset` (e.g. the test set after training).
    public func evaluate(_ dataset: Dataset) throws -> Evaluation {
        try trainer.evaluate(DataLoader(dataset: dataset, batchSize: Self.evaluationBatchSize, shuffle: false, device: device).batches(epoch: 0))
    }
}

/// steps.csv: the loss of every training step, appended after every pass.
struct StepLog {
    static let header = "step,loss"
    let url: URL

    func create() throws { try writeAtomically(Array("\(Self.header)\n".utf8), to: url) }

    func append(firstStep: Int, losses: [Float]) throws {
        let handle: FileHandle
        do { handle = try FileHandle(forWritingTo: url) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be opened for appending (\(error.localizedDescription))")
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
        let rows = losses.enumerated().map { "\(firstStep + $0.offset),\($0.element)\n" }.joined()
        try handle.write(contentsOf: Data(rows.utf8))
    }

    /// Keeps the rows of steps before `step`: a run killed after a pass but before its checkpoint appended
    /// steps that the resumed run takes again. A missing file is created.
    func keep(before step: Int) throws {
        guard FileManager.default.fileExists(atPath: url.path) else { return try create() }
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be read (\(error.localizedDescription))")
        }
        let lines = text.split(separator: "\n")
        let kept = lines.dropFirst().filter { line in
            line.split(separator: ",").first.flatMap { Int($0) }.map { $0 < step } ?? false
        }
        guard kept.count != lines.count - 1 else { return }
        try writeAtomically(Array(([Self.header] + kept.map(String.init)).joined(separator: "\n").appending("\n").utf8), to: url)
    }
}
