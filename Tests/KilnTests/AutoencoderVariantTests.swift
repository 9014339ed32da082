import Foundation
import XCTest
@testable import Kiln

/// The denoising (`--noise σ`) and sparse (`--sparsity λ`) autoencoders: the corrupted inputs and clean
/// targets, and the L1 penalty on the code.
final class AutoencoderVariantTests: XCTestCase {
    /// 40 mid-grey 4×4 images, far enough from 0 and 1 that σ = 0.1 noise is almost never clamped.
    private let grey = Dataset(imageShape: [1, 4, 4], pixels: [Float](repeating: 0.5, count: 40 * 16), labels: Array(repeating: 0, count: 40),
                               classNames: ["grey"])

    func testNoiseCorruptsTheInputsAndKeepsTheCleanImagesForTheLoss() throws {
        var loader = DataLoader(dataset: grey, batchSize: 40, shuffle: false, seed: 3, device: .host)
        loader.inputNoise = 0.1
        let batch = try loader.batch(of: Array(0..<40), epoch: 0)
        XCTAssertEqual(try XCTUnwrap(batch.cleanInputs).toArray(), grey.pixels)
        let noise = zip(try batch.inputs.toArray(), grey.pixels).map { Double($0 - $1) }
        let mean = noise.reduce(0, +) / Double(noise.count)
        let std = (noise.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(noise.count)).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 0.015, "640 draws: the mean's standard error is 0.004")
        XCTAssertEqual(std, 0.1, accuracy: 0.01)

        // An image's noise depends on the seed, the epoch and its index, not on the batch it is in.
        let alone = try loader.batch(of: [7], epoch: 0).inputs.toArray()
        XCTAssertEqual(alone, Array(try batch.inputs.toArray()[(7 * 16)..<(8 * 16)]))
        XCTAssertNotEqual(try loader.batch(of: [7], epoch: 1).inputs.toArray(), alone, "each epoch draws new noise")
        // Clamped to the pixel range.
        loader.inputNoise = 5
        XCTAssertTrue(try loader.batch(of: Array(0..<40), epoch: 0).inputs.toArray().allSatisfy { (0...1).contains($0) })
        loader.inputNoise = nil
        XCTAssertNil(try loader.batch(of: [1], epoch: 0).cleanInputs)
    }

    func testTheReconstructionLossComparesWithTheCleanImages() throws {
        let noisy = try Tensor([0.9, 0.1], shape: [1, 2]), clean = try Tensor([0.5, 0.5], shape: [1, 2])
        var batch = Batch(inputs: noisy, targets: try Tensor([0], shape: [1]), labels: [0])
        batch.cleanInputs = clean
        let output = try Tensor([0.5, 0.7], shape: [1, 2])
        // mean((0.5 − 0.5)², (0.7 − 0.5)²) = 0.02
        XCTAssertEqual(try reconstructionLoss(output, batch).loss.item(), 0.02, accuracy: 1e-7)
    }

    func testActivityL1PassesTheInputAndAddsTheGradientOfItsPenalty() throws {
        let layer = try ActivityL1(strength: 0.3)
        // Values away from 0, where |x| is differentiable.
        let x = try Tensor((0..<24).map { i in Float(i % 2 == 0 ? 1 : -1) * (0.2 + Float(i) * 0.05) }, shape: [3, 2, 2, 2])
        let upstream = try Tensor.uniform([3, 2, 2, 2], low: -1, high: 1, seed: 5)
        let y = try layer.forward(x, ForwardContext(training: true))
        XCTAssertEqual(try y.toArray(), try x.toArray())
        let dx = try layer.backward(upstream)
        // loss = Σ y·dy + λ · Σ|x| / N
        try assertGradient("ActivityL1", of: x, analytic: dx) {
            try weightedSum(x, upstream) + 0.3 * (try x.toArray()).map { Double(abs($0)) }.reduce(0, +) / 3
        }
        // In inference it is the identity both ways.
        _ = try layer.forward(x, .inference)
        XCTAssertEqual(try layer.backward(upstream).toArray(), try upstream.toArray())
    }

    func testSparsityPutsThePenaltyAfterTheEncoderAndOnlyThere() throws {
        var configuration = TrainingConfiguration()
        configuration.model = "autoencoder"
        configuration.sparsity = 0.01
        try configuration.validateValues()
        let sparse = try configuration.makeModel(inputShape: [1, 28, 28], classes: 10)
        XCTAssertEqual(sparse.layers.map(\.name), ["encoder", "sparsity", "decoder"])
        XCTAssertEqual((sparse.layers[1].layer as? ActivityL1)?.strength, 0.01)
        let plain = try ModelZoo.make("autoencoder", inputShape: [1, 28, 28], classes: 10)
        XCTAssertEqual(sparse.namedParameters.map(\.name), plain.namedParameters.map(\.name), "checkpoints stay interchangeable")

        configuration.model = "lenet-bn2"
        XCTAssertThrowsError(try configuration.validateValues()) { error in
            XCTAssertTrue("\(error)".contains("--sparsity penalises the autoencoder's code; lenet-bn2 has none"), "\(error)")
        }
        configuration.sparsity = nil
        configuration.noise = -0.1
        XCTAssertThrowsError(try configuration.validateValues()) { error in
            XCTAssertTrue("\(error)".contains("--noise must be a standard deviation of at least 0, not -0.1"), "\(error)")
        }
    }

    /// Trained alike but for the penalty, the sparse autoencoder's code has a smaller mean |value|.
    func testTheSparseAutoencodersCodeIsSmaller() throws {
        let train = try Dataset.load("fashion-mnist", split: .train).subset(Array(0..<512))
        func meanCode(sparsity: Float?) throws -> Double {
            var configuration = TrainingConfiguration()
            configuration.model = "autoencoder"
            configuration.sparsity = sparsity
            configuration.optimizer = "adam"
            configuration.applyOptimizerDefaults(keepingLearningRate: false)
            let model = try configuration.makeModel(inputShape: train.imageShape, classes: 10)
            let trainer = Trainer(model: model, optimizer: try configuration.makeOptimizer(for: model),
                                  loss: reconstructionLoss, seed: 1, measuresAccuracy: false)
            _ = try trainer.trainPass(DataLoader(dataset: train, batchSize: 32, shuffle: true, seed: 1, device: .host).batches(epoch: 0))
            let code = try model.layers[0].layer.forward(try Tensor(train.subset(Array(0..<64)).pixels, shape: [64, 1, 28, 28]), .inference)
            let values = try code.toArray()
            return values.map { Double(abs($0)) }.reduce(0, +) / Double(values.count)
        }
        let plain = try meanCode(sparsity: nil), sparse = try meanCode(sparsity: 0.05)
        XCTAssertLessThan(sparse, 0.5 * plain, "mean |code| \(sparse) with the penalty, \(plain) without")
    }
}
