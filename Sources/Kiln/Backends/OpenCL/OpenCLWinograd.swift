import KilnCL

/// Winograd F(2x2, 3x3) (Kernels/winograd.cl): filter, input and output transforms around 16 GEMMs, one
/// strided-batched CLBlast call. Forward, and backward data as the forward pass of dy with the filters
/// rotated by 180° and C_in and C_out swapped, padded by 2 − p.
extension OpenCLBackend {
    /// Winograd, forward and backward data (it never applies to the filter gradient).
    func winograd(_ call: ConvolutionCall, into output: Tensor) throws {
        try call.run(into: output, forward: winogradForward, backwardData: winogradBackwardData, backwardFilter: nil)
    }

    private func winogradForward(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ s: Conv2DShape, _ y: Tensor) throws {
        try winograd(WinogradProblem(batch: s.batch, channels: s.inputChannels, height: s.inputHeight, width: s.inputWidth,
                                     rows: s.outputChannels, outputHeight: s.outputHeight, outputWidth: s.outputWidth,
                                     padTop: s.geometry.padTop, padLeft: s.geometry.padLeft, flip: false),
                     input: x, weight: weight, bias: bias, into: y)
    }

    private func winogradBackwardData(_ dy: Tensor, _ weight: Tensor, _ s: Conv2DShape, _ dx: Tensor) throws {
        // dx[h] = Σ_i w[i] · dy[h + p − i] = Σ_i' w[2 − i'] · dy[h − (2 − p) + i']. A padding above 2 makes the
        // new one negative: the windows then start inside dy, which the input transform handles alike.
        try winograd(WinogradProblem(batch: s.batch, channels: s.outputChannels, height: s.outputHeight, width: s.outputWidth,
                                     rows: s.inputChannels, outputHeight: s.inputHeight, outputWidth: s.inputWidth,
                                     padTop: 2 - s.geometry.padTop, padLeft: 2 - s.geometry.padLeft, flip: true),
                     input: dy, weight: weight, bias: nil, into: dx)
    }

    /// One 3x3 stride-1 convolution of `input` [batch, channels, height, width] into `output` [batch, rows,
    /// outputHeight, outputWidth].
    private struct WinogradProblem {
        var batch: Int, channels: Int, height: Int, width: Int
        var rows: Int, outputHeight: Int, outputWidth: Int
        var padTop: Int, padLeft: Int
        /// Whether the weight is [channels, rows, 3, 3] to be rotated (backward data) rather than [rows, channels, 3, 3].
        var flip: Bool
    }

    private func winograd(_ p: WinogradProblem, input: Tensor, weight: Tensor, bias: Tensor?, into output: Tensor) throws {
        let u = try Tensor.empty([16, p.rows, p.channels], on: device)
        let kernels = winogradKernels
        try kernels.winogradFilterTransform(items: p.rows * p.channels, weight: weight, u: u, rows: p.rows, cols: p.channels,
                                            flip: p.flip ? 1 : 0)
        let tilesHigh = (p.outputHeight + 1) / 2, tilesWide = (p.outputWidth + 1) / 2
        let perImage = tilesHigh * tilesWide
        // V and M of a chunk of images stay within the convolution workspace bound.
        let chunk = Swift.max(1, Swift.min(p.batch, Self.convolutionWorkspaceElements / (16 * (p.channels + p.rows) * perImage)))
        let v = try Tensor.empty([16 * p.channels * chunk * perImage], on: device)
        let m = try Tensor.empty([16 * p.rows * chunk * perImage], on: device)
        for first in stride(from: 0, to: p.batch, by: chunk) {
            let count = Swift.min(chunk, p.batch - first)
            let tiles = count * perImage
            let inputImages = Tensor(storage: input.storage, offset: input.offset + first * p.channels * p.height * p.width,
                                     shape: [count * p.channels * p.height * p.width])
            try kernels.winogradInputTransform(items: p.channels * tiles, x: inputImages, v: v, batch: count, channels: p.channels,
                                               height: p.height, width: p.width, padTop: p.padTop, padLeft: p.padLeft,
                                               tilesH: tilesHigh, tilesW: tilesWide)
            try context.sgemmStridedBatched(
                m: p.rows, n: tiles, k: p.channels, batch: 16,
                a: CLMatrix(u.clBuffer, leadingDimension: p.channels, batchStride: p.rows * p.channels),
                b: CLMatrix(v.clBuffer, leadingDimension: tiles, batchStride: p.channels * tiles),
                c: CLMatrix(m.clBuffer, leadingDimension: tiles, batchStride: p.rows * tiles))
            let outputImages = Tensor(storage: output.storage, offset: output.offset + first * p.rows * p.outputHeight * p.outputWidth,
                                      shape: [count * p.rows * p.outputHeight * p.outputWidth])
            // Without a bias the filter transform stands in for the unused argument.
            try kernels.winogradOutputTransform(items: p.rows * tiles, m: m, y: outputImages, bias: bias ?? u, hasBias: bias == nil ? 0 : 1,
                                                batch: count, rows: p.rows, outHeight: p.outputHeight, outWidth: p.outputWidth,
                                                tilesH: tilesHigh, tilesW: tilesWide)
        }
    }
}
