import Foundation

/// Synchronised batch norm (PyTorch's SyncBatchNorm): in data-parallel training, a training-mode batch norm
/// normalises with the mean and variance of the whole global batch rather than of its rank's shard, so N
/// ranks at batch B compute what one process computes at batch N·B. Forward gathers each rank's count, mean
/// and sum of squared deviations and combines them exactly (Chan's parallel variance); backward sums the
/// two per-channel reductions of the gradient over the ranks.
public final class BatchNormSynchronizer: @unchecked Sendable {
    let communicator: any Communicator
    /// Called before the all-reduce of each backward: data-parallel training starts there the gradient
    /// buckets that are complete, so that every rank makes its collectives in the same order.
    public var beforeBackwardReduction: (() throws -> Void)?

    public init(_ communicator: any Communicator) { self.communicator = communicator }

    /// What a synchronised forward keeps for backward: the global statistics and the global count.
    public struct Statistics {
        public var batch: BatchNormStatistics
        /// Values per channel over all ranks (N·H·W summed over the ranks).
        public var globalCount: Int
    }

    /// y = γ·(x − μ)·σ⁻¹ + β with μ, σ² of the global batch; updates the running statistics as
    /// `batchNormTraining` does, with the global ones.
    public func trainingForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                settings: BatchNormSettings) throws -> (output: Tensor, statistics: Statistics) {
        let (batch, channels, inner) = batchNormLayout(x)
        let count = batch * inner
        // This rank's mean and Σ(x − mean)², [C]: two passes, as exact as the single-process kernels.
        let localMean = try channelSums(x, batch, channels, inner).binary(.mul, 1 / Float(Swift.max(count, 1)))
        let centered = try Tensor.empty(x.shape, on: x.device)
        try x.backend.binaryPerChannel(.sub, x, localMean, channels: channels, inner: inner, into: centered)
        let squares = try channelSums(centered.map(.square), batch, channels, inner)
        let gathered = try communicator.allGather([Double(count)] + (try localMean.toArray()).map(Double.init) + (try squares.toArray()).map(Double.init))
        // Chan et al.: n = Σnᵣ, μ = Σnᵣμᵣ / n, M₂ = ΣM₂ᵣ + Σnᵣ(μᵣ − μ)².
        let total = gathered.map { $0[0] }.reduce(0, +)
        var mean = [Double](repeating: 0, count: channels), squaredDeviations = [Double](repeating: 0, count: channels)
        for part in gathered { for c in 0..<channels { mean[c] += part[0] * part[1 + c] / total } }
        for part in gathered {
            for c in 0..<channels {
                let shift = part[1 + c] - mean[c]
                squaredDeviations[c] += part[1 + channels + c] + part[0] * shift * shift
            }
        }
        let variance = squaredDeviations.map { $0 / total }
        let globalMean = try Tensor(mean.map(Float.init), shape: [channels], on: x.device)
        let globalVariance = try Tensor(variance.map(Float.init), shape: [channels], on: x.device)
        let inverseStd = try Tensor(variance.map { Float(1 / ($0 + Double(settings.epsilon)).squareRoot()) }, shape: [channels], on: x.device)
        let y = try batchNormInference(x, gamma: gamma, beta: beta, runningMean: globalMean, runningVariance: globalVariance, settings: settings)
        // running = (1 − m)·running + m·batch, with the unbiased variance, as the batch-norm kernels do.
        let m = settings.momentum
        let unbiased = variance.map { Float(total > 1 ? $0 * total / (total - 1) : $0) }
        let newMean = zip(try runningMean.toArray(), mean).map { (1 - m) * $0 + m * Float($1) }
        let newVariance = zip(try runningVariance.toArray(), unbiased).map { (1 - m) * $0 + m * $1 }
        try runningMean.assign(Tensor(newMean, shape: [channels]))
        try runningVariance.assign(Tensor(newVariance, shape: [channels]))
        return (y, Statistics(batch: BatchNormStatistics(mean: globalMean, inverseStd: inverseStd), globalCount: Int(total)))
    }

    /// dx = γσ⁻¹/M · (M·dy − Σdy − x̂·Σ(dy·x̂)) with both sums and M over the global batch; adds this rank's
    /// Σ dy·x̂ and Σ dy to dγ and dβ (the gradient average then sums them over the ranks).
    public func backward(_ x: Tensor, dy: Tensor, gamma: Tensor, statistics: Statistics,
                         accumulatingInto gammaGradient: Tensor, _ betaGradient: Tensor) throws -> Tensor {
        let (batch, channels, inner) = batchNormLayout(x)
        let per = { (op: BinaryOp, a: Tensor, b: Tensor) throws -> Tensor in
            let out = try Tensor.empty(a.shape, on: a.device)
            try a.backend.binaryPerChannel(op, a, b, channels: channels, inner: inner, into: out)
            return out
        }
        // x̂ = (x − μ)·σ⁻¹, [N, C, inner]
        let normalized = try per(.mul, try per(.sub, x, statistics.batch.mean), statistics.batch.inverseStd)
        let localSum = try channelSums(dy, batch, channels, inner)
        let localProductSum = try channelSums(try dy * normalized, batch, channels, inner)
        try betaGradient.axpby(alpha: 1, localSum, beta: 1)
        try gammaGradient.axpby(alpha: 1, localProductSum, beta: 1)
        var sums = (try localSum.toArray()) + (try localProductSum.toArray())
        try beforeBackwardReduction?()
        try sums.withUnsafeMutableBufferPointer { try communicator.allReduceSum($0) }
        let count = Float(statistics.globalCount)
        let sum = try Tensor(Array(sums[0..<channels]), shape: [channels], on: x.device)
        let productSum = try Tensor(Array(sums[channels...]), shape: [channels], on: x.device)
        let centered = try per(.sub, try dy.binary(.mul, count), sum) - (try per(.mul, normalized, productSum))
        return try per(.mul, centered, try (gamma * statistics.batch.inverseStd).binary(.mul, 1 / count))
    }

    /// Σ over N and the inner positions of a [N, C, inner] tensor, [C].
    private func channelSums(_ t: Tensor, _ batch: Int, _ channels: Int, _ inner: Int) throws -> Tensor {
        try t.reshaped([batch, channels, inner]).sum(axis: 2).sum(axis: 0)
    }
}
