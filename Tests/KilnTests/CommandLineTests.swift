import Foundation
import XCTest
@testable import Kiln

/// The `kiln` commands as a user runs them: exit codes, what they print, and that what they print is right.
final class CommandLineTests: XCTestCase {
    private static let runs = FileManager.default.temporaryDirectory.appending(path: "kiln-cli-\(UUID().uuidString)")

    func testSIGTERMStopsAfterTheStepWritesACheckpointAndExits143() throws {
        let data = try KilnCommand.smallDataSet()
        let folder = Self.runs.appending(path: "terminated")
        let run = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--epochs", "3", "--batch-size", "32",
                                       "--out", folder.path], signal: SIGTERM, after: "epoch 1:")
        XCTAssertEqual(run.status, 143, run.output)
        XCTAssertTrue(run.output.contains("resume with: kiln train --resume \(folder.path)"), run.output)
        let state = try TrainingCheckpoint.state(in: SafeTensors.read(from: folder.appending(path: "last.safetensors")), source: "last")
        // 576 training images (64 are held out for validation) in batches of 32: 18 steps an epoch.
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(state).position.step, 18, "the checkpoint holds the stop's position, after epoch 1")
    }

    /// A second Ctrl-C, while the first waits for its step to finish, quits at once without a checkpoint.
    func testASecondCtrlCQuitsAtOnce() throws {
        let data = try KilnCommand.smallDataSet()
        let folder = Self.runs.appending(path: "quit")
        // Steps of the whole training set (576 images once 64 are held out), so that the first stop has a long
        // step to wait for.
        let run = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--epochs", "3",
                                       "--batch-size", "576", "--out", folder.path],
                                      signals: [(SIGINT, "device host"), (SIGINT, "stopping after this step")])
        XCTAssertEqual(run.status, 130, run.output)
        XCTAssertFalse(run.output.contains("resume with"), "no graceful stop:\n\(run.output)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder.appending(path: TrainingRun.resumeCheckpointFile).path))
    }

    /// A loss that becomes NaN or infinite stops training with exit 3 and the step, and says truthfully
    /// whether a checkpoint from before it exists.
    func testADivergingRunStopsWithExit3AndNamesTheStep() throws {
        let data = try KilnCommand.smallDataSet()
        let run = try KilnCommand.run(["train", "--data", data.path, "--device", "host", "--epochs", "2", "--batch-size", "32",
                                       "--optimizer", "sgd", "--lr", "1e30", "--schedule", "constant",
                                       "--out", Self.runs.appending(path: "diverged").path])
        XCTAssertEqual(run.status, 3, run.output)
        XCTAssertNotNil(run.output.range(of: #"error: training stopped: the training loss is (NaN|inf|-inf) at step \d+ \(epoch 1, batch \d+\)"#,
                                         options: .regularExpression), run.output)
        XCTAssertTrue(run.output.contains("no checkpoint was written with it, and there is none: no epoch had finished"), run.output)
        let folder = Self.runs.appending(path: "diverged")
        XCTAssertEqual(TrainingRun.existingRunFiles(in: folder).filter { $0.hasSuffix(".safetensors") }, [], "no checkpoint on disk")
    }

    /// `kiln eval`: the confusion matrix has one row per true class (its row sums are the class counts of the
    /// test images), and each class's accuracy is its diagonal entry over its row.
    func testEvalReportsPerClassAccuracyAndAConfusionMatrixByTrueClass() throws {
        let (data, folder) = try KilnCommand.trainedRun.get()
        let run = try KilnCommand.run(["eval", "--checkpoint", folder.appending(path: "best.safetensors").path, "--device", "host"])
        XCTAssertEqual(run.status, 0, run.output)
        let lines = run.output.split(separator: "\n").map(String.init)
        let header = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("confusion matrix (rows: true class") }, run.output)
        let rows = lines[(header + 2)...].prefix(10).map { line in line.split(separator: " ").dropFirst().compactMap { Int($0) } }
        XCTAssertEqual(rows.map(\.count), Array(repeating: 10, count: 10), run.output)
        let labels = try Dataset.load(data.path, split: .test).labels
        XCTAssertEqual(rows.map { $0.reduce(0, +) }, (0..<10).map { c in labels.filter { $0 == c }.count }, "row sums are true-class counts")
        let accuracies = lines.filter { $0.hasSuffix("%") && $0.hasPrefix("  ") }.compactMap { line in
            line.split(separator: " ").last.flatMap { Double($0.dropLast()) }
        }
        XCTAssertEqual(accuracies.count, 10, run.output)
        for (c, row) in rows.enumerated() where row.reduce(0, +) > 0 {
            XCTAssertEqual(accuracies[c], 100 * Double(row[c]) / Double(row.reduce(0, +)), accuracy: 0.006, "class \(c)")
        }
        let correct = (0..<10).map { rows[$0][$0] }.reduce(0, +)
        XCTAssertTrue(run.output.contains(String(format: "accuracy %.2f%%", 100 * Double(correct) / Double(labels.count))), run.output)
    }

    /// `kiln predict`: the classes of a test image in descending probability, summing to 100 % over all
    /// classes, with the probability the model itself gives.
    func testPredictListsTheTopClassesWithTheModelsProbabilities() throws {
        let (data, folder) = try KilnCommand.trainedRun.get()
        let checkpoint = folder.appending(path: "best.safetensors")
        let run = try KilnCommand.run(["predict", "--checkpoint", checkpoint.path, "--device", "host", "--index", "3", "--top", "10"])
        XCTAssertEqual(run.status, 0, run.output)
        let test = try Dataset.load(data.path, split: .test)
        XCTAssertTrue(run.output.contains("test image 3 (true class: \(test.classNames[test.labels[3]]))"), run.output)
        let percentages = run.output.split(separator: "\n").compactMap { line -> Double? in
            line.split(separator: "%").first.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        }
        XCTAssertEqual(percentages.count, 10, run.output)
        XCTAssertEqual(percentages, percentages.sorted(by: >), "descending")
        XCTAssertEqual(percentages.reduce(0, +), 100, accuracy: 0.06)
        let model = try LeNetBN2()
        try model.loadStateDict(SafeTensors.read(from: checkpoint), source: checkpoint.path)
        let probabilities = try model.forward(Tensor(Array(test.subset([3]).pixels), shape: [1, 1, 28, 28]), .inference).softmax().toArray()
        XCTAssertEqual(percentages[0], 100 * Double(probabilities.max() ?? 0), accuracy: 0.006)
    }

    /// `kiln augment`: row pairs of stored and augmented images in a PNG, and a bad spec refused by name.
    func testAugmentWritesRowsOfOriginalsAndTheirAugmentedVersions() throws {
        let data = try KilnCommand.smallDataSet()
        let out = FileManager.default.temporaryDirectory.appending(path: "kiln-augment-\(UUID().uuidString).png")
        let run = try KilnCommand.run(["augment", "--data", data.path, "--augment", "crop:4,flip,cutout:8", "--count", "6",
                                       "--columns", "4", "--seed", "2", "--out", out.path])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("wrote \(out.path): 6 images"), run.output)
        // Two row pairs of 4 cells of 28×28 with a 2-pixel border: 4·30 + 2 wide, 4·30 + 2 high.
        let grid = try ImageFile.read(out)
        XCTAssertEqual([grid.channels, grid.width, grid.height], [1, 122, 122])
        // The first row holds the first images of seed 2's epoch-0 order as they are stored (8-bit in the PNG).
        let train = try Dataset.load(data.path, split: .train)
        let first = DataLoader(dataset: train, batchSize: 6, shuffle: true, seed: 2, device: .host).order(epoch: 0)[0]
        let cell = (0..<28).flatMap { y in (0..<28).map { x in grid.pixels[(2 + y) * grid.width + 2 + x] } }
        let stored = Array(train.pixels[(first * 784)..<((first + 1) * 784)])
        XCTAssertEqual(cell.map { Int(($0 * 255).rounded()) }, stored.map { Int(($0 * 255).rounded()) })
        // The row below it is augmented: a cutout of 8×8 makes it differ.
        let below = (0..<28).flatMap { y in (0..<28).map { x in grid.pixels[(32 + y) * grid.width + 2 + x] } }
        XCTAssertNotEqual(below, cell)
        let bad = try KilnCommand.run(["augment", "--data", data.path, "--augment", "spin:3", "--out", out.path])
        XCTAssertEqual(bad.status, 64, bad.output)
        XCTAssertTrue(bad.output.contains("unknown step 'spin'"), bad.output)
    }

    /// `kiln bench --json`: a record per row with the documented fields, validated results and positive speeds.
    func testBenchJSONRecordsHaveTheirFields() throws {
        let run = try KilnCommand.run(["bench", "--device", "host", "--models", "lenet-bn", "--batches", "8", "--no-ops",
                                       "--repeats", "1", "--json"])
        XCTAssertEqual(run.status, 0, run.output)
        let json = try XCTUnwrap(run.output.firstIndex(of: "[").map { String(run.output[$0...]) }, run.output)
        let records = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        let models = records.filter { $0["model"] as? String == "lenet-bn" }
        XCTAssertEqual(Set(models.compactMap { $0["mode"] as? String }), ["train", "infer"])
        for record in models {
            XCTAssertEqual(record["backend"] as? String, "host")
            XCTAssertEqual(record["batch"] as? Int, 8)
            XCTAssertGreaterThan(try XCTUnwrap(record["images_per_second"] as? Double), 0)
            XCTAssertGreaterThan(try XCTUnwrap(record["seconds"] as? Double), 0)
            XCTAssertNotNil(record["fraction_of_peak"] as? Double)
            XCTAssertNotNil(record["device"] as? String)
        }
        let gemm = try XCTUnwrap(records.first { $0["op"] as? String == "gemm" }, "the peak row")
        XCTAssertGreaterThan(try XCTUnwrap(gemm["gflops"] as? Double), 0)
    }

    /// `KILN_PROFILE=1 kiln train` on OpenCL prints the per-kernel table of its steps after the first, and
    /// `kiln bench --profile` records launches per step and prints a table per model row.
    func testProfilesListTheKernelsOfAStep() throws {
        let device = "\(try openCLDevice())"
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-profile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let train = try KilnCommand.runKillable(["train", "--data", try KilnCommand.smallDataSet().path, "--device", device, "--epochs", "1",
                                                 "--batch-size", "64", "--out", folder.path], environment: ["KILN_PROFILE": "1"])
        XCTAssertEqual(train.status, 0, train.output)
        let table = try XCTUnwrap(train.output.components(separatedBy: "kernel profile of the training steps:").last)
        XCTAssertTrue(table.contains("launches per step"), train.output)
        XCTAssertTrue(table.contains("| direct_vector_forward |") || table.contains("| direct_forward |"),
                      "the few-channel convolutions run the direct kernels: \(table)")
        XCTAssertTrue(table.contains("| optimizer_update |"), table)

        let bench = try KilnCommand.run(["bench", "--device", device, "--models", "lenet-bn", "--batches", "8", "--no-ops",
                                         "--repeats", "1", "--profile"])
        XCTAssertEqual(bench.status, 0, bench.output)
        XCTAssertTrue(bench.output.contains("kernel profile of lenet-bn train batch 8"), bench.output)
        XCTAssertTrue(bench.output.contains("kernel profile of lenet-bn infer batch 8"), bench.output)
        XCTAssertTrue(bench.output.contains("| direct_vector_forward_max_pool |") || bench.output.contains("| direct_forward_max_pool |"),
                      "inference fuses convolution and pooling: \(bench.output)")
        XCTAssertTrue(bench.output.contains("| linear_forward |"), "linear layers run in one launch: \(bench.output)")
        let row = try XCTUnwrap(bench.output.split(separator: "\n").first { $0.hasPrefix("| lenet-bn |") && $0.contains("| train |") })
        let launches = try XCTUnwrap(row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }.dropLast().last)
        XCTAssertGreaterThan(try XCTUnwrap(Int(launches), "launches per step in \(row)"), 10)
    }

    /// The check every benchmark row passes before it is timed: a result off by more than the tolerance, one
    /// with a NaN or one of another shape is refused, naming the row; one within the tolerance passes.
    func testBenchmarkValidationRefusesWrongResults() throws {
        let suite = BenchmarkSuite(backend: try Device.host.backend())
        let reference = try Tensor([1, 2, 3, 4], shape: [4])
        XCTAssertNoThrow(try suite.validate(Tensor([1, 2, 3, 4.0004], shape: [4]), against: reference, tolerance: 1e-4, "row"))
        for wrong in [try Tensor([1, 2, 3, 4.01], shape: [4]), try Tensor([1, 2, .nan, 4], shape: [4]), try Tensor([1, 2, 3], shape: [3])] {
            XCTAssertThrowsError(try suite.validate(wrong, against: reference, tolerance: 1e-4, "row")) { error in
                XCTAssertTrue("\(error)".contains("benchmark row on host"), "\(error)")
            }
        }
    }

    /// `kiln lr-find --compare-bn` on the small data set: both tests run, the picture and the table are
    /// written, each with a suggestion; a model whose batch norms sit in residual blocks is refused by name.
    func testLRFindComparesTheModelWithAndWithoutBatchNorm() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-lr-find-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = try KilnCommand.smallDataSet().path
        let run = try KilnCommand.run(["lr-find", "--data", data, "--device", "host", "--model", "lenet-bn", "--steps", "12",
                                       "--start", "1e-3", "--end", "1", "--compare-bn", "--out", folder.path])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("with batch norm: ") && run.output.contains("without batch norm: "), run.output)
        let svg = try String(contentsOf: folder.appending(path: "lr-find.svg"), encoding: .utf8)
        XCTAssertTrue(svg.hasPrefix("<svg") && svg.contains("without batch norm"), svg)
        let rows = try String(contentsOf: folder.appending(path: "lr-find.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.first, "run,step,lr,loss,smoothed_loss")
        XCTAssertEqual(rows.dropFirst().filter { $0.hasPrefix("with batch norm,") }.count, 12, "twelve steps without divergence at these rates")

        let refused = try KilnCommand.run(["lr-find", "--data", data, "--device", "host", "--model", "resnet18", "--steps", "5", "--compare-bn",
                                           "--out", folder.path])
        XCTAssertEqual(refused.status, 64, refused.output)
        XCTAssertTrue(refused.output.contains("Error: --compare-bn: resnet18: layer1.0 holds batch norms inside a Residual, which cannot be taken out"),
                      refused.output)
    }

    /// A two-trial sweep ranks its trials by validation accuracy with the best command line, and resumes: a
    /// finished trial is read again, one without its test score resumes from its checkpoint, a missing one trains.
    func testASweepRanksItsTrialsAndResumesWhereItStopped() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-sweep-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = try KilnCommand.smallDataSet().path
        let arguments = ["sweep", "--grid", "lr=0.01,0.1 weight-decay=0", "--data", data, "--device", "host", "--epochs", "1",
                         "--batch-size", "32", "--out", folder.path]
        let first = try KilnCommand.run(arguments)
        XCTAssertEqual(first.status, 0, first.output)
        let rows = try String(contentsOf: folder.appending(path: "summary.csv"), encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(rows.first, "trial,setting,best_val_acc,val_loss,test_acc,epochs,folder,command")
        XCTAssertEqual(rows.count, 3, rows.joined(separator: "\n"))
        let accuracies = rows.dropFirst().map { Double($0.split(separator: ",")[2]) ?? -1 }
        XCTAssertEqual(accuracies, accuracies.sorted(by: >), "best first")
        for trial in 1...2 {
            let metrics = try MetricsLog.read(from: folder.appending(path: "trial-\(trial)/\(TrainingRun.metricsFile)")).rows
            XCTAssertEqual(metrics.count, 1, "trial \(trial) trained its epoch")
        }
        let markdown = try String(contentsOf: folder.appending(path: "summary.md"), encoding: .utf8)
        XCTAssertTrue(markdown.contains("best: `kiln train --data \(data) --device host --epochs 1 --batch-size 32 --lr "), markdown)

        try FileManager.default.removeItem(at: folder.appending(path: "trial-2"))
        try FileManager.default.removeItem(at: folder.appending(path: "trial-1/\(TrainingRun.testFile)"))
        let again = try KilnCommand.run(arguments)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertTrue(again.output.contains("trial 1/2: lr=0.01 weight-decay=0 (resuming)"), again.output)
        XCTAssertTrue(again.output.contains("trial 2/2: lr=0.1 weight-decay=0\n"), again.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appending(path: "trial-2/\(TrainingRun.testFile)").path))
        let third = try KilnCommand.run(arguments)
        XCTAssertTrue(third.output.contains("trial 1/2: lr=0.01 weight-decay=0 (done earlier)")
                      && third.output.contains("trial 2/2: lr=0.1 weight-decay=0 (done earlier)"), third.output)

        let unknown = try KilnCommand.run(["sweep", "--grid", "lr=0.01 momentumm=0.5", "--data", data, "--out", folder.path])
        XCTAssertEqual(unknown.status, 64, unknown.output)
        XCTAssertTrue(unknown.output.hasPrefix("Error: --grid names momentumm, which is not a kiln train option\n"), unknown.output)
        let badValue = try KilnCommand.run(["sweep", "--grid", "lr=0.01,-1", "--data", data, "--out", folder.path])
        XCTAssertEqual(badValue.status, 64, badValue.output)
        XCTAssertTrue(badValue.output.contains("--grid lr=-1: "), badValue.output)
    }

    /// Without --lr, a run takes its optimizer's usual rate; the effective settings are printed and recorded.
    func testARunStartsFromItsOptimizersDefaultsAndSaysThem() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-adam-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let run = try KilnCommand.run(["train", "--data", try KilnCommand.smallDataSet().path, "--device", "host", "--epochs", "1",
                                       "--optimizer", "adam", "--eps", "1e-7", "--out", folder.path])
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertTrue(run.output.contains("optimizer adam: lr 0.001, betas 0.9, 0.999, eps 1e-07, weight decay 0.0005\n"), run.output)
        let saved = try TrainingRun.savedConfiguration(in: folder)
        XCTAssertEqual(saved.lr, 1e-3)
        XCTAssertEqual(saved.betas, [0.9, 0.999])
        XCTAssertEqual(saved.eps, 1e-7)
        XCTAssertEqual(try saved.updateRule(), .adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-7))
    }

    /// `kiln predict` on an autoencoder writes input | reconstruction | difference for each image, rather than
    /// classifying: the middle third is the model's output, the last the absolute difference.
    func testPredictOnAnAutoencoderWritesItsReconstructions() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-autoencoder-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let data = try KilnCommand.smallDataSet().path
        let train = try KilnCommand.run(["train", "--model", "autoencoder", "--data", data, "--device", "host", "--epochs", "1",
                                         "--out", folder.appending(path: "run").path])
        XCTAssertEqual(train.status, 0, train.output)
        let predict = try KilnCommand.run(["predict", "--checkpoint", folder.appending(path: "run/best.safetensors").path, "--data", data,
                                           "--index", "0", "5", "--out", folder.appending(path: "out").path])
        XCTAssertEqual(predict.status, 0, predict.output)
        XCTAssertEqual(predict.output.components(separatedBy: "reconstruction MSE").count, 3, predict.output)
        for name in ["000-test-image-0.png", "001-test-image-5.png"] {
            let image = try ImageFile.read(folder.appending(path: "out/\(name)"))
            XCTAssertEqual(image.width, 3 * 28 + 4 * 2, "three 28-pixel tiles with 2-pixel borders: \(name)")
            XCTAssertEqual(image.height, 28 + 2 * 2, name)
        }
    }
}
