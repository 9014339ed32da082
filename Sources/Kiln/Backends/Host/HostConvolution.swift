import CBLAS

/// Convolution on the host: im2col + OpenBLAS GEMM, one image and group at a time.
///
/// For image n and group g, the patches of the input form a matrix `cols` [K, P] with K = C_in/groups·kh·kw
/// rows (one per weight of a filter) and P = OH·OW columns (one per output pixel). Then
///   forward          y[n, g]  = w[g] · cols               [C_out/g, K] x [K, P]
///   backward data    dcols    = w[g]ᵀ · dy[n, g], col2im   [K, C_out/g] x [C_out/g, P]
///   backward filter  dw[g]   += dy[n, g] · colsᵀ           [C_out/g, P] x [P, K]
extension HostBackend: ConvolutionBackend {
    public func conv2dForward(_ x: Tensor, weight: Tensor, bias: Tensor?, shape s: Conv2DShape, into y: Tensor) throws {
        let (x, w, y) = (x.hostBuffer, weight.hostBuffer, y.hostBuffer)
        var cols = [Float](repeating: 0, count: s.patchSize * s.outputPixels)
        let (inputImage, outputImage) = (s.inputChannels * s.inputHeight * s.inputWidth, s.outputChannels * s.outputPixels)
        for n in 0..<s.batch {
            for g in 0..<s.geometry.groups {
                im2col(x.baseAddress! + n * inputImage, group: g, shape: s, into: &cols)
                gemm(m: s.groupOutputChannels, n: s.outputPixels, k: s.patchSize,
                     a: w.baseAddress! + g * s.groupOutputChannels * s.patchSize, b: cols,
                     c: y.baseAddress! + n * outputImage + g * s.groupOutputChannels * s.outputPixels)
            }
        }
        if let bias {
            let b = bias.hostBuffer
            for n in 0..<s.batch {
                for c in 0..<s.outputChannels {
                    let start = n * outputImage + c * s.outputPixels
                    for p in start..<(start + s.outputPixels) { y[p] += b[c] }
                }
            }
        }
    }

    public func conv2dBackwardData(_ dy: Tensor, weight: Tensor, shape s: Conv2DShape, into dx: Tensor) throws {
        let (dy, w, dx) = (dy.hostBuffer, weight.hostBuffer, dx.hostBuffer)
        var dcols = [Float](repeating: 0, count: s.patchSize * s.outputPixels)
        let (inputImage, outputImage) = (s.inputChannels * s.inputHeight * s.inputWidth, s.outputChannels * s.outputPixels)
        dx.update(repeating: 0)
        for n in 0..<s.batch {
            for g in 0..<s.geometry.groups {
                dcols.withUnsafeMutableBufferPointer { dcols in
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans,
                                Int32(s.patchSize), Int32(s.outputPixels), Int32(s.groupOutputChannels), 1,
                                w.baseAddress! + g * s.groupOutputChannels * s.patchSize, Int32(s.patchSize),
                                dy.baseAddress! + n * outputImage + g * s.groupOutputChannels * s.outputPixels, Int32(s.outputPixels),
                                0, dcols.baseAddress, Int32(s.outputPixels))
                }
                col2imAdding(dcols, group: g, shape: s, into: dx.baseAddress! + n * inputImage)
            }
        }
    }

    public func conv2dBackwardFilter(_ x: Tensor, _ dy: Tensor, shape s: Conv2DShape, into dw: Tensor, accumulate: Bool) throws {
        let (x, dy, dw) = (x.hostBuffer, dy.hostBuffer, dw.hostBuffer)
        if !accumulate { dw.update(repeating: 0) }
        var cols = [Float](repeating: 0, count: s.patchSize * s.outputPixels)
        let (inputImage, outputImage) = (s.inputChannels * s.inputHeight * s.inputWidth, s.outputChannels * s.outputPixels)
        for n in 0..<s.batch {
            for g in 0..<s.geometry.groups {
                im2col(x.baseAddress! + n * inputImage, group: g, shape: s, into: &cols)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                            Int32(s.groupOutputChannels), Int32(s.patchSize), Int32(s.outputPixels), 1,
                            dy.baseAddress! + n * outputImage + g * s.groupOutputChannels * s.outputPixels, Int32(s.outputPixels),
                            cols, Int32(s.outputPixels),
                            1, dw.baseAddress! + g * s.groupOutputChannels * s.patchSize, Int32(s.patchSize))
            }
        }
    }

    /// cols[(c·kh + i)·kw + j, oh·OW + ow] = x[g·C_in/g + c, oh·sh − pad_top + i·dh, ow·sw − pad_left + j·dw], 0 outside.
    private func im2col(_ image: UnsafePointer<Float>, group g: Int, shape s: Conv2DShape, into cols: inout [Float]) {
        let geometry = s.geometry
        for c in 0..<s.groupInputChannels {
            let channel = image + (g * s.groupInputChannels + c) * s.inputHeight * s.inputWidth
            for i in 0..<geometry.kernelHeight {
                for j in 0..<geometry.kernelWidth {
                    let row = ((c * geometry.kernelHeight + i) * geometry.kernelWidth + j) * s.outputPixels
                    for oh in 0..<s.outputHeight {
                        let ih = oh * geometry.strideHeight - geometry.padTop + i * geometry.dilationHeight
                        for ow in 0..<s.outputWidth {
                            let iw = ow * geometry.strideWidth - geometry.padLeft + j * geometry.dilationWidth
                            let inside = ih >= 0 && ih < s.inputHeight && iw >= 0 && iw < s.inputWidth
                            cols[row + oh * s.outputWidth + ow] = inside ? channel[ih * s.inputWidth + iw] : 0
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of im2col: adds every patch entry back onto the input pixel it was read from.
    private func col2imAdding(_ cols: [Float], group g: Int, shape s: Conv2DShape, into image: UnsafeMutablePointer<Float>) {
        let geometry = s.geometry
        for c in 0..<s.groupInputChannels {
            let channel = image + (g * s.groupInputChannels + c) * s.inputHeight * s.inputWidth
            for i in 0..<geometry.kernelHeight {
                for j in 0..<geometry.kernelWidth {
                    let row = ((c * geometry.kernelHeight + i) * geometry.kernelWidth + j) * s.outputPixels
                    for oh in 0..<s.outputHeight {
                        let ih = oh * geometry.strideHeight - geometry.padTop + i * geometry.dilationHeight
                        guard ih >= 0, ih < s.inputHeight else { continue }
                        for ow in 0..<s.outputWidth {
                            let iw = ow * geometry.strideWidth - geometry.padLeft + j * geometry.dilationWidth
                            if iw >= 0, iw < s.inputWidth { channel[ih * s.inputWidth + iw] += cols[row + oh * s.outputWidth + ow] }
                        }
                    }
                }
            }
        }
    }

    private func gemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: [Float], c: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1, a, Int32(k), b, Int32(n), 0, c, Int32(n))
    }
}
