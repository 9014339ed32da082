import XCTest
@testable import Kiln

final class OptimizerTests: XCTestCase {
    /// Two updates of a one-element parameter p = 1 with gradient 0.5 each time; returns p after each.
    private func twoSteps(_ rule: UpdateRule, lr: Float, regularization: Regularization = Regularization(), on device: Device) throws -> [Float] {
        let layer = try Linear(inputFeatures: 1, outputFeatures: 1, bias: false)
        try layer.move(to: device)
        try layer.weight.value.fill(1)
        let optimizer = Optimizer(model: layer, rule: rule, learningRate: lr, regularization: regularization)
        var values: [Float] = []
        for _ in 0..<2 {
            layer.weight.gradient = try Tensor([0.5], shape: [1, 1], on: device)
            try optimizer.step()
            values.append(try layer.weight.value.item())
            XCTAssertEqual(try layer.weight.gradient?.item(), 0.5, "the gradient is left unchanged")
        }
        return values
    }

    func testEveryRuleMatchesItsHandComputedSteps() throws {
        let cases: [(String, UpdateRule, Float, Regularization, [Float])] = [
            // v = 0.5 → p = 1 − 0.1·0.5; v = 0.9·0.5 + 0.5 = 0.95 → p = 0.95 − 0.095
            ("SGD momentum", .sgd(momentum: 0.9), 0.1, Regularization(), [0.95, 0.855]),
            // p −= 0.1·(0.5 + 0.9·0.5) = 0.095; then 0.1·(0.5 + 0.9·0.95) = 0.1355
            ("SGD Nesterov", .sgd(momentum: 0.9, nesterov: true), 0.1, Regularization(), [0.905, 0.7695]),
            // g = 0.5 + 0.1·1 = 0.6 → 0.94; g = 0.5 + 0.1·0.94 = 0.594 → 0.8806
            ("SGD weight decay", .sgd(), 0.1, Regularization(weightDecay: 0.1), [0.94, 0.8806]),
            // g = 0.5 + 0.2·sign(p) = 0.7 → 0.93, 0.86
            ("SGD L1", .sgd(), 0.1, Regularization(l1: 0.2), [0.93, 0.86]),
            // s = 0.25 → p −= 0.1·0.5/0.5; s = 0.5 → p −= 0.1·0.5/0.70711
            ("AdaGrad", .adagrad(epsilon: 0), 0.1, Regularization(), [0.9, 0.829289]),
            // s = 0.025, Δ = sqrt(1e-6)/sqrt(0.025001)·0.5 = 0.0031622; d = 0.1·Δ²; s = 0.0475,
            // Δ₂ = sqrt(d + 1e-6)/sqrt(0.047501)·0.5 = sqrt(1.99996e-6)/0.2179472·0.5 = 0.0032444
            ("Adadelta", .adadelta(rho: 0.9, epsilon: 1e-6), 1, Regularization(), [0.9968378, 0.9935934]),
            // s = 0.025 → p −= 0.01·0.5/0.158114; s = 0.0475 → p −= 0.01·0.5/0.217945
            ("RMSProp", .rmsprop(alpha: 0.9, epsilon: 0), 0.01, Regularization(), [0.9683772, 0.9454357]),
            // m̂ = 0.5, v̂ = 0.25 at both steps (constant gradient): p −= 0.1·0.5/0.5 each step
            ("Adam", .adam(), 0.1, Regularization(), [0.9, 0.8]),
            // p ← p·(1 − 0.1·0.1), then −0.1: 0.99 − 0.1 = 0.89; 0.89·0.99 − 0.1 = 0.7811
            ("AdamW", .adam(decoupledWeightDecay: true), 0.1, Regularization(weightDecay: 0.1), [0.89, 0.7811]),
        ]
        for device in try testDevices() {
            for (name, rule, lr, regularization, expected) in cases {
                let values = try twoSteps(rule, lr: lr, regularization: regularization, on: device)
                for (value, target) in zip(values, expected) {
                    XCTAssertEqual(value, target, accuracy: 2e-6, "\(name) on \(device): \(values)")
                }
            }
        }
    }

    func testTheDeviceMatchesTheHostOnRandomTensors() throws {
        var random = TestRandom(seed: 3)
        let gpu = try openCLDevice()
        let rules: [UpdateRule] = [.sgd(momentum: 0.8, nesterov: true), .adagrad(), .adadelta(), .rmsprop(momentum: 0.5), .adam(), .adam(decoupledWeightDecay: true)]
        for rule in rules {
            let shape = [random.int(1...9), random.int(1...13)]
            let values = random.floats(shape.reduce(1, *)), gradients = random.floats(shape.reduce(1, *))
            var results: [[Float]] = []
            for device in [Device.host, gpu] {
                let parameter = try Tensor(values, shape: shape, on: device), gradient = try Tensor(gradients, shape: shape, on: device)
                let state = try (0..<rule.stateCount).map { _ in try Tensor.zeros(shape, on: device) }
                for step in 1...3 {
                    try parameter.backend.applyUpdate(rule, parameter: parameter, gradient: gradient, state: state, learningRate: 0.01,
                                                      step: step, regularization: Regularization(weightDecay: 0.01, l1: 0.001))
                }
                results.append(try parameter.toArray())
            }
            assertClose(results[1], results[0], atol: 1e-6, "\(rule) \(shape)")
        }
    }

    func testClippingAndMaxNorm() throws {
        for device in try testDevices() {
            let layer = try Linear(inputFeatures: 2, outputFeatures: 2, bias: false)
            try layer.move(to: device)
            try layer.weight.value.assign(Tensor([0, 0, 3, 4], shape: [2, 2]))
            layer.weight.gradient = try Tensor([3, 4, 0, 0], shape: [2, 2], on: device)  // global norm 5
            let optimizer = Optimizer(model: layer, rule: .sgd(), learningRate: 1)
            optimizer.clipGradientNorm = 1
            optimizer.maxNorm = 1
            try optimizer.step()
            // Row 0: −(3, 4)/5 (clipped gradient); row 1: (3, 4) renormalised to norm 1.
            assertClose(try layer.weight.value.toArray(), [-0.6, -0.8, 0.6, 0.8], atol: 1e-5, "clip and max-norm on \(device)")
        }
    }

    func testStateRoundTripsThroughACheckpoint() throws {
        let layer = try Linear(inputFeatures: 3, outputFeatures: 2)
        let optimizer = Optimizer(model: layer, rule: .adam(), learningRate: 0.1)
        for (_, parameter) in layer.namedParameters { parameter.gradient = try Tensor.ones(parameter.value.shape) }
        try optimizer.step()
        let state = try optimizer.state()
        XCTAssertEqual(state.names.sorted(), ["bias.exp_avg", "bias.exp_avg_sq", "weight.exp_avg", "weight.exp_avg_sq"])
        let restored = Optimizer(model: layer, rule: .adam(), learningRate: 0.1)
        try restored.loadState(state, source: "test")
        XCTAssertEqual(restored.stepCount, 1)
        XCTAssertEqual(try restored.state().floats("weight.exp_avg"), state.floats("weight.exp_avg"))
    }

    func testSchedules() {
        XCTAssertEqual(LearningRateScheduler(schedule: .step(every: 2, gamma: 0.5), baseLearningRate: 1).learningRate(epoch: 5), 0.25)
        let cosine = LearningRateScheduler(schedule: .cosine(epochs: 10, minimum: 0.1), baseLearningRate: 1.1)
        XCTAssertEqual(cosine.learningRate(epoch: 0), 1.1, accuracy: 1e-6)
        XCTAssertEqual(cosine.learningRate(epoch: 5), 0.6, accuracy: 1e-6)
        XCTAssertEqual(cosine.learningRate(epoch: 10), 0.1, accuracy: 1e-6)
        let plateau = LearningRateScheduler(schedule: .reduceOnPlateau(factor: 0.5, patience: 1), baseLearningRate: 1)
        for loss in [1.0, 0.9, 0.95, 0.97] { plateau.epochEnded(validationLoss: loss) }
        XCTAssertEqual(plateau.learningRate(epoch: 4), 0.5)
    }
}
