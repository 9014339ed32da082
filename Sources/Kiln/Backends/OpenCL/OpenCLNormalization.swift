import KilnCL

extension OpenCLBackend: NormalizationBackend {
    public func batchNormTrainingForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                         settings: BatchNormSettings, into y: Tensor, savedMean: Tensor, savedInverseStd: Tensor) throws {
        let (batch, channels, inner) = batchNormLayout(x)
        try context.launch(try kernel("batchnorm_statistics", in: "batchnorm.cl"),
                           global: [channels * reduceGroupSize], local: [reduceGroupSize],
                           arguments: x.clArguments + savedMean.clArguments + savedInverseStd.clArguments
                           + runningMean.clArguments + runningVariance.clArguments
                           + [.uint(UInt32(batch)), .uint(UInt32(channels)), .uint(UInt32(inner)),
                              .float(settings.epsilon), .float(settings.momentum)])
        try apply(x, gamma: gamma, beta: beta, mean: savedMean, scale: savedInverseStd, scaleIsVariance: false,
                  epsilon: settings.epsilon, into: y)
    }

    public func batchNormInferenceForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                          settings: BatchNormSettings, into y: Tensor) throws {
        try apply(x, gamma: gamma, beta: beta, mean: runningMean, scale: runningVariance, scaleIsVariance: true,
                  epsilon: settings.epsilon, into: y)
    }

    private func apply(_ x: Tensor, gamma: Tensor, beta: Tensor, mean: Tensor, scale: Tensor, scaleIsVariance: Bool,
                       epsilon: Float, into y: Tensor) throws {
        let (_, channels, inner) = batchNormLayout(x)
        try launch("batchnorm_apply", in: "batchnorm.cl", count: y.count,
                   x.clArguments + y.clArguments + gamma.clArguments + beta.clArguments + mean.clArguments + scale.clArguments
                   + [.uint(scaleIsVariance ? 1 : 0), .float(epsilon), .uint(UInt32(y.count)), .uint(UInt32(channels)), .uint(UInt32(inner))])
    }

    public func batchNormBackward(_ x: Tensor, dy: Tensor, gamma: Tensor, savedMean: Tensor, savedInverseStd: Tensor,
                                  into dx: Tensor, gammaGradient: Tensor, betaGradient: Tensor, accumulate: Bool) throws {
        let (batch, channels, inner) = batchNormLayout(x)
        let sums = try Tensor.empty([2 * channels], on: device)
        let layout: [CLKernelArgument] = [.uint(UInt32(batch)), .uint(UInt32(channels)), .uint(UInt32(inner))]
        try context.launch(try kernel("batchnorm_backward_reduce", in: "batchnorm.cl"),
                           global: [channels * reduceGroupSize], local: [reduceGroupSize],
                           arguments: x.clArguments + dy.clArguments + savedMean.clArguments + savedInverseStd.clArguments
                           + [.buffer(sums.clBuffer)] + gammaGradient.clArguments + betaGradient.clArguments
                           + [.uint(accumulate ? 1 : 0)] + layout)
        try launch("batchnorm_backward_data", in: "batchnorm.cl", count: dx.count,
                   x.clArguments + dy.clArguments + gamma.clArguments + savedMean.clArguments + savedInverseStd.clArguments
                   + [.buffer(sums.clBuffer)] + dx.clArguments + [.uint(UInt32(dx.count))] + layout)
    }

    public func lrnForward(_ x: Tensor, settings: LRNSettings, into y: Tensor) throws {
        try launch("lrn_forward", in: "lrn.cl", count: y.count,
                   x.clArguments + y.clArguments + lrnArguments(x, settings))
    }

    public func lrnBackward(_ x: Tensor, dy: Tensor, settings: LRNSettings, into dx: Tensor) throws {
        try launch("lrn_backward", in: "lrn.cl", count: dx.count,
                   x.clArguments + dy.clArguments + dx.clArguments + lrnArguments(x, settings))
    }

    private func lrnArguments(_ x: Tensor, _ s: LRNSettings) -> [CLKernelArgument] {
        [.uint(UInt32(x.count)), .uint(UInt32(x.shape[1])), .uint(UInt32(x.shape.dropFirst(2).reduce(1, *))),
         .int(Int32(s.size)), .float(s.alpha), .float(s.beta), .float(s.k)]
    }
}
