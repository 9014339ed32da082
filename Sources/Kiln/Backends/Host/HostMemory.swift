import KilnCL
import Dispatch

/// Host memory for a tensor: a 64-byte aligned block from the host memory cache.
final class HostStorage: TensorStorage, @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>

    init(count: Int, backend: HostBackend) {
        pointer = HostMemoryCache.shared.take(count: count)
        super.init(count: count, backend: backend)
    }

    deinit { HostMemoryCache.shared.give(pointer, count: count) }
}

extension Tensor {
    /// The tensor's elements in host memory (host backend only).
    var hostBuffer: UnsafeMutableBufferPointer<Float> {
        guard let host = storage as? HostStorage else { preconditionFailure("\(self) is not on the host") }
        return UnsafeMutableBufferPointer(start: host.pointer + offset, count: count)
    }
}

/// Keeps freed host blocks for reuse by size. A training step allocates the same sizes every step, and
/// large blocks straight from malloc are fresh mmaps whose every page faults on first touch; reusing them
/// makes the steady state allocation-free, like the device's caching allocator.
final class HostMemoryCache: Sendable {
    static let shared = HostMemoryCache()
    /// Most bytes kept for reuse; blocks beyond it go back to the system.
    static let limitBytes = 1 << 30

    private struct State {
        var free: [Int: [UInt]] = [:]  // addresses of free blocks by size in bytes
        var cachedBytes = 0
    }
    private let state = Locked(State())

    func take(count: Int) -> UnsafeMutablePointer<Float> {
        let bytes = Self.bytes(count)
        let reused = state.withLock { state -> UInt? in
            guard let address = state.free[bytes]?.popLast() else { return nil }
            state.cachedBytes -= bytes
            return address
        }
        let block = reused.flatMap(UnsafeMutableRawPointer.init(bitPattern:))
            ?? UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        return block.bindMemory(to: Float.self, capacity: bytes / 4)
    }

    func give(_ pointer: UnsafeMutablePointer<Float>, count: Int) {
        let bytes = Self.bytes(count)
        let kept = state.withLock { state -> Bool in
            guard state.cachedBytes + bytes <= Self.limitBytes else { return false }
            state.free[bytes, default: []].append(UInt(bitPattern: pointer))
            state.cachedBytes += bytes
            return true
        }
        if !kept { UnsafeMutableRawPointer(pointer).deallocate() }
    }

    /// Whole 64-byte lines, at least one.
    private static func bytes(_ count: Int) -> Int { Swift.max(1, (count * 4 + 63) / 64) * 64 }
}

extension HostBackend {
    /// Splits 0..<count into contiguous ranges, at most one per thread and none smaller than `grain`
    /// (so small ops stay on the calling thread), and runs `body` on them in parallel.
    func parallelRanges(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        let parts = Swift.min(threads, Swift.max(1, count / Swift.max(grain, 1)))
        guard parts > 1 else {
            if count > 0 { body(0..<count) }
            return
        }
        withoutActuallyEscaping(body) { body in
            let task = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                task.value((count * part / parts)..<(count * (part + 1) / parts))
            }
        }
    }
}

/// A value handed to the threads of one parallel op. The op's parts touch disjoint memory (or lock), which
/// the compiler cannot see.
private struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
