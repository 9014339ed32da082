import Foundation
import XCTest
@testable import Kiln

/// The validation set held out of the training set by default: stratified, seeded, disjoint from what is
/// trained on, of the documented size; `--val-split 0` validating on the test set, named so; and the test
/// set scored once at the end.
final class ValidationSplitTests: XCTestCase {
    private static let runs = FileManager.default.temporaryDirectory.appending(path: "kiln-validation-\(UUID().uuidString)")

    /// 100 images of five classes in proportions 50 : 30 : 13 : 5 : 2, the labels interleaved so that no
    /// class sits in one block; each image's only pixel is its index, so a subset shows which images it took.
    private func unbalanced() -> Dataset {
        let counts = [50, 30, 13, 5, 2]
        var labels = counts.enumerated().flatMap { Array(repeating: $0.offset, count: $0.element) }
        // A fixed interleaving: index i goes to position (i · 37) mod 100 (37 is prime to 100).
        var interleaved = Array(repeating: 0, count: labels.count)
        for (i, label) in labels.enumerated() { interleaved[(i * 37) % labels.count] = label }
        labels = interleaved
        return Dataset(imageShape: [1, 1, 1], pixels: labels.indices.map(Float.init), labels: labels,
                       classNames: ["a", "b", "c", "d", "e"])
    }

    private func classCounts(_ labels: [Int], classes: Int) -> [Int] {
        (0..<classes).map { c in labels.filter { $0 == c }.count }
    }

    func testEachClassGivesItsLargestRemainderShare() throws {
        let data = unbalanced()
        // 17 of 100: exact shares 8.5, 5.1, 2.21, 0.85, 0.34; the floors give 15, the two units left go to the
        // largest remainders, 0.85 (class 3) and 0.5 (class 0).
        let (_, validation) = try data.validationSplit(count: 17, seed: 7)
        XCTAssertEqual(classCounts(validation.map { data.labels[$0] }, classes: 5), [9, 5, 2, 1, 0])
        XCTAssertEqual(Dataset.largestRemainderShares(of: 17, counts: [50, 30, 13, 5, 2]), [9, 5, 2, 1, 0])
        // A tie goes to the lower class; the whole set is every image of every class.
        XCTAssertEqual(Dataset.largestRemainderShares(of: 2, counts: [1, 1, 1]), [1, 1, 0])
        XCTAssertEqual(Dataset.largestRemainderShares(of: 100, counts: [50, 30, 13, 5, 2]), [50, 30, 13, 5, 2])
        XCTAssertEqual(Dataset.largestRemainderShares(of: 0, counts: [50, 30, 13, 5, 2]), [0, 0, 0, 0, 0])
    }

    func testTheSplitIsAFunctionOfTheSeed() throws {
        let data = unbalanced()
        let first = try data.validationSplit(count: 30, seed: 11)
        XCTAssertEqual(try data.validationSplit(count: 30, seed: 11).validation, first.validation, "the same seed, the same split")
        XCTAssertNotEqual(try data.validationSplit(count: 30, seed: 12).validation, first.validation, "another seed, another split")
        XCTAssertNotEqual(first.validation, Array(70..<100), "not the last images")
        XCTAssertEqual(try data.splitValidation(count: 30, seed: 11).validation.labels, first.validation.map { data.labels[$0] })
    }

    func testTrainingAndValidationPartitionTheTrainingSetInItsOrder() throws {
        let data = unbalanced()
        for count in [0, 1, 17, 99, 100] {
            let (train, validation) = try data.validationSplit(count: count, seed: 3)
            XCTAssertEqual(validation.count, count)
            XCTAssertTrue(Set(train).isDisjoint(with: validation), "no image in both (\(count))")
            XCTAssertEqual((train + validation).sorted(), Array(0..<100), "every image in one of them (\(count))")
            XCTAssertEqual(train, train.sorted(), "the training set keeps its order")
            let (trainSet, validationSet) = try data.splitValidation(count: count, seed: 3)
            XCTAssertEqual(trainSet.pixels, train.map(Float.init), "the images are the indexed ones, in order")
            XCTAssertEqual(validationSet.pixels, validation.map(Float.init))
        }
        XCTAssertThrowsError(try data.validationSplit(count: 101, seed: 3)) { error in
            XCTAssertEqual("\(error)", "\(KilnError.invalidArgument("cannot hold out 101 of 100 images for validation"))")
        }
    }

    func testTheDefaultHoldsOutTenPercentUpTo5000Images() throws {
        let automatic = TrainingConfiguration()
        XCTAssertNil(automatic.valSplit, "the default is the automatic split")
        XCTAssertEqual(automatic.scoredSet, .validation)
        XCTAssertEqual(automatic.validationCount(trainingImages: 60_000), 5_000)
        XCTAssertEqual(automatic.validationCount(trainingImages: 50_000), 5_000)
        XCTAssertEqual(automatic.validationCount(trainingImages: 49_994), 4_999)
        XCTAssertEqual(automatic.validationCount(trainingImages: 640), 64)
        XCTAssertEqual(automatic.validationCount(trainingImages: 45), 5, "4.5 rounds up")
        XCTAssertEqual(automatic.validationCount(trainingImages: 44), 4)
        XCTAssertEqual(automatic.validationCount(trainingImages: 4), 0)
        var fraction = automatic
        fraction.valSplit = 0.25
        XCTAssertEqual(fraction.validationCount(trainingImages: 60_000), 15_000, "a fraction is not capped")
        fraction.valSplit = 0
        XCTAssertEqual(fraction.validationCount(trainingImages: 60_000), 0)
        XCTAssertEqual(fraction.scoredSet, .test)
    }

    /// Fashion-MNIST's 60,000 training images, 6,000 a class: 500 of each class held out.
    func testFashionMNISTHoldsOut500ImagesOfEachClass() throws {
        guard FileManager.default.fileExists(atPath: Dataset.fashionMNISTDirectory.path) else {
            throw XCTSkip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        }
        let (train, validation, test) = try TrainingConfiguration().loadData()
        XCTAssertEqual(train.count, 55_000)
        XCTAssertEqual(validation.count, 5_000)
        XCTAssertEqual(test.count, 10_000)
        XCTAssertEqual(classCounts(validation.labels, classes: 10), Array(repeating: 500, count: 10))
        XCTAssertEqual(classCounts(train.labels, classes: 10), Array(repeating: 5_500, count: 10))
        var onTest = TrainingConfiguration()
        onTest.valSplit = 0
        XCTAssertEqual(try onTest.loadData().train.count, 60_000, "--val-split 0 trains on the whole training set")
    }

    /// config.json of runs from before the default split says `"valSplit": 0`: it still means the test set.
    /// A configuration without the key is the default split.
    func testAnOldConfigurationWithValSplit0ValidatesOnTheTestSet() throws {
        let old = #"{"model":"lenet-bn","data":"fashion-mnist","device":"auto","epochs":3,"batchSize":64,"optimizer":"sgd","lr":0.1,"momentum":0.9,"weightDecay":0,"schedule":"constant","seed":1,"valSplit":0}"#
        let parsed = try TrainingConfiguration.parse(Data(old.utf8), path: "config.json")
        XCTAssertEqual(parsed.valSplit, 0)
        XCTAssertTrue(parsed.validatesOnTestSet)
        let automatic = try TrainingConfiguration.parse(Data(old.replacingOccurrences(of: #","valSplit":0"#, with: "").utf8), path: "config.json")
        XCTAssertNil(automatic.valSplit)
        XCTAssertFalse(automatic.validatesOnTestSet)
        XCTAssertEqual(try TrainingConfiguration.parse(TrainingConfiguration().prettyJSON(), path: "new").valSplit, nil,
                       "the default survives config.json")
    }

    /// A run of the old kind (test-set validation, its metrics under val_loss) resumes validating on the test
    /// set, and its metrics.csv then names the columns test_loss and test_acc.
    func testAnOldRunValidatingOnTheTestSetResumesSo() throws {
        let data = try KilnCommand.smallDataSet()
        let folder = Self.runs.appending(path: "old")
        let first = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--epochs", "1", "--batch-size", "32",
                                         "--val-split", "0", "--out", folder.path])
        XCTAssertEqual(first.status, 0, first.output)
        // What the old Kiln wrote: the same config.json, and metrics.csv with val_ columns.
        let metricsURL = folder.appending(path: TrainingRun.metricsFile)
        let metrics = try String(contentsOf: metricsURL, encoding: .utf8)
        XCTAssertTrue(metrics.hasPrefix(MetricsLog.header(for: .test) + "\n"), metrics)
        try Data(metrics.replacingOccurrences(of: "test_loss,test_acc", with: "val_loss,val_acc").utf8).write(to: metricsURL)
        let config = try String(contentsOf: folder.appending(path: TrainingRun.configurationFile), encoding: .utf8)
        XCTAssertTrue(config.contains(#""valSplit" : 0"#), config)

        let resumed = try KilnCommand.run(["train", "--resume", folder.path, "--epochs", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("data \(data.path): 640 training, 200 test images of 1×28×28; --val-split 0"), resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming at epoch 2, batch 0, step 20"), "the whole training set, 20 batches:\n\(resumed.output)")
        XCTAssertTrue(resumed.output.contains("epoch 2: train loss"), resumed.output)
        XCTAssertTrue(resumed.output.contains("| test loss "), resumed.output)
        XCTAssertFalse(resumed.output.contains("| val loss "), resumed.output)
        let log = try MetricsLog.read(from: metricsURL)
        XCTAssertEqual(log.scoredSet, .test)
        XCTAssertEqual(log.rows.map(\.epoch), [1, 2])
        XCTAssertNotNil(log.rows[0].validationLoss, "the old row's test loss is kept")
        XCTAssertTrue(try String(contentsOf: metricsURL, encoding: .utf8).hasPrefix("epoch,step,train_loss,train_acc,test_loss,test_acc,"))
    }

    /// Each mode names its set on the console, in metrics.csv and in curves.svg.
    func testTheScoredSetIsCalledByItsName() throws {
        let data = try KilnCommand.smallDataSet()
        let held = Self.runs.appending(path: "held-out"), onTest = Self.runs.appending(path: "on-test")
        let common = ["train", "--data", data.path, "--device", "host", "--epochs", "1", "--batch-size", "32"]
        let heldOut = try KilnCommand.run(common + ["--out", held.path])
        XCTAssertEqual(heldOut.status, 0, heldOut.output)
        XCTAssertTrue(heldOut.output.contains("data \(data.path): 576 training, 64 validation (held out of the training set, stratified, seed 1), "
                                              + "200 test images of 1×28×28"), heldOut.output)
        XCTAssertTrue(heldOut.output.contains("| val loss "), heldOut.output)
        XCTAssertFalse(heldOut.output.contains("| test loss "), heldOut.output)
        XCTAssertTrue(try String(contentsOf: held.appending(path: TrainingRun.metricsFile), encoding: .utf8)
            .hasPrefix("epoch,step,train_loss,train_acc,val_loss,val_acc,lr,"))
        let heldSVG = try String(contentsOf: held.appending(path: TrainingRun.curvesFile), encoding: .utf8)
        XCTAssertTrue(heldSVG.contains(">validation</text>"))
        XCTAssertFalse(heldSVG.contains(">test</text>"))

        let test = try KilnCommand.run(common + ["--val-split", "0", "--out", onTest.path])
        XCTAssertEqual(test.status, 0, test.output)
        XCTAssertTrue(test.output.contains("| test loss "), test.output)
        XCTAssertFalse(test.output.contains("| val loss "), test.output)
        XCTAssertTrue(try String(contentsOf: onTest.appending(path: TrainingRun.metricsFile), encoding: .utf8)
            .hasPrefix("epoch,step,train_loss,train_acc,test_loss,test_acc,lr,"))
        let testSVG = try String(contentsOf: onTest.appending(path: TrainingRun.curvesFile), encoding: .utf8)
        XCTAssertTrue(testSVG.contains(">test</text>"))
        XCTAssertFalse(testSVG.contains(">validation</text>"))
    }

    /// After training, best.safetensors is scored on the test set once: the console line names it and its
    /// epoch, test.json records it, and `kiln eval` of that checkpoint agrees.
    func testTheEndScoresBestSafetensorsOnTheTestSet() throws {
        let data = try KilnCommand.smallDataSet()
        let folder = Self.runs.appending(path: "end")
        let run = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--epochs", "2", "--batch-size", "32",
                                       "--schedule", "constant", "--out", folder.path])
        XCTAssertEqual(run.status, 0, run.output)
        let rows = try MetricsLog.read(from: folder.appending(path: TrainingRun.metricsFile)).rows
        let losses = try rows.map { try XCTUnwrap($0.validationLoss) }
        let bestEpoch = losses[1] < losses[0] ? 2 : 1
        let result = try TestResult.read(from: folder.appending(path: TrainingRun.testFile))
        XCTAssertEqual(result.checkpoint, "best.safetensors")
        XCTAssertEqual(result.epoch, bestEpoch, "the epoch of the lowest validation loss")
        XCTAssertEqual(result.images, 200)
        let accuracy = try XCTUnwrap(result.accuracy)
        let line = String(format: "test: loss %.4f, accuracy %.2f%% (200 images, best.safetensors, epoch %d)", result.loss, 100 * accuracy, bestEpoch)
        XCTAssertTrue(run.output.contains(line), "'\(line)' in:\n\(run.output)")
        XCTAssertEqual(run.output.components(separatedBy: "test: loss").count, 2, "the test set is scored once")

        let eval = try KilnCommand.run(["eval", "--checkpoint", folder.appending(path: "best.safetensors").path, "--device", "host"])
        XCTAssertEqual(eval.status, 0, eval.output)
        XCTAssertTrue(eval.output.contains(String(format: "on 200 test images (host): loss %.4f, accuracy %.2f%%", result.loss, 100 * accuracy)),
                      eval.output)

        // Resuming to train on removes the earlier end's score until the new end writes its own.
        let resumedRun = try TrainingRun(folder: folder, configuration: TrainingRun.savedConfiguration(in: folder),
                                         train: Dataset.load(data.path, split: .train).subset(Array(0..<64)), validation: nil,
                                         device: .host, resuming: true)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appending(path: TrainingRun.testFile).path))
        XCTAssertEqual(resumedRun.state.position.epoch, 2)
    }

    /// A training set too small for the default split is refused with what to do; so is a resume that
    /// names another split.
    func testTooSmallASplitAndAChangedSplitOnResumeAreRefused() throws {
        let folder = Self.runs.appending(path: "tiny-data")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for (prefix, count) in [("train", 4), ("t10k", 3)] {
            let header = { (magic: UInt8, dimensions: [Int]) -> [UInt8] in
                [0, 0, 8, magic] + dimensions.flatMap { withUnsafeBytes(of: UInt32($0).bigEndian, Array.init) }
            }
            try Data(header(3, [count, 28, 28]) + Array(repeating: 0, count: count * 784)).write(to: folder.appending(path: "\(prefix)-images-idx3-ubyte"))
            try Data(header(1, [count]) + (0..<count).map { UInt8($0) }).write(to: folder.appending(path: "\(prefix)-labels-idx1-ubyte"))
        }
        let tiny = try KilnCommand.run(["train", "--data", folder.path, "--device", "host", "--batch-size", "1",
                                        "--out", Self.runs.appending(path: "tiny").path])
        XCTAssertEqual(tiny.status, 64, tiny.output)
        XCTAssertTrue(tiny.output.contains("Error: the training set of \(folder.path) (4 images) is too small to hold out validation images "
                                           + "(10 % of it rounds to 0); give --val-split 0 to validate on the test set"), tiny.output)
        let onTest = try KilnCommand.run(["train", "--data", folder.path, "--device", "host", "--batch-size", "1", "--epochs", "1",
                                          "--val-split", "0", "--out", Self.runs.appending(path: "tiny-on-test").path])
        XCTAssertEqual(onTest.status, 0, onTest.output)

        let (_, trained) = try KilnCommand.trainedRun.get()
        let changed = try KilnCommand.run(["train", "--resume", trained.path, "--val-split", "0"])
        XCTAssertEqual(changed.status, 64, changed.output)
        XCTAssertTrue(changed.output.contains("--val-split (given 0.0, the run has the default)"), changed.output)
    }
}
