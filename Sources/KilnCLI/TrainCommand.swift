import ArgumentParser
import Dispatch
import Foundation
import Kiln

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a model on a data set, with progress, metrics, plots and checkpoints.",
        discussion: """
            Defaults train LeNet-BN on Fashion-MNIST on the best device for 10 epochs. A run folder receives \
            metrics.csv, curves.svg, config.json and checkpoints (last.safetensors, best.safetensors). Ctrl-C \
            finishes the current step, writes a checkpoint and prints how to resume; a second Ctrl-C exits at once.
            """)

    @Option(help: "Model: \(ModelZoo.names.joined(separator: ", ")).")
    var model = "lenet-bn"
    @Option(help: "Data set: fashion-mnist, mnist:DIR, cifar10:DIR, or a folder of MNIST-format IDX files.")
    var data = "fashion-mnist"
    @Option(help: "auto (a GPU, else another OpenCL accelerator, else the host), host, or cl:P:D.")
    var device = "auto"
    @Option(help: "Number of epochs.")
    var epochs = 10
    @Option(help: "Images per training step.")
    var batchSize = 64
    @Option(help: "sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam or adamw.")
    var optimizer = "nesterov"
    @Option(help: "Learning rate (at the start of the schedule).")
    var lr: Float = 0.05
    @Option(help: "Momentum for the momentum and nesterov optimizers.")
    var momentum: Float = 0.9
    @Option(help: "L2 weight decay (decoupled for adamw).")
    var weightDecay: Float = 5e-4
    @Option(help: "Learning-rate schedule: constant, step (×0.1 every third of the run), cosine, plateau.")
    var schedule = "cosine"
    @Option(help: "Seed for initialisation, shuffling and dropout.")
    var seed: UInt64 = 1
    @Option(help: "Fraction of the training set held out for validation (0 validates on the test set).")
    var valSplit = 0.0
    @Option(name: .customLong("early-stop"), help: "Stop when the validation loss has not improved for this many epochs.")
    var earlyStop: Int?
    @Option(help: "Run folder (default runs/<date-time>).")
    var out: String?
    @Option(help: "Continue the run in this folder from its last checkpoint.")
    var resume: String?
    @Option(help: "Threads of the host backend (default: all cores).")
    var threads: Int?

    func run() throws {
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be positive") }
            HostBackend.shared.threads = threads
        }
        if let resume {
            let folder = URL(fileURLWithPath: resume)
            try TrainOptions.saved(in: folder).train(in: folder, resuming: true)
        } else {
            let options = TrainOptions(model: model, data: data, device: device, epochs: epochs, batchSize: batchSize,
                                       optimizer: optimizer, lr: lr, momentum: momentum, weightDecay: weightDecay,
                                       schedule: schedule, seed: seed, valSplit: valSplit, earlyStop: earlyStop)
            try options.train(in: URL(fileURLWithPath: out ?? "runs/\(TrainOptions.timestamp())"), resuming: false)
        }
    }
}

/// Every option of a training run: saved as config.json in the run folder, read back by --resume.
struct TrainOptions: Codable {
    var model: String
    var data: String
    var device: String
    var epochs: Int
    var batchSize: Int
    var optimizer: String
    var lr: Float
    var momentum: Float
    var weightDecay: Float
    var schedule: String
    var seed: UInt64
    var valSplit: Double
    var earlyStop: Int?
    /// The device the run resolved `device` to, and its name (written, not read).
    var resolvedDevice: String?
    var deviceName: String?

    func train(in folder: URL, resuming: Bool) throws {
        let task: ModelTask
        do { task = try ModelZoo.entry(model).task } catch { throw ValidationError("\(error)") }
        let device = try DeviceOption.parse(device)
        let backend = try device.backend()
        if device == .host, self.device == "auto" {
            let others = Device.available.filter { $0 != .host }
            print(others.isEmpty ? "No OpenCL device found: training on the host backend."
                  : "No GPU or accelerator found: training on the host backend, which is faster than an OpenCL driver on the same CPU"
                    + " (--device \(others[0]) uses \(others.count == 1 ? "it" : "one")).")
        }
        print("device \(device): \(backend.name)")

        var trainSet = try Dataset.load(data, split: .train)
        let testSet = try Dataset.load(data, split: .test)
        var validationSet = testSet
        if valSplit > 0 { (trainSet, validationSet) = trainSet.splitValidation(fraction: valSplit) }
        print("data \(data): \(trainSet.count) training, \(valSplit > 0 ? "\(validationSet.count) validation, " : "")\(testSet.count) test images of \(describeShape(trainSet.imageShape))")

        let network = try ModelZoo.make(model, inputShape: trainSet.imageShape, classes: trainSet.classNames.count)
        try network.reset(seed: seed)
        try network.move(to: device)
        let optimizer = try makeOptimizer(network)
        let scheduler = LearningRateScheduler(schedule: try makeSchedule(), baseLearningRate: lr)
        let checkpoint = folder.appending(path: "last.safetensors")
        var position = TrainingPosition(epoch: 0, batch: 0, step: 0)
        var metrics = MetricsLog(url: folder.appending(path: "metrics.csv"))
        if resuming {
            guard let restored = try TrainingCheckpoint.load(model: network, optimizer: optimizer, from: checkpoint) else {
                throw ValidationError("\(checkpoint.path) holds no training position")
            }
            position = restored
            metrics = MetricsLog(url: metrics.url, rows: try Self.readMetrics(metrics.url).filter { $0.epoch <= position.epoch })
            print("resuming at epoch \(position.epoch + 1), batch \(position.batch), step \(position.step)")
        } else {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            var saved = self
            (saved.resolvedDevice, saved.deviceName) = (device.description, backend.name)
            let json = try JSONEncoder.pretty.encode(saved)
            try writeAtomically(Array(json), to: folder.appending(path: "config.json"))
        }

        let trainer = Trainer(model: network, optimizer: optimizer, loss: task.loss, seed: seed, step: position.step,
                              measuresAccuracy: task.measuresAccuracy)
        let stopper = SignalStopper(trainer: trainer)
        defer { stopper.disarm() }
        var fit = Fit(trainer: trainer, scheduler: scheduler,
                      train: DataLoader(dataset: trainSet, batchSize: batchSize, shuffle: true, seed: seed, device: device),
                      validation: DataLoader(dataset: validationSet, batchSize: 256, shuffle: false, device: device),
                      epochs: epochs, earlyStopPatience: earlyStop)
        let stepLog = folder.appending(path: "steps.csv")
        if !resuming { try writeAtomically(Array("step,loss\n".utf8), to: stepLog) }
        fit.passEnded = { firstStep, losses in
            let handle = try FileHandle(forWritingTo: stepLog)
            defer { try? handle.close() }
            try handle.seekToEnd()
            let rows = losses.enumerated().map { "\(firstStep + $0.offset),\($0.element)\n" }.joined()
            try handle.write(contentsOf: Data(rows.utf8))
        }
        let configuration = try String(decoding: JSONEncoder().encode(self), as: UTF8.self)
        let outcome: FitOutcome
        do {
            outcome = try fit.run(from: position, elapsedSeconds: metrics.rows.last?.seconds ?? 0) { epochMetrics, isBest in
                try metrics.append(epochMetrics)
                try writeAtomically(Array(TrainingPlot.svg(metrics.rows, title: "\(model) on \(data)").utf8),
                                    to: folder.appending(path: "curves.svg"))
                let end = TrainingPosition(epoch: epochMetrics.epoch, batch: 0, step: trainer.step)
                try TrainingCheckpoint.save(model: network, optimizer: optimizer, position: end, configuration: configuration, to: checkpoint)
                if isBest {
                    try TrainingCheckpoint.save(model: network, optimizer: nil, position: end, configuration: configuration,
                                                to: folder.appending(path: "best.safetensors"))
                }
                if task.measuresAccuracy {
                    print(String(format: "epoch %d: train loss %.4f acc %.2f%% | %@ loss %.4f acc %.2f%% | lr %.3g | %.0f img/s",
                                 epochMetrics.epoch, epochMetrics.trainLoss, 100 * epochMetrics.trainAccuracy,
                                 valSplit > 0 ? "val" : "test", epochMetrics.validationLoss ?? .nan,
                                 100 * (epochMetrics.validationAccuracy ?? .nan), epochMetrics.learningRate, epochMetrics.imagesPerSecond))
                } else {
                    print(String(format: "epoch %d: train reconstruction MSE %.5f | %@ MSE %.5f | lr %.3g | %.0f img/s",
                                 epochMetrics.epoch, epochMetrics.trainLoss, valSplit > 0 ? "val" : "test",
                                 epochMetrics.validationLoss ?? .nan, epochMetrics.learningRate, epochMetrics.imagesPerSecond))
                }
                fflush(nil)
            }
        } catch let error as TrainingError {
            print("\(error)")
            throw ExitCode(3)
        }

        switch outcome {
        case let .interrupted(stop):
            try TrainingCheckpoint.save(model: network, optimizer: optimizer, position: stop, configuration: configuration, to: checkpoint)
            print("\nstopped at epoch \(stop.epoch + 1), batch \(stop.batch) (step \(stop.step)); checkpoint \(checkpoint.path)")
            print("resume with: kiln train --resume \(folder.path)")
            throw ExitCode(stopper.exitCode)
        case let .earlyStopped(epoch):
            print("early stop after epoch \(epoch): no improvement for \(earlyStop ?? 0) epochs")
        case .completed:
            break
        }
        let test = try trainer.evaluate(DataLoader(dataset: testSet, batchSize: 256, shuffle: false, device: device).batches(epoch: 0))
        if task.measuresAccuracy {
            print(String(format: "test: loss %.4f, accuracy %.2f%% (%d images)", test.loss, 100 * test.accuracy, test.samples))
        } else {
            print(String(format: "test: reconstruction MSE %.5f (%d images)", test.loss, test.samples))
        }
        print("run folder: \(folder.path)")
    }

    private func makeOptimizer(_ network: any Layer) throws -> Optimizer {
        let rule: UpdateRule
        switch optimizer.lowercased() {
        case "sgd": rule = .sgd()
        case "momentum": rule = .sgd(momentum: momentum)
        case "nesterov": rule = .sgd(momentum: momentum, nesterov: true)
        case "adagrad": rule = .adagrad()
        case "adadelta": rule = .adadelta()
        case "rmsprop": rule = .rmsprop()
        case "adam": rule = .adam()
        case "adamw": rule = .adam(decoupledWeightDecay: true)
        default: throw ValidationError("unknown optimizer '\(optimizer)'; use sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam or adamw")
        }
        return Optimizer(model: network, rule: rule, learningRate: lr, regularization: Regularization(weightDecay: weightDecay))
    }

    private func makeSchedule() throws -> LearningRateSchedule {
        switch schedule.lowercased() {
        case "constant": return .constant
        case "step": return .step(every: Swift.max(epochs / 3, 1), gamma: 0.1)
        case "cosine": return .cosine(epochs: epochs)
        case "plateau": return .reduceOnPlateau()
        default: throw ValidationError("unknown schedule '\(schedule)'; use constant, step, cosine or plateau")
        }
    }

    static func saved(in folder: URL) throws -> TrainOptions {
        let url = folder.appending(path: "config.json")
        do {
            return try JSONDecoder().decode(TrainOptions.self, from: Data(contentsOf: url))
        } catch {
            throw ValidationError("cannot resume: \(url.path) is missing or unreadable (\(error))")
        }
    }

    private static func readMetrics(_ url: URL) throws -> [EpochMetrics] {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").dropFirst().compactMap { line in
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard f.count == 9, let epoch = Int(f[0]), let step = Int(f[1]) else { return nil }
            return EpochMetrics(epoch: epoch, step: step, trainLoss: Double(f[2]) ?? .nan, trainAccuracy: Double(f[3]) ?? .nan,
                                validationLoss: Double(f[4]), validationAccuracy: Double(f[5]), learningRate: Double(f[6]) ?? .nan,
                                imagesPerSecond: Double(f[7]) ?? .nan, seconds: Double(f[8]) ?? 0)
        }
    }

    static func timestamp() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd_HH-mm-ss"
        return formatter.string(from: Date())
    }

    private func describeShape(_ shape: [Int]) -> String { shape.map(String.init).joined(separator: "×") }
}

extension JSONEncoder {
    static var pretty: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }
}

/// Turns the first SIGINT/SIGTERM into a stop request (finish the step, checkpoint, exit 130/143) and a
/// second one into an immediate exit; checkpoints are written atomically, so that cannot tear one.
final class SignalStopper: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var received: Int32 = 0

    init(trainer: Trainer) {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [self] in
                let first = lock.withLock { () -> Bool in
                    defer { received = signalNumber }
                    return received == 0
                }
                if first {
                    FileHandle.standardError.write(Data("\nstopping after this step (press Ctrl-C again to quit at once)\n".utf8))
                    trainer.requestStop()
                } else {
                    exit(128 + signalNumber)
                }
            }
            source.resume()
            sources.append(source)
        }
    }

    var exitCode: Int32 { 128 + lock.withLock { received == 0 ? SIGINT : received } }

    func disarm() {
        sources.forEach { $0.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
