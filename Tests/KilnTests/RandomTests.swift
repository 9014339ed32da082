import XCTest
@testable import Kiln

final class RandomTests: XCTestCase {
    func testPhiloxKnownAnswers() {
        // Random123's known-answer vectors for philox4x32_10.
        XCTAssertTrue(Philox.block(counter: (0, 0, 0, 0), key: (0, 0)) == (0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8))
        XCTAssertTrue(Philox.block(counter: (~0, ~0, ~0, ~0), key: (~0, ~0)) == (0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd))
        XCTAssertTrue(Philox.block(counter: (0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), key: (0xa409_3822, 0x299f_31d0))
                      == (0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1))
    }

    func testHostAndDeviceStreamsAreBitIdentical() throws {
        let gpu = try openCLDevice()
        let cases: [(seed: UInt64, offset: UInt64, count: Int)] = [
            (0, 0, 1), (42, 0, 10_001), (0xDEAD_BEEF_0000_0001, 12_345, 4_099), (7, (1 << 34) - 5, 1_000),
        ]
        for (seed, offset, count) in cases {
            let hostUniform = try Tensor.uniform([count], low: -2, high: 3, seed: seed, offset: offset).toArray()
            let deviceUniform = try Tensor.uniform([count], low: -2, high: 3, seed: seed, offset: offset, on: gpu).toArray()
            XCTAssertEqual(hostUniform.map(\.bitPattern), deviceUniform.map(\.bitPattern), "uniform seed \(seed) offset \(offset)")
            let hostNormal = try Tensor.normal([count], mean: 1, std: 0.5, seed: seed, offset: offset).toArray()
            let deviceNormal = try Tensor.normal([count], mean: 1, std: 0.5, seed: seed, offset: offset, on: gpu).toArray()
            XCTAssertEqual(hostNormal.map(\.bitPattern), deviceNormal.map(\.bitPattern), "normal seed \(seed) offset \(offset)")
        }
    }

    func testAnOffsetContinuesTheStream() throws {
        let whole = try Tensor.normal([100], seed: 9).toArray()
        let tail = try Tensor.normal([40], seed: 9, offset: 60).toArray()
        XCTAssertEqual(Array(whole[60...]), tail)
        XCTAssertNotEqual(try Tensor.normal([100], seed: 10).toArray(), whole)
    }

    func testMomentsOfAMillionDraws() throws {
        let n = 1_000_000
        for device in try testDevices() {
            let normal = try Tensor.normal([n], seed: 1234, on: device).toArray().map(Double.init)
            let mean = normal.reduce(0, +) / Double(n)
            let variance = normal.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)
            XCTAssertLessThan(abs(mean), 5 / Double(n).squareRoot(), "normal mean on \(device)")
            XCTAssertLessThan(abs(variance - 1), 5 * (2 / Double(n)).squareRoot(), "normal variance on \(device)")
            let beyondThree = normal.filter { abs($0) > 3 }.count
            XCTAssertEqual(Double(beyondThree) / Double(n), 0.0027, accuracy: 0.0005, "tails on \(device)")

            let uniform = try Tensor.uniform([n], seed: 99, on: device).toArray().map(Double.init)
            let uMean = uniform.reduce(0, +) / Double(n)
            let uVariance = uniform.map { ($0 - uMean) * ($0 - uMean) }.reduce(0, +) / Double(n - 1)
            XCTAssertLessThan(abs(uMean - 0.5), 5 * (1.0 / 12 / Double(n)).squareRoot())
            XCTAssertLessThan(abs(uVariance - 1.0 / 12), 0.001)
            XCTAssertTrue(uniform.allSatisfy { $0 >= 0 && $0 < 1 })
        }
    }
}
