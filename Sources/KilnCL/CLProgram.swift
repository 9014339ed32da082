import COpenCL
import Foundation

/// A built OpenCL program and the kernels made from it.
public final class CLProgram: @unchecked Sendable {
    /// Where a program's executable came from.
    public enum Origin: String, Sendable { case compiled, diskCache }

    let program: cl_program
    public let name: String
    public let origin: Origin
    /// Seconds spent creating and building the program (from source or from a cached binary).
    public let buildSeconds: Double
    private let kernels = Locked<[String: CLKernel]>([:])

    init(program: cl_program, name: String, origin: Origin, buildSeconds: Double) {
        self.program = program
        self.name = name
        self.origin = origin
        self.buildSeconds = buildSeconds
    }

    deinit {
        kernels.withLock { $0.removeAll() }
        clReleaseProgram(program)
    }

    /// The kernel named `name`, created once and reused.
    public func kernel(_ name: String) throws -> CLKernel {
        try kernels.withLock { kernels in
            if let kernel = kernels[name] { return kernel }
            var status: cl_int = CL_SUCCESS
            let handle = clCreateKernel(program, name, &status)
            try check(status, "clCreateKernel(\(self.name): \(name))")
            guard let handle else { throw CLError(code: CL_INVALID_KERNEL_NAME, call: "clCreateKernel(\(self.name): \(name))") }
            let kernel = CLKernel(handle: handle, name: name, program: self)
            kernels[name] = kernel
            return kernel
        }
    }
}

/// A kernel. `clSetKernelArg` is not thread-safe, so binding arguments and enqueueing happen under the
/// kernel's own lock.
public final class CLKernel: @unchecked Sendable {
    private let handle: cl_kernel
    private let lock = Locked(())
    public let name: String
    // Keeps the program alive as long as the kernel.
    private let program: CLProgram

    init(handle: cl_kernel, name: String, program: CLProgram) {
        self.handle = handle
        self.name = name
        self.program = program
    }

    deinit { clReleaseKernel(handle) }

    func withExclusiveAccess<R>(_ body: (cl_kernel) throws -> R) throws -> R {
        try lock.withLock { _ in try body(handle) }
    }

    /// The number of parameters the compiled kernel takes (CL_KERNEL_NUM_ARGS).
    public func argumentCount() throws -> Int {
        var count: cl_uint = 0
        try check(clGetKernelInfo(handle, cl_kernel_info(CL_KERNEL_NUM_ARGS), MemoryLayout<cl_uint>.size, &count, nil),
                  "clGetKernelInfo(\(name), CL_KERNEL_NUM_ARGS)")
        return Int(count)
    }

    /// The type of parameter `index` as the compiler spells it (CL_KERNEL_ARG_TYPE_NAME, e.g. "float*");
    /// the program must have been built with `-cl-kernel-arg-info`.
    public func argumentTypeName(at index: Int) throws -> String {
        let call = "clGetKernelArgInfo(\(name), \(index), CL_KERNEL_ARG_TYPE_NAME)"
        var size = 0
        try check(clGetKernelArgInfo(handle, cl_uint(index), cl_kernel_arg_info(CL_KERNEL_ARG_TYPE_NAME), 0, nil, &size), call)
        var bytes = [CChar](repeating: 0, count: Swift.max(size, 1))
        try check(clGetKernelArgInfo(handle, cl_uint(index), cl_kernel_arg_info(CL_KERNEL_ARG_TYPE_NAME), bytes.count, &bytes, nil), call)
        return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// One program build, as the program cache reports it to `CLContext.buildObserver`.
public struct CLBuildReport: Sendable {
    public var name: String
    public var options: String
    public var origin: CLProgram.Origin
    public var seconds: Double
}

/// The in-memory program cache of a context, backed by an optional on-disk binary cache. Different programs
/// build concurrently (the compiler runs on the calling thread); two threads asking for the same one build
/// it once.
final class CLProgramCache: @unchecked Sendable {
    private let diskCache: CLBinaryCache?
    /// Whether a program compiled from source is stored on disk. Off where the driver keeps its own cache
    /// (POCL), because asking POCL for a binary makes it generate code for every kernel of the program,
    /// which costs several times the build itself.
    let storesNewBinaries: Bool
    private let entries = Locked<[String: Entry]>([:])
    let observer = Locked<(@Sendable (CLBuildReport) -> Void)?>(nil)
    private let counts = Locked((compiled: 0, loaded: 0))

    private enum Entry {
        case built(CLProgram)
        case building(PendingBuild)
    }

    /// A build in progress that other threads may wait for.
    private final class PendingBuild: @unchecked Sendable {
        let done = DispatchGroup()
        var result: Result<CLProgram, Error>?
        init() { done.enter() }
    }

    init(diskCache: CLBinaryCache?, storesNewBinaries: Bool) {
        self.diskCache = diskCache
        self.storesNewBinaries = storesNewBinaries
    }

    func releaseAll() { entries.withLock { $0.removeAll() } }

    /// Programs built so far: compiled from source, and loaded from the disk cache.
    var buildCounts: (compiled: Int, loaded: Int) { counts.withLock { $0 } }

    /// The on-disk cache key: a binary is reused only by the same device and driver, for the same source and
    /// build options (a new driver may compile differently, and its binaries may not load in another).
    static func diskKey(device: String, driver: String, sourceHash: UInt64, options: String) -> String {
        "\(device)|\(driver)|\(hex(sourceHash))|\(options)"
    }

    /// Whether the program is built (or being built) already.
    func contains(source: String, options: String) -> Bool {
        entries.withLock { $0[Self.memoryKey(source: source, options: options)] != nil }
    }

    private static func memoryKey(source: String, options: String) -> String { "\(hex(fnv1a64(source))) \(options)" }

    func program(name: String, source: String, options: String, context: CLContext) throws -> CLProgram {
        let memoryKey = Self.memoryKey(source: source, options: options)
        enum Next { case ready(CLProgram), wait(PendingBuild), build(PendingBuild) }
        let next: Next = entries.withLock { entries in
            switch entries[memoryKey] {
            case let .built(program): return .ready(program)
            case let .building(pending): return .wait(pending)
            case nil:
                let pending = PendingBuild()
                entries[memoryKey] = .building(pending)
                return .build(pending)
            }
        }
        switch next {
        case let .ready(program):
            return program
        case let .wait(pending):
            pending.done.wait()
            guard let result = pending.result else { throw CLError(code: CL_INVALID_PROGRAM, call: "clBuildProgram(\(name))") }
            return try result.get()
        case let .build(pending):
            let info = context.device.info
            let diskKey = Self.diskKey(device: info.name, driver: info.driverVersion, sourceHash: fnv1a64(source), options: options)
            let result = Result { try build(name: name, source: source, options: options, diskKey: diskKey, context: context) }
            entries.withLock { entries in
                // A failed build is forgotten, so that a later call reports its error again.
                if case let .success(program) = result { entries[memoryKey] = .built(program) } else { entries[memoryKey] = nil }
            }
            pending.result = result
            pending.done.leave()
            let program = try result.get()
            counts.withLock { program.origin == .compiled ? ($0.compiled += 1) : ($0.loaded += 1) }
            observer.withLock { $0 }?(CLBuildReport(name: name, options: options, origin: program.origin, seconds: program.buildSeconds))
            return program
        }
    }

    private func build(name: String, source: String, options: String, diskKey: String, context: CLContext) throws -> CLProgram {
        let start = ContinuousClock.now
        if let diskCache, let binary = diskCache.load(key: diskKey) {
            if let program = try? buildFromBinary(binary, options: options, context: context) {
                return CLProgram(program: program, name: name, origin: .diskCache, buildSeconds: seconds(since: start))
            }
            diskCache.warn("the program cache entry \(diskCache.fileURL(key: diskKey).path) for \(name) was refused by the driver; compiling it again")
        }
        let program = try buildFromSource(name: name, source: source, options: options, context: context)
        if let diskCache, storesNewBinaries, let binary = try? programBinary(program) {
            diskCache.store(key: diskKey, binary: binary)
        }
        return CLProgram(program: program, name: name, origin: .compiled, buildSeconds: seconds(since: start))
    }

    private func buildFromSource(name: String, source: String, options: String, context: CLContext) throws -> cl_program {
        var status: cl_int = CL_SUCCESS
        let program: cl_program? = source.withCString { text in
            var pointer: UnsafePointer<CChar>? = text
            var length = strlen(text)
            return clCreateProgramWithSource(context.context, 1, &pointer, &length, &status)
        }
        try check(status, "clCreateProgramWithSource(\(name))")
        guard let program else { throw CLError(code: CL_INVALID_PROGRAM, call: "clCreateProgramWithSource(\(name))") }
        try compile(program, name: name, options: options, context: context)
        return program
    }

    private func buildFromBinary(_ binary: [UInt8], options: String, context: CLContext) throws -> cl_program? {
        var status: cl_int = CL_SUCCESS
        var binaryStatus: cl_int = CL_SUCCESS
        var deviceID: cl_device_id? = context.device.id
        let program: cl_program? = binary.withUnsafeBufferPointer { bytes in
            var pointer: UnsafePointer<UInt8>? = bytes.baseAddress
            var length = bytes.count
            return clCreateProgramWithBinary(context.context, 1, &deviceID, &length, &pointer, &binaryStatus, &status)
        }
        guard status == CL_SUCCESS, binaryStatus == CL_SUCCESS, let program else { return nil }
        do {
            try compile(program, name: "cached binary", options: options, context: context)
            return program
        } catch {
            return nil  // a stale or foreign binary: the caller compiles from source instead
        }
    }

    private func compile(_ program: cl_program, name: String, options: String, context: CLContext) throws {
        var deviceID: cl_device_id? = context.device.id
        let status = clBuildProgram(program, 1, &deviceID, options, nil, nil)
        guard status == CL_SUCCESS else {
            let log = buildLog(program, device: context.device.id)
            clReleaseProgram(program)
            throw CLError(code: status, call: "clBuildProgram(\(name)\(options.isEmpty ? "" : ", \(options)"))", buildLog: log)
        }
    }

    private func buildLog(_ program: cl_program, device: cl_device_id) -> String {
        var size = 0
        guard clGetProgramBuildInfo(program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), 0, nil, &size) == CL_SUCCESS,
              size > 0 else { return "" }
        var bytes = [CChar](repeating: 0, count: size + 1)
        guard clGetProgramBuildInfo(program, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), size, &bytes, nil) == CL_SUCCESS
        else { return "" }
        return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func programBinary(_ program: cl_program) throws -> [UInt8] {
        var size = 0
        try check(clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARY_SIZES), MemoryLayout<Int>.size, &size, nil),
                  "clGetProgramInfo(CL_PROGRAM_BINARY_SIZES)")
        guard size > 0 else { return [] }
        var binary = [UInt8](repeating: 0, count: size)
        try binary.withUnsafeMutableBufferPointer { bytes in
            var pointer: UnsafeMutablePointer<UInt8>? = bytes.baseAddress
            try check(clGetProgramInfo(program, cl_program_info(CL_PROGRAM_BINARIES), MemoryLayout<UnsafeMutablePointer<UInt8>>.size, &pointer, nil),
                      "clGetProgramInfo(CL_PROGRAM_BINARIES)")
        }
        return binary
    }

    private func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }
}

/// Program binaries on disk, keyed by device name, driver version, source hash and build options, so a
/// second process skips the compiler. Safe to share between processes and machines: files are written
/// atomically (a temporary file renamed into place), a damaged or truncated one is reported in one line and
/// rebuilt, and a folder that cannot be written leaves the cache in memory only, also said once.
public final class CLBinaryCache: Sendable {
    public let directory: URL
    private let warning: @Sendable (String) -> Void
    private let warnedUnwritable = Locked(false)

    /// `warning` receives each one-line warning (default: standard error, prefixed "kiln: ").
    public init(directory: URL, warning: @escaping @Sendable (String) -> Void = CLBinaryCache.printWarning) {
        self.directory = directory
        self.warning = warning
    }

    public static let printWarning: @Sendable (String) -> Void = { message in
        FileHandle.standardError.write(Data("kiln: \(message)\n".utf8))
    }

    /// The folder of Kiln's caches: `$KILN_CACHE_DIR`, or `~/.cache/kiln`.
    public static let standardDirectory: URL = {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["KILN_CACHE_DIR"], !path.isEmpty { return URL(fileURLWithPath: path) }
        let home = environment["HOME"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
        return home.appending(path: ".cache/kiln")
    }()

    /// The process's cache, in `standardDirectory`.
    public static let standard: CLBinaryCache? = CLBinaryCache(directory: standardDirectory)

    private static let magic = "kiln-program-binary 2\n"

    func fileURL(key: String) -> URL { directory.appending(path: "\(hex(fnv1a64(key))).bin") }

    func warn(_ message: String) { warning(message) }

    /// The binary stored for `key`; nil when there is none, or when the entry is damaged (said in a warning).
    func load(key: String) -> [UInt8]? {
        let url = fileURL(key: key)
        guard let data = try? Data(contentsOf: url) else { return nil }
        // The header repeats the whole key, so a hash collision reads as a miss, not a wrong program; the
        // checksum keeps a truncated or damaged binary away from the driver (POCL crashes on one).
        let header = Array((Self.magic + key + "\n").utf8)
        guard data.starts(with: Array(Self.magic.utf8)) else { damaged(url, "is not a Kiln program binary"); return nil }
        guard data.count >= header.count else {
            if header.starts(with: data) { damaged(url, "is truncated") }
            return nil
        }
        guard data.prefix(header.count).elementsEqual(header) else { return nil }  // another key with the same hash
        guard data.count > header.count + 17 else { damaged(url, "is truncated"); return nil }
        let checksum = String(decoding: data[header.count..<(header.count + 16)], as: UTF8.self)
        let binary = Array(data.dropFirst(header.count + 17))
        guard checksum == hex(fnv1a64(binary)) else { damaged(url, "fails its checksum (truncated or damaged)"); return nil }
        return binary
    }

    private func damaged(_ url: URL, _ reason: String) {
        warn("the program cache entry \(url.path) \(reason); compiling it again")
    }

    func store(key: String, binary: [UInt8]) {
        guard !binary.isEmpty else { return }
        var data = Data((Self.magic + key + "\n" + hex(fnv1a64(binary)) + "\n").utf8)
        data.append(contentsOf: binary)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try data.write(to: fileURL(key: key), options: .atomic)
        } catch {
            // A read-only or full disk costs only the next process a compile.
            let first = warnedUnwritable.withLock { warned in defer { warned = true }; return !warned }
            if first {
                warn("cannot write the program cache in \(directory.path) (\(describe(error))); compiled programs are kept in memory only")
            }
        }
    }

    private func describe(_ error: Error) -> String {
        let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
        if let underlying, underlying.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(underlying.code))).lowercased() }
        return (error as NSError).localizedDescription
    }
}

/// FNV-1a, 64-bit: a fast, stable hash for cache keys (not for security).
/// The 64-bit FNV-1a hash: stable across processes and machines (Swift's `Hasher` is seeded per process).
public func fnv1a64(_ text: String) -> UInt64 { fnv1a64(text.utf8) }

public func fnv1a64<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> UInt64 {
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash = hash &* 0x0000_0100_0000_01b3
    }
    return hash
}

func hex(_ value: UInt64) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 16 - digits.count) + digits
}
