import Foundation
import XCTest
@testable import Kiln
@testable import KilnCL

/// The warm-up before a run's first step records that step with every launch skipped, then builds and
/// tunes what it recorded. It must leave training exactly as it would have been, and leave the steps
/// nothing to build or tune.
final class WarmupTests: XCTestCase {
    /// Two copies of a model, one warmed up and one not, train and predict bit for bit alike; the warmed-up
    /// one's steps build and tune nothing. LeNet-BN (batch norm, dropout, direct convolutions, CLBlast),
    /// and a network with an upsampling (a kernel of ones it caches), a residual block and Adam's state.
    func testAWarmedUpRunTrainsAndPredictsExactlyAsAColdOne() throws {
        let device = try openCLDevice()
        let backend = try XCTUnwrap(try device.backend() as? OpenCLBackend)
        let networks: [(name: String, make: () throws -> Sequential, input: [Int], rule: UpdateRule)] = [
            ("lenet-bn", { try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10) }, [1, 28, 28], .sgd(momentum: 0.9, nesterov: true)),
            ("upsampling residual net", { try Self.upsamplingResidualNet() }, [2, 7, 7], .adam()),
        ]
        for network in networks {
            var random = TestRandom(seed: 11)
            let batchSize = 5
            let inputs = random.floats(batchSize * network.input.reduce(1, *))
            let labels = (0..<batchSize).map { $0 % 4 }
            func batch() throws -> Batch {
                Batch(inputs: try Tensor(inputs, shape: [batchSize] + network.input, on: device),
                      targets: try Tensor(labels.map(Float.init), shape: [batchSize], on: device), labels: labels)
            }
            let cold = try network.make(), warm = try network.make()
            try warm.loadStateDict(try cold.stateDict(), source: "the cold copy")
            try cold.move(to: device)
            try warm.move(to: device)
            func trainer(_ model: Sequential) -> Trainer {
                Trainer(model: model, optimizer: Optimizer(model: model, rule: network.rule, learningRate: 0.01), loss: crossEntropyLoss, seed: 3)
            }
            let (coldTrainer, warmTrainer) = (trainer(cold), trainer(warm))

            let plan = try XCTUnwrap(try Warmup.plan(for: warmTrainer, on: device, batch: batch, inferenceBatchSize: 3))
            XCTAssertGreaterThan(plan.programCount + backend.remainingWork(in: plan).programs, 0, network.name)
            try Warmup.prepare(plan, on: device, showProgress: false)
            XCTAssertEqual(backend.remainingWork(in: plan).programs, 0, "\(network.name): everything planned is built")
            let workBefore = backend.warmupWorkDone
            var warmLosses: [Float] = [], coldLosses: [Float] = []
            for _ in 0..<2 { warmLosses.append(try warmTrainer.trainStep(try batch()).loss.item()) }
            let warmPrediction = try warm.forward(try batch().inputs, .prediction).toArray()
            XCTAssertEqual(backend.warmupWorkDone, workBefore, "\(network.name): the steps after a warm-up build and tune nothing")

            for _ in 0..<2 { coldLosses.append(try coldTrainer.trainStep(try batch()).loss.item()) }
            let coldPrediction = try cold.forward(try batch().inputs, .prediction).toArray()
            XCTAssertEqual(warmLosses, coldLosses, network.name)
            XCTAssertEqual(warmPrediction, coldPrediction, network.name)
            for ((name, w), (_, c)) in zip(warm.namedParameters, cold.namedParameters) {
                XCTAssertEqual(try w.value.toArray(), try c.value.toArray(), "\(network.name): \(name)")
            }
            XCTAssertEqual(warmTrainer.optimizer.stepCount, 2, "the plan's update ran on a copy of the optimiser")
        }
    }

    /// With tuning on, the plan lists the convolution shapes the steps will meet; the preparation times
    /// them, and the steps then tune none.
    func testThePreparationTunesTheShapesTheStepsMeet() throws {
        let device = try openCLDevice()
        let backend = try XCTUnwrap(try device.backend() as? OpenCLBackend)
        guard !backend.context.device.info.isSimulator else { throw XCTSkip("tuning on a simulator takes too long") }
        try withFreshTuner(backend) { _ in
            let model = try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10)
            try model.move(to: device)
            let trainer = Trainer(model: model, optimizer: Optimizer(model: model, rule: .sgd(), learningRate: 0.01), loss: crossEntropyLoss, seed: 1)
            let batchSize = 3  // a batch size no other test tunes
            let batch = { Batch(inputs: try .zeros([batchSize, 1, 28, 28], on: device), targets: try .zeros([batchSize], on: device),
                                labels: [0, 0, 0]) }
            let plan = try XCTUnwrap(try Warmup.plan(for: trainer, on: device, batch: batch))
            // Both convolutions' forward and filter gradient, and the second's input gradient (nothing reads the
            // first's); inference meets the forward shapes again.
            XCTAssertEqual(backend.remainingWork(in: plan).tunings, 5)
            let report = try Warmup.prepare(plan, on: device, showProgress: false)
            XCTAssertEqual(report.tunedShapes, 5)
            XCTAssertEqual(backend.remainingWork(in: plan).tunings, 0)
            let before = backend.convolutionChoices.count
            try trainer.trainStep(try batch())
            _ = try model.forward(try batch().inputs, .prediction)
            XCTAssertEqual(backend.convolutionChoices.count, before, "the step tuned nothing")
        }
    }

    /// The progress bar's speed and ETA leave out the steps that did one-time work.
    func testTheRateLeavesOutTheWarmUpSteps() {
        var rate = SteadyRate()
        rate.add(step: 1, images: 64, at: 30, warmingUp: true)  // 30 s of compiling
        XCTAssertNil(rate.imagesPerSecond, "nothing measured yet")
        rate.add(step: 2, images: 128, at: 30.5, warmingUp: false)
        rate.add(step: 3, images: 192, at: 31, warmingUp: false)
        XCTAssertEqual(try XCTUnwrap(rate.imagesPerSecond), 128, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(rate.secondsLeft(steps: 10)), 5, accuracy: 1e-9)
        rate.add(step: 4, images: 256, at: 41, warmingUp: true)  // a late compile, also left out
        rate.add(step: 5, images: 320, at: 41.5, warmingUp: false)
        XCTAssertEqual(try XCTUnwrap(rate.imagesPerSecond), 128, accuracy: 1e-9)
    }

    /// upsample ×2 → conv 3×3 → batch norm → a residual block → pool → linear: a 4-class classifier of
    /// [2, 7, 7] images.
    private static func upsamplingResidualNet() throws -> Sequential {
        let block = Residual(body: try Sequential {
            try Conv2D(inputChannels: 4, outputChannels: 4, geometry: try Conv2DGeometry(kernelSize: 3, padding: 1))
            try BatchNorm(features: 4)
        }, activation: .relu)
        return try Sequential {
            try Upsample2D(scale: 2)
            try Conv2D(inputChannels: 2, outputChannels: 4, geometry: try Conv2DGeometry(kernelSize: 3, padding: 1))
            try BatchNorm(features: 4)
            ActivationLayer(.relu)
            block
            Pool2D(.max, geometry: try Pool2DGeometry(window: 2))
            Flatten()
            try Linear(inputFeatures: 4 * 7 * 7, outputFeatures: 4)
        }
    }
}
