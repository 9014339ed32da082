import XCTest
@testable import Kiln

final class PoolingTests: XCTestCase {
    private var random = TestRandom(seed: 13)

    func testKnownAnswers() throws {
        let values: [Float] = [1, 3, 2, 4,
                               5, 6, 1, 0,
                               7, 2, 9, 9,
                               1, 8, 3, 2]
        for device in try testDevices() {
            let x = try Tensor(values, shape: [1, 1, 4, 4], on: device)
            let max = try pool2d(.max, x, geometry: Pool2DGeometry(window: 2))
            XCTAssertEqual(try max.output.toArray(), [6, 4, 8, 9])
            XCTAssertEqual(try max.argmax?.toArray(), [5, 3, 13, 10], "ties (9, 9) go to the first")
            XCTAssertEqual(try pool2d(.average, x, geometry: Pool2DGeometry(window: 2)).output.toArray(), [3.75, 1.75, 4.5, 5.75])
            // Padding 1 with a 2x2 window, stride 2: corners see one real value and three zeros.
            let padded = try pool2d(.average, x, geometry: Pool2DGeometry(window: 2, stride: 2, padding: 1)).output.toArray()
            XCTAssertEqual(padded.count, 9)
            XCTAssertEqual(padded[0], 0.25)
            let global = try pool2d(.max, x, geometry: globalPoolGeometry(for: x.shape))
            XCTAssertEqual(global.output.shape, [1, 1, 1, 1])
            XCTAssertEqual(try global.output.toArray(), [9])
            XCTAssertEqual(try global.argmax?.toArray(), [10])
            XCTAssertEqual(try pool2d(.average, x, geometry: globalPoolGeometry(for: x.shape)).output.toArray(), [63.0 / 16])
            let dx = try pool2dBackward(.max, dy: Tensor([1, 2, 3, 4], shape: [1, 1, 2, 2], on: device), argmax: max.argmax,
                                        inputShape: x.shape, geometry: Pool2DGeometry(window: 2)).toArray()
            XCTAssertEqual(dx, [0, 0, 0, 2, 0, 1, 0, 0, 0, 0, 4, 0, 0, 3, 0, 0], "the gradient goes to the arg-max only")
        }
    }

    func testOverlappingWindowsWithTiesAgreeOnBothBackends() throws {
        let x = try Tensor([Float](repeating: 1, count: 2 * 3 * 7 * 6), shape: [2, 3, 7, 6])  // every value ties
        let geometry = try Pool2DGeometry(window: (3, 3), stride: (2, 1), padding: (1, 1))
        let host = try pool2d(.max, x, geometry: geometry)
        let device = try pool2d(.max, x.to(openCLDevice()), geometry: geometry)
        XCTAssertEqual(try device.argmax?.toArray(), try host.argmax?.toArray())
        let dy = try Tensor(random.floats(host.output.count), shape: host.output.shape)
        assertClose(try pool2dBackward(.max, dy: dy.to(openCLDevice()), argmax: device.argmax, inputShape: x.shape, geometry: geometry).toArray(),
                    try pool2dBackward(.max, dy: dy, argmax: host.argmax, inputShape: x.shape, geometry: geometry).toArray(), "ties")
    }

    /// Random configurations, after three whose windows do not overlap (the scatter path of max pooling's
    /// backward on OpenCL): the usual 2x2/2, padded 3x2/(3,2), and a window smaller than its stride.
    func testTheDeviceMatchesTheHostOnRandomConfigurations() throws {
        let gpu = try openCLDevice()
        let disjoint = [try Pool2DGeometry(window: 2), try Pool2DGeometry(window: (3, 2), stride: (3, 2), padding: (1, 1)),
                        try Pool2DGeometry(window: (1, 2), stride: (2, 3))]
        for trial in 0..<33 {
            let window = trial < 3 ? (disjoint[trial].windowHeight, disjoint[trial].windowWidth) : (random.int(1...4), random.int(1...4))
            let geometry = trial < 3 ? disjoint[trial]
                : try Pool2DGeometry(window: window, stride: (random.int(1...3), random.int(1...3)),
                                     padding: (random.int(0...(window.0 / 2)), random.int(0...(window.1 / 2))))
            let shape = [trial % 5 == 0 ? 1 : random.int(1...3), random.int(1...4), window.0 + random.int(0...8), window.1 + random.int(0...8)]
            let x = try Tensor(random.floats(shape.reduce(1, *)), shape: shape)
            for kind in [PoolKind.max, .average] {
                let host = try pool2d(kind, x, geometry: geometry)
                let device = try pool2d(kind, x.to(gpu), geometry: geometry)
                assertClose(try device.output.toArray(), try host.output.toArray(), "\(kind) forward \(shape) \(geometry)")
                let dy = try Tensor(random.floats(host.output.count), shape: host.output.shape)
                assertClose(try pool2dBackward(kind, dy: dy.to(gpu), argmax: device.argmax, inputShape: shape, geometry: geometry).toArray(),
                            try pool2dBackward(kind, dy: dy, argmax: host.argmax, inputShape: shape, geometry: geometry).toArray(),
                            "\(kind) backward \(shape) \(geometry)")
            }
        }
    }

    func testGradientsAgreeWithFiniteDifferences() throws {
        for (kind, geometry) in [(PoolKind.max, try Pool2DGeometry(window: 3, stride: 2, padding: 1)),
                                 (.average, try Pool2DGeometry(window: (2, 3), stride: (1, 2), padding: (1, 1))),
                                 (.max, try globalPoolGeometry(for: [2, 3, 5, 4])), (.average, try globalPoolGeometry(for: [2, 3, 5, 4]))] {
            // Distinct values spaced further apart than the finite-difference step, so no max changes hands.
            var values = (0..<120).map { Float($0) * 0.05 }
            for i in values.indices.reversed() { values.swapAt(i, random.int(0...i)) }
            let x = try Tensor(values, shape: [2, 3, 5, 4])
            let forward = try pool2d(kind, x, geometry: geometry)
            let upstream = try Tensor(random.floats(forward.output.count), shape: forward.output.shape)
            try assertGradient("\(kind) pool \(geometry)", of: x,
                               analytic: pool2dBackward(kind, dy: upstream, argmax: forward.argmax, inputShape: x.shape, geometry: geometry)) {
                try weightedSum(pool2d(kind, x, geometry: geometry).output, upstream)
            }
        }
    }

    func testAnInputSmallerThanTheWindowIsRefused() throws {
        XCTAssertThrowsError(try pool2d(.max, Tensor.zeros([1, 1, 2, 2]), geometry: Pool2DGeometry(window: 3))) { error in
            XCTAssertTrue("\(error)".contains("max pool") && "\(error)".contains("[1, 1, 2, 2]"), "\(error)")
        }
    }
}
