import Foundation
import XCTest
@testable import Kiln

final class DataTests: XCTestCase {
    private func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appending(path: "kiln-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Writes a small MNIST-format set: `count` 2x3 images whose pixels encode their index, labels index % 10.
    private func writeIDX(_ directory: URL, prefix: String, count: Int, gzip: Bool) throws {
        var images: [UInt8] = [0, 0, 8, 3] + [count, 2, 3].flatMap { withUnsafeBytes(of: UInt32($0).bigEndian, Array.init) }
        images += (0..<count).flatMap { i in (0..<6).map { UInt8((i * 6 + $0) % 256) } }
        let labels: [UInt8] = [0, 0, 8, 1] + withUnsafeBytes(of: UInt32(count).bigEndian, Array.init) + (0..<count).map { UInt8($0 % 10) }
        for (name, bytes) in [("\(prefix)-images-idx3-ubyte", images), ("\(prefix)-labels-idx1-ubyte", labels)] {
            let url = directory.appending(path: name)
            try Data(bytes).write(to: url)
            if gzip {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/bin/gzip")
                process.arguments = ["-f", url.path]
                try process.run()
                process.waitUntilExit()
                XCTAssertEqual(process.terminationStatus, 0)
            }
        }
    }

    func testIDXFilesReadRawAndGzipped() throws {
        for gzip in [false, true] {
            let directory = try folder()
            try writeIDX(directory, prefix: "train", count: 25, gzip: gzip)
            let data = try Dataset.load("mnist:\(directory.path)", split: .train)
            XCTAssertEqual(data.count, 25)
            XCTAssertEqual(data.imageShape, [1, 2, 3])
            XCTAssertEqual(data.labels[13], 3)
            XCTAssertEqual(data.pixels[6 * 13 + 2], Float(13 * 6 + 2) / 255)
        }
    }

    func testBrokenFilesNameTheFileAndTheProblem() throws {
        let directory = try folder()
        try writeIDX(directory, prefix: "train", count: 10, gzip: false)
        let images = directory.appending(path: "train-images-idx3-ubyte")
        let bytes = try Data(contentsOf: images)
        try bytes.prefix(bytes.count - 5).write(to: images)
        XCTAssertThrowsError(try Dataset.load(directory.path, split: .train)) { error in
            XCTAssertTrue("\(error)".contains("train-images-idx3-ubyte") && "\(error)".contains("truncated"), "\(error)")
        }
        try (Data([0, 0, 9, 3]) + bytes.dropFirst(4)).write(to: images)
        XCTAssertThrowsError(try Dataset.load(directory.path, split: .train)) { error in
            XCTAssertTrue("\(error)".contains("bad magic"), "\(error)")
        }
        try (Data([0x1f, 0x8b, 8, 0]) + Data(repeating: 0x55, count: 40)).write(to: images)
        XCTAssertThrowsError(try Dataset.load(directory.path, split: .train)) { error in
            XCTAssertTrue("\(error)".contains("train-images-idx3-ubyte") && "\(error)".contains("gzip"), "\(error)")
        }
        XCTAssertThrowsError(try Dataset.load(directory.path, split: .test)) { error in
            XCTAssertTrue("\(error)".contains("t10k-images-idx3-ubyte") && "\(error)".contains("missing"), "\(error)")
        }
    }

    func testFashionMNISTLoads() throws {
        guard FileManager.default.fileExists(atPath: Dataset.fashionMNISTDirectory.path) else {
            throw XCTSkip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        }
        let test = try Dataset.load("fashion-mnist", split: .test)
        XCTAssertEqual(test.count, 10_000)
        XCTAssertEqual(test.imageShape, [1, 28, 28])
        XCTAssertEqual(Set(test.labels), Set(0..<10))
        XCTAssertEqual(test.pixels.min(), 0)
        XCTAssertEqual(test.pixels.max(), 1)
        XCTAssertEqual(test.classNames[9], "Ankle boot")
    }

    func testShufflingSplittingAndPrefetchedBatches() throws {
        let directory = try folder()
        try writeIDX(directory, prefix: "train", count: 53, gzip: false)
        let (train, validation) = try Dataset.load(directory.path, split: .train).splitValidation(count: 11, seed: 5)
        XCTAssertEqual(train.count + validation.count, 53)
        XCTAssertEqual(validation.count, 11)

        let loader = DataLoader(dataset: train, batchSize: 8, shuffle: true, seed: 5, device: try openCLDevice())
        XCTAssertEqual(loader.order(epoch: 1), loader.order(epoch: 1))
        XCTAssertNotEqual(loader.order(epoch: 1), loader.order(epoch: 2))
        XCTAssertEqual(loader.order(epoch: 1).sorted(), Array(0..<42))
        let batches = Array(loader.batches(epoch: 1))
        XCTAssertEqual(batches.count, 6)
        XCTAssertEqual(batches.last?.labels.count, 2)
        XCTAssertEqual(batches.flatMap(\.labels), loader.order(epoch: 1).map { train.labels[$0] })
        XCTAssertEqual(batches[0].inputs.shape, [8, 1, 2, 3])
        XCTAssertEqual(try batches[0].targets.toArray(), batches[0].labels.map(Float.init))
        let first = loader.order(epoch: 1)[0]
        XCTAssertEqual(Array(try batches[0].inputs.toArray()[0..<6]), Array(train.pixels[(first * 6)..<(first * 6 + 6)]))
        // Resuming mid-epoch gives the remaining batches; abandoning an epoch does not hang.
        XCTAssertEqual(Array(loader.batches(epoch: 1, startingAt: 4)).flatMap(\.labels), batches[4...].flatMap(\.labels))
        for (index, _) in loader.batches(epoch: 3).enumerated() where index == 1 { break }
        XCTAssertEqual(DataLoader(dataset: train, batchSize: 8, shuffle: false, dropLast: true, device: .host).batchCount, 5)
    }

    func testCIFAR10BinaryFilesRead() throws {
        let directory = try folder()
        // Record r of file f (1...5 for the training batches, 6 for the test batch): label (3f + r) % 10, then
        // the CHW bytes (f + r + i) % 256, so that every file and record can be told apart.
        func records(_ count: Int, file f: Int) -> Data {
            var bytes: [UInt8] = []
            for r in 0..<count {
                bytes.append(UInt8((3 * f + r) % 10))
                for i in 0..<3072 { bytes.append(UInt8((f + r + i) % 256)) }
            }
            return Data(bytes)
        }
        for f in 1...5 { try records(3, file: f).write(to: directory.appending(path: "data_batch_\(f).bin")) }
        try records(4, file: 6).write(to: directory.appending(path: "test_batch.bin"))
        let train = try Dataset.load("cifar10:\(directory.path)", split: .train)
        XCTAssertEqual(train.count, 15)
        XCTAssertEqual(train.imageShape, [3, 32, 32])
        XCTAssertEqual(train.labels, (1...5).flatMap { f in (0..<3).map { (3 * f + $0) % 10 } }, "data_batch_1 ... data_batch_5, in order")
        XCTAssertEqual(train.pixels[3072 + 1024], Float((1 + 1 + 1024) % 256) / 255, "file 1, record 1, first green byte")
        XCTAssertEqual(train.pixels[4 * 3072], Float((2 + 1) % 256) / 255, "file 2, record 1, first red byte")
        XCTAssertEqual(train.classNames[3], "cat")
        let test = try Dataset.load("cifar10:\(directory.path)", split: .test)
        XCTAssertEqual(test.labels, [8, 9, 0, 1], "the test split is test_batch.bin")
        XCTAssertEqual(test.pixels[3 * 3072 + 2048], Float((6 + 3 + 2048) % 256) / 255, "record 3, first blue byte")
        try Data(records(2, file: 6).prefix(5000)).write(to: directory.appending(path: "test_batch.bin"))
        XCTAssertThrowsError(try Dataset.load("cifar10:\(directory.path)", split: .test)) { error in
            XCTAssertTrue("\(error)".contains("test_batch.bin") && "\(error)".contains("3,073-byte"), "\(error)")
        }
    }
}
