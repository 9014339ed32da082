import Foundation
import XCTest
@testable import KilnCL

/// The first OpenCL device, or a skip when the machine has none (install pocl-opencl-icd to run these).
func firstDevice() throws -> CLDevice {
    guard let device = try CLRuntime.devices().first else {
        throw XCTSkip("no OpenCL device on this machine (install pocl-opencl-icd to run the OpenCL tests)")
    }
    return device
}

func temporaryDirectory(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appending(path: "kiln-\(name)-\(UUID().uuidString)")
}

final class DiscoveryTests: XCTestCase {
    func testDevicesHaveTheirProperties() throws {
        let device = try firstDevice()
        let info = device.info
        XCTAssertFalse(info.name.isEmpty)
        XCTAssertFalse(info.driverVersion.isEmpty)
        XCTAssertTrue(info.openCLCVersion.hasPrefix("OpenCL C"), info.openCLCVersion)
        XCTAssertGreaterThan(info.computeUnits, 0)
        XCTAssertGreaterThan(info.globalMemoryBytes, 0)
        XCTAssertGreaterThan(info.localMemoryBytes, 0)
        XCTAssertGreaterThanOrEqual(info.maxWorkGroupSize, 1)
        XCTAssertEqual(device.identifier, "cl:\(device.platformIndex):\(device.deviceIndex)")
        XCTAssertTrue(try CLRuntime.device(platform: device.platformIndex, device: device.deviceIndex) === device)
        XCTAssertNil(try CLRuntime.device(platform: 99, device: 0))
        XCTAssertNotNil(try CLRuntime.preferredDevice())
    }

    func testTheSharedContextIsCreatedOnce() throws {
        let device = try firstDevice()
        XCTAssertTrue(try device.context() === device.context())
    }
}

final class ErrorNameTests: XCTestCase {
    func testEveryStatusCodeHasItsName() {
        XCTAssertEqual(CLError.name(of: 0), "CL_SUCCESS")
        XCTAssertEqual(CLError.name(of: -5), "CL_OUT_OF_RESOURCES")
        XCTAssertEqual(CLError.name(of: -11), "CL_BUILD_PROGRAM_FAILURE")
        XCTAssertEqual(CLError.name(of: -52), "CL_INVALID_KERNEL_ARGS")
        XCTAssertEqual(CLError.name(of: -1001), "CL_PLATFORM_NOT_FOUND_KHR")
        XCTAssertEqual(CLError.name(of: -1016), "CLBlastInvalidLeadDimA")
        XCTAssertEqual(CLError.name(of: -2046), "CLBlastInvalidLocalMemUsage")
        XCTAssertEqual(CLError.name(of: 12345), "unknown status")
        // No gaps in the core range of OpenCL 1.2.
        for code in Int32(-19)...0 { XCTAssertNotEqual(CLError.name(of: code), "unknown status", "\(code)") }
        for code in Int32(-68)...(-30) { XCTAssertNotEqual(CLError.name(of: code), "unknown status", "\(code)") }
    }
}

final class ProgramTests: XCTestCase {
    private let source = scaleKernelSource

    func testASyntaxErrorRaisesTheBuildLog() throws {
        let context = try firstDevice().context()
        XCTAssertThrowsError(try context.program(name: "broken.cl", source: "__kernel void broken( { oops }")) { error in
            guard let error = error as? CLError else { return XCTFail("\(error) is not a CLError") }
            XCTAssertEqual(error.name, "CL_BUILD_PROGRAM_FAILURE")
            XCTAssertTrue(error.call.contains("broken.cl"), error.call)
            let log = error.buildLog ?? ""
            XCTAssertTrue(log.contains("error"), "the build log should hold the compiler's errors: \(log)")
            XCTAssertTrue(error.description.contains(log))
        }
    }

    func testAKernelRunsWithItsArguments() throws {
        let context = try firstDevice().context()
        let program = try context.program(name: "scale.cl", source: source)
        let values: [Float] = (0..<1000).map(Float.init)
        let buffer = try context.buffer(count: values.count)
        try values.withUnsafeBytes { try context.write(buffer, from: $0) }
        let event = try context.launch(try program.kernel("scale"), global: [values.count], local: [64],
                                       arguments: [.buffer(buffer), .float(2), .uint(UInt32(values.count))], profile: true)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(event).executionSeconds(), 0)
        var result = [Float](repeating: 0, count: values.count)
        try result.withUnsafeMutableBytes { try context.read(buffer, into: $0) }
        XCTAssertEqual(result, values.map { $0 * 2 })
        XCTAssertTrue(try program.kernel("scale") === program.kernel("scale"))
        XCTAssertThrowsError(try program.kernel("missing")) { error in
            XCTAssertEqual((error as? CLError)?.name, "CL_INVALID_KERNEL_NAME")
        }
    }

    func testTheInMemoryCacheReturnsTheSameProgramPerOptions() throws {
        let context = try firstDevice().context()
        let a = try context.program(name: "scale.cl", source: source, options: "-DA=1")
        XCTAssertTrue(try context.program(name: "scale.cl", source: source, options: "-DA=1") === a)
        XCTAssertFalse(try context.program(name: "scale.cl", source: source, options: "-DA=2") === a)
    }

    /// A new context (as in a second process) finds the binary that the first one stored on disk.
    func testANewContextReusesTheBinaryOnDisk() throws {
        let device = try firstDevice()
        let cache = CLBinaryCache(directory: temporaryDirectory("binaries"))
        defer { try? FileManager.default.removeItem(at: cache.directory) }
        let unique = "// \(UUID().uuidString)\n" + source
        let first = try CLContext(device: device, diskCache: cache, storesNewBinaries: true).program(name: "scale.cl", source: unique)
        XCTAssertEqual(first.origin, .compiled)
        let files = try FileManager.default.contentsOfDirectory(atPath: cache.directory.path)
        XCTAssertEqual(files.count, 1, "one binary on disk")

        let secondContext = try CLContext(device: device, diskCache: cache, storesNewBinaries: true)
        let second = try secondContext.program(name: "scale.cl", source: unique)
        XCTAssertEqual(second.origin, .diskCache)
        // The cached binary really runs.
        let buffer = try secondContext.buffer(count: 4)
        try [Float](repeating: 3, count: 4).withUnsafeBytes { try secondContext.write(buffer, from: $0) }
        try secondContext.launch(try second.kernel("scale"), global: [4], arguments: [.buffer(buffer), .float(-1), .uint(4)])
        var result = [Float](repeating: 0, count: 4)
        try result.withUnsafeMutableBytes { try secondContext.read(buffer, into: $0) }
        XCTAssertEqual(result, [-3, -3, -3, -3])

        // Other options are another program: compiled, not taken from the disk.
        XCTAssertEqual(try secondContext.program(name: "scale.cl", source: unique, options: "-DX=1").origin, .compiled)
    }

    func testADamagedBinaryOnDiskIsRebuiltFromSource() throws {
        let device = try firstDevice()
        let cache = CLBinaryCache(directory: temporaryDirectory("damaged"))
        defer { try? FileManager.default.removeItem(at: cache.directory) }
        let unique = "// \(UUID().uuidString)\n" + source
        _ = try CLContext(device: device, diskCache: cache, storesNewBinaries: true).program(name: "scale.cl", source: unique)
        let file = try XCTUnwrap(FileManager.default.contentsOfDirectory(at: cache.directory, includingPropertiesForKeys: nil).first)
        var data = try Data(contentsOf: file)
        data = data.prefix(data.count / 2) + Data(repeating: 0xAB, count: 64)
        try data.write(to: file)
        let context = try CLContext(device: device, diskCache: cache, storesNewBinaries: true)
        let rebuilt = try context.program(name: "scale.cl", source: unique)
        XCTAssertEqual(rebuilt.origin, .compiled, "a damaged binary is not loaded")
        try assertScaleRuns(rebuilt, on: context)
    }

    /// A binary on disk is found again only by the same device, driver, source and options: a driver update
    /// (or another device) compiles afresh rather than loading a binary it may not run.
    func testBinariesAreKeyedByDeviceDriverSourceAndOptions() throws {
        let key = CLProgramCache.diskKey(device: "GPU", driver: "1.0", sourceHash: 7, options: "-DX=1")
        let others = [CLProgramCache.diskKey(device: "GPU 2", driver: "1.0", sourceHash: 7, options: "-DX=1"),
                      CLProgramCache.diskKey(device: "GPU", driver: "1.1", sourceHash: 7, options: "-DX=1"),
                      CLProgramCache.diskKey(device: "GPU", driver: "1.0", sourceHash: 8, options: "-DX=1"),
                      CLProgramCache.diskKey(device: "GPU", driver: "1.0", sourceHash: 7, options: "-DX=2")]
        let cache = CLBinaryCache(directory: temporaryDirectory("keys"))
        defer { try? FileManager.default.removeItem(at: cache.directory) }
        cache.store(key: key, binary: [1, 2, 3])
        XCTAssertEqual(cache.load(key: key), [1, 2, 3])
        for other in others { XCTAssertNil(cache.load(key: other), other) }
    }

    /// A program whose source changed is compiled afresh, not loaded from the binary of its old source.
    func testAChangedSourceIsNotTakenFromTheDisk() throws {
        let device = try firstDevice()
        let cache = CLBinaryCache(directory: temporaryDirectory("changed"))
        defer { try? FileManager.default.removeItem(at: cache.directory) }
        let unique = "// \(UUID().uuidString)\n" + source
        XCTAssertEqual(try CLContext(device: device, diskCache: cache, storesNewBinaries: true).program(name: "scale.cl", source: unique).origin, .compiled)
        XCTAssertEqual(try CLContext(device: device, diskCache: cache, storesNewBinaries: true).program(name: "scale.cl", source: unique).origin, .diskCache)
        let changed = unique.replacingOccurrences(of: "x[i] *= factor", with: "x[i] = x[i] * factor")
        let context = try CLContext(device: device, diskCache: cache, storesNewBinaries: true)
        let program = try context.program(name: "scale.cl", source: changed)
        XCTAssertEqual(program.origin, .compiled)
        try assertScaleRuns(program, on: context)
    }

}

/// A program of one kernel, `scale`, that multiplies a buffer by a factor: what the cache tests build.
let scaleKernelSource = """
    __kernel void scale(__global float *x, const float factor, const uint n) {
        const uint i = get_global_id(0);
        if (i < n) x[i] *= factor;
    }
    """

/// Runs `scale` of `program` by −1 on [3, 3, 3, 3] and checks the result.
func assertScaleRuns(_ program: CLProgram, on context: CLContext, file: StaticString = #filePath, line: UInt = #line) throws {
    let buffer = try context.buffer(count: 4)
    try [Float](repeating: 3, count: 4).withUnsafeBytes { try context.write(buffer, from: $0) }
    try context.launch(try program.kernel("scale"), global: [4], arguments: [.buffer(buffer), .float(-1), .uint(4)])
    var result = [Float](repeating: 0, count: 4)
    try result.withUnsafeMutableBytes { try context.read(buffer, into: $0) }
    XCTAssertEqual(result, [-3, -3, -3, -3], file: file, line: line)
}

final class AllocatorTests: XCTestCase {
    func testSizeClassesWasteAtMostAQuarter() {
        XCTAssertEqual(CLBufferAllocator.sizeClass(of: 1), 256)
        XCTAssertEqual(CLBufferAllocator.sizeClass(of: 256), 256)
        XCTAssertEqual(CLBufferAllocator.sizeClass(of: 257), 320)
        XCTAssertEqual(CLBufferAllocator.sizeClass(of: 1024), 1024)
        XCTAssertEqual(CLBufferAllocator.sizeClass(of: 1025), 1280)
        for bytes in [300, 4097, 100_000, 12_345_678] {
            let size = CLBufferAllocator.sizeClass(of: bytes)
            XCTAssertGreaterThanOrEqual(size, bytes)
            XCTAssertLessThanOrEqual(Double(size), Double(bytes) * 1.25 + 1)
        }
    }

    func testFreedBuffersAreReusedAndCounted() throws {
        let context = try CLContext(device: try firstDevice(), diskCache: nil)
        let allocator = context.allocator
        var buffer: CLBuffer? = try allocator.allocate(byteCount: 4000)
        XCTAssertEqual(allocator.statistics.bytesInUse, 4096)
        XCTAssertEqual(allocator.statistics.driverAllocations, 1)
        let mem = buffer?.mem
        buffer = nil
        XCTAssertEqual(allocator.statistics.bytesInUse, 0)
        XCTAssertEqual(allocator.statistics.bytesCached, 4096)

        let reused = try allocator.allocate(byteCount: 3900)  // same size class
        XCTAssertEqual(reused.mem, mem)
        XCTAssertEqual(allocator.statistics.driverAllocations, 1)
        XCTAssertEqual(allocator.statistics.cacheHits, 1)
        XCTAssertEqual(allocator.statistics.bytesCached, 0)

        let other = try allocator.allocate(byteCount: 10_000)  // another class: a new buffer
        XCTAssertNotEqual(other.mem, mem)
        XCTAssertEqual(allocator.statistics.driverAllocations, 2)
        allocator.trim()
        XCTAssertEqual(allocator.statistics.bytesCached, 0)
    }

    func testCopiesOutsideABufferAreRefused() throws {
        let context = try firstDevice().context()
        let buffer = try context.buffer(count: 64)  // 256 bytes
        var bytes = [UInt8](repeating: 0, count: 512)
        XCTAssertThrowsError(try bytes.withUnsafeMutableBytes { try context.read(buffer, into: $0) }) { error in
            XCTAssertEqual((error as? CLError)?.name, "CL_INVALID_VALUE")
        }
    }
}
