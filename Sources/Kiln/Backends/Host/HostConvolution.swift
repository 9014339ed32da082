import CBLAS

/// Convolution on the host: im2col + OpenBLAS GEMM over a chunk of the batch at once, so that OpenBLAS
/// gets a few large products (which it runs on every core) instead of many small ones.
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

    public func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, into output: Tensor) throws {
        let (w, y) = (weight.hostBuffer, output.hostBuffer)
        if s.isPointwise {
            // y[n, g] = w[g] · x[n, g]: each image's input already is its patch matrix.
            forEachPointwiseBlock(s) { inputOffset, outputOffset, weightOffset in
                gemm(transposeA: false, transposeB: false, m: s.groupOutputChannels, n: s.outputPixels, k: s.patchSize,
                     a: w.baseAddress! + weightOffset, lda: s.patchSize, b: x.hostBuffer.baseAddress! + inputOffset, ldb: s.outputPixels,
                     beta: 0, c: y.baseAddress! + outputOffset, ldc: s.outputPixels)
            }
        } else {
            forEachChunk(s) { first, count, cols, columns in
                let width = count * s.outputPixels
                for g in 0..<s.geometry.groups {
                    im2col(x.hostBuffer, images: first..<(first + count), group: g, shape: s, into: cols)
                    gemm(transposeA: false, transposeB: false, m: s.groupOutputChannels, n: width, k: s.patchSize,
                         a: w.baseAddress! + g * s.groupOutputChannels * s.patchSize, lda: s.patchSize,
                         b: cols.baseAddress!, ldb: width, beta: 0, c: columns.baseAddress!, ldc: width)
                    // columns [C_out/g, B·P] → y [n, g·C_out/g + o, p]
                    for o in 0..<s.groupOutputChannels {
                        for b in 0..<count {
                            let target = ((first + b) * s.outputChannels + g * s.groupOutputChannels + o) * s.outputPixels
                            let source = o * width + b * s.outputPixels
                            (y.baseAddress! + target).update(from: columns.baseAddress! + source, count: s.outputPixels)
                        }
                    }
                }
            }
        }
        if let bias {
            try binaryPerChannel(.add, output, bias, channels: s.outputChannels, inner: s.outputPixels, into: output)
        }
    }

    public func conv2dBackwardData(_ dy: Tensor, weight: Tensor, shape s: Conv2DShape, into dx: Tensor) throws {
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
        dxBuffer.update(repeating: 0)
        forEachChunk(s) { first, count, dcols, columns in
            let width = count * s.outputPixels
            for g in 0..<s.geometry.groups {
                gatherColumns(dy.hostBuffer, images: first..<(first + count), group: g, shape: s, into: columns)
                gemm(transposeA: true, transposeB: false, m: s.patchSize, n: width, k: s.groupOutputChannels,
                     a: w.baseAddress! + g * s.groupOutputChannels * s.patchSize, lda: s.patchSize,
                     b: columns.baseAddress!, ldb: width, beta: 0, c: dcols.baseAddress!, ldc: width)
                col2imAdding(dcols, images: first..<(first + count), group: g, shape: s, into: dxBuffer)
            }
        }
    }

    public func conv2dBackwardFilter(_ x: Tensor, _ dy: Tensor, shape s: Conv2DShape, into dw: Tensor, accumulate: Bool) throws {
        let dw = dw.hostBuffer
        if !accumulate { dw.update(repeating: 0) }
        if s.isPointwise {
            // dw[g] += dy[n, g] · x[n, g]ᵀ, image by image
            forEachPointwiseBlock(s) { inputOffset, outputOffset, weightOffset in
                gemm(transposeA: false, transposeB: true, m: s.groupOutputChannels, n: s.patchSize, k: s.outputPixels,
                     a: dy.hostBuffer.baseAddress! + outputOffset, lda: s.outputPixels, b: x.hostBuffer.baseAddress! + inputOffset,
                     ldb: s.outputPixels, beta: 1, c: dw.baseAddress! + weightOffset, ldc: s.patchSize)
            }
            return
        }
        forEachChunk(s) { first, count, cols, columns in
            let width = count * s.outputPixels
            for g in 0..<s.geometry.groups {
                im2col(x.hostBuffer, images: first..<(first + count), group: g, shape: s, into: cols)
                gatherColumns(dy.hostBuffer, images: first..<(first + count), group: g, shape: s, into: columns)
                gemm(transposeA: false, transposeB: true, m: s.groupOutputChannels, n: s.patchSize, k: width,
                     a: columns.baseAddress!, lda: width, b: cols.baseAddress!, ldb: width,
                     beta: 1, c: dw.baseAddress! + g * s.groupOutputChannels * s.patchSize, ldc: s.patchSize)
            }
        }
    }

    // MARK: Helpers

    /// Calls `body(input offset, output offset, weight offset)` for every (image, group) of a pointwise
    /// convolution: where x[n, g], y[n, g] and w[g] start.
    private func forEachPointwiseBlock(_ s: Conv2DShape, _ body: (Int, Int, Int) -> Void) {
        for n in 0..<s.batch {
            for g in 0..<s.geometry.groups {
                body((n * s.inputChannels + g * s.groupInputChannels) * s.outputPixels,
                     (n * s.outputChannels + g * s.groupOutputChannels) * s.outputPixels,
                     g * s.groupOutputChannels * s.patchSize)
            }
        }
    }

    /// Calls `body(first image, image count, cols workspace [K, B·P], columns workspace [C_out/g, B·P])`
    /// for chunks of the batch that keep the workspace under its bound.
    private func forEachChunk(_ s: Conv2DShape,
                              _ body: (Int, Int, UnsafeMutableBufferPointer<Float>, UnsafeMutableBufferPointer<Float>) -> Void) {
        let perImage = (s.patchSize + s.groupOutputChannels) * s.outputPixels
        let chunk = Swift.max(1, Swift.min(s.batch, Self.convolutionWorkspaceElements / Swift.max(perImage, 1)))
        let cols = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunk * s.patchSize * s.outputPixels)
        let columns = UnsafeMutableBufferPointer<Float>.allocate(capacity: chunk * s.groupOutputChannels * s.outputPixels)
        defer { cols.deallocate(); columns.deallocate() }
        for first in stride(from: 0, to: s.batch, by: chunk) {
            body(first, Swift.min(chunk, s.batch - first), cols, columns)
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
            if let input { for ow in columns { patch[ow] = input[ow * stride] } }
            (patch + columns.upperBound).update(repeating: 0, count: outputWidth - columns.upperBound)
        }
    }

    /// The adjoint of im2col: adds every patch entry back onto the input pixel it was read from.
    private func col2imAdding(_ cols: UnsafeMutableBufferPointer<Float>, images: Range<Int>, group g: Int, shape s: Conv2DShape,
                              into dx: UnsafeMutableBufferPointer<Float>) {
        let stride = s.geometry.strideWidth
        forEachPatchRow(cols.baseAddress!, dx.baseAddress!, range: images, group: g, shape: s) { patch, input, columns in
            if let input { for ow in columns { input[ow * stride] += patch[ow] } }
        }
    }

    /// columns[o, b·P + p] = t[n, g·C_out/g + o, p]: a group's output-shaped tensor in GEMM column order.
    private func gatherColumns(_ t: UnsafeMutableBufferPointer<Float>, images: Range<Int>, group g: Int, shape s: Conv2DShape,
                               into columns: UnsafeMutableBufferPointer<Float>) {
        let width = images.count * s.outputPixels
        for o in 0..<s.groupOutputChannels {
            for (b, n) in images.enumerated() {
                let source = (n * s.outputChannels + g * s.groupOutputChannels + o) * s.outputPixels
                (columns.baseAddress! + o * width + b * s.outputPixels).update(from: t.baseAddress! + source, count: s.outputPixels)
            }
        }
    }

    private func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
