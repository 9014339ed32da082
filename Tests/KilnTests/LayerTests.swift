import XCTest
@testable import Kiln

final class LayerTests: XCTestCase {
    private var random = TestRandom(seed: 5)

    private func smallNetwork() throws -> Sequential {
        try Sequential {
            try Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1).named("conv1")
            try Residual(body: Sequential {
                try Conv2D(inputChannels: 3, outputChannels: 3, kernelSize: 3, padding: 1).named("conv1")
            })
            try Concat {
                try Conv2D(inputChannels: 3, outputChannels: 2, kernelSize: 1)
                try Conv2D(inputChannels: 3, outputChannels: 1, kernelSize: 3, stride: 1, padding: 1, groups: 1)
            }
            Flatten()
            try Linear(inputFeatures: 3 * 4 * 5, outputFeatures: 4).named("fc")
        }
    }

    func testParameterNamesFollowPyTorch() throws {
        let names = try smallNetwork().namedParameters.map(\.name)
        XCTAssertEqual(names, ["conv1.weight", "conv1.bias", "1.conv1.weight", "1.conv1.bias",
                               "2.0.weight", "2.0.bias", "2.1.weight", "2.1.bias", "fc.weight", "fc.bias"])
    }

    func testShapesAndShapeErrorsNameTheLayer() throws {
        let network = try smallNetwork()
        XCTAssertEqual(try network.outputShape(for: [7, 2, 4, 5]), [7, 4])
        XCTAssertThrowsError(try network.outputShape(for: [7, 3, 4, 5])) { error in
            XCTAssertTrue("\(error)".contains("Conv2D(2 → 3") && "\(error)".contains("[7, 3, 4, 5]"), "\(error)")
        }
        XCTAssertThrowsError(try network.forward(Tensor.zeros([1, 2, 5, 5]), .inference)) { error in
            XCTAssertTrue("\(error)".contains("Linear(60 → 4)") && "\(error)".contains("[1, 75]"), "\(error)")
        }
    }

    func testResetIsDeterministicAndInitialisersHaveTheirScale() throws {
        let a = try smallNetwork(), b = try smallNetwork()
        try a.reset(seed: 3)
        try b.reset(seed: 3)
        for (x, y) in zip(a.namedParameters, b.namedParameters) {
            XCTAssertEqual(try x.parameter.value.toArray(), try y.parameter.value.toArray(), x.name)
        }
        try b.reset(seed: 4)
        XCTAssertNotEqual(try a.namedParameters[0].parameter.value.toArray(), try b.namedParameters[0].parameter.value.toArray())

        let big = try Tensor.zeros([256, 400])
        try Initializer.heNormal().fill(big, fanIn: 400, fanOut: 256, seed: 1)
        let values = try big.toArray()
        let variance = values.map { Double($0 * $0) }.reduce(0, +) / Double(values.count)
        XCTAssertEqual(variance, 2.0 / 400, accuracy: 0.1 * 2.0 / 400)
        try Initializer.xavierUniform.fill(big, fanIn: 400, fanOut: 256, seed: 1)
        let bound = (6.0 / 656).squareRoot()
        XCTAssertLessThanOrEqual(Double(try big.max()), bound)
        XCTAssertGreaterThan(Double(try big.max()), 0.95 * bound)
        try Initializer.pytorchDefault.fill(big, fanIn: 400, fanOut: 256, seed: 1)
        // U(±1/sqrt(400)): inside the bound, reaching near both ends of it, with the uniform's variance.
        XCTAssertLessThanOrEqual(try big.max(), 1 / 20)
        XCTAssertGreaterThan(try big.max(), 0.95 / 20)
        XCTAssertLessThan(try big.min(), -0.95 / 20)
        let uniform = try big.toArray()
        XCTAssertEqual(uniform.map { Double($0 * $0) }.reduce(0, +) / Double(uniform.count), 1.0 / 400 / 3, accuracy: 0.05 / 400 / 3)
    }

    func testGradientsThroughContainersAgreeWithFiniteDifferences() throws {
        let network = try smallNetwork()
        try network.reset(seed: 11)
        let x = try Tensor(random.floats(2 * 2 * 4 * 5), shape: [2, 2, 4, 5])
        let y = try network.forward(x, .inference)
        let upstream = try Tensor(random.floats(y.count), shape: y.shape)
        try network.zeroGradients()
        let dx = try network.backward(upstream)
        let loss = { try weightedSum(network.forward(x, .inference), upstream) }
        try assertGradient("network input", of: x, analytic: dx, loss: loss)
        for (name, parameter) in network.namedParameters {
            try assertGradient(name, of: parameter.value, analytic: XCTUnwrap(parameter.gradient), loss: loss)
        }
        // Inner gradients stay reachable.
        XCTAssertEqual(network.outputGradient(of: "fc")?.shape, [2, 4])
        XCTAssertEqual(network.output(of: "conv1")?.shape, [2, 3, 4, 5])
    }

    func testTheDeviceMatchesTheHostThroughANetwork() throws {
        let host = try smallNetwork(), device = try smallNetwork()
        try host.reset(seed: 2)
        try device.reset(seed: 2)
        try device.move(to: try openCLDevice())
        let x = try Tensor(random.floats(3 * 2 * 4 * 5), shape: [3, 2, 4, 5])
        let dy = try Tensor(random.floats(3 * 4), shape: [3, 4])
        assertClose(try device.forward(x.to(openCLDevice()), .inference).toArray(), try host.forward(x, .inference).toArray(),
                    atol: 1e-4, "network forward")
        assertClose(try device.backward(dy.to(openCLDevice())).toArray(), try host.backward(dy).toArray(), atol: 1e-4, "network dx")
        for ((name, a), (_, b)) in zip(device.namedParameters, host.namedParameters) {
            assertClose(try XCTUnwrap(a.gradient).toArray(), try XCTUnwrap(b.gradient).toArray(), atol: 1e-4, "gradient of \(name)")
        }
    }

    func testFrozenParametersGetNoGradient() throws {
        let layer = try Linear(inputFeatures: 3, outputFeatures: 2)
        layer.setTrainable(false)
        _ = try layer.forward(Tensor.ones([4, 3]), .inference)
        _ = try layer.backward(Tensor.ones([4, 2]))
        XCTAssertNil(layer.weight.gradient)
        XCTAssertTrue(layer.trainableParameters.isEmpty)
    }
}
