import XCTest
@testable import Kiln

/// The transposed convolution and the nearest-neighbour upsampling built on it.
final class ConvTranspose2DTests: XCTestCase {
    private var random = TestRandom(seed: 77)

    /// A layer configuration for the random tests; `description` is printed when one fails.
    struct TransposedCase: CustomStringConvertible {
        var batch: Int, inputChannels: Int, outputChannels: Int, height: Int, width: Int
        var kernel: Int, stride: Int, padding: Int, outputPadding: Int, dilation: Int, groups: Int

        var description: String {
            "N \(batch) C_in \(inputChannels) C_out \(outputChannels) \(height)x\(width) kernel \(kernel) stride \(stride) "
                + "padding \(padding) output padding \(outputPadding) dilation \(dilation) groups \(groups)"
        }

        var inputShape: [Int] { [batch, inputChannels, height, width] }

        func layer() throws -> ConvTranspose2D {
            try ConvTranspose2D(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernel, stride: stride,
                                padding: padding, outputPadding: outputPadding, dilation: dilation, groups: groups)
        }
    }

    /// Stride 2 (sometimes 3), padding, output padding below the stride, odd sizes; every fourth case grouped
    /// and every fifth dilated.
    private func randomCase(trial: Int) -> TransposedCase {
        let groups = trial % 4 == 3 ? 2 : 1
        let stride = trial % 3 == 2 ? 3 : 2
        let kernel = random.int(1...4)
        let dilation = trial % 5 == 4 ? 2 : 1
        return TransposedCase(batch: random.int(1...2), inputChannels: groups * random.int(1...3), outputChannels: groups * random.int(1...3),
                              height: random.int(1...5), width: random.int(2...6), kernel: kernel, stride: stride,
                              padding: random.int(0...(dilation * (kernel - 1) / 2)), outputPadding: random.int(0...(stride - 1)),
                              dilation: dilation, groups: groups)
    }

    /// The defining scatter: every input pixel adds its value times the kernel into the output window it
    /// spreads to, y[n, g·Cog + o, i·s − p + a·d, j·s − p + b·d] += x[n, c, i, j] · w[c, o, a, b], plus the bias.
    private func naiveTransposedConvolution(_ x: [Float], _ w: [Float], _ bias: [Float], _ c: TransposedCase) -> (values: [Float], shape: [Int]) {
        let outputHeight = (c.height - 1) * c.stride - 2 * c.padding + c.dilation * (c.kernel - 1) + c.outputPadding + 1
        let outputWidth = (c.width - 1) * c.stride - 2 * c.padding + c.dilation * (c.kernel - 1) + c.outputPadding + 1
        let groupIn = c.inputChannels / c.groups, groupOut = c.outputChannels / c.groups
        var y = [Float](repeating: 0, count: c.batch * c.outputChannels * outputHeight * outputWidth)
        for n in 0..<c.batch {
            for o in 0..<c.outputChannels {
                for row in 0..<outputHeight {
                    for column in 0..<outputWidth { y[((n * c.outputChannels + o) * outputHeight + row) * outputWidth + column] = bias[o] }
                }
            }
            for channel in 0..<c.inputChannels {
                let group = channel / groupIn
                for i in 0..<c.height {
                    for j in 0..<c.width {
                        let value = x[((n * c.inputChannels + channel) * c.height + i) * c.width + j]
                        for o in 0..<groupOut {
                            for a in 0..<c.kernel {
                                for b in 0..<c.kernel {
                                    let row = i * c.stride - c.padding + a * c.dilation
                                    let column = j * c.stride - c.padding + b * c.dilation
                                    guard (0..<outputHeight).contains(row), (0..<outputWidth).contains(column) else { continue }
                                    let outputChannel = group * groupOut + o
                                    y[((n * c.outputChannels + outputChannel) * outputHeight + row) * outputWidth + column]
                                        += value * w[((channel * groupOut + o) * c.kernel + a) * c.kernel + b]
                                }
                            }
                        }
                    }
                }
            }
        }
        return (y, [c.batch, c.outputChannels, outputHeight, outputWidth])
    }

    func testForwardMatchesTheDefiningScatter() throws {
        for trial in 0..<40 {
            let c = randomCase(trial: trial)
            let layer = try c.layer()
            try layer.reset(seed: UInt64(trial))
            let x = try Tensor(random.floats(c.inputShape.reduce(1, *)), shape: c.inputShape)
            let y = try layer.forward(x, .inference)
            let expected = naiveTransposedConvolution(try x.toArray(), try layer.weight.value.toArray(),
                                                      try XCTUnwrap(layer.bias).value.toArray(), c)
            XCTAssertEqual(y.shape, expected.shape, "\(c)")
            XCTAssertEqual(try layer.outputShape(for: c.inputShape), expected.shape, "\(c)")
            assertClose(try y.toArray(), expected.values, atol: 1e-5, "forward \(c)")
        }
    }

    /// PyTorch's documented sizes: (H − 1)·s − 2p + d(k − 1) + output_padding + 1.
    func testOutputSizesFollowPyTorch() throws {
        let doubling = try ConvTranspose2D(inputChannels: 32, outputChannels: 16, kernelSize: 3, stride: 2, padding: 1, outputPadding: 1)
        XCTAssertEqual(try doubling.outputShape(for: [4, 32, 7, 7]), [4, 16, 14, 14])
        XCTAssertEqual(doubling.weight.value.shape, [32, 16, 3, 3], "weight [C_in, C_out / groups, kh, kw]")
        XCTAssertEqual(try XCTUnwrap(doubling.bias).value.shape, [16])
        let plain = try ConvTranspose2D(inputChannels: 16, outputChannels: 33, kernelSize: 3, stride: 2)
        XCTAssertEqual(try plain.outputShape(for: [1, 16, 50, 100]), [1, 33, 101, 201])
        let grouped = try ConvTranspose2D(inputChannels: 4, outputChannels: 6, kernelSize: 2, groups: 2)
        XCTAssertEqual(grouped.weight.value.shape, [4, 3, 2, 2])
    }

    func testGradientsAgreeWithFiniteDifferences() throws {
        for trial in 0..<6 {
            let c = randomCase(trial: trial + 1)
            let layer = try c.layer()
            try layer.reset(seed: 9)
            let x = try Tensor(random.floats(c.inputShape.reduce(1, *)), shape: c.inputShape)
            let y = try layer.forward(x, ForwardContext(training: true))
            let upstream = try Tensor(random.floats(y.count), shape: y.shape)
            let dx = try layer.backward(upstream)
            let loss = { try weightedSum(layer.forward(x, .inference), upstream) }
            try assertGradient("dx \(c)", of: x, analytic: dx, loss: loss)
            try assertGradient("dw \(c)", of: layer.weight.value, analytic: try XCTUnwrap(layer.weight.gradient), loss: loss)
            let bias = try XCTUnwrap(layer.bias)
            try assertGradient("dbias \(c)", of: bias.value, analytic: try XCTUnwrap(bias.gradient), loss: loss)
        }
    }

    func testTheDeviceMatchesTheHost() throws {
        let gpu = try openCLDevice()
        for trial in 0..<12 {
            let c = randomCase(trial: trial)
            let host = try c.layer(), device = try c.layer()
            try host.reset(seed: 5)
            try device.reset(seed: 5)
            try device.move(to: gpu)
            let x = try Tensor(random.floats(c.inputShape.reduce(1, *)), shape: c.inputShape)
            let y = try host.forward(x, ForwardContext(training: true))
            let terms = Float(c.kernel * c.kernel * c.inputChannels)
            assertClose(try device.forward(x.to(gpu), ForwardContext(training: true)).toArray(), try y.toArray(),
                        atol: 1e-6 * terms, "forward \(c)")
            let dy = try Tensor(random.floats(y.count), shape: y.shape)
            assertClose(try device.backward(dy.to(gpu)).toArray(), try host.backward(dy).toArray(), atol: 1e-6 * terms,
                        "input gradient \(c)")
            let pixels = Float(y.count)
            assertClose(try XCTUnwrap(device.weight.gradient).toArray(), try XCTUnwrap(host.weight.gradient).toArray(),
                        atol: 1e-6 * pixels, "weight gradient \(c)")
            assertClose(try XCTUnwrap(device.bias?.gradient).toArray(), try XCTUnwrap(host.bias?.gradient).toArray(),
                        atol: 1e-6 * pixels, "bias gradient \(c)")
        }
    }

    func testSummaryCountsParametersAndMultiplyAccumulates() throws {
        let layer = try ConvTranspose2D(inputChannels: 32, outputChannels: 16, kernelSize: 3, stride: 2, padding: 1, outputPadding: 1)
        let summary = try layer.summary(inputShape: [32, 7, 7])
        XCTAssertEqual(summary.rows.count, 1)
        XCTAssertEqual(summary.rows[0].type, "ConvTranspose2D")
        XCTAssertEqual(summary.rows[0].outputShape, [1, 16, 14, 14])
        XCTAssertEqual(summary.trainableParameters, 32 * 16 * 9 + 16)
        // Each of the 32·7·7 input values is multiplied by 16·3·3 weights.
        XCTAssertEqual(summary.multiplyAccumulates, 32 * 7 * 7 * 16 * 9)
    }

    func testBadShapesAndSettingsAreRefused() throws {
        let layer = try ConvTranspose2D(inputChannels: 4, outputChannels: 2, kernelSize: 3, stride: 2)
        XCTAssertThrowsError(try layer.forward(Tensor.zeros([1, 3, 5, 5]), .inference)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("ConvTranspose2D") && text.contains("[N, 4, H, W]") && text.contains("[1, 3, 5, 5]"), text)
        }
        XCTAssertThrowsError(try ConvTranspose2D(inputChannels: 4, outputChannels: 2, kernelSize: 3, stride: 2, outputPadding: 2)) { error in
            XCTAssertTrue("\(error)".contains("smaller than the stride"), "\(error)")
        }
        XCTAssertThrowsError(try ConvTranspose2D(inputChannels: 3, outputChannels: 2, kernelSize: 3, groups: 2))
        // A 1×1 input with padding 2 leaves no output: (1 − 1)·1 − 4 + 2 + 1 = −1.
        XCTAssertThrowsError(try ConvTranspose2D(inputChannels: 1, outputChannels: 1, kernelSize: 3, padding: 2).outputShape(for: [1, 1, 1, 1]))
    }

    // MARK: - Upsample2D

    func testUpsamplingRepeatsEachPixelAndSumsTheGradientOverItsBlock() throws {
        let layer = try Upsample2D(scale: 3)
        let x = try Tensor(random.floats(2 * 2 * 3 * 4), shape: [2, 2, 3, 4])
        let y = try layer.forward(x, .inference)
        XCTAssertEqual(y.shape, [2, 2, 9, 12])
        let (values, output) = (try x.toArray(), try y.toArray())
        var expected = [Float](repeating: 0, count: output.count)
        for plane in 0..<4 {
            for row in 0..<9 {
                for column in 0..<12 { expected[(plane * 9 + row) * 12 + column] = values[(plane * 3 + row / 3) * 4 + column / 3] }
            }
        }
        XCTAssertEqual(output, expected)
        let dy = try Tensor(random.floats(y.count), shape: y.shape)
        let dx = try layer.backward(dy)
        try assertGradient("upsample dx", of: x, analytic: dx) { try weightedSum(layer.forward(x, .inference), dy) }
        XCTAssertTrue(layer.namedParameters.isEmpty, "no parameters, so state dicts are unchanged")
    }

    func testUpsamplingAgreesBetweenTheDeviceAndTheHost() throws {
        let gpu = try openCLDevice()
        let host = try Upsample2D(scale: 2), device = try Upsample2D(scale: 2)
        let x = try Tensor(random.floats(2 * 3 * 5 * 7), shape: [2, 3, 5, 7])
        let y = try host.forward(x, .inference)
        XCTAssertEqual(try device.forward(x.to(gpu), .inference).toArray(), try y.toArray())
        let dy = try Tensor(random.floats(y.count), shape: y.shape)
        assertClose(try device.backward(dy.to(gpu)).toArray(), try host.backward(dy).toArray(), atol: 1e-5, "upsample input gradient")
    }
}
