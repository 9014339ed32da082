// Losses and softmax: the op surface each backend implements, and the checked tensor-level API.

/// The target form of a classification loss.
public enum ClassTargets: Sendable {
    /// [N] class indices stored as Float values.
    case labels
    /// [N, K] probability rows (soft targets, e.g. from mixup).
    case probabilities
}

/// Loss ops of a `Backend`. Every loss is the mean over the batch (or over all elements for MSE and BCE),
/// written into a one-element tensor so that reading it is the caller's choice, together with its gradient
/// with respect to the prediction.
public protocol LossBackend {
    /// Softmax (or log-softmax when `logarithm`) over the last axis of [N, K], stabilised by the row max.
    func softmaxForward(_ x: Tensor, logarithm: Bool, into y: Tensor) throws
    /// The gradient through softmax (y = softmax output) or log-softmax (y = log-softmax output).
    func softmaxBackward(y: Tensor, dy: Tensor, logarithm: Bool, into dx: Tensor) throws
    /// Softmax cross-entropy from logits [N, K]: loss = mean −Σ t·log softmax(x); gradient (softmax − t)/N,
    /// with t replaced by (1 − ε)·t + ε/K for label smoothing ε. A label outside 0..<K makes that row's loss
    /// NaN on the device (training then stops and names the step); the host API refuses it up front.
    func crossEntropy(logits: Tensor, targets: Tensor, form: ClassTargets, labelSmoothing: Float, into loss: Tensor, gradient: Tensor) throws
    /// Negative log-likelihood from log-probabilities [N, K] and labels [N]: mean −logp[label]; gradient −1/N at the label.
    func negativeLogLikelihood(logProbabilities: Tensor, labels: Tensor, into loss: Tensor, gradient: Tensor) throws
    /// Mean squared error over all elements; gradient 2(p − t)/count.
    func meanSquaredError(prediction: Tensor, target: Tensor, into loss: Tensor, gradient: Tensor) throws
    /// Binary cross-entropy from logits, mean over all elements, in the stable form
    /// max(x, 0) − x·t + log1p(e^−|x|); gradient (sigmoid(x) − t)/count.
    func binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor, into loss: Tensor, gradient: Tensor) throws
}

/// A loss value (one-element tensor, not yet read) and the gradient with respect to the prediction.
public struct LossResult {
    public var loss: Tensor
    public var gradient: Tensor
}

private func checkTwoDimensional(_ x: Tensor, _ operation: String) throws {
    guard x.rank == 2 else { throw KilnError.shapeMismatch(operation: operation, expected: "[N, K]", got: describe(x.shape)) }
}

/// Checks integer labels for [N, K] scores: shape [N], and on the host, every value a class index.
private func checkLabels(_ labels: Tensor, for scores: Tensor, _ operation: String) throws {
    guard labels.shape == [scores.shape[0]] else {
        throw KilnError.shapeMismatch(operation: operation, expected: "labels [\(scores.shape[0])]", got: describe(labels.shape))
    }
    try scores.sameDevice(labels, operation)
    if labels.device == .host, let bad = labels.hostBuffer.first(where: { $0 < 0 || $0 >= Float(scores.shape[1]) || $0 != $0.rounded() }) {
        throw KilnError.invalidArgument("\(operation): label \(bad) is not a class index in 0..<\(scores.shape[1])")
    }
}

extension Tensor {
    /// Softmax over the last axis of a [N, K] tensor.
    public func softmax() throws -> Tensor {
        try checkTwoDimensional(self, "softmax")
        let y = try Tensor.empty(shape, on: device)
        try backend.softmaxForward(self, logarithm: false, into: y)
        return y
    }

    /// Log-softmax over the last axis of a [N, K] tensor.
    public func logSoftmax() throws -> Tensor {
        try checkTwoDimensional(self, "log-softmax")
        let y = try Tensor.empty(shape, on: device)
        try backend.softmaxForward(self, logarithm: true, into: y)
        return y
    }
}

/// Softmax cross-entropy of logits [N, K] against labels [N] (class indices) or probability rows [N, K], with
/// label smoothing ε in [0, 1] (PyTorch's `label_smoothing`: the targets become (1 − ε)·t + ε/K).
public func crossEntropy(logits: Tensor, targets: Tensor, labelSmoothing: Float = 0) throws -> LossResult {
    try checkTwoDimensional(logits, "cross-entropy")
    guard labelSmoothing >= 0, labelSmoothing <= 1 else {
        throw KilnError.invalidArgument("cross-entropy: label smoothing \(labelSmoothing) is outside [0, 1]")
    }
    let form: ClassTargets
    if targets.shape == logits.shape {
        form = .probabilities
        try logits.sameDevice(targets, "cross-entropy")
    } else {
        form = .labels
        try checkLabels(targets, for: logits, "cross-entropy")
    }
    let result = LossResult(loss: try Tensor.empty([1], on: logits.device), gradient: try Tensor.empty(logits.shape, on: logits.device))
    try logits.backend.crossEntropy(logits: logits, targets: targets, form: form, labelSmoothing: labelSmoothing, into: result.loss,
                                    gradient: result.gradient)
    return result
}

/// Negative log-likelihood of log-probabilities [N, K] for labels [N].
public func negativeLogLikelihood(logProbabilities: Tensor, labels: Tensor) throws -> LossResult {
    try checkTwoDimensional(logProbabilities, "NLL")
    try checkLabels(labels, for: logProbabilities, "NLL")
    let result = LossResult(loss: try Tensor.empty([1], on: labels.device), gradient: try Tensor.empty(logProbabilities.shape, on: labels.device))
    try labels.backend.negativeLogLikelihood(logProbabilities: logProbabilities, labels: labels, into: result.loss, gradient: result.gradient)
    return result
}

/// Mean squared error between two tensors of the same shape.
public func meanSquaredError(prediction: Tensor, target: Tensor) throws -> LossResult {
    try elementwiseLoss("MSE", prediction, target) { backend, result in
        try backend.meanSquaredError(prediction: prediction, target: target, into: result.loss, gradient: result.gradient)
    }
}

/// Binary cross-entropy between logits and targets in [0, 1] of the same shape.
public func binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor) throws -> LossResult {
    try elementwiseLoss("binary cross-entropy", logits, target) { backend, result in
        try backend.binaryCrossEntropyWithLogits(logits: logits, target: target, into: result.loss, gradient: result.gradient)
    }
}

/// Checks a prediction against a same-shaped target and allocates the loss and gradient for `compute`.
private func elementwiseLoss(_ operation: String, _ prediction: Tensor, _ target: Tensor,
                             _ compute: (any Backend, LossResult) throws -> Void) throws -> LossResult {
    guard prediction.shape == target.shape else {
        throw KilnError.shapeMismatch(operation: operation, expected: describe(prediction.shape), got: describe(target.shape))
    }
    try prediction.sameDevice(target, operation)
    let result = LossResult(loss: try Tensor.empty([1], on: target.device), gradient: try Tensor.empty(target.shape, on: target.device))
    try compute(target.backend, result)
    return result
}
