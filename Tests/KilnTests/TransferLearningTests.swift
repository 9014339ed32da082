import Foundation
import XCTest
@testable import Kiln

/// Transfer learning: loading pretrained weights with a report, adapting the first convolution and the head,
/// freezing (parameters, optimiser state, batch-norm statistics), unfreezing, and features of any layer.
final class TransferLearningTests: XCTestCase {
    private var random = TestRandom(seed: 14)
    private var folders: [URL] = []

    override func tearDown() {
        for folder in folders { try? FileManager.default.removeItem(at: folder) }
        folders.removeAll()
    }

    /// conv1 (C → 4, 3×3) → bn1 → ReLU → maxpool → conv2 (4 → 6) → bn2 → ReLU → flatten → fc1 → ReLU → fc2:
    /// a network with every kind of tensor a CNN checkpoint holds, small enough for many steps on POCL.
    private func smallNetwork(channels: Int = 1, classes: Int = 3, seed: UInt64 = 5) throws -> Sequential {
        let model = try Sequential {
            try Conv2D(inputChannels: channels, outputChannels: 4, kernelSize: 3, padding: 1).named("conv1")
            try BatchNorm(features: 4).named("bn1")
            ReLU()
            try MaxPool2D(window: 2)
            try Conv2D(inputChannels: 4, outputChannels: 6, kernelSize: 3, stride: 2, padding: 1).named("conv2")
            try BatchNorm(features: 6).named("bn2")
            ReLU()
            Flatten()
            try Linear(inputFeatures: 6 * 2 * 2, outputFeatures: 10).named("fc1")
            ReLU()
            try Linear(inputFeatures: 10, outputFeatures: classes).named("fc2")
        }
        try model.reset(seed: seed)
        return model
    }

    private func batch(_ count: Int, channels: Int = 1, classes: Int = 3, on device: Device) throws -> Batch {
        let labels = (0..<count).map { _ in random.int(0...(classes - 1)) }
        return Batch(inputs: try Tensor(random.floats(count * channels * 64), shape: [count, channels, 8, 8], on: device),
                     targets: try Tensor(labels.map(Float.init), shape: [count], on: device), labels: labels)
    }

    private func values(_ model: any Layer) throws -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: try model.namedParameters.map { ($0.name, try $0.parameter.value.toArray()) })
    }

    // MARK: Loading

    func testAPartialLoadReportsExactlyWhatIsMissingUnexpectedAndMismatched() throws {
        let source = try smallNetwork(seed: 1)
        var file = try source.stateDict()
        var pruned = SafeTensors()
        for name in file.names where name != "bn2.running_var" {
            guard let entry = file[name] else { continue }
            pruned.set(name, entry)
        }
        pruned.set("fc1.weight", floats: [Float](repeating: 0.5, count: 10 * 30), shape: [10, 30])
        pruned.set("head.weight", floats: [1, 2], shape: [2])
        file = pruned
        let model = try smallNetwork(seed: 2)
        let before = try values(model)

        // Strict: an error listing all three, and nothing loaded.
        XCTAssertThrowsError(try model.loadPretrained(file, source: "partial.safetensors", strict: true)) { error in
            let text = "\(error)"
            for part in ["partial.safetensors", "missing in the file, left as initialised (1): bn2.running_var",
                         "unexpected in the file, ignored (1): head.weight",
                         "shape mismatches, left as initialised (1): fc1.weight (file [10, 30], model [10, 24])"] {
                XCTAssertTrue(text.contains(part), "\(part) in:\n\(text)")
            }
        }
        XCTAssertEqual(try values(model), before, "a strict load that fails changes nothing")

        let report = try model.loadPretrained(file, source: "partial.safetensors")
        XCTAssertEqual(report.missing, ["bn2.running_var"])
        XCTAssertEqual(report.unexpected, ["head.weight"])
        XCTAssertEqual(report.mismatched, [.init(name: "fc1.weight", fileShape: [10, 30], modelShape: [10, 24])])
        XCTAssertNil(report.adaptedInput)
        XCTAssertNil(report.newHead)
        XCTAssertEqual(Set(report.loaded), Set(source.namedParameters.map(\.name)).subtracting(["bn2.running_var", "fc1.weight"]))
        let after = try values(model), expected = try values(source)
        for name in report.loaded { XCTAssertEqual(after[name], expected[name], name) }
        XCTAssertEqual(after["fc1.weight"], before["fc1.weight"], "a mismatched tensor stays as initialised")
        XCTAssertEqual(after["bn2.running_var"], before["bn2.running_var"])
    }

    func testAFileWithNoMatchingTensorIsAnErrorEvenWhenNotStrict() throws {
        var file = SafeTensors()
        file.set("encoder.weight", floats: [1, 2, 3], shape: [3])
        XCTAssertThrowsError(try smallNetwork().loadPretrained(file, source: "other.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("other.safetensors: has no tensor that fits the model: its 1 tensors are named like encoder.weight; "
                                              + "the model's like conv1.weight, conv1.bias, bn1.weight, bn1.bias, ..."), "\(error)")
        }
    }

    func testADataParallelPrefixIsRemoved() throws {
        let source = try smallNetwork(seed: 1), file = try source.stateDict()
        var prefixed = SafeTensors()
        for name in file.names { if let entry = file[name] { prefixed.set("module.\(name)", entry) } }
        let model = try smallNetwork(seed: 2)
        let report = try model.loadPretrained(prefixed, source: "ddp.safetensors", strict: true)
        XCTAssertEqual(report.strippedPrefix, "module.")
        XCTAssertEqual(try values(model), try values(source))
    }

    /// torchvision's 1000-class, 3-channel ResNet-18 state dict (made by Kiln with torchvision's names) into a
    /// 10-class model for grey images: everything loads but the head, and conv1 is summed over its channels.
    func testAnImageNetResNet18StateDictInitialisesATenClassGreyModel() throws {
        let imageNet = try ResNet18(inputChannels: 3, classes: 1000, stem: .imageNet)
        try imageNet.reset(seed: 3)
        let file = try imageNet.stateDict()
        let model = try ModelZoo.make("resnet18", inputShape: [1, 28, 28], classes: 10, stem: .imageNet)
        XCTAssertEqual(model.namedParameters.map(\.name), file.names, "torchvision's names, in its order")
        let report = try model.loadPretrained(file, source: "resnet18-imagenet.safetensors", strict: true)
        XCTAssertTrue(report.isComplete, "\(report)")
        XCTAssertEqual(report.newHead, .init(path: "fc", reason: "the file's has 1000 classes, the model 10"))
        XCTAssertEqual(report.adaptedInput, .init(name: "conv1.weight", fileChannels: 3, modelChannels: 1))
        XCTAssertEqual(report.loaded.count, file.names.count - 2)
        XCTAssertEqual(try model.namedParameters.first { $0.name == "layer3.1.conv2.weight" }?.parameter.value.toArray(), file.floats("layer3.1.conv2.weight"))
        let rgb = try XCTUnwrap(file.floats("conv1.weight")), grey = try model.namedParameters[0].parameter.value.toArray()
        XCTAssertEqual(grey.count, 64 * 49)
        for (index, value) in grey.enumerated() {
            let (o, k) = (index / 49, index % 49)
            XCTAssertEqual(value, rgb[o * 147 + k] + rgb[o * 147 + 49 + k] + rgb[o * 147 + 98 + k], accuracy: 1e-6)
        }
        XCTAssertTrue(report.description.contains("adapted conv1.weight from 3 to 1 input channel: summed over its 3 input channels"), report.description)
        XCTAssertTrue(report.description.contains("new classifier fc (initialised, not loaded): the file's has 1000 classes, the model 10"))
    }

    /// A grey image through the adapted network gives what the RGB network gives for that image in all three
    /// channels, and back: an RGB model from a grey one answers [x, x, x] as the grey one answers x.
    func testInputChannelAdaptationKeepsTheResponseToAGreyImage() throws {
        for device in try testDevices() {
            for (from, to) in [(3, 1), (1, 3), (3, 6)] {
                let source = try smallNetwork(channels: from, seed: 7)
                let target = try smallNetwork(channels: to, seed: 8)
                let report = try target.loadPretrained(try source.stateDict(), source: "source")
                XCTAssertEqual(report.adaptedInput, .init(name: "conv1.weight", fileChannels: from, modelChannels: to))
                XCTAssertTrue(report.isComplete)
                try source.move(to: device)
                try target.move(to: device)
                let grey = random.floats(2 * 64)
                func repeated(_ channels: Int) throws -> Tensor {
                    try Tensor((0..<2).flatMap { n in (0..<channels).flatMap { _ in grey[(n * 64)..<((n + 1) * 64)] } },
                               shape: [2, channels, 8, 8], on: device)
                }
                assertClose(try target.forward(repeated(to), .inference).toArray(), try source.forward(repeated(from), .inference).toArray(),
                            atol: 1e-5, "\(from) → \(to) channels on \(device)")
            }
        }
    }

    func testAHeadForOtherClassesOfTheSameCountIsLeftNewWhenAskedTo() throws {
        let source = try smallNetwork(seed: 1), model = try smallNetwork(seed: 2)
        let before = try values(model)
        let report = try model.loadPretrained(try source.stateDict(), source: "s", newHeadReason: "other classes")
        XCTAssertEqual(report.newHead, .init(path: "fc2", reason: "other classes"))
        XCTAssertEqual(try values(model)["fc2.weight"], before["fc2.weight"])
        XCTAssertEqual(try values(model)["fc1.weight"], try values(source)["fc1.weight"])
        XCTAssertTrue(report.isComplete, "a new head is asked for, not a mismatch")
    }

    func testHalfPrecisionSafetensorsAreRead() throws {
        // F16: 1, −2, 65504, 2⁻²⁴ (the smallest subnormal); BF16: 1, 3.140625, −0.
        let f16: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001], bf16: [UInt16] = [0x3F80, 0x4049, 0x8000]
        func bytes(_ words: [UInt16]) -> [UInt8] { words.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] } }
        var file = SafeTensors()
        file.set("a", SafeTensors.Entry(dtype: .float16, shape: [4], data: bytes(f16)))
        file.set("b", SafeTensors.Entry(dtype: .bfloat16, shape: [3], data: bytes(bf16)))
        file.set("c", SafeTensors.Entry(dtype: .float64, shape: [1], data: withUnsafeBytes(of: (0.1).bitPattern.littleEndian, Array.init)))
        let read = try SafeTensors.parse(bytes: try file.serialized(), path: "half.safetensors")
        XCTAssertEqual(read.floats("a"), [1, -2, 65504, 0x1p-24])
        XCTAssertEqual(read.floats("b"), [1, 3.140625, -0.0])
        XCTAssertEqual(read.floats("c"), [Float(0.1)])
        XCTAssertEqual(read["a"]?.dtype, .float16)
    }

    // MARK: The torchvision fixture

    /// Tests/KilnTests/Fixtures/resnet18_torchvision.py trained torchvision's `resnet18(num_classes=10)` with a
    /// 1-channel 7×7 conv1 on Fashion-MNIST and saved it in float16: Kiln's ResNet-18 with the ImageNet stem
    /// has its module tree exactly and classifies the first 1,000 test images as PyTorch did.
    func testTheTorchvisionResNet18FixtureEvaluatesToPyTorchsAccuracy() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appending(path: "Fixtures/resnet18_torchvision.safetensors")
        let file = try SafeTensors.read(from: url)
        let model = try ModelZoo.make("resnet18", inputShape: [1, 28, 28], classes: 10, stem: .imageNet)
        XCTAssertEqual(Set(model.namedParameters.map(\.name)), Set(file.names), "torchvision's names exactly")
        let report = try model.loadPretrained(file, source: url.path, strict: true)
        XCTAssertTrue(report.isComplete && report.newHead == nil && report.adaptedInput == nil, "\(report)")
        XCTAssertEqual(file["conv1.weight"]?.dtype, .float16)

        let expectedCorrect = try XCTUnwrap(file.metadata["correct_of_first_1000"].flatMap(Int.init))
        let expectedPredictions = try JSONDecoder().decode([Int].self, from: Data(try XCTUnwrap(file.metadata["predictions_of_first_1000"]).utf8))
        let expectedLogits = try JSONDecoder().decode([[Float]].self, from: Data(try XCTUnwrap(file.metadata["logits_of_first_8"]).utf8))
        guard FileManager.default.fileExists(atPath: Dataset.fashionMNISTDirectory.path) else { throw XCTSkip("Fashion-MNIST is not installed") }
        let test = try Dataset.load("fashion-mnist", split: .test).subset(Array(0..<1000))
        XCTAssertEqual(zip(expectedPredictions, test.labels).filter { $0 == $1 }.count, expectedCorrect, "the fixture's own figures agree")
        for device in try testDevices() {
            try model.move(to: device)
            // Image by image, the first 300 on the host and 100 through POCL (`kiln eval` of the file gives PyTorch's
            // 74.52% on all 10,000).
            let count = device == .host ? 300 : 100
            var predictions: [Int] = []
            for batch in DataLoader(dataset: test.subset(Array(0..<count)), batchSize: 100, shuffle: false, device: device).batches(epoch: 0) {
                let logits = try model.forward(batch.inputs, .inference)
                if predictions.isEmpty {
                    assertClose(Array(try logits.toArray().prefix(80)), expectedLogits.flatMap { $0 }, atol: 2e-3, rtol: 1e-3, "logits on \(device)")
                }
                predictions += try logits.argmax(axis: 1).toArray().map { Int($0) }
            }
            XCTAssertEqual(predictions, Array(expectedPredictions.prefix(count)), "PyTorch's predictions on \(device)")
            XCTAssertEqual(zip(predictions, test.labels).filter { $0 == $1 }.count,
                           zip(expectedPredictions.prefix(count), test.labels).filter { $0 == $1 }.count, "PyTorch's accuracy on \(device)")
        }
    }

    // MARK: Freezing

    func testFrozenParametersAndBatchNormStatisticsAreBitIdenticalAfterTraining() throws {
        for device in try testDevices() {
            for rule in [UpdateRule.sgd(momentum: 0.9, nesterov: true), .adam(decoupledWeightDecay: true)] {
                let model = try smallNetwork()
                let frozen = try model.freeze(matching: ["conv1", "bn1"])
                XCTAssertEqual(frozen, ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"])
                try model.move(to: device)
                let before = try values(model)
                let optimizer = Optimizer(model: model, rule: rule, learningRate: 0.05, regularization: Regularization(weightDecay: 0.01))
                let trainer = Trainer(model: model, optimizer: optimizer, loss: crossEntropyLoss, seed: 1)
                for _ in 0..<3 { try trainer.trainStep(try batch(5, on: device)) }
                let after = try values(model)
                for name in ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                             "bn1.num_batches_tracked"] {
                    XCTAssertEqual(after[name], before[name], "\(name) is frozen (\(rule) on \(device))")
                }
                for name in ["conv2.weight", "bn2.weight", "bn2.running_mean", "fc1.weight", "fc2.bias"] {
                    XCTAssertNotEqual(after[name], before[name], "\(name) trains (\(rule) on \(device))")
                }
                XCTAssertEqual(after["bn2.num_batches_tracked"], [3])
                for (name, parameter) in model.namedParameters where name.hasPrefix("conv1") || name.hasPrefix("bn1") {
                    XCTAssertNil(parameter.gradient, "\(name) gets no gradient")
                }
                let state = try optimizer.state()
                XCTAssertFalse(state.names.contains { $0.hasPrefix("conv1.") || $0.hasPrefix("bn1.") }, "no optimiser state: \(state.names)")
                XCTAssertTrue(state.names.contains { $0.hasPrefix("conv2.weight.") }, "\(state.names)")
            }
        }
    }

    /// Backward stops below the lowest layer that trains; the gradients of those that train are what a full
    /// backward gives them.
    func testBackwardThroughAFrozenPrefixGivesTheSameGradients() throws {
        for device in try testDevices() {
            let (frozen, full) = (try smallNetwork(), try smallNetwork())
            try frozen.freeze(matching: ["conv1.*"])
            try frozen.move(to: device)
            try full.move(to: device)
            let input = try batch(4, on: device)
            for model in [frozen, full] {
                let output = try model.forward(input.inputs, ForwardContext(training: true, needsInputGradient: false))
                _ = try model.backward(try crossEntropyLoss(output, input).gradient)
            }
            XCTAssertNil(frozen.namedParameters[0].parameter.gradient)
            for ((name, a), (_, b)) in zip(frozen.namedParameters, full.namedParameters) where !name.hasPrefix("conv1") && !a.isBuffer {
                assertClose(try XCTUnwrap(a.gradient).toArray(), try XCTUnwrap(b.gradient).toArray(), atol: 1e-6, "\(name) on \(device)")
            }
        }
    }

    func testPatternsSelectLayerSubtreesAndParameterNames() throws {
        let model = try ResNet18(inputChannels: 1, classes: 10, stem: .imageNet)
        let layer1 = try model.parameters(matching: ["layer1.*"]).map(\.name)
        XCTAssertEqual(layer1.count, 2 * 6, "two blocks of conv1, bn1 (2), conv2, bn2 (2)")
        XCTAssertTrue(layer1.allSatisfy { $0.hasPrefix("layer1.") })
        XCTAssertEqual(try model.parameters(matching: ["conv1", "bn1"]).map(\.name), ["conv1.weight", "bn1.weight", "bn1.bias"])
        XCTAssertEqual(try model.parameters(matching: ["layer?.0.downsample"]).count, 3 * 3)
        XCTAssertEqual(try model.parameters(matching: ["*.bias"]).count, 20 + 1, "every batch norm's β and fc's bias")
        XCTAssertEqual(try model.parameters(before: "layer2").map(\.name), try model.parameters(matching: ["conv1", "bn1", "layer1"]).map(\.name))
        XCTAssertEqual(try model.parameters(before: "avgpool").count, model.namedParameters.filter { !$0.parameter.isBuffer }.count - 2)
        XCTAssertThrowsError(try model.parameters(matching: ["layer5.*"])) { error in
            XCTAssertEqual("\(error)", "the pattern 'layer5.*' matches no layer or parameter that trains; the model's layers: conv1, bn1, relu, "
                           + "maxpool, layer1, layer2, layer3, layer4, avgpool, flatten, fc")
        }
        XCTAssertThrowsError(try model.parameters(before: "layer2.7")) { error in
            XCTAssertEqual("\(error)", "no layer 'layer2.7': layer2 has no '7'; its layers: 0, 1")
        }
    }

    func testTheSummaryMarksFrozenLayersAndCountsTrainableParameters() throws {
        let model = try smallNetwork()
        try model.freeze(matching: ["conv1", "bn1.weight"])
        let summary = try model.summary(inputShape: [1, 8, 8])
        XCTAssertEqual(summary.frozenParameters, 36 + 4 + 4)
        XCTAssertEqual(summary.trainableParameters, model.namedParameters.filter { !$0.parameter.isBuffer }.map(\.parameter.value.count).reduce(0, +) - 44)
        XCTAssertTrue(summary.description.contains("Conv2D (frozen)"), summary.description)
        XCTAssertTrue(summary.description.contains("BatchNorm (partly frozen)"), summary.description)
        XCTAssertTrue(summary.description.contains("frozen parameters: 44"), summary.description)
    }

    /// `--unfreeze-at 2`: conv1 and bn1 stay as loaded through epoch 1, train from epoch 2 at the backbone's
    /// rate; resumed after epoch 1, the run unfreezes at the same place.
    func testUnfreezingAtAnEpochStartsTheUpdatesThere() throws {
        for device in try testDevices() {
            var configuration = TrainingConfiguration()
            (configuration.epochs, configuration.batchSize, configuration.freeze, configuration.unfreezeAt) = (2, 8, "conv1,bn1", 2)
            configuration.lrBackbone = 0.01
            configuration.valSplit = 0.25
            try configuration.validateValues()
            var images: [Float] = [], labels: [Int] = []
            for index in 0..<32 {
                labels.append(index % 3)
                images += random.floats(64).map { $0 + Float(index % 3) }
            }
            let data = Dataset(imageShape: [1, 8, 8], pixels: images, labels: labels, classNames: ["a", "b", "c"])
            let (train, validation) = try data.splitValidation(count: 8, seed: 1)
            let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-unfreeze-\(UUID().uuidString)")
            folders.append(folder)
            let model = try smallNetwork()
            let initial = try values(model)
            let run = try TrainingRun(folder: folder, configuration: configuration, model: model, train: train, validation: validation, device: device)
            XCTAssertEqual(run.backbone.map(\.name), ["conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias"])
            var afterFirst: [String: [Float]] = [:]
            run.epochEnded = { metrics, _ in if metrics.epoch == 1 { afterFirst = try self.values(model) } }
            _ = try run.run()
            let final = try values(model)
            for name in ["conv1.weight", "bn1.bias", "bn1.running_mean", "bn1.num_batches_tracked"] {
                XCTAssertEqual(afterFirst[name], initial[name], "\(name) frozen in epoch 1 on \(device)")
                XCTAssertNotEqual(final[name], afterFirst[name], "\(name) trains in epoch 2 on \(device)")
            }
            XCTAssertNotEqual(afterFirst["fc1.weight"], initial["fc1.weight"])
            // The backbone's state appears in the optimiser only once it trains.
            let stateNames = try run.optimizer.state().names
            XCTAssertTrue(stateNames.contains("conv1.weight.momentum_buffer"), "\(stateNames)")
        }
    }

    // MARK: Features

    func testOutputsOfAnyLayerAreReachableByDottedPath() throws {
        let model = try ResNet18(inputChannels: 1, classes: 4, stem: .imageNet)
        let x = try Tensor(random.floats(2 * 32 * 32), shape: [2, 1, 32, 32])
        let y = try model.forward(x, .inference)
        XCTAssertEqual(model.output(of: "layer1.0.conv1")?.shape, [2, 64, 8, 8])
        XCTAssertEqual(model.output(of: "layer2.0.downsample")?.shape, [2, 128, 4, 4])
        XCTAssertEqual(model.output(of: "layer2.0.downsample.1")?.shape, [2, 128, 4, 4])
        XCTAssertEqual(model.output(of: "layer4")?.shape, [2, 512, 1, 1])
        XCTAssertEqual(try model.output(of: "fc")?.toArray(), try y.toArray())
        XCTAssertNil(model.output(of: "layer1.0.downsample"), "that block has no shortcut layer")
        XCTAssertNil(model.output(of: "layer9"))
        let features = try model.features(of: "layer3", batches: [Batch(inputs: x, targets: Tensor.zeros([2]), labels: [1, 2])],
                                          classNames: ["a", "b", "c", "d"])
        XCTAssertEqual(features.imageShape, [256, 1, 1])
        let map = try XCTUnwrap(model.output(of: "layer3")).toArray()  // [2, 256, 2, 2]
        assertClose(features.pixels, (0..<512).map { row in (0..<4).map { map[row * 4 + $0] }.reduce(0, +) / 4 }, "pooled features")
        XCTAssertEqual(features.labels, [1, 2])
    }

    func testReplacingAHeadGivesANewClassifier() throws {
        let model = try ResNet18(inputChannels: 1, classes: 1000, stem: .smallImage)
        try model.replace("fc", with: try Linear(inputFeatures: 512, outputFeatures: 7))
        XCTAssertEqual(try model.outputShape(for: [3, 1, 28, 28]), [3, 7])
        XCTAssertEqual(model.namedParameters.last?.name, "fc.bias")
        try model.replace("layer4.1.conv2", with: try Conv2D(inputChannels: 512, outputChannels: 512, kernelSize: 1, bias: false))
        XCTAssertEqual(model.namedParameters.first { $0.name == "layer4.1.conv2.weight" }?.parameter.value.shape, [512, 512, 1, 1])
        XCTAssertThrowsError(try model.replace("head", with: ReLU())) { XCTAssertTrue("\($0)".contains("no layer 'head'"), "\($0)") }
    }

    func testALinearProbeSeparatesSeparableFeatures() throws {
        // Two Gaussian blobs per class in 6 dimensions, class c centred at 3·e_c: a linear probe must get them.
        func blobs(_ count: Int) -> Dataset {
            var pixels: [Float] = [], labels: [Int] = []
            for index in 0..<count {
                let label = index % 3
                labels.append(label)
                pixels += (0..<6).map { dimension in random.float() + (dimension == label ? 3 : 0) }
            }
            return Dataset(imageShape: [6, 1, 1], pixels: pixels, labels: labels, classNames: ["a", "b", "c"])
        }
        var probe = LinearProbe()
        probe.epochs = 30
        let result = try probe.fit(train: blobs(90), test: blobs(60), device: .host)
        XCTAssertGreaterThanOrEqual(result.trainAccuracy, 0.98)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(result.testAccuracy), 0.95)
        // Shuffled labels cannot be learnt for unseen data.
        var noise = blobs(60)
        noise.labels = noise.labels.map { ($0 + random.int(0...2)) % 3 }
        let chance = try probe.fit(train: noise, test: blobs(300), device: .host)
        XCTAssertLessThan(try XCTUnwrap(chance.testAccuracy), 0.75)
    }

    // MARK: Data subsets

    func testClassSubsetsAndPerClassSamples() throws {
        let data = Dataset(imageShape: [1, 1, 1], pixels: (0..<40).map(Float.init), labels: (0..<40).map { $0 % 4 },
                           classNames: ["a", "b", "c", "d"])
        let restricted = try data.restricted(toClasses: [3, 1])
        XCTAssertEqual(restricted.classNames, ["d", "b"])
        XCTAssertEqual(restricted.labels, Array(repeating: [1, 0], count: 10).flatMap { $0 })
        XCTAssertEqual(restricted.pixels.prefix(4), [1, 3, 5, 7])
        let limited = data.limited(perClass: 3, seed: 9)
        XCTAssertEqual(limited.count, 12)
        XCTAssertEqual((0..<4).map { c in limited.labels.filter { $0 == c }.count }, [3, 3, 3, 3])
        XCTAssertEqual(limited.pixels, limited.pixels.sorted(), "the stored order is kept")
        XCTAssertEqual(data.limited(perClass: 3, seed: 9).pixels, limited.pixels)
        XCTAssertNotEqual(data.limited(perClass: 3, seed: 10).pixels, limited.pixels)
        XCTAssertEqual(try Dataset.classList("0-2,7,5"), [0, 1, 2, 7, 5])
        for bad in ["", "a", "3-1", "1,,2", "-1"] { XCTAssertThrowsError(try Dataset.classList(bad), bad) }
        XCTAssertThrowsError(try data.restricted(toClasses: [4])) { XCTAssertTrue("\($0)".contains("class 4 is not one of the data set's 4 classes")) }
    }
}

/// `kiln train --init/--freeze/...` and `kiln features` as a user runs them, and their errors.
final class TransferCommandLineTests: XCTestCase {
    private static let runs = FileManager.default.temporaryDirectory.appending(path: "kiln-transfer-\(UUID().uuidString)")

    override class func tearDown() { try? FileManager.default.removeItem(at: runs) }

    func testBadTransferOptionsAreNamedErrorsThatTrainAndWriteNothing() throws {
        let (data, trained) = try KilnCommand.trainedRun.get()
        try FileManager.default.createDirectory(at: Self.runs, withIntermediateDirectories: true)
        var unrelated = SafeTensors()
        unrelated.set("encoder.weight", floats: [1, 2], shape: [2])
        let unrelatedFile = Self.runs.appending(path: "unrelated.safetensors")
        try unrelated.write(to: unrelatedFile)
        let cases: [(arguments: [String], status: Int32, message: String)] = [
            (["--freeze", "layer9"], 64, "Error: the pattern 'layer9' matches no layer or parameter that trains; the model's layers: "
                + "conv1, bn1, 2, 3, conv2, bn2, 6, 7, 8, fc1, 10, 11, fc2\nUsage: kiln train"),
            (["--freeze-until", "fc9"], 64, "Error: no layer 'fc9': the model has no 'fc9'; its layers: conv1, bn1, 2, 3, conv2, bn2, 6, 7, 8, fc1, 10, 11, fc2"),
            (["--freeze", "conv1", "--unfreeze-at", "3", "--epochs", "2"], 64,
             "Error: --unfreeze-at 3 is beyond the run, which trains 2 epochs\nUsage: kiln train"),
            (["--unfreeze-at", "2"], 64, "Error: --unfreeze-at 2 needs layers to unfreeze: give --freeze or --freeze-until"),
            (["--freeze", "conv1", "--lr-backbone", "0.01"], 64, "Error: --lr-backbone sets the rate of the frozen layers once they train"),
            (["--strict"], 64, "Error: --strict checks what --init loads: give --init FILE with it"),
            (["--stem", "imagenet"], 64, "Error: --stem imagenet: lenet-bn2 has one stem; only resnet18, resnet34, resnet50 take a choice"),
            (["--init", unrelatedFile.path], 1, "error: \(unrelatedFile.path): has no tensor that fits the model: its 1 tensors are named like encoder.weight"),
            (["--init", Self.runs.appending(path: "absent.safetensors").path], 1, "error: \(Self.runs.path)/absent.safetensors: does not exist"),
            (["--init", trained.appending(path: "last.safetensors").path, "--model", "smallcnn", "--strict"], 1,
             "does not fit the model exactly (strict loading):\nloaded "),
        ]
        for (index, (arguments, status, message)) in cases.enumerated() {
            let folder = Self.runs.appending(path: "bad-\(index)")
            let run = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--out", folder.path] + arguments)
            XCTAssertEqual(run.status, status, "\(arguments):\n\(run.output)")
            XCTAssertTrue(run.output.contains(message), "\(arguments):\n\(run.output)")
            XCTAssertFalse(run.output.contains("epoch 1"), "\(arguments): nothing trained:\n\(run.output)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: folder.path), "\(arguments): no run folder")
        }
        let out = Self.runs.appending(path: "features.safetensors")
        let features = try KilnCommand.run(["features", "--checkpoint", trained.appending(path: "last.safetensors").path, "--data", data.path,
                                            "--device", "host", "--layer", "fc1.weight", "--out", out.path])
        XCTAssertEqual(features.status, 64, features.output)
        XCTAssertTrue(features.output.contains("Error: --layer: no layer 'fc1.weight': fc1 has no 'weight' (it has no layers inside)"), features.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    /// Fine-tuning from a checkpoint with a frozen backbone that thaws, then features and a linear probe.
    func testFineTuningAndFeaturesFromTheCommandLine() throws {
        let (data, trained) = try KilnCommand.trainedRun.get()
        let checkpoint = trained.appending(path: "last.safetensors").path
        let folder = Self.runs.appending(path: "fine-tune")
        let run = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--out", folder.path, "--epochs", "2",
                                       "--batch-size", "32", "--only-classes", "5-9", "--per-class", "40", "--init", checkpoint,
                                       "--freeze-until", "fc1", "--unfreeze-at", "2", "--lr-backbone", "0.005"])
        XCTAssertEqual(run.status, 0, run.output)
        for line in ["classes: 5, 6, 7, 8, 9 (at most 40 training images of each, chosen by --seed)",
                     "init from \(checkpoint):\n  loaded 16 tensors\n  new classifier fc2 (initialised, not loaded): the file's has 10 classes, the model 5",
                     "frozen: 3472 of 52197 parameters (conv1, bn1, conv2, bn2); they train from epoch 2 at lr 0.005"] {
            XCTAssertTrue(run.output.contains(line), "\(line) in:\n\(run.output)")
        }
        let configuration = try TrainingRun.savedConfiguration(in: folder)
        XCTAssertEqual(configuration.initFrom, checkpoint)
        XCTAssertEqual(configuration.freezeUntil, "fc1")
        XCTAssertEqual(configuration.onlyClasses, "5-9")
        // Resume keeps the options (and loads the checkpoint, not --init again).
        let resumed = try KilnCommand.run(["train", "--resume", folder.path, "--epochs", "3"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertFalse(resumed.output.contains("init from"), resumed.output)

        let out = Self.runs.appending(path: "fc1.safetensors")
        let features = try KilnCommand.run(["features", "--checkpoint", folder.appending(path: "best.safetensors").path, "--device", "host",
                                            "--layer", "fc1", "--out", out.path, "--linear-probe", "--probe-epochs", "20"])
        XCTAssertEqual(features.status, 0, features.output)
        XCTAssertTrue(features.output.contains("fc1 of lenet-bn2: 120 features for each of 88 test images (5 classes); wrote \(out.path)"), features.output)
        XCTAssertTrue(features.output.contains("linear probe on fc1 (120 features, 20 epochs): train accuracy"), features.output)
        let file = try SafeTensors.read(from: out)
        XCTAssertEqual(file["features"]?.shape, [88, 120])
        XCTAssertEqual(file["labels"]?.dtype, .int64)
        XCTAssertEqual(Set(file.floats("labels") ?? []), [0, 1, 2, 3, 4])
        XCTAssertEqual(file.metadata["kiln.layer"], "fc1")
    }
}
