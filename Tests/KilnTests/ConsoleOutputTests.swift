import Foundation
import KilnCL
import XCTest
@testable import Kiln

/// The console writer that keeps a reader that stops reading (mpirun ending a job) from blocking a step.
final class ConsoleOutputTests: XCTestCase {
    func testWritingToAReaderThatDoesNotReadReturnsAndTheTextArrivesInOrderLater() throws {
        let pipe = Pipe()
        let output = ConsoleOutput(fileDescriptor: pipe.fileHandleForWriting.fileDescriptor)
        // Four times a pipe's 64 KiB: written directly, the second line would already block.
        let lines = (0..<4096).map { String(format: "epoch %5d: %@\n", $0, String(repeating: "x", count: 52)) }
        let start = ContinuousClock.now
        for line in lines { output.write(line) }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(5), "writes waited for the reader")
        XCTAssertFalse(output.drain(within: .milliseconds(100)), "the text cannot all have been written to an unread pipe")

        // The reader starts; a drain without a limit waits for it to take everything.
        let expected = lines.joined().utf8.count
        let received = Locked(Data()), done = DispatchSemaphore(value: 0)
        Thread {
            let reader = pipe.fileHandleForReading
            while received.withLock({ $0.count }) < expected {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                received.withLock { $0 += chunk }
            }
            done.signal()
        }.start()
        XCTAssertTrue(output.drain())
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(String(decoding: received.withLock { $0 }, as: UTF8.self), lines.joined())
    }

    func testTextBeyondThePendingLimitIsDroppedAndCounted() throws {
        let pipe = Pipe()
        let output = ConsoleOutput(fileDescriptor: pipe.fileHandleForWriting.fileDescriptor)
        let block = String(repeating: "y", count: 1 << 16) + "\n"
        let blocks = ConsoleOutput.pendingLimit / block.utf8.count + 4
        for _ in 0..<blocks { output.write(block) }

        var received = Data()
        let reader = pipe.fileHandleForReading
        while !String(decoding: received.suffix(200), as: UTF8.self).contains("reader had stopped reading]\n") {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            received += chunk
        }
        let text = String(decoding: received, as: UTF8.self)
        let kept = text.split(separator: "\n").filter { $0.allSatisfy { $0 == "y" } }.count
        XCTAssertGreaterThan(kept, 0)
        XCTAssertLessThan(kept, blocks, "every block was kept although the reader held back more than the limit")
        let dropped = try XCTUnwrap(text.firstMatch(of: /\[(\d+) bytes of output dropped/)?.1)
        XCTAssertEqual(Int(dropped), (blocks - kept) * block.utf8.count)
    }
}
