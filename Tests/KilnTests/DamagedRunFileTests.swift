import Foundation
import XCTest
@testable import Kiln

/// A run's own files, config.json and the fit state in a checkpoint's metadata, damaged at random (bytes
/// replaced, removed or inserted, digits and signs included, so numbers go negative or overflow): each one
/// reads as a value in range or fails with an error naming the file, and never traps.
final class DamagedRunFileTests: XCTestCase {
    private var random = TestRandom(seed: 41)
    private let alphabet = Array("-0123456789.e,:{}[]\"x ".utf8)

    private func damaged(_ bytes: [UInt8]) -> [UInt8] {
        var bytes = bytes
        for _ in 0..<random.int(1...4) where !bytes.isEmpty {
            let at = random.int(0...(bytes.count - 1))
            switch random.int(0...2) {
            case 0: bytes[at] = alphabet[random.int(0...(alphabet.count - 1))]
            case 1: bytes.remove(at: at)
            default: bytes.insert(alphabet[random.int(0...(alphabet.count - 1))], at: at)
            }
        }
        return bytes
    }

    func testDamagedConfigurationsNeverTrap() throws {
        let folder = FileManager.default.temporaryDirectory.appending(path: "kiln-damaged-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let url = folder.appending(path: "config.json")
        let valid = Array(try TrainingConfiguration().prettyJSON())
        var (read, refused) = (0, 0)
        for _ in 0..<2_000 {
            try Data(damaged(valid)).write(to: url)
            do {
                let configuration = try TrainingConfiguration.read(from: url)
                XCTAssertNoThrow(try configuration.validateValues(), "what reads is in range")
                read += 1
            } catch let KilnError.corruptFile(path, _) {
                XCTAssertEqual(path, url.path)
                refused += 1
            }
        }
        XCTAssertGreaterThan(refused, 100, "the damage reaches the checks")
        XCTAssertGreaterThan(read, 10, "some damage leaves a valid configuration")
        try Data(#"{"model":"lenet-bn","data":"fashion-mnist","device":"auto","epochs":-3,"batchSize":64,"optimizer":"sgd","lr":0.1,"momentum":0.9,"weightDecay":0,"schedule":"constant","seed":1,"valSplit":0}"#.utf8).write(to: url)
        XCTAssertThrowsError(try TrainingConfiguration.read(from: url)) { error in
            XCTAssertTrue("\(error)".contains(url.path) && "\(error)".contains("--epochs must be at least 1"), "\(error)")
        }
    }

    func testDamagedFitStatesNeverTrap() throws {
        let state = FitState(position: TrainingPosition(epoch: 2, batch: 3, step: 19), seed: 7, elapsedSeconds: 12.5, bestScore: 0.41,
                             epochsWithoutImprovement: 1, learningRate: 0.05,
                             partialEpoch: FitState.PartialEpoch(stepLosses: [0.5, 0.4], images: 64, misclassified: 9, seconds: 1.5))
        let valid = Array(try JSONEncoder().encode(state))
        var refused = 0
        for _ in 0..<2_000 {
            var file = SafeTensors()
            file.metadata[TrainingCheckpoint.stateKey] = String(decoding: damaged(valid), as: UTF8.self)
            do {
                let decoded = try TrainingCheckpoint.state(in: file, source: "damaged.safetensors")
                XCTAssertNil(try XCTUnwrap(decoded).outOfRange, "what reads is in range")
            } catch let KilnError.corruptFile(path, _) {
                XCTAssertEqual(path, "damaged.safetensors")
                refused += 1
            }
        }
        XCTAssertGreaterThan(refused, 100)
        var negative = state
        negative.position.batch = -1
        var file = SafeTensors()
        file.metadata[TrainingCheckpoint.stateKey] = String(decoding: try JSONEncoder().encode(negative), as: UTF8.self)
        XCTAssertThrowsError(try TrainingCheckpoint.state(in: file, source: "negative.safetensors")) { error in
            XCTAssertTrue("\(error)".contains("negative.safetensors") && "\(error)".contains("out of range"), "\(error)")
        }
    }
}
