import ArgumentParser
import Foundation
import Kiln
import KilnCL

struct WarmupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warmup",
        abstract: "Compile every OpenCL program a model's training and inference use, and tune its convolutions, ahead of time.",
        discussion: """
            What `kiln train` would otherwise do before its first step, done now so that a cluster job or a CI \
            image starts warm: the programs go into the driver's cache (POCL) or Kiln's (KILN_CACHE_DIR), the \
            tuner's choices into Kiln's. The caches are keyed by device, driver, kernel source and options, so \
            they serve any later run of the same shapes. Sizes compiled into programs are the layers' shapes, \
            not the batch; the tuner keeps a choice per batch size.
            """)

    @Option(help: "Model name (see `kiln models`).")
    var model = TrainingConfiguration().model
    @Option(help: "auto, host or cl:P:D (see kiln devices).")
    var device = "auto"
    @Option(help: "Training batch size.")
    var batchSize = TrainingConfiguration().batchSize
    @Option(help: "Batch size of evaluation and prediction (as kiln train evaluates).")
    var inferenceBatchSize = TrainingRun.evaluationBatchSize
    @Option(help: "Input as CxHxW (default: the model's own input size).")
    var input: String?
    @Option(help: "Number of classes.")
    var classes = 10
    @Option(help: "The optimizer the training steps use (as kiln train --optimizer).")
    var optimizer = TrainingConfiguration().optimizer
    @Option(help: ArgumentHelp("A ResNet's stem: imagenet or small (default: small below 128 px).", valueName: "imagenet|small"))
    var stem: String?
    @Flag(help: "List every program built, with its build options and time.")
    var list = false

    func run() throws {
        try reportingErrors(Self.self) { try warmUp() }
    }

    private func warmUp() throws {
        let (entry, shape) = try zooModel(model, input: input)
        guard batchSize > 0, inferenceBatchSize > 0 else { throw ValidationError("batch sizes must be positive") }
        try DeviceOption.checkSyntax(device)
        let target = try DeviceOption.parse(device)
        var configuration = TrainingConfiguration()
        (configuration.model, configuration.stem, configuration.optimizer, configuration.batchSize) = (model, stem, optimizer, batchSize)
        let network: any Layer
        let optimizer: Optimizer
        do {
            try configuration.validate()
            network = try ModelZoo.make(model, inputShape: shape, classes: classes, stem: try configuration.resNetStem())
            try network.move(to: target)
            optimizer = try configuration.makeOptimizer(for: network)
        } catch let KilnError.invalidArgument(message) { throw ValidationError(message) }
        let backendName = try target.backend().name
        guard case .opencl = target else {
            print("\(target) (\(backendName)) compiles nothing and tunes nothing: there is nothing to prepare")
            return
        }
        let trainer = Trainer(model: network, optimizer: optimizer, loss: entry.task.loss, seed: configuration.seed,
                              measuresAccuracy: entry.task.measuresAccuracy)
        let start = ContinuousClock.now
        let report = try Warmup.prepareAhead(trainer: trainer, inputShape: shape, batchSize: batchSize,
                                             inferenceBatchSize: inferenceBatchSize, on: target, showProgress: true)
        let elapsed = ContinuousClock.now - start
        let total = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        let input = shape.map(String.init).joined(separator: "x")
        print("prepared \(model) (\(input), training batch \(batchSize), inference batch \(inferenceBatchSize)) on \(target): \(backendName)")
        print("  programs: \(report.compiledPrograms) compiled, \(report.loadedPrograms) loaded from Kiln's cache"
              + (report.libraryProducts > 0 ? ", CLBlast's for \(report.libraryProducts) matrix-product shapes" : "")
              + String(format: " (%.1f s)", report.compileSeconds))
        if list {
            for build in report.builds {
                let origin = build.origin == .compiled ? "compiled" : "loaded"
                print(String(format: "    %@ %@ in %.2f s: %@", build.name, origin, build.seconds, build.options))
            }
        }
        let tunes = (try target.backend() as? OpenCLBackend)?.convolutionTuning ?? false
        print("  convolution shapes tuned: \(report.tunedShapes)" + String(format: " (%.1f s)", report.tuneSeconds)
              + (tunes ? "" : "; tuning is off on this device (KILN_CONV_TUNE=1 turns it on)"))
        print(String(format: "  one training and one inference step: %.1f s, ", report.firstRunSeconds)
              + "\(report.workLeftToTheSteps) programs built or shapes tuned there" + String(format: "; %.1f s in all", total))
        if let folder = report.cacheFolder { print("  programs cached in \(describeFolder(folder))") }
        print("  tuning choices and Kiln's binaries in \(describeFolder(CLBinaryCache.standardDirectory))")
    }
}
