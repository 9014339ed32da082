import KilnCL

/// Convolution on an OpenCL device. This file hands each pass to an algorithm (ConvolutionAlgorithms.swift
/// describes them; ConvolutionTuner.swift picks one per shape: by force, by measurement or by heuristic) and
/// holds the im2col + GEMM, pointwise and depthwise algorithms. The implicit GEMM (conv_gemm.cl) and
/// Winograd (winograd.cl) live in their own files.
///
/// im2col + GEMM works over a chunk of the batch at once: im2col writes the patches of B images as B
/// matrices [K, P], and one strided-batched CLBlast GEMM per group multiplies all of them (the weight
/// matrix is shared: stride 0), writing straight into NCHW. A pointwise convolution skips im2col (its input
/// already is the patch matrix). Workspaces come from the caching allocator.
extension OpenCLBackend: ConvolutionBackend {
    /// Upper bound on the im2col workspace, in elements (64 MiB): the batch is processed in chunks below it.
    static let convolutionWorkspaceElements = 16 << 20

    public func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, relu: Bool, into y: Tensor) throws {
        let call = ConvolutionCall(pass: .forward, shape: s, first: x, second: weight, bias: bias, accumulate: false)
        let algorithm = try convolutionAlgorithm(for: call)
        if relu, algorithm == .direct {
            try directConvolution(call, into: y, relu: true)
            return
        }
        try runConvolution(algorithm, call, into: y)
        if relu { try unary(.relu, y, into: y) }
    }

    public func conv2dForwardMaxPooled(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, relu: Bool,
                                       into y: Tensor) throws {
        let call = ConvolutionCall(pass: .forward, shape: s, first: x, second: weight, bias: bias, accumulate: false)
        if try convolutionAlgorithm(for: call) == .direct {
            try directConvolutionMaxPooled(call, relu: relu, into: y)
        } else {
            try convolveThenMaxPool(x, weight: weight, bias: bias, shape: s, relu: relu, into: y)
        }
    }

    public func conv2dBackwardData(_ dy: Tensor, weight: Tensor, shape s: Conv2DShape, into dx: Tensor) throws {
        let call = ConvolutionCall(pass: .backwardData, shape: s, first: dy, second: weight, bias: nil, accumulate: false)
        try runConvolution(try convolutionAlgorithm(for: call), call, into: dx)
    }

    public func conv2dBackwardFilter(_ x: Tensor, _ dy: Tensor, shape s: Conv2DShape, into dw: Tensor, accumulate: Bool) throws {
        let call = ConvolutionCall(pass: .backwardFilter, shape: s, first: x, second: dy, bias: nil, accumulate: accumulate)
        try runConvolution(try convolutionAlgorithm(for: call), call, into: dw)
    }

    /// im2col + GEMM (and the pointwise GEMM, which skips im2col), each pass.
    func im2colGEMM(_ call: ConvolutionCall, into output: Tensor) throws {
        try call.run(into: output, forward: im2colForward, backwardData: im2colBackwardData, backwardFilter: im2colBackwardFilter)
    }

    // MARK: Depthwise

    /// The direct depthwise kernels, each pass.
    func depthwise(_ call: ConvolutionCall, into output: Tensor) throws {
        let s = call.shape
        switch call.pass {
        case .forward:
            try convKernels.depthwiseForward(items: output.count, x: call.first, weight: call.second, y: output,
                                             depthwiseShape: DepthwiseShape(s), convWindow: ConvWindow(s))
            if let bias = call.bias {
                try binaryPerChannel(.add, output, bias, channels: s.outputChannels, inner: s.outputPixels, into: output)
            }
        case .backwardData:
            try convKernels.depthwiseBackwardData(items: output.count, dy: call.first, weight: call.second, dx: output,
                                                  depthwiseShape: DepthwiseShape(s), convWindow: ConvWindow(s))
        case .backwardFilter:
            try convKernels.depthwiseBackwardFilter(groups: output.count, x: call.first, dy: call.second, dweight: output,
                                                    accumulate: call.accumulate ? 1 : 0, depthwiseShape: DepthwiseShape(s),
                                                    convWindow: ConvWindow(s))
        }
    }

    // MARK: im2col + GEMM

    private func im2colForward(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ s: Conv2DShape, _ y: Tensor) throws {
        try forEachChunk(of: s) { first, count, workspace in
            for g in 0..<s.geometry.groups {
                let cols = try patches(x, images: first, count: count, group: g, shape: s, workspace: workspace)
                try context.sgemmStridedBatched(
                    m: s.groupOutputChannels, n: s.outputPixels, k: s.patchSize, batch: count,
                    a: CLMatrix(weight.clBuffer, offset: weight.offset + g * s.groupOutputChannels * s.patchSize,
                                leadingDimension: s.patchSize),
                    b: cols,
                    c: CLMatrix(y.clBuffer, offset: y.offset + (first * s.outputChannels + g * s.groupOutputChannels) * s.outputPixels,
                                leadingDimension: s.outputPixels, batchStride: s.outputChannels * s.outputPixels))
            }
        }
        if let bias {
            try binaryPerChannel(.add, y, bias, channels: s.outputChannels, inner: s.outputPixels, into: y)
        }
    }

    private func im2colBackwardData(_ dy: Tensor, _ weight: Tensor, _ s: Conv2DShape, _ dx: Tensor) throws {
        try forEachChunk(of: s) { first, count, dcols in
            for g in 0..<s.geometry.groups {
                // A pointwise convolution's patch gradient is the input gradient itself: no col2im.
                let target = s.isPointwise ? inputMatrices(dx, images: first, group: g, shape: s)
                    : CLMatrix(dcols.clBuffer, leadingDimension: s.outputPixels, batchStride: s.patchSize * s.outputPixels)
                try context.sgemmStridedBatched(
                    m: s.patchSize, n: s.outputPixels, k: s.groupOutputChannels, batch: count,
                    a: CLMatrix(weight.clBuffer, offset: weight.offset + g * s.groupOutputChannels * s.patchSize,
                                leadingDimension: s.patchSize, transposed: true),
                    b: CLMatrix(dy.clBuffer, offset: dy.offset + (first * s.outputChannels + g * s.groupOutputChannels) * s.outputPixels,
                                leadingDimension: s.outputPixels, batchStride: s.outputChannels * s.outputPixels),
                    c: target)
                if s.isPointwise { continue }
                try convKernels.col2im(items: count * s.groupInputChannels * s.inputHeight * s.inputWidth, cols: dcols,
                                       dx: images(dx, from: first, shape: s), batch: count,
                                       im2colShape: Im2colShape(s, group: g), convWindow: ConvWindow(s))
            }
        }
    }

    private func im2colBackwardFilter(_ x: Tensor, _ dy: Tensor, _ s: Conv2DShape, _ dw: Tensor, _ accumulate: Bool) throws {
        if !accumulate { try fill(dw, value: 0) }
        let filters = s.groupOutputChannels * s.patchSize  // one group's slice of dw: [C_out/g, K]
        try forEachChunk(of: s) { first, count, workspace in
            let partials = try Tensor.empty([count, filters], on: device)
            let sum = try Tensor.empty([filters], on: device)
            for g in 0..<s.geometry.groups {
                var cols = try patches(x, images: first, count: count, group: g, shape: s, workspace: workspace)
                cols.transposed = true
                // partials[b] = dy[b, g] · cols[b]ᵀ, then dw[g] += Σ_b partials[b].
                try context.sgemmStridedBatched(
                    m: s.groupOutputChannels, n: s.patchSize, k: s.outputPixels, batch: count,
                    a: CLMatrix(dy.clBuffer, offset: dy.offset + (first * s.outputChannels + g * s.groupOutputChannels) * s.outputPixels,
                                leadingDimension: s.outputPixels, batchStride: s.outputChannels * s.outputPixels),
                    b: cols,
                    c: CLMatrix(partials.clBuffer, leadingDimension: s.patchSize, batchStride: filters))
                try reduce(.sum, partials, as: ReductionShape(outer: 1, axis: count, inner: filters), into: sum)
                let slice = Tensor(storage: dw.storage, offset: dw.offset + g * filters, shape: [filters])
                try axpby(alpha: 1, sum, beta: 1, slice)
            }
        }
    }

    // MARK: Helpers

    /// Calls `body(first image, image count, workspace)` for chunks of the batch whose im2col matrices fit
    /// the workspace bound; the workspace holds `count` matrices of [K, P].
    private func forEachChunk(of s: Conv2DShape, _ body: (Int, Int, Tensor) throws -> Void) throws {
        let perImage = s.patchSize * s.outputPixels
        let chunk = Swift.max(1, Swift.min(s.batch, Self.convolutionWorkspaceElements / Swift.max(perImage, 1)))
        let workspace = try Tensor.empty([s.isPointwise ? 1 : chunk * perImage], on: device)
        for first in stride(from: 0, to: s.batch, by: chunk) {
            try body(first, Swift.min(chunk, s.batch - first), workspace)
        }
    }

    /// The im2col matrices [K, P] of images first ..< first+count for group g, as a strided-batched GEMM
    /// operand: the input itself for a pointwise convolution, else written into `workspace`.
    private func patches(_ x: Tensor, images first: Int, count: Int, group g: Int, shape s: Conv2DShape,
                         workspace: Tensor) throws -> CLMatrix {
        if s.isPointwise { return inputMatrices(x, images: first, group: g, shape: s) }
        try im2col(x, images: first, count: count, group: g, shape: s, into: workspace)
        return CLMatrix(workspace.clBuffer, leadingDimension: s.outputPixels, batchStride: s.patchSize * s.outputPixels)
    }

    /// An input-shaped tensor's channels of group g, image after image, as [C_in/g, H·W] matrices.
    private func inputMatrices(_ t: Tensor, images first: Int, group g: Int, shape s: Conv2DShape) -> CLMatrix {
        let plane = s.inputHeight * s.inputWidth
        return CLMatrix(t.clBuffer, offset: t.offset + (first * s.inputChannels + g * s.groupInputChannels) * plane,
                        leadingDimension: plane, batchStride: s.inputChannels * plane)
    }

    private func im2col(_ x: Tensor, images first: Int, count: Int, group g: Int, shape s: Conv2DShape, into cols: Tensor) throws {
        try convKernels.im2col(items: count * s.patchSize * s.outputPixels, x: images(x, from: first, shape: s), cols: cols,
                               batch: count, im2colShape: Im2colShape(s, group: g), convWindow: ConvWindow(s))
    }

    /// An input-shaped tensor from image `first` on.
    private func images(_ t: Tensor, from first: Int, shape s: Conv2DShape) -> Tensor {
        let image = s.inputChannels * s.inputHeight * s.inputWidth
        return Tensor(storage: t.storage, offset: t.offset + first * image, shape: [(s.batch - first) * image])
    }
}

extension ConvWindow {
    /// The window and output size of a convolution, as the kernels take them.
    init(_ s: Conv2DShape) {
        let g = s.geometry
        self.init(kh: g.kernelHeight, kw: g.kernelWidth, sh: g.strideHeight, sw: g.strideWidth, padTop: g.padTop,
                  padLeft: g.padLeft, dh: g.dilationHeight, dw: g.dilationWidth, outHeight: s.outputHeight, outWidth: s.outputWidth)
    }
}

extension Im2colShape {
    /// The input channels of group `group`.
    init(_ s: Conv2DShape, group: Int) {
        self.init(channels: s.inputChannels, height: s.inputHeight, width: s.inputWidth, c0: group * s.groupInputChannels,
                  cg: s.groupInputChannels)
    }
}

extension DepthwiseShape {
    init(_ s: Conv2DShape) {
        self.init(batch: s.batch, inChannels: s.inputChannels, height: s.inputHeight, width: s.inputWidth,
                  multiplier: s.outputChannels / s.inputChannels)
    }
}
