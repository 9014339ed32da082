import KilnCL

extension OpenCLBackend: LossBackend {
    public func softmaxForward(_ x: Tensor, logarithm: Bool, into y: Tensor) throws {
        try launch("softmax_forward", in: "loss.cl", count: x.shape[0],
                   x.clArguments + y.clArguments + [.uint(UInt32(x.shape[0])), .uint(UInt32(x.shape[1])), .uint(logarithm ? 1 : 0)])
    }

    public func softmaxBackward(y: Tensor, dy: Tensor, logarithm: Bool, into dx: Tensor) throws {
        try launch("softmax_backward", in: "loss.cl", count: y.shape[0],
                   y.clArguments + dy.clArguments + dx.clArguments
                   + [.uint(UInt32(y.shape[0])), .uint(UInt32(y.shape[1])), .uint(logarithm ? 1 : 0)])
    }

    public func crossEntropy(logits: Tensor, targets: Tensor, form: ClassTargets, into loss: Tensor, gradient: Tensor) throws {
        let rows = logits.shape[0]
        let rowLoss = try Tensor.empty([rows], on: device)
        try launch("cross_entropy", in: "loss.cl", count: rows,
                   logits.clArguments + targets.clArguments + [.buffer(rowLoss.clBuffer)] + gradient.clArguments
                   + [.uint(UInt32(rows)), .uint(UInt32(logits.shape[1])), .uint(form == .probabilities ? 1 : 0)])
        try reduce(.mean, rowLoss, as: ReductionShape(outer: 1, axis: rows, inner: 1), into: loss)
    }

    public func negativeLogLikelihood(logProbabilities: Tensor, labels: Tensor, into loss: Tensor, gradient: Tensor) throws {
        let rows = logProbabilities.shape[0]
        let rowLoss = try Tensor.empty([rows], on: device)
        try launch("nll_loss", in: "loss.cl", count: rows,
                   logProbabilities.clArguments + labels.clArguments + [.buffer(rowLoss.clBuffer)] + gradient.clArguments
                   + [.uint(UInt32(rows)), .uint(UInt32(logProbabilities.shape[1]))])
        try reduce(.mean, rowLoss, as: ReductionShape(outer: 1, axis: rows, inner: 1), into: loss)
    }

    public func meanSquaredError(prediction: Tensor, target: Tensor, into loss: Tensor, gradient: Tensor) throws {
        try elementwiseLoss(mode: 0, prediction, target, loss, gradient)
    }

    public func binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor, into loss: Tensor, gradient: Tensor) throws {
        try elementwiseLoss(mode: 1, logits, target, loss, gradient)
    }

    private func elementwiseLoss(mode: UInt32, _ prediction: Tensor, _ target: Tensor, _ loss: Tensor, _ gradient: Tensor) throws {
        let count = prediction.count
        let elementLoss = try Tensor.empty([count], on: device)
        try launch("elementwise_loss", in: "loss.cl", count: count,
                   prediction.clArguments + target.clArguments + [.buffer(elementLoss.clBuffer)] + gradient.clArguments
                   + [.uint(UInt32(count)), .uint(mode)])
        try reduce(.mean, elementLoss, as: ReductionShape(outer: 1, axis: count, inner: 1), into: loss)
    }
}
