import XCTest
@testable import Kiln

final class ModelZooTests: XCTestCase {
    func testParameterTotalsMatchTheLiterature() throws {
        XCTAssertEqual(try ResNet18().summary(inputShape: [3, 224, 224]).trainableParameters, 11_689_512)
        XCTAssertEqual(try ResNet50().summary(inputShape: [3, 224, 224]).trainableParameters, 25_557_032)
        XCTAssertEqual(try VGG(depth: 16).summary(inputShape: [3, 224, 224]).trainableParameters, 138_357_544)
        let googlenet = try GoogLeNet().summary(inputShape: [3, 224, 224])
        XCTAssertEqual(googlenet.trainableParameters, 6_998_552)
        XCTAssertEqual(googlenet.rows.first { $0.name == "inception3a.branch1.conv" }?.outputShape, [1, 64, 28, 28])
        XCTAssertEqual(googlenet.rows.first { $0.name == "inception5b.branch4.conv" }?.outputShape, [1, 128, 7, 7])
        let mobilenet = try MobileNet().summary(inputShape: [3, 224, 224])
        XCTAssertEqual(mobilenet.trainableParameters, 4_231_976)
        XCTAssertEqual(mobilenet.rows.first { $0.name == "features.13.3" }?.outputShape, [1, 1024, 7, 7])
        let alexnet = try AlexNet().summary(inputShape: [3, 227, 227])
        XCTAssertEqual(alexnet.trainableParameters, 62_378_344)
        XCTAssertEqual(alexnet.rows.filter { $0.trainableParameters > 0 }.map(\.trainableParameters),
                       [34_944, 614_656, 885_120, 1_327_488, 884_992, 37_752_832, 16_781_312, 4_097_000])
        // Spatial sizes after each convolution and pooling: 55, 27, 27, 13, 13, 13, 13, 6.
        let sizes = alexnet.rows.filter { $0.type == "Conv2D" || $0.type == "MaxPool2D" }.map { $0.outputShape[2] }
        XCTAssertEqual(sizes, [55, 27, 27, 13, 13, 13, 13, 6])
    }

    func testResNetNamesFollowTorchvision() throws {
        let names = Set(try ResNet18(classes: 10, stem: .smallImage).namedParameters.map(\.name))
        for name in ["conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.1.bn2.bias", "layer2.0.downsample.0.weight",
                     "layer2.0.downsample.1.running_var", "layer4.1.conv2.weight", "fc.weight", "fc.bias"] {
            XCTAssertTrue(names.contains(name), name)
        }
        XCTAssertFalse(names.contains("layer1.0.downsample.0.weight"), "no projection where the shapes already match")
        XCTAssertEqual(try ModelZoo.make("vgg11-bn", inputShape: [3, 32, 32], classes: 10).outputShape(for: [2, 3, 32, 32]), [2, 10])
    }

    /// Residual, Inception and depthwise-separable networks: forward and backward agree between the OpenCL
    /// backend and the host on two small images. (MobileNet gets 64×64 inputs: at 32×32 its last batch norms
    /// see two values per channel, where normalising amplifies last-bit differences beyond any tolerance.)
    func testZooModelsRunOnBothBackends() throws {
        var random = TestRandom(seed: 19)
        let gpu = try openCLDevice()
        let builders: [(String, String, Int, () throws -> Sequential)] = [
            ("ResNet-18", "layer1.0.conv1.weight", 32, { try ResNet18(classes: 10, stem: .smallImage) }),
            ("GoogLeNet", "inception3a.branch3.conv.weight", 32, { try GoogLeNet(classes: 10) }),
            ("MobileNet", "features.1.0.weight", 64, { try MobileNet(classes: 10, widthMultiplier: 0.25) }),
        ]
        for (name, probe, size, build) in builders {
            let host = try build(), device = try build()
            try host.reset(seed: 4)
            try device.reset(seed: 4)
            try device.move(to: gpu)
            let x = try Tensor(random.floats(2 * 3 * size * size), shape: [2, 3, size, size])
            let context = ForwardContext(training: true, step: 0, seed: 1)
            let y = try host.forward(x, context)
            assertClose(try device.forward(x.to(gpu), context).toArray(), try y.toArray(), atol: 1e-3, rtol: 1e-3, "\(name) forward")
            let dy = try Tensor(random.floats(20), shape: [2, 10])
            assertClose(try device.backward(dy.to(gpu)).toArray(), try host.backward(dy).toArray(), atol: 1e-3, rtol: 1e-3,
                        "\(name) input gradient")
            let hostGradient = try XCTUnwrap(host.namedParameters.first { $0.name == probe }?.parameter.gradient, probe)
            let deviceGradient = try XCTUnwrap(device.namedParameters.first { $0.name == probe }?.parameter.gradient, probe)
            // The first layers' weight gradients pass back through every batch norm of the network, each of
            // which rescales by 1/σ of a handful of values: compare them as vectors (relative L2 error).
            let (a, r) = (try deviceGradient.toArray(), try hostGradient.toArray())
            let error = zip(a, r).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            let norm = r.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
            XCTAssertLessThan(error, 1e-3 * norm, "\(name) gradient of \(probe): relative L2 error \(error / norm)")
        }
    }
}
