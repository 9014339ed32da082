import XCTest
@testable import Kiln

final class DropoutTests: XCTestCase {
    func testHostAndDeviceMasksAreEqual() throws {
        let gpu = try openCLDevice()
        for (shape, p, spatial) in [([64, 33], Float(0.5), false), ([3, 7, 5, 5], 0.2, true), ([1, 1001], 0.9, false)] {
            let x = try Tensor.normal(shape, seed: 1)
            let key = DropoutKey(seed: 42, step: 17, layer: 3)
            let host = try dropout(x, probability: p, key: key, spatial: spatial)
            let device = try dropout(x.to(gpu), probability: p, key: key, spatial: spatial)
            XCTAssertEqual(try device.mask.toArray(), try host.mask.toArray(), "mask \(shape) p \(p)")
            XCTAssertEqual(try device.output.toArray(), try host.output.toArray())
            let dy = try Tensor.normal(shape, seed: 2)
            XCTAssertEqual(try dropoutBackward(dy.to(gpu), mask: device.mask).toArray(), try dropoutBackward(dy, mask: host.mask).toArray())
        }
    }

    func testKeptFractionScaleAndExpectation() throws {
        let n = 200_000
        for device in try testDevices() {
            for p in [Float(0.1), 0.5, 0.8] {
                let x = try Tensor.full([n], value: 2, on: device)
                let result = try dropout(x, probability: p, key: DropoutKey(seed: 7, step: 0, layer: 0))
                let mask = try result.mask.toArray()
                let kept = mask.filter { $0 != 0 }
                let keep = 1 - Double(p)
                let sigma = (Double(n) * keep * (1 - keep)).squareRoot()
                XCTAssertEqual(Double(kept.count), Double(n) * keep, accuracy: 5 * sigma, "kept fraction, p \(p) on \(device)")
                XCTAssertTrue(kept.allSatisfy { $0 == 1 / (1 - p) }, "kept units scaled by 1/(1-p)")
                let mean = Double(try result.output.mean())
                XCTAssertEqual(mean, 2, accuracy: 5 * 2 * (Double(p) / keep / Double(n)).squareRoot(), "expected value kept")
            }
            XCTAssertEqual(try dropout(Tensor.ones([10], on: device), probability: 0, key: DropoutKey(seed: 1, step: 0, layer: 0)).output.toArray(),
                           [Float](repeating: 1, count: 10))
            XCTAssertEqual(try dropout(Tensor.ones([10], on: device), probability: 1, key: DropoutKey(seed: 1, step: 0, layer: 0)).output.toArray(),
                           [Float](repeating: 0, count: 10))
        }
    }

    func testMasksDependOnStepAndLayerAndSpatialDropsWholeChannels() throws {
        let x = try Tensor.ones([4, 6, 3, 3])
        let base = try dropout(x, probability: 0.5, key: DropoutKey(seed: 9, step: 1, layer: 1)).mask.toArray()
        XCTAssertNotEqual(try dropout(x, probability: 0.5, key: DropoutKey(seed: 9, step: 2, layer: 1)).mask.toArray(), base)
        XCTAssertNotEqual(try dropout(x, probability: 0.5, key: DropoutKey(seed: 9, step: 1, layer: 2)).mask.toArray(), base)
        XCTAssertEqual(try dropout(x, probability: 0.5, key: DropoutKey(seed: 9, step: 1, layer: 1)).mask.toArray(), base)
        let spatial = try dropout(x, probability: 0.5, key: DropoutKey(seed: 9, step: 1, layer: 1), spatial: true)
        let y = try spatial.output.toArray()
        for plane in 0..<24 {
            let values = Set(y[(plane * 9)..<(plane * 9 + 9)])
            XCTAssertEqual(values.count, 1, "plane \(plane) is dropped or kept whole")
        }
        XCTAssertTrue(Set(y).isSuperset(of: [0, 2]))
    }

    /// Dropout layers without an explicit stream take the stream of their path when the model is reset, so
    /// two of them draw different masks for the same input, seed and step; an explicit stream is kept.
    func testDropoutLayersInAModelDrawDistinctMasks() throws {
        let model = try Sequential {
            try Dropout(probability: 0.5).named("first")
            try Dropout(probability: 0.5).named("second")
            try Dropout(probability: 0.5, stream: 7).named("fixed")
        }
        try model.reset(seed: 1)
        let layers = model.children.compactMap { $0.layer as? Dropout }
        XCTAssertEqual(layers.count, 3)
        XCTAssertNotEqual(layers[0].stream, layers[1].stream)
        XCTAssertEqual(layers[2].stream, 7)
        let x = try Tensor(Array(repeating: 1, count: 256), shape: [256])
        let context = ForwardContext(training: true, step: 3, seed: 5)
        let first = try layers[0].forward(x, context).toArray(), second = try layers[1].forward(x, context).toArray()
        XCTAssertNotEqual(first, second, "two dropout layers of one model share a mask")
        // A model built again draws the same masks: the streams depend on the paths, not on construction order.
        let again = try Sequential {
            try Dropout(probability: 0.5).named("first")
            try Dropout(probability: 0.5).named("second")
        }
        try again.reset(seed: 1)
        XCTAssertEqual(try again.children[1].layer.forward(x, context).toArray(), second)
    }
}

final class DropConnectTests: XCTestCase {
    func testDropConnectGradientsAndDeviceAgreement() throws {
        var random = TestRandom(seed: 8)
        let layer = try DropConnectLinear(inputFeatures: 5, outputFeatures: 4, probability: 0.5, stream: 2)
        try layer.reset(seed: 1)
        let x = try Tensor(random.floats(15), shape: [3, 5])
        let context = ForwardContext(training: true, step: 4, seed: 11)
        let y = try layer.forward(x, context)
        let upstream = try Tensor(random.floats(12), shape: [3, 4])
        try layer.zeroGradients()
        let dx = try layer.backward(upstream)
        let loss = { try weightedSum(layer.forward(x, context), upstream) }
        try assertGradient("DropConnect dx", of: x, analytic: dx, loss: loss)
        try assertGradient("DropConnect dW", of: layer.linear.weight.value, analytic: XCTUnwrap(layer.linear.weight.gradient), loss: loss)
        XCTAssertEqual(try layer.forward(x, .inference).toArray(), try layer.linear.forward(x, .inference).toArray())

        let device = try DropConnectLinear(inputFeatures: 5, outputFeatures: 4, probability: 0.5, stream: 2)
        try device.reset(seed: 1)
        try device.move(to: try openCLDevice())
        assertClose(try device.forward(x.to(openCLDevice()), context).toArray(), try y.toArray(), "DropConnect forward, same mask")
    }
}
