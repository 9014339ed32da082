import Foundation
import XCTest
@testable import Kiln

/// The learning-rate range test on a model whose divergence point is known: one weight w under the
/// quadratic loss ½·a·w². Plain SGD multiplies w by (1 − lr·a) each step, so the loss falls for lr < 2/a and
/// grows once lr passes 2/a.
final class LearningRateFinderTests: XCTestCase {
    func testTheTestDivergesPastTheStabilityLimitAndSuggestsARateBelowIt() throws {
        let a: Float = 4  // the limit 2/a is 0.5
        for device in try testDevices() {
            let layer = try Linear(inputFeatures: 1, outputFeatures: 1, bias: false)
            let model = try Sequential { layer }
            layer.weight.value = try Tensor([1], shape: [1, 1])
            try model.move(to: device)
            let quadratic: LossFunction = { output, _ in
                (try output.map(.square).binary(.mul, a / 2).reshaped([1]), try output.binary(.mul, a))
            }
            let trainer = Trainer(model: model, optimizer: Optimizer(model: model, rule: .sgd(), learningRate: 0), loss: quadratic,
                                  seed: 1, measuresAccuracy: false)
            let batch = Batch(inputs: try Tensor([1], shape: [1, 1], on: device), targets: try Tensor([0], shape: [1], on: device), labels: [0])
            let finder = LearningRateFinder(start: 1e-3, end: 100, steps: 80)
            let result = try finder.run(trainer: trainer) { _ in [batch, batch, batch, batch] }

            XCTAssertTrue(result.diverged, "\(device)")
            let last = try XCTUnwrap(result.points.last)
            XCTAssertGreaterThan(last.rate, 2 / a, "\(device): no divergence while every step shrinks the weight")
            XCTAssertLessThan(last.rate, 100, "\(device): it stops before the end of the range")
            XCTAssertEqual(result.points.map(\.rate), (0..<result.points.count).map(finder.rate(at:)), "\(device): the rates")
            let suggestion = try XCTUnwrap(result.suggestion, "\(device)")
            XCTAssertLessThan(suggestion, 2 / a, "\(device)")
            XCTAssertGreaterThan(suggestion, 1e-2, "\(device): where the loss falls fastest, not at the start")
            // The losses are the weight's: w_{i+1} = (1 − lr_i·a)·w_i.
            var w: Double = 1
            for point in result.points.prefix(40) {
                XCTAssertEqual(Double(point.loss), Double(a) / 2 * w * w, accuracy: 1e-5 * max(1, Double(a) / 2 * w * w), "\(device)")
                w *= 1 - Double(point.rate) * Double(a)
            }
            // Smoothed as fastai does: a bias-corrected exponential average with β = 0.98.
            var average = 0.0
            for (i, point) in result.points.enumerated() {
                average = 0.98 * average + 0.02 * Double(point.loss)
                XCTAssertEqual(point.smoothedLoss, average / (1 - pow(0.98, Double(i + 1))), accuracy: 1e-9 * max(1, point.smoothedLoss))
            }
        }
    }

    func testTheSuggestionIsTheSteepestFallBeforeTheLowestLoss() {
        let points = [(1e-3, 2.0), (1e-2, 1.5), (1e-1, 0.5), (1.0, 0.4), (10.0, 3.0)].map {
            LearningRateFinder.Point(rate: Float($0.0), loss: Float($0.1), smoothedLoss: $0.1)
        }
        XCTAssertEqual(LearningRateFinder.steepestDescent(points), Float(1e-2), "the steepest fall is around 1e-2 to 1e-1")
        XCTAssertNil(LearningRateFinder.steepestDescent(Array(points.prefix(2))), "too few points")
    }

    func testBadRangesAreNamedErrors() {
        XCTAssertThrowsError(try LearningRateFinder(start: 1, end: 0.1).validate()) {
            XCTAssertEqual("\($0)", "lr-find needs 0 < --start < --end, not --start 1.0 --end 0.1")
        }
        XCTAssertThrowsError(try LearningRateFinder(steps: 3).validate()) { XCTAssertEqual("\($0)", "lr-find needs at least 5 --steps, not 3") }
    }
}
