import COpenCL
import Synchronization

/// Counts the commands a context enqueues and, while recording, keeps a profiling event for each, so that
/// device time can be attributed to kernels. Counting is always on (one relaxed atomic add per command);
/// recording costs an event per command and is for profiles only.
public final class CLProfiler: @unchecked Sendable {
    /// A finished command's name and device time.
    public struct Timing: Sendable {
        public var name: String
        public var seconds: Double
    }

    private struct Pending {
        var name: String
        var event: CLEvent
        /// For a library call that may enqueue several kernels (CLBlast): a marker enqueued just before
        /// it, whose end is when the queue reached the call.
        var start: CLEvent?
    }

    private let launchCounter = Atomic<Int>(0)
    private let recordingFlag = Atomic<Bool>(false)
    private let pending = Locked<[Pending]>([])

    init() {}

    /// Kernels enqueued so far (Kiln's own launches and each CLBlast call counted once).
    public var launches: Int { launchCounter.load(ordering: .relaxed) }

    /// Whether enqueued commands keep profiling events for `drain()`.
    public var isRecording: Bool {
        get { recordingFlag.load(ordering: .relaxed) }
        set { recordingFlag.store(newValue, ordering: .relaxed) }
    }

    func countLaunch() { launchCounter.add(1, ordering: .relaxed) }

    func record(_ name: String, event: CLEvent, start: CLEvent? = nil) {
        pending.withLock { $0.append(Pending(name: name, event: event, start: start)) }
    }

    /// Waits for every recorded command and returns its time, in enqueue order; the record is emptied.
    public func drain() throws -> [Timing] {
        let commands = pending.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        return try commands.map { command in
            let seconds = try command.start.map { try command.event.endSeconds() - $0.endSeconds() }
                ?? command.event.executionSeconds()
            return Timing(name: command.name, seconds: Swift.max(seconds, 0))
        }
    }
}
