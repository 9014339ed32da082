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

    /// Every architecture of the zoo: forward and backward agree between the OpenCL backend and the host on
    /// two small images (ResNet-50: forward only, see the next test). The builders have no width option except
    /// MobileNet's, so the others run at full width on the smallest input the zoo gives them (AlexNet and VGG
    /// as `kiln train` builds them for Fashion-MNIST: AlexNet behind its ×3 upsampling, VGG zero-padded to
    /// 32×32 by its first convolution). (MobileNet gets 64×64 inputs: at 32×32 its last batch norms see two
    /// values per channel, where normalising amplifies last-bit differences beyond any tolerance.)
    func testZooModelsRunOnBothBackends() throws {
        var random = TestRandom(seed: 19)
        let gpu = try openCLDevice()
        let fashion = [1, 28, 28]
        // A whole network's gradients are compared here, and a ReLU input within rounding of zero (0 on one
        // backend, 1e-5 on the other) changes them by far more than any rounding tolerance: the inputs are drawn
        // until both backends take the same side of every kink (kinkDecisionsDiffering), then compared tightly.
        let builders: [(String, String, [Int], () throws -> Sequential)] = [
            ("ResNet-18", "layer1.0.conv1.weight", [3, 32, 32], { try ResNet18(classes: 10, stem: .smallImage) }),
            ("GoogLeNet", "inception3a.branch3.conv.weight", [3, 32, 32], { try GoogLeNet(classes: 10) }),
            ("MobileNet", "features.1.0.weight", [3, 64, 64], { try MobileNet(classes: 10, widthMultiplier: 0.25) }),
            ("LeNet-5", "conv1.weight", fashion, { try ModelZoo.make("lenet5", inputShape: fashion, classes: 10) }),
            ("LeNet-BN", "conv1.weight", fashion, { try ModelZoo.make("lenet-bn", inputShape: fashion, classes: 10) }),
            ("AlexNet", "features.0.weight", fashion, { try ModelZoo.make("alexnet", inputShape: fashion, classes: 10) }),
            ("VGG-11", "features.0.weight", fashion, { try ModelZoo.make("vgg11", inputShape: fashion, classes: 10) }),
            ("VGG-11-BN", "features.0.weight", fashion, { try ModelZoo.make("vgg11-bn", inputShape: fashion, classes: 10) }),
            ("autoencoder", "encoder.0.weight", fashion, { try ModelZoo.make("autoencoder", inputShape: fashion, classes: 10) }),
        ]
        for (name, probe, shape, build) in builders {
            let host = try build(), device = try build()
            try host.reset(seed: 4)
            try device.reset(seed: 4)
            try device.move(to: gpu)
            let context = ForwardContext(training: true, step: 0, seed: 1)
            var x = try Tensor.zeros([1]), y = x, draws = 0
            repeat {
                draws += 1
                x = try Tensor(random.floats(2 * shape.reduce(1, *)), shape: [2] + shape)
                y = try host.forward(x, context)
                assertClose(try device.forward(x.to(gpu), context).toArray(), try y.toArray(), atol: 1e-3, rtol: 1e-3, "\(name) forward")
            } while try kinkDecisionsDiffering(host: host, device: device) > 0 && draws < 8
            XCTAssertEqual(try kinkDecisionsDiffering(host: host, device: device), 0, "\(name): no input in \(draws) draws avoids every kink")
            let dy = try Tensor(random.floats(y.count), shape: y.shape)
            assertClose(try device.backward(dy.to(gpu)).toArray(), try host.backward(dy).toArray(), atol: 1e-3, rtol: 1e-3,
                        "\(name) input gradient")
            let hostGradient = try XCTUnwrap(host.namedParameters.first { $0.name == probe }?.parameter.gradient, probe)
            let deviceGradient = try XCTUnwrap(device.namedParameters.first { $0.name == probe }?.parameter.gradient, probe)
            // The first layers' weight gradients pass back through every batch norm of the network, each of
            // which rescales by 1/σ of a handful of values: compare them as vectors (relative L2 error).
            let (a, r) = (try deviceGradient.toArray(), try hostGradient.toArray())
            let error = zip(a, r).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
            let norm = r.map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
            XCTAssertGreaterThan(norm, 0, "\(name): the gradient of \(probe) is zero, which compares nothing")
            XCTAssertLessThan(error, 1e-3 * norm, "\(name) gradient of \(probe): relative L2 error \(error / norm)")
        }
    }

    /// ResNet-50's forward pass agrees between the backends; its backward is not compared. Its 16 bottlenecks
    /// leave float32 rounding differences of about 5e-5 (relative) at the last block. Measured: on 16×16 inputs
    /// drawn so that no ReLU input straddles its kink between the backends, the weight gradients still differ
    /// by 0.8 % (relative L2) from the last bottleneck down, because the last stage's batch norms normalise 8
    /// values per channel and their backward, m·dy − Σdy − x̂·Σ(dy·x̂), cancels to a small difference of large
    /// terms; on 32×32 inputs five ReLU inputs straddle their kinks in each of 8 draws. A sound comparison needs
    /// a float64 reference. The bottleneck's layers (1×1 and strided 3×3 convolutions, batch norm, residual
    /// sums) are each compared in their own tests and, backward included, in ResNet-18 and MobileNet above.
    func testResNet50ForwardAgreesOnBothBackends() throws {
        var random = TestRandom(seed: 23)
        let gpu = try openCLDevice()
        let host = try ResNet50(classes: 10, stem: .smallImage), device = try ResNet50(classes: 10, stem: .smallImage)
        try host.reset(seed: 4)
        try device.reset(seed: 4)
        try device.move(to: gpu)
        // 16×16 is the smallest input that leaves the last stage a 2×2 map rather than 1×1.
        let x = try Tensor(random.floats(2 * 3 * 16 * 16), shape: [2, 3, 16, 16])
        let context = ForwardContext(training: true, step: 0, seed: 1)
        assertClose(try device.forward(x.to(gpu), context).toArray(), try host.forward(x, context).toArray(), atol: 1e-3, rtol: 1e-3,
                    "ResNet-50 forward")
    }

    /// `kiln train --model NAME` on Fashion-MNIST and CIFAR-10: every zoo model builds for both image shapes
    /// and maps a batch of two to two rows of 10 scores (the autoencoder: to the batch itself).
    func testEveryZooModelTakesFashionMNISTAndCIFAR10Images() throws {
        for name in ModelZoo.names {
            for shape in [[1, 28, 28], [3, 32, 32]] {
                let model = try ModelZoo.make(name, inputShape: shape, classes: 10)
                let expected = try ModelZoo.entry(name).task == .reconstruction ? [2] + shape : [2, 10]
                XCTAssertEqual(try model.outputShape(for: [2] + shape), expected, "\(name) on \(shape)")
            }
        }
        // The smaller images are adapted where the architecture needs it, without renaming its parameters.
        let alexnet = try ModelZoo.make("alexnet", inputShape: [1, 28, 28], classes: 10)
        XCTAssertEqual(alexnet.layers.first?.name, "upsample")
        XCTAssertEqual(try alexnet.summary(inputShape: [1, 28, 28]).rows.first?.outputShape, [1, 1, 84, 84])
        XCTAssertEqual(alexnet.namedParameters.first?.name, "features.0.weight")
        let vgg = try ModelZoo.make("vgg11", inputShape: [1, 28, 28], classes: 10).summary(inputShape: [1, 28, 28])
        XCTAssertEqual(vgg.rows.first?.outputShape, [1, 64, 32, 32], "28×28 zero-padded to 32×32 by the first convolution")
        XCTAssertEqual(ModelZoo.names.count, Set(ModelZoo.names).count)
        XCTAssertEqual(try ModelZoo.entry("LeNet-5").name, "lenet5")
    }

    /// Where an input is too small, the error names the layer (by its dotted path) whose output would be
    /// empty: VGG-16 built for 32×32 images, given 16×16 ones, runs out at its fifth pooling.
    func testAnInputTooSmallNamesTheLayerWhereTheSizeReachesZero() throws {
        let vgg = try VGG(depth: 16, inputSize: 32, classes: 10)
        XCTAssertEqual(try vgg.outputShape(for: [1, 3, 32, 32]), [1, 10])
        for attempt in [{ _ = try vgg.outputShape(for: [1, 3, 16, 16]) }, { _ = try vgg.summary(inputShape: [3, 16, 16]) }] {
            XCTAssertThrowsError(try attempt()) { error in
                guard case let KilnError.shapeMismatch(operation, _, got) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(operation.hasPrefix("features.30 (MaxPool2D"), operation)
                XCTAssertTrue(got.contains("[1, 512, 1, 1]"), got)
            }
        }
        XCTAssertThrowsError(try ModelZoo.make("resnet18", inputShape: [3, 0, 0], classes: 10))
        XCTAssertThrowsError(try ModelZoo.make("alexnet", inputShape: [3, 32, 32], classes: 10).outputShape(for: [1, 3, 8, 8])) { error in
            XCTAssertTrue("\(error)".contains("features."), "\(error)")
        }
    }

    func testTheAutoencoderReconstructsItsInputShapeAndLearns() throws {
        XCTAssertEqual(try ModelZoo.entry("autoencoder").task, .reconstruction)
        let model = try ModelZoo.make("autoencoder", inputShape: [1, 28, 28], classes: 10)
        let summary = try model.summary(inputShape: [1, 28, 28])
        XCTAssertEqual(summary.rows.map(\.name), ["encoder.0", "encoder.1", "encoder.2", "encoder.3",
                                                  "decoder.0", "decoder.1", "decoder.2", "decoder.3"])
        XCTAssertEqual(summary.rows.map { $0.outputShape[2] }, [14, 14, 7, 7, 14, 14, 28, 28])
        XCTAssertEqual(summary.trainableParameters, (9 + 1) * 16 + (16 * 9 + 1) * 32 + (32 * 16 * 9 + 16) + (16 * 9 + 1))
        XCTAssertEqual(model.namedParameters.map(\.name),
                       ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
                        "decoder.0.weight", "decoder.0.bias", "decoder.2.weight", "decoder.2.bias"])
        XCTAssertThrowsError(try ModelZoo.make("autoencoder", inputShape: [1, 30, 30], classes: 10)) { error in
            XCTAssertTrue("\(error)".contains("autoencoder") && "\(error)".contains("30×30") && "\(error)".contains("divisible by 4"), "\(error)")
        }

        // A few Adam steps on one batch of images in [0, 1] lower the reconstruction loss, which the trainer
        // reports without an accuracy.
        try model.reset(seed: 3)
        var random = TestRandom(seed: 8)
        let images = try Tensor(random.floats(8 * 28 * 28, 0, 1), shape: [8, 1, 28, 28])
        let batch = Batch(inputs: images, targets: try Tensor(Array(repeating: 0, count: 8), shape: [8]), labels: Array(repeating: 0, count: 8))
        let task = ModelTask.reconstruction
        let trainer = Trainer(model: model, optimizer: Optimizer(model: model, rule: .adam(), learningRate: 1e-2), loss: task.loss,
                              seed: 1, measuresAccuracy: task.measuresAccuracy)
        let before = try trainer.evaluate([batch])
        XCTAssertTrue(before.accuracy.isNaN)
        XCTAssertTrue(before.confusion.isEmpty)
        // The mean squared error, computed here rather than by the op the trainer uses.
        let reconstruction = try model.forward(images, .inference).toArray(), pixels = try images.toArray()
        let expectedLoss = zip(reconstruction, pixels).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / Double(pixels.count)
        XCTAssertEqual(before.loss, expectedLoss, accuracy: 1e-6)
        let pass = try trainer.trainPass(Array(repeating: batch, count: 30))
        XCTAssertTrue(pass.accuracy.isNaN)
        XCTAssertLessThan(try trainer.evaluate([batch]).loss, 0.8 * before.loss)
    }
}
