import KilnCL

/// A way the OpenCL backend computes a convolution pass. Each has one descriptor (`descriptor`): where it
/// applies, how it runs and how the heuristic ranks it; the tuner, the heuristic, `KILN_CONV_ALGORITHM`,
/// `kiln bench` and the tests all go through `ConvolutionAlgorithm.descriptors`.
public enum ConvolutionAlgorithm: String, CaseIterable, Sendable {
    /// im2col into a workspace, then one CLBlast strided-batched GEMM per group (col2im for backward data).
    case im2colGEMM
    /// Tiled GEMM that gathers the patches as it goes (Kernels/conv_gemm.cl): no workspace, bias fused.
    case implicitGEMM
    /// Winograd F(2x2, 3x3) (Kernels/winograd.cl): 3x3, stride 1, dilation 1, one group; forward and
    /// backward data.
    case winograd
    /// A 1x1, stride-1, unpadded convolution as a plain CLBlast GEMM on the input itself.
    case pointwiseGEMM
    /// Direct kernels for depthwise convolutions (one input channel per output channel).
    case depthwiseDirect
    /// Direct kernels for few channels per group (Kernels/conv_direct.cl), the layer's sizes compiled in.
    case direct
}

/// One of the three passes of a convolution.
public enum ConvolutionPass: String, CaseIterable, Sendable {
    /// y = x ⋆ w (+ bias).
    case forward
    /// dx from dy and w.
    case backwardData
    /// dw from x and dy.
    case backwardFilter
}

/// What the backend knows of one algorithm, in the manner of CLBlast's routine descriptions.
struct ConvolutionAlgorithmDescriptor: Sendable {
    var algorithm: ConvolutionAlgorithm
    /// Whether the algorithm computes `pass` of `shape` on a device with these properties.
    var applies: @Sendable (_ shape: Conv2DShape, _ pass: ConvolutionPass, _ device: CLDeviceInfo) -> Bool
    /// The heuristic's order when tuning is off: the applicable algorithm with the lowest rank runs. On
    /// CPU drivers (POCL) the ranks follow measurements on 2 cores; elsewhere they follow the usual GPU order.
    var rank: @Sendable (_ shape: Conv2DShape, _ pass: ConvolutionPass, _ isCPU: Bool) -> Double
    /// Computes the pass into `output` (applicable calls only).
    var run: @Sendable (_ backend: OpenCLBackend, _ call: ConvolutionCall, _ output: Tensor) throws -> Void
}

extension ConvolutionAlgorithm {
    /// Every algorithm's descriptor, in declaration order (the order ties are broken in).
    static let descriptors = allCases.map(\.descriptor)

    /// This algorithm's descriptor: the one place that says what it is.
    var descriptor: ConvolutionAlgorithmDescriptor {
        switch self {
        case .depthwiseDirect:
            // A direct loop over a few taps beats any GEMM of one channel.
            return ConvolutionAlgorithmDescriptor(algorithm: self, applies: { shape, _, _ in shape.isDepthwise }, rank: { _, _, _ in 0 },
                                                  run: { backend, call, output in try backend.depthwise(call, into: output) })
        case .direct:
            // Where the reduction is short (a few channels times the window) a GEMM's tiles are mostly
            // padding: on 2 cores the direct kernels run LeNet's layers several times faster. GPUs are left
            // to the tuner, ahead of the implicit GEMM.
            return ConvolutionAlgorithmDescriptor(
                algorithm: self, applies: { shape, _, _ in OpenCLBackend.directConvolutionApplies(to: shape) },
                rank: { _, _, isCPU in isCPU ? 0.5 : 2.5 },
                run: { backend, call, output in try backend.directConvolution(call, into: output) })
        case .pointwiseGEMM:
            // The input already is the patch matrix: one GEMM, no gather.
            return ConvolutionAlgorithmDescriptor(algorithm: self, applies: { shape, _, _ in shape.isPointwise }, rank: { _, _, _ in 1 },
                                                  run: { backend, call, output in try backend.im2colGEMM(call, into: output) })
        case .winograd:
            return ConvolutionAlgorithmDescriptor(
                algorithm: self,
                applies: { shape, pass, _ in pass != .backwardFilter && shape.isWinogradShape },
                // From 32 channels on; below, its transforms cost more than the multiplies they save.
                rank: { shape, _, _ in min(shape.groupInputChannels, shape.groupOutputChannels) >= 32 ? 2 : 10 },
                run: { backend, call, output in try backend.winograd(call, into: output) })
        case .implicitGEMM:
            return ConvolutionAlgorithmDescriptor(
                algorithm: self,
                applies: { _, _, device in ImplicitGEMMTiles.fitting(device) != nil },
                // On GPUs one launch without a workspace wins. On POCL im2col + CLBlast (rank 4) is ahead where
                // its GEMM is large, but a short patch forward (the first layers) or many output channels to
                // reduce the filter gradient into favour the implicit GEMM (measured on 2 cores).
                rank: { shape, pass, isCPU in
                    guard isCPU else { return 3 }
                    switch pass {
                    case .forward: return shape.patchSize <= 160 ? 3 : 5
                    case .backwardData: return 5
                    case .backwardFilter: return shape.groupOutputChannels >= 16 ? 3 : 5
                    }
                },
                run: { backend, call, output in try backend.implicitGEMM(call, into: output) })
        case .im2colGEMM:
            return ConvolutionAlgorithmDescriptor(algorithm: self, applies: { shape, _, _ in !shape.isPointwise && !shape.isDepthwise },
                                                  rank: { _, _, _ in 4 },
                                                  run: { backend, call, output in try backend.im2colGEMM(call, into: output) })
        }
    }

    /// The algorithm named `name` (case-insensitive), as `KILN_CONV_ALGORITHM` and benchmark records spell it.
    init?(named name: String) {
        guard let match = Self.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else { return nil }
        self = match
    }
}

extension OpenCLBackend {
    /// Runs one pass with `algorithm`, which must be applicable to the call's shape and pass.
    func runConvolution(_ algorithm: ConvolutionAlgorithm, _ call: ConvolutionCall, into output: Tensor) throws {
        try algorithm.descriptor.run(self, call, output)
    }

    /// The algorithms that can compute `pass` of a convolution of shape `shape` on this device.
    public func applicableConvolutionAlgorithms(for shape: Conv2DShape, pass: ConvolutionPass) -> [ConvolutionAlgorithm] {
        ConvolutionAlgorithm.descriptors.filter { $0.applies(shape, pass, context.device.info) }.map(\.algorithm)
    }

    /// The algorithm the heuristic picks when tuning is off: the applicable one of lowest rank.
    public func defaultConvolutionAlgorithm(for shape: Conv2DShape, pass: ConvolutionPass) -> ConvolutionAlgorithm {
        let isCPU = context.device.info.type == .cpu
        let applicable = ConvolutionAlgorithm.descriptors.filter { $0.applies(shape, pass, context.device.info) }
        // Of equal ranks, the earlier descriptor.
        return applicable.enumerated().min { a, b in
            let (ra, rb) = (a.element.rank(shape, pass, isCPU), b.element.rank(shape, pass, isCPU))
            return ra < rb || (ra == rb && a.offset < b.offset)
        }?.element.algorithm ?? .im2colGEMM
    }
}
