import Foundation
import XCTest
@testable import Kiln

final class CheckpointTests: XCTestCase {
    private func temporaryFile(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appending(path: "kiln-checkpoint-\(UUID().uuidString)").appending(path: name)
    }

    func testAHandWrittenFileReads() throws {
        // The layout safetensors.torch.save_file writes: u64 header length, JSON, little-endian data.
        let json = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"n":{"dtype":"I64","shape":[],"data_offsets":[8,16]},"__metadata__":{"format":"pt"}}"#
        var bytes = withUnsafeBytes(of: UInt64(json.utf8.count).littleEndian, Array.init) + Array(json.utf8)
        bytes += withUnsafeBytes(of: Float(1.5).bitPattern.littleEndian, Array.init)
        bytes += withUnsafeBytes(of: Float(-2).bitPattern.littleEndian, Array.init)
        bytes += withUnsafeBytes(of: Int64(7).littleEndian, Array.init)
        let url = temporaryFile("hand.safetensors")
        try writeAtomically(bytes, to: url)
        let file = try SafeTensors.read(from: url)
        XCTAssertEqual(file.floats("a"), [1.5, -2])
        XCTAssertEqual(file["n"]?.dtype, .int64)
        XCTAssertEqual(file["n"]?.shape, [])
        XCTAssertEqual(file.floats("n"), [7])
        XCTAssertEqual(file.metadata["format"], "pt")
        XCTAssertEqual(file.names, ["a", "n"])
    }

    func testARoundTripKeepsEverything() throws {
        var file = SafeTensors()
        file.set("conv1.weight", floats: (0..<24).map { Float($0) * 0.5 }, shape: [2, 3, 2, 2])
        file.set("bn1.num_batches_tracked", integers: [12345], shape: [])
        file.metadata = ["epoch": "3"]
        let url = temporaryFile("round.safetensors")
        try file.write(to: url)
        let read = try SafeTensors.read(from: url)
        XCTAssertEqual(read.names, file.names)
        XCTAssertEqual(read.floats("conv1.weight"), file.floats("conv1.weight"))
        XCTAssertEqual(read["bn1.num_batches_tracked"]?.data, file["bn1.num_batches_tracked"]?.data)
        XCTAssertEqual(read.metadata, ["epoch": "3"])
        let headerLength = try Data(contentsOf: url).prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(headerLength % 8, 0, "header padded to 8 bytes")
        // Nothing but the file itself is left in the folder.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path), ["round.safetensors"])
    }

    func testTruncatedAndCorruptFilesNameTheFileAndTheProblem() throws {
        var file = SafeTensors()
        file.set("w", floats: [Float](repeating: 1, count: 100), shape: [10, 10])
        let bytes = try file.serialized()
        let cases: [(String, [UInt8], String)] = [
            ("truncated.safetensors", Array(bytes.prefix(bytes.count - 10)), "truncated"),
            ("short.safetensors", [1, 2, 3], "shorter than"),
            ("huge-header.safetensors", [255, 255, 0, 0, 0, 0, 0, 0] + Array(bytes.dropFirst(8)), "header claims"),
            ("garbage.safetensors", Array(bytes.prefix(8)) + [UInt8](repeating: 0x41, count: bytes.count - 8), "JSON"),
        ]
        for (name, content, reason) in cases {
            let url = temporaryFile(name)
            try writeAtomically(content, to: url)
            XCTAssertThrowsError(try SafeTensors.read(from: url)) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(name) && text.contains(reason), text)
            }
        }
        XCTAssertThrowsError(try SafeTensors.read(from: temporaryFile("missing.safetensors"))) { error in
            XCTAssertTrue("\(error)".contains("missing.safetensors"), "\(error)")
        }
    }

    func testAStateDictRestoresAModel() throws {
        func model() throws -> Sequential {
            try Sequential {
                try Conv2D(inputChannels: 1, outputChannels: 2, kernelSize: 3).named("conv1")
                Flatten()
                try Linear(inputFeatures: 2 * 3 * 3, outputFeatures: 4).named("fc")
            }
        }
        let a = try model(), b = try model()
        try a.reset(seed: 1)
        try b.reset(seed: 2)
        let url = temporaryFile("model.safetensors")
        try a.stateDict().write(to: url)
        try b.loadStateDict(SafeTensors.read(from: url), source: url.path)
        for ((name, x), (_, y)) in zip(a.namedParameters, b.namedParameters) {
            XCTAssertEqual(try x.value.toArray(), try y.value.toArray(), name)
        }
        let wrong = try Sequential {
            try Conv2D(inputChannels: 1, outputChannels: 3, kernelSize: 3).named("conv1")
        }
        XCTAssertThrowsError(try wrong.loadStateDict(SafeTensors.read(from: url), source: url.path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("model.safetensors") && text.contains("conv1.weight") && text.contains("[2, 1, 3, 3]")
                          && text.contains("[3, 1, 3, 3]") && text.contains("unexpected fc.weight"), text)
        }
    }
}
