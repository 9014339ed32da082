import Foundation
import SwiftProtobuf
import XCTest
@testable import Kiln
@testable import KilnInterop

/// What an ONNX export holds, read back through the same protobuf messages, and the errors it raises.
/// (onnxruntime's check of the numbers is ONNXRuntimeCheckTests.)
final class ONNXExportTests: XCTestCase {
    private func exported(_ model: any Layer, inputShape: [Int], options: ONNXExportOptions = ONNXExportOptions()) throws -> Onnx_ModelProto {
        try Onnx_ModelProto(serializedBytes: try ONNXExport.model(model, inputShape: inputShape, options: options))
    }

    func testTheParametersAreInitialisersUnderTheirStateDictNamesWithTheirValues() throws {
        let model = try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10)
        let proto = try exported(model, inputShape: [1, 28, 28])
        // num_batches_tracked counts training steps; inference has no use for it.
        let parameters = model.namedParameters.filter { !$0.name.hasSuffix("num_batches_tracked") }
        XCTAssertEqual(proto.graph.initializer.map(\.name), parameters.map(\.name))
        for (tensor, (name, parameter)) in zip(proto.graph.initializer, parameters) {
            XCTAssertEqual(tensor.dims, parameter.value.shape.map(Int64.init), name)
            let values = tensor.rawData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            XCTAssertEqual(values, try parameter.value.toArray(), name)
        }
        XCTAssertEqual(proto.opsetImport.map(\.version), [17])
        XCTAssertEqual(proto.irVersion, 8)
        XCTAssertEqual(proto.graph.output.map(\.name), ["logits"])
    }

    func testTheBatchDimensionIsNamedOrFixed() throws {
        let model = try ModelZoo.make("lenet5", inputShape: [1, 32, 32], classes: 10)
        let dynamic = try exported(model, inputShape: [1, 32, 32])
        XCTAssertEqual(dynamic.graph.input[0].type.tensorType.shape.dim.map(\.dimParam), ["batch", "", "", ""])
        XCTAssertEqual(dynamic.graph.output[0].type.tensorType.shape.dim.map(\.dimValue), [0, 10])
        let fixed = try exported(model, inputShape: [1, 32, 32], options: ONNXExportOptions(batch: .fixed(8)))
        XCTAssertEqual(fixed.graph.input[0].type.tensorType.shape.dim.map(\.dimValue), [8, 1, 32, 32])
        XCTAssertEqual(fixed.graph.output[0].type.tensorType.shape.dim.map(\.dimValue), [8, 10])
    }

    /// Residual blocks add, inception modules concatenate, AlexNet's small-image path upsamples, and the
    /// autoencoder's decoder transposes: each in the op ONNX has for it.
    func testContainersAndResamplingBecomeTheirOps() throws {
        let ops = { (name: String, shape: [Int]) in
            Set(try self.exported(try ModelZoo.make(name, inputShape: shape, classes: 10), inputShape: shape).graph.node.map(\.opType))
        }
        XCTAssertTrue(try ops("resnet18", [3, 32, 32]).isSuperset(of: ["Conv", "BatchNormalization", "Add", "Relu", "GlobalAveragePool", "Gemm"]))
        XCTAssertTrue(try ops("googlenet", [3, 32, 32]).isSuperset(of: ["Concat", "MaxPool"]))
        XCTAssertTrue(try ops("alexnet", [1, 28, 28]).isSuperset(of: ["Resize", "LRN"]))
        XCTAssertTrue(try ops("autoencoder", [1, 28, 28]).isSuperset(of: ["ConvTranspose", "Sigmoid"]))
        XCTAssertFalse(try ops("lenet-bn", [1, 28, 28]).contains("Dropout"), "dropout is the identity in inference")
    }

    func testASoftmaxEndsTheGraphWhenAsked() throws {
        let model = try ModelZoo.make("lenet5", inputShape: [1, 32, 32], classes: 10)
        let proto = try exported(model, inputShape: [1, 32, 32], options: ONNXExportOptions(appendSoftmax: true))
        XCTAssertEqual(proto.graph.node.last?.opType, "Softmax")
        XCTAssertEqual(proto.graph.node.last?.output, ["probabilities"])
        XCTAssertEqual(proto.graph.output.map(\.name), ["probabilities"])
    }

    func testAnOpsetTooOldForAnOpNamesTheOpTheLayerAndTheOpsetItNeeds() throws {
        let alexNet = try ModelZoo.make("alexnet", inputShape: [1, 28, 28], classes: 10)
        XCTAssertThrowsError(try ONNXExport.model(alexNet, inputShape: [1, 28, 28], options: ONNXExportOptions(opset: 12))) { error in
            XCTAssertTrue("\(error)".contains("ONNX opset 12 is too old for upsample: its Resize needs opset 13 or later"), "\(error)")
        }
        let clipped = Sequential { ReLU6() }
        XCTAssertThrowsError(try ONNXExport.model(clipped, inputShape: [1, 4, 4], options: ONNXExportOptions(opset: 10))) { error in
            XCTAssertTrue("\(error)".contains("too old for 0: its Clip needs opset 11"), "\(error)")
        }
        XCTAssertNoThrow(try ONNXExport.model(clipped, inputShape: [1, 4, 4], options: ONNXExportOptions(opset: 11)))
        XCTAssertThrowsError(try ONNXExport.model(clipped, inputShape: [1, 4, 4], options: ONNXExportOptions(opset: 22))) { error in
            XCTAssertTrue("\(error)".contains("ONNX opset 22 is not one Kiln writes: choose one of 7–21"), "\(error)")
        }
    }

    func testALayerWithoutAnONNXFormIsNamedByItsPath() throws {
        let model = Sequential { Sequential { ReLU(); Doubling() }.named("block") }
        XCTAssertThrowsError(try ONNXExport.model(model, inputShape: [1, 4, 4])) { error in
            XCTAssertTrue("\(error)".contains("ONNX export: block.1 (Doubling) has no ONNX form"), "\(error)")
        }
    }

    func testAShapeTheModelRefusesIsAnErrorBeforeAnythingIsWritten() throws {
        let model = try ModelZoo.make("lenet-bn", inputShape: [1, 28, 28], classes: 10)
        XCTAssertThrowsError(try ONNXExport.model(model, inputShape: [3, 28, 28])) { error in
            XCTAssertTrue("\(error)".contains("[N, 1, H, W]"), "\(error)")
        }
    }
}

/// A layer Kiln's export does not know.
private final class Doubling: Layer {
    func outputShape(for inputShape: [Int]) throws -> [Int] { inputShape }
    func forward(_ x: Tensor, _ context: ForwardContext) throws -> Tensor { try x + x }
    func backward(_ dy: Tensor) throws -> Tensor { try dy + dy }
}
