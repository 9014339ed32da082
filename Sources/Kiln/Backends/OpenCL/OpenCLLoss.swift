import KilnCL

extension OpenCLBackend: LossBackend {
    public func softmaxForward(_ x: Tensor, logarithm: Bool, into y: Tensor) throws {
        let (rows, classes) = (x.shape[0], x.shape[1])
        try lossKernels.softmaxForward(items: rows, x: x, y: y, rows: rows, classes: classes, logarithm: logarithm ? 1 : 0)
    }

    public func softmaxBackward(y: Tensor, dy: Tensor, logarithm: Bool, into dx: Tensor) throws {
        let (rows, classes) = (y.shape[0], y.shape[1])
        try lossKernels.softmaxBackward(items: rows, y: y, dy: dy, dx: dx, rows: rows, classes: classes, logarithm: logarithm ? 1 : 0)
    }

    public func crossEntropy(logits: Tensor, targets: Tensor, form: ClassTargets, labelSmoothing: Float, into loss: Tensor,
                             gradient: Tensor) throws {
        let rows = logits.shape[0]
        let rowLoss = try Tensor.empty([rows], on: device)
        try lossKernels.crossEntropy(items: rows, x: logits, t: targets, rowLoss: rowLoss, gradient: gradient, rows: rows,
                                     classes: logits.shape[1], soft: form == .probabilities ? 1 : 0, smoothing: labelSmoothing)
        try reduce(.mean, rowLoss, as: ReductionShape(outer: 1, axis: rows, inner: 1), into: loss)
    }

    public func negativeLogLikelihood(logProbabilities: Tensor, labels: Tensor, into loss: Tensor, gradient: Tensor) throws {
        let rows = logProbabilities.shape[0]
        let rowLoss = try Tensor.empty([rows], on: device)
        try lossKernels.nllLoss(items: rows, lp: logProbabilities, labels: labels, rowLoss: rowLoss, gradient: gradient, rows: rows,
                                classes: logProbabilities.shape[1])
        try reduce(.mean, rowLoss, as: ReductionShape(outer: 1, axis: rows, inner: 1), into: loss)
    }

    public func meanSquaredError(prediction: Tensor, target: Tensor, into loss: Tensor, gradient: Tensor) throws {
        try elementwiseLoss(.squaredError, prediction, target, loss, gradient)
    }

    public func binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor, into loss: Tensor, gradient: Tensor) throws {
        try elementwiseLoss(.binaryCrossEntropyWithLogits, logits, target, loss, gradient)
    }

    private func elementwiseLoss(_ kind: ElementwiseLossKind, _ prediction: Tensor, _ target: Tensor, _ loss: Tensor,
                                 _ gradient: Tensor) throws {
        let count = prediction.count
        let elementLoss = try Tensor.empty([count], on: device)
        try lossKernels.elementwiseLoss(items: count, p: prediction, t: target, elementLoss: elementLoss, gradient: gradient,
                                        n: count, kind: kind)
        try reduce(.mean, elementLoss, as: ReductionShape(outer: 1, axis: count, inner: 1), into: loss)
    }
}
