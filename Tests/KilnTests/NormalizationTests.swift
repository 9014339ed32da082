import XCTest
@testable import Kiln
import KilnCL

final class NormalizationTests: XCTestCase {
    private var random = TestRandom(seed: 17)

    /// Training forward + backward on one device; returns every output as arrays.
    private func batchNorm(_ x: [Float], shape: [Int], gamma: [Float], beta: [Float], dy: [Float], on device: Device,
                           settings: BatchNormSettings = BatchNormSettings()) throws -> [String: [Float]] {
        let c = shape[1]
        let x = try Tensor(x, shape: shape, on: device), dy = try Tensor(dy, shape: shape, on: device)
        let (g, b) = (try Tensor(gamma, shape: [c], on: device), try Tensor(beta, shape: [c], on: device))
        let (runningMean, runningVariance) = (try Tensor.full([c], value: 0.5, on: device), try Tensor.full([c], value: 2, on: device))
        let (y, mean, inverseStd) = (try Tensor.empty(shape, on: device), try Tensor.empty([c], on: device), try Tensor.empty([c], on: device))
        let backend = x.backend
        try backend.batchNormTrainingForward(x, gamma: g, beta: b, runningMean: runningMean, runningVariance: runningVariance,
                                             settings: settings, into: y, savedMean: mean, savedInverseStd: inverseStd)
        let (dx, dgamma, dbeta) = (try Tensor.empty(shape, on: device), try Tensor.empty([c], on: device), try Tensor.empty([c], on: device))
        try backend.batchNormBackward(x, dy: dy, gamma: g, savedMean: mean, savedInverseStd: inverseStd,
                                      into: dx, gammaGradient: dgamma, betaGradient: dbeta, accumulate: false)
        let inference = try Tensor.empty(shape, on: device)
        try backend.batchNormInferenceForward(x, gamma: g, beta: b, runningMean: runningMean, runningVariance: runningVariance,
                                              settings: settings, into: inference)
        return ["y": try y.toArray(), "mean": try mean.toArray(), "inverseStd": try inverseStd.toArray(),
                "runningMean": try runningMean.toArray(), "runningVariance": try runningVariance.toArray(),
                "dx": try dx.toArray(), "dgamma": try dgamma.toArray(), "dbeta": try dbeta.toArray(), "inference": try inference.toArray()]
    }

    /// Random shapes, the last two with planes larger than a work-group, through both OpenCL paths: the
    /// separate reduction and elementwise kernels, and one launch per pass.
    func testBatchNormDeviceMatchesTheHost() throws {
        let gpu = try openCLDevice()
        defer { OpenCLBackend.singleLaunchBatchNorm.withLock { $0 = nil } }
        for trial in 0..<14 {
            let shape = trial == 12 ? [3, 4, 9, 11] : trial == 13 ? [1, 3, 16, 17] : trial % 3 == 0 ? [random.int(2...9), random.int(1...6)]
                : [trial % 4 == 1 ? 1 : random.int(1...4), random.int(1...5), random.int(1...7), random.int(1...7)]
            let count = shape.reduce(1, *)
            guard count / shape[1] > 1 else { continue }
            let (x, dy) = (random.floats(count, -3, 3), random.floats(count))
            let (gamma, beta) = (random.floats(shape[1], 0.5, 2), random.floats(shape[1]))
            let host = try batchNorm(x, shape: shape, gamma: gamma, beta: beta, dy: dy, on: .host)
            for singleLaunch in [false, true] {
                OpenCLBackend.singleLaunchBatchNorm.withLock { $0 = singleLaunch }
                let device = try batchNorm(x, shape: shape, gamma: gamma, beta: beta, dy: dy, on: gpu)
                for key in host.keys.sorted() {
                    assertClose(device[key] ?? [], host[key] ?? [], atol: 1e-4, rtol: 1e-4,
                                "batch norm \(key) \(shape)\(singleLaunch ? ", one launch per pass" : "")")
                }
            }
        }
    }

    func testBatchNormStatisticsAndRunningEstimates() throws {
        for device in try testDevices() {
            let shape = [4, 3, 5, 6]
            let x = random.floats(360, -2, 5)
            let result = try batchNorm(x, shape: shape, gamma: [1, 1, 1], beta: [0, 0, 0], dy: [Float](repeating: 0, count: 360),
                                       on: device, settings: BatchNormSettings(momentum: 0.25))
            let y = try XCTUnwrap(result["y"])
            for c in 0..<3 {
                var values: [Double] = [], outputs: [Double] = []
                for n in 0..<4 {
                    for k in 0..<30 {
                        values.append(Double(x[(n * 3 + c) * 30 + k]))
                        outputs.append(Double(y[(n * 3 + c) * 30 + k]))
                    }
                }
                let outMean: Double = outputs.reduce(0, +) / 120
                let outVariance: Double = outputs.map { ($0 - outMean) * ($0 - outMean) }.reduce(0, +) / 120
                XCTAssertEqual(outMean, 0, accuracy: 1e-5, "per-channel mean on \(device)")
                XCTAssertEqual(outVariance, 1, accuracy: 1e-3, "per-channel variance on \(device)")
                // running = 0.75·running + 0.25·batch, unbiased variance for the running estimate.
                let mean: Double = values.reduce(0, +) / 120
                let unbiased: Double = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 119
                let runningMean = Double(result["runningMean"]?[c] ?? 0), runningVariance = Double(result["runningVariance"]?[c] ?? 0)
                XCTAssertEqual(runningMean, 0.75 * 0.5 + 0.25 * mean, accuracy: 1e-5)
                XCTAssertEqual(runningVariance, 0.75 * 2 + 0.25 * unbiased, accuracy: 1e-4)
            }
        }
    }

    func testInferenceUsesTheRunningStatistics() throws {
        for device in try testDevices() {
            let x = try Tensor([1, 2, 3, 4], shape: [2, 2], on: device)
            let y = try Tensor.empty([2, 2], on: device)
            try x.backend.batchNormInferenceForward(
                x, gamma: Tensor([2, 1], shape: [2], on: device), beta: Tensor([0, 1], shape: [2], on: device),
                runningMean: Tensor([1, 2], shape: [2], on: device), runningVariance: Tensor([4, 1], shape: [2], on: device),
                settings: BatchNormSettings(epsilon: 0), into: y)
            // feature 0: 2·(x − 1)/2 + 0; feature 1: (x − 2)/1 + 1
            XCTAssertEqual(try y.toArray(), [0, 1, 2, 3], "on \(device)")
        }
    }

    func testBatchNormGradientsAgreeWithFiniteDifferences() throws {
        for shape in [[5, 3], [2, 3, 3, 4]] {
            let count = shape.reduce(1, *)
            let x = try Tensor(random.floats(count, -2, 2), shape: shape)
            let gamma = try Tensor(random.floats(3, 0.5, 1.5), shape: [3]), beta = try Tensor(random.floats(3), shape: [3])
            let upstream = try Tensor(random.floats(count), shape: shape)
            func loss() throws -> Double {
                let y = try Tensor.empty(shape), scratch = (try Tensor.empty([3]), try Tensor.empty([3]))
                try HostBackend.shared.batchNormTrainingForward(x, gamma: gamma, beta: beta, runningMean: Tensor.zeros([3]),
                                                                runningVariance: Tensor.ones([3]), settings: BatchNormSettings(),
                                                                into: y, savedMean: scratch.0, savedInverseStd: scratch.1)
                return try weightedSum(y, upstream)
            }
            let result = try batchNorm(try x.toArray(), shape: shape, gamma: try gamma.toArray(), beta: try beta.toArray(),
                                       dy: try upstream.toArray(), on: .host)
            try assertGradient("batch norm dx \(shape)", of: x, analytic: Tensor(result["dx"] ?? [], shape: shape), loss: loss)
            try assertGradient("batch norm dgamma \(shape)", of: gamma, analytic: Tensor(result["dgamma"] ?? [], shape: [3]), loss: loss)
            try assertGradient("batch norm dbeta \(shape)", of: beta, analytic: Tensor(result["dbeta"] ?? [], shape: [3]), loss: loss)
        }
    }

    /// The backward of an inference-mode batch norm (running statistics fixed): finite differences on the
    /// host, and the device against the host on random shapes (batch 1 and odd sizes among them).
    func testInferenceBatchNormGradients() throws {
        func gradients(_ x: [Float], _ dy: [Float], shape: [Int], _ perChannel: [[Float]], on device: Device) throws -> [[Float]] {
            let c = shape[1]
            let tensors = try perChannel.map { try Tensor($0, shape: [c], on: device) }  // γ, β, μ_r, σ²_r
            let (dgamma, dbeta) = (try Tensor.zeros([c], on: device), try Tensor.zeros([c], on: device))
            let dx = try batchNormInferenceBackward(Tensor(x, shape: shape, on: device), dy: Tensor(dy, shape: shape, on: device),
                                                    gamma: tensors[0], runningMean: tensors[2], runningVariance: tensors[3],
                                                    settings: BatchNormSettings(), accumulatingInto: dgamma, dbeta)
            return [try dx.toArray(), try dgamma.toArray(), try dbeta.toArray()]
        }
        for shape in [[5, 3], [2, 3, 3, 4], [1, 3, 5, 5]] {
            let count = shape.reduce(1, *)
            let x = try Tensor(random.floats(count, -2, 2), shape: shape), upstream = try Tensor(random.floats(count), shape: shape)
            let gamma = try Tensor(random.floats(3, 0.5, 1.5), shape: [3]), beta = try Tensor(random.floats(3), shape: [3])
            let (mean, variance) = (try Tensor(random.floats(3), shape: [3]), try Tensor(random.floats(3, 0.2, 2), shape: [3]))
            func loss() throws -> Double {
                try weightedSum(batchNormInference(x, gamma: gamma, beta: beta, runningMean: mean, runningVariance: variance,
                                                   settings: BatchNormSettings()), upstream)
            }
            let result = try gradients(try x.toArray(), try upstream.toArray(), shape: shape,
                                       [try gamma.toArray(), try beta.toArray(), try mean.toArray(), try variance.toArray()], on: .host)
            try assertGradient("inference batch norm dx \(shape)", of: x, analytic: Tensor(result[0], shape: shape), loss: loss)
            try assertGradient("inference batch norm dgamma \(shape)", of: gamma, analytic: Tensor(result[1], shape: [3]), loss: loss)
            try assertGradient("inference batch norm dbeta \(shape)", of: beta, analytic: Tensor(result[2], shape: [3]), loss: loss)
        }
        let gpu = try openCLDevice()
        for trial in 0..<8 {
            let shape = trial % 3 == 0 ? [random.int(1...9), random.int(1...6)]
                : [trial % 4 == 1 ? 1 : random.int(1...4), random.int(1...5), random.int(1...7), random.int(1...7)]
            let (count, c) = (shape.reduce(1, *), shape[1])
            let (x, dy) = (random.floats(count, -3, 3), random.floats(count))
            let perChannel = [random.floats(c, 0.5, 2), random.floats(c), random.floats(c), random.floats(c, 0.2, 2)]
            let host = try gradients(x, dy, shape: shape, perChannel, on: .host)
            let device = try gradients(x, dy, shape: shape, perChannel, on: gpu)
            for (name, (a, b)) in zip(["dx", "dgamma", "dbeta"], zip(device, host)) {
                assertClose(a, b, atol: 1e-4, rtol: 1e-4, "inference batch norm \(name) \(shape)")
            }
        }
    }

    func testLRNMatchesTheHostAndItsGradient() throws {
        let gpu = try openCLDevice()
        for (shape, settings) in [([2, 7, 3, 4], LRNSettings()), ([1, 4, 2, 3], LRNSettings(size: 2, alpha: 0.5, beta: 0.6, k: 1)),
                                  ([3, 5], LRNSettings(size: 3, alpha: 1, beta: 0.75, k: 1))] {
            let count = shape.reduce(1, *)
            let x = try Tensor(random.floats(count, -2, 2), shape: shape), dy = try Tensor(random.floats(count), shape: shape)
            let (y, dx) = (try Tensor.empty(shape), try Tensor.empty(shape))
            try HostBackend.shared.lrnForward(x, settings: settings, into: y)
            try HostBackend.shared.lrnBackward(x, dy: dy, settings: settings, into: dx)
            let (dy_, dx_) = (try Tensor.empty(shape, on: gpu), try Tensor.empty(shape, on: gpu))
            try dy_.backend.lrnForward(x.to(gpu), settings: settings, into: dy_)
            try dx_.backend.lrnBackward(x.to(gpu), dy: dy.to(gpu), settings: settings, into: dx_)
            assertClose(try dy_.toArray(), try y.toArray(), atol: 1e-5, "LRN forward \(shape)")
            assertClose(try dx_.toArray(), try dx.toArray(), atol: 1e-5, "LRN backward \(shape)")
            try assertGradient("LRN dx \(shape)", of: x, analytic: dx) {
                let out = try Tensor.empty(shape)
                try HostBackend.shared.lrnForward(x, settings: settings, into: out)
                return try weightedSum(out, dy)
            }
        }
        // Known answer: one channel window of size 1, α = 1, β = 1, k = 0: b = a / a² = 1/a.
        let y = try Tensor.empty([1, 2])
        try HostBackend.shared.lrnForward(Tensor([2, 4], shape: [1, 2]), settings: LRNSettings(size: 1, alpha: 1, beta: 1, k: 0), into: y)
        XCTAssertEqual(try y.toArray(), [0.5, 0.25])
    }
}
