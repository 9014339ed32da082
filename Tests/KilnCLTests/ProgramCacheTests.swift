import Foundation
import XCTest
@testable import KilnCL

/// The program cache shared by processes and machines: damaged entries, folders that cannot be written,
/// concurrent builds, and the plans a warm-up records.
final class ProgramCacheTests: XCTestCase {
    /// A source no earlier build (in this process or in the driver's cache) has seen.
    private func uniqueSource() -> String { "// \(UUID().uuidString)\n" + scaleKernelSource }

    /// A cache whose warnings are collected.
    private func cache(in directory: URL) -> (CLBinaryCache, Locked<[String]>) {
        let warnings = Locked<[String]>([])
        return (CLBinaryCache(directory: directory) { message in warnings.withLock { $0.append(message) } }, warnings)
    }

    func testATruncatedEntryIsRebuiltWithAOneLineWarningNamingIt() throws {
        let device = try firstDevice()
        let directory = temporaryDirectory("truncated")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (cache, warnings) = cache(in: directory)
        let source = uniqueSource()
        _ = try CLContext(device: device, diskCache: cache, storesNewBinaries: true).program(name: "scale.cl", source: source)
        let file = try XCTUnwrap(FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil).first)
        for keep in [30, try Data(contentsOf: file).count - 100] {  // cut inside the header, then inside the binary
            let data = try Data(contentsOf: file)
            try data.prefix(keep).write(to: file)
            warnings.withLock { $0.removeAll() }
            let context = try CLContext(device: device, diskCache: cache, storesNewBinaries: true)
            let program = try context.program(name: "scale.cl", source: source)
            XCTAssertEqual(program.origin, .compiled, "cut at \(keep) bytes: not loaded")
            try assertScaleRuns(program, on: context)
            let messages = warnings.withLock { $0 }
            XCTAssertEqual(messages.count, 1, "\(messages)")
            XCTAssertTrue(messages.first?.contains(file.path) == true, "names the file: \(messages)")
            XCTAssertTrue(messages.first?.contains("compiling it again") == true, "\(messages)")
            // Rebuilt on disk too: the next process loads it.
            XCTAssertEqual(try CLContext(device: device, diskCache: cache).program(name: "scale.cl", source: source).origin, .diskCache)
        }
    }

    func testAnEntryThatIsNotKilnsIsReportedAndReplaced() throws {
        let device = try firstDevice()
        let directory = temporaryDirectory("foreign")
        defer { try? FileManager.default.removeItem(at: directory) }
        let (cache, warnings) = cache(in: directory)
        let source = uniqueSource()
        _ = try CLContext(device: device, diskCache: cache, storesNewBinaries: true).program(name: "scale.cl", source: source)
        let file = try XCTUnwrap(FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil).first)
        try Data("not a program\n".utf8).write(to: file)
        let context = try CLContext(device: device, diskCache: cache, storesNewBinaries: true)
        try assertScaleRuns(try context.program(name: "scale.cl", source: source), on: context)
        XCTAssertEqual(warnings.withLock { $0 }.count, 1)
        XCTAssertTrue(warnings.withLock { $0 }.first?.contains("is not a Kiln program binary") == true)
    }

    /// A folder that cannot be written (here: its parent is a file, which stops root too, unlike a mode)
    /// leaves the programs in memory, says so once, and never fails a build.
    func testAnUnwritableFolderKeepsProgramsInMemoryWithOneWarning() throws {
        let device = try firstDevice()
        let parent = temporaryDirectory("unwritable")
        try Data("a file, not a folder".utf8).write(to: parent)
        defer { try? FileManager.default.removeItem(at: parent) }
        let (cache, warnings) = cache(in: parent.appending(path: "cache"))
        let context = try CLContext(device: device, diskCache: cache, storesNewBinaries: true)
        let first = try context.program(name: "scale.cl", source: uniqueSource())
        let second = try context.program(name: "scale.cl", source: uniqueSource())
        try assertScaleRuns(first, on: context)
        try assertScaleRuns(second, on: context)
        let messages = warnings.withLock { $0 }
        XCTAssertEqual(messages.count, 1, "one warning for the folder, not one per program: \(messages)")
        XCTAssertTrue(messages.first?.contains(parent.appending(path: "cache").path) == true, "\(messages)")
        XCTAssertTrue(messages.first?.contains("in memory only") == true, "\(messages)")
    }

    /// Threads asking at once for different programs all get theirs; threads asking for the same one share a
    /// single build.
    func testConcurrentRequestsBuildEachProgramOnce() throws {
        let context = try CLContext(device: try firstDevice(), diskCache: nil)
        let sources = (0..<3).map { _ in uniqueSource() }
        let programs = Locked<[Int: [CLProgram]]>([:])
        let errors = Locked<[Error]>([])
        DispatchQueue.concurrentPerform(iterations: 12) { index in
            do {
                let program = try context.program(name: "scale.cl", source: sources[index % 3])
                programs.withLock { $0[index % 3, default: []].append(program) }
            } catch {
                errors.withLock { $0.append(error) }
            }
        }
        XCTAssertTrue(errors.withLock { $0 }.isEmpty, "\(errors.withLock { $0 })")
        XCTAssertEqual(context.buildCounts.compiled, 3)
        for (_, built) in programs.withLock({ $0 }) {
            XCTAssertEqual(built.count, 4)
            XCTAssertTrue(built.allSatisfy { $0 === built[0] }, "one program object per source")
        }
    }

    /// A plan skips what it records: the kernel does not run, the buffer keeps its values, and nothing is
    /// built until `prepare`, after which the program is found in memory.
    func testAPlanRecordsWithoutRunningAndPrepareBuildsWhatItRecorded() throws {
        let context = try CLContext(device: try firstDevice(), diskCache: nil)
        let source = uniqueSource()
        let buffer = try context.buffer(count: 4)
        try [Float](repeating: 3, count: 4).withUnsafeBytes { try context.write(buffer, from: $0) }
        let warm = try context.program(name: "warm.cl", source: uniqueSource())
        let plan = try context.plan {
            context.planProgram(name: "scale.cl", source: source, options: "-DX=1")
            try context.launch(try warm.kernel("scale"), global: [4], arguments: [.buffer(buffer), .float(-1), .uint(4)])
            try context.sgemm(m: 3, n: 5, k: 7, a: CLMatrix(buffer, leadingDimension: 7), b: CLMatrix(buffer, leadingDimension: 5),
                              c: CLMatrix(buffer, leadingDimension: 5))
        }
        var values = [Float](repeating: 0, count: 4)
        try values.withUnsafeMutableBytes { try context.read(buffer, into: $0) }
        XCTAssertEqual(values, [3, 3, 3, 3], "neither the kernel nor the product ran")
        XCTAssertEqual(plan.programs.map(\.options), ["-DX=1"])
        XCTAssertEqual(plan.products, [CLWorkPlan.Product(m: 3, n: 5, k: 7, transposedA: false, transposedB: false, batch: nil)])
        XCTAssertFalse(context.hasProgram(source: source, options: "-DX=1"))
        XCTAssertEqual(context.remainingWork(in: plan).programs.count, 1)

        let finished = Locked(0)
        try context.prepare(plan, threads: 2) { finished.withLock { $0 += 1 } }
        XCTAssertEqual(finished.withLock { $0 }, 2, "the program and the CLBlast products")
        XCTAssertTrue(context.hasProgram(source: source, options: "-DX=1"))
        XCTAssertTrue(context.remainingWork(in: plan).programs.isEmpty && context.remainingWork(in: plan).products.isEmpty)
        XCTAssertFalse(context.isPlanning)
    }

    func testAFailedPreparationShowsTheBuildLog() throws {
        let context = try CLContext(device: try firstDevice(), diskCache: nil)
        let plan = try context.plan {
            context.planProgram(name: "broken.cl", source: "__kernel void broken(__global float *x) { x[0] = undefined_name; }", options: "")
        }
        XCTAssertThrowsError(try context.prepare(plan, threads: 2)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("broken.cl") && text.contains("undefined_name"), text)
        }
    }

    /// Only POCL is known to cache whole builds; Kiln then stores none of its own by default.
    func testDriverCacheFolders() throws {
        var pocl = try firstDevice().info
        pocl.deviceVersion = "OpenCL 3.0 PoCL HSTR: pthread"
        XCTAssertEqual(pocl.driverProgramCache(environment: ["HOME": "/h"])?.path, "/h/.cache/pocl/kcache")
        XCTAssertEqual(pocl.driverProgramCache(environment: ["HOME": "/h", "XDG_CACHE_HOME": "/x"])?.path, "/x/pocl/kcache")
        XCTAssertEqual(pocl.driverProgramCache(environment: ["HOME": "/h", "POCL_CACHE_DIR": "/p"])?.path, "/p")
        XCTAssertNil(pocl.driverProgramCache(environment: ["HOME": "/h", "POCL_KERNEL_CACHE": "0"]))
        var nvidia = pocl
        (nvidia.deviceVersion, nvidia.vendor) = ("OpenCL 3.0 CUDA", "NVIDIA Corporation")
        XCTAssertEqual(nvidia.driverProgramCache(environment: ["HOME": "/h"])?.path, "/h/.nv/ComputeCache")
        XCTAssertFalse(nvidia.driverCachesWholeBuilds, "NVIDIA's cache holds its last compile step only")
        var other = pocl
        (other.deviceVersion, other.vendor) = ("OpenCL 2.1 AMD-APP", "Advanced Micro Devices, Inc.")
        XCTAssertNil(other.driverProgramCache(environment: ["HOME": "/h"]))
    }
}
