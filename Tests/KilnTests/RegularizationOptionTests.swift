import Foundation
import XCTest
@testable import Kiln

/// `kiln train`'s regularisation options, through the optimiser a configuration makes: each changes one
/// SGD step as its definition says, on the host and on OpenCL.
final class RegularizationOptionTests: XCTestCase {
    // A Linear(3 → 2) layer's weights and bias, and the gradients of one step.
    private let weight: [Float] = [1, -2, 0.5, 0.2, 0, -3], bias: [Float] = [0.5, -1]
    private let weightGradient: [Float] = [0.1, 0.2, -0.3, 0.4, -0.5, 0.6], biasGradient: [Float] = [1, -2]
    private let lr: Float = 0.5

    /// One step of plain SGD at `lr` with `configure` applied; the weight and bias after it.
    private func step(on device: Device, _ configure: (inout TrainingConfiguration) -> Void) throws -> (weight: [Float], bias: [Float]) {
        let layer = try Linear(inputFeatures: 3, outputFeatures: 2)
        let model = try Sequential { layer }
        let bias = try XCTUnwrap(layer.bias)
        layer.weight.value = try Tensor(weight, shape: [2, 3], on: device)
        bias.value = try Tensor(self.bias, shape: [2], on: device)
        layer.weight.gradient = try Tensor(weightGradient, shape: [2, 3], on: device)
        bias.gradient = try Tensor(biasGradient, shape: [2], on: device)
        var configuration = TrainingConfiguration()
        (configuration.optimizer, configuration.lr, configuration.weightDecay) = ("sgd", lr, 0)
        configure(&configuration)
        try configuration.validateValues()
        try configuration.makeOptimizer(for: model).step()
        return (try layer.weight.value.toArray(), try bias.value.toArray())
    }

    private func sign(_ x: Float) -> Float { x > 0 ? 1 : x < 0 ? -1 : 0 }

    func testL1AddsTheSignOfEachParameterTimesLambda() throws {
        for device in try testDevices() {
            let (w, b) = try step(on: device) { $0.l1 = 0.1 }
            assertClose(w, zip(weight, weightGradient).map { $0 - lr * ($1 + 0.1 * sign($0)) }, "\(device) weight")
            assertClose(b, zip(bias, biasGradient).map { $0 - lr * ($1 + 0.1 * sign($0)) }, "\(device) bias")
        }
    }

    func testClippingScalesAllGradientsTogetherToTheNorm() throws {
        let norm = (weightGradient + biasGradient).map { $0 * $0 }.reduce(0, +).squareRoot()  // √5.91 ≈ 2.43
        let factor = 1 / (norm + 1e-6)
        for device in try testDevices() {
            let (w, b) = try step(on: device) { $0.clipGradNorm = 1 }
            assertClose(w, zip(weight, weightGradient).map { $0 - lr * $1 * factor }, "\(device) weight")
            assertClose(b, zip(bias, biasGradient).map { $0 - lr * $1 * factor }, "\(device) bias")
            // A limit above the norm leaves the step as it is.
            let unclipped = try step(on: device) { $0.clipGradNorm = 3 }
            assertClose(unclipped.weight, zip(weight, weightGradient).map { $0 - lr * $1 }, "\(device): no clipping below the limit")
        }
    }

    func testMaxNormScalesEachWeightRowAfterTheUpdate() throws {
        let updated = zip(weight, weightGradient).map { $0 - lr * $1 }
        let rows = [Array(updated[0..<3]), Array(updated[3..<6])]
        let expected = rows.flatMap { row -> [Float] in
            let norm = row.map { $0 * $0 }.reduce(0, +).squareRoot()
            return row.map { $0 * min(1, 3 / (norm + 1e-7)) }
        }
        let norms = rows.map { $0.map { $0 * $0 }.reduce(0, +).squareRoot() }
        XCTAssertTrue(norms[0] < 3 && norms[1] > 3, "one row within the limit, one beyond it: \(norms)")
        for device in try testDevices() {
            let (w, b) = try step(on: device) { $0.maxNorm = 3 }
            assertClose(w, expected, "\(device) weight")
            assertClose(b, zip(bias, biasGradient).map { $0 - lr * $1 }, "\(device): a bias (one dimension) is not constrained")
        }
    }

    func testNoWeightDecayOnBiasLeavesTheBiasUndecayed() throws {
        for device in try testDevices() {
            let (w, b) = try step(on: device) { ($0.weightDecay, $0.noWeightDecayOn) = (0.1, "bias") }
            assertClose(w, zip(weight, weightGradient).map { $0 - lr * ($1 + 0.1 * $0) }, "\(device) weight")
            assertClose(b, zip(bias, biasGradient).map { $0 - lr * $1 }, "\(device) bias")
        }
    }

    /// On LeNet-BN with zero gradients a step is the decay alone: p ← (1 − lr·wd)·p, except for the exempt
    /// kinds, which stay as they were.
    func testTheExemptKindsAreTheBiasesAndTheBatchNormParameters() throws {
        for device in try testDevices() {
            for kinds in ["bias", "norm", "bias,norm"] {
                let model = try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10)
                try model.move(to: device)
                let learnable = model.namedParameters.filter { !$0.parameter.isBuffer }
                for (_, parameter) in learnable { parameter.gradient = try .zeros(parameter.value.shape, on: device) }
                let before = try learnable.map { try $0.parameter.value.toArray() }
                var configuration = TrainingConfiguration()
                (configuration.optimizer, configuration.lr, configuration.weightDecay, configuration.noWeightDecayOn) = ("sgd", 1, 0.1, kinds)
                try configuration.makeOptimizer(for: model).step()
                for ((name, parameter), old) in zip(learnable, before) {
                    let isBias = name.hasSuffix(".bias"), isNorm = name.hasPrefix("bn")
                    let exempt = (kinds.contains("bias") && isBias) || (kinds.contains("norm") && isNorm)
                    assertClose(try parameter.value.toArray(), old.map { exempt ? $0 : 0.9 * $0 }, "\(device) \(kinds): \(name)")
                }
            }
        }
    }

    /// The options are recorded in config.json, so a resumed run keeps them.
    func testTheOptionsAreRecordedForResume() throws {
        var configuration = TrainingConfiguration()
        (configuration.l1, configuration.maxNorm, configuration.clipGradNorm, configuration.noWeightDecayOn) = (1e-5, 3, 1.5, "bias,norm")
        let decoded = try JSONDecoder().decode(TrainingConfiguration.self, from: try configuration.prettyJSON())
        XCTAssertEqual(decoded, configuration)
        // A config.json from before these options decodes with none of them.
        let old = try JSONDecoder().decode(TrainingConfiguration.self, from: try TrainingConfiguration().prettyJSON())
        XCTAssertNil(old.l1 ?? old.maxNorm ?? old.clipGradNorm)
        XCTAssertNil(old.noWeightDecayOn)
    }
}
