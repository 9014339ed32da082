import Foundation

extension HostBackend: NormalizationBackend {
    public func batchNormTrainingForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                         settings: BatchNormSettings, into y: Tensor, savedMean: Tensor, savedInverseStd: Tensor) throws {
        // x, y: [N, C, inner]; statistics per channel over the m = N·inner values
        let (batch, channels, inner) = batchNormLayout(x)
        let m = batch * inner
        let (x, y) = (x.hostBuffer, y.hostBuffer)
        let (gamma, beta, runningMean, runningVariance) = (gamma.hostBuffer, beta.hostBuffer, runningMean.hostBuffer, runningVariance.hostBuffer)
        let (savedMean, savedInverseStd) = (savedMean.hostBuffer, savedInverseStd.hostBuffer)
        for c in 0..<channels {
            func index(_ k: Int) -> Int { (k / inner * channels + c) * inner + k % inner }
            var sum = 0.0
            for k in 0..<m { sum += Double(x[index(k)]) }
            let mean = sum / Double(m)
            var squares = 0.0
            for k in 0..<m { squares += (Double(x[index(k)]) - mean) * (Double(x[index(k)]) - mean) }
            let variance = squares / Double(m)
            let inverseStd = 1 / (variance + Double(settings.epsilon)).squareRoot()
            for k in 0..<m { y[index(k)] = gamma[c] * Float((Double(x[index(k)]) - mean) * inverseStd) + beta[c] }
            savedMean[c] = Float(mean)
            savedInverseStd[c] = Float(inverseStd)
            let unbiased = m > 1 ? squares / Double(m - 1) : variance
            runningMean[c] = (1 - settings.momentum) * runningMean[c] + settings.momentum * Float(mean)
            runningVariance[c] = (1 - settings.momentum) * runningVariance[c] + settings.momentum * Float(unbiased)
        }
    }

    public func batchNormInferenceForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                          settings: BatchNormSettings, into y: Tensor) throws {
        let (_, channels, inner) = batchNormLayout(x)
        let (x, y) = (x.hostBuffer, y.hostBuffer)
        let (gamma, beta, mean, variance) = (gamma.hostBuffer, beta.hostBuffer, runningMean.hostBuffer, runningVariance.hostBuffer)
        for i in y.indices {
            let c = (i / inner) % channels
            y[i] = gamma[c] * (x[i] - mean[c]) / (variance[c] + settings.epsilon).squareRoot() + beta[c]
        }
    }

    public func batchNormBackward(_ x: Tensor, dy: Tensor, gamma: Tensor, savedMean: Tensor, savedInverseStd: Tensor,
                                  into dx: Tensor, gammaGradient: Tensor, betaGradient: Tensor, accumulate: Bool) throws {
        let (batch, channels, inner) = batchNormLayout(x)
        let m = batch * inner
        let (x, dy, dx, gamma) = (x.hostBuffer, dy.hostBuffer, dx.hostBuffer, gamma.hostBuffer)
        let (mean, inverseStd) = (savedMean.hostBuffer, savedInverseStd.hostBuffer)
        let (dgamma, dbeta) = (gammaGradient.hostBuffer, betaGradient.hostBuffer)
        for c in 0..<channels {
            func index(_ k: Int) -> Int { (k / inner * channels + c) * inner + k % inner }
            func normalized(_ k: Int) -> Double { Double(x[index(k)] - mean[c]) * Double(inverseStd[c]) }
            var sumDy = 0.0, sumDyXhat = 0.0
            for k in 0..<m {
                sumDy += Double(dy[index(k)])
                sumDyXhat += Double(dy[index(k)]) * normalized(k)
            }
            let scale = Double(gamma[c]) * Double(inverseStd[c]) / Double(m)
            for k in 0..<m {
                dx[index(k)] = Float(scale * (Double(m) * Double(dy[index(k)]) - sumDy - normalized(k) * sumDyXhat))
            }
            dgamma[c] = (accumulate ? dgamma[c] : 0) + Float(sumDyXhat)
            dbeta[c] = (accumulate ? dbeta[c] : 0) + Float(sumDy)
        }
    }

    public func lrnForward(_ x: Tensor, settings: LRNSettings, into y: Tensor) throws {
        let (x, y, layout) = (x.hostBuffer, y.hostBuffer, (x.shape[1], x.shape.dropFirst(2).reduce(1, *)))
        for i in y.indices { y[i] = x[i] * Float(Foundation.pow(lrnScale(x, i, layout, settings), Double(-settings.beta))) }
    }

    public func lrnBackward(_ x: Tensor, dy: Tensor, settings: LRNSettings, into dx: Tensor) throws {
        // dx_i = dy_i·s_i^−β − 2αβ/size · a_i · Σ_{j whose window holds i} dy_j·a_j·s_j^(−β−1)
        let (channels, inner) = (x.shape[1], x.shape.dropFirst(2).reduce(1, *))
        let (x, dy, dx) = (x.hostBuffer, dy.hostBuffer, dx.hostBuffer)
        let beta = Double(settings.beta)
        for i in dx.indices {
            let c = (i / inner) % channels
            var sum = 0.0
            for j in Swift.max(0, c - (settings.size - 1) / 2)...Swift.min(channels - 1, c + settings.size / 2) {
                let other = i + (j - c) * inner
                sum += Double(dy[other]) * Double(x[other]) * Foundation.pow(lrnScale(x, other, (channels, inner), settings), -beta - 1)
            }
            dx[i] = Float(Double(dy[i]) * Foundation.pow(lrnScale(x, i, (channels, inner), settings), -beta)
                          - 2 * Double(settings.alpha) * beta / Double(settings.size) * Double(x[i]) * sum)
        }
    }

    /// s_i = k + α/size · Σ a² over the window of channels around element i.
    private func lrnScale(_ x: UnsafeMutableBufferPointer<Float>, _ i: Int, _ layout: (channels: Int, inner: Int), _ settings: LRNSettings) -> Double {
        let c = (i / layout.inner) % layout.channels
        var sum = 0.0
        for j in Swift.max(0, c - settings.size / 2)...Swift.min(layout.channels - 1, c + (settings.size - 1) / 2) {
            let value = Double(x[i + (j - c) * layout.inner])
            sum += value * value
        }
        return Double(settings.k) + Double(settings.alpha) / Double(settings.size) * sum
    }
}
