import KilnCL

extension OpenCLBackend: NormalizationBackend {
    /// Whether training batch norm runs in one launch per pass, a work-group normalising a whole channel
    /// after reducing it: on CPU drivers, whose work-groups are cores, it saves a launch and a pass of
    /// index arithmetic; a GPU keeps the separate elementwise kernels, which use the whole chip.
    var normalizesWholeChannels: Bool { Self.singleLaunchBatchNorm.withLock { $0 } ?? (context.device.info.type == .cpu) }

    /// Forces either path, so that tests run both on one device.
    static let singleLaunchBatchNorm = Locked<Bool?>(nil)

    public func batchNormTrainingForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                         settings: BatchNormSettings, into y: Tensor, savedMean: Tensor, savedInverseStd: Tensor) throws {
        let (batch, channels, inner) = batchNormLayout(x)
        if normalizesWholeChannels {
            try batchnormKernels.batchnormTrainForward(groups: channels, x: x, y: y, gamma: gamma, beta: beta, savedMean: savedMean,
                                                       savedInvStd: savedInverseStd, runningMean: runningMean, runningVar: runningVariance,
                                                       batch: batch, channels: channels, inner: inner, eps: settings.epsilon,
                                                       momentum: settings.momentum)
            return
        }
        try batchnormKernels.batchnormStatistics(groups: channels, x: x, savedMean: savedMean, savedInvStd: savedInverseStd,
                                                 runningMean: runningMean, runningVar: runningVariance, batch: batch,
                                                 channels: channels, inner: inner, eps: settings.epsilon, momentum: settings.momentum)
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
        try batchnormKernels.batchnormApply(items: y.count, x: x, y: y, gamma: gamma, beta: beta, mean: mean, scale: scale,
                                            scaleIsVariance: scaleIsVariance ? 1 : 0, eps: epsilon, n: y.count,
                                            channels: channels, inner: inner)
    }

    public func batchNormBackward(_ x: Tensor, dy: Tensor, gamma: Tensor, savedMean: Tensor, savedInverseStd: Tensor,
                                  into dx: Tensor, gammaGradient: Tensor, betaGradient: Tensor, accumulate: Bool) throws {
        let (batch, channels, inner) = batchNormLayout(x)
        if normalizesWholeChannels {
            try batchnormKernels.batchnormTrainBackward(groups: channels, x: x, dy: dy, gamma: gamma, mean: savedMean,
                                                        invStd: savedInverseStd, dx: dx, dgamma: gammaGradient, dbeta: betaGradient,
                                                        accumulate: accumulate ? 1 : 0, batch: batch, channels: channels, inner: inner)
            return
        }
        let sums = try Tensor.empty([2 * channels], on: device)
        try batchnormKernels.batchnormBackwardReduce(groups: channels, x: x, dy: dy, mean: savedMean, invStd: savedInverseStd,
                                                     sums: sums, dgamma: gammaGradient, dbeta: betaGradient,
                                                     accumulate: accumulate ? 1 : 0, batch: batch, channels: channels, inner: inner)
        try batchnormKernels.batchnormBackwardData(items: dx.count, x: x, dy: dy, gamma: gamma, mean: savedMean, invStd: savedInverseStd,
                                                   sums: sums, dx: dx, n: dx.count, batch: batch, channels: channels, inner: inner)
    }

    public func lrnForward(_ x: Tensor, settings s: LRNSettings, into y: Tensor) throws {
        let (channels, inner) = lrnLayout(x)
        try lrnKernels.lrnForward(items: y.count, x: x, y: y, n: x.count, channels: channels, inner: inner,
                                  size: s.size, alpha: s.alpha, beta: s.beta, k: s.k)
    }

    public func lrnBackward(_ x: Tensor, dy: Tensor, settings s: LRNSettings, into dx: Tensor) throws {
        let (channels, inner) = lrnLayout(x)
        try lrnKernels.lrnBackward(items: dx.count, x: x, dy: dy, dx: dx, n: x.count, channels: channels, inner: inner,
                                   size: s.size, alpha: s.alpha, beta: s.beta, k: s.k)
    }

    /// Channels and the elements per channel of each image: LRN runs across channels at every position.
    private func lrnLayout(_ x: Tensor) -> (channels: Int, inner: Int) {
        (x.shape[1], x.shape.dropFirst(2).reduce(1, *))
    }
}
