import Foundation
import XCTest
@testable import Kiln
import KilnCL

/// What a new user sees the first time: `kiln train` and `kiln warmup` with empty caches, on a pipe.
final class FirstRunTests: XCTestCase {
    /// Fresh folders for Kiln's cache and POCL's, as on a machine that never ran Kiln.
    private func freshCaches() -> (environment: [String: String], kiln: URL, driver: URL, remove: () -> Void) {
        let root = FileManager.default.temporaryDirectory.appending(path: "kiln-first-run-\(UUID().uuidString)")
        let (kiln, driver) = (root.appending(path: "kiln"), root.appending(path: "pocl"))
        return (["KILN_CACHE_DIR": kiln.path, "POCL_CACHE_DIR": driver.path], kiln, driver,
                { try? FileManager.default.removeItem(at: root) })
    }

    func testAFirstTrainingRunSaysWhatItCompilesAndTheNextOneDoesNot() throws {
        let device = try openCLDevice()
        guard try XCTUnwrap(deviceInfo(of: device)).driverCachesWholeBuilds else { throw XCTSkip("the cache folders shown are POCL's") }
        let caches = freshCaches()
        defer { caches.remove() }
        let data = try KilnCommand.smallDataSet().path
        func train(_ name: String) throws -> String {
            let result = try KilnCommand.runKillable(["train", "--data", data, "--device", "\(device)", "--epochs", "1", "--batch-size", "64",
                                                      "--out", caches.kiln.deletingLastPathComponent().appending(path: name).path],
                                                     environment: caches.environment)
            XCTAssertEqual(result.status, 0, result.output)
            return result.output
        }
        let first = try train("run1")
        let lines = first.split(separator: "\n").map(String.init)
        let start = "compiling OpenCL kernels for \(try device.backend().name) (first run only, cached in \(caches.driver.path)): "
        let compiling = lines.filter { $0.hasPrefix(start) }
        XCTAssertEqual(compiling.count, 2, "on a pipe: one line when it shows, one when it ends:\n\(first)")
        let last = try XCTUnwrap(compiling.last)
        let counts = try XCTUnwrap(last.dropFirst(start.count).split(separator: " ").first).split(separator: "/").compactMap { Int($0) }
        XCTAssertEqual(counts.count, 2, last)
        XCTAssertEqual(counts.first, counts.last, "all programs compiled: \(last)")
        XCTAssertGreaterThan(counts.first ?? 0, 5, last)
        XCTAssertTrue(last.hasSuffix(" s"), "with the time it took: \(last)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("epoch 1/1 1/") && $0.hasSuffix("warming up") },
                      "the first step is left out of the speed: \(first)")
        XCTAssertLessThan(try XCTUnwrap(lines.firstIndex(of: last)), try XCTUnwrap(lines.firstIndex { $0.hasPrefix("epoch 1/1 ") }),
                          "compiling is done before the first step")

        let second = try train("run2")
        XCTAssertFalse(second.contains("compiling OpenCL kernels"), "the second run finds everything cached:\n\(second)")
    }

    func testWarmupPreparesTheCachesThatDevicesShows() throws {
        let device = try openCLDevice()
        guard try XCTUnwrap(deviceInfo(of: device)).driverCachesWholeBuilds else { throw XCTSkip("the cache folders shown are POCL's") }
        let caches = freshCaches()
        defer { caches.remove() }
        func cachedFiles() throws -> Int {
            let output = try KilnCommand.runKillable(["devices"], environment: caches.environment).output
            let line = try XCTUnwrap(output.split(separator: "\n").first { $0.contains("driver cache (compiled programs): \(caches.driver.path) (") },
                                     output)
            // "(12 files, 3.4 MiB)", "(empty)" or "(not created yet)"
            return Int(line.split(separator: "(").last?.split(separator: " ").first ?? "") ?? 0
        }
        let before = try cachedFiles()

        // With the tuner on, as on a GPU: it times every convolution shape of both steps.
        let warmup = try KilnCommand.runKillable(["warmup", "--model", "lenet-bn", "--device", "\(device)", "--batch-size", "16",
                                                  "--inference-batch-size", "32"],
                                                 environment: caches.environment.merging(["KILN_CONV_TUNE": "1"]) { $1 })
        XCTAssertEqual(warmup.status, 0, warmup.output)
        // Training: forward and filter gradient of both convolutions, the second's data gradient; inference at
        // another batch size: both forwards again.
        XCTAssertTrue(warmup.output.contains("tuning convolutions: 7/7 shapes, "), "the tuning line ends with its time: \(warmup.output)")
        XCTAssertTrue(warmup.output.contains("convolution shapes tuned: 7 ("), warmup.output)
        XCTAssertTrue(warmup.output.contains("prepared lenet-bn (1x28x28, training batch 16, inference batch 32) on \(device)"), warmup.output)
        XCTAssertTrue(warmup.output.contains(", 0 programs built or shapes tuned there"), "the plan left the steps nothing: \(warmup.output)")
        XCTAssertTrue(warmup.output.contains("programs cached in \(caches.driver.path) ("), warmup.output)

        XCTAssertGreaterThan(try cachedFiles(), before + 5, "kiln devices counts what the warm-up cached")

        let host = try KilnCommand.runKillable(["warmup", "--device", "host"], environment: caches.environment)
        XCTAssertEqual(host.status, 0, host.output)
        XCTAssertTrue(host.output.contains("there is nothing to prepare"), host.output)
    }

    private func deviceInfo(of device: Device) throws -> CLDeviceInfo? {
        guard case let .opencl(platform, index) = device else { return nil }
        return try CLRuntime.device(platform: platform, device: index)?.info
    }
}
