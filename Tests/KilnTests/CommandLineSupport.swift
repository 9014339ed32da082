import Foundation
import XCTest
@testable import Kiln

/// Runs the `kiln` executable built beside the test bundle, as a user would.
enum KilnCommand {
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appending(path: "kiln")
    }

    /// Runs `kiln arguments`, with standard output and error together; with `signal`, sends it when the
    /// output first contains `after` (a progress line), while the process still runs.
    static func run(_ arguments: [String], signal: Int32? = nil, after line: String? = nil) throws -> (status: Int32, output: String) {
        try run(arguments, signals: signal.map { [($0, line ?? "")] } ?? [])
    }

    /// Runs `kiln arguments`, sending each signal in turn once the output contains its line.
    static func run(_ arguments: [String], signals: [(signal: Int32, after: String)]) throws -> (status: Int32, output: String) {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw KilnError.invalidArgument("\(executable.path) is missing: build the package (swift build) before running the tests")
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        var output = "", pending = signals[...]
        let reader = pipe.fileHandleForReading
        while true {
            let data = reader.availableData
            if data.isEmpty { break }
            output += String(decoding: data, as: UTF8.self)
            while let next = pending.first, output.contains(next.after), process.isRunning {
                kill(process.processIdentifier, next.signal)
                pending = pending.dropFirst()
                output += "[sent signal \(next.signal)]\n"
            }
        }
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// Runs `kiln arguments` with `environment` added to the test's, sending SIGKILL after `killAfter` seconds
    /// when given; `killed` tells whether the process ended by SIGKILL (its own, through KILN_TEST_KILL_AFTER,
    /// or the test's).
    static func runKillable(_ arguments: [String], environment: [String: String] = [:], killAfter seconds: Double? = nil) throws
        -> (status: Int32, killed: Bool, output: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        if let seconds {
            let pid = process.processIdentifier
            DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { if process.isRunning { kill(pid, SIGKILL) } }
        }
        var output = ""
        let reader = pipe.fileHandleForReading
        while true {
            let data = reader.availableData
            if data.isEmpty { break }
            output += String(decoding: data, as: UTF8.self)
        }
        process.waitUntilExit()
        let killed = process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL
        return (process.terminationStatus, killed, output)
    }

    /// One short host run on the small data set (1 epoch, batch 32, the default seed), trained once per test process for
    /// the tests that read or copy its folder.
    static let trainedRun: Result<(data: URL, folder: URL), Error> = Result {
        let data = try smallDataSet()
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-trained-\(UUID().uuidString)")
        let result = try run(["train", "--data", data.path, "--device", "host", "--epochs", "1", "--batch-size", "32",
                              "--out", folder.path])
        guard result.status == 0 else { throw KilnError.invalidArgument("kiln train failed:\n\(result.output)") }
        return (data, folder)
    }

    /// A small MNIST-format copy of part of Fashion-MNIST (640 training and 200 test images), so that runs
    /// take seconds.
    static func smallDataSet() throws -> URL {
        guard FileManager.default.fileExists(atPath: Dataset.fashionMNISTDirectory.path) else {
            throw XCTSkip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        }
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-small-data-\(UUID().uuidString)")
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
}
