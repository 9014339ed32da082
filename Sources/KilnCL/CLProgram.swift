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

/// The in-memory program cache of a context, backed by an optional on-disk binary cache.
final class CLProgramCache: @unchecked Sendable {
    private let diskCache: CLBinaryCache?
    // One lock for lookups and builds: two threads asking for the same program build it once.
    private let programs = Locked<[String: CLProgram]>([:])

    init(diskCache: CLBinaryCache?) { self.diskCache = diskCache }

    func releaseAll() { programs.withLock { $0.removeAll() } }

    /// The on-disk cache key: a binary is reused only by the same device and driver, for the same source and
    /// build options (a new driver may compile differently, and its binaries may not load in another).
    static func diskKey(device: String, driver: String, sourceHash: UInt64, options: String) -> String {
        "\(device)|\(driver)|\(hex(sourceHash))|\(options)"
    }

    func program(name: String, source: String, options: String, context: CLContext) throws -> CLProgram {
        let sourceHash = fnv1a64(source)
        let memoryKey = "\(hex(sourceHash)) \(options)"
        return try programs.withLock { programs in
            if let program = programs[memoryKey] { return program }
            let info = context.device.info
            let diskKey = Self.diskKey(device: info.name, driver: info.driverVersion, sourceHash: sourceHash, options: options)
            let program = try build(name: name, source: source, options: options, diskKey: diskKey, context: context)
            programs[memoryKey] = program
            return program
        }
    }

    private func build(name: String, source: String, options: String, diskKey: String, context: CLContext) throws -> CLProgram {
        let start = ContinuousClock.now
        if let binary = diskCache?.load(key: diskKey),
           let program = try? buildFromBinary(binary, options: options, context: context) {
            return CLProgram(program: program, name: name, origin: .diskCache, buildSeconds: seconds(since: start))
        }
        let program = try buildFromSource(name: name, source: source, options: options, context: context)
        if let diskCache, let binary = try? programBinary(program) {
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
/// second process skips the compiler. Files are written atomically; a damaged one is ignored and rebuilt.
public struct CLBinaryCache: Sendable {
    public let directory: URL

    public init(directory: URL) { self.directory = directory }

    /// `$KILN_CACHE_DIR`, or `~/.cache/kiln`.
    public static let standard: CLBinaryCache? = {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["KILN_CACHE_DIR"], !path.isEmpty {
            return CLBinaryCache(directory: URL(fileURLWithPath: path))
        }
        let home = environment["HOME"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
        return CLBinaryCache(directory: home.appending(path: ".cache/kiln"))
    }()

    private static let magic = "kiln-program-binary 2\n"

    func fileURL(key: String) -> URL { directory.appending(path: "\(hex(fnv1a64(key))).bin") }

    func load(key: String) -> [UInt8]? {
        guard let data = try? Data(contentsOf: fileURL(key: key)) else { return nil }
        // The header repeats the whole key, so a hash collision reads as a miss, not a wrong program; the
        // checksum keeps a truncated or damaged binary away from the driver (POCL crashes on one).
        let header = Array((Self.magic + key + "\n").utf8)
        guard data.count > header.count + 17, data.prefix(header.count).elementsEqual(header) else { return nil }
        let checksum = String(decoding: data[header.count..<(header.count + 16)], as: UTF8.self)
        let binary = Array(data.dropFirst(header.count + 17))
        guard checksum == hex(fnv1a64(binary)) else { return nil }
        return binary
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
        }
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
