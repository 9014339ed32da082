import XCTest
@testable import Kiln

/// A convolution configuration for the random tests; `description` is printed when one fails.
struct ConvolutionCase: CustomStringConvertible {
    var input: [Int]
    var weight: [Int]
    var geometry: Conv2DGeometry

    var description: String { "input \(input) weight \(weight) \(geometry)" }

    /// A random configuration: odd sizes, kernels 1...7, stride 1...3, padding, dilation 2, groups and
    /// depthwise, batch 1 included.
    static func random(_ random: inout TestRandom, trial: Int) throws -> ConvolutionCase {
        let groups: Int
        let groupInput: Int
        switch trial % 5 {
        case 0: (groups, groupInput) = (random.int(2...4), 1)                  // depthwise (multiplier below)
        case 1: (groups, groupInput) = (random.int(2...3), random.int(1...3))  // grouped
        default: (groups, groupInput) = (1, random.int(1...4))
        }
        let groupOutput = random.int(1...4)
        let kernel = (random.int(1...7), trial % 7 == 0 ? random.int(1...7) : 0)
        let kernelSize = (kernel.0, kernel.1 == 0 ? kernel.0 : kernel.1)
        let dilation = trial % 4 == 3 ? 2 : 1
        let stride = (random.int(1...3), random.int(1...3))
        let padding = (random.int(0...3), random.int(0...3))
        let geometry = try Conv2DGeometry(kernelSize: kernelSize, stride: stride,
                                          padding: .explicit(height: padding.0, width: padding.1),
                                          dilation: (dilation, dilation), groups: groups)
        // Inputs at least as large as the kernel's span minus the padding, often odd.
        let height = Swift.max(1, dilation * (kernelSize.0 - 1) + 1 - 2 * padding.0 + random.int(0...9))
        let width = Swift.max(1, dilation * (kernelSize.1 - 1) + 1 - 2 * padding.1 + random.int(0...9))
        let batch = trial % 6 == 0 ? 1 : random.int(1...3)
        return ConvolutionCase(input: [batch, groups * groupInput, height, width],
                               weight: [groups * groupOutput, groupInput, kernelSize.0, kernelSize.1], geometry: geometry)
    }
}

/// Test-only reference: the convolution as its defining sum, with no im2col and no GEMM, so the host
/// backend's fast path is itself checked.
enum NaiveConvolution {
    /// Calls body(n, o, oh, ow, c, ih, iw, weight index) for every product term of the convolution.
    static func forEachTerm(_ s: Conv2DShape, _ body: (_ y: Int, _ x: Int, _ w: Int) -> Void) {
        let g = s.geometry
        for n in 0..<s.batch {
            for o in 0..<s.outputChannels {
                let group = o / s.groupOutputChannels
                for oh in 0..<s.outputHeight {
                    for ow in 0..<s.outputWidth {
                        for c in 0..<s.groupInputChannels {
                            for i in 0..<g.kernelHeight {
                                for j in 0..<g.kernelWidth {
                                    let ih = oh * g.strideHeight - g.padTop + i * g.dilationHeight
                                    let iw = ow * g.strideWidth - g.padLeft + j * g.dilationWidth
                                    guard ih >= 0, ih < s.inputHeight, iw >= 0, iw < s.inputWidth else { continue }
                                    let input = group * s.groupInputChannels + c
                                    body(((n * s.outputChannels + o) * s.outputHeight + oh) * s.outputWidth + ow,
                                         ((n * s.inputChannels + input) * s.inputHeight + ih) * s.inputWidth + iw,
                                         ((o * s.groupInputChannels + c) * g.kernelHeight + i) * g.kernelWidth + j)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    static func forward(_ x: [Float], _ w: [Float], _ s: Conv2DShape) -> [Float] {
        var y = [Double](repeating: 0, count: s.outputShape.reduce(1, *))
        forEachTerm(s) { yi, xi, wi in y[yi] += Double(x[xi]) * Double(w[wi]) }
        return y.map(Float.init)
    }

    static func backwardData(_ dy: [Float], _ w: [Float], _ s: Conv2DShape) -> [Float] {
        var dx = [Double](repeating: 0, count: s.inputShape.reduce(1, *))
        forEachTerm(s) { yi, xi, wi in dx[xi] += Double(dy[yi]) * Double(w[wi]) }
        return dx.map(Float.init)
    }

    static func backwardFilter(_ x: [Float], _ dy: [Float], _ s: Conv2DShape) -> [Float] {
        var dw = [Double](repeating: 0, count: s.weightShape.reduce(1, *))
        forEachTerm(s) { yi, xi, wi in dw[wi] += Double(dy[yi]) * Double(x[xi]) }
        return dw.map(Float.init)
    }
}

final class ConvolutionTests: XCTestCase {
    private var random = TestRandom(seed: 77)

    func testTheWorkedExampleGivesItsMap() throws {
        let input: [Float] = [1, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 5, 2, 5, 4, 5, 3, 5, 5, 5, 3]
        let expected: [Float] = [-2, -3, -2, -2, 0, 0, 0, 0, 6, 7, 9, 9, 1, 3, 1, -1]
        for device in try testDevices() {
            let x = try Tensor(input, shape: [1, 1, 5, 5], on: device)
            let w = try Tensor([-1, -1, 1, 1], shape: [1, 1, 2, 2], on: device)
            let y = try conv2d(x, weight: w, geometry: Conv2DGeometry(kernelSize: 2))
            XCTAssertEqual(y.shape, [1, 1, 4, 4])
            XCTAssertEqual(try y.toArray(), expected, "on \(device)")
        }
    }

    func testOutputSizesFollowTheFormula() throws {
        // AlexNet conv1 on 227×227: 11×11 stride 4 → 55.
        XCTAssertEqual(try Conv2DGeometry(kernelSize: 11, stride: 4).outputSize(height: 227, width: 227).height, 55)
        let same = try Conv2DGeometry(kernelSize: (4, 5), padding: .same, dilation: (2, 1))
        XCTAssertEqual(same.outputSize(height: 9, width: 8).height, 9)
        XCTAssertEqual(same.outputSize(height: 9, width: 8).width, 8)
        XCTAssertEqual([same.padTop, same.padBottom, same.padLeft, same.padRight], [3, 3, 2, 2])
        XCTAssertEqual(try Conv2DGeometry(kernelSize: (2, 2), padding: .same).padBottom, 1)
        XCTAssertThrowsError(try Conv2DGeometry(kernelSize: (3, 3), stride: (2, 2), padding: .same))
    }

    /// The host backend (im2col + OpenBLAS) against the defining sum.
    func testTheHostBackendMatchesTheDefiningSum() throws {
        for trial in 0..<20 {
            let c = try ConvolutionCase.random(&random, trial: trial)
            let s = try Conv2DShape(input: c.input, weight: c.weight, geometry: c.geometry)
            let x = try Tensor(random.floats(c.input.reduce(1, *)), shape: c.input)
            let w = try Tensor(random.floats(c.weight.reduce(1, *)), shape: c.weight)
            let dy = try Tensor(random.floats(s.outputShape.reduce(1, *)), shape: s.outputShape)
            let terms = Float(s.patchSize)
            assertClose(try conv2d(x, weight: w, geometry: c.geometry).toArray(),
                        NaiveConvolution.forward(try x.toArray(), try w.toArray(), s), atol: 1e-6 * terms, "forward \(c)")
            assertClose(try conv2dBackwardData(dy, weight: w, inputShape: c.input, geometry: c.geometry).toArray(),
                        NaiveConvolution.backwardData(try dy.toArray(), try w.toArray(), s), atol: 1e-6 * terms, "backward data \(c)")
            assertClose(try conv2dBackwardFilter(x, dy, weightShape: c.weight, geometry: c.geometry).toArray(),
                        NaiveConvolution.backwardFilter(try x.toArray(), try dy.toArray(), s),
                        atol: 1e-6 * Float(s.batch * s.outputPixels), "backward filter \(c)")
        }
    }

    /// The host's Winograd path (3x3, stride 1, 16 channels or more) against the defining sum: odd and tiny
    /// sizes (a lone tile, an odd edge), padding 0 to 3 (`same` included), bias and ReLU, batch 1, a batch
    /// split into chunks on every thread, and chunks that end inside an image. The data gradient runs the same
    /// path with the filters rotated.
    func testTheHostWinogradPathMatchesTheDefiningSum() throws {
        for trial in 0..<12 {
            let (inputs, outputs) = (random.int(16...21), random.int(16...21))
            let padding = trial % 4 == 3 ? Conv2DPadding.same : .explicit(height: random.int(0...3), width: random.int(0...3))
            let geometry = try Conv2DGeometry(kernelSize: (3, 3), padding: padding)
            let (minimumHeight, minimumWidth) = (Swift.max(1, 3 - 2 * geometry.padTop), Swift.max(1, 3 - 2 * geometry.padLeft))
            // Trial 2's images are tall enough for a chunk of tile rows to end inside one.
            let (height, width) = trial == 0 ? (minimumHeight, minimumWidth)
                : trial == 2 ? (29, 21) : (minimumHeight + random.int(0...10), minimumWidth + random.int(0...10))
            let batch = trial == 1 ? 37 : (trial % 3 == 0 ? 1 : random.int(2...3))
            let input = [batch, inputs, height, width], weightShape = [outputs, inputs, 3, 3]
            let s = try Conv2DShape(input: input, weight: weightShape, geometry: geometry)
            XCTAssertTrue(HostBackend.winogradApplies(to: s), "\(s)")
            let x = try Tensor(random.floats(input.reduce(1, *)), shape: input)
            let w = try Tensor(random.floats(weightShape.reduce(1, *)), shape: weightShape)
            let bias = random.floats(outputs)
            let dy = try Tensor(random.floats(s.outputShape.reduce(1, *)), shape: s.outputShape)
            let relu = trial % 2 == 0
            var expected = NaiveConvolution.forward(try x.toArray(), try w.toArray(), s)
            for (i, value) in expected.enumerated() {
                let shifted = value + bias[i / s.outputPixels % outputs]
                expected[i] = relu ? Swift.max(shifted, 0) : shifted
            }
            let terms = Float(s.patchSize)
            let y = try conv2d(x, weight: w, bias: try Tensor(bias, shape: [outputs]), geometry: geometry, relu: relu)
            assertClose(try y.toArray(), expected, atol: 1e-6 * terms, "forward \(s) relu \(relu)")
            assertClose(try conv2dBackwardData(dy, weight: w, inputShape: input, geometry: geometry).toArray(),
                        NaiveConvolution.backwardData(try dy.toArray(), try w.toArray(), s), atol: 1e-6 * terms, "backward data \(s)")
        }
    }

    /// The OpenCL backend against the host on 60 random configurations, every pass.
    func testTheDeviceMatchesTheHostOnRandomConfigurations() throws {
        let gpu = try openCLDevice()
        for trial in 0..<60 {
            let c = try ConvolutionCase.random(&random, trial: trial)
            let s = try Conv2DShape(input: c.input, weight: c.weight, geometry: c.geometry)
            let x = try Tensor(random.floats(c.input.reduce(1, *)), shape: c.input)
            let w = try Tensor(random.floats(c.weight.reduce(1, *)), shape: c.weight)
            let b = try Tensor(random.floats(s.outputChannels), shape: [s.outputChannels])
            let dy = try Tensor(random.floats(s.outputShape.reduce(1, *)), shape: s.outputShape)
            let (dx_, dw_, db_, ddy) = (try x.to(gpu), try w.to(gpu), try b.to(gpu), try dy.to(gpu))
            let terms = Float(s.patchSize), pixels = Float(s.batch * s.outputPixels)
            assertClose(try conv2d(dx_, weight: dw_, bias: db_, geometry: c.geometry).toArray(),
                        try conv2d(x, weight: w, bias: b, geometry: c.geometry).toArray(), atol: 1e-6 * terms, "forward \(c)")
            assertClose(try conv2dBackwardData(ddy, weight: dw_, inputShape: c.input, geometry: c.geometry).toArray(),
                        try conv2dBackwardData(dy, weight: w, inputShape: c.input, geometry: c.geometry).toArray(),
                        atol: 1e-6 * terms, "backward data \(c)")
            assertClose(try conv2dBackwardFilter(dx_, ddy, weightShape: c.weight, geometry: c.geometry).toArray(),
                        try conv2dBackwardFilter(x, dy, weightShape: c.weight, geometry: c.geometry).toArray(),
                        atol: 1e-6 * pixels, "backward filter \(c)")
            assertClose(try conv2dBackwardBias(ddy).toArray(), try conv2dBackwardBias(dy).toArray(),
                        atol: 1e-6 * pixels, "backward bias \(c)")
        }
    }

    func testBackwardAccumulatesWhenAsked() throws {
        for device in try testDevices() {
            for groups in [1, 3] {  // im2col path and depthwise path
                let geometry = try Conv2DGeometry(kernelSize: 3, padding: 1, groups: groups)
                let x = try Tensor(random.floats(2 * 3 * 5 * 5), shape: [2, 3, 5, 5], on: device)
                let dy = try Tensor(random.floats(2 * 3 * 5 * 5), shape: [2, 3, 5, 5], on: device)
                let s = try Conv2DShape(input: x.shape, weight: [3, 3 / groups, 3, 3], geometry: geometry)
                let once = try conv2dBackwardFilter(x, dy, weightShape: s.weightShape, geometry: geometry)
                let twice = try once.copy()
                try device.backend().conv2dBackwardFilter(x, dy, shape: s, into: twice, accumulate: true)
                assertClose(try twice.toArray(), try (once * 2).toArray(), atol: 1e-4, "dw accumulates on \(device), groups \(groups)")
                let bias = try conv2dBackwardBias(dy)
                try device.backend().conv2dBackwardBias(dy, into: bias, accumulate: true)
                assertClose(try bias.toArray(), try (conv2dBackwardBias(dy) * 2).toArray(), atol: 1e-4, "dbias accumulates on \(device)")
            }
        }
    }

    func testGradientsAgreeWithFiniteDifferences() throws {
        let geometries = [
            try Conv2DGeometry(kernelSize: 3, stride: 2, padding: 1),
            try Conv2DGeometry(kernelSize: (2, 3), padding: .same, dilation: (2, 1)),
            try Conv2DGeometry(kernelSize: (1, 3), stride: (3, 2), padding: .explicit(height: 0, width: 2)),
            try Conv2DGeometry(kernelSize: 3, padding: 1, dilation: 2, groups: 2),
            try Conv2DGeometry(kernelSize: 3, stride: 2, padding: 1, groups: 4),  // depthwise, multiplier 2
        ]
        for geometry in geometries {
            let input = [2, 4, 6, 7]
            let weight = [8, 4 / geometry.groups, geometry.kernelHeight, geometry.kernelWidth]
            let x = try Tensor(random.floats(input.reduce(1, *)), shape: input)
            let w = try Tensor(random.floats(weight.reduce(1, *)), shape: weight)
            let b = try Tensor(random.floats(8), shape: [8])
            let y = try conv2d(x, weight: w, bias: b, geometry: geometry)
            let upstream = try Tensor(random.floats(y.count), shape: y.shape)
            let loss = { try weightedSum(conv2d(x, weight: w, bias: b, geometry: geometry), upstream) }
            try assertGradient("conv dx \(geometry)", of: x,
                               analytic: conv2dBackwardData(upstream, weight: w, inputShape: input, geometry: geometry), loss: loss)
            try assertGradient("conv dw \(geometry)", of: w,
                               analytic: conv2dBackwardFilter(x, upstream, weightShape: weight, geometry: geometry), loss: loss)
            try assertGradient("conv dbias \(geometry)", of: b, analytic: conv2dBackwardBias(upstream), loss: loss)
        }
    }

    func testLargeBatchesAreProcessedInChunks() throws {
        // Enough images that the OpenCL im2col workspace is split into several chunks.
        try skipUnderTheSimulator("a workspace-sized batch")
        let gpu = try openCLDevice()
        let geometry = try Conv2DGeometry(kernelSize: 3, padding: 1)
        let perImage = 2 * 9 * 16 * 16
        let batch = OpenCLBackend.convolutionWorkspaceElements / perImage + 3
        let x = try Tensor.uniform([batch, 2, 16, 16], low: -1, high: 1, seed: 3)
        let w = try Tensor.uniform([3, 2, 3, 3], low: -1, high: 1, seed: 4)
        let y = try conv2d(x, weight: w, geometry: geometry)
        assertClose(try conv2d(x.to(gpu), weight: w.to(gpu), geometry: geometry).toArray(), try y.toArray(),
                    atol: 1e-5 * 18, "chunked forward, batch \(batch)")
        let dy = try Tensor.uniform(y.shape, low: -1, high: 1, seed: 5)
        assertClose(try conv2dBackwardFilter(x.to(gpu), dy.to(gpu), weightShape: w.shape, geometry: geometry).toArray(),
                    try conv2dBackwardFilter(x, dy, weightShape: w.shape, geometry: geometry).toArray(),
                    atol: 1e-6 * Float(batch * 256), rtol: 1e-4, "chunked backward filter, batch \(batch)")
    }

    func testBadShapesNameTheOpAndBothShapes() throws {
        let x = try Tensor.zeros([1, 3, 8, 8])
        XCTAssertThrowsError(try conv2d(x, weight: Tensor.zeros([6, 1, 5, 5]), geometry: Conv2DGeometry(kernelSize: 5))) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("conv2d") && text.contains("[6, 1, 5, 5]") && text.contains("[1, 3, 8, 8]"), text)
        }
        XCTAssertThrowsError(try conv2d(x, weight: Tensor.zeros([6, 3, 9, 9]), geometry: Conv2DGeometry(kernelSize: 9))) { error in
            XCTAssertTrue("\(error)".contains("empty output"), "\(error)")
        }
        XCTAssertThrowsError(try conv2d(x, weight: Tensor.zeros([6, 3, 3, 3]), bias: Tensor.zeros([5]),
                                        geometry: Conv2DGeometry(kernelSize: 3))) { error in
            XCTAssertTrue("\(error)".contains("[6]") && "\(error)".contains("[5]"), "\(error)")
        }
    }
}

final class PointwiseConvolutionTests: XCTestCase {
    /// 1×1 convolutions skip im2col on both backends; they must still match the defining sum.
    func testPointwiseConvolutionsAreAPureGEMM() throws {
        var random = TestRandom(seed: 41)
        let devices = try testDevices()
        for (input, groups) in [([3, 4, 5, 7], 1), ([2, 6, 3, 1], 3), ([1, 4, 2, 2], 2)] {
            let geometry = try Conv2DGeometry(kernelSize: 1, groups: groups)
            let weight = [5 * groups, input[1] / groups, 1, 1]
            let s = try Conv2DShape(input: input, weight: weight, geometry: geometry)
            XCTAssertTrue(s.isPointwise)
            let x = try Tensor(random.floats(input.reduce(1, *)), shape: input)
            let w = try Tensor(random.floats(weight.reduce(1, *)), shape: weight)
            let dy = try Tensor(random.floats(s.outputShape.reduce(1, *)), shape: s.outputShape)
            let forward = NaiveConvolution.forward(try x.toArray(), try w.toArray(), s)
            let data = NaiveConvolution.backwardData(try dy.toArray(), try w.toArray(), s)
            let filter = NaiveConvolution.backwardFilter(try x.toArray(), try dy.toArray(), s)
            for device in devices {
                let (x, w, dy) = (try x.to(device), try w.to(device), try dy.to(device))
                assertClose(try conv2d(x, weight: w, geometry: geometry).toArray(), forward, "pointwise forward \(input) on \(device)")
                assertClose(try conv2dBackwardData(dy, weight: w, inputShape: input, geometry: geometry).toArray(), data,
                            "pointwise backward data \(input) on \(device)")
                assertClose(try conv2dBackwardFilter(x, dy, weightShape: weight, geometry: geometry).toArray(), filter,
                            "pointwise backward filter \(input) on \(device)")
            }
        }
    }
}
