import Foundation
import XCTest
@testable import Kiln

/// The learning-rate schedules `kiln train --schedule` names, evaluated at every step, against PyTorch's
/// schedulers (Fixtures/schedules.py writes the fixture).
final class ScheduleTests: XCTestCase {
    private struct Fixture: Decodable {
        struct Case: Decodable { var lr: [Double]; var momentum: [Double]? }
        var cases: [String: Case]
    }

    private func fixture(_ name: String) throws -> Fixture.Case {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appending(path: "Fixtures/schedules.json")
        let cases = try JSONDecoder().decode(Fixture.self, from: try Data(contentsOf: url)).cases
        return try XCTUnwrap(cases[name], "no case \(name) in \(url.path)")
    }

    /// The scheduler `kiln train` makes from these options, for epochs of `stepsPerEpoch` steps.
    private func scheduler(_ configure: (inout TrainingConfiguration) -> Void, stepsPerEpoch: Int) throws -> LearningRateScheduler {
        var configuration = TrainingConfiguration()
        configuration.lr = 0.1
        configure(&configuration)
        try configuration.validateValues()
        return try configuration.makeScheduler(stepsPerEpoch: stepsPerEpoch)
    }

    private func assertMatches(_ name: String, _ scheduler: LearningRateScheduler, file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try fixture(name)
        for (step, rate) in expected.lr.enumerated() {
            XCTAssertEqual(Double(scheduler.learningRate(step: step)), rate, accuracy: 1e-6 * max(rate, 1e-3),
                           "\(name), step \(step)", file: file, line: line)
        }
        for (step, momentum) in (expected.momentum ?? []).enumerated() {
            XCTAssertEqual(Double(try XCTUnwrap(scheduler.momentum(step: step))), momentum, accuracy: 1e-6, "\(name) momentum, step \(step)",
                           file: file, line: line)
        }
    }

    func testEverySchedulePerStepMatchesPyTorchs() throws {
        try assertMatches("cosine", scheduler({ ($0.schedule, $0.epochs) = ("cosine", 3) }, stepsPerEpoch: 7))
        try assertMatches("onecycle", scheduler({ ($0.schedule, $0.epochs) = ("onecycle", 3) }, stepsPerEpoch: 7))
        // Six epochs: "every third of the run" is every 2 epochs, StepLR(step_size=2).
        try assertMatches("step", scheduler({ ($0.schedule, $0.epochs) = ("step", 6) }, stepsPerEpoch: 3))
        try assertMatches("milestones", scheduler({ ($0.schedule, $0.epochs, $0.milestones, $0.gamma) = ("step", 5, "2,4", 0.5) }, stepsPerEpoch: 3))
        try assertMatches("exponential", scheduler({ ($0.schedule, $0.epochs, $0.gamma) = ("exponential", 4, 0.8) }, stepsPerEpoch: 2))
        try assertMatches("warmup+cosine", scheduler({ ($0.schedule, $0.epochs, $0.warmup) = ("cosine", 3, "5") }, stepsPerEpoch: 7))
        XCTAssertNil(try scheduler({ $0.schedule = "cosine" }, stepsPerEpoch: 7).momentum(step: 3), "only one-cycle sets the momentum")
    }

    func testAWarmUpInEpochsCountsTheirSteps() throws {
        let inEpochs = try scheduler({ ($0.schedule, $0.warmup) = ("constant", "2ep") }, stepsPerEpoch: 5)
        XCTAssertEqual(inEpochs.warmupSteps, 10)
        XCTAssertEqual(inEpochs.learningRate(step: 0), 0.01, accuracy: 1e-9)
        XCTAssertEqual(inEpochs.learningRate(step: 9), 0.1, accuracy: 1e-9)
        XCTAssertEqual(inEpochs.learningRate(step: 30), 0.1, accuracy: 1e-9)
    }

    /// The trainer takes the rate and one-cycle's momentum at every step, and a pass reports the rate of each.
    func testTheTrainerAppliesTheScheduleAtEveryStep() throws {
        for device in try testDevices() {
            let layer = try Linear(inputFeatures: 2, outputFeatures: 2)
            let model = try Sequential { layer }
            try model.move(to: device)
            let optimizer = Optimizer(model: model, rule: .sgd(momentum: 0.9, nesterov: true), learningRate: 0.1)
            let trainer = Trainer(model: model, optimizer: optimizer, loss: crossEntropyLoss, seed: 1)
            let scheduler = LearningRateScheduler(schedule: .oneCycle(epochs: 2), baseLearningRate: 0.1, stepsPerEpoch: 4)
            trainer.scheduler = scheduler
            let batch = Batch(inputs: try Tensor([1, 2, 3, 4], shape: [2, 2], on: device), targets: try Tensor([0, 1], shape: [2], on: device),
                              labels: [0, 1])
            let pass = try trainer.trainPass(Array(repeating: batch, count: 3))
            XCTAssertEqual(pass.stepLearningRates, (0..<3).map { scheduler.learningRate(step: $0) }, "\(device)")
            XCTAssertEqual(optimizer.rule, .sgd(momentum: try XCTUnwrap(scheduler.momentum(step: 2)), nesterov: true), "\(device)")
        }
    }

    func testBadScheduleOptionsAreNamedErrors() {
        let cases: [(configure: (inout TrainingConfiguration) -> Void, message: String)] = [
            ({ $0.schedule = "linear" }, "unknown schedule 'linear'; use constant, step, exponential, cosine, onecycle, plateau"),
            ({ $0.warmup = "-5" }, "--warmup takes a number of steps (500) or of epochs (2ep), not '-5'"),
            ({ $0.warmup = "1.5" }, "--warmup takes a number of steps (500) or of epochs (2ep), not '1.5'"),
            ({ ($0.schedule, $0.milestones) = ("step", "4,2") }, "--milestones takes increasing epochs from 1, comma-separated (3,6), not '4,2'"),
            ({ $0.milestones = "3" }, "--milestones are the epochs of --schedule step, not of cosine"),
            ({ $0.gamma = 0.5 }, "--gamma sets the factor of the step and exponential schedules, not of --schedule cosine"),
            ({ ($0.schedule, $0.gamma) = ("exponential", 1.5) }, "--gamma must be above 0 and at most 1, not 1.5"),
        ]
        for (configure, message) in cases {
            var configuration = TrainingConfiguration()
            configure(&configuration)
            XCTAssertThrowsError(try configuration.validate()) { XCTAssertEqual("\($0)", message) }
        }
        var long = TrainingConfiguration()
        (long.epochs, long.batchSize, long.warmup) = (2, 10, "2ep")
        XCTAssertThrowsError(try long.validate(trainingImages: 95, validationImages: 5)) {
            XCTAssertEqual("\($0)", "--warmup 2ep is 20 steps, as long as the run or longer (2 epochs of 10 steps)")
        }
        long.warmup = "19"
        XCTAssertNoThrow(try long.validate(trainingImages: 95, validationImages: 5))
    }
}
