import Foundation
import XCTest
@testable import Kiln
@testable import KilnInterop

/// Every zoo model, exported to ONNX, computes in onnxruntime what it computes in Kiln: on real test images
/// (Fashion-MNIST as 1×28×28, and resized to 32×32 and turned to colour as 3×32×32), within 1e-4, with the
/// same accuracy. Checks/onnx_check.py runs the ONNX side; these tests write the exports and Kiln's answers.
final class ONNXRuntimeCheckTests: XCTestCase {
    private static let modules = ["numpy", "onnx", "onnxruntime"]
    private static let testSet = Result { try Dataset.load("fashion-mnist", split: .test) }
    /// Test images per model and input: the small models see 1,000 as 1×28×28; the large ones (minutes in a
    /// debug build) a few. (The accuracy on 1,000 images of a trained model is the second test.)
    private static func imageCount(_ name: String, _ shape: [Int]) -> Int {
        guard ["lenet5", "lenet-bn", "lenet-bn2", "autoencoder", "smallcnn"].contains(name) else { return 2 }
        return shape == [1, 28, 28] && name != "smallcnn" ? 1000 : 100
    }

    /// A case of the manifest onnx_check.py reads.
    private struct Case: Encodable {
        var name: String, onnx: String, inputs: String, outputs: String, labels: String?
        var batch: String, opset: Int
    }

    func testEveryZooModelMatchesOnnxruntimeAt1x28x28And3x32x32() throws {
        // One python3 run per model, checking it while the next one is written; each model's files are
        // removed once checked, so that no more than two models' exports (VGG's are 150 MB) are on disk.
        var running: (check: PythonCheck, folder: URL, cases: Int)?
        for name in ModelZoo.names {
            let folder = try temporaryFolder(self, name)
            var cases: [Case] = []
            for shape in [[1, 28, 28], [3, 32, 32]] {
                let model = try ModelZoo.make(name, inputShape: shape, classes: 10)
                try perturbBatchNormStatistics(of: model, seed: 7)
                cases.append(try writeCase(model, name: name, inputShape: shape, count: Self.imageCount(name, shape), in: folder))
            }
            if let running { try finish(running.check, cases: running.cases, folder: running.folder) }
            running = (try PythonCheck("onnx_check.py", [try manifest(cases, in: folder).path], needing: Self.modules), folder, cases.count)
        }
        if let running { try finish(running.check, cases: running.cases, folder: running.folder) }
    }

    /// A trained classifier keeps its accuracy on 1,000 test images; opsets from the first with batch norm's form to
    /// the newest Kiln writes, a fixed batch size and a trailing softmax export it too.
    func testATrainedModelKeepsItsAccuracyAtEveryOpsetAndBatchForm() throws {
        let train = try Dataset.load("fashion-mnist", split: .train).subset(Array(0..<3000))
        let model = try ModelZoo.make("lenet-bn2", inputShape: train.imageShape, classes: 10)
        let configuration = TrainingConfiguration()
        let trainer = Trainer(model: model, optimizer: try configuration.makeOptimizer(for: model),
                              loss: configuration.loss(for: .classification), seed: 1)
        _ = try trainer.trainPass(DataLoader(dataset: train, batchSize: 64, shuffle: true, seed: 1, device: .host).batches(epoch: 0))

        let folder = try temporaryFolder(self, "trained")
        var cases: [Case] = []
        for (opset, batch) in [(11, ONNXExportOptions.Batch.dynamic), (13, .dynamic), (21, .dynamic), (17, .fixed(1000))] {
            let batchName = if case let .fixed(size) = batch { String(size) } else { "dynamic" }
            cases.append(try writeCase(model, name: "lenet-bn2 trained, opset \(opset), batch \(batchName)", inputShape: train.imageShape,
                                       count: 1000, options: ONNXExportOptions(batch: batch, opset: opset), in: folder))
        }
        // Kiln's answer for the softmax graph: the softmax of its logits, row by row.
        cases.append(try writeCase(model, name: "lenet-bn2 trained, softmax", inputShape: train.imageShape, count: 1000,
                                   options: ONNXExportOptions(appendSoftmax: true), in: folder, transform: Self.softmaxRows))
        try check(cases, in: folder)
    }

    /// The layer kinds and settings the zoo does not use: dilation, grouped transposed convolution, PReLU per
    /// channel, swish, ELU, leaky ReLU, ReLU6, softplus, padded average pooling, global max pooling, a residual
    /// block without a shortcut layer, reshape, batch norm over features, DropConnect.
    func testEveryOtherLayerKindMatchesOnnxruntime() throws {
        let model = try Sequential {
            try Conv2D(inputChannels: 3, outputChannels: 8, kernelSize: 3, padding: 2, dilation: 2)          // 16×16
            try PReLU(channels: 8)
            try Conv2D(inputChannels: 8, outputChannels: 8, kernelSize: 3, stride: 2, padding: 1, groups: 4)  // 8×8
            Swish()
            try ConvTranspose2D(inputChannels: 8, outputChannels: 8, kernelSize: 3, stride: 2, padding: 1, outputPadding: 1,
                                dilation: 1, groups: 2)                                                      // 16×16
            ActivationLayer(.elu(alpha: 0.7))
            Pool2D(.average, geometry: try Pool2DGeometry(window: 3, stride: 2, padding: 1))                // 8×8
            ActivationLayer(.leakyReLU(slope: 0.1))
            try Upsample2D(scale: 2)                                                                        // 16×16
            ReLU6()
            ActivationLayer(.softplus)
            Residual(body: try Sequential { try Conv2D(inputChannels: 8, outputChannels: 8, kernelSize: 1); ActivationLayer(.tanh) },
                     activation: .relu)
            Concat { GlobalPool2D(.max); GlobalPool2D(.average) }                                           // [N, 16, 1, 1]
            Reshape([16])
            try BatchNorm(features: 16)
            try DropConnectLinear(inputFeatures: 16, outputFeatures: 12, probability: 0.3)
            try Dropout(probability: 0.2)
            try Linear(inputFeatures: 12, outputFeatures: 10)
        }
        try model.reset(seed: 11)
        try perturbBatchNormStatistics(of: model, seed: 3)
        let slopes = try XCTUnwrap(model.namedLayers.compactMap { $0.layer as? PReLU }.first)
        slopes.weight.value = try Tensor.uniform([8], low: 0.05, high: 0.5, seed: 4)
        let folder = try temporaryFolder(self, "kinds")
        try check([try writeCase(model, name: "every other layer kind", inputShape: [3, 16, 16], count: 50, in: folder, classifier: true)],
                  in: folder)
    }

    // MARK: Helpers

    /// Exports `model` and writes the first `count` test images at `inputShape`, Kiln's outputs for them and
    /// their labels.
    private func writeCase(_ model: Sequential, name: String, inputShape: [Int], count: Int,
                           options: ONNXExportOptions = ONNXExportOptions(), in folder: URL, classifier: Bool? = nil,
                           transform: (([Float]) -> [Float])? = nil) throws -> Case {
        let file = "\(name) \(inputShape.map(String.init).joined(separator: "x"))".map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }
            .map(String.init).joined()
        let test = try testImages(count, shape: inputShape)
        let onnx = folder.appending(path: "\(file).onnx")
        try Data(try ONNXExport.model(model, inputShape: inputShape, options: options)).write(to: onnx)
        var outputs: [Float] = [], outputShape: [Int] = []
        for start in stride(from: 0, to: count, by: 250) {
            let batch = test.subset(Array(start..<min(start + 250, count)))
            let y = try model.forward(try Tensor(batch.pixels, shape: [batch.count] + inputShape), .prediction)
            outputs += try y.toArray()
            outputShape = [count] + y.shape.dropFirst()
        }
        let inputs = folder.appending(path: "\(file).inputs.npy"), results = folder.appending(path: "\(file).outputs.npy")
        try writeNumpy(test.pixels, shape: [count] + inputShape, to: inputs)
        try writeNumpy(transform?(outputs) ?? outputs, shape: outputShape, to: results)
        var labels: URL?
        if try classifier ?? (ModelZoo.entry(String(name.split(separator: " ")[0])).task == .classification) {
            labels = folder.appending(path: "\(file).labels.npy")
            try writeNumpy(test.labels.map(Float.init), shape: [count], to: try XCTUnwrap(labels))
        }
        let batch: String
        switch options.batch {
        case .dynamic: batch = "dynamic"
        case let .fixed(size): batch = String(size)
        }
        return Case(name: "\(name) \(inputShape.map(String.init).joined(separator: "×"))", onnx: onnx.path, inputs: inputs.path,
                    outputs: results.path, labels: labels?.path, batch: batch, opset: options.opset)
    }

    /// The first `count` Fashion-MNIST test images, resized to `shape`'s size and, for three channels, made
    /// colour images of equal red, green and blue.
    private func testImages(_ count: Int, shape: [Int]) throws -> Dataset {
        let grey = try Self.testSet.get().subset(Array(0..<count)).resized(toSize: shape[1])
        guard shape[0] > 1 else { return grey }
        let plane = shape[1] * shape[2]
        let pixels = (0..<count).flatMap { image in
            (0..<shape[0]).flatMap { _ in grey.pixels[(image * plane)..<((image + 1) * plane)] }
        }
        return Dataset(imageShape: shape, pixels: pixels, labels: grey.labels, classNames: grey.classNames)
    }

    /// The softmax of each row of ten logits.
    private static func softmaxRows(_ logits: [Float]) -> [Float] {
        stride(from: 0, to: logits.count, by: 10).flatMap { start -> [Float] in
            let row = logits[start..<(start + 10)], top = row.max() ?? 0
            let exponentials = row.map { Float(exp(Double($0 - top))) }
            let total = exponentials.reduce(0, +)
            return exponentials.map { $0 / total }
        }
    }

    /// Running statistics and affine parameters away from their initial 0 and 1, so that the export of batch
    /// norm is checked for what training makes of it.
    private func perturbBatchNormStatistics(of model: Sequential, seed: UInt64) throws {
        for (index, entry) in model.namedLayers.enumerated() {
            guard let norm = entry.layer as? BatchNorm else { continue }
            let shape = [norm.features], stream = seed &+ UInt64(index) &* 4
            norm.runningMean.value = try Tensor.uniform(shape, low: -0.2, high: 0.2, seed: stream)
            norm.runningVariance.value = try Tensor.uniform(shape, low: 0.5, high: 1.5, seed: stream &+ 1)
            norm.weight.value = try Tensor.uniform(shape, low: 0.8, high: 1.2, seed: stream &+ 2)
            norm.bias.value = try Tensor.uniform(shape, low: -0.1, high: 0.1, seed: stream &+ 3)
        }
    }

    private func manifest(_ cases: [Case], in folder: URL) throws -> URL {
        let manifest = folder.appending(path: "manifest.json")
        try JSONEncoder().encode(cases).write(to: manifest)
        return manifest
    }

    private func check(_ cases: [Case], in folder: URL) throws {
        try finish(try PythonCheck("onnx_check.py", [try manifest(cases, in: folder).path], needing: Self.modules), cases: cases.count)
    }

    /// Waits for `check`, asserts that it passed each of its `cases`, and removes `folder`.
    private func finish(_ check: PythonCheck, cases: Int, folder: URL? = nil) throws {
        let run = try check.finish()
        print(run.output, terminator: "")
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertEqual(run.output.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count, cases, run.output)
        if let folder { try FileManager.default.removeItem(at: folder) }
    }
}
