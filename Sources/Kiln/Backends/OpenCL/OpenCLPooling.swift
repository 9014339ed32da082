import KilnCL

extension OpenCLBackend: PoolingBackend {
    public func pool2dForward(_ kind: PoolKind, _ x: Tensor, geometry g: Pool2DGeometry, relu: Bool, into y: Tensor, argmax: Tensor?) throws {
        // Without an arg-max to keep (average pooling, inference) the output buffer stands in for the unused argument.
        try poolKernels.poolForward(items: y.count, x: x, y: y, argmax: argmax ?? y, isMax: kind == .max ? 1 : 0,
                                    keepArgmax: argmax == nil ? 0 : 1, relu: relu ? 1 : 0, n: y.count,
                                    height: x.shape[2], width: x.shape[3], outHeight: y.shape[2], outWidth: y.shape[3],
                                    kh: g.windowHeight, kw: g.windowWidth, sh: g.strideHeight, sw: g.strideWidth,
                                    ph: g.padHeight, pw: g.padWidth)
    }

    public func pool2dBackward(_ kind: PoolKind, dy: Tensor, argmax: Tensor?, geometry g: Pool2DGeometry, reluOutput: Tensor?,
                               into dx: Tensor) throws {
        // Without a ReLU output the gradient stands in for the unused argument.
        let (y, relu) = (reluOutput ?? dy, reluOutput == nil ? 0 : 1)
        if kind == .max, let argmax, g.windowHeight <= g.strideHeight, g.windowWidth <= g.strideWidth {
            // Disjoint windows: zero, then scatter each gradient to its arg-max (no loop over windows).
            try fill(dx, value: 0)
            try poolKernels.poolBackwardMaxScatter(items: dy.count, dy: dy, argmax: argmax, y: y, relu: relu, dx: dx, n: dy.count,
                                                   planeIn: dx.shape[2] * dx.shape[3], planeOut: dy.shape[2] * dy.shape[3])
            return
        }
        try poolKernels.poolBackward(items: dx.count, dy: dy, argmax: argmax ?? dy, y: y, relu: relu, dx: dx, isMax: kind == .max ? 1 : 0, n: dx.count,
                                     height: dx.shape[2], width: dx.shape[3], outHeight: dy.shape[2], outWidth: dy.shape[3],
                                     kh: g.windowHeight, kw: g.windowWidth, sh: g.strideHeight, sw: g.strideWidth,
                                     ph: g.padHeight, pw: g.padWidth)
    }
}
