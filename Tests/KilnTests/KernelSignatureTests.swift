import KilnCL
import XCTest
@testable import Kiln

/// The typed launch wrappers are generated from the kernels' signatures by Sources/KernelEmbedder; these
/// tests hold them to what the OpenCL compiler itself reads from the same sources.
final class KernelSignatureTests: XCTestCase {
    /// Every kernel of every file in Kernels/ has a wrapper, and each wrapper passes as many arguments, of
    /// the same types, as the compiled kernel takes.
    func testWrappersMatchTheCompiledKernels() throws {
        let backend = try XCTUnwrap(try openCLDevice().backend() as? OpenCLBackend)
        XCTAssertEqual(Set(generatedKernelManifest.map(\.source.file)), Set(embeddedKernelSources.keys),
                       "every embedded kernel file has generated wrappers")
        // conv_direct.cl compiles only with a layer's sizes (8 output channels: a channel vector's).
        let sample = try Conv2DShape(input: [2, 3, 9, 9], weight: [8, 3, 3, 3], geometry: try Conv2DGeometry(kernelSize: 3))
        let fileOptions = ["conv_direct.cl": OpenCLBackend.directProgram(for: sample, on: backend.context.device.info).options]
        for kernel in generatedKernelManifest {
            let compiled = try backend.kernel(kernel.name, in: kernel.source.file, prelude: kernel.source.prelude,
                                              options: "-cl-kernel-arg-info " + (fileOptions[kernel.source.file] ?? ""))
            XCTAssertEqual(try compiled.argumentCount(), kernel.argumentTypes.count, "\(kernel.name): CL_KERNEL_NUM_ARGS")
            for (index, expected) in kernel.argumentTypes.enumerated() where index < (try compiled.argumentCount()) {
                let reported = try compiled.argumentTypeName(at: index).replacingOccurrences(of: " ", with: "")
                // A typedef may be reported by its own name or by the type it stands for.
                let accepted = generatedEnumTypeNames.contains(expected) ? [expected, "int"] : [expected]
                XCTAssertTrue(accepted.contains(reported), "\(kernel.name) argument \(index): wrapper passes \(expected), kernel takes \(reported)")
            }
        }
    }

    /// The number of kernels in the sources, counted without the generator (each `__kernel` line, and for a
    /// macro that stamps kernels out, its kernels times its invocations), equals the manifest's.
    func testEveryKernelInTheSourcesHasAWrapper() throws {
        var counted = 0
        for source in embeddedKernelSources.values {
            let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
            var macro: Substring?
            for line in lines {
                if line.hasPrefix("#define ") { macro = line.dropFirst("#define ".count).prefix { $0 != "(" && $0 != " " } }
                guard line.contains("__kernel"), !line.hasPrefix("//") else { continue }
                if line.hasSuffix("\\"), let macro {
                    counted += lines.filter { $0.hasPrefix(macro + "(") }.count
                } else {
                    counted += 1
                }
            }
        }
        XCTAssertEqual(generatedKernelManifest.count, counted)
        XCTAssertEqual(Set(generatedKernelManifest.map(\.name)).count, generatedKernelManifest.count, "kernel names are unique")
    }

    /// A value that does not fit a kernel's 32-bit parameter is an error naming the kernel and parameter,
    /// not a truncated launch.
    func testOversizedScalarIsAnError() throws {
        let backend = try XCTUnwrap(try openCLDevice().backend() as? OpenCLBackend)
        let t = try Tensor.zeros([4], on: backend.device)
        XCTAssertThrowsError(try backend.elementwiseKernels.fill(items: 4, out: t, n: Int(UInt32.max) + 1, value: 1)) { error in
            XCTAssertTrue("\(error)".contains("fill") && "\(error)".contains("n = 4294967296"), "\(error)")
        }
        XCTAssertThrowsError(try backend.elementwiseKernels.fill(items: 4, out: t, n: -1, value: 1))
    }
}
