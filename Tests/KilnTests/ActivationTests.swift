import XCTest
@testable import Kiln

final class ActivationTests: XCTestCase {
    private var random = TestRandom(seed: 31)
    private let all: [Activation] = [.relu, .leakyReLU(slope: 0.1), .elu(alpha: 0.7), .sigmoid, .tanh, .softplus, .swish, .relu6]

    func testTheDeviceMatchesTheHost() throws {
        let gpu = try openCLDevice()
        for _ in 0..<6 {
            let shape = random.shape()
            let x = try Tensor(random.floats(shape.reduce(1, *), -8, 8), shape: shape)
            let dy = try Tensor(random.floats(shape.reduce(1, *)), shape: shape)
            for activation in all {
                assertClose(try x.to(gpu).activated(activation).toArray(), try x.activated(activation).toArray(),
                            atol: 1e-6, rtol: 1e-5, "\(activation) forward \(shape)")
                assertClose(try x.to(gpu).activationGradient(activation, dy: dy.to(gpu)).toArray(),
                            try x.activationGradient(activation, dy: dy).toArray(), atol: 1e-6, rtol: 1e-5, "\(activation) backward \(shape)")
            }
        }
    }

    func testKnownValuesAndKinks() throws {
        let x = try Tensor([-2, 0, 3, 7, 1000, -1000], shape: [6])
        XCTAssertEqual(try x.activated(.relu).toArray(), [0, 0, 3, 7, 1000, 0])
        XCTAssertEqual(try x.activated(.relu6).toArray(), [0, 0, 3, 6, 6, 0])
        XCTAssertEqual(try x.activated(.leakyReLU(slope: 0.5)).toArray(), [-1, 0, 3, 7, 1000, -500])
        XCTAssertEqual(try x.activated(.softplus).toArray()[4], 1000, "softplus does not overflow")
        XCTAssertEqual(try x.activated(.softplus).toArray()[5], 0)
        XCTAssertEqual(try x.activationGradient(.relu, dy: Tensor.ones([6])).toArray(), [0, 0, 1, 1, 1, 0], "ReLU'(0) = 0")
        XCTAssertEqual(try x.activationGradient(.relu6, dy: Tensor.ones([6])).toArray(), [0, 0, 1, 0, 0, 0])
    }

    func testGradientsAgreeWithFiniteDifferences() throws {
        for activation in all {
            // Stay away from the kinks, where finite differences straddle two slopes.
            let values = random.floats(30, -5, 5).map { abs($0) < 0.1 || abs($0 - 6) < 0.1 ? $0 + 0.3 : $0 }
            let x = try Tensor(values, shape: [5, 6])
            let upstream = try Tensor(random.floats(30), shape: [5, 6])
            try assertGradient("\(activation)", of: x, analytic: x.activationGradient(activation, dy: upstream), eps: 1e-2) {
                try weightedSum(x.activated(activation), upstream)
            }
        }
    }

    func testPReLUMatchesTheHostAndItsGradients() throws {
        let gpu = try openCLDevice()
        for shared in [false, true] {
            let shape = [3, 4, 5, 3]
            let x = try Tensor(random.floats(180, -2, 2).map { abs($0) < 0.05 ? $0 + 0.1 : $0 }, shape: shape)  // off the kink
            let slopes = try Tensor(shared ? [0.2] : [0.1, 0.25, -0.3, 0.5], shape: [shared ? 1 : 4])
            let dy = try Tensor(random.floats(180), shape: shape)
            func run(on device: Device) throws -> (y: [Float], dx: [Float], da: [Float]) {
                let (x, a, dy) = (try x.to(device), try slopes.to(device), try dy.to(device))
                let y = try Tensor.empty(shape, on: device), dx = try Tensor.empty(shape, on: device)
                let da = try Tensor.zeros(a.shape, on: device)
                try x.backend.preluForward(x, slopes: a, into: y)
                try x.backend.preluBackward(x: x, slopes: a, dy: dy, into: dx, slopeGradient: da, accumulate: false)
                return (try y.toArray(), try dx.toArray(), try da.toArray())
            }
            let host = try run(on: .host), device = try run(on: gpu)
            assertClose(device.y, host.y, "PReLU forward shared \(shared)")
            assertClose(device.dx, host.dx, "PReLU dx shared \(shared)")
            assertClose(device.da, host.da, atol: 1e-4, "PReLU dslope shared \(shared)")
            func forward() throws -> Double {
                let y = try Tensor.empty(shape)
                try HostBackend.shared.preluForward(x, slopes: slopes, into: y)
                return try weightedSum(y, dy)
            }
            try assertGradient("PReLU dx", of: x, analytic: Tensor(host.dx, shape: shape), loss: forward)
            try assertGradient("PReLU dslope", of: slopes, analytic: Tensor(host.da, shape: slopes.shape), loss: forward)
        }
    }
}
