import KilnCL

/// Convolution on an OpenCL device. This file dispatches each pass to an algorithm (ConvolutionTuner.swift
/// picks one per shape: by measurement, by force, or by heuristic) and holds the im2col + GEMM, pointwise and
/// depthwise algorithms. The implicit GEMM (conv_gemm.cl) and Winograd (winograd.cl) live in their own files.
///
/// im2col + GEMM works over a chunk of the batch at once: im2col writes the patches of B images as B
/// matrices [K, P], and one strided-batched CLBlast GEMM per group multiplies all of them (the weight
/// matrix is shared: stride 0), writing straight into NCHW. A pointwise convolution skips im2col (its input
/// already is the patch matrix). Workspaces come from the caching allocator.
extension OpenCLBackend: ConvolutionBackend {
    /// Upper bound on the im2col workspace, in elements (64 MiB): the batch is processed in chunks below it.
    static let convolutionWorkspaceElements = 16 << 20

    public func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, into y: Tensor) throws {
        let call = ConvolutionCall(pass: .forward, shape: s, first: x, second: weight, bias: bias, accumulate: false)
        try runConvolution(try convolutionAlgorithm(for: call), call, into: y)
    }

    public func conv2dBackwardData(_ dy: Tensor, weight: Tensor, shape s: Conv2DShape, into dx: Tensor) throws {
        let call = ConvolutionCall(pass: .backwardData, shape: s, first: dy, second: weight, bias: nil, accumulate: false)
        try runConvolution(try convolutionAlgorithm(for: call), call, into: dx)
    }

    public func conv2dBackwardFilter(_ x: Tensor, _ dy: Tensor, shape s: Conv2DShape, into dw: Tensor, accumulate: Bool) throws {
        let call = ConvolutionCall(pass: .backwardFilter, shape: s, first: x, second: dy, bias: nil, accumulate: accumulate)
        try runConvolution(try convolutionAlgorithm(for: call), call, into: dw)
    }

    /// Runs one pass with `algorithm`, which must be applicable to the call's shape and pass.
    func runConvolution(_ algorithm: ConvolutionAlgorithm, _ call: ConvolutionCall, into output: Tensor) throws {
        let s = call.shape
        switch (algorithm, call.pass) {
        case (.im2colGEMM, .forward), (.pointwiseGEMM, .forward):
            try im2colForward(call.first, weight: call.second, bias: call.bias, shape: s, into: output)
        case (.im2colGEMM, .backwardData), (.pointwiseGEMM, .backwardData):
            try im2colBackwardData(call.first, weight: call.second, shape: s, into: output)
        case (.im2colGEMM, .backwardFilter), (.pointwiseGEMM, .backwardFilter):
            try im2colBackwardFilter(call.first, call.second, shape: s, into: output, accumulate: call.accumulate)
        case (.implicitGEMM, .forward):
            try implicitGEMMForward(call.first, weight: call.second, bias: call.bias, shape: s, into: output)
        case (.implicitGEMM, .backwardData):
            try implicitGEMMBackwardData(call.first, weight: call.second, shape: s, into: output)
        case (.implicitGEMM, .backwardFilter):
            try implicitGEMMBackwardFilter(call.first, call.second, shape: s, into: output, accumulate: call.accumulate)
        case (.winograd, .forward):
            try winogradForward(call.first, weight: call.second, bias: call.bias, shape: s, into: output)
        case (.winograd, .backwardData):
            try winogradBackwardData(call.first, weight: call.second, shape: s, into: output)
        case (.depthwiseDirect, .forward):
            try depthwiseForward(call.first, weight: call.second, bias: call.bias, shape: s, into: output)
        case (.depthwiseDirect, .backwardData):
            try launch("depthwise_backward_data", in: "conv.cl", count: output.count,
                       call.first.clArguments + call.second.clArguments + output.clArguments + depthwiseArguments(s))
        case (.depthwiseDirect, .backwardFilter):
            let kernel = try kernel("depthwise_backward_filter", in: "conv.cl")
            try context.launch(kernel, global: [output.count * reduceGroupSize], local: [reduceGroupSize],
                               arguments: call.first.clArguments + call.second.clArguments + output.clArguments
                               + [.uint(call.accumulate ? 1 : 0)] + depthwiseArguments(s))
        case (.winograd, .backwardFilter):
            throw KilnError.invalidArgument("conv2d: Winograd has no backward-filter pass")
        }
    }

    // MARK: Depthwise

    private func depthwiseForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, into y: Tensor) throws {
        try launch("depthwise_forward", in: "conv.cl", count: y.count,
                   x.clArguments + weight.clArguments + y.clArguments + depthwiseArguments(s))
        if let bias {
            try binaryPerChannel(.add, y, bias, channels: s.outputChannels, inner: s.outputPixels, into: y)
        }
    }

    // MARK: im2col + GEMM

    private func im2colForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, into y: Tensor) throws {
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

    private func im2colBackwardData(_ dy: Tensor, weight: Tensor, shape s: Conv2DShape, into dx: Tensor) throws {
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
                let imageOffset = dx.offset + first * s.inputChannels * s.inputHeight * s.inputWidth
                try launch("col2im", in: "conv.cl", count: count * s.groupInputChannels * s.inputHeight * s.inputWidth,
                           [.buffer(dcols.clBuffer), .buffer(dx.clBuffer), .uint(UInt32(imageOffset)), .uint(UInt32(count))]
                           + geometryArguments(s, group: g))
            }
        }
    }

    private func im2colBackwardFilter(_ x: Tensor, _ dy: Tensor, shape s: Conv2DShape, into dw: Tensor, accumulate: Bool) throws {
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
        let imageOffset = x.offset + first * s.inputChannels * s.inputHeight * s.inputWidth
        try launch("im2col", in: "conv.cl", count: count * s.patchSize * s.outputPixels,
                   [.buffer(x.clBuffer), .uint(UInt32(imageOffset)), .buffer(cols.clBuffer), .uint(UInt32(count))]
                   + geometryArguments(s, group: g))
    }

    /// channels, height, width, c0, cg, kh, kw, sh, sw, pad_top, pad_left, dh, dw, out_height, out_width.
    private func geometryArguments(_ s: Conv2DShape, group g: Int) -> [CLKernelArgument] {
        [.uint(UInt32(s.inputChannels)), .uint(UInt32(s.inputHeight)), .uint(UInt32(s.inputWidth)),
         .uint(UInt32(g * s.groupInputChannels)), .uint(UInt32(s.groupInputChannels))] + windowArguments(s)
    }

    /// batch, in_channels, height, width, multiplier, then the window.
    private func depthwiseArguments(_ s: Conv2DShape) -> [CLKernelArgument] {
        [.uint(UInt32(s.batch)), .uint(UInt32(s.inputChannels)), .uint(UInt32(s.inputHeight)), .uint(UInt32(s.inputWidth)),
         .uint(UInt32(s.outputChannels / s.inputChannels))] + windowArguments(s)
    }

    /// kh, kw, sh, sw, pad_top, pad_left, dh, dw, out_height, out_width.
    func windowArguments(_ s: Conv2DShape) -> [CLKernelArgument] {
        let g = s.geometry
        return [.uint(UInt32(g.kernelHeight)), .uint(UInt32(g.kernelWidth)), .uint(UInt32(g.strideHeight)), .uint(UInt32(g.strideWidth)),
                .int(Int32(g.padTop)), .int(Int32(g.padLeft)), .uint(UInt32(g.dilationHeight)), .uint(UInt32(g.dilationWidth)),
                .uint(UInt32(s.outputHeight)), .uint(UInt32(s.outputWidth))]
    }
}
