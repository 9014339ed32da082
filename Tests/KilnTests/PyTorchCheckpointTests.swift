import Foundation
import XCTest
@testable import Kiln

/// A LeNet-BN trained and saved by PyTorch (Fixtures/lenet_bn_pytorch.py) evaluates identically in Kiln.
final class PyTorchCheckpointTests: XCTestCase {
    func testAPyTorchCheckpointEvaluatesAsInPyTorch() throws {
        guard FileManager.default.fileExists(atPath: Dataset.fashionMNISTDirectory.path) else {
            throw XCTSkip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
        }
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appending(path: "Fixtures/lenet_bn_pytorch.safetensors")
        let file = try SafeTensors.read(from: url)
        let expectedCorrect = try XCTUnwrap(file.metadata["correct_of_first_1000"].flatMap(Int.init))
        let logitsJSON = try XCTUnwrap(file.metadata["logits_of_first_8"])
        let expectedLogits = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(logitsJSON.utf8)) as? [[Double]]).flatMap { $0.map(Float.init) }
        XCTAssertEqual(file["bn1.num_batches_tracked"]?.dtype, .int64)

        let test = try Dataset.load("fashion-mnist", split: .test).subset(Array(0..<1000))
        for device in try testDevices() {
            let model = try LeNetBN()
            try model.loadStateDict(file, source: url.path)
            try model.move(to: device)
            let logits = try model.forward(Tensor(Array(test.pixels.prefix(8 * 784)), shape: [8, 1, 28, 28], on: device), .inference)
            assertClose(try logits.toArray(), expectedLogits, atol: 1e-4, rtol: 1e-4, "PyTorch's logits on \(device)")
            let all = try model.forward(Tensor(test.pixels, shape: [1000, 1, 28, 28], on: device), .inference)
            let predicted = try all.argmax(axis: 1).toArray()
            let correct = zip(predicted, test.labels).filter { Int($0) == $1 }.count
            XCTAssertEqual(correct, expectedCorrect, "the same accuracy as PyTorch on \(device)")
        }
    }
}
