import Foundation

/// Batch norm on the host: channels split across threads; each channel's values are walked as N contiguous
/// rows of H·W, summed per row in sixteen Float lanes and across rows in Double.
extension HostBackend: NormalizationBackend {
    public func batchNormTrainingForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                         settings: BatchNormSettings, into y: Tensor, savedMean: Tensor, savedInverseStd: Tensor) throws {
        // x, y: [N, C, inner]; statistics per channel over the m = N·inner values
        let (batch, channels, inner) = batchNormLayout(x)
        let m = batch * inner
        let (x, y) = (x.hostBuffer.baseAddress!, y.hostBuffer.baseAddress!)
        let (gamma, beta, runningMean, runningVariance) = (gamma.hostBuffer, beta.hostBuffer, runningMean.hostBuffer, runningVariance.hostBuffer)
        let (savedMean, savedInverseStd) = (savedMean.hostBuffer, savedInverseStd.hostBuffer)
        parallelRanges(channels, grain: Swift.max(1, Self.elementGrain / Swift.max(m, 1))) { range in
            for c in range {
                // One pass for both moments, shifted by the channel's first value so that Σ(x−K)² does not
                // cancel catastrophically when the mean is far from zero.
                let shift = x[c * inner]
                var (sum, squares) = (0.0, 0.0)
                for n in 0..<batch {
                    let row = Self.moments(x + (n * channels + c) * inner, inner, shift: shift)
                    sum += Double(row.sum)
                    squares += Double(row.squares)
                }
                let mean = Double(shift) + sum / Double(m)
                let variance = Swift.max(0, squares / Double(m) - (sum / Double(m)) * (sum / Double(m)))
                let inverseStd = 1 / (variance + Double(settings.epsilon)).squareRoot()
                let scale = gamma[c] * Float(inverseStd), offset = beta[c] - Float(mean) * scale
                for n in 0..<batch {
                    let row = (n * channels + c) * inner
                    for i in row..<(row + inner) { y[i] = x[i] * scale + offset }
                }
                savedMean[c] = Float(mean)
                savedInverseStd[c] = Float(inverseStd)
                let unbiased = m > 1 ? variance * Double(m) / Double(m - 1) : variance
                runningMean[c] = (1 - settings.momentum) * runningMean[c] + settings.momentum * Float(mean)
                runningVariance[c] = (1 - settings.momentum) * runningVariance[c] + settings.momentum * Float(unbiased)
            }
        }
    }

    public func batchNormInferenceForward(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVariance: Tensor,
                                          settings: BatchNormSettings, into y: Tensor) throws {
        // y = γ·(x − μ)/√(σ² + ε) + β, folded into one scale and shift per channel
        let (batch, channels, inner) = batchNormLayout(x)
        let (x, y) = (x.hostBuffer.baseAddress!, y.hostBuffer.baseAddress!)
        let (gamma, beta, mean, variance) = (gamma.hostBuffer, beta.hostBuffer, runningMean.hostBuffer, runningVariance.hostBuffer)
        parallelRanges(batch * channels, grain: Swift.max(1, Self.elementGrain / Swift.max(inner, 1))) { rows in
            for row in rows {
                let c = row % channels
                let scale = gamma[c] / (variance[c] + settings.epsilon).squareRoot(), shift = beta[c] - mean[c] * scale
                for i in (row * inner)..<((row + 1) * inner) { y[i] = x[i] * scale + shift }
            }
        }
    }

    public func batchNormBackward(_ x: Tensor, dy: Tensor, gamma: Tensor, savedMean: Tensor, savedInverseStd: Tensor,
                                  into dx: Tensor, gammaGradient: Tensor, betaGradient: Tensor, accumulate: Bool) throws {
        // dx = γσ⁻¹/m · (m·dy − Σdy − x̂·Σ(dy·x̂)), x̂ = (x − μ)·σ⁻¹
        let (batch, channels, inner) = batchNormLayout(x)
        let m = batch * inner
        let (x, dy, dx, gamma) = (x.hostBuffer.baseAddress!, dy.hostBuffer.baseAddress!, dx.hostBuffer.baseAddress!, gamma.hostBuffer)
        let (savedMean, savedInverseStd) = (savedMean.hostBuffer, savedInverseStd.hostBuffer)
        let (dgamma, dbeta) = (gammaGradient.hostBuffer, betaGradient.hostBuffer)
        parallelRanges(channels, grain: Swift.max(1, Self.elementGrain / Swift.max(m, 1))) { range in
            for c in range {
                let (mean, inverseStd) = (savedMean[c], savedInverseStd[c])
                var sumDy = 0.0, sumDyXhat = 0.0
                for n in 0..<batch {
                    let row = (n * channels + c) * inner
                    let sums = Self.gradientSums(dy + row, x + row, inner, mean: mean)
                    sumDy += Double(sums.dy)
                    sumDyXhat += Double(sums.dyCentered) * Double(inverseStd)
                }
                let scale = gamma[c] * inverseStd / Float(m)
                let (meanDy, meanDyXhat) = (Float(sumDy), Float(sumDyXhat))
                for n in 0..<batch {
                    let row = (n * channels + c) * inner
                    for i in row..<(row + inner) {
                        dx[i] = scale * (Float(m) * dy[i] - meanDy - (x[i] - mean) * inverseStd * meanDyXhat)
                    }
                }
                dgamma[c] = (accumulate ? dgamma[c] : 0) + Float(sumDyXhat)
                dbeta[c] = (accumulate ? dbeta[c] : 0) + Float(sumDy)
            }
        }
    }

    /// Σ(x − shift) and Σ(x − shift)² over `count` values, in sixteen Float lanes: a single running sum
    /// would chain every add to the previous one and run at a sixteenth of the speed.
    static func moments(_ x: UnsafeMutablePointer<Float>, _ count: Int, shift: Float) -> (sum: Float, squares: Float) {
        var (sum, squares) = (SIMD16<Float>(), SIMD16<Float>())
        let lanes = count / 16 * 16
        let raw = UnsafeRawPointer(x)
        for i in stride(from: 0, to: lanes, by: 16) {
            let value = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self) - shift
            sum += value
            squares += value * value
        }
        var (tailSum, tailSquares): (Float, Float) = (0, 0)
        for i in lanes..<count {
            let value = x[i] - shift
            tailSum += value
            tailSquares += value * value
        }
        return (sum.sum() + tailSum, squares.sum() + tailSquares)
    }

    /// Σ dy and Σ dy·(x − mean) over `count` values, in sixteen Float lanes.
    static func gradientSums(_ dy: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>, _ count: Int,
                             mean: Float) -> (dy: Float, dyCentered: Float) {
        var (sumDy, sumDyCentered) = (SIMD16<Float>(), SIMD16<Float>())
        let lanes = count / 16 * 16
        let (rawDy, rawX) = (UnsafeRawPointer(dy), UnsafeRawPointer(x))
        for i in stride(from: 0, to: lanes, by: 16) {
            let gradient = rawDy.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
            sumDy += gradient
            sumDyCentered += gradient * (rawX.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self) - mean)
        }
        var (tailDy, tailCentered): (Float, Float) = (0, 0)
        for i in lanes..<count {
            tailDy += dy[i]
            tailCentered += dy[i] * (x[i] - mean)
        }
        return (sumDy.sum() + tailDy, sumDyCentered.sum() + tailCentered)
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
