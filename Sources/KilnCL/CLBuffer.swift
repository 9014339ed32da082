import COpenCL

/// A device buffer leased from a `CLBufferAllocator`. When the last reference goes away the memory returns
/// to the allocator's cache for reuse; it is released to the driver only when the cache is trimmed.
///
/// Reuse is safe without waiting: every command of a device goes through one in-order queue, so a later
/// user of the memory is always enqueued after the commands of the previous one.
public final class CLBuffer: @unchecked Sendable {
    public let mem: cl_mem
    /// Bytes requested by the caller.
    public let byteCount: Int
    /// Bytes actually allocated (the size class).
    public let capacity: Int
    private let allocator: CLBufferAllocator

    init(mem: cl_mem, byteCount: Int, capacity: Int, allocator: CLBufferAllocator) {
        self.mem = mem
        self.byteCount = byteCount
        self.capacity = capacity
        self.allocator = allocator
    }

    deinit { allocator.recycle(mem, capacity: capacity) }
}

/// Counters of a `CLBufferAllocator`.
public struct CLAllocatorStatistics: Sendable, Equatable {
    /// Bytes held by live buffers (rounded up to their size class).
    public var bytesInUse = 0
    /// Bytes of freed buffers kept for reuse.
    public var bytesCached = 0
    /// Buffers created with `clCreateBuffer`.
    public var driverAllocations = 0
    /// Requests served from the cache.
    public var cacheHits = 0
}

/// A caching allocator: freed buffers are kept per size class and handed out again, so a training step
/// allocates nothing from the driver after the first one.
public final class CLBufferAllocator: @unchecked Sendable {
    // cl_mem is a plain handle the driver lets any thread use.
    private struct FreeBuffer: @unchecked Sendable { let mem: cl_mem }
    private struct State {
        var free: [Int: [FreeBuffer]] = [:]
        var statistics = CLAllocatorStatistics()
    }
    private let context: cl_context
    private let state = Locked(State())

    init(context: cl_context) { self.context = context }

    deinit { trim() }

    public var statistics: CLAllocatorStatistics { state.withLock { $0.statistics } }

    /// A buffer of at least `byteCount` bytes.
    public func allocate(byteCount: Int) throws -> CLBuffer {
        precondition(byteCount >= 0, "negative buffer size")
        let capacity = Self.sizeClass(of: max(byteCount, 1))
        let cached: cl_mem? = state.withLock { state in
            state.statistics.bytesInUse += capacity
            guard let buffer = state.free[capacity]?.popLast() else { return nil }
            state.statistics.bytesCached -= capacity
            state.statistics.cacheHits += 1
            return buffer.mem
        }
        if let cached { return CLBuffer(mem: cached, byteCount: byteCount, capacity: capacity, allocator: self) }
        do {
            let mem = try createBuffer(capacity)
            return CLBuffer(mem: mem, byteCount: byteCount, capacity: capacity, allocator: self)
        } catch let error as CLError where error.code == CL_MEM_OBJECT_ALLOCATION_FAILURE || error.code == CL_OUT_OF_RESOURCES {
            // The cache may hold the memory we need: give it back to the driver and try once more.
            trim()
            do {
                return CLBuffer(mem: try createBuffer(capacity), byteCount: byteCount, capacity: capacity, allocator: self)
            } catch {
                state.withLock { $0.statistics.bytesInUse -= capacity }
                throw error
            }
        } catch {
            state.withLock { $0.statistics.bytesInUse -= capacity }
            throw error
        }
    }

    /// Releases every cached buffer to the driver.
    public func trim() {
        let released: [cl_mem] = state.withLock { state in
            let all = state.free.values.flatMap { $0.map(\.mem) }
            state.free.removeAll()
            state.statistics.bytesCached = 0
            return all
        }
        for mem in released { clReleaseMemObject(mem) }
    }

    func recycle(_ mem: cl_mem, capacity: Int) {
        state.withLock { state in
            state.free[capacity, default: []].append(FreeBuffer(mem: mem))
            state.statistics.bytesInUse -= capacity
            state.statistics.bytesCached += capacity
        }
    }

    private func createBuffer(_ capacity: Int) throws -> cl_mem {
        var status: cl_int = CL_SUCCESS
        let mem = clCreateBuffer(context, cl_mem_flags(CL_MEM_READ_WRITE), capacity, nil, &status)
        try check(status, "clCreateBuffer(\(capacity) bytes)")
        guard let mem else { throw CLError(code: CL_MEM_OBJECT_ALLOCATION_FAILURE, call: "clCreateBuffer(\(capacity) bytes)") }
        state.withLock { $0.statistics.driverAllocations += 1 }
        return mem
    }

    /// Size classes: four per power of two (x1, x1.25, x1.5, x1.75), so at most 25% is wasted, and at
    /// least 256 bytes, so that tiny buffers share one class.
    static func sizeClass(of bytes: Int) -> Int {
        if bytes <= 256 { return 256 }
        let high = Int.bitWidth - 1 - (bytes - 1).leadingZeroBitCount  // floor(log2(bytes - 1))
        let quarter = 1 << (high - 2)
        return (bytes + quarter - 1) / quarter * quarter
    }
}
