import Foundation
import XCTest
@testable import Kiln

/// Each optimizer's usual learning rate and settings (PyTorch's and Keras's defaults), as `kiln train` fills
/// them in when they are not given.
final class OptimizerDefaultsTests: XCTestCase {
    private func configured(_ optimizer: String, lrGiven: Float? = nil, _ configure: (inout TrainingConfiguration) -> Void = { _ in })
        -> TrainingConfiguration {
        var configuration = TrainingConfiguration()
        configuration.optimizer = optimizer
        if let lrGiven { configuration.lr = lrGiven }
        configure(&configuration)
        configuration.applyOptimizerDefaults(keepingLearningRate: lrGiven != nil)
        return configuration
    }

    func testTheDefaultsTable() throws {
        let table: [(optimizer: String, lr: Float, rule: UpdateRule)] = [
            ("sgd", 0.05, .sgd()),
            ("momentum", 0.05, .sgd(momentum: 0.9)),
            ("nesterov", 0.05, .sgd(momentum: 0.9, nesterov: true)),
            ("adam", 1e-3, .adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8)),
            ("adamw", 1e-3, .adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-8, decoupledWeightDecay: true)),
            ("rmsprop", 1e-3, .rmsprop(alpha: 0.99, epsilon: 1e-8)),
            ("adagrad", 1e-2, .adagrad(epsilon: 1e-10)),
            ("adadelta", 1, .adadelta(rho: 0.9, epsilon: 1e-6)),
        ]
        for (optimizer, lr, rule) in table {
            let configuration = configured(optimizer)
            XCTAssertEqual(configuration.lr, lr, optimizer)
            XCTAssertEqual(try configuration.updateRule(), rule, optimizer)
            XCTAssertNoThrow(try configuration.validate(), optimizer)
            XCTAssertEqual(configured(optimizer, lrGiven: 0.3).lr, 0.3, "\(optimizer): a given --lr is kept")
        }
        // config.json records the effective settings.
        let adam = configured("adam")
        XCTAssertEqual(adam.betas, [0.9, 0.999])
        XCTAssertEqual(adam.eps, 1e-8)
        XCTAssertEqual(try adam.optimizerDescription(), "adam: lr 0.001, betas 0.9, 0.999, eps 1e-08, weight decay 0.0005")
        XCTAssertEqual(try configured("adadelta").optimizerDescription(), "adadelta: lr 1.0, rho 0.9, eps 1e-06, weight decay 0.0005")
    }

    func testGivenSettingsReachTheRule() throws {
        XCTAssertEqual(try configured("adam") { ($0.betas, $0.eps) = ([0.8, 0.99], 1e-6) }.updateRule(), .adam(beta1: 0.8, beta2: 0.99, epsilon: 1e-6))
        XCTAssertEqual(try configured("rmsprop") { $0.alpha = 0.9 }.updateRule(), .rmsprop(alpha: 0.9, epsilon: 1e-8))
        XCTAssertEqual(try configured("adadelta") { $0.rho = 0.95 }.updateRule(), .adadelta(rho: 0.95, epsilon: 1e-6))
    }

    func testSettingsOfAnotherRuleOrOutOfRangeAreNamedErrors() {
        let cases: [(configure: (inout TrainingConfiguration) -> Void, message: String)] = [
            ({ ($0.optimizer, $0.rho) = ("adam", 0.9) }, "--rho is a setting of adadelta, not of --optimizer adam"),
            ({ $0.eps = 1e-8 }, "--eps is a setting of adam, adamw, rmsprop, adagrad, adadelta, not of --optimizer nesterov"),
            ({ ($0.optimizer, $0.betas) = ("adam", [0.9]) }, "--betas takes two numbers in [0, 1), β₁,β₂ (0.9,0.999), not 0.9"),
            ({ ($0.optimizer, $0.eps) = ("adagrad", 0) }, "--eps must be a positive finite number, not 0.0"),
            ({ ($0.optimizer, $0.alpha) = ("rmsprop", 1) }, "--alpha must be in [0, 1), not 1.0"),
        ]
        for (configure, message) in cases {
            var configuration = TrainingConfiguration()
            configure(&configuration)
            XCTAssertThrowsError(try configuration.validate()) { XCTAssertEqual("\($0)", message) }
        }
    }
}
