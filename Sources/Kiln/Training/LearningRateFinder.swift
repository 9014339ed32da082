import Foundation

/// The learning-rate range test (Smith 2015, as fastai's lr_find runs it): from a fresh model, the rate grows
/// exponentially from `start` to `end` over `steps` training steps while the loss is recorded and smoothed;
/// the test stops when the smoothed loss passes `divergenceFactor` times its best (or is not finite). The
/// suggestion is the rate where the smoothed loss falls fastest against log(rate), before its minimum.
public struct LearningRateFinder: Sendable {
    public var start: Float
    public var end: Float
    public var steps: Int
    /// The exponential moving average's weight of the past (fastai's β).
    public var smoothing = 0.98
    public var divergenceFactor = 4.0

    public struct Point: Sendable, Equatable {
        public var rate: Float
        public var loss: Float
        /// The bias-corrected moving average of the losses up to this step.
        public var smoothedLoss: Double
    }

    public struct Result: Sendable {
        public var points: [Point]
        /// The rate of steepest descent of the smoothed loss; nil when too few steps were taken to tell.
        public var suggestion: Float?
        /// Whether the loss diverged before `end` (the last point is the first past the limit).
        public var diverged: Bool
    }

    public init(start: Float = 1e-7, end: Float = 10, steps: Int = 100) {
        (self.start, self.end, self.steps) = (start, end, steps)
    }

    /// Checks the range, naming the options of `kiln lr-find`.
    public func validate() throws {
        guard start.isFinite, end.isFinite, start > 0, end > start else {
            throw KilnError.invalidArgument("lr-find needs 0 < --start < --end, not --start \(start) --end \(end)")
        }
        guard steps >= 5 else { throw KilnError.invalidArgument("lr-find needs at least 5 --steps, not \(steps)") }
    }

    /// The rate of step `index`: start · (end / start)^(index / (steps − 1)).
    public func rate(at index: Int) -> Float {
        Float(Double(start) * Foundation.pow(Double(end) / Double(start), Double(index) / Double(Swift.max(steps - 1, 1))))
    }

    /// Runs the test with `trainer` (its model and optimiser change: give it a fresh model) on the batches of
    /// `loader`, epoch after epoch until `steps` steps. Each step reads its loss.
    public func run(trainer: Trainer, loader: DataLoader) throws -> Result {
        try run(trainer: trainer) { loader.batches(epoch: $0) }
    }

    /// Runs the test on the batches `epoch(e)` gives for e = 0, 1, ... until `steps` steps.
    public func run<Batches: Sequence<Batch>>(trainer: Trainer, epoch batchesOf: (Int) -> Batches) throws -> Result {
        try validate()
        var points: [Point] = []
        var average = 0.0, best = Double.infinity
        var epoch = 0
        steps: while points.count < steps {
            for batch in batchesOf(epoch) {
                let rate = self.rate(at: points.count)
                trainer.optimizer.learningRate = rate
                let loss = try trainer.trainStep(batch).loss.item()
                average = smoothing * average + (1 - smoothing) * Double(loss)
                let smoothed = average / (1 - Foundation.pow(smoothing, Double(points.count + 1)))
                points.append(Point(rate: rate, loss: loss, smoothedLoss: smoothed))
                if !smoothed.isFinite || smoothed > divergenceFactor * best {
                    return Result(points: points, suggestion: Self.steepestDescent(points), diverged: true)
                }
                best = Swift.min(best, smoothed)
                if points.count == steps { break steps }
            }
            epoch += 1
        }
        return Result(points: points, suggestion: Self.steepestDescent(points), diverged: false)
    }

    /// The rate where d(smoothed loss) / d(log rate) is lowest, over the points up to the lowest smoothed loss
    /// (central differences inside, one-sided at the ends), leaving out the first ten as fastai does: the
    /// average of the first few losses is too noisy to rank slopes by.
    static func steepestDescent(_ points: [Point]) -> Float? {
        let finite = points.prefix { $0.smoothedLoss.isFinite }
        guard let lowest = finite.indices.min(by: { finite[$0].smoothedLoss < finite[$1].smoothedLoss }), lowest >= 2 else { return nil }
        let candidates = Array(finite[Swift.min(10, lowest / 2)...lowest])
        let x = candidates.map { Foundation.log10(Double($0.rate)) }, y = candidates.map(\.smoothedLoss)
        func slope(_ i: Int) -> Double {
            let (a, b) = (Swift.max(i - 1, 0), Swift.min(i + 1, candidates.count - 1))
            return (y[b] - y[a]) / (x[b] - x[a])
        }
        let steepest = candidates.indices.min { slope($0) < slope($1) } ?? 0
        return candidates[steepest].rate
    }
}

extension Sequential {
    /// A model of the same layers without its batch norms (the range test's comparison: why batch norm
    /// allows higher rates). The layers are shared, not copied: give it a fresh model. Batch norms inside a
    /// container other than `Sequential` (a residual block) cannot be taken out and are an error naming it.
    public func removingBatchNorms() throws -> Sequential { try removingBatchNorms(under: "") }

    private func removingBatchNorms(under prefix: String) throws -> Sequential {
        // The names stay the layers' own, so that the state-dict names of what is left do not change.
        try Sequential(layers.compactMap { name, layer -> NamedLayer? in
            let path = prefix + name
            if layer is BatchNorm { return nil }
            if let inner = layer as? Sequential { return NamedLayer(name: name, layer: try inner.removingBatchNorms(under: path + ".")) }
            if layer.namedLayers.contains(where: { $0.layer is BatchNorm }) {
                throw KilnError.invalidArgument("\(path) holds batch norms inside a \(layer.typeName), "
                                                + "which cannot be taken out (only a model of nested Sequential layers can)")
            }
            return NamedLayer(name: name, layer: layer)
        })
    }
}
