import KilnCL

extension OpenCLBackend: ActivationBackend {
    public func activationForward(_ activation: Activation, _ x: Tensor, into y: Tensor) throws {
        let (code, parameter) = activation.kernelCode
        try launch("activation_forward", in: "activation.cl", count: y.count,
                   x.clArguments + y.clArguments + [.uint(UInt32(y.count)), .int(code), .float(parameter)])
    }

    public func activationBackward(_ activation: Activation, x: Tensor, dy: Tensor, into dx: Tensor) throws {
        let (code, parameter) = activation.kernelCode
        try launch("activation_backward", in: "activation.cl", count: dx.count,
                   x.clArguments + dy.clArguments + dx.clArguments + [.uint(UInt32(dx.count)), .int(code), .float(parameter)])
    }

    public func preluForward(_ x: Tensor, slopes: Tensor, into y: Tensor) throws {
        let (channels, inner) = preluLayout(x, slopes)
        try launch("prelu_forward", in: "activation.cl", count: y.count,
                   x.clArguments + slopes.clArguments + y.clArguments
                   + [.uint(UInt32(y.count)), .uint(UInt32(channels)), .uint(UInt32(inner))])
    }

    public func preluBackward(x: Tensor, slopes: Tensor, dy: Tensor, into dx: Tensor, slopeGradient: Tensor, accumulate: Bool) throws {
        let (channels, inner) = preluLayout(x, slopes)
        let layout: [CLKernelArgument] = [.uint(UInt32(x.count)), .uint(UInt32(channels)), .uint(UInt32(inner))]
        try launch("prelu_backward_data", in: "activation.cl", count: dx.count,
                   x.clArguments + slopes.clArguments + dy.clArguments + dx.clArguments + layout)
        let kernel = try kernel("prelu_backward_slope", in: "activation.cl")
        try context.launch(kernel, global: [channels * reduceGroupSize], local: [reduceGroupSize],
                           arguments: x.clArguments + dy.clArguments + slopeGradient.clArguments + [.uint(accumulate ? 1 : 0)] + layout)
    }
}
