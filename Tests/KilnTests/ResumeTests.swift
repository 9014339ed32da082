import Foundation
import XCTest
@testable import Kiln

/// `kiln train` stopped by SIGINT mid-epoch and resumed continues exactly where it stopped.
final class ResumeTests: XCTestCase {
    private var kiln: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appending(path: "kiln")
    }

    /// A small MNIST-format copy of part of Fashion-MNIST, so the runs take seconds.
    private func smallDataSet() throws -> URL {
        guard FileManager.default.fileExists(atPath: Dataset.fashionMNISTDirectory.path) else {
            throw XCTSkip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        }
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-resume-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (split, prefix, count) in [(DatasetSplit.train, "train", 640), (.test, "t10k", 200)] {
            let data = try Dataset.load("fashion-mnist", split: split).subset(Array(0..<count))
            let header = { (magic: UInt8, dimensions: [Int]) -> [UInt8] in
                [0, 0, 8, magic] + dimensions.flatMap { withUnsafeBytes(of: UInt32($0).bigEndian, Array.init) }
            }
            try Data(header(3, [count, 28, 28]) + data.pixels.map { UInt8(($0 * 255).rounded()) })
                .write(to: folder.appending(path: "\(prefix)-images-idx3-ubyte"))
            try Data(header(1, [count]) + data.labels.map(UInt8.init)).write(to: folder.appending(path: "\(prefix)-labels-idx1-ubyte"))
        }
        return folder
    }

    private func run(_ arguments: [String], interruptAfter line: String? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = kiln
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        var output = ""
        let reader = pipe.fileHandleForReading
        while true {
            let data = reader.availableData
            if data.isEmpty { break }
            output += String(decoding: data, as: UTF8.self)
            if let line, output.contains(line), process.isRunning, !output.contains("stopping") {
                kill(process.processIdentifier, SIGINT)
                output += "[sent SIGINT]\n"
            }
        }
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    func testAnInterruptedRunResumesBitForBit() throws {
        guard FileManager.default.isExecutableFile(atPath: kiln.path) else {
            return XCTFail("\(kiln.path) is missing: build the package (swift build) before running the tests")
        }
        let data = try smallDataSet()
        let runs = FileManager.default.temporaryDirectory.appending(path: "kiln-resume-runs-\(UUID().uuidString)")
        let common = ["train", "--data", data.path, "--device", "host", "--epochs", "2", "--batch-size", "32", "--seed", "3"]

        let whole = try run(common + ["--out", runs.appending(path: "whole").path])
        XCTAssertEqual(whole.status, 0, whole.output)
        for line in ["device host: ", "data \(data.path): 640 training, 200 test images of 1×28×28", "epoch 2: train loss ",
                     "| test loss ", "test: loss ", "run folder: \(runs.appending(path: "whole").path)"] {
            XCTAssertTrue(whole.output.contains(line), "'\(line)' in:\n\(whole.output)")
        }

        let stopped = try run(common + ["--out", runs.appending(path: "stopped").path], interruptAfter: "epoch 1/2 6/20")
        XCTAssertEqual(stopped.status, 130, "SIGINT exits with 130 after a checkpoint:\n\(stopped.output)")
        XCTAssertTrue(stopped.output.contains("resume with: kiln train --resume"), stopped.output)
        let resumed = try run(["train", "--resume", runs.appending(path: "stopped").path])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming at epoch 1, batch "), resumed.output)

        let wholeSteps = try String(contentsOf: runs.appending(path: "whole/steps.csv"), encoding: .utf8)
        let resumedSteps = try String(contentsOf: runs.appending(path: "stopped/steps.csv"), encoding: .utf8)
        XCTAssertEqual(wholeSteps.split(separator: "\n").count, 41, "a header and 40 steps")
        XCTAssertEqual(resumedSteps, wholeSteps, "the resumed run's losses equal the uninterrupted run's")
        let wholeModel = try SafeTensors.read(from: runs.appending(path: "whole/last.safetensors"))
        let resumedModel = try SafeTensors.read(from: runs.appending(path: "stopped/last.safetensors"))
        for name in wholeModel.names { XCTAssertEqual(resumedModel[name]?.data, wholeModel[name]?.data, name) }
        for file in ["metrics.csv", "curves.svg", "config.json", "best.safetensors", "last.optimizer.safetensors"] {
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
        XCTAssertEqual(state?.position, TrainingPosition(epoch: 2, batch: 0, step: 40))
        XCTAssertEqual(state, try TrainingCheckpoint.state(in: wholeModel, source: "whole/last.safetensors").map { whole in
            var whole = whole
            whole.elapsedSeconds = state?.elapsedSeconds ?? 0
            return whole
        }, "the fit state at the end equals the uninterrupted run's but for the time taken")
    }
}
