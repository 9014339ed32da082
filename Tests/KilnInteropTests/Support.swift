import Foundation
import XCTest
@testable import Kiln

/// Runs `script` (a file of Checks/) with python3 and `arguments`, returning its exit status and output.
/// Where python3 lacks `modules`, the test is skipped, unless `KILN_REQUIRE_INTEROP_CHECKS=1` (the default
/// when `CI=true`) says these checks must run: then it fails, saying what to install.
func runPythonCheck(_ script: String, _ arguments: [String], needing modules: [String]) throws -> (status: Int32, output: String) {
    try PythonCheck(script, arguments, needing: modules).finish()
}

/// A Python check running in the background while the test goes on.
final class PythonCheck {
    private let process = Process()
    private let pipe = Pipe()

    init(_ script: String, _ arguments: [String], needing modules: [String]) throws {
        try Self.requireModules(modules)
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appending(path: "Checks/\(script)").path
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", path] + arguments
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
    }

    /// Waits for the check to end: its exit status and everything it printed.
    func finish() throws -> (status: Int32, output: String) {
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    /// Per module list, nil where python3 imports them, else its last line of error. (Tests run one at a time.)
    nonisolated(unsafe) private static var importFailures: [String: String?] = [:]

    /// Skips the test (or fails it, where the checks are required) when python3 cannot import `modules`.
    private static func requireModules(_ modules: [String]) throws {
        let key = modules.joined(separator: ", ")
        if importFailures[key] == nil {
            let probe = try runProcess(URL(fileURLWithPath: "/usr/bin/env"), ["python3", "-c", "import " + key])
            importFailures[key] = .some(probe.status == 0 ? nil : String(probe.output.split(separator: "\n").last ?? ""))
        }
        guard let failure = importFailures[key] ?? nil else { return }
        let environment = ProcessInfo.processInfo.environment
        let required = environment["KILN_REQUIRE_INTEROP_CHECKS"].map { $0 == "1" } ?? (environment["CI"] == "true")
        let message = "python3 cannot import \(key) (bash .ci/setup --tests installs them): \(failure)"
        if required { throw KilnError.invalidArgument(message + "; KILN_REQUIRE_INTEROP_CHECKS (or CI=true) says these checks must run") }
        throw XCTSkip(message)
    }
}

/// Runs `executable` with `arguments` to its end: its exit status and its standard output and error together.
func runProcess(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process(), pipe = Pipe()
    process.executableURL = executable
    process.arguments = arguments
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// Runs the `kiln` executable built beside the test bundle, as a user would.
func runKiln(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appending(path: "kiln")
    guard FileManager.default.isExecutableFile(atPath: executable.path) else {
        throw KilnError.invalidArgument("\(executable.path) is missing: build the package (swift build) before running the tests")
    }
    return try runProcess(executable, arguments)
}

/// A fresh temporary folder, removed when the test ends.
func temporaryFolder(_ testCase: XCTestCase, _ name: String) throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-interop-\(name)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    testCase.addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
    return folder
}

/// Writes `values` of `shape` as a NumPy .npy file.
func writeNumpy(_ values: [Float], shape: [Int], to url: URL) throws {
    try Data(numpyFile(values, shape: shape)).write(to: url)
}

/// The best checkpoint of a short `kiln train` run (with normalisation, which the export records; without TensorBoard, which
/// it checks).
let shortRunCheckpoint = Result { () -> URL in
    let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-export-\(UUID().uuidString)")
    let run = try runKiln(["train", "--epochs", "1", "--per-class", "20", "--device", "host", "--normalize", "auto",
                           "--tensorboard", "off", "--out", folder.path])
    guard run.status == 0 else { throw KilnError.invalidArgument("kiln train failed:\n\(run.output)") }
    let events = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("events.") }
    guard events.isEmpty else { throw KilnError.invalidArgument("--tensorboard off wrote \(events)") }
    return folder.appending(path: "best.safetensors")
}
