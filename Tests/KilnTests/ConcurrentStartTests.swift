import Foundation
import XCTest
@testable import Kiln

/// Eight threads make their first Kiln calls at the same moment. A process can start only once, so the test
/// runs itself again in fresh child processes and checks that each one succeeds.
final class ConcurrentStartTests: XCTestCase {
    private static let childVariable = "KILN_CONCURRENT_START_CHILD"

    func testEightThreadsStartingAtOnce() throws {
        if ProcessInfo.processInfo.environment[Self.childVariable] != nil {
            return try startEightThreadsAtOnce()
        }
        _ = try openCLDevice()
        for run in 1...5 {
            let child = Process()
            child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
            child.arguments = ["KilnTests.ConcurrentStartTests/testEightThreadsStartingAtOnce"]
            child.environment = ProcessInfo.processInfo.environment.merging([Self.childVariable: "1"]) { $1 }
            let output = Pipe()
            child.standardOutput = output
            child.standardError = output
            try child.run()
            let log = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            child.waitUntilExit()
            XCTAssertEqual(child.terminationStatus, 0, "child run \(run) failed:\n\(log)")
            XCTAssertTrue(log.contains("passed") || log.contains("Executed 1 test"), "the child did not run the test:\n\(log)")
        }
    }

    private func startEightThreadsAtOnce() throws {
        let threads = 8
        let start = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        let results = ResultBox(count: threads)
        for index in 0..<threads {
            done.enter()
            Thread {
                start.wait()
                results.set(index, Result {
                    let device = try openCLDevice()
                    let t = try Tensor.uniform([1000], seed: 5, on: device)
                    let product = try matmul(t.reshaped([10, 100]), t.reshaped([10, 100]), transposeB: true)
                    return [try t.sum(), try product.sum()]
                })
                done.leave()
            }.start()
        }
        for _ in 0..<threads { start.signal() }
        done.wait()
        let values = try (0..<threads).map { try results.get($0).get() }
        for value in values {
            XCTAssertEqual(value[0], values[0][0], accuracy: 1e-3)
            XCTAssertEqual(value[1], values[0][1], accuracy: 1e-2)
        }
    }
}

private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [Result<[Float], Error>?]
    init(count: Int) { results = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ result: Result<[Float], Error>) { lock.withLock { results[index] = result } }
    func get(_ index: Int) -> Result<[Float], Error> { lock.withLock { results[index]! } }
}
