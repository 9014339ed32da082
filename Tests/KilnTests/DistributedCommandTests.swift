import Foundation
import XCTest
@testable import Kiln

/// `mpirun -np 2 kiln train` as a user starts it, against one process at the same global batch: the same
/// step losses and weights within 1e-5, the same bits on every rank, checkpoints that resume under any
/// number of ranks, and the errors of a job started wrong. Needs Open MPI (openmpi-bin), which CI installs;
/// elsewhere the tests skip without it.
final class DistributedCommandTests: XCTestCase {
    /// 190 images of the small set (19 of each class), 171 of them training: at batch 32 an epoch is 6
    /// steps, the last of 11 images, which 2 ranks split 5 and 6.
    private static let shortRun = ["--per-class", "19", "--batch-size", "32", "--seed", "3", "--tensorboard", "off"]

    func testTwoRanksTrainLeNet5LikeOneProcess() throws {
        let (one, two) = try trainBoth(["--model", "lenet5", "--device", "host", "--epochs", "1"])
        try assertSameTraining(two, one, "LeNet-5 on the host")
    }

    func testTwoRanksWithSynchronisedBatchNormTrainLeNetBNLikeOneProcess() throws {
        let (one, two) = try trainBoth(["--model", "lenet-bn", "--device", "host", "--epochs", "1"], distributedOnly: ["--sync-bn"])
        try assertSameTraining(two, one, "LeNet-BN with --sync-bn on the host")
    }

    func testTwoRanksOnOpenCLTrainLikeOneProcess() throws {
        _ = try openCLDevice()
        let (one, two) = try trainBoth(["--model", "lenet-bn", "--device", "cl:0:0", "--epochs", "1"], distributedOnly: ["--sync-bn"])
        try assertSameTraining(two, one, "LeNet-BN with --sync-bn on OpenCL")
    }

    /// A 2-rank run's checkpoint resumes in one process and in two ranks to the same weights, with the
    /// global batch kept; and Ctrl-C on mpirun stops every rank with a checkpoint that resumes.
    func testATwoRankCheckpointResumesInOneProcessAndInTwoRanks() throws {
        let data = try KilnCommand.smallDataSet()
        let first = try scratchFolder("first")
        let started = try Self.mpirun(["train", "--data", data.path, "--model", "lenet5", "--device", "host", "--epochs", "1",
                                       "--out", first.path] + Self.shortRun)
        XCTAssertEqual(started.status, 0, started.output)
        var resumed: [Int: URL] = [:]
        for ranks in [1, 2] {
            let folder = try scratchFolder("resumed-\(ranks)")
            try FileManager.default.removeItem(at: folder)
            try FileManager.default.copyItem(at: first, to: folder)
            let arguments = ["train", "--resume", folder.path, "--epochs", "2"]
            let result = ranks == 1 ? try KilnCommand.run(arguments + ["--threads", "1"]) : try Self.mpirun(arguments)
            XCTAssertEqual(result.status, 0, result.output)
            let kept = ranks == 1 ? "(batch size 32 kept)" : "(global batch 32 kept, 2 ranks × 16)"
            XCTAssertTrue(result.output.contains("resuming at epoch 2, batch 0, step 6 \(kept)"), result.output)
            resumed[ranks] = folder
        }
        try assertSameTraining(Self.read(resumed[2]!), Self.read(resumed[1]!), "resumed in 2 ranks against 1")
        XCTAssertEqual(try Self.read(resumed[2]!).losses.count, 12)

        // Ctrl-C reaches mpirun, which sends SIGTERM to every rank odls_base_sigkill_timeout seconds later and
        // SIGKILL as long after that: the ranks stop after the same step, rank 0 checkpoints, and the run resumes.
        let stopped = try scratchFolder("stopped")
        let interrupted = try Self.mpirun(["train", "--data", data.path, "--model", "lenet5", "--device", "host", "--epochs", "1000",
                                           "--out", stopped.path] + Self.shortRun,
                                          environment: ["OMPI_MCA_odls_base_sigkill_timeout": "3"], signal: SIGINT, after: "epoch 2/1000 ")
        XCTAssertNotEqual(interrupted.status, 0, interrupted.output)
        XCTAssertTrue(interrupted.output.contains("resume with: mpirun -np 2 kiln train --resume"), interrupted.output)
        let stop = try XCTUnwrap(interrupted.output.firstMatch(of: /stopped at epoch (\d+), batch (\d+) \(step (\d+)\)/), interrupted.output)
        let (epoch, step) = (Int(stop.1)!, Int(stop.3)!)
        XCTAssertEqual(try Self.read(stopped).losses.count, step, "steps.csv holds the steps before the stop")
        let again = try Self.mpirun(["train", "--resume", stopped.path, "--epochs", String(epoch)])
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("resuming at epoch \(epoch), batch \(stop.2), step \(step) "), again.output)
        XCTAssertEqual(try Self.read(stopped).losses.count, 6 * epoch, "the epoch the stop was in, finished")
    }

    func testAJobStartedWrongIsRefusedWithTheReason() throws {
        let data = try KilnCommand.smallDataSet()
        let odd = try Self.mpirun(["train", "--data", data.path, "--device", "host", "--epochs", "1", "--batch-size", "33",
                                   "--out", try scratchFolder("odd").path])
        XCTAssertNotEqual(odd.status, 0)
        XCTAssertTrue(odd.output.contains("--batch-size 33 is the global batch of the 2 ranks") && odd.output.contains("give a multiple of 2"),
                      odd.output)

        // Each rank given its own seed: the configurations differ, and the error shows both.
        let kiln = KilnCommand.executable.path, out = try scratchFolder("seeds").path
        let mismatched = try Self.mpirun(["sh", "-c", "exec \(kiln) train --data \(data.path) --device host --epochs 1 --per-class 19 "
                                                + "--batch-size 32 --out \(out) --seed $((3 + OMPI_COMM_WORLD_RANK))"], prefix: false)
        XCTAssertNotEqual(mismatched.status, 0)
        XCTAssertTrue(mismatched.output.contains("the ranks of this job disagree on the configuration"), mismatched.output)
        XCTAssertTrue(mismatched.output.contains("rank 0: {") && mismatched.output.contains("rank 1: {"), mismatched.output)

        let single = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--epochs", "1", "--sync-bn",
                                          "--out", try scratchFolder("single").path] + Self.shortRun)
        XCTAssertEqual(single.status, 0, single.output)
        XCTAssertTrue(single.output.contains("--sync-bn has no effect in a single process"), single.output)
    }

    // MARK: Support

    /// What a finished run left: its step losses and the weights of last.safetensors.
    private struct Trained {
        var losses: [Float]
        var weights: SafeTensors
        var output = ""
    }

    /// Trains `arguments` on the small data set once in one process (one thread, as each rank has) and once
    /// under mpirun with 2 ranks.
    private func trainBoth(_ arguments: [String], distributedOnly: [String] = []) throws -> (one: Trained, two: Trained) {
        let data = try KilnCommand.smallDataSet()
        let common = ["train", "--data", data.path] + arguments + Self.shortRun
        let (oneFolder, twoFolder) = (try scratchFolder("one"), try scratchFolder("two"))
        let one = try KilnCommand.run(common + ["--threads", "1", "--out", oneFolder.path])
        XCTAssertEqual(one.status, 0, one.output)
        let two = try Self.mpirun(common + distributedOnly + ["--out", twoFolder.path])
        XCTAssertEqual(two.status, 0, two.output)
        XCTAssertTrue(two.output.contains("data-parallel: 2 ranks"), two.output)
        var trained = try Self.read(twoFolder)
        trained.output = two.output
        return (try Self.read(oneFolder), trained)
    }

    private static func read(_ folder: URL) throws -> Trained {
        let steps = try String(contentsOf: folder.appending(path: "steps.csv"), encoding: .utf8)
        let losses = steps.split(separator: "\n").dropFirst().map { Float($0.split(separator: ",")[1])! }
        return Trained(losses: losses, weights: try SafeTensors.read(from: folder.appending(path: TrainingRun.lastCheckpointFile)))
    }

    /// The same step losses and every tensor within 1e-5 relative (its norm of the difference), and when
    /// `actual` is a job's, its ranks' digests agreed.
    private func assertSameTraining(_ actual: Trained, _ expected: Trained, _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(actual.losses.count, expected.losses.count, "steps, \(label)", file: file, line: line)
        assertClose(actual.losses, expected.losses, atol: 0, rtol: 1e-5, "step losses, \(label)", file: file, line: line)
        XCTAssertEqual(actual.weights.names, expected.weights.names, file: file, line: line)
        for name in expected.weights.names {
            guard let a = actual.weights.floats(name), let b = expected.weights.floats(name) else { continue }
            XCTAssertLessThanOrEqual(relativeDistance(a, b), 1e-5, "\(name), \(label)", file: file, line: line)
        }
        if !actual.output.isEmpty {
            XCTAssertTrue(actual.output.contains("every rank holds the same parameters (digest "), actual.output, file: file, line: line)
        }
    }

    private func scratchFolder(_ name: String) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-mpi-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        return folder
    }

    /// `mpirun --oversubscribe -np 2 kiln arguments` (with `prefix: false`, `arguments` is the command that
    /// mpirun starts), as root too, where CI runs, with `environment` added; with `signal`, sent to mpirun
    /// once the output contains `after`.
    private static func mpirun(_ arguments: [String], prefix: Bool = true, environment: [String: String] = [:], signal: Int32? = nil,
                               after line: String? = nil) throws
        -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = try mpirunExecutable()
        process.arguments = ["--oversubscribe", "-np", "2"] + (prefix ? [KilnCommand.executable.path] : []) + arguments
        process.environment = ProcessInfo.processInfo.environment
            .merging(["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"]) { $1 }
            .merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        var output = "", pending = signal
        let reader = pipe.fileHandleForReading
        while true {
            let data = reader.availableData
            if data.isEmpty { break }
            output += String(decoding: data, as: UTF8.self)
            if let next = pending, output.contains(line ?? ""), process.isRunning {
                kill(process.processIdentifier, next)
                pending = nil
            }
        }
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// mpirun on the PATH; without it the test skips, except in CI, which installs Open MPI.
    private static func mpirunExecutable() throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"
        for directory in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(directory)).appending(path: "mpirun")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        if ProcessInfo.processInfo.environment["CI"] == "true" {
            throw KilnError.invalidArgument("mpirun is not installed, but CI runs the data-parallel tests: apt-get install openmpi-bin libopenmpi-dev")
        }
        throw XCTSkip("Open MPI is not installed (apt-get install openmpi-bin libopenmpi-dev) to run the data-parallel tests")
    }
}
