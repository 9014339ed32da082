import Foundation
import XCTest
@testable import Kiln

final class LossTests: XCTestCase {
    private var random = TestRandom(seed: 23)

    private func labels(_ rows: Int, _ classes: Int) throws -> Tensor {
        try Tensor((0..<rows).map { _ in Float(random.int(0...(classes - 1))) }, shape: [rows])
    }

    private func probabilities(_ rows: Int, _ classes: Int) throws -> Tensor {
        try Tensor(random.floats(rows * classes, -2, 2), shape: [rows, classes]).softmax()
    }

    func testTheDeviceMatchesTheHost() throws {
        let gpu = try openCLDevice()
        for trial in 0..<8 {
            let (rows, classes) = (trial == 0 ? 1 : random.int(1...17), random.int(2...13))
            let x = try Tensor(random.floats(rows * classes, -6, 6), shape: [rows, classes])
            let dy = try Tensor(random.floats(rows * classes), shape: [rows, classes])
            for logarithm in [false, true] {
                let y = try logarithm ? x.logSoftmax() : x.softmax()
                let deviceY = try logarithm ? x.to(gpu).logSoftmax() : x.to(gpu).softmax()
                assertClose(try deviceY.toArray(), try y.toArray(), atol: 1e-6, "softmax log \(logarithm) [\(rows), \(classes)]")
                let (dx, ddx) = (try Tensor.empty(x.shape), try Tensor.empty(x.shape, on: gpu))
                try HostBackend.shared.softmaxBackward(y: y, dy: dy, logarithm: logarithm, into: dx)
                try ddx.backend.softmaxBackward(y: deviceY, dy: dy.to(gpu), logarithm: logarithm, into: ddx)
                assertClose(try ddx.toArray(), try dx.toArray(), atol: 1e-6, "softmax backward log \(logarithm)")
            }
            let hard = try labels(rows, classes), soft = try probabilities(rows, classes)
            for (name, host, device) in [
                ("cross-entropy labels", try crossEntropy(logits: x, targets: hard), try crossEntropy(logits: x.to(gpu), targets: hard.to(gpu))),
                ("cross-entropy soft", try crossEntropy(logits: x, targets: soft), try crossEntropy(logits: x.to(gpu), targets: soft.to(gpu))),
                ("NLL", try negativeLogLikelihood(logProbabilities: x.logSoftmax(), labels: hard),
                 try negativeLogLikelihood(logProbabilities: x.to(gpu).logSoftmax(), labels: hard.to(gpu))),
                ("MSE", try meanSquaredError(prediction: x, target: dy), try meanSquaredError(prediction: x.to(gpu), target: dy.to(gpu))),
                ("BCE", try binaryCrossEntropyWithLogits(logits: x, target: soft),
                 try binaryCrossEntropyWithLogits(logits: x.to(gpu), target: soft.to(gpu))),
            ] {
                assertClose(try device.loss.toArray(), try host.loss.toArray(), atol: 1e-5, "\(name) loss [\(rows), \(classes)]")
                assertClose(try device.gradient.toArray(), try host.gradient.toArray(), atol: 1e-6, "\(name) gradient [\(rows), \(classes)]")
            }
        }
    }

    func testKnownAnswersAndStability() throws {
        for device in try testDevices() {
            // Uniform logits over K classes: the loss is log K.
            let uniform = try crossEntropy(logits: Tensor.zeros([3, 10], on: device), targets: Tensor([0, 4, 9], shape: [3], on: device))
            XCTAssertEqual(try uniform.loss.item(), Float(Foundation.log(10.0)), accuracy: 1e-6)
            let huge = try Tensor([1000, 0, -1000, 1000, 1000, 0], shape: [2, 3], on: device)
            let p = try huge.softmax().toArray()
            XCTAssertEqual(p[0], 1, accuracy: 1e-6)
            XCTAssertEqual(p[3] + p[4], 1, accuracy: 1e-6)
            XCTAssertFalse(p.contains { !$0.isFinite })
            let rows = try huge.softmax().sum(axis: 1).toArray()
            XCTAssertEqual(rows[0], 1, accuracy: 1e-6)
            let loss = try crossEntropy(logits: huge, targets: Tensor([2, 2], shape: [2], on: device)).loss.item()
            XCTAssertEqual(loss, (2000 + (1000 + Float(Foundation.log(2.0)))) / 2, accuracy: 1e-2, "finite for extreme logits")
            XCTAssertEqual(try meanSquaredError(prediction: Tensor([1, 2], shape: [2], on: device), target: Tensor([0, 4], shape: [2], on: device)).loss.item(), 2.5)
        }
        // Out-of-range labels: refused on the host, NaN (and so a stopped run) on the device.
        XCTAssertThrowsError(try crossEntropy(logits: Tensor.zeros([2, 3]), targets: Tensor([0, 3], shape: [2])))
        let gpu = try openCLDevice()
        XCTAssertTrue(try crossEntropy(logits: Tensor.zeros([2, 3], on: gpu), targets: Tensor([0, 3], shape: [2], on: gpu)).loss.item().isNaN)
    }

    func testGradientsAgreeWithFiniteDifferences() throws {
        let x = try Tensor(random.floats(4 * 5, -2, 2), shape: [4, 5])
        let hard = try labels(4, 5), soft = try probabilities(4, 5), target = try Tensor(random.floats(20), shape: [4, 5])
        let upstream = try Tensor(random.floats(20), shape: [4, 5])
        try assertGradient("cross-entropy labels", of: x, analytic: crossEntropy(logits: x, targets: hard).gradient, eps: 1e-3) {
            Double(try crossEntropy(logits: x, targets: hard).loss.item())
        }
        try assertGradient("cross-entropy soft", of: x, analytic: crossEntropy(logits: x, targets: soft).gradient, eps: 1e-3) {
            Double(try crossEntropy(logits: x, targets: soft).loss.item())
        }
        try assertGradient("NLL", of: x, analytic: negativeLogLikelihood(logProbabilities: x, labels: hard).gradient, eps: 1e-3) {
            Double(try negativeLogLikelihood(logProbabilities: x, labels: hard).loss.item())
        }
        try assertGradient("MSE", of: x, analytic: meanSquaredError(prediction: x, target: target).gradient, eps: 1e-3) {
            Double(try meanSquaredError(prediction: x, target: target).loss.item())
        }
        try assertGradient("BCE", of: x, analytic: binaryCrossEntropyWithLogits(logits: x, target: soft).gradient, eps: 1e-3) {
            Double(try binaryCrossEntropyWithLogits(logits: x, target: soft).loss.item())
        }
        for logarithm in [false, true] {
            let y = try logarithm ? x.logSoftmax() : x.softmax()
            let dx = try Tensor.empty(x.shape)
            try HostBackend.shared.softmaxBackward(y: y, dy: upstream, logarithm: logarithm, into: dx)
            try assertGradient("softmax log \(logarithm)", of: x, analytic: dx, eps: 1e-3) {
                try weightedSum(logarithm ? x.logSoftmax() : x.softmax(), upstream)
            }
        }
    }

    /// Label smoothing against PyTorch (float64): `F.cross_entropy(x, y, label_smoothing=0.1)` with labels, and
    /// with ε = 0.2 on probability rows; and the identity loss_ε = (1 − ε)·CE + ε·mean_k(−log p_k) on labels.
    func testLabelSmoothingMatchesPyTorch() throws {
        let logits: [Float] = [0.5, -1.0, 2.0, 0.1, 0.3, 1.5, 0.2, -0.7, 0.9, -2.0, 0.0, 0.4, 0.8, -0.3, 1.1]
        let labels: [Float] = [0, 3, 4]
        let probabilities: [Float] = [0.7, 0.3, 0, 0, 0, 0, 0, 0.5, 0.5, 0, 0.1, 0.2, 0.3, 0.2, 0.2]
        let expectedLabels = (loss: Float(1.4856652794691194), gradient: [
            -0.26033092082169174, 0.0036722357243195304, 0.20099573905271986, 0.02439311262123261, 0.031269833423419637,
            0.1631982185289186, 0.03962691506920289, 0.012154899107859433, -0.21344284110755352, -0.0015371915984274665,
            0.03272349545426233, 0.05209655002942884, 0.08099775131341448, 0.022514283148124346, -0.18833207994523].map(Float.init))
        let expectedSoft = (loss: Float(2.042331946135786), gradient: [
            -0.15366425415502505, -0.08299443094234712, 0.1943290723860532, 0.017726445954565944, 0.024603166756752972,
            0.15653155186225196, 0.032960248402536224, -0.12784510089214057, -0.053442841107553526, -0.008203858265094132,
            -0.0006098378790710034, -0.007903449970571162, -0.005668915353252155, -0.03748571685187566, 0.05166792005477001].map(Float.init))
        for device in try testDevices() {
            let x = try Tensor(logits, shape: [3, 5], on: device)
            let smoothed = try crossEntropy(logits: x, targets: try Tensor(labels, shape: [3], on: device), labelSmoothing: 0.1)
            XCTAssertEqual(try smoothed.loss.item(), expectedLabels.loss, accuracy: 1e-5, "\(device)")
            assertClose(try smoothed.gradient.toArray(), expectedLabels.gradient, atol: 1e-6, "\(device) gradient, labels")
            let soft = try crossEntropy(logits: x, targets: try Tensor(probabilities, shape: [3, 5], on: device), labelSmoothing: 0.2)
            XCTAssertEqual(try soft.loss.item(), expectedSoft.loss, accuracy: 1e-5, "\(device)")
            assertClose(try soft.gradient.toArray(), expectedSoft.gradient, atol: 1e-6, "\(device) gradient, probabilities")

            let plain = try crossEntropy(logits: x, targets: try Tensor(labels, shape: [3], on: device)).loss.item()
            let uniform = try x.logSoftmax().toArray().reduce(0) { $0 - $1 } / 15
            XCTAssertEqual(try smoothed.loss.item(), 0.9 * plain + 0.1 * uniform, accuracy: 1e-5, "\(device): the identity")
        }
        XCTAssertThrowsError(try crossEntropy(logits: try Tensor(logits, shape: [3, 5]), targets: try Tensor(labels, shape: [3]),
                                              labelSmoothing: 1.5)) {
            XCTAssertEqual("\($0)", "cross-entropy: label smoothing 1.5 is outside [0, 1]")
        }
    }
}
