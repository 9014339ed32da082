import KilnCL

/// Convolution on the host: im2col + OpenBLAS GEMM, and Winograd (HostWinograd.swift) for the forward and
/// data-gradient passes of 3x3 stride-1 layers with enough channels. The batch is split across the backend's
/// threads, and each thread multiplies a chunk of its images at once, so that OpenBLAS gets a few large
/// products instead of many small ones.
///
/// For group g and a chunk of B images, the patches form `cols` [K, B·P] with K = C_in/groups·kh·kw rows
/// (one per weight of a filter) and B·P columns (one per output pixel of each image). Outputs and output
/// gradients are gathered into the same column order, `[C_out/groups, B·P]`:
///   forward          y[g]  = w[g] · cols                [C_out/g, K] x [K, B·P]
///   backward data    dcols = w[g]ᵀ · dy[g], col2im      [K, C_out/g] x [C_out/g, B·P]
///   backward filter  dw[g] += dy[g] · colsᵀ             [C_out/g, B·P] x [B·P, K]
extension HostBackend: ConvolutionBackend {
    /// Upper bound on the im2col workspace, in elements (64 MiB).
    static let convolutionWorkspaceElements = 16 << 20
    /// Output pixels per image from which each image gets a GEMM of its own.
    static let directPixels = 256

    public func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, relu: Bool, into output: Tensor) throws {
        if Self.winogradApplies(to: s) {
            try BLAS.load()
            return winogradForward(x, weight: weight, bias: bias, shape: s, relu: relu, into: output)
        }
        try convolutionForward(x, weight: weight, bias: bias, shape: s, into: output)
        if relu { try unary(.relu, output, into: output) }
    }

    public func conv2dForwardMaxPooled(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, relu: Bool,
                                       into y: Tensor) throws {
        try convolveThenMaxPool(x, weight: weight, bias: bias, shape: s, relu: relu, into: y)
    }

    private func convolutionForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, into output: Tensor) throws {
        try BLAS.load()
        let (w, y) = (weight.hostBuffer, output.hostBuffer)
        if s.isPointwise {
            // y[n, g] = w[g] · x[n, g]: each image's input already is its patch matrix.
            forEachPointwiseBlock(s) { inputOffset, outputOffset, weightOffset in
                gemm(transposeA: false, transposeB: false, m: s.groupOutputChannels, n: s.outputPixels, k: s.patchSize,
                     a: w.baseAddress! + weightOffset, lda: s.patchSize, b: x.hostBuffer.baseAddress! + inputOffset, ldb: s.outputPixels,
                     beta: 0, c: y.baseAddress! + outputOffset, ldc: s.outputPixels)
            }
        } else {
            let biasValues = bias?.hostBuffer
            forEachChunk(s) { first, count, cols, columns, _ in
                let width = count * s.outputPixels
                for g in 0..<s.geometry.groups {
                    im2col(x.hostBuffer, images: first..<(first + count), group: g, shape: s, into: cols)
                    // A single image's block of y already is in GEMM column order: multiply straight into it.
                    let slab = y.baseAddress! + (first * s.outputChannels + g * s.groupOutputChannels) * s.outputPixels
                    gemm(transposeA: false, transposeB: false, m: s.groupOutputChannels, n: width, k: s.patchSize,
                         a: w.baseAddress! + g * s.groupOutputChannels * s.patchSize, lda: s.patchSize,
                         b: cols.baseAddress!, ldb: width, beta: 0, c: count == 1 ? slab : columns.baseAddress!, ldc: width)
                    // columns [C_out/g, B·P] → y [n, g·C_out/g + o, p], adding the bias on the way
                    for o in 0..<s.groupOutputChannels {
                        let value = biasValues?[g * s.groupOutputChannels + o] ?? 0
                        for b in 0..<count {
                            let target = y.baseAddress! + ((first + b) * s.outputChannels + g * s.groupOutputChannels + o) * s.outputPixels
                            let source = count == 1 ? target : columns.baseAddress! + o * width + b * s.outputPixels
                            for p in 0..<s.outputPixels { target[p] = source[p] + value }
                        }
                    }
                }
            }
            return
        }
        if let bias {
            try binaryPerChannel(.add, output, bias, channels: s.outputChannels, inner: s.outputPixels, into: output)
        }
    }

    public func conv2dBackwardData(_ dy: Tensor, weight: Tensor, shape s: Conv2DShape, into dx: Tensor) throws {
        try BLAS.load()
        if Self.winogradApplies(to: s) { return winogradBackwardData(dy, weight: weight, shape: s, into: dx) }
        let (w, dxBuffer) = (weight.hostBuffer, dx.hostBuffer)
        if s.isPointwise {
            // dx[n, g] = w[g]ᵀ · dy[n, g]
            forEachPointwiseBlock(s) { inputOffset, outputOffset, weightOffset in
                gemm(transposeA: true, transposeB: false, m: s.patchSize, n: s.outputPixels, k: s.groupOutputChannels,
                     a: w.baseAddress! + weightOffset, lda: s.patchSize, b: dy.hostBuffer.baseAddress! + outputOffset, ldb: s.outputPixels,
                     beta: 0, c: dxBuffer.baseAddress! + inputOffset, ldc: s.outputPixels)
            }
            return
        }
        forEachChunk(s) { first, count, dcols, columns, _ in
            let imageSize = s.inputChannels * s.inputHeight * s.inputWidth
            (dxBuffer.baseAddress! + first * imageSize).update(repeating: 0, count: count * imageSize)
            let width = count * s.outputPixels
            for g in 0..<s.geometry.groups {
                let gradient = outputColumns(dy.hostBuffer, images: first..<(first + count), group: g, shape: s, workspace: columns)
                gemm(transposeA: true, transposeB: false, m: s.patchSize, n: width, k: s.groupOutputChannels,
                     a: w.baseAddress! + g * s.groupOutputChannels * s.patchSize, lda: s.patchSize,
                     b: gradient, ldb: width, beta: 0, c: dcols.baseAddress!, ldc: width)
                col2imAdding(dcols, images: first..<(first + count), group: g, shape: s, into: dxBuffer)
            }
        }
    }

    public func conv2dBackwardFilter(_ x: Tensor, _ dy: Tensor, shape s: Conv2DShape, into dw: Tensor, accumulate: Bool) throws {
        try BLAS.load()
        let dw = dw.hostBuffer
        // Each thread sums its images' contributions into its own partial gradient, then adds it to dw.
        let total = Locked(())
        if !accumulate { dw.update(repeating: 0) }
        forEachChunk(s) { first, count, cols, columns, partial in
            let width = count * s.outputPixels
            if s.isPointwise {
                // partial[g] += dy[n, g] · x[n, g]ᵀ, image by image
                for n in first..<(first + count) {
                    for g in 0..<s.geometry.groups {
                        let (inputOffset, outputOffset, weightOffset) = pointwiseOffsets(s, image: n, group: g)
                        gemm(transposeA: false, transposeB: true, m: s.groupOutputChannels, n: s.patchSize, k: s.outputPixels,
                             a: dy.hostBuffer.baseAddress! + outputOffset, lda: s.outputPixels, b: x.hostBuffer.baseAddress! + inputOffset,
                             ldb: s.outputPixels, beta: 1, c: partial.baseAddress! + weightOffset, ldc: s.patchSize)
                    }
                }
                return
            }
            for g in 0..<s.geometry.groups {
                im2col(x.hostBuffer, images: first..<(first + count), group: g, shape: s, into: cols)
                let gradient = outputColumns(dy.hostBuffer, images: first..<(first + count), group: g, shape: s, workspace: columns)
                gemm(transposeA: false, transposeB: true, m: s.groupOutputChannels, n: s.patchSize, k: width,
                     a: gradient, lda: width, b: cols.baseAddress!, ldb: width,
                     beta: 1, c: partial.baseAddress! + g * s.groupOutputChannels * s.patchSize, ldc: s.patchSize)
            }
        } finish: { partial in
            total.withLock { _ in for i in dw.indices { dw[i] += partial[i] } }
        }
    }

    // MARK: Helpers

    /// Where x[n, g], y[n, g] and w[g] start for image n and group g of a pointwise convolution.
    private func pointwiseOffsets(_ s: Conv2DShape, image n: Int, group g: Int) -> (input: Int, output: Int, weight: Int) {
        ((n * s.inputChannels + g * s.groupInputChannels) * s.outputPixels,
         (n * s.outputChannels + g * s.groupOutputChannels) * s.outputPixels,
         g * s.groupOutputChannels * s.patchSize)
    }

    /// Calls `body(input offset, output offset, weight offset)` for every (image, group) of a pointwise
    /// convolution, the images split across threads.
    private func forEachPointwiseBlock(_ s: Conv2DShape, _ body: (Int, Int, Int) -> Void) {
        parallelRanges(s.batch, grain: 1) { images in
            for n in images {
                for g in 0..<s.geometry.groups {
                    let offsets = pointwiseOffsets(s, image: n, group: g)
                    body(offsets.input, offsets.output, offsets.weight)
                }
            }
        }
    }

    /// Splits the batch across threads; each thread walks its images in chunks that keep its workspace under
    /// the bound, calling `body(first image, image count, cols workspace [K, B·P], columns workspace
    /// [C_out/g, B·P], partial)`, where `partial` is the thread's zeroed weight-sized accumulator, handed
    /// to `finish` once the thread is done (backward filter only).
    private func forEachChunk(_ s: Conv2DShape,
                              _ body: (Int, Int, UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>,
                                       UnsafeMutableBufferPointer<Float>) -> Void,
                              finish: ((UnsafeMutableBufferPointer<Float>) -> Void)? = nil) {
        let perImage = (s.patchSize + s.groupOutputChannels) * s.outputPixels
        // An image whose output plane is wide enough makes a good GEMM by itself, without gathering.
        let limit = s.outputPixels >= Self.directPixels ? 1 : Swift.max(1, Self.convolutionWorkspaceElements / Swift.max(perImage, 1))
        let weights = s.outputChannels * s.patchSize
        parallelRanges(s.batch, grain: 1) { images in
            let chunk = Swift.min(images.count, limit)
            let workspace = s.isPointwise ? 0 : chunk * perImage
            let block = HostMemoryCache.shared.take(count: workspace + (finish == nil ? 0 : weights))
            defer { HostMemoryCache.shared.give(block, count: workspace + (finish == nil ? 0 : weights)) }
            let cols = UnsafeMutableBufferPointer(start: block, count: chunk * s.patchSize * s.outputPixels)
            let columns = UnsafeMutableBufferPointer(start: block + cols.count, count: chunk * s.groupOutputChannels * s.outputPixels)
            let partial = UnsafeMutableBufferPointer(start: block + workspace, count: finish == nil ? 0 : weights)
            partial.update(repeating: 0)
            for first in stride(from: images.lowerBound, to: images.upperBound, by: chunk) {
                body(first, Swift.min(chunk, images.upperBound - first), cols, columns, partial)
            }
            finish?(partial)
        }
    }

    /// The output columns `ow` whose input column `ow·s − pad + offset` lies in 0..<size.
    private func validRange(size: Int, outputs: Int, stride: Int, pad: Int, offset: Int) -> Range<Int> {
        let last = size - 1 + pad - offset  // ow·stride must not exceed this
        guard last >= 0 else { return 0..<0 }
        let low = Swift.max(0, (pad - offset + stride - 1) / stride)
        let high = Swift.min(outputs, last / stride + 1)
        return low < high ? low..<high : 0..<0
    }

    /// Walks the rows of a group's im2col matrix: for every (input channel c, kernel tap i, j, image, output
    /// row oh) it passes the OW patch entries `cols[(c·kh + i)·kw + j, b·P + oh·OW ..< +OW]`, the input row
    /// shifted so that entry `ow` reads `input[ow·sw]` (nil where the kernel row falls in the padding), and
    /// the `ow` whose input column is inside the image.
    private func forEachPatchRow(_ cols: UnsafeMutablePointer<Float>, _ images: UnsafeMutablePointer<Float>, range: Range<Int>,
                                 group g: Int, shape s: Conv2DShape,
                                 _ body: (_ patch: UnsafeMutablePointer<Float>, _ input: UnsafeMutablePointer<Float>?, _ columns: Range<Int>) -> Void) {
        let geometry = s.geometry
        let width = range.count * s.outputPixels
        for c in 0..<s.groupInputChannels {
            for i in 0..<geometry.kernelHeight {
                for j in 0..<geometry.kernelWidth {
                    let columns = validRange(size: s.inputWidth, outputs: s.outputWidth, stride: geometry.strideWidth,
                                             pad: geometry.padLeft, offset: j * geometry.dilationWidth)
                    let row = cols + ((c * geometry.kernelHeight + i) * geometry.kernelWidth + j) * width
                    for (b, n) in range.enumerated() {
                        let channel = images + (n * s.inputChannels + g * s.groupInputChannels + c) * s.inputHeight * s.inputWidth
                        for oh in 0..<s.outputHeight {
                            let ih = oh * geometry.strideHeight - geometry.padTop + i * geometry.dilationHeight
                            let inside = ih >= 0 && ih < s.inputHeight
                            body(row + b * s.outputPixels + oh * s.outputWidth,
                                 inside ? channel + ih * s.inputWidth - geometry.padLeft + j * geometry.dilationWidth : nil,
                                 inside ? columns : 0..<0)
                        }
                    }
                }
            }
        }
    }

    /// cols[(c·kh + i)·kw + j, b·P + oh·OW + ow] = x[n, g·C_in/g + c, oh·sh − pad_top + i·dh, ow·sw − pad_left + j·dw],
    /// zero where that falls in the padding.
    private func im2col(_ x: UnsafeMutableBufferPointer<Float>, images: Range<Int>, group g: Int, shape s: Conv2DShape,
                        into cols: UnsafeMutableBufferPointer<Float>) {
        let (stride, outputWidth) = (s.geometry.strideWidth, s.outputWidth)
        forEachPatchRow(cols.baseAddress!, x.baseAddress!, range: images, group: g, shape: s) { patch, input, columns in
            patch.update(repeating: 0, count: columns.lowerBound)
            if let input {
                if stride == 1 {
                    (patch + columns.lowerBound).update(from: input + columns.lowerBound, count: columns.count)
                } else {
                    for ow in columns { patch[ow] = input[ow * stride] }
                }
            }
            (patch + columns.upperBound).update(repeating: 0, count: outputWidth - columns.upperBound)
        }
    }

    /// The adjoint of im2col: adds every patch entry back onto the input pixel it was read from.
    private func col2imAdding(_ cols: UnsafeMutableBufferPointer<Float>, images: Range<Int>, group g: Int, shape s: Conv2DShape,
                              into dx: UnsafeMutableBufferPointer<Float>) {
        let stride = s.geometry.strideWidth
        forEachPatchRow(cols.baseAddress!, dx.baseAddress!, range: images, group: g, shape: s) { patch, input, columns in
            guard let input else { return }
            if stride == 1 {
                for ow in columns { input[ow] += patch[ow] }
            } else {
                for ow in columns { input[ow * stride] += patch[ow] }
            }
        }
    }

    /// A group's block of an output-shaped tensor in GEMM column order [C_out/g, B·P]: for one image, the
    /// tensor itself; for several, gathered into `workspace`.
    private func outputColumns(_ t: UnsafeMutableBufferPointer<Float>, images: Range<Int>, group g: Int, shape s: Conv2DShape,
                               workspace: UnsafeMutableBufferPointer<Float>) -> UnsafeMutablePointer<Float> {
        if images.count == 1 {
            return t.baseAddress! + (images.lowerBound * s.outputChannels + g * s.groupOutputChannels) * s.outputPixels
        }
        let columns = workspace
        let width = images.count * s.outputPixels
        for o in 0..<s.groupOutputChannels {
            for (b, n) in images.enumerated() {
                let source = (n * s.outputChannels + g * s.groupOutputChannels + o) * s.outputPixels
                (columns.baseAddress! + o * width + b * s.outputPixels).update(from: t.baseAddress! + source, count: s.outputPixels)
            }
        }
        return columns.baseAddress!
    }

    private func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        BLAS.sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                   beta: beta, c: c, ldc: ldc)
    }
}
