import Foundation

extension HostBackend: OptimizerBackend {
    public func applyUpdate(_ rule: UpdateRule, parameter: Tensor, gradient: Tensor, state: [Tensor], learningRate lr: Float,
                            step: Int, regularization: Regularization) throws {
        let (p, gradient) = (parameter.hostBuffer, gradient.hostBuffer)
        let s0 = state[0].hostBuffer, s1 = state.count > 1 ? state[1].hostBuffer : s0
        if case let .sgd(momentum, nesterov) = rule, momentum > 0, regularization.l1 == 0 {
            // The default rule, as loops without a switch per element, which the compiler vectorises.
            let decay = regularization.weightDecay
            if nesterov {
                for i in p.indices {
                    let g = gradient[i] + decay * p[i]
                    s0[i] = momentum * s0[i] + g
                    p[i] -= lr * (g + momentum * s0[i])
                }
            } else {
                for i in p.indices {
                    s0[i] = momentum * s0[i] + gradient[i] + decay * p[i]
                    p[i] -= lr * s0[i]
                }
            }
            return
        }
        let decoupled: Bool
        if case .adam(_, _, _, true) = rule { decoupled = true } else { decoupled = false }
        for i in p.indices {
            var g = gradient[i] + regularization.l1 * (p[i] > 0 ? 1 : (p[i] < 0 ? -1 : 0))
            if decoupled { p[i] -= lr * regularization.weightDecay * p[i] } else { g += regularization.weightDecay * p[i] }
            switch rule {
            case let .sgd(momentum, nesterov):
                if momentum == 0 {
                    p[i] -= lr * g
                } else {
                    s0[i] = momentum * s0[i] + g
                    p[i] -= lr * (nesterov ? g + momentum * s0[i] : s0[i])
                }
            case let .adagrad(epsilon):
                s0[i] += g * g
                p[i] -= lr * g / (s0[i].squareRoot() + epsilon)
            case let .adadelta(rho, epsilon):
                s0[i] = rho * s0[i] + (1 - rho) * g * g
                let delta = (s1[i] + epsilon).squareRoot() / (s0[i] + epsilon).squareRoot() * g
                s1[i] = rho * s1[i] + (1 - rho) * delta * delta
                p[i] -= lr * delta
            case let .rmsprop(alpha, epsilon, momentum):
                s0[i] = alpha * s0[i] + (1 - alpha) * g * g
                let scaled = g / (s0[i].squareRoot() + epsilon)
                if momentum > 0 {
                    s1[i] = momentum * s1[i] + scaled
                    p[i] -= lr * s1[i]
                } else {
                    p[i] -= lr * scaled
                }
            case let .adam(beta1, beta2, epsilon, _):
                s0[i] = beta1 * s0[i] + (1 - beta1) * g
                s1[i] = beta2 * s1[i] + (1 - beta2) * g * g
                let corrected1 = 1 - Foundation.pow(beta1, Float(step)), corrected2 = 1 - Foundation.pow(beta2, Float(step))
                p[i] -= lr * (s0[i] / corrected1) / ((s1[i] / corrected2).squareRoot() + epsilon)
            }
        }
    }
}
