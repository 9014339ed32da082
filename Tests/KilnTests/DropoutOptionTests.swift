import Foundation
import XCTest
@testable import Kiln

/// `kiln train --dropout P`: the rate of every dropout layer of a zoo model, which `kiln models` lists.
final class DropoutOptionTests: XCTestCase {
    /// What the zoo says of each model's dropout is what its layers hold (VGG-11 stands for the VGGs, which
    /// one loop builds).
    func testTheZooListsTheDropoutRatesItsModelsHave() throws {
        for entry in ModelZoo.entries where !["vgg13", "vgg16", "vgg19", "vgg13-bn", "vgg16-bn", "vgg19-bn"].contains(entry.name) {
            let input = entry.name == "autoencoder" || entry.name.hasPrefix("lenet") || entry.name == "smallcnn" ? [1, 28, 28] : [3, 32, 32]
            let model = try ModelZoo.make(entry.name, inputShape: input, classes: 10)
            let rates = model.namedLayers.compactMap { ($0.layer as? Dropout)?.probability }
            let distinct = Array(Set(rates)).sorted().map { "\($0)" }.joined(separator: " and ")
            XCTAssertEqual(entry.dropout, rates.isEmpty ? nil : distinct, entry.name)
        }
    }

    func testTheOptionSetsEveryRateAndTrainingDropsThatShare() throws {
        var configuration = TrainingConfiguration()
        (configuration.model, configuration.dropout) = ("smallcnn", 0.3)
        try configuration.validate()
        let model = try configuration.makeModel(inputShape: [1, 28, 28], classes: 10)
        let layers = model.namedLayers.compactMap { $0.layer as? Dropout }
        XCTAssertEqual(layers.map(\.probability), [0.3, 0.3], "both of smallcnn's rates (0.25 and 0.5)")
        for device in try testDevices() {
            let ones = try Tensor([Float](repeating: 1, count: 20_000), shape: [1, 20_000], on: device)
            let kept = try layers[0].forward(ones, ForwardContext(training: true, step: 3, seed: 1)).toArray()
            let dropped = Float(kept.filter { $0 == 0 }.count) / Float(kept.count)
            XCTAssertEqual(dropped, 0.3, accuracy: 0.015, "\(device)")
            XCTAssertTrue(kept.allSatisfy { $0 == 0 || abs($0 - 1 / 0.7) < 1e-5 }, "\(device): survivors scaled by 1/(1 − p)")
        }
    }

    func testAModelWithoutDropoutAndABadRateAreNamedErrors() {
        var configuration = TrainingConfiguration()
        (configuration.model, configuration.dropout) = ("resnet18", 0.2)
        XCTAssertThrowsError(try configuration.makeModel(inputShape: [3, 32, 32], classes: 10)) {
            XCTAssertEqual("\($0)", "--dropout 0.2: resnet18 has no dropout layer; the models with dropout are lenet-bn, lenet-bn2, smallcnn, alexnet, "
                           + "vgg11, vgg11-bn, vgg13, vgg13-bn, vgg16, vgg16-bn, vgg19, vgg19-bn, googlenet")
        }
        configuration.dropout = 1
        XCTAssertThrowsError(try configuration.validate()) {
            XCTAssertEqual("\($0)", "--dropout must be at least 0 and below 1, not 1.0")
        }
    }
}
