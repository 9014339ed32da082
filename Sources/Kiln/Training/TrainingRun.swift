import KilnCL
import Foundation

/// A training run in a folder: it trains a model with the `Fit` loop and keeps, after every epoch,
///
/// - config.json: the `TrainingConfiguration` (with the device it resolved to),
/// - metrics.csv: one `EpochMetrics` row per epoch (`MetricsLog`),
/// - steps.csv: the loss of every step,
/// - curves.svg: the loss and accuracy curves (`TrainingPlot`),
/// - resume.safetensors: the model, the optimiser (tensors under `optimizer.`) and the `FitState` after the
///   latest epoch (or at a requested stop), in one file: the checkpoint a resume starts from,
/// - last.safetensors: the model of resume.safetensors alone, with the same metadata (a PyTorch state dict,
///   for `kiln eval`, `kiln predict` and PyTorch),
/// - best.safetensors: the model after the epoch with the lowest validation loss,
/// - test.json: the test set's score of best.safetensors' model, written once by `testBestModel` when the
///   run has ended (a resume removes it until its own end).
///
/// Every file but steps.csv (append-only, trimmed on resume) is replaced atomically (temporary file, fsync,
/// rename, fsync of the folder). A checkpoint is committed by the one rename of resume.safetensors, so at
/// every instant the folder holds either the previous whole checkpoint or the new one; best.safetensors and
/// last.safetensors follow it, and a resume rewrites whichever of them a kill left behind. A run created with
/// `resuming: true` continues from resume.safetensors exactly as if it had not stopped: the same batches,
/// dropout masks, learning rates, early stopping and metrics rows. Runs of older versions (last.safetensors
/// beside last.optimizer.safetensors) resume too; a run killed before its first checkpoint starts again.
/// A new run refuses a folder that already holds one unless `overwrite` is set.
///
/// With `dataParallel`, the run is one rank of a data-parallel job (`DataParallel`): every rank trains
/// and only rank 0 writes the run's files; a resume reads the folder on every rank, so it must be on a
/// file system that all ranks see.
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
    public static let resumeCheckpointFile = "resume.safetensors"
    public static let testFile = "test.json"
    /// The optimiser file of runs written before resume.safetensors (read on resume, removed at the next commit).
    public static let legacyOptimizerFile = "last.optimizer.safetensors"
    /// Every file a run writes: a folder holding any of them holds a run.
    public static let runFiles = [configurationFile, metricsFile, stepsFile, curvesFile, resumeCheckpointFile, lastCheckpointFile,
                                  legacyOptimizerFile, bestCheckpointFile, testFile]
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
    /// Set when a resumed run found no checkpoint (it was stopped before its first epoch ended) and starts
    /// from the beginning.
    public private(set) var startedAfresh = false
    /// Where the run stands: updated after every epoch and when `run` returns.
    public private(set) var state: FitState
    /// The rows of metrics.csv so far.
    public private(set) var metrics: MetricsLog
    /// Draw a progress line per epoch (on standard output).
    public var showProgress = true
    /// The title of curves.svg.
    public var title: String
    /// What loading `configuration.initFrom` did (nil when the run starts from the seed or resumes).
    public private(set) var initialization: WeightLoadReport?
    /// The parameters `configuration.freezePlan` freezes (empty for none).
    public let backbone: [(name: String, parameter: Parameter)]
    /// Called after each epoch once its files are written, with its metrics and whether they are the best so far.
    public var epochEnded: ((EpochMetrics, _ isBest: Bool) throws -> Void)?
    /// Called after each pass of steps once steps.csv has them: the first step's number, then each step's
    /// loss and learning rate.
    public var stepsEnded: ((_ firstStep: Int, _ losses: [Float], _ learningRates: [Float]) throws -> Void)?
    /// The data-parallel job this run is a rank of (nil: a single process).
    public let dataParallel: DataParallel?
    /// Whether this process writes the run's files: rank 0 of a data-parallel job, or the only process.
    public var writesFiles: Bool { dataParallel?.isRoot ?? true }

    private let train: DataLoader
    private let validation: DataLoader?
    private let steps: StepLog
    private let configurationJSON: String
    /// The training set's class names and image shape, written into every checkpoint.
    private let dataMetadata: [String: String]

    /// The configuration's optimiser, for `model`'s parameters.
    public var optimizer: Optimizer { trainer.optimizer }
    /// The checkpoint `run` writes after every epoch and at a stop, and a resumed run starts from.
    public var lastCheckpoint: URL { folder.appending(path: Self.lastCheckpointFile) }
    /// The checkpoint of the epoch with the best validation loss (the model alone).
    public var bestCheckpoint: URL { folder.appending(path: Self.bestCheckpointFile) }
    /// The checkpoint a resume starts from: model, optimiser and fit state in one file.
    public var resumeCheckpoint: URL { folder.appending(path: Self.resumeCheckpointFile) }
    /// Training batches per epoch.
    public var batchesPerEpoch: Int { train.batchCount }
    /// Whether `folder` holds a checkpoint to resume from (`state` is then its state).
    public var hasCheckpoint: Bool {
        FileManager.default.fileExists(atPath: resumeCheckpoint.path) || FileManager.default.fileExists(atPath: lastCheckpoint.path)
    }

    /// The files of a run that `folder` holds (none for a new or empty folder).
    public static func existingRunFiles(in folder: URL) -> [String] {
        runFiles.filter { FileManager.default.fileExists(atPath: folder.appending(path: $0).path) }
    }

    /// Starts a run in `folder` (created if needed), or with `resuming`, continues the one there from its
    /// last checkpoint. A folder that already holds a run is refused (`TrainingRunError.runExists`) unless
    /// `overwrite`, which deletes that run's files first. `model` is trained as given (moved to `device`);
    /// its loss and scoring follow `task`. The optimiser, schedule, epochs, batch size, seed and early
    /// stopping come from `configuration` (a resumed run may be given more epochs than it was started with);
    /// `validation` scores every epoch (without it the training loss does).
    public init(folder: URL, configuration: TrainingConfiguration, model: any Layer, task: ModelTask = .classification,
                train: Dataset, validation: Dataset?, device: Device, resuming: Bool = false, overwrite: Bool = false,
                dataParallel: DataParallel? = nil) throws {
        try configuration.validateValues()
        try configuration.validate(trainingImages: train.count, validationImages: validation?.count)
        var (configuration, train) = (configuration, train)
        if configuration.equalize == true { train.equalizeHistograms() }
        // Resolved once and recorded, so that checkpoints (and a resumed run) carry the statistics `auto` found.
        let preprocessing = try configuration.preprocessing(for: train)
        (configuration.normalizationMean, configuration.normalizationStd) = (preprocessing?.mean, preprocessing?.std)
        self.folder = folder
        self.configuration = configuration
        self.model = model
        self.device = device
        self.dataParallel = dataParallel
        let writesFiles = dataParallel?.isRoot ?? true
        isResumed = resuming
        title = "\(configuration.model) on \(configuration.data)"
        // Before anything is written: a file that does not fit, or a pattern that matches nothing, leaves no run.
        let hasCheckpoint = [Self.resumeCheckpointFile, Self.lastCheckpointFile].contains {
            FileManager.default.fileExists(atPath: folder.appending(path: $0).path)
        }
        if let initFrom = configuration.initFrom, !(resuming && hasCheckpoint) {
            initialization = try Self.loadInitialWeights(initFrom, into: model, classNames: train.classNames,
                                                         strict: configuration.strictInit ?? false)
        }
        let plan = configuration.freezePlan
        backbone = try plan.backbone(of: model)
        try plan.apply(to: model, epoch: 0)
        try model.move(to: device)
        let optimizer = try configuration.makeOptimizer(for: model)
        if let lrBackbone = configuration.lrBackbone {
            optimizer.setLearningRateScale(lrBackbone / configuration.lr, for: backbone.map(\.parameter))
        }
        scheduler = try configuration.makeScheduler(stepsPerEpoch: (train.count + configuration.batchSize - 1) / configuration.batchSize)
        configurationJSON = String(decoding: try JSONEncoder.sorted.encode(configuration), as: UTF8.self)
        dataMetadata = try TrainingCheckpoint.dataMetadata(classNames: train.classNames, imageShape: train.imageShape)
        steps = StepLog(url: folder.appending(path: Self.stepsFile))
        let metricsURL = folder.appending(path: Self.metricsFile)

        var recorded = configuration
        (recorded.resolvedDevice, recorded.deviceName) = (device.description, try device.backend().name)
        let configurationURL = folder.appending(path: Self.configurationFile)
        if resuming {
            let resumeURL = folder.appending(path: Self.resumeCheckpointFile), lastURL = folder.appending(path: Self.lastCheckpointFile)
            var loaded: (position: TrainingPosition, state: FitState?, source: URL)?
            if FileManager.default.fileExists(atPath: resumeURL.path) {
                let (position, saved, modelPart) = try TrainingCheckpoint.loadResumable(model: model, optimizer: optimizer, from: resumeURL)
                loaded = (position, saved, resumeURL)
                try Self.restoreModelCheckpoints(modelPart, state: saved, last: lastURL,
                                                 best: folder.appending(path: Self.bestCheckpointFile))
            } else if FileManager.default.fileExists(atPath: lastURL.path) {
                let (position, saved) = try TrainingCheckpoint.loadState(model: model, optimizer: optimizer, from: lastURL)
                guard let position else { throw KilnError.corruptFile(path: lastURL.path, reason: "holds no training position") }
                loaded = (position, saved, lastURL)
            }
            metrics = try MetricsLog.read(from: metricsURL)
            metrics.scoredSet = configuration.scoredSet
            // The test score of an earlier end no longer describes the run, which trains on.
            let testURL = folder.appending(path: Self.testFile)
            if writesFiles, FileManager.default.fileExists(atPath: testURL.path) { try Self.remove(testURL) }
            if let loaded {
                metrics.truncate(afterEpoch: loaded.position.epoch)
                // A checkpoint from before fit states were saved carries the position alone: the schedule and
                // early stopping then start afresh, as they always did.
                state = loaded.state ?? FitState(position: loaded.position, seed: configuration.seed,
                                                 elapsedSeconds: metrics.rows.last?.seconds ?? 0)
                guard state.seed == configuration.seed else {
                    throw KilnError.corruptFile(path: loaded.source.path,
                                                reason: "was trained with seed \(state.seed), but the configuration has \(configuration.seed)")
                }
                guard configuration.epochs >= state.position.epoch else {
                    throw KilnError.invalidArgument("the run in \(folder.path) has trained \(state.position.epoch) epochs; "
                                                    + "it cannot be shortened to \(configuration.epochs)")
                }
            } else {
                // Killed before its first checkpoint: nothing of it is kept, so it starts again.
                metrics.truncate(afterEpoch: 0)
                state = FitState(seed: configuration.seed)
                startedAfresh = true
            }
            if writesFiles {
                try steps.keep(before: state.position.step)
                // A resume given more epochs records them, so that the next resume trains to the same end.
                let json = Array(try recorded.prettyJSON())
                if (try? Data(contentsOf: configurationURL)).map(Array.init) != json { try writeAtomically(json, to: configurationURL) }
            }
        } else if !writesFiles {
            metrics = MetricsLog(url: metricsURL, scoredSet: configuration.scoredSet)
            state = FitState(seed: configuration.seed)
        } else {
            let existing = Self.existingRunFiles(in: folder)
            if !existing.isEmpty {
                guard overwrite else { throw TrainingRunError.runExists(folder: folder.path, files: existing) }
                for file in existing { try Self.remove(folder.appending(path: file)) }
            }
            try Self.createFolder(folder)
            try writeAtomically(Array(try recorded.prettyJSON()), to: configurationURL)
            KillSwitch.passed("config")
            try steps.create()
            metrics = MetricsLog(url: metricsURL, scoredSet: configuration.scoredSet)
            state = FitState(seed: configuration.seed)
        }
        scheduler.state = state.scheduler
        trainer = Trainer(model: model, optimizer: optimizer, loss: configuration.loss(for: task), seed: state.seed, step: state.position.step,
                          measuresAccuracy: task.measuresAccuracy)
        var trainLoader = try configuration.trainingLoader(train, preprocessing: preprocessing, seed: state.seed, device: device)
        // Equalised and preprocessed as evaluation does, with the statistics just resolved.
        var validationLoader = try validation.map { try configuration.evaluationLoader($0, batchSize: Self.evaluationBatchSize, device: device) }
        if let dataParallel {
            trainLoader.shard = (dataParallel.rank, dataParallel.ranks)
            validationLoader?.shard = (dataParallel.rank, dataParallel.ranks)
            trainer.dataParallel = dataParallel
            // The same job on every rank: configuration, Kiln and where a resume starts (a rank that could not
            // read the checkpoint would start elsewhere); then rank 0's weights everywhere.
            try dataParallel.checkRanksAgree(on: [("the configuration", configurationJSON), ("the Kiln build", kilnBuild),
                                                  ("where the run starts", "epoch \(state.position.epoch), batch \(state.position.batch), step \(state.position.step)")])
            try dataParallel.broadcastParameters(of: model)
        }
        self.train = trainLoader
        self.validation = validationLoader
    }

    /// A run of the zoo model `configuration.model`, built for `train`'s images and classes and initialised
    /// from the seed (a resumed run then loads its checkpoint over it).
    public convenience init(folder: URL, configuration: TrainingConfiguration, train: Dataset, validation: Dataset?,
                            device: Device, resuming: Bool = false, overwrite: Bool = false, dataParallel: DataParallel? = nil) throws {
        let task = try ModelZoo.entry(configuration.model).task
        let model = try configuration.makeModel(inputShape: train.imageShape, classes: train.classNames.count)
        try self.init(folder: folder, configuration: configuration, model: model, task: task, train: train,
                      validation: validation, device: device, resuming: resuming, overwrite: overwrite, dataParallel: dataParallel)
    }

    /// Loads the tensors of the safetensors file at `path` that fit `model` (`Layer.loadPretrained`); a
    /// checkpoint that records other class names than `classNames`, as many, leaves the classifier new.
    static func loadInitialWeights(_ path: String, into model: any Layer, classNames: [String], strict: Bool) throws -> WeightLoadReport {
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.fileExists(atPath: url.path) else { throw KilnError.corruptFile(path: url.path, reason: "does not exist") }
        let file = TrainingCheckpoint.modelPart(of: try SafeTensors.read(from: url))
        var reason: String?
        if let saved = try TrainingCheckpoint.classNames(in: file, source: url.path), saved.count == classNames.count, saved != classNames {
            let list = { (names: [String]) in names.prefix(3).joined(separator: ", ") + (names.count > 3 ? ", ..." : "") }
            reason = "the file's classes (\(list(saved))) are not the data's (\(list(classNames)))"
        }
        return try model.loadPretrained(file, source: url.path, strict: strict, newHeadReason: reason)
    }

    /// The configuration saved in a run folder's config.json.
    public static func savedConfiguration(in folder: URL) throws -> TrainingConfiguration {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw TrainingRunError.notARun(folder: folder.path, reason: "there is no such folder")
        }
        guard FileManager.default.fileExists(atPath: folder.appending(path: configurationFile).path) else {
            throw TrainingRunError.notARun(folder: folder.path, reason: "it has no \(configurationFile)")
        }
        return try TrainingConfiguration.read(from: folder.appending(path: configurationFile))
    }

    /// Deletes a file of the run, or raises an error naming it and the system's reason.
    private static func remove(_ file: URL) throws {
        do { try FileManager.default.removeItem(at: file) } catch {
            throw KilnError.corruptFile(path: file.path, reason: "cannot be removed: \(describeFileError(error))")
        }
    }

    private static func createFolder(_ folder: URL) throws {
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder) {
            guard isFolder.boolValue else { throw KilnError.corruptFile(path: folder.path, reason: "is a file, not a folder for a run") }
            return
        }
        // Folder by folder with mkdir, so that the error names the part that fails and the system's reason.
        var path = ""
        for component in folder.standardizedFileURL.pathComponents {
            path = component == "/" ? "/" : (path.hasSuffix("/") ? path : path + "/") + component
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
                guard isFolder.boolValue else {
                    throw KilnError.corruptFile(path: folder.path, reason: "cannot be created: \(path) is a file, not a folder")
                }
                continue
            }
            guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
                throw KilnError.corruptFile(path: folder.path, reason: "cannot be created: \(String(cString: strerror(errno)).lowercased())")
            }
        }
    }

    /// After a resume checkpoint is read: writes last.safetensors and best.safetensors again where a kill
    /// between the commit and their own renames left them behind. The best is behind only when the committed
    /// epoch is the best one (its best.safetensors is written before anything of the next epoch).
    private static func restoreModelCheckpoints(_ modelPart: SafeTensors, state: FitState?, last: URL, best: URL) throws {
        let bytes = try modelPart.serialized()
        if (try? Data(contentsOf: last)).map(Array.init) != bytes { try writeAtomically(bytes, to: last) }
        guard let state, let bestScore = state.bestScore, state.position.batch == 0, state.partialEpoch == nil else { return }
        let bestFile = try? SafeTensors.read(from: best)
        // A best.safetensors without a fit state (written before Kiln saved one) cannot be compared: it is kept.
        if let bestFile, bestFile.metadata[TrainingCheckpoint.stateKey] == nil { return }
        let bestFileScore = bestFile.flatMap { try? TrainingCheckpoint.state(in: $0, source: best.path) }?.bestScore
        if bestFileScore != bestScore { try writeAtomically(bytes, to: best) }
    }

    /// Trains the remaining epochs. Returns `.interrupted` after `requestStop`, with last.safetensors holding
    /// the stop's position; a `TrainingError` (a non-finite loss) propagates and leaves the last checkpoint
    /// of a whole epoch in place.
    /// Its progress lines go through `ConsoleOutput.standard` and never hold up a checkpoint: drain it before
    /// printing after `run`.
    public func run() throws -> FitOutcome {
        var fit = Fit(trainer: trainer, scheduler: scheduler, train: train, validation: validation, epochs: configuration.epochs,
                      earlyStopPatience: configuration.earlyStop)
        fit.showProgress = showProgress
        let (plan, model, writesFiles) = (configuration.freezePlan, model, writesFiles)
        fit.epochStarting = { epoch in try plan.apply(to: model, epoch: epoch) }
        var rates = steps.learningRates()
        fit.passEnded = { [steps, stepsEnded] firstStep, losses, learningRates in
            guard writesFiles else { return }
            try steps.append(firstStep: firstStep, losses: losses, learningRates: learningRates)
            rates += learningRates.enumerated().map { (firstStep + $0.offset, $0.element) }
            KillSwitch.passed("steps")
            try stepsEnded?(firstStep, losses, learningRates)
        }
        try warmUp()
        var current = state
        let outcome = try fit.run(state: &current) { epochMetrics, isBest, epochState in
            guard writesFiles else {
                state = epochState
                return
            }
            try metrics.append(epochMetrics)
            KillSwitch.passed("metrics")
            let svg = TrainingPlot.svg(metrics.rows, title: title, scoredSet: metrics.scoredSet,
                                       learningRates: rates, stepsPerEpoch: train.batchCount)
            try writeAtomically(Array(svg.utf8), to: folder.appending(path: Self.curvesFile))
            KillSwitch.passed("curves")
            try commit(epochState, isBest: isBest)
            try epochEnded?(epochMetrics, isBest)
        }
        if case .interrupted = outcome, writesFiles { try commit(current, isBest: false) }
        state = current
        if let dataParallel { try dataParallel.checkIdenticalParameters(of: model) }
        return outcome
    }

    /// Builds the programs of a training step and of evaluation, and tunes their convolutions, before the
    /// first step (`Warmup`), so that compiling shows as such and the first steps run at speed.
    public func warmUp() throws {
        let (train, trainer) = (train, trainer)
        let samples = Array(0..<Swift.min(train.batchSize, train.dataset.count))
        guard let plan = try Warmup.plan(for: trainer, on: device, batch: { try train.batch(of: samples, epoch: state.position.epoch) },
                                         inferenceBatchSize: Self.evaluationBatchSize) else { return }
        try Warmup.prepare(plan, on: device, showProgress: showProgress)
    }

    /// Writes the checkpoint of `newState`: resume.safetensors in one rename (the commit), then the best
    /// model and last.safetensors from the same tensors; a resume redoes the two after a kill.
    private func commit(_ newState: FitState, isBest: Bool) throws {
        let modelPart = try TrainingCheckpoint.saveResumable(model: model, optimizer: optimizer, state: newState,
                                                             configuration: configurationJSON, metadata: dataMetadata,
                                                             to: resumeCheckpoint)
        state = newState
        KillSwitch.passed("checkpoint")
        let legacy = folder.appending(path: Self.legacyOptimizerFile)
        if FileManager.default.fileExists(atPath: legacy.path) { try? FileManager.default.removeItem(at: legacy) }
        let bytes = try modelPart.serialized()
        if isBest {
            try writeAtomically(bytes, to: bestCheckpoint)
            KillSwitch.passed("best")
        }
        try writeAtomically(bytes, to: lastCheckpoint)
        KillSwitch.passed("last")
    }

    /// Asks `run` to stop after the current step and checkpoint (safe from any thread, e.g. a signal handler's).
    public func requestStop() { trainer.requestStop() }

    /// The model's loss and accuracy on `dataset` (e.g. the test set after training).
    /// In a data-parallel job every rank calls it and scores its shard of `dataset`.
    public func evaluate(_ dataset: Dataset) throws -> Evaluation {
        var loader = try configuration.evaluationLoader(dataset, batchSize: Self.evaluationBatchSize, device: device)
        if let dataParallel { loader.shard = (dataParallel.rank, dataParallel.ranks) }
        return try trainer.evaluate(loader.batches(epoch: 0))
    }

    /// Scores a finished run on the test set, once, and records it in test.json: the model of
    /// best.safetensors, which the validation loss chose (the model as trained when there is no such file),
    /// as a PyTorch user would report the best checkpoint's test accuracy. The run's model holds the
    /// weights scored afterwards.
    public func testBestModel(on test: Dataset) throws -> TestResult {
        var checkpoint = Self.lastCheckpointFile
        var epoch: Int? = state.position.batch == 0 ? state.position.epoch : nil
        // In a data-parallel job rank 0 reads the checkpoint, which the others may not see, and sends its weights.
        if writesFiles, FileManager.default.fileExists(atPath: bestCheckpoint.path) {
            let file = try SafeTensors.read(from: bestCheckpoint)
            try model.loadStateDict(TrainingCheckpoint.modelPart(of: file), source: bestCheckpoint.path)
            checkpoint = Self.bestCheckpointFile
            epoch = try TrainingCheckpoint.state(in: file, source: bestCheckpoint.path)?.position.epoch
                ?? TrainingCheckpoint.position(in: file)?.epoch
        }
        try dataParallel?.broadcastParameters(of: model)
        let evaluation = try evaluate(test)
        let result = TestResult(checkpoint: checkpoint, epoch: epoch, loss: evaluation.loss,
                                accuracy: trainer.measuresAccuracy ? evaluation.accuracy : nil, images: evaluation.samples)
        guard writesFiles else { return result }
        let encoder = JSONEncoder.sorted
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(Array(try encoder.encode(result)) + Array("\n".utf8), to: folder.appending(path: Self.testFile))
        return result
    }
}

/// A run's score on the test set after training: test.json.
public struct TestResult: Codable, Equatable, Sendable {
    /// The checkpoint whose model was scored: best.safetensors (or last.safetensors).
    public var checkpoint: String
    /// The epoch after which that checkpoint was written; nil when it does not say.
    public var epoch: Int?
    public var loss: Double
    /// nil for a model whose accuracy is not measured (an autoencoder).
    public var accuracy: Double?
    /// Test images scored.
    public var images: Int

    public init(checkpoint: String, epoch: Int?, loss: Double, accuracy: Double?, images: Int) {
        (self.checkpoint, self.epoch, self.loss, self.accuracy, self.images) = (checkpoint, epoch, loss, accuracy, images)
    }

    /// Reads a test.json, raising an error that names the file when it is missing or not a test result.
    public static func read(from url: URL) throws -> TestResult {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be read (\(describeFileError(error)))")
        }
        do { return try JSONDecoder.nonConforming.decode(TestResult.self, from: data) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "is not a test result (\(describeDecodingError(error)))")
        }
    }
}

/// Why a run folder cannot be used.
public enum TrainingRunError: Error, CustomStringConvertible, Equatable {
    /// A new run was pointed at a folder that holds one (these of its files).
    case runExists(folder: String, files: [String])
    /// A folder to resume that holds no run.
    case notARun(folder: String, reason: String)

    public var description: String {
        switch self {
        case let .runExists(folder, files):
            return "\(folder) already holds a run (\(files.joined(separator: ", "))); continue it with --resume \(folder), "
                + "or replace it with --overwrite"
        case let .notARun(folder, reason):
            return "\(folder) is not a Kiln run folder: \(reason)"
        }
    }
}

/// A test hook: with `KILN_TEST_KILL_AFTER=<point>:<n>` in the environment, the process kills itself with
/// SIGKILL right after the n-th time (from 1) it passes `point`: config, steps (steps.csv appended),
/// metrics, curves, checkpoint (resume.safetensors committed), best or last (their renames done).
enum KillSwitch {
    private static let target: (point: String, count: Int)? = {
        guard let value = ProcessInfo.processInfo.environment["KILN_TEST_KILL_AFTER"] else { return nil }
        let parts = value.split(separator: ":")
        guard parts.count == 2, let count = Int(parts[1]) else { return nil }
        return (String(parts[0]), count)
    }()
    private static let passes = Locked<[String: Int]>([:])

    static func passed(_ point: String) {
        guard let target, target.point == point else { return }
        let count = passes.withLock { passes -> Int in
            passes[point, default: 0] += 1
            return passes[point, default: 0]
        }
        if count == target.count { kill(getpid(), SIGKILL) }
    }
}

/// steps.csv: the loss of every training step, appended after every pass.
struct StepLog {
    static let header = "step,loss,lr"
    /// The header of files written before the learning rate was logged.
    static let headerWithoutRate = "step,loss"
    let url: URL

    func create() throws { try writeAtomically(Array("\(Self.header)\n".utf8), to: url) }

    func append(firstStep: Int, losses: [Float], learningRates: [Float]) throws {
        let handle: FileHandle
        do { handle = try FileHandle(forWritingTo: url) } catch {
            throw KilnError.corruptFile(path: url.path, reason: "cannot be opened for appending (\(error.localizedDescription))")
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
        let rows = losses.enumerated().map { index, loss in
            "\(firstStep + index),\(loss),\(index < learningRates.count ? "\(learningRates[index])" : "")\n"
        }.joined()
        try handle.write(contentsOf: Data(rows.utf8))
    }

    /// The learning rate of every logged step that has one.
    func learningRates() -> [(step: Int, rate: Float)] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            guard fields.count >= 3, let step = Int(fields[0]), let rate = Float(fields[2]) else { return nil }
            return (step, rate)
        }
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
        var kept = lines.dropFirst().filter { line in
            line.split(separator: ",").first.flatMap { Int($0) }.map { $0 < step } ?? false
        }.map(String.init)
        let withoutRate = lines.first.map(String.init) == Self.headerWithoutRate
        guard kept.count != lines.count - 1 || withoutRate else { return }
        // An older file gets the new column, empty for the steps it logged.
        if withoutRate { kept = kept.map { $0 + "," } }
        try writeAtomically(Array(([Self.header] + kept).joined(separator: "\n").appending("\n").utf8), to: url)
    }
}
