import Foundation

extension HostBackend: ActivationBackend {
    static func activate(_ activation: Activation, _ x: Float) -> Float {
        switch activation {
        case .relu: return Swift.max(x, 0)
        case let .leakyReLU(slope): return x > 0 ? x : slope * x
        case let .elu(alpha): return x > 0 ? x : alpha * Foundation.expm1(x)
        case .sigmoid: return 1 / (1 + Foundation.exp(-x))
        case .tanh: return Foundation.tanh(x)
        case .softplus: return Swift.max(x, 0) + Foundation.log1p(Foundation.exp(-Swift.abs(x)))
        case .swish: return x / (1 + Foundation.exp(-x))
        case .relu6: return Swift.min(Swift.max(x, 0), 6)
        }
    }

    static func derivative(_ activation: Activation, _ x: Float) -> Float {
        switch activation {
        case .relu: return x > 0 ? 1 : 0
        case let .leakyReLU(slope): return x > 0 ? 1 : slope
        case let .elu(alpha): return x > 0 ? 1 : alpha * Foundation.exp(x)
        case .sigmoid:
            let s = 1 / (1 + Foundation.exp(-x))
            return s * (1 - s)
        case .tanh:
            let t = Foundation.tanh(x)
            return 1 - t * t
        case .softplus: return 1 / (1 + Foundation.exp(-x))
        case .swish:
            let s = 1 / (1 + Foundation.exp(-x))
            return s * (1 + x * (1 - s))
        case .relu6: return x > 0 && x < 6 ? 1 : 0
        }
    }

    public func activationForward(_ activation: Activation, _ x: Tensor, into y: Tensor) throws {
        let (x, y) = (x.hostBuffer.baseAddress!, y.hostBuffer)
        parallelRanges(y.count, grain: Self.elementGrain) { range in
            // ReLU, the common case, as a loop the compiler vectorises.
            if case .relu = activation {
                for i in range { y[i] = Swift.max(x[i], 0) }
            } else {
                for i in range { y[i] = Self.activate(activation, x[i]) }
            }
        }
    }

    public func activationBackward(_ activation: Activation, x: Tensor, dy: Tensor, into dx: Tensor) throws {
        let (x, dy, dx) = (x.hostBuffer.baseAddress!, dy.hostBuffer.baseAddress!, dx.hostBuffer)
        parallelRanges(dx.count, grain: Self.elementGrain) { range in
            if case .relu = activation {
                for i in range { dx[i] = (x[i] > 0 ? 1 : 0) * dy[i] }
            } else {
                for i in range { dx[i] = Self.derivative(activation, x[i]) * dy[i] }
            }
        }
    }

    public func preluForward(_ x: Tensor, slopes: Tensor, into y: Tensor) throws {
        // x, y: [N, C, inner]; slopes: [C] (or [1], one channel)
        let (channels, inner) = preluLayout(x, slopes)
        let (x, a, y) = (x.hostBuffer, slopes.hostBuffer, y.hostBuffer)
        for i in y.indices { y[i] = x[i] > 0 ? x[i] : a[(i / inner) % channels] * x[i] }
    }

    public func preluBackward(x: Tensor, slopes: Tensor, dy: Tensor, into dx: Tensor, slopeGradient: Tensor, accumulate: Bool) throws {
        let (channels, inner) = preluLayout(x, slopes)
        let (x, a, dy, dx, da) = (x.hostBuffer, slopes.hostBuffer, dy.hostBuffer, dx.hostBuffer, slopeGradient.hostBuffer)
        var sums = [Double](repeating: 0, count: channels)
        for i in dx.indices {
            let c = (i / inner) % channels
            dx[i] = x[i] > 0 ? dy[i] : a[c] * dy[i]
            if x[i] <= 0 { sums[c] += Double(dy[i] * x[i]) }
        }
        for c in 0..<channels { da[c] = (accumulate ? da[c] : 0) + Float(sums[c]) }
    }
}
