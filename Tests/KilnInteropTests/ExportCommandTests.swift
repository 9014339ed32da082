import Foundation
import SwiftProtobuf
import XCTest
@testable import Kiln
@testable import KilnInterop

/// `kiln export` as a user runs it: the file it writes, and its errors.
final class ExportCommandTests: XCTestCase {
    func testExportWritesTheModelWithItsClassesAndNormalisation() throws {
        let checkpoint = try shortRunCheckpoint.get()
        let out = try temporaryFolder(self, "out").appending(path: "model.onnx")
        let export = try runKiln(["export", "--checkpoint", checkpoint.path, "--out", out.path, "--batch", "4", "--opset", "13"])
        XCTAssertEqual(export.status, 0, export.output)
        XCTAssertTrue(export.output.contains("wrote \(out.path): lenet-bn2, input [4, 1×28×28], opset 13"), export.output)
        let model = try Onnx_ModelProto(serializedBytes: Data(contentsOf: out))
        XCTAssertEqual(model.opsetImport.map(\.version), [13])
        XCTAssertEqual(model.graph.input[0].type.tensorType.shape.dim.map(\.dimValue), [4, 1, 28, 28])
        let metadata = Dictionary(uniqueKeysWithValues: model.metadataProps.map { ($0.key, $0.value) })
        XCTAssertEqual(metadata["kiln.model"], "lenet-bn2")
        let classes = try JSONDecoder().decode([String].self, from: Data(try XCTUnwrap(metadata["kiln.classes"]).utf8))
        XCTAssertEqual(classes, Dataset.fashionMNISTClasses)
        let configuration = try TrainingRun.savedConfiguration(in: checkpoint.deletingLastPathComponent())
        let mean = try JSONDecoder().decode([Float].self, from: Data(try XCTUnwrap(metadata["kiln.normalization_mean"]).utf8))
        XCTAssertEqual(mean, configuration.normalizationMean)
    }

    func testAnUnknownFormatIsAUsageError() throws {
        let run = try runKiln(["export", "--checkpoint", try shortRunCheckpoint.get().path, "--format", "tflite"])
        XCTAssertEqual(run.status, 64, run.output)
        XCTAssertTrue(run.output.contains("--format must be onnx, not 'tflite'"), run.output)
    }

    func testAnOpsetBelowWhatAnOpNeedsNamesItAndNothingIsWritten() throws {
        let out = try temporaryFolder(self, "old").appending(path: "model.onnx")
        let run = try runKiln(["export", "--checkpoint", try shortRunCheckpoint.get().path, "--opset", "10", "--out", out.path])
        XCTAssertEqual(run.status, 1, run.output)
        XCTAssertTrue(run.output.contains("error: ONNX opset 10 is too old for fc1: its Gemm needs opset 11 or later (--opset 11)"), run.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    func testACheckpointWithoutAConfigurationNeedsModel() throws {
        var file = try SafeTensors.read(from: try shortRunCheckpoint.get())
        file.metadata = [:]
        let bare = try temporaryFolder(self, "bare").appending(path: "state_dict.safetensors")
        try writeAtomically(try file.serialized(), to: bare)
        let run = try runKiln(["export", "--checkpoint", bare.path])
        XCTAssertEqual(run.status, 64, run.output)
        XCTAssertTrue(run.output.contains("carries no Kiln configuration: name its model with --model"), run.output)
        let named = try runKiln(["export", "--checkpoint", bare.path, "--model", "lenet-bn2"])
        XCTAssertEqual(named.status, 0, named.output)
        XCTAssertTrue(FileManager.default.fileExists(atPath: bare.deletingPathExtension().appendingPathExtension("onnx").path))
    }
}
