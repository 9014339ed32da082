import ArgumentParser
import Foundation
import Kiln

struct LRFindCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lr-find",
        abstract: "The learning-rate range test: train a fresh model with a rate growing exponentially, and suggest a rate.",
        discussion: """
            From --start to --end over --steps steps (Smith; fastai's lr_find), on the training set and options of \
            kiln train (model, data, optimizer, batch size, augmentation, ...; the schedule is replaced by the test's \
            rate). The loss is smoothed (exponential average, β 0.98) and the test stops when it passes four times its \
            best. The suggestion is the rate of steepest descent of the smoothed loss. Writes lr-find.svg (loss against \
            log10 rate, suggestions marked) and lr-find.csv. --compare-bn runs the same test on the model without its \
            batch norms too and plots both.
            """)

    @OptionGroup var options: TrainArguments
    @Option(help: "The first learning rate.")
    var start: Float = 1e-7
    @Option(help: "The last learning rate.")
    var end: Float = 10
    @Option(help: "Steps of the test (at least 5).")
    var steps = 100
    @Flag(help: "Also run the test on the model without its batch norms, and plot both.")
    var compareBn = false
    @Option(help: "Folder for lr-find.svg and lr-find.csv (default runs/lr-find-<date-time>).")
    var out: String?

    func validate() throws {
        do { try LearningRateFinder(start: start, end: end, steps: steps).validate() } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        try reportingErrors(Self.self) { try findRate() }
    }

    private func findRate() throws {
        let configuration = options.configuration
        do { try configuration.validate() } catch { throw ValidationError("\(error)") }
        let device = try DeviceOption.parse(configuration.device)
        print("device \(device): \(try device.backend().name)")
        var (train, _, _) = try configuration.loadData()
        if configuration.equalize == true { train.equalizeHistograms() }
        let finder = LearningRateFinder(start: start, end: end, steps: steps)
        let loader = try configuration.trainingLoader(train, preprocessing: try configuration.preprocessing(for: train),
                                                      seed: configuration.seed, device: device)
        let task = try ModelZoo.entry(configuration.model).task
        print("data \(configuration.data): \(train.count) training images; \(configuration.model), \(configuration.optimizer), "
              + "batch \(configuration.batchSize), rates \(start) to \(end) over \(steps) steps")

        if compareBn {  // refused before any step when the batch norms cannot be taken out
            let model = try configuration.makeModel(inputShape: train.imageShape, classes: train.classNames.count)
            do { _ = try model.removingBatchNorms() } catch { throw ValidationError("--compare-bn: \(configuration.model): \(error)") }
        }
        var runs: [(name: String, result: LearningRateFinder.Result)] = []
        for withBatchNorm in compareBn ? [true, false] : [true] {
            var model = try configuration.makeModel(inputShape: train.imageShape, classes: train.classNames.count)
            if !withBatchNorm { model = try model.removingBatchNorms() }
            try model.move(to: device)
            let trainer = Trainer(model: model, optimizer: try configuration.makeOptimizer(for: model), loss: configuration.loss(for: task),
                                  seed: configuration.seed,
                                  measuresAccuracy: task.measuresAccuracy)
            let name = compareBn ? (withBatchNorm ? "with batch norm" : "without batch norm") : configuration.model
            let result = try finder.run(trainer: trainer, loader: loader)
            let last = result.points.last.map { String(format: "%.3g", $0.rate) } ?? "-"
            print("\(name): \(result.points.count) steps, " + (result.diverged ? "diverged at rate \(last)" : "no divergence up to \(last)")
                  + "; suggested rate " + (result.suggestion.map { String(format: "%.3g", $0) } ?? "none (too few steps before the loss rose)"))
            runs.append((name, result))
        }

        let folder = URL(fileURLWithPath: out ?? "runs/lr-find-\(TrainCommand.timestamp())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let title = "learning-rate range test: \(configuration.model) on \(configuration.data)"
        try writeAtomically(Array(LearningRatePlot.svg(runs, title: title).utf8), to: folder.appending(path: "lr-find.svg"))
        var csv = "run,step,lr,loss,smoothed_loss\n"
        for (name, result) in runs {
            for (step, point) in result.points.enumerated() { csv += "\(name),\(step),\(point.rate),\(point.loss),\(point.smoothedLoss)\n" }
        }
        try writeAtomically(Array(csv.utf8), to: folder.appending(path: "lr-find.csv"))
        print("wrote \(folder.appending(path: "lr-find.svg").path) and lr-find.csv")
    }
}
