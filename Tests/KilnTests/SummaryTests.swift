import XCTest
@testable import Kiln

final class SummaryTests: XCTestCase {
    func testLeNetParameterCounts() throws {
        let classic = try LeNet5().summary(inputShape: [1, 32, 32])
        XCTAssertEqual(classic.trainableParameters, 61_706)
        XCTAssertEqual(classic.rows.filter { $0.trainableParameters > 0 }.map(\.trainableParameters), [156, 2_416, 48_120, 10_164, 850])
        let bn = try LeNetBN().summary(inputShape: [1, 28, 28])
        XCTAssertEqual(bn.trainableParameters, 61_706 + 2 * (6 + 16))
        XCTAssertEqual(bn.nonTrainableElements, 2 * (6 + 16) + 2, "running mean and variance, and two batch counters")
        XCTAssertEqual(bn.rows.first { $0.name == "conv2" }?.outputShape, [1, 16, 10, 10])
        XCTAssertEqual(try LeNetBN().namedParameters.map(\.name).prefix(7),
                       ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"])
    }

    /// The Inception module example: 28×28×256 in, 1×1/128, 3×3/192, 5×5/96 and a 3×3 pool.
    func testInceptionModuleMultiplyAccumulates() throws {
        func branch(_ layers: [any Layer]) -> NamedLayer { Sequential(layers.map { NamedLayer(name: nil, layer: $0) }).named("b") }
        let naive = try Concat {
            try Conv2D(inputChannels: 256, outputChannels: 128, kernelSize: 1)
            try Conv2D(inputChannels: 256, outputChannels: 192, kernelSize: 3, padding: 1)
            try Conv2D(inputChannels: 256, outputChannels: 96, kernelSize: 5, padding: 2)
            try MaxPool2D(window: 3, stride: 1, padding: 1)
        }
        let naiveSummary = try naive.summary(inputShape: [256, 28, 28])
        XCTAssertEqual(naiveSummary.multiplyAccumulates, 854_196_224)
        XCTAssertEqual(naiveSummary.rows.count, 4)
        let bottleneck = try Concat {
            try Conv2D(inputChannels: 256, outputChannels: 128, kernelSize: 1)
            branch([try Conv2D(inputChannels: 256, outputChannels: 64, kernelSize: 1),
                    try Conv2D(inputChannels: 64, outputChannels: 192, kernelSize: 3, padding: 1)])
            branch([try Conv2D(inputChannels: 256, outputChannels: 64, kernelSize: 1),
                    try Conv2D(inputChannels: 64, outputChannels: 96, kernelSize: 5, padding: 2)])
            branch([try MaxPool2D(window: 3, stride: 1, padding: 1), try Conv2D(inputChannels: 256, outputChannels: 64, kernelSize: 1)])
        }
        let summary = try bottleneck.summary(inputShape: [256, 28, 28])
        XCTAssertEqual(summary.multiplyAccumulates, 271_351_808)
        XCTAssertEqual(try bottleneck.outputShape(for: [1, 256, 28, 28]), [1, 480, 28, 28])
    }

    func testAnInputTooSmallNamesTheLayerAndAnUnknownModelListsTheZoo() throws {
        XCTAssertThrowsError(try LeNet5(inputSize: 32).outputShape(for: [1, 1, 12, 12])) { error in
            XCTAssertTrue("\(error)".contains("Conv2D(6 → 16") || "\(error)".contains("MaxPool2D"), "\(error)")
        }
        XCTAssertThrowsError(try ModelZoo.make("resnet9000", inputShape: [1, 28, 28], classes: 10)) { error in
            XCTAssertTrue("\(error)".contains("lenet-bn") && "\(error)".contains("lenet5"), "\(error)")
        }
    }
}
