import COpenCL
import Synchronization

/// An OpenCL context on one device with its in-order command queue, caching buffer allocator and program
/// cache. Every method may be called from any thread.
public final class CLContext: @unchecked Sendable {
    public let device: CLDevice
    let context: cl_context
    let queue: cl_command_queue
    public let allocator: CLBufferAllocator
    let programs: CLProgramCache
    /// Counts enqueued kernels and, while recording, times each one.
    public let profiler = CLProfiler()
    /// The plan being recorded (CLWorkPlan.swift): while set, launches and CLBlast calls are skipped.
    let planning = Locked<CLWorkPlan?>(nil)
    let planningActive = Atomic<Bool>(false)
    /// CLBlast products `prepare` has computed once.
    let clblastPrepared = Locked<Set<CLWorkPlan.Product>>([])

    /// Creates a new context. Most callers want the device's shared one: `device.context()`.
    /// `storesNewBinaries` says whether compiled programs go into `diskCache`; by default they do unless
    /// the driver caches whole builds itself (`CLDeviceInfo.driverCachesWholeBuilds`).
    public init(device: CLDevice, diskCache: CLBinaryCache? = .standard, storesNewBinaries: Bool? = nil) throws {
        self.device = device
        var status: cl_int = CL_SUCCESS
        var deviceID: cl_device_id? = device.id
        let context = clCreateContext(nil, 1, &deviceID, nil, nil, &status)
        try check(status, "clCreateContext(\(device.info.name))")
        guard let context else { throw CLError(code: CL_INVALID_CONTEXT, call: "clCreateContext(\(device.info.name))") }
        let queue = clCreateCommandQueue(context, device.id, cl_command_queue_properties(CL_QUEUE_PROFILING_ENABLE), &status)
        guard status == CL_SUCCESS, let queue else {
            clReleaseContext(context)
            throw CLError(code: status, call: "clCreateCommandQueue(\(device.info.name))")
        }
        self.context = context
        self.queue = queue
        allocator = CLBufferAllocator(context: context)
        programs = CLProgramCache(diskCache: diskCache, storesNewBinaries: storesNewBinaries ?? !device.info.driverCachesWholeBuilds)
        self.diskCache = diskCache
    }

    /// The on-disk binary cache programs are looked up in (nil: memory only).
    public let diskCache: CLBinaryCache?

    deinit {
        clFinish(queue)
        allocator.trim()
        programs.releaseAll()
        clReleaseCommandQueue(queue)
        clReleaseContext(context)
    }

    // MARK: Buffers and copies

    /// A buffer for `count` values of type `T`, from the caching allocator.
    public func buffer<T>(count: Int, of type: T.Type = Float.self) throws -> CLBuffer {
        try allocator.allocate(byteCount: count * MemoryLayout<T>.stride)
    }

    /// Copies host memory into `buffer` at `offset` bytes. Returns when the host memory may be reused.
    public func write(_ buffer: CLBuffer, offset: Int = 0, from source: UnsafeRawBufferPointer) throws {
        guard source.count > 0 else { return }
        try checkRange(buffer, offset, source.count, "clEnqueueWriteBuffer")
        try check(clEnqueueWriteBuffer(queue, buffer.mem, cl_bool(CL_TRUE), offset, source.count, source.baseAddress, 0, nil, nil),
                  "clEnqueueWriteBuffer(\(source.count) bytes)")
    }

    /// Copies from `buffer` at `offset` bytes into host memory, waiting for every command before it.
    public func read(_ buffer: CLBuffer, offset: Int = 0, into destination: UnsafeMutableRawBufferPointer) throws {
        guard destination.count > 0 else { return }
        try checkRange(buffer, offset, destination.count, "clEnqueueReadBuffer")
        try check(clEnqueueReadBuffer(queue, buffer.mem, cl_bool(CL_TRUE), offset, destination.count, destination.baseAddress, 0, nil, nil),
                  "clEnqueueReadBuffer(\(destination.count) bytes)")
    }

    /// Starts copying from `buffer` at `offset` bytes into host memory after every command before it, and
    /// returns at once; `destination` must stay valid until the returned event completes (nil: nothing to copy).
    public func startRead(_ buffer: CLBuffer, offset: Int = 0, into destination: UnsafeMutableRawBufferPointer) throws -> CLEvent? {
        guard destination.count > 0 else { return nil }
        try checkRange(buffer, offset, destination.count, "clEnqueueReadBuffer")
        var event: cl_event?
        try check(clEnqueueReadBuffer(queue, buffer.mem, cl_bool(CL_FALSE), offset, destination.count, destination.baseAddress, 0, nil, &event),
                  "clEnqueueReadBuffer(\(destination.count) bytes)")
        guard let event else { throw CLError(code: CL_INVALID_EVENT, call: "clEnqueueReadBuffer returned no event") }
        // Without a flush an OpenCL implementation may hold the read back until the host waits.
        try check(clFlush(queue), "clFlush")
        return CLEvent(event)
    }

    /// Copies `byteCount` bytes between device buffers (enqueued; does not wait). Skipped while a plan is
    /// recorded, like launches: a copy of a planned result would spread its undefined values into state
    /// that outlives the plan (a parameter assigned in place).
    public func copy(from source: CLBuffer, offset sourceOffset: Int = 0, to destination: CLBuffer, offset destinationOffset: Int = 0, byteCount: Int) throws {
        guard byteCount > 0, !isPlanning else { return }
        try checkRange(source, sourceOffset, byteCount, "clEnqueueCopyBuffer")
        try checkRange(destination, destinationOffset, byteCount, "clEnqueueCopyBuffer")
        try check(clEnqueueCopyBuffer(queue, source.mem, destination.mem, sourceOffset, destinationOffset, byteCount, 0, nil, nil),
                  "clEnqueueCopyBuffer(\(byteCount) bytes)")
    }

    /// Waits until every enqueued command has finished.
    public func finish() throws {
        try check(clFinish(queue), "clFinish")
    }

    private func checkRange(_ buffer: CLBuffer, _ offset: Int, _ count: Int, _ call: String) throws {
        if offset < 0 || offset + count > buffer.capacity {
            throw CLError(code: CL_INVALID_VALUE, call: "\(call): bytes \(offset)..<\(offset + count) outside a buffer of \(buffer.capacity)")
        }
    }

    // MARK: Programs and kernels

    /// The program built from `source` with `options` (e.g. "-DTILE=16"), from the in-memory cache, the
    /// on-disk binary cache, or compiled now. `name` only labels errors and statistics.
    public func program(name: String, source: String, options: String = "") throws -> CLProgram {
        try programs.program(name: name, source: source, options: options, context: self)
    }

    /// Whether the program of `source` and `options` has been built in this context (or is being built).
    public func hasProgram(source: String, options: String = "") -> Bool {
        programs.contains(source: source, options: options)
    }

    /// Programs built in this context so far: compiled from source, and loaded from the disk cache.
    public var buildCounts: (compiled: Int, loaded: Int) { programs.buildCounts }

    /// Called on the building thread after each program build (not for one found in memory).
    public var buildObserver: (@Sendable (CLBuildReport) -> Void)? {
        get { programs.observer.withLock { $0 } }
        set { programs.observer.withLock { $0 = newValue } }
    }


    /// Enqueues `kernel` over `global` work items (rounded up to a multiple of `local` when given).
    /// Returns an event with profiling information when `profile` is true.
    @discardableResult
    public func launch(_ kernel: CLKernel, global: [Int], local: [Int]? = nil,
                       arguments: [CLKernelArgument], profile: Bool = false) throws -> CLEvent? {
        precondition(!global.isEmpty && global.count <= 3, "1 to 3 dimensions")
        var globalSize = global
        if let local {
            precondition(local.count == global.count, "local and global dimensions differ")
            for i in global.indices { globalSize[i] = (global[i] + local[i] - 1) / local[i] * local[i] }
        }
        if globalSize.contains(0) || isPlanning { return nil }
        var event: cl_event? = nil
        let wantsEvent = profile || profiler.isRecording
        try kernel.withExclusiveAccess { handle in
            for (index, argument) in arguments.enumerated() {
                try argument.bind(to: handle, at: cl_uint(index), kernelName: kernel.name)
            }
            let status: cl_int = withUnsafeMutablePointer(to: &event) { eventPointer in
                let eventOut = wantsEvent ? eventPointer : nil
                if let local {
                    return clEnqueueNDRangeKernel(queue, handle, cl_uint(global.count), nil, globalSize, local, 0, nil, eventOut)
                }
                return clEnqueueNDRangeKernel(queue, handle, cl_uint(global.count), nil, globalSize, nil, 0, nil, eventOut)
            }
            try check(status, "clEnqueueNDRangeKernel(\(kernel.name), global \(globalSize), local \(local.map { "\($0)" } ?? "auto"))")
        }
        profiler.countLaunch()
        let completion = event.map(CLEvent.init)
        if let completion, profiler.isRecording { profiler.record(kernel.name, event: completion) }
        return completion
    }

    /// Runs `body`, which enqueues one library call (CLBlast) on the raw queue and may ask for the event of
    /// its last command; while the profiler records, the call is timed from a marker enqueued before it.
    func enqueueLibraryCall<R>(_ name: String, _ body: (inout cl_command_queue?, UnsafeMutablePointer<cl_event?>?) throws -> R) throws -> R {
        profiler.countLaunch()
        var handle: cl_command_queue? = queue
        guard profiler.isRecording else { return try body(&handle, nil) }
        var marker: cl_event? = nil
        try check(clEnqueueMarkerWithWaitList(queue, 0, nil, &marker), "clEnqueueMarkerWithWaitList")
        var event: cl_event? = nil
        let result = try body(&handle, &event)
        if let marker, let event {
            profiler.record(name, event: CLEvent(event), start: CLEvent(marker))
        } else if let marker {
            clReleaseEvent(marker)
        }
        return result
    }

}

/// An argument of a kernel launch.
public enum CLKernelArgument {
    case buffer(CLBuffer)
    case int(Int32)
    case uint(UInt32)
    case float(Float)
    /// `__local` memory of this many bytes.
    case local(bytes: Int)

    func bind(to kernel: cl_kernel, at index: cl_uint, kernelName: String) throws {
        let status: cl_int
        switch self {
        case .buffer(let buffer):
            var mem: cl_mem? = buffer.mem
            status = clSetKernelArg(kernel, index, MemoryLayout<cl_mem>.size, &mem)
        case .int(var value):
            status = clSetKernelArg(kernel, index, MemoryLayout<Int32>.size, &value)
        case .uint(var value):
            status = clSetKernelArg(kernel, index, MemoryLayout<UInt32>.size, &value)
        case .float(var value):
            status = clSetKernelArg(kernel, index, MemoryLayout<Float>.size, &value)
        case .local(let bytes):
            status = clSetKernelArg(kernel, index, bytes, nil)
        }
        try check(status, "clSetKernelArg(\(kernelName), argument \(index))")
    }
}

/// A completed or pending command, with its profiling times.
public final class CLEvent: @unchecked Sendable {
    let event: cl_event

    init(_ event: cl_event) { self.event = event }
    deinit { clReleaseEvent(event) }

    /// Waits for the command to finish.
    public func wait() throws {
        var handle: cl_event? = event
        try check(clWaitForEvents(1, &handle), "clWaitForEvents")
    }

    /// Whether the command has finished (without waiting); a failed command raises its error code.
    public func isComplete() throws -> Bool {
        var status: cl_int = 0
        try check(clGetEventInfo(event, cl_event_info(CL_EVENT_COMMAND_EXECUTION_STATUS), MemoryLayout<cl_int>.size, &status, nil),
                  "clGetEventInfo")
        if status < 0 { throw CLError(code: status, call: "clEnqueueReadBuffer (completed with an error)") }
        return status == CL_COMPLETE
    }

    /// Seconds the command spent executing on the device (waits for it first).
    public func executionSeconds() throws -> Double {
        try wait()
        return Double(try time(CL_PROFILING_COMMAND_END) - time(CL_PROFILING_COMMAND_START)) * 1e-9
    }

    /// The device clock when the command ended, in seconds (waits for it first).
    public func endSeconds() throws -> Double {
        try wait()
        return Double(try time(CL_PROFILING_COMMAND_END)) * 1e-9
    }

    /// Seconds from enqueue to the start of execution (waits for it first).
    public func queuedSeconds() throws -> Double {
        try wait()
        return Double(try time(CL_PROFILING_COMMAND_START) - time(CL_PROFILING_COMMAND_QUEUED)) * 1e-9
    }

    private func time(_ param: Int32) throws -> cl_ulong {
        var value: cl_ulong = 0
        try check(clGetEventProfilingInfo(event, cl_profiling_info(param), MemoryLayout<cl_ulong>.size, &value, nil),
                  "clGetEventProfilingInfo")
        return value
    }
}
