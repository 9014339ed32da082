import Foundation
import KilnCL

/// Standard output written by a thread of its own, for the lines a training loop prints while it runs
/// (progress, epoch summaries). A reader that stops reading — mpirun once it is interrupted, a terminal
/// paused with Ctrl-S — then blocks that thread, never a training step: the step that should write the
/// checkpoint after a stop request still does.
///
/// Text written here reaches the file descriptor in order, after whatever `print` buffered before it.
/// Call `drain()` before printing with `print` again, so that the two keep their order.
public final class ConsoleOutput: @unchecked Sendable {
    public static let standard = ConsoleOutput(fileDescriptor: STDOUT_FILENO)

    /// The text a reader that is not reading may hold back: beyond it, lines are dropped (and counted) rather
    /// than kept without bound.
    static let pendingLimit = 1 << 20

    private let fileDescriptor: Int32
    private let condition = NSCondition()
    private var pending: [UInt8] = []
    private var droppedBytes = 0
    private var writing = false
    private var writerStarted = false

    init(fileDescriptor: Int32) {
        self.fileDescriptor = fileDescriptor
    }

    /// Queues `text` and returns at once.
    public func write(_ text: String) {
        // Whatever print() buffered goes first. While a loop writes here only, nothing is buffered and this
        // makes no system call.
        fflush(nil)
        condition.lock()
        defer { condition.unlock() }
        let size = text.utf8.count
        if pending.count + size > Self.pendingLimit {
            droppedBytes += size
            return
        }
        pending.append(contentsOf: text.utf8)
        if !writerStarted {
            writerStarted = true
            let thread = Thread { [self] in writeForever() }
            thread.name = "kiln console output"
            thread.start()
        }
        condition.broadcast()
    }

    /// Waits until everything queued so far has been written, or at most `limit`; says whether it was.
    @discardableResult
    public func drain(within limit: Duration? = nil) -> Bool {
        // Not Date.distantFuture for no limit: Foundation on Linux traps converting it to a timespec.
        let deadline = limit.map { Date(timeIntervalSinceNow: seconds($0)) }
        condition.lock()
        defer { condition.unlock() }
        while !pending.isEmpty || writing {
            if let deadline {
                if !condition.wait(until: deadline) { return false }
            } else {
                condition.wait()
            }
        }
        return true
    }

    private func writeForever() {
        while true {
            condition.lock()
            while pending.isEmpty { condition.wait() }
            var chunk = pending
            pending.removeAll(keepingCapacity: true)
            if droppedBytes > 0 {
                chunk += Array("\n[\(droppedBytes) bytes of output dropped: the reader had stopped reading]\n".utf8)
                droppedBytes = 0
            }
            writing = true
            condition.unlock()
            writeAll(chunk)
            condition.lock()
            writing = false
            condition.broadcast()
            condition.unlock()
        }
    }

    private func writeAll(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            guard let start = buffer.baseAddress else { return }
            var offset = 0
            while offset < buffer.count {
                let written = Foundation.write(fileDescriptor, start + offset, buffer.count - offset)
                if written > 0 {
                    offset += written
                } else if written < 0, errno == EINTR {
                    continue
                } else {
                    return  // a closed or failing output: the text has nowhere to go
                }
            }
        }
    }
}
