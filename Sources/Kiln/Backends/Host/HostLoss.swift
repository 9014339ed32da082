import Foundation

extension HostBackend: LossBackend {
    public func softmaxForward(_ x: Tensor, logarithm: Bool, into y: Tensor) throws {
        // x, y: [N, K]
        let (rows, classes) = (x.shape[0], x.shape[1])
        let (x, y) = (x.hostBuffer, y.hostBuffer)
        for r in 0..<rows {
            let row = r * classes
            let top = (0..<classes).map { x[row + $0] }.max() ?? 0
            let logSum = Foundation.log((0..<classes).reduce(0.0) { $0 + Foundation.exp(Double(x[row + $1] - top)) })
            for k in 0..<classes {
                let logProbability = Double(x[row + k] - top) - logSum
                y[row + k] = Float(logarithm ? logProbability : Foundation.exp(logProbability))
            }
        }
    }

    public func softmaxBackward(y: Tensor, dy: Tensor, logarithm: Bool, into dx: Tensor) throws {
        // softmax: dx = y·(dy − Σ dy·y); log-softmax: dx = dy − softmax·Σ dy
        let (rows, classes) = (y.shape[0], y.shape[1])
        let (y, dy, dx) = (y.hostBuffer, dy.hostBuffer, dx.hostBuffer)
        for r in 0..<rows {
            let row = r * classes
            if logarithm {
                let total = (0..<classes).reduce(0.0) { $0 + Double(dy[row + $1]) }
                for k in 0..<classes { dx[row + k] = dy[row + k] - Float(Foundation.exp(Double(y[row + k])) * total) }
            } else {
                let dot = (0..<classes).reduce(0.0) { $0 + Double(dy[row + $1]) * Double(y[row + $1]) }
                for k in 0..<classes { dx[row + k] = y[row + k] * Float(Double(dy[row + k]) - dot) }
            }
        }
    }

    public func crossEntropy(logits: Tensor, targets: Tensor, form: ClassTargets, labelSmoothing: Float, into loss: Tensor,
                             gradient: Tensor) throws {
        let (rows, classes) = (logits.shape[0], logits.shape[1])
        try softmaxForward(logits, logarithm: true, into: gradient)  // log-probabilities, then turned into the gradient
        let (logProbabilities, t) = (gradient.hostBuffer, targets.hostBuffer)
        var total = 0.0
        for r in 0..<rows {
            for k in 0..<classes {
                let given: Float = form == .labels ? (Int(t[r]) == k ? 1 : 0) : t[r * classes + k]
                let target = (1 - labelSmoothing) * given + labelSmoothing / Float(classes)
                let logProbability = logProbabilities[r * classes + k]
                total -= Double(target) * Double(logProbability)
                logProbabilities[r * classes + k] = (Foundation.exp(logProbability) - target) / Float(rows)
            }
        }
        loss.hostBuffer[0] = Float(total / Double(rows))
    }

    public func negativeLogLikelihood(logProbabilities: Tensor, labels: Tensor, into loss: Tensor, gradient: Tensor) throws {
        let (rows, classes) = (logProbabilities.shape[0], logProbabilities.shape[1])
        let (p, labels, g) = (logProbabilities.hostBuffer, labels.hostBuffer, gradient.hostBuffer)
        g.update(repeating: 0)
        var total = 0.0
        for r in 0..<rows {
            let k = Int(labels[r])
            total -= Double(p[r * classes + k])
            g[r * classes + k] = -1 / Float(rows)
        }
        loss.hostBuffer[0] = Float(total / Double(rows))
    }

    public func meanSquaredError(prediction: Tensor, target: Tensor, into loss: Tensor, gradient: Tensor) throws {
        let (p, t, g) = (prediction.hostBuffer, target.hostBuffer, gradient.hostBuffer)
        var total = 0.0
        for i in g.indices {
            let difference = p[i] - t[i]
            total += Double(difference) * Double(difference)
            g[i] = 2 * difference / Float(g.count)
        }
        loss.hostBuffer[0] = Float(total / Double(Swift.max(g.count, 1)))
    }

    public func binaryCrossEntropyWithLogits(logits: Tensor, target: Tensor, into loss: Tensor, gradient: Tensor) throws {
        let (x, t, g) = (logits.hostBuffer, target.hostBuffer, gradient.hostBuffer)
        var total = 0.0
        for i in g.indices {
            total += Double(Swift.max(x[i], 0) - x[i] * t[i] + Foundation.log1p(Foundation.exp(-Swift.abs(x[i]))))
            g[i] = (1 / (1 + Foundation.exp(-x[i])) - t[i]) / Float(g.count)
        }
        loss.hostBuffer[0] = Float(total / Double(Swift.max(g.count, 1)))
    }
}
