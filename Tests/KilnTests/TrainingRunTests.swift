import Foundation
import XCTest
@testable import Kiln

/// `TrainingRun` on a tiny synthetic data set (4×4 images of 4 classes, a two-layer network with dropout), so
/// each run takes a fraction of a second on the host backend.
final class TrainingRunTests: XCTestCase {
    private var folders: [URL] = []

    override func tearDown() {
        for folder in folders { try? FileManager.default.removeItem(at: folder) }
        folders.removeAll()
    }

    private func temporaryFolder() -> URL {
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-run-\(UUID().uuidString)")
        folders.append(folder)
        return folder
    }

    /// Class c lights quadrant c of the image, over uniform noise.
    private func syntheticData(count: Int, seed: UInt64) -> Dataset {
        var random = TestRandom(seed: seed)
        var pixels: [Float] = [], labels: [Int] = []
        for _ in 0..<count {
            let label = random.int(0...3)
            for y in 0..<4 {
                for x in 0..<4 { pixels.append(random.float(0, 0.5) + ((y / 2) * 2 + x / 2 == label ? 0.5 : 0)) }
            }
            labels.append(label)
        }
        return Dataset(imageShape: [1, 4, 4], pixels: pixels, labels: labels, classNames: ["a", "b", "c", "d"])
    }

    /// The same images with every label moved to the next class: the better the network learns the training
    /// set, the worse its loss here, so after the first epoch the validation loss never improves.
    private func mislabelled(_ data: Dataset) -> Dataset {
        Dataset(imageShape: data.imageShape, pixels: data.pixels, labels: data.labels.map { ($0 + 1) % 4 }, classNames: data.classNames)
    }

    private func network(seed: UInt64) throws -> Sequential {
        let model = try Sequential {
            Flatten()
            try Linear(inputFeatures: 16, outputFeatures: 32).named("fc1")
            ReLU()
            try Dropout(probability: 0.25)
            try Linear(inputFeatures: 32, outputFeatures: 4).named("fc2")
        }
        try model.reset(seed: seed)
        return model
    }

    private func configuration(epochs: Int, schedule: String = "cosine", earlyStop: Int? = nil) -> TrainingConfiguration {
        var configuration = TrainingConfiguration()
        configuration.model = "synthetic-mlp"
        configuration.data = "synthetic"
        configuration.device = "host"
        configuration.epochs = epochs
        configuration.batchSize = 8
        configuration.lr = 0.1
        configuration.schedule = schedule
        configuration.seed = 5
        configuration.earlyStop = earlyStop
        return configuration
    }

    /// A run of `configuration` in `folder`. A resumed run starts from a network initialised differently, so
    /// its weights can only match by coming from the checkpoint.
    private func makeRun(_ folder: URL, _ configuration: TrainingConfiguration, validation: Dataset? = nil,
                         resuming: Bool = false) throws -> TrainingRun {
        let train = syntheticData(count: 64, seed: 11)
        let run = try TrainingRun(folder: folder, configuration: configuration, model: try network(seed: resuming ? 99 : configuration.seed),
                                  train: train, validation: validation ?? syntheticData(count: 32, seed: 12), device: .host,
                                  resuming: resuming)
        run.showProgress = false
        return run
    }

    /// The metrics a run must reproduce: every column but the timings.
    private func reproducibleMetrics(in folder: URL) throws -> [EpochMetrics] {
        try MetricsLog.read(from: folder.appending(path: TrainingRun.metricsFile)).rows.map { row in
            var row = row
            (row.imagesPerSecond, row.seconds) = (0, 0)
            return row
        }
    }

    private func assertSameWeights(_ a: URL, _ b: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let first = try SafeTensors.read(from: a.appending(path: TrainingRun.lastCheckpointFile))
        let second = try SafeTensors.read(from: b.appending(path: TrainingRun.lastCheckpointFile))
        XCTAssertEqual(first.names, second.names, file: file, line: line)
        for name in first.names { XCTAssertEqual(first[name]?.data, second[name]?.data, name, file: file, line: line) }
    }

    private func savedState(in folder: URL) throws -> FitState? {
        let url = folder.appending(path: TrainingRun.lastCheckpointFile)
        return try TrainingCheckpoint.state(in: SafeTensors.read(from: url), source: url.path)
    }

    // MARK: (a) the run folder

    func testARunWritesItsFolder() throws {
        let folder = temporaryFolder()
        let run = try makeRun(folder, configuration(epochs: 2))
        XCTAssertEqual(try run.run(), .completed)

        for file in [TrainingRun.configurationFile, TrainingRun.metricsFile, TrainingRun.stepsFile, TrainingRun.curvesFile,
                     TrainingRun.lastCheckpointFile, TrainingRun.resumeCheckpointFile, TrainingRun.bestCheckpointFile] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appending(path: file).path), file)
        }
        var saved = try TrainingRun.savedConfiguration(in: folder)
        XCTAssertEqual(saved.resolvedDevice, "host", "config.json records the device the run used")
        XCTAssertNotNil(saved.deviceName)
        (saved.resolvedDevice, saved.deviceName) = (nil, nil)
        XCTAssertEqual(saved, configuration(epochs: 2))

        let metrics = try MetricsLog.read(from: folder.appending(path: TrainingRun.metricsFile)).rows
        XCTAssertEqual(metrics.map(\.epoch), [1, 2])
        XCTAssertEqual(metrics.map(\.step), [8, 16], "64 images in batches of 8")
        XCTAssertEqual(metrics.count, run.metrics.rows.count)
        for (read, kept) in zip(metrics, run.metrics.rows) { XCTAssertEqual(read.trainLoss, kept.trainLoss, accuracy: 1e-5 * kept.trainLoss) }

        let steps = try String(contentsOf: folder.appending(path: TrainingRun.stepsFile), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(steps.first, "step,loss,lr")
        XCTAssertEqual(steps.count, 17, "a header and 16 steps")
        // The rate of every step: the cosine schedule over 16 steps, from the configuration's rate.
        let scheduler = try configuration(epochs: 2).makeScheduler(stepsPerEpoch: 8)
        for (index, line) in steps.dropFirst().enumerated() {
            let rate = try XCTUnwrap(Float(try XCTUnwrap(line.split(separator: ",").last)), String(line))
            XCTAssertEqual(rate, scheduler.learningRate(step: index), accuracy: 1e-7, String(line))
        }
        XCTAssertTrue(try String(contentsOf: folder.appending(path: TrainingRun.curvesFile), encoding: .utf8).hasPrefix("<svg"))

        let state = try XCTUnwrap(try savedState(in: folder))
        XCTAssertEqual(state, run.state)
        XCTAssertEqual(state.position, TrainingPosition(epoch: 2, batch: 0, step: 16))
        XCTAssertEqual(state.seed, 5)
        XCTAssertNil(state.partialEpoch)
        let config = try SafeTensors.read(from: folder.appending(path: TrainingRun.lastCheckpointFile)).metadata["kiln.config"]
        XCTAssertEqual(try JSONDecoder().decode(TrainingConfiguration.self, from: Data(XCTUnwrap(config).utf8)), configuration(epochs: 2))
    }

    // MARK: (b) interrupted and resumed

    func testAStopMidEpochResumesToTheSameWeightsAndMetrics() throws {
        let whole = temporaryFolder(), stopped = temporaryFolder()
        XCTAssertEqual(try makeRun(whole, configuration(epochs: 3)).run(), .completed)

        let first = try makeRun(stopped, configuration(epochs: 3))
        first.epochEnded = { [unowned first] metrics, _ in if metrics.epoch == 1 { first.requestStop() } }
        // The stop is seen after the next step: one batch into the second epoch.
        XCTAssertEqual(try first.run(), .interrupted(TrainingPosition(epoch: 1, batch: 1, step: 9)))
        let state = try XCTUnwrap(try savedState(in: stopped))
        XCTAssertEqual(state.position, TrainingPosition(epoch: 1, batch: 1, step: 9))
        XCTAssertEqual(state.partialEpoch?.stepLosses.count, 1)
        XCTAssertEqual(state.partialEpoch?.images, 8)

        let resumed = try makeRun(stopped, configuration(epochs: 3), resuming: true)
        XCTAssertTrue(resumed.isResumed)
        XCTAssertEqual(resumed.state, state)
        XCTAssertEqual(resumed.trainer.step, 9)
        XCTAssertEqual(try resumed.run(), .completed)

        try assertSameWeights(whole, stopped)
        XCTAssertEqual(try reproducibleMetrics(in: stopped), try reproducibleMetrics(in: whole),
                       "the interrupted epoch's row covers the whole epoch")
        XCTAssertEqual(try String(contentsOf: stopped.appending(path: TrainingRun.stepsFile), encoding: .utf8),
                       try String(contentsOf: whole.appending(path: TrainingRun.stepsFile), encoding: .utf8))
    }

    /// An uninterrupted 3-epoch run, and one that ends as a process killed right after epoch `epoch`'s
    /// checkpoint would (the checkpoint is written before the callback that throws).
    private func wholeAndKilledRuns(killedAfter epoch: Int) throws -> (whole: URL, killed: URL, run: TrainingRun) {
        struct Killed: Error {}
        let whole = temporaryFolder(), killed = temporaryFolder()
        XCTAssertEqual(try makeRun(whole, configuration(epochs: 3)).run(), .completed)
        let run = try makeRun(killed, configuration(epochs: 3))
        run.epochEnded = { metrics, _ in if metrics.epoch == epoch { throw Killed() } }
        XCTAssertThrowsError(try run.run()) { XCTAssertTrue($0 is Killed) }
        return (whole, killed, run)
    }

    func testARunKilledAfterAnEpochResumesFromItsCheckpoint() throws {
        let (whole, killed, _) = try wholeAndKilledRuns(killedAfter: 2)
        let resumed = try makeRun(killed, configuration(epochs: 3), resuming: true)
        XCTAssertEqual(resumed.state.position, TrainingPosition(epoch: 2, batch: 0, step: 16))
        XCTAssertEqual(resumed.metrics.rows.count, 2)
        XCTAssertEqual(try resumed.run(), .completed)
        try assertSameWeights(whole, killed)
        XCTAssertEqual(try reproducibleMetrics(in: killed), try reproducibleMetrics(in: whole))
    }

    // MARK: (c) the schedule's and early stopping's state survive a resume

    func testThePlateauScheduleAndEarlyStoppingContinueAfterAResume() throws {
        let validation = mislabelled(syntheticData(count: 64, seed: 11))
        // Plateau patience 2: the rate drops after the fourth epoch; early stopping after the sixth.
        let setup = configuration(epochs: 12, schedule: "plateau", earlyStop: 5)
        let whole = temporaryFolder(), stopped = temporaryFolder()
        XCTAssertEqual(try makeRun(whole, setup, validation: validation).run(), .earlyStopped(epoch: 6))
        let wholeMetrics = try reproducibleMetrics(in: whole)
        XCTAssertEqual(wholeMetrics.map { Float($0.learningRate) }, [0.1, 0.1, 0.1, 0.1, 0.01, 0.01],
                       "the validation loss stops improving after the first epoch")

        // Stop one step into epoch 6, after the rate has been lowered and four epochs have not improved.
        let first = try makeRun(stopped, setup, validation: validation)
        first.epochEnded = { [unowned first] metrics, _ in if metrics.epoch == 5 { first.requestStop() } }
        XCTAssertEqual(try first.run(), .interrupted(TrainingPosition(epoch: 5, batch: 1, step: 41)))
        let state = try XCTUnwrap(try savedState(in: stopped))
        XCTAssertEqual(state.scheduler.plateauScale, 0.1, accuracy: 1e-7)
        XCTAssertEqual(state.scheduler.epochsWithoutImprovement, 1, "one bad epoch since the rate was lowered")
        XCTAssertEqual(state.epochsWithoutImprovement, 4, "epochs 2 to 5 did not improve")
        XCTAssertEqual(try XCTUnwrap(state.bestScore), try XCTUnwrap(wholeMetrics[0].validationLoss), accuracy: 1e-5,
                       "the best score is the first epoch's")
        XCTAssertEqual(try XCTUnwrap(state.learningRate), 0.01, accuracy: 1e-9)

        let resumed = try makeRun(stopped, setup, validation: validation, resuming: true)
        XCTAssertEqual(resumed.scheduler.state, state.scheduler)
        XCTAssertEqual(try resumed.run(), .earlyStopped(epoch: 6), "early stopping counts the epochs before the stop")
        XCTAssertEqual(try reproducibleMetrics(in: stopped), wholeMetrics, "the resumed epoch trains at the lowered rate")
        try assertSameWeights(whole, stopped)
    }

    // MARK: (d) metrics.csv

    func testMetricsCSVRoundTripsThroughItsReader() throws {
        let url = temporaryFolder().appending(path: TrainingRun.metricsFile)
        let rows = [
            EpochMetrics(epoch: 1, step: 10, trainLoss: 1.25, trainAccuracy: 0.5, validationLoss: 0.75, validationAccuracy: 0.625,
                         learningRate: 0.05, imagesPerSecond: 1234.5, seconds: 2.5),
            EpochMetrics(epoch: 2, step: 20, trainLoss: 0.03125, trainAccuracy: .nan, validationLoss: nil, validationAccuracy: nil,
                         learningRate: 1e-7, imagesPerSecond: .infinity, seconds: 5),
        ]
        var log = MetricsLog(url: url)
        for row in rows { try log.append(row) }
        let text = try String(contentsOf: url, encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("epoch,step,train_loss,train_acc,val_loss,val_acc,lr,images_per_s,seconds\n"), text)

        let read = try MetricsLog.read(from: url)
        XCTAssertEqual(read.rows.count, 2)
        XCTAssertEqual(read.rows[0], rows[0])
        XCTAssertTrue(read.rows[1].trainAccuracy.isNaN)
        XCTAssertNil(read.rows[1].validationLoss)
        XCTAssertNil(read.rows[1].validationAccuracy)
        XCTAssertEqual(read.rows[1].imagesPerSecond, .infinity)
        XCTAssertEqual(read.rows[1].learningRate, 1e-7)
        XCTAssertEqual(MetricsLog.text(of: read.rows), text, "reading and writing again gives the same file")

        XCTAssertEqual(try MetricsLog.read(from: url.deletingLastPathComponent().appending(path: "absent.csv")).rows, [],
                       "a run stopped in its first epoch has no metrics yet")
        try writeAtomically(Array((text + "3,30,x,,,,,,\n").utf8), to: url)
        XCTAssertThrowsError(try MetricsLog.read(from: url)) { error in
            XCTAssertTrue("\(error)".contains(url.path) && "\(error)".contains("line 4"), "\(error)")
        }
    }

    func testAResumeDropsTheStepsPastItsCheckpoint() throws {
        let log = StepLog(url: temporaryFolder().appending(path: TrainingRun.stepsFile))
        try log.create()
        try log.append(firstStep: 0, losses: [2, 1.5, 1.25], learningRates: [0.1, 0.1, 0.05])
        try log.append(firstStep: 3, losses: [1, 0.75], learningRates: [0.05, 0.025])
        // A run killed after its second pass but before that epoch's checkpoint (at step 3) takes steps 3 and 4 again.
        try log.keep(before: 3)
        XCTAssertEqual(try String(contentsOf: log.url, encoding: .utf8), "step,loss,lr\n0,2.0,0.1\n1,1.5,0.1\n2,1.25,0.05\n")
        try log.keep(before: 3)
        XCTAssertEqual(try String(contentsOf: log.url, encoding: .utf8), "step,loss,lr\n0,2.0,0.1\n1,1.5,0.1\n2,1.25,0.05\n")
        XCTAssertEqual(log.learningRates().map(\.rate), [0.1, 0.1, 0.05])

        // A file from before the rate was logged gets the column, empty for its steps.
        try writeAtomically(Array("step,loss\n0,2.0\n1,1.5\n".utf8), to: log.url)
        try log.keep(before: 5)
        try log.append(firstStep: 2, losses: [1.25], learningRates: [0.05])
        XCTAssertEqual(try String(contentsOf: log.url, encoding: .utf8), "step,loss,lr\n0,2.0,\n1,1.5,\n2,1.25,0.05\n")
        XCTAssertEqual(log.learningRates().map(\.step), [2])
    }

    /// `labelSmoothing` reaches the run's loss: its trainer's loss is the smoothed cross-entropy of the output.
    func testARunTrainsWithTheLabelSmoothingItIsGiven() throws {
        var smoothed = configuration(epochs: 1)
        smoothed.labelSmoothing = 0.2
        let run = try makeRun(temporaryFolder(), smoothed)
        let batch = try DataLoader(dataset: syntheticData(count: 64, seed: 11), batchSize: 8, shuffle: false, device: .host)
            .batch(of: Array(0..<8), epoch: 0)
        let output = try run.model.forward(batch.inputs, .inference)
        let loss = try run.trainer.lossFunction(output, batch).loss.item()
        XCTAssertEqual(loss, try crossEntropy(logits: output, targets: batch.targets, labelSmoothing: 0.2).loss.item(), accuracy: 1e-6)
        XCTAssertNotEqual(loss, try crossEntropy(logits: output, targets: batch.targets).loss.item(), accuracy: 1e-4)
    }

    // MARK: (e) the checkpoint commit

    /// resume.safetensors is the model with the optimiser's tensors under `optimizer.`; last.safetensors is
    /// its model part alone, byte for byte, loadable strictly (as PyTorch's load_state_dict would).
    func testTheResumeCheckpointHoldsModelAndOptimiserAndLastIsItsModelPart() throws {
        let folder = temporaryFolder()
        let run = try makeRun(folder, configuration(epochs: 1))
        XCTAssertEqual(try run.run(), .completed)
        let resume = try SafeTensors.read(from: run.resumeCheckpoint)
        let model = try network(seed: 1)
        XCTAssertEqual(Set(resume.names.filter { !$0.hasPrefix("optimizer.") }), Set(model.namedParameters.map(\.name)))
        // nesterov: one momentum buffer per parameter.
        XCTAssertEqual(Set(resume.names.filter { $0.hasPrefix("optimizer.") }),
                       Set(model.namedParameters.map { "optimizer.\($0.name).momentum_buffer" }))
        XCTAssertEqual(try SafeTensors.read(from: run.lastCheckpoint).serialized(), try TrainingCheckpoint.modelPart(of: resume).serialized())
        XCTAssertNoThrow(try model.loadStateDict(SafeTensors.read(from: run.lastCheckpoint), source: "last", strict: true))
        XCTAssertThrowsError(try model.loadStateDict(resume, source: "resume", strict: true), "the optimiser's tensors are extra")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appending(path: TrainingRun.legacyOptimizerFile).path))
    }

    /// A kill after resume.safetensors is committed but before best.safetensors and last.safetensors are
    /// renamed: the resume writes both from the committed checkpoint, so the best model is not lost.
    func testAResumeRestoresTheModelFilesAKillLeftBehind() throws {
        struct Killed: Error {}
        // The validation loss is best after epoch 1 and never again: best.safetensors stays epoch 1's.
        let validation = mislabelled(syntheticData(count: 64, seed: 11))
        let whole = temporaryFolder(), killed = temporaryFolder()
        XCTAssertEqual(try makeRun(whole, configuration(epochs: 3), validation: validation).run(), .completed)
        let first = try makeRun(killed, configuration(epochs: 3), validation: validation)
        first.epochEnded = { metrics, _ in if metrics.epoch == 1 { throw Killed() } }
        XCTAssertThrowsError(try first.run())
        // As a kill right after the commit of epoch 1 leaves the folder: no best yet, no last.
        try FileManager.default.removeItem(at: killed.appending(path: TrainingRun.bestCheckpointFile))
        try FileManager.default.removeItem(at: killed.appending(path: TrainingRun.lastCheckpointFile))

        let resumed = try makeRun(killed, configuration(epochs: 3), validation: validation, resuming: true)
        XCTAssertEqual(resumed.state.position, TrainingPosition(epoch: 1, batch: 0, step: 8))
        let committed = TrainingCheckpoint.modelPart(of: try SafeTensors.read(from: resumed.resumeCheckpoint))
        for file in [TrainingRun.bestCheckpointFile, TrainingRun.lastCheckpointFile] {
            XCTAssertEqual(try SafeTensors.read(from: killed.appending(path: file)).serialized(), try committed.serialized(), file)
        }
        XCTAssertEqual(try resumed.run(), .completed)
        try assertSameWeights(whole, killed)
        let best = try SafeTensors.read(from: killed.appending(path: TrainingRun.bestCheckpointFile))
        let wholeBest = try SafeTensors.read(from: whole.appending(path: TrainingRun.bestCheckpointFile))
        XCTAssertEqual(best.metadata["kiln.step"], "8", "epoch 1's model, as in the whole run")
        XCTAssertEqual(wholeBest.metadata["kiln.step"], "8")
        for name in wholeBest.names { XCTAssertEqual(best[name]?.data, wholeBest[name]?.data, name) }
    }

    /// A run of the earlier two-file layout (last.safetensors beside last.optimizer.safetensors) resumes
    /// exactly, and its next commit removes the old optimiser file.
    func testARunOfTheTwoFileLayoutResumes() throws {
        let (whole, old, first) = try wholeAndKilledRuns(killedAfter: 1)
        try FileManager.default.removeItem(at: first.resumeCheckpoint)
        let json = String(decoding: try JSONEncoder().encode(configuration(epochs: 3)), as: UTF8.self)
        try TrainingCheckpoint.save(model: first.model, optimizer: first.optimizer, state: first.state, configuration: json,
                                    to: first.lastCheckpoint)
        let legacy = old.appending(path: TrainingRun.legacyOptimizerFile)
        XCTAssertTrue(FileManager.default.fileExists(atPath: legacy.path))

        let resumed = try makeRun(old, configuration(epochs: 3), resuming: true)
        XCTAssertEqual(resumed.state.position, TrainingPosition(epoch: 1, batch: 0, step: 8))
        XCTAssertEqual(try resumed.run(), .completed)
        try assertSameWeights(whole, old)
        XCTAssertFalse(FileManager.default.fileExists(atPath: legacy.path), "the stale optimiser file is removed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: resumed.resumeCheckpoint.path))
    }

    /// A run of the two-file layout torn by a kill between its renames cannot resume exactly; the error says why.
    func testATornTwoFileCheckpointIsExplained() throws {
        let folder = temporaryFolder()
        let first = try makeRun(folder, configuration(epochs: 1))
        XCTAssertEqual(try first.run(), .completed)
        try FileManager.default.removeItem(at: first.resumeCheckpoint)
        var optimizerState = try first.optimizer.state()
        optimizerState.metadata["kiln.step"] = "16"   // the next epoch's, renamed before its model was
        try optimizerState.write(to: folder.appending(path: TrainingRun.legacyOptimizerFile))
        XCTAssertThrowsError(try makeRun(folder, configuration(epochs: 2), resuming: true)) { error in
            XCTAssertEqual("\(error)", "\(folder.appending(path: TrainingRun.legacyOptimizerFile).path): holds the optimiser state of step 16, "
                           + "but last.safetensors is at step 8: the two files were written by an older Kiln and it was stopped between "
                           + "them, so the optimiser state of step 8 is lost")
        }
    }

    /// A run resumed from a folder with config.json but no checkpoint (killed in its first epoch) starts again.
    func testAResumeWithoutACheckpointStartsFromTheBeginning() throws {
        let whole = temporaryFolder(), early = temporaryFolder()
        XCTAssertEqual(try makeRun(whole, configuration(epochs: 2)).run(), .completed)
        _ = try makeRun(early, configuration(epochs: 2))   // writes config.json and steps.csv only
        XCTAssertEqual(TrainingRun.existingRunFiles(in: early), [TrainingRun.configurationFile, TrainingRun.stepsFile])
        let resumed = try makeRun(early, configuration(epochs: 2), resuming: true)
        XCTAssertTrue(resumed.startedAfresh)
        XCTAssertEqual(resumed.state, FitState(seed: 5))
        // A resumed run starts from a differently initialised network: the model must be reset to match.
        try resumed.model.reset(seed: 5)
        XCTAssertEqual(try resumed.run(), .completed)
        try assertSameWeights(whole, early)
    }

    // MARK: (f) no silent loss

    func testANewRunRefusesAFolderThatHoldsARunUnlessOverwriting() throws {
        let folder = temporaryFolder()
        XCTAssertEqual(try makeRun(folder, configuration(epochs: 1)).run(), .completed)
        let best = try Data(contentsOf: folder.appending(path: TrainingRun.bestCheckpointFile))
        XCTAssertThrowsError(try makeRun(folder, configuration(epochs: 2))) { error in
            XCTAssertEqual(error as? TrainingRunError, .runExists(folder: folder.path, files: [
                "config.json", "metrics.csv", "steps.csv", "curves.svg", "resume.safetensors", "last.safetensors", "best.safetensors"]))
        }
        XCTAssertEqual(try Data(contentsOf: folder.appending(path: TrainingRun.bestCheckpointFile)), best, "untouched")
        XCTAssertEqual(try TrainingRun.savedConfiguration(in: folder).epochs, 1)

        let train = syntheticData(count: 64, seed: 11)
        let replaced = try TrainingRun(folder: folder, configuration: configuration(epochs: 2), model: try network(seed: 5), train: train,
                                       validation: nil, device: .host, overwrite: true)
        XCTAssertEqual(TrainingRun.existingRunFiles(in: folder), ["config.json", "steps.csv"], "the old run's files are gone")
        XCTAssertEqual(try TrainingRun.savedConfiguration(in: folder).epochs, 2)
        replaced.showProgress = false
        XCTAssertEqual(try replaced.run(), .completed)
    }

    func testANonFiniteValidationLossStopsBeforeAnyCheckpointIsWritten() throws {
        let folder = temporaryFolder()
        let good = syntheticData(count: 32, seed: 12)
        let poisoned = Dataset(imageShape: good.imageShape, pixels: good.pixels.enumerated().map { $0.offset == 5 ? .nan : $0.element },
                               labels: good.labels, classNames: good.classNames)
        let run = try makeRun(folder, configuration(epochs: 2), validation: poisoned)
        XCTAssertThrowsError(try run.run()) { error in
            guard case let .nonFiniteValidationLoss(epoch, value) = error as? TrainingError else { return XCTFail("\(error)") }
            XCTAssertEqual(epoch, 1)
            XCTAssertTrue(value.isNaN)
            XCTAssertEqual("\(error)", "training stopped: the validation loss is NaN after epoch 1")
        }
        XCTAssertFalse(run.hasCheckpoint)
        XCTAssertEqual(TrainingRun.existingRunFiles(in: folder).filter { $0.hasSuffix("safetensors") }, [])
        XCTAssertEqual(try MetricsLog.read(from: folder.appending(path: TrainingRun.metricsFile)).rows, [], "no row with a NaN")
    }

    func testANonFiniteTrainingLossLeavesThePreviousEpochsCheckpoint() throws {
        let folder = temporaryFolder()
        let run = try makeRun(folder, configuration(epochs: 3))
        var afterEpoch1: [UInt8] = []
        run.epochEnded = { metrics, _ in
            guard metrics.epoch == 1 else { return }
            afterEpoch1 = try SafeTensors.read(from: run.resumeCheckpoint).serialized()
            // Poison a weight: the next step's loss is NaN.
            let weight = try XCTUnwrap(run.model.namedParameters.first { $0.name == "fc2.bias" }).parameter.value
            try weight.assign(Tensor([Float](repeating: .nan, count: 4), shape: [4]))
        }
        XCTAssertThrowsError(try run.run()) { error in
            guard case let .nonFiniteLoss(step, value) = error as? TrainingError else { return XCTFail("\(error)") }
            XCTAssertEqual(step, 8, "the first step of epoch 2")
            XCTAssertTrue(value.isNaN)
        }
        XCTAssertEqual(run.state.position, TrainingPosition(epoch: 1, batch: 0, step: 8), "the state of the checkpoint left")
        XCTAssertEqual(try SafeTensors.read(from: run.resumeCheckpoint).serialized(), afterEpoch1, "epoch 1's checkpoint, untouched")
        let last = try SafeTensors.read(from: run.lastCheckpoint)
        XCTAssertTrue(last.names.allSatisfy { last.floats($0)?.allSatisfy(\.isFinite) ?? false }, "no NaN in last.safetensors")
    }

    // MARK: (g) resuming with a changed configuration, and bad values

    func testAResumeWithMoreEpochsExtendsTheRunAndRecordsThem() throws {
        let folder = temporaryFolder()
        XCTAssertEqual(try makeRun(folder, configuration(epochs: 2, schedule: "constant")).run(), .completed)
        let extended = try makeRun(folder, configuration(epochs: 3, schedule: "constant"), resuming: true)
        XCTAssertEqual(try extended.run(), .completed)
        XCTAssertEqual(try reproducibleMetrics(in: folder).map(\.epoch), [1, 2, 3])
        XCTAssertEqual(try savedState(in: folder)?.position, TrainingPosition(epoch: 3, batch: 0, step: 24))
        XCTAssertEqual(try TrainingRun.savedConfiguration(in: folder).epochs, 3, "config.json records the new end")
        XCTAssertThrowsError(try makeRun(folder, configuration(epochs: 2, schedule: "constant"), resuming: true)) { error in
            XCTAssertEqual("\(error)", "the run in \(folder.path) has trained 3 epochs; it cannot be shortened to 2")
        }
    }

    func testBadValuesAreRefusedBeforeTheRunStarts() throws {
        let cases: [(change: (inout TrainingConfiguration) -> Void, message: String)] = [
            ({ $0.lr = 0 }, "--lr must be a positive finite number, not 0.0"),
            ({ $0.lr = .infinity }, "--lr must be a positive finite number, not inf"),
            ({ $0.epochs = -1 }, "--epochs must be at least 1, not -1"),
            ({ $0.batchSize = 0 }, "--batch-size must be at least 1, not 0"),
            ({ $0.batchSize = 65 }, "--batch-size 65 is larger than the training set (64 images after holding out 32 validation images)"),
            ({ $0.valSplit = 2 }, "--val-split must be at least 0 and below 1 (a fraction of the training set), not 2.0"),
            ({ $0.momentum = 1 }, "--momentum must be at least 0 and below 1, not 1.0"),
            ({ $0.weightDecay = -1 }, "--weight-decay must be a finite number of at least 0, not -1.0"),
            ({ $0.earlyStop = 0 }, "--early-stop must be at least 1, not 0"),
        ]
        for (change, message) in cases {
            let folder = temporaryFolder()
            var bad = configuration(epochs: 1)
            change(&bad)
            XCTAssertThrowsError(try makeRun(folder, bad)) { XCTAssertEqual("\($0)", message) }
            XCTAssertFalse(FileManager.default.fileExists(atPath: folder.path), "\(message): nothing written")
        }
        let empty = Dataset(imageShape: [1, 4, 4], pixels: [], labels: [], classNames: ["a", "b", "c", "d"])
        XCTAssertThrowsError(try TrainingRun(folder: temporaryFolder(), configuration: configuration(epochs: 1), model: network(seed: 1),
                                             train: empty, validation: nil, device: .host)) {
            XCTAssertEqual("\($0)", "the training set of synthetic is empty")
        }
    }

    // MARK: Errors

    func testResumingWithoutARunNamesTheMissingFile() throws {
        let folder = temporaryFolder()
        XCTAssertThrowsError(try TrainingRun.savedConfiguration(in: folder)) { error in
            XCTAssertEqual(error as? TrainingRunError, .notARun(folder: folder.path, reason: "there is no such folder"))
        }
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        XCTAssertThrowsError(try TrainingRun.savedConfiguration(in: folder)) { error in
            XCTAssertEqual("\(error)", "\(folder.path) is not a Kiln run folder: it has no config.json")
        }
        try writeAtomically(Array("{\"model\": 3}".utf8), to: folder.appending(path: "config.json"))
        XCTAssertThrowsError(try TrainingRun.savedConfiguration(in: folder)) { error in
            XCTAssertTrue("\(error)".contains("config.json") && "\(error)".contains("not a training configuration"), "\(error)")
        }
        XCTAssertThrowsError(try TrainingConfiguration.read(from: folder.appending(path: "config.json"))) { error in
            XCTAssertTrue("\(error)".hasSuffix("(\"model\" is not a String)"), "a sentence, not Swift's dump: \(error)")
        }
        // A damaged resume checkpoint is named, not skipped.
        try writeAtomically(Array("not safetensors".utf8), to: folder.appending(path: TrainingRun.resumeCheckpointFile))
        XCTAssertThrowsError(try makeRun(folder, configuration(epochs: 1), resuming: true)) { error in
            XCTAssertTrue("\(error)".contains(folder.appending(path: TrainingRun.resumeCheckpointFile).path), "\(error)")
        }
    }
}
