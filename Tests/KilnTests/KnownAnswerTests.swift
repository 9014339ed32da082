import Foundation
import XCTest
@testable import Kiln

/// Values and gradients computed by PyTorch in float64 (Fixtures/known_answers.py writes the fixture), for
/// the ops whose host code mirrors its kernel line for line: there a formula wrong in both would pass every
/// host-versus-device comparison, but not these. Every case runs on the host and on OpenCL.
final class KnownAnswerTests: XCTestCase {
    private struct Answers: Decodable {
        struct ActivationCase: Decodable { var activation: String, x: [Float], dy: [Float], y: [Float], dx: [Float] }
        struct LRNCase: Decodable {
            var size: Int, alpha: Float, beta: Float, k: Float, shape: [Int], x: [Float], dy: [Float], y: [Float], dx: [Float]
        }
        struct LossCase: Decodable {
            var loss: String, shape: [Int], input: [Float], target: [Float], value: Float, gradient: [Float], output: [Float]?
        }
        struct OptimizerCase: Decodable {
            var rule: String, lr: Float, weightDecay: Float, l1: Float, start: [Float], gradients: [[Float]], final: [Float]
        }
        var activations: [ActivationCase]
        var lrn: [LRNCase]
        var losses: [LossCase]
        var optimizers: [OptimizerCase]
    }

    private static let answers: Answers? = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appending(path: "Fixtures/known_answers.json")
        return (try? Data(contentsOf: url)).flatMap { try? JSONDecoder().decode(Answers.self, from: $0) }
    }()

    private func load() throws -> Answers { try XCTUnwrap(Self.answers, "Fixtures/known_answers.json is missing or unreadable") }

    func testActivationsAndTheirGradients() throws {
        let activations: [String: Activation] = [
            "relu": .relu, "leakyReLU(0.1)": .leakyReLU(slope: 0.1), "elu(0.7)": .elu(alpha: 0.7), "sigmoid": .sigmoid,
            "tanh": .tanh, "softplus": .softplus, "swish": .swish, "relu6": .relu6,
        ]
        let cases = try load().activations
        XCTAssertEqual(Set(cases.map(\.activation)), Set(activations.keys), "every activation has a known answer")
        for device in try testDevices() {
            for c in cases {
                let activation = try XCTUnwrap(activations[c.activation])
                let x = try Tensor(c.x, shape: [c.x.count], on: device), dy = try Tensor(c.dy, shape: [c.dy.count], on: device)
                assertClose(try x.activated(activation).toArray(), c.y, atol: 1e-6, rtol: 1e-5, "\(c.activation) on \(device)")
                assertClose(try x.activationGradient(activation, dy: dy).toArray(), c.dx, atol: 1e-6, rtol: 1e-5,
                            "\(c.activation) gradient on \(device)")
            }
        }
    }

    func testLocalResponseNormWithSeveralSizesAndConstants() throws {
        let cases = try load().lrn
        XCTAssertGreaterThan(Set(cases.map(\.size)).count, 2, "several window sizes, odd and even")
        for device in try testDevices() {
            for c in cases {
                let settings = LRNSettings(size: c.size, alpha: c.alpha, beta: c.beta, k: c.k)
                let x = try Tensor(c.x, shape: c.shape, on: device), dy = try Tensor(c.dy, shape: c.shape, on: device)
                assertClose(try localResponseNorm(x, settings: settings).toArray(), c.y, atol: 1e-6, rtol: 1e-5, "LRN \(settings) on \(device)")
                assertClose(try localResponseNormBackward(x, dy: dy, settings: settings).toArray(), c.dx, atol: 1e-6, rtol: 1e-4,
                            "LRN \(settings) gradient on \(device)")
            }
        }
    }

    func testLossesAndSoftmax() throws {
        let cases = try load().losses
        for device in try testDevices() {
            for c in cases {
                let input = try Tensor(c.input, shape: c.shape, on: device)
                let target = try Tensor(c.target, shape: c.target.count == c.input.count ? c.shape : [c.target.count], on: device)
                let context = "\(c.loss) on \(device)"
                switch c.loss {
                case "softmax", "log-softmax":
                    let logarithm = c.loss == "log-softmax"
                    let y = try logarithm ? input.logSoftmax() : input.softmax()
                    assertClose(try y.toArray(), try XCTUnwrap(c.output), atol: 1e-6, rtol: 1e-5, context)
                    let dx = try Tensor.empty(c.shape, on: device)
                    try device.backend().softmaxBackward(y: y, dy: target, logarithm: logarithm, into: dx)
                    assertClose(try dx.toArray(), c.gradient, atol: 1e-6, rtol: 1e-5, "\(context) gradient")
                    continue
                case "cross-entropy labels", "cross-entropy probabilities":
                    try check(crossEntropy(logits: input, targets: target), c, context)
                case "nll":
                    try check(negativeLogLikelihood(logProbabilities: input, labels: target), c, context)
                case "mse":
                    try check(meanSquaredError(prediction: input, target: target), c, context)
                case "bce-with-logits":
                    try check(binaryCrossEntropyWithLogits(logits: input, target: target), c, context)
                default:
                    XCTFail("unknown loss \(c.loss) in the fixture")
                }
            }
        }
    }

    private func check(_ result: LossResult, _ c: Answers.LossCase, _ context: String) throws {
        assertClose([try result.loss.item()], [c.value], atol: 1e-6, rtol: 1e-5, context)
        assertClose(try result.gradient.toArray(), c.gradient, atol: 1e-7, rtol: 1e-5, "\(context) gradient")
    }

    /// Five steps with a different gradient each, for every rule plain, with L2 weight decay and with L1 too:
    /// through every path of both backends (the host's vectorised SGD-momentum loop takes weight decay
    /// without L1; the general loop and the OpenCL kernel take the rest).
    func testOptimizerRulesOverSeveralSteps() throws {
        let rules: [String: UpdateRule] = [
            "sgd": .sgd(), "momentum": .sgd(momentum: 0.9), "nesterov": .sgd(momentum: 0.9, nesterov: true),
            "adagrad": .adagrad(), "adadelta": .adadelta(), "rmsprop": .rmsprop(), "rmsprop-momentum": .rmsprop(momentum: 0.5),
            "adam": .adam(), "adamw": .adam(decoupledWeightDecay: true),
        ]
        let cases = try load().optimizers
        XCTAssertEqual(Set(cases.map(\.rule)), Set(rules.keys), "every rule has a known answer")
        XCTAssertTrue(cases.contains { $0.rule == "momentum" && $0.weightDecay > 0 && $0.l1 == 0 }, "the fast SGD loop with decay")
        for device in try testDevices() {
            let backend = try device.backend()
            for c in cases {
                let rule = try XCTUnwrap(rules[c.rule])
                let shape = [c.start.count]
                let parameter = try Tensor(c.start, shape: shape, on: device)
                let state = try (0..<rule.stateCount).map { _ in try Tensor.zeros(shape, on: device) }
                for (index, gradient) in c.gradients.enumerated() {
                    try backend.applyUpdate(rule, parameter: parameter, gradient: Tensor(gradient, shape: shape, on: device), state: state,
                                            learningRate: c.lr, step: index + 1,
                                            regularization: Regularization(weightDecay: c.weightDecay, l1: c.l1))
                }
                assertClose(try parameter.toArray(), c.final, atol: 1e-5, rtol: 1e-4,
                            "\(c.rule) (weight decay \(c.weightDecay), L1 \(c.l1)) after \(c.gradients.count) steps on \(device)")
            }
        }
    }
}
