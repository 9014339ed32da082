import Foundation
import KilnCL
import XCTest
@testable import Kiln

/// Every convolution algorithm of the OpenCL backend, forced, against the host backend; and the tuner that
/// chooses between them.
final class ConvolutionAlgorithmTests: XCTestCase {
    private var random = TestRandom(seed: 2024)

    private func openCLBackend() throws -> (Device, OpenCLBackend) {
        let device = try openCLDevice()
        guard let backend = try device.backend() as? OpenCLBackend else { throw XCTSkip("\(device) has no OpenCL backend") }
        return (device, backend)
    }

    /// Shapes that reach every edge of the kernels: several row, column and reduction tiles, C_out not a
    /// multiple of the tile, batch 1, odd sizes, stride 2 and 3, asymmetric padding, dilation, groups,
    /// depthwise, 1x1, and enough (image, pixel) pairs for the filter gradient to be split into slices.
    private func cases() throws -> [ConvolutionCase] {
        func make(_ input: [Int], _ outputs: Int, _ geometry: Conv2DGeometry) -> ConvolutionCase {
            ConvolutionCase(input: input, weight: [outputs, input[1] / geometry.groups, geometry.kernelHeight, geometry.kernelWidth],
                            geometry: geometry)
        }
        var cases = [
            make([2, 3, 9, 11], 70, try Conv2DGeometry(kernelSize: 3, padding: 1)),              // two row tiles
            make([1, 5, 13, 10], 4, try Conv2DGeometry(kernelSize: 3)),                          // batch 1, padding 0
            make([2, 4, 11, 9], 6, try Conv2DGeometry(kernelSize: (3, 3), padding: .same)),
            make([3, 2, 16, 16], 5, try Conv2DGeometry(kernelSize: 3, padding: 1)),              // sliced filter gradient
            make([2, 3, 10, 9], 7, try Conv2DGeometry(kernelSize: 3, stride: 2, padding: 1)),
            make([1, 2, 12, 13], 3, try Conv2DGeometry(kernelSize: (5, 3), stride: (3, 2), padding: .explicit(height: 2, width: 0))),
            make([2, 3, 9, 8], 4, try Conv2DGeometry(kernelSize: 3, padding: 2, dilation: 2)),
            make([2, 4, 7, 7], 6, try Conv2DGeometry(kernelSize: 3, padding: 1, groups: 2)),
            make([2, 3, 7, 6], 6, try Conv2DGeometry(kernelSize: 3, stride: 2, padding: 1, groups: 3)),  // depthwise
            make([2, 5, 6, 7], 9, try Conv2DGeometry(kernelSize: 1)),                             // pointwise
            make([1, 3, 8, 9], 4, try Conv2DGeometry(kernelSize: 1, stride: 2)),
            make([2, 20, 5, 6], 3, try Conv2DGeometry(kernelSize: 3, padding: 3)),               // padding beyond 2
            make([1, 3, 11, 13], 16, try Conv2DGeometry(kernelSize: 3, stride: 2, padding: 1)),  // direct: channel vectors of 16
            make([2, 4, 9, 30], 16, try Conv2DGeometry(kernelSize: 3, padding: 2, dilation: 2, groups: 2)),  // of 8, several blocks a row
        ]
        for trial in 0..<6 { cases.append(try ConvolutionCase.random(&random, trial: trial)) }
        return cases
    }

    func testEveryAlgorithmMatchesTheHost() throws {
        let (gpu, backend) = try openCLBackend()
        defer { backend.forcedConvolutionAlgorithm = nil }
        var covered = Set<ConvolutionAlgorithm>()
        for c in try cases() {
            let s = try Conv2DShape(input: c.input, weight: c.weight, geometry: c.geometry)
            let x = try Tensor(random.floats(c.input.reduce(1, *)), shape: c.input)
            let w = try Tensor(random.floats(c.weight.reduce(1, *)), shape: c.weight)
            let b = try Tensor(random.floats(s.outputChannels), shape: [s.outputChannels])
            let dy = try Tensor(random.floats(s.outputShape.reduce(1, *)), shape: s.outputShape)
            let earlier = try Tensor(random.floats(c.weight.reduce(1, *)), shape: c.weight)
            let y = try conv2d(x, weight: w, bias: b, geometry: c.geometry).toArray()
            let dx = try conv2dBackwardData(dy, weight: w, inputShape: c.input, geometry: c.geometry).toArray()
            let dw = try conv2dBackwardFilter(x, dy, weightShape: c.weight, geometry: c.geometry)
            let accumulated = try (dw + earlier).toArray()
            let (gx, gw, gb, gdy) = (try x.to(gpu), try w.to(gpu), try b.to(gpu), try dy.to(gpu))
            let terms = Float(s.patchSize), pixels = Float(s.batch * s.outputPixels)

            for pass in ConvolutionPass.allCases {
                for algorithm in backend.applicableConvolutionAlgorithms(for: s, pass: pass) {
                    covered.insert(algorithm)
                    backend.forcedConvolutionAlgorithm = algorithm
                    let label = "\(algorithm) \(pass) \(c)"
                    switch pass {
                    case .forward:
                        assertClose(try conv2d(gx, weight: gw, bias: gb, geometry: c.geometry).toArray(), y,
                                    atol: 1e-6 * terms, label)
                    case .backwardData:
                        assertClose(try conv2dBackwardData(gdy, weight: gw, inputShape: c.input, geometry: c.geometry).toArray(), dx,
                                    atol: 1e-6 * Float(s.outputChannels * s.geometry.kernelHeight * s.geometry.kernelWidth), label)
                    case .backwardFilter:
                        assertClose(try conv2dBackwardFilter(gx, gdy, weightShape: c.weight, geometry: c.geometry).toArray(),
                                    try dw.toArray(), atol: 1e-6 * pixels, label)
                        let sum = try earlier.to(gpu)
                        try backend.conv2dBackwardFilter(gx, gdy, shape: s, into: sum, accumulate: true)
                        assertClose(try sum.toArray(), accumulated, atol: 1e-6 * pixels, "\(label), accumulating")
                    }
                }
            }
        }
        XCTAssertEqual(covered, Set(ConvolutionAlgorithm.allCases), "some algorithm was never exercised")
    }

    /// Each tile configuration of the implicit GEMM (the device picks one by its limits and the row count)
    /// on shapes with partial tiles in every dimension, every pass.
    func testEveryImplicitGEMMTileConfiguration() throws {
        let (gpu, backend) = try openCLBackend()
        backend.forcedConvolutionAlgorithm = .implicitGEMM
        defer {
            backend.forcedConvolutionAlgorithm = nil
            OpenCLBackend.implicitGEMMTilesOverride.withLock { $0 = nil }
        }
        let cases = [
            ConvolutionCase(input: [2, 3, 9, 11], weight: [70, 3, 3, 3], geometry: try Conv2DGeometry(kernelSize: 3, padding: 1)),
            ConvolutionCase(input: [3, 20, 16, 13], weight: [6, 10, 3, 3], geometry: try Conv2DGeometry(kernelSize: 3, padding: 1, groups: 2)),
            ConvolutionCase(input: [1, 34, 9, 8], weight: [3, 34, 2, 3],
                            geometry: try Conv2DGeometry(kernelSize: (2, 3), stride: (2, 1), padding: .explicit(height: 1, width: 2), dilation: (2, 1))),
        ]
        for tiles in [ImplicitGEMMTiles.large, .narrow, .small] {
            OpenCLBackend.implicitGEMMTilesOverride.withLock { $0 = tiles }
            for c in cases {
                let s = try Conv2DShape(input: c.input, weight: c.weight, geometry: c.geometry)
                let x = try Tensor(random.floats(c.input.reduce(1, *)), shape: c.input)
                let w = try Tensor(random.floats(c.weight.reduce(1, *)), shape: c.weight)
                let b = try Tensor(random.floats(s.outputChannels), shape: [s.outputChannels])
                let dy = try Tensor(random.floats(s.outputShape.reduce(1, *)), shape: s.outputShape)
                let label = "tiles \(tiles.options) \(c)"
                let window = Float(c.geometry.kernelHeight * c.geometry.kernelWidth)
                assertClose(try conv2d(x.to(gpu), weight: w.to(gpu), bias: b.to(gpu), geometry: c.geometry).toArray(),
                            try conv2d(x, weight: w, bias: b, geometry: c.geometry).toArray(), atol: 1e-6 * Float(s.patchSize), "\(label) forward")
                assertClose(try conv2dBackwardData(dy.to(gpu), weight: w.to(gpu), inputShape: c.input, geometry: c.geometry).toArray(),
                            try conv2dBackwardData(dy, weight: w, inputShape: c.input, geometry: c.geometry).toArray(),
                            atol: 1e-6 * Float(s.groupOutputChannels) * window, "\(label) backward data")
                assertClose(try conv2dBackwardFilter(x.to(gpu), dy.to(gpu), weightShape: c.weight, geometry: c.geometry).toArray(),
                            try conv2dBackwardFilter(x, dy, weightShape: c.weight, geometry: c.geometry).toArray(),
                            atol: 1e-6 * Float(s.batch * s.outputPixels), "\(label) backward filter")
            }
        }
    }

    /// Winograd F(2x2, 3x3) on padding 0, 1 and 2, odd sizes (partial edge tiles), a single tile and wide
    /// channels. Its transforms add and subtract a few terms around the products, which at F(2x2, 3x3) keeps
    /// its rounding within the tolerance of a direct sum: the tolerance is ConvolutionTests' own.
    func testWinogradHandlesPaddingAndPartialTiles() throws {
        let (gpu, backend) = try openCLBackend()
        backend.forcedConvolutionAlgorithm = .winograd
        defer { backend.forcedConvolutionAlgorithm = nil }
        let configurations: [([Int], Int, Int)] = [
            ([2, 3, 7, 9], 5, 0), ([1, 4, 5, 5], 3, 1), ([3, 2, 9, 6], 4, 1), ([1, 2, 3, 3], 2, 0),
            ([2, 3, 4, 7], 3, 2), ([1, 40, 6, 5], 33, 1),
        ]
        for (input, outputs, padding) in configurations {
            let geometry = try Conv2DGeometry(kernelSize: 3, padding: padding)
            let weight = [outputs, input[1], 3, 3]
            let s = try Conv2DShape(input: input, weight: weight, geometry: geometry)
            XCTAssertTrue(backend.applicableConvolutionAlgorithms(for: s, pass: .forward).contains(.winograd))
            XCTAssertFalse(backend.applicableConvolutionAlgorithms(for: s, pass: .backwardFilter).contains(.winograd))
            let x = try Tensor(random.floats(input.reduce(1, *)), shape: input)
            let w = try Tensor(random.floats(weight.reduce(1, *)), shape: weight)
            let b = try Tensor(random.floats(outputs), shape: [outputs])
            let dy = try Tensor(random.floats(s.outputShape.reduce(1, *)), shape: s.outputShape)
            let label = "winograd input \(input) weight \(weight) padding \(padding)"
            assertClose(try conv2d(x.to(gpu), weight: w.to(gpu), bias: b.to(gpu), geometry: geometry).toArray(),
                        try conv2d(x, weight: w, bias: b, geometry: geometry).toArray(), atol: 1e-6 * Float(s.patchSize), "\(label) forward")
            assertClose(try conv2dBackwardData(dy.to(gpu), weight: w.to(gpu), inputShape: input, geometry: geometry).toArray(),
                        try conv2dBackwardData(dy, weight: w, inputShape: input, geometry: geometry).toArray(),
                        atol: 1e-6 * Float(outputs * 9), "\(label) backward data")
        }
        // Strides, dilations and groups are not Winograd's: a forced Winograd leaves them to another algorithm.
        let strided = try Conv2DShape(input: [1, 2, 7, 7], weight: [3, 2, 3, 3], geometry: Conv2DGeometry(kernelSize: 3, stride: 2))
        XCTAssertFalse(backend.applicableConvolutionAlgorithms(for: strided, pass: .forward).contains(.winograd))
        let x = try Tensor(random.floats(98), shape: [1, 2, 7, 7])
        let w = try Tensor(random.floats(54), shape: [3, 2, 3, 3])
        assertClose(try conv2d(x.to(gpu), weight: w.to(gpu), geometry: strided.geometry).toArray(),
                    try conv2d(x, weight: w, geometry: strided.geometry).toArray(), atol: 1e-6 * 18, "forced Winograd on a strided shape")
    }

    func testTheTunerChoosesAnApplicableAlgorithmAndRemembersIt() throws {
        let (gpu, backend) = try openCLBackend()
        backend.forcedConvolutionAlgorithm = nil
        try withFreshTuner(backend) { directory in
            XCTAssertTrue(backend.convolutionChoices.isEmpty)

            let geometry = try Conv2DGeometry(kernelSize: 3, padding: 1)
            let s = try Conv2DShape(input: [2, 4, 9, 7], weight: [6, 4, 3, 3], geometry: geometry)
            let x = try Tensor(random.floats(s.inputShape.reduce(1, *)), shape: s.inputShape)
            let w = try Tensor(random.floats(s.weightShape.reduce(1, *)), shape: s.weightShape)
            let dy = try Tensor(random.floats(s.outputShape.reduce(1, *)), shape: s.outputShape)
            let earlier = try Tensor(random.floats(s.weightShape.reduce(1, *)), shape: s.weightShape)
            // The tuner's trial runs must not disturb the result, nor what an accumulating pass adds to.
            assertClose(try conv2d(x.to(gpu), weight: w.to(gpu), geometry: geometry).toArray(),
                        try conv2d(x, weight: w, geometry: geometry).toArray(), atol: 1e-6 * 36, "tuned forward")
            let dw = try earlier.to(gpu)
            try backend.conv2dBackwardFilter(x.to(gpu), dy.to(gpu), shape: s, into: dw, accumulate: true)
            assertClose(try dw.toArray(), try (conv2dBackwardFilter(x, dy, weightShape: s.weightShape, geometry: geometry) + earlier).toArray(),
                        atol: 1e-6 * 126, "tuned accumulating backward filter")

            let choices = backend.convolutionChoices
            XCTAssertEqual(choices.map(\.pass), [.forward, .backwardFilter])
            for choice in choices {
                let applicable = backend.applicableConvolutionAlgorithms(for: s, pass: choice.pass)
                XCTAssertEqual(choice.shape, s)
                XCTAssertTrue(applicable.contains(choice.algorithm), "\(choice.algorithm) for \(choice.pass)")
                XCTAssertEqual(Set(choice.seconds.keys), Set(applicable), "every applicable algorithm is timed")
                XCTAssertEqual(choice.seconds.min { $0.value < $1.value }?.value, choice.seconds[choice.algorithm], "the fastest is kept")
            }

            // The file is there, and a fresh tuner state for the same device reads the choices back.
            let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            XCTAssertEqual(files.filter { $0.hasPrefix("conv-algorithms-") }.count, 1, "\(files)")
            XCTAssertFalse(files.contains { $0.hasSuffix(".tmp") }, "\(files)")
            let fresh = ConvolutionTuner(device: backend.context.device.info, directory: directory, environment: [:])
            XCTAssertEqual(fresh.choices.map(\.pass), choices.map(\.pass))
            XCTAssertEqual(fresh.choices.map(\.algorithm), choices.map(\.algorithm))
            XCTAssertEqual(fresh.choices.map(\.shape), choices.map(\.shape))
            XCTAssertEqual(fresh.choices.first?.seconds.count, choices.first?.seconds.count)
            backend.convolutionCacheDirectory = directory  // the backend's own state, reloaded from disk
            XCTAssertEqual(backend.convolutionChoices.map(\.algorithm), choices.map(\.algorithm))
            XCTAssertEqual(fresh.choice(for: ConvolutionTuner.key(.forward, s))?.algorithm, choices[0].algorithm)
        }
    }

    func testTheEnvironmentForcesAnAlgorithmAndSwitchesTuning() throws {
        let (_, backend) = try openCLBackend()
        let info = backend.context.device.info
        let forced = ConvolutionTuner(device: info, directory: nil, environment: ["KILN_CONV_ALGORITHM": "implicitGEMM", "KILN_CONV_TUNE": "0"])
        XCTAssertEqual(forced.forced, .implicitGEMM)
        XCTAssertFalse(forced.enabled)
        let on = ConvolutionTuner(device: info, directory: nil, environment: ["KILN_CONV_TUNE": "1", "KILN_CONV_ALGORITHM": "auto"])
        XCTAssertNil(on.forced)
        XCTAssertTrue(on.enabled)
        XCTAssertEqual(ConvolutionTuner(device: info, directory: nil, environment: [:]).enabled, info.type != .cpu)
    }

    /// The heuristic's picks on shapes whose answer the ranks in ConvolutionAlgorithms.swift fix: the direct
    /// and pointwise paths where they apply, Winograd from 32 channels, and on a CPU driver the implicit GEMM
    /// for short patches forward and many output channels in the filter gradient, im2col + GEMM otherwise.
    func testTheHeuristicFollowsItsRanks() throws {
        let (_, backend) = try openCLBackend()
        let isCPU = backend.context.device.info.type == .cpu
        func pick(_ input: [Int], _ weight: [Int], _ geometry: Conv2DGeometry, _ pass: ConvolutionPass) throws -> ConvolutionAlgorithm {
            backend.defaultConvolutionAlgorithm(for: try Conv2DShape(input: input, weight: weight, geometry: geometry), pass: pass)
        }
        let depthwise = try Conv2DGeometry(kernelSize: 3, padding: 1, groups: 8)
        for pass in ConvolutionPass.allCases {
            XCTAssertEqual(try pick([2, 8, 9, 9], [8, 1, 3, 3], depthwise, pass), .depthwiseDirect, "depthwise \(pass)")
            XCTAssertEqual(try pick([2, 8, 9, 9], [16, 8, 1, 1], try Conv2DGeometry(kernelSize: 1), pass), .pointwiseGEMM, "1x1 \(pass)")
        }
        let same3x3 = try Conv2DGeometry(kernelSize: 3, padding: 1)
        XCTAssertEqual(try pick([2, 64, 8, 8], [64, 64, 3, 3], same3x3, .forward), .winograd)
        XCTAssertEqual(try pick([2, 64, 8, 8], [64, 64, 3, 3], same3x3, .backwardData), .winograd)
        XCTAssertEqual(try pick([2, 64, 8, 8], [64, 64, 3, 3], same3x3, .backwardFilter), .implicitGEMM)
        // Below 32 channels Winograd's transforms cost more than they save; up to 16 the direct kernels win.
        XCTAssertEqual(try pick([2, 16, 8, 8], [16, 16, 3, 3], same3x3, .forward), .direct)
        XCTAssertEqual(try pick([2, 24, 8, 8], [16, 24, 3, 3], same3x3, .forward), isCPU ? .im2colGEMM : .implicitGEMM)
        let lenetConv2 = try Conv2DGeometry(kernelSize: 5)
        for pass in ConvolutionPass.allCases {
            XCTAssertEqual(try pick([4, 6, 14, 14], [16, 6, 5, 5], lenetConv2, pass), .direct, "LeNet's conv2, \(pass)")
        }
        XCTAssertEqual(try pick([4, 24, 14, 14], [16, 24, 5, 5], lenetConv2, .backwardData), isCPU ? .im2colGEMM : .implicitGEMM)
        XCTAssertEqual(try pick([4, 24, 14, 14], [16, 24, 5, 5], lenetConv2, .backwardFilter), .implicitGEMM)
        XCTAssertEqual(try pick([4, 24, 14, 14], [8, 24, 5, 5], lenetConv2, .backwardFilter), isCPU ? .im2colGEMM : .implicitGEMM)
        let wide = try Conv2DGeometry(kernelSize: 5, stride: 2, padding: 2)
        XCTAssertEqual(try pick([2, 64, 16, 16], [64, 64, 5, 5], wide, .forward), isCPU ? .im2colGEMM : .implicitGEMM)
    }

    /// Where each algorithm applies, stated independently of the descriptors.
    func testEachAlgorithmAppliesWhereItShould() throws {
        let (_, backend) = try openCLBackend()
        func applicable(_ input: [Int], _ weight: [Int], _ geometry: Conv2DGeometry, _ pass: ConvolutionPass) throws -> Set<ConvolutionAlgorithm> {
            Set(backend.applicableConvolutionAlgorithms(for: try Conv2DShape(input: input, weight: weight, geometry: geometry), pass: pass))
        }
        for pass in ConvolutionPass.allCases {
            XCTAssertEqual(try applicable([1, 4, 5, 5], [6, 4, 1, 1], try Conv2DGeometry(kernelSize: 1), pass), [.pointwiseGEMM, .implicitGEMM])
            XCTAssertEqual(try applicable([1, 4, 5, 5], [4, 1, 3, 3], try Conv2DGeometry(kernelSize: 3, groups: 4), pass),
                           [.depthwiseDirect, .implicitGEMM])
            XCTAssertEqual(try applicable([1, 4, 5, 5], [6, 4, 3, 3], try Conv2DGeometry(kernelSize: 3, padding: 1), pass),
                           pass == .backwardFilter ? [.im2colGEMM, .implicitGEMM, .direct] : [.im2colGEMM, .implicitGEMM, .winograd, .direct])
            for geometry in [try Conv2DGeometry(kernelSize: 3, stride: 2), try Conv2DGeometry(kernelSize: 3, dilation: 2),
                             try Conv2DGeometry(kernelSize: (3, 1))] {
                XCTAssertEqual(try applicable([1, 4, 9, 9], [6, 4, geometry.kernelHeight, geometry.kernelWidth], geometry, pass),
                               [.im2colGEMM, .implicitGEMM, .direct], "\(geometry)")
            }
            // The direct kernels stop at 16 input channels per group and at 7x7 windows.
            XCTAssertEqual(try applicable([1, 17, 9, 9], [6, 17, 3, 3], try Conv2DGeometry(kernelSize: 3, stride: 2), pass),
                           [.im2colGEMM, .implicitGEMM])
            XCTAssertEqual(try applicable([1, 3, 19, 19], [6, 3, 9, 9], try Conv2DGeometry(kernelSize: 9, stride: 2), pass),
                           [.im2colGEMM, .implicitGEMM])
        }
    }
}
