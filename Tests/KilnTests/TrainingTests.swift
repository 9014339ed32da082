import Foundation
import XCTest
@testable import Kiln

/// End-to-end training on Fashion-MNIST (short runs; the full 10-epoch runs are in BENCHMARKS.md).
final class TrainingTests: XCTestCase {
    private func fashionMNIST(_ split: DatasetSplit) throws -> Dataset {
        guard FileManager.default.fileExists(atPath: Dataset.fashionMNISTDirectory.path) else {
            throw XCTSkip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        }
        return try Dataset.load("fashion-mnist", split: split)
    }

    private func trainer(on device: Device, seed: UInt64) throws -> Trainer {
        let model = try LeNetBN()
        try model.reset(seed: seed)
        try model.move(to: device)
        let optimizer = Optimizer(model: model, rule: .sgd(momentum: 0.9, nesterov: true), learningRate: 0.05,
                                  regularization: Regularization(weightDecay: 5e-4))
        return Trainer(model: model, optimizer: optimizer, loss: crossEntropyLoss, seed: seed)
    }

    func testLeNetBNLearnsFashionMNISTInAFewHundredSteps() throws {
        let train = try fashionMNIST(.train).subset(Array(0..<19_200))
        let heldOut = try fashionMNIST(.test).subset(Array(0..<2_000))
        let trainer = try trainer(on: .host, seed: 1)
        let pass = try trainer.trainPass(DataLoader(dataset: train, batchSize: 64, shuffle: true, seed: 1, device: .host).batches(epoch: 0))
        XCTAssertEqual(pass.stepLosses.count, 300)
        XCTAssertLessThan(Array(pass.stepLosses.suffix(50)).reduce(0, +) / 50, Array(pass.stepLosses.prefix(20)).reduce(0, +) / 20 / 2,
                          "the loss falls")
        let evaluation = try trainer.evaluate(DataLoader(dataset: heldOut, batchSize: 500, shuffle: false, device: .host).batches(epoch: 0))
        XCTAssertGreaterThanOrEqual(evaluation.accuracy, 0.80, "held-out accuracy after 300 steps")
        XCTAssertEqual(evaluation.samples, 2_000)
        XCTAssertEqual(evaluation.confusion.flatMap { $0 }.reduce(0, +), 2_000)
    }

    func testSeededRunsReproduceAndTheDeviceFollowsTheHost() throws {
        let train = try fashionMNIST(.train).subset(Array(0..<640))
        func losses(on device: Device) throws -> [Float] {
            try trainer(on: device, seed: 7).trainPass(
                DataLoader(dataset: train, batchSize: 32, shuffle: true, seed: 7, device: device).batches(epoch: 0)).stepLosses
        }
        let host = try losses(on: .host)
        XCTAssertEqual(host.count, 20)
        XCTAssertEqual(try losses(on: .host), host, "a seeded run reproduces its losses exactly")
        let device = try losses(on: try openCLDevice())
        for (step, (a, b)) in zip(device, host).enumerated() {
            XCTAssertEqual(a, b, accuracy: 1e-3 * abs(b), "loss of step \(step): OpenCL \(a), host \(b)")
        }
    }

    func testANonFiniteLossStopsTrainingAndNamesTheStep() throws {
        let train = try fashionMNIST(.test).subset(Array(0..<256))
        let trainer = try trainer(on: .host, seed: 3)
        trainer.optimizer.learningRate = 1e30  // diverges within a few steps
        XCTAssertThrowsError(try trainer.trainPass(DataLoader(dataset: train, batchSize: 16, shuffle: false, device: .host).batches(epoch: 0))) { error in
            guard case let .nonFiniteLoss(step, _) = error as? TrainingError else { return XCTFail("\(error)") }
            XCTAssertLessThan(step, 16)
            XCTAssertTrue("\(error)".contains("step \(step)"))
        }
    }
}

/// The steady state of a training step on a device: after the first steps every buffer comes from the
/// caching allocator, so the driver is never asked for memory again.
final class SteadyStateTests: XCTestCase {
    func testTrainingStepsAllocateNothingFromTheDriverAfterWarmUp() throws {
        let device = try openCLDevice()
        let model = try LeNetBN()
        try model.reset(seed: 3)
        try model.move(to: device)
        let optimizer = Optimizer(model: model, rule: .sgd(momentum: 0.9, nesterov: true), learningRate: 0.01)
        let trainer = Trainer(model: model, optimizer: optimizer, loss: crossEntropyLoss, seed: 3)
        let labels = (0..<16).map { $0 % 10 }
        let batch = Batch(inputs: try Tensor.uniform([16, 1, 28, 28], seed: 4, on: device),
                          targets: try Tensor(labels.map(Float.init), shape: [16], on: device), labels: labels)
        for _ in 0..<2 { try trainer.trainStep(batch) }
        try device.backend().synchronize()
        guard let backend = try device.backend() as? OpenCLBackend else { return XCTFail("\(device) is not an OpenCL device") }
        let before = backend.context.allocator.statistics.driverAllocations
        for _ in 0..<3 { _ = try trainer.trainStep(batch).loss.item() }
        XCTAssertEqual(backend.context.allocator.statistics.driverAllocations, before, "driver allocations in the steady state")
    }
}
