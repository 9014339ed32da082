import Foundation
import XCTest
@testable import Kiln

/// `kiln train` killed with SIGKILL (no chance to clean up) right after each file it commits, and at random
/// instants, always resumes, and ends with the uninterrupted run's weights, bit for bit.
final class CrashResumeTests: XCTestCase {
    func testARunKilledAtAnyPointResumesToTheUninterruptedRunsWeights() throws {
        let data = try KilnCommand.smallDataSet()
        let runs = FileManager.default.temporaryDirectory.appending(path: "kiln-crash-runs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: runs) }
        let common = ["train", "--data", data.path, "--device", "host", "--epochs", "2", "--batch-size", "64", "--seed", "7"]
        let whole = runs.appending(path: "whole")
        let uninterrupted = try KilnCommand.run(common + ["--out", whole.path])
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.output)
        let wholeMetrics = try MetricsLog.read(from: whole.appending(path: TrainingRun.metricsFile)).rows
        XCTAssertEqual(wholeMetrics.count, 2)
        let secondEpochIsBest = try XCTUnwrap(wholeMetrics[1].validationLoss) < XCTUnwrap(wholeMetrics[0].validationLoss)

        // Every commit point of the first epoch and those of the second (best only when epoch 2 improves).
        var points = ["config:1", "steps:1", "metrics:1", "curves:1", "checkpoint:1", "best:1", "last:1",
                      "steps:2", "metrics:2", "curves:2", "checkpoint:2", "last:2"]
        if secondEpochIsBest { points.append("best:2") }
        for point in points {
            let folder = runs.appending(path: point.replacingOccurrences(of: ":", with: "-"))
            let killed = try KilnCommand.runKillable(common + ["--out", folder.path], environment: ["KILN_TEST_KILL_AFTER": point])
            XCTAssertTrue(killed.killed, "\(point): killed by its hook (status \(killed.status)):\n\(killed.output)")
            let epoch = Int(point.split(separator: ":")[1])!
            let committed = ["checkpoint", "best", "last"].contains(point.split(separator: ":")[0]) ? epoch : epoch - 1
            let state = try? TrainingCheckpoint.state(in: SafeTensors.read(from: folder.appending(path: TrainingRun.resumeCheckpointFile)),
                                                      source: point)
            XCTAssertEqual(state?.position.epoch, committed == 0 ? nil : committed,
                           "\(point): resume.safetensors holds the last committed epoch, or is absent before the first")
            try assertResumes(folder, like: whole, expecting: committed == 0 ? "starting it from the beginning"
                              : "resuming at epoch \(committed + 1), batch 0", label: point)
        }

        // Random instants, from the data loading to the end of the run (fixed, so that a failure reproduces).
        var random = TestRandom(seed: 2026)
        for index in 0..<3 {
            let delay = Double(random.float(0.2, 2.5))
            let folder = runs.appending(path: "random-\(index)")
            let killed = try KilnCommand.runKillable(common + ["--out", folder.path], killAfter: delay)
            // Killed before it wrote its folder (a slow start, e.g. under a sanitizer), the run is simply started again.
            if !FileManager.default.fileExists(atPath: folder.appending(path: TrainingRun.configurationFile).path) {
                XCTAssertEqual(try KilnCommand.run(common + ["--out", folder.path]).status, 0, "a fresh start after a kill at \(delay) s")
                continue
            }
            try assertResumes(folder, like: whole, expecting: nil, label: "killed after \(delay) s (killed: \(killed.killed))")
        }
    }

    /// Resumes the run in `folder` to its end: it must never be refused, and end with `whole`'s weights, best
    /// model, steps and metrics.
    private func assertResumes(_ folder: URL, like whole: URL, expecting line: String?, label: String,
                               file: StaticString = #filePath, lineNumber: UInt = #line) throws {
        let resumed = try KilnCommand.run(["train", "--resume", folder.path])
        XCTAssertEqual(resumed.status, 0, "\(label): resumed:\n\(resumed.output)", file: file, line: lineNumber)
        if let line { XCTAssertTrue(resumed.output.contains(line), "\(label): '\(line)' in\n\(resumed.output)", file: file, line: lineNumber) }
        for checkpoint in [TrainingRun.lastCheckpointFile, TrainingRun.bestCheckpointFile] {
            let expected = try SafeTensors.read(from: whole.appending(path: checkpoint))
            let got = try SafeTensors.read(from: folder.appending(path: checkpoint))
            XCTAssertEqual(got.names, expected.names, "\(label): \(checkpoint)", file: file, line: lineNumber)
            for name in expected.names {
                XCTAssertEqual(got[name]?.data, expected[name]?.data, "\(label): \(checkpoint) \(name)", file: file, line: lineNumber)
            }
            XCTAssertEqual(got.metadata["kiln.step"], expected.metadata["kiln.step"], "\(label): \(checkpoint)", file: file, line: lineNumber)
        }
        let resume = try SafeTensors.read(from: folder.appending(path: TrainingRun.resumeCheckpointFile))
        // 576 training images (64 are held out for validation) in batches of 64: 9 steps an epoch.
        XCTAssertEqual(TrainingCheckpoint.position(in: resume), TrainingPosition(epoch: 2, batch: 0, step: 18), label, file: file, line: lineNumber)
        XCTAssertEqual(try String(contentsOf: folder.appending(path: TrainingRun.stepsFile), encoding: .utf8),
                       try String(contentsOf: whole.appending(path: TrainingRun.stepsFile), encoding: .utf8), "\(label): steps.csv",
                       file: file, line: lineNumber)
        func losses(_ run: URL) throws -> [Double?] {
            try MetricsLog.read(from: run.appending(path: TrainingRun.metricsFile)).rows.flatMap { [$0.trainLoss, $0.validationLoss] }
        }
        XCTAssertEqual(try losses(folder), try losses(whole), "\(label): metrics.csv", file: file, line: lineNumber)
    }
}
