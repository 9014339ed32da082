import ArgumentParser
import Dispatch
import Foundation
import Kiln
import KilnInterop

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a model on a data set, with progress, metrics, plots and checkpoints.",
        discussion: """
            Defaults train LeNet-BN2 (kiln models) on Fashion-MNIST on the best device for 10 epochs. A run folder receives \
            metrics.csv, steps.csv, curves.svg, config.json and checkpoints (resume.safetensors to resume from, \
            last.safetensors and best.safetensors, PyTorch state dicts). Ctrl-C finishes the current step, writes a \
            checkpoint and prints how to resume; a second Ctrl-C exits at once. Exit codes: 64 usage error, 1 runtime \
            error, 3 a NaN or infinite loss, 130/143 stopped by SIGINT/SIGTERM.
            """)

    @OptionGroup var options: TrainArguments
    @OptionGroup(title: "Data-parallel training (under mpirun)") var distributedOptions: DistributedArguments
    @Option(help: "Run folder (default runs/<date-time>); one that holds a run is refused without --overwrite.")
    var out: String?
    @Flag(help: "Let --out replace the run in its folder (its checkpoints included).")
    var overwrite = false
    @Option(help: "Continue the run in this folder from its last checkpoint; --epochs extends it, --device moves it.")
    var resume: String?
    @Option(help: "Threads of the host backend (default: all cores).")
    var threads: Int?
    @Option(help: ArgumentHelp("Write a TensorBoard event file into the run folder (tensorboard --logdir runs).", valueName: "on|off"))
    var tensorboard = OnOff.on

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, not \(threads)") }
        if resume != nil, out != nil { throw ValidationError("--resume continues a run in its own folder: give --resume or --out, not both") }
        if resume != nil, overwrite { throw ValidationError("--overwrite replaces a run with a new one; it cannot be given with --resume") }
    }

    /// Exit codes that every rank of a data-parallel job reaches at the same step: a stop, a non-finite loss.
    static let exitCodesReachedTogether: Set<Int32> = [3, 128 + SIGINT]

    func run() throws {
        var distributed: DistributedTraining?
        do {
            try reportingErrors(Self.self) {
                if let threads { HostBackend.shared.threads = threads }
                distributed = try DistributedTraining.start(distributedOptions, threads: threads)
                do { try trainOrResume(distributed) } catch let error as DataParallelError where error.isReachedByEveryRank {
                    // Every rank has the same error: rank 0 says it, and the job ends normally.
                    distributed?.failedTogether = true
                    if distributed?.dataParallel.isRoot == false { throw ExitCode.failure }
                    throw error
                }
            }
        } catch {
            if let failure = distributed?.end(after: error) { throw failure }
            throw error
        }
        _ = distributed?.end(after: nil)
    }

    private func trainOrResume(_ distributed: DistributedTraining?) throws {
        if let resume {
            let folder = URL(fileURLWithPath: resume)
            let saved: TrainingConfiguration
            do { saved = try TrainingRun.savedConfiguration(in: folder) } catch { throw CommandError("cannot resume: \(describe(error))") }
            try train(try resumed(saved, in: folder), in: folder, resuming: true, distributed: distributed)
        } else {
            var path = out ?? "runs/\(Self.timestamp())"
            // One folder for the job: rank 0's (the ranks' clocks may name different seconds).
            if let distributed { path = String(decoding: try distributed.communicator.broadcast(bytes: Array(path.utf8)), as: UTF8.self) }
            let folder = URL(fileURLWithPath: path)
            // Rank 0 alone looks: the others would see the files it is writing.
            let existing = distributed?.dataParallel.isRoot == false ? [] : TrainingRun.existingRunFiles(in: folder)
            if !existing.isEmpty {
                guard overwrite else { throw TrainingRunError.runExists(folder: folder.path, files: existing) }
                print("--overwrite: replacing the run in \(folder.path) (\(existing.joined(separator: ", ")))")
            }
            try train(options.configuration, in: folder, resuming: false, distributed: distributed)
        }
    }

    /// The saved configuration with the options given beside --resume: --epochs and --device are applied
    /// (and said), any other that differs from the run's is refused, naming each.
    private func resumed(_ saved: TrainingConfiguration, in folder: URL) throws -> TrainingConfiguration {
        var configuration = saved
        (configuration.resolvedDevice, configuration.deviceName) = (nil, nil)
        let changed = options.given(differingFrom: configuration)
        let fixed = changed.filter { !TrainArguments.changeableOnResume.contains($0.flag) }
        guard fixed.isEmpty else {
            throw ValidationError("these options cannot change on resume, the run in \(folder.path) fixes them: "
                + fixed.map { "\($0.flag) (given \($0.given), the run has \($0.saved))" }.joined(separator: ", ")
                + "; only --epochs and --device can be given with --resume (start a new run with --out to change the others)")
        }
        if let epochs = options.epochs, epochs != saved.epochs {
            // The schedules whose shape depends on the run's length (step without milestones: every third of it).
            let spansTheRun = ["cosine", "onecycle"].contains(saved.schedule.lowercased())
                || (saved.schedule.lowercased() == "step" && saved.milestones == nil)
            let schedule = spansTheRun
                ? "; the \(saved.schedule.lowercased()) schedule now spans \(epochs) epochs" : ""
            print("\(epochs > saved.epochs ? "extending" : "shortening") the run to \(epochs) epochs (it had \(saved.epochs))\(schedule)")
            configuration.epochs = epochs
        }
        if let device = options.device, device != saved.device {
            print("resuming on device \(device) (the run used \(saved.device))")
            configuration.device = device
        }
        return configuration
    }

    /// Runs `configuration` in `folder` with the command's output: the device and data, a line per epoch,
    /// how a stop resumes, and the test set's score of best.safetensors (also in test.json).
    private func train(_ configuration: TrainingConfiguration, in folder: URL, resuming: Bool, distributed: DistributedTraining?) throws {
        do { try configuration.validate() } catch { throw ValidationError("\(error)") }
        if let distributed, configuration.batchSize % distributed.job.size != 0 {
            throw ValidationError("--batch-size \(configuration.batchSize) is the global batch of the \(distributed.job.size) ranks, which take equal "
                                  + "shards of it: give a multiple of \(distributed.job.size) (each rank then takes batch-size / \(distributed.job.size))")
        }
        let device = try distributed?.device(for: configuration.device) ?? DeviceOption.parse(configuration.device)
        let backend = try device.backend()
        if let distributed { print(try distributed.describe(device: device, batchSize: configuration.batchSize)) }
        if device == .host, configuration.device == "auto" {
            let others = Device.available.filter { $0 != .host }
            print(others.isEmpty ? "No OpenCL device found: training on the host backend."
                  : "No GPU or accelerator found: training on the host backend, which is faster than an OpenCL driver on the same CPU"
                    + " (--device \(others[0]) uses \(others.count == 1 ? "it" : "one")).")
        }
        print("device \(device): \(backend.name)")
        print("optimizer \(try configuration.optimizerDescription())")

        let (trainSet, validationSet, testSet) = try configuration.loadData()
        reportConversions(trainSet.convertedImages + testSet.convertedImages, channels: trainSet.imageShape[0], data: configuration.data)
        do { try configuration.validate(trainingImages: trainSet.count, validationImages: validationSet.count) } catch {
            throw ValidationError("\(error)")
        }
        let scored = configuration.scoredSet
        let shape = trainSet.imageShape.map(String.init).joined(separator: "×")
        if configuration.validatesOnTestSet {
            print("data \(configuration.data): \(trainSet.count) training, \(testSet.count) test images of \(shape); "
                  + "--val-split 0: the test set scores every epoch and chooses best.safetensors")
        } else {
            print("data \(configuration.data): \(trainSet.count) training, \(validationSet.count) validation (held out of the training set, "
                  + "stratified, seed \(configuration.seed)), \(testSet.count) test images of \(shape)")
        }
        if configuration.onlyClasses != nil || configuration.perClass != nil {
            print("classes: \(trainSet.classNames.joined(separator: ", "))"
                  + (configuration.perClass.map { " (at most \($0) training images of each, chosen by --seed)" } ?? ""))
        }
        if let augment = configuration.augment { print("augmentation: \(augment)") }

        let run: TrainingRun
        do {
            run = try TrainingRun(folder: folder, configuration: configuration, train: trainSet, validation: validationSet,
                                  device: device, resuming: resuming, overwrite: overwrite, dataParallel: distributed?.dataParallel)
        } catch let KilnError.invalidArgument(message) {
            // The values are checked above; what is left is --epochs below the epochs a resumed run has trained.
            throw ValidationError(message)
        }
        if let mean = run.configuration.normalizationMean, let std = run.configuration.normalizationStd {
            let numbers = { (values: [Float]) in values.map { String(format: "%.4f", $0) }.joined(separator: ", ") }
            print("normalisation: mean \(numbers(mean)), std \(numbers(std))\(configuration.normalize?.lowercased() == "auto" ? " (of the training set)" : "")")
        }
        if let report = run.initialization {
            print("init from \(configuration.initFrom ?? ""):\n" + report.description.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        }
        if !run.backbone.isEmpty {
            let count = run.backbone.map(\.parameter.value.count).reduce(0, +)
            let total = run.model.namedParameters.filter { !$0.parameter.isBuffer }.map(\.parameter.value.count).reduce(0, +)
            var layers: [String] = []
            for name in run.backbone.map({ String($0.name.split(separator: ".")[0]) }) where layers.last != name { layers.append(name) }
            let thaw = configuration.unfreezeAt.map { epoch in
                "; they train from epoch \(epoch)" + (configuration.lrBackbone.map { " at lr \($0)" } ?? "")
            } ?? ""
            print("frozen: \(count) of \(total) parameters (\(layers.joined(separator: ", ")))\(thaw)")
        }
        if run.startedAfresh {
            print("no checkpoint in \(folder.path) yet (the run stopped before its first epoch ended): starting it from the beginning")
        } else if resuming {
            let position = run.state.position
            // The batch size is the run's, whatever the number of ranks now: the same steps as before the stop.
            let batch = distributed.map { "global batch \(configuration.batchSize) kept, \($0.job.size) ranks × \(configuration.batchSize / $0.job.size)" }
                ?? "batch size \(configuration.batchSize) kept"
            print("resuming at epoch \(position.epoch + 1), batch \(position.batch), step \(position.step) (\(batch))")
        }
        let measuresAccuracy = run.trainer.measuresAccuracy
        let board = tensorboard == .on && run.writesFiles ? try TensorBoardLog(folder: folder) : nil
        if let board {
            run.stepsEnded = { try board.stepsEnded(firstStep: $0, losses: $1, learningRates: $2) }
            if let pipeline = try run.configuration.augmentationPipeline(seed: run.state.seed, classes: trainSet.classNames.count) {
                let grid = try pipeline.previewGrid(of: trainSet, epoch: run.state.position.epoch, count: 16, columns: 8, device: .host)
                try board.events.image("augmentation", grid, step: run.state.position.step)
            }
        }
        run.epochEnded = { metrics, _ in
            try board?.epochEnded(metrics, scoredSet: scored, measuresAccuracy: measuresAccuracy)
            let line = measuresAccuracy
                ? String(format: "epoch %d: train loss %.4f acc %.2f%% | %@ loss %.4f acc %.2f%% | lr %.3g | %.0f img/s",
                         metrics.epoch, metrics.trainLoss, 100 * metrics.trainAccuracy, scored.abbreviation,
                         metrics.validationLoss ?? .nan, 100 * (metrics.validationAccuracy ?? .nan), metrics.learningRate,
                         metrics.imagesPerSecond)
                : String(format: "epoch %d: train reconstruction MSE %.5f | %@ MSE %.5f | lr %.3g | %.0f img/s",
                         metrics.epoch, metrics.trainLoss, scored.abbreviation, metrics.validationLoss ?? .nan,
                         metrics.learningRate, metrics.imagesPerSecond)
            // Through the console's own thread, like the progress line: a reader that stops reading blocks
            // neither the next step nor the checkpoint of a stop.
            ConsoleOutput.standard.write(line + "\n")
        }

        if ProcessInfo.processInfo.environment["KILN_PROFILE"] == "1" {
            if let backend = try device.backend() as? OpenCLBackend {
                run.trainer.profile = KernelProfile(backend: backend, skippingFirst: 1)
                print("KILN_PROFILE=1: timing every kernel of the training steps after the first (steps wait for the device)")
            } else {
                print("KILN_PROFILE=1: the host backend runs no kernels to profile; use an OpenCL device")
            }
        }
        let stopper = SignalStopper(trainer: run.trainer)
        defer { stopper.disarm() }
        let outcome: FitOutcome
        do {
            outcome = try run.run()
        } catch {
            ConsoleOutput.standard.drain()
            if let error = error as? TrainingError {
                printError("\(error)\(Self.place(of: error, in: run)); \(Self.checkpointsLeft(by: run))")
                throw ExitCode(3)
            }
            throw error
        }
        let profileTable = run.trainer.profile.map { "\nkernel profile of the training steps:\n" + $0.table + "\n" }
        switch outcome {
        case let .interrupted(stop):
            // The checkpoint is written. The reader may be mpirun, which stops reading stdout once it is
            // interrupted: the progress still queued gets a moment, and the stop's lines go to stderr, which
            // mpirun still forwards.
            ConsoleOutput.standard.drain(within: .seconds(1))
            var lines = profileTable ?? ""
            lines += "\nstopped at epoch \(stop.epoch + 1), batch \(stop.batch) (step \(stop.step)); checkpoint \(run.lastCheckpoint.path)\n"
            if let distributed {
                lines += "resume with: mpirun -np \(distributed.job.size) kiln train --resume \(folder.path) (any number of ranks, or none)\n"
            } else {
                lines += "resume with: kiln train --resume \(folder.path)\n"
            }
            // Every rank's stderr reaches mpirun's; the other ranks' stdout goes nowhere.
            if distributed?.dataParallel.isRoot != false { FileHandle.standardError.write(Data(lines.utf8)) }
            // mpirun turns Ctrl-C into SIGTERM to every rank, and a rank that got no signal stops with the
            // others: the job's stop is an interrupt on every rank.
            throw ExitCode(distributed == nil ? stopper.exitCode : 128 + SIGINT)
        case .earlyStopped, .completed:
            ConsoleOutput.standard.drain()
            if let profileTable { print(profileTable) }
            if case let .earlyStopped(epoch) = outcome {
                print("early stop after epoch \(epoch): no improvement for \(configuration.earlyStop ?? 0) epochs")
            }
        }
        if let dataParallel = run.dataParallel {
            print("every rank holds the same parameters (digest \(String(try dataParallel.digest(of: run.model), radix: 16)))")
        }
        let test = try run.testBestModel(on: testSet)
        let scoredModel = "\(test.checkpoint)\(test.epoch.map { ", epoch \($0)" } ?? "")"
        if let accuracy = test.accuracy {
            print(String(format: "test: loss %.4f, accuracy %.2f%% (%d images, %@)", test.loss, 100 * accuracy, test.images, scoredModel))
        } else {
            print(String(format: "test: reconstruction MSE %.5f (%d images, %@)", test.loss, test.images, scoredModel))
        }
        print("run folder: \(folder.path)")
    }

    /// The epoch and batch of a bad training step (1-based), which loss it was.
    private static func place(of error: TrainingError, in run: TrainingRun) -> String {
        guard case let .nonFiniteLoss(step, _) = error, run.batchesPerEpoch > 0 else { return "" }
        return " (epoch \(step / run.batchesPerEpoch + 1), batch \(step % run.batchesPerEpoch + 1))"
    }

    /// Which checkpoint a run stopped by a non-finite loss leaves: checkpoints are written only after an epoch
    /// (or a requested stop) that passed the check, so the one on disk predates the bad value.
    private static func checkpointsLeft(by run: TrainingRun) -> String {
        guard run.hasCheckpoint else { return "no checkpoint was written with it, and there is none: no epoch had finished" }
        let position = run.state.position
        let when = position.batch == 0 ? "the end of epoch \(position.epoch)" : "epoch \(position.epoch + 1), batch \(position.batch)"
        var text = "no checkpoint was written with it; the checkpoint left is \(run.lastCheckpoint.path) from \(when) (step \(position.step))"
        if FileManager.default.fileExists(atPath: run.bestCheckpoint.path), let best = run.state.bestScore {
            text += String(format: ", and %@ (loss %.4f)", run.bestCheckpoint.path, best)
        }
        return text
    }

    static func timestamp() -> String {
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd_HH-mm-ss"
        return formatter.string(from: Date())
    }
}

/// The options of a training run, each written once: its flag (from the property name) and help here, its
/// default in the library's `TrainingConfiguration`, onto which `configuration` maps them. Each is nil when
/// not given, so that `--resume` can tell which were.
struct TrainArguments: ParsableArguments {
    private static let defaults = TrainingConfiguration()
    /// The options `--resume` applies; it refuses the others when they differ from the run's.
    static let changeableOnResume: Set<String> = ["--epochs", "--device"]

    @Option(help: "Model: \(ModelZoo.names.joined(separator: ", ")) (default: \(defaults.model)).")
    var model: String?
    @Option(help: "Data set: fashion-mnist, mnist:DIR, cifar10:DIR, folder:DIR (one sub-folder of PNG, PGM or JPEG images per class, or train/ and test/ folders laid out so), or a folder of MNIST-format IDX files (default: \(defaults.data)).")
    var data: String?
    @Option(help: "Resize every image to N×N pixels (bilinear), at least 1 (default: the data's own size, which the images of a folder must then share).")
    var imageSize: Int?
    @Option(help: "auto (a GPU, else another OpenCL accelerator, else the host), host, or cl:P:D (default: \(defaults.device)).")
    var device: String?
    @Option(help: "Number of epochs, at least 1 (default: \(defaults.epochs)).")
    var epochs: Int?
    @Option(help: "Images per training step, from 1 to the training set's size (default: \(defaults.batchSize)).")
    var batchSize: Int?
    @Option(help: "sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam or adamw (default: \(defaults.optimizer)).")
    var optimizer: String?
    @Option(help: "Learning rate (at the start of the schedule), positive (default: the optimizer's usual one: 0.05 for sgd, momentum and nesterov, 0.001 for adam, adamw and rmsprop, 0.01 for adagrad, 1 for adadelta).")
    var lr: Float?
    @Option(help: "Momentum for the momentum and nesterov optimizers, in [0, 1) (default: \(defaults.momentum)).")
    var momentum: Float?
    @Option(help: ArgumentHelp("Adam's and AdamW's β₁,β₂ (default: 0.9,0.999).", valueName: "b1,b2"),
            transform: { text in try text.split(separator: ",").map { part in
                guard let value = Float(part.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--betas takes numbers: b1,b2, not '\(text)'") }
                return value
            } })
    var betas: [Float]?
    @Option(help: "The ε of adam, adamw, rmsprop, adagrad and adadelta (default: PyTorch's, 1e-8, 1e-10 for adagrad, 1e-6 for adadelta).")
    var eps: Float?
    @Option(help: "Adadelta's ρ (default: 0.9).")
    var rho: Float?
    @Option(help: "RMSProp's smoothing constant α (default: 0.99).")
    var alpha: Float?
    @Option(help: "L2 weight decay (decoupled for adamw), at least 0 (default: \(defaults.weightDecay)).")
    var weightDecay: Float?
    @Option(help: "Label smoothing ε of the classification loss, in [0, 1): targets (1 − ε)·one-hot + ε/classes, as PyTorch's (default: none).")
    var labelSmoothing: Float?
    @Option(help: "The rate of every dropout layer of the model, in [0, 1) (default: the model's own; kiln models lists them).")
    var dropout: Float?
    @Option(help: "σ of Gaussian noise added to every training image (clamped to [0, 1]); the autoencoder then learns to reconstruct the clean image: a denoising autoencoder (default: none).")
    var noise: Float?
    @Option(help: "λ of an L1 penalty λ·Σ|code| / batch on the autoencoder's code, after its encoder: a sparse autoencoder (default: none).")
    var sparsity: Float?
    @Option(help: "L1 penalty λ·Σ|w| on every learnable parameter, at least 0 (default: none).")
    var l1: Float?
    @Option(help: "Scale each weight row (output unit or filter) down to at most this L2 norm after every update (default: none).")
    var maxNorm: Float?
    @Option(help: "Scale all gradients together down to at most this global L2 norm before every update (default: none).")
    var clipGradNorm: Float?
    @Option(help: ArgumentHelp("Parameters the weight decay skips: bias, norm (batch norms' weight and bias), or bias,norm (default: none).",
                               valueName: "kinds"))
    var noWeightDecayOn: String?
    @Option(help: """
        Learning-rate schedule, evaluated at every step: constant, step (×γ every third of the run, or at --milestones), \
        exponential (×γ every epoch), cosine, onecycle (Smith's, with PyTorch OneCycleLR's defaults: up from lr/25 over 30 % \
        of the steps, down to lr/250000, momentum cycling 0.95–0.85), plateau (×0.1 after 2 epochs without improvement) \
        (default: \(defaults.schedule)).
        """)
    var schedule: String?
    @Option(help: ArgumentHelp("Epochs after which --schedule step multiplies the rate by γ: 3,6.", valueName: "epochs"))
    var milestones: String?
    @Option(help: "The factor of the step and exponential schedules, in (0, 1] (default: 0.1 for step, 0.95 for exponential).")
    var gamma: Float?
    @Option(help: ArgumentHelp("A linear warm-up in front of the schedule, from lr/N to it: N steps (500) or N epochs (2ep).", valueName: "steps|Nep"))
    var warmup: String?
    @Option(help: "Seed for initialisation, shuffling and dropout (default: \(defaults.seed)).")
    var seed: UInt64?
    @Option(help: """
        Fraction of the training set held out for validation (stratified by class, chosen by --seed), in [0, 1); \
        0 validates on the test set (default: min(\(TrainingConfiguration.defaultValidationImages) images, 10 %)).
        """)
    var valSplit: Double?
    @Option(name: .customLong("early-stop"), help: "Stop when the validation loss has not improved for this many epochs (at least 1).")
    var earlyStop: Int?
    @Option(help: ArgumentHelp("Augmentation of training batches: a preset (\(AugmentationSpec.presets.map(\.name).joined(separator: ", "))) or steps, e.g. crop:4,flip,rotate:10,cutout:8,mixup:0.2.",
                               discussion: "Steps: \(AugmentationSpec.grammar.joined(separator: ", ")).", valueName: "spec"))
    var augment: String?
    @Option(help: ArgumentHelp("Per-channel normalisation of every batch: auto (the training set's statistics), MEAN,STD, or C means then C deviations.",
                               valueName: "auto|mean,std"))
    var normalize: String?
    @Flag(inversion: .prefixedNo, help: "Standardise each image to zero mean and unit variance (global contrast normalisation).")
    var standardize: Bool?
    @Flag(inversion: .prefixedNo, help: "Equalise each image's histogram when the data set loads.")
    var equalize: Bool?
    @Option(help: ArgumentHelp("Train on these classes alone, relabelled in this order, in every split: 0-4, 5,7,9.", valueName: "classes"))
    var onlyClasses: String?
    @Option(help: "Train on at most N images of each class (a sample chosen by --seed, before validation is held out).")
    var perClass: Int?
    @Option(help: ArgumentHelp("A ResNet's stem: imagenet (7×7 stride-2 convolution and max pooling, torchvision's tree at any size) or small (3×3, no pooling) (default: small below 128 px).", valueName: "imagenet|small"))
    var stem: String?
    @Option(name: .customLong("init"), help: ArgumentHelp("""
        An initialisation scheme for every convolution and linear layer's weights (biases zero): \
        \(InitializationScheme.allCases.map(\.rawValue).joined(separator: ", ")); or a safetensors file (a Kiln checkpoint \
        or a PyTorch state dict) whose tensors with matching names and shapes initialise the model, printing what loaded \
        (./NAME for a file named like a scheme).
        """, valueName: "scheme|file"))
    var initialization: String?

    /// `--init` when it names a scheme: a scheme's name, or a bare word that is no file (a misspelt scheme,
    /// which validation then refuses, listing the schemes).
    var initScheme: String? { initialization.flatMap { Self.namesAScheme($0) ? $0 : nil } }
    /// `--init` when it names a file.
    var initFrom: String? { initialization.flatMap { Self.namesAScheme($0) ? nil : $0 } }

    private static func namesAScheme(_ value: String) -> Bool {
        InitializationScheme(rawValue: value.lowercased()) != nil
            || (!value.contains("/") && !value.contains(".") && !FileManager.default.fileExists(atPath: value))
    }
    @Flag(name: .customLong("strict"), help: "With --init: a tensor missing in the file, unexpected in it, or of another shape is an error.")
    var strictInit = false
    @Option(help: ArgumentHelp("Freeze the layers these dotted-path globs match: conv1,bn1,layer1.* (frozen batch norms keep their running statistics).", valueName: "patterns"))
    var freeze: String?
    @Option(help: ArgumentHelp("Freeze every layer before this one (a dotted path such as layer3 or fc).", valueName: "layer"))
    var freezeUntil: String?
    @Option(help: "The epoch (from 1) from which the frozen layers train too.")
    var unfreezeAt: Int?
    @Option(help: "The learning rate of the frozen layers once they train (scaled by the schedule as --lr is).")
    var lrBackbone: Float?

    /// One option given: its flag and value, how it sets a configuration, and the value a configuration holds
    /// instead of it (nil when the same).
    struct GivenOption {
        let flag: String
        let value: String
        let apply: (inout TrainingConfiguration) -> Void
        let otherValue: (TrainingConfiguration) -> String?
    }

    /// Every option given, in the order above: the one place that ties each option to its configuration field.
    var givenOptions: [GivenOption] {
        func option<T: Equatable>(_ flag: String, _ value: T?, _ field: WritableKeyPath<TrainingConfiguration, T>) -> GivenOption? {
            guard let value else { return nil }
            return GivenOption(flag: flag, value: "\(value)", apply: { $0[keyPath: field] = value },
                               otherValue: { $0[keyPath: field] == value ? nil : "\($0[keyPath: field])" })
        }
        // Optional in the configuration: said as `unset` when it is not set.
        func optional<T: Equatable>(_ flag: String, _ value: T?, _ field: WritableKeyPath<TrainingConfiguration, T?>,
                                    unset: String = "none") -> GivenOption? {
            guard let value else { return nil }
            return GivenOption(flag: flag, value: "\(value)", apply: { $0[keyPath: field] = value },
                               otherValue: { $0[keyPath: field] == value ? nil : $0[keyPath: field].map { "\($0)" } ?? unset })
        }
        return [option("--model", model, \.model), option("--data", data, \.data), optional("--image-size", imageSize, \.imageSize),
                option("--device", device, \.device), option("--epochs", epochs, \.epochs), option("--batch-size", batchSize, \.batchSize),
                option("--optimizer", optimizer, \.optimizer), option("--lr", lr, \.lr), option("--momentum", momentum, \.momentum),
                optional("--betas", betas, \.betas), optional("--eps", eps, \.eps), optional("--rho", rho, \.rho),
                optional("--alpha", alpha, \.alpha),
                option("--weight-decay", weightDecay, \.weightDecay), optional("--label-smoothing", labelSmoothing, \.labelSmoothing), optional("--dropout", dropout, \.dropout),
                optional("--noise", noise, \.noise), optional("--sparsity", sparsity, \.sparsity), optional("--l1", l1, \.l1), optional("--max-norm", maxNorm, \.maxNorm),
                optional("--clip-grad-norm", clipGradNorm, \.clipGradNorm), optional("--no-weight-decay-on", noWeightDecayOn, \.noWeightDecayOn),
                option("--schedule", schedule, \.schedule), optional("--milestones", milestones, \.milestones),
                optional("--gamma", gamma, \.gamma), optional("--warmup", warmup, \.warmup),
                option("--seed", seed, \.seed), optional("--val-split", valSplit, \.valSplit, unset: "the default"),
                optional("--early-stop", earlyStop, \.earlyStop), optional("--augment", augment, \.augment),
                optional("--normalize", normalize, \.normalize), optional("--standardize", standardize, \.standardize),
                optional("--equalize", equalize, \.equalize), optional("--only-classes", onlyClasses, \.onlyClasses),
                optional("--per-class", perClass, \.perClass), optional("--stem", stem, \.stem), optional("--init", initFrom, \.initFrom), optional("--init", initScheme, \.initScheme),
                optional("--strict", strictInit ? true : nil, \.strictInit), optional("--freeze", freeze, \.freeze),
                optional("--freeze-until", freezeUntil, \.freezeUntil), optional("--unfreeze-at", unfreezeAt, \.unfreezeAt),
                optional("--lr-backbone", lrBackbone, \.lrBackbone)]
            .compactMap { $0 }
    }

    /// The options given, as a configuration over `kiln train`'s defaults, with the optimizer's own: its usual
    /// learning rate unless `--lr` is given, and its settings.
    var configuration: TrainingConfiguration {
        var configuration = Self.defaults
        for option in givenOptions { option.apply(&configuration) }
        configuration.applyOptimizerDefaults(keepingLearningRate: lr != nil)
        return configuration
    }

    /// The options given whose value differs from `saved`'s, with both values.
    func given(differingFrom saved: TrainingConfiguration) -> [(flag: String, given: String, saved: String)] {
        givenOptions.compactMap { option in option.otherValue(saved).map { (option.flag, option.value, $0) } }
    }

    /// Every value in its range and every name known, before any file is read.
    func validate() throws {
        let configuration = configuration
        do {
            try configuration.validate()
            if let device { try DeviceOption.checkSyntax(device) }
        } catch let error as ValidationError { throw error } catch { throw ValidationError("\(error)") }
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
            source.setEventHandler { [self, source] in
                // Signals that arrive before the handler runs are merged into one event: `data` counts them.
                let first = lock.withLock { () -> Bool in
                    defer { received = signalNumber }
                    return received == 0
                } && source.data < 2
                if first {
                    FileHandle.standardError.write(Data("\nstopping after this step (press Ctrl-C again to quit at once)\n".utf8))
                    trainer.requestStop()
                } else {
                    _exit(128 + signalNumber)  // at once: no atexit handlers, which could wait for the step
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
