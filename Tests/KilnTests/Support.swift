import Foundation
import KilnCL
import XCTest
@testable import Kiln

/// The OpenCL device the tests compare against the host, or a skip when the machine has none.
func openCLDevice() throws -> Device {
    guard let device = try CLRuntime.devices().first else {
        if openCLIsRequired {
            throw KilnError.invalidArgument("no OpenCL device, but KILN_REQUIRE_OPENCL (or CI=true) says the tests need one:"
                                            + " is pocl-opencl-icd installed and its ICD registered?")
        }
        throw XCTSkip("no OpenCL device on this machine (install pocl-opencl-icd to run the OpenCL tests)")
    }
    return .opencl(platform: device.platformIndex, device: device.deviceIndex)
}

/// Whether a missing OpenCL device fails the tests rather than skipping them: `KILN_REQUIRE_OPENCL=1`, and
/// by default in CI (`CI=true`), where a broken driver must not pass as half a suite.
let openCLIsRequired: Bool = {
    let environment = ProcessInfo.processInfo.environment
    if let required = environment["KILN_REQUIRE_OPENCL"] { return required == "1" }
    return environment["CI"] == "true"
}()

/// Skips a test whose shapes are too large for a simulated device (Tests/Oclgrind/run.sh sets KILN_TEST_SIMULATOR=1:
/// the simulator runs each work-item in turn, so a workspace-sized convolution takes many minutes).
func skipUnderTheSimulator(_ what: String) throws {
    if ProcessInfo.processInfo.environment["KILN_TEST_SIMULATOR"] == "1" {
        throw XCTSkip("\(what) is too large for the simulated device")
    }
}

/// The host, then the OpenCL device: the host half of a loop over both runs on a machine without OpenCL too
/// (the device half is then skipped with a note, or fails where OpenCL is required).
func testDevices() throws -> [Device] {
    do {
        return [.host, try openCLDevice()]
    } catch let skip as XCTSkip {
        print("note: host only: \(skip.message ?? "no OpenCL device")")
        return [.host]
    }
}

/// Asserts |actual - expected| <= atol + rtol * |expected| elementwise, naming `context`, the first failing
/// index, how many fail and the worst one. A NaN or an infinity fails (even where both sides have one)
/// unless the test says it expects them with `allowNonFinite`, and then only where both agree.
func assertClose(_ actual: [Float], _ expected: [Float], atol: Float = 1e-5, rtol: Float = 1e-4, allowNonFinite: Bool = false,
                 _ context: @autoclosure () -> String, file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        return XCTFail("\(context()): \(actual.count) values, expected \(expected.count)", file: file, line: line)
    }
    var first: Int?, failures = 0, worst = (index: 0, excess: Float(0))
    for i in actual.indices {
        let (a, r) = (actual[i], expected[i])
        if !a.isFinite || !r.isFinite {
            let agree = a == r || (a.isNaN && r.isNaN)
            if !(allowNonFinite && agree) {
                failures += 1
                if first == nil { first = i }
                worst = (i, .infinity)
            }
            continue
        }
        let excess = abs(a - r) - (atol + rtol * abs(r))
        if excess > 0 {
            failures += 1
            if first == nil { first = i }
            if excess > worst.excess { worst = (i, excess) }
        }
    }
    guard let first else { return }
    XCTFail("\(context()): element \(first) is \(actual[first]), expected \(expected[first]) (atol \(atol), rtol \(rtol)); "
            + "\(failures) of \(actual.count) elements fail, the worst at \(worst.index): \(actual[worst.index]) against \(expected[worst.index])",
            file: file, line: line)
}

/// A small deterministic generator for test shapes and values (independent of the code under test).
struct TestRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }

    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    mutating func int(_ range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }

    mutating func float(_ low: Float = -1, _ high: Float = 1) -> Float {
        low + (high - low) * Float(next() >> 40) / Float(1 << 24)
    }

    mutating func floats(_ count: Int, _ low: Float = -1, _ high: Float = 1) -> [Float] {
        (0..<count).map { _ in float(low, high) }
    }

    /// A shape of rank 1...4 with sizes that are often odd or 1.
    mutating func shape(maxRank: Int = 4) -> [Int] {
        let sizes = [1, 1, 2, 3, 5, 7, 8, 13, 17, 31]
        return (0..<int(1...maxRank)).map { _ in sizes[int(0...(sizes.count - 1))] }
    }
}

/// Runs `body` with `backend`'s tuner on and its choices kept in a fresh folder (given to `body`), then
/// restores the tuner's switch and folder and removes the scratch folder.
func withFreshTuner<Result>(_ backend: OpenCLBackend, _ body: (URL) throws -> Result) throws -> Result {
    let directory = FileManager.default.temporaryDirectory.appending(path: "kiln-tuner-\(UUID().uuidString)")
    let (wasTuning, oldDirectory) = (backend.convolutionTuning, backend.convolutionCacheDirectory)
    defer {
        backend.convolutionTuning = wasTuning
        backend.convolutionCacheDirectory = oldDirectory
        try? FileManager.default.removeItem(at: directory)
    }
    backend.convolutionCacheDirectory = directory
    backend.convolutionTuning = true
    return try body(directory)
}

/// ‖a − b‖ / ‖b‖ in Double (0 when both are zero): how far a tensor is from another as a whole.
func relativeDistance(_ a: [Float], _ b: [Float]) -> Double {
    let difference = zip(a, b).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +)
    let norm = b.map { Double($0) * Double($0) }.reduce(0, +)
    return (difference / max(norm, 1e-30)).squareRoot()
}
