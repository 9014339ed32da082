import Foundation
import XCTest
@testable import Kiln

/// What `kiln train`, `eval` and `predict` say and return when an option or a run folder is wrong: usage
/// errors exit 64 with the usage and before any work, runtime errors print `error: <message>` alone and
/// exit 1, and nothing a run has written is lost silently.
final class CommandLineErrorTests: XCTestCase {
    private static let runs = FileManager.default.temporaryDirectory.appending(path: "kiln-cli-errors-\(UUID().uuidString)")

    private func copyOfTheTrainedRun(_ name: String) throws -> URL {
        let copy = Self.runs.appending(path: name)
        try FileManager.default.createDirectory(at: Self.runs, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: try KilnCommand.trainedRun.get().folder, to: copy)
        return copy
    }

    private static let augmentationSteps = "crop:PIXELS[:reflect], translate:FRACTION, flip, vflip, rotate:DEGREES, shear:FACTOR, zoom:FRACTION, rrc[:MIN_SCALE], jitter:AMOUNT, brightness:AMOUNT, contrast:AMOUNT, saturation:AMOUNT, cutout:PIXELS, erase:PROBABILITY, mixup:ALPHA, cutmix:ALPHA, pairing, nearest, fill:VALUE"

    func testBadOptionValuesAreUsageErrorsRaisedBeforeAnyWork() throws {
        let data = try KilnCommand.smallDataSet()
        let cases: [(arguments: [String], message: String)] = [
            (["--epochs=-1"], "--epochs must be at least 1, not -1"),
            (["--epochs", "0"], "--epochs must be at least 1, not 0"),
            (["--lr", "0"], "--lr must be a positive finite number, not 0.0"),
            (["--lr", "nan"], "--lr must be a positive finite number, not nan"),
            (["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
            (["--val-split", "2"], "--val-split must be at least 0 and below 1 (a fraction of the training set), not 2.0"),
            (["--val-split", "1"], "--val-split must be at least 0 and below 1 (a fraction of the training set), not 1.0"),
            (["--momentum", "1"], "--momentum must be at least 0 and below 1, not 1.0"),
            (["--weight-decay=-0.1"], "--weight-decay must be a finite number of at least 0, not -0.1"),
            (["--weight-decay", "inf"], "--weight-decay must be a finite number of at least 0, not inf"),
            (["--early-stop", "0"], "--early-stop must be at least 1, not 0"),
            (["--l1=-1e-4"], "--l1 must be a finite number of at least 0, not -0.0001"),
            (["--max-norm", "0"], "--max-norm must be a positive finite number, not 0.0"),
            (["--clip-grad-norm", "inf"], "--clip-grad-norm must be a positive finite number, not inf"),
            (["--no-weight-decay-on", "bias,weights"], "--no-weight-decay-on takes bias, norm or both (bias,norm), not 'weights'"),
            (["--label-smoothing", "1"], "--label-smoothing must be at least 0 and below 1, not 1.0"),
            (["--dropout", "1"], "--dropout must be at least 0 and below 1, not 1.0"),
            (["--optimizer", "adam", "--rho", "0.9"], "--rho is a setting of adadelta, not of --optimizer adam"),
            (["--init", "glorot"], "unknown initialisation 'glorot'; use xavier-uniform, xavier-normal, he-uniform, he-normal, lecun, default, or a safetensors file"),
            (["--schedule", "linear"], "unknown schedule 'linear'; use constant, step, exponential, cosine, onecycle, plateau"),
            (["--warmup", "2 epochs"], "--warmup takes a number of steps (500) or of epochs (2ep), not '2 epochs'"),
            (["--threads", "0"], "--threads must be at least 1, not 0"),
            (["--device", "gpu"], "--device must be auto, host or cl:P:D (see kiln devices), not 'gpu'"),
            (["--optimizer", "adamm"], "unknown optimizer 'adamm'; use sgd, momentum, nesterov, adagrad, adadelta, rmsprop, adam or adamw"),
            (["--resume", "somewhere"], "--resume continues a run in its own folder: give --resume or --out, not both"),
            (["--augment", "flop"], "--augment: unknown step 'flop'; use \(Self.augmentationSteps), or a preset: none, standard, strong"),
            (["--augment", "Strongest"], "--augment: unknown step 'strongest'; use \(Self.augmentationSteps), or a preset: none, standard, strong"),
            (["--augment", "rotate:200"], "--augment rotate:200: the angle in degrees must be a number from 0 to 180"),
            (["--augment", "cutout:0"], "--augment cutout:0: the square's side in pixels must be a number from 1 to 1024"),
            (["--augment", "mixup:0.2,pairing"], "--augment: pairing does not combine with mixup or cutmix; choose one"),
            (["--normalize", "0.5"], "--normalize '0.5': give auto, MEAN,STD, or C means then C standard deviations (e.g. 0.49,0.48,0.45,0.25,0.24,0.26)"),
            (["--normalize", "0.5,0"], "--normalize '0.5,0': the standard deviations must be positive"),
        ]
        for (index, (arguments, message)) in cases.enumerated() {
            let folder = Self.runs.appending(path: "bad-\(index)")
            let run = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--out", folder.path] + arguments)
            XCTAssertEqual(run.status, 64, "\(arguments):\n\(run.output)")
            XCTAssertTrue(run.output.hasPrefix("Error: \(message)\nUsage: kiln train"), "\(arguments):\n\(run.output)")
            XCTAssertFalse(run.output.contains("device host:"), "\(arguments): refused before any work:\n\(run.output)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: folder.path), "\(arguments): no run folder")
        }
        // Those that need the data's size: refused once it is loaded, before the model is built.
        for (index, (arguments, message)) in [
            (["--batch-size", "100000"], "--batch-size 100000 is larger than the training set (576 images after holding out 64 validation images)"),
            (["--batch-size", "100000", "--val-split", "0"], "--batch-size 100000 is larger than the training set (640 images)"),
            (["--batch-size", "64", "--val-split", "0.95"],
             "--batch-size 64 is larger than the training set (32 images after holding out --val-split 0.95)"),
            (["--val-split", "0.0001"], "--val-split 0.0001 holds out no image of the training set"),
            (["--warmup", "10ep"], "--warmup 10ep is 90 steps, as long as the run or longer (10 epochs of 9 steps)"),
        ].enumerated() {
            let folder = Self.runs.appending(path: "bad-size-\(index)")
            let run = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--out", folder.path] + arguments)
            XCTAssertEqual(run.status, 64, "\(arguments):\n\(run.output)")
            XCTAssertTrue(run.output.contains("Error: \(message)\nUsage: kiln train"), "\(arguments):\n\(run.output)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: folder.path), "\(arguments): no run folder")
        }
    }

    func testRuntimeErrorsPrintOneErrorLineWithoutUsageAndExit1() throws {
        let data = try KilnCommand.smallDataSet()
        let missing = Self.runs.appending(path: "missing")
        let exact: [(arguments: [String], output: String)] = [
            (["train", "--resume", missing.path], "error: cannot resume: \(missing.path) is not a Kiln run folder: there is no such folder\n"),
            (["train", "--resume", data.path], "error: cannot resume: \(data.path) is not a Kiln run folder: it has no config.json\n"),
            (["eval", "--checkpoint", missing.appending(path: "x.safetensors").path, "--device", "host"],
             "error: \(missing.appending(path: "x.safetensors").path): does not exist\n"),
            (["predict", "--checkpoint", missing.appending(path: "x.safetensors").path, "--device", "host", "--index", "0"],
             "error: \(missing.appending(path: "x.safetensors").path): does not exist\n"),
        ]
        for (arguments, output) in exact {
            let run = try KilnCommand.run(arguments)
            XCTAssertEqual(run.status, 1, "\(arguments):\n\(run.output)")
            XCTAssertEqual(run.output, output, "\(arguments)")
        }

        let damaged = try copyOfTheTrainedRun("damaged-checkpoint")
        try Data("not a checkpoint".utf8).write(to: damaged.appending(path: TrainingRun.resumeCheckpointFile))
        let badConfig = try copyOfTheTrainedRun("damaged-config")
        try Data("{\"model\": 3}".utf8).write(to: badConfig.appending(path: TrainingRun.configurationFile))
        let file = Self.runs.appending(path: "a-file")
        try Data().write(to: file)
        let containing: [(arguments: [String], message: String)] = [
            (["train", "--resume", damaged.path], "error: \(damaged.path)/resume.safetensors: not a valid safetensors file: "),
            (["train", "--resume", badConfig.path],
             "error: cannot resume: \(badConfig.path)/config.json: is not a training configuration (\"model\" is not a String)\n"),
            (["train", "--data", data.path, "--device", "host", "--out", file.appending(path: "run").path],
             "error: \(file.path)/run: cannot be created: \(file.path) is a file, not a folder\n"),
            (["train", "--data", data.path, "--device", "cl:9:9", "--out", Self.runs.appending(path: "no-device").path],
             "error: unknown device 'cl:9:9'; available: "),
        ]
        for (arguments, message) in containing {
            let run = try KilnCommand.run(arguments)
            XCTAssertEqual(run.status, 1, "\(arguments):\n\(run.output)")
            XCTAssertTrue(run.output.contains(message), "\(arguments): '\(message)' in\n\(run.output)")
            XCTAssertEqual(run.output.components(separatedBy: "error:").count, 2, "one error line:\n\(run.output)")
            for raw in ["Usage:", "Error Domain", "NSCocoaErrorDomain", "DecodingError", "codingPath"] {
                XCTAssertFalse(run.output.contains(raw), "\(arguments): no '\(raw)':\n\(run.output)")
            }
        }
    }

    func testOutPointingAtARunIsRefusedUnlessOverwrite() throws {
        let (data, _) = try KilnCommand.trainedRun.get()
        let folder = try copyOfTheTrainedRun("existing")
        let best = try Data(contentsOf: folder.appending(path: TrainingRun.bestCheckpointFile))
        let arguments = ["train", "--data", data.path, "--device", "host", "--epochs", "1", "--batch-size", "64", "--out", folder.path]
        let refused = try KilnCommand.run(arguments)
        XCTAssertEqual(refused.status, 1, refused.output)
        XCTAssertEqual(refused.output, "error: \(folder.path) already holds a run (config.json, metrics.csv, steps.csv, curves.svg, "
                       + "resume.safetensors, last.safetensors, best.safetensors, test.json); continue it with --resume \(folder.path), "
                       + "or replace it with --overwrite\n")
        XCTAssertEqual(try Data(contentsOf: folder.appending(path: TrainingRun.bestCheckpointFile)), best, "best.safetensors untouched")

        let replaced = try KilnCommand.run(arguments + ["--overwrite"])
        XCTAssertEqual(replaced.status, 0, replaced.output)
        XCTAssertTrue(replaced.output.contains("--overwrite: replacing the run in \(folder.path)"), replaced.output)
        XCTAssertEqual(try TrainingRun.savedConfiguration(in: folder).batchSize, 64, "the new run's configuration")
        XCTAssertNotEqual(try Data(contentsOf: folder.appending(path: TrainingRun.bestCheckpointFile)), best)

        let both = try KilnCommand.run(["train", "--resume", folder.path, "--overwrite"])
        XCTAssertEqual(both.status, 64, both.output)
        XCTAssertTrue(both.output.hasPrefix("Error: --overwrite replaces a run with a new one; it cannot be given with --resume"), both.output)
    }

    func testFlagsGivenWithResumeAreAppliedOrRefusedByName() throws {
        let folder = try copyOfTheTrainedRun("resumed-with-flags")
        let metrics = try Data(contentsOf: folder.appending(path: TrainingRun.metricsFile))
        // --device and --epochs at the run's own values, and --seed at the run's: nothing changes, nothing refused.
        let refused = try KilnCommand.run(["train", "--resume", folder.path, "--lr", "0.1", "--batch-size", "16", "--seed", "1",
                                           "--epochs", "1"])
        XCTAssertEqual(refused.status, 64, refused.output)
        XCTAssertTrue(refused.output.hasPrefix("Error: these options cannot change on resume, the run in \(folder.path) fixes them: "
            + "--batch-size (given 16, the run has 32), --lr (given 0.1, the run has 0.05); only --epochs and --device can be given "
            + "with --resume (start a new run with --out to change the others)\nUsage: kiln train"), refused.output)
        XCTAssertEqual(try Data(contentsOf: folder.appending(path: TrainingRun.metricsFile)), metrics, "the run is untouched")

        let extended = try KilnCommand.run(["train", "--resume", folder.path, "--epochs", "2", "--device", "host"])
        XCTAssertEqual(extended.status, 0, extended.output)
        XCTAssertTrue(extended.output.contains("extending the run to 2 epochs (it had 1); the cosine schedule now spans 2 epochs"),
                      extended.output)
        XCTAssertTrue(extended.output.contains("resuming at epoch 2, batch 0, step 18"), extended.output)
        XCTAssertEqual(try MetricsLog.read(from: folder.appending(path: TrainingRun.metricsFile)).rows.map(\.epoch), [1, 2])
        XCTAssertEqual(try TrainingRun.savedConfiguration(in: folder).epochs, 2, "config.json records the new end")

        let shortened = try KilnCommand.run(["train", "--resume", folder.path, "--epochs", "1"])
        XCTAssertEqual(shortened.status, 64, shortened.output)
        XCTAssertTrue(shortened.output.contains("Error: the run in \(folder.path) has trained 2 epochs; it cannot be shortened to 1\nUsage: kiln train"),
                      shortened.output)
    }
}
