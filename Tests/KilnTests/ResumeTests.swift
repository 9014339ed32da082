import Foundation
import XCTest
@testable import Kiln

/// `kiln train` stopped by SIGINT mid-epoch and resumed continues exactly where it stopped.
final class ResumeTests: XCTestCase {
    func testAnInterruptedRunResumesBitForBit() throws {
        let data = try KilnCommand.smallDataSet()
        let runs = FileManager.default.temporaryDirectory.appending(path: "kiln-resume-runs-\(UUID().uuidString)")
        let common = ["train", "--data", data.path, "--device", "host", "--epochs", "2", "--batch-size", "32", "--seed", "3"]

        let whole = try KilnCommand.run(common + ["--out", runs.appending(path: "whole").path])
        XCTAssertEqual(whole.status, 0, whole.output)
        // 64 of the 640 training images are held out for validation: 576 are trained on, 18 batches an epoch.
        for line in ["device host: ", "data \(data.path): 576 training, 64 validation (held out of the training set, stratified, seed 3), "
                     + "200 test images of 1×28×28", "epoch 2: train loss ", "| val loss ", "test: loss ", "run folder: \(runs.appending(path: "whole").path)"] {
            XCTAssertTrue(whole.output.contains(line), "'\(line)' in:\n\(whole.output)")
        }

        let stopped = try KilnCommand.run(common + ["--out", runs.appending(path: "stopped").path], signal: SIGINT, after: "epoch 1/2 6/18")
        XCTAssertEqual(stopped.status, 130, "SIGINT exits with 130 after a checkpoint:\n\(stopped.output)")
        XCTAssertTrue(stopped.output.contains("resume with: kiln train --resume"), stopped.output)
        let resumed = try KilnCommand.run(["train", "--resume", runs.appending(path: "stopped").path])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming at epoch 1, batch "), resumed.output)

        let wholeSteps = try String(contentsOf: runs.appending(path: "whole/steps.csv"), encoding: .utf8)
        let resumedSteps = try String(contentsOf: runs.appending(path: "stopped/steps.csv"), encoding: .utf8)
        XCTAssertEqual(wholeSteps.split(separator: "\n").count, 37, "a header and 36 steps")
        XCTAssertEqual(resumedSteps, wholeSteps, "the resumed run's losses equal the uninterrupted run's")
        let wholeModel = try SafeTensors.read(from: runs.appending(path: "whole/last.safetensors"))
        let resumedModel = try SafeTensors.read(from: runs.appending(path: "stopped/last.safetensors"))
        for name in wholeModel.names { XCTAssertEqual(resumedModel[name]?.data, wholeModel[name]?.data, name) }
        for file in ["metrics.csv", "curves.svg", "config.json", "best.safetensors", "resume.safetensors", "test.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: runs.appending(path: "stopped/\(file)").path), file)
        }
        // Every column but the timings: the interrupted epoch's row covers the whole epoch.
        func reproducible(_ run: String) throws -> [EpochMetrics] {
            try MetricsLog.read(from: runs.appending(path: "\(run)/metrics.csv")).rows.map { row in
                var row = row
                (row.imagesPerSecond, row.seconds) = (0, 0)
                return row
            }
        }
        XCTAssertEqual(try reproducible("whole").count, 2)
        XCTAssertEqual(try reproducible("stopped"), try reproducible("whole"))
        XCTAssertEqual(try Data(contentsOf: runs.appending(path: "stopped/config.json")),
                       try Data(contentsOf: runs.appending(path: "whole/config.json")))
        let state = try TrainingCheckpoint.state(in: resumedModel, source: "stopped/last.safetensors")
        XCTAssertEqual(state?.position, TrainingPosition(epoch: 2, batch: 0, step: 36))
        XCTAssertEqual(state, try TrainingCheckpoint.state(in: wholeModel, source: "whole/last.safetensors").map { whole in
            var whole = whole
            whole.elapsedSeconds = state?.elapsedSeconds ?? 0
            return whole
        }, "the fit state at the end equals the uninterrupted run's but for the time taken")
    }

    /// With augmentation (mixing included) and auto normalisation, interrupted in the second epoch: the resumed
    /// run draws the same augmented batches, so its losses equal the uninterrupted run's bit for bit.
    func testAnAugmentedRunResumesBitForBit() throws {
        let data = try KilnCommand.smallDataSet()
        let runs = FileManager.default.temporaryDirectory.appending(path: "kiln-resume-augmented-\(UUID().uuidString)")
        let common = ["train", "--data", data.path, "--device", "host", "--epochs", "2", "--batch-size", "32", "--seed", "5",
                      "--augment", "crop:2:reflect,flip,rotate:8,jitter:0.2,cutout:6,mixup:0.3,cutmix:1", "--normalize", "auto", "--standardize"]
        let whole = try KilnCommand.run(common + ["--out", runs.appending(path: "whole").path])
        XCTAssertEqual(whole.status, 0, whole.output)
        XCTAssertTrue(whole.output.contains("augmentation: crop:2:reflect,flip"), whole.output)
        XCTAssertTrue(whole.output.contains("normalisation: mean "), whole.output)
        let stopped = try KilnCommand.run(common + ["--out", runs.appending(path: "stopped").path], signal: SIGINT, after: "epoch 2/2 10/18")
        XCTAssertEqual(stopped.status, 130, stopped.output)
        let resumed = try KilnCommand.run(["train", "--resume", runs.appending(path: "stopped").path])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming at epoch 2, batch "), resumed.output)
        let wholeSteps = try String(contentsOf: runs.appending(path: "whole/steps.csv"), encoding: .utf8)
        XCTAssertEqual(wholeSteps.split(separator: "\n").count, 37, "a header and 36 steps")
        XCTAssertEqual(try String(contentsOf: runs.appending(path: "stopped/steps.csv"), encoding: .utf8), wholeSteps)
        let config = try TrainingRun.savedConfiguration(in: runs.appending(path: "stopped"))
        XCTAssertEqual(config.augment, "crop:2:reflect,flip,rotate:8,jitter:0.2,cutout:6,mixup:0.3,cutmix:1")
        XCTAssertEqual(config.normalizationMean?.count, 1, "the statistics auto found are recorded")
        // The checkpoint evaluates with the same preprocessing: eval of best.safetensors gives the run's test accuracy.
        let eval = try KilnCommand.run(["eval", "--checkpoint", runs.appending(path: "whole/best.safetensors").path, "--data", data.path,
                                        "--device", "host"])
        XCTAssertEqual(eval.status, 0, eval.output)
        let trained = whole.output.split(separator: "\n").first { $0.hasPrefix("test: loss ") }.map(String.init) ?? ""
        let evaluated = eval.output.split(separator: "\n").first { $0.contains("test images") }.map(String.init) ?? ""
        let percent = { (line: String) in line.range(of: #"accuracy [0-9.]+%"#, options: .regularExpression).map { String(line[$0]) } }
        XCTAssertNotNil(percent(trained), whole.output)
        XCTAssertEqual(percent(evaluated), percent(trained), "eval: \(evaluated); train: \(trained)")
    }
}
