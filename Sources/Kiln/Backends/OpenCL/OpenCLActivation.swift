import KilnCL

extension OpenCLBackend: ActivationBackend {
    public func activationForward(_ activation: Activation, _ x: Tensor, into y: Tensor) throws {
        let (kind, parameter) = activation.kernelCode
        try activationKernels.activationForward(items: y.count, x: x, y: y, n: y.count, kind: kind, p: parameter)
    }

    public func activationBackward(_ activation: Activation, x: Tensor, dy: Tensor, into dx: Tensor) throws {
        let (kind, parameter) = activation.kernelCode
        try activationKernels.activationBackward(items: dx.count, x: x, dy: dy, dx: dx, n: dx.count, kind: kind, p: parameter)
    }

    public func preluForward(_ x: Tensor, slopes: Tensor, into y: Tensor) throws {
        let (channels, inner) = preluLayout(x, slopes)
        try activationKernels.preluForward(items: y.count, x: x, slopes: slopes, y: y, n: y.count, channels: channels, inner: inner)
    }

    public func preluBackward(x: Tensor, slopes: Tensor, dy: Tensor, into dx: Tensor, slopeGradient: Tensor, accumulate: Bool) throws {
        let (channels, inner) = preluLayout(x, slopes)
        try activationKernels.preluBackwardData(items: dx.count, x: x, slopes: slopes, dy: dy, dx: dx, n: x.count,
                                                channels: channels, inner: inner)
        try activationKernels.preluBackwardSlope(groups: channels, x: x, dy: dy, dslopes: slopeGradient, accumulate: accumulate ? 1 : 0,
                                                 n: x.count, channels: channels, inner: inner)
    }
}
