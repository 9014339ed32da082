import COpenCL
import Foundation

/// The kind of an OpenCL device.
public enum CLDeviceType: String, Sendable {
    case gpu = "GPU", cpu = "CPU", accelerator = "accelerator", other = "other"
}

/// Properties of an OpenCL device, read once at discovery.
public struct CLDeviceInfo: Sendable {
    public var name: String
    public var vendor: String
    public var type: CLDeviceType
    public var driverVersion: String
    public var deviceVersion: String
    public var openCLCVersion: String
    public var computeUnits: Int
    public var clockMHz: Int
    public var globalMemoryBytes: Int
    public var maxAllocationBytes: Int
    public var localMemoryBytes: Int
    public var maxWorkGroupSize: Int
    /// CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT: floats per vector register on CPU drivers (16 with AVX-512,
    /// 8 with AVX2), 1 on most GPUs, whose lanes are work-items instead.
    public var preferredFloatVectorWidth: Int
    public var extensions: [String]

    /// Whether the device is a simulator (Oclgrind, which reports itself as a GPU): it checks kernels
    /// but runs them thousands of times slower than any real device.
    public var isSimulator: Bool { name.localizedCaseInsensitiveContains("oclgrind") }

    /// The folder where the driver keeps compiled code itself, for the drivers known to (POCL:
    /// `$POCL_CACHE_DIR`, else `$XDG_CACHE_HOME/pocl/kcache` or `~/.cache/pocl/kcache`; NVIDIA's cache of
    /// its final compile step: `$CUDA_CACHE_PATH`, else `~/.nv/ComputeCache`); nil for the others.
    public var driverProgramCache: URL? {
        driverProgramCache(environment: ProcessInfo.processInfo.environment)
    }

    func driverProgramCache(environment: [String: String]) -> URL? {
        let home = environment["HOME"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
        func folder(_ variable: String) -> URL? {
            environment[variable].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
        }
        if isPOCL {
            if environment["POCL_KERNEL_CACHE"] == "0" { return nil }
            return folder("POCL_CACHE_DIR")
                ?? (folder("XDG_CACHE_HOME") ?? home.appending(path: ".cache")).appending(path: "pocl/kcache")
        }
        if vendor.localizedCaseInsensitiveContains("nvidia") {
            return folder("CUDA_CACHE_PATH") ?? home.appending(path: ".nv/ComputeCache")
        }
        return nil
    }

    /// Whether the driver caches whole program builds (source to machine code) on disk: POCL does, so Kiln
    /// does not store a second copy of them.
    public var driverCachesWholeBuilds: Bool { isPOCL && driverProgramCache != nil }

    var isPOCL: Bool { deviceVersion.contains("PoCL") || deviceVersion.contains("pocl") }
}

/// An OpenCL platform (one installed driver) and its devices.
public final class CLPlatform: @unchecked Sendable {
    let id: cl_platform_id
    public let index: Int
    public let name: String
    public let vendor: String
    public let version: String
    public let devices: [CLDevice]

    init(id: cl_platform_id, index: Int) throws {
        self.id = id
        self.index = index
        name = try platformString(id, CL_PLATFORM_NAME)
        vendor = try platformString(id, CL_PLATFORM_VENDOR)
        version = try platformString(id, CL_PLATFORM_VERSION)

        var count: cl_uint = 0
        let status = clGetDeviceIDs(id, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &count)
        if status == CL_DEVICE_NOT_FOUND || count == 0 {
            devices = []
            return
        }
        try check(status, "clGetDeviceIDs(\(name))")
        var ids = [cl_device_id?](repeating: nil, count: Int(count))
        try check(clGetDeviceIDs(id, cl_device_type(CL_DEVICE_TYPE_ALL), count, &ids, nil), "clGetDeviceIDs(\(name))")
        var found: [CLDevice] = []
        for (deviceIndex, deviceID) in ids.enumerated() {
            guard let deviceID else { continue }
            found.append(try CLDevice(id: deviceID, platformIndex: index, deviceIndex: deviceIndex))
        }
        devices = found
    }
}

/// Entry point of the OpenCL runtime: every platform and device of this machine.
public enum CLRuntime {
    // Discovery runs exactly once, however many threads ask first: POCL's first calls race when several
    // threads make them at the same moment. Swift initialises a static `let` once, under a lock.
    private static let discovery: Result<[CLPlatform], CLError> = {
        do { return .success(try discoverPlatforms()) } catch let error as CLError { return .failure(error) } catch {
            return .failure(CLError(code: CL_INVALID_VALUE, call: "discovery: \(error)"))
        }
    }()

    /// Every OpenCL platform, in the ICD loader's order. Empty when no driver is installed.
    public static func platforms() throws -> [CLPlatform] { try discovery.get() }

    /// Every device of every platform.
    public static func devices() throws -> [CLDevice] { try platforms().flatMap(\.devices) }

    /// The device at `platform:device` indices, or nil if there is none.
    public static func device(platform: Int, device: Int) throws -> CLDevice? {
        let platforms = try platforms()
        guard platforms.indices.contains(platform), platforms[platform].devices.indices.contains(device) else { return nil }
        return platforms[platform].devices[device]
    }

    /// The device `--device auto` picks: the first GPU, else the first other non-CPU device, else the first
    /// device of any kind, leaving out simulators; nil when there is no such OpenCL device.
    public static func preferredDevice() throws -> CLDevice? {
        let all = try devices()
        let real = all.filter { !$0.info.isSimulator }
        return real.first { $0.info.type == .gpu }
            ?? real.first { $0.info.type != .cpu }
            ?? real.first
    }

    private static func discoverPlatforms() throws -> [CLPlatform] {
        var count: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &count)
        // The ICD loader answers CL_PLATFORM_NOT_FOUND_KHR when no driver is installed: that is no platform.
        if status == -1001 || count == 0 { return [] }
        try check(status, "clGetPlatformIDs")
        var ids = [cl_platform_id?](repeating: nil, count: Int(count))
        try check(clGetPlatformIDs(count, &ids, nil), "clGetPlatformIDs")
        return try ids.enumerated().compactMap { index, id in
            guard let id else { return nil }
            return try CLPlatform(id: id, index: index)
        }
    }
}

// MARK: - Info queries

func platformString(_ id: cl_platform_id, _ param: Int32) throws -> String {
    var size = 0
    try check(clGetPlatformInfo(id, cl_platform_info(param), 0, nil, &size), "clGetPlatformInfo")
    var bytes = [CChar](repeating: 0, count: size + 1)
    try check(clGetPlatformInfo(id, cl_platform_info(param), size, &bytes, nil), "clGetPlatformInfo")
    return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        .trimmingSpaces()
}

func deviceString(_ id: cl_device_id, _ param: Int32) throws -> String {
    var size = 0
    try check(clGetDeviceInfo(id, cl_device_info(param), 0, nil, &size), "clGetDeviceInfo")
    var bytes = [CChar](repeating: 0, count: size + 1)
    try check(clGetDeviceInfo(id, cl_device_info(param), size, &bytes, nil), "clGetDeviceInfo")
    return String(decoding: bytes.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        .trimmingSpaces()
}

func deviceValue<T: FixedWidthInteger>(_ id: cl_device_id, _ param: Int32, as: T.Type) throws -> T {
    var value: T = 0
    try check(clGetDeviceInfo(id, cl_device_info(param), MemoryLayout<T>.size, &value, nil), "clGetDeviceInfo")
    return value
}

extension String {
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while scalars.first == " " { scalars.removeFirst() }
        while scalars.last == " " { scalars.removeLast() }
        return String(scalars)
    }
}
