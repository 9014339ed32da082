import Foundation
import XCTest
@testable import Kiln

/// `kiln train --init SCHEME`: every convolution and linear weight drawn from the scheme with its own fans,
/// biases zero, the rest (batch norm) as it was.
final class InitializationSchemeTests: XCTestCase {
    private func model(_ scheme: String?) throws -> Sequential {
        var configuration = TrainingConfiguration()
        (configuration.model, configuration.initScheme) = ("lenet-bn", scheme)
        try configuration.validate()
        return try configuration.makeModel(inputShape: [1, 28, 28], classes: 10)
    }

    private func values(_ model: Sequential, _ name: String) throws -> [Float] {
        try XCTUnwrap(model.namedParameters.first { $0.name == name }?.parameter.value).toArray()
    }

    func testEachSchemeDrawsWithItsOwnSpread() throws {
        // fc1 is 400 → 120: fan_in 400, fan_out 120, 48,000 weights (a sample standard deviation within 2 %).
        let (fanIn, fanOut): (Float, Float) = (400, 120)
        let cases: [(scheme: String, std: Float, bound: Float?)] = [
            ("xavier-uniform", (6 / (fanIn + fanOut)).squareRoot() / Float(3).squareRoot(), (6 / (fanIn + fanOut)).squareRoot()),
            ("xavier-normal", (2 / (fanIn + fanOut)).squareRoot(), nil),
            ("he-uniform", (6 / fanIn).squareRoot() / Float(3).squareRoot(), (6 / fanIn).squareRoot()),
            ("he-normal", (2 / fanIn).squareRoot(), nil),
            ("lecun", (1 / fanIn).squareRoot(), nil),
        ]
        let defaults = try model(nil)
        for (scheme, std, bound) in cases {
            let network = try model(scheme)
            let weights = try values(network, "fc1.weight")
            let mean = weights.reduce(0, +) / Float(weights.count)
            let sampleStd = (weights.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(weights.count)).squareRoot()
            XCTAssertEqual(sampleStd, std, accuracy: 0.02 * std, scheme)
            XCTAssertEqual(mean, 0, accuracy: 3 * std / Float(weights.count).squareRoot(), scheme)
            if let bound { XCTAssertLessThanOrEqual(weights.map(abs).max() ?? 0, bound, scheme) }
            for name in ["conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias", "fc3.bias"] {
                XCTAssertTrue(try values(network, name).allSatisfy { $0 == 0 }, "\(scheme): \(name) is zero")
            }
            XCTAssertEqual(try values(network, "bn1.weight"), try values(defaults, "bn1.weight"), "\(scheme): batch norm keeps its own")
            XCTAssertEqual(try values(network, "fc1.weight"), try values(try model(scheme), "fc1.weight"), "\(scheme): seeded")
        }
        // `default` is what a model starts with anyway.
        for (name, parameter) in try model("default").namedParameters {
            XCTAssertEqual(try parameter.value.toArray(), try values(defaults, name), name)
        }
    }

    func testAnUnknownSchemeListsTheKnownOnes() {
        var configuration = TrainingConfiguration()
        configuration.initScheme = "glorot"
        XCTAssertThrowsError(try configuration.validate()) {
            XCTAssertEqual("\($0)", "unknown initialisation 'glorot'; use xavier-uniform, xavier-normal, he-uniform, he-normal, lecun, default, or a safetensors file")
        }
    }
}
