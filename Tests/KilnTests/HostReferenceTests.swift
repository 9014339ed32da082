import XCTest
@testable import Kiln

/// The host backend's fast paths (threads, sixteen-lane sums, the 2x2 pooling special case) against plain
/// loops written from the definitions, on shapes large enough to be split across threads and small or odd
/// enough to leave partial lanes.
final class HostReferenceTests: XCTestCase {
    private var random = TestRandom(seed: 31)

    // MARK: Pooling

    /// Max or average pooling of x [planes, H, W] as the defining loops; argmax is h·W + w in the plane.
    private func referencePool(_ kind: PoolKind, _ x: [Float], planes: Int, height: Int, width: Int,
                               geometry g: Pool2DGeometry) -> (y: [Float], argmax: [Float]) {
        let (outHeight, outWidth) = g.outputSize(height: height, width: width)
        var (y, argmax) = ([Float](), [Float]())
        for plane in 0..<planes {
            for oh in 0..<outHeight {
                for ow in 0..<outWidth {
                    var best = -Float.infinity, bestIndex = -1, sum: Float = 0
                    for i in 0..<g.windowHeight {
                        let h = oh * g.strideHeight - g.padHeight + i
                        guard h >= 0, h < height else { continue }
                        for j in 0..<g.windowWidth {
                            let w = ow * g.strideWidth - g.padWidth + j
                            guard w >= 0, w < width else { continue }
                            let value = x[(plane * height + h) * width + w]
                            sum += value
                            if bestIndex < 0 || value > best { (best, bestIndex) = (value, h * width + w) }
                        }
                    }
                    y.append(kind == .max ? best : sum / Float(g.windowHeight * g.windowWidth))
                    argmax.append(Float(bestIndex))
                }
            }
        }
        return (y, argmax)
    }

    func testPoolingMatchesTheDefiningLoops() throws {
        for trial in 0..<24 {
            // Every third trial is the 2x2/2 special case, one of them on a large batch split across threads.
            let window = trial % 3 == 0 ? (2, 2) : (random.int(1...4), random.int(1...4))
            let geometry = trial % 3 == 0 ? try Pool2DGeometry(window: 2)
                : try Pool2DGeometry(window: window, stride: (random.int(1...3), random.int(1...3)),
                                     padding: (random.int(0...(window.0 / 2)), random.int(0...(window.1 / 2))))
            let batch = trial == 3 ? 64 : (trial % 4 == 0 ? 1 : random.int(1...3))
            let shape = [batch, random.int(1...6), window.0 + random.int(0...21), window.1 + random.int(0...21)]
            // Few distinct values, so that ties are common.
            let values = (0..<shape.reduce(1, *)).map { _ in Float(random.int(0...7)) }
            let x = try Tensor(values, shape: shape)
            for kind in [PoolKind.max, .average] {
                let result = try pool2d(kind, x, geometry: geometry)
                let reference = referencePool(kind, values, planes: shape[0] * shape[1], height: shape[2], width: shape[3],
                                              geometry: geometry)
                assertClose(try result.output.toArray(), reference.y, "\(kind) \(shape) \(geometry)")
                if kind == .max { XCTAssertEqual(try result.argmax?.toArray(), reference.argmax, "argmax \(shape) \(geometry)") }
            }
        }
    }

    // MARK: Batch norm

    func testBatchNormMatchesTheDefiningSums() throws {
        for trial in 0..<10 {
            // Large planes (sixteen-lane sums with a tail, threads), a mean far from zero, and batch 1.
            let shape = trial == 0 ? [64, 6, 28, 28] : [trial % 3 == 0 ? 1 : random.int(2...5), random.int(1...7), random.int(1...19), random.int(2...19)]
            let (batch, channels, inner) = (shape[0], shape[1], shape[2] * shape[3])
            let m = batch * inner
            let offset: Float = trial % 2 == 0 ? 100 : 0
            let values = random.floats(shape.reduce(1, *), -3, 3).map { $0 + offset }
            let gradient = random.floats(values.count)
            let (gamma, beta) = (random.floats(channels, 0.5, 2), random.floats(channels))
            let x = try Tensor(values, shape: shape), dy = try Tensor(gradient, shape: shape)
            let (y, mean, inverseStd) = (try Tensor.empty(shape), try Tensor.empty([channels]), try Tensor.empty([channels]))
            let (runningMean, runningVariance) = (try Tensor.zeros([channels]), try Tensor.ones([channels]))
            let backend = HostBackend.shared
            try backend.batchNormTrainingForward(x, gamma: try Tensor(gamma, shape: [channels]), beta: try Tensor(beta, shape: [channels]),
                                                 runningMean: runningMean, runningVariance: runningVariance, settings: BatchNormSettings(),
                                                 into: y, savedMean: mean, savedInverseStd: inverseStd)
            let (dx, dgamma, dbeta) = (try Tensor.empty(shape), try Tensor.empty([channels]), try Tensor.empty([channels]))
            try backend.batchNormBackward(x, dy: dy, gamma: try Tensor(gamma, shape: [channels]), savedMean: mean, savedInverseStd: inverseStd,
                                          into: dx, gammaGradient: dgamma, betaGradient: dbeta, accumulate: false)

            // The definitions, in Double: biased variance for normalising, unbiased for the running estimate.
            func index(_ c: Int, _ k: Int) -> Int { (k / inner * channels + c) * inner + k % inner }
            var expected = (y: [Double](repeating: 0, count: values.count), dx: [Double](repeating: 0, count: values.count))
            var expectedRunningVariance: [Float] = [], expectedDgamma: [Float] = []
            for c in 0..<channels {
                let channel = (0..<m).map { Double(values[index(c, $0)]) }
                let mu = channel.reduce(0, +) / Double(m)
                let variance = channel.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(m)
                let sigma = 1 / (variance + 1e-5).squareRoot()
                let xhat = channel.map { ($0 - mu) * sigma }
                let g = (0..<m).map { Double(gradient[index(c, $0)]) }
                let (sumDy, sumDyXhat) = (g.reduce(0, +), zip(g, xhat).map(*).reduce(0, +))
                for k in 0..<m {
                    expected.y[index(c, k)] = Double(gamma[c]) * xhat[k] + Double(beta[c])
                    expected.dx[index(c, k)] = Double(gamma[c]) * sigma / Double(m) * (Double(m) * g[k] - sumDy - xhat[k] * sumDyXhat)
                }
                expectedRunningVariance.append(Float(0.9 + 0.1 * variance * Double(m) / Double(max(m - 1, 1))))
                expectedDgamma.append(Float(sumDyXhat))
            }
            let label = "\(shape) offset \(offset)"
            assertClose(try y.toArray(), expected.y.map(Float.init), atol: 1e-4, rtol: 1e-4, "batch norm y \(label)")
            assertClose(try dx.toArray(), expected.dx.map(Float.init), atol: 1e-4, rtol: 1e-3, "batch norm dx \(label)")
            assertClose(try runningVariance.toArray(), expectedRunningVariance, atol: 1e-4, rtol: 1e-4, "running variance \(label)")
            assertClose(try dgamma.toArray(), expectedDgamma, atol: 1e-3, rtol: 1e-4, "dgamma \(label)")
        }
    }

    // MARK: Reductions and maps split across threads

    func testLargeMapsAndRowSumsMatchTheDefinitions() throws {
        let count = 3 * HostBackend.elementGrain + 17  // split across threads, with a partial last lane
        let (a, b) = (random.floats(count), random.floats(count))
        let (x, y) = (try Tensor(a, shape: [count]), try Tensor(b, shape: [count]))
        assertClose(try (x * y).toArray(), zip(a, b).map(*), atol: 0, rtol: 0, "product")
        assertClose(try x.map(.relu).toArray(), a.map { max($0, 0) }, atol: 0, rtol: 0, "relu")
        let rows = try Tensor(Array(a.prefix(count / 17 * 17)), shape: [count / 17, 17]).sum(axis: 1).toArray()
        let expected = (0..<(count / 17)).map { r in Float((0..<17).map { Double(a[r * 17 + $0]) }.reduce(0, +)) }
        assertClose(rows, expected, atol: 1e-5, rtol: 1e-5, "row sums")
    }
}
