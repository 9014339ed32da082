import ArgumentParser
import Foundation
import Kiln

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Train one run per combination of options from a grid, one after another, and rank them by validation accuracy.",
        discussion: """
            --grid 'lr=0.01,0.05,0.1 weight-decay=0,5e-4' names kiln train options (without their dashes) and the values \
            to try; every other argument is passed to each kiln train run. Each trial trains in its own folder \
            (OUT/trial-N); summary.csv and summary.md in OUT list the trials, best validation accuracy first, with the \
            command line of the best. Running the same sweep again resumes it: finished trials are read, an interrupted \
            one resumes from its checkpoint, the rest are trained.
            """)

    @Option(help: ArgumentHelp("Options and their values: 'lr=0.01,0.05 weight-decay=0,5e-4'.", valueName: "grid"))
    var grid: String
    @Option(help: "Run at most this many trials (with --random: this many drawn from the grid).")
    var trials: Int?
    @Flag(help: "Draw the trials at random from the grid (seeded by --sweep-seed) instead of taking them in order.")
    var random = false
    @Option(help: "The seed of --random's draw.")
    var sweepSeed: UInt64 = 1
    @Option(help: "The sweep's folder (default runs/sweep-<date-time>).")
    var out: String?
    @Argument(parsing: .allUnrecognized, help: "kiln train options every trial shares.")
    var trainArguments: [String] = []

    /// The grid's options in their order, each with its values.
    func parsedGrid() throws -> [(option: String, values: [String])] {
        let entries = grid.split(whereSeparator: \.isWhitespace).map(String.init)
        guard !entries.isEmpty else { throw ValidationError("--grid is empty; give options and values: 'lr=0.01,0.05 weight-decay=0,5e-4'") }
        return try entries.map { entry in
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw ValidationError("--grid: '\(entry)' is not OPTION=VALUE,VALUE (lr=0.01,0.05)")
            }
            let option = parts[0].hasPrefix("--") ? String(parts[0].dropFirst(2)) : parts[0]
            let values = parts[1].split(separator: ",").map(String.init)
            for value in values {
                do { _ = try TrainArguments.parse(trainArguments + ["--\(option)", value]) } catch {
                    let message = TrainArguments.message(for: error)
                    if message.contains("Unknown option") { throw ValidationError("--grid names \(option), which is not a kiln train option") }
                    throw ValidationError("--grid \(option)=\(value): \(message)")
                }
            }
            return (option, values)
        }
    }

    func validate() throws {
        if let trials, trials < 1 { throw ValidationError("--trials must be at least 1, not \(trials)") }
        if random, trials == nil { throw ValidationError("--random draws --trials N of the grid's combinations: give --trials") }
        for reserved in ["--out", "--resume", "--overwrite"] where trainArguments.contains(reserved) {
            throw ValidationError("\(reserved) is the sweep's to set for each trial; give the sweep's own --out")
        }
        do { _ = try TrainArguments.parse(trainArguments) } catch { throw ValidationError(TrainArguments.message(for: error)) }
        _ = try parsedGrid()
    }

    /// Every combination, the first option varying slowest.
    func combinations(_ grid: [(option: String, values: [String])]) -> [[String]] {
        grid.reduce([[]]) { partial, entry in partial.flatMap { prefix in entry.values.map { prefix + [$0] } } }
    }

    func run() throws {
        let grid = try parsedGrid()
        var all = combinations(grid)
        if random { all = Philox.shuffledIndices(all.count, stream: sweepSeed).map { all[$0] } }
        let chosen = Array(all.prefix(trials ?? all.count))
        let folder = URL(fileURLWithPath: out ?? "runs/sweep-\(TrainCommand.timestamp())")
        print("sweep: \(chosen.count) trial\(chosen.count == 1 ? "" : "s") of \(all.count) combinations, in \(folder.path)")
        var rows: [SweepRow] = []
        for (index, values) in chosen.enumerated() {
            let trialFolder = folder.appending(path: "trial-\(index + 1)")
            let setting = zip(grid, values).flatMap { ["--\($0.option)", $1] }
            let described = zip(grid, values).map { "\($0.option)=\($1)" }.joined(separator: " ")
            let finished = FileManager.default.fileExists(atPath: trialFolder.appending(path: TrainingRun.testFile).path)
            let started = !TrainingRun.existingRunFiles(in: trialFolder).isEmpty
            print("\ntrial \(index + 1)/\(chosen.count): \(described)" + (finished ? " (done earlier)" : started ? " (resuming)" : ""))
            if !finished {
                let arguments = started ? ["--resume", trialFolder.path] : trainArguments + setting + ["--out", trialFolder.path]
                var command = try TrainCommand.parse(arguments)
                try command.run()
            }
            rows.append(try SweepRow(trial: index + 1, setting: described, arguments: trainArguments + setting, folder: trialFolder))
        }
        let ranked = rows.sorted { ($0.validationAccuracy ?? -1) > ($1.validationAccuracy ?? -1) }
        try writeAtomically(Array(SweepRow.csv(ranked).utf8), to: folder.appending(path: "summary.csv"))
        let markdown = SweepRow.markdown(ranked)
        try writeAtomically(Array(markdown.utf8), to: folder.appending(path: "summary.md"))
        print("\n" + markdown)
        print("summary: \(folder.appending(path: "summary.csv").path) and summary.md")
    }
}

/// One trial of a sweep, read from its run folder.
struct SweepRow {
    var trial: Int
    var setting: String
    var command: String
    var validationAccuracy: Double?
    var validationLoss: Double?
    var testAccuracy: Double?
    var epochs: Int
    var folder: String

    init(trial: Int, setting: String, arguments: [String], folder: URL) throws {
        let metrics = try MetricsLog.read(from: folder.appending(path: TrainingRun.metricsFile))
        let best = metrics.rows.max { ($0.validationAccuracy ?? -1) < ($1.validationAccuracy ?? -1) }
        let test = try? TestResult.read(from: folder.appending(path: TrainingRun.testFile))
        (self.trial, self.setting, self.folder) = (trial, setting, folder.path)
        command = (["kiln", "train"] + arguments).map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
        (validationAccuracy, validationLoss, testAccuracy, epochs) = (best?.validationAccuracy, best?.validationLoss, test?.accuracy ?? nil,
                                                                      metrics.rows.count)
    }

    private static func format(_ value: Double?, percent: Bool = false) -> String {
        guard let value else { return "" }
        return percent ? String(format: "%.2f", value * 100) : String(format: "%.4f", value)
    }

    static func csv(_ rows: [SweepRow]) -> String {
        "trial,setting,best_val_acc,val_loss,test_acc,epochs,folder,command\n" + rows.map { row in
            "\(row.trial),\"\(row.setting)\",\(format(row.validationAccuracy)),\(format(row.validationLoss)),\(format(row.testAccuracy)),"
                + "\(row.epochs),\(row.folder),\"\(row.command)\"\n"
        }.joined()
    }

    static func markdown(_ rows: [SweepRow]) -> String {
        var text = "| trial | setting | best val acc (%) | val loss | test acc (%) | epochs |\n|---|---|---|---|---|---|\n"
        for row in rows {
            text += "| \(row.trial) | \(row.setting) | \(format(row.validationAccuracy, percent: true)) | \(format(row.validationLoss)) | "
                + "\(format(row.testAccuracy, percent: true)) | \(row.epochs) |\n"
        }
        if let best = rows.first { text += "\nbest: `\(best.command)`\n" }
        return text
    }
}
