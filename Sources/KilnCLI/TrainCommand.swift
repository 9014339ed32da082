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

    @OptionGroup var options: TrainArguments
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
            let saved: TrainingConfiguration
            do { saved = try TrainingRun.savedConfiguration(in: folder) } catch { throw ValidationError("cannot resume: \(error)") }
            try train(saved, in: folder, resuming: true)
        } else {
            try train(options.configuration, in: URL(fileURLWithPath: out ?? "runs/\(Self.timestamp())"), resuming: false)
        }
    }

    /// Runs `configuration` in `folder` with the command's output: the device and data, a line per epoch,
    /// how a stop resumes, and the test set's score.
    private func train(_ configuration: TrainingConfiguration, in folder: URL, resuming: Bool) throws {
        do { try configuration.validate() } catch { throw ValidationError("\(error)") }
        let device = try DeviceOption.parse(configuration.device)
        let backend = try device.backend()
        if device == .host, configuration.device == "auto" {
            let others = Device.available.filter { $0 != .host }
            print(others.isEmpty ? "No OpenCL device found: training on the host backend."
                  : "No GPU or accelerator found: training on the host backend, which is faster than an OpenCL driver on the same CPU"
                    + " (--device \(others[0]) uses \(others.count == 1 ? "it" : "one")).")
        }
        print("device \(device): \(backend.name)")

        let (trainSet, validationSet, testSet) = try configuration.loadData()
        let validates = configuration.valSplit > 0
        print("data \(configuration.data): \(trainSet.count) training, \(validates ? "\(validationSet.count) validation, " : "")\(testSet.count) test images of \(trainSet.imageShape.map(String.init).joined(separator: "×"))")

        let run = try TrainingRun(folder: folder, configuration: configuration, train: trainSet, validation: validationSet,
                                  device: device, resuming: resuming)
        if resuming {
            let position = run.state.position
            print("resuming at epoch \(position.epoch + 1), batch \(position.batch), step \(position.step)")
        }
        let measuresAccuracy = run.trainer.measuresAccuracy
        run.epochEnded = { metrics, _ in
            if measuresAccuracy {
                print(String(format: "epoch %d: train loss %.4f acc %.2f%% | %@ loss %.4f acc %.2f%% | lr %.3g | %.0f img/s",
                             metrics.epoch, metrics.trainLoss, 100 * metrics.trainAccuracy, validates ? "val" : "test",
                             metrics.validationLoss ?? .nan, 100 * (metrics.validationAccuracy ?? .nan), metrics.learningRate,
                             metrics.imagesPerSecond))
            } else {
                print(String(format: "epoch %d: train reconstruction MSE %.5f | %@ MSE %.5f | lr %.3g | %.0f img/s",
                             metrics.epoch, metrics.trainLoss, validates ? "val" : "test", metrics.validationLoss ?? .nan,
                             metrics.learningRate, metrics.imagesPerSecond))
            }
            fflush(nil)
        }

        let stopper = SignalStopper(trainer: run.trainer)
        defer { stopper.disarm() }
        let outcome: FitOutcome
        do {
            outcome = try run.run()
        } catch let error as TrainingError {
            // Checkpoints are written after whole epochs only, so the one on disk predates the bad step.
            let kept = FileManager.default.fileExists(atPath: run.lastCheckpoint.path)
                ? "; the last good checkpoint is kept: \(run.lastCheckpoint.path) (step \(run.state.position.step))"
                : "; no epoch had finished, so there is no checkpoint"
            print("\(error)\(kept)")
            throw ExitCode(3)
        }
        switch outcome {
        case let .interrupted(stop):
            print("\nstopped at epoch \(stop.epoch + 1), batch \(stop.batch) (step \(stop.step)); checkpoint \(run.lastCheckpoint.path)")
            print("resume with: kiln train --resume \(folder.path)")
            throw ExitCode(stopper.exitCode)
        case let .earlyStopped(epoch):
            print("early stop after epoch \(epoch): no improvement for \(configuration.earlyStop ?? 0) epochs")
        case .completed:
            break
        }
        let test = try run.evaluate(testSet)
        if measuresAccuracy {
            print(String(format: "test: loss %.4f, accuracy %.2f%% (%d images)", test.loss, 100 * test.accuracy, test.samples))
        } else {
            print(String(format: "test: reconstruction MSE %.5f (%d images)", test.loss, test.samples))
        }
        print("run folder: \(folder.path)")
    }

    static func timestamp() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd_HH-mm-ss"
        return formatter.string(from: Date())
    }
}

/// The options of a training run, each written once: its flag (from the property name) and help here, its
/// default in the library's `TrainingConfiguration`, onto which `configuration` maps them.
struct TrainArguments: ParsableArguments {
    private static let defaults = TrainingConfiguration()

    @Option(help: "Model: \(ModelZoo.names.joined(separator: ", ")).")
    var model = defaults.model
    @Option(help: "Data set: fashion-mnist, mnist:DIR, cifar10:DIR, or a folder of MNIST-format IDX files.")
    var data = defaults.data
    @Option(help: "auto (a GPU, else another OpenCL accelerator, else the host), host, or cl:P:D.")
    var device = defaults.device
    @Option(help: "Number of epochs.")
    var epochs = defaults.epochs
    @Option(help: "Images per training step.")
    var batchSize = defaults.batchSize
    @Option(help: "sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam or adamw.")
    var optimizer = defaults.optimizer
    @Option(help: "Learning rate (at the start of the schedule).")
    var lr = defaults.lr
    @Option(help: "Momentum for the momentum and nesterov optimizers.")
    var momentum = defaults.momentum
    @Option(help: "L2 weight decay (decoupled for adamw).")
    var weightDecay = defaults.weightDecay
    @Option(help: "Learning-rate schedule: constant, step (×0.1 every third of the run), cosine, plateau.")
    var schedule = defaults.schedule
    @Option(help: "Seed for initialisation, shuffling and dropout.")
    var seed = defaults.seed
    @Option(help: "Fraction of the training set held out for validation (0 validates on the test set).")
    var valSplit = defaults.valSplit
    @Option(name: .customLong("early-stop"), help: "Stop when the validation loss has not improved for this many epochs.")
    var earlyStop: Int?

    var configuration: TrainingConfiguration {
        TrainingConfiguration(model: model, data: data, device: device, epochs: epochs, batchSize: batchSize, optimizer: optimizer,
                              lr: lr, momentum: momentum, weightDecay: weightDecay, schedule: schedule, seed: seed,
                              valSplit: valSplit, earlyStop: earlyStop)
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
